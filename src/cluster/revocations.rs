//! Revocations shared through Redis.
//!
//! Each one is written as its own key, `<prefix>:rev:<identity>:<not-before>`, holding
//! [`Revocation::encode`] and expiring when the entry does (`SET … EXAT until`), and published
//! on `<prefix>:revocations`. Keys are never overwritten with other contents, so two instances
//! revoking the same subject at different times cannot narrow each other's entry. Every
//! instance loads all keys at start (from every primary of a Redis Cluster), applies what the
//! subscription delivers, and synchronises again after every reconnect.
//!
//! Nothing acknowledged is lost to a fault of Redis:
//!
//! - A revocation is recorded locally first (memory, and the journal when configured). Its
//!   write then waits (`WAIT`) until the replicas confirm it: `min_replicas`, or as many as the
//!   primary had connected at the last synchronisation. A write Redis refuses, or that too few
//!   replicas confirm, waits in an outbox, is flushed at the next synchronisation, and marks
//!   the store unavailable until then.
//! - Every synchronisation (after every reconnect, failover or failed write) re-asserts every
//!   revocation this instance holds: `SET … NX`, and those Redis had lost (restarted empty,
//!   failed over to a replica that had not received them) are published again. So a
//!   revocation lives as long as one instance holding it does, whatever Redis lost.

use redis::aio::ConnectionLike;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, Value};
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::{Cluster, Conn, hex};
use crate::revocation::Revocation;

