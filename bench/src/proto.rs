//! The MQTT 3.1.1 client side of the load generator.
//!
//! Handshakes (CONNECT/CONNACK, SUBSCRIBE/SUBACK) and every packet the generator sends are
//! built with the project codec (`iotcore_core::mqtt::encode`) and answers are read with
//! `Decoder::with_version`. On the hot path the generator does not decode whole packets:
//! a PUBLISH is encoded once into a [`Template`] whose packet id and timestamp are patched
//! in place, and received bytes are walked frame by frame with [`scan`] (fixed header, topic
//! length, packet id, first payload bytes), so that counting a delivery costs a few
//! nanoseconds and the generator stays far from being the bottleneck. A test checks
//! [`scan`] against the codec's decoder.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use iotcore_core::mqtt::{
    encode, Connect, ConnectProperties, Decoder, Packet, PacketId, ProtocolVersion, PubResponse,
    Publish, PublishProperties, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every client of the generator speaks MQTT 3.1.1, which every peer supports.
pub const VERSION: ProtocolVersion = ProtocolVersion::V311;
/// Largest packet the generator accepts from a broker.
pub const MAX_PACKET: u32 = 16 << 20;
/// Time allowed for CONNECT..CONNACK and SUBSCRIBE..SUBACK.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes asked of the kernel per read.
pub const READ_CHUNK: usize = 64 * 1024;

/// Packet type nibbles.
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;

pub fn packet_id(v: u16) -> PacketId {
    PacketId::new(v.max(1)).expect("non-zero by construction")
}

pub fn qos_from(level: u8) -> Result<QoS> {
    match level {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => bail!("--qos must be 0 or 1"),
    }
}

pub fn connect_bytes(client_id: &str, keep_alive: u16) -> Result<BytesMut> {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: VERSION,
        clean_start: true,
        keep_alive,
        properties: ConnectProperties::default(),
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
    }));
    let mut out = BytesMut::new();
    encode(&packet, VERSION, &mut out)?;
    Ok(out)
}

pub fn subscribe_bytes(filter: &str, qos: QoS) -> Result<BytesMut> {
    let packet = Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: SubscribeProperties::default(),
        filters: vec![(ByteString::from(filter), SubscriptionOptions::with_qos(qos))],
    });
    let mut out = BytesMut::new();
    encode(&packet, VERSION, &mut out)?;
    Ok(out)
}

/// PUBACK for `id`, through the codec (4 bytes in 3.1.1): the template [`push_puback`] patches.
pub fn puback_bytes(id: u16) -> Result<[u8; 4]> {
    let mut out = BytesMut::new();
    encode(
        &Packet::PubAck(PubResponse::success(packet_id(id))),
        VERSION,
        &mut out,
    )?;
    let arr: [u8; 4] = out[..].try_into().context("a 3.1.1 PUBACK is 4 bytes")?;
    Ok(arr)
}

/// Appends `template` (from [`puback_bytes`]) with its packet id replaced by `id`.
#[inline]
pub fn push_puback(out: &mut Vec<u8>, template: &[u8; 4], id: [u8; 2]) {
    out.extend_from_slice(&[template[0], template[1], id[0], id[1]]);
}

/// Where the packet id (QoS 1/2) and the payload start in `packet`, which must be exactly
/// one encoded PUBLISH: what a pre-encoded template patches per send.
pub fn publish_offsets(packet: &[u8], qos: QoS) -> Result<(Option<usize>, usize)> {
    let (_, header_len, total) = frame(packet)?.context("template is one whole packet")?;
    if total != packet.len() {
        bail!("template is not one packet");
    }
    let topic_len = usize::from(u16::from_be_bytes([
        packet[header_len],
        packet[header_len + 1],
    ]));
    let after_topic = header_len + 2 + topic_len;
    Ok(if qos == QoS::AtMostOnce {
        (None, after_topic)
    } else {
        (Some(after_topic), after_topic + 2)
    })
}

/// One PUBLISH encoded by the codec, ready to be copied out with a new packet id and
/// timestamp.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    pid_offset: Option<usize>,
    payload_offset: usize,
}

