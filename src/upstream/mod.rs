//! How sealgate talks to the proxied APIs: pooled HTTP clients, one set per thread, the
//! forwarding headers it adds to every upstream request, and what each route's requests reuse
//! (its upstream's origin and its metric handles), prepared once at start.
//!
//! The clients are thread-local: a server's worker threads each run one single-threaded
//! runtime, so the connections a worker opens are driven by that runtime, and a request and its
//! upstream call never cross threads (on a busy multi-threaded runtime those wake-ups cost more
//! than the proxying itself). Nothing here knows about workers or the server: a thread's first
//! upstream request builds its set.
//!
//! A plain-HTTP upstream of the default protocol (the common case, and the proxy's hot path)
//! is served by [`h1`], this thread's own pool of HTTP/1.1 connections made with hyper's
//! connection API; HTTPS, HTTP/2 and WebSocket upstreams by hyper-util's pooled clients.

use std::cell::OnceCell;

use http::HeaderValue;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;

use crate::outbound::{TlsError, tls_roots};
use crate::response::Body;

mod h1;

use h1::MAX_IDLE_PER_HOST;

/// One pooled upstream client.
type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Which client serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 over plain TCP; over TLS, h2 when the upstream offers it by ALPN.
    Default,
    /// HTTP/2 only (`http2 = true` routes): h2c with prior knowledge, or h2 over TLS.
    Http2,
    /// HTTP/1.1 only, for WebSocket upgrades (RFC 6455 needs HTTP/1.1).
    Http1,
}

/// The three clients of one thread.
#[derive(Debug)]
struct Clients {
    default: UpstreamClient,
    http2: UpstreamClient,
    http1: UpstreamClient,
}

thread_local! {
    /// This thread's clients, built by its first upstream request.
    static CLIENTS: OnceCell<Clients> = const { OnceCell::new() };
}

impl Clients {
    fn new() -> Result<Self, TlsError> {
        let tcp = || {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(h1::CONNECT_TIMEOUT));
            http.set_nodelay(true);
            http
        };
        let default = tls_roots()?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp());
        let http2 = tls_roots()?
            .https_or_http()
            .enable_http2()
            .wrap_connector(tcp());
        let http1 = tls_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp());
        // Flattened writes: for small heads, one larger copy beats a vectored write.
        Ok(Self {
            default: Client::builder(TokioExecutor::new())
                .http1_writev(false)
                .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
                .build(default),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
                .build(http2),
            http1: Client::builder(TokioExecutor::new())
                .http1_writev(false)
                .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
                .build(http1),
        })
    }

    fn get(&self, protocol: Protocol) -> &UpstreamClient {
        match protocol {
            Protocol::Default => &self.default,
            Protocol::Http2 => &self.http2,
            Protocol::Http1 => &self.http1,
        }
    }
}

/// Checks that the clients can be built (the TLS trust roots load), so a broken environment
/// stops start-up instead of failing every proxied request.
///
/// # Errors
/// When no TLS client configuration can be built.
pub(crate) fn check() -> Result<(), TlsError> {
    Clients::new().map(drop)
}

/// Why an upstream request got no response.
#[derive(Debug)]
pub(crate) enum Error {
    /// This thread's clients cannot be built (see [`check`]).
    Tls(TlsError),
    /// From hyper-util's pooled client (HTTPS, HTTP/2 and WebSocket upstreams).
    Client(hyper_util::client::legacy::Error),
    /// From this thread's plain HTTP/1.1 connections.
    Plain(h1::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Tls(e) => e.fmt(f),
            Error::Client(e) => e.fmt(f),
            Error::Plain(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Tls(e) => e.source(),
            Error::Client(e) => e.source(),
            Error::Plain(e) => e.source(),
        }
    }
}

/// Sends `req` (an absolute URI) to its upstream, and waits for the response head. Must be
/// awaited on this thread (as the proxy does): the connection it opens joins this thread's
/// pool, driven by this thread's runtime.
///
/// A plain-HTTP request of the default protocol goes over this thread's HTTP/1.1 connections
/// ([`h1`]); the rest through this thread's hyper-util client for `protocol`.
///
/// # Errors
/// When no connection can be made, the exchange fails, or this thread's clients cannot be
/// built (see [`check`]).
pub(crate) async fn request(
    protocol: Protocol,
    req: http::Request<Body>,
) -> Result<http::Response<hyper::body::Incoming>, Error> {
    if protocol == Protocol::Default && req.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
        return h1::send(req).await.map_err(Error::Plain);
    }
    let pending = CLIENTS.with(|cell| {
        let clients = match cell.get() {
            Some(c) => c,
            None => {
                let built = Clients::new().map_err(Error::Tls)?;
                cell.get_or_init(|| built)
            }
        };
        Ok::<ResponseFuture, Error>(clients.get(protocol).request(req))
    })?;
    pending.await.map_err(Error::Client)
}

/// A route's upstream, split once into what every request's URI reuses: the scheme and the
/// authority as `http` types (a clone shares their bytes) and the base path without its
/// trailing `/`.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// Host and port, as the upstream URL serialises them.
    pub authority: http::uri::Authority,
    /// The upstream URL's path without its trailing `/` (empty for the root).
    pub base_path: String,
}

impl Origin {
    /// The parts of `upstream`; `None` when it is not an absolute URI hyper can send to.
    pub(crate) fn new(upstream: &url::Url) -> Option<Self> {
        let parts = upstream.as_str().parse::<http::Uri>().ok()?.into_parts();
        Some(Self {
            scheme: parts.scheme?,
            authority: parts.authority?,
            base_path: upstream.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// A route's per-request parts, made once at start.
#[derive(Debug)]
pub(crate) struct PreparedRoute {
    /// Its metric handles.
    pub metrics: crate::metrics::RouteMetrics,
    /// Its upstream's scheme, authority and base path (`None`: never for a valid
    /// configuration; the upstream URI is then built by the URL parser).
    pub upstream: Option<Origin>,
}

impl PreparedRoute {
    /// The parts of `route`.
    pub(crate) fn new(route: &crate::config::RouteSettings) -> Self {
        Self {
            metrics: crate::metrics::RouteMetrics::new(&route.prefix),
            upstream: Origin::new(&route.upstream),
        }
    }

    /// The parts of each of `routes`, in their order.
    pub(crate) fn all(routes: &[crate::config::RouteSettings]) -> Vec<Self> {
        routes.iter().map(Self::new).collect()
    }
}

/// `X-Forwarded-Proto` and `X-Forwarded-Host` of the public URL, built once at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forwarded {
    /// The public URL's scheme.
    pub proto: Option<HeaderValue>,
    /// The public URL's host and, when not the default, port.
    pub host: Option<HeaderValue>,
}

impl Forwarded {
    /// The headers for `public_url`.
    pub(crate) fn new(public_url: &url::Url) -> Self {
        Self {
            proto: HeaderValue::from_str(public_url.scheme()).ok(),
            host: public_url.host_str().and_then(|host| {
                HeaderValue::from_str(&match public_url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_owned(),
                })
                .ok()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_name_the_public_origin() {
        let f = Forwarded::new(&url::Url::parse("https://app.example:8443/x").unwrap());
        assert_eq!(f.proto.unwrap(), "https");
        assert_eq!(f.host.unwrap(), "app.example:8443");
        let f = Forwarded::new(&url::Url::parse("https://app.example/").unwrap());
        assert_eq!(f.host.unwrap(), "app.example");
    }
}
