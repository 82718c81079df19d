//! `POST /bff/backchannel-logout` (OIDC Back-Channel Logout 1.0) against the real server and
//! the fake IdP: what a valid logout token ends, what a replay changes (nothing), every
//! validation failure (400, no-store, nothing recorded), request shapes, key rotation, and that
//! a flood of garbage never turns into a JWKS fetch per token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::app::{Harness, PUBLIC, urlencode};
use crate::support::browser::{Browser, Resp};
use crate::support::idp::{BACKCHANNEL_LOGOUT_EVENT, EVIL_ISSUER, WRONG_AUD, sign_jws};

const ENDPOINT: &str = "/bff/backchannel-logout";
const FORM: &str = "application/x-www-form-urlencoded";

/// Posts a form body as the IdP would: a fresh client, no cookies, no anti-forgery header.
async fn post(h: &Harness, content_type: Option<&str>, body: &str) -> Resp {
    let mut headers = Vec::new();
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    h.browser()
        .post(&Harness::url(ENDPOINT), &headers, body)
        .await
}

async fn deliver(h: &Harness, token: &str) -> Resp {
    post(h, Some(FORM), &format!("logout_token={}", urlencode(token))).await
}

fn assert_accepted(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.body.is_empty(), "{:?}", r.body);
}

fn assert_invalid(r: &Resp) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.json(), json!({ "error": "invalid_request" }));
}

async fn api(b: &mut Browser) -> u16 {
    b.get(&Harness::url("/api/orders"), &[("x-csrf", "1")])
        .await
        .status
        .as_u16()
}

async fn user(h: &Harness, b: &mut Browser) -> u16 {
    h.user(b).await.status.as_u16()
}

/// A browser logged in as the IdP's current user with IdP session `sid`.
async fn login_with_sid(h: &Harness, sid: &str) -> Browser {
    h.idp.set(|b| b.sid = Some(sid.to_owned()));
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    assert_eq!(user(h, &mut b).await, 200);
    b
}

fn jwks_fetches(h: &Harness) -> usize {
    h.idp.requests_to("/jwks").len()
}

/// `claims` signed by the IdP's current key with exactly `header`.
fn signed(h: &Harness, header: Value, claims: Map<String, Value>) -> String {
    sign_jws(
        &header,
        &Value::Object(claims),
        h.idp.current_key().encoding(),
        Algorithm::RS256,
    )
}

fn header_with_typ(h: &Harness, typ: Option<&str>) -> Value {
    let mut header = json!({ "alg": "RS256", "kid": h.idp.current_kid() });
    if let Some(typ) = typ {
        header["typ"] = json!(typ);
    }
    header
}

fn iat(claims: &Map<String, Value>) -> i64 {
    claims["iat"].as_i64().unwrap()
}

#[tokio::test]
async fn a_logout_by_sid_ends_that_session_and_no_other() {
    let h = Harness::start().await;
    let mut a = login_with_sid(&h, "sid-a").await;
    let mut b = login_with_sid(&h, "sid-b").await;
    assert_eq!(api(&mut a).await, 200);

    // sid and sub both present: only the sid's session ends (the same user's other stays).
    let token = h.idp.logout_token(|c| {
        c.insert("sid".into(), json!("sid-a"));
    });
    assert_accepted(&deliver(&h, &token).await);

    assert_eq!(user(&h, &mut a).await, 401, "/bff/user after the logout");
    assert_eq!(api(&mut a).await, 401, "/api after the logout");
    assert_eq!(
        user(&h, &mut b).await,
        200,
        "another IdP session of the user"
    );
    assert_eq!(api(&mut b).await, 200);
}

