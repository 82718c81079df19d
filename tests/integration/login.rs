//! The session lifecycle against the fake IdP: login, callback validation, /bff/user, logout,
//! lifetimes. Each hostile case asserts the precise outcome it is named for.

use crate::support::app::{Harness, PUBLIC};
use crate::support::browser::{Browser, Resp};
use crate::support::idp::{Behaviour, Fault};

const SESSION0: &str = "__Host-sealgate.0";

fn session_cookie_set(r: &Resp) -> Option<cookie::Cookie<'static>> {
    r.set_cookies()
        .into_iter()
        .find(|c| c.name() == SESSION0 && !c.value().is_empty())
}

fn token_requests(h: &Harness) -> usize {
    h.idp
        .requests()
        .iter()
        .filter(|r| r.path == "/token")
        .count()
}

/// A failed callback: a 4xx/5xx page (never a redirect), no-store, the login cookie cleared,
/// no session cookie, and a link to start again.
fn assert_login_failed(r: &Resp, b: &Browser) {
    assert!(
        !r.status.is_redirection(),
        "a failed callback must not redirect: {}",
        r.status
    );
    assert!(
        r.status.is_client_error() || r.status.is_server_error(),
        "{}",
        r.status
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(
        r.body.contains("Sign-in failed") || r.body.contains("Start again"),
        "{}",
        r.body
    );
    assert!(session_cookie_set(r).is_none(), "no session may be minted");
    assert!(
        !b.cookie_names(PUBLIC).iter().any(|n| n.contains("-login-")),
        "login cookie must be cleared: {:?}",
        b.cookie_names(PUBLIC)
    );
    assert!(!b.cookie_names(PUBLIC).iter().any(|n| n == SESSION0));
}

#[tokio::test]
async fn happy_path_end_to_end() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location().as_deref(), Some("/home"));
    let c = session_cookie_set(&r).expect("session cookie");
    let text = c.to_string();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(text.contains(attr), "{attr} missing in {text}");
    }
    assert!(!text.contains("Domain"));
    assert!(!b.cookie_names(PUBLIC).iter().any(|n| n.contains("-login-")));

    let u = h.user(&mut b).await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.headers["cache-control"], "no-store");
    let j = u.json();
    assert_eq!(j["sub"], "alice");
    assert_eq!(j["claims"]["name"], "Alice");
    assert!(
        j["session"]["absolute_expires_at"].as_i64().unwrap()
            > j["session"]["idle_expires_at"].as_i64().unwrap()
    );
    assert!(
        j["logout_url"]
            .as_str()
            .unwrap()
            .starts_with("/bff/logout?sid=")
    );
    assert!(
        !u.body.contains("eyJ"),
        "no token may reach the browser: {}",
        u.body
    );

    // The IdP saw PKCE and client_secret_basic.
    let token = h
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    assert!(
        token
            .form
            .iter()
            .any(|(k, v)| k == "code_verifier" && v.len() == 43)
    );
    assert!(
        token
            .authorization
            .as_deref()
            .unwrap_or("")
            .starts_with("Basic ")
    );
    let authorize = h
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path == "/authorize")
        .unwrap();
    let q = |k: &str| {
        authorize
            .query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(q("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(q("state").unwrap().len(), 43);
    assert_eq!(q("nonce").unwrap().len(), 43);
    assert_eq!(
        q("redirect_uri").as_deref(),
        Some("https://app.example.com/bff/callback")
    );
}

#[tokio::test]
async fn user_requires_the_anti_forgery_header() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let r = b.get(&Harness::url("/bff/user"), &[]).await;
    assert_eq!(r.status, 403);
    let r = b
        .get(
            &Harness::url("/bff/user"),
            &[("x-csrf", "1"), ("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .get(
            &Harness::url("/bff/user"),
            &[("x-csrf", "1"), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.user(&mut b).await.status, 200);
}

#[tokio::test]
async fn anonymous_user_is_401_json() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = h.user(&mut b).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["title"], "unauthenticated");
}

#[tokio::test]
async fn login_from_fetch_is_401_and_mints_nothing() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = b
        .get(&Harness::url("/bff/login"), &[("sec-fetch-mode", "cors")])
        .await;
    assert_eq!(r.status, 401);
    assert!(r.set_cookies().is_empty());
    assert!(r.headers.get("location").is_none());
}

#[tokio::test]
async fn a_callback_without_a_usable_state_clears_the_pending_login_cookie() {
    let h = Harness::start().await;
    for query in [
        "code=abc",
        "state=&code=abc",
        "error=access_denied",
        "code=a&state=x&state=y",
    ] {
        let mut b = h.browser();
        h.begin_login(&mut b, "/home").await;
        let pending: Vec<String> = b
            .export_cookies(PUBLIC)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.contains("-login-"))
            .collect();
        assert_eq!(pending.len(), 1, "{query}: one login in flight");
        let r = b
            .get(&Harness::url(&format!("/bff/callback?{query}")), &[])
            .await;
        assert_login_failed(&r, &b);
        assert!(
            r.set_cookies()
                .iter()
                .any(|c| c.name() == pending[0] && c.value().is_empty()),
            "{query}: the flow's login cookie is cleared"
        );
        assert!(b.cookie(PUBLIC, &pending[0]).is_none(), "{query}");
    }
}

