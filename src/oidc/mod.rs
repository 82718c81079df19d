//! The OpenID Provider, seen from sealgate: discovery, the authorization request, the code
//! exchange, ID token validation (OIDC Core 3.1.3.7), userinfo, token revocation (RFC 7009) and
//! RP-initiated logout URLs. All HTTP goes through [`http::IdpHttpClient`].
//!
//! ID token validation is openidconnect's (signature, `iss`, `aud`, `exp`, `nonce`), configured
//! here with an asymmetric-only algorithm allowlist (no `none`, no HMAC of any kind, so a public
//! key can never be used as an HMAC secret), a clock from the caller, `iat` bounds, and the `azp`
//! rule openidconnect leaves to its users. An unknown `kid` refetches the JWKS at most once per
//! cooldown, so key rotation at the IdP needs no restart and a flood of forged `kid`s cannot
//! turn sealgate into a JWKS-fetching amplifier.
//!
//! Back-channel logout tokens ([`logout_token`]) are checked with the same key set and
//! algorithm allowlist, through `jsonwebtoken` (openidconnect has no type for them), and share
//! the refetch rule: only a token that passed every check needing no key may cause a refetch.

pub mod http;
pub mod logout_token;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use url::Url;

use self::http::IdpHttpClient;
use self::logout_token::{Expectations, LogoutClaims, LogoutTokenError};
use crate::config::{OidcSettings, TokenEndpointAuth};
use crate::secret::SecretString;
use crate::token::Token;

/// Provider metadata fields openidconnect's core set lacks.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207: the IdP sends `iss` in authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// RP-initiated logout endpoint.
    pub end_session_endpoint: Option<String>,
    /// RFC 7009 revocation endpoint.
    pub revocation_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// Discovery document with the extra fields.
pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Start-up failures talking to the IdP.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// Discovery failed (unreachable, bad document, or an issuer other than configured).
    #[error("OIDC discovery for {issuer} failed: {reason}")]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The metadata names an endpoint sealgate will not call.
    #[error("OIDC discovery for {issuer}: {field} {problem}")]
    Endpoint {
        /// The configured issuer.
        issuer: String,
        /// The metadata field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Why a login could not be completed with the IdP. Logged in full; the browser sees a
/// generic page.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The token endpoint answered with an OAuth error (`invalid_grant`, …).
    #[error("token endpoint error: {0}")]
    TokenEndpoint(String),
    /// The token endpoint could not be reached or timed out.
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    /// The token request could not be made, or the response did not parse.
    #[error("token request failed: {0}")]
    TokenRequest(String),
    /// The token response lacks a required token.
    #[error("token response has no {0}")]
    MissingToken(&'static str),
    /// The ID token failed validation.
    #[error("ID token rejected: {0}")]
    IdToken(String),
    /// The userinfo call failed or named another subject.
    #[error("userinfo: {0}")]
    UserInfo(String),
}

/// What a successful code exchange yields.
#[derive(Debug)]
pub struct LoginTokens {
    /// The access token.
    pub access_token: Token,
    /// Its expiry (unix seconds), when the IdP said.
    pub access_expires_at: Option<i64>,
    /// The refresh token, when issued.
    pub refresh_token: Option<Token>,
    /// The validated ID token.
    pub id_token: Token,
    /// `sub` of the ID token.
    pub sub: String,
    /// `sid` of the ID token, when present.
    pub sid: Option<String>,
}

/// The configured OpenID Provider after discovery.
pub struct Provider {
    settings: OidcSettings,
    issuer_url: IssuerUrl,
    http: IdpHttpClient,
    client: Client,
    metadata_extra: ExtraMetadata,
    jwks_uri: openidconnect::JsonWebKeySetUrl,
    jwks: RwLock<CoreJsonWebKeySet>,
    /// The same keys as `jwks`, for jsonwebtoken (logout tokens); replaced together.
    jose_jwks: RwLock<Arc<jsonwebtoken::jwk::JwkSet>>,
    last_refetch: Mutex<Option<Instant>>,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    /// `allowed_algs` for jsonwebtoken.
    jose_algs: Vec<jsonwebtoken::Algorithm>,
    end_session: Option<Url>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

fn endpoint_url(issuer: &str, field: &'static str, text: &str) -> Result<Url, DiscoveryError> {
    let err = |problem: String| DiscoveryError::Endpoint {
        issuer: issuer.to_owned(),
        field,
        problem,
    };
    let url = Url::parse(text).map_err(|e| err(format!("is not a URL: {e}")))?;
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(err("must be https (http only on loopback)".into())),
    }
}

impl Provider {
    /// Runs discovery for the configured issuer and fetches its JWKS.
    ///
    /// # Errors
    /// When the IdP is unreachable, its issuer differs from the configured one, or an endpoint
    /// is unusable.
    pub async fn discover(
        settings: &OidcSettings,
        redirect_uri: &str,
    ) -> Result<Self, DiscoveryError> {
        let http = IdpHttpClient::new(settings.timeout)?;
        let issuer = settings.issuer.clone();
        let disc_err = |reason: String| DiscoveryError::Discovery {
            issuer: issuer.clone(),
            reason,
        };
        let issuer_url = IssuerUrl::new(issuer.clone()).map_err(|e| disc_err(e.to_string()))?;
        // openidconnect compares the discovered issuer with this one and refuses a mismatch.
        let metadata = Metadata::discover_async(issuer_url.clone(), &http)
            .await
            .map_err(|e| disc_err(error_chain(&e)))?;
        let extra = metadata.additional_metadata().clone();
        for (field, value) in [
            (
                "authorization_endpoint",
                Some(metadata.authorization_endpoint().as_str()),
            ),
            (
                "token_endpoint",
                metadata.token_endpoint().map(|u| u.as_str()),
            ),
            ("jwks_uri", Some(metadata.jwks_uri().as_str())),
            (
                "userinfo_endpoint",
                metadata.userinfo_endpoint().map(|u| u.as_str()),
            ),
            ("revocation_endpoint", extra.revocation_endpoint.as_deref()),
            (
                "end_session_endpoint",
                extra.end_session_endpoint.as_deref(),
            ),
        ] {
            if let Some(v) = value {
                endpoint_url(&issuer, field, v)?;
            }
        }
        if metadata.token_endpoint().is_none() {
            return Err(disc_err("the metadata has no token_endpoint".into()));
        }
        let end_session = extra
            .end_session_endpoint
            .as_deref()
            .map(|u| endpoint_url(&issuer, "end_session_endpoint", u))
            .transpose()?;
        let allowed_algs = settings
            .id_token_signing_algs
            .iter()
            .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
            .collect();
        // Config allows only the asymmetric algorithms, all of which jsonwebtoken knows.
        let jose_algs = settings
            .id_token_signing_algs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let jwks_uri = metadata.jwks_uri().clone();
        let jwks = metadata.jwks().clone();
        let jose_jwks = RwLock::new(Arc::new(logout_token::jose_keys(&jwks)));
        let redirect =
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| disc_err(e.to_string()))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            Some(ClientSecret::new(
                settings.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(match settings.token_endpoint_auth {
            TokenEndpointAuth::Basic => AuthType::BasicAuth,
            TokenEndpointAuth::Post => AuthType::RequestBody,
        });
        Ok(Self {
            settings: settings.clone(),
            issuer_url,
            http,
            client,
            metadata_extra: extra,
            jwks_uri,
            jwks: RwLock::new(jwks),
            jose_jwks,
            last_refetch: Mutex::new(None),
            allowed_algs,
            jose_algs,
            end_session,
        })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Whether the IdP promises an `iss` parameter in authorization responses (RFC 9207).
    pub fn sends_iss_parameter(&self) -> bool {
        self.metadata_extra
            .authorization_response_iss_parameter_supported
    }

    /// Whether the IdP has an RFC 7009 revocation endpoint.
    pub fn can_revoke(&self) -> bool {
        self.metadata_extra.revocation_endpoint.is_some()
    }

    /// The authorization request URL for one login flow.
    pub fn authorization_url(
        &self,
        state: &SecretString,
        nonce: &SecretString,
        verifier: &SecretString,
    ) -> Url {
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            verifier.expose().to_owned(),
        ));
        let (state, nonce) = (state.expose().to_owned(), nonce.expose().to_owned());
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.url();
        url
    }

    /// Exchanges `code`, validates the ID token against `nonce` at time `now`, and (if
    /// configured) checks userinfo.
    ///
    /// # Errors
    /// A [`LoginError`] saying which step failed; nothing from a failed response is kept.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &SecretString,
        nonce: &SecretString,
        now: i64,
    ) -> Result<LoginTokens, LoginError> {
        let request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| LoginError::TokenRequest(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    LoginError::TokenEndpoint(r.error().to_string())
                }
                RequestTokenError::Request(e) => LoginError::Unreachable(error_chain(&e)),
                other => LoginError::TokenRequest(error_chain(&other)),
            })?;

        let access = response.access_token().secret();
        if access.is_empty() {
            return Err(LoginError::MissingToken("access_token"));
        }
        let id_token = response
            .id_token()
            .ok_or(LoginError::MissingToken("id_token"))?;
        let verified = self.verify_id_token(id_token, Some(nonce), now).await?;

        if self.settings.use_userinfo {
            self.check_userinfo(response.access_token().clone(), &verified.sub)
                .await?;
        }
        let access_expires_at = response
            .expires_in()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .map(|s| now.saturating_add(s));
        Ok(LoginTokens {
            access_token: Token::from_issued(access),
            access_expires_at,
            refresh_token: response
                .refresh_token()
                .map(|r| Token::from_issued(r.secret())),
            id_token: verified.token,
            sub: verified.sub,
            sid: verified.sid,
        })
    }

    fn verifier(&self, now: i64) -> CoreIdTokenVerifier<'static> {
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(60);
        let max_age = i64::try_from(self.settings.max_id_token_age.as_secs()).unwrap_or(600);
        let trusted = self.settings.trusted_audiences.clone();
        let jwks = self
            .jwks
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        // A public-client verifier: HMAC-signed ID tokens are refused outright.
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.settings.client_id.clone()),
            self.issuer_url.clone(),
            jwks,
        )
        .set_allowed_algs(self.allowed_algs.clone())
        .set_time_fn(move || chrono::DateTime::from_timestamp(now - skew, 0).unwrap_or_default())
        .set_issue_time_verifier_fn(move |iat| {
            let iat = iat.timestamp();
            if iat > now + skew {
                Err(format!("issued {}s in the future", iat - now))
            } else if iat < now - max_age - skew {
                Err(format!(
                    "issued {}s ago, more than the allowed age",
                    now - iat
                ))
            } else {
                Ok(())
            }
        })
        .set_other_audience_verifier_fn(move |aud| trusted.iter().any(|t| t == aud.as_str()))
    }

    async fn verify_id_token(
        &self,
        id_token: &CoreIdToken,
        nonce: Option<&SecretString>,
        now: i64,
    ) -> Result<Verified, LoginError> {
        let expected = nonce.map(|n| Nonce::new(n.expose().to_owned()));
        let first = self.verify_with_current_keys(id_token, expected.as_ref(), now);
        let verified = match first {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.refetch_jwks().await => {
                self.verify_with_current_keys(id_token, expected.as_ref(), now)
            }
            other => other,
        }
        .map_err(|e| LoginError::IdToken(e.to_string()))?;
        Ok(verified)
    }

    fn verify_with_current_keys(
        &self,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        now: i64,
    ) -> Result<Verified, ClaimsVerificationError> {
        let verifier = self.verifier(now);
        // A refreshed ID token carries no nonce of ours (OIDC Core 12.2): None skips the check.
        let claims = match nonce {
            Some(n) => id_token.claims(&verifier, n)?,
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(()))?,
        };
        // OIDC Core 3.1.3.7 steps 4-5, which openidconnect leaves to the client.
        let client_id = self.settings.client_id.as_str();
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != client_id => {
                return Err(ClaimsVerificationError::InvalidAudience(format!(
                    "azp is not the client id ({azp:?})",
                    azp = azp.as_str()
                )));
            }
            None if claims.audiences().len() > 1 => {
                return Err(ClaimsVerificationError::InvalidAudience(
                    "several audiences but no azp".into(),
                ));
            }
            _ => {}
        }
        if claims.subject().is_empty() {
            return Err(ClaimsVerificationError::Other("empty sub".into()));
        }
        // `sid` is not among openidconnect's core claims; read it from the verified payload.
        let token = Token::from_issued(&id_token.to_string());
        let sid = token
            .jws_payload()
            .and_then(|p| serde_json::from_slice::<SidClaim>(p).ok())
            .and_then(|c| c.sid);
        Ok(Verified {
            sub: claims.subject().as_str().to_owned(),
            sid,
            token,
        })
    }

    /// Validates a back-channel logout token at time `now` (see [`logout_token`]): the same
    /// keys and algorithm allowlist as ID tokens, `iss` and `aud` as for ID tokens (trusted
    /// audiences included), `oidc.max_logout_token_age` and `oidc.strict_logout_token_typ`.
    /// A token that passes every check needing no key but names an unknown key refetches the
    /// JWKS (at most once per cooldown, shared with ID tokens) and is checked once more.
    ///
    /// # Errors
    /// The rule the token breaks (no token material).
    pub async fn validate_logout_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<LogoutClaims, LogoutTokenError> {
        match self.check_logout_token(token, now) {
            Err(LogoutTokenError::UnknownKey) if self.refetch_jwks().await => {
                self.check_logout_token(token, now)
            }
            other => other,
        }
    }

    fn check_logout_token(&self, token: &str, now: i64) -> Result<LogoutClaims, LogoutTokenError> {
        let keys = self
            .jose_jwks
            .read()
            .map(|k| Arc::clone(&k))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()));
        let s = &self.settings;
        let expect = Expectations {
            issuer: &s.issuer,
            client_id: &s.client_id,
            trusted_audiences: &s.trusted_audiences,
            algorithms: &self.jose_algs,
            clock_skew: i64::try_from(s.clock_skew.as_secs()).unwrap_or(60),
            max_age: i64::try_from(s.max_logout_token_age.as_secs()).unwrap_or(300),
            strict_typ: s.strict_logout_token_typ,
        };
        logout_token::validate(token, &keys, &expect, now)
    }

    /// Refetches the JWKS unless one was refetched within the cooldown. Returns whether the
    /// key set was replaced.
    async fn refetch_jwks(&self) -> bool {
        {
            let Ok(mut last) = self.last_refetch.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < self.settings.jwks_refetch_cooldown) {
                tracing::warn!("a token names an unknown key; JWKS refetch skipped (cooldown)");
                return false;
            }
            *last = Some(Instant::now());
        }
        match CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http).await {
            Ok(keys) => {
                tracing::info!("JWKS refetched after an unknown key id");
                let jose = Arc::new(logout_token::jose_keys(&keys));
                if let (Ok(mut k), Ok(mut j)) = (self.jwks.write(), self.jose_jwks.write()) {
                    *k = keys;
                    *j = jose;
                    return true;
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "JWKS refetch failed");
                false
            }
        }
    }

    /// Redeems `refresh` at the token endpoint. A new ID token, if any, is validated and must
    /// keep the `iss`, `sub` and `aud` of `previous_id_token` (OIDC Core 12.2).
    ///
    /// # Errors
    /// [`RefreshError::InvalidGrant`] when the IdP refuses the grant (the session is over);
    /// [`RefreshError::Failed`] for anything else.
    pub async fn refresh(
        &self,
        refresh: &SecretString,
        previous_id_token: Option<&Token>,
        now: i64,
    ) -> Result<Refreshed, RefreshError> {
        let token = RefreshToken::new(refresh.expose().to_owned());
        let request = self
            .client
            .exchange_refresh_token(&token)
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r)
                    if matches!(
                        r.error(),
                        openidconnect::core::CoreErrorResponseType::InvalidGrant
                    ) =>
                {
                    RefreshError::InvalidGrant
                }
                other => RefreshError::Failed(error_chain(&other)),
            })?;
        let access = response.access_token().secret();
        if access.is_empty() {
            return Err(RefreshError::Failed(
                "token response has no access_token".into(),
            ));
        }
        let id_token = match response.id_token() {
            Some(id) => {
                let new = self
                    .verify_id_token(id, None, now)
                    .await
                    .map_err(|e| RefreshError::Failed(e.to_string()))?
                    .token;
                if let Some(old) = previous_id_token
                    && !same_identity(old, &new)
                {
                    return Err(RefreshError::Failed(
                        "refreshed ID token changes iss, sub or aud".into(),
                    ));
                }
                Some(new)
            }
            None => None,
        };
        Ok(Refreshed {
            access_token: Token::from_issued(access),
            access_expires_at: response
                .expires_in()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
                .map(|s| now.saturating_add(s)),
            refresh_token: response
                .refresh_token()
                .map(|r| Token::from_issued(r.secret())),
            id_token,
        })
    }

    async fn check_userinfo(
        &self,
        access: openidconnect::AccessToken,
        sub: &str,
    ) -> Result<(), LoginError> {
        let request = self
            .client
            .user_info(
                access,
                Some(openidconnect::SubjectIdentifier::new(sub.to_owned())),
            )
            .map_err(|e| LoginError::UserInfo(e.to_string()))?;
        let _claims: openidconnect::core::CoreUserInfoClaims = request
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::UserInfo(error_chain(&e)))?;
        Ok(())
    }

    /// Revokes a refresh token at the IdP (RFC 7009), if it has a revocation endpoint.
    ///
    /// Sent directly rather than through oauth2's revocation request, which refuses `http://`
    /// endpoints even on loopback (where development IdPs live).
    ///
    /// # Errors
    /// A description of the failure, for the log.
    pub async fn revoke_refresh_token(&self, token: &SecretString) -> Result<(), String> {
        use base64::Engine as _;
        let Some(url) = &self.metadata_extra.revocation_endpoint else {
            return Ok(());
        };
        let request = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token.expose());
            form.append_pair("token_type_hint", "refresh_token");
            let mut request = ::http::Request::post(url.as_str())
                .header(
                    ::http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(::http::header::ACCEPT, "application/json");
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
            let body = SecretString::new(form.finish());
            request
                .body(body.expose().as_bytes().to_vec())
                .map_err(|e| e.to_string())?
        };
        let response = self.http.send(request).await.map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "revocation endpoint answered {}",
                response.status()
            ))
        }
    }

    /// The RP-initiated logout URL, if the IdP has an end-session endpoint.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&SecretString>,
        state: &str,
    ) -> Option<Url> {
        let mut url = self.end_session.clone()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint.expose());
            }
            q.append_pair("client_id", &self.settings.client_id);
            if let Some(post) = &self.settings.post_logout_redirect_uri {
                q.append_pair("post_logout_redirect_uri", post.as_str());
            }
            q.append_pair("state", state);
        }
        Some(url)
    }
}

