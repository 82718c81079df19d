//! CORS: an exact-origin allowlist (`bff.allowed_origins`), never a reflected arbitrary
//! origin, never `*` with credentials.

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::error::{Failure, Rejection};
use crate::response::{self, Body};

/// The request's `Origin` when it is an allowed *other* origin (same-origin requests need no
/// CORS headers). Never a reflected arbitrary origin, never `*`.
pub(super) fn allowed_origin(app: &App, req: &Request<Incoming>) -> Option<HeaderValue> {
    let origin = req.headers().get(http::header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    app.settings
        .bff
        .allowed_origins
        .iter()
        .any(|o| o == text)
        .then(|| origin.clone())
}

pub(super) fn allow_origin(response: &mut Response<Body>, origin: HeaderValue) {
    let h = response.headers_mut();
    h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

/// A CORS preflight: 204 with the exact origin for allowed origins.
///
/// # Errors
/// 403 for an origin that is not allowed.
pub(super) fn preflight(app: &App, origin: Option<HeaderValue>) -> Result<Response<Body>, Failure> {
    let Some(origin) = origin else {
        return Err(Failure::new(
            Rejection::Forbidden,
            "CORS preflight from an origin that is not allowed",
        ));
    };
    let mut r = Response::new(response::full(""));
    *r.status_mut() = StatusCode::NO_CONTENT;
    allow_origin(&mut r, origin);
    let allowed_headers = format!("{}, content-type", app.settings.bff.csrf_header.as_str());
    let h = r.headers_mut();
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
    );
    if let Ok(v) = HeaderValue::from_str(&allowed_headers) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    Ok(r)
}
