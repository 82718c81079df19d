//! Self-tests of the test support: the fake IdP speaks OIDC correctly when told to, breaks
//! exactly the intended thing when told to, and the browser keeps cookies and follows
//! redirects like a browser.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use url::Url;

use crate::support::browser::{Browser, origin_of};
use crate::support::idp::{
    ACCESS_TOKEN_AUD, ACCESS_TOKEN_TYPE, AuthMethod, BACKCHANNEL_LOGOUT_EVENT, EVIL_ISSUER,
    FakeIdp, Fault, IssParam, OTHER_CLIENT, RSA1, RSA2, TOKEN_EXCHANGE, WRONG_AUD, WRONG_NONCE,
    peek_jwt, pkce_s256,
};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789";
const REDIRECT_URI: &str = "https://app.example.test/bff/callback";
const NONCE: &str = "nonce-123";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn basic() -> String {
    format!("Basic {}", STANDARD.encode("spa-bff:test-secret"))
}

fn authorize_url(idp: &FakeIdp, state: &str) -> String {
    let mut url = Url::parse(&format!("{}/authorize", idp.issuer())).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "spa-bff")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid profile offline_access")
        .append_pair("state", state)
        .append_pair("nonce", NONCE)
        .append_pair("code_challenge", &pkce_s256(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Runs `/authorize` and returns the code.
async fn authorize(browser: &mut Browser, idp: &FakeIdp) -> String {
    let resp = browser.get(&authorize_url(idp, "st-1"), &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
    let q = query(&resp.location().unwrap());
    param(&q, "code").unwrap()
}

async fn exchange(
    browser: &mut Browser,
    idp: &FakeIdp,
    code: &str,
    verifier: &str,
) -> crate::support::browser::Resp {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ]);
    browser
        .post(
            &format!("{}/token", idp.issuer()),
            &[
                ("authorization", &basic()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &body,
        )
        .await
}

async fn refresh(
    browser: &mut Browser,
    idp: &FakeIdp,
    token: &str,
) -> crate::support::browser::Resp {
    let body = form(&[("grant_type", "refresh_token"), ("refresh_token", token)]);
    browser
        .post(
            &format!("{}/token", idp.issuer()),
            &[
                ("authorization", &basic()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &body,
        )
        .await
}

/// A `/token` request with client authentication and `pairs` as its form.
async fn token(browser: &mut Browser, idp: &FakeIdp, pairs: &[(&str, &str)]) -> Value {
    let resp = browser
        .post(
            &format!("{}/token", idp.issuer()),
            &[
                ("authorization", &basic()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form(pairs),
        )
        .await;
    let mut body = resp.json();
    body["status"] = resp.status.as_u16().into();
    body
}

#[tokio::test]
async fn route_grants_mint_for_what_they_ask_and_follow_behaviour() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let code = authorize(&mut browser, &idp).await;
    let login = exchange(&mut browser, &idp, &code, VERIFIER).await.json();
    let rt = login["refresh_token"].as_str().unwrap().to_owned();
    let at = login["access_token"].as_str().unwrap().to_owned();

    // A refresh for a resource: a token for it, the refresh token rotated (the default).
    let r = token(
        &mut browser,
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("resource", "https://orders.example"),
        ],
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    let (_, c) = peek_jwt(r["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["sub"].as_str()),
        (Some("https://orders.example"), Some("alice"))
    );
    assert!(r.get("id_token").is_none());
    let rt2 = r["refresh_token"].as_str().unwrap().to_owned();
    let spent = token(
        &mut browser,
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "x"),
        ],
    )
    .await;
    assert_eq!(spent["error"], "invalid_grant");
    // An Entra-style scope names the audience; without rotation the token stays valid.
    idp.set(|b| {
        b.rotate_on_route_grants = false;
        b.route_token_lifetime = Some(77);
    });
    for _ in 0..2 {
        let r = token(
            &mut browser,
            &idp,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt2),
                ("scope", "api://billing/.default"),
            ],
        )
        .await;
        assert_eq!(r["status"], 200, "{r}");
        assert!(r.get("refresh_token").is_none());
        assert_eq!(r["expires_in"], 77);
        let (_, c) = peek_jwt(r["access_token"].as_str().unwrap());
        assert_eq!(
            (c["aud"].as_str(), c["scope"].as_str()),
            (Some("api://billing"), Some("api://billing/.default"))
        );
    }

    // Token exchange: a live access token of this IdP, its subject kept.
    let r = token(
        &mut browser,
        &idp,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &at),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("audience", "ledger"),
        ],
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["issued_token_type"], ACCESS_TOKEN_TYPE);
    let (_, c) = peek_jwt(r["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["sub"].as_str()),
        (Some("ledger"), Some("alice"))
    );
    for bad in [
        &[
            ("subject_token", "forged"),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ][..],
        &[
            ("subject_token", at.as_str()),
            ("subject_token_type", "urn:x"),
        ][..],
    ] {
        let mut pairs = vec![("grant_type", TOKEN_EXCHANGE)];
        pairs.extend_from_slice(bad);
        let r = token(&mut browser, &idp, &pairs).await;
        assert_eq!(r["status"], 400, "{r}");
    }

    // Client credentials: the client is the subject; no refresh or ID token.
    let r = token(
        &mut browser,
        &idp,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://reports.example"),
        ],
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    assert!(r.get("refresh_token").is_none() && r.get("id_token").is_none());
    let (_, c) = peek_jwt(r["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["sub"].as_str()),
        (Some("https://reports.example"), Some("spa-bff"))
    );

    // route_grant_error answers route grants only.
    idp.set(|b| b.route_grant_error = Some((400, "invalid_target".into())));
    let r = token(&mut browser, &idp, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (r["status"].as_u64(), r["error"].as_str()),
        (Some(400), Some("invalid_target"))
    );
    let r = token(
        &mut browser,
        &idp,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
    )
    .await;
    assert_eq!(r["status"], 200, "a plain refresh still works: {r}");
    let (_, c) = peek_jwt(r["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], ACCESS_TOKEN_AUD);
}

/// A complete, careful RP-side ID token check (OIDC Core 3.1.3.7), independent of sealgate,
/// to show that each fault is something a correct client must reject.
fn validate(jwks: &Value, issuer: &str, token: &str, nonce: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    if header.alg != Algorithm::RS256 {
        return Err(format!("alg {:?}", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or("unknown kid")?;
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&["spa-bff"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| format!("decode: {e}"))?
        .claims;
    if claims["iat"].as_i64().ok_or("no iat")? > now() + 60 {
        return Err("iat in the future".into());
    }
    if claims["aud"].as_array().is_some_and(|a| a.len() > 1) && claims["azp"] != "spa-bff" {
        return Err("several audiences and no azp".into());
    }
    if claims["nonce"] != nonce {
        return Err("nonce".into());
    }
    Ok(claims)
}

#[tokio::test]
async fn discovery_describes_the_idp_and_follows_behaviour() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let issuer = idp.issuer();
    assert_eq!(issuer, format!("http://{}", idp.addr()));
    let url = format!("{issuer}/.well-known/openid-configuration");

    let doc = browser.get(&url, &[]).await.json();
    assert_eq!(doc["issuer"], issuer.as_str());
    assert_eq!(doc["authorization_endpoint"], format!("{issuer}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(doc["userinfo_endpoint"], format!("{issuer}/userinfo"));
    assert_eq!(doc["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(doc["revocation_endpoint"], format!("{issuer}/revoke"));
    assert_eq!(doc["end_session_endpoint"], format!("{issuer}/end-session"));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);

    idp.set(|b| {
        b.revocation_endpoint = false;
        b.end_session_endpoint = false;
        b.advertise_iss_param = false;
        b.auth_method = AuthMethod::Post;
        b.discovery_issuer = Some(EVIL_ISSUER.into());
    });
    let doc = browser.get(&url, &[]).await.json();
    assert_eq!(doc["issuer"], EVIL_ISSUER);
    assert!(doc.get("revocation_endpoint").is_none());
    assert!(doc.get("end_session_endpoint").is_none());
    assert_eq!(doc["authorization_response_iss_parameter_supported"], false);
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_post"])
    );
    let revoke = browser
        .post(&format!("{issuer}/revoke"), &[], "token=x")
        .await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND);

    idp.set(|b| b.unavailable = true);
    assert_eq!(
        browser.get(&url, &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        idp.requests_to("/.well-known/openid-configuration").len(),
        3
    );
}

#[tokio::test]
async fn jwks_serves_only_the_current_key_and_rotation_switches_it() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let jwks_url = format!("{}/jwks", idp.issuer());

    let jwks = browser.get(&jwks_url, &[]).await.json();
    assert_eq!(jwks, json!({ "keys": [RSA1.jwk()] }));
    assert_eq!(jwks["keys"][0]["e"], "AQAB");
    let token = idp.id_token(Some(NONCE));
    assert_eq!(peek_jwt(&token).0["kid"], RSA1.kid);
    validate(&jwks, &idp.issuer(), &token, NONCE).unwrap();

    idp.rotate_key();
    assert_eq!(idp.current_kid(), RSA2.kid);
    let rotated = browser.get(&jwks_url, &[]).await.json();
    assert_eq!(rotated, json!({ "keys": [RSA2.jwk()] }));
    let token = idp.id_token(Some(NONCE));
    assert_eq!(peek_jwt(&token).0["kid"], RSA2.kid);
    validate(&rotated, &idp.issuer(), &token, NONCE).unwrap();
    assert_eq!(
        validate(&jwks, &idp.issuer(), &token, NONCE).unwrap_err(),
        "unknown kid"
    );
}

#[tokio::test]
async fn authorization_code_flow_with_pkce_refresh_userinfo_revoke_and_logout() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let issuer = idp.issuer();

    let resp = browser.get(&authorize_url(&idp, "st-1"), &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    let location = resp.location().unwrap();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    let q = query(&location);
    assert_eq!(param(&q, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&q, "iss"), Some(issuer.clone()));
    let code = param(&q, "code").unwrap();
    let logged = &idp.requests_to("/authorize")[0];
    assert_eq!(logged.query_param("nonce"), Some(NONCE));

    // Wrong verifier: invalid_grant, and the code is spent.
    let resp = exchange(&mut browser, &idp, &code, &format!("{VERIFIER}x")).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.json()["error"], "invalid_grant");
    let resp = exchange(&mut browser, &idp, &code, VERIFIER).await;
    assert_eq!(resp.json()["error"], "invalid_grant");

    // The happy path, then the same code again.
    let code = authorize(&mut browser, &idp).await;
    let resp = exchange(&mut browser, &idp, &code, VERIFIER).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let tokens = resp.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    let jwks = browser.get(&format!("{issuer}/jwks"), &[]).await.json();
    let claims = validate(&jwks, &issuer, tokens["id_token"].as_str().unwrap(), NONCE).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], "idp-sid-1");
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["email"], "alice@example.test");
    let (at_header, at) = peek_jwt(tokens["access_token"].as_str().unwrap());
    assert_eq!(at_header["alg"], "RS256");
    assert_eq!(
        (at["aud"].as_str(), at["sub"].as_str()),
        (Some(ACCESS_TOKEN_AUD), Some("alice"))
    );
    assert_eq!(
        at["exp"].as_i64().unwrap() - at["iat"].as_i64().unwrap(),
        300
    );
    let resp = exchange(&mut browser, &idp, &code, VERIFIER).await;
    assert_eq!(resp.json()["error"], "invalid_grant");
    let token_req = idp.requests_to("/token").pop().unwrap();
    assert_eq!(token_req.authorization, Some(basic()));
    assert_eq!(token_req.form_param("code_verifier"), Some(VERIFIER));

    // A redirect_uri that does not match.
    let code = authorize(&mut browser, &idp).await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "https://app.example.test/other"),
        ("code_verifier", VERIFIER),
    ]);
    let resp = browser
        .post(
            &format!("{issuer}/token"),
            &[("authorization", &basic())],
            &body,
        )
        .await;
    assert_eq!(resp.json()["error"], "invalid_grant");

    // Userinfo.
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let info = browser
        .get(&format!("{issuer}/userinfo"), &[("authorization", &bearer)])
        .await;
    assert_eq!(
        info.json(),
        json!({ "sub": "alice", "name": "Alice", "email": "alice@example.test" })
    );
    idp.set(|b| b.userinfo_sub = Some("mallory".into()));
    let info = browser
        .get(&format!("{issuer}/userinfo"), &[("authorization", &bearer)])
        .await;
    assert_eq!(info.json()["sub"], "mallory");
    let anon = browser
        .get(
            &format!("{issuer}/userinfo"),
            &[("authorization", "Bearer nope")],
        )
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);

    // Refresh rotates: the old refresh token is then invalid_grant.
    let rt1 = tokens["refresh_token"].as_str().unwrap();
    let resp = refresh(&mut browser, &idp, rt1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let refreshed = resp.json();
    let rt2 = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    let (_, id2) = peek_jwt(refreshed["id_token"].as_str().unwrap());
    assert!(id2.get("nonce").is_none(), "no nonce on refresh");
    assert_eq!(
        refresh(&mut browser, &idp, rt1).await.json()["error"],
        "invalid_grant"
    );

    // Revocation ends the refresh token.
    let resp = browser
        .post(
            &format!("{issuer}/revoke"),
            &[("authorization", &basic())],
            &form(&[("token", rt2)]),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(idp.requests_to("/revoke")[0].form_param("token"), Some(rt2));
    assert_eq!(
        refresh(&mut browser, &idp, rt2).await.json()["error"],
        "invalid_grant"
    );

    // RP-initiated logout.
    let end = format!(
        "{issuer}/end-session?id_token_hint=x&post_logout_redirect_uri={}&state=bye",
        url::form_urlencoded::byte_serialize(b"https://app.example.test/").collect::<String>()
    );
    let resp = browser.get(&end, &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(
        resp.location().unwrap(),
        "https://app.example.test/?state=bye"
    );
    let resp = browser.get(&format!("{issuer}/end-session"), &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(idp.requests_to("/end-session").len(), 2);

    // The token error switch.
    idp.set(|b| b.token_error = Some("temporarily_unavailable".into()));
    let resp = refresh(&mut browser, &idp, "whatever").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.json(), json!({ "error": "temporarily_unavailable" }));
}

#[tokio::test]
async fn client_authentication_follows_the_configured_method() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let token_url = format!("{}/token", idp.issuer());

    // Basic with the wrong secret.
    let code = authorize(&mut browser, &idp).await;
    let wrong = format!("Basic {}", STANDARD.encode("spa-bff:nope"));
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ]);
    let resp = browser
        .post(&token_url, &[("authorization", &wrong)], &body)
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["error"], "invalid_client");

    // client_secret_post: Basic is refused, the form credentials work.
    idp.set(|b| b.auth_method = AuthMethod::Post);
    let code = authorize(&mut browser, &idp).await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ]);
    let resp = browser
        .post(&token_url, &[("authorization", &basic())], &body)
        .await;
    assert_eq!(resp.json()["error"], "invalid_client");
    let code = authorize(&mut browser, &idp).await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
        ("client_id", "spa-bff"),
        ("client_secret", "test-secret"),
    ]);
    let resp = browser.post(&token_url, &[], &body).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test]
