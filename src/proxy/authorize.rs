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
use http::{HeaderMap, HeaderValue, Method};

use crate::app::{App, RefreshOutcome, SessionState};
use crate::config::{CsrfMode, RouteSettings, TokenPolicy};
use crate::csrf;
use crate::error::{Failure, Rejection};
use crate::seal::jar::IndexSet;
use crate::session::Session;

/// A request that passed the anti-forgery and method checks, with its session as read.
#[derive(Debug)]
pub(super) struct Checked {
    state: SessionState,
}

/// What the proxy may send upstream for this request.
#[derive(Default)]
pub(super) struct Decision {
    /// `Authorization: Bearer …` to attach; none for anonymous requests and `token = "none"`.
    pub bearer: Option<HeaderValue>,
    /// Cookies that re-seal a renewed or refreshed session, set on the response.
    pub reseal: Option<Vec<Cookie<'static>>>,
    /// The session, for a WebSocket tunnel to close when it ends.
    pub session: Option<Arc<Session>>,
}

// Not derived: the re-sealed cookies hold the sealed session; only their number is shown.
impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("bearer", &self.bearer.as_ref().map(|_| "[redacted]"))
            .field("reseal", &self.reseal.as_ref().map(Vec::len))
            .field("session", &self.session.as_ref().map(|s| &s.id))
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
    let needs_session = route.token != TokenPolicy::None
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
    Ok(Checked { state })
}

impl Checked {
    /// Applies the route's token policy: the session's access token (refreshed first when it
    /// is due, or revalidated when its last grant is `revalidate_every` old), nothing, or a
    /// refusal that clears the session cookies.
    ///
    /// # Errors
    /// 401 when the route needs a session and there is none (or the IdP ended it on refresh),
    /// 502 when a refresh failed, 503 when the cluster store cannot vouch for the session.
    pub(super) async fn decide(
        self,
        app: &App,
        route: &RouteSettings,
        websocket: bool,
        now: i64,
    ) -> Result<Decision, Failure> {
        match (route.token, self.state) {
            (TokenPolicy::None, _) => Ok(Decision::default()),
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
                    RefreshOutcome::Failed(e) => {
                        return Err(Failure::new(Rejection::BadGateway, format!("refresh: {e}")));
                    }
                };
                a.reseal |= refreshed;
                // The header made when the cookie was opened, unless the tokens just changed.
                let bearer = match a.bearer.take() {
                    Some(b) if !refreshed => Some(b),
                    _ => crate::session_cache::bearer(&a.session),
                }
                .ok_or_else(|| {
                    Failure::new(Rejection::Internal, "access token is not a header value")
                })?;
                Ok(Decision {
                    bearer: Some(bearer),
                    reseal: a
                        .reseal
                        .then(|| app.renewal_cookies(&a.session, now, a.seen)),
                    session: websocket.then_some(a.session),
                })
            }
            (_, SessionState::Unverified(_)) => Err(Failure::new(
                Rejection::StoreUnavailable,
                "proxy: cluster store unavailable",
            )),
            (TokenPolicy::Optional, _) => Ok(Decision::default()),
            (TokenPolicy::User, SessionState::Anonymous { seen }) => {
                Err(Failure::new(Rejection::Unauthenticated, "proxy: anonymous")
                    .with_cookies(app.clear_session(seen)))
            }
            (TokenPolicy::User, SessionState::Rejected { seen, why }) => {
                Err(Failure::new(Rejection::Unauthenticated, why)
                    .with_cookies(app.clear_session(seen)))
            }
        }
    }
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
            reseal: Some(vec![Cookie::new(
                "__Host-sealgate.0",
                "sealed-session-bytes",
            )]),
            session: None,
        };
        let shown = format!("{decision:?}");
        assert!(!shown.contains("secret-access-token"), "{shown}");
        assert!(!shown.contains("sealed-session-bytes"), "{shown}");
        assert!(shown.contains("reseal: Some(1)"), "{shown}");
    }
}
