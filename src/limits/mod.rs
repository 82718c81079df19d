//! Request rate limits (`[limits]`): per client address and per session, separately for
//! `/bff/login`, `/bff/callback`, `/bff/backchannel-logout` and each proxied route.
//!
//! - **Algorithm**: GCRA, the token bucket kept as one "theoretical arrival time" per key: a
//!   rate of N per period lets a client send N requests at once, then one every period / N.
//!   A refused request costs nothing (it does not push the arrival time further).
//! - **Keys**: an IPv4 address; an IPv6 address by its /64 (one host is given a /64, so a
//!   client changing addresses inside it is still one client); a session by its id.
//! - **Client address**: the connection's peer, unless the peer is one of
//!   `[limits] trusted_proxies`: then the nearest address in `X-Forwarded-For` that is not a
//!   trusted proxy (read right to left; what is left of it was written by the client).
//! - **Bounded memory**: each limiter keeps at most `[limits] max_clients` keys, in 16 shards.
//!   A key whose bucket is full again is the same as no key, so a full shard first drops those
//!   (at most once a second); if it is still full, it drops an arbitrary key, whose client
//!   starts again with a full bucket. An address-spraying flood therefore costs bounded memory,
//!   and loosens the limit only for the clients it pushes out.
//! - **Per instance**: nothing is shared between instances; N instances behind a balancer allow
//!   N times the rate.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;

use crate::config::{Limit, LimitsSettings, Rate, RouteSettings, TrustedNet};
use crate::error::{Failure, Rejection};
use crate::metrics::{LimitedLabels, metrics};
use crate::session::SessionId;

const SHARDS: usize = 16;
/// How often a full shard may sweep its stale keys.
const SWEEP_EVERY_NANOS: u64 = 1_000_000_000;

/// What a limiter counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// An IPv4 address.
    V4(u32),
    /// The /64 of an IPv6 address.
    V6(u64),
    /// A session.
    Session([u8; 16]),
}

impl Key {
    /// The key of a client address (an IPv4-mapped IPv6 address is its IPv4 address).
    pub(crate) fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }

    /// The key of a session.
    pub(crate) fn session(id: &SessionId) -> Self {
        Self::Session(*id.as_bytes())
    }
}

/// One GCRA limiter over many keys, bounded.
pub(crate) struct Limiter {
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of now a key's arrival time may run: the burst.
    tolerance: u64,
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
}

