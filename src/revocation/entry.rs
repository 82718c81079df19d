//! One revocation ([`Revocation`]) and its binary form, shared by the journal and Redis.

use std::fmt;

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
        /// Unix milliseconds; sessions stamped at or before it are refused.
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
        /// Unix milliseconds; sessions stamped at or before it are refused.
        not_before: i64,
        /// Unix seconds after which no matching session can exist.
        until: i64,
    },
    /// Every session issued at or before `not_before` (the capacity overflow answer).
    Global {
        /// Unix milliseconds; sessions stamped at or before it are refused.
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
/// Kinds 2–4 carried not-before in unix seconds; still read (as the last millisecond of that
/// second), no longer written.
const KIND_SID_SECONDS: u8 = 2;
const KIND_SUB_SECONDS: u8 = 3;
const KIND_GLOBAL_SECONDS: u8 = 4;
const KIND_SID: u8 = 5;
const KIND_SUB: u8 = 6;
const KIND_GLOBAL: u8 = 7;
const MS_PER_SEC: i64 = 1000;

/// The not-before in milliseconds of a not-before in whole seconds: its second's last
/// millisecond, so it catches every session of that second, as it did.
pub(super) fn seconds_to_ms(not_before: i64) -> i64 {
    not_before
        .saturating_mul(MS_PER_SEC)
        .saturating_add(MS_PER_SEC - 1)
}

/// The unix second an entry of not-before `not_before_ms` must live past: every session it can
/// match was created at or before it.
pub(crate) fn not_before_second(not_before_ms: i64) -> i64 {
    not_before_ms.div_euclid(MS_PER_SEC) + i64::from(not_before_ms.rem_euclid(MS_PER_SEC) != 0)
}

impl Revocation {
    /// The logout of `session`, kept until its absolute expiry.
    pub fn of_session(session: &Session) -> Self {
        Self::Session {
            id: *session.id.as_bytes(),
            until: session.absolute_expires_at,
        }
    }

    /// The not-before (unix milliseconds) of a `sid`, `sub` or global entry.
    pub fn not_before(&self) -> Option<i64> {
        match self {
            Self::Session { .. } => None,
            Self::Sid { not_before, .. }
            | Self::Sub { not_before, .. }
            | Self::Global { not_before, .. } => Some(*not_before),
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
    ///   5 sid, 6 sub: not_before i64 LE (ms) | iss_len u16 LE | iss | value_len u16 LE | value
    ///   7 global: not_before i64 LE (ms)
    ///   2 sid, 3 sub, 4 global: as 5, 6, 7 with not_before in seconds (read, not written)
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
            KIND_SID | KIND_SUB | KIND_SID_SECONDS | KIND_SUB_SECONDS => {
                let mut not_before = r.i64()?;
                if kind == KIND_SID_SECONDS || kind == KIND_SUB_SECONDS {
                    not_before = seconds_to_ms(not_before);
                }
                let iss = r.text()?;
                let value = r.text()?;
                if kind == KIND_SID || kind == KIND_SID_SECONDS {
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
            KIND_GLOBAL_SECONDS => Self::Global {
                not_before: seconds_to_ms(r.i64()?),
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
