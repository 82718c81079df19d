//! Prometheus metrics on `/metrics`, through `prometheus-client`. Its encoder writes the
//! OpenMetrics text form (`_total` counters, `# EOF`); the page is served as
//! `text/plain; version=0.0.4`, which Prometheus' classic text parser reads as well.
//!
//! One registry per process (a process is one scrape target): handlers record into
//! [`metrics()`] without threading a handle through every layer. Label values come from small,
//! fixed sets (route prefixes from the configuration, status classes, outcome names), never from
//! request data, so a client cannot blow up the number of series. Nothing secret is recorded.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `route` (a configured prefix such as `/api`, a BFF endpoint such as `/bff/user`, `/healthz`,
/// `static`, `unmatched`, …) and `class` (`2xx` … `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// Which handler served it.
    pub route: String,
    /// The status class.
    pub class: StatusClass,
}

/// A status class label: `1xx` … `5xx`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct StatusClass(u8);

impl StatusClass {
    /// The class of `status`.
    pub(crate) fn of(status: http::StatusCode) -> Self {
        // Invariant: StatusCode is 100..=999, so the class is 1..=9.
        Self(u8::try_from(status.as_u16() / 100).unwrap_or(9))
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        write!(encoder, "{}xx", self.0)
    }
}

/// `route`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    /// The route prefix.
    pub route: String,
}

/// `outcome` and `reason` (empty on success).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    /// `success`, `failure`, …
    pub outcome: &'static str,
    /// Why, from a fixed set of names.
    pub reason: &'static str,
}

/// `endpoint` (`login`, `callback`, `backchannel_logout` or a route prefix) and `by`
/// (`address`, `session`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LimitedLabels {
    /// Which endpoint or route.
    pub endpoint: String,
    /// Which limit.
    pub by: &'static str,
}

