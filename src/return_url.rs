//! Return URLs after login and logout: local paths only, re-serialized, never echoed.
//!
//! Accepted: one leading `/` followed by anything that is not `/` or `\`; no backslash
//! anywhere; no control character, raw or percent-encoded, anywhere; at most 2,048 bytes. The
//! value is then resolved against a placeholder origin with a WHATWG URL parser, must stay on
//! that origin, and what goes into `Location` is the parsed path, query and fragment, so a
//! parser differential between sealgate and a browser cannot turn it into another origin.

use url::Url;

/// Longest return URL accepted.
pub(crate) const MAX_LEN: usize = 2048;
const PLACEHOLDER: &str = "https://return-url.invalid";

/// A validated local return path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReturnUrl(String);

/// Why a return URL was refused (for the log; the browser gets a generic 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReturnUrlError {
    /// Empty or longer than [`MAX_LEN`].
    #[error("return URL empty or too long")]
    Length,
    /// Does not start with exactly one `/`, or starts with `/\`.
    #[error("return URL is not a local path")]
    NotLocal,
    /// Contains a backslash.
    #[error("return URL contains a backslash")]
    Backslash,
    /// Contains a control character, raw or percent-encoded.
    #[error("return URL contains a control character")]
    Control,
    /// The parsed URL leaves the origin or does not parse.
    #[error("return URL resolves elsewhere")]
    Escapes,
}

impl ReturnUrl {
    /// The root path `/`.
    pub(crate) fn root() -> Self {
        Self("/".into())
    }

    /// Validates `raw` (already query-decoded once).
    ///
    /// # Errors
    /// A [`ReturnUrlError`] naming the rule broken.
    pub(crate) fn parse(raw: &str) -> Result<Self, ReturnUrlError> {
        check_text(raw)?;
        let base = Url::parse(PLACEHOLDER).map_err(|_| ReturnUrlError::Escapes)?;
        let url = base.join(raw).map_err(|_| ReturnUrlError::Escapes)?;
        if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
            return Err(ReturnUrlError::Escapes);
        }
        let mut out = url.path().to_owned();
        if let Some(q) = url.query() {
            out.push('?');
            out.push_str(q);
        }
        if let Some(f) = url.fragment() {
            out.push('#');
            out.push_str(f);
        }
        // The parser resolves dot segments (`/a/%2E%2E/%2F…` becomes `/%2F…`): the serialized
        // value must pass the same rules, so what is sent is what would be accepted.
        check_text(&out)?;
        Ok(Self(out))
    }

    /// Parses an optional value, defaulting to `/`.
    ///
    /// # Errors
    /// As [`ReturnUrl::parse`].
    pub(crate) fn parse_or_root(raw: Option<&str>) -> Result<Self, ReturnUrlError> {
        raw.map_or_else(|| Ok(Self::root()), Self::parse)
    }

    /// Whether the path is `prefix` or below it (the BFF's own endpoints are never a return
    /// target: `/bff/login` would chain logins, `/bff/logout` would undo one).
    pub(crate) fn is_under(&self, prefix: &str) -> bool {
        let path = self.0.split(['?', '#']).next().unwrap_or("");
        let path = path.to_ascii_lowercase();
        let prefix = prefix.to_ascii_lowercase();
        path == prefix || path.starts_with(&format!("{prefix}/"))
    }

    /// The path to put in `Location`.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// This URL with every [`LOGIN_MARKER`] query parameter removed (so an old marker never
    /// survives a login) and, when `marker` is given, `sealgate_login=<marker>` appended to the
    /// query, before any fragment. The other query parameters are kept as they are. Should the
    /// result break a rule (only its length can), `/` with the marker.
    pub(crate) fn with_login_marker(&self, marker: Option<&str>) -> Self {
        let (rest, fragment) = match self.0.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (self.0.as_str(), None),
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let is_marker = |part: &&str| {
            url::form_urlencoded::parse(part.as_bytes())
                .next()
                .is_some_and(|(k, _)| k == LOGIN_MARKER)
        };
        if marker.is_none() && !query.split('&').any(|p| is_marker(&p)) {
            return self.clone();
        }
        let mut parts: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty() && !is_marker(p))
            .map(str::to_owned)
            .collect();
        if let Some(marker) = marker {
            let value: String = url::form_urlencoded::byte_serialize(marker.as_bytes()).collect();
            parts.push(format!("{LOGIN_MARKER}={value}"));
        }
        let mut out = path.to_owned();
        if !parts.is_empty() {
            out.push('?');
            out.push_str(&parts.join("&"));
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        Self::parse(&out).unwrap_or_else(|_| {
            if self.0 == "/" {
                Self::root()
            } else {
                Self::root().with_login_marker(marker)
            }
        })
    }
}

