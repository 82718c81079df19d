use super::*;
use crate::session::SessionId;
use crate::token::Token;

const ISS: &str = "https://idp.example";

fn session(id: u8, sub: &str, sid: Option<&str>, issued_at: i64) -> Session {
    Session {
        id: SessionId::from_bytes([id; 16]),
        provider: 0,
        sub: sub.into(),
        sid: sid.map(Into::into),
        issued_at,
        last_seen: issued_at,
        idle_expires_at: issued_at + 1200,
        absolute_expires_at: issued_at + 28_800,
        access_token: Token::from_issued("at"),
        access_expires_at: None,
        refresh_token: None,
        id_token: None,
    }
}

fn sid(sid: &str, not_before: i64) -> Revocation {
    Revocation::Sid {
        iss: ISS.into(),
        sid: sid.into(),
        not_before,
        until: not_before + 28_800,
    }
}

fn sub(sub: &str, not_before: i64) -> Revocation {
    Revocation::Sub {
        iss: ISS.into(),
        sub: sub.into(),
        not_before,
        until: not_before + 28_800,
    }
}

#[test]
fn session_entries_match_their_session_only() {
    let d = Denylist::new(10, 28_800);
    let a = session(1, "alice", None, 100);
    let b = session(2, "alice", None, 100);
    d.apply(
        Revocation::Session {
            id: [1; 16],
            until: a.absolute_expires_at,
        },
        150,
    )
    .unwrap();
    assert!(d.is_revoked(&a, ISS));
    assert!(!d.is_revoked(&b, ISS));
    assert_eq!(d.len(), 1);
}

#[test]
fn sid_and_sub_entries_refuse_sessions_issued_until_not_before_and_allow_later_logins() {
    let d = Denylist::new(10, 28_800);
    let old = session(1, "alice", Some("idp-s1"), 100);
    let same_second = session(2, "alice", Some("idp-s1"), 200);
    let later = session(3, "alice", Some("idp-s1"), 201);
    let other_sid = session(4, "bob", Some("idp-s2"), 100);
    d.apply(sid("idp-s1", 200), 200).unwrap();
    assert!(d.is_revoked(&old, ISS));
    assert!(d.is_revoked(&same_second, ISS), "ties are refused");
    assert!(!d.is_revoked(&later, ISS), "a new login works");
    assert!(!d.is_revoked(&other_sid, ISS));
    assert!(
        !d.is_revoked(&old, "https://other.example"),
        "keyed by issuer"
    );

    d.apply(sub("bob", 300), 300).unwrap();
    assert!(d.is_revoked(&other_sid, ISS));
    assert!(!d.is_revoked(&session(5, "bob", None, 301), ISS));
    // An older not-before never narrows an entry.
    d.apply(sub("bob", 50), 300).unwrap();
    assert!(d.is_revoked(&other_sid, ISS));
}

#[test]
fn entries_live_until_their_expiry_and_not_a_second_less() {
    let d = Denylist::new(10, 28_800);
    let s = session(1, "alice", None, 100);
    d.apply(
        Revocation::Session {
            id: [1; 16],
            until: 1_000,
        },
        100,
    )
    .unwrap();
    // Sweeps (at most one per PRUNE_EVERY_SECS) keep it until its expiry.
    for now in [200, 500, 999] {
        d.apply(sub("sweep", now), now).unwrap();
        assert!(d.is_revoked(&s, ISS), "at {now}");
    }
    d.apply(sub("sweep2", 1_100), 1_100).unwrap();
    assert!(
        !d.snapshot()
            .iter()
            .any(|r| matches!(r, Revocation::Session { id, .. } if *id == [1; 16]))
    );
}

#[test]
fn a_full_denylist_records_a_global_not_before_instead_of_dropping() {
    let d = Denylist::new(2, 28_800);
    d.apply(sub("a", 100), 100).unwrap();
    d.apply(sub("b", 100), 100).unwrap();
    let victim = session(9, "carol", None, 150);
    let recorded = d
        .apply(
            Revocation::Session {
                id: [9; 16],
                until: victim.absolute_expires_at,
            },
            200,
        )
        .unwrap();
    assert_eq!(
        recorded,
        Revocation::Global {
            not_before: 200,
            until: 200 + 28_800
        }
    );
    assert_eq!(d.overflows(), 1);
    assert!(d.is_revoked(&victim, ISS), "the revocation still holds");
    assert!(
        d.is_revoked(&session(8, "dave", None, 199), ISS),
        "so does every older session"
    );
    assert!(
        !d.is_revoked(&session(7, "erin", None, 201), ISS),
        "new logins work"
    );
    // Widening an existing key is not a new entry.
    assert_eq!(d.apply(sub("a", 300), 300).unwrap(), sub("a", 300));
    assert_eq!(d.overflows(), 1);
}

#[test]
fn encodings_round_trip_and_reject_junk() {
    let all = [
        Revocation::Session {
            id: [7; 16],
            until: 42,
        },
        sid("s", 1),
        sub("ü", -5),
        Revocation::Global {
            not_before: 3,
            until: 4,
        },
    ];
    for r in all {
        let bytes = r.encode();
        assert_eq!(Revocation::decode(&bytes), Ok(r.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(
                Revocation::decode(&bytes[..cut]),
                Err(Malformed),
                "{r:?} cut {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Revocation::decode(&longer), Err(Malformed));
    }
    assert_eq!(
        Revocation::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(Malformed)
    );
}

#[test]
fn debug_never_shows_a_session_id() {
    let r = Revocation::Session {
        id: [0xab; 16],
        until: 1,
    };
    let text = format!("{r:?}");
    assert!(
        !text.contains("171") && !text.to_lowercase().contains("ab, "),
        "{text}"
    );
}

#[test]
fn over_long_or_empty_texts_are_refused() {
    let d = Denylist::new(10, 28_800);
    assert!(d.apply(sub(&"x".repeat(MAX_TEXT + 1), 1), 1).is_err());
    assert!(d.apply(sub("", 1), 1).is_err());
    assert!(d.is_empty());
}

#[test]
fn decide_records_nothing_and_insert_records_the_decision() {
    let d = Denylist::new(1, 28_800);
    let s = session(1, "alice", None, 100);
    let r = Revocation::Session {
        id: [1; 16],
        until: s.absolute_expires_at,
    };
    assert_eq!(d.decide(r.clone(), 150).unwrap(), r);
    assert!(!d.is_revoked(&s, ISS), "decide alone changes nothing");
    d.insert(r, 150).unwrap();
    assert!(d.is_revoked(&s, ISS));
    // Full: the next decision is a global not-before, inserted as such.
    let decided = d.decide(sub("bob", 200), 200).unwrap();
    assert!(matches!(
        decided,
        Revocation::Global {
            not_before: 200,
            ..
        }
    ));
    d.insert(decided, 200).unwrap();
    assert!(d.is_revoked(&session(2, "bob", None, 199), ISS));
}

#[test]
fn restore_keeps_every_replayed_entry_beyond_capacity_and_skips_expired_ones() {
    let d = Denylist::new(2, 28_800);
    let replayed = (1..=5u8).map(|n| Revocation::Session {
        id: [n; 16],
        until: if n == 5 { 100 } else { 1_000 },
    });
    d.restore(replayed, 100).unwrap();
    assert_eq!(
        d.len(),
        4,
        "never dropped for capacity; the expired one skipped"
    );
    for n in 1..=4 {
        assert!(d.is_revoked(&session(n, "x", None, 50), ISS));
    }
    assert!(!d.is_revoked(&session(5, "x", None, 50), ISS));
}
