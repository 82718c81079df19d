//! The revocation journal: an append-only file that makes revocations survive a restart of a
//! single instance.
//!
//! Every revocation is appended and `fsync`ed before the logout that caused it is reported done;
//! at start the file is replayed into the [`Denylist`]. When the file holds many more records
//! than live entries (entries expire; an entry widened twice is two records), it is rewritten
//! with only the live entries: into a temporary file in the same directory, `fsync`ed, renamed
//! over the journal, and the directory `fsync`ed.
//!
//! # File format (version 1)
//!
//! ```text
//! file   = header record*
//! header = magic "SGREVJNL" (8 bytes) | version u32 LE (= 1)
//! record = len u32 LE | crc u32 LE | body (len bytes, 1 ≤ len ≤ MAX_BODY)
//! body   = Revocation::encode()
//! crc    = CRC-32 (IEEE 802.3, as zlib) of len's 4 bytes followed by body
//! ```
//!
//! # Damage
//!
//! A crash can only tear the *last* append: each append is `fsync`ed before the next one
//! starts, under one lock. A torn append leaves a prefix of its record, possibly followed by
//! zeros (a file whose size was extended before its data reached the disk). So a damaged record
//! (incomplete, impossible length, or wrong checksum) is a **torn tail** when it starts at most
//! [`MAX_TORN_TAIL`] bytes (one maximal record) before the end and no intact record follows it
//! anywhere: [`Journal::open`] truncates the file back to the valid prefix and logs a warning
//! (that append was never reported done).
//!
//! Anything else is **corruption**: a bad header or version, a damaged record followed by an
//! intact one or by more than a record's worth of bytes, an intact record whose entry does not
//! decode. Replay refuses with the byte offset, and sealgate refuses to start, because skipping
//! the records after the damage would bring the sessions they revoke back to life.
//!
//! A file shorter than the header that is a prefix of it (a crash while the file was being
//! created) holds no record and is started afresh.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::{Denylist, MAX_TEXT, Revocation, RevocationError};

/// The file's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"SGREVJNL";
/// The format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Bytes of the header: magic and version.
pub const HEADER_LEN: usize = 12;
/// Bytes of a record's head: length and checksum.
pub const RECORD_HEAD_LEN: usize = 8;
/// Longest body [`Revocation::encode`] produces: kind, until, not-before, two length-prefixed
/// texts of at most [`MAX_TEXT`] bytes.
pub const MAX_BODY: usize = 1 + 8 + 8 + 2 * (2 + MAX_TEXT);
/// Compaction runs when the file holds more than `2 × live + COMPACT_SLACK` records.
pub const COMPACT_SLACK: usize = 1024;

/// The header bytes.
fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Why a journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file is not a journal this version reads, or holds damage that is not a torn tail.
    #[error("corrupt at byte {offset}: {what}")]
    Corrupt {
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        what: String,
    },
    /// A file operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Why it failed.
        source: io::Error,
    },
    /// Another process holds the journal's lock file.
    #[error("in use by another process (lock file {} is held)", lock.display())]
    InUse {
        /// The lock file.
        lock: PathBuf,
    },
    /// A failed append could not be undone (or a thread panicked holding the journal), so
    /// appending more could leave a record after a damaged one; every further append is
    /// refused until a restart truncates the tail.
    #[error("unusable after a failure that could not be undone; restart sealgate to recover")]
    Broken,
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> JournalError {
    move |source| JournalError::Io { op, source }
}

fn corrupt(offset: usize, what: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        offset: u64::try_from(offset).unwrap_or(u64::MAX),
        what: what.into(),
    }
}

/// What a journal's bytes hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// The entries still alive at `now`, in file order (an entry widened later appears again).
    pub entries: Vec<Revocation>,
    /// Intact records read, live or expired.
    pub records: usize,
    /// Bytes of the valid prefix: the header and whole intact records (0 for an empty file or
    /// a torn header).
    pub valid_len: usize,
    /// Whether a torn tail follows the valid prefix (it is not replayed).
    pub torn: bool,
}

/// How the bytes at one offset fail to be a record.
enum Damage {
    /// Fewer bytes than the record's head, or than the length it announces.
    Incomplete,
    /// A length of 0 or over [`MAX_BODY`].
    BadLength(u32),
    /// The checksum does not match.
    Checksum,
}

impl Damage {
    fn describe(&self) -> String {
        match self {
            Self::Incomplete => "incomplete record".into(),
            Self::BadLength(n) => format!("impossible record length {n}"),
            Self::Checksum => "record checksum mismatch".into(),
        }
    }
}

