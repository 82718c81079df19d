//! Proxied routes: `prefix/*` to the route's upstream, with `Authorization: Bearer <access
//! token>` attached per the route's token policy. Bodies stream both ways.
//!
//! Never forwarded: sealgate's cookies, a browser-supplied `Authorization`, hop-by-hop headers,
//! client-supplied `Forwarded` / `X-Forwarded-*`. Paths that could escape the route (`..`,
//! encoded slashes or dots, backslashes, empty segments) are refused. Upstream `Set-Cookie`s
//! with sealgate's cookie names are dropped. (This is the basic proxy the demo needs; token
//! refresh and WebSocket upgrades come with the proxy issue.)

use std::time::Duration;

use http::header::{AUTHORIZATION, CONNECTION, COOKIE, HOST, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::app::{App, RefreshOutcome, SessionState};
use crate::config::{RouteSettings, TokenPolicy};
use crate::csrf;
use crate::error::{Failure, Rejection};
use crate::response::{self, Body};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The route serving `path`: the longest prefix that matches at a segment boundary.
pub fn match_route<'a>(routes: &'a [RouteSettings], path: &str) -> Option<&'a RouteSettings> {
    routes.iter().find(|r| {
        r.prefix.is_empty()
            || path == r.prefix
            || path
                .strip_prefix(r.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The upstream URL (without query) for request `path` on `route`, or `None` when the path is
/// unsafe. Pure; fuzzed.
pub fn upstream_url(route: &RouteSettings, path: &str) -> Option<url::Url> {
    let rest = path.get(route.prefix.len()..)?;
    if !safe_rest(rest) {
        return None;
    }
    let forward = if route.strip_prefix { rest } else { path };
    let mut target = route.upstream.clone();
    let base_path = target.path().trim_end_matches('/').to_owned();
    target.set_path(&format!("{base_path}{forward}"));
    Some(target)
}

/// Whether the part of a path after the route prefix is safe to append to the upstream path.
pub fn safe_rest(rest: &str) -> bool {
    let lower = rest.to_ascii_lowercase();
    // Control characters and spaces first: URL parsers silently drop tabs and newlines, which
    // would turn `\n..` into a dot segment (the http crate refuses them; this does not rely on it).
    !rest.bytes().any(|b| b <= b' ' || b == 0x7f)
        && !rest.contains('\\')
        && !rest.contains("//")
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !lower.contains("%2e")
        && !lower.contains("%00")
        // Double encodings of the above, which a second decoder upstream would undo.
        && !["%252e", "%252f", "%255c", "%2500"].iter().any(|d| lower.contains(d))
        && !rest.split('/').any(|seg| seg == "." || seg == "..")
}

/// The pooled client for upstreams (HTTP/1.1 over plain TCP or rustls). One per running server,
/// so connection pools never outlive the runtime that drives them.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds the upstream client.
///
/// # Errors
/// When no TLS configuration can be built.
pub fn upstream_client() -> Result<UpstreamClient, crate::oidc::http::HttpError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_nodelay(true);
    let builder = crate::oidc::http::tls_roots()?;
    let tls = builder.https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(tls))
}

fn is_sealgate_cookie(app: &App, name: &str) -> bool {
    let base = app.settings.session.cookie_name.as_str();
    name.strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("-login-"))
}

