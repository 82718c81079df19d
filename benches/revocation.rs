//! Revocation benchmarks with 1,000,000 entries (80 % session ids, 15 % `iss`+`sid`, 5 %
//! `iss`+`sub`):
//! - the check every authenticated request makes, `Denylist::is_revoked`, for a session that is
//!   not revoked (it has a `sid`, so every map is consulted) and for revoked ones, against a
//!   plain `HashMap<[u8; 16], i64>::contains_key` over 1,000,000 keys measured in the same run;
//! - heap bytes per entry, counted by an instrumented global allocator, and the growth of the
//!   resident set;
//! - replaying a 1,000,000-entry journal from a file (`Journal::open`, then `Denylist::restore`
//!   as start-up does).
//!
//! Run: `cargo bench --bench revocation`. The report at the end prints the numbers and the
//! ratio to the baseline (target: `is_revoked` ≤ 100 ns). Nothing here asserts a timing.
//! Probes cycle through 4,096 different sessions so that lookups are not all served from one
//! warm cache line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::alloc::System;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use sealgate::internal::Token;
use sealgate::internal::{Denylist, Journal, Revocation, journal};
use sealgate::internal::{Session, SessionId};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NOW: i64 = 1_800_000_000;
const ENTRIES: u32 = 1_000_000;
const PROBES: u32 = 4_096;
const ISS: &str = "https://idp.example.com/realms/acme";

/// A deterministic 16-byte id for `n` and a `salt` (a session id's randomness is not needed
/// here, only its spread).
fn id(n: u32, salt: u8) -> [u8; 16] {
    let mut x = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(salt) << 56;
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 29;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}

