//! Encoding. The body is produced by one function generic over a `Sink`: run into a
//! `Counter` it gives the remaining length (and `encoded_len`), run into the buffer it writes,
//! so the two can never disagree.

use bytes::BytesMut;

use super::error::EncodeError;
use super::primitives::{varint_len, Counter, Sink, VARINT_MAX};
use super::properties::{self as props, ptype, UserProps, WillProps};
use super::reasons::allowed;
use crate::mqtt::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
use crate::mqtt::properties::{AckProperties, DisconnectProperties};
use crate::mqtt::reason::ReasonCode;

/// Append the encoding of `packet` for `version` to `out`. MQTT-5-only fields are left out
/// for V311 (properties, reason codes on acks); an AUTH packet in V311 is an error.
/// On error nothing has been written.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let remaining = remaining_len(packet, version)?;
    out.reserve(1 + varint_len(remaining) + remaining);
    out.u8(first_byte(packet));
    // Checked against VARINT_MAX by remaining_len, so the conversion cannot fail.
    out.varint(
        u32::try_from(remaining).map_err(|_| EncodeError::PacketTooLarge { size: remaining })?,
    )?;
    body(packet, version, out)
}

/// The size `encode` would write, without writing.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let remaining = remaining_len(packet, version)?;
    Ok(1 + varint_len(remaining) + remaining)
}

fn remaining_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    body(packet, version, &mut c)?;
    if c.0 > VARINT_MAX as usize {
        return Err(EncodeError::PacketTooLarge { size: c.0 });
    }
    Ok(c.0)
}

fn first_byte(packet: &Packet) -> u8 {
    let (packet_type, flags) = match packet {
        Packet::Connect(_) => (ptype::CONNECT, 0),
        Packet::ConnAck(_) => (ptype::CONNACK, 0),
        Packet::Publish(p) => (
            ptype::PUBLISH,
            (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain),
        ),
        Packet::PubAck(_) => (ptype::PUBACK, 0),
        Packet::PubRec(_) => (ptype::PUBREC, 0),
        Packet::PubRel(_) => (ptype::PUBREL, 0b0010),
        Packet::PubComp(_) => (ptype::PUBCOMP, 0),
        Packet::Subscribe(_) => (ptype::SUBSCRIBE, 0b0010),
        Packet::SubAck(_) => (ptype::SUBACK, 0),
        Packet::Unsubscribe(_) => (ptype::UNSUBSCRIBE, 0b0010),
        Packet::UnsubAck(_) => (ptype::UNSUBACK, 0),
        Packet::PingReq => (ptype::PINGREQ, 0),
        Packet::PingResp => (ptype::PINGRESP, 0),
        Packet::Disconnect(_) => (ptype::DISCONNECT, 0),
        Packet::Auth(_) => (ptype::AUTH, 0),
    };
    (packet_type << 4) | flags
}

fn body<S: Sink>(packet: &Packet, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    let v5 = version == ProtocolVersion::V5;
    match packet {
        Packet::Connect(c) => connect(c, version, s),
        Packet::ConnAck(c) => connack(c, v5, s),
        Packet::Publish(p) => publish(p, v5, s),
        Packet::PubAck(p) => pub_response(p, v5, ptype::PUBACK, "PUBACK", s),
        Packet::PubRec(p) => pub_response(p, v5, ptype::PUBREC, "PUBREC", s),
        Packet::PubRel(p) => pub_response(p, v5, ptype::PUBREL, "PUBREL", s),
        Packet::PubComp(p) => pub_response(p, v5, ptype::PUBCOMP, "PUBCOMP", s),
        Packet::Subscribe(p) => subscribe(p, v5, s),
        Packet::SubAck(p) => suback(p, v5, s),
        Packet::Unsubscribe(p) => unsubscribe(p, v5, s),
        Packet::UnsubAck(p) => unsuback(p, v5, s),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => disconnect(d, v5, s),
        Packet::Auth(a) if v5 => auth(a, s),
        Packet::Auth(_) => Err(EncodeError::NotInV311 { what: "AUTH" }),
    }
}

fn check_reason(
    packet_type: u8,
    packet: &'static str,
    code: ReasonCode,
) -> Result<(), EncodeError> {
    if allowed(packet_type, code) {
        Ok(())
    } else {
        Err(EncodeError::InvalidReasonCode {
            packet,
            code: code as u8,
        })
    }
}

fn connect<S: Sink>(c: &Connect, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if c.protocol != version {
        return Err(EncodeError::VersionMismatch);
    }
    let v5 = version == ProtocolVersion::V5;
    if !v5 && c.password.is_some() && c.username.is_none() {
        // [MQTT-3.1.2-22]
        return Err(EncodeError::NotInV311 {
            what: "a password without a user name",
        });
    }
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0b0000_0010;
    }
    if let Some(w) = &c.will {
        flags |= 0b0000_0100 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0b0010_0000;
        }
    }
    if c.password.is_some() {
        flags |= 0b0100_0000;
    }
    if c.username.is_some() {
        flags |= 0b1000_0000;
    }
    s.string("MQTT")?;
    s.u8(version.level());
    s.u8(flags);
    s.u16(c.keep_alive);
    if v5 {
        props::write_list(&c.properties, s)?;
    }
    s.string(&c.client_id)?;
    if let Some(w) = &c.will {
        if v5 {
            props::write_list(&WillProps(w), s)?;
        }
        s.string(&w.topic)?;
        s.binary(&w.payload)?;
    }
    if let Some(u) = &c.username {
        s.string(u)?;
    }
    if let Some(p) = &c.password {
        s.binary(p)?;
    }
    Ok(())
}

