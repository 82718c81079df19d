//! `[[routes]]` rules about the signed-in user, end to end with the fake IdP (which writes the
//! claims a test gives it into its ID tokens) and the echo upstream: step-up (`acr_values`,
//! `max_auth_age`), `require_claims`, `identity_headers`, and `/bff/user`'s `acr` and
//! `auth_time`.

use serde_json::{Value, json};

use crate::support::app::{Harness, urlencode};
use crate::support::browser::Browser;
use crate::support::upstream::was_asked;

const CSRF: (&str, &str) = ("x-csrf", "1");

/// `toml.` lines for one more `[[routes]]` entry to the echo upstream (`upstream` is replaced
/// by the harness's address, which these routes share with `/api`).
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
async fn start(setup: impl FnOnce(&mut crate::support::idp::Behaviour), extra: &str) -> Harness {
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

fn set_claims(h: &Harness, claims: Value) {
    h.idp.set(|b| {
        for (k, v) in claims.as_object().unwrap() {
            b.extra_claims.insert(k.clone(), v.clone());
        }
    });
}

fn remove_claims(h: &Harness, names: &[&str]) {
    h.idp.set(|b| {
        for n in names {
            b.extra_claims.remove(*n);
        }
    });
}

async fn signed_in(h: &Harness) -> Browser {
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "login: {}", r.body);
    b
}

async fn call(
    b: &mut Browser,
    path: &str,
    headers: &[(&str, &str)],
) -> crate::support::browser::Resp {
    let mut all = vec![CSRF];
    all.extend_from_slice(headers);
    b.get(&Harness::url(path), &all).await
}

fn query_of(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn step_up_round_trip_keeps_the_return_url_and_other_routes_work_throughout() {
    let h = start(
        |_| {},
        &route(
            "/mfa",
            &[
                "acr_values = [\"gold\", \"urn:example:mfa\"]",
                "max_auth_age = \"10m\"",
            ],
        ),
    )
    .await;
    let mut b = signed_in(&h).await;
    let user = h.user(&mut b).await.json();
    assert!(
        user.get("acr").is_none() && user.get("auth_time").is_none(),
        "{user}"
    );

    // The page the SPA is on comes from the Referer of its same-origin call.
    let page = Harness::url("/orders/7?tab=payments");
    let r = call(&mut b, "/mfa/step-up-round-trip", &[("referer", &page)]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let p = r.json();
    assert_eq!(p["error"], "insufficient_user_authentication");
    assert_eq!(p["acr_values"], "gold urn:example:mfa");
    assert_eq!(p["max_age"], 600);
    let login_url = p["login_url"].as_str().unwrap().to_owned();
    assert_eq!(
        login_url,
        format!(
            "/bff/login?acr_values=gold+urn%3Aexample%3Amfa&max_age=600&returnUrl={}",
            urlencode("/orders/7?tab=payments")
        )
    );
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(
            "Bearer error=\"insufficient_user_authentication\", acr_values=\"gold urn:example:mfa\", max_age=600"
        )
    );
    assert!(
        !was_asked("/step-up-round-trip"),
        "a step-up is not forwarded"
    );
    assert_eq!(call(&mut b, "/api/unaffected", &[]).await.status, 200);

    // The SPA navigates to the link; the IdP gets the route's values and answers with `acr`.
    let now = h.clock.now();
    set_claims(&h, json!({"acr": "urn:example:mfa", "auth_time": now}));
    let r = b
        .get(&Harness::url(&login_url), &[("sec-fetch-mode", "navigate")])
        .await;
    assert_eq!(r.status, 302, "{}", r.body);
    let authorize = r.location().unwrap();
    let sent = query_of(&authorize);
    assert!(
        sent.contains(&("acr_values".into(), "gold urn:example:mfa".into())),
        "{sent:?}"
    );
    assert!(sent.contains(&("max_age".into(), "600".into())), "{sent:?}");
    let callback = h.authorize(&mut b, &authorize).await;
    let r = b.get(&callback, &[]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location().as_deref(), Some("/orders/7?tab=payments"));

    let r = call(&mut b, "/mfa/step-up-round-trip", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(was_asked("/step-up-round-trip"));
    assert_eq!(call(&mut b, "/api/unaffected", &[]).await.status, 200);
    let user = h.user(&mut b).await.json();
    assert_eq!(user["acr"], "urn:example:mfa");
    assert_eq!(user["auth_time"], now);
}

#[tokio::test]
async fn a_step_up_link_has_no_return_url_without_a_same_origin_referer() {
    let h = start(|_| {}, &route("/mfa", &["acr_values = [\"gold\"]"])).await;
    let mut b = signed_in(&h).await;
    for referer in [
        None,
        Some("https://evil.example/orders"),
        Some("https://app.example.com/bff/logout"),
        Some("https://app.example.com//evil.example/x"),
    ] {
        let headers: Vec<(&str, &str)> = referer.iter().map(|r| ("referer", *r)).collect();
        let r = call(&mut b, "/mfa/x", &headers).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(
            r.json()["login_url"],
            "/bff/login?acr_values=gold",
            "{referer:?}"
        );
        assert!(r.json().get("max_age").is_none());
    }
}

#[tokio::test]
async fn max_auth_age_counts_from_auth_time_with_the_providers_skew() {
    let h = start(
        |_| {},
        &format!(
            "oidc.clock_skew = \"1s\"\n{}",
            route("/fresh", &["max_auth_age = \"2m\""])
        ),
    )
    .await;
    // No auth_time at all: a step-up.
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/fresh/x", &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["max_age"], 120);

    let auth_time = h.clock.now() - 119;
    set_claims(&h, json!({ "auth_time": auth_time }));
    let mut b = signed_in(&h).await;
    // The clock is the system's plus an offset: each step sets the login's age afresh, so real
    // seconds passing on a loaded machine do not move it (a call may still cross one second
    // boundary, which the 1 s skew absorbs).
    let age = |secs: i64| h.clock.advance(auth_time + secs - h.clock.now());
    age(119);
    assert_eq!(call(&mut b, "/fresh/x", &[]).await.status, 200, "119 s old");
    age(120);
    assert_eq!(
        call(&mut b, "/fresh/x", &[]).await.status,
        200,
        "120 s: max_auth_age"
    );
    age(122);
    let r = call(&mut b, "/fresh/x", &[]).await;
    assert_eq!(r.status, 401, "122 s: beyond max_auth_age and the skew");
    assert_eq!(r.json()["error"], "insufficient_user_authentication");
    assert_eq!(call(&mut b, "/api/x", &[]).await.status, 200);
}

#[tokio::test]
async fn claim_rules_allow_refuse_and_never_forward_a_refused_request() {
    let h = start(
        |_| {},
        &route(
            "/admin",
            &["require_claims = { groups = [\"admins\", \"ops\"], email_verified = true }"],
        ),
    )
    .await;
    set_claims(
        &h,
        json!({"groups": ["users", "ops"], "email_verified": true}),
    );
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/admin/claims-allowed", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    set_claims(
        &h,
        json!({"groups": ["users"], "email": "jane@example.test"}),
    );
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/admin/claims-refused", &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"type": "about:blank", "title": "access denied", "status": 403, "error": "access_denied"})
    );
    assert!(
        !was_asked("/claims-refused"),
        "a refused request is not forwarded"
    );
    assert_eq!(
        call(&mut b, "/api/x", &[]).await.status,
        200,
        "the session lives on"
    );

    // email_verified missing (groups fine): refused.
    remove_claims(&h, &["email_verified"]);
    set_claims(&h, json!({"groups": ["admins"]}));
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/admin/claims-missing", &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!was_asked("/claims-missing"));
}

