//! `POST /bff/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//!
//! Server to server: the IdP posts `logout_token=<JWT>` as a form. No session cookie is read, no
//! anti-forgery header is asked for (the IdP is no browser; the browser CSRF check does not apply
//! here): the signed logout token is the only credential, validated with the ID token keys and
//! algorithm allowlist ([`crate::oidc::logout_token`]).
//!
//! - Only `POST` (the router answers 405 otherwise); `Content-Type:
//!   application/x-www-form-urlencoded` (else 400); a body of at most [`MAX_BODY_BYTES`] (413
//!   beyond) that arrives within [`BODY_READ_TIMEOUT`] (408); exactly one non-empty
//!   `logout_token` parameter (else 400).
//! - A token that fails validation: 400 `{"error":"invalid_request"}` (section 2.8). Every
//!   response carries `Cache-Control: no-store`. The reason goes to the log, never the token.
//! - Effect, through [`App::revoke`], kept for the absolute session timeout:
//!   - `sid` present: the IdP session `iss`+`sid` ends: every sealgate session carrying that
//!     `sid` issued up to now is refused. With both `sid` and `sub`, only the `sid` is used: the
//!     `sid` names the session to end (section 2.6), and the user's other sessions (other
//!     devices, other IdP sessions) stay;
//!   - only `sub`: every session of the user (`iss`+`sub`) issued up to now ends.
//!
//!   A new login after the logout is a new session and is not affected; cookies issued before
//!   it stay refused (the entry is not cleared by a login). An unknown `sid` is recorded all
//!   the same and answered 200: sealgate keeps no list of sessions to check it against, and an
//!   entry nothing matches is harmless.
//! - Replay: a token whose `iss`+`jti` was accepted before is answered 200 and changes nothing;
//!   in particular it does not move the not-before forward, which would end sessions created
//!   after the first logout. `jti`s are remembered until the token could no longer be accepted
//!   (`oidc.max_logout_token_age` bounds it) in a bounded
//!   [`ExpiringSet`](crate::expiring::ExpiringSet) per instance.
//! - A full replay cache, or a revocation that cannot be stored: 503, nothing happened, and the
//!   IdP may retry (the `jti` is forgotten again so the retry is not taken for a replay).
//! - Success: 200 with an empty body.

use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::app::App;
use crate::error::{Failure, Rejection};
use crate::expiring::Seen;
use crate::oidc::logout_token;
use crate::response::{self, Body};
use crate::revocation::{Revocation, not_before_second};

/// Largest request body accepted (bytes); larger: 413.
pub(super) const MAX_BODY_BYTES: usize = 16 * 1024;

/// Time the IdP has to send the body once the head has arrived; then 408.
pub(super) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A refused back-channel logout request (400), saying why in the log.
fn invalid(detail: &str) -> Failure {
    Failure::new(
        Rejection::InvalidLogoutRequest,
        format!("back-channel logout: {detail}"),
    )
}

/// Handles a back-channel logout request.
pub(super) async fn backchannel_logout(
    app: &App,
    req: Request<Incoming>,
    now: i64,
) -> Result<Response<Body>, Failure> {
    if !is_form(req.headers()) {
        return Err(invalid(
            "Content-Type is not application/x-www-form-urlencoded",
        ));
    }
    let body = read_body(req).await?;
    let token = single_form_value(&body, "logout_token").map_err(invalid)?;
    let claims = validate(app, &token, now)
        .await
        .map_err(|e| invalid(&format!("logout token refused: {e}")))?;

    let key = logout_token::replay_key(&claims.iss, &claims.jti);
    // One in flight already (an IdP retrying one it gave up waiting for): answered once that
    // one is done everywhere, or as it was answered. Claimed under the lock, before the replay
    // cache is asked, so no retry slips between the two.
    let (done, outcome) = tokio::sync::watch::channel(None);
    let first = {
        let mut pending = app
            .logouts_in_flight
            .lock()
            .map_err(|_| Failure::new(Rejection::Internal, "logout table lock poisoned"))?;
        match pending.get(&key) {
            Some(first) => Some(first.clone()),
            None => {
                pending.insert(key, outcome);
                None
            }
        }
    };
    if let Some(first) = first {
        return match settled(first).await {
            Some(true) => Ok(ok()),
            _ => Err(Failure::new(
                Rejection::RetryLater,
                "back-channel logout replayed while the first was not recorded",
            )),
        };
    }
    let _in_flight = InFlight { app, key };
    let result = replay_checked(app, claims, key, now).await;
    let _ = done.send(Some(result.is_ok()));
    result
}

/// Records the logout unless its token was accepted before (then nothing changes).
async fn replay_checked(
    app: &App,
    claims: logout_token::LogoutClaims,
    key: [u8; 32],
    now: i64,
) -> Result<Response<Body>, Failure> {
    let seen = app
        .logout_tokens
        .lock()
        .map_err(|_| Failure::new(Rejection::Internal, "replay cache lock poisoned"))?
        .insert(key, claims.acceptable_until, now)
        .map_err(|e| Failure::new(Rejection::RetryLater, format!("back-channel logout: {e}")))?;
    if seen == Seen::Replayed {
        tracing::info!("back-channel logout token replayed; nothing changed");
        return Ok(ok());
    }
    record(app, claims, now).await
}

/// Takes a back-channel logout out of the table of those in flight when it ends, however it
/// ends (a request dropped half-way included).
struct InFlight<'a> {
    app: &'a App,
    key: [u8; 32],
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.app.logouts_in_flight.lock() {
            pending.remove(&self.key);
        }
    }
}

