//! Parameters that configuration or the SPA add to requests to the IdP. Pure.
//!
//! - Names sealgate owns ([`owned_by_sealgate`]): set by sealgate itself in authorization, PAR
//!   and token requests, so neither `[oidc] auth_params` / `token_params` nor the SPA can ever
//!   set or override them. Compared ASCII-case-insensitively: an IdP that reads names loosely
//!   must not be handed `State` next to `state`.
//! - The SPA's login parameters ([`from_query`]): the `/bff/login` query parameters named in
//!   `[oidc] login_params`, each checked against a strict rule for its name
//!   ([`check_login_value`]); anything else in the query is ignored, never forwarded.
//! - [`merge`]: `auth_params` with the SPA's values on top (the SPA wins, but only for the
//!   names `login_params` lists), and what the login flow must remember of the result.

use std::collections::BTreeMap;

/// The `/bff/login` parameters passed on to the IdP when `[oidc] login_params` is not set.
pub(crate) const DEFAULT_LOGIN_PARAMS: [&str; 5] = [
    "prompt",
    "login_hint",
    "acr_values",
    "max_age",
    "ui_locales",
];

/// Names sealgate sets itself (lower case). `response_mode` and `request` are owned too: the
/// callback reads only a query response, and a request object would supersede every other
/// parameter (OIDC Core 6.1).
const OWNED: &[&str] = &[
    "client_id",
    "redirect_uri",
    "state",
    "nonce",
    "response_type",
    "response_mode",
    "scope",
    "request",
    "request_uri",
    "client_secret",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
];

/// Name prefixes sealgate owns (`code_challenge`, `code_challenge_method`, …).
const OWNED_PREFIXES: &[&str] = &["code_challenge", "client_assertion"];

/// Longest parameter name accepted in configuration.
pub(crate) const MAX_NAME_LEN: usize = 128;

/// Whether `name` is (a case variant of) a parameter sealgate sets itself.
pub(crate) fn owned_by_sealgate(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    OWNED.contains(&lower.as_str()) || OWNED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// Why a configured parameter name is refused (the config error says it with the key).
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a parameter name must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("a parameter name is at most 128 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b))
    {
        return Some("a parameter name is letters, digits and - . _ ~ : [ ] only");
    }
    if owned_by_sealgate(name) {
        return Some("sealgate sets this parameter itself; it cannot be configured");
    }
    None
}

/// Whether `name` is a parameter this module has a specific rule for (configured values of
/// these names are checked with the same rule as the SPA's).
pub(crate) fn has_specific_rule(name: &str) -> bool {
    DEFAULT_LOGIN_PARAMS.contains(&name)
}

/// Why the SPA's login parameters were refused. Names only: never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LoginParamError {
    /// A parameter appeared twice.
    #[error("login parameter {0} repeated")]
    Repeated(String),
    /// A value broke its parameter's rule.
    #[error("login parameter {0} has a value that is not allowed")]
    Invalid(String),
}

/// The `/bff/login` parameters named in `allowed`, in that order, each checked and normalized;
/// an empty value counts as absent. Every other query parameter is ignored.
///
/// # Errors
/// A repeated parameter, or a value its rule refuses.
pub(crate) fn from_query(
    query: Option<&str>,
    allowed: &[String],
) -> Result<Vec<(String, String)>, LoginParamError> {
    let mut found: Vec<Option<String>> = vec![None; allowed.len()];
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let Some(i) = allowed.iter().position(|a| *a == k) else {
            continue;
        };
        if found[i].is_some() {
            return Err(LoginParamError::Repeated(allowed[i].clone()));
        }
        found[i] = Some(v.into_owned());
    }
    let mut out = Vec::new();
    for (name, value) in allowed.iter().zip(found) {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        let value = check_login_value(name, &value)
            .ok_or_else(|| LoginParamError::Invalid(name.clone()))?;
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// The value to send for login parameter `name`, or `None` when its rule refuses `value`:
///
/// - `prompt`: `none`, `login`, `consent`, `select_account`, space-separated, each once;
///   `none` only alone (OIDC Core 3.1.2.1).
/// - `max_age`: a non-negative integer of at most 10 digits (sent without leading zeros).
/// - `acr_values`: at most 16 space-separated values of at most 256 characters each, 512 in
///   all, from letters, digits and `- . _ ~ : / @ + = #` (URNs and URLs).
/// - `ui_locales`: at most 16 space-separated language tags (letters, digits, `-`), each at
///   most 35 characters.
/// - `login_hint`: at most 256 characters, none a control, zero-width or bidirectional
///   formatting character.
/// - any other name: at most 512 characters from letters, digits, space and
///   `- . _ ~ : / @ + = ,`.
pub(crate) fn check_login_value(name: &str, value: &str) -> Option<String> {
    let ok = match name {
        "prompt" => prompt(value),
        "max_age" => return max_age(value).map(|n| n.to_string()),
        "acr_values" => tokens(value, 16, 256, 512, |c| {
            c.is_ascii_alphanumeric() || "-._~:/@+=#".contains(c)
        }),
        "ui_locales" => tokens(value, 16, 35, 16 * 36, |c| {
            c.is_ascii_alphanumeric() || c == '-'
        }),
        "login_hint" => login_hint(value),
        _ => {
            value.len() <= 512
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " -._~:/@+=,".contains(c))
        }
    };
    ok.then(|| value.to_owned())
}

