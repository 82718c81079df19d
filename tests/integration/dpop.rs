//! DPoP (RFC 9449), end to end: the fake IdP verifies the proofs on `/token` (and binds the
//! tokens it issues to their key), the echo upstream verifies the proofs of resource requests
//! (`ath`, `htu`, the token's `cnf.jkt`, replays) and can require a nonce.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sealgate::internal::{ChunkSet, Codec, CookieName, KeyRing, Purpose, Session};
use serde_json::Value;

use crate::support::app::{Harness, KEY, PUBLIC};
use crate::support::browser::{Browser, Resp};
use crate::support::dpop::{ath, token_jkt};
use crate::support::idp::{Behaviour, peek_jwt};
use crate::support::upstream::{UPSTREAM_NONCE, dpop_proofs, times_asked};

const CSRF: (&str, &str) = ("x-csrf", "1");

async fn start(setup: impl FnOnce(&mut Behaviour), extra: &str) -> Harness {
    Harness::start_edited(
        |b| {
            b.dpop = true;
            setup(b);
        },
        &format!("oidc.dpop = true\n{extra}"),
        |toml| {
            let upstream = toml
                .lines()
                .find_map(|l| l.strip_prefix("upstream = \"http://"))
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap()
                .to_owned();
            toml.replace("http://UPSTREAM", &format!("http://{upstream}"))
        },
    )
    .await
}

async fn signed_in(h: &Harness) -> Browser {
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "login: {}", r.body);
    b
}

async fn call(b: &mut Browser, path: &str) -> Resp {
    b.get(&Harness::url(path), &[CSRF]).await
}

/// The token the upstream received as `Authorization: DPoP`, and the proof it verified.
fn dpop_call(r: &Resp) -> (String, Value) {
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let auth = j["authorization"].as_str().unwrap();
    let token = auth
        .strip_prefix("DPoP ")
        .unwrap_or_else(|| panic!("not a DPoP token: {auth}"));
    assert!(j["dpop"].is_object(), "the upstream verified a proof: {j}");
    (token.to_owned(), j["dpop"].clone())
}

/// The session in the browser's cookies, opened with the test key.
fn session_of(b: &Browser) -> (Session, Vec<u8>) {
    let key: [u8; 32] = STANDARD.decode(KEY).unwrap().try_into().unwrap();
    let codec = Codec::new(KeyRing::from_bytes(&[key]).unwrap(), 4);
    let name = CookieName::new("__Host-sealgate").unwrap();
    let cookies = b.export_cookies(PUBLIC);
    let pairs = cookies.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let set = ChunkSet::from_pairs(&name, 4, pairs);
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let opened = codec.open(Purpose::Session, &name, &set, now).unwrap();
    let session = Session::decode(opened.payload()).unwrap();
    (session, opened.payload().to_vec())
}

#[tokio::test]
async fn a_dpop_session_calls_the_upstream_with_a_verified_proof_bound_to_its_token() {
    let h = start(|_| {}, "").await;
    let mut b = signed_in(&h).await;
    // The code exchange carried a proof of the key the tokens are now bound to.
    let token_proofs = h.idp.dpop_proofs();
    assert_eq!(token_proofs.len(), 1, "{token_proofs:?}");
    assert_eq!(token_proofs[0].htm, "POST");
    assert_eq!(token_proofs[0].htu, h.idp.endpoint("/token"));
    assert!(h.idp.requests_to("/token")[0].dpop.is_some());

    let r = call(&mut b, "/api/dpop/bound").await;
    let (token, proof) = dpop_call(&r);
    assert_eq!(proof["htm"], "GET");
    let upstream = r.json()["headers"]["host"][0].as_str().unwrap().to_owned();
    assert_eq!(proof["htu"], format!("http://{upstream}/dpop/bound"));
    assert_eq!(proof["ath"], ath(&token));
    let jkt = token_jkt(&token).expect("the access token is bound");
    assert_eq!(proof["jkt"], jkt.as_str());
    assert_eq!(token_proofs[0].jkt, jkt, "the key of the login's proof");
    // The query is not part of htu; a second call has a fresh proof.
    let r = call(&mut b, "/api/dpop/bound?x=1").await;
    let (_, again) = dpop_call(&r);
    assert_eq!(again["htu"], format!("http://{upstream}/dpop/bound"));
    assert_ne!(again["jti"], proof["jti"]);
    // The session records the binding.
    let (session, _) = session_of(&b);
    let dpop = session.dpop.expect("a DPoP session");
    assert_eq!(dpop.token_type, sealgate::internal::TokenType::Dpop);
}

