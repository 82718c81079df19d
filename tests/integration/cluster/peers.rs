//! Peer-confirmed revocations: a logout is answered only once no instance can serve the
//! session. Instance B reaches Redis through a relay that can slow or stall its path.

use std::time::{Duration, Instant};

use sealgate::{Clock, Running};

use super::{Pair, try_logout, user_status};
use crate::support::app::Harness;
use crate::support::browser::Browser;
use crate::support::idp::FakeIdp;
use crate::support::lag::Lag;
use crate::support::redis::Redis;

struct Slow {
    // Field order is drop order: the instances stop before the relay and Redis.
    a: Running,
    b: Running,
    lag: Lag,
    _redis: Redis,
    idp: FakeIdp,
}

async fn instance(idp: &FakeIdp, url: &str) -> Running {
    super::instance_at(idp, url, "refuse", &Clock::system()).await
}

impl Slow {
    /// A straight to Redis, B through the relay.
    async fn start() -> Slow {
        let idp = FakeIdp::start().await;
        let redis = Redis::start();
        let lag = Lag::start(([127, 0, 0, 1], redis.port).into()).await;
        let a = instance(&idp, &redis.url()).await;
        let b = instance(&idp, &format!("redis://{}/0", lag.addr())).await;
        Slow {
            a,
            b,
            lag,
            _redis: redis,
            idp,
        }
    }

    async fn login(&self) -> Vec<(String, String)> {
        let pair_login = Pair::login_through(&self.a).await;
        assert_eq!(user_status(&self.b, &pair_login).await, 200, "B serves it");
        pair_login
    }
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn a_logout_is_answered_only_once_a_slow_instance_applied_it() {
    let s = Slow::start().await;
    // B hears from Redis 400 ms late: still within its ping timeout and lease, so it serves.
    s.lag.set_delay(Duration::from_millis(400));
    // A registry of instances younger than a registration's life (10 s) is not trusted to
    // list them all: until then every logout waits for the lease.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    for round in 0..3 {
        let cookies = s.login().await;
        let started = Instant::now();
        let (status, _) = try_logout(&s.a, &cookies).await;
        let took = started.elapsed();
        assert_eq!(status, 302);
        // At once, no polling: B must already refuse it.
        assert_eq!(
            user_status(&s.b, &cookies).await,
            401,
            "round {round}: B served a cookie whose logout was acknowledged {took:?} before"
        );
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_secs(3),
            "round {round}: the logout waited for B's acknowledgement (~400 ms), not for the \
             lease: {took:?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn a_logout_while_an_instance_is_stalled_waits_for_its_lease_and_it_serves_nothing() {
    let s = Slow::start().await;
    let cookies = s.login().await;
    let other = s.login().await;
    s.lag.freeze(true);
    let started = Instant::now();
    let (status, _) = try_logout(&s.a, &cookies).await;
    let took = started.elapsed();
    assert_eq!(status, 302, "A's own store is fine: the logout is done");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(7),
        "it waited for B's acknowledgement until B's lease ran out (5 s): {took:?}"
    );
    // B heard nothing: it refuses every session now, the logged-out one included.
    assert_eq!(user_status(&s.b, &cookies).await, 503);
    assert_eq!(user_status(&s.b, &other).await, 503);
    assert_eq!(user_status(&s.a, &other).await, 200, "A serves the other");
    // B's path comes back: it catches up before it serves again.
    s.lag.freeze(false);
    let back = Instant::now();
    loop {
        let got = user_status(&s.b, &other).await;
        if got == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "B never recovered: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(user_status(&s.b, &cookies).await, 401);
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn a_second_logout_of_a_session_still_being_confirmed_waits_for_it_too() {
    let s = Slow::start().await;
    let cookies = s.login().await;
    s.lag.freeze(true);
    let started = Instant::now();
    let mut a = Pair::on(&s.a, &cookies);
    let first = tokio::spawn(async move {
        let r = a
            .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
            .await;
        r.status.as_u16()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second click (or a retry) while the first waits for stalled B: the session is already
    // revoked on A, and "logged out" must not be said before it holds everywhere.
    let (status, cleared) = try_logout(&s.a, &cookies).await;
    let took = started.elapsed();
    assert_eq!((status, cleared > 0), (302, true));
    assert!(
        took >= Duration::from_secs(2),
        "the second logout was answered before B could be counted out: {took:?}"
    );
    assert_eq!(first.await.unwrap(), 302);
    assert_eq!(
        user_status(&s.b, &cookies).await,
        503,
        "B refuses everything"
    );
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn a_back_channel_logout_retried_while_the_first_waits_is_answered_after_it() {
    let s = Slow::start().await;
    s.idp.set(|b| b.sid = Some("op-session-9".into()));
    let cookies = s.login().await;
    let token = s.idp.logout_token(|_| {});
    let form = format!(
        "logout_token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    s.lag.freeze(true);
    let first = tokio::spawn(post_backchannel(Pair::browser(&s.a), form.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took) = post_backchannel(Pair::browser(&s.a), form).await;
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(1500),
        "the retry was answered before the first logout was confirmed: {took:?}"
    );
    let (first_status, _) = first.await.unwrap();
    assert_eq!(first_status, 200);
    assert_eq!(user_status(&s.b, &cookies).await, 503);
}

/// POSTs a back-channel logout form; its status and how long it took.
async fn post_backchannel(mut b: Browser, form: String) -> (u16, Duration) {
    let started = Instant::now();
    let r = b
        .post(
            &Harness::url("/bff/backchannel-logout"),
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
    (r.status.as_u16(), started.elapsed())
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/run"]
async fn an_instance_that_lost_its_lease_closes_its_websocket_tunnels() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let redis = Redis::start();
    let lag = Lag::start(([127, 0, 0, 1], redis.port).into()).await;
    let (upstream, _) = crate::websocket::echo_upstream().await;
    let extra = format!(
        "toml.[[routes]]\ntoml.prefix = \"/ws\"\ntoml.upstream = \"http://{upstream}\"\n\
         toml.websocket = true\ntoml.[cluster]\ntoml.redis_url = \"redis://{}/0\"\n\
         toml.on_store_unavailable = \"refuse\"",
        lag.addr()
    );
    let h = Harness::start_with(|_| {}, &extra).await;
    assert!(
        h.running
            .cluster_synchronised(Duration::from_secs(10))
            .await
    );
    let mut b = h.browser();
    h.login(&mut b).await;
    let mut ws = crate::websocket::connect(&h, &b, "/ws/chat", Some(crate::support::app::PUBLIC))
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert!(ws.next().await.unwrap().is_ok());
    // The path to Redis stalls: the lease runs out within 5 s, the tunnel check comes every 2.
    lag.freeze(true);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_) | Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the tunnel was still open 10 s after the store stalled"
    );
}
