//! `[cluster]`: several instances sharing revocations and refreshes through Redis, as it is
//! operated: one server (`redis_url`), a primary found through Sentinel (`sentinels`), or a
//! Redis Cluster (`cluster_nodes`); TLS with the system's roots or a CA file, client
//! certificates, ACL users.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use url::Url;

use super::context::{Cx, span};
use super::env::resolve_secret;
use super::files;
use super::problem::{ConfigError, invalid};
use super::raw::{RawCluster, Text};
use super::settings::{ClusterSettings, StorePolicy};
use crate::secret::SecretString;

/// Most replicas `min_replicas` may ask for.
const MAX_MIN_REPLICAS: u32 = 32;

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum RedisTopology {
    /// One server: `redis://`, `rediss://` or `redis+unix://` (a secret when it has a password).
    Url(SecretString),
    /// The primary Sentinel names `master`, asked of `sentinels` (`host:port`).
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        /// The ACL user and password of the sentinels themselves (often none).
        username: Option<String>,
        password: Option<SecretString>,
    },
    /// A Redis Cluster, discovered from these seed nodes (`host:port`).
    Cluster { nodes: Vec<String> },
}

/// TLS to Redis: the server certificate is always verified, against the system's roots or,
/// with `ca_file`, against that CA only; optionally a client certificate (mutual TLS).
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    pub ca_file: Option<PathBuf>,
    /// `client_cert` and `client_key` (PEM files), both or neither.
    pub client: Option<(PathBuf, PathBuf)>,
}

pub(super) fn cluster(c: RawCluster, cx: &mut Cx<'_>) -> Option<ClusterSettings> {
    let on_store_unavailable = cx.keyword(
        "cluster.on_store_unavailable",
        c.on_store_unavailable.as_ref(),
        "refuse",
        &[
            ("refuse", StorePolicy::Refuse),
            ("allow", StorePolicy::Allow),
        ],
    );
    let key_prefix = key_prefix(c.key_prefix.as_ref(), cx);
    let (topology, url_tls, url_password) = topology(&c, cx)?;
    let tls = tls(&c, url_tls, cx);
    let username = c.username.as_ref().map(|u| u.get_ref().clone());
    let password = secret("cluster.password", c.password.as_ref(), cx);
    if let (Some(u), Some(None)) = (&c.username, &password) {
        cx.push(
            invalid("cluster.password", "required with cluster.username"),
            Some(u.span()),
        );
    }
    if url_password && (c.username.is_some() || c.password.is_some()) {
        let at = span(c.password.as_ref().or(c.username.as_ref()));
        let e = invalid("cluster.password", "the redis_url has credentials already");
        cx.push(e, at);
    }
    let min_replicas = match &c.min_replicas {
        Some(m) if *m.get_ref() > MAX_MIN_REPLICAS => cx.refuse(
            Some(m.span()),
            invalid(
                "cluster.min_replicas",
                format!("at most {MAX_MIN_REPLICAS}"),
            ),
        ),
        m => Some(m.as_ref().map(|m| *m.get_ref())),
    };
    Some(ClusterSettings {
        topology,
        tls: tls?,
        username,
        password: password?,
        min_replicas: min_replicas?,
        on_store_unavailable: on_store_unavailable?,
        key_prefix: key_prefix?,
    })
}

fn key_prefix(raw: Option<&Spanned<String>>, cx: &mut Cx<'_>) -> Option<String> {
    let prefix = raw.map_or("sealgate", |p| p.get_ref().as_str());
    let ok = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        let e = invalid(
            "cluster.key_prefix",
            "use ASCII letters, digits, '-', '_', '.', ':'",
        );
        return cx.refuse(span(raw), e);
    }
    Some(prefix.to_owned())
}

/// An optional secret: `Some(None)` when absent, `None` when refused.
fn secret(
    key: &str,
    raw: Option<&Spanned<String>>,
    cx: &mut Cx<'_>,
) -> Option<Option<SecretString>> {
    match raw {
        None => Some(None),
        Some(r) => {
            let resolved = resolve_secret(key, r.get_ref(), cx.env);
            cx.ok(Some(r.span()), resolved).map(Some)
        }
    }
}

