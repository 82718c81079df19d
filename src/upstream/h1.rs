//! This thread's HTTP/1.1 connections to plain-HTTP upstreams, kept for reuse. Configuration
//! allows `http://` upstreams only on loopback (sidecars, local services); requests to them
//! are the proxy's hot path in the benchmark, and in deployments that put a sidecar beside it.
//!
//! It does what hyper-util's pooled client does for such a request, without its costs: that
//! client keys a mutex-guarded map with SipHash, races a checkout against a lazy connect, and
//! spawns a task per request that waits for the connection to be idle again before it returns
//! to the pool. Here a connection's [`SendRequest`] goes back to the pool as soon as the
//! response head arrives, and a checkout takes only one that hyper says is ready (its previous
//! response has been read to the end, and the connection is still open): hyper, not this
//! module, decides when a connection can carry another request.
//!
//! What it keeps from hyper-util's behaviour:
//! - The request goes in origin form (`GET /path?query`), with `Host` set from the upstream's
//!   host and non-default port.
//! - A request that a reused connection refused before writing a byte of it (the upstream had
//!   closed it while idle) is sent again on a new connection; one that may have reached the
//!   upstream is never sent twice. So a request that went out on a connection whose close was
//!   still on its way fails (a 502 at the proxy), as with any HTTP/1.1 client with keep-alive.
//! - At most [`MAX_IDLE_PER_HOST`] connections per upstream in the pool. A connection still
//!   reading its response is in the pool too; when the pool is full, closed connections leave
//!   first, then the oldest one still busy (it finishes its response, then closes).
//! - No connection is reused after more than [`IDLE_TIMEOUT`] idle. Its idle time counts from
//!   its response head, or from the last time a checkout saw it still busy, so one whose
//!   response took long may be closed sooner than that, never later.
//! - Connecting gives up after [`CONNECT_TIMEOUT`], for all the addresses the host resolves to
//!   together (tried in turn); `TCP_NODELAY` is set.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;

use crate::response::Body;

/// Connections each thread keeps per upstream for reuse (as nginx's `keepalive 256` per
/// worker; in this module's pool, including the ones still reading a response): a burst of N concurrent requests opens N connections, but only this many stay open
/// afterwards (each costs buffers here and a connection at the upstream). 64 was too few for
/// HTTP/2 clients: 32 connections × 10 streams keep ~160 requests in flight per thread, and
/// each one that found no idle connection opened (and then closed) its own.
pub(super) const MAX_IDLE_PER_HOST: usize = 256;

/// How long connecting to an upstream may take (as the pooled clients' connector).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle connection stays reusable (hyper-util's default).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum Error {
    /// The URI has no host (never for a route's upstream).
    NoHost,
    /// No connection could be made.
    Connect(std::io::Error),
    /// Connecting took longer than [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The HTTP/1.1 exchange failed.
    Http(hyper::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoHost => f.write_str("upstream URI has no host"),
            Error::Connect(_) => f.write_str("cannot connect"),
            Error::ConnectTimeout => f.write_str("connecting timed out"),
            Error::Http(_) => f.write_str("HTTP/1.1 exchange failed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(e) => Some(e),
            Error::Http(e) => Some(e),
            Error::NoHost | Error::ConnectTimeout => None,
        }
    }
}