impl Template {
    /// `payload_len` is at least 8 so the payload can carry a timestamp.
    pub fn new(topic: &str, qos: QoS, payload_len: usize) -> Result<Template> {
        let payload_len = payload_len.max(8);
        let publish = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: ByteString::from(topic),
            packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(1)),
            properties: PublishProperties::default(),
            payload: Bytes::from(vec![b'x'; payload_len]),
        });
        let mut out = BytesMut::new();
        encode(&publish, VERSION, &mut out)?;
        let (pid_offset, payload_offset) = publish_offsets(&out, qos)?;
        Ok(Template {
            bytes: out.to_vec(),
            pid_offset,
            payload_offset,
        })
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends the packet with packet id `pid` (ignored at QoS 0) and, if given, a timestamp
    /// in the first 8 payload bytes (little endian).
    #[inline]
    pub fn append(&self, out: &mut Vec<u8>, pid: u16, stamp: Option<u64>) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(off) = self.pid_offset {
            out[start + off..start + off + 2].copy_from_slice(&pid.max(1).to_be_bytes());
        }
        if let Some(ns) = stamp {
            let p = start + self.payload_offset;
            out[p..p + 8].copy_from_slice(&ns.to_le_bytes());
        }
    }
}

/// The fixed header at the front of `buf`: `(first byte, header length, whole packet length)`,
/// or `None` while the header or the packet is incomplete.
#[inline]
pub fn frame(buf: &[u8]) -> Result<Option<(u8, usize, usize)>> {
    let Some(&b1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut shift = 0;
    for i in 1..5 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let total = i + 1 + remaining;
            return Ok((buf.len() >= total).then_some((b1, i + 1, total)));
        }
        shift += 7;
    }
    bail!("malformed remaining length from the broker")
}

/// What [`scan`] saw of one packet.
pub struct Seen<'a> {
    pub kind: u8,
    /// Packet id bytes of a PUBLISH at QoS > 0, or of a PUBACK.
    pub id: Option<[u8; 2]>,
    /// Payload of a PUBLISH.
    pub payload: &'a [u8],
}

/// Walks the whole packets at the front of `buf`, calling `f` for each; returns the bytes
/// consumed (the caller keeps the incomplete rest).
#[inline]
pub fn scan(buf: &[u8], mut f: impl FnMut(Seen<'_>)) -> Result<usize> {
    let mut pos = 0;
    while let Some((b1, header_len, total)) = frame(&buf[pos..])? {
        let body = &buf[pos + header_len..pos + total];
        let kind = b1 >> 4;
        match kind {
            PUBLISH => {
                let qos = (b1 >> 1) & 3;
                if body.len() < 2 {
                    bail!("PUBLISH too short");
                }
                let tl = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let mut p = 2 + tl;
                let id = if qos > 0 {
                    let id = body.get(p..p + 2).context("PUBLISH without packet id")?;
                    p += 2;
                    Some([id[0], id[1]])
                } else {
                    None
                };
                let payload = body.get(p..).context("PUBLISH shorter than its topic")?;
                f(Seen { kind, id, payload });
            }
            PUBACK => {
                let id = body.get(0..2).context("PUBACK too short")?;
                f(Seen {
                    kind,
                    id: Some([id[0], id[1]]),
                    payload: &[],
                });
            }
            _ => f(Seen {
                kind,
                id: None,
                payload: &[],
            }),
        }
        pos += total;
    }
    Ok(pos)
}

/// The 8-byte timestamp at the front of a payload.
#[inline]
pub fn stamp_of(payload: &[u8]) -> Option<u64> {
    let b: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

fn check_connack(p: Packet) -> Result<()> {
    match p {
        Packet::ConnAck(c) if c.code == ReasonCode::Success => Ok(()),
        Packet::ConnAck(c) => bail!("CONNACK refused: {:?}", c.code),
        other => bail!("expected CONNACK, got {}", other.name()),
    }
}

fn check_suback(p: Packet) -> Result<bool> {
    match p {
        Packet::SubAck(s) => match s.reasons.first() {
            Some(ReasonCode::Success | ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2) => {
                Ok(true)
            }
            r => bail!("SUBSCRIBE refused: {r:?}"),
        },
        // Anything else before the SUBACK (a PUBLISH of a retained message) is skipped.
        _ => Ok(false),
    }
}

/// A connected (and optionally subscribed) client over tokio; `buf` holds whatever followed
/// the last handshake packet.
pub struct Client {
    pub stream: tokio::net::TcpStream,
    pub buf: BytesMut,
}

async fn read_packet(
    stream: &mut tokio::net::TcpStream,
    dec: &mut Decoder,
    buf: &mut BytesMut,
) -> Result<Packet> {
    loop {
        if let Some(p) = dec.decode(buf)? {
            return Ok(p);
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            bail!("broker closed the connection during the handshake");
        }
    }
}

/// Connects, sends CONNECT and waits for CONNACK, then subscribes to `sub` if given.
pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    keep_alive: u16,
    sub: Option<(&str, QoS)>,
) -> Result<Client> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut dec = Decoder::with_version(VERSION, MAX_PACKET);
        let mut buf = BytesMut::with_capacity(4096);
        stream
            .write_all(&connect_bytes(client_id, keep_alive)?)
            .await?;
        check_connack(read_packet(&mut stream, &mut dec, &mut buf).await?)?;
        if let Some((filter, qos)) = sub {
            stream.write_all(&subscribe_bytes(filter, qos)?).await?;
            while !check_suback(read_packet(&mut stream, &mut dec, &mut buf).await?)? {}
        }
        Ok::<_, anyhow::Error>(Client { stream, buf })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .with_context(|| format!("handshake of {client_id} timed out"))?
}

