//! Cluster-wide turns of refresh-token grants, and the refresh tokens they replaced.
//!
//! A session's refresh token is redeemed by its own refresh and by its routes' grants
//! (`resource`, `scopes`), possibly on different instances at once. An IdP that rotates refresh
//! tokens takes a second use of a replaced one as theft (Auth0 revokes the whole family), so
//! across the cluster, as on one instance (`route_tokens::lanes`):
//!
//! - A grant takes the turn of the token it is about to redeem (`SET <prefix>:refresh:{<hash>}:turn
//!   NX PX`, polled while another instance holds it). Before it takes the turn and once it holds
//!   it, it follows `…:next`: the token that replaced this one, if a grant already rotated it.
//! - A grant that got a new refresh token stores it under the redeemed token's `…:next`, sealed
//!   with the session key and bound to that hash (Redis never holds a readable token), for as
//!   long as the local lineage keeps it; then it gives the turn back. The link is stored before
//!   the turn is released, so an instance that wins the turn right after sees it.
//!
//! While Redis is unreachable, a grant takes no cluster turn (this instance's turn still holds).

use std::time::Duration;

use super::Conn;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::{Cluster, hex, shared};
use crate::seal::CookieName;
use crate::token::Token;

/// How long a turn is held at most, and how long another instance waits for it: longer than a
/// grant takes with the default `[oidc] timeout` (10 s), a DPoP nonce retry and a JWKS refetch.
/// A grant that outlives it may meet another instance's (an IdP timeout set above 15 s makes
/// that possible).
const TURN_TTL: Duration = Duration::from_secs(45);
/// How often a waiting instance looks at the turn again.
const POLL_EVERY: Duration = Duration::from_millis(25);
/// Links followed at most from one token (a longer chain is cut: the newest known is used).
const MAX_HOPS: usize = 16;

/// The keys of one refresh token's turn and link.
struct TurnKeys {
    turn: String,
    next: String,
    /// The sealed link is bound to the token's hash through this "name".
    name: CookieName,
}

impl TurnKeys {
    fn new(prefix: &str, token: &Token) -> Option<Self> {
        let hash: [u8; 32] = Sha256::digest(token.expose().expose().as_bytes()).into();
        let hex = hex(&hash);
        // The same hash tag as the refresh lock's: one Cluster slot per token.
        let base = format!("{prefix}:refresh:{{{hex}}}");
        Some(Self {
            turn: format!("{base}:turn"),
            next: format!("{base}:next"),
            name: CookieName::new(format!("__Host-next-{}", &hex[..32])).ok()?,
        })
    }
}

/// This instance's turn on one refresh token, across the cluster.
pub(crate) struct Turn<'a> {
    cluster: &'a Cluster,
    /// Whether [`Turn::finish`] gave it back (else dropping it does).
    finished: bool,
    conn: Conn,
    keys: TurnKeys,
    holder: String,
    /// The token to redeem: the one presented, or the newest that replaced it.
    pub token: Token,
}

impl std::fmt::Debug for Turn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").finish_non_exhaustive()
    }
}

/// What asking for a turn gave.
#[derive(Debug)]
pub(crate) enum TurnOutcome<'a> {
    /// The turn, until [`Turn::finish`] (or drop).
    Held(Box<Turn<'a>>),
    /// Redis is unreachable: the caller goes on with its own instance's turn.
    Unavailable,
    /// Another instance held the turn too long: the caller must not redeem a token that may
    /// have been replaced meanwhile (a transient failure; the next request tries again).
    Busy,
}

/// A grant not made because another instance's grant on the same token took too long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnBusy;