fn prompt(value: &str) -> bool {
    let words: Vec<&str> = value.split(' ').collect();
    let known = words
        .iter()
        .all(|w| matches!(*w, "none" | "login" | "consent" | "select_account"));
    let unique = words
        .iter()
        .enumerate()
        .all(|(i, w)| !words[..i].contains(w));
    known && unique && (words.len() == 1 || !words.contains(&"none"))
}

/// `max_age` as a number, when `value` is one.
pub(crate) fn max_age(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Single-space-separated tokens: at most `count`, each 1..=`each` characters allowed by
/// `allowed`, at most `total` bytes in all.
fn tokens(value: &str, count: usize, each: usize, total: usize, allowed: fn(char) -> bool) -> bool {
    let words: Vec<&str> = value.split(' ').collect();
    value.len() <= total
        && words.len() <= count
        && words
            .iter()
            .all(|w| !w.is_empty() && w.len() <= each && w.chars().all(allowed))
}

fn login_hint(value: &str) -> bool {
    value.chars().count() <= 256
        && value.chars().all(|c| {
            !c.is_control()
                && !matches!(c,
                    '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
                    | '\u{FEFF}')
        })
}

/// The extra parameters of one authorization request and what its login flow remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuthorizationParams {
    /// Sent with the authorization request (or pushed with it), after sealgate's own.
    pub extra: Vec<(String, String)>,
    /// `prompt=none`: a silent login, whose "log in first" answer goes back to the SPA.
    pub prompt_none: bool,
    /// `max_age`, when sent: the ID token's `auth_time` is then checked against it.
    pub max_age: Option<u64>,
}

