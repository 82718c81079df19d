//! `GET /bff/callback` (a lone `[oidc]`) or `/bff/callback/NAME` (each `[[providers]]` entry):
//! completes a login.
//!
//! Order matters: the query is parsed strictly; the login cookie named after `state` must open
//! (so a callback carrying someone else's state finds nothing: login CSRF fails); its state must
//! equal the query's (constant time); the RFC 9207 `iss` is checked before any token request;
//! only then is the code exchanged and the ID token validated. The new session always gets a
//! fresh id and replaces whatever session cookie the browser had (no fixation). Every failure
//! clears the login cookie and shows a short page with a link to start again: never a redirect,
//! so never a loop, and nothing from a failed response is kept.
//!
//! Two IdP answers are not failures but go back to the SPA, only after the state and `iss`
//! checks and with no session cookie touched: a silent login (`prompt=none`) answered with
//! "log in first" (`login_required`, `interaction_required`, `consent_required`,
//! `account_selection_required`) returns with `sealgate_login=none`, and a user who cancelled
//! (`access_denied`) with `sealgate_login=cancelled`, added to the validated return URL.

use cookie::Cookie;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::login::LoginFlow;
use crate::app::{App, SessionState};
use crate::error::{Failure, Rejection};
use crate::expiring::{Full, Seen};
use crate::oidc::loggable_error as loggable;
use crate::oidc::{LoginTokens, Provider};
use crate::response::{self, Body};
use crate::return_url::ReturnUrl;
use crate::revocation::Revocation;
use crate::seal::jar::{self, IndexSet};
use crate::seal::{ChunkSet, CookieName, Purpose, SealError};
use crate::secret::SecretString;
use crate::session::{Session, SessionId};

/// Longest accepted `code`.
pub(crate) const MAX_CODE_LEN: usize = 4096;
/// Longest accepted `state` (sealgate's are 43 characters).
pub(crate) const MAX_STATE_LEN: usize = 256;

/// The parameters of an authorization response. `Debug` redacts `code` and `state`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CallbackQuery {
    /// `state` (required).
    pub state: String,
    /// `code`, on success.
    pub code: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// `error`, on failure at the IdP.
    pub error: Option<String>,
}

impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackQuery")
            .field("state", &"<redacted>")
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("iss", &self.iss)
            .field("error", &self.error)
            .finish()
    }
}

/// Why a callback query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallbackQueryError {
    /// A parameter appeared twice.
    #[error("repeated parameter")]
    Repeated,
    /// `state` is missing or empty.
    #[error("missing state")]
    MissingState,
    /// Neither `code` nor `error`, or both.
    #[error("need exactly one of code and error")]
    CodeXorError,
    /// A value is too long.
    #[error("parameter too long")]
    TooLong,
}

/// Parses a callback query string. Pure; fuzzed.
///
/// # Errors
/// A [`CallbackQueryError`] for anything but exactly one `state` and one of `code` / `error`.
pub(crate) fn parse_callback_query(query: &str) -> Result<CallbackQuery, CallbackQueryError> {
    let (mut state, mut code, mut iss, mut error) = (None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "state" => &mut state,
            "code" => &mut code,
            "iss" => &mut iss,
            "error" => &mut error,
            _ => continue,
        };
        if slot.is_some() {
            return Err(CallbackQueryError::Repeated);
        }
        if v.len() > MAX_CODE_LEN {
            return Err(CallbackQueryError::TooLong);
        }
        *slot = Some(v.into_owned());
    }
    let state = state
        .filter(|s| !s.is_empty())
        .ok_or(CallbackQueryError::MissingState)?;
    if state.len() > MAX_STATE_LEN {
        return Err(CallbackQueryError::TooLong);
    }
    let code = code.filter(|c| !c.is_empty());
    if code.is_some() == error.is_some() {
        return Err(CallbackQueryError::CodeXorError);
    }
    Ok(CallbackQuery {
        state,
        code,
        iss,
        error,
    })
}

