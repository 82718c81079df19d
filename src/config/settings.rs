//! The typed settings: what the rest of sealgate reads, validated once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::client_assertion::AssertionKey;
use crate::seal::{CookieName, KeyRing};
use crate::secret::SecretString;

pub(crate) use super::cluster::{RedisTls, RedisTopology};

/// Everything sealgate needs, validated.
#[derive(Debug)]
pub struct Settings {
    /// `[server]`.
    pub server: ServerSettings,
    /// `[oidc]` (one provider) or `[[providers]]`, in file order; never empty.
    pub providers: Vec<OidcSettings>,
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
    /// `[telemetry]`: traces over OTLP.
    pub telemetry: TelemetrySettings,
    /// `[limits]`.
    pub limits: LimitsSettings,
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

/// `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when
/// `otlp_endpoint` is set; nothing at all otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// The collector's base URL; spans are POSTed to `<otlp_endpoint>/v1/traces`.
    pub otlp_endpoint: Option<Url>,
    /// The `service.name` resource attribute. Default `sealgate`.
    pub service_name: String,
    /// The fraction of new traces recorded (0.0–1.0, by trace id). Default 1.0.
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "sealgate".to_owned(),
            sample_ratio: 1.0,
        }
    }
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
    /// Where Redis is: one server, a primary found through Sentinel, or a Redis Cluster.
    pub topology: RedisTopology,
    /// TLS to Redis (and to the sentinels): a `rediss://` URL or `tls = true`.
    pub tls: Option<RedisTls>,
    /// The ACL user (`AUTH username password`); none: the default user.
    pub username: Option<String>,
    /// Its password (`env:`/`file:` only).
    pub password: Option<SecretString>,
    /// Replicas that must confirm each revocation (`WAIT`); none: as many as the primary had
    /// connected at the last synchronisation.
    pub min_replicas: Option<u32>,
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
    /// How far the clocks of instances sharing revocations may disagree: a new not-before is
    /// set this far ahead, so a session created just before it on a faster clock is caught.
    pub clock_skew: Duration,
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

/// How sealgate authenticates to the token endpoint (and the revocation endpoint), with the
/// credential that method uses.
#[derive(Debug, Clone)]
pub enum TokenEndpointAuth {
    /// HTTP Basic with the client secret (`client_secret_basic`, the default).
    Basic(SecretString),
    /// The client secret in the form (`client_secret_post`).
    Post(SecretString),
    /// A JWT signed with the client's private key, fresh for each request (`private_key_jwt`,
    /// RFC 7523 section 2.2, OIDC Core section 9).
    PrivateKeyJwt(ClientAssertion),
}

impl TokenEndpointAuth {
    /// The method's registered name (`token_endpoint_auth_methods_supported`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Basic(_) => "client_secret_basic",
            Self::Post(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// `private_key_jwt`: the key and the audience of the assertions.
#[derive(Debug, Clone)]
pub struct ClientAssertion {
    /// The client's private key (`oidc.client_assertion_key`), with its `kid`
    /// (`oidc.client_assertion_kid`).
    pub key: AssertionKey,
    /// What the assertions' `aud` names (`oidc.client_assertion_audience`).
    pub audience: AssertionAudience,
}

/// The `aud` of a client assertion: one string, never an array (some IdPs refuse several
/// audiences).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAudience {
    /// The token endpoint URL from discovery (OIDC Core section 9; the default).
    TokenEndpoint,
    /// The issuer identifier (draft-ietf-oauth-rfc7523bis; immune to audience injection).
    Issuer,
}

/// `[oidc]`.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The provider's name: `/bff/login?provider=NAME`, its callback path, `/bff/user`.
    pub name: String,
    /// From `[[providers]]` (callback `/bff/callback/NAME`, name sealed in its sessions), not
    /// a lone `[oidc]` (callback `/bff/callback`, empty name sealed).
    pub listed: bool,
    /// The issuer identifier, exactly as configured; discovery must report exactly this.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// Requested scopes (`openid` is always included).
    pub scopes: Vec<String>,
    /// Where the IdP sends the browser after RP-initiated logout.
    pub post_logout_redirect_uri: Option<Url>,
    /// Timeout of each request to the IdP.
    pub timeout: Duration,
    /// Least time between two JWKS refetches triggered by an unknown `kid`.
    pub jwks_refetch_cooldown: Duration,
    /// Client authentication at the token and revocation endpoints, with its credential
    /// (`oidc.token_endpoint_auth`, `oidc.client_secret`, `oidc.client_assertion_*`).
    pub token_endpoint_auth: TokenEndpointAuth,
    /// Whether to call the userinfo endpoint after login (its `sub` must match).
    pub use_userinfo: bool,
    /// Sender-constrained tokens (RFC 9449): each new session gets its own DPoP key, and its
    /// token requests and upstream calls carry DPoP proofs.
    pub dpop: bool,
    /// Accepted ID token (and logout token) signature algorithms; asymmetric only: what the
    /// client registered (`id_token_signed_response_alg`, default RS256), or the older
    /// `id_token_signing_algs` list when only that is set.
    pub id_token_signing_algs: Vec<String>,
    /// Which key the algorithms came from, for `check-config`'s warnings.
    pub signing_algs_key: SigningAlgsKey,
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
    /// A refresh answered `400` without an OAuth error body ends the session like
    /// `invalid_grant` (Glewlwyd); otherwise it is a failure that keeps it (a proxy or WAF in
    /// front of the IdP may answer a bare 400).
    pub empty_400_is_invalid_grant: bool,
    /// Extra parameters of every authorization request (none of them a name sealgate owns).
    pub auth_params: Params,
    /// Extra parameters of every code and refresh-token grant (AD FS `resource`, …).
    pub token_params: Params,
    /// The `/bff/login` query parameters passed on to the IdP, each checked.
    pub login_params: Vec<String>,
    /// Pushed authorization requests (RFC 9126).
    pub par: ParMode,
    /// Added to the RP-initiated logout redirect (Cognito's `logout_uri`).
    pub logout_params: Params,
    /// The end-session endpoint to use instead of discovery's (an IdP whose metadata has none,
    /// or names another).
    pub end_session_endpoint: Option<Url>,
    /// The RFC 7009 revocation endpoint to use instead of discovery's (django-oauth-toolkit
    /// lists its endpoint only in its RFC 8414 metadata).
    pub revocation_endpoint: Option<Url>,
}