fn connack<S: Sink>(c: &ConnAck, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.u8(u8::from(c.session_present));
    if v5 {
        check_reason(ptype::CONNACK, "CONNACK", c.code)?;
        s.u8(c.code as u8);
        props::write_list(&c.properties, s)
    } else {
        s.u8(c.code.to_v311_connack());
        Ok(())
    }
}

fn publish<S: Sink>(p: &Publish, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    if (p.qos == QoS::AtMostOnce) != p.packet_id.is_none() {
        return Err(EncodeError::PacketIdMismatch);
    }
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(EncodeError::InvalidValue {
            what: "DUP on a QoS 0 PUBLISH ([MQTT-3.3.1-2])",
        });
    }
    if p.topic.is_empty() && (!v5 || p.properties.topic_alias.is_none()) {
        return Err(EncodeError::InvalidValue {
            what: "empty topic without a Topic Alias",
        });
    }
    s.string(&p.topic)?;
    if let Some(id) = p.packet_id {
        s.u16(id.get());
    }
    if v5 {
        props::write_list(&p.properties, s)?;
    }
    s.put(&p.payload);
    Ok(())
}

fn ack_props_empty(p: &AckProperties) -> bool {
    p.reason_string.is_none() && p.user_properties.is_empty()
}

fn pub_response<S: Sink>(
    p: &PubResponse,
    v5: bool,
    packet_type: u8,
    name: &'static str,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.u16(p.packet_id.get());
    if !v5 {
        return Ok(());
    }
    check_reason(packet_type, name, p.reason)?;
    // Short forms (3.4.2.1): omit what is at its default, from the end.
    let no_props = ack_props_empty(&p.properties);
    if p.reason == ReasonCode::Success && no_props {
        return Ok(());
    }
    s.u8(p.reason as u8);
    if !no_props {
        props::write_list(&p.properties, s)?;
    }
    Ok(())
}

fn subscribe<S: Sink>(p: &Subscribe, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    if p.filters.is_empty() {
        return Err(EncodeError::InvalidValue {
            what: "SUBSCRIBE without a topic filter ([MQTT-3.8.3-3])",
        });
    }
    s.u16(p.packet_id.get());
    if v5 {
        props::write_list(&p.properties, s)?;
    }
    for (filter, o) in &p.filters {
        s.string(filter)?;
        let mut opts = o.qos as u8;
        if v5 {
            opts |= (u8::from(o.no_local) << 2)
                | (u8::from(o.retain_as_published) << 3)
                | ((o.retain_handling as u8) << 4);
        }
        s.u8(opts);
    }
    Ok(())
}

fn suback<S: Sink>(p: &SubAck, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.packet_id.get());
    if v5 {
        props::write_list(&p.properties, s)?;
    }
    for &code in &p.reasons {
        check_reason(ptype::SUBACK, "SUBACK", code)?;
        let byte = if v5 || !code.is_error() {
            code as u8
        } else {
            // 3.1.1 has one failure code.
            0x80
        };
        s.u8(byte);
    }
    Ok(())
}

fn unsubscribe<S: Sink>(p: &Unsubscribe, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    if p.filters.is_empty() {
        return Err(EncodeError::InvalidValue {
            what: "UNSUBSCRIBE without a topic filter ([MQTT-3.10.3-2])",
        });
    }
    s.u16(p.packet_id.get());
    if v5 {
        props::write_list(&UserProps(&p.user_properties), s)?;
    }
    for filter in &p.filters {
        s.string(filter)?;
    }
    Ok(())
}

fn unsuback<S: Sink>(p: &UnsubAck, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.packet_id.get());
    if v5 {
        props::write_list(&p.properties, s)?;
        for &code in &p.reasons {
            check_reason(ptype::UNSUBACK, "UNSUBACK", code)?;
            s.u8(code as u8);
        }
    }
    Ok(())
}

fn disconnect_props_empty(p: &DisconnectProperties) -> bool {
    p.session_expiry_interval.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
        && p.server_reference.is_none()
}

fn disconnect<S: Sink>(d: &Disconnect, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    if !v5 {
        return Ok(());
    }
    check_reason(ptype::DISCONNECT, "DISCONNECT", d.reason)?;
    if d.reason == ReasonCode::NORMAL_DISCONNECTION && disconnect_props_empty(&d.properties) {
        return Ok(());
    }
    // The spec lets a reason code stand alone (remaining length 1), but some clients
    // (mqttbytes/rumqttc among them) then fail looking for the property length; writing it
    // costs one byte.
    s.u8(d.reason as u8);
    props::write_list(&d.properties, s)
}

fn auth<S: Sink>(a: &Auth, s: &mut S) -> Result<(), EncodeError> {
    check_reason(ptype::AUTH, "AUTH", a.reason)?;
    let p = &a.properties;
    let no_props = p.authentication_method.is_none()
        && p.authentication_data.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty();
    if a.reason == ReasonCode::Success && no_props {
        return Ok(());
    }
    s.u8(a.reason as u8);
    props::write_list(p, s)
}
