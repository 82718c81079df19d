//! The upstream request: the browser's request with its headers rewritten (never sealgate's
//! cookies, a browser-supplied `Authorization`, hop-by-hop headers, or any header that names
//! the client or the original URL: `Forwarded`, `X-Forwarded-*`, `X-Real-IP`, …, see
//! [`crate::proxy::headers::CLIENT_CLAIMS`]), or a client's copy of the route's identity
//! headers; the bearer token and the identity headers attached, sent through this thread's pooled
//! client with the route's timeout. The body streams; nothing is buffered.
//!
//! A DPoP-bound token (RFC 9449 7) goes with a fresh proof for the request's method and
//! upstream URL (`htu`: scheme, host, port, path), its `ath`, and the upstream origin's latest
//! `DPoP-Nonce`, which any response may update. When the upstream answers 401 `DPoP
//! error="use_dpop_nonce"` with a new nonce, the request is sent once more with it, if its body
//! can be sent again: no body, or a body of known length up to 64 KiB, which is then read
//! before sending (only for DPoP requests). A larger or streaming body gets the 401 passed on;
//! the nonce serves the next request. Requests without DPoP take none of these steps.

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::upgrade::OnUpgrade;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

use crate::app::App;
use crate::config::{CookieForwarding, RouteSettings};
use crate::dpop::{self, Binding};
use crate::error::{Failure, Rejection};
use crate::header_names::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::metrics::{RouteLabel, metrics};
use crate::outbound::error_chain;
use crate::proxy::headers::{is_sealgate_cookie, strip_client_claims, strip_hop_by_hop};
use crate::proxy::websocket;
use crate::request::{RequestContext, cookie_headers};
use crate::response::Body;
use crate::telemetry::spans;
use crate::upstream::{self, Protocol};

/// The largest request body read ahead so that a DPoP request can be sent again with a new
/// nonce.
const MAX_REPLAYED_BODY: usize = 64 * 1024;

/// What sealgate adds to the upstream request for the user.
#[derive(Default)]
pub(super) struct Credentials {
    /// `Authorization: Bearer …` (or `DPoP …`); none for anonymous requests and `token =
    /// "none"`.
    pub bearer: Option<HeaderValue>,
    /// For a DPoP-bound token: what its proof needs, and the proof's `iat`.
    pub dpop: Option<(Binding, i64)>,
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

/// Sends `req` to `uri` (see [`crate::proxy::route::upstream_uri`]), with `credentials`
/// attached.
///
/// # Errors
/// 503 when no WebSocket tunnel slot is free, 502
/// when the upstream cannot be reached, 504 when it does not answer within the route's timeout.
pub(super) async fn send(
    app: &App,
    route: &RouteSettings,
    mut req: Request<Incoming>,
    uri: Uri,
    mut credentials: Credentials,
    context: RequestContext<'_>,
    websocket: bool,
) -> Result<Sent, Failure> {
    let upgrade = if websocket {
        let slot = websocket::take_slot(app)?;
        Some((hyper::upgrade::on(&mut req), slot))
    } else {
        None
    };
    let (mut parts, body) = req.into_parts();
    let dpop = credentials.dpop.take();
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
    let response = match dpop {
        None => {
            let upstream_req = Request::from_parts(parts, body.map_err(Into::into).boxed());
            dispatch(app, route, protocol, upstream_req).await?
        }
        Some((binding, now)) => {
            let url = parts.uri.to_string();
            let proving = Proving {
                binding: &binding,
                url: &url,
                now,
            };
            Box::pin(send_with_proof(app, route, protocol, parts, body, proving)).await?
        }
    };
    Ok(Sent { response, upgrade })
}

/// Sends one request through this thread's client for `protocol`, within the route's timeout.
async fn dispatch(
    app: &App,
    route: &RouteSettings,
    protocol: Protocol,
    mut upstream_req: Request<Body>,
) -> Result<Response<Incoming>, Failure> {
    let bad_gateway = |detail: String| {
        Failure::new(
            Rejection::BadGateway,
            format!("upstream {}: {detail}", route.prefix),
        )
    };
    // With traces exported: a client span per attempt, named in the upstream's `traceparent`.
    let span = spans::upstream_span(upstream_req.method(), &route.prefix, upstream_req.uri());
    spans::inject(&span, upstream_req.headers_mut());
    let pending = upstream::request(protocol, upstream_req);
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(route.timeout, pending)
        .instrument(span.clone())
        .await;
    if let Ok(Ok(response)) = &answer {
        spans::record_status(&span, response.status());
    }
    match app.prepared(route) {
        Some(p) => p.metrics.observe_upstream(started.elapsed()),
        None => metrics()
            .upstream_duration
            .get_or_create(&RouteLabel {
                route: route.prefix.clone(),
            })
            .observe(started.elapsed().as_secs_f64()),
    }
    answer
        .map_err(|_| {
            Failure::new(
                Rejection::GatewayTimeout,
                format!("upstream {} timed out", route.prefix),
            )
        })?
        .map_err(|e| bad_gateway(error_chain(&e)))
}

/// What a DPoP request's proofs are made of.
struct Proving<'a> {
    binding: &'a Binding,
    /// The upstream URL (its query and fragment are not part of `htu`).
    url: &'a str,
    now: i64,
}