/// `[oidc] par`: when authorization requests are pushed (RFC 9126).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParMode {
    /// When discovery advertises a PAR endpoint (the default).
    Auto,
    /// Always; start-up fails when discovery advertises no PAR endpoint.
    Always,
    /// Never; start-up fails when the IdP requires PAR.
    Never,
}

/// Extra request parameters, in name order. `Debug` shows the names only: a value may be a
/// credential (an API key some IdP wants on the token request).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl std::ops::Deref for Params {
    type Target = [(String, String)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = &'a (String, String);
    type IntoIter = std::slice::Iter<'a, (String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<const N: usize> PartialEq<[(String, String); N]> for Params {
    fn eq(&self, other: &[(String, String); N]) -> bool {
        self.0 == other
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}=<redacted>")))
            .finish()
    }
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
    /// A session whose last grant is older than this refreshes before it is served, even with
    /// a valid access token, so the IdP can refuse it; `None`: off.
    pub revalidate_every: Option<Duration>,
    /// Route tokens of sessions kept in memory per instance, as (session, route) entries (0:
    /// minted for every request).
    pub route_token_cache: usize,
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
    /// A session is required; its access token (or the route's own token) is attached.
    User,
    /// The access token (or the route's own token) is attached when there is a session.
    Optional,
    /// No token; the route is a plain reverse proxy.
    None,
    /// The application's own token (client-credentials grant); no session is read.
    Client,
    /// The user's token when there is a session, the application's otherwise.
    UserOrClient,
}

impl TokenPolicy {
    /// Whether the route reads the session (to attach a user's token).
    pub fn reads_session(self) -> bool {
        matches!(self, Self::User | Self::Optional | Self::UserOrClient)
    }
}

/// The token a route gets: the session's access token, or one of its own (`resource`,
/// `scopes`, `exchange`), minted from the session (or, on a `token = "client"` route, for the
/// application) and only ever sent to this route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteToken {
    /// No `resource`, `scopes` or `exchange`: the session's access token (a client route: a
    /// client-credentials token without `resource` or `scope`).
    Default,
    /// `resource` (RFC 8707) and/or `scopes`: a refresh-token grant with the session's refresh
    /// token (a client route: a client-credentials grant) for them.
    Grant {
        /// The `resource` parameter.
        resource: Option<String>,
        /// The `scope` parameter (the `scopes`, space-separated).
        scope: Option<String>,
    },
    /// `exchange`: the session's access token exchanged at the token endpoint (RFC 8693).
    Exchange {
        /// The `audience` parameter.
        audience: Option<String>,
        /// The `resource` parameter.
        resource: Option<String>,
        /// The `scope` parameter.
        scope: Option<String>,
    },
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
    /// Which token: the session's or the route's own.
    pub route_token: RouteToken,
    /// `provider`: the `[[providers]]` entry whose client gets a client route's token (`None`:
    /// the first).
    pub provider: Option<String>,
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
    /// Step-up, claim rules and identity headers: who may call the route, and what its
    /// upstream learns of them (all empty by default).
    pub rules: RouteRules,
    /// Where it is in the file, `routes[i]` (routes are kept longest prefix first).
    pub key: String,
    /// `i` of `routes[i]`: the route's own tokens are kept under it.
    pub index: usize,
    /// `limits`: the route's own rates (`None`: `[limits] routes`).
    pub limits: Option<Limit>,
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

