//! Codec micro-benchmarks: decode and encode of a 64 B and a 1 KiB PUBLISH, a CONNECT and a
//! SUBSCRIBE, in MQTT 3.1.1 and 5.0. `cargo bench -p iotcore-bench --bench codec`.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use iotcore_core::mqtt::{
    encode, Connect, ConnectProperties, Decoder, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, Subscribe, SubscribeProperties, SubscriptionOptions, UserProperty,
};

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

fn publish(len: usize, v: ProtocolVersion) -> Packet {
    let mut properties = PublishProperties::default();
    if v == ProtocolVersion::V5 {
        // A typical MQTT 5 publish: a content type and one user property.
        properties.content_type = Some(ByteString::from_static("application/json"));
        properties.user_properties.push(UserProperty {
            name: ByteString::from_static("trace"),
            value: ByteString::from_static("abc123"),
        });
    }
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteString::from_static("devices/thing-0042/telemetry/temperature"),
        packet_id: Some(pid(42)),
        properties,
        payload: Bytes::from(vec![b'x'; len]),
    })
}

fn connect(v: ProtocolVersion) -> Packet {
    let mut properties = ConnectProperties::default();
    if v == ProtocolVersion::V5 {
        properties.session_expiry_interval = Some(3600);
        properties.receive_maximum = Some(100);
        properties.topic_alias_maximum = Some(8);
    }
    Packet::Connect(Box::new(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        properties,
        client_id: ByteString::from_static("thing-0042"),
        will: None,
        username: Some(ByteString::from_static("device")),
        password: Some(Bytes::from_static(b"secret-token")),
    }))
}

fn subscribe() -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(7),
        properties: SubscribeProperties::default(),
        filters: vec![
            (
                ByteString::from_static("devices/+/telemetry/#"),
                SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            ),
            (
                ByteString::from_static("$aws/things/thing-0042/shadow/update/accepted"),
                SubscriptionOptions::with_qos(QoS::AtMostOnce),
            ),
        ],
    })
}

fn bench(c: &mut Criterion) {
    for (vname, v) in [("v311", ProtocolVersion::V311), ("v5", ProtocolVersion::V5)] {
        let cases = [
            ("publish_64B", publish(64, v)),
            ("publish_1KiB", publish(1024, v)),
            ("connect", connect(v)),
            ("subscribe", subscribe()),
        ];
        let mut g = c.benchmark_group(format!("codec/{vname}"));
        for (name, packet) in &cases {
            let mut wire = BytesMut::new();
            encode(packet, v, &mut wire).expect("encodes");
            let wire = wire.freeze();
            g.throughput(Throughput::Bytes(wire.len() as u64));
            g.bench_function(format!("encode/{name}"), |b| {
                let mut out = BytesMut::with_capacity(4096);
                b.iter(|| {
                    out.clear();
                    encode(black_box(packet), v, &mut out).expect("encodes");
                    black_box(out.len())
                })
            });
            // The streaming decoder on a buffer holding exactly one packet, as the read loop
            // sees it (the copy into the buffer is part of each iteration, and small).
            let is_connect = matches!(packet, Packet::Connect(_));
            g.bench_function(format!("decode/{name}"), |b| {
                let mut buf = BytesMut::with_capacity(4096);
                b.iter(|| {
                    let mut dec = if is_connect {
                        Decoder::new(1 << 20)
                    } else {
                        Decoder::with_version(v, 1 << 20)
                    };
                    buf.extend_from_slice(&wire);
                    let p = dec.decode(&mut buf).expect("decodes").expect("whole");
                    black_box(p)
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
