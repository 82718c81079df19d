//! Refresh-token grants of one session, one at a time on this instance, and the refresh tokens
//! they replaced.
//!
//! A session's refresh token is redeemed by its own refresh and by every route grant for a
//! `resource` or `scopes`. An IdP that rotates refresh tokens (Auth0, Okta and Keycloak with
//! rotation on; Entra ID issues a new one but keeps the old valid) answers each of those grants
//! with a new refresh token and may treat a second use of the old one as theft, revoking the
//! whole family. So:
//!
//! - Grants that redeem a session's refresh token take turns (an async mutex per session id):
//!   two of them never present the same token at once.
//! - When a grant returns a new refresh token, the old one's hash and the new token are kept in
//!   the session's lineage for `keep` seconds (`[session] refresh_grace`). A later grant that
//!   presents a replaced token redeems the newest one instead, and a request whose cookie
//!   still carries a replaced token adopts the newest one ([`Lanes::adopt`]) before its cookie
//!   is re-sealed: a response never writes a spent refresh token back into the browser.
//!
//! Per instance, like the single-flight refresh: several instances without `[cluster]` may each
//! redeem the same token once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::oidc::{Granted, Refreshed};
use crate::secret::SecretString;
use crate::session::{Session, SessionId};
use crate::token::Token;

/// A grant's result that may carry a new refresh token.
pub(crate) trait Rotating {
    /// The new refresh token, if any.
    fn refresh_token(&mut self) -> &mut Option<Token>;
}

impl Rotating for Refreshed {
    fn refresh_token(&mut self) -> &mut Option<Token> {
        &mut self.refresh_token
    }
}

impl Rotating for Granted {
    fn refresh_token(&mut self) -> &mut Option<Token> {
        &mut self.refresh_token
    }
}

#[derive(Default)]
struct Lineage {
    /// The newest refresh token.
    latest: Option<Token>,
    /// SHA-256 of each refresh token `latest` replaced.
    replaced: Vec<[u8; 32]>,
    /// Forgotten after this (Unix seconds).
    until: i64,
}

impl Lineage {
    /// The token to redeem or carry instead of `presented` at `now`, if it was replaced.
    fn successor(&self, presented: &Token, now: i64) -> Option<&Token> {
        if now > self.until || self.replaced.is_empty() {
            return None;
        }
        let hash = digest(presented);
        self.replaced
            .contains(&hash)
            .then_some(self.latest.as_ref())
            .flatten()
    }
}

#[derive(Default)]
struct Lane {
    turn: tokio::sync::Mutex<()>,
    lineage: Mutex<Lineage>,
}

/// The lanes of the sessions with a recent refresh-token grant on this instance.
#[derive(Default)]
pub(crate) struct Lanes {
    map: Mutex<HashMap<SessionId, Arc<Lane>>>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

fn digest(token: &Token) -> [u8; 32] {
    Sha256::digest(token.expose().expose().as_bytes()).into()
}

impl Lanes {
    /// Redeems the refresh token of session `id` with `grant`, in the session's turn: the
    /// `presented` token, or the one that replaced it. A new refresh token in the result
    /// replaces the redeemed one for `keep` seconds after `now`; a result without one carries
    /// the token that was redeemed when it was not `presented` (the session must adopt it).
    ///
    /// # Errors
    /// `grant`'s.
    pub(crate) async fn redeem<T, E, F, Fut>(
        &self,
        id: SessionId,
        presented: &Token,
        now: i64,
        keep: i64,
        grant: F,
    ) -> Result<T, E>
    where
        T: Rotating,
        F: FnOnce(SecretString) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let lane = self.lane(id, now);
        let _turn = lane.turn.lock().await;
        let used = {
            let lineage = lane.lineage.lock().unwrap_or_else(PoisonError::into_inner);
            lineage
                .successor(presented, now)
                .unwrap_or(presented)
                .clone()
        };
        let mut result = grant(used.expose()).await?;
        let slot = result.refresh_token();
        match slot {
            Some(new) if *new != used => {
                let mut lineage = lane.lineage.lock().unwrap_or_else(PoisonError::into_inner);
                if now > lineage.until {
                    lineage.replaced.clear();
                }
                lineage.replaced.push(digest(&used));
                lineage.latest = Some(new.clone());
                lineage.until = now.saturating_add(keep);
            }
            Some(_) => {}
            None if used != *presented => *slot = Some(used),
            None => {}
        }
        Ok(result)
    }

    /// The lane of session `id`; lanes of other sessions that are idle and past their lineage
    /// go.
    fn lane(&self, id: SessionId, now: i64) -> Arc<Lane> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|k, lane| {
            *k == id
                || Arc::strong_count(lane) > 1
                || lane
                    .lineage
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .until
                    >= now
        });
        map.entry(id).or_default().clone()
    }

    /// Gives `session` the refresh token that replaced its own on this instance, if one did
    /// within the lineage's time; whether it changed (the cookie must then be re-sealed).
    pub(crate) fn adopt(&self, session: &mut Arc<Session>, now: i64) -> bool {
        let Some(presented) = session.refresh_token.as_ref() else {
            return false;
        };
        let lane = {
            let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            if map.is_empty() {
                return false;
            }
            match map.get(&session.id) {
                Some(lane) => lane.clone(),
                None => return false,
            }
        };
        let newer = {
            let lineage = lane.lineage.lock().unwrap_or_else(PoisonError::into_inner);
            lineage.successor(presented, now).cloned()
        };
        match newer {
            Some(newer) => {
                Arc::make_mut(session).refresh_token = Some(newer);
                true
            }
            None => false,
        }
    }
}