/// The same handshake over a blocking socket (the latency scenario's threads).
pub fn connect_blocking(
    addr: SocketAddr,
    client_id: &str,
    keep_alive: u16,
    sub: Option<(&str, QoS)>,
) -> Result<(std::net::TcpStream, BytesMut)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut dec = Decoder::with_version(VERSION, MAX_PACKET);
    let mut buf = BytesMut::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let mut next = |stream: &mut std::net::TcpStream, buf: &mut BytesMut| -> Result<Packet> {
        loop {
            if let Some(p) = dec.decode(buf)? {
                return Ok(p);
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                bail!("broker closed the connection during the handshake");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    stream.write_all(&connect_bytes(client_id, keep_alive)?)?;
    check_connack(next(&mut stream, &mut buf)?)?;
    if let Some((filter, qos)) = sub {
        stream.write_all(&subscribe_bytes(filter, qos)?)?;
        while !check_suback(next(&mut stream, &mut buf)?)? {}
    }
    Ok((stream, buf))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use iotcore_core::mqtt::decode;

    #[test]
    fn template_and_scan_agree_with_the_codec() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for len in [8, 64, 1024, 200_000] {
                let t = Template::new("bench/pairs/7", qos, len).unwrap();
                let mut out = Vec::new();
                t.append(&mut out, 513, Some(0x0102_0304_0506_0708));
                t.append(&mut out, 65535, None);
                // Every packet decodes with the project codec...
                let mut buf = BytesMut::from(&out[..]);
                let mut dec = Decoder::with_version(VERSION, MAX_PACKET);
                let Some(Packet::Publish(p)) = dec.decode(&mut buf).unwrap() else {
                    panic!("not a publish");
                };
                assert_eq!(p.topic, "bench/pairs/7");
                assert_eq!(p.payload.len(), len);
                assert_eq!(stamp_of(&p.payload), Some(0x0102_0304_0506_0708));
                if qos == QoS::AtLeastOnce {
                    assert_eq!(p.packet_id.map(PacketId::get), Some(513));
                }
                // ...and the scanner sees the same, in pieces too.
                let mut seen = Vec::new();
                let used = scan(&out, |s| {
                    seen.push((s.kind, s.id, s.payload.len(), stamp_of(s.payload)))
                })
                .unwrap();
                assert_eq!(used, out.len());
                assert_eq!(seen.len(), 2);
                assert_eq!(seen[0].0, PUBLISH);
                assert_eq!(seen[0].2, len);
                assert_eq!(seen[0].3, Some(0x0102_0304_0506_0708));
                if qos == QoS::AtLeastOnce {
                    assert_eq!(seen[0].1, Some([2, 1]));
                    assert_eq!(seen[1].1, Some([255, 255]));
                }
                assert_eq!(scan(&out[..out.len() - 1], |_| {}).unwrap(), t.len());
            }
        }
    }

    #[test]
    fn puback_matches_codec() {
        let b = puback_bytes(0x0203).unwrap();
        let mut v = Vec::new();
        push_puback(&mut v, &puback_bytes(1).unwrap(), [2, 3]);
        assert_eq!(&v[..], &b[..]);
        assert!(matches!(
            decode(Bytes::copy_from_slice(&b), Some(VERSION)).unwrap(),
            Packet::PubAck(_)
        ));
    }
}
