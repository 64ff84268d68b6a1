//! Which MQTT 5 reason codes each packet may carry (the per-packet tables of chapter 3).
//! A code outside its packet's table is rejected on decode and refused on encode, so a
//! programming error never reaches the wire.

use super::properties::ptype;
use crate::mqtt::reason::ReasonCode;

pub(crate) fn allowed(packet_type: u8, code: ReasonCode) -> bool {
    use ReasonCode::*;
    match packet_type {
        ptype::CONNACK => matches!(
            code,
            Success
                | UnspecifiedError
                | MalformedPacket
                | ProtocolError
                | ImplementationSpecificError
                | UnsupportedProtocolVersion
                | ClientIdentifierNotValid
                | BadUserNameOrPassword
                | NotAuthorized
                | ServerUnavailable
                | ServerBusy
                | Banned
                | BadAuthenticationMethod
                | TopicNameInvalid
                | PacketTooLarge
                | QuotaExceeded
                | PayloadFormatInvalid
                | RetainNotSupported
                | QoSNotSupported
                | UseAnotherServer
                | ServerMoved
                | ConnectionRateExceeded
        ),
        ptype::PUBACK | ptype::PUBREC => matches!(
            code,
            Success
                | NoMatchingSubscribers
                | UnspecifiedError
                | ImplementationSpecificError
                | NotAuthorized
                | TopicNameInvalid
                | PacketIdentifierInUse
                | QuotaExceeded
                | PayloadFormatInvalid
        ),
        ptype::PUBREL | ptype::PUBCOMP => matches!(code, Success | PacketIdentifierNotFound),
        ptype::SUBACK => matches!(
            code,
            Success
                | GrantedQoS1
                | GrantedQoS2
                | UnspecifiedError
                | ImplementationSpecificError
                | NotAuthorized
                | TopicFilterInvalid
                | PacketIdentifierInUse
                | QuotaExceeded
                | SharedSubscriptionsNotSupported
                | SubscriptionIdentifiersNotSupported
                | WildcardSubscriptionsNotSupported
        ),
        ptype::UNSUBACK => matches!(
            code,
            Success
                | NoSubscriptionExisted
                | UnspecifiedError
                | ImplementationSpecificError
                | NotAuthorized
                | TopicFilterInvalid
                | PacketIdentifierInUse
        ),
        ptype::DISCONNECT => matches!(
            code,
            Success
                | DisconnectWithWillMessage
                | UnspecifiedError
                | MalformedPacket
                | ProtocolError
                | ImplementationSpecificError
                | NotAuthorized
                | ServerBusy
                | ServerShuttingDown
                | KeepAliveTimeout
                | SessionTakenOver
                | TopicFilterInvalid
                | TopicNameInvalid
                | ReceiveMaximumExceeded
                | TopicAliasInvalid
                | PacketTooLarge
                | MessageRateTooHigh
                | QuotaExceeded
                | AdministrativeAction
                | PayloadFormatInvalid
                | RetainNotSupported
                | QoSNotSupported
                | UseAnotherServer
                | ServerMoved
                | SharedSubscriptionsNotSupported
                | ConnectionRateExceeded
                | MaximumConnectTime
                | SubscriptionIdentifiersNotSupported
                | WildcardSubscriptionsNotSupported
        ),
        ptype::AUTH => matches!(code, Success | ContinueAuthentication | ReAuthenticate),
        _ => false,
    }
}
