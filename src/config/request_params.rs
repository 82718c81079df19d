//! `[oidc] auth_params`, `token_params` and `login_params`: parameters added to requests to the
//! IdP. A name sealgate sets itself (or a case variant of one) is refused with its key, so
//! configuration can never override `state`, `redirect_uri`, PKCE or client authentication.

use std::collections::BTreeMap;

use toml::Spanned;

use super::context::{Cx, span};
use super::problem::invalid;
use crate::oidc_params::{self, DEFAULT_LOGIN_PARAMS};

/// The key of parameter `name` in table `table` (`oidc.auth_params.resource`), quoted when it
/// is not a bare TOML key.
pub(super) fn param_key(table: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        format!("{table}.{name}")
    } else {
        format!("{table}.{name:?}")
    }
}

/// A table of extra parameters (`oidc.auth_params`, `oidc.token_params`), in name order. Each
/// problem names its parameter's key; values are never quoted (one may be a credential).
pub(super) fn param_table(
    table: &str,
    raw: Option<&Spanned<BTreeMap<String, Spanned<String>>>>,
    cx: &mut Cx<'_>,
) -> Option<Vec<(String, String)>> {
    checked_table(table, raw, cx, |name, value| {
        oidc_params::name_problem(name)
            .or_else(|| case_variant(name))
            .or_else(|| {
                // A configured `prompt` or `max_age` must read as the SPA's would: the login flow
                // relies on them (silent login, the `auth_time` check).
                (oidc_params::has_specific_rule(name)
                    && oidc_params::check_login_value(name, value).is_none())
                .then_some("not a valid value for this parameter (see docs/configuration.md)")
            })
    })
}

/// The entries of table `table`, each checked by `problem(name, value)`; `None` when one has a
/// problem (each recorded under its parameter's key, at its value).
fn checked_table(
    table: &str,
    raw: Option<&Spanned<BTreeMap<String, Spanned<String>>>>,
    cx: &mut Cx<'_>,
    problem: impl Fn(&str, &str) -> Option<&'static str>,
) -> Option<Vec<(String, String)>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut ok = true;
    for (name, value) in raw.get_ref() {
        if let Some(problem) = problem(name, value.get_ref()) {
            cx.push(
                invalid(&param_key(table, name), problem),
                Some(value.span()),
            );
            ok = false;
        }
    }
    ok.then(|| {
        raw.get_ref()
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect()
    })
}

/// A name both in `auth_params` and in `login_params` is refused: the SPA could replace what the
/// operator requires (an `acr_values` for MFA, a `max_age`). Say which one decides.
pub(super) fn overlap(
    configured: &[(String, String)],
    listed: &[String],
    o: &super::raw::RawOidc,
    cx: &mut Cx<'_>,
) {
    for (name, _) in configured {
        if listed.iter().any(|l| l.eq_ignore_ascii_case(name)) {
            let at = o
                .auth_params
                .as_ref()
                .and_then(|t| t.get_ref().get(name))
                .map(Spanned::span);
            cx.push(
                invalid(
                    &param_key("oidc.auth_params", name),
                    "also in login_params, so the SPA could replace it: remove it from \
                     login_params (the configured value is then always sent) or from auth_params",
                ),
                at,
            );
        }
    }
}

/// Parameters sealgate sets on the RP-initiated logout redirect itself.
const LOGOUT_OWNED: &[&str] = &[
    "id_token_hint",
    "post_logout_redirect_uri",
    "state",
    "client_id",
];

/// `oidc.logout_params`: added to the end-session redirect. Its own names are refused (in any
/// letter case); `post_logout_redirect_uri` has its own key.
pub(super) fn logout_params(
    raw: Option<&Spanned<BTreeMap<String, Spanned<String>>>>,
    cx: &mut Cx<'_>,
) -> Option<Vec<(String, String)>> {
    checked_table("oidc.logout_params", raw, cx, |name, _| {
        if LOGOUT_OWNED.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            Some("sealgate sets this parameter itself; it cannot be configured")
        } else {
            oidc_params::name_problem(name)
        }
    })
}

/// A letter-case variant of a name with a value rule (`Prompt`, `MAX_AGE`): IdPs that read names
/// case-insensitively would take it for the real one, unchecked.
fn case_variant(name: &str) -> Option<&'static str> {
    DEFAULT_LOGIN_PARAMS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name) && *p != name)
        .then_some("write this parameter name in lower case (its value is checked)")
}

/// `oidc.login_params`: the `/bff/login` query parameters passed on to the IdP.
pub(super) fn login_params(
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    cx: &mut Cx<'_>,
) -> Option<Vec<String>> {
    let Some(list) = raw else {
        return Some(
            DEFAULT_LOGIN_PARAMS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        );
    };
    let mut ok = true;
    let mut names: Vec<String> = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        let name = entry.get_ref();
        let problem = if name.eq_ignore_ascii_case("returnUrl") {
            Some("returnUrl is sealgate's own login parameter")
        } else if name.eq_ignore_ascii_case("provider") {
            Some("provider is sealgate's own login parameter (it picks the [[providers]] entry)")
        } else if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            Some("listed twice")
        } else if let Some(problem) = case_variant(name) {
            Some(problem)
        } else {
            oidc_params::name_problem(name)
        };
        if let Some(problem) = problem {
            let key = format!("oidc.login_params[{i}]");
            cx.push(
                invalid(&key, format!("{name:?}: {problem}")),
                span(Some(entry)),
            );
            ok = false;
        }
        names.push(name.clone());
    }
    ok.then_some(names)
}
