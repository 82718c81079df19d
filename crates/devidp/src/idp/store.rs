//! Grant bookkeeping, pure: `now` and fresh tokens come from the caller, so every rule (single
//! use, replay revokes the family, rotation, expiry, bounded maps) is tested without HTTP.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use super::{MAX_CODES, MAX_REFRESH_TOKENS, MAX_SPENT, SPENT_CODE_MEMORY_SECS};
use crate::pkce::s256_matches;

/// Who signed in, for which client: shared by a login's code and its refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Login {
    pub(super) client_id: String,
    pub(super) sub: String,
    pub(super) name: String,
    /// The IdP session id: one per login, the key of the token family.
    pub(super) sid: String,
    /// The granted scope, space-separated.
    pub(super) scope: String,
    pub(super) auth_time: u64,
}

/// An issued, unredeemed authorization code.
#[derive(Debug, Clone)]
pub(super) struct CodeGrant {
    pub(super) login: Login,
    pub(super) redirect_uri: String,
    pub(super) code_challenge: String,
    pub(super) nonce: Option<String>,
    pub(super) expires_at: u64,
}

/// A live refresh token.
#[derive(Debug, Clone)]
pub(super) struct RefreshGrant {
    pub(super) login: Login,
    pub(super) expires_at: u64,
}

/// A redeemed code or a rotated refresh token: presenting it again revokes its family.
#[derive(Debug, Clone)]
struct Spent {
    sid: String,
    forget_at: u64,
}

/// Why a code or refresh token was refused; every reason is `invalid_grant` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrantError {
    Unknown,
    Replayed,
    Expired,
    WrongClient,
    WrongRedirectUri,
    PkceMismatch,
}

impl GrantError {
    pub(super) fn description(self) -> &'static str {
        match self {
            GrantError::Unknown => "unknown or revoked grant",
            GrantError::Replayed => "grant already used; its tokens are revoked",
            GrantError::Expired => "grant expired",
            GrantError::WrongClient => "grant was issued to another client",
            GrantError::WrongRedirectUri => "redirect_uri does not match the authorization request",
            GrantError::PkceMismatch => "code_verifier does not match the code_challenge",
        }
    }
}

/// The store is at its cap of unredeemed codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StoreFull;

/// All mutable IdP state. Every map is bounded: an insert into a full map first drops its
/// expired entries (expired entries are refused before then anyway), then either fails (codes)
/// or evicts the entry closest to expiry (refresh tokens, spent markers).
#[derive(Default)]
pub(super) struct Store {
    codes: HashMap<String, CodeGrant>,
    refresh: HashMap<String, RefreshGrant>,
    spent: HashMap<String, Spent>,
}

/// Counts only: the map keys are codes and refresh tokens.
impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("codes", &self.codes.len())
            .field("refresh", &self.refresh.len())
            .field("spent", &self.spent.len())
            .finish()
    }
}

impl Store {
    pub(super) fn insert_code(
        &mut self,
        code: String,
        grant: CodeGrant,
        now: u64,
    ) -> Result<(), StoreFull> {
        if self.codes.len() >= MAX_CODES {
            self.codes.retain(|_, g| g.expires_at > now);
        }
        if self.codes.len() >= MAX_CODES {
            return Err(StoreFull);
        }
        self.codes.insert(code, grant);
        Ok(())
    }

