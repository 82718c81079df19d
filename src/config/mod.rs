//! Configuration: TOML parsed once, at start-up, into typed [`Settings`].
//!
//! A key travels one way: the text is parsed once with its spans (`document.rs`), environment
//! overrides are applied to it (`env.rs`, which also resolves `env:NAME` and `file:PATH`
//! secrets), each table is deserialized into its raw struct (`raw.rs`, `deny_unknown_fields`),
//! and one conversion per section turns it into values that need no further checking: URLs
//! parsed, durations parsed (`"20m"`, `"8h"`), secrets resolved, keys decoded into a
//! [`KeyRing`]. Secrets are never accepted inline, so a config file can be committed or printed
//! without leaking anything.
//!
//! A conversion records every problem it finds with its key and place (the line, or the
//! overriding variable) and carries on, so one pass finds every problem, each once. Loading
//! stops at the first; [`check`] (`sealgate check-config`) reports them all.
//!
//! One file per section: `server.rs` (`[server]`, `[metrics]`, `[log]`), `oidc.rs`,
//! `session.rs`, `bff.rs` (`[bff]`, `[[routes]]`, with `route_rules.rs` for a route's step-up,
//! claim rules and identity headers), `static_files.rs` (`[static]`, the field
//! `static_files`, `static` being a Rust keyword), `revocation.rs` (`[revocation]`,
//! `[cluster]`).

use std::collections::HashMap;
use std::path::Path;

mod bff;
pub(crate) mod check;
mod client_auth;
mod cluster;
mod context;
mod document;
mod env;
mod files;
mod limits;
mod oidc;
mod problem;
mod raw;
mod request_params;
mod revocation;
mod route_rules;
mod route_tokens;
mod server;
mod session;
pub(crate) mod settings;
mod static_files;
mod values;

pub(crate) use cluster::host_port;
pub use env::SecretSource;
pub(crate) use env::{ENV_PREFIX, ProcessEnv};
pub use problem::ConfigError;
pub(crate) use problem::{Place, Problem};
pub(crate) use settings::{
    AssertionAudience, ClaimRule, ClaimValue, ClusterSettings, CookieForwarding, CsrfMode, Limit,
    LimitsSettings, LogFormat, OidcSettings, ParMode, Rate, RedisTls, RedisTopology, RouteRules,
    RouteSettings, RouteToken, ServerSettings, SigningAlgsKey, StaticSettings, StorePolicy,
    TlsSettings, TokenEndpointAuth, TokenPolicy, TrustedNet,
};
pub use settings::{LogSettings, Settings};

use context::Cx;
use env::Overrides;
use problem::Locator;

impl Settings {
    /// Reads and validates the file at `path`, resolving secrets from the process environment.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let overrides: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Self::from_toml_with_overrides(&text, &ProcessEnv, &overrides)
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and the problem.
    pub fn from_toml(text: &str, env: &dyn SecretSource) -> Result<Self, ConfigError> {
        Self::from_toml_with_overrides(text, env, &[])
    }

    /// Parses TOML text, applies environment overrides (`SEALGATE__SECTION__KEY=value`: the
    /// key path in upper case, joined by `__`, array elements by index; a value that parses as
    /// TOML is used as such, anything else as a string), and validates the result.
    ///
    /// # Errors
    /// The first problem found: a [`ConfigError`] naming the key (or the variable) and the
    /// problem.
    pub fn from_toml_with_overrides(
        text: &str,
        env: &dyn SecretSource,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        Self::validate(text, env, overrides).map_err(|problems| {
            problems.into_iter().next().map_or_else(
                || ConfigError::Parse("the configuration was refused".into()),
                |p| p.error,
            )
        })
    }

    /// Like [`Settings::from_toml_with_overrides`], but every problem, each once, with its
    /// place, in the order found. Syntax errors and overrides that cannot be applied stop the
    /// pass (the file's structure is not known past them); any other problem does not.
    ///
    /// # Errors
    /// Every problem found.
    pub fn validate(
        text: &str,
        env: &dyn SecretSource,
        overrides: &[(String, String)],
    ) -> Result<Self, Vec<Problem>> {
        read(text, env, overrides, false).0
    }

