//! One fixture per validation rule, asserting the exact error and its reason code.

use bytes::{Bytes, BytesMut};

use super::{assert_err, decode_err};
use crate::mqtt::codec::{decode, DecodeError as E, Decoder};
use crate::mqtt::packet::{Packet, ProtocolVersion};
use crate::mqtt::reason::ReasonCode as R;

const V3: Option<ProtocolVersion> = Some(ProtocolVersion::V311);
const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);

/// Frames `body` behind `byte1` and a one-byte remaining length (all bodies here are short).
fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![byte1, u8::try_from(body.len()).unwrap()];
    assert!(body.len() < 128);
    v.extend_from_slice(body);
    v
}

/// A CONNECT body: protocol name, level, flags, keep alive 0, then `rest`.
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0, u8::try_from(name.len()).unwrap()];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0, 0]);
    body.extend_from_slice(rest);
    frame(0x10, &body)
}

/// A v5 CONNECT with the given property list bytes (after the length) and client id "c".
fn connect_v5_props(props: &[u8]) -> Vec<u8> {
    let mut rest = vec![u8::try_from(props.len()).unwrap()];
    rest.extend_from_slice(props);
    rest.extend_from_slice(&[0, 1, b'c']);
    connect(b"MQTT", 5, 0x02, &rest)
}

/// A v5 QoS 0 PUBLISH to "t" with the given property list bytes.
fn publish_v5_props(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, b't', u8::try_from(props.len()).unwrap()];
    body.extend_from_slice(props);
    frame(0x30, &body)
}

/// A v5 CONNACK (success) with the given property list bytes.
fn connack_v5_props(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, u8::try_from(props.len()).unwrap()];
    body.extend_from_slice(props);
    frame(0x20, &body)
}

// --- framing ----------------------------------------------------------------------------------

#[test]
fn varint_longer_than_four_bytes() {
    let bytes = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_err(&bytes, V3, E::MalformedVarInt, R::MalformedPacket);
    // The streaming decoder says so as soon as the fourth continuation byte is in.
    let mut d = Decoder::with_version(ProtocolVersion::V311, u32::MAX);
    let mut buf = BytesMut::from(&bytes[..5]);
    assert_eq!(d.decode(&mut buf), Err(E::MalformedVarInt));
    // Also inside a property list (a subscription identifier).
    let bytes = publish_v5_props(&[0x0B, 0x80, 0x80, 0x80, 0x80, 0x01]);
    assert_err(&bytes, V5, E::MalformedVarInt, R::MalformedPacket);
}

#[test]
fn remaining_length_past_the_packet() {
    // Topic length 10 in a body of 5 bytes.
    let bytes = [0x30, 0x05, 0x00, 0x0A, b'a', b'b', b'c'];
    assert_err(&bytes, V3, E::UnexpectedEnd, R::MalformedPacket);
    // A property list longer than the body.
    let bytes = frame(0x30, &[0, 1, b't', 0x0A, 0x01]);
    assert_err(&bytes, V5, E::UnexpectedEnd, R::MalformedPacket);
    // A PUBACK too short for its packet id.
    assert_err(
        &[0x40, 0x01, 0x00],
        V3,
        E::UnexpectedEnd,
        R::MalformedPacket,
    );
    // The one-shot decode wants the whole packet.
    assert_err(
        &[0x40, 0x02, 0x00],
        V3,
        E::UnexpectedEnd,
        R::MalformedPacket,
    );
}

#[test]
fn trailing_bytes() {
    let trailing = E::TrailingBytes { count: 1 };
    assert_err(&[0x40, 0x03, 0, 1, 0], V3, trailing, R::MalformedPacket);
    assert_err(&[0xC0, 0x01, 0], V3, trailing, R::MalformedPacket);
    assert_err(&[0xE0, 0x01, 0], V3, trailing, R::MalformedPacket);
    assert_err(&[0xB0, 0x03, 0, 1, 0], V3, trailing, R::MalformedPacket);
    assert_err(&[0x20, 0x03, 0, 0, 0], V3, trailing, R::MalformedPacket);
    // Bytes after the packet in the one-shot decode.
    assert_err(&[0xC0, 0x00, 0xC0], V3, trailing, R::MalformedPacket);
    // A CONNECT with a stray byte after the client id.
    let bytes = connect(b"MQTT", 4, 0x02, &[0, 1, b'c', 0xFF]);
    assert_err(&bytes, None, trailing, R::MalformedPacket);
}