/// Revocations re-asserted per pipeline.
const WRITE_BACK_BATCH: usize = 500;
/// Keys asked for per `SCAN` step when loading all.
const SCAN_COUNT: usize = 1000;
/// How long a write waits for its replicas (milliseconds; below the command timeout).
const WAIT_MILLIS: u64 = 500;
/// The longest one revocation's write may take, connecting included.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Cluster {
    /// The channel every revocation is published on.
    pub(super) fn channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    /// Writes and publishes a revocation already recorded locally; whether Redis took it. Never
    /// loses it: if Redis cannot take it now (or its replicas do not confirm it), it waits in
    /// the outbox for the next synchronisation, which the subscriber starts as soon as it can.
    pub(super) async fn publish(&self, r: &Revocation) -> bool {
        let span = crate::telemetry::spans::redis_span("SET+PUBLISH", "revocation");
        // Bounded as a whole (a connection attempt waits its turn behind others): a logout
        // never hangs on Redis. A write that went through after all is written again (the
        // same key and value), which changes nothing.
        let written = tokio::time::timeout(WRITE_TIMEOUT, self.write(r))
            .instrument(span)
            .await;
        let written = written.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "revocation write timed out",
            )))
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "revocation kept for Redis: not confirmed now");
            self.keep([r.clone()]);
            self.write_failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.forget_connection().await;
            self.mark_unhealthy("write failed");
            return false;
        }
        true
    }

    /// Counts the replicas to wait for, flushes the outbox, re-asserts what this instance
    /// knows, then loads every revocation key into the denylist. Returns how many keys were
    /// loaded.
    pub(super) async fn synchronise(&self) -> redis::RedisResult<usize> {
        let mut conn = self.connection().await?;
        self.count_replicas(&mut conn).await?;
        self.flush_outbox().await?;
        self.reassert(&mut conn).await?;
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

    /// Stores one revocation's key and publishes it, in one round trip, then waits until the
    /// replicas have it.
    async fn write(&self, r: &Revocation) -> redis::RedisResult<()> {
        let mut conn = self.writer().await?;
        let value = r.encode();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.channel()).arg(&value);
        let set = self.set_key(r, &value, false);
        if matches!(conn, Conn::Cluster(_)) {
            // Stored before it is published (in a cluster they go to different nodes): an
            // instance that misses the message while it reconnects then finds the key.
            run_all(&mut conn, vec![set]).await?;
            run_all(&mut conn, vec![publish]).await?;
        } else {
            run_all(&mut conn, vec![set, publish]).await?;
        }
        self.wait_for_replicas(&mut conn).await
    }

    /// `WAIT` for the replicas every write must reach; an error when fewer confirm in time.
    pub(super) async fn wait_for_replicas(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let want = self
            .wait_replicas
            .load(std::sync::atomic::Ordering::Acquire);
        if want == 0 {
            return Ok(());
        }
        // Through a cluster connection, WAIT goes to every primary and answers the fewest.
        let got: u32 = redis::cmd("WAIT")
            .arg(want)
            .arg(WAIT_MILLIS)
            .query_async(conn)
            .await?;
        if got < want {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "too few replicas confirmed the write",
                format!("{got} of {want}"),
            )));
        }
        Ok(())
    }

    /// Sets how many replicas writes wait for: `min_replicas` (an error when the primary has
    /// fewer online), or as many as every primary has online now.
    async fn count_replicas(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let info: Value = redis::cmd("INFO")
            .arg("replication")
            .query_async(conn)
            .await?;
        let online = online_replicas(&info);
        let want = match self.min_replicas {
            Some(min) if online < min => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "fewer replicas online than cluster.min_replicas",
                    format!("{online} of {min}"),
                )));
            }
            Some(min) => min,
            None => online,
        };
        self.wait_replicas
            .store(want, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// `SET <key> <value> [NX] EXAT <until>`.
    fn set_key(&self, r: &Revocation, value: &[u8], nx: bool) -> redis::Cmd {
        // EXAT needs a positive time; an entry already past its end expires at once.
        let until = u64::try_from(r.until()).unwrap_or(1).max(1);
        let mut set = redis::cmd("SET");
        set.arg(revocation_key(&self.prefix, r)).arg(value);
        if nx {
            set.arg("NX");
        }
        set.arg("EXAT").arg(until);
        set
    }

    /// Puts revocations Redis could not take (back) at the end of the outbox.
    /// Revocations waiting in the outbox.
    pub(super) fn outbox_len(&self) -> usize {
        self.outbox.lock().map_or(0, |o| o.len())
    }

    /// Whether `r` waits in the outbox.
    pub(super) fn outbox_holds(&self, r: &Revocation) -> bool {
        self.outbox.lock().map_or(true, |o| o.contains(r))
    }

    fn keep(&self, unsent: impl IntoIterator<Item = Revocation>) {
        if let Ok(mut outbox) = self.outbox.lock() {
            outbox.extend(unsent);
        }
    }

    /// Writes what waited in the outbox, in order. Each leaves the outbox only once written,
    /// so a failure, or a synchronisation cut short by its timeout, leaves the rest waiting.
    async fn flush_outbox(&self) -> redis::RedisResult<()> {
        loop {
            let next = self.outbox.lock().ok().and_then(|o| o.front().cloned());
            let Some(r) = next else { return Ok(()) };
            self.write(&r).await?;
            if let Ok(mut outbox) = self.outbox.lock()
                && outbox.front() == Some(&r)
            {
                outbox.pop_front();
            }
        }
    }

    /// Writes back every revocation this instance holds that Redis no longer has (`SET NX`),
    /// and publishes those, so instances already synchronised get them too.
    async fn reassert(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let known = self.denylist.snapshot();
        let mut restored = 0usize;
        for batch in known.chunks(WRITE_BACK_BATCH) {
            let values: Vec<Vec<u8>> = batch.iter().map(Revocation::encode).collect();
            let sets = batch
                .iter()
                .zip(&values)
                .map(|(r, value)| self.set_key(r, value, true))
                .collect();
            let set = run_all(&mut *conn, sets).await?;
            // `SET … NX` answers nil where the key was there: those Redis did not lose.
            let lost: Vec<redis::Cmd> = values
                .iter()
                .zip(&set)
                .filter(|(_, reply)| !matches!(reply, Value::Nil))
                .map(|(value, _)| {
                    let mut publish = redis::cmd("PUBLISH");
                    publish.arg(self.channel()).arg(value);
                    publish
                })
                .collect();
            restored += lost.len();
            run_all(&mut *conn, lost).await?;
        }
        if restored > 0 {
            self.wait_for_replicas(conn).await?;
            tracing::warn!(
                entries = restored,
                "Redis had lost revocations; this instance wrote them back"
            );
        }
        Ok(())
    }

    /// Loads every revocation key (of every primary, in a cluster) into the denylist; returns
    /// how many were loaded.
    async fn load_all(&self, conn: &mut Conn) -> redis::RedisResult<usize> {
        let mut loaded = 0;
        for node in primaries(conn).await? {
            loaded += self.load_from(conn, node.as_ref()).await?;
        }
        Ok(loaded)
    }

    /// Loads the revocation keys of one node (`None`: the one server).
    async fn load_from(
        &self,
        conn: &mut Conn,
        node: Option<&(String, u16)>,
    ) -> redis::RedisResult<usize> {
        let pattern = format!("{}:rev:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut loaded = 0;
        let now = self.clock.now();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let reply = match (&mut *conn, node) {
                (Conn::Cluster(c), Some((host, port))) => {
                    let at = SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    };
                    c.route_command(scan, RoutingInfo::SingleNode(at)).await?
                }
                _ => conn.req_packed_command(&scan).await?,
            };
            let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)?;
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

    /// In a cluster, asks every primary serving slots whether the cluster is whole (a lost
    /// primary makes the store unavailable); elsewhere the subscription's ping is enough.
    pub(super) async fn ping_primaries(&self) -> Result<(), String> {
        if !self.target.is_cluster() {
            return Ok(());
        }
        let mut conn = self.connection().await.map_err(|e| e.to_string())?;
        let checked = check_primaries(&mut conn).await;
        if checked.is_err() {
            self.forget_connection().await;
        }
        checked
    }
}

