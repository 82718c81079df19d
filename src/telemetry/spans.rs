//! The spans sealgate exports (`[telemetry] otlp_endpoint`), and W3C trace context in and out.
//!
//! Trace spans have their own `tracing` target, [`TARGET`]: the OpenTelemetry layer sees only
//! them, the log sees none of them, so the log lines are the same with or without traces. Each
//! constructor returns [`Span::none`] unless traces are exported ([`super::enabled`]): without
//! an endpoint a request costs one atomic load more.
//!
//! Attributes are route names, methods, status codes, host names and the session fingerprint
//! (a hash of the session id): never a token, cookie, code, state, verifier, query or path.
//!
//! A browser's `traceparent` is continued when it is well-formed (version `00`, lower-case hex,
//! non-zero ids), else ignored (a new trace starts); its `tracestate` is kept only when it is at
//! most [`MAX_TRACESTATE`] bytes of valid list members. Outbound requests (upstreams, the IdP)
//! get a `traceparent` naming sealgate's client span, replacing any the browser sent.

use http::{HeaderMap, HeaderValue, Method};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::otlp::enabled;

/// The `tracing` target of every span made for traces.
pub(crate) const TARGET: &str = "sealgate::otel";

/// The longest client `tracestate` kept (W3C: at least 512 characters should be propagated).
pub(crate) const MAX_TRACESTATE: usize = 512;

/// The method as spans show it: a standard method, else `_OTHER` (OpenTelemetry's convention;
/// a custom method can be as long as the request head allows, and must not fill the queue).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The server span of a request to `route` (the route's name, never the raw path), a child of
/// the browser's `traceparent` when it is valid. `None` unless traces are exported, and for the
/// probes (`/healthz`, `/readyz`, `/metrics`), which would drown the traces.
pub(crate) fn server_span(method: &Method, route: &str, headers: &HeaderMap) -> Option<Span> {
    if !enabled() || matches!(route, "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    let method = method_name(method);
    let name = format!("HTTP {method} {route}");
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = name.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        session.fingerprint = Empty,
    );
    if let Some(parent) = remote_parent(headers) {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent);
        let _ = span.set_parent(cx);
    }
    Some(span)
}

/// Records the response status on a server or client span (5xx marks it an error).
pub(crate) fn record_status(span: &Span, status: http::StatusCode) {
    if span.is_none() {
        return;
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// Records the session's fingerprint on the current span (the request's server span, where
/// the session is read). Nothing unless traces are exported.
pub(crate) fn record_session(id: &crate::session::SessionId) {
    if enabled() {
        Span::current().record("session.fingerprint", id.fingerprint().as_str());
    }
}

/// The client span of a proxied call to `upstream` for the route with `prefix`.
pub(crate) fn upstream_span(method: &Method, prefix: &str, upstream: &http::Uri) -> Span {
    if !enabled() {
        return Span::none();
    }
    let route = if prefix.is_empty() { "/" } else { prefix };
    let port = upstream.port_u16().unwrap_or(match upstream.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let method = method_name(method);
    let name = format!("upstream {method} {route}");
    tracing::info_span!(
        target: TARGET,
        "upstream",
        otel.name = name.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        server.address = upstream.host().unwrap_or_default(),
        server.port = port,
        http.response.status_code = Empty,
    )
}

/// The client span of a call to the IdP's `endpoint` (`token`, `userinfo`, `jwks`, ...).
pub(crate) fn idp_span(endpoint: &'static str, method: &Method, uri: &http::Uri) -> Span {
    if !enabled() {
        return Span::none();
    }
    let method = method_name(method);
    let name = format!("IdP {method} {endpoint}");
    tracing::info_span!(
        target: TARGET,
        "idp",
        otel.name = name.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        idp.endpoint = endpoint,
        http.request.method = method,
        server.address = uri.host().unwrap_or_default(),
        http.response.status_code = Empty,
    )
}

/// An internal span: `refresh` (one session's token refresh, whoever redeems it).
pub(crate) fn internal_span(name: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "internal", otel.name = name, otel.kind = "internal")
}

/// The client span of one Redis command (`operation`: `GET`, `SET`, `EVAL`, `PUBLISH`, ...) for
/// `purpose` (`refresh lock`, `grant turn`, `revocation`). Keys and values are not attributes.
pub(crate) fn redis_span(operation: &'static str, purpose: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let name = format!("redis {operation} {purpose}");
    tracing::info_span!(
        target: TARGET,
        "redis",
        otel.name = name.as_str(),
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = operation,
    )
}

/// Sets `traceparent` (and `tracestate`, when there is one) in `headers` to name `span`,
/// replacing the browser's. Nothing when `span` is not exported (traces off): then the
/// headers are forwarded as they are.
pub(crate) fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_none() {
        return;
    }
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&traceparent(sc)) {
        headers.insert(crate::header_names::TRACEPARENT, v);
    }
    headers.remove(crate::header_names::TRACESTATE);
    let state = sc.trace_state().header();
    if !state.is_empty()
        && let Ok(v) = HeaderValue::from_str(&state)
    {
        headers.insert(crate::header_names::TRACESTATE, v);
    }
}

