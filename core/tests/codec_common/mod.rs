//! proptest strategies for arbitrary valid packets, shared by the codec property tests
//! (a directory, so cargo does not build it as a test crate of its own).

use bytes::Bytes;
use bytestring::ByteString;
use iotcore_core::mqtt::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::select;

pub const VARINT_MAX: u32 = 268_435_455;

pub fn string() -> impl Strategy<Value = ByteString> {
    "[^\u{0}]{0,8}".prop_map(ByteString::from)
}

pub fn topic_name() -> impl Strategy<Value = ByteString> {
    "[^\u{0}+#]{1,12}".prop_map(ByteString::from)
}

pub fn topic_filter() -> impl Strategy<Value = ByteString> {
    prop_oneof![
        "[a-z/]{1,8}",
        "[a-z]{1,3}/\\+/[a-z]{1,3}",
        "[a-z]{1,3}/#",
        Just("#".to_string()),
        "\\$share/[a-z]{1,3}/[a-z/]{1,6}",
    ]
    .prop_map(ByteString::from)
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

pub fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (string(), string()).prop_map(|(name, value)| UserProperty { name, value }),
        0..3,
    )
}

pub fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

pub fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap_or_else(|| unreachable!()))
}

fn nonzero_u16() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn nonzero_u32() -> impl Strategy<Value = u32> {
    1..=u32::MAX
}

/// Authentication Method and Data: data only with a method.
fn auth_pair() -> impl Strategy<Value = (Option<ByteString>, Option<Bytes>)> {
    prop_oneof![
        Just((None, None)),
        (string(), of(binary())).prop_map(|(m, d)| (Some(m), d)),
    ]
}

pub fn connect_props() -> impl Strategy<Value = ConnectProperties> {
    (
        of(any::<u32>()),
        of(nonzero_u16()),
        of(nonzero_u32()),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        users(),
        auth_pair(),
    )
        .prop_map(
            |(se, rm, mps, tam, rri, rpi, users, (am, ad))| ConnectProperties {
                session_expiry_interval: se,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: users,
                authentication_method: am,
                authentication_data: ad,
            },
        )
}

pub fn connack_props() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            of(any::<u32>()),
            of(nonzero_u16()),
            of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
            of(any::<bool>()),
            of(nonzero_u32()),
            of(string()),
            of(any::<u16>()),
            of(string()),
        ),
        (
            users(),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<u16>()),
            of(string()),
            of(string()),
            auth_pair(),
        ),
    )
        .prop_map(
            |(
                (se, rm, mq, ra, mps, aci, tam, rs),
                (users, wsa, sia, ssa, ska, ri, sr, (am, ad)),
            )| {
                ConnAckProperties {
                    session_expiry_interval: se,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: users,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        )
}

/// Message properties; `publish` adds Topic Alias and Subscription Identifiers.
pub fn message_props(publish: bool) -> impl Strategy<Value = PublishProperties> {
    (
        of(0..=1u8),
        of(any::<u32>()),
        of(nonzero_u16()),
        of(string()),
        of(binary()),
        users(),
        vec(1..=VARINT_MAX, 0..3),
        of(string()),
    )
        .prop_map(
            move |(pfi, mei, ta, rt, cd, users, sids, ct)| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: if publish { ta } else { None },
                response_topic: rt,
                correlation_data: cd,
                user_properties: users,
                subscription_identifiers: if publish { sids } else { Vec::new() },
                content_type: ct,
            },
        )
}

pub fn ack_props() -> impl Strategy<Value = AckProperties> {
    (of(string()), users()).prop_map(|(reason_string, user_properties)| AckProperties {
        reason_string,
        user_properties,
    })
}

fn codes(v: &[u8]) -> Vec<ReasonCode> {
    v.iter().filter_map(|&b| ReasonCode::from_u8(b)).collect()
}

pub fn connack_codes() -> Vec<ReasonCode> {
    codes(&[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
        0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ])
}
pub fn puback_codes() -> Vec<ReasonCode> {
    codes(&[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99])
}
pub fn pubrel_codes() -> Vec<ReasonCode> {
    codes(&[0x00, 0x92])
}
pub fn suback_codes() -> Vec<ReasonCode> {
    codes(&[
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ])
}
pub fn unsuback_codes() -> Vec<ReasonCode> {
    codes(&[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91])
}
pub fn disconnect_codes() -> Vec<ReasonCode> {
    codes(&[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ])
}

pub fn will() -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        of(any::<u32>()),
        message_props(false),
    )
        .prop_map(
            |(topic, payload, qos, retain, delay_interval, properties)| Will {
                topic,
                payload,
                qos,
                retain,
                delay_interval,
                properties,
            },
        )
}

pub fn connect() -> impl Strategy<Value = Connect> {
    (
        any::<bool>(),
        any::<u16>(),
        connect_props(),
        string(),
        of(will()),
        of(string()),
        of(binary()),
    )
        .prop_map(
            |(clean_start, keep_alive, properties, client_id, will, username, password)| Connect {
                protocol: ProtocolVersion::V5,
                clean_start,
                keep_alive,
                properties,
                client_id,
                will,
                username,
                password,
            },
        )
}

pub fn publish() -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        prop_oneof![4 => topic_name(), 1 => Just(ByteString::new())],
        packet_id(),
        message_props(true),
        binary(),
    )
        .prop_map(|(dup, qos, retain, topic, id, mut properties, payload)| {
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = Some(1);
            }
            Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                packet_id: (qos != QoS::AtMostOnce).then_some(id),
                properties,
                payload,
            }
        })
}

