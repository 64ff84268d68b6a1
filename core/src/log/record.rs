//! One record on disk: `[len: u32 LE][crc: u32 LE][payload: len bytes]`, where `crc` is the
//! CRC-32 (IEEE, `crc32fast`) of the four length bytes followed by the payload.
//!
//! The length is inside the checksum so that a zero-filled region (a page the kernel
//! allocated but never wrote before a crash) is not read as a run of empty records: the CRC
//! of four zero bytes is not zero.

use super::error::{CorruptionReason, LogError};

/// Bytes before the payload: length and checksum.
pub(crate) const RECORD_HEADER_LEN: usize = 8;

/// The checksum stored in a record header.
pub(crate) fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The length field for `payload`, or an error if it is over `max`.
pub(crate) fn checked_len(payload: &[u8], max: u32) -> Result<u32, LogError> {
    match u32::try_from(payload.len()) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(LogError::RecordTooLarge {
            len: payload.len(),
            max,
        }),
    }
}

/// Appends one framed record to `buf`; `len` comes from [`checked_len`].
pub(crate) fn encode(buf: &mut Vec<u8>, len: u32, payload: &[u8]) {
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The bytes a record of `len` payload bytes takes on disk.
pub(crate) fn framed_len(len: usize) -> u64 {
    (RECORD_HEADER_LEN + len) as u64
}

/// What the next position in a file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// A whole record whose checksum matches; the payload borrows the mapped file.
    Record(&'a [u8]),
    /// The bytes end exactly on a record boundary, or only zeros follow it (the part of
    /// the last segment the log zero-filled ahead of its writes).
    End,
    /// The bytes at [`Scanner::offset`] are not a whole, valid record.
    Bad(CorruptionReason),
}

/// Walks the records in a mapped file without copying them.
///
/// Every length is checked against `max` and against the bytes left before anything is
/// sliced, so garbage can neither panic nor make anything allocate.
pub(crate) struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    max: u32,
}

impl<'a> Scanner<'a> {
    /// Scans `bytes` (usually a whole mapped file) starting at byte `start`.
    pub(crate) fn new(bytes: &'a [u8], start: usize, max: u32) -> Self {
        Scanner {
            bytes,
            pos: start,
            max,
        }
    }

    /// The offset of the next record: after `Bad`, where the bad record starts.
    pub(crate) fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Reads the record at the current offset and moves past it if it is valid.
    pub(crate) fn next_record(&mut self) -> Step<'a> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Step::End;
        }
        let Some((head, body)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            if rest.iter().all(|&b| b == 0) {
                return Step::End;
            }
            return Step::Bad(CorruptionReason::IncompleteHeader {
                available: rest.len() as u64,
            });
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let stored = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        // No record has an all-zero header (the CRC of four zero bytes is not zero), so zeros
        // to the end are the zero-filled space ahead of the writes, not a torn record. Zeros
        // followed by anything else are not: a torn write can leave a record's first page
        // unwritten and a later one written.
        if len == 0 && stored == 0 && body.iter().all(|&b| b == 0) {
            return Step::End;
        }
        if len > self.max {
            return Step::Bad(CorruptionReason::LengthTooLarge { len, max: self.max });
        }
        let Some(payload) = body.get(..len as usize) else {
            return Step::Bad(CorruptionReason::IncompletePayload {
                len,
                available: body.len() as u64,
            });
        };
        let computed = checksum(len, payload);
        if computed != stored {
            return Step::Bad(CorruptionReason::ChecksumMismatch { stored, computed });
        }
        self.pos += RECORD_HEADER_LEN + payload.len();
        Step::Record(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            let len = checked_len(p, 1024).expect("small payload");
            encode(&mut buf, len, p);
        }
        buf
    }

    #[test]
    fn records_round_trip_including_empty_ones() {
        let buf = framed(&[b"one", b"", b"three"]);
        let mut scan = Scanner::new(&buf, 0, 1024);
        assert_eq!(scan.next_record(), Step::Record(b"one"));
        assert_eq!(scan.next_record(), Step::Record(b""));
        assert_eq!(scan.next_record(), Step::Record(b"three"));
        assert_eq!(scan.next_record(), Step::End);
        assert_eq!(scan.offset(), buf.len() as u64);
    }

    #[test]
    fn zeros_to_the_end_are_the_end_not_records() {
        let mut buf = framed(&[b"one"]);
        let end = buf.len() as u64;
        buf.extend_from_slice(&[0u8; 64]);
        let mut scan = Scanner::new(&buf, 0, 1024);
        assert_eq!(scan.next_record(), Step::Record(b"one"));
        assert_eq!(scan.next_record(), Step::End);
        assert_eq!(scan.offset(), end);
        // Fewer zeros than a header: still the end.
        let mut scan = Scanner::new(&[0u8; 5], 0, 1024);
        assert_eq!(scan.next_record(), Step::End);
        assert_eq!(scan.offset(), 0);
    }

    #[test]
    fn zeros_followed_by_anything_are_a_bad_record() {
        let mut zeros = [0u8; 64];
        zeros[40] = 1;
        let mut scan = Scanner::new(&zeros, 0, 1024);
        assert!(matches!(
            scan.next_record(),
            Step::Bad(CorruptionReason::ChecksumMismatch { stored: 0, .. })
        ));
        assert_eq!(scan.offset(), 0);
    }

    #[test]
    fn length_ffffffff_is_corruption_not_an_allocation() {
        let mut buf = vec![0xFF; 4];
        buf.extend_from_slice(&[0; 12]);
        let mut scan = Scanner::new(&buf, 0, 16 << 20);
        assert_eq!(
            scan.next_record(),
            Step::Bad(CorruptionReason::LengthTooLarge {
                len: u32::MAX,
                max: 16 << 20
            })
        );
    }

    #[test]
    fn every_cut_of_a_record_is_reported_not_panicked() {
        let buf = framed(&[b"hello", b"world!"]);
        let first = framed(&[b"hello"]).len();
        for cut in first + 1..buf.len() {
            let mut scan = Scanner::new(&buf[..cut], 0, 1024);
            assert_eq!(scan.next_record(), Step::Record(b"hello"));
            assert!(matches!(scan.next_record(), Step::Bad(_)), "cut at {cut}");
            assert_eq!(scan.offset(), first as u64);
        }
    }

    #[test]
    fn oversized_payloads_are_refused() {
        assert!(matches!(
            checked_len(&[0; 11], 10),
            Err(LogError::RecordTooLarge { len: 11, max: 10 })
        ));
    }
}
