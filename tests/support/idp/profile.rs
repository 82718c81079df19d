//! The switches that make the fake IdP behave as one provider of `docs/providers.md` does:
//! the access tokens it issues for an API, when a login gets a refresh token and what a refresh
//! does to it, what revoking one ends, and what its end-session endpoint requires.
//!
//! Each default is the fake IdP's behaviour from before these switches, so tests that set none
//! of them see no change.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use url::Url;

use super::{
    GRAPH_AUD, Logged, RSA1, RSA2, State, USERINFO_AUD, end_session, find, redirect, text,
};

/// What the access tokens look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessTokens {
    /// A JWT (`typ` `at+jwt`) whose `aud` is [`super::ACCESS_TOKEN_AUD`] (Okta's custom
    /// authorization server, Keycloak with an Audience mapper).
    #[default]
    Jwt,
    /// An opaque random string, never a JWT (Google).
    Opaque,
    /// Auth0: with `audience` on the authorization request, a JWT whose `aud` is that audience
    /// and the IdP's userinfo endpoint; without, an opaque token. A refresh keeps the audience
    /// of the login.
    Audience,
    /// AD FS: a JWT whose `aud` is the `resource` of the authorization request (code grant) or
    /// of the refresh request (refresh grant), else [`USERINFO_AUD`]; its `iss` is the
    /// access-token issuer `<issuer>/services/trust`, listed in discovery as
    /// `access_token_issuer`.
    Resource,
    /// Entra ID: a JWT whose `aud` is `X` for a requested scope `X/.default`
    /// (`api://<app>/.default`), else a Microsoft Graph token ([`GRAPH_AUD`]).
    DefaultScope,
    /// Amazon Cognito: a JWT without `aud`, with `client_id` and `token_use: "access"`.
    NoAud,
}

/// When a code grant comes with a refresh token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RefreshWhen {
    /// Always (Keycloak, Cognito, AD FS).
    #[default]
    Always,
    /// When the scope includes this one (`offline_access`: Entra ID, Auth0, Okta).
    WithScope(String),
    /// When the authorization request had every one of these parameters (Google:
    /// `access_type=offline` and `prompt=consent`).
    WithAuthParams(Vec<(String, String)>),
}

/// What a refresh does to the refresh token it redeems.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    /// A new refresh token; the old one is spent (`invalid_grant` afterwards).
    #[default]
    Rotate,
    /// As [`Rotation::Rotate`]; a spent token presented again also revokes every refresh
    /// token descended from the same login (Auth0's reuse detection).
    RotateRevokeFamilyOnReuse,
    /// A new refresh token; the old one stays valid (Entra ID).
    RotateKeepOld,
    /// No new refresh token; the same one is used again (Google, Cognito without rotation).
    None,
}

impl Rotation {
    /// Whether a refresh spends the token it redeems.
    pub fn spends_old(self) -> bool {
        matches!(self, Rotation::Rotate | Rotation::RotateRevokeFamilyOnReuse)
    }
}

/// What `/end-session` requires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EndSessionRule {
    /// Nothing: with `post_logout_redirect_uri` back there (with `state`), else a page.
    #[default]
    Standard,
    /// An `id_token_hint` the IdP issued to this client (Okta), else 400.
    RequireIdTokenHint,
    /// Amazon Cognito's `/logout`: `client_id` and `logout_uri`, redirecting to `logout_uri`;
    /// without either, 400.
    Cognito,
}

/// A token request as the access token and refresh token rules see it.
pub(super) struct GrantRequest<'a> {
    pub scope: &'a str,
    /// The parameters of the authorization request the grant began with.
    pub auth_params: &'a [(String, String)],
    /// The form of this token request.
    pub token_form: &'a [(String, String)],
    /// The refresh token family: `None` for a code grant.
    pub family: Option<u64>,
}