fn pub_response(codes: Vec<ReasonCode>) -> impl Strategy<Value = PubResponse> {
    (packet_id(), select(codes), ack_props()).prop_map(|(packet_id, reason, properties)| {
        PubResponse {
            packet_id,
            reason,
            properties,
        }
    })
}

pub fn subscription_options() -> impl Strategy<Value = SubscriptionOptions> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(vec![
            RetainHandling::OnSubscribe,
            RetainHandling::OnNewSubscribe,
            RetainHandling::Never,
        ]),
    )
        .prop_map(|(qos, no_local, retain_as_published, retain_handling)| {
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            }
        })
}

/// Any packet valid in MQTT 5 (CONNECT's `protocol` is V5).
pub fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(|c| Packet::Connect(Box::new(c))),
        (any::<bool>(), select(connack_codes()), connack_props()).prop_map(
            |(session_present, code, properties)| Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties
            })
        ),
        publish().prop_map(Packet::Publish),
        pub_response(puback_codes()).prop_map(Packet::PubAck),
        pub_response(puback_codes()).prop_map(Packet::PubRec),
        pub_response(pubrel_codes()).prop_map(Packet::PubRel),
        pub_response(pubrel_codes()).prop_map(Packet::PubComp),
        (
            packet_id(),
            of(1..=VARINT_MAX),
            users(),
            vec((topic_filter(), subscription_options()), 1..4)
        )
            .prop_map(
                |(packet_id, sid, users, filters)| Packet::Subscribe(Subscribe {
                    packet_id,
                    properties: SubscribeProperties {
                        subscription_identifier: sid,
                        user_properties: users,
                    },
                    filters,
                })
            ),
        (packet_id(), ack_props(), vec(select(suback_codes()), 1..4)).prop_map(
            |(packet_id, properties, reasons)| Packet::SubAck(SubAck {
                packet_id,
                properties,
                reasons
            })
        ),
        (packet_id(), users(), vec(topic_filter(), 1..4)).prop_map(
            |(packet_id, user_properties, filters)| Packet::Unsubscribe(Unsubscribe {
                packet_id,
                user_properties,
                filters
            })
        ),
        (
            packet_id(),
            ack_props(),
            vec(select(unsuback_codes()), 1..4)
        )
            .prop_map(
                |(packet_id, properties, reasons)| Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties,
                    reasons
                })
            ),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        (
            select(disconnect_codes()),
            of(any::<u32>()),
            of(string()),
            users(),
            of(string())
        )
            .prop_map(
                |(reason, se, rs, users, sr)| Packet::Disconnect(Disconnect {
                    reason,
                    properties: DisconnectProperties {
                        session_expiry_interval: se,
                        reason_string: rs,
                        user_properties: users,
                        server_reference: sr,
                    },
                })
            ),
        (
            select(codes(&[0x00, 0x18, 0x19])),
            auth_pair(),
            of(string()),
            users()
        )
            .prop_map(|(reason, (am, ad), rs, users)| Packet::Auth(Auth {
                reason,
                properties: AuthProperties {
                    authentication_method: am,
                    authentication_data: ad,
                    reason_string: rs,
                    user_properties: users,
                },
            })),
    ]
}

/// What a packet generated for MQTT 5 becomes after a trip through 3.1.1: the MQTT-5-only
/// fields dropped. `None` when it cannot be written in 3.1.1 at all.
pub fn to_v311(p: &Packet) -> Option<Packet> {
    let ack = |r: &PubResponse| PubResponse::success(r.packet_id);
    Some(match p {
        Packet::Connect(c) => {
            if c.password.is_some() && c.username.is_none() {
                return None;
            }
            let mut c = (**c).clone();
            c.protocol = ProtocolVersion::V311;
            c.properties = ConnectProperties::default();
            if let Some(w) = &mut c.will {
                w.delay_interval = None;
                w.properties = PublishProperties::default();
            }
            Packet::Connect(Box::new(c))
        }
        Packet::ConnAck(c) => Packet::ConnAck(ConnAck {
            session_present: c.session_present,
            code: ReasonCode::from_v311_connack(c.code.to_v311_connack())?,
            properties: ConnAckProperties::default(),
        }),
        Packet::Publish(p) => {
            if p.topic.is_empty() {
                return None;
            }
            let mut p = p.clone();
            p.properties = PublishProperties::default();
            Packet::Publish(p)
        }
        Packet::PubAck(r) => Packet::PubAck(ack(r)),
        Packet::PubRec(r) => Packet::PubRec(ack(r)),
        Packet::PubRel(r) => Packet::PubRel(ack(r)),
        Packet::PubComp(r) => Packet::PubComp(ack(r)),
        Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            packet_id: s.packet_id,
            properties: SubscribeProperties::default(),
            filters: s
                .filters
                .iter()
                .map(|(f, o)| (f.clone(), SubscriptionOptions::with_qos(o.qos)))
                .collect(),
        }),
        Packet::SubAck(s) => Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: AckProperties::default(),
            reasons: s
                .reasons
                .iter()
                .map(|&r| {
                    if r.is_error() {
                        ReasonCode::UnspecifiedError
                    } else {
                        r
                    }
                })
                .collect(),
        }),
        Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            packet_id: u.packet_id,
            user_properties: Vec::new(),
            filters: u.filters.clone(),
        }),
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: AckProperties::default(),
            reasons: Vec::new(),
        }),
        Packet::PingReq => Packet::PingReq,
        Packet::PingResp => Packet::PingResp,
        Packet::Disconnect(_) => Packet::Disconnect(Disconnect::with_reason(ReasonCode::Success)),
        Packet::Auth(_) => return None,
    })
}
