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
//!   the session's lineage for `keep` seconds. A later grant that presents a replaced token
//!   redeems the newest one instead, and every request whose cookie still carries a replaced
//!   token adopts the newest one ([`Lanes::adopt`]) and re-seals its cookie.
//! - `keep` is `[session] refresh_grace` for the session's own refresh (as before: a cookie
//!   from before a refresh is served within the grace window, refused after it), and the idle
//!   timeout for a route grant: its rotation happens behind the browser's back, on any call to
//!   the route, so a browser whose cookie went back to the replaced token (an answer re-sealed
//!   before the grant arriving after the grant's own) gets the newest one with its next
//!   request, however late (a session without a request for the idle timeout is over anyway).
//! - Bounded: lanes are kept only while a grant runs or their lineage lasts, 16 shards of at
//!   most `capacity / 16` (at least 64) sessions each; a full shard forgets its lineage that
//!   ends first. A request that carries no lane costs one atomic load.
//!
//! With `[cluster]`, grants also take the cluster's turn on the token and follow the tokens other
//! instances' grants replaced it with (`cluster::turns`). Without it, per instance: several
//! instances may each redeem the same token once, and one does not know what another replaced.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::cluster::{Cluster, TurnBusy, TurnOutcome};
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
    /// SHA-256 of each refresh token `latest` replaced, and until when (Unix seconds).
    replaced: Vec<([u8; 32], i64)>,
    /// The lineage is forgotten after this: the latest of those times.
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
            .iter()
            .any(|(h, until)| *h == hash && now <= *until)
            .then_some(self.latest.as_ref())
            .flatten()
    }
}

#[derive(Default)]
struct Lane {
    turn: tokio::sync::Mutex<()>,
    lineage: Mutex<Lineage>,
}

const SHARDS: usize = 16;
/// Replaced refresh tokens a lineage remembers at most.
const MAX_REPLACED: usize = 16;

type Shard = HashMap<SessionId, Arc<Lane>, foldhash::fast::RandomState>;

/// The lanes of the sessions with a grant in flight or a lineage on this instance.
pub(crate) struct Lanes {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Lanes in every shard (a request of a session without one reads only this).
    count: AtomicUsize,
}

impl Default for Lanes {
    fn default() -> Self {
        Self::new(0)
    }
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
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
        (now, keep): (i64, i64),
        cluster: Option<&Cluster>,
        grant: F,
    ) -> Result<T, E>
    where
        T: Rotating,
        E: From<TurnBusy>,
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
        // Across instances too, when there is a cluster store: its turn, and the newest token
        // another instance's grant left (see `cluster::turns`).
        let turn = match cluster.map(|c| c.take_turn(&used)) {
            None => None,
            Some(asked) => match asked.await {
                TurnOutcome::Held(turn) => Some(*turn),
                TurnOutcome::Unavailable => None,
                TurnOutcome::Busy => return Err(E::from(TurnBusy)),
            },
        };
        let used = turn.as_ref().map_or(used, |t| t.token.clone());
        let mut result = match grant(used.expose()).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(t) = turn {
                    t.finish(None, keep).await;
                }
                return Err(e);
            }
        };
        let slot = result.refresh_token();
        if let Some(t) = turn {
            t.finish(slot.as_ref(), keep).await;
        }
        match slot {
            Some(new) if *new != used => {
                let mut lineage = lane.lineage.lock().unwrap_or_else(PoisonError::into_inner);
                let until = now.saturating_add(keep);
                lineage.replaced.retain(|(_, u)| *u >= now);
                lineage.replaced.push((digest(&used), until));
                // Bounded: a session rotating on every request (a route token cache of 0)
                // keeps only its latest replaced tokens; an older copy of its cookie is then
                // refused like any cookie past its window.
                if lineage.replaced.len() > MAX_REPLACED {
                    let extra = lineage.replaced.len() - MAX_REPLACED;
                    lineage.replaced.drain(..extra);
                }
                lineage.latest = Some(new.clone());
                lineage.until = lineage
                    .replaced
                    .iter()
                    .map(|(_, u)| *u)
                    .max()
                    .unwrap_or(until);
            }
            Some(_) => {}
            None if used != *presented => *slot = Some(used),
            None => {}
        }
        Ok(result)
    }

    /// The lane of session `id`; in its shard, lanes of other sessions that are idle and past
    /// their lineage go, and when the shard is still full, the idle one whose lineage ends
    /// first.
    fn lane(&self, id: SessionId, now: i64) -> Arc<Lane> {
        let mut map = self.shard(id);
        let until = |lane: &Arc<Lane>| {
            lane.lineage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .until
        };
        let idle = |k: &SessionId, lane: &Arc<Lane>| *k != id && Arc::strong_count(lane) == 1;
        let before = map.len();
        if !map.contains_key(&id) {
            map.retain(|k, lane| !idle(k, lane) || until(lane) >= now);
            if map.len() >= self.per_shard
                && let Some(first) = map
                    .iter()
                    .filter(|(k, lane)| idle(k, lane))
                    .min_by_key(|(_, lane)| until(lane))
                    .map(|(k, _)| *k)
            {
                map.remove(&first);
            }
        }
        let lane = map.entry(id).or_default().clone();
        // Changed only under a shard's lock: the sum of the changes is the number of lanes.
        self.count.fetch_add(map.len(), Ordering::Relaxed);
        self.count.fetch_sub(before, Ordering::Relaxed);
        lane
    }

    /// A room for about `capacity` sessions' lanes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(64),
            count: AtomicUsize::new(0),
        }
    }

    fn shard(&self, id: SessionId) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(id.as_bytes()[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `session` the refresh token that replaced its own on this instance, if one did
    /// within the lineage's time; whether it changed (the cookie must then be re-sealed).
    pub(crate) fn adopt(&self, session: &mut Arc<Session>, now: i64) -> bool {
        let Some(presented) = session.refresh_token.as_ref() else {
            return false;
        };
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let lane = {
            let mut map = self.shard(session.id);
            let Some(lane) = map.get(&session.id).cloned() else {
                return false;
            };
            let over = lane
                .lineage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .until
                < now;
            // This handle and the map's: no grant holds it.
            if over && Arc::strong_count(&lane) == 2 {
                map.remove(&session.id);
                self.count.fetch_sub(1, Ordering::Relaxed);
                return false;
            }
            lane
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
