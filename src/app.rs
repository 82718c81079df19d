//! Shared state of a running sealgate and the per-request session plumbing: reading the session
//! cookie, applying the lifetime and revocation rules, and writing or clearing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cookie::Cookie;
use http::HeaderMap;
use http::header::COOKIE;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::config::{CsrfMode, RouteSettings, Settings};
use crate::error::{Failure, Rejection};
use crate::expiring::{ExpiringSet, Full, Seen};
use crate::metrics::Metrics;
use crate::oidc::{Provider, RefreshError, Refreshed};
use crate::revocation::{Denylist, Journal, Revocation, RevocationError};
use crate::seal::jar::{self, IndexSet};
use crate::seal::{ChunkSet, Codec, CookieName, OpenError, Purpose, SealError};
use crate::session::{Session, Validity};
use crate::session_cache::{Opened, SessionCache};

/// Everything a request handler needs.
#[derive(Debug)]
pub(crate) struct App {
    /// Validated configuration.
    pub settings: Settings,
    /// The cookie codec (key ring and chunk limit).
    pub codec: Codec,
    /// The IdPs, in configuration order (never empty; the first is the default for a login).
    pub providers: Vec<Provider>,
    /// Revocations.
    pub denylist: Arc<Denylist>,
    /// The journal that makes revocations survive a restart (`[revocation] journal`); none:
    /// memory only, and a restart forgets every revocation.
    pub journal: Option<Arc<Journal>>,
    /// Time.
    pub clock: Clock,
    /// States of completed logins, so a replayed callback is refused before the IdP is asked.
    pub used_states: Mutex<ExpiringSet>,
    /// Refreshes in flight or within their grace window.
    pub refreshes: Refreshes,
    /// Recently opened sessions, by exact cookie bytes.
    pub opened: SessionCache,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` for upstream requests, built once.
    pub forwarded: crate::upstream::Forwarded,
    /// The Redis side of a cluster, when `[cluster]` is configured.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Slots for open WebSocket tunnels (`server.max_connections` of them).
    pub tunnels: Arc<tokio::sync::Semaphore>,
    /// `iss`+`jti` of accepted back-channel logout tokens, so a replay changes nothing.
    pub logout_tokens: Mutex<ExpiringSet>,
    /// Back-channel logouts being recorded, by replay key: a replay of one waits for its
    /// outcome (`Some(true)`: done) instead of being answered at once.
    pub logouts_in_flight: Mutex<HashMap<[u8; 32], tokio::sync::watch::Receiver<Option<bool>>>>,
    /// Routes' own tokens, and the turns of sessions' refresh-token grants.
    pub route_tokens: crate::route_tokens::RouteTokens,
    /// The identity headers of every route (`identity_headers`): a client's copy is removed
    /// from every proxied request.
    pub identity_headers: Vec<http::HeaderName>,
    /// Request rates per client address and per session (`[limits]`).
    pub limits: crate::limits::Limits,
    /// Upstreams' latest `DPoP-Nonce`, by origin (RFC 9449 9).
    pub dpop_nonces: crate::dpop::NonceBook,
    /// What each route needs per request, made once, in the order of `settings.routes`.
    pub prepared: Vec<crate::upstream::PreparedRoute>,
}

/// Chunk deletions a response may carry beyond `max_chunks` (stale chunks of an earlier, larger
/// configuration, or junk).
const EXTRA_DELETIONS: u8 = 4;

type RefreshCell = Arc<tokio::sync::OnceCell<Result<Refreshed, RefreshError>>>;

/// Single-flight refresh per refresh token, with a grace window.
///
/// Keyed by a hash of the refresh token being redeemed: concurrent requests of one session
/// await the same token-endpoint call, and requests that arrive within the grace window still
/// carrying the pre-refresh cookie get the same new tokens (and the new cookie) instead of
/// replaying a rotated refresh token, which a reuse-detecting IdP would punish by revoking the
/// whole family. Per instance; several instances behind a load balancer without stickiness can
/// each refresh once.
#[derive(Debug, Default)]
pub(crate) struct Refreshes {
    map: Mutex<HashMap<[u8; 32], (i64, RefreshCell)>>,
}

/// What the lifetime rules and a possible refresh made of an active session.
#[derive(Debug)]
pub(crate) enum RefreshOutcome {
    /// Nothing to do, or the session was refreshed (then it must be re-sealed).
    Ready {
        /// Whether tokens changed.
        refreshed: bool,
    },
    /// The session is over: the IdP refused the refresh token, or the refresh would change the
    /// session's identity (in both cases the session is also revoked, so a copy of its cookie
    /// is dead too), or a revalidation is due and there is no refresh token to do it with.
    Ended(&'static str),
    /// The session must end (the IdP refused it, or its identity would change) but its
    /// revocation could not be recorded: nothing changed, try again.
    Unrecorded(String),
    /// The refresh failed and the access token has expired.
    Failed(String),
}

/// The session a request carries, after every rule was applied.
#[derive(Debug)]
pub(crate) enum SessionState {
    /// No session cookie.
    Anonymous {
        /// Chunk indices present (stale leftovers to delete).
        seen: IndexSet,
    },
    /// A valid session.
    Active(Active),
    /// A session that is valid as far as this instance knows, while the cluster store is
    /// unreachable and the policy is `refuse`: API calls get 503, cookies are left alone (an
    /// outage must not log anyone out); logout still works.
    Unverified(Active),
    /// A session cookie that is invalid, expired or revoked: answer with deletions only.
    Rejected {
        /// Chunk indices present.
        seen: IndexSet,
        /// Why, for the log.
        why: String,
        /// The session, when it was refused because it is revoked: a logout of it shares its
        /// revocation again (another logout of it may still be waiting for the instances).
        revoked: Option<Arc<Session>>,
    },
}

/// A valid session and what writing it back needs.
#[derive(Debug)]
pub(crate) struct Active {
    /// The session (already renewed when `reseal`); shared with the cache of opened
    /// sessions until something changes it (`Arc::make_mut`).
    pub session: Arc<Session>,
    /// Chunk indices the browser sent.
    pub seen: IndexSet,
    /// Whether the cookie must be written again (renewal, or key rotation).
    pub reseal: bool,
    /// `Authorization: Bearer` for the access token as opened (stale once refreshed).
    pub bearer: Option<http::HeaderValue>,
}

impl SessionState {
    /// The valid session, if there is one.
    pub(crate) fn session(&self) -> Option<&Session> {
        match self {
            Self::Active(a) | Self::Unverified(a) => Some(&a.session),
            _ => None,
        }
    }
}

/// Why a session cookie did not open.
#[derive(Debug, thiserror::Error)]
enum Unopened {
    #[error("session cookie: {0}")]
    Cookie(OpenError),
    #[error("session plaintext: {0}")]
    Plaintext(crate::session::SessionError),
}

impl App {
    /// The provider that issued `session`'s tokens, if it is still configured.
    pub(crate) fn provider_of(&self, session: &Session) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|p| p.is_tagged(&session.provider))
    }

    /// The provider a login asks for: by name, or the first when none is named.
    pub(crate) fn provider_named(&self, name: Option<&str>) -> Option<&Provider> {
        match name {
            None => self.providers.first(),
            Some(name) => self.providers.iter().find(|p| p.name() == name),
        }
    }

    /// The provider whose callback is `/callback` (`name` empty) or `/callback/NAME`.
    pub(crate) fn provider_at_callback(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.callback_name() == name)
    }

    /// Reads and judges the session cookie at time `now`.
    pub(crate) fn load_session(&self, headers: &HeaderMap, now: i64) -> SessionState {
        let name = &self.settings.session.cookie_name;
        // `from_utf8` rather than `HeaderValue::to_str` (SIMD speed on a header of several
        // kilobytes): a session chunk must still be base64url to open; the difference is that
        // another application's non-ASCII cookie in the same header no longer hides the session.
        let texts = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok());
        let set = ChunkSet::from_headers(name, self.codec.max_chunks(), texts);
        let seen = set.seen();
        let key = self.opened.key(&set);
        let cached = key.as_ref().and_then(|k| self.opened.get(k, now));
        let fresh = cached.is_none();
        let opened = match cached {
            Some(hit) => hit,
            None => match self.open_session(&set, now) {
                Ok(o) => Arc::new(o),
                Err(Unopened::Cookie(OpenError::Absent)) if seen.is_empty() => {
                    return SessionState::Anonymous { seen };
                }
                Err(e) => {
                    return SessionState::Rejected {
                        seen,
                        why: e.to_string(),
                        revoked: None,
                    };
                }
            },
        };
        let mut session = opened.session.clone();
        let mut reseal = !opened.current_key;
        let refused = |why: String, revoked: Option<Arc<Session>>| {
            if let (false, Some(k)) = (fresh, &key) {
                self.opened.remove(k);
            }
            SessionState::Rejected { seen, why, revoked }
        };
        match session.validity(now) {
            Validity::IdleExpired | Validity::AbsoluteExpired => {
                return refused(format!("session {:?} expired", session.id), None);
            }
            Validity::Renew => {
                Arc::make_mut(&mut session).renew(now, self.idle_timeout_secs());
                reseal = true;
            }
            Validity::Fresh => {}
        }
        let Some(provider) = self.provider_of(&session) else {
            return refused(
                format!(
                    "session {:?} names a provider that is not configured",
                    session.id
                ),
                None,
            );
        };
        if self.denylist.is_revoked(&session, provider.issuer()) {
            let why = format!("session {:?} revoked", session.id);
            return refused(why, Some(session));
        }
        crate::telemetry::spans::record_session(&session.id);
        let bearer = opened.bearer.clone();
        if fresh && let Some(k) = &key {
            self.opened.insert(k, opened);
        }
        let active = Active {
            session,
            seen,
            reseal,
            bearer,
        };
        if self.cluster.as_ref().is_some_and(|c| c.refuses()) {
            return SessionState::Unverified(active);
        }
        SessionState::Active(active)
    }

    /// Opens and decodes the session cookie in `set` (the work [`SessionCache`] spares).
    fn open_session(&self, set: &ChunkSet<'_>, now: i64) -> Result<Opened, Unopened> {
        let name = &self.settings.session.cookie_name;
        let opened = self
            .codec
            .open(Purpose::Session, name, set, now)
            .map_err(Unopened::Cookie)?;
        let session = Session::decode_version(opened.payload(), opened.version)
            .map_err(Unopened::Plaintext)?;
        Ok(Opened {
            bearer: crate::session_cache::bearer(&session),
            session: Arc::new(session),
            cookie_expires_at: opened.expires_at,
            current_key: opened.current_key,
        })
    }

    /// The prepared parts of `route` (one of `settings.routes`; `None` for any other).
    pub(crate) fn prepared(
        &self,
        route: &RouteSettings,
    ) -> Option<&crate::upstream::PreparedRoute> {
        let i = self
            .settings
            .routes
            .iter()
            .position(|r| std::ptr::eq(r, route))?;
        self.prepared.get(i)
    }

    /// Whether the session's last grant is `[session] revalidate_every` or longer ago (never
    /// when revalidation is off).
    pub(crate) fn revalidation_due(&self, session: &Session, now: i64) -> bool {
        self.settings.session.revalidate_every.is_some_and(|every| {
            let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
            now.saturating_sub(session.granted_at) >= every
        })
    }

    /// Refreshes the session's tokens if a revalidation is due (see [`App::refresh_if_due`]);
    /// otherwise leaves them alone, even when the access token is about to expire. For
    /// endpoints that serve the session without its access token (`/bff/user`).
    pub(crate) async fn revalidate_if_due(
        &self,
        session: &mut Arc<Session>,
        now: i64,
    ) -> RefreshOutcome {
        if self.revalidation_due(session, now) {
            self.refresh_if_due(session, now).await
        } else {
            RefreshOutcome::Ready { refreshed: false }
        }
    }

    /// Refreshes the session's tokens if its access token expires within `refresh_before`, or
    /// if its last grant is `revalidate_every` old (a revalidation: the IdP may refuse a user
    /// it no longer vouches for, which ends the session).
    pub(crate) async fn refresh_if_due(
        &self,
        session: &mut Arc<Session>,
        now: i64,
    ) -> RefreshOutcome {
        let before = i64::try_from(self.settings.session.refresh_before.as_secs()).unwrap_or(30);
        let expiring = session
            .access_expires_at
            .is_some_and(|exp| exp.saturating_sub(before) <= now);
        let revalidating = self.revalidation_due(session, now);
        if !expiring && !revalidating {
            return RefreshOutcome::Ready { refreshed: false };
        }
        // Boxed: the refresh's future is large, and most requests never get here.
        Box::pin(self.refresh_now(session, now, expiring, revalidating)).await
    }

    /// [`App::refresh_if_due`] once a refresh or a revalidation is due.
    async fn refresh_now(
        &self,
        session: &mut Arc<Session>,
        now: i64,
        expiring: bool,
        revalidating: bool,
    ) -> RefreshOutcome {
        let Some(refresh) = session.refresh_token.as_ref() else {
            if revalidating {
                // Nothing to revalidate with: the session ends, and signing in again is the
                // revalidation. (A copy of the cookie has the same grant time: it ends too.)
                tracing::info!(session = ?session.id, "session ended: revalidation due without a refresh token");
                return RefreshOutcome::Ended("revalidation due without a refresh token");
            }
            return RefreshOutcome::Ready { refreshed: false };
        };
        let secret = refresh.expose();
        let key: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        let grace = i64::try_from(self.settings.session.refresh_grace.as_secs()).unwrap_or(30);
        let (started, cell) = {
            let Ok(mut map) = self.refreshes.map.lock() else {
                return RefreshOutcome::Failed("refresh table lock poisoned".into());
            };
            map.retain(|_, (started, _)| started.saturating_add(grace) > now);
            let (started, cell) = map.entry(key).or_insert_with(|| (now, Arc::default()));
            (*started, cell.clone())
        };
        let Some(provider) = self.provider_of(session) else {
            return RefreshOutcome::Failed("the session's provider is not configured".into());
        };
        let previous_id = session.id_token.clone();
        let dpop_key = session.dpop.as_ref().map(|d| d.key.clone());
        let result = cell
            .get_or_init(|| {
                async {
                    // In a cluster, one instance redeems the refresh token for all; without Redis
                    // (or while it is unreachable) this instance's single flight is all there is.
                    // Either way in the session's turn with its route grants, which may have
                    // replaced the refresh token (`route_tokens::lanes`).
                    let previous = previous_id.as_ref();
                    let dpop = dpop_key.as_ref();
                    let redeem = || {
                        self.route_tokens.lanes.redeem(
                            session.id,
                            refresh,
                            (now, grace),
                            self.cluster.as_deref(),
                            |rt| async move { provider.refresh(&rt, previous, now, dpop).await },
                        )
                    };
                    let shared = match &self.cluster {
                        Some(c) => c.refresh_once(&key, redeem).await,
                        None => None,
                    };
                    let r = match shared {
                        Some(r) => r,
                        None => redeem().await,
                    };
                    record_refresh(session, &r, !expiring);
                    r
                }
                .instrument(crate::telemetry::spans::internal_span("refresh"))
            })
            .await;
        match result {
            Ok(new) => {
                self.adopt_refreshed(session, started, new);
                RefreshOutcome::Ready { refreshed: true }
            }
            Err(e @ (RefreshError::InvalidGrant | RefreshError::IdentityChanged)) => {
                // The IdP no longer vouches for this session (the user may be disabled, the
                // grant revoked), or its identity would change, which never happens to a
                // session (OIDC Core 12.2): end it everywhere, so a copy of its cookie is dead
                // too, not only this browser's (and its open WebSocket tunnels close).
                let why = match e {
                    RefreshError::InvalidGrant => "the IdP refused the refresh token",
                    _ => "the refresh changed the session's identity",
                };
                match self.revoke(Revocation::of_session(session), now).await {
                    Ok(()) => {
                        tracing::warn!(session = ?session.id, revalidation = !expiring, "session ended: {why}");
                        RefreshOutcome::Ended(why)
                    }
                    Err(e) => RefreshOutcome::Unrecorded(format!("{why}: {e}")),
                }
            }
            Err(RefreshError::Failed(e)) => {
                // A transient failure. While the access token is still valid the request is
                // served with it, and the failure is kept for the grace window: during an IdP
                // outage, the requests of a session due for a refresh or a revalidation cost
                // one token request per window, not one (and its timeout) each. Once the access
                // token has expired, the next request retries at once.
                let still_valid = session.access_expires_at.is_some_and(|exp| exp > now);
                if !still_valid
                    && let Ok(mut map) = self.refreshes.map.lock()
                    && map.get(&key).is_some_and(|(_, c)| Arc::ptr_eq(c, &cell))
                {
                    map.remove(&key);
                }
                if still_valid {
                    // Still valid for a while: use it, try again on a later request.
                    RefreshOutcome::Ready { refreshed: false }
                } else {
                    RefreshOutcome::Failed(e.clone())
                }
            }
        }
    }

    /// Puts a refresh's tokens into the session. The grant happened when the first request
    /// sharing it started it (`started`: a request in the grace window reuses that grant; it
    /// does not make a new one).
    fn adopt_refreshed(&self, session: &mut Arc<Session>, started: i64, new: &Refreshed) {
        // Copied only now: the cached opening other requests share stays as it was.
        let session = Arc::make_mut(session);
        session.granted_at = started;
        session.access_token = new.access_token.clone();
        session.access_expires_at = new.access_expires_at;
        if let Some(r) = &new.refresh_token {
            session.refresh_token = Some(r.clone());
        }
        if let (Some(d), Some(token_type)) = (&mut session.dpop, new.token_type) {
            d.token_type = token_type;
        }
        if let Some(id) = &new.id_token
            && self.settings.session.store_id_token
            && session
                .id_token
                .as_ref()
                .is_none_or(|old| keeps_authentication(old, id))
        {
            session.id_token = Some(id.clone());
        }
    }

    /// Records a revocation: durably first (with a journal), then in memory, where every later
    /// check on this instance sees it.
    ///
    /// The order is what makes "a revocation is never dropped" hold across a crash: the entry
    /// is appended and `fsync`ed before memory changes and before success is reported, so a
    /// logout reported done survives `kill -9`. If the write fails, memory is left alone and
    /// the caller reports that nothing happened (503): the user is still signed in and knows
    /// it, rather than believing in a logout that a restart would undo. (Memory first would
    /// make the session dead here but alive again after a restart.) The write blocks, so it
    /// runs on the blocking pool; the journal's lock serializes it with other revocations and
    /// with compaction.
    ///
    /// # Errors
    /// When it could not be recorded; the caller reports that nothing happened.
    pub(crate) async fn revoke(&self, r: Revocation, now: i64) -> Result<(), RevocationError> {
        let recorded = match &self.journal {
            None => self.denylist.apply(r, now)?,
            Some(journal) => {
                let (journal, denylist) = (journal.clone(), self.denylist.clone());
                tokio::task::spawn_blocking(move || journal.record(&denylist, r, now))
                    .await
                    .map_err(|e| RevocationError(format!("revocation task failed: {e}")))??
            }
        };
        tracing::info!(revocation = ?recorded, "revoked");
        if let Some(cluster) = &self.cluster
            && cluster.share(&recorded).await == crate::cluster::Shared::Unconfirmed
        {
            // Kept for Redis either way (never dropped). With `refuse` the revocation is not
            // reported done while another instance may still serve the session.
            if cluster.policy() == crate::config::StorePolicy::Refuse {
                return Err(RevocationError(
                    "recorded here, not yet shared: the cluster store is unavailable".into(),
                ));
            }
            tracing::warn!(revocation = ?recorded, "revocation not yet shared with the other instances (store unavailable, policy allow)");
        }
        Ok(())
    }

    /// Idle timeout in seconds.
    pub(crate) fn idle_timeout_secs(&self) -> i64 {
        i64::try_from(self.settings.session.idle_timeout.as_secs()).unwrap_or(i64::MAX)
    }

    /// Absolute timeout in seconds.
    pub(crate) fn absolute_timeout_secs(&self) -> i64 {
        i64::try_from(self.settings.session.absolute_timeout.as_secs()).unwrap_or(i64::MAX)
    }

    /// `Set-Cookie`s for `session`, deleting chunks in `seen` it no longer uses.
    ///
    /// # Errors
    /// When the session does not fit the cookie budget, or encoding fails.
    pub(crate) fn session_cookies(
        &self,
        session: &Session,
        now: i64,
        seen: IndexSet,
    ) -> Result<Vec<Cookie<'static>>, SessionCookieError> {
        let name = &self.settings.session.cookie_name;
        let plaintext = session.encode().map_err(|_| SessionCookieError::Encode)?;
        let sealed = self
            .codec
            .seal(Purpose::Session, name, session.expires_at(), &plaintext)
            .map_err(SessionCookieError::Seal)?;
        crate::metrics::metrics()
            .cookie_bytes
            .observe(sealed.cookie_bytes(name) as f64);
        let mut cookies =
            jar::set_cookies(name, Purpose::Session, &sealed, now, self.deletable(seen));
        if self.settings.bff.csrf_mode == CsrfMode::DoubleSubmit {
            cookies.push(crate::csrf::cookie(&self.settings, session, now));
        }
        Ok(cookies)
    }

    /// `Set-Cookie`s re-sealing a renewed or rotated session. A failure here must not fail the
    /// request the session is valid for: it is logged and the browser keeps its current cookie
    /// (which stays valid until its own idle expiry).
    pub(crate) fn renewal_cookies(
        &self,
        session: &Session,
        now: i64,
        seen: IndexSet,
    ) -> Vec<Cookie<'static>> {
        self.session_cookies(session, now, seen)
            .unwrap_or_else(|e| {
                tracing::warn!(session = ?session.id, error = %e, "session not re-sealed");
                Vec::new()
            })
    }

    /// The chunks of `seen` a response deletes: those a session could have written and a few
    /// more. A request carrying hundreds of junk `<name>.N` cookies gets a bounded number of
    /// deletions, not one each; junk above the bound is never read (opening reads at most
    /// `max_chunks`), so it cannot break a session.
    fn deletable(&self, seen: IndexSet) -> IndexSet {
        seen.below(self.codec.max_chunks().saturating_add(EXTRA_DELETIONS))
    }

    /// Deletions for every chunk in `seen` (bounded, see [`App::deletable`]).
    pub(crate) fn clear_session(&self, seen: IndexSet) -> Vec<Cookie<'static>> {
        let mut cookies = jar::removal_cookies(
            &self.settings.session.cookie_name,
            Purpose::Session,
            self.deletable(seen).iter(),
        );
        if self.settings.bff.csrf_mode == CsrfMode::DoubleSubmit && !seen.is_empty() {
            cookies.push(crate::csrf::removal_cookie(&self.settings));
        }
        cookies
    }

    /// Deletions for every chunk the session could use, plus any other seen (logout).
    pub(crate) fn clear_session_everywhere(&self, seen: IndexSet) -> Vec<Cookie<'static>> {
        let mut all = seen;
        for i in 0..self.codec.max_chunks() {
            all.insert(i);
        }
        self.clear_session(all)
    }

    /// The base name of the login cookie for the flow with `state`.
    pub(crate) fn login_cookie_name(&self, state: &str) -> Option<CookieName> {
        let digest = Sha256::digest(state.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        CookieName::new(format!("{}-login-{hex}", self.settings.session.cookie_name)).ok()
    }

    /// The `Cookie` names of pending login flows in a request (base names).
    pub(crate) fn pending_login_names<'h>(&self, headers: &'h HeaderMap) -> Vec<&'h str> {
        let prefix = format!("{}-login-", self.settings.session.cookie_name);
        let mut names: Vec<&str> = crate::request::cookie_headers(headers)
            .flat_map(Cookie::split_parse)
            .filter_map(|c| c.ok().and_then(|c| c.name_raw()))
            .filter(|n| n.starts_with(&prefix))
            .filter_map(|n| n.strip_suffix(".0"))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Where "start again" links point.
    pub(crate) fn login_href(&self) -> String {
        format!("{}/login", self.settings.bff.prefix)
    }

    /// Records a login's state as used until `until`: [`Seen::Replayed`] when it was used
    /// before.
    ///
    /// # Errors
    /// When the table is full of unexpired entries (entries are never dropped early: that would
    /// re-open replays), or its lock is poisoned.
    pub(crate) fn mark_state_used(&self, state: &str, until: i64, now: i64) -> Result<Seen, Full> {
        let key: [u8; 32] = Sha256::digest(state.as_bytes()).into();
        let Ok(mut used) = self.used_states.lock() else {
            return Err(Full);
        };
        used.insert(key, until, now)
    }
}

/// Logs and counts a token-endpoint refresh; `revalidation` when the access token alone would
/// The authentication claims (`acr`, `amr`, `auth_time`) of the login: a refreshed ID token
/// may leave them out (OIDC Core 12.2 asks only for the same `iss`, `sub`, `aud`), and step-up
/// rules read them, so an ID token without one the session's has does not replace it (the
/// session keeps the login's, rather than asking the user to log in again at every refresh).
/// Whether `new` carries every one of them `old` carries.
fn keeps_authentication(old: &crate::token::Token, new: &crate::token::Token) -> bool {
    let claims = |t: &crate::token::Token| -> serde_json::Map<String, serde_json::Value> {
        t.jws_payload()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or_default()
    };
    let (old, new) = (claims(old), claims(new));
    ["acr", "amr", "auth_time"]
        .iter()
        .all(|c| !old.contains_key(*c) || new.contains_key(*c))
}

/// not have been refreshed (metric reason `revalidate` on success).
fn record_refresh(session: &Session, r: &Result<Refreshed, RefreshError>, revalidation: bool) {
    let m = crate::metrics::metrics();
    match r {
        Ok(_) => {
            tracing::info!(session = ?session.id, revalidation, "tokens refreshed");
            let reason = if revalidation { "revalidate" } else { "" };
            Metrics::outcome(&m.refreshes, "success", reason);
        }
        Err(e) => {
            tracing::warn!(session = ?session.id, revalidation, error = %e, "refresh failed");
            let reason = match e {
                RefreshError::InvalidGrant => "invalid_grant",
                RefreshError::IdentityChanged => "identity_changed",
                RefreshError::Failed(_) => "failed",
            };
            Metrics::outcome(&m.refreshes, "failure", reason);
        }
    }
}

/// The session could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionCookieError {
    /// It does not fit in the configured chunks.
    #[error(transparent)]
    Seal(SealError),
    /// Encoding failed.
    #[error("session encoding failed")]
    Encode,
}

impl From<SessionCookieError> for Failure {
    fn from(e: SessionCookieError) -> Self {
        Failure::new(Rejection::Internal, e.to_string())
    }
}
