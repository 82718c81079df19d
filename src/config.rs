//! Configuration: TOML parsed once, at start-up, into typed [`Settings`].
//!
//! Raw structs mirror the file (`deny_unknown_fields`, so a typo is an error naming the key);
//! [`Settings::from_toml`] turns them into values that need no further checking: URLs parsed,
//! durations parsed (`"20m"`, `"8h"`), secrets resolved from `env:NAME` or `file:PATH`, keys
//! decoded into a [`KeyRing`]. Secrets are never accepted inline, so a config file can be
//! committed or printed without leaking anything.
//!
//! The optional `[static]` table (field `static_files`, `static` being a Rust keyword) is
//! checked here too: `dir` must exist, be a directory and hold the index file; it is
//! canonicalized once, so request handling compares canonical paths without re-resolving the
//! root. A relative `dir` is resolved against the working directory.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::seal::{CookieName, DEFAULT_MAX_CHUNKS, KeyError, KeyRing, NameError};
use crate::secret::SecretString;

/// Where secrets come from: the process environment in production, a map in tests.
pub trait SecretSource {
    /// The value of environment variable `name`.
    fn env(&self, name: &str) -> Option<String>;
}

/// Reads secrets from the real process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl SecretSource for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> SecretSource for F {
    fn env(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("config: {0}")]
    Parse(String),
    /// A value that parses but is not acceptable.
    #[error("config: {key}: {problem}")]
    Invalid {
        /// The dotted key, e.g. `oidc.issuer`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A secret reference that could not be resolved.
    #[error("config: {key}: {problem}")]
    Secret {
        /// The dotted key.
        key: String,
        /// What is wrong (never the secret itself).
        problem: String,
    },
    /// A session key problem (which key, which problem).
    #[error("config: session.keys: {0}")]
    Key(#[from] KeyError),
    /// A bad cookie name.
    #[error("config: session.cookie_name: {0}")]
    CookieName(#[from] NameError),
}

/// The 1-based line of dotted `key` (`server.listen`, `routes[2].upstream`) in TOML `text`, if
/// it appears there (for error messages; a best-effort text search).
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let (section, rest) = key.split_once('.')?;
    let field = rest.split(['.', '[']).next()?;
    let (table, nth) = match section.split_once('[') {
        Some((name, index)) => (name, index.trim_end_matches(']').parse::<usize>().ok()?),
        None => (section, 0),
    };
    let header = |l: &str| {
        let l = l.trim();
        l == format!("[{table}]") || l.starts_with(&format!("[[{table}]]"))
    };
    let mut seen = 0;
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = header(t) && {
                seen += 1;
                seen == nth + 1
            };
            continue;
        }
        if inside && t.split_once('=').is_some_and(|(k, _)| k.trim() == field) {
            return Some(i + 1);
        }
    }
    None
}

/// Replaces dotted `key` (`server.listen`, `routes[1].upstream`) in `table` with the value
/// `example` has for it (the first array element standing for any), or removes it when the
/// example has none. Whether the key was found.
fn substitute(table: &mut toml::Table, example: &toml::Table, key: &str) -> bool {
    fn split(key: &str) -> Option<(&str, Option<usize>, &str)> {
        let (section, field) = key.split_once('.')?;
        let field = field.split(['.', '[']).next()?;
        match section.split_once('[') {
            Some((name, index)) => Some((name, index.trim_end_matches(']').parse().ok(), field)),
            None => Some((section, None, field)),
        }
    }
    let Some((section, index, field)) = split(key) else {
        return false;
    };
    let replacement = match example.get(section) {
        Some(toml::Value::Table(t)) => t.get(field).cloned(),
        Some(toml::Value::Array(items)) => items
            .first()
            .and_then(toml::Value::as_table)
            .and_then(|t| t.get(field).cloned()),
        _ => None,
    };
    // A section the example does not show at all (`[cluster]`, `[static]`) is optional as a
    // whole: dropping it checks the rest without inventing a "missing field".
    if replacement.is_none() && !example.contains_key(section) && index.is_none() {
        return table.remove(section).is_some();
    }
    let target = match (table.get_mut(section), index) {
        (Some(toml::Value::Table(t)), None) => t,
        (Some(toml::Value::Array(items)), Some(i)) => match items.get_mut(i) {
            Some(toml::Value::Table(t)) => t,
            _ => return false,
        },
        _ => return false,
    };
    match replacement {
        Some(v) => {
            target.insert(field.to_owned(), v);
            true
        }
        None => target.remove(field).is_some(),
    }
}

/// Environment variables starting with this override configuration keys.
pub const ENV_PREFIX: &str = "SEALGATE__";

/// Applies environment overrides to the parsed file: `SEALGATE__SERVER__LISTEN=0.0.0.0:8080`
/// sets `[server] listen`; `SEALGATE__ROUTES__0__UPSTREAM` sets the first route's `upstream`.
/// Names are the key path in upper case, joined by `__`; array elements by index. A value that
/// parses as a TOML value (`true`, `4096`, `["a", "b"]`, `"x"`) is used as such, anything else as
/// a string. Secrets still go through `env:`/`file:` references. Missing tables are created; an
/// unknown key is an error like any other unknown key.
///
/// # Errors
/// A [`ConfigError`] naming the variable.
pub fn apply_overrides(
    table: &mut toml::Table,
    overrides: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut sorted: Vec<&(String, String)> = overrides.iter().collect();
    sorted.sort();
    'vars: for (name, value) in sorted {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let bad = |problem: &str| invalid(name, problem.to_owned());
        let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            return Err(bad("not a key path (SEALGATE__SECTION__KEY)"));
        }
        let parsed: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let (last, parents) = parts.split_last().ok_or_else(|| bad("empty key path"))?;
        let mut node = &mut *table;
        for part in parents {
            let next = if let Ok(index) = part.parse::<usize>() {
                return Err(bad(&format!(
                    "an index ({index}) must follow an array name"
                )));
            } else {
                node.entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            };
            node = match next {
                toml::Value::Table(t) => t,
                toml::Value::Array(items) => {
                    // SECTION__<index>__KEY: the next part is the index.
                    set_in_array(items, &parts, part, parsed, name)?;
                    continue 'vars;
                }
                _ => return Err(bad(&format!("{part} is not a table"))),
            };
        }
        node.insert(last.clone(), parsed);
    }
    Ok(())
}

