//! Pushed authorization requests (RFC 9126): every parameter goes to the PAR endpoint with
//! client authentication; the browser's authorization URL carries only `client_id` and
//! `request_uri`; `oidc.par` and the IdP's `require_pushed_authorization_requests` decide at
//! start-up; a failed push is a 502 page that leaves no cookie behind.

use sealgate::Clock;

use crate::support::app::{Harness, PUBLIC, try_start};
use crate::support::idp::{AuthMethod, FakeIdp};

use super::params::{all, login_with, pairs};

#[tokio::test]
async fn every_parameter_is_pushed_and_the_browser_sees_only_client_id_and_request_uri() {
    let h = Harness::start_with(
        |b| b.par_endpoint = true,
        r#"oidc.auth_params = { audience = "https://api.example.com" }"#,
    )
    .await;
    let mut b = h.browser();
    let r = login_with(
        &mut b,
        "returnUrl=%2Fx&prompt=login&login_hint=jane%40example.com",
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.location().unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", h.idp.issuer())),
        "{location}"
    );
    let names: Vec<String> = pairs(&location).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["client_id", "request_uri"]);
    let query = pairs(&location);
    assert_eq!(all(&query, "client_id"), ["spa-bff"]);
    assert!(all(&query, "request_uri")[0].starts_with("urn:ietf:params:oauth:request_uri:"));

    let pushed = h.idp.requests_to("/par");
    assert_eq!(pushed.len(), 1);
    let form = &pushed[0].form;
    assert!(
        pushed[0]
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Basic ")
    );
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", "spa-bff"),
        ("redirect_uri", "https://app.example.com/bff/callback"),
        ("code_challenge_method", "S256"),
        ("scope", "openid profile offline_access"),
        ("audience", "https://api.example.com"),
        ("prompt", "login"),
        ("login_hint", "jane@example.com"),
    ] {
        assert_eq!(all(form, name), [value], "{name}: {form:?}");
    }
    for name in ["state", "nonce", "code_challenge"] {
        assert_eq!(all(form, name).len(), 1, "{name}");
        assert_eq!(all(form, name)[0].len(), 43, "{name}");
    }
    assert!(all(form, "returnUrl").is_empty());

    // The login completes through the pushed request.
    let cb = h.authorize(&mut b, &location).await;
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location().as_deref(), Some("/x"));
    assert_eq!(h.user(&mut b).await.status, 200);
}

#[tokio::test]
async fn with_client_secret_post_client_id_is_sent_once() {
    let h = Harness::start_with(
        |b| {
            b.par_endpoint = true;
            b.auth_method = AuthMethod::Post;
        },
        r#"oidc.token_endpoint_auth = "client_secret_post""#,
    )
    .await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let pushed = h.idp.requests_to("/par").pop().unwrap();
    assert_eq!(all(&pushed.form, "client_id"), ["spa-bff"]);
    assert_eq!(all(&pushed.form, "client_secret"), ["test-secret"]);
    assert!(pushed.authorization.is_none());
}

#[tokio::test]
async fn par_never_keeps_the_front_channel_request() {
    let h = Harness::start_with(|b| b.par_endpoint = true, r#"oidc.par = "never""#).await;
    let mut b = h.browser();
    let r = login_with(&mut b, "returnUrl=%2Fx").await;
    let query = pairs(&r.location().unwrap());
    assert_eq!(all(&query, "state").len(), 1);
    assert!(all(&query, "request_uri").is_empty());
    assert!(h.idp.requests_to("/par").is_empty());
}

#[tokio::test]
async fn an_idp_that_requires_par_gets_it_and_refuses_never() {
    let h = Harness::start_with(
        |b| {
            b.par_endpoint = true;
            b.require_par = true;
        },
        "",
    )
    .await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(h.idp.requests_to("/par").len(), 1);

    let err = try_start(&h.idp, r#"oidc.par = "never""#, Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("require_pushed_authorization_requests"),
        "{err}"
    );
}

#[tokio::test]
async fn par_always_without_an_endpoint_refuses_to_start() {
    let idp = FakeIdp::start().await;
    let err = try_start(&idp, r#"oidc.par = "always""#, Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pushed_authorization_request_endpoint"),
        "{err}"
    );
    // Required, but no endpoint to push to.
    idp.set(|b| b.require_par = true);
    let err = try_start(&idp, "", Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pushed_authorization_request_endpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_push_is_a_502_page_that_leaves_no_cookie() {
    // A 400 invalid_request is the request's fault (a login option the IdP refuses): a 400
    // page; anything else is the IdP's: 502. Neither leaves a cookie.
    let h = Harness::start_with(|b| b.par_endpoint = true, "").await;
    for (status, down, expected) in [
        (Some(400), false, 400),
        (Some(401), false, 502),
        (Some(500), false, 502),
        (None, true, 502),
    ] {
        h.idp.set(|b| {
            b.par_status = status;
            b.unavailable = down;
        });
        let mut b = h.browser();
        let r = login_with(&mut b, "returnUrl=%2Fx").await;
        assert_eq!(r.status, expected, "{status:?}: {}", r.body);
        assert!(r.location().is_none());
        assert!(r.body.contains("Sign-in failed"), "{}", r.body);
        assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
        assert!(b.cookie_names(PUBLIC).is_empty());
        assert_eq!(r.headers["cache-control"], "no-store");
    }
    assert!(h.idp.requests_to("/authorize").is_empty());
}
