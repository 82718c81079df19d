//! `[telemetry]`: the OTLP endpoint for traces, the service name, the sample ratio.

use url::Url;

use super::context::Cx;
use super::problem::{ConfigError, invalid};
use super::raw::RawTelemetry;
use super::settings::TelemetrySettings;

pub(super) fn telemetry(t: RawTelemetry, cx: &mut Cx<'_>) -> Option<TelemetrySettings> {
    let defaults = TelemetrySettings::default();
    let endpoint = match t.otlp_endpoint {
        None => Some(None),
        Some(e) => cx.ok(Some(e.span()), endpoint(e.get_ref()).map(Some)),
    };
    let service_name = match t.service_name {
        None => Some(defaults.service_name),
        Some(n) => {
            let name = n.get_ref();
            if (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic()) {
                Some(name.clone())
            } else {
                let e = invalid(
                    "telemetry.service_name",
                    "must be 1-255 printable ASCII characters without spaces",
                );
                cx.refuse(Some(n.span()), e)
            }
        }
    };
    let sample_ratio = match t.sample_ratio {
        None => Some(defaults.sample_ratio),
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => Some(*r.get_ref()),
        Some(r) => {
            let e = invalid(
                "telemetry.sample_ratio",
                format!("{} is not between 0.0 and 1.0", r.get_ref()),
            );
            cx.refuse(Some(r.span()), e)
        }
    };
    Some(TelemetrySettings {
        otlp_endpoint: endpoint?,
        service_name: service_name?,
        sample_ratio: sample_ratio?,
    })
}

/// The collector's base URL: http or https (a collector is often a plain-http sidecar), a host,
/// no user info, query or fragment (the path `/v1/traces` is appended).
fn endpoint(text: &str) -> Result<Url, ConfigError> {
    const KEY: &str = "telemetry.otlp_endpoint";
    let url = Url::parse(text).map_err(|e| invalid(KEY, format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            KEY,
            format!(
                "unsupported scheme {:?}; use http:// or https://",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(KEY, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(KEY, "must not contain user info"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(KEY, "must not contain a query or fragment"));
    }
    Ok(url)
}
