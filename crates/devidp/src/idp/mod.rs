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
//! Layout: [`DevIdp::start`] binds and spawns the server ([`crate::http::serve`], shared with
//! the demo API); `Idp::handle` (here) routes a request to one handler per endpoint:
//! `authorize` (the login form), `token` (client authentication, grants, minting),
//! `userinfo`, `logout` (revocation and end-session). The grant bookkeeping lives in `store`,
//! which takes `now` and fresh tokens as arguments so it is tested without HTTP; `users` turns
//! a typed name into a subject.

mod authorize;
mod logout;
mod store;
mod token;
mod userinfo;
mod users;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;
use tokio::net::TcpListener;
use url::Url;

use crate::form::parse_params;
use crate::html::{escape_html, html_page};
use crate::http::{Limits, json_response, respond, serve};
use crate::keys::RsaKey;
use store::Store;
use token::{read_form, read_params};

/// The `aud` of every access token this IdP issues; the demo API accepts only this audience.
pub const DEMO_API_AUDIENCE: &str = "demo-api";

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
        let key = tokio::task::spawn_blocking(|| RsaKey::generate(RSA_BITS))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        Self::start_with_key(addr, config, key).await
    }

    async fn start_with_key(
        addr: SocketAddr,
        config: DevIdpConfig,
        key: RsaKey,
    ) -> io::Result<DevIdp> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let decoding_key = key.decoding().clone();
        let idp = Arc::new(Idp::new(issuer.clone(), config, key));
        serve(listener, "dev-idp", Limits::DEFAULT, move |req| {
            Arc::clone(&idp).handle(req)
        });
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

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 9068 §4: an access token's `typ` is `at+jwt` (the `application/` prefix is optional).
pub(crate) fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// One RSA key per test binary: key generation is slow in debug builds.
#[cfg(test)]
pub(crate) fn test_key() -> RsaKey {
    static KEY: std::sync::OnceLock<RsaKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| RsaKey::generate(RSA_BITS).expect("test key"))
        .clone()
}

struct Idp {
    config: DevIdpConfig,
    issuer: String,
    key: RsaKey,
    discovery: Bytes,
    /// The JWK set document, serialized once.
    jwks: Bytes,
    /// `Content-Security-Policy` of every HTML page.
    csp: HeaderValue,
    /// Verifies access tokens presented to `/userinfo`.
    access_validation: Validation,
    /// Verifies `id_token_hint` at `/end-session` (expired hints are fine).
    id_hint_validation: Validation,
    store: Mutex<Store>,
}

impl Idp {
    fn new(issuer: String, config: DevIdpConfig, key: RsaKey) -> Idp {
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
        let jwks = Bytes::from(serde_json::to_vec(&key.jwks()).unwrap_or_default());

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
            jwks,
            csp,
            access_validation,
            id_hint_validation,
            store: Mutex::new(Store::default()),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
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
            "/jwks" if method == Method::GET => self.static_json(self.jwks.clone()),
            "/authorize" if method == Method::GET => match parse_params(query) {
                Ok(params) => self.authorize_get(&params),
                Err(name) => self.repeated(&name),
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
                Err(name) => self.repeated(&name),
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

    /// A query with a repeated parameter (RFC 6749 §3.1).
    fn repeated(&self, name: &str) -> Response<Full<Bytes>> {
        self.error_page(
            StatusCode::BAD_REQUEST,
            &format!("Parameter {name} is repeated."),
        )
    }
}
