//! The self-hosted providers of `docs/providers.md` that `tests/interop/` runs for real
//! (LemonLDAP::NG, Glewlwyd, django-oauth-toolkit): sealgate with the guide's configuration
//! against the fake IdP behaving as that provider did in the interoperability run. Each test
//! pins the quirk the run found, and shows that the guide's configuration is what handles it.

use crate::support::guide::{start, swap, value_of};
use crate::support::idp::{Behaviour, Fault, IssParam, OTHER_CLIENT, Rotation};

use super::profiles::{
    advance, assert_rp_logout, jwt, last, live, login, logout, redeemed, upstream_token,
};

/// LemonLDAP::NG 2.16: additional audiences in the ID token (with `azp`), refresh tokens not
/// rotated, no revocation endpoint.
fn lemonldap(b: &mut Behaviour) {
    b.fault = Fault::ExtraAudWithAzp;
    b.rotation = Rotation::None;
    b.revocation_endpoint = false;
    b.advertise_iss_param = false;
    b.iss_param = IssParam::Missing;
}

/// The guide's `trusted_audiences` names the API; the fake IdP's extra audience is
/// OTHER_CLIENT.
fn lemonldap_audience(toml: String) -> String {
    swap(&toml, "\"api-audience\"", &format!("\"{OTHER_CLIENT}\""))
}

#[tokio::test]
async fn lemonldap_profile() {
    let p = start("LemonLDAP::NG", lemonldap, lemonldap_audience).await;
    let h = &p.h;
    let mut b = login(h).await;
    assert_eq!(jwt(&upstream_token(&mut b).await)["sub"], "alice");

    // Refresh tokens are not rotated: both refreshes present the login's refresh token.
    advance(h, 290);
    upstream_token(&mut b).await;
    advance(h, 290);
    upstream_token(&mut b).await;
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_eq!(rts[0], rts[1]);

    // No revocation endpoint: the logout is RP-initiated only.
    let location = logout(h, &mut b).await;
    assert!(h.idp.requests_to("/revoke").is_empty());
    assert_rp_logout(h, &mut b, &location).await;
}

#[tokio::test]
async fn lemonldap_additional_audience_needs_trusted_audiences() {
    let p = start("LemonLDAP::NG", lemonldap, |toml| {
        let line = toml
            .lines()
            .find(|l| l.starts_with("trusted_audiences"))
            .expect("the guide sets trusted_audiences")
            .to_owned();
        swap(&toml, &format!("{line}\n"), "")
    })
    .await;
    let h = &p.h;
    let mut b = h.browser();
    let r = h.login(&mut b).await;
    assert_eq!(r.status, 400, "an untrusted extra audience is refused");
    assert_eq!(h.user(&mut b).await.status, 401);
}

/// django-oauth-toolkit 3.4: the revocation endpoint only in RFC 8414 metadata, rotation with
/// reuse detection, no `iss` in the authorization response by default.
fn dot(b: &mut Behaviour) {
    b.revocation_in_discovery = false;
    b.rotation = Rotation::RotateRevokeFamilyOnReuse;
    b.advertise_iss_param = false;
    b.iss_param = IssParam::Missing;
}

/// The guide's `revocation_endpoint`, pointed at the fake IdP's.
fn dot_revocation(toml: String) -> String {
    let issuer = value_of(&toml, "issuer");
    swap(
        &toml,
        "\"https://auth.example.com/o/revoke_token/\"",
        &format!("\"{issuer}/revoke\""),
    )
}

#[tokio::test]
async fn django_oauth_toolkit_profile() {
    let p = start("django-oauth-toolkit", dot, dot_revocation).await;
    let h = &p.h;
    assert!(h.idp.issuer().ends_with("/o"));
    let mut b = login(h).await;
    upstream_token(&mut b).await;

    // Rotation: each refresh presents the previous refresh's token, and spends it.
    advance(h, 290);
    upstream_token(&mut b).await;
    advance(h, 290);
    upstream_token(&mut b).await;
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_ne!(rts[0], rts[1]);
    assert!(!live(h, &rts[0]));

    // The configured revocation endpoint: logout revokes the current refresh token there.
    let location = logout(h, &mut b).await;
    let revoked = last(h, "/revoke").form_param("token").unwrap().to_owned();
    assert_ne!(revoked, rts[1], "the newest refresh token, not a spent one");
    assert!(!live(h, &revoked), "the refresh token was revoked");
    assert_rp_logout(h, &mut b, &location).await;
}

