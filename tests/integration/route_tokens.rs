//! Routes' own tokens, end to end with the fake IdP (which mints a token whose `aud` is the
//! route's resource, exchanges live access tokens and issues client tokens with the client as
//! `sub`) and the echo upstream (which reports the `Authorization` it received): `resource` and
//! `scopes` (a refresh-token grant per route), `exchange` (RFC 8693), `token = "client"` and
//! `"user_or_client"` (client credentials); single flight, reuse until due, failures that spare
//! the session, and refresh-token rotation by a route grant.

use serde_json::Value;

use crate::support::app::{Harness, PUBLIC};
use crate::support::browser::{Browser, Resp};
use crate::support::idp::{
    ACCESS_TOKEN_AUD, ACCESS_TOKEN_TYPE, Behaviour, TOKEN_EXCHANGE, peek_jwt,
};

const CSRF: (&str, &str) = ("x-csrf", "1");

/// `toml.` lines for one more `[[routes]]` entry to the echo upstream.
fn route(prefix: &str, lines: &[&str]) -> String {
    let mut out = format!(
        "toml.[[routes]]\ntoml.prefix = \"{prefix}\"\ntoml.upstream = \"http://UPSTREAM\"\n"
    );
    for l in lines {
        out.push_str(&format!("toml.{l}\n"));
    }
    out
}

/// A harness whose extra routes go to the same echo upstream as `/api`.
async fn start(setup: impl FnOnce(&mut Behaviour), extra: &str) -> Harness {
    Harness::start_edited(setup, extra, |toml| {
        let upstream = toml
            .lines()
            .find_map(|l| l.strip_prefix("upstream = \"http://"))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap()
            .to_owned();
        toml.replace("http://UPSTREAM", &format!("http://{upstream}"))
    })
    .await
}

/// `/orders` for a resource, `/billing` for an Entra-style scope, `/ledger` by exchange.
fn three_routes() -> String {
    [
        route("/orders", &["resource = \"https://orders.example\""]),
        route("/billing", &["scopes = [\"api://billing/.default\"]"]),
        route(
            "/ledger",
            &["exchange = { audience = \"ledger\", scope = \"ledger:read\" }"],
        ),
    ]
    .concat()
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

/// The bearer token the upstream received (panics unless the call reached it with one).
fn bearer(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let auth = j["headers"]["authorization"].as_array().unwrap();
    assert_eq!(auth.len(), 1, "one Authorization header: {j}");
    auth[0]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned()
}

fn claims(token: &str) -> Value {
    peek_jwt(token).1
}

/// Token-endpoint requests with this `grant_type` and, when given, this form parameter.
fn grants(h: &Harness, grant_type: &str, with: Option<(&str, &str)>) -> usize {
    h.idp
        .requests_to("/token")
        .iter()
        .filter(|r| r.form_param("grant_type") == Some(grant_type))
        .filter(|r| with.is_none_or(|(k, v)| r.form_param(k) == Some(v)))
        .count()
}

/// Plain refresh grants of the session (no resource, no scope).
fn session_refreshes(h: &Harness) -> usize {
    h.idp
        .requests_to("/token")
        .iter()
        .filter(|r| r.form_param("grant_type") == Some("refresh_token"))
        .filter(|r| r.form_param("resource").is_none() && r.form_param("scope").is_none())
        .count()
}

fn cleared(r: &Resp) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| c.name().starts_with("__Host-sealgate") && c.value().is_empty())
}

