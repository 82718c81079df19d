//! OpenID Connect Back-Channel Logout 1.0 logout tokens (section 2.4), validated as section 2.6
//! says, with the same keys and algorithm allowlist as ID tokens. Pure: the token text, a key
//! set, the expectations and `now` in, [`LogoutClaims`] or a typed error out.
//!
//! openidconnect has no type for logout tokens; the signature is checked by `jsonwebtoken`
//! ([`jsonwebtoken::decode`]), never here. The order of the checks is part of the design:
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
//! 5. the signature (jsonwebtoken), then every claim rule again on the verified claims, which
//!    are the only ones returned.
//!
//! Claim rules: `iss` is the issuer exactly; `aud` (string or array) names the client id and
//! nothing but the client id and trusted audiences; `iat` is required, not in the future beyond
//! the clock skew and not older than [`Expectations::max_age`] (plus skew), which is what makes
//! the token "short-lived" and bounds how long its `jti` must be remembered; `exp` is required,
//! not before `iat`, and not past (with skew); `jti` is a non-empty string; `events` is an object
//! whose member [`BACKCHANNEL_LOGOUT_EVENT`] is a JSON object; `sid` and/or `sub` is present, each
//! a non-empty string; `nonce` is absent (in any form, even `null`). Duplicate member names in
//! the header or claims are refused.
//!
//! Errors carry no token material (no claim value, no `kid`), only what rule failed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `events` member that makes a JWT a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Longest logout token accepted (bytes); the endpoint's body limit is the same.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest `jti`, `sid` or `sub` accepted (bytes): what the denylist accepts.
pub const MAX_CLAIM_TEXT: usize = crate::revocation::MAX_TEXT;

/// What a logout token must match.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The issuer, compared exactly.
    pub issuer: &'a str,
    /// The client id, which `aud` must name.
    pub client_id: &'a str,
    /// Other audiences `aud` may also name.
    pub trusted_audiences: &'a [String],
    /// Allowed signature algorithms (HMAC ones are refused even if listed).
    pub algorithms: &'a [Algorithm],
    /// Tolerated clock difference with the IdP, seconds.
    pub clock_skew: i64,
    /// Oldest acceptable `iat`, seconds before `now` (before the skew is added).
    pub max_age: i64,
    /// Refuse `typ: JWT` and an absent `typ`.
    pub strict_typ: bool,
}

/// The verified claims of a logout token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
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
    /// Expiry, unix seconds.
    pub exp: i64,
    /// The last second at which this token is still accepted (so until when its `jti` must be
    /// remembered): `min(exp, iat + max_age) + clock_skew`.
    pub acceptable_until: i64,
}

/// Why a logout token was refused. Never carries token material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
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
pub fn validate(
    token: &str,
    keys: &JwkSet,
    expect: &Expectations<'_>,
    now: i64,
) -> Result<LogoutClaims, LogoutTokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(LogoutTokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LogoutTokenError::Malformed);
    };
    let header: RawHeader = json_object(header).ok_or(LogoutTokenError::Malformed)?;
    let alg = Algorithm::from_str(&header.alg)
        .ok()
        .filter(|a| a.family() != AlgorithmFamily::Hmac && expect.algorithms.contains(a))
        .ok_or(LogoutTokenError::Algorithm)?;
    if header.crit {
        return Err(LogoutTokenError::Critical);
    }
    check_typ(header.typ.as_deref(), expect.strict_typ)?;

    // Unverified: used only to refuse early, before any key is looked up.
    let unverified: RawClaims = json_object(payload).ok_or(LogoutTokenError::Claims)?;
    check_claims(&unverified, expect, now)?;

    let jwk = select_key(keys, alg, header.kid.as_deref())?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| LogoutTokenError::KeyMismatch)?;
    let mut validation = Validation::new(alg);
    // Claims are checked below with the caller's `now`; jsonwebtoken checks only the signature.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let verified = jsonwebtoken::decode::<RawClaims>(token, &key, &validation)
        .map_err(|_| LogoutTokenError::Signature)?;
    check_claims(&verified.claims, expect, now)
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

/// A JSON NumericDate as whole seconds: an integer, or a finite number within ±2^53 (floored).
fn numeric_date(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if f.is_finite() && f.abs() < LIMIT {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "finite and within ±2^53, so the floored value fits i64 exactly"
        )]
        Some(f.floor() as i64)
    } else {
        None
    }
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
    let exp = numeric_date(c.exp.as_ref().ok_or(E::Missing("exp"))?).ok_or(E::Invalid("exp"))?;
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
    keys: &'k JwkSet,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<&'k Jwk, LogoutTokenError> {
    let candidates: Vec<&Jwk> = match kid {
        Some(kid) => {
            let named: Vec<&Jwk> = keys
                .keys
                .iter()
                .filter(|k| k.common.key_id.as_deref() == Some(kid))
                .collect();
            if named.is_empty() {
                return Err(LogoutTokenError::UnknownKey);
            }
            let fit: Vec<&Jwk> = named.into_iter().filter(|k| fits(k, alg)).collect();
            if fit.is_empty() {
                return Err(LogoutTokenError::KeyMismatch);
            }
            fit
        }
        // Without a `kid`, only a set with exactly one suitable key is unambiguous.
        None => keys.keys.iter().filter(|k| fits(k, alg)).collect(),
    };
    match candidates.as_slice() {
        [] => Err(LogoutTokenError::UnknownKey),
        [one] => Ok(one),
        _ => Err(LogoutTokenError::AmbiguousKey),
    }
}

