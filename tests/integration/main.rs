//! sealgate's integration tests: one test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod antiforgery;
mod corpus;
mod demo;
mod hardening;
mod journal;
mod login;
mod proxy;
mod refresh;
mod server;
mod streaming;
mod support_selftest;
mod websocket;
