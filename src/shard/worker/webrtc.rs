//! WebRTC viewers on the shard (`docs/design/webrtc.md`, "The shard side, concretely"):
//! sessions created paused beside a [`PeerTransport`] and found by ICE ufrag; the WebRTC
//! port's datagrams dispatched by kind (RFC 7983 §7) — STUN by the username it names, DTLS
//! and SRTCP by the address an ICE check nominated; play begins when DTLS keys SRTP; media
//! protected per viewer into a reused slab and sent in the same GSO trains as RTSP's.
//!
//! Distrust: nothing but a STUN request naming a session's ufrag reaches a session from an
//! address it has not nominated; the ICE password decides whether it nominates (RFC 8445
//! §7.2.2). Every refusal is counted; a session logs its first one only.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::send::{GatherMsg, SendConfig, UdpSender, MAX_BATCH};
use super::super::session::{PlayState, ShardSession};
use super::super::webrtc::{StreamHistories, WebRtcPeer, MAX_DATAGRAM};
use super::super::{PlayEnd, PlayRate, SessionId, WebRtcStart};
use super::{PendingPacket, Worker, PENDING_CAPACITY};
use crate::media::track::TrackKind;
use crate::packetize::body_slices;
use crate::stats::{digest_rtcp_into, EndReason};
use crate::webrtc::ice::IceLite;
use crate::webrtc::peer::{is_rtcp, PeerEvent, PeerTransport};
use crate::webrtc::stun::{message_type, Class, StunMessage, BINDING};
use crate::webrtc::Demux;
use crate::wire::ntp::NtpTime;
use crate::wire::rtcp::{nacked_sequences, Feedback};
use crate::wire::rtcp::{visit_reduced_size, RtcpItem, PT_RR, PT_SR};
use crate::wire::rtp::Ssrc;

/// Room for one protected packet in the send slab: a 1,500-byte MTU datagram. A packet
/// that does not fit (a payload budget past the MTU less SRTP's tag) is counted and dropped.
const SRTP_SLOT: usize = 1500;
/// How often every WebRTC session's consent and DTLS state is checked (RFC 7675 §5.1 counts
/// in seconds: a second of slack is harmless).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Keyframe requests one SRTCP packet may carry that are looked at (the rest are ignored).
const MAX_FEEDBACK: usize = 16;

/// The shard's WebRTC state besides the port: the media sender on the WebRTC socket, the
/// send slab, the maps from ufrag and nominated address to session slot, and the sessions
/// whose DTLS handshake runs timers.
pub(super) struct WebRtcShard {
    /// Batched sends on a duplicate of the WebRTC socket (`None` when WebRTC is off).
    sender: Option<UdpSender>,
    /// The WebRTC socket shared with every session (STUN answers, DTLS, SRTCP).
    socket: Option<Arc<UdpSocket>>,
    /// The pass's WebRTC packets, protected at the flush.
    pub(super) pending: Vec<PendingPacket>,
    /// [`MAX_BATCH`] × [`SRTP_SLOT`] bytes, allocated once: protected packets before a send.
    slab: Vec<u8>,
    /// Session slot by our ICE ufrag (RFC 8445 §7.2.2: the request's USERNAME names it).
    by_ufrag: HashMap<String, usize>,
    /// Session slot by nominated address.
    by_peer: HashMap<SocketAddr, usize>,
    /// Slots of sessions whose DTLS is not keyed yet (their retransmission timers run).
    handshakes: Vec<usize>,
    /// When consent and DTLS state are next checked.
    next_sweep: Instant,
    /// The NACK histories of the live streams the shard's WebRTC viewers watch, one ring per
    /// stream track for all of them (file viewers keep their own, `WebRtcPeer::history`).
    pub(super) histories: StreamHistories,
}

impl WebRtcShard {
    /// No WebRTC on this shard.
    pub(super) fn off() -> Self {
        Self {
            sender: None,
            socket: None,
            pending: Vec::new(),
            slab: Vec::new(),
            by_ufrag: HashMap::new(),
            by_peer: HashMap::new(),
            handshakes: Vec::new(),
            next_sweep: Instant::now(),
            histories: StreamHistories::default(),
        }
    }

