//! `[bff]` and `[[routes]]`: the paths sealgate answers and the APIs it proxies.

use super::context::{Cx, span};
use super::problem::invalid;
use super::raw::{RawBff, RawCookieForwarding, RawRoute};
use super::route_rules::{self, Needs};
use super::route_tokens;
use super::settings::{BffSettings, CookieForwarding, CsrfMode, RouteSettings, TokenPolicy};
use super::values;

pub(super) fn bff(b: RawBff, cx: &mut Cx<'_>) -> Option<BffSettings> {
    let prefix_text = b.prefix.as_ref().map_or("/bff", |p| p.get_ref().as_str());
    let prefix = match cx.ok(
        span(b.prefix.as_ref()),
        values::path_prefix("bff.prefix", prefix_text),
    ) {
        Some(p) if p.is_empty() => cx.refuse(
            span(b.prefix.as_ref()),
            invalid("bff.prefix", "must not be \"/\""),
        ),
        p => p,
    };
    let mut allowed_origins = Some(Vec::new());
    for o in b.allowed_origins.unwrap_or_default() {
        let problem = format!("{:?} must be an origin without a path", o.get_ref());
        let origin = cx.ok(
            Some(o.span()),
            values::origin("bff.allowed_origins", o.get_ref(), &problem),
        );
        match (origin, allowed_origins.as_mut()) {
            (Some(url), Some(list)) => list.push(url.origin().ascii_serialization()),
            _ => allowed_origins = None,
        }
    }
    let csrf_header_text = b
        .csrf_header
        .as_ref()
        .map_or("X-CSRF", |h| h.get_ref().as_str());
    let csrf_header = cx.ok(
        span(b.csrf_header.as_ref()),
        http::HeaderName::from_bytes(csrf_header_text.as_bytes())
            .map_err(|_| invalid("bff.csrf_header", "not a valid header name")),
    );
    let csrf_value = b.csrf_value.as_ref().map_or("1", |v| v.get_ref().as_str());
    if csrf_value.is_empty() || http::HeaderValue::from_str(csrf_value).is_err() {
        cx.push(
            invalid("bff.csrf_value", "not a valid header value"),
            span(b.csrf_value.as_ref()),
        );
    }
    let csrf_mode = cx.keyword(
        "bff.csrf_mode",
        b.csrf_mode.as_ref(),
        "header",
        &[
            ("header", CsrfMode::Header),
            ("double-submit", CsrfMode::DoubleSubmit),
        ],
    );
    Some(BffSettings {
        prefix: prefix?,
        allowed_origins: allowed_origins?,
        csrf_header: csrf_header?,
        csrf_value: csrf_value.to_owned(),
        csrf_mode: csrf_mode?,
        user_claims: b
            .user_claims
            .unwrap_or_else(|| vec!["name".into(), "email".into(), "preferred_username".into()]),
    })
}

