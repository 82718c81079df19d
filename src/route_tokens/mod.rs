//! Routes' own tokens (`[[routes]] resource`, `scopes`, `exchange`, `token = "client"`), kept in
//! this instance's memory: never in the cookie, never in a store, never sent to another route.
//!
//! Why memory and not the cookie: a route token is a second access token (an Entra ID token is
//! about 1.2 KB); sealed in the cookie, two of them add about 2.4 KB to every request the
//! browser sends to the site (a session with Entra-like tokens of its own: 4.1 KB, then 6.5
//! KB), static files included, and two routes minting at once would each
//! re-seal a cookie without the other's token (the last `Set-Cookie` wins). Kept per instance,
//! the cookie does not grow; the price is one grant per (instance, session, route) and token
//! lifetime, which an instance pays again after a restart or when its table is full. (The
//! measurement is in `tests::sealing_two_route_tokens_would_grow_the_cookie`.)
//!
//! - A session's route token is kept under (session id, route), a client token under its route;
//!   each is reused until `[session] refresh_before` before it expires (or half its lifetime,
//!   when that is shorter), then minted again.
//! - Single flight: concurrent requests that need the same missing token share one grant
//!   (a `OnceCell` per key). A failed grant is not kept: the next request tries again.
//! - Bounded: `[session] route_token_cache` entries of sessions' tokens (16 shards by session
//!   id); a full shard first drops its stale entries (at most once a second), then an arbitrary
//!   one. Client tokens are one per route.
//! - A logout on this instance drops the session's tokens at once ([`RouteTokens::forget`]);
//!   elsewhere they are never used again, since every request checks its session first, and
//!   they go when they expire or are evicted.
//! - [`lanes`]: refresh-token grants of one session (the session's refresh and its routes'
//!   grants) run one at a time on this instance, and a refresh token one of them replaced is
//!   replaced in every session that still carries it.

pub(crate) mod lanes;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderValue;

use crate::dpop::{Binding, DpopKey, TokenType};
use crate::oidc::{Granted, RouteGrantError};
use crate::session::SessionId;
use crate::token::Token;

pub(crate) use self::lanes::Lanes;

const SHARDS: usize = 16;
/// The lifetime assumed for a token whose response has no `expires_in` and that is not a JWT
/// with an `exp`.
const DEFAULT_LIFETIME: i64 = 60;

/// A route token ready to attach.
#[derive(Clone)]
pub(crate) struct Minted {
    /// `Authorization: Bearer …` (or `DPoP …` for a bound token), marked sensitive.
    pub bearer: HeaderValue,
    /// For a DPoP-bound token: the key its proofs are signed with and its `ath`.
    pub binding: Option<Binding>,
    /// Reused until then (Unix seconds), minted again after.
    pub reuse_until: i64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("reuse_until", &self.reuse_until)
            .finish_non_exhaustive()
    }
}

/// What a grant gave a route.
pub(crate) type Outcome = Result<Minted, RouteGrantError>;
type Cell = Arc<tokio::sync::OnceCell<Outcome>>;

impl Minted {
    /// The route token `granted` at `now`: reused until `refresh_before` seconds (at most half
    /// its lifetime) before it expires. Its lifetime is `expires_in`, else a JWT's `exp`, else
    /// a minute. A token the IdP typed `DPoP` is bound to `key`, the one whose proof the grant
    /// carried.
    ///
    /// # Errors
    /// [`RouteGrantError::BadResponse`] when the token cannot be a header value.
    pub(crate) fn new(
        granted: &Granted,
        now: i64,
        refresh_before: i64,
        key: Option<&DpopKey>,
    ) -> Outcome {
        let token = granted.access_token.expose();
        let lifetime = match granted.expires_in {
            Some(s) => i64::try_from(s).unwrap_or(i64::MAX),
            None => jwt_exp(token).map_or(DEFAULT_LIFETIME, |exp| exp.saturating_sub(now)),
        }
        .max(0);
        let margin = refresh_before.clamp(0, lifetime / 2);
        let binding = match (granted.token_type, key) {
            (TokenType::Dpop, Some(key)) => Some(Binding::new(key, token)),
            (TokenType::Dpop, None) => {
                return Err(RouteGrantError::BadResponse(
                    "token_type is DPoP, but no proof was sent",
                ));
            }
            (TokenType::Bearer, _) => None,
        };
        let scheme = granted.token_type.scheme();
        let mut value = zeroize::Zeroizing::new(Vec::with_capacity(scheme.len() + token.len()));
        value.extend_from_slice(scheme.as_bytes());
        value.extend_from_slice(token.as_bytes());
        let mut bearer = HeaderValue::from_bytes(&value)
            .map_err(|_| RouteGrantError::BadResponse("access_token is not a header value"))?;
        bearer.set_sensitive(true);
        Ok(Self {
            bearer,
            binding,
            reuse_until: now.saturating_add(lifetime).saturating_sub(margin),
        })
    }
}

