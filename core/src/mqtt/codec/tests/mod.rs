//! Byte fixtures: hand-written packets decoded to the expected struct and encoded back to the
//! same bytes, and one fixture per validation rule asserting the exact error.
#![allow(clippy::unwrap_used)]

mod fixtures_v311;
mod fixtures_v5;
mod validation;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::{decode, encode, encoded_len, DecodeError, Decoder};
use crate::mqtt::packet::{Packet, PacketId, ProtocolVersion};
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::UserProperty;

pub(super) fn s(v: &str) -> ByteString {
    ByteString::from(v)
}

pub(super) fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

pub(super) fn user(name: &str, value: &str) -> UserProperty {
    UserProperty {
        name: s(name),
        value: s(value),
    }
}

/// Decodes `bytes` (as one packet, and through a streaming decoder), checks the result, then
/// encodes it back and checks the bytes are identical.
pub(super) fn fixture(bytes: &[u8], version: ProtocolVersion, expected: Packet) {
    let for_decode = match expected {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    let got = decode(Bytes::copy_from_slice(bytes), for_decode).unwrap();
    assert_eq!(got, expected, "decoding {bytes:02x?}");

    let mut dec = match for_decode {
        None => Decoder::new(u32::MAX),
        Some(v) => Decoder::with_version(v, u32::MAX),
    };
    let mut buf = BytesMut::from(bytes);
    buf.extend_from_slice(&[0xC0, 0x00]); // a PINGREQ behind it stays in the buffer
    assert_eq!(dec.decode(&mut buf).unwrap(), Some(expected.clone()));
    assert_eq!(&buf[..], &[0xC0, 0x00]);
    if matches!(expected, Packet::Connect(_)) {
        assert_eq!(dec.version(), Some(version));
    }

    let mut out = BytesMut::new();
    encode(&expected, version, &mut out).unwrap();
    assert_eq!(&out[..], bytes, "encoding {expected:?}");
    assert_eq!(encoded_len(&expected, version).unwrap(), bytes.len());
}

/// Decodes `bytes` as one packet for `version` and returns the error.
pub(super) fn decode_err(bytes: &[u8], version: Option<ProtocolVersion>) -> DecodeError {
    match decode(Bytes::copy_from_slice(bytes), version) {
        Ok(p) => panic!("{bytes:02x?} decoded to {p:?}"),
        Err(e) => e,
    }
}

/// Asserts the error and its reason code, and that the Display text starts with the rule.
pub(super) fn assert_err(
    bytes: &[u8],
    version: Option<ProtocolVersion>,
    expected: DecodeError,
    reason: ReasonCode,
) {
    let e = decode_err(bytes, version);
    assert_eq!(e, expected, "for {bytes:02x?}");
    assert_eq!(e.reason_code(), reason, "reason code of {e:?}");
    assert!(e.to_string().starts_with(e.spec_rule()), "{e}");
}

/// The in-place PUBACK path of the streaming decoder gives what the general decoder gives,
/// for every packet id and both versions, and leaves a zero id to the general path's error.
#[test]
fn plain_puback_matches_the_general_decoder() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for id in (1..=u16::MAX).step_by(97).chain([1, 255, 256, u16::MAX]) {
            let bytes = [0x40, 0x02, (id >> 8) as u8, id as u8];
            let general = decode(Bytes::copy_from_slice(&bytes), Some(version)).unwrap();
            let mut dec = Decoder::with_version(version, u32::MAX);
            let mut buf = BytesMut::from(&bytes[..]);
            buf.extend_from_slice(&[0x40, 0x02]); // half of the next one stays
            assert_eq!(dec.decode(&mut buf).unwrap(), Some(general));
            assert_eq!(&buf[..], &[0x40, 0x02]);
            assert_eq!(dec.decode(&mut buf).unwrap(), None);
        }
        let zero = [0x40, 0x02, 0x00, 0x00];
        let mut dec = Decoder::with_version(version, u32::MAX);
        let streamed = dec.decode(&mut BytesMut::from(&zero[..])).unwrap_err();
        let general = decode(Bytes::copy_from_slice(&zero), Some(version)).unwrap_err();
        assert_eq!(streamed.to_string(), general.to_string());
    }
}

/// Before CONNECT, four PUBACK bytes are refused by the first-packet rule, not read.
#[test]
fn plain_puback_needs_a_connect_first() {
    let mut dec = Decoder::new(u32::MAX);
    assert!(dec
        .decode(&mut BytesMut::from(&[0x40, 0x02, 0x00, 0x01][..]))
        .is_err());
}
