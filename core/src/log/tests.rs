//! Whole-log tests on real files in temporary directories, named by scenario.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::header::HEADER_LEN;
use super::record::RECORD_HEADER_LEN;
use super::segment::segment_path;
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Ten-byte records, four to a segment: segments start at LSNs 1, 5, 9, ...
fn small() -> LogConfig {
    LogConfig {
        segment_bytes: (HEADER_LEN + 4 * (RECORD_HEADER_LEN + 10)) as u64,
        max_record_bytes: 64,
    }
}

fn rec(i: u64) -> Vec<u8> {
    format!("record-{i:03}").into_bytes()
}

/// Every record replay yields, with its LSN.
fn replayed(log: &Log) -> Result<Vec<(Lsn, Vec<u8>)>, LogError> {
    let mut out = Vec::new();
    log.replay(|lsn, payload| {
        out.push((lsn, payload.to_vec()));
        Ok::<(), LogError>(())
    })?;
    Ok(out)
}

fn payloads(log: &Log) -> Result<Vec<Vec<u8>>, LogError> {
    Ok(replayed(log)?.into_iter().map(|(_, p)| p).collect())
}

/// `n` records numbered from 1, the LSN each should get.
fn numbered(range: std::ops::RangeInclusive<u64>) -> Vec<(Lsn, Vec<u8>)> {
    range.map(|i| (Lsn::new(i), rec(i))).collect()
}

fn write_records(dir: &Path, config: LogConfig, n: u64) -> Result<(), LogError> {
    let (mut log, _) = Log::open(dir, config)?;
    for i in 1..=n {
        log.append(&rec(i))?;
    }
    log.close()?;
    Ok(())
}

/// Files in `dir` with extension `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The offset of record `index` (0-based) in a segment of ten-byte records.
fn offset_of(index: usize) -> u64 {
    (HEADER_LEN + index * (RECORD_HEADER_LEN + 10)) as u64
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    let mut all = fs::read(path)?;
    let at = offset as usize;
    all[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, all)
}

#[test]
fn round_trip_append_flush_sync_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, recovery) = Log::open(dir.path(), LogConfig::default())?;
    assert_eq!(recovery, Recovery::default());
    assert_eq!(log.append(b"first")?, Lsn::new(1));
    assert_eq!(log.append(b"")?, Lsn::new(2));
    assert!(payloads(&log)?.is_empty(), "nothing flushed yet");
    log.flush()?;
    assert_eq!(log.append(b"third")?, Lsn::new(3));
    assert_eq!(log.sync()?, Lsn::new(3));
    assert_eq!(log.durable_lsn(), Lsn::new(3));
    drop(log);

    let (mut log, recovery) = Log::open(dir.path(), LogConfig::default())?;
    assert_eq!(recovery.records, 3);
    assert_eq!(recovery.last_lsn, Lsn::new(3));
    assert!(recovery.corruptions.is_empty());
    let expected = vec![
        (Lsn::new(1), b"first".to_vec()),
        (Lsn::new(2), vec![]),
        (Lsn::new(3), b"third".to_vec()),
    ];
    assert_eq!(replayed(&log)?, expected);
    assert_eq!(log.durable_lsn(), Lsn::new(3));
    assert_eq!(log.append(b"fourth")?, Lsn::new(4));
    log.close()?;
    let (log, _) = Log::open(dir.path(), LogConfig::default())?;
    assert_eq!(payloads(&log)?.len(), 4);
    Ok(())
}

#[test]
fn dropping_without_flush_loses_only_the_buffer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    log.append(&rec(1))?;
    log.flush()?;
    log.append(&rec(2))?;
    drop(log);
    let (log, _) = Log::open(dir.path(), small())?;
    assert_eq!(replayed(&log)?, numbered(1..=1));
    Ok(())
}

#[test]
fn segments_roll_at_segment_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    for i in 1..=10 {
        log.append(&rec(i))?;
    }
    // One flush across three segments.
    log.flush()?;
    let segs = files(dir.path(), "seg")?;
    let names: Vec<_> = segs.iter().filter_map(|p| p.file_name()).collect();
    assert_eq!(
        names,
        [
            "00000000000000000001.seg",
            "00000000000000000005.seg",
            "00000000000000000009.seg"
        ]
    );
    for seg in &segs {
        assert!(fs::metadata(seg)?.len() <= small().segment_bytes);
    }
    // Closing a segment made everything in it durable.
    assert_eq!(log.durable_lsn(), Lsn::new(8));
    assert_eq!(log.stats().segments, 3);
    assert_eq!(replayed(&log)?, numbered(1..=10));
    drop(log);
    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(recovery.segments, 3);
    assert_eq!(replayed(&log)?, numbered(1..=10));
    Ok(())
}

