//! The append-only, checksummed, memory-mapped log under every durable part of iotcore
//! (device shadows, retained messages, persistent sessions).
//!
//! One [`Log`] owns one directory (for example `iotcore-data/shard-0/shadows/`) and is used
//! by one shard thread. It is plain synchronous `std::fs` code: the core crate has no async
//! runtime. The one slow call, fdatasync, can run on another thread through a
//! [`SyncHandle`], which is how the data plane gets group commit without blocking a shard.
//!
//! ## Using it
//! 1. [`Log::open`] recovers the directory and says what it found ([`Recovery`]).
//! 2. [`Log::replay`] yields the snapshot's records, then every record after it, in order,
//!    borrowed straight from memory maps; the caller rebuilds its state from them.
//! 3. [`Log::append`] copies a record into an in-memory buffer and returns its [`Lsn`];
//!    [`Log::flush`] writes the whole buffer with one `pwrite` (per segment touched);
//!    [`Log::sync_handle`] then [`SyncHandle::sync`] (on any thread) makes it durable and
//!    returns the LSN up to which every record may now be acknowledged. [`Log::sync`] does
//!    flush and fdatasync in one call on the current thread.
//! 4. When [`Log::stats`] says replay has grown long, [`Log::write_snapshot`] stores the
//!    caller's live state and deletes every segment and older snapshot it makes redundant.
//!
//! ## LSNs
//! An [`Lsn`] is a record sequence number: the first record ever appended is LSN 1, each
//! append adds one, and `Lsn::ZERO` means "nothing". Sequence numbers, not byte positions,
//! so that they survive compaction unchanged and a caller can compare them with the LSNs
//! it saw when appending. A record's LSN is its segment's first LSN (in the file name and
//! the header) plus its index in the segment. Records read from a snapshot all carry the
//! snapshot's LSN: the last LSN it covers.
//!
//! ## On disk
//! ```text
//! <dir>/LOCK                        held (flock) while a Log has the directory open
//! <dir>/00000000000000000001.seg    segment: records from LSN 1
//! <dir>/00000000000000052301.seg    segment: records from LSN 52301 (the one being written)
//! <dir>/00000000000000052300.snap   snapshot covering LSNs 1..=52300
//! <dir>/00000000000000052300.snap.tmp  a snapshot being written (deleted by recovery)
//!
//! file header (32 bytes): [magic: 8][format version: u32 LE = 1][reserved: u32 = 0]
//!                         [lsn: u64 LE][crc32 of bytes 0..24: u32 LE][reserved: u32 = 0]
//!   segment:  magic "iotclog\0", lsn = its first record's LSN
//!   snapshot: magic "iotcsnap", lsn = the last LSN it covers
//! record: [len: u32 LE][crc32(len bytes ++ payload): u32 LE][payload: len bytes]
//! snapshot trailer (24 bytes): ["iotcsend"][record count: u64 LE][crc32: u32 LE][0: u32]
//! ```
//! A segment is closed once it would grow past [`LogConfig::segment_bytes`] (a record larger
//! than that gets a segment of its own) and is fdatasync'ed before the next one is created,
//! so only the last segment can ever have a torn tail.
//!
//! The last segment is zero-filled up to `ZERO_AHEAD` (1 MiB) past its records, so that
//! records are written into bytes the file already has and an fdatasync need not commit a
//! new file size. Recovery reads zeros to the end as the end of the log (no record header
//! is all zeros) and cuts them; closing a segment, the log, or a clean shutdown
//! ([`Log::sync_and_trim`]) cuts them too.
//!
//! ## Corruption policy
//! The rule: cut what may be a torn write, skip what is damaged, never lose what comes after,
//! never panic, and report every case with its file and offset ([`Corruption`]).
//! - **Last segment**: a bad record (short header, short payload, checksum mismatch, length
//!   over [`LogConfig::max_record_bytes`]) ends the log; the segment is truncated there and
//!   fsynced. This is the normal result of a crash mid-write: such bytes were never synced,
//!   so nothing acknowledged is lost. (Bit rot inside synced bytes of the last segment cannot
//!   be told apart from a torn write, so records after it in that segment are lost too; the
//!   report names the offset.)
//! - **Earlier segments**: they were synced whole, so a bad record there is real damage.
//!   Replay stops at it for that segment, the rest of it is left on disk but not replayed,
//!   and replay continues with the next segment (a [`CorruptionReason::LsnGap`] is reported
//!   for the missing LSNs). A corrupted length can therefore never make recovery skip
//!   healthy later segments or allocate a huge buffer.
//! - **Snapshots**: one that fails its header, any record checksum, or its trailer is ignored
//!   and the previous one (or none) is used with the segments after it. Segments are only
//!   deleted once a newer snapshot is durable, so an interrupted snapshot loses nothing.
//!
//! ## Durability and failure
//! `append` only buffers; dropping a `Log` discards records not yet flushed (as a crash
//! would): call [`Log::close`] or [`Log::sync`] first. After any failed write or fsync the
//! log is poisoned ([`LogError::Poisoned`]): after a failed fsync Linux may have dropped the
//! dirty pages, so retrying could report success for data that is gone. Reopening the log
//! re-reads what really is on disk.