/// The outcome of a refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: Token,
    /// Its expiry.
    pub access_expires_at: Option<i64>,
    /// The rotated refresh token, when the IdP rotates.
    pub refresh_token: Option<Token>,
    /// A new ID token, when the IdP sent one (validated, same identity).
    pub id_token: Option<Token>,
}

/// A refresh that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// `invalid_grant`: the refresh token is no longer valid; the session is over.
    #[error("refresh token rejected (invalid_grant)")]
    InvalidGrant,
    /// Anything else (unreachable IdP, invalid response).
    #[error("refresh failed: {0}")]
    Failed(String),
}

/// Whether two ID tokens name the same `iss`, `sub` and `aud` (audiences as a set).
fn same_identity(old: &Token, new: &Token) -> bool {
    #[derive(Deserialize)]
    struct Identity {
        iss: Option<String>,
        sub: Option<String>,
        aud: Option<serde_json::Value>,
    }
    let read = |t: &Token| {
        let id: Identity = serde_json::from_slice(t.jws_payload()?).ok()?;
        let mut aud: Vec<String> = match id.aud? {
            serde_json::Value::String(s) => vec![s],
            serde_json::Value::Array(a) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => return None,
        };
        aud.sort();
        Some((id.iss?, id.sub?, aud))
    };
    matches!((read(old), read(new)), (Some(a), Some(b)) if a == b)
}

#[derive(Debug)]
struct Verified {
    sub: String,
    sid: Option<String>,
    /// The validated ID token in its compact form (built once, used for `sid` and storage).
    token: Token,
}

#[derive(Deserialize)]
struct SidClaim {
    sid: Option<String>,
}

/// An error and its sources on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
