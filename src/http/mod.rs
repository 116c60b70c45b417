//! The operator side over HTTP/1.1: the web page, the JSON API under `/api/v1`
//! (`docs/openapi.json`), Prometheus `/metrics`, and play-token issuing (the tokens themselves are [`crate::token`]).
//!
//! ```text
//!   hyper http1 connection tasks (tokio::task::spawn_local, same LocalSet as RTSP)
//!        │  server.rs: accept limits, timeouts, routing, bearer checks
//!        ├─ api.rs      JSON views        ─┐
//!        ├─ metrics.rs  text format 0.0.4  ├─▶ Rc<dyn ControlApi> (implemented by the
//!        └─ page.rs     assets in binary  ─┘   RTSP control state; never blocks)
//! ```
//!
//! The HTTP side never carries media and never touches RTSP internals: everything it shows
//! or does goes through [`ControlApi`]. `client.rs` and `terminal.rs` are the other end:
//! `shardcast stats`, a terminal view that polls the API.

pub mod api;
pub mod client;
pub mod metrics;
pub mod page;
pub mod server;
pub mod terminal;
pub mod whep;
pub mod whip;

use std::net::IpAddr;

use serde::Serialize;

use crate::config::ApiRead;
use crate::ids::SessionHandle;
use crate::stats::hub::{SessionView, StatsView};

pub use server::{bind, serve, HttpLimits};

/// One track of a stream in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackInfo {
    /// `video` or `audio`.
    pub kind: &'static str,
    /// Codec name (`H.264`, `AAC`).
    pub codec: &'static str,
    /// Width in pixels (video).
    pub width: Option<u16>,
    /// Height in pixels (video).
    pub height: Option<u16>,
    /// Frames per second (video).
    pub frame_rate: Option<f64>,
    /// Sampling rate in Hz (audio).
    pub sample_rate_hz: Option<u32>,
    /// Channels (audio).
    pub channels: Option<u8>,
}

/// A stream as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamInfo {
    /// Stream name (the URL path).
    pub name: String,
    /// Where to play it (without a play token).
    pub url: String,
    /// Its HLS multivariant playlist (for browsers), when HLS is on.
    pub hls_url: Option<String>,
    /// Its WHEP endpoint (WebRTC in the browser), when WebRTC is on and the stream can be
    /// sent over it.
    pub whep_url: Option<String>,
    /// Why the stream cannot be played over WebRTC (B-frames, WebRTC off), else `None`.
    pub webrtc_unavailable: Option<String>,
    /// True for live channels.
    pub live: bool,
    /// Length in seconds; `None` for live channels.
    pub duration_secs: Option<f64>,
    /// Codec names of its tracks, in track order.
    pub codecs: Vec<&'static str>,
    /// Video width in pixels, if it has video.
    pub width: Option<u16>,
    /// Video height in pixels, if it has video.
    pub height: Option<u16>,
    /// Video frames per second, if it has video.
    pub frame_rate: Option<f64>,
    /// Audio sampling rate in Hz, if it has audio.
    pub sample_rate_hz: Option<u32>,
    /// Audio channels, if it has audio.
    pub channels: Option<u8>,
    /// Average media bitrate over all tracks, bits per second.
    pub bitrate_bps: u64,
    /// Viewers now.
    pub viewers: usize,
    /// True when playing needs a play token (`--require-token`).
    pub token_required: bool,
    /// Per-track detail.
    pub tracks: Vec<TrackInfo>,
    /// Tracks of the file that are not served, each with the reason (e.g. `"track 1:
    /// unsupported codec V_VP8"`): a file whose video is listed here plays without its video.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
    /// Whether HLS carries every served track (`Codec::fmp4_carries`); not in the JSON: it
    /// decides whether `hls_url` is offered.
    #[serde(skip)]
    pub hls_playable: bool,
    /// Who feeds it, for a published stream (absent for files and live channels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
}

/// The publisher of a published stream, as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceInfo {
    /// `rtsp` (ANNOUNCE/RECORD) or `rtmp`.
    pub protocol: &'static str,
    /// `online` (a publisher is sending), `waiting` (it left; viewers wait for it until the
    /// publisher timeout) or `offline`.
    pub state: &'static str,
    /// The publisher's address (the last one while waiting).
    pub peer: String,
    /// Seconds since the current publisher started, or since it left.
    pub since_secs: f64,
}

/// One ingested stream, as `GET /api/v1/ingest` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestInfo {
    /// Stream path.
    pub name: String,
    /// Who feeds it, and since when.
    #[serde(flatten)]
    pub source: SourceInfo,
    /// Codec names per track (`H.264`, `AAC`).
    pub codecs: Vec<&'static str>,
    /// Bits per second of frames received over the last interval (about a second).
    pub bitrate_bps: f64,
    /// Video frames per second over the last interval.
    pub frames_per_sec: f64,
    /// Frames written to the stream's log since it was created.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Video keyframes among them.
    pub keyframes: u64,
    /// Seconds since the last video keyframe arrived (`None`: none yet, or no video).
    pub since_keyframe_secs: Option<f64>,
    /// RTP packets received from the current publisher (RTSP only; 0 for RTMP).
    pub packets: u64,
    /// Packets lost on the way in: sequence numbers skipped (RFC 3550 §A.3).
    pub lost: u64,
    /// Largest interarrival jitter of its tracks in milliseconds (RFC 3550 §6.4.1, §A.8).
    pub jitter_ms: f64,
    /// Frames dropped, by reason (`incomplete`, `malformed`, `too_large`, `flood`,
    /// `reader_stalled`).
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Viewers that fell behind the live log and jumped to its live edge.
    pub reader_skips: u64,
    /// Viewers now.
    pub viewers: usize,
}