#[test]
fn reserved_packet_types() {
    let e = |packet_type| E::UnknownPacketType { packet_type };
    assert_err(&[0x00, 0x00], V3, e(0), R::MalformedPacket);
    assert_err(&[0x00, 0x00], V5, e(0), R::MalformedPacket);
    // AUTH does not exist in 3.1.1.
    assert_err(&[0xF0, 0x00], V3, e(15), R::MalformedPacket);
}

#[test]
fn reserved_fixed_header_flags() {
    for (byte1, v) in [
        (0x60, V3), // PUBREL must be 0b0010
        (0x80, V3), // SUBSCRIBE
        (0xA0, V5), // UNSUBSCRIBE
        (0x42, V3), // PUBACK must be 0
        (0xC1, V5), // PINGREQ
        (0xE8, V5), // DISCONNECT
        (0xF1, V5), // AUTH
    ] {
        let e = E::InvalidFixedHeaderFlags {
            packet_type: byte1 >> 4,
            flags: byte1 & 0x0F,
        };
        assert_err(&[byte1, 0x02, 0, 1], v, e, R::MalformedPacket);
    }
    let bytes = [0x12, 0x00];
    let e = E::InvalidFixedHeaderFlags {
        packet_type: 1,
        flags: 2,
    };
    assert_err(&bytes, None, e, R::MalformedPacket);
}

#[test]
fn first_packet_must_be_connect() {
    let e = E::FirstPacketNotConnect { packet_type: 3 };
    assert_err(&[0x30, 0x03, 0, 1, b't'], None, e, R::ProtocolError);
    // Reported from the first byte, before anything else arrives.
    let mut d = Decoder::new(1024);
    let mut buf = BytesMut::from(&[0x30][..]);
    assert_eq!(d.decode(&mut buf), Err(e));
}

#[test]
fn packet_too_large_is_rejected_from_the_fixed_header() {
    let mut d = Decoder::new(100);
    // CONNECT claiming 2,097,151 bytes of body; nothing of the body has arrived.
    let mut buf = BytesMut::from(&[0x10, 0xFF, 0xFF, 0x7F][..]);
    let e = d.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        E::PacketTooLarge {
            size: 4 + 2_097_151,
            max: 100
        }
    );
    assert_eq!(e.reason_code(), R::PacketTooLarge);
    // The limit counts the whole packet: a 100-byte packet passes, 101 does not.
    let mut d = Decoder::with_version(ProtocolVersion::V311, 100);
    let mut ok = vec![0x30, 98, 0, 1, b't'];
    ok.resize(100, b'x');
    let mut buf = BytesMut::from(&ok[..]);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Publish(_)))));
    let mut buf = BytesMut::from(&[0x30, 99][..]);
    assert_eq!(
        d.decode(&mut buf),
        Err(E::PacketTooLarge {
            size: 101,
            max: 100
        })
    );
    // And the limit can change (after CONNECT settles it).
    d.set_max_packet_size(101);
    assert_eq!(d.decode(&mut buf), Ok(None));
}

// --- strings ----------------------------------------------------------------------------------

#[test]
fn invalid_utf8() {
    let bytes = [0x30, 0x04, 0x00, 0x02, 0xC3, 0x28];
    assert_err(&bytes, V3, E::InvalidUtf8, R::MalformedPacket);
    // A UTF-16 surrogate encoded in UTF-8 (U+D800) is not valid UTF-8 either.
    let bytes = [0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80];
    assert_err(&bytes, V3, E::InvalidUtf8, R::MalformedPacket);
    // In a user property.
    let bytes = publish_v5_props(&[0x26, 0x00, 0x01, 0xFF, 0x00, 0x00]);
    assert_err(&bytes, V5, E::InvalidUtf8, R::MalformedPacket);
}

