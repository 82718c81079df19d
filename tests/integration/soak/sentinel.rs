//! Redis as operated with Sentinel, for the soak: a primary, a replica, three sentinels (each a
//! `redis-server` child process on a loopback port, stopped by PID on drop). The fault kills
//! the primary (SIGKILL); the sentinels promote the replica.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::free_port;
use crate::support::redis_ops;

/// The name the sentinels monitor.
pub const MASTER: &str = "soak";

fn binary() -> String {
    std::env::var("SEALGATE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn spawn(args: &[String]) -> Child {
    Command::new(binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e})", binary()))
}

/// One command in RESP, the raw answer (enough for PING, INFO and SENTINEL queries).
fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = vec![0u8; 16384];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// A primary, a replica and three sentinels.
pub struct Sentinels {
    primary: (u16, Option<Child>),
    replica: (u16, Option<Child>),
    sentinels: Vec<(u16, Child)>,
}

/// A server on `port` keeping its files (a replica's copy of the primary's data) in `dir`.
fn server_args(dir: &Path, port: u16, replica_of: Option<u16>) -> Vec<String> {
    let primary = replica_of.map(|p| p.to_string());
    let replica: Vec<&str> = match &primary {
        Some(p) => vec!["--replicaof", "127.0.0.1", p],
        None => Vec::new(),
    };
    let mut args = vec!["--dir".to_owned(), dir.display().to_string()];
    args.extend(redis_ops::server_args(&port.to_string(), &replica));
    args
}

impl Sentinels {
    /// Starts them (configuration files under `dir`) and waits until the replica is in sync
    /// and every sentinel knows the primary and the replica.
    pub fn start(dir: &Path) -> Sentinels {
        let (p, r) = (free_port(), free_port());
        let (primary_dir, replica_dir) = (dir.join("redis-primary"), dir.join("redis-replica"));
        std::fs::create_dir_all(&primary_dir).unwrap();
        std::fs::create_dir_all(&replica_dir).unwrap();
        let primary = spawn(&server_args(&primary_dir, p, None));
        wait_until("the primary answers", Duration::from_secs(10), || {
            command(p, &["PING"]).is_some_and(|a| a.starts_with("+PONG"))
        });
        let replica = spawn(&server_args(&replica_dir, r, Some(p)));
        wait_until("the replica syncs", Duration::from_secs(20), || {
            command(r, &["INFO", "replication"])
                .is_some_and(|a| a.contains("master_link_status:up"))
        });
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{n}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\n\
                     sentinel monitor {MASTER} 127.0.0.1 {p} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n"
                ),
            )
            .unwrap();
            let child = spawn(&[conf.display().to_string(), "--sentinel".into()]);
            sentinels.push((port, child));
        }
        for (port, _) in &sentinels {
            let port = *port;
            wait_until(
                "a sentinel sees the replica",
                Duration::from_secs(20),
                || {
                    command(port, &["SENTINEL", "replicas", MASTER])
                        .is_some_and(|a| a.contains(&r.to_string()))
                },
            );
        }
        Sentinels {
            primary: (p, Some(primary)),
            replica: (r, Some(replica)),
            sentinels,
        }
    }

    /// `[cluster]` lines for the harness config.
    pub fn cluster_lines(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("\"127.0.0.1:{port}\""))
            .collect();
        format!(
            "toml.[cluster]\ntoml.sentinels = [{}]\ntoml.sentinel_master = \"{MASTER}\"\n\
             toml.on_store_unavailable = \"refuse\"",
            list.join(", ")
        )
    }

    /// The port every sentinel names as the primary's, once they agree.
    fn agreed_primary(&self) -> Option<u16> {
        let mut ports = self.sentinels.iter().map(|(port, _)| {
            command(*port, &["SENTINEL", "get-master-addr-by-name", MASTER])
                .and_then(|a| a.split("\r\n").filter_map(|l| l.parse::<u16>().ok()).next())
        });
        let first = ports.next()??;
        ports.all(|p| p == Some(first)).then_some(first)
    }

    /// Kills the primary (SIGKILL) and waits until every sentinel names the replica, now
    /// promoted, as the primary.
    pub fn fail_over(&mut self) -> String {
        let (old, new) = (self.primary.0, self.replica.0);
        if let Some(mut c) = self.primary.1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let took = wait_until(
            "Sentinel promotes the replica",
            Duration::from_secs(60),
            || self.agreed_primary() == Some(new),
        );
        std::mem::swap(&mut self.primary, &mut self.replica);
        format!(
            "Sentinel failover: primary :{old} killed (SIGKILL), replica :{new} promoted after {:.1} s",
            took.as_secs_f64()
        )
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        let servers = [self.primary.1.take(), self.replica.1.take()];
        let sentinels = self.sentinels.drain(..).map(|(_, c)| Some(c));
        for mut c in servers.into_iter().chain(sentinels).flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
