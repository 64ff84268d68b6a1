//! Decoding: the streaming `Decoder` (framing, early size and header checks) and the
//! per-packet body parsers.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::DecodeError;
use super::primitives::{read_varint, Reader};
use super::properties::{self as props, ptype};
use super::reasons::allowed;
use crate::mqtt::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, ProtocolVersion, PubResponse, Publish,
    QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use crate::mqtt::properties::{
    AckProperties, AuthProperties, DisconnectProperties, PublishProperties,
};
use crate::mqtt::reason::ReasonCode;

/// A streaming decoder for one connection.
///
/// It remembers the protocol version (fixed by the first CONNECT) because nothing but CONNECT
/// says which version a packet is in, and it enforces the maximum packet size from the fixed
/// header alone so a peer cannot make us buffer a body we would refuse anyway.
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Decoder {
    /// Version unknown yet: the first packet must be CONNECT ([MQTT-3.1.0-1]); decoding a
    /// CONNECT fixes the version.
    pub fn new(max_packet_size: u32) -> Decoder {
        Decoder {
            version: None,
            max_packet_size,
        }
    }

    /// For a client-side decoder (tests, bench): version known from the start.
    pub fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Decoder {
        Decoder {
            version: Some(version),
            max_packet_size,
        }
    }

    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The limit on a whole packet (fixed header included), as MQTT 5's Maximum Packet Size.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// Decodes one packet from the front of `buf`, splitting its bytes off; strings, binary
    /// data and the payload of the packet are slices of those bytes (no copy).
    ///
    /// `Ok(None)`: more bytes are needed, `buf` is untouched. Errors are final: the
    /// connection should be closed (after a CONNACK/DISCONNECT with `reason_code()`), and
    /// `buf` is left in an unspecified state.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        if let Some(packet) = self.plain_puback(buf) {
            return Ok(Some(packet));
        }
        let Some(h) = parse_header(buf, self.version, self.max_packet_size)? else {
            return Ok(None);
        };
        // Not reserving the rest of the frame here on purpose: a peer could then make us
        // allocate up to max_packet_size per connection with five bytes. The reader grows
        // the buffer as the bytes actually arrive.
        if buf.len() < h.total() {
            return Ok(None);
        }
        let mut frame = buf.split_to(h.total()).freeze();
        frame.advance(h.header_len);
        let packet = decode_body(h.byte1, frame, self.version)?;
        if let (None, Packet::Connect(c)) = (self.version, &packet) {
            // A later CONNECT (a protocol error the broker handles) does not change it.
            self.version = Some(c.protocol);
        }
        Ok(Some(packet))
    }
}

impl Decoder {
    /// The packet a subscriber sends most: a PUBACK of four bytes (success, no properties,
    /// in either version), read in place. The general path made a shared `Bytes` of each
    /// (an atomic increment and decrement) and went through the body decoder: 15% of the
    /// broker's time in a QoS 1 fan-out. Anything else, a zero packet id included, takes the
    /// general path and gets its errors there.
    fn plain_puback(&self, buf: &mut BytesMut) -> Option<Packet> {
        if self.version.is_none() || self.max_packet_size < 4 {
            return None;
        }
        let [0x40, 0x02, hi, lo, ..] = buf[..] else {
            return None;
        };
        let packet_id = PacketId::new(u16::from_be_bytes([hi, lo]))?;
        buf.advance(4);
        Some(Packet::PubAck(PubResponse::success(packet_id)))
    }
}

/// Decode exactly one complete packet (fixtures, tests). With `version` `None` the packet must
/// be a CONNECT, as on a fresh connection.
pub fn decode(mut bytes: Bytes, version: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
    let h = parse_header(&bytes, version, u32::MAX)?.ok_or(DecodeError::UnexpectedEnd)?;
    if bytes.len() < h.total() {
        return Err(DecodeError::UnexpectedEnd);
    }
    if bytes.len() > h.total() {
        return Err(DecodeError::TrailingBytes {
            count: bytes.len() - h.total(),
        });
    }
    bytes.advance(h.header_len);
    decode_body(h.byte1, bytes, version)
}

