//! The development OpenID Provider and demo API behind `sealgate demo`, and the protocol pieces
//! sealgate's test IdP shares with them.
//!
//! **NOT FOR PRODUCTION.** The IdP signs in anyone who types a name. This crate is not part of
//! sealgate's library: only the `sealgate demo` command and the tests depend on it, and it does
//! not depend on sealgate (the demo talks to sealgate through the TOML configuration it writes,
//! as a real deployment does).
//!
//! # Map
//!
//! - [`idp`]: the development IdP ([`DevIdp`]): discovery, JWKS, `/authorize` with a login
//!   form, `/token`, `/userinfo`, `/revoke`, `/end-session`; its grant bookkeeping is pure.
//! - [`api`]: the demo API, which echoes the claims of the bearer token it received.
//! - [`demo`]: everything `sealgate demo` needs besides sealgate: the IdP and API started, the
//!   page written into a fresh temporary directory, and sealgate's configuration as TOML.
//! - Shared with the test IdP in `tests/support/idp.rs`: [`keys`] (RSA keys as JWKs, RFC 7638
//!   thumbprints), [`jws`] (compact JWS signing), [`pkce`] (RFC 7636 S256), [`form`] (form
//!   and `client_secret_basic` parsing), [`http`] (one accept loop, response helpers).
//! - [`random`]: the OS CSPRNG (every code, token, secret and key comes from it).

pub mod api;
pub mod demo;
pub mod form;
mod html;
pub mod http;
pub mod idp;
pub mod jws;
pub mod keys;
pub mod pkce;
pub mod random;

pub use idp::{DevIdp, DevIdpConfig};
