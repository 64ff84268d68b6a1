//! A shard's shadows: every slot it owns, in memory, and the log that makes them durable.
//!
//! Each accepted change appends one record holding the shadow's whole new slot (a few
//! hundred bytes), so replay is "last record per shadow wins" and needs no merge logic.
//! When the log since the last snapshot outgrows both the configured threshold and twice
//! the live state, the live slots are written as a snapshot and older segments dropped.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use iotcore_core::log::{Log, LogError, Lsn, Recovery};
use iotcore_core::shadow::{ShadowKey, ShadowName, ShadowSlot, ThingName};
use serde::{Deserialize, Serialize};

/// One log record: a shadow's slot after a change.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(rename = "k")]
    key: ShadowKey,
    #[serde(rename = "s")]
    slot: ShadowSlot,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("shadow log: {0}")]
    Log(#[from] LogError),
    #[error("shadow log record {lsn:?} in {dir} is not a shadow record: {message}")]
    BadRecord {
        dir: String,
        lsn: Lsn,
        message: String,
    },
}

pub struct ShadowStore {
    slots: HashMap<ShadowKey, ShadowSlot, foldhash::fast::RandomState>,
    /// Named shadows per thing, sorted, for ListNamedShadowsForThing.
    named: HashMap<ThingName, BTreeSet<ShadowName>, foldhash::fast::RandomState>,
    log: Log,
    compact_after_bytes: u64,
    /// Bytes of the live slots' records, for the compaction rule.
    live_bytes: u64,
    /// Reused for every record.
    scratch: Vec<u8>,
}

impl ShadowStore {
    /// Opens the log in `dir` and rebuilds the shadows from it.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        compact_after_bytes: u64,
    ) -> Result<(ShadowStore, Recovery), StoreError> {
        let (log, recovery) = crate::durable::open_log(dir, segment_bytes)?;
        let mut store = ShadowStore {
            slots: HashMap::default(),
            named: HashMap::default(),
            log,
            compact_after_bytes,
            live_bytes: 0,
            scratch: Vec::with_capacity(1024),
        };
        // Replayed straight into the final map, sized for the records there are (a restart
        // with a million shadows spent a third of its time growing maps).
        let records = recovery.snapshot_records + recovery.records;
        store
            .slots
            .reserve(usize::try_from(records).unwrap_or(0).min(1 << 24));
        let (mut replayed_bytes, mut replayed) = (0u64, 0u64);
        {
            let ShadowStore { log, slots, .. } = &mut store;
            log.replay(|lsn, bytes| {
                let record: Record =
                    serde_json::from_slice(bytes).map_err(|e| StoreError::BadRecord {
                        dir: dir.display().to_string(),
                        lsn,
                        message: e.to_string(),
                    })?;
                replayed_bytes += bytes.len() as u64;
                replayed += 1;
                slots.insert(record.key, record.slot);
                Ok::<(), StoreError>(())
            })?;
        }
        let keys: Vec<ShadowKey> = store
            .slots
            .iter()
            .filter(|(k, s)| k.name.is_some() && s.shadow.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            store.index(&key, true);
        }
        // An estimate (average record size times live shadows) is enough for the
        // compaction rule.
        store.live_bytes = replayed_bytes
            .checked_div(replayed)
            .map_or(0, |avg| avg * store.slots.len() as u64);
        Ok((store, recovery))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The things that have a shadow (once per shadow: a thing with named ones repeats).
    pub fn things(&self) -> impl Iterator<Item = &iotcore_core::shadow::ThingName> {
        self.slots
            .iter()
            .filter(|(_, s)| s.shadow.is_some())
            .map(|(k, _)| &k.thing)
    }

    /// The slot of a shadow: an empty one (no shadow, version 0) if it never existed.
    pub fn slot(&self, key: &ShadowKey) -> Option<&ShadowSlot> {
        self.slots.get(key)
    }

    /// Stores a shadow's new slot and appends it to the log; returns the record's LSN.
    pub fn put(&mut self, key: ShadowKey, slot: ShadowSlot) -> Result<Lsn, StoreError> {
        self.scratch.clear();
        let record = Record { key, slot };
        serde_json::to_writer(&mut self.scratch, &record).map_err(|e| StoreError::BadRecord {
            dir: self.log.dir().display().to_string(),
            lsn: self.log.last_lsn(),
            message: e.to_string(),
        })?;
        let lsn = self.log.append(&self.scratch)?;
        let Record { key, slot } = record;
        self.index(&key, slot.shadow.is_some());
        if self.slots.insert(key, slot).is_none() {
            // Grows with new shadows only; a rewrite replaces a record of about the same size.
            self.live_bytes += self.scratch.len() as u64;
        }
        Ok(lsn)
    }

    /// Keeps the named-shadow index in step: `exists` is whether the shadow now exists.
    fn index(&mut self, key: &ShadowKey, exists: bool) {
        let Some(name) = &key.name else { return };
        if exists {
            self.named
                .entry(key.thing.clone())
                .or_default()
                .insert(name.clone());
        } else if let Some(names) = self.named.get_mut(&key.thing) {
            names.remove(name);
            if names.is_empty() {
                self.named.remove(&key.thing);
            }
        }
    }

    /// Up to `page` names of the thing's named shadows after `after`, and whether more follow.
    pub fn list_named(
        &self,
        thing: &ThingName,
        after: Option<&str>,
        page: usize,
    ) -> (Vec<String>, bool) {
        let Some(names) = self.named.get(thing) else {
            return (Vec::new(), false);
        };
        let mut iter = names
            .iter()
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .map(|n| n.as_str().to_string());
        let out: Vec<String> = iter.by_ref().take(page).collect();
        let more = iter.next().is_some();
        (out, more)
    }

    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    pub fn last_lsn(&self) -> Lsn {
        self.log.last_lsn()
    }

    /// Writes a snapshot when the log has grown past the rule in the module comment.
    pub fn maybe_compact(&mut self) -> Result<bool, StoreError> {
        let since = self.log.stats().bytes_since_snapshot;
        if since < self.compact_after_bytes || since < 2 * self.live_bytes {
            return Ok(false);
        }
        let mut records = Vec::with_capacity(self.slots.len());
        for (key, slot) in &self.slots {
            let bytes = serde_json::to_vec(&RecordRef { key, slot }).map_err(|e| {
                StoreError::BadRecord {
                    dir: self.log.dir().display().to_string(),
                    lsn: self.log.last_lsn(),
                    message: e.to_string(),
                }
            })?;
            records.push(bytes);
        }
        self.live_bytes = records.iter().map(|r| r.len() as u64).sum();
        self.log.write_snapshot(records)?;
        Ok(true)
    }
}

#[derive(Serialize)]
struct RecordRef<'a> {
    #[serde(rename = "k")]
    key: &'a ShadowKey,
    #[serde(rename = "s")]
    slot: &'a ShadowSlot,
}