    /// Risky but valid choices, as `(key, why)`, for `sealgate check-config` and start-up logs.
    pub fn warnings(&self) -> Vec<(String, String)> {
        let mut w = Vec::new();
        let mut warn = |key: &str, why: &str| w.push((key.to_owned(), why.to_owned()));
        if self.revocation.journal.is_none() && self.cluster.is_none() {
            warn(
                "revocation.journal",
                "not set: a restart forgets every logout (set a journal path, or [cluster])",
            );
        }
        if let Some(c) = &self.cluster
            && c.on_store_unavailable == StorePolicy::Allow
        {
            warn(
                "cluster.on_store_unavailable",
                "\"allow\": while Redis is unreachable, a logout on another instance is not seen here",
            );
        }
        for (i, p) in self.providers.iter().enumerate() {
            let key = |name: &str| {
                if p.listed {
                    format!("providers[{i}].{name}")
                } else {
                    format!("oidc.{name}")
                }
            };
            match p.signing_algs_key {
                SigningAlgsKey::Legacy if p.id_token_signing_algs.len() > 1 => warn(
                    &key("id_token_signing_algs"),
                    "accepts several algorithms, though a client registers one: set \
                     id_token_signed_response_alg to the one your IdP signs with (default RS256)",
                ),
                SigningAlgsKey::Both => warn(
                    &key("id_token_signing_algs"),
                    "ignored: id_token_signed_response_alg is set and wins",
                ),
                _ => {}
            }
        }
        if self.session.revalidate_every.is_some() {
            for (i, p) in self.providers.iter().enumerate() {
                if p.scopes.iter().any(|s| s == "offline_access") {
                    continue;
                }
                let scopes = if p.listed {
                    format!("providers[{i}].scopes")
                } else {
                    "oidc.scopes".to_owned()
                };
                warn(
                    "session.revalidate_every",
                    &format!(
                        "needs refresh tokens, and {scopes} does not ask for \"offline_access\": if the IdP issues none, every session ends at this interval (users sign in again)"
                    ),
                );
            }
        }
        if self.metrics.on_main_listener() {
            warn(
                "metrics.listen",
                "not set: /metrics is served on the public listener (set a separate address or block it at the edge)",
            );
        }
        if self.server.tls.is_none() && self.server.public_url.scheme() == "http" {
            warn(
                "server.public_url",
                "http:// (loopback only): cookies are Secure, so only a browser's localhost exception makes this work",
            );
        }
        for r in &self.routes {
            if let RouteToken::Grant { resource, .. } = &r.route_token
                && r.token.reads_session()
                && let Some(p) = self
                    .providers
                    .iter()
                    .find(|p| !p.scopes.iter().any(|s| s == "offline_access"))
            {
                let name = if resource.is_some() {
                    "resource"
                } else {
                    "scopes"
                };
                warn(
                    &format!("{}.{name}", r.key),
                    &format!(
                        "the user's token for this route is minted with the session's refresh token, and provider {:?} does not ask for \"offline_access\": if the IdP issues none, the route answers 502",
                        p.name
                    ),
                );
            }
            if r.forward_cookies == CookieForwarding::All {
                warn(
                    &format!("{}.forward_cookies", r.key),
                    "\"all\": every browser cookie but sealgate's reaches this upstream",
                );
            }
            if r.token != TokenPolicy::None {
                continue;
            }
            for other in &self.routes {
                let shadows = other.prefix.len() < r.prefix.len()
                    && (other.prefix.is_empty()
                        || r.prefix.starts_with(&format!("{}/", other.prefix)));
                if shadows && other.token != TokenPolicy::None {
                    warn(
                        &format!("{}.prefix", r.key),
                        &format!(
                            "{:?} has token = \"none\" and takes its paths from {:?}, which attaches tokens",
                            r.prefix, other.prefix
                        ),
                    );
                }
            }
        }
        w
    }

