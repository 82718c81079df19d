//! Peer-confirmed revocations: a logout is answered only once no instance can serve the
//! session any more.
//!
//! Publishing a revocation is not enough: a subscriber applies it a little later, and one whose
//! connection stalls silently applies it much later. Two mechanisms close that gap.
//!
//! - **A lease.** An instance serves authenticated requests only while its lease holds. Every
//!   [`super::PING_EVERY`] it registers (`<prefix>:instances`, a sorted set scored with Redis's
//!   own clock: the registration expires twice [`LEASE`] after Redis wrote it), pings its
//!   subscription and applies every message that arrived before the answer; then the lease runs
//!   [`LEASE`] from when the registration was sent. Redis answers a subscriber's `PING` after
//!   delivering everything published to it before, so an instance whose lease started at `t`
//!   holds every revocation published before `t`. An instance cut off from Redis loses its lease
//!   within [`LEASE`] and, with `on_store_unavailable = "refuse"`, refuses sessions.
//! - **Acknowledgements.** An instance that applied a published revocation says so on
//!   `<prefix>:acks` (`<instance id> <digest of the revocation>`). The instance that published
//!   it reads who is registered and waits until each of them acknowledged, but never longer
//!   than [`LEASE`] after its write was confirmed: by then an instance that stayed silent has
//!   lost its lease (or started it after the revocation was published, and holds it).
//!
//! So a logout costs one acknowledgement round trip (milliseconds), or [`LEASE`] when an
//! instance has just died or stalled. In a Redis Cluster, messages travel between nodes over
//! the cluster bus after `PUBLISH` has answered; the lease bound then assumes the bus delivers
//! within the lease (it does in microseconds to milliseconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::Cluster;
use super::lease::{Expecting, LEASE, RevocationDigest, digest};
use crate::config::StorePolicy;
use crate::revocation::Revocation;

/// Registers an instance (`ARGV[1]`) for `ARGV[2]` ms on Redis's clock, drops expired ones,
/// and keeps the registry's birth time (`KEYS[2]`, written once): a registry Redis lost (an
/// empty restart, a failover to a replica without it) is young again, and young it is not
/// trusted to list every instance holding a lease.
const REGISTER: &str = "\
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], now, 'NX')
redis.call('PEXPIRE', KEYS[2], ttl)
return 1";

/// The registry's age in ms (-1 when it has none), then the instances registered now.
const LIVE: &str = "\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local born = tonumber(redis.call('GET', KEYS[2]) or '')
local age = -1
if born then age = now - born end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
table.insert(live, 1, tostring(age))
return live";

/// How long a registration lasts: twice the lease, so an instance whose lease holds is listed
/// even when Redis's clock moved ahead by up to a lease (a failover to another server's clock)
/// or its latest registration was lost.
const REGISTRATION: Duration = Duration::from_secs(2 * LEASE.as_secs());

/// Acknowledgements sent in one message at most.
const ACK_BATCH: usize = 256;

/// How long a revocation Redis could not take waits for the store to come back (a Sentinel
/// failover takes a few seconds) before its logout is answered as not shared.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// What became of a revocation shared with the other instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    /// Every instance applied it, or can no longer serve a session without it.
    Confirmed,
    /// Recorded here and kept for Redis, but other instances may still serve the session.
    Unconfirmed,
}

impl Cluster {
    /// Shares a revocation already recorded locally and waits until no instance can serve what
    /// it revokes ([`Shared::Confirmed`]). When Redis cannot take it, it waits in the outbox
    /// (never dropped); with `on_store_unavailable = "refuse"` the store has [`STORE_WAIT`] to
    /// come back and take it, with `allow` it is [`Shared::Unconfirmed`] at once.
    pub(crate) async fn share(&self, r: &Revocation) -> Shared {
        let expecting = self.peers.expect(digest(&r.encode()));
        if !self.publish(r).await
            && (self.policy == StorePolicy::Allow || !self.wait_written(r, STORE_WAIT).await)
        {
            return Shared::Unconfirmed;
        }
        // Written (by this call, or by the synchronisation that flushed the outbox).
        self.await_peers(&expecting, Instant::now()).await;
        Shared::Confirmed
    }

