//! Redis as operated, and failover that loses nothing: two sealgate instances over TLS with an
//! ACL user, through Sentinel, on a three-primary Redis Cluster, and across a Redis restarted
//! empty. In each, a logout is acknowledged before the fault; during it `on_store_unavailable`
//! (refuse) is followed and `/readyz` reports it; after it the logged-out cookie is refused on
//! both instances and on a third started afresh (so Redis itself holds the revocation again).
//!
//! They need `redis-server`, `redis-cli` and `openssl`, so they are ignored by a plain
//! `cargo test`; `.ci/run` runs them with `cargo test --test integration cluster_ops:: -- --ignored`.

use std::time::Duration;

use sealgate::{Clock, Running};

use crate::cluster::eventually;
use crate::support::app::{Harness, PUBLIC, try_start};
use crate::support::browser::Browser;
use crate::support::idp::FakeIdp;
use crate::support::process::{Sealgate, Spawn};
use crate::support::redis_ops::{
    Node, RedisCluster, Scratch, SentinelSet, acl_args, acl_cli, make_certs, server_args, tls_args,
    tls_cli, wait_for,
};

mod managed;

const PASSWORD: &str = "redis-acl-pw-7f3e";

async fn instance(idp: &FakeIdp, cluster: &str, clock: &Clock) -> Running {
    let running = try_start(idp, cluster, clock.clone())
        .await
        .expect("sealgate starts");
    assert!(
        running.cluster_synchronised(Duration::from_secs(15)).await,
        "synchronised with Redis"
    );
    running
}

fn browser(running: &Running) -> Browser {
    let mut b = Browser::new();
    b.map_origin(PUBLIC, &format!("http://{}", running.addr));
    b
}

async fn login(running: &Running) -> Vec<(String, String)> {
    let mut b = browser(running);
    let r = b
        .get(
            &Harness::url("/bff/login?returnUrl=%2F"),
            &[("sec-fetch-mode", "navigate")],
        )
        .await;
    let callback = b.get(&r.location().unwrap(), &[]).await.location().unwrap();
    assert_eq!(b.get(&callback, &[]).await.status, 302);
    b.export_cookies(PUBLIC)
}

async fn user_status(running: &Running, cookies: &[(String, String)]) -> u16 {
    let mut b = browser(running);
    b.import_cookies(PUBLIC, cookies.to_vec());
    b.get(&Harness::url("/bff/user"), &[("x-csrf", "1")])
        .await
        .status
        .as_u16()
}

async fn ready(running: &Running) -> u16 {
    browser(running)
        .get(&Harness::url("/readyz"), &[])
        .await
        .status
        .as_u16()
}

/// The scenario: A and B on `cluster`; a login and a logout acknowledged on A and seen on B;
/// `fault()`; both refuse while the store is unavailable (`/readyz` 503) when `down` says so;
/// `recover()`; then the cookie is refused on A, B and a fresh C, and another login works.
async fn scenario(cluster: &str, fault: impl FnOnce(), down: bool, recover: impl FnOnce()) {
    let idp = FakeIdp::start().await;
    let clock = Clock::system();
    let a = instance(&idp, cluster, &clock).await;
    let b = instance(&idp, cluster, &clock).await;
    let cookies = login(&a).await;
    let kept = login(&b).await;
    assert_eq!(user_status(&b, &cookies).await, 200);
    let mut out = browser(&a);
    out.import_cookies(PUBLIC, cookies.clone());
    let r = out
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302, "the logout is acknowledged");
    eventually(Duration::from_secs(2), 401, || user_status(&b, &cookies)).await;

    fault();
    if down {
        eventually(Duration::from_secs(10), 503, || ready(&b)).await;
        // on_store_unavailable = "refuse": a live session is refused, not served.
        assert_eq!(user_status(&b, &kept).await, 503);
        assert_eq!(user_status(&a, &kept).await, 503);
    }
    recover();
    for running in [&a, &b] {
        eventually(Duration::from_secs(20), 200, || ready(running)).await;
        assert_eq!(user_status(running, &cookies).await, 401, "still revoked");
        assert_eq!(user_status(running, &kept).await, 200);
    }
    let c = instance(&idp, cluster, &clock).await;
    assert_eq!(
        user_status(&c, &cookies).await,
        401,
        "a fresh instance loads the revocation from Redis"
    );
    let fresh = login(&c).await;
    assert_eq!(user_status(&a, &fresh).await, 200);
}

/// [`scenario`] on a Redis Cluster whose primary holding the revocation is stopped and
/// restarted empty; afterwards the revocation is back in that primary (written back).
async fn primary_holding_the_revocation_restarts_empty(lines: &str, cluster: &mut RedisCluster) {
    let nodes = std::cell::RefCell::new(&mut *cluster);
    let victim = std::cell::Cell::new(usize::MAX);
    scenario(
        lines,
        || {
            let mut c = nodes.borrow_mut();
            let i = c
                .nodes
                .iter()
                .position(|n| n.revocation_keys() > 0)
                .expect("a node holds the revocation");
            victim.set(i);
            c.nodes[i].stop();
        },
        true,
        || {
            let mut c = nodes.borrow_mut();
            c.nodes[victim.get()].restart();
            c.wait_ok();
        },
    )
    .await;
    assert!(
        cluster.nodes[victim.get()].revocation_keys() >= 1,
        "written back into the primary that lost it"
    );
}

fn tls_lines(dir: &Scratch, port: u16, password_file: &str) -> String {
    format!(
        "toml.[cluster]\ntoml.redis_url = \"rediss://127.0.0.1:{port}/0\"\n\
         toml.ca_file = \"{}\"\ntoml.client_cert = \"{}\"\ntoml.client_key = \"{}\"\n\
         toml.username = \"sealgate\"\ntoml.password = \"file:{password_file}\"",
        dir.path("ca.crt"),
        dir.path("client.crt"),
        dir.path("client.key"),
    )
}

