//! MQTT 5 byte fixtures, one or more per packet type, including properties and short forms.

use bytes::Bytes;

use super::{fixture, pid, s, user};
use crate::mqtt::packet::*;
use crate::mqtt::properties::*;
use crate::mqtt::reason::ReasonCode;

const V: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn connect_minimal() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x11,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        0x02, 0x00, 0x3C,
        0x00, // no properties
        0x00, 0x04, b't', b'e', b's', b't',
    ];
    let expected = Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 60,
        properties: Default::default(),
        client_id: s("test"),
        will: None,
        username: None,
        password: None,
    };
    fixture(&bytes, V, Packet::Connect(Box::new(expected)));
}

#[test]
fn connect_full() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x3C,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        0xCE, // user name, password, will QoS 1, will, clean start
        0x00, 0x1E,
        0x15, // properties: 21 bytes
        0x11, 0x00, 0x00, 0x00, 0x3C, // session expiry 60
        0x21, 0x00, 0x14, // receive maximum 20
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        0x15, 0x00, 0x03, b'S', b'C', b'R', // authentication method
        0x00, 0x03, b'c', b'i', b'd',
        0x07, // will properties: 7 bytes
        0x18, 0x00, 0x00, 0x00, 0x05, // will delay 5
        0x01, 0x01, // payload format: UTF-8
        0x00, 0x03, b'a', b'/', b'b',
        0x00, 0x02, b'h', b'i',
        0x00, 0x01, b'u',
        0x00, 0x01, b'p',
    ];
    let expected = Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 30,
        properties: ConnectProperties {
            session_expiry_interval: Some(60),
            receive_maximum: Some(20),
            user_properties: vec![user("k", "v")],
            authentication_method: Some(s("SCR")),
            ..Default::default()
        },
        client_id: s("cid"),
        will: Some(Will {
            topic: s("a/b"),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtLeastOnce,
            retain: false,
            delay_interval: Some(5),
            properties: PublishProperties {
                payload_format_indicator: Some(1),
                ..Default::default()
            },
        }),
        username: Some(s("u")),
        password: Some(Bytes::from_static(b"p")),
    };
    fixture(&bytes, V, Packet::Connect(Box::new(expected)));
}

#[test]
fn connect_password_without_username_is_fine_in_v5() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x10,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        0x40, 0x00, 0x00, 0x00,
        0x00, 0x00, // empty client id
        0x00, 0x01, b'p',
    ];
    let expected = Connect {
        protocol: V,
        clean_start: false,
        keep_alive: 0,
        properties: Default::default(),
        client_id: s(""),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"p")),
    };
    fixture(&bytes, V, Packet::Connect(Box::new(expected)));
}

#[test]
fn connack_with_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x20, 0x13,
        0x01, 0x00, // session present, success
        0x10,
        0x21, 0x00, 0x0A, // receive maximum 10
        0x24, 0x01, // maximum QoS 1
        0x25, 0x00, // retain not available
        0x12, 0x00, 0x03, b'a', b'b', b'c', // assigned client id
        0x13, 0x00, 0x1E, // server keep alive 30
    ];
    let expected = ConnAck {
        session_present: true,
        code: ReasonCode::Success,
        properties: ConnAckProperties {
            receive_maximum: Some(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            assigned_client_identifier: Some(s("abc")),
            server_keep_alive: Some(30),
            ..Default::default()
        },
    };
    fixture(&bytes, V, Packet::ConnAck(expected));
}

#[test]
fn connack_refused() {
    let expected = ConnAck {
        session_present: false,
        code: ReasonCode::NotAuthorized,
        properties: Default::default(),
    };
    fixture(
        &[0x20, 0x03, 0x00, 0x87, 0x00],
        V,
        Packet::ConnAck(expected),
    );
}

#[test]
fn publish_qos0() {
    let bytes = [0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i'];
    let expected = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: s("a/b"),
        packet_id: None,
        properties: Default::default(),
        payload: Bytes::from_static(b"hi"),
    };
    fixture(&bytes, V, Packet::Publish(expected));
}

#[test]
fn publish_with_every_property() {
    #[rustfmt::skip]
    let bytes = [
        0x32, 0x32,
        0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A,
        0x28, // properties: 40 bytes
        0x01, 0x01, // payload format indicator
        0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry 60
        0x03, 0x00, 0x04, b'j', b's', b'o', b'n', // content type
        0x08, 0x00, 0x03, b'r', b'/', b't', // response topic
        0x09, 0x00, 0x02, 0x01, 0x02, // correlation data
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        0x23, 0x00, 0x05, // topic alias 5
        0x0B, 0x07, // subscription identifier 7
        0x0B, 0x80, 0x01, // subscription identifier 128 (two-byte varint)
        b'h', b'i',
    ];
    let expected = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: s("a/b"),
        packet_id: Some(pid(10)),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(5),
            response_topic: Some(s("r/t")),
            correlation_data: Some(Bytes::from_static(&[1, 2])),
            user_properties: vec![user("k", "v")],
            subscription_identifiers: vec![7, 128],
            content_type: Some(s("json")),
        },
        payload: Bytes::from_static(b"hi"),
    };
    fixture(&bytes, V, Packet::Publish(expected));
}

#[test]
fn publish_empty_topic_with_alias() {
    let bytes = [0x30, 0x08, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'h', b'i'];
    let expected = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: s(""),
        packet_id: None,
        properties: PublishProperties {
            topic_alias: Some(5),
            ..Default::default()
        },
        payload: Bytes::from_static(b"hi"),
    };
    fixture(&bytes, V, Packet::Publish(expected));
}

