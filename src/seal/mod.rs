//! The sealed, chunked cookie: seal a payload into cookie values, open them back.
//!
//! # Wire format (version 2)
//!
//! ```text
//! wire   = version(1) | key id(1) | chunk count(1) | nonce(24) | ciphertext | tag(16)
//! value  = base64url(wire), no padding, split into chunks <name>.0 … <name>.N-1
//! aad    = "sealgate" | 0x00 | version | key id | chunk count | purpose | 0x00 | name
//! plain  = expires_at (postcard zigzag varint, unix seconds) | payload
//! ```
//!
//! The three header bytes are both sent in clear and authenticated as associated data, together
//! with the purpose (`session` / `login`) and the cookie's base name, so a value sealed for one
//! cookie, purpose or format version never opens as another. The expiry sits inside the
//! ciphertext so it cannot be moved; `open` rejects a value at or after it.
//!
//! Chunking: every `Set-Cookie` name + `=` + value stays under [`MAX_COOKIE_BYTES`]. Chunk
//! lengths are canonical (every chunk but the last is exactly as long as its budget allows,
//! rounded down to whole base64 quanta), so a given wire value has exactly one cookie form.
//! Chunk 0 carries the authenticated count; chunks at or past it are stale leftovers of an
//! earlier, larger session, ignored and reported for deletion. At most `max_chunks` (default
//! [`DEFAULT_MAX_CHUNKS`]) chunks are read, so hostile input costs bounded work.

pub(crate) mod jar;
pub(crate) mod keys;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Tag, XNonce};
use zeroize::Zeroizing;

pub use jar::ChunkSet;
pub(crate) use keys::KeyError;
pub use keys::KeyRing;

use crate::secret::{RandomError, fill_random};

/// Current wire format version. Version 2 added the session's millisecond stamp to the session
/// plaintext; the envelope is the same.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The oldest version still opened (its payload is decoded by the caller, which knows the
/// version from [`Opened::version`]); such a value reports `current_key: false`, so it is
/// resealed in the current version on its next use.
pub(crate) const OLDEST_FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 3;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext (header, nonce, tag).
pub(crate) const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Each chunk's `name=value` stays strictly below this many bytes: browsers drop cookies whose
/// name and value exceed 4,096 bytes, and some count attributes too.
pub(crate) const MAX_COOKIE_BYTES: usize = 4000;
/// Default maximum number of chunks per cookie.
pub(crate) const DEFAULT_MAX_CHUNKS: u8 = 4;
const AAD_LABEL: &[u8] = b"sealgate\0";
const MAX_NAME_LEN: usize = 96;

/// What a sealed value is for; part of the associated data and of the cookie attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The session cookie (`SameSite=Strict`).
    Session,
    /// A pending login flow (`SameSite=Lax`: the callback is a cross-site top-level GET).
    Login,
    /// A refresh result shared between instances through Redis (never a cookie).
    Refresh,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"session",
            Purpose::Login => b"login",
            Purpose::Refresh => b"refresh",
        }
    }
}

/// A validated cookie base name: `__Host-` prefix, then ASCII letters, digits, `-` and `_`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CookieName(String);

/// A cookie name that sealgate will not use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "cookie name {0:?} is invalid: it must start with \"__Host-\" and continue with at most {MAX_NAME_LEN} ASCII letters, digits, '-' or '_'"
)]
pub struct NameError(String);

impl CookieName {
    /// Validates `name`.
    ///
    /// # Errors
    /// When the name lacks the `__Host-` prefix, is too long, or has other characters.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let ok = name
            .strip_prefix("__Host-")
            .is_some_and(|rest| !rest.is_empty())
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(name))
        } else {
            Err(NameError(name))
        }
    }

    /// The base name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of chunk `index`: `<name>.<index>`.
    pub fn chunk(&self, index: u8) -> String {
        format!("{}.{index}", self.0)
    }

    fn chunk_name_len(&self, index: u8) -> usize {
        let digits = match index {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        self.0.len() + 1 + digits
    }

    /// Value bytes chunk `index` may hold: name + `=` + value < [`MAX_COOKIE_BYTES`], rounded
    /// down to whole base64 quanta.
    fn chunk_capacity(&self, index: u8) -> usize {
        (MAX_COOKIE_BYTES - 2 - self.chunk_name_len(index)) / 4 * 4
    }
}

impl fmt::Debug for CookieName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CookieName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The payload needs more chunks than allowed.
    #[error(
        "sealed value needs {needed_bytes} cookie bytes, more than {max_chunks} chunks of under {MAX_COOKIE_BYTES} bytes can carry"
    )]
    TooLarge {
        /// Base64 length of the sealed value.
        needed_bytes: usize,
        /// The configured maximum chunk count.
        max_chunks: u8,
    },
    /// The OS CSPRNG failed.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Why cookies could not be opened. Every variant means "no valid value"; the distinction is
