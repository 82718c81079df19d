//! `/revoke` (RFC 7009) and `/end-session` (RP-initiated logout 1.0): both end a token family.

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use url::Url;

use super::token::OAuthError;
use super::{Idp, MAX_PARAM_LEN};
use crate::form::{Params, param};
use crate::html::html_page;
use crate::http::{redirect, respond};

#[derive(Debug, Deserialize)]
struct IdTokenHint {
    sub: String,
    sid: Option<String>,
}

impl Idp {
    pub(super) fn revoke(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let client_id = self.authenticate_client(headers, params)?;
        let token =
            param(params, "token").ok_or(OAuthError::InvalidRequest("token is required"))?;
        // Access tokens are self-contained JWTs and expire on their own; revoking one is
        // accepted and has no effect (RFC 7009 §2.2 allows that).
        self.store().revoke(token, &client_id);
        Ok(respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Vec::new(),
        ))
    }

    /// RP-initiated logout 1.0: a valid `id_token_hint` ends that IdP session (its refresh
    /// tokens stop working); the browser returns to the client only if the
    /// `post_logout_redirect_uri` is exactly the registered one.
    pub(super) fn end_session(&self, params: &Params) -> Response<Full<Bytes>> {
        if let Some(hint) = param(params, "id_token_hint") {
            match jsonwebtoken::decode::<IdTokenHint>(
                hint,
                self.key.decoding(),
                &self.id_hint_validation,
            ) {
                Ok(data) => {
                    if let Some(sid) = data.claims.sid {
                        self.store().revoke_family(&sid);
                    }
                    tracing::info!(sub = %data.claims.sub, "development IdP: signed out");
                }
                Err(error) => tracing::info!(%error, "development IdP: id_token_hint ignored"),
            }
        }
        let client_ok = param(params, "client_id").is_none_or(|c| c == self.config.client_id);
        let target = param(params, "post_logout_redirect_uri");
        if client_ok
            && target == Some(self.config.post_logout_redirect_uri.as_str())
            && let Ok(mut url) = Url::parse(&self.config.post_logout_redirect_uri)
        {
            if let Some(state) = param(params, "state").filter(|s| s.len() <= MAX_PARAM_LEN) {
                url.query_pairs_mut().append_pair("state", state);
            }
            return redirect(StatusCode::FOUND, url.as_str());
        }
        let note = if target.is_some() {
            "<p class=\"hint\">The <code>post_logout_redirect_uri</code> is not registered, \
             so you stay here.</p>"
        } else {
            ""
        };
        let body = format!(
            "<h1>You are signed out</h1><p>Your session at the development IdP has ended.</p>{note}"
        );
        self.html(StatusCode::OK, html_page("Signed out", &body))
    }
}