#[test]
fn null_character() {
    let bytes = [0x30, 0x04, 0x00, 0x02, b'a', 0x00];
    assert_err(&bytes, V3, E::NullCharacter, R::MalformedPacket);
    let bytes = connect(b"MQTT", 4, 0x02, &[0, 1, 0]);
    assert_err(&bytes, None, E::NullCharacter, R::MalformedPacket);
}

// --- PUBLISH ----------------------------------------------------------------------------------

#[test]
fn publish_qos3() {
    assert_err(
        &[0x36, 0x03, 0, 1, b't'],
        V3,
        E::InvalidQoS,
        R::MalformedPacket,
    );
}

#[test]
fn publish_dup_on_qos0() {
    assert_err(
        &[0x38, 0x03, 0, 1, b't'],
        V5,
        E::DupOnQoS0,
        R::MalformedPacket,
    );
}

#[test]
fn publish_topic_wildcards() {
    let e = E::WildcardInTopicName;
    assert_err(
        &[0x30, 0x05, 0, 3, b'a', b'/', b'+'],
        V3,
        e,
        R::TopicNameInvalid,
    );
    assert_err(&[0x30, 0x03, 0, 1, b'#'], V3, e, R::TopicNameInvalid);
    assert_err(&[0x30, 0x04, 0, 1, b'#', 0], V5, e, R::TopicNameInvalid);
}

#[test]
fn publish_empty_topic() {
    assert_err(&[0x30, 0x02, 0, 0], V3, E::EmptyTopicName, R::ProtocolError);
    // MQTT 5 allows it only with a Topic Alias.
    assert_err(
        &[0x30, 0x03, 0, 0, 0],
        V5,
        E::EmptyTopicName,
        R::ProtocolError,
    );
}

#[test]
fn packet_id_zero() {
    let e = E::PacketIdZero;
    assert_err(&[0x32, 0x05, 0, 1, b't', 0, 0], V3, e, R::ProtocolError);
    assert_err(&[0x40, 0x02, 0, 0], V3, e, R::ProtocolError);
    assert_err(&[0x62, 0x02, 0, 0], V5, e, R::ProtocolError);
    assert_err(&[0x82, 0x06, 0, 0, 0, 1, b't', 0], V3, e, R::ProtocolError);
    assert_err(&[0xA2, 0x05, 0, 0, 0, 1, b't'], V3, e, R::ProtocolError);
    assert_err(&[0x90, 0x03, 0, 0, 0], V3, e, R::ProtocolError);
    assert_err(&[0xB0, 0x02, 0, 0], V3, e, R::ProtocolError);
}

// --- CONNECT ----------------------------------------------------------------------------------

#[test]
fn connect_protocol_name() {
    let bytes = connect(b"MQTX", 4, 0x02, &[0, 1, b'c']);
    assert_err(
        &bytes,
        None,
        E::InvalidProtocolName,
        R::UnsupportedProtocolVersion,
    );
    let bytes = connect(b"MQIsdp", 4, 0x02, &[0, 1, b'c']);
    assert_err(
        &bytes,
        None,
        E::InvalidProtocolName,
        R::UnsupportedProtocolVersion,
    );
}

#[test]
fn connect_unsupported_level() {
    // MQTT 3.1 ("MQIsdp", level 3): answered with CONNACK 0x01 / 0x84 by the broker.
    let bytes = connect(b"MQIsdp", 3, 0x02, &[0, 1, b'c']);
    let e = E::UnsupportedProtocolVersion { level: 3 };
    assert_err(&bytes, None, e, R::UnsupportedProtocolVersion);
    let bytes = connect(b"MQTT", 6, 0x02, &[0, 1, b'c']);
    let e = E::UnsupportedProtocolVersion { level: 6 };
    assert_err(&bytes, None, e, R::UnsupportedProtocolVersion);
    // The Decoder's version stays unknown.
    let mut d = Decoder::new(1024);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(d.decode(&mut buf), Err(e));
    assert_eq!(d.version(), None);
}

