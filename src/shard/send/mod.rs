//! UDP send backends behind one small interface.
//!
//! A shard collects a tick's packets as `GatherMsg`s (header slab + body slice of the
//! mapping) and hands them to `UdpSender::send_batch`. Today the backend is `sendmmsg(2)`;
//! the io_uring and UDP GSO backends of the line-rate work slot in as further `Backend`
//! variants with the same call, so the shard loop does not change.

use std::net::UdpSocket;

use crate::sys::mmsg::MmsgScratch;
pub(crate) use crate::sys::mmsg::{sock_addr, BatchOutcome, GatherMsg};

/// Packets per `sendmmsg` call: large enough to amortize the syscall, small enough that a
/// batch is sent within a fraction of a millisecond.
pub const MAX_BATCH: usize = 64;

/// Kernel send buffer requested for shard sockets: room for bursts of many viewers' frames.
const SEND_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Which syscall path sends UDP.
enum Backend {
    /// `sendmmsg(2)` with two iovecs per message.
    Sendmmsg(MmsgScratch),
}

/// A shard's UDP sending side.
pub(crate) struct UdpSender {
    socket: UdpSocket,
    backend: Backend,
}

impl UdpSender {
    /// A sender over `socket` using `sendmmsg`.
    pub(crate) fn new(socket: UdpSocket) -> Self {
        Self {
            socket,
            backend: Backend::Sendmmsg(MmsgScratch::new(MAX_BATCH)),
        }
    }

    /// The socket (also read for RTCP/NAT probes arriving on the RTP port).
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sends `count` datagrams, the `i`th described by `msg(i)`.
    pub(crate) fn send_batch<'a>(
        &mut self,
        count: usize,
        msg: impl FnMut(usize) -> GatherMsg<'a>,
    ) -> BatchOutcome {
        match &mut self.backend {
            Backend::Sendmmsg(scratch) => scratch.send(&self.socket, count, msg),
        }
    }
}

/// Raises a shard socket's send buffer (best effort; the kernel caps it at `wmem_max`).
pub(crate) fn tune_socket(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_send_buffer_size(SEND_BUFFER_BYTES) {
        tracing::debug!("SO_SNDBUF: {e}");
    }
}
