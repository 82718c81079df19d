//! `POST /bff/logout` (anti-forgery header) or `GET /bff/logout?sid=…&returnUrl=…`.
//!
//! The session id goes on the denylist first: if that fails, nothing else happens and the user is
//! told they are still signed in (a revocation is never dropped). Then the refresh token is
//! revoked at the IdP (RFC 7009, best effort, logged), every chunk is cleared with identical
//! attributes, and the browser goes to the IdP's end-session endpoint (with `id_token_hint`,
//! `post_logout_redirect_uri` and `state`) when there is one, else to the validated return URL.
//! A logout without a session cookie deletes nothing (a cross-site navigation carries no
//! `SameSite=Strict` cookie, and must not be able to log anyone out); one with invalid cookies
//! deletes just those; a GET whose `sid` does not match the session is refused and leaves it
//! alive. A `POST` with `Accept: application/json` gets `200 {"location": …}` instead of the
//! 302, because `fetch` cannot follow a cross-origin redirect to the IdP.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::user::logout_sid;
use crate::app::{App, SessionState};
use crate::csrf;
use crate::error::{Failure, Rejection};
use crate::request::single_param;
use crate::response::{self, Body};
use crate::return_url::ReturnUrl;
use crate::revocation::Revocation;
use crate::secret::fill_random;

/// Handles logout.
pub(super) async fn logout(
    app: &App,
    req: &Request<Incoming>,
    now: i64,
) -> Result<Response<Body>, Failure> {
    let query = req.uri().query();
    let raw_return = single_param(query, "returnUrl")
        .map_err(|()| Failure::new(Rejection::BadReturnUrl, "repeated returnUrl"))?;
    let return_url = ReturnUrl::parse_or_root(raw_return.as_deref())
        .map_err(|e| Failure::new(Rejection::BadReturnUrl, format!("logout: {e}")))?;
    if return_url.is_under(&app.settings.bff.prefix) {
        return Err(Failure::new(
            Rejection::BadReturnUrl,
            "logout: return URL under the BFF prefix",
        ));
    }
    let post = req.method() == Method::POST;
    let state = app.load_session(req.headers(), now);
    if post {
        csrf::check_api_request(&app.settings, req.headers(), state.session())
            .map_err(|e| Failure::new(Rejection::Forbidden, format!("logout: {e}")))?;
    }
    let wants_json = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let json = post && wants_json;

    let (session, seen) = match state {
        // Logging out cannot hurt while revocations elsewhere are unknown.
        SessionState::Active(a) | SessionState::Unverified(a) => (a.session, a.seen),
        // No session cookie arrived. That is also what a cross-site navigation to this URL
        // looks like (the session cookie is SameSite=Strict), so nothing is deleted: deleting
        // would let any site log the user out.
        SessionState::Anonymous { .. } => {
            return Ok(answer(json, return_url.as_str(), &[]));
        }
        // Cookies that arrived but are invalid, expired or revoked: only those are deleted.
        // Not while the cluster store is unavailable (policy refuse): a session revoked here
        // may not have reached the other instances yet, so "logged out" would not be true.
        SessionState::Rejected { .. } if app.cluster.as_ref().is_some_and(|c| c.refuses()) => {
            return Err(Failure::new(
                Rejection::Unavailable,
                "logout of a rejected session while the cluster store is unavailable",
            ));
        }
        // Revoked already (a second click, a retry, another instance's logout still waiting
        // for the others): "logged out" is said only once it holds everywhere, so the
        // revocation is shared again and confirmed (re-applying it changes nothing).
        SessionState::Rejected {
            seen,
            revoked: Some(session),
            ..
        } if app.cluster.is_some() => {
            app.revoke(Revocation::of_session(&session), now)
                .await
                .map_err(|e| Failure::new(Rejection::Unavailable, e.to_string()))?;
            return Ok(answer(json, return_url.as_str(), &app.clear_session(seen)));
        }
        SessionState::Rejected { seen, .. } => {
            return Ok(answer(json, return_url.as_str(), &app.clear_session(seen)));
        }
    };
    let clear = app.clear_session_everywhere(seen);
    if !post {
        let sid = single_param(query, "sid")
            .ok()
            .flatten()
            .unwrap_or_default();
        if !bool::from(sid.as_bytes().ct_eq(logout_sid(&session).as_bytes())) {
            return Err(Failure::new(
                Rejection::LogoutRefused,
                "logout sid mismatch",
            ));
        }
    }

    app.revoke(Revocation::of_session(&session), now)
        .await
        .map_err(|e| Failure::new(Rejection::Unavailable, e.to_string()))?;
    tracing::info!(session = ?session.id, "logged out");
    // Its route tokens go now (elsewhere they go when they expire: no request of a revoked
    // session reaches them), and the refresh token revoked at the IdP is the newest one.
    app.route_tokens.forget(session.id);
    let mut session = session;
    app.route_tokens.lanes.adopt(&mut session, now);

    // A loaded session's provider is configured (`load_session` refuses others).
    let provider = app.provider_of(&session);
    if let (Some(refresh), Some(provider)) = (&session.refresh_token, provider)
        && provider.can_revoke()
        && let Err(e) = provider.revoke_refresh_token(&refresh.expose(), now).await
    {
        tracing::warn!(session = ?session.id, error = %e, "refresh token revocation failed");
    }

    let mut state = [0u8; 16];
    fill_random(&mut state).map_err(|e| Failure::new(Rejection::Internal, e.to_string()))?;
    let hint = session.id_token.as_ref().map(|t| t.expose());
    let location = provider
        .and_then(|p| p.end_session_url(hint.as_ref(), &URL_SAFE_NO_PAD.encode(state)))
        .map_or_else(|| return_url.as_str().to_owned(), String::from);
    Ok(answer(json, &location, &clear))
}

/// Where the browser goes next. A `POST` comes from `fetch` (only scripts can add the
/// anti-forgery header), and `fetch` cannot follow a cross-origin redirect to the IdP; so a POST
/// asking for JSON (`Accept: application/json`) gets `200 {"location": …}` to navigate to, and
/// everything else gets the 302.
fn answer(json: bool, location: &str, cookies: &[cookie::Cookie<'static>]) -> Response<Body> {
    let r = if json {
        response::json(
            http::StatusCode::OK,
            &serde_json::json!({ "location": location }),
        )
    } else {
        response::redirect(location)
    };
    response::with_cookies(r, cookies)
}