fn fail(message: &'static str, status: StatusCode, detail: String) -> Failure {
    Failure::new(Rejection::LoginFailed { status, message }, detail)
}

const EXPIRED: &str = "This sign-in link has expired or was already used. Please start again.";
const FAILED: &str = "Sign-in could not be completed. Please start again.";

/// Handles the callback. Every failure after the query names a login cookie also clears it.
pub(crate) async fn callback(
    app: &App,
    provider: &Provider,
    req: &Request<Incoming>,
    now: i64,
) -> Result<Response<Body>, Failure> {
    let query = parse_callback_query(req.uri().query().unwrap_or("")).map_err(|e| {
        // No usable `state` names the flow, so every pending login cookie the browser sent is
        // cleared: the flow this callback belonged to is among them, and none can complete
        // without a state anyway.
        fail(
            EXPIRED,
            StatusCode::BAD_REQUEST,
            format!("callback query: {e}"),
        )
        .with_cookies(clear_pending_logins(app, req.headers()))
    })?;
    // The login cookie for this state; a foreign or replayed state finds none.
    let name = app
        .login_cookie_name(&query.state)
        .ok_or_else(|| Failure::new(Rejection::Internal, "login cookie name"))?;
    let clear_login = jar::removal_cookies(&name, Purpose::Login, [0]);
    match complete(app, provider, req.headers(), &query, &name, now).await {
        Ok(Completed {
            mut cookies,
            target,
            outcome,
        }) => {
            cookies.extend(clear_login);
            let mut r = response::with_cookies(response::redirect(target.as_str()), &cookies);
            if let Some(outcome) = outcome {
                r.extensions_mut().insert(NoSession(outcome));
            }
            Ok(r)
        }
        Err(failure) => Err(failure.with_cookies(clear_login)),
    }
}

/// Deletions for every pending login cookie in the request.
fn clear_pending_logins(app: &App, headers: &HeaderMap) -> Vec<Cookie<'static>> {
    app.pending_login_names(headers)
        .into_iter()
        .filter_map(|n| CookieName::new(n).ok())
        .flat_map(|n| jar::removal_cookies(&n, Purpose::Login, [0]))
        .collect()
}

/// A callback that ends with a redirect to the SPA.
struct Completed {
    /// The new session's cookies (none when no session was made).
    cookies: Vec<Cookie<'static>>,
    /// The return URL, with the `sealgate_login` marker when there is one.
    target: ReturnUrl,
    /// The metrics outcome without a session (`None`: a session was made).
    outcome: Option<&'static str>,
}

/// The outcome of a callback that went back to the SPA without a session
/// (`interaction_required`, `cancelled`), set on its response for the login metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoSession(pub &'static str);