/// The topology; with it, whether the URL asks for TLS and whether it has credentials.
fn topology(c: &RawCluster, cx: &mut Cx<'_>) -> Option<(RedisTopology, bool, bool)> {
    let given: Vec<(&str, Range<usize>)> = [
        ("redis_url", span(c.redis_url.as_ref())),
        ("sentinels", span(c.sentinels.as_ref())),
        ("cluster_nodes", span(c.cluster_nodes.as_ref())),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect();
    if given.len() != 1 {
        let at = given.get(1).map(|(_, s)| s.clone());
        let e = invalid(
            "cluster.redis_url",
            "set exactly one of redis_url, sentinels, cluster_nodes",
        );
        return cx.refuse(at, e);
    }
    let sentinel_only = [
        ("cluster.sentinel_master", &c.sentinel_master),
        ("cluster.sentinel_username", &c.sentinel_username),
        ("cluster.sentinel_password", &c.sentinel_password),
    ];
    if c.sentinels.is_none() {
        for (key, raw) in sentinel_only {
            if let Some(r) = raw {
                cx.push(invalid(key, "only with cluster.sentinels"), Some(r.span()));
            }
        }
    }
    if let Some(url) = &c.redis_url {
        let (url, tls, password) = cx.ok(Some(url.span()), redis_url(url.get_ref(), cx))?;
        return Some((RedisTopology::Url(url), tls, password));
    }
    if let Some(list) = &c.sentinels {
        let sentinels = addresses("cluster.sentinels", list, cx);
        let master = match &c.sentinel_master {
            Some(m) if !m.get_ref().is_empty() => Some(m.get_ref().clone()),
            m => cx.refuse(
                span(m.as_ref()).or(Some(list.span())),
                invalid("cluster.sentinel_master", "required with cluster.sentinels"),
            ),
        };
        let username = c.sentinel_username.as_ref().map(|u| u.get_ref().clone());
        let password = secret(
            "cluster.sentinel_password",
            c.sentinel_password.as_ref(),
            cx,
        );
        // A user without a password would be accepted and never used.
        if let (Some(u), Some(None)) = (&c.sentinel_username, &password) {
            cx.push(
                invalid(
                    "cluster.sentinel_password",
                    "required with cluster.sentinel_username",
                ),
                Some(u.span()),
            );
        }
        let topology = RedisTopology::Sentinel {
            sentinels: sentinels?,
            master: master?,
            username,
            password: password?,
        };
        return Some((topology, false, false));
    }
    let list = c.cluster_nodes.as_ref()?;
    let nodes = addresses("cluster.cluster_nodes", list, cx)?;
    Some((RedisTopology::Cluster { nodes }, false, false))
}

/// A non-empty list of `host:port` (`[v6]:port` for IPv6 addresses).
fn addresses(key: &str, list: &Spanned<Vec<String>>, cx: &mut Cx<'_>) -> Option<Vec<String>> {
    if list.get_ref().is_empty() {
        return cx.refuse(
            Some(list.span()),
            invalid(key, "list at least one host:port"),
        );
    }
    for a in list.get_ref() {
        if host_port(a).is_none() {
            let e = invalid(key, format!("{a:?} is not host:port"));
            return cx.refuse(Some(list.span()), e);
        }
    }
    Some(list.get_ref().clone())
}

/// `host:port` split, the brackets of an IPv6 host removed; `None` when malformed.
pub(crate) fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._:".contains(&b);
    (!host.is_empty() && host.bytes().all(plain)).then(|| (host.to_owned(), port))
}

/// A `redis://`, `rediss://` or `redis+unix://` URL; with it, whether it is `rediss://` and
/// whether it carries a password. One with a password is a secret: `env:`/`file:` only.
fn redis_url(text: &str, cx: &Cx<'_>) -> Result<(SecretString, bool, bool), ConfigError> {
    let url = if text.starts_with("env:") || text.starts_with("file:") {
        resolve_secret("cluster.redis_url", text, cx.env)?
    } else {
        let parsed = Url::parse(text)
            .map_err(|e| invalid("cluster.redis_url", format!("not a URL: {e}")))?;
        if parsed.password().is_some() {
            return Err(ConfigError::Secret {
                key: "cluster.redis_url".into(),
                problem: "a URL with a password must be given as \"env:NAME\" or \"file:PATH\""
                    .into(),
            });
        }
        SecretString::new(text.to_owned())
    };
    let parsed = Url::parse(url.expose()).ok();
    let Some(scheme) = parsed
        .as_ref()
        .map(Url::scheme)
        .filter(|s| matches!(*s, "redis" | "rediss" | "redis+unix"))
    else {
        return Err(invalid(
            "cluster.redis_url",
            "must be a redis://, rediss:// or redis+unix:// URL",
        ));
    };
    if parsed.as_ref().is_some_and(|u| u.fragment().is_some()) {
        // `#insecure` would turn certificate verification off: never.
        return Err(invalid(
            "cluster.redis_url",
            "a URL fragment is not allowed",
        ));
    }
    let tls = scheme == "rediss";
    let has_password = parsed.is_some_and(|u| u.password().is_some());
    Ok((url, tls, has_password))
}

/// The TLS settings: on with a `rediss://` URL or `tls = true`; the files only with TLS.
fn tls(c: &RawCluster, url_tls: bool, cx: &mut Cx<'_>) -> Option<Option<RedisTls>> {
    let tls = match (&c.tls, c.redis_url.is_some()) {
        (Some(t), true) if *t.get_ref() != url_tls => {
            let e = invalid(
                "cluster.tls",
                "with redis_url, TLS is chosen by the scheme (rediss://); remove tls",
            );
            return cx.refuse(Some(t.span()), e);
        }
        (Some(t), false) => *t.get_ref(),
        _ => url_tls,
    };
    let files: [(&str, &Text); 3] = [
        ("cluster.ca_file", &c.ca_file),
        ("cluster.client_cert", &c.client_cert),
        ("cluster.client_key", &c.client_key),
    ];
    let mut ok = true;
    for (key, raw) in files {
        let Some(r) = raw else { continue };
        if !tls {
            let e = invalid(key, "only with TLS (a rediss:// URL or tls = true)");
            cx.push(e, Some(r.span()));
            ok = false;
        } else if r.get_ref().is_empty() {
            cx.push(invalid(key, "must be a file path"), Some(r.span()));
            ok = false;
        } else if cx.check_files {
            let readable =
                files::readable_file(Path::new(r.get_ref())).map_err(|e| invalid(key, e));
            ok &= cx.ok(Some(r.span()), readable).is_some();
        }
    }
    let client = match (&c.client_cert, &c.client_key) {
        (Some(cert), Some(key)) => Some((cert.get_ref().into(), key.get_ref().into())),
        (None, None) => None,
        (Some(cert), None) => {
            let e = invalid("cluster.client_key", "missing (client_cert is set)");
            return cx.refuse(Some(cert.span()), e);
        }
        (None, Some(key)) => {
            let e = invalid("cluster.client_cert", "missing (client_key is set)");
            return cx.refuse(Some(key.span()), e);
        }
    };
    if !ok {
        return None;
    }
    Some(tls.then(|| RedisTls {
        ca_file: c.ca_file.as_ref().map(|f| f.get_ref().into()),
        client,
    }))
}
