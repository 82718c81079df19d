//! `/token`: client authentication, the authorization-code and refresh grants, and the minting
//! of access and ID tokens; the RFC 6749 §5.2 errors and the reading of form bodies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::store::{Login, RefreshGrant};
use super::users::{granted_scope, slug};
use super::{
    BODY_LIMIT, BODY_READ_TIMEOUT, DEMO_API_AUDIENCE, Idp, REFRESH_LIFETIME_SECS,
    TOKEN_LIFETIME_SECS,
};
use crate::form::{Params, param, parse_basic_auth, parse_params};
use crate::http::json_response;
use crate::random::{RandomError, random_token};

/// RFC 6749 §5.2 token-endpoint errors (also used by revocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OAuthError {
    InvalidRequest(&'static str),
    InvalidClient,
    InvalidGrant(&'static str),
    UnsupportedGrantType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthError {
    pub(super) fn response(self) -> Response<Full<Bytes>> {
        let (status, error, description) = match self {
            OAuthError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            OAuthError::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            ),
            OAuthError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", d),
            OAuthError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only authorization_code and refresh_token are supported",
            ),
            OAuthError::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the requested scope exceeds the granted scope",
            ),
            OAuthError::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            ),
            OAuthError::TemporarilyUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "too many pending requests",
            ),
        };
        let mut response = json_response(
            status,
            &json!({"error": error, "error_description": description}),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="sealgate-dev-idp""#),
            );
        }
        response
    }
}

impl From<RandomError> for OAuthError {
    fn from(error: RandomError) -> Self {
        tracing::error!(%error, "development IdP: no randomness");
        OAuthError::ServerError
    }
}

/// The claims of the access tokens this IdP issues (RFC 9068).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AccessTokenClaims {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) aud: String,
    pub(super) client_id: String,
    pub(super) exp: u64,
    pub(super) iat: u64,
    pub(super) jti: String,
    pub(super) scope: String,
    pub(super) sid: String,
    pub(super) name: String,
}

#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    sid: &'a str,
    at_hash: &'a str,
    name: &'a str,
    preferred_username: &'a str,
    email: &'a str,
}

