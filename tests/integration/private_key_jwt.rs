//! `private_key_jwt` (RFC 7523) against the fake IdP, which verifies every assertion with the
//! client's registered public key and refuses a replayed `jti`: login, refresh and logout
//! (revocation) with RSA and EC keys, never a secret sent, never an assertion reused, and a
//! wrong key or audience failing login with the generic page.

use std::collections::HashSet;

use crate::support::app::{Harness, PUBLIC};
use crate::support::browser::{Browser, Resp};
use crate::support::client_keys::{
    ASSERTION_TYPE, AssertionAudience, CLIENT_EC256, CLIENT_EC384, CLIENT_RSA, ClientKey, file_ref,
};
use crate::support::idp::{AuthMethod, FakeIdp, Logged, peek_jwt};
use crate::support::process::{Sealgate, Spawn};

const SECRET_LINE: &str = "client_secret = \"env:SECRET\"\n";

/// sealgate with `private_key_jwt` and the key at `key_ref` (no `client_secret` line); the IdP
/// with `registered` as the client's key.
async fn start(registered: &'static ClientKey, key_ref: &str, extra: &str) -> Harness {
    let extra = format!(
        "oidc.token_endpoint_auth = \"private_key_jwt\"\n\
         oidc.client_assertion_key = \"{key_ref}\"\n{extra}"
    );
    Harness::start_edited(
        |b| b.auth_method = AuthMethod::PrivateKeyJwt(registered),
        &extra,
        |toml| {
            assert!(toml.contains(SECRET_LINE), "the harness config changed");
            toml.replace(SECRET_LINE, "")
        },
    )
    .await
}

/// Every request sealgate sent to the token and revocation endpoints.
fn authenticated_requests(h: &Harness) -> Vec<Logged> {
    h.idp
        .requests()
        .into_iter()
        .filter(|r| r.path == "/token" || r.path == "/revoke")
        .collect()
}

/// No secret, no `Authorization`, exactly one assertion of the right type in each.
fn assert_only_assertions(requests: &[Logged]) {
    assert!(!requests.is_empty());
    for r in requests {
        assert_eq!(r.form_param("client_secret"), None, "{}: a secret", r.path);
        assert_eq!(r.authorization, None, "{}: an Authorization header", r.path);
        assert_eq!(r.form_param("client_assertion_type"), Some(ASSERTION_TYPE));
        assert_eq!(r.form_param("client_id"), Some("spa-bff"));
        let count = r
            .form
            .iter()
            .filter(|(k, _)| k == "client_assertion")
            .count();
        assert_eq!(count, 1, "{}", r.path);
    }
}

/// Moves sealgate's clock and the IdP's together (the IdP dates tokens and checks assertions
/// with its own).
fn advance(h: &Harness, secs: i64) {
    h.clock.advance(secs);
    h.idp.set(|b| b.clock_offset += secs);
}

async fn api(b: &mut Browser) -> Resp {
    b.get(&Harness::url("/api/orders"), &[("x-csrf", "1")])
        .await
}

/// Login, two refreshes through the proxy, logout with revocation: every step authenticated
/// by a fresh assertion the IdP accepted.
async fn full_cycle(key: &'static ClientKey) {
    let h = start(
        key,
        &key.config_ref(),
        "oidc.client_assertion_kid = \"kid-1\"",
    )
    .await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "{:?}: {}", key.alg, r.body);
    assert_eq!(r.location().as_deref(), Some("/home"));
    let mut bearers = HashSet::new();
    for i in 0..3 {
        if i > 0 {
            advance(&h, 290); // within refresh_before of the 300 s access token
        }
        let r = api(&mut b).await;
        assert_eq!(r.status, 200, "{}", r.body);
        bearers.insert(r.json()["authorization"].as_str().unwrap().to_owned());
    }
    assert_eq!(bearers.len(), 3, "each refresh brought a new access token");
    let refreshes = h
        .idp
        .requests_to("/token")
        .iter()
        .filter(|r| r.form_param("grant_type") == Some("refresh_token"))
        .count();
    assert_eq!(refreshes, 2);

    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    let revoke = h.idp.requests_to("/revoke");
    assert_eq!(revoke.len(), 1, "the refresh token is revoked");
    let revoked = revoke[0].form_param("token").unwrap();
    assert!(
        !h.idp.live_tokens().iter().any(|t| t == revoked),
        "the IdP accepted the revocation"
    );

    assert_eq!(h.idp.assertion_refusals(), Vec::<String>::new());
    let jtis = h.idp.assertion_jtis();
    assert_eq!(jtis.len(), 4, "code, two refreshes, revocation");
    assert_eq!(jtis.iter().collect::<HashSet<_>>().len(), 4, "{jtis:?}");
    let requests = authenticated_requests(&h);
    assert_only_assertions(&requests);
    let (header, claims) = peek_jwt(requests[0].form_param("client_assertion").unwrap());
    assert_eq!(header["alg"], format!("{:?}", key.alg));
    assert_eq!(header["kid"], "kid-1");
    assert_eq!(claims["aud"], format!("{}/token", h.idp.issuer()));
    assert_eq!(h.user(&mut b).await.status, 401);
}

