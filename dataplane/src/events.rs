//! AWS IoT lifecycle events: JSON messages the broker publishes on `$aws/events/...` when a
//! client connects, disconnects, subscribes or unsubscribes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use iotcore_core::mqtt::{PublishProperties, QoS};
use serde_json::json;

use crate::ids::ClientId;
use crate::message::{Message, SharedMessage};

/// Why a connection ended, in the words of AWS's `disconnectReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ClientInitiated,
    ConnectionLost,
    DuplicateClientId,
    KeepAliveTimeout,
    ClientError,
    Throttled,
    ServerInitiated,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientInitiated => "CLIENT_INITIATED_DISCONNECT",
            DisconnectReason::ConnectionLost => "CONNECTION_LOST",
            DisconnectReason::DuplicateClientId => "DUPLICATE_CLIENTID",
            DisconnectReason::KeepAliveTimeout => "MQTT_KEEP_ALIVE_TIMEOUT",
            DisconnectReason::ClientError => "CLIENT_ERROR",
            DisconnectReason::Throttled => "THROTTLED",
            DisconnectReason::ServerInitiated => "SERVER_INITIATED_DISCONNECT",
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The event as a message, or `None` when the client id cannot be part of a topic name
/// (it contains a wildcard character).
fn event(topic: String, body: serde_json::Value) -> Option<SharedMessage> {
    if topic.contains(['+', '#', '\0']) {
        return None;
    }
    Some(Arc::new(Message {
        topic: topic.into(),
        payload: Bytes::from(body.to_string()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: None,
    }))
}

/// The session identifier of lifecycle events: random-looking and new with every
/// connection. Derived from the session key (new with every connection too), so nothing
/// needs to keep it.
pub fn session_identifier(key: crate::ids::SessionKey) -> String {
    format!("{:016x}", key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

pub struct Who<'a> {
    pub client_id: &'a ClientId,
    pub session_identifier: &'a str,
    pub principal: &'a str,
    pub version_number: u64,
}

pub fn connected(who: &Who<'_>, ip_address: &str) -> Option<SharedMessage> {
    event(
        format!("$aws/events/presence/connected/{}", who.client_id),
        json!({
            "clientId": who.client_id.as_str(),
            "timestamp": now_ms(),
            "eventType": "connected",
            "sessionIdentifier": who.session_identifier,
            "principalIdentifier": who.principal,
            "ipAddress": ip_address,
            "versionNumber": who.version_number,
        }),
    )
}

pub fn disconnected(who: &Who<'_>, reason: DisconnectReason) -> Option<SharedMessage> {
    event(
        format!("$aws/events/presence/disconnected/{}", who.client_id),
        json!({
            "clientId": who.client_id.as_str(),
            "timestamp": now_ms(),
            "eventType": "disconnected",
            "sessionIdentifier": who.session_identifier,
            "principalIdentifier": who.principal,
            "clientInitiatedDisconnect": reason == DisconnectReason::ClientInitiated,
            "disconnectReason": reason.as_str(),
            "versionNumber": who.version_number,
        }),
    )
}

/// `subscribed` or `unsubscribed`, with the filters concerned.
pub fn subscriptions(who: &Who<'_>, subscribed: bool, topics: &[String]) -> Option<SharedMessage> {
    let kind = if subscribed {
        "subscribed"
    } else {
        "unsubscribed"
    };
    event(
        format!("$aws/events/subscriptions/{kind}/{}", who.client_id),
        json!({
            "clientId": who.client_id.as_str(),
            "timestamp": now_ms(),
            "eventType": kind,
            "sessionIdentifier": who.session_identifier,
            "principalIdentifier": who.principal,
            "topics": topics,
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn disconnected_event_has_the_aws_fields() {
        let id = ClientId::from("dev-1");
        let who = Who {
            client_id: &id,
            session_identifier: "s",
            principal: "anonymous",
            version_number: 3,
        };
        let m = disconnected(&who, DisconnectReason::KeepAliveTimeout).unwrap();
        assert_eq!(&*m.topic, "$aws/events/presence/disconnected/dev-1");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");
        assert_eq!(v["clientInitiatedDisconnect"], false);
        assert_eq!(v["versionNumber"], 3);
    }

    #[test]
    fn client_ids_with_wildcards_get_no_event() {
        let id = ClientId::from("a+b");
        let who = Who {
            client_id: &id,
            session_identifier: "s",
            principal: "",
            version_number: 0,
        };
        assert!(connected(&who, "127.0.0.1").is_none());
    }
}
