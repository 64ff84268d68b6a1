//! The one place that memory-maps a file.

use std::fs::File;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};

use super::error::LogError;

/// Maps the first `len` bytes of `file` (at `path`) read-only.
///
/// `len` is a length the caller knows the file has (its size at open, or the bytes the log
/// itself has written), never more, so no page of the map lies past the end of the file.
#[allow(unsafe_code)]
pub(crate) fn map(file: &File, len: u64, path: &Path) -> Result<Mmap, LogError> {
    let len =
        usize::try_from(len).map_err(|_| LogError::Config("file larger than the address space"))?;
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes must not change, and the file
    // must not shrink below the mapping, while the map is alive (the first would be a data
    // race on `&[u8]`, the second a SIGBUS). Both hold here:
    // - the files live in a directory the log owns, guarded by the `LOCK` file, so no other
    //   `Log` writes them; changing them from outside is unsupported, like editing a
    //   database's files under it;
    // - segments and snapshots are only ever appended to, past the mapped `len`, never
    //   rewritten in place: the writer uses `pwrite` at the end, and snapshots are written to
    //   a temporary file and renamed;
    // - the only shrink, cutting a torn tail during recovery, happens after the map used to
    //   find the tail has been dropped, and before any later map is made;
    // - deleting a segment (compaction) unlinks it; a live map keeps the inode alive.
    unsafe { MmapOptions::new().len(len).populate().map(file) }.map_err(LogError::io("mmap", path))
}
