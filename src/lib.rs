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
//! - [`revocation`]: the denylist every authenticated request is checked against
//!   ([`revocation::Denylist`], memory only, never evicting early) and
//!   [`revocation::journal`], the append-only file that makes it survive a restart.
//! - [`app`]: shared state and the per-request session plumbing ([`app::App::load_session`]
//!   applies lifetimes and the denylist; [`app::App::revoke`] records a revocation).
//! - [`server`]: start-up (journal replay, OIDC discovery, bind) and the listener; [`routes`]:
//!   one file per endpoint.
//! - [`fuzzing`]: harness functions shared by the `fuzz/` targets and the corpus replay test.
//!
//! A request's cookie flows: `Cookie` header → [`seal::ChunkSet`] → [`seal::Codec::open`]
//! (authenticated decryption, expiry) → [`session::Session::decode`]. A response's cookie flows
//! back: [`session::Session::encode`] → [`seal::Codec::seal`] → [`seal::jar::set_cookies`].
//! Everything here is pure (bytes and `now` in, values out); only nonces and ids come from
//! the OS.
//!
//! A logout flows: `routes::logout` → [`app::App::revoke`] → [`revocation::Journal::record`]
//! (decide, append, `fsync`, then insert in memory) → every later
//! [`revocation::Denylist::is_revoked`] refuses the session. At start-up,
//! [`server::start`] → [`revocation::Journal::open`] (replay) →
//! [`revocation::Denylist::restore`]. Without a journal, [`revocation::Denylist::apply`]
//! records in memory only.
//!
//! ```
//! use sealgate::seal::{ChunkSet, Codec, CookieName, KeyRing, Purpose};
//!
//! let codec = Codec::new(KeyRing::from_bytes(&[[7; 32]])?, 4);
//! let name = CookieName::new("__Host-demo")?;
//! let sealed = codec.seal(Purpose::Session, &name, 2_000, b"payload")?;
//! let header = format!("{}={}", name.chunk(0), sealed.chunks[0]);
//! let set = ChunkSet::from_headers(&name, 4, [header.as_str()]);
//! assert_eq!(codec.open(Purpose::Session, &name, &set, 1_000)?.payload(), b"payload");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod app;
pub mod clock;
pub mod config;
pub mod csrf;
pub mod demo;
pub mod error;
pub mod fuzzing;
pub mod oidc;
pub mod response;
pub mod return_url;
pub mod revocation;
pub mod routes;
pub mod seal;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod token;
