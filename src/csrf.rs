//! Anti-forgery for API calls: a static custom header (forcing a CORS preflight cross-origin),
//! plus `Origin` and `Sec-Fetch-Site` checks against an exact allowlist.

use http::HeaderMap;
use http::header::ORIGIN;

use crate::config::Settings;

/// Why an API request was refused as possibly forged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// The anti-forgery header is missing or has the wrong value.
    #[error("anti-forgery header missing or wrong")]
    MissingHeader,
    /// `Origin` names an origin that is not allowed.
    #[error("origin not allowed")]
    Origin,
    /// `Sec-Fetch-Site: cross-site` without an allowed `Origin`.
    #[error("cross-site request")]
    CrossSite,
}

/// Whether `origin` (serialized) may call sealgate: the public origin or an allowed one.
pub fn origin_allowed(settings: &Settings, origin: &str) -> bool {
    origin == settings.server.public_url.origin().ascii_serialization()
        || settings.bff.allowed_origins.iter().any(|o| o == origin)
}

/// Checks an API request (`/bff/user`, `POST /bff/logout`, proxied routes).
///
/// # Errors
/// A [`CsrfError`] when the request may be forged.
pub fn check_api_request(settings: &Settings, headers: &HeaderMap) -> Result<(), CsrfError> {
    let header_ok = headers
        .get(&settings.bff.csrf_header)
        .is_some_and(|v| v.as_bytes() == settings.bff.csrf_value.as_bytes());
    if !header_ok {
        return Err(CsrfError::MissingHeader);
    }
    check_origin(settings, headers)
}

/// The `Origin` / `Sec-Fetch-Site` part alone (used for WebSocket upgrades, which cannot carry a
/// custom header).
///
/// # Errors
/// A [`CsrfError`] when the origin is not allowed.
pub fn check_origin(settings: &Settings, headers: &HeaderMap) -> Result<(), CsrfError> {
    let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
    match origin {
        Some(o) if !origin_allowed(settings, o) => return Err(CsrfError::Origin),
        Some(_) => return Ok(()),
        None => {}
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(CsrfError::CrossSite);
    }
    Ok(())
}