/// `SEALGATE__ROUTES__<i>__KEY`: sets `KEY` in element `i` of the array named `array`.
fn set_in_array(
    items: &mut [toml::Value],
    parts: &[String],
    array: &str,
    value: toml::Value,
    name: &str,
) -> Result<(), ConfigError> {
    let bad = |problem: String| invalid(name, problem);
    let at = parts.iter().position(|p| p == array).unwrap_or(0);
    let (Some(index), Some(key), None) = (parts.get(at + 1), parts.get(at + 2), parts.get(at + 3))
    else {
        return Err(bad(format!(
            "use {ENV_PREFIX}{}__<index>__<KEY>",
            array.to_ascii_uppercase()
        )));
    };
    let index: usize = index
        .parse()
        .map_err(|_| bad(format!("{index:?} is not an index into [[{array}]]")))?;
    match items.get_mut(index) {
        Some(toml::Value::Table(t)) => {
            t.insert(key.clone(), value);
            Ok(())
        }
        _ => Err(bad(format!("[[{array}]] has no element {index}"))),
    }
}

impl ConfigError {
    /// The dotted key the problem is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } | Self::Secret { key, .. } => Some(key),
            Self::Key(_) => Some("session.keys"),
            Self::CookieName(_) => Some("session.cookie_name"),
            Self::Read { .. } | Self::Parse(_) => None,
        }
    }
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

// ----- raw file structure -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    oidc: RawOidc,
    session: RawSession,
    #[serde(default)]
    bff: RawBff,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(rename = "static")]
    static_files: Option<RawStatic>,
    #[serde(default)]
    revocation: RawRevocation,
    cluster: Option<RawCluster>,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    log: RawLog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    enabled: Option<bool>,
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    redis_url: String,
    on_store_unavailable: Option<String>,
    key_prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    journal: Option<String>,
    capacity: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    public_url: String,
    max_connections: Option<usize>,
    workers: Option<usize>,
    header_read_timeout: Option<String>,
    max_header_bytes: Option<usize>,
    shutdown_grace: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret: String,
    scopes: Option<Vec<String>>,
    post_logout_redirect_uri: Option<String>,
    timeout: Option<String>,
    jwks_refetch_cooldown: Option<String>,
    token_endpoint_auth: Option<String>,
    use_userinfo: Option<bool>,
    id_token_signing_algs: Option<Vec<String>>,
    clock_skew: Option<String>,
    max_id_token_age: Option<String>,
    trusted_audiences: Option<Vec<String>>,
    max_logout_token_age: Option<String>,
    strict_logout_token_typ: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    keys: Vec<String>,
    cookie_name: Option<String>,
    idle_timeout: Option<String>,
    absolute_timeout: Option<String>,
    login_timeout: Option<String>,
    max_chunks: Option<u8>,
    store_id_token: Option<bool>,
    max_pending_logins: Option<usize>,
    open_cache: Option<usize>,
    refresh_before: Option<String>,
    refresh_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBff {
    prefix: Option<String>,
    allowed_origins: Option<Vec<String>>,
    csrf_header: Option<String>,
    csrf_value: Option<String>,
    csrf_mode: Option<String>,
    user_claims: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    upstream: String,
    token: Option<String>,
    strip_prefix: Option<bool>,
    methods: Option<Vec<String>>,
    timeout: Option<String>,
    websocket: Option<bool>,
    forward_cookies: Option<RawCookieForwarding>,
    http2: Option<bool>,
}

/// `forward_cookies = "all" | "none" | ["name", …]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawCookieForwarding {
    Keyword(String),
    Names(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatic {
    dir: String,
    index: Option<String>,
    csp: Option<String>,
}

// ----- typed settings -----------------------------------------------------------------------

/// Everything sealgate needs, validated.
#[derive(Debug)]
pub struct Settings {
    /// `[server]`.
    pub server: ServerSettings,
    /// `[oidc]`.
    pub oidc: OidcSettings,
    /// `[session]`.
    pub session: SessionSettings,
    /// `[bff]`.
    pub bff: BffSettings,
    /// `[[routes]]`, longest prefix first.
    pub routes: Vec<RouteSettings>,
    /// `[static]`: the SPA's files, when sealgate hosts them.
    pub static_files: Option<StaticSettings>,
    /// `[revocation]`.
    pub revocation: RevocationSettings,
    /// `[cluster]`: several instances sharing revocations and refreshes through Redis.
    pub cluster: Option<ClusterSettings>,
    /// `[metrics]`.
    pub metrics: MetricsSettings,
    /// `[log]`.
    pub log: LogSettings,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, with the request span's fields.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// A `tracing` filter (`RUST_LOG` syntax); `RUST_LOG` overrides it. Default
    /// `sealgate=info,warn`.
    pub level: Option<String>,
}

/// `[metrics]`: Prometheus text on `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsSettings {
    /// Whether `/metrics` is served at all.
    pub enabled: bool,
    /// A separate address for `/metrics` (then not on the main listener).
    pub listen: Option<SocketAddr>,
}

