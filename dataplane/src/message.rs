//! An application message as it travels through the broker: decoded once, shared by every
//! subscriber on every shard through an `Arc`, its payload a reference-counted `Bytes`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use iotcore_core::mqtt::{PublishProperties, QoS};

#[derive(Debug, Clone)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Properties forwarded to subscribers; topic alias and subscription identifiers are
    /// cleared (they belong to one connection, not to the message).
    pub properties: PublishProperties,
    /// From the Message Expiry Interval: a message past this is not delivered.
    pub expires_at: Option<Instant>,
    /// The publishing client, for No Local; empty for messages the broker makes itself.
    pub publisher: ByteString,
}

pub type SharedMessage = Arc<Message>;

impl Message {
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The Message Expiry Interval to send now: what is left of the original, rounded up
    /// ([MQTT-3.3.2-6]).
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }
}

/// One message bound for one session at QoS 1 or 2, waiting in its queue or in flight.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: SharedMessage,
    /// The RETAIN flag to send: set for retained messages sent on subscribe, and for routed
    /// messages only when the subscription has Retain As Published.
    pub retain: bool,
    /// Identifiers of the subscriptions that matched (MQTT 5).
    pub subscription_ids: Vec<u32>,
    /// Its number in the session log when the session is persistent; 0 when not logged.
    pub seq: u64,
}
