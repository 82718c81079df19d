//! The development IdP over HTTP, end to end: discovery, JWKS, the login form, the code and
//! refresh grants, userinfo, revocation and end-session.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use url::Url;

use super::users::subject_for;
use super::{DevIdp, DevIdpConfig, LOGIN_REDIRECT_STATUS, test_key};

/// The example of RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

type TestClient = Client<HttpConnector, Full<Bytes>>;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }
    fn location(&self) -> Url {
        Url::parse(self.headers[header::LOCATION].to_str().unwrap()).unwrap()
    }
}

async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Reply {
    let response = client.request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

fn post_form(url: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut builder =
        Request::post(url).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(auth) = auth {
        builder = builder.header(header::AUTHORIZATION, auth);
    }
    builder.body(Full::new(Bytes::from(body))).unwrap()
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn full_flow_over_http() {
    let config = DevIdpConfig {
        client_id: "sealgate-demo".into(),
        client_secret: "s3cret:&=".into(),
        redirect_uri: "http://127.0.0.1:9/bff/callback".into(),
        post_logout_redirect_uri: "http://127.0.0.1:9/".into(),
    };
    let idp = DevIdp::start_with_key("127.0.0.1:0".parse().unwrap(), config, test_key())
        .await
        .unwrap();
    let issuer = idp.issuer();
    assert_eq!(issuer, format!("http://{}", idp.addr()));
    let client: TestClient = Client::builder(TokioExecutor::new()).build_http();

    // Discovery and JWKS.
    let discovery = send(
        &client,
        get(&format!("{issuer}/.well-known/openid-configuration")),
    )
    .await;
    assert_eq!(discovery.status, StatusCode::OK);
    let discovery = discovery.json();
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"],
        true
    );
    let jwks = send(&client, get(&format!("{issuer}/jwks"))).await.json();
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["alg"].as_str()),
        (Some("RSA"), Some("RS256"))
    );
    let jwks_key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();

    // An unregistered redirect_uri gets a page, not a redirect.
    let mut auth_url = Url::parse(&format!("{issuer}/authorize")).unwrap();
    let auth_params = [
        ("response_type", "code"),
        ("client_id", "sealgate-demo"),
        ("redirect_uri", "http://127.0.0.1:9/bff/callback"),
        ("scope", "openid profile email"),
        ("state", "st<ate>"),
        ("nonce", "n-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let mut evil = auth_url.clone();
    evil.query_pairs_mut()
        .extend_pairs(auth_params.iter().map(|&(k, v)| {
            (
                k,
                if k == "redirect_uri" {
                    "http://evil/cb"
                } else {
                    v
                },
            )
        }));
    let page = send(&client, get(evil.as_str())).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(header::LOCATION).is_none());

    // Missing PKCE: an error redirect to the registered client, with state and iss.
    let mut no_pkce = auth_url.clone();
    no_pkce.query_pairs_mut().extend_pairs(
        auth_params
            .iter()
            .filter(|(k, _)| !k.starts_with("code_challenge")),
    );
    let reply = send(&client, get(no_pkce.as_str())).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let location = reply.location();
    assert_eq!(
        query(&location, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query(&location, "state").as_deref(), Some("st<ate>"));
    assert_eq!(query(&location, "iss").as_deref(), Some(issuer.as_str()));

    // The login page escapes what it echoes and carries the request in hidden fields.
    auth_url.query_pairs_mut().extend_pairs(auth_params);
    let page = send(&client, get(auth_url.as_str())).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("not for production"));
    assert!(html.contains("st&lt;ate&gt;") && !html.contains("st<ate>"));
    assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));

    // Submitting a name issues a code.
    let mut form: Vec<(&str, &str)> = auth_params.to_vec();
    form.push(("name", "Ada Lovelace"));
    let reply = send(
        &client,
        post_form(&format!("{issuer}/authorize"), None, &form),
    )
    .await;
    assert_eq!(reply.status, LOGIN_REDIRECT_STATUS);
    let location = reply.location();
    assert_eq!(location.path(), "/bff/callback");
    assert_eq!(query(&location, "state").as_deref(), Some("st<ate>"));
    assert_eq!(query(&location, "iss").as_deref(), Some(issuer.as_str()));
    let code = query(&location, "code").unwrap();

    // Token exchange with client_secret_basic (form-urlencoded before base64).
    let basic = format!("Basic {}", STANDARD.encode("sealgate-demo:s3cret%3A%26%3D"));
    let wrong = format!("Basic {}", STANDARD.encode("sealgate-demo:nope"));
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:9/bff/callback"),
        ("code_verifier", VERIFIER),
    ];
    let reply = send(
        &client,
        post_form(&format!("{issuer}/token"), Some(&wrong), &exchange),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_client");
    let reply = send(
        &client,
        post_form(&format!("{issuer}/token"), Some(&basic), &exchange),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["scope"], "openid profile email");

    // The ID token verifies with the published key and carries the login.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&["sealgate-demo"]);
    let id = jsonwebtoken::decode::<serde_json::Value>(
        tokens["id_token"].as_str().unwrap(),
        &jwks_key,
        &validation,
    )
    .unwrap();
    assert_eq!(id.header.kid.as_deref(), jwk["kid"].as_str());
    assert_eq!(id.claims["nonce"], "n-1");
    assert_eq!(id.claims["sub"], subject_for("Ada Lovelace"));
    assert_eq!(id.claims["email"], "ada-lovelace@example.test");
    let sid = id.claims["sid"].as_str().unwrap().to_owned();

    // The code is single-use.
    let reply = send(
        &client,
        post_form(&format!("{issuer}/token"), Some(&basic), &exchange),
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_grant");

    // That replay revoked the family: the refresh token no longer works. Log in again.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let post_auth = [
        ("client_id", "sealgate-demo"),
        ("client_secret", "s3cret:&="),
    ];
    let send_refresh = |token: &str| {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
        form.extend(post_auth);
        post_form(&format!("{issuer}/token"), None, &form)
    };
    let reply = send(&client, send_refresh(refresh)).await;
    assert_eq!(reply.json()["error"], "invalid_grant");

    let reply = send(
        &client,
        post_form(&format!("{issuer}/authorize"), None, &form),
    )
    .await;
    let code = query(&reply.location(), "code").unwrap();
    let mut exchange = exchange.to_vec();
    exchange[1] = ("code", code.as_str());
    exchange.extend(post_auth);
    let tokens = send(
        &client,
        post_form(&format!("{issuer}/token"), None, &exchange),
    )
    .await
    .json();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Userinfo with the access token; not with the ID token.
    let userinfo = |token: &str| {
        Request::get(format!("{issuer}/userinfo"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::default())
            .unwrap()
    };
    let reply = send(&client, userinfo(access)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["preferred_username"], "ada-lovelace");
    let reply = send(&client, userinfo(tokens["id_token"].as_str().unwrap())).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // Refresh rotates; the new ID token keeps sub and has no nonce.
    let reply = send(&client, send_refresh(&refresh)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rotated = reply.json();
    let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh);
    let id = jsonwebtoken::decode::<serde_json::Value>(
        rotated["id_token"].as_str().unwrap(),
        &jwks_key,
        &validation,
    )
    .unwrap();
    assert_eq!(id.claims["sub"], subject_for("Ada Lovelace"));
    assert!(id.claims.get("nonce").is_none());
    let sid2 = id.claims["sid"].as_str().unwrap().to_owned();
    assert_ne!(sid, sid2);

    // Revocation (always 200) ends the family.
    let reply = send(
        &client,
        post_form(
            &format!("{issuer}/revoke"),
            Some(&basic),
            &[("token", &new_refresh)],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = send(&client, send_refresh(&new_refresh)).await;
    assert_eq!(reply.json()["error"], "invalid_grant");

    // End session: registered URI redirects with state; anything else shows a page.
    let mut end = Url::parse(&format!("{issuer}/end-session")).unwrap();
    end.query_pairs_mut()
        .append_pair("id_token_hint", rotated["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", "http://127.0.0.1:9/")
        .append_pair("state", "bye");
    let reply = send(&client, get(end.as_str())).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(reply.location().as_str(), "http://127.0.0.1:9/?state=bye");
    let mut end = Url::parse(&format!("{issuer}/end-session")).unwrap();
    end.query_pairs_mut()
        .append_pair("post_logout_redirect_uri", "http://evil/");
    let reply = send(&client, get(end.as_str())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("You are signed out"));
}
