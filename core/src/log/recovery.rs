//! Opening a log directory: find the newest valid snapshot, check every segment record by
//! record, cut a torn tail, skip what is damaged, and report it all in [`Recovery`].
//!
//! The policy (see the module docs of [`log`](super) for the why):
//! - the last segment: everything from its first bad record on is cut off (truncated and
//!   fsynced); a last segment without a valid header is removed;
//! - any other segment: it is replayed up to its first bad record, the rest is skipped but
//!   left on disk, and later segments still replay; a bad header skips the whole file;
//! - snapshots: the newest one that validates end to end is used; a bad one is ignored;
//! - leftovers of an interrupted snapshot (`*.tmp`, older snapshots, segments the snapshot
//!   wholly covers) are deleted, finishing what the crash interrupted.

use std::path::{Path, PathBuf};

use super::error::{Corruption, CorruptionAction, CorruptionReason, LogError};
use super::segment::{self, SegmentMeta, SEGMENT_EXT};
use super::snapshot::{self, SnapshotMeta, SNAPSHOT_EXT, TEMP_EXT};
use super::{LogConfig, Lsn};

/// What [`Log::open`](super::Log::open) found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The last LSN the snapshot used covers, if one was used.
    pub snapshot_lsn: Option<Lsn>,
    /// Records in that snapshot.
    pub snapshot_records: u64,
    /// Segment files in use after recovery (not counting one created by `open`).
    pub segments: usize,
    /// Records in the segments after the snapshot: what replay yields after the snapshot's.
    pub records: u64,
    /// The LSN of the last record recovered (snapshot or segment); `Lsn::ZERO` if none.
    pub last_lsn: Lsn,
    /// Bytes cut from the end of the last segment (a torn tail), or of a removed segment.
    pub truncated_bytes: u64,
    /// Every damaged spot found, with what was done about it. A crash in the middle of a
    /// write usually shows up as one entry with action `Truncated`.
    pub corruptions: Vec<Corruption>,
    /// Files deleted to finish an interrupted snapshot: temporary files, older snapshots,
    /// segments wholly covered by the snapshot.
    pub removed_files: Vec<PathBuf>,
}

/// The state recovery hands to `Log::open`.
pub(crate) struct Recovered {
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// Valid segments in LSN order.
    pub(crate) segments: Vec<SegmentMeta>,
    /// The LSN the next appended record gets.
    pub(crate) next_lsn: Lsn,
    pub(crate) bytes_after_snapshot: u64,
    /// Damaged files left on disk (skipped segments, ignored snapshots) with the LSN in
    /// their name: the next snapshot covering that LSN deletes them.
    pub(crate) stale: Vec<(Lsn, PathBuf)>,
    pub(crate) report: Recovery,
}

/// A file in a log directory, by its name.
enum Entry {
    Segment(Lsn),
    Snapshot(Lsn),
    Temp,
}

/// `<20 digits>.seg`, `<20 digits>.snap`, `*.snap.tmp`; anything else is not ours.
fn classify(name: &str) -> Option<Entry> {
    if let Some(stem) = name.strip_suffix(&format!(".{SNAPSHOT_EXT}.{TEMP_EXT}")) {
        return stem
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then_some(Entry::Temp);
    }
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let lsn = Lsn::new(stem.parse().ok()?);
    match ext {
        SEGMENT_EXT => Some(Entry::Segment(lsn)),
        SNAPSHOT_EXT => Some(Entry::Snapshot(lsn)),
        _ => None,
    }
}

fn remove(path: &Path, report: &mut Recovery) -> Result<(), LogError> {
    std::fs::remove_file(path).map_err(LogError::io("remove", path))?;
    report.removed_files.push(path.to_path_buf());
    Ok(())
}

