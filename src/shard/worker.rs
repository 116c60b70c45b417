//! The shard thread's loop: commands in, due packets out, RTCP in, statistics out.
//!
//! Each tick: (1) apply queued commands, (2) pop every (session, track) whose next sample is
//! due, packetize it into the reusable `pending` array (RTP header written in place, body a
//! range of the mapping; a live channel's sample is packetized once per shard and its header
//! slabs copied for each viewer, see `live_cache`), (3) send the array with one batched call
//! per [`MAX_BATCH`] packets,
//! recording each sample's pacing lateness, (4) drain arriving RTCP (liveness, then report
//! blocks and BYE, RFC 3550 §6.4 and §6.6) and the WebRTC port (STUN, DTLS, SRTCP of WHEP
//! viewers, `worker::webrtc`), (5) once per [`REPORT_INTERVAL`] hand the control
//! thread a [`ShardReport`], (6) sleep on the command channel until the next due time.
//! Steady state allocates nothing per packet: `pending`, the timer wheel, the send scratch and the
//! lateness histogram are sized at start and reused, a live stream's packet ring when its
//! first viewer on the shard arrives. The report allocates once a second.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use hdrhistogram::Histogram;

use super::hls::{HlsService, SharedHlsContext};
use super::live_cache::{LiveCache, SampleRequest, StreamKey, WirePacket};
use super::send::{GatherMsg, SendConfig, UdpSender, MAX_BATCH};
use super::session::{PlayState, ShardSession, SENDER_REPORT_INTERVAL};
use super::tcp::batch::{BodyRef, ConnWrite, FrameBodies, TcpBatch};
use super::tcp::{TcpSink, MAX_BACKLOG_BYTES};
use super::timer_wheel::TimerWheel;
use super::webrtc::{StreamHistories, WebRtcPort};
use super::{PlayEnd, PlayRate, PlayStarted, SessionId, ShardCommand, ShardCounters};
use crate::live_log::{LiveLog, LogState, Lookup};
use crate::packetize::{body_slices, BodySlices, PacketSpec};
use crate::poll::{Epoll, Ready, Waker, EPOLL_MAX_EVENTS};
use crate::stats::window::micros_histogram;
use crate::stats::{
    digest_rtcp_into, EndReason, SessionDelta, ShardEvent, ShardReport, REPORT_INTERVAL,
};
use crate::sys::errqueue::{enable_recverr, take_error, QueuedError};
use crate::sys::recv::{enable_rx_timestamps, RecvBatch};
use crate::wire::ntp::NtpTime;
use crate::wire::rtcp::{write_bye, write_sender_report, SenderInfo, MAX_RTCP_COMPOUND};
use crate::wire::rtp::RTP_HEADER_LEN;
use emit::{deliver, emit_sample, Outputs, SrtpOut};
use logs::{emit_log_sample, WatchedLog};
use rtcp::{send_byes, send_sender_report};
use webrtc::WebRtcShard;

