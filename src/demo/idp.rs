//! A development OpenID Provider for `sealgate demo` and for tests.
//!
//! **NOT FOR PRODUCTION.** It signs in anyone who types a name, keeps everything in memory
//! (lost on restart) and generates a new signing key at every start. It exists so that the demo
//! runs with one command and so that sealgate meets a provider that is strict where real ones
//! are strict:
//!
//! - discovery (`/.well-known/openid-configuration`) and JWKS (`/jwks`, one RS256 key whose
//!   `kid` is its RFC 7638 thumbprint);
//! - `/authorize`: authorization code flow only, PKCE S256 required, `state` required, exact
//!   `redirect_uri` match, RFC 9207 `iss` in every response to the client; an unknown client or
//!   redirect URI gets an error page, never a redirect;
//! - `/token`: a confidential client (`client_secret_basic` or `client_secret_post`, compared
//!   in constant time), single-use codes (60 s; a replayed code also revokes what was issued
//!   from it, RFC 6749 §4.1.2), rotating refresh tokens with reuse detection (presenting a
//!   rotated refresh token revokes the whole login's refresh tokens, RFC 9700 §4.14.2);
//! - `/userinfo`, `/revoke` (RFC 7009) and `/end-session` (RP-initiated logout).
//!
//! One login (one `sid`) is one token family: its code, and every refresh token rotated from
//! it. Revocation, reuse detection and logout act on the family.
//!
//! Layout: [`DevIdp::start`] binds and spawns the server (`spawn_server`, shared with the demo
//! API); `Idp::handle` routes a request to one handler per endpoint; the grant bookkeeping lives
//! in `Store`, which takes `now` and fresh tokens as arguments so it is tested without HTTP.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use url::Url;

use crate::secret::{RandomError, fill_random};

/// The `aud` of every access token this IdP issues; the demo API accepts only this audience.
pub(crate) const DEMO_API_AUDIENCE: &str = "demo-api";

/// Lifetime of access and ID tokens.
const TOKEN_LIFETIME_SECS: u64 = 300;
/// Lifetime of an authorization code (RFC 6749 §4.1.2 recommends at most 10 minutes).
const CODE_LIFETIME_SECS: u64 = 60;
/// Absolute lifetime of a login's refresh tokens; rotation does not extend it. Longer than
/// sealgate's default absolute session lifetime (8 h) so that sealgate's limit is the one seen.
const REFRESH_LIFETIME_SECS: u64 = 24 * 3600;
/// How long a redeemed code is remembered, so that a replay is recognised and revokes.
const SPENT_CODE_MEMORY_SECS: u64 = 600;
/// Caps that keep the in-memory state bounded whatever the traffic.
const MAX_CODES: usize = 1_000;
const MAX_REFRESH_TOKENS: usize = 10_000;
const MAX_SPENT: usize = 10_000;
/// Request limits.
const BODY_LIMIT: usize = 64 * 1024;
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 256;
/// The longest accepted value of any request parameter (state, nonce, scope, ...).
const MAX_PARAM_LEN: usize = 2_048;
/// The longest accepted display name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// RSA modulus size of the signing key.
const RSA_BITS: usize = 2048;
/// Status of the redirect that answers the login form's POST. RFC 9700 §4.12: a redirect that
/// answers a request carrying user input SHOULD be 303 so that no browser re-POSTs the form to
/// the client (307 would).
const LOGIN_REDIRECT_STATUS: StatusCode = StatusCode::SEE_OTHER;
/// Scopes this IdP knows; others are dropped from the granted scope (RFC 6749 §3.3).
const SUPPORTED_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// Label shown on every page this IdP renders.
const LABEL: &str = "sealgate development IdP \u{2014} not for production";

/// The single client the development IdP knows.
#[derive(Clone)]
pub struct DevIdpConfig {
    /// The confidential client's `client_id`.
    pub client_id: String,
    /// The confidential client's secret (`client_secret_basic` or `client_secret_post`).
    pub client_secret: String,
    /// The only accepted `redirect_uri` (exact string match).
    pub redirect_uri: String,
    /// The only accepted `post_logout_redirect_uri` (exact string match).
    pub post_logout_redirect_uri: String,
}

impl fmt::Debug for DevIdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIdpConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("post_logout_redirect_uri", &self.post_logout_redirect_uri)
            .finish()
    }
}

/// A running development IdP. NOT FOR PRODUCTION: it signs in anyone who types a name.
///
/// The server runs in a spawned task until the tokio runtime shuts down; dropping this handle
/// does not stop it.
pub struct DevIdp {
    addr: SocketAddr,
    issuer: String,
    decoding_key: DecodingKey,
}

impl fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIdp")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl DevIdp {
    /// Generates a fresh RSA-2048 signing key (OS CSPRNG), binds `addr` (e.g. `127.0.0.1:0`)
    /// and serves the IdP in a spawned tokio task.
    ///
    /// Bind a loopback address: the issuer is `http://<bound address>`.
    ///
    /// # Errors
    /// When the key cannot be generated or the address cannot be bound.
    pub async fn start(addr: SocketAddr, config: DevIdpConfig) -> io::Result<DevIdp> {
        // Key generation takes from milliseconds (release) to seconds (debug): off the runtime.
        let key = tokio::task::spawn_blocking(SigningKey::generate)
            .await
            .map_err(io::Error::other)??;
        Self::start_with_key(addr, config, key).await
    }

    async fn start_with_key(
        addr: SocketAddr,
        config: DevIdpConfig,
        key: SigningKey,
    ) -> io::Result<DevIdp> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let decoding_key = key.decoding.clone();
        let idp = Arc::new(Idp::new(issuer.clone(), config, key));
        spawn_server(listener, "dev-idp", move |req| Arc::clone(&idp).handle(req));
        tracing::info!(%issuer, "development IdP (NOT FOR PRODUCTION) listening");
        Ok(DevIdp {
            addr,
            issuer,
            decoding_key,
        })
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public key that verifies every token this IdP signs (used by the demo API).
    pub fn decoding_key(&self) -> DecodingKey {
        self.decoding_key.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP server plumbing (shared with the demo API)
// ---------------------------------------------------------------------------------------------

/// Serves `handler` on `listener` in a spawned task: HTTP/1.1 and HTTP/2, a header read
/// timeout and a connection cap. Runs until the runtime shuts down.
pub(super) fn spawn_server<H, F>(listener: TcpListener, server: &'static str, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return; // the semaphore is never closed; nothing left to serve if it were
            };
            let stream = match listener.accept().await {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(server, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let builder = builder.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                if let Err(error) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(server, %error, "connection ended with an error");
                }
                drop(permit);
            });
        }
    });
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response with `body` and `content_type`, never cached.
fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A JSON response, never cached.
pub(super) fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
) -> Response<Full<Bytes>> {
    // Serializing a `Value` cannot fail (its map keys are strings).
    let body = serde_json::to_vec(value).unwrap_or_default();
    respond(status, "application/json", body)
}

/// A body-less redirect to `location`.
fn redirect(status: StatusCode, location: &str) -> Response<Full<Bytes>> {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = respond(status, "text/plain; charset=utf-8", Vec::new());
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => server_error_page(),
    }
}

// ---------------------------------------------------------------------------------------------
// Signing key
// ---------------------------------------------------------------------------------------------

/// The IdP's RS256 key pair and its published form.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The JWK set document, serialized once.
    jwks: Bytes,
}

impl SigningKey {
    fn generate() -> io::Result<Self> {
        let private = RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(io::Error::other)?;
        let der = private.to_pkcs1_der().map_err(io::Error::other)?;
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        // RFC 7638 thumbprint: SHA-256 of the required members, lexicographic, no whitespace.
        let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(io::Error::other)?;
        let jwks = json!({
            "keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}]
        });
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            jwks: Bytes::from(serde_json::to_vec(&jwks).map_err(io::Error::other)?),
        })
    }

    fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, OAuthError> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|error| {
            tracing::error!(%error, "development IdP: signing failed");
            OAuthError::ServerError
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Grant bookkeeping (pure: `now` and fresh tokens come from the caller)
// ---------------------------------------------------------------------------------------------

/// Who signed in, for which client: shared by a login's code and its refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Login {
    client_id: String,
    sub: String,
    name: String,
    /// The IdP session id: one per login, the key of the token family.
    sid: String,
    /// The granted scope, space-separated.
    scope: String,
    auth_time: u64,
}