/// Records go into bytes zeroed ahead of them (`ZERO_AHEAD`); a crash leaves that zero tail,
/// and recovery takes it for the end of the log, not for damage.
#[test]
fn the_zero_filled_tail_is_not_corruption() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), LogConfig::default())?;
    for i in 1..=5 {
        log.append(&rec(i))?;
    }
    log.sync()?;
    let seg = segment_path(dir.path(), Lsn::new(1));
    let written = offset_of(5);
    let on_disk = fs::read(&seg)?;
    assert_eq!(on_disk.len() as u64, written + ZERO_AHEAD);
    assert!(on_disk[written as usize..].iter().all(|b| *b == 0));
    drop(log); // a crash: no close

    let (mut log, recovery) = Log::open(dir.path(), LogConfig::default())?;
    assert!(
        recovery.corruptions.is_empty(),
        "{:?}",
        recovery.corruptions
    );
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.segments, 1);
    assert_eq!(fs::metadata(&seg)?.len(), written);
    assert_eq!(replayed(&log)?, numbered(1..=5));
    // Appended to where the records ended, in the same segment.
    assert_eq!(log.append(&rec(6))?, Lsn::new(6));
    log.close()?;
    assert_eq!(fs::metadata(&seg)?.len(), offset_of(6));
    let (log, _) = Log::open(dir.path(), LogConfig::default())?;
    assert_eq!(replayed(&log)?, numbered(1..=6));
    Ok(())
}

/// A clean shutdown (`sync_and_trim`) leaves files that end at their last record; the log
/// goes on working and zero-fills again.
#[test]
fn sync_and_trim_cuts_the_zeros_and_the_log_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), LogConfig::default())?;
    let seg = segment_path(dir.path(), Lsn::new(1));
    log.append(&rec(1))?;
    assert_eq!(log.sync_and_trim()?, Lsn::new(1));
    assert_eq!(fs::metadata(&seg)?.len(), offset_of(1));
    log.append(&rec(2))?;
    log.sync()?;
    assert_eq!(fs::metadata(&seg)?.len(), offset_of(2) + ZERO_AHEAD);
    drop(log);
    let (log, recovery) = Log::open(dir.path(), LogConfig::default())?;
    assert!(recovery.corruptions.is_empty());
    assert_eq!(replayed(&log)?, numbered(1..=2));
    Ok(())
}

/// A closed segment ends at its last record, and no segment grows past `segment_bytes`
/// because of the zeros.
#[test]
fn sealed_segments_have_no_zero_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        segment_bytes: 4096,
        ..small()
    };
    let (mut log, _) = Log::open(dir.path(), config.clone())?;
    for i in 1..=1000 {
        log.append(&rec(i))?;
        if i % 7 == 0 {
            log.flush()?;
        }
    }
    log.flush()?;
    let segs = files(dir.path(), "seg")?;
    assert!(segs.len() > 2);
    let per_segment = (4096 - HEADER_LEN) / (RECORD_HEADER_LEN + 10);
    for seg in &segs[..segs.len() - 1] {
        assert_eq!(fs::metadata(seg)?.len(), offset_of(per_segment));
    }
    if let Some(last) = segs.last() {
        assert_eq!(fs::metadata(last)?.len(), 4096);
    }
    drop(log);
    let (log, recovery) = Log::open(dir.path(), config)?;
    assert!(
        recovery.corruptions.is_empty(),
        "{:?}",
        recovery.corruptions
    );
    assert_eq!(replayed(&log)?, numbered(1..=1000));
    Ok(())
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    log.append(&rec(1))?;
    log.append(&[7; 64])?;
    log.append(&rec(3))?;
    log.close()?;
    assert_eq!(files(dir.path(), "seg")?.len(), 3);
    let (log, _) = Log::open(dir.path(), small())?;
    assert_eq!(payloads(&log)?, vec![rec(1), vec![7; 64], rec(3)]);
    Ok(())
}