/// for logs and metrics, never for the browser.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// There is no chunk 0: the browser has no such cookie.
    #[error("no cookie")]
    Absent,
    /// The same chunk name appeared twice.
    #[error("duplicate cookie chunk")]
    DuplicateChunk,
    /// Not base64url, too short, or non-canonical chunking.
    #[error("malformed sealed value")]
    Malformed,
    /// A format version this build does not read.
    #[error("unsupported format version")]
    UnsupportedVersion,
    /// The header names zero chunks, or more than the configured maximum.
    #[error("chunk count out of range")]
    TooManyChunks,
    /// A chunk below the authenticated count is missing.
    #[error("missing cookie chunk")]
    MissingChunk,
    /// No key in the ring has the value's key id.
    #[error("unknown key id")]
    UnknownKey,
    /// Authentication failed: tampered, spliced, or sealed for another name or purpose.
    #[error("authentication failed")]
    Tampered,
    /// The sealed expiry has passed.
    #[error("expired")]
    Expired,
}

/// A sealed value, as cookie chunk values in order.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Chunk values; chunk `i` is sent as `<name>.<i>`.
    pub chunks: Vec<String>,
    /// Unix time (seconds) after which the value no longer opens.
    pub expires_at: i64,
}

impl Sealed {
    /// Total bytes the browser sends back for these chunks (`name=value`, without separators).
    pub fn cookie_bytes(&self, name: &CookieName) -> usize {
        (0u8..)
            .zip(&self.chunks)
            .map(|(i, c)| name.chunk_name_len(i) + 1 + c.len())
            .sum()
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("chunks", &self.chunks.len())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An opened value: the plaintext payload and what the caller needs to decide on resealing.
pub struct Opened {
    buf: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
    /// The sealed expiry (unix seconds).
    pub expires_at: i64,
    /// Whether it was sealed under the current key in the current format version; if not,
    /// reseal to rotate.
    pub current_key: bool,
    /// How many chunks the value used.
    pub chunk_count: u8,
    /// The format version it was sealed in (the payload's schema may depend on it).
    pub version: u8,
}

impl Opened {
    /// The payload that was sealed.
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("payload", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("current_key", &self.current_key)
            .field("version", &self.version)
            .finish()
    }
}

/// Seals and opens values with a key ring and a chunk limit. Pure apart from the nonce.
#[derive(Debug)]
pub struct Codec {
    keys: KeyRing,
    max_chunks: u8,
}

impl Codec {
    /// A codec reading and writing at most `max_chunks` chunks (clamped to 1..=255).
    pub fn new(keys: KeyRing, max_chunks: u8) -> Self {
        Self {
            keys,
            max_chunks: max_chunks.max(1),
        }
    }

    /// The chunk limit.
    pub fn max_chunks(&self) -> u8 {
        self.max_chunks
    }

    /// Seals `payload` for `purpose` under cookie `name`, valid until `expires_at`.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] when it would not fit in `max_chunks` cookies.
    pub fn seal(
        &self,
        purpose: Purpose,
        name: &CookieName,
        expires_at: i64,
        payload: &[u8],
    ) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        self.seal_with_nonce(purpose, name, expires_at, payload, nonce)
    }

    /// [`Codec::seal`] with a caller-chosen nonce: only for known-answer tests. A nonce must
    /// never repeat under one key.
    #[doc(hidden)]
    pub fn seal_with_nonce(
        &self,
        purpose: Purpose,
        name: &CookieName,
        expires_at: i64,
        payload: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Sealed, SealError> {
        let mut exp = [0u8; 10];
        // Invariant: a zigzag varint of an i64 is at most 10 bytes, so this cannot fail.
        let exp_len = postcard::to_slice(&expires_at, &mut exp).map_or(0, |s| s.len());
        let wire_len = OVERHEAD + exp_len + payload.len();
        let b64_len = base64_len(wire_len);
        let count = self.chunk_count(name, b64_len).ok_or(SealError::TooLarge {
            needed_bytes: b64_len,
            max_chunks: self.max_chunks,
        })?;

        let key = self.keys.current();
        let header = [FORMAT_VERSION, key.id, count];
        let mut wire = Vec::with_capacity(wire_len);
        wire.extend_from_slice(&header);
        wire.extend_from_slice(&nonce);
        wire.extend_from_slice(&exp[..exp_len]);
        wire.extend_from_slice(payload);
        let aad = associated_data(header, purpose, name);
        let tag = key
            .cipher
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &aad,
                (&mut wire[HEADER_LEN + NONCE_LEN..]).into(),
            )
            .map_err(|_| SealError::TooLarge {
                needed_bytes: b64_len,
                max_chunks: self.max_chunks,
            })?;
        wire.extend_from_slice(&tag);

        let encoded = URL_SAFE_NO_PAD.encode(&wire);
        let mut chunks = Vec::with_capacity(usize::from(count));
        let mut rest = encoded.as_str();
        for i in 0..count {
            let take = rest.len().min(name.chunk_capacity(i));
            let (head, tail) = rest.split_at(take);
            chunks.push(head.to_owned());
            rest = tail;
        }
        Ok(Sealed { chunks, expires_at })
    }

    /// Opens the value in `chunks` sealed for `purpose` under `name`, as of `now`.
    ///
    /// # Errors
    /// An [`OpenError`] saying why there is no valid value.
    pub fn open(
        &self,
        purpose: Purpose,
        name: &CookieName,
        chunks: &ChunkSet<'_>,
        now: i64,
    ) -> Result<Opened, OpenError> {
        if chunks.has_duplicate() {
            return Err(OpenError::DuplicateChunk);
        }
        let first = chunks.get(0).ok_or(OpenError::Absent)?;
        let mut header = [0u8; 4];
        let first_quantum = first.get(..4).ok_or(OpenError::Malformed)?;
        if URL_SAFE_NO_PAD.decode_slice(first_quantum, &mut header) != Ok(3) {
            return Err(OpenError::Malformed);
        }
        let [version, key_id, count, _] = header;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(OpenError::UnsupportedVersion);
        }
        if count == 0 || count > self.max_chunks {
            return Err(OpenError::TooManyChunks);
        }

        // One chunk (the common case) is decoded in place; several are joined first.
        let joined;
        let encoded: &str = if count == 1 {
            if first.len() > name.chunk_capacity(0) {
                return Err(OpenError::Malformed);
            }
            first
        } else {
            let mut all = String::with_capacity(usize::from(count) * MAX_COOKIE_BYTES);
            for i in 0..count {
                let chunk = chunks.get(i).ok_or(OpenError::MissingChunk)?;
                let last = i + 1 == count;
                let cap = name.chunk_capacity(i);
                // Canonical chunking: full chunks except the last, which is non-empty.
                if (!last && chunk.len() != cap)
                    || (last && (chunk.is_empty() || chunk.len() > cap))
                {
                    return Err(OpenError::Malformed);
                }
                all.push_str(chunk);
            }
            joined = all;
            &joined
        };

        let mut wire = Zeroizing::new(vec![0u8; encoded.len() * 3 / 4 + 3]);
        let len = URL_SAFE_NO_PAD
            .decode_slice(encoded.as_bytes(), &mut wire[..])
            .map_err(|_| OpenError::Malformed)?;
        wire.truncate(len);
        if len < OVERHEAD {
            return Err(OpenError::Malformed);
        }

        let aad = associated_data([version, key_id, count], purpose, name);
        let body = HEADER_LEN + NONCE_LEN..len - TAG_LEN;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wire[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let nonce = XNonce::from(nonce);
        let tag = Tag::try_from(&wire[len - TAG_LEN..]).map_err(|_| OpenError::Malformed)?;

        let mut candidates = self.keys.with_id(key_id).peekable();
        if candidates.peek().is_none() {
            return Err(OpenError::UnknownKey);
        }
        let current_id = self.keys.current().id;
        let mut opened_with = None;
        for (n, key) in candidates.enumerate() {
            // A failed attempt verifies the tag before touching the buffer, so the next key
            // sees the original ciphertext.
            if key
                .cipher
                .decrypt_inout_detached(&nonce, &aad, (&mut wire[body.clone()]).into(), &tag)
                .is_ok()
            {
                opened_with = Some(n == 0 && key_id == current_id);
                break;
            }
        }
        let current_key = opened_with.ok_or(OpenError::Tampered)?;
        // `current_key` is only right when the current key is first among same-id keys, which
        // `with_id` guarantees (it keeps ring order and the current key is first in the ring).

        let (expires_at, rest) = postcard::take_from_bytes::<i64>(&wire[body.clone()])
            .map_err(|_| OpenError::Malformed)?;
        if now >= expires_at {
            return Err(OpenError::Expired);
        }
        let start = body.end - rest.len();
        Ok(Opened {
            buf: wire,
            start,
            end: body.end,
            expires_at,
            current_key: current_key && version == FORMAT_VERSION,
            chunk_count: count,
            version,
        })
    }

    /// The smallest chunk count that holds `b64_len` bytes, if within the limit.
    fn chunk_count(&self, name: &CookieName, b64_len: usize) -> Option<u8> {
        let mut room = 0;
        for i in 0..self.max_chunks {
            room += name.chunk_capacity(i);
            if room >= b64_len {
                return Some(i + 1);
            }
        }
        None
    }
}

fn associated_data(header: [u8; HEADER_LEN], purpose: Purpose, name: &CookieName) -> Vec<u8> {
    let label = purpose.label();
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + HEADER_LEN + label.len() + 1 + name.0.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(&header);
    aad.extend_from_slice(label);
    aad.push(0);
    aad.extend_from_slice(name.0.as_bytes());
    aad
}

/// The chunk count a sealed value declares in its header (the first four characters of chunk
/// 0), without opening it: opening reads chunks `0..count` and ignores any others.
pub(crate) fn declared_chunks(chunks: &ChunkSet<'_>) -> Option<u8> {
    let mut header = [0u8; 4];
    let first_quantum = chunks.get(0)?.get(..4)?;
    (URL_SAFE_NO_PAD.decode_slice(first_quantum, &mut header) == Ok(3)).then_some(header[2])
}

/// Length of unpadded base64 for `n` bytes.
const fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

#[cfg(test)]
mod tests;
