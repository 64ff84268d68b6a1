//! MQTT 3.1.1 byte fixtures, one or more per packet type.

use bytes::Bytes;

use super::{fixture, pid, s};
use crate::mqtt::packet::*;
use crate::mqtt::reason::ReasonCode;

const V: ProtocolVersion = ProtocolVersion::V311;

#[test]
fn connect_minimal() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x10,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // protocol name, level 4
        0x02, // clean session
        0x00, 0x3C, // keep alive 60
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
fn connect_with_will_and_credentials() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x22,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
        0xEE, // user name, password, will retain, will QoS 1, will, clean session
        0x00, 0x0A,
        0x00, 0x03, b'c', b'i', b'd',
        0x00, 0x03, b'a', b'/', b'b', // will topic
        0x00, 0x02, b'h', b'i', // will payload
        0x00, 0x04, b'u', b's', b'e', b'r',
        0x00, 0x02, b'p', b'w',
    ];
    let expected = Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 10,
        properties: Default::default(),
        client_id: s("cid"),
        will: Some(Will {
            topic: s("a/b"),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtLeastOnce,
            retain: true,
            delay_interval: None,
            properties: Default::default(),
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"pw")),
    };
    fixture(&bytes, V, Packet::Connect(Box::new(expected)));
}

#[test]
fn connack() {
    let ok = ConnAck {
        session_present: true,
        code: ReasonCode::Success,
        properties: Default::default(),
    };
    fixture(&[0x20, 0x02, 0x01, 0x00], V, Packet::ConnAck(ok));
    for (byte, code) in [
        (1, ReasonCode::UnsupportedProtocolVersion),
        (2, ReasonCode::ClientIdentifierNotValid),
        (3, ReasonCode::ServerUnavailable),
        (4, ReasonCode::BadUserNameOrPassword),
        (5, ReasonCode::NotAuthorized),
    ] {
        let refused = ConnAck {
            session_present: false,
            code,
            properties: Default::default(),
        };
        fixture(&[0x20, 0x02, 0x00, byte], V, Packet::ConnAck(refused));
    }
}

#[test]
fn publish_qos0() {
    let bytes = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
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
fn publish_qos1_dup_retain() {
    let bytes = [
        0x3B, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
    ];
    let expected = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: s("a/b"),
        packet_id: Some(pid(10)),
        properties: Default::default(),
        payload: Bytes::from_static(b"hi"),
    };
    fixture(&bytes, V, Packet::Publish(expected));
}

#[test]
fn publish_qos2_empty_payload() {
    let bytes = [0x34, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0xFF, 0xFF];
    let expected = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: s("a/b"),
        packet_id: Some(pid(0xFFFF)),
        properties: Default::default(),
        payload: Bytes::new(),
    };
    fixture(&bytes, V, Packet::Publish(expected));
}

#[test]
fn pub_responses() {
    let r = PubResponse::success(pid(10));
    fixture(&[0x40, 0x02, 0x00, 0x0A], V, Packet::PubAck(r.clone()));
    fixture(&[0x50, 0x02, 0x00, 0x0A], V, Packet::PubRec(r.clone()));
    fixture(&[0x62, 0x02, 0x00, 0x0A], V, Packet::PubRel(r.clone()));
    fixture(&[0x70, 0x02, 0x00, 0x0A], V, Packet::PubComp(r));
}

#[test]
fn subscribe() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 0x0C, 0x00, 0x0A,
        0x00, 0x03, b'a', b'/', b'+', 0x01,
        0x00, 0x01, b'#', 0x02,
    ];
    let expected = Subscribe {
        packet_id: pid(10),
        properties: Default::default(),
        filters: vec![
            (s("a/+"), SubscriptionOptions::with_qos(QoS::AtLeastOnce)),
            (s("#"), SubscriptionOptions::with_qos(QoS::ExactlyOnce)),
        ],
    };
    fixture(&bytes, V, Packet::Subscribe(expected));
}

#[test]
fn suback() {
    let bytes = [0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80];
    let expected = SubAck {
        packet_id: pid(10),
        properties: Default::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS0,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ],
    };
    fixture(&bytes, V, Packet::SubAck(expected));
}

#[test]
fn suback_errors_collapse_to_0x80() {
    // 3.1.1 has a single failure code: any MQTT 5 error is written as 0x80 and reads back
    // as UnspecifiedError.
    let p = Packet::SubAck(SubAck {
        packet_id: pid(10),
        properties: Default::default(),
        reasons: vec![ReasonCode::NotAuthorized],
    });
    let mut out = bytes::BytesMut::new();
    super::encode(&p, V, &mut out).unwrap();
    assert_eq!(&out[..], &[0x90, 0x03, 0x00, 0x0A, 0x80]);
}

#[test]
fn unsubscribe() {
    #[rustfmt::skip]
    let bytes = [
        0xA2, 0x0A, 0x00, 0x0B,
        0x00, 0x03, b'a', b'/', b'b',
        0x00, 0x01, b'#',
    ];
    let expected = Unsubscribe {
        packet_id: pid(11),
        user_properties: vec![],
        filters: vec![s("a/b"), s("#")],
    };
    fixture(&bytes, V, Packet::Unsubscribe(expected));
}

#[test]
fn unsuback() {
    let expected = UnsubAck {
        packet_id: pid(11),
        properties: Default::default(),
        reasons: vec![],
    };
    fixture(&[0xB0, 0x02, 0x00, 0x0B], V, Packet::UnsubAck(expected));
}

#[test]
fn ping_and_disconnect() {
    fixture(&[0xC0, 0x00], V, Packet::PingReq);
    fixture(&[0xD0, 0x00], V, Packet::PingResp);
    fixture(
        &[0xE0, 0x00],
        V,
        Packet::Disconnect(Disconnect::with_reason(ReasonCode::Success)),
    );
}

#[test]
fn v5_only_fields_are_left_out() {
    // Reason codes and properties on acks vanish in 3.1.1 instead of failing the encode.
    let mut ack = PubResponse::success(pid(10));
    ack.reason = ReasonCode::NoMatchingSubscribers;
    ack.properties.reason_string = Some(s("x"));
    let mut out = bytes::BytesMut::new();
    super::encode(&Packet::PubAck(ack), V, &mut out).unwrap();
    assert_eq!(&out[..], &[0x40, 0x02, 0x00, 0x0A]);

    out.clear();
    let d = Disconnect::with_reason(ReasonCode::ServerShuttingDown);
    super::encode(&Packet::Disconnect(d), V, &mut out).unwrap();
    assert_eq!(&out[..], &[0xE0, 0x00]);

    let auth = Packet::Auth(Auth {
        reason: ReasonCode::Success,
        properties: Default::default(),
    });
    assert_eq!(
        super::encode(&auth, V, &mut out),
        Err(super::super::EncodeError::NotInV311 { what: "AUTH" })
    );
}