#[tokio::test]
async fn an_rsa_key_logs_in_refreshes_and_revokes() {
    full_cycle(&CLIENT_RSA).await;
}

#[tokio::test]
async fn a_p256_key_logs_in_refreshes_and_revokes() {
    full_cycle(&CLIENT_EC256).await;
}

#[tokio::test]
async fn a_p384_key_logs_in_refreshes_and_revokes() {
    full_cycle(&CLIENT_EC384).await;
}

#[tokio::test]
async fn no_assertion_is_reused_and_the_idp_refuses_a_replay() {
    let h = start(&CLIENT_EC256, &CLIENT_EC256.config_ref(), "").await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    for _ in 0..2 {
        advance(&h, 290);
        assert_eq!(api(&mut b).await.status, 200);
    }
    let tokens = h.idp.requests_to("/token");
    assert_eq!(tokens.len(), 3, "code exchange and two refreshes");
    let assertions: HashSet<&str> = tokens
        .iter()
        .map(|r| r.form_param("client_assertion").unwrap())
        .collect();
    assert_eq!(assertions.len(), 3, "a fresh assertion for every request");
    assert_eq!(h.idp.assertion_jtis().len(), 3);

    // The same assertion sent again (here with a valid refresh request) is refused.
    let last = tokens.last().unwrap();
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(last.form.iter())
        .finish();
    let mut replayer = Browser::new();
    let r = replayer
        .post(
            &format!("{}/token", h.idp.issuer()),
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("invalid_client"), "{}", r.body);
    assert_eq!(h.idp.assertion_refusals(), ["replayed jti"]);
    // sealgate itself keeps working: its next refresh has a new assertion.
    advance(&h, 290);
    assert_eq!(api(&mut b).await.status, 200);
    assert_eq!(h.idp.assertion_jtis().len(), 4);
}

/// A failed login: an error page (no redirect), no session, the generic wording.
fn assert_generic_failure(r: &Resp) {
    assert!(
        r.status.is_client_error() || r.status.is_server_error(),
        "{}",
        r.status
    );
    assert!(r.body.contains("Sign-in failed"), "{}", r.body);
    assert!(
        !r.body.contains("eyJ") && !r.body.contains("invalid_client"),
        "no assertion or IdP detail on the page: {}",
        r.body
    );
    assert!(
        r.set_cookies()
            .iter()
            .all(|c| c.name() != "__Host-sealgate.0" || c.value().is_empty()),
        "no session"
    );
}

#[tokio::test]
async fn a_key_the_idp_does_not_know_fails_login_with_the_generic_page() {
    // Both RSA, so only the signature tells them apart: sealgate signs with the fake IdP's own
    // token key instead of the client's.
    let h = start(&CLIENT_RSA, &file_ref("rsa1.pem"), "").await;
    let mut b = h.browser();
    assert_generic_failure(&h.login(&mut b).await);
    assert_eq!(h.idp.assertion_refusals(), ["signature"]);
    assert!(h.idp.assertion_jtis().is_empty());
    assert_eq!(h.user(&mut b).await.status, 401);
    assert_only_assertions(&authenticated_requests(&h));
}

