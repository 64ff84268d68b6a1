//! The shard's view of one live connection: its outbound byte buffer, written by a separate
//! writer task in batches, and a kill switch that other parts of the shard can pull.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use iotcore_core::mqtt::{
    encode, OutgoingPublish, Packet, PacketId, ProtocolVersion, QoS, ReasonCode,
};

use crate::message::Message;
use crate::notify::Notify;

/// The outbound buffer may exceed `max_outbound_bytes` by this factor (a window of large QoS 1
/// messages can), but never more: past it the connection is closed at once.
const HARD_CAP_FACTOR: usize = 16;

/// Why the shard closes a connection on its own initiative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Another connection took the client id ([MQTT-3.1.4-3]).
    TakenOver,
    /// The client does not read fast enough.
    SlowConsumer,
    /// The server is stopping.
    Shutdown,
    /// The writer failed: the peer is gone.
    WriteFailed,
    /// The reader is done with the connection: write what is pending, then stop.
    Closing,
    /// Nothing arrived for 1.5 times the keep-alive (`Shard::expire_keep_alives`).
    KeepAlive,
}

impl Kill {
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Kill::TakenOver => ReasonCode::SessionTakenOver,
            Kill::SlowConsumer => ReasonCode::QuotaExceeded,
            Kill::Shutdown => ReasonCode::ServerShuttingDown,
            Kill::WriteFailed => ReasonCode::UnspecifiedError,
            Kill::Closing => ReasonCode::Success,
            Kill::KeepAlive => ReasonCode::KeepAliveTimeout,
        }
    }
}

/// Topic aliases the server assigns toward this client (MQTT 5), up to the client's
/// Topic Alias Maximum. Assigned first come, first served, and kept for the connection.
#[derive(Default)]
struct OutboundAliases {
    by_topic: HashMap<ByteString, u16>,
}

pub struct ConnHandle {
    pub version: ProtocolVersion,
    /// The client's Maximum Packet Size: larger messages are not sent to it ([MQTT-3.1.2-24]).
    pub client_max_packet: u32,
    client_alias_max: u16,
    /// Boxed, and only once the first alias is assigned: most clients never get one, and
    /// every connection's handle is kept while it is parked (`park.rs`).
    aliases: RefCell<Option<Box<OutboundAliases>>>,
    /// Bytes encoded and not yet handed to the socket.
    buf: RefCell<BytesMut>,
    max_outbound: u32,
    /// The slow-consumer timeout, in milliseconds (fields are kept narrow: see `aliases`).
    slow_timeout_ms: u32,
    /// When the buffer was first seen over `max_outbound` with no write completed since, in
    /// `epoch::millis32`; 0: not stalled. 4 bytes where an `Option<Instant>` took
    /// 16: that kept every handle, kept while parked, out of its allocator class.
    stalled_since_ms: Cell<u32>,
    pub writer_wake: Notify,
    kill: Cell<Option<Kill>>,
    pub kill_wake: Notify,
    /// Set when congestion held deliveries back, so the writer asks for a refill once the
    /// buffer drains.
    held_back: Cell<bool>,
    /// The key of the session this connection serves, once CONNECT is accepted; 0 before
    /// (keys start at 1). Not an `Option`: 8 bytes more would put every handle, kept while
    /// the connection is parked, in the allocator's next size class.
    session_key: Cell<u64>,
    /// When the reader last got bytes, for the shard's keep-alive check.
    pub last_read: Cell<Instant>,
    /// 1.5 times the keep-alive in milliseconds; zero: none.
    keep_alive_ms: Cell<u32>,
    /// A read or a write happened since the idle sweep last looked (`connection/park.rs`).
    pub active: Cell<bool>,
    /// The idle sweep asks the reader to park the connection (sent with `kill_wake`).
    pub park_asked: Cell<bool>,
    /// Looks of the idle sweep in a row that found the connection quiet.
    pub quiet_looks: Cell<u8>,
    /// Quiet looks it takes to park: 1, doubled each time the connection was woken soon
    /// after parking (`park.rs`), so a device that talks every few seconds stops parking.
    pub looks_to_park: Cell<u8>,
    /// The reader parks the connection: the writer stops once nothing is left to write.
    pub stop_writer: Cell<bool>,
    /// The writer is in a write call.
    pub writing: Cell<bool>,
    /// The reader is done (`Kill::Closing` was pulled, whatever the first reason): the
    /// writer stops once it has written what is pending. Not on any kill: the reader may
    /// still have a goodbye to queue (a DISCONNECT with the reason), and a writer started
    /// after the kill (a parked connection brought back by it) runs before the reader.
    closing: Cell<bool>,
    /// What the connection keeps while parked (`park.rs`); `None` while it is awake. Here
    /// rather than in a table of the shard's: the handle has room for it in its allocator
    /// size class, and a table sized for every parked connection cost 32 bytes each.
    pub(crate) resting: Cell<Option<Box<super::park::Resting>>>,
}

