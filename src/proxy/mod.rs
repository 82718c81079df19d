//! Proxied routes: `prefix/*` to the route's upstream, with `Authorization: Bearer <access
//! token>` attached per the route's token policy. Bodies stream both ways.
//!
//! Never forwarded: sealgate's cookies, a browser-supplied `Authorization`, hop-by-hop headers,
//! client-supplied `Forwarded` / `X-Forwarded-*`, a client's copy of a route's identity
//! header. Paths that could escape the route (`..`,
//! encoded slashes or dots, backslashes, empty segments) are refused. Upstream `Set-Cookie`s
//! with sealgate's cookie names are dropped. Other browser cookies reach the upstream only as
//! the route's `forward_cookies` allows (none by default).
//!
//! WebSocket upgrades (routes with `websocket = true`, HTTP/1.1 only) are checked by `Origin`
//! instead of the anti-forgery header, get the token attached like any request, and become a
//! byte tunnel counted against `server.max_connections`; the tunnel closes when the session is
//! revoked or reaches its absolute expiry.
//!
//! A call reads top-down, each step its own module that does not call back up:
//! [`route`] matches the path → [`authorize`] turns cookies and headers into a decision
//! (anonymous, bearer token, re-sealed cookie, refusal), applying the route's [`rules`]
//! (step-up, claim rules, identity headers) → [`forward`] rewrites the headers (with a DPoP
//! proof for a bound token) and streams the request upstream → [`filter`] cleans the response; [`websocket`] turns an
//! accepted upgrade into a tunnel.

mod authorize;
mod filter;
mod forward;
pub(crate) mod headers;
mod own_token;
pub(crate) mod route;
mod rules;
mod websocket;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::config::RouteSettings;
use crate::error::{Failure, Rejection};
use crate::request::RequestContext;
use crate::response::Body;

/// Proxies one request on `route`.
///
/// # Errors
/// A [`Failure`] for every refusal (see [`authorize`] and [`forward`]); nothing has been sent
/// upstream unless the upstream itself failed.
pub(crate) async fn handle(
    app: &App,
    route: &RouteSettings,
    req: Request<Incoming>,
    now: i64,
    context: RequestContext<'_>,
) -> Result<Response<Body>, Failure> {
    // Never forwarded, whatever `methods` allows: TRACE echoes the request (with whatever
    // credentials an upstream adds) back to the caller (cross-site tracing); TRACK is IIS's.
    if matches!(req.method().as_str(), "TRACE" | "TRACK") {
        return Err(Failure::new(
            Rejection::MethodNotAllowed,
            format!("proxy: {} is never forwarded", req.method()),
        ));
    }
    let websocket = websocket::is_upgrade(&req);
    if websocket && !route.websocket {
        return Err(Failure::new(
            Rejection::BadRequest,
            format!(
                "proxy: WebSocket upgrade on {} (websocket = false)",
                route.prefix
            ),
        ));
    }
    app.limits
        .check_route_address(route, context.peer.ip, req.headers())
        .map_err(|l| l.into_failure(&route.prefix))?;
    let checked = authorize::check(app, route, req.headers(), req.method(), websocket, now)?;
    if let Some(session) = checked.session() {
        app.limits
            .check_route_session(route, &session.id)
            .map_err(|l| l.into_failure(&route.prefix))?;
    }
    let origin = app.prepared(route).and_then(|p| p.upstream.as_ref());
    let target = route::upstream_uri(route, origin, req.uri().path(), req.uri().query())
        .ok_or_else(|| Failure::new(Rejection::BadRequest, "proxy: unsafe path"))?;
    let decision = checked.decide(app, route, websocket, now).await?;
    let sent = forward::send(
        app,
        route,
        req,
        target,
        forward::Credentials {
            bearer: decision.bearer,
            dpop: decision.dpop.map(|b| (b, now)),
            identity: decision.identity,
        },
        context,
        websocket,
    )
    .await;
    // A session refreshed or renewed on the way keeps its new cookie even when the upstream
    // failed: its old refresh token may already be spent.
    let forward::Sent {
        mut response,
        upgrade,
    } = sent.map_err(|f| match &decision.reseal {
        Some(cookies) => f.with_cookies(cookies.iter().cloned()),
        None => f,
    })?;
    let switching = websocket && response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some((client, slot)) = upgrade {
        let upstream = hyper::upgrade::on(&mut response);
        websocket::spawn_tunnel(app, route, client, upstream, decision.session, slot);
    }
    let cookie_base = app.settings.session.cookie_name.as_str();
    Ok(filter::response(
        cookie_base,
        route,
        response,
        switching,
        decision.reseal,
    ))
}
