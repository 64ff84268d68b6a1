//! MQTT 5 property lists (section 2.2.2): reading them into the per-packet structs with the
//! per-packet allow lists and repetition rules, and writing them back.

use bytes::Bytes;
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::primitives::{Counter, Reader, Sink, VARINT_MAX};
use crate::mqtt::packet::{QoS, Will};
use crate::mqtt::properties::{
    id, AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperty,
};

/// Packet type numbers, used to name the packet in errors.
pub(crate) mod ptype {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

fn is_known(pid: u8) -> bool {
    matches!(
        pid,
        id::PAYLOAD_FORMAT_INDICATOR
            | id::MESSAGE_EXPIRY_INTERVAL
            | id::CONTENT_TYPE
            | id::RESPONSE_TOPIC
            | id::CORRELATION_DATA
            | id::SUBSCRIPTION_IDENTIFIER
            | id::SESSION_EXPIRY_INTERVAL
            | id::ASSIGNED_CLIENT_IDENTIFIER
            | id::SERVER_KEEP_ALIVE
            | id::AUTHENTICATION_METHOD
            | id::AUTHENTICATION_DATA
            | id::REQUEST_PROBLEM_INFORMATION
            | id::WILL_DELAY_INTERVAL
            | id::REQUEST_RESPONSE_INFORMATION
            | id::RESPONSE_INFORMATION
            | id::SERVER_REFERENCE
            | id::REASON_STRING
            | id::RECEIVE_MAXIMUM
            | id::TOPIC_ALIAS_MAXIMUM
            | id::TOPIC_ALIAS
            | id::MAXIMUM_QOS
            | id::RETAIN_AVAILABLE
            | id::USER_PROPERTY
            | id::MAXIMUM_PACKET_SIZE
            | id::WILDCARD_SUBSCRIPTION_AVAILABLE
            | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | id::SHARED_SUBSCRIPTION_AVAILABLE
    )
}

/// Reads a property list: its length, then each property, handing the identifier and the
/// cursor (positioned at the value) to `f`. `f` returns `Ok(false)` for an identifier the
/// packet does not allow, which becomes `UnknownProperty` or `PropertyNotAllowed`.
fn read_list(
    r: &mut Reader,
    packet_type: u8,
    mut f: impl FnMut(u8, &mut Reader) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.varint()?;
    let mut list = r.sub(usize::try_from(len).map_err(|_| DecodeError::UnexpectedEnd)?)?;
    while !list.is_empty() {
        // The identifier is a variable byte integer; every defined one fits in one byte.
        let raw = list.varint()?;
        let pid = u8::try_from(raw)
            .ok()
            .filter(|&p| is_known(p))
            .ok_or(DecodeError::UnknownProperty { id: raw })?;
        if !f(pid, &mut list)? {
            return Err(DecodeError::PropertyNotAllowed {
                id: pid,
                packet_type,
            });
        }
    }
    Ok(())
}

/// Stores a property that may appear only once.
fn once<T>(slot: &mut Option<T>, pid: u8, v: T) -> Result<bool, DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { id: pid });
    }
    *slot = Some(v);
    Ok(true)
}

/// A Byte property whose only legal values are 0 and 1.
fn flag(r: &mut Reader, pid: u8) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue { id: pid }),
    }
}

fn user(r: &mut Reader, v: &mut Vec<UserProperty>) -> Result<bool, DecodeError> {
    let name = r.string()?;
    let value = r.string()?;
    v.push(UserProperty { name, value });
    Ok(true)
}

fn nonzero_u16(r: &mut Reader, zero: DecodeError) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(zero),
        v => Ok(v),
    }
}

fn nonzero_u32(r: &mut Reader, zero: DecodeError) -> Result<u32, DecodeError> {
    match r.u32()? {
        0 => Err(zero),
        v => Ok(v),
    }
}

fn check_auth(method: &Option<ByteString>, data: &Option<Bytes>) -> Result<(), DecodeError> {
    if data.is_some() && method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(())
}