/// One upstream's idle connections.
struct Host {
    authority: Authority,
    /// The `Host` header its requests carry.
    host: HeaderValue,
    /// Most recently returned last.
    idle: VecDeque<Idle>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

thread_local! {
    /// This thread's upstreams (a handful: a linear search beats hashing).
    static POOL: RefCell<Vec<Host>> = const { RefCell::new(Vec::new()) };
}

/// Sends `req` (an absolute `http` URI) over one of this thread's connections to its
/// upstream, or a new one.
///
/// # Errors
/// When no connection can be made, or the exchange fails.
pub(crate) async fn send(mut req: Request<Body>) -> Result<Response<Incoming>, Error> {
    let uri = req.uri();
    let authority = uri.authority().ok_or(Error::NoHost)?.clone();
    let origin_form = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let (host, mut idle) = checkout(&authority).ok_or(Error::NoHost)?;
    *req.uri_mut() = Uri::from(origin_form);
    req.headers_mut().entry(HOST).or_insert(host);
    loop {
        let (mut sender, reused) = match idle.take() {
            Some(s) => {
                tracing::debug!(upstream = %authority, "reusing an idle connection");
                (s, true)
            }
            None => (connect(&authority).await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(response) => {
                checkin(&authority, sender);
                return Ok(response);
            }
            Err(mut e) => match e.take_message() {
                // Not a byte of it was written: a reused connection the upstream had closed.
                Some(back) if reused => {
                    req = back;
                    idle = retry_checkout(&authority);
                }
                _ => return Err(Error::Http(e.into_error())),
            },
        }
    }
}

/// The `Host` header of `authority`'s requests and a ready idle connection to it, if there is
/// one; closes the connections that are closed or idle too long. The upstream's entry is made
/// by its first request (`None`: an authority no header value can name, never for a route's).
fn checkout(authority: &Authority) -> Option<(HeaderValue, Option<SendRequest<Body>>)> {
    POOL.with_borrow_mut(|pool| {
        let index = match pool.iter().position(|h| h.authority == *authority) {
            Some(i) => i,
            None => {
                pool.push(Host {
                    authority: authority.clone(),
                    host: host_header_of(authority)?,
                    idle: VecDeque::new(),
                });
                pool.len() - 1
            }
        };
        let host = &mut pool[index];
        Some((host.host.clone(), take_ready(&mut host.idle)))
    })
}

/// After a reused connection refused a request: another ready one, if any.
fn retry_checkout(authority: &Authority) -> Option<SendRequest<Body>> {
    POOL.with_borrow_mut(|pool| {
        let host = pool.iter_mut().find(|h| h.authority == *authority)?;
        take_ready(&mut host.idle)
    })
}

/// The newest ready connection of `idle`, closing the ones that are closed or idle too long.
fn take_ready(idle: &mut VecDeque<Idle>) -> Option<SendRequest<Body>> {
    let now = Instant::now();
    let stale = |i: &Idle| {
        i.sender.is_closed() || (i.sender.is_ready() && now.duration_since(i.since) > IDLE_TIMEOUT)
    };
    // The oldest are at the front.
    while idle.front().is_some_and(stale) {
        idle.pop_front();
    }
    // Newest first: the warmest connection, and the one most likely done with its body.
    let mut i = idle.len();
    while i > 0 {
        i -= 1;
        let entry = &mut idle[i];
        if stale(entry) {
            idle.remove(i);
        } else if entry.sender.is_ready() {
            return idle.remove(i).map(|entry| entry.sender);
        } else {
            // Still reading its response: its idle time has not begun.
            entry.since = now;
        }
    }
    None
}

/// Returns `sender` to the pool (see [`make_room`] when the pool for `authority` is full).
fn checkin(authority: &Authority, sender: SendRequest<Body>) {
    if sender.is_closed() {
        return;
    }
    POOL.with_borrow_mut(|pool| {
        // The entry exists: [`checkout`] made it before the request went out.
        let Some(host) = pool.iter_mut().find(|h| h.authority == *authority) else {
            return;
        };
        if make_room(&mut host.idle, MAX_IDLE_PER_HOST) {
            tracing::debug!(upstream = %authority, "pooling the connection");
            host.idle.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        }
    });
}

/// Whether `idle` has room for one more of at most `max`: when full, closed connections leave
/// first, then the oldest one still reading its response (hyper finishes that response, then
/// closes the connection, its last handle gone). Ready ones stay: they are the reusable ones.
fn make_room(idle: &mut VecDeque<Idle>, max: usize) -> bool {
    if idle.len() < max {
        return true;
    }
    idle.retain(|i| !i.sender.is_closed());
    if idle.len() >= max
        && let Some(busy) = idle.iter().position(|i| !i.sender.is_ready())
    {
        idle.remove(busy);
    }
    idle.len() < max
}

/// A new connection to `authority`, its HTTP/1.1 exchange driven by a task of this thread.
async fn connect(authority: &Authority) -> Result<SendRequest<Body>, Error> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host();
    // `[::1]` names an IPv6 address; the resolver wants it bare.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    tracing::debug!(upstream = %authority, "connecting");
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| Error::ConnectTimeout)?
    .map_err(Error::Connect)?;
    stream.set_nodelay(true).map_err(Error::Connect)?;
    tracing::debug!(upstream = %authority, peer = ?stream.peer_addr().ok(), "connected");
    // Flattened writes: for small heads, one larger copy beats a vectored write.
    let (sender, connection) = Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(Error::Http)?;
    let peer = authority.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(
                upstream = %peer,
                error = %crate::outbound::error_chain(&e),
                "upstream connection ended"
            );
        }
    });
    Ok(sender)
}

/// The `Host` header for `authority`: its host, and its port unless it is 80.
fn host_header_of(authority: &Authority) -> Option<HeaderValue> {
    let host = authority.host();
    let value = match authority.port_u16() {
        Some(port) if port != 80 => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests;