/// The query parameter sealgate adds to the return URL when a login comes back to the SPA
/// without a session (`none`: a silent login needs the user; `cancelled`: the user cancelled).
pub(crate) const LOGIN_MARKER: &str = "sealgate_login";

/// The textual rules, applied to the input and again to the serialized result.
fn check_text(raw: &str) -> Result<(), ReturnUrlError> {
    if raw.is_empty() || raw.len() > MAX_LEN {
        return Err(ReturnUrlError::Length);
    }
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') || matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return Err(ReturnUrlError::NotLocal);
    }
    if bytes.contains(&b'\\') {
        return Err(ReturnUrlError::Backslash);
    }
    if raw.chars().any(char::is_control) {
        return Err(ReturnUrlError::Control);
    }
    // Percent-encoded: control bytes (%00-%1F, %7F), backslash (%5C), and slashes that
    // would decode into a leading `//`.
    for (i, w) in bytes.windows(3).enumerate() {
        if w[0] == b'%' {
            let decoded = std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match decoded {
                Some(b) if b < 0x20 || b == 0x7f => return Err(ReturnUrlError::Control),
                Some(b'\\') => return Err(ReturnUrlError::Backslash),
                Some(b'/') if i == 1 => return Err(ReturnUrlError::NotLocal),
                _ => {}
            }
        }
    }
    // Also catch C1 controls and encoded non-ASCII control characters.
    let decoded = percent_decode(raw);
    if decoded.chars().any(char::is_control) {
        return Err(ReturnUrlError::Control);
    }
    Ok(())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_marker_is_added_before_the_fragment_and_replaces_any_other() {
        let url = |s: &str| ReturnUrl::parse(s).unwrap();
        for (from, marker, to) in [
            ("/x", Some("none"), "/x?sealgate_login=none"),
            ("/", Some("cancelled"), "/?sealgate_login=cancelled"),
            (
                "/x?a=1&b=%20+",
                Some("none"),
                "/x?a=1&b=%20+&sealgate_login=none",
            ),
            (
                "/x?a=1#/route?q=2",
                Some("none"),
                "/x?a=1&sealgate_login=none#/route?q=2",
            ),
            ("/#/hash", Some("none"), "/?sealgate_login=none#/hash"),
            (
                "/x?sealgate_login=none&a=1",
                Some("cancelled"),
                "/x?a=1&sealgate_login=cancelled",
            ),
            ("/x?sealgate%5Flogin=none&a=1", None, "/x?a=1"),
            ("/x?sealgate_login=none", None, "/x"),
            ("/x?a=1&&b", None, "/x?a=1&&b"),
            ("/x?a=1#f", None, "/x?a=1#f"),
        ] {
            assert_eq!(url(from).with_login_marker(marker).as_str(), to, "{from}");
        }
        let long = url(&format!("/{}", "a".repeat(MAX_LEN - 1)));
        assert_eq!(
            long.with_login_marker(Some("none")).as_str(),
            "/?sealgate_login=none"
        );
    }

    #[test]
    fn local_paths_are_accepted_and_reserialized() {
        for (raw, want) in [
            ("/", "/"),
            ("/app/orders?id=3#top", "/app/orders?id=3#top"),
            ("/a b", "/a%20b"),
            ("/a/../b", "/b"),
            ("/@evil.example", "/@evil.example"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/x?next=//evil", "/x?next=//evil"),
        ] {
            assert_eq!(ReturnUrl::parse(raw).unwrap().as_str(), want, "{raw}");
        }
    }

    #[test]
    fn bypass_classes_are_refused() {
        use ReturnUrlError::*;
        for (raw, why) in [
            ("", Length),
            ("//evil.example", NotLocal),
            ("/\\evil.example", NotLocal),
            ("\\\\evil.example", NotLocal),
            ("/a\\b", Backslash),
            ("https://evil.example", NotLocal),
            ("javascript:alert(1)", NotLocal),
            ("evil.example", NotLocal),
            ("//user@evil.example", NotLocal),
            ("/\t/evil.example", Control),
            ("/\n/evil.example", Control),
            ("/%09/evil.example", Control),
            ("/%0d%0aSet-Cookie:x=y", Control),
            ("/%00", Control),
            ("/%7f", Control),
            ("/%2F/evil.example", NotLocal),
            ("/%2f%2fevil.example", NotLocal),
            ("/%5Cevil.example", Backslash),
            ("/%C2%85", Control),
            ("/e/%2E%2E/%2F%2/Fx", NotLocal),
            ("/\u{85}", Control),
        ] {
            assert_eq!(ReturnUrl::parse(raw), Err(why), "{raw:?}");
        }
        assert_eq!(
            ReturnUrl::parse(&format!("/{}", "a".repeat(MAX_LEN))),
            Err(Length)
        );
    }
}
