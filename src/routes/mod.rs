//! Request routing: one file per endpoint. Every handler returns `Result<Response, Failure>`;
//! [`handle`] turns failures into responses in one place, so hyper never sees an error.
//!
//! Routing order: the BFF endpoints (everything at or under `bff.prefix`), `/healthz`, the
//! proxied routes (longest prefix first), and last, when `[static]` is configured, the SPA's
//! files ([`static_files`]); otherwise a 404 problem.

pub mod backchannel;
pub mod callback;
pub mod login;
pub mod logout;
pub mod proxy;
pub mod static_files;
pub mod user;

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use tracing::Instrument as _;

use crate::config::RouteSettings;
use crate::error::{Failure, Rejection};
use crate::metrics::{RequestLabels, StatusClass, metrics};
use crate::response::{self, Body};
use crate::telemetry::RequestId;

/// Serves one request.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: Arc<Peer>,
) -> Result<Response<Body>, Infallible> {
    let now = app.clock.now();
    // Only origin-form targets: an absolute-form target or CONNECT would let a client name
    // another host (HTTP/2 always carries :authority, so only HTTP/1 is checked).
    if req.method() == Method::CONNECT
        || (req.version() < http::Version::HTTP_2 && req.uri().authority().is_some())
    {
        let f = Failure::new(Rejection::BadRequest, "absolute-form target or CONNECT");
        return Ok(f.into_response(&app.login_href()));
    }
    let origin = cors_origin(&app, &req);
    if req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method")
    {
        return Ok(preflight(&app, origin));
    }
    // Matched once: the metrics label and the routing below use the same answer.
    let matched = proxy::match_route(&app.settings.routes, req.uri().path());
    let label = route_label(&app, req.uri().path(), matched);
    let id = RequestId::for_request(req.headers());
    let span = tracing::info_span!("request", id = %id.0, method = %req.method(), route = %label);
    let header = HeaderValue::from_str(&id.0).ok();
    let context = RequestContext {
        peer: &peer,
        request_id: header.as_ref(),
    };
    let result = route(&app, req, now, matched, context)
        .instrument(span)
        .await;
    let mut response = result.unwrap_or_else(|failure| failure.into_response(&app.login_href()));
    if let Some(origin) = origin {
        allow_origin(&mut response, origin);
    }
    if let Some(v) = header {
        response.headers_mut().insert("x-request-id", v);
    }
    metrics()
        .requests
        .get_or_create(&RequestLabels {
            route: label,
            class: StatusClass::of(response.status()),
        })
        .inc();
    Ok(response)
}

/// Counts a login or logout by outcome; the reason is the kind of failure, never its detail.
fn count_outcome(
    family: &prometheus_client::metrics::family::Family<
        crate::metrics::OutcomeLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    result: &Result<Response<Body>, Failure>,
) {
    let reason = match result {
        Ok(_) => {
            crate::metrics::Metrics::outcome(family, "success", "");
            return;
        }
        Err(f) => match &f.rejection {
            Rejection::LoginFailed { status, .. } if status.is_server_error() => "idp",
            Rejection::LoginFailed { .. } => "rejected",
            Rejection::LogoutRefused => "sid_mismatch",
            Rejection::Forbidden => "forbidden",
            Rejection::Unavailable | Rejection::StoreUnavailable | Rejection::RetryLater => {
                "store_unavailable"
            }
            Rejection::InvalidLogoutRequest => "invalid_request",
            Rejection::PayloadTooLarge => "too_large",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::Internal => "internal",
            _ => "bad_request",
        },
    };
    crate::metrics::Metrics::outcome(family, "failure", reason);
}

/// The metrics label of the handler for `path`: one of a fixed set, never request data.
fn route_label(app: &App, path: &str, matched: Option<&RouteSettings>) -> String {
    let bff = app.settings.bff.prefix.as_str();
    if let Some(endpoint) = path.strip_prefix(bff).filter(|r| r.starts_with('/')) {
        return match endpoint {
            "/login" | "/callback" | "/user" | "/logout" | "/backchannel-logout" => {
                format!("{bff}{endpoint}")
            }
            _ => format!("{bff}/*"),
        };
    }
    match path {
        "/healthz" | "/readyz" | "/metrics" => return path.to_owned(),
        _ => {}
    }
    if let Some(route) = matched {
        return if route.prefix.is_empty() {
            "/".to_owned()
        } else {
            route.prefix.clone()
        };
    }
    if app.settings.static_files.is_some() {
        "static".to_owned()
    } else {
        "unmatched".to_owned()
    }
}

