//! The one place where failures become HTTP responses (linkerd2-proxy's "rescue").
//!
//! Handlers return `Result<Response, Failure>`; [`Failure::into_response`] logs the detail and
//! answers with a short generic body: a problem JSON for API calls, a plain page for browser
//! navigations. Nothing a failure carries for the log ever reaches the client.

use cookie::Cookie;
use http::{HeaderValue, Response, StatusCode};

use crate::response::{self, Body};

/// What went wrong, as the client may learn it.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// No valid session (401 JSON).
    Unauthenticated,
    /// Missing anti-forgery header or a disallowed origin (403 JSON).
    Forbidden,
    /// The session's login is not strong or recent enough for the route (401 JSON with what to
    /// log in with, and `WWW-Authenticate`, RFC 9470).
    StepUp(Box<StepUp>),
    /// The signed-in user may not use the route: a claim rule failed, or an identity header's
    /// claim cannot be sent (403 JSON `access_denied`).
    AccessDenied,
    /// A login started by `fetch`/XHR instead of a navigation (401 JSON).
    NotNavigation,
    /// No such endpoint (404 JSON).
    NotFound,
    /// Wrong method (405 JSON).
    MethodNotAllowed,
    /// A malformed API request (400 JSON).
    BadRequest,
    /// A bad return URL on a navigation (400 page).
    BadReturnUrl,
    /// A login that cannot complete (page with a link to start again).
    LoginFailed {
        /// 400 for the browser's request, 502 when the IdP misbehaved.
        status: StatusCode,
        /// A short message for the user (no detail).
        message: &'static str,
    },
    /// A forged or stale logout link (403 page); the session stays alive.
    LogoutRefused,
    /// The route's own token could not be had: the IdP refused the grant (401 JSON
    /// `route_token_refused`) or failed (502 JSON `route_token_unavailable`). The body names the
    /// route; the session is left as it is.
    RouteToken {
        /// The route's prefix.
        route: String,
        /// Whether the IdP refused (401) rather than failed (502).
        refused: bool,
    },
    /// The upstream could not be reached (502 JSON).
    BadGateway,
    /// The upstream did not answer in time (504 JSON).
    GatewayTimeout,
    /// A revocation (or a used login state) could not be stored; nothing happened (503 page).
    Unavailable,
    /// A limit is reached (e.g. open WebSocket tunnels); try later (503 JSON).
    Overloaded,
    /// The client's or the session's request rate is over its `[limits]` (429 JSON with
    /// `Retry-After`, in whole seconds).
    TooManyRequests {
        /// Seconds until a request would be allowed.
        retry_after: u64,
    },
    /// The cluster store is unreachable and the policy refuses sessions meanwhile (503 JSON).
    StoreUnavailable,
    /// A back-channel logout request that is not acceptable: wrong content type, parameters,
    /// or logout token (400 `{"error":"invalid_request"}`, OIDC Back-Channel Logout 2.8).
    InvalidLogoutRequest,
    /// A request body over its limit (413 JSON).
    PayloadTooLarge,
    /// A request body that did not arrive in time (408 JSON).
    BodyTimeout,
    /// A server-to-server request that could not be carried out (a revocation could not be
    /// stored, a table is full); nothing happened and a retry may succeed (503 JSON).
    RetryLater,
    /// A bug or an environment failure (500).
    Internal,
}

/// What a step-up answer tells the SPA (RFC 9470 vocabulary): log in again with these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepUp {
    /// The `acr_values` to log in with (space-separated), when the route names some.
    pub acr_values: Option<String>,
    /// The `max_age` to log in with, in seconds, when the route has `max_auth_age`.
    pub max_age: Option<u64>,
    /// `/bff/login?…` with both, the session's provider and a return URL when one is known.
    pub login_url: String,
}

impl StepUp {
    /// The `WWW-Authenticate` challenge (RFC 9470 section 3); the values are `acr_values`
    /// tokens (no quote or backslash) and digits.
    fn challenge(&self) -> Option<HeaderValue> {
        let mut c = String::from("Bearer error=\"insufficient_user_authentication\"");
        if let Some(acr) = &self.acr_values {
            c.push_str(&format!(", acr_values=\"{acr}\""));
        }
        if let Some(age) = self.max_age {
            c.push_str(&format!(", max_age={age}"));
        }
        HeaderValue::from_str(&c).ok()
    }

