//! A bounded set of once-only keys, each remembered until a time: the used login `state`s and
//! the `iss`+`jti` of accepted back-channel logout tokens, so that a replay of either is
//! refused. Pure: the caller hashes what it remembers into 32 bytes and passes `now`.
//!
//! One boundary rule: an entry is live up to and including its `until` second, and gone once
//! `now > until`. Callers pass the last second at which what they guard (a login flow, a logout
//! token) can still be accepted; forgetting the entry at that very second would re-open its
//! replay for that second, while remembering it one second longer costs nothing.
//!
//! One capacity rule: when `capacity` entries are live, a new key is refused ([`Full`], the
//! callers answer 503) rather than a live entry forgotten early, which would re-open its replay.
//!
//! Expiry times arrive in any order (a logout token's window depends on its own `exp`), so they
//! sit in a min-heap beside the map: an insert costs O(log n) amortized, expiring included.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Whether a key was in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time: recorded now.
    Fresh,
    /// Recorded before and still live: a replay.
    Replayed,
}

/// The set is full of live entries; nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("replay table full of live entries")]
pub(crate) struct Full;

/// 32-byte keys, each live until its own time (inclusive), at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct ExpiringSet {
    live: HashMap<[u8; 32], i64>,
    /// Every recorded `(until, key)`, soonest first. A removed key's entry stays until it is
    /// popped or the heap is rebuilt; `live` is the truth.
    expiry: BinaryHeap<Reverse<(i64, [u8; 32])>>,
    capacity: usize,
}

impl Default for ExpiringSet {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl ExpiringSet {
    /// Default capacity: one entry per login flow (over 150 a second, sustained, with a
    /// 10-minute `login_timeout`) or per logout token (over 300 a second with a 5-minute
    /// `max_logout_token_age`).
    pub(crate) const CAPACITY: usize = 100_000;