/// A parsed fixed header.
struct Header {
    byte1: u8,
    /// 1 + the length of the remaining length field.
    header_len: usize,
    remaining: usize,
}

impl Header {
    fn total(&self) -> usize {
        self.header_len + self.remaining
    }
}

/// Parses the fixed header at the front of `buf` and checks everything it alone decides:
/// packet type, reserved flags, PUBLISH QoS/DUP, first-packet rule and the size limit.
fn parse_header(
    buf: &[u8],
    version: Option<ProtocolVersion>,
    max: u32,
) -> Result<Option<Header>, DecodeError> {
    let Some((&byte1, rest)) = buf.split_first() else {
        return Ok(None);
    };
    check_first_byte(byte1, version)?;
    let Some((remaining, n)) = read_varint(rest)? else {
        return Ok(None);
    };
    let header = Header {
        byte1,
        header_len: 1 + n,
        // u32 -> usize: lossless on every platform this runs on (at least 32-bit).
        remaining: remaining as usize,
    };
    let size = header.total();
    if size > max as usize {
        return Err(DecodeError::PacketTooLarge { size, max });
    }
    Ok(Some(header))
}

fn check_first_byte(byte1: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    let packet_type = byte1 >> 4;
    let flags = byte1 & 0x0F;
    if version.is_none() && packet_type != ptype::CONNECT {
        return Err(DecodeError::FirstPacketNotConnect { packet_type });
    }
    let expected = match packet_type {
        0 => return Err(DecodeError::UnknownPacketType { packet_type }),
        ptype::AUTH if version == Some(ProtocolVersion::V311) => {
            return Err(DecodeError::UnknownPacketType { packet_type })
        }
        ptype::PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS);
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::DupOnQoS0);
            }
            return Ok(());
        }
        ptype::PUBREL | ptype::SUBSCRIBE | ptype::UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(DecodeError::InvalidFixedHeaderFlags { packet_type, flags });
    }
    Ok(())
}

fn decode_body(
    byte1: u8,
    body: Bytes,
    version: Option<ProtocolVersion>,
) -> Result<Packet, DecodeError> {
    let packet_type = byte1 >> 4;
    let mut r = Reader::new(body);
    if packet_type == ptype::CONNECT {
        // CONNECT carries its own version.
        let c = connect(&mut r)?;
        r.finish()?;
        return Ok(Packet::Connect(Box::new(c)));
    }
    let v5 = match version {
        Some(ProtocolVersion::V5) => true,
        Some(ProtocolVersion::V311) => false,
        None => return Err(DecodeError::FirstPacketNotConnect { packet_type }),
    };
    let packet = match packet_type {
        ptype::CONNACK => Packet::ConnAck(connack(&mut r, v5)?),
        ptype::PUBLISH => Packet::Publish(publish(byte1, &mut r, v5)?),
        ptype::PUBACK => Packet::PubAck(pub_response(&mut r, v5, packet_type)?),
        ptype::PUBREC => Packet::PubRec(pub_response(&mut r, v5, packet_type)?),
        ptype::PUBREL => Packet::PubRel(pub_response(&mut r, v5, packet_type)?),
        ptype::PUBCOMP => Packet::PubComp(pub_response(&mut r, v5, packet_type)?),
        ptype::SUBSCRIBE => Packet::Subscribe(subscribe(&mut r, v5)?),
        ptype::SUBACK => Packet::SubAck(suback(&mut r, v5)?),
        ptype::UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(&mut r, v5)?),
        ptype::UNSUBACK => Packet::UnsubAck(unsuback(&mut r, v5)?),
        ptype::PINGREQ => Packet::PingReq,
        ptype::PINGRESP => Packet::PingResp,
        ptype::DISCONNECT => Packet::Disconnect(disconnect(&mut r, v5)?),
        ptype::AUTH if v5 => Packet::Auth(auth(&mut r)?),
        _ => return Err(DecodeError::UnknownPacketType { packet_type }),
    };
    r.finish()?;
    Ok(packet)
}

