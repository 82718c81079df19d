//! The revocation denylist, checked on every authenticated request without waiting on anything
//! but a read lock.
//!
//! Entries ([`Revocation`]):
//! - a session id (logout), kept until that session's absolute expiry;
//! - an IdP `iss`+`sid` or `iss`+`sub` with a not-before time (back-channel logout, "log out
//!   everywhere"): every session of that IdP session or subject *issued at or before* the
//!   not-before time is refused; a session issued later (a new login) is not. The entry is kept
//!   until the last session it can match is over: not-before + the absolute session timeout;
//! - a global not-before, which refuses every session issued at or before it.
//!
//! Nothing is evicted before it expires: eviction would bring a revoked session back. When the
//! configured capacity is reached, a new entry is not dropped either: it is recorded as a
//! global not-before of "now" instead, which refuses the session it was meant for, along with
//! every other session issued until then (everyone signs in again). That is loud (an error log
//! and [`Denylist::overflows`]) and safe.
//!
//! Comparisons with "issued at or before" are inclusive, so a session created in the same
//! second as a revocation is refused (timestamps are whole seconds; the safe side of a tie).
//!
//! Persistence on a single instance: [`journal`], an append-only file of [`Revocation::encode`]
//! records, replayed at start. Without it the denylist is memory only and a restart forgets
//! every revocation.

pub mod journal;

pub use journal::Journal;
pub(crate) use journal::JournalError;

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::session::Session;

/// One revocation.
#[derive(Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session (logout), until its absolute expiry.
    Session {
        /// The session id.
        id: [u8; 16],
        /// Unix seconds after which the session cannot exist anyway.
        until: i64,
    },
    /// Every session of IdP session `sid` at issuer `iss` issued at or before `not_before`.
    Sid {
        /// The issuer.
        iss: String,
        /// The IdP's session id.
        sid: String,
        /// Unix seconds; sessions issued at or before it are refused.
        not_before: i64,
        /// Unix seconds after which no matching session can exist.
        until: i64,
    },
    /// Every session of subject `sub` at issuer `iss` issued at or before `not_before`.
    Sub {
        /// The issuer.
        iss: String,
        /// The subject.
        sub: String,
        /// Unix seconds; sessions issued at or before it are refused.
        not_before: i64,
        /// Unix seconds after which no matching session can exist.
        until: i64,
    },
    /// Every session issued at or before `not_before` (the capacity overflow answer).
    Global {
        /// Unix seconds; sessions issued at or before it are refused.
        not_before: i64,
        /// Unix seconds after which no matching session can exist.
        until: i64,
    },
}

impl fmt::Debug for Revocation {
    // Session ids are secrets (they are inside the sealed cookie only); sid and sub are not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session { until, .. } => {
                write!(f, "Session {{ id: <redacted>, until: {until} }}")
            }
            Self::Sid {
                iss,
                sid,
                not_before,
                until,
            } => write!(
                f,
                "Sid {{ iss: {iss:?}, sid: {sid:?}, not_before: {not_before}, until: {until} }}"
            ),
            Self::Sub {
                iss,
                sub,
                not_before,
                until,
            } => write!(
                f,
                "Sub {{ iss: {iss:?}, sub: {sub:?}, not_before: {not_before}, until: {until} }}"
            ),
            Self::Global { not_before, until } => {
                write!(f, "Global {{ not_before: {not_before}, until: {until} }}")
            }
        }
    }
}

/// Longest issuer, `sid` or `sub` accepted in an entry (bytes).
pub(crate) const MAX_TEXT: usize = 1024;

/// A byte string that is not a [`Revocation`] encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed revocation record")]
pub struct Malformed;

const KIND_SESSION: u8 = 1;
const KIND_SID: u8 = 2;
const KIND_SUB: u8 = 3;
const KIND_GLOBAL: u8 = 4;

impl Revocation {
    /// The logout of `session`, kept until its absolute expiry.
    pub fn of_session(session: &Session) -> Self {
        Self::Session {
            id: *session.id.as_bytes(),
            until: session.absolute_expires_at,
        }
    }

    /// Unix seconds after which the entry can be forgotten.
    pub fn until(&self) -> i64 {
        match self {
            Self::Session { until, .. }
            | Self::Sid { until, .. }
            | Self::Sub { until, .. }
            | Self::Global { until, .. } => *until,
        }
    }

    /// The binary form used by the journal and the cluster store:
    ///
    /// ```text
    /// kind u8 | until i64 LE | kind-specific:
    ///   1 session: id [16]
    ///   2 sid, 3 sub: not_before i64 LE | iss_len u16 LE | iss | value_len u16 LE | value
    ///   4 global: not_before i64 LE
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let text = |out: &mut Vec<u8>, s: &str| {
            // Lengths are checked on every way in (`decode`, `Denylist::revoke`); a longer text
            // is cut to MAX_TEXT here so that the encoding is always well-formed.
            let bytes = &s.as_bytes()[..s.len().min(MAX_TEXT)];
            out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Self::Session { id, until } => {
                out.push(KIND_SESSION);
                out.extend_from_slice(&until.to_le_bytes());
                out.extend_from_slice(id);
            }
            Self::Sid {
                iss,
                sid: value,
                not_before,
                until,
            }
            | Self::Sub {
                iss,
                sub: value,
                not_before,
                until,
            } => {
                out.push(if matches!(self, Self::Sid { .. }) {
                    KIND_SID
                } else {
                    KIND_SUB
                });
                out.extend_from_slice(&until.to_le_bytes());
                out.extend_from_slice(&not_before.to_le_bytes());
                text(&mut out, iss);
                text(&mut out, value);
            }
            Self::Global { not_before, until } => {
                out.push(KIND_GLOBAL);
                out.extend_from_slice(&until.to_le_bytes());
                out.extend_from_slice(&not_before.to_le_bytes());
            }
        }
        out
    }

    /// Parses [`Revocation::encode`]'s form; the whole input must be one entry.
    ///
    /// # Errors
    /// [`Malformed`] for anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader(bytes);
        let kind = r.take(1)?[0];
        let until = r.i64()?;
        let entry = match kind {
            KIND_SESSION => {
                let mut id = [0u8; 16];
                id.copy_from_slice(r.take(16)?);
                Self::Session { id, until }
            }
            KIND_SID | KIND_SUB => {
                let not_before = r.i64()?;
                let iss = r.text()?;
                let value = r.text()?;
                if kind == KIND_SID {
                    Self::Sid {
                        iss,
                        sid: value,
                        not_before,
                        until,
                    }
                } else {
                    Self::Sub {
                        iss,
                        sub: value,
                        not_before,
                        until,
                    }
                }
            }
            KIND_GLOBAL => Self::Global {
                not_before: r.i64()?,
                until,
            },
            _ => return Err(Malformed),
        };
        if !r.0.is_empty() {
            return Err(Malformed);
        }
        Ok(entry)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i64(&mut self) -> Result<i64, Malformed> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }

    fn text(&mut self) -> Result<String, Malformed> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        let len = usize::from(u16::from_le_bytes(b));
        if len == 0 || len > MAX_TEXT {
            return Err(Malformed);
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| Malformed)
    }
}

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
        let issued_before = |w: &Window| s.issued_at <= w.0;
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

/// The denylist: in memory, bounded, never evicting early.
pub struct Denylist {
    entries: RwLock<Entries>,
    capacity: usize,
    absolute_timeout: i64,
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
            next_prune: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
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
            Revocation::Global {
                not_before: now,
                until: now.saturating_add(self.absolute_timeout),
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
