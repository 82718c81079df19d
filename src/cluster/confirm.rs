//! Peer-confirmed revocations: a logout is answered only once no instance can serve the
//! session any more.
//!
//! Publishing a revocation is not enough: a subscriber applies it a little later, and one whose
//! connection stalls silently applies it much later. Two mechanisms close that gap.
//!
//! - **A lease.** An instance serves authenticated requests only while its lease holds. Every
//!   [`super::PING_EVERY`] it registers (`<prefix>:instances`, a sorted set scored with Redis's
//!   own clock: the registration expires [`LEASE`] after Redis wrote it), pings its
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

/// Registers an instance until `LEASE` from now on Redis's clock, dropping expired ones.
const REGISTER: &str = "\
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1";

/// The instances whose registration holds now, on Redis's clock.
const LIVE: &str = "\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')";

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
            && (self.policy == StorePolicy::Allow || !self.wait_healthy(STORE_WAIT).await)
        {
            return Shared::Unconfirmed;
        }
        // Written (by this call, or by the synchronisation that flushed the outbox).
        self.await_peers(&expecting, Instant::now()).await;
        Shared::Confirmed
    }

    /// The channel acknowledgements go on.
    pub(super) fn ack_channel(&self) -> String {
        format!("{}:acks", self.prefix)
    }

    fn registry_key(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// Registers this instance for [`LEASE`] (Redis's clock).
    pub(super) async fn register(&self) -> redis::RedisResult<()> {
        let mut conn = self.connection().await?;
        let lease = u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX);
        let _: i64 = redis::Script::new(REGISTER)
            .key(self.registry_key())
            .arg(self.peers.id())
            .arg(lease)
            .invoke_async(&mut conn)
            .instrument(crate::telemetry::spans::redis_span("EVAL", "register"))
            .await?;
        Ok(())
    }

    /// The instances registered now.
    pub(super) async fn live_instances(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.connection().await?;
        redis::Script::new(LIVE)
            .key(self.registry_key())
            .invoke_async(&mut conn)
            .instrument(crate::telemetry::spans::redis_span("EVAL", "instances"))
            .await
    }

    /// Says on the acks channel that this instance applied `digest`; in the background, so the
    /// subscription goes on at once. A lost acknowledgement costs its publisher the lease's
    /// wait, nothing else.
    pub(super) fn acknowledge(self: &Arc<Self>, digest: RevocationDigest) {
        let c = Arc::clone(self);
        tokio::spawn(async move {
            let sent = async {
                let mut conn = c.connection().await?;
                redis::cmd("PUBLISH")
                    .arg(c.ack_channel())
                    .arg(c.peers.ack_message(&digest))
                    .query_async::<i64>(&mut conn)
                    .await
            };
            if let Err(e) = sent
                .instrument(crate::telemetry::spans::redis_span("PUBLISH", "ack"))
                .await
            {
                tracing::debug!(error = %e, "acknowledgement not sent");
            }
        });
    }

    /// Waits until every registered instance applied the revocation `expecting` waits on, at
    /// most [`LEASE`] after `written` (when its write was confirmed). Without the list of
    /// instances, waits the whole lease: that alone guarantees it.
    pub(super) async fn await_peers(&self, expecting: &Expecting<'_>, written: Instant) {
        let deadline = written + LEASE;
        let live = match self.live_instances().await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "the registered instances could not be read: waiting for the lease");
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
