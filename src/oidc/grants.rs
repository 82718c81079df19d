//! Grants at the token endpoint: the authorization request and the code exchange (PKCE, ID
//! token, optional userinfo check), refresh (with the identity rule of OIDC Core 12.2), and
//! refresh token revocation (RFC 7009). With `private_key_jwt`, each token request carries a
//! fresh client assertion (openidconnect's client then sends no secret, only `client_id`).

use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RefreshToken, RequestTokenError, Scope, TokenResponse,
};
use url::Url;

use super::Provider;
use super::claims::check_auth_time;
use super::dpop::token_type;
use super::error::{LoginError, RefreshError};
use super::id_token::same_identity;
use crate::client_assertion::ASSERTION_TYPE;
use crate::dpop::{DpopKey, TokenType};
use crate::oidc_params::{self, AuthorizationParams};
use crate::outbound::error_chain;
use crate::secret::SecretString;
use crate::token::Token;

/// What a successful code exchange yields.
#[derive(Debug)]
pub(crate) struct LoginTokens {
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
    /// How the access token is to be sent (`DPoP` only when a proof was sent and bound it).
    pub token_type: TokenType,
}

/// The outcome of a refresh.
#[derive(Debug, Clone)]
pub(crate) struct Refreshed {
    /// The new access token.
    pub access_token: Token,
    /// Its expiry.
    pub access_expires_at: Option<i64>,
    /// The rotated refresh token, when the IdP rotates.
    pub refresh_token: Option<Token>,
    /// A new ID token, when the IdP sent one (validated, same identity).
    pub id_token: Option<Token>,
    /// How the new access token is to be sent; `None` when another instance redeemed the
    /// refresh token and shared the result (the session keeps the type it had: the same
    /// refresh token and key get the same type).
    pub token_type: Option<TokenType>,
}

impl Provider {
    /// The authorization request URL for one login flow: sealgate's own parameters, then
    /// `extra` (`auth_params` and the SPA's login parameters, none of them a name sealgate
    /// owns).
    pub(crate) fn authorization_url(
        &self,
        state: &SecretString,
        nonce: &SecretString,
        verifier: &SecretString,
        extra: &[(String, String)],
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
        for (name, value) in extra {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        let (url, _, _) = request.url();
        url
    }

    /// The extra parameters of one authorization request: `[oidc] auth_params` with the SPA's
    /// checked login parameters on top.
    pub(crate) fn authorization_params(
        &self,
        chosen: Vec<(String, String)>,
    ) -> AuthorizationParams {
        oidc_params::merge(&self.settings.auth_params, chosen)
    }

    /// The `/bff/login` query parameters passed on to this IdP (`[oidc] login_params`).
    pub(crate) fn login_param_names(&self) -> &[String] {
        &self.settings.login_params
    }

    /// Exchanges `code`, validates the ID token against `nonce` at time `now` (and its
    /// `auth_time` against `max_age`, when the authorization request sent one), and (if
    /// configured) checks userinfo. With a DPoP `key`, the exchange carries its proof (and
    /// userinfo too, when the token is bound).
    ///
    /// # Errors
    /// A [`LoginError`] saying which step failed; nothing from a failed response is kept.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        verifier: &SecretString,
        nonce: &SecretString,
        max_age: Option<u64>,
        now: i64,
        key: Option<&DpopKey>,
    ) -> Result<LoginTokens, LoginError> {
        let assertion = self
            .client_assertion(now)
            .map_err(|e| LoginError::TokenRequest(e.to_string()))?;
        let mut request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| LoginError::TokenRequest(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
        for (name, value) in self.token_request_params(assertion.as_ref()) {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&self.outbound(key, now))
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
        if let Some(max_age) = max_age {
            let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(60);
            check_auth_time(verified.auth_time, max_age, now, skew)
                .map_err(|e| LoginError::IdToken(e.into()))?;
        }

        let token_type = token_type(key, response.token_type().as_ref());
        if self.settings.use_userinfo {
            let client = self
                .outbound(key, now)
                .with_bound_token(token_type == TokenType::Dpop);
            self.check_userinfo(response.access_token().clone(), &verified.sub, &client)
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
            token_type,
        })
    }