#[tokio::test]
async fn each_session_has_its_own_dpop_key() {
    let h = start(|_| {}, "").await;
    let mut keys = HashSet::new();
    for _ in 0..3 {
        let mut b = signed_in(&h).await;
        let (_, proof) = dpop_call(&call(&mut b, "/api/dpop/own").await);
        keys.insert(proof["jkt"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys.len(), 3, "three sessions, three keys");
}

#[tokio::test]
async fn the_idp_nonce_is_retried_once_and_reused() {
    let h = start(
        |b| b.dpop_nonce = Some("idp-nonce-1".into()),
        "session.refresh_before = \"1h\"",
    )
    .await;
    let mut b = signed_in(&h).await;
    // The exchange: refused once for want of the nonce, then accepted with it.
    assert_eq!(h.idp.dpop_refusals(), ["use_dpop_nonce"]);
    let tokens = h.idp.requests_to("/token");
    assert_eq!(tokens.len(), 2);
    assert_eq!(h.idp.dpop_proofs()[0].nonce.as_deref(), Some("idp-nonce-1"));
    // A refresh (every call refreshes: refresh_before is longer than the token's life) uses
    // the kept nonce at once.
    dpop_call(&call(&mut b, "/api/dpop/idp-nonce").await);
    assert_eq!(h.idp.requests_to("/token").len(), 3, "no second refusal");
    assert_eq!(h.idp.dpop_refusals().len(), 1);
    let refresh = h.idp.dpop_proofs().pop().unwrap();
    assert_eq!(refresh.nonce.as_deref(), Some("idp-nonce-1"));
    // A new nonce: one more refusal and one retry, not a loop.
    h.idp.set(|b| b.dpop_nonce = Some("idp-nonce-2".into()));
    dpop_call(&call(&mut b, "/api/dpop/idp-nonce").await);
    assert_eq!(h.idp.requests_to("/token").len(), 5);
    assert_eq!(h.idp.dpop_refusals().len(), 2);
}

#[tokio::test]
async fn an_upstream_nonce_is_retried_once_for_a_bodiless_request() {
    let h = start(|_| {}, "").await;
    let mut b = signed_in(&h).await;
    let path = "/dpop/nonce-required/bodiless";
    let (_, proof) = dpop_call(&call(&mut b, &format!("/api{path}")).await);
    assert_eq!(proof["nonce"], UPSTREAM_NONCE);
    assert_eq!(
        times_asked(path),
        2,
        "refused once, then retried with the nonce"
    );
    // The nonce is kept for the origin: the next request carries it at once.
    let (_, proof) = dpop_call(&call(&mut b, &format!("/api{path}")).await);
    assert_eq!(proof["nonce"], UPSTREAM_NONCE);
    assert_eq!(times_asked(path), 3);
}

#[tokio::test]
async fn an_upstream_nonce_is_retried_for_a_small_body_and_the_body_arrives_again() {
    let h = start(|_| {}, "").await;
    let mut b = signed_in(&h).await;
    let path = "/dpop/nonce-required/echo-body";
    let r = b
        .post(&Harness::url(&format!("/api{path}")), &[CSRF], "{\"n\":1}")
        .await;
    let (_, proof) = dpop_call(&r);
    assert_eq!(r.json()["body"], "{\"n\":1}", "the retry carried the body");
    assert_eq!(proof["htm"], "POST");
    assert_eq!(proof["nonce"], UPSTREAM_NONCE);
    assert_eq!(times_asked(path), 2);
}

#[tokio::test]
async fn a_replayed_proof_is_refused_by_the_upstream() {
    let h = start(|_| {}, "").await;
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/api/dpop/replay").await;
    let (token, proof) = dpop_call(&r);
    // sealgate itself never reuses a proof: the same call again carries a new jti (and the
    // upstream, which refuses a jti seen before, accepted it).
    let again = call(&mut b, "/api/dpop/replay").await;
    let (_, second) = dpop_call(&again);
    assert_ne!(second["jti"], proof["jti"]);
    let upstream = r.json()["headers"]["host"][0].as_str().unwrap().to_owned();
    let captured = dpop_proofs()
        .into_iter()
        .find(|p| p.jti == proof["jti"].as_str().unwrap())
        .unwrap();
    // A thief with the token and a captured proof, straight to the upstream.
    let client = reqwest_like(&upstream, "/dpop/replay", &token, &captured.proof).await;
    assert_eq!(client.0, 401);
    assert!(client.1.contains("invalid_dpop_proof"), "{}", client.1);
    // And the token alone, as a bearer token, is no use either (no proof at all).
    let bare = reqwest_like(&upstream, "/dpop/replay", &token, "").await;
    assert_eq!(bare.0, 401);
}

/// A GET straight to the upstream with `Authorization: DPoP token` and `proof` (none when
/// empty): its status and `WWW-Authenticate`.
async fn reqwest_like(upstream: &str, path: &str, token: &str, proof: &str) -> (u16, String) {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::get(format!("http://{upstream}{path}"))
        .header("authorization", format!("DPoP {token}"));
    if !proof.is_empty() {
        req = req.header("dpop", proof);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), challenge)
}

#[tokio::test]
async fn refresh_and_route_tokens_are_dpop_bound() {
    let routes = [
        "toml.[[routes]]",
        "toml.prefix = \"/orders\"",
        "toml.upstream = \"http://UPSTREAM\"",
        "toml.resource = \"https://orders.example\"",
        "toml.[[routes]]",
        "toml.prefix = \"/ledger\"",
        "toml.upstream = \"http://UPSTREAM\"",
        "toml.exchange = { audience = \"ledger\" }",
        "toml.[[routes]]",
        "toml.prefix = \"/app\"",
        "toml.upstream = \"http://UPSTREAM\"",
        "toml.token = \"client\"",
        "toml.resource = \"https://app.example\"",
    ]
    .join("\n");
    let h = start(
        |_| {},
        &format!("session.refresh_before = \"1h\"\n{routes}"),
    )
    .await;
    let mut b = signed_in(&h).await;
    let login_jkt = h.idp.dpop_proofs()[0].jkt.clone();
    // The session's refresh: a proof of the session's key, a new token bound to it.
    let (token, proof) = dpop_call(&call(&mut b, "/api/dpop/refreshed").await);
    let refreshes: Vec<_> = h
        .idp
        .requests_to("/token")
        .into_iter()
        .filter(|r| r.form_param("grant_type") == Some("refresh_token"))
        .collect();
    assert!(!refreshes.is_empty(), "a refresh happened");
    assert!(refreshes.iter().all(|r| r.dpop.is_some()));
    assert_eq!(proof["jkt"], login_jkt.as_str());
    assert_eq!(token_jkt(&token).as_deref(), Some(login_jkt.as_str()));
    // A route token for a resource, and one by exchange: bound to the session's key too.
    for (route, aud) in [("/orders", "https://orders.example"), ("/ledger", "ledger")] {
        let (token, proof) = dpop_call(&call(&mut b, &format!("{route}/x")).await);
        assert_eq!(peek_jwt(&token).1["aud"], aud);
        assert_eq!(token_jkt(&token).as_deref(), Some(login_jkt.as_str()));
        assert_eq!(proof["jkt"], login_jkt.as_str());
    }
    // The client token: bound to the instance's key, never the user's, and the same for
    // another user.
    let (client_token, proof) = dpop_call(&call(&mut b, "/app/x").await);
    let client_jkt = proof["jkt"].as_str().unwrap().to_owned();
    assert_ne!(client_jkt, login_jkt);
    assert_eq!(
        token_jkt(&client_token).as_deref(),
        Some(client_jkt.as_str())
    );
    let mut other = signed_in(&h).await;
    let (again, proof) = dpop_call(&call(&mut other, "/app/x").await);
    assert_eq!(again, client_token, "one client token per route");
    assert_eq!(proof["jkt"], client_jkt.as_str());
    // The IdP refused nothing: every bound refresh came with its key's proof.
    assert!(
        h.idp.dpop_refusals().is_empty(),
        "{:?}",
        h.idp.dpop_refusals()
    );
}

#[tokio::test]
async fn an_idp_that_does_not_bind_gets_its_tokens_sent_as_bearer_tokens() {
    let h = start(|b| b.dpop_ignored = true, "").await;
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/api/dpop/ignored").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert!(j["authorization"].as_str().unwrap().starts_with("Bearer "));
    assert!(
        j["headers"].get("dpop").is_none(),
        "no proof with a bearer token"
    );
    let (session, _) = session_of(&b);
    assert_eq!(
        session.dpop.unwrap().token_type,
        sealgate::internal::TokenType::Bearer
    );
}

#[tokio::test]
async fn a_session_from_before_dpop_keeps_working_with_bearer_tokens() {
    // Signed in while dpop was off…
    let h = Harness::start().await;
    let b = signed_in(&h).await;
    let cookies = b.export_cookies(PUBLIC);
    let (session, _) = session_of(&b);
    assert!(session.dpop.is_none());
    // …then the same deployment restarts with dpop = true (same IdP, same keys).
    let running = crate::support::app::try_start(&h.idp, "oidc.dpop = true", h.clock.clone())
        .await
        .unwrap();
    let mut b2 = Browser::new();
    b2.map_origin(PUBLIC, &format!("http://{}", running.addr));
    b2.import_cookies(PUBLIC, cookies);
    let r = b2.get(&Harness::url("/api/dpop/old"), &[CSRF]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert!(j["authorization"].as_str().unwrap().starts_with("Bearer "));
    assert!(j["headers"].get("dpop").is_none());
    // A new login there gets a key.
    let mut fresh = Browser::new();
    fresh.map_origin(PUBLIC, &format!("http://{}", running.addr));
    let auth = {
        let r = fresh
            .get(
                &Harness::url("/bff/login?returnUrl=%2F"),
                &[("sec-fetch-mode", "navigate")],
            )
            .await;
        r.location().unwrap()
    };
    let cb = h.authorize(&mut fresh, &auth).await;
    assert_eq!(fresh.get(&cb, &[]).await.status, 302);
    assert!(session_of(&fresh).0.dpop.is_some());
}

#[tokio::test]
async fn the_key_is_not_readable_in_the_cookie() {
    let h = start(|_| {}, "").await;
    let mut b = signed_in(&h).await;
    let (_, proof) = dpop_call(&call(&mut b, "/api/dpop/cookie").await);
    let (session, plaintext) = session_of(&b);
    assert!(session.dpop.is_some());
    // The plaintext ends with the key: [32, scalar, 65, point, bound].
    let n = plaintext.len();
    assert_eq!(plaintext[n - 100], 32);
    let scalar = &plaintext[n - 99..n - 67];
    let cookies: String = b
        .export_cookies(PUBLIC)
        .into_iter()
        .map(|(n, v)| format!("{n}={v};"))
        .collect();
    let jwk_x = {
        let proofs = dpop_proofs();
        let p = proofs.iter().find(|p| p.jti == proof["jti"]).unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(p.proof.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        header["jwk"]["x"].as_str().unwrap().to_owned()
    };
    for (what, secret) in [
        ("private scalar (base64url)", URL_SAFE_NO_PAD.encode(scalar)),
        ("private scalar (base64)", STANDARD.encode(scalar)),
        ("public x", jwk_x),
    ] {
        assert!(!cookies.contains(&secret), "the cookie shows the {what}");
    }
    // Nor does /bff/user say anything of it.
    let user = h.user(&mut b).await;
    assert!(
        !user.body.contains("jkt") && !user.body.contains("dpop"),
        "{}",
        user.body
    );
}

/// The cookie of a DPoP session against a plain one (run with `--nocapture` for the figures):
/// the key itself, measured by sealing the same session with and without it, and what a
/// login costs end to end (the IdP's bound access token also carries `cnf.jkt`).
#[tokio::test]
async fn a_dpop_key_costs_about_135_bytes_of_cookie() {
    let plain = Harness::start().await;
    let a = signed_in(&plain).await;
    let dpop = start(|_| {}, "").await;
    let b = signed_in(&dpop).await;
    let size = |b: &Browser| -> usize {
        b.export_cookies(PUBLIC)
            .iter()
            .map(|(n, v)| n.len() + 1 + v.len())
            .sum()
    };
    let (plain_login, dpop_login) = (size(&a), size(&b));
    // The same session sealed with and without its key.
    let (with_key, _) = session_of(&b);
    let without_key = Session {
        dpop: None,
        ..with_key.clone()
    };
    let codec = Codec::new(KeyRing::from_bytes(&[[0x11; 32]]).unwrap(), 4);
    let name = CookieName::new("__Host-sealgate").unwrap();
    let sealed = |s: &Session| {
        codec
            .seal(
                Purpose::Session,
                &name,
                s.expires_at(),
                &s.encode().unwrap(),
            )
            .unwrap()
            .cookie_bytes(&name)
    };
    let (bare, keyed) = (sealed(&without_key), sealed(&with_key));
    println!(
        "session cookie: {bare} bytes, {keyed} with its DPoP key (+{}); a login end to end: \
         {plain_login} bytes plain, {dpop_login} with DPoP (+{}, the access token's cnf \
         claim included)",
        keyed - bare,
        dpop_login - plain_login
    );
    // 100 bytes of plaintext, base64url: 134 (one more for a padding boundary).
    assert!((133..=135).contains(&(keyed - bare)), "{}", keyed - bare);
    assert!(dpop_login > plain_login);
}

#[tokio::test]
async fn a_large_body_gets_the_nonce_401_and_the_next_request_uses_the_nonce() {
    let h = start(|_| {}, "").await;
    let mut b = signed_in(&h).await;
    let path = "/dpop/nonce-required/large";
    let body = "x".repeat(64 * 1024 + 1);
    let r = b
        .post(&Harness::url(&format!("/api{path}")), &[CSRF], &body)
        .await;
    assert_eq!(r.status, 401, "passed on, not retried: {}", r.body);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("use_dpop_nonce")),
        "the SPA sees the upstream's challenge"
    );
    assert_eq!(times_asked(path), 1, "sent once");
    // The nonce it gave is used at once by the next request to that upstream.
    let r = b
        .post(&Harness::url(&format!("/api{path}")), &[CSRF], &body)
        .await;
    let (_, proof) = dpop_call(&r);
    assert_eq!(proof["nonce"], UPSTREAM_NONCE);
    assert_eq!(times_asked(path), 2);
}

#[tokio::test]
async fn userinfo_is_called_with_the_bound_token_and_a_proof() {
    let h = start(|_| {}, "oidc.use_userinfo = true").await;
    let _b = signed_in(&h).await;
    let userinfo = h.idp.requests_to("/userinfo");
    assert_eq!(userinfo.len(), 1);
    let auth = userinfo[0].authorization.as_deref().unwrap();
    assert!(auth.starts_with("DPoP "), "{auth}");
    let proofs = h.idp.dpop_proofs();
    let last = proofs.last().unwrap();
    assert_eq!(last.htu, h.idp.endpoint("/userinfo"));
    assert_eq!(last.ath.as_deref(), Some(ath(&auth[5..]).as_str()));
    assert_eq!(last.jkt, proofs[0].jkt, "the session's key");
}

#[tokio::test]
async fn debug_logs_of_a_dpop_session_hold_no_key_proof_or_nonce() {
    use crate::support::idp::FakeIdp;
    use crate::support::process::{Sealgate, Spawn};
    const IDP_NONCE: &str = "idp-nonce-never-logged-42";
    let idp = FakeIdp::start().await;
    idp.set(|b| {
        b.dpop = true;
        b.dpop_nonce = Some(IDP_NONCE.into());
    });
    let upstream = crate::support::upstream::start().await;
    let log = std::env::temp_dir().join(format!("sealgate-dpop-logs-{}.jsonl", std::process::id()));
    let sealgate = Sealgate::spawn(
        &idp,
        upstream,
        Spawn {
            // Every proxied call refreshes: proofs at the IdP on each.
            extra: "oidc.dpop = true\nsession.refresh_before = \"1h\"\ntoml.[log]\ntoml.format = \"json\"",
            rust_log: "debug",
            log_file: Some(log.clone()),
        },
    )
    .await;
    let mut b = sealgate.browser();
    sealgate.login(&mut b).await;
    for _ in 0..2 {
        let r = b
            .get(&format!("{PUBLIC}/api/dpop/nonce-required/logs"), &[CSRF])
            .await;
        dpop_call(&r);
    }
    let (session, plaintext) = session_of(&b);
    assert!(session.dpop.is_some());
    drop(sealgate); // flushes and closes its stderr
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.lines().count() > 20, "debug logging was on");
    assert_eq!(
        idp.dpop_refusals(),
        ["use_dpop_nonce"],
        "the IdP's nonce was used"
    );

    let n = plaintext.len();
    let scalar = &plaintext[n - 99..n - 67];
    let point = &plaintext[n - 66..n - 1];
    let mut secrets = vec![
        ("private scalar", URL_SAFE_NO_PAD.encode(scalar)),
        (
            "private scalar (hex)",
            scalar.iter().map(|b| format!("{b:02x}")).collect(),
        ),
        ("public x", URL_SAFE_NO_PAD.encode(&point[1..33])),
        ("IdP nonce", IDP_NONCE.to_owned()),
        ("upstream nonce", UPSTREAM_NONCE.to_owned()),
    ];
    for p in idp.dpop_proofs().iter().chain(&dpop_proofs()) {
        secrets.push(("proof jti", p.jti.clone()));
        secrets.push(("proof", p.proof[p.proof.len() - 40..].to_owned()));
    }
    for (what, secret) in &secrets {
        assert!(!text.contains(secret.as_str()), "the log contains a {what}");
    }
    assert!(!text.contains("eyJ"), "no JWT (proofs included) in the log");
}

