//! The upstream's response as the browser gets it: hop-by-hop headers removed, any
//! `Set-Cookie` with one of sealgate's names dropped (an upstream must never overwrite or
//! delete the session), and the re-sealed session cookies added when the session was renewed
//! or refreshed.

use cookie::Cookie;
use http::header::SET_COOKIE;
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::RouteSettings;
use crate::proxy::headers::{is_sealgate_cookie, strip_hop_by_hop};
use crate::proxy::websocket;
use crate::response::{self, Body};

/// Filters `response` for the browser. `switching`: a WebSocket handshake the upstream
/// accepted, whose upgrade headers are restored after the hop-by-hop removal.
pub(super) fn response(
    cookie_base: &str,
    route: &RouteSettings,
    response: Response<Incoming>,
    switching: bool,
    reseal: Option<Vec<Cookie<'static>>>,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if switching {
        websocket::set_upgrade_headers(&mut parts.headers);
    }
    let upstream_cookies: Vec<HeaderValue> =
        parts.headers.get_all(SET_COOKIE).iter().cloned().collect();
    parts.headers.remove(SET_COOKIE);
    for c in upstream_cookies {
        let name = c
            .to_str()
            .ok()
            .and_then(|s| s.split('=').next())
            .map(str::trim)
            .unwrap_or("");
        if is_sealgate_cookie(cookie_base, name) {
            tracing::warn!(route = %route.prefix, "dropped an upstream Set-Cookie with sealgate's name");
            continue;
        }
        parts.headers.append(SET_COOKIE, c);
    }
    let r = Response::from_parts(parts, body.map_err(Into::into).boxed());
    match reseal {
        Some(cookies) => response::with_cookies(r, &cookies),
        None => r,
    }
}