#[test]
fn pub_responses_short_and_long_forms() {
    let ok = PubResponse::success(pid(10));
    fixture(&[0x40, 0x02, 0x00, 0x0A], V, Packet::PubAck(ok.clone()));
    fixture(&[0x50, 0x02, 0x00, 0x0A], V, Packet::PubRec(ok.clone()));
    fixture(&[0x62, 0x02, 0x00, 0x0A], V, Packet::PubRel(ok.clone()));
    fixture(&[0x70, 0x02, 0x00, 0x0A], V, Packet::PubComp(ok));

    let mut no_subs = PubResponse::success(pid(10));
    no_subs.reason = ReasonCode::NoMatchingSubscribers;
    fixture(&[0x40, 0x03, 0x00, 0x0A, 0x10], V, Packet::PubAck(no_subs));

    let mut not_found = PubResponse::success(pid(10));
    not_found.reason = ReasonCode::PacketIdentifierNotFound;
    fixture(
        &[0x62, 0x03, 0x00, 0x0A, 0x92],
        V,
        Packet::PubRel(not_found),
    );

    let mut refused = PubResponse::success(pid(10));
    refused.reason = ReasonCode::UnspecifiedError;
    fixture(&[0x50, 0x03, 0x00, 0x0A, 0x80], V, Packet::PubRec(refused));

    let mut denied = PubResponse::success(pid(10));
    denied.reason = ReasonCode::NotAuthorized;
    denied.properties.reason_string = Some(s("nope"));
    #[rustfmt::skip]
    let bytes = [
        0x40, 0x0B, 0x00, 0x0A, 0x87,
        0x07, 0x1F, 0x00, 0x04, b'n', b'o', b'p', b'e',
    ];
    fixture(&bytes, V, Packet::PubAck(denied));
}

#[test]
fn pub_response_long_forms_of_success_decode() {
    // A peer may write Success and an empty property list explicitly.
    let ok = Packet::PubAck(PubResponse::success(pid(10)));
    for bytes in [
        &[0x40, 0x03, 0x00, 0x0A, 0x00][..],
        &[0x40, 0x04, 0x00, 0x0A, 0x00, 0x00][..],
    ] {
        let got = super::decode(Bytes::copy_from_slice(bytes), Some(V)).unwrap();
        assert_eq!(got, ok);
    }
}

#[test]
fn subscribe_with_options_and_identifier() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 0x0F, 0x00, 0x0A,
        0x02, 0x0B, 0x05, // subscription identifier 5
        0x00, 0x03, b'a', b'/', b'+', 0x2D, // QoS 1, no local, retain as published, RH 2
        0x00, 0x01, b'#', 0x12, // QoS 2, RH 1
    ];
    let expected = Subscribe {
        packet_id: pid(10),
        properties: SubscribeProperties {
            subscription_identifier: Some(5),
            user_properties: vec![],
        },
        filters: vec![
            (
                s("a/+"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::Never,
                },
            ),
            (
                s("#"),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::OnNewSubscribe,
                },
            ),
        ],
    };
    fixture(&bytes, V, Packet::Subscribe(expected));
}

#[test]
fn suback() {
    let bytes = [0x90, 0x07, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80, 0xA2];
    let expected = SubAck {
        packet_id: pid(10),
        properties: Default::default(),
        reasons: vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
            ReasonCode::WildcardSubscriptionsNotSupported,
        ],
    };
    fixture(&bytes, V, Packet::SubAck(expected));
}

#[test]
fn unsubscribe_with_user_property() {
    #[rustfmt::skip]
    let bytes = [
        0xA2, 0x0F, 0x00, 0x0B,
        0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
        0x00, 0x03, b'a', b'/', b'b',
    ];
    let expected = Unsubscribe {
        packet_id: pid(11),
        user_properties: vec![user("k", "v")],
        filters: vec![s("a/b")],
    };
    fixture(&bytes, V, Packet::Unsubscribe(expected));
}

#[test]
fn unsuback() {
    let bytes = [0xB0, 0x05, 0x00, 0x0B, 0x00, 0x00, 0x11];
    let expected = UnsubAck {
        packet_id: pid(11),
        properties: Default::default(),
        reasons: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
    };
    fixture(&bytes, V, Packet::UnsubAck(expected));
}

#[test]
fn ping() {
    fixture(&[0xC0, 0x00], V, Packet::PingReq);
    fixture(&[0xD0, 0x00], V, Packet::PingResp);
}

#[test]
fn disconnect_forms() {
    fixture(
        &[0xE0, 0x00],
        V,
        Packet::Disconnect(Disconnect::with_reason(ReasonCode::NORMAL_DISCONNECTION)),
    );
    let taken_over = Packet::Disconnect(Disconnect::with_reason(ReasonCode::SessionTakenOver));
    fixture(&[0xE0, 0x02, 0x8E, 0x00], V, taken_over.clone());
    // The shortest form, a reason code alone, decodes too.
    let got = super::decode(Bytes::from_static(&[0xE0, 0x01, 0x8E]), Some(V)).unwrap();
    assert_eq!(got, taken_over);
    let with_props = Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    };
    fixture(
        &[0xE0, 0x07, 0x04, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
        V,
        Packet::Disconnect(with_props),
    );
}

#[test]
fn auth_forms() {
    let ok = Auth {
        reason: ReasonCode::Success,
        properties: Default::default(),
    };
    fixture(&[0xF0, 0x00], V, Packet::Auth(ok));
    #[rustfmt::skip]
    let bytes = [
        0xF0, 0x0D, 0x18,
        0x0B,
        0x15, 0x00, 0x03, b'S', b'C', b'R',
        0x16, 0x00, 0x02, 0x01, 0x02,
    ];
    let cont = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCR")),
            authentication_data: Some(Bytes::from_static(&[1, 2])),
            ..Default::default()
        },
    };
    fixture(&bytes, V, Packet::Auth(cont));
}
