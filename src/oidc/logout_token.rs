//! OpenID Connect Back-Channel Logout 1.0 logout tokens (section 2.4), validated as section 2.6
//! says, with the same keys and algorithm allowlist as ID tokens. Pure: the token text, a key
//! set, the expectations and `now` in, [`LogoutClaims`] or a typed error out.
//!
//! openidconnect has no type for logout tokens, so the compact JWS is split and its header and
//! claims parsed here; the key set is the provider's own openidconnect key set (the one ID
//! tokens are verified with) and the signature is checked by openidconnect's
//! [`JsonWebKey::verify_signature`], never here. The order of the checks is part of the design:
//!
//! 1. shape: at most [`MAX_TOKEN_BYTES`], three base64url segments, a JSON-object header;
//! 2. header: `alg` in the allowlist (asymmetric only, so never `none` or HMAC), no `crit`,
//!    `typ` `logout+jwt` (or `application/logout+jwt`, any case); `JWT` or no `typ` only when
//!    [`Expectations::strict_typ`] is off;
//! 3. every claim rule, run on the *unverified* payload. This can only refuse a token, never
//!    accept one: its purpose is that garbage is refused before any key is looked up;
//! 4. the key: the `kid`'s key, or the only suitable key when there is no `kid`. A token that
//!    gets this far naming a key the set lacks is [`LogoutTokenError::UnknownKey`], the one
//!    error for which the caller may refetch the JWKS (at most once per cooldown). So a flood
//!    of garbage never causes a fetch per token;
//! 5. the signature over the first two segments as received; only then are the claims of
//!    step 3 (parsed from exactly those signed bytes) returned.
//!
//! Claim rules: `iss` is the issuer exactly; `aud` (string or array) names the client id and
//! nothing but the client id and trusted audiences; `iat` is required, not in the future beyond
//! the clock skew and not older than [`Expectations::max_age`] (plus skew), which is what makes
//! the token "short-lived" and bounds how long its `jti` must be remembered; `exp`, when present
//! (Back-Channel Logout drafts up to 06 had none, and Glewlwyd follows draft 06; without it
//! `iat` plus `max_age` is the expiry), is not before `iat` and not past (with skew); `jti` is a
//! non-empty string; `events` is an object
//! whose member [`BACKCHANNEL_LOGOUT_EVENT`] is a JSON object; `sid` and/or `sub` is present, each
//! a non-empty string; `nonce` is absent (in any form, even `null`). Duplicate member names in
//! the header or claims are refused.
//!
//! Errors carry no token material (no claim value, no `kid`), only what rule failed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJsonWebKeyType, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyUse, JwsSigningAlgorithm, SignatureVerificationError,
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::claims::{TimeClaimError, check_nbf_and_auth_time, numeric_date};

/// The `events` member that makes a JWT a back-channel logout token.
pub(crate) const BACKCHANNEL_LOGOUT_EVENT: &str =
    "http://schemas.openid.net/event/backchannel-logout";

/// Longest logout token accepted (bytes); the endpoint's body limit is the same.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest `jti`, `sid` or `sub` accepted (bytes): what the denylist accepts.
pub(crate) const MAX_CLAIM_TEXT: usize = crate::revocation::MAX_TEXT;

/// What a logout token must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expectations<'a> {
    /// The issuer, compared exactly.
    pub issuer: &'a str,
    /// The client id, which `aud` must name.
    pub client_id: &'a str,
    /// Other audiences `aud` may also name.
    pub trusted_audiences: &'a [String],
    /// Allowed signature algorithms (`none` and HMAC ones are refused even if listed).
    pub algorithms: &'a [CoreJwsSigningAlgorithm],
    /// Tolerated clock difference with the IdP, seconds.
    pub clock_skew: i64,
    /// Oldest acceptable `iat`, seconds before `now` (before the skew is added).
    pub max_age: i64,
    /// Refuse `typ: JWT` and an absent `typ`.
    pub strict_typ: bool,
}

/// The verified claims of a logout token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogoutClaims {
    /// The issuer (equal to [`Expectations::issuer`]).
    pub iss: String,
    /// The IdP session to end, if named.
    pub sid: Option<String>,
    /// The subject whose sessions end, if named.
    pub sub: Option<String>,
    /// The token id (replay detection).
    pub jti: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds (`iat` plus the age limit when the token has no `exp`).
    pub exp: i64,
    /// The last second at which this token is still accepted (so until when its `jti` must be
    /// remembered): `min(exp, iat + max_age) + clock_skew`.
    pub acceptable_until: i64,
}