#[test]
fn connect_reserved_flag() {
    let bytes = connect(b"MQTT", 4, 0x03, &[0, 1, b'c']);
    assert_err(&bytes, None, E::ConnectReservedFlag, R::MalformedPacket);
    let bytes = connect(b"MQTT", 5, 0x01, &[0, 0, 1, b'c']);
    assert_err(&bytes, None, E::ConnectReservedFlag, R::MalformedPacket);
}

#[test]
fn connect_will_flags() {
    // Will QoS 1 without the Will Flag.
    let bytes = connect(b"MQTT", 4, 0x0A, &[0, 1, b'c']);
    assert_err(&bytes, None, E::WillQoSWithoutWill, R::MalformedPacket);
    // Will Retain without the Will Flag.
    let bytes = connect(b"MQTT", 4, 0x22, &[0, 1, b'c']);
    assert_err(&bytes, None, E::WillRetainWithoutWill, R::MalformedPacket);
    // Will QoS 3.
    let rest = [0, 1, b'c', 0, 1, b't', 0, 0];
    let bytes = connect(b"MQTT", 4, 0x1E, &rest);
    assert_err(&bytes, None, E::InvalidWillQoS, R::MalformedPacket);
    // A will topic is a topic name: no wildcards.
    let rest = [0, 1, b'c', 0, 1, b'#', 0, 0];
    let bytes = connect(b"MQTT", 4, 0x06, &rest);
    assert_err(&bytes, None, E::WildcardInTopicName, R::TopicNameInvalid);
}

#[test]
fn connect_password_without_username_v311() {
    let bytes = connect(b"MQTT", 4, 0x42, &[0, 1, b'c', 0, 1, b'p']);
    assert_err(&bytes, None, E::PasswordWithoutUsername, R::ProtocolError);
}

#[test]
fn second_connect_decodes() {
    let mut d = Decoder::new(1024);
    let first = connect(b"MQTT", 4, 0x02, &[0, 1, b'c']);
    let second = connect(b"MQTT", 5, 0x02, &[0, 0, 1, b'c']);
    let mut buf = BytesMut::from(&first[..]);
    buf.extend_from_slice(&second);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    assert_eq!(d.version(), Some(ProtocolVersion::V311));
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    // The first CONNECT fixed the version.
    assert_eq!(d.version(), Some(ProtocolVersion::V311));
}

#[test]
fn connack_reserved_flags() {
    let e = E::ConnAckReservedFlags;
    assert_err(&[0x20, 0x02, 0x02, 0x00], V3, e, R::MalformedPacket);
    assert_err(&[0x20, 0x03, 0x80, 0x00, 0x00], V5, e, R::MalformedPacket);
}

// --- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------------

#[test]
fn subscribe_without_filters() {
    let e = E::SubscribeWithoutFilters;
    assert_err(&[0x82, 0x02, 0, 1], V3, e, R::ProtocolError);
    assert_err(&[0x82, 0x03, 0, 1, 0], V5, e, R::ProtocolError);
}

#[test]
fn subscription_options() {
    let e = E::SubscriptionOptionsReserved;
    // 3.1.1: only the QoS bits exist.
    assert_err(
        &[0x82, 0x06, 0, 1, 0, 1, b't', 0x04],
        V3,
        e,
        R::MalformedPacket,
    );
    // 5: the two top bits are reserved.
    assert_err(
        &[0x82, 0x07, 0, 1, 0, 0, 1, b't', 0x40],
        V5,
        e,
        R::MalformedPacket,
    );
    let e = E::InvalidRetainHandling;
    assert_err(
        &[0x82, 0x07, 0, 1, 0, 0, 1, b't', 0x30],
        V5,
        e,
        R::ProtocolError,
    );
    let e = E::InvalidSubscriptionQoS;
    assert_err(
        &[0x82, 0x06, 0, 1, 0, 1, b't', 0x03],
        V3,
        e,
        R::MalformedPacket,
    );
}

#[test]
fn unsubscribe_without_filters() {
    let e = E::UnsubscribeWithoutFilters;
    assert_err(&[0xA2, 0x02, 0, 1], V3, e, R::ProtocolError);
    assert_err(&[0xA2, 0x03, 0, 1, 0], V5, e, R::ProtocolError);
}

