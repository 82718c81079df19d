//! Assertions verify with the public key under the right algorithm, carry the claims RFC 7523
//! asks for, never repeat a `jti`; bad keys are refused with a reason; `Debug` shows no key.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::*;

const RSA: &str = include_str!("../../tests/support/keys/client_rsa.pem");
const RSA_PKCS1: &str = include_str!("../../tests/support/keys/client_rsa_pkcs1.pem");
const RSA_PUB: &str = include_str!("../../tests/support/keys/client_rsa.pub.pem");
const EC256: &str = include_str!("../../tests/support/keys/client_ec256.pem");
const EC256_SEC1: &str = include_str!("../../tests/support/keys/client_ec256_sec1.pem");
const EC256_PUB: &str = include_str!("../../tests/support/keys/client_ec256.pub.pem");
const EC384: &str = include_str!("../../tests/support/keys/client_ec384.pem");
const EC384_PUB: &str = include_str!("../../tests/support/keys/client_ec384.pub.pem");
const RSA1024: &str = include_str!("../../tests/support/keys/client_rsa1024.pem");
const ED25519: &str = include_str!("../../tests/support/keys/client_ed25519.pem");
const CERT: &str = include_str!("../../tests/support/keys/tls1.pem");

const CLIENT: &str = "spa-bff";
const AUD: &str = "https://idp.example.com/oauth2/token";

fn now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn key(pem: &str, kid: Option<&str>) -> AssertionKey {
    AssertionKey::from_pem(pem.as_bytes(), kid.map(str::to_owned)).unwrap()
}

fn part(jwt: &str, i: usize) -> Value {
    let segment = jwt.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// Verifies signature, `alg`, `iss`, `sub`, `aud` and `exp` with jsonwebtoken; the claims.
fn verify(jwt: &str, public: &DecodingKey, alg: Algorithm) -> Value {
    let mut v = Validation::new(alg);
    v.set_audience(&[AUD]);
    v.set_issuer(&[CLIENT]);
    v.sub = Some(CLIENT.to_owned());
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(jwt, public, &v)
        .unwrap_or_else(|e| panic!("{alg:?} assertion does not verify: {e}"))
        .claims
}

#[test]
fn each_key_type_signs_assertions_that_verify_with_its_public_key() {
    let cases = [
        (
            RSA,
            DecodingKey::from_rsa_pem(RSA_PUB.as_bytes()).unwrap(),
            Algorithm::RS256,
        ),
        (
            RSA_PKCS1,
            DecodingKey::from_rsa_pem(RSA_PUB.as_bytes()).unwrap(),
            Algorithm::RS256,
        ),
        (
            EC256,
            DecodingKey::from_ec_pem(EC256_PUB.as_bytes()).unwrap(),
            Algorithm::ES256,
        ),
        (
            EC384,
            DecodingKey::from_ec_pem(EC384_PUB.as_bytes()).unwrap(),
            Algorithm::ES384,
        ),
    ];
    for (pem, public, alg) in cases {
        let k = key(pem, None);
        assert_eq!(k.alg().name(), format!("{alg:?}"));
        let jwt = k.assertion(CLIENT, AUD, now()).unwrap();
        verify(jwt.expose(), &public, alg);
        // Fixed-size r || s for ECDSA (JWS), not DER.
        let signature = URL_SAFE_NO_PAD
            .decode(jwt.expose().rsplit('.').next().unwrap())
            .unwrap();
        let expected = match alg {
            Algorithm::ES256 => 64,
            Algorithm::ES384 => 96,
            _ => 256,
        };
        assert_eq!(signature.len(), expected, "{alg:?}");
    }
}

#[test]
fn a_signature_does_not_verify_with_another_key() {
    let jwt = key(EC256, None).assertion(CLIENT, AUD, now()).unwrap();
    let other = DecodingKey::from_ec_pem(EC384_PUB.as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    assert!(jsonwebtoken::decode::<Value>(jwt.expose(), &other, &v).is_err());
}

#[test]
fn header_and_claims_are_those_of_rfc_7523() {
    let now = 1_700_000_000;
    let jwt = key(RSA, Some("client-key-1"))
        .assertion(CLIENT, AUD, now)
        .unwrap();
    let header = part(jwt.expose(), 0);
    assert_eq!(
        header,
        serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": "client-key-1" })
    );
    let claims = part(jwt.expose(), 1);
    assert_eq!(claims["iss"], CLIENT);
    assert_eq!(claims["sub"], CLIENT);
    assert_eq!(claims["aud"], AUD, "one string, not an array");
    assert_eq!(claims["iat"], now);
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp > now && exp - now <= 60, "exp - iat = {}", exp - now);
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "sub"]);

    let header = part(
        key(EC256, None)
            .assertion(CLIENT, AUD, now)
            .unwrap()
            .expose(),
        0,
    );
    assert_eq!(
        header,
        serde_json::json!({ "alg": "ES256", "typ": "JWT" }),
        "no kid unless configured"
    );
}