/// Constant-time equality that also hides the lengths (both sides are hashed first).
fn ct_eq_str(a: &str, b: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(a.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(b.as_bytes()).into();
    a.ct_eq(&b).into()
}

impl Idp {
    /// Authenticates the client by exactly one of `client_secret_basic` and
    /// `client_secret_post` (RFC 6749 §2.3.1); returns its `client_id`.
    pub(super) fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<String, OAuthError> {
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        let basic = authorization.next();
        if authorization.next().is_some() {
            return Err(OAuthError::InvalidRequest(
                "more than one Authorization header",
            ));
        }
        let (client_id, secret) = match (basic, param(params, "client_secret")) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::InvalidRequest(
                    "use exactly one client authentication method",
                ));
            }
            (Some(value), None) => {
                let value = value.to_str().map_err(|_| OAuthError::InvalidClient)?;
                let (id, secret) = parse_basic_auth(value).ok_or(OAuthError::InvalidClient)?;
                if param(params, "client_id").is_some_and(|p| p != id) {
                    return Err(OAuthError::InvalidClient);
                }
                (id, secret)
            }
            (None, Some(secret)) => {
                let id = param(params, "client_id").ok_or(OAuthError::InvalidClient)?;
                (id.to_owned(), secret.to_owned())
            }
            (None, None) => return Err(OAuthError::InvalidClient),
        };
        let id_ok = ct_eq_str(&client_id, &self.config.client_id);
        let secret_ok = ct_eq_str(&secret, &self.config.client_secret);
        if id_ok & secret_ok {
            Ok(client_id)
        } else {
            tracing::info!("development IdP: client authentication failed");
            Err(OAuthError::InvalidClient)
        }
    }

    pub(super) fn token(
        &self,
        headers: &HeaderMap,
        params: &Params,
        now: u64,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let client_id = self.authenticate_client(headers, params)?;
        match param(params, "grant_type") {
            Some("authorization_code") => self.code_grant(&client_id, params, now),
            Some("refresh_token") => self.refresh_grant(&client_id, params, now),
            Some(_) => Err(OAuthError::UnsupportedGrantType),
            None => Err(OAuthError::InvalidRequest("grant_type is required")),
        }
    }

    fn code_grant(
        &self,
        client_id: &str,
        params: &Params,
        now: u64,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let code = param(params, "code").ok_or(OAuthError::InvalidRequest("code is required"))?;
        let redirect_uri = param(params, "redirect_uri")
            .ok_or(OAuthError::InvalidRequest("redirect_uri is required"))?;
        let verifier = param(params, "code_verifier").ok_or(OAuthError::InvalidRequest(
            "code_verifier is required (PKCE)",
        ))?;
        let refresh_token = random_token::<32>()?;
        let grant = self
            .store()
            .redeem_code(code, client_id, redirect_uri, verifier, now)
            .map_err(|e| {
                tracing::info!(reason = e.description(), "development IdP: code refused");
                OAuthError::InvalidGrant(e.description())
            })?;
        let body = self.mint_tokens(&grant.login, grant.nonce.as_deref(), &refresh_token, now)?;
        self.store().insert_refresh(
            refresh_token,
            RefreshGrant {
                login: grant.login,
                expires_at: now + REFRESH_LIFETIME_SECS,
            },
            now,
        );
        Ok(json_response(StatusCode::OK, &body))
    }

    fn refresh_grant(
        &self,
        client_id: &str,
        params: &Params,
        now: u64,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let old = param(params, "refresh_token")
            .ok_or(OAuthError::InvalidRequest("refresh_token is required"))?;
        let new = random_token::<32>()?;
        let login = self
            .store()
            .rotate_refresh(old, client_id, new.clone(), now)
            .map_err(|e| {
                tracing::info!(reason = e.description(), "development IdP: refresh refused");
                OAuthError::InvalidGrant(e.description())
            })?;
        // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
        let mut login = login;
        if let Some(requested) = param(params, "scope") {
            let granted: Vec<&str> = login.scope.split(' ').collect();
            if !requested.split(' ').all(|s| granted.contains(&s)) {
                return Err(OAuthError::InvalidScope);
            }
            login.scope = granted_scope(requested);
        }
        // OIDC Core §12.2: same iss, sub, aud, auth_time; no nonce.
        let body = self.mint_tokens(&login, None, &new, now)?;
        Ok(json_response(StatusCode::OK, &body))
    }

    /// The token response for `login`: a fresh access token and ID token, and `refresh_token`.
    fn mint_tokens(
        &self,
        login: &Login,
        nonce: Option<&str>,
        refresh_token: &str,
        now: u64,
    ) -> Result<serde_json::Value, OAuthError> {
        let access_token = self.sign(
            "at+jwt",
            &AccessTokenClaims {
                iss: self.issuer.clone(),
                sub: login.sub.clone(),
                aud: DEMO_API_AUDIENCE.to_owned(),
                client_id: login.client_id.clone(),
                exp: now + TOKEN_LIFETIME_SECS,
                iat: now,
                jti: random_token::<16>()?,
                scope: login.scope.clone(),
                sid: login.sid.clone(),
                name: login.name.clone(),
            },
        )?;
        // OIDC Core §3.3.2.11: the left half of SHA-256 of the access token.
        let digest = Sha256::digest(access_token.as_bytes());
        let at_hash = URL_SAFE_NO_PAD.encode(&digest[..16]);
        let handle = slug(&login.name, &login.sub);
        let id_token = self.sign(
            "JWT",
            &IdTokenClaims {
                iss: &self.issuer,
                sub: &login.sub,
                aud: &login.client_id,
                exp: now + TOKEN_LIFETIME_SECS,
                iat: now,
                auth_time: login.auth_time,
                nonce,
                sid: &login.sid,
                at_hash: &at_hash,
                name: &login.name,
                preferred_username: &handle,
                email: &format!("{handle}@example.test"),
            },
        )?;
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECS,
            "refresh_token": refresh_token,
            "id_token": id_token,
            "scope": login.scope,
        }))
    }

    fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, OAuthError> {
        self.key.sign(typ, claims).map_err(|error| {
            tracing::error!(%error, "development IdP: signing failed");
            OAuthError::ServerError
        })
    }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyError {
    TooLarge,
    Unreadable,
    RepeatedParameter,
}

impl BodyError {
    pub(super) fn description(self) -> &'static str {
        match self {
            BodyError::TooLarge => "request body too large",
            BodyError::Unreadable => "request body could not be read",
            BodyError::RepeatedParameter => "a parameter is repeated",
        }
    }
}

/// Reads a form body (at most `BODY_LIMIT` bytes, within `BODY_READ_TIMEOUT`).
pub(super) async fn read_params(body: Incoming) -> Result<Params, BodyError> {
    let collected =
        tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, BODY_LIMIT).collect())
            .await
            .map_err(|_| BodyError::Unreadable)?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(BodyError::TooLarge);
        }
        Err(_) => return Err(BodyError::Unreadable),
    };
    parse_params(&bytes).map_err(|_| BodyError::RepeatedParameter)
}

/// Reads the form of a token or revocation request, which must be
/// `application/x-www-form-urlencoded` (RFC 6749 §3.2).
pub(super) async fn read_form(headers: &HeaderMap, body: Incoming) -> Result<Params, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    read_params(body)
        .await
        .map_err(|e| OAuthError::InvalidRequest(e.description()))
}
