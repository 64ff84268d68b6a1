//! Retained messages on disk. Every shard keeps a replica of all retained messages (so a
//! SUBSCRIBE is answered locally), but each topic's changes are written by one owner shard,
//! `crc32(topic) mod shards`, into that shard's `retained/` log. The PUBACK of a retained
//! publish waits for the owner's fsync.
//!
//! Record: `[format 1][kind: 1 set | 0 clear]` then, for a set, the message in its stored
//! form (`stored_message`), for a clear, the topic. Replay keeps the last record per
//! topic; compaction snapshots the live ones.

use std::collections::HashMap;
use std::path::Path;

use bytestring::ByteString;
use iotcore_core::log::{LogError, Recovery};

use crate::durable::DurableLog;
use crate::message::{Message, SharedMessage};
use crate::stored_message::{self, unix_ms};

const FORMAT: u8 = 1;
const SET: u8 = 1;
const CLEAR: u8 = 0;
const HEADER: usize = 2;

pub struct RetainedStore {
    pub log: DurableLog,
    /// The live record of every topic this shard owns, for snapshots.
    live: HashMap<ByteString, Vec<u8>, foldhash::fast::RandomState>,
    live_bytes: u64,
    compact_after_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RetainedError {
    #[error("retained log: {0}")]
    Log(#[from] LogError),
    #[error("retained log record at {lsn:?} in {dir}: {message}")]
    BadRecord {
        dir: String,
        lsn: iotcore_core::log::Lsn,
        message: String,
    },
}

impl RetainedStore {
    /// Opens and replays a shard's retained log: the store, the live messages (unexpired),
    /// and what recovery found.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        compact_after_bytes: u64,
        durable: bool,
    ) -> Result<(RetainedStore, Vec<SharedMessage>, Recovery), RetainedError> {
        let (log, recovery) = crate::durable::open_log(dir, segment_bytes)?;
        let mut live: HashMap<ByteString, Vec<u8>, foldhash::fast::RandomState> =
            HashMap::default();
        log.replay(|lsn, bytes| {
            let topic = record_topic(bytes).map_err(|message| RetainedError::BadRecord {
                dir: dir.display().to_string(),
                lsn,
                message,
            })?;
            if bytes.get(1) == Some(&SET) {
                live.insert(topic, bytes.to_vec());
            } else {
                live.remove(&topic);
            }
            Ok::<(), RetainedError>(())
        })?;
        let now_ms = unix_ms();
        let mut messages = Vec::with_capacity(live.len());
        for record in live.values() {
            match decode_set(record, now_ms) {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => {} // expired while the server was down
                Err(message) => {
                    tracing::warn!(dir = %dir.display(), %message, "retained record skipped")
                }
            }
        }
        let live_bytes = live.values().map(|r| r.len() as u64).sum();
        Ok((
            RetainedStore {
                log: DurableLog::new(log, durable),
                live,
                live_bytes,
                compact_after_bytes,
            },
            messages,
            recovery,
        ))
    }

    /// Records that `topic` now retains `message` (or nothing).
    pub fn record(
        &mut self,
        topic: &ByteString,
        message: Option<&Message>,
    ) -> Result<(), RetainedError> {
        let record = match message {
            Some(m) => encode_set(m).map_err(|message| RetainedError::BadRecord {
                dir: self.log.log().dir().display().to_string(),
                lsn: self.log.log().last_lsn(),
                message,
            })?,
            None => {
                let mut r = header(CLEAR);
                r.extend_from_slice(topic.as_bytes());
                r
            }
        };
        self.log.append(&record)?;
        if let Some(old) = self.live.remove(topic) {
            self.live_bytes -= old.len() as u64;
        }
        if message.is_some() {
            self.live_bytes += record.len() as u64;
            self.live.insert(topic.clone(), record);
        }
        Ok(())
    }

    /// Snapshots the live records once the log since the last snapshot is past both the
    /// configured size and twice the live state.
    pub fn compact_if_due(&mut self) {
        let since = self.log.log().stats().bytes_since_snapshot;
        if self.log.failed() || since < self.compact_after_bytes || since < 2 * self.live_bytes {
            return;
        }
        let records: Vec<&Vec<u8>> = self.live.values().collect();
        match self.log.log_mut().write_snapshot(records) {
            Ok(_) => tracing::info!(retained = self.live.len(), "retained log compacted"),
            Err(e) => tracing::error!(error = %e, "retained log compaction failed"),
        }
    }
}

fn header(kind: u8) -> Vec<u8> {
    let mut r = Vec::with_capacity(64);
    r.push(FORMAT);
    r.push(kind);
    r
}

fn encode_set(m: &Message) -> Result<Vec<u8>, String> {
    let mut r = header(SET);
    stored_message::encode(m, &mut r)?;
    Ok(r)
}

/// The topic a record is about, checking the header.
fn record_topic(bytes: &[u8]) -> Result<ByteString, String> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err("unknown record format".into());
    }
    match bytes[1] {
        CLEAR => std::str::from_utf8(&bytes[HEADER..])
            .map(ByteString::from)
            .map_err(|_| "topic is not UTF-8".to_string()),
        SET => stored_message::topic(&bytes[HEADER..]),
        k => Err(format!("unknown record kind {k}")),
    }
}

