//! How sealgate reaches Redis as it is operated: one server, the primary Sentinel names, or a
//! Redis Cluster; over TLS (always verified) with an ACL user when configured.
//!
//! Commands go through one [`Conn`]: a multiplexed connection to the one server or to the
//! current primary (asked of Sentinel at every reconnect, so a failover is followed), or the
//! cluster client, which routes each key to its slot's primary and follows redirections. The
//! subscription is a plain connection: to the server, to the current primary, or to one of the
//! cluster's seed nodes (a classic `PUBLISH` reaches every node of a cluster), the next seed
//! after a failure.

use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Client, ClientTlsConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture,
    RedisResult, TlsCertificates, TlsMode, Value,
};

use crate::config::{ClusterSettings, RedisTls, RedisTopology};

/// Timeout for connecting to Redis and for each command.
pub(super) const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Redis could not be set up (a malformed URL, an unreadable certificate); reachability is
/// not checked at start.
#[derive(Debug, thiserror::Error)]
#[error("[cluster]: {0}")]
pub struct ClusterError(pub(super) String);

/// Where commands and the subscription go.
pub(super) enum Target {
    Single(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster {
        client: ClusterClient,
        /// One client per seed node, for the subscription.
        seeds: Vec<Client>,
        next_seed: AtomicUsize,
    },
}

/// The command connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The TLS material, read from its files (never printed: `TlsCertificates` redacts itself).
fn certificates(tls: &RedisTls) -> Result<TlsCertificates, ClusterError> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            ClusterError(format!(
                "cluster.{key}: cannot read {}: {e}",
                path.display()
            ))
        })
    };
    let root_cert = match &tls.ca_file {
        Some(p) => Some(read("ca_file", p)?),
        None => None,
    };
    let client_tls = match &tls.client {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("client_cert", cert)?,
            client_key: read("client_key", key)?,
        }),
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// A `host:port` as a (TLS when `tls`) address.
fn address(text: &str, tls: bool) -> Result<ConnectionAddr, ClusterError> {
    let (host, port) = crate::config::host_port(text)
        .ok_or_else(|| ClusterError(format!("{text:?} is not host:port")))?;
    Ok(if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    })
}

/// A client for one server, with the ACL user and the TLS material.
fn client(
    info: impl IntoConnectionInfo,
    settings: &ClusterSettings,
    certs: Option<&TlsCertificates>,
) -> Result<Client, ClusterError> {
    let err = |e: redis::RedisError| ClusterError(e.to_string());
    let mut info = info.into_connection_info().map_err(err)?;
    if let Some(password) = &settings.password {
        let mut redis = info
            .redis_settings()
            .clone()
            .set_password(password.expose());
        if let Some(user) = &settings.username {
            redis = redis.set_username(user);
        }
        info = info.set_redis_settings(redis);
    }
    match certs {
        Some(certs) => Client::build_with_tls(info, certs.clone()).map_err(err),
        None => Client::open(info).map_err(err),
    }
}

impl Target {
    /// The target the settings describe; nothing is connected yet.
    pub(super) fn new(settings: &ClusterSettings) -> Result<Self, ClusterError> {
        let certs = settings.tls.as_ref().map(certificates).transpose()?;
        let tls = certs.is_some();
        let err = |e: redis::RedisError| ClusterError(e.to_string());
        match &settings.topology {
            RedisTopology::Url(url) => Ok(Target::Single(client(
                url.expose(),
                settings,
                certs.as_ref(),
            )?)),
            RedisTopology::Sentinel {
                sentinels,
                master,
                username,
                password,
            } => {
                let addrs = sentinels
                    .iter()
                    .map(|s| address(s, tls))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
                    .map_err(err)?;
                if let Some(certs) = &certs {
                    b = b
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_redis_certificates(certs.clone())
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_certificates(certs.clone());
                }
                if let Some(p) = &settings.password {
                    b = b.set_client_to_redis_password(p.expose());
                    if let Some(u) = &settings.username {
                        b = b.set_client_to_redis_username(u);
                    }
                }
                if let Some(p) = password {
                    b = b.set_client_to_sentinel_password(p.expose());
                    if let Some(u) = username {
                        b = b.set_client_to_sentinel_username(u);
                    }
                }
                Ok(Target::Sentinel(tokio::sync::Mutex::new(
                    b.build().map_err(err)?,
                )))
            }
            RedisTopology::Cluster { nodes } => {
                let addrs = nodes
                    .iter()
                    .map(|n| address(n, tls))
                    .collect::<Result<Vec<_>, _>>()?;
                let seeds = addrs
                    .iter()
                    .map(|a| client(a.clone(), settings, certs.as_ref()))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut b = ClusterClientBuilder::new(addrs)
                    .connection_timeout(IO_TIMEOUT)
                    .response_timeout(IO_TIMEOUT)
                    .retries(2);
                if let Some(certs) = certs {
                    b = b.tls(TlsMode::Secure).certs(certs);
                }
                if let Some(p) = &settings.password {
                    b = b.password(p.expose());
                    if let Some(u) = &settings.username {
                        b = b.username(u);
                    }
                }
                Ok(Target::Cluster {
                    client: b.build().map_err(err)?,
                    seeds,
                    next_seed: AtomicUsize::new(0),
                })
            }
        }
    }

    /// Whether this is a Redis Cluster (keys spread over several primaries).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// The client of the server commands go to now (for Sentinel: the current primary).
    async fn primary(&self) -> RedisResult<Client> {
        match self {
            Target::Single(c) => Ok(c.clone()),
            Target::Sentinel(s) => s.lock().await.async_get_client().await,
            Target::Cluster {
                seeds, next_seed, ..
            } => {
                let i = next_seed.load(Ordering::Relaxed) % seeds.len().max(1);
                seeds.get(i).cloned().ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no seeds"))
                })
            }
        }
    }

    /// A new command connection (bounded by [`IO_TIMEOUT`] per step).
    pub(super) async fn connect(&self) -> RedisResult<Conn> {
        let timed_out =
            || redis::RedisError::from((redis::ErrorKind::Io, "connecting to Redis timed out"));
        if let Target::Cluster { client, .. } = self {
            let c = tokio::time::timeout(IO_TIMEOUT * 3, client.get_async_connection())
                .await
                .map_err(|_| timed_out())??;
            return Ok(Conn::Cluster(c));
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let client = tokio::time::timeout(IO_TIMEOUT * 3, self.primary())
            .await
            .map_err(|_| timed_out())??;
        let c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Conn::Single(c))
    }

    /// A new subscription connection (for a cluster: to the current seed node).
    pub(super) async fn pubsub(&self) -> Result<PubSub, String> {
        let client = tokio::time::timeout(IO_TIMEOUT * 3, self.primary())
            .await
            .map_err(|_| "finding the primary timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(IO_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())
    }

    /// After a failed subscription: a cluster subscribes through its next seed node.
    pub(super) fn next_seed(&self) {
        if let Target::Cluster { next_seed, .. } = self {
            next_seed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
