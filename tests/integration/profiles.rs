//! One test per provider of `docs/providers.md`. Each starts sealgate with that guide's
//! configuration, read from the guide itself (only the listen address, the issuer's host, the
//! upstream's address and the journal's path are changed, and `<placeholders>` are filled in),
//! against the fake IdP behaving as the guide says that provider does: the parameters it needs,
//! the access token it issues for the API with and without them, its refresh tokens and
//! rotation, and its logout. Each then signs in, calls the API through the `/api` route (the
//! upstream echoes the token it received), refreshes, and logs out.

use std::collections::HashSet;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::app::{Harness, PUBLIC, urlencode};
use crate::support::browser::{Browser, Resp};
use crate::support::client_keys::{CLIENT_EC256, CLIENT_RSA};
use crate::support::guide::{start, swap};
use crate::support::idp::{
    AccessTokens, AuthMethod, Behaviour, EndSessionRule, GRAPH_AUD, IssParam, Logged, RefreshWhen,
    Rotation, USERINFO_AUD, peek_jwt, sign_jws,
};

use super::params::{all, pairs};

const API: &str = "https://api.example.com";

/// Signs in through the whole flow; the browser holds the session.
pub(super) async fn login(h: &Harness) -> Browser {
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 302, "login: {}", r.body);
    assert_eq!(r.location().as_deref(), Some("/home"));
    assert_eq!(h.user(&mut b).await.status, 200);
    b
}

pub(super) async fn api(b: &mut Browser) -> Resp {
    b.get(&Harness::url("/api/orders"), &[("x-csrf", "1")])
        .await
}

/// The access token the upstream received.
pub(super) async fn upstream_token(b: &mut Browser) -> String {
    let r = api(b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let auth = r.json()["authorization"].as_str().unwrap().to_owned();
    auth.strip_prefix("Bearer ")
        .expect("a bearer token")
        .to_owned()
}

/// The claims of a JWT access token (signature not checked: the API's business).
pub(super) fn jwt(token: &str) -> Value {
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    peek_jwt(token).1
}

fn assert_opaque(token: &str) {
    assert!(!token.contains('.'), "a JWT, not opaque: {token}");
    assert!(token.len() >= 20, "{token}");
}

/// Moves sealgate's clock and the fake IdP's by `secs`.
pub(super) fn advance(h: &Harness, secs: i64) {
    h.clock.advance(secs);
    h.idp.set(|b| b.clock_offset += secs);
}

/// The refresh tokens the refresh grants presented, in order.
pub(super) fn redeemed(h: &Harness) -> Vec<String> {
    h.idp
        .requests_to("/token")
        .iter()
        .filter(|r| r.form_param("grant_type") == Some("refresh_token"))
        .map(|r| r.form_param("refresh_token").unwrap().to_owned())
        .collect()
}

pub(super) fn last(h: &Harness, path: &str) -> Logged {
    h.idp
        .requests_to(path)
        .pop()
        .unwrap_or_else(|| panic!("no request to {path}"))
}

pub(super) fn live(h: &Harness, token: &str) -> bool {
    h.idp.live_tokens().iter().any(|t| t == token)
}

/// `POST /bff/logout`; the `Location` it answers with. The session is over afterwards.
pub(super) async fn logout(h: &Harness, b: &mut Browser) -> String {
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(h.user(b).await.status, 401, "signed out");
    r.location().unwrap()
}

/// The guide's RP-initiated logout: to the end-session endpoint with `id_token_hint` and the
/// post-logout redirect URI, which the IdP follows back to the app.
pub(super) async fn assert_rp_logout(h: &Harness, b: &mut Browser, location: &str) {
    let endpoint = h.idp.endpoint("/end-session");
    assert!(location.starts_with(&format!("{endpoint}?")), "{location}");
    let query = pairs(location);
    assert_eq!(all(&query, "id_token_hint").len(), 1, "{query:?}");
    assert_eq!(
        all(&query, "post_logout_redirect_uri"),
        ["https://app.example.com/"]
    );
    let r = b.get(location, &[]).await;
    assert_eq!(r.status, 302, "end-session: {}", r.body);
    assert!(
        r.location()
            .unwrap()
            .starts_with("https://app.example.com/?state="),
        "{:?}",
        r.location()
    );
}

#[tokio::test]
async fn entra_id_profile() {
    let p = start(
        "Microsoft Entra ID",
        |b| {
            b.access_tokens = AccessTokens::DefaultScope;
            b.refresh_when = RefreshWhen::WithScope("offline_access".into());
            b.rotation = Rotation::RotateKeepOld;
            b.revocation_endpoint = false;
            b.advertise_iss_param = false;
            b.iss_param = IssParam::Missing;
            b.access_token_lifetime = 3600; // Entra's are 60 to 90 minutes
        },
        |toml| toml,
    )
    .await;
    let h = &p.h;
    let mut b = login(h).await;
    let scope = last(h, "/authorize")
        .query_param("scope")
        .unwrap()
        .to_owned();
    assert_eq!(
        scope,
        "openid profile email offline_access api://api-app-id/.default"
    );
    // The `.default` scope makes the access token a JWT for the API, not for Graph.
    let first = upstream_token(&mut b).await;
    assert_eq!(jwt(&first)["aud"], "api://api-app-id");
    assert_ne!(jwt(&first)["aud"], GRAPH_AUD);

    // revalidate_every (15 min) refreshes though the hour-long token is valid. Entra returns a
    // new refresh token each time; sealgate redeems the newest, and the old one stays valid.
    advance(h, 15 * 60 + 1);
    let second = upstream_token(&mut b).await;
    advance(h, 15 * 60 + 1);
    let third = upstream_token(&mut b).await;
    assert_eq!(HashSet::from([&first, &second, &third]).len(), 3);
    assert_eq!(jwt(&third)["aud"], "api://api-app-id");
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2, "two revalidations");
    assert_ne!(rts[0], rts[1], "the rotated refresh token was stored");
    assert!(live(h, &rts[0]), "Entra keeps the old refresh token valid");

    // Logout: RP-initiated; discovery lists no revocation endpoint, so nothing is revoked.
    let location = logout(h, &mut b).await;
    assert_rp_logout(h, &mut b, &location).await;
    assert!(h.idp.requests_to("/revoke").is_empty());

    // A disabled user's next revalidation fails and ends the session within 15 minutes.
    let mut b = login(h).await;
    h.idp.set(|b| b.disabled_subs = vec!["alice".into()]);
    advance(h, 15 * 60 + 1);
    assert_eq!(api(&mut b).await.status, 401);
    assert_eq!(h.user(&mut b).await.status, 401);
}