/// The epoll token of the shard's waker.
const WAKER_TOKEN: u64 = 0;
/// The epoll token of the shard's RTP and RTCP ports (RTCP in, ICMP errors).
const UDP_PORTS_TOKEN: u64 = u64::MAX;
/// The epoll token of the shard's WebRTC port (`shard::webrtc`).
const WEBRTC_TOKEN: u64 = u64::MAX - 1;
/// Longest sleep between ticks when nothing is due (bounds RTCP draining latency).
const IDLE_WAKE: Duration = Duration::from_millis(50);
/// How early a packet may leave: a tick sends everything due before `now + SEND_AHEAD`,
/// rounded up to the end of the timer wheel's ~1 ms slot. Players buffer far more than
/// this; it bounds wake-ups to one per `SEND_AHEAD`.
pub(super) const SEND_AHEAD: Duration = Duration::from_millis(2);
/// How early another track's next sample may join a TCP viewer's write: when a visit sends
/// one track of an interleaved session, each of the session's other interleaved tracks adds
/// its next sample to the same write if it is due within this. Audio then rides with video
/// instead of costing a write of its own (the kernel's TCP path costs per write, not per
/// byte: bench/tcp_send_floor measured 731 ns per packet at 7 packets per write, 529 at 16).
/// One sample, never more, and a track's own samples keep their 2 ms pacing: sending two
/// video frames together (a 40 ms look-ahead measured 12.8 packets per write and 0.69× the
/// CPU) made GStreamer's jitter buffer misplace B-frame timestamps ("decreasing timestamp"
/// warnings from avdec_h264 over TCP, tests/tcp_interleaved.rs).
pub(super) const TCP_PULL_AHEAD: Duration = Duration::from_millis(20);
/// How long after a stream's last packet its BYE goes out (RFC 3550 §6.6 sets no time).
/// Sent at once, the BYE (on the RTCP port) can be read before the last RTP packets still
/// queued on the other port: ffmpeg over UDP then ends the stream without them — a whole
/// aggregated AAC packet of frames (measured: 465 of 470 decoded; with this delay, 470).
const BYE_DELAY: Duration = Duration::from_millis(200);
/// [`Due::track`] of the queue entry that sends an ended session's BYE.
const BYE_TRACK: u16 = u16::MAX;
/// Longest a `send_due` pass works before the loop applies commands and drains RTCP; what
/// is left stays queued, still due, and the next pass follows without sleeping. Unbounded,
/// a saturated shard ran passes as long as its backlog (hundreds of ms) while every PLAY
/// waited in the command queue: the bench's 64 handshakes in flight then completed ~450
/// a second instead of the 1,000 its ramp asked for.
const PASS_WORK_LIMIT: Duration = Duration::from_millis(2);
/// Samples one (session, track) may send per visit before yielding to others.
const SAMPLES_PER_VISIT: usize = 8;
/// Packets reserved for one tick; a tick that needs more grows the vector once.
const PENDING_CAPACITY: usize = 4096;
/// TCP frames a pass gathers before it writes them (then checks [`PASS_WORK_LIMIT`]): a
/// write costs ~10 µs per connection on loopback, so a pass over many viewers writes in
/// steps it can stop between, as UDP sends in windows. Checked after a track's visit, so a
/// visit's packets are never split between writes. At 2 Mbit/s a viewer's write is ~7
/// frames (a video frame, and the audio packet due with it): ~35 viewers per write step.
const TCP_WRITE_EVERY: usize = 256;
/// Payload bytes of one live-log sample an interleaved viewer is handed per visit. A sample
/// larger than this (an ingested keyframe may be 16 MiB, `ingest::MAX_ACCESS_UNIT`) goes out
/// in slices, the next one only once the viewer's backlog is back under a slice: whole, it
/// overflowed [`MAX_BACKLOG_BYTES`] at once and cut off a viewer that read as fast as
/// loopback allows (tests/ingest_faults.rs, an 8 MB NAL). Memory stays bounded by the
/// backlog limit; a viewer that stops reading waits at a slice boundary instead of growing it.
pub(super) const TCP_SLICE_BYTES: usize = MAX_BACKLOG_BYTES / 4;
/// When a sliced sample's next slice is tried again (one timer-wheel slot).
const TCP_SLICE_RETRY: Duration = Duration::from_millis(1);
/// Longest a sliced sample waits for its viewer's backlog to drain before the viewer is cut
/// off as too slow, as an overflowing backlog is (the backlog holds ~2 s at 2 Mbit/s).
pub(super) const TCP_SLICE_STALL: Duration = Duration::from_secs(2);
/// RTCP datagrams drained per tick and socket (one `recvmmsg`): a flood from one address
/// costs at most this much work per tick and the rest is dropped by the kernel, so it cannot
/// starve sending.
const RTCP_DRAIN_PER_TICK: usize = 64;

/// A queue entry: stream `track` of session `slot` (the due time is the wheel's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    slot: u32,
    track: u16,
    generation: u32,
}

/// A packet waiting for the batched send: its header slab and body range (a live viewer's
/// copied from the shard's shared packetization) and whose track it goes to.
#[derive(Debug, Clone, Copy)]
struct PendingPacket {
    packet: WirePacket,
    slot: u32,
    track: u16,
    /// An SRTP track's packet, protected at delivery: its (offset, length) in the worker's
    /// `sealed` arena, sent instead of `packet`'s header and body.
    sealed: Option<(u32, u32)>,
}

/// The shard's channels with the control thread.
pub(super) struct Links {
    /// Commands in.
    pub(super) commands: Receiver<ShardCommand>,
    /// Reports and session ends out (bounded; only ever `try_send`).
    pub(super) events: Sender<ShardEvent>,
    /// Written by the control thread after each command it queues.
    pub(super) waker: Arc<Waker>,
    /// The shard's epoll set, the waker registered as [`WAKER_TOKEN`].
    pub(super) epoll: Epoll,
    /// The shard's HLS listener and what it serves, when HLS is on.
    pub(super) hls: Option<(std::net::TcpListener, SharedHlsContext)>,
    /// The shard's WebRTC socket (bound, non-blocking), when WebRTC is on.
    pub(super) webrtc: Option<UdpSocket>,
}

impl Links {
    /// The links of a new shard: its epoll set is created here and watches `waker`.
    pub(super) fn new(
        commands: Receiver<ShardCommand>,
        events: Sender<ShardEvent>,
        waker: Arc<Waker>,
    ) -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.add(waker.fd(), WAKER_TOKEN)?;
        Ok(Self {
            commands,
            events,
            waker,
            epoll,
            hls: None,
            webrtc: None,
        })
    }
}

/// The clock of one `send_due` pass: `now` is the pass's time (simulated in tests), `started`
/// the real instant it began, so `now + started.elapsed()` is when a later send happens.
#[derive(Debug, Clone, Copy)]
struct TickClock {
    now: Instant,
    started: Instant,
}

impl TickClock {
    fn sent_at(self) -> Instant {
        self.now + self.started.elapsed()
    }
}