impl ConnHandle {
    pub fn new(
        version: ProtocolVersion,
        client_max_packet: u32,
        client_alias_max: u16,
        max_outbound: usize,
        slow_timeout: Duration,
    ) -> ConnHandle {
        ConnHandle {
            version,
            client_max_packet,
            client_alias_max,
            aliases: RefCell::new(None),
            // Allocated by the first packet, not up front: most connections are idle.
            buf: RefCell::new(BytesMut::new()),
            max_outbound: u32::try_from(max_outbound).unwrap_or(u32::MAX),
            slow_timeout_ms: u32::try_from(slow_timeout.as_millis()).unwrap_or(u32::MAX),
            stalled_since_ms: Cell::new(0),
            writer_wake: Notify::default(),
            kill: Cell::new(None),
            kill_wake: Notify::default(),
            held_back: Cell::new(false),
            session_key: Cell::new(0),
            last_read: Cell::new(Instant::now()),
            keep_alive_ms: Cell::new(0),
            active: Cell::new(false),
            park_asked: Cell::new(false),
            quiet_looks: Cell::new(0),
            looks_to_park: Cell::new(1),
            stop_writer: Cell::new(false),
            writing: Cell::new(false),
            closing: Cell::new(false),
            resting: Cell::new(None),
        }
    }