#[tokio::test]
async fn adfs_profile() {
    let adfs = |b: &mut Behaviour| {
        b.access_tokens = AccessTokens::Resource;
        b.rotation = Rotation::None;
        b.refused_scopes = vec!["offline_access".into()];
        b.revocation_endpoint = false;
        b.advertise_iss_param = false;
        b.iss_param = IssParam::Missing;
    };
    let p = start("AD FS (2016/2019)", adfs, |toml| toml).await;
    let h = &p.h;
    let mut b = login(h).await;
    let authorize = last(h, "/authorize");
    assert_eq!(authorize.query_param("resource"), Some(API));
    assert_eq!(
        authorize.query_param("scope"),
        Some("openid profile email allatclaims")
    );
    // A JWT for the API, from the access-token issuer discovery names.
    let token = jwt(&upstream_token(&mut b).await);
    assert_eq!(token["aud"], API);
    assert_eq!(token["iss"], h.idp.endpoint("/services/trust"));

    // Refreshes name the resource again (token_params), so their tokens are for the API too.
    advance(h, 290);
    let token = jwt(&upstream_token(&mut b).await);
    assert_eq!(token["aud"], API);
    assert_eq!(last(h, "/token").form_param("resource"), Some(API));
    advance(h, 290);
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], API);
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_eq!(rts[0], rts[1], "no new refresh token: the same one again");

    // Logout: RP-initiated, no revocation endpoint.
    let location = logout(h, &mut b).await;
    assert_rp_logout(h, &mut b, &location).await;
    assert!(h.idp.requests_to("/revoke").is_empty());

    // Without token_params, the login's token is for the API, a refreshed one is not.
    let p = start("AD FS (2016/2019)", adfs, |toml| {
        swap(
            &toml,
            &format!("token_params = {{ resource = \"{API}\" }}\n"),
            "",
        )
    })
    .await;
    let mut b = login(&p.h).await;
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], API);
    advance(&p.h, 290);
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], USERINFO_AUD);
}