#[test]
fn every_assertion_has_a_fresh_jti_of_at_least_128_bits() {
    let k = key(EC256, None);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let jwt = k.assertion(CLIENT, AUD, 1_700_000_000).unwrap();
        let jti = part(jwt.expose(), 1)["jti"].as_str().unwrap().to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(&jti).expect("base64url jti");
        assert!(bytes.len() * 8 >= 128, "{} bits", bytes.len() * 8);
        assert!(seen.insert(jti), "a jti repeated");
    }
    // The same instant and key still give distinct assertions.
    let a = k.assertion(CLIENT, AUD, 1).unwrap();
    let b = k.assertion(CLIENT, AUD, 1).unwrap();
    assert_ne!(a.expose(), b.expose());
}

#[test]
fn unusable_keys_are_refused_with_the_reason() {
    let refused = |pem: &str| AssertionKey::from_pem(pem.as_bytes(), None).unwrap_err();
    assert_eq!(refused("not a key"), KeyError::NoKey);
    assert_eq!(refused(""), KeyError::NoKey);
    assert_eq!(refused(CERT), KeyError::NoKey, "a certificate is not a key");
    assert_eq!(
        refused(RSA_PUB),
        KeyError::NoKey,
        "a public key is not a private key"
    );
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(refused(encrypted), KeyError::NoKey);
    let sec1 = refused(EC256_SEC1);
    assert_eq!(sec1, KeyError::Sec1);
    assert!(
        sec1.to_string().contains("openssl pkcs8 -topk8 -nocrypt"),
        "{sec1}"
    );
    assert!(matches!(refused(RSA1024), KeyError::Rejected(r) if r.contains("TooSmall")));
    assert!(matches!(refused(ED25519), KeyError::Rejected(_)));
    // A PKCS#8 block whose contents are damaged.
    let damaged = EC256.replace("MIGHAgEAMBMG", "MIGHAgEAMBMH");
    assert_ne!(damaged, EC256);
    assert!(matches!(refused(&damaged), KeyError::Rejected(_)));
}

#[test]
fn debug_shows_the_algorithm_and_kid_but_no_key_material() {
    for pem in [RSA, RSA_PKCS1, EC256, EC384] {
        let k = key(pem, Some("kid-7"));
        let shown = format!("{k:?} {k:#?}");
        assert!(shown.contains("kid-7") && shown.contains(&format!("{:?}", k.alg())));
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "{shown}");
        }
        // Nor its inner parts (ring's types print public values only, but none is shown).
        assert!(
            !shown.contains("RsaKeyPair") && !shown.contains("EcdsaKeyPair"),
            "{shown}"
        );
    }
}

#[test]
fn a_configured_certificate_adds_its_sha1_and_sha256_thumbprints() {
    // Computed independently: `openssl x509 -outform der | sha1sum / sha256sum`, base64url.
    const X5T: &str = "RcS5E0OvR2_C7GLuPVZlP4k9i5o";
    const X5T_S256: &str = "QwyWRcwnWvW1DXNoDFK4qpM8qgI76OgPAhF6KkkziU4";
    let cert = include_str!("../../tests/support/keys/client_rsa.cert.pem");
    let k = key(RSA, Some("k1"))
        .with_certificate(cert.as_bytes())
        .unwrap();
    let jwt = k.assertion(CLIENT, AUD, now()).unwrap();
    let header = part(jwt.expose(), 0);
    assert_eq!(header["x5t"], X5T);
    assert_eq!(header["x5t#S256"], X5T_S256);
    assert_eq!(header["kid"], "k1");
    verify(
        jwt.expose(),
        &DecodingKey::from_rsa_pem(RSA_PUB.as_bytes()).unwrap(),
        Algorithm::RS256,
    );
    // Without one, no thumbprint header; a PEM without a certificate is refused.
    let plain = key(RSA, None).assertion(CLIENT, AUD, now()).unwrap();
    assert!(part(plain.expose(), 0).get("x5t").is_none());
    assert_eq!(
        key(RSA, None).with_certificate(RSA.as_bytes()).unwrap_err(),
        KeyError::NoCertificate
    );
}
