//! `[limits]`: 429 with `Retry-After` per client address and per session, for the BFF's
//! endpoints and the routes, with `X-Forwarded-For` believed only from a trusted proxy.

use crate::support::app::Harness;
use crate::support::browser::{Browser, Resp};

async fn login_page(b: &mut Browser, forwarded_for: Option<&str>) -> Resp {
    let mut headers = vec![("sec-fetch-mode", "navigate")];
    if let Some(f) = forwarded_for {
        headers.push(("x-forwarded-for", f));
    }
    b.get(&Harness::url("/bff/login?returnUrl=%2F"), &headers)
        .await
}

async fn api(b: &mut Browser) -> Resp {
    b.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await
}

fn assert_limited(r: &Resp) {
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.json()["title"], "too many requests");
}

#[tokio::test]
async fn logins_over_their_rate_get_429_with_retry_after_and_are_counted() {
    let h = Harness::start_with(
        |_| {},
        "toml.[limits]\ntoml.login = { per_address = \"2/min\" }",
    )
    .await;
    let mut b = h.browser();
    for _ in 0..2 {
        assert_eq!(login_page(&mut b, None).await.status, 302);
    }
    let r = login_page(&mut b, None).await;
    assert_limited(&r);
    assert!(r.set_cookies().is_empty(), "no login flow is started");
    // Other endpoints are not limited by it.
    assert_eq!(h.user(&mut b).await.status, 401);
    // Metrics are per process (other tests count too): at least this one.
    let metrics = b.get(&Harness::url("/metrics"), &[]).await.body;
    let counted = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"sealgate_rate_limited_total{endpoint="login",by="address"} "#)
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n >= 1), "{metrics}");
}

#[tokio::test]
async fn a_routes_session_limit_counts_each_session_apart() {
    let h = Harness::start_with(
        |_| {},
        "toml.[limits]\ntoml.routes = { per_session = \"3/min\" }",
    )
    .await;
    let mut alice = h.browser();
    assert_eq!(h.login(&mut alice).await.status, 302);
    let mut other = h.browser();
    assert_eq!(h.login(&mut other).await.status, 302);
    for _ in 0..3 {
        assert_eq!(api(&mut alice).await.status, 200);
    }
    assert_limited(&api(&mut alice).await);
    assert_eq!(
        api(&mut other).await.status,
        200,
        "another session has its own"
    );
    // Requests without a session are not counted per session.
    let mut anonymous = h.browser();
    for _ in 0..5 {
        assert_eq!(api(&mut anonymous).await.status, 401);
    }
}

#[tokio::test]
async fn a_routes_own_limits_replace_the_default() {
    let h = Harness::start_with(
        |_| {},
        "toml.[limits]\ntoml.routes = { per_address = \"1/min\" }\n\
         toml.[[routes]]\ntoml.prefix = \"/busy\"\ntoml.upstream = \"http://127.0.0.1:9\"\n\
         toml.token = \"none\"\ntoml.limits = { per_address = \"100/min\" }",
    )
    .await;
    let mut b = h.browser();
    assert_eq!(api(&mut b).await.status, 401);
    assert_limited(&api(&mut b).await);
    // /busy has its own, larger rate (its upstream is down: 502, but not 429).
    for _ in 0..5 {
        let r = b.get(&Harness::url("/busy/x"), &[("x-csrf", "1")]).await;
        assert_eq!(r.status, 502, "{}", r.body);
    }
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let limit = "toml.[limits]\ntoml.login = { per_address = \"1/min\" }";
    // Untrusted peer: a client cannot dodge its limit by writing X-Forwarded-For.
    let h = Harness::start_with(|_| {}, limit).await;
    let mut b = h.browser();
    assert_eq!(login_page(&mut b, Some("198.51.100.1")).await.status, 302);
    assert_limited(&login_page(&mut b, Some("198.51.100.2")).await);

    // Behind a trusted proxy (the test client is on loopback), each forwarded client has its own.
    let h = Harness::start_with(
        |_| {},
        &format!("{limit}\ntoml.trusted_proxies = [\"127.0.0.1\", \"::1\"]"),
    )
    .await;
    let mut b = h.browser();
    assert_eq!(login_page(&mut b, Some("198.51.100.1")).await.status, 302);
    assert_eq!(login_page(&mut b, Some("198.51.100.2")).await.status, 302);
    assert_limited(&login_page(&mut b, Some("198.51.100.1")).await);
    // A client's own entry left of the proxy's is not believed.
    assert_limited(&login_page(&mut b, Some("203.0.113.7, 198.51.100.2")).await);
}

#[tokio::test]
async fn callbacks_and_back_channel_logouts_have_their_own_limits() {
    let h = Harness::start_with(
        |_| {},
        "toml.[limits]\ntoml.callback = { per_address = \"1/min\" }\n\
         toml.backchannel_logout = { per_address = \"1/min\" }",
    )
    .await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let r = b
        .get(&Harness::url("/bff/callback?code=x&state=y"), &[])
        .await;
    assert_limited(&r);
    for expected in [400, 429] {
        let r = b
            .post(
                &Harness::url("/bff/backchannel-logout"),
                &[("content-type", "application/x-www-form-urlencoded")],
                "logout_token=not-a-token",
            )
            .await;
        assert_eq!(r.status, expected, "{}", r.body);
    }
}
