//! Two sealgate instances sharing keys and a real `redis-server`: revocations reach the other
//! instance, survive its restart, one refresh for the cluster, and the store-unavailable policy.
//!
//! These need the `redis-server` binary, so they are ignored by a plain `cargo test`; `.ci/run`
//! installs Redis and runs them with `cargo test --test integration cluster:: -- --ignored`.

use std::future::Future;
use std::time::{Duration, Instant};

use sealgate::Clock;
use sealgate::Running;

use crate::support::app::{Harness, PUBLIC, try_start, try_start_edited};
use crate::support::browser::Browser;
use crate::support::idp::FakeIdp;
use crate::support::redis::Redis;

mod peers;

struct Pair {
    idp: FakeIdp,
    redis: Redis,
    clock: Clock,
    a: Running,
    b: Running,
    policy: &'static str,
}

fn cluster_lines(redis: &Redis, policy: &str) -> String {
    cluster_lines_at(&redis.url(), policy)
}

fn cluster_lines_at(url: &str, policy: &str) -> String {
    format!("toml.[cluster]\ntoml.redis_url = \"{url}\"\ntoml.on_store_unavailable = \"{policy}\"")
}

async fn instance(idp: &FakeIdp, redis: &Redis, policy: &str, clock: &Clock) -> Running {
    instance_at(idp, &redis.url(), policy, clock).await
}

/// An instance on the Redis at `url`, synchronised.
async fn instance_at(idp: &FakeIdp, url: &str, policy: &str, clock: &Clock) -> Running {
    let running = try_start(idp, &cluster_lines_at(url, policy), clock.clone())
        .await
        .expect("sealgate starts");
    assert!(
        running.cluster_synchronised(Duration::from_secs(10)).await,
        "synchronised with Redis"
    );
    running
}

impl Pair {
    /// A and B with `extra` (`toml.` lines; `UPSTREAM` is the echo upstream's address).
    async fn start_with(policy: &'static str, idp: FakeIdp, extra: &str) -> Pair {
        let redis = Redis::start();
        let clock = Clock::system();
        let lines = format!("{}\n{extra}", cluster_lines(&redis, policy));
        let mut both = Vec::new();
        for _ in 0..2 {
            let running = try_start_edited(&idp, &lines, clock.clone(), |toml| {
                let upstream = toml
                    .lines()
                    .find_map(|l| l.strip_prefix("upstream = \"http://"))
                    .and_then(|rest| rest.strip_suffix('"'))
                    .unwrap()
                    .to_owned();
                toml.replace("http://UPSTREAM", &format!("http://{upstream}"))
            })
            .await
            .expect("sealgate starts");
            assert!(running.cluster_synchronised(Duration::from_secs(10)).await);
            both.push(running);
        }
        let (b, a) = (both.pop().unwrap(), both.pop().unwrap());
        Pair {
            idp,
            redis,
            clock,
            a,
            b,
            policy,
        }
    }

    async fn start(policy: &'static str) -> Pair {
        let idp = FakeIdp::start().await;
        let redis = Redis::start();
        let clock = Clock::system();
        let a = instance(&idp, &redis, policy, &clock).await;
        let b = instance(&idp, &redis, policy, &clock).await;
        Pair {
            idp,
            redis,
            clock,
            a,
            b,
            policy,
        }
    }

    fn browser(running: &Running) -> Browser {
        let mut b = Browser::new();
        b.map_origin(PUBLIC, &format!("http://{}", running.addr));
        b
    }

    /// Logs in through A; returns the session cookies.
    async fn login(&self) -> Vec<(String, String)> {
        self.login_on(&self.a).await
    }

    /// Logs in through `running`; returns the session cookies.
    async fn login_on(&self, running: &Running) -> Vec<(String, String)> {
        Self::login_through(running).await
    }

    /// Logs in through `running` (its IdP); returns the session cookies.
    async fn login_through(running: &Running) -> Vec<(String, String)> {
        let mut b = Self::browser(running);
        let r = b
            .get(
                &Harness::url("/bff/login?returnUrl=%2F"),
                &[("sec-fetch-mode", "navigate")],
            )
            .await;
        let authorize = r.location().unwrap();
        let callback = b.get(&authorize, &[]).await.location().unwrap();
        assert_eq!(b.get(&callback, &[]).await.status, 302);
        b.export_cookies(PUBLIC)
    }

    fn on(running: &Running, cookies: &[(String, String)]) -> Browser {
        let mut b = Self::browser(running);
        b.import_cookies(PUBLIC, cookies.to_vec());
        b
    }
}

async fn user_status(running: &Running, cookies: &[(String, String)]) -> u16 {
    Pair::on(running, cookies)
        .get(&Harness::url("/bff/user"), &[("x-csrf", "1")])
        .await
        .status
        .as_u16()
}

