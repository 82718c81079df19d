//! Refresh through the proxy: single-flight, the grace window, invalid_grant, OIDC Core 12.2.

use crate::support::app::{Harness, PUBLIC};
use crate::support::browser::Browser;

fn refreshes(h: &Harness) -> usize {
    h.idp
        .requests()
        .iter()
        .filter(|r| r.path == "/token" && r.form_param("grant_type") == Some("refresh_token"))
        .count()
}

async fn api(_h: &Harness, b: &mut Browser) -> crate::support::browser::Resp {
    b.get(&Harness::url("/api/orders"), &[("x-csrf", "1")])
        .await
}

#[tokio::test]
async fn proxy_attaches_the_token_and_keeps_sealgate_cookies_away() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    b.set_cookie(PUBLIC, "theme", "dark");
    let r = api(&h, &mut b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert!(
        j["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer eyJ")
    );
    assert_eq!(j["cookie"], "theme=dark");
    assert_eq!(j["path"], "/orders");
    assert_eq!(refreshes(&h), 0, "a fresh access token is not refreshed");
}

#[tokio::test]
async fn fifty_concurrent_requests_share_one_refresh() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let before = api(&h, &mut b).await.json()["authorization"].clone();
    let cookies = b.export_cookies(PUBLIC);
    h.clock.advance(290); // the 300 s access token is within refresh_before (30 s)
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let mut b = h.browser();
        b.import_cookies(PUBLIC, cookies.clone());
        tasks.spawn(async move {
            b.get(&Harness::url("/api/orders"), &[("x-csrf", "1")])
                .await
        });
    }
    let mut tokens = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.set_cookies()
                .iter()
                .any(|c| c.name() == "__Host-sealgate.0" && !c.value().is_empty())
        );
        tokens.insert(r.json()["authorization"].as_str().unwrap().to_owned());
    }
    assert_eq!(refreshes(&h), 1, "exactly one token-endpoint call");
    assert_eq!(tokens.len(), 1, "every request got the same new token");
    assert!(!tokens.contains(before.as_str().unwrap()));
}

#[tokio::test]
async fn pre_refresh_cookie_within_the_grace_window_reuses_the_refresh() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let old = b.export_cookies(PUBLIC);
    let absolute = h.user(&mut b).await.json()["session"]["absolute_expires_at"].clone();
    h.clock.advance(290);
    assert_eq!(api(&h, &mut b).await.status, 200);
    assert_eq!(refreshes(&h), 1);
    // Another tab still holding the pre-refresh cookie, 10 s later.
    h.clock.advance(10);
    let mut tab = h.browser();
    tab.import_cookies(PUBLIC, old.clone());
    let r = api(&h, &mut tab).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        refreshes(&h),
        1,
        "no second refresh inside the grace window"
    );
    assert_eq!(
        h.user(&mut b).await.json()["session"]["absolute_expires_at"],
        absolute
    );
    // After the grace window the old cookie's rotated refresh token is refused: a clean 401.
    h.clock.advance(60);
    let mut late = h.browser();
    late.import_cookies(PUBLIC, old);
    let r = api(&h, &mut late).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.set_cookies().iter().all(|c| c.value().is_empty()));
}

#[tokio::test]
async fn a_refresh_that_changes_the_identity_ends_and_revokes_the_session() {
    for change in ["sub", "aud", "iss"] {
        // A second, trusted audience makes an ID token with another `aud` set still valid.
        let h = Harness::start_with(|_| {}, "oidc.trusted_audiences = [\"other-client\"]").await;
        let mut b = h.browser();
        h.login(&mut b).await;
        let copy = b.export_cookies(PUBLIC);
        h.idp.set(|b| match change {
            "sub" => b.user_sub = "mallory".into(),
            "aud" => b.fault = crate::support::idp::Fault::ExtraAudWithAzp,
            _ => b.fault = crate::support::idp::Fault::WrongIss,
        });
        h.clock.advance(301);
        let r = api(&h, &mut b).await;
        assert_eq!(r.status, 401, "{change}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        let cleared: Vec<_> = r.set_cookies();
        assert!(
            cleared.iter().any(|c| c.name() == "__Host-sealgate.0")
                && cleared.iter().all(|c| c.value().is_empty()),
            "{change}: every chunk cleared: {cleared:?}"
        );
        assert_eq!(h.user(&mut b).await.status, 401, "{change}");
        // A copy of the cookie is dead too: the session was revoked, not only cleared here.
        h.idp.set(|b| {
            b.user_sub = "alice".into();
            b.fault = crate::support::idp::Fault::None;
        });
        let mut thief = h.browser();
        thief.import_cookies(PUBLIC, copy);
        assert_eq!(
            h.user(&mut thief).await.status,
            401,
            "{change}: the copy is revoked"
        );
        assert!(h.running.revocation_count() >= 1);
        let metrics = h.browser().get(&Harness::url("/metrics"), &[]).await.body;
        assert!(
            metrics.contains(
                r#"sealgate_refreshes_total{outcome="failure",reason="identity_changed"}"#
            ),
            "{change}: counted"
        );
    }
}

#[tokio::test]
async fn a_refresh_on_the_way_to_a_failing_upstream_still_reseals_the_cookie() {
    let h = Harness::start_with(
        |_| {},
        "toml.[[routes]]\ntoml.prefix = \"/dead\"\ntoml.upstream = \"http://127.0.0.1:9\"",
    )
    .await;
    let mut b = h.browser();
    h.login(&mut b).await;
    h.clock.advance(290); // due for refresh
    let r = b.get(&Harness::url("/dead/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        !r.set_cookies().is_empty(),
        "the refreshed session is re-sealed with the 502"
    );
    assert_eq!(refreshes(&h), 1);
    // Past the grace window, the old refresh token (spent at a rotating IdP) would end the
    // session; the browser holds the new one, and its access token is fresh.
    h.clock.advance(60);
    let r = api(&h, &mut b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(refreshes(&h), 1, "no second refresh");
}