/// An MQTT 5 reason code byte, checked against the packet's table.
fn reason(r: &mut Reader, packet_type: u8) -> Result<ReasonCode, DecodeError> {
    let code = r.u8()?;
    ReasonCode::from_u8(code)
        .filter(|&c| allowed(packet_type, c))
        .ok_or(DecodeError::InvalidReasonCode { packet_type, code })
}

/// A topic name (PUBLISH or will topic): no wildcards ([MQTT-3.3.2-2]); emptiness is checked
/// by the caller since MQTT 5 allows it with a Topic Alias.
fn check_topic_name(topic: &ByteString) -> Result<(), DecodeError> {
    if topic.as_bytes().iter().any(|&b| b == b'+' || b == b'#') {
        return Err(DecodeError::WildcardInTopicName);
    }
    Ok(())
}

fn qos_bits(v: u8) -> Option<QoS> {
    QoS::from_u8(v & 0b11)
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    // The level decides first: MQTT 3.1 ("MQIsdp", level 3) is an unsupported version, which
    // the broker answers with a CONNACK rather than just closing.
    let protocol = match level {
        4 => ProtocolVersion::V311,
        5 => ProtocolVersion::V5,
        _ => return Err(DecodeError::UnsupportedProtocolVersion { level }),
    };
    if &name[..] != b"MQTT" {
        return Err(DecodeError::InvalidProtocolName);
    }
    let v5 = protocol == ProtocolVersion::V5;
    let flags = r.u8()?;
    if flags & 0b0000_0001 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0b0000_0010 != 0;
    let will_flag = flags & 0b0000_0100 != 0;
    let will_qos_bits = (flags >> 3) & 0b11;
    let will_retain = flags & 0b0010_0000 != 0;
    let has_password = flags & 0b0100_0000 != 0;
    let has_username = flags & 0b1000_0000 != 0;
    if !will_flag {
        if will_qos_bits != 0 {
            return Err(DecodeError::WillQoSWithoutWill);
        }
        if will_retain {
            return Err(DecodeError::WillRetainWithoutWill);
        }
    }
    let will_qos = qos_bits(will_qos_bits).ok_or(DecodeError::InvalidWillQoS)?;
    if !v5 && has_password && !has_username {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        props::read_connect(r)?
    } else {
        Default::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let (properties, delay_interval) = if v5 {
            props::read_will(r)?
        } else {
            (PublishProperties::default(), None)
        };
        let topic = r.string()?;
        check_topic_name(&topic)?;
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopicName);
        }
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            delay_interval,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn connack(r: &mut Reader, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0b1111_1110 != 0 {
        return Err(DecodeError::ConnAckReservedFlags);
    }
    let session_present = flags & 1 != 0;
    if v5 {
        let code = reason(r, ptype::CONNACK)?;
        let properties = props::read_connack(r)?;
        Ok(ConnAck {
            session_present,
            code,
            properties,
        })
    } else {
        let raw = r.u8()?;
        let code = ReasonCode::from_v311_connack(raw).ok_or(DecodeError::InvalidReasonCode {
            packet_type: ptype::CONNACK,
            code: raw,
        })?;
        Ok(ConnAck {
            session_present,
            code,
            properties: Default::default(),
        })
    }
}

fn publish(byte1: u8, r: &mut Reader, v5: bool) -> Result<Publish, DecodeError> {
    // QoS 3 and DUP on QoS 0 were rejected with the fixed header.
    let qos = qos_bits(byte1 >> 1).ok_or(DecodeError::InvalidQoS)?;
    let topic = r.string()?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => Some(r.packet_id()?),
    };
    let properties = if v5 {
        props::read_publish(r)?
    } else {
        PublishProperties::default()
    };
    check_topic_name(&topic)?;
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicName);
    }
    Ok(Publish {
        dup: byte1 & 0b1000 != 0,
        qos,
        retain: byte1 & 1 != 0,
        topic,
        packet_id,
        properties,
        payload: r.take_rest(),
    })
}

