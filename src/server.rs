//! The listener: hyper 1 through hyper-util's auto connection builder (HTTP/1.1 and h2c), with a
//! header read timeout, a request-head size limit (431 beyond it), a connection cap, and a
//! graceful shutdown that gives in-flight requests a deadline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::app::App;
use crate::clock::Clock;
use crate::config::Settings;
use crate::oidc::{DiscoveryError, Provider};
use crate::revocation::{Denylist, Journal, JournalError};
use crate::routes;
use crate::seal::Codec;

/// Why sealgate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// OIDC discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The OS CSPRNG failed.
    #[error(transparent)]
    Random(#[from] crate::secret::RandomError),
    /// The cluster store cannot be used.
    #[error(transparent)]
    Cluster(crate::cluster::ClusterError),
    /// The revocation journal could not be opened or is corrupt. Starting without it would
    /// bring revoked sessions back, so sealgate does not start.
    #[error(
        "revocation journal {}: {source} (not starting without it: revoked sessions would come back)",
        path.display()
    )]
    Journal {
        /// The journal's path.
        path: std::path::PathBuf,
        /// Why.
        source: JournalError,
    },
}

/// Options beyond the configuration file (used by the demo and tests).
#[derive(Debug, Default)]
pub struct Options {
    /// The clock; the system clock by default.
    pub clock: Clock,
    /// A listener already bound (tests bind 127.0.0.1:0 first).
    pub listener: Option<std::net::TcpListener>,
}

/// A running sealgate.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state (tests inspect it).
    pub app: Arc<App>,
    certificate: Option<Arc<crate::tls::Certificate>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish within the grace period, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Re-reads the TLS certificate and key (what SIGHUP does); without TLS, nothing.
    ///
    /// # Errors
    /// When the new pair does not load (the current one stays).
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsError> {
        match &self.certificate {
            Some(c) => c.reload(),
            None => Ok(()),
        }
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully. SIGHUP reloads the TLS
    /// certificate.
    pub async fn until_signal(self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut hup) = signal(SignalKind::hangup()) {
                let stop = wait_for_signal();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        () = &mut stop => break,
                        _ = hup.recv() => match self.reload_tls() {
                            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                            Err(e) => tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the current one"),
                        },
                    }
                }
                tracing::info!("shutting down");
                self.shutdown().await;
                return;
            }
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs discovery, binds, and starts serving in the background.
///
/// # Errors
/// A [`StartError`] naming what could not be set up.
pub async fn start(settings: Settings, options: Options) -> Result<Running, StartError> {
    // Revocations first: a corrupt journal stops start-up before anything is contacted.
    let denylist = Arc::new(Denylist::new(
        settings.revocation.capacity,
        i64::try_from(settings.session.absolute_timeout.as_secs()).unwrap_or(i64::MAX),
    ));
    let journal = match &settings.revocation.journal {
        Some(path) => Some(Arc::new(
            open_journal(path.clone(), denylist.clone(), options.clock.now()).await?,
        )),
        None => {
            tracing::warn!(
                "no [revocation] journal: revocations are kept in memory only, and a restart \
                 forgets them (a logged-out cookie works again until its absolute expiry)"
            );
            None
        }
    };
    let provider = Provider::discover(&settings.oidc, &settings.redirect_uri()).await?;
    let listen = settings.server.listen;
    let listener = match options.listener {
        Some(l) => l
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l))
            .map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?,
        None => TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?,
    };
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let codec = Codec::new(settings.session.keys.clone(), settings.session.max_chunks);
    let cluster = match &settings.cluster {
        Some(c) => Some(
            crate::cluster::Cluster::start(
                c,
                denylist.clone(),
                options.clock.clone(),
                settings.session.keys.clone(),
                settings.session.refresh_grace,
            )
            .map_err(StartError::Cluster)?,
        ),
        None => None,
    };
    let app = Arc::new(App {
        codec,
        provider,
        denylist,
        cluster,
        journal,
        clock: options.clock,
        used_states: Mutex::new(crate::app::UsedStates::default()),
        refreshes: crate::app::Refreshes::default(),
        opened: crate::session_cache::SessionCache::new(settings.session.open_cache)?,
        upstreams: (0..settings.server.workers.max(1))
            .map(|_| routes::proxy::UpstreamClients::new(&settings.server.public_url))
            .collect::<Result<_, _>>()
            .map_err(DiscoveryError::Http)?,
        tunnels: Arc::new(Semaphore::new(settings.server.max_connections)),
        logout_tokens: Mutex::new(crate::oidc::logout_token::ReplayCache::default()),
        settings,
    });
    let (stop, stopped) = watch::channel(false);
    if let (true, Some(addr)) = (app.settings.metrics.enabled, app.settings.metrics.listen) {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(serve_metrics(
            metrics_listener,
            app.clone(),
            stopped.clone(),
        ));
    }
    let (certificate, acceptor) = match &app.settings.server.tls {
        Some(tls) => {
            let certificate = crate::tls::Certificate::load(tls)?;
            let config = certificate.server_config()?;
            (
                Some(certificate),
                Some(tokio_rustls::TlsAcceptor::from(config)),
            )
        }
        None => (None, None),
    };
    let task = tokio::spawn(serve(listener, app.clone(), acceptor, stopped));
    tracing::info!(%addr, "sealgate listening");
    Ok(Running {
        addr,
        app,
        certificate,
        stop,
        task,
    })
}

