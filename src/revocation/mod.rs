//! The revocation denylist, checked on every authenticated request without waiting on anything
//! but a read lock.
//!
//! Entries ([`Revocation`]):
//! - a session id (logout), kept until that session's absolute expiry;
//! - an IdP `iss`+`sid` or `iss`+`sub` with a not-before time (back-channel logout, "log out
//!   everywhere"): every session of that IdP session or subject whose stamp is *at or before*
//!   the not-before time is refused; a later login is not. The entry is kept until the last
//!   session it can match is over: not-before + the absolute session timeout;
//! - a global not-before, which refuses every session stamped at or before it.
//!
//! Nothing is evicted before it expires: eviction would bring a revoked session back. When the
//! configured capacity is reached, a new entry is not dropped either: it is recorded as a
//! global not-before of "now" instead, which refuses the session it was meant for, along with
//! every other session issued until then (everyone signs in again). That is loud (an error log
//! and [`Denylist::overflows`]) and safe.
//!
//! # Order: which sessions a not-before catches
//!
//! Not-before times and session stamps ([`Session::stamp`]) are unix **milliseconds**, and the
//! rule is `stamp <= not_before`. Two choices make it exact on one instance and hold across
//! instances whose clocks agree within `[revocation] clock_skew`:
//! - **A new not-before** ([`Denylist::not_before`]) is `max(now + clock_skew, H + 1)`, where
//!   `H` is the highest not-before this instance knows and the highest stamp it has given. So
//!   every session created before it, here or on an instance whose clock runs ahead by up to
//!   the skew, has a stamp at or below it: it is caught.
//! - **A new session's stamp** ([`Denylist::stamp`]) is `max(now, N + 1)` over the not-befores
//!   `N` of the entries this instance holds that would match it (its `sid`, its `sub`, the
//!   global one). So a session created after a revocation was applied on the instance that
//!   creates it is never caught by it: a re-login a millisecond after a back-channel logout
//!   works. Its stamp may lie up to the skew in the future; lifetimes do not use the stamp.
//!
//! What remains is the propagation window: a session created on instance B after A recorded a
//! revocation but before B applied it (Redis delivers in milliseconds) can be caught by it,
//! and that user signs in once more. The other way round needs two revocations of one subject
//! on two instances within that window, with a login between them on a third whose stamp was
//! moved past the first (docs/revocation.md says how). Entries written by
//! versions before millisecond stamps (whole seconds `S`) read as `S * 1000 + 999`: they
//! still catch every session of their second.
//!
//! Persistence on a single instance: [`journal`], an append-only file of [`Revocation::encode`]
//! records, replayed at start. Without it the denylist is memory only and a restart forgets
//! every revocation.

pub mod journal;

mod entry;

pub use entry::Revocation;
use entry::seconds_to_ms;
pub(crate) use entry::{MAX_TEXT, not_before_second};
pub use journal::Journal;
pub(crate) use journal::JournalError;

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::session::Session;

/// A revocation could not be recorded; the caller must not report the logout as done.
#[derive(Debug, thiserror::Error)]
#[error("revocation store failed: {0}")]
pub struct RevocationError(pub String);

/// `(not_before, until)` of an `iss`+`sid` / `iss`+`sub` entry.
type Window = (i64, i64);

/// The denylist's maps hash with foldhash, seeded per process: SipHash (std's default) was
/// most of a check's cost (five hashes for a session with a `sid`). Keys are not chosen by
/// clients: session ids come from the OS CSPRNG, and `iss`, `sid`, `sub` from the IdP; the
/// random seed still keeps collisions unpredictable.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The live entries. Per-issuer maps keep lookups allocation-free (`&str` keys), and one
/// issuer lookup serves both the `sid` and the `sub` check.
#[derive(Debug, Default)]
struct Entries {
    sessions: Map<[u8; 16], i64>,
    issuers: Map<Box<str>, Issuer>,
    global: Option<Window>,
    len: usize,
}

/// The `iss`+`sid` and `iss`+`sub` entries of one issuer.
#[derive(Debug, Default)]
struct Issuer {
    sids: Map<Box<str>, Window>,
    subs: Map<Box<str>, Window>,
}

