//! Which route serves a path, and the upstream URL a path maps to (pure; fuzzed).

use crate::config::RouteSettings;
use crate::paths::safe_rest;

/// The route serving `path`: the longest prefix that matches at a segment boundary.
pub(crate) fn match_route<'a>(
    routes: &'a [RouteSettings],
    path: &str,
) -> Option<&'a RouteSettings> {
    routes.iter().find(|r| {
        r.prefix.is_empty()
            || path == r.prefix
            || path
                .strip_prefix(r.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The upstream URL (without query) for request `path` on `route`, or `None` when the path is
/// unsafe.
pub(crate) fn upstream_url(route: &RouteSettings, path: &str) -> Option<url::Url> {
    let rest = path.get(route.prefix.len()..)?;
    if !safe_rest(rest) {
        return None;
    }
    let forward = if route.strip_prefix { rest } else { path };
    let mut target = route.upstream.clone();
    let base_path = target.path().trim_end_matches('/').to_owned();
    target.set_path(&format!("{base_path}{forward}"));
    Some(target)
}