#[tokio::test]
async fn a_listed_value_matches_a_string_claim_or_an_array_claim() {
    let h = start(
        |_| {},
        &route(
            "/admin",
            &["require_claims = { role = [\"admin\", \"owner\"] }"],
        ),
    )
    .await;
    for (role, allowed) in [
        (json!("owner"), true),
        (json!(["reader", "admin"]), true),
        (json!("reader"), false),
        (json!(["reader"]), false),
        (json!("admin owner"), false),
    ] {
        set_claims(&h, json!({ "role": role }));
        let mut b = signed_in(&h).await;
        let status = call(&mut b, "/admin/x", &[]).await.status;
        assert_eq!(status == 200, allowed, "{role}: {status}");
        if !allowed {
            assert_eq!(status, 403, "{role}");
        }
    }
}

#[tokio::test]
async fn an_optional_route_with_claim_rules_refuses_anonymous_callers() {
    let h = start(
        |_| {},
        &route(
            "/maybe",
            &[
                "token = \"optional\"",
                "require_claims = { email_verified = true }",
            ],
        ),
    )
    .await;
    let mut anonymous = h.browser();
    let r = call(&mut anonymous, "/maybe/anonymous-rules", &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["title"], "unauthenticated");
    assert!(!was_asked("/anonymous-rules"));
}

#[tokio::test]
async fn a_refresh_brings_the_current_claims_and_a_refusal_keeps_the_refreshed_session() {
    let h = start(
        |_| {},
        &route("/admin", &["require_claims = { groups = [\"admins\"] }"]),
    )
    .await;
    set_claims(&h, json!({"groups": ["admins"]}));
    let mut b = signed_in(&h).await;
    assert_eq!(call(&mut b, "/admin/x", &[]).await.status, 200);

    // The IdP drops the group; the access token expires; the refreshed ID token decides.
    set_claims(&h, json!({"groups": ["users"]}));
    h.clock.advance(301);
    h.idp.set(|b| b.clock_offset = 301);
    let r = call(&mut b, "/admin/x", &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        h.idp.requests_to("/token").len(),
        2,
        "login and one refresh"
    );
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.name().starts_with("__Host-sealgate.") && !c.value().is_empty()),
        "the refused answer carries the refreshed session"
    );
    assert_eq!(call(&mut b, "/api/x", &[]).await.status, 200);
    assert_eq!(h.idp.requests_to("/token").len(), 2, "no second refresh");
}

