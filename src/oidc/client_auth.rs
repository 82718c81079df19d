//! Client authentication to the IdP: for the requests sealgate builds itself (token
//! revocation; every form POST that does not go through openidconnect's request types), and
//! the `private_key_jwt` assertions the grants add to openidconnect's requests.
//!
//! An assertion is made fresh for every request (its `jti` is never reused; the IdP refuses a
//! replay); its `iat` is the caller's `now` (sealgate's clock, as for every time rule).

use base64::Engine as _;
use url::form_urlencoded::Serializer;

use super::Provider;
use crate::client_assertion::{ASSERTION_TYPE, AssertionError};
use crate::config::{AssertionAudience, TokenEndpointAuth};
use crate::secret::SecretString;

impl Provider {
    /// Adds this client's credentials to a form POST to the IdP, as configured: an
    /// `Authorization: Basic` header (`client_secret_basic`), `client_id` and `client_secret`
    /// form fields (`client_secret_post`), or `client_id`, `client_assertion_type` and a fresh
    /// `client_assertion` (`private_key_jwt`).
    ///
    /// `now` (unix seconds) is the assertion's `iat`.
    ///
    /// # Errors
    /// When a `private_key_jwt` assertion cannot be signed (the OS refused randomness).
    pub(super) fn authenticate(
        &self,
        mut request: ::http::request::Builder,
        form: &mut Serializer<'_, String>,
        now: i64,
    ) -> Result<::http::request::Builder, AssertionError> {
        match &self.settings.token_endpoint_auth {
            TokenEndpointAuth::Basic(secret) => {
                // RFC 6749 2.3.1: form-encode id and secret before base64.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let credentials = SecretString::new(format!(
                    "{}:{}",
                    enc(&self.settings.client_id),
                    enc(secret.expose())
                ));
                let value = SecretString::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials.expose())
                ));
                request = request.header(::http::header::AUTHORIZATION, value.expose());
            }
            TokenEndpointAuth::Post(secret) => {
                form.append_pair("client_id", &self.settings.client_id);
                form.append_pair("client_secret", secret.expose());
            }
            TokenEndpointAuth::PrivateKeyJwt(_) => {
                form.append_pair("client_id", &self.settings.client_id);
                if let Some(assertion) = self.client_assertion(now)? {
                    form.append_pair("client_assertion_type", ASSERTION_TYPE);
                    form.append_pair("client_assertion", assertion.expose());
                }
            }
        }
        Ok(request)
    }

    /// A fresh `private_key_jwt` assertion issued at `now`, or `None` with a client secret
    /// method.
    ///
    /// # Errors
    /// When the assertion cannot be signed (the OS refused randomness).
    pub(super) fn client_assertion(
        &self,
        now: i64,
    ) -> Result<Option<SecretString>, AssertionError> {
        let TokenEndpointAuth::PrivateKeyJwt(config) = &self.settings.token_endpoint_auth else {
            return Ok(None);
        };
        let audience = match config.audience {
            AssertionAudience::TokenEndpoint => self.token_endpoint.as_str(),
            AssertionAudience::Issuer => self.settings.issuer.as_str(),
        };
        config
            .key
            .assertion(&self.settings.client_id, audience, now)
            .map(Some)
    }
}