/// The state a shard thread owns.
pub(super) struct Worker {
    index: usize,
    udp: UdpSender,
    rtcp: UdpSocket,
    commands: Receiver<ShardCommand>,
    events: Sender<ShardEvent>,
    /// What the shard sleeps on: its waker (token [`WAKER_TOKEN`]) and its HTTP sockets.
    epoll: Epoll,
    waker: Arc<Waker>,
    /// Readiness scratch for one wait.
    ready: Vec<Ready>,
    /// HLS connections and their requests (`shard::hls`), when HLS is on.
    hls: Option<HlsService>,
    /// epoll reported one of the UDP ports readable (RTCP, keep-alives) or in error.
    rtcp_ready: bool,
    /// The WebRTC port (STUN, DTLS, SRTP for this shard's WebRTC sessions), when on.
    webrtc: Option<WebRtcPort>,
    /// epoll reported the WebRTC port readable.
    webrtc_ready: bool,
    /// WebRTC sessions' state on the shard: media sender, peer maps, handshake timers.
    rtc: WebRtcShard,
    /// When the UDP ports are drained even without readiness.
    next_rtcp_drain: Instant,
    /// When the WebRTC port is drained (and its timers run) even without readiness.
    next_webrtc_drain: Instant,
    /// Session ends the event queue had no room for, retried every tick. Bounded: a session
    /// ends once, so this never holds more entries than sessions that ended.
    undelivered_ends: Vec<(SessionId, EndReason)>,
    counters: Arc<ShardCounters>,
    /// `--stats`: lateness recording, RTCP digest and reports (arrival is liveness either way).
    stats: bool,
    /// Pacing lateness in µs since the last report (fixed bounds: recording never allocates).
    lateness: Histogram<u64>,
    /// Due time and UDP packet count of each sample in `pending`, in order.
    pending_dues: Vec<(Instant, u32)>,
    /// The pass's TCP frames, per connection (written at the end of the pass, or after
    /// every [`TCP_WRITE_EVERY`] frames).
    tcp: TcpBatch,
    /// Sessions the last TCP write found too slow or gone.
    tcp_cut: Vec<u32>,
    next_report: Instant,
    sessions: Vec<Option<ShardSession>>,
    free_slots: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    by_peer: HashMap<SocketAddr, usize>,
    /// One entry per playing track (and per BYE to send), by due time.
    queue: TimerWheel<Due>,
    pending: Vec<PendingPacket>,
    /// The pass's SRTP packets of RTSPS viewers, protected at delivery (one copy per viewer
    /// and packet, which encryption makes unavoidable), sent from here at the flush; grows
    /// to the largest pass and is reused.
    sealed: Vec<u8>,
    /// Live samples packetized once for every viewer of their channel on this shard.
    live: LiveCache,
    /// Live logs watched by this shard's sessions.
    logs: Vec<WatchedLog>,
    rtcp_buf: [u8; MAX_RTCP_COMPOUND],
    /// `recvmmsg` buffers for RTCP, with kernel arrival times and source addresses.
    recv: RecvBatch,
    running: bool,
}

impl Worker {
    pub(super) fn new(
        index: usize,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        links: Links,
        counters: Arc<ShardCounters>,
        send: SendConfig,
        stats: bool,
    ) -> Self {
        // ICMP errors for datagrams we send are queued on the socket, so a closed viewer port
        // is noticed (drain_unreachable) instead of being streamed to until the timeout.
        if let Err(e) = enable_recverr(&rtp) {
            tracing::warn!(
                shard = index,
                "IP_RECVERR: {e}; closed viewer ports go unnoticed"
            );
        }
        // Sends block when the kernel buffer is full: back-pressure instead of loss.
        if let Err(e) = rtp.set_nonblocking(false) {
            tracing::warn!(shard = index, "rtp socket mode: {e}");
        }
        if stats {
            // Kernel arrival times make round trips exact: an RTCP packet may wait in the
            // socket for up to one tick before it is read.
            for socket in [&rtp, &rtcp] {
                if let Err(e) = enable_rx_timestamps(socket.as_raw_fd()) {
                    tracing::warn!(
                        shard = index,
                        "SO_TIMESTAMPNS: {e}; RTT includes time queued in the socket"
                    );
                }
            }
        }
        for socket in [&rtp, &rtcp] {
            if let Err(e) = links.epoll.add(socket, UDP_PORTS_TOKEN) {
                // Drained every IDLE_WAKE all the same.
                tracing::warn!(shard = index, "epoll for a UDP port: {e}");
            }
        }
        let (webrtc, rtc) = match links.webrtc {
            Some(socket) => match WebRtcShard::new(&socket, send, index) {
                Ok(rtc) => (Some(WebRtcPort::new(socket)), rtc),
                Err(e) => {
                    tracing::error!(
                        shard = index,
                        "WebRTC socket: {e}; this shard serves no WebRTC"
                    );
                    (None, WebRtcShard::off())
                }
            },
            None => (None, WebRtcShard::off()),
        };
        if let Some(port) = &webrtc {
            if let Err(e) = links.epoll.add(port.socket(), WEBRTC_TOKEN) {
                // Drained every IDLE_WAKE all the same.
                tracing::warn!(shard = index, "epoll for the WebRTC port: {e}");
            }
        }
        let udp = UdpSender::new(rtp, send, index);
        counters.set_send_path(udp.backend(), udp.gso_enabled());
        let hls = links.hls.and_then(|(listener, context)| {
            HlsService::new(
                index,
                listener,
                context,
                counters.clone(),
                &links.epoll,
                Instant::now(),
            )
            .map_err(|e| {
                tracing::error!(shard = index, "HLS listener: {e}; this shard serves no HLS")
            })
            .ok()
        });
        Self {
            index,
            udp,
            rtcp,
            commands: links.commands,
            events: links.events,
            epoll: links.epoll,
            waker: links.waker,
            ready: Vec::with_capacity(EPOLL_MAX_EVENTS),
            hls,
            rtcp_ready: true,
            webrtc,
            webrtc_ready: true,
            rtc,
            next_rtcp_drain: Instant::now(),
            next_webrtc_drain: Instant::now(),
            undelivered_ends: Vec::new(),
            counters,
            stats,
            lateness: micros_histogram(),
            pending_dues: Vec::with_capacity(PENDING_CAPACITY),
            tcp: TcpBatch::with_capacity(PENDING_CAPACITY),
            tcp_cut: Vec::new(),
            next_report: Instant::now() + REPORT_INTERVAL,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            by_id: HashMap::new(),
            by_peer: HashMap::new(),
            queue: TimerWheel::new(Instant::now(), 1024),
            pending: Vec::with_capacity(PENDING_CAPACITY),
            sealed: Vec::new(),
            live: LiveCache::default(),
            logs: Vec::new(),
            rtcp_buf: [0; MAX_RTCP_COMPOUND],
            recv: RecvBatch::new(RTCP_DRAIN_PER_TICK),
            running: true,
        }
    }

