use std::sync::Arc;

use super::*;

const NOW: i64 = 1_000_000;
const ISS: &str = "https://idp.example";

/// One entry of each kind, all alive at [`NOW`].
fn kinds() -> Vec<Revocation> {
    vec![
        Revocation::Session {
            id: [7; 16],
            until: NOW + 100,
        },
        Revocation::Sid {
            iss: ISS.into(),
            sid: "idp-session-1".into(),
            not_before: NOW - 5,
            until: NOW + 28_800,
        },
        Revocation::Sub {
            iss: ISS.into(),
            sub: "ü-subject".into(),
            not_before: NOW,
            until: NOW + 28_800,
        },
        Revocation::Global {
            not_before: NOW,
            until: NOW + 1,
        },
    ]
}

fn session(n: u32, until: i64) -> Revocation {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_le_bytes());
    Revocation::Session { id, until }
}

/// Offsets where each record starts, and the end of the file.
fn boundaries(entries: &[Revocation]) -> Vec<usize> {
    let mut at = vec![HEADER_LEN];
    for r in entries {
        at.push(at[at.len() - 1] + RECORD_HEAD_LEN + r.encode().len());
    }
    at
}

fn corrupt_at(result: Result<Replay, JournalError>) -> u64 {
    match result {
        Err(JournalError::Corrupt { offset, .. }) => offset,
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_journal_of_every_entry_kind_round_trips() {
    let entries = kinds();
    let bytes = to_bytes(&entries);
    assert_eq!(&bytes[..8], b"SGREVJNL");
    let replay = replay(&bytes, NOW).unwrap();
    assert_eq!(
        replay,
        Replay {
            entries,
            records: 4,
            valid_len: bytes.len(),
            torn: false,
        }
    );
}

#[test]
fn every_truncation_replays_the_records_before_it() {
    let entries = kinds();
    let bytes = to_bytes(&entries);
    let ends = boundaries(&entries);
    for cut in 0..=bytes.len() {
        let replay = replay(&bytes[..cut], NOW).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let whole = ends
            .iter()
            .filter(|&&end| end <= cut)
            .count()
            .saturating_sub(1);
        assert_eq!(replay.entries, entries[..whole], "cut {cut}");
        let boundary = if cut < HEADER_LEN { 0 } else { ends[whole] };
        assert_eq!(replay.valid_len, boundary, "cut {cut}");
        assert_eq!(replay.torn, cut != boundary, "cut {cut}");
    }
}

#[test]
fn every_truncated_file_opens_with_the_earlier_records_and_takes_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let entries = kinds();
    let bytes = to_bytes(&entries);
    let ends = boundaries(&entries);
    let extra = session(99, NOW + 50);
    for cut in 0..=bytes.len() {
        let path = dir.path().join(format!("cut-{cut}.journal"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let (journal, replay) = Journal::open(&path, NOW).unwrap();
        let whole = ends
            .iter()
            .filter(|&&end| end <= cut)
            .count()
            .saturating_sub(1);
        assert_eq!(replay.entries, entries[..whole], "cut {cut}");
        // The torn tail is gone from the file, so an append lands on a record boundary.
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            ends[whole] as u64,
            "cut {cut}"
        );
        journal.append(&extra).unwrap();
        drop(journal);
        let (_, again) = Journal::open(&path, NOW).unwrap();
        let mut expected = entries[..whole].to_vec();
        expected.push(extra.clone());
        assert_eq!(again.entries, expected, "cut {cut}");
        assert!(!again.torn, "cut {cut}");
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
    let entries = kinds();
    let bytes = to_bytes(&entries);
    let ends = boundaries(&entries);
    let last = ends[entries.len() - 1];
    for at in last..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut damaged = bytes.clone();
            damaged[at] ^= bit;
            let replay = replay(&damaged, NOW).unwrap_or_else(|e| panic!("byte {at}: {e}"));
            assert!(replay.torn, "byte {at}");
            assert_eq!(replay.entries, entries[..entries.len() - 1], "byte {at}");
            assert_eq!(replay.valid_len, last);
        }
    }
}

#[test]
fn a_flipped_byte_in_an_earlier_record_is_corruption_at_that_record() {
    let entries = kinds();
    let bytes = to_bytes(&entries);
    let ends = boundaries(&entries);
    for record in 0..entries.len() - 1 {
        for at in ends[record]..ends[record + 1] {
            for bit in [0x01, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bit;
                assert_eq!(
                    corrupt_at(replay(&damaged, NOW)),
                    ends[record] as u64,
                    "byte {at} of record {record}"
                );
            }
        }
    }
}

#[test]
fn a_corrupt_file_refuses_to_open_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let entries = kinds();
    let mut bytes = to_bytes(&entries);
    bytes[HEADER_LEN + 10] ^= 0xff;
    let path = dir.path().join("revocations.journal");
    std::fs::write(&path, &bytes).unwrap();
    let err = Journal::open(&path, NOW).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "corrupt at byte {HEADER_LEN}: record checksum mismatch"
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was changed");
}

