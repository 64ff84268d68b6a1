//! Persistent sessions (session expiry > 0) on the shard's `sessions/` log, so that a
//! restart keeps their subscriptions and every QoS 1/2 message they are owed. The PUBACK of
//! a message queued for such a session waits for the fsync of this record.
//!
//! Records, `[format 1][kind]` then:
//! - 1 session: JSON `{c, e, o, s:[{f, q, nl, rap, rh, id}]}` (client id, expiry seconds,
//!   offline since (Unix ms) if offline, subscriptions) — rewritten whole on every change;
//! - 2 queued: `[client len u16][client][seq u64][qos u8][retain u8][ids count u16][ids u32..]`
//!   then the message in its stored form (`stored_message`);
//! - 3 done: `[client len u16][client][seq u64]`: acknowledged, or dropped;
//! - 4 ended: `[client len u16][client]`: the session ended or moved to another shard.
//!
//! Replay keeps, per client, the last session record and the queued messages not done
//! since; compaction snapshots exactly that.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytestring::ByteString;
use iotcore_core::log::{LogError, Recovery};
use iotcore_core::mqtt::{QoS, RetainHandling, SubscriptionOptions};
use iotcore_core::topic::SubscriptionFilter;
use serde::{Deserialize, Serialize};

use crate::durable::DurableLog;
use crate::ids::ClientId;
use crate::message::Delivery;
use crate::session::{Session, SubscriptionRecord};
use crate::stored_message::{self, unix_ms};

const FORMAT: u8 = 1;
const SESSION: u8 = 1;
const QUEUED: u8 = 2;
const DONE: u8 = 3;
const ENDED: u8 = 4;

#[derive(Serialize, Deserialize)]
struct SessionRecord {
    #[serde(rename = "c")]
    client: String,
    #[serde(rename = "e")]
    expiry_secs: u32,
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    offline_since_ms: Option<u64>,
    #[serde(rename = "s")]
    subscriptions: Vec<SubRecord>,
}

#[derive(Serialize, Deserialize)]
struct SubRecord {
    f: String,
    q: u8,
    nl: bool,
    rap: bool,
    rh: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
}

/// A session as replay found it.
pub struct RecoveredSession {
    pub client_id: ClientId,
    pub expiry_secs: u32,
    pub offline_since_ms: Option<u64>,
    pub subscriptions: Vec<SubscriptionRecord>,
    /// Owed messages, oldest first (expired ones left out).
    pub deliveries: Vec<(QoS, Delivery)>,
}

#[derive(Default)]
struct Image {
    session: Vec<u8>,
    queued: BTreeMap<u64, Vec<u8>>,
}

impl Image {
    fn bytes(&self) -> u64 {
        (self.session.len() + self.queued.values().map(Vec::len).sum::<usize>()) as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("session log: {0}")]
    Log(#[from] LogError),
    #[error("session log record at {lsn:?} in {dir}: {message}")]
    BadRecord {
        dir: String,
        lsn: iotcore_core::log::Lsn,
        message: String,
    },
}

pub struct SessionStore {
    pub log: DurableLog,
    live: HashMap<ClientId, Image, foldhash::fast::RandomState>,
    compact_after_bytes: u64,
    scratch: Vec<u8>,
}

impl SessionStore {
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        compact_after_bytes: u64,
        durable: bool,
    ) -> Result<(SessionStore, Vec<RecoveredSession>, Recovery), SessionStoreError> {
        let (log, recovery) = crate::durable::open_log(dir, segment_bytes)?;
        let mut live: HashMap<ClientId, Image, foldhash::fast::RandomState> = HashMap::default();
        log.replay(|lsn, bytes| {
            apply(&mut live, bytes).map_err(|message| SessionStoreError::BadRecord {
                dir: dir.display().to_string(),
                lsn,
                message,
            })
        })?;
        let now_ms = unix_ms();
        let mut recovered = Vec::with_capacity(live.len());
        let mut gone = Vec::new();
        for (client, image) in &live {
            match recover(image, now_ms) {
                Ok(Some(s)) => recovered.push(s),
                Ok(None) => gone.push(client.clone()),
                Err(message) => {
                    tracing::warn!(dir = %dir.display(), client_id = %client, %message, "persistent session skipped");
                    gone.push(client.clone());
                }
            }
        }
        let mut store = SessionStore {
            log: DurableLog::new(log, durable),
            live,
            compact_after_bytes,
            scratch: Vec::new(),
        };
        // Sessions that expired while the server was down (or cannot be read) end now, so
        // they do not linger in snapshots.
        for client in gone {
            store.ended(&client)?;
        }
        Ok((store, recovered, recovery))
    }