pub(crate) fn read_connect(r: &mut Reader) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    read_list(r, ptype::CONNECT, |pid, r| match pid {
        id::SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, pid, r.u32()?),
        id::RECEIVE_MAXIMUM => {
            let v = nonzero_u16(r, DecodeError::ReceiveMaximumZero)?;
            once(&mut p.receive_maximum, pid, v)
        }
        id::MAXIMUM_PACKET_SIZE => {
            let v = nonzero_u32(r, DecodeError::MaximumPacketSizeZero)?;
            once(&mut p.maximum_packet_size, pid, v)
        }
        id::TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, pid, r.u16()?),
        id::REQUEST_RESPONSE_INFORMATION => {
            once(&mut p.request_response_information, pid, flag(r, pid)?)
        }
        id::REQUEST_PROBLEM_INFORMATION => {
            once(&mut p.request_problem_information, pid, flag(r, pid)?)
        }
        id::USER_PROPERTY => user(r, &mut p.user_properties),
        id::AUTHENTICATION_METHOD => once(&mut p.authentication_method, pid, r.string()?),
        id::AUTHENTICATION_DATA => once(&mut p.authentication_data, pid, r.binary()?),
        _ => Ok(false),
    })?;
    check_auth(&p.authentication_method, &p.authentication_data)?;
    Ok(p)
}

pub(crate) fn read_connack(r: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    read_list(r, ptype::CONNACK, |pid, r| match pid {
        id::SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, pid, r.u32()?),
        id::RECEIVE_MAXIMUM => {
            let v = nonzero_u16(r, DecodeError::ReceiveMaximumZero)?;
            once(&mut p.receive_maximum, pid, v)
        }
        id::MAXIMUM_QOS => {
            let q = if flag(r, pid)? {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            once(&mut p.maximum_qos, pid, q)
        }
        id::RETAIN_AVAILABLE => once(&mut p.retain_available, pid, flag(r, pid)?),
        id::MAXIMUM_PACKET_SIZE => {
            let v = nonzero_u32(r, DecodeError::MaximumPacketSizeZero)?;
            once(&mut p.maximum_packet_size, pid, v)
        }
        id::ASSIGNED_CLIENT_IDENTIFIER => once(&mut p.assigned_client_identifier, pid, r.string()?),
        id::TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, pid, r.u16()?),
        id::REASON_STRING => once(&mut p.reason_string, pid, r.string()?),
        id::USER_PROPERTY => user(r, &mut p.user_properties),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
            once(&mut p.wildcard_subscription_available, pid, flag(r, pid)?)
        }
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => once(
            &mut p.subscription_identifiers_available,
            pid,
            flag(r, pid)?,
        ),
        id::SHARED_SUBSCRIPTION_AVAILABLE => {
            once(&mut p.shared_subscription_available, pid, flag(r, pid)?)
        }
        id::SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, pid, r.u16()?),
        id::RESPONSE_INFORMATION => once(&mut p.response_information, pid, r.string()?),
        id::SERVER_REFERENCE => once(&mut p.server_reference, pid, r.string()?),
        id::AUTHENTICATION_METHOD => once(&mut p.authentication_method, pid, r.string()?),
        id::AUTHENTICATION_DATA => once(&mut p.authentication_data, pid, r.binary()?),
        _ => Ok(false),
    })?;
    check_auth(&p.authentication_method, &p.authentication_data)?;
    Ok(p)
}

/// The properties shared by PUBLISH and the will; `will` selects the will's allow list
/// (Will Delay Interval instead of Topic Alias and Subscription Identifier).
fn read_message(
    r: &mut Reader,
    will: bool,
) -> Result<(PublishProperties, Option<u32>), DecodeError> {
    let mut p = PublishProperties::default();
    let mut delay = None;
    let packet_type = if will { ptype::CONNECT } else { ptype::PUBLISH };
    read_list(r, packet_type, |pid, r| match pid {
        id::PAYLOAD_FORMAT_INDICATOR => {
            let v = u8::from(flag(r, pid)?);
            once(&mut p.payload_format_indicator, pid, v)
        }
        id::MESSAGE_EXPIRY_INTERVAL => once(&mut p.message_expiry_interval, pid, r.u32()?),
        id::CONTENT_TYPE => once(&mut p.content_type, pid, r.string()?),
        id::RESPONSE_TOPIC => once(&mut p.response_topic, pid, r.string()?),
        id::CORRELATION_DATA => once(&mut p.correlation_data, pid, r.binary()?),
        id::USER_PROPERTY => user(r, &mut p.user_properties),
        id::TOPIC_ALIAS if !will => {
            let v = nonzero_u16(r, DecodeError::TopicAliasZero)?;
            once(&mut p.topic_alias, pid, v)
        }
        // May repeat (one per matching subscription, server to client). A client sending it
        // is a protocol error the broker reports itself, since only it knows the direction.
        id::SUBSCRIPTION_IDENTIFIER if !will => {
            match r.varint()? {
                0 => return Err(DecodeError::SubscriptionIdentifierZero),
                v => p.subscription_identifiers.push(v),
            }
            Ok(true)
        }
        id::WILL_DELAY_INTERVAL if will => once(&mut delay, pid, r.u32()?),
        _ => Ok(false),
    })?;
    Ok((p, delay))
}