/// The checksum of a record with body `body`.
fn checksum(len: [u8; 4], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(body);
    h.finalize()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The record at the start of `rest`: its body and total size, or how it is damaged. `None`
/// when `rest` is empty.
fn record_at(rest: &[u8]) -> Option<Result<(&[u8], usize), Damage>> {
    if rest.is_empty() {
        return None;
    }
    if rest.len() < RECORD_HEAD_LEN {
        return Some(Err(Damage::Incomplete));
    }
    let len = u32_at(rest, 0);
    let body_len = usize::try_from(len).unwrap_or(usize::MAX);
    if body_len == 0 || body_len > MAX_BODY {
        return Some(Err(Damage::BadLength(len)));
    }
    let end = RECORD_HEAD_LEN + body_len;
    if rest.len() < end {
        return Some(Err(Damage::Incomplete));
    }
    let body = &rest[RECORD_HEAD_LEN..end];
    if checksum(len.to_le_bytes(), body) != u32_at(rest, 4) {
        return Some(Err(Damage::Checksum));
    }
    Some(Ok((body, end)))
}

/// The offset of the first intact record (valid length and checksum) starting after `from`.
/// Cheap on a torn tail: prefix bytes and zeros rarely announce a possible length.
fn intact_record_after(bytes: &[u8], from: usize) -> Option<usize> {
    (from + 1..bytes.len()).find(|&at| matches!(record_at(&bytes[at..]), Some(Ok(_))))
}

/// Longest torn tail: one whole record (a torn append never extends the file further).
pub const MAX_TORN_TAIL: usize = RECORD_HEAD_LEN + MAX_BODY;

/// Replays a journal's bytes at time `now`: the live entries, the valid prefix, and whether a
/// torn tail follows it. Pure, and never panics, whatever the bytes.
///
/// # Errors
/// [`JournalError::Corrupt`] for a bad header, an unsupported version, an intact record whose
/// entry does not decode, or a damaged record followed by an intact one.
pub fn replay(bytes: &[u8], now: i64) -> Result<Replay, JournalError> {
    let head = header();
    if bytes.len() < HEADER_LEN {
        if head.starts_with(bytes) {
            // Empty, or a crash while the file was being created: no record can be lost.
            return Ok(Replay {
                torn: !bytes.is_empty(),
                ..Replay::default()
            });
        }
        return Err(corrupt(0, "not a sealgate revocation journal (bad magic)"));
    }
    if bytes[..8] != MAGIC {
        return Err(corrupt(0, "not a sealgate revocation journal (bad magic)"));
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(corrupt(
            8,
            format!("unsupported journal version {version} (this sealgate reads {VERSION})"),
        ));
    }
    let mut out = Replay {
        valid_len: HEADER_LEN,
        ..Replay::default()
    };
    let mut at = HEADER_LEN;
    while let Some(record) = record_at(&bytes[at..]) {
        match record {
            Ok((body, size)) => {
                let entry = Revocation::decode(body).map_err(|_| {
                    corrupt(
                        at,
                        "intact record whose entry does not decode (written by another version?)",
                    )
                })?;
                out.records += 1;
                if entry.until() > now {
                    out.entries.push(entry);
                }
                at += size;
                out.valid_len = at;
            }
            Err(damage) => {
                let tail = bytes.len() - at;
                if tail > MAX_TORN_TAIL {
                    return Err(corrupt(
                        at,
                        format!(
                            "{} followed by {tail} bytes, more than one record: not an \
                             interrupted write",
                            damage.describe()
                        ),
                    ));
                }
                if let Some(next) = intact_record_after(bytes, at) {
                    return Err(corrupt(
                        at,
                        format!(
                            "{} followed by an intact record at byte {next}: not an \
                             interrupted write",
                            damage.describe()
                        ),
                    ));
                }
                out.torn = true;
                break;
            }
        }
    }
    Ok(out)
}

/// Appends `r`'s record to `out`.
fn encode_record(r: &Revocation, out: &mut Vec<u8>) {
    let body = r.encode();
    // `encode` cuts texts to MAX_TEXT, so the body is at most MAX_BODY bytes: it fits a u32.
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(len, &body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// A whole journal holding `entries` (compaction writes this; tests and benchmarks too).
pub fn to_bytes<'a>(entries: impl IntoIterator<Item = &'a Revocation>) -> Vec<u8> {
    let mut out = header().to_vec();
    for r in entries {
        encode_record(r, &mut out);
    }
    out
}

/// Whether a file of `records` records, `live` of them alive, is worth rewriting.
pub fn needs_compaction(records: usize, live: usize) -> bool {
    records > live.saturating_mul(2).saturating_add(COMPACT_SLACK)
}

/// An open journal. One process at a time: a lock file (`<journal>.lock`, `flock`ed) refuses a
/// second one.
pub struct Journal {
    path: PathBuf,
    dir: PathBuf,
    inner: Mutex<Inner>,
    // Held for the journal's lifetime; the kernel releases it when the process dies.
    _lock: Option<File>,
}

struct Inner {
    file: File,
    /// Bytes in the file.
    len: u64,
    /// Records in the file.
    records: usize,
    /// A compaction renamed a file over the journal but the directory `fsync` failed: the next
    /// append first makes the rename durable, or fails.
    dir_unsynced: bool,
    /// A failed append could not be undone.
    broken: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `try_lock`: formatting must never wait for (or deadlock on) an append in progress.
        let records = self.inner.try_lock().ok().map(|i| i.records);
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("records", &records)
            .finish_non_exhaustive()
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Read + append, created with mode 0600 (revoked session ids are in it).
fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Makes a directory's entries (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(unix)]
fn lock(path: &Path) -> Result<Option<File>, JournalError> {
    use rustix::fs::{FlockOperation, flock};
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(path).map_err(io_err("opening the lock file"))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(JournalError::InUse {
            lock: path.to_path_buf(),
        }),
        Err(e) => Err(JournalError::Io {
            op: "locking the lock file",
            source: e.into(),
        }),
    }
}

#[cfg(not(unix))]
fn lock(_: &Path) -> Result<Option<File>, JournalError> {
    Ok(None)
}

impl Journal {
    /// Opens the journal at `path` (creating it, with a directory `fsync`, when missing) and
    /// replays it at time `now`. A torn tail is truncated with a warning; a file with many more
    /// records than live entries is compacted. Returns the journal and what it held.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] (refuse to start: see the module docs), [`JournalError::InUse`],
    /// or an I/O error.
    pub fn open(path: &Path, now: i64) -> Result<(Self, Replay), JournalError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let lock = lock(&sibling(path, ".lock"))?;
        // A crash during a compaction leaves its temporary file; the journal itself is intact.
        match std::fs::remove_file(sibling(path, ".compact")) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                "revocation journal: removed the temporary file of an interrupted compaction"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing an interrupted compaction")(e)),
        }
        let (mut file, created) = match file_options().open(path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                file_options()
                    .create_new(true)
                    .open(path)
                    .map_err(io_err("creating"))?,
                true,
            ),
            Err(e) => return Err(io_err("opening")(e)),
        };
        if created {
            sync_dir(&dir).map_err(io_err("syncing the directory"))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err("reading"))?;
        let replay = replay(&bytes, now)?;
        let mut len = u64::try_from(replay.valid_len).unwrap_or(u64::MAX);
        let mut changed = false;
        if replay.valid_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                offset = replay.valid_len,
                dropped_bytes = bytes.len() - replay.valid_len,
                "revocation journal: the last record was torn by an interrupted write \
                 (never reported done); truncated"
            );
            file.set_len(len)
                .map_err(io_err("truncating a torn tail"))?;
            changed = true;
        }
        drop(bytes);
        if replay.valid_len < HEADER_LEN {
            file.set_len(0).map_err(io_err("truncating"))?;
            file.write_all(&header())
                .map_err(io_err("writing the header"))?;
            len = HEADER_LEN as u64;
            changed = true;
        }
        if changed {
            file.sync_all().map_err(io_err("syncing"))?;
        }
        let journal = Self {
            path: path.to_path_buf(),
            dir,
            inner: Mutex::new(Inner {
                file,
                len,
                records: replay.records,
                dir_unsynced: false,
                broken: false,
            }),
            _lock: lock,
        };
        if needs_compaction(replay.records, replay.entries.len()) {
            let mut inner = journal.lock_inner()?;
            if let Err(e) = journal.compact_locked(&mut inner, &replay.entries, now) {
                tracing::warn!(path = %path.display(), error = %e, "revocation journal: compaction failed; continuing with the full file");
            }
        }
        Ok((journal, replay))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the file (0 when the lock is poisoned).
    pub fn records(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.records)
    }

    fn lock_inner(&self) -> Result<MutexGuard<'_, Inner>, JournalError> {
        self.inner.lock().map_err(|_| JournalError::Broken)
    }

    /// Records `r` durably, then in `denylist`: decides what to record (a full denylist turns
    /// `r` into a global not-before), appends that and `fsync`s, inserts it in memory, and
    /// compacts when the file has grown well past the live entries. All under the journal's
    /// lock, so the file holds what memory holds, in the same order, and a compaction's
    /// snapshot cannot miss an entry being recorded. Blocking: call it off the async runtime.
    ///
    /// With a journal, this is the only way entries may enter `denylist`.
    ///
    /// # Errors
    /// When the entry is refused or could not be made durable; then memory is unchanged too.
    pub fn record(
        &self,
        denylist: &Denylist,
        r: Revocation,
        now: i64,
    ) -> Result<Revocation, RevocationError> {
        let mut inner = self.lock_inner().map_err(|e| self.failure(&e))?;
        let recorded = denylist.decide(r, now)?;
        if recorded.until() <= now {
            return Ok(recorded); // it can match nothing alive: nothing to keep
        }
        self.append_locked(&mut inner, &recorded)
            .map_err(|e| self.failure(&e))?;
        denylist.insert(recorded.clone(), now)?;
        let live = denylist.len() + 1; // + the global not-before, if any
        if needs_compaction(inner.records, live) {
            let started = Instant::now();
            let before = inner.records;
            match self.compact_locked(&mut inner, &denylist.snapshot(), now) {
                Ok(()) => tracing::info!(
                    path = %self.path.display(),
                    before,
                    after = inner.records,
                    elapsed_ms = started.elapsed().as_millis(),
                    "revocation journal compacted"
                ),
                // The record is durable; the file is merely longer than it needs to be.
                Err(e) => tracing::warn!(
                    path = %self.path.display(),
                    error = %e,
                    "revocation journal: compaction failed"
                ),
            }
        }
        Ok(recorded)
    }

    fn failure(&self, e: &JournalError) -> RevocationError {
        RevocationError(format!("revocation journal {}: {e}", self.path.display()))
    }

    /// Appends `r` and `fsync`s it, without touching any denylist (tests and tools; sealgate
    /// itself uses [`Journal::record`]).
    ///
    /// # Errors
    /// When it is not durable; the file is then as it was.
    pub fn append(&self, r: &Revocation) -> Result<(), JournalError> {
        let mut inner = self.lock_inner()?;
        self.append_locked(&mut inner, r)
    }

    fn append_locked(&self, inner: &mut Inner, r: &Revocation) -> Result<(), JournalError> {
        if inner.broken {
            return Err(JournalError::Broken);
        }
        if inner.dir_unsynced {
            sync_dir(&self.dir).map_err(io_err("syncing the directory after a compaction"))?;
            inner.dir_unsynced = false;
        }
        let mut record = Vec::with_capacity(RECORD_HEAD_LEN + 64);
        encode_record(r, &mut record);
        // Never write what replay would refuse: an undecodable record stops the next start.
        if Revocation::decode(&record[RECORD_HEAD_LEN..]).as_ref() != Ok(r) {
            return Err(io_err("encoding")(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the entry does not survive its encoding; not written",
            )));
        }
        let written = inner
            .file
            .write_all(&record)
            .and_then(|()| inner.file.sync_data());
        match written {
            Ok(()) => {
                inner.len += record.len() as u64;
                inner.records += 1;
                Ok(())
            }
            Err(e) => {
                // A partial record left in place would sit before the next one: corruption at
                // the next start. Cut it off; if even that fails, refuse further appends.
                if inner
                    .file
                    .set_len(inner.len)
                    .and_then(|()| inner.file.sync_data())
                    .is_err()
                {
                    inner.broken = true;
                }
                Err(io_err("appending")(e))
            }
        }
    }

    /// Rewrites the file with the entries of `denylist` alive at `now`, under the journal's
    /// lock (so no entry recorded meanwhile can be missed).
    ///
    /// # Errors
    /// When the rewrite failed; the journal is then unchanged and still in use.
    pub fn compact(&self, denylist: &Denylist, now: i64) -> Result<(), JournalError> {
        let mut inner = self.lock_inner()?;
        self.compact_locked(&mut inner, &denylist.snapshot(), now)
    }

    fn compact_locked(
        &self,
        inner: &mut Inner,
        entries: &[Revocation],
        now: i64,
    ) -> Result<(), JournalError> {
        if inner.broken {
            return Err(JournalError::Broken);
        }
        let live: Vec<&Revocation> = entries.iter().filter(|r| r.until() > now).collect();
        let bytes = to_bytes(live.iter().copied());
        let tmp = sibling(&self.path, ".compact");
        let written = (|| {
            let mut f = file_options().create_new(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            Ok::<_, io::Error>(f)
        })();
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err("compacting")(e));
            }
        };
        // The renamed file is the journal now: later appends must go to it.
        inner.file = file;
        inner.len = bytes.len() as u64;
        inner.records = live.len();
        if let Err(e) = sync_dir(&self.dir) {
            inner.dir_unsynced = true;
            return Err(io_err("syncing the directory after a compaction")(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