fn pub_response(r: &mut Reader, v5: bool, packet_type: u8) -> Result<PubResponse, DecodeError> {
    let packet_id = r.packet_id()?;
    // MQTT 5 short forms: remaining length 2 means Success without properties, 3 means a
    // reason code without properties.
    let reason = if v5 && !r.is_empty() {
        reason(r, packet_type)?
    } else {
        ReasonCode::Success
    };
    let properties = if v5 && !r.is_empty() {
        props::read_ack(r, packet_type)?
    } else {
        AckProperties::default()
    };
    Ok(PubResponse {
        packet_id,
        reason,
        properties,
    })
}

fn subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = if v5 {
        props::read_subscribe(r)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let opts = r.u8()?;
        let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
        if opts & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved);
        }
        let qos = qos_bits(opts).ok_or(DecodeError::InvalidSubscriptionQoS)?;
        let retain_handling = match (opts >> 4) & 0b11 {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            2 => RetainHandling::Never,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        filters.push((
            filter,
            SubscriptionOptions {
                qos,
                no_local: opts & 0b0100 != 0,
                retain_as_published: opts & 0b1000 != 0,
                retain_handling,
            },
        ));
    }
    if filters.is_empty() {
        return Err(DecodeError::SubscribeWithoutFilters);
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

fn suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = if v5 {
        props::read_ack(r, ptype::SUBACK)?
    } else {
        AckProperties::default()
    };
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = if v5 {
            reason(r, ptype::SUBACK)?
        } else {
            match r.u8()? {
                0 => ReasonCode::GRANTED_QOS0,
                1 => ReasonCode::GrantedQoS1,
                2 => ReasonCode::GrantedQoS2,
                0x80 => ReasonCode::UnspecifiedError,
                code => {
                    return Err(DecodeError::InvalidReasonCode {
                        packet_type: ptype::SUBACK,
                        code,
                    })
                }
            }
        };
        reasons.push(code);
    }
    Ok(SubAck {
        packet_id,
        properties,
        reasons,
    })
}

fn unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let user_properties = if v5 {
        props::read_unsubscribe(r)?
    } else {
        Vec::new()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::UnsubscribeWithoutFilters);
    }
    Ok(Unsubscribe {
        packet_id,
        user_properties,
        filters,
    })
}

fn unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    if !v5 {
        return Ok(UnsubAck {
            packet_id,
            properties: AckProperties::default(),
            reasons: Vec::new(),
        });
    }
    let properties = props::read_ack(r, ptype::UNSUBACK)?;
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(reason(r, ptype::UNSUBACK)?);
    }
    Ok(UnsubAck {
        packet_id,
        properties,
        reasons,
    })
}

fn disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect, DecodeError> {
    // 3.1.1: no body (the caller's `finish` rejects any). 5: remaining length 0 means normal
    // disconnection, 1 means a reason code without properties.
    let reason = if v5 && !r.is_empty() {
        reason(r, ptype::DISCONNECT)?
    } else {
        ReasonCode::NORMAL_DISCONNECTION
    };
    let properties = if v5 && !r.is_empty() {
        props::read_disconnect(r)?
    } else {
        DisconnectProperties::default()
    };
    Ok(Disconnect { reason, properties })
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    // Remaining length 0 means Success without properties; a reason code alone is accepted
    // too, like DISCONNECT.
    let reason = if r.is_empty() {
        ReasonCode::Success
    } else {
        reason(r, ptype::AUTH)?
    };
    let properties = if r.is_empty() {
        AuthProperties::default()
    } else {
        props::read_auth(r)?
    };
    Ok(Auth { reason, properties })
}