/// Every `[[routes]]` entry that converts, longest prefix first. `bff_prefix` is `bff.prefix`
/// when `[bff]` converted: no route may take its paths.
pub(super) fn routes(
    raw: Vec<(usize, RawRoute)>,
    bff_prefix: Option<&str>,
    needs: &Needs<'_>,
    cx: &mut Cx<'_>,
) -> Vec<RouteSettings> {
    let mut routes: Vec<RouteSettings> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    for (i, r) in raw {
        if let Some(route) = route(i, r, bff_prefix, &mut prefixes, needs, cx) {
            routes.push(route);
        }
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    routes
}

/// Route `i`. `earlier` holds the prefixes of the routes before it (a duplicate is refused).
fn route(
    i: usize,
    mut r: RawRoute,
    bff_prefix: Option<&str>,
    earlier: &mut Vec<String>,
    needs: &Needs<'_>,
    cx: &mut Cx<'_>,
) -> Option<RouteSettings> {
    let key = format!("routes[{i}]");
    let prefix = route_prefix(&key, &r, bff_prefix, earlier, cx);
    let upstream = match cx.ok(
        Some(r.upstream.span()),
        values::web_url(&format!("{key}.upstream"), r.upstream.get_ref()),
    ) {
        Some(u) if u.query().is_some() => {
            let e = invalid(&format!("{key}.upstream"), "must not contain a query");
            cx.refuse(Some(r.upstream.span()), e)
        }
        u => u,
    };
    let token = cx.keyword(
        &format!("{key}.token"),
        r.token.as_ref(),
        "user",
        &[
            ("user", TokenPolicy::User),
            ("optional", TokenPolicy::Optional),
            ("none", TokenPolicy::None),
            ("client", TokenPolicy::Client),
            ("user_or_client", TokenPolicy::UserOrClient),
        ],
    );
    let rules = route_rules::rules(&key, &mut r, token, needs, cx);
    let own = route_tokens::route_token(&key, &mut r, token, needs.providers, cx);
    let mut methods = Some(Vec::new());
    for m in r.methods.unwrap_or_default() {
        let method = http::Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes())
            .ok()
            .filter(|m| *m != http::Method::CONNECT)
            .ok_or_else(|| {
                invalid(
                    &format!("{key}.methods"),
                    format!("{:?} is not an allowed method", m.get_ref()),
                )
            });
        match (cx.ok(Some(m.span()), method), methods.as_mut()) {
            (Some(method), Some(list)) => list.push(method),
            _ => methods = None,
        }
    }
    let forward_cookies = forward_cookies(&key, r.forward_cookies, cx);
    let timeout = cx.duration(&format!("{key}.timeout"), r.timeout.as_ref(), "30s");
    let limits = match r.limits {
        None => Some(None),
        Some(l) => super::limits::limit(&format!("{key}.limits"), l, true, cx).map(Some),
    };
    let (route_token, provider) = own?;
    Some(RouteSettings {
        prefix: prefix?,
        upstream: upstream?,
        token: token?,
        route_token,
        provider,
        strip_prefix: r.strip_prefix.unwrap_or(true),
        methods: methods?,
        timeout: timeout?,
        websocket: r.websocket.unwrap_or(false),
        forward_cookies: forward_cookies?,
        http2: r.http2.unwrap_or(false),
        rules: rules?,
        key,
        index: i,
        limits: limits?,
    })
}

/// A route's prefix: a path, not under `bff.prefix`, not one an earlier route has.
fn route_prefix(
    key: &str,
    r: &RawRoute,
    bff_prefix: Option<&str>,
    earlier: &mut Vec<String>,
    cx: &mut Cx<'_>,
) -> Option<String> {
    let key = format!("{key}.prefix");
    let at = Some(r.prefix.span());
    let text = r.prefix.get_ref();
    let prefix = cx.ok(at.clone(), values::path_prefix(&key, text))?;
    if prefix.is_empty() && text != "/" {
        return cx.refuse(at, invalid(&key, "must be a path"));
    }
    if let Some(bff) = bff_prefix
        && (prefix == bff || prefix.starts_with(&format!("{bff}/")))
    {
        return cx.refuse(at, invalid(&key, "overlaps bff.prefix"));
    }
    if earlier.contains(&prefix) {
        return cx.refuse(at, invalid(&key, "duplicates an earlier route"));
    }
    earlier.push(prefix.clone());
    Some(prefix)
}

/// `forward_cookies`: `"all"`, `"none"` (the default) or a list of cookie names.
fn forward_cookies(
    key: &str,
    raw: Option<toml::Spanned<RawCookieForwarding>>,
    cx: &mut Cx<'_>,
) -> Option<CookieForwarding> {
    let Some(raw) = raw else {
        return Some(CookieForwarding::None);
    };
    let at = Some(raw.span());
    let key = format!("{key}.forward_cookies");
    match raw.into_inner() {
        RawCookieForwarding::Keyword(k) if k == "all" => Some(CookieForwarding::All),
        RawCookieForwarding::Keyword(k) if k == "none" => Some(CookieForwarding::None),
        RawCookieForwarding::Keyword(k) => {
            let e = invalid(
                &key,
                format!("{k:?}: use \"all\", \"none\" or a list of cookie names"),
            );
            cx.refuse(at, e)
        }
        RawCookieForwarding::Names(names) => {
            if let Some(bad) = names.iter().find(|n| {
                n.is_empty()
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
            }) {
                let e = invalid(&key, format!("{bad:?} is not a cookie name"));
                return cx.refuse(at, e);
            }
            Some(CookieForwarding::Only(names))
        }
    }
}
