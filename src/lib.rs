//! sealgate: a Backend-for-Frontend for single-page applications.
//!
//! The browser never holds a token: sealgate is the OpenID Connect confidential client, keeps
//! the tokens in an encrypted, chunked, `HttpOnly` cookie, and attaches them to the API calls it
//! proxies. There is no session database.
//!
//! # Architecture map
//!
//! - [`secret`]: newtypes for secret bytes and strings (zeroized, redacted), the OS CSPRNG.
//! - [`token`]: OAuth tokens in their compact lossless form (JWT segments decoded).
//! - [`session`]: the session contents and their compact binary encoding.
//! - [`seal`]: the sealed-cookie codec: key ring ([`seal::keys`]), XChaCha20-Poly1305 wire
//!   format and chunking ([`seal`]), `Cookie` / `Set-Cookie` handling ([`seal::jar`]).
//! - [`oidc`]: the IdP (discovery, login, ID token validation, refresh, RP-initiated logout
//!   URLs) and [`oidc::logout_token`], back-channel logout token validation (pure);
//!   [`expiring`]: the bounded set of once-only keys (used login states, logout token `jti`s).
//! - [`revocation`]: the denylist every authenticated request is checked against
//!   ([`revocation::Denylist`], memory only, never evicting early) and
//!   [`revocation::journal`], the append-only file that makes it survive a restart.
//! - [`app`]: shared state and the per-request session rules; [`routes`]: one file per
//!   endpoint (`login`, `callback`, `user`, `logout`, `backchannel`, `proxy`), failures turned
//!   into responses in one place ([`error`]).
//! - [`cluster`]: several instances through Redis: shared revocations (keys with TTL, pub/sub,
//!   reload after reconnect, an outbox) and one refresh per cluster; the store-unavailable policy.
//! - [`csrf`]: the anti-forgery header (static or double-submit) and `Origin` checks.
//! - [`metrics`]: Prometheus counters and histograms; [`telemetry`]: logs (text or JSON) and
//!   request ids; [`tls`]: the optional HTTPS listener's certificate, reloaded on SIGHUP.
//! - [`fuzzing`]: harness functions shared by the `fuzz/` targets and the corpus replay test.
//! - [`config`]: the TOML file parsed once into typed [`config::Settings`].
//! - [`server`] accepts connections and hands each request to [`routes::handle`], which routes
//!   it, in this order, to the BFF endpoints (one file each under [`routes`]), `/healthz`, the
//!   proxied APIs ([`routes::proxy`]), and last, with `[static]` configured, the SPA's own files
//!   ([`routes::static_files`]: index fallback for client-side routes, caching and security
//!   headers, path containment). Failures become responses in one place ([`error`]).
//!
//! A request's cookie flows: `Cookie` header → [`seal::ChunkSet`] → [`seal::Codec::open`]
//! (authenticated decryption, expiry) → [`session::Session::decode`]. A response's cookie flows
//! back: [`session::Session::encode`] → [`seal::Codec::seal`] → [`seal::jar::set_cookies`].
//! Everything here is pure (bytes and `now` in, values out); only nonces and ids come from
//! the OS.
//!
//! A back-channel logout flows: `POST` form → [`routes::backchannel`] (content type, 16 KiB
//! body limit, one `logout_token`) → [`oidc::Provider::validate_logout_token`] (keyless checks,
//! then the key, a JWKS refetch only for an unknown `kid`) → the replay cache → [`app::App::revoke`]
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

mod app;
mod clock;
mod cluster;
mod config;
mod csrf;
mod error;
mod expiring;
mod fuzzing;
mod metrics;
mod oidc;
mod outbound;
mod paths;
mod proxy;
mod request;
mod response;
mod return_url;
mod revocation;
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
pub use config::{ConfigError, LogSettings, SecretSource, Settings};
pub use seal::keys::generate_key_base64;
pub use server::{Options, Running, StartError, start};
pub use telemetry::init as init_logs;

/// Not a stable API: what the fuzz targets, the corpus replay test, the benchmarks and the
/// test suite's self-tests reach below the public surface (rustls' `internal` practice).
#[doc(hidden)]
pub mod internal {
    pub use crate::fuzzing::*;
    pub use crate::oidc::http::{HttpError, IdpHttpClient};
    pub use crate::revocation::{Denylist, Journal, Revocation, journal};
    pub use crate::seal::{ChunkSet, Codec, CookieName, KeyRing, Purpose};
    pub use crate::session::{Session, SessionId};
    pub use crate::token::Token;
}