    /// Waits, up to `timeout`, until the store is healthy again and `r` has left the outbox
    /// (written by the synchronisation that made it healthy).
    async fn wait_written(&self, r: &Revocation, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.healthy() || self.outbox_holds(r) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The channel acknowledgements go on.
    pub(super) fn ack_channel(&self) -> String {
        format!("{}:acks", self.prefix)
    }

    /// The registry and its birth time share a hash tag: one slot in a Redis Cluster.
    fn registry_key(&self) -> String {
        format!("{{{}:instances}}", self.prefix)
    }

    fn registry_birth_key(&self) -> String {
        format!("{{{}:instances}}:born", self.prefix)
    }

    /// Registers this instance for [`REGISTRATION`] (Redis's clock), on the connection
    /// revocations are written on, and waits for the replicas revocations wait for: a primary
    /// cut off from its replicas (and perhaps already replaced) renews no lease.
    pub(super) async fn register(&self) -> redis::RedisResult<()> {
        let mut conn = self.writer().await?;
        let ttl = u64::try_from(REGISTRATION.as_millis()).unwrap_or(u64::MAX);
        let _: i64 = redis::Script::new(REGISTER)
            .key(self.registry_key())
            .key(self.registry_birth_key())
            .arg(self.peers.id())
            .arg(ttl)
            .invoke_async(&mut conn)
            .instrument(crate::telemetry::spans::redis_span("EVAL", "register"))
            .await?;
        self.wait_for_replicas(&mut conn).await
    }

    /// The instances registered now, or `None` when the registry is too young to list every
    /// instance whose lease holds (it was lost, or this is a new cluster).
    pub(super) async fn live_instances(&self) -> redis::RedisResult<Option<Vec<String>>> {
        let mut conn = self.connection().await?;
        let mut reply: Vec<String> = redis::Script::new(LIVE)
            .key(self.registry_key())
            .key(self.registry_birth_key())
            .invoke_async(&mut conn)
            .instrument(crate::telemetry::spans::redis_span("EVAL", "instances"))
            .await?;
        if reply.is_empty() {
            return Ok(None);
        }
        let age: i64 = reply.remove(0).parse().unwrap_or(-1);
        let trusted =
            u64::try_from(age).is_ok_and(|age| u128::from(age) >= REGISTRATION.as_millis());
        Ok(trusted.then_some(reply))
    }

    /// Says on the acks channel that this instance applied `digest`, in the background so the
    /// subscription goes on at once. Acknowledgements queue and leave together, one message at
    /// a time: a burst of revocations (an outbox flushed, a lost Redis refilled) costs a few
    /// messages, not one per revocation. A lost one costs its publisher the lease's wait.
    pub(super) fn acknowledge(self: &Arc<Self>, digest: RevocationDigest) {
        let Ok(mut acks) = self.acks.lock() else {
            return;
        };
        acks.pending.push(digest);
        if acks.sending {
            return; // the sender in flight takes it next
        }
        acks.sending = true;
        drop(acks);
        let c = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let batch: Vec<RevocationDigest> = {
                    let Ok(mut acks) = c.acks.lock() else { return };
                    if acks.pending.is_empty() {
                        acks.sending = false;
                        return;
                    }
                    let n = acks.pending.len().min(ACK_BATCH);
                    acks.pending.drain(..n).collect()
                };
                let sent = async {
                    let mut conn = c.connection().await?;
                    redis::cmd("PUBLISH")
                        .arg(c.ack_channel())
                        .arg(c.peers.ack_message(&batch))
                        .query_async::<i64>(&mut conn)
                        .await
                };
                let sent = tokio::time::timeout(super::IO_TIMEOUT * 2, sent)
                    .instrument(crate::telemetry::spans::redis_span("PUBLISH", "ack"))
                    .await;
                if !matches!(sent, Ok(Ok(_))) {
                    tracing::debug!(acks = batch.len(), "acknowledgements not sent");
                }
            }
        });
    }

    /// Waits until every registered instance applied the revocation `expecting` waits on, at
    /// most [`LEASE`] after `written` (when its write was confirmed). Without the list of
    /// instances, waits the whole lease: that alone guarantees it.
    pub(super) async fn await_peers(&self, expecting: &Expecting<'_>, written: Instant) {
        let deadline = written + LEASE;
        let read = tokio::time::timeout(super::IO_TIMEOUT * 2, self.live_instances()).await;
        let live = match read {
            Ok(Ok(Some(live))) => live,
            Ok(Ok(None)) => {
                tracing::info!("the registry of instances is new: waiting for the lease");
                tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                return;
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("the registered instances could not be read: waiting for the lease");
                tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                return;
            }
        };
        let missing = self.peers.confirmed_by(expecting, &live, deadline).await;
        if !missing.is_empty() {
            tracing::warn!(
                instances = missing.len(),
                "instances did not acknowledge a revocation; their lease has run out"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::cluster::tests::{cluster, redis_server};
    use crate::config::StorePolicy;

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_registry_younger_than_a_registration_is_not_trusted_to_list_every_instance() {
        let redis = redis_server();
        let a = Arc::new(cluster(&redis.url(), StorePolicy::Refuse));
        let b = Arc::new(cluster(&redis.url(), StorePolicy::Refuse));
        a.register().await.unwrap();
        b.register().await.unwrap();
        assert_eq!(a.live_instances().await.unwrap(), None, "just born");
        // Born long enough ago: every registration since is in it.
        let admin = redis::Client::open(redis.url()).unwrap();
        let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
        let (secs, micros): (String, String) =
            redis::cmd("TIME").query_async(&mut admin).await.unwrap();
        let now_ms = secs.parse::<i64>().unwrap() * 1000 + micros.parse::<i64>().unwrap() / 1000;
        let () = redis::cmd("SET")
            .arg(a.registry_birth_key())
            .arg(now_ms - 11_000)
            .query_async(&mut admin)
            .await
            .unwrap();
        let mut live = a.live_instances().await.unwrap().expect("old enough");
        live.sort();
        let mut want = vec![a.peers.id().to_owned(), b.peers.id().to_owned()];
        want.sort();
        assert_eq!(live, want);
        // Redis loses it (an empty restart, a failover to a replica without it): young again,
        // even though B registers at once.
        let () = redis::cmd("FLUSHALL")
            .query_async(&mut admin)
            .await
            .unwrap();
        b.register().await.unwrap();
        assert_eq!(a.live_instances().await.unwrap(), None);
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_registration_the_replicas_do_not_confirm_renews_nothing() {
        // A primary cut off from its replicas (perhaps already replaced by one of them).
        let redis = redis_server();
        let c = cluster(&redis.url(), StorePolicy::Refuse);
        c.register().await.unwrap();
        c.wait_replicas
            .store(1, std::sync::atomic::Ordering::Release);
        let e = c.register().await.unwrap_err().to_string();
        assert!(e.contains("too few replicas"), "{e}");
    }
}
