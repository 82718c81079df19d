//! What a handler knows about a request beyond the request itself (the connection's client,
//! the correlation id), and small pure helpers for reading requests.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The client of a connection, as seen by the listener (made once per connection).
#[derive(Debug)]
pub(crate) struct Peer {
    /// Its IP.
    pub ip: std::net::IpAddr,
    /// Its IP as an `X-Forwarded-For` value.
    forwarded_for: Option<HeaderValue>,
}

impl Peer {
    /// The client at `addr`.
    pub(crate) fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            ip: addr.ip(),
            forwarded_for: HeaderValue::from_str(&addr.ip().to_string()).ok(),
        }
    }
}

/// What handlers know about a request beyond the request itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestContext<'a> {
    /// The connection's client.
    pub peer: &'a Peer,
    /// The request's correlation id, as a header value.
    pub request_id: Option<&'a HeaderValue>,
}

impl RequestContext<'_> {
    /// The client's IP as an `X-Forwarded-For` value.
    pub(crate) fn forwarded_for(&self) -> Option<&HeaderValue> {
        self.peer.forwarded_for.as_ref()
    }
}

/// The single value of query parameter `name`; `Err` if it appears more than once.
pub(crate) fn single_param(query: Option<&str>, name: &str) -> Result<Option<String>, ()> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

/// The values of all `Cookie` headers that are valid text.
pub(crate) fn cookie_headers(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}
