//! Request parameters: query strings and `application/x-www-form-urlencoded` bodies (RFC 6749
//! §3.1), and `client_secret_basic` credentials (RFC 6749 §2.3.1).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Request parameters. Parameters without a value count as absent (RFC 6749 §3.1).
pub type Params = HashMap<String, String>;

/// Parses a query string or `application/x-www-form-urlencoded` body. A repeated parameter is
/// an error (RFC 6749 §3.1); the error carries its name.
///
/// # Errors
/// The name of the first repeated parameter.
pub fn parse_params(input: &[u8]) -> Result<Params, String> {
    let mut params = Params::new();
    for (key, value) in url::form_urlencoded::parse(input) {
        if value.is_empty() {
            continue;
        }
        match params.entry(key.into_owned()) {
            Entry::Occupied(entry) => return Err(entry.key().clone()),
            Entry::Vacant(entry) => {
                entry.insert(value.into_owned());
            }
        }
    }
    Ok(params)
}

/// The value of parameter `name`, if present.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

/// Parses `Authorization: Basic` client credentials into `(client_id, secret)`. RFC 6749
/// §2.3.1: the id and secret are form-urlencoded before they are joined with `:` and
/// base64-encoded; a malformed escape is refused.
pub fn parse_basic_auth(value: &str) -> Option<(String, String)> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space); `None` on a
/// malformed escape or invalid UTF-8.
fn form_urldecode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_form_urldecoded_after_base64() {
        // id "my client", secret "p:ss&w=rd%" encoded per RFC 6749 §2.3.1.
        let raw = "my+client:p%3Ass%26w%3Drd%25";
        let header = format!("Basic {}", STANDARD.encode(raw));
        assert_eq!(
            parse_basic_auth(&header),
            Some(("my client".into(), "p:ss&w=rd%".into()))
        );
        let lower = format!("basic {}", STANDARD.encode("a:b"));
        assert_eq!(parse_basic_auth(&lower), Some(("a".into(), "b".into())));
        assert_eq!(parse_basic_auth("Bearer abc"), None);
        assert_eq!(parse_basic_auth("Basic !!!"), None);
        assert_eq!(
            parse_basic_auth(&format!("Basic {}", STANDARD.encode("nocolon"))),
            None
        );
        assert_eq!(
            parse_basic_auth(&format!("Basic {}", STANDARD.encode("a:%zz"))),
            None
        );
    }

    #[test]
    fn repeated_parameters_are_rejected_and_empty_ones_ignored() {
        assert_eq!(parse_params(b"a=1&a=2"), Err("a".to_owned()));
        let params = parse_params(b"a=1&b=&c=x+y").unwrap();
        assert_eq!(param(&params, "a"), Some("1"));
        assert_eq!(param(&params, "b"), None);
        assert_eq!(param(&params, "c"), Some("x y"));
    }
}