fn tls_server(dir: &Scratch) -> Node {
    make_certs(&dir.0, "ca");
    let mut extra = tls_args(&dir.0, true);
    extra.extend(acl_args("sealgate", PASSWORD));
    let args = server_args("0", &extra.iter().map(String::as_str).collect::<Vec<_>>());
    let mut cli = tls_cli(&dir.0, true);
    cli.extend(acl_cli("sealgate", PASSWORD));
    Node::start(&dir.0, crate::support::redis_ops::free_port(), &args, &cli)
}

#[tokio::test]
#[ignore = "needs redis-server, redis-cli and openssl; run by .ci/run"]
async fn tls_with_an_acl_user_keeps_a_revocation_across_a_restart_that_lost_the_data() {
    let dir = Scratch::new("redis-tls");
    let mut redis = tls_server(&dir);
    let pw = dir.path("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let lines = tls_lines(&dir, redis.port, &pw);
    let node = std::cell::RefCell::new(&mut redis);
    scenario(
        &lines,
        || node.borrow_mut().stop(),
        true,
        || node.borrow_mut().restart(),
    )
    .await;
    assert!(
        redis.revocation_keys() >= 1,
        "written back into the empty Redis"
    );
}

#[tokio::test]
#[ignore = "needs redis-server, redis-cli and openssl; run by .ci/run"]
async fn a_wrong_password_or_an_untrusted_ca_is_not_ready_and_logs_no_secret() {
    let dir = Scratch::new("redis-tls-bad");
    let redis = tls_server(&dir);
    let wrong = dir.path("wrong-pw");
    std::fs::write(&wrong, "not-the-password-91b2\n").unwrap();
    let right = dir.path("pw");
    std::fs::write(&right, PASSWORD).unwrap();
    // A CA that did not sign the server's certificate.
    let other = Scratch::new("redis-tls-other");
    make_certs(&other.0, "other");
    let untrusted =
        tls_lines(&dir, redis.port, &right).replace(&dir.path("ca.crt"), &other.path("other.crt"));
    let idp = FakeIdp::start().await;
    let upstream = crate::support::upstream::start().await;
    for (case, lines) in [
        ("wrong password", tls_lines(&dir, redis.port, &wrong)),
        ("untrusted CA", untrusted),
    ] {
        let log = dir.0.join("sealgate.log");
        let sealgate = Sealgate::spawn(
            &idp,
            upstream,
            Spawn {
                extra: &lines,
                rust_log: "debug",
                log_file: Some(log.clone()),
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = sealgate
            .browser()
            .get(&format!("{PUBLIC}/readyz"), &[])
            .await;
        assert_eq!(r.status, 503, "{case}: {}", r.body);
        assert_eq!(r.json()["cluster"], "unavailable", "{case}");
        drop(sealgate);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("cluster"),
            "{case}: the failure is logged: {text}"
        );
        for secret in ["not-the-password-91b2", PASSWORD, "PRIVATE KEY"] {
            assert!(!text.contains(secret), "{case}: {secret} in the log");
        }
    }
    assert!(redis.cli(&["PING"]).contains("PONG"));
}

/// A Sentinel failover (TLS everywhere with `tls`): the replica is promoted after the primary
/// is killed.
async fn sentinel_failover(tls: bool) {
    let dir = Scratch::new("redis-sentinel");
    if tls {
        make_certs(&dir.0, "ca");
    }
    let mut set = SentinelSet::start_with(&dir.0, tls);
    let mut lines = format!(
        "toml.[cluster]\ntoml.sentinels = [\"127.0.0.1:{}\"]\ntoml.sentinel_master = \"mymaster\"",
        set.sentinel.port
    );
    if tls {
        lines.push_str(&format!(
            "\ntoml.tls = true\ntoml.ca_file = \"{}\"",
            dir.path("ca.crt")
        ));
    }
    failover_scenario(&mut set, &lines).await;
}

/// The scenario on `set` with `lines`, the fault killing the primary; the promoted replica
/// holds the revocation afterwards.
async fn failover_scenario(set: &mut SentinelSet, lines: &str) {
    let replica_port = set.replica.port;
    let sentinel = &set.sentinel;
    let primary = std::cell::RefCell::new(&mut set.primary);
    scenario(
        lines,
        || primary.borrow_mut().stop(),
        true,
        || {
            wait_for(Duration::from_secs(15), "the replica promoted", || {
                sentinel
                    .cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
                    .contains(&replica_port.to_string())
            });
        },
    )
    .await;
    assert!(
        set.replica.revocation_keys() >= 1,
        "the new primary holds it"
    );
}

#[tokio::test]
#[ignore = "needs redis-server and redis-cli; run by .ci/run"]
async fn sentinel_promotes_the_replica_and_every_instance_follows_without_losing_a_revocation() {
    sentinel_failover(false).await;
}

#[tokio::test]
#[ignore = "needs redis-server, redis-cli and openssl; run by .ci/run"]
async fn sentinel_over_tls_is_followed_across_a_failover_too() {
    sentinel_failover(true).await;
}

#[tokio::test]
#[ignore = "needs redis-server and redis-cli; run by .ci/run"]
async fn a_three_primary_cluster_loses_nothing_when_the_primary_holding_a_revocation_restarts_empty()
 {
    let dir = Scratch::new("redis-cluster");
    let mut cluster = RedisCluster::start(&dir.0);
    let lines = format!("toml.[cluster]\ntoml.cluster_nodes = [{}]", cluster.seeds());
    primary_holding_the_revocation_restarts_empty(&lines, &mut cluster).await;
}