async fn authorize_iss_parameter_and_errors_follow_behaviour() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();

    idp.set(|b| b.iss_param = IssParam::Wrong);
    let q = query(
        &browser
            .get(&authorize_url(&idp, "s"), &[])
            .await
            .location()
            .unwrap(),
    );
    assert_eq!(param(&q, "iss").as_deref(), Some(EVIL_ISSUER));

    idp.set(|b| b.iss_param = IssParam::Missing);
    let q = query(
        &browser
            .get(&authorize_url(&idp, "s"), &[])
            .await
            .location()
            .unwrap(),
    );
    assert_eq!(param(&q, "iss"), None);
    assert!(param(&q, "code").is_some());

    idp.set(|b| b.authorize_error = Some("access_denied".into()));
    let q = query(
        &browser
            .get(&authorize_url(&idp, "s"), &[])
            .await
            .location()
            .unwrap(),
    );
    assert_eq!(param(&q, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&q, "state").as_deref(), Some("s"));
    assert_eq!(param(&q, "code"), None);

    let plain = authorize_url(&idp, "s")
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let q = query(&browser.get(&plain, &[]).await.location().unwrap());
    assert_eq!(param(&q, "error").as_deref(), Some("invalid_request"));

    let unknown = authorize_url(&idp, "s").replace("client_id=spa-bff", "client_id=evil");
    assert_eq!(
        browser.get(&unknown, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn prompt_none_without_an_idp_session_is_login_required() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let silent = format!("{}&prompt=none", authorize_url(&idp, "s"));
    let q = query(&browser.get(&silent, &[]).await.location().unwrap());
    assert!(
        param(&q, "code").is_some(),
        "a session at the IdP: signed in"
    );
    idp.set(|b| b.idp_session = false);
    let q = query(&browser.get(&silent, &[]).await.location().unwrap());
    assert_eq!(param(&q, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&q, "state").as_deref(), Some("s"));
    let q = query(
        &browser
            .get(&authorize_url(&idp, "s"), &[])
            .await
            .location()
            .unwrap(),
    );
    assert!(
        param(&q, "code").is_some(),
        "an interactive login still works"
    );
}

#[tokio::test]
async fn par_endpoint_authenticates_the_client_and_its_request_uri_works_once() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let issuer = idp.issuer();
    let par = format!("{issuer}/par");
    let pushed: Vec<(String, String)> = query(&authorize_url(&idp, "st-par"));
    let pairs: Vec<(&str, &str)> = pushed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = form(&pairs);
    let ct = ("content-type", "application/x-www-form-urlencoded");

    // Not advertised, not served.
    assert_eq!(
        browser
            .get(&format!("{issuer}/.well-known/openid-configuration"), &[])
            .await
            .json()["pushed_authorization_request_endpoint"],
        Value::Null
    );
    assert_eq!(
        browser.post(&par, &[ct], &body).await.status,
        StatusCode::NOT_FOUND
    );

    idp.set(|b| {
        b.par_endpoint = true;
        b.require_par = true;
    });
    let meta = browser
        .get(&format!("{issuer}/.well-known/openid-configuration"), &[])
        .await
        .json();
    assert_eq!(meta["pushed_authorization_request_endpoint"], json!(par));
    assert_eq!(meta["require_pushed_authorization_requests"], json!(true));
    // Without client authentication: refused.
    assert_eq!(
        browser.post(&par, &[ct], &body).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = browser
        .post(&par, &[ct, ("authorization", &basic())], &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let request_uri = r.json()["request_uri"].as_str().unwrap().to_owned();
    assert!(r.json()["expires_in"].as_u64().unwrap() > 0);

    // Required: a front-channel request is refused.
    assert_eq!(
        browser.get(&authorize_url(&idp, "s"), &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut by_reference = Url::parse(&format!("{issuer}/authorize")).unwrap();
    by_reference
        .query_pairs_mut()
        .append_pair("client_id", "spa-bff")
        .append_pair("request_uri", &request_uri);
    let r = browser.get(by_reference.as_str(), &[]).await;
    let q = query(&r.location().unwrap());
    assert_eq!(param(&q, "state").as_deref(), Some("st-par"));
    assert!(param(&q, "code").is_some());
    // Once only.
    assert_eq!(
        browser.get(by_reference.as_str(), &[]).await.status,
        StatusCode::BAD_REQUEST
    );

    idp.set(|b| b.par_status = Some(503));
    let r = browser
        .post(&par, &[ct, ("authorization", &basic())], &body)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn every_fault_breaks_exactly_what_it_says() {
    let idp = FakeIdp::start().await;
    let mut browser = Browser::new();
    let issuer = idp.issuer();
    let jwks = browser.get(&format!("{issuer}/jwks"), &[]).await.json();

    // The token endpoint applies the fault.
    idp.set(|b| b.fault = Fault::WrongIss);
    let code = authorize(&mut browser, &idp).await;
    let from_endpoint = exchange(&mut browser, &idp, &code, VERIFIER).await.json();
    let (_, claims) = peek_jwt(from_endpoint["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], EVIL_ISSUER);

    idp.set(|b| b.fault = Fault::None);
    let good = validate(&jwks, &issuer, &idp.id_token(Some(NONCE)), NONCE).unwrap();

    for fault in Fault::ALL {
        idp.set(|b| b.fault = fault);
        let token = idp.id_token(Some(NONCE));
        let (header, claims) = peek_jwt(&token);
        let signature = token.rsplit('.').next().unwrap();
        let differs = |name: &str| {
            let mut a = claims.as_object().unwrap().clone();
            let mut b = good.as_object().unwrap().clone();
            for m in [&mut a, &mut b] {
                m.remove("iat");
                m.remove("exp");
                m.remove(name);
            }
            assert_eq!(a, b, "{fault:?} changed more than {name}");
        };
        match fault {
            Fault::BadSignature => {
                assert_eq!(header["alg"], "RS256");
                let valid = idp.sign_claims(&claims);
                assert_ne!(signature, valid.rsplit('.').next().unwrap());
                assert_eq!(URL_SAFE_NO_PAD.decode(signature).unwrap().len(), 256);
            }
            Fault::AlgNone => {
                assert_eq!(header, json!({ "alg": "none" }));
                assert_eq!(signature, "");
            }
            Fault::Hs256WithPublicKey => {
                assert_eq!(header["alg"], "HS256");
                assert_eq!(header["kid"], RSA1.kid);
                let key = DecodingKey::from_secret(idp.public_key_pem().as_bytes());
                let mut v = Validation::new(Algorithm::HS256);
                v.set_audience(&["spa-bff"]);
                jsonwebtoken::decode::<Value>(&token, &key, &v)
                    .expect("HMAC with the public PEM verifies");
                assert!(
                    idp.public_key_pem()
                        .starts_with("-----BEGIN PUBLIC KEY-----\n")
                );
            }
            Fault::WrongIss => {
                assert_eq!(claims["iss"], EVIL_ISSUER);
                differs("iss");
            }
            Fault::MissingIss => {
                assert!(claims.get("iss").is_none());
                differs("iss");
            }
            Fault::WrongAud => {
                assert_eq!(claims["aud"], WRONG_AUD);
                differs("aud");
            }
            Fault::MissingAud => {
                assert!(claims.get("aud").is_none());
                differs("aud");
            }
            Fault::ExtraAudNoAzp => {
                assert_eq!(claims["aud"], json!(["spa-bff", OTHER_CLIENT]));
                assert!(claims.get("azp").is_none());
                differs("aud");
            }
            Fault::ExtraAudWithAzp => {
                assert_eq!(claims["aud"], json!(["spa-bff", OTHER_CLIENT]));
                assert_eq!(claims["azp"], "spa-bff");
            }
            Fault::Expired => {
                assert!(claims["exp"].as_i64().unwrap() <= now() - 600);
                assert!(claims["iat"].as_i64().unwrap() <= now() - 900);
            }
            Fault::MissingExp => {
                assert!(claims.get("exp").is_none());
                differs("exp");
            }
            Fault::IatInFuture => {
                assert!(claims["iat"].as_i64().unwrap() >= now() + 3500);
                assert!(claims["exp"].as_i64().unwrap() >= now() + 3900);
            }
            Fault::WrongNonce => {
                assert_eq!(claims["nonce"], WRONG_NONCE);
                differs("nonce");
            }
            Fault::MissingNonce => {
                assert!(claims.get("nonce").is_none());
                differs("nonce");
            }
            Fault::MissingSub => {
                assert!(claims.get("sub").is_none());
                differs("sub");
            }
            Fault::UnknownKid => {
                assert_eq!(header["kid"], RSA2.kid);
                assert!(
                    jwks["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|k| k["kid"] != RSA2.kid)
                );
                differs("");
            }
            Fault::None => unreachable!(),
        }
        let verdict = validate(&jwks, &issuer, &token, NONCE);
        if fault == Fault::ExtraAudWithAzp {
            verdict.unwrap();
        } else {
            assert!(verdict.is_err(), "{fault:?} passed a careful validator");
        }
    }
}

#[tokio::test]
async fn logout_tokens_are_signed_back_channel_logout_tokens() {
    let idp = FakeIdp::start().await;
    let token = idp.logout_token(|c| {
        c.remove("sid");
    });
    let (header, claims) = peek_jwt(&token);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["kid"], RSA1.kid);
    assert_eq!(claims["sub"], "alice");
    assert!(claims.get("sid").is_none());
    assert!(claims["events"].get(BACKCHANNEL_LOGOUT_EVENT).is_some());
    let key = DecodingKey::from_rsa_components(&RSA1.n, &RSA1.e).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["spa-bff"]);
    v.set_issuer(&[idp.issuer()]);
    jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------------------------

/// A tiny app server: `/set` and `/del` set cookies, `/echo` reflects what it received,
/// `/r1` → `/r2` → `/echo` redirect, `/loop` redirects to itself.
async fn app_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(app))
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn app(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let mut resp = Response::builder();
    let body = match req.uri().path() {
        "/set" => {
            resp = resp
                .header(
                    "set-cookie",
                    "__Host-s.0=one; Path=/; Secure; HttpOnly; SameSite=Strict",
                )
                .header("set-cookie", "plain=two")
                .header("set-cookie", "__Host-bad=x; Path=/")
                .header("set-cookie", format!("big={}", "x".repeat(4096)));
            String::new()
        }
        "/del" => {
            resp = resp.header("set-cookie", "plain=; Max-Age=0").header(
                "set-cookie",
                "__Host-s.0=; Path=/; Secure; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            );
            String::new()
        }
        "/echo" => json!({
            "cookie": h("cookie"),
            "host": h("host"),
            "site": h("sec-fetch-site"),
            "mode": h("sec-fetch-mode"),
            "query": req.uri().query().unwrap_or_default(),
        })
        .to_string(),
        "/r1" => {
            resp = resp.status(302).header("location", "r2?x=1");
            String::new()
        }
        "/r2" => {
            resp = resp.status(303).header("location", "/echo?y=2");
            String::new()
        }
        "/loop" => {
            resp = resp.status(307).header("location", "/loop");
            String::new()
        }
        _ => {
            resp = resp.status(404);
            String::new()
        }
    };
    Ok(resp.body(Full::new(Bytes::from(body))).unwrap())
}

#[tokio::test]
async fn browser_keeps_cookies_per_public_origin() {
    let actual = app_server().await;
    let app = "https://app.example.test";
    let mut browser = Browser::new();
    browser.map_origin(app, &actual);

    let resp = browser.get(&format!("{app}/set"), &[]).await;
    assert_eq!(resp.set_cookies().len(), 4);
    assert_eq!(browser.cookie_names(app), ["__Host-s.0", "plain"]);
    assert_eq!(browser.cookie(app, "__Host-s.0").as_deref(), Some("one"));
    let rejected: Vec<_> = browser
        .rejected_cookies()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(rejected, ["__Host-bad", "big"]);
    assert!(
        browser.cookie_names(&actual).is_empty(),
        "kept under the public origin"
    );

    let echo = browser.get(&format!("{app}/echo"), &[]).await.json();
    assert_eq!(echo["cookie"], "__Host-s.0=one; plain=two");
    assert_eq!(echo["host"], "app.example.test");

    let saved = browser.export_cookies(app);
    browser.get(&format!("{app}/del"), &[]).await;
    assert!(browser.cookie_names(app).is_empty());
    browser.import_cookies(app, saved);
    browser.set_cookie(app, "planted", "p");
    browser.remove_cookie(app, "plain");
    let echo = browser.get(&format!("{app}/echo"), &[]).await.json();
    assert_eq!(echo["cookie"], "__Host-s.0=one; planted=p");
    let forged = browser
        .get(&format!("{app}/echo"), &[("cookie", "x=y")])
        .await
        .json();
    assert_eq!(forged["cookie"], "x=y");
    assert_eq!(origin_of("https://app.example.test:443/a?b#c"), app);
}

#[tokio::test]
async fn browser_follows_redirects_like_a_navigation() {
    let actual = app_server().await;
    let app = "https://app.example.test";
    let mut browser = Browser::new();
    browser.map_origin(app, &actual);

    let resp = browser.navigate(&format!("{app}/r1")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.url, format!("{app}/echo?y=2"));
    assert_eq!(
        resp.redirects,
        [format!("{app}/r1"), format!("{app}/r2?x=1")]
    );
    let echo = resp.json();
    assert_eq!(
        (echo["mode"].as_str(), echo["site"].as_str()),
        (Some("navigate"), Some("none"))
    );

    // IdP → app callback: cross-site for a page-initiated navigation, cookies per origin.
    let idp = FakeIdp::start().await;
    let authorize = authorize_url(&idp, "st").replace("%2Fbff%2Fcallback", "%2Fecho");
    let resp = browser.navigate_from(app, &authorize).await;
    assert_eq!(resp.redirects, [authorize]);
    let echo = resp.json();
    assert_eq!(echo["site"], "cross-site");
    assert!(echo["query"].as_str().unwrap().contains("state=st"));

    let looped = tokio::spawn(async move {
        let mut browser = Browser::new();
        // A bare address works as the actual origin too.
        browser.map_origin(app, actual.trim_start_matches("http://"));
        browser.navigate(&format!("{app}/loop")).await;
    })
    .await;
    assert!(looped.unwrap_err().is_panic(), "a redirect loop panics");
}