impl MetricsSettings {
    /// Whether the main listener serves `/metrics`.
    pub fn on_main_listener(&self) -> bool {
        self.enabled && self.listen.is_none()
    }
}

/// What authenticated requests get while the cluster store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorePolicy {
    /// Refused with 503 (a revocation made elsewhere meanwhile cannot be missed). Default.
    Refuse,
    /// Served, checked against the revocations known so far.
    Allow,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `redis://host:port/db` (the URL may carry a password, so it is a secret when it does).
    pub redis_url: SecretString,
    /// The policy while Redis is unreachable.
    pub on_store_unavailable: StorePolicy,
    /// Prefix of every Redis key and channel (several deployments can share one Redis).
    pub key_prefix: String,
}

/// `[revocation]`.
#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// The append-only journal that makes revocations survive a restart; none: memory only.
    pub journal: Option<PathBuf>,
    /// Most entries held; beyond it a revocation becomes a global not-before.
    pub capacity: usize,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The origin the browser uses, e.g. `https://app.example.com` (no path).
    pub public_url: Url,
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Threads serving connections, each with its own single-threaded runtime and upstream
    /// connection pool (a connection and its upstream calls stay on one thread). Default: one
    /// per CPU available to the process.
    pub workers: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Largest request head accepted (larger: 431).
    pub max_header_bytes: usize,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate chain and key.
    pub tls: Option<TlsSettings>,
}

/// `[server] tls_cert` / `tls_key`: PEM files, re-read on SIGHUP.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How the anti-forgery header of API requests is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfMode {
    /// The header must carry the static `csrf_value` (default `X-CSRF: 1`): a custom header
    /// forces a CORS preflight, which only allowed origins pass.
    Header,
    /// Double-submit: the header must carry the session-bound token sealgate sets in a
    /// JavaScript-readable `__Host-` cookie (`<cookie_name>-csrf`), compared in constant time.
    /// Requests without a session need the header with any non-empty value.
    DoubleSubmit,
}

/// How sealgate authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    /// HTTP Basic (`client_secret_basic`, the default).
    Basic,
    /// Form fields (`client_secret_post`).
    Post,
}

/// `[oidc]`.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer identifier, exactly as configured; discovery must report exactly this.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// Requested scopes (`openid` is always included).
    pub scopes: Vec<String>,
    /// Where the IdP sends the browser after RP-initiated logout.
    pub post_logout_redirect_uri: Option<Url>,
    /// Timeout of each request to the IdP.
    pub timeout: Duration,
    /// Least time between two JWKS refetches triggered by an unknown `kid`.
    pub jwks_refetch_cooldown: Duration,
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth: TokenEndpointAuth,
    /// Whether to call the userinfo endpoint after login (its `sub` must match).
    pub use_userinfo: bool,
    /// Accepted ID token signature algorithms; asymmetric only.
    pub id_token_signing_algs: Vec<String>,
    /// Tolerated clock difference with the IdP.
    pub clock_skew: Duration,
    /// Oldest acceptable ID token `iat`.
    pub max_id_token_age: Duration,
    /// Audiences other than the client id that an ID token (or a logout token) may also name.
    pub trusted_audiences: Vec<String>,
    /// Oldest acceptable back-channel logout token `iat`. It also bounds how long a logout
    /// token's `jti` must be remembered to refuse its replay.
    pub max_logout_token_age: Duration,
    /// Refuse logout tokens whose header `typ` is `JWT` or absent (accept only `logout+jwt`).
    pub strict_logout_token_typ: bool,
}

/// `[session]`.
#[derive(Debug)]
pub struct SessionSettings {
    /// The key ring; the first key seals.
    pub keys: KeyRing,
    /// Base name of the session cookie.
    pub cookie_name: CookieName,
    /// Sessions end after this long without a request.
    pub idle_timeout: Duration,
    /// Sessions end this long after login, whatever happens.
    pub absolute_timeout: Duration,
    /// A login must complete within this.
    pub login_timeout: Duration,
    /// Most cookie chunks per session.
    pub max_chunks: u8,
    /// Keep the ID token in the session (for `id_token_hint` and `/bff/user` claims).
    pub store_id_token: bool,
    /// Most login flows one browser may have pending.
    pub max_pending_logins: usize,
    /// Opened sessions remembered by their exact cookie bytes (0: every request opens its
    /// cookie). See `session_cache`.
    pub open_cache: usize,
    /// Refresh when the access token expires within this.
    pub refresh_before: Duration,
    /// How long a refresh result is reused for requests carrying the pre-refresh cookie.
    pub refresh_grace: Duration,
}

/// `[bff]`.
#[derive(Debug, Clone)]
pub struct BffSettings {
    /// Path prefix of the BFF endpoints, e.g. `/bff`.
    pub prefix: String,
    /// Exact origins allowed to call the BFF and the proxied routes cross-origin.
    pub allowed_origins: Vec<String>,
    /// Anti-forgery header name (lower case).
    pub csrf_header: http::HeaderName,
    /// Anti-forgery header value (in [`CsrfMode::Header`]).
    pub csrf_value: String,
    /// How the anti-forgery header is checked.
    pub csrf_mode: CsrfMode,
    /// ID token claims returned by `/bff/user` besides `sub`.
    pub user_claims: Vec<String>,
}