pub(crate) fn read_publish(r: &mut Reader) -> Result<PublishProperties, DecodeError> {
    read_message(r, false).map(|(p, _)| p)
}

pub(crate) fn read_will(r: &mut Reader) -> Result<(PublishProperties, Option<u32>), DecodeError> {
    read_message(r, true)
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK.
pub(crate) fn read_ack(r: &mut Reader, packet_type: u8) -> Result<AckProperties, DecodeError> {
    let mut p = AckProperties::default();
    read_list(r, packet_type, |pid, r| match pid {
        id::REASON_STRING => once(&mut p.reason_string, pid, r.string()?),
        id::USER_PROPERTY => user(r, &mut p.user_properties),
        _ => Ok(false),
    })?;
    Ok(p)
}

pub(crate) fn read_subscribe(r: &mut Reader) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    read_list(r, ptype::SUBSCRIBE, |pid, r| match pid {
        id::SUBSCRIPTION_IDENTIFIER => match r.varint()? {
            0 => Err(DecodeError::SubscriptionIdentifierZero),
            v => once(&mut p.subscription_identifier, pid, v),
        },
        id::USER_PROPERTY => user(r, &mut p.user_properties),
        _ => Ok(false),
    })?;
    Ok(p)
}

pub(crate) fn read_unsubscribe(r: &mut Reader) -> Result<Vec<UserProperty>, DecodeError> {
    let mut v = Vec::new();
    read_list(r, ptype::UNSUBSCRIBE, |pid, r| match pid {
        id::USER_PROPERTY => user(r, &mut v),
        _ => Ok(false),
    })?;
    Ok(v)
}

pub(crate) fn read_disconnect(r: &mut Reader) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    read_list(r, ptype::DISCONNECT, |pid, r| match pid {
        id::SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, pid, r.u32()?),
        id::REASON_STRING => once(&mut p.reason_string, pid, r.string()?),
        id::USER_PROPERTY => user(r, &mut p.user_properties),
        id::SERVER_REFERENCE => once(&mut p.server_reference, pid, r.string()?),
        _ => Ok(false),
    })?;
    Ok(p)
}

pub(crate) fn read_auth(r: &mut Reader) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    read_list(r, ptype::AUTH, |pid, r| match pid {
        id::AUTHENTICATION_METHOD => once(&mut p.authentication_method, pid, r.string()?),
        id::AUTHENTICATION_DATA => once(&mut p.authentication_data, pid, r.binary()?),
        id::REASON_STRING => once(&mut p.reason_string, pid, r.string()?),
        id::USER_PROPERTY => user(r, &mut p.user_properties),
        _ => Ok(false),
    })?;
    check_auth(&p.authentication_method, &p.authentication_data)?;
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A property list that can write its properties (without the length prefix).
pub(crate) trait PropList {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;
}

/// Writes the property length and then the properties. The body is written twice, once into
/// a counter, because the length prefix is a variable byte integer that precedes it.
pub(crate) fn write_list<S: Sink, P: PropList>(p: &P, s: &mut S) -> Result<(), EncodeError> {
    let mut c = Counter::default();
    p.write_body(&mut c)?;
    let len = u32::try_from(c.0).map_err(|_| EncodeError::PacketTooLarge { size: c.0 })?;
    if len > VARINT_MAX {
        return Err(EncodeError::PacketTooLarge { size: c.0 });
    }
    s.varint(len)?;
    p.write_body(s)
}

