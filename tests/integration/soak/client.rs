//! The soak's HTTP client: a pooled HTTP/1.1 client that, unlike the tests' `Browser`, returns
//! transport failures (a refused or reset connection, a timeout) instead of panicking, and a
//! minimal cookie jar per simulated user.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cookie::Cookie;
use http::{Method, Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::support::app::PUBLIC;

/// Longest a soak request may take before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The public host the instances are configured for.
pub fn public_host() -> &'static str {
    PUBLIC.trim_start_matches("https://")
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
}

/// The cookies of one simulated browser (one origin: the public one).
#[derive(Clone, Debug, Default)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Applies `Set-Cookie` headers: a `Max-Age` ≤ 0 or an `Expires` in the past deletes.
    pub fn apply(&mut self, set_cookies: &[String]) {
        for raw in set_cookies {
            let Ok(c) = Cookie::parse(raw.clone()) else {
                continue;
            };
            let expired = c.max_age().is_some_and(|a| a.is_zero() || a.is_negative())
                || c.expires_datetime()
                    .is_some_and(|t| t <= time::OffsetDateTime::now_utc());
            self.0.retain(|(n, _)| n != c.name());
            if !expired {
                self.0.push((c.name().to_owned(), c.value().to_owned()));
            }
        }
    }

    /// Whether the jar holds any of sealgate's session cookies.
    pub fn has_session(&self) -> bool {
        self.0
            .iter()
            .any(|(n, _)| n.starts_with("__Host-sealgate."))
    }
}

/// A pooled client shared by every simulated user.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new() -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .build(connector);
        Http { client }
    }

    /// One request to `to` for `path` (with its query), `Host` the public one, the jar's
    /// cookies; `Err` is a transport failure or timeout, described.
    pub async fn send(
        &self,
        to: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        jar: Option<&Jar>,
        body: &str,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{to}{path}"))
            .header(header::HOST, public_host());
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        if let Some(jar) = jar.filter(|j| !j.0.is_empty()) {
            builder = builder.header(header::COOKIE, jar.header());
        }
        let req = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| format!("request: {e}"))?;
        self.exchange(req).await
    }

    /// A GET of an absolute URL (the IdP's), no cookies.
    pub async fn get_url(&self, url: &str) -> Result<Reply, String> {
        let req = Request::builder()
            .uri(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("request: {e}"))?;
        self.exchange(req).await
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| transport_kind(&e))?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let set_cookies = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            resp.into_body()
                .collect()
                .await
                .map_err(|_| "body cut".to_owned())?;
            Ok(Reply {
                status,
                location,
                set_cookies,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err("timeout".into()))
    }
}

/// A short, stable name for a transport failure (an error kind, not a message).
fn transport_kind(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    if e.is_connect() {
        return "connect failed".into();
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("io {:?}", io.kind());
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return "connection closed before the answer".into();
        }
        source = s.source();
    }
    "transport".into()
}

/// A small deterministic generator (xorshift64*), one per simulated user.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo).max(1)
    }
}