/// Why a logout token was refused. Never carries token material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LogoutTokenError {
    /// Too long, not three base64url segments, or a header that is not a JSON object.
    #[error("not a compact JWS")]
    Malformed,
    /// The header `alg` is not an allowed (asymmetric) algorithm; `none` and HMAC never are.
    #[error("signature algorithm not allowed")]
    Algorithm,
    /// The header has `crit`; no JWS extension is understood here.
    #[error("critical header parameters are not supported")]
    Critical,
    /// The header `typ` is neither `logout+jwt` nor (when not strict) `JWT` or absent.
    #[error("typ is not logout+jwt")]
    Type,
    /// The payload is not a JSON object, repeats a member, or a claim has the wrong type.
    #[error("claims are not a well-formed JSON object")]
    Claims,
    /// A required claim is absent.
    #[error("claim {0} is missing")]
    Missing(&'static str),
    /// A claim is present but not acceptable (wrong type, empty, too long).
    #[error("claim {0} is invalid")]
    Invalid(&'static str),
    /// `iss` is not the issuer.
    #[error("iss is not the issuer")]
    Issuer,
    /// `aud` does not name the client id, or names an audience that is not trusted.
    #[error("aud does not name this client (alone or with trusted audiences)")]
    Audience,
    /// `iat` is in the future beyond the clock skew.
    #[error("iat is in the future")]
    IssuedInFuture,
    /// `iat` is older than the maximum age.
    #[error("iat is older than the maximum logout token age")]
    TooOld,
    /// `nbf` is in the future beyond the clock skew.
    #[error("nbf is in the future")]
    NotYetValid,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `events` lacks the back-channel logout member, or its value is not a JSON object.
    #[error("events has no back-channel logout member object")]
    Events,
    /// Neither `sid` nor `sub` is present.
    #[error("neither sid nor sub")]
    NoSubject,
    /// `nonce` is present (a logout token must not have one, so it can never pass as an ID token).
    #[error("nonce is present")]
    Nonce,
    /// No key in the set has the header's `kid` (or, without `kid`, none suits the algorithm).
    /// Only this error justifies refetching the JWKS.
    #[error("no key for this token in the JWKS")]
    UnknownKey,
    /// No `kid` and several suitable keys, or several keys with the same `kid`.
    #[error("several keys could have signed this token")]
    AmbiguousKey,
    /// The `kid`'s key cannot verify the header's algorithm (type, curve, use or `alg`).
    #[error("the named key does not fit the algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
}

/// Validates `token` against `keys` and `expect` at unix time `now` (see the module docs).
///
/// # Errors
/// The first rule the token breaks. [`LogoutTokenError::UnknownKey`] only comes after every
/// check that needs no key has passed.
pub(crate) fn validate(
    token: &str,
    keys: &CoreJsonWebKeySet,
    expect: &Expectations<'_>,
    now: i64,
) -> Result<LogoutClaims, LogoutTokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(LogoutTokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LogoutTokenError::Malformed);
    };
    let raw_header: RawHeader = json_object(header).ok_or(LogoutTokenError::Malformed)?;
    let alg =
        allowed_algorithm(&raw_header.alg, expect.algorithms).ok_or(LogoutTokenError::Algorithm)?;
    if raw_header.crit {
        return Err(LogoutTokenError::Critical);
    }
    check_typ(raw_header.typ.as_deref(), expect.strict_typ)?;

    // Unverified until the signature below passes: used first only to refuse early, before any
    // key is looked up.
    let raw_claims: RawClaims = json_object(payload).ok_or(LogoutTokenError::Claims)?;
    let claims = check_claims(&raw_claims, expect, now)?;

    let key = select_key(keys, &alg, raw_header.kid.as_deref())?;
    // The JWS signing input is the first two segments exactly as received (RFC 7515 5.2).
    let signing_input = token
        .get(..header.len() + 1 + payload.len())
        .ok_or(LogoutTokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| LogoutTokenError::Signature)?;
    key.verify_signature(&alg, signing_input.as_bytes(), &signature)
        .map_err(|e| match e {
            SignatureVerificationError::InvalidKey(_)
            | SignatureVerificationError::UnsupportedAlg(_) => LogoutTokenError::KeyMismatch,
            _ => LogoutTokenError::Signature,
        })?;
    Ok(claims)
}

/// The header's `alg` when it is in `allowed` and asymmetric: `none` (no key type) and HMAC
/// (a shared secret, which a public key must never be used as) are refused even if listed.
fn allowed_algorithm(
    alg: &str,
    allowed: &[CoreJwsSigningAlgorithm],
) -> Option<CoreJwsSigningAlgorithm> {
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(Value::String(alg.to_owned())).ok()?;
    let asymmetric = alg.key_type().is_some() && !alg.uses_shared_secret();
    (asymmetric && allowed.contains(&alg)).then_some(alg)
}