    /// 1.5 times the client's keep-alive; zero: none.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(u64::from(self.keep_alive_ms.get()))
    }

    pub fn set_keep_alive(&self, limit: Duration) {
        self.keep_alive_ms
            .set(u32::try_from(limit.as_millis()).unwrap_or(u32::MAX));
    }

    fn max_outbound(&self) -> usize {
        self.max_outbound as usize
    }

    pub fn session_key(&self) -> Option<crate::ids::SessionKey> {
        let key = self.session_key.get();
        (key != 0).then_some(crate::ids::SessionKey(key))
    }

    pub fn set_session_key(&self, key: crate::ids::SessionKey) {
        self.session_key.set(key.0);
    }

    pub fn killed(&self) -> Option<Kill> {
        self.kill.get()
    }

    /// The reader is done with the connection: see `closing`.
    pub fn closing(&self) -> bool {
        self.closing.get()
    }

    /// Asks the connection's tasks to close; the first reason wins.
    pub fn kill(&self, why: Kill) {
        if self.kill.get().is_none() {
            self.kill.set(Some(why));
        }
        if why == Kill::Closing {
            self.closing.set(true);
        }
        self.kill_wake.notify();
        self.writer_wake.notify();
    }

    /// Queues a control packet. These are never dropped, since each answers a request of the
    /// client; a client that keeps asking without reading is caught by the congestion rule
    /// and, at once, by a hard cap.
    pub fn send(&self, packet: &Packet) {
        let mut buf = self.buf.borrow_mut();
        if let Err(e) = encode(packet, self.version, &mut buf) {
            tracing::warn!(error = %e, packet = packet.name(), "cannot encode packet");
        }
        let hard_cap_exceeded = buf.len() > self.max_outbound().saturating_mul(HARD_CAP_FACTOR);
        drop(buf);
        if hard_cap_exceeded {
            self.kill(Kill::SlowConsumer);
        } else if self.buf.borrow().len() >= self.max_outbound() {
            // The clock is read only when it matters: a PUBACK per QoS 1 message otherwise
            // cost a clock read each.
            self.congested(Instant::now());
        }
        self.writer_wake.notify();
    }

    /// True while the outbound buffer is over its limit; notes when that started, and pulls
    /// the kill switch once it has lasted past the slow-consumer timeout.
    pub fn congested(&self, now: Instant) -> bool {
        if self.buf.borrow().len() < self.max_outbound() {
            return false;
        }
        self.held_back.set(true);
        let now_ms = crate::epoch::millis32(now);
        match self.stalled_since_ms.get() {
            0 => self.stalled_since_ms.set(now_ms),
            since if now_ms.wrapping_sub(since) >= self.slow_timeout_ms => {
                self.kill(Kill::SlowConsumer)
            }
            _ => {}
        }
        true
    }

    /// Encodes one PUBLISH toward the client, straight from the shared message. Returns
    /// false when the packet would exceed the client's Maximum Packet Size, in which case
    /// nothing is sent and the caller treats the message as delivered ([MQTT-3.1.2-25]).
    #[allow(clippy::too_many_arguments)]
    pub fn send_publish(
        &self,
        message: &Message,
        qos: QoS,
        packet_id: Option<PacketId>,
        retain: bool,
        dup: bool,
        subscription_ids: &[u32],
        now: Instant,
    ) -> bool {
        let v5 = self.version == ProtocolVersion::V5;
        let mut publish = OutgoingPublish {
            dup,
            qos,
            retain,
            topic: &message.topic,
            packet_id,
            properties: &message.properties,
            message_expiry_interval: if v5 {
                message.remaining_expiry(now)
            } else {
                None
            },
            topic_alias: None,
            subscription_identifiers: subscription_ids,
            payload: &message.payload,
        };
        let Ok(len) = publish.encoded_len(self.version) else {
            return false;
        };
        if len > self.client_max_packet as usize {
            return false;
        }
        // A new alias adds three bytes; only assign one if the packet still fits.
        if v5 && self.client_alias_max > 0 {
            match self.alias_for(&message.topic, len + 3 <= self.client_max_packet as usize) {
                Some((alias, true)) => {
                    publish.topic_alias = Some(alias);
                    publish.topic = "";
                }
                Some((alias, false)) => publish.topic_alias = Some(alias),
                None => {}
            }
        }
        let mut buf = self.buf.borrow_mut();
        if let Err(e) = publish.encode(self.version, &mut buf) {
            tracing::warn!(error = %e, "cannot encode PUBLISH");
            return false;
        }
        drop(buf);
        self.writer_wake.notify();
        true
    }

    /// The alias to use for `topic`, and whether the client already knows it (then the topic
    /// is left out): a known one, or a new one sent once with the topic. Never makes the
    /// packet longer than without it.
    fn alias_for(&self, topic: &ByteString, may_assign: bool) -> Option<(u16, bool)> {
        let mut aliases = self.aliases.borrow_mut();
        if let Some(&alias) = aliases.as_ref().and_then(|a| a.by_topic.get(topic)) {
            return Some((alias, true));
        }
        let assigned = aliases.as_ref().map_or(0, |a| a.by_topic.len());
        if may_assign && assigned < usize::from(self.client_alias_max) {
            let aliases = aliases.get_or_insert_with(Box::default);
            let alias = u16::try_from(aliases.by_topic.len() + 1).unwrap_or(u16::MAX);
            aliases.by_topic.insert(topic.clone(), alias);
            return Some((alias, false));
        }
        None
    }

    /// Nothing to write and nothing being written: the connection may park once its
    /// reader is between packets.
    pub fn quiet(&self) -> bool {
        !self.has_pending() && !self.writing.get() && self.kill.get().is_none()
    }

    pub fn has_pending(&self) -> bool {
        !self.buf.borrow().is_empty()
    }

    /// Takes everything queued for writing, swapping in `spare` (an empty buffer whose
    /// capacity is reused) so the writer and the shard never share a buffer.
    pub fn take_pending(&self, spare: &mut BytesMut) -> bool {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return false;
        }
        std::mem::swap(&mut *buf, spare);
        true
    }

    /// The writer finished a write: the connection is not stalled. Returns true when
    /// deliveries were held back and the buffer has room again: time to refill.
    pub fn wrote(&self) -> bool {
        self.stalled_since_ms.set(0);
        self.held_back.get() && self.buf.borrow().len() < self.max_outbound() && {
            self.held_back.set(false);
            true
        }
    }
}
