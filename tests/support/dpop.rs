//! DPoP proof checks (RFC 9449 4.3) shared by the fake IdP and the test upstream, with
//! jsonwebtoken (not sealgate's ring code): `typ: dpop+jwt`, `alg: ES256`, a public `jwk` whose
//! key verifies the signature, `htm`, `htu`, `iat` within a minute, a `jti` never seen, the
//! `nonce` when one is required, and `ath` when a token is presented.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// What a proof said, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// RFC 7638 thumbprint of the proof's key.
    pub jkt: String,
    pub jti: String,
    pub htm: String,
    pub htu: String,
    pub iat: i64,
    pub nonce: Option<String>,
    pub ath: Option<String>,
    /// The proof as received.
    pub proof: String,
}

/// What the verifier expects.
pub struct Expected<'a> {
    pub htm: &'a str,
    pub htu: &'a str,
    pub now: i64,
    /// The access token presented with the proof (its `ath` must match).
    pub token: Option<&'a str>,
}

/// Why a proof was refused, or that it lacks the required nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid proof (`invalid_dpop_proof`); the reason.
    Invalid(String),
    /// Valid but without the nonce the server requires (`use_dpop_nonce`).
    NeedsNonce,
}

/// RFC 7638 thumbprint of an EC `jwk`.
pub fn thumbprint(jwk: &Value) -> String {
    let canonical = format!(
        r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
        jwk["crv"].as_str().unwrap_or_default(),
        jwk["kty"].as_str().unwrap_or_default(),
        jwk["x"].as_str().unwrap_or_default(),
        jwk["y"].as_str().unwrap_or_default(),
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// `ath` of `token`.
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

fn segment(part: Option<&str>) -> Result<Value, Refused> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.ok_or_else(|| invalid("not a compact JWS"))?)
        .map_err(|_| invalid("segment is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| invalid("segment is not JSON"))
}

fn invalid(why: &str) -> Refused {
    Refused::Invalid(why.to_owned())
}

/// Checks `proof` against `expect`; the `jti` joins `seen` only when everything else passed
/// (nonce included), so a retry with the nonce may use a fresh proof.
pub fn verify(
    proof: &str,
    expect: &Expected<'_>,
    nonce: Option<&str>,
    seen: &mut HashSet<String>,
) -> Result<Verified, Refused> {
    let mut parts = proof.split('.');
    let header = segment(parts.next())?;
    if header["typ"] != "dpop+jwt" {
        return Err(invalid("typ"));
    }
    if header["alg"] != "ES256" {
        return Err(invalid("alg"));
    }
    let jwk = &header["jwk"];
    if jwk["kty"] != "EC" || jwk["crv"] != "P-256" || jwk.get("d").is_some() {
        return Err(invalid("jwk is not a public P-256 key"));
    }
    let key = DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap_or_default(),
        jwk["y"].as_str().unwrap_or_default(),
    )
    .map_err(|_| invalid("jwk"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .map_err(|e| Refused::Invalid(format!("signature: {e}")))?
        .claims;
    if claims["htm"] != expect.htm {
        return Err(invalid("htm"));
    }
    if claims["htu"] != expect.htu {
        return Err(Refused::Invalid(format!(
            "htu {} is not {}",
            claims["htu"], expect.htu
        )));
    }
    let iat = claims["iat"].as_i64().ok_or_else(|| invalid("iat"))?;
    if (iat - expect.now).abs() > 60 {
        return Err(invalid("iat"));
    }
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    if jti.len() < 16 {
        return Err(invalid("jti"));
    }
    if seen.contains(&jti) {
        return Err(invalid("replayed jti"));
    }
    let ath_claim = claims["ath"].as_str().map(str::to_owned);
    if let Some(token) = expect.token
        && ath_claim.as_deref() != Some(ath(token).as_str())
    {
        return Err(invalid("ath"));
    }
    let given_nonce = claims["nonce"].as_str().map(str::to_owned);
    if let Some(required) = nonce
        && given_nonce.as_deref() != Some(required)
    {
        return Err(Refused::NeedsNonce);
    }
    seen.insert(jti.clone());
    Ok(Verified {
        jkt: thumbprint(jwk),
        jti,
        htm: expect.htm.to_owned(),
        htu: expect.htu.to_owned(),
        iat,
        nonce: given_nonce,
        ath: ath_claim,
        proof: proof.to_owned(),
    })
}

/// The `cnf.jkt` of a JWT access token (unverified: the upstream trusts the IdP's signature
/// for this test), if it has one.
pub fn token_jkt(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["cnf"]["jkt"].as_str().map(str::to_owned)
}

/// `Verified` as the upstream echoes it.
pub fn echo(v: &Verified) -> Value {
    json!({
        "jkt": v.jkt, "jti": v.jti, "htm": v.htm, "htu": v.htu, "iat": v.iat,
        "nonce": v.nonce, "ath": v.ath,
    })
}