    /// Redeems `code` once. Any attempt consumes it, so a wrong verifier cannot be retried; a
    /// second presentation revokes the family (RFC 6749 §4.1.2).
    pub(super) fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
        now: u64,
    ) -> Result<CodeGrant, GrantError> {
        if let Some(spent) = self.spent.get(code) {
            let sid = spent.sid.clone();
            self.revoke_family(&sid);
            return Err(GrantError::Replayed);
        }
        let grant = self.codes.remove(code).ok_or(GrantError::Unknown)?;
        self.mark_spent(
            code.to_owned(),
            grant.login.sid.clone(),
            now + SPENT_CODE_MEMORY_SECS,
            now,
        );
        if grant.expires_at <= now {
            return Err(GrantError::Expired);
        }
        if grant.login.client_id != client_id {
            return Err(GrantError::WrongClient);
        }
        if grant.redirect_uri != redirect_uri {
            return Err(GrantError::WrongRedirectUri);
        }
        if !s256_matches(code_verifier, &grant.code_challenge) {
            return Err(GrantError::PkceMismatch);
        }
        Ok(grant)
    }

    pub(super) fn insert_refresh(&mut self, token: String, grant: RefreshGrant, now: u64) {
        if self.refresh.len() >= MAX_REFRESH_TOKENS {
            self.refresh.retain(|_, g| g.expires_at > now);
        }
        if self.refresh.len() >= MAX_REFRESH_TOKENS {
            evict_soonest(&mut self.refresh, |g| g.expires_at);
        }
        self.refresh.insert(token, grant);
    }

    /// Exchanges refresh token `old` for `new`: `old` stops working, `new` inherits the login
    /// and its absolute expiry. Presenting an already rotated token revokes the family.
    pub(super) fn rotate_refresh(
        &mut self,
        old: &str,
        client_id: &str,
        new: String,
        now: u64,
    ) -> Result<Login, GrantError> {
        if let Some(spent) = self.spent.get(old) {
            let sid = spent.sid.clone();
            self.revoke_family(&sid);
            return Err(GrantError::Replayed);
        }
        let grant = match self.refresh.entry(old.to_owned()) {
            Entry::Vacant(_) => return Err(GrantError::Unknown),
            Entry::Occupied(entry) => {
                if entry.get().expires_at <= now {
                    entry.remove();
                    return Err(GrantError::Expired);
                }
                if entry.get().login.client_id != client_id {
                    return Err(GrantError::WrongClient);
                }
                entry.remove()
            }
        };
        self.mark_spent(
            old.to_owned(),
            grant.login.sid.clone(),
            grant.expires_at,
            now,
        );
        let login = grant.login.clone();
        self.insert_refresh(new, grant, now);
        Ok(login)
    }

    /// RFC 7009: revokes `token` and its family if it is (or was) a refresh token of
    /// `client_id`. Unknown tokens are ignored, as the RFC requires.
    pub(super) fn revoke(&mut self, token: &str, client_id: &str) {
        let sid = match (self.refresh.get(token), self.spent.get(token)) {
            (Some(grant), _) if grant.login.client_id == client_id => grant.login.sid.clone(),
            (None, Some(spent)) => spent.sid.clone(),
            _ => return,
        };
        self.revoke_family(&sid);
    }

    /// Ends IdP session `sid`: its unredeemed codes and refresh tokens stop working.
    pub(super) fn revoke_family(&mut self, sid: &str) {
        self.codes.retain(|_, g| g.login.sid != sid);
        self.refresh.retain(|_, g| g.login.sid != sid);
    }

    fn mark_spent(&mut self, token: String, sid: String, forget_at: u64, now: u64) {
        if self.spent.len() >= MAX_SPENT {
            self.spent.retain(|_, s| s.forget_at > now);
        }
        if self.spent.len() >= MAX_SPENT {
            evict_soonest(&mut self.spent, |s| s.forget_at);
        }
        self.spent.insert(token, Spent { sid, forget_at });
    }
}

