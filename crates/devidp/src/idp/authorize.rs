//! `/authorize`: the request is checked, the login form asks for a name, the answer goes back
//! to the registered `redirect_uri` with a code (or an error), `state` and RFC 9207 `iss`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use url::Url;

use super::store::{CodeGrant, Login, StoreFull};
use super::token::OAuthError;
use super::users::{granted_scope, subject_for, validate_name};
use super::{CODE_LIFETIME_SECS, Idp, LOGIN_REDIRECT_STATUS, MAX_NAME_CHARS, MAX_PARAM_LEN};
use crate::form::{Params, param};
use crate::html::{escape_html, html_page};
use crate::http::{redirect, server_error_page};
use crate::pkce::is_valid_s256_challenge;
use crate::random::random_token;

/// A validated authorization request, carried through the login form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AuthorizeRequest {
    state: String,
    nonce: Option<String>,
    code_challenge: String,
    /// The scope as requested (granted scope is derived at login).
    requested_scope: String,
}

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show a page, never redirect.
    Page(&'static str),
    /// Tell the (registered) client, RFC 6749 §4.1.2.1.
    Redirect {
        error: &'static str,
        description: &'static str,
        state: Option<String>,
    },
}

impl Idp {
    /// Validates an authorization request (the query of the GET, or the login form's hidden
    /// fields on the POST).
    fn check_authorize(&self, params: &Params) -> Result<AuthorizeRequest, AuthorizeError> {
        if param(params, "client_id") != Some(self.config.client_id.as_str()) {
            return Err(AuthorizeError::Page("Unknown client_id."));
        }
        if param(params, "redirect_uri") != Some(self.config.redirect_uri.as_str()) {
            return Err(AuthorizeError::Page(
                "The redirect_uri is missing or not registered for this client.",
            ));
        }
        // The client is known and the redirect is safe from here on.
        let state = param(params, "state")
            .filter(|s| s.len() <= MAX_PARAM_LEN)
            .map(str::to_owned);
        let fail = |error, description| AuthorizeError::Redirect {
            error,
            description,
            state: state.clone(),
        };
        if params.values().any(|v| v.len() > MAX_PARAM_LEN) {
            return Err(fail("invalid_request", "a parameter is too long"));
        }
        let Some(state_value) = state.clone() else {
            return Err(fail("invalid_request", "state is required"));
        };
        if param(params, "response_type") != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let requested_scope = param(params, "scope").unwrap_or("");
        if !requested_scope.split(' ').any(|s| s == "openid") {
            return Err(fail("invalid_scope", "the openid scope is required"));
        }
        if param(params, "code_challenge_method") != Some("S256") {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge_method must be S256",
            ));
        }
        let code_challenge = param(params, "code_challenge")
            .filter(|c| is_valid_s256_challenge(c))
            .ok_or_else(|| fail("invalid_request", "code_challenge is missing or malformed"))?;
        if param(params, "prompt").is_some_and(|p| p.split(' ').any(|v| v == "none")) {
            // There is no IdP browser session to reuse: every login asks for a name.
            return Err(fail("login_required", "the user must sign in"));
        }
        Ok(AuthorizeRequest {
            state: state_value,
            nonce: param(params, "nonce").map(str::to_owned),
            code_challenge: code_challenge.to_owned(),
            requested_scope: requested_scope.to_owned(),
        })
    }

    pub(super) fn authorize_get(&self, params: &Params) -> Response<Full<Bytes>> {
        match self.check_authorize(params) {
            Ok(request) => self.login_page(StatusCode::OK, &request, "", None),
            Err(error) => self.authorize_error(error, StatusCode::FOUND),
        }
    }

    pub(super) fn authorize_post(&self, params: &Params, now: u64) -> Response<Full<Bytes>> {
        let request = match self.check_authorize(params) {
            Ok(request) => request,
            Err(error) => return self.authorize_error(error, LOGIN_REDIRECT_STATUS),
        };
        if param(params, "action") == Some("deny") {
            return self.authorize_error(
                AuthorizeError::Redirect {
                    error: "access_denied",
                    description: "the user cancelled the sign-in",
                    state: Some(request.state),
                },
                LOGIN_REDIRECT_STATUS,
            );
        }
        let name = match validate_name(param(params, "name")) {
            Ok(name) => name,
            Err(problem) => {
                let typed = param(params, "name").unwrap_or("");
                let typed: String = typed.chars().take(MAX_NAME_CHARS * 2).collect();
                return self.login_page(StatusCode::BAD_REQUEST, &request, &typed, Some(problem));
            }
        };
        match self.issue_code(&request, name, now) {
            Ok(code) => self.redirect_to_client(
                LOGIN_REDIRECT_STATUS,
                &[("code", &code), ("state", &request.state)],
            ),
            Err(OAuthError::TemporarilyUnavailable) => self.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins in progress; try again in a minute.",
            ),
            Err(_) => server_error_page(),
        }
    }

    fn issue_code(
        &self,
        request: &AuthorizeRequest,
        name: String,
        now: u64,
    ) -> Result<String, OAuthError> {
        let code = random_token::<32>()?;
        let sid = random_token::<16>()?;
        let sub = subject_for(&name);
        tracing::info!(%sub, "development IdP: signed in");
        let grant = CodeGrant {
            login: Login {
                client_id: self.config.client_id.clone(),
                sub,
                name,
                sid,
                scope: granted_scope(&request.requested_scope),
                auth_time: now,
            },
            redirect_uri: self.config.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            expires_at: now + CODE_LIFETIME_SECS,
        };
        self.store()
            .insert_code(code.clone(), grant, now)
            .map_err(|StoreFull| OAuthError::TemporarilyUnavailable)?;
        Ok(code)
    }

    fn authorize_error(&self, error: AuthorizeError, status: StatusCode) -> Response<Full<Bytes>> {
        match error {
            AuthorizeError::Page(message) => self.error_page(StatusCode::BAD_REQUEST, message),
            AuthorizeError::Redirect {
                error,
                description,
                state,
            } => {
                let mut pairs = vec![("error", error), ("error_description", description)];
                if let Some(state) = &state {
                    pairs.push(("state", state));
                }
                self.redirect_to_client(status, &pairs)
            }
        }
    }

    /// Redirects to the registered `redirect_uri` with `pairs` and RFC 9207 `iss`.
    fn redirect_to_client(
        &self,
        status: StatusCode,
        pairs: &[(&str, &str)],
    ) -> Response<Full<Bytes>> {
        let Ok(mut url) = Url::parse(&self.config.redirect_uri) else {
            tracing::error!("development IdP: the registered redirect_uri is not a URL");
            return server_error_page();
        };
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                query.append_pair(name, value);
            }
            query.append_pair("iss", &self.issuer);
        }
        redirect(status, url.as_str())
    }

    fn login_page(
        &self,
        status: StatusCode,
        request: &AuthorizeRequest,
        typed_name: &str,
        problem: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let mut hidden = String::new();
        let mut field = |name: &str, value: &str| {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            ));
        };
        field("response_type", "code");
        field("client_id", &self.config.client_id);
        field("redirect_uri", &self.config.redirect_uri);
        field("scope", &request.requested_scope);
        field("state", &request.state);
        if let Some(nonce) = &request.nonce {
            field("nonce", nonce);
        }
        field("code_challenge", &request.code_challenge);
        field("code_challenge_method", "S256");
        let problem = problem
            .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(p)))
            .unwrap_or_default();
        let body = format!(
            "<h1>Sign in</h1>\
             <p>This development IdP signs in anyone: type any name. The same name is always \
             the same user (its <code>sub</code> is derived from the name).</p>\
             <p class=\"hint\">Signing in to <code>{client}</code>, returning to \
             <code>{redirect}</code>.</p>{problem}\
             <form method=\"post\" action=\"/authorize\">{hidden}\
             <label for=\"name\">Display name</label>\
             <input type=\"text\" id=\"name\" name=\"name\" maxlength=\"{max}\" required \
             autofocus autocomplete=\"username\" value=\"{typed}\" placeholder=\"Ada Lovelace\">\
             <div class=\"actions\">\
             <button type=\"submit\" name=\"action\" value=\"approve\">Sign in</button>\
             <button type=\"submit\" name=\"action\" value=\"deny\" class=\"secondary\" \
             formnovalidate>Cancel</button></div></form>",
            client = escape_html(&self.config.client_id),
            redirect = escape_html(&self.config.redirect_uri),
            max = MAX_NAME_CHARS,
            typed = escape_html(typed_name),
        );
        self.html(status, html_page("Sign in", &body))
    }
}