/// `configured` (`[oidc] auth_params`) with the SPA's checked `chosen` values on top.
pub(crate) fn merge(
    configured: &[(String, String)],
    chosen: Vec<(String, String)>,
) -> AuthorizationParams {
    let mut all: BTreeMap<String, String> = configured.iter().cloned().collect();
    all.extend(chosen);
    let prompt_none = all.get("prompt").is_some_and(|p| p == "none");
    let max_age = all.get("max_age").and_then(|v| max_age(v));
    AuthorizationParams {
        extra: all.into_iter().collect(),
        prompt_none,
        max_age,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_names_and_their_case_variants() {
        for name in [
            "client_id",
            "redirect_uri",
            "state",
            "State",
            "STATE",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "Code_Challenge_Whatever",
            "response_type",
            "response_mode",
            "scope",
            "request",
            "request_uri",
            "client_secret",
            "client_assertion",
            "client_assertion_type",
            "grant_type",
            "code",
            "code_verifier",
            "refresh_token",
        ] {
            assert!(owned_by_sealgate(name), "{name}");
            assert!(name_problem(name).is_some(), "{name}");
        }
        for name in [
            "resource",
            "audience",
            "prompt",
            "codes",
            "stateful",
            "access_type",
        ] {
            assert!(!owned_by_sealgate(name), "{name}");
            assert_eq!(name_problem(name), None, "{name}");
        }
        for bad in ["", "a b", "a=b", "a&b", "é", &"x".repeat(129)] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(name_problem("kc_idp_hint"), None);
        assert_eq!(name_problem("x-client.v1:a~[0]"), None);
    }

    #[test]
    fn prompt_values() {
        for ok in [
            "none",
            "login",
            "consent",
            "select_account",
            "login consent",
            "consent select_account login",
        ] {
            assert_eq!(check_login_value("prompt", ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "none login",
            "login none",
            "login login",
            "create",
            "Login",
            " login",
            "login ",
            "login  consent",
            "login\tconsent",
            "none%20",
        ] {
            assert_eq!(check_login_value("prompt", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn max_age_values() {
        assert_eq!(check_login_value("max_age", "0").as_deref(), Some("0"));
        assert_eq!(check_login_value("max_age", "300").as_deref(), Some("300"));
        assert_eq!(check_login_value("max_age", "0300").as_deref(), Some("300"));
        assert_eq!(
            check_login_value("max_age", "9999999999").as_deref(),
            Some("9999999999")
        );
        for bad in ["-1", "+5", "1.5", "1e3", "abc", " 5", "12345678901", "٣"] {
            assert_eq!(check_login_value("max_age", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn acr_values_and_ui_locales() {
        for ok in [
            "mfa",
            "urn:mace:incommon:iap:silver phr",
            "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
        ] {
            assert!(check_login_value("acr_values", ok).is_some(), "{ok}");
        }
        for bad in ["a  b", "a\"b", "<x>", "a\nb", "a ".repeat(17).trim_end()] {
            assert_eq!(check_login_value("acr_values", bad), None, "{bad:?}");
        }
        assert!(check_login_value("acr_values", &"a".repeat(257)).is_none());
        for ok in ["en", "fr-CA en", "zh-Hant-TW"] {
            assert!(check_login_value("ui_locales", ok).is_some(), "{ok}");
        }
        for bad in ["en_US", "en,fr", "fr-CA  en", &"x".repeat(36)] {
            assert_eq!(check_login_value("ui_locales", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn login_hint_and_other_names() {
        for ok in [
            "jane@example.com",
            "+1 555 0100",
            "Jöhn Dœ",
            &"a".repeat(256),
        ] {
            assert!(check_login_value("login_hint", ok).is_some(), "{ok}");
        }
        for bad in [
            "a\u{0}b",
            "a\r\nb",
            "a\u{202E}b",
            "a\u{200B}b",
            "\u{FEFF}a",
            &"a".repeat(257),
        ] {
            assert_eq!(check_login_value("login_hint", bad), None, "{bad:?}");
        }
        assert!(check_login_value("kc_idp_hint", "google").is_some());
        assert!(check_login_value("domain_hint", "contoso.com").is_some());
        for bad in ["a<b", "a\"b", "a&b", "é", &"a".repeat(513)] {
            assert_eq!(check_login_value("kc_idp_hint", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_listed_parameters_are_taken_from_the_query() {
        let allowed: Vec<String> = DEFAULT_LOGIN_PARAMS.iter().map(|s| (*s).into()).collect();
        let got = from_query(
            Some("returnUrl=%2Fx&prompt=login+consent&state=evil&max_age=007&foo=bar&ui_locales="),
            &allowed,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("prompt".into(), "login consent".into()),
                ("max_age".into(), "7".into())
            ]
        );
        assert_eq!(
            from_query(Some("prompt=none&prompt=login"), &allowed),
            Err(LoginParamError::Repeated("prompt".into()))
        );
        assert_eq!(
            from_query(Some("prompt=none+login"), &allowed),
            Err(LoginParamError::Invalid("prompt".into()))
        );
        // Names are exact: a case variant is just another, ignored, parameter.
        assert_eq!(from_query(Some("Prompt=bogus"), &allowed), Ok(vec![]));
        assert_eq!(from_query(None, &allowed), Ok(vec![]));
        // The error never carries the value.
        let e = from_query(Some("login_hint=%00secret"), &allowed).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn the_spa_wins_for_listed_names_and_the_flow_remembers_prompt_and_max_age() {
        let configured = vec![
            ("prompt".to_owned(), "login".to_owned()),
            ("resource".to_owned(), "https://api".to_owned()),
        ];
        let p = merge(&configured, vec![("prompt".into(), "none".into())]);
        assert!(p.prompt_none);
        assert_eq!(p.max_age, None);
        assert_eq!(
            p.extra,
            vec![
                ("prompt".to_owned(), "none".to_owned()),
                ("resource".to_owned(), "https://api".to_owned())
            ]
        );
        let p = merge(&configured, vec![("max_age".into(), "60".into())]);
        assert!(!p.prompt_none);
        assert_eq!(p.max_age, Some(60));
        let configured = vec![("max_age".to_owned(), "0".to_owned())];
        assert_eq!(merge(&configured, vec![]).max_age, Some(0));
    }
}