#[tokio::test]
async fn speculative_loads_of_login_start_no_flow() {
    let h = Harness::start().await;
    let mut b = h.browser();
    for (name, value) in [
        ("sec-purpose", "prefetch"),
        ("sec-purpose", "prefetch;prerender"),
        ("purpose", "prefetch"),
        ("x-moz", "prefetch"),
    ] {
        let r = b
            .get(
                &Harness::url("/bff/login?returnUrl=/home"),
                &[("sec-fetch-mode", "navigate"), (name, value)],
            )
            .await;
        assert_eq!(r.status, 401, "{name}: {value}");
        assert!(
            r.set_cookies().is_empty(),
            "{name}: {value}: no login cookie"
        );
        assert!(
            r.headers.get("location").is_none(),
            "{name}: {value}: no redirect"
        );
        assert_eq!(r.headers["cache-control"], "no-store");
    }
    // The same navigation without the speculative header starts a login.
    let r = b
        .get(
            &Harness::url("/bff/login?returnUrl=/home"),
            &[("sec-fetch-mode", "navigate")],
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.set_cookies().len(), 1);
}

#[tokio::test]
async fn return_url_bypass_classes_are_refused() {
    let h = Harness::start().await;
    let mut b = h.browser();
    for bad in [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%09/evil.example",
        "/%0d%0aSet-Cookie:%20x=y",
        "/%2F/evil.example",
        "/a\\b",
        "\t//evil.example",
    ] {
        let url = format!(
            "/bff/login?returnUrl={}",
            crate::support::app::urlencode(bad)
        );
        let r = b
            .get(&Harness::url(&url), &[("sec-fetch-mode", "navigate")])
            .await;
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(r.set_cookies().is_empty(), "{bad:?}");
        assert!(r.headers.get("location").is_none(), "{bad:?}");
    }
    // Accepted values are re-serialized, not echoed.
    let auth = h.begin_login(&mut b, "/a b/c?x=1").await;
    let cb = h.authorize(&mut b, &auth).await;
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.location().as_deref(), Some("/a%20b/c?x=1"));
}

#[tokio::test]
async fn logout_return_url_is_validated_too() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = b
        .post(
            &Harness::url("/bff/logout?returnUrl=%2F%2Fevil.example"),
            &[("x-csrf", "1")],
            "",
        )
        .await;
    assert_eq!(r.status, 400);
}

async fn fault_case(fault: Fault) {
    let h = Harness::start_with(|b| b.fault = fault, "").await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_login_failed(&r, &b);
    assert_eq!(h.user(&mut b).await.status, 401);
}

