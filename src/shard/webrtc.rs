//! A shard's WebRTC port: one UDP socket that carries STUN, DTLS and SRTP/SRTCP for every
//! WebRTC session the shard owns (ICE-lite, RFC 8445 §2.5: the browser checks, we answer;
//! `docs/design/webrtc.md`). What arrives is told apart by its first byte (RFC 7983 §7,
//! [`Demux`]) and by the peer address a session's ICE nomination recorded.
//!
//! Until a session has nominated an address, only a STUN binding request naming its ICE
//! username can reach it; everything else from an address no session owns is dropped and
//! counted, so media never follows a packet from an address that did not prove it knows
//! the session's ICE password.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use crate::stats::ShardCounters;
use crate::sys::recv::RecvBatch;
use crate::webrtc::Demux;

/// Datagrams read per drain (one `recvmmsg`): a flood costs at most this much work per tick;
/// the kernel drops the rest.
const DRAIN_PER_TICK: usize = 64;
/// Largest datagram read: a DTLS flight or an SRTP packet fits a 1,500-byte MTU; larger
/// ones are truncated by the kernel and fail their checks.
const MAX_DATAGRAM: usize = 2048;

/// What one drain of the port saw, by protocol (RFC 7983 §7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DrainCounts {
    /// STUN messages.
    pub(super) stun: usize,
    /// DTLS records.
    pub(super) dtls: usize,
    /// SRTP or SRTCP packets.
    pub(super) rtp: usize,
    /// Datagrams dropped.
    pub(super) dropped: usize,
}

/// The shard's WebRTC socket and its receive buffers.
pub(super) struct WebRtcPort {
    socket: UdpSocket,
    recv: RecvBatch,
}

impl WebRtcPort {
    /// Takes the shard's bound, non-blocking WebRTC socket.
    pub(super) fn new(socket: UdpSocket) -> Self {
        Self {
            socket,
            recv: RecvBatch::with_slot_bytes(DRAIN_PER_TICK, MAX_DATAGRAM),
        }
    }

    /// The socket, for epoll.
    pub(super) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Reads what has arrived (at most [`DRAIN_PER_TICK`] datagrams) and hands each one, with
    /// its source and kind, to `handle`, which returns false for a datagram it dropped.
    pub(super) fn drain(
        &mut self,
        counters: &ShardCounters,
        mut handle: impl FnMut(SocketAddr, Demux, &[u8]) -> bool,
    ) -> DrainCounts {
        let mut counts = DrainCounts::default();
        let received = match self.recv.recv(self.socket.as_raw_fd()) {
            Ok(n) => n,
            Err(e) => {
                tracing::trace!("webrtc receive: {e}");
                0
            }
        };
        for k in 0..received {
            let bytes = self.recv.datagram(k).bytes;
            let kind = Demux::classify(bytes);
            match kind {
                Demux::Stun => counts.stun += 1,
                Demux::Dtls => counts.dtls += 1,
                Demux::Rtp => counts.rtp += 1,
                Demux::Other => {}
            }
            let kept = match self.recv.source(k) {
                Some(from) if kind != Demux::Other => handle(from, kind, bytes),
                _ => false,
            };
            if !kept {
                counts.dropped += 1;
            }
        }
        counters
            .webrtc_received
            .fetch_add(received as u64, Ordering::Relaxed);
        counters
            .webrtc_dropped
            .fetch_add(counts.dropped as u64, Ordering::Relaxed);
        counts
    }
}
