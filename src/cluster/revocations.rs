//! Revocations shared through Redis.
//!
//! Each one is written as its own key, `<prefix>:rev:<identity>:<not-before>`, holding
//! [`Revocation::encode`] and expiring when the entry does (`SET … EXAT until`), and published
//! on `<prefix>:revocations`. Keys are never overwritten with other contents, so two instances
//! revoking the same subject at different times cannot narrow each other's entry. Every
//! instance loads all keys at start, applies what the subscription delivers, and loads all keys
//! again after every reconnect (what was published while it was away is in the keys). A
//! revocation is recorded locally first (memory, and the journal when configured); if Redis
//! cannot take it, it waits in an outbox that is flushed on reconnect: never dropped. A marker
//! key, `<prefix>:alive`, tells a Redis that lost its data: the first instance to notice writes
//! back every revocation it holds.

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::{Cluster, hex};
use crate::revocation::Revocation;

/// Revocations written back per pipeline when Redis lost its data.
const WRITE_BACK_BATCH: usize = 500;
/// Keys asked for per `SCAN` step when loading all.
const SCAN_COUNT: usize = 1000;

impl Cluster {
    /// The channel every revocation is published on.
    pub(super) fn channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    /// Shares a revocation already recorded locally. Never fails: if Redis cannot take it now,
    /// it waits in the outbox for the next reconnect.
    pub(crate) async fn publish(&self, r: &Revocation) {
        let span = crate::telemetry::spans::redis_span("SET+PUBLISH", "revocation");
        if let Err(e) = self.write(r).instrument(span).await {
            tracing::warn!(error = %e, "revocation kept for Redis: not reachable now");
            self.keep([r.clone()]);
            self.forget_connection().await;
            self.mark_unhealthy("write failed");
        }
    }

    /// Flushes the outbox, writes back what this instance knows if Redis lost its data, then
    /// loads every revocation key into the denylist. Returns how many keys were loaded.
    pub(super) async fn synchronise(&self) -> redis::RedisResult<usize> {
        self.flush_outbox().await?;
        let mut conn = self.connection().await?;
        self.write_back_if_lost(&mut conn).await?;
        self.load_all(&mut conn).await
    }

    /// Applies one encoded revocation (a published message or a loaded key) to the denylist.
    pub(super) fn apply(&self, value: &[u8], now: i64) {
        match Revocation::decode(value) {
            Ok(r) => {
                if let Err(e) = self.denylist.apply(r, now) {
                    tracing::error!(error = %e, "a shared revocation could not be applied");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignored a malformed revocation from Redis"),
        }
    }

    /// Stores one revocation's key and publishes it, in one round trip.
    async fn write(&self, r: &Revocation) -> redis::RedisResult<()> {
        let mut conn = self.connection().await?;
        let value = r.encode();
        let mut pipe = redis::pipe();
        self.set_key(&mut pipe, r, &value)
            .cmd("PUBLISH")
            .arg(self.channel())
            .arg(&value)
            .ignore()
            .exec_async(&mut conn)
            .await
    }

    /// Adds `SET <key> <value> EXAT <until>` (reply ignored) to `pipe`.
    fn set_key<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        r: &Revocation,
        value: &[u8],
    ) -> &'p mut redis::Pipeline {
        // EXAT needs a positive time; an entry already past its end expires at once.
        let until = u64::try_from(r.until()).unwrap_or(1).max(1);
        pipe.cmd("SET")
            .arg(revocation_key(&self.prefix, r))
            .arg(value)
            .arg("EXAT")
            .arg(until)
            .ignore()
    }

    /// Puts revocations Redis could not take (back) at the end of the outbox.
    fn keep(&self, unsent: impl IntoIterator<Item = Revocation>) {
        if let Ok(mut outbox) = self.outbox.lock() {
            outbox.extend(unsent);
        }
    }

