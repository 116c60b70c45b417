//! The byte ring of a live log (`crate::live_log`): one in-memory file (`memfd_create(2)`)
//! mapped twice, writable for the log's single writer and read-only for the shards.
//!
//! # Why readers may hold `&[u8]` into memory the writer changes
//! The read-only view's bytes change when the writer reuses ring space, as a mapped file's
//! bytes change when another process writes it (`sys::mmap`). The live log's protocol makes
//! sure no reader uses a range while it is rewritten: a reader only forms slices of samples
//! at or above the *pin* it published for its pass, and the writer never writes below the
//! lowest pin (it drops the frame instead; `live_log`'s module doc has the ordering argument).
//! Everything read from the ring is also treated as untrusted media, as file bytes are
//! (bounds-checked packetizers), so even a protocol bug would corrupt packets, not memory.
//! The writable view is only reachable through [`RingWriter`], which `&mut` makes unique.

use std::fs::File;
use std::io;
use std::sync::Arc;

/// The read-only view of a ring, shared by every reader.
#[derive(Debug)]
pub(crate) struct RingView {
    map: memmap2::Mmap,
}

impl RingView {
    /// The whole ring. See the module doc for which ranges a reader may use.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// The writable view, owned by the log's one writer.
#[derive(Debug)]
pub(crate) struct RingWriter {
    map: memmap2::MmapMut,
}

impl RingWriter {
    /// Copies `data` to physical offset `at` of the ring. Returns false (writing nothing)
    /// if the range is outside the ring.
    pub(crate) fn write(&mut self, at: usize, data: &[u8]) -> bool {
        match at
            .checked_add(data.len())
            .and_then(|end| self.map.get_mut(at..end))
        {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// Ring size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Creates a ring of `capacity` bytes (pages are committed only when written): the writer
/// and the shared read-only view of the same memory.
pub(crate) fn ring(capacity: usize, name: &str) -> io::Result<(RingWriter, Arc<RingView>)> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    let file = File::from(fd);
    file.set_len(capacity as u64)?;
    // SAFETY: the memfd is private to this process and never truncated (it lives as long as
    // the two mappings, which keep their own references to it). The writable map is only
    // reachable through `RingWriter::write` (unique by `&mut`); the read-only map is shared
    // with readers under the protocol in the module doc.
    let writer = unsafe { memmap2::MmapOptions::new().map_mut(&file)? };
    // SAFETY: as above; this view is never written through.
    let view = unsafe { memmap2::MmapOptions::new().map(&file)? };
    Ok((RingWriter { map: writer }, Arc::new(RingView { map: view })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_show_in_the_read_view_and_out_of_range_writes_are_refused() {
        let (mut w, view) = ring(1 << 16, "test-ring").unwrap();
        assert_eq!(w.len(), 1 << 16);
        assert!(w.write(100, b"hello"));
        assert_eq!(&view.bytes()[100..105], b"hello");
        assert!(!w.write((1 << 16) - 2, b"abc"));
        assert!(!w.write(usize::MAX, b"a"));
    }
}
