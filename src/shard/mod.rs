//! The per-core data plane: one pinned thread per shard, each owning its viewers' sessions
//! and its own RTP/RTCP UDP port pair.
//!
//! The control thread sends [`ShardCommand`]s over a bounded crossbeam channel; answers that
//! the RTSP reply needs (RTP-Info, the range actually played) come back over a tokio oneshot
//! so the control thread never blocks on a shard.
//!
//! Not here: RTSP parsing or session negotiation (`rtsp`), payload formats (`packetize`).

pub mod hls;
mod live_cache;
pub mod send;
mod session;
pub mod tcp;
pub mod tcp_floor;
mod timer_wheel;
mod webrtc;
mod worker;

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::media::MediaFile;
use crate::poll::Waker;
use crate::stats::{ShardEvent, EVENT_QUEUE_DEPTH};
use crate::wire::rtp::{RtpTimestamp, SeqNum, Ssrc};
pub use tcp::TcpSink;

/// Pending commands a shard queue holds before the control thread answers 503.
const COMMAND_QUEUE_DEPTH: usize = 4096;

pub use crate::ids::SessionId;
pub use crate::stats::ShardCounters;

/// Milliseconds since the process-wide monotonic base; used for cross-thread activity stamps.
pub fn monotonic_ms(now: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    now.saturating_duration_since(base).as_millis() as u64
}

/// Last time (in [`monotonic_ms`]) a session showed life: an RTSP request or an RTCP packet.
#[derive(Debug, Default)]
pub struct Activity(AtomicU64);

