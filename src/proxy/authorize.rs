//! The access decision for one proxied request: the request's cookies and headers become
//! anonymous, a bearer token (with a re-sealed cookie to set when the session was renewed or
//! refreshed), or a refusal.
//!
//! Two steps, so that nothing happens to a session (no refresh, no renewal) before the
//! request has passed every check: [`check`] reads the session and applies the anti-forgery
//! rule and the route's methods; [`Checked::decide`] applies the route's token policy and
//! refreshes when due.

use std::sync::Arc;

use cookie::Cookie;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::app::{Active, App, RefreshOutcome, SessionState};
use crate::config::{CsrfMode, RouteSettings, RouteToken, TokenPolicy};
use crate::csrf;
use crate::dpop::Binding;
use crate::error::{Failure, Rejection};
use crate::proxy::own_token;
use crate::proxy::rules::{self, Refusal};
use crate::seal::jar::IndexSet;
use crate::session::Session;

/// A request that passed the anti-forgery and method checks, with its session as read.
#[derive(Debug)]
pub(super) struct Checked {
    state: SessionState,
    /// Where a step-up login returns to (the calling page), for routes with step-up.
    return_url: Option<String>,
}

/// What the proxy may send upstream for this request.
#[derive(Default)]
pub(super) struct Decision {
    /// `Authorization: Bearer …` (or `DPoP …`) to attach; none for anonymous requests and
    /// `token = "none"`.
    pub bearer: Option<HeaderValue>,
    /// For a DPoP-bound token: what its proof needs.
    pub dpop: Option<Binding>,
    /// Cookies that re-seal a renewed or refreshed session, set on the response.
    pub reseal: Option<Vec<Cookie<'static>>>,
    /// The session, for a WebSocket tunnel to close when it ends.
    pub session: Option<Arc<Session>>,
    /// The route's identity headers, with the session's claim values.
    pub identity: Vec<(HeaderName, HeaderValue)>,
}