/// The login flow's checks, the code exchange and the new session: its cookies and where to
/// send the browser.
async fn complete(
    app: &App,
    provider: &Provider,
    headers: &HeaderMap,
    query: &CallbackQuery,
    name: &CookieName,
    now: i64,
) -> Result<Completed, Failure> {
    let set = ChunkSet::from_headers(name, 1, crate::request::cookie_headers(headers));
    let opened = app
        .codec
        .open(Purpose::Login, name, &set, now)
        .map_err(|e| {
            fail(
                EXPIRED,
                StatusCode::BAD_REQUEST,
                format!("login cookie: {e}"),
            )
        })?;
    let flow = LoginFlow::decode(opened.payload()).map_err(|e| {
        fail(
            FAILED,
            StatusCode::BAD_REQUEST,
            format!("login cookie payload: {e}"),
        )
    })?;
    check_state(app, &flow, &query.state, now)?;
    if !provider.is_tagged(flow.provider) {
        return Err(fail(
            FAILED,
            StatusCode::BAD_REQUEST,
            format!(
                "mix-up: a flow of provider {:?} at the callback of {:?}",
                flow.provider,
                provider.name()
            ),
        ));
    }
    check_iss(provider, query)?;
    // Sealed at login after validation; validated again so Location is always re-serialized.
    let target = ReturnUrl::parse(flow.return_url).unwrap_or_else(|_| ReturnUrl::root());
    if let Some(error) = &query.error {
        let marker = back_to_spa(error, flow.prompt_none).ok_or_else(|| {
            fail(
                FAILED,
                StatusCode::BAD_REQUEST,
                format!("IdP returned error {}", loggable(error)),
            )
        })?;
        tracing::info!(error = %loggable(error), "login not completed; back to the app");
        return Ok(Completed {
            cookies: Vec::new(),
            target: target.with_login_marker(Some(marker)),
            outcome: Some(if marker == "none" {
                "interaction_required"
            } else {
                "cancelled"
            }),
        });
    }
    let code = query
        .code
        .as_deref()
        .ok_or_else(|| fail(FAILED, StatusCode::BAD_REQUEST, "no code".into()))?;
    // The session's own DPoP key, made for this login and sealed in its cookie only.
    let dpop_key = provider
        .new_dpop_key()
        .map_err(|e| fail(FAILED, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let tokens = provider
        .exchange_code(
            code,
            &SecretString::new(flow.verifier.to_owned()),
            &SecretString::new(flow.nonce.to_owned()),
            flow.max_age,
            now,
            dpop_key.as_ref(),
        )
        .await
        .map_err(|e| {
            // An unreachable IdP is a gateway failure; anything it answered that does not
            // validate fails this login attempt as a bad request.
            let status = match e {
                crate::oidc::LoginError::Unreachable(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            fail(FAILED, status, format!("login: {e}"))
        })?;
    let session = new_session(app, provider, tokens, dpop_key, now)?;
    let cookies = replace_session(app, headers, &session, now).await?;
    tracing::info!(session = ?session.id, "login completed");
    Ok(Completed {
        cookies,
        target: target.with_login_marker(None),
        outcome: None,
    })
}

/// The `sealgate_login` marker for an IdP `error` that goes back to the SPA, or `None` for a
/// failure: "log in first" answers to a silent login are `none`; a cancelled login
/// (`access_denied`) is `cancelled`.
fn back_to_spa(error: &str, prompt_none: bool) -> Option<&'static str> {
    match error {
        "login_required"
        | "interaction_required"
        | "consent_required"
        | "account_selection_required"
            if prompt_none =>
        {
            Some("none")
        }
        "access_denied" => Some("cancelled"),
        _ => None,
    }
}

/// The flow's state must equal the query's (constant time) and must not have completed a
/// login before.
fn check_state(app: &App, flow: &LoginFlow<'_>, state: &str, now: i64) -> Result<(), Failure> {
    if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err(fail(
            EXPIRED,
            StatusCode::BAD_REQUEST,
            "state mismatch".into(),
        ));
    }
    let login_secs = i64::try_from(app.settings.session.login_timeout.as_secs()).unwrap_or(600);
    match app.mark_state_used(state, now.saturating_add(login_secs), now) {
        Ok(Seen::Fresh) => Ok(()),
        Ok(Seen::Replayed) => Err(fail(
            EXPIRED,
            StatusCode::BAD_REQUEST,
            "callback replay".into(),
        )),
        Err(Full) => Err(Failure::new(
            Rejection::Unavailable,
            "used-state table full",
        )),
    }
}

/// RFC 9207 `iss` of the authorization response, success or error (a mix-up attack shows as a
/// wrong or missing `iss`).
fn check_iss(provider: &Provider, query: &CallbackQuery) -> Result<(), Failure> {
    match (&query.iss, provider.sends_iss_parameter()) {
        (Some(iss), _) if iss != provider.issuer() => Err(fail(
            FAILED,
            StatusCode::BAD_REQUEST,
            "authorization response iss mismatch".into(),
        )),
        (None, true) => Err(fail(
            FAILED,
            StatusCode::BAD_REQUEST,
            "authorization response lacks iss".into(),
        )),
        _ => Ok(()),
    }
}

/// A new session (always a fresh id) for the tokens of a completed login.
fn new_session(
    app: &App,
    provider: &Provider,
    tokens: LoginTokens,
    dpop_key: Option<crate::dpop::DpopKey>,
    now: i64,
) -> Result<Session, Failure> {
    let id = SessionId::generate().map_err(|e| Failure::new(Rejection::Internal, e.to_string()))?;
    let absolute = now.saturating_add(app.absolute_timeout_secs());
    let stamp = app.denylist.stamp(
        provider.issuer(),
        &tokens.sub,
        tokens.sid.as_deref(),
        app.clock.now_ms(),
    );
    Ok(Session {
        id,
        provider: provider.tag().to_owned(),
        sub: tokens.sub,
        sid: tokens.sid,
        issued_at: now,
        stamp,
        granted_at: now,
        last_seen: now,
        idle_expires_at: now.saturating_add(app.idle_timeout_secs()).min(absolute),
        absolute_expires_at: absolute,
        access_token: tokens.access_token,
        access_expires_at: tokens.access_expires_at,
        refresh_token: tokens.refresh_token,
        id_token: app
            .settings
            .session
            .store_id_token
            .then_some(tokens.id_token),
        dpop: dpop_key.map(|key| crate::session::SessionDpop {
            key,
            token_type: tokens.token_type,
        }),
    })
}

/// The cookies of `session`, replacing whatever session cookie the browser had (planted or
/// its own) wholesale; a valid earlier session is also revoked, so a copy of its cookie dies
/// with it.
async fn replace_session(
    app: &App,
    headers: &HeaderMap,
    session: &Session,
    now: i64,
) -> Result<Vec<Cookie<'static>>, Failure> {
    let seen = match app.load_session(headers, now) {
        SessionState::Active(a) | SessionState::Unverified(a) => {
            if let Err(e) = app.revoke(Revocation::of_session(&a.session), now).await {
                return Err(Failure::new(Rejection::Unavailable, e.to_string()));
            }
            a.seen
        }
        SessionState::Anonymous { seen } | SessionState::Rejected { seen, .. } => seen,
    };
    let map_err = |e| match e {
        crate::app::SessionCookieError::Seal(SealError::TooLarge {
            needed_bytes,
            max_chunks,
        }) => fail(
            "Your account's tokens are too large for this application's session cookie. \
             An administrator can allow more cookie chunks or stop storing the ID token.",
            StatusCode::BAD_REQUEST,
            format!("session too large: {needed_bytes} bytes > {max_chunks} chunks"),
        ),
        other => Failure::from(other),
    };
    // Renewal later moves last-seen and the idle expiry as far as the absolute expiry; their
    // encoded deltas then grow by a few bytes. Check the largest form now, so a session that
    // fits at login never stops fitting.
    let mut widest = session.clone();
    widest.renew(
        session.absolute_expires_at.saturating_sub(1),
        app.idle_timeout_secs(),
    );
    app.session_cookies(&widest, now, IndexSet::default())
        .map_err(map_err)?;
    app.session_cookies(session, now, seen).map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_query_parsing() {
        let ok = parse_callback_query("code=abc&state=xyz&iss=https%3A%2F%2Fidp&session_state=1")
            .unwrap();
        assert_eq!(ok.code.as_deref(), Some("abc"));
        assert_eq!(ok.iss.as_deref(), Some("https://idp"));
        let err = parse_callback_query("error=access_denied&state=xyz").unwrap();
        assert_eq!(err.error.as_deref(), Some("access_denied"));
        use CallbackQueryError::*;
        for (q, e) in [
            ("code=a&state=x&state=y", Repeated),
            ("code=a&code=b&state=x", Repeated),
            ("code=a", MissingState),
            ("code=a&state=", MissingState),
            ("state=x", CodeXorError),
            ("state=x&code=a&error=e", CodeXorError),
        ] {
            assert_eq!(parse_callback_query(q), Err(e), "{q}");
        }
        let long = format!("code={}&state=x", "a".repeat(MAX_CODE_LEN + 1));
        assert_eq!(parse_callback_query(&long), Err(TooLong));
    }
}
