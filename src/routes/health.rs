//! `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (see [`crate::metrics`]).

use http::{HeaderValue, Response, StatusCode};

use crate::app::App;
use crate::metrics::metrics;
use crate::response::{self, Body};

/// Liveness: the process answers.
pub(crate) fn liveness() -> Response<Body> {
    response::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// The metrics in Prometheus text format; gauges are read from this instance now.
pub(crate) fn metrics_page(app: &App) -> Response<Body> {
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
pub(crate) fn readiness(app: &App) -> Response<Body> {
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