/// Every metric sealgate exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// `sealgate_requests_total{route, class}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `sealgate_upstream_duration_seconds{route}`: until the upstream's response head.
    pub upstream_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// `sealgate_logins_total{outcome, reason}` (callbacks).
    pub logins: Family<OutcomeLabels, Counter>,
    /// `sealgate_logouts_total{outcome, reason}`.
    pub logouts: Family<OutcomeLabels, Counter>,
    /// `sealgate_refreshes_total{outcome, reason}`.
    pub refreshes: Family<OutcomeLabels, Counter>,
    /// `sealgate_backchannel_logouts_total{outcome, reason}`.
    pub backchannel_logouts: Family<OutcomeLabels, Counter>,
    /// `sealgate_route_token_grants_total{outcome, reason}`: grants of routes' own tokens
    /// (`success`, `refused`, `failed`; by kind: `refresh`, `exchange`, `client`).
    pub route_token_grants: Family<OutcomeLabels, Counter>,
    /// `sealgate_rate_limited_total{endpoint, by}`: requests refused by `[limits]` (429).
    pub rate_limited: Family<LimitedLabels, Counter>,
    /// `sealgate_denylist_entries` (set at scrape time, see [`Metrics::render`]).
    denylist_entries: Gauge,
    /// `sealgate_denylist_overflows` (revocations turned into a global not-before; at scrape).
    denylist_overflows: Gauge,
    /// `sealgate_session_cookie_bytes`: the size of each session cookie written.
    pub cookie_bytes: Histogram,
    /// `sealgate_idp_request_duration_seconds`.
    pub idp_duration: Histogram,
    /// Serialises scrapes (see [`Metrics::render`]).
    scrape: std::sync::Mutex<()>,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sealgate");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests answered, by route and status class",
            requests.clone(),
        );
        let upstream_duration: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time until an upstream's response head, by route",
            upstream_duration.clone(),
        );
        let logins = Family::default();
        registry.register(
            "logins",
            "Login callbacks by outcome and failure reason",
            logins.clone(),
        );
        let logouts = Family::default();
        registry.register("logouts", "Logouts by outcome", logouts.clone());
        let refreshes = Family::default();
        registry.register(
            "refreshes",
            "Token refreshes by outcome and failure reason",
            refreshes.clone(),
        );
        let backchannel_logouts = Family::default();
        registry.register(
            "backchannel_logouts",
            "Back-channel logout requests by outcome and failure reason",
            backchannel_logouts.clone(),
        );
        let route_token_grants = Family::default();
        registry.register(
            "route_token_grants",
            "Grants of routes' own tokens, by outcome and kind",
            route_token_grants.clone(),
        );
        let rate_limited = Family::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429 by [limits], by endpoint and limit",
            rate_limited.clone(),
        );
        let denylist_entries = Gauge::default();
        registry.register(
            "denylist_entries",
            "Live revocation entries",
            denylist_entries.clone(),
        );
        let denylist_overflows = Gauge::default();
        registry.register(
            "denylist_overflows",
            "Revocations recorded as a global not-before because the denylist was full",
            denylist_overflows.clone(),
        );
        let cookie_bytes = Histogram::new(exponential_buckets(512.0, 2.0, 7));
        registry.register(
            "session_cookie_bytes",
            "Size of the session cookies written (all chunks)",
            cookie_bytes.clone(),
        );
        let idp_duration = latency_histogram();
        registry.register(
            "idp_request_duration_seconds",
            "Duration of requests to the IdP (discovery, JWKS, token, revocation)",
            idp_duration.clone(),
        );
        Self {
            registry,
            requests,
            upstream_duration,
            logins,
            logouts,
            refreshes,
            backchannel_logouts,
            route_token_grants,
            rate_limited,
            denylist_entries,
            denylist_overflows,
            cookie_bytes,
            idp_duration,
            scrape: std::sync::Mutex::new(()),
        }
    }

    /// Counts an outcome in `family`.
    pub(crate) fn outcome(
        family: &Family<OutcomeLabels, Counter>,
        outcome: &'static str,
        reason: &'static str,
    ) {
        family
            .get_or_create(&OutcomeLabels { outcome, reason })
            .inc();
    }

    /// Records a duration in seconds.
    pub(crate) fn observe(histogram: &Histogram, d: Duration) {
        histogram.observe(d.as_secs_f64());
    }

    /// The metrics page (see the module doc for its format), with the denylist gauges read from
    /// the scraping instance.
    ///
    /// Setting the gauges and encoding happen under one lock: the registry is per process, and
    /// two scrapes at once (two instances in one test process) must not see each other's values.
    pub(crate) fn render(&self, denylist_entries: usize, denylist_overflows: u64) -> String {
        let _scrape = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.denylist_entries
            .set(i64::try_from(denylist_entries).unwrap_or(i64::MAX));
        self.denylist_overflows
            .set(i64::try_from(denylist_overflows).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One proxied route's series, found once per route rather than per request: a request
/// records without building its label, hashing it, or taking its family's lock. Each handle is
/// made in its family on first use, so `/metrics` lists exactly the series it did before.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    /// The `route` label: the prefix, `/` for the empty one.
    label: String,
    /// `sealgate_requests_total{route, class}` for the classes `1xx` … `5xx`.
    requests: [OnceLock<Counter>; 5],
    /// `sealgate_upstream_duration_seconds{route}`.
    upstream_duration: OnceLock<Histogram>,
}

impl RouteMetrics {
    /// The handles of the route with `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        let label = if prefix.is_empty() { "/" } else { prefix };
        Self {
            label: label.to_owned(),
            requests: Default::default(),
            upstream_duration: OnceLock::new(),
        }
    }

    /// The route's `route` label.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Counts a response with `status` on this route.
    pub(crate) fn count(&self, status: http::StatusCode) {
        let class = StatusClass::of(status);
        let create = || {
            metrics()
                .requests
                .get_or_create(&RequestLabels {
                    route: self.label.clone(),
                    class,
                })
                .clone()
        };
        match self.requests.get(usize::from(class.0).wrapping_sub(1)) {
            Some(cell) => cell.get_or_init(create).inc(),
            // 6xx … 9xx: never cached (hyper's StatusCode allows them; upstreams hardly send them).
            None => create().inc(),
        };
    }

    /// Records the time until the upstream's response head.
    pub(crate) fn observe_upstream(&self, elapsed: Duration) {
        self.upstream_duration
            .get_or_init(|| {
                metrics()
                    .upstream_duration
                    .get_or_create(&RouteLabel {
                        route: self.label.clone(),
                    })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub(crate) fn metrics() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_handles_count_into_its_series_which_appear_on_first_use() {
        let page = || metrics().render(0, 0);
        let m = RouteMetrics::new("/route-metrics-test");
        assert!(
            !page().contains("/route-metrics-test"),
            "no series before use"
        );
        m.count(http::StatusCode::OK);
        m.count(http::StatusCode::NO_CONTENT);
        m.count(http::StatusCode::BAD_GATEWAY);
        m.observe_upstream(Duration::from_millis(3));
        // Another set of handles for the same route (another server in the process) shares
        // the series.
        RouteMetrics::new("/route-metrics-test").count(http::StatusCode::OK);
        let p = page();
        for line in [
            r#"sealgate_requests_total{route="/route-metrics-test",class="2xx"} 3"#,
            r#"sealgate_requests_total{route="/route-metrics-test",class="5xx"} 1"#,
            r#"sealgate_upstream_duration_seconds_count{route="/route-metrics-test"} 1"#,
        ] {
            assert!(p.contains(line), "{line} missing from:\n{p}");
        }
        assert!(!p.contains(r#"route="/route-metrics-test",class="4xx""#));
        assert_eq!(RouteMetrics::new("").label(), "/");
    }
}
