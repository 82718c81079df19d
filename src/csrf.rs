//! Anti-forgery for API calls: a custom header (forcing a CORS preflight cross-origin), plus
//! `Origin` and `Sec-Fetch-Site` checks against an exact allowlist.
//!
//! The header carries either a static value ([`CsrfMode::Header`], default `X-CSRF: 1`) or, in
//! [`CsrfMode::DoubleSubmit`], a session-bound token that sealgate also puts in a
//! JavaScript-readable `__Host-` cookie for the SPA to echo. The token is a hash of the session
//! id with a purpose label: unguessable without the sealed cookie (the id never leaves it),
//! different from every other value derived from the id, and stable for the session's life.
//! WebSocket upgrades cannot carry a custom header; they get [`check_websocket_origin`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use http::HeaderMap;
use http::header::ORIGIN;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{CsrfMode, Settings};
use crate::session::Session;

/// Why an API request was refused as possibly forged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CsrfError {
    /// The anti-forgery header is missing or has the wrong value.
    #[error("anti-forgery header missing or wrong")]
    MissingHeader,
    /// `Origin` names an origin that is not allowed.
    #[error("origin not allowed")]
    Origin,
    /// `Sec-Fetch-Site: cross-site` without an allowed `Origin`.
    #[error("cross-site request")]
    CrossSite,
    /// A WebSocket upgrade without an `Origin` header.
    #[error("WebSocket upgrade without Origin")]
    NoOrigin,
}

/// The double-submit token of `session`: 128 bits of SHA-256 over a label and the session id.
pub(crate) fn token(session: &Session) -> String {
    let mut h = Sha256::new();
    h.update(b"sealgate csrf v1");
    h.update(session.id.as_bytes());
    URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}

/// The name of the double-submit cookie: the session cookie's base name + `-csrf`.
pub(crate) fn cookie_name(settings: &Settings) -> String {
    format!("{}-csrf", settings.session.cookie_name)
}

/// The double-submit cookie for `session`: `__Host-`, `Secure`, `Path=/`, `SameSite=Strict`,
/// and deliberately *not* `HttpOnly` (the SPA reads it); it expires with the session.
pub(crate) fn cookie(settings: &Settings, session: &Session, now: i64) -> Cookie<'static> {
    let max_age = session.expires_at().saturating_sub(now).max(0);
    Cookie::build((cookie_name(settings), token(session)))
        .secure(true)
        .path("/")
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(max_age))
        .build()
}

/// Deletes the double-submit cookie (same attributes, so the browser replaces it).
pub(crate) fn removal_cookie(settings: &Settings) -> Cookie<'static> {
    Cookie::build((cookie_name(settings), ""))
        .secure(true)
        .path("/")
        .same_site(SameSite::Strict)
        .max_age(time::Duration::ZERO)
        .build()
}

/// Whether `origin` (serialized) may call sealgate: the public origin or an allowed one.
pub(crate) fn origin_allowed(settings: &Settings, origin: &str) -> bool {
    origin == settings.server.public_url.origin().ascii_serialization()
        || settings.bff.allowed_origins.iter().any(|o| o == origin)
}

/// Checks an API request (`/bff/user`, `POST /bff/logout`, proxied routes); `session` is the
/// request's valid session, if any (double-submit tokens are bound to it).
///
/// # Errors
/// A [`CsrfError`] when the request may be forged.
pub(crate) fn check_api_request(
    settings: &Settings,
    headers: &HeaderMap,
    session: Option<&Session>,
) -> Result<(), CsrfError> {
    let sent = headers.get(&settings.bff.csrf_header).map(|v| v.as_bytes());
    let header_ok = match (settings.bff.csrf_mode, sent, session) {
        (_, None, _) => false,
        (CsrfMode::Header, Some(v), _) => v == settings.bff.csrf_value.as_bytes(),
        (CsrfMode::DoubleSubmit, Some(v), Some(s)) => bool::from(v.ct_eq(token(s).as_bytes())),
        // No session to bind to: nothing to forge; the custom header still forces a preflight.
        (CsrfMode::DoubleSubmit, Some(v), None) => !v.is_empty(),
    };
    if !header_ok {
        return Err(CsrfError::MissingHeader);
    }
    check_origin(settings, headers)
}

/// Checks a WebSocket upgrade: browsers always send `Origin` on one, so it is required, and it
/// must be allowed.
///
/// # Errors
/// A [`CsrfError`] when the origin is missing or not allowed.
pub(crate) fn check_websocket_origin(
    settings: &Settings,
    headers: &HeaderMap,
) -> Result<(), CsrfError> {
    if !headers.contains_key(ORIGIN) {
        return Err(CsrfError::NoOrigin);
    }
    check_origin(settings, headers)
}

/// The `Origin` / `Sec-Fetch-Site` part alone (used for WebSocket upgrades, which cannot carry a
/// custom header).
///
/// # Errors
/// A [`CsrfError`] when the origin is not allowed.
pub(crate) fn check_origin(settings: &Settings, headers: &HeaderMap) -> Result<(), CsrfError> {
    let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
    match origin {
        Some(o) if !origin_allowed(settings, o) => return Err(CsrfError::Origin),
        Some(_) => return Ok(()),
        None => {}
    }
    if headers
        .get(crate::header_names::SEC_FETCH_SITE)
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(CsrfError::CrossSite);
    }
    Ok(())
}