fn w_u8<S: Sink>(s: &mut S, pid: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(pid);
        s.u8(v);
    }
}

fn w_bool<S: Sink>(s: &mut S, pid: u8, v: Option<bool>) {
    w_u8(s, pid, v.map(u8::from));
}

fn w_u16<S: Sink>(s: &mut S, pid: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(pid);
        s.u16(v);
    }
}

fn w_u32<S: Sink>(s: &mut S, pid: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(pid);
        s.u32(v);
    }
}

fn w_str<S: Sink>(s: &mut S, pid: u8, v: &Option<ByteString>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.u8(pid);
        s.string(v)?;
    }
    Ok(())
}

fn w_bin<S: Sink>(s: &mut S, pid: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.u8(pid);
        s.binary(v)?;
    }
    Ok(())
}

fn w_users<S: Sink>(s: &mut S, v: &[UserProperty]) -> Result<(), EncodeError> {
    for u in v {
        s.u8(id::USER_PROPERTY);
        s.string(&u.name)?;
        s.string(&u.value)?;
    }
    Ok(())
}

/// Rejects values our own decoder (and any strict peer) would refuse.
fn nonzero<T: Copy + PartialEq + Default>(
    v: Option<T>,
    what: &'static str,
) -> Result<(), EncodeError> {
    match v {
        Some(x) if x == T::default() => Err(EncodeError::InvalidValue { what }),
        _ => Ok(()),
    }
}

fn sub_id<S: Sink>(s: &mut S, v: u32) -> Result<(), EncodeError> {
    if v == 0 || v > VARINT_MAX {
        return Err(EncodeError::InvalidValue {
            what: "subscription identifier (must be 1..=268,435,455)",
        });
    }
    s.u8(id::SUBSCRIPTION_IDENTIFIER);
    s.varint(v)
}