/// An issued, unredeemed authorization code.
#[derive(Debug, Clone)]
struct CodeGrant {
    login: Login,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    expires_at: u64,
}

/// A live refresh token.
#[derive(Debug, Clone)]
struct RefreshGrant {
    login: Login,
    expires_at: u64,
}

/// A redeemed code or a rotated refresh token: presenting it again revokes its family.
#[derive(Debug, Clone)]
struct Spent {
    sid: String,
    forget_at: u64,
}

/// Why a code or refresh token was refused; every reason is `invalid_grant` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrantError {
    Unknown,
    Replayed,
    Expired,
    WrongClient,
    WrongRedirectUri,
    PkceMismatch,
}

impl GrantError {
    fn description(self) -> &'static str {
        match self {
            GrantError::Unknown => "unknown or revoked grant",
            GrantError::Replayed => "grant already used; its tokens are revoked",
            GrantError::Expired => "grant expired",
            GrantError::WrongClient => "grant was issued to another client",
            GrantError::WrongRedirectUri => "redirect_uri does not match the authorization request",
            GrantError::PkceMismatch => "code_verifier does not match the code_challenge",
        }
    }
}

/// The store is at its cap of unredeemed codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreFull;

/// All mutable IdP state. Every map is bounded: an insert into a full map first drops its
/// expired entries (expired entries are refused before then anyway), then either fails (codes)
/// or evicts the entry closest to expiry (refresh tokens, spent markers).
#[derive(Debug, Default)]
struct Store {
    codes: HashMap<String, CodeGrant>,
    refresh: HashMap<String, RefreshGrant>,
    spent: HashMap<String, Spent>,
}

impl Store {
    fn insert_code(&mut self, code: String, grant: CodeGrant, now: u64) -> Result<(), StoreFull> {
        if self.codes.len() >= MAX_CODES {
            self.codes.retain(|_, g| g.expires_at > now);
        }
        if self.codes.len() >= MAX_CODES {
            return Err(StoreFull);
        }
        self.codes.insert(code, grant);
        Ok(())
    }

    /// Redeems `code` once. Any attempt consumes it, so a wrong verifier cannot be retried; a
    /// second presentation revokes the family (RFC 6749 §4.1.2).
    fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
        now: u64,
    ) -> Result<CodeGrant, GrantError> {
        if let Some(spent) = self.spent.get(code) {
            let sid = spent.sid.clone();
            self.revoke_family(&sid);
            return Err(GrantError::Replayed);
        }
        let grant = self.codes.remove(code).ok_or(GrantError::Unknown)?;
        self.mark_spent(
            code.to_owned(),
            grant.login.sid.clone(),
            now + SPENT_CODE_MEMORY_SECS,
            now,
        );
        if grant.expires_at <= now {
            return Err(GrantError::Expired);
        }
        if grant.login.client_id != client_id {
            return Err(GrantError::WrongClient);
        }
        if grant.redirect_uri != redirect_uri {
            return Err(GrantError::WrongRedirectUri);
        }
        if !pkce_s256_matches(code_verifier, &grant.code_challenge) {
            return Err(GrantError::PkceMismatch);
        }
        Ok(grant)
    }

    fn insert_refresh(&mut self, token: String, grant: RefreshGrant, now: u64) {
        if self.refresh.len() >= MAX_REFRESH_TOKENS {
            self.refresh.retain(|_, g| g.expires_at > now);
        }
        if self.refresh.len() >= MAX_REFRESH_TOKENS {
            evict_soonest(&mut self.refresh, |g| g.expires_at);
        }
        self.refresh.insert(token, grant);
    }

    /// Exchanges refresh token `old` for `new`: `old` stops working, `new` inherits the login
    /// and its absolute expiry. Presenting an already rotated token revokes the family.
    fn rotate_refresh(
        &mut self,
        old: &str,
        client_id: &str,
        new: String,
        now: u64,
    ) -> Result<Login, GrantError> {
        if let Some(spent) = self.spent.get(old) {
            let sid = spent.sid.clone();
            self.revoke_family(&sid);
            return Err(GrantError::Replayed);
        }
        let grant = match self.refresh.entry(old.to_owned()) {
            Entry::Vacant(_) => return Err(GrantError::Unknown),
            Entry::Occupied(entry) => {
                if entry.get().expires_at <= now {
                    entry.remove();
                    return Err(GrantError::Expired);
                }
                if entry.get().login.client_id != client_id {
                    return Err(GrantError::WrongClient);
                }
                entry.remove()
            }
        };
        self.mark_spent(
            old.to_owned(),
            grant.login.sid.clone(),
            grant.expires_at,
            now,
        );
        let login = grant.login.clone();
        self.insert_refresh(new, grant, now);
        Ok(login)
    }

    /// RFC 7009: revokes `token` and its family if it is (or was) a refresh token of
    /// `client_id`. Unknown tokens are ignored, as the RFC requires.
    fn revoke(&mut self, token: &str, client_id: &str) {
        let sid = match (self.refresh.get(token), self.spent.get(token)) {
            (Some(grant), _) if grant.login.client_id == client_id => grant.login.sid.clone(),
            (None, Some(spent)) => spent.sid.clone(),
            _ => return,
        };
        self.revoke_family(&sid);
    }

    /// Ends IdP session `sid`: its unredeemed codes and refresh tokens stop working.
    fn revoke_family(&mut self, sid: &str) {
        self.codes.retain(|_, g| g.login.sid != sid);
        self.refresh.retain(|_, g| g.login.sid != sid);
    }

    fn mark_spent(&mut self, token: String, sid: String, forget_at: u64, now: u64) {
        if self.spent.len() >= MAX_SPENT {
            self.spent.retain(|_, s| s.forget_at > now);
        }
        if self.spent.len() >= MAX_SPENT {
            evict_soonest(&mut self.spent, |s| s.forget_at);
        }
        self.spent.insert(token, Spent { sid, forget_at });
    }
}