fn strip_headers(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Forwards one request.
pub async fn forward(
    app: &App,
    route: &RouteSettings,
    req: Request<Incoming>,
    now: i64,
) -> Result<Response<Body>, Failure> {
    csrf::check_api_request(&app.settings, req.headers())
        .map_err(|e| Failure::new(Rejection::Forbidden, format!("proxy: {e}")))?;
    if !route.methods.is_empty() && !route.methods.contains(req.method()) {
        return Err(Failure::new(
            Rejection::MethodNotAllowed,
            format!("proxy: {}", req.method()),
        ));
    }
    let mut target = upstream_url(route, req.uri().path())
        .ok_or_else(|| Failure::new(Rejection::BadRequest, "proxy: unsafe path"))?;

    let mut reseal = None;
    let token = match (route.token, app.load_session(req.headers(), now)) {
        (TokenPolicy::None, _) => None,
        (_, SessionState::Active(mut a)) => {
            match app.refresh_if_due(&mut a.session, now).await {
                RefreshOutcome::Ready { refreshed } => a.reseal |= refreshed,
                RefreshOutcome::Ended => {
                    return Err(
                        Failure::new(Rejection::Unauthenticated, "refresh token rejected")
                            .with_cookies(app.clear_session(a.seen)),
                    );
                }
                RefreshOutcome::Failed(e) => {
                    return Err(Failure::new(Rejection::BadGateway, format!("refresh: {e}")));
                }
            }
            let bearer = a.session.access_token.expose();
            if a.reseal {
                reseal = Some(app.renewal_cookies(&a.session, now, a.seen));
            }
            Some(bearer)
        }
        (TokenPolicy::Optional, _) => None,
        (TokenPolicy::User, SessionState::Anonymous { seen }) => {
            return Err(Failure::new(Rejection::Unauthenticated, "proxy: anonymous")
                .with_cookies(app.clear_session(seen)));
        }
        (TokenPolicy::User, SessionState::Rejected { seen, why }) => {
            return Err(
                Failure::new(Rejection::Unauthenticated, why).with_cookies(app.clear_session(seen))
            );
        }
    };

    target.set_query(req.uri().query());
    let uri: Uri = target
        .as_str()
        .parse()
        .map_err(|_| Failure::new(Rejection::BadRequest, "proxy: bad target URI"))?;

    let (mut parts, body) = req.into_parts();
    strip_headers(&mut parts.headers);
    parts.headers.remove(HOST);
    parts.headers.remove(AUTHORIZATION);
    parts.headers.remove("forwarded");
    let forwarded: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-forwarded-"))
        .cloned()
        .collect();
    for k in forwarded {
        parts.headers.remove(k);
    }
    let kept_cookies: Vec<String> = crate::app::cookie_headers(&parts.headers)
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| !is_sealgate_cookie(app, c.name()))
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    parts.headers.remove(COOKIE);
    if !kept_cookies.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept_cookies.join("; "))
    {
        parts.headers.insert(COOKIE, v);
    }
    // sealgate's own forwarding headers (the client's were removed above).
    let public = &app.settings.server.public_url;
    if let Some(peer) = parts.extensions.get::<super::Peer>()
        && let Ok(v) = HeaderValue::from_str(&peer.0.ip().to_string())
    {
        parts.headers.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(public.scheme()) {
        parts.headers.insert("x-forwarded-proto", v);
    }
    if let Some(host) = public.host_str()
        && let Ok(v) = HeaderValue::from_str(&match public.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        })
    {
        parts.headers.insert("x-forwarded-host", v);
    }
    if let Some(bearer) = &token {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", bearer.expose()))
            .map_err(|_| Failure::new(Rejection::Internal, "access token is not a header value"))?;
        v.set_sensitive(true);
        parts.headers.insert(AUTHORIZATION, v);
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body.map_err(Into::into).boxed());

    let response = tokio::time::timeout(route.timeout, app.upstream.request(upstream_req))
        .await
        .map_err(|_| {
            Failure::new(
                Rejection::GatewayTimeout,
                format!("upstream {} timed out", route.prefix),
            )
        })?
        .map_err(|e| {
            Failure::new(
                Rejection::BadGateway,
                format!(
                    "upstream {}: {}",
                    route.prefix,
                    crate::oidc::error_chain(&e)
                ),
            )
        })?;

    let (mut parts, body) = response.into_parts();
    strip_headers(&mut parts.headers);
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
        if is_sealgate_cookie(app, name) || name == app.settings.session.cookie_name.as_str() {
            tracing::warn!(route = %route.prefix, "dropped an upstream Set-Cookie with sealgate's name");
            continue;
        }
        parts.headers.append(SET_COOKIE, c);
    }
    let r = Response::from_parts(parts, body.map_err(Into::into).boxed());
    Ok(match reseal {
        Some(cookies) => response::with_cookies(r, &cookies),
        None => r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_rests_are_refused() {
        for ok in ["", "/", "/orders/1", "/a.b/c", "/x?y"] {
            assert!(safe_rest(ok), "{ok}");
        }
        for bad in [
            "/\n../x",
            "/\t..",
            "/a b",
            "/%252e%252e/x",
            "/a%252Fb",
            "/..",
            "/a/../b",
            "/%2e%2e/x",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "//x",
            "/./x",
            "/%00",
        ] {
            assert!(!safe_rest(bad), "{bad}");
        }
    }
}