/// Removes the entry whose `expiry` is smallest (O(n), only ever at a cap).
fn evict_soonest<V>(map: &mut HashMap<String, V>, expiry: impl Fn(&V) -> u64) {
    let soonest = map
        .iter()
        .min_by_key(|(_, v)| expiry(v))
        .map(|(k, _)| k.clone());
    if let Some(key) = soonest {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::users::subject_for;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn login(sid: &str) -> Login {
        Login {
            client_id: "spa".into(),
            sub: subject_for("Ada"),
            name: "Ada".into(),
            sid: sid.into(),
            scope: "openid profile".into(),
            auth_time: 1_000,
        }
    }

    fn code_grant(sid: &str, expires_at: u64) -> CodeGrant {
        CodeGrant {
            login: login(sid),
            redirect_uri: "http://rp/cb".into(),
            code_challenge: CHALLENGE.into(),
            nonce: Some("n".into()),
            expires_at,
        }
    }

    #[test]
    fn code_is_single_use_and_replay_revokes_the_family() {
        let mut store = Store::default();
        store
            .insert_code("c1".into(), code_grant("s1", 1_060), 1_000)
            .unwrap();
        let grant = store
            .redeem_code("c1", "spa", "http://rp/cb", VERIFIER, 1_010)
            .unwrap();
        assert_eq!(grant.login.sid, "s1");
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: grant.login,
                expires_at: 9_000,
            },
            1_010,
        );
        assert_eq!(
            store
                .redeem_code("c1", "spa", "http://rp/cb", VERIFIER, 1_011)
                .unwrap_err(),
            GrantError::Replayed
        );
        // The refresh token issued from the replayed code is gone.
        assert_eq!(
            store
                .rotate_refresh("r1", "spa", "r2".into(), 1_012)
                .unwrap_err(),
            GrantError::Unknown
        );
    }

    #[test]
    fn code_checks_expiry_client_redirect_and_verifier_and_is_consumed_by_failures() {
        let mut store = Store::default();
        for (code, sid) in [("a", "s1"), ("b", "s2"), ("c", "s3"), ("d", "s4")] {
            store
                .insert_code(code.into(), code_grant(sid, 1_060), 1_000)
                .unwrap();
        }
        let redeem = |store: &mut Store, code, client, uri, verifier, now| {
            store
                .redeem_code(code, client, uri, verifier, now)
                .unwrap_err()
        };
        assert_eq!(
            redeem(&mut store, "a", "spa", "http://rp/cb", VERIFIER, 1_060),
            GrantError::Expired
        );
        assert_eq!(
            redeem(&mut store, "b", "other", "http://rp/cb", VERIFIER, 1_001),
            GrantError::WrongClient
        );
        assert_eq!(
            redeem(&mut store, "c", "spa", "http://rp/x", VERIFIER, 1_001),
            GrantError::WrongRedirectUri
        );
        let mut wrong = VERIFIER.to_owned();
        wrong.replace_range(0..1, "e");
        assert_eq!(
            redeem(&mut store, "d", "spa", "http://rp/cb", &wrong, 1_001),
            GrantError::PkceMismatch
        );
        // A failed attempt consumed the code: the right verifier is now a replay.
        assert_eq!(
            redeem(&mut store, "d", "spa", "http://rp/cb", VERIFIER, 1_002),
            GrantError::Replayed
        );
        assert_eq!(
            redeem(&mut store, "zz", "spa", "http://rp/cb", VERIFIER, 1_002),
            GrantError::Unknown
        );
    }

    #[test]
    fn refresh_rotates_and_reuse_of_the_old_token_revokes_the_family() {
        let mut store = Store::default();
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: login("s1"),
                expires_at: 5_000,
            },
            1_000,
        );
        store.insert_refresh(
            "other".into(),
            RefreshGrant {
                login: login("s2"),
                expires_at: 5_000,
            },
            1_000,
        );
        let rotated = store
            .rotate_refresh("r1", "spa", "r2".into(), 1_100)
            .unwrap();
        assert_eq!(rotated, login("s1"));
        // The new token inherits the absolute expiry.
        assert_eq!(store.refresh["r2"].expires_at, 5_000);
        // Reusing r1 fails and kills r2 too; the other login is untouched.
        assert_eq!(
            store
                .rotate_refresh("r1", "spa", "r3".into(), 1_200)
                .unwrap_err(),
            GrantError::Replayed
        );
        assert_eq!(
            store
                .rotate_refresh("r2", "spa", "r4".into(), 1_200)
                .unwrap_err(),
            GrantError::Unknown
        );
        assert!(
            store
                .rotate_refresh("other", "spa", "o2".into(), 1_200)
                .is_ok()
        );
    }

    #[test]
    fn refresh_rejects_other_clients_and_expired_tokens() {
        let mut store = Store::default();
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: login("s1"),
                expires_at: 5_000,
            },
            1_000,
        );
        assert_eq!(
            store
                .rotate_refresh("r1", "evil", "x".into(), 1_100)
                .unwrap_err(),
            GrantError::WrongClient
        );
        // Not consumed by the wrong client.
        assert_eq!(
            store
                .rotate_refresh("r1", "spa", "r2".into(), 5_000)
                .unwrap_err(),
            GrantError::Expired
        );
    }

    #[test]
    fn revocation_and_end_session_kill_the_family() {
        let mut store = Store::default();
        store.insert_refresh(
            "r1".into(),
            RefreshGrant {
                login: login("s1"),
                expires_at: 5_000,
            },
            1_000,
        );
        store
            .rotate_refresh("r1", "spa", "r2".into(), 1_001)
            .unwrap();
        store.revoke("unknown", "spa");
        store.revoke("r1", "spa"); // revoking the rotated token revokes its successor too
        assert!(store.refresh.is_empty());

        store.insert_refresh(
            "r5".into(),
            RefreshGrant {
                login: login("s5"),
                expires_at: 5_000,
            },
            1_000,
        );
        store
            .insert_code("c5".into(), code_grant("s5", 1_060), 1_000)
            .unwrap();
        store.revoke_family("s5");
        assert!(store.refresh.is_empty() && store.codes.is_empty());
    }

    #[test]
    fn maps_stay_bounded() {
        let mut store = Store::default();
        for i in 0..MAX_CODES {
            store
                .insert_code(format!("c{i}"), code_grant("s", 1_060), 1_000)
                .unwrap();
        }
        assert_eq!(
            store.insert_code("one-more".into(), code_grant("s", 1_060), 1_000),
            Err(StoreFull)
        );
        // Once they expire there is room again.
        assert!(
            store
                .insert_code("later".into(), code_grant("s", 2_000), 1_060)
                .is_ok()
        );
        assert_eq!(store.codes.len(), 1);

        for i in 0..MAX_REFRESH_TOKENS + 5 {
            let expires_at = 5_000 + u64::try_from(i).unwrap();
            store.insert_refresh(
                format!("r{i}"),
                RefreshGrant {
                    login: login("s"),
                    expires_at,
                },
                1_000,
            );
        }
        assert_eq!(store.refresh.len(), MAX_REFRESH_TOKENS);
        assert!(
            !store.refresh.contains_key("r0"),
            "the soonest-expiring entry is evicted"
        );
    }
}
