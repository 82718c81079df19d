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
use tracing::Instrument as _;

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
    pub async fn send(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // With traces exported: a client span per call, named in the IdP's `traceparent`.
        let span = if crate::telemetry::enabled() {
            let endpoint = endpoint_of(&request);
            crate::telemetry::spans::idp_span(endpoint, request.method(), request.uri())
        } else {
            tracing::Span::none()
        };
        crate::telemetry::spans::inject(&span, request.headers_mut());
        let result = self.exchange(request).instrument(span.clone()).await;
        if let Ok(response) = &result {
            crate::telemetry::spans::record_status(&span, response.status());
        }
        result
    }

    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
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

/// Which IdP endpoint `request` is for, from its shape alone (the client serves every
/// endpoint): the discovery document by its well-known path; a GET with credentials is userinfo,
/// one without the JWKS; a POST by its form's parameter names (`grant_type`'s value only when
/// it is one of the standard grant types). Never a value that could be secret.
fn endpoint_of(request: &HttpRequest) -> &'static str {
    if request.method() == http::Method::GET {
        return if request
            .uri()
            .path()
            .ends_with("/.well-known/openid-configuration")
        {
            "discovery"
        } else if request.headers().contains_key(http::header::AUTHORIZATION) {
            "userinfo"
        } else {
            "jwks"
        };
    }
    let mut endpoint = "other";
    // Raw `name=value` pairs: only the names sealgate writes are compared, and only
    // `grant_type`'s value is decoded (any other value may be a secret, and is not copied).
    for pair in request.body().split(|b| *b == b'&') {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        match name {
            b"grant_type" => {
                let value: String = url::form_urlencoded::parse(value)
                    .next()
                    .map(|(v, _)| v.into_owned())
                    .unwrap_or_default();
                return match value.as_str() {
                    "authorization_code" => "token (authorization_code)",
                    "refresh_token" => "token (refresh_token)",
                    "client_credentials" => "token (client_credentials)",
                    "urn:ietf:params:oauth:grant-type:token-exchange" => "token (token-exchange)",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer" => "token (jwt-bearer)",
                    _ => "token",
                };
            }
            b"response_type" | b"request" => endpoint = "par",
            b"token" if endpoint == "other" => endpoint = "revocation",
            _ => {}
        }
    }
    endpoint
}

impl<'c> AsyncHttpClient<'c> for IdpHttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, auth: bool, body: &str) -> HttpRequest {
        let mut r = http::Request::builder().method(method).uri(uri);
        if auth {
            r = r.header("authorization", "Bearer secret-token");
        }
        r.body(body.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn idp_calls_are_named_by_their_shape_never_by_a_secret() {
        for (method, uri, auth, body, expected) in [
            (
                "GET",
                "https://idp/.well-known/openid-configuration",
                false,
                "",
                "discovery",
            ),
            ("GET", "https://idp/keys", false, "", "jwks"),
            ("GET", "https://idp/me", true, "", "userinfo"),
            (
                "POST",
                "https://idp/token",
                true,
                "grant_type=refresh_token&refresh_token=rt-secret",
                "token (refresh_token)",
            ),
            (
                "POST",
                "https://idp/token",
                false,
                "code=c-secret&grant_type=authorization_code&code_verifier=v",
                "token (authorization_code)",
            ),
            (
                "POST",
                "https://idp/token",
                false,
                "grant_type=rt-secret",
                "token",
            ),
            (
                "POST",
                "https://idp/token",
                false,
                "subject_token=a%3Db&grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
                "token (token-exchange)",
            ),
            (
                "POST",
                "https://idp/revoke",
                true,
                "token=rt-secret&token_type_hint=refresh_token",
                "revocation",
            ),
            (
                "POST",
                "https://idp/par",
                true,
                "response_type=code&state=s-secret",
                "par",
            ),
            ("POST", "https://idp/x", true, "", "other"),
        ] {
            assert_eq!(
                endpoint_of(&request(method, uri, auth, body)),
                expected,
                "{method} {uri} {body}"
            );
        }
    }
}