macro_rules! fault_tests {
    ($($name:ident => $fault:ident,)*) => {$(
        #[tokio::test]
        async fn $name() {
            fault_case(Fault::$fault).await;
        }
    )*};
}

fault_tests! {
    id_token_bad_signature_is_rejected => BadSignature,
    id_token_alg_none_is_rejected => AlgNone,
    id_token_hs256_keyed_with_rsa_public_key_is_rejected => Hs256WithPublicKey,
    id_token_wrong_iss_is_rejected => WrongIss,
    id_token_missing_iss_is_rejected => MissingIss,
    id_token_wrong_aud_is_rejected => WrongAud,
    id_token_missing_aud_is_rejected => MissingAud,
    id_token_extra_audience_without_azp_is_rejected => ExtraAudNoAzp,
    id_token_untrusted_extra_audience_is_rejected_even_with_azp => ExtraAudWithAzp,
    id_token_expired_is_rejected => Expired,
    id_token_missing_exp_is_rejected => MissingExp,
    id_token_iat_in_the_future_is_rejected => IatInFuture,
    id_token_wrong_nonce_is_rejected => WrongNonce,
    id_token_missing_nonce_is_rejected => MissingNonce,
    id_token_missing_sub_is_rejected => MissingSub,
    id_token_unknown_kid_is_rejected => UnknownKid,
}

#[tokio::test]
async fn trusted_extra_audience_with_azp_is_accepted() {
    let h = Harness::start_with(
        |b| b.fault = Fault::ExtraAudWithAzp,
        r#"oidc.trusted_audiences = ["other-client"]"#,
    )
    .await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
}

#[tokio::test]
async fn unknown_kid_refetches_jwks_at_most_once_per_cooldown() {
    let h = Harness::start_with(|b| b.fault = Fault::UnknownKid, "").await;
    let jwks = |h: &Harness| {
        h.idp
            .requests()
            .iter()
            .filter(|r| r.path == "/jwks")
            .count()
    };
    let before = jwks(&h);
    for _ in 0..3 {
        let mut b = h.browser();
        assert_login_failed(&h.login(&mut b).await, &b);
    }
    assert_eq!(
        jwks(&h),
        before + 1,
        "one refetch for three unknown kids within the cooldown"
    );
}

#[tokio::test]
async fn key_rotation_at_the_idp_is_picked_up() {
    let h = Harness::start().await;
    h.idp.rotate_key();
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(h.user(&mut b).await.json()["sub"], "alice");
}

#[tokio::test]
async fn wrong_rfc9207_iss_fails_before_any_token_request() {
    let h = Harness::start_with(|b| b.iss_param = crate::support::idp::IssParam::Wrong, "").await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_login_failed(&r, &b);
    assert_eq!(token_requests(&h), 0, "the code must not be redeemed");
}

#[tokio::test]
async fn missing_rfc9207_iss_fails_when_advertised() {
    let h = Harness::start_with(|b| b.iss_param = crate::support::idp::IssParam::Missing, "").await;
    let mut b = h.browser();
    assert_login_failed(&h.login(&mut b).await, &b);
    assert_eq!(token_requests(&h), 0);
}

#[tokio::test]
async fn missing_iss_is_fine_when_not_advertised() {
    let h = Harness::start_with(
        |b| {
            b.iss_param = crate::support::idp::IssParam::Missing;
            b.advertise_iss_param = false;
        },
        "",
    )
    .await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
}

#[tokio::test]
async fn token_response_without_id_token_is_rejected() {
    let h = Harness::start_with(|b| b.omit_id_token = true, "").await;
    let mut b = h.browser();
    assert_login_failed(&h.login(&mut b).await, &b);
}

#[tokio::test]
async fn token_response_without_access_token_is_rejected() {
    let h = Harness::start_with(|b| b.omit_access_token = true, "").await;
    let mut b = h.browser();
    assert_login_failed(&h.login(&mut b).await, &b);
}

