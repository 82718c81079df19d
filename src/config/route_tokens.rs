//! `[[routes]]` keys that give a route a token of its own: `resource` (RFC 8707) and `scopes`
//! (a refresh-token grant, or a client-credentials grant on a `token = "client"` route),
//! `exchange` (RFC 8693 token exchange of the session's access token), and `provider` (whose
//! client a client route's token is for).
//!
//! Refused: any of them on a `token = "none"` route (it sends no token); `exchange` together
//! with `resource` or `scopes` (the exchange names its own), and on a route that may have no
//! session (`client`, `user_or_client`: there is no access token to exchange); `provider` on a
//! route whose token is always the user's (it comes from the session's provider).

use std::ops::Range;

use toml::Spanned;

use super::context::{Cx, span};
use super::problem::invalid;
use super::raw::{RawExchange, RawRoute};
use super::settings::{OidcSettings, RouteToken, TokenPolicy};

/// Longest `resource` or `audience` accepted.
const MAX_URI_LEN: usize = 2048;
/// Longest single scope accepted.
const MAX_SCOPE_LEN: usize = 256;
/// Most scopes a route may list.
const MAX_SCOPES: usize = 32;

/// The token of route `key` and its `provider`, taken out of `r`. `token` is the route's token
/// policy when it converted.
pub(super) fn route_token(
    key: &str,
    r: &mut RawRoute,
    token: Option<TokenPolicy>,
    providers: &[OidcSettings],
    cx: &mut Cx<'_>,
) -> Option<(RouteToken, Option<String>)> {
    let resource = r.resource.take();
    let scopes = r.scopes.take();
    let exchange = r.exchange.take();
    let provider = r.provider.take();
    let mut ok = true;
    if token == Some(TokenPolicy::None) {
        let present = [
            ("resource", span(resource.as_ref())),
            ("scopes", span(scopes.as_ref())),
            ("exchange", span(exchange.as_ref())),
            ("provider", span(provider.as_ref())),
        ];
        for (name, at) in present {
            if let Some(at) = at {
                let e = invalid(
                    &format!("{key}.{name}"),
                    "a token = \"none\" route sends no token",
                );
                cx.push(e, Some(at));
                ok = false;
            }
        }
    }
    let resource_value = uri(&format!("{key}.resource"), resource.as_ref(), cx);
    let scope = scope_list(key, scopes.as_ref(), cx);
    let provider = provider_name(key, provider.as_ref(), token, providers, cx);
    let route_token = match exchange {
        None => match (resource_value?, scope?) {
            (None, None) => Some(RouteToken::Default),
            (resource, scope) => Some(RouteToken::Grant { resource, scope }),
        },
        Some(exchange) => {
            let at = Some(exchange.span());
            let key = format!("{key}.exchange");
            let mixed = resource.is_some() || scopes.is_some();
            if mixed {
                let e = invalid(
                    &key,
                    "names its own resource and scope: not with this route's resource or scopes",
                );
                cx.push(e, at.clone());
            }
            let anonymous = match token {
                Some(TokenPolicy::Client) => Some("client"),
                Some(TokenPolicy::UserOrClient) => Some("user_or_client"),
                _ => None,
            };
            if let Some(policy) = anonymous {
                let e = invalid(
                    &key,
                    format!(
                        "exchanges the session's access token: not with token = \"{policy}\", whose callers may have no session"
                    ),
                );
                cx.push(e, at.clone());
            }
            let exchange = exchange_settings(&key, at, exchange.into_inner(), cx);
            if mixed || anonymous.is_some() {
                None
            } else {
                exchange
            }
        }
    };
    let out = (route_token?, provider?);
    ok.then_some(out)
}

/// `exchange = { audience, resource, scope }`: at least one, each well formed.
fn exchange_settings(
    key: &str,
    at: Option<Range<usize>>,
    raw: RawExchange,
    cx: &mut Cx<'_>,
) -> Option<RouteToken> {
    if raw.audience.is_none() && raw.resource.is_none() && raw.scope.is_none() {
        let e = invalid(key, "must name an audience, a resource or a scope");
        return cx.refuse(at, e);
    }
    let audience = audience(&format!("{key}.audience"), raw.audience.as_ref(), cx);
    let resource = uri(&format!("{key}.resource"), raw.resource.as_ref(), cx);
    let scope = scope_text(&format!("{key}.scope"), raw.scope.as_ref(), cx);
    Some(RouteToken::Exchange {
        audience: audience?,
        resource: resource?,
        scope: scope?,
    })
}

