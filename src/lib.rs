//! sealgate: a Backend-for-Frontend for single-page applications.
//!
//! The browser never holds a token: sealgate is the OpenID Connect confidential client, keeps
//! the tokens in an encrypted, chunked, `HttpOnly` cookie, and attaches them to the API calls it
//! proxies. There is no session database.
//!
//! # Architecture map
//!
//! Modules are listed from the entry point down; each one uses only modules listed below it.
//! `python3 .ci/modules.py` (run by CI) checks that no two file modules depend on each other,
//! directly or through others, counting `crate::`, `super::` and `self::` paths.
//!
//! **Serving a request** (a request travels one way: listener → router → endpoint or proxy):
//! - [`server`]: start-up ([`server::start`]: journal replay, discovery, shared state),
//!   `server::listener` (the accept loops, connection cap, header timeout, TLS handshake),
//!   `server::workers` (per-core threads, one single-threaded runtime each), `server::signals`.
//! - [`routes`]: the router ([`routes::handle`]: CORS, then by path), one file per BFF
//!   endpoint (`login`, `callback`, `user`, `logout`, `backchannel`), `health` (`/healthz`,
//!   `/readyz`, `/metrics`), `cors`.
//! - [`proxy`]: a proxied API call, top-down: `route` (match, upstream URL) → `authorize`
//!   (cookies and headers → anonymous, bearer token, re-sealed cookie, or refusal; the route's
//!   step-up, claim rules and identity headers from `rules`; a route's own token from
//!   `own_token`) → `forward`
//!   (rewrite headers, a DPoP proof for a bound token, stream upstream) → `filter` (the
//!   response); `websocket` tunnels.
//! - [`static_files`]: the SPA's own files, last in routing.
//! - [`app`]: the shared state ([`app::App`]) and the per-request session rules: open the
//!   cookie (through [`session_cache`]), expiry and renewal, the denylist, single-flight
//!   refresh, revocation, the cookies to set or clear.
//! - [`route_tokens`]: routes' own tokens (`resource`, `scopes`, `exchange`, `token =
//!   "client"`) in this instance's memory, single flight per (session, route); `lanes`: a
//!   session's refresh-token grants take turns, and the refresh tokens they replaced.
//! - [`upstream`]: pooled upstream HTTP clients, one set per thread, and the forwarding headers.
//! - [`error`]: the one place failures become responses (through [`response`]);
//!   [`request`]: what a handler knows besides the request (peer, request id), query helpers.
//!
//! **Below the request path** (no I/O except where named):
//! - [`cluster`]: several instances through Redis: `revocations` (keys with TTL, pub/sub,
//!   outbox, reload), `refresh_lock` (one refresh per cluster), `health` (the store-unavailable
//!   policy).
//! - [`oidc`]: the IdP: `discovery` (metadata, JWKS), `id_token` validation, `grants` (code,
//!   refresh, RFC 7009 revocation), `route_grants` (routes' tokens: refresh for a resource,
//!   RFC 8693 exchange, client credentials), `logout` (RP-initiated URLs), [`oidc::logout_token`]
//!   (back-channel logout tokens, pure), `http` (the outbound client: no redirects, timeouts),
//!   `error`. One JOSE stack: openidconnect's key set and signature checks for both kinds of
//!   token.
//! - [`revocation`]: the denylist every authenticated request is checked against (memory only,
//!   never evicting early) and [`revocation::journal`], the file that makes it survive a restart.
//! - [`csrf`]: the anti-forgery header (static or double-submit) and `Origin` checks.
//! - [`session_cache`]: recently opened sessions, by a keyed digest of their exact cookie.
//! - [`telemetry`] (logs, request ids), [`tls`] (the HTTPS listener's certificate, reloaded
//!   on SIGHUP).
//! - [`config`]: the TOML file → typed [`Settings`] once: `raw` (serde structs with spans),
//!   `document`, one conversion per section, `settings` (the types), `env` (overrides,
//!   secrets), `check` and `files` (`check-config`).
//! - [`seal`]: the sealed-cookie codec: key ring (`seal::keys`), XChaCha20-Poly1305 wire format
//!   and chunking, `Cookie` / `Set-Cookie` handling (`seal::jar`). Pure.
//! - [`session`]: the session contents and their compact binary encoding; [`token`]: OAuth
//!   tokens in their compact lossless form. Pure.
//! - Leaves: [`return_url`] and [`paths`] (return-URL and request-path validation, pure,
//!   fuzzed), [`oidc_params`] (the parameter names sealgate owns and the checks on the SPA's
//!   login parameters, pure), [`expiring`] (the bounded set of once-only keys: used login states, logout
//!   token `jti`s), [`outbound`] (TLS trust roots and error chains for every outbound client),
//!   [`metrics`] (Prometheus), [`secret`] (zeroized, redacted secrets; the OS CSPRNG),
//!   [`clock`], [`client_assertion`] (the `private_key_jwt` key, read from PEM at start-up,
//!   and the JWTs it signs with ring), [`dpop`] (sessions' DPoP keys, the proofs they sign
//!   with the same JWS builder, and the parsing of nonce answers; pure but for randomness).
//! - [`fuzzing`]: harness functions for the `fuzz/` targets (above everything it exercises),
//!   exported through [`internal`].
//!
//! The public API is the handful of items re-exported below; [`internal`] (hidden) holds what
//! the fuzz targets, benchmarks and test self-checks reach beneath it. The development IdP
//! used by `sealgate demo` is the separate crate `crates/devidp`, linked only into the binary.
//!
//! A request's cookie flows: `Cookie` header → [`seal::ChunkSet`] → [`seal::Codec::open`]
//! (authenticated decryption, expiry) → [`session::Session::decode`]. A response's cookie flows
//! back: [`session::Session::encode`] → [`seal::Codec::seal`] → [`seal::jar::set_cookies`].
//!
//! A back-channel logout flows: `POST` form → `routes::backchannel` (content type, 16 KiB
//! body limit, one `logout_token`) → [`oidc::Provider::validate_logout_token`] (keyless checks,
//! then the key, a JWKS refetch only for an unknown `kid`) → the replay set → [`app::App::revoke`]
//! (`iss`+`sid` or `iss`+`sub` with a not-before) → every later [`app::App::load_session`] of a
//! matching session is refused.
//!
//! A logout flows: `routes::logout` → [`app::App::revoke`] → [`revocation::Journal::record`]
//! (decide, append, `fsync`, then insert in memory) → every later
//! [`revocation::Denylist::is_revoked`] refuses the session. At start-up,
//! [`server::start`] → [`revocation::Journal::open`] (replay) →
//! [`revocation::Denylist::restore`]. Without a journal, [`revocation::Denylist::apply`]
//! records in memory only.
//!
//! ```
//! use sealgate::internal::{ChunkSet, Codec, CookieName, KeyRing, Purpose};
//!
//! let codec = Codec::new(KeyRing::from_bytes(&[[7; 32]])?, 4);
//! let name = CookieName::new("__Host-demo")?;
//! let sealed = codec.seal(Purpose::Session, &name, 2_000, b"payload")?;
//! let header = format!("{}={}", name.chunk(0), sealed.chunks[0]);
//! let set = ChunkSet::from_headers(&name, 4, [header.as_str()]);
//! assert_eq!(codec.open(Purpose::Session, &name, &set, 1_000)?.payload(), b"payload");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The public API is what this file re-exports; everything else is `pub(crate)` at most.
#![warn(unreachable_pub)]
// The map above links private modules: it is read in the source and in
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