#[test]
fn a_garbage_header_or_another_version_is_corruption() {
    assert_eq!(corrupt_at(replay(b"not a journal at all", NOW)), 0);
    assert_eq!(corrupt_at(replay(b"garbage", NOW)), 0);
    let mut other_version = to_bytes(&kinds());
    other_version[8] = 2;
    assert_eq!(corrupt_at(replay(&other_version, NOW)), 8);
    // A prefix of the header is a file torn while being created: no record can be lost.
    for cut in 0..HEADER_LEN {
        let replay = replay(&header()[..cut], NOW).unwrap();
        assert!(replay.entries.is_empty() && replay.valid_len == 0);
        assert_eq!(replay.torn, cut > 0);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    std::fs::write(&path, b"{\"hello\": \"world\"}\n").unwrap();
    assert!(matches!(
        Journal::open(&path, NOW),
        Err(JournalError::Corrupt { offset: 0, .. })
    ));
}

#[test]
fn an_intact_record_that_does_not_decode_is_corruption_even_last() {
    let mut bytes = to_bytes(&kinds());
    let at = bytes.len();
    let body = [9u8, 0, 0, 0, 0, 0, 0, 0, 0]; // unknown kind 9
    let len = u32::try_from(body.len()).unwrap().to_le_bytes();
    bytes.extend_from_slice(&len);
    bytes.extend_from_slice(&checksum(len, &body).to_le_bytes());
    bytes.extend_from_slice(&body);
    assert_eq!(corrupt_at(replay(&bytes, NOW)), at as u64);
}

#[test]
fn zeros_after_the_last_record_are_a_torn_tail_but_not_more_than_a_record_of_them() {
    let entries = kinds();
    let mut bytes = to_bytes(&entries);
    let end = bytes.len();
    bytes.resize(end + 37, 0);
    let replay_ok = replay(&bytes, NOW).unwrap();
    assert!(replay_ok.torn);
    assert_eq!(replay_ok.entries, entries);
    assert_eq!(replay_ok.valid_len, end);
    bytes.resize(end + MAX_TORN_TAIL + 1, 0);
    assert_eq!(corrupt_at(replay(&bytes, NOW)), end as u64);
}

#[test]
fn a_partial_length_then_zeros_is_a_torn_tail() {
    // A crash that persisted only the first byte of the last record's length, and zeros after.
    let entries = kinds();
    let bytes = to_bytes(&entries);
    let ends = boundaries(&entries);
    let last = ends[entries.len() - 1];
    let mut torn = bytes[..=last].to_vec();
    torn.resize(bytes.len(), 0);
    let replay = replay(&torn, NOW).unwrap();
    assert!(replay.torn);
    assert_eq!(replay.entries, entries[..entries.len() - 1]);
}

#[test]
fn expired_entries_are_counted_but_not_replayed() {
    let entries = vec![
        session(1, NOW - 1),
        session(2, NOW),
        session(3, NOW + 1),
        Revocation::Global {
            not_before: 1,
            until: NOW,
        },
    ];
    let replay = replay(&to_bytes(&entries), NOW).unwrap();
    assert_eq!(replay.entries, vec![session(3, NOW + 1)]);
    assert_eq!(replay.records, 4);
}

#[test]
fn record_persists_exactly_what_memory_holds_including_a_capacity_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let denylist = Denylist::new(2, 28_800);
    let (journal, _) = Journal::open(&path, NOW).unwrap();
    for n in 1..=3 {
        journal
            .record(&denylist, session(n, NOW + 600), NOW)
            .unwrap();
    }
    // Already expired: matches nothing, so neither memory nor the file changes.
    journal.record(&denylist, session(4, NOW - 1), NOW).unwrap();
    // Recorded during second NOW: its last millisecond, plus the default clock skew.
    let global = Revocation::Global {
        not_before: NOW * 1000 + 999 + 1000,
        until: NOW + 2 + 28_800,
    };
    assert_eq!(journal.records(), 3);
    drop(journal);
    let (_, replay) = Journal::open(&path, NOW).unwrap();
    assert_eq!(
        replay.entries,
        vec![session(1, NOW + 600), session(2, NOW + 600), global]
    );
    let mut in_memory = denylist.snapshot();
    let mut in_file = replay.entries;
    let key = |r: &Revocation| r.encode();
    in_memory.sort_by_key(key);
    in_file.sort_by_key(key);
    assert_eq!(in_memory, in_file);
}