impl Entries {
    fn contains_key(&self, r: &Revocation) -> bool {
        match r {
            Revocation::Session { id, .. } => self.sessions.contains_key(id),
            Revocation::Sid { iss, sid, .. } => self
                .issuers
                .get(iss.as_str())
                .is_some_and(|i| i.sids.contains_key(sid.as_str())),
            Revocation::Sub { iss, sub, .. } => self
                .issuers
                .get(iss.as_str())
                .is_some_and(|i| i.subs.contains_key(sub.as_str())),
            Revocation::Global { .. } => true,
        }
    }

    /// Adds or widens an entry (later not-before and later expiry win: never narrower).
    fn insert(&mut self, r: Revocation) {
        let widen = |w: &mut Window, nb: i64, until: i64| {
            w.0 = w.0.max(nb);
            w.1 = w.1.max(until);
        };
        let (iss, key, not_before, until, is_sid) = match r {
            Revocation::Session { id, until } => {
                let e = self.sessions.entry(id).or_insert_with(|| {
                    self.len += 1;
                    i64::MIN
                });
                *e = (*e).max(until);
                return;
            }
            Revocation::Global { not_before, until } => {
                let g = self.global.get_or_insert((i64::MIN, i64::MIN));
                widen(g, not_before, until);
                return;
            }
            Revocation::Sid {
                iss,
                sid,
                not_before,
                until,
            } => (iss, sid, not_before, until, true),
            Revocation::Sub {
                iss,
                sub,
                not_before,
                until,
            } => (iss, sub, not_before, until, false),
        };
        let issuer = self.issuers.entry(iss.into()).or_default();
        let map = if is_sid {
            &mut issuer.sids
        } else {
            &mut issuer.subs
        };
        let e = map.entry(key.into()).or_insert_with(|| {
            self.len += 1;
            (i64::MIN, i64::MIN)
        });
        widen(e, not_before, until);
    }

    fn is_revoked(&self, s: &Session, iss: &str) -> bool {
        let issued_before = |w: &Window| s.stamp <= w.0;
        self.global.as_ref().is_some_and(issued_before)
            || self.sessions.contains_key(s.id.as_bytes())
            || self.issuers.get(iss).is_some_and(|i| {
                s.sid
                    .as_deref()
                    .and_then(|sid| i.sids.get(sid))
                    .is_some_and(issued_before)
                    || i.subs.get(s.sub.as_str()).is_some_and(issued_before)
            })
    }

    /// The highest not-before of the entries that would match a session of `iss`, `sub` and
    /// `sid` (whatever its stamp), if any.
    fn matching_not_before(&self, iss: &str, sub: &str, sid: Option<&str>) -> Option<i64> {
        let issuer = self.issuers.get(iss);
        let sid = issuer.and_then(|i| sid.and_then(|sid| i.sids.get(sid)));
        let sub = issuer.and_then(|i| i.subs.get(sub));
        [self.global.as_ref(), sid, sub]
            .into_iter()
            .flatten()
            .map(|w| w.0)
            .max()
    }

    /// Drops entries whose sessions can no longer exist.
    fn prune(&mut self, now: i64) {
        self.sessions.retain(|_, until| *until > now);
        for issuer in self.issuers.values_mut() {
            issuer.sids.retain(|_, w| w.1 > now);
            issuer.subs.retain(|_, w| w.1 > now);
        }
        self.issuers
            .retain(|_, i| !i.sids.is_empty() || !i.subs.is_empty());
        if self.global.is_some_and(|g| g.1 <= now) {
            self.global = None;
        }
        self.len = self.sessions.len()
            + self
                .issuers
                .values()
                .map(|i| i.sids.len() + i.subs.len())
                .sum::<usize>();
    }

    fn snapshot(&self) -> Vec<Revocation> {
        let mut out = Vec::with_capacity(self.len + 1);
        out.extend(self.sessions.iter().map(|(id, until)| Revocation::Session {
            id: *id,
            until: *until,
        }));
        for (iss, i) in &self.issuers {
            out.extend(i.sids.iter().map(|(sid, w)| Revocation::Sid {
                iss: iss.to_string(),
                sid: sid.to_string(),
                not_before: w.0,
                until: w.1,
            }));
            out.extend(i.subs.iter().map(|(sub, w)| Revocation::Sub {
                iss: iss.to_string(),
                sub: sub.to_string(),
                not_before: w.0,
                until: w.1,
            }));
        }
        if let Some((not_before, until)) = self.global {
            out.push(Revocation::Global { not_before, until });
        }
        out
    }
}

