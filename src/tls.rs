//! The optional HTTPS listener: rustls with HTTP/2 and HTTP/1.1 offered by ALPN, and a
//! certificate that can be replaced without a restart.
//!
//! The certificate and key are PEM files (`[server] tls_cert`, `tls_key`). On SIGHUP they are
//! read again; a pair that does not load is logged and the current one stays. Connections that
//! are open keep the certificate they were made with; new handshakes get the new one. Nothing is
//! dropped.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsSettings;

/// A certificate or key that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file.
    #[error("server.tls_cert {path}: {problem}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The key file (the problem never includes key material).
    #[error("server.tls_key {path}: {problem}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Config(String),
}

/// The current certificate, swappable.
#[derive(Debug)]
pub(crate) struct Certificate {
    settings: TlsSettings,
    current: RwLock<Arc<CertifiedKey>>,
}

fn load(settings: &TlsSettings) -> Result<Arc<CertifiedKey>, TlsError> {
    let path = |p: &Path| p.display().to_string();
    let cert_err = |problem: String| TlsError::Cert {
        path: path(&settings.cert),
        problem,
    };
    let key_err = |problem: String| TlsError::Key {
        path: path(&settings.key),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in the file".into()));
    }
    // The key's parse error is reduced to its kind: it must never echo key bytes.
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|_| key_err("no readable PEM private key (PKCS#8, PKCS#1 or SEC1)".into()))?;
    let signer =
        any_supported_type(&key).map_err(|_| key_err("unsupported private key type".into()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|_| key_err("does not match the certificate".into()))?;
    Ok(Arc::new(certified))
}

impl Certificate {
    /// Loads the pair.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file and the problem.
    pub(crate) fn load(settings: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(load(settings)?),
            settings: settings.clone(),
        }))
    }

    /// Reads the files again and, if they load, serves the new pair from the next handshake on.
    ///
    /// # Errors
    /// A [`TlsError`]; the current pair stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.settings)?;
        if let Ok(mut current) = self.current.write() {
            *current = fresh;
        }
        Ok(())
    }

    /// The rustls server configuration using this certificate, offering h2 and HTTP/1.1.
    ///
    /// # Errors
    /// When rustls cannot build it.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}
