//! RSA signing keys in their published form: a JWK (RFC 7517) whose `kid` is by default its
//! RFC 7638 thumbprint, and RS256 signing of JWTs with that `kid`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::jws::{SignError, sign_compact};

/// Why a key could not be made or loaded.
#[derive(Debug)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RSA key: {}", self.0)
    }
}

impl std::error::Error for KeyError {}

fn key_error(error: impl fmt::Display) -> KeyError {
    KeyError(error.to_string())
}

/// An RSA key pair for RS256, with its public parts precomputed. `Debug` shows the `kid`
/// only.
#[derive(Clone)]
pub struct RsaKey {
    kid: String,
    n: String,
    e: String,
    public_pem: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RsaKey {
    /// A fresh key of `bits` bits from the OS CSPRNG; its `kid` is its thumbprint. Slow:
    /// milliseconds optimized, seconds in a debug build of `rsa`.
    ///
    /// # Errors
    /// When key generation or encoding fails.
    pub fn generate(bits: usize) -> Result<Self, KeyError> {
        let private = RsaPrivateKey::new(&mut OsRng, bits).map_err(key_error)?;
        Self::from_private(&private, None)
    }

    /// Loads a PKCS#8 PEM private key; `kid` replaces the thumbprint when given.
    ///
    /// # Errors
    /// When the PEM is not an RSA private key in PKCS#8.
    pub fn from_pkcs8_pem(pem: &str, kid: Option<&str>) -> Result<Self, KeyError> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).map_err(key_error)?;
        Self::from_private(&private, kid)
    }

    fn from_private(private: &RsaPrivateKey, kid: Option<&str>) -> Result<Self, KeyError> {
        let public = private.to_public_key();
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        let der = private.to_pkcs1_der().map_err(key_error)?;
        Ok(RsaKey {
            kid: kid.map_or_else(|| thumbprint(&n, &e), str::to_owned),
            public_pem: public
                .to_public_key_pem(LineEnding::LF)
                .map_err(key_error)?,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_components(&n, &e).map_err(key_error)?,
            n,
            e,
        })
    }

    /// The key id in token headers and the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The modulus, base64url without padding (JWK `n`).
    pub fn n(&self) -> &str {
        &self.n
    }

    /// The public exponent, base64url without padding (JWK `e`).
    pub fn e(&self) -> &str {
        &self.e
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`, LF line endings).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The private half, to sign with.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public half, to verify with.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public key as a JWK, as a `jwks_uri` serves it.
    pub fn jwk(&self) -> Value {
        json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": self.n, "e": self.e })
    }

    /// A JWK set holding only this key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// An RS256 JWT of `claims` with header `typ` and this key's `kid`.
    ///
    /// # Errors
    /// When the claims cannot be serialized or signing fails.
    pub fn sign<T: Serialize + ?Sized>(&self, typ: &str, claims: &T) -> Result<String, SignError> {
        let header = json!({ "alg": "RS256", "typ": typ, "kid": self.kid });
        sign_compact(&header, claims, &self.encoding, Algorithm::RS256)
    }
}

/// The RFC 7638 thumbprint of an RSA public key: SHA-256 of the required members in
/// lexicographic order without whitespace, base64url.
pub fn thumbprint(n: &str, e: &str) -> String {
    let members = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(members.as_bytes()))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Validation;

    use super::*;

    #[test]
    fn rfc_7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo\
                 c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y\
                 GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrd\
                 kt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKn\
                 qDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn signed_tokens_verify_with_the_published_key() {
        let key = crate::idp::test_key();
        assert_eq!(key.kid(), thumbprint(key.n(), key.e()));
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let token = key.sign("JWT", &json!({ "sub": "a" })).unwrap();
        let jwk = key.jwks()["keys"][0].clone();
        let decoding = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(data.claims["sub"], "a");
    }
}
