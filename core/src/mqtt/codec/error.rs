//! Codec errors. Both are small `Copy` values so the connection task can log one, map it to a
//! reason code and close the connection without any allocation on the error path.

use thiserror::Error;

use crate::mqtt::reason::ReasonCode;

/// Why a peer's bytes are not a valid MQTT packet.
///
/// The `Display` text starts with the spec statement the bytes break (`[MQTT-x.y.z-n]` where the
/// spec numbers the statement, `§x.y.z` where it only describes the rule in prose), so a log line
/// is enough to settle an interoperability argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("[MQTT-1.5.5] variable byte integer longer than 4 bytes")]
    MalformedVarInt,
    #[error("[MQTT-2.1.4] a field runs past the end of the packet (remaining length too short)")]
    UnexpectedEnd,
    #[error("[MQTT-2.1.4] {count} unexpected bytes after the packet body")]
    TrailingBytes { count: usize },
    #[error("[MQTT-2.1.2] reserved or unknown packet type {packet_type}")]
    UnknownPacketType { packet_type: u8 },
    #[error(
        "[MQTT-2.1.3-1] reserved fixed header flags {flags:#06b} on packet type {packet_type}"
    )]
    InvalidFixedHeaderFlags { packet_type: u8, flags: u8 },
    #[error("[MQTT-3.1.0-1] the first packet must be CONNECT, got packet type {packet_type}")]
    FirstPacketNotConnect { packet_type: u8 },
    #[error("[MQTT-3.2.2-15] packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge { size: usize, max: u32 },
    #[error("[MQTT-1.5.4-1] string is not valid UTF-8")]
    InvalidUtf8,
    #[error("[MQTT-1.5.4-2] string contains the null character U+0000")]
    NullCharacter,
    #[error("[MQTT-2.2.1-3] packet identifier is 0")]
    PacketIdZero,
    #[error("[MQTT-3.3.1-4] QoS 3 in a PUBLISH")]
    InvalidQoS,
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    #[error("[MQTT-3.3.2-2] wildcard character in a PUBLISH topic name")]
    WildcardInTopicName,
    #[error("[MQTT-4.7.3-1] empty topic name in a PUBLISH without a Topic Alias")]
    EmptyTopicName,
    #[error("[MQTT-3.1.2-1] protocol name is not \"MQTT\"")]
    InvalidProtocolName,
    #[error("[MQTT-3.1.2-2] unsupported protocol level {level}")]
    UnsupportedProtocolVersion { level: u8 },
    #[error("[MQTT-3.1.2-3] reserved flag of CONNECT is set")]
    ConnectReservedFlag,
    #[error(
        "[MQTT-3.1.2-13] Will QoS is not 0 although the Will Flag is 0 (see also [MQTT-3.1.2-11])"
    )]
    WillQoSWithoutWill,
    #[error("[MQTT-3.1.2-14] Will QoS 3")]
    InvalidWillQoS,
    #[error(
        "[MQTT-3.1.2-15] Will Retain is set although the Will Flag is 0 (see also [MQTT-3.1.2-11])"
    )]
    WillRetainWithoutWill,
    #[error("[MQTT-3.1.2-22] password without user name in MQTT 3.1.1")]
    PasswordWithoutUsername,
    #[error("[MQTT-3.2.2-1] reserved CONNACK acknowledge flags are set")]
    ConnAckReservedFlags,
    #[error("[MQTT-3.8.3-3] SUBSCRIBE without a topic filter")]
    SubscribeWithoutFilters,
    #[error("[MQTT-3.8.3-5] reserved bits of the subscription options are set")]
    SubscriptionOptionsReserved,
    #[error("[MQTT-3.8.3-4] subscription QoS 3")]
    InvalidSubscriptionQoS,
    #[error("[MQTT-3.8.3.1] Retain Handling 3")]
    InvalidRetainHandling,
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter")]
    UnsubscribeWithoutFilters,
    #[error("[MQTT-2.2.2.2] unknown property identifier {id:#04x}")]
    UnknownProperty { id: u32 },
    #[error("[MQTT-2.2.2.2] property {id:#04x} is not allowed on packet type {packet_type}")]
    PropertyNotAllowed { id: u8, packet_type: u8 },
    #[error("[MQTT-2.2.2-2] property {id:#04x} appears more than once")]
    DuplicateProperty { id: u8 },
    #[error("[MQTT-3.1.2.11.3] Receive Maximum is 0")]
    ReceiveMaximumZero,
    #[error("[MQTT-3.1.2.11.4] Maximum Packet Size is 0")]
    MaximumPacketSizeZero,
    #[error("[MQTT-3.3.2-8] Topic Alias is 0")]
    TopicAliasZero,
    #[error("[MQTT-3.8.2.1.2] Subscription Identifier is 0")]
    SubscriptionIdentifierZero,
    #[error("[MQTT-2.2.2.2] property {id:#04x} has a value outside its range")]
    InvalidPropertyValue { id: u8 },
    #[error("[MQTT-3.1.2.11.9] Authentication Data without an Authentication Method")]
    AuthDataWithoutMethod,
    #[error("[MQTT-2.4] reason code {code:#04x} is not defined for packet type {packet_type}")]
    InvalidReasonCode { packet_type: u8, code: u8 },
}

