//! An in-process fake OpenID Provider that misbehaves on demand.
//!
//! [`FakeIdp::start`] binds `127.0.0.1:0` and serves discovery, JWKS, `/authorize` (approves at
//! once, no login page), `/token` (authorization-code with PKCE S256, refresh with rotation, a
//! refresh for a `resource` / `scope` minting a token for that audience, RFC 8693 token
//! exchange of a live access token, client credentials with the client as `sub`),
//! `/userinfo`, `/revoke`, `/end-session` and, when [`Behaviour::par_endpoint`] is set, `/par`
//! (RFC 9126 pushed authorization requests). Tests change its [`Behaviour`] at any time with
//! [`FakeIdp::set`]; a [`Fault`] breaks exactly one thing in the ID tokens it issues, so each
//! rule of OIDC Core 3.1.3.7 can be shown to be enforced. Every request is logged
//! ([`FakeIdp::requests`]) after its form body is read.
//!
//! Tokens are minted from the behaviour *at the time they are issued* (subject, claims, `sid`,
//! fault), including on refresh: to test "a refresh that changes `sub`", change `user_sub` and
//! refresh. Time is the real clock plus [`Behaviour::clock_offset`].
//!
//! The signing keys are the committed test-only keys in `tests/support/keys/`.
//!
//! [`FakeIdp::start_at`] puts the issuer under a path (`/realms/demo`, or `/` for an issuer
//! with a trailing slash), and the switches in [`profile`] make the IdP behave as a particular
//! provider does: the access tokens it issues ([`AccessTokens`]), when it issues refresh
//! tokens ([`RefreshWhen`]) and how it rotates them ([`Rotation`]), what its end-session
//! endpoint requires ([`EndSessionRule`]).
//!
//! Shared with the development IdP (the `devidp` crate): the RSA keys as JWKs
//! ([`devidp::keys`]), compact JWS signing ([`devidp::jws`]), PKCE S256 ([`devidp::pkce`]),
//! `client_secret_basic` parsing ([`devidp::form`]) and the accept loop ([`devidp::http`]).
//! Separate, on purpose: everything above that is test machinery. The development IdP is strict
//! and asks for a name; this one approves at once, mints from a [`Behaviour`] that tests change
//! mid-flow, breaks ID tokens on demand ([`Fault`]), logs every request, and answers with
//! deterministic token values. Putting those hooks into the development IdP would make the demo
//! carry test-only branches on every endpoint.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use devidp::form::parse_basic_auth;
use devidp::http::Limits;
use devidp::keys::RsaKey;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

use super::client_keys::{self, AssertionAudience, ClientKey};
use super::dpop::{self as proofs, Verified};

mod profile;

use profile::GrantRequest;
pub use profile::{AccessTokens, EndSessionRule, RefreshWhen, Rotation};

/// The `iss` that [`Fault::WrongIss`] and [`IssParam::Wrong`] put in place of the real one.
pub const EVIL_ISSUER: &str = "https://evil.example";
/// The nonce that [`Fault::WrongNonce`] puts in the ID token.
pub const WRONG_NONCE: &str = "wrong-nonce";
/// The `aud` that [`Fault::WrongAud`] puts in the ID token.
pub const WRONG_AUD: &str = "someone-else";
/// The second audience of [`Fault::ExtraAudNoAzp`] and [`Fault::ExtraAudWithAzp`].
pub const OTHER_CLIENT: &str = "other-client";
/// The `aud` of every access token the fake IdP issues.
pub const ACCESS_TOKEN_AUD: &str = "api";
/// The `aud` of an Entra ID token for Microsoft Graph, what a login without an API's
/// `.default` scope gets ([`AccessTokens::DefaultScope`]).
pub const GRAPH_AUD: &str = "00000003-0000-0000-c000-000000000000";
/// The `aud` of an AD FS access token when no `resource` was named ([`AccessTokens::Resource`]).
pub const USERINFO_AUD: &str = "urn:microsoft:userinfo";
/// `grant_type` of an RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The RFC 8693 token type of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The `events` member that marks a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

// ---------------------------------------------------------------------------------------------
// Test keys
// ---------------------------------------------------------------------------------------------

/// One of the committed TEST-ONLY RSA-2048 signing keys, ready to sign with and to publish.
pub struct TestKey {
    /// The `kid` the fake IdP puts in token headers and the JWKS.
    pub kid: &'static str,
    /// The private key, PKCS#8 PEM, as committed.
    pub private_pem: &'static str,
    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`, LF line endings): the bytes a
    /// confused verifier would use as an HMAC secret (see [`Fault::Hs256WithPublicKey`]).
    pub public_pem: String,
    /// The modulus, base64url without padding (JWK `n`).
    pub n: String,
    /// The public exponent, base64url without padding (JWK `e`).
    pub e: String,
    key: RsaKey,
}

impl TestKey {
    fn load(kid: &'static str, private_pem: &'static str) -> TestKey {
        let key = RsaKey::from_pkcs8_pem(private_pem, Some(kid)).expect("test key is PKCS#8 PEM");
        TestKey {
            kid,
            private_pem,
            public_pem: key.public_pem().to_owned(),
            n: key.n().to_owned(),
            e: key.e().to_owned(),
            key,
        }
    }

    /// The private key for [`sign_jws`].
    pub fn encoding(&self) -> &EncodingKey {
        self.key.encoding()
    }

    /// The public key as a JWK, as `/jwks` serves it.
    pub fn jwk(&self) -> Value {
        self.key.jwk()
    }
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The fake IdP's initial signing key. TEST ONLY.
pub static RSA1: LazyLock<TestKey> =
    LazyLock::new(|| TestKey::load("test-rsa1", include_str!("keys/rsa1.pem")));
/// The key [`FakeIdp::rotate_key`] switches to. TEST ONLY.
pub static RSA2: LazyLock<TestKey> =
    LazyLock::new(|| TestKey::load("test-rsa2", include_str!("keys/rsa2.pem")));

// ---------------------------------------------------------------------------------------------
// Behaviour
// ---------------------------------------------------------------------------------------------

/// How the token endpoint (and `/revoke`) expects the client to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `client_secret_basic`: `Authorization: Basic base64(urlenc(id):urlenc(secret))`.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
    /// `private_key_jwt`: a client assertion signed with this key (see [`client_keys`]); a
    /// `client_secret` or `Authorization` header is refused.
    PrivateKeyJwt(&'static ClientKey),
}

/// What `/authorize` puts in the RFC 9207 `iss` response parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssParam {
    /// The real issuer.
    Correct,
    /// [`EVIL_ISSUER`].
    Wrong,
    /// No `iss` parameter at all.
    Missing,
}

/// The one thing wrong with the ID tokens the fake IdP issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A valid ID token.
    None,
    /// RS256, correct key, one byte of the signature flipped.
    BadSignature,
    /// Header `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// HS256 keyed with the SPKI PEM of the RSA *public* key (the key-confusion attack); the
    /// header keeps the real `kid`.
    Hs256WithPublicKey,
    /// `iss` is [`EVIL_ISSUER`].
    WrongIss,
    /// No `iss`.
    MissingIss,
    /// `aud` is [`WRONG_AUD`].
    WrongAud,
    /// No `aud`.
    MissingAud,
    /// `aud` is `[client_id, OTHER_CLIENT]` and there is no `azp`.
    ExtraAudNoAzp,
    /// `aud` is `[client_id, OTHER_CLIENT]` and `azp` is `client_id` (valid per OIDC Core).
    ExtraAudWithAzp,
    /// `exp` is 600 s ago, `iat` 900 s ago.
    Expired,
    /// No `exp`.
    MissingExp,
    /// `iat` is an hour ahead, `exp` 4000 s ahead.
    IatInFuture,
    /// `nonce` is [`WRONG_NONCE`] (also on refresh, where there would otherwise be none).
    WrongNonce,
    /// No `nonce`.
    MissingNonce,
    /// No `sub`.
    MissingSub,
    /// Signed with the key the JWKS does *not* serve, with that key's `kid` (`test-rsa2` before
    /// any rotation).
    UnknownKid,
}