/// A route's rules about the signed-in user, checked against the session's ID token claims
/// (after a refresh, the refreshed ID token's) before anything is forwarded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteRules {
    /// Step-up: the ID token's `acr` must be one of these (empty: any `acr`, or none).
    pub acr_values: Vec<String>,
    /// Step-up: the ID token's `auth_time` must be present and at most this old.
    pub max_auth_age: Option<Duration>,
    /// Claims that must hold, by claim name (sorted).
    pub require_claims: Vec<(String, ClaimRule)>,
    /// Headers sent upstream with the value of a claim: (header, claim name), by header name.
    pub identity_headers: Vec<(http::HeaderName, String)>,
}

impl RouteRules {
    /// Whether the route asks for a stronger or fresher login than any session has.
    pub fn step_up(&self) -> bool {
        !self.acr_values.is_empty() || self.max_auth_age.is_some()
    }

    /// Whether only a session can pass: step-up or claim rules (identity headers alone do not
    /// keep anonymous callers of a `token = "optional"` route out).
    pub fn needs_session(&self) -> bool {
        self.step_up() || !self.require_claims.is_empty()
    }
}

/// What `require_claims` asks of one claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimRule {
    /// The claim equals this value (same JSON type).
    Equals(ClaimValue),
    /// The claim is one of these strings, or an array holding at least one of them.
    AnyOf(Vec<String>),
}

/// A single value a claim must equal.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimValue {
    /// A JSON string.
    Text(String),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number with this integer value.
    Integer(i64),
    /// A JSON number with this (finite) value.
    Float(f64),
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
pub(crate) const DEFAULT_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// Algorithms sealgate accepts for ID tokens: asymmetric only, so a token can never be forged
/// by using a public key (or the client secret) as an HMAC key.
pub(crate) const ASYMMETRIC_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Largest `oidc.max_logout_token_age`.
pub(crate) const MAX_LOGOUT_TOKEN_AGE: Duration = Duration::from_secs(3600);

/// Longest `session.cookie_name`: login cookie names derived from it must stay valid.
pub(crate) const MAX_COOKIE_NAME_LEN: usize = 64;

/// Where `[oidc]`'s accepted signature algorithms were configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgsKey {
    /// Neither key: the registration default, RS256.
    Default,
    /// `id_token_signed_response_alg`.
    Registered,
    /// Only the older `id_token_signing_algs`.
    Legacy,
    /// Both: `id_token_signed_response_alg` wins, the older key is ignored.
    Both,
}

/// `[limits]`: request rates per client address and per session (all off by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSettings {
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<TrustedNet>,
    /// Keys each limiter keeps at most (bounded memory under an address-spraying flood).
    pub max_clients: usize,
    /// `/bff/login`, per client address.
    pub login: Limit,
    /// `/bff/callback`, per client address.
    pub callback: Limit,
    /// `/bff/backchannel-logout`, per client address (the IdP's).
    pub backchannel_logout: Limit,
    /// Every route without `limits` of its own.
    pub routes: Limit,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            max_clients: 100_000,
            login: Limit::default(),
            callback: Limit::default(),
            backchannel_logout: Limit::default(),
            routes: Limit::default(),
        }
    }
}

/// The rates of one endpoint or route; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    /// Per client address (an IPv6 client by its /64).
    pub per_address: Option<Rate>,
    /// Per session (routes only).
    pub per_session: Option<Rate>,
}

/// `count` requests per `period`, `count` of them at once (a token bucket of `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period, and the burst.
    pub count: u32,
    /// The period.
    pub period: Duration,
}

/// An address range of `[limits] trusted_proxies` (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNet {
    /// The network's address (host bits cleared).
    pub addr: std::net::IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

impl TrustedNet {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)), self.prefix, 32) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `value` (of `bits` bits) with all but its first `prefix` bits cleared.
pub(crate) fn masked(value: u128, prefix: u8, bits: u8) -> u128 {
    let host_bits = u32::from(bits.saturating_sub(prefix));
    if host_bits >= 128 {
        0
    } else {
        value >> host_bits << host_bits
    }
}
