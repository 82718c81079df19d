//! This instance among its peers: its lease and the acknowledgements its revocations wait for
//! (the protocol is described in `confirm`, which drives it through Redis).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long an instance serves sessions after its last confirmed contact with Redis, and the
/// longest a revocation waits for an instance that does not acknowledge it.
pub(super) const LEASE: Duration = Duration::from_secs(5);

/// What identifies one revocation in acknowledgements: the first 16 bytes of the SHA-256 of
/// its encoding.
pub(super) type RevocationDigest = [u8; 16];

pub(super) fn digest(encoded: &[u8]) -> RevocationDigest {
    let full: [u8; 32] = Sha256::digest(encoded).into();
    let mut d = [0; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// This instance among its peers: its id, its lease, and the revocations it waits on.
pub(super) struct Peers {
    /// Random (OS CSPRNG), new at every start: 32 hex digits.
    id: String,
    base: Instant,
    /// Milliseconds after `base` until which the lease holds (0: never held).
    lease_until: AtomicU64,
    waiting: Mutex<HashMap<RevocationDigest, Arc<Waiter>>>,
}

/// The instances that acknowledged one revocation.
#[derive(Default)]
struct Waiter {
    acked: Mutex<HashSet<String>>,
    changed: tokio::sync::Notify,
    /// Writers waiting on this digest (two logouts of one session share it).
    users: std::sync::atomic::AtomicUsize,
}

/// Stops waiting for acknowledgements of one revocation when dropped.
pub(super) struct Expecting<'a> {
    peers: &'a Peers,
    digest: RevocationDigest,
    waiter: Arc<Waiter>,
}

impl Drop for Expecting<'_> {
    fn drop(&mut self) {
        if self.waiter.users.fetch_sub(1, Ordering::AcqRel) == 1
            && let Ok(mut waiting) = self.peers.waiting.lock()
            && waiting
                .get(&self.digest)
                .is_some_and(|w| Arc::ptr_eq(w, &self.waiter))
            && self.waiter.users.load(Ordering::Acquire) == 0
        {
            waiting.remove(&self.digest);
        }
    }
}

impl Peers {
    pub(super) fn new(id: String) -> Self {
        Self {
            id,
            base: Instant::now(),
            lease_until: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    fn millis_since_base(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the lease holds now.
    pub(super) fn lease_holds(&self) -> bool {
        self.millis_since_base(Instant::now()) < self.lease_until.load(Ordering::Acquire)
    }

    /// Renews the lease from `sent`, when the registration sent then and a ping sent after it
    /// were answered and everything that arrived before the answer was applied. Says how long
    /// the lease had lapsed, if it had.
    pub(super) fn renew(&self, sent: Instant) -> Option<Duration> {
        let lease = u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX);
        let until = self.millis_since_base(sent).saturating_add(lease);
        let before = self.lease_until.fetch_max(until, Ordering::AcqRel);
        let now = self.millis_since_base(Instant::now());
        (before > 0 && before < now).then(|| Duration::from_millis(now - before))
    }

    /// Starts collecting acknowledgements of the revocation `digest` (before it is published:
    /// an early acknowledgement is not missed).
    pub(super) fn expect(&self, digest: RevocationDigest) -> Expecting<'_> {
        let waiter = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let w = waiting.entry(digest).or_default().clone();
            w.users.fetch_add(1, Ordering::AcqRel);
            w
        };
        Expecting {
            peers: self,
            digest,
            waiter,
        }
    }

    /// The acknowledgement this instance publishes once it applied the revocations `digests`.
    pub(super) fn ack_message(&self, digests: &[RevocationDigest]) -> String {
        let mut m = self.id.clone();
        for d in digests {
            m.push_str(&format!(" {:032x}", u128::from_be_bytes(*d)));
        }
        m
    }

    /// This instance's id.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Records an acknowledgement (a message on the acks channel); anything malformed is
    /// ignored.
    pub(super) fn acknowledged(&self, message: &[u8]) {
        let Some((id, digests)) = parse_ack(message) else {
            tracing::debug!("ignored a malformed acknowledgement");
            return;
        };
        for digest in digests {
            let waiter = self
                .waiting
                .lock()
                .ok()
                .and_then(|w| w.get(&digest).cloned());
            if let Some(w) = waiter {
                if let Ok(mut acked) = w.acked.lock() {
                    acked.insert(id.to_owned());
                }
                w.changed.notify_waiters();
            }
        }
    }

    /// Waits until every instance in `live` but this one acknowledged, or until `deadline`.
    /// Returns the instances that did not.
    pub(super) async fn confirmed_by(
        &self,
        expecting: &Expecting<'_>,
        live: &[String],
        deadline: Instant,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            let changed = expecting.waiter.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let missing = self.missing(expecting, live);
            if missing.is_empty() {
                return missing;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.missing(expecting, live);
            }
        }
    }

    fn missing(&self, expecting: &Expecting<'_>, live: &[String]) -> Vec<String> {
        let acked = expecting
            .waiter
            .acked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        live.iter()
            .filter(|id| **id != self.id && !acked.contains(id.as_str()))
            .cloned()
            .collect()
    }
}