/// `POST /api/v1/play` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayRequest {
    /// Stream name.
    pub stream: String,
    /// Bind the token to this viewer address.
    pub viewer_ip: Option<IpAddr>,
    /// Seconds the token stays valid (default 300, at most 86400).
    pub lifetime_secs: Option<u64>,
}

/// `POST /api/v1/play` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayGrant {
    /// The RTSP URL with its token.
    pub url: String,
    /// The HLS multivariant playlist with its token, when HLS is on.
    pub hls_url: Option<String>,
    /// The WHEP endpoint with its token, when WebRTC is on and the stream can use it.
    pub whep_url: Option<String>,
    /// The token alone.
    pub token: String,
    /// Expiry, seconds since the UNIX epoch.
    pub expires_unix: u64,
}

/// Why a play URL cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayError {
    /// No such stream.
    #[error("no stream named {0:?}")]
    UnknownStream(String),
    /// Lifetime outside 1 s ..= the maximum.
    #[error("lifetime_secs must be 1 to {max}", max = crate::token::MAX_LIFETIME.as_secs())]
    BadLifetime,
}

/// One shard's cumulative send counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardTotals {
    /// RTP packets sent.
    pub packets: u64,
    /// RTP bytes sent.
    pub bytes: u64,
    /// Send syscalls.
    pub syscalls: u64,
}

/// Everything `/metrics` renders, taken at one instant.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// The hub's view (rates, quantiles, totals).
    pub stats: StatsView,
    /// Per shard, in shard order.
    pub shards: Vec<ShardTotals>,
    /// `(name, count, sum in seconds)` of jitter, RTT and lateness since start.
    pub distributions: [(&'static str, u64, f64); 3],
    /// RTSP requests refused for bad or missing credentials (since the last reload).
    pub auth_failures: u64,
    /// RTSP authentication attempts delayed or refused by the brute-force backoff (since
    /// the last reload).
    pub auth_throttled: u64,
    /// RTSP requests refused for a missing or invalid play token.
    pub token_refusals: u64,
    /// Sessions ended through `DELETE /api/v1/sessions/{id}`.
    pub sessions_ended_by_api: u64,
    /// RTSP requests and connections refused, by status code, since start.
    pub rtsp_refused: Vec<(u16, u64)>,
    /// Log lines not written because their client was over its log budget.
    pub log_lines_suppressed: u64,
    /// UDP datagrams on the ingest ports that no publisher set up (dropped, never trusted).
    pub ingest_unrouted: u64,
    /// Datagrams from WHIP publishers' addresses refused: a check with a wrong password, a
    /// bad SRTP tag, a replay, a payload type the answer did not accept.
    pub whip_refused: u64,
    /// Ingested streams.
    pub ingest: Vec<IngestInfo>,
}

/// Who may do what over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAccess {
    /// The admin bearer token; `None` refuses every mutating call.
    pub admin_token: Option<String>,
    /// Whether reads need the admin token.
    pub api_read: ApiRead,
}

/// What the HTTP side asks of the control thread. Implemented by the RTSP control state;
/// every method answers at once from single-threaded state.
pub trait ControlApi {
    /// Every stream: catalog files, live channels and published streams. `host` is the HTTP request's host
    /// (used for URLs when the RTSP address is a wildcard).
    fn catalog(&self, host: Option<&str>) -> Vec<StreamInfo>;
    /// One stream by name.
    fn stream(&self, name: &str, host: Option<&str>) -> Option<StreamInfo>;
    /// Every ingested stream (published), by name.
    fn ingest(&self) -> Vec<IngestInfo>;
    /// Every playing session.
    fn sessions(&self) -> Vec<SessionView>;
    /// One session.
    fn session(&self, handle: SessionHandle) -> Option<SessionView>;
    /// Ends the session with API handle `handle` (RTCP BYE from its shard) and closes the
    /// RTSP connection that created it. False when there is no such session.
    fn end_session(&self, handle: SessionHandle) -> bool;
    /// The statistics view, with at most `history` points of history.
    fn stats(&self, history: usize) -> StatsView;
    /// Signs a play URL.
    fn issue_play_url(&self, req: &PlayRequest, host: Option<&str>)
        -> Result<PlayGrant, PlayError>;
    /// Figures for `/metrics`.
    fn metrics(&self) -> MetricsSnapshot;
    /// Current access policy.
    fn access(&self) -> HttpAccess;
    /// `POST /whep/{stream}`: answers a WebRTC viewer's SDP offer (`token` from the query
    /// or a bearer header; `peer` the HTTP client).
    fn whep_offer(
        &self,
        stream: &str,
        offer: &[u8],
        token: Option<&str>,
        peer: std::net::SocketAddr,
    ) -> Result<whep::WhepCreated, crate::rtsp::session::WhepRefusal>;
    /// `DELETE /whep/session/{key}`: ends the session; false when no session has that key.
    fn whep_delete(&self, key: &str) -> bool;
    /// `POST /whip/{path}`: answers a WHIP publisher's SDP offer (`key` from a bearer
    /// header or `?key=`; `peer` the HTTP client).
    fn whip_offer(
        &self,
        path: &str,
        offer: &[u8],
        key: Option<&str>,
        peer: std::net::SocketAddr,
    ) -> Result<whip::WhipCreated, crate::rtsp::session::WhipRefusal>;
    /// `DELETE /whip/session/{key}`: ends the publisher; false when none has that key.
    fn whip_delete(&self, key: &str) -> bool;
}