    /// Runs until [`ShardCommand::Shutdown`] or the control thread goes away.
    pub(super) fn run(mut self) {
        while self.running {
            let now = Instant::now();
            self.send_due(now);
            // The ports are drained when epoll says they hold something (or an ICMP error),
            // and at least every IDLE_WAKE: not on every wake, which HLS requests make
            // frequent (two `recvmmsg` calls that find nothing, per request).
            if self.rtcp_ready || now >= self.next_rtcp_drain {
                self.rtcp_ready = false;
                self.next_rtcp_drain = now + IDLE_WAKE;
                self.drain_rtcp(now);
            }
            // Its own clock: DTLS retransmissions and the consent sweep run without traffic.
            if self.webrtc_ready || now >= self.next_webrtc_drain {
                self.webrtc_ready = false;
                self.next_webrtc_drain = now + IDLE_WAKE;
                self.drain_webrtc(now);
            }
            self.deliver_undelivered_ends();
            if self.stats && now >= self.next_report {
                self.next_report = now + REPORT_INTERVAL;
                self.report();
            }
            let mut deadline = match self.queue.next_wake() {
                Some(at) => at.min(now + IDLE_WAKE),
                None => now + IDLE_WAKE,
            };
            if let Some(hls) = &self.hls {
                deadline = deadline.min(hls.next_deadline());
            }
            // Sleep in the kernel until the next due time, a command (the control thread
            // writes our waker after queueing one) or a socket we serve. Not crossbeam's
            // `recv_deadline`: it spins with `sched_yield` before blocking, which cost ~5
            // syscalls per tick under load.
            let wait = if self.commands.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            self.wait(wait);
            self.poll_logs();
            loop {
                match self.commands.try_recv() {
                    Ok(cmd) => self.apply(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.running = false;
                        break;
                    }
                }
            }
        }
        let ids: Vec<SessionId> = self.by_id.keys().copied().collect();
        for id in ids {
            self.remove(id, "shutdown");
        }
    }

    /// Waits up to `timeout` for the waker or a socket and handles what is ready.
    fn wait(&mut self, timeout: Duration) {
        self.ready.clear();
        if let Err(e) = self.epoll.wait_events(timeout, &mut self.ready) {
            tracing::warn!(shard = self.index, "epoll_wait: {e}");
            std::thread::sleep(timeout.min(IDLE_WAKE));
            return;
        }
        let now = Instant::now();
        for k in 0..self.ready.len() {
            let ready = self.ready[k];
            if ready.token == WAKER_TOKEN {
                self.waker.reset();
            } else if ready.token == UDP_PORTS_TOKEN {
                self.rtcp_ready = true;
            } else if ready.token == WEBRTC_TOKEN {
                self.webrtc_ready = true;
            } else if let Some(hls) = self.hls.as_mut() {
                hls.on_ready(&self.epoll, ready, now);
            }
        }
        if let Some(hls) = self.hls.as_mut() {
            hls.on_timers(&self.epoll, now);
        }
    }

    fn apply(&mut self, cmd: ShardCommand) {
        let now = Instant::now();
        match cmd {
            ShardCommand::Play {
                id,
                setup,
                start_npt_secs,
                end,
                rate,
                reply,
            } => {
                let started = self.play(id, setup, start_npt_secs, end, rate, now);
                let _ = reply.send(started);
            }
            ShardCommand::Pause { id, reply } => {
                let pos = self.by_id.get(&id).and_then(|&slot| {
                    let s = self.sessions[slot].as_mut()?;
                    let pos = s.position_secs();
                    s.generation = s.generation.wrapping_add(1);
                    if s.state == PlayState::Playing {
                        s.state = PlayState::Paused;
                    }
                    Some(if pos.is_finite() {
                        pos
                    } else {
                        s.media.duration().as_secs_f64()
                    })
                });
                let _ = reply.send(pos);
            }
            ShardCommand::Start { id } => self.start(id, now),
            ShardCommand::Teardown { id } => {
                self.remove(id, "teardown");
            }
            ShardCommand::StartWebRtc(start) => self.start_webrtc(*start, now),
            ShardCommand::Shutdown => self.running = false,
        }
    }

