//! `[session] revalidate_every`: a session whose last grant is older than the interval is
//! refreshed before it is served, though its access token is still valid, so an account the IdP
//! disabled is refused within the interval.
//!
//! The access tokens here live an hour, far beyond every step, so any token-endpoint call is a
//! revalidation and never an expiry refresh. Both clocks move together ([`advance`]): the fake
//! IdP writes `iat`/`exp` from its own.

use crate::support::app::{Harness, PUBLIC};
use crate::support::browser::{Browser, Resp};

/// The interval the tests configure, in seconds.
const EVERY: i64 = 120;
/// `[session] refresh_grace` (the default): how long a failed refresh is kept.
const GRACE: i64 = 30;

async fn start() -> Harness {
    start_with(|_| {}).await
}

async fn start_with(setup: impl FnOnce(&mut crate::support::idp::Behaviour)) -> Harness {
    Harness::start_with(
        |b| {
            b.access_token_lifetime = 3600;
            setup(b);
        },
        "session.revalidate_every = \"2m\"",
    )
    .await
}

/// How far short of the interval a "not yet due" call is made. Both clocks are the system's
/// plus an offset, so real seconds pass between the login and the call: a call one second
/// short of the interval is due when a second boundary falls in between.
const SHORT: i64 = 5;

/// Moves sealgate's clock and the fake IdP's by `secs`.
fn advance(h: &Harness, secs: i64) {
    h.clock.advance(secs);
    h.idp.set(|b| b.clock_offset += secs);
}

/// Refresh-token grants the IdP received (successful or not).
fn grants(h: &Harness) -> usize {
    h.idp
        .requests_to("/token")
        .iter()
        .filter(|r| r.form_param("grant_type") == Some("refresh_token"))
        .count()
}

async fn api(b: &mut Browser, prefix: &str) -> Resp {
    b.get(
        &Harness::url(&format!("{prefix}/orders")),
        &[("x-csrf", "1")],
    )
    .await
}

fn bearer(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["authorization"].as_str().unwrap().to_owned()
}

/// Whether the response re-sealed the session (a non-empty chunk 0).
fn resealed(r: &Resp) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| c.name() == "__Host-sealgate.0" && !c.value().is_empty())
}

/// A 401 problem that clears every session chunk it names, chunk 0 included.
fn assert_ended(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{what}"
    );
    let cookies = r.set_cookies();
    assert!(
        cookies.iter().any(|c| c.name() == "__Host-sealgate.0")
            && cookies.iter().all(|c| c.value().is_empty()),
        "{what}: every chunk cleared: {cookies:?}"
    );
}

async fn metrics(h: &Harness) -> String {
    h.browser().get(&Harness::url("/metrics"), &[]).await.body
}