#[tokio::test]
async fn a_logout_by_sub_alone_ends_every_session_of_the_user_and_relogin_works() {
    let h = Harness::start().await;
    let mut a = login_with_sid(&h, "sid-a").await;
    let mut b = login_with_sid(&h, "sid-b").await;
    h.idp.set(|b| b.user_sub = "bob".into());
    let mut bob = login_with_sid(&h, "sid-bob").await;
    h.idp.set(|b| b.user_sub = "alice".into());
    let old_a = a.export_cookies(PUBLIC);
    let old_b = b.export_cookies(PUBLIC);

    let token = h.idp.logout_token(|c| {
        c.remove("sid");
    });
    assert_accepted(&deliver(&h, &token).await);
    for browser in [&mut a, &mut b] {
        assert_eq!(user(&h, browser).await, 401);
        assert_eq!(api(browser).await, 401);
    }
    assert_eq!(
        user(&h, &mut bob).await,
        200,
        "another user is not affected"
    );

    // At once (the same second, a few milliseconds later): the new login is stamped past the
    // logout it follows, so its first calls work (no login loop until the second turns).
    let mut again = login_with_sid(&h, "sid-a2").await;
    assert_eq!(h.user(&mut again).await.json()["sub"], "alice");
    assert_eq!(api(&mut again).await, 200);
    // The entry was not cleared by the new login: the old cookies stay dead.
    for old in [old_a, old_b] {
        let mut thief = h.browser();
        thief.import_cookies(PUBLIC, old);
        assert_eq!(user(&h, &mut thief).await, 401);
        assert_eq!(api(&mut thief).await, 401);
    }
}

#[tokio::test]
async fn a_relogin_at_once_after_a_logout_works_and_a_second_logout_at_once_ends_it() {
    let h = Harness::start().await;
    for round in 0..3 {
        // The IdP reuses the IdP session id: the sid-wide logout must not catch the re-login.
        let mut before = login_with_sid(&h, "sid-r").await;
        let by_sid = h.idp.logout_token(|c| {
            c.insert("sid".into(), json!("sid-r"));
        });
        assert_accepted(&deliver(&h, &by_sid).await);
        assert_eq!(api(&mut before).await, 401, "round {round}");
        let mut after = login_with_sid(&h, "sid-r").await;
        assert_eq!(
            api(&mut after).await,
            200,
            "round {round}: the re-login works"
        );

        // A sub-wide logout right after still ends the re-login (a later revocation catches
        // every session stamped before it, however close).
        let by_sub = h.idp.logout_token(|c| {
            c.remove("sid");
        });
        assert_accepted(&deliver(&h, &by_sub).await);
        assert_eq!(api(&mut after).await, 401, "round {round}");
        assert_eq!(user(&h, &mut after).await, 401, "round {round}");
        let mut again = login_with_sid(&h, "sid-r2").await;
        assert_eq!(api(&mut again).await, 200, "round {round}");
    }
}

#[tokio::test]
async fn a_replayed_logout_token_changes_nothing() {
    let h = Harness::start().await;
    let mut first = login_with_sid(&h, "sid-1").await;
    let token = h.idp.logout_token(|_| {});
    assert_accepted(&deliver(&h, &token).await);
    assert_eq!(user(&h, &mut first).await, 401);

    // A new session of the same IdP session id, after the logout.
    h.clock.advance(2);
    let mut later = login_with_sid(&h, "sid-1").await;
    // The replay is answered 200 and must not move the not-before over the new session.
    assert_accepted(&deliver(&h, &token).await);
    assert_eq!(
        user(&h, &mut later).await,
        200,
        "replay ended a later session"
    );
    assert_eq!(api(&mut later).await, 200);

    // A genuinely new logout token (new jti) still works.
    h.clock.advance(2);
    assert_accepted(&deliver(&h, &h.idp.logout_token(|_| {})).await);
    assert_eq!(user(&h, &mut later).await, 401);
}

#[tokio::test]
async fn an_unknown_sid_is_accepted_and_ends_nothing() {
    let h = Harness::start().await;
    let mut b = login_with_sid(&h, "sid-1").await;
    let token = h.idp.logout_token(|c| {
        c.insert("sid".into(), json!("no-such-session"));
        c.remove("sub");
    });
    assert_accepted(&deliver(&h, &token).await);
    assert_eq!(user(&h, &mut b).await, 200);
}