mod app;
mod client_assertion;
mod clock;
mod cluster;
mod config;
mod csrf;
mod dpop;
mod error;
mod expiring;
mod fuzzing;
mod header_names;
mod limits;
mod metrics;
mod oidc;
mod oidc_params;
mod outbound;
mod paths;
mod proxy;
mod request;
mod response;
mod return_url;
mod revocation;
mod route_tokens;
mod routes;
mod seal;
mod secret;
mod server;
mod session;
mod session_cache;
mod static_files;
mod telemetry;
mod tls;
mod token;
mod upstream;

pub use clock::Clock;
pub use config::check::{Report as ConfigReport, check_file as check_config};
pub use config::{ConfigError, LogSettings, SecretSource, Settings, TelemetrySettings};
pub use seal::keys::generate_key_base64;
pub use server::{Options, Running, StartError, start};
pub use telemetry::init as init_logs;
pub use telemetry::{TraceError, Traces, init_with_traces};

/// Not a stable API: what the fuzz targets, the corpus replay test, the benchmarks and the
/// test suite's self-tests reach below the public surface (rustls' `internal` practice).
#[doc(hidden)]
pub mod internal {
    pub use crate::dpop::{DpopKey, TokenType};
    pub use crate::fuzzing::*;
    pub use crate::oidc::http::{HttpError, IdpHttpClient};
    pub use crate::proxy::headers::CLIENT_CLAIMS;
    pub use crate::revocation::{Denylist, Journal, Revocation, journal};
    pub use crate::seal::{ChunkSet, Codec, CookieName, KeyRing, Purpose};
    pub use crate::session::{Session, SessionDpop, SessionId};
    pub use crate::token::Token;
}
