//! Client→server QoS 2 publishes awaiting PUBREL.

use crate::mqtt::PacketId;

/// What to do with an incoming QoS 2 PUBLISH. Either way the broker answers PUBREC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundQos2 {
    /// A new message: route it to subscribers, then answer PUBREC.
    New,
    /// The id is already awaiting PUBREL: this is a resend of a message already routed. The
    /// broker must answer PUBREC again but must not route it again ([MQTT-4.3.3-10], method B of
    /// 3.1.1 [MQTT-4.3.3-2]).
    Duplicate,
}

/// The client sent a QoS 2 PUBLISH with a new packet identifier while `receive_maximum` were
/// already unfinished. The broker answers with DISCONNECT 0x93 (v5) or closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "[MQTT-3.3.4-7] the client exceeded the server's receive maximum: receive maximum exceeded"
)]
pub struct ReceiveMaximumExceeded;

/// Client→server QoS 2 publishes received and acknowledged with PUBREC, awaiting PUBREL
/// ([MQTT-4.3.3]); plus the inbound Receive Maximum quota for QoS 1 and 2
/// ([MQTT-3.3.4-7]/[MQTT-3.3.4-8]).
///
/// Only QoS 2 holds quota here: the broker answers a QoS 1 PUBLISH with PUBACK as soon as it has
/// routed it, which happens synchronously, so a QoS 1 message never stays unacknowledged.
///
/// # Invariants
/// - `pending_len() <= receive_maximum` (which is >= 1).
/// - The pending identifiers are distinct, kept sorted so lookups are a binary search.
///
/// If the broker answers a QoS 2 PUBLISH with an error PUBREC (>= 0x80), the exchange ends there
/// and a later PUBLISH with that id is a new message ([MQTT-4.3.3-9]): call
/// [`on_pubrel`](Self::on_pubrel) with the id to forget it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pending: Vec<PacketId>,
    receive_maximum: u16,
}

impl Inbound {
    /// `receive_maximum` is the Receive Maximum the server announced in CONNACK (65535 when
    /// absent, and for 3.1.1). 0 is not a valid Receive Maximum; it is taken as 1.
    pub fn new(receive_maximum: u16) -> Self {
        Inbound {
            pending: Vec::new(),
            receive_maximum: receive_maximum.max(1),
        }
    }

    /// A QoS 2 PUBLISH arrived with packet identifier `id`.
    ///
    /// A resend of one already pending is `Duplicate` even when the quota is used up: it does
    /// not take a second slot.
    pub fn on_qos2_publish(&mut self, id: PacketId) -> Result<InboundQos2, ReceiveMaximumExceeded> {
        match self.pending.binary_search(&id) {
            Ok(_) => Ok(InboundQos2::Duplicate),
            Err(_) if self.pending.len() >= usize::from(self.receive_maximum) => {
                Err(ReceiveMaximumExceeded)
            }
            Err(index) => {
                self.pending.insert(index, id);
                Ok(InboundQos2::New)
            }
        }
    }

    /// A PUBREL arrived. True if the id was awaiting PUBREL (reply PUBCOMP Success); false:
    /// reply PUBCOMP PacketIdentifierNotFound (0x92) in v5, plain PUBCOMP in 3.1.1 — a PUBREL
    /// resent after our PUBCOMP was lost must still be answered ([MQTT-4.3.3-11]).
    pub fn on_pubrel(&mut self, id: PacketId) -> bool {
        match self.pending.binary_search(&id) {
            Ok(index) => {
                self.pending.remove(index);
                true
            }
            Err(_) => false,
        }
    }

    /// QoS 2 messages received and awaiting PUBREL.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Forgets every pending id: the session ended or a Clean Start began.
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}