    /// Writes the session's record (subscriptions, expiry, online or not). Returns true
    /// when the session was not persisted here before.
    pub fn put_session(
        &mut self,
        session: &Session,
        offline_since_ms: Option<u64>,
    ) -> Result<bool, SessionStoreError> {
        let record = SessionRecord {
            client: session.client_id.as_str().to_string(),
            expiry_secs: session.expiry_secs,
            offline_since_ms,
            subscriptions: session
                .subscriptions
                .values()
                .map(|r| SubRecord {
                    f: r.filter.full().to_string(),
                    q: r.options.qos as u8,
                    nl: r.options.no_local,
                    rap: r.options.retain_as_published,
                    rh: r.options.retain_handling as u8,
                    id: r.id,
                })
                .collect(),
        };
        let mut bytes = vec![FORMAT, SESSION];
        serde_json::to_writer(&mut bytes, &record).map_err(|e| self.bad(e.to_string()))?;
        self.log.append(&bytes)?;
        let image = self.live.entry(session.client_id.clone());
        let new = matches!(image, std::collections::hash_map::Entry::Vacant(_));
        image.or_default().session = bytes;
        Ok(new)
    }

    /// Writes the session and every message it is owed (a session that just arrived on
    /// this shard). Returns true when it was not persisted here before.
    pub fn put_session_full(&mut self, session: &Session) -> Result<bool, SessionStoreError> {
        let new = self.put_session(session, None)?;
        for (qos, delivery) in session.outbound.all() {
            if delivery.seq != 0 {
                self.queued(&session.client_id, delivery, qos)?;
            }
        }
        Ok(new)
    }

    /// A QoS 1/2 message was queued for a persistent session (`delivery.seq` set).
    pub fn queued(
        &mut self,
        client: &ClientId,
        delivery: &Delivery,
        qos: QoS,
    ) -> Result<(), SessionStoreError> {
        let mut r = std::mem::take(&mut self.scratch);
        r.clear();
        r.extend_from_slice(&[FORMAT, QUEUED]);
        put_client(&mut r, client);
        r.extend_from_slice(&delivery.seq.to_le_bytes());
        r.push(qos as u8);
        r.push(u8::from(delivery.retain));
        let ids = u16::try_from(delivery.subscription_ids.len()).unwrap_or(u16::MAX);
        r.extend_from_slice(&ids.to_le_bytes());
        for id in delivery.subscription_ids.iter().take(usize::from(ids)) {
            r.extend_from_slice(&id.to_le_bytes());
        }
        let encoded = stored_message::encode(&delivery.message, &mut r);
        let result = match encoded {
            Ok(()) => self.log.append(&r).map(|_| ()).map_err(Into::into),
            Err(e) => Err(self.bad(e)),
        };
        if result.is_ok() {
            if let Some(image) = self.live.get_mut(client) {
                image.queued.insert(delivery.seq, r.clone());
            }
        }
        self.scratch = r;
        result
    }

    /// A queued message was acknowledged (or dropped).
    pub fn done(&mut self, client: &ClientId, seq: u64) -> Result<(), SessionStoreError> {
        let Some(image) = self.live.get_mut(client) else {
            return Ok(());
        };
        if image.queued.remove(&seq).is_none() {
            return Ok(());
        }
        let mut r = vec![FORMAT, DONE];
        put_client(&mut r, client);
        r.extend_from_slice(&seq.to_le_bytes());
        self.log.append(&r)?;
        Ok(())
    }

    /// The session ended or left this shard. Returns true if it was persisted here.
    pub fn ended(&mut self, client: &ClientId) -> Result<bool, SessionStoreError> {
        if self.live.remove(client).is_none() {
            return Ok(false);
        }
        let mut r = vec![FORMAT, ENDED];
        put_client(&mut r, client);
        self.log.append(&r)?;
        Ok(true)
    }

