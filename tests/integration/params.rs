//! Request parameters: `[oidc] auth_params` on every authorization request, `token_params` on
//! every code and refresh grant, the SPA's `login_params` checked and passed on (nothing else
//! from the query), names sealgate owns never overridable, and `max_age` → `auth_time`.

use std::time::{SystemTime, UNIX_EPOCH};

use sealgate::Settings;
use serde_json::json;
use url::Url;

use crate::support::app::{Harness, config_toml, env};
use crate::support::browser::{Browser, Resp};
use crate::support::idp::{FakeIdp, Logged};

const SESSION0: &str = "__Host-sealgate.0";

/// `GET /bff/login?<query>` as a navigation.
pub async fn login_with(b: &mut Browser, query: &str) -> Resp {
    b.get(
        &Harness::url(&format!("/bff/login?{query}")),
        &[("sec-fetch-mode", "navigate")],
    )
    .await
}

/// The query of a URL, decoded, in order.
pub fn pairs(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Every value of `name` in `pairs`.
pub fn all<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn last_authorize(h: &Harness) -> Logged {
    h.idp
        .requests_to("/authorize")
        .pop()
        .expect("an authorize request")
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn session_set(r: &Resp) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| c.name() == SESSION0 && !c.value().is_empty())
}

/// The owned parameters each appear once, with sealgate's values.
fn assert_owned_intact(query: &[(String, String)]) {
    assert_eq!(all(query, "client_id"), ["spa-bff"]);
    assert_eq!(
        all(query, "redirect_uri"),
        ["https://app.example.com/bff/callback"]
    );
    assert_eq!(all(query, "response_type"), ["code"]);
    assert_eq!(all(query, "code_challenge_method"), ["S256"]);
    for name in ["state", "nonce", "code_challenge"] {
        let values = all(query, name);
        assert_eq!(values.len(), 1, "{name}: {query:?}");
        assert_eq!(values[0].len(), 43, "{name}: {query:?}");
    }
    assert_eq!(all(query, "scope").len(), 1);
}

#[tokio::test]
async fn auth_params_reach_the_authorization_request() {
    let h = Harness::start_with(
        |_| {},
        r#"oidc.auth_params = { audience = "https://api.example.com", access_type = "offline" }"#,
    )
    .await;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(session_set(&r));
    let query = last_authorize(&h).query;
    assert_eq!(all(&query, "audience"), ["https://api.example.com"]);
    assert_eq!(all(&query, "access_type"), ["offline"]);
    assert_owned_intact(&query);
    // Not sent to the token endpoint: those are token_params.
    let token = h.idp.requests_to("/token").pop().unwrap();
    assert_eq!(token.form_param("audience"), None);
}

