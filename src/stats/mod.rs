//! Receiver statistics and data-plane health, from the shards to the operator.
//!
//! ```text
//!  shard ──(RTCP in: reception::digest_rtcp, lateness hdrhistogram, per-session counters)──┐
//!        every REPORT_INTERVAL: ShardEvent::Report(ShardReport)  over a bounded crossbeam  │
//!        at once:               ShardEvent::SessionEnded          channel (try_send, never │
//!        at a file's end:       ShardEvent::EndOfStream           blocks; drops counted)  ▼
//!  control thread: hub::Hub  — per session, per stream, per shard, server; rolling hdrhistograms
//!        ▲ interleaved RTCP ($ odd channels) is digested on the control thread directly
//!        └─▶ JSON API, /metrics, web page, `shardcast stats`
//! ```
//!
//! Shards never wait on the control thread: they fill plain fields in their own sessions and
//! hand over one message per second. A full channel drops that second's report (counted in
//! [`ShardCounters`]; its report blocks and lateness go with the next one), it
//! never stalls sending. `SessionEnded` waits in the shard until there is room;
//! `EndOfStream` (for RTSP 2.0's `PLAY_NOTIFY`) is dropped when there is none, the RTCP BYE
//! having said the same on the media path.

mod counters;
pub mod hub;
pub mod reception;
pub mod window;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::ids::{SessionHandle, SessionId, UnknownChoice};
pub use counters::ShardCounters;
pub use reception::{
    digest_rtcp, digest_rtcp_into, RtcpDigest, RtcpSummary, TrackKey, TrackReception, ViewerSsrcs,
    MAX_TRACKS,
};

/// How often a shard sends its [`ShardReport`].
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Depth of each shard's event channel to the control thread.
pub const EVENT_QUEUE_DEPTH: usize = 256;

/// One session's figures in a shard report.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDelta {
    /// The session.
    pub id: SessionId,
    /// RTP packets sent since the session began (all tracks).
    pub packets_sent: u64,
    /// RTP bytes (header + payload) sent since the session began.
    pub bytes_sent: u64,
    /// Report blocks received since the previous report (last one per track).
    pub receptions: Vec<TrackReception>,
}

/// What a shard tells the control thread every [`REPORT_INTERVAL`].
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// Shard number.
    pub shard: usize,
    /// Pacing lateness since the previous report: how long after its due time each packet
    /// was handed to the kernel, in microseconds.
    pub lateness_micros: Histogram<u64>,
    /// Every session the shard owns, with its cumulative counters.
    pub sessions: Vec<SessionDelta>,
    /// The HLS viewers the shard served lately, with its cumulative counters for each (one
    /// viewer's requests may reach several shards; the hub adds them up).
    pub hls_viewers: Vec<HlsViewerReport>,
}

/// One HLS viewer as one shard served it: cumulative counts since its first request there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsViewerReport {
    /// The viewer's id (`v=` in the URIs its playlists carry).
    pub id: u64,
    /// Stream name.
    pub stream: String,
    /// The address its latest request came from.
    pub peer: SocketAddr,
    /// Body bytes answered (playlists, init segments, segments, parts).
    pub bytes: u64,
    /// Playlists answered.
    pub playlists: u64,
    /// Segments and parts answered.
    pub media_requests: u64,
    /// Segments or parts asked for after they had left the live window.
    pub late_requests: u64,
}

/// Why a shard ended a session on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The viewer sent RTCP BYE (RFC 3550 §6.6).
    ClientBye,
    /// A TCP viewer stopped reading and its backlog overflowed.
    TooSlow,
    /// A WebRTC viewer's consent expired (RFC 7675 §5.1: no valid ICE check for 30 s, the
    /// tab closed without `DELETE`), or its ICE/DTLS setup never completed.
    ConsentExpired,
    /// A WebRTC viewer closed DTLS (`close_notify`) or its handshake failed.
    DtlsClosed,
}

/// Messages from a shard to the control thread.
#[derive(Debug)]
pub enum ShardEvent {
    /// The periodic statistics report.
    Report(Box<ShardReport>),
    /// The shard ended a session; the control thread drops its record.
    SessionEnded {
        /// The session.
        id: SessionId,
        /// Why.
        reason: EndReason,
    },
    /// Every track of a stored stream's session reached the end of its PLAY range (the
    /// shard sends RTCP BYE); the session stays until TEARDOWN or its timeout. RTSP 2.0
    /// sessions hear of it in a `PLAY_NOTIFY` (RFC 7826 §13.5).
    EndOfStream {
        /// The session.
        id: SessionId,
        /// Per track: its media track index and the sequence number of its last packet.
        tracks: Vec<(usize, u16)>,
    },
}

/// Static facts about a session the control thread registers with the hub at its first PLAY.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMeta {
    /// The session.
    pub id: SessionId,
    /// The session's public name in the API: random, unrelated to `id`. The RTSP session id
    /// is a bearer secret of its owner and never leaves the control thread's table.
    pub handle: SessionHandle,
    /// Stream name as requested (catalog name or live channel).
    pub stream: String,
    /// The viewer's RTSP connection address.
    pub peer: SocketAddr,
    /// `udp` or `tcp` (interleaved).
    pub transport: Transport,
    /// Shard streaming it.
    pub shard: usize,
    /// Media kinds of its tracks, in SETUP order (`video`, `audio`).
    pub track_kinds: Vec<&'static str>,
}

/// How a session's media travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP/AVP over UDP.
    Udp,
    /// RTP/AVP/TCP interleaved on the RTSP connection.
    Tcp,
    /// HLS over HTTP (playlists and fMP4 segments from the shards).
    Hls,
    /// WebRTC (WHEP): SRTP on the shard's WebRTC port.
    Webrtc,
    /// RTP/AVP over UDP to a channel's multicast group (sent once for all such viewers).
    Multicast,
}

/// Whether the data plane gathers statistics (`--stats on|off`, TOML `stats`). Off: no pacing
/// lateness recorded, no RTCP digested (arrival still counts as liveness, so a viewer's BYE
/// then ends its session only at the session timeout), no shard reports. It exists to show
/// that statistics cost the shards nothing measurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatsMode {
    /// Gather statistics.
    #[default]
    On,
    /// Gather none (for comparison).
    Off,
}

impl FromStr for StatsMode {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(StatsMode::On),
            "off" => Ok(StatsMode::Off),
            _ => Err(UnknownChoice {
                value: s.to_owned(),
                allowed: "on, off",
            }),
        }
    }
}