impl DecodeError {
    /// The reason code a broker sends back (CONNACK or DISCONNECT) before closing.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocolVersion { .. } | InvalidProtocolName => {
                // [MQTT-3.1.2-1]/[MQTT-3.1.2-2]: the server MAY answer 0x84 to either.
                ReasonCode::UnsupportedProtocolVersion
            }
            WildcardInTopicName => ReasonCode::TopicNameInvalid,
            TopicAliasZero => ReasonCode::TopicAliasInvalid,
            // The spec words these as "It is a Protocol Error to ...": the bytes parse, the
            // content is forbidden.
            FirstPacketNotConnect { .. }
            | EmptyTopicName
            | SubscribeWithoutFilters
            | UnsubscribeWithoutFilters
            | InvalidRetainHandling
            | DuplicateProperty { .. }
            | ReceiveMaximumZero
            | MaximumPacketSizeZero
            | SubscriptionIdentifierZero
            | InvalidPropertyValue { .. }
            | AuthDataWithoutMethod
            | PasswordWithoutUsername
            | PacketIdZero => ReasonCode::ProtocolError,
            MalformedVarInt
            | UnexpectedEnd
            | TrailingBytes { .. }
            | UnknownPacketType { .. }
            | InvalidFixedHeaderFlags { .. }
            | InvalidUtf8
            | NullCharacter
            | InvalidQoS
            | DupOnQoS0
            | ConnectReservedFlag
            | WillQoSWithoutWill
            | InvalidWillQoS
            | WillRetainWithoutWill
            | ConnAckReservedFlags
            | SubscriptionOptionsReserved
            | InvalidSubscriptionQoS
            | UnknownProperty { .. }
            | PropertyNotAllowed { .. }
            | InvalidReasonCode { .. } => ReasonCode::MalformedPacket,
        }
    }

    /// The spec statement this error breaks, e.g. `"[MQTT-1.5.4-1]"`: the prefix of `Display`.
    pub fn spec_rule(&self) -> &'static str {
        use DecodeError::*;
        match self {
            MalformedVarInt => "[MQTT-1.5.5]",
            UnexpectedEnd | TrailingBytes { .. } => "[MQTT-2.1.4]",
            UnknownPacketType { .. } => "[MQTT-2.1.2]",
            InvalidFixedHeaderFlags { .. } => "[MQTT-2.1.3-1]",
            FirstPacketNotConnect { .. } => "[MQTT-3.1.0-1]",
            PacketTooLarge { .. } => "[MQTT-3.2.2-15]",
            InvalidUtf8 => "[MQTT-1.5.4-1]",
            NullCharacter => "[MQTT-1.5.4-2]",
            PacketIdZero => "[MQTT-2.2.1-3]",
            InvalidQoS => "[MQTT-3.3.1-4]",
            DupOnQoS0 => "[MQTT-3.3.1-2]",
            WildcardInTopicName => "[MQTT-3.3.2-2]",
            EmptyTopicName => "[MQTT-4.7.3-1]",
            InvalidProtocolName => "[MQTT-3.1.2-1]",
            UnsupportedProtocolVersion { .. } => "[MQTT-3.1.2-2]",
            ConnectReservedFlag => "[MQTT-3.1.2-3]",
            WillQoSWithoutWill => "[MQTT-3.1.2-13]",
            InvalidWillQoS => "[MQTT-3.1.2-14]",
            WillRetainWithoutWill => "[MQTT-3.1.2-15]",
            PasswordWithoutUsername => "[MQTT-3.1.2-22]",
            ConnAckReservedFlags => "[MQTT-3.2.2-1]",
            SubscribeWithoutFilters => "[MQTT-3.8.3-3]",
            SubscriptionOptionsReserved => "[MQTT-3.8.3-5]",
            InvalidSubscriptionQoS => "[MQTT-3.8.3-4]",
            InvalidRetainHandling => "[MQTT-3.8.3.1]",
            UnsubscribeWithoutFilters => "[MQTT-3.10.3-2]",
            UnknownProperty { .. } | PropertyNotAllowed { .. } | InvalidPropertyValue { .. } => {
                "[MQTT-2.2.2.2]"
            }
            DuplicateProperty { .. } => "[MQTT-2.2.2-2]",
            ReceiveMaximumZero => "[MQTT-3.1.2.11.3]",
            MaximumPacketSizeZero => "[MQTT-3.1.2.11.4]",
            TopicAliasZero => "[MQTT-3.3.2-8]",
            SubscriptionIdentifierZero => "[MQTT-3.8.2.1.2]",
            AuthDataWithoutMethod => "[MQTT-3.1.2.11.9]",
            InvalidReasonCode { .. } => "[MQTT-2.4]",
        }
    }
}

/// Why a packet cannot be written in the requested protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("[MQTT-1.5.4] string of {len} bytes exceeds 65,535")]
    StringTooLong { len: usize },
    #[error("[MQTT-1.5.6] binary data of {len} bytes exceeds 65,535")]
    BinaryTooLong { len: usize },
    #[error("[MQTT-2.1.4] remaining length {size} exceeds 268,435,455")]
    PacketTooLarge { size: usize },
    #[error("{what} cannot be expressed in MQTT 3.1.1")]
    NotInV311 { what: &'static str },
    #[error("CONNECT protocol field does not match the encoding version")]
    VersionMismatch,
    #[error("[MQTT-2.2.1-2] PUBLISH packet identifier must be present exactly when QoS > 0")]
    PacketIdMismatch,
    #[error("reason code {code:#04x} is not defined for {packet}")]
    InvalidReasonCode { packet: &'static str, code: u8 },
    #[error("invalid {what}")]
    InvalidValue { what: &'static str },
}
