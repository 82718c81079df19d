//! Why a login or a refresh failed at the IdP (logged in full; the browser sees a generic
//! answer).

/// Why a login could not be completed with the IdP. Logged in full; the browser sees a
/// generic page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    /// The token endpoint answered with an OAuth error (`invalid_grant`, …).
    #[error("token endpoint error: {0}")]
    TokenEndpoint(String),
    /// The token endpoint could not be reached or timed out.
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    /// The token request could not be made, or the response did not parse.
    #[error("token request failed: {0}")]
    TokenRequest(String),
    /// The token response lacks a required token.
    #[error("token response has no {0}")]
    MissingToken(&'static str),
    /// The ID token failed validation.
    #[error("ID token rejected: {0}")]
    IdToken(String),
    /// The userinfo call failed or named another subject.
    #[error("userinfo: {0}")]
    UserInfo(String),
}

/// A refresh that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RefreshError {
    /// `invalid_grant`: the refresh token is no longer valid; the session is over.
    #[error("refresh token rejected (invalid_grant)")]
    InvalidGrant,
    /// The refreshed ID token names another `iss`, `sub` or `aud` (OIDC Core 12.2): the
    /// session's identity would change, so the session is over.
    #[error("refreshed ID token changes iss, sub or aud")]
    IdentityChanged,
    /// Anything else (unreachable IdP, invalid response).
    #[error("refresh failed: {0}")]
    Failed(String),
}

/// A pushed authorization request (RFC 9126) that failed. Logged; the browser sees a generic
/// page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParError {
    /// The PAR endpoint could not be reached or timed out.
    #[error("PAR endpoint unreachable: {0}")]
    Unreachable(String),
    /// The PAR endpoint refused the request (its status and OAuth `error` code, filtered).
    #[error("PAR endpoint answered {status} {error}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, letters, digits and `_` only.
        error: String,
    },
    /// The PAR response is not what RFC 9126 2.2 says.
    #[error("PAR response refused: {0}")]
    BadResponse(&'static str),
}

/// An IdP's OAuth `error` code as the log may show it: letters, digits and `_`, at most 64.
pub(crate) fn loggable_error(error: &str) -> String {
    error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// The loggable `error` member of a JSON error response (empty when there is none).
pub(crate) fn error_code(object: Option<&serde_json::Map<String, serde_json::Value>>) -> String {
    loggable_error(
        object
            .and_then(|o| o.get("error"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or(""),
    )
}

impl From<crate::cluster::TurnBusy> for RefreshError {
    fn from(_: crate::cluster::TurnBusy) -> Self {
        Self::Failed("another instance's grant on this refresh token took too long".into())
    }
}