    /// The shard's WebRTC state over its bound `socket` (duplicated for the sender and the
    /// sessions; sends block when the kernel buffer is full, as RTP's do, while the port's
    /// reads never wait: `recvmmsg` with `MSG_DONTWAIT`).
    pub(super) fn new(socket: &UdpSocket, send: SendConfig, shard: usize) -> std::io::Result<Self> {
        let media = socket.try_clone()?;
        media.set_nonblocking(false)?;
        let shared = Arc::new(socket.try_clone()?);
        Ok(Self {
            sender: Some(UdpSender::new(media, send, shard)),
            socket: Some(shared),
            pending: Vec::with_capacity(PENDING_CAPACITY),
            slab: vec![0; MAX_BATCH * SRTP_SLOT],
            by_ufrag: HashMap::new(),
            by_peer: HashMap::new(),
            handshakes: Vec::new(),
            next_sweep: Instant::now() + SWEEP_INTERVAL,
            histories: StreamHistories::default(),
        })
    }

    /// Drops a removed session's entries (and its hold on its live streams' histories).
    pub(super) fn forget(&mut self, s: &ShardSession, slot: usize) {
        let Some(peer) = &s.webrtc else {
            return;
        };
        for id in s.tracks.iter().filter_map(|t| t.live_stream) {
            self.histories.detach(id);
        }
        self.by_ufrag.remove(peer.transport.local_ufrag());
        if let Some(addr) = peer.addr {
            if self.by_peer.get(&addr) == Some(&slot) {
                self.by_peer.remove(&addr);
            }
        }
        self.handshakes.retain(|&h| h != slot);
    }
}

