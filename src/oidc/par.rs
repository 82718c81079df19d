//! Pushed authorization requests (RFC 9126). With a PAR endpoint in use, every parameter of
//! the authorization request (sealgate's own, `auth_params`, the SPA's login parameters) is
//! POSTed with client authentication to the PAR endpoint through the IdP client (timeouts, no
//! redirects, body cap); the browser then goes to the authorization endpoint with only
//! `client_id` and the `request_uri` the IdP returned. The request cannot be read or altered
//! in the browser, and the IdP knows it came from this client.

use serde_json::{Map, Value};
use url::Url;
use url::form_urlencoded::{self, Serializer};

use super::Provider;
use super::error::ParError;
use crate::secret::SecretString;

/// Longest `request_uri` accepted.
pub(crate) const MAX_REQUEST_URI_LEN: usize = 2048;

impl Provider {
    /// Where to send the browser to start one login: the authorization request URL, or, when
    /// authorization requests are pushed, the authorization endpoint with `client_id` and the
    /// `request_uri` the PAR endpoint returned.
    ///
    /// # Errors
    /// A [`ParError`] when the push fails; the login cannot start.
    pub(crate) async fn authorization_redirect(
        &self,
        state: &SecretString,
        nonce: &SecretString,
        verifier: &SecretString,
        extra: &[(String, String)],
        now: i64,
    ) -> Result<Url, ParError> {
        let url = self.authorization_url(state, nonce, verifier, extra);
        let Some(endpoint) = &self.par_endpoint else {
            return Ok(url);
        };
        // The authorization endpoint's own query parameters (if it has any) come first in
        // `url`: they stay on the browser's URL, and the request's own follow them.
        let base = self.client.auth_uri().url();
        let own = base.query_pairs().count();
        let params: Vec<(String, String)> = url
            .query_pairs()
            .skip(own)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let request_uri = self.push(endpoint, &params, now).await?;
        let mut browser = base.clone();
        browser
            .query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("request_uri", request_uri.expose());
        Ok(browser)
    }

    /// POSTs `params` to the PAR endpoint and returns its `request_uri`.
    async fn push(
        &self,
        endpoint: &Url,
        params: &[(String, String)],
        now: i64,
    ) -> Result<SecretString, ParError> {
        let request = self
            .par_request(endpoint, params, now)
            .map_err(ParError::Unreachable)?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| ParError::Unreachable(e.to_string()))?;
        parse_par_response(response.status().as_u16(), response.body())
    }

    /// The PAR request: `params` and this client's authentication (a `private_key_jwt`
    /// assertion dated `now`), as a form.
    fn par_request(
        &self,
        endpoint: &Url,
        params: &[(String, String)],
        now: i64,
    ) -> Result<::http::Request<Vec<u8>>, String> {
        let mut auth = Serializer::new(String::new());
        let request = ::http::Request::post(endpoint.as_str())
            .header(
                ::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(::http::header::ACCEPT, "application/json");
        let request = self
            .authenticate(request, &mut auth, now)
            .map_err(|e| e.to_string())?;
        let auth = SecretString::new(auth.finish());
        // `client_id` once: client authentication may have sent it already (client_secret_post).
        let has_client_id =
            form_urlencoded::parse(auth.expose().as_bytes()).any(|(k, _)| k == "client_id");
        let mut form = Serializer::for_suffix(auth.expose().to_owned(), 0);
        for (name, value) in params {
            if name != "client_id" || !has_client_id {
                form.append_pair(name, value);
            }
        }
        let body = SecretString::new(form.finish());
        request
            .body(body.expose().as_bytes().to_vec())
            .map_err(|e| e.to_string())
    }
}

/// The `request_uri` of a PAR response (RFC 9126 2.2): 201 (or 200) with a JSON object whose
/// `request_uri` is a non-empty string of at most [`MAX_REQUEST_URI_LEN`] characters without
/// control characters and whose `expires_in` is a positive integer. Pure.
///
/// # Errors
/// [`ParError::Refused`] for another status, [`ParError::BadResponse`] for a body that breaks
/// a rule.
pub(crate) fn parse_par_response(status: u16, body: &[u8]) -> Result<SecretString, ParError> {
    let object = serde_json::from_slice::<Map<String, Value>>(body).ok();
    if status != 201 && status != 200 {
        // Only the OAuth error code reaches the log, reduced to its safe characters.
        let error = super::error_code(object.as_ref());
        return Err(ParError::Refused { status, error });
    }
    let object = object.ok_or(ParError::BadResponse("not a JSON object"))?;
    let uri = object
        .get("request_uri")
        .and_then(Value::as_str)
        .ok_or(ParError::BadResponse(
            "request_uri is missing or not a string",
        ))?;
    if uri.is_empty() || uri.len() > MAX_REQUEST_URI_LEN || uri.chars().any(char::is_control) {
        return Err(ParError::BadResponse(
            "request_uri is empty, too long or has control characters",
        ));
    }
    if object
        .get("expires_in")
        .and_then(Value::as_u64)
        .is_none_or(|s| s == 0)
    {
        return Err(ParError::BadResponse(
            "expires_in is not a positive integer",
        ));
    }
    Ok(SecretString::new(uri.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_responses_are_checked() {
        let ok = br#"{"request_uri":"urn:ietf:params:oauth:request_uri:abc","expires_in":60}"#;
        for status in [200, 201] {
            let uri = parse_par_response(status, ok).unwrap();
            assert_eq!(uri.expose(), "urn:ietf:params:oauth:request_uri:abc");
        }
        let long = format!(
            r#"{{"request_uri":"{}","expires_in":60}}"#,
            "a".repeat(MAX_REQUEST_URI_LEN + 1)
        );
        for body in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"expires_in":60}"#,
            br#"{"request_uri":5,"expires_in":60}"#,
            br#"{"request_uri":"","expires_in":60}"#,
            br#"{"request_uri":"a\nb","expires_in":60}"#,
            br#"{"request_uri":"urn:x"}"#,
            br#"{"request_uri":"urn:x","expires_in":0}"#,
            br#"{"request_uri":"urn:x","expires_in":-5}"#,
            br#"{"request_uri":"urn:x","expires_in":"60"}"#,
            long.as_bytes(),
        ] {
            assert!(
                matches!(parse_par_response(201, body), Err(ParError::BadResponse(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        match parse_par_response(400, br#"{"error":"invalid_request\n<script>"}"#) {
            Err(ParError::Refused { status, error }) => {
                assert_eq!(status, 400);
                assert_eq!(error, "invalid_requestscript");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_par_response(302, ok),
            Err(ParError::Refused { status: 302, .. })
        ));
        assert!(matches!(
            parse_par_response(503, b"down"),
            Err(ParError::Refused { status: 503, .. })
        ));
    }
}