/// The separate metrics listener: `GET /metrics` only, HTTP/1.1, until shutdown.
async fn serve_metrics(listener: TcpListener, app: Arc<App>, mut stopped: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        if req.uri().path() == "/metrics" && req.method() == http::Method::GET {
                            routes::metrics_page(&app)
                        } else {
                            crate::response::problem(http::StatusCode::NOT_FOUND, "not found")
                        },
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Opens and replays the journal into `denylist` on the blocking pool (it reads the whole file).
async fn open_journal(
    path: std::path::PathBuf,
    denylist: Arc<Denylist>,
    now: i64,
) -> Result<Journal, StartError> {
    let shown = path.clone();
    let fail = |source| StartError::Journal {
        path: shown.clone(),
        source,
    };
    let opened = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let (journal, replay) = Journal::open(&path, now)?;
        let (entries, records) = (replay.entries.len(), replay.records);
        denylist
            .restore(replay.entries, now)
            .map_err(|e| JournalError::Io {
                op: "restoring",
                source: std::io::Error::other(e.0),
            })?;
        tracing::info!(
            path = %path.display(),
            entries,
            records,
            live = denylist.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "revocation journal replayed"
        );
        Ok(journal)
    })
    .await;
    match opened {
        Ok(result) => result.map_err(fail),
        Err(e) => Err(fail(JournalError::Io {
            op: "replaying",
            source: std::io::Error::other(e.to_string()),
        })),
    }
}

thread_local! {
    /// This thread's index among the server's workers (0 outside them).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the worker thread running the caller (0 outside the workers).
pub fn worker_index() -> usize {
    WORKER.with(std::cell::Cell::get)
}

/// A connection to serve, handed from the accept loop to a worker.
type Job = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Threads that serve connections, each on its own single-threaded runtime: a connection, the
/// upstream connections its requests use, and their timers all live on one thread, so a
/// proxied request involves no cross-thread wake-ups (on a busy multi-threaded runtime those
/// cost more than the proxying itself). Connections are dealt round-robin.
struct Workers {
    queues: Vec<tokio::sync::mpsc::UnboundedSender<Job>>,
    next: usize,
}

impl Workers {
    fn start(count: usize) -> Self {
        let mut queues = Vec::with_capacity(count);
        for index in 0..count {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
            // The runtime is built on the worker thread itself: a runtime must never be dropped
            // on the async accept loop (tokio panics), which is where a closure that failed to
            // start as a thread would be dropped.
            let spawned = std::thread::Builder::new()
                .name(format!("sealgate-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            // The queue closes with `rx`: its connections go to the others.
                            tracing::error!(error = %e, index, "cannot start a worker runtime");
                            return;
                        }
                    };
                    // Returns when the accept loop is gone (after the graceful shutdown), which
                    // drops whatever connections are left.
                    runtime.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            tokio::spawn(job);
                        }
                    });
                });
            match spawned {
                Ok(_) => queues.push(tx),
                Err(e) => {
                    tracing::error!(error = %e, index, "cannot start a worker thread");
                }
            }
        }
        if queues.is_empty() {
            tracing::error!("no worker thread started; serving on the main runtime");
        }
        Self { queues, next: 0 }
    }

    /// Runs `job` on the next worker (on the calling runtime if no worker takes it).
    fn run(&mut self, mut job: Job) {
        for _ in 0..self.queues.len() {
            self.next = (self.next + 1) % self.queues.len();
            match self.queues[self.next].send(job) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::SendError(back)) => job = back,
            }
        }
        tokio::spawn(job);
    }
}

async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let server = &app.settings.server;
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    let mut workers = Workers::start(server.workers);
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
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
        .keep_alive_timeout(std::time::Duration::from_secs(10))
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
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
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_timeout = app.settings.server.header_read_timeout;
        let tls = acceptor.clone();
        workers.run(Box::pin(async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register a connection");
                    drop(permit);
                    return;
                }
            };
            // The protocol sniffing of the auto builder reads without a timeout; a client that
            // connects and sends nothing must not hold a connection slot forever.
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte_timeout, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "connection closed: nothing sent in time");
                    drop(permit);
                    return;
                }
            }
            let client = Arc::new(routes::Peer::new(peer));
            let service = service_fn(move |req| routes::handle(app.clone(), req, client.clone()));
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
                        match tokio::time::timeout(first_byte_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                drop(permit);
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                drop(permit);
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
            drop(permit);
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
