//! `[session]`: the key ring, the cookie, and the session's lifetimes.

use std::time::Duration;

use toml::Spanned;

use super::context::{Cx, span};
use super::env::resolve_secret;
use super::problem::{ConfigError, invalid};
use super::raw::RawSession;
use super::settings::{MAX_COOKIE_NAME_LEN, SessionSettings};
use crate::seal::{CookieName, DEFAULT_MAX_CHUNKS, KeyError, KeyRing, MAX_COOKIE_BYTES};
use crate::secret::SecretString;

/// `max_header_bytes` is `server.max_header_bytes` when `[server]` could be read: a session's
/// cookies must fit in a request head.
pub(super) fn session(
    se: RawSession,
    max_header_bytes: Option<usize>,
    cx: &mut Cx<'_>,
) -> Option<SessionSettings> {
    let max_chunks = match &se.max_chunks {
        Some(m) if *m.get_ref() == 0 => cx.refuse(
            Some(m.span()),
            invalid("session.max_chunks", "must be at least 1"),
        ),
        m => Some(m.as_ref().map_or(DEFAULT_MAX_CHUNKS, |m| *m.get_ref())),
    };
    let keys = keys(&se, cx);
    let cookie_name = cookie_name(&se, cx);
    let idle_timeout = cx.duration("session.idle_timeout", se.idle_timeout.as_ref(), "20m");
    let absolute_timeout = cx.duration(
        "session.absolute_timeout",
        se.absolute_timeout.as_ref(),
        "8h",
    );
    let login_timeout = cx.duration("session.login_timeout", se.login_timeout.as_ref(), "10m");
    let open_cache = match &se.open_cache {
        Some(n) if *n.get_ref() > 1_000_000 => cx.refuse(
            Some(n.span()),
            invalid("session.open_cache", "at most 1000000"),
        ),
        n => Some(n.as_ref().map_or(1024, |n| *n.get_ref())),
    };
    let route_token_cache = match &se.route_token_cache {
        Some(n) if *n.get_ref() > 1_000_000 => cx.refuse(
            Some(n.span()),
            invalid("session.route_token_cache", "at most 1000000"),
        ),
        n => Some(n.as_ref().map_or(4096, |n| *n.get_ref())),
    };
    let refresh_before = cx.duration("session.refresh_before", se.refresh_before.as_ref(), "30s");
    let refresh_grace = cx.duration("session.refresh_grace", se.refresh_grace.as_ref(), "30s");
    let revalidate_every = revalidate_every(&se, absolute_timeout, refresh_grace, cx);
    if let (Some(chunks), Some(max_header_bytes)) = (max_chunks, max_header_bytes) {
        let budget = usize::from(chunks) * MAX_COOKIE_BYTES + 1024;
        if budget > max_header_bytes {
            let e = invalid(
                "session.max_chunks",
                format!(
                    "{chunks} chunks need request heads of {budget} bytes, more than server.max_header_bytes ({max_header_bytes}): browsers would get 431 after login"
                ),
            );
            cx.push(e, span(se.max_chunks.as_ref()));
        }
    }
    if let (Some(idle), Some(absolute)) = (idle_timeout, absolute_timeout)
        && idle > absolute
    {
        let e = invalid(
            "session.idle_timeout",
            "must not exceed session.absolute_timeout",
        );
        let at = span(se.idle_timeout.as_ref()).or_else(|| span(se.absolute_timeout.as_ref()));
        cx.push(e, at);
    }
    Some(SessionSettings {
        keys: keys?,
        cookie_name: cookie_name?,
        idle_timeout: idle_timeout?,
        absolute_timeout: absolute_timeout?,
        login_timeout: login_timeout?,
        max_chunks: max_chunks?,
        store_id_token: se.store_id_token.unwrap_or(true),
        max_pending_logins: se.max_pending_logins.unwrap_or(5).clamp(1, 32),
        open_cache: open_cache?,
        refresh_before: refresh_before?,
        refresh_grace: refresh_grace?,
        revalidate_every: revalidate_every?,
        route_token_cache: route_token_cache?,
    })
}

/// The shortest `revalidate_every`: each revalidation is a token-endpoint call per session.
const MIN_REVALIDATE_EVERY: Duration = Duration::from_secs(60);

/// `revalidate_every`: `Some(None)` when not set (off); at least a minute, longer than
/// `refresh_grace` (a refresh's result is reused that long, so a shorter interval would not be
/// kept) and shorter than `absolute_timeout` (else it never comes).
fn revalidate_every(
    se: &RawSession,
    absolute_timeout: Option<Duration>,
    refresh_grace: Option<Duration>,
    cx: &mut Cx<'_>,
) -> Option<Option<Duration>> {
    const KEY: &str = "session.revalidate_every";
    let Some(raw) = se.revalidate_every.as_ref() else {
        return Some(None);
    };
    let every = cx.duration(KEY, Some(raw), "")?;
    let problem = if every < MIN_REVALIDATE_EVERY {
        Some("must be at least \"1m\"".to_owned())
    } else if absolute_timeout.is_some_and(|a| every >= a) {
        Some("must be shorter than session.absolute_timeout".to_owned())
    } else {
        refresh_grace.filter(|g| every <= *g).map(|grace| {
            format!(
                "must be longer than session.refresh_grace ({}s)",
                grace.as_secs()
            )
        })
    };
    match problem {
        Some(why) => cx.refuse(Some(raw.span()), invalid(KEY, why)),
        None => Some(Some(every)),
    }
}

/// The key ring: every reference resolved (each problem at its own key), then decoded.
fn keys(se: &RawSession, cx: &mut Cx<'_>) -> Option<KeyRing> {
    let specs = se.keys.get_ref();
    let mut texts: Vec<SecretString> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let key = format!("session.keys[{i}]");
        if let Some(text) = cx.ok(
            Some(spec.span()),
            resolve_secret(&key, spec.get_ref(), cx.env),
        ) {
            texts.push(text);
        }
    }
    if texts.len() < specs.len() {
        // A key that could not be read is reported; decoding the others would only say the
        // ring is short.
        return None;
    }
    let exposed: Vec<&str> = texts.iter().map(SecretString::expose).collect();
    KeyRing::from_base64(&exposed)
        .map_err(|e| {
            let index = match &e {
                KeyError::NotBase64 { index }
                | KeyError::WrongLength { index, .. }
                | KeyError::Duplicate { index } => Some(*index),
                KeyError::Empty => None,
            };
            // The 1-based index names the key; its own line says which one in a long list.
            let at = index
                .and_then(|i| specs.get(i.checked_sub(1)?))
                .map_or_else(|| se.keys.span(), Spanned::span);
            cx.push(ConfigError::Key(e), Some(at));
        })
        .ok()
}

/// The cookie's base name: valid (`__Host-…`) and short enough for the login cookies derived
/// from it.
fn cookie_name(se: &RawSession, cx: &mut Cx<'_>) -> Option<CookieName> {
    let at = span(se.cookie_name.as_ref());
    let text = se
        .cookie_name
        .as_ref()
        .map_or("__Host-sealgate", |n| n.get_ref().as_str());
    let name = cx.ok(at.clone(), CookieName::new(text).map_err(ConfigError::from))?;
    if name.as_str().len() > MAX_COOKIE_NAME_LEN {
        let e = invalid(
            "session.cookie_name",
            format!(
                "at most {MAX_COOKIE_NAME_LEN} characters (login cookies append \"-login-\" and 16 hex digits)"
            ),
        );
        return cx.refuse(at, e);
    }
    Some(name)
}
