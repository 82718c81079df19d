//! Peer-confirmed revocations: a logout is answered only once no instance can serve the
//! session. Instance B reaches Redis through a relay that can slow or stall its path.

use std::time::{Duration, Instant};

use sealgate::{Clock, Running};

use super::{Pair, try_logout, user_status};
use crate::support::app::try_start;
use crate::support::idp::FakeIdp;
use crate::support::lag::Lag;
use crate::support::redis::Redis;

struct Slow {
    // Field order is drop order: the instances stop before the relay and Redis.
    a: Running,
    b: Running,
    lag: Lag,
    _redis: Redis,
    _idp: FakeIdp,
}

async fn instance(idp: &FakeIdp, url: &str) -> Running {
    let lines = format!(
        "toml.[cluster]\ntoml.redis_url = \"{url}\"\ntoml.on_store_unavailable = \"refuse\""
    );
    let running = try_start(idp, &lines, Clock::system())
        .await
        .expect("sealgate starts");
    assert!(
        running.cluster_synchronised(Duration::from_secs(10)).await,
        "synchronised with Redis"
    );
    running
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
            _idp: idp,
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "it waited for B's acknowledgement until B's lease ran out (3 s): {took:?}"
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
