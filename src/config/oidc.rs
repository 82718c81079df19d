//! `[oidc]` or `[[providers]]`: the identity providers and how their tokens are checked. A
//! provider's keys are `[oidc]`'s, plus `name`; problems in `[[providers]]` entry N are named
//! `providers[N].key`.

use std::collections::HashSet;

use super::client_auth::client_auth;
use super::context::{Cx, span};
use super::problem::invalid;
use super::raw::RawOidc;
use super::request_params::{login_params, logout_params, overlap, param_table};
use super::settings::{
    ASYMMETRIC_ALGS, MAX_LOGOUT_TOKEN_AGE, OidcSettings, ParMode, Params, SigningAlgsKey,
};
use super::values;

/// Longest provider name (it is a path segment of the callback and is sealed in sessions).
const MAX_NAME_LEN: usize = 32;

/// The providers: a lone `[oidc]`, or every `[[providers]]` entry. Names are unique, and so is
/// each issuer + client id pair.
pub(super) fn providers(
    lone: Option<RawOidc>,
    listed: Vec<(usize, RawOidc)>,
    has_listed: bool,
    cx: &mut Cx<'_>,
) -> Option<Vec<OidcSettings>> {
    if let Some(o) = lone {
        return oidc(o, false, cx).map(|p| vec![p]);
    }
    if !has_listed {
        return None; // the missing table is recorded already
    }
    if listed.is_empty() {
        return cx.refuse(None, invalid("providers", "must have at least one entry"));
    }
    let mut out = Vec::with_capacity(listed.len());
    let mut names = HashSet::new();
    let mut clients = HashSet::new();
    for (i, raw) in listed {
        let key = format!("providers[{i}]");
        let at = span(raw.name.as_ref());
        let Some(p) = cx.with_provider_key(&key, |cx| oidc(raw, true, cx)) else {
            continue;
        };
        if !names.insert(p.name.clone()) {
            cx.push(
                invalid(
                    &format!("{key}.name"),
                    format!("{:?} is used twice", p.name),
                ),
                at.clone(),
            );
        }
        if !clients.insert((p.issuer.clone(), p.client_id.clone())) {
            cx.push(
                invalid(
                    &format!("{key}.client_id"),
                    "the same issuer and client id as an earlier provider",
                ),
                at,
            );
        }
        out.push(p);
    }
    Some(out)
}

/// A provider's name: required in `[[providers]]` (`listed`), "default" for a lone `[oidc]`
/// without one. Letters, digits, `-`, `_` and `.`, at most 32.
fn name(o: &RawOidc, listed: bool, cx: &mut Cx<'_>) -> Option<String> {
    let Some(raw) = &o.name else {
        if listed {
            return cx.refuse(None, invalid("oidc.name", "required in [[providers]]"));
        }
        return Some("default".to_owned());
    };
    let name = raw.get_ref();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name != "."
        && name != "..";
    if !ok {
        let e = invalid(
            "oidc.name",
            format!("{name:?}: use 1 to {MAX_NAME_LEN} ASCII letters, digits, '-', '_', '.'"),
        );
        return cx.refuse(Some(raw.span()), e);
    }
    Some(name.clone())
}

