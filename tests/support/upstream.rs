//! A fake upstream API: answers every request with what it received. `…/slow` answers after
//! 3 s; `…/set-cookie` also tries to set sealgate's cookies.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

async fn answer(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = serde_json::json!({
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
