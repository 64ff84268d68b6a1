//! Snapshot files: `<last LSN covered, 20 digits>.snap`, holding the caller's whole live
//! state as records, so replay can start there instead of at the first record ever written.
//!
//! ```text
//! [header: 32 bytes, magic `iotcsnap`, lsn = last LSN covered]
//! [records, same framing as segments]
//! [trailer: magic `iotcsend` (8)][record count: u64 LE][crc32 of magic, count and lsn: u32 LE][reserved: u32]
//! ```
//!
//! A snapshot is written to `<name>.snap.tmp`, fsynced, renamed into place and the directory
//! fsynced; only then may the segments it covers be deleted. The trailer is written last, so
//! a snapshot that is cut short, or whose records do not add up to the trailer's count, is
//! not valid and recovery falls back to the previous one.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::{CorruptionReason, LogError};
use super::header::{self, HEADER_LEN};
use super::map::map;
use super::record::{self, Scanner, Step};
use super::segment::sync_dir;
use super::Lsn;

/// Magic bytes of a snapshot header.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"iotcsnap";
/// Magic bytes that start a snapshot trailer.
const TRAILER_MAGIC: &[u8; 8] = b"iotcsend";
/// Length of the trailer.
const TRAILER_LEN: usize = 24;
/// Extension of snapshot files.
pub(crate) const SNAPSHOT_EXT: &str = "snap";
/// Extension added while a snapshot is being written.
pub(crate) const TEMP_EXT: &str = "tmp";

/// The path of the snapshot covering everything up to `lsn`.
pub(crate) fn snapshot_path(dir: &Path, lsn: Lsn) -> PathBuf {
    dir.join(format!("{:020}.{SNAPSHOT_EXT}", lsn.get()))
}

/// What the log knows about a valid snapshot.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotMeta {
    pub(crate) path: PathBuf,
    /// The last LSN it covers.
    pub(crate) lsn: Lsn,
    /// Records in it.
    pub(crate) records: u64,
    /// The file length.
    pub(crate) len: u64,
}

fn trailer(lsn: Lsn, records: u64) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..8].copy_from_slice(TRAILER_MAGIC);
    out[8..16].copy_from_slice(&records.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[..16]);
    hasher.update(&lsn.get().to_le_bytes());
    out[16..20].copy_from_slice(&hasher.finalize().to_le_bytes());
    out
}

/// Writes, syncs and renames into place a snapshot of `records` covering up to `lsn`.
/// On error the temporary file is removed and no snapshot has changed.
pub(crate) fn write<R: AsRef<[u8]>>(
    dir: &Path,
    lsn: Lsn,
    records: impl IntoIterator<Item = R>,
    max_record: u32,
) -> Result<SnapshotMeta, LogError> {
    let path = snapshot_path(dir, lsn);
    let temp = path.with_extension(format!("{SNAPSHOT_EXT}.{TEMP_EXT}"));
    let written = write_temp(&temp, lsn, records, max_record);
    let (count, len) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    std::fs::rename(&temp, &path).map_err(LogError::io("rename", &temp))?;
    sync_dir(dir)?;
    Ok(SnapshotMeta {
        path,
        lsn,
        records: count,
        len,
    })
}

