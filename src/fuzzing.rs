//! Fuzz harnesses: each takes arbitrary bytes and must never panic. The `fuzz/` targets call
//! them under libFuzzer; `tests/integration/corpus.rs` replays the committed corpus through them
//! on stable Rust, so a fuzz regression fails `cargo test` too.
//!
//! The harnesses use a fixed key and a fixed clock so that committed seeds (valid cookies
//! sealed with that key) keep opening, and the fuzzer explores the success path as well.

use std::sync::LazyLock;

use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};

use crate::oidc::logout_token::{self, Expectations};
use crate::seal::{ChunkSet, Codec, CookieName, KeyRing, Purpose};
use crate::session::Session;

/// The key the harnesses (and the seed corpus) use.
pub const FUZZ_KEY: [u8; 32] = [0x5e; 32];
/// The clock the harnesses use.
pub const FUZZ_NOW: i64 = 1_800_000_000;
/// The cookie base name the harnesses use.
pub const FUZZ_COOKIE: &str = "__Host-sealgate";

/// A DPoP key for harnesses that need one (made once: key generation is slow for a fuzzer).
static FUZZ_DPOP_KEY: LazyLock<Option<crate::dpop::DpopKey>> =
    LazyLock::new(|| crate::dpop::DpopKey::generate().ok());

fn fixture() -> Option<(Codec, CookieName)> {
    let ring = KeyRing::from_bytes(&[FUZZ_KEY]).ok()?;
    Some((Codec::new(ring, 4), CookieName::new(FUZZ_COOKIE).ok()?))
}

/// Opens a session from `data` as a `Cookie` header value (split into several headers at each
/// `\n`), exactly as the server does for a request.
/// Returns whether a session opened.
pub fn open_cookie_header(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Some((codec, name)) = fixture() else {
        return false;
    };
    let set = ChunkSet::from_headers(&name, codec.max_chunks(), text.split('\n'));
    open_and_check(&codec, &name, &set)
}

/// Opens a session from `data` as `name=value` lines, each becoming one cookie, bypassing the
/// `Cookie` header parser to reach chunk handling with any name and value.
/// Returns whether a session opened.
pub fn open_chunk_set(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Some((codec, name)) = fixture() else {
        return false;
    };
    let pairs = text
        .split('\n')
        .map(|line| line.split_once('=').unwrap_or((line, "")));
    let set = ChunkSet::from_pairs(&name, codec.max_chunks(), pairs);
    open_and_check(&codec, &name, &set)
}

fn open_and_check(codec: &Codec, name: &CookieName, set: &ChunkSet<'_>) -> bool {
    let mut session = false;
    for purpose in [Purpose::Session, Purpose::Login] {
        if let Ok(opened) = codec.open(purpose, name, set, FUZZ_NOW) {
            assert!(opened.expires_at > FUZZ_NOW, "opened an expired value");
            if purpose == Purpose::Session {
                session = decode_session_version(opened.payload(), opened.version);
            }
        }
    }
    session
}

/// Decodes `data` as a session plaintext of every format version; whatever decodes must
/// re-encode (in the current version) to a session that decodes to the same value. Returns
/// whether `data` decoded in some version.
pub fn decode_session(data: &[u8]) -> bool {
    let v1 = decode_session_version(data, 1);
    decode_session_version(data, 2) || v1
}

fn decode_session_version(data: &[u8], version: u8) -> bool {
    let Ok(session) = Session::decode_version(data, version) else {
        return false;
    };
    let again = session.encode().map(|b| Session::decode(&b));
    assert!(
        matches!(again, Ok(Ok(ref s)) if *s == session),
        "session did not round-trip"
    );
    true
}

/// Validates `data` as a return URL; an accepted one must be a local path that validates again
/// to itself (re-serialization is stable) and never starts with `//` or `/\`; with the login
/// marker added or removed it must still be one, naming the marker once or not at all.
pub fn return_url(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(url) = crate::return_url::ReturnUrl::parse(text) else {
        return false;
    };
    let s = url.as_str();
    assert!(
        s.starts_with('/') && !s.starts_with("//") && !s.starts_with("/\\"),
        "{s:?}"
    );
    assert!(
        !s.contains('\\') && !s.chars().any(char::is_control),
        "{s:?}"
    );
    let again = crate::return_url::ReturnUrl::parse(s);
    assert_eq!(again.as_ref().map(|u| u.as_str()), Ok(s), "not stable");
    // The login marker keeps it valid and local, and names itself exactly once.
    let marker = crate::return_url::LOGIN_MARKER;
    for (value, expected) in [(Some("none"), 1), (None, 0)] {
        let marked = url.with_login_marker(value);
        let m = marked.as_str();
        assert_eq!(
            crate::return_url::ReturnUrl::parse(m)
                .as_ref()
                .map(|u| u.as_str()),
            Ok(m),
            "{s:?} -> {m:?}"
        );
        let query = m
            .split('#')
            .next()
            .and_then(|r| r.split_once('?'))
            .map_or("", |(_, q)| q);
        let named = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == marker)
            .count();
        assert_eq!(named, expected, "{s:?} -> {m:?}");
    }
    true
}