impl Activity {
    /// Records activity now.
    pub fn touch(&self, now: Instant) {
        self.0.store(monotonic_ms(now), Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub fn idle_for(&self, now: Instant) -> Duration {
        Duration::from_millis(monotonic_ms(now).saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// Where one track's packets go.
#[derive(Debug, Clone)]
pub enum TrackDest {
    /// UDP to the client's RTP and RTCP ports.
    Udp {
        /// Client RTP address.
        rtp: SocketAddr,
        /// Client RTCP address.
        rtcp: SocketAddr,
    },
    /// `$` frames on the RTSP connection.
    Interleaved {
        /// Channel for RTP.
        rtp_channel: u8,
        /// Channel for RTCP.
        rtcp_channel: u8,
    },
    /// SRTP on the shard's WebRTC port, to the address the session's ICE checks nominated
    /// (BUNDLE and rtcp-mux: every track of the session shares it, RFC 9143, RFC 5761).
    WebRtc,
}

/// One track as negotiated by SETUP.
#[derive(Debug, Clone)]
pub struct TrackSetup {
    /// Index into the media's `tracks`.
    pub track_index: usize,
    /// RTP payload type announced in SDP.
    pub payload_type: u8,
    /// Our SSRC for this track (RFC 3550 §8: random).
    pub ssrc: Ssrc,
    /// First RTP sequence number (random, RFC 3550 §5.1).
    pub initial_seq: SeqNum,
    /// RTP timestamp of media time zero (random, RFC 3550 §5.1).
    pub initial_rtptime: RtpTimestamp,
    /// Destination.
    pub dest: TrackDest,
    /// The file this track's samples come from when it is not the session's `media` (a
    /// WebRTC viewer's audio from the Opus rendition of the file's AAC track,
    /// `crate::rendition`); `track_index` then indexes this file's tracks.
    pub source: Option<Arc<MediaFile>>,
    /// SRTP keys of an RTSPS viewer's `RTP/SAVP` track (MIKEY, `rtsp::mikey`): its RTP and
    /// RTCP leave protected, its SRTCP is unprotected with the client's key.
    pub srtp: Option<SrtpKeys>,
}

/// The SRTP master keys of one track (`AES_CM_128_HMAC_SHA1_80`, RFC 3711 §8.2: 16-byte
/// key ‖ 14-byte salt each), as MIKEY exchanged them over RTSPS (RFC 4567).
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// Ours: protects the RTP and SRTCP we send.
    pub ours: [u8; 30],
    /// The client's, from its `KeyMgmt` header: its SRTCP; `None` when it sent none.
    pub theirs: Option<[u8; 30]>,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are never logged.
        f.debug_struct("SrtpKeys")
            .field("theirs", &self.theirs.is_some())
            .finish_non_exhaustive()
    }
}

/// Everything a shard needs to stream one session.
#[derive(Debug)]
pub struct SessionSetup {
    /// Session id.
    pub id: SessionId,
    /// The media played.
    pub media: Arc<MediaFile>,
    /// Tracks set up, in SETUP order.
    pub tracks: Vec<TrackSetup>,
    /// The connection's writer, for interleaved tracks.
    pub sink: Option<Arc<TcpSink>>,
    /// Liveness stamp shared with the control thread.
    pub activity: Arc<Activity>,
    /// Largest RTP payload.
    pub payload_budget_bytes: usize,
    /// SDES CNAME for RTCP.
    pub cname: String,
    /// The live channel, when the session watches one (its numbering comes from the channel).
    pub live: Option<Arc<crate::live::LiveChannel>>,
    /// The live log, when the session watches an ingested stream (its numbering and timing
    /// come from the log; `media` is the log's facade).
    pub log: Option<Arc<crate::live_log::LiveLog>>,
}

/// A WebRTC (WHEP) viewer's session: what every session has, and what its transport needs
/// (`docs/design/webrtc.md`, "The shard side"). The shard creates it paused and indexes it
/// by its ICE ufrag; it starts playing when DTLS has keyed SRTP (live sessions join at the
/// latest keyframe, files at 0), and ends on `Teardown`, consent expiry or a DTLS close.
#[derive(Debug)]
pub struct WebRtcStart {
    /// The session; its tracks have [`TrackDest::WebRtc`] and the payload types the answer
    /// chose.
    pub setup: SessionSetup,
    /// ICE credentials, the browser's fingerprint, our certificate.
    pub peer: crate::webrtc::peer::PeerSetup,
}

/// Where one track starts after PLAY, for the RTP-Info header (RFC 2326 §12.33).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackStart {
    /// Index into the media's `tracks`.
    pub track_index: usize,
    /// Sequence number of the first packet that will be sent.
    pub seq: SeqNum,
    /// RTP timestamp of that packet.
    pub rtptime: RtpTimestamp,
}

/// The shard's answer to PLAY.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayStarted {
    /// Normal play time the stream starts at (the keyframe at or before the requested time).
    pub start_npt_secs: f64,
    /// Normal play time the stream stops at: the range's end (RFC 2326 §12.29), clamped to
    /// the media's duration and not before the start; the duration when no end was asked.
    pub end_npt_secs: f64,
    /// Per-track start points.
    pub tracks: Vec<TrackStart>,
}

/// Where a PLAY stops sending (the end of its `Range`, RFC 2326 §12.29).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlayEnd {
    /// A PLAY without a `Range`: keep the end the last `Range` set (RFC 2326 §10.5: a PLAY
    /// without a Range "plays until the end of the range").
    Keep,
    /// A `Range` without an end: play to the end of the media.
    Media,
    /// A `Range` ending at this normal play time, in seconds: samples presented at or after
    /// it are not sent, on every track.
    At(f64),
}

/// How fast a PLAY plays, as the server chose it (RFC 2326 §12.34 `Scale`, §12.35 `Speed`;
/// RFC 7826 §18.46, §18.50).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayRate {
    /// Media seconds per second of delivery; negative plays backwards. Anything but 1 is
    /// trick play: the video track alone (no audio), its keyframes only when |scale| > 1 or
    /// backwards, every frame slowed when 0 < scale < 1, with RTP time running at the delivery rate
    /// (a frame presented at media time `t` carries `t0 + (t − t0)/scale`), so players'
    /// jitter buffers see a normal stream; `Range` and `RTP-Info` map it back to media time.
    pub scale: f64,
    /// Delivery speed (pacing only; timestamps stay media time). 1 whenever `scale` is not.
    pub speed: f64,
}

impl PlayRate {
    /// Normal play.
    pub const NORMAL: PlayRate = PlayRate {
        scale: 1.0,
        speed: 1.0,
    };

