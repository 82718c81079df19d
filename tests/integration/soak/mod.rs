//! The three-instance soak (issue 16): three `sealgate serve` processes (the real binary)
//! behind nginx (round robin, no stickiness), sharing Redis, driven by many simulated users
//! (see [`user`]) against the in-process fake IdP and echo upstream, while one instance is
//! killed (SIGKILL) and restarted and Redis fails. [`oracle`] says what counts as a
//! violation; the test prints its report and fails when there was one.
//!
//! Needs `nginx` and `redis-server`; `tests/soak/run.sh` installs them, builds, and runs
//!
//! ```sh
//! SOAK_SECONDS=45 cargo test --test integration soak:: -- --ignored --nocapture
//! ```
//!
//! `SOAK_SECONDS` (default 45), `SOAK_USERS` (default 100), `SOAK_REDIS` (`sentinel`, the
//! default, or `single`), `SEALGATE_BIN` (a release build instead of the debug binary cargo
//! built).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;

use crate::support::idp::FakeIdp;
use crate::support::redis::Redis;

mod client;
mod oracle;
mod procs;
mod sentinel;
mod user;

use client::Http;
use oracle::{Fault, Oracle};
use procs::{Instance, Nginx};
use user::World;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits until `/readyz` of `addr` answers 200 (synchronised with Redis).
async fn ready(http: &Http, addr: std::net::SocketAddr, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let r = http.send(addr, Method::GET, "/readyz", &[], None, "").await;
        if r.is_ok_and(|r| r.status == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The Redis the instances share and the fault it suffers: `SOAK_REDIS=sentinel` (default) a
/// primary, a replica and three sentinels, the fault a failover; `SOAK_REDIS=single` one
/// redis-server, the fault a restart without persistence.
enum Store {
    Single(Redis),
    Sentinel(sentinel::Sentinels),
}

impl Store {
    fn start(dir: &std::path::Path) -> Store {
        match std::env::var("SOAK_REDIS").as_deref() {
            Ok("sentinel") | Err(_) => Store::Sentinel(sentinel::Sentinels::start(dir)),
            Ok("single") => Store::Single(Redis::start()),
            Ok(other) => panic!("SOAK_REDIS={other}: single or sentinel"),
        }
    }

    /// For the report.
    fn name(&self) -> &'static str {
        match self {
            Store::Single(_) => "one redis-server",
            Store::Sentinel(_) => "Redis with Sentinel (a primary, a replica, three sentinels)",
        }
    }

    /// `[cluster]` lines for the harness config.
    fn cluster_lines(&self) -> String {
        match self {
            Store::Single(redis) => format!(
                "toml.[cluster]\ntoml.redis_url = \"{}\"\ntoml.on_store_unavailable = \"refuse\"",
                redis.url()
            ),
            Store::Sentinel(s) => s.cluster_lines(),
        }
    }

    /// The fault; describes it.
    fn fault(&mut self) -> String {
        tokio::task::block_in_place(|| match self {
            Store::Single(redis) => {
                redis.stop();
                std::thread::sleep(Duration::from_secs(1));
                redis.restart();
                "redis-server killed (SIGKILL), restarted empty 1 s later".into()
            }
            Store::Sentinel(s) => s.fail_over(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs nginx and redis-server; run by tests/soak/run.sh"]
async fn three_instances_behind_a_balancer() {
    let seconds = env_u64("SOAK_SECONDS", 45);
    let users = env_u64("SOAK_USERS", 100);
    let dir = tempfile::tempdir().unwrap();
    let http = Http::new();

    let idp = FakeIdp::start().await;
    // Access tokens for 10 s, refreshed 5 s before they expire: an active user refreshes
    // every ~5 s, each refresh rotating the refresh token.
    idp.set(|b| {
        b.subject_from_login_hint = true;
        b.access_token_lifetime = 10;
    });
    let upstream = crate::support::upstream::start().await;
    let mut store = tokio::task::block_in_place(|| Store::start(dir.path()));
    let extra = format!("session.refresh_before = \"5s\"\n{}", store.cluster_lines());
    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        let i = Instance::start(name, dir.path(), &idp.issuer(), upstream, &extra).await;
        assert!(
            ready(&http, i.addr, Duration::from_secs(30)).await,
            "instance {name} never ready:\n{}",
            i.log_tail(20)
        );
        instances.push(i);
    }
    let addrs: Vec<_> = instances.iter().map(|i| i.addr).collect();
    let nginx = Nginx::start(dir.path(), &addrs).await;

    let started = Instant::now();
    let world = Arc::new(World {
        http: http.clone(),
        nginx: nginx.addr,
        instances: addrs,
        idp: idp.clone(),
        oracle: Oracle::new(),
        deadline: started + Duration::from_secs(seconds),
        logged_out: Mutex::new(Vec::new()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..users {
        tasks.spawn(user::run(Arc::clone(&world), id));
    }

    // The faults: instance b killed at 30 % of the run, Redis at 60 %. Meanwhile RSS is
    // sampled every 250 ms, and an instance that exits by itself is a violation.
    let kill_at = started + Duration::from_secs(seconds * 3 / 10);
    let redis_at = started + Duration::from_secs(seconds * 6 / 10);
    let (mut killed, mut redis_failed) = (false, false);
    while Instant::now() < world.deadline {
        for i in &mut instances {
            i.sample_rss();
            if !i.alive() {
                world.oracle.violation(
                    "instance exited",
                    format!("instance {} exited:\n{}", i.name, i.log_tail(20)),
                );
                i.restart().await;
            }
        }
        if !killed && Instant::now() >= kill_at {
            killed = true;
            let b = &mut instances[1];
            let w = world.oracle.begin_fault(
                Fault::Kill,
                "instance b killed (SIGKILL), restarted 2 s later".into(),
            );
            b.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            b.restart().await;
            assert!(
                ready(&http, b.addr, Duration::from_secs(30)).await,
                "b not ready"
            );
            world.oracle.end_fault(w);
        }
        if !redis_failed && Instant::now() >= redis_at {
            redis_failed = true;
            let w = world.oracle.begin_fault(Fault::Redis, String::new());
            let what = store.fault();
            for i in &instances {
                assert!(
                    ready(&http, i.addr, Duration::from_secs(30)).await,
                    "not ready"
                );
            }
            world.oracle.end_fault(w);
            world.oracle.describe_fault(w, what);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let finishing = tokio::time::timeout(Duration::from_secs(120), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    assert!(finishing.is_ok(), "users did not finish");
    tokio::time::sleep(Duration::from_secs(4)).await; // the delayed replays

    // Every cookie logged out during the Redis fault, and a sample of the others, once more.
    let logged_out = world.logged_out.lock().unwrap().clone();
    let step = (logged_out.len() / 300).max(1);
    for (n, (jar, acked)) in logged_out.iter().enumerate() {
        if n % step == 0 || world.oracle.during(Fault::Redis, *acked, *acked) {
            world.check_replay(jar, *acked, "after the run").await;
        }
    }

    let refresh = world.oracle.check_refreshes(&idp);
    let rss: Vec<(String, u64)> = instances
        .iter_mut()
        .map(|i| {
            i.sample_rss();
            (format!("{} ({} starts)", i.name, i.starts), i.max_rss_kb)
        })
        .collect();
    let header = format!(
        "3 instances ({}), nginx round robin, {}; {users} users for {seconds} s",
        std::env::var("SEALGATE_BIN").unwrap_or_else(|_| "debug build".into()),
        store.name()
    );
    let report = world.oracle.report(&header, refresh, &rss);
    println!("{report}");
    drop(nginx);
    let violations = world.oracle.violations();
    if violations > 0 {
        // The instances' logs (warnings and errors) stay for a look.
        for i in &instances {
            println!(
                "--- last lines of instance {}'s log ---\n{}",
                i.name,
                i.log_tail(15)
            );
        }
        println!("logs and configuration kept in {}", dir.keep().display());
    }
    assert_eq!(violations, 0, "the oracle found violations");
}