/// A refused token: 400 `invalid_request` with no-store, nothing recorded, the session alive.
async fn refused(make: impl FnOnce(&Harness) -> String) {
    let h = Harness::start().await;
    let mut b = login_with_sid(&h, "idp-sid-1").await;
    let token = make(&h);
    assert_invalid(&deliver(&h, &token).await);
    assert!(h.running.revocation_count() == 0, "nothing may be revoked");
    assert_eq!(user(&h, &mut b).await, 200);
}

fn edited(h: &Harness, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    h.idp.logout_token(edit)
}

macro_rules! refused_tests {
    ($($name:ident => $make:expr,)*) => {$(
        #[tokio::test]
        async fn $name() {
            refused($make).await;
        }
    )*};
}

refused_tests! {
    bad_signature_is_refused => |h: &Harness| {
        let token = h.idp.logout_token(|_| {});
        let (message, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[7] ^= 1;
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes))
    },
    alg_none_is_refused => |h: &Harness| {
        let claims = h.idp.logout_claims(|_| {});
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!(
            "{}.{}.",
            b64(&json!({ "alg": "none", "typ": "logout+jwt" })),
            b64(&Value::Object(claims))
        )
    },
    hs256_keyed_with_the_public_key_is_refused => |h: &Harness| {
        let claims = h.idp.logout_claims(|_| {});
        sign_jws(
            &json!({ "alg": "HS256", "typ": "logout+jwt", "kid": h.idp.current_kid() }),
            &Value::Object(claims),
            &EncodingKey::from_secret(h.idp.public_key_pem().as_bytes()),
            Algorithm::HS256,
        )
    },
    wrong_iss_is_refused => |h: &Harness| edited(h, |c| drop(c.insert("iss".into(), json!(EVIL_ISSUER)))),
    wrong_aud_is_refused => |h: &Harness| edited(h, |c| drop(c.insert("aud".into(), json!(WRONG_AUD)))),
    // Without `exp` (Back-Channel Logout draft 06), `iat` plus max_logout_token_age is the limit.
    missing_exp_with_an_old_iat_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.remove("exp");
        c.insert("iat".into(), json!(now - 7200));
    }),
    expired_token_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("iat".into(), json!(now - 200));
        c.insert("exp".into(), json!(now - 100));
    }),
    iat_in_the_future_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("iat".into(), json!(now + 3600));
        c.insert("exp".into(), json!(now + 3720));
    }),
    missing_iat_is_refused => |h: &Harness| edited(h, |c| drop(c.remove("iat"))),
    nbf_in_the_future_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("nbf".into(), json!(now + 3600));
    }),
    iat_as_a_string_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("iat".into(), json!(now.to_string()));
    }),
    exp_as_a_string_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("exp".into(), json!((now + 60).to_string()));
    }),
    nbf_as_a_string_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("nbf".into(), json!(now.to_string()));
    }),
    auth_time_as_a_string_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("auth_time".into(), json!(now.to_string()));
    }),
    token_older_than_the_maximum_age_is_refused => |h: &Harness| edited(h, |c| {
        let now = iat(c);
        c.insert("iat".into(), json!(now - 600));
        c.insert("exp".into(), json!(now + 60));
    }),
    missing_jti_is_refused => |h: &Harness| edited(h, |c| drop(c.remove("jti"))),
    missing_events_is_refused => |h: &Harness| edited(h, |c| drop(c.remove("events"))),
    events_without_the_logout_member_is_refused => |h: &Harness| edited(h, |c| {
        c.insert("events".into(), json!({ "http://example.com/other-event": {} }));
    }),
    events_member_that_is_not_an_object_is_refused => |h: &Harness| edited(h, |c| {
        c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: "logout" }));
    }),
    nonce_is_refused => |h: &Harness| edited(h, |c| drop(c.insert("nonce".into(), json!("n-1")))),
    neither_sid_nor_sub_is_refused => |h: &Harness| edited(h, |c| {
        c.remove("sid");
        c.remove("sub");
    }),
    typ_at_jwt_is_refused => |h: &Harness| {
        let claims = h.idp.logout_claims(|_| {});
        signed(h, header_with_typ(h, Some("at+jwt")), claims)
    },
    an_algorithm_the_client_never_registered_is_refused => |h: &Harness| {
        // PS256 with the IdP's own RSA key (its kid is in the JWKS): the client registered RS256.
        sign_jws(
            &json!({ "alg": "PS256", "typ": "logout+jwt", "kid": h.idp.current_kid() }),
            &Value::Object(h.idp.logout_claims(|_| {})),
            h.idp.current_key().encoding(),
            Algorithm::PS256,
        )
    },
    unknown_key_is_refused_after_one_refetch => |h: &Harness| {
        let key = h.idp.other_key();
        sign_jws(
            &json!({ "alg": "RS256", "typ": "logout+jwt", "kid": key.kid }),
            &Value::Object(h.idp.logout_claims(|_| {})),
            key.encoding(),
            Algorithm::RS256,
        )
    },
}