    fn play(
        &mut self,
        id: SessionId,
        setup: Option<Box<super::SessionSetup>>,
        start_npt_secs: Option<f64>,
        end: PlayEnd,
        rate: PlayRate,
        now: Instant,
    ) -> Option<PlayStarted> {
        if let Some(setup) = setup {
            if !self.by_id.contains_key(&id) {
                let mut session = match ShardSession::new(*setup, now) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(shard = self.index, session = %format_args!("{id:016X}"), "cannot stream: {e}");
                        return None;
                    }
                };
                self.attach_live(&mut session);
                self.watch_log(&session, true);
                if let Some(sink) = &session.sink {
                    let secs = session.media.duration().as_secs_f64();
                    let rate = session.media.bytes.as_slice().len() as f64 / secs.max(1.0);
                    if let Err(e) = sink.size_for_media(rate) {
                        tracing::debug!(shard = self.index, "TCP_NOTSENT_LOWAT: {e}");
                    }
                }
                let slot = self.free_slots.pop().unwrap_or_else(|| {
                    self.sessions.push(None);
                    self.sessions.len() - 1
                });
                for t in &session.tracks {
                    if let super::TrackDest::Udp { rtp, rtcp } = t.setup.dest {
                        self.by_peer.insert(rtp, slot);
                        self.by_peer.insert(rtcp, slot);
                    }
                }
                self.sessions[slot] = Some(session);
                self.by_id.insert(id, slot);
                self.counters.sessions.fetch_add(1, Ordering::Relaxed);
            }
        }
        let slot = *self.by_id.get(&id)?;
        let s = self.sessions[slot].as_mut()?;
        let start = match start_npt_secs {
            _ if s.live.is_some() => {
                s.join_live(now);
                0.0
            }
            _ if s.log.is_some() => {
                s.join_log(self.index);
                0.0
            }
            Some(t) => s.seek(t),
            // Played to the end of the range: resume there (a new end may extend it).
            None if s.all_tracks_done() => s.end_secs(),
            None => {
                let p = s.position_secs();
                if p.is_finite() {
                    p
                } else {
                    0.0
                }
            }
        };
        s.set_rate(rate);
        let start = if s.rate.keyframes_only() && start_npt_secs.is_none() {
            // Resuming into fast or backward play: from the keyframe at or before the
            // position (the only frames it sends).
            s.seek(start)
        } else {
            start
        };
        let end = if s.rate.reverse() {
            s.set_floor(end)
        } else {
            s.set_end(end, start)
        };
        s.play_start = now;
        s.play_start_npt = start;
        // Primed: stale queue entries die with the old generation; `Start` begins sending.
        s.generation = s.generation.wrapping_add(1);
        s.state = PlayState::Paused;
        Some(PlayStarted {
            start_npt_secs: start,
            end_npt_secs: end,
            tracks: s.track_starts(),
        })
    }

    /// Attaches a live session's tracks to the shard's shared packetization of their channel
    /// (only when it plays the channel's own mapping, which the cached body ranges index).
    /// A track that cannot attach packetizes for itself, as VOD tracks do.
    fn attach_live(&mut self, session: &mut ShardSession) {
        if let Some(log) = session.log.clone() {
            for t in &mut session.tracks {
                let key = StreamKey::of_log(&log, &t.setup, t.packetizer.payload_budget());
                match self.live.attach(key) {
                    Ok(id) => t.live_stream = Some(id),
                    Err(e) => {
                        tracing::warn!(shard = self.index, stream = %log.name(), track = t.setup.track_index, "no shared packetization: {e}");
                    }
                }
            }
            return;
        }
        let Some(ch) = session.live.clone() else {
            return;
        };
        if !Arc::ptr_eq(&ch.media, &session.media) {
            return;
        }
        // A track from another file (a WebRTC viewer's Opus rendition) is not the channel's:
        // it packetizes for itself.
        for t in session
            .tracks
            .iter_mut()
            .filter(|t| t.setup.source.is_none())
        {
            let key = StreamKey::of(&ch, &t.setup, t.packetizer.payload_budget());
            match self.live.attach(key) {
                Ok(id) => t.live_stream = Some(id),
                Err(e) => {
                    tracing::warn!(shard = self.index, channel = %ch.name, track = t.setup.track_index, "no shared packetization: {e}");
                }
            }
        }
    }

    /// Begins sending a primed session: media time `play_start_npt` is due now.
    fn start(&mut self, id: SessionId, now: Instant) {
        let Some(&slot) = self.by_id.get(&id) else {
            return;
        };
        let Some(s) = self.sessions[slot].as_mut() else {
            return;
        };
        if s.state == PlayState::Playing {
            return;
        }
        s.play_start = now;
        s.generation = s.generation.wrapping_add(1);
        s.state = PlayState::Playing;
        for i in 0..s.tracks.len() {
            // A sender report right away gives players the RTP↔NTP mapping before media
            // (RFC 3550 §6.4.1), which A/V sync in ffmpeg and GStreamer relies on.
            s.tracks[i].last_sender_report = None;
            let due = Due {
                slot: slot as u32,
                track: i as u16,
                generation: s.generation,
            };
            match s.due(i, s.tracks[i].next_sample) {
                Some(at) => self.queue.push(at, due),
                None => {
                    if let Some(log) = &s.log {
                        if let Some(w) = self.logs.iter_mut().find(|w| Arc::ptr_eq(&w.log, log)) {
                            w.waiting.push(due);
                        }
                    }
                }
            }
        }
    }

    /// Sends what is due by `now`, stopping after [`PASS_WORK_LIMIT`] of work (the rest stays
    /// queued for the next pass).
    fn send_due(&mut self, now: Instant) {
        let clock = TickClock {
            now,
            started: Instant::now(),
        };
        // Everything due within SEND_AHEAD leaves in this tick: one wake-up per SEND_AHEAD
        // at most, however the viewers' frame times interleave, so the per-tick cost (the
        // wait, the RTCP drain) is shared by many packets and GSO/batches fill up.
        // The wheel drains whole ~1 ms slots: compare due times with the bound it uses, so
        // a track re-queued past it is not popped again in this tick.
        for w in &mut self.logs {
            w.readable = w.log.pin(self.index);
        }
        let horizon = self.queue.horizon(now + SEND_AHEAD);
        let pull_horizon = horizon.max(now + TCP_PULL_AHEAD);
        let mut to_cut: Vec<SessionId> = Vec::new();
        while let Some((_, due)) = self.queue.pop_until(horizon) {
            let slot = due.slot as usize;
            let Some(s) = self.sessions.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if due.track == BYE_TRACK {
                if s.generation == due.generation && s.state == PlayState::Ended {
                    send_byes(s, &self.rtcp, &mut self.rtcp_buf);
                    tracing::info!(shard = self.index, session = %format_args!("{:016X}", s.id), "end of stream");
                    // Once per session end, not per packet: the control thread tells RTSP
                    // 2.0 viewers (PLAY_NOTIFY, RFC 7826 §13.5). Best effort: a full
                    // queue drops it (the BYE has said it on the media path).
                    let tracks = s
                        .tracks
                        .iter()
                        .map(|t| (t.setup.track_index, t.seq.0.wrapping_sub(1)))
                        .collect();
                    let _ = self
                        .events
                        .try_send(ShardEvent::EndOfStream { id: s.id, tracks });
                }
                continue;
            }
            if s.generation != due.generation || s.state != PlayState::Playing {
                continue;
            }
            let i = due.track as usize;
            let interleaved = s.tracks[i].is_interleaved();
            let watched = s
                .log
                .as_ref()
                .and_then(|log| self.logs.iter_mut().find(|w| Arc::ptr_eq(&w.log, log)));
            let log_readable = watched.as_ref().map_or(0, |w| w.readable);
            let mut waiting = watched.map(|w| &mut w.waiting);
            let mut out = Outputs {
                log_readable,
                due: now,
                pending: &mut self.pending,
                srtp: SrtpOut {
                    pending: &mut self.rtc.pending,
                    histories: &mut self.rtc.histories,
                    log_pos: 0,
                    sealed: &mut self.sealed,
                },
                tcp: &mut self.tcp,
                live: &mut self.live,
                rtcp: &self.rtcp,
                rtcp_buf: &mut self.rtcp_buf,
                counters: &self.counters,
            };
            // Exactly one queue entry per playing track: every exit of this loop that leaves
            // samples to send re-queues the track at its next sample's due time (later in
            // this same tick when the visit's budget ran out while still behind).
            let mut budget = SAMPLES_PER_VISIT;
            loop {
                let next = s.tracks[i].next_sample;
                let Some(at) = s.due(i, next) else {
                    // A live log's next sample has not arrived: the writer's wake re-queues it.
                    if let Some(w) = waiting.as_mut() {
                        w.push(due);
                    }
                    break;
                };
                if at > horizon || budget == 0 {
                    self.queue.push(at, due);
                    break;
                }
                budget -= 1;
                let queued_before = out.pending.len();
                // Samples due before the session started (pre-roll: a keyframe's decode
                // time before its presentation time, audio before it, a live burst) count
                // from the start: they could not have left earlier.
                out.due = at.max(s.play_start);
                emit_sample(&mut out, s, due.slot, i, now);
                let sliced = s.tracks[i].sliced_packets > 0;
                if self.stats {
                    // UDP packets leave at the next flush, which records their lateness (TCP
                    // frames carry their due time into the write that records theirs).
                    let queued = (out.pending.len() - queued_before) as u32;
                    if queued > 0 {
                        self.pending_dues.push((out.due, queued));
                    }
                }
                if s.cut_off {
                    break;
                }
                if sliced {
                    // The rest of a large sample follows once this slice is written: in a
                    // later pass (past this pass's horizon, or the pass would spin on it).
                    self.queue.push(horizon + TCP_SLICE_RETRY, due);
                    break;
                }
            }
            if interleaved && !s.cut_off {
                // The viewer's other interleaved tracks join this write with their next sample
                // if it is due within TCP_PULL_AHEAD (their own queue entries stay where they
                // are and find it gone when they come up).
                for j in (0..s.tracks.len()).filter(|&j| j != i) {
                    if !s.tracks[j].is_interleaved() || s.cut_off {
                        continue;
                    }
                    if let Some(at) = s.due(j, s.tracks[j].next_sample) {
                        if at <= pull_horizon {
                            out.due = at.max(s.play_start);
                            emit_sample(&mut out, s, due.slot, j, now);
                        }
                    }
                }
            }
            if s.cut_off {
                to_cut.push(s.id);
                continue;
            }
            if s.tracks[i].next_sample >= s.tracks[i].stop_sample && s.all_tracks_done() {
                s.state = PlayState::Ended;
                self.queue.push(
                    now + BYE_DELAY,
                    Due {
                        track: BYE_TRACK,
                        ..due
                    },
                );
            }
            let tcp_written = self.tcp.rtp_frames() >= TCP_WRITE_EVERY;
            if tcp_written {
                self.write_tcp(&mut to_cut);
            }
            let udp_sent = self.pending.len() >= MAX_BATCH || self.rtc.pending.len() >= MAX_BATCH;
            if udp_sent {
                self.flush(clock);
            }
            if (tcp_written || udp_sent) && clock.started.elapsed() >= PASS_WORK_LIMIT {
                break;
            }
        }
        self.flush(clock);
        self.write_tcp(&mut to_cut);
        // Every send of the pass is complete (`flush` and `write_tcp` return after the kernel
        // took or the backlog copied the bytes): the pass reads no log any more.
        for w in &self.logs {
            w.log.unpin(self.index);
        }
        for id in to_cut {
            if self.remove(id, "viewer too slow (TCP backlog full)") {
                self.counters
                    .slow_viewers_dropped
                    .fetch_add(1, Ordering::Relaxed);
                self.send_end(id, EndReason::TooSlow);
            }
        }
    }

    /// Sends `pending` in batches, then records how late each sample's packets left.
    fn flush(&mut self, clock: TickClock) {
        self.flush_webrtc();
        if self.pending.is_empty() {
            return;
        }
        let pending = &self.pending;
        let sessions = &self.sessions;
        let sealed = &self.sealed;
        let empty: &[&[u8]] = &[];
        let outcome = self.udp.send_batch(pending.len(), |k| {
            let p = &pending[k];
            let s = sessions[p.slot as usize]
                .as_ref()
                .expect("pending packets belong to live sessions: removal happens after flush");
            let i = p.track as usize;
            let dest = s.tracks[i]
                .rtp_dest
                .as_ref()
                .expect("UDP packets only for UDP tracks");
            if let Some((at, len)) = p.sealed {
                let bytes = sealed.get(at as usize..(at + len) as usize).unwrap_or(&[]);
                return GatherMsg::new(bytes, empty, dest);
            }
            let body = body_of(&p.packet.spec, s, i);
            GatherMsg::new(
                p.packet.header(),
                body.as_ref().map_or(empty, BodySlices::as_slices),
                dest,
            )
        });
        let bytes: u64 = pending
            .iter()
            .map(|p| u64::from(p.packet.header_len) + u64::from(p.packet.spec.body_len))
            .sum();
        self.counters
            .packets
            .fetch_add(outcome.sent as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        // A ring given up or GSO refused mid-run changes the path: publish what runs now.
        self.counters
            .set_send_path(self.udp.backend(), self.udp.gso_enabled());
        self.counters
            .syscalls
            .fetch_add(outcome.syscalls as u64, Ordering::Relaxed);
        self.counters
            .gso_sends
            .fetch_add(outcome.gso_sends as u64, Ordering::Relaxed);
        self.counters
            .gso_segments
            .fetch_add(outcome.gso_segments as u64, Ordering::Relaxed);
        if self.stats {
            // Lateness: from the due time to the end of the send call that handed the packet
            // to the kernel (one clock read per flush).
            let sent_at = clock.sent_at();
            for &(due, n) in &self.pending_dues {
                let late = sent_at.saturating_duration_since(due);
                self.lateness
                    .saturating_record_n(late.as_micros() as u64, u64::from(n));
            }
        }
        self.pending_dues.clear();
        if outcome.failed > 0 {
            self.counters
                .send_errors
                .fetch_add(outcome.failed as u64, Ordering::Relaxed);
            tracing::debug!(shard = self.index, failed = outcome.failed, errno = ?outcome.last_error, "send errors");
        }
        self.pending.clear();
        self.sealed.clear();
    }

    /// Writes the pass's TCP frames: each connection's in one gathered `sendmsg` under one
    /// take of its lock (`shard::tcp::batch`), recording each frame's lateness at the end of
    /// its connection's write. Viewers whose backlog passed the limit, or whose connection
    /// failed, are marked cut off and added to `to_cut`.
    fn write_tcp(&mut self, to_cut: &mut Vec<SessionId>) {
        if self.tcp.is_empty() {
            return;
        }
        let counters = &self.counters;
        let cut = &mut self.tcp_cut;
        let histogram = &mut self.lateness;
        let mut record = |late: Duration| {
            histogram.saturating_record(late.as_micros() as u64);
        };
        let lateness: Option<&mut dyn FnMut(Duration)> =
            if self.stats { Some(&mut record) } else { None };
        self.tcp.write(
            &SessionBodies(&self.sessions),
            MAX_BACKLOG_BYTES,
            |slot, w: ConnWrite| {
                counters
                    .packets
                    .fetch_add(u64::from(w.packets), Ordering::Relaxed);
                counters
                    .tcp_packets
                    .fetch_add(u64::from(w.packets), Ordering::Relaxed);
                counters.bytes.fetch_add(w.bytes, Ordering::Relaxed);
                let calls = u64::from(w.written.syscalls);
                counters.syscalls.fetch_add(calls, Ordering::Relaxed);
                counters.tcp_sends.fetch_add(calls, Ordering::Relaxed);
                if w.written.queued > 0 {
                    counters
                        .tcp_backlogged_bytes
                        .fetch_add(w.written.queued as u64, Ordering::Relaxed);
                }
                if w.result.is_err() {
                    cut.push(slot);
                }
            },
            lateness,
        );
        for slot in self.tcp_cut.drain(..) {
            if let Some(s) = self
                .sessions
                .get_mut(slot as usize)
                .and_then(Option::as_mut)
            {
                if !s.cut_off {
                    s.cut_off = true;
                    to_cut.push(s.id);
                }
            }
        }
    }

    /// Ends a session: BYE on every track, then frees its slot. False if it was not here.
    fn remove(&mut self, id: SessionId, why: &str) -> bool {
        let Some(slot) = self.by_id.remove(&id) else {
            return false;
        };
        let Some(mut s) = self.sessions[slot].take() else {
            return false;
        };
        if s.state != PlayState::Ended {
            send_byes(&mut s, &self.rtcp, &mut self.rtcp_buf);
        }
        if s.cut_off {
            if let Some(sink) = &s.sink {
                sink.close();
            }
        }
        self.rtc.forget(&s, slot);
        for t in &s.tracks {
            if let super::TrackDest::Udp { rtp, rtcp } = t.setup.dest {
                self.by_peer.remove(&rtp);
                self.by_peer.remove(&rtcp);
            }
            if let Some(id) = t.live_stream {
                self.live.detach(id);
            }
        }
        self.watch_log(&s, false);
        self.free_slots.push(slot);
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(shard = self.index, session = %format_args!("{id:016X}"), "session ended: {why}");
        true
    }

    /// Tells the control thread the shard ended a session on its own. Never blocks: when the
    /// queue is full the message waits in `undelivered_ends` for the next tick.
    fn send_end(&mut self, id: SessionId, reason: EndReason) {
        self.deliver_undelivered_ends();
        if !self.undelivered_ends.is_empty() {
            self.undelivered_ends.push((id, reason));
            return;
        }
        match self
            .events
            .try_send(ShardEvent::SessionEnded { id, reason })
        {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.undelivered_ends.push((id, reason)),
        }
    }

    /// Retries session ends the queue had no room for, oldest first.
    fn deliver_undelivered_ends(&mut self) {
        while let Some(&(id, reason)) = self.undelivered_ends.first() {
            match self
                .events
                .try_send(ShardEvent::SessionEnded { id, reason })
            {
                Ok(()) => {
                    self.undelivered_ends.remove(0);
                }
                Err(TrySendError::Full(_)) => return,
                Err(TrySendError::Disconnected(_)) => {
                    self.undelivered_ends.clear();
                    return;
                }
            }
        }
    }

    /// The periodic [`ShardReport`]: every session's cumulative counters and the report blocks
    /// received since the last report, and the lateness histogram (then reset). When the
    /// control thread's queue is full the report is not built: it is counted as dropped and
    /// its receptions and lateness ride with the next one.
    fn report(&mut self) {
        if self.events.is_full() {
            self.counters
                .reports_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sessions = self
            .sessions
            .iter_mut()
            .flatten()
            .map(|s| SessionDelta {
                id: s.id,
                packets_sent: s.packets_total,
                bytes_sent: s.bytes_total,
                receptions: s.receptions.iter_mut().filter_map(Option::take).collect(),
            })
            .collect();
        let hls_viewers = match self.hls.as_mut() {
            Some(hls) => hls.viewer_reports(Instant::now()),
            None => Vec::new(),
        };
        let report = ShardReport {
            shard: self.index,
            lateness_micros: self.lateness.clone(),
            sessions,
            hls_viewers,
        };
        self.lateness.reset();
        // Only this thread sends, so after `is_full` said no, only a gone receiver can fail.
        if self
            .events
            .try_send(ShardEvent::Report(Box::new(report)))
            .is_err()
        {
            self.counters
                .reports_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The body bytes of a packet, or `None` if its range is outside the data (never trusted).
fn body_of<'a>(spec: &PacketSpec, s: &'a ShardSession, i: usize) -> Option<BodySlices<'a>> {
    body_slices(
        spec,
        s.track_file(i).bytes.as_slice(),
        s.tracks[i].packetizer.parameter_sets(),
        &s.track(i).samples,
    )
}

/// The shard's sessions as the TCP batch sees them: connection `k` is session slot `k`.
struct SessionBodies<'s>(&'s [Option<ShardSession>]);

impl<'s> FrameBodies<'s> for SessionBodies<'s> {
    fn sink(&self, conn: u32) -> Option<&'s TcpSink> {
        let s = self.0.get(conn as usize)?.as_ref()?;
        s.sink.as_deref()
    }

    fn body(&self, conn: u32, body: &BodyRef) -> Option<BodySlices<'s>> {
        let s = self.0.get(conn as usize)?.as_ref()?;
        body_of(&body.spec, s, usize::from(body.track))
    }
}

mod emit;
mod logs;
mod rtcp;
#[cfg(test)]
mod tests;
mod webrtc;