#[tokio::test]
async fn token_endpoint_error_is_a_clean_failure() {
    let h = Harness::start_with(|b| b.token_error = Some("invalid_grant".into()), "").await;
    let mut b = h.browser();
    assert_login_failed(&h.login(&mut b).await, &b);
}

#[tokio::test]
async fn userinfo_sub_mismatch_is_rejected() {
    let h = Harness::start_with(
        |b| b.userinfo_sub = Some("mallory".into()),
        "oidc.use_userinfo = true",
    )
    .await;
    let mut b = h.browser();
    assert_login_failed(&h.login(&mut b).await, &b);
    let h = Harness::start_with(|_| {}, "oidc.use_userinfo = true").await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    assert!(h.idp.requests().iter().any(|r| r.path == "/userinfo"));
}

#[tokio::test]
async fn client_secret_post_sends_the_secret_in_the_form() {
    let h = Harness::start_with(
        |b| b.auth_method = crate::support::idp::AuthMethod::Post,
        r#"oidc.token_endpoint_auth = "client_secret_post""#,
    )
    .await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let token = h
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    assert!(
        token
            .form
            .iter()
            .any(|(k, v)| k == "client_secret" && v == "test-secret")
    );
    assert!(token.authorization.is_none());
}

#[tokio::test]
async fn discovery_issuer_mismatch_refuses_to_start() {
    let idp = crate::support::idp::FakeIdp::start().await;
    idp.set(|b: &mut Behaviour| b.discovery_issuer = Some("https://other.example".into()));
    let err = crate::support::app::try_start(&idp, "", sealgate::Clock::system())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("discovery"), "{err}");
}

#[tokio::test]
async fn id_tokens_before_their_nbf_or_with_non_numeric_time_claims_are_refused() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (claim, value, accepted) in [
        ("nbf", serde_json::json!(now + 3600), false),
        ("nbf", serde_json::json!(now.to_string()), false),
        ("auth_time", serde_json::json!(now.to_string()), false),
        ("auth_time", serde_json::json!(null), false),
        ("nbf", serde_json::json!(now - 10), true),
        ("auth_time", serde_json::json!(now - 10), true),
    ] {
        let h = Harness::start_with(
            |b| {
                b.extra_claims.insert(claim.into(), value.clone());
            },
            "",
        )
        .await;
        let mut b = h.browser();
        let r = h.login(&mut b).await;
        if accepted {
            assert_eq!(r.status, 302, "{claim} = {value}");
            assert_eq!(h.user(&mut b).await.status, 200, "{claim} = {value}");
        } else {
            assert_login_failed(&r, &b);
        }
    }
}

#[tokio::test]
async fn an_id_token_signed_with_an_algorithm_the_client_did_not_register_is_refused() {
    // The IdP signs RS256 with a key in its JWKS; the client registered PS256 only.
    let h = Harness::start_with(|_| {}, "oidc.id_token_signed_response_alg = \"PS256\"").await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_login_failed(&r, &b);
    // Registered as RS256 (the default), the same IdP's tokens are accepted.
    let h = Harness::start().await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
}

#[tokio::test]
async fn session_too_large_fails_login_with_a_clear_message() {
    let h = Harness::start_with(
        |b| {
            b.extra_claims
                .insert("groups".into(), serde_json::Value::String("g".repeat(6000)));
        },
        "session.max_chunks = 1",
    )
    .await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_login_failed(&r, &b);
    assert!(r.body.contains("too large"), "{}", r.body);
}