impl State {
    /// Shapes the access token of `grant` per [`AccessTokens`]: edits the JWT `claims`, or
    /// returns the opaque token to issue instead.
    pub(super) fn shape_access_token(
        &mut self,
        grant: &GrantRequest<'_>,
        claims: &mut Value,
    ) -> Option<String> {
        let param = |pairs: &[(String, String)], name: &str| find(pairs, name).map(str::to_owned);
        match self.behaviour.access_tokens {
            AccessTokens::Jwt => {}
            AccessTokens::Opaque => return Some(self.fresh("opaque")),
            AccessTokens::Audience => {
                let Some(audience) = param(grant.auth_params, "audience") else {
                    return Some(self.fresh("opaque"));
                };
                claims["aud"] = json!([audience, format!("{}/userinfo", self.base)]);
            }
            AccessTokens::Resource => {
                let source = match grant.family {
                    None => grant.auth_params,
                    Some(_) => grant.token_form,
                };
                let resource = param(source, "resource");
                claims["aud"] = json!(resource.as_deref().unwrap_or(USERINFO_AUD));
                claims["iss"] = json!(self.access_token_issuer());
            }
            AccessTokens::DefaultScope => {
                let api = grant
                    .scope
                    .split(' ')
                    .find_map(|s| s.strip_suffix("/.default"));
                claims["aud"] = json!(api.unwrap_or(GRAPH_AUD));
            }
            AccessTokens::NoAud => {
                if let Some(c) = claims.as_object_mut() {
                    c.remove("aud");
                }
                claims["token_use"] = json!("access");
            }
        }
        None
    }

    fn access_token_issuer(&self) -> String {
        format!("{}/services/trust", self.base)
    }

    /// Whether `grant` comes with a (new) refresh token, per [`RefreshWhen`] and [`Rotation`].
    pub(super) fn issues_refresh_token(&self, grant: &GrantRequest<'_>) -> bool {
        if grant.family.is_some() {
            return self.behaviour.rotation != Rotation::None;
        }
        match &self.behaviour.refresh_when {
            RefreshWhen::Always => true,
            RefreshWhen::WithScope(scope) => grant.scope.split(' ').any(|s| s == scope),
            RefreshWhen::WithAuthParams(params) => params
                .iter()
                .all(|(k, v)| find(grant.auth_params, k) == Some(v.as_str())),
        }
    }

    /// [`Rotation::RotateRevokeFamilyOnReuse`]: a spent refresh token presented again revokes
    /// its whole family.
    pub(super) fn detect_reuse(&mut self, presented: &str) {
        if self.behaviour.rotation != Rotation::RotateRevokeFamilyOnReuse {
            return;
        }
        if let Some(&family) = self.spent_refresh.get(presented) {
            self.refresh_tokens.retain(|_, g| g.family != family);
        }
    }

    /// [`super::Behaviour::revoke_all_grants`]: revoking a refresh token revokes all of its
    /// user's refresh tokens for the client.
    pub(super) fn revoke_grants(&mut self, token: &str) {
        if !self.behaviour.revoke_all_grants {
            return;
        }
        if let Some(g) = self.refresh_tokens.get(token) {
            let (sub, client) = (g.sub.clone(), g.client_id.clone());
            self.refresh_tokens
                .retain(|_, g| g.sub != sub || g.client_id != client);
        }
    }

    /// Discovery members of the profile.
    pub(super) fn profile_metadata(&self, doc: &mut Value) {
        if self.behaviour.access_tokens == AccessTokens::Resource {
            doc["access_token_issuer"] = json!(self.access_token_issuer());
        }
    }

    /// `/end-session` per [`EndSessionRule`].
    pub(super) fn end_session_checked(&self, req: &Logged) -> Response<Full<Bytes>> {
        let param = |name: &str| req.query_param(name).or_else(|| req.form_param(name));
        match self.behaviour.end_session_rule {
            EndSessionRule::Standard => end_session(req),
            EndSessionRule::RequireIdTokenHint => {
                if param("id_token_hint").is_some_and(|t| self.issued_id_token(t)) {
                    end_session(req)
                } else {
                    text(StatusCode::BAD_REQUEST, "id_token_hint required")
                }
            }
            EndSessionRule::Cognito => {
                if param("client_id") != Some(self.behaviour.client_id.as_str()) {
                    return text(StatusCode::BAD_REQUEST, "client_id required");
                }
                match param("logout_uri").map(Url::parse) {
                    Some(Ok(target)) => redirect(target.as_str()),
                    _ => text(StatusCode::BAD_REQUEST, "logout_uri required"),
                }
            }
        }
    }

    /// Whether `token` is an ID token this IdP signed for this client (expired or not).
    fn issued_id_token(&self, token: &str) -> bool {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.set_audience(&[&self.behaviour.client_id]);
        validation.set_issuer(&[&self.issuer]);
        [&*RSA1, &*RSA2].iter().any(|key| {
            DecodingKey::from_rsa_components(&key.n, &key.e)
                .is_ok_and(|k| jsonwebtoken::decode::<Value>(token, &k, &validation).is_ok())
        })
    }
}
