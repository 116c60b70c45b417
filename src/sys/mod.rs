//! The syscall layer: the only module allowed `unsafe`, each use behind a safe type.
//!
//! Invariants this module upholds for the rest of the crate:
//! - [`mmap::MappedFile`]: a read-only, private mapping that lives as long as the value; the
//!   bytes it hands out borrow from it. What happens when the file changes on disk is argued
//!   in `mmap.rs`.
//! - [`mmsg::MmsgScratch`]: raw `iovec`/`mmsghdr` pointers it builds are only alive for the
//!   duration of one `send` call, during which the borrowed slices they point to are held by
//!   the caller (the borrow checker enforces it through the closure's lifetime).
//! - [`recv::RecvBatch`]: the `mmsghdr`/`iovec`/control pointers it hands `recvmmsg` point
//!   into its own buffers and are rewritten before every call; datagrams are read back only
//!   for the count the call returned. [`recv::Epoll`] owns its fd and copies events out.
//!
//! Nothing outside `sys` calls `libc` directly.

pub(crate) mod mmap;
pub(crate) mod mmsg;
pub(crate) mod recv;