#[tokio::test]
async fn a_copied_refresh_token_is_useless_without_the_key() {
    let h = start(|_| {}, "").await;
    let b = signed_in(&h).await;
    let (session, _) = session_of(&b);
    let refresh = session.refresh_token.unwrap().expose().expose().to_owned();
    // Straight to the token endpoint with the client's own credentials, but no proof.
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        crate::support::app::urlencode(&refresh)
    );
    let mut idp = Browser::new();
    let basic = format!("Basic {}", STANDARD.encode("spa-bff:test-secret"));
    let r = idp
        .post(
            &h.idp.endpoint("/token"),
            &[
                ("authorization", basic.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
    assert_eq!(
        h.idp.dpop_refusals(),
        ["refresh token bound to another key"]
    );
}

#[tokio::test]
async fn a_session_keeps_its_key_after_dpop_is_turned_off() {
    let h = start(|_| {}, "").await;
    let b = signed_in(&h).await;
    let cookies = b.export_cookies(PUBLIC);
    let jkt = h.idp.dpop_proofs()[0].jkt.clone();
    // The same deployment, restarted without dpop, with a refresh on every call.
    let running =
        crate::support::app::try_start(&h.idp, "session.refresh_before = \"1h\"", h.clock.clone())
            .await
            .unwrap();
    let mut b2 = Browser::new();
    b2.map_origin(PUBLIC, &format!("http://{}", running.addr));
    b2.import_cookies(PUBLIC, cookies);
    let r = b2.get(&Harness::url("/api/dpop/kept"), &[CSRF]).await;
    let (token, proof) = dpop_call(&r);
    assert_eq!(proof["jkt"], jkt.as_str(), "its own key still signs");
    assert_eq!(token_jkt(&token).as_deref(), Some(jkt.as_str()));
    assert!(h.idp.dpop_refusals().is_empty(), "the bound refresh worked");
}

#[tokio::test]
async fn a_body_read_ahead_for_a_proof_is_bounded_by_the_routes_timeout() {
    let h = start(
        |_| {},
        "toml.[[routes]]\ntoml.prefix = \"/slow\"\ntoml.upstream = \"http://UPSTREAM\"\ntoml.timeout = \"1s\"",
    )
    .await;
    let b = signed_in(&h).await;
    let cookie = b.cookie_header(PUBLIC);
    let addr = h.running.addr;
    // A declared 100-byte body of which 10 bytes come, then nothing.
    let status = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST /slow/x HTTP/1.1\r\nHost: app.example.com\r\nX-CSRF: 1\r\nCookie: {cookie}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n0123456789"
        );
        s.write_all(head.as_bytes()).unwrap();
        let started = std::time::Instant::now();
        let status = crate::support::raw::read_status(&mut s);
        (status, started.elapsed())
    })
    .await
    .unwrap();
    assert!(status.0.contains(" 408 "), "{}", status.0);
    assert!(
        status.1 < std::time::Duration::from_secs(5),
        "{:?}",
        status.1
    );
}
