//! Several instances through Redis: shared revocations and rotation-safe refresh.
//!
//! The protocol in short (each part is documented in its own module):
//!
//! | Redis key or channel | holds | module |
//! |---|---|---|
//! | `<prefix>:rev:<identity>:<not-before>` | one revocation, expiring when it does | `revocations` |
//! | `<prefix>:revocations` (channel) | every revocation as it is published | `revocations` |
//! | `<prefix>:refresh:{<hash>}:lock` | the instance redeeming one refresh token | `refresh_lock` |
//! | `<prefix>:refresh:{<hash>}:result` | its result, sealed, for the grace window | `refresh_lock` |
//! | `<prefix>:refresh:{<hash>}:turn` | the instance whose grant redeems this token now | `turns` |
//! | `<prefix>:refresh:{<hash>}:next` | the token that replaced it, sealed, while lineages last | `turns` |
//! | `{<prefix>:instances}`, `…:born` | the instances registered, until when (Redis's clock); its birth | `confirm` |
//! | `<prefix>:acks` (channel) | "instance applied revocation" | `confirm` |
//!
//! `{<hash>}` is a hash tag: in a Redis Cluster, one token's keys live in one slot.
//!
//! - **Revocations** are recorded locally first, then written and published, each confirmed by
//!   the replicas (`WAIT`); what Redis cannot take waits in an outbox. Every instance re-asserts
//!   what it holds and loads all keys at start and after every reconnect or failed write.
//! - **Peers**: a logout is answered once every registered instance acknowledged its
//!   revocation, or once an instance that did not has lost its lease (it serves sessions only
//!   within [`lease::LEASE`] of its last confirmed contact with Redis).
//! - **Health**: the subscription is pinged twice a second; while the store is unavailable,
//!   `on_store_unavailable` decides: `refuse` (default, 503) or `allow` (the revocations known
//!   so far). `/readyz` reports it either way.
//! - **Refresh**: one instance per refresh token redeems it for the whole cluster; without
//!   Redis, refresh falls back to the single instance's coordination.
//!
//! This module holds the [`Cluster`] itself and its connections: one multiplexed connection for
//! commands (reopened after a failure) and one subscription task that subscribes, synchronises,
//! then applies what is published and pings until something fails, and starts over.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt};
use redis::aio::PubSubSink;

use crate::clock::Clock;
use crate::config::{ClusterSettings, StorePolicy};
use crate::revocation::{Denylist, Revocation};
use crate::seal::{Codec, KeyRing};

mod confirm;
mod connect;
mod health;
mod lease;
mod refresh_lock;
mod revocations;
mod shared;
mod turns;

pub(crate) use confirm::Shared;
pub(crate) use connect::ClusterError;
use connect::{Conn, IO_TIMEOUT, Target};
pub(crate) use turns::{TurnBusy, TurnOutcome};

