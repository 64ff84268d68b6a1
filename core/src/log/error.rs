//! What can go wrong, named by file and offset so an operator can find it.
//!
//! [`LogError`] is what an operation returns; [`Corruption`] is what recovery found and dealt
//! with (it is reported in [`Recovery`](super::Recovery), not returned as an error, because
//! the log stays usable).

use std::io;
use std::path::PathBuf;

/// An error from a log operation.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A system call failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done ("write", "fdatasync", "rename", ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Bytes that recovery accepted no longer check out when read again (the file was changed
    /// behind the log's back), or a snapshot could not be read.
    #[error("{} at offset {offset}: {reason}", .path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// The byte offset in that file of the record or header that failed.
        offset: u64,
        /// What is wrong with it.
        reason: CorruptionReason,
    },
    /// An appended (or snapshot) record is larger than `LogConfig::max_record_bytes`.
    #[error("record of {len} bytes exceeds max_record_bytes {max}")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
        /// The configured limit.
        max: u32,
    },
    /// An earlier write or fsync failed. After a failed fsync the kernel may have dropped the
    /// dirty pages and marked them clean, so nothing written since can be trusted; the only
    /// way back is to drop the `Log` and open it again, which re-reads what is really on disk.
    #[error("the log in {} is poisoned by an earlier write or fsync failure; reopen it", .dir.display())]
    Poisoned {
        /// The log directory.
        dir: PathBuf,
    },
    /// Another `Log` (in this process or another) holds the directory's lock file.
    #[error("the log directory {} is already open (lock file {} is held)", .dir.display(), .lock.display())]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// `LogConfig` is not usable.
    #[error("invalid log config: {0}")]
    Config(&'static str),
}

impl LogError {
    /// Wraps an `io::Error` with the operation and the path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| LogError::Io { op, path, source }
    }
}

/// Why bytes on disk were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CorruptionReason {
    /// Fewer bytes than a record header (8) remain: a write was cut short.
    #[error("only {available} bytes left, fewer than a record header")]
    IncompleteHeader {
        /// Bytes left in the file.
        available: u64,
    },
    /// The length field is over `LogConfig::max_record_bytes`: garbage, never an allocation.
    #[error("length field {len} exceeds max_record_bytes {max}")]
    LengthTooLarge {
        /// The length field read.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// The length field points past the end of the file: a write was cut short.
    #[error("record of {len} bytes but only {available} bytes left in the file")]
    IncompletePayload {
        /// The length field read.
        len: u32,
        /// Bytes left after the record header.
        available: u64,
    },
    /// The CRC-32 over length and payload does not match.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum in the record header.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// The file is shorter than its fixed header (and trailer, for a snapshot).
    #[error("file of {len} bytes is too short for its header")]
    ShortFile {
        /// The file length.
        len: u64,
    },
    /// The file header does not start with the expected magic bytes.
    #[error("bad magic in the file header")]
    BadMagic,
    /// The file was written by a format version this code does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u32),
    /// The file header's own checksum does not match (or its last reserved bytes are set).
    #[error("file header checksum mismatch")]
    HeaderChecksum,
    /// The LSN in the file name and the one in the header differ.
    #[error("the file name says LSN {named} but the header says {stored}")]
    NameMismatch {
        /// The LSN from the name.
        named: u64,
        /// The LSN from the header.
        stored: u64,
    },
    /// A snapshot's trailer is missing or damaged (the snapshot was not completely written).
    #[error("snapshot trailer missing or damaged")]
    BadTrailer,
    /// A snapshot's trailer counts a different number of records than the file holds.
    #[error("the snapshot trailer counts {expected} records but {found} were found")]
    RecordCountMismatch {
        /// The count in the trailer.
        expected: u64,
        /// The records found.
        found: u64,
    },
    /// A segment starts before the previous one ends.
    #[error("segment starts at LSN {found} but the previous one ends at LSN {expected} - 1")]
    LsnOverlap {
        /// The first LSN not in the previous segment.
        expected: u64,
        /// This segment's first LSN.
        found: u64,
    },
    /// Records are missing before this file (after a corruption, or a lost snapshot).
    #[error("records {expected}..{found} are missing before this file")]
    LsnGap {
        /// The first missing LSN.
        expected: u64,
        /// The first LSN present again.
        found: u64,
    },
}

/// What recovery did about a [`Corruption`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptionAction {
    /// The last segment was cut back to the last whole record (a torn tail).
    Truncated,
    /// An earlier segment is replayed up to the bad record; the rest of it is skipped (and
    /// kept on disk for inspection until a snapshot covers it). Later segments still replay.
    SkippedRest,
    /// The whole file is skipped (bad header, or overlapping LSNs) and kept on disk. New
    /// records get LSNs past the one in its name, so no new segment collides with it.
    SkippedFile,
    /// The last segment had no valid header (a crash while it was being created, before any
    /// record could have been synced into it) and was removed.
    Removed,
    /// A snapshot failed validation and was ignored; an older one (or none) is used.
    Ignored,
    /// Nothing could be done; replay continues past a hole in the LSNs.
    Reported,
}

/// One damaged spot found by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The segment or snapshot file.
    pub file: PathBuf,
    /// The byte offset in that file.
    pub offset: u64,
    /// What is wrong.
    pub reason: CorruptionReason,
    /// What recovery did about it.
    pub action: CorruptionAction,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {} ({:?})",
            self.file.display(),
            self.offset,
            self.reason,
            self.action
        )
    }
}