struct Shard {
    /// Key → theoretical arrival time (nanoseconds since the limiter's epoch).
    arrivals: Mutex<HashMap<Key, u64>>,
    last_sweep: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("interval_ns", &self.interval)
            .field("tolerance_ns", &self.tolerance)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter for `rate`, keeping at most about `max_keys` keys.
    pub(crate) fn new(rate: Rate, max_keys: usize) -> Self {
        let period = u64::try_from(rate.period.as_nanos()).unwrap_or(u64::MAX);
        let count = u64::from(rate.count.max(1));
        let interval = (period / count).max(1);
        let shards = (0..SHARDS)
            .map(|_| Shard {
                arrivals: Mutex::new(HashMap::new()),
                last_sweep: AtomicU64::new(0),
            })
            .collect();
        Self {
            interval,
            // N at once: the Nth request of a burst arrives (N-1) intervals ahead of now.
            tolerance: interval.saturating_mul(count - 1),
            shards,
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Counts a request of `key` at `now` (nanoseconds since the limiter's epoch): `Ok`, or how
    /// long until one would be allowed.
    pub(crate) fn check(&self, key: Key, now: u64) -> Result<(), Duration> {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let shard = &self.shards[index];
        let mut arrivals = shard
            .arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let arrival = arrivals.get(&key).copied().unwrap_or(now).max(now);
        let earliest = arrival.saturating_sub(self.tolerance);
        if earliest > now {
            return Err(Duration::from_nanos(earliest - now));
        }
        if !arrivals.contains_key(&key) && arrivals.len() >= self.per_shard {
            make_room(&mut arrivals, self.per_shard, &shard.last_sweep, now);
        }
        arrivals.insert(key, arrival.saturating_add(self.interval));
        Ok(())
    }

    /// How many keys it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.arrivals.lock().map_or(0, |a| a.len()))
            .sum()
    }
}

/// Frees a place in a shard holding `cap` keys: its stale keys go (at most once a second), else
/// an arbitrary key.
fn make_room(arrivals: &mut HashMap<Key, u64>, cap: usize, last_sweep: &AtomicU64, now: u64) {
    let last = last_sweep.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= SWEEP_EVERY_NANOS || last == 0 {
        last_sweep.store(now.max(1), Ordering::Relaxed);
        // A key whose arrival time has passed has a full bucket: the same as no key.
        arrivals.retain(|_, arrival| *arrival > now);
    }
    let len = arrivals.len();
    if len < cap {
        return;
    }
    // The first key of the table's (randomly seeded) order: O(1), under the shard's lock, and
    // never the same client twice in a row (the evicted one is gone).
    if let Some(victim) = arrivals.keys().next().copied() {
        arrivals.remove(&victim);
    }
}

/// Whether `ip` is in one of `nets`.
fn trusted(nets: &[TrustedNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client's address: `peer`, or when `peer` is a trusted proxy, the nearest address of
/// `X-Forwarded-For` that is not (all the headers' entries, read right to left). An entry that
/// is not an address stops the walk: what is left of it cannot be trusted, so the last trusted
/// hop stands for the client.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, nets: &[TrustedNet]) -> IpAddr {
    if !trusted(nets, peer) {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded_ip(entry.trim()) else {
            return client;
        };
        client = ip;
        if !trusted(nets, ip) {
            return ip;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, an IPv4 address with a port, or a bracketed IPv6
/// address with or without a port.
pub(crate) fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Which endpoint a request is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Login,
    Callback,
    BackchannelLogout,
}

impl Endpoint {
    /// Its label in metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Callback => "callback",
            Self::BackchannelLogout => "backchannel_logout",
        }
    }
}

/// The limiters of one endpoint or route.
#[derive(Debug, Default)]
struct Pair {
    per_address: Option<Limiter>,
    per_session: Option<Limiter>,
}

impl Pair {
    fn new(limit: &Limit, max_keys: usize) -> Self {
        Self {
            per_address: limit.per_address.map(|r| Limiter::new(r, max_keys)),
            per_session: limit.per_session.map(|r| Limiter::new(r, max_keys)),
        }
    }
}

/// A refused request: what to tell the client and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limited {
    /// Whole seconds until a request would be allowed (`Retry-After`), at least 1.
    pub retry_after: u64,
    /// `"address"` or `"session"`.
    pub by: &'static str,
}

/// Every limiter of the instance.
#[derive(Debug)]
pub(crate) struct Limits {
    trusted_proxies: Vec<TrustedNet>,
    login: Pair,
    callback: Pair,
    backchannel_logout: Pair,
    /// By `RouteSettings::index`.
    routes: Vec<Pair>,
    epoch: Instant,
}

impl Limits {
    /// The limiters `settings` and the routes ask for (a route's own `limits`, else
    /// `[limits] routes`).
    pub(crate) fn new(settings: &LimitsSettings, routes: &[RouteSettings]) -> Self {
        let max = settings.max_clients;
        let slots = routes.iter().map(|r| r.index + 1).max().unwrap_or(0);
        let mut by_index: Vec<Pair> = (0..slots).map(|_| Pair::default()).collect();
        for r in routes {
            let limit = r.limits.as_ref().unwrap_or(&settings.routes);
            by_index[r.index] = Pair::new(limit, max);
        }
        Self {
            trusted_proxies: settings.trusted_proxies.clone(),
            login: Pair::new(&settings.login, max),
            callback: Pair::new(&settings.callback, max),
            backchannel_logout: Pair::new(&settings.backchannel_logout, max),
            routes: by_index,
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts a request to `endpoint` from `peer` (with `headers` for `X-Forwarded-For`).
    pub(crate) fn check_endpoint(
        &self,
        endpoint: Endpoint,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<(), Limited> {
        let pair = match endpoint {
            Endpoint::Login => &self.login,
            Endpoint::Callback => &self.callback,
            Endpoint::BackchannelLogout => &self.backchannel_logout,
        };
        self.check_address(pair, peer, headers)
    }

    /// Counts a request to `route` by its client address.
    pub(crate) fn check_route_address(
        &self,
        route: &RouteSettings,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<(), Limited> {
        match self.routes.get(route.index) {
            Some(pair) => self.check_address(pair, peer, headers),
            None => Ok(()),
        }
    }

    /// Counts a request to `route` by its session.
    pub(crate) fn check_route_session(
        &self,
        route: &RouteSettings,
        session: &SessionId,
    ) -> Result<(), Limited> {
        let Some(limiter) = self
            .routes
            .get(route.index)
            .and_then(|p| p.per_session.as_ref())
        else {
            return Ok(());
        };
        limiter
            .check(Key::session(session), self.now())
            .map_err(|wait| limited(wait, "session"))
    }

    fn check_address(&self, pair: &Pair, peer: IpAddr, headers: &HeaderMap) -> Result<(), Limited> {
        let Some(limiter) = &pair.per_address else {
            return Ok(());
        };
        let ip = client_address(peer, headers, &self.trusted_proxies);
        limiter
            .check(Key::address(ip), self.now())
            .map_err(|wait| limited(wait, "address"))
    }
}

impl Limited {
    /// The 429 for `endpoint` (`login`, … or a route prefix), counted in metrics.
    pub(crate) fn into_failure(self, endpoint: &str) -> Failure {
        metrics()
            .rate_limited
            .get_or_create(&LimitedLabels {
                endpoint: endpoint.to_owned(),
                by: self.by,
            })
            .inc();
        Failure::new(
            Rejection::TooManyRequests {
                retry_after: self.retry_after,
            },
            format!("{endpoint}: over the rate limit per {}", self.by),
        )
    }
}

fn limited(wait: Duration, by: &'static str) -> Limited {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Limited {
        retry_after: secs.max(1),
        by,
    }
}