/// Parses `data` as a callback query string; an accepted one has exactly one of code / error
/// and a bounded, non-empty state.
pub fn callback_query(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(q) = crate::routes::callback::parse_callback_query(text) else {
        return false;
    };
    assert!(!q.state.is_empty() && q.state.len() <= crate::routes::callback::MAX_STATE_LEN);
    assert!(q.code.is_some() != q.error.is_some());
    true
}

/// A route from `prefix` (`""` for `/`) to `upstream` with every other setting at its default
/// and `token = "none"`: what [`proxy_path`] and the path tests route through.
pub(crate) fn plain_route(
    prefix: &str,
    upstream: url::Url,
    strip_prefix: bool,
) -> crate::config::RouteSettings {
    crate::config::RouteSettings {
        prefix: prefix.into(),
        upstream,
        token: crate::config::TokenPolicy::None,
        route_token: crate::config::RouteToken::Default,
        provider: None,
        strip_prefix,
        methods: Vec::new(),
        timeout: std::time::Duration::from_secs(1),
        websocket: false,
        forward_cookies: crate::config::CookieForwarding::None,
        http2: false,
        rules: crate::config::RouteRules::default(),
        key: format!("routes[{prefix}]"),
        index: 0,
        limits: None,
    }
}

/// Treats `data` as a request path against three routes: `/api` → `http://upstream.invalid/base`
/// (prefix stripped), `/api/v2` → `http://v2.invalid/` (prefix kept) and `/` → `http://spa.invalid/`.
/// The chosen route must be the longest prefix that matches at a segment boundary, and a path
/// the proxy accepts must produce an upstream URL on that route's host, under its base path,
/// even after a URL parser resolves it (no dot segment or encoding escapes the route), and no
/// segment reads as a dot or empty segment to a servlet container (decoded, `;` parameters
/// dropped). The upstream URI built from the route's origin is the one the URL parser builds.
pub fn proxy_path(data: &[u8]) -> bool {
    let Ok(path) = std::str::from_utf8(data) else {
        return false;
    };
    let route = |prefix: &str, upstream: &str, strip_prefix: bool| {
        url::Url::parse(upstream)
            .ok()
            .map(|upstream| plain_route(prefix, upstream, strip_prefix))
    };
    // Longest prefix first, as `Settings` sorts them; "/" is stored as the empty prefix.
    let (Some(v2), Some(api), Some(root)) = (
        route("/api/v2", "http://v2.invalid/", false),
        route("/api", "http://upstream.invalid/base", true),
        route("", "http://spa.invalid/", true),
    ) else {
        return false;
    };
    let routes = [v2, api, root];
    let Some(matched) = crate::proxy::route::match_route(&routes, path) else {
        return false;
    };
    let at_boundary = |p: &str| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let expected = if at_boundary("/api/v2") {
        "/api/v2"
    } else if at_boundary("/api") {
        "/api"
    } else {
        ""
    };
    assert_eq!(matched.prefix, expected, "{path:?} matched the wrong route");
    let Some(joined) = crate::proxy::route::upstream_url(matched, path) else {
        return false;
    };
    // The URI the proxy sends, built from the origin's parts, is the URL parser's, with no
    // query and with the input as the query too.
    let origin = crate::upstream::Origin::new(&matched.upstream);
    for query in [None, Some(path)] {
        let built = crate::proxy::route::upstream_uri(matched, origin.as_ref(), path, query);
        let parsed = crate::proxy::route::upstream_uri(matched, None, path, query);
        assert_eq!(built, parsed, "{path:?} with query {query:?}");
    }
    let (host, base) = match expected {
        "/api/v2" => ("v2.invalid", "/api/v2"),
        "/api" => ("upstream.invalid", "/base"),
        _ => ("spa.invalid", ""),
    };
    assert_eq!(joined.host_str(), Some(host), "{path:?}");
    // How a servlet container reads the accepted path: decoded, `;` parameters dropped. No
    // segment may then be a dot segment or an empty one (that would escape upstream).
    for segment in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        let base = decoded.split(';').next().unwrap_or("");
        assert!(
            base != "." && base != ".." && (!base.is_empty() || !decoded.contains(';')),
            "{path:?}: a servlet container reads segment {segment:?} as {base:?}"
        );
    }
    assert!(
        joined.path() == base || joined.path().starts_with(&format!("{base}/")),
        "{path:?} escaped to {}",
        joined.path()
    );
    true
}