    /// An empty set for at most `capacity` (at least 1) live entries.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            live: HashMap::new(),
            expiry: BinaryHeap::new(),
            capacity: capacity.max(1),
        }
    }

    /// How many live entries it may hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held (expired ones go at the next insert).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether it holds no entry.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Records `key` as live until `until` (inclusive), at time `now`, or reports that it is
    /// already live. An entry already live keeps its own `until`.
    ///
    /// # Errors
    /// [`Full`] when `key` is new and `capacity` entries are live; nothing was recorded.
    pub(crate) fn insert(&mut self, key: [u8; 32], until: i64, now: i64) -> Result<Seen, Full> {
        self.expire(now);
        if self.live.contains_key(&key) {
            return Ok(Seen::Replayed);
        }
        if self.live.len() >= self.capacity {
            return Err(Full);
        }
        self.live.insert(key, until);
        self.expiry.push(Reverse((until, key)));
        Ok(Seen::Fresh)
    }

    /// Forgets `key` before its time: what it guarded did not happen after all, and a retry
    /// must not be taken for a replay.
    pub(crate) fn remove(&mut self, key: &[u8; 32]) {
        self.live.remove(key);
        // Removed keys leave their heap entries behind; rebuild before they outnumber the live
        // ones, so the heap stays within twice the capacity whatever the callers do.
        if self.expiry.len() >= self.capacity.saturating_mul(2) {
            self.expiry = self.live.iter().map(|(k, t)| Reverse((*t, *k))).collect();
        }
    }

    /// Drops every entry whose `until` is before `now`.
    fn expire(&mut self, now: i64) {
        while let Some(&Reverse((until, key))) = self.expiry.peek() {
            if until >= now {
                break;
            }
            self.expiry.pop();
            // A removed and re-recorded key has a heap entry of its own, with its own time.
            if self.live.get(&key) == Some(&until) {
                self.live.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&i.to_le_bytes());
        k[31] = 9;
        k
    }

    #[test]
    fn an_entry_is_live_through_its_until_second() {
        let mut s = ExpiringSet::default();
        assert_eq!(s.insert([1; 32], 100, 0), Ok(Seen::Fresh));
        assert_eq!(s.insert([1; 32], 100, 99), Ok(Seen::Replayed));
        assert_eq!(
            s.insert([1; 32], 100, 100),
            Ok(Seen::Replayed),
            "until is inclusive"
        );
        assert_eq!(
            s.insert([1; 32], 300, 101),
            Ok(Seen::Fresh),
            "gone after until"
        );
        assert_eq!(s.len(), 1);
    }

    /// Moved from `app.rs` (the `UsedStates` table this set replaced); the expiry step now
    /// happens one second later, at `until + 1`, by the inclusive boundary above.
    #[test]
    fn used_states_refuse_replays_expire_and_cap() {
        let mut u = ExpiringSet::default();
        assert_eq!(u.insert([1; 32], 100, 0), Ok(Seen::Fresh));
        assert_eq!(u.insert([1; 32], 100, 50), Ok(Seen::Replayed));
        // After its expiry the entry is gone (a replay then fails on the expired login cookie).
        assert_eq!(u.insert([2; 32], 200, 101), Ok(Seen::Fresh));
        assert!(!u.live.contains_key(&[1; 32]));
        for i in 0..ExpiringSet::CAPACITY as u64 - 1 {
            assert_eq!(u.insert(key(i), 300, 101), Ok(Seen::Fresh));
        }
        assert_eq!(
            u.insert([3; 32], 300, 101),
            Err(Full),
            "never evicted early"
        );
        assert_eq!(
            u.insert([3; 32], 500, 301),
            Ok(Seen::Fresh),
            "room again once entries expire"
        );
    }

    #[test]
    fn a_full_set_refuses_new_keys_but_still_reports_replays() {
        let mut s = ExpiringSet::with_capacity(2);
        assert_eq!(s.capacity(), 2);
        assert_eq!(s.insert([1; 32], 10, 0), Ok(Seen::Fresh));
        assert_eq!(s.insert([2; 32], 20, 0), Ok(Seen::Fresh));
        assert_eq!(s.insert([3; 32], 30, 5), Err(Full));
        assert_eq!(s.insert([1; 32], 10, 10), Ok(Seen::Replayed));
        // Exactly one expired entry makes exactly one slot.
        assert_eq!(s.insert([3; 32], 30, 11), Ok(Seen::Fresh));
        assert_eq!(s.insert([4; 32], 40, 11), Err(Full));
        assert_eq!(ExpiringSet::with_capacity(0).capacity(), 1);
    }

    #[test]
    fn entries_expire_in_time_order_whatever_the_insert_order() {
        let mut s = ExpiringSet::with_capacity(10);
        for (k, until) in [(1u8, 50), (2, 10), (3, 30), (4, 20), (5, 40)] {
            assert_eq!(s.insert([k; 32], until, 0), Ok(Seen::Fresh));
        }
        for (now, left) in [
            (10, 5),
            (11, 4),
            (21, 3),
            (31, 2),
            (41, 1),
            (50, 1),
            (51, 0),
        ] {
            assert_eq!(s.insert([9; 32], now, now), Ok(Seen::Fresh));
            s.remove(&[9; 32]);
            assert_eq!(s.len(), left, "at {now}");
        }
        // The one inserted last but expiring first went first: 2 (10) is gone, 1 (50) stayed
        // until after 50.
        let mut t = ExpiringSet::with_capacity(10);
        t.insert([1; 32], 50, 0).unwrap();
        t.insert([2; 32], 10, 0).unwrap();
        assert_eq!(t.insert([3; 32], 60, 11), Ok(Seen::Fresh));
        assert!(!t.live.contains_key(&[2; 32]) && t.live.contains_key(&[1; 32]));
    }

    #[test]
    fn a_removed_key_is_fresh_again_and_its_old_time_does_not_expire_the_new_one() {
        let mut s = ExpiringSet::with_capacity(4);
        assert_eq!(s.insert([1; 32], 10, 0), Ok(Seen::Fresh));
        s.remove(&[1; 32]);
        assert!(s.is_empty());
        assert_eq!(s.insert([1; 32], 100, 1), Ok(Seen::Fresh));
        // The stale heap entry (until 10) pops at 11 but must not drop the live one (until 100).
        assert_eq!(s.insert([1; 32], 100, 11), Ok(Seen::Replayed));
        assert_eq!(s.insert([1; 32], 100, 100), Ok(Seen::Replayed));
    }

    #[test]
    fn removals_never_grow_the_heap_past_twice_the_capacity() {
        let mut s = ExpiringSet::with_capacity(3);
        for _ in 0..100 {
            s.insert([1; 32], 1_000, 0).unwrap();
            s.remove(&[1; 32]);
            assert!(s.expiry.len() <= 6);
        }
        s.insert([2; 32], 1_000, 0).unwrap();
        assert_eq!(s.insert([2; 32], 1_000, 999), Ok(Seen::Replayed));
    }
}