/// Removes the entry whose `expiry` is smallest (O(n), only ever at a cap).
fn evict_soonest<V>(map: &mut HashMap<String, V>, expiry: impl Fn(&V) -> u64) {
    let soonest = map
        .iter()
        .min_by_key(|(_, v)| expiry(v))
        .map(|(k, _)| k.clone());
    if let Some(key) = soonest {
        map.remove(&key);
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol helpers (pure)
// ---------------------------------------------------------------------------------------------

/// Request parameters. Parameters without a value count as absent (RFC 6749 §3.1).
type Params = HashMap<String, String>;

/// Parses a query string or `application/x-www-form-urlencoded` body. A repeated parameter is
/// an error (RFC 6749 §3.1); the error carries its name.
fn parse_params(input: &[u8]) -> Result<Params, String> {
    let mut params = Params::new();
    for (key, value) in url::form_urlencoded::parse(input) {
        if value.is_empty() {
            continue;
        }
        match params.entry(key.into_owned()) {
            Entry::Occupied(entry) => return Err(entry.key().clone()),
            Entry::Vacant(entry) => {
                entry.insert(value.into_owned());
            }
        }
    }
    Ok(params)
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
fn is_valid_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is the unpadded base64url of a SHA-256 digest: exactly 43 characters.
fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    if !is_valid_code_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Parses `Authorization: Basic` client credentials. RFC 6749 §2.3.1: the id and secret are
/// form-urlencoded before they are joined with `:` and base64-encoded.
fn parse_basic_auth(value: &str) -> Option<(String, String)> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space); `None` on a
/// malformed escape or invalid UTF-8.
fn form_urldecode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality that also hides the lengths (both sides are hashed first).
fn ct_eq_str(a: &str, b: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(a.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(b.as_bytes()).into();
    a.ct_eq(&b).into()
}

/// The display name typed into the login form, trimmed; `Err` explains what is wrong.
fn validate_name(raw: Option<&str>) -> Result<String, &'static str> {
    let name = raw.unwrap_or("").trim();
    if name.is_empty() {
        return Err("Please type a name.");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("The name is too long (at most 64 characters).");
    }
    if name.chars().any(char::is_control) {
        return Err("The name must not contain control characters.");
    }
    Ok(name.to_owned())
}

/// The subject derived from a name: the same name is always the same user.
fn subject_for(name: &str) -> String {
    let digest = hex(&Sha256::digest(name.as_bytes()));
    format!("dev-{}", &digest[..16])
}

/// A lowercase ASCII handle for `preferred_username` and the e-mail local part; names with no
/// ASCII letters or digits fall back to the subject.
fn slug(name: &str, sub: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 32 {
            break;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        sub.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The granted scope: the requested scopes this IdP knows, in request order, without repeats.
fn granted_scope(requested: &str) -> String {
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split(' ') {
        if SUPPORTED_SCOPES.contains(&scope) && !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    granted.join(" ")
}

/// A fresh random value: `N` bytes from the OS CSPRNG, base64url.
fn random_token<const N: usize>() -> Result<String, RandomError> {
    let mut bytes = [0u8; N];
    fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape_html(text: &str) -> String {
    crate::response::escape(text)
}

// ---------------------------------------------------------------------------------------------
// Errors on the wire
// ---------------------------------------------------------------------------------------------

/// RFC 6749 §5.2 token-endpoint errors (also used by revocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OAuthError {
    InvalidRequest(&'static str),
    InvalidClient,
    InvalidGrant(&'static str),
    UnsupportedGrantType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthError {
    fn response(self) -> Response<Full<Bytes>> {
        let (status, error, description) = match self {
            OAuthError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            OAuthError::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            ),
            OAuthError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", d),
            OAuthError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only authorization_code and refresh_token are supported",
            ),
            OAuthError::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the requested scope exceeds the granted scope",
            ),
            OAuthError::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            ),
            OAuthError::TemporarilyUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "too many pending requests",
            ),
        };
        let mut response = json_response(
            status,
            &json!({"error": error, "error_description": description}),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="sealgate-dev-idp""#),
            );
        }
        response
    }
}

impl From<RandomError> for OAuthError {
    fn from(error: RandomError) -> Self {
        tracing::error!(%error, "development IdP: no randomness");
        OAuthError::ServerError
    }
}

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show a page, never redirect.
    Page(&'static str),
    /// Tell the (registered) client, RFC 6749 §4.1.2.1.
    Redirect {
        error: &'static str,
        description: &'static str,
        state: Option<String>,
    },
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

const PAGE_STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f1f5f9;color:#0f172a}\
main{width:min(28rem,92vw);background:#fff;border-radius:12px;padding:2rem;\
box-shadow:0 10px 30px rgba(15,23,42,.12)}\
.badge{display:block;margin:0 0 1.25rem;padding:.5rem .75rem;border-radius:8px;\
background:#fef3c7;color:#92400e;font-weight:600;font-size:.85rem;text-align:center}\
h1{font-size:1.4rem;margin:0 0 .75rem}\
p{margin:.5rem 0;color:#334155}\
code{background:#f1f5f9;padding:.1rem .3rem;border-radius:4px;font-size:.85em;word-break:break-all}\
label{display:block;margin:1.25rem 0 .35rem;font-weight:600}\
input[type=text]{width:100%;padding:.65rem .75rem;font:inherit;border:1px solid #cbd5e1;border-radius:8px}\
input[type=text]:focus{outline:2px solid #6366f1;border-color:transparent}\
.actions{display:flex;gap:.75rem;margin-top:1.25rem}\
button{flex:1;padding:.65rem;font:inherit;font-weight:600;border:0;border-radius:8px;cursor:pointer;\
background:#4f46e5;color:#fff}\
button.secondary{background:#e2e8f0;color:#0f172a}\
.error{padding:.5rem .75rem;border-radius:8px;background:#fee2e2;color:#991b1b}\
.hint{font-size:.85rem;color:#64748b}";

/// A complete HTML page; `body` must already be escaped.
fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} \u{2014} {LABEL}</title><style>{PAGE_STYLE}</style></head>\
<body><main><p class=\"badge\">{LABEL}</p>{body}</main></body></html>\n",
        title = escape_html(title),
    )
}

// ---------------------------------------------------------------------------------------------
// The IdP
// ---------------------------------------------------------------------------------------------

struct Idp {
    config: DevIdpConfig,
    issuer: String,
    key: SigningKey,
    discovery: Bytes,
    /// `Content-Security-Policy` of every HTML page.
    csp: HeaderValue,
    /// Verifies access tokens presented to `/userinfo`.
    access_validation: Validation,
    /// Verifies `id_token_hint` at `/end-session` (expired hints are fine).
    id_hint_validation: Validation,
    store: Mutex<Store>,
}

impl Idp {
    fn new(issuer: String, config: DevIdpConfig, key: SigningKey) -> Idp {
        let endpoint = |path: &str| format!("{issuer}{path}");
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": endpoint("/authorize"),
            "token_endpoint": endpoint("/token"),
            "userinfo_endpoint": endpoint("/userinfo"),
            "jwks_uri": endpoint("/jwks"),
            "revocation_endpoint": endpoint("/revoke"),
            "end_session_endpoint": endpoint("/end-session"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": SUPPORTED_SCOPES,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "authorization_response_iss_parameter_supported": true,
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash",
                "name", "preferred_username", "email"
            ],
        });
        // Serializing a `Value` cannot fail.
        let discovery = Bytes::from(serde_json::to_vec(&discovery).unwrap_or_default());

        // Browsers apply `form-action` to the redirect that answers the form, so the client's
        // origin must be allowed next to our own.
        let client_origin = Url::parse(&config.redirect_uri)
            .map(|u| u.origin().ascii_serialization())
            .ok()
            .filter(|origin| origin != "null" && !origin.contains(['\'', ';', ' ']))
            .unwrap_or_default();
        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {client_origin}; \
             base-uri 'none'; frame-ancestors 'none'"
        );
        let csp = HeaderValue::from_str(csp.trim())
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));

        let mut access_validation = Validation::new(Algorithm::RS256);
        access_validation.set_issuer(&[&issuer]);
        access_validation.set_audience(&[DEMO_API_AUDIENCE]);
        access_validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        access_validation.leeway = 5;

        let mut id_hint_validation = Validation::new(Algorithm::RS256);
        id_hint_validation.set_issuer(&[&issuer]);
        id_hint_validation.set_audience(&[&config.client_id]);
        id_hint_validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        id_hint_validation.validate_exp = false;

        Idp {
            config,
            issuer,
            key,
            discovery,
            csp,
            access_validation,
            id_hint_validation,
            store: Mutex::new(Store::default()),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for a development IdP; keep serving.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().unwrap_or("").as_bytes();
        let method = &parts.method;
        match parts.uri.path() {
            "/.well-known/openid-configuration" if method == Method::GET => {
                self.static_json(self.discovery.clone())
            }
            "/jwks" if method == Method::GET => self.static_json(self.key.jwks.clone()),
            "/authorize" if method == Method::GET => match parse_params(query) {
                Ok(params) => self.authorize_get(&params),
                Err(name) => self.error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("Parameter {name} is repeated."),
                ),
            },
            "/authorize" if method == Method::POST => match read_params(body).await {
                Ok(params) => self.authorize_post(&params, unix_now()),
                Err(error) => self.error_page(StatusCode::BAD_REQUEST, error.description()),
            },
            "/token" if method == Method::POST => {
                let params = match read_form(&parts.headers, body).await {
                    Ok(params) => params,
                    Err(error) => return error.response(),
                };
                match self.token(&parts.headers, &params, unix_now()) {
                    Ok(response) => response,
                    Err(error) => error.response(),
                }
            }
            "/userinfo" if method == Method::GET || method == Method::POST => {
                self.userinfo(&parts.headers)
            }
            "/revoke" if method == Method::POST => {
                let params = match read_form(&parts.headers, body).await {
                    Ok(params) => params,
                    Err(error) => return error.response(),
                };
                match self.revoke(&parts.headers, &params) {
                    Ok(response) => response,
                    Err(error) => error.response(),
                }
            }
            "/end-session" if method == Method::GET => match parse_params(query) {
                Ok(params) => self.end_session(&params),
                Err(name) => self.error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("Parameter {name} is repeated."),
                ),
            },
            "/end-session" if method == Method::POST => match read_params(body).await {
                Ok(params) => self.end_session(&params),
                Err(error) => self.error_page(StatusCode::BAD_REQUEST, error.description()),
            },
            "/.well-known/openid-configuration"
            | "/jwks"
            | "/authorize"
            | "/token"
            | "/userinfo"
            | "/revoke"
            | "/end-session" => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method_not_allowed"}),
            ),
            _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
        }
    }

    /// Discovery and JWKS: public, and revalidated on every use (the key changes per start).
    fn static_json(&self, body: Bytes) -> Response<Full<Bytes>> {
        let mut response = respond(StatusCode::OK, "application/json", Vec::new());
        *response.body_mut() = Full::new(body);
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.remove(header::PRAGMA);
        response
    }

    fn html(&self, status: StatusCode, page: String) -> Response<Full<Bytes>> {
        let mut response = respond(status, "text/html; charset=utf-8", page.into_bytes());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }

    fn error_page(&self, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
        let body = format!(
            "<h1>Request rejected</h1><p class=\"error\">{}</p>\
             <p class=\"hint\">The development IdP never redirects to an unregistered \
             <code>redirect_uri</code>. Registered: <code>{}</code></p>",
            escape_html(message),
            escape_html(&self.config.redirect_uri),
        );
        self.html(status, html_page("Request rejected", &body))
    }

    // --- /authorize ------------------------------------------------------------------------

    /// Validates an authorization request (the query of the GET, or the login form's hidden
    /// fields on the POST).
    fn check_authorize(&self, params: &Params) -> Result<AuthorizeRequest, AuthorizeError> {
        if param(params, "client_id") != Some(self.config.client_id.as_str()) {
            return Err(AuthorizeError::Page("Unknown client_id."));
        }
        if param(params, "redirect_uri") != Some(self.config.redirect_uri.as_str()) {
            return Err(AuthorizeError::Page(
                "The redirect_uri is missing or not registered for this client.",
            ));
        }
        // The client is known and the redirect is safe from here on.
        let state = param(params, "state")
            .filter(|s| s.len() <= MAX_PARAM_LEN)
            .map(str::to_owned);
        let fail = |error, description| AuthorizeError::Redirect {
            error,
            description,
            state: state.clone(),
        };
        if params.values().any(|v| v.len() > MAX_PARAM_LEN) {
            return Err(fail("invalid_request", "a parameter is too long"));
        }
        let Some(state_value) = state.clone() else {
            return Err(fail("invalid_request", "state is required"));
        };
        if param(params, "response_type") != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let requested_scope = param(params, "scope").unwrap_or("");
        if !requested_scope.split(' ').any(|s| s == "openid") {
            return Err(fail("invalid_scope", "the openid scope is required"));
        }
        if param(params, "code_challenge_method") != Some("S256") {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge_method must be S256",
            ));
        }
        let code_challenge = param(params, "code_challenge")
            .filter(|c| is_valid_s256_challenge(c))
            .ok_or_else(|| fail("invalid_request", "code_challenge is missing or malformed"))?;
        if param(params, "prompt").is_some_and(|p| p.split(' ').any(|v| v == "none")) {
            // There is no IdP browser session to reuse: every login asks for a name.
            return Err(fail("login_required", "the user must sign in"));
        }
        Ok(AuthorizeRequest {
            state: state_value,
            nonce: param(params, "nonce").map(str::to_owned),
            code_challenge: code_challenge.to_owned(),
            requested_scope: requested_scope.to_owned(),
        })
    }

    fn authorize_get(&self, params: &Params) -> Response<Full<Bytes>> {
        match self.check_authorize(params) {
            Ok(request) => self.login_page(StatusCode::OK, &request, "", None),
            Err(error) => self.authorize_error(error, StatusCode::FOUND),
        }
    }

    fn authorize_post(&self, params: &Params, now: u64) -> Response<Full<Bytes>> {
        let request = match self.check_authorize(params) {
            Ok(request) => request,
            Err(error) => return self.authorize_error(error, LOGIN_REDIRECT_STATUS),
        };
        if param(params, "action") == Some("deny") {
            return self.authorize_error(
                AuthorizeError::Redirect {
                    error: "access_denied",
                    description: "the user cancelled the sign-in",
                    state: Some(request.state),
                },
                LOGIN_REDIRECT_STATUS,
            );
        }
        let name = match validate_name(param(params, "name")) {
            Ok(name) => name,
            Err(problem) => {
                let typed = param(params, "name").unwrap_or("");
                let typed: String = typed.chars().take(MAX_NAME_CHARS * 2).collect();
                return self.login_page(StatusCode::BAD_REQUEST, &request, &typed, Some(problem));
            }
        };
        match self.issue_code(&request, name, now) {
            Ok(code) => self.redirect_to_client(
                LOGIN_REDIRECT_STATUS,
                &[("code", &code), ("state", &request.state)],
            ),
            Err(OAuthError::TemporarilyUnavailable) => self.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins in progress; try again in a minute.",
            ),
            Err(_) => server_error_page(),
        }
    }

    fn issue_code(
        &self,
        request: &AuthorizeRequest,
        name: String,
        now: u64,
    ) -> Result<String, OAuthError> {
        let code = random_token::<32>()?;
        let sid = random_token::<16>()?;
        let sub = subject_for(&name);
        tracing::info!(%sub, "development IdP: signed in");
        let grant = CodeGrant {
            login: Login {
                client_id: self.config.client_id.clone(),
                sub,
                name,
                sid,
                scope: granted_scope(&request.requested_scope),
                auth_time: now,
            },
            redirect_uri: self.config.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            expires_at: now + CODE_LIFETIME_SECS,
        };
        self.store()
            .insert_code(code.clone(), grant, now)
            .map_err(|StoreFull| OAuthError::TemporarilyUnavailable)?;
        Ok(code)
    }

    fn authorize_error(&self, error: AuthorizeError, status: StatusCode) -> Response<Full<Bytes>> {
        match error {
            AuthorizeError::Page(message) => self.error_page(StatusCode::BAD_REQUEST, message),
            AuthorizeError::Redirect {
                error,
                description,
                state,
            } => {
                let mut pairs = vec![("error", error), ("error_description", description)];
                if let Some(state) = &state {
                    pairs.push(("state", state));
                }
                self.redirect_to_client(status, &pairs)
            }
        }
    }

    /// Redirects to the registered `redirect_uri` with `pairs` and RFC 9207 `iss`.
    fn redirect_to_client(
        &self,
        status: StatusCode,
        pairs: &[(&str, &str)],
    ) -> Response<Full<Bytes>> {
        let Ok(mut url) = Url::parse(&self.config.redirect_uri) else {
            tracing::error!("development IdP: the registered redirect_uri is not a URL");
            return server_error_page();
        };
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                query.append_pair(name, value);
            }
            query.append_pair("iss", &self.issuer);
        }
        redirect(status, url.as_str())
    }

    fn login_page(
        &self,
        status: StatusCode,
        request: &AuthorizeRequest,
        typed_name: &str,
        problem: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let mut hidden = String::new();
        let mut field = |name: &str, value: &str| {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            ));
        };
        field("response_type", "code");
        field("client_id", &self.config.client_id);
        field("redirect_uri", &self.config.redirect_uri);
        field("scope", &request.requested_scope);
        field("state", &request.state);
        if let Some(nonce) = &request.nonce {
            field("nonce", nonce);
        }
        field("code_challenge", &request.code_challenge);
        field("code_challenge_method", "S256");
        let problem = problem
            .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(p)))
            .unwrap_or_default();
        let body = format!(
            "<h1>Sign in</h1>\
             <p>This development IdP signs in anyone: type any name. The same name is always \
             the same user (its <code>sub</code> is derived from the name).</p>\
             <p class=\"hint\">Signing in to <code>{client}</code>, returning to \
             <code>{redirect}</code>.</p>{problem}\
             <form method=\"post\" action=\"/authorize\">{hidden}\
             <label for=\"name\">Display name</label>\
             <input type=\"text\" id=\"name\" name=\"name\" maxlength=\"{max}\" required \
             autofocus autocomplete=\"username\" value=\"{typed}\" placeholder=\"Ada Lovelace\">\
             <div class=\"actions\">\
             <button type=\"submit\" name=\"action\" value=\"approve\">Sign in</button>\
             <button type=\"submit\" name=\"action\" value=\"deny\" class=\"secondary\" \
             formnovalidate>Cancel</button></div></form>",
            client = escape_html(&self.config.client_id),
            redirect = escape_html(&self.config.redirect_uri),
            max = MAX_NAME_CHARS,
            typed = escape_html(typed_name),
        );
        self.html(status, html_page("Sign in", &body))
    }

    // --- /token ----------------------------------------------------------------------------

    /// Authenticates the client by exactly one of `client_secret_basic` and
    /// `client_secret_post` (RFC 6749 §2.3.1); returns its `client_id`.
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<String, OAuthError> {
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        let basic = authorization.next();
        if authorization.next().is_some() {
            return Err(OAuthError::InvalidRequest(
                "more than one Authorization header",
            ));
        }
        let (client_id, secret) = match (basic, param(params, "client_secret")) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::InvalidRequest(
                    "use exactly one client authentication method",
                ));
            }
            (Some(value), None) => {
                let value = value.to_str().map_err(|_| OAuthError::InvalidClient)?;
                let (id, secret) = parse_basic_auth(value).ok_or(OAuthError::InvalidClient)?;
                if param(params, "client_id").is_some_and(|p| p != id) {
                    return Err(OAuthError::InvalidClient);
                }
                (id, secret)
            }
            (None, Some(secret)) => {
                let id = param(params, "client_id").ok_or(OAuthError::InvalidClient)?;
                (id.to_owned(), secret.to_owned())
            }
            (None, None) => return Err(OAuthError::InvalidClient),
        };
        let id_ok = ct_eq_str(&client_id, &self.config.client_id);
        let secret_ok = ct_eq_str(&secret, &self.config.client_secret);
        if id_ok & secret_ok {
            Ok(client_id)
        } else {
            tracing::info!("development IdP: client authentication failed");
            Err(OAuthError::InvalidClient)
        }
    }

    fn token(
        &self,
        headers: &HeaderMap,
        params: &Params,
        now: u64,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let client_id = self.authenticate_client(headers, params)?;
        match param(params, "grant_type") {
            Some("authorization_code") => self.code_grant(&client_id, params, now),
            Some("refresh_token") => self.refresh_grant(&client_id, params, now),
            Some(_) => Err(OAuthError::UnsupportedGrantType),
            None => Err(OAuthError::InvalidRequest("grant_type is required")),
        }
    }

    fn code_grant(
        &self,
        client_id: &str,
        params: &Params,
        now: u64,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let code = param(params, "code").ok_or(OAuthError::InvalidRequest("code is required"))?;
        let redirect_uri = param(params, "redirect_uri")
            .ok_or(OAuthError::InvalidRequest("redirect_uri is required"))?;
        let verifier = param(params, "code_verifier").ok_or(OAuthError::InvalidRequest(
            "code_verifier is required (PKCE)",
        ))?;
        let refresh_token = random_token::<32>()?;
        let grant = self
            .store()
            .redeem_code(code, client_id, redirect_uri, verifier, now)
            .map_err(|e| {
                tracing::info!(reason = e.description(), "development IdP: code refused");
                OAuthError::InvalidGrant(e.description())
            })?;
        let body = self.mint_tokens(&grant.login, grant.nonce.as_deref(), &refresh_token, now)?;
        self.store().insert_refresh(
            refresh_token,
            RefreshGrant {
                login: grant.login,
                expires_at: now + REFRESH_LIFETIME_SECS,
            },
            now,
        );
        Ok(json_response(StatusCode::OK, &body))
    }

    fn refresh_grant(
        &self,
        client_id: &str,
        params: &Params,
        now: u64,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let old = param(params, "refresh_token")
            .ok_or(OAuthError::InvalidRequest("refresh_token is required"))?;
        let new = random_token::<32>()?;
        let login = self
            .store()
            .rotate_refresh(old, client_id, new.clone(), now)
            .map_err(|e| {
                tracing::info!(reason = e.description(), "development IdP: refresh refused");
                OAuthError::InvalidGrant(e.description())
            })?;
        // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
        let mut login = login;
        if let Some(requested) = param(params, "scope") {
            let granted: Vec<&str> = login.scope.split(' ').collect();
            if !requested.split(' ').all(|s| granted.contains(&s)) {
                return Err(OAuthError::InvalidScope);
            }
            login.scope = granted_scope(requested);
        }
        // OIDC Core §12.2: same iss, sub, aud, auth_time; no nonce.
        let body = self.mint_tokens(&login, None, &new, now)?;
        Ok(json_response(StatusCode::OK, &body))
    }

    /// The token response for `login`: a fresh access token and ID token, and `refresh_token`.
    fn mint_tokens(
        &self,
        login: &Login,
        nonce: Option<&str>,
        refresh_token: &str,
        now: u64,
    ) -> Result<serde_json::Value, OAuthError> {
        let access_token = self.key.sign(
            "at+jwt",
            &AccessTokenClaims {
                iss: self.issuer.clone(),
                sub: login.sub.clone(),
                aud: DEMO_API_AUDIENCE.to_owned(),
                client_id: login.client_id.clone(),
                exp: now + TOKEN_LIFETIME_SECS,
                iat: now,
                jti: random_token::<16>()?,
                scope: login.scope.clone(),
                sid: login.sid.clone(),
                name: login.name.clone(),
            },
        )?;
        // OIDC Core §3.3.2.11: the left half of SHA-256 of the access token.
        let digest = Sha256::digest(access_token.as_bytes());
        let at_hash = URL_SAFE_NO_PAD.encode(&digest[..16]);
        let handle = slug(&login.name, &login.sub);
        let id_token = self.key.sign(
            "JWT",
            &IdTokenClaims {
                iss: &self.issuer,
                sub: &login.sub,
                aud: &login.client_id,
                exp: now + TOKEN_LIFETIME_SECS,
                iat: now,
                auth_time: login.auth_time,
                nonce,
                sid: &login.sid,
                at_hash: &at_hash,
                name: &login.name,
                preferred_username: &handle,
                email: &format!("{handle}@example.test"),
            },
        )?;
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECS,
            "refresh_token": refresh_token,
            "id_token": id_token,
            "scope": login.scope,
        }))
    }

    // --- /userinfo, /revoke, /end-session --------------------------------------------------

    fn userinfo(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let claims = bearer_token(headers).and_then(|token| {
            let data = jsonwebtoken::decode::<AccessTokenClaims>(
                token,
                &self.key.decoding,
                &self.access_validation,
            )
            .ok()?;
            is_access_token_type(data.header.typ.as_deref()).then_some(data.claims)
        });
        let Some(claims) = claims else {
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_token", "error_description": "a valid access token is required"}),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    r#"Bearer realm="sealgate-dev-idp", error="invalid_token""#,
                ),
            );
            return response;
        };
        let handle = slug(&claims.name, &claims.sub);
        json_response(
            StatusCode::OK,
            &json!({
                "sub": claims.sub,
                "name": claims.name,
                "preferred_username": handle,
                "email": format!("{handle}@example.test"),
            }),
        )
    }

    fn revoke(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let client_id = self.authenticate_client(headers, params)?;
        let token =
            param(params, "token").ok_or(OAuthError::InvalidRequest("token is required"))?;
        // Access tokens are self-contained JWTs and expire on their own; revoking one is
        // accepted and has no effect (RFC 7009 §2.2 allows that).
        self.store().revoke(token, &client_id);
        Ok(respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Vec::new(),
        ))
    }

    /// RP-initiated logout 1.0: a valid `id_token_hint` ends that IdP session (its refresh
    /// tokens stop working); the browser returns to the client only if the
    /// `post_logout_redirect_uri` is exactly the registered one.
    fn end_session(&self, params: &Params) -> Response<Full<Bytes>> {
        if let Some(hint) = param(params, "id_token_hint") {
            match jsonwebtoken::decode::<IdTokenHint>(
                hint,
                &self.key.decoding,
                &self.id_hint_validation,
            ) {
                Ok(data) => {
                    if let Some(sid) = data.claims.sid {
                        self.store().revoke_family(&sid);
                    }
                    tracing::info!(sub = %data.claims.sub, "development IdP: signed out");
                }
                Err(error) => tracing::info!(%error, "development IdP: id_token_hint ignored"),
            }
        }
        let client_ok = param(params, "client_id").is_none_or(|c| c == self.config.client_id);
        let target = param(params, "post_logout_redirect_uri");
        if client_ok
            && target == Some(self.config.post_logout_redirect_uri.as_str())
            && let Ok(mut url) = Url::parse(&self.config.post_logout_redirect_uri)
        {
            if let Some(state) = param(params, "state").filter(|s| s.len() <= MAX_PARAM_LEN) {
                url.query_pairs_mut().append_pair("state", state);
            }
            return redirect(StatusCode::FOUND, url.as_str());
        }
        let note = if target.is_some() {
            "<p class=\"hint\">The <code>post_logout_redirect_uri</code> is not registered, \
             so you stay here.</p>"
        } else {
            ""
        };
        let body = format!(
            "<h1>You are signed out</h1><p>Your session at the development IdP has ended.</p>{note}"
        );
        self.html(StatusCode::OK, html_page("Signed out", &body))
    }
}

