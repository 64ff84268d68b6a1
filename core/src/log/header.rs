//! The fixed 32-byte header at the start of every segment and snapshot file:
//!
//! ```text
//! [magic: 8 bytes][version: u32 LE][reserved: u32 = 0][lsn: u64 LE][crc32 of bytes 0..24: u32 LE][reserved: u32 = 0]
//! ```
//!
//! The LSN is the segment's first LSN or the last LSN a snapshot covers; it is also in the
//! file name, and the two must agree, so a renamed or copied file is caught.

use super::error::CorruptionReason;
use super::Lsn;

/// Length of the file header.
pub(crate) const HEADER_LEN: usize = 32;
/// The on-disk format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The header for a file of kind `magic` carrying `lsn`.
pub(crate) fn encode(magic: &[u8; 8], lsn: Lsn) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(magic);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&lsn.get().to_le_bytes());
    let crc = crc32fast::hash(&out[..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the header at the start of `file` (the whole mapped file) and returns its LSN,
/// which must equal `named`, the LSN in the file name.
pub(crate) fn decode(file: &[u8], magic: &[u8; 8], named: Lsn) -> Result<Lsn, CorruptionReason> {
    let Some(head) = file.first_chunk::<HEADER_LEN>() else {
        return Err(CorruptionReason::ShortFile {
            len: file.len() as u64,
        });
    };
    if &head[..8] != magic {
        return Err(CorruptionReason::BadMagic);
    }
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if crc32fast::hash(&head[..24]) != word(24) || word(28) != 0 {
        return Err(CorruptionReason::HeaderChecksum);
    }
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(CorruptionReason::UnsupportedVersion(version));
    }
    let stored = u64::from(word(16)) | (u64::from(word(20)) << 32);
    if stored != named.get() {
        return Err(CorruptionReason::NameMismatch {
            named: named.get(),
            stored,
        });
    }
    Ok(Lsn::new(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"testmagc";

    #[test]
    fn header_round_trips() {
        let h = encode(MAGIC, Lsn::new(0x0102_0304_0506_0708));
        assert_eq!(
            decode(&h, MAGIC, Lsn::new(0x0102_0304_0506_0708)),
            Ok(Lsn::new(0x0102_0304_0506_0708))
        );
    }

    #[test]
    fn damaged_headers_are_named() {
        let h = encode(MAGIC, Lsn::new(7));
        assert_eq!(
            decode(&h[..31], MAGIC, Lsn::new(7)),
            Err(CorruptionReason::ShortFile { len: 31 })
        );
        assert_eq!(
            decode(&h, b"othermag", Lsn::new(7)),
            Err(CorruptionReason::BadMagic)
        );
        assert_eq!(
            decode(&h, MAGIC, Lsn::new(8)),
            Err(CorruptionReason::NameMismatch {
                named: 8,
                stored: 7
            })
        );
        let mut flipped = h;
        flipped[17] ^= 1;
        assert_eq!(
            decode(&flipped, MAGIC, Lsn::new(7)),
            Err(CorruptionReason::HeaderChecksum)
        );
        assert_eq!(
            decode(&[0u8; HEADER_LEN], MAGIC, Lsn::new(7)),
            Err(CorruptionReason::BadMagic)
        );
    }
}