#[tokio::test]
async fn a_smaller_session_expires_the_higher_chunks_and_a_stale_one_never_breaks_it() {
    let h = Harness::start_with(
        |b| {
            b.extra_claims
                .insert("groups".into(), serde_json::Value::String("g".repeat(3000)));
        },
        "",
    )
    .await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let stale = b
        .cookie(PUBLIC, "__Host-sealgate.1")
        .expect("a two-chunk session");
    // A new login with a smaller session: one chunk, and the response expires chunk 1.
    h.idp.set(|b| b.extra_claims.clear());
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.name() == "__Host-sealgate.1" && c.value().is_empty()),
        "chunk 1 is expired on the response that shrinks the session"
    );
    assert!(b.cookie(PUBLIC, "__Host-sealgate.1").is_none());
    assert_eq!(h.user(&mut b).await.status, 200);
    // A stale chunk sent alongside the valid one is ignored, and expired again.
    let mut jar = b.export_cookies(PUBLIC);
    jar.push(("__Host-sealgate.1".into(), stale));
    b.import_cookies(PUBLIC, jar);
    let r = h.user(&mut b).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn planted_session_cookie_is_replaced_by_a_fresh_session() {
    let h = Harness::start().await;
    // The attacker logs in and plants their valid session cookie in the victim's browser.
    let mut attacker = h.browser();
    h.login(&mut attacker).await;
    let planted = attacker.export_cookies(PUBLIC);
    let attacker_user = h.user(&mut attacker).await.json();

    let mut victim = h.browser();
    victim.import_cookies(PUBLIC, planted.clone());
    h.idp.set(|b| b.user_sub = "victim".into());
    let r = h.login(&mut victim).await;
    assert_eq!(r.status, 302);
    let new_value = victim.cookie(PUBLIC, SESSION0).unwrap();
    let old_value = planted
        .iter()
        .find(|(n, _)| n == SESSION0)
        .unwrap()
        .1
        .clone();
    assert_ne!(new_value, old_value);
    let u = h.user(&mut victim).await.json();
    assert_eq!(u["sub"], "victim");
    assert_ne!(
        u["logout_url"], attacker_user["logout_url"],
        "a fresh session id"
    );
}

#[tokio::test]
async fn two_parallel_logins_in_one_browser_both_complete() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let first = h.begin_login(&mut b, "/one").await;
    let second = h.begin_login(&mut b, "/two").await;
    let cb2 = h.authorize(&mut b, &second).await;
    let cb1 = h.authorize(&mut b, &first).await;
    let r2 = b.get(&cb2, &[]).await;
    assert_eq!(r2.location().as_deref(), Some("/two"));
    let r1 = b.get(&cb1, &[]).await;
    assert_eq!(r1.location().as_deref(), Some("/one"), "{}", r1.body);
}

#[tokio::test]
async fn callback_replay_is_refused_without_asking_the_idp() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let auth = h.begin_login(&mut b, "/").await;
    let cb = h.authorize(&mut b, &auth).await;
    let with_login_cookie = b.export_cookies(PUBLIC);
    assert_eq!(b.get(&cb, &[]).await.status, 302);
    let mut replay = h.browser();
    replay.import_cookies(PUBLIC, with_login_cookie);
    let r = replay.get(&cb, &[]).await;
    assert_login_failed(&r, &replay);
    assert_eq!(token_requests(&h), 1);
}

#[tokio::test]
async fn login_csrf_with_someone_elses_state_fails() {
    let h = Harness::start().await;
    let mut attacker = h.browser();
    let auth = h.begin_login(&mut attacker, "/").await;
    let attacker_callback = h.authorize(&mut attacker, &auth).await;
    let mut victim = h.browser();
    let r = victim.get(&attacker_callback, &[]).await;
    assert_login_failed(&r, &victim);
    assert_eq!(token_requests(&h), 0);
}

#[tokio::test]
async fn idle_timeout_and_sliding_renewal() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    // Before half the idle window: no Set-Cookie.
    h.clock.advance(5 * 60);
    let r = h.user(&mut b).await;
    assert_eq!(r.status, 200);
    assert!(r.set_cookies().is_empty());
    // Past half: re-sealed with a new last-seen time.
    h.clock.advance(6 * 60);
    let r = h.user(&mut b).await;
    assert_eq!(r.status, 200);
    assert!(session_cookie_set(&r).is_some(), "renewal re-seals");
    // 19 minutes after the renewal the session is still alive (it slid)...
    h.clock.advance(19 * 60);
    assert_eq!(h.user(&mut b).await.status, 200);
    // ...and idle for more than 20 minutes it is gone, answered with deletions only.
    h.clock.advance(21 * 60);
    let r = h.user(&mut b).await;
    assert_eq!(r.status, 401);
    assert!(
        r.set_cookies().iter().all(|c| c.value().is_empty()),
        "deletions only"
    );
    assert!(!r.set_cookies().is_empty());
}