/// Which token a route attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPolicy {
    /// A session is required; its access token is attached.
    User,
    /// The access token is attached when there is a session.
    Optional,
    /// No token; the route is a plain reverse proxy.
    None,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// Path prefix, e.g. `/api` (no trailing slash).
    pub prefix: String,
    /// Upstream base URL.
    pub upstream: Url,
    /// Token policy.
    pub token: TokenPolicy,
    /// Whether the prefix is removed before appending the path to the upstream base URL
    /// (`/api/x` → `upstream/x`, the default) or kept (`/api/x` → `upstream/api/x`).
    pub strip_prefix: bool,
    /// Allowed methods; empty means any.
    pub methods: Vec<http::Method>,
    /// Time the upstream has to send its response head (502/504 beyond).
    pub timeout: Duration,
    /// Whether WebSocket upgrades are proxied (HTTP/1.1 `Upgrade: websocket`).
    pub websocket: bool,
    /// Which of the browser's other cookies reach the upstream (sealgate's never do).
    pub forward_cookies: CookieForwarding,
    /// HTTP/2 only to the upstream (h2c with prior knowledge over `http://`); otherwise
    /// HTTP/1.1, or h2 when a TLS upstream offers it by ALPN.
    pub http2: bool,
    /// Where it is in the file, `routes[i]` (routes are kept longest prefix first).
    pub key: String,
}

/// Which browser cookies a route forwards. sealgate's own cookies are never forwarded.
///
/// The default is [`CookieForwarding::None`]: the upstream authenticates the bearer token, and
/// every cookie it is sent is one more credential a confused upstream might honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieForwarding {
    /// Every cookie except sealgate's.
    All,
    /// No cookie.
    None,
    /// Only cookies with these exact names.
    Only(Vec<String>),
}

impl CookieForwarding {
    /// Whether a cookie named `name` (already known not to be sealgate's) is forwarded.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// `[static]`: the directory of the SPA's build output, served for paths nothing else handles.
#[derive(Debug, Clone)]
pub struct StaticSettings {
    /// The directory, canonicalized at start-up (absolute, symlinks resolved); every file served
    /// must canonicalize to a path inside it.
    pub root: PathBuf,
    /// File name of the entry page in `root`, served at `/` and for client-side routes.
    pub index: String,
    /// The `Content-Security-Policy` sent with HTML (and SVG).
    pub csp: http::HeaderValue,
}

/// The Content-Security-Policy sent with the SPA's HTML unless `static.csp` replaces it: only
/// same-origin scripts, styles, fonts and connections, no plugins, no `<base>` hijacking, forms
/// only to this origin, never framed.
pub const DEFAULT_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// Algorithms sealgate accepts for ID tokens: asymmetric only, so a token can never be forged
/// by using a public key (or the client secret) as an HMAC key.
pub const ASYMMETRIC_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Largest `oidc.max_logout_token_age`.
pub const MAX_LOGOUT_TOKEN_AGE: Duration = Duration::from_secs(3600);

/// Longest `session.cookie_name`: login cookie names derived from it must stay valid.
pub const MAX_COOKIE_NAME_LEN: usize = 64;

fn duration(key: &str, raw: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let text = raw.unwrap_or(default);
    let d = humantime::parse_duration(text)
        .map_err(|e| invalid(key, format!("{text:?} is not a duration like \"20m\": {e}")))?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses an absolute http(s) URL; `http` only for loopback hosts.
fn web_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| invalid(key, format!("{text:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                key,
                "http:// is accepted only for loopback hosts; use https://",
            ));
        }
        other => return Err(invalid(key, format!("unsupported scheme {other:?}"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(key, "must not contain user info"));
    }
    if url.fragment().is_some() {
        return Err(invalid(key, "must not contain a fragment"));
    }
    Ok(url)
}

fn resolve_secret(
    key: &str,
    spec: &str,
    env: &dyn SecretSource,
) -> Result<SecretString, ConfigError> {
    let secret_err = |problem: String| ConfigError::Secret {
        key: key.to_owned(),
        problem,
    };
    let value = if let Some(name) = spec.strip_prefix("env:") {
        env.env(name)
            .ok_or_else(|| secret_err(format!("environment variable {name} is not set")))?
    } else if let Some(path) = spec.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(|e| secret_err(format!("cannot read {path}: {e}")))?
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    } else {
        return Err(secret_err(
            "secrets must be given as \"env:NAME\" or \"file:PATH\", never inline".into(),
        ));
    };
    if value.is_empty() {
        return Err(secret_err("the secret is empty".into()));
    }
    Ok(SecretString::new(value))
}

fn path_prefix(key: &str, text: &str) -> Result<String, ConfigError> {
    let trimmed = text.trim_end_matches('/');
    let ok = trimmed.starts_with('/')
        && !trimmed.contains("//")
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && !trimmed.split('/').any(|seg| seg == "." || seg == "..");
    if ok || trimmed.is_empty() && text == "/" {
        Ok(trimmed.to_owned())
    } else {
        Err(invalid(
            key,
            format!("{text:?} must be a path like \"/api\" of letters, digits and -_.~"),
        ))
    }
}

/// Whether `name` is a single, plain file name: one normal path component, not hidden.
fn plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(c)) if c == name)
        && components.next().is_none()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// `[static]`: the directory must exist, be a directory other than `/`, and hold the index file