// --- properties -------------------------------------------------------------------------------

#[test]
fn unknown_property() {
    let e = E::UnknownProperty { id: 0x05 };
    assert_err(&publish_v5_props(&[0x05, 0x00]), V5, e, R::MalformedPacket);
    // A multi-byte identifier (none is defined).
    let e = E::UnknownProperty { id: 0x81 };
    assert_err(&publish_v5_props(&[0x81, 0x01]), V5, e, R::MalformedPacket);
}

#[test]
fn property_not_allowed_on_packet() {
    // Topic Alias in CONNECT.
    let e = E::PropertyNotAllowed {
        id: 0x23,
        packet_type: 1,
    };
    assert_err(
        &connect_v5_props(&[0x23, 0, 1]),
        None,
        e,
        R::MalformedPacket,
    );
    // Will Delay Interval in PUBLISH.
    let e = E::PropertyNotAllowed {
        id: 0x18,
        packet_type: 3,
    };
    let bytes = publish_v5_props(&[0x18, 0, 0, 0, 1]);
    assert_err(&bytes, V5, e, R::MalformedPacket);
    // Session Expiry Interval in PUBACK.
    let e = E::PropertyNotAllowed {
        id: 0x11,
        packet_type: 4,
    };
    let bytes = [0x40, 0x09, 0, 1, 0, 5, 0x11, 0, 0, 0, 1];
    assert_err(&bytes, V5, e, R::MalformedPacket);
    // Topic Alias on a will (will properties come after the client id).
    let e = E::PropertyNotAllowed {
        id: 0x23,
        packet_type: 1,
    };
    let rest = [0, 0, 1, b'c', 3, 0x23, 0, 1, 0, 1, b't', 0, 0];
    let bytes = connect(b"MQTT", 5, 0x06, &rest);
    assert_err(&bytes, None, e, R::MalformedPacket);
}

#[test]
fn property_repeated() {
    let e = E::DuplicateProperty { id: 0x11 };
    let props = [0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2];
    assert_err(&connect_v5_props(&props), None, e, R::ProtocolError);
    let e = E::DuplicateProperty { id: 0x01 };
    assert_err(&publish_v5_props(&[1, 0, 1, 1]), V5, e, R::ProtocolError);
    let e = E::DuplicateProperty { id: 0x0B };
    let bytes = [0x82, 0x0A, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b't', 0];
    let bytes = frame(0x82, &bytes[2..]);
    assert_err(&bytes, V5, e, R::ProtocolError);
    // User Properties and a PUBLISH's Subscription Identifiers may repeat.
    let ok = publish_v5_props(&[0x0B, 1, 0x0B, 2]);
    assert!(decode(Bytes::from(ok), V5).is_ok());
}

#[test]
fn zero_values() {
    let e = E::ReceiveMaximumZero;
    assert_err(&connect_v5_props(&[0x21, 0, 0]), None, e, R::ProtocolError);
    assert_err(&connack_v5_props(&[0x21, 0, 0]), V5, e, R::ProtocolError);
    let e = E::MaximumPacketSizeZero;
    let props = [0x27, 0, 0, 0, 0];
    assert_err(&connect_v5_props(&props), None, e, R::ProtocolError);
    assert_err(&connack_v5_props(&props), V5, e, R::ProtocolError);
    let e = E::TopicAliasZero;
    let bytes = publish_v5_props(&[0x23, 0, 0]);
    assert_err(&bytes, V5, e, R::TopicAliasInvalid);
    let e = E::SubscriptionIdentifierZero;
    assert_err(&publish_v5_props(&[0x0B, 0]), V5, e, R::ProtocolError);
    let bytes = frame(0x82, &[0, 1, 2, 0x0B, 0, 0, 1, b't', 0]);
    assert_err(&bytes, V5, e, R::ProtocolError);
}