    /// True for trick play (a scale other than 1).
    pub fn is_trick(&self) -> bool {
        self.scale != 1.0
    }

    /// True when only keyframes are sent: fast forward, and any rewind (frames that
    /// predict from earlier ones cannot be decoded backwards).
    pub fn keyframes_only(&self) -> bool {
        self.scale.abs() > 1.0 || self.scale < 0.0
    }

    /// True when playing backwards.
    pub fn reverse(&self) -> bool {
        self.scale < 0.0
    }
}

/// Commands from the control thread.
#[derive(Debug)]
pub enum ShardCommand {
    /// Prepare to play: create the session (first PLAY), seek or keep the position, and answer
    /// where it starts. Nothing is sent until [`ShardCommand::Start`].
    Play {
        /// Session.
        id: SessionId,
        /// New session state, on the first PLAY.
        setup: Option<Box<SessionSetup>>,
        /// Seek target in seconds, or resume where paused / start at 0.
        start_npt_secs: Option<f64>,
        /// Where to stop (ignored by live sessions); with a reverse scale, the lowest media
        /// time played (`Media`: 0).
        end: PlayEnd,
        /// Scale and speed (ignored by live sessions).
        rate: PlayRate,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<Option<PlayStarted>>,
    },
    /// Start sending from the position the last `Play` prepared. Sent by the control thread
    /// only after the PLAY response is written, so media never precedes the response on an
    /// interleaved connection (players discard `$` frames that arrive before it).
    Start {
        /// Session.
        id: SessionId,
    },
    /// Stop sending, keep the position.
    Pause {
        /// Session.
        id: SessionId,
        /// Position paused at, or `None` for an unknown session.
        reply: tokio::sync::oneshot::Sender<Option<f64>>,
    },
    /// Create a WebRTC viewer's session (answered over HTTP already: nothing comes back but
    /// a [`ShardEvent::SessionEnded`] when the shard ends it on its own).
    StartWebRtc(Box<WebRtcStart>),
    /// End the session: RTCP BYE and free everything.
    Teardown {
        /// Session.
        id: SessionId,
    },
    /// Stop the thread after BYE to every session.
    Shutdown,
}

/// The control thread's handle to a running shard.
#[derive(Debug)]
pub struct ShardHandle {
    /// Shard number.
    pub index: usize,
    /// The shard's RTP (even) and RTCP (odd) server ports, as answered in `server_port`.
    pub server_ports: (u16, u16),
    /// The shard's WebRTC port (STUN, DTLS, SRTP), when WebRTC is on: the host candidate of
    /// the SDP answers for the sessions it owns.
    pub webrtc_addr: Option<SocketAddr>,
    /// Published counters.
    pub counters: Arc<ShardCounters>,
    /// Reports and session ends from the shard (bounded; the shard never waits on it). The
    /// control thread drains it with `try_recv`.
    pub events: Receiver<ShardEvent>,
    tx: Sender<ShardCommand>,
    join: Option<JoinHandle<()>>,
    /// Written after each command: the shard sleeps in `epoll_wait` on it (and on its sockets).
    waker: Arc<Waker>,
}

/// The shard's queue is full.
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is overloaded")]
pub struct ShardBusy(pub usize);

impl ShardHandle {
    /// Queues a command; never blocks.
    pub fn send(&self, cmd: ShardCommand) -> Result<(), ShardBusy> {
        match self.tx.try_send(cmd) {
            Ok(()) => {
                self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Err(ShardBusy(self.index))
            }
        }
    }

    /// The shard's waker (a live log's writer wakes the shards that have its viewers).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Sessions it owns now.
    pub fn load(&self) -> usize {
        self.counters.sessions.load(Ordering::Relaxed)
    }

    /// Asks the shard to stop and waits for it.
    pub fn shutdown(mut self) {
        let _ = self.tx.send(ShardCommand::Shutdown);
        self.waker.wake();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Binds an RTP/RTCP pair on adjacent ports, RTP even (RFC 3550 §11).
fn bind_port_pair(ip: IpAddr) -> io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..64 {
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
            return Ok((rtp, rtcp));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free even/odd UDP port pair found",
    ))
}