#[tokio::test]
async fn routes_with_different_resources_get_different_tokens_each_only_its_own() {
    let h = start(|_| {}, &three_routes()).await;
    let mut b = signed_in(&h).await;
    let session = bearer(&call(&mut b, "/api/own").await);
    assert_eq!(claims(&session)["aud"], ACCESS_TOKEN_AUD);
    let orders = call(&mut b, "/orders/resource").await;
    let orders_token = bearer(&orders);
    let c = claims(&orders_token);
    assert_eq!(
        (c["aud"].as_str(), c["sub"].as_str()),
        (Some("https://orders.example"), Some("alice"))
    );
    let billing_token = bearer(&call(&mut b, "/billing/scope").await);
    let c = claims(&billing_token);
    assert_eq!(c["aud"], "api://billing");
    assert_eq!(c["scope"], "api://billing/.default");
    let tokens = [&session, &orders_token, &billing_token];
    for (i, t) in tokens.iter().enumerate() {
        for u in &tokens[i + 1..] {
            assert_ne!(t, u);
        }
    }
    // Each route got its own and nothing else, whatever order they are called in.
    for (path, own) in [
        ("/api/x", &session),
        ("/billing/y", &billing_token),
        ("/orders/z", &orders_token),
        ("/api/w", &session),
    ] {
        let r = call(&mut b, path).await;
        assert_eq!(&bearer(&r), own, "{path}");
        for other in tokens.iter().filter(|t| **t != own) {
            assert!(
                !r.body.contains(other.as_str()),
                "{path} saw another route's token"
            );
        }
    }
    // The grants: the session's refresh token with the route's resource / scope, once each.
    let with_resource = h
        .idp
        .requests_to("/token")
        .into_iter()
        .find(|r| r.form_param("resource").is_some())
        .unwrap();
    assert_eq!(
        with_resource.form_param("grant_type"),
        Some("refresh_token")
    );
    assert_eq!(
        with_resource.form_param("resource"),
        Some("https://orders.example")
    );
    assert_eq!(with_resource.form_param("scope"), None);
    assert!(
        with_resource
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    );
    assert_eq!(
        grants(
            &h,
            "refresh_token",
            Some(("resource", "https://orders.example"))
        ),
        1
    );
    assert_eq!(
        grants(
            &h,
            "refresh_token",
            Some(("scope", "api://billing/.default"))
        ),
        1
    );
    assert_eq!(
        session_refreshes(&h),
        0,
        "the session's own token was fresh"
    );
}

