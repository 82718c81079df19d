//! WebSocket upgrades (routes with `websocket = true`, HTTP/1.1 only): recognised here,
//! checked by `Origin` instead of the anti-forgery header ([`super::authorize`]), given a
//! tunnel slot before anything goes upstream, and, once the upstream switches protocols, turned
//! into a byte tunnel counted against `server.max_connections` that closes when the session is
//! revoked or reaches its absolute expiry.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::config::RouteSettings;
use crate::error::{Failure, Rejection};
use crate::session::Session;

/// Whether `req` asks for a WebSocket upgrade (HTTP/1.1 `Upgrade: websocket` with
/// `Connection: upgrade`; RFC 6455 §4.1).
pub(super) fn is_upgrade<B>(req: &Request<B>) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.version() == http::Version::HTTP_11
        && req.method() == Method::GET
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
}

/// A tunnel slot, taken before anything is sent upstream so that a flood of upgrades cannot
/// open unbounded upstream connections.
///
/// # Errors
/// 503 when `server.max_connections` tunnels are open.
pub(super) fn take_slot(app: &App) -> Result<OwnedSemaphorePermit, Failure> {
    app.tunnels.clone().try_acquire_owned().map_err(|_| {
        Failure::new(
            Rejection::Overloaded,
            "proxy: WebSocket tunnel limit reached",
        )
    })
}

/// The upgrade headers of a WebSocket handshake (hop-by-hop, so re-added after stripping).
pub(super) fn set_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// How often an open WebSocket tunnel re-checks its session (revoked or expired: closed).
const TUNNEL_CHECK: Duration = Duration::from_secs(2);

/// Copies bytes both ways between the browser's and the upstream's upgraded connections, in
/// the background. A tunnel opened with a session is closed once that session is revoked or
/// reaches its absolute expiry (logout ends WebSockets too), or while the cluster store is
/// unavailable and the policy refuses sessions.
pub(super) fn spawn_tunnel(
    app: &App,
    route: &RouteSettings,
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    session: Option<Arc<Session>>,
    slot: OwnedSemaphorePermit,
) {
    let denylist = app.denylist.clone();
    let issuer = session
        .as_ref()
        .and_then(|s| app.provider_of(s))
        .map(|p| p.issuer().to_owned())
        .unwrap_or_default();
    let clock = app.clock.clone();
    let cluster = app.cluster.clone();
    let prefix = route.prefix.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(route = %prefix, error = %e, "WebSocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        let mut ticks = tokio::time::interval(TUNNEL_CHECK);
        loop {
            tokio::select! {
                done = &mut copy => {
                    if let Err(e) = done {
                        tracing::debug!(route = %prefix, error = %e, "WebSocket tunnel ended");
                    }
                    return;
                }
                _ = ticks.tick() => {
                    if let Some(s) = &session
                        && (denylist.is_revoked(s, &issuer) || clock.now() >= s.absolute_expires_at)
                    {
                        tracing::info!(route = %prefix, session = ?s.id, "WebSocket closed: session ended");
                        return;
                    }
                    // While the cluster store is unavailable (policy refuse), or this
                    // instance's lease has run out, a revocation may be missed: as requests
                    // are refused, sessions' tunnels are closed.
                    if session.is_some() && cluster.as_ref().is_some_and(|c| c.refuses()) {
                        tracing::info!(route = %prefix, "WebSocket closed: cluster store unavailable");
                        return;
                    }
                }
            }
        }
    });
}
