//! Which route serves a path, and the upstream URL a path maps to (pure; fuzzed).

use bytes::Bytes;
use http::Uri;
use http::uri::{Parts, PathAndQuery};

use crate::config::RouteSettings;
use crate::paths::safe_rest;
use crate::upstream::Origin;

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

/// The upstream URI for a request with `path` and `query` on `route` (whose upstream is
/// `origin`, split once), or `None` when the path is unsafe. The same URI as [`upstream_url`]
/// with the query set, parsed; built from the origin's parts without a URL parser when the path
/// and the query hold only characters a URL parser leaves as they are (what browsers send),
/// otherwise through [`upstream_url`], which percent-encodes the rest.
pub(crate) fn upstream_uri(
    route: &RouteSettings,
    origin: Option<&Origin>,
    path: &str,
    query: Option<&str>,
) -> Option<Uri> {
    let rest = path.get(route.prefix.len()..)?;
    if !safe_rest(rest) {
        return None;
    }
    let forward = if route.strip_prefix { rest } else { path };
    if let Some(origin) = origin
        && forward.bytes().all(plain_path_byte)
        && query.is_none_or(|q| q.bytes().all(plain_query_byte))
    {
        let mut target = String::with_capacity(
            origin.base_path.len() + forward.len() + query.map_or(1, |q| q.len() + 2),
        );
        target.push_str(&origin.base_path);
        target.push_str(forward);
        if target.is_empty() {
            target.push('/');
        }
        if target.starts_with('/') {
            if let Some(q) = query {
                target.push('?');
                target.push_str(q);
            }
            let mut parts = Parts::default();
            parts.scheme = Some(origin.scheme.clone());
            parts.authority = Some(origin.authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(target)).ok()?);
            return Uri::from_parts(parts).ok();
        }
    }
    let mut target = upstream_url(route, path)?;
    target.set_query(query);
    target.as_str().parse().ok()
}

/// A path byte that a URL parser keeps as it is: unreserved, sub-delimiters, `:`, `@`, `/` and
/// `%` (RFC 3986 `pchar` and `/`; an existing escape is left alone, as the parser leaves it).
fn plain_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)
}

/// A query byte that a URL parser keeps as it is: as [`plain_path_byte`], and `?`, but not
/// `'` (percent-encoded in the query of an `http`/`https` URL).
fn plain_query_byte(b: u8) -> bool {
    b != b'\'' && (plain_path_byte(b) || b == b'?')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn route(prefix: &str, upstream: &str, strip_prefix: bool) -> RouteSettings {
        crate::fuzzing::plain_route(prefix, url::Url::parse(upstream).unwrap(), strip_prefix)
    }

    fn routes() -> [RouteSettings; 4] {
        [
            route("/api", "http://upstream.invalid:8080/base/", true),
            route("/api", "https://upstream.invalid/", false),
            route("", "http://[::1]:9000", true),
            route("/v2", "http://user@upstream.invalid/a/b", true),
        ]
    }

    #[test]
    fn a_plain_request_is_joined_onto_the_origin() {
        let [api, kept, root, _] = routes();
        let uri = |r: &RouteSettings, path, query| {
            upstream_uri(r, Origin::new(&r.upstream).as_ref(), path, query)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            uri(&api, "/api/items/42", Some("x=1&y=%20")),
            "http://upstream.invalid:8080/base/items/42?x=1&y=%20"
        );
        assert_eq!(uri(&api, "/api", None), "http://upstream.invalid:8080/base");
        // Encoded by the URL parser, as before.
        assert_eq!(
            uri(&api, "/api/a'b", Some("q='x'")),
            "http://upstream.invalid:8080/base/a'b?q=%27x%27"
        );
        assert_eq!(
            uri(&api, "/api/{x}", Some("a b")),
            "http://upstream.invalid:8080/base/%7Bx%7D?a%20b"
        );
        assert_eq!(
            uri(&kept, "/api/x", Some("")),
            "https://upstream.invalid/api/x?"
        );
        assert_eq!(uri(&root, "/", None), "http://[::1]:9000/");
        assert!(upstream_uri(&api, None, "/api/../x", None).is_none());
        let origin = Origin::new(&api.upstream);
        assert!(upstream_uri(&api, origin.as_ref(), "/api/%2e%2e/x", None).is_none());
    }

    /// Characters a URL parser keeps (and `?`, `'`, which it keeps only in a path).
    const PLAIN: &str = "[a-zA-Z0-9/._~%!$&'()*+,;=:@?-]{0,24}";
    /// And characters it percent-encodes or resolves.
    const ANY: &str = "[a-zA-Z0-9/._~%!$&'()*+,;=:@?#\"<>`{}|^ \\[\\]\\\\é-]{0,24}";

    proptest! {
        /// Whatever the path and query, the URI built from the origin's parts is the one the
        /// URL parser builds (`origin = None`), or both refuse the path: characters a parser
        /// would encode take its path.
        #[test]
        fn the_uri_built_from_parts_is_the_url_parsers(
            which in 0usize..4,
            prefixed in any::<bool>(),
            rest in prop_oneof![PLAIN, ANY],
            query in proptest::option::of(prop_oneof![PLAIN, ANY]),
        ) {
            let route = &routes()[which];
            let path = if prefixed { format!("{}{rest}", route.prefix) } else { rest };
            let origin = Origin::new(&route.upstream);
            prop_assert!(origin.is_some());
            let fast = upstream_uri(route, origin.as_ref(), &path, query.as_deref());
            let reference = upstream_uri(route, None, &path, query.as_deref());
            prop_assert_eq!(
                fast.as_ref().map(ToString::to_string),
                reference.as_ref().map(ToString::to_string)
            );
            prop_assert_eq!(fast, reference);
        }
    }
}
