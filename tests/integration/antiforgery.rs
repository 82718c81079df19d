//! Optional double-submit anti-forgery: a session-bound token in a readable `__Host-` cookie,
//! echoed in the anti-forgery header.

use crate::support::app::{Harness, PUBLIC};

const CSRF_COOKIE: &str = "__Host-sealgate-csrf";

#[tokio::test]
async fn double_submit_tokens_are_set_at_login_and_bound_to_the_session() {
    let h = Harness::start_with(|_| {}, "bff.csrf_mode = \"double-submit\"").await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302);
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.name() == CSRF_COOKIE)
        .expect("the callback sets the token cookie");
    assert_eq!(set.http_only(), None, "readable by the SPA");
    assert_eq!(set.secure(), Some(true));
    assert_eq!(set.path(), Some("/"));
    assert_eq!(set.same_site(), Some(cookie::SameSite::Strict));
    assert!(set.max_age().is_some_and(|a| a.whole_seconds() > 0));
    let token = b.cookie(PUBLIC, CSRF_COOKIE).unwrap();
    assert!(token.len() >= 22, "128 bits: {token}");

    // The static value no longer passes; the token does.
    assert_eq!(
        b.get(&Harness::url("/bff/user"), &[("x-csrf", "1")])
            .await
            .status,
        403
    );
    assert_eq!(
        b.get(&Harness::url("/bff/user"), &[("x-csrf", &token)])
            .await
            .status,
        200
    );
    let r = b.get(&Harness::url("/api/x"), &[("x-csrf", &token)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["cookie"].is_null(),
        "the token cookie is sealgate's: never forwarded"
    );

    // Another session's token does not pass for this one.
    let mut other = h.browser();
    h.login(&mut other).await;
    let other_token = other.cookie(PUBLIC, CSRF_COOKIE).unwrap();
    assert_ne!(other_token, token);
    let r = b
        .get(&Harness::url("/api/x"), &[("x-csrf", &other_token)])
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .post(
            &Harness::url("/bff/logout"),
            &[("x-csrf", &other_token)],
            "",
        )
        .await;
    assert_eq!(r.status, 403, "logout needs this session's token");

    // Without a session there is nothing to bind to: any non-empty header passes, none fails.
    let mut anon = h.browser();
    let r = anon.get(&Harness::url("/open/x"), &[("x-csrf", "x")]).await;
    assert_eq!(r.status, 200);
    let r = anon.get(&Harness::url("/open/x"), &[]).await;
    assert_eq!(r.status, 403);

    // Logout with the token deletes the token cookie with the session.
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", &token)], "")
        .await;
    assert_eq!(r.status, 302);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.name() == CSRF_COOKIE && c.value().is_empty())
    );
    assert!(b.cookie(PUBLIC, CSRF_COOKIE).is_none());
}

#[tokio::test]
async fn header_mode_sets_no_token_cookie() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert!(r.set_cookies().iter().all(|c| c.name() != CSRF_COOKIE));
    assert_eq!(h.user(&mut b).await.status, 200);
    let r = b.get(&Harness::url("/bff/user"), &[("x-csrf", "2")]).await;
    assert_eq!(r.status, 403, "only the configured value passes");
}
