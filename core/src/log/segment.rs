//! Segment files: `<first LSN, 20 digits>.seg`, a 32-byte header (magic `iotclog\0`), then
//! records back to back. A segment is only ever appended to; a new one starts when the
//! current one would grow past `LogConfig::segment_bytes`, and the old one is fdatasync'ed
//! first, so every segment but the last is whole and durable. The last one may end in zeros
//! the log wrote ahead of its records (`ZERO_AHEAD` in `mod.rs`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{CorruptionReason, LogError};
use super::header::{self, HEADER_LEN};
use super::map::map;
use super::record::{framed_len, Scanner, Step};
use super::Lsn;

/// Magic bytes of a segment header.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"iotclog\0";
/// Extension of segment files.
pub(crate) const SEGMENT_EXT: &str = "seg";

/// The path of the segment whose first record is `base`.
pub(crate) fn segment_path(dir: &Path, base: Lsn) -> PathBuf {
    dir.join(format!("{:020}.{SEGMENT_EXT}", base.get()))
}

/// What the log knows about one segment file.
#[derive(Clone, Debug)]
pub(crate) struct SegmentMeta {
    pub(crate) path: PathBuf,
    /// The LSN of its first record.
    pub(crate) base: Lsn,
    /// Bytes of header and valid records: replay reads this far and no further.
    pub(crate) len: u64,
    /// Valid records in it.
    pub(crate) records: u64,
}

impl SegmentMeta {
    /// The LSN the record after this segment's last one has.
    pub(crate) fn next_lsn(&self) -> Lsn {
        Lsn::new(self.base.get() + self.records)
    }

    /// The last LSN in it, or `base - 1` when it is empty.
    pub(crate) fn last_lsn(&self) -> Lsn {
        Lsn::new(self.next_lsn().get().saturating_sub(1))
    }
}

/// Creates the segment starting at `base`: header written, file and directory synced, so the
/// segment is durable before anything is written into it.
pub(crate) fn create(dir: &Path, base: Lsn) -> Result<(File, SegmentMeta), LogError> {
    let path = segment_path(dir, base);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(LogError::io("create", &path))?;
    file.write_all(&header::encode(SEGMENT_MAGIC, base))
        .map_err(LogError::io("write", &path))?;
    file.sync_all().map_err(LogError::io("fsync", &path))?;
    sync_dir(dir)?;
    let meta = SegmentMeta {
        path,
        base,
        len: HEADER_LEN as u64,
        records: 0,
    };
    Ok((file, meta))
}

/// Opens an existing segment for appending at its end.
pub(crate) fn open_for_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(LogError::io("open", path))
}

/// fsyncs a directory, making file creations, renames and deletions in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(LogError::io("fsync directory", dir))
}

/// What a recovery scan found in one segment file.
pub(crate) struct Scanned {
    /// The valid part: `len` stops before `bad` if there is one.
    pub(crate) meta: SegmentMeta,
    /// The length of the file on disk.
    pub(crate) file_len: u64,
    /// The first bad record, if any: its offset and what is wrong.
    pub(crate) bad: Option<(u64, CorruptionReason)>,
    /// Valid records with an LSN above the snapshot's, and their bytes on disk.
    pub(crate) records_after: u64,
    pub(crate) bytes_after: u64,
}

/// Reads a segment whose file name says it starts at `named`, checking every record.
///
/// Returns `Ok(Err(..))` when the header itself is bad: the file length and the reason.
pub(crate) fn scan(
    path: &Path,
    named: Lsn,
    max_record: u32,
    snapshot: Lsn,
) -> Result<Result<Scanned, (u64, CorruptionReason)>, LogError> {
    let file = File::open(path).map_err(LogError::io("open", path))?;
    let file_len = file.metadata().map_err(LogError::io("stat", path))?.len();
    let bytes = map(&file, file_len, path)?;
    let base = match header::decode(&bytes, SEGMENT_MAGIC, named) {
        Ok(base) => base,
        Err(reason) => return Ok(Err((file_len, reason))),
    };
    let mut scanner = Scanner::new(&bytes, HEADER_LEN, max_record);
    let (mut records, mut records_after, mut bytes_after) = (0u64, 0u64, 0u64);
    let bad = loop {
        match scanner.next_record() {
            Step::Record(payload) => {
                if base.get() + records > snapshot.get() {
                    records_after += 1;
                    bytes_after += framed_len(payload.len());
                }
                records += 1;
            }
            Step::End => break None,
            Step::Bad(reason) => break Some((scanner.offset(), reason)),
        }
    };
    let meta = SegmentMeta {
        path: path.to_path_buf(),
        base,
        len: scanner.offset(),
        records,
    };
    Ok(Ok(Scanned {
        meta,
        file_len,
        bad,
        records_after,
        bytes_after,
    }))
}

/// Cuts a torn tail: the file is shortened to `len` and the new length made durable.
/// No map of the file may be alive (see `map`).
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), LogError> {
    let file = open_for_append(path)?;
    file.set_len(len).map_err(LogError::io("truncate", path))?;
    file.sync_all().map_err(LogError::io("fsync", path))
}

/// Calls `f` with every record of `meta` whose LSN is above `after`, straight from the map.
///
/// Recovery already checked these bytes; the checksums are checked again (it costs little
/// next to the page faults) so a file changed since then is an error, not a wrong answer.
pub(crate) fn replay<E: From<LogError>>(
    meta: &SegmentMeta,
    max_record: u32,
    after: Lsn,
    f: &mut impl FnMut(Lsn, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    if meta.records == 0 || meta.last_lsn() <= after {
        return Ok(());
    }
    let file = File::open(&meta.path).map_err(LogError::io("open", &meta.path))?;
    let bytes = map(&file, meta.len, &meta.path)?;
    let mut scanner = Scanner::new(&bytes, HEADER_LEN, max_record);
    let mut lsn = meta.base;
    loop {
        match scanner.next_record() {
            Step::Record(payload) => {
                if lsn > after {
                    f(lsn, payload)?;
                }
                lsn = Lsn::new(lsn.get() + 1);
            }
            Step::End => return Ok(()),
            Step::Bad(reason) => {
                return Err(LogError::Corrupt {
                    path: meta.path.clone(),
                    offset: scanner.offset(),
                    reason,
                }
                .into())
            }
        }
    }
}
