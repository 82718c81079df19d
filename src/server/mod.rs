//! Start-up and the running server: [`start`] opens the revocation journal, runs discovery,
//! builds the shared state and starts the listeners; [`Running`] stops them.
//!
//! - [`listener`]: the accept loops (main and metrics), connection limits, TLS handshakes;
//! - [`workers`]: per-core threads with one single-threaded runtime each;
//! - [`signals`]: SIGINT/SIGTERM (graceful stop) and SIGHUP (TLS reload).

mod listener;
mod signals;
mod workers;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::app::App;
use crate::clock::Clock;
use crate::config::Settings;
use crate::oidc::{DiscoveryError, Provider};
use crate::revocation::{Denylist, Journal, JournalError};
use crate::seal::Codec;
use signals::{Signal, Signals};

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
    /// The HTTP client for upstream APIs cannot be built (no TLS configuration).
    #[error("upstream HTTP client: {0}")]
    Upstream(String),
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
    app: Arc<App>,
    certificate: Option<Arc<crate::tls::Certificate>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// The configuration it runs with.
    pub fn settings(&self) -> &Settings {
        &self.app.settings
    }

    /// Live revocations in this instance's denylist.
    pub fn revocation_count(&self) -> usize {
        self.app.denylist.len()
    }

    /// Sessions remembered by the cache of opened cookies (`[session] open_cache`).
    pub fn opened_sessions(&self) -> usize {
        self.app.opened.len()
    }

    /// Waits until the cluster store is reachable and synchronised; `false` after `timeout`, or
    /// at once without `[cluster]`.
    pub async fn cluster_synchronised(&self, timeout: std::time::Duration) -> bool {
        match &self.app.cluster {
            Some(cluster) => cluster.wait_healthy(timeout).await,
            None => false,
        }
    }

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
        let mut signals = Signals::new();
        while signals.next().await == Signal::Reload {
            match self.reload_tls() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: TLS certificate not reloaded; keeping the current one"
                ),
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Runs discovery, binds, and starts serving in the background.
///
/// # Errors
/// A [`StartError`] naming what could not be set up.
pub async fn start(settings: Settings, options: Options) -> Result<Running, StartError> {
    // Revocations first: a corrupt journal stops start-up before anything is contacted.
    let denylist = Arc::new(
        Denylist::new(
            settings.revocation.capacity,
            i64::try_from(settings.session.absolute_timeout.as_secs()).unwrap_or(i64::MAX),
        )
        .with_clock_skew(
            i64::try_from(settings.revocation.clock_skew.as_millis()).unwrap_or(i64::MAX),
        ),
    );
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
    crate::upstream::check().map_err(|e| StartError::Upstream(e.to_string()))?;
    let providers = futures_util::future::try_join_all(
        settings
            .providers
            .iter()
            .map(|p| Provider::discover(p, settings.redirect_uri(p))),
    )
    .await?;
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
        providers,
        denylist,
        cluster,
        journal,
        clock: options.clock,
        used_states: Mutex::new(crate::expiring::ExpiringSet::default()),
        refreshes: crate::app::Refreshes::default(),
        opened: crate::session_cache::SessionCache::new(settings.session.open_cache),
        forwarded: crate::upstream::Forwarded::new(&settings.server.public_url),
        tunnels: Arc::new(Semaphore::new(settings.server.max_connections)),
        logout_tokens: Mutex::new(crate::expiring::ExpiringSet::default()),
        logouts_in_flight: Mutex::new(std::collections::HashMap::new()),
        route_tokens: crate::route_tokens::RouteTokens::new(settings.session.route_token_cache),
        limits: crate::limits::Limits::new(&settings.limits, &settings.routes),
        identity_headers: identity_headers(&settings.routes),
        dpop_nonces: crate::dpop::NonceBook::default(),
        prepared: crate::upstream::PreparedRoute::all(&settings.routes),
        settings,
    });
    let (stop, stopped) = watch::channel(false);
    if let (true, Some(addr)) = (app.settings.metrics.enabled, app.settings.metrics.listen) {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(listener::serve_metrics(
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
    let task = tokio::spawn(listener::serve(listener, app.clone(), acceptor, stopped));
    tracing::info!(%addr, "sealgate listening");
    Ok(Running {
        addr,
        app,
        certificate,
        stop,
        task,
    })
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

/// The identity header names of every route, each once.
fn identity_headers(routes: &[crate::config::RouteSettings]) -> Vec<http::HeaderName> {
    let mut names: Vec<http::HeaderName> = routes
        .iter()
        .flat_map(|r| r.rules.identity_headers.iter().map(|(n, _)| n.clone()))
        .collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}