/// `typ` rules: `logout+jwt` / `application/logout+jwt` always; `JWT` / absent unless strict.
fn check_typ(typ: Option<&str>, strict: bool) -> Result<(), LogoutTokenError> {
    let Some(typ) = typ else {
        return if strict {
            Err(LogoutTokenError::Type)
        } else {
            Ok(())
        };
    };
    let bare = strip_prefix_ignore_case(typ, "application/").unwrap_or(typ);
    let plain_jwt = bare.eq_ignore_ascii_case("jwt") && !strict;
    if bare.eq_ignore_ascii_case("logout+jwt") || plain_jwt {
        Ok(())
    } else {
        Err(LogoutTokenError::Type)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Decodes a base64url segment holding a JSON object (not an array, which serde would also map
/// onto a struct) into `T`.
fn json_object<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// The header members that matter; others are ignored (`jku`, `x5u`, `jwk` are never used to
/// find a key).
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// The claims that matter, as raw JSON so that each rule can say what is wrong. A repeated
/// member is a deserialization error (serde refuses duplicate fields).
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<Value>,
    aud: Option<Value>,
    iat: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    auth_time: Option<Value>,
    jti: Option<Value>,
    events: Option<Value>,
    sid: Option<Value>,
    sub: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    nonce: bool,
}

/// `true` for any value, even `null`: the member is present.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A present claim that must be a non-empty string of at most [`MAX_CLAIM_TEXT`] bytes.
fn text_claim(v: &Value, name: &'static str) -> Result<String, LogoutTokenError> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= MAX_CLAIM_TEXT => Ok(s.to_owned()),
        _ => Err(LogoutTokenError::Invalid(name)),
    }
}

fn check_claims(
    c: &RawClaims,
    expect: &Expectations<'_>,
    now: i64,
) -> Result<LogoutClaims, LogoutTokenError> {
    use LogoutTokenError as E;
    // Issuer and audience.
    let iss = c.iss.as_ref().ok_or(E::Missing("iss"))?;
    if iss.as_str() != Some(expect.issuer) {
        return Err(E::Issuer);
    }
    let aud = c.aud.as_ref().ok_or(E::Missing("aud"))?;
    let audiences: Vec<&str> = match aud {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or(E::Invalid("aud"))?,
        _ => return Err(E::Invalid("aud")),
    };
    if !audiences.contains(&expect.client_id)
        || !audiences
            .iter()
            .all(|a| *a == expect.client_id || expect.trusted_audiences.iter().any(|t| t == a))
    {
        return Err(E::Audience);
    }

    // Times (saturating: hostile values must not overflow).
    let skew = expect.clock_skew.max(0);
    let iat = numeric_date(c.iat.as_ref().ok_or(E::Missing("iat"))?).ok_or(E::Invalid("iat"))?;
    let exp = match c.exp.as_ref() {
        Some(v) => numeric_date(v).ok_or(E::Invalid("exp"))?,
        // Back-Channel Logout draft 06 (Glewlwyd): no `exp`; the age limit is the expiry.
        None => iat.saturating_add(expect.max_age.max(0)),
    };
    if iat > now.saturating_add(skew) {
        return Err(E::IssuedInFuture);
    }
    let oldest = now
        .saturating_sub(expect.max_age.max(0))
        .saturating_sub(skew);
    if iat < oldest {
        return Err(E::TooOld);
    }
    if exp < iat {
        return Err(E::Invalid("exp"));
    }
    if now > exp.saturating_add(skew) {
        return Err(E::Expired);
    }
    // RFC 7519: any other time claim present is a NumericDate, and `nbf` is not in the future.
    match check_nbf_and_auth_time(c.nbf.as_ref(), c.auth_time.as_ref(), now, skew) {
        Ok(()) => {}
        Err(TimeClaimError::NotANumber(claim)) => return Err(E::Invalid(claim)),
        Err(TimeClaimError::NotYetValid) => return Err(E::NotYetValid),
    }

    // Identity of the token and of what it logs out.
    let jti = text_claim(c.jti.as_ref().ok_or(E::Missing("jti"))?, "jti")?;
    let events = c.events.as_ref().ok_or(E::Missing("events"))?;
    if !events
        .as_object()
        .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
        .is_some_and(Value::is_object)
    {
        return Err(E::Events);
    }
    if c.nonce {
        return Err(E::Nonce);
    }
    let sid = c.sid.as_ref().map(|v| text_claim(v, "sid")).transpose()?;
    let sub = c.sub.as_ref().map(|v| text_claim(v, "sub")).transpose()?;
    if sid.is_none() && sub.is_none() {
        return Err(E::NoSubject);
    }
    let acceptable_until = exp
        .min(iat.saturating_add(expect.max_age.max(0)))
        .saturating_add(skew);
    Ok(LogoutClaims {
        iss: expect.issuer.to_owned(),
        sid,
        sub,
        jti,
        iat,
        exp,
        acceptable_until,
    })
}

/// The key that may have signed a token with `alg` and `kid`.
fn select_key<'k>(
    keys: &'k CoreJsonWebKeySet,
    alg: &CoreJwsSigningAlgorithm,
    kid: Option<&str>,
) -> Result<&'k CoreJsonWebKey, LogoutTokenError> {
    let candidates: Vec<&CoreJsonWebKey> = match kid {
        Some(kid) => {
            let named: Vec<&CoreJsonWebKey> = keys
                .keys()
                .iter()
                .filter(|k| k.key_id().map(|id| id.as_str()) == Some(kid))
                .collect();
            if named.is_empty() {
                return Err(LogoutTokenError::UnknownKey);
            }
            let fit: Vec<&CoreJsonWebKey> = named.into_iter().filter(|k| fits(k, alg)).collect();
            if fit.is_empty() {
                return Err(LogoutTokenError::KeyMismatch);
            }
            fit
        }
        // Without a `kid`, only a set with exactly one suitable key is unambiguous.
        None => keys.keys().iter().filter(|k| fits(k, alg)).collect(),
    };
    match candidates.as_slice() {
        [] => Err(LogoutTokenError::UnknownKey),
        [one] => Ok(one),
        _ => Err(LogoutTokenError::AmbiguousKey),
    }
}

