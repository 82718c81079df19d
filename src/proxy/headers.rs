//! Header rules shared by both directions of the proxy: hop-by-hop headers never cross, and
//! sealgate's own cookie names are recognised wherever they appear.

use http::header::CONNECTION;
use http::{HeaderMap, HeaderName};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers that upstream frameworks, proxies and CDNs read as the client's address or
/// as the original URL or host. A browser could set any of them to impersonate another client
/// or to reroute a request inside the upstream, so the client's own are never forwarded
/// (besides these, every `X-Forwarded-*`); sealgate sets `X-Forwarded-For`, `-Proto` and
/// `-Host` itself. Documented in SECURITY.md; one test per name.
pub const CLIENT_CLAIMS: &[&str] = &[
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "akamai-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-envoy-external-address",
    "x-original-forwarded-for",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-envoy-original-path",
];

/// Removes every header of [`CLIENT_CLAIMS`], every `X-Forwarded-*` header, and every header
/// named in `identity` (the identity headers of all routes: a client's copy never reaches any
/// upstream, so a route without identity headers cannot be used to reach an upstream that
/// trusts another route's). Names are compared with `_` read as `-` too: Django, PHP and other
/// CGI-style stacks read `X_User` as `X-User`. One pass over the request's own headers (usually
/// a dozen), rather than one hash lookup per listed name.
pub(crate) fn strip_client_claims(headers: &mut HeaderMap, identity: &[HeaderName]) {
    let claims: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let name = k.as_str();
            if name.contains('_') {
                let dashed = name.replace('_', "-");
                is_client_claim(&dashed) || identity.iter().any(|i| i.as_str() == dashed)
            } else {
                is_client_claim(name) || identity.iter().any(|i| i == *k)
            }
        })
        .cloned()
        .collect();
    for name in claims {
        headers.remove(name);
    }
}

/// Whether `name` (lower case, as `HeaderName` keeps it) is one of the client's claims.
fn is_client_claim(name: &str) -> bool {
    name.starts_with("x-forwarded-") || CLIENT_CLAIMS.contains(&name)
}

/// Request headers sealgate sets, removes or relies on itself, beyond [`HOP_BY_HOP`] and the
/// client's claims: no `identity_headers` entry may name one (a claim must never stand in for a
/// credential, the message framing, the target, or a header sealgate manages).
const MANAGED: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "content-encoding",
    "x-request-id",
    "dpop",
];

/// Why `name` (lower case, as `HeaderName` keeps it) cannot carry a claim upstream, if it
/// cannot: a hop-by-hop header, a header sealgate manages, or one the client's own copy of
/// is never forwarded because upstreams read it as the client's address or the original URL.
pub(crate) fn reserved_request_header(name: &str) -> Option<&'static str> {
    if HOP_BY_HOP.contains(&name) {
        Some("a hop-by-hop header")
    } else if MANAGED.contains(&name) || name.starts_with("sec-websocket-") {
        Some("a header sealgate manages")
    } else if is_client_claim(name) {
        Some("a forwarding header (Forwarded, X-Forwarded-*, X-Real-IP, ...)")
    } else {
        None
    }
}

/// Removes the hop-by-hop headers, including every header the `Connection` header lists. One
/// pass over the request's own headers (usually a handful, often none of them hop-by-hop),
/// rather than one lookup per listed name.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .chain(
            headers
                .keys()
                .filter(|k| HOP_BY_HOP.contains(&k.as_str()))
                .cloned(),
        )
        .collect();
    for name in listed {
        headers.remove(name);
    }
}

/// Whether `name` is one of sealgate's cookies for the session cookie base name `base`: the
/// session chunks, a login flow's cookie, or the double-submit token.
pub(super) fn is_sealgate_cookie(base: &str, name: &str) -> bool {
    name.strip_prefix(base).is_some_and(|rest| {
        rest.is_empty() || rest.starts_with('.') || rest.starts_with("-login-") || rest == "-csrf"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealgate_cookies_are_recognised() {
        let base = "__Host-sealgate";
        for own in [
            base,
            "__Host-sealgate.0",
            "__Host-sealgate-login-ab",
            "__Host-sealgate-csrf",
        ] {
            assert!(is_sealgate_cookie(base, own), "{own}");
        }
        for other in ["theme", "__Host-sealgatex", "__Host-sealgate-other"] {
            assert!(!is_sealgate_cookie(base, other), "{other}");
        }
    }

    #[test]
    fn client_claims_and_every_x_forwarded_header_are_stripped() {
        let mut h = HeaderMap::new();
        for name in CLIENT_CLAIMS {
            h.insert(HeaderName::from_static(name), "6.6.6.6".parse().unwrap());
        }
        h.insert("x-forwarded-prefix", "/admin".parse().unwrap());
        h.insert("x-forwarded-anything", "x".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_client_claims(&mut h, &[]);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn underscore_variants_and_every_routes_identity_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for name in [
            "x_forwarded_for",
            "x_real_ip",
            "x_user",
            "X_Email",
            "x-user",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "spoofed".parse().unwrap(),
            );
        }
        h.insert("x_kept", "1".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        let identity = [
            HeaderName::from_static("x-user"),
            HeaderName::from_static("x-email"),
        ];
        strip_client_claims(&mut h, &identity);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key("x_kept") && h.contains_key("x-kept"));
    }

    #[test]
    fn reserved_request_headers_are_named() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-user",
            "x-real-ip",
            "x-request-id",
            "sec-websocket-key",
            "dpop",
        ] {
            assert!(reserved_request_header(name).is_some(), "{name}");
        }
        for name in ["x-user", "x-email", "x-auth-request-user", "remote-user"] {
            assert_eq!(reserved_request_header(name), None, "{name}");
        }
    }

    #[test]
    fn connection_listed_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "x-private, keep-alive".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }
}