    /// Redeems `refresh` at the token endpoint, with a proof of the session's DPoP `key` when
    /// it has one. A new ID token, if any, is validated and must keep the `iss`, `sub` and
    /// `aud` of `previous_id_token` (OIDC Core 12.2).
    ///
    /// # Errors
    /// [`RefreshError::InvalidGrant`] when the IdP refuses the grant (the session is over);
    /// [`RefreshError::Failed`] for anything else.
    pub(crate) async fn refresh(
        &self,
        refresh: &SecretString,
        previous_id_token: Option<&Token>,
        now: i64,
        key: Option<&DpopKey>,
    ) -> Result<Refreshed, RefreshError> {
        let token = RefreshToken::new(refresh.expose().to_owned());
        let assertion = self
            .client_assertion(now)
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        let mut request = self
            .client
            .exchange_refresh_token(&token)
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        for (name, value) in self.token_request_params(assertion.as_ref()) {
            request = request.add_extra_param(name, value);
        }
        let http = self.outbound(key, now);
        let response = request.request_async(&http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r)
                if matches!(
                    r.error(),
                    openidconnect::core::CoreErrorResponseType::InvalidGrant
                ) =>
            {
                RefreshError::InvalidGrant
            }
            // 400 with no OAuth error body: Glewlwyd's refusal of a refresh token, but also
            // what a proxy or WAF in front of an IdP may answer; the session ends on it only
            // where the provider is configured to mean it.
            RequestTokenError::Other(_)
                if self.settings.empty_400_is_invalid_grant && http.status() == Some(400) =>
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
                // An ID token naming another iss, sub or aud ends the session whether or not it
                // validates (one for another issuer never does): its identity would change.
                let names_another =
                    |token: &Token| previous_id_token.is_some_and(|old| !same_identity(old, token));
                let new = match self.verify_id_token(id, None, now).await {
                    Ok(v) => v.token,
                    Err(_) if names_another(&Token::from_issued(&id.to_string())) => {
                        return Err(RefreshError::IdentityChanged);
                    }
                    Err(e) => return Err(RefreshError::Failed(e.to_string())),
                };
                if names_another(&new) {
                    return Err(RefreshError::IdentityChanged);
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
            token_type: Some(token_type(key, response.token_type().as_ref())),
        })
    }

    /// What every code and refresh grant adds to openidconnect's request: `token_params`, then
    /// the client assertion when `private_key_jwt` made one.
    fn token_request_params<'a>(
        &'a self,
        assertion: Option<&'a SecretString>,
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        let assertion = assertion.into_iter().flat_map(|a| {
            [
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", a.expose()),
            ]
        });
        self.settings
            .token_params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(assertion)
    }

    async fn check_userinfo(
        &self,
        access: openidconnect::AccessToken,
        sub: &str,
        client: &super::dpop::Outbound<'_>,
    ) -> Result<(), LoginError> {
        let request = self
            .client
            .user_info(
                access,
                Some(openidconnect::SubjectIdentifier::new(sub.to_owned())),
            )
            .map_err(|e| LoginError::UserInfo(e.to_string()))?;
        let _claims: openidconnect::core::CoreUserInfoClaims = request
            .request_async(client)
            .await
            .map_err(|e| LoginError::UserInfo(error_chain(&e)))?;
        Ok(())
    }

    /// Revokes a refresh token at the IdP (RFC 7009), if it has a revocation endpoint.
    ///
    /// Sent directly rather than through oauth2's revocation request, which refuses `http://`
    /// endpoints even on loopback (where development IdPs live).
    ///
    /// `now` (unix seconds) dates a `private_key_jwt` assertion.
    ///
    /// # Errors
    /// A description of the failure, for the log.
    pub(crate) async fn revoke_refresh_token(
        &self,
        token: &SecretString,
        now: i64,
    ) -> Result<(), String> {
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
            request = self
                .authenticate(request, &mut form, now)
                .map_err(|e| e.to_string())?;
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
}