#[tokio::test]
async fn typ_jwt_or_no_typ_is_accepted_by_default() {
    let h = Harness::start().await;
    for typ in [Some("JWT"), None, Some("application/logout+jwt")] {
        let mut b = login_with_sid(&h, "sid-1").await;
        let token = signed(&h, header_with_typ(&h, typ), h.idp.logout_claims(|_| {}));
        assert_accepted(&deliver(&h, &token).await);
        assert_eq!(user(&h, &mut b).await, 401, "{typ:?}");
        h.clock.advance(2);
    }
}

#[tokio::test]
async fn the_strict_typ_setting_refuses_jwt_and_no_typ() {
    let h = Harness::start_with(|_| {}, "oidc.strict_logout_token_typ = true").await;
    let mut b = login_with_sid(&h, "sid-1").await;
    for typ in [Some("JWT"), None] {
        let token = signed(&h, header_with_typ(&h, typ), h.idp.logout_claims(|_| {}));
        assert_invalid(&deliver(&h, &token).await);
        assert_eq!(user(&h, &mut b).await, 200, "{typ:?}");
    }
    assert_accepted(&deliver(&h, &h.idp.logout_token(|_| {})).await);
    assert_eq!(user(&h, &mut b).await, 401);
}

#[tokio::test]
async fn get_and_other_methods_are_405() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = b.get(&Harness::url(ENDPOINT), &[]).await;
    assert_eq!(r.status, 405);
    let r = b
        .request(
            http::Method::PUT,
            &Harness::url(ENDPOINT),
            &[("content-type", FORM)],
            "",
        )
        .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn a_body_that_is_not_a_form_is_400() {
    let h = Harness::start().await;
    let mut b = login_with_sid(&h, "idp-sid-1").await;
    let token = h.idp.logout_token(|_| {});
    let form = format!("logout_token={}", urlencode(&token));
    let json_body = json!({ "logout_token": token }).to_string();
    for (content_type, body) in [
        (Some("text/plain"), form.as_str()),
        (Some("application/json"), json_body.as_str()),
        (None, form.as_str()),
    ] {
        assert_invalid(&post(&h, content_type, body).await);
    }
    assert_eq!(user(&h, &mut b).await, 200, "nothing was revoked");
    // The same token as a form works (it was never recorded as seen).
    assert_accepted(&deliver(&h, &token).await);
}

#[tokio::test]
async fn a_body_over_16_kib_is_413() {
    let h = Harness::start().await;
    let body = format!("logout_token={}", "a".repeat(17 * 1024));
    let r = post(&h, Some(FORM), &body).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");

    // Also when the length is not declared (chunked).
    let mut s = tokio::net::TcpStream::connect(h.running.addr)
        .await
        .unwrap();
    let chunk = "a".repeat(1024);
    let mut request = format!(
        "POST {ENDPOINT} HTTP/1.1\r\nhost: app.example.com\r\ncontent-type: {FORM}\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\nlogout_token=\r\n",
        "logout_token=".len()
    );
    for _ in 0..17 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
}