/// Treats `data` as a request path for `[static]`: every segment of an accepted path is one
/// plain, visible file name, so joined onto a root it stays under that root (no `..`, no
/// absolute or drive component, no separator, no control character).
pub fn static_path(data: &[u8]) -> bool {
    let Ok(path) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(parsed) = crate::static_files::parse_path(path) else {
        return false;
    };
    let root = std::path::Path::new("/srv/site");
    let mut joined = root.to_path_buf();
    for segment in &parsed.segments {
        assert!(
            !segment.is_empty()
                && !segment.starts_with('.')
                && !segment.contains(['/', '\\'])
                && !segment.chars().any(char::is_control),
            "{path:?} gave segment {segment:?}"
        );
        joined.push(segment);
    }
    assert!(joined.starts_with(root), "{path:?} escaped to {joined:?}");
    assert_eq!(
        joined.components().count(),
        root.components().count() + parsed.segments.len(),
        "{path:?}: a segment was not exactly one path component"
    );
    true
}

/// The issuer the `logout_token` harness expects.
pub const FUZZ_ISSUER: &str = "https://idp.fuzz.invalid";
/// The client id the `logout_token` harness expects.
pub const FUZZ_CLIENT: &str = "spa-bff";
/// The `kid` of the `logout_token` harness key.
pub const FUZZ_KID: &str = "test-rsa1";
/// Clock skew of the `logout_token` harness (seconds).
pub const FUZZ_SKEW: i64 = 60;
/// Maximum logout token age of the `logout_token` harness (seconds).
pub const FUZZ_MAX_AGE: i64 = 300;

/// The public half of the committed TEST-ONLY key `tests/support/keys/rsa1.pem` (JWK `n`), so
/// that seeds signed with it reach the success path.
const FUZZ_RSA_N: &str = "pwmqb4nRcAI58KP8Er6dT9AfpuaSiZpYkTKykSES-ybF_IQ0x8ehjJJKbNjICxgCHp2xUW-aeZ1VxnISe98RLRbyQDPIjxsdt1WqKXtPb3R1eloCOgX6tz7OUSJVyetynTLswvDFUNNHZhC4hchJM-2_3Fg5-wOX0e4UjO3YP2tFsuKJJH9gu7M4IdhBarc8Ph0VkiNdoVJzvoDhCabCgupn71M7vgzks073X2pJkkJYKyyl8K1VHdYDwWgoHWEENvDLqPJ4GIrr_AwouFeOuxnG_9ryvuM9e5gd2BfyEcb7VBilYtAbv8LOOFJZyYAakl3KnUzgrUfsS3eAfD_l5w";

/// The harness key set, parsed once as a fetched JWKS is.
static FUZZ_JWKS: LazyLock<Option<CoreJsonWebKeySet>> = LazyLock::new(|| {
    serde_json::from_value(serde_json::json!({
        "keys": [{ "kty": "RSA", "use": "sig", "kid": FUZZ_KID, "n": FUZZ_RSA_N, "e": "AQAB" }]
    }))
    .ok()
});

