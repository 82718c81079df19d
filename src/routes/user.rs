//! `GET /bff/user`: who is signed in (and how: the ID token's `acr` and `auth_time`). Requires the anti-forgery header; never returns a token.
//! A session due for revalidation (`[session] revalidate_every`) is revalidated first, as on a
//! proxied call, so an ended session is not reported as signed in.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::app::{App, RefreshOutcome, SessionState};
use crate::csrf;
use crate::error::{Failure, Rejection};
use crate::response::{self, Body};
use crate::session::Session;

/// Handles `/bff/user`.
pub(super) async fn user(
    app: &App,
    req: &Request<Incoming>,
    now: i64,
) -> Result<Response<Body>, Failure> {
    let state = app.load_session(req.headers(), now);
    csrf::check_api_request(&app.settings, req.headers(), state.session())
        .map_err(|e| Failure::new(Rejection::Forbidden, format!("/user: {e}")))?;
    let mut active = match state {
        SessionState::Active(a) => a,
        SessionState::Unverified(_) => {
            return Err(Failure::new(
                Rejection::StoreUnavailable,
                "/user: cluster store unavailable",
            ));
        }
        SessionState::Anonymous { seen } => {
            return Err(Failure::new(Rejection::Unauthenticated, "anonymous")
                .with_cookies(app.clear_session(seen)));
        }
        SessionState::Rejected { seen, why, .. } => {
            return Err(
                Failure::new(Rejection::Unauthenticated, why).with_cookies(app.clear_session(seen))
            );
        }
    };
    match app.revalidate_if_due(&mut active.session, now).await {
        RefreshOutcome::Ready { refreshed } => active.reseal |= refreshed,
        RefreshOutcome::Ended(why) => {
            return Err(
                Failure::new(Rejection::Unauthenticated, format!("/user: {why}"))
                    .with_cookies(app.clear_session(active.seen)),
            );
        }
        RefreshOutcome::Unrecorded(e) => {
            return Err(Failure::new(
                Rejection::StoreUnavailable,
                format!("/user: session ended; revocation not recorded: {e}"),
            ));
        }
        // Nothing here needs the access token: an unreachable IdP signs nobody out; the next
        // request tries again.
        RefreshOutcome::Failed(e) => {
            tracing::warn!(session = ?active.session.id, error = %e, "/user: revalidation failed; served from the session");
        }
    }
    // A route grant may have replaced the cookie's refresh token: carry the newest.
    active.reseal |= app.route_tokens.lanes.adopt(&mut active.session, now);
    let s = &active.session;
    let provider = app.provider_of(s).map(crate::oidc::Provider::name);
    let claims = s.id_claims();
    let mut body = json!({
        "sub": s.sub,
        "provider": provider,
        "claims": selected_claims(&claims, &app.settings.bff.user_claims),
        "session": {
            "issued_at": s.issued_at,
            "idle_expires_at": s.idle_expires_at,
            "absolute_expires_at": s.absolute_expires_at,
        },
        "logout_url": format!("{}/logout?sid={}", app.settings.bff.prefix, logout_sid(s)),
    });
    // How the user logged in, for a SPA that asks for step-up before a route does.
    if let Some(acr) = claims.get("acr").filter(|v| v.is_string()) {
        body["acr"] = acr.clone();
    }
    if let Some(auth_time) = claims.get("auth_time").and_then(crate::oidc::numeric_date) {
        body["auth_time"] = auth_time.into();
    }
    let r = response::json(StatusCode::OK, &body);
    if active.reseal {
        let cookies = app.renewal_cookies(s, now, active.seen);
        return Ok(response::with_cookies(r, &cookies));
    }
    Ok(r)
}

/// The configured claims from the ID token (validated at login), when it is stored.
fn selected_claims(claims: &Map<String, Value>, names: &[String]) -> Value {
    Value::Object(
        names
            .iter()
            .filter_map(|n| claims.get(n).map(|v| (n.clone(), v.clone())))
            .collect(),
    )
}

/// The value a `GET /bff/logout?sid=` link must carry for this session: a hash of the session
/// id, unguessable without the cookie, so a cross-site page cannot log the user out.
pub(super) fn logout_sid(s: &Session) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"sealgate logout v1");
    h.update(s.id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}