#[tokio::test]
async fn params_naming_what_sealgate_owns_refuse_to_start() {
    let idp = FakeIdp::start().await;
    for (extra, key) in [
        (
            r#"oidc.auth_params = { redirect_uri = "https://evil.example/cb" }"#,
            "oidc.auth_params.redirect_uri",
        ),
        (
            r#"oidc.auth_params = { State = "fixed" }"#,
            "oidc.auth_params.State",
        ),
        (
            r#"oidc.auth_params = { code_challenge_method = "plain" }"#,
            "oidc.auth_params.code_challenge_method",
        ),
        (
            r#"oidc.token_params = { code_verifier = "x" }"#,
            "oidc.token_params.code_verifier",
        ),
        (
            r#"oidc.login_params = ["prompt", "nonce"]"#,
            "oidc.login_params[1]",
        ),
    ] {
        let err = Settings::from_toml(&config_toml(&idp.issuer(), extra), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}

#[tokio::test]
async fn token_params_reach_the_code_grant_and_the_refresh_grant() {
    let h = Harness::start_with(|_| {}, r#"oidc.token_params = { resource = "urn:api" }"#).await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    h.clock.advance(290); // the 300 s access token is within refresh_before (30 s)
    let r = b
        .get(&Harness::url("/api/orders"), &[("x-csrf", "1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = h.idp.requests_to("/token");
    let grants: Vec<_> = tokens
        .iter()
        .map(|t| {
            (
                t.form_param("grant_type").unwrap(),
                t.form_param("resource"),
            )
        })
        .collect();
    assert_eq!(
        grants,
        [
            ("authorization_code", Some("urn:api")),
            ("refresh_token", Some("urn:api"))
        ]
    );
    // Not on the authorization request: that is auth_params.
    assert_eq!(last_authorize(&h).query_param("resource"), None);
}

#[tokio::test]
async fn login_params_pass_through_and_nothing_else_from_the_query() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = login_with(
        &mut b,
        "returnUrl=%2Fx&prompt=login+consent&login_hint=jane%40example.com&ui_locales=fr-CA+en\
         &acr_values=urn%3Aacr%3Amfa&max_age=0600&state=evil&client_id=evil&nonce=evil\
         &redirect_uri=https%3A%2F%2Fevil.example&scope=admin&foo=bar&resource=evil",
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.body);
    let query = pairs(&r.location().unwrap());
    assert_eq!(all(&query, "prompt"), ["login consent"]);
    assert_eq!(all(&query, "login_hint"), ["jane@example.com"]);
    assert_eq!(all(&query, "ui_locales"), ["fr-CA en"]);
    assert_eq!(all(&query, "acr_values"), ["urn:acr:mfa"]);
    assert_eq!(all(&query, "max_age"), ["600"]);
    assert_owned_intact(&query);
    assert_eq!(all(&query, "scope"), ["openid profile offline_access"]);
    for name in ["foo", "resource", "returnUrl"] {
        assert!(all(&query, name).is_empty(), "{name} forwarded: {query:?}");
    }
    assert!(!r.location().unwrap().contains("evil"));
}

#[tokio::test]
async fn bad_login_param_values_are_a_400_and_mint_nothing() {
    let h = Harness::start().await;
    for query in [
        "prompt=none+login",
        "prompt=create",
        "prompt=login&prompt=consent",
        "max_age=-1",
        "max_age=12345678901",
        "login_hint=a%00b",
        "login_hint=a%E2%80%AEb",
        "ui_locales=en_US",
        "acr_values=%3Cscript%3E",
        "acr_values=a++b",
    ] {
        let mut b = h.browser();
        let r = login_with(&mut b, &format!("returnUrl=%2Fx&{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.location().is_none(), "{query}");
        assert!(r.set_cookies().is_empty(), "{query}: {:?}", r.set_cookies());
        assert!(
            r.body.len() < 2000 && !r.body.contains("script"),
            "{}",
            r.body
        );
    }
    assert!(h.idp.requests_to("/authorize").is_empty());
}

#[tokio::test]
async fn the_spa_can_never_replace_a_configured_value() {
    // A name in both auth_params and login_params is refused at start-up: the SPA could
    // otherwise drop an operator's acr_values or max_age.
    let idp = FakeIdp::start().await;
    for extra in [
        r#"oidc.auth_params = { acr_values = "mfa" }"#,
        "oidc.auth_params = { Prompt = \"login\" }\noidc.login_params = [\"login_hint\"]",
        "oidc.auth_params = { x = \"1\" }\noidc.login_params = [\"X\"]",
    ] {
        let err = Settings::from_toml(&config_toml(&idp.issuer(), extra), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("oidc.auth_params"), "{extra}: {err}");
    }
    // Out of login_params, the configured value is always sent and the SPA's ignored.
    let h = Harness::start_with(
        |_| {},
        "oidc.auth_params = { prompt = \"login\", resource = \"urn:api\" }\n\
         oidc.login_params = [\"login_hint\"]",
    )
    .await;
    let mut b = h.browser();
    let r = login_with(&mut b, "prompt=consent&resource=urn%3Aevil&login_hint=a").await;
    let query = pairs(&r.location().unwrap());
    assert_eq!(all(&query, "prompt"), ["login"]);
    assert_eq!(all(&query, "resource"), ["urn:api"]);
    assert_eq!(all(&query, "login_hint"), ["a"]);
}

#[tokio::test]
async fn a_custom_login_params_list_replaces_the_default() {
    let h = Harness::start_with(|_| {}, r#"oidc.login_params = ["kc_idp_hint"]"#).await;
    let mut b = h.browser();
    let r = login_with(&mut b, "kc_idp_hint=google&prompt=login").await;
    let query = pairs(&r.location().unwrap());
    assert_eq!(all(&query, "kc_idp_hint"), ["google"]);
    assert!(all(&query, "prompt").is_empty(), "{query:?}");
    let r = login_with(&mut b, "kc_idp_hint=%3Cx%3E").await;
    assert_eq!(r.status, 400);
}

/// Logs in through `/bff/login?<query>`, the IdP putting `auth_time` (seconds before now, if
/// any) in the ID token; the callback's response.
async fn login_with_auth_time(query: &str, auth_time_ago: Option<i64>) -> Resp {
    let h = Harness::start_with(
        |b| {
            if let Some(ago) = auth_time_ago {
                b.extra_claims
                    .insert("auth_time".into(), json!(now() - ago));
            }
        },
        "",
    )
    .await;
    let mut b = h.browser();
    let r = login_with(&mut b, query).await;
    assert_eq!(r.status, 302, "{}", r.body);
    let cb = h.authorize(&mut b, &r.location().unwrap()).await;
    b.get(&cb, &[]).await
}

#[tokio::test]
async fn max_age_requires_a_recent_auth_time() {
    // Requested and recent enough: signed in.
    let r = login_with_auth_time("max_age=300", Some(10)).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(session_set(&r));
    // Requested but absent (OIDC Core 3.1.2.1 makes it REQUIRED): refused.
    let r = login_with_auth_time("max_age=300", None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!session_set(&r));
    // Older than max_age plus the 60 s skew: refused.
    let r = login_with_auth_time("max_age=300", Some(400)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!session_set(&r));
    assert!(r.body.contains("Sign-in failed"));
    // Not requested: no auth_time needed, an old one is fine.
    let r = login_with_auth_time("", None).await;
    assert_eq!(r.status, 302, "{}", r.body);
    let r = login_with_auth_time("", Some(100_000)).await;
    assert_eq!(r.status, 302, "{}", r.body);
}

#[tokio::test]
async fn logout_params_and_a_configured_end_session_endpoint_shape_the_logout_redirect() {
    // Cognito's /logout wants client_id and logout_uri; an IdP without end_session_endpoint in
    // its metadata gets one from the configuration.
    let h = Harness::start_with(
        |b| b.end_session_endpoint = false,
        "oidc.logout_params = { logout_uri = \"https://app.example.com/signed-out\" }\n\
         oidc.end_session_endpoint = \"https://auth.example.com/logout\"",
    )
    .await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    let location = r.location().unwrap();
    assert!(
        location.starts_with("https://auth.example.com/logout?"),
        "{location}"
    );
    let query = pairs(&location);
    assert_eq!(
        all(&query, "logout_uri"),
        ["https://app.example.com/signed-out"]
    );
    assert_eq!(all(&query, "client_id"), ["spa-bff"]);
    assert_eq!(all(&query, "state").len(), 1);

    // Without the override, an IdP without the endpoint gets a local logout (302 to the app).
    let h = Harness::start_with(|b| b.end_session_endpoint = false, "").await;
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    assert!(
        !r.location().unwrap().contains("logout?"),
        "{:?}",
        r.location()
    );
}