/// Runs recovery on `dir` (which exists and is locked).
pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, LogError> {
    let max = config.max_record_bytes;
    let (mut segments, mut snapshots, mut temps) = (Vec::new(), Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(LogError::io("read directory", dir))? {
        let entry = entry.map_err(LogError::io("read directory", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match classify(&name) {
            Some(Entry::Segment(lsn)) => segments.push((lsn, entry.path())),
            Some(Entry::Snapshot(lsn)) => snapshots.push((lsn, entry.path())),
            Some(Entry::Temp) => temps.push(entry.path()),
            None => {}
        }
    }
    segments.sort();
    snapshots.sort();
    let mut report = Recovery::default();
    let mut stale = Vec::new();
    for temp in &temps {
        remove(temp, &mut report)?;
    }

    let mut snapshot = None;
    for (lsn, path) in snapshots.iter().rev() {
        match snapshot::validate(path, *lsn, max)? {
            Ok(meta) => {
                snapshot = Some(meta);
                break;
            }
            Err((offset, reason)) => {
                report.corruptions.push(Corruption {
                    file: path.clone(),
                    offset,
                    reason,
                    action: CorruptionAction::Ignored,
                });
                stale.push((*lsn, path.clone()));
            }
        }
    }
    let covered = snapshot.as_ref().map_or(Lsn::ZERO, |s| s.lsn);
    for (lsn, path) in &snapshots {
        if *lsn < covered {
            remove(path, &mut report)?;
        }
    }

    let mut kept: Vec<SegmentMeta> = Vec::new();
    let mut bytes_after = 0;
    let mut records_after = 0;
    // The next LSN replay can yield without a hole.
    let mut cursor = covered.next();
    let last = segments.len().saturating_sub(1);
    for (i, (named, path)) in segments.iter().enumerate() {
        let is_last = i == last;
        let mut report_it = |offset, reason, action| {
            report.corruptions.push(Corruption {
                file: path.clone(),
                offset,
                reason,
                action,
            })
        };
        let scanned = match segment::scan(path, *named, max, covered)? {
            Ok(scanned) => scanned,
            Err((file_len, reason)) if is_last => {
                report_it(0, reason, CorruptionAction::Removed);
                std::fs::remove_file(path).map_err(LogError::io("remove", path))?;
                report.truncated_bytes += file_len;
                continue;
            }
            Err((_, reason)) => {
                report_it(0, reason, CorruptionAction::SkippedFile);
                stale.push((*named, path.clone()));
                continue;
            }
        };
        let meta = scanned.meta;
        if let Some(prev) = kept.last() {
            if meta.base < prev.next_lsn() {
                let (expected, found) = (prev.next_lsn().get(), meta.base.get());
                let reason = CorruptionReason::LsnOverlap { expected, found };
                report_it(0, reason, CorruptionAction::SkippedFile);
                stale.push((*named, path.clone()));
                continue;
            }
        }
        if meta.base > cursor {
            let (expected, found) = (cursor.get(), meta.base.get());
            let reason = CorruptionReason::LsnGap { expected, found };
            report_it(0, reason, CorruptionAction::Reported);
        }
        if scanned.bad.is_none() && is_last && scanned.file_len > meta.len {
            // Zeros the log wrote ahead of its records (`ZERO_AHEAD`), not damage: cut them
            // so the segment can be appended to again.
            segment::truncate(path, meta.len)?;
        }
        if let Some((offset, reason)) = scanned.bad {
            if is_last {
                report_it(offset, reason, CorruptionAction::Truncated);
                segment::truncate(path, offset)?;
                report.truncated_bytes += scanned.file_len - offset;
            } else {
                report_it(offset, reason, CorruptionAction::SkippedRest);
                // Its damaged bytes stay on disk, so it can never be appended to.
                stale.push((meta.base, path.clone()));
            }
        }
        cursor = cursor.max(meta.next_lsn());
        records_after += scanned.records_after;
        bytes_after += scanned.bytes_after;
        kept.push(meta);
    }

    // Segments the snapshot wholly covers are what an interrupted compaction left behind.
    let mut segments = Vec::with_capacity(kept.len());
    for meta in kept {
        let wholly_covered = if meta.records == 0 {
            meta.base <= covered
        } else {
            meta.last_lsn() <= covered
        };
        if snapshot.is_some() && wholly_covered {
            remove(&meta.path, &mut report)?;
        } else {
            segments.push(meta);
        }
    }
    if !report.removed_files.is_empty() || report.truncated_bytes > 0 {
        segment::sync_dir(dir)?;
    }

    // Past the snapshot, the last valid segment, and the name of any damaged segment file,
    // so that the segment `Log::open` may create never collides with a file left on disk.
    let skipped = stale
        .iter()
        .filter(|(_, path)| path.extension().is_some_and(|e| e == SEGMENT_EXT))
        .map(|(named, _)| named.next());
    let next_lsn = segments
        .iter()
        .map(SegmentMeta::next_lsn)
        .chain(skipped)
        .fold(covered.next(), Lsn::max);
    report.snapshot_lsn = snapshot.as_ref().map(|s| s.lsn);
    report.snapshot_records = snapshot.as_ref().map_or(0, |s| s.records);
    report.segments = segments.len();
    report.records = records_after;
    report.last_lsn = Lsn::new(next_lsn.get() - 1);
    Ok(Recovered {
        snapshot,
        segments,
        next_lsn,
        bytes_after_snapshot: bytes_after,
        stale,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_are_classified() {
        assert!(matches!(
            classify("00000000000000000001.seg"),
            Some(Entry::Segment(l)) if l == Lsn::new(1)
        ));
        assert!(matches!(
            classify("00000000000000000042.snap"),
            Some(Entry::Snapshot(l)) if l == Lsn::new(42)
        ));
        assert!(matches!(
            classify("00000000000000000042.snap.tmp"),
            Some(Entry::Temp)
        ));
        for other in [
            "LOCK",
            "1.seg",
            "0000000000000000000x.seg",
            "00000000000000000001.seg.bak",
            "99999999999999999999.seg",
            "notes.snap.tmp",
        ] {
            assert!(classify(other).is_none(), "{other}");
        }
    }
}