impl Cluster {
    /// Takes the cluster's turn to redeem `presented` (or the newest token that replaced it).
    pub(crate) async fn take_turn(&self, presented: &Token) -> TurnOutcome<'_> {
        match self.try_take_turn(presented).await {
            Some(outcome) => outcome,
            None => TurnOutcome::Unavailable,
        }
    }

    async fn try_take_turn(&self, presented: &Token) -> Option<TurnOutcome<'_>> {
        let mut conn = self.connection().await.ok()?;
        let holder = shared::new_holder()?;
        let deadline = tokio::time::Instant::now() + TURN_TTL;
        let mut current = presented.clone();
        // Once another instance was seen holding the turn, its grant may have redeemed the
        // token: losing Redis then leaves the grant busy, not free to redeem it here too.
        let mut other_holder = false;
        loop {
            current = self.newest(&mut conn, current).await;
            let keys = TurnKeys::new(&self.prefix, &current)?;
            let won = match shared::take_lock(&mut conn, &keys.turn, &holder, TURN_TTL).await {
                Ok(won) => won,
                Err(_) if other_holder => return Some(TurnOutcome::Busy),
                Err(_) => return None,
            };
            other_holder |= !won;
            if won {
                // A grant that finished between our look and now linked its new token first.
                let Some(next) = self.link(&mut conn, &keys).await else {
                    return Some(TurnOutcome::Held(Box::new(Turn {
                        cluster: self,
                        finished: false,
                        conn,
                        keys,
                        holder,
                        token: current,
                    })));
                };
                shared::release_lock(&mut conn, &keys.turn, &holder).await;
                current = next;
            }
            // Checked on every pass, also after following a link (links that form a cycle
            // end here rather than spin).
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("no cluster turn for a refresh-token grant in time");
                return Some(TurnOutcome::Busy);
            }
            if !won {
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }

    /// The newest token known to have replaced `token` (itself when none did).
    async fn newest(&self, conn: &mut Conn, mut token: Token) -> Token {
        for _ in 0..MAX_HOPS {
            let Some(keys) = TurnKeys::new(&self.prefix, &token) else {
                break;
            };
            match self.link(conn, &keys).await {
                Some(next) => token = next,
                None => break,
            }
        }
        token
    }

    /// The token linked as replacing the one of `keys`, when there is one and it opens.
    async fn link(&self, conn: &mut Conn, keys: &TurnKeys) -> Option<Token> {
        let sealed: Option<String> = conn
            .get(&keys.next)
            .instrument(crate::telemetry::spans::redis_span(
                "GET",
                "grant turn link",
            ))
            .await
            .ok()?;
        let opened = shared::open_value(&self.codec, &keys.name, &sealed?, self.clock.now())?;
        let text = std::str::from_utf8(opened.payload()).ok()?;
        Some(Token::from_issued(text))
    }
}