#[test]
fn oversized_records_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    let err = log.append(&[0; 65]);
    assert!(matches!(
        err,
        Err(LogError::RecordTooLarge { len: 65, max: 64 })
    ));
    assert_eq!(log.append(b"still fine")?, Lsn::new(1));
    Ok(())
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_log, _) = Log::open(dir.path(), small())?;
    assert!(matches!(
        Log::open(dir.path(), small()),
        Err(LogError::Locked { .. })
    ));
    Ok(())
}

/// Cuts the only segment of a five-record log at every byte offset: recovery keeps exactly
/// the records wholly before the cut, reports the cut, and the log works on afterwards.
#[test]
fn recovery_torn_tail_at_every_offset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let lens = [0usize, 1, 7, 30, 12];
    let (mut log, _) = Log::open(dir.path(), LogConfig::default())?;
    let mut ends = vec![HEADER_LEN];
    for (i, len) in lens.iter().enumerate() {
        log.append(&vec![i as u8; *len])?;
        ends.push(ends[i] + RECORD_HEADER_LEN + len);
    }
    log.close()?;
    let seg = segment_path(dir.path(), Lsn::new(1));
    let full = fs::read(&seg)?;
    assert_eq!(full.len(), ends[lens.len()]);

    for cut in 0..=full.len() {
        let crash = tempfile::tempdir()?;
        let torn = segment_path(crash.path(), Lsn::new(1));
        fs::write(&torn, &full[..cut])?;
        let (mut log, recovery) = Log::open(crash.path(), LogConfig::default())?;
        let whole = ends
            .iter()
            .filter(|end| **end <= cut)
            .count()
            .saturating_sub(1);
        let got = payloads(&log)?;
        let want: Vec<Vec<u8>> = (0..whole).map(|i| vec![i as u8; lens[i]]).collect();
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(recovery.last_lsn, Lsn::new(whole as u64), "cut at {cut}");
        let boundary = if cut < HEADER_LEN { 0 } else { ends[whole] };
        // A cut leaving only zeros after the last whole record (inside the length field of
        // the empty record) looks like the log's zero-filled tail: cut quietly.
        let only_zeros = cut >= HEADER_LEN && full[boundary..cut].iter().all(|b| *b == 0);
        let reported = if only_zeros { 0 } else { cut - boundary };
        assert_eq!(recovery.truncated_bytes, reported as u64, "cut at {cut}");
        let clean = only_zeros && cut >= HEADER_LEN;
        assert_eq!(recovery.corruptions.is_empty(), clean, "cut at {cut}");
        if let Some(c) = recovery.corruptions.first() {
            assert_eq!(c.file, torn);
            let action = if cut < HEADER_LEN {
                CorruptionAction::Removed
            } else {
                CorruptionAction::Truncated
            };
            assert_eq!(
                (c.offset, c.action),
                (boundary as u64, action),
                "cut at {cut}"
            );
        }
        assert_eq!(log.append(b"after")?, Lsn::new(whole as u64 + 1));
        log.close()?;
        let (log, recovery) = Log::open(crash.path(), LogConfig::default())?;
        assert!(recovery.corruptions.is_empty());
        let mut want = want;
        want.push(b"after".to_vec());
        assert_eq!(payloads(&log)?, want, "cut at {cut}, reopened");
    }
    Ok(())
}

#[test]
fn recovery_corrupt_record_in_an_earlier_segment_skips_its_rest_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 12)?;
    let first = segment_path(dir.path(), Lsn::new(1));
    // Flip a payload byte of the second record (LSN 2).
    let at = offset_of(1) + RECORD_HEADER_LEN as u64 + 3;
    let mut byte = [0u8];
    byte[0] = fs::read(&first)?[at as usize] ^ 0x01;
    patch(&first, at, &byte)?;

    let (mut log, recovery) = Log::open(dir.path(), small())?;
    let mut want = numbered(1..=1);
    want.extend(numbered(5..=12));
    assert_eq!(replayed(&log)?, want);
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.corruptions.len(), 2, "{:?}", recovery.corruptions);
    let bad = &recovery.corruptions[0];
    assert_eq!(bad.file, first);
    assert_eq!(bad.offset, offset_of(1));
    assert!(matches!(
        bad.reason,
        CorruptionReason::ChecksumMismatch { .. }
    ));
    assert_eq!(bad.action, CorruptionAction::SkippedRest);
    let gap = &recovery.corruptions[1];
    assert_eq!(gap.file, segment_path(dir.path(), Lsn::new(5)));
    assert_eq!(
        gap.reason,
        CorruptionReason::LsnGap {
            expected: 2,
            found: 5
        }
    );
    let text = bad.to_string();
    assert!(
        text.contains("00000000000000000001.seg") && text.contains("offset 50"),
        "{text}"
    );
    // The damaged bytes stay on disk for inspection; the log goes on.
    assert_eq!(fs::metadata(&first)?.len(), offset_of(4));
    assert_eq!(log.append(&rec(13))?, Lsn::new(13));
    log.close()?;
    let (mut log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(recovery.corruptions.len(), 2);
    assert_eq!(payloads(&log)?.len(), 10);
    // A snapshot covers it: the damaged segment goes with the others.
    log.write_snapshot([b"state"])?;
    assert!(!first.exists());
    drop(log);
    let (_, recovery) = Log::open(dir.path(), small())?;
    assert!(recovery.corruptions.is_empty());
    Ok(())
}

