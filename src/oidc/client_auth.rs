//! Client authentication for the requests sealgate builds itself (token revocation; every
//! form POST to the IdP that does not go through openidconnect's request types).

use base64::Engine as _;
use url::form_urlencoded::Serializer;

use super::Provider;
use crate::config::TokenEndpointAuth;
use crate::secret::SecretString;

impl Provider {
    /// Adds this client's credentials to a form POST to the IdP: an `Authorization: Basic`
    /// header or `client_id`/`client_secret` form fields, as configured.
    pub(super) fn authenticate(
        &self,
        mut request: ::http::request::Builder,
        form: &mut Serializer<'_, String>,
    ) -> ::http::request::Builder {
        match self.settings.token_endpoint_auth {
            TokenEndpointAuth::Basic => {
                // RFC 6749 2.3.1: form-encode id and secret before base64.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let credentials = SecretString::new(format!(
                    "{}:{}",
                    enc(&self.settings.client_id),
                    enc(self.settings.client_secret.expose())
                ));
                let value = SecretString::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials.expose())
                ));
                request = request.header(::http::header::AUTHORIZATION, value.expose());
            }
            TokenEndpointAuth::Post => {
                form.append_pair("client_id", &self.settings.client_id);
                form.append_pair("client_secret", self.settings.client_secret.expose());
            }
        }
        request
    }
}
