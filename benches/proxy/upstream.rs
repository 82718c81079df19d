//! The upstream: a tiny hyper HTTP/1.1 server in this process, the same for every target.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::Result;

/// The upstream's whole answer.
pub(crate) const BODY: &str = r#"{"id":42,"name":"widget","price":9.99,"tags":["a","b","c"]}"#;
/// The path every target is asked for (nginx and sealgate map `/api/x` to upstream `/x`).
pub(crate) const UPSTREAM_PATH: &str = "/items/42";

/// Requests the upstream received with a Bearer token.
pub(crate) static BEARER_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// The first Bearer token the upstream received (nginx sends it as a static header).
pub(crate) static BEARER: OnceLock<String> = OnceLock::new();

pub(crate) async fn start_upstream() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
) -> std::result::Result<http::Response<Full<Bytes>>, Infallible> {
    if let Some(token) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        BEARER_REQUESTS.fetch_add(1, Ordering::Relaxed);
        if BEARER.get().is_none() {
            let _ = BEARER.set(token.to_owned());
        }
    }
    let mut response = http::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