/// Found by the `log_recovery` fuzz target: the only readable segment is damaged at its
/// first record and the last one has no header; the new segment needs another name.
#[test]
fn recovery_never_appends_to_a_segment_with_skipped_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 6)?;
    let first = segment_path(dir.path(), Lsn::new(1));
    patch(&first, offset_of(0) + 4, &[0, 0, 0, 0])?;
    patch(&segment_path(dir.path(), Lsn::new(5)), 16, &[9])?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    assert_eq!(log.append(b"new")?, Lsn::new(2));
    log.close()?;
    assert_eq!(fs::metadata(&first)?.len(), offset_of(4));
    let (log, _) = Log::open(dir.path(), small())?;
    assert_eq!(replayed(&log)?, vec![(Lsn::new(2), b"new".to_vec())]);
    Ok(())
}

#[test]
fn recovery_corrupt_record_in_the_last_segment_is_cut() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 11)?;
    let last = segment_path(dir.path(), Lsn::new(9));
    let at = offset_of(1) + 5; // the checksum of LSN 10
    patch(&last, at, &[0xAA])?;
    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(replayed(&log)?, numbered(1..=9));
    assert_eq!(recovery.truncated_bytes, offset_of(3) - offset_of(1));
    assert_eq!(recovery.corruptions.len(), 1);
    assert_eq!(recovery.corruptions[0].action, CorruptionAction::Truncated);
    assert_eq!(recovery.corruptions[0].offset, offset_of(1));
    assert_eq!(fs::metadata(&last)?.len(), offset_of(1));
    Ok(())
}

#[test]
fn recovery_length_ffffffff_is_corruption() -> TestResult {
    // In the last segment: cut.
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 7)?;
    let last = segment_path(dir.path(), Lsn::new(5));
    patch(&last, offset_of(2), &u32::MAX.to_le_bytes())?;
    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(replayed(&log)?, numbered(1..=6));
    let c = &recovery.corruptions[0];
    assert_eq!(
        c.reason,
        CorruptionReason::LengthTooLarge {
            len: u32::MAX,
            max: 64
        }
    );
    assert_eq!(
        (c.offset, c.action),
        (offset_of(2), CorruptionAction::Truncated)
    );
    drop(log);

    // In an earlier segment: the rest of that segment is skipped, the next one replays.
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 7)?;
    let first = segment_path(dir.path(), Lsn::new(1));
    patch(&first, offset_of(0), &u32::MAX.to_le_bytes())?;
    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(replayed(&log)?, numbered(5..=7));
    assert_eq!(
        recovery.corruptions[0].action,
        CorruptionAction::SkippedRest
    );
    Ok(())
}

#[test]
fn recovery_bad_header_of_an_earlier_segment_skips_that_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 12)?;
    let middle = segment_path(dir.path(), Lsn::new(5));
    patch(&middle, 0, b"garbage!")?;
    let (log, recovery) = Log::open(dir.path(), small())?;
    let mut want = numbered(1..=4);
    want.extend(numbered(9..=12));
    assert_eq!(replayed(&log)?, want);
    assert_eq!(recovery.corruptions[0].reason, CorruptionReason::BadMagic);
    assert_eq!(
        recovery.corruptions[0].action,
        CorruptionAction::SkippedFile
    );
    assert!(middle.exists());
    Ok(())
}