/// (itself inside the directory once symlinks are resolved).
fn static_settings(raw: RawStatic) -> Result<StaticSettings, ConfigError> {
    let index = raw.index.unwrap_or_else(|| "index.html".into());
    if !plain_file_name(&index) {
        return Err(invalid(
            "static.index",
            format!("{index:?} must be a file name like \"index.html\" (no path, not hidden)"),
        ));
    }
    if raw.dir.is_empty() {
        return Err(invalid("static.dir", "must not be empty"));
    }
    let root = std::fs::canonicalize(&raw.dir)
        .map_err(|e| invalid("static.dir", format!("cannot open {:?}: {e}", raw.dir)))?;
    if !root.is_dir() {
        return Err(invalid(
            "static.dir",
            format!("{:?} is not a directory", raw.dir),
        ));
    }
    if root.parent().is_none() {
        return Err(invalid(
            "static.dir",
            "refusing to serve the root of the file system",
        ));
    }
    let index_ok = std::fs::canonicalize(root.join(&index))
        .is_ok_and(|p| p.starts_with(&root) && p != root && p.is_file());
    if !index_ok {
        return Err(invalid(
            "static.dir",
            format!("{:?} contains no file {index:?}", raw.dir),
        ));
    }
    let csp_text = raw.csp.unwrap_or_else(|| DEFAULT_CSP.to_owned());
    let csp = http::HeaderValue::from_str(csp_text.trim())
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("static.csp", "must be a non-empty header value"))?;
    Ok(StaticSettings { root, index, csp })
}

impl Settings {
    /// Reads and validates the file at `path`, resolving secrets from the process environment.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let overrides: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Self::from_toml_with_overrides(&text, &ProcessEnv, &overrides)
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and the problem.
    pub fn from_toml(text: &str, env: &dyn SecretSource) -> Result<Self, ConfigError> {
        Self::from_toml_with_overrides(text, env, &[])
    }