/// A validated authorization request, carried through the login form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthorizeRequest {
    state: String,
    nonce: Option<String>,
    code_challenge: String,
    /// The scope as requested (granted scope is derived at login).
    requested_scope: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AccessTokenClaims {
    iss: String,
    sub: String,
    aud: String,
    client_id: String,
    exp: u64,
    iat: u64,
    jti: String,
    scope: String,
    sid: String,
    name: String,
}

#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    sid: &'a str,
    at_hash: &'a str,
    name: &'a str,
    preferred_username: &'a str,
    email: &'a str,
}

#[derive(Debug, Deserialize)]
struct IdTokenHint {
    sub: String,
    sid: Option<String>,
}

/// The token of the single `Authorization: Bearer` header, if there is exactly one.
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// RFC 9068 §4: an access token's `typ` is `at+jwt` (the `application/` prefix is optional).
pub(super) fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    })
}

fn server_error_page() -> Response<Full<Bytes>> {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/plain; charset=utf-8",
        b"internal error".to_vec(),
    )
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    Unreadable,
    RepeatedParameter,
}

impl BodyError {
    fn description(self) -> &'static str {
        match self {
            BodyError::TooLarge => "request body too large",
            BodyError::Unreadable => "request body could not be read",
            BodyError::RepeatedParameter => "a parameter is repeated",
        }
    }
}

