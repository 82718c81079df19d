//! What every outbound HTTP client shares (the IdP's and the upstreams'): the TLS trust roots,
//! and errors with their sources on one line for the log.

use std::sync::{Arc, OnceLock};

use hyper_rustls::ConfigBuilderExt as _;

/// No TLS client configuration could be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS client configuration: {0}")]
pub(crate) struct TlsError(String);

/// The TLS client configuration of every outbound connection: the system's trust roots, or,
/// where there are none (a minimal container), an empty store, so that plain http to loopback
/// still works and https fails verification with a clear error rather than at start-up.
/// Loaded once per process (reading the system store is slow); each connector copies it.
fn client_config() -> Result<rustls::ClientConfig, TlsError> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, TlsError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let builder = || {
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError(e.to_string()))
            };
            match builder()?.with_native_roots() {
                Ok(b) => Ok(b.with_no_client_auth()),
                Err(e) => {
                    tracing::warn!(error = %e, "no system CA certificates found; outbound https will fail");
                    Ok(builder()?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth())
                }
            }
        })
        .clone()
}

/// The TLS part of an outbound connector, from the one [`client_config`].
///
/// # Errors
/// Only if rustls cannot build a configuration with its default protocol versions.
pub(crate) fn tls_roots()
-> Result<hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>, TlsError>
{
    Ok(hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(client_config()?))
}

/// An error and its sources on one line, for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
