//! Redis as the managed offerings run it: a Redis Cluster over TLS only (cluster bus included,
//! client certificates required) with an ACL user and the default user off; Sentinel with ACL
//! users on the sentinel and on the data nodes.

use std::path::Path;
use std::time::Duration;

use super::{PASSWORD, failover_scenario, primary_holding_the_revocation_restarts_empty};
use crate::support::app::PUBLIC;
use crate::support::idp::FakeIdp;
use crate::support::process::{Sealgate, Spawn};
use crate::support::redis_ops::{
    RedisCluster, Scratch, SentinelAcl, SentinelSet, make_certs, redis_cli,
};

/// The sentinel user's password, given as `env:SECRET` (the harness sets `SECRET` to it, in
/// process and for a child process alike).
const SENTINEL_PASSWORD: &str = "test-secret";

/// `redis-cli PING` with no user (and TLS only with `tls`): what an unauthenticated client gets.
fn anonymous_ping(port: u16, tls: &[&str]) -> String {
    redis_cli(port, tls, &["PING"], &std::env::temp_dir())
}

/// A child `sealgate serve` with `lines` and debug logs into `log`.
async fn child(idp: &FakeIdp, lines: &str, log: &Path) -> Sealgate {
    let upstream = crate::support::upstream::start().await;
    Sealgate::spawn(
        idp,
        upstream,
        Spawn {
            extra: lines,
            rust_log: "debug",
            log_file: Some(log.to_path_buf()),
        },
    )
    .await
}

/// `/readyz` of a child process: the status and the `cluster` field.
async fn child_ready(s: &Sealgate) -> (u16, String) {
    let r = s.browser().get(&format!("{PUBLIC}/readyz"), &[]).await;
    let cluster = r.json()["cluster"].as_str().unwrap_or_default().to_owned();
    (r.status.as_u16(), cluster)
}

/// The log mentions the cluster and holds none of `secrets`.
fn assert_log_clean(log: &Path, secrets: &[&str]) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("cluster"), "the cluster is logged: {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in the log");
    }
}

#[tokio::test]
#[ignore = "needs redis-server, redis-cli and openssl; run by .ci/run"]
async fn a_cluster_over_tls_with_an_acl_user_loses_nothing_when_a_primary_restarts_empty() {
    let dir = Scratch::new("redis-cluster-tls");
    make_certs(&dir.0, "ca");
    let mut cluster = RedisCluster::start_tls(&dir.0, "sealgate", PASSWORD);
    // TLS only, and the default user off: plain TCP is refused, TLS without a user too.
    let port = cluster.nodes[0].port;
    assert!(!anonymous_ping(port, &[]).contains("PONG"));
    let tls = crate::support::redis_ops::tls_cli(&dir.0, true);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    assert!(anonymous_ping(port, &tls).contains("NOAUTH"));
    let pw = dir.path("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let lines = format!(
        "toml.[cluster]\ntoml.cluster_nodes = [{}]\ntoml.tls = true\ntoml.ca_file = \"{}\"\n\
         toml.client_cert = \"{}\"\ntoml.client_key = \"{}\"\ntoml.username = \"sealgate\"\n\
         toml.password = \"file:{pw}\"",
        cluster.seeds(),
        dir.path("ca.crt"),
        dir.path("client.crt"),
        dir.path("client.key"),
    );
    // A child process through the whole scenario, for its log.
    let idp = FakeIdp::start().await;
    let log = dir.0.join("witness.log");
    let witness = child(&idp, &lines, &log).await;
    primary_holding_the_revocation_restarts_empty(&lines, &mut cluster).await;
    let started = std::time::Instant::now();
    while child_ready(&witness).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "witness ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(witness);
    assert_log_clean(&log, &[PASSWORD, "PRIVATE KEY"]);
}

fn sentinel_acl() -> SentinelAcl<'static> {
    SentinelAcl {
        user: "sealgate",
        password: PASSWORD,
        sentinel_user: "sentinel-user",
        sentinel_password: SENTINEL_PASSWORD,
    }
}

fn sentinel_lines(dir: &Scratch, set: &SentinelSet, sentinel_password: &str) -> String {
    let pw = dir.path("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    format!(
        "toml.[cluster]\ntoml.sentinels = [\"127.0.0.1:{}\"]\ntoml.sentinel_master = \"mymaster\"\n\
         toml.sentinel_username = \"sentinel-user\"\ntoml.sentinel_password = \"{sentinel_password}\"\n\
         toml.username = \"sealgate\"\ntoml.password = \"file:{pw}\"",
        set.sentinel.port
    )
}

#[tokio::test]
#[ignore = "needs redis-server and redis-cli; run by .ci/run"]
async fn sentinel_with_acl_users_on_the_sentinel_and_the_data_nodes_is_followed_across_a_failover()
{
    let dir = Scratch::new("redis-sentinel-acl");
    let mut set = SentinelSet::start_acl(&dir.0, &sentinel_acl());
    for port in [set.sentinel.port, set.primary.port, set.replica.port] {
        assert!(
            anonymous_ping(port, &[]).contains("NOAUTH"),
            "an ACL on :{port}"
        );
    }
    let lines = sentinel_lines(&dir, &set, "env:SECRET");
    failover_scenario(&mut set, &lines).await;
}

#[tokio::test]
#[ignore = "needs redis-server and redis-cli; run by .ci/run"]
async fn a_wrong_sentinel_password_is_not_ready_and_logs_no_secret() {
    let dir = Scratch::new("redis-sentinel-acl-bad");
    let set = SentinelSet::start_acl(&dir.0, &sentinel_acl());
    let wrong = dir.path("wrong-pw");
    std::fs::write(&wrong, "not-the-sentinel-password-5c1d\n").unwrap();
    let idp = FakeIdp::start().await;
    let log = dir.0.join("wrong.log");
    let s = child(
        &idp,
        &sentinel_lines(&dir, &set, &format!("file:{wrong}")),
        &log,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(child_ready(&s).await, (503, "unavailable".to_owned()));
    drop(s);
    assert_log_clean(
        &log,
        &[
            "not-the-sentinel-password-5c1d",
            SENTINEL_PASSWORD,
            PASSWORD,
        ],
    );
    // The same configuration with the right sentinel password becomes ready.
    let log = dir.0.join("right.log");
    let s = child(&idp, &sentinel_lines(&dir, &set, "env:SECRET"), &log).await;
    let started = std::time::Instant::now();
    while child_ready(&s).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "ready with the right password: {:?}",
            child_ready(&s).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(s);
    assert_log_clean(&log, &[SENTINEL_PASSWORD, PASSWORD]);
}
