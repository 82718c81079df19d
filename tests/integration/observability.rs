//! Metrics on `/metrics` (main listener or a separate one), `/readyz`.

use crate::support::app::Harness;

/// The value of the sample `series` (name with its labels, as rendered) in `text`, or 0.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn scrape(h: &Harness) -> String {
    let r = h.browser().get(&Harness::url("/metrics"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").unwrap().starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    r.body
}

#[tokio::test]
async fn metrics_count_requests_logins_refreshes_logouts_and_the_denylist() {
    let h = Harness::start().await;
    let before = scrape(&h).await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let api = b.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await;
    assert_eq!(api.status, 200);
    assert_eq!(
        b.get(&Harness::url("/api/x"), &[]).await.status,
        403,
        "a 4xx for the same route"
    );
    h.clock.advance(290);
    assert_eq!(
        b.get(&Harness::url("/api/x"), &[("x-csrf", "1")])
            .await
            .status,
        200
    );
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    let after = scrape(&h).await;

    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert!(delta(r#"sealgate_requests_total{route="/api",class="2xx"}"#) >= 2.0);
    assert!(delta(r#"sealgate_requests_total{route="/api",class="4xx"}"#) >= 1.0);
    assert!(delta(r#"sealgate_requests_total{route="/bff/callback",class="3xx"}"#) >= 1.0);
    assert!(delta(r#"sealgate_logins_total{outcome="success",reason=""}"#) >= 1.0);
    assert!(delta(r#"sealgate_refreshes_total{outcome="success",reason=""}"#) >= 1.0);
    assert!(delta(r#"sealgate_logouts_total{outcome="success",reason=""}"#) >= 1.0);
    assert!(delta(r#"sealgate_upstream_duration_seconds_count{route="/api"}"#) >= 2.0);
    assert!(delta("sealgate_session_cookie_bytes_count") >= 2.0);
    assert!(delta("sealgate_idp_request_duration_seconds_count") >= 2.0);
    // This instance's denylist holds the logged-out session.
    assert_eq!(sample(&after, "sealgate_denylist_entries"), 1.0);
    assert!(after.contains("# TYPE sealgate_denylist_overflows gauge"));
    // Nothing secret: no cookie value, no token.
    for (_, value) in b.export_cookies(crate::support::app::PUBLIC) {
        assert!(value.is_empty() || !after.contains(&value));
    }
    assert!(!after.contains("eyJ"), "no JWT in the metrics");
}

#[tokio::test]
async fn a_failed_login_is_counted_with_its_reason() {
    let h = Harness::start().await;
    let before = scrape(&h).await;
    let mut b = h.browser();
    let r = b
        .get(&Harness::url("/bff/callback?code=x&state=nope"), &[])
        .await;
    assert_eq!(r.status, 400);
    let after = scrape(&h).await;
    let series = r#"sealgate_logins_total{outcome="failure",reason="rejected"}"#;
    assert!(
        sample(&after, series) - sample(&before, series) >= 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    // The port is picked before sealgate binds it, so another socket may take it in between
    // (start-up fetches discovery and keys first): then start again on another one.
    let idp = crate::support::idp::FakeIdp::start().await;
    let clock = sealgate::Clock::system();
    let mut attempts = 0;
    let (running, port) = loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let extra = format!("toml.[metrics]\ntoml.listen = \"127.0.0.1:{port}\"");
        match crate::support::app::try_start(&idp, &extra, clock.clone()).await {
            Ok(running) => break (running, port),
            Err(sealgate::StartError::Bind { addr, .. }) if addr.port() == port && attempts < 5 => {
                attempts += 1;
            }
            Err(e) => panic!("sealgate starts: {e}"),
        }
    };
    let actual = format!("http://{}", running.addr);
    let h = Harness {
        idp,
        running,
        clock,
        actual,
    };
    let r = h.browser().get(&Harness::url("/metrics"), &[]).await;
    assert_eq!(r.status, 404, "not on the public listener any more");
    let mut own = crate::support::browser::Browser::new();
    let r = own
        .get(&format!("http://127.0.0.1:{port}/metrics"), &[])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("sealgate_requests_total"));
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let h = Harness::start_with(|_| {}, "toml.[metrics]\ntoml.enabled = false").await;
    assert_eq!(
        h.browser().get(&Harness::url("/metrics"), &[]).await.status,
        404
    );
}

#[tokio::test]
async fn readyz_is_ready_without_a_cluster() {
    let h = Harness::start().await;
    let r = h.browser().get(&Harness::url("/readyz"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["cluster"], "not configured");
    assert_eq!(r.json()["idp"], "ok");
}

#[tokio::test]
async fn under_a_route_for_every_path_sealgates_own_endpoints_keep_their_labels() {
    // Its upstream is down: a proxied request is a 502, counted under the route.
    let h = Harness::start_with(
        |_| {},
        "toml.[[routes]]\ntoml.prefix = \"/\"\ntoml.upstream = \"http://127.0.0.1:9\"\n\
         toml.token = \"none\"",
    )
    .await;
    let before = scrape(&h).await;
    let mut b = h.browser();
    assert_eq!(
        b.get(&Harness::url("/bff/user"), &[("x-csrf", "1")])
            .await
            .status,
        401
    );
    assert_eq!(b.get(&Harness::url("/healthz"), &[]).await.status, 200);
    let r = b.get(&Harness::url("/elsewhere"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    let after = scrape(&h).await;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        delta(r#"sealgate_requests_total{route="/bff/user",class="4xx"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"sealgate_requests_total{route="/healthz",class="2xx"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"sealgate_requests_total{route="/",class="5xx"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"sealgate_requests_total{route="/",class="4xx"}"#),
        0.0
    );
    assert_eq!(
        delta(r#"sealgate_requests_total{route="/",class="2xx"}"#),
        0.0
    );
    assert_eq!(
        delta(r#"sealgate_upstream_duration_seconds_count{route="/"}"#),
        1.0
    );
}