/// Waits for a back-channel logout in flight to be answered (`None`: it went away unanswered).
async fn settled(mut outcome: tokio::sync::watch::Receiver<Option<bool>>) -> Option<bool> {
    outcome
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|v| *v)
}

/// Revokes what a validated logout token names, and shares it with every instance.
async fn record(
    app: &App,
    claims: logout_token::LogoutClaims,
    now: i64,
) -> Result<Response<Body>, Failure> {
    // Every session of that sid or sub stamped until now is caught; a login after this
    // revocation is applied here is stamped past it (revocation module docs).
    let not_before = app.denylist.not_before(app.clock.now_ms());
    let until = not_before_second(not_before).saturating_add(app.absolute_timeout_secs());
    let revocation = match (claims.sid, claims.sub) {
        (Some(sid), _) => Revocation::Sid {
            iss: claims.iss.clone(),
            sid,
            not_before,
            until,
        },
        (None, Some(sub)) => Revocation::Sub {
            iss: claims.iss.clone(),
            sub,
            not_before,
            until,
        },
        // `validate` guarantees one of them; refuse rather than assume.
        (None, None) => {
            release(app, &claims.iss, &claims.jti);
            return Err(invalid("neither sid nor sub"));
        }
    };
    if let Err(e) = app.revoke(revocation, now).await {
        release(app, &claims.iss, &claims.jti);
        return Err(Failure::new(
            Rejection::RetryLater,
            format!("back-channel logout not recorded: {e}"),
        ));
    }
    tracing::info!("back-channel logout recorded");
    Ok(ok())
}

/// Validates `token` for the provider it is for: each configured provider in turn, until one
/// accepts it. A token for another issuer or client fails a provider's claim checks before any
/// key is looked up, so trying costs no JWKS fetch. The error reported is the first that is not
/// "another issuer or audience", so the log says why the right provider refused it.
async fn validate(
    app: &App,
    token: &str,
    now: i64,
) -> Result<logout_token::LogoutClaims, logout_token::LogoutTokenError> {
    use logout_token::LogoutTokenError as E;
    let mut refused = None;
    for provider in &app.providers {
        match provider.validate_logout_token(token, now).await {
            Ok(claims) => return Ok(claims),
            Err(e @ (E::Issuer | E::Audience)) => {
                refused.get_or_insert(e);
            }
            Err(e) => {
                if refused.is_none_or(|r| matches!(r, E::Issuer | E::Audience)) {
                    refused = Some(e);
                }
            }
        }
    }
    Err(refused.unwrap_or(E::Issuer))
}

fn ok() -> Response<Body> {
    response::empty(StatusCode::OK)
}

/// Forgets a `jti` whose logout was not recorded, so the IdP's retry is not taken for a replay.
fn release(app: &App, iss: &str, jti: &str) {
    if let Ok(mut cache) = app.logout_tokens.lock() {
        cache.remove(&logout_token::replay_key(iss, jti));
    }
}

/// Whether the single `Content-Type` is `application/x-www-form-urlencoded` (parameters such
/// as `charset` allowed, any case).
fn is_form(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value.to_str().is_ok_and(|v| {
        v.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}

/// Reads the body: at most [`MAX_BODY_BYTES`], within [`BODY_READ_TIMEOUT`].
async fn read_body(req: Request<Incoming>) -> Result<bytes::Bytes, Failure> {
    let too_large = || {
        Failure::new(
            Rejection::PayloadTooLarge,
            "back-channel logout: body over the limit",
        )
    };
    // A declared length over the limit is refused before anything is read.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| usize::try_from(n).map_or(true, |n| n > MAX_BODY_BYTES)) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(Failure::new(
            Rejection::BodyTimeout,
            "back-channel logout: body not received in time",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Failure::new(
            Rejection::InvalidLogoutRequest,
            format!("back-channel logout: body unreadable: {e}"),
        )),
    }
}

/// The one non-empty value of form parameter `name`; other parameters are ignored.
fn single_form_value(body: &[u8], name: &str) -> Result<String, &'static str> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        if k == name {
            if found.is_some() {
                return Err("logout_token given more than once");
            }
            found = Some(v.into_owned());
        }
    }
    match found {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err("empty logout_token"),
        None => Err("no logout_token parameter"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_must_be_a_form() {
        let check = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(CONTENT_TYPE, v.parse().unwrap());
            }
            is_form(&h)
        };
        assert!(check(&["application/x-www-form-urlencoded"]));
        assert!(check(&["Application/X-WWW-Form-Urlencoded; charset=UTF-8"]));
        assert!(!check(&[]));
        assert!(!check(&["text/plain"]));
        assert!(!check(&["application/json"]));
        assert!(!check(&["application/x-www-form-urlencoded-x"]));
        assert!(!check(&[
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded"
        ]));
    }

    #[test]
    fn exactly_one_non_empty_logout_token() {
        assert_eq!(
            single_form_value(b"logout_token=a.b.c&x=1", "logout_token"),
            Ok("a.b.c".into())
        );
        assert_eq!(
            single_form_value(b"logout_token=a%2Bb", "logout_token"),
            Ok("a+b".into())
        );
        assert!(single_form_value(b"logout_token=a&logout_token=a", "logout_token").is_err());
        assert!(single_form_value(b"logout_token=", "logout_token").is_err());
        assert!(single_form_value(b"x=1", "logout_token").is_err());
        assert!(single_form_value(b"", "logout_token").is_err());
    }
}
