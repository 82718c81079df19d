//! Value parsers shared by the section conversions: pure, one value in, a typed value or a
//! problem naming `key` out.

use std::path::{Component, Path};
use std::time::Duration;

use url::Url;

use super::problem::{ConfigError, invalid};

/// A duration like `"20m"`, greater than zero.
pub(super) fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(text)
        .map_err(|e| invalid(key, format!("{text:?} is not a duration like \"20m\": {e}")))?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses an absolute http(s) URL; `http` only for loopback hosts.
pub(super) fn web_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| invalid(key, format!("{text:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                key,
                "http:// is accepted only for loopback hosts; use https://",
            ));
        }
        other => return Err(invalid(key, format!("unsupported scheme {other:?}"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(key, "must not contain user info"));
    }
    if url.fragment().is_some() {
        return Err(invalid(key, "must not contain a fragment"));
    }
    Ok(url)
}

/// An origin (`https://app.example.com`): a web URL without path or query.
pub(super) fn origin(key: &str, text: &str, problem: &str) -> Result<Url, ConfigError> {
    let url = web_url(key, text)?;
    if url.path() != "/" || url.query().is_some() {
        return Err(invalid(key, problem));
    }
    Ok(url)
}

/// A path prefix like `/api`, without its trailing slash (`/` becomes the empty prefix).
pub(super) fn path_prefix(key: &str, text: &str) -> Result<String, ConfigError> {
    let trimmed = text.trim_end_matches('/');
    let ok = trimmed.starts_with('/')
        && !trimmed.contains("//")
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && !trimmed.split('/').any(|seg| seg == "." || seg == "..");
    if ok || trimmed.is_empty() && text == "/" {
        Ok(trimmed.to_owned())
    } else {
        Err(invalid(
            key,
            format!("{text:?} must be a path like \"/api\" of letters, digits and -_.~"),
        ))
    }
}

/// Whether `name` is a single, plain file name: one normal path component, not hidden.
pub(super) fn plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(c)) if c == name)
        && components.next().is_none()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}