#[tokio::test]
async fn a_route_token_is_minted_once_for_fifty_concurrent_requests() {
    let h = start(|_| {}, &three_routes()).await;
    let b = signed_in(&h).await;
    let cookies = b.export_cookies(PUBLIC);
    // A slow grant: the 50 requests are all in flight while it runs (not cache hits after it).
    h.idp
        .set(|b| b.response_delay = Some(std::time::Duration::from_millis(300)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let mut b = h.browser();
        b.import_cookies(PUBLIC, cookies.clone());
        tasks.spawn(async move { call(&mut b, &format!("/orders/concurrent/{i}")).await });
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        seen.insert(bearer(&r.unwrap()));
    }
    assert_eq!(seen.len(), 1, "every request got the same token");
    assert_eq!(
        grants(
            &h,
            "refresh_token",
            Some(("resource", "https://orders.example"))
        ),
        1
    );
}

#[tokio::test]
async fn a_route_token_is_reused_until_it_nears_expiry_then_minted_again() {
    let h = start(|b| b.route_token_lifetime = Some(120), &three_routes()).await;
    let mut b = signed_in(&h).await;
    let first = bearer(&call(&mut b, "/orders/reuse").await);
    h.clock.advance(85); // 35 s left: not yet within refresh_before (30 s)
    assert_eq!(bearer(&call(&mut b, "/orders/reuse").await), first);
    assert_eq!(
        grants(
            &h,
            "refresh_token",
            Some(("resource", "https://orders.example"))
        ),
        1
    );
    h.clock.advance(10); // 25 s left
    let second = bearer(&call(&mut b, "/orders/reuse").await);
    assert_ne!(second, first, "minted again before it expires");
    assert_eq!(
        grants(
            &h,
            "refresh_token",
            Some(("resource", "https://orders.example"))
        ),
        2
    );
    assert_eq!(bearer(&call(&mut b, "/orders/reuse").await), second);
    assert_eq!(
        session_refreshes(&h),
        0,
        "the session's token (300 s) was not due"
    );
}

#[tokio::test]
async fn token_exchange_sends_the_session_token_and_the_result_only_to_its_route() {
    let h = start(|_| {}, &three_routes()).await;
    let mut b = signed_in(&h).await;
    let session = bearer(&call(&mut b, "/api/exchange").await);
    let exchanged = bearer(&call(&mut b, "/ledger/entries").await);
    let c = claims(&exchanged);
    assert_eq!(
        (c["aud"].as_str(), c["sub"].as_str()),
        (Some("ledger"), Some("alice"))
    );
    assert_eq!(c["scope"], "ledger:read");
    let sent = h
        .idp
        .requests_to("/token")
        .into_iter()
        .find(|r| r.form_param("grant_type") == Some(TOKEN_EXCHANGE))
        .unwrap();
    assert_eq!(sent.form_param("subject_token"), Some(session.as_str()));
    assert_eq!(
        sent.form_param("subject_token_type"),
        Some(ACCESS_TOKEN_TYPE)
    );
    assert_eq!(
        sent.form_param("requested_token_type"),
        Some(ACCESS_TOKEN_TYPE)
    );
    assert_eq!(sent.form_param("audience"), Some("ledger"));
    assert_eq!(sent.form_param("scope"), Some("ledger:read"));
    assert_eq!(sent.form_param("resource"), None);
    assert!(
        sent.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "client authentication"
    );
    // The exchanged token stays on its route; the session's stays on its own.
    assert_eq!(bearer(&call(&mut b, "/api/again").await), session);
    assert_eq!(bearer(&call(&mut b, "/ledger/again").await), exchanged);
    assert_eq!(grants(&h, TOKEN_EXCHANGE, None), 1);
}

fn client_routes() -> String {
    [
        route(
            "/reports",
            &[
                "token = \"client\"",
                "resource = \"https://reports.example\"",
            ],
        ),
        route(
            "/catalog",
            &["token = \"user_or_client\"", "scopes = [\"catalog.read\"]"],
        ),
    ]
    .concat()
}

#[tokio::test]
async fn a_client_token_is_shared_by_every_caller_carries_no_user_and_is_renewed_before_expiry() {
    let h = start(|b| b.route_token_lifetime = Some(120), &client_routes()).await;
    let mut alice = signed_in(&h).await;
    h.idp.set(|b| b.user_sub = "bob".into());
    let mut bob = signed_in(&h).await;
    let mut anonymous = h.browser();
    let mut tokens = std::collections::HashSet::new();
    for b in [&mut alice, &mut bob, &mut anonymous] {
        let r = call(b, "/reports/monthly").await;
        assert!(
            r.set_cookies().is_empty(),
            "no session cookie written: {:?}",
            r.set_cookies()
        );
        tokens.insert(bearer(&r));
    }
    assert_eq!(tokens.len(), 1, "one token for every caller");
    let token = tokens.into_iter().next().unwrap();
    let c = claims(&token);
    assert_eq!(c["sub"], "spa-bff", "the client, no user");
    assert_eq!(c["aud"], "https://reports.example");
    assert!(
        !token.contains("alice")
            && !c.to_string().contains("alice")
            && !c.to_string().contains("bob")
    );
    let sent = h
        .idp
        .requests_to("/token")
        .into_iter()
        .find(|r| r.form_param("grant_type") == Some("client_credentials"))
        .unwrap();
    assert_eq!(sent.form_param("resource"), Some("https://reports.example"));
    assert_eq!(sent.form_param("refresh_token"), None);
    assert_eq!(grants(&h, "client_credentials", None), 1);
    // A session cookie is not even read: garbage is neither refused nor cleared.
    let r = h
        .browser()
        .get(
            &Harness::url("/reports/x"),
            &[CSRF, ("cookie", "__Host-sealgate.0=garbage")],
        )
        .await;
    assert_eq!(bearer(&r), token);
    assert!(r.set_cookies().is_empty());
    // Renewed before it expires.
    h.clock.advance(95);
    let renewed = bearer(&call(&mut anonymous, "/reports/monthly").await);
    assert_ne!(renewed, token);
    assert_eq!(grants(&h, "client_credentials", None), 2);
    assert_eq!(bearer(&call(&mut alice, "/reports/monthly").await), renewed);
}

#[tokio::test]
async fn user_or_client_sends_the_users_token_with_a_session_and_the_clients_without() {
    let h = start(|_| {}, &client_routes()).await;
    let anonymous = bearer(&call(&mut h.browser(), "/catalog/items").await);
    assert_eq!(claims(&anonymous)["sub"], "spa-bff");
    let mut b = signed_in(&h).await;
    let user = bearer(&call(&mut b, "/catalog/items").await);
    let c = claims(&user);
    assert_eq!(
        (c["sub"].as_str(), c["scope"].as_str()),
        (Some("alice"), Some("catalog.read"))
    );
    assert_eq!(
        grants(&h, "client_credentials", Some(("scope", "catalog.read"))),
        1
    );
    assert_eq!(
        grants(&h, "refresh_token", Some(("scope", "catalog.read"))),
        1
    );
    // Anonymous again: the client token, kept.
    assert_eq!(
        bearer(&call(&mut h.browser(), "/catalog/items").await),
        anonymous
    );
}

#[tokio::test]
async fn a_failed_route_grant_names_the_route_and_spares_the_session() {
    let h = start(|_| {}, &[three_routes(), client_routes()].concat()).await;
    let mut b = signed_in(&h).await;
    for (status, error, answer, title) in [
        (400, "invalid_target", 401, "route_token_refused"),
        (
            503,
            "temporarily_unavailable",
            502,
            "route_token_unavailable",
        ),
    ] {
        h.idp
            .set(|b| b.route_grant_error = Some((status, error.into())));
        for path in ["/orders/fail", "/ledger/fail"] {
            let r = call(&mut b, path).await;
            assert_eq!(r.status.as_u16(), answer, "{path}: {}", r.body);
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/problem+json")
            );
            let p = r.json();
            assert_eq!(p["error"], title, "{p}");
            assert_eq!(p["route"], path.rsplit_once('/').unwrap().0, "{p}");
            assert!(!r.body.contains(error), "no IdP detail: {}", r.body);
            assert!(!cleared(&r), "{path}: the cookie is not cleared");
        }
        // A client token is nothing the caller can fix: 502 either way.
        let r = call(&mut h.browser(), "/reports/fail").await;
        assert_eq!(r.status, 502, "{}", r.body);
        assert_eq!(r.json()["route"], "/reports");
        // The session's other routes and the session itself are fine.
        assert_eq!(call(&mut b, "/api/still").await.status, 200);
        assert_eq!(h.user(&mut b).await.status, 200);
    }
    assert_eq!(h.running.revocation_count(), 0, "nothing revoked");
    h.idp.set(|b| b.route_grant_error = None);
    let c = claims(&bearer(&call(&mut b, "/orders/recovered").await));
    assert_eq!(c["aud"], "https://orders.example");
    let metrics = h.browser().get(&Harness::url("/metrics"), &[]).await.body;
    for line in [
        r#"sealgate_route_token_grants_total{outcome="refused",reason="refresh"}"#,
        r#"sealgate_route_token_grants_total{outcome="failed",reason="exchange"}"#,
        r#"sealgate_route_token_grants_total{outcome="success",reason="refresh"}"#,
    ] {
        assert!(metrics.contains(line), "{line}");
    }
}

