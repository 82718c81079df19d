//! Randomness from the operating system's CSPRNG (a copy of sealgate's helper: this crate does
//! not depend on sealgate).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The OS CSPRNG failed.
#[derive(Debug)]
pub struct RandomError(String);

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the operating system's random number generator failed: {}",
            self.0
        )
    }
}

impl std::error::Error for RandomError {}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Errors
/// When the OS refuses to provide randomness (never on a healthy Linux system).
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// A fresh random value: `N` bytes from the OS CSPRNG, base64url without padding.
///
/// # Errors
/// When the OS random number generator fails.
pub fn random_token<const N: usize>() -> Result<String, RandomError> {
    let mut bytes = [0u8; N];
    fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh 32-byte key, standard base64 (the form sealgate's `session.keys` take).
///
/// # Errors
/// When the OS random number generator fails.
pub fn key_base64() -> Result<String, RandomError> {
    let mut key = [0u8; 32];
    fill_random(&mut key)?;
    let encoded = STANDARD.encode(key);
    // The caller gets the only copy.
    key.fill(0);
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_keys_are_fresh_and_well_formed() {
        let a = random_token::<32>().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token::<32>().unwrap());
        let key = STANDARD.decode(key_base64().unwrap()).unwrap();
        assert_eq!(key.len(), 32);
    }
}
