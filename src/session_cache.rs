//! Opened sessions, remembered by the exact cookie bytes they were opened from.
//!
//! Opening a session cookie (base64, XChaCha20-Poly1305 over a few kilobytes, decoding, and
//! restoring the access token's issued text for the `Authorization` header) is most of what a
//! proxied request costs. A browser sends the same cookie with every request until it changes,
//! so an instance keeps the result of recent openings, keyed by a keyed BLAKE3 hash (a PRF
//! under a per-process random key from the OS CSPRNG) of every chunk opening reads (the count
//! the value declares; index, length, bytes of each).
//! BLAKE3 rather than HMAC-SHA-256 because it is about three times faster on a 6 KB cookie
//! (measured with `perf` in the proxy benchmark: SHA-256 was 7% of a proxied request).
//!
//! What a hit means, and why it is safe:
//! - The digest covers every byte opening reads, so a hit means these exact bytes were opened
//!   successfully by this process before; opening is deterministic (fixed keys), so the cached
//!   result is what opening would give now. Sets with a duplicate chunk index are never looked
//!   up (opening refuses them), and chunks opening ignores are not hashed, so they cannot turn
//!   one session into many entries.
//! - Only what does not depend on the time is cached. The cookie's sealed expiry is checked
//!   again on every hit, and so are the session's idle and absolute expiry, the revocation
//!   denylist and the cluster state: a cached session is never extended or un-revoked.
//! - Only sessions that passed every check when first opened are cached; a rejected cookie
//!   costs the full opening every time, so garbage cannot fill the cache. A hit that is then
//!   refused (revoked, expired) removes the entry.
//! - Bounded (`[session] open_cache` entries, 0 turns it off): when full, an arbitrary entry
//!   of the shard goes. Evicted sessions are zeroized on drop like any other; the cache holds
//!   tokens this process already had in memory for the same requests, for a little longer.
//! - Timing: a hit is faster than a miss, which tells an observer only whether the exact bytes
//!   they sent were recently sent, i.e. nothing they did not already hold.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderValue;

use crate::seal::jar::ChunkSet;
use crate::secret::{RandomError, fill_random};
use crate::session::Session;

