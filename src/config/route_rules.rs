//! `[[routes]]` rules about the signed-in user: step-up (`acr_values`, `max_auth_age`), claim
//! rules (`require_claims`) and identity headers (`identity_headers`).
//!
//! Each needs the session's ID token claims, so each is refused on a `token = "none"` or
//! `token = "client"` route and when `session.store_id_token = false`; step-up also needs
//! every provider to pass the step-up login's `acr_values` / `max_age` on (`login_params`).

use std::time::Duration;

use toml::Spanned;

use super::context::{Cx, span};
use super::problem::invalid;
use super::raw::RawRoute;
use super::request_params::param_key;
use super::settings::{ClaimRule, ClaimValue, OidcSettings, RouteRules, TokenPolicy};
use super::values;
use crate::oidc_params::check_login_value;
use crate::proxy::headers::reserved_request_header;

/// Longest `max_auth_age`: `max_age` is sent to the IdP as at most 10 digits.
const MAX_AUTH_AGE_SECS: u64 = 9_999_999_999;

/// What the rules depend on in other sections (each `None` when that section did not convert).
pub(super) struct Needs<'a> {
    /// `session.store_id_token`.
    pub store_id_token: Option<bool>,
    /// The providers, every one of which may hold a session a step-up route sees.
    pub providers: &'a [OidcSettings],
}

/// The rules of route `key` (`routes[i]`), taken out of `r`. `token` is the route's token
/// policy when it converted.
pub(super) fn rules(
    key: &str,
    r: &mut RawRoute,
    token: Option<TokenPolicy>,
    needs: &Needs<'_>,
    cx: &mut Cx<'_>,
) -> Option<RouteRules> {
    let present: Vec<(&str, std::ops::Range<usize>)> = [
        ("acr_values", r.acr_values.as_ref().map(Spanned::span)),
        ("max_auth_age", span(r.max_auth_age.as_ref())),
        (
            "require_claims",
            r.require_claims.as_ref().map(Spanned::span),
        ),
        (
            "identity_headers",
            r.identity_headers.as_ref().map(Spanned::span),
        ),
    ]
    .into_iter()
    .filter_map(|(name, at)| at.map(|at| (name, at)))
    .collect();
    let mut ok = true;
    for (name, at) in &present {
        let refusal = if token == Some(TokenPolicy::None) {
            Some("needs a signed-in user: not with token = \"none\"")
        } else if token == Some(TokenPolicy::Client) {
            Some("needs a signed-in user: not with token = \"client\", which never reads a session")
        } else if needs.store_id_token == Some(false) {
            Some("needs the ID token's claims, and session.store_id_token = false drops them")
        } else {
            None
        };
        if let Some(problem) = refusal {
            cx.push(invalid(&format!("{key}.{name}"), problem), Some(at.clone()));
            ok = false;
        }
    }
    let acr_values = acr_values(key, r.acr_values.take(), needs, cx);
    let max_auth_age = max_auth_age(key, r.max_auth_age.take(), needs, cx);
    let require_claims = require_claims(key, r.require_claims.take(), cx);
    let identity_headers = identity_headers(key, r.identity_headers.take(), cx);
    let rules = RouteRules {
        acr_values: acr_values?,
        max_auth_age: max_auth_age?,
        require_claims: require_claims?,
        identity_headers: identity_headers?,
    };
    ok.then_some(rules)
}

/// The key of entry `name` of table `table` of route `key` (`routes[0].identity_headers.X-User`),
/// quoted when it is not a bare TOML key.
fn entry_key(key: &str, table: &str, name: &str) -> String {
    param_key(&format!("{key}.{table}"), name)
}

/// The providers whose `login_params` do not pass `param` on, as their keys.
fn not_passing(needs: &Needs<'_>, param: &str) -> Vec<String> {
    needs
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.login_params.iter().any(|n| n == param))
        .map(|(i, p)| {
            if p.listed {
                format!("providers[{i}].login_params")
            } else {
                "oidc.login_params".to_owned()
            }
        })
        .collect()
}

/// `acr_values`: at least one value, each one `/bff/login` would pass on as `acr_values`.
fn acr_values(
    key: &str,
    raw: Option<Spanned<Vec<Spanned<String>>>>,
    needs: &Needs<'_>,
    cx: &mut Cx<'_>,
) -> Option<Vec<String>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let key = format!("{key}.acr_values");
    let at = Some(raw.span());
    let values = raw.into_inner();
    if values.is_empty() {
        return cx.refuse(at, invalid(&key, "must list at least one value"));
    }
    let mut ok = true;
    for (i, v) in values.iter().enumerate() {
        let text = v.get_ref();
        let single = !text.is_empty() && !text.contains(' ');
        if !single || check_login_value("acr_values", text).is_none() {
            let e = invalid(
                &format!("{key}[{i}]"),
                "one value of at most 256 characters: letters, digits and - . _ ~ : / @ + = #",
            );
            cx.push(e, Some(v.span()));
            ok = false;
        }
    }
    let list: Vec<String> = values.into_iter().map(Spanned::into_inner).collect();
    if ok && check_login_value("acr_values", &list.join(" ")).is_none() {
        let e = invalid(&key, "at most 16 values, 512 characters in all");
        return cx.refuse(at, e);
    }
    for login_params in not_passing(needs, "acr_values") {
        let e = invalid(
            &key,
            format!(
                "the step-up login passes acr_values to the IdP, and {login_params} does not list \"acr_values\""
            ),
        );
        cx.push(e, at.clone());
        ok = false;
    }
    ok.then_some(list)
}