#[test]
fn byte_properties_out_of_range() {
    let e = |id| E::InvalidPropertyValue { id };
    assert_err(&publish_v5_props(&[0x01, 2]), V5, e(0x01), R::ProtocolError);
    let bytes = connect_v5_props(&[0x19, 2]);
    assert_err(&bytes, None, e(0x19), R::ProtocolError);
    let bytes = connect_v5_props(&[0x17, 2]);
    assert_err(&bytes, None, e(0x17), R::ProtocolError);
    assert_err(&connack_v5_props(&[0x24, 2]), V5, e(0x24), R::ProtocolError);
    assert_err(&connack_v5_props(&[0x25, 2]), V5, e(0x25), R::ProtocolError);
    assert_err(&connack_v5_props(&[0x28, 2]), V5, e(0x28), R::ProtocolError);
}

#[test]
fn auth_data_without_method() {
    let e = E::AuthDataWithoutMethod;
    let bytes = connect_v5_props(&[0x16, 0, 1, 0xAA]);
    assert_err(&bytes, None, e, R::ProtocolError);
}

#[test]
fn subscription_identifier_in_publish_decodes() {
    // Only the broker knows a PUBLISH came from a client, where this is a protocol error.
    let p = decode(Bytes::from(publish_v5_props(&[0x0B, 5])), V5).unwrap();
    let Packet::Publish(p) = p else {
        panic!("not a publish")
    };
    assert_eq!(p.properties.subscription_identifiers, vec![5]);
}

// --- reason codes -----------------------------------------------------------------------------

#[test]
fn unknown_reason_codes() {
    let e = |packet_type, code| E::InvalidReasonCode { packet_type, code };
    // Undefined byte.
    assert_err(
        &[0x40, 0x03, 0, 1, 0x03],
        V5,
        e(4, 0x03),
        R::MalformedPacket,
    );
    // Defined, but not for this packet.
    assert_err(
        &[0x40, 0x03, 0, 1, 0x92],
        V5,
        e(4, 0x92),
        R::MalformedPacket,
    );
    assert_err(
        &[0x62, 0x03, 0, 1, 0x10],
        V5,
        e(6, 0x10),
        R::MalformedPacket,
    );
    assert_err(
        &[0x70, 0x03, 0, 1, 0x80],
        V5,
        e(7, 0x80),
        R::MalformedPacket,
    );
    assert_err(
        &[0x90, 0x04, 0, 1, 0, 0x11],
        V5,
        e(9, 0x11),
        R::MalformedPacket,
    );
    assert_err(
        &[0xB0, 0x04, 0, 1, 0, 0x01],
        V5,
        e(11, 0x01),
        R::MalformedPacket,
    );
    assert_err(&[0xE0, 0x01, 0x18], V5, e(14, 0x18), R::MalformedPacket);
    assert_err(&[0xF0, 0x01, 0x80], V5, e(15, 0x80), R::MalformedPacket);
    assert_err(
        &[0x20, 0x03, 0, 0x04, 0],
        V5,
        e(2, 0x04),
        R::MalformedPacket,
    );
    // 3.1.1 return codes.
    assert_err(&[0x20, 0x02, 0, 6], V3, e(2, 6), R::MalformedPacket);
    assert_err(
        &[0x90, 0x03, 0, 1, 0x03],
        V3,
        e(9, 0x03),
        R::MalformedPacket,
    );
    assert_err(
        &[0x90, 0x03, 0, 1, 0x87],
        V3,
        e(9, 0x87),
        R::MalformedPacket,
    );
}

#[test]
fn every_error_names_its_rule() {
    // Display starts with the rule for a sample of errors built by hand.
    for e in [
        E::MalformedVarInt,
        E::InvalidUtf8,
        E::NullCharacter,
        E::PacketTooLarge { size: 10, max: 5 },
        E::UnsupportedProtocolVersion { level: 3 },
    ] {
        assert!(e.to_string().starts_with(e.spec_rule()), "{e}");
        assert!(e.spec_rule().starts_with("[MQTT-"));
    }
    assert_eq!(
        E::InvalidUtf8.to_string(),
        "[MQTT-1.5.4-1] string is not valid UTF-8"
    );
    let _ = decode_err(&[0xC0, 0x01, 0], V3);
}