/// Found by the `log_recovery` fuzz target: with every segment's header damaged, the first
/// is skipped (kept on disk) and the last removed; the new segment must not take the
/// skipped one's name.
#[test]
fn recovery_with_no_readable_segment_starts_past_the_skipped_ones() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 6)?;
    let first = segment_path(dir.path(), Lsn::new(1));
    patch(&first, 0, b"garbage!")?;
    patch(&segment_path(dir.path(), Lsn::new(5)), 16, &[9])?;
    let (mut log, recovery) = Log::open(dir.path(), small())?;
    let actions: Vec<_> = recovery.corruptions.iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        [CorruptionAction::SkippedFile, CorruptionAction::Removed]
    );
    assert!(payloads(&log)?.is_empty());
    assert_eq!(log.append(b"new")?, Lsn::new(2));
    log.close()?;
    let (log, _) = Log::open(dir.path(), small())?;
    assert_eq!(replayed(&log)?, vec![(Lsn::new(2), b"new".to_vec())]);
    assert!(first.exists());
    Ok(())
}

#[test]
fn snapshot_then_appends_then_reopen_gives_snapshot_and_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    for i in 1..=10 {
        log.append(&rec(i))?;
    }
    // The live state: say, only the even records still matter.
    let state: Vec<Vec<u8>> = (1..=10).filter(|i| i % 2 == 0).map(rec).collect();
    assert_eq!(log.write_snapshot(&state)?, Lsn::new(10));
    assert_eq!(log.durable_lsn(), Lsn::new(10));
    // Compaction: every older segment is gone; a fresh one starts after the snapshot.
    let segs = files(dir.path(), "seg")?;
    assert_eq!(segs, vec![segment_path(dir.path(), Lsn::new(11))]);
    let stats = log.stats();
    assert_eq!(stats.snapshot_lsn, Some(Lsn::new(10)));
    assert_eq!(stats.snapshot_records, 5);
    assert_eq!(
        (stats.records_since_snapshot, stats.bytes_since_snapshot),
        (0, 0)
    );
    for i in 11..=13 {
        log.append(&rec(i))?;
    }
    assert_eq!(log.stats().records_since_snapshot, 3);
    log.close()?;

    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(recovery.snapshot_lsn, Some(Lsn::new(10)));
    assert_eq!(recovery.snapshot_records, 5);
    assert_eq!(recovery.records, 3);
    assert_eq!(recovery.last_lsn, Lsn::new(13));
    let mut want: Vec<_> = state.iter().map(|p| (Lsn::new(10), p.clone())).collect();
    want.extend(numbered(11..=13));
    assert_eq!(replayed(&log)?, want);
    Ok(())
}

#[test]
fn a_second_snapshot_replaces_the_first() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    log.append(&rec(1))?;
    log.write_snapshot([rec(1)])?;
    log.write_snapshot([rec(1)])?; // nothing new: same LSN, same segment
    log.append(&rec(2))?;
    log.write_snapshot([rec(1), rec(2)])?;
    let snaps = files(dir.path(), "snap")?;
    assert_eq!(snaps, vec![dir.path().join("00000000000000000002.snap")]);
    assert_eq!(files(dir.path(), "seg")?.len(), 1);
    drop(log);
    let (log, _) = Log::open(dir.path(), small())?;
    assert_eq!(payloads(&log)?, vec![rec(1), rec(2)]);
    Ok(())
}

#[test]
fn recovery_ignores_a_snapshot_left_as_a_temp_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 6)?;
    // A crash between writing the snapshot and renaming it.
    let temp = dir.path().join("00000000000000000006.snap.tmp");
    fs::write(&temp, b"half a snapshot")?;
    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(recovery.snapshot_lsn, None);
    assert_eq!(recovery.removed_files, vec![temp.clone()]);
    assert!(!temp.exists());
    assert_eq!(replayed(&log)?, numbered(1..=6));
    Ok(())
}

#[test]
fn recovery_finishes_a_compaction_cut_short_after_the_rename() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_records(dir.path(), small(), 9)?;
    // A crash after the snapshot covering 1..=6 was renamed into place, before compaction.
    snapshot::write(dir.path(), Lsn::new(6), [b"state"], 64)?;
    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(recovery.snapshot_lsn, Some(Lsn::new(6)));
    assert_eq!(
        recovery.removed_files,
        vec![segment_path(dir.path(), Lsn::new(1))]
    );
    let mut want = vec![(Lsn::new(6), b"state".to_vec())];
    want.extend(numbered(7..=9));
    assert_eq!(replayed(&log)?, want);
    Ok(())
}