    /// Writes what waited in the outbox, in order; on a failure the rest waits again.
    async fn flush_outbox(&self) -> redis::RedisResult<()> {
        let pending: Vec<Revocation> = self
            .outbox
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for (i, r) in pending.iter().enumerate() {
            if let Err(e) = self.write(r).await {
                self.keep(pending[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes back every revocation this instance holds when Redis no longer has the marker.
    async fn write_back_if_lost(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        // A Redis that lost its data (restarted without persistence, failed over to an empty
        // replica) no longer has the marker: every instance then writes back what it knows.
        let marker: Option<String> = redis::cmd("SET")
            .arg(format!("{}:alive", self.prefix))
            .arg(1)
            .arg("NX")
            .query_async(conn)
            .await?;
        if marker.is_none() {
            return Ok(());
        }
        let known = self.denylist.snapshot();
        for batch in known.chunks(WRITE_BACK_BATCH) {
            let mut pipe = redis::pipe();
            for r in batch {
                self.set_key(&mut pipe, r, &r.encode());
            }
            pipe.exec_async(&mut *conn).await?;
        }
        if !known.is_empty() {
            tracing::warn!(
                entries = known.len(),
                "Redis had lost its revocations; wrote back this instance's"
            );
        }
        Ok(())
    }

    /// Loads every revocation key into the denylist; returns how many were loaded.
    async fn load_all(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<usize> {
        let pattern = format!("{}:rev:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut loaded = 0;
        let now = self.clock.now();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(conn)
                .await?;
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> = conn.mget(&keys).await?;
                for value in values.into_iter().flatten() {
                    self.apply(&value, now);
                    loaded += 1;
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(loaded);
            }
        }
    }
}

/// The key of one revocation: `<prefix>:rev:<identity>:<not-before>`, where `<identity>` is
/// the first 16 bytes of a SHA-256 over what the entry matches, in hex. Every instance must
/// compute the same key for the same entry, across versions too.
fn revocation_key(prefix: &str, r: &Revocation) -> String {
    let mut h = Sha256::new();
    let mut named = |kind: &[u8], iss: &str, value: &str| {
        h.update(kind);
        h.update(iss.as_bytes());
        h.update(b"\0");
        h.update(value.as_bytes());
    };
    let not_before = match r {
        Revocation::Session { id, .. } => {
            named(b"session\0", "", "");
            h.update(id);
            0
        }
        Revocation::Sid {
            iss,
            sid,
            not_before,
            ..
        } => {
            named(b"sid\0", iss, sid);
            *not_before
        }
        Revocation::Sub {
            iss,
            sub,
            not_before,
            ..
        } => {
            named(b"sub\0", iss, sub);
            *not_before
        }
        Revocation::Global { not_before, .. } => {
            named(b"global\0", "", "");
            *not_before
        }
    };
    let digest = h.finalize();
    format!("{prefix}:rev:{}:{not_before}", hex(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::revocation_key;
    use crate::cluster::tests::cluster;
    use crate::config::StorePolicy;
    use crate::revocation::Revocation;

    const ISS: &str = "https://idp.example";
    const UNREACHABLE: &str = "redis://127.0.0.1:1/0";

    fn sid(sid: &str, not_before: i64) -> Revocation {
        Revocation::Sid {
            iss: ISS.into(),
            sid: sid.into(),
            not_before,
            until: 4_000_000_000,
        }
    }

    fn sub(sub: &str, not_before: i64) -> Revocation {
        Revocation::Sub {
            iss: ISS.into(),
            sub: sub.into(),
            not_before,
            until: 4_000_000_000,
        }
    }

    #[test]
    fn keys_are_stable_across_versions() {
        // Known answers (SHA-256 computed independently): instances of different versions
        // share one Redis during a rolling upgrade, so these must never change.
        let cases = [
            (
                Revocation::Session {
                    id: [1; 16],
                    until: 4_000_000_000,
                },
                "sealgate:rev:7993173c01f4169ad73beea7a510b7ab:0",
            ),
            (
                sid("s-1", 1_700_000_000),
                "sealgate:rev:68f0f2199a9448b443429d4881b195b5:1700000000",
            ),
            (
                sub("alice", 1_700_000_001),
                "sealgate:rev:8fc34b49e8e0e1987ccd1b43f06a50f2:1700000001",
            ),
            (
                Revocation::Global {
                    not_before: 1_700_000_002,
                    until: 4_000_000_000,
                },
                "sealgate:rev:5d194c74878a5960908506b3f672f213:1700000002",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(revocation_key("sealgate", &r), want, "{r:?}");
        }
    }

    #[test]
    fn a_sid_and_a_sub_with_the_same_text_get_different_keys() {
        let as_sid = sid("alice", 1_700_000_001);
        let as_sub = sub("alice", 1_700_000_001);
        assert_eq!(
            revocation_key("sealgate", &as_sid),
            "sealgate:rev:9fa62a0f282f78557af0c20bc8b644c1:1700000001"
        );
        assert_ne!(
            revocation_key("sealgate", &as_sid),
            revocation_key("sealgate", &as_sub)
        );
    }

    #[test]
    fn a_later_revocation_of_the_same_identity_gets_its_own_key() {
        // Keys are never overwritten with other contents: a later not-before cannot replace
        // (and so narrow) an earlier entry written by another instance.
        assert_ne!(
            revocation_key("sealgate", &sid("s-1", 100)),
            revocation_key("sealgate", &sid("s-1", 200))
        );
    }

    #[test]
    fn apply_adds_a_shared_revocation_and_ignores_a_malformed_one() {
        let c = cluster(UNREACHABLE, StorePolicy::Refuse);
        c.apply(&sid("s-1", 100).encode(), 1_000);
        assert_eq!(c.denylist.len(), 1);
        c.apply(b"\xffnot a revocation", 1_000);
        assert_eq!(c.denylist.len(), 1);
        assert_eq!(c.denylist.snapshot(), vec![sid("s-1", 100)]);
    }

    #[tokio::test]
    async fn a_revocation_redis_cannot_take_waits_in_the_outbox_in_order() {
        let c = cluster(UNREACHABLE, StorePolicy::Refuse);
        c.mark_synchronised(0);
        c.publish(&sid("s-1", 100)).await;
        assert!(!c.healthy(), "a failed write marks the store unavailable");
        c.publish(&sid("s-2", 100)).await;
        assert!(c.synchronise().await.is_err());
        let outbox = c.outbox.lock().unwrap().clone();
        assert_eq!(outbox, vec![sid("s-1", 100), sid("s-2", 100)]);
    }
}