fn auth0(b: &mut Behaviour) {
    b.access_tokens = AccessTokens::Audience;
    b.refresh_when = RefreshWhen::WithScope("offline_access".into());
    b.rotation = Rotation::RotateRevokeFamilyOnReuse;
}

#[tokio::test]
async fn auth0_profile() {
    let p = start("Auth0", auth0, |toml| toml).await;
    let h = &p.h;
    assert!(h.idp.issuer().ends_with('/'), "the trailing slash is kept");
    let mut b = login(h).await;
    assert_eq!(last(h, "/authorize").query_param("audience"), Some(API));
    let audience = json!([API, h.idp.endpoint("/userinfo")]);
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], audience);

    // A refresh keeps the login's audience without token_params; rotation is followed.
    advance(h, 290);
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], audience);
    assert_eq!(last(h, "/token").form_param("audience"), None);
    advance(h, 290);
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], audience);
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_ne!(rts[0], rts[1]);
    assert!(!live(h, &rts[0]), "rotated");

    // Logout: the refresh token is revoked, then RP-initiated logout.
    let location = logout(h, &mut b).await;
    let revoked = last(h, "/revoke");
    assert!(!live(h, revoked.form_param("token").unwrap()));
    assert_rp_logout(h, &mut b, &location).await;

    // Reuse detection through sealgate: a copy of a pre-refresh cookie, replayed after
    // refresh_grace, spends a rotated token; Auth0 revokes the family, and the session whose
    // cookie was copied ends at its next refresh too.
    let mut b = login(h).await;
    let copy = b.export_cookies(PUBLIC);
    advance(h, 290);
    upstream_token(&mut b).await;
    advance(h, 31);
    let mut thief = h.browser();
    thief.import_cookies(PUBLIC, copy);
    assert_eq!(api(&mut thief).await.status, 401);
    advance(h, 260);
    assert_eq!(api(&mut b).await.status, 401, "the family was revoked");

    // Without auth_params the access token is opaque: no use to the API.
    let p = start("Auth0", auth0, |toml| {
        swap(
            &toml,
            &format!("auth_params = {{ audience = \"{API}\" }}\n"),
            "",
        )
    })
    .await;
    let mut b = login(&p.h).await;
    assert_opaque(&upstream_token(&mut b).await);
}

fn okta(b: &mut Behaviour) {
    b.auth_method = AuthMethod::PrivateKeyJwt(&CLIENT_RSA);
    b.refresh_when = RefreshWhen::WithScope("offline_access".into());
    b.end_session_rule = EndSessionRule::RequireIdTokenHint;
    b.par_endpoint = true;
}

/// The guide's commented-out `private_key_jwt` lines in place of the secret, with `key_file`.
fn with_key(toml: &str, key_file: &str) -> String {
    let toml = swap(toml, "client_secret = \"env:SEALGATE_CLIENT_SECRET\"\n", "");
    let toml = swap(&toml, "token_endpoint_auth = \"client_secret_basic\"\n", "");
    let toml = swap(&toml, "# token_endpoint_auth = ", "token_endpoint_auth = ");
    let toml = swap(
        &toml,
        "# client_assertion_key = ",
        "client_assertion_key = ",
    );
    let toml = swap(
        &toml,
        "# client_assertion_kid = ",
        "client_assertion_kid = ",
    );
    swap(&toml, "file:/etc/sealgate/assertion-key.pem", key_file)
}

#[tokio::test]
async fn okta_profile() {
    let key = CLIENT_RSA.config_ref();
    let p = start("Okta", okta, |toml| with_key(&toml, &key)).await;
    let h = &p.h;
    let mut b = login(h).await;
    // PAR, listed in discovery, is used; every client authentication is an assertion.
    let pushed = last(h, "/par");
    assert!(pushed.form_param("client_assertion").is_some());
    assert!(
        pushed
            .form_param("scope")
            .unwrap()
            .contains("offline_access")
    );
    assert!(last(h, "/authorize").query_param("request_uri").is_some());
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], "api");

    // Rotation: each refresh redeems the newest token; the old one is spent.
    advance(h, 290);
    upstream_token(&mut b).await;
    advance(h, 290);
    upstream_token(&mut b).await;
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_ne!(rts[0], rts[1]);
    assert!(!live(h, &rts[0]));

    // Logout: revoked, then /v1/logout with the id_token_hint Okta requires.
    let location = logout(h, &mut b).await;
    assert!(!live(h, last(h, "/revoke").form_param("token").unwrap()));
    assert_rp_logout(h, &mut b, &location).await;
    assert_eq!(h.idp.assertion_refusals(), Vec::<String>::new());
    assert_eq!(
        h.idp.assertion_jtis().len(),
        5,
        "PAR, code, 2 refreshes, revoke"
    );

    // Why the guide keeps store_id_token: without the hint Okta's logout fails.
    let p = start("Okta", okta, |toml| {
        let toml = with_key(&toml, &key);
        swap(&toml, "store_id_token = true", "store_id_token = false")
    })
    .await;
    let mut b = login(&p.h).await;
    let location = logout(&p.h, &mut b).await;
    assert!(all(&pairs(&location), "id_token_hint").is_empty());
    assert_eq!(b.get(&location, &[]).await.status, 400);
}