#[tokio::test]
async fn absolute_timeout_never_moves() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let absolute = h.user(&mut b).await.json()["session"]["absolute_expires_at"]
        .as_i64()
        .unwrap();
    // Keep the session busy every 15 minutes for 8 hours.
    for _ in 0..31 {
        h.clock.advance(15 * 60);
        let r = h.user(&mut b).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["session"]["absolute_expires_at"].as_i64().unwrap(),
            absolute
        );
    }
    h.clock.advance(15 * 60); // 8 h after login
    assert_eq!(h.user(&mut b).await.status, 401);
}

#[tokio::test]
async fn logout_then_replay_of_the_old_cookie_is_401() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let old = b.export_cookies(PUBLIC);
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    let location = r.location().unwrap();
    assert!(
        location.starts_with(&format!("{}/end-session?", h.idp.issuer())),
        "{location}"
    );
    let end = url::Url::parse(&location).unwrap();
    let params: Vec<(String, String)> = end.query_pairs().into_owned().collect();
    let has = |k: &str| params.iter().any(|(n, v)| n == k && !v.is_empty());
    assert!(has("id_token_hint") && has("state") && has("post_logout_redirect_uri"));
    for i in 0..4 {
        let name = format!("__Host-sealgate.{i}");
        let c = r
            .set_cookies()
            .into_iter()
            .find(|c| c.name() == name)
            .expect("every chunk cleared");
        assert!(c.value().is_empty());
        let t = c.to_string();
        assert!(
            t.contains("HttpOnly")
                && t.contains("Secure")
                && t.contains("SameSite=Strict")
                && t.contains("Path=/")
        );
    }
    assert!(
        h.idp.requests().iter().any(|r| r.path == "/revoke"),
        "refresh token revoked"
    );
    assert_eq!(h.user(&mut b).await.status, 401);
    let mut thief = h.browser();
    thief.import_cookies(PUBLIC, old);
    assert_eq!(
        h.user(&mut thief).await.status,
        401,
        "a copied cookie is dead after logout"
    );
}

