//! The outbound HTTP client for talking to the IdP: hyper-util over rustls, with a timeout on
//! every request, a cap on response bodies, and **no redirect following** (a redirect from an
//! IdP endpoint is an error, never a hop to wherever it points: the SSRF warning in the
//! openidconnect docs).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Largest IdP response body read (discovery documents and JWKS are a few KB).
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An outbound request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting or the exchange failed.
    #[error("request to the identity provider failed: {0}")]
    Transport(String),
    /// No complete response within the timeout.
    #[error("request to the identity provider timed out after {0:?}")]
    Timeout(Duration),
    /// The response body exceeded [`MAX_RESPONSE_BYTES`].
    #[error("response from the identity provider is too large")]
    TooLarge,
    /// The response was a redirect, which is never followed.
    #[error("identity provider answered with a redirect ({0}), which is not followed")]
    Redirect(u16),
}

/// A cheap-to-clone HTTP client for the IdP.
#[derive(Clone, Debug)]
pub struct IdpHttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl IdpHttpClient {
    /// A client whose every request must complete within `timeout`.
    ///
    /// # Errors
    /// When no TLS trust roots can be loaded from the system.
    pub fn new(timeout: Duration) -> Result<Self, HttpError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let builder =
            crate::outbound::tls_roots().map_err(|e| HttpError::Transport(e.to_string()))?;
        let connector = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client, timeout })
    }

    /// Sends `request`, returning the whole response (body capped).
    ///
    /// # Errors
    /// Transport failure, timeout, an oversized body, or a redirect.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Transport(e.to_string()))?;
            if response.status().is_redirection() {
                return Err(HttpError::Redirect(response.status().as_u16()));
            }
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        HttpError::TooLarge
                    } else {
                        HttpError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout));
        let m = crate::metrics::metrics();
        crate::metrics::Metrics::observe(&m.idp_duration, started.elapsed());
        result?
    }
}

/// The IdP client, remembering the status of the last response. A token endpoint that answers
/// an error with an empty body (Glewlwyd refusing a refresh token: `400` and nothing else)
/// leaves openidconnect only "empty error response"; the status tells what it was.
pub(crate) struct StatusRecording<'a> {
    http: &'a IdpHttpClient,
    status: std::sync::atomic::AtomicU16,
}

impl<'a> StatusRecording<'a> {
    pub(crate) fn new(http: &'a IdpHttpClient) -> Self {
        Self {
            http,
            status: std::sync::atomic::AtomicU16::new(0),
        }
    }

    /// The status of the last response, if one came.
    pub(crate) fn status(&self) -> Option<u16> {
        match self.status.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }
}

impl<'c> AsyncHttpClient<'c> for StatusRecording<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.http.send(request).await?;
            self.status.store(
                response.status().as_u16(),
                std::sync::atomic::Ordering::Relaxed,
            );
            Ok(response)
        })
    }
}

impl<'c> AsyncHttpClient<'c> for IdpHttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