    /// The first provider: the only one of a lone `[oidc]`, the default of `/bff/login`.
    pub fn oidc(&self) -> &OidcSettings {
        // Invariant: conversion never builds settings without a provider.
        &self.providers[0]
    }

    /// The redirect URI registered at `provider`: `public_url` + `bff.prefix` + `/callback`,
    /// then `/NAME` for a `[[providers]]` entry (each provider has its own: a code can only
    /// arrive at the provider that issued it, RFC 9700 4.4).
    pub fn redirect_uri(&self, provider: &OidcSettings) -> String {
        let origin = self.server.public_url.origin().ascii_serialization();
        let prefix = &self.bff.prefix;
        if provider.listed {
            format!("{origin}{prefix}/callback/{}", provider.name)
        } else {
            format!("{origin}{prefix}/callback")
        }
    }
}

/// One pass over `text`: the settings, or every problem; and where each key's value is.
/// `check_files`: also check the files `serve` will open (for `check-config`).
fn read(
    text: &str,
    env: &dyn SecretSource,
    overrides: &[(String, String)],
    check_files: bool,
) -> (Result<Settings, Vec<Problem>>, HashMap<String, Place>) {
    let overrides = Overrides::new(overrides);
    let locator = Locator::new(text, overrides.names());
    let mut cx = Cx::new(env, check_files, &locator);
    let (settings, places) = match document::read(text, &overrides, &mut cx) {
        Some(mut raw) => {
            let places = std::mem::take(&mut raw.places)
                .into_iter()
                .map(|(key, span)| (key, locator.place(&span)))
                .collect();
            (convert(raw, &mut cx), places)
        }
        None => (None, HashMap::new()),
    };
    let result = match settings {
        Some(settings) if cx.clean() => Ok(settings),
        _ => Err(cx.into_problems()),
    };
    (result, places)
}

/// One conversion per section, section by section. A conversion may return a value after recording
/// a problem (to check what depends on it); the settings exist only when none was recorded.
fn convert(raw: document::RawConfig, cx: &mut Cx<'_>) -> Option<Settings> {
    let max_header_bytes = raw.server.as_ref().map(server::max_header_bytes);
    let server = raw.server.and_then(|s| server::server(s, cx));
    let providers = oidc::providers(raw.oidc, raw.providers, raw.has_providers, cx);
    let session = raw
        .session
        .and_then(|s| session::session(s, max_header_bytes, cx));
    let bff = raw.bff.and_then(|b| bff::bff(b, cx));
    let bff_prefix = bff.as_ref().map(|b| b.prefix.as_str());
    let needs = route_rules::Needs {
        store_id_token: session.as_ref().map(|s| s.store_id_token),
        providers: providers.as_deref().unwrap_or_default(),
    };
    let routes = bff::routes(raw.routes, bff_prefix, &needs, cx);
    let revocation = raw.revocation.and_then(|r| revocation::revocation(r, cx));
    let cluster = raw.cluster.map(|c| cluster::cluster(c, cx));
    let static_files = raw
        .static_files
        .map(|s| static_files::static_files(s, &routes, cx));
    let metrics = raw.metrics.and_then(|m| server::metrics(m, cx));
    let log = raw.log.and_then(|l| server::log(l, cx));
    let limits = raw.limits.and_then(|l| limits::limits(l, cx));
    Some(Settings {
        server: server?,
        providers: providers?,
        session: session?,
        bff: bff?,
        routes,
        static_files: static_files.map_or(Some(None), |s| s.map(Some))?,
        revocation: revocation?,
        cluster: cluster.map_or(Some(None), |c| c.map(Some))?,
        metrics: metrics?,
        log: log?,
        limits: limits?,
    })
}

#[cfg(test)]
mod tests;