const SHARDS: usize = 16;

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
    let mut value = zeroize::Zeroizing::new(Vec::with_capacity(7 + token.expose().len()));
    value.extend_from_slice(scheme.as_bytes());
    value.extend_from_slice(token.expose().as_bytes());
    let mut header = HeaderValue::from_bytes(&value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

type Shard = HashMap<[u8; 32], Arc<Opened>, foldhash::fast::RandomState>;

/// The cache of opened sessions.
pub(crate) struct SessionCache {
    key: [u8; 32],
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
    ///
    /// # Errors
    /// When the OS CSPRNG fails.
    pub(crate) fn new(capacity: usize) -> Result<Self, RandomError> {
        let mut key = [0u8; 32];
        fill_random(&mut key)?;
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..if capacity == 0 { 0 } else { SHARDS })
            .map(|_| Mutex::new(Shard::default()))
            .collect();
        Ok(Self {
            key,
            per_shard,
            shards,
        })
    }

    /// The cache key of the chunks in `set` that opening reads (`0..count`, the count the
    /// value declares; stale or extra chunks are left out, so they cannot make one session
    /// into many entries); `None` when the cache is off or the set cannot open as it is (a
    /// duplicate chunk index, a missing chunk, no readable header).
    pub(crate) fn digest(&self, set: &ChunkSet<'_>) -> Option<[u8; 32]> {
        if self.shards.is_empty() || set.has_duplicate() {
            return None;
        }
        let count = crate::seal::declared_chunks(set)?;
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"sealgate session cache v1\0");
        h.update(&[count]);
        for i in 0..count {
            let chunk = set.get(i)?;
            h.update(&[i]);
            h.update(&u32::try_from(chunk.len()).unwrap_or(u32::MAX).to_le_bytes());
            h.update(chunk.as_bytes());
        }
        Some(*h.finalize().as_bytes())
    }

    fn shard(&self, digest: &[u8; 32]) -> Option<&Mutex<Shard>> {
        self.shards.get(usize::from(digest[0]) % SHARDS)
    }

    /// The session opened from the same bytes, if its cookie has not expired at `now`.
    pub(crate) fn get(&self, digest: &[u8; 32], now: i64) -> Option<Arc<Opened>> {
        let shard = self.shard(digest)?;
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = map.get(digest)?;
        if now >= hit.cookie_expires_at {
            map.remove(digest);
            return None;
        }
        Some(hit.clone())
    }

    /// Remembers `opened` under `digest`, making room when the shard is full.
    pub(crate) fn insert(&self, digest: [u8; 32], opened: Arc<Opened>) {
        let Some(shard) = self.shard(&digest) else {
            return;
        };
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        // Full: one arbitrary entry goes (expired ones are dropped when looked up). Constant
        // work per insert, whatever the capacity.
        if map.len() >= self.per_shard
            && !map.contains_key(&digest)
            && let Some(victim) = map.keys().next().copied()
        {
            map.remove(&victim);
        }
        map.insert(digest, opened);
    }

    /// Forgets the session under `digest` (refused: revoked or expired), so its tokens leave
    /// memory now rather than at eviction.
    pub(crate) fn remove(&self, digest: &[u8; 32]) {
        if let Some(shard) = self.shard(digest) {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(digest);
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

    fn digest(cache: &SessionCache, pairs: &[(&str, &str)]) -> Option<[u8; 32]> {
        let name = name();
        cache.digest(&ChunkSet::from_pairs(&name, 8, pairs.iter().copied()))
    }

    // "AQAC" decodes to [1, 0, 2]: format 1, key 0, two chunks.
    const TWO: &str = "AQACdef";

    #[test]
    fn any_change_to_a_chunk_opening_reads_is_another_key() {
        let cache = SessionCache::new(64).unwrap();
        let base = digest(&cache, &[("__Host-s.0", TWO), ("__Host-s.1", "ghij")]).unwrap();
        for other in [
            vec![("__Host-s.0", "AQACdeg"), ("__Host-s.1", "ghij")],
            vec![("__Host-s.0", TWO), ("__Host-s.1", "ghi")],
            // Moving a byte across the chunk boundary changes the key (lengths are hashed).
            vec![("__Host-s.0", "AQACdefg"), ("__Host-s.1", "hij")],
        ] {
            assert_ne!(digest(&cache, &other), Some(base), "{other:?}");
        }
        assert_eq!(
            digest(&cache, &[("__Host-s.1", "ghij"), ("__Host-s.0", TWO)]),
            Some(base),
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
                digest(
                    &cache,
                    &[("__Host-s.0", TWO), ("__Host-s.1", "ghij"), extra]
                ),
                Some(base),
                "{extra:?}"
            );
        }
        // Another process (another random key) gets other digests for the same bytes.
        let other = SessionCache::new(64).unwrap();
        assert_ne!(
            digest(&other, &[("__Host-s.0", TWO), ("__Host-s.1", "ghij")]),
            Some(base)
        );
    }

    #[test]
    fn sets_that_cannot_open_and_a_disabled_cache_are_never_looked_up() {
        let cache = SessionCache::new(64).unwrap();
        for set in [
            vec![
                ("__Host-s.0", TWO),
                ("__Host-s.0", TWO),
                ("__Host-s.1", "ghij"),
            ],
            vec![("__Host-s.0", TWO)],
            vec![("__Host-s.1", "ghij")],
            vec![("__Host-s.0", "A!")],
            vec![("other", "AQAB")],
        ] {
            assert_eq!(digest(&cache, &set), None, "{set:?}");
        }
        let off = SessionCache::new(0).unwrap();
        assert_eq!(digest(&off, &[("__Host-s.0", "AQABxyz")]), None);
        off.insert([1; 32], opened(100));
        assert!(off.is_empty());
    }

    #[test]
    fn a_refused_session_can_be_forgotten() {
        let cache = SessionCache::new(64).unwrap();
        cache.insert([3; 32], opened(100));
        cache.remove(&[3; 32]);
        assert!(cache.is_empty());
    }

    #[test]
    fn an_expired_cookie_is_a_miss_and_is_dropped() {
        let cache = SessionCache::new(64).unwrap();
        cache.insert([7; 32], opened(100));
        assert!(cache.get(&[7; 32], 99).is_some());
        assert!(cache.get(&[7; 32], 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = SessionCache::new(32).unwrap();
        for i in 0..=255u8 {
            for j in 0..4u8 {
                let mut key = [0u8; 32];
                key[0] = i;
                key[1] = j;
                cache.insert(key, opened(100));
            }
        }
        assert_eq!(cache.len(), 32);
    }

    #[test]
    fn debug_shows_no_token() {
        let o = opened(100);
        let shown = format!("{o:?} {:?}", SessionCache::new(4).unwrap());
        let token = o.session.access_token.expose();
        assert!(!shown.contains(token.expose()), "{shown}");
        assert!(!shown.contains("Bearer"), "{shown}");
    }
}