/// Revocations applied, waiting to be acknowledged, and whether a sender is on its way.
#[derive(Default)]
pub(super) struct Acks {
    pub(super) pending: Vec<RevocationDigest>,
    pub(super) sending: bool,
}

/// Digests read from one acknowledgement at most.
const MAX_ACKED: usize = 1024;

/// `<id> <digest hex> …`: the id and each digest are 32 hex digits.
fn parse_ack(message: &[u8]) -> Option<(&str, Vec<RevocationDigest>)> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.split(' ');
    let hexdigits = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let id = parts.next().filter(|id| hexdigits(id))?;
    let mut digests = Vec::new();
    for part in parts.take(MAX_ACKED) {
        if !hexdigits(part) {
            return None;
        }
        digests.push(u128::from_str_radix(part, 16).ok()?.to_be_bytes());
    }
    (!digests.is_empty()).then_some((id, digests))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccc";

    fn ack(from: &str, d: &RevocationDigest) -> Vec<u8> {
        Peers::new(from.into()).ack_message(&[*d]).into_bytes()
    }

    #[test]
    fn acknowledgements_round_trip_and_malformed_ones_are_refused() {
        let d = digest(b"revocation");
        let m = ack(B, &d);
        assert_eq!(parse_ack(&m), Some((B, vec![d])));
        let two = [d, digest(b"another")];
        let m2 = Peers::new(C.into()).ack_message(&two).into_bytes();
        assert_eq!(parse_ack(&m2), Some((C, two.to_vec())));
        assert_eq!(parse_ack(B.as_bytes()), None, "no digest");
        for bad in [
            &b""[..],
            b"bbbb 00",
            b"not hex at all, not hex at all! 0123456789abcdef0123456789abcdef",
            &m[..m.len() - 1],
            &m2[..m2.len() - 1],
            b"\xff\xfe",
        ] {
            assert_eq!(parse_ack(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_revocation_is_confirmed_once_every_other_live_instance_acknowledged_it() {
        let peers = Arc::new(Peers::new(A.into()));
        let d = digest(b"r1");
        let expecting = peers.expect(d);
        let live = vec![A.to_owned(), B.to_owned(), C.to_owned()];
        peers.acknowledged(&ack(B, &d));
        peers.acknowledged(&ack(B, &digest(b"another"))); // not this one
        let p = Arc::clone(&peers);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p.acknowledged(&ack(C, &digest(b"r1")));
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let missing = peers.confirmed_by(&expecting, &live, deadline).await;
        later.await.unwrap();
        assert!(missing.is_empty(), "{missing:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(45) && took < Duration::from_secs(4),
            "returned when C acknowledged, not before or at the deadline: {took:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_instance_is_waited_for_until_the_deadline_and_named() {
        let peers = Peers::new(A.into());
        let d = digest(b"r2");
        let expecting = peers.expect(d);
        peers.acknowledged(&ack(B, &d));
        let started = Instant::now();
        let live = vec![B.to_owned(), C.to_owned()];
        let missing = peers
            .confirmed_by(&expecting, &live, started + Duration::from_millis(150))
            .await;
        assert_eq!(missing, vec![C.to_owned()]);
        assert!(started.elapsed() >= Duration::from_millis(140));
    }

    #[test]
    fn acknowledgements_are_collected_only_while_expected() {
        let peers = Peers::new(A.into());
        let d = digest(b"r3");
        peers.acknowledged(&ack(B, &d)); // nobody waits yet: dropped
        let first = peers.expect(d);
        let second = peers.expect(d); // a second logout of the same session
        peers.acknowledged(&ack(B, &d));
        assert!(peers.missing(&second, &[B.to_owned()]).is_empty());
        drop(first);
        assert!(
            peers.waiting.lock().unwrap().contains_key(&d),
            "still expected by the second"
        );
        drop(second);
        assert!(peers.waiting.lock().unwrap().is_empty());
        let third = peers.expect(d);
        assert_eq!(
            peers.missing(&third, &[B.to_owned()]),
            vec![B.to_owned()],
            "a new wait starts empty"
        );
    }

    #[test]
    fn the_lease_holds_for_its_length_from_when_the_contact_was_sent() {
        let peers = Peers::new(A.into());
        assert!(!peers.lease_holds(), "no lease before the first contact");
        assert_eq!(peers.renew(Instant::now()), None);
        assert!(peers.lease_holds());
        let stale = Instant::now().checked_sub(LEASE + Duration::from_millis(10));
        if let Some(stale) = stale {
            let peers = Peers {
                base: stale,
                ..Peers::new(B.into())
            };
            peers.renew(stale);
            assert!(
                !peers.lease_holds(),
                "a lease from a contact LEASE ago ended"
            );
            let lapsed = peers.renew(Instant::now()).expect("it had lapsed");
            assert!(lapsed >= Duration::from_millis(5), "{lapsed:?}");
            assert!(peers.lease_holds());
        }
    }
}