#[tokio::test]
async fn forged_logouts_leave_the_session_alive() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let r = b.post(&Harness::url("/bff/logout"), &[], "").await;
    assert_eq!(r.status, 403);
    let r = b.get(&Harness::url("/bff/logout?sid=guess"), &[]).await;
    assert_eq!(r.status, 403);
    let r = b.get(&Harness::url("/bff/logout"), &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(h.user(&mut b).await.status, 200, "still signed in");
    let logout_url = h.user(&mut b).await.json()["logout_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = b.get(&Harness::url(&logout_url), &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(h.user(&mut b).await.status, 401);
}

#[tokio::test]
async fn logout_without_end_session_endpoint_goes_to_the_return_url() {
    let h = Harness::start_with(
        |b| {
            b.end_session_endpoint = false;
            b.revocation_endpoint = false;
        },
        "",
    )
    .await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let r = b
        .post(
            &Harness::url("/bff/logout?returnUrl=/bye"),
            &[("x-csrf", "1")],
            "",
        )
        .await;
    assert_eq!(r.location().as_deref(), Some("/bye"));
    assert!(!h.idp.requests().iter().any(|r| r.path == "/revoke"));
}

#[tokio::test]
async fn idp_timing_out_at_callback_is_a_502_page_not_a_loop() {
    let h = Harness::start_with(|_| {}, r#"oidc.timeout = "1s""#).await;
    let mut b = h.browser();
    let auth = h.begin_login(&mut b, "/").await;
    let cb = h.authorize(&mut b, &auth).await;
    h.idp
        .set(|b| b.response_delay = Some(std::time::Duration::from_secs(3)));
    let r = b.get(&cb, &[]).await;
    assert_eq!(r.status, 502);
    assert!(r.body.contains("Start again"));
    assert!(session_cookie_set(&r).is_none());
}

#[tokio::test]
async fn trusted_extra_audience_without_azp_is_still_rejected() {
    // The audience is trusted, so only the azp rule (OIDC Core 3.1.3.7 step 4) can refuse it.
    let h = Harness::start_with(
        |b| b.fault = Fault::ExtraAudNoAzp,
        r#"oidc.trusted_audiences = ["other-client"]"#,
    )
    .await;
    let mut b = h.browser();
    assert_login_failed(&h.login(&mut b).await, &b);
}

#[tokio::test]
async fn cross_site_logout_navigation_deletes_nothing() {
    // A SameSite=Strict session cookie is not sent on a cross-site navigation: the request
    // arrives without cookies and must not answer with deletions that would log the user out.
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = b
        .get(
            &Harness::url("/bff/logout"),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 302);
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
}

#[tokio::test]
async fn post_logout_asking_for_json_gets_the_location() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let r = b
        .post(
            &Harness::url("/bff/logout"),
            &[("x-csrf", "1"), ("accept", "application/json")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let location = r.json()["location"].as_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/end-session?", h.idp.issuer())));
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.name() == SESSION0 && c.value().is_empty())
    );
    assert_eq!(h.user(&mut b).await.status, 401);
}

#[tokio::test]
async fn return_urls_into_the_bff_are_refused() {
    let h = Harness::start().await;
    let mut b = h.browser();
    for bad in ["/bff/login?returnUrl=/x", "/bff/logout", "/BFF/user"] {
        let url = format!(
            "/bff/login?returnUrl={}",
            crate::support::app::urlencode(bad)
        );
        let r = b
            .get(&Harness::url(&url), &[("sec-fetch-mode", "navigate")])
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn logging_in_again_revokes_the_previous_session() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let old = b.export_cookies(PUBLIC);
    h.login(&mut b).await;
    assert_eq!(h.user(&mut b).await.status, 200);
    let mut copy = h.browser();
    copy.import_cookies(PUBLIC, old);
    assert_eq!(h.user(&mut copy).await.status, 401);
}

#[tokio::test]
async fn id_token_older_than_the_maximum_age_is_rejected() {
    let h = Harness::start_with(|b| b.clock_offset = -180, r#"oidc.max_id_token_age = "1m""#).await;
    let mut b = h.browser();
    assert_login_failed(&h.login(&mut b).await, &b);
}

#[tokio::test]
async fn pending_login_flows_are_bounded() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let pending = |b: &Browser| {
        b.cookie_names(PUBLIC)
            .iter()
            .filter(|n| n.contains("-login-"))
            .count()
    };
    for i in 1..=5 {
        h.begin_login(&mut b, "/").await;
        assert_eq!(pending(&b), i);
    }
    h.begin_login(&mut b, "/").await;
    assert_eq!(
        pending(&b),
        1,
        "the five open flows were cleared; the newest remains"
    );
}

#[tokio::test]
async fn cors_is_an_exact_origin_allowlist() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let pre = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-csrf"),
        ]
    };
    let r = b
        .request(
            http::Method::OPTIONS,
            &Harness::url("/bff/user"),
            &pre("https://spa.example.com"),
            "",
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://spa.example.com"
    );
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert!(
        r.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-csrf")
    );
    let r = b
        .request(
            http::Method::OPTIONS,
            &Harness::url("/bff/user"),
            &pre("https://evil.example"),
            "",
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    h.login(&mut b).await;
    let r = b
        .get(
            &Harness::url("/bff/user"),
            &[("x-csrf", "1"), ("origin", "https://spa.example.com")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://spa.example.com"
    );
}
