//! The demo upstream API: proves that the access token reached the API and not the browser.
//!
//! Every request must carry `Authorization: Bearer <access token>`, an RS256 JWT of the
//! development IdP (`iss` = the IdP, `aud` = `demo-api`, unexpired, `typ` `at+jwt` per RFC 9068
//! §4). The answer echoes the request's method and path, all claims of the verified token, and
//! whether any `Cookie` header arrived (sealgate never forwards its cookies, so: `false`).
//! Anything else is a 401 JSON problem.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::http::{Limits, bearer_token, json_response, serve};
use crate::idp::{DEMO_API_AUDIENCE, is_access_token_type};

/// What the API says about itself in every successful answer.
const MESSAGE: &str = "Hello from the demo API! This response came from the demo API, which \
                       received your access token from sealgate as an Authorization: Bearer \
                       header. Your browser never held that token: it only has an encrypted, \
                       HttpOnly cookie that sealgate keeps to itself.";

/// Serves the demo API on `addr`; returns the bound address.
///
/// Tokens are verified with `key` and must have been issued by `issuer` for the `demo-api`
/// audience. The server runs in a spawned task until the runtime shuts down.
///
/// # Errors
/// When the address cannot be bound.
pub async fn start(addr: SocketAddr, issuer: String, key: DecodingKey) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let api = Arc::new(DemoApi::new(&issuer, key));
    serve(listener, "demo-api", Limits::DEFAULT, move |req| {
        let response = api.handle(&req);
        async move { response }
    });
    tracing::info!(%addr, "demo API listening");
    Ok(addr)
}

struct DemoApi {
    key: DecodingKey,
    validation: Validation,
}

impl DemoApi {
    fn new(issuer: &str, key: DecodingKey) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[DEMO_API_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        DemoApi { key, validation }
    }

    /// Answers one request; the body is never read.
    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(token) = bearer_token(req.headers()) else {
            return unauthorized(
                None,
                "no access token: sign in, then call the API through sealgate",
            );
        };
        let claims =
            match jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation) {
                Ok(data) if is_access_token_type(data.header.typ.as_deref()) => data.claims,
                Ok(_) => {
                    tracing::info!("demo API: a JWT that is not an access token was refused");
                    return unauthorized(Some("invalid_token"), "the token is not an access token");
                }
                Err(error) => {
                    tracing::info!(%error, "demo API: access token refused");
                    return unauthorized(
                        Some("invalid_token"),
                        "the access token is invalid or expired",
                    );
                }
            };
        json_response(
            StatusCode::OK,
            &json!({
                "message": MESSAGE,
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "token_claims": claims,
                "cookie_header_received": req.headers().contains_key(header::COOKIE),
            }),
        )
    }
}

/// RFC 6750 §3: a 401 with a `WWW-Authenticate: Bearer` challenge (with an error code only
/// when a token was presented) and a short JSON body.
fn unauthorized(error: Option<&'static str>, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": error.unwrap_or("unauthorized"), "message": message}),
    );
    let challenge = match error {
        Some(_) => r#"Bearer realm="demo-api", error="invalid_token""#,
        None => r#"Bearer realm="demo-api""#,
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;
    use crate::idp::{test_key, unix_now};

    const ISSUER: &str = "http://127.0.0.1:1";

    fn token(key: &EncodingKey, kid: &str, typ: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[tokio::test]
    async fn echoes_verified_claims_and_refuses_everything_else() {
        let key = test_key();
        let (encoding, decoding, kid) = (key.encoding(), key.decoding().clone(), key.kid());
        let addr = start("127.0.0.1:0".parse().unwrap(), ISSUER.to_owned(), decoding)
            .await
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let call = |bearer: Option<String>, cookie: bool| {
            let mut builder = Request::post(format!("http://{addr}/whoami?x=1"));
            if let Some(token) = bearer {
                builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            if cookie {
                builder = builder.header(header::COOKIE, "a=b");
            }
            let request = builder.body(Full::default()).unwrap();
            let client = client.clone();
            async move {
                let response = client.request(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            }
        };
        let now = unix_now();
        let claims = json!({
            "iss": ISSUER, "sub": "dev-1", "aud": "demo-api", "exp": now + 300, "iat": now,
            "scope": "openid", "name": "Ada"
        });
        let good = token(encoding, kid, "at+jwt", &claims);

        let (status, body) = call(Some(good.clone()), false).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["path"], "/whoami");
        assert_eq!(body["method"], "POST");
        assert_eq!(body["token_claims"], claims);
        assert_eq!(body["cookie_header_received"], false);
        assert!(body["message"].as_str().unwrap().contains("demo API"));

        let (_, body) = call(Some(good), true).await;
        assert_eq!(body["cookie_header_received"], true);

        let (status, body) = call(None, false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "unauthorized");

        // An ID token (wrong audience), a token that is not typed as an access token, an
        // expired one, one from another issuer and a garbled one are all refused.
        let mut wrong_aud = claims.clone();
        wrong_aud["aud"] = json!("sealgate-demo");
        let mut expired = claims.clone();
        expired["exp"] = json!(now - 120);
        let mut wrong_iss = claims.clone();
        wrong_iss["iss"] = json!("http://evil");
        for bad in [
            token(encoding, kid, "at+jwt", &wrong_aud),
            token(encoding, kid, "JWT", &claims),
            token(encoding, kid, "at+jwt", &expired),
            token(encoding, kid, "at+jwt", &wrong_iss),
            "not.a.jwt".to_owned(),
        ] {
            let (status, body) = call(Some(bad), false).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body["error"], "invalid_token");
        }
    }
}
