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
    /// The publishing client, for No Local; `None` for messages the broker makes itself.
    pub publisher: Option<crate::ids::ClientId>,
}

pub type SharedMessage = Arc<Message>;

impl Message {
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The Message Expiry Interval to send now: what is left of the original, rounded up
    /// ([MQTT-3.3.2-6]), and never more than the original. (`now` is the shard's clock,
    /// taken at the read that brought the packet, so it can be a little earlier than the
    /// moment the expiry was computed: rounded up, 30 s became 31.)
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            let original = self.properties.message_expiry_interval.unwrap_or(u32::MAX);
            u32::try_from(secs).unwrap_or(u32::MAX).min(original)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn expiring(interval: u32, expires_at: Instant) -> Message {
        Message {
            topic: ByteString::from_static("t"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PublishProperties {
                message_expiry_interval: Some(interval),
                ..Default::default()
            },
            expires_at: Some(expires_at),
            publisher: None,
        }
    }

    #[test]
    fn remaining_expiry_rounds_up_and_never_exceeds_the_original() {
        let t0 = Instant::now();
        let m = expiring(30, t0 + Duration::from_secs(30));
        // Read a little before the expiry was computed: still 30, not 31.
        assert_eq!(m.remaining_expiry(t0 - Duration::from_millis(1)), Some(30));
        assert_eq!(m.remaining_expiry(t0), Some(30));
        assert_eq!(
            m.remaining_expiry(t0 + Duration::from_millis(1500)),
            Some(29)
        );
        assert_eq!(m.remaining_expiry(t0 + Duration::from_secs(31)), Some(0));
    }
}