/// Validates `data` as a back-channel logout token against the fixed key, issuer and clock
/// ([`FUZZ_NOW`]). An accepted token must be stable (validates again to the same claims), name
/// the issuer and a `sid` or `sub`, be acceptable now, and pass the strict `typ` rule or fail
/// it only for its `typ`. Returns whether the token was accepted.
pub fn logout_token(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Some(keys) = FUZZ_JWKS.as_ref() else {
        return false;
    };
    let algorithms = [
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EdDsa,
    ];
    let trusted = ["trusted".to_owned()];
    let expect = Expectations {
        issuer: FUZZ_ISSUER,
        client_id: FUZZ_CLIENT,
        trusted_audiences: &trusted,
        algorithms: &algorithms,
        clock_skew: FUZZ_SKEW,
        max_age: FUZZ_MAX_AGE,
        strict_typ: false,
    };
    let Ok(claims) = logout_token::validate(text, keys, &expect, FUZZ_NOW) else {
        return false;
    };
    assert_eq!(claims.iss, FUZZ_ISSUER);
    assert!(claims.sid.is_some() || claims.sub.is_some());
    assert!(!claims.jti.is_empty());
    assert!(claims.iat <= FUZZ_NOW + FUZZ_SKEW && claims.iat <= claims.exp);
    assert!(
        claims.acceptable_until >= FUZZ_NOW,
        "accepted a token past its window"
    );
    assert_eq!(
        logout_token::validate(text, keys, &expect, FUZZ_NOW).as_ref(),
        Ok(&claims),
        "not stable"
    );
    let strict = Expectations {
        strict_typ: true,
        ..expect
    };
    match logout_token::validate(text, keys, &strict, FUZZ_NOW) {
        Ok(c) => assert_eq!(c, claims),
        Err(e) => assert_eq!(e, logout_token::LogoutTokenError::Type),
    }
    true
}

/// Replays `data` as a revocation journal at [`FUZZ_NOW`]. Whatever replays must hold only
/// live entries; its valid prefix (what [`crate::revocation::Journal::open`] keeps) must replay
/// whole to the same entries; and a journal re-encoded from the entries must replay to exactly
/// them. Returns whether `data` replayed.
pub fn journal_replay(data: &[u8]) -> bool {
    use crate::revocation::journal;

    let Ok(replay) = journal::replay(data, FUZZ_NOW) else {
        return false;
    };
    assert!(replay.valid_len <= data.len());
    assert_eq!(replay.torn, replay.valid_len < data.len(), "torn flag");
    assert!(replay.entries.len() <= replay.records);
    assert!(
        replay.entries.iter().all(|r| r.until() > FUZZ_NOW),
        "an expired entry was replayed"
    );
    let kept = journal::replay(&data[..replay.valid_len], FUZZ_NOW);
    assert!(
        matches!(&kept, Ok(k) if !k.torn && k.entries == replay.entries && k.records == replay.records),
        "the valid prefix does not replay to the same entries"
    );
    let again = journal::to_bytes(&replay.entries);
    let second = journal::replay(&again, FUZZ_NOW);
    assert!(
        matches!(&second, Ok(s) if !s.torn
            && s.valid_len == again.len()
            && s.records == replay.entries.len()
            && s.entries == replay.entries),
        "re-encoded entries do not replay to themselves"
    );
    true
}

/// Reads `data` as a `/bff/login` query with the default `login_params`: what is accepted has
/// each name at most once, in the configured order, and each value passes its rule again
/// unchanged (normalization is stable) and carries no control character.
pub fn login_query(data: &[u8]) -> bool {
    let Ok(query) = std::str::from_utf8(data) else {
        return false;
    };
    let allowed: Vec<String> = crate::oidc_params::DEFAULT_LOGIN_PARAMS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let Ok(chosen) = crate::oidc_params::from_query(Some(query), &allowed) else {
        return false;
    };
    let mut last = None;
    for (name, value) in &chosen {
        let at = allowed.iter().position(|a| a == name);
        assert!(at.is_some() && at > last, "{name} out of order or repeated");
        last = at;
        assert!(
            !value.is_empty() && !value.chars().any(char::is_control),
            "{value:?}"
        );
        assert_eq!(
            crate::oidc_params::check_login_value(name, value).as_deref(),
            Some(value.as_str()),
            "{name} does not normalize stably"
        );
        if name == "prompt" && value.split(' ').any(|w| w == "none") {
            assert_eq!(value, "none", "prompt=none only alone");
        }
    }
    true
}