// Not derived: the re-sealed cookies hold the sealed session; only their number is shown.
impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("bearer", &self.bearer.as_ref().map(|_| "[redacted]"))
            .field("dpop", &self.dpop)
            .field("reseal", &self.reseal.as_ref().map(Vec::len))
            .field("session", &self.session.as_ref().map(|s| &s.id))
            // Names only: the values are personal data.
            .field(
                "identity",
                &self.identity.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Reads the session (when the route or the anti-forgery mode needs it) and checks the
/// anti-forgery header (or, for a WebSocket upgrade, the `Origin`) and the route's methods.
///
/// The session is read before the anti-forgery check (a double-submit token is bound to it)
/// but nothing is done with it until the request has passed.
///
/// # Errors
/// 403 for a forged request, 405 for a method the route does not allow.
pub(super) fn check(
    app: &App,
    route: &RouteSettings,
    headers: &HeaderMap,
    method: &Method,
    websocket: bool,
    now: i64,
) -> Result<Checked, Failure> {
    let needs_session = route.token.reads_session()
        || (app.settings.bff.csrf_mode == CsrfMode::DoubleSubmit && !websocket);
    let state = if needs_session {
        app.load_session(headers, now)
    } else {
        SessionState::Anonymous {
            seen: IndexSet::default(),
        }
    };
    let checked = if websocket {
        csrf::check_websocket_origin(&app.settings, headers)
    } else {
        csrf::check_api_request(&app.settings, headers, state.session())
    };
    checked.map_err(|e| Failure::new(Rejection::Forbidden, format!("proxy: {e}")))?;
    if !route.methods.is_empty() && !route.methods.contains(method) {
        return Err(Failure::new(
            Rejection::MethodNotAllowed,
            format!("proxy: {method}"),
        ));
    }
    let return_url = route
        .rules
        .step_up()
        .then(|| rules::referer_return_url(&app.settings, headers))
        .flatten();
    Ok(Checked { state, return_url })
}

impl Checked {
    /// The session the request carries, when it opened (valid or awaiting the cluster).
    pub(super) fn session(&self) -> Option<&Session> {
        self.state.session()
    }

    /// Applies the route's token policy: the session's access token (refreshed first when it
    /// is due, or revalidated when its last grant is `revalidate_every` old) or the route's own
    /// token minted from the session, the application's token (`client`, and `user_or_client`
    /// without a session), nothing, or a refusal that clears the session cookies. The route's
    /// rules are applied first, on the claims of the session's current ID token (the
    /// refreshed one after a refresh): nothing is minted for a refused request.
    ///
    /// # Errors
    /// 401 when the route needs a session and there is none (or the IdP ended it on refresh),
    /// or a step-up when its login is not strong or recent enough; 403 when a claim rule fails
    /// or an identity header's claim cannot be sent; 502 when a refresh failed, 503 when the
    /// cluster store cannot vouch for the session; 401 or 502 naming the route when its own
    /// token cannot be had (the session lives on). A refused session refreshed on the way
    /// keeps its new tokens: the refusal carries the re-sealed cookie.
    pub(super) async fn decide(
        self,
        app: &App,
        route: &RouteSettings,
        websocket: bool,
        now: i64,
    ) -> Result<Decision, Failure> {
        match (route.token, self.state) {
            (TokenPolicy::None, _) => Ok(Decision::default()),
            (TokenPolicy::Client, _) => Box::pin(client_decision(app, route, now)).await,
            (_, SessionState::Active(mut a)) => {
                let refreshed = match app.refresh_if_due(&mut a.session, now).await {
                    RefreshOutcome::Ready { refreshed } => refreshed,
                    RefreshOutcome::Ended(why) => {
                        return Err(Failure::new(Rejection::Unauthenticated, why)
                            .with_cookies(app.clear_session(a.seen)));
                    }
                    RefreshOutcome::Unrecorded(e) => {
                        return Err(Failure::new(
                            Rejection::StoreUnavailable,
                            format!("session ended; revocation not recorded: {e}"),
                        ));
                    }
                    // The store was lost on the way (the refresh may have waited on another
                    // instance's): what every request gets while it is unavailable.
                    RefreshOutcome::Failed(e)
                        if app.cluster.as_ref().is_some_and(|c| c.refuses()) =>
                    {
                        return Err(Failure::new(
                            Rejection::StoreUnavailable,
                            format!("refresh: {e} (cluster store unavailable)"),
                        ));
                    }
                    RefreshOutcome::Failed(e) => {
                        return Err(Failure::new(Rejection::BadGateway, format!("refresh: {e}")));
                    }
                };
                a.reseal |= refreshed;
                // A route grant may have replaced the cookie's refresh token: carry the newest.
                // (After the refresh, which finds a pre-refresh cookie's result by its token.)
                a.reseal |= app.route_tokens.lanes.adopt(&mut a.session, now);
                let back = self.return_url.as_deref();
                let identity = match apply_rules(app, route, &a.session, back, now) {
                    Ok(identity) => identity,
                    Err(refused) => return Err(refused.with_cookies(reseal(app, &a, now))),
                };
                let (bearer, dpop) = if matches!(route.route_token, RouteToken::Default) {
                    // The header made when the cookie was opened, unless the tokens just changed.
                    let bearer = match a.bearer.take() {
                        Some(b) if !refreshed => Some(b),
                        _ => crate::session_cache::bearer(&a.session),
                    }
                    .ok_or_else(|| {
                        Failure::new(Rejection::Internal, "access token is not a header value")
                    })?;
                    let dpop =
                        a.session.dpop.as_ref().filter(|d| d.bound()).map(|d| {
                            Binding::new(&d.key, a.session.access_token.expose().expose())
                        });
                    (bearer, dpop)
                } else {
                    let (token, rotated) =
                        Box::pin(own_token::user(app, route, &mut a.session, now)).await;
                    a.reseal |= rotated;
                    match token {
                        Ok((bearer, dpop)) => (bearer, dpop),
                        Err(failed) => {
                            return Err(failed.with_cookies(reseal(app, &a, now)));
                        }
                    }
                };
                let reseal = a.reseal.then(|| reseal(app, &a, now));
                Ok(Decision {
                    bearer: Some(bearer),
                    dpop,
                    reseal,
                    session: websocket.then_some(a.session),
                    identity,
                })
            }
            (_, SessionState::Unverified(_)) => Err(Failure::new(
                Rejection::StoreUnavailable,
                "proxy: cluster store unavailable",
            )),
            // Claim rules and step-up cannot pass without a session: an optional route with
            // them is for signed-in users only.
            (TokenPolicy::Optional, _) if !route.rules.needs_session() => Ok(Decision::default()),
            (TokenPolicy::UserOrClient, _) if !route.rules.needs_session() => {
                Box::pin(client_decision(app, route, now)).await
            }
            (_, SessionState::Anonymous { seen }) => {
                Err(Failure::new(Rejection::Unauthenticated, "proxy: anonymous")
                    .with_cookies(app.clear_session(seen)))
            }
            (_, SessionState::Rejected { seen, why, .. }) => {
                Err(Failure::new(Rejection::Unauthenticated, why)
                    .with_cookies(app.clear_session(seen)))
            }
        }
    }
}

/// The application's token, and nothing of any session.
async fn client_decision(app: &App, route: &RouteSettings, now: i64) -> Result<Decision, Failure> {
    let (bearer, dpop) = own_token::client(app, route, now).await?;
    Ok(Decision {
        bearer: Some(bearer),
        dpop,
        ..Decision::default()
    })
}

/// The cookies that re-seal `a`'s session when it must be (none otherwise).
fn reseal(app: &App, a: &Active, now: i64) -> Vec<Cookie<'static>> {
    if !a.reseal {
        return Vec::new();
    }
    app.renewal_cookies(&a.session, now, a.seen)
}

