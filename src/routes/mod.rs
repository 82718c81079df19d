//! The router: one file per endpoint. Every handler returns `Result<Response, Failure>`;
//! [`handle`] turns failures into responses in one place ([`crate::error`]), so hyper never
//! sees an error.
//!
//! Routing order: CORS preflights ([`cors`]), the BFF endpoints (everything at or under
//! `bff.prefix`), `/healthz`, `/readyz`, `/metrics` ([`health`]), the proxied routes
//! ([`crate::proxy`], longest prefix first), and last, when `[static]` is configured, the SPA's
//! files ([`crate::static_files`]); otherwise a 404 problem.

mod backchannel;
pub(crate) mod callback;
mod cors;
pub(crate) mod health;
mod login;
mod logout;
mod user;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use tracing::Instrument as _;

use crate::app::App;
use crate::config::RouteSettings;
use crate::error::{Failure, Rejection};
use crate::limits::Endpoint;
use crate::metrics::{RequestLabels, StatusClass, metrics};
use crate::proxy;
use crate::request::{Peer, RequestContext};
use crate::response::Body;
use crate::static_files;
use crate::telemetry::RequestId;

/// Serves one request.
pub(crate) async fn handle(
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
    let origin = cors::allowed_origin(&app, &req);
    if req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method")
    {
        return Ok(cors::preflight(&app, origin)
            .unwrap_or_else(|failure| failure.into_response(&app.login_href())));
    }
    // Matched once: the metrics label and the routing below use the same answer.
    let matched = proxy::route::match_route(&app.settings.routes, req.uri().path());
    // A proxied route's handles carry its label; sealgate's own endpoints have theirs even
    // under a route's prefix (a route for `/` matches every path).
    let own = own_label(&app, req.uri().path());
    let route_metrics = matched
        .filter(|_| own.is_none())
        .and_then(|r| app.prepared(r))
        .map(|p| &p.metrics);
    let label: Cow<'_, str> = match (own, route_metrics) {
        (Some(own), _) => Cow::Owned(own),
        (None, Some(m)) => Cow::Borrowed(m.label()),
        (None, None) => Cow::Owned(served_label(&app, matched)),
    };
    let id = RequestId::for_request(req.headers());
    let span = tracing::info_span!("request", id = %id.0, method = %req.method(), route = %label);
    let header = request_id_header(&id);
    let context = RequestContext {
        peer: &peer,
        request_id: header.as_ref(),
    };
    // With traces exported, the server span (a child of the browser's `traceparent`) runs
    // inside the log's request span; it is not a log span, so the log lines stay the same.
    let trace = crate::telemetry::spans::server_span(req.method(), &label, req.headers());
    let result = match &trace {
        None => {
            route(&app, req, now, matched, context)
                .instrument(span)
                .await
        }
        Some(trace) => {
            route(&app, req, now, matched, context)
                .instrument(trace.clone())
                .instrument(span)
                .await
        }
    };
    let mut response = result.unwrap_or_else(|failure| failure.into_response(&app.login_href()));
    if let Some(trace) = &trace {
        crate::telemetry::spans::record_status(trace, response.status());
    }
    if let Some(origin) = origin {
        cors::allow_origin(&mut response, origin);
    }
    if let Some(v) = header {
        response
            .headers_mut()
            .insert(crate::header_names::X_REQUEST_ID, v);
    }
    match route_metrics {
        Some(m) => m.count(response.status()),
        None => {
            metrics()
                .requests
                .get_or_create(&RequestLabels {
                    route: label.into_owned(),
                    class: StatusClass::of(response.status()),
                })
                .inc();
        }
    }
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
        Ok(r) => {
            // A callback back to the SPA without a session: `interaction_required` or `cancelled`.
            let outcome = r
                .extensions()
                .get::<callback::NoSession>()
                .map_or("success", |n| n.0);
            crate::metrics::Metrics::outcome(family, outcome, "");
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

/// The metrics label of a path under the BFF prefix or of a health endpoint; `None` for the
/// paths routes and the static files serve.
fn own_label(app: &App, path: &str) -> Option<String> {
    let bff = app.settings.bff.prefix.as_str();
    if let Some(endpoint) = path.strip_prefix(bff).filter(|r| r.starts_with('/')) {
        return Some(match endpoint {
            "/login" | "/callback" | "/user" | "/logout" | "/backchannel-logout" => {
                format!("{bff}{endpoint}")
            }
            _ if callback_provider(app, endpoint).is_some() => format!("{bff}/callback"),
            _ => format!("{bff}/*"),
        });
    }
    match path {
        "/healthz" | "/readyz" | "/metrics" => Some(path.to_owned()),
        _ => None,
    }
}

/// The metrics label of a path [`own_label`] does not name: its route's prefix, `static` or
/// `unmatched` (one of a fixed set, never request data).
fn served_label(app: &App, matched: Option<&RouteSettings>) -> String {
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

/// The provider whose callback `endpoint` (the path after the BFF prefix) is: `/callback` for
/// a lone `[oidc]`, `/callback/NAME` for a `[[providers]]` entry.
fn callback_provider<'a>(app: &'a App, endpoint: &str) -> Option<&'a crate::oidc::Provider> {
    let tag = match endpoint.strip_prefix("/callback")? {
        "" => "",
        rest => rest.strip_prefix('/').filter(|name| !name.is_empty())?,
    };
    app.provider_at_callback(tag)
}

