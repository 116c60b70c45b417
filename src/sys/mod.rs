//! The syscall layer: the only module allowed `unsafe`, each use behind a safe type.
//!
//! Invariants this module upholds for the rest of the crate:
//! - [`mmap::MappedFile`]: a read-only, private mapping that lives as long as the value; the
//!   bytes it hands out borrow from it. What happens when the file changes on disk is argued
//!   in `mmap.rs`.
//! - [`mmsg::SendArena`] / [`mmsg::Window`]: the raw `mmsghdr`/`iovec`/`cmsghdr` pointers a
//!   window builds point only into the arena (fixed boxed slices, never resized) and into
//!   slices borrowed for the window's lifetime `'a`; the kernel reads them only inside the
//!   window's send methods, which return after the kernel is done with them.
//! - [`uring::UringSender`]: every SENDMSG operation it submits is reaped before `send`
//!   returns; if the ring breaks with operations in flight, the ring and the arena storage
//!   are leaked rather than freed under the kernel.
//! - [`cmsg::GsoCmsg`]: a `UDP_SEGMENT` control message laid out as `CMSG_SPACE(2)` bytes
//!   (checked against the libc macros in a test).
//! - [`recv::RecvBatch`]: the `mmsghdr`/`iovec`/control/address pointers it hands `recvmmsg`
//!   point into its own buffers and are rewritten before every call; datagrams and their
//!   source addresses are read back only for the count the call returned.
//!
//! - [`tcp_send::ZeroCopySender`] / [`tcp_send::UringTcpSender`]: borrow the bytes they send
//!   for `'buf` and reap every `MSG_ZEROCOPY` completion / `SENDMSG_ZC` notification before
//!   they are dropped; the io_uring one also reaps every operation before `send` returns, and
//!   leaks its ring rather than free what the kernel may still read.
//!
//! - [`sched`]: per-thread nice values through `setpriority(2)` on the caller's thread id.
//! - [`tcp`]: gathered, never-blocking `sendmsg(2)` on a TCP socket (`IoSlice` is `iovec`-
//!   compatible; the kernel reads the slices only during the call) and `TCP_NOTSENT_LOWAT`.
//!
//! - [`ring`]: a live log's byte ring, one memfd mapped writable for its writer and
//!   read-only for the shards; why readers' slices stay valid is argued in `ring.rs`.
//!
//! Nothing outside `sys` calls `libc` directly.

pub(crate) mod cmsg;
#[cfg(test)]
pub(crate) mod count_alloc;
pub(crate) mod errqueue;
pub(crate) mod lease;
pub(crate) mod mmap;
pub(crate) mod mmsg;
pub(crate) mod recv;
pub(crate) mod ring;
pub(crate) mod sched;
pub(crate) mod tcp;
pub(crate) mod tcp_send;
pub(crate) mod uring;