mod error;
mod header;
mod map;
mod record;
mod recovery;
mod segment;
mod snapshot;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use error::{Corruption, CorruptionAction, CorruptionReason, LogError};
pub use recovery::Recovery;

use header::HEADER_LEN;
use record::framed_len;
use segment::SegmentMeta;
use snapshot::SnapshotMeta;

/// A log sequence number: the position of a record in the log, counting from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// Before the first record: what an empty log has appended, flushed and synced.
    pub const ZERO: Lsn = Lsn(0);

    /// The LSN with number `n`.
    pub const fn new(n: u64) -> Self {
        Lsn(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The LSN after this one.
    pub(crate) const fn next(self) -> Self {
        Lsn(self.0 + 1)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Tuning for a [`Log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is closed and a new one started when the next record would take it past
    /// this many bytes. Smaller segments let compaction free space sooner; larger ones mean
    /// fewer files and maps. Default 64 MiB.
    pub segment_bytes: u64,
    /// The largest record payload `append` and `write_snapshot` accept, and the largest
    /// length field recovery believes. Default 16 MiB.
    pub max_record_bytes: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            max_record_bytes: 16 << 20,
        }
    }
}

impl LogConfig {
    /// Checks the limits make sense.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes <= (HEADER_LEN + record::RECORD_HEADER_LEN) as u64 {
            return Err(LogError::Config(
                "segment_bytes must leave room for a header and a record",
            ));
        }
        if self.max_record_bytes > u32::MAX - record::RECORD_HEADER_LEN as u32 {
            return Err(LogError::Config("max_record_bytes is too large"));
        }
        Ok(())
    }
}

/// Sizes and positions, for deciding when to compact and for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Segment files in use.
    pub segments: usize,
    /// Bytes written to them, headers included.
    pub segment_bytes: u64,
    /// Bytes appended but not yet flushed.
    pub buffered_bytes: u64,
    /// Bytes of records (framing included, buffered ones too) after the snapshot: the
    /// replay work a snapshot would save.
    pub bytes_since_snapshot: u64,
    /// Records after the snapshot, buffered ones included.
    pub records_since_snapshot: u64,
    /// The last LSN the current snapshot covers.
    pub snapshot_lsn: Option<Lsn>,
    /// The snapshot's size in bytes.
    pub snapshot_bytes: u64,
    /// Records in the snapshot.
    pub snapshot_records: u64,
    /// The LSN of the last record appended.
    pub last_lsn: Lsn,
    /// The LSN of the last record written to a segment file.
    pub flushed_lsn: Lsn,
    /// The LSN of the last record known to be durable.
    pub durable_lsn: Lsn,
}

/// What the `Log` and its [`SyncHandle`]s on other threads share. Touched once per flush
/// or sync, never per record.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// Every record up to this LSN is on stable storage.
    durable: AtomicU64,
    /// A write or fsync failed: see [`LogError::Poisoned`].
    poisoned: AtomicBool,
}

impl Shared {
    fn check(&self) -> Result<(), LogError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn poison<T>(&self, result: Result<T, LogError>) -> Result<T, LogError> {
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    fn made_durable(&self, lsn: Lsn) {
        self.durable.fetch_max(lsn.get(), Ordering::AcqRel);
    }
}

/// The open file of the segment being written, shared with [`SyncHandle`]s.
#[derive(Debug)]
struct SegmentFile {
    file: File,
    path: PathBuf,
}

/// The segment being written.
#[derive(Debug)]
struct Active {
    file: Arc<SegmentFile>,
    meta: SegmentMeta,
    /// The file's length: written bytes, then zeros from `meta.len` on (see `ZERO_AHEAD`).
    zeroed_to: u64,
}

impl Active {
    fn new(file: File, meta: SegmentMeta) -> Active {
        let path = meta.path.clone();
        Active {
            file: Arc::new(SegmentFile { file, path }),
            zeroed_to: meta.len,
            meta,
        }
    }

    /// Shortens the file to its last record, dropping the zeros written ahead; `true` if
    /// there were any (the new length is not synced yet).
    fn cut_zero_tail(&mut self) -> Result<bool, LogError> {
        if self.zeroed_to <= self.meta.len {
            return Ok(false);
        }
        self.file
            .file
            .set_len(self.meta.len)
            .map_err(LogError::io("truncate", &self.meta.path))?;
        self.zeroed_to = self.meta.len;
        Ok(true)
    }
}

/// How far past the records a segment file is zero-filled, in bytes.
///
/// An fdatasync after a write that grew the file must also commit the new size, an ext4
/// journal commit; one after writes into blocks that already hold zeros only writes the
/// data: 96 against 150-200 us here (`perf/sync_cost.py`; bench/results, session 5). So
/// records land in bytes written earlier, and the file grows a mebibyte at a time.
const ZERO_AHEAD: u64 = 1 << 20;

/// What the zero-filling writes from.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// A run of buffered records bound for one segment.
#[derive(Debug)]
struct Chunk {
    /// Where it starts in `Log::pending`.
    start: usize,
    records: u64,
    /// Set when these records start a new segment (with this first LSN).
    new_segment: Option<Lsn>,
}

/// An open log directory. See the [module docs](self).
#[derive(Debug)]
pub struct Log {
    config: LogConfig,
    /// The `LOCK` file, locked for the life of the `Log`: two writers would interleave.
    _lock: File,
    snapshot: Option<SnapshotMeta>,
    /// Closed segments, in LSN order: whole and durable.
    sealed: Vec<SegmentMeta>,
    active: Active,
    /// Framed records appended since the last flush.
    pending: Vec<u8>,
    /// How `pending` splits across segments.
    chunks: Vec<Chunk>,
    /// The size the segment the next record goes to will have once `pending` is written.
    tail_len: u64,
    /// The LSN the next `append` returns.
    next_lsn: Lsn,
    /// The LSN of the last record written to a file.
    flushed_lsn: Lsn,
    records_since_snapshot: u64,
    bytes_since_snapshot: u64,
    /// Damaged files left by recovery, deleted once a snapshot covers their LSN.
    stale: Vec<(Lsn, PathBuf)>,
    shared: Arc<Shared>,
}

impl Log {
    /// Opens (creating it if missing) the log in `dir` and recovers it.
    ///
    /// Afterwards everything recovered is durable (the last segment is fdatasync'ed), and
    /// [`Log::replay`] yields it.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(Log, Recovery), LogError> {
        config.validate()?;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(LogError::io("create directory", dir))?;
            // The new directory's own entry must be durable before anything in it is.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(LogError::io("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    dir: dir.to_path_buf(),
                    lock: lock_path,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(LogError::io("lock", &lock_path)(e))
            }
        }

        let recovered = recovery::recover(dir, &config)?;
        let next_lsn = recovered.next_lsn;
        let mut sealed = recovered.segments;
        // Append to the last segment only if it ends exactly where the log does, with no
        // skipped bytes after its valid part; otherwise start a clean segment.
        let reusable = match sealed.last() {
            Some(last) if last.next_lsn() == next_lsn => {
                let len = std::fs::metadata(&last.path)
                    .map_err(LogError::io("stat", &last.path))?
                    .len();
                len == last.len
            }
            _ => false,
        };
        let active = match sealed.pop() {
            Some(meta) if reusable => {
                let file = segment::open_for_append(&meta.path)?;
                file.sync_data()
                    .map_err(LogError::io("fdatasync", &meta.path))?;
                Active::new(file, meta)
            }
            other => {
                sealed.extend(other);
                let (file, meta) = segment::create(dir, next_lsn)?;
                Active::new(file, meta)
            }
        };
        let last_lsn = Lsn::new(next_lsn.get() - 1);
        let log = Log {
            _lock: lock,
            snapshot: recovered.snapshot,
            sealed,
            tail_len: active.meta.len,
            active,
            pending: Vec::new(),
            chunks: Vec::new(),
            next_lsn,
            flushed_lsn: last_lsn,
            records_since_snapshot: recovered.report.records,
            bytes_since_snapshot: recovered.bytes_after_snapshot,
            stale: recovered.stale,
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                durable: AtomicU64::new(last_lsn.get()),
                poisoned: AtomicBool::new(false),
            }),
            config,
        };
        Ok((log, recovered.report))
    }

    /// Calls `f` with the snapshot's records (each carrying the snapshot's LSN), then every
    /// flushed record after the snapshot with its own LSN, in order. Payloads borrow the
    /// memory maps: copy what must outlive the call. Records still in the append buffer are
    /// not yielded. Stops at the first error `f` returns.
    pub fn replay<E: From<LogError>>(
        &self,
        mut f: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let max = self.config.max_record_bytes;
        let after = match &self.snapshot {
            Some(snap) => {
                snapshot::replay(snap, max, &mut f)?;
                snap.lsn
            }
            None => Lsn::ZERO,
        };
        for meta in self.sealed.iter().chain([&self.active.meta]) {
            segment::replay(meta, max, after, &mut f)?;
        }
        Ok(())
    }

    /// Buffers one record and returns its LSN. No system call: the record reaches the file
    /// at the next [`Log::flush`] and stable storage at the next sync.
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, LogError> {
        self.shared.check()?;
        let len = record::checked_len(payload, self.config.max_record_bytes)?;
        let framed = framed_len(payload.len());
        let lsn = self.next_lsn;
        let start = self.pending.len();
        let empty_segment = self.tail_len == HEADER_LEN as u64;
        if !empty_segment && self.tail_len + framed > self.config.segment_bytes {
            self.chunks.push(Chunk {
                start,
                records: 0,
                new_segment: Some(lsn),
            });
            self.tail_len = HEADER_LEN as u64;
        } else if self.chunks.is_empty() {
            self.chunks.push(Chunk {
                start,
                records: 0,
                new_segment: None,
            });
        }
        record::encode(&mut self.pending, len, payload);
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.records += 1;
        }
        self.tail_len += framed;
        self.next_lsn = lsn.next();
        self.records_since_snapshot += 1;
        self.bytes_since_snapshot += framed;
        Ok(lsn)
    }

    /// Writes the buffered records to the segment files: one `pwrite` per segment touched,
    /// rolling to new segments as needed (a closed segment is fdatasync'ed before the roll).
    /// Does not fsync the current segment: see [`Log::sync_handle`].
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.shared.check()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let chunks = std::mem::take(&mut self.chunks);
        let written = self.write_chunks(&pending, &chunks);
        // Keep the buffers' capacity for the next batch.
        self.pending = pending;
        self.pending.clear();
        self.chunks = chunks;
        self.chunks.clear();
        self.shared.poison(written)
    }

    fn write_chunks(&mut self, pending: &[u8], chunks: &[Chunk]) -> Result<(), LogError> {
        for (i, chunk) in chunks.iter().enumerate() {
            let end = chunks.get(i + 1).map_or(pending.len(), |next| next.start);
            if let Some(base) = chunk.new_segment {
                self.roll(base)?;
            }
            let bytes = pending.get(chunk.start..end).unwrap_or_default();
            let meta = &mut self.active.meta;
            let file = &self.active.file.file;
            file.write_all_at(bytes, meta.len)
                .map_err(LogError::io("write", &meta.path))?;
            meta.len += bytes.len() as u64;
            if meta.len > self.active.zeroed_to.saturating_sub(ZERO_AHEAD / 2) {
                // Never past the segment's size: a segment grows no larger than it would.
                let to = (meta.len + ZERO_AHEAD).min(self.config.segment_bytes.max(meta.len));
                let from = self.active.zeroed_to.max(meta.len);
                zero_fill(file, from, to).map_err(LogError::io("zero-fill", &meta.path))?;
                self.active.zeroed_to = self.active.zeroed_to.max(to);
            }
            meta.records += chunk.records;
            self.flushed_lsn = Lsn::new(self.flushed_lsn.get() + chunk.records);
        }
        Ok(())
    }

    /// Closes the current segment (durably) and starts one at `base`. A closed segment ends
    /// at its last record: its zero-filled tail is cut.
    fn roll(&mut self, base: Lsn) -> Result<(), LogError> {
        self.active.cut_zero_tail()?;
        let current = &self.active.file;
        current
            .file
            .sync_data()
            .map_err(LogError::io("fdatasync", &current.path))?;
        self.shared.made_durable(self.flushed_lsn);
        self.start_segment(base)
    }

    fn start_segment(&mut self, base: Lsn) -> Result<(), LogError> {
        let (file, meta) = segment::create(&self.shared.dir, base)?;
        let fresh = Active::new(file, meta);
        let closed = std::mem::replace(&mut self.active, fresh);
        self.sealed.push(closed.meta);
        Ok(())
    }

    /// A handle that fdatasyncs what has been flushed so far, on any thread. Group commit:
    /// append a batch, [`flush`](Log::flush) once, send the handle to a blocking thread,
    /// then acknowledge every record up to the LSN its `sync` returns.
    pub fn sync_handle(&self) -> SyncHandle {
        SyncHandle {
            segment: Arc::clone(&self.active.file),
            lsn: self.flushed_lsn,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Flushes and fdatasyncs on this thread; returns the LSN now durable (the last one
    /// appended).
    pub fn sync(&mut self) -> Result<Lsn, LogError> {
        self.flush()?;
        self.sync_handle().sync()
    }

    /// Syncs and closes the log. The last segment ends at its last record: the zeros
    /// written ahead of it are cut.
    pub fn close(mut self) -> Result<Lsn, LogError> {
        self.sync_and_trim()
    }

    /// Flushes, cuts the zeros written ahead of the records, and fdatasyncs: what a clean
    /// shutdown leaves, files that end at their last record. The log stays usable (the next
    /// write zero-fills again).
    pub fn sync_and_trim(&mut self) -> Result<Lsn, LogError> {
        self.flush()?;
        let cut = self.active.cut_zero_tail();
        if self.shared.poison(cut)? {
            // The new length must reach the disk even if every record already has: one
            // fdatasync for both, where `sync` would skip it.
            let handle = self.sync_handle();
            let synced = handle.segment.file.sync_data();
            return handle.synced(synced);
        }
        self.sync_handle().sync()
    }

    /// Every record up to this LSN is on stable storage (including syncs done through
    /// [`SyncHandle`]s on other threads).
    pub fn durable_lsn(&self) -> Lsn {
        Lsn::new(self.shared.durable.load(Ordering::Acquire))
    }

    /// The LSN of the last record appended (`Lsn::ZERO` if none ever was).
    pub fn last_lsn(&self) -> Lsn {
        Lsn::new(self.next_lsn.get() - 1)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Sizes and positions; cheap (no system call).
    pub fn stats(&self) -> LogStats {
        let segments = self.sealed.iter().chain([&self.active.meta]);
        LogStats {
            segments: self.sealed.len() + 1,
            segment_bytes: segments.map(|m| m.len).sum(),
            buffered_bytes: self.pending.len() as u64,
            bytes_since_snapshot: self.bytes_since_snapshot,
            records_since_snapshot: self.records_since_snapshot,
            snapshot_lsn: self.snapshot.as_ref().map(|s| s.lsn),
            snapshot_bytes: self.snapshot.as_ref().map_or(0, |s| s.len),
            snapshot_records: self.snapshot.as_ref().map_or(0, |s| s.records),
            last_lsn: self.last_lsn(),
            flushed_lsn: self.flushed_lsn,
            durable_lsn: self.durable_lsn(),
        }
    }

    /// Stores `records`, the caller's whole live state, equivalent to replaying everything
    /// appended so far (buffered records included), as a snapshot; then deletes the
    /// segments and snapshots it makes redundant. Returns the last LSN it covers.
    ///
    /// Order, so a crash at any point loses nothing: flush; write `<lsn>.snap.tmp`; fsync it;
    /// rename it to `<lsn>.snap`; fsync the directory (now the snapshot is durable and
    /// everything up to `lsn` with it); start a new segment at `lsn + 1`; delete the old
    /// segments and snapshots; fsync the directory.
    ///
    /// This blocks for as long as writing the state takes; a failure before the rename
    /// leaves the log as it was.
    pub fn write_snapshot<R: AsRef<[u8]>>(
        &mut self,
        records: impl IntoIterator<Item = R>,
    ) -> Result<Lsn, LogError> {
        self.flush()?;
        let lsn = self.last_lsn();
        let meta = snapshot::write(&self.shared.dir, lsn, records, self.config.max_record_bytes)?;
        self.shared.made_durable(lsn);
        let previous = self.snapshot.replace(meta);
        self.records_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        self.compact(lsn, previous)
    }

    /// Deletes what the snapshot covering `lsn` made redundant.
    fn compact(&mut self, lsn: Lsn, previous: Option<SnapshotMeta>) -> Result<Lsn, LogError> {
        let fresh = self.active.meta.records == 0 && self.active.meta.base == lsn.next();
        if !fresh {
            self.start_segment(lsn.next())?;
            // `pending` is empty (flushed above), so the next record goes to the new segment.
            self.tail_len = self.active.meta.len;
        }
        let mut doomed: Vec<PathBuf> = self.sealed.drain(..).map(|m| m.path).collect();
        let keep = self.snapshot.as_ref().map(|s| s.path.clone());
        doomed.extend(
            previous
                .map(|s| s.path)
                .filter(|p| Some(p) != keep.as_ref()),
        );
        let (covered, stale): (Vec<_>, Vec<_>) =
            self.stale.drain(..).partition(|(named, _)| *named <= lsn);
        self.stale = stale;
        doomed.extend(covered.into_iter().map(|(_, path)| path));
        let mut first_error = None;
        for path in doomed {
            match std::fs::remove_file(&path) {
                // A damaged segment can be both sealed and stale: deleting twice is fine.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    first_error.get_or_insert(LogError::io("remove", &path)(e));
                }
                _ => {}
            }
        }
        segment::sync_dir(&self.shared.dir)?;
        match first_error {
            // The leftovers are deleted by the next recovery.
            Some(e) => Err(e),
            None => Ok(lsn),
        }
    }
}

/// Writes zeros to `file` from byte `from` up to `to`.
fn zero_fill(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64);
        file.write_all_at(&ZEROS[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Makes the records flushed before it was made durable, from any thread.
///
/// Holds the segment file that was current when it was made; segments closed since were
/// fdatasync'ed when they were closed, so syncing this one covers every record up to
/// [`SyncHandle::lsn`].
#[derive(Debug)]
pub struct SyncHandle {
    segment: Arc<SegmentFile>,
    lsn: Lsn,
    shared: Arc<Shared>,
}

impl SyncHandle {
    /// The LSN that `sync` makes durable.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// fdatasyncs the segment and returns the LSN up to which every record is now durable.
    /// Skips the system call when another sync already covered it. A failure poisons the
    /// log.
    pub fn sync(self) -> Result<Lsn, LogError> {
        if !self.needs_sync()? {
            return Ok(self.lsn);
        }
        let synced = self.segment.file.sync_data();
        self.synced(synced)
    }

    /// False when another sync already covered this handle's LSN; an error when the log is
    /// poisoned. For callers that fdatasync [`SyncHandle::fd`] themselves (through an
    /// io_uring, say) and then report with [`SyncHandle::synced`].
    pub fn needs_sync(&self) -> Result<bool, LogError> {
        self.shared.check()?;
        Ok(self.shared.durable.load(Ordering::Acquire) < self.lsn.get())
    }

    /// The segment file to fdatasync. It stays open while this handle lives.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.segment.file.as_fd()
    }

    /// Records the outcome of an fdatasync of [`SyncHandle::fd`]: the LSN now durable, or
    /// the error, which poisons the log.
    pub fn synced(self, result: std::io::Result<()>) -> Result<Lsn, LogError> {
        self.shared
            .poison(result.map_err(LogError::io("fdatasync", &self.segment.path)))?;
        self.shared.made_durable(self.lsn);
        Ok(self.lsn)
    }
}
