//! Route tokens at the token endpoint: a refresh-token grant for a `resource` (RFC 8707) and/or
//! `scope`, a token exchange of the session's access token (RFC 8693), and a client-credentials
//! grant (RFC 6749 4.4) for the application's own token. Each is a form POST with this client's
//! authentication (a fresh `private_key_jwt` assertion each time), and the provider's
//! `token_params` except `resource` and `audience`: a route's audience is the route's to say.
//!
//! Sent directly rather than through openidconnect's request types: the answers are checked by
//! [`parse_token_response`] (pure), which also tells a refusal by the IdP (an OAuth error, 4xx)
//! from a failure (unreachable, 5xx, a response that breaks RFC 6749 5.1).

use serde_json::{Map, Value};
use url::form_urlencoded::Serializer;

use super::Provider;
use crate::dpop::{DpopKey, TokenType};
use crate::secret::SecretString;
use crate::token::Token;

/// `grant_type` of a token exchange (RFC 8693 2.1).
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an access token (RFC 8693 3).
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The token type of a JWT (RFC 8693 3), which an exchange may report for an access token.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Longest access token accepted (upstreams refuse far shorter headers).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// `token_params` a route grant never sends: the route names its own audience.
const ROUTE_OWNED: &[&str] = &[
    "resource",
    "audience",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "actor_token",
    "actor_token_type",
];

/// A route token as the token endpoint issued it.
pub(crate) struct Granted {
    /// The access token, checked to be a header value.
    pub access_token: SecretString,
    /// `expires_in`, when the IdP said.
    pub expires_in: Option<u64>,
    /// A refresh token the response carries (a refresh-token grant's rotation).
    pub refresh_token: Option<Token>,
    /// `token_type`: `DPoP` only when the grant carried a proof (else refused).
    pub token_type: TokenType,
}

impl std::fmt::Debug for Granted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Granted")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a route token could not be had. Logged in full; the browser learns only whether the IdP
/// refused ([`RouteGrantError::is_refusal`]) or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RouteGrantError {
    /// The IdP refused the grant: an OAuth error with a 4xx status (`invalid_grant`,
    /// `invalid_target`, `invalid_scope`, …; its code reduced to safe characters).
    #[error("token endpoint refused the grant: {status} {error}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, letters, digits and `_` only.
        error: String,
    },
    /// The token endpoint answered a 5xx (or another status that is no answer).
    #[error("token endpoint answered {0}")]
    Status(u16),
    /// The token endpoint could not be reached, timed out, or the request could not be made.
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    /// A 200 that is not a usable token response.
    #[error("token response refused: {0}")]
    BadResponse(&'static str),
    /// The route needs the session's refresh token, and the session has none.
    #[error("the session has no refresh token")]
    NoRefreshToken,
}

/// OAuth errors about the user's grant (RFC 6749 5.2, RFC 8707, OIDC Core 3.1.2.6): signing in
/// again (or consenting) may cure them. Anything else a token endpoint refuses with is about
/// sealgate's request or client (`invalid_client`, `unauthorized_client`, `invalid_request`,
/// `unsupported_grant_type`), or the IdP's state (a 404, a 429): the user can do nothing.
const USER_REFUSALS: &[&str] = &[
    "invalid_grant",
    "invalid_scope",
    "invalid_target",
    "consent_required",
    "interaction_required",
    "login_required",
    "access_denied",
];

impl From<crate::cluster::TurnBusy> for RouteGrantError {
    fn from(_: crate::cluster::TurnBusy) -> Self {
        Self::Unreachable("another instance's grant on this refresh token took too long".into())
    }
}

impl RouteGrantError {
    /// Whether the IdP refused the user's grant (401 `route_token_refused` for the route:
    /// signing in again may help) rather than failed (502: a 400/401 with another error, any
    /// other 4xx, a 5xx, an unreachable IdP, a bad response).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { status: 400 | 401, error } if USER_REFUSALS.contains(&error.as_str()))
    }
}

