//! The key ring: the first key seals, every key opens.
//!
//! Keys are 32 random bytes given as base64 (standard or URL-safe alphabet, padding optional).
//! Each key has a one-byte id derived from the key itself (`SHA-256("sealgate key id v1" ||
//! key)[0]`), so reordering or adding keys during rotation never changes which key a cookie
//! names. Ids can collide (1 in 256 per pair); opening tries every key with the cookie's id, so a
//! collision costs one extra AEAD attempt and nothing else.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::{RandomError, fill_random};

/// Length of a sealing key in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// A key could not be loaded. `index` is 1-based, in the order the keys were given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// No key was given.
    #[error(
        "no session key configured: at least one is required (generate one with `sealgate keygen`)"
    )]
    Empty,
    /// The key is not base64.
    #[error("session key {index} is not valid base64 (generate one with `sealgate keygen`)")]
    NotBase64 {
        /// 1-based position of the key.
        index: usize,
    },
    /// The key decodes to the wrong number of bytes.
    #[error("session key {index} is {len} bytes long; keys must be exactly 32 random bytes")]
    WrongLength {
        /// 1-based position of the key.
        index: usize,
        /// Decoded length.
        len: usize,
    },
    /// The same key was given twice.
    #[error("session key {index} repeats an earlier key")]
    Duplicate {
        /// 1-based position of the key.
        index: usize,
    },
}

/// One key, ready to use: its id and the cipher keyed with it (wiped on drop by
/// chacha20poly1305's `zeroize` feature).
#[derive(Clone)]
pub(crate) struct SealKey {
    pub(crate) id: u8,
    pub(crate) cipher: XChaCha20Poly1305,
    fingerprint: [u8; 32],
}

/// The ordered set of keys: `current()` seals, all open.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<SealKey>,
}

impl KeyRing {
    /// Builds a ring from base64 keys; the first is the current (sealing) key.
    ///
    /// # Errors
    /// A [`KeyError`] naming the first bad key by position.
    pub fn from_base64<S: AsRef<str>>(keys: &[S]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut ring = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let index = i + 1;
            let bytes = decode_key(k.as_ref().trim(), index)?;
            let key = SealKey::new(&bytes);
            if ring
                .iter()
                .any(|other: &SealKey| other.fingerprint == key.fingerprint)
            {
                return Err(KeyError::Duplicate { index });
            }
            ring.push(key);
        }
        Ok(Self { keys: ring })
    }

    /// Builds a ring from raw 32-byte keys, the first current (tests, benchmarks, fuzzing).
    ///
    /// # Errors
    /// [`KeyError::Empty`] for an empty slice.
    pub fn from_bytes(keys: &[[u8; KEY_LEN]]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self {
            keys: keys.iter().map(SealKey::new).collect(),
        })
    }

    pub(crate) fn current(&self) -> &SealKey {
        // Invariant: both constructors refuse to build an empty ring.
        &self.keys[0]
    }

    /// Keys whose id is `id`, current key first.
    pub(crate) fn with_id(&self, id: u8) -> impl Iterator<Item = &SealKey> {
        self.keys.iter().filter(move |k| k.id == id)
    }

    /// Number of keys in the ring.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing({} keys, <redacted>)", self.keys.len())
    }
}

impl SealKey {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut h = Sha256::new();
        h.update(b"sealgate key id v1");
        h.update(key);
        let fingerprint: [u8; 32] = h.finalize().into();
        Self {
            id: fingerprint[0],
            cipher: XChaCha20Poly1305::new(key.into()),
            fingerprint,
        }
    }
}

fn decode_key(s: &str, index: usize) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    // Decode into a slightly larger buffer so that a too-long key reports its length.
    let mut buf = Zeroizing::new([0u8; 64]);
    let len = STANDARD_PAD_INDIFFERENT
        .decode_slice(s, &mut buf[..])
        .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode_slice(s, &mut buf[..]))
        .map_err(|e| match e {
            base64::DecodeSliceError::OutputSliceTooSmall => KeyError::WrongLength {
                index,
                len: s.len() * 3 / 4,
            },
            base64::DecodeSliceError::DecodeError(_) => KeyError::NotBase64 { index },
        })?;
    if len != KEY_LEN {
        return Err(KeyError::WrongLength { index, len });
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&buf[..KEY_LEN]);
    Ok(key)
}

/// A new key from the OS CSPRNG, as standard base64 (what `sealgate keygen` prints).
///
/// # Errors
/// When the OS random number generator fails.
pub fn generate_key_base64() -> Result<String, RandomError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(&mut key[..])?;
    Ok(base64::engine::general_purpose::STANDARD.encode(&key[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_differ() {
        let a = generate_key_base64().unwrap();
        let b = generate_key_base64().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 44);
        let ring = KeyRing::from_base64(&[a, b]).unwrap();
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn both_alphabets_and_optional_padding_are_accepted() {
        let std = "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/8=";
        let url = "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8";
        let a = KeyRing::from_base64(&[std]).unwrap();
        let b = KeyRing::from_base64(&[url]).unwrap();
        assert_eq!(a.current().fingerprint, b.current().fingerprint);
    }

    #[test]
    fn bad_keys_are_named_by_position() {
        let good = generate_key_base64().unwrap();
        assert_eq!(
            KeyRing::from_base64::<&str>(&[]).unwrap_err(),
            KeyError::Empty
        );
        assert_eq!(
            KeyRing::from_base64(&[good.as_str(), "not base64!"]).unwrap_err(),
            KeyError::NotBase64 { index: 2 }
        );
        assert_eq!(
            KeyRing::from_base64(&["AAAA"]).unwrap_err(),
            KeyError::WrongLength { index: 1, len: 3 }
        );
        let long = base64::engine::general_purpose::STANDARD.encode([7u8; 48]);
        assert_eq!(
            KeyRing::from_base64(&[good.as_str(), good.as_str(), &long]).unwrap_err(),
            KeyError::Duplicate { index: 2 }
        );
        assert!(matches!(
            KeyRing::from_base64(&[long.as_str()]).unwrap_err(),
            KeyError::WrongLength { index: 1, .. }
        ));
    }

    #[test]
    fn debug_redacts() {
        let ring = KeyRing::from_bytes(&[[0x41; 32]]).unwrap();
        let s = format!("{ring:?}");
        assert_eq!(s, "KeyRing(1 keys, <redacted>)");
    }
}
