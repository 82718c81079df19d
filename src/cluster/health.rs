//! Whether the cluster store can be relied on, and what requests get while it cannot.
//!
//! The subscription is pinged twice a second; a failed ping, a closed connection or a failed
//! write marks the store unavailable until a reconnect has re-synchronised, and so does a
//! lease that ran out (`peers`: no confirmed contact with Redis for [`super::lease::LEASE`]). While it is
//! unavailable, `on_store_unavailable` decides: `refuse` (default) answers authenticated
//! requests with 503, because a revocation made on another instance meanwhile could be missed;
//! `allow` serves them against the revocations known so far. `/readyz` reports it either way.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Cluster;
use crate::config::StorePolicy;

/// How often [`Cluster::wait_healthy`] looks again.
const WAIT_POLL: Duration = Duration::from_millis(20);

impl Cluster {
    /// Whether the store is reachable and synchronised, and this instance's lease holds (it
    /// has every revocation published up to [`super::lease::LEASE`] ago).
    pub(crate) fn healthy(&self) -> bool {
        self.synchronised() && self.peers.lease_holds()
    }

    /// Whether the last synchronisation holds (no failure since), lease or not.
    pub(super) fn synchronised(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// `on_store_unavailable`.
    pub(crate) fn policy(&self) -> StorePolicy {
        self.policy
    }

    /// Whether authenticated requests must be refused now (store unavailable, policy refuse).
    pub(crate) fn refuses(&self) -> bool {
        self.policy == StorePolicy::Refuse && !self.healthy()
    }

    /// Waits until the store is healthy, up to `timeout` (start-up and tests).
    pub(crate) async fn wait_healthy(&self, timeout: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while !self.healthy() {
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
        true
    }

    /// The store is usable again: connected, outbox flushed, every key loaded.
    pub(super) fn mark_synchronised(&self, loaded: usize) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(loaded, "cluster store synchronised");
        }
    }

    /// The store cannot be relied on until the next synchronisation; logged once per outage.
    pub(super) fn mark_unhealthy(&self, why: &str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!(
                why,
                policy = ?self.policy,
                "cluster store unavailable; authenticated requests are {}",
                if self.policy == StorePolicy::Refuse { "refused" } else { "served with the revocations known so far" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cluster::tests::{cluster, mark_ready};
    use crate::config::StorePolicy;

    #[test]
    fn unavailable_until_synchronised_and_again_after_a_failure() {
        let c = cluster("redis://127.0.0.1:1/0", StorePolicy::Refuse);
        assert!(!c.healthy(), "not healthy before the first synchronisation");
        c.mark_synchronised(0);
        assert!(!c.healthy(), "nor before its lease started");
        mark_ready(&c);
        assert!(c.healthy());
        c.mark_unhealthy("ping timed out");
        assert!(!c.healthy());
    }

    #[test]
    fn refuse_refuses_only_while_unavailable() {
        let c = cluster("redis://127.0.0.1:1/0", StorePolicy::Refuse);
        assert!(c.refuses());
        mark_ready(&c);
        assert!(!c.refuses());
        c.mark_unhealthy("subscription closed");
        assert!(c.refuses());
    }

    #[test]
    fn allow_never_refuses() {
        let c = cluster("redis://127.0.0.1:1/0", StorePolicy::Allow);
        assert!(!c.refuses());
        mark_ready(&c);
        assert!(!c.refuses());
    }

    #[tokio::test]
    async fn wait_healthy_gives_up_after_its_timeout_and_returns_at_once_when_healthy() {
        let c = cluster("redis://127.0.0.1:1/0", StorePolicy::Refuse);
        assert!(!c.wait_healthy(Duration::from_millis(60)).await);
        mark_ready(&c);
        assert!(c.wait_healthy(Duration::ZERO).await);
    }
}
