//! Read-only memory maps of media files.
//!
//! # Why the map is sound when the file changes on disk
//! `memmap2::Mmap::map` is `unsafe` because another process may modify or truncate the file
//! while it is mapped. shardcast's rules:
//! - The map is read-only and private (`MAP_PRIVATE`): we never write through it, so no
//!   aliasing `&mut` exists in this process.
//! - An in-place *modification* by another process may change bytes we read; every reader of
//!   media bytes treats them as untrusted input (bounds-checked parsing, packetizers that
//!   tolerate corrupt NAL lengths), so a change yields corrupt packets, never undefined
//!   behaviour in our code.
//! - *Replacing* a file (write to a temp file, rename over) leaves our mapping on the old
//!   inode: viewers keep a consistent view, and the library re-indexes on the next request
//!   because the (len, mtime) key changed.
//! - *Truncation* below a mapped page would raise SIGBUS on access. Files the media library
//!   maps are protected by a read lease (`sys/lease.rs`): a process that truncates or opens
//!   the file for writing blocks until we have ended the file's viewers (RTCP BYE) and dropped
//!   the mapping, which releases the lease; no page is touched after the file shrinks. Where
//!   no lease can be had (not the file's owner and no `CAP_LEASE`), the server logs it once:
//!   such files must be replaced by rename, never truncated in place.

use std::fs::File;
use std::io;

/// A read-only mapping of a whole file.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `file` read-only. An empty file maps to an empty slice.
    pub(crate) fn map(file: &File) -> io::Result<Self> {
        // SAFETY: the mapping is read-only and private; concurrent modification by other
        // processes is tolerated as untrusted input and truncation is excluded by the
        // operating rule documented at the top of this module.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        // Sequential-ish access from many viewers; let the kernel read ahead.
        let _ = map.advise(memmap2::Advice::WillNeed);
        Ok(Self { map })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
}