#[tokio::test]
async fn identity_headers_carry_claims_and_client_copies_never_pass() {
    let h = start(
        |_| {},
        &route(
            "/id",
            &[
                "token = \"optional\"",
                "identity_headers = { \"X-User\" = \"sub\", \"X-Email\" = \"email\", \"X-Name\" = \"name\", \"X-Nick\" = \"nickname\", \"X-Verified\" = \"email_verified\" }",
            ],
        ),
    )
    .await;
    set_claims(&h, json!({"name": "José Müller", "email_verified": false}));
    let spoofed = [
        ("x-user", "mallory"),
        ("X-Email", "boss@example.test"),
        ("x-nick", "spoof"),
        ("x-nick", "spoof2"),
        ("x-other", "kept"),
    ];
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/id/x", &spoofed).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-user"], json!(["alice"]));
    assert_eq!(seen["x-email"], json!(["alice@example.test"]));
    assert_eq!(seen["x-name"], json!(["José Müller"]), "UTF-8 as it is");
    assert_eq!(seen["x-verified"], json!(["false"]));
    assert!(
        seen.get("x-nick").is_none(),
        "no claim: the client's copies are still removed"
    );
    assert_eq!(seen["x-other"], json!(["kept"]));

    // Anonymous on an optional route: no identity, and no spoofed one either.
    let mut anonymous = h.browser();
    let r = call(&mut anonymous, "/id/x", &spoofed).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = &r.json()["headers"];
    for name in ["x-user", "x-email", "x-nick", "x-name", "authorization"] {
        assert!(seen.get(name).is_none(), "{name}: {seen}");
    }
}

#[tokio::test]
async fn a_claim_that_is_not_header_safe_is_refused_not_mangled() {
    let h = start(
        |_| {},
        &route(
            "/id",
            &["identity_headers = { \"X-Name\" = \"name\", \"X-Groups\" = \"groups\" }"],
        ),
    )
    .await;
    set_claims(&h, json!({"name": "Alice\r\nX-Admin: yes"}));
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/id/header-unsafe", &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "access_denied");
    assert!(!r.body.contains("Alice"), "{}", r.body);
    assert!(!was_asked("/header-unsafe"));

    set_claims(&h, json!({"name": "Alice", "groups": ["a", "b"]}));
    let mut b = signed_in(&h).await;
    let r = call(&mut b, "/id/header-array", &[]).await;
    assert_eq!(r.status, 403, "an array is not a header value: {}", r.body);
    assert!(!was_asked("/header-array"));
}

#[tokio::test]
async fn identity_header_spoofs_with_underscores_or_through_another_route_never_pass() {
    let h = start(
        |_| {},
        &route(
            "/id",
            &["identity_headers = { \"X-User\" = \"sub\", \"X-Nick\" = \"nickname\" }"],
        ),
    )
    .await;
    let spoofed = [
        ("x_user", "mallory"),
        ("X_Nick", "spoof"),
        ("x-nick", "spoof"),
        ("x_forwarded_for", "6.6.6.6"),
        ("x_other", "kept"),
    ];
    let mut b = signed_in(&h).await;
    // On the route that sets them: the claim for X-User, nothing for X-Nick (no claim).
    let r = call(&mut b, "/id/x", &spoofed).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-user"], json!(["alice"]));
    for gone in ["x_user", "x_nick", "x-nick", "x_forwarded_for"] {
        assert!(seen.get(gone).is_none(), "{gone}: {seen}");
    }
    assert_eq!(seen["x_other"], json!(["kept"]));
    // Through /api, a route to the same upstream without identity headers: stripped too.
    let r = call(
        &mut b,
        "/api/x",
        &[("x-user", "admin"), ("x_nick", "admin")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = &r.json()["headers"];
    assert!(
        seen.get("x-user").is_none() && seen.get("x_nick").is_none(),
        "{seen}"
    );
}

#[tokio::test]
async fn a_refreshed_id_token_without_acr_keeps_the_logins_step_up() {
    let h = start(|_| {}, &route("/mfa", &["acr_values = [\"gold\"]"])).await;
    set_claims(&h, json!({"acr": "gold"}));
    let mut b = signed_in(&h).await;
    assert_eq!(call(&mut b, "/mfa/x", &[]).await.status, 200);
    // The IdP's refreshed ID tokens leave acr out (OIDC Core 12.2 allows it).
    remove_claims(&h, &["acr"]);
    h.clock.advance(290);
    let r = call(&mut b, "/api/x", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refreshed = h
        .idp
        .requests_to("/token")
        .iter()
        .filter(|r| r.form_param("grant_type") == Some("refresh_token"))
        .count();
    assert_eq!(refreshed, 1);
    let r = call(&mut b, "/mfa/x", &[]).await;
    assert_eq!(r.status, 200, "no step-up loop after a refresh: {}", r.body);
}