#[test]
fn a_refused_entry_is_neither_written_nor_inserted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let denylist = Denylist::new(10, 28_800);
    let (journal, _) = Journal::open(&path, NOW).unwrap();
    let empty_sub = Revocation::Sub {
        iss: ISS.into(),
        sub: String::new(),
        not_before: NOW,
        until: NOW + 10,
    };
    assert!(journal.record(&denylist, empty_sub, NOW).is_err());
    assert_eq!(journal.records(), 0);
    assert!(denylist.is_empty());
}

#[test]
fn compaction_keeps_exactly_the_live_entries_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let denylist = Denylist::new(1_000_000, 28_800);
    let (journal, _) = Journal::open(&path, NOW).unwrap();
    let short = 1_500;
    for n in 0..short {
        journal
            .record(&denylist, session(n, NOW + 10), NOW)
            .unwrap();
    }
    let mut live = kinds();
    live[0] = session(u32::MAX, NOW + 10_000);
    live[3] = Revocation::Global {
        not_before: NOW,
        until: NOW + 10_000,
    };
    for r in &live {
        journal.record(&denylist, r.clone(), NOW).unwrap();
    }
    assert_eq!(journal.records(), 1_504, "no compaction while entries live");
    // Later, the short-lived entries have expired: the next record compacts the file.
    let later = NOW + 100;
    let newest = session(u32::MAX - 1, later + 10_000);
    journal.record(&denylist, newest.clone(), later).unwrap();
    live.push(newest);
    assert_eq!(journal.records(), live.len());
    assert!(!sibling(&path, ".compact").exists());
    // Records appended after the compaction land in the new file.
    let after = session(u32::MAX - 2, later + 10_000);
    journal.record(&denylist, after.clone(), later).unwrap();
    live.push(after);
    drop(journal);

    let (_, replay) = Journal::open(&path, later).unwrap();
    let key = |r: &Revocation| r.encode();
    let mut replayed = replay.entries;
    replayed.sort_by_key(key);
    live.sort_by_key(key);
    assert_eq!(replayed, live);
    assert_eq!(replay.records, live.len());
}

#[test]
fn opening_compacts_a_file_of_mostly_expired_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let mut entries: Vec<Revocation> = (0..3_000).map(|n| session(n, NOW - 1)).collect();
    entries.push(session(5_000, NOW + 1));
    std::fs::write(&path, to_bytes(&entries)).unwrap();
    let (journal, replay) = Journal::open(&path, NOW).unwrap();
    assert_eq!(replay.entries, vec![session(5_000, NOW + 1)]);
    assert_eq!(journal.records(), 1);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        to_bytes(&[session(5_000, NOW + 1)])
    );
}

#[test]
fn compaction_never_loses_an_entry_recorded_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let denylist = Arc::new(Denylist::new(1_000_000, 28_800));
    let journal = Arc::new(Journal::open(&path, NOW).unwrap().0);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor = {
        let (journal, denylist, done) = (journal.clone(), denylist.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                journal.compact(&denylist, NOW).unwrap();
                n += 1;
            }
            n
        })
    };
    let writers: Vec<_> = (0..4u32)
        .map(|t| {
            let (journal, denylist) = (journal.clone(), denylist.clone());
            std::thread::spawn(move || {
                for n in 0..150 {
                    journal
                        .record(&denylist, session(t * 1_000 + n, NOW + 60), NOW)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(compactor.join().unwrap() > 0);
    drop(journal);
    let (_, replay) = Journal::open(&path, NOW).unwrap();
    let mut replayed: Vec<Vec<u8>> = replay.entries.iter().map(Revocation::encode).collect();
    replayed.sort();
    replayed.dedup();
    assert_eq!(replayed.len(), 600, "an entry was lost to a compaction");
}

#[test]
fn a_second_process_cannot_open_the_same_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let (journal, _) = Journal::open(&path, NOW).unwrap();
    assert!(matches!(
        Journal::open(&path, NOW),
        Err(JournalError::InUse { .. })
    ));
    drop(journal);
    assert!(
        Journal::open(&path, NOW).is_ok(),
        "the lock dies with its holder"
    );
}

#[cfg(unix)]
#[test]
fn the_journal_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.journal");
    let (journal, _) = Journal::open(&path, NOW).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), header());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    // A compacted file is a new file: it must be created 0600 as well.
    journal.compact(&Denylist::new(10, 28_800), NOW).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_missing_directory_is_an_error_naming_the_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/revocations.journal");
    let err = Journal::open(&path, NOW).unwrap_err();
    assert!(matches!(err, JournalError::Io { .. }), "{err}");
}