/// An IdP session id or subject as IdPs write them (a UUID's text).
fn uuid_text(n: u32, salt: u8) -> String {
    let b = id(n, salt);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Entry `n` of the realistic mix: 80 % sessions, 15 % sid, 5 % sub.
fn entry(n: u32) -> Revocation {
    let until = NOW + 28_800;
    match n % 20 {
        0..=15 => Revocation::Session {
            id: id(n, 1),
            until,
        },
        16..=18 => Revocation::Sid {
            iss: ISS.into(),
            sid: uuid_text(n, 2),
            not_before: NOW * 1000,
            until,
        },
        _ => Revocation::Sub {
            iss: ISS.into(),
            sub: uuid_text(n, 3),
            not_before: NOW * 1000,
            until,
        },
    }
}

fn session(id: [u8; 16], sub: String, sid: Option<String>) -> Session {
    Session {
        id: SessionId::from_bytes(id),
        provider: String::new(),
        sub,
        sid,
        issued_at: NOW - 60,
        stamp: (NOW - 60) * 1000,
        granted_at: NOW - 60,
        last_seen: NOW - 10,
        idle_expires_at: NOW + 1200,
        absolute_expires_at: NOW + 28_000,
        access_token: Token::from_issued("at"),
        access_expires_at: None,
        refresh_token: None,
        id_token: None,
        dpop: None,
    }
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn heap_bytes(region: &Region<'_, System>) -> f64 {
    let c = region.change();
    c.bytes_allocated as f64 - c.bytes_deallocated as f64
}

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/criterion")
}

/// The median of criterion's samples: on a shared, loaded machine the mean is dragged up by
/// preempted samples, and the report is about the lookup, not the scheduler.
fn median_ns(group: &str, id: &str) -> f64 {
    let path = out_dir().join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["median"]["point_estimate"].as_f64().unwrap()
}

fn main() {
    // Memory: the denylist with the mix, built as a replay builds it.
    let rss_before = resident_bytes();
    let region = Region::new(GLOBAL);
    let denylist = Denylist::new(2_000_000, 28_800);
    denylist.restore((0..ENTRIES).map(entry), NOW).unwrap();
    let denylist_heap = heap_bytes(&region);
    let denylist_rss = resident_bytes().saturating_sub(rss_before);
    assert_eq!(denylist.len(), ENTRIES as usize);

    let region = Region::new(GLOBAL);
    let sessions_only = Denylist::new(2_000_000, 28_800);
    sessions_only
        .restore(
            (0..ENTRIES).map(|n| Revocation::Session {
                id: id(n, 1),
                until: NOW + 28_800,
            }),
            NOW,
        )
        .unwrap();
    let sessions_heap = heap_bytes(&region);
    drop(sessions_only);

    let region = Region::new(GLOBAL);
    let baseline: HashMap<[u8; 16], i64> = (0..ENTRIES).map(|n| (id(n, 1), NOW)).collect();
    let baseline_heap = heap_bytes(&region);

    // Probes: sessions with a sid and a sub, none revoked; revoked by id; revoked by sub.
    let fresh: Vec<Session> = (0..PROBES)
        .map(|n| session(id(n, 9), uuid_text(n, 10), Some(uuid_text(n, 11))))
        .collect();
    let no_sid: Vec<Session> = (0..PROBES)
        .map(|n| session(id(n, 9), uuid_text(n, 10), None))
        .collect();
    let by_id: Vec<Session> = (0..PROBES)
        .map(|n| session(id(n * 20, 1), uuid_text(n, 10), Some(uuid_text(n, 11))))
        .collect();
    let by_sub: Vec<Session> = (0..PROBES)
        .map(|n| session(id(n, 9), uuid_text(n * 20 + 19, 3), None))
        .collect();
    let hits: Vec<[u8; 16]> = (0..PROBES).map(|n| id(n * 20, 1)).collect();
    let misses: Vec<[u8; 16]> = (0..PROBES).map(|n| id(n, 9)).collect();
    assert!(fresh.iter().all(|s| !denylist.is_revoked(s, ISS)));
    assert!(no_sid.iter().all(|s| !denylist.is_revoked(s, ISS)));
    assert!(by_id.iter().all(|s| denylist.is_revoked(s, ISS)));
    assert!(by_sub.iter().all(|s| denylist.is_revoked(s, ISS)));

    let mut c = Criterion::default()
        .output_directory(&out_dir())
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("revocation");
        let mut i = 0;
        let mut next = move || {
            i = (i + 1) % PROBES as usize;
            i
        };
        g.bench_function("is_revoked_not_revoked", |b| {
            b.iter(|| denylist.is_revoked(black_box(&fresh[next()]), ISS));
        });
        g.bench_function("is_revoked_not_revoked_no_sid", |b| {
            b.iter(|| denylist.is_revoked(black_box(&no_sid[next()]), ISS));
        });
        g.bench_function("is_revoked_by_session_id", |b| {
            b.iter(|| denylist.is_revoked(black_box(&by_id[next()]), ISS));
        });
        g.bench_function("is_revoked_by_sub", |b| {
            b.iter(|| denylist.is_revoked(black_box(&by_sub[next()]), ISS));
        });
        g.bench_function("baseline_hashmap_miss", |b| {
            b.iter(|| baseline.contains_key(black_box(&misses[next()])));
        });
        g.bench_function("baseline_hashmap_hit", |b| {
            b.iter(|| baseline.contains_key(black_box(&hits[next()])));
        });
        g.finish();
    }
    c.final_summary();
    drop(baseline);

    // Replay: a 1,000,000-entry journal file, opened and restored as start-up does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let entries: Vec<Revocation> = (0..ENTRIES).map(entry).collect();
    let bytes = journal::to_bytes(&entries);
    drop(entries);
    std::fs::write(&path, &bytes).unwrap();
    let file_len = bytes.len();
    drop(bytes);
    let mut replays = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (j, replay) = Journal::open(&path, NOW).unwrap();
        let opened = started.elapsed();
        let restored = Denylist::new(2_000_000, 28_800);
        restored.restore(replay.entries, NOW).unwrap();
        let total = started.elapsed();
        assert_eq!(restored.len(), ENTRIES as usize);
        replays.push((opened, total));
        drop((j, restored));
    }

    let n = f64::from(ENTRIES);
    let miss = median_ns("revocation", "baseline_hashmap_miss");
    let hit = median_ns("revocation", "baseline_hashmap_hit");
    let report = |label: &str, id: &str, base: f64, base_label: &str| {
        let t = median_ns("revocation", id);
        println!(
            "{label:<38} {t:7.1} ns   {base_label} {base:6.1} ns   ratio {:.2}x   (target <= 100 ns: {})",
            t / base,
            if t <= 100.0 { "met" } else { "missed" }
        );
    };
    println!(
        "\n== sealgate revocation report (1,000,000 entries: 80% session, 15% sid, 5% sub) =="
    );
    report(
        "is_revoked, not revoked (has a sid)",
        "is_revoked_not_revoked",
        miss,
        "HashMap miss",
    );
    report(
        "is_revoked, not revoked (no sid)",
        "is_revoked_not_revoked_no_sid",
        miss,
        "HashMap miss",
    );
    report(
        "is_revoked, revoked by session id",
        "is_revoked_by_session_id",
        hit,
        "HashMap hit ",
    );
    report(
        "is_revoked, revoked by iss+sub",
        "is_revoked_by_sub",
        miss,
        "HashMap miss",
    );
    println!(
        "memory: mix {:.1} B/entry on the heap (resident set +{:.1} B/entry); sessions only {:.1} B/entry; baseline HashMap<[u8;16], i64> {:.1} B/entry",
        denylist_heap / n,
        denylist_rss as f64 / n,
        sessions_heap / n,
        baseline_heap / n,
    );
    for (k, (opened, total)) in replays.iter().enumerate() {
        println!(
            "replay {}: {file_len} B journal, Journal::open {:.0} ms, + Denylist::restore = {:.0} ms",
            k + 1,
            opened.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3,
        );
    }
    println!(
        "(the counting allocator adds a few atomic operations to every allocation, so the replay \
         times include that; is_revoked allocates nothing)"
    );
}