/// Binds shard `index`'s WebRTC port: `base.port() + index`, or a free port when it is 0.
fn bind_webrtc_port(base: SocketAddr, index: usize) -> io::Result<UdpSocket> {
    let port = match base.port() {
        0 => 0,
        p => u16::try_from(usize::from(p) + index).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("webrtc-listen {base}: shard {index}'s port is past 65535"),
            )
        })?,
    };
    let addr = SocketAddr::new(base.ip(), port);
    let socket = UdpSocket::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("webrtc-listen: binding {addr}: {e}")))?;
    socket.set_nonblocking(true)?;
    send::tune_socket(&socket);
    Ok(socket)
}

/// Starts `count` shard threads on `ip`, pinned round-robin to the available cores, sending
/// through `send` (resolved and logged once here), each at nice value `nice` (`--shard-nice`;
/// refused without `CAP_SYS_NICE`, which is logged once and otherwise harmless). `stats`
/// turns on pacing-lateness recording, RTCP digestion and the periodic reports (`--stats`).
/// With `hls`, shard `i` serves HLS on listener `i` (see [`hls::bind_listeners`]). With
/// `webrtc`, shard `i` binds UDP `ip:port + i` (port 0: a free port each) for WebRTC.
pub fn spawn_shards(
    count: usize,
    ip: IpAddr,
    send: send::SendConfig,
    stats: bool,
    nice: i32,
    hls: Option<(Vec<std::net::TcpListener>, hls::SharedHlsContext)>,
    webrtc: Option<SocketAddr>,
) -> io::Result<Vec<ShardHandle>> {
    let send = send.resolve();
    let (mut hls_listeners, hls_context) = match hls {
        Some((listeners, context)) => (listeners.into_iter(), Some(context)),
        None => (Vec::new().into_iter(), None),
    };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut shards = Vec::with_capacity(count);
    for index in 0..count {
        let (rtp, rtcp) = bind_port_pair(ip)?;
        send::tune_socket(&rtp);
        // Multicast groups' RTP leaves from `rtp`, their sender reports from `rtcp`.
        send::set_multicast_ttl(&rtp, send.multicast_ttl);
        send::set_multicast_ttl(&rtcp, send.multicast_ttl);
        let server_ports = (rtp.local_addr()?.port(), rtcp.local_addr()?.port());
        rtcp.set_nonblocking(true)?;
        let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE_DEPTH);
        let (events_tx, events) = crossbeam_channel::bounded(EVENT_QUEUE_DEPTH);
        let counters = Arc::new(ShardCounters::default());
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let worker_counters = counters.clone();
        let waker = Arc::new(Waker::new()?);
        let mut links = worker::Links::new(rx, events_tx, waker.clone())?;
        links.hls = hls_listeners.next().zip(hls_context.clone());
        let webrtc_addr = match webrtc {
            Some(base) => {
                let socket = bind_webrtc_port(base, index)?;
                let addr = socket.local_addr()?;
                links.webrtc = Some(socket);
                Some(addr)
            }
            None => None,
        };
        let join = std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(shard = index, "could not pin to core {}", core.id);
                    }
                }
                match crate::sys::sched::set_current_thread_nice(nice) {
                    Ok(()) => {}
                    Err(e) if index == 0 => tracing::info!(
                        "shards run at the default priority: nice {nice} refused ({e}); grant CAP_SYS_NICE or pass --shard-nice 0"
                    ),
                    Err(_) => {}
                }
                worker::Worker::new(index, rtp, rtcp, links, worker_counters, send, stats).run();
            })?;
        tracing::info!(shard = index, rtp = server_ports.0, rtcp = server_ports.1, webrtc = ?webrtc_addr.map(|a| a.port()), core = ?core.map(|c| c.id), "shard started");
        shards.push(ShardHandle {
            index,
            server_ports,
            webrtc_addr,
            counters,
            events,
            tx,
            waker,
            join: Some(join),
        });
    }
    Ok(shards)
}