/// Polls until `f` returns `want`, up to `within`; returns how long it took.
pub(crate) async fn eventually<F, Fut>(within: Duration, want: u16, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = u16>,
{
    let start = Instant::now();
    loop {
        let got = f().await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {got} after {within:?} (wanted {want})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn logout(running: &Running, cookies: &[(String, String)]) {
    let r = Pair::on(running, cookies)
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302, "{}", r.body);
}

/// A logout's status and the cookies it set.
async fn try_logout(running: &Running, cookies: &[(String, String)]) -> (u16, usize) {
    let r = Pair::on(running, cookies)
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    (r.status.as_u16(), r.set_cookies().len())
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn a_logout_on_one_instance_is_refused_on_the_other_within_a_second_and_after_restart() {
    let p = Pair::start("refuse").await;
    let cookies = p.login().await;
    assert_eq!(
        user_status(&p.b, &cookies).await,
        200,
        "any instance serves it"
    );
    logout(&p.a, &cookies).await;
    let took = eventually(Duration::from_secs(1), 401, || user_status(&p.b, &cookies)).await;
    eprintln!("revocation reached the other instance in {took:?}");

    // B restarts: it loads the revocation from Redis before it serves sessions.
    let Pair {
        idp,
        redis,
        clock,
        a,
        b,
        policy,
    } = p;
    b.shutdown().await;
    let b = instance(&idp, &redis, policy, &clock).await;
    assert_eq!(user_status(&b, &cookies).await, 401);
    // A fresh login still works everywhere.
    let p = Pair {
        idp,
        redis,
        clock,
        a,
        b,
        policy,
    };
    let fresh = p.login().await;
    assert_eq!(user_status(&p.b, &fresh).await, 200);
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn twenty_parallel_requests_across_instances_share_one_refresh() {
    let p = Pair::start("refuse").await;
    let cookies = p.login().await;
    p.clock.advance(290); // the 300 s access token is due for refresh
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut b = Pair::on(if i % 2 == 0 { &p.a } else { &p.b }, &cookies);
        tasks.spawn(async move {
            b.get(&Harness::url("/api/orders"), &[("x-csrf", "1")])
                .await
        });
    }
    let mut tokens = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        tokens.insert(r.json()["authorization"].as_str().unwrap().to_owned());
    }
    let refreshes = p
        .idp
        .requests_to("/token")
        .iter()
        .filter(|r| r.form_param("grant_type") == Some("refresh_token"))
        .count();
    assert_eq!(
        refreshes, 1,
        "exactly one refresh at the IdP for the cluster"
    );
    assert_eq!(tokens.len(), 1, "every request carried the same new token");
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn with_redis_down_refuse_answers_503_and_keeps_cookies_then_recovers() {
    let mut p = Pair::start("refuse").await;
    let cookies = p.login().await;
    p.redis.stop();
    let b = &p.b;
    eventually(Duration::from_secs(5), 503, || user_status(b, &cookies)).await;
    let mut browser = Pair::on(&p.b, &cookies);
    let r = browser
        .get(&Harness::url("/bff/user"), &[("x-csrf", "1")])
        .await;
    assert!(r.set_cookies().is_empty(), "an outage logs nobody out");
    let r = browser
        .get(&Harness::url("/api/x"), &[("x-csrf", "1")])
        .await;
    assert_eq!(r.status, 503);
    let ready = browser.get(&Harness::url("/readyz"), &[]).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["cluster"], "unavailable");
    assert_eq!(
        browser.get(&Harness::url("/healthz"), &[]).await.status,
        200
    );

    // A logout on A while Redis is down is not reported done (B could not know of it): 503,
    // the cookies kept for a retry. Its revocation is kept all the same, and reaches B once
    // Redis is back (even though the restarted Redis lost everything).
    let started = Instant::now();
    assert_eq!(try_logout(&p.a, &cookies).await, (503, 0));
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "it waited for the store to come back first: {:?}",
        started.elapsed()
    );
    assert_eq!(
        try_logout(&p.a, &cookies).await,
        (503, 0),
        "a retry on A, which already refuses the session, is not reported done either"
    );
    p.redis.restart();
    eventually(Duration::from_secs(10), 401, || user_status(b, &cookies)).await;
    let (status, cleared) = try_logout(&p.a, &cookies).await;
    assert_eq!(status, 302, "the retry, once the store is back, succeeds");
    assert!(cleared > 0, "and clears the cookies");
    let ready = Pair::browser(&p.b).get(&Harness::url("/readyz"), &[]).await;
    assert_eq!(ready.status, 200);
    let fresh = p.login().await;
    assert_eq!(user_status(&p.b, &fresh).await, 200);
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn with_redis_down_allow_serves_known_sessions_and_resynchronises() {
    let mut p = Pair::start("allow").await;
    let cookies = p.login().await;
    let other = p.login().await;
    p.redis.stop();
    let b = &p.b;
    let ready = || async {
        Pair::browser(b)
            .get(&Harness::url("/readyz"), &[])
            .await
            .status
            .as_u16()
    };
    eventually(Duration::from_secs(5), 503, ready).await;
    assert_eq!(user_status(&p.b, &cookies).await, 200, "policy allow");
    // Revocations made on B itself still hold on B.
    logout(&p.b, &other).await;
    assert_eq!(user_status(&p.b, &other).await, 401);
    // A logout on A cannot reach B now; once Redis is back it does.
    logout(&p.a, &cookies).await;
    p.redis.restart();
    eventually(Duration::from_secs(10), 401, || user_status(b, &cookies)).await;
    eventually(Duration::from_secs(10), 200, ready).await;
    // And what B revoked while alone reached A.
    assert_eq!(user_status(&p.a, &other).await, 401);
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn a_back_channel_logout_posted_to_one_instance_is_refused_on_the_other() {
    let p = Pair::start("refuse").await;
    p.idp.set(|b| b.sid = Some("op-session-7".into()));
    let cookies = p.login().await;
    assert_eq!(user_status(&p.b, &cookies).await, 200);
    let token = p.idp.logout_token(|_| {});
    let form = format!(
        "logout_token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let r = Pair::browser(&p.a)
        .post(
            &Harness::url("/bff/backchannel-logout"),
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let took = eventually(Duration::from_secs(1), 401, || user_status(&p.b, &cookies)).await;
    eprintln!("back-channel logout reached the other instance in {took:?}");
    assert_eq!(user_status(&p.a, &cookies).await, 401);
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn a_relogin_at_once_after_a_subject_wide_logout_works_on_either_instance() {
    let p = Pair::start("refuse").await;
    p.idp.set(|b| b.sid = None);
    let before = p.login().await;
    let count = p.b.revocation_count();
    let token = p.idp.logout_token(|c| {
        c.remove("sid");
    });
    let form = format!(
        "logout_token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let r = Pair::browser(&p.a)
        .post(
            &Harness::url("/bff/backchannel-logout"),
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Once B has applied it (Redis delivers in milliseconds), a login on A or on B at once is
    // stamped past it: it works on both instances, while the earlier session stays dead.
    let start = Instant::now();
    while p.b.revocation_count() == count {
        assert!(start.elapsed() < Duration::from_secs(2), "B never got it");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (name, on) in [("A", &p.a), ("B", &p.b)] {
        let again = p.login_on(on).await;
        assert_eq!(
            user_status(&p.a, &again).await,
            200,
            "login on {name}, call on A"
        );
        assert_eq!(
            user_status(&p.b, &again).await,
            200,
            "login on {name}, call on B"
        );
    }
    assert_eq!(user_status(&p.a, &before).await, 401);
    assert_eq!(user_status(&p.b, &before).await, 401);
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn route_grants_on_two_instances_never_replay_a_rotated_refresh_token() {
    use crate::support::idp::Rotation;
    let idp = FakeIdp::start().await;
    // Auth0-like: a replayed refresh token revokes the whole family.
    idp.set(|b| b.rotation = Rotation::RotateRevokeFamilyOnReuse);
    let p = Pair::start_with(
        "refuse",
        idp,
        "toml.[[routes]]\ntoml.prefix = \"/orders\"\ntoml.upstream = \"http://UPSTREAM\"\n\
         toml.resource = \"https://orders.example.com\"",
    )
    .await;
    let cookies = p.login().await;
    // Slow grants, so both instances' grants overlap.
    p.idp
        .set(|b| b.response_delay = Some(Duration::from_millis(200)));
    let (mut on_a, mut on_b) = (Pair::on(&p.a, &cookies), Pair::on(&p.b, &cookies));
    let orders = Harness::url("/orders/x");
    let (ra, rb) = tokio::join!(
        on_a.get(&orders, &[("x-csrf", "1")]),
        on_b.get(&orders, &[("x-csrf", "1")]),
    );
    assert_eq!(
        (ra.status.as_u16(), rb.status.as_u16()),
        (200, 200),
        "{} / {}",
        ra.body,
        rb.body
    );
    let presented: Vec<String> = p
        .idp
        .requests_to("/token")
        .iter()
        .filter_map(|r| r.form_param("refresh_token").map(str::to_owned))
        .collect();
    assert_eq!(presented.len(), 2, "one grant per instance");
    assert_ne!(
        presented[0], presented[1],
        "the second grant redeemed the rotated token"
    );

    // The session lives on: its own refresh, due now, on the other instance, works with
    // whatever token its cookie carries (B's answer re-sealed the newest).
    p.idp.set(|b| b.response_delay = None);
    p.clock.advance(290);
    let r = on_a.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = on_b.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