/// Every refresh token the IdP was shown, in order.
fn presented_refresh_tokens(h: &Harness) -> Vec<String> {
    h.idp
        .requests_to("/token")
        .iter()
        .filter_map(|r| r.form_param("refresh_token").map(str::to_owned))
        .collect()
}

fn resealed(r: &Resp) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| c.name() == "__Host-sealgate.0" && !c.value().is_empty())
}

#[tokio::test]
async fn a_route_grant_that_rotates_the_refresh_token_reseals_it_and_the_session_lives_on() {
    // The fake IdP spends a refresh token on every use (rotation with reuse refused).
    let h = start(|_| {}, &three_routes()).await;
    let mut b = signed_in(&h).await;
    let before = b.export_cookies(PUBLIC);
    let r = call(&mut b, "/orders/rotate").await;
    bearer(&r);
    assert!(resealed(&r), "re-sealed with the new refresh token");
    // An answer that left earlier arrives late: the browser is back to the spent token. Its
    // next call, which needs no grant, carries the newest one again.
    b.import_cookies(PUBLIC, before.clone());
    let r = call(&mut b, "/api/late-answer").await;
    bearer(&r);
    assert!(resealed(&r), "the newest refresh token written back");
    // Another tab still holding the spent token: its grant redeems the newest one.
    let mut tab = h.browser();
    tab.import_cookies(PUBLIC, before);
    let r = call(&mut tab, "/billing/old-cookie").await;
    bearer(&r);
    assert!(resealed(&r));
    // The session's own refresh, later (past refresh_grace), uses the newest refresh token.
    h.clock.advance(290);
    for browser in [&mut b, &mut tab] {
        let r = call(browser, "/api/after-rotation").await;
        bearer(&r);
        assert!(!cleared(&r));
    }
    let presented = presented_refresh_tokens(&h);
    let unique: std::collections::HashSet<_> = presented.iter().collect();
    assert_eq!(
        unique.len(),
        presented.len(),
        "no refresh token presented twice: {presented:?}"
    );
    assert_eq!(h.running.revocation_count(), 0);
}

