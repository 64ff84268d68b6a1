//! The harness shared by `decode_stream` and `decode_client`.
//!
//! Input layout: byte 0 picks the maximum packet size (low 3 bits) and, for the client
//! target, the protocol version (bit 3); byte 1 picks how the rest is cut into chunks
//! (0: all at once, 1: byte by byte, n: pseudo-random chunks of 1..=n bytes); the rest is the
//! byte stream a peer sends.
//!
//! Checked for every input:
//! - nothing panics, whatever the bytes and however they are chunked;
//! - chunked decoding yields exactly the packets (and the final error, if any) that decoding
//!   the whole stream in one go yields;
//! - each packet equals the one-shot `decode` of its own frame;
//! - each packet re-encodes (`encode`, for the version it was decoded in), `encoded_len`
//!   agrees with what `encode` wrote, the encoding decodes back to an equal packet, and
//!   encoding that packet again gives the same bytes.

use bytes::{Bytes, BytesMut};
use iotcore_core::mqtt::{decode, encode, encoded_len, Decoder, Packet, ProtocolVersion};

/// Maximum packet sizes to try: degenerate ones (nothing fits), typical ones, no limit.
const MAX_SIZES: [u32; 8] = [0, 2, 5, 16, 128, 1024, 65_536, u32::MAX];

pub struct Input<'a> {
    pub max_packet_size: u32,
    /// Used by `decode_client` only.
    #[allow(dead_code)]
    pub version: ProtocolVersion,
    pub chunking: u8,
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&ctrl, rest) = data.split_first()?;
        let (&chunking, stream) = rest.split_first()?;
        Some(Input {
            max_packet_size: MAX_SIZES[usize::from(ctrl & 0b111)],
            version: if ctrl & 0b1000 == 0 {
                ProtocolVersion::V311
            } else {
                ProtocolVersion::V5
            },
            chunking,
            stream,
        })
    }
}

/// How a run of the decoder ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<Packet>,
    /// `Debug` of the error that ended the run; `None` if the bytes ran out first.
    error: Option<String>,
}

/// Chunk lengths from a small xorshift generator, so one input byte gives many shapes.
struct Chunks {
    max: u8,
    state: u32,
}

impl Chunks {
    fn next_len(&mut self, left: usize) -> usize {
        match self.max {
            0 => left,
            1 => 1,
            max => {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 17;
                self.state ^= self.state << 5;
                1 + (self.state % u32::from(max)) as usize
            }
        }
        .min(left)
    }
}

fn run(mut decoder: Decoder, stream: &[u8], chunking: u8) -> Outcome {
    let mut chunks = Chunks {
        max: chunking,
        state: 0x9E37_79B9 ^ u32::from(chunking),
    };
    let mut buf = BytesMut::new();
    let mut fed = 0;
    // Offset in `stream` of the first byte still in `buf`.
    let mut consumed = 0;
    let mut packets = Vec::new();
    while fed < stream.len() {
        let n = chunks.next_len(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            let version_before = decoder.version();
            let len_before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let frame_len = len_before - buf.len();
                    let frame = &stream[consumed..consumed + frame_len];
                    consumed += frame_len;
                    check_frame(&packet, frame, version_before);
                    let version = decoder
                        .version()
                        .expect("a decoded packet leaves the decoder with a version");
                    check_round_trip(&packet, version);
                    packets.push(packet);
                }
                Ok(None) => {
                    assert_eq!(
                        buf.len(),
                        len_before,
                        "Ok(None) must leave the buffer alone"
                    );
                    break;
                }
                Err(e) => {
                    return Outcome {
                        packets,
                        error: Some(format!("{e:?}")),
                    }
                }
            }
        }
    }
    Outcome {
        packets,
        error: None,
    }
}

/// The streaming decoder and the one-shot `decode` agree on a frame.
fn check_frame(packet: &Packet, frame: &[u8], version: Option<ProtocolVersion>) {
    match decode(Bytes::copy_from_slice(frame), version) {
        Ok(p) => assert_eq!(&p, packet, "one-shot decode of the frame differs"),
        Err(e) => panic!("the decoder accepted a frame decode() rejects: {e:?}\n{packet:?}"),
    }
}

fn check_round_trip(packet: &Packet, decoder_version: ProtocolVersion) {
    // A CONNECT is in its own version (a second CONNECT may name another one; the broker
    // rejects it, but the codec must still handle it).
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => decoder_version,
    };
    let mut out = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut out) {
        panic!("a decoded packet does not re-encode for {version:?}: {e:?}\n{packet:?}");
    }
    let len = encoded_len(packet, version).expect("encoded_len fails where encode succeeded");
    assert_eq!(len, out.len(), "encoded_len disagrees with encode");
    let bytes = out.freeze();
    let again = match decode(bytes.clone(), Some(version)) {
        Ok(p) => p,
        Err(e) => panic!("re-encoded packet does not decode: {e:?}\n{packet:?}\n{bytes:02x?}"),
    };
    assert_eq!(&again, packet, "round trip changed the packet");
    let mut out2 = BytesMut::new();
    encode(&again, version, &mut out2).expect("the round-tripped packet does not encode");
    assert_eq!(&out2[..], &bytes[..], "encoding is not stable");
}

/// Decodes `input.stream` chunked as the input says and in one go, checking everything.
pub fn fuzz(input: &Input<'_>, make_decoder: impl Fn() -> Decoder) {
    let chunked = run(make_decoder(), input.stream, input.chunking);
    if input.chunking != 0 {
        let whole = run(make_decoder(), input.stream, 0);
        assert_eq!(chunked, whole, "chunking changed what was decoded");
    }
}
