//! Logout at the IdP: the RP-initiated logout URL (OIDC RP-Initiated Logout 1.0), and the
//! provider side of back-channel logout: [`super::logout_token`] checks the token (pure) with
//! this provider's key set, algorithm allowlist and settings, and an unknown `kid` refetches
//! the JWKS.

use url::Url;

use super::Provider;
use super::logout_token::{self, Expectations, LogoutClaims, LogoutTokenError};
use crate::secret::SecretString;

impl Provider {
    /// The RP-initiated logout URL, if the IdP has an end-session endpoint.
    pub(crate) fn end_session_url(
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
            for (name, value) in &self.settings.logout_params {
                q.append_pair(name, value);
            }
        }
        Some(url)
    }

    /// Validates a back-channel logout token at time `now` (see [`logout_token`]): the same
    /// keys and algorithm allowlist as ID tokens, `iss` and `aud` as for ID tokens (trusted
    /// audiences included), `oidc.max_logout_token_age` and `oidc.strict_logout_token_typ`.
    /// A token that passes every check needing no key but names an unknown key refetches the
    /// JWKS (at most once per cooldown, shared with ID tokens) and is checked once more.
    ///
    /// # Errors
    /// The rule the token breaks (no token material).
    pub(crate) async fn validate_logout_token(
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
        let s = &self.settings;
        let expect = Expectations {
            issuer: &s.issuer,
            client_id: &s.client_id,
            trusted_audiences: &s.trusted_audiences,
            algorithms: &self.allowed_algs,
            clock_skew: i64::try_from(s.clock_skew.as_secs()).unwrap_or(60),
            max_age: i64::try_from(s.max_logout_token_age.as_secs()).unwrap_or(300),
            strict_typ: s.strict_logout_token_typ,
        };
        // Held only for this synchronous check; a refetch waits for it, never the reverse.
        logout_token::validate(token, &self.keys(), &expect, now)
    }
}