/// How often the subscription is pinged and the lease renewed (a failed ping marks the store
/// unavailable).
const PING_EVERY: Duration = Duration::from_millis(500);
/// Longest wait before retrying a lost connection.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest first synchronisation after a (re)connect: flushing the outbox and loading all keys.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The Redis side of a sealgate cluster.
pub(crate) struct Cluster {
    target: Target,
    prefix: String,
    policy: StorePolicy,
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// The connection revocations are written on: their `WAIT` for the replicas blocks the
    /// connection it is sent on, and must not hold up the commands on `conn`.
    writer: tokio::sync::Mutex<Option<Conn>>,
    /// `[cluster] min_replicas`: replicas every revocation must reach (none: automatic).
    min_replicas: Option<u32>,
    /// Replicas each revocation waits for now: `min_replicas`, or as many as the primary
    /// (every primary of a cluster) had connected at the last synchronisation.
    wait_replicas: AtomicU32,
    healthy: AtomicBool,
    /// Revocation writes that failed, ever: a synchronisation during which one failed does
    /// not mark the store healthy (the failure may have come after the outbox was flushed).
    write_failures: std::sync::atomic::AtomicU64,
    outbox: Mutex<std::collections::VecDeque<Revocation>>,
    /// This instance's lease and the acknowledgements its revocations wait for.
    peers: lease::Peers,
    /// Acknowledgements of revocations this instance applied, not yet sent.
    acks: Mutex<lease::Acks>,
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

impl Cluster {
    /// Prepares the cluster store and starts its subscriber in the background. Redis need not be
    /// reachable yet: until it is, the store counts as unavailable.
    ///
    /// # Errors
    /// When the URL cannot be used.
    pub(crate) fn start(
        settings: &ClusterSettings,
        denylist: Arc<Denylist>,
        clock: Clock,
        keys: KeyRing,
        grace: Duration,
    ) -> Result<Arc<Self>, ClusterError> {
        let cluster = Arc::new(Self::new(settings, denylist, clock, keys, grace)?);
        tokio::spawn(subscriber(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// The cluster store without its subscriber: unavailable until one synchronises it.
    fn new(
        settings: &ClusterSettings,
        denylist: Arc<Denylist>,
        clock: Clock,
        keys: KeyRing,
        grace: Duration,
    ) -> Result<Self, ClusterError> {
        Ok(Self {
            target: Target::new(settings)?,
            prefix: settings.key_prefix.clone(),
            policy: settings.on_store_unavailable,
            conn: tokio::sync::Mutex::new(None),
            writer: tokio::sync::Mutex::new(None),
            min_replicas: settings.min_replicas,
            wait_replicas: AtomicU32::new(settings.min_replicas.unwrap_or(0)),
            healthy: AtomicBool::new(false),
            write_failures: std::sync::atomic::AtomicU64::new(0),
            outbox: Mutex::new(std::collections::VecDeque::new()),
            peers: lease::Peers::new(instance_id()?),
            acks: Mutex::new(lease::Acks::default()),
            denylist,
            clock,
            codec: Codec::new(keys, 32),
            grace,
        })
    }

    /// The shared command connection, opened on first use and after [`Self::forget_connection`].
    async fn connection(&self) -> redis::RedisResult<Conn> {
        self.connection_in(&self.conn).await
    }

    /// The connection revocation writes go on, likewise.
    async fn writer(&self) -> redis::RedisResult<Conn> {
        self.connection_in(&self.writer).await
    }

    async fn connection_in(
        &self,
        slot: &tokio::sync::Mutex<Option<Conn>>,
    ) -> redis::RedisResult<Conn> {
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // Boxed: the cluster and Sentinel connection futures are deep, and every caller's
        // future would otherwise embed them.
        let connecting: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> =
            Box::pin(self.target.connect());
        let c = connecting.await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
        *self.writer.lock().await = None;
    }
}

/// A new random instance id (OS CSPRNG): 32 hex digits.
fn instance_id() -> Result<String, ClusterError> {
    let mut id = [0u8; 16];
    crate::secret::fill_random(&mut id)
        .map_err(|_| ClusterError("the OS random generator failed".into()))?;
    Ok(hex(&id))
}

/// Lowercase hex, for key names and lock holders.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps the subscription (and through it, the denylist) current; re-synchronises after every
/// reconnect. Ends when the cluster is dropped.
async fn subscriber(cluster: Weak<Cluster>) {
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
                c.target.next_seed();
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

/// One subscription session: subscribe, synchronise, then apply messages, renew the lease
/// and ping until something fails (`Err`) or the cluster is dropped (`Ok`).
async fn run_subscription(c: &Arc<Cluster>) -> Result<(), String> {
    let pubsub = c.target.pubsub().await?;
    let (mut sink, mut stream) = pubsub.split();
    tokio::time::timeout(IO_TIMEOUT, sink.subscribe(&[c.channel(), c.ack_channel()]))
        .await
        .map_err(|_| "subscribe timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    // Subscribed first, then loaded: nothing published in between can be missed.
    resynchronise(c).await?;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewed_before = false;
    let mut last_registered = std::time::Instant::now();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return Err("subscription closed".into()) };
                c.receive(&msg);
            }
            _ = ping.tick() => {
                let sent = std::time::Instant::now();
                let register = async {
                    tokio::time::timeout(IO_TIMEOUT * 2, c.register())
                        .await
                        .map_err(|_| "registration timed out".to_owned())?
                        .map_err(|e| format!("registration failed: {e}"))
                };
                let (registered, pinged) = tokio::join!(register, ping_subscription(&mut sink));
                pinged?;
                if let Err(e) = registered {
                    // No renewal this time; the lease runs out if this goes on. Past the
                    // lease, start over: the primary may have changed (Sentinel).
                    if last_registered.elapsed() > lease::LEASE {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "cluster registration failed; the lease is not renewed");
                    continue;
                }
                last_registered = std::time::Instant::now();
                // Everything published before the ping arrived before its answer: apply it
                // all (unconstrained: a task's cooperative budget would stop the drain after
                // 128 messages), then the lease may run from `sent`.
                while let Some(next) = tokio::task::unconstrained(stream.next()).now_or_never() {
                    let Some(msg) = next else { return Err("subscription closed".into()) };
                    c.receive(&msg);
                }
                let lapsed = c.peers.renew(sent);
                if let Some(lapsed) = lapsed.filter(|_| renewed_before) {
                    // Within one subscription: Redis or this instance was too slow to answer.
                    tracing::warn!(
                        lapsed_ms = u64::try_from(lapsed.as_millis()).unwrap_or(u64::MAX),
                        "the cluster lease had run out (no contact with Redis in time); renewed"
                    );
                }
                renewed_before = true;
                if Arc::strong_count(c) <= 1 {
                    return Ok(()); // only this task holds it: the server is gone
                }
                c.ping_primaries().await?;
                if !c.synchronised() {
                    // A write failed while the subscription held (a failover, a lost
                    // primary of a cluster). Start over: subscribe again where the primary
                    // is now, then synchronise. Synchronising in place would leave the
                    // subscription on a server that may no longer receive what is published.
                    return Err("a write failed: subscribing again".into());
                }
            }
        }
    }
}

impl Cluster {
    /// One message of the subscription: a revocation (applied, then acknowledged) or an
    /// acknowledgement.
    fn receive(self: &Arc<Self>, msg: &redis::Msg) {
        let payload = msg.get_payload_bytes();
        if msg.get_channel_name() == self.ack_channel() {
            self.peers.acknowledged(payload);
        } else {
            self.apply(payload, self.clock.now());
            self.acknowledge(lease::digest(payload));
        }
    }
}

/// Flushes the outbox, re-asserts what this instance knows, loads every key: healthy again.
async fn resynchronise(c: &Arc<Cluster>) -> Result<(), String> {
    let failures = c.write_failures.load(std::sync::atomic::Ordering::SeqCst);
    resynchronise_since(c, failures).await
}

/// As [`resynchronise`], counting the write failures after `failures` as during it.
async fn resynchronise_since(c: &Arc<Cluster>, failures: u64) -> Result<(), String> {
    use std::sync::atomic::Ordering::SeqCst;
    let loaded = tokio::time::timeout(SYNC_TIMEOUT, c.synchronise())
        .await
        .map_err(|_| "synchronisation timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let failed = "a revocation write failed during the synchronisation";
    if c.write_failures.load(SeqCst) != failures || c.outbox_len() > 0 {
        return Err(failed.into());
    }
    c.mark_synchronised(loaded);
    // A write that failed between the check and the mark found the store still unhealthy and
    // left it so; seen now, it is marked again and the synchronisation starts over.
    if c.write_failures.load(SeqCst) != failures {
        c.mark_unhealthy(failed);
        return Err(failed.into());
    }
    Ok(())
}

/// One ping on the subscription; `Err` says why the store counts as lost.
async fn ping_subscription(sink: &mut PubSubSink) -> Result<(), String> {
    // In subscribed mode the reply is an array (`pong`, ""), so any value will do.
    let pong: Result<redis::RedisResult<redis::Value>, _> =
        tokio::time::timeout(IO_TIMEOUT, sink.ping()).await;
    match pong {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("ping timed out".into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Cluster, ClusterError};
    use crate::clock::Clock;
    use crate::config::{ClusterSettings, RedisTopology, StorePolicy};
    use crate::revocation::Denylist;
    use crate::seal::KeyRing;
    use crate::secret::SecretString;

    fn try_cluster(url: &str, policy: StorePolicy) -> Result<Cluster, ClusterError> {
        try_cluster_with(url, policy, None)
    }

    fn try_cluster_with(
        url: &str,
        policy: StorePolicy,
        min_replicas: Option<u32>,
    ) -> Result<Cluster, ClusterError> {
        let settings = ClusterSettings {
            topology: RedisTopology::Url(SecretString::new(url.into())),
            tls: None,
            username: None,
            password: None,
            min_replicas,
            on_store_unavailable: policy,
            key_prefix: "sealgate".into(),
        };
        let keys = KeyRing::from_bytes(&[[7; 32]]).unwrap();
        let denylist = Arc::new(Denylist::new(100, 3600));
        Cluster::new(
            &settings,
            denylist,
            Clock::system(),
            keys,
            Duration::from_secs(30),
        )
    }

    /// Marks `c` synchronised with a fresh lease, as its subscriber does.
    pub(crate) fn mark_ready(c: &Cluster) {
        c.mark_synchronised(0);
        c.peers.renew(std::time::Instant::now());
    }

    /// A cluster whose subscriber never runs: it stays unavailable until marked otherwise.
    pub(crate) fn cluster(url: &str, policy: StorePolicy) -> Cluster {
        try_cluster(url, policy).unwrap()
    }

    /// A cluster whose revocations must reach `min_replicas` replicas.
    pub(crate) fn cluster_requiring(url: &str, min_replicas: u32) -> Cluster {
        try_cluster_with(url, StorePolicy::Refuse, Some(min_replicas)).unwrap()
    }

    /// A throwaway `redis-server` (the Debian package) on a free loopback port, killed on drop.
    pub(crate) struct RedisServer {
        port: u16,
        child: std::process::Child,
    }

    impl RedisServer {
        pub(crate) fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/0", self.port)
        }

        /// How many `command`s (lower case) the server has run: `INFO commandstats`.
        pub(crate) fn calls(&self, command: &str) -> u64 {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"INFO commandstats\r\n").unwrap();
            // A bulk string: `$LEN\r\n` then LEN bytes and `\r\n`.
            let mut text = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "INFO: connection closed");
                text.extend_from_slice(&buf[..n]);
                let t = String::from_utf8_lossy(&text);
                if let Some((head, body)) = t.split_once("\r\n")
                    && head
                        .strip_prefix('$')
                        .and_then(|l| l.parse::<usize>().ok())
                        .is_some_and(|len| body.len() >= len + 2)
                {
                    break;
                }
            }
            let prefix = format!("cmdstat_{command}:calls=");
            String::from_utf8_lossy(&text)
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |n| n.parse().unwrap())
        }