#[tokio::test]
async fn logout_token_must_appear_exactly_once() {
    let h = Harness::start().await;
    let token = urlencode(&h.idp.logout_token(|_| {}));
    for body in [
        format!("logout_token={token}&logout_token={token}"),
        "logout_token=".to_owned(),
        "token=x".to_owned(),
        String::new(),
    ] {
        assert_invalid(&post(&h, Some(FORM), &body).await);
    }
    assert!(h.running.revocation_count() == 0);
}

#[tokio::test]
async fn no_anti_forgery_header_session_or_allowed_origin_is_needed() {
    let h = Harness::start().await;
    let mut b = login_with_sid(&h, "idp-sid-1").await;
    let token = h.idp.logout_token(|_| {});
    // Server to server: the browser CSRF rules do not apply; the signed token is the credential.
    let r = h
        .browser()
        .post(
            &Harness::url(ENDPOINT),
            &[
                ("content-type", FORM),
                ("origin", "https://idp.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            &format!("logout_token={}", urlencode(&token)),
        )
        .await;
    assert_accepted(&r);
    assert_eq!(user(&h, &mut b).await, 401);
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_and_accepted() {
    let h = Harness::start().await;
    let mut b = login_with_sid(&h, "sid-1").await;
    let before = jwks_fetches(&h);
    h.idp.rotate_key();
    assert_accepted(&deliver(&h, &h.idp.logout_token(|_| {})).await);
    assert_eq!(jwks_fetches(&h), before + 1, "the new kid is fetched once");
    assert_eq!(user(&h, &mut b).await, 401);
    // The next token under the new key needs no fetch.
    assert_accepted(&deliver(&h, &h.idp.logout_token(|c| drop(c.remove("sid")))).await);
    assert_eq!(jwks_fetches(&h), before + 1);
}

#[tokio::test]
async fn a_flood_of_garbage_fetches_the_jwks_at_most_once() {
    let h = Harness::start().await;
    let mut b = login_with_sid(&h, "idp-sid-1").await;
    let before = jwks_fetches(&h);
    let other = h.idp.other_key();
    for i in 0..50 {
        let token = match i % 5 {
            0 => format!("garbage-{i}"),
            1 => format!("a{i}.b.c"),
            // Well-formed claims under a key the IdP never published.
            2 | 3 => sign_jws(
                &json!({ "alg": "RS256", "typ": "logout+jwt", "kid": format!("kid-{i}") }),
                &Value::Object(h.idp.logout_claims(|_| {})),
                other.encoding(),
                Algorithm::RS256,
            ),
            // Unknown kid, invalid claims: refused before any key is looked up.
            _ => sign_jws(
                &json!({ "alg": "RS256", "kid": format!("kid-{i}") }),
                &Value::Object(h.idp.logout_claims(|c| drop(c.remove("events")))),
                other.encoding(),
                Algorithm::RS256,
            ),
        };
        assert_invalid(&deliver(&h, &token).await);
    }
    let fetched = jwks_fetches(&h) - before;
    assert!(fetched <= 1, "{fetched} JWKS fetches for 50 garbage tokens");
    assert!(h.running.revocation_count() == 0);
    assert_eq!(user(&h, &mut b).await, 200);
}

#[tokio::test]
async fn a_body_that_never_finishes_is_cut_off() {
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.running.addr)
        .await
        .unwrap();
    let head = format!(
        "POST {ENDPOINT} HTTP/1.1\r\nhost: app.example.com\r\ncontent-type: {FORM}\r\n\
         content-length: 100\r\n\r\nlogout_token="
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    tokio::time::timeout(
        std::time::Duration::from_secs(15),
        s.read_exact(&mut status),
    )
    .await
    .expect("answered within the body read timeout")
    .unwrap();
    assert_eq!(&status, b"HTTP/1.1 408");
}