    pub fn compact_if_due(&mut self) {
        let since = self.log.log().stats().bytes_since_snapshot;
        let live: u64 = self.live.values().map(Image::bytes).sum();
        if self.log.failed() || since < self.compact_after_bytes || since < 2 * live {
            return;
        }
        let records = self
            .live
            .values()
            .flat_map(|i| std::iter::once(&i.session).chain(i.queued.values()));
        match self.log.log_mut().write_snapshot(records) {
            Ok(_) => tracing::info!(sessions = self.live.len(), "session log compacted"),
            Err(e) => tracing::error!(error = %e, "session log compaction failed"),
        }
    }

    fn bad(&self, message: String) -> SessionStoreError {
        SessionStoreError::BadRecord {
            dir: self.log.log().dir().display().to_string(),
            lsn: self.log.log().last_lsn(),
            message,
        }
    }
}

impl crate::durable::Logged for SessionStore {
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
        SessionStore::compact_if_due(self);
    }
}

fn put_client(r: &mut Vec<u8>, client: &ClientId) {
    let bytes = client.as_str().as_bytes();
    // Client ids are at most 65535 bytes (limits.max_client_id_bytes is checked to be).
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(&bytes[..usize::from(len)]);
}

/// Reads `[len u16][client]` at `at`; returns the client and the offset after it.
fn get_client(bytes: &[u8], at: usize) -> Result<(ClientId, usize), String> {
    let len = bytes
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or("short record")?;
    let raw = bytes.get(at + 2..at + 2 + len).ok_or("short record")?;
    let s = std::str::from_utf8(raw).map_err(|_| "client id is not UTF-8")?;
    Ok((ClientId::from(s), at + 2 + len))
}

fn get_u64(bytes: &[u8], at: usize) -> Result<u64, String> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| "short record".to_string())
}

fn apply(
    live: &mut HashMap<ClientId, Image, foldhash::fast::RandomState>,
    bytes: &[u8],
) -> Result<(), String> {
    if bytes.len() < 2 || bytes[0] != FORMAT {
        return Err("unknown record format".into());
    }
    match bytes[1] {
        SESSION => {
            let record: SessionRecord =
                serde_json::from_slice(&bytes[2..]).map_err(|e| e.to_string())?;
            let client = ClientId::from(record.client);
            live.entry(client).or_default().session = bytes.to_vec();
        }
        QUEUED => {
            let (client, at) = get_client(bytes, 2)?;
            let seq = get_u64(bytes, at)?;
            if let Some(image) = live.get_mut(&client) {
                image.queued.insert(seq, bytes.to_vec());
            }
        }
        DONE => {
            let (client, at) = get_client(bytes, 2)?;
            let seq = get_u64(bytes, at)?;
            if let Some(image) = live.get_mut(&client) {
                image.queued.remove(&seq);
            }
        }
        ENDED => {
            let (client, _) = get_client(bytes, 2)?;
            live.remove(&client);
        }
        k => return Err(format!("unknown record kind {k}")),
    }
    Ok(())
}

/// The session of an image, `None` if it has expired.
fn recover(image: &Image, now_ms: u64) -> Result<Option<RecoveredSession>, String> {
    let record: SessionRecord =
        serde_json::from_slice(image.session.get(2..).ok_or("empty session record")?)
            .map_err(|e| e.to_string())?;
    if let Some(since) = record.offline_since_ms {
        if now_ms.saturating_sub(since) >= u64::from(record.expiry_secs) * 1000 {
            return Ok(None);
        }
    }
    let mut subscriptions = Vec::with_capacity(record.subscriptions.len());
    for s in record.subscriptions {
        let filter = SubscriptionFilter::parse(ByteString::from(s.f)).map_err(|e| e.to_string())?;
        let retain_handling = match s.rh {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            _ => RetainHandling::Never,
        };
        subscriptions.push(SubscriptionRecord {
            filter,
            options: SubscriptionOptions {
                qos: QoS::from_u8(s.q).ok_or("bad subscription QoS")?,
                no_local: s.nl,
                retain_as_published: s.rap,
                retain_handling,
            },
            id: s.id,
        });
    }
    let mut deliveries = Vec::with_capacity(image.queued.len());
    for bytes in image.queued.values() {
        if let Some(d) = queued_delivery(bytes, now_ms)? {
            deliveries.push(d);
        }
    }
    Ok(Some(RecoveredSession {
        client_id: ClientId::from(record.client),
        expiry_secs: record.expiry_secs,
        offline_since_ms: record.offline_since_ms,
        subscriptions,
        deliveries,
    }))
}

