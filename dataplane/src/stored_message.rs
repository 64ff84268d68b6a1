//! A message as the logs store it: `[expires at, Unix ms, 0 = never: u64 LE]` then the
//! message as an MQTT 5 PUBLISH packet in our own codec (topic, QoS, RETAIN, every
//! property, payload), so nothing a subscriber could see is lost across a restart.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use iotcore_core::mqtt::{decode, OutgoingPublish, Packet, PacketId, ProtocolVersion, QoS};

use crate::message::{Message, SharedMessage};

const EXPIRY_BYTES: usize = 8;

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Appends the stored form of `m` to `out`.
pub fn encode(m: &Message, out: &mut Vec<u8>) -> Result<(), String> {
    let expires_ms = m.expires_at.map_or(0, |t| {
        unix_ms() + t.saturating_duration_since(Instant::now()).as_millis() as u64
    });
    let mut packet = BytesMut::new();
    OutgoingPublish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: &m.topic,
        packet_id: (m.qos != QoS::AtMostOnce)
            .then_some(PacketId::new(1))
            .flatten(),
        properties: &m.properties,
        message_expiry_interval: None,
        topic_alias: None,
        subscription_identifiers: &[],
        payload: &m.payload,
    }
    .encode(ProtocolVersion::V5, &mut packet)
    .map_err(|e| e.to_string())?;
    out.extend_from_slice(&expires_ms.to_le_bytes());
    out.extend_from_slice(&packet);
    Ok(())
}

/// The topic of a stored message, without building the message.
pub fn topic(bytes: &[u8]) -> Result<ByteString, String> {
    packet(bytes).map(|p| p.0.topic)
}

/// The message, or `None` if it expired by `now_ms`.
pub fn decode_message(bytes: &[u8], now_ms: u64) -> Result<Option<SharedMessage>, String> {
    let (p, expires_ms) = packet(bytes)?;
    if expires_ms != 0 && expires_ms <= now_ms {
        return Ok(None);
    }
    let expires_at =
        (expires_ms != 0).then(|| Instant::now() + Duration::from_millis(expires_ms - now_ms));
    Ok(Some(Arc::new(Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_at,
        publisher: None,
    })))
}

fn packet(bytes: &[u8]) -> Result<(iotcore_core::mqtt::Publish, u64), String> {
    let expires_ms = u64::from_le_bytes(
        bytes
            .get(..EXPIRY_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or("stored message too short")?,
    );
    match decode(
        Bytes::copy_from_slice(&bytes[EXPIRY_BYTES..]),
        Some(ProtocolVersion::V5),
    ) {
        Ok(Packet::Publish(p)) => Ok((p, expires_ms)),
        Ok(other) => Err(format!(
            "stored message is a {}, not a PUBLISH",
            other.name()
        )),
        Err(e) => Err(format!("stored message does not decode: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use iotcore_core::mqtt::{PublishProperties, UserProperty};

    #[test]
    fn round_trip_keeps_everything_and_expiry() {
        let m = Message {
            topic: ByteString::from_static("a/b"),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PublishProperties {
                correlation_data: Some(Bytes::from_static(b"c")),
                user_properties: vec![UserProperty {
                    name: ByteString::from_static("k"),
                    value: ByteString::from_static("v"),
                }],
                ..Default::default()
            },
            expires_at: Some(Instant::now() + Duration::from_secs(60)),
            publisher: Some(crate::ids::ClientId::from("p")),
        };
        let mut bytes = Vec::new();
        encode(&m, &mut bytes).unwrap();
        assert_eq!(&*topic(&bytes).unwrap(), "a/b");
        let back = decode_message(&bytes, unix_ms()).unwrap().unwrap();
        assert_eq!(
            (back.qos, back.retain, &back.payload[..]),
            (QoS::ExactlyOnce, true, &b"hello"[..])
        );
        assert_eq!(
            back.properties.user_properties,
            m.properties.user_properties
        );
        assert!(back.expires_at.is_some());
        assert!(decode_message(&bytes, unix_ms() + 61_000)
            .unwrap()
            .is_none());
        assert!(decode_message(&bytes[..5], 0).is_err());
        assert!(decode_message(&[0; 12], 0).is_err());
    }
}