#[tokio::test]
async fn keycloak_profile() {
    // "Signed Jwt" with an EC key, and "Pushed authorization request required".
    let p = start(
        "Keycloak",
        |b| {
            b.auth_method = AuthMethod::PrivateKeyJwt(&CLIENT_EC256);
            b.par_endpoint = true;
            b.require_par = true;
        },
        |toml| {
            let toml = swap(
                &toml,
                "client_secret = \"env:SEALGATE_CLIENT_SECRET\"\n",
                &format!(
                    "client_assertion_key = \"{}\"\nclient_assertion_kid = \"kc-1\"\n",
                    CLIENT_EC256.config_ref()
                ),
            );
            swap(&toml, "\"client_secret_basic\"", "\"private_key_jwt\"")
        },
    )
    .await;
    let h = &p.h;
    assert!(h.idp.issuer().ends_with("/realms/realm"));
    let mut b = login(h).await;
    let authorize = last(h, "/authorize");
    let names: Vec<&str> = authorize.query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["client_id", "request_uri"]);
    assert_eq!(authorize.query_param("client_id"), Some("sealgate"));
    assert_eq!(jwt(&upstream_token(&mut b).await)["aud"], "api");

    // "Revoke Refresh Token": single-use refresh tokens.
    advance(h, 290);
    upstream_token(&mut b).await;
    advance(h, 290);
    upstream_token(&mut b).await;
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_ne!(rts[0], rts[1]);
    assert!(!live(h, &rts[0]));

    // Logout: revoked, then RP-initiated logout with id_token_hint.
    let location = logout(h, &mut b).await;
    assert!(!live(h, last(h, "/revoke").form_param("token").unwrap()));
    assert_rp_logout(h, &mut b, &location).await;
    assert_eq!(h.idp.assertion_refusals(), Vec::<String>::new());

    // Back-channel logout with Keycloak's pre-25 `typ: JWT` (strict_logout_token_typ = false).
    let mut b = login(h).await;
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": h.idp.current_kid() });
    let claims = Value::Object(h.idp.logout_claims(|_| {}));
    let token = sign_jws(
        &header,
        &claims,
        h.idp.current_key().encoding(),
        Algorithm::RS256,
    );
    let body = format!("logout_token={}", urlencode(&token));
    let r = h
        .browser()
        .post(
            &Harness::url("/bff/backchannel-logout"),
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.user(&mut b).await.status, 401, "ended by the IdP");
}

fn google(b: &mut Behaviour) {
    b.access_tokens = AccessTokens::Opaque;
    b.refresh_when = RefreshWhen::WithAuthParams(vec![
        ("access_type".into(), "offline".into()),
        ("prompt".into(), "consent".into()),
    ]);
    b.rotation = Rotation::None;
    b.refused_scopes = vec!["offline_access".into()];
    b.end_session_endpoint = false;
    b.revoke_all_grants = true;
    b.advertise_iss_param = false;
    b.iss_param = IssParam::Missing;
}

