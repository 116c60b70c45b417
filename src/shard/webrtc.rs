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
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::live_cache::WirePacket;
use crate::stats::ShardCounters;
use crate::sys::recv::RecvBatch;
use crate::webrtc::dtls::DTLS_MTU;
use crate::webrtc::peer::PeerTransport;
use crate::webrtc::Demux;

/// Datagrams read per drain (one `recvmmsg`): a flood costs at most this much work per tick;
/// the kernel drops the rest.
const DRAIN_PER_TICK: usize = 64;
/// Largest datagram read: a DTLS flight or an SRTP packet fits a 1,500-byte MTU; larger
/// ones are truncated by the kernel and fail their checks.
pub(super) const MAX_DATAGRAM: usize = 2048;

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

/// Largest RTCP compound the shard protects: an SR or BYE with SDES (`MAX_RTCP_COMPOUND`)
/// plus SRTCP's index and tag (RFC 3711 §3.4).
const MAX_SRTCP: usize = crate::wire::rtcp::MAX_RTCP_COMPOUND + 64;

/// A WebRTC viewer's transport beside its shard session (`docs/design/webrtc.md`, "The
/// shard side"): ICE, DTLS and SRTP state, the nominated address media goes to, and the
/// shard's WebRTC socket for what is sent outside the batched media path (STUN answers,
/// DTLS flights, SRTCP).
pub(super) struct WebRtcPeer {
    /// ICE-lite, DTLS server and SRTP contexts (sans-IO).
    pub(super) transport: PeerTransport,
    /// The nominated address (RFC 8445 §7.3.1.5), as the shard's peer map keys it.
    pub(super) addr: Option<SocketAddr>,
    /// The same, converted once for the send path.
    pub(super) dest: Option<SockAddr>,
    /// The shard's WebRTC socket (shared by its sessions).
    pub(super) socket: Arc<UdpSocket>,
    /// Set after the first refused datagram is logged: one line per session at most.
    pub(super) refusal_logged: bool,
    /// When the last keyframe request was honoured (at most one per
    /// [`KEYFRAME_REQUEST_INTERVAL`]).
    pub(super) last_keyframe_request: Option<Instant>,
    /// Sent packets kept for NACKs.
    pub(super) history: SentHistory,
    /// The sequence number of the last FIR honoured (RFC 5104 §4.3.1.1).
    pub(super) last_fir_seq: Option<u8>,
}

/// Shortest time between two honoured keyframe requests of one viewer: a browser repeats
/// PLI while it waits for the keyframe (`docs/design/webrtc.md`, "PLI/FIR").
pub(super) const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

impl WebRtcPeer {
    /// A peer waiting for its first ICE check.
    pub(super) fn new(transport: PeerTransport, socket: Arc<UdpSocket>, tracks: usize) -> Self {
        Self {
            history: SentHistory::new(tracks),
            last_fir_seq: None,
            transport,
            addr: None,
            dest: None,
            socket,
            refusal_logged: false,
            last_keyframe_request: None,
        }
    }

    /// Records the address an ICE check nominated; returns the one it replaces.
    pub(super) fn select(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        self.dest = Some(SockAddr::from(addr));
        self.addr.replace(addr)
    }

    /// Sends every DTLS datagram the transport has waiting to the nominated address.
    pub(super) fn transmit_dtls(&mut self) {
        let mut out = [0u8; DTLS_MTU];
        while let Some(n) = self.transport.poll_transmit(&mut out) {
            if let (Some(addr), Some(bytes)) = (self.addr, out.get(..n)) {
                let _ = self.socket.send_to(bytes, addr);
            }
        }
    }

    /// Protects the RTCP compound `packet` (RFC 3711 §3.4) and sends it to the nominated
    /// address; nothing before SRTP is keyed. Best effort, as RTCP is (RFC 3550 §6).
    pub(super) fn send_rtcp(&mut self, packet: &[u8]) {
        let Some(addr) = self.addr else {
            return;
        };
        let Some(sender) = self.transport.sender() else {
            return;
        };
        let mut out = [0u8; MAX_SRTCP];
        if let Ok(n) = sender.protect_rtcp(packet, &mut out) {
            if let Some(bytes) = out.get(..n) {
                let _ = self.socket.send_to(bytes, addr);
            }
        }
    }

    /// Whether a keyframe request at `now` is honoured (and records it if so).
    pub(super) fn take_keyframe_request(&mut self, now: Instant) -> bool {
        let due = self
            .last_keyframe_request
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
        if due {
            self.last_keyframe_request = Some(now);
        }
        due
    }
}

/// Packets of one track kept for retransmission (RFC 4585 §6.2.1): 512 ≈ 2.5 s of a
/// 2 Mbit/s video track (`docs/design/webrtc.md`, "NACK history").
pub(super) const NACK_HISTORY: usize = 512;

/// The last [`NACK_HISTORY`] packets sent on each of a WebRTC session's tracks, by sequence
/// number: the header slab and the body's place in the file (not its bytes, which the
/// mapping still holds), so a NACKed packet is protected and sent again as it was — same
/// sequence number, so the same SRTP index (RFC 3711 §3.3.1 lets a sender repeat one; the
/// browser's replay window accepts a packet it never received). Allocated once per session.
pub(super) struct SentHistory {
    /// Per track, slot `seq % NACK_HISTORY`.
    rings: Vec<Vec<Option<WirePacket>>>,
}

impl SentHistory {
    /// An empty history for `tracks` tracks.
    pub(super) fn new(tracks: usize) -> Self {
        Self {
            rings: (0..tracks).map(|_| vec![None; NACK_HISTORY]).collect(),
        }
    }

    /// Records a packet of track `track` as sent.
    pub(super) fn record(&mut self, track: usize, packet: &WirePacket) {
        let seq = seq_of(packet);
        if let Some(slot) = self
            .rings
            .get_mut(track)
            .and_then(|r| r.get_mut(usize::from(seq) % NACK_HISTORY))
        {
            *slot = Some(*packet);
        }
    }

    /// The packet of track `track` sent with sequence number `seq`, if it is still kept.
    pub(super) fn lookup(&self, track: usize, seq: u16) -> Option<&WirePacket> {
        self.rings
            .get(track)?
            .get(usize::from(seq) % NACK_HISTORY)?
            .as_ref()
            .filter(|p| seq_of(p) == seq)
    }
}

/// The RTP sequence number of a packet's header (RFC 3550 §5.1: octets 2–3).
fn seq_of(packet: &WirePacket) -> u16 {
    u16::from_be_bytes([packet.header[2], packet.header[3]])
}