#[tokio::test]
async fn route_grants_and_the_session_refresh_at_once_never_replay_a_rotated_refresh_token() {
    let h = start(|_| {}, &three_routes()).await;
    let b = signed_in(&h).await;
    let cookies = b.export_cookies(PUBLIC);
    h.clock.advance(290); // the session's token is due too
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let mut b = h.browser();
        b.import_cookies(PUBLIC, cookies.clone());
        let path = ["/api", "/orders", "/billing"][i % 3];
        tasks.spawn(async move { call(&mut b, &format!("{path}/race/{i}")).await });
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let presented = presented_refresh_tokens(&h);
    assert_eq!(
        presented.len(),
        3,
        "one grant each: the session, /orders, /billing"
    );
    let unique: std::collections::HashSet<_> = presented.iter().collect();
    assert_eq!(
        unique.len(),
        3,
        "no refresh token presented twice: {presented:?}"
    );
    assert_eq!(h.running.revocation_count(), 0);
}

#[tokio::test]
async fn route_tokens_do_not_grow_the_cookie() {
    let h = start(|b| b.rotate_on_route_grants = false, &three_routes()).await;
    let mut b = signed_in(&h).await;
    let size = |b: &Browser| b.cookie_header(PUBLIC).len();
    let before = size(&b);
    for path in ["/orders/size", "/billing/size", "/ledger/size"] {
        let r = call(&mut b, path).await;
        bearer(&r);
        assert!(r.set_cookies().is_empty(), "{path}: nothing re-sealed");
    }
    assert_eq!(size(&b), before);
    println!(
        "session cookie header: {before} bytes, with three route tokens minted: {}",
        size(&b)
    );
}

#[tokio::test]
async fn a_request_the_route_rules_refuse_mints_nothing() {
    let extra = route(
        "/admin",
        &[
            "resource = \"https://admin.example\"",
            "require_claims = { groups = [\"admins\"] }",
        ],
    );
    let h = start(|_| {}, &extra).await;
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/admin/refused").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(grants(&h, "refresh_token", None), 0);
    h.idp.set(|b| {
        b.extra_claims
            .insert("groups".into(), serde_json::json!(["admins"]));
    });
    let mut admin = signed_in(&h).await;
    let c = claims(&bearer(&call(&mut admin, "/admin/allowed").await));
    assert_eq!(c["aud"], "https://admin.example");
}