fn write_temp<R: AsRef<[u8]>>(
    temp: &Path,
    lsn: Lsn,
    records: impl IntoIterator<Item = R>,
    max_record: u32,
) -> Result<(u64, u64), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(LogError::io("create", temp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let io = LogError::io;
    out.write_all(&header::encode(SNAPSHOT_MAGIC, lsn))
        .map_err(io("write", temp))?;
    let (mut count, mut len) = (0u64, HEADER_LEN as u64);
    let mut frame = Vec::new();
    for r in records {
        let payload = r.as_ref();
        let rec_len = record::checked_len(payload, max_record)?;
        frame.clear();
        record::encode(&mut frame, rec_len, payload);
        out.write_all(&frame).map_err(io("write", temp))?;
        count += 1;
        len += frame.len() as u64;
    }
    out.write_all(&trailer(lsn, count))
        .map_err(io("write", temp))?;
    let file = out
        .into_inner()
        .map_err(|e| LogError::io("write", temp)(e.into_error()))?;
    file.sync_all().map_err(io("fsync", temp))?;
    Ok((count, len + TRAILER_LEN as u64))
}

/// Checks the snapshot at `path` (named for `named`) from header to trailer, every record's
/// checksum included. `Ok(Err(offset, reason))` means it is not valid.
pub(crate) fn validate(
    path: &Path,
    named: Lsn,
    max_record: u32,
) -> Result<Result<SnapshotMeta, (u64, CorruptionReason)>, LogError> {
    let file = File::open(path).map_err(LogError::io("open", path))?;
    let len = file.metadata().map_err(LogError::io("stat", path))?.len();
    let bytes = map(&file, len, path)?;
    let mut records = 0u64;
    let checked = walk(&bytes, named, max_record, |_| {
        records += 1;
        Ok::<(), LogError>(())
    })?;
    Ok(checked.map(|()| SnapshotMeta {
        path: path.to_path_buf(),
        lsn: named,
        records,
        len,
    }))
}

/// Calls `f` with every record of the snapshot `meta`, straight from the map.
pub(crate) fn replay<E: From<LogError>>(
    meta: &SnapshotMeta,
    max_record: u32,
    f: &mut impl FnMut(Lsn, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let file = File::open(&meta.path).map_err(LogError::io("open", &meta.path))?;
    let bytes = map(&file, meta.len, &meta.path)?;
    let lsn = meta.lsn;
    let checked = walk(&bytes, lsn, max_record, |payload| f(lsn, payload))?;
    checked.map_err(|(offset, reason)| {
        LogError::Corrupt {
            path: meta.path.clone(),
            offset,
            reason,
        }
        .into()
    })
}

/// Checks header and trailer, then calls `f` on each record. The outer error is `f`'s; the
/// inner one says where the file is bad. A bad file may have had some records passed to `f`.
fn walk<E>(
    bytes: &[u8],
    named: Lsn,
    max_record: u32,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Result<(), (u64, CorruptionReason)>, E> {
    let short = CorruptionReason::ShortFile {
        len: bytes.len() as u64,
    };
    let Some(body_end) = bytes.len().checked_sub(TRAILER_LEN) else {
        return Ok(Err((0, short)));
    };
    if body_end < HEADER_LEN {
        return Ok(Err((0, short)));
    }
    let lsn = match header::decode(bytes, SNAPSHOT_MAGIC, named) {
        Ok(lsn) => lsn,
        Err(reason) => return Ok(Err((0, reason))),
    };
    let Some((body, tail)) = bytes.split_at_checked(body_end) else {
        return Ok(Err((0, short)));
    };
    let Some((head, _)) = tail.split_first_chunk::<16>() else {
        return Ok(Err((body_end as u64, CorruptionReason::BadTrailer)));
    };
    let expected = u64::from_le_bytes([
        head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
    ]);
    if trailer(lsn, expected) != tail {
        return Ok(Err((body_end as u64, CorruptionReason::BadTrailer)));
    }
    let mut scanner = Scanner::new(body, HEADER_LEN, max_record);
    let mut found = 0u64;
    loop {
        match scanner.next_record() {
            Step::Record(payload) => {
                found += 1;
                f(payload)?;
            }
            Step::End => break,
            Step::Bad(reason) => return Ok(Err((scanner.offset(), reason))),
        }
    }
    if found != expected {
        return Ok(Err((
            body_end as u64,
            CorruptionReason::RecordCountMismatch { expected, found },
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips() -> Result<(), LogError> {
        let dir = tempfile::tempdir().map_err(LogError::io("tempdir", "/tmp"))?;
        let meta = write(dir.path(), Lsn::new(9), [&b"a"[..], b"", b"ccc"], 1024)?;
        let checked = validate(&meta.path, Lsn::new(9), 1024)?;
        assert!(matches!(checked, Ok(SnapshotMeta { records: 3, .. })));
        let mut seen = Vec::new();
        replay(&meta, 1024, &mut |lsn, p: &[u8]| {
            seen.push((lsn, p.to_vec()));
            Ok::<(), LogError>(())
        })?;
        let lsn = Lsn::new(9);
        assert_eq!(
            seen,
            vec![(lsn, b"a".to_vec()), (lsn, vec![]), (lsn, b"ccc".to_vec())]
        );
        Ok(())
    }

    #[test]
    fn every_cut_of_a_snapshot_is_invalid() -> Result<(), LogError> {
        let dir = tempfile::tempdir().map_err(LogError::io("tempdir", "/tmp"))?;
        let meta = write(dir.path(), Lsn::new(3), [&b"abc"[..], b"defg"], 1024)?;
        let full = std::fs::read(&meta.path).map_err(LogError::io("read", &meta.path))?;
        let cut = dir.path().join("cut.snap");
        for len in 0..full.len() {
            std::fs::write(&cut, &full[..len]).map_err(LogError::io("write", &cut))?;
            assert!(validate(&cut, Lsn::new(3), 1024)?.is_err(), "cut at {len}");
        }
        for at in 0..full.len() {
            let mut flipped = full.clone();
            flipped[at] ^= 0x40;
            std::fs::write(&cut, &flipped).map_err(LogError::io("write", &cut))?;
            assert!(validate(&cut, Lsn::new(3), 1024)?.is_err(), "flip at {at}");
        }
        Ok(())
    }
}