impl Fault {
    /// Every fault except [`Fault::None`], for table-driven tests.
    pub const ALL: [Fault; 16] = [
        Fault::BadSignature,
        Fault::AlgNone,
        Fault::Hs256WithPublicKey,
        Fault::WrongIss,
        Fault::MissingIss,
        Fault::WrongAud,
        Fault::MissingAud,
        Fault::ExtraAudNoAzp,
        Fault::ExtraAudWithAzp,
        Fault::Expired,
        Fault::MissingExp,
        Fault::IatInFuture,
        Fault::WrongNonce,
        Fault::MissingNonce,
        Fault::MissingSub,
        Fault::UnknownKid,
    ];
}

/// Everything about the fake IdP a test can change at run time with [`FakeIdp::set`].
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The only client the IdP knows. Default `spa-bff`.
    pub client_id: String,
    /// Its secret. Default `test-secret`.
    pub client_secret: String,
    /// The client authentication `/token` and `/revoke` accept. Default [`AuthMethod::Basic`].
    pub auth_method: AuthMethod,
    /// The `aud` a `private_key_jwt` assertion must have. Default the token endpoint.
    pub assertion_audience: AssertionAudience,
    /// `sub` of the user who "logs in". Default `alice`.
    pub user_sub: String,
    /// Merged into the ID token and the userinfo response (standard claims and faults win).
    /// Default `{"name": "Alice", "email": "alice@example.test"}`.
    pub extra_claims: Map<String, Value>,
    /// The IdP session id (`sid`) claim. Default `Some("idp-sid-1")`.
    pub sid: Option<String>,
    /// Metadata `authorization_response_iss_parameter_supported`. Default true.
    pub advertise_iss_param: bool,
    /// What `/authorize` puts in `iss`. Default [`IssParam::Correct`].
    pub iss_param: IssParam,
    /// Overrides `issuer` in discovery only (tokens keep the real issuer). Default `None`.
    pub discovery_issuer: Option<String>,
    /// What is wrong with issued ID tokens. Default [`Fault::None`].
    pub fault: Fault,
    /// Leave `id_token` out of token responses.
    pub omit_id_token: bool,
    /// Leave `access_token` out of token responses.
    pub omit_access_token: bool,
    /// Include an `id_token` in refresh responses too (most IdPs do). Default true.
    pub id_token_on_refresh: bool,
    /// Advertise and serve `/revoke`. Default true.
    pub revocation_endpoint: bool,
    /// `/token` answers its errors with the status only, no OAuth error body (Glewlwyd).
    /// Default false.
    pub empty_error_bodies: bool,
    /// With `revocation_endpoint`, also list it in the OpenID metadata. Default true; false is
    /// django-oauth-toolkit, which lists it only in its RFC 8414 metadata.
    pub revocation_in_discovery: bool,
    /// Advertise and serve `/end-session`. Default true.
    pub end_session_endpoint: bool,
    /// `/userinfo` answers with this `sub` instead of the token's. Default `None`.
    pub userinfo_sub: Option<String>,
    /// Access-token lifetime in seconds (`expires_in` and the JWT's `exp`). Default 300.
    pub access_token_lifetime: u64,
    /// Issue refresh tokens; each refresh then rotates (the old one becomes `invalid_grant`).
    /// When false, refreshing with an earlier token still works and returns no new one.
    /// Default true.
    pub refresh_tokens: bool,
    /// When set, `/token` answers 400 `{"error": <this>}` to every request.
    pub token_error: Option<String>,
    /// Subjects whose accounts are disabled: a refresh grant issued to one of them answers
    /// 400 `invalid_grant` (its refresh token stays on file: enabling the account again makes
    /// it work again). Default none.
    pub disabled_subs: Vec<String>,
    /// When set, `/authorize` redirects back with `error=<this>` (e.g. `access_denied`).
    pub authorize_error: Option<String>,
    /// Whether the user has a session at the IdP. Without one, `prompt=none` is answered with
    /// `error=login_required`; other requests "log in" as usual. Default true.
    pub idp_session: bool,
    /// Advertise and serve `/par` (RFC 9126). Default false.
    pub par_endpoint: bool,
    /// Metadata `require_pushed_authorization_requests: true`, and `/authorize` refuses a
    /// request without `request_uri` (400). Default false.
    pub require_par: bool,
    /// When set, `/par` answers this status with `{"error": "invalid_request"}`.
    pub par_status: Option<u16>,
    /// Seconds added to the real clock for every `iat`/`exp` the IdP writes or checks.
    pub clock_offset: i64,
    /// Every endpoint answers 503 (the IdP is "down"); requests are still logged.
    pub unavailable: bool,
    /// Every response is held back this long (outbound-timeout tests; honours
    /// `tokio::time::pause`).
    pub response_delay: Option<Duration>,
    /// What the access tokens look like. Default [`AccessTokens::Jwt`].
    pub access_tokens: AccessTokens,
    /// When a code grant comes with a refresh token (with [`Behaviour::refresh_tokens`]).
    /// Default [`RefreshWhen::Always`].
    pub refresh_when: RefreshWhen,
    /// What a refresh does to the refresh token (with [`Behaviour::refresh_tokens`]). Default
    /// [`Rotation::Rotate`].
    pub rotation: Rotation,
    /// Scopes `/authorize` refuses with `error=invalid_scope`. Default none.
    pub refused_scopes: Vec<String>,
    /// What `/end-session` requires. Default [`EndSessionRule::Standard`].
    pub end_session_rule: EndSessionRule,
    /// Revoking a refresh token revokes every refresh token of the same user and client (the
    /// app's access as a whole, as Google does). Default false.
    pub revoke_all_grants: bool,
    /// Lifetime in seconds of the tokens of route grants (a refresh grant with `resource` or
    /// `scope`, a token exchange, a client-credentials grant). Default `None`: the
    /// access-token lifetime.
    pub route_token_lifetime: Option<u64>,
    /// Whether a refresh grant with `resource` or `scope` rotates the refresh token like any
    /// other (the presented one is spent, a new one issued). When false, the presented one
    /// stays valid and none is returned. Default true.
    pub rotate_on_route_grants: bool,
    /// When set, route grants (see [`Behaviour::route_token_lifetime`]) answer this status
    /// with `{"error": <this>}`; other grants are unaffected.
    pub route_grant_error: Option<(u16, String)>,
    /// DPoP (RFC 9449): advertise `dpop_signing_alg_values_supported: ["ES256"]`. Whatever
    /// this says, a token request with a `DPoP` header has its proof verified
    /// ([`super::dpop::verify`]; `400 invalid_dpop_proof` otherwise) and gets tokens bound to
    /// its key (`token_type: DPoP`, `cnf.jkt` in the access token; the refresh token needs a
    /// proof of the same key). Default false.
    pub dpop: bool,
    /// Token requests with a DPoP proof must carry this nonce: without it, `400
    /// use_dpop_nonce` with a `DPoP-Nonce` header. Default none.
    pub dpop_nonce: Option<String>,
    /// Answer DPoP token requests with `token_type: Bearer` and unbound tokens (an IdP that
    /// ignores DPoP). Default false.
    pub dpop_ignored: bool,
    /// Many users at once (the soak): a login with `login_hint=SUB/REST` gets `sub` SUB and
    /// `sid` the whole hint, in its tokens and in every refresh of its grant, whatever
    /// [`Behaviour::user_sub`] and [`Behaviour::sid`] say. Default false.
    pub subject_from_login_hint: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        let mut extra_claims = Map::new();
        extra_claims.insert("name".into(), json!("Alice"));
        extra_claims.insert("email".into(), json!("alice@example.test"));
        Behaviour {
            client_id: "spa-bff".into(),
            client_secret: "test-secret".into(),
            auth_method: AuthMethod::Basic,
            assertion_audience: AssertionAudience::TokenEndpoint,
            user_sub: "alice".into(),
            extra_claims,
            sid: Some("idp-sid-1".into()),
            advertise_iss_param: true,
            iss_param: IssParam::Correct,
            discovery_issuer: None,
            fault: Fault::None,
            omit_id_token: false,
            omit_access_token: false,
            id_token_on_refresh: true,
            revocation_endpoint: true,
            revocation_in_discovery: true,
            empty_error_bodies: false,
            end_session_endpoint: true,
            userinfo_sub: None,
            access_token_lifetime: 300,
            refresh_tokens: true,
            token_error: None,
            disabled_subs: Vec::new(),
            authorize_error: None,
            idp_session: true,
            par_endpoint: false,
            require_par: false,
            par_status: None,
            clock_offset: 0,
            unavailable: false,
            response_delay: None,
            access_tokens: AccessTokens::Jwt,
            refresh_when: RefreshWhen::Always,
            rotation: Rotation::Rotate,
            refused_scopes: Vec::new(),
            end_session_rule: EndSessionRule::Standard,
            revoke_all_grants: false,
            route_token_lifetime: None,
            rotate_on_route_grants: true,
            route_grant_error: None,
            dpop: false,
            dpop_nonce: None,
            dpop_ignored: false,
            subject_from_login_hint: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request log
// ---------------------------------------------------------------------------------------------

/// One request the fake IdP received.
#[derive(Clone, Debug)]
pub struct Logged {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Decoded `application/x-www-form-urlencoded` body parameters of a POST, in order.
    pub form: Vec<(String, String)>,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `DPoP` header, verbatim.
    pub dpop: Option<String>,
    /// The W3C `traceparent` header, verbatim.
    pub traceparent: Option<String>,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Logged {
    /// The first query parameter called `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }

    /// The first form parameter called `name`.
    pub fn form_param(&self, name: &str) -> Option<&str> {
        find(&self.form, name)
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn parse_pairs(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A handle to a running fake IdP. Clones share it; the server stops accepting connections
/// when the last clone is dropped.
#[derive(Clone)]
pub struct FakeIdp {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    _server: Arc<ServerTask>,
}

impl fmt::Debug for FakeIdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeIdp")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
    /// The parameters of the authorization request (pushed ones included).
    auth_params: Vec<(String, String)>,
}

struct AccessGrant {
    sub: String,
    exp: i64,
    /// The DPoP key thumbprint the token is bound to.
    jkt: Option<String>,
}

struct RefreshGrant {
    client_id: String,
    scope: String,
    sub: String,
    /// The parameters of the authorization request the grant began with.
    auth_params: Vec<(String, String)>,
    /// Every refresh token rotated from the same code grant shares this.
    family: u64,
    /// The DPoP key thumbprint the refresh token is bound to.
    jkt: Option<String>,
}

struct State {
    issuer: String,
    /// The endpoints' common prefix: the issuer without a trailing slash.
    base: String,
    /// The issuer's path without a trailing slash (`""` at the root): stripped from requests.
    prefix: String,
    behaviour: Behaviour,
    /// Signing with [`RSA2`] instead of [`RSA1`].
    rotated: bool,
    codes: HashMap<String, PendingCode>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    /// Refresh tokens spent by rotation, with their family (for reuse detection).
    spent_refresh: HashMap<String, u64>,
    access_tokens: HashMap<String, AccessGrant>,
    /// Pushed authorization requests by `request_uri` (each usable once).
    pushed: HashMap<String, Vec<(String, String)>>,
    log: Vec<Logged>,
    serial: u64,
    /// Every client assertion `jti` accepted, in order (a replay is refused).
    assertion_jtis: Vec<String>,
    seen_jtis: HashSet<String>,
    /// Why each refused client assertion was refused, in order.
    assertion_refusals: Vec<String>,
    /// DPoP proofs accepted at `/token` and `/userinfo`, in order.
    dpop_proofs: Vec<Verified>,
    /// Why each refused DPoP proof was refused, in order (`"use_dpop_nonce"` for a missing
    /// nonce).
    dpop_refusals: Vec<String>,
    dpop_jtis: HashSet<String>,
    /// The key thumbprint of the token request being answered, when it has a valid proof.
    request_jkt: Option<String>,
    /// With [`Behaviour::subject_from_login_hint`]: the `login_hint` of the grant being
    /// answered.
    login_subject: Option<String>,
}

impl FakeIdp {
    /// Binds `127.0.0.1:0` and serves until the last handle is dropped (or the runtime ends).
    pub async fn start() -> FakeIdp {
        FakeIdp::start_at("").await
    }

    /// [`FakeIdp::start`] with the issuer `http://127.0.0.1:PORT<path>` (`path` empty or
    /// starting with `/`; `/` gives an issuer with a trailing slash). The endpoints live under
    /// the issuer without its trailing slash; requests elsewhere are 404. The request log names
    /// paths relative to that (`/token`).
    pub async fn start_at(path: &str) -> FakeIdp {
        assert!(path.is_empty() || path.starts_with('/'), "{path}");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake IdP");
        let addr = listener.local_addr().expect("fake IdP address");
        let issuer = format!("http://{addr}{path}");
        let state = Arc::new(Mutex::new(State {
            base: issuer.trim_end_matches('/').to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
            issuer,
            behaviour: Behaviour::default(),
            rotated: false,
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            spent_refresh: HashMap::new(),
            access_tokens: HashMap::new(),
            pushed: HashMap::new(),
            log: Vec::new(),
            serial: 0,
            assertion_jtis: Vec::new(),
            seen_jtis: HashSet::new(),
            assertion_refusals: Vec::new(),
            dpop_proofs: Vec::new(),
            dpop_refusals: Vec::new(),
            dpop_jtis: HashSet::new(),
            request_jkt: None,
            login_subject: None,
        }));
        let shared = Arc::clone(&state);
        // No header read timeout: tests pause and advance time; they never open this many.
        let limits = Limits {
            header_read_timeout: None,
            max_connections: 1024,
        };
        let task = devidp::http::serve(listener, "fake-idp", limits, move |req| {
            handle(Arc::clone(&shared), req)
        });
        FakeIdp {
            state,
            addr,
            _server: Arc::new(ServerTask(task)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn issuer(&self) -> String {
        self.lock().issuer.clone()
    }

    /// The URL of one of the IdP's endpoints (`path` like `/end-session`).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.lock().base)
    }

    /// The address the IdP listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the behaviour; takes effect for the next request.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.lock().behaviour);
    }

    /// A copy of the current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.lock().behaviour.clone()
    }

    /// Every request so far, in the order received.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// The requests to one path (e.g. `/token`), in order.
    pub fn requests_to(&self, path: &str) -> Vec<Logged> {
        self.lock()
            .log
            .iter()
            .filter(|l| l.path == path)
            .cloned()
            .collect()
    }

    /// The `jti` of every client assertion accepted so far, in order.
    pub fn assertion_jtis(&self) -> Vec<String> {
        self.lock().assertion_jtis.clone()
    }

    /// Why each refused client assertion was refused (`"replayed jti"`, `"signature"`, ...).
    pub fn assertion_refusals(&self) -> Vec<String> {
        self.lock().assertion_refusals.clone()
    }

    /// The DPoP proofs accepted so far, in order.
    pub fn dpop_proofs(&self) -> Vec<Verified> {
        self.lock().dpop_proofs.clone()
    }

    /// Why each refused DPoP proof was refused, in order.
    pub fn dpop_refusals(&self) -> Vec<String> {
        self.lock().dpop_refusals.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Switches the signing key to the other test key (first call: [`RSA2`], new `kid`); the
    /// JWKS then serves only the new key. A second call switches back.
    pub fn rotate_key(&self) {
        let mut state = self.lock();
        state.rotated = !state.rotated;
    }

    /// Every refresh and access token currently valid at the IdP (for leak checks).
    pub fn live_tokens(&self) -> Vec<String> {
        let state = self.lock();
        state
            .refresh_tokens
            .keys()
            .chain(state.access_tokens.keys())
            .cloned()
            .collect()
    }

    /// The key the IdP signs with and its JWKS serves.
    pub fn current_key(&self) -> &'static TestKey {
        self.lock().current_key()
    }

    /// The current key's `kid`.
    pub fn current_kid(&self) -> String {
        self.current_key().kid.to_owned()
    }

    /// The current key's public SPKI PEM (the HS256 secret of [`Fault::Hs256WithPublicKey`]).
    pub fn public_key_pem(&self) -> String {
        self.current_key().public_pem.clone()
    }

    /// An ID token exactly as `/token` would issue it now (current behaviour and fault).
    pub fn id_token(&self, nonce: Option<&str>) -> String {
        self.lock().id_token(nonce)
    }

    /// Signs arbitrary claims with the current key (RS256, `typ` JWT, current `kid`).
    pub fn sign_claims(&self, claims: &Value) -> String {
        let key = self.current_key();
        sign_rs256(key, "JWT", claims)
    }

    /// The key the IdP does *not* sign with nor serve (until [`FakeIdp::rotate_key`]).
    pub fn other_key(&self) -> &'static TestKey {
        self.lock().other_key()
    }

    /// A valid OIDC Back-Channel Logout token for the current user and `sid` (`typ`
    /// `logout+jwt`, fresh `jti`, 2-minute `exp`), after `edit` has changed its claims
    /// (remove `sid` to log out by `sub` only, add `nonce` to make it invalid, ...).
    pub fn logout_token(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let claims = self.logout_claims(edit);
        sign_rs256(self.current_key(), "logout+jwt", &Value::Object(claims))
    }

    /// The claims of [`FakeIdp::logout_token`], unsigned, to sign with another header or key
    /// through [`sign_jws`].
    pub fn logout_claims(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> Map<String, Value> {
        let mut claims = {
            let mut state = self.lock();
            let now = state.now();
            let jti = state.fresh("jti");
            let b = &state.behaviour;
            let mut claims = Map::new();
            claims.insert("iss".into(), json!(state.issuer));
            claims.insert("aud".into(), json!(b.client_id));
            claims.insert("sub".into(), json!(b.user_sub));
            if let Some(sid) = &b.sid {
                claims.insert("sid".into(), json!(sid));
            }
            claims.insert("iat".into(), json!(now));
            claims.insert("exp".into(), json!(now + 120));
            claims.insert("jti".into(), json!(jti));
            claims.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
            claims
        };
        edit(&mut claims);
        claims
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not take every later assertion down with it.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn handle(shared: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let prefix = lock(&shared).prefix.clone();
    let full = parts.uri.path();
    let path = full
        .strip_prefix(prefix.as_str())
        .filter(|p| p.starts_with('/'));
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let logged = Logged {
        method: parts.method.to_string(),
        path: path.unwrap_or(full).to_owned(),
        query: parse_pairs(parts.uri.query().unwrap_or_default().as_bytes()),
        form: if parts.method == Method::POST {
            parse_pairs(&body)
        } else {
            Vec::new()
        },
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        dpop: parts
            .headers
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        traceparent: parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        at: std::time::Instant::now(),
    };
    let (response, delay) = {
        let mut state = lock(&shared);
        state.log.push(logged.clone());
        let delay = state.behaviour.response_delay;
        let response = if state.behaviour.unavailable {
            text(StatusCode::SERVICE_UNAVAILABLE, "fake IdP is down")
        } else if path.is_none() {
            text(StatusCode::NOT_FOUND, "not under the issuer's path")
        } else {
            state.route(&parts.method, &logged)
        };
        (response, delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

impl State {
    fn current_key(&self) -> &'static TestKey {
        if self.rotated { &RSA2 } else { &RSA1 }
    }

    fn other_key(&self) -> &'static TestKey {
        if self.rotated { &RSA1 } else { &RSA2 }
    }

    /// With [`Behaviour::subject_from_login_hint`], the grant being answered belongs to the
    /// login whose authorization request had these parameters.
    fn use_login_hint(&mut self, auth_params: &[(String, String)]) {
        if self.behaviour.subject_from_login_hint {
            self.login_subject = find(auth_params, "login_hint").map(str::to_owned);
        }
    }

    /// The `sub` of the tokens being issued.
    fn subject(&self) -> String {
        match &self.login_subject {
            Some(hint) => hint.split('/').next().unwrap_or(hint).to_owned(),
            None => self.behaviour.user_sub.clone(),
        }
    }

    /// The `sid` of the ID token being issued.
    fn session_sid(&self) -> Option<String> {
        self.login_subject
            .clone()
            .or_else(|| self.behaviour.sid.clone())
    }

    fn now(&self) -> i64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        i64::try_from(secs).expect("seconds fit i64") + self.behaviour.clock_offset
    }

    /// An unguessable-looking, unique token value.
    fn fresh(&mut self, prefix: &str) -> String {
        self.serial += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let digest = Sha256::digest(format!("{}|{}|{nanos}", self.issuer, self.serial));
        format!("{prefix}-{}", URL_SAFE_NO_PAD.encode(&digest[..18]))
    }

    fn route(&mut self, method: &Method, req: &Logged) -> Response<Full<Bytes>> {
        let get = method == Method::GET;
        let post = method == Method::POST;
        match req.path.as_str() {
            "/.well-known/openid-configuration" if get => {
                json_response(StatusCode::OK, &self.discovery())
            }
            "/jwks" if get => json_response(
                StatusCode::OK,
                &json!({ "keys": [self.current_key().jwk()] }),
            ),
            "/authorize" if get => self.authorize(req),
            "/par" if post && self.behaviour.par_endpoint => self.par(req),
            "/token" if post => {
                let response = self.token(req);
                if self.behaviour.empty_error_bodies && response.status().is_client_error() {
                    // Glewlwyd: the status, no OAuth error body.
                    return Response::builder()
                        .status(response.status())
                        .body(Full::new(Bytes::new()))
                        .expect("static response parts are valid");
                }
                response
            }
            "/userinfo" if get || post => self.userinfo(req),
            "/revoke" if post && self.behaviour.revocation_endpoint => self.revoke(req),
            "/end-session" if (get || post) && self.behaviour.end_session_endpoint => {
                self.end_session_checked(req)
            }
            "/.well-known/openid-configuration"
            | "/jwks"
            | "/authorize"
            | "/token"
            | "/userinfo" => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn discovery(&self) -> Value {
        let b = &self.behaviour;
        let issuer = &self.base;
        let mut doc = json!({
            "issuer": b.discovery_issuer.as_deref().unwrap_or(&self.issuer),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": [match b.auth_method {
                AuthMethod::Basic => "client_secret_basic",
                AuthMethod::Post => "client_secret_post",
                AuthMethod::PrivateKeyJwt(_) => "private_key_jwt",
            }],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "sid", "name", "email"],
            "authorization_response_iss_parameter_supported": b.advertise_iss_param,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        });
        if let AuthMethod::PrivateKeyJwt(key) = b.auth_method {
            doc["token_endpoint_auth_signing_alg_values_supported"] = json!([key.alg]);
        }
        if b.revocation_endpoint && b.revocation_in_discovery {
            doc["revocation_endpoint"] = json!(format!("{issuer}/revoke"));
        }
        if b.end_session_endpoint {
            doc["end_session_endpoint"] = json!(format!("{issuer}/end-session"));
        }
        if b.par_endpoint {
            doc["pushed_authorization_request_endpoint"] = json!(format!("{issuer}/par"));
        }
        if b.dpop {
            doc["dpop_signing_alg_values_supported"] = json!(["ES256"]);
        }
        if b.require_par {
            doc["require_pushed_authorization_requests"] = json!(true);
        }
        self.profile_metadata(&mut doc);
        doc
    }

    /// RFC 9126: authenticates the client, keeps the pushed parameters under a fresh
    /// `request_uri` (valid once) and answers 201.
    fn par(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        if let Some(response) = self.client_auth_error(req) {
            return response;
        }
        if let Some(status) = self.behaviour.par_status {
            let status = StatusCode::from_u16(status).expect("a valid status");
            return oauth_error(status, "invalid_request");
        }
        if req.form_param("request_uri").is_some() {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        let request_uri = format!("urn:ietf:params:oauth:request_uri:{}", self.fresh("par"));
        let params = req
            .form
            .iter()
            .filter(|(k, _)| k != "client_secret")
            .cloned()
            .collect();
        self.pushed.insert(request_uri.clone(), params);
        json_response(
            StatusCode::CREATED,
            &json!({ "request_uri": request_uri, "expires_in": 60 }),
        )
    }

    /// A pushed request's parameters in place of the query (RFC 9126 4), or the request as it
    /// came; `Err` says why the IdP refuses it outright (a 400 page).
    fn resolve(&mut self, req: &Logged) -> Result<Logged, &'static str> {
        let Some(uri) = req.query_param("request_uri") else {
            if self.behaviour.require_par {
                return Err("pushed authorization request required");
            }
            return Ok(req.clone());
        };
        let mut query = self
            .pushed
            .remove(uri)
            .ok_or("unknown or used request_uri")?;
        if find(&query, "client_id").is_some_and(|c| Some(c) != req.query_param("client_id")) {
            return Err("client_id mismatch");
        }
        if find(&query, "client_id").is_none() {
            query.extend(
                req.query_param("client_id")
                    .map(|c| ("client_id".into(), c.into())),
            );
        }
        Ok(Logged {
            query,
            ..req.clone()
        })
    }

    /// Approves at once. Errors about the client or its redirect URI are shown to the "user"
    /// (400); the others go back to the client, as RFC 6749 4.1.2.1 says.
    fn authorize(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        let req = &match self.resolve(req) {
            Ok(req) => req,
            Err(why) => return text(StatusCode::BAD_REQUEST, why),
        };
        if req.query_param("client_id") != Some(self.behaviour.client_id.as_str()) {
            return text(StatusCode::BAD_REQUEST, "unknown client_id");
        }
        let Some(redirect_uri) = req.query_param("redirect_uri") else {
            return text(StatusCode::BAD_REQUEST, "missing redirect_uri");
        };
        let Ok(target) = Url::parse(redirect_uri) else {
            return text(
                StatusCode::BAD_REQUEST,
                "redirect_uri is not an absolute URL",
            );
        };
        let state_param = req.query_param("state");
        let challenge = req.query_param("code_challenge").unwrap_or_default();
        let scope = req.query_param("scope").unwrap_or_default();
        let error = if req.query_param("response_type") != Some("code") {
            Some("unsupported_response_type".to_owned())
        } else if req.query_param("code_challenge_method") != Some("S256") || challenge.len() != 43
        {
            Some("invalid_request".to_owned())
        } else if !scope.split(' ').any(|s| s == "openid")
            || scope
                .split(' ')
                .any(|s| self.behaviour.refused_scopes.iter().any(|r| r == s))
        {
            Some("invalid_scope".to_owned())
        } else if req.query_param("prompt") == Some("none") && !self.behaviour.idp_session {
            Some("login_required".to_owned())
        } else {
            self.behaviour.authorize_error.clone()
        };
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(error) = error {
            params.push(("error", error));
        } else {
            let code = self.fresh("code");
            self.codes.insert(
                code.clone(),
                PendingCode {
                    client_id: self.behaviour.client_id.clone(),
                    redirect_uri: redirect_uri.to_owned(),
                    code_challenge: challenge.to_owned(),
                    nonce: req.query_param("nonce").map(str::to_owned),
                    scope: scope.to_owned(),
                    auth_params: req.query.clone(),
                },
            );
            params.push(("code", code));
        }
        if let Some(state) = state_param {
            params.push(("state", state.to_owned()));
        }
        match self.behaviour.iss_param {
            IssParam::Correct => params.push(("iss", self.issuer.clone())),
            IssParam::Wrong => params.push(("iss", EVIL_ISSUER.to_owned())),
            IssParam::Missing => {}
        }
        redirect(with_params(target, &params).as_str())
    }

    fn token(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        if let Some(error) = &self.behaviour.token_error {
            return oauth_error(StatusCode::BAD_REQUEST, error);
        }
        if let Some(response) = self.client_auth_error(req) {
            return response;
        }
        self.request_jkt = None;
        self.login_subject = None;
        if let Some(proof) = &req.dpop {
            let url = format!("{}/token", self.base);
            match self.check_proof(proof, "POST", &url, None) {
                Ok(jkt) => self.request_jkt = (!self.behaviour.dpop_ignored).then_some(jkt),
                Err(response) => return *response,
            }
        }
        let grant = req.form_param("grant_type");
        let route_grant = match grant {
            Some("refresh_token") => {
                req.form_param("resource").is_some() || req.form_param("scope").is_some()
            }
            Some(TOKEN_EXCHANGE | "client_credentials") => true,
            _ => false,
        };
        if route_grant && let Some((status, error)) = &self.behaviour.route_grant_error {
            let status = StatusCode::from_u16(*status).expect("a valid status");
            return oauth_error(status, error);
        }
        match grant {
            Some("authorization_code") => self.code_grant(req),
            Some("refresh_token") => self.refresh_grant(req),
            Some(TOKEN_EXCHANGE) => self.exchange_grant(req),
            Some("client_credentials") => self.client_credentials_grant(req),
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    }

    /// Checks client authentication per [`Behaviour::auth_method`]; `Some` is the error
    /// response.
    fn client_auth_error(&mut self, req: &Logged) -> Option<Response<Full<Bytes>>> {
        let b = &self.behaviour;
        let basic = req
            .authorization
            .as_deref()
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, creds)| creds.trim());
        let post_secret = req.form_param("client_secret");
        if basic.is_some() && post_secret.is_some() {
            // RFC 6749 2.3: a client MUST NOT use more than one method in a request.
            return Some(oauth_error(StatusCode::BAD_REQUEST, "invalid_request"));
        }
        let ok = match b.auth_method {
            AuthMethod::Basic => basic
                .and(req.authorization.as_deref())
                .and_then(parse_basic_auth)
                .is_some_and(|(id, secret)| {
                    id == b.client_id
                        && secret == b.client_secret
                        && req.form_param("client_id").is_none_or(|f| f == b.client_id)
                }),
            AuthMethod::Post => {
                basic.is_none()
                    && req.form_param("client_id") == Some(b.client_id.as_str())
                    && post_secret == Some(b.client_secret.as_str())
            }
            AuthMethod::PrivateKeyJwt(key) => {
                let no_secret = req.authorization.is_none() && post_secret.is_none();
                no_secret && self.check_assertion(req, key)
            }
        };
        if ok {
            return None;
        }
        let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"fake-idp\""),
        );
        Some(response)
    }

    /// A DPoP proof per [`proofs::verify`], with the required nonce: the key's thumbprint, or
    /// the refusal (`400 invalid_dpop_proof`, or `400 use_dpop_nonce` with a `DPoP-Nonce`; at
    /// userinfo, 401 with `WWW-Authenticate: DPoP`).
    fn check_proof(
        &mut self,
        proof: &str,
        htm: &str,
        htu: &str,
        token: Option<&str>,
    ) -> Result<String, Box<Response<Full<Bytes>>>> {
        let expect = proofs::Expected {
            htm,
            htu,
            now: self.now(),
            token,
        };
        let nonce = self.behaviour.dpop_nonce.clone();
        let status = if token.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        match proofs::verify(proof, &expect, nonce.as_deref(), &mut self.dpop_jtis) {
            Ok(v) => {
                let jkt = v.jkt.clone();
                self.dpop_proofs.push(v);
                Ok(jkt)
            }
            Err(proofs::Refused::NeedsNonce) => {
                self.dpop_refusals.push("use_dpop_nonce".into());
                let mut response = oauth_error(status, "use_dpop_nonce");
                let nonce = HeaderValue::from_str(nonce.as_deref().unwrap_or_default())
                    .expect("a test nonce is a header value");
                response.headers_mut().insert("dpop-nonce", nonce);
                if token.is_some() {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("DPoP error=\"use_dpop_nonce\""),
                    );
                }
                Err(Box::new(response))
            }
            Err(proofs::Refused::Invalid(why)) => {
                self.dpop_refusals.push(why);
                Err(Box::new(oauth_error(status, "invalid_dpop_proof")))
            }
        }
    }

    /// A `private_key_jwt` assertion per [`client_keys::verify`]; its `jti` or the reason it
    /// was refused is recorded.
    fn check_assertion(&mut self, req: &Logged, key: &'static ClientKey) -> bool {
        let audience = match self.behaviour.assertion_audience {
            AssertionAudience::TokenEndpoint => format!("{}/token", self.base),
            AssertionAudience::Issuer => self.issuer.clone(),
        };
        let expect = client_keys::Expected {
            key,
            client_id: &self.behaviour.client_id,
            audience: &audience,
            now: self.now(),
        };
        match client_keys::verify(&req.form, &expect, &mut self.seen_jtis) {
            Ok(jti) => {
                self.assertion_jtis.push(jti);
                true
            }
            Err(why) => {
                self.assertion_refusals.push(why);
                false
            }
        }
    }

    fn code_grant(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        // Removed before any check: a code is single-use even when the exchange fails.
        let Some(pending) = req.form_param("code").and_then(|c| self.codes.remove(c)) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        let verifier = req.form_param("code_verifier").unwrap_or_default();
        let verifier_ok = devidp::pkce::s256_matches(verifier, &pending.code_challenge);
        if pending.client_id != self.behaviour.client_id
            || req.form_param("redirect_uri") != Some(pending.redirect_uri.as_str())
            || !verifier_ok
        {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        self.use_login_hint(&pending.auth_params);
        let grant = GrantRequest {
            scope: &pending.scope,
            auth_params: &pending.auth_params,
            token_form: &req.form,
            family: None,
        };
        self.issue(pending.nonce.as_deref(), &grant, true)
    }

    fn refresh_grant(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        let Some(old) = req.form_param("refresh_token") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        self.detect_reuse(old);
        let Some(grant) = self.refresh_tokens.get(old) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        if grant.client_id != self.behaviour.client_id
            || self.behaviour.disabled_subs.contains(&grant.sub)
        {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        if grant.jkt.is_some() && grant.jkt != self.request_jkt {
            // A bound refresh token needs a proof of its key (RFC 9449 5).
            self.dpop_refusals
                .push("refresh token bound to another key".into());
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
        }
        let (scope, auth_params, family) =
            (grant.scope.clone(), grant.auth_params.clone(), grant.family);
        self.use_login_hint(&auth_params);
        // A refresh that asks for a scope, or for a resource other than the login's, is a
        // route grant (Entra ID, RFC 8707); one that repeats the login's `resource` (AD FS
        // `token_params`) is the session's own refresh.
        let resource = req.form_param("resource");
        let asked = req.form_param("scope");
        if asked.is_some() || (resource.is_some() && resource != find(&auth_params, "resource")) {
            return self.route_refresh(old, resource, asked);
        }
        if self.behaviour.refresh_tokens && self.behaviour.rotation.spends_old() {
            // Rotation: the presented refresh token is spent.
            self.refresh_tokens.remove(old);
            self.spent_refresh.insert(old.to_owned(), family);
        }
        let grant = GrantRequest {
            scope: &scope,
            auth_params: &auth_params,
            token_form: &req.form,
            family: Some(family),
        };
        self.issue(None, &grant, self.behaviour.id_token_on_refresh)
    }

    /// A refresh for `resource` and/or `scope` (Entra ID, AD FS, RFC 8707): an access token
    /// for that audience, rotating per [`Behaviour::rotate_on_route_grants`].
    fn route_refresh(
        &mut self,
        old: &str,
        resource: Option<&str>,
        scope: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let sub = self.refresh_tokens[old].sub.clone();
        let scope = scope.unwrap_or_default();
        let (token, lifetime) =
            self.mint_route_token(&sub, &audience(None, resource, scope), scope);
        let mut body = json!({
            "access_token": token,
            "token_type": self.token_type(),
            "expires_in": lifetime,
            "scope": scope,
        });
        if self.behaviour.refresh_tokens && self.behaviour.rotate_on_route_grants {
            let grant = self
                .refresh_tokens
                .remove(old)
                .expect("checked by the caller");
            self.spent_refresh.insert(old.to_owned(), grant.family);
            let refresh = self.fresh("rt");
            self.refresh_tokens.insert(refresh.clone(), grant);
            body["refresh_token"] = json!(refresh);
        }
        no_store(json_response(StatusCode::OK, &body))
    }

    /// RFC 8693: a live access token of this IdP exchanged for one for `audience`, `resource`
    /// and/or `scope`, with the same `sub`.
    fn exchange_grant(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        if req.form_param("subject_token_type") != Some(ACCESS_TOKEN_TYPE) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        let now = self.now();
        let subject = req
            .form_param("subject_token")
            .and_then(|t| self.access_tokens.get(t))
            .filter(|g| g.exp > now);
        let Some(subject) = subject else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        let sub = subject.sub.clone();
        let scope = req.form_param("scope").unwrap_or_default();
        let aud = audience(
            req.form_param("audience"),
            req.form_param("resource"),
            scope,
        );
        let (token, lifetime) = self.mint_route_token(&sub, &aud, scope);
        no_store(json_response(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": self.token_type(),
                "expires_in": lifetime,
            }),
        ))
    }

    /// RFC 6749 4.4: the client's own token, `sub` the client id, no refresh or ID token.
    fn client_credentials_grant(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        let client = self.behaviour.client_id.clone();
        let scope = req.form_param("scope").unwrap_or_default();
        let aud = audience(None, req.form_param("resource"), scope);
        let (token, lifetime) = self.mint_route_token(&client, &aud, scope);
        no_store(json_response(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "token_type": self.token_type(),
                "expires_in": lifetime,
                "scope": scope,
            }),
        ))
    }

    /// A signed access token of a route grant for `sub` and `aud`, and its lifetime.
    fn mint_route_token(&mut self, sub: &str, aud: &str, scope: &str) -> (String, u64) {
        let b = &self.behaviour;
        let lifetime = b.route_token_lifetime.unwrap_or(b.access_token_lifetime);
        let now = self.now();
        let exp = now + i64::try_from(lifetime).expect("lifetime fits i64");
        let jti = self.fresh("rat");
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "client_id": self.behaviour.client_id,
            "scope": scope,
            "iat": now,
            "exp": exp,
            "jti": jti,
        });
        if let Some(jkt) = &self.request_jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        let token = sign_rs256(self.current_key(), "at+jwt", &claims);
        self.access_tokens.insert(
            token.clone(),
            AccessGrant {
                sub: sub.to_owned(),
                exp,
                jkt: self.request_jkt.clone(),
            },
        );
        (token, lifetime)
    }

    fn issue(
        &mut self,
        nonce: Option<&str>,
        grant: &GrantRequest<'_>,
        with_id_token: bool,
    ) -> Response<Full<Bytes>> {
        let scope = grant.scope;
        let now = self.now();
        let lifetime = self.behaviour.access_token_lifetime;
        let exp = now + i64::try_from(lifetime).expect("lifetime fits i64");
        let jti = self.fresh("at");
        let sub = self.subject();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": ACCESS_TOKEN_AUD,
            "client_id": self.behaviour.client_id,
            "scope": scope,
            "iat": now,
            "exp": exp,
            "jti": jti,
        });
        if let Some(jkt) = &self.request_jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        let access_token = match self.shape_access_token(grant, &mut claims) {
            Some(opaque) => opaque,
            None => sign_rs256(self.current_key(), "at+jwt", &claims),
        };
        let jkt = self.request_jkt.clone();
        self.access_tokens
            .insert(access_token.clone(), AccessGrant { sub, exp, jkt });
        let mut body = json!({
            "token_type": self.token_type(),
            "expires_in": lifetime,
            "scope": scope,
        });
        if !self.behaviour.omit_access_token {
            body["access_token"] = json!(access_token);
        }
        if self.behaviour.refresh_tokens && self.issues_refresh_token(grant) {
            let refresh = self.fresh("rt");
            let family = grant.family.unwrap_or(self.serial);
            self.refresh_tokens.insert(
                refresh.clone(),
                RefreshGrant {
                    client_id: self.behaviour.client_id.clone(),
                    scope: scope.to_owned(),
                    sub: self.subject(),
                    auth_params: grant.auth_params.to_vec(),
                    family,
                    jkt: self.request_jkt.clone(),
                },
            );
            body["refresh_token"] = json!(refresh);
        }
        if with_id_token && !self.behaviour.omit_id_token {
            body["id_token"] = json!(self.id_token(nonce));
        }
        let mut response = json_response(StatusCode::OK, &body);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn userinfo(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        let presented = req
            .authorization
            .as_deref()
            .and_then(|a| a.split_once(' '))
            .map(|(scheme, t)| (scheme.to_ascii_lowercase(), t.trim().to_owned()));
        let mut token = None;
        if let Some((scheme, t)) = &presented {
            let bound = self.access_tokens.get(t).and_then(|g| g.jkt.clone());
            match (scheme.as_str(), bound) {
                ("bearer", None) => token = Some(t.as_str()),
                ("dpop", Some(jkt)) => {
                    let url = format!("{}/userinfo", self.base);
                    let proof = req.dpop.clone().unwrap_or_default();
                    match self.check_proof(&proof, &req.method, &url, Some(t)) {
                        Ok(proven) if proven == jkt => token = Some(t.as_str()),
                        Ok(_) => {}
                        Err(response) => return *response,
                    }
                }
                _ => {}
            }
        }
        let grant = token
            .and_then(|t| self.access_tokens.get(t))
            .filter(|g| g.exp > self.now());
        let Some(grant) = grant else {
            let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return response;
        };
        let mut claims = self.behaviour.extra_claims.clone();
        let sub = self.behaviour.userinfo_sub.as_ref().unwrap_or(&grant.sub);
        claims.insert("sub".into(), json!(sub));
        json_response(StatusCode::OK, &Value::Object(claims))
    }

    /// RFC 7009: authenticated; forgets the token; 200 whether or not it was known.
    fn revoke(&mut self, req: &Logged) -> Response<Full<Bytes>> {
        if let Some(response) = self.client_auth_error(req) {
            return response;
        }
        let Some(token) = req.form_param("token") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        self.revoke_grants(token);
        self.refresh_tokens.remove(token);
        self.access_tokens.remove(token);
        text(StatusCode::OK, "")
    }

    /// `token_type` of the answer being made: `DPoP` when the request's proof bound it.
    fn token_type(&self) -> &'static str {
        if self.request_jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        }
    }

    /// The ID token for the current behaviour, with its [`Fault`] applied.
    fn id_token(&self, nonce: Option<&str>) -> String {
        let b = &self.behaviour;
        let now = self.now();
        let mut c = b.extra_claims.clone();
        c.insert("iss".into(), json!(self.issuer));
        c.insert("sub".into(), json!(self.subject()));
        c.insert("aud".into(), json!(b.client_id));
        c.insert("exp".into(), json!(now + 300));
        c.insert("iat".into(), json!(now));
        match nonce {
            Some(nonce) => c.insert("nonce".into(), json!(nonce)),
            None => c.remove("nonce"),
        };
        match &self.session_sid() {
            Some(sid) => c.insert("sid".into(), json!(sid)),
            None => c.remove("sid"),
        };
        let mut key = self.current_key();
        match b.fault {
            Fault::WrongIss => {
                c.insert("iss".into(), json!(EVIL_ISSUER));
            }
            Fault::MissingIss => {
                c.remove("iss");
            }
            Fault::WrongAud => {
                c.insert("aud".into(), json!(WRONG_AUD));
            }
            Fault::MissingAud => {
                c.remove("aud");
            }
            Fault::ExtraAudNoAzp => {
                c.insert("aud".into(), json!([b.client_id, OTHER_CLIENT]));
                c.remove("azp");
            }
            Fault::ExtraAudWithAzp => {
                c.insert("aud".into(), json!([b.client_id, OTHER_CLIENT]));
                c.insert("azp".into(), json!(b.client_id));
            }
            Fault::Expired => {
                c.insert("exp".into(), json!(now - 600));
                c.insert("iat".into(), json!(now - 900));
            }
            Fault::MissingExp => {
                c.remove("exp");
            }
            Fault::IatInFuture => {
                c.insert("iat".into(), json!(now + 3600));
                c.insert("exp".into(), json!(now + 4000));
            }
            Fault::WrongNonce => {
                c.insert("nonce".into(), json!(WRONG_NONCE));
            }
            Fault::MissingNonce => {
                c.remove("nonce");
            }
            Fault::MissingSub => {
                c.remove("sub");
            }
            Fault::UnknownKid => key = self.other_key(),
            Fault::None | Fault::BadSignature | Fault::AlgNone | Fault::Hs256WithPublicKey => {}
        }
        let claims = Value::Object(c);
        match b.fault {
            Fault::AlgNone => format!(
                "{}.{}.",
                b64_json(&json!({ "alg": "none" })),
                b64_json(&claims)
            ),
            Fault::Hs256WithPublicKey => {
                let header = json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid });
                let secret = EncodingKey::from_secret(key.public_pem.as_bytes());
                sign_compact(&header, &claims, &secret, Algorithm::HS256)
            }
            Fault::BadSignature => {
                let token = sign_rs256(key, "JWT", &claims);
                let (message, signature) = token.rsplit_once('.').expect("compact JWS");
                let mut bytes = URL_SAFE_NO_PAD
                    .decode(signature)
                    .expect("base64url signature");
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes))
            }
            _ => sign_rs256(key, "JWT", &claims),
        }
    }
}

