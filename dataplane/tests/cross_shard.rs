//! End-to-end, from Rust: starts the real `iotcore` binary with two shards and proves that a
//! subscriber on one shard receives what a publisher on the other sends, using the project's
//! own codec as the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iotcore_core::mqtt::{
    encode, Connect, ConnectProperties, Decoder, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, Subscribe, SubscribeProperties, SubscriptionOptions,
};

struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("iotcore-xshard-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("iotcore.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nshards = 2\n[mqtt]\nbind = \"127.0.0.1:{port}\"\n\
                 [admin]\nenabled = false\n[http]\nenabled = false\n\
                 [storage]\ndata_dir = \"{}\"\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_iotcore"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            port,
            _dir: TempDir(dir),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Client {
    fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, ProtocolVersion::V5, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).unwrap() {
                return p;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read timed out");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Connects and returns the client with the shard the server put it on.
    fn connect(port: u16, id: &str) -> (Client, String) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::with_version(ProtocolVersion::V5, 1 << 20),
        };
        c.send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties::default(),
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
        })));
        let Packet::ConnAck(ack) = c.recv() else {
            panic!("expected CONNACK")
        };
        let shard = ack
            .properties
            .user_properties
            .iter()
            .find(|p| &*p.name == "shard")
            .map(|p| p.value.to_string())
            .expect("CONNACK names the shard");
        (c, shard)
    }
}

#[test]
fn a_subscriber_on_one_shard_receives_from_a_publisher_on_the_other() {
    let server = Server::start();
    // The kernel spreads connections over the shards by hashing the source port: connect
    // until both shards are represented.
    let mut by_shard: std::collections::HashMap<String, Client> = Default::default();
    for i in 0..64 {
        let (c, shard) = Client::connect(server.port, &format!("c{i}"));
        by_shard.entry(shard).or_insert(c);
        if by_shard.len() == 2 {
            break;
        }
    }
    assert_eq!(by_shard.len(), 2, "never got a connection on each shard");
    let mut sub = by_shard.remove("0").unwrap();
    let mut publ = by_shard.remove("1").unwrap();

    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: SubscribeProperties::default(),
        filters: vec![(
            "x/+".into(),
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        )],
    }));
    assert!(matches!(sub.recv(), Packet::SubAck(_)));

    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce].into_iter().enumerate() {
        publ.send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: "x/y".into(),
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(7).unwrap()),
            properties: PublishProperties::default(),
            payload: Bytes::from(format!("hello {i}")),
        }));
        let got = loop {
            match sub.recv() {
                Packet::Publish(p) => break p,
                _ => continue,
            }
        };
        assert_eq!(&*got.topic, "x/y");
        assert_eq!(got.payload, Bytes::from(format!("hello {i}")));
        assert_eq!(got.qos, qos);
        if let Some(id) = got.packet_id {
            sub.send(&Packet::PubAck(iotcore_core::mqtt::PubResponse::success(
                id,
            )));
        }
    }
}