#[tokio::test]
async fn google_profile() {
    let p = start("Google", google, |toml| toml).await;
    let h = &p.h;
    let mut b = login(h).await;
    let mut other_device = login(h).await;
    let authorize = last(h, "/authorize");
    assert_eq!(authorize.query_param("access_type"), Some("offline"));
    assert_eq!(authorize.query_param("prompt"), Some("consent"));
    // prompt is fixed by auth_params: the SPA cannot change it; login_hint passes.
    let r = b
        .get(
            &Harness::url("/bff/login?prompt=none&login_hint=a%40example.com"),
            &[("sec-fetch-mode", "navigate")],
        )
        .await;
    let query = pairs(&r.location().unwrap());
    assert_eq!(all(&query, "prompt"), ["consent"]);
    assert_eq!(all(&query, "login_hint"), ["a@example.com"]);
    // Opaque access tokens.
    let first = upstream_token(&mut b).await;
    assert_opaque(&first);

    // The refresh token exists thanks to access_type=offline&prompt=consent; Google does not
    // rotate it, so every refresh redeems the same one.
    advance(h, 290);
    let second = upstream_token(&mut b).await;
    assert_opaque(&second);
    assert_ne!(first, second);
    advance(h, 290);
    upstream_token(&mut b).await;
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_eq!(rts[0], rts[1]);

    // Logout: no end-session endpoint, so back to the return URL; the refresh token is
    // revoked, which ends the app's access for the user: the other device's next refresh fails.
    assert_eq!(logout(h, &mut b).await, "/");
    assert_eq!(
        last(h, "/revoke").form_param("token"),
        Some(rts[0].as_str())
    );
    assert!(!live(h, &rts[0]));
    assert_eq!(api(&mut other_device).await.status, 401);

    // Without prompt=consent, no refresh token: the expired access token cannot be renewed,
    // and the session ends at revalidate_every.
    let p = start("Google", google, |toml| {
        swap(&toml, ", prompt = \"consent\"", "")
    })
    .await;
    let mut b = login(&p.h).await;
    let first = upstream_token(&mut b).await;
    advance(&p.h, 301);
    assert_eq!(upstream_token(&mut b).await, first, "not renewed");
    advance(&p.h, 15 * 60 - 300);
    assert_eq!(api(&mut b).await.status, 401);
    assert!(redeemed(&p.h).is_empty());

    // offline_access in scopes: Google refuses the login.
    let p = start("Google", google, |toml| {
        swap(&toml, "\"email\"]", "\"email\", \"offline_access\"]")
    })
    .await;
    let mut b = p.h.browser();
    let r = p.h.login(&mut b).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("Sign-in failed"));
    assert!(p.h.idp.requests_to("/token").is_empty());
}

fn cognito(b: &mut Behaviour) {
    b.access_tokens = AccessTokens::NoAud;
    b.rotation = Rotation::None;
    b.refused_scopes = vec!["offline_access".into()];
    b.end_session_rule = EndSessionRule::Cognito;
    b.advertise_iss_param = false;
    b.iss_param = IssParam::Missing;
}

#[tokio::test]
async fn cognito_profile() {
    let p = start("Amazon Cognito", cognito, |toml| toml).await;
    let h = &p.h;
    let mut b = login(h).await;
    // A JWT without aud: the API checks client_id and token_use.
    let token = jwt(&upstream_token(&mut b).await);
    assert_eq!(token.get("aud"), None);
    assert_eq!(token["client_id"], "app-client-id");
    assert_eq!(token["token_use"], "access");

    // Refresh tokens come without offline_access and are not rotated.
    advance(h, 290);
    upstream_token(&mut b).await;
    advance(h, 290);
    upstream_token(&mut b).await;
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_eq!(rts[0], rts[1]);

    // Logout: sealgate's session ends and the refresh token is revoked; the redirect to
    // Cognito's /logout carries client_id and the guide's logout_params logout_uri, and Cognito
    // returns the browser to the app.
    let location = logout(h, &mut b).await;
    assert!(!live(h, &rts[0]));
    assert_eq!(
        last(h, "/revoke").form_param("token"),
        Some(rts[0].as_str())
    );
    assert!(location.starts_with(&h.idp.endpoint("/end-session")));
    assert!(location.contains("client_id=app-client-id"), "{location}");
    assert!(
        location.contains("logout_uri=https%3A%2F%2Fapp.example.com%2F"),
        "{location}"
    );
    let r = b.get(&location, &[]).await;
    assert_eq!(r.location().as_deref(), Some("https://app.example.com/"));
    assert_eq!(h.user(&mut b).await.status, 401);

    // Before 2024, discovery listed no end_session_endpoint: the logout is local.
    let p = start(
        "Amazon Cognito",
        |b| {
            cognito(b);
            b.end_session_endpoint = false;
        },
        |toml| toml,
    )
    .await;
    let mut b = login(&p.h).await;
    assert_eq!(logout(&p.h, &mut b).await, "/");
    assert_eq!(p.h.idp.requests_to("/revoke").len(), 1);
}
