//! Shared helpers for the integration tests: an in-process fake IdP, a cookie-keeping HTTP
//! client that behaves like a browser for redirects and cookies, and the sealgate harness.
#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod client_keys;
pub mod dpop;
pub mod guide;
pub mod idp;
pub mod lag;
pub mod otlp;
pub mod process;
pub mod raw;
pub mod redis;
pub mod redis_ops;
pub mod upstream;