impl Turn<'_> {
    /// Gives the turn back; when the grant returned `new` (a token other than the one
    /// redeemed), links it first, for `keep` seconds.
    pub(crate) async fn finish(mut self, new: Option<&Token>, keep: i64) {
        if let Some(new) = new.filter(|n| **n != self.token) {
            self.store_link(new, keep).await;
        }
        shared::release_lock(&mut self.conn, &self.keys.turn, &self.holder).await;
        self.finished = true;
    }

    async fn store_link(&mut self, new: &Token, keep: i64) {
        let c = self.cluster;
        let keep = keep.max(1);
        let expires = c.clock.now().saturating_add(keep);
        let plain = new.expose();
        let plain = plain.expose().as_bytes();
        let Some(value) = shared::seal_value(&c.codec, &self.keys.name, expires, plain) else {
            tracing::warn!("a replacing refresh token too large to share");
            return;
        };
        let millis = u64::try_from(keep).unwrap_or(1).saturating_mul(1000);
        let stored = shared::put_expiring(&mut self.conn, &self.keys.next, &value, millis).await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "a replacing refresh token not shared");
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // A grant cancelled with its request: give the turn back rather than make the others
        // wait for it to expire.
        let (mut conn, turn, holder) = (
            self.conn.clone(),
            std::mem::take(&mut self.keys.turn),
            std::mem::take(&mut self.holder),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { shared::release_lock(&mut conn, &turn, &holder).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::{Turn, TurnKeys, TurnOutcome};
    use crate::cluster::Cluster;
    use crate::cluster::tests::{cluster, redis_server};
    use crate::config::StorePolicy;
    use crate::token::Token;

    #[test]
    fn keys_name_the_turn_and_link_of_one_refresh_token() {
        let k = TurnKeys::new("sg", &Token::from_issued("rt-1")).unwrap();
        assert!(k.turn.starts_with("sg:refresh:") && k.turn.ends_with(":turn"));
        assert_eq!(k.next, k.turn.replace(":turn", ":next"));
        assert!(!k.turn.contains("rt-1"));
        // One hash tag for the turn and the link, and the refresh lock's of the same token:
        // a Redis Cluster keeps them in one slot.
        let tag = |key: &str| {
            key.split_once('{')
                .and_then(|(_, r)| r.split_once('}'))
                .map(|t| t.0.to_owned())
        };
        assert_eq!(tag(&k.turn), tag(&k.next));
        let hash: [u8; 32] = sha2::Sha256::digest(b"rt-1").into();
        let lock = crate::cluster::refresh_lock::lock_key("sg", &hash);
        assert_eq!(tag(&k.turn), tag(&lock));
        assert_eq!(tag(&lock).map(|t| t.len()), Some(64));
    }

    async fn held<'a>(c: &'a Cluster, t: &Token) -> Option<Turn<'a>> {
        match c.take_turn(t).await {
            TurnOutcome::Held(turn) => Some(*turn),
            _ => None,
        }
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_grant_after_a_rotation_elsewhere_redeems_the_newest_token_in_turn() {
        let redis = redis_server();
        let a = cluster(&redis.url(), StorePolicy::Refuse);
        let b = cluster(&redis.url(), StorePolicy::Refuse);
        let rt1 = Token::from_issued("rt-1");
        let rt2 = Token::from_issued("rt-2");
        let rt3 = Token::from_issued("rt-3");

        // A holds the turn on rt-1: B cannot take it meanwhile.
        let turn = held(&a, &rt1).await.expect("a turn");
        assert_eq!(turn.token, rt1);
        let presented = rt1.clone();
        let sets = redis.calls("set");
        let waiting = tokio::spawn(async move {
            let t = held(&b, &presented).await.expect("B's turn");
            let token = t.token.clone();
            t.finish(None, 60).await;
            (Some(token), b)
        });
        // B has tried twice (not merely not started yet: a fixed sleep cannot tell).
        redis.await_calls("set", sets + 2).await;
        assert!(!waiting.is_finished(), "B waits for A's turn");
        // A's grant rotated rt-1 to rt-2: B, once it has the turn, redeems rt-2.
        turn.finish(Some(&rt2), 60).await;
        let (got, b) = waiting.await.unwrap();
        assert_eq!(got, Some(rt2.clone()));

        // Chains are followed: rt-2 → rt-3; a token that was not replaced is itself.
        let turn = held(&a, &rt2).await.unwrap();
        turn.finish(Some(&rt3), 60).await;
        let turn = held(&b, &rt1).await.unwrap();
        assert_eq!(turn.token, rt3);
        // A turn dropped without finishing (a cancelled request) is given back all the same.
        drop(turn);
        let again = tokio::time::timeout(std::time::Duration::from_secs(2), held(&a, &rt3));
        assert_eq!(again.await.expect("not held").unwrap().token, rt3);
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn losing_redis_while_another_instance_holds_the_turn_leaves_the_grant_busy() {
        let redis = redis_server();
        let a = cluster(&redis.url(), StorePolicy::Refuse);
        let b = std::sync::Arc::new(cluster(&redis.url(), StorePolicy::Refuse));
        let rt1 = Token::from_issued("rt-1");
        let turn = held(&a, &rt1).await.expect("a turn");
        let (b2, t) = (std::sync::Arc::clone(&b), rt1.clone());
        let sets = redis.calls("set");
        let waiting =
            tokio::spawn(async move { matches!(b2.take_turn(&t).await, TurnOutcome::Busy) });
        // B's second try at the turn: the first found A holding it (a sleep instead may kill
        // Redis before B ever saw A's turn, and then B is rightly free to redeem).
        redis.await_calls("set", sets + 2).await;
        drop(redis); // A's grant may be redeeming rt-1: B must not redeem it as well
        assert!(
            waiting.await.unwrap(),
            "busy, not unavailable (free to redeem)"
        );
        std::mem::forget(turn); // its release would wait on the dead server
    }
}