/// The route's rules on `session`'s ID token claims: the identity headers to send, or the
/// refusal (its detail names the claim or the step-up reason, never a claim value).
fn apply_rules(
    app: &App,
    route: &RouteSettings,
    session: &Session,
    return_url: Option<&str>,
    now: i64,
) -> Result<Vec<(HeaderName, HeaderValue)>, Failure> {
    let r = &route.rules;
    if !r.needs_session() && r.identity_headers.is_empty() {
        return Ok(Vec::new());
    }
    let provider = app.provider_of(session);
    let skew = provider.map_or(0, crate::oidc::Provider::clock_skew);
    rules::apply(r, &session.id_claims(), now, skew).map_err(|refusal| match refusal {
        Refusal::Denied(why) => Failure::new(
            Rejection::AccessDenied,
            format!("proxy {}: {why}", route.prefix),
        ),
        Refusal::StepUp(why) => {
            // `/bff/login` takes the `[[providers]]` name; a lone `[oidc]` has none.
            let name = provider.map_or("", crate::oidc::Provider::callback_name);
            let challenge = rules::step_up(r, &app.settings.bff.prefix, name, return_url);
            Failure::new(
                Rejection::StepUp(Box::new(challenge)),
                format!("proxy {}: step-up: {why}", route.prefix),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_debug_shows_no_token_or_cookie_value() {
        let mut bearer = HeaderValue::from_static("Bearer secret-access-token");
        bearer.set_sensitive(true);
        let decision = Decision {
            bearer: Some(bearer),
            dpop: None,
            reseal: Some(vec![Cookie::new(
                "__Host-sealgate.0",
                "sealed-session-bytes",
            )]),
            session: None,
            identity: vec![(
                HeaderName::from_static("x-email"),
                HeaderValue::from_static("jane@example.test"),
            )],
        };
        let shown = format!("{decision:?}");
        assert!(!shown.contains("secret-access-token"), "{shown}");
        assert!(!shown.contains("sealed-session-bytes"), "{shown}");
        assert!(shown.contains("reseal: Some(1)"), "{shown}");
        assert!(!shown.contains("jane@example.test"), "{shown}");
        assert!(shown.contains("x-email"), "{shown}");
    }
}
