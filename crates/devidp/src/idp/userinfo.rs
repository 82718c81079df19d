//! `/userinfo`: the claims of the user an access token of this IdP was issued to.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::token::AccessTokenClaims;
use super::users::slug;
use super::{Idp, is_access_token_type};
use crate::http::{bearer_token, json_response};

impl Idp {
    pub(super) fn userinfo(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let claims = bearer_token(headers).and_then(|token| {
            let data = jsonwebtoken::decode::<AccessTokenClaims>(
                token,
                self.key.decoding(),
                &self.access_validation,
            )
            .ok()?;
            is_access_token_type(data.header.typ.as_deref()).then_some(data.claims)
        });
        let Some(claims) = claims else {
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_token", "error_description": "a valid access token is required"}),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    r#"Bearer realm="sealgate-dev-idp", error="invalid_token""#,
                ),
            );
            return response;
        };
        let handle = slug(&claims.name, &claims.sub);
        json_response(
            StatusCode::OK,
            &json!({
                "sub": claims.sub,
                "name": claims.name,
                "preferred_username": handle,
                "email": format!("{handle}@example.test"),
            }),
        )
    }
}