fn queued_delivery(bytes: &[u8], now_ms: u64) -> Result<Option<(QoS, Delivery)>, String> {
    let (_, at) = get_client(bytes, 2)?;
    let seq = get_u64(bytes, at)?;
    let fixed = bytes.get(at + 8..at + 12).ok_or("short record")?;
    let qos = QoS::from_u8(fixed[0]).ok_or("bad QoS")?;
    let retain = fixed[1] != 0;
    let count = usize::from(u16::from_le_bytes([fixed[2], fixed[3]]));
    let mut at = at + 12;
    let mut subscription_ids = Vec::with_capacity(count);
    for _ in 0..count {
        let id = bytes.get(at..at + 4).ok_or("short record")?;
        subscription_ids.push(u32::from_le_bytes([id[0], id[1], id[2], id[3]]));
        at += 4;
    }
    let Some(message) = stored_message::decode_message(&bytes[at..], now_ms)? else {
        return Ok(None);
    };
    Ok(Some((
        qos,
        Delivery {
            message,
            retain,
            subscription_ids,
            seq,
        },
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use iotcore_core::mqtt::PublishProperties;

    use super::*;
    use crate::message::Message;

    fn delivery(seq: u64, payload: &'static [u8]) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: ByteString::from_static("q/1"),
                payload: Bytes::from_static(payload),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
                publisher: Some(ClientId::from("p")),
            }),
            retain: false,
            subscription_ids: vec![7],
            seq,
        }
    }

    fn session(client: &str, expiry: u32) -> Session {
        let mut s = Session::new(ClientId::from(client), 10, 100, 10);
        s.expiry_secs = expiry;
        s.subscriptions.insert(
            ByteString::from_static("q/#"),
            SubscriptionRecord {
                filter: SubscriptionFilter::parse(ByteString::from_static("q/#")).unwrap(),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                id: Some(7),
            },
        );
        s
    }

    #[test]
    fn sessions_messages_acks_and_ends_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, found, _) = SessionStore::open(dir.path(), 4096, 0, true).unwrap();
            assert!(found.is_empty());
            let a = session("a", 3600);
            assert!(store.put_session(&a, None).unwrap(), "first write is new");
            assert!(!store.put_session(&a, Some(unix_ms())).unwrap());
            for (seq, p) in [(10, &b"one"[..]), (11, b"two"), (12, b"three")] {
                let d = delivery(seq, Box::leak(p.to_vec().into_boxed_slice()));
                store.queued(&a.client_id, &d, QoS::AtLeastOnce).unwrap();
            }
            store.done(&a.client_id, 11).unwrap();
            let b = session("b", 3600);
            store.put_session(&b, None).unwrap();
            assert!(store.ended(&b.client_id).unwrap());
            assert!(
                !store.ended(&b.client_id).unwrap(),
                "ending twice is a no-op"
            );
            // An offline session whose expiry already passed.
            let c = session("c", 1);
            store.put_session(&c, Some(unix_ms() - 5_000)).unwrap();
            store.log.log_mut().sync().unwrap();
        }
        let (mut store, found, _) = SessionStore::open(dir.path(), 4096, 0, true).unwrap();
        assert_eq!(found.len(), 1, "b ended, c expired");
        let a = &found[0];
        assert_eq!(a.client_id.as_str(), "a");
        assert_eq!(a.expiry_secs, 3600);
        assert!(a.offline_since_ms.is_some());
        assert_eq!(a.subscriptions.len(), 1);
        assert_eq!(a.subscriptions[0].id, Some(7));
        let payloads: Vec<&[u8]> = a
            .deliveries
            .iter()
            .map(|(_, d)| &d.message.payload[..])
            .collect();
        assert_eq!(payloads, [&b"one"[..], b"three"]);
        assert_eq!(a.deliveries[0].1.subscription_ids, vec![7]);
        // compact_after_bytes = 0: the snapshot keeps exactly the live state.
        store.compact_if_due();
        drop(store);
        let (_, again, _) = SessionStore::open(dir.path(), 4096, 0, true).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].deliveries.len(), 2);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let mut live = HashMap::default();
        for bad in [
            &b""[..],
            &[9, 1],
            &[1, 1, b'{'],
            &[1, 2, 5, 0],
            &[1, 3, 1, 0, b'a', 1],
            &[1, 9],
        ] {
            assert!(apply(&mut live, bad).is_err(), "{bad:?}");
        }
        assert!(queued_delivery(&[1, 2, 1, 0, b'a'], 0).is_err());
    }
}