#[tokio::test]
async fn django_oauth_toolkit_without_revocation_endpoint_does_not_revoke() {
    // Discovery names no revocation endpoint: without the guide's key, logout cannot revoke.
    let p = start("django-oauth-toolkit", dot, |toml| {
        let line = toml
            .lines()
            .find(|l| l.starts_with("revocation_endpoint"))
            .expect("the guide sets revocation_endpoint")
            .to_owned();
        swap(&toml, &format!("{line}\n"), "")
    })
    .await;
    let h = &p.h;
    let mut b = login(h).await;
    logout(h, &mut b).await;
    assert!(h.idp.requests_to("/revoke").is_empty());
}

/// Glewlwyd 2.7: errors from `/token` with the status only (no OAuth error body), one-use
/// refresh tokens, revocation, back-channel logout tokens without `exp` (draft 06).
fn glewlwyd(b: &mut Behaviour) {
    b.empty_error_bodies = true;
    b.rotation = Rotation::Rotate;
}

#[tokio::test]
async fn glewlwyd_profile() {
    let p = start("Glewlwyd", glewlwyd, |toml| toml).await;
    let h = &p.h;
    assert!(h.idp.issuer().ends_with("/api/oidc"));
    let mut b = login(h).await;
    assert_eq!(
        last(h, "/authorize").query_param("resource"),
        Some("api-audience")
    );
    upstream_token(&mut b).await;
    advance(h, 290);
    upstream_token(&mut b).await;
    advance(h, 290);
    upstream_token(&mut b).await;
    let rts = redeemed(h);
    assert_eq!(rts.len(), 2);
    assert_ne!(rts[0], rts[1]);
    assert!(!live(h, &rts[0]));
    let location = logout(h, &mut b).await;
    let revoked = last(h, "/revoke").form_param("token").unwrap().to_owned();
    assert!(!live(h, &revoked));
    assert_rp_logout(h, &mut b, &location).await;
}

#[tokio::test]
async fn glewlwyd_refused_refresh_with_an_empty_body_ends_the_session() {
    // Glewlwyd answers a refused refresh token with 400 and no body: the session is over (401,
    // so the SPA signs in again), not an upstream failure (502).
    let p = start("Glewlwyd", glewlwyd, |toml| toml).await;
    let h = &p.h;
    let mut b = login(h).await;
    upstream_token(&mut b).await;
    advance(h, 290);
    h.idp.set(|b| b.disabled_subs = vec!["alice".into()]);
    let r = super::profiles::api(&mut b).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(h.user(&mut b).await.status, 401, "the session ended");
}

#[tokio::test]
async fn an_empty_400_without_the_glewlwyd_setting_keeps_the_session() {
    // The same refusal at a provider not configured to mean it (a proxy or WAF in front of an
    // IdP may answer a bare 400): a failure, 502, and the session is kept.
    let p = start("Glewlwyd", glewlwyd, |toml| {
        toml.lines()
            .filter(|l| !l.starts_with("empty_400_is_invalid_grant"))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .await;
    let h = &p.h;
    let mut b = login(h).await;
    upstream_token(&mut b).await;
    advance(h, 310); // the access token has expired: the refresh must work to serve the call
    h.idp.set(|b| b.disabled_subs = vec!["alice".into()]);
    let r = super::profiles::api(&mut b).await;
    assert_eq!(r.status, 502, "{}", r.body);
    // Once the IdP answers again, the same session refreshes and is served.
    h.idp.set(|b| b.disabled_subs.clear());
    let r = super::profiles::api(&mut b).await;
    assert_eq!(r.status, 200, "still signed in: {}", r.body);
}

#[tokio::test]
async fn glewlwyd_logout_token_without_exp_ends_the_session() {
    // Back-Channel Logout draft 06, which Glewlwyd implements, has no `exp` claim.
    let p = start("Glewlwyd", glewlwyd, |toml| toml).await;
    let h = &p.h;
    let mut b = login(h).await;
    let token = h.idp.logout_token(|c| drop(c.remove("exp")));
    let r = h
        .browser()
        .post(
            &crate::support::app::Harness::url("/bff/backchannel-logout"),
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("logout_token={}", crate::support::app::urlencode(&token)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.user(&mut b).await.status, 401, "ended by the IdP");
}
