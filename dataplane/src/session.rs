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

pub struct Session {
    pub client_id: ClientId,
    /// Keyed by the filter as the client wrote it (shared ones with their `$share/` prefix).
    pub subscriptions: HashMap<ByteString, SubscriptionRecord>,
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
            subscriptions: HashMap::new(),
            outbound: Outbound::new(window, queue_limit),
            inbound: Inbound::new(receive_max),
            expiry_secs: 0,
            will: None,
        }
    }
}
