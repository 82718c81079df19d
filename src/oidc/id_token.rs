//! ID token validation (OIDC Core 3.1.3.7) by openidconnect, with the rules it leaves to its
//! users (`iat` bounds, `azp`, a non-empty `sub`), a JWKS refetch for an unknown key, and the
//! identity check on a refreshed ID token (OIDC Core 12.2).

use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier};
use openidconnect::{ClaimsVerificationError, ClientId, Nonce, SignatureVerificationError};
use serde::Deserialize;

use super::Provider;
use super::claims::{TimeClaimError, check_time_claims, numeric_date};
use super::error::LoginError;
use crate::secret::SecretString;
use crate::token::Token;

/// A validated ID token and what sealgate keeps from it.
#[derive(Debug)]
pub(super) struct Verified {
    pub(super) sub: String,
    pub(super) sid: Option<String>,
    /// `auth_time`, when present (a NumericDate: checked with the other time claims).
    pub(super) auth_time: Option<i64>,
    /// The validated ID token in its compact form (built once, used for `sid` and storage).
    pub(super) token: Token,
}

#[derive(Deserialize)]
struct SidClaim {
    sid: Option<String>,
}

impl Provider {
    fn verifier(&self, now: i64) -> CoreIdTokenVerifier<'static> {
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(60);
        let max_age = i64::try_from(self.settings.max_id_token_age.as_secs()).unwrap_or(600);
        let trusted = self.settings.trusted_audiences.clone();
        let jwks = self.keys().clone();
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

    /// Validates `id_token` at `now` against `nonce` (none for a refreshed ID token), refetching
    /// the JWKS once if it names an unknown key.
    pub(super) async fn verify_id_token(
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
        // RFC 7519 rules openidconnect does not apply: every time claim a NumericDate (it reads
        // a string `exp` or `iat` leniently), and not before `nbf`.
        let token = Token::from_issued(&id_token.to_string());
        let payload = token
            .jws_payload()
            .and_then(|p| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(p).ok()
            })
            .ok_or_else(|| ClaimsVerificationError::Other("payload is not a JSON object".into()))?;
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(60);
        check_time_claims(&payload, now, skew).map_err(|e| {
            ClaimsVerificationError::Other(match e {
                TimeClaimError::NotANumber(claim) => format!("{claim} is not a NumericDate"),
                TimeClaimError::NotYetValid => "not valid before its nbf".into(),
            })
        })?;
        let auth_time = payload.get("auth_time").and_then(numeric_date);
        // `sid` is not among openidconnect's core claims; read it from the verified payload.
        let sid = token
            .jws_payload()
            .and_then(|p| serde_json::from_slice::<SidClaim>(p).ok())
            .and_then(|c| c.sid);
        Ok(Verified {
            sub: claims.subject().as_str().to_owned(),
            sid,
            auth_time,
            token,
        })
    }
}

/// Whether two ID tokens name the same `iss`, `sub` and `aud` (audiences as a set).
pub(super) fn same_identity(old: &Token, new: &Token) -> bool {
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