/// Sends a request with a DPoP-bound token and its proof; once more with the upstream's new
/// nonce when it asks for one and the body can be sent again (see the module doc).
///
/// # Errors
/// As [`dispatch`]; 400 when a body read ahead fails or is longer than it said; 500 when no
/// proof can be signed.
async fn send_with_proof(
    app: &App,
    route: &RouteSettings,
    protocol: Protocol,
    parts: Parts,
    body: Incoming,
    proving: Proving<'_>,
) -> Result<Response<Incoming>, Failure> {
    let htu = dpop::htu(proving.url);
    let origin = dpop::origin(proving.url);
    let replayable = body.is_end_stream()
        || body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= MAX_REPLAYED_BODY as u64);
    let (replay, mut stream) = if replayable {
        // Read ahead only within the route's timeout: a client dripping a declared body must
        // not hold its buffer (and a request slot) for longer than a streamed body could.
        let read = tokio::time::timeout(
            route.timeout,
            Limited::new(body, MAX_REPLAYED_BODY).collect(),
        )
        .await
        .map_err(|_| Failure::new(Rejection::BodyTimeout, "proxy: request body too slow"))?;
        let bytes = read
            .map_err(|_| Failure::new(Rejection::BadRequest, "proxy: request body"))?
            .to_bytes();
        (Some(bytes), None)
    } else {
        (None::<Bytes>, Some(body))
    };
    let mut first = true;
    loop {
        let nonce = app.dpop_nonces.get(origin);
        let proof = proving
            .binding
            .key
            .proof(
                parts.method.as_str(),
                &htu,
                proving.now,
                nonce.as_deref(),
                Some(&proving.binding.ath),
            )
            .map_err(|e| Failure::new(Rejection::Internal, format!("DPoP proof: {e}")))?;
        let mut head = Request::new(()).into_parts().0;
        head.method = parts.method.clone();
        head.uri = parts.uri.clone();
        head.version = parts.version;
        head.headers = parts.headers.clone();
        head.headers.insert(dpop::DPOP, proof);
        let body = match (&replay, stream.take()) {
            (Some(bytes), _) => crate::response::full(bytes.clone()),
            (None, Some(s)) => s.map_err(Into::into).boxed(),
            // Without a replayable body there is no second attempt.
            (None, None) => {
                return Err(Failure::new(
                    Rejection::Internal,
                    "proxy: body already sent",
                ));
            }
        };
        let response = dispatch(app, route, protocol, Request::from_parts(head, body)).await?;
        let given = dpop::nonce_of(response.headers()).map(str::to_owned);
        if let Some(given) = &given {
            app.dpop_nonces.put(origin, given);
        }
        let retry = first
            && replay.is_some()
            && given.is_some()
            && given.as_deref() != nonce.as_deref()
            && dpop::upstream_wants_nonce(response.status().as_u16(), response.headers());
        if !retry {
            return Ok(response);
        }
        first = false;
        tracing::debug!(route = %route.prefix, "upstream asked for a DPoP nonce; retrying once");
    }
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
        headers.insert(X_FORWARDED_FOR, v.clone());
    }
    if let Some(v) = &app.forwarded.proto {
        headers.insert(X_FORWARDED_PROTO, v.clone());
    }
    if let Some(v) = &app.forwarded.host {
        headers.insert(X_FORWARDED_HOST, v.clone());
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
        headers.insert(X_REQUEST_ID, id.clone());
    }
}
