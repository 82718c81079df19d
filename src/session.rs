//! The session: what the sealed cookie carries, and its compact binary encoding.
//!
//! The encoding is postcard (varints, length-prefixed byte strings; no field names) over a
//! private wire struct that borrows from the plaintext, so decoding copies each token once, into
//! its zeroizing home. Timestamps after `issued_at` are stored as deltas from it (the millisecond `stamp` from
//! `issued_at` × 1000). `sub` and
//! `sid` are stored as a reference into the ID token's claims when their exact bytes occur there
//! (they always do for a conforming IdP), which spares ~70 bytes of cookie; otherwise inline.
//! When the ID token is absent, a back reference is impossible and the values are inline. The
//! ID token's header is stored as a reference to the access token's header when the two are
//! byte-identical (common: both are signed by the same key). Neither is general-purpose
//! compression: nothing attacker-chosen is ever matched against a secret.
//!
//! A DPoP session ([`SessionDpop`]) appends its key (private scalar and public point, ring's
//! smallest rebuildable form) and its token type after the last field of format 2: a session
//! without DPoP encodes exactly as before (not one byte more), so the format version stays 2.
//! An older sealgate refuses a DPoP session as malformed (trailing bytes), the same outcome a
//! version bump would have.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::dpop::{DpopKey, TokenType};
use crate::secret::{RandomError, SecretBytes, SecretString, fill_random};
use crate::token::{Form, MAX_SEGMENTS, Token};

const MS_PER_SEC: i64 = 1000;

/// A 128-bit session id from the OS CSPRNG. `Debug` shows only a fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A new random id.
    ///
    /// # Errors
    /// When the OS CSPRNG fails.
    pub fn generate() -> Result<Self, RandomError> {
        let mut id = [0u8; 16];
        fill_random(&mut id)?;
        Ok(Self(id))
    }

    /// Wraps raw id bytes (decoding, tests).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw id (for the revocation denylist; never logged).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A short hash of the id for logs: correlates requests without revealing the id.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.fingerprint())
    }
}

/// A signed-in user's session.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Session {
    /// Fresh at every login; the revocation key for logout.
    pub id: SessionId,
    /// The name of the `[[providers]]` entry that issued the tokens; empty for a lone `[oidc]`.
    /// A session whose provider is no longer configured is refused.
    pub provider: String,
    /// The IdP's subject identifier.
    pub sub: String,
    /// The IdP session id (`sid` claim), for back-channel logout.
    pub sid: Option<String>,
    /// Unix seconds when the session was created.
    pub issued_at: i64,
    /// Unix milliseconds that revocation not-before times are compared with (a session is
    /// revoked by an entry whose not-before is at or after its stamp): the creation time, moved
    /// just past every revocation this instance already applied that would otherwise catch it,
    /// so a login that follows a logout is never caught by that logout
    /// ([`crate::revocation::Denylist::stamp`]). Never moves after creation.
    pub stamp: i64,
    /// Unix seconds of the last successful grant at the IdP: the login's code exchange or the
    /// latest refresh. `[session] revalidate_every` counts from it.
    pub granted_at: i64,
    /// Unix seconds of the last request that re-sealed the cookie.
    pub last_seen: i64,
    /// Unix seconds after which the session is idle-expired.
    pub idle_expires_at: i64,
    /// Unix seconds after which the session is over, whatever happens; never moves.
    pub absolute_expires_at: i64,
    /// The access token sent upstream.
    pub access_token: Token,
    /// When the access token expires, if the IdP said.
    pub access_expires_at: Option<i64>,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<Token>,
    /// The ID token (for `id_token_hint` and claims), unless dropped by configuration.
    pub id_token: Option<Token>,
    /// The session's own DPoP key (RFC 9449), when its provider had `dpop = true` at login.
    pub dpop: Option<SessionDpop>,
}

/// A DPoP session's key and how its access token was typed. A session's DPoP use is decided at
/// login and sealed: its refreshes and route grants carry proofs of this key whatever the
/// configuration says later.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SessionDpop {
    /// Generated at login, never shared with another session.
    pub key: DpopKey,
    /// `DPoP` when the IdP bound the access token to the key (sent as `Authorization: DPoP`
    /// with a proof), `Bearer` when it did not (sent as a bearer token, no proof).
    pub token_type: TokenType,
}

