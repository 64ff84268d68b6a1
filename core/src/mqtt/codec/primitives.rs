//! The MQTT data representations (section 1.5): integers, variable byte integers, UTF-8
//! strings and binary data, read from a `Bytes` cursor and written to a `Sink`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use crate::mqtt::packet::PacketId;

/// The largest value of a variable byte integer (four bytes of seven bits).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// A read cursor over one packet's body. Every read checks the length first, so a hostile
/// remaining length or string length turns into `UnexpectedEnd` instead of a panic, and
/// strings/binary are `Bytes` slices of the frame (no copy).
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Errors unless the whole body was consumed: a packet must not carry stray bytes.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.buf.split_to(n))
    }

    /// The rest of the body (a PUBLISH payload).
    pub(crate) fn take_rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails with `UnexpectedEnd` unless `n` more bytes are there; the `Buf` getters below
    /// would panic otherwise.
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::UnexpectedEnd)
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match read_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::UnexpectedEnd),
        }
    }

    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::PacketIdZero)
    }

    /// Binary Data (1.5.6): a two-byte length and that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 Encoded String (1.5.4), checked for [MQTT-1.5.4-1] and [MQTT-1.5.4-2].
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        let s = ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.as_bytes().contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        Ok(s)
    }

    /// A sub-reader over the next `len` bytes (a property list).
    pub(crate) fn sub(&mut self, len: usize) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.take(len)?))
    }
}

/// Reads a variable byte integer from the front of `buf`: `Ok(None)` if `buf` ends before its
/// last byte, `Some((value, bytes used))` otherwise. A fifth continuation byte is malformed
/// (1.5.5) and is reported as soon as it is seen, even before the rest arrives.
pub(crate) fn read_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i >= 4 {
            return Err(DecodeError::MalformedVarInt);
        }
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        // Four bytes, all with the continuation bit: no valid integer can follow.
        return Err(DecodeError::MalformedVarInt);
    }
    Ok(None)
}

/// Where encoded bytes go: the output buffer, or a counter when only the length is wanted
/// (`encoded_len`, and the length prefixes that precede a body).
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    fn varint(&mut self, v: u32) -> Result<(), EncodeError> {
        if v > VARINT_MAX {
            return Err(EncodeError::InvalidValue {
                what: "variable byte integer over 268,435,455",
            });
        }
        let mut tmp = [0u8; 4];
        let n = encode_varint(v, &mut tmp);
        self.put(tmp.get(..n).unwrap_or(&[]));
        Ok(())
    }

    fn binary(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let len =
            u16::try_from(b.len()).map_err(|_| EncodeError::BinaryTooLong { len: b.len() })?;
        self.u16(len);
        self.put(b);
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        let len =
            u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong { len: s.len() })?;
        self.u16(len);
        self.put(s.as_bytes());
        Ok(())
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// A `Sink` that only counts.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes `v` (at most `VARINT_MAX`) into `out`, returning the number of bytes used.
pub(crate) fn encode_varint(mut v: u32, out: &mut [u8; 4]) -> usize {
    let mut n = 0;
    for slot in out.iter_mut() {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        *slot = byte;
        n += 1;
        if v == 0 {
            break;
        }
    }
    n
}

/// The number of bytes the variable byte integer `v` takes.
pub(crate) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}
