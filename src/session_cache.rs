//! Opened sessions, remembered by the exact cookie text they were opened from.
//!
//! Opening a session cookie (base64, XChaCha20-Poly1305 over a few kilobytes, decoding, and
//! restoring the access token's issued text for the `Authorization` header) is most of what a
//! proxied request costs. A browser sends the same cookie with every request until it changes,
//! so an instance keeps the result of recent openings together with the text of every chunk
//! opening read (chunks `0..count`, the count the value declares).
//!
//! A lookup finds the entry by the first [`LOOKUP_LEN`] characters of chunk 0 (the clear header
//! and the random 24-byte nonce, unique per sealing), then compares every chunk it holds with the
//! request's in constant time (`constant_time_eq`; the lengths, which the wire shows anyway,
//! first). An earlier design hashed every chunk with keyed BLAKE3 instead: on a 6.4 KB
//! two-chunk cookie that was 19% of a proxied request's CPU (`perf`, proxy benchmark), where
//! the comparison costs about a tenth of it. The price is memory: an entry now holds the
//! cookie's text beside the session, about twice what it held (see `[session] open_cache`).
//!
//! What a hit means, and why it is safe:
//! - Every byte opening reads is compared, so a hit means these exact bytes were opened
//!   successfully by this process before; opening is deterministic (fixed keys), so the cached
//!   result is what opening would give now. Sets with a duplicate chunk index are never looked
//!   up (opening refuses them), and chunks opening ignores are not compared, so they cannot
//!   turn one session into many entries.
//! - Only what does not depend on the time is cached. The cookie's sealed expiry is checked
//!   again on every hit, and so are the session's idle and absolute expiry, the revocation
//!   denylist and the cluster state: a cached session is never extended or un-revoked.
//! - Only sessions that passed every check when first opened are cached; a rejected cookie
//!   costs the full opening every time, so garbage cannot fill the cache. A hit that is then
//!   refused (revoked, expired) removes the entry. A cookie that shares an entry's lookup
//!   prefix but not its bytes is a miss and leaves the entry alone.
//! - Bounded (`[session] open_cache` entries, 0 turns it off): when full, an arbitrary entry
//!   of the shard goes. Evicted sessions are zeroized on drop like any other; the cache holds
//!   tokens this process already had in memory for the same requests, for a little longer, and
//!   cookie text the browser sends with every request.
//! - Timing: a hit is faster than a miss, which tells an observer only whether the exact bytes
//!   they sent were recently sent, i.e. nothing they did not already hold. The comparison
//!   takes the same time wherever two chunks of equal length differ.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderValue;
use zeroize::Zeroizing;

use crate::seal::jar::ChunkSet;
use crate::session::Session;

const SHARDS: usize = 16;
/// Characters of chunk 0 an entry is found by: the base64 of the three header bytes and the
/// 24-byte nonce (27 bytes, 36 characters).
pub(crate) const LOOKUP_LEN: usize = 36;

/// A session as opened from one cookie, without what depends on the time.
pub(crate) struct Opened {
    /// The decoded session, before any renewal.
    pub session: Arc<Session>,
    /// The sealed expiry of the cookie (Unix seconds): a hit at or after it is a miss.
    pub cookie_expires_at: i64,
    /// Whether the cookie was sealed with the current key.
    pub current_key: bool,
    /// `Bearer <access token>`, marked sensitive; `None` if the token is not a header value.
    pub bearer: Option<HeaderValue>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("session", &self.session.id)
            .field("cookie_expires_at", &self.cookie_expires_at)
            .finish_non_exhaustive()
    }
}

