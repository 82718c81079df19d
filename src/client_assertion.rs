//! `private_key_jwt` client authentication (RFC 7523 section 2.2, OIDC Core section 9): the
//! client's signing key, read once from PEM at start-up, and the short-lived JWT signed with
//! it for each request to the IdP.
//!
//! Signing is ring's: RSASSA-PKCS1-v1_5 with SHA-256 (`RS256`), ECDSA P-256 / P-384 with the
//! fixed-size `r || s` signature JWS wants (`ES256`, `ES384`). Never the `rsa` crate, whose
//! private-key operations are not constant time (RUSTSEC-2023-0071, the Marvin attack). PEM is
//! read by rustls-pki-types; the decoded DER is wiped once ring holds the key.
//!
//! Pure but for randomness: the caller passes `now`; the `jti` comes from the OS CSPRNG
//! ([`fill_random`]) and ring draws its own (ECDSA nonces, RSA blinding) from the OS as well.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use zeroize::Zeroize;

use crate::secret::{RandomError, SecretString, fill_random};

/// The `client_assertion_type` form value (RFC 7523 section 2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Seconds from an assertion's `iat` to its `exp`: long enough for one request, short enough
/// that a copy is worth little (and that an IdP remembers its `jti` for little time).
pub(crate) const LIFETIME_SECS: i64 = 60;

/// Random bytes in a `jti` (256 bits; 43 base64url characters).
const JTI_BYTES: usize = 32;

/// The JWS algorithm of the assertions a key signs, fixed by the key's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RSA (2048 to 8192 bits), RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
}

impl AssertionAlg {
    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
        }
    }
}

/// Why a PEM private key was refused (no key material in any message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No unencrypted private key block.
    #[error(
        "no private key found: expected an unencrypted PEM block \"PRIVATE KEY\" (PKCS#8) or \
         \"RSA PRIVATE KEY\" (PKCS#1)"
    )]
    NoKey,
    /// A SEC1 `EC PRIVATE KEY` block, which ring does not read.
    #[error(
        "an \"EC PRIVATE KEY\" (SEC1) block is not supported; convert it to PKCS#8 with \
         `openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out KEY.p8.pem`"
    )]
    Sec1,
    /// ring refused the key (bad encoding, inconsistent, too small, another algorithm).
    #[error(
        "not a usable key ({0}): use RSA of 2048 to 8192 bits, or EC P-256 or P-384, as PKCS#8 \
         (or PKCS#1 for RSA)"
    )]
    Rejected(String),
    /// `client_assertion_cert` holds no PEM `CERTIFICATE` block.
    #[error("no certificate found: expected a PEM \"CERTIFICATE\" block")]
    NoCertificate,
}

/// Signing an assertion failed.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// No randomness for the `jti`.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// ring could not sign (its randomness failed).
    #[error("signing the client assertion failed")]
    Signing,
}

/// The client's private key for `private_key_jwt`, with the `kid` its assertions name.
/// Cheap to clone; `Debug` shows the algorithm and `kid`, never key material.
#[derive(Clone)]
pub struct AssertionKey {
    inner: Arc<Inner>,
    /// `x5t` and `x5t#S256` of the certificate registered for this key, when configured.
    thumbprints: Option<Arc<(String, String)>>,
}

struct Inner {
    signer: Signer,
    kid: Option<String>,
    rng: SystemRandom,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair, AssertionAlg),
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionKey")
            .field("alg", &self.alg())
            .field("kid", &self.inner.kid)
            .field("x5t", &self.thumbprints.as_ref().map(|t| t.0.as_str()))
            .finish_non_exhaustive()
    }
}

