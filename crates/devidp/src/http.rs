//! HTTP plumbing shared by the development IdP, the demo API and sealgate's test IdP: one
//! accept loop ([`serve`]) and the response helpers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers (HTTP/1); `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Limits {
    /// The development IdP's and demo API's limits: 10 s for the headers, 256 connections.
    pub const DEFAULT: Limits = Limits {
        header_read_timeout: Some(Duration::from_secs(10)),
        max_connections: 256,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Serves `handler` on `listener` in a spawned task: HTTP/1.1 and HTTP/2 within `limits`.
/// Runs until the runtime shuts down or the returned handle is aborted (connections already
/// accepted then finish on their own).
pub fn serve<H, F>(
    listener: TcpListener,
    server: &'static str,
    limits: Limits,
    handler: H,
) -> JoinHandle<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(timeout) = limits.header_read_timeout {
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
        }
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        loop {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return; // the semaphore is never closed; nothing left to serve if it were
            };
            let stream = match listener.accept().await {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(server, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let builder = builder.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                if let Err(error) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(server, %error, "connection ended with an error");
                }
                drop(permit);
            });
        }
    })
}

/// A response with `body` and `content_type`, never cached.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A JSON response, never cached.
pub(crate) fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
) -> Response<Full<Bytes>> {
    // Serializing a `Value` cannot fail (its map keys are strings).
    let body = serde_json::to_vec(value).unwrap_or_default();
    respond(status, "application/json", body)
}

/// A body-less redirect to `location`.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<Full<Bytes>> {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = respond(status, "text/plain; charset=utf-8", Vec::new());
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => server_error_page(),
    }
}

pub(crate) fn server_error_page() -> Response<Full<Bytes>> {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/plain; charset=utf-8",
        b"internal error".to_vec(),
    )
}

/// The token of the single `Authorization: Bearer` header, if there is exactly one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