/// How often expired entries are swept (a sweep is O(entries), under the write lock).
const PRUNE_EVERY_SECS: i64 = 60;

/// Default `[revocation] clock_skew`: how far instances' clocks may disagree (milliseconds).
pub(crate) const DEFAULT_CLOCK_SKEW_MS: i64 = 1000;

/// The denylist: in memory, bounded, never evicting early.
pub struct Denylist {
    entries: RwLock<Entries>,
    capacity: usize,
    absolute_timeout: i64,
    clock_skew_ms: i64,
    /// `H` of the module docs: the highest not-before known and stamp given (unix ms).
    high_water: AtomicI64,
    next_prune: AtomicU64,
    overflows: AtomicU64,
}

impl fmt::Debug for Denylist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Denylist")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("overflows", &self.overflows())
            .finish_non_exhaustive()
    }
}

impl Denylist {
    /// An empty denylist holding at most `capacity` entries; `absolute_timeout` (seconds) is
    /// how long a session can live, so how long a global not-before must be kept.
    pub fn new(capacity: usize, absolute_timeout: i64) -> Self {
        Self {
            entries: RwLock::new(Entries::default()),
            capacity: capacity.max(1),
            absolute_timeout,
            clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
            high_water: AtomicI64::new(i64::MIN),
            next_prune: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    /// The same denylist assuming instances' clocks agree within `ms` milliseconds.
    #[must_use]
    pub fn with_clock_skew(mut self, ms: i64) -> Self {
        self.clock_skew_ms = ms.max(0);
        self
    }

    /// The not-before of a `sid`, `sub` or global revocation recorded at `now_ms` (unix
    /// milliseconds): at or after the stamp of every session created until now, here or on an
    /// instance whose clock is ahead by up to the clock skew (module docs).
    pub fn not_before(&self, now_ms: i64) -> i64 {
        now_ms
            .saturating_add(self.clock_skew_ms)
            .max(self.high_water.load(Ordering::Acquire).saturating_add(1))
    }

    /// The stamp of a session of `iss`, `sub` and `sid` created at `now_ms`: after every
    /// entry held here that would match it, so no revocation applied before the session was
    /// created ever catches it (module docs).
    pub fn stamp(&self, iss: &str, sub: &str, sid: Option<&str>, now_ms: i64) -> i64 {
        let matching = self
            .entries
            .read()
            .ok()
            .and_then(|e| e.matching_not_before(iss, sub, sid));
        let stamp = matching.map_or(now_ms, |n| now_ms.max(n.saturating_add(1)));
        self.high_water.fetch_max(stamp, Ordering::AcqRel);
        stamp
    }

    /// Raises `H` to what `r` says (after inserting it).
    fn saw(&self, r: &Revocation) {
        if let Some(n) = r.not_before() {
            self.high_water.fetch_max(n, Ordering::AcqRel);
        }
    }

    /// Number of live entries (the global not-before not counted).
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |e| e.len)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many revocations became a global not-before because the capacity was reached.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Every live entry (for journal compaction and cluster synchronisation).
    pub fn snapshot(&self) -> Vec<Revocation> {
        self.entries
            .read()
            .map_or_else(|_| Vec::new(), |e| e.snapshot())
    }

    /// Whether `session`, from issuer `iss`, is revoked. A poisoned lock fails closed.
    pub fn is_revoked(&self, session: &Session, iss: &str) -> bool {
        self.entries
            .read()
            .map_or(true, |e| e.is_revoked(session, iss))
    }

    /// Records `r` in memory at time `now` and returns what was recorded: `r` itself, or a
    /// global not-before when the capacity is reached (the caller shares *that*). Memory only:
    /// with a journal, [`Journal::record`] is the one writer (it decides, persists, then
    /// inserts).
    ///
    /// # Errors
    /// A [`RevocationError`] when the entry is not acceptable (over-long text) or the lock is
    /// poisoned; nothing was recorded.
    pub fn apply(&self, r: Revocation, now: i64) -> Result<Revocation, RevocationError> {
        check(&r)?;
        if r.until() <= now {
            return Ok(r); // nothing it could match is alive
        }
        let mut entries = self.write()?;
        let recorded = self.decide_locked(&mut entries, r, now);
        self.saw(&recorded);
        entries.insert(recorded.clone());
        Ok(recorded)
    }

    /// What recording `r` at `now` would record, without recording it: `r` itself, or a global
    /// not-before when the capacity is reached. An `r` that has already expired comes back
    /// unchanged (recording it would change nothing). Also sweeps expired entries when due.
    ///
    /// The caller persists the decision, then [`Denylist::insert`]s it, serializing the two
    /// steps against other writers so that the capacity decision stays exact.
    ///
    /// # Errors
    /// As [`Denylist::apply`].
    pub fn decide(&self, r: Revocation, now: i64) -> Result<Revocation, RevocationError> {
        check(&r)?;
        if r.until() <= now {
            return Ok(r);
        }
        let mut entries = self.write()?;
        Ok(self.decide_locked(&mut entries, r, now))
    }

    /// Inserts a decision of [`Denylist::decide`] (no capacity check: it was decided already).
    /// An entry that expired by `now` is not inserted.
    ///
    /// # Errors
    /// When the lock is poisoned (every check then fails closed anyway).
    pub fn insert(&self, recorded: Revocation, now: i64) -> Result<(), RevocationError> {
        if recorded.until() > now {
            self.saw(&recorded);
            self.write()?.insert(recorded);
        }
        Ok(())
    }

    /// Inserts entries replayed from a journal, bypassing the capacity: they were recorded
    /// under it (or a larger one before a configuration change), and dropping any of them
    /// would bring a revoked session back. Entries that expired by `now` are skipped.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn restore(
        &self,
        replayed: impl IntoIterator<Item = Revocation>,
        now: i64,
    ) -> Result<(), RevocationError> {
        let mut entries = self.write()?;
        for r in replayed {
            if r.until() > now && check(&r).is_ok() {
                self.saw(&r);
                entries.insert(r);
            }
        }
        if entries.len > self.capacity {
            tracing::warn!(
                entries = entries.len,
                capacity = self.capacity,
                "more revocations replayed than [revocation] capacity: all are kept; new \
                 revocations become a global not-before until entries expire"
            );
        }
        Ok(())
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Entries>, RevocationError> {
        self.entries
            .write()
            .map_err(|_| RevocationError("denylist lock poisoned".into()))
    }

    fn decide_locked(&self, entries: &mut Entries, r: Revocation, now: i64) -> Revocation {
        let due = u64::try_from(now).unwrap_or(0);
        if self.next_prune.load(Ordering::Relaxed) <= due {
            entries.prune(now);
            self.next_prune.store(
                due.saturating_add(PRUNE_EVERY_SECS.unsigned_abs()),
                Ordering::Relaxed,
            );
        }
        if entries.len >= self.capacity && !entries.contains_key(&r) {
            self.overflows.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                capacity = self.capacity,
                "revocation denylist full: refusing every session issued until now instead \
                 (all users sign in again); raise [revocation] capacity"
            );
            // At or after everything created until now, and after what `r` would have caught.
            let not_before = self
                .not_before(seconds_to_ms(now))
                .max(r.not_before().unwrap_or(i64::MIN));
            Revocation::Global {
                not_before,
                until: not_before_second(not_before).saturating_add(self.absolute_timeout),
            }
        } else {
            r
        }
    }
}

/// Refuses entries with an empty or over-long issuer, sid or sub.
fn check(r: &Revocation) -> Result<(), RevocationError> {
    if let Revocation::Sid { iss, sid: v, .. } | Revocation::Sub { iss, sub: v, .. } = r
        && (iss.is_empty() || v.is_empty() || iss.len() > MAX_TEXT || v.len() > MAX_TEXT)
    {
        return Err(RevocationError(
            "empty or over-long issuer, sid or sub".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