impl Worker {
    /// Creates a WebRTC viewer's session, paused, with its transport beside it; it starts
    /// playing when DTLS keys SRTP.
    pub(super) fn start_webrtc(&mut self, start: WebRtcStart, now: Instant) {
        let WebRtcStart { setup, peer } = start;
        let id = setup.id;
        let Some(socket) = self.rtc.socket.clone() else {
            tracing::warn!(shard = self.index, session = %format_args!("{id:016X}"), "WebRTC session on a shard without a WebRTC port");
            self.send_end(id, EndReason::DtlsClosed);
            return;
        };
        if self.by_id.contains_key(&id) || self.rtc.by_ufrag.contains_key(&peer.local_ufrag) {
            tracing::warn!(shard = self.index, session = %format_args!("{id:016X}"), "WebRTC session or ufrag already on this shard");
            return;
        }
        let transport = match PeerTransport::new(peer, now) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(shard = self.index, session = %format_args!("{id:016X}"), "WebRTC transport: {e}");
                self.send_end(id, EndReason::DtlsClosed);
                return;
            }
        };
        let mut session = match ShardSession::new(setup, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(shard = self.index, session = %format_args!("{id:016X}"), "cannot stream: {e}");
                self.send_end(id, EndReason::DtlsClosed);
                return;
            }
        };
        self.attach_live(&mut session);
        self.watch_log(&session, true);
        let ufrag = transport.local_ufrag().to_owned();
        // A live stream's track is kept in the shard's history of the stream; the others
        // (a file's, or a live track that packetizes for itself) in the session's own.
        for id in session.tracks.iter().filter_map(|t| t.live_stream) {
            self.rtc.histories.attach(id);
        }
        let own = session.tracks.iter().map(|t| t.live_stream.is_none());
        session.webrtc = Some(Box::new(WebRtcPeer::new(transport, socket, own)));
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.sessions.push(None);
            self.sessions.len() - 1
        });
        self.sessions[slot] = Some(session);
        self.by_id.insert(id, slot);
        self.rtc.by_ufrag.insert(ufrag, slot);
        self.rtc.handshakes.push(slot);
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the WebRTC port (one batch per tick: a flood costs bounded work per tick, the
    /// kernel drops the rest), then runs DTLS timers and, once a second, the consent sweep.
    pub(super) fn drain_webrtc(&mut self, now: Instant) {
        let Some(mut port) = self.webrtc.take() else {
            return;
        };
        let counters = self.counters.clone();
        port.drain(&counters, |from, kind, bytes| {
            self.on_webrtc_datagram(now, from, kind, bytes)
        });
        self.webrtc = Some(port);
        self.run_dtls_timers(now);
        if now >= self.rtc.next_sweep {
            self.rtc.next_sweep = now + SWEEP_INTERVAL;
            self.sweep_webrtc(now);
        }
    }

    /// One datagram of the WebRTC port; false when it was dropped.
    fn on_webrtc_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        kind: Demux,
        bytes: &[u8],
    ) -> bool {
        match kind {
            Demux::Stun => self.on_stun(now, from, bytes),
            Demux::Dtls => self.on_dtls(now, from, bytes),
            Demux::Rtp if is_rtcp(bytes) => self.on_srtcp(now, from, bytes),
            // SRTP from a viewer (WHEP viewers send none), or nothing we speak.
            Demux::Rtp | Demux::Other => false,
        }
    }

    /// The session in `slot`, if it is a WebRTC session.
    fn rtc_session(&mut self, slot: usize) -> Option<&mut ShardSession> {
        self.sessions
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|s| s.webrtc.is_some())
    }

    /// A STUN message: found by the ufrag its USERNAME names (RFC 8445 §7.2.2), answered at
    /// once to its source; a nomination moves the session's address (RFC 8445 §7.3.1.5).
    fn on_stun(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        let Ok(msg) = StunMessage::parse(bytes) else {
            return false;
        };
        let slot = IceLite::local_ufrag_of(&msg)
            .and_then(|u| std::str::from_utf8(u).ok())
            .and_then(|u| self.rtc.by_ufrag.get(u))
            .copied();
        let Some(slot) = slot else {
            return false;
        };
        let index = self.index;
        let counters = self.counters.clone();
        let Some(s) = self.rtc_session(slot) else {
            return false;
        };
        let Some(peer) = s.webrtc.as_mut() else {
            return false;
        };
        let mut out = [0u8; 512];
        let event = match peer.transport.on_stun(now, from, &msg, &mut out) {
            Ok((len, event)) => {
                let answer = out.get(..len).unwrap_or_default();
                if !answer.is_empty() {
                    let _ = peer.socket.send_to(answer, from);
                }
                // A bad check (wrong password: 401, RFC 8489 §9.1.3; role conflict: 487) is
                // answered with an error response and changes nothing: refused, no liveness.
                let error_type = message_type(BINDING, Class::Error).to_be_bytes();
                if answer.get(..2) == Some(&error_type[..]) {
                    counters.webrtc_refused.fetch_add(1, Ordering::Relaxed);
                    if !peer.refusal_logged {
                        peer.refusal_logged = true;
                        tracing::info!(shard = index, session = %format_args!("{:016X}", s.id), %from, "ICE check answered with an error");
                    }
                    return false;
                }
                event
            }
            Err(e) => {
                counters.webrtc_refused.fetch_add(1, Ordering::Relaxed);
                if !peer.refusal_logged {
                    peer.refusal_logged = true;
                    tracing::info!(shard = index, session = %format_args!("{:016X}", s.id), %from, "ICE check refused: {e}");
                }
                return false;
            }
        };
        s.activity.touch(now);
        if let Some(PeerEvent::Selected(addr)) = event {
            let old = peer.select(addr);
            tracing::debug!(shard = index, session = %format_args!("{:016X}", s.id), %addr, "ICE nominated");
            if let Some(old) = old {
                if self.rtc.by_peer.get(&old) == Some(&slot) {
                    self.rtc.by_peer.remove(&old);
                }
            }
            self.rtc.by_peer.insert(addr, slot);
        }
        true
    }

    /// A DTLS record from a nominated address: handed to the session's DTLS, its answer
    /// sent; keys in start the play, a close or a fatal alert ends the session.
    fn on_dtls(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        let Some(&slot) = self.rtc.by_peer.get(&from) else {
            return false;
        };
        let index = self.index;
        let counters = self.counters.clone();
        let Some(s) = self.rtc_session(slot) else {
            return false;
        };
        let id = s.id;
        let Some(peer) = s.webrtc.as_mut() else {
            return false;
        };
        let result = peer.transport.on_dtls(now, from, bytes);
        peer.transmit_dtls();
        match result {
            Ok(event) => {
                self.on_peer_event(id, event, now);
                true
            }
            Err(e) if e.is_fatal() => {
                counters.webrtc_refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(shard = index, session = %format_args!("{id:016X}"), %from, "DTLS failed: {e}");
                self.end_webrtc(id, EndReason::DtlsClosed, "DTLS failed");
                false
            }
            Err(e) => {
                counters.webrtc_refused.fetch_add(1, Ordering::Relaxed);
                if !peer.refusal_logged {
                    peer.refusal_logged = true;
                    tracing::info!(shard = index, session = %format_args!("{id:016X}"), %from, "DTLS record refused: {e}");
                }
                false
            }
        }
    }

    /// Acts on what the transport reported: keyed SRTP starts the play (live sessions join
    /// at the latest keyframe, files at 0, as RTSP PLAY and Start do); a close ends it.
    fn on_peer_event(&mut self, id: SessionId, event: Option<PeerEvent>, now: Instant) {
        match event {
            Some(PeerEvent::Keyed(profile)) => {
                if let Some(&slot) = self.by_id.get(&id) {
                    self.rtc.handshakes.retain(|&h| h != slot);
                }
                tracing::info!(shard = self.index, session = %format_args!("{id:016X}"), ?profile, "WebRTC viewer keyed; playing");
                if self
                    .play(id, None, Some(0.0), PlayEnd::Media, PlayRate::NORMAL, now)
                    .is_some()
                {
                    self.start(id, now);
                }
            }
            Some(PeerEvent::Closed) => {
                self.end_webrtc(id, EndReason::DtlsClosed, "DTLS closed by the viewer")
            }
            Some(PeerEvent::Selected(_)) | None => {}
        }
    }

    /// Ends a WebRTC session on the shard's own account and tells the control thread.
    fn end_webrtc(&mut self, id: SessionId, reason: EndReason, why: &str) {
        if self.remove(id, why) {
            self.send_end(id, reason);
        }
    }

    /// DTLS retransmission (RFC 6347 §4.2.4) for sessions still in their handshake.
    fn run_dtls_timers(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.rtc.handshakes.len() {
            let slot = self.rtc.handshakes[k];
            k += 1;
            let Some(s) = self.rtc_session(slot) else {
                continue;
            };
            let id = s.id;
            let Some(peer) = s.webrtc.as_mut() else {
                continue;
            };
            if peer.transport.poll_timeout().is_none_or(|at| at > now) {
                continue;
            }
            let result = peer.transport.handle_timeout(now);
            peer.transmit_dtls();
            match result {
                Ok(event) => self.on_peer_event(id, event, now),
                Err(e) if e.is_fatal() => {
                    tracing::info!(shard = self.index, session = %format_args!("{id:016X}"), "DTLS failed: {e}");
                    self.end_webrtc(id, EndReason::DtlsClosed, "DTLS failed");
                    // The list changed under us: start over (rare; it is short).
                    k = 0;
                }
                Err(_) => {}
            }
        }
    }

    /// Ends the WebRTC sessions whose consent expired (RFC 7675 §5.1: 30 s without a valid
    /// check; before nomination, the setup timeout) or whose DTLS is closed.
    fn sweep_webrtc(&mut self, now: Instant) {
        // Allocates only when a session ends.
        let mut over: Vec<SessionId> = Vec::new();
        for s in self.sessions.iter().flatten() {
            if let Some(peer) = &s.webrtc {
                if peer.transport.is_over(now) {
                    over.push(s.id);
                }
            }
        }
        for id in over {
            self.end_webrtc(id, EndReason::ConsentExpired, "ICE consent expired");
        }
    }

    /// SRTCP from a nominated address: decrypted (RFC 3711 §3.4), then reduced-size
    /// feedback (RFC 5506 §3.1: a lone NACK or PLI) acted on, and report blocks digested into
    /// the statistics as an RTSP viewer's are.
    fn on_srtcp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        let Some(&slot) = self.rtc.by_peer.get(&from) else {
            return false;
        };
        let index = self.index;
        let stats = self.stats;
        let counters = self.counters.clone();
        let Some(s) = self.rtc_session(slot) else {
            return false;
        };
        let Some(peer) = s.webrtc.as_mut() else {
            return false;
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        let Some(copy) = buf.get_mut(..bytes.len()) else {
            return false;
        };
        copy.copy_from_slice(bytes);
        let len = match peer.transport.on_srtcp(from, copy) {
            Ok(n) => n.min(copy.len()),
            Err(e) => {
                counters.webrtc_refused.fetch_add(1, Ordering::Relaxed);
                if !peer.refusal_logged {
                    peer.refusal_logged = true;
                    tracing::info!(shard = index, session = %format_args!("{:016X}", s.id), %from, "SRTCP refused: {e}");
                }
                return false;
            }
        };
        let rtcp = &copy[..len];
        s.activity.touch(now);
        counters.webrtc_srtcp.fetch_add(1, Ordering::Relaxed);
        // Feedback first: reduced-size RTCP need not lead with a report (RFC 5506 §3.1).
        let mut pli_for = None;
        let mut fir = None;
        let mut nacked = 0u64;
        let mut seen = 0usize;
        let mut nacks = [(Ssrc(0), 0u16, 0u16); MAX_FEEDBACK];
        let mut nack_count = 0;
        let valid = visit_reduced_size(rtcp, |item| {
            let RtcpItem::Feedback(f) = item else {
                return;
            };
            seen += 1;
            if seen > MAX_FEEDBACK {
                return;
            }
            match f {
                Feedback::Nack { media, pid, blp } => {
                    nacked += nacked_sequences(pid, blp).count() as u64;
                    if let Some(n) = nacks.get_mut(nack_count) {
                        *n = (media, pid, blp);
                        nack_count += 1;
                    }
                }
                Feedback::PictureLoss { media } => pli_for = pli_for.or(Some(media)),
                Feedback::FullIntraRequest { media, seq } => fir = fir.or(Some((media, seq))),
            }
        });
        if let Err(e) = valid {
            counters.rtcp_invalid.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(shard = index, session = %format_args!("{:016X}", s.id), "SRTCP content dropped: {e}");
            return true;
        }
        if nacked > 0 {
            counters.webrtc_nacked.fetch_add(nacked, Ordering::Relaxed);
        }
        // RFC 5104 §4.3.1.1: a FIR repeating the last one's sequence number is a
        // retransmission of a request already honoured.
        let mut keyframe_for = pli_for;
        if let (Some((media, seq)), Some(peer)) = (fir, s.webrtc.as_mut()) {
            if peer.last_fir_seq != Some(seq) {
                peer.last_fir_seq = Some(seq);
                keyframe_for = keyframe_for.or(Some(media));
            }
        }
        // NACKs are served while playing (a live log's only while its bytes are readable).
        let serve = s.state == PlayState::Playing;
        if stats && matches!(rtcp.get(1), Some(&PT_SR | &PT_RR)) {
            let arrival = NtpTime::from_system_time(std::time::SystemTime::now());
            if let Ok(summary) = digest_rtcp_into(
                rtcp,
                &s.track_keys,
                arrival,
                &mut s.receptions,
                &mut s.viewer_ssrcs,
            ) {
                if summary.unknown_ssrc_blocks > 0 {
                    counters
                        .rtcp_unknown_ssrc
                        .fetch_add(u64::from(summary.unknown_ssrc_blocks), Ordering::Relaxed);
                }
            }
        }
        if nack_count > 0 {
            self.serve_nacks(slot, &nacks[..nack_count], serve);
        }
        let Some(s) = self.rtc_session(slot) else {
            return true;
        };
        let wants_keyframe = keyframe_for
            .and_then(|m| s.track_keys.iter().position(|k| k.ssrc == m))
            .is_some_and(|i| i < s.tracks.len() && s.track(i).kind == TrackKind::Video);
        if wants_keyframe {
            let id = s.id;
            let honoured = s.state == PlayState::Playing
                && s.webrtc
                    .as_mut()
                    .is_some_and(|p| p.take_keyframe_request(now));
            if honoured {
                counters
                    .webrtc_keyframe_requests
                    .fetch_add(1, Ordering::Relaxed);
                self.rejoin_at_keyframe(id, now);
            } else {
                counters
                    .webrtc_keyframe_requests_ignored
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    /// Generic NACKs (RFC 4585 §6.2.1) from session `slot`: each packet still in its
    /// history — the shard's ring of a live stream's track, or the session's own — is
    /// protected and sent again at once; the others are counted as missed (all of them when
    /// `serve` is false). A live log's packet is re-sent only while its sample's bytes are
    /// readable: the log is pinned for the lookups and the send as a pass pins it
    /// (`live_log`), and a packet whose sample lies below the pin may have been overwritten
    /// by the writer, so it is missed. Runs between passes (from the port's drain), never
    /// inside one: the pin here is the shard's only one.
    fn serve_nacks(&mut self, slot: usize, nacks: &[(Ssrc, u16, u16)], serve: bool) {
        let Some(s) = self.sessions.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let Some(peer) = &s.webrtc else {
            return;
        };
        let log = s.log.as_ref().filter(|_| serve);
        let readable = log.map_or(0, |log| log.pin(self.index));
        let (mut served, mut missed) = (0u64, 0u64);
        for &(media, pid, blp) in nacks {
            let track = s.tracks.iter().position(|t| t.setup.ssrc == media);
            for seq in nacked_sequences(pid, blp) {
                let sent = track.filter(|_| serve).and_then(|i| {
                    let sent = match s.tracks[i].live_stream {
                        Some(id) => self.rtc.histories.lookup(id, seq),
                        None => peer.history.lookup(i, seq),
                    }?;
                    // Bytes at or above the pin stay as they are until it is cleared.
                    (log.is_none() || sent.log_pos >= readable).then_some((i, sent))
                });
                match sent {
                    Some((i, sent)) => {
                        self.rtc.pending.push(PendingPacket {
                            packet: sent.packet,
                            slot: slot as u32,
                            track: i as u16,
                            sealed: None,
                        });
                        served += 1;
                    }
                    None => missed += 1,
                }
            }
        }
        let log = log.cloned();
        self.counters
            .webrtc_nacks_served
            .fetch_add(served, Ordering::Relaxed);
        self.counters
            .webrtc_nacks_missed
            .fetch_add(missed, Ordering::Relaxed);
        self.flush_webrtc();
        if let Some(log) = log {
            log.unpin(self.index);
        }
    }

    /// A keyframe request (RFC 4585 §6.3.1 PLI, RFC 5104 §4.3.1 FIR): a live viewer's next
    /// sample becomes the latest keyframe (the channel and the log keep it); a file viewer
    /// goes back to the sync sample at or before its position, every track with it. The
    /// file's RTP timestamps go on from where they were (the rewound media is re-stamped
    /// forward by the time rewound: each track's timestamp base moves by it), so the
    /// browser's jitter buffer sees time advance, as it would on a live stream.
    fn rejoin_at_keyframe(&mut self, id: SessionId, now: Instant) {
        let Some(&slot) = self.by_id.get(&id) else {
            return;
        };
        let Some(s) = self.sessions[slot].as_ref() else {
            return;
        };
        let file = s.live.is_none() && s.log.is_none();
        let (at, media_now) = if file {
            let p = s.position_secs();
            (
                Some(if p.is_finite() { p } else { 0.0 }),
                s.media_secs_at(now),
            )
        } else {
            (None, 0.0)
        };
        let Some(started) = self.play(id, None, at, PlayEnd::Keep, PlayRate::NORMAL, now) else {
            return;
        };
        if file {
            let rewound_secs = (media_now - started.start_npt_secs).max(0.0);
            if let Some(s) = self.sessions[slot].as_mut() {
                for t in &mut s.tracks {
                    let ticks = (rewound_secs * f64::from(t.clock_rate_hz)).round() as i64;
                    t.setup.initial_rtptime = t.setup.initial_rtptime.wrapping_add(ticks as u32);
                }
            }
        }
        self.start(id, now);
    }

    /// Protects the pass's WebRTC packets with each viewer's SRTP sender into the slab,
    /// [`MAX_BATCH`] at a time, and sends each window in one batch on the WebRTC socket
    /// (the same GSO trains as RTSP: a frame's packets to one viewer are equal-sized).
    /// Packets of a session with no keys or no nominated address are dropped (counted as
    /// refused). Allocates nothing.
    pub(super) fn flush_webrtc(&mut self) {
        if self.rtc.pending.is_empty() {
            return;
        }
        let Some(udp) = self.rtc.sender.as_mut() else {
            self.rtc.pending.clear();
            return;
        };
        let sessions = &mut self.sessions;
        let slab = &mut self.rtc.slab;
        let counters = &self.counters;
        let mut from = 0;
        while from < self.rtc.pending.len() {
            let window = &self.rtc.pending[from..(from + MAX_BATCH).min(self.rtc.pending.len())];
            from += window.len();
            // (slot, protected length) of each packet in the slab, in order.
            let mut made = [(0u32, 0usize); MAX_BATCH];
            let mut n = 0;
            let mut bytes = 0u64;
            for p in window {
                let Some(s) = sessions.get_mut(p.slot as usize).and_then(Option::as_mut) else {
                    continue;
                };
                let i = usize::from(p.track);
                let ShardSession {
                    tracks,
                    media,
                    webrtc,
                    ..
                } = s;
                let (Some(peer), Some(t)) = (webrtc.as_mut(), tracks.get(i)) else {
                    continue;
                };
                let file = t.setup.source.as_ref().unwrap_or(media);
                let Some(track) = file.index.tracks.get(t.setup.track_index) else {
                    continue;
                };
                let body = body_slices(
                    &p.packet.spec,
                    file.bytes.as_slice(),
                    t.packetizer.parameter_sets(),
                    &track.samples,
                );
                let (Some(body), Some(_), Some(sender)) =
                    (body, peer.dest.as_ref(), peer.transport.sender())
                else {
                    counters.webrtc_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let out = &mut slab[n * SRTP_SLOT..(n + 1) * SRTP_SLOT];
                match sender.protect_rtp(p.packet.header(), body.as_slices(), out) {
                    Ok(len) => {
                        made[n] = (p.slot, len);
                        n += 1;
                        bytes += len as u64;
                    }
                    Err(_) => {
                        counters.webrtc_refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if n == 0 {
                continue;
            }
            let sessions = &*sessions;
            let slab = &*slab;
            let empty: &[&[u8]] = &[];
            let outcome = udp.send_batch(n, |k| {
                let (slot, len) = made[k];
                let dest = sessions[slot as usize]
                    .as_ref()
                    .and_then(|s| s.webrtc.as_ref())
                    .and_then(|p| p.dest.as_ref())
                    .expect("protected only for sessions with a nominated address");
                GatherMsg::new(&slab[k * SRTP_SLOT..k * SRTP_SLOT + len], empty, dest)
            });
            counters
                .packets
                .fetch_add(outcome.sent as u64, Ordering::Relaxed);
            counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            counters
                .syscalls
                .fetch_add(outcome.syscalls as u64, Ordering::Relaxed);
            counters
                .gso_sends
                .fetch_add(outcome.gso_sends as u64, Ordering::Relaxed);
            counters
                .gso_segments
                .fetch_add(outcome.gso_segments as u64, Ordering::Relaxed);
            if outcome.failed > 0 {
                counters
                    .send_errors
                    .fetch_add(outcome.failed as u64, Ordering::Relaxed);
            }
        }
        self.rtc.pending.clear();
    }
}

#[cfg(test)]
impl Worker {
    /// The nominated addresses the shard routes WebRTC datagrams by.
    pub(super) fn rtc_peers(&self) -> Vec<SocketAddr> {
        self.rtc.by_peer.keys().copied().collect()
    }

    /// The SRTP profile of session `id`, once keyed.
    pub(super) fn rtc_profile(
        &mut self,
        id: SessionId,
    ) -> Option<crate::webrtc::srtp::SrtpProfile> {
        let slot = *self.by_id.get(&id)?;
        let peer = self.sessions[slot].as_mut()?.webrtc.as_mut()?;
        Some(peer.transport.sender()?.profile())
    }

    /// The latest report block about session `id`'s first track.
    pub(super) fn rtc_reception(&self, id: SessionId) -> Option<crate::stats::TrackReception> {
        let slot = *self.by_id.get(&id)?;
        self.sessions[slot].as_ref()?.receptions[0]
    }
}
