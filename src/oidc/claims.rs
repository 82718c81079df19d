//! JWT time claims as RFC 7519 defines them, for ID tokens and logout tokens alike: every time
//! claim present is a NumericDate (a JSON number, never a string), and a token is not accepted
//! before its `nbf`. Pure.

use serde_json::Value;

/// Why a token's time claims refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeClaimError {
    /// The named claim is present but not a NumericDate.
    NotANumber(&'static str),
    /// `nbf` is later than now plus the clock skew.
    NotYetValid,
}

/// A JSON NumericDate as whole seconds: an integer, or a finite number within ±2^53 (floored).
pub(crate) fn numeric_date(v: &Value) -> Option<i64> {
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

/// Checks `nbf` and `auth_time` when present (the claims both kinds of token may carry beyond
/// the `exp` and `iat` each validates itself): NumericDates, and `nbf` ≤ `now` + `skew`.
pub(super) fn check_nbf_and_auth_time(
    nbf: Option<&Value>,
    auth_time: Option<&Value>,
    now: i64,
    skew: i64,
) -> Result<(), TimeClaimError> {
    if let Some(v) = auth_time {
        numeric_date(v).ok_or(TimeClaimError::NotANumber("auth_time"))?;
    }
    if let Some(v) = nbf {
        let nbf = numeric_date(v).ok_or(TimeClaimError::NotANumber("nbf"))?;
        if nbf > now.saturating_add(skew.max(0)) {
            return Err(TimeClaimError::NotYetValid);
        }
    }
    Ok(())
}

/// Checks every time claim of a JWT payload object: `exp`, `iat`, `nbf` and `auth_time`, when
/// present, are NumericDates, and `nbf` is not in the future (beyond `skew`).
pub(super) fn check_time_claims(
    payload: &serde_json::Map<String, Value>,
    now: i64,
    skew: i64,
) -> Result<(), TimeClaimError> {
    for claim in ["exp", "iat"] {
        if let Some(v) = payload.get(claim) {
            numeric_date(v).ok_or(TimeClaimError::NotANumber(claim))?;
        }
    }
    check_nbf_and_auth_time(payload.get("nbf"), payload.get("auth_time"), now, skew)
}

/// OIDC Core 3.1.2.1 and 3.1.3.7 (13): when the authorization request sent `max_age`, the ID
/// token must carry `auth_time`, and the authentication it names must be no older than
/// `max_age` (nor in the future), both with `skew`.
pub(crate) fn check_auth_time(
    auth_time: Option<i64>,
    max_age: u64,
    now: i64,
    skew: i64,
) -> Result<(), &'static str> {
    let auth_time = auth_time.ok_or("max_age was requested but the ID token has no auth_time")?;
    let skew = skew.max(0);
    let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
    if auth_time > now.saturating_add(skew) {
        return Err("auth_time is in the future");
    }
    if now.saturating_sub(auth_time) > max_age.saturating_add(skew) {
        return Err("auth_time is older than the requested max_age");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(payload: Value) -> Result<(), TimeClaimError> {
        check_time_claims(payload.as_object().unwrap(), 1_000, 60)
    }

    #[test]
    fn auth_time_is_required_and_bounded_when_max_age_was_requested() {
        assert_eq!(check_auth_time(Some(1_000), 0, 1_000, 60), Ok(()));
        assert_eq!(check_auth_time(Some(900), 100, 1_000, 0), Ok(()));
        assert_eq!(check_auth_time(Some(840), 100, 1_000, 60), Ok(()), "skew");
        assert!(check_auth_time(Some(839), 100, 1_000, 60).is_err());
        assert!(check_auth_time(None, 100, 1_000, 60).is_err());
        assert!(check_auth_time(Some(1_061), 100, 1_000, 60).is_err());
        assert_eq!(check_auth_time(Some(0), u64::MAX, 1_000, 60), Ok(()));
    }

    #[test]
    fn time_claims_must_be_numbers_and_nbf_not_in_the_future() {
        assert_eq!(check(json!({"exp": 2000, "iat": 900})), Ok(()));
        assert_eq!(
            check(json!({"nbf": 1060, "auth_time": 900.5})),
            Ok(()),
            "nbf within skew"
        );
        assert_eq!(
            check(json!({"nbf": 1061})),
            Err(TimeClaimError::NotYetValid)
        );
        for claim in ["exp", "iat", "nbf", "auth_time"] {
            assert_eq!(
                check(json!({ claim: "1000" })),
                Err(TimeClaimError::NotANumber(claim)),
                "{claim} as a string"
            );
            assert_eq!(
                check(json!({ claim: null })),
                Err(TimeClaimError::NotANumber(claim))
            );
            assert_eq!(
                check(json!({ claim: true })),
                Err(TimeClaimError::NotANumber(claim))
            );
        }
    }
}
