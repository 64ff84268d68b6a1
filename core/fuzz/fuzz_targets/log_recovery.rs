//! The log's recovery on damaged directories: a small log is written through the public API,
//! its files are then damaged as the input says, and `Log::open` must neither panic nor
//! misreport.
//!
//! Input: byte 0 = records to append (mod 24); byte 1 = segment size (64 + 4 * b); then one
//! byte per record (its length, mod 48, and fill); then 4-byte damage operations:
//! `[kind, file, offset, value]` where kind mod 4 is 0: xor a byte with `value`, 1: write
//! `0xFFFFFFFF` (a length field), 2: truncate the file at the offset, 3: append the rest of
//! the input raw to the last segment and stop. `file` picks the segment (mod the count),
//! `offset` is scaled to the file's length.
//!
//! Checks: open succeeds (damage is reported, not returned); replay yields exactly
//! `Recovery::records` records with increasing LSNs; a second open finds nothing left to cut
//! and replays the same records.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use iotcore_core::log::{CorruptionAction, Log, LogConfig, LogError, Lsn, Recovery};
use libfuzzer_sys::fuzz_target;

static RUN: AtomicU64 = AtomicU64::new(0);

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn replay(log: &Log) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    log.replay(|lsn, p| {
        out.push((lsn, p.to_vec()));
        Ok::<(), LogError>(())
    })
    .expect("replay of what recovery accepted");
    out
}

fn run(dir: &Path, data: &[u8]) {
    let [count, seg, rest @ ..] = data else {
        return;
    };
    let config = LogConfig {
        segment_bytes: 64 + 4 * u64::from(*seg),
        max_record_bytes: 48,
    };
    let count = usize::from(count % 24).min(rest.len());
    let (lens, mut ops) = rest.split_at(count);
    {
        let (mut log, _) = Log::open(dir, config.clone()).expect("open empty");
        for (i, b) in lens.iter().enumerate() {
            log.append(&vec![i as u8; usize::from(b % 48)]).expect("append");
        }
        log.close().expect("close");
    }
    while let [kind, file, offset, value, tail @ ..] = ops {
        ops = tail;
        let segs = segments(dir);
        let Some(path) = segs.get(usize::from(*file) % segs.len().max(1)) else {
            break;
        };
        let Ok(mut bytes) = fs::read(path) else { break };
        let at = bytes.len() * usize::from(*offset) / 256;
        match kind % 4 {
            0 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= value;
                }
            }
            1 => {
                for b in bytes.iter_mut().skip(at).take(4) {
                    *b = 0xFF;
                }
            }
            2 => bytes.truncate(at),
            _ => {
                if let Some(last) = segs.last() {
                    let mut raw = fs::read(last).unwrap_or_default();
                    raw.extend_from_slice(tail);
                    let _ = fs::write(last, raw);
                }
                break;
            }
        }
        let _ = fs::write(path, bytes);
    }

    let (log, recovery) = Log::open(dir, config.clone()).expect("recovery reports damage");
    let first = replay(&log);
    check(&first, &recovery);
    drop(log);
    let (log, again) = Log::open(dir, config).expect("second open");
    assert!(
        again
            .corruptions
            .iter()
            .all(|c| c.action != CorruptionAction::Truncated && c.action != CorruptionAction::Removed),
        "{:?}",
        again.corruptions
    );
    assert_eq!(again.truncated_bytes, 0);
    assert_eq!(replay(&log), first);
}

fn check(records: &[(Lsn, Vec<u8>)], recovery: &Recovery) {
    assert_eq!(records.len() as u64, recovery.records);
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
    if let Some((lsn, _)) = records.last() {
        assert!(*lsn <= recovery.last_lsn);
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!(
        "iotcore-fuzz-log-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    run(&dir, data);
    let _ = fs::remove_dir_all(&dir);
});