/// `00-<trace id>-<span id>-<flags>`.
fn traceparent(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// The browser's span context, when its one `traceparent` is well-formed.
pub(crate) fn remote_parent(headers: &HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all("traceparent").iter();
    let (value, None) = (values.next()?, values.next()) else {
        return None;
    };
    let (trace, parent, flags) = parse_traceparent(value.to_str().ok()?)?;
    Some(SpanContext::new(
        trace,
        parent,
        flags,
        true,
        client_trace_state(headers),
    ))
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if well-formed and
/// not all zeros.
pub(crate) fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0'))
    .then_some(trace)
}

/// A W3C `traceparent` (version `00` exactly: four fields, lower-case hex, neither id zero).
fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let trace = trace_id(value)?;
    let mut parts = value.split('-').skip(2);
    let (parent, flags) = (parts.next()?, parts.next()?);
    if parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(parent).ok()?,
        // Only the sampled bit is defined; the others are not passed on.
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// The browser's `tracestate`, when every header of it together is short and well-formed;
/// else none (the trace is still continued).
fn client_trace_state(headers: &HeaderMap) -> TraceState {
    let mut joined = String::new();
    for v in headers.get_all("tracestate") {
        let Ok(text) = v.to_str() else {
            return TraceState::NONE;
        };
        if joined.len() + text.len() + 1 > MAX_TRACESTATE {
            return TraceState::NONE;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    if joined.trim().is_empty() {
        return TraceState::NONE;
    }
    joined.parse().unwrap_or(TraceState::NONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_traceparent_is_continued() {
        let sc = remote_parent(&headers(&[("traceparent", GOOD)])).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(traceparent(&sc), GOOD);
        let unsampled = GOOD.replace("-01", "-00");
        let sc = remote_parent(&headers(&[("traceparent", &unsampled)])).unwrap();
        assert!(!sc.is_sampled());
        // Undefined flag bits are not passed on.
        let odd = GOOD.replace("-01", "-ff");
        let sc = remote_parent(&headers(&[("traceparent", &odd)])).unwrap();
        assert_eq!(sc.trace_flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                remote_parent(&headers(&[("traceparent", bad)])).is_none(),
                "{bad:?}"
            );
        }
        // Two traceparents: which one is meant is unknowable.
        assert!(remote_parent(&headers(&[("traceparent", GOOD), ("traceparent", GOOD)])).is_none());
    }

    #[test]
    fn client_tracestate_is_bounded_and_validated() {
        let state = |values: &[&str]| {
            let mut pairs = vec![("traceparent", GOOD)];
            pairs.extend(values.iter().map(|v| ("tracestate", *v)));
            remote_parent(&headers(&pairs))
                .unwrap()
                .trace_state()
                .header()
        };
        assert_eq!(state(&["vendor=abc,other=1"]), "vendor=abc,other=1");
        assert_eq!(state(&["a=1", "b=2"]), "a=1,b=2", "headers are combined");
        assert_eq!(state(&[]), "");
        assert_eq!(state(&["not a member"]), "", "invalid: dropped");
        let long = format!("v={}", "x".repeat(MAX_TRACESTATE));
        assert_eq!(state(&[&long]), "", "too long: dropped");
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
        let many = many.join(",");
        assert!(many.len() < MAX_TRACESTATE);
        let kept = state(&[&many]);
        assert!(kept.split(',').count() <= 32, "{kept}");
    }

    #[test]
    fn nothing_is_made_or_injected_while_traces_are_off() {
        assert!(!enabled());
        assert!(server_span(&Method::GET, "/api", &headers(&[("traceparent", GOOD)])).is_none());
        assert!(
            upstream_span(&Method::GET, "/api", &http::Uri::from_static("http://u/")).is_none()
        );
        let mut h = headers(&[("traceparent", GOOD)]);
        inject(&Span::none(), &mut h);
        assert_eq!(h.get("traceparent").unwrap(), GOOD, "forwarded as it was");
    }
}
