//! Several instances through Redis: shared revocations and rotation-safe refresh.
//!
//! **Revocations.** Each one is written as its own key, `<prefix>:rev:<identity>:<not-before>`,
//! holding [`Revocation::encode`] and expiring when the entry does (`SET … EXAT until`), and
//! published on `<prefix>:revocations`. Keys are never overwritten with other contents, so two
//! instances revoking the same subject at different times cannot narrow each other's entry.
//! Every instance loads all keys at start, applies what the subscription delivers, and loads all
//! keys again after every reconnect (what was published while it was away is in the keys). A
//! revocation is recorded locally first (memory, and the journal when configured); if Redis
//! cannot take it, it waits in an outbox that is flushed on reconnect: never dropped. A marker
//! key, `<prefix>:alive`, tells a Redis that lost its data: the first instance to notice writes
//! back every revocation it holds.
//!
//! **Health.** The subscription is pinged every second; a failed ping, a closed connection or a
//! failed write marks the store unavailable until a reconnect has re-synchronised. While it is
//! unavailable, `on_store_unavailable` decides: `refuse` (default) answers authenticated
//! requests with 503, because a revocation made on another instance meanwhile could be missed;
//! `allow` serves them against the revocations known so far. `/readyz` reports it either way.
//!
//! **Refresh.** The single-flight refresh of one instance becomes cluster-wide: the instance
//! that wins `SET <prefix>:refresh:<hash>:lock NX PX` redeems the refresh token and stores the
//! result under `…:result` for the grace window, sealed with the session key (XChaCha20-Poly1305,
//! bound to the hash of the old refresh token), so Redis never holds a readable token. The
//! others wait for that result instead of replaying a rotated refresh token. While Redis is
//! unreachable, refresh falls back to the single instance's coordination.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::config::{ClusterSettings, StorePolicy};
use crate::oidc::{RefreshError, Refreshed};
use crate::revocation::{Denylist, Revocation};
use crate::seal::{ChunkSet, Codec, CookieName, KeyRing, Purpose};
use crate::token::Token;

