//! Secret-bearing values: zeroized on drop, redacted in `Debug`, never `Display` or `Serialize`.
//!
//! Reading the secret takes an explicit call to `expose` so that every place a secret leaves
//! its box is easy to find in review (the pattern of oauth2-rs `new_secret_type!`).

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret bytes (a decoded token segment, a key, a session plaintext).
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when the value is dropped.
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies `bytes` into a new secret.
    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// The secret bytes. Callers must not log or return them to a browser.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl PartialEq for SecretBytes {
    /// Constant-time in the contents (the length is not secret).
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// A secret string (a client secret, a restored token, a PKCE verifier).
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    /// Takes ownership of `s`; it is wiped when the value is dropped.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret text. Callers must not log or return it to a browser.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for SecretString {
    /// Constant-time in the contents (the length is not secret).
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretString {}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Errors
/// When the OS refuses to provide randomness (never on a healthy Linux system); callers turn
/// this into a 500, since nothing secure can be done without it.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// The OS CSPRNG failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_contents() {
        let b = SecretBytes::from_slice(b"hunter2-bytes");
        let s = SecretString::new("hunter2-string".into());
        assert_eq!(format!("{b:?}"), "SecretBytes(<redacted>)");
        assert_eq!(format!("{s:?}"), "SecretString(<redacted>)");
        assert!(!format!("{:#?}", (b, s)).contains("hunter2"));
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(
            SecretBytes::from_slice(b"abc"),
            SecretBytes::from_slice(b"abc")
        );
        assert_ne!(
            SecretBytes::from_slice(b"abc"),
            SecretBytes::from_slice(b"abd")
        );
        assert_ne!(
            SecretBytes::from_slice(b"abc"),
            SecretBytes::from_slice(b"abcd")
        );
        assert_ne!(SecretString::new("a".into()), SecretString::new("b".into()));
    }

    #[test]
    fn random_fills_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