#[tokio::test]
async fn the_audience_is_the_token_endpoint_or_the_issuer_as_configured() {
    // An IdP that wants its issuer refuses the default (token endpoint) audience ...
    let h = Harness::start_edited(
        |b| {
            b.auth_method = AuthMethod::PrivateKeyJwt(&CLIENT_EC384);
            b.assertion_audience = AssertionAudience::Issuer;
        },
        &format!(
            "oidc.token_endpoint_auth = \"private_key_jwt\"\n\
             oidc.client_assertion_key = \"{}\"",
            CLIENT_EC384.config_ref()
        ),
        |toml| toml.replace(SECRET_LINE, ""),
    )
    .await;
    let mut b = h.browser();
    assert_generic_failure(&h.login(&mut b).await);
    let refusals = h.idp.assertion_refusals();
    assert_eq!(refusals.len(), 1);
    assert!(refusals[0].starts_with("aud"), "{refusals:?}");

    // ... and accepts `client_assertion_audience = "issuer"`.
    let h = Harness::start_edited(
        |b| {
            b.auth_method = AuthMethod::PrivateKeyJwt(&CLIENT_EC384);
            b.assertion_audience = AssertionAudience::Issuer;
        },
        &format!(
            "oidc.token_endpoint_auth = \"private_key_jwt\"\n\
             oidc.client_assertion_key = \"{}\"\n\
             oidc.client_assertion_audience = \"issuer\"",
            CLIENT_EC384.config_ref()
        ),
        |toml| toml.replace(SECRET_LINE, ""),
    )
    .await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let token = h.idp.requests_to("/token");
    let (_, claims) = peek_jwt(token[0].form_param("client_assertion").unwrap());
    assert_eq!(claims["aud"], h.idp.issuer(), "one string: the issuer");
}

#[tokio::test]
async fn assertions_live_a_minute_at_most() {
    // `exp` is at most 60 s after `iat`: an IdP whose clock runs 61 s ahead finds every
    // assertion expired, one 50 s ahead still accepts them.
    let h = start(&CLIENT_RSA, &CLIENT_RSA.config_ref(), "").await;
    h.idp.set(|b| b.clock_offset = 61);
    let mut b = h.browser();
    assert_generic_failure(&h.login(&mut b).await);
    assert_eq!(h.idp.assertion_refusals(), ["expired"]);
    h.idp.set(|b| b.clock_offset = 50);
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    assert_eq!(h.idp.assertion_jtis().len(), 1);
}

#[tokio::test]
async fn debug_logs_hold_no_assertion_and_no_key() {
    let idp = FakeIdp::start().await;
    idp.set(|b| b.auth_method = AuthMethod::PrivateKeyJwt(&CLIENT_EC256));
    let upstream = crate::support::upstream::start().await;
    let log = std::env::temp_dir().join(format!("sealgate-pkjwt-{}.log", std::process::id()));
    let extra = format!(
        "oidc.token_endpoint_auth = \"private_key_jwt\"\n\
         oidc.client_assertion_key = \"{}\"\n\
         session.refresh_before = \"1h\"",
        CLIENT_EC256.config_ref()
    );
    let sealgate = Sealgate::spawn_edited(
        &idp,
        upstream,
        Spawn {
            extra: &extra,
            rust_log: "debug",
            log_file: Some(log.clone()),
        },
        |toml| toml.replace(SECRET_LINE, ""),
    )
    .await;
    let mut b = sealgate.browser();
    sealgate.login(&mut b).await;
    let r = b
        .get(&format!("{}/api/orders", PUBLIC), &[("x-csrf", "1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = b
        .post(&format!("{}/bff/logout", PUBLIC), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    drop(sealgate);

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.lines().count() > 10, "debug logging was on");
    let requests = [idp.requests_to("/token"), idp.requests_to("/revoke")].concat();
    assert_eq!(requests.len(), 3, "code exchange, refresh, revocation");
    assert_eq!(idp.assertion_jtis().len(), 3);
    for r in &requests {
        let assertion = r.form_param("client_assertion").unwrap();
        let signature = assertion.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "an assertion in the log");
    }
    assert!(!text.contains("eyJ"), "no JWT in the log");
    let pem = CLIENT_EC256.private_pem();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "key material in the log");
    }
}