/// The `Authorization` value for `session`, marked sensitive (never logged by hyper).
pub(crate) fn bearer(session: &Session) -> Option<HeaderValue> {
    let token = session.access_token.expose();
    // `DPoP` for a token bound to the session's key (RFC 9449 7.1), else `Bearer`.
    let scheme = match &session.dpop {
        Some(d) => d.token_type.scheme(),
        None => "Bearer ",
    };
    let mut value = Zeroizing::new(Vec::with_capacity(7 + token.expose().len()));
    value.extend_from_slice(scheme.as_bytes());
    value.extend_from_slice(token.expose().as_bytes());
    let mut header = HeaderValue::from_bytes(&value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// The chunks of a request's cookie that opening reads, as a cache key.
pub(crate) struct CacheKey<'s, 'a> {
    set: &'s ChunkSet<'a>,
    count: u8,
    lookup: [u8; LOOKUP_LEN],
}

// Not derived: the chunks are the cookie.
impl fmt::Debug for CacheKey<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// One remembered opening: the text of the chunks it read, and its result.
struct Entry {
    /// Zeroized on drop: the cookie is the session's bearer credential.
    chunks: Box<[Zeroizing<Box<str>>]>,
    opened: Arc<Opened>,
}

impl Entry {
    /// Whether `key` has exactly this entry's chunks. Lengths first (the wire shows them);
    /// then every chunk in constant time, without stopping at the first that differs.
    fn matches(&self, key: &CacheKey<'_, '_>) -> bool {
        if self.chunks.len() != usize::from(key.count) {
            return false;
        }
        let sent = |i: usize| u8::try_from(i).ok().and_then(|i| key.set.get(i));
        let same_lengths = self
            .chunks
            .iter()
            .enumerate()
            .all(|(i, held)| sent(i).is_some_and(|s| s.len() == held.len()));
        same_lengths
            && self
                .chunks
                .iter()
                .enumerate()
                .fold(true, |equal, (i, held)| {
                    let sent = sent(i).unwrap_or_default();
                    equal & constant_time_eq::constant_time_eq(sent.as_bytes(), held.as_bytes())
                })
    }
}

type Shard = HashMap<[u8; LOOKUP_LEN], Entry, foldhash::fast::RandomState>;

/// The cache of opened sessions.
pub(crate) struct SessionCache {
    per_shard: usize,
    shards: Box<[Mutex<Shard>]>,
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCache")
            .field("capacity", &(self.per_shard * self.shards.len()))
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache of about `capacity` sessions (0: off).
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..if capacity == 0 { 0 } else { SHARDS })
            .map(|_| Mutex::new(Shard::default()))
            .collect();
        Self { per_shard, shards }
    }

    /// The cache key of the chunks in `set` that opening reads (`0..count`, the count the
    /// value declares; stale or extra chunks are left out, so they cannot make one session
    /// into many entries); `None` when the cache is off or the set cannot open as it is (a
    /// duplicate chunk index, a missing chunk, a chunk 0 too short to hold a nonce).
    pub(crate) fn key<'s, 'a>(&self, set: &'s ChunkSet<'a>) -> Option<CacheKey<'s, 'a>> {
        if self.shards.is_empty() || set.has_duplicate() {
            return None;
        }
        let count = crate::seal::declared_chunks(set)?;
        if (0..count).any(|i| set.get(i).is_none()) {
            return None;
        }
        let lookup = set.get(0)?.as_bytes().get(..LOOKUP_LEN)?.try_into().ok()?;
        Some(CacheKey { set, count, lookup })
    }

    fn shard(&self, key: &CacheKey<'_, '_>) -> Option<&Mutex<Shard>> {
        // The nonce's characters are random; all of them spread entries over the shards.
        let spread = key.lookup.iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        self.shards.get(spread % SHARDS)
    }

    /// The session opened from the same bytes, if its cookie has not expired at `now`.
    pub(crate) fn get(&self, key: &CacheKey<'_, '_>, now: i64) -> Option<Arc<Opened>> {
        let shard = self.shard(key)?;
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.get(&key.lookup).filter(|e| e.matches(key))?;
        if now >= entry.opened.cookie_expires_at {
            map.remove(&key.lookup);
            return None;
        }
        Some(entry.opened.clone())
    }

    /// Remembers `opened` under `key`, making room when the shard is full.
    pub(crate) fn insert(&self, key: &CacheKey<'_, '_>, opened: Arc<Opened>) {
        let Some(shard) = self.shard(key) else {
            return;
        };
        let chunks = (0..key.count)
            .filter_map(|i| key.set.get(i))
            .map(|c| Zeroizing::new(Box::<str>::from(c)))
            .collect();
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        // Full: one arbitrary entry goes (expired ones are dropped when looked up). Constant
        // work per insert, whatever the capacity.
        if map.len() >= self.per_shard
            && !map.contains_key(&key.lookup)
            && let Some(victim) = map.keys().next().copied()
        {
            map.remove(&victim);
        }
        map.insert(key.lookup, Entry { chunks, opened });
    }

    /// Forgets the session opened from `key`'s bytes (refused: revoked or expired), so its
    /// tokens leave memory now rather than at eviction.
    pub(crate) fn remove(&self, key: &CacheKey<'_, '_>) {
        if let Some(shard) = self.shard(key) {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if map.get(&key.lookup).is_some_and(|e| e.matches(key)) {
                map.remove(&key.lookup);
            }
        }
    }

    /// Sessions held.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether nothing is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::CookieName;

    fn name() -> CookieName {
        CookieName::new("__Host-s").unwrap()
    }

    fn opened(expires: i64) -> Arc<Opened> {
        let session = Arc::new(crate::session::tests::sample());
        Arc::new(Opened {
            bearer: bearer(&session),
            session,
            cookie_expires_at: expires,
            current_key: true,
        })
    }

    fn set<'a>(name: &'a CookieName, pairs: &[(&'a str, &'a str)]) -> ChunkSet<'a> {
        ChunkSet::from_pairs(name, 8, pairs.iter().copied())
    }

    // "AQAC" decodes to [1, 0, 2]: format 1, key 0, two chunks; then 32 characters standing
    // for the nonce, so that the lookup prefix (36 characters) is complete.
    const TWO: &str = "AQACnoncenoncenoncenoncenoncenoncedef";
    const TWO_B: &str = "AQACnoncenoncenoncenoncenoncenoncedeg";

    /// Caches `opened(100)` for `pairs`; then whether `other` hits it, and whether it could
    /// be looked up at all.
    fn hits(pairs: &[(&str, &str)], other: &[(&str, &str)]) -> Option<bool> {
        let name = name();
        let cache = SessionCache::new(64);
        let first = set(&name, pairs);
        cache.insert(&cache.key(&first).unwrap(), opened(100));
        let second = set(&name, other);
        let key = cache.key(&second)?;
        Some(cache.get(&key, 1).is_some())
    }

    #[test]
    fn only_the_exact_chunks_opening_reads_hit() {
        let base = [("__Host-s.0", TWO), ("__Host-s.1", "ghij")];
        assert_eq!(hits(&base, &base), Some(true));
        for other in [
            // The same lookup prefix, another byte after it.
            vec![("__Host-s.0", TWO_B), ("__Host-s.1", "ghij")],
            vec![("__Host-s.0", TWO), ("__Host-s.1", "ghik")],
            vec![("__Host-s.0", TWO), ("__Host-s.1", "ghi")],
            // Moving a byte across the chunk boundary is another cookie.
            vec![
                ("__Host-s.0", "AQACnoncenoncenoncenoncenoncenoncedefg"),
                ("__Host-s.1", "hij"),
            ],
        ] {
            assert_eq!(hits(&base, &other), Some(false), "{other:?}");
        }
        assert_eq!(
            hits(&base, &[("__Host-s.1", "ghij"), ("__Host-s.0", TWO)]),
            Some(true),
            "order of the Cookie header does not matter, the chunk index does"
        );
        // Chunks opening ignores (beyond the declared count, or beyond any limit) cannot turn
        // one session into many entries.
        for extra in [
            ("__Host-s.2", "k"),
            ("__Host-s.3", "zz"),
            ("__Host-s.200", "x"),
        ] {
            assert_eq!(
                hits(&base, &[("__Host-s.0", TWO), ("__Host-s.1", "ghij"), extra]),
                Some(true),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn a_cookie_sharing_the_lookup_prefix_neither_hits_nor_evicts() {
        let name = name();
        let cache = SessionCache::new(64);
        let held = set(&name, &[("__Host-s.0", TWO), ("__Host-s.1", "ghij")]);
        cache.insert(&cache.key(&held).unwrap(), opened(100));
        let forged = set(&name, &[("__Host-s.0", TWO), ("__Host-s.1", "XXXX")]);
        let forged = cache.key(&forged).unwrap();
        assert!(cache.get(&forged, 1).is_none());
        cache.remove(&forged);
        assert!(cache.get(&cache.key(&held).unwrap(), 1).is_some());
        cache.remove(&cache.key(&held).unwrap());
        assert!(cache.is_empty());
    }

    #[test]
    fn sets_that_cannot_open_and_a_disabled_cache_are_never_looked_up() {
        let name = name();
        let cache = SessionCache::new(64);
        for pairs in [
            vec![
                ("__Host-s.0", TWO),
                ("__Host-s.0", TWO),
                ("__Host-s.1", "ghij"),
            ],
            vec![("__Host-s.0", TWO)],
            vec![("__Host-s.1", "ghij")],
            vec![("__Host-s.0", "A!")],
            // Too short to hold a nonce.
            vec![("__Host-s.0", "AQABnonce")],
            vec![("other", "AQAB")],
        ] {
            assert!(cache.key(&set(&name, &pairs)).is_none(), "{pairs:?}");
        }
        let off = SessionCache::new(0);
        let one = set(
            &name,
            &[("__Host-s.0", "AQABnoncenoncenoncenoncenoncenoncexyz")],
        );
        assert!(off.key(&one).is_none());
        assert!(cache.key(&one).is_some());
    }

    #[test]
    fn an_expired_cookie_is_a_miss_and_is_dropped() {
        let name = name();
        let cache = SessionCache::new(64);
        let one = set(
            &name,
            &[("__Host-s.0", "AQABnoncenoncenoncenoncenoncenoncexyz")],
        );
        let key = cache.key(&one).unwrap();
        cache.insert(&key, opened(100));
        assert!(cache.get(&key, 99).is_some());
        assert!(cache.get(&key, 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let name = name();
        let cache = SessionCache::new(32);
        let values: Vec<String> = (0..1024).map(|i| format!("AQAB{i:032}xyz")).collect();
        for v in &values {
            let one = set(&name, &[("__Host-s.0", v)]);
            cache.insert(&cache.key(&one).unwrap(), opened(100));
        }
        assert_eq!(cache.len(), 32);
    }

    #[test]
    fn debug_shows_no_token_and_no_cookie() {
        let name = name();
        let o = opened(100);
        let cache = SessionCache::new(4);
        let one = set(
            &name,
            &[("__Host-s.0", "AQABnoncenoncenoncenoncenoncenoncexyz")],
        );
        let shown = format!("{o:?} {cache:?} {:?}", cache.key(&one).unwrap());
        let token = o.session.access_token.expose();
        assert!(!shown.contains(token.expose()), "{shown}");
        assert!(!shown.contains("Bearer"), "{shown}");
        assert!(!shown.contains("nonce"), "{shown}");
    }
}
