//! sealgate's integration tests: one test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod antiforgery;
mod backchannel;
mod cluster;
mod cluster_ops;
mod corpus;
mod demo;
mod dpop;
mod hardening;
mod interop_profiles;
mod journal;
mod limits;
mod login;
mod logs;
mod observability;
mod par;
mod params;
mod private_key_jwt;
mod profiles;
mod providers;
mod proxy;
mod refresh;
mod revalidate;
mod route_rules;
mod route_tokens;
mod server;
mod silent_login;
mod soak;
mod static_files;
mod streaming;
mod support_selftest;
mod tls;
mod traces;
mod websocket;
