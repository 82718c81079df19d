//! Logging: `tracing` to stderr, as text or JSON (`[log] format`), filtered by `RUST_LOG`, else
//! `[log] level`, else `sealgate=info,warn`; and, with `[telemetry] otlp_endpoint`, traces
//! exported over OTLP ([`otlp`], [`spans`]).
//!
//! Every request runs in a `request` span carrying its id (from `X-Request-Id`, else the trace id
//! of a `traceparent`, else random), so every line it causes can be found; sessions appear only
//! as a fingerprint (a hash of the session id). Nothing secret is ever a field.

mod otlp;
pub(crate) mod spans;

use std::ffi::OsStr;
use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, LogSettings, TelemetrySettings};

pub(crate) use otlp::enabled;
pub use otlp::{TraceError, Traces};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(settings: &LogSettings) {
    let filter = log_filter(settings);
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Installs the global subscriber as [`init`] does and, when `telemetry` names an OTLP endpoint,
/// the trace pipeline beside it (the log's filter does not apply to traces, and trace spans do
/// not appear in the log). Keep the returned [`Traces`] and shut it down after the server stops:
/// that exports the last spans.
///
/// # Errors
/// When the exporter cannot be built (no TLS configuration for its client).
pub fn init_with_traces(
    log: &LogSettings,
    telemetry: &TelemetrySettings,
) -> Result<Traces, TraceError> {
    let Some(endpoint) = &telemetry.otlp_endpoint else {
        init(log);
        return Ok(Traces::default());
    };
    let traces = otlp::provider(telemetry, endpoint)?;
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let filter = match format!("{}=off", spans::TARGET).parse() {
        Ok(off) => log_filter(log).add_directive(off),
        Err(_) => log_filter(log),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match log.format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let only_trace_spans =
        tracing_subscriber::filter::filter_fn(|m| m.is_span() && m.target() == spans::TARGET);
    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(traces.layer().map(|l| l.with_filter(only_trace_spans)))
        .try_init();
    if installed.is_ok() {
        traces.enable();
    }
    Ok(traces)
}

/// `RUST_LOG`, else `[log] level`, else `sealgate=info,warn`.
fn log_filter(settings: &LogSettings) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        settings
            .level
            .as_deref()
            .and_then(|l| EnvFilter::try_new(l).ok())
            .unwrap_or_else(|| EnvFilter::new("sealgate=info,warn"))
    })
}

/// Whether text logs are coloured: only on a terminal (a redirected log file gets no escape
/// codes), and never when `NO_COLOR` is set to anything but the empty string (no-color.org).
fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// A request's correlation id.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

impl RequestId {
    /// The id for a request with `headers`: a well-formed `X-Request-Id` (1–128 characters of
    /// `[A-Za-z0-9._:-]`), else the trace id of a valid `traceparent`, else 16 random bytes in
    /// hex.
    pub(crate) fn for_request(headers: &http::HeaderMap) -> Self {
        let given = headers
            .get(crate::header_names::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=128).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            });
        if let Some(id) = given {
            return Self(id.to_owned());
        }
        if let Some(trace) = headers
            .get(crate::header_names::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(spans::trace_id)
        {
            return Self(trace.to_owned());
        }
        Self(hex(&random_id()))
    }
}

/// 16 bytes from the OS CSPRNG, read 512 bytes at a time per thread (one system call per 32
/// ids instead of one per request). A failing CSPRNG gives zeros: an uninformative id, never a
/// secret.
fn random_id() -> [u8; 16] {
    const BATCH: usize = 512;
    thread_local! {
        static POOL: std::cell::RefCell<([u8; BATCH], usize)> =
            const { std::cell::RefCell::new(([0; BATCH], BATCH)) };
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if *used + 16 > BATCH {
            if crate::secret::fill_random(bytes).is_err() {
                bytes.fill(0);
            }
            *used = 0;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[*used..*used + 16]);
        // Handed out once: the pool keeps no copy.
        bytes[*used..*used + 16].fill(0);
        *used += 16;
        id
    })
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn request_ids_come_from_the_client_when_well_formed() {
        assert_eq!(
            RequestId::for_request(&headers(&[("x-request-id", "abc-123")])).0,
            "abc-123"
        );
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            RequestId::for_request(&headers(&[("traceparent", trace)])).0,
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            ("x-request-id", "has space"),
            ("x-request-id", "<script>"),
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ),
        ] {
            let id = RequestId::for_request(&headers(&[bad])).0;
            assert_eq!(id.len(), 32, "{bad:?} → {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let long = "a".repeat(129);
        assert_ne!(
            RequestId::for_request(&headers(&[("x-request-id", &long)])).0,
            long
        );
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(
            !use_colour(false, None),
            "a redirected log gets no escape codes"
        );
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn generated_ids_are_distinct_across_refills_and_hex() {
        let ids: std::collections::HashSet<String> = (0..100)
            .map(|_| RequestId::for_request(&http::HeaderMap::new()).0)
            .collect();
        assert_eq!(
            ids.len(),
            100,
            "100 ids over three refills of the pool, all distinct"
        );
        assert!(ids.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
        assert_eq!(hex(&[0x00, 0x9f, 0xff]), "009fff");
    }
}
