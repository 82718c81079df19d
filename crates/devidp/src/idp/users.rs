//! The users of the development IdP: a typed display name becomes a stable subject, a handle
//! and an e-mail address; the granted scope is what was asked for and is known here.

use sha2::{Digest, Sha256};

use super::{MAX_NAME_CHARS, SUPPORTED_SCOPES};

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The display name typed into the login form, trimmed; `Err` explains what is wrong.
pub(super) fn validate_name(raw: Option<&str>) -> Result<String, &'static str> {
    let name = raw.unwrap_or("").trim();
    if name.is_empty() {
        return Err("Please type a name.");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("The name is too long (at most 64 characters).");
    }
    if name.chars().any(char::is_control) {
        return Err("The name must not contain control characters.");
    }
    Ok(name.to_owned())
}

/// The subject derived from a name: the same name is always the same user.
pub(super) fn subject_for(name: &str) -> String {
    let digest = hex(&Sha256::digest(name.as_bytes()));
    format!("dev-{}", &digest[..16])
}

/// A lowercase ASCII handle for `preferred_username` and the e-mail local part; names with no
/// ASCII letters or digits fall back to the subject.
pub(super) fn slug(name: &str, sub: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 32 {
            break;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        sub.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The granted scope: the requested scopes this IdP knows, in request order, without repeats.
pub(super) fn granted_scope(requested: &str) -> String {
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split(' ') {
        if SUPPORTED_SCOPES.contains(&scope) && !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    granted.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::escape_html;

    #[test]
    fn names_map_to_stable_subjects_and_slugs() {
        assert_eq!(subject_for("Ada"), subject_for("Ada"));
        assert_ne!(subject_for("Ada"), subject_for("ada"));
        assert_eq!(subject_for("Ada").len(), 4 + 16);
        assert_eq!(slug("Ada Lovelace!", "dev-x"), "ada-lovelace");
        assert_eq!(slug("山田", "dev-x"), "dev-x");
        assert_eq!(validate_name(Some("  Ada ")), Ok("Ada".to_owned()));
        assert!(validate_name(Some("   ")).is_err());
        assert!(validate_name(None).is_err());
        assert!(validate_name(Some(&"x".repeat(65))).is_err());
        assert!(validate_name(Some("a\u{0}b")).is_err());
        assert_eq!(granted_scope("openid openid email weird"), "openid email");
        assert_eq!(
            escape_html(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
