//! sealgate's integration tests: one test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod corpus;
mod demo;
mod login;
mod proxy;
mod refresh;
mod server;
mod static_files;
mod support_selftest;
