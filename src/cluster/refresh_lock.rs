//! The cluster-wide single-flight refresh.
//!
//! The single-flight refresh of one instance becomes cluster-wide: the instance that wins
//! `SET <prefix>:refresh:{<hash>}:lock NX PX` redeems the refresh token and stores the result
//! under `…:result` for the grace window, sealed with the session key (XChaCha20-Poly1305,
//! bound to the hash of the old refresh token), so Redis never holds a readable token. The
//! others wait for that result instead of replaying a rotated refresh token. While Redis is
//! unreachable, refresh falls back to the single instance's coordination.

use std::future::Future;
use std::time::Duration;

use super::Conn;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use zeroize::Zeroizing;

use super::{Cluster, hex, shared};
use crate::oidc::{RefreshError, Refreshed};
use crate::seal::{Codec, CookieName};
use crate::token::Token;

/// How long a refresh lock is held at most (the IdP timeout is shorter).
const LOCK_TTL: Duration = Duration::from_secs(15);
/// How often a waiting instance looks for the winner's result.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// The Redis keys and the seal name for one refresh token.
struct RefreshKeys {
    lock: String,
    result: String,
    /// The sealed result is bound to the refresh token's hash through this "name".
    name: CookieName,
}

impl RefreshKeys {
    /// The keys for the refresh token whose SHA-256 is `hash`.
    fn new(prefix: &str, hash: &[u8; 32]) -> Option<Self> {
        let hex = hex(hash);
        // One hash tag: a token's lock, result, turn and link live in one Cluster slot.
        let base = format!("{prefix}:refresh:{{{hex}}}");
        let name = CookieName::new(format!("__Host-refresh-{}", &hex[..32])).ok()?;
        Some(Self {
            lock: format!("{base}:lock"),
            result: format!("{base}:result"),
            name,
        })
    }
}