impl AssertionKey {
    /// Reads the first private key of `pem`: PKCS#8 (RSA, EC P-256, EC P-384) or PKCS#1 (RSA).
    ///
    /// # Errors
    /// When there is no such key, it is SEC1, or ring refuses it.
    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<Self, KeyError> {
        let mut der = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(der) => der,
            Err(_) => return Err(KeyError::NoKey),
        };
        let rng = SystemRandom::new();
        let signer = match &der {
            PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der())
                .map(Signer::Rsa)
                .map_err(|e| KeyError::Rejected(e.to_string())),
            PrivateKeyDer::Pkcs8(key) => pkcs8(key.secret_pkcs8_der(), &rng),
            PrivateKeyDer::Sec1(_) => Err(KeyError::Sec1),
            _ => Err(KeyError::NoKey),
        };
        der.zeroize();
        Ok(Self {
            inner: Arc::new(Inner {
                signer: signer?,
                kid,
                rng,
            }),
            thumbprints: None,
        })
    }

    /// A new random P-256 key, for `check-config` to stand in for a key whose variable is not
    /// set there (never used to sign a request).
    ///
    /// # Errors
    /// When the OS refuses randomness.
    pub fn ephemeral(kid: Option<String>) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let refused = |e: &dyn fmt::Display| KeyError::Rejected(e.to_string());
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|e| refused(&e))?;
        let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|e| refused(&e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                signer: Signer::Ecdsa(key, AssertionAlg::Es256),
                kid,
                rng,
            }),
            thumbprints: None,
        })
    }

    /// The algorithm of this key's assertions.
    pub fn alg(&self) -> AssertionAlg {
        match &self.inner.signer {
            Signer::Rsa(_) => AssertionAlg::Rs256,
            Signer::Ecdsa(_, alg) => *alg,
        }
    }

    /// The same key, whose assertions also carry the `x5t` (SHA-1) and `x5t#S256` (SHA-256)
    /// thumbprints of the first certificate in `pem` (RFC 7515 4.1.7, 4.1.8): Entra ID and AD FS
    /// find a client's certificate by them. The certificate is public; it is the one registered
    /// at the IdP for this key (a mismatch shows as `invalid_client` at the first login).
    ///
    /// # Errors
    /// [`KeyError::NoCertificate`] when `pem` holds no certificate.
    pub fn with_certificate(mut self, pem: &[u8]) -> Result<Self, KeyError> {
        use rustls::pki_types::CertificateDer;
        let cert = CertificateDer::from_pem_slice(pem).map_err(|_| KeyError::NoCertificate)?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        self.thumbprints = Some(Arc::new((
            URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        )));
        Ok(self)
    }

    /// The `kid` header of this key's assertions, if configured.
    pub fn kid(&self) -> Option<&str> {
        self.inner.kid.as_deref()
    }

    /// A fresh signed assertion: header `alg`, `typ: JWT`, `kid` when configured; claims `iss`
    /// and `sub` = `client_id`, `aud` = `audience` (one string), a random `jti`, `iat` = `now`,
    /// `exp` = `now` + [`LIFETIME_SECS`]. Never reuse one: the IdP refuses a replayed `jti`.
    ///
    /// # Errors
    /// When the OS refuses randomness.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> Result<SecretString, AssertionError> {
        let jti = random_jti()?;
        let mut header = serde_json::json!({ "alg": self.alg().name(), "typ": "JWT" });
        if let Some(kid) = &self.inner.kid {
            header["kid"] = serde_json::Value::from(kid.as_str());
        }
        if let Some(t) = &self.thumbprints {
            header["x5t"] = serde_json::Value::from(t.0.as_str());
            header["x5t#S256"] = serde_json::Value::from(t.1.as_str());
        }
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": jti,
            "iat": now,
            "exp": now.saturating_add(LIFETIME_SECS),
        });
        compact_jws(&header, &claims, |message| self.sign(message)).map(SecretString::new)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AssertionError> {
        let rng = &self.inner.rng;
        match &self.inner.signer {
            Signer::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, rng, message, &mut signature)
                    .map_err(|_| AssertionError::Signing)?;
                Ok(signature)
            }
            Signer::Ecdsa(key, _) => key
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| AssertionError::Signing),
        }
    }
}

/// A fresh `jti`: [`JTI_BYTES`] from the OS CSPRNG, base64url.
///
/// # Errors
/// When the OS refuses randomness.
pub(crate) fn random_jti() -> Result<String, RandomError> {
    let mut jti = [0u8; JTI_BYTES];
    fill_random(&mut jti)?;
    Ok(URL_SAFE_NO_PAD.encode(jti))
}

/// A compact JWS (RFC 7515 7.1) of `header` and `claims`, its signing input signed by `sign`
/// (the raw signature JWS wants: `r || s` for ECDSA). The one JWS builder of client
/// assertions and DPoP proofs.
///
/// # Errors
/// What `sign` returns.
pub(crate) fn compact_jws(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, AssertionError>,
) -> Result<String, AssertionError> {
    let mut jwt = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(jwt.as_bytes())?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

/// A PKCS#8 key: RSA, else EC P-256, else EC P-384 (ring says which by refusing the others).
fn pkcs8(der: &[u8], rng: &SystemRandom) -> Result<Signer, KeyError> {
    let rsa = match RsaKeyPair::from_pkcs8(der) {
        Ok(key) => return Ok(Signer::Rsa(key)),
        Err(e) => e,
    };
    let curves: [(&'static EcdsaSigningAlgorithm, AssertionAlg); 2] = [
        (&ECDSA_P256_SHA256_FIXED_SIGNING, AssertionAlg::Es256),
        (&ECDSA_P384_SHA384_FIXED_SIGNING, AssertionAlg::Es384),
    ];
    let mut refusal = rsa.to_string();
    for (curve, alg) in curves {
        match EcdsaKeyPair::from_pkcs8(curve, der, rng) {
            Ok(key) => return Ok(Signer::Ecdsa(key, alg)),
            // The most telling refusal: not "wrong algorithm" when one of them recognised it.
            Err(e) if refusal == "WrongAlgorithm" => refusal = e.to_string(),
            Err(_) => {}
        }
    }
    Err(KeyError::Rejected(refusal))
}

#[cfg(test)]
mod tests;
