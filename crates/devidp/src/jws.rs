//! Compact JWS (RFC 7515 §7.1) signing with an exact header: the development IdP signs its
//! tokens with it, and the test IdP also forges with it (any header, any algorithm).
//!
//! The signature itself is `jsonwebtoken`'s; only the compact serialization is done here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Serialize;

/// Why a token could not be signed.
pub type SignError = jsonwebtoken::errors::Error;

/// One base64url (no padding) segment holding `value` as JSON.
///
/// # Errors
/// When `value` cannot be serialized to JSON (e.g. a map with non-string keys).
pub fn segment<T: Serialize + ?Sized>(value: &T) -> Result<String, SignError> {
    let json = serde_json::to_vec(value).map_err(SignError::from)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// A compact JWS of `claims` with exactly `header`, signed with `key` under `alg`. `alg` need
/// not be the header's (the test IdP mislabels on purpose); callers that mean it pass the
/// same.
///
/// # Errors
/// When a part cannot be serialized or the key does not fit `alg`.
pub fn sign_compact<H, C>(
    header: &H,
    claims: &C,
    key: &EncodingKey,
    alg: Algorithm,
) -> Result<String, SignError>
where
    H: Serialize + ?Sized,
    C: Serialize + ?Sized,
{
    let message = format!("{}.{}", segment(header)?, segment(claims)?);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg)?;
    Ok(format!("{message}.{signature}"))
}