/// The request's `Origin` when it is an allowed *other* origin (same-origin requests need no
/// CORS headers). Never a reflected arbitrary origin, never `*`.
fn cors_origin(app: &App, req: &Request<Incoming>) -> Option<HeaderValue> {
    let origin = req.headers().get(http::header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    app.settings
        .bff
        .allowed_origins
        .iter()
        .any(|o| o == text)
        .then(|| origin.clone())
}

fn allow_origin(response: &mut Response<Body>, origin: HeaderValue) {
    let h = response.headers_mut();
    h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

/// A CORS preflight: 204 with the exact origin for allowed origins, 403 otherwise.
fn preflight(app: &App, origin: Option<HeaderValue>) -> Response<Body> {
    let Some(origin) = origin else {
        return response::problem(StatusCode::FORBIDDEN, "forbidden");
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
    r
}

async fn route(
    app: &App,
    req: Request<Incoming>,
    now: i64,
    matched: Option<&RouteSettings>,
    context: RequestContext<'_>,
) -> Result<Response<Body>, Failure> {
    let path = req.uri().path();
    let prefix = app.settings.bff.prefix.as_str();
    // The prefix itself belongs to the BFF too: `/bff` never reaches the static files.
    if let Some(endpoint) = path
        .strip_prefix(prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        return match (endpoint, req.method()) {
            ("/login", &Method::GET) => login::login(app, &req, now),
            ("/callback", &Method::GET) => {
                let r = callback::callback(app, &req, now).await;
                count_outcome(&metrics().logins, &r);
                r
            }
            ("/user", &Method::GET) => user::user(app, &req, now),
            ("/logout", &Method::GET | &Method::POST) => {
                let r = logout::logout(app, &req, now).await;
                count_outcome(&metrics().logouts, &r);
                r
            }
            ("/backchannel-logout", &Method::POST) => {
                let r = backchannel::backchannel_logout(app, req, now).await;
                count_outcome(&metrics().backchannel_logouts, &r);
                r
            }
            ("/login" | "/callback" | "/user" | "/logout" | "/backchannel-logout", _) => {
                Err(Failure::new(
                    Rejection::MethodNotAllowed,
                    format!("{} {path}", req.method()),
                ))
            }
            _ => Err(Failure::new(Rejection::NotFound, path.to_owned())),
        };
    }
    match path {
        "/healthz" => {
            return Ok(response::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ok"}),
            ));
        }
        "/readyz" => return Ok(readiness(app)),
        "/metrics" if app.settings.metrics.on_main_listener() => {
            return Ok(metrics_page(app));
        }
        _ => {}
    }
    if let Some(route) = matched {
        return proxy::forward(app, route, req, now, context).await;
    }
    // Last: the SPA's files, for whatever nothing above handles.
    if let Some(site) = &app.settings.static_files {
        return static_files::serve(site, &req).await;
    }
    Err(Failure::new(Rejection::NotFound, path.to_owned()))
}

/// The metrics in Prometheus text format; gauges are read from this instance now.
pub fn metrics_page(app: &App) -> Response<Body> {
    let text = metrics().render(app.denylist.len(), app.denylist.overflows());
    let mut r = Response::new(response::full(text));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

/// Ready when the IdP's metadata is loaded (always, once started: discovery happens before the
/// listener opens) and, in a cluster, the Redis store is reachable and synchronised.
fn readiness(app: &App) -> Response<Body> {
    let cluster = app.cluster.as_ref().map(|c| c.healthy());
    let ready = cluster.unwrap_or(true);
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "idp": "ok",
        "cluster": match cluster {
            None => "not configured",
            Some(true) => "ok",
            Some(false) => "unavailable",
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response::json(status, &body)
}

/// The client of a connection, as seen by the listener (made once per connection).
#[derive(Debug)]
pub struct Peer {
    /// Its IP as an `X-Forwarded-For` value.
    forwarded_for: Option<HeaderValue>,
}

impl Peer {
    /// The client at `addr`.
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            forwarded_for: HeaderValue::from_str(&addr.ip().to_string()).ok(),
        }
    }
}

/// What handlers know about a request beyond the request itself.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The connection's client.
    pub peer: &'a Peer,
    /// The request's correlation id, as a header value.
    pub request_id: Option<&'a HeaderValue>,
}

impl RequestContext<'_> {
    /// The client's IP as an `X-Forwarded-For` value.
    pub fn forwarded_for(&self) -> Option<&HeaderValue> {
        self.peer.forwarded_for.as_ref()
    }
}

/// The single value of query parameter `name`; `Err` if it appears more than once.
pub(crate) fn single_param(query: Option<&str>, name: &str) -> Result<Option<String>, ()> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}
