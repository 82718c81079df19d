//! `private_key_jwt` at the fake IdP: the committed TEST-ONLY client keys, and the check the
//! token and revocation endpoints make of a client assertion (RFC 7523 section 3): signature
//! with the registered public key under its algorithm, `iss` = `sub` = the client id, `aud`,
//! `exp` in the future but not far, `iat` not ahead, and a `jti` never seen before.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// `client_assertion_type` for a JWT bearer client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Farthest an assertion's `exp` may be ahead of the IdP's clock.
pub const MAX_ASSERTION_LIFETIME: i64 = 300;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/keys");

/// A client key pair the fake IdP can be registered with. TEST ONLY.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientKey {
    /// The private key's file in `tests/support/keys/`.
    pub file: &'static str,
    /// The algorithm its assertions use.
    pub alg: Algorithm,
    /// The public key (SPKI PEM) the IdP verifies with.
    pub public_pem: &'static str,
}

impl ClientKey {
    /// `file:/…/tests/support/keys/<file>`, for `oidc.client_assertion_key`.
    pub fn config_ref(&self) -> String {
        file_ref(self.file)
    }

    /// The private key's PEM text.
    pub fn private_pem(&self) -> String {
        std::fs::read_to_string(format!("{KEYS}/{}", self.file)).expect("a committed test key")
    }
}

/// `file:` reference to a file in `tests/support/keys/`.
pub fn file_ref(file: &str) -> String {
    format!("file:{KEYS}/{file}")
}

/// RSA-2048, RS256.
pub static CLIENT_RSA: ClientKey = ClientKey {
    file: "client_rsa.pem",
    alg: Algorithm::RS256,
    public_pem: include_str!("keys/client_rsa.pub.pem"),
};
/// EC P-256, ES256.
pub static CLIENT_EC256: ClientKey = ClientKey {
    file: "client_ec256.pem",
    alg: Algorithm::ES256,
    public_pem: include_str!("keys/client_ec256.pub.pem"),
};
/// EC P-384, ES384.
pub static CLIENT_EC384: ClientKey = ClientKey {
    file: "client_ec384.pem",
    alg: Algorithm::ES384,
    public_pem: include_str!("keys/client_ec384.pub.pem"),
};

/// What the fake IdP requires as the assertion's `aud` (one string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssertionAudience {
    /// The token endpoint URL (the default).
    TokenEndpoint,
    /// The issuer identifier.
    Issuer,
}

/// What a client assertion is checked against.
pub struct Expected<'a> {
    pub key: &'static ClientKey,
    pub client_id: &'a str,
    pub audience: &'a str,
    /// The IdP's clock.
    pub now: i64,
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks the client assertion of a form. On success the `jti`, now remembered in `seen`;
/// on failure why (a short reason for the test to compare).
pub fn verify(
    form: &[(String, String)],
    expect: &Expected<'_>,
    seen: &mut HashSet<String>,
) -> Result<String, String> {
    if param(form, "client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err("client_assertion_type".into());
    }
    let token = param(form, "client_assertion").ok_or("no client_assertion")?;
    if form.iter().filter(|(k, _)| k == "client_assertion").count() != 1 {
        return Err("repeated client_assertion".into());
    }
    if param(form, "client_id").is_some_and(|id| id != expect.client_id) {
        return Err("client_id differs".into());
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    if header.alg != expect.key.alg {
        return Err(format!("alg {:?}", header.alg));
    }
    if header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err("typ".into());
    }
    let public = match expect.key.alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(expect.key.public_pem.as_bytes()),
        _ => DecodingKey::from_ec_pem(expect.key.public_pem.as_bytes()),
    }
    .map_err(|e| format!("test key: {e}"))?;
    // Signature only; every claim is checked below against the IdP's (offset) clock.
    let mut validation = Validation::new(expect.key.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = jsonwebtoken::decode::<Value>(token, &public, &validation)
        .map_err(|_| "signature".to_owned())?
        .claims;
    if claims["iss"] != expect.client_id || claims["sub"] != expect.client_id {
        return Err("iss/sub".into());
    }
    if claims["aud"] != expect.audience {
        return Err(format!("aud {}", claims["aud"]));
    }
    let (Some(exp), Some(iat)) = (claims["exp"].as_i64(), claims["iat"].as_i64()) else {
        return Err("exp/iat".into());
    };
    if exp <= expect.now {
        return Err("expired".into());
    }
    if exp > expect.now + MAX_ASSERTION_LIFETIME || iat > expect.now + 5 {
        return Err("too far ahead".into());
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?;
    if !seen.insert(jti.to_owned()) {
        return Err("replayed jti".into());
    }
    Ok(jti.to_owned())
}
