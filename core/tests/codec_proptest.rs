//! Property tests of the codec: round trips in both versions, byte-at-a-time streaming, and
//! arbitrary or corrupted input never panicking the decoder.
#![allow(clippy::unwrap_used)]

#[path = "codec_common/mod.rs"]
#[allow(dead_code)]
mod strategies;

use bytes::{Bytes, BytesMut};
use iotcore_core::mqtt::*;
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::{packet, to_v311};

fn for_decode(p: &Packet, v: ProtocolVersion) -> Option<ProtocolVersion> {
    match p {
        Packet::Connect(_) => None,
        _ => Some(v),
    }
}

fn encode_vec(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode(p, v, &mut out).unwrap();
    assert_eq!(encoded_len(p, v).unwrap(), out.len());
    out
}

/// Feeds `bytes` one byte at a time; every call before the last must ask for more.
fn decode_bytewise(bytes: &[u8], dec: &mut Decoder) -> Packet {
    let mut buf = BytesMut::new();
    for (i, &b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        match dec.decode(&mut buf).unwrap() {
            Some(p) => {
                assert_eq!(i + 1, bytes.len(), "decoded before the last byte");
                assert!(buf.is_empty());
                return p;
            }
            None => assert_eq!(buf.len(), i + 1, "buffer touched while incomplete"),
        }
    }
    panic!("not decoded after all {} bytes", bytes.len());
}

fn decoder_for(p: &Packet, v: ProtocolVersion) -> Decoder {
    match p {
        Packet::Connect(_) => Decoder::new(u32::MAX),
        _ => Decoder::with_version(v, u32::MAX),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn v5_round_trip(p in packet()) {
        let v = ProtocolVersion::V5;
        let bytes = encode_vec(&p, v).freeze();
        let back = decode(bytes.clone(), for_decode(&p, v)).unwrap();
        prop_assert_eq!(&back, &p);
        let streamed = decode_bytewise(&bytes, &mut decoder_for(&p, v));
        prop_assert_eq!(&streamed, &p);
    }

    #[test]
    fn v311_round_trip(p in packet()) {
        let v = ProtocolVersion::V311;
        let p311 = match &p {
            Packet::Connect(c) => {
                let mut c = (**c).clone();
                c.protocol = v;
                Packet::Connect(Box::new(c))
            }
            other => other.clone(),
        };
        match to_v311(&p) {
            None => prop_assert!(encode(&p311, v, &mut BytesMut::new()).is_err()),
            Some(expected) => {
                let bytes = encode_vec(&p311, v).freeze();
                let back = decode(bytes.clone(), for_decode(&p, v)).unwrap();
                prop_assert_eq!(&back, &expected);
                // And the 3.1.1 form is a fixed point.
                prop_assert_eq!(&encode_vec(&expected, v).freeze(), &bytes);
                let streamed = decode_bytewise(&bytes, &mut decoder_for(&p, v));
                prop_assert_eq!(&streamed, &expected);
            }
        }
    }

    /// A stream of packets cut into arbitrary chunks decodes to the same packets.
    #[test]
    fn chunked_stream(ps in vec(packet(), 1..6), cuts in vec(any::<prop::sample::Index>(), 0..8)) {
        let v = ProtocolVersion::V5;
        let ps: Vec<Packet> = ps.into_iter().filter(|p| !matches!(p, Packet::Connect(_))).collect();
        let mut all = BytesMut::new();
        for p in &ps {
            encode(p, v, &mut all).unwrap();
        }
        let all = all.freeze();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(all.len() + 1)).collect();
        cuts.push(all.len());
        cuts.sort_unstable();
        let mut dec = Decoder::with_version(v, u32::MAX);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut start = 0;
        for end in cuts {
            buf.extend_from_slice(&all[start..end]);
            start = end;
            while let Some(p) = dec.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        prop_assert_eq!(got, ps);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        for version in [None, Some(ProtocolVersion::V311), Some(ProtocolVersion::V5)] {
            let _ = decode(Bytes::from(bytes.clone()), version);
            let mut dec = match version {
                None => Decoder::new(1024),
                Some(v) => Decoder::with_version(v, 1024),
            };
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }

    /// Valid packets with bytes overwritten, or truncated, or extended: errors, never panics,
    /// and whatever decodes re-encodes.
    #[test]
    fn corrupted_packets_never_panic(
        p in packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let v = ProtocolVersion::V5;
        let mut bytes = encode_vec(&p, v).to_vec();
        for (i, b) in &edits {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        for candidate in [&bytes[..], &bytes[..cut.index(bytes.len() + 1)]] {
            for version in [None, Some(v), Some(ProtocolVersion::V311)] {
                if let Ok(q) = decode(Bytes::copy_from_slice(candidate), version) {
                    let ver = match &q {
                        Packet::Connect(c) => c.protocol,
                        _ => version.unwrap_or(v),
                    };
                    prop_assert!(encode(&q, ver, &mut BytesMut::new()).is_ok());
                }
            }
        }
    }
}