/// Reads `data` as a PAR endpoint's answer: the first byte picks the status (even: 201, else
/// 200 + byte), the rest is the body. An accepted `request_uri` is non-empty, bounded and free
/// of control characters, and only from a 200 or 201.
pub fn par_response(data: &[u8]) -> bool {
    let Some((first, body)) = data.split_first() else {
        return false;
    };
    let status = if first % 2 == 0 {
        201
    } else {
        200 + u16::from(*first)
    };
    let Ok(uri) = crate::oidc::parse_par_response(status, body) else {
        return false;
    };
    assert!(status == 200 || status == 201);
    let uri = uri.expose();
    assert!(!uri.is_empty() && uri.len() <= crate::oidc::MAX_REQUEST_URI_LEN);
    assert!(!uri.chars().any(char::is_control));
    true
}
/// Reads `data` as a token endpoint's answer to a route grant: the first byte picks the status
/// (200, 400, 503 or 302, by `byte / 2 % 4`) and whether it answers an exchange (odd), the rest
/// is the body. Only a 400 may be a refusal (of the user's grant); an accepted response
/// must hold a token that can be sent as a header (visible ASCII, at most 16 KiB), a positive
/// lifetime when it gives one, and make a route token that is reused no later than it expires.
/// Returns whether a token was accepted.
pub fn token_response(data: &[u8]) -> bool {
    let Some((&first, body)) = data.split_first() else {
        return false;
    };
    let status = [200, 400, 503, 302][usize::from(first / 2 % 4)];
    let exchange = first % 2 == 1;
    let granted = match crate::oidc::parse_token_response(status, body, exchange) {
        Ok(g) => g,
        Err(e) => {
            assert!(!e.is_refusal() || status == 400, "{e}");
            return false;
        }
    };
    assert_eq!(status, 200);
    let token = granted.access_token.expose();
    assert!(!token.is_empty() && token.len() <= 16 * 1024);
    assert!(token.bytes().all(|b| b.is_ascii_graphic()));
    assert!(granted.expires_in.is_none_or(|s| s > 0));
    let key = (granted.token_type == crate::dpop::TokenType::Dpop)
        .then(|| FUZZ_DPOP_KEY.clone())
        .flatten();
    let minted = crate::route_tokens::Minted::new(&granted, FUZZ_NOW, 30, key.as_ref());
    assert!(minted.is_ok(), "an accepted token is not a header value");
    if let (Ok(m), Some(lifetime)) = (
        minted,
        granted.expires_in.and_then(|s| i64::try_from(s).ok()),
    ) {
        assert!(m.reuse_until <= FUZZ_NOW.saturating_add(lifetime));
    }
    true
}

/// Reads `data` as `X-Forwarded-For` values (split at newlines into several headers) sent
/// through a trusted proxy (`10.0.0.0/8`): the client found is the peer or an address one of
/// the values names, and is never a trusted proxy unless every entry walked was one.
pub fn forwarded_for(data: &[u8]) -> bool {
    let mut headers = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", v);
        }
    }
    let trusted = [crate::config::TrustedNet {
        addr: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 0)),
        prefix: 8,
    }];
    let peer = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    let client = crate::limits::client_address(peer, &headers, &trusted);
    if client == peer {
        return false;
    }
    let named = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| crate::limits::parse_forwarded_ip(e.trim()) == Some(client));
    assert!(named, "{client} is not in the header");
    true
}

/// Reads `data` as a DPoP answer, by its first byte (`% 4`): 0, a `WWW-Authenticate` value
/// (does an upstream ask for a nonce?); 1, a `DPoP-Nonce` value; 2, a token endpoint's 400
/// body (does the IdP ask for a nonce?); 3, a token response's `token_type`. An accepted nonce
/// is 1 to 512 NQCHARs; a challenge is only taken from a `DPoP` scheme naming
/// `use_dpop_nonce`. Returns whether the answer was taken (a nonce asked for, a nonce or a
/// token type read).
pub fn dpop_answer(data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else {
        return false;
    };
    match first % 4 {
        0 => {
            let asked = crate::dpop::challenges_use_dpop_nonce(rest);
            if asked {
                // Quoted-pairs stand for the character they escape (`"n\once"` is `nonce`).
                let text = String::from_utf8_lossy(rest)
                    .replace('\\', "")
                    .to_ascii_lowercase();
                assert!(text.contains("dpop") && text.contains("use_dpop_nonce"));
            }
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_bytes(rest) {
                headers.insert(http::header::WWW_AUTHENTICATE, v);
                assert_eq!(crate::dpop::upstream_wants_nonce(401, &headers), asked);
                assert!(!crate::dpop::upstream_wants_nonce(400, &headers));
            }
            asked
        }
        1 => match crate::dpop::parse_nonce(rest) {
            Some(nonce) => {
                assert!(!nonce.is_empty() && nonce.len() <= 512);
                assert!(
                    nonce
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
                );
                assert!(http::HeaderValue::from_str(nonce).is_ok());
                true
            }
            None => false,
        },
        2 => {
            let asked = crate::dpop::idp_wants_nonce(400, rest);
            assert!(!crate::dpop::idp_wants_nonce(401, rest));
            asked
        }
        _ => std::str::from_utf8(rest)
            .ok()
            .and_then(crate::dpop::TokenType::parse)
            .is_some(),
    }
}