impl PropList for ConnectProperties {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        nonzero(self.receive_maximum, "Receive Maximum 0")?;
        nonzero(self.maximum_packet_size, "Maximum Packet Size 0")?;
        w_u32(s, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        w_u16(s, id::RECEIVE_MAXIMUM, self.receive_maximum);
        w_u32(s, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        w_u16(s, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        w_bool(
            s,
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        w_bool(
            s,
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        w_users(s, &self.user_properties)?;
        w_str(s, id::AUTHENTICATION_METHOD, &self.authentication_method)?;
        w_bin(s, id::AUTHENTICATION_DATA, &self.authentication_data)
    }
}

impl PropList for ConnAckProperties {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        nonzero(self.receive_maximum, "Receive Maximum 0")?;
        nonzero(self.maximum_packet_size, "Maximum Packet Size 0")?;
        let max_qos = match self.maximum_qos {
            None => None,
            Some(QoS::AtMostOnce) => Some(0),
            Some(QoS::AtLeastOnce) => Some(1),
            Some(QoS::ExactlyOnce) => {
                // [MQTT-3.2.2-10]: only 0 or 1 may be sent; 2 is expressed by leaving it out.
                return Err(EncodeError::InvalidValue {
                    what: "Maximum QoS 2 (leave it out instead)",
                });
            }
        };
        w_u32(s, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        w_u16(s, id::RECEIVE_MAXIMUM, self.receive_maximum);
        w_u8(s, id::MAXIMUM_QOS, max_qos);
        w_bool(s, id::RETAIN_AVAILABLE, self.retain_available);
        w_u32(s, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        w_str(
            s,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        )?;
        w_u16(s, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        w_str(s, id::REASON_STRING, &self.reason_string)?;
        w_users(s, &self.user_properties)?;
        w_bool(
            s,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        w_bool(
            s,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        w_bool(
            s,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        w_u16(s, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        w_str(s, id::RESPONSE_INFORMATION, &self.response_information)?;
        w_str(s, id::SERVER_REFERENCE, &self.server_reference)?;
        w_str(s, id::AUTHENTICATION_METHOD, &self.authentication_method)?;
        w_bin(s, id::AUTHENTICATION_DATA, &self.authentication_data)
    }
}

/// The properties common to PUBLISH and the will.
fn write_message<S: Sink>(p: &PublishProperties, s: &mut S) -> Result<(), EncodeError> {
    write_message_expiring(p, p.message_expiry_interval, s)
}

/// The message properties with `expiry` in place of the stored Message Expiry Interval (a
/// forwarded message carries what is left of it).
fn write_message_expiring<S: Sink>(
    p: &PublishProperties,
    expiry: Option<u32>,
    s: &mut S,
) -> Result<(), EncodeError> {
    if matches!(p.payload_format_indicator, Some(v) if v > 1) {
        return Err(EncodeError::InvalidValue {
            what: "Payload Format Indicator (must be 0 or 1)",
        });
    }
    w_u8(s, id::PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    w_u32(s, id::MESSAGE_EXPIRY_INTERVAL, expiry);
    w_str(s, id::CONTENT_TYPE, &p.content_type)?;
    w_str(s, id::RESPONSE_TOPIC, &p.response_topic)?;
    w_bin(s, id::CORRELATION_DATA, &p.correlation_data)?;
    w_users(s, &p.user_properties)
}

impl PropList for PublishProperties {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        nonzero(self.topic_alias, "Topic Alias 0")?;
        write_message(self, s)?;
        w_u16(s, id::TOPIC_ALIAS, self.topic_alias);
        for &v in &self.subscription_identifiers {
            sub_id(s, v)?;
        }
        Ok(())
    }
}

/// The will's property list: the message properties plus Will Delay Interval; a will has no
/// Topic Alias or Subscription Identifier, so setting one is an error rather than a silent drop.
pub(crate) struct WillProps<'a>(pub(crate) &'a Will);

impl PropList for WillProps<'_> {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        let p = &self.0.properties;
        if p.topic_alias.is_some() || !p.subscription_identifiers.is_empty() {
            return Err(EncodeError::InvalidValue {
                what: "Topic Alias or Subscription Identifier on a will",
            });
        }
        w_u32(s, id::WILL_DELAY_INTERVAL, self.0.delay_interval);
        write_message(p, s)
    }
}

impl PropList for AckProperties {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        w_str(s, id::REASON_STRING, &self.reason_string)?;
        w_users(s, &self.user_properties)
    }
}

impl PropList for SubscribeProperties {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = self.subscription_identifier {
            sub_id(s, v)?;
        }
        w_users(s, &self.user_properties)
    }
}

/// UNSUBSCRIBE's list, which holds only User Properties.
pub(crate) struct UserProps<'a>(pub(crate) &'a [UserProperty]);

impl PropList for UserProps<'_> {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        w_users(s, self.0)
    }
}

impl PropList for DisconnectProperties {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        w_u32(s, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        w_str(s, id::REASON_STRING, &self.reason_string)?;
        w_users(s, &self.user_properties)?;
        w_str(s, id::SERVER_REFERENCE, &self.server_reference)
    }
}

impl PropList for AuthProperties {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        w_str(s, id::AUTHENTICATION_METHOD, &self.authentication_method)?;
        w_bin(s, id::AUTHENTICATION_DATA, &self.authentication_data)?;
        w_str(s, id::REASON_STRING, &self.reason_string)?;
        w_users(s, &self.user_properties)
    }
}

/// The property list of an outgoing PUBLISH: the message's properties, with the per-delivery
/// parts (expiry left, topic alias, subscription identifiers) given separately so the stored
/// message is never cloned to change them.
pub(crate) struct OutgoingProps<'a> {
    pub(crate) message: &'a PublishProperties,
    pub(crate) expiry: Option<u32>,
    pub(crate) topic_alias: Option<u16>,
    pub(crate) subscription_identifiers: &'a [u32],
}

impl PropList for OutgoingProps<'_> {
    fn write_body<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        nonzero(self.topic_alias, "Topic Alias 0")?;
        write_message_expiring(self.message, self.expiry, s)?;
        w_u16(s, id::TOPIC_ALIAS, self.topic_alias);
        for &v in self.subscription_identifiers {
            sub_id(s, v)?;
        }
        Ok(())
    }
}