impl Cluster {
    /// Runs `refresh` once across the cluster for the refresh token whose SHA-256 is `hash`:
    /// the winner of the lock calls it and shares the sealed result; the others wait for it.
    /// `None` when Redis is unreachable (the caller refreshes on its own).
    pub(crate) async fn refresh_once<F, Fut>(
        &self,
        hash: &[u8; 32],
        refresh: F,
    ) -> Option<Result<Refreshed, RefreshError>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Refreshed, RefreshError>>,
    {
        let keys = RefreshKeys::new(&self.prefix, hash)?;
        let mut conn = self.connection().await.ok()?;
        let holder = shared::new_holder()?;
        let deadline = tokio::time::Instant::now() + LOCK_TTL;
        let mut refresh = Some(refresh);
        // Once another instance was seen holding the lock, it may have redeemed the token:
        // losing Redis then is a failed refresh, not a reason to redeem it here as well.
        let mut other_holder = false;
        loop {
            if let Some(found) = self.read_result(&mut conn, &keys).await {
                return Some(Ok(found));
            }
            let won = match shared::take_lock(&mut conn, &keys.lock, &holder, LOCK_TTL).await {
                Ok(won) => won,
                Err(_) if other_holder => {
                    return Some(Err(RefreshError::Failed(
                        "Redis lost while another instance held the refresh".into(),
                    )));
                }
                Err(_) => return None,
            };
            if won {
                let outcome = self.redeem(&mut conn, &keys, refresh.take()?).await;
                shared::release_lock(&mut conn, &keys.lock, &holder).await;
                return Some(outcome);
            }
            other_holder = true;
            if tokio::time::Instant::now() >= deadline {
                return Some(Err(RefreshError::Failed(
                    "timed out waiting for another instance's refresh".into(),
                )));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// What the lock holder does: the previous holder stores its result before it releases
    /// the lock, so a lock won between our last look and now may follow a finished refresh;
    /// look again before redeeming a refresh token that may already be rotated.
    async fn redeem<F, Fut>(
        &self,
        conn: &mut Conn,
        keys: &RefreshKeys,
        refresh: F,
    ) -> Result<Refreshed, RefreshError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Refreshed, RefreshError>>,
    {
        if let Some(found) = self.read_result(conn, keys).await {
            return Ok(found);
        }
        let outcome = refresh().await;
        if let Ok(r) = &outcome {
            self.store_result(conn, keys, r).await;
        }
        outcome
    }

    /// The winner's result, when it is there and opens.
    async fn read_result(&self, conn: &mut Conn, keys: &RefreshKeys) -> Option<Refreshed> {
        let sealed: Option<String> = conn
            .get(&keys.result)
            .instrument(crate::telemetry::spans::redis_span("GET", "refresh result"))
            .await
            .ok()?;
        open_result(&self.codec, &keys.name, &sealed?, self.clock.now())
    }

    /// Shares our result for the grace window; a failure only costs the others a refresh.
    async fn store_result(&self, conn: &mut Conn, keys: &RefreshKeys, r: &Refreshed) {
        let grace = i64::try_from(self.grace.as_secs()).unwrap_or(30);
        let expires = self.clock.now().saturating_add(grace);
        let Some(value) = seal_result(&self.codec, &keys.name, expires, r) else {
            return;
        };
        let millis = u64::try_from(self.grace.as_millis()).unwrap_or(30_000);
        let stored = shared::put_expiring(conn, &keys.result, &value, millis).await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "refresh result not shared");
        }
    }
}

/// The lock key of the refresh token whose SHA-256 is `hash` (tests compare hash tags).
#[cfg(test)]
pub(super) fn lock_key(prefix: &str, hash: &[u8; 32]) -> String {
    RefreshKeys::new(prefix, hash)
        .map(|k| k.lock)
        .unwrap_or_default()
}

/// Seals a refresh result as one value (chunks joined by `.`), opening until `expires`.
fn seal_result(
    codec: &Codec,
    name: &CookieName,
    expires: i64,
    r: &Refreshed,
) -> Option<Zeroizing<String>> {
    let wire = SharedRefresh {
        access_token: r.access_token.expose().expose().to_owned(),
        access_expires_at: r.access_expires_at,
        refresh_token: r
            .refresh_token
            .as_ref()
            .map(|t| t.expose().expose().to_owned()),
        id_token: r.id_token.as_ref().map(|t| t.expose().expose().to_owned()),
    };
    let plain = postcard::to_allocvec(&wire).map(Zeroizing::new).ok()?;
    drop(wire);
    let sealed = shared::seal_value(codec, name, expires, &plain);
    if sealed.is_none() {
        tracing::warn!("refresh result too large to share");
    }
    sealed
}

/// Opens what [`seal_result`] sealed under the same `name`; `None` when it does not open.
fn open_result(codec: &Codec, name: &CookieName, sealed: &str, now: i64) -> Option<Refreshed> {
    let opened = shared::open_value(codec, name, sealed, now)?;
    let wire: SharedRefresh = postcard::from_bytes(opened.payload()).ok()?;
    Some(Refreshed {
        access_token: Token::from_issued(&wire.access_token),
        access_expires_at: wire.access_expires_at,
        refresh_token: wire.refresh_token.as_deref().map(Token::from_issued),
        id_token: wire.id_token.as_deref().map(Token::from_issued),
        token_type: None,
    })
}

/// The refresh result as shared (inside the seal only).
#[derive(Serialize, Deserialize)]
struct SharedRefresh {
    access_token: String,
    access_expires_at: Option<i64>,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

impl Drop for SharedRefresh {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        if let Some(t) = &mut self.refresh_token {
            t.zeroize();
        }
        if let Some(t) = &mut self.id_token {
            t.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{RefreshKeys, open_result, seal_result};
    use crate::cluster::tests::{cluster, redis_server};
    use crate::config::StorePolicy;
    use crate::oidc::{RefreshError, Refreshed};
    use crate::seal::{Codec, KeyRing};
    use crate::token::Token;

    const NOW: i64 = 1_700_000_000;

    fn codec() -> Codec {
        Codec::new(KeyRing::from_bytes(&[[7; 32]]).unwrap(), 32)
    }

    fn refreshed() -> Refreshed {
        Refreshed {
            access_token: Token::from_issued("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"),
            access_expires_at: Some(NOW + 300),
            refresh_token: Some(Token::from_issued("rotated-refresh-token")),
            id_token: None,
            token_type: None,
        }
    }

    #[test]
    fn keys_name_the_lock_and_result_of_one_refresh_token() {
        let keys = RefreshKeys::new("sealgate", &[0xab; 32]).unwrap();
        let hex = "ab".repeat(32);
        assert_eq!(keys.lock, format!("sealgate:refresh:{{{hex}}}:lock"));
        assert_eq!(keys.result, format!("sealgate:refresh:{{{hex}}}:result"));
        assert_eq!(
            keys.name.chunk(0),
            format!("__Host-refresh-{}.0", &hex[..32])
        );
    }

    #[test]
    fn a_shared_result_opens_to_the_same_tokens() {
        let keys = RefreshKeys::new("sealgate", &[1; 32]).unwrap();
        let sealed = seal_result(&codec(), &keys.name, NOW + 30, &refreshed()).unwrap();
        assert!(
            !sealed.contains("rotated-refresh-token"),
            "sealed, not readable"
        );
        let opened = open_result(&codec(), &keys.name, &sealed, NOW).unwrap();
        let want = refreshed();
        assert_eq!(
            opened.access_token.expose().expose(),
            want.access_token.expose().expose()
        );
        assert_eq!(opened.access_expires_at, want.access_expires_at);
        assert_eq!(
            opened.refresh_token.unwrap().expose().expose(),
            "rotated-refresh-token"
        );
        assert!(opened.id_token.is_none());
    }

    #[test]
    fn a_shared_result_opens_only_for_its_refresh_token_and_only_within_the_grace() {
        let keys = RefreshKeys::new("sealgate", &[1; 32]).unwrap();
        let other = RefreshKeys::new("sealgate", &[2; 32]).unwrap();
        let sealed = seal_result(&codec(), &keys.name, NOW + 30, &refreshed()).unwrap();
        assert!(open_result(&codec(), &other.name, &sealed, NOW).is_none());
        assert!(open_result(&codec(), &keys.name, &sealed, NOW + 31).is_none());
        let other_key = Codec::new(KeyRing::from_bytes(&[[8; 32]]).unwrap(), 32);
        assert!(open_result(&other_key, &keys.name, &sealed, NOW).is_none());
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_lock_won_after_a_finished_refresh_takes_its_result_instead_of_redeeming_again() {
        let redis = redis_server();
        let c = cluster(&redis.url(), StorePolicy::Refuse);
        let keys = RefreshKeys::new("sealgate", &[3; 32]).unwrap();
        let mut conn = c.connection().await.unwrap();
        // The previous holder finished: its result is stored and its lock released, after
        // this instance last looked and before it took the lock.
        c.store_result(&mut conn, &keys, &refreshed()).await;
        let calls = AtomicUsize::new(0);
        let got = c
            .redeem(&mut conn, &keys, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<Refreshed, _>(RefreshError::InvalidGrant)
            })
            .await
            .expect("the stored result");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "the old token is not redeemed"
        );
        assert_eq!(
            got.refresh_token.unwrap().expose().expose(),
            "rotated-refresh-token"
        );
        // With nothing stored, the holder redeems and shares what it got.
        let fresh = RefreshKeys::new("sealgate", &[4; 32]).unwrap();
        c.redeem(&mut conn, &fresh, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(refreshed())
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(c.read_result(&mut conn, &fresh).await.is_some());
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn losing_redis_while_another_instance_holds_the_refresh_never_redeems_here() {
        let redis = redis_server();
        let c = std::sync::Arc::new(cluster(&redis.url(), StorePolicy::Refuse));
        let hash = [5u8; 32];
        // Another instance holds the lock (it may be redeeming the token right now).
        let client = redis::Client::open(redis.url()).unwrap();
        let mut other = client.get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SET")
            .arg(super::lock_key("sealgate", &hash))
            .arg("someone-else")
            .arg("PX")
            .arg(15_000)
            .query_async(&mut other)
            .await
            .unwrap();
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let (c2, n) = (std::sync::Arc::clone(&c), std::sync::Arc::clone(&calls));
        let sets = redis.calls("set");
        let waiting = tokio::spawn(async move {
            c2.refresh_once(&hash, || async move {
                n.fetch_add(1, Ordering::SeqCst);
                Err::<Refreshed, _>(RefreshError::Failed("not called".into()))
            })
            .await
        });
        // Its second try at the lock: the first found it held (a sleep instead may kill Redis
        // before this instance ever saw the other holder, and then it rightly redeems itself).
        redis.await_calls("set", sets + 2).await;
        drop(redis); // killed: the lock and any result it guarded are out of reach
        let outcome = waiting.await.unwrap();
        assert!(
            matches!(outcome, Some(Err(RefreshError::Failed(_)))),
            "a failed refresh, not None (which makes the caller redeem on its own)"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "never redeemed here");
    }
}
