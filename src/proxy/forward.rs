//! The upstream request: the browser's request with its headers rewritten (never sealgate's
//! cookies, a browser-supplied `Authorization`, hop-by-hop headers, or any header that names
//! the client or the original URL: `Forwarded`, `X-Forwarded-*`, `X-Real-IP`, …, see
//! [`crate::proxy::headers::CLIENT_CLAIMS`]), or a client's copy of the route's identity
//! headers; the bearer token and the identity headers attached, sent through this thread's pooled
//! client with the route's timeout. The body streams; nothing is buffered.

use http::header::{AUTHORIZATION, COOKIE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::config::{CookieForwarding, RouteSettings};
use crate::error::{Failure, Rejection};
use crate::metrics::{RouteLabel, metrics};
use crate::outbound::error_chain;
use crate::proxy::headers::{is_sealgate_cookie, strip_client_claims, strip_hop_by_hop};
use crate::proxy::websocket;
use crate::request::{RequestContext, cookie_headers};
use crate::upstream::{self, Protocol};

/// What sealgate adds to the upstream request for the user.
#[derive(Default)]
pub(super) struct Credentials {
    /// `Authorization: Bearer …`; none for anonymous requests and `token = "none"`.
    pub bearer: Option<HeaderValue>,
    /// The route's identity headers with the session's claim values (the client's copies of
    /// every identity header the route names are removed whatever this holds).
    pub identity: Vec<(HeaderName, HeaderValue)>,
}

/// The upstream's answer, and for a WebSocket upgrade the browser's side of it.
#[derive(Debug)]
pub(super) struct Sent {
    /// The upstream's response head and streaming body.
    pub response: Response<Incoming>,
    /// The browser's connection once upgraded, and the tunnel slot it holds.
    pub upgrade: Option<(OnUpgrade, OwnedSemaphorePermit)>,
}

/// Sends `req` to `target` (its query is the request's), with `credentials` attached.
///
/// # Errors
/// 400 for a target that is not a valid URI, 503 when no WebSocket tunnel slot is free, 502
/// when the upstream cannot be reached, 504 when it does not answer within the route's timeout.
pub(super) async fn send(
    app: &App,
    route: &RouteSettings,
    mut req: Request<Incoming>,
    mut target: url::Url,
    credentials: Credentials,
    context: RequestContext<'_>,
    websocket: bool,
) -> Result<Sent, Failure> {
    target.set_query(req.uri().query());
    let uri: Uri = target
        .as_str()
        .parse()
        .map_err(|_| Failure::new(Rejection::BadRequest, "proxy: bad target URI"))?;
    let upgrade = if websocket {
        let slot = websocket::take_slot(app)?;
        Some((hyper::upgrade::on(&mut req), slot))
    } else {
        None
    };
    let (mut parts, body) = req.into_parts();
    rewrite_headers(app, route, &mut parts.headers, credentials, context);
    if websocket {
        websocket::set_upgrade_headers(&mut parts.headers);
    }
    parts.uri = uri;
    let protocol = if websocket {
        Protocol::Http1
    } else if route.http2 {
        Protocol::Http2
    } else {
        Protocol::Default
    };
    parts.version = if protocol == Protocol::Http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    let upstream_req = Request::from_parts(parts, body.map_err(Into::into).boxed());
    let bad_gateway = |detail: String| {
        Failure::new(
            Rejection::BadGateway,
            format!("upstream {}: {detail}", route.prefix),
        )
    };
    let pending =
        upstream::request(protocol, upstream_req).map_err(|e| bad_gateway(error_chain(&e)))?;
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(route.timeout, pending).await;
    metrics()
        .upstream_duration
        .get_or_create(&RouteLabel {
            route: route.prefix.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    let response = answer
        .map_err(|_| {
            Failure::new(
                Rejection::GatewayTimeout,
                format!("upstream {} timed out", route.prefix),
            )
        })?
        .map_err(|e| bad_gateway(error_chain(&e)))?;
    Ok(Sent { response, upgrade })
}

/// The browser's headers as the upstream gets them.
fn rewrite_headers(
    app: &App,
    route: &RouteSettings,
    headers: &mut HeaderMap,
    credentials: Credentials,
    context: RequestContext<'_>,
) {
    strip_hop_by_hop(headers);
    headers.remove(HOST);
    headers.remove(AUTHORIZATION);
    // A client's copy of an identity header (of any route) is never forwarded, whether or not
    // the session has the claim (or there is a session at all).
    strip_client_claims(headers, &app.identity_headers);
    let kept_cookies: Vec<String> = if route.forward_cookies == CookieForwarding::None {
        Vec::new()
    } else {
        let base = app.settings.session.cookie_name.as_str();
        cookie_headers(headers)
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| {
                !is_sealgate_cookie(base, c.name()) && route.forward_cookies.allows(c.name())
            })
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect()
    };
    headers.remove(COOKIE);
    if !kept_cookies.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept_cookies.join("; "))
    {
        headers.insert(COOKIE, v);
    }
    // sealgate's own forwarding headers (the client's were removed above).
    if let Some(v) = context.forwarded_for() {
        headers.insert("x-forwarded-for", v.clone());
    }
    if let Some(v) = &app.forwarded.proto {
        headers.insert("x-forwarded-proto", v.clone());
    }
    if let Some(v) = &app.forwarded.host {
        headers.insert("x-forwarded-host", v.clone());
    }
    // Inserted after the hop-by-hop removal, so no `Connection` list can take it away.
    if let Some(bearer) = credentials.bearer {
        headers.insert(AUTHORIZATION, bearer);
    }
    for (name, value) in credentials.identity {
        headers.insert(name, value);
    }
    // The request's correlation id goes upstream too (the client's, if it sent a valid one).
    if let Some(id) = context.request_id {
        headers.insert("x-request-id", id.clone());
    }
}