/// `CLUSTER INFO` of every primary: each must answer `cluster_state:ok`.
async fn check_primaries(conn: &mut Conn) -> Result<(), String> {
    let nodes = primaries(conn).await.map_err(|e| e.to_string())?;
    let Conn::Cluster(c) = conn else {
        return Ok(());
    };
    for (host, port) in nodes.into_iter().flatten() {
        let at = SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port,
        };
        let mut info = redis::cmd("CLUSTER");
        info.arg("INFO");
        let reply = c
            .route_command(info, RoutingInfo::SingleNode(at))
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        let mut texts = Vec::new();
        collect_texts(&reply, &mut texts);
        if !texts.iter().any(|t| t.contains("cluster_state:ok")) {
            return Err(format!("{host}:{port}: the cluster is not ok"));
        }
    }
    Ok(())
}

/// Runs `cmds` in one round trip: a pipeline to one server; in a cluster (where a pipeline
/// must stay in one slot) concurrent commands on the multiplexed cluster connection.
async fn run_all(conn: &mut Conn, cmds: Vec<redis::Cmd>) -> redis::RedisResult<Vec<Value>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        Conn::Single(_) => {
            let mut pipe = redis::pipe();
            for cmd in cmds {
                pipe.add_command(cmd);
            }
            pipe.query_async(conn).await
        }
        Conn::Cluster(c) => {
            futures_util::future::try_join_all(cmds.iter().map(|cmd| {
                let mut c = c.clone();
                async move { cmd.query_async::<Value>(&mut c).await }
            }))
            .await
        }
    }
}

/// The nodes holding keys: `[None]` for one server; every primary of a cluster that serves
/// slots, from `CLUSTER NODES`.
async fn primaries(conn: &mut Conn) -> redis::RedisResult<Vec<Option<(String, u16)>>> {
    let Conn::Cluster(c) = conn else {
        return Ok(vec![None]);
    };
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(c).await?;
    let found: Vec<Option<(String, u16)>> =
        cluster_primaries(&nodes).into_iter().map(Some).collect();
    if found.is_empty() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "CLUSTER NODES lists no primary serving slots",
        )));
    }
    Ok(found)
}

/// The `host:port` of each primary serving slots in a `CLUSTER NODES` reply (failed ones too:
/// loading must then fail rather than skip their keys).
fn cluster_primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags) = (fields.get(1)?, fields.get(2)?);
            if !flags.split(',').any(|f| f == "master") || fields.len() < 9 {
                return None;
            }
            let addr = addr.split(['@', ',']).next()?;
            crate::config::host_port(addr)
        })
        .collect()
}

/// The fewest replicas online at any primary in an `INFO replication` reply (one text, or a
/// map of texts from every primary of a cluster).
fn online_replicas(info: &Value) -> u32 {
    let mut texts = Vec::new();
    collect_texts(info, &mut texts);
    texts
        .iter()
        .map(|t| {
            let online = t
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            u32::try_from(online).unwrap_or(u32::MAX)
        })
        .min()
        .unwrap_or(0)
}

fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => {
            items.iter().for_each(|i| collect_texts(i, out));
        }
        Value::Map(pairs) => pairs.iter().for_each(|(_, v)| collect_texts(v, out)),
        _ => {}
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
    use redis::Value;

    use super::{cluster_primaries, online_replicas, revocation_key};
    use crate::cluster::tests::{cluster, cluster_requiring, redis_server};
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

    #[test]
    fn replicas_online_are_counted_per_primary_and_the_fewest_taken() {
        let one = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                   slave0:ip=127.0.0.1,port=1,state=online,offset=9,lag=0\r\n\
                   slave1:ip=127.0.0.1,port=2,state=wait_bgsave,offset=0,lag=0\r\n";
        let none = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";
        assert_eq!(online_replicas(&Value::BulkString(one.into())), 1);
        let both = Value::Map(vec![
            (
                Value::SimpleString("a".into()),
                Value::BulkString(one.into()),
            ),
            (
                Value::SimpleString("b".into()),
                Value::BulkString(none.into()),
            ),
        ]);
        assert_eq!(online_replicas(&both), 0);
    }

    #[test]
    fn cluster_nodes_gives_the_primaries_serving_slots() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,redis-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 master - 0 0 0 connected
