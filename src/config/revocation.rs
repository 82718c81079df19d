//! `[revocation]` and `[cluster]`: where revocations are kept, on one instance or several.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::context::Cx;
use super::env::resolve_secret;
use super::files;
use super::problem::{ConfigError, invalid};
use super::raw::{RawCluster, RawRevocation};
use super::settings::{ClusterSettings, RevocationSettings, StorePolicy};
use crate::secret::SecretString;

/// Beyond this, a new not-before would refuse logins elsewhere for minutes: fix the clocks.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

pub(super) fn revocation(rv: RawRevocation, cx: &mut Cx<'_>) -> Option<RevocationSettings> {
    let journal = match rv.journal {
        None => Some(None),
        Some(j) if j.get_ref().is_empty() => cx.refuse(
            Some(j.span()),
            invalid("revocation.journal", "must be a file path"),
        ),
        Some(j) => {
            let path = PathBuf::from(j.get_ref());
            if cx.check_files {
                let usable =
                    files::journal_path(&path).map_err(|e| invalid("revocation.journal", e));
                cx.ok(Some(j.span()), usable);
            }
            Some(Some(path))
        }
    };
    let capacity = match rv.capacity {
        Some(c) if *c.get_ref() == 0 => cx.refuse(
            Some(c.span()),
            invalid("revocation.capacity", "must be at least 1"),
        ),
        c => Some(c.map_or(1_000_000, |c| c.into_inner())),
    };
    let clock_skew = match cx.duration("revocation.clock_skew", rv.clock_skew.as_ref(), "1s") {
        Some(d) if d > MAX_CLOCK_SKEW => cx.refuse(
            rv.clock_skew.as_ref().map(toml::Spanned::span),
            invalid(
                "revocation.clock_skew",
                "must be at most 5m (synchronise the clocks instead)",
            ),
        ),
        d => d,
    };
    Some(RevocationSettings {
        journal: journal?,
        capacity: capacity?,
        clock_skew: clock_skew?,
    })
}

pub(super) fn cluster(c: RawCluster, cx: &mut Cx<'_>) -> Option<ClusterSettings> {
    let redis_url = cx.ok(
        Some(c.redis_url.span()),
        redis_url(c.redis_url.get_ref(), cx),
    );
    let on_store_unavailable = cx.keyword(
        "cluster.on_store_unavailable",
        c.on_store_unavailable.as_ref(),
        "refuse",
        &[
            ("refuse", StorePolicy::Refuse),
            ("allow", StorePolicy::Allow),
        ],
    );
    let key_prefix = c
        .key_prefix
        .as_ref()
        .map_or("sealgate", |p| p.get_ref().as_str());
    let key_prefix_ok = !key_prefix.is_empty()
        && key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !key_prefix_ok {
        cx.push(
            invalid(
                "cluster.key_prefix",
                "use ASCII letters, digits, '-', '_', '.', ':'",
            ),
            c.key_prefix.as_ref().map(toml::Spanned::span),
        );
    }
    Some(ClusterSettings {
        redis_url: redis_url?,
        on_store_unavailable: on_store_unavailable?,
        key_prefix: key_prefix.to_owned(),
    })
}

/// A `redis://` URL. One with a password is a secret: `env:`/`file:` only; one without may be
/// inline.
fn redis_url(text: &str, cx: &Cx<'_>) -> Result<SecretString, ConfigError> {
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
    let scheme_ok = Url::parse(url.expose())
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "redis" | "redis+unix"));
    if !scheme_ok {
        return Err(invalid(
            "cluster.redis_url",
            "must be a redis:// URL (TLS to Redis is not supported yet)",
        ));
    }
    Ok(url)
}
