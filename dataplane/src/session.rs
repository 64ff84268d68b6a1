//! A session's state that outlives a connection: subscriptions, the QoS 1/2 machines, the
//! will. It is plain `Send` data so a takeover can move it to the shard of the new connection.

use std::collections::HashMap;

use bytestring::ByteString;
use iotcore_core::mqtt::{SubscriptionOptions, Will};
use iotcore_core::session::{Inbound, Outbound};
use iotcore_core::topic::SubscriptionFilter;

use crate::ids::ClientId;
use crate::message::Delivery;

#[derive(Debug, Clone)]
pub struct SubscriptionRecord {
    pub filter: SubscriptionFilter,
    pub options: SubscriptionOptions,
    /// Subscription Identifier (MQTT 5), sent back with each matching message.
    pub id: Option<u32>,
}

/// A session's subscriptions, keyed by the filter as the client wrote it (shared ones with
/// their `$share/` prefix). The map is boxed and made by the first subscription: 8 bytes in
/// every session where the map itself is 48, and idle devices with none are common (the
/// shard keeps one session per connection, parked or not).
/// (The box is the point: `clippy::box_collection` does not apply.)
#[derive(Default)]
#[allow(clippy::box_collection)]
pub struct Subscriptions(Option<Box<HashMap<ByteString, SubscriptionRecord>>>);

impl Subscriptions {
    pub fn values(&self) -> impl Iterator<Item = &SubscriptionRecord> {
        self.0.iter().flat_map(|m| m.values())
    }
    pub fn contains_key(&self, filter: &str) -> bool {
        self.0.as_ref().is_some_and(|m| m.contains_key(filter))
    }
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }
    /// Adds or replaces the subscription to `filter`; returns the one it replaced.
    pub fn insert(
        &mut self,
        filter: ByteString,
        record: SubscriptionRecord,
    ) -> Option<SubscriptionRecord> {
        self.0
            .get_or_insert_with(Box::default)
            .insert(filter, record)
    }
    pub fn remove(&mut self, filter: &str) -> Option<SubscriptionRecord> {
        let map = self.0.as_mut()?;
        let removed = map.remove(filter);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }
}

pub struct Session {
    pub client_id: ClientId,
    pub subscriptions: Subscriptions,
    pub outbound: Outbound<Delivery>,
    pub inbound: Inbound,
    /// Seconds the session outlives its connection; 0 ends it with the connection.
    pub expiry_secs: u32,
    /// The will of the current (or last) connection, published when it ends abnormally.
    /// Boxed: most clients set no will, and inline it would make every session (and the
    /// shard's session table, sized for them) 240 bytes larger.
    pub will: Option<Box<Will>>,
}

impl Session {
    pub fn new(client_id: ClientId, window: u16, queue_limit: usize, receive_max: u16) -> Self {
        Session {
            client_id,
            subscriptions: Subscriptions::default(),
            outbound: Outbound::new(window, queue_limit),
            inbound: Inbound::new(receive_max),
            expiry_secs: 0,
            will: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotcore_core::mqtt::QoS;

    fn record(filter: &str) -> SubscriptionRecord {
        SubscriptionRecord {
            filter: SubscriptionFilter::parse(ByteString::from(filter)).expect("a valid filter"),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            id: None,
        }
    }

    #[test]
    fn subscriptions_are_kept_until_the_last_goes() {
        let mut subs = Subscriptions::default();
        assert_eq!(subs.len(), 0);
        assert!(subs.insert("a/b".into(), record("a/b")).is_none());
        assert!(
            subs.insert("a/b".into(), record("a/b")).is_some(),
            "replaced"
        );
        assert!(subs.insert("c".into(), record("c")).is_none());
        assert_eq!(subs.len(), 2);
        assert!(subs.contains_key("c"));
        assert!(subs.remove("a/b").is_some());
        assert!(subs.remove("a/b").is_none());
        assert_eq!(subs.values().count(), 1);
        assert!(subs.remove("c").is_some());
        assert!(
            subs.0.is_none(),
            "the map is freed with the last subscription"
        );
    }
}