/// Timeout for connecting to Redis and for each command.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the subscription is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest wait before retrying a lost connection.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a refresh lock is held at most (the IdP timeout is shorter).
const LOCK_TTL: Duration = Duration::from_secs(15);
/// How often a waiting instance looks for the winner's result.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// The Redis side of a sealgate cluster.
pub struct Cluster {
    client: redis::Client,
    prefix: String,
    policy: StorePolicy,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    healthy: AtomicBool,
    outbox: Mutex<Vec<Revocation>>,
    denylist: Arc<Denylist>,
    clock: Clock,
    codec: Codec,
    grace: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("prefix", &self.prefix)
            .field("policy", &self.policy)
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

/// Redis could not be set up (a malformed URL); reachability is not checked at start.
#[derive(Debug, thiserror::Error)]
#[error("cluster.redis_url: {0}")]
pub struct ClusterError(String);

impl Cluster {
    /// Prepares the cluster store and starts its subscriber in the background. Redis need not be
    /// reachable yet: until it is, the store counts as unavailable.
    ///
    /// # Errors
    /// When the URL cannot be used.
    pub fn start(
        settings: &ClusterSettings,
        denylist: Arc<Denylist>,
        clock: Clock,
        keys: KeyRing,
        grace: Duration,
    ) -> Result<Arc<Self>, ClusterError> {
        let client = redis::Client::open(settings.redis_url.expose())
            .map_err(|e| ClusterError(e.to_string()))?;
        let cluster = Arc::new(Self {
            client,
            prefix: settings.key_prefix.clone(),
            policy: settings.on_store_unavailable,
            conn: tokio::sync::Mutex::new(None),
            healthy: AtomicBool::new(false),
            outbox: Mutex::new(Vec::new()),
            denylist,
            clock,
            codec: Codec::new(keys, 32),
            grace,
        });
        tokio::spawn(subscriber(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// Whether the store is reachable and synchronised.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether authenticated requests must be refused now (store unavailable, policy refuse).
    pub fn refuses(&self) -> bool {
        self.policy == StorePolicy::Refuse && !self.healthy()
    }

    /// Waits until the store is healthy, up to `timeout` (start-up and tests).
    pub async fn wait_healthy(&self, timeout: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while !self.healthy() {
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    fn key_of(&self, r: &Revocation) -> String {
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
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:rev:{hex}:{not_before}", self.prefix)
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    fn mark_unhealthy(&self, why: &str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!(
                why,
                policy = ?self.policy,
                "cluster store unavailable; authenticated requests are {}",
                if self.policy == StorePolicy::Refuse { "refused" } else { "served with the revocations known so far" }
            );
        }
    }

    async fn write(&self, r: &Revocation) -> redis::RedisResult<()> {
        let mut conn = self.connection().await?;
        let value = r.encode();
        let until = u64::try_from(r.until()).unwrap_or(1).max(1);
        redis::pipe()
            .cmd("SET")
            .arg(self.key_of(r))
            .arg(&value)
            .arg("EXAT")
            .arg(until)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.channel())
            .arg(&value)
            .ignore()
            .exec_async(&mut conn)
            .await
    }

    /// Shares a revocation already recorded locally. Never fails: if Redis cannot take it now,
    /// it waits in the outbox for the next reconnect.
    pub async fn publish(&self, r: &Revocation) {
        if let Err(e) = self.write(r).await {
            tracing::warn!(error = %e, "revocation kept for Redis: not reachable now");
            if let Ok(mut outbox) = self.outbox.lock() {
                outbox.push(r.clone());
            }
            self.forget_connection().await;
            self.mark_unhealthy("write failed");
        }
    }

    /// Flushes the outbox, then loads every revocation key into the denylist.
    async fn synchronise(&self) -> redis::RedisResult<usize> {
        let pending: Vec<Revocation> = self
            .outbox
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for (i, r) in pending.iter().enumerate() {
            if let Err(e) = self.write(r).await {
                if let Ok(mut outbox) = self.outbox.lock() {
                    outbox.extend(pending[i..].iter().cloned());
                }
                return Err(e);
            }
        }
        let mut conn = self.connection().await?;
        // A Redis that lost its data (restarted without persistence, failed over to an empty
        // replica) no longer has the marker: every instance then writes back what it knows.
        let marker: Option<String> = redis::cmd("SET")
            .arg(format!("{}:alive", self.prefix))
            .arg(1)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        if marker.is_some() {
            let known = self.denylist.snapshot();
            for batch in known.chunks(500) {
                let mut pipe = redis::pipe();
                for r in batch {
                    let until = u64::try_from(r.until()).unwrap_or(1).max(1);
                    pipe.cmd("SET")
                        .arg(self.key_of(r))
                        .arg(r.encode())
                        .arg("EXAT")
                        .arg(until)
                        .ignore();
                }
                pipe.exec_async(&mut conn).await?;
            }
            if !known.is_empty() {
                tracing::warn!(
                    entries = known.len(),
                    "Redis had lost its revocations; wrote back this instance's"
                );
            }
        }
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
                .arg(1000)
                .query_async(&mut conn)
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
                break;
            }
        }
        Ok(loaded)
    }

    fn apply(&self, value: &[u8], now: i64) {
        match Revocation::decode(value) {
            Ok(r) => {
                if let Err(e) = self.denylist.apply(r, now) {
                    tracing::error!(error = %e, "a shared revocation could not be applied");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignored a malformed revocation from Redis"),
        }
    }

    // ----- refresh coordination ------------------------------------------------------------

    fn refresh_keys(&self, hash: &[u8; 32]) -> Option<(String, String, CookieName)> {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let base = format!("{}:refresh:{hex}", self.prefix);
        // The sealed result is bound to the refresh token's hash through the "name".
        let name = CookieName::new(format!("__Host-refresh-{}", &hex[..32])).ok()?;
        Some((format!("{base}:lock"), format!("{base}:result"), name))
    }

    /// Runs `refresh` once across the cluster for the refresh token whose SHA-256 is `hash`:
    /// the winner of the lock calls it and shares the sealed result; the others wait for it.
    /// `None` when Redis is unreachable (the caller refreshes on its own).
    pub async fn refresh_once<F, Fut>(
        &self,
        hash: &[u8; 32],
        refresh: F,
    ) -> Option<Result<Refreshed, RefreshError>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Refreshed, RefreshError>>,
    {
        let (lock, result, name) = self.refresh_keys(hash)?;
        let mut conn = self.connection().await.ok()?;
        let mut token = [0u8; 16];
        crate::secret::fill_random(&mut token).ok()?;
        let holder: String = token.iter().map(|b| format!("{b:02x}")).collect();
        let deadline = tokio::time::Instant::now() + LOCK_TTL;
        let mut refresh = Some(refresh);
        loop {
            if let Some(found) = self.read_result(&mut conn, &result, &name).await {
                return Some(Ok(found));
            }
            let won: Option<String> = redis::cmd("SET")
                .arg(&lock)
                .arg(&holder)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(LOCK_TTL.as_millis()).unwrap_or(15_000))
                .query_async(&mut conn)
                .await
                .ok()?;
            if won.is_some() {
                let f = refresh.take()?;
                let outcome = f().await;
                if let Ok(r) = &outcome {
                    self.store_result(&mut conn, &result, &name, r).await;
                }
                // Release only our own lock (it may have expired and been taken meanwhile).
                let _: redis::RedisResult<i64> = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
                )
                .key(&lock)
                .arg(&holder)
                .invoke_async(&mut conn)
                .await;
                return Some(outcome);
            }
            if tokio::time::Instant::now() >= deadline {
                return Some(Err(RefreshError::Failed(
                    "timed out waiting for another instance's refresh".into(),
                )));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    async fn read_result(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        name: &CookieName,
    ) -> Option<Refreshed> {
        let sealed: Option<String> = conn.get(key).await.ok()?;
        let sealed = sealed?;
        let chunk_names: Vec<String> = (0..self.codec.max_chunks())
            .map(|i| name.chunk(i))
            .collect();
        let pairs = sealed
            .split('.')
            .zip(&chunk_names)
            .map(|(v, n)| (n.as_str(), v));
        let set = ChunkSet::from_pairs(name, self.codec.max_chunks(), pairs);
        let opened = self
            .codec
            .open(Purpose::Refresh, name, &set, self.clock.now())
            .ok()?;
        let wire: SharedRefresh = postcard::from_bytes(opened.payload()).ok()?;
        Some(Refreshed {
            access_token: Token::from_issued(&wire.access_token),
            access_expires_at: wire.access_expires_at,
            refresh_token: wire.refresh_token.as_deref().map(Token::from_issued),
            id_token: wire.id_token.as_deref().map(Token::from_issued),
        })
    }

    async fn store_result(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        name: &CookieName,
        r: &Refreshed,
    ) {
        let wire = SharedRefresh {
            access_token: r.access_token.expose().expose().to_owned(),
            access_expires_at: r.access_expires_at,
            refresh_token: r
                .refresh_token
                .as_ref()
                .map(|t| t.expose().expose().to_owned()),
            id_token: r.id_token.as_ref().map(|t| t.expose().expose().to_owned()),
        };
        let Ok(plain) = postcard::to_allocvec(&wire).map(Zeroizing::new) else {
            return;
        };
        drop(wire);
        let grace = i64::try_from(self.grace.as_secs()).unwrap_or(30);
        let Ok(sealed) = self.codec.seal(
            Purpose::Refresh,
            name,
            self.clock.now().saturating_add(grace),
            &plain,
        ) else {
            tracing::warn!("refresh result too large to share");
            return;
        };
        let value = Zeroizing::new(sealed.chunks.join("."));
        let millis = u64::try_from(self.grace.as_millis())
            .unwrap_or(30_000)
            .max(1);
        let stored: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key)
            .arg(value.as_str())
            .arg("PX")
            .arg(millis)
            .query_async(conn)
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "refresh result not shared");
        }
    }
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

/// Keeps the subscription (and through it, the denylist) current; re-synchronises after every
/// reconnect. Ends when the cluster is dropped.
async fn subscriber(cluster: std::sync::Weak<Cluster>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let began = tokio::time::Instant::now();
        match run_subscription(&c).await {
            Ok(()) => return,
            Err(e) => {
                if began.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_millis(100); // it was up for a while: retry soon
                }
                c.mark_unhealthy(&e);
                c.forget_connection().await;
                tracing::debug!(error = %e, "cluster subscription lost; reconnecting");
            }
        }
        drop(c);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if cluster.strong_count() == 0 {
            return;
        }
    }
}

/// One subscription session: subscribe, synchronise, then apply messages and ping until
/// something fails (`Err`) or the cluster is dropped (`Ok`).
async fn run_subscription(c: &Arc<Cluster>) -> Result<(), String> {
    let pubsub = tokio::time::timeout(IO_TIMEOUT, c.client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = pubsub.split();
    tokio::time::timeout(IO_TIMEOUT, sink.subscribe(c.channel()))
        .await
        .map_err(|_| "subscribe timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    // Subscribed first, then loaded: nothing published in between can be missed.
    let loaded = tokio::time::timeout(Duration::from_secs(60), c.synchronise())
        .await
        .map_err(|_| "synchronisation timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if !c.healthy.swap(true, Ordering::AcqRel) {
        tracing::info!(loaded, "cluster store synchronised");
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return Err("subscription closed".into()) };
                c.apply(msg.get_payload_bytes(), c.clock.now());
            }
            _ = ping.tick() => {
                // In subscribed mode the reply is an array (`pong`, ""), so any value will do.
                let pong: Result<redis::RedisResult<redis::Value>, _> =
                    tokio::time::timeout(IO_TIMEOUT, sink.ping()).await;
                match pong {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("ping timed out".into()),
                }
                if Arc::strong_count(c) <= 1 {
                    return Ok(()); // only this task holds it: the server is gone
                }
            }
        }
    }
}
