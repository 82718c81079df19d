//! `[server]`, `[metrics]` and `[log]`: how the process listens and what it reports.

use std::path::Path;

use super::context::{Cx, span};
use super::files;
use super::problem::invalid;
use super::raw::{RawLog, RawMetrics, RawServer};
use super::settings::{LogFormat, LogSettings, MetricsSettings, ServerSettings, TlsSettings};
use super::values;

/// `server.max_header_bytes`, which `[session]` needs too (its cookies must fit).
pub(super) fn max_header_bytes(raw: &RawServer) -> usize {
    raw.max_header_bytes
        .as_ref()
        .map_or(32 * 1024, |b| *b.get_ref())
        .clamp(8 * 1024, 1024 * 1024)
}

pub(super) fn server(s: RawServer, cx: &mut Cx<'_>) -> Option<ServerSettings> {
    let listen = cx.ok(
        Some(s.listen.span()),
        s.listen.get_ref().parse().map_err(|_| {
            invalid(
                "server.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:8080",
                    s.listen.get_ref()
                ),
            )
        }),
    );
    let public_url = cx.ok(
        Some(s.public_url.span()),
        values::origin(
            "server.public_url",
            s.public_url.get_ref(),
            "must be an origin without path or query",
        ),
    );
    let workers = match s.workers.as_ref().map(|w| (w.span(), *w.get_ref())) {
        Some((at, 0)) => cx.refuse(Some(at), invalid("server.workers", "must be at least 1")),
        Some((at, n)) if n > 1024 => cx.refuse(Some(at), invalid("server.workers", "at most 1024")),
        Some((_, n)) => Some(n),
        None => Some(std::thread::available_parallelism().map_or(1, usize::from)),
    };
    let header_read_timeout = cx.duration(
        "server.header_read_timeout",
        s.header_read_timeout.as_ref(),
        "10s",
    );
    let shutdown_grace = cx.duration("server.shutdown_grace", s.shutdown_grace.as_ref(), "10s");
    let tls = tls(&s, cx);
    let max_header_bytes = max_header_bytes(&s);
    Some(ServerSettings {
        listen: listen?,
        public_url: public_url?,
        max_connections: s.max_connections.map_or(4096, |m| m.into_inner()).max(1),
        workers: workers?,
        header_read_timeout: header_read_timeout?,
        max_header_bytes,
        shutdown_grace: shutdown_grace?,
        tls: tls?,
    })
}

/// `tls_cert` and `tls_key`: both or neither. `check-config` also opens both files, which
/// `serve` reads at start-up.
fn tls(s: &RawServer, cx: &mut Cx<'_>) -> Option<Option<TlsSettings>> {
    let (cert, key) = match (&s.tls_cert, &s.tls_key) {
        (None, None) => return Some(None),
        (Some(cert), Some(key)) if !cert.get_ref().is_empty() && !key.get_ref().is_empty() => {
            (cert, key)
        }
        (None, Some(key)) => {
            let e = invalid("server.tls_cert", "missing (tls_key is set)");
            return cx.refuse(Some(key.span()), e);
        }
        (cert, key) => {
            let at = span(key.as_ref()).or_else(|| span(cert.as_ref()));
            return cx.refuse(at, invalid("server.tls_key", "missing (tls_cert is set)"));
        }
    };
    if cx.check_files {
        for (name, file) in [("server.tls_cert", cert), ("server.tls_key", key)] {
            let readable =
                files::readable_file(Path::new(file.get_ref())).map_err(|e| invalid(name, e));
            cx.ok(Some(file.span()), readable);
        }
    }
    Some(Some(TlsSettings {
        cert: cert.get_ref().into(),
        key: key.get_ref().into(),
    }))
}

pub(super) fn metrics(m: RawMetrics, cx: &mut Cx<'_>) -> Option<MetricsSettings> {
    let listen = match m.listen {
        None => Some(None),
        Some(l) => cx.ok(
            Some(l.span()),
            l.get_ref().parse().map(Some).map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{:?} is not an address:port", l.get_ref()),
                )
            }),
        ),
    };
    Some(MetricsSettings {
        enabled: m.enabled.unwrap_or(true),
        listen: listen?,
    })
}

pub(super) fn log(l: RawLog, cx: &mut Cx<'_>) -> Option<LogSettings> {
    let format = cx.keyword(
        "log.format",
        l.format.as_ref(),
        "text",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    );
    let level = match l.level {
        Some(level) if tracing_subscriber::EnvFilter::try_new(level.get_ref()).is_err() => {
            let e = invalid(
                "log.level",
                format!("{:?} is not a tracing filter", level.get_ref()),
            );
            cx.refuse(Some(level.span()), e)
        }
        level => Some(level.map(|l| l.into_inner())),
    };
    Some(LogSettings {
        format: format?,
        level: level?,
    })
}