#[tokio::test]
async fn a_disabled_account_is_refused_at_the_first_call_after_the_interval() {
    let h = start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let copy = b.export_cookies(PUBLIC);
    h.idp.set(|b| b.disabled_subs = vec!["alice".into()]);
    // Before the interval the session is served as it is: the IdP is not asked.
    advance(&h, EVERY - SHORT);
    bearer(&api(&mut b, "/api").await);
    assert_eq!(h.user(&mut b).await.status, 200);
    assert_eq!(grants(&h), 0, "no grant before the interval");
    // At the interval, the access token is still valid for most of an hour, but the IdP is
    // asked and refuses: the session is over.
    advance(&h, SHORT);
    assert_ended(&api(&mut b, "/api").await, "the call after the interval");
    assert_eq!(grants(&h), 1);
    assert_eq!(h.user(&mut b).await.status, 401, "the cookies are gone");
    // A copy of the cookie is dead too, without asking the IdP: the session was revoked. (Past
    // the grace window, so the refusal is not merely the shared result of that grant.)
    advance(&h, 60);
    let mut thief = h.browser();
    thief.import_cookies(PUBLIC, copy.clone());
    assert_ended(&api(&mut thief, "/api").await, "the copy");
    let mut thief = h.browser();
    thief.import_cookies(PUBLIC, copy);
    assert_ended(&h.user(&mut thief).await, "the copy at /bff/user");
    assert_eq!(
        grants(&h),
        1,
        "the copy was refused by the denylist, not by the IdP"
    );
    assert!(h.running.revocation_count() >= 1);
    assert!(
        metrics(&h)
            .await
            .contains(r#"sealgate_refreshes_total{outcome="failure",reason="invalid_grant"}"#)
    );
}

#[tokio::test]
async fn bff_user_revalidates_too() {
    let h = start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    advance(&h, EVERY);
    // A due revalidation that succeeds re-seals the session from /bff/user.
    let r = h.user(&mut b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(resealed(&r), "the new grant is sealed");
    assert_eq!(grants(&h), 1);
    assert_eq!(r.json()["sub"], "alice");
    // The next due one is refused: /bff/user no longer reports the user as signed in.
    h.idp.set(|b| b.disabled_subs = vec!["alice".into()]);
    advance(&h, EVERY);
    assert_ended(&h.user(&mut b).await, "/bff/user after the interval");
    assert_eq!(grants(&h), 2);
    assert_eq!(api(&mut b, "/api").await.status, 401);
}

#[tokio::test]
async fn a_revalidation_reseals_the_session_with_the_new_grant_and_tokens() {
    let h = start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let before = bearer(&api(&mut b, "/api").await);
    advance(&h, EVERY);
    let r = api(&mut b, "/api").await;
    let after = bearer(&r);
    assert_ne!(
        after, before,
        "the call is served with the new access token"
    );
    assert!(resealed(&r), "the new tokens and grant time are sealed");
    assert_eq!(grants(&h), 1);
    // The interval now counts from that grant: half an interval later, nothing is due (it
    // would be, counted from the login).
    advance(&h, EVERY / 2);
    assert_eq!(bearer(&api(&mut b, "/api").await), after);
    assert_eq!(grants(&h), 1, "the grant time moved");
    // A full interval after the revalidation, the next one is due; on a route with
    // `token = "optional"` as well.
    advance(&h, EVERY / 2);
    let r = api(&mut b, "/kept").await;
    assert_ne!(bearer(&r), after);
    assert!(resealed(&r));
    assert_eq!(grants(&h), 2);
    assert!(
        metrics(&h)
            .await
            .contains(r#"sealgate_refreshes_total{outcome="success",reason="revalidate"}"#)
    );
}

#[tokio::test]
async fn parallel_calls_past_the_interval_share_one_grant() {
    let h = start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let before = bearer(&api(&mut b, "/api").await);
    let cookies = b.export_cookies(PUBLIC);
    advance(&h, EVERY + 5);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut b = h.browser();
        b.import_cookies(PUBLIC, cookies.clone());
        tasks.spawn(async move { api(&mut b, "/api").await });
    }
    let mut tokens = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        tokens.insert(bearer(&r));
        assert!(resealed(&r));
    }
    assert_eq!(grants(&h), 1, "one token-endpoint call for all of them");
    assert_eq!(tokens.len(), 1, "every call got the same new token");
    assert!(!tokens.contains(&before));
}

#[tokio::test]
async fn an_unreachable_idp_does_not_end_the_session_and_is_retried_after_the_grace_window() {
    let h = start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let before = bearer(&api(&mut b, "/api").await);
    advance(&h, EVERY);
    h.idp.set(|b| b.unavailable = true);
    // Served with the still-valid access token; nothing re-sealed.
    let r = api(&mut b, "/api").await;
    assert_eq!(bearer(&r), before);
    assert!(!resealed(&r));
    assert_eq!(grants(&h), 1, "the revalidation was tried");
    // The failure is kept for the grace window: the next requests cost no token request (and
    // no timeout) each; after the window, the next one tries again.
    assert_eq!(h.user(&mut b).await.status, 200);
    assert_eq!(bearer(&api(&mut b, "/api").await), before);
    assert_eq!(
        grants(&h),
        1,
        "no new token request within the grace window"
    );
    advance(&h, GRACE);
    assert_eq!(h.user(&mut b).await.status, 200);
    assert_eq!(grants(&h), 2, "tried again after it");
    // Back up: the next call after the window revalidates.
    h.idp.set(|b| b.unavailable = false);
    advance(&h, GRACE);
    let r = api(&mut b, "/api").await;
    assert_ne!(bearer(&r), before);
    assert!(resealed(&r));
    assert_eq!(grants(&h), 3);
}

#[tokio::test]
async fn a_session_without_a_refresh_token_ends_at_the_interval() {
    let h = start_with(|b| b.refresh_tokens = false).await;
    let mut b = h.browser();
    h.login(&mut b).await;
    advance(&h, EVERY - SHORT);
    bearer(&api(&mut b, "/api").await);
    advance(&h, SHORT);
    // It cannot be revalidated, so it is not served past the interval: signing in again is
    // the revalidation.
    assert_ended(&api(&mut b, "/api").await, "no refresh token");
    assert_eq!(grants(&h), 0);
    h.login(&mut b).await;
    bearer(&api(&mut b, "/api").await);
}

#[tokio::test]
async fn without_revalidate_every_a_valid_access_token_is_never_refreshed() {
    let h = Harness::start_with(|b| b.access_token_lifetime = 3600, "").await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let before = bearer(&api(&mut b, "/api").await);
    h.idp.set(|b| b.disabled_subs = vec!["alice".into()]);
    for _ in 0..5 {
        advance(&h, 500);
        assert_eq!(bearer(&api(&mut b, "/api").await), before);
        assert_eq!(h.user(&mut b).await.status, 200);
    }
    assert_eq!(grants(&h), 0, "no grant while the access token is valid");
}
