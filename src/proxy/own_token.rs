//! A route's own token ([`crate::route_tokens`]): the user's, minted from the session for the
//! route's `resource` / `scopes` (a refresh-token grant, in the session's turn) or by `exchange`
//! of its access token; or the application's (`token = "client"`, a client-credentials grant
//! with the route's `resource` / `scopes`, from the route's `provider`).
//!
//! A failed grant answers this request only: 401 `route_token_refused` when the IdP refused a
//! user's grant, 502 `route_token_unavailable` otherwise (an IdP that is down or answers
//! nonsense, and any failure of a client token, which no caller can do anything about). The
//! session is neither ended nor revoked, its cookie not cleared: its other routes keep working.

use std::sync::Arc;

use http::HeaderValue;

use crate::app::App;
use crate::config::{RouteSettings, RouteToken};
use crate::dpop::Binding;
use crate::error::{Failure, Rejection};
use crate::metrics::{Metrics, metrics};
use crate::oidc::RouteGrantError;
use crate::route_tokens::{Minted, Outcome};
use crate::session::Session;

fn refresh_before(app: &App) -> i64 {
    i64::try_from(app.settings.session.refresh_before.as_secs()).unwrap_or(30)
}

/// The route's token for the user of `session` at `now` (with its DPoP binding, when the IdP
/// bound it to the session's key; or 401 or 502 naming the route, see the module doc), and
/// whether the session's refresh token changed on the way, failed or not (a grant rotated it:
/// the cookie must be re-sealed either way).
pub(super) async fn user(
    app: &App,
    route: &RouteSettings,
    session: &mut Arc<Session>,
    now: i64,
) -> (Result<(HeaderValue, Option<Binding>), Failure>, bool) {
    match user_token(app, route, session, now).await {
        Ok((bearer, binding, rotated)) => (Ok((bearer, binding)), rotated),
        Err((failure, rotated)) => (Err(failure), rotated),
    }
}

async fn user_token(
    app: &App,
    route: &RouteSettings,
    session: &mut Arc<Session>,
    now: i64,
) -> Result<(HeaderValue, Option<Binding>, bool), (Failure, bool)> {
    let Some(provider) = app.provider_of(session) else {
        let f = Failure::new(
            Rejection::Internal,
            "the session's provider is not configured",
        );
        return Err((f, false));
    };
    let before = refresh_before(app);
    let keep = app.idle_timeout_secs();
    let id = session.id;
    let key = session.dpop.as_ref().map(|d| d.key.clone());
    let key = key.as_ref();
    let outcome = match &route.route_token {
        RouteToken::Default => {
            let f = Failure::new(Rejection::Internal, "the route has no token of its own");
            return Err((f, false));
        }
        RouteToken::Grant { resource, scope } => match session.refresh_token.clone() {
            None => Err(RouteGrantError::NoRefreshToken),
            Some(refresh) => {
                let mint = || async {
                    let granted = app
                        .route_tokens
                        .lanes
                        .redeem(
                            id,
                            &refresh,
                            (now, keep),
                            app.cluster.as_deref(),
                            |rt| async move {
                                let (resource, scope) = (resource.as_deref(), scope.as_deref());
                                provider.route_refresh(&rt, resource, scope, now, key).await
                            },
                        )
                        .await;
                    counted(
                        route,
                        "refresh",
                        granted.and_then(|g| Minted::new(&g, now, before, key)),
                    )
                };
                app.route_tokens.user(id, route.index, now, mint).await
            }
        },
        RouteToken::Exchange {
            audience,
            resource,
            scope,
        } => {
            let subject = session.access_token.expose();
            let mint = || async {
                let granted = provider
                    .exchange_token(
                        &subject,
                        audience.as_deref(),
                        resource.as_deref(),
                        scope.as_deref(),
                        now,
                        key,
                    )
                    .await;
                counted(
                    route,
                    "exchange",
                    granted.and_then(|g| Minted::new(&g, now, before, key)),
                )
            };
            app.route_tokens.user(id, route.index, now, mint).await
        }
    };
    // Whether or not this grant worked, another may have replaced the refresh token.
    let rotated = app.route_tokens.lanes.adopt(session, now);
    match outcome {
        Ok(m) => Ok((m.bearer, m.binding, rotated)),
        Err(e) => Err((failure(route, &e, true), rotated)),
    }
}

/// The application's token for `route` at `now`, with its DPoP binding (to the instance's
/// client key of the provider) when it has one.
///
/// # Errors
/// 502 naming the route.
pub(super) async fn client(
    app: &App,
    route: &RouteSettings,
    now: i64,
) -> Result<(HeaderValue, Option<Binding>), Failure> {
    // Configuration refuses a `provider` that is not configured.
    let Some(provider) = app.provider_named(route.provider.as_deref()) else {
        return Err(Failure::new(
            Rejection::Internal,
            "the route's provider is not configured",
        ));
    };
    let (resource, scope) = match &route.route_token {
        RouteToken::Grant { resource, scope } => (resource.as_deref(), scope.as_deref()),
        RouteToken::Default | RouteToken::Exchange { .. } => (None, None),
    };
    let before = refresh_before(app);
    let mint = || async {
        let granted = provider.client_credentials(resource, scope, now).await;
        counted(
            route,
            "client",
            granted.and_then(|g| Minted::new(&g, now, before, provider.client_dpop_key())),
        )
    };
    app.route_tokens
        .client(route.index, now, mint)
        .await
        .map(|m| (m.bearer, m.binding))
        .map_err(|e| failure(route, &e, false))
}

/// Logs and counts a grant of `kind`.
fn counted(route: &RouteSettings, kind: &'static str, outcome: Outcome) -> Outcome {
    let m = metrics();
    match &outcome {
        Ok(_) => {
            tracing::info!(route = %route.prefix, kind, "route token minted");
            Metrics::outcome(&m.route_token_grants, "success", kind);
        }
        Err(e) => {
            tracing::warn!(route = %route.prefix, kind, error = %e, "route token grant failed");
            let outcome = if e.is_refusal() { "refused" } else { "failed" };
            Metrics::outcome(&m.route_token_grants, outcome, kind);
        }
    }
    outcome
}

/// The answer to a failed grant: 401 when the IdP refused a user's grant, else 502.
fn failure(route: &RouteSettings, e: &RouteGrantError, user: bool) -> Failure {
    let name = if route.prefix.is_empty() {
        "/"
    } else {
        route.prefix.as_str()
    };
    Failure::new(
        Rejection::RouteToken {
            route: name.to_owned(),
            refused: user && e.is_refusal(),
        },
        format!("route token for {name}: {e}"),
    )
}