fn oidc(o: RawOidc, listed: bool, cx: &mut Cx<'_>) -> Option<OidcSettings> {
    let name = name(&o, listed, cx);
    let issuer_url = cx.ok(
        Some(o.issuer.span()),
        values::web_url("oidc.issuer", o.issuer.get_ref()),
    );
    if issuer_url.is_some_and(|u| u.query().is_some()) {
        cx.push(
            invalid("oidc.issuer", "must not contain a query"),
            Some(o.issuer.span()),
        );
    }
    if o.client_id.get_ref().is_empty() {
        cx.push(
            invalid("oidc.client_id", "must not be empty"),
            Some(o.client_id.span()),
        );
    }
    let scopes = scopes(&o, cx);
    let algs = signing_algs(&o, cx);
    let token_endpoint_auth = client_auth(&o, cx);
    let post_logout_redirect_uri = match &o.post_logout_redirect_uri {
        None => Some(None),
        Some(u) => cx.ok(
            Some(u.span()),
            values::web_url("oidc.post_logout_redirect_uri", u.get_ref()).map(Some),
        ),
    };
    let timeout = cx.duration("oidc.timeout", o.timeout.as_ref(), "10s");
    let jwks_refetch_cooldown = cx.duration(
        "oidc.jwks_refetch_cooldown",
        o.jwks_refetch_cooldown.as_ref(),
        "30s",
    );
    let clock_skew = cx.duration("oidc.clock_skew", o.clock_skew.as_ref(), "60s");
    let max_id_token_age = cx.duration("oidc.max_id_token_age", o.max_id_token_age.as_ref(), "10m");
    let max_logout_token_age = match cx.duration(
        "oidc.max_logout_token_age",
        o.max_logout_token_age.as_ref(),
        "5m",
    ) {
        Some(age) if age > MAX_LOGOUT_TOKEN_AGE => {
            let e = invalid(
                "oidc.max_logout_token_age",
                "at most 1h: logout tokens are short-lived (OIDC Back-Channel Logout 2.4)",
            );
            cx.refuse(span(o.max_logout_token_age.as_ref()), e)
        }
        age => age,
    };
    let auth_params = param_table("oidc.auth_params", o.auth_params.as_ref(), cx);
    let token_params = param_table("oidc.token_params", o.token_params.as_ref(), cx);
    let logout_params = logout_params(o.logout_params.as_ref(), cx);
    let end_session_endpoint = match &o.end_session_endpoint {
        None => Some(None),
        Some(u) => cx.ok(
            Some(u.span()),
            values::web_url("oidc.end_session_endpoint", u.get_ref()).map(Some),
        ),
    };
    let revocation_endpoint = match &o.revocation_endpoint {
        None => Some(None),
        Some(u) => cx.ok(
            Some(u.span()),
            values::web_url("oidc.revocation_endpoint", u.get_ref()).map(Some),
        ),
    };
    let login_params = login_params(o.login_params.as_ref(), cx);
    if let (Some(configured), Some(listed)) = (&auth_params, &login_params) {
        overlap(configured, listed, &o, cx);
    }
    let par = cx.keyword(
        "oidc.par",
        o.par.as_ref(),
        "auto",
        &[
            ("auto", ParMode::Auto),
            ("always", ParMode::Always),
            ("never", ParMode::Never),
        ],
    );
    let (id_token_signing_algs, signing_algs_key) = algs?;
    Some(OidcSettings {
        name: name?,
        listed,
        issuer: o.issuer.into_inner(),
        client_id: o.client_id.into_inner(),
        scopes: scopes?,
        post_logout_redirect_uri: post_logout_redirect_uri?,
        timeout: timeout?,
        jwks_refetch_cooldown: jwks_refetch_cooldown?,
        token_endpoint_auth: token_endpoint_auth?,
        use_userinfo: o.use_userinfo.unwrap_or(false),
        dpop: o.dpop.unwrap_or(false),
        id_token_signing_algs,
        signing_algs_key,
        clock_skew: clock_skew?,
        max_id_token_age: max_id_token_age?,
        trusted_audiences: o.trusted_audiences.unwrap_or_default(),
        max_logout_token_age: max_logout_token_age?,
        strict_logout_token_typ: o.strict_logout_token_typ.unwrap_or(false),
        empty_400_is_invalid_grant: o.empty_400_is_invalid_grant.unwrap_or(false),
        auth_params: Params(auth_params?),
        token_params: Params(token_params?),
        logout_params: Params(logout_params?),
        end_session_endpoint: end_session_endpoint?,
        revocation_endpoint: revocation_endpoint?,
        login_params: login_params?,
        par: par?,
    })
}

/// Requested scopes, each a valid scope token; `openid` is added when missing.
fn scopes(o: &RawOidc, cx: &mut Cx<'_>) -> Option<Vec<String>> {
    let mut scopes = o.scopes.as_ref().map_or_else(
        || vec!["openid".into(), "profile".into(), "email".into()],
        |s| s.get_ref().clone(),
    );
    if let Some(bad) = scopes.iter().find(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        let e = invalid("oidc.scopes", format!("{bad:?} is not a valid scope token"));
        return cx.refuse(span(o.scopes.as_ref()), e);
    }
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    Some(scopes)
}

/// Accepted ID token algorithms: at least one, asymmetric only. What the client registered
/// (`id_token_signed_response_alg`, OIDC Dynamic Registration, default RS256) wins; the older
/// `id_token_signing_algs` list is still read when it is the only one set.
fn signing_algs(o: &RawOidc, cx: &mut Cx<'_>) -> Option<(Vec<String>, SigningAlgsKey)> {
    let (key, at, algs, from) = match (&o.id_token_signed_response_alg, &o.id_token_signing_algs) {
        (Some(r), legacy) => (
            "oidc.id_token_signed_response_alg",
            span(Some(r)),
            r.get_ref().to_vec(),
            if legacy.is_some() {
                SigningAlgsKey::Both
            } else {
                SigningAlgsKey::Registered
            },
        ),
        (None, Some(l)) => (
            "oidc.id_token_signing_algs",
            span(Some(l)),
            l.get_ref().clone(),
            SigningAlgsKey::Legacy,
        ),
        (None, None) => (
            "oidc.id_token_signed_response_alg",
            None,
            vec!["RS256".to_owned()],
            SigningAlgsKey::Default,
        ),
    };
    if algs.is_empty() {
        return cx.refuse(at, invalid(key, "must name at least one algorithm"));
    }
    if let Some(bad) = algs.iter().find(|a| !ASYMMETRIC_ALGS.contains(&a.as_str())) {
        let e = invalid(
            key,
            format!(
                "{bad:?} is not accepted; choose from {}",
                ASYMMETRIC_ALGS.join(", ")
            ),
        );
        return cx.refuse(at, e);
    }
    Some((algs, from))
}