/// The BFF endpoints' and the static files' futures are boxed: they are rare next to proxied
/// calls, and unboxed they would make every request's future (allocated and moved per request)
/// as large as the largest of them.
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
        let limit = |e: Endpoint| {
            app.limits
                .check_endpoint(e, context.peer.ip, req.headers())
                .map_err(|l| l.into_failure(e.label()))
        };
        return match (endpoint, req.method()) {
            ("/login", &Method::GET) => {
                limit(Endpoint::Login)?;
                Box::pin(login::login(app, &req, now)).await
            }
            (callback, &Method::GET) if callback_provider(app, callback).is_some() => {
                limit(Endpoint::Callback)?;
                let provider = callback_provider(app, callback).ok_or_else(|| {
                    Failure::new(Rejection::Internal, "callback provider vanished")
                })?;
                let r = Box::pin(callback::callback(app, provider, &req, now)).await;
                count_outcome(&metrics().logins, &r);
                r
            }
            ("/user", &Method::GET) => Box::pin(user::user(app, &req, now)).await,
            ("/logout", &Method::GET | &Method::POST) => {
                let r = Box::pin(logout::logout(app, &req, now)).await;
                count_outcome(&metrics().logouts, &r);
                r
            }
            ("/backchannel-logout", &Method::POST) => {
                limit(Endpoint::BackchannelLogout)?;
                let r = Box::pin(backchannel::backchannel_logout(app, req, now)).await;
                count_outcome(&metrics().backchannel_logouts, &r);
                r
            }
            (e @ ("/login" | "/callback" | "/user" | "/logout" | "/backchannel-logout"), _)
                if e != "/callback" || callback_provider(app, e).is_some() =>
            {
                Err(Failure::new(
                    Rejection::MethodNotAllowed,
                    format!("{} {path}", req.method()),
                ))
            }
            _ => Err(Failure::new(Rejection::NotFound, path.to_owned())),
        };
    }
    match path {
        "/healthz" => return Ok(health::liveness()),
        "/readyz" => return Ok(health::readiness(app)),
        "/metrics" if app.settings.metrics.on_main_listener() => {
            return Ok(health::metrics_page(app));
        }
        _ => {}
    }
    if let Some(route) = matched {
        return proxy::handle(app, route, req, now, context).await;
    }
    // Last: the SPA's files, for whatever nothing above handles.
    if let Some(site) = &app.settings.static_files {
        return Box::pin(static_files::serve(site, &req)).await;
    }
    Err(Failure::new(Rejection::NotFound, path.to_owned()))
}

/// The `X-Request-Id` value sent back and to the upstream, marked sensitive: it is unique per
/// request, so HPACK sends it as a literal "never indexed" instead of inserting it into the
/// connection's dynamic table, where it would only evict the headers that repeat
/// (`content-type`, `date`) and make the next response larger to encode.
fn request_id_header(id: &RequestId) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&id.0).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_header_is_never_indexed_by_hpack() {
        let id = RequestId("4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
        let value = request_id_header(&id).expect("a well-formed id");
        assert_eq!(value.as_bytes(), id.0.as_bytes());
        assert!(value.is_sensitive());
    }
}
