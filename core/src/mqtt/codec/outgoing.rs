//! The broker's hot path: a PUBLISH toward one subscriber, encoded straight from the shared
//! message (borrowed topic, payload and properties) plus what differs per delivery. Building
//! a `Packet::Publish` instead would clone the properties, topic and payload for every
//! subscriber only to drop them after encoding.

use bytes::BytesMut;

use super::error::EncodeError;
use super::primitives::{varint_len, Counter, Sink, VARINT_MAX};
use super::properties::{ptype, write_list, OutgoingProps};
use crate::mqtt::packet::{PacketId, ProtocolVersion, QoS};
use crate::mqtt::properties::PublishProperties;

/// One PUBLISH toward one client.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingPublish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty when `topic_alias` names a topic the client already knows.
    pub topic: &'a str,
    pub packet_id: Option<PacketId>,
    /// The message's properties; its `topic_alias`, `subscription_identifiers` and
    /// `message_expiry_interval` are ignored in favour of the three fields below.
    pub properties: &'a PublishProperties,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<u16>,
    pub subscription_identifiers: &'a [u32],
    pub payload: &'a [u8],
}

impl OutgoingPublish<'_> {
    fn props(&self) -> OutgoingProps<'_> {
        OutgoingProps {
            message: self.properties,
            expiry: self.message_expiry_interval,
            topic_alias: self.topic_alias,
            subscription_identifiers: self.subscription_identifiers,
        }
    }

    fn body<S: Sink>(&self, v5: bool, s: &mut S) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::PacketIdMismatch);
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::InvalidValue {
                what: "DUP on a QoS 0 PUBLISH ([MQTT-3.3.1-2])",
            });
        }
        if self.topic.is_empty() && (!v5 || self.topic_alias.is_none()) {
            return Err(EncodeError::InvalidValue {
                what: "empty topic without a Topic Alias",
            });
        }
        s.string(self.topic)?;
        if let Some(id) = self.packet_id {
            s.u16(id.get());
        }
        if v5 {
            write_list(&self.props(), s)?;
        }
        s.put(self.payload);
        Ok(())
    }

    fn remaining_len(&self, v5: bool) -> Result<usize, EncodeError> {
        let mut c = Counter::default();
        self.body(v5, &mut c)?;
        if c.0 > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge { size: c.0 });
        }
        Ok(c.0)
    }

    /// The size `encode` would write. For MQTT 3.1.1 every MQTT 5 property is left out.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let remaining = self.remaining_len(version == ProtocolVersion::V5)?;
        Ok(1 + varint_len(remaining) + remaining)
    }

    /// Appends the packet to `out`; on error nothing has been written.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = version == ProtocolVersion::V5;
        let remaining = self.remaining_len(v5)?;
        out.reserve(1 + varint_len(remaining) + remaining);
        let flags = (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain);
        out.u8((ptype::PUBLISH << 4) | flags);
        out.varint(
            u32::try_from(remaining)
                .map_err(|_| EncodeError::PacketTooLarge { size: remaining })?,
        )?;
        self.body(v5, out)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use bytestring::ByteString;

    use super::*;
    use crate::mqtt::codec::{decode, encode};
    use crate::mqtt::packet::{Packet, Publish};
    use crate::mqtt::properties::UserProperty;

    fn message_props() -> PublishProperties {
        PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(100),
            topic_alias: Some(9),
            response_topic: Some(ByteString::from_static("r/t")),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![UserProperty {
                name: ByteString::from_static("k"),
                value: ByteString::from_static("v"),
            }],
            subscription_identifiers: vec![77],
            content_type: Some(ByteString::from_static("text/plain")),
        }
    }

    /// The borrowed encoder writes exactly what the general encoder writes for the packet
    /// with the per-delivery fields substituted.
    #[test]
    fn same_bytes_as_the_general_encoder() {
        let props = message_props();
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for (qos, pid, dup) in [
                (QoS::AtMostOnce, None, false),
                (QoS::AtLeastOnce, PacketId::new(7), true),
                (QoS::ExactlyOnce, PacketId::new(65535), false),
            ] {
                let out = OutgoingPublish {
                    dup,
                    qos,
                    retain: true,
                    topic: "a/b",
                    packet_id: pid,
                    properties: &props,
                    message_expiry_interval: Some(42),
                    topic_alias: Some(3),
                    subscription_identifiers: &[1, 300],
                    payload: b"hello",
                };
                let mut fast = BytesMut::new();
                out.encode(version, &mut fast).expect("encodes");
                assert_eq!(out.encoded_len(version).expect("len"), fast.len());

                let mut expected_props = props.clone();
                expected_props.message_expiry_interval = Some(42);
                expected_props.topic_alias = Some(3);
                expected_props.subscription_identifiers = vec![1, 300];
                if version == ProtocolVersion::V311 {
                    expected_props = PublishProperties::default();
                }
                let packet = Packet::Publish(Publish {
                    dup,
                    qos,
                    retain: true,
                    topic: ByteString::from_static("a/b"),
                    packet_id: pid,
                    properties: expected_props,
                    payload: Bytes::from_static(b"hello"),
                });
                let mut general = BytesMut::new();
                encode(&packet, version, &mut general).expect("encodes");
                assert_eq!(fast, general, "{version:?} {qos:?}");
                assert!(decode(fast.clone().freeze(), Some(version)).is_ok());
            }
        }
    }

    #[test]
    fn rejects_what_the_general_encoder_rejects() {
        let props = PublishProperties::default();
        let base = OutgoingPublish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t",
            packet_id: None,
            properties: &props,
            message_expiry_interval: None,
            topic_alias: None,
            subscription_identifiers: &[],
            payload: b"",
        };
        let mut out = BytesMut::new();
        let bad = [
            OutgoingPublish { dup: true, ..base },
            OutgoingPublish {
                packet_id: PacketId::new(1),
                ..base
            },
            OutgoingPublish { topic: "", ..base },
            OutgoingPublish {
                topic_alias: Some(0),
                ..base
            },
            OutgoingPublish {
                subscription_identifiers: &[0],
                ..base
            },
        ];
        for p in bad {
            assert!(p.encode(ProtocolVersion::V5, &mut out).is_err(), "{p:?}");
            assert!(out.is_empty(), "nothing written on error");
        }
    }
}
