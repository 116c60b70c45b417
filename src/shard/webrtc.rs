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
    /// Sent packets of its own-numbered tracks kept for NACKs.
    pub(super) history: SentHistory,
    /// The sequence number of the last FIR honoured (RFC 5104 §4.3.1.1).
    pub(super) last_fir_seq: Option<u8>,
}

/// Shortest time between two honoured keyframe requests of one viewer: a browser repeats
/// PLI while it waits for the keyframe (`docs/design/webrtc.md`, "PLI/FIR").
pub(super) const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

impl WebRtcPeer {
    /// A peer waiting for its first ICE check.
    /// `own` says, per track, whether it numbers its own packets (and so keeps its own
    /// history) or is a live stream's (kept in the shard's [`StreamHistories`]).
    pub(super) fn new(
        transport: PeerTransport,
        socket: Arc<UdpSocket>,
        own: impl Iterator<Item = bool>,
    ) -> Self {
        Self {
            history: SentHistory::new(own),
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

/// Packets of one track kept for retransmission by a session that numbers its own packets
/// (a file viewer, RFC 4585 §6.2.1): 512 ≈ 2.5 s of a 2 Mbit/s video track
/// (`docs/design/webrtc.md`, "NACK history").
pub(super) const NACK_HISTORY: usize = 512;

/// Packets of one live stream's track kept for retransmission on a shard, shared by every
/// WebRTC viewer of it there (a power of two, as [`NACK_HISTORY`]): 2,048 ≈ 10 s of a
/// 2 Mbit/s video track, so viewers up to a GOP or so apart still find their packets.
pub(super) const SHARED_NACK_HISTORY: usize = 2048;

// Slots are `seq % len`: a length dividing 2^16 keeps one slot per sequence number.
const _: () = assert!(NACK_HISTORY.is_power_of_two() && SHARED_NACK_HISTORY.is_power_of_two());

/// One sent packet as kept for a NACK: the header slab and the body's place (not its bytes,
/// which the mapping still holds), and for a live log's packet the absolute log position of
/// its sample (`live_log`: its bytes may be read only while that is at or above the pass's
/// pin).
#[derive(Clone, Copy)]
pub(super) struct Sent {
    /// The packet as it was sent.
    pub(super) packet: WirePacket,
    /// For a live log's packet: the absolute position of its sample's first byte (a group's
    /// head: the group's other samples follow it); 0 otherwise.
    pub(super) log_pos: u64,
}

/// The last packets sent on one track, by sequence number: slot `seq % len`. A NACKed packet
/// is protected and sent again as it was — same sequence number, so the same SRTP index
/// (RFC 3711 §3.3.1 lets a sender repeat one; the browser's replay window accepts a packet it
/// never received). Allocated once, when the ring is created; recording copies into a slot.
pub(super) struct SentRing {
    slots: Box<[Option<Sent>]>,
    /// The newest sequence number recorded (RFC 3550 §A.1 ordering, modulo 2^16): a lookup
    /// further back than the ring's length is refused, so a slot left over from a lap long
    /// ago is never taken for the packet asked for.
    newest: Option<u16>,
}

impl SentRing {
    /// An empty ring of `len` slots (a power of two).
    pub(super) fn new(len: usize) -> Self {
        Self {
            slots: vec![None; len].into_boxed_slice(),
            newest: None,
        }
    }

    /// Records `packet` as sent (with its sample's log position, 0 for other packets).
    /// Idempotent: when several viewers send one stream's packet, the first records it and
    /// the others find it there; an older packet than the one its slot holds (a viewer
    /// behind the others by more than the ring) is not recorded over it.
    pub(super) fn record(&mut self, packet: &WirePacket, log_pos: u64) {
        let seq = seq_of(packet);
        let len = self.slots.len();
        let Some(slot) = self.slots.get_mut(usize::from(seq) & (len - 1)) else {
            return;
        };
        if let Some(old) = slot {
            let held = seq_of(&old.packet);
            if held == seq && old.log_pos == log_pos && old.packet.header() == packet.header() {
                return;
            }
            // RFC 3550 §A.1: serial-number order modulo 2^16.
            if (seq.wrapping_sub(held) as i16) < 0 {
                return;
            }
        }
        *slot = Some(Sent {
            packet: *packet,
            log_pos,
        });
        if self.newest.is_none_or(|n| (seq.wrapping_sub(n) as i16) > 0) {
            self.newest = Some(seq);
        }
    }

    /// The packet sent with sequence number `seq`, if it is still kept.
    pub(super) fn lookup(&self, seq: u16) -> Option<&Sent> {
        let newest = self.newest?;
        if usize::from(newest.wrapping_sub(seq)) >= self.slots.len() {
            return None;
        }
        self.slots
            .get(usize::from(seq) & (self.slots.len() - 1))?
            .as_ref()
            .filter(|p| seq_of(&p.packet) == seq)
    }
}

/// A WebRTC session's own history: a [`NACK_HISTORY`] ring for each track that numbers its
/// own packets (a file's); none for a track of a live stream, whose packets the shard keeps
/// once for all its viewers ([`StreamHistories`]). Allocated once per session.
pub(super) struct SentHistory {
    /// Per track; `None` for a track kept in the shard's shared history.
    rings: Vec<Option<SentRing>>,
}

impl SentHistory {
    /// A history with a ring for each track `own` says numbers its own packets.
    pub(super) fn new(own: impl Iterator<Item = bool>) -> Self {
        Self {
            rings: own
                .map(|own| own.then(|| SentRing::new(NACK_HISTORY)))
                .collect(),
        }
    }

    /// Records a packet of track `track` as sent (a track without a ring records nothing).
    pub(super) fn record(&mut self, track: usize, packet: &WirePacket, log_pos: u64) {
        if let Some(ring) = self.rings.get_mut(track).and_then(Option::as_mut) {
            ring.record(packet, log_pos);
        }
    }

    /// The packet of track `track` sent with sequence number `seq`, if it is still kept.
    pub(super) fn lookup(&self, track: usize, seq: u16) -> Option<&Sent> {
        self.rings.get(track)?.as_ref()?.lookup(seq)
    }

    /// Rings the session holds (tests: memory).
    #[cfg(test)]
    pub(super) fn rings(&self) -> usize {
        self.rings.iter().flatten().count()
    }
}

/// The shard's histories of live streams, one [`SHARED_NACK_HISTORY`] ring per (stream,
/// track), by the id of its shared packetization (`LiveCache`): every WebRTC viewer of a live
/// channel or log on the shard sends the same packets with the same numbers, so one ring
/// answers all their NACKs. A ring is created with the stream's first WebRTC viewer and
/// dropped with its last (it lives no longer than the packetization it is keyed by, which
/// that viewer keeps attached).
#[derive(Default)]
pub(super) struct StreamHistories {
    /// By stream id: WebRTC viewer tracks attached, and the ring.
    rings: Vec<Option<(usize, SentRing)>>,
}

impl StreamHistories {
    /// A WebRTC viewer's track of stream `id` arrives (the first creates the ring).
    pub(super) fn attach(&mut self, id: u32) {
        let k = id as usize;
        if self.rings.len() <= k {
            self.rings.resize_with(k + 1, || None);
        }
        match &mut self.rings[k] {
            Some((viewers, _)) => *viewers += 1,
            none => *none = Some((1, SentRing::new(SHARED_NACK_HISTORY))),
        }
    }

    /// A WebRTC viewer's track of stream `id` leaves (the last drops the ring).
    pub(super) fn detach(&mut self, id: u32) {
        let Some(entry) = self.rings.get_mut(id as usize) else {
            return;
        };
        if let Some((viewers, _)) = entry {
            *viewers = viewers.saturating_sub(1);
            if *viewers == 0 {
                *entry = None;
            }
        }
    }

    /// Records a packet of stream `id` as sent (once: see [`SentRing::record`]).
    pub(super) fn record(&mut self, id: u32, packet: &WirePacket, log_pos: u64) {
        if let Some((_, ring)) = self.rings.get_mut(id as usize).and_then(Option::as_mut) {
            ring.record(packet, log_pos);
        }
    }

    /// The packet of stream `id` sent with sequence number `seq`, if it is still kept.
    pub(super) fn lookup(&self, id: u32, seq: u16) -> Option<&Sent> {
        self.rings.get(id as usize)?.as_ref()?.1.lookup(seq)
    }

    /// Rings alive (tests: memory).
    #[cfg(test)]
    pub(super) fn rings(&self) -> usize {
        self.rings.iter().flatten().count()
    }
}

/// The RTP sequence number of a packet's header (RFC 3550 §5.1: octets 2–3).
fn seq_of(packet: &WirePacket) -> u16 {
    u16::from_be_bytes([packet.header[2], packet.header[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packetize::{BodySource, PacketSpec, MAX_PAYLOAD_HEADER};
    use crate::wire::rtp::{RtpTimestamp, SeqNum, Ssrc};

    /// Packet `seq` with timestamp `ts` (a different `ts` is a different packet).
    fn packet(seq: u16, ts: u32) -> WirePacket {
        let spec = PacketSpec {
            payload_header: [0; MAX_PAYLOAD_HEADER],
            payload_header_len: 0,
            body_source: BodySource::Media,
            body_offset: u64::from(seq),
            body_len: 100,
            marker: false,
        };
        WirePacket::new(spec, 96, SeqNum(seq), RtpTimestamp(ts), Ssrc(7))
    }

    fn ts_of(sent: &Sent) -> u32 {
        u32::from_be_bytes(sent.packet.header[4..8].try_into().unwrap())
    }

    /// Recording is idempotent and keeps the newest packet of a slot: a second viewer's copy
    /// changes nothing, a viewer a lap behind does not overwrite the newer packet, and a
    /// packet further back than the ring (or from a lap long ago) is never returned.
    /// Sequence numbers wrap (RFC 3550 §A.1).
    #[test]
    fn a_ring_keeps_the_newest_packet_per_slot_and_refuses_what_is_past_it() {
        let mut ring = SentRing::new(8);
        assert!(ring.lookup(0).is_none(), "empty");
        for seq in 65_530u16..=65_535 {
            ring.record(&packet(seq, 1), 10);
        }
        for seq in 0u16..4 {
            ring.record(&packet(seq, 2), 20);
        }
        // Newest 3: the ring holds 65,532 … 3.
        assert!(ring.lookup(65_531).is_none(), "past the ring");
        assert_eq!(ring.lookup(65_532).map(|s| s.log_pos), Some(10));
        assert_eq!(ring.lookup(3).map(ts_of), Some(2));
        assert!(ring.lookup(4).is_none(), "not sent yet");
        // A late viewer's copy of 65,530 (slot of 2): older than what the slot holds.
        ring.record(&packet(65_530, 1), 10);
        assert_eq!(ring.lookup(2).map(ts_of), Some(2));
        assert!(ring.lookup(65_530).is_none());
        // Another viewer's copy of 3: the same packet, nothing changes; a different packet
        // under the same number (another log position) replaces it.
        ring.record(&packet(3, 2), 20);
        assert_eq!(ring.lookup(3).map(|s| s.log_pos), Some(20));
        ring.record(&packet(3, 2), 30);
        assert_eq!(ring.lookup(3).map(|s| s.log_pos), Some(30));
        // 2^14 later (into an empty slot) the old slots are still there but far behind the
        // newest: refused.
        ring.record(&packet(4 + 0x4000, 3), 40);
        assert!(ring.slots[3].is_some());
        assert!(ring.lookup(3).is_none());
        assert_eq!(ring.lookup(4 + 0x4000).map(|s| s.log_pos), Some(40));
    }

    /// A stream's ring exists while a WebRTC viewer's track is attached to it.
    #[test]
    fn a_stream_ring_lives_from_its_first_viewer_to_its_last() {
        let mut h = StreamHistories::default();
        h.attach(3);
        h.attach(3);
        h.attach(0);
        assert_eq!(h.rings(), 2);
        h.record(3, &packet(5, 1), 0);
        assert!(h.lookup(3, 5).is_some());
        assert!(h.lookup(0, 5).is_none(), "streams are apart");
        h.detach(3);
        assert!(h.lookup(3, 5).is_some(), "one viewer left");
        h.detach(3);
        assert!(h.lookup(3, 5).is_none());
        assert_eq!(h.rings(), 1);
        h.detach(3);
        h.detach(9);
        assert_eq!(h.rings(), 1);
    }
}