/// Whether `key` may verify `alg`: a signing key (`use`, `key_ops`), of `alg` when it names one,
/// of the right type and curve. Never a symmetric key.
fn fits(key: &Jwk, alg: Algorithm) -> bool {
    let c = &key.common;
    if c.public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return false;
    }
    if c.key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return false;
    }
    if c.key_algorithm.is_some_and(|a| a != alg.into()) {
        return false;
    }
    match (&key.algorithm, alg) {
        (AlgorithmParameters::RSA(_), _) => alg.family() == AlgorithmFamily::Rsa,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        // Ed25519 public keys are exactly 32 bytes (jsonwebtoken slices them unchecked).
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
                && URL_SAFE_NO_PAD.decode(&p.x).is_ok_and(|x| x.len() == 32)
        }
        _ => false,
    }
}

/// The provider's JWK set (any serializable JWKS, e.g. openidconnect's) as jsonwebtoken keys.
/// Keys jsonwebtoken cannot represent are skipped, as openidconnect skips keys it cannot parse.
pub fn jose_keys<S: serde::Serialize>(set: &S) -> JwkSet {
    let keys = serde_json::to_value(set)
        .ok()
        .and_then(|v| match v {
            Value::Object(mut o) => o.remove("keys"),
            _ => None,
        })
        .and_then(|k| match k {
            Value::Array(a) => Some(a),
            _ => None,
        })
        .unwrap_or_default();
    JwkSet {
        keys: keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .collect(),
    }
}

/// Whether a logout token was seen before: the replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: recorded now.
    Fresh,
    /// Seen before and still remembered: a replay.
    Replayed,
}

/// The replay cache is full of entries that are still needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("logout token replay cache full")]
pub struct ReplayCacheFull;

/// `iss`+`jti` of accepted logout tokens, each kept until the token could no longer be accepted
/// ([`LogoutClaims::acceptable_until`]), so a replay within that window changes nothing.
///
/// Bounded: when [`ReplayCache::capacity`] entries are live, a new token is refused (the caller
/// answers 503 and the IdP retries) rather than an entry forgotten early, which would re-open
/// its replay. Only tokens that passed signature validation get here, so only the IdP can fill
/// it, and entries last at most `max_logout_token_age` + twice the clock skew.
#[derive(Debug)]
pub struct ReplayCache {
    live: HashMap<[u8; 32], i64>,
    expiry: BinaryHeap<Reverse<(i64, [u8; 32])>>,
    capacity: usize,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl ReplayCache {
    /// Default capacity: with a 5-minute window, over 300 logouts a second, sustained.
    pub const CAPACITY: usize = 100_000;

    /// An empty cache for at most `capacity` live entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            live: HashMap::new(),
            expiry: BinaryHeap::new(),
            capacity: capacity.max(1),
        }
    }

    /// How many live entries it may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn key(iss: &str, jti: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(iss.as_bytes());
        h.update([0]);
        h.update(jti.as_bytes());
        h.finalize().into()
    }

    /// Records `iss`+`jti` until `until` (inclusive) at time `now`, or reports a replay.
    ///
    /// # Errors
    /// [`ReplayCacheFull`] when it is new and the cache is full; nothing was recorded.
    pub fn check_and_record(
        &mut self,
        iss: &str,
        jti: &str,
        until: i64,
        now: i64,
    ) -> Result<Seen, ReplayCacheFull> {
        while let Some(Reverse((t, k))) = self.expiry.peek().copied() {
            if t >= now {
                break;
            }
            self.expiry.pop();
            // A released and re-recorded key has a newer heap entry of its own.
            if self.live.get(&k) == Some(&t) {
                self.live.remove(&k);
            }
        }
        let key = Self::key(iss, jti);
        if self.live.contains_key(&key) {
            return Ok(Seen::Replayed);
        }
        if self.live.len() >= self.capacity {
            return Err(ReplayCacheFull);
        }
        self.live.insert(key, until);
        self.expiry.push(Reverse((until, key)));
        Ok(Seen::Fresh)
    }

    /// Forgets `iss`+`jti` again: its logout could not be recorded, and the IdP's retry of the
    /// same token must not be mistaken for a replay.
    pub fn release(&mut self, iss: &str, jti: &str) {
        self.live.remove(&Self::key(iss, jti));
    }
}

#[cfg(test)]
mod tests;