/// The message of a set record, `None` if it expired.
fn decode_set(bytes: &[u8], now_ms: u64) -> Result<Option<SharedMessage>, String> {
    stored_message::decode_message(bytes.get(HEADER..).ok_or("short record")?, now_ms)
}

impl crate::durable::Logged for RetainedStore {
    type Waiter = crate::shard::replies::ReplyTo;
    fn log_and_queue(
        &mut self,
    ) -> (
        &mut iotcore_core::log::Log,
        &mut crate::durable::CommitQueue<Self::Waiter>,
    ) {
        self.log.log_and_queue()
    }
    fn compact_if_due(&mut self) {
        RetainedStore::compact_if_due(self);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use iotcore_core::mqtt::{PublishProperties, QoS, UserProperty};
    use std::time::{Duration, Instant};

    fn message(topic: &str, payload: &'static [u8], expiry: Option<Duration>) -> Message {
        Message {
            topic: ByteString::from(topic.to_string()),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: PublishProperties {
                content_type: Some(ByteString::from_static("text/plain")),
                user_properties: vec![UserProperty {
                    name: ByteString::from_static("k"),
                    value: ByteString::from_static("v"),
                }],
                ..Default::default()
            },
            expires_at: expiry.map(|d| Instant::now() + d),
            publisher: Some(crate::ids::ClientId::from("pub")),
        }
    }

    #[test]
    fn set_clear_reopen_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, found, _) = RetainedStore::open(dir.path(), 4096, 0, true).unwrap();
            assert!(found.is_empty());
            let a = message("a/b", b"one", None);
            store.record(&a.topic, Some(&a)).unwrap();
            let b = message("c", b"two", Some(Duration::from_secs(3600)));
            store.record(&b.topic, Some(&b)).unwrap();
            let gone = message("d", b"three", None);
            store.record(&gone.topic, Some(&gone)).unwrap();
            store.record(&gone.topic, None).unwrap();
            let short = message("e", b"expired", Some(Duration::from_millis(1)));
            store.record(&short.topic, Some(&short)).unwrap();
            store.log.log_mut().sync().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        let (mut store, mut found, _) = RetainedStore::open(dir.path(), 4096, 0, true).unwrap();
        found.sort_by(|x, y| x.topic.cmp(&y.topic));
        let topics: Vec<&str> = found.iter().map(|m| &*m.topic).collect();
        assert_eq!(topics, ["a/b", "c"]);
        assert_eq!(&found[0].payload[..], b"one");
        assert_eq!(found[0].properties.user_properties.len(), 1);
        assert!(found[1].expires_at.is_some());
        // compact_after_bytes = 0: due at once; the state survives the snapshot.
        store.compact_if_due();
        drop(store);
        let (_, again, _) = RetainedStore::open(dir.path(), 4096, 0, true).unwrap();
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn garbage_records_are_errors_not_panics() {
        assert!(record_topic(b"").is_err());
        assert!(record_topic(&[9; 20]).is_err());
        assert!(record_topic(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x30]).is_err());
        assert!(record_topic(&[1, 0, 0xff]).is_err());
        assert!(decode_set(&[1, 1, 0], 0).is_err());
    }
}