#[test]
fn recovery_falls_back_from_a_damaged_snapshot() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    for i in 1..=3 {
        log.append(&rec(i))?;
    }
    log.write_snapshot([b"old state"])?;
    for i in 4..=9 {
        log.append(&rec(i))?;
    }
    log.close()?;
    // A newer snapshot that is damaged (written, then bit rot): the segments are still there.
    let newer = snapshot::write(dir.path(), Lsn::new(9), [b"new state"], 64)?;
    patch(&newer.path, HEADER_LEN as u64 + 9, b"X")?;
    let (log, recovery) = Log::open(dir.path(), small())?;
    assert_eq!(recovery.snapshot_lsn, Some(Lsn::new(3)));
    assert_eq!(recovery.corruptions.len(), 1);
    assert_eq!(recovery.corruptions[0].file, newer.path);
    assert_eq!(recovery.corruptions[0].action, CorruptionAction::Ignored);
    let mut want = vec![(Lsn::new(3), b"old state".to_vec())];
    want.extend(numbered(4..=9));
    assert_eq!(replayed(&log)?, want);
    Ok(())
}

#[test]
fn sync_handle_syncs_from_another_thread() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    for i in 1..=6 {
        log.append(&rec(i))?;
    }
    log.flush()?;
    let handle = log.sync_handle();
    assert_eq!(handle.lsn(), Lsn::new(6));
    // Appending on goes on while the sync runs elsewhere.
    log.append(&rec(7))?;
    let synced = std::thread::spawn(move || handle.sync()).join();
    assert_eq!(synced.ok().transpose()?, Some(Lsn::new(6)));
    assert_eq!(log.durable_lsn(), Lsn::new(6));
    assert_eq!(log.stats().last_lsn, Lsn::new(7));
    // A handle made before a roll: the roll already made its records durable.
    let early = log.sync_handle();
    log.append(&rec(8))?;
    log.append(&rec(9))?;
    log.flush()?;
    assert_eq!(early.sync()?, Lsn::new(6));
    Ok(())
}

#[test]
fn a_sync_done_elsewhere_is_reported_through_the_handle() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), small())?;
    for i in 1..=3 {
        log.append(&rec(i))?;
    }
    log.flush()?;
    let handle = log.sync_handle();
    assert!(handle.needs_sync()?);
    // The caller syncs the descriptor its own way (the server: through its io_uring).
    let file = std::fs::File::from(handle.fd().try_clone_to_owned()?);
    let result = file.sync_data();
    assert_eq!(handle.synced(result)?, Lsn::new(3));
    assert_eq!(log.durable_lsn(), Lsn::new(3));
    // Already covered: no second sync needed.
    assert!(!log.sync_handle().needs_sync()?);

    // A failed sync poisons the log: every later handle and append says so.
    log.append(&rec(4))?;
    log.flush()?;
    let failing = log.sync_handle();
    let err = failing.synced(Err(std::io::Error::other("disk gone")));
    assert!(err.is_err());
    assert!(log.sync_handle().needs_sync().is_err());
    assert!(log.append(&rec(5)).is_err());
    assert_eq!(log.durable_lsn(), Lsn::new(3));
    Ok(())
}

#[test]
fn sync_handles_can_go_to_blocking_threads() {
    fn send_static<T: Send + 'static>() {}
    send_static::<SyncHandle>();
    send_static::<Log>();
}

#[test]
fn open_creates_missing_directories() -> TestResult {
    let dir = tempfile::tempdir()?;
    let nested = dir.path().join("shard-0").join("shadows");
    let (mut log, _) = Log::open(&nested, small())?;
    log.append(b"x")?;
    log.close()?;
    assert!(segment_path(&nested, Lsn::new(1)).exists());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random appends, flushes, syncs, snapshots, reopens and crashes (a cut of the last
    /// segment anywhere after its last synced byte): replay always yields a prefix of what
    /// was appended that includes everything synced.
    #[test]
    fn replay_is_a_prefix_that_keeps_everything_synced(ops in prop::collection::vec(op(), 1..60)) {
        check_ops(&ops).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<u8>),
    Flush,
    Sync,
    SyncOnAnotherThread,
    Snapshot,
    Reopen,
    Crash(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..60).prop_map(Op::Append),
        2 => Just(Op::Flush),
        1 => Just(Op::Sync),
        1 => Just(Op::SyncOnAnotherThread),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Reopen),
        1 => any::<u32>().prop_map(Op::Crash),
    ]
}