    /// Like [`Settings::from_toml_with_overrides`], but collects every validation problem
    /// instead of stopping at the first (for `sealgate check-config`). After each problem, the
    /// offending value is replaced with the one `config.example.toml` has for the same key (or
    /// removed, when the example has none, so the default applies) and validation runs again.
    /// Syntax errors, unknown keys and wrong types stop at the first: the file's structure is
    /// not known past them.
    ///
    /// # Errors
    /// Every problem found, in the order found.
    pub fn check_all(
        text: &str,
        env: &dyn SecretSource,
        overrides: &[(String, String)],
    ) -> Result<Self, Vec<ConfigError>> {
        const EXAMPLE: &str = include_str!("../config.example.toml");
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| vec![ConfigError::Parse(e.to_string())])?;
        apply_overrides(&mut table, overrides).map_err(|e| vec![e])?;
        let example: toml::Table = EXAMPLE.parse().unwrap_or_default();
        let mut problems: Vec<ConfigError> = Vec::new();
        // Each round fixes one key; a config has far fewer keys than this.
        for _ in 0..200 {
            match Self::from_table(table.clone(), env) {
                Ok(settings) if problems.is_empty() => return Ok(settings),
                Ok(_) => return Err(problems),
                Err(e) => {
                    let Some(key) = e.key().map(str::to_owned) else {
                        // After a substitution, a keyless (structural) error is one the
                        // substitution caused (a required key removed), not the file's.
                        if problems.is_empty() {
                            problems.push(e);
                        }
                        return Err(problems);
                    };
                    let repeated = problems.iter().any(|p| p.key() == Some(key.as_str()));
                    problems.push(e);
                    if repeated || !substitute(&mut table, &example, &key) {
                        return Err(problems);
                    }
                }
            }
        }
        Err(problems)
    }

    /// Parses TOML text, applies environment overrides (`SEALGATE__SECTION__KEY=value`, see
    /// [`apply_overrides`]), and validates the result.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key (or the variable) and the problem.
    pub fn from_toml_with_overrides(
        text: &str,
        env: &dyn SecretSource,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        apply_overrides(&mut table, overrides)?;
        Self::from_table(table, env)
    }

    /// Validates an already parsed (and overridden) table.
    fn from_table(table: toml::Table, env: &dyn SecretSource) -> Result<Self, ConfigError> {
        let raw: RawConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;

        let s = raw.server;
        let listen = s.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("{:?} is not an address like 127.0.0.1:8080", s.listen),
            )
        })?;
        let public_url = web_url("server.public_url", &s.public_url)?;
        if public_url.path() != "/" || public_url.query().is_some() {
            return Err(invalid(
                "server.public_url",
                "must be an origin without path or query",
            ));
        }
        let server = ServerSettings {
            listen,
            public_url,
            max_connections: s.max_connections.unwrap_or(4096).max(1),
            workers: match s.workers {
                Some(0) => return Err(invalid("server.workers", "must be at least 1")),
                Some(n) if n > 1024 => return Err(invalid("server.workers", "at most 1024")),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, usize::from),
            },
            header_read_timeout: duration(
                "server.header_read_timeout",
                s.header_read_timeout.as_deref(),
                "10s",
            )?,
            max_header_bytes: s
                .max_header_bytes
                .unwrap_or(32 * 1024)
                .clamp(8 * 1024, 1024 * 1024),
            shutdown_grace: duration("server.shutdown_grace", s.shutdown_grace.as_deref(), "10s")?,
            tls: match (s.tls_cert, s.tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                    Some(TlsSettings {
                        cert: cert.into(),
                        key: key.into(),
                    })
                }
                (None, Some(_)) => {
                    return Err(invalid("server.tls_cert", "missing (tls_key is set)"));
                }
                _ => return Err(invalid("server.tls_key", "missing (tls_cert is set)")),
            },
        };

        let o = raw.oidc;
        let issuer_url = web_url("oidc.issuer", &o.issuer)?;
        if issuer_url.query().is_some() {
            return Err(invalid("oidc.issuer", "must not contain a query"));
        }
        let issuer = o.issuer.clone();
        if o.client_id.is_empty() {
            return Err(invalid("oidc.client_id", "must not be empty"));
        }
        let mut scopes = o
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
        if let Some(bad) = scopes.iter().find(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        }) {
            return Err(invalid(
                "oidc.scopes",
                format!("{bad:?} is not a valid scope token"),
            ));
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let algs = o
            .id_token_signing_algs
            .unwrap_or_else(|| ASYMMETRIC_ALGS.iter().map(|s| (*s).to_owned()).collect());
        if algs.is_empty() {
            return Err(invalid(
                "oidc.id_token_signing_algs",
                "must name at least one algorithm",
            ));
        }
        if let Some(bad) = algs.iter().find(|a| !ASYMMETRIC_ALGS.contains(&a.as_str())) {
            return Err(invalid(
                "oidc.id_token_signing_algs",
                format!(
                    "{bad:?} is not accepted; choose from {}",
                    ASYMMETRIC_ALGS.join(", ")
                ),
            ));
        }
        let oidc = OidcSettings {
            client_secret: resolve_secret("oidc.client_secret", &o.client_secret, env)?,
            issuer,
            client_id: o.client_id,
            scopes,
            post_logout_redirect_uri: o
                .post_logout_redirect_uri
                .as_deref()
                .map(|u| web_url("oidc.post_logout_redirect_uri", u))
                .transpose()?,
            timeout: duration("oidc.timeout", o.timeout.as_deref(), "10s")?,
            jwks_refetch_cooldown: duration(
                "oidc.jwks_refetch_cooldown",
                o.jwks_refetch_cooldown.as_deref(),
                "30s",
            )?,
            token_endpoint_auth: match o
                .token_endpoint_auth
                .as_deref()
                .unwrap_or("client_secret_basic")
            {
                "client_secret_basic" => TokenEndpointAuth::Basic,
                "client_secret_post" => TokenEndpointAuth::Post,
                other => {
                    return Err(invalid(
                        "oidc.token_endpoint_auth",
                        format!("{other:?}: use \"client_secret_basic\" or \"client_secret_post\""),
                    ));
                }
            },
            use_userinfo: o.use_userinfo.unwrap_or(false),
            id_token_signing_algs: algs,
            clock_skew: duration("oidc.clock_skew", o.clock_skew.as_deref(), "60s")?,
            max_id_token_age: duration(
                "oidc.max_id_token_age",
                o.max_id_token_age.as_deref(),
                "10m",
            )?,
            trusted_audiences: o.trusted_audiences.unwrap_or_default(),
            max_logout_token_age: duration(
                "oidc.max_logout_token_age",
                o.max_logout_token_age.as_deref(),
                "5m",
            )?,
            strict_logout_token_typ: o.strict_logout_token_typ.unwrap_or(false),
        };
        if oidc.max_logout_token_age > MAX_LOGOUT_TOKEN_AGE {
            return Err(invalid(
                "oidc.max_logout_token_age",
                "at most 1h: logout tokens are short-lived (OIDC Back-Channel Logout 2.4)",
            ));
        }

        let se = raw.session;
        let max_chunks = se.max_chunks.unwrap_or(DEFAULT_MAX_CHUNKS);
        if max_chunks == 0 {
            return Err(invalid("session.max_chunks", "must be at least 1"));
        }
        let mut key_texts = Vec::with_capacity(se.keys.len());
        for (i, spec) in se.keys.iter().enumerate() {
            key_texts.push(resolve_secret(&format!("session.keys[{i}]"), spec, env)?);
        }
        let keys = KeyRing::from_base64(
            &key_texts
                .iter()
                .map(SecretString::expose)
                .collect::<Vec<_>>(),
        )?;
        let session = SessionSettings {
            keys,
            cookie_name: CookieName::new(
                se.cookie_name.unwrap_or_else(|| "__Host-sealgate".into()),
            )?,
            idle_timeout: duration("session.idle_timeout", se.idle_timeout.as_deref(), "20m")?,
            absolute_timeout: duration(
                "session.absolute_timeout",
                se.absolute_timeout.as_deref(),
                "8h",
            )?,
            login_timeout: duration("session.login_timeout", se.login_timeout.as_deref(), "10m")?,
            max_chunks,
            store_id_token: se.store_id_token.unwrap_or(true),
            max_pending_logins: se.max_pending_logins.unwrap_or(5).clamp(1, 32),
            open_cache: match se.open_cache {
                Some(n) if n > 1_000_000 => {
                    return Err(invalid("session.open_cache", "at most 1000000"));
                }
                n => n.unwrap_or(1024),
            },
            refresh_before: duration(
                "session.refresh_before",
                se.refresh_before.as_deref(),
                "30s",
            )?,
            refresh_grace: duration("session.refresh_grace", se.refresh_grace.as_deref(), "30s")?,
        };
        if session.cookie_name.as_str().len() > MAX_COOKIE_NAME_LEN {
            return Err(invalid(
                "session.cookie_name",
                format!(
                    "at most {MAX_COOKIE_NAME_LEN} characters (login cookies append \"-login-\" and 16 hex digits)"
                ),
            ));
        }
        let cookie_budget = usize::from(max_chunks) * crate::seal::MAX_COOKIE_BYTES + 1024;
        if cookie_budget > server.max_header_bytes {
            return Err(invalid(
                "session.max_chunks",
                format!(
                    "{max_chunks} chunks need request heads of {cookie_budget} bytes, more than server.max_header_bytes ({}): browsers would get 431 after login",
                    server.max_header_bytes
                ),
            ));
        }
        if session.idle_timeout > session.absolute_timeout {
            return Err(invalid(
                "session.idle_timeout",
                "must not exceed session.absolute_timeout",
            ));
        }

        let b = raw.bff;
        let prefix = path_prefix("bff.prefix", b.prefix.as_deref().unwrap_or("/bff"))?;
        if prefix.is_empty() {
            return Err(invalid("bff.prefix", "must not be \"/\""));
        }
        let mut allowed_origins = Vec::new();
        for o in b.allowed_origins.unwrap_or_default() {
            let url = web_url("bff.allowed_origins", &o)?;
            if url.path() != "/" || url.query().is_some() {
                return Err(invalid(
                    "bff.allowed_origins",
                    format!("{o:?} must be an origin without a path"),
                ));
            }
            allowed_origins.push(url.origin().ascii_serialization());
        }
        let csrf_header =
            http::HeaderName::from_bytes(b.csrf_header.as_deref().unwrap_or("X-CSRF").as_bytes())
                .map_err(|_| invalid("bff.csrf_header", "not a valid header name"))?;
        let csrf_value = b.csrf_value.unwrap_or_else(|| "1".into());
        if csrf_value.is_empty() || http::HeaderValue::from_str(&csrf_value).is_err() {
            return Err(invalid("bff.csrf_value", "not a valid header value"));
        }
        let csrf_mode = match b.csrf_mode.as_deref().unwrap_or("header") {
            "header" => CsrfMode::Header,
            "double-submit" => CsrfMode::DoubleSubmit,
            other => {
                return Err(invalid(
                    "bff.csrf_mode",
                    format!("{other:?}: use \"header\" or \"double-submit\""),
                ));
            }
        };
        let bff = BffSettings {
            prefix,
            allowed_origins,
            csrf_header,
            csrf_value,
            csrf_mode,
            user_claims: b.user_claims.unwrap_or_else(|| {
                vec!["name".into(), "email".into(), "preferred_username".into()]
            }),
        };

        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            let prefix = path_prefix(&format!("{key}.prefix"), &r.prefix)?;
            if prefix.is_empty() && r.prefix != "/" {
                return Err(invalid(&format!("{key}.prefix"), "must be a path"));
            }
            if prefix == bff.prefix || prefix.starts_with(&format!("{}/", bff.prefix)) {
                return Err(invalid(&format!("{key}.prefix"), "overlaps bff.prefix"));
            }
            let upstream = web_url(&format!("{key}.upstream"), &r.upstream)?;
            if upstream.query().is_some() {
                return Err(invalid(
                    &format!("{key}.upstream"),
                    "must not contain a query",
                ));
            }
            let token = match r.token.as_deref().unwrap_or("user") {
                "user" => TokenPolicy::User,
                "optional" => TokenPolicy::Optional,
                "none" => TokenPolicy::None,
                other => {
                    return Err(invalid(
                        &format!("{key}.token"),
                        format!("{other:?}: use \"user\", \"optional\" or \"none\""),
                    ));
                }
            };
            if routes.iter().any(|x: &RouteSettings| x.prefix == prefix) {
                return Err(invalid(
                    &format!("{key}.prefix"),
                    "duplicates an earlier route",
                ));
            }
            let mut methods = Vec::new();
            for m in r.methods.unwrap_or_default() {
                let method = http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .ok()
                    .filter(|m| *m != http::Method::CONNECT)
                    .ok_or_else(|| {
                        invalid(
                            &format!("{key}.methods"),
                            format!("{m:?} is not an allowed method"),
                        )
                    })?;
                methods.push(method);
            }
            let forward_cookies = match r.forward_cookies {
                None => CookieForwarding::None,
                Some(RawCookieForwarding::Keyword(k)) if k == "all" => CookieForwarding::All,
                Some(RawCookieForwarding::Keyword(k)) if k == "none" => CookieForwarding::None,
                Some(RawCookieForwarding::Keyword(k)) => {
                    return Err(invalid(
                        &format!("{key}.forward_cookies"),
                        format!("{k:?}: use \"all\", \"none\" or a list of cookie names"),
                    ));
                }
                Some(RawCookieForwarding::Names(names)) => {
                    if let Some(bad) = names.iter().find(|n| {
                        n.is_empty()
                            || !n.bytes().all(|b| {
                                b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
                            })
                    }) {
                        return Err(invalid(
                            &format!("{key}.forward_cookies"),
                            format!("{bad:?} is not a cookie name"),
                        ));
                    }
                    CookieForwarding::Only(names)
                }
            };
            routes.push(RouteSettings {
                prefix,
                upstream,
                token,
                strip_prefix: r.strip_prefix.unwrap_or(true),
                methods,
                timeout: duration(&format!("{key}.timeout"), r.timeout.as_deref(), "30s")?,
                websocket: r.websocket.unwrap_or(false),
                forward_cookies,
                http2: r.http2.unwrap_or(false),
                key: key.clone(),
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));

        let rv = raw.revocation;
        if rv.journal.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("revocation.journal", "must be a file path"));
        }
        let revocation = RevocationSettings {
            journal: rv.journal.map(Into::into),
            capacity: match rv.capacity {
                Some(0) => return Err(invalid("revocation.capacity", "must be at least 1")),
                Some(c) => c,
                None => 1_000_000,
            },
        };

        let cluster = match raw.cluster {
            None => None,
            Some(c) => {
                // A URL with a password is a secret: env:/file: only. One without may be inline.
                let url = if c.redis_url.starts_with("env:") || c.redis_url.starts_with("file:") {
                    resolve_secret("cluster.redis_url", &c.redis_url, env)?
                } else {
                    let parsed = Url::parse(&c.redis_url)
                        .map_err(|e| invalid("cluster.redis_url", format!("not a URL: {e}")))?;
                    if parsed.password().is_some() {
                        return Err(ConfigError::Secret {
                            key: "cluster.redis_url".into(),
                            problem: "a URL with a password must be given as \"env:NAME\" or \"file:PATH\"".into(),
                        });
                    }
                    SecretString::new(c.redis_url)
                };
                let scheme_ok = Url::parse(url.expose())
                    .ok()
                    .is_some_and(|u| matches!(u.scheme(), "redis" | "redis+unix"));
                if !scheme_ok {
                    return Err(invalid(
                        "cluster.redis_url",
                        "must be a redis:// URL (TLS to Redis is not supported yet)",
                    ));
                }
                let on_store_unavailable =
                    match c.on_store_unavailable.as_deref().unwrap_or("refuse") {
                        "refuse" => StorePolicy::Refuse,
                        "allow" => StorePolicy::Allow,
                        other => {
                            return Err(invalid(
                                "cluster.on_store_unavailable",
                                format!("{other:?}: use \"refuse\" or \"allow\""),
                            ));
                        }
                    };
                let key_prefix = c.key_prefix.unwrap_or_else(|| "sealgate".into());
                if key_prefix.is_empty()
                    || !key_prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                {
                    return Err(invalid(
                        "cluster.key_prefix",
                        "use ASCII letters, digits, '-', '_', '.', ':'",
                    ));
                }
                Some(ClusterSettings {
                    redis_url: url,
                    on_store_unavailable,
                    key_prefix,
                })
            }
        };
        let static_files = raw.static_files.map(static_settings).transpose()?;
        if static_files.is_some() && routes.iter().any(|r| r.prefix.is_empty()) {
            return Err(invalid(
                "static.dir",
                "a [[routes]] entry with prefix \"/\" takes every path, so no static file would be served",
            ));
        }

        let metrics = MetricsSettings {
            enabled: raw.metrics.enabled.unwrap_or(true),
            listen: raw
                .metrics
                .listen
                .map(|l| {
                    l.parse().map_err(|_| {
                        invalid("metrics.listen", format!("{l:?} is not an address:port"))
                    })
                })
                .transpose()?,
        };

        let log = LogSettings {
            format: match raw.log.format.as_deref().unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        "log.format",
                        format!("{other:?}: use \"text\" or \"json\""),
                    ));
                }
            },
            level: match raw.log.level {
                Some(l) if tracing_subscriber::EnvFilter::try_new(&l).is_err() => {
                    return Err(invalid(
                        "log.level",
                        format!("{l:?} is not a tracing filter"),
                    ));
                }
                l => l,
            },
        };

        Ok(Settings {
            server,
            oidc,
            session,
            bff,
            routes,
            revocation,
            cluster,
            static_files,
            metrics,
            log,
        })
    }

    /// Risky but valid choices, as `(key, why)`, for `sealgate check-config` and start-up logs.
    pub fn warnings(&self) -> Vec<(String, String)> {
        let mut w = Vec::new();
        let mut warn = |key: &str, why: &str| w.push((key.to_owned(), why.to_owned()));
        if self.revocation.journal.is_none() && self.cluster.is_none() {
            warn(
                "revocation.journal",
                "not set: a restart forgets every logout (set a journal path, or [cluster])",
            );
        }
        if let Some(c) = &self.cluster
            && c.on_store_unavailable == StorePolicy::Allow
        {
            warn(
                "cluster.on_store_unavailable",
                "\"allow\": while Redis is unreachable, a logout on another instance is not seen here",
            );
        }
        if self.metrics.on_main_listener() {
            warn(
                "metrics.listen",
                "not set: /metrics is served on the public listener (set a separate address or block it at the edge)",
            );
        }
        if self.server.tls.is_none() && self.server.public_url.scheme() == "http" {
            warn(
                "server.public_url",
                "http:// (loopback only): cookies are Secure, so only a browser's localhost exception makes this work",
            );
        }
        for r in &self.routes {
            if r.forward_cookies == CookieForwarding::All {
                warn(
                    &format!("{}.forward_cookies", r.key),
                    "\"all\": every browser cookie but sealgate's reaches this upstream",
                );
            }
            if r.token != TokenPolicy::None {
                continue;
            }
            for other in &self.routes {
                let shadows = other.prefix.len() < r.prefix.len()
                    && (other.prefix.is_empty()
                        || r.prefix.starts_with(&format!("{}/", other.prefix)));
                if shadows && other.token != TokenPolicy::None {
                    warn(
                        &format!("{}.prefix", r.key),
                        &format!(
                            "{:?} has token = \"none\" and takes its paths from {:?}, which attaches tokens",
                            r.prefix, other.prefix
                        ),
                    );
                }
            }
        }
        w
    }

    /// The redirect URI registered at the IdP: `public_url` + `bff.prefix` + `/callback`.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}{}/callback",
            self.server.public_url.origin().ascii_serialization(),
            self.bff.prefix
        )
    }
}

#[cfg(test)]
mod tests;
