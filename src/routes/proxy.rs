//! Proxied routes: `prefix/*` to the route's upstream, with `Authorization: Bearer <access
//! token>` attached per the route's token policy. Bodies stream both ways.
//!
//! Never forwarded: sealgate's cookies, a browser-supplied `Authorization`, hop-by-hop headers,
//! client-supplied `Forwarded` / `X-Forwarded-*`. Paths that could escape the route (`..`,
//! encoded slashes or dots, backslashes, empty segments) are refused. Upstream `Set-Cookie`s
//! with sealgate's cookie names are dropped. Other browser cookies reach the upstream only as
//! the route's `forward_cookies` allows (none by default).
//!
//! WebSocket upgrades (routes with `websocket = true`, HTTP/1.1 only) are checked by `Origin`
//! instead of the anti-forgery header, get the token attached like any request, and become a
//! byte tunnel counted against `server.max_connections`; the tunnel closes when the session is
//! revoked or reaches its absolute expiry.

use std::time::Duration;

use http::header::{AUTHORIZATION, CONNECTION, COOKIE, HOST, SET_COOKIE, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::app::{App, RefreshOutcome, SessionState};
use crate::config::{CookieForwarding, CsrfMode, RouteSettings, TokenPolicy};
use crate::csrf;
use crate::error::{Failure, Rejection};
use crate::response::{self, Body};
use crate::seal::jar::IndexSet;

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

/// One pooled upstream client.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The pooled clients for upstreams, one per running server (so connection pools never outlive
/// the runtime that drives them):
/// - `default`: HTTP/1.1 over plain TCP; over TLS, h2 when the upstream offers it by ALPN;
/// - `http2`: HTTP/2 only (`http2 = true` routes): h2c with prior knowledge, or h2 over TLS;
/// - `http1`: HTTP/1.1 only, for WebSocket upgrades (RFC 6455 needs HTTP/1.1).
#[derive(Debug, Clone)]
pub struct UpstreamClients {
    default: UpstreamClient,
    http2: UpstreamClient,
    http1: UpstreamClient,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` of the public URL, built once.
    forwarded_proto: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
}

impl UpstreamClients {
    /// Builds the clients.
    ///
    /// # Errors
    /// When no TLS configuration can be built.
    pub fn new(public_url: &url::Url) -> Result<Self, crate::oidc::http::HttpError> {
        let tcp = || {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(Duration::from_secs(10)));
            http.set_nodelay(true);
            http
        };
        let roots = crate::oidc::http::tls_roots;
        let default = roots()?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp());
        let http2 = roots()?
            .https_or_http()
            .enable_http2()
            .wrap_connector(tcp());
        let http1 = roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp());
        Ok(Self {
            default: Client::builder(TokioExecutor::new())
                .http1_writev(false)
                .build(default),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(http2),
            http1: Client::builder(TokioExecutor::new())
                .http1_writev(false)
                .build(http1),
            forwarded_proto: HeaderValue::from_str(public_url.scheme()).ok(),
            forwarded_host: public_url.host_str().and_then(|host| {
                HeaderValue::from_str(&match public_url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_owned(),
                })
                .ok()
            }),
        })
    }

    fn for_request(&self, route: &RouteSettings, websocket: bool) -> &UpstreamClient {
        if websocket {
            &self.http1
        } else if route.http2 {
            &self.http2
        } else {
            &self.default
        }
    }
}

fn is_sealgate_cookie(app: &App, name: &str) -> bool {
    let base = app.settings.session.cookie_name.as_str();
    name.strip_prefix(base).is_some_and(|rest| {
        rest.is_empty() || rest.starts_with('.') || rest.starts_with("-login-") || rest == "-csrf"
    })
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

/// Whether `req` asks for a WebSocket upgrade (HTTP/1.1 `Upgrade: websocket` with
/// `Connection: upgrade`; RFC 6455 §4.1).
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
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

/// Forwards one request.
pub async fn forward(
    app: &App,
    route: &RouteSettings,
    mut req: Request<Incoming>,
    now: i64,
    context: super::RequestContext<'_>,
) -> Result<Response<Body>, Failure> {
    let websocket = is_websocket_upgrade(&req);
    if websocket && !route.websocket {
        return Err(Failure::new(
            Rejection::BadRequest,
            format!(
                "proxy: WebSocket upgrade on {} (websocket = false)",
                route.prefix
            ),
        ));
    }
    // The session is read before the anti-forgery check (a double-submit token is bound to it)
    // but nothing is done with it, and no refresh happens, until the request has passed.
    let needs_session = route.token != TokenPolicy::None
        || (app.settings.bff.csrf_mode == CsrfMode::DoubleSubmit && !websocket);
    let state = if needs_session {
        app.load_session(req.headers(), now)
    } else {
        SessionState::Anonymous {
            seen: IndexSet::default(),
        }
    };
    let checked = if websocket {
        csrf::check_websocket_origin(&app.settings, req.headers())
    } else {
        csrf::check_api_request(&app.settings, req.headers(), state.session())
    };
    checked.map_err(|e| Failure::new(Rejection::Forbidden, format!("proxy: {e}")))?;
    if !route.methods.is_empty() && !route.methods.contains(req.method()) {
        return Err(Failure::new(
            Rejection::MethodNotAllowed,
            format!("proxy: {}", req.method()),
        ));
    }
    let mut target = upstream_url(route, req.uri().path())
        .ok_or_else(|| Failure::new(Rejection::BadRequest, "proxy: unsafe path"))?;

    let mut reseal = None;
    let mut tunnel_session = None;
    let token = match (route.token, state) {
        (TokenPolicy::None, _) => None,
        (_, SessionState::Active(mut a)) => {
            let refreshed = match app.refresh_if_due(&mut a.session, now).await {
                RefreshOutcome::Ready { refreshed } => refreshed,
                RefreshOutcome::Ended => {
                    return Err(
                        Failure::new(Rejection::Unauthenticated, "refresh token rejected")
                            .with_cookies(app.clear_session(a.seen)),
                    );
                }
                RefreshOutcome::Failed(e) => {
                    return Err(Failure::new(Rejection::BadGateway, format!("refresh: {e}")));
                }
            };
            a.reseal |= refreshed;
            // The header made when the cookie was opened, unless the tokens just changed.
            let bearer = match a.bearer.take() {
                Some(b) if !refreshed => Some(b),
                _ => crate::session_cache::bearer(&a.session),
            }
            .ok_or_else(|| {
                Failure::new(Rejection::Internal, "access token is not a header value")
            })?;
            if a.reseal {
                reseal = Some(app.renewal_cookies(&a.session, now, a.seen));
            }
            if websocket {
                tunnel_session = Some(a.session);
            }
            Some(bearer)
        }
        (_, SessionState::Unverified(_)) => {
            return Err(Failure::new(
                Rejection::StoreUnavailable,
                "proxy: cluster store unavailable",
            ));
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

    // A tunnel slot is taken before anything is sent upstream, so a flood of upgrades cannot
    // open unbounded upstream connections.
    let (client_upgrade, slot) = if websocket {
        let slot = app.tunnels.clone().try_acquire_owned().map_err(|_| {
            Failure::new(
                Rejection::Overloaded,
                "proxy: WebSocket tunnel limit reached",
            )
        })?;
        (Some(hyper::upgrade::on(&mut req)), Some(slot))
    } else {
        (None, None)
    };

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
    let kept_cookies: Vec<String> = if route.forward_cookies == CookieForwarding::None {
        Vec::new()
    } else {
        crate::app::cookie_headers(&parts.headers)
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| {
                !is_sealgate_cookie(app, c.name()) && route.forward_cookies.allows(c.name())
            })
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect()
    };
    parts.headers.remove(COOKIE);
    if !kept_cookies.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept_cookies.join("; "))
    {
        parts.headers.insert(COOKIE, v);
    }
    // sealgate's own forwarding headers (the client's were removed above).
    if let Some(v) = context.forwarded_for() {
        parts.headers.insert("x-forwarded-for", v.clone());
    }
    let upstream = app.upstream();
    if let Some(v) = &upstream.forwarded_proto {
        parts.headers.insert("x-forwarded-proto", v.clone());
    }
    if let Some(v) = &upstream.forwarded_host {
        parts.headers.insert("x-forwarded-host", v.clone());
    }
    // Inserted after the hop-by-hop removal, so no `Connection` list can take it away.
    if let Some(bearer) = token {
        parts.headers.insert(AUTHORIZATION, bearer);
    }
    if websocket {
        set_websocket_upgrade(&mut parts.headers);
    }
    // The request's correlation id goes upstream too (the client's, if it sent a valid one).
    if let Some(id) = context.request_id {
        parts.headers.insert("x-request-id", id.clone());
    }
    parts.uri = uri;
    parts.version = if route.http2 && !websocket {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    let upstream_req = Request::from_parts(parts, body.map_err(Into::into).boxed());
    let client = upstream.for_request(route, websocket);

    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(route.timeout, client.request(upstream_req)).await;
    crate::metrics::metrics()
        .upstream_duration
        .get_or_create(&crate::metrics::RouteLabel {
            route: route.prefix.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    let mut response = answer
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

    let switching = websocket && response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let (Some(client), Some(slot)) = (client_upgrade, slot) {
        let upstream = hyper::upgrade::on(&mut response);
        tunnel(app, route, client, upstream, tunnel_session, slot);
    }
    let (mut parts, body) = response.into_parts();
    strip_headers(&mut parts.headers);
    if switching {
        set_websocket_upgrade(&mut parts.headers);
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
        if is_sealgate_cookie(app, name) {
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

/// The upgrade headers of a WebSocket handshake (hop-by-hop, so re-added after stripping).
fn set_websocket_upgrade(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// How often an open WebSocket tunnel re-checks its session (revoked or expired: closed).
const TUNNEL_CHECK: Duration = Duration::from_secs(2);

/// Copies bytes both ways between the browser's and the upstream's upgraded connections, in
/// the background. A tunnel opened with a session is closed once that session is revoked or
/// reaches its absolute expiry: logout ends WebSockets too.
fn tunnel(
    app: &App,
    route: &RouteSettings,
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    session: Option<std::sync::Arc<crate::session::Session>>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let denylist = app.denylist.clone();
    let issuer = app.provider.issuer().to_owned();
    let clock = app.clock.clone();
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
                }
            }
        }
    });
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