/// Where the last sync left the segment being written: cutting it shorter would lose
/// synced data, which no crash can do.
fn synced_end(log: &Log) -> (PathBuf, u64) {
    (log.active.meta.path.clone(), log.active.meta.len)
}

fn check_ops(ops: &[Op]) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        segment_bytes: 200,
        max_record_bytes: 64,
    };
    let (mut log, _) = Log::open(dir.path(), config.clone())?;
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut durable = 0usize;
    let mut synced = synced_end(&log);
    for op in ops {
        match op {
            Op::Append(p) => {
                model.push(p.clone());
                assert_eq!(log.append(p)?, Lsn::new(model.len() as u64));
            }
            Op::Flush => log.flush()?,
            Op::Sync => {
                durable = log.sync()?.get() as usize;
                synced = synced_end(&log);
            }
            Op::SyncOnAnotherThread => {
                log.flush()?;
                let handle = log.sync_handle();
                let lsn = std::thread::spawn(move || handle.sync())
                    .join()
                    .map_err(|_| "sync thread panicked")??;
                durable = durable.max(lsn.get() as usize);
                synced = synced_end(&log);
            }
            Op::Snapshot => {
                log.write_snapshot(&model)?;
                durable = model.len();
                synced = synced_end(&log);
            }
            Op::Reopen | Op::Crash(_) => {
                let last = log.active.meta.path.clone();
                drop(log);
                if let Op::Crash(at) = op {
                    let len = fs::metadata(&last)?.len();
                    let floor = if last == synced.0 {
                        synced.1
                    } else {
                        HEADER_LEN as u64
                    };
                    let cut = floor + u64::from(*at) % (len - floor + 1);
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&last)?
                        .set_len(cut)?;
                }
                let (reopened, recovery) = Log::open(dir.path(), config.clone())?;
                log = reopened;
                let got = payloads(&log)?;
                assert!(
                    got.len() >= durable,
                    "lost synced records: {} < {durable}",
                    got.len()
                );
                assert_eq!(&got[..], &model[..got.len()]);
                assert_eq!(recovery.last_lsn, Lsn::new(got.len() as u64));
                let unexpected = recovery
                    .corruptions
                    .iter()
                    .any(|c| c.action != CorruptionAction::Truncated);
                assert!(!unexpected, "{:?}", recovery.corruptions);
                model.truncate(got.len());
                // Anything recovered is durable after open.
                durable = got.len();
                synced = synced_end(&log);
            }
        }
    }
    Ok(())
}

/// Recovery speed: 1,000,000 records of 250 bytes. Run with
/// `cargo test --release -p iotcore-core log::tests::recovery_of_a_million_records -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn recovery_of_a_million_records() -> TestResult {
    use std::time::Instant;
    let dir = tempfile::tempdir_in(
        std::env::var_os("LOG_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()),
    )?;
    let n = 1_000_000u64;
    let mut payload = vec![0u8; 250];
    let start = Instant::now();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default())?;
    for i in 0..n {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        log.append(&payload)?;
        if i % 1000 == 999 {
            log.flush()?;
        }
    }
    log.close()?;
    let wrote = start.elapsed();

    let start = Instant::now();
    let (log, recovery) = Log::open(dir.path(), LogConfig::default())?;
    let opened = start.elapsed();
    let (mut count, mut sum) = (0u64, 0u64);
    log.replay(|_, p| {
        count += 1;
        sum += u64::from(p[0]);
        Ok::<(), LogError>(())
    })?;
    let total = start.elapsed();
    assert_eq!((count, recovery.records), (n, n));
    let bytes = log.stats().segment_bytes;
    println!(
        "1M x 250 B ({} MiB, {} segments): append+flush+sync {:?}; open (scan, checksums) {:?}; open + replay {:?}; (sum {sum})",
        bytes >> 20,
        recovery.segments,
        wrote,
        opened,
        total
    );
    assert!(total.as_secs_f64() < 2.0);
    Ok(())
}