    fn response(&self) -> Response<Body> {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": "stronger authentication required",
            "status": 401,
            "error": "insufficient_user_authentication",
            "login_url": self.login_url,
        });
        if let Some(acr) = &self.acr_values {
            body["acr_values"] = acr.as_str().into();
        }
        if let Some(age) = self.max_age {
            body["max_age"] = age.into();
        }
        let mut r = response::problem_json(StatusCode::UNAUTHORIZED, &body);
        if let Some(v) = self.challenge() {
            r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// A rejection, the detail for the log, and cookies to set anyway (clearing ones).
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the client learns.
    pub rejection: Rejection,
    /// What the log learns (never a secret).
    pub detail: String,
    /// `Set-Cookie`s to send with the error (deletions).
    pub cookies: Vec<Cookie<'static>>,
    /// The `Allow` header of a 405 (RFC 9110 15.5.6), e.g. `GET, HEAD`.
    pub allow: Option<&'static str>,
}

impl Failure {
    /// A failure with a log detail and no cookies.
    pub(crate) fn new(rejection: Rejection, detail: impl Into<String>) -> Self {
        Self {
            rejection,
            detail: detail.into(),
            cookies: Vec::new(),
            allow: None,
        }
    }

    /// Names the methods the resource does allow (sent as `Allow`).
    #[must_use]
    pub(crate) fn with_allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    /// Adds cookies to send with the error response.
    #[must_use]
    pub(crate) fn with_cookies(
        mut self,
        cookies: impl IntoIterator<Item = Cookie<'static>>,
    ) -> Self {
        self.cookies.extend(cookies);
        self
    }

    /// Logs and renders. `login_href` is where "start again" links point.
    pub(crate) fn into_response(self, login_href: &str) -> Response<Body> {
        use Rejection::*;
        let status = match &self.rejection {
            Unauthenticated | NotNavigation | StepUp(_) => StatusCode::UNAUTHORIZED,
            RouteToken { refused: true, .. } => StatusCode::UNAUTHORIZED,
            RouteToken { refused: false, .. } => StatusCode::BAD_GATEWAY,
            Forbidden | LogoutRefused | AccessDenied => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BadRequest | BadReturnUrl | InvalidLogoutRequest => StatusCode::BAD_REQUEST,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            LoginFailed { status, .. } => *status,
            BadGateway => StatusCode::BAD_GATEWAY,
            GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Unavailable | Overloaded | StoreUnavailable | RetryLater => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), detail = %self.detail, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), detail = %self.detail, "request rejected");
        }
        let r = match self.rejection {
            Unauthenticated => response::problem(status, "unauthenticated"),
            NotNavigation => response::problem(status, "login must be a top-level navigation"),
            Forbidden => response::problem(status, "forbidden"),
            StepUp(step_up) => step_up.response(),
            AccessDenied => response::problem_json(
                status,
                &serde_json::json!({
                    "type": "about:blank",
                    "title": "access denied",
                    "status": status.as_u16(),
                    "error": "access_denied",
                }),
            ),
            RouteToken { route, refused } => {
                let (title, error) = if refused {
                    (
                        "the identity provider refused this route's token",
                        "route_token_refused",
                    )
                } else {
                    (
                        "this route's token is unavailable",
                        "route_token_unavailable",
                    )
                };
                response::problem_json(
                    status,
                    &serde_json::json!({
                        "type": "about:blank",
                        "title": title,
                        "status": status.as_u16(),
                        "error": error,
                        "route": route,
                    }),
                )
            }
            NotFound => response::problem(status, "not found"),
            MethodNotAllowed => response::problem(status, "method not allowed"),
            BadRequest => response::problem(status, "bad request"),
            BadGateway => response::problem(status, "upstream unavailable"),
            GatewayTimeout => response::problem(status, "upstream timed out"),
            Overloaded => response::problem(status, "overloaded"),
            TooManyRequests { retry_after } => {
                let mut r = response::problem(status, "too many requests");
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
                r
            }
            StoreUnavailable => response::problem(status, "temporarily unavailable"),
            InvalidLogoutRequest => {
                response::json(status, &serde_json::json!({ "error": "invalid_request" }))
            }
            PayloadTooLarge => response::problem(status, "request body too large"),
            BodyTimeout => response::problem(status, "request body timed out"),
            RetryLater => response::problem(status, "temporarily unavailable"),
            Internal => response::problem(status, "internal error"),
            BadReturnUrl => response::page(
                status,
                "Bad request",
                "The return address is not allowed.",
                None,
            ),
            LoginFailed { message, .. } => response::page(
                status,
                "Sign-in failed",
                message,
                Some((login_href, "Start again")),
            ),
            LogoutRefused => response::page(
                status,
                "Sign-out not confirmed",
                "This sign-out link is not valid for your session. You are still signed in.",
                None,
            ),
            Unavailable => response::page(
                status,
                "Try again",
                "This could not be completed right now and nothing has changed. Please try again.",
                None,
            ),
        };
        let mut r = response::with_cookies(r, &self.cookies);
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}
