//! The revocation denylist, checked on every authenticated request.
//!
//! An entry lives until the absolute expiry of every session it can match and is never evicted
//! before: eviction would bring a revoked session back. This module holds the interface and the
//! in-memory store; durable and shared stores implement the same trait.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use crate::session::{Session, SessionId};

/// A revocation could not be recorded; the caller must not report the logout as done.
#[derive(Debug, thiserror::Error)]
#[error("revocation store failed: {0}")]
pub struct RevocationError(pub String);

/// Where revocations live.
pub trait Denylist: Send + Sync + Debug {
    /// Revokes session `id`; the entry is kept until `until` (the session's absolute expiry).
    ///
    /// # Errors
    /// When the revocation could not be recorded.
    fn revoke_session(&self, id: &SessionId, until: i64, now: i64) -> Result<(), RevocationError>;

    /// Whether `session` is revoked.
    fn is_revoked(&self, session: &Session) -> bool;
}

/// Revocations in process memory (one instance, lost on restart).
#[derive(Debug, Default)]
pub struct MemoryDenylist {
    sessions: Mutex<HashMap<[u8; 16], i64>>,
}

impl MemoryDenylist {
    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |m| m.len())
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Denylist for MemoryDenylist {
    fn revoke_session(&self, id: &SessionId, until: i64, now: i64) -> Result<(), RevocationError> {
        let mut map = self
            .sessions
            .lock()
            .map_err(|_| RevocationError("denylist lock poisoned".into()))?;
        // Only entries whose sessions can no longer exist are dropped.
        map.retain(|_, until| *until > now);
        map.insert(*id.as_bytes(), until);
        Ok(())
    }

    fn is_revoked(&self, session: &Session) -> bool {
        // A poisoned lock fails closed: every session counts as revoked.
        self.sessions
            .lock()
            .map_or(true, |m| m.contains_key(session.id.as_bytes()))
    }
}
