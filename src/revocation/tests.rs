use super::entry::Malformed;
use super::*;
use crate::session::SessionId;
use crate::token::Token;

const ISS: &str = "https://idp.example";

/// A session stamped `stamp` (unix ms), issued in that second.
fn session(id: u8, sub: &str, sid: Option<&str>, stamp: i64) -> Session {
    let issued_at = stamp.div_euclid(1000);
    Session {
        id: SessionId::from_bytes([id; 16]),
        provider: String::new(),
        sub: sub.into(),
        sid: sid.map(Into::into),
        issued_at,
        stamp,
        granted_at: issued_at,
        last_seen: issued_at,
        idle_expires_at: issued_at + 1200,
        absolute_expires_at: issued_at + 28_800,
        access_token: Token::from_issued("at"),
        access_expires_at: None,
        refresh_token: None,
        id_token: None,
        dpop: None,
    }
}

fn sid(sid: &str, not_before: i64) -> Revocation {
    Revocation::Sid {
        iss: ISS.into(),
        sid: sid.into(),
        not_before,
        until: not_before_second(not_before) + 28_800,
    }
}

fn sub(sub: &str, not_before: i64) -> Revocation {
    Revocation::Sub {
        iss: ISS.into(),
        sub: sub.into(),
        not_before,
        until: not_before_second(not_before) + 28_800,
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
fn sid_and_sub_entries_refuse_sessions_stamped_until_not_before_and_allow_later_logins() {
    let d = Denylist::new(10, 28_800);
    let old = session(1, "alice", Some("idp-s1"), 100);
    let same_second = session(2, "alice", Some("idp-s1"), 200);
    let later = session(3, "alice", Some("idp-s1"), 201);
    let other_sid = session(4, "bob", Some("idp-s2"), 100);
    d.apply(sid("idp-s1", 200), 200).unwrap();
    assert!(d.is_revoked(&old, ISS));
    assert!(
        d.is_revoked(&same_second, ISS),
        "ties (same millisecond) are refused"
    );
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
    let d = Denylist::new(2, 28_800).with_clock_skew(0);
    d.apply(sub("a", 100_000), 100).unwrap();
    d.apply(sub("b", 100_000), 100).unwrap();
    let victim = session(9, "carol", None, 150_000);
    let recorded = d
        .apply(
            Revocation::Session {
                id: [9; 16],
                until: victim.absolute_expires_at,
            },
            200,
        )
        .unwrap();
    // Recorded during second 200 (the denylist is told seconds): its last millisecond.
    assert_eq!(
        recorded,
        Revocation::Global {
            not_before: 200_999,
            until: 201 + 28_800
        }
    );
    assert_eq!(d.overflows(), 1);
    assert!(d.is_revoked(&victim, ISS), "the revocation still holds");
    assert!(
        d.is_revoked(&session(8, "dave", None, 200_999), ISS),
        "so does every older session"
    );
    assert!(
        !d.is_revoked(&session(7, "erin", None, 201_000), ISS),
        "new logins work"
    );
    assert_eq!(
        d.stamp(ISS, "erin", None, 200_500),
        201_000,
        "a login in that second is stamped past it"
    );
    // Widening an existing key is not a new entry.
    assert_eq!(d.apply(sub("a", 300_000), 300).unwrap(), sub("a", 300_000));
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
    // Full: the next decision is a global not-before, inserted as such; it is at or after what
    // the refused entry would have caught.
    let decided = d.decide(sub("bob", 201_500), 200).unwrap();
    assert!(matches!(
        decided,
        Revocation::Global {
            not_before: 201_999,
            ..
        }
    ));
    d.insert(decided, 200).unwrap();
    assert!(d.is_revoked(&session(2, "bob", None, 201_500), ISS));
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

// Class 10 of issue 12: the order of revocations and logins, at the millisecond boundary.

const T: i64 = 1_800_000_000_000; // unix ms
const T_SECS: i64 = T / 1000;

#[test]
fn a_login_right_after_a_revocation_is_stamped_past_it_and_earlier_sessions_are_caught() {
    for skew in [0, 1000] {
        let d = Denylist::new(10, 28_800).with_clock_skew(skew);
        let n = d.not_before(T);
        assert_eq!(n, T + skew, "now plus the skew");
        d.apply(sub("alice", n), T_SECS).unwrap();
        d.apply(sid("idp-s1", n), T_SECS).unwrap();
        for before in [T - 1, T, n] {
            assert!(
                d.is_revoked(&session(1, "alice", None, before), ISS),
                "{before}"
            );
            assert!(d.is_revoked(&session(2, "bob", Some("idp-s1"), before), ISS));
        }
        // A re-login 1 ms (or 50 ms) later on this instance: never caught.
        for after in [T + 1, T + 50] {
            let stamp = d.stamp(ISS, "alice", None, after);
            assert_eq!(stamp, (n + 1).max(after));
            assert!(!d.is_revoked(&session(3, "alice", None, stamp), ISS));
            // Even with the IdP session id that was logged out (an IdP that reuses sids).
            let stamp = d.stamp(ISS, "bob", Some("idp-s1"), after);
            assert!(!d.is_revoked(&session(4, "bob", Some("idp-s1"), stamp), ISS));
        }
        // Users the entries do not match keep the plain clock.
        assert_eq!(d.stamp(ISS, "carol", Some("idp-s9"), T + 1), T + 1);
        assert_eq!(
            d.stamp("https://other.example", "alice", None, T + 1),
            T + 1
        );
    }
}

#[test]
fn a_new_not_before_is_after_every_stamp_given_and_every_not_before_known() {
    let d = Denylist::new(10, 28_800).with_clock_skew(0);
    // A sub-wide logout, a re-login with a new IdP session, and a logout of that IdP session,
    // all within one millisecond: the second logout still catches the re-login.
    let n1 = d.not_before(T);
    d.apply(sub("alice", n1), T_SECS).unwrap();
    let relogin = d.stamp(ISS, "alice", Some("idp-s2"), T);
    assert_eq!(relogin, n1 + 1);
    let s = session(1, "alice", Some("idp-s2"), relogin);
    assert!(!d.is_revoked(&s, ISS));
    let n2 = d.not_before(T);
    assert!(n2 > n1, "two revocations in one millisecond are ordered");
    d.apply(sid("idp-s2", n2), T_SECS).unwrap();
    assert!(d.is_revoked(&s, ISS));
    // A clock stepped back does not undo the order either.
    assert!(d.not_before(T - 5_000) > n2);
}

#[test]
fn instances_whose_clocks_disagree_within_the_skew_keep_the_order() {
    const SKEW: i64 = 1000;
    let a = Denylist::new(10, 28_800).with_clock_skew(SKEW);
    let b = Denylist::new(10, 28_800).with_clock_skew(SKEW);
    // B's clock runs `ahead` ms ahead of A's. A session created on B 1 ms before A records a
    // sub-wide logout (at real time T) is caught as long as B is at most the skew ahead.
    for ahead in [0, 1, SKEW / 2, SKEW] {
        let early = b.stamp(ISS, "alice", None, T - 1 + ahead);
        let n = a.not_before(T);
        let r = sub("alice", n);
        a.apply(r.clone(), T_SECS).unwrap();
        b.apply(r, T_SECS).unwrap();
        let s = session(1, "alice", None, early);
        assert!(
            a.is_revoked(&s, ISS) && b.is_revoked(&s, ISS),
            "ahead {ahead}"
        );
        // Once B has applied it, a login on B 1 ms later is caught by neither.
        let later = b.stamp(ISS, "alice", None, T + 1 + ahead);
        let s = session(2, "alice", None, later);
        assert!(
            !a.is_revoked(&s, ISS) && !b.is_revoked(&s, ISS),
            "ahead {ahead}"
        );
    }
    // The stated limit: a clock further ahead than the skew can stamp an earlier session past
    // the not-before. This is why `[revocation] clock_skew` must cover the real disagreement.
    let c = Denylist::new(10, 28_800).with_clock_skew(SKEW);
    let d = Denylist::new(10, 28_800).with_clock_skew(SKEW);
    let early = d.stamp(ISS, "dave", None, T - 1 + SKEW + 2);
    c.apply(sub("dave", c.not_before(T)), T_SECS).unwrap();
    assert!(!c.is_revoked(&session(3, "dave", None, early), ISS));
}

#[test]
fn a_login_elsewhere_before_the_revocation_arrives_there_is_caught_once() {
    let a = Denylist::new(10, 28_800);
    let b = Denylist::new(10, 28_800);
    let n = a.not_before(T);
    a.apply(sub("alice", n), T_SECS).unwrap();
    // B has not applied it yet (Redis delivers in milliseconds): its login is caught by it, on
    // the safe side; the next login on B, after delivery, is not.
    let unaware = b.stamp(ISS, "alice", None, T + 2);
    b.apply(sub("alice", n), T_SECS).unwrap();
    assert!(b.is_revoked(&session(1, "alice", None, unaware), ISS));
    let aware = b.stamp(ISS, "alice", None, T + 3);
    assert!(!b.is_revoked(&session(2, "alice", None, aware), ISS));
}

#[test]
fn replayed_and_shared_entries_raise_the_next_not_before() {
    let d = Denylist::new(10, 28_800).with_clock_skew(0);
    d.restore([sub("alice", T + 60_000)], T_SECS).unwrap();
    assert_eq!(d.not_before(T), T + 60_001);
    let e = Denylist::new(10, 28_800).with_clock_skew(0);
    e.apply(sid("s", T + 70_000), T_SECS).unwrap();
    assert_eq!(e.not_before(T), T + 70_001);
    let f = Denylist::new(10, 28_800).with_clock_skew(0);
    f.insert(sub("bob", T + 80_000), T_SECS).unwrap();
    assert_eq!(f.not_before(T), T + 80_001);
}

#[test]
fn entries_in_whole_seconds_from_earlier_versions_catch_their_whole_second() {
    let legacy = |kind: u8, not_before_secs: i64, value: &str| {
        let mut out = vec![kind];
        out.extend_from_slice(&(not_before_secs + 28_800).to_le_bytes());
        out.extend_from_slice(&not_before_secs.to_le_bytes());
        if kind != 4 {
            for text in [ISS, value] {
                out.extend_from_slice(&u16::try_from(text.len()).unwrap().to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    };
    let until = T_SECS + 28_800;
    assert_eq!(
        Revocation::decode(&legacy(2, T_SECS, "s1")),
        Ok(Revocation::Sid {
            iss: ISS.into(),
            sid: "s1".into(),
            not_before: T + 999,
            until
        })
    );
    assert_eq!(
        Revocation::decode(&legacy(3, T_SECS, "alice")),
        Ok(Revocation::Sub {
            iss: ISS.into(),
            sub: "alice".into(),
            not_before: T + 999,
            until
        })
    );
    assert_eq!(
        Revocation::decode(&legacy(4, T_SECS, "")),
        Ok(Revocation::Global {
            not_before: T + 999,
            until
        })
    );
    let d = Denylist::new(10, 28_800);
    d.apply(
        Revocation::decode(&legacy(3, T_SECS, "alice")).unwrap(),
        T_SECS,
    )
    .unwrap();
    assert!(d.is_revoked(&session(1, "alice", None, T + 999), ISS));
    assert!(!d.is_revoked(&session(2, "alice", None, T + 1000), ISS));
    // Written back in the current form (kind 6, milliseconds).
    assert_eq!(d.snapshot()[0].encode()[0], 6);
}

#[test]
fn an_entry_lives_until_the_second_its_last_possible_session_ends() {
    assert_eq!(not_before_second(T), T_SECS);
    assert_eq!(not_before_second(T + 1), T_SECS + 1);
    assert_eq!(not_before_second(T + 999), T_SECS + 1);
    assert_eq!(not_before_second(-1), 0);
}