/// Whether `key` may verify `alg`: a signing key (`use`), of `alg` when it names one, of the
/// right type and curve. Never a symmetric key (no allowed algorithm has that key type).
///
/// openidconnect checks the curve only while verifying; selection checks it too, so that
/// without a `kid` a P-384 key is no candidate for an ES256 token (and no ambiguity).
fn fits(key: &CoreJsonWebKey, alg: &CoreJwsSigningAlgorithm) -> bool {
    if key.key_use().is_some_and(|u| !u.allows_signature()) {
        return false;
    }
    match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => {}
        JsonWebKeyAlgorithm::Algorithm(a) if a == alg => {}
        _ => return false,
    }
    if alg.key_type().as_ref() != Some(key.key_type()) {
        return false;
    }
    match (key.key_type(), alg) {
        (CoreJsonWebKeyType::EllipticCurve, CoreJwsSigningAlgorithm::EcdsaP256Sha256) => {
            curve_params(key).is_some_and(|p| p.crv.as_deref() == Some("P-256"))
        }
        (CoreJsonWebKeyType::EllipticCurve, CoreJwsSigningAlgorithm::EcdsaP384Sha384) => {
            curve_params(key).is_some_and(|p| p.crv.as_deref() == Some("P-384"))
        }
        // Ed25519 public keys are exactly 32 bytes.
        (CoreJsonWebKeyType::OctetKeyPair, CoreJwsSigningAlgorithm::EdDsa) => curve_params(key)
            .is_some_and(|p| {
                p.crv.as_deref() == Some("Ed25519")
                    && p.x
                        .as_deref()
                        .is_some_and(|x| URL_SAFE_NO_PAD.decode(x).is_ok_and(|x| x.len() == 32))
            }),
        (CoreJsonWebKeyType::RSA, _) => true,
        _ => false,
    }
}

/// The members of a JWK that openidconnect keeps but does not expose.
#[derive(Deserialize)]
struct CurveParams {
    crv: Option<String>,
    x: Option<String>,
}

/// `crv` and `x` of `key`, read back from its JWK form.
fn curve_params(key: &CoreJsonWebKey) -> Option<CurveParams> {
    serde_json::to_value(key)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// The replay-table key of an accepted logout token: `iss` and `jti`, hashed (so entries have
/// one size whatever the IdP sends). The table ([`crate::expiring::ExpiringSet`]) keeps it until
/// [`LogoutClaims::acceptable_until`], so a replay within that window changes nothing. Only
/// tokens that passed signature validation get there, so only the IdP can fill it; when it is
/// full a new token is refused (503, the IdP retries) rather than an entry forgotten early.
pub(crate) fn replay_key(iss: &str, jti: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(iss.as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests;