impl SessionDpop {
    /// Whether the access token is bound to the key.
    pub(crate) fn bound(&self) -> bool {
        self.token_type == TokenType::Dpop
    }
}

/// The DPoP extension after the last field of [`Wire`].
#[derive(Serialize, Deserialize)]
struct WireDpop<'a> {
    private: &'a [u8],
    public: &'a [u8],
    bound: bool,
}

/// A session plaintext that does not decode.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// The bytes are not a valid session encoding.
    #[error("malformed session plaintext")]
    Malformed,
    /// The session cannot be encoded (a reference out of range: a bug, not input).
    #[error("session cannot be encoded")]
    Unencodable,
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    id: [u8; 16],
    /// Format 1 had a `u8` 0 here, the same byte as an empty string: the lone provider.
    provider: &'a str,
    issued_at: i64,
    last_seen: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    access_expires_at: Option<i64>,
    #[serde(borrow)]
    sub: Text<'a>,
    #[serde(borrow)]
    sid: Option<Text<'a>>,
    #[serde(borrow)]
    access_token: WireToken<'a>,
    #[serde(borrow)]
    refresh_token: Option<WireToken<'a>>,
    #[serde(borrow)]
    id_token: Option<WireToken<'a>>,
    /// `granted_at - issued_at`.
    granted_at: i64,
    /// `stamp - issued_at * 1000`. Last on purpose, after `granted_at`: format version 1 is
    /// version 2 without these two fields, so a version-1 plaintext decodes as version 2 with
    /// `0x00 0x00` (both deltas 0) appended.
    stamp: i64,
}

/// A short string, inline or as a byte range of the ID token's claims.
#[derive(Serialize, Deserialize)]
enum Text<'a> {
    Inline(&'a str),
    InIdClaims { start: u32, len: u32 },
}

