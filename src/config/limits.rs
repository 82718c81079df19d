//! `[limits]` and a route's `limits`: request rates (`"60/min"`), trusted proxies.

use std::net::IpAddr;
use std::time::Duration;

use toml::Spanned;

use super::context::Cx;
use super::problem::invalid;
use super::raw::{RawLimit, RawLimits};
use super::settings::{Limit, LimitsSettings, Rate, TrustedNet, masked};

/// At most this many requests per period: a larger burst is no limit.
const MAX_COUNT: u32 = 1_000_000;

pub(super) fn limits(raw: RawLimits, cx: &mut Cx<'_>) -> Option<LimitsSettings> {
    let defaults = LimitsSettings::default();
    let mut nets = Some(Vec::new());
    for entry in raw.trusted_proxies.unwrap_or_default() {
        let net =
            trusted_net(entry.get_ref()).map_err(|why| invalid("limits.trusted_proxies", why));
        match (cx.ok(Some(entry.span()), net), nets.as_mut()) {
            (Some(n), Some(list)) => list.push(n),
            _ => nets = None,
        }
    }
    let max_clients = match raw.max_clients {
        Some(m) if *m.get_ref() == 0 => cx.refuse(
            Some(m.span()),
            invalid("limits.max_clients", "must be at least 1"),
        ),
        m => Some(m.map_or(defaults.max_clients, Spanned::into_inner)),
    };
    let mut endpoint = |name: &str, raw: Option<Spanned<RawLimit>>, sessions: bool| match raw {
        None => Some(Limit::default()),
        Some(l) => limit(&format!("limits.{name}"), l, sessions, cx),
    };
    let login = endpoint("login", raw.login, false);
    let callback = endpoint("callback", raw.callback, false);
    let backchannel_logout = endpoint("backchannel_logout", raw.backchannel_logout, false);
    let routes = endpoint("routes", raw.routes, true);
    Some(LimitsSettings {
        trusted_proxies: nets?,
        max_clients: max_clients?,
        login: login?,
        callback: callback?,
        backchannel_logout: backchannel_logout?,
        routes: routes?,
    })
}

/// One `{ per_address, per_session }` table at `key`; `per_session` only where there is a
/// session (`sessions`).
pub(super) fn limit(
    key: &str,
    raw: Spanned<RawLimit>,
    sessions: bool,
    cx: &mut Cx<'_>,
) -> Option<Limit> {
    let at = raw.span();
    let raw = raw.into_inner();
    let mut one = |name: &str, text: Option<Spanned<String>>| match text {
        None => Some(None),
        Some(t) => {
            let rate = rate(t.get_ref()).map_err(|why| invalid(&format!("{key}.{name}"), why));
            cx.ok(Some(t.span()), rate).map(Some)
        }
    };
    let per_address = one("per_address", raw.per_address);
    let per_session = if !sessions && raw.per_session.is_some() {
        let e = invalid(
            &format!("{key}.per_session"),
            "this endpoint has no session: use per_address",
        );
        cx.refuse(raw.per_session.as_ref().map(Spanned::span), e)
    } else {
        one("per_session", raw.per_session)
    };
    let limit = Limit {
        per_address: per_address?,
        per_session: per_session?,
    };
    if limit.per_address.is_none() && limit.per_session.is_none() {
        let e = invalid(key, "names no rate (per_address, per_session)");
        return cx.refuse(Some(at), e);
    }
    Some(limit)
}

/// `"N/s"`, `"N/min"` or `"N/h"`, N from 1 to a million.
pub(super) fn rate(text: &str) -> Result<Rate, String> {
    let form = || format!("{text:?} is not a rate like \"60/min\" (N/s, N/min or N/h)");
    let (count, unit) = text.split_once('/').ok_or_else(form)?;
    let count: u32 = count.trim().parse().map_err(|_| form())?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(form()),
    };
    if count == 0 || count > MAX_COUNT {
        return Err(format!("{text:?}: the count must be 1 to {MAX_COUNT}"));
    }
    Ok(Rate { count, period })
}

/// An address (`10.0.0.1`, `::1`) or a range (`10.0.0.0/8`, `fd00::/8`) without host bits.
pub(super) fn trusted_net(text: &str) -> Result<TrustedNet, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or range"))?;
    let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
    };
    let value = match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    if masked(value, prefix, bits) != value {
        return Err(format!("{text:?} has host bits set past its prefix length"));
    }
    Ok(TrustedNet { addr, prefix })
}
