//! Silent login (`prompt=none`) and cancelled logins: the IdP's "log in first" and
//! `access_denied` answers go back to the SPA's return URL with `sealgate_login=none` /
//! `cancelled`, only after the state and `iss` checks, and leave any session as it was.

use crate::support::app::{Harness, PUBLIC};
use crate::support::browser::{Browser, Resp};

use super::params::login_with;

const SESSION0: &str = "__Host-sealgate.0";

/// Starts `/bff/login?<query>`, visits the IdP; returns the callback URL it sent back.
async fn to_callback(h: &Harness, b: &mut Browser, query: &str) -> String {
    let r = login_with(b, query).await;
    assert_eq!(r.status, 302, "{}", r.body);
    h.authorize(b, &r.location().unwrap()).await
}

fn login_cookies(b: &Browser) -> Vec<String> {
    b.cookie_names(PUBLIC)
        .into_iter()
        .filter(|n| n.contains("-login-"))
        .collect()
}

/// Only deletions of the flow's login cookie: no session cookie is set, changed or cleared.
fn assert_no_session_change(r: &Resp) {
    for c in r.set_cookies() {
        assert!(c.name().contains("-login-"), "{c}");
        assert!(c.value().is_empty(), "{c}");
    }
}

#[tokio::test]
async fn silent_login_with_an_idp_session_signs_in() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let cb = to_callback(&h, &mut b, "prompt=none&returnUrl=%2Fx").await;
    assert!(cb.contains("code="), "{cb}");
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location().as_deref(), Some("/x"));
    assert!(b.cookie(PUBLIC, SESSION0).is_some());
    assert_eq!(h.user(&mut b).await.status, 200);
    let authorize = h.idp.requests_to("/authorize").pop().unwrap();
    assert_eq!(authorize.query_param("prompt"), Some("none"));
}

#[tokio::test]
async fn silent_login_without_an_idp_session_returns_to_the_spa_with_the_marker() {
    let h = Harness::start().await;
    // Anonymous: no session is made.
    let mut b = h.browser();
    h.idp.set(|b| b.idp_session = false);
    let cb = to_callback(&h, &mut b, "prompt=none&returnUrl=%2Fx%3Fa%3D1%23%2Froute").await;
    assert!(cb.contains("error=login_required"), "{cb}");
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.location().as_deref(),
        Some("/x?a=1&sealgate_login=none#/route")
    );
    assert_no_session_change(&r);
    assert!(login_cookies(&b).is_empty(), "{:?}", b.cookie_names(PUBLIC));
    assert!(b.cookie(PUBLIC, SESSION0).is_none());
    assert_eq!(h.user(&mut b).await.status, 401);
    assert!(h.idp.requests_to("/token").is_empty(), "no code, no grant");
    let metrics = b.get(&Harness::url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains(r#"sealgate_logins_total{outcome="interaction_required",reason=""}"#),
        "{metrics}"
    );

    // Signed in already: the session stays exactly as it was.
    h.idp.set(|b| b.idp_session = true);
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let before = b.export_cookies(PUBLIC);
    h.idp.set(|b| b.idp_session = false);
    let cb = to_callback(&h, &mut b, "prompt=none&returnUrl=%2Fy").await;
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.location().as_deref(), Some("/y?sealgate_login=none"));
    assert_no_session_change(&r);
    assert_eq!(b.export_cookies(PUBLIC), before);
    assert_eq!(h.user(&mut b).await.status, 200);
}

#[tokio::test]
async fn every_log_in_first_answer_to_a_silent_login_is_the_none_marker() {
    for error in [
        "login_required",
        "interaction_required",
        "consent_required",
        "account_selection_required",
    ] {
        let h = Harness::start_with(|b| b.authorize_error = Some(error.into()), "").await;
        let mut b = h.browser();
        let cb = to_callback(&h, &mut b, "prompt=none&returnUrl=%2Fx").await;
        let r = b.get(&cb, &[]).await;
        assert_eq!(
            r.location().as_deref(),
            Some("/x?sealgate_login=none"),
            "{error}"
        );
        // Without prompt=none the same answer is a failed login.
        let cb = to_callback(&h, &mut b, "returnUrl=%2Fx").await;
        let r = b.get(&cb, &[]).await;
        assert_eq!(r.status, 400, "{error}");
        assert!(r.location().is_none());
        assert!(r.body.contains("Sign-in failed"), "{}", r.body);
        assert!(login_cookies(&b).is_empty());
    }
}