";
        let got = cluster_primaries(nodes);
        let want: Vec<(String, u16)> = [7001, 7002, 7003]
            .into_iter()
            .map(|p| ("127.0.0.1".to_owned(), p))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_revocation_redis_cannot_take_waits_in_the_outbox_in_order() {
        let c = cluster(UNREACHABLE, StorePolicy::Refuse);
        crate::cluster::tests::mark_ready(&c);
        c.publish(&sid("s-1", 100)).await;
        assert!(!c.healthy(), "a failed write marks the store unavailable");
        c.publish(&sid("s-2", 100)).await;
        assert!(c.synchronise().await.is_err());
        let outbox = c.outbox.lock().unwrap().clone();
        assert_eq!(outbox, vec![sid("s-1", 100), sid("s-2", 100)]);
    }

    #[tokio::test]
    async fn a_flush_cut_short_keeps_what_it_had_not_written() {
        // A server that accepts connections and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}/0", silent.local_addr().unwrap());
        let c = cluster(&url, StorePolicy::Refuse);
        c.keep([sid("s-1", 100), sid("s-2", 100)]);
        let cut =
            tokio::time::timeout(std::time::Duration::from_millis(200), c.flush_outbox()).await;
        assert!(cut.is_err(), "the silent server never answers");
        let outbox = c.outbox.lock().unwrap().clone();
        assert_eq!(outbox, vec![sid("s-1", 100), sid("s-2", 100)]);
    }

    #[tokio::test]
    async fn writes_to_a_silent_redis_each_give_up_within_the_write_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}/0", silent.local_addr().unwrap());
        let c = std::sync::Arc::new(cluster(&url, StorePolicy::Refuse));
        let started = std::time::Instant::now();
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..12 {
            let c = std::sync::Arc::clone(&c);
            writes.spawn(async move { c.publish(&sid(&format!("s-{i}"), 100)).await });
        }
        while let Some(written) = writes.join_next().await {
            assert!(!written.unwrap(), "nothing was written");
        }
        // Each connection attempt takes its turn and about a second: twelve in a row would
        // take twelve; each write gives up after its five.
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(8), "{took:?}");
        assert_eq!(c.outbox_len(), 12, "every one kept");
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_write_waiting_for_its_replicas_does_not_hold_up_other_commands() {
        let redis = redis_server(); // no replica: WAIT 1 waits its whole 500 ms
        let c = std::sync::Arc::new(cluster(&redis.url(), StorePolicy::Refuse));
        c.synchronise().await.unwrap();
        c.wait_replicas
            .store(1, std::sync::atomic::Ordering::Release);
        let writer = std::sync::Arc::clone(&c);
        let write = tokio::spawn(async move { writer.publish(&sid("s-1", 100)).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        c.live_instances().await.unwrap(); // a command on the shared connection
        let took = started.elapsed();
        assert!(!write.await.unwrap(), "too few replicas: not confirmed");
        assert!(
            took < std::time::Duration::from_millis(250),
            "a command on the shared connection waited behind WAIT: {took:?}"
        );
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn what_redis_lost_is_written_back_at_the_next_synchronisation() {
        let redis = redis_server();
        let a = cluster(&redis.url(), StorePolicy::Refuse);
        let b = cluster(&redis.url(), StorePolicy::Refuse);
        // A holds a revocation Redis does not have (restarted empty, or failed over to a
        // replica that had not received it).
        a.denylist.apply(sid("s-1", 100), 1_000).unwrap();
        assert_eq!(b.synchronise().await.unwrap(), 0);
        a.synchronise().await.unwrap();
        assert_eq!(
            b.synchronise().await.unwrap(),
            1,
            "written back, B loads it"
        );
        assert_eq!(b.denylist.snapshot(), vec![sid("s-1", 100)]);
        // Re-asserting what Redis has changes nothing.
        b.synchronise().await.unwrap();
        assert_eq!(a.synchronise().await.unwrap(), 1);
    }

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_write_too_few_replicas_confirm_waits_in_the_outbox_and_marks_the_store_down() {
        let redis = redis_server(); // no replica at all
        let c = cluster_requiring(&redis.url(), 1);
        let e = c.synchronise().await.unwrap_err().to_string();
        assert!(e.contains("min_replicas"), "{e}");
        crate::cluster::tests::mark_ready(&c);
        c.publish(&sid("s-1", 100)).await;
        assert!(!c.healthy(), "not confirmed: the store is unavailable");
        assert_eq!(c.outbox.lock().unwrap().clone(), vec![sid("s-1", 100)]);
    }
}
