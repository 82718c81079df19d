//! A fake upstream API: answers every request with what it received. `…/slow` answers after
//! 3 s; `…/set-cookie` also tries to set sealgate's cookies. Every path any instance was asked
//! for is remembered ([`was_asked`]), so a test can show a request was never forwarded.
//!
//! A request with `Authorization: DPoP` is a DPoP resource request (RFC 9449 7): its proof is
//! verified ([`super::dpop::verify`]: signature, `htm`, `htu`, `iat`, `ath`, a `jti` never
//! seen by any upstream of this process) and its key must be the token's `cnf.jkt`; a failure
//! is 401 `WWW-Authenticate: DPoP error="invalid_dpop_proof"`. On a path with a
//! `/nonce-required/` segment the proof must carry [`UPSTREAM_NONCE`] (else 401
//! `error="use_dpop_nonce"` with a `DPoP-Nonce`). The echo's `dpop` member says what was
//! verified; every accepted proof is kept ([`dpop_proofs`]) so a test can replay one.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use super::dpop::{Expected, Refused, Verified, echo, token_jkt, verify};

/// Paths asked for, by every echo upstream of this test process.
static ASKED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// DPoP proofs accepted by every echo upstream of this test process, and their `jti`s.
static PROOFS: Mutex<(Vec<Verified>, Option<HashSet<String>>)> = Mutex::new((Vec::new(), None));

/// The nonce a `/nonce-required/` path wants in proofs.
pub const UPSTREAM_NONCE: &str = "upstream-nonce-7";

/// The DPoP proofs accepted so far by any echo upstream, in order.
pub fn dpop_proofs() -> Vec<Verified> {
    PROOFS.lock().unwrap().0.clone()
}

/// How many times any echo upstream was asked for `path`.
pub fn times_asked(path: &str) -> usize {
    ASKED.lock().unwrap().iter().filter(|p| *p == path).count()
}

/// Checks a DPoP resource request; `Err` is the 401 to answer.
fn check_dpop(
    req: &http::Request<()>,
    token: &str,
) -> Result<Verified, Box<http::Response<Full<Bytes>>>> {
    let refuse = |error: &str, why: String| -> Box<http::Response<Full<Bytes>>> {
        let mut r = http::Response::new(Full::new(Bytes::from(why)));
        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
        let challenge = format!("DPoP algs=\"ES256\", error=\"{error}\"");
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_str(&challenge).unwrap(),
        );
        Box::new(r)
    };
    let proofs: Vec<&HeaderValue> = req.headers().get_all("dpop").iter().collect();
    let [proof] = proofs[..] else {
        return Err(refuse("invalid_dpop_proof", "not one DPoP header".into()));
    };
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let htu = format!("http://{host}{}", req.uri().path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expect = Expected {
        htm: req.method().as_str(),
        htu: &htu,
        now,
        token: Some(token),
    };
    let nonce = req
        .uri()
        .path()
        .contains("/nonce-required/")
        .then_some(UPSTREAM_NONCE);
    let mut state = PROOFS.lock().unwrap();
    let seen = state.1.get_or_insert_with(HashSet::new);
    let verified = match verify(proof.to_str().unwrap_or_default(), &expect, nonce, seen) {
        Ok(v) => v,
        Err(Refused::NeedsNonce) => {
            let mut r = refuse("use_dpop_nonce", "nonce required".into());
            r.headers_mut()
                .insert("dpop-nonce", HeaderValue::from_static(UPSTREAM_NONCE));
            return Err(r);
        }
        Err(Refused::Invalid(why)) => return Err(refuse("invalid_dpop_proof", why)),
    };
    if token_jkt(token).as_deref() != Some(verified.jkt.as_str()) {
        return Err(refuse(
            "invalid_token",
            "the proof's key is not the token's".into(),
        ));
    }
    state.0.push(verified.clone());
    Ok(verified)
}

/// Whether any echo upstream was asked for `path` (give each test its own path).
pub fn was_asked(path: &str) -> bool {
    ASKED.lock().unwrap().iter().any(|p| p == path)
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    // The head, and the body apart: read only by `…/echo-body…` paths (streaming tests rely on
    // an upstream that does not read).
    let (parts, request_body) = req.into_parts();
    let req = http::Request::from_parts(parts, ());
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    ASKED.lock().unwrap().push(req.uri().path().to_owned());
    let dpop_token = h("authorization").and_then(|a| a.strip_prefix("DPoP ").map(str::to_owned));
    let dpop = match &dpop_token {
        None => serde_json::Value::Null,
        Some(token) => match check_dpop(&req, token) {
            Ok(v) => echo(&v),
            Err(refusal) => return Ok(*refusal),
        },
    };
    // Every header, each value as UTF-8 (lossy), in the order received.
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<String> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), values.into());
    }
    // `…/echo-body…` paths also echo the request body (others never read it: streaming tests).
    let echoed = if req.uri().path().contains("/echo-body") {
        use http_body_util::BodyExt as _;
        let bytes = request_body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        None
    };
    let body = serde_json::json!({
        "body": echoed,
        "headers": headers,
        "path": req.uri().path(),
        "version": format!("{:?}", req.version()),
        "authorization": h("authorization"),
        "cookie": h("cookie"),
        "x-forwarded-for": h("x-forwarded-for"),
        "x-forwarded-proto": h("x-forwarded-proto"),
        "x-forwarded-host": h("x-forwarded-host"),
        "forwarded": h("forwarded"),
        "x-custom": h("x-custom"),
        "dpop": dpop,
    });
    if req.uri().path().ends_with("/slow") {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    if req.uri().path().ends_with("/set-cookie") {
        let h = response.headers_mut();
        h.append(
            "set-cookie",
            HeaderValue::from_static("__Host-sealgate.0=evil; Path=/"),
        );
        h.append(
            "set-cookie",
            HeaderValue::from_static("__Host-sealgate-login-00.0=evil"),
        );
        h.append("set-cookie", HeaderValue::from_static("app=1; Path=/"));
    }
    Ok(response)
}

/// Starts the upstream on 127.0.0.1:0; returns its address.
pub async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    addr
}