/// `max_auth_age`: a duration of at least a second that fits `max_age`.
fn max_auth_age(
    key: &str,
    raw: Option<Spanned<String>>,
    needs: &Needs<'_>,
    cx: &mut Cx<'_>,
) -> Option<Option<Duration>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let key = format!("{key}.max_auth_age");
    let at = Some(raw.span());
    let age = cx.ok(at.clone(), values::duration(&key, raw.get_ref()))?;
    if age.as_secs() == 0 || age.as_secs() > MAX_AUTH_AGE_SECS {
        return cx.refuse(at, invalid(&key, "must be between 1s and 9999999999s"));
    }
    let mut out = Some(Some(Duration::from_secs(age.as_secs())));
    for login_params in not_passing(needs, "max_age") {
        let e = invalid(
            &key,
            format!(
                "the step-up login passes max_age to the IdP, and {login_params} does not list \"max_age\""
            ),
        );
        out = cx.refuse(at.clone(), e);
    }
    out
}

/// `require_claims = { name = value, … }`: a string, boolean or number the claim must equal,
/// or a non-empty list of strings the claim must hold one of.
fn require_claims(
    key: &str,
    raw: Option<Spanned<std::collections::BTreeMap<String, Spanned<toml::Value>>>>,
    cx: &mut Cx<'_>,
) -> Option<Vec<(String, ClaimRule)>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut out = Some(Vec::new());
    for (name, value) in raw.into_inner() {
        let at = Some(value.span());
        let entry = entry_key(key, "require_claims", &name);
        let rule = if name.is_empty() {
            Err("a claim name must not be empty")
        } else {
            claim_rule(value.into_inner())
        };
        match (rule, out.as_mut()) {
            (Ok(rule), Some(list)) => list.push((name, rule)),
            (Ok(_), None) => {}
            (Err(problem), _) => out = cx.refuse(at, invalid(&entry, problem)),
        }
    }
    out
}

fn claim_rule(value: toml::Value) -> Result<ClaimRule, &'static str> {
    const KINDS: &str = "must be a string, a boolean, a number, or a list of strings";
    Ok(ClaimRule::Equals(match value {
        toml::Value::String(s) => ClaimValue::Text(s),
        toml::Value::Boolean(b) => ClaimValue::Bool(b),
        toml::Value::Integer(i) => ClaimValue::Integer(i),
        toml::Value::Float(f) if f.is_finite() => ClaimValue::Float(f),
        toml::Value::Float(_) => return Err("must be a finite number"),
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err("must list at least one value");
            }
            let strings: Option<Vec<String>> = items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect();
            return strings.map(ClaimRule::AnyOf).ok_or(KINDS);
        }
        toml::Value::Table(_) => {
            return Err("must not be a table: claim names are top-level (quote a name with dots)");
        }
        toml::Value::Datetime(_) => return Err(KINDS),
    }))
}

/// `identity_headers = { "Header-Name" = "claim", … }`: valid header names that sealgate does
/// not manage and that are not hop-by-hop or forwarding headers, each once.
fn identity_headers(
    key: &str,
    raw: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    cx: &mut Cx<'_>,
) -> Option<Vec<(http::HeaderName, String)>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut out = Some(Vec::new());
    let mut seen: Vec<http::HeaderName> = Vec::new();
    for (name, claim) in raw.into_inner() {
        let at = Some(claim.span());
        let entry = entry_key(key, "identity_headers", &name);
        let header = match http::HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => Err("not a valid header name".to_owned()),
            Ok(h) => match reserved_request_header(h.as_str()) {
                Some(why) => Err(format!("{why}; it cannot carry a claim")),
                None if seen.contains(&h) => Err("names the same header as another entry".into()),
                None if claim.get_ref().is_empty() => {
                    Err("the claim name must not be empty".into())
                }
                None => Ok(h),
            },
        };
        match (header, out.as_mut()) {
            (Ok(h), list) => {
                seen.push(h.clone());
                if let Some(list) = list {
                    list.push((h, claim.into_inner()));
                }
            }
            (Err(problem), _) => out = cx.refuse(at, invalid(&entry, problem)),
        }
    }
    out
}