/// A `resource` (RFC 8707 2): an absolute URI without a fragment.
fn uri(key: &str, raw: Option<&Spanned<String>>, cx: &mut Cx<'_>) -> Option<Option<String>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let text = raw.get_ref();
    let problem = if text.len() > MAX_URI_LEN || text.chars().any(|c| c.is_whitespace()) {
        Some("must be an absolute URI of at most 2048 characters, without spaces")
    } else {
        match url::Url::parse(text) {
            Err(_) => Some(
                "must be an absolute URI (RFC 8707), e.g. \"https://api.example.com\" or \"api://orders\"",
            ),
            Ok(u) if u.fragment().is_some() => Some("must not contain a fragment (RFC 8707)"),
            Ok(_) => None,
        }
    };
    match problem {
        Some(p) => cx.refuse(Some(raw.span()), invalid(key, p)),
        None => Some(Some(text.clone())),
    }
}

/// An `audience` (RFC 8693 2.1): a logical name, non-empty, no control characters.
fn audience(key: &str, raw: Option<&Spanned<String>>, cx: &mut Cx<'_>) -> Option<Option<String>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let text = raw.get_ref();
    if text.is_empty() || text.len() > MAX_URI_LEN || text.chars().any(char::is_control) {
        let e = invalid(
            key,
            "must be a name of 1 to 2048 characters without control characters",
        );
        return cx.refuse(Some(raw.span()), e);
    }
    Some(Some(text.clone()))
}

/// Whether `s` is one RFC 6749 3.3 scope token (`%x21 / %x23-5B / %x5D-7E`).
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCOPE_LEN
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

const SCOPE_PROBLEM: &str =
    "a scope is 1 to 256 visible ASCII characters, no space, quote or backslash (RFC 6749 3.3)";

/// `scopes = [...]`: at least one scope, each a scope token, none twice; joined by spaces.
fn scope_list(
    key: &str,
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    cx: &mut Cx<'_>,
) -> Option<Option<String>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let key = format!("{key}.scopes");
    let list = raw.get_ref();
    if list.is_empty() || list.len() > MAX_SCOPES {
        let e = invalid(&key, "must list 1 to 32 scopes");
        return cx.refuse(Some(raw.span()), e);
    }
    let mut ok = true;
    for (i, s) in list.iter().enumerate() {
        let problem = if !is_scope_token(s.get_ref()) {
            Some(SCOPE_PROBLEM)
        } else if list[..i].iter().any(|t| t.get_ref() == s.get_ref()) {
            Some("listed twice")
        } else {
            None
        };
        if let Some(p) = problem {
            cx.push(invalid(&format!("{key}[{i}]"), p), Some(s.span()));
            ok = false;
        }
    }
    let joined: Vec<&str> = list.iter().map(|s| s.get_ref().as_str()).collect();
    ok.then(|| Some(joined.join(" ")))
}

/// `exchange.scope = "a b"`: scope tokens separated by single spaces.
fn scope_text(key: &str, raw: Option<&Spanned<String>>, cx: &mut Cx<'_>) -> Option<Option<String>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let text = raw.get_ref();
    let tokens: Vec<&str> = text.split(' ').collect();
    if tokens.len() > MAX_SCOPES || !tokens.iter().all(|t| is_scope_token(t)) {
        let e = invalid(
            key,
            format!("scopes separated by single spaces, at most 32; {SCOPE_PROBLEM}"),
        );
        return cx.refuse(Some(raw.span()), e);
    }
    Some(Some(text.clone()))
}

/// `provider = "NAME"`: a configured provider, on a route that may send the application's
/// token (the user's always comes from the session's provider).
fn provider_name(
    key: &str,
    raw: Option<&Spanned<String>>,
    token: Option<TokenPolicy>,
    providers: &[OidcSettings],
    cx: &mut Cx<'_>,
) -> Option<Option<String>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let key = format!("{key}.provider");
    let at = Some(raw.span());
    let name = raw.get_ref();
    match token {
        Some(TokenPolicy::Client | TokenPolicy::UserOrClient) => {}
        Some(TokenPolicy::None) => return None, // refused above
        Some(_) => {
            let e = invalid(
                &key,
                "only for token = \"client\" or \"user_or_client\": a user's token comes from the session's provider",
            );
            return cx.refuse(at, e);
        }
        None => return None,
    }
    if !providers.is_empty() && !providers.iter().any(|p| p.name == *name) {
        let names: Vec<String> = providers.iter().map(|p| format!("{:?}", p.name)).collect();
        let e = invalid(
            &key,
            format!(
                "{name:?} is not a provider (configured: {})",
                names.join(", ")
            ),
        );
        return cx.refuse(at, e);
    }
    Some(Some(name.clone()))
}