/// Reads a form body (at most `BODY_LIMIT` bytes, within `BODY_READ_TIMEOUT`).
async fn read_params(body: Incoming) -> Result<Params, BodyError> {
    let collected =
        tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, BODY_LIMIT).collect())
            .await
            .map_err(|_| BodyError::Unreadable)?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(BodyError::TooLarge);
        }
        Err(_) => return Err(BodyError::Unreadable),
    };
    parse_params(&bytes).map_err(|_| BodyError::RepeatedParameter)
}

/// Reads the form of a token or revocation request, which must be
/// `application/x-www-form-urlencoded` (RFC 6749 §3.2).
async fn read_form(headers: &HeaderMap, body: Incoming) -> Result<Params, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    read_params(body)
        .await
        .map_err(|e| OAuthError::InvalidRequest(e.description()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;

    use super::*;

    /// One RSA key per test binary: key generation is slow in debug builds.
    fn test_key() -> SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate().expect("test key"))
            .clone()
    }

    /// The encoding and decoding halves of the shared test key (for the demo API's tests).
    pub(crate) fn test_keys() -> (EncodingKey, DecodingKey, String) {
        let key = test_key();
        (key.encoding, key.decoding, key.kid)
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn login(sid: &str) -> Login {
        Login {
            client_id: "spa".into(),
            sub: subject_for("Ada"),
            name: "Ada".into(),
            sid: sid.into(),
            scope: "openid profile".into(),
            auth_time: 1_000,
        }
    }

    fn code_grant(sid: &str, expires_at: u64) -> CodeGrant {
        CodeGrant {
            login: login(sid),
            redirect_uri: "http://rp/cb".into(),
            code_challenge: CHALLENGE.into(),
            nonce: Some("n".into()),
            expires_at,
        }
    }

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example_only() {
        assert!(pkce_s256_matches(VERIFIER, CHALLENGE));
        let mut wrong = VERIFIER.to_owned();
        wrong.replace_range(0..1, "e");
        assert!(!pkce_s256_matches(&wrong, CHALLENGE));
        // A "plain" verifier equal to the challenge is not accepted.
        assert!(!pkce_s256_matches(CHALLENGE, CHALLENGE));
        // Too short / invalid characters.
        assert!(!pkce_s256_matches("short", CHALLENGE));
        assert!(!is_valid_code_verifier(&"a".repeat(129)));
        assert!(!is_valid_code_verifier(&format!("{}+", "a".repeat(50))));
        assert!(is_valid_s256_challenge(CHALLENGE));
        assert!(!is_valid_s256_challenge("abc"));
    }

    #[test]
    fn basic_auth_is_form_urldecoded_after_base64() {
        // id "my client", secret "p:ss&w=rd%" encoded per RFC 6749 §2.3.1.
        let raw = "my+client:p%3Ass%26w%3Drd%25";
        let header = format!("Basic {}", STANDARD.encode(raw));
        assert_eq!(
            parse_basic_auth(&header),
            Some(("my client".into(), "p:ss&w=rd%".into()))
        );
        let lower = format!("basic {}", STANDARD.encode("a:b"));
        assert_eq!(parse_basic_auth(&lower), Some(("a".into(), "b".into())));
        assert_eq!(parse_basic_auth("Bearer abc"), None);
        assert_eq!(parse_basic_auth("Basic !!!"), None);
        assert_eq!(
            parse_basic_auth(&format!("Basic {}", STANDARD.encode("nocolon"))),
            None
        );
        assert_eq!(
            parse_basic_auth(&format!("Basic {}", STANDARD.encode("a:%zz"))),
            None
        );
    }

    #[test]
    fn repeated_parameters_are_rejected_and_empty_ones_ignored() {
        assert_eq!(parse_params(b"a=1&a=2"), Err("a".to_owned()));
        let params = parse_params(b"a=1&b=&c=x+y").unwrap();
        assert_eq!(param(&params, "a"), Some("1"));
        assert_eq!(param(&params, "b"), None);
        assert_eq!(param(&params, "c"), Some("x y"));
    }

    #[test]
    fn code_is_single_use_and_replay_revokes_the_family() {
        let mut store = Store::default();
        store
            .insert_code("c1".into(), code_grant("s1", 1_060), 1_000)
            .unwrap();
        let grant = store
            .redeem_code("c1", "spa", "http://rp/cb", VERIFIER, 1_010)
            .unwrap();
        assert_eq!(grant.login.sid, "s1");
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: grant.login,
                expires_at: 9_000,
            },
            1_010,
        );
        assert_eq!(
            store
                .redeem_code("c1", "spa", "http://rp/cb", VERIFIER, 1_011)
                .unwrap_err(),
            GrantError::Replayed
        );
        // The refresh token issued from the replayed code is gone.
        assert_eq!(
            store
                .rotate_refresh("r1", "spa", "r2".into(), 1_012)
                .unwrap_err(),
            GrantError::Unknown
        );
    }

    #[test]
    fn code_checks_expiry_client_redirect_and_verifier_and_is_consumed_by_failures() {
        let mut store = Store::default();
        for (code, sid) in [("a", "s1"), ("b", "s2"), ("c", "s3"), ("d", "s4")] {
            store
                .insert_code(code.into(), code_grant(sid, 1_060), 1_000)
                .unwrap();
        }
        let redeem = |store: &mut Store, code, client, uri, verifier, now| {
            store
                .redeem_code(code, client, uri, verifier, now)
                .unwrap_err()
        };
        assert_eq!(
            redeem(&mut store, "a", "spa", "http://rp/cb", VERIFIER, 1_060),
            GrantError::Expired
        );
        assert_eq!(
            redeem(&mut store, "b", "other", "http://rp/cb", VERIFIER, 1_001),
            GrantError::WrongClient
        );
        assert_eq!(
            redeem(&mut store, "c", "spa", "http://rp/x", VERIFIER, 1_001),
            GrantError::WrongRedirectUri
        );
        let mut wrong = VERIFIER.to_owned();
        wrong.replace_range(0..1, "e");
        assert_eq!(
            redeem(&mut store, "d", "spa", "http://rp/cb", &wrong, 1_001),
            GrantError::PkceMismatch
        );
        // A failed attempt consumed the code: the right verifier is now a replay.
        assert_eq!(
            redeem(&mut store, "d", "spa", "http://rp/cb", VERIFIER, 1_002),
            GrantError::Replayed
        );
        assert_eq!(
            redeem(&mut store, "zz", "spa", "http://rp/cb", VERIFIER, 1_002),
            GrantError::Unknown
        );
    }

    #[test]
    fn refresh_rotates_and_reuse_of_the_old_token_revokes_the_family() {
        let mut store = Store::default();
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: login("s1"),
                expires_at: 5_000,
            },
            1_000,
        );
        store.insert_refresh(
            "other".into(),
            RefreshGrant {
                login: login("s2"),
                expires_at: 5_000,
            },
            1_000,
        );
        let rotated = store
            .rotate_refresh("r1", "spa", "r2".into(), 1_100)
            .unwrap();
        assert_eq!(rotated, login("s1"));
        // The new token inherits the absolute expiry.
        assert_eq!(store.refresh["r2"].expires_at, 5_000);
        // Reusing r1 fails and kills r2 too; the other login is untouched.
        assert_eq!(
            store
                .rotate_refresh("r1", "spa", "r3".into(), 1_200)
                .unwrap_err(),
            GrantError::Replayed
        );
        assert_eq!(
            store
                .rotate_refresh("r2", "spa", "r4".into(), 1_200)
                .unwrap_err(),
            GrantError::Unknown
        );
        assert!(
            store
                .rotate_refresh("other", "spa", "o2".into(), 1_200)
                .is_ok()
        );
    }

    #[test]
    fn refresh_rejects_other_clients_and_expired_tokens() {
        let mut store = Store::default();
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: login("s1"),
                expires_at: 5_000,
            },
            1_000,
        );
        assert_eq!(
            store
                .rotate_refresh("r1", "evil", "x".into(), 1_100)
                .unwrap_err(),
            GrantError::WrongClient
        );
        // Not consumed by the wrong client.
        assert_eq!(
            store
                .rotate_refresh("r1", "spa", "r2".into(), 5_000)
                .unwrap_err(),
            GrantError::Expired
        );
    }

    #[test]
    fn revocation_and_end_session_kill_the_family() {
        let mut store = Store::default();
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: login("s1"),
                expires_at: 5_000,
            },
            1_000,
        );
        store
            .rotate_refresh("r1", "spa", "r2".into(), 1_001)
            .unwrap();
        store.revoke("unknown", "spa");
        store.revoke("r1", "spa"); // revoking the rotated token revokes its successor too
        assert!(store.refresh.is_empty());

        store.insert_refresh(
            "r5".into(),
            RefreshGrant {
                login: login("s5"),
                expires_at: 5_000,
            },
            1_000,
        );
        store
            .insert_code("c5".into(), code_grant("s5", 1_060), 1_000)
            .unwrap();
        store.revoke_family("s5");
        assert!(store.refresh.is_empty() && store.codes.is_empty());
    }

    #[test]
    fn maps_stay_bounded() {
        let mut store = Store::default();
        for i in 0..MAX_CODES {
            store
                .insert_code(format!("c{i}"), code_grant("s", 1_060), 1_000)
                .unwrap();
        }
        assert_eq!(
            store.insert_code("one-more".into(), code_grant("s", 1_060), 1_000),
            Err(StoreFull)
        );
        // Once they expire there is room again.
        assert!(
            store
                .insert_code("later".into(), code_grant("s", 2_000), 1_060)
                .is_ok()
        );
        assert_eq!(store.codes.len(), 1);

        for i in 0..MAX_REFRESH_TOKENS + 5 {
            let expires_at = 5_000 + u64::try_from(i).unwrap();
            store.insert_refresh(
                format!("r{i}"),
                RefreshGrant {
                    login: login("s"),
                    expires_at,
                },
                1_000,
            );
        }
        assert_eq!(store.refresh.len(), MAX_REFRESH_TOKENS);
        assert!(
            !store.refresh.contains_key("r0"),
            "the soonest-expiring entry is evicted"
        );
    }

    #[test]
    fn names_map_to_stable_subjects_and_slugs() {
        assert_eq!(subject_for("Ada"), subject_for("Ada"));
        assert_ne!(subject_for("Ada"), subject_for("ada"));
        assert_eq!(subject_for("Ada").len(), 4 + 16);
        assert_eq!(slug("Ada Lovelace!", "dev-x"), "ada-lovelace");
        assert_eq!(slug("山田", "dev-x"), "dev-x");
        assert_eq!(validate_name(Some("  Ada ")), Ok("Ada".to_owned()));
        assert!(validate_name(Some("   ")).is_err());
        assert!(validate_name(None).is_err());
        assert!(validate_name(Some(&"x".repeat(65))).is_err());
        assert!(validate_name(Some("a\u{0}b")).is_err());
        assert_eq!(granted_scope("openid openid email weird"), "openid email");
        assert_eq!(
            escape_html(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }

    // --- HTTP smoke test -----------------------------------------------------------------

    type TestClient = Client<HttpConnector, Full<Bytes>>;

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Reply {
        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
        fn text(&self) -> String {
            String::from_utf8(self.body.to_vec()).unwrap()
        }
        fn location(&self) -> Url {
            Url::parse(self.headers[header::LOCATION].to_str().unwrap()).unwrap()
        }
    }

    async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Reply {
        let response = client.request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    fn get(url: &str) -> Request<Full<Bytes>> {
        Request::get(url).body(Full::default()).unwrap()
    }

    fn post_form(url: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Request<Full<Bytes>> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut builder =
            Request::post(url).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder.body(Full::new(Bytes::from(body))).unwrap()
    }

    fn query(url: &Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    #[tokio::test]
    async fn full_flow_over_http() {
        let config = DevIdpConfig {
            client_id: "sealgate-demo".into(),
            client_secret: "s3cret:&=".into(),
            redirect_uri: "http://127.0.0.1:9/bff/callback".into(),
            post_logout_redirect_uri: "http://127.0.0.1:9/".into(),
        };
        let idp = DevIdp::start_with_key("127.0.0.1:0".parse().unwrap(), config, test_key())
            .await
            .unwrap();
        let issuer = idp.issuer();
        assert_eq!(issuer, format!("http://{}", idp.addr()));
        let client: TestClient = Client::builder(TokioExecutor::new()).build_http();

        // Discovery and JWKS.
        let discovery = send(
            &client,
            get(&format!("{issuer}/.well-known/openid-configuration")),
        )
        .await;
        assert_eq!(discovery.status, StatusCode::OK);
        let discovery = discovery.json();
        assert_eq!(discovery["issuer"], issuer.as_str());
        assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
        assert_eq!(
            discovery["authorization_response_iss_parameter_supported"],
            true
        );
        let jwks = send(&client, get(&format!("{issuer}/jwks"))).await.json();
        let jwk = &jwks["keys"][0];
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str()),
            (Some("RSA"), Some("RS256"))
        );
        let jwks_key = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();

        // An unregistered redirect_uri gets a page, not a redirect.
        let mut auth_url = Url::parse(&format!("{issuer}/authorize")).unwrap();
        let auth_params = [
            ("response_type", "code"),
            ("client_id", "sealgate-demo"),
            ("redirect_uri", "http://127.0.0.1:9/bff/callback"),
            ("scope", "openid profile email"),
            ("state", "st<ate>"),
            ("nonce", "n-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        let mut evil = auth_url.clone();
        evil.query_pairs_mut()
            .extend_pairs(auth_params.iter().map(|&(k, v)| {
                (
                    k,
                    if k == "redirect_uri" {
                        "http://evil/cb"
                    } else {
                        v
                    },
                )
            }));
        let page = send(&client, get(evil.as_str())).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.headers.get(header::LOCATION).is_none());

        // Missing PKCE: an error redirect to the registered client, with state and iss.
        let mut no_pkce = auth_url.clone();
        no_pkce.query_pairs_mut().extend_pairs(
            auth_params
                .iter()
                .filter(|(k, _)| !k.starts_with("code_challenge")),
        );
        let reply = send(&client, get(no_pkce.as_str())).await;
        assert_eq!(reply.status, StatusCode::FOUND);
        let location = reply.location();
        assert_eq!(
            query(&location, "error").as_deref(),
            Some("invalid_request")
        );
        assert_eq!(query(&location, "state").as_deref(), Some("st<ate>"));
        assert_eq!(query(&location, "iss").as_deref(), Some(issuer.as_str()));

        // The login page escapes what it echoes and carries the request in hidden fields.
        auth_url.query_pairs_mut().extend_pairs(auth_params);
        let page = send(&client, get(auth_url.as_str())).await;
        assert_eq!(page.status, StatusCode::OK);
        let html = page.text();
        assert!(html.contains("not for production"));
        assert!(html.contains("st&lt;ate&gt;") && !html.contains("st<ate>"));
        assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));

        // Submitting a name issues a code.
        let mut form: Vec<(&str, &str)> = auth_params.to_vec();
        form.push(("name", "Ada Lovelace"));
        let reply = send(
            &client,
            post_form(&format!("{issuer}/authorize"), None, &form),
        )
        .await;
        assert_eq!(reply.status, LOGIN_REDIRECT_STATUS);
        let location = reply.location();
        assert_eq!(location.path(), "/bff/callback");
        assert_eq!(query(&location, "state").as_deref(), Some("st<ate>"));
        assert_eq!(query(&location, "iss").as_deref(), Some(issuer.as_str()));
        let code = query(&location, "code").unwrap();

        // Token exchange with client_secret_basic (form-urlencoded before base64).
        let basic = format!("Basic {}", STANDARD.encode("sealgate-demo:s3cret%3A%26%3D"));
        let wrong = format!("Basic {}", STANDARD.encode("sealgate-demo:nope"));
        let exchange = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:9/bff/callback"),
            ("code_verifier", VERIFIER),
        ];
        let reply = send(
            &client,
            post_form(&format!("{issuer}/token"), Some(&wrong), &exchange),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json()["error"], "invalid_client");
        let reply = send(
            &client,
            post_form(&format!("{issuer}/token"), Some(&basic), &exchange),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
        let tokens = reply.json();
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 300);
        assert_eq!(tokens["scope"], "openid profile email");

        // The ID token verifies with the published key and carries the login.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&["sealgate-demo"]);
        let id = jsonwebtoken::decode::<serde_json::Value>(
            tokens["id_token"].as_str().unwrap(),
            &jwks_key,
            &validation,
        )
        .unwrap();
        assert_eq!(id.header.kid.as_deref(), jwk["kid"].as_str());
        assert_eq!(id.claims["nonce"], "n-1");
        assert_eq!(id.claims["sub"], subject_for("Ada Lovelace"));
        assert_eq!(id.claims["email"], "ada-lovelace@example.test");
        let sid = id.claims["sid"].as_str().unwrap().to_owned();

        // The code is single-use.
        let reply = send(
            &client,
            post_form(&format!("{issuer}/token"), Some(&basic), &exchange),
        )
        .await;
        assert_eq!(reply.json()["error"], "invalid_grant");

        // That replay revoked the family: the refresh token no longer works. Log in again.
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let post_auth = [
            ("client_id", "sealgate-demo"),
            ("client_secret", "s3cret:&="),
        ];
        let send_refresh = |token: &str| {
            let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
            form.extend(post_auth);
            post_form(&format!("{issuer}/token"), None, &form)
        };
        let reply = send(&client, send_refresh(refresh)).await;
        assert_eq!(reply.json()["error"], "invalid_grant");

        let reply = send(
            &client,
            post_form(&format!("{issuer}/authorize"), None, &form),
        )
        .await;
        let code = query(&reply.location(), "code").unwrap();
        let mut exchange = exchange.to_vec();
        exchange[1] = ("code", code.as_str());
        exchange.extend(post_auth);
        let tokens = send(
            &client,
            post_form(&format!("{issuer}/token"), None, &exchange),
        )
        .await
        .json();
        let access = tokens["access_token"].as_str().unwrap();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

        // Userinfo with the access token; not with the ID token.
        let userinfo = |token: &str| {
            Request::get(format!("{issuer}/userinfo"))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::default())
                .unwrap()
        };
        let reply = send(&client, userinfo(access)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["preferred_username"], "ada-lovelace");
        let reply = send(&client, userinfo(tokens["id_token"].as_str().unwrap())).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

        // Refresh rotates; the new ID token keeps sub and has no nonce.
        let reply = send(&client, send_refresh(&refresh)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let rotated = reply.json();
        let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(new_refresh, refresh);
        let id = jsonwebtoken::decode::<serde_json::Value>(
            rotated["id_token"].as_str().unwrap(),
            &jwks_key,
            &validation,
        )
        .unwrap();
        assert_eq!(id.claims["sub"], subject_for("Ada Lovelace"));
        assert!(id.claims.get("nonce").is_none());
        let sid2 = id.claims["sid"].as_str().unwrap().to_owned();
        assert_ne!(sid, sid2);

        // Revocation (always 200) ends the family.
        let reply = send(
            &client,
            post_form(
                &format!("{issuer}/revoke"),
                Some(&basic),
                &[("token", &new_refresh)],
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let reply = send(&client, send_refresh(&new_refresh)).await;
        assert_eq!(reply.json()["error"], "invalid_grant");

        // End session: registered URI redirects with state; anything else shows a page.
        let mut end = Url::parse(&format!("{issuer}/end-session")).unwrap();
        end.query_pairs_mut()
            .append_pair("id_token_hint", rotated["id_token"].as_str().unwrap())
            .append_pair("post_logout_redirect_uri", "http://127.0.0.1:9/")
            .append_pair("state", "bye");
        let reply = send(&client, get(end.as_str())).await;
        assert_eq!(reply.status, StatusCode::FOUND);
        assert_eq!(reply.location().as_str(), "http://127.0.0.1:9/?state=bye");
        let mut end = Url::parse(&format!("{issuer}/end-session")).unwrap();
        end.query_pairs_mut()
            .append_pair("post_logout_redirect_uri", "http://evil/");
        let reply = send(&client, get(end.as_str())).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.text().contains("You are signed out"));
    }
}