impl Provider {
    /// A token for `resource` and/or `scope`, from the session's `refresh` token (with a proof
    /// of the session's DPoP `key`, when it has one).
    ///
    /// # Errors
    /// A [`RouteGrantError`]; nothing is changed.
    pub(crate) async fn route_refresh(
        &self,
        refresh: &SecretString,
        resource: Option<&str>,
        scope: Option<&str>,
        now: i64,
        key: Option<&DpopKey>,
    ) -> Result<Granted, RouteGrantError> {
        let mut params = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose()),
        ];
        params.extend(resource.map(|r| ("resource", r)));
        params.extend(scope.map(|s| ("scope", s)));
        self.route_grant(&params, false, now, key).await
    }

    /// `subject`, the session's access token, exchanged for a token for `audience`, `resource`
    /// and/or `scope` (RFC 8693 2.1), with a proof of the session's DPoP `key` when it has one.
    /// A refresh token in the answer is ignored.
    ///
    /// # Errors
    /// A [`RouteGrantError`].
    pub(crate) async fn exchange_token(
        &self,
        subject: &SecretString,
        audience: Option<&str>,
        resource: Option<&str>,
        scope: Option<&str>,
        now: i64,
        key: Option<&DpopKey>,
    ) -> Result<Granted, RouteGrantError> {
        let mut params = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject.expose()),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        params.extend(audience.map(|a| ("audience", a)));
        params.extend(resource.map(|r| ("resource", r)));
        params.extend(scope.map(|s| ("scope", s)));
        let mut granted = self.route_grant(&params, true, now, key).await?;
        granted.refresh_token = None;
        Ok(granted)
    }

    /// The application's own token for `resource` and/or `scope` (RFC 6749 4.4), with a proof
    /// of this instance's client key when the provider uses DPoP. A refresh token in the
    /// answer is ignored (4.4.3: none should be issued).
    ///
    /// # Errors
    /// A [`RouteGrantError`].
    pub(crate) async fn client_credentials(
        &self,
        resource: Option<&str>,
        scope: Option<&str>,
        now: i64,
    ) -> Result<Granted, RouteGrantError> {
        let mut params = vec![("grant_type", "client_credentials")];
        params.extend(resource.map(|r| ("resource", r)));
        params.extend(scope.map(|s| ("scope", s)));
        let key = self.client_dpop_key.as_ref();
        let mut granted = self.route_grant(&params, false, now, key).await?;
        granted.refresh_token = None;
        Ok(granted)
    }

    /// POSTs `params`, `token_params` (but [`ROUTE_OWNED`] names) and client authentication
    /// (an assertion dated `now`) to the token endpoint, with a proof of `key` when given.
    async fn route_grant(
        &self,
        params: &[(&str, &str)],
        exchange: bool,
        now: i64,
        key: Option<&DpopKey>,
    ) -> Result<Granted, RouteGrantError> {
        let request = {
            let mut form = Serializer::new(String::new());
            for (name, value) in params {
                form.append_pair(name, value);
            }
            for (name, value) in &self.settings.token_params {
                if !ROUTE_OWNED.iter().any(|o| name.eq_ignore_ascii_case(o)) {
                    form.append_pair(name, value);
                }
            }
            let request = ::http::Request::post(self.token_endpoint.as_str())
                .header(
                    ::http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(::http::header::ACCEPT, "application/json");
            let request = self
                .authenticate(request, &mut form, now)
                .map_err(|e| RouteGrantError::Unreachable(e.to_string()))?;
            let body = SecretString::new(form.finish());
            request
                .body(body.expose().as_bytes().to_vec())
                .map_err(|e| RouteGrantError::Unreachable(e.to_string()))?
        };
        let response = self
            .outbound(key, now)
            .send(request)
            .await
            .map_err(|e| RouteGrantError::Unreachable(e.to_string()))?;
        let body = zeroize::Zeroizing::new(response.body().clone());
        let granted = parse_token_response(response.status().as_u16(), &body, exchange)?;
        if granted.token_type == TokenType::Dpop && key.is_none() {
            return Err(RouteGrantError::BadResponse(
                "token_type is DPoP, but no proof was sent",
            ));
        }
        Ok(granted)
    }
}

/// A token response (RFC 6749 5.1, 5.2; RFC 8693 2.2). Pure.
///
/// 200 with a JSON object: `access_token` a non-empty string of visible ASCII (at most 16 KiB),
/// `token_type` `Bearer` or `DPoP` (any case), `expires_in` a positive integer (or a string of digits, as
/// Azure AD v1 and AD FS send it) when present, `refresh_token` a non-empty string when
/// present; for an `exchange`, `issued_token_type` (when present) an access token or a JWT.
/// A 4xx is a refusal with the OAuth `error` (reduced to safe characters); anything else is a
/// failure.
///
/// # Errors
/// [`RouteGrantError::Refused`], [`RouteGrantError::Status`] or
/// [`RouteGrantError::BadResponse`].
pub(crate) fn parse_token_response(
    status: u16,
    body: &[u8],
    exchange: bool,
) -> Result<Granted, RouteGrantError> {
    let object = serde_json::from_slice::<Map<String, Value>>(body).ok();
    if (400..500).contains(&status) {
        let error = super::error_code(object.as_ref());
        return Err(RouteGrantError::Refused { status, error });
    }
    if status != 200 {
        return Err(RouteGrantError::Status(status));
    }
    let object = object.ok_or(RouteGrantError::BadResponse("not a JSON object"))?;
    let access =
        object
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or(RouteGrantError::BadResponse(
                "access_token is missing or not a string",
            ))?;
    if access.is_empty()
        || access.len() > MAX_TOKEN_LEN
        || !access.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(RouteGrantError::BadResponse(
            "access_token is empty, too long or not visible ASCII",
        ));
    }
    let token_type = object
        .get("token_type")
        .and_then(Value::as_str)
        .and_then(TokenType::parse)
        .ok_or(RouteGrantError::BadResponse(
            "token_type is neither Bearer nor DPoP",
        ))?;
    let expires_in =
        match object.get("expires_in") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().filter(|s| *s > 0).ok_or(
                RouteGrantError::BadResponse("expires_in is not a positive integer"),
            )?),
            Some(Value::String(s))
                if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(s.parse::<u64>().ok().filter(|s| *s > 0).ok_or(
                    RouteGrantError::BadResponse("expires_in is not a positive integer"),
                )?)
            }
            Some(_) => {
                return Err(RouteGrantError::BadResponse(
                    "expires_in is not a positive integer",
                ));
            }
        };
    if exchange
        && let Some(issued) = object.get("issued_token_type")
        && !matches!(issued.as_str(), Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE))
    {
        return Err(RouteGrantError::BadResponse(
            "issued_token_type is not an access token",
        ));
    }
    let refresh_token = match object.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(Token::from_issued(s)),
        Some(_) => {
            return Err(RouteGrantError::BadResponse(
                "refresh_token is empty or not a string",
            ));
        }
    };
    Ok(Granted {
        access_token: SecretString::new(access.to_owned()),
        expires_in,
        refresh_token,
        token_type,
    })
}

#[cfg(test)]
mod tests;
