//! The counters a shard publishes for the control thread to read (plain relaxed atomics):
//! owned here, in statistics, so that the hub reads them without importing the shard.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::ids::IoBackend;

/// Counters a shard publishes (plain relaxed atomics; read by the control thread).
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Sessions owned now.
    pub sessions: AtomicUsize,
    /// RTP packets handed to the kernel.
    pub packets: AtomicU64,
    /// RTP payload+header bytes handed to the kernel.
    pub bytes: AtomicU64,
    /// Send syscalls made (`io_uring_enter` calls for the io_uring backend).
    pub syscalls: AtomicU64,
    /// UDP GSO sends (each one syscall entry carrying several datagrams).
    pub gso_sends: AtomicU64,
    /// Datagrams sent inside GSO sends.
    pub gso_segments: AtomicU64,
    /// Packets the kernel refused.
    pub send_errors: AtomicU64,
    /// RTP packets written to TCP connections (interleaved, included in `packets`).
    pub tcp_packets: AtomicU64,
    /// Gathered `sendmsg` calls on TCP connections (included in `syscalls`).
    pub tcp_sends: AtomicU64,
    /// Media bytes the kernel could not take at once and that waited in a connection's
    /// user-space backlog (a viewer reading slower than the stream, or a burst).
    pub tcp_backlogged_bytes: AtomicU64,
    /// HLS connections open on this shard.
    pub hls_connections: AtomicU64,
    /// HLS requests answered (every status).
    pub hls_requests: AtomicU64,
    /// HLS body bytes written (playlists, init segments, segments and parts).
    pub hls_bytes: AtomicU64,
    /// HLS segment or part requests for media that had left the live window (a player
    /// that fell behind: a stall the server can see).
    pub hls_late_requests: AtomicU64,
    /// TCP viewers cut off for not reading.
    pub slow_viewers_dropped: AtomicU64,
    /// RTCP packets received (datagrams that demultiplex as RTCP, RFC 5761 §4, and every
    /// datagram from an unknown address).
    pub rtcp_received: AtomicU64,
    /// Datagrams from viewers that are not RTCP (NAT keep-alives): liveness only.
    pub nat_keepalives: AtomicU64,
    /// Viewers whose RTP port answered ICMP unreachable.
    pub unreachable_viewers: AtomicU64,
    /// RTCP packets rejected by validation (RFC 3550 Appendix A.2).
    pub rtcp_invalid: AtomicU64,
    /// SRTCP from RTSPS viewers dropped: a bad tag or replay (RFC 3711 §3.4), or no key
    /// from the client's `KeyMgmt` to check it with.
    pub srtcp_dropped: AtomicU64,
    /// RTCP packets from an address that is no session's.
    pub rtcp_unknown_source: AtomicU64,
    /// Report blocks naming an SSRC that is not the sending session's.
    pub rtcp_unknown_ssrc: AtomicU64,
    /// Sessions ended by the viewer's RTCP BYE.
    pub rtcp_byes: AtomicU64,
    /// RTCP BYEs ignored because they named no SSRC the viewer had reported from before
    /// (RFC 3550 §6.6; a spoofed BYE from the viewer's address).
    pub rtcp_byes_refused: AtomicU64,
    /// Statistics reports not sent because the control thread's queue was full (their
    /// report blocks and lateness go with the next report).
    pub reports_dropped: AtomicU64,
    /// Datagrams read from the shard's WebRTC port (STUN, DTLS, SRTP/SRTCP; RFC 7983).
    pub webrtc_received: AtomicU64,
    /// WebRTC datagrams dropped: from an address no session nominated, naming no session's
    /// ICE username, or matching no protocol of the port.
    pub webrtc_dropped: AtomicU64,
    /// WebRTC datagrams a session refused: a check with the wrong ICE password, DTLS that
    /// failed, SRTCP with a bad tag or replayed (RFC 3711 §3.3).
    pub webrtc_refused: AtomicU64,
    /// SRTCP packets from WebRTC viewers that decrypted and validated (RFC 3711 §3.4).
    pub webrtc_srtcp: AtomicU64,
    /// Keyframe requests (PLI, RFC 4585 §6.3.1; FIR, RFC 5104 §4.3.1) honoured: the viewer
    /// rejoined at a keyframe.
    pub webrtc_keyframe_requests: AtomicU64,
    /// Keyframe requests ignored: within 500 ms of the last honoured one.
    pub webrtc_keyframe_requests_ignored: AtomicU64,
    /// Sequence numbers WebRTC viewers reported lost (generic NACK, RFC 4585 §6.2.1).
    pub webrtc_nacked: AtomicU64,
    /// NACKed packets sent again from the session's history (RFC 4585 §6.2.1).
    pub webrtc_nacks_served: AtomicU64,
    /// NACKed packets not sent again: past the history (512 packets per track), of an
    /// unknown SSRC, or of a live log (whose sample the writer may have overwritten).
    pub webrtc_nacks_missed: AtomicU64,
    /// Live-channel samples packetized. The shard packetizes a live sample once for all its
    /// viewers of the channel, so this grows with samples sent, not with viewers.
    pub live_packetizations: AtomicU64,
    /// The send backend the shard uses now ([`IoBackend::code`]; 0 before the shard has
    /// built its sender). Set after every batch, so a runtime fallback shows.
    pub io_backend: AtomicU8,
    /// Whether the shard forms UDP GSO trains now (off if asked off, or refused).
    pub gso: AtomicBool,
}

impl ShardCounters {
    /// Publishes the send path the shard uses now.
    pub fn set_send_path(&self, io: IoBackend, gso: bool) {
        self.io_backend.store(io.code(), Ordering::Relaxed);
        self.gso.store(gso, Ordering::Relaxed);
    }

    /// The send backend the shard uses now, `None` before its sender exists.
    pub fn send_backend(&self) -> Option<IoBackend> {
        IoBackend::from_code(self.io_backend.load(Ordering::Relaxed))
    }
}