#[tokio::test]
async fn a_cancelled_login_returns_to_the_spa_with_the_cancelled_marker() {
    let h = Harness::start_with(|b| b.authorize_error = Some("access_denied".into()), "").await;
    let mut b = h.browser();
    let cb = to_callback(&h, &mut b, "returnUrl=%2Forders%3Fsealgate_login%3Dnone").await;
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.location().as_deref(),
        Some("/orders?sealgate_login=cancelled")
    );
    assert_no_session_change(&r);
    assert!(login_cookies(&b).is_empty());
    assert!(b.cookie(PUBLIC, SESSION0).is_none());
    let metrics = b.get(&Harness::url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains(r#"sealgate_logins_total{outcome="cancelled",reason=""}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn other_idp_errors_keep_the_failure_page() {
    let h = Harness::start_with(|b| b.authorize_error = Some("server_error".into()), "").await;
    let mut b = h.browser();
    for query in ["returnUrl=%2Fx", "prompt=none&returnUrl=%2Fx"] {
        let cb = to_callback(&h, &mut b, query).await;
        let r = b.get(&cb, &[]).await;
        assert_eq!(r.status, 400, "{query}");
        assert!(r.location().is_none());
        assert!(login_cookies(&b).is_empty());
    }
}

/// A browser with a pending silent login to `/x`, and that flow's state.
async fn pending_flow(h: &Harness) -> (Browser, String) {
    let mut b = h.browser();
    let r = login_with(&mut b, "prompt=none&returnUrl=%2Fx").await;
    let state = super::params::pairs(&r.location().unwrap())
        .into_iter()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1;
    (b, state)
}

#[tokio::test]
async fn an_idp_error_is_trusted_only_with_the_flows_state_and_iss() {
    let h = Harness::start().await;
    let iss = urlencode(&h.idp.issuer());
    let callback = |q: String| Harness::url(&format!("/bff/callback?{q}"));
    // STATE and ISS stand for the flow's state and the real issuer.
    let cases = [
        (
            "error=login_required&state=someone-elses-state&iss=ISS",
            "another state",
        ),
        ("error=access_denied&iss=ISS", "no state"),
        (
            "error=login_required&state=STATE&iss=https%3A%2F%2Fevil.example",
            "another iss",
        ),
        ("error=login_required&state=STATE", "no iss"),
    ];
    for (query, why) in cases {
        let (mut b, state) = pending_flow(&h).await;
        let query = query.replace("STATE", &state).replace("ISS", &iss);
        let r = b.get(&callback(query), &[]).await;
        assert!(r.location().is_none(), "{why}: {:?}", r.location());
        assert_eq!(r.status, 400, "{why}");
        assert!(r.body.contains("Sign-in failed"), "{why}: {}", r.body);
        if why != "another state" {
            assert!(login_cookies(&b).is_empty(), "{why}");
        }
    }
    // With the flow's state and iss: back to the SPA, once; a replay is refused.
    let (mut b, state) = pending_flow(&h).await;
    let good = callback(format!("error=access_denied&state={state}&iss={iss}"));
    let mut replay = h.browser();
    replay.import_cookies(PUBLIC, b.export_cookies(PUBLIC));
    let r = b.get(&good, &[]).await;
    assert_eq!(r.location().as_deref(), Some("/x?sealgate_login=cancelled"));
    let r = replay.get(&good, &[]).await;
    assert!(r.location().is_none());
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_stale_marker_in_the_return_url_is_dropped_on_success() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let cb = to_callback(
        &h,
        &mut b,
        "returnUrl=%2Fx%3Fsealgate_login%3Dcancelled%26a%3D1",
    )
    .await;
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.location().as_deref(), Some("/x?a=1"));
}

fn urlencode(s: &str) -> String {
    crate::support::app::urlencode(s)
}
