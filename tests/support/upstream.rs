//! A fake upstream API: answers every request with what it received. `…/slow` answers after
//! 3 s; `…/set-cookie` also tries to set sealgate's cookies. Every path any instance was asked
//! for is remembered ([`was_asked`]), so a test can show a request was never forwarded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// Paths asked for, by every echo upstream of this test process.
static ASKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether any echo upstream was asked for `path` (give each test its own path).
pub fn was_asked(path: &str) -> bool {
    ASKED.lock().unwrap().iter().any(|p| p == path)
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    ASKED.lock().unwrap().push(req.uri().path().to_owned());
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
    let body = serde_json::json!({
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