        /// Waits (up to 10 s) until the server has run `command` at least `n` times: to know
        /// that another task got that far, rather than sleep and hope it did.
        pub(crate) async fn await_calls(&self, command: &str, n: u64) {
            let started = std::time::Instant::now();
            while self.calls(command) < n {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{command} was not run {n} times"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts one and waits until it accepts connections. Redis cannot listen on port 0: the
    /// port is picked first, and another socket may take it before Redis binds it (Redis then
    /// exits), so a server that exits at start is started again on another port.
    pub(crate) fn redis_server() -> RedisServer {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server)");
            let mut server = RedisServer { port, child };
            for _ in 0..500 {
                if server.child.try_wait().is_ok_and(|s| s.is_some()) {
                    break; // the port was taken: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start");
    }

    #[test]
    fn a_malformed_url_is_refused_at_start_without_echoing_it() {
        let e = try_cluster("http://:hunter2@127.0.0.1/", StorePolicy::Refuse)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("[cluster]: "), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn debug_shows_the_state_not_the_url() {
        let c = cluster("redis://:hunter2@127.0.0.1:1/0", StorePolicy::Refuse);
        let shown = format!("{c:?}");
        assert!(shown.contains("healthy: false"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_write_failure_during_a_synchronisation_keeps_the_store_down() {
        use std::sync::atomic::Ordering::SeqCst;
        let redis = redis_server();
        let c = Arc::new(cluster(&redis.url(), StorePolicy::Refuse));
        super::resynchronise(&c).await.unwrap();
        assert!(c.synchronised());
        c.mark_unhealthy("a write failed");
        // A publish that fails while the synchronisation runs, after the outbox was flushed.
        let since = c.write_failures.load(SeqCst);
        c.write_failures.fetch_add(1, SeqCst);
        let e = super::resynchronise_since(&c, since).await.unwrap_err();
        assert!(e.contains("during the synchronisation"), "{e}");
        assert!(
            !c.synchronised(),
            "a revocation may wait unsent: not healthy"
        );
        super::resynchronise(&c).await.unwrap();
        assert!(c.synchronised());
    }

    /// The ids of the server's clients in subscribed mode.
    async fn subscribers(redis: &RedisServer) -> Vec<String> {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        list.lines()
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned)
            .collect()
    }

    async fn until(what: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if what() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn after_a_failed_write_the_subscription_starts_over() {
        let redis = redis_server();
        let c = Arc::new(cluster(&redis.url(), StorePolicy::Refuse));
        tokio::spawn(super::subscriber(Arc::downgrade(&c)));
        assert!(until(|| c.healthy()).await, "never synchronised");
        let first = subscribers(&redis).await;
        assert_eq!(first.len(), 1, "{first:?}");
        // One write refused (as by a primary that lost its replicas), then Redis is fine
        // again before the next ping: the failure alone must move the subscription.
        let admin = redis::Client::open(redis.url()).unwrap();
        let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
        let set = |n: &str| {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("min-replicas-to-write")
                .arg(n)
                .clone()
        };
        let () = set("1").query_async(&mut admin).await.unwrap();
        c.publish(&crate::revocation::Revocation::Session {
            id: [9; 16],
            until: 4_000_000_000,
        })
        .await;
        assert!(!c.healthy());
        let () = set("0").query_async(&mut admin).await.unwrap();
        assert!(until(|| c.healthy()).await, "never recovered");
        let now = subscribers(&redis).await;
        assert_eq!(now.len(), 1, "{now:?}");
        assert_ne!(now, first, "the subscription was not renewed");
        assert_eq!(
            c.outbox_len(),
            0,
            "the revocation was written at the recovery"
        );
    }
}