/// The `exp` of a JWS `token`, unverified (only to know when to mint again).
fn jwt_exp(token: &str) -> Option<i64> {
    let payload = Token::from_issued(token);
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload.jws_payload()?).ok()?;
    claims.get("exp")?.as_i64()
}

type UserKey = (SessionId, usize);

#[derive(Default)]
struct Shard {
    cells: HashMap<UserKey, Cell, foldhash::fast::RandomState>,
    /// No sweep for stale entries before then (a full shard of live tokens is not swept on
    /// every insertion).
    next_sweep: i64,
}

/// The route tokens of this instance.
pub(crate) struct RouteTokens {
    per_shard: usize,
    users: Box<[Mutex<Shard>]>,
    clients: Mutex<HashMap<usize, Cell>>,
    /// Refresh-token grants, one at a time per session.
    pub lanes: Lanes,
}

impl std::fmt::Debug for RouteTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTokens")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

/// Whether `cell` can serve a request at `now`: a grant in flight, or a token not yet due.
fn usable(cell: &Cell, now: i64) -> bool {
    match cell.get() {
        None => true,
        Some(Ok(m)) => now < m.reuse_until,
        Some(Err(_)) => false,
    }
}

/// Whether `cell` holds a token that is due (or a failure): it can go.
fn stale(cell: &Cell, now: i64) -> bool {
    cell.get().is_some() && !usable(cell, now)
}

impl RouteTokens {
    /// Room for about `capacity` sessions' route tokens (0: none is kept; concurrent requests
    /// still share a grant).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            per_shard: capacity.div_ceil(SHARDS),
            users: (0..SHARDS).map(|_| Mutex::default()).collect(),
            clients: Mutex::default(),
            lanes: Lanes::new(capacity),
        }
    }

    /// The token of `route` for `session` at `now`: kept, being minted (then awaited), or
    /// minted now by `mint`.
    ///
    /// # Errors
    /// The grant's failure (shared with the requests that awaited it; not kept).
    pub(crate) async fn user<F, Fut>(
        &self,
        session: SessionId,
        route: usize,
        now: i64,
        mint: F,
    ) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let key = (session, route);
        let shard = &self.users[usize::from(session.as_bytes()[0]) % SHARDS];
        let cell = {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            match s.cells.get(&key) {
                Some(c) if usable(c, now) => c.clone(),
                _ => {
                    self.make_room(&mut s, now);
                    let c = Cell::default();
                    s.cells.insert(key, c.clone());
                    c
                }
            }
        };
        let outcome = cell.get_or_init(mint).await.clone();
        if outcome.is_err() || self.per_shard == 0 {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if s.cells.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                s.cells.remove(&key);
            }
        }
        outcome
    }

    /// Before an insertion into a full shard: its stale entries go (at most once a second),
    /// then, if it is still full, one kept token (never a grant in flight: its waiters would
    /// lose their single flight).
    fn make_room(&self, s: &mut Shard, now: i64) {
        if self.per_shard == 0 || s.cells.len() < self.per_shard {
            return;
        }
        if now >= s.next_sweep {
            s.cells.retain(|_, c| !stale(c, now));
            s.next_sweep = now.saturating_add(1);
        }
        if s.cells.len() >= self.per_shard {
            let victim = s
                .cells
                .iter()
                .find(|(_, c)| c.get().is_some())
                .map(|(k, _)| *k);
            if let Some(k) = victim {
                s.cells.remove(&k);
            }
        }
    }

    /// The application's token for `route` at `now`, as [`RouteTokens::user`] (one per route).
    ///
    /// # Errors
    /// The grant's failure (not kept).
    pub(crate) async fn client<F, Fut>(&self, route: usize, now: i64, mint: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let cell = {
            let mut m = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            match m.get(&route) {
                Some(c) if usable(c, now) => c.clone(),
                _ => {
                    let c = Cell::default();
                    m.insert(route, c.clone());
                    c
                }
            }
        };
        let outcome = cell.get_or_init(mint).await.clone();
        if outcome.is_err() {
            let mut m = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            if m.get(&route).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                m.remove(&route);
            }
        }
        outcome
    }

    /// Drops every route token of `session` (it logged out here).
    pub(crate) fn forget(&self, session: SessionId) {
        let shard = &self.users[usize::from(session.as_bytes()[0]) % SHARDS];
        let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
        s.cells.retain(|(id, _), _| *id != session);
    }

    /// How many sessions' route tokens are kept (or being minted).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.users
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).cells.len())
            .sum()
    }
}

#[cfg(test)]
mod tests;