#[derive(Serialize, Deserialize)]
enum WireToken<'a> {
    Dotted(#[serde(borrow)] Vec<&'a [u8]>),
    /// Dotted, with the first segment equal to the access token's first segment.
    DottedSharedHeader(#[serde(borrow)] Vec<&'a [u8]>),
    Base64(&'a [u8]),
    Raw(&'a str),
}

impl<'a> WireToken<'a> {
    fn from_token(t: &'a Token) -> Self {
        match &t.0 {
            Form::Dotted(s) => WireToken::Dotted(s.iter().map(SecretBytes::expose).collect()),
            Form::Base64(b) => WireToken::Base64(b.expose()),
            Form::Raw(s) => WireToken::Raw(s.expose()),
        }
    }

    fn into_token(self, access_header: Option<&[u8]>) -> Result<Token, SessionError> {
        Ok(Token(match self {
            WireToken::Dotted(s) if (2..=MAX_SEGMENTS).contains(&s.len()) => {
                Form::Dotted(s.into_iter().map(SecretBytes::from_slice).collect())
            }
            WireToken::DottedSharedHeader(rest) if (1..MAX_SEGMENTS).contains(&rest.len()) => {
                let header = access_header.ok_or(SessionError::Malformed)?;
                Form::Dotted(
                    std::iter::once(header)
                        .chain(rest)
                        .map(SecretBytes::from_slice)
                        .collect(),
                )
            }
            WireToken::Dotted(_) | WireToken::DottedSharedHeader(_) => {
                return Err(SessionError::Malformed);
            }
            WireToken::Base64(b) => Form::Base64(SecretBytes::from_slice(b)),
            WireToken::Raw(s) => Form::Raw(SecretString::new(s.to_owned())),
        }))
    }
}

/// What the lifetime rules say about a session at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid; no need to write the cookie again.
    Fresh,
    /// Valid, and past half the idle window: re-seal with a new last-seen time.
    Renew,
    /// Past the idle expiry.
    IdleExpired,
    /// Past the absolute expiry.
    AbsoluteExpired,
}

impl Session {
    /// The ID token's claims (validated at login or refresh), or none when no ID token is kept.
    pub(crate) fn id_claims(&self) -> serde_json::Map<String, serde_json::Value> {
        self.id_token
            .as_ref()
            .and_then(Token::jws_payload)
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or_default()
    }

    /// Applies the lifetime rules at `now`, from the sealed timestamps alone.
    pub fn validity(&self, now: i64) -> Validity {
        if now >= self.absolute_expires_at {
            Validity::AbsoluteExpired
        } else if now >= self.idle_expires_at {
            Validity::IdleExpired
        } else if now.saturating_sub(self.last_seen)
            >= self.idle_expires_at.saturating_sub(self.last_seen) / 2
        {
            Validity::Renew
        } else {
            Validity::Fresh
        }
    }

    /// Slides the idle window: last seen now, idle expiry `idle_timeout` seconds on, never past
    /// the absolute expiry (which never moves).
    pub fn renew(&mut self, now: i64, idle_timeout: i64) {
        self.last_seen = now;
        self.idle_expires_at = now
            .saturating_add(idle_timeout)
            .min(self.absolute_expires_at);
    }

    /// The cookie's hard expiry: the earlier of the idle and absolute expiries.
    pub fn expires_at(&self) -> i64 {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// Encodes the session (the plaintext that gets sealed).
    ///
    /// # Errors
    /// [`SessionError::Unencodable`] only if serialization itself fails.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let claims = self.id_token.as_ref().and_then(Token::jws_payload);
        let access = WireToken::from_token(&self.access_token);
        let id_token = self
            .id_token
            .as_ref()
            .map(|t| match (WireToken::from_token(t), &access) {
                (WireToken::Dotted(id), WireToken::Dotted(acc)) if id[0] == acc[0] => {
                    WireToken::DottedSharedHeader(id[1..].to_vec())
                }
                (other, _) => other,
            });
        let wire = Wire {
            id: self.id.0,
            provider: &self.provider,
            issued_at: self.issued_at,
            last_seen: self.last_seen.wrapping_sub(self.issued_at),
            idle_expires_at: self.idle_expires_at.wrapping_sub(self.issued_at),
            absolute_expires_at: self.absolute_expires_at.wrapping_sub(self.issued_at),
            access_expires_at: self
                .access_expires_at
                .map(|t| t.wrapping_sub(self.issued_at)),
            sub: Text::new(&self.sub, claims),
            sid: self.sid.as_deref().map(|s| Text::new(s, claims)),
            access_token: access,
            refresh_token: self.refresh_token.as_ref().map(WireToken::from_token),
            id_token,
            granted_at: self.granted_at.wrapping_sub(self.issued_at),
            stamp: self
                .stamp
                .wrapping_sub(self.issued_at.wrapping_mul(MS_PER_SEC)),
        };
        let dpop = self.dpop.as_ref().map(|d| WireDpop {
            private: d.key.private_scalar(),
            public: d.key.public_point(),
            bound: d.bound(),
        });
        let size = postcard::experimental::serialized_size(&wire)
            .map_err(|_| SessionError::Unencodable)?;
        let extension = match &dpop {
            Some(d) => {
                postcard::experimental::serialized_size(d).map_err(|_| SessionError::Unencodable)?
            }
            None => 0,
        };
        let mut out = Zeroizing::new(vec![0u8; size + extension]);
        postcard::to_slice(&wire, &mut out[..size]).map_err(|_| SessionError::Unencodable)?;
        if let Some(d) = &dpop {
            postcard::to_slice(d, &mut out[size..]).map_err(|_| SessionError::Unencodable)?;
        }
        Ok(out)
    }

    /// Decodes a session plaintext sealed under cookie format `version` (see [`crate::seal`]).
    /// Version 1 had no stamp and no grant time: its sessions get the first millisecond of their
    /// creation second as stamp, the safe side (a revocation made in that second still catches
    /// them), and their creation as last grant, also the safe side (a revalidation comes no
    /// later than it would have).
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for anything that is not a session encoding of `version`.
    pub fn decode_version(bytes: &[u8], version: u8) -> Result<Self, SessionError> {
        match version {
            1 => {
                let mut v2 = Zeroizing::new(Vec::with_capacity(bytes.len() + 2));
                v2.extend_from_slice(bytes);
                v2.extend_from_slice(&[0, 0]); // granted_at and stamp deltas: 0
                Self::decode(&v2)
            }
            2 => Self::decode(bytes),
            _ => Err(SessionError::Malformed),
        }
    }

    /// Decodes a session plaintext of the current format. Never panics; trailing bytes are an
    /// error.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for anything that is not a session encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        let (w, rest): (Wire<'_>, _) =
            postcard::take_from_bytes(bytes).map_err(|_| SessionError::Malformed)?;
        let dpop = if rest.is_empty() {
            None
        } else {
            let (d, rest): (WireDpop<'_>, _) =
                postcard::take_from_bytes(rest).map_err(|_| SessionError::Malformed)?;
            if !rest.is_empty() {
                return Err(SessionError::Malformed);
            }
            let key =
                DpopKey::from_parts(d.private, d.public).map_err(|_| SessionError::Malformed)?;
            let token_type = if d.bound {
                TokenType::Dpop
            } else {
                TokenType::Bearer
            };
            Some(SessionDpop { key, token_type })
        };
        let access_header = match &w.access_token {
            WireToken::Dotted(s) => s.first().copied(),
            _ => None,
        };
        let id_token = w
            .id_token
            .map(|t| t.into_token(access_header))
            .transpose()?;
        let claims = id_token.as_ref().and_then(Token::jws_payload);
        let issued_at = w.issued_at;
        Ok(Self {
            id: SessionId(w.id),
            provider: w.provider.to_owned(),
            sub: w.sub.resolve(claims)?,
            sid: w.sid.map(|s| s.resolve(claims)).transpose()?,
            issued_at,
            granted_at: issued_at.wrapping_add(w.granted_at),
            last_seen: issued_at.wrapping_add(w.last_seen),
            idle_expires_at: issued_at.wrapping_add(w.idle_expires_at),
            absolute_expires_at: issued_at.wrapping_add(w.absolute_expires_at),
            stamp: issued_at.wrapping_mul(MS_PER_SEC).wrapping_add(w.stamp),
            access_expires_at: w.access_expires_at.map(|d| issued_at.wrapping_add(d)),
            access_token: w.access_token.into_token(None)?,
            refresh_token: w.refresh_token.map(|t| t.into_token(None)).transpose()?,
            id_token,
            dpop,
        })
    }
}

impl<'a> Text<'a> {
    fn new(value: &'a str, claims: Option<&[u8]>) -> Self {
        let needle = value.as_bytes();
        let found = claims.filter(|_| !needle.is_empty()).and_then(|c| {
            c.windows(needle.len())
                .position(|w| w == needle)
                .and_then(|start| {
                    Some((
                        u32::try_from(start).ok()?,
                        u32::try_from(needle.len()).ok()?,
                    ))
                })
        });
        match found {
            Some((start, len)) => Text::InIdClaims { start, len },
            None => Text::Inline(value),
        }
    }

    fn resolve(self, claims: Option<&[u8]>) -> Result<String, SessionError> {
        let bytes = match self {
            Text::Inline(s) => return Ok(s.to_owned()),
            Text::InIdClaims { start, len } => {
                let start = usize::try_from(start).map_err(|_| SessionError::Malformed)?;
                let end = start
                    .checked_add(usize::try_from(len).map_err(|_| SessionError::Malformed)?)
                    .ok_or(SessionError::Malformed)?;
                claims
                    .and_then(|c| c.get(start..end))
                    .ok_or(SessionError::Malformed)?
            }
        };
        String::from_utf8(bytes.to_vec()).map_err(|_| SessionError::Malformed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn sample() -> Session {
        Session {
            id: SessionId::from_bytes([9; 16]),
            provider: String::new(),
            sub: "248289761001".into(),
            sid: Some("08a5019c-17e1-4977-8f42-65a12843ea02".into()),
            issued_at: 1_800_000_000,
            stamp: 1_800_000_000_250,
            granted_at: 1_800_000_090,
            last_seen: 1_800_000_100,
            idle_expires_at: 1_800_001_300,
            absolute_expires_at: 1_800_028_800,
            access_token: Token::from_issued(
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIyNDgyODk3NjEwMDEifQ.c2ln",
            ),
            access_expires_at: Some(1_800_000_300),
            refresh_token: Some(Token::from_issued("8xLOxBtZp8")),
            id_token: Some(Token::from_issued(
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIyNDgyODk3NjEwMDEiLCJzaWQiOiIwOGE1MDE5Yy0xN2UxLTQ5NzctOGY0Mi02NWExMjg0M2VhMDIifQ.c2ln",
            )),
            dpop: None,
        }
    }

    #[test]
    fn round_trip_with_references() {
        let s = sample();
        let bytes = s.encode().unwrap();
        assert_eq!(Session::decode(&bytes).unwrap(), s);
        // sub and sid are references into the ID token claims, not third copies: sub occurs in
        // the access and ID token payloads only, sid in the ID token only.
        let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(b"248289761001"), 2);
        assert_eq!(count(s.sid.as_deref().unwrap().as_bytes()), 1);
    }

    #[test]
    fn lifetime_rules() {
        let mut s = sample(); // issued 1_800_000_000, last seen +100, idle until +1300, absolute +28800
        assert_eq!(s.validity(1_800_000_200), Validity::Fresh);
        assert_eq!(s.validity(1_800_000_700), Validity::Renew);
        assert_eq!(s.validity(1_800_001_300), Validity::IdleExpired);
        s.renew(1_800_000_700, 1200);
        assert_eq!(
            (s.last_seen, s.idle_expires_at),
            (1_800_000_700, 1_800_001_900)
        );
        assert_eq!(s.absolute_expires_at, 1_800_028_800);
        s.renew(1_800_028_000, 1200);
        assert_eq!(
            s.idle_expires_at, 1_800_028_800,
            "never past the absolute expiry"
        );
        assert_eq!(s.validity(1_800_028_800), Validity::AbsoluteExpired);
    }

    #[test]
    fn round_trip_without_id_token() {
        let mut s = sample();
        s.id_token = None;
        s.sid = None;
        s.refresh_token = None;
        s.access_expires_at = None;
        let bytes = s.encode().unwrap();
        assert_eq!(Session::decode(&bytes).unwrap(), s);
    }

    #[test]
    fn trailing_bytes_and_bad_references_are_malformed() {
        let mut bytes = sample().encode().unwrap().to_vec();
        bytes.push(0);
        assert_eq!(Session::decode(&bytes), Err(SessionError::Malformed));
        assert_eq!(Session::decode(&[]), Err(SessionError::Malformed));
        let w = Wire {
            id: [0; 16],
            provider: "",
            issued_at: 0,
            last_seen: 0,
            idle_expires_at: 0,
            absolute_expires_at: 0,
            access_expires_at: None,
            sub: Text::InIdClaims { start: 0, len: 4 },
            sid: None,
            access_token: WireToken::Raw("a"),
            refresh_token: None,
            id_token: None,
            granted_at: 0,
            stamp: 0,
        };
        let bytes = postcard::to_allocvec(&w).unwrap();
        assert_eq!(Session::decode(&bytes), Err(SessionError::Malformed));
    }

    #[test]
    fn a_version_1_plaintext_gets_its_creation_as_grant_and_its_first_millisecond_as_stamp() {
        let s = sample();
        let v2 = s.encode().unwrap();
        // Version 1 is version 2 without the trailing grant and stamp deltas (90 and 250 here,
        // zigzag varints of two bytes each; strip what they took).
        let deltas_len = postcard::to_allocvec(&(90_i64, 250_i64)).unwrap().len();
        assert_eq!(&v2[v2.len() - deltas_len..], &[0xb4, 0x01, 0xf4, 0x03]);
        let v1 = &v2[..v2.len() - deltas_len];
        let old = Session::decode_version(v1, 1).unwrap();
        assert_eq!(old.stamp, 1_800_000_000_000);
        assert_eq!(old.granted_at, 1_800_000_000, "granted at its creation");
        assert_eq!(
            Session {
                stamp: s.stamp,
                granted_at: s.granted_at,
                ..old
            },
            s,
            "everything else decodes as before"
        );
        assert_eq!(Session::decode_version(&v2, 2).unwrap(), s);
        assert_eq!(
            Session::decode_version(&v2, 1),
            Err(SessionError::Malformed),
            "a version-2 plaintext is not a version-1 one"
        );
        assert_eq!(
            Session::decode_version(&v2[..v2.len() - 2], 2),
            Err(SessionError::Malformed),
            "a version-2 plaintext without its stamp is not one"
        );
        assert_eq!(
            Session::decode_version(&v2, 3),
            Err(SessionError::Malformed)
        );
    }

    #[test]
    fn the_grant_time_round_trips_and_is_stored_as_a_delta() {
        let mut s = sample();
        let len = s.encode().unwrap().len();
        s.granted_at = s.issued_at;
        let at_issue = s.encode().unwrap();
        assert_eq!(Session::decode(&at_issue).unwrap(), s);
        assert_eq!(
            at_issue.len(),
            len - 1,
            "delta 0 takes one byte, delta 90 two"
        );
        s.granted_at = s.issued_at + 7_200;
        assert_eq!(Session::decode(&s.encode().unwrap()).unwrap(), s);
    }

    #[test]
    fn a_dpop_session_round_trips_and_a_plain_one_does_not_grow() {
        let plain = sample();
        let plain_bytes = plain.encode().unwrap();
        let mut s = sample();
        for token_type in [TokenType::Dpop, TokenType::Bearer] {
            let key = DpopKey::generate().unwrap();
            s.dpop = Some(SessionDpop { key, token_type });
            let bytes = s.encode().unwrap();
            assert_eq!(Session::decode(&bytes).unwrap(), s);
            assert_eq!(Session::decode_version(&bytes, 2).unwrap(), s);
            // Scalar (1 + 32) and point (1 + 65) with their length bytes, the token type (1).
            assert_eq!(bytes.len(), plain_bytes.len() + 100);
            assert_eq!(&bytes[..plain_bytes.len()], &plain_bytes[..], "appended");
        }
        // A tampered key (a point that is not the scalar's) does not open.
        let mut bytes = s.encode().unwrap().to_vec();
        let last_point_byte = bytes.len() - 2;
        bytes[last_point_byte] ^= 1;
        assert_eq!(Session::decode(&bytes), Err(SessionError::Malformed));
        // Nor does junk after the extension.
        let mut bytes = s.encode().unwrap().to_vec();
        bytes.push(0);
        assert_eq!(Session::decode(&bytes), Err(SessionError::Malformed));
    }

    #[test]
    fn debug_shows_no_dpop_key() {
        let mut s = sample();
        let key = DpopKey::generate().unwrap();
        let private = format!("{:?}", key.private_scalar());
        s.dpop = Some(SessionDpop {
            key,
            token_type: TokenType::Dpop,
        });
        let d = format!("{s:?}");
        assert!(!d.contains(&private), "{d}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = sample();
        let d = format!("{s:?}");
        assert!(
            !d.contains("eyJ") && !d.contains("8xLOxBtZp8") && !d.contains("9, 9"),
            "{d}"
        );
    }

    fn token() -> impl Strategy<Value = Token> {
        prop_oneof![
            "[A-Za-z0-9_-]{0,300}(\\.[A-Za-z0-9_-]{0,300}){0,5}",
            "[ -~]{0,200}",
        ]
        .prop_map(|s| Token::from_issued(&s))
    }

    proptest! {
        #[test]
        fn any_session_round_trips(
            id in any::<[u8; 16]>(),
            provider in "[a-z0-9_.-]{0,32}",
            sub in "[ -~]{0,40}",
            sid in proptest::option::of("[ -~]{0,40}"),
            times in any::<[i64; 5]>(),
            granted_at in any::<i64>(),
            stamp in any::<i64>(),
            access_exp in proptest::option::of(any::<i64>()),
            access in token(),
            refresh in proptest::option::of(token()),
            id_token in proptest::option::of(token()),
        ) {
            let s = Session {
                id: SessionId::from_bytes(id),
                provider,
                sub,
                sid,
                issued_at: times[0],
                stamp,
                granted_at,
                last_seen: times[1],
                idle_expires_at: times[2],
                absolute_expires_at: times[3],
                access_token: access,
                access_expires_at: access_exp,
                refresh_token: refresh,
                id_token,
                dpop: None,
            };
            let bytes = s.encode().unwrap();
            prop_assert_eq!(Session::decode(&bytes).unwrap(), s);
        }
    }
}
