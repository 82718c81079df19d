//! The listeners: hyper 1 through hyper-util's auto connection builder (HTTP/1.1 and h2c, or
//! h2 and HTTP/1.1 by ALPN over TLS), with a header read timeout, a request-head size limit
//! (431 beyond it), a connection cap, and a graceful shutdown that gives in-flight requests a
//! deadline; and the separate metrics listener. Both accept through [`accept`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::config::ServerSettings;
use crate::error::{Failure, Rejection};
use crate::request::Peer;
use crate::routes;
use crate::server::workers::Workers;

/// Open connections the metrics listener serves at once (a scraper needs one or two).
const METRICS_CONNECTIONS: usize = 16;

/// The next connection, or `None` once `stopped` changes. A failed accept (out of file
/// descriptors, say) is logged and retried after a pause rather than spinning.
async fn accept(
    listener: &TcpListener,
    stopped: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped.changed() => return None,
        }
    }
}

/// The connection builder with the server's limits.
fn builder(server: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .writev(false)
        .max_buf_size(server.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts connections until `stopped`, deals them to the worker threads, then drains.
pub(super) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let server = &app.settings.server;
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    let mut workers = Workers::start(server.workers);
    let builder = builder(server);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped.changed() => break,
        };
        let Some((stream, peer)) = accept(&listener, &mut stopped).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        // Moved to the worker as a std socket and registered with the worker's own reactor.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a worker");
                continue;
            }
        };
        let connection = Connection {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            tls: acceptor.clone(),
            peer,
        };
        workers.run(Box::pin(async move {
            let _permit = permit;
            connection.serve(stream).await;
        }));
    }
    drop(listener);
    let grace = app.settings.server.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; dropping remaining connections"
        );
    }
    // The workers stop once their queues are gone.
    drop(workers);
}

/// One accepted connection, served on a worker's runtime.
struct Connection {
    app: Arc<App>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    tls: Option<tokio_rustls::TlsAcceptor>,
    peer: SocketAddr,
}

impl Connection {
    async fn serve(self, stream: std::net::TcpStream) {
        let Self {
            app,
            builder,
            watcher,
            tls,
            peer,
        } = self;
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register a connection");
                return;
            }
        };
        // The protocol sniffing of the auto builder reads without a timeout; a client that
        // connects and sends nothing must not hold a connection slot forever.
        let first_byte_timeout = app.settings.server.header_read_timeout;
        let mut probe = [0u8; 1];
        match tokio::time::timeout(first_byte_timeout, stream.peek(&mut probe)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                tracing::debug!(%peer, "connection closed: nothing sent in time");
                return;
            }
        }
        let client = Arc::new(Peer::new(peer));
        // Boxed: over HTTP/2 hyper spawns a task per stream holding this future, and tokio
        // moves a task's future by value several times (into the task cell, its output over it
        // on completion). The request's state machine is kilobytes; a box is one pointer.
        let service =
            service_fn(move |req| Box::pin(routes::handle(app.clone(), req, client.clone())));
        let result = match tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                watcher.watch(conn).await
            }
            Some(acceptor) => {
                // The handshake shares the header read timeout: a silent TLS client is a
                // slowloris too.
                let stream =
                    match tokio::time::timeout(first_byte_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                watcher.watch(conn).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// The separate metrics listener: `GET /metrics` only, HTTP/1.1, at most
/// [`METRICS_CONNECTIONS`] connections, until shutdown.
pub(super) async fn serve_metrics(
    listener: TcpListener,
    app: Arc<App>,
    mut stopped: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopped.changed() => return,
        };
        let Some((stream, _)) = accept(&listener, &mut stopped).await else {
            return;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        if req.uri().path() == "/metrics" && req.method() == http::Method::GET {
                            routes::health::metrics_page(&app)
                        } else {
                            Failure::new(Rejection::NotFound, "metrics listener: not /metrics")
                                .into_response("")
                        },
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