/// The `aud` of a route grant's token: the `audience`, else the `resource`, else the prefix of
/// a `…/.default` scope (Entra ID), else [`ACCESS_TOKEN_AUD`].
fn audience(audience: Option<&str>, resource: Option<&str>, scope: &str) -> String {
    audience
        .or(resource)
        .or_else(|| scope.split(' ').find_map(|s| s.strip_suffix("/.default")))
        .unwrap_or(ACCESS_TOKEN_AUD)
        .to_owned()
}

fn no_store(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn end_session(req: &Logged) -> Response<Full<Bytes>> {
    let target = req
        .query_param("post_logout_redirect_uri")
        .or_else(|| req.form_param("post_logout_redirect_uri"));
    let Some(target) = target else {
        return text(StatusCode::OK, "You are signed out of the fake IdP.");
    };
    let Ok(url) = Url::parse(target) else {
        return text(
            StatusCode::BAD_REQUEST,
            "post_logout_redirect_uri is not an absolute URL",
        );
    };
    let state = req.query_param("state").or_else(|| req.form_param("state"));
    let params: Vec<(&str, String)> = state.map(|s| ("state", s.to_owned())).into_iter().collect();
    redirect(with_params(url, &params).as_str())
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn with_params(mut url: Url, params: &[(&str, String)]) -> Url {
    if !params.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
    }
    url
}

/// `BASE64URL(SHA-256(verifier))`, the RFC 7636 S256 code challenge.
pub fn pkce_s256(verifier: &str) -> String {
    devidp::pkce::s256_challenge(verifier)
}

fn b64_json(value: &Value) -> String {
    devidp::jws::segment(value).expect("JSON serializes")
}

/// A compact JWS of `claims` with exactly `header`, signed with `key` under `alg` (which need
/// not be the header's: to forge, mislabel or confuse).
pub fn sign_jws(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    sign_compact(header, claims, key, alg)
}

fn sign_compact(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    devidp::jws::sign_compact(header, claims, key, alg).expect("signing a test token")
}

/// RS256 with the header `{"alg": "RS256", "typ": typ, "kid": key.kid}`.
fn sign_rs256(key: &TestKey, typ: &str, claims: &Value) -> String {
    key.key.sign(typ, claims).expect("signing a test token")
}

/// Splits a compact JWT into its decoded header and claims (no verification), for assertions.
pub fn peek_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        let part = parts.next().expect("JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url part"))
            .expect("JSON part")
    };
    (next(), next())
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("static response parts are valid")
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("JSON serializes"),
        )))
        .expect("static response parts are valid")
}

fn oauth_error(status: StatusCode, error: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": error }))
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .body(Full::new(Bytes::new()))
        .expect("a URL is a valid Location")
}
