//! Pulling RTSP sources: a camera or another server named in the configuration
//! (`[sources] cam1 = "rtsp://user:pass@camera/path"`) is played with `retina` over TCP
//! interleaved or UDP, and what it sends becomes [`Frame`]s for a live log. Design:
//! `docs/design/live-ingest.md`.
//!
//! Two parts, for the shell that runs sources on the control thread:
//!
//! - **The policy**, sans-IO: a [`Source`] holds one configured source's [`SourceState`]
//!   (`Idle`, `Connecting`, `Online`, `Retrying`) and its viewer count, and
//!   [`Source::handle`] maps a [`SourceEvent`] at a time `now` to a [`Step`]: at most one
//!   [`SourceAction`] (start a pull, stop the running pull) and at most one log line, given
//!   exactly when the state changes. [`SourceMode::AlwaysOn`] sources connect at once;
//!   [`SourceMode::OnDemand`] ones on their first viewer and stop `grace` (default 10 s,
//!   [`DEFAULT_GRACE`]) after the last viewer left. A failure waits [`Backoff::delay`]: 1 s
//!   doubling to 30 s, less up to a quarter by the random value the shell passes in (so
//!   sources that failed together do not return together), counted afresh after 30 s online.
//!   The shell ticks the source ([`SourceEvent::Tick`]) at [`Source::next_deadline`].
//! - **The pull**, [`pull_source`] (or [`pull_source_with`] for other timeouts): one
//!   connection from DESCRIBE to its end. Credentials come from the URL's userinfo
//!   (RFC 3986 §3.2.1, percent-decoded) and are given to retina, which answers Basic or
//!   Digest challenges (RFC 2326 §14.4, RFC 7616). Every H.264 (RFC 6184) and AAC (RFC 3640)
//!   stream is SET UP; others are reported as [`PullEvent::Skipped`]. After PLAY, the shell's
//!   callback gets [`PullEvent::Tracks`] once every track's parameters are known (the first
//!   `Tracks` means the source is online) and again whenever they change mid-stream, then
//!   [`PullEvent::Frame`]s in the format [`Frame`] defines. It returns `Ok(())` when the
//!   source ends the stream and a [`PullError`] naming what failed otherwise; every wait is
//!   bounded ([`PullOptions`]: 10 s for connect + DESCRIBE, for SETUP, for PLAY, for the
//!   first parameters, and between frames).
//!
//! The shell, in outline:
//!
//! ```text
//! on Step { action: Some(Connect), .. }    spawn_local(pull_source(url, transport, |ev| ..))
//!   PullEvent::Tracks(specs)               LogWriter::create(name, &specs, ..) the first
//!                                          time (or resume), source.handle(Connected)
//!   PullEvent::Frame(frame)                writer.append(&frame, now)
//!   PullEvent::Dropped { reason, .. }      count it in the log's frames_dropped{reason}
//!   returns Ok(()) / Err(e)                source.handle(Failed { reason, random })
//! on Step { action: Some(Disconnect), .. } abort the pull task (retina tears the session down)
//! on Step { log: Some(line), .. }          tracing::info!("{line}")
//! ```
//!
//! What it does not do: relay RTCP sender reports (timestamps are the source's extended RTP
//! times, [`Frame::pts`]), carry codecs other than H.264 and AAC, or bound retina's own
//! buffers: a hostile source can make retina buffer what it sends until a timeout here
//! ends the pull (10 s of the link's rate at most).

use std::time::{Duration, Instant};

use futures::StreamExt;
use retina::client::{
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParameterSetInsertion, ParametersRef};
use url::Url;

use crate::ids::SERVER_NAME;
use crate::ingest::LogTrackSpec;
use crate::ingest::{DropReason, Frame, MAX_ACCESS_UNIT};
use crate::media::mp4::{parse_audio_specific_config, parse_avc_decoder_config};
use crate::media::track::{Codec, TrackKind};
use crate::wire::ntp::NtpTime;

#[cfg(test)]
mod tests;

/// How long an on-demand source stays connected after its last viewer left.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The default bound on each wait of a pull (connect + DESCRIBE, SETUP, PLAY, frames).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The policy: states, backoff, on-demand.
// ---------------------------------------------------------------------------------------

/// Reconnect delays: `initial` doubling per consecutive failure up to `max`; the count of
/// failures starts again after a connection stayed online for `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (1 s).
    pub initial: Duration,
    /// Largest delay (30 s).
    pub max: Duration,
    /// Online this long, a connection's failure counts as the first again (30 s).
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (1 after the first failure): `initial · 2^(attempt−1)`
    /// capped at `max`, less up to a quarter of it by `random` (0 takes nothing, `u32::MAX`
    /// the whole quarter), so the result lies in `[¾·base, base]`.
    pub fn delay(&self, attempt: u32, random: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let base = self
            .initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max);
        let quarter = base / 4;
        let jitter = quarter.mul_f64(f64::from(random) / f64::from(u32::MAX));
        base.saturating_sub(jitter)
    }
}

/// When a source is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    /// From start-up on, whether or not anyone watches.
    AlwaysOn,
    /// From the first viewer until `grace` after the last one left.
    OnDemand {
        /// How long to stay connected with no viewer ([`DEFAULT_GRACE`]).
        grace: Duration,
    },
}

/// A source's configuration as the policy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Always on or on demand.
    pub mode: SourceMode,
    /// Reconnect delays.
    pub backoff: Backoff,
}

/// Where a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Not connected and not trying (an on-demand source without viewers).
    Idle,
    /// A pull is running and has not yet delivered its tracks; `attempt` failures preceded it.
    Connecting {
        /// Consecutive failures before this try (0 on the first).
        attempt: u32,
    },
    /// Media is flowing.
    Online {
        /// When the source came online (the backoff resets after `reset_after` of it).
        since: Instant,
        /// Consecutive failures before this connection.
        attempt: u32,
    },
    /// The last pull failed; the next starts at `until`.
    Retrying {
        /// Consecutive failures so far (1 after the first).
        attempt: u32,
        /// When to connect again.
        until: Instant,
    },
}

/// What happened to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// Time passed (the shell ticks at [`Source::next_deadline`], or more often).
    Tick,
    /// A viewer started watching the source's stream.
    ViewerJoined,
    /// A viewer stopped watching.
    ViewerLeft,
    /// The running pull delivered its tracks ([`PullEvent::Tracks`]): media flows.
    Connected,
    /// The running pull returned; `reason` says why (the [`PullError`], or that the source
    /// ended the stream) and `random` is any random value, for the backoff's jitter.
    Failed {
        /// Why, for the log line.
        reason: String,
        /// A uniformly random value.
        random: u32,
    },
    /// The source was removed from the configuration: stop for good.
    Stop,
}

/// What the shell must do about a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAction {
    /// Start a pull ([`pull_source`]).
    Connect,
    /// End the running pull (drop or abort its task).
    Disconnect,
}

/// The outcome of one event: at most one action and at most one log line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// What the shell does now.
    pub action: Option<SourceAction>,
    /// The state change, as one log line (`None`: the state did not change).
    pub log: Option<String>,
}

/// One configured source's connection policy: its state, its viewers and when the last left.
#[derive(Debug, Clone)]
pub struct Source {
    name: String,
    policy: SourcePolicy,
    state: SourceState,
    viewers: usize,
    last_viewer_left: Option<Instant>,
    /// Stopped for good ([`SourceEvent::Stop`]): every later event is ignored.
    removed: bool,
}

impl Source {
    /// A source named `name` (the stream path, for log lines), idle until the first
    /// [`SourceEvent::Tick`] (always on) or viewer (on demand).
    pub fn new(name: &str, policy: SourcePolicy) -> Self {
        Self {
            name: name.to_string(),
            policy,
            state: SourceState::Idle,
            viewers: 0,
            last_viewer_left: None,
            removed: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> SourceState {
        self.state
    }

    /// Viewers now watching.
    pub fn viewers(&self) -> usize {
        self.viewers
    }

    /// Whether the source should be connected at `now`.
    fn wanted(&self, now: Instant) -> bool {
        match self.policy.mode {
            SourceMode::AlwaysOn => true,
            SourceMode::OnDemand { grace } => {
                self.viewers > 0
                    || self
                        .last_viewer_left
                        .is_some_and(|left| now.saturating_duration_since(left) < grace)
            }
        }
    }

    /// When the shell must tick next, as of `now` (an idle always-on source at once, a retry
    /// falls due, an on-demand grace ends); `None` when only an event can change anything.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.removed {
            return None;
        }
        let grace_end = match self.policy.mode {
            SourceMode::OnDemand { grace } if self.viewers == 0 => {
                self.last_viewer_left.map(|left| left + grace)
            }
            _ => None,
        };
        match self.state {
            SourceState::Idle => match self.policy.mode {
                // An always-on source connects at the first tick.
                SourceMode::AlwaysOn => Some(now),
                SourceMode::OnDemand { .. } => None,
            },
            SourceState::Retrying { until, .. } => Some(grace_end.map_or(until, |g| g.min(until))),
            SourceState::Connecting { .. } | SourceState::Online { .. } => grace_end,
        }
    }

    /// Applies `event` at `now`: the new state, and what the shell does and logs.
    pub fn handle(&mut self, event: SourceEvent, now: Instant) -> Step {
        let old = self.state;
        let (state, action, log) = self.transition(event, now);
        self.state = state;
        debug_assert_eq!(log.is_some(), state != old, "a log line exactly per change");
        Step { action, log }
    }

    fn transition(
        &mut self,
        event: SourceEvent,
        now: Instant,
    ) -> (SourceState, Option<SourceAction>, Option<String>) {
        use SourceState::*;
        let name = &self.name;
        let keep = (self.state, None, None);
        if self.removed {
            return keep;
        }
        match event {
            SourceEvent::ViewerJoined => {
                self.viewers += 1;
                self.last_viewer_left = None;
                match self.state {
                    Idle => self.connect(0),
                    _ => keep,
                }
            }
            SourceEvent::ViewerLeft => {
                self.viewers = self.viewers.saturating_sub(1);
                if self.viewers == 0 {
                    self.last_viewer_left = Some(now);
                }
                // The grace period ends on a later tick.
                keep
            }
            SourceEvent::Tick => {
                if !self.wanted(now) {
                    return match self.state {
                        Idle => keep,
                        Connecting { .. } | Online { .. } => {
                            (Idle, Some(SourceAction::Disconnect), Some(self.idle_line()))
                        }
                        Retrying { .. } => (Idle, None, Some(self.idle_line())),
                    };
                }
                match self.state {
                    Idle => self.connect(0),
                    Retrying { attempt, until } if now >= until => self.connect(attempt),
                    _ => keep,
                }
            }
            SourceEvent::Connected => match self.state {
                Connecting { attempt } => (
                    Online {
                        since: now,
                        attempt,
                    },
                    None,
                    Some(format!("source {name}: online")),
                ),
                // A pull the shell already stopped; nothing to do.
                _ => keep,
            },
            SourceEvent::Failed { reason, random } => {
                let attempt = match self.state {
                    Connecting { attempt } => attempt + 1,
                    Online { since, attempt } => {
                        if now.saturating_duration_since(since) >= self.policy.backoff.reset_after {
                            1
                        } else {
                            attempt + 1
                        }
                    }
                    // A pull the shell already stopped reporting its end.
                    Idle | Retrying { .. } => return keep,
                };
                if !self.wanted(now) {
                    let line = format!("{} ({reason})", self.idle_line());
                    return (Idle, None, Some(line));
                }
                let delay = self.policy.backoff.delay(attempt, random);
                (
                    Retrying {
                        attempt,
                        until: now + delay,
                    },
                    None,
                    Some(format!(
                        "source {name}: failed ({reason}); retry {attempt} in {:.1} s",
                        delay.as_secs_f64()
                    )),
                )
            }
            SourceEvent::Stop => {
                self.removed = true;
                self.stop()
            }
        }
    }

    fn stop(&self) -> (SourceState, Option<SourceAction>, Option<String>) {
        let name = &self.name;
        match self.state {
            SourceState::Idle => (SourceState::Idle, None, None),
            SourceState::Connecting { .. } | SourceState::Online { .. } => (
                SourceState::Idle,
                Some(SourceAction::Disconnect),
                Some(format!("source {name}: removed")),
            ),
            SourceState::Retrying { .. } => (
                SourceState::Idle,
                None,
                Some(format!("source {name}: removed")),
            ),
        }
    }

    fn connect(&self, attempt: u32) -> (SourceState, Option<SourceAction>, Option<String>) {
        let line = if attempt == 0 {
            format!("source {}: connecting", self.name)
        } else {
            format!("source {}: connecting (retry {attempt})", self.name)
        };
        (
            SourceState::Connecting { attempt },
            Some(SourceAction::Connect),
            Some(line),
        )
    }

    fn idle_line(&self) -> String {
        match self.policy.mode {
            SourceMode::OnDemand { grace } => format!(
                "source {}: stopped, no viewers for {} s",
                self.name,
                grace.as_secs()
            ),
            SourceMode::AlwaysOn => format!("source {}: stopped", self.name),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The pull.
// ---------------------------------------------------------------------------------------

/// How RTP reaches us from the source (RFC 2326 §10.12, §12.39).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullTransport {
    /// Interleaved in the RTSP connection (`RTP/AVP/TCP`).
    Tcp,
    /// UDP to a port pair of ours (`RTP/AVP;unicast;client_port`).
    Udp,
}

/// A pull's transport and time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullOptions {
    /// TCP interleaved or UDP.
    pub transport: PullTransport,
    /// Bound on connecting plus DESCRIBE.
    pub describe_timeout: Duration,
    /// Bound on each SETUP and on PLAY.
    pub request_timeout: Duration,
    /// Bound on the wait for any frame (and, after PLAY, for every track's parameters).
    pub frame_timeout: Duration,
}

impl PullOptions {
    /// `transport` with every bound [`DEFAULT_TIMEOUT`].
    pub fn new(transport: PullTransport) -> Self {
        Self {
            transport,
            describe_timeout: DEFAULT_TIMEOUT,
            request_timeout: DEFAULT_TIMEOUT,
            frame_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What a pull tells its shell, in order: skipped streams, tracks, frames.
#[derive(Debug, PartialEq, Eq)]
pub enum PullEvent<'a> {
    /// Stream `stream` of the source's SDP is not pulled, for `reason`.
    Skipped {
        /// Index of the stream (`m=` section) in the source's SDP.
        stream: usize,
        /// Why (the codec we do not carry).
        reason: String,
    },
    /// The tracks as they now are; the frames' `track` indexes this list. Sent once every
    /// track's parameters are known, and again when they change mid-stream.
    Tracks(Vec<LogTrackSpec>),
    /// One access unit.
    Frame(Frame<'a>),
    /// The source's RTCP sender report for `track` (RFC 3550 §6.4.1): wall-clock time `ntp`
    /// is the track's timestamp `pts`, on the scale and timeline of its frames' `pts`. The
    /// live log keeps the mapping, so viewers' sender reports carry the source's clock (a
    /// camera's capture time) rather than ours.
    SenderReport {
        /// The track, as in [`PullEvent::Frame`].
        track: usize,
        /// The report's RTP time, unfolded onto the track's timeline by retina.
        pts: i64,
        /// The report's NTP time.
        ntp: NtpTime,
    },
    /// An access unit of `track` was dropped (counted under `reason`).
    Dropped {
        /// The track, as in [`PullEvent::Frame`].
        track: usize,
        /// Why.
        reason: DropReason,
    },
}

/// The step of a pull an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStep {
    /// Connecting and DESCRIBE (RFC 2326 §10.2).
    Describe,
    /// SETUP (§10.4).
    Setup,
    /// PLAY (§10.5).
    Play,
    /// Waiting for every track's parameters after PLAY.
    Parameters,
    /// Receiving media.
    Media,
}

impl std::fmt::Display for PullStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullStep::Describe => "DESCRIBE",
            PullStep::Setup => "SETUP",
            PullStep::Play => "PLAY",
            PullStep::Parameters => "waiting for parameters",
            PullStep::Media => "media",
        })
    }
}

/// Why a pull ended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PullError {
    /// The URL is not one we can pull (`rtsp://host[:port]/…` only).
    #[error("bad source url: {0}")]
    BadUrl(String),
    /// The TCP connection could not be made (refused, unreachable, name not resolved).
    #[error("connect failed: {0}")]
    Connect(String),
    /// The source asked for credentials (401) and refused the ones given, or none were.
    #[error("{0} refused: 401 unauthorized (credentials missing or wrong)")]
    Unauthorized(PullStep),
    /// The source answered with another error status.
    #[error("{step} refused: {status} {detail}")]
    Status {
        /// The request.
        step: PullStep,
        /// The RTSP status code (RFC 2326 §7.1.1).
        status: u16,
        /// retina's description.
        detail: String,
    },
    /// A wait ran out.
    #[error("{step} timed out after {} s", .after.as_secs_f64())]
    Timeout {
        /// What was awaited.
        step: PullStep,
        /// The bound.
        after: Duration,
    },
    /// No stream of the source is H.264 or AAC.
    #[error("no usable track ({0})")]
    NoUsableTrack(String),
    /// A track's parameters (AVCDecoderConfigurationRecord, AudioSpecificConfig) are malformed.
    #[error("bad parameters of stream {stream}: {detail}")]
    Parameters {
        /// Index of the stream in the source's SDP.
        stream: usize,
        /// What is wrong.
        detail: String,
    },
    /// The source sent something that is not RTSP/RTP as it must be (garbage).
    #[error("{step}: malformed data from the source: {detail}")]
    Protocol {
        /// Where.
        step: PullStep,
        /// retina's description (first line).
        detail: String,
    },
    /// The connection broke (reset, closed mid-message, a socket error).
    #[error("{step}: connection lost: {detail}")]
    Connection {
        /// Where.
        step: PullStep,
        /// retina's description (first line).
        detail: String,
    },
    /// Anything else retina refused.
    #[error("{step}: {detail}")]
    Other {
        /// Where.
        step: PullStep,
        /// retina's description (first line).
        detail: String,
    },
}

impl PullError {
    /// Sorts a retina error from `step` into a variant. retina's error is opaque but for the
    /// status code; the kind is read from its message's fixed prefix (`retina` is pinned to
    /// one version in Cargo.toml, and `tests/ingest_pull.rs` checks each kind against real
    /// peers).
    fn from_retina(step: PullStep, e: &retina::Error) -> Self {
        if let Some(status) = e.status_code() {
            if status == 401 {
                return PullError::Unauthorized(step);
            }
            return PullError::Status {
                step,
                status,
                detail: first_line(&e.to_string()),
            };
        }
        let text = e.to_string();
        let detail = first_line(&text);
        if let Some(rest) = text.strip_prefix("Unable to connect to RTSP server: ") {
            PullError::Connect(first_line(rest))
        } else if text.starts_with("Invalid argument: ") {
            PullError::BadUrl(detail)
        } else if text.starts_with("Error reading from RTSP peer")
            || text.starts_with("Error writing to RTSP peer")
            || text.starts_with("Error receiving UDP packet")
        {
            PullError::Connection { step, detail }
        } else if text.starts_with("RTSP framing error")
            || text.starts_with("Received interleaved data on unassigned channel")
            || text.contains("\npkt: ")
        {
            PullError::Protocol { step, detail }
        } else {
            PullError::Other { step, detail }
        }
    }

    /// A short label of the kind, for metrics and tests (`connect`, `unauthorized`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            PullError::BadUrl(_) => "bad_url",
            PullError::Connect(_) => "connect",
            PullError::Unauthorized(_) => "unauthorized",
            PullError::Status { .. } => "status",
            PullError::Timeout { .. } => "timeout",
            PullError::NoUsableTrack(_) => "no_usable_track",
            PullError::Parameters { .. } => "parameters",
            PullError::Protocol { .. } => "protocol",
            PullError::Connection { .. } => "connection",
            PullError::Other { .. } => "other",
        }
    }
}

/// The first line of a retina message (the rest is connection context over several lines).
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// `url` without its userinfo, for log lines (credentials never reach a log).
pub fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    // Only URLs that cannot have a userinfo (`mailto:`) refuse these, and those have none.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Credentials in `url`'s userinfo, percent-decoded (RFC 3986 §3.2.1, §2.1), and the URL
/// without them (retina refuses URLs that carry credentials).
fn split_credentials(url: &Url) -> Result<(Url, Option<Credentials>), PullError> {
    if url.scheme() != "rtsp" {
        return Err(PullError::BadUrl(format!(
            "scheme {:?}: only rtsp is pulled",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(PullError::BadUrl("no host".into()));
    }
    let decode = |s: &str| -> Result<String, PullError> {
        percent_decode(s).ok_or_else(|| PullError::BadUrl("credentials are not UTF-8".into()))
    };
    let creds = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        Some(Credentials {
            username: decode(url.username())?,
            password: decode(url.password().unwrap_or(""))?,
        })
    };
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    Ok((bare, creds))
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); `None` if the result is not UTF-8. A `%` not
/// followed by two hex digits stays as it is (`url` has already checked the syntax).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |k: usize| bytes.get(k).and_then(|&c| (c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What retina's SDP says about a stream: a track we carry, or why not.
fn classify_stream(media: &str, encoding: &str) -> Result<TrackKind, String> {
    // retina lowercases encoding names; the SDP's media is compared as given (RFC 8866 §5.14).
    match (media.to_ascii_lowercase().as_str(), encoding) {
        ("video", "h264") => Ok(TrackKind::Video),
        ("audio", "mpeg4-generic") => Ok(TrackKind::Audio),
        (m, e) => Err(format!("{m}/{e} is not carried (H.264 and AAC are)")),
    }
}

/// A stream's parameters as retina reports them, reduced to the bytes and numbers a
/// [`LogTrackSpec`] is built from.
#[derive(Debug, Clone, Copy)]
enum Params<'a> {
    /// An AVCDecoderConfigurationRecord and the picture's width and height.
    H264 {
        avcc: &'a [u8],
        width: u32,
        height: u32,
    },
    /// An AudioSpecificConfig, the RTP clock rate and the SDP's channel count.
    Aac {
        asc: &'a [u8],
        clock_rate_hz: u32,
        channels: u16,
    },
}

/// The track a stream's parameters describe, checked: H.264 with 4-byte NAL lengths (the
/// framing [`Frame`] requires, ISO/IEC 14496-15 §5.3.3.1.2 `lengthSizeMinusOne` = 3), AAC
/// with a parseable AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) timed in the RTP clock
/// (RFC 3640 §3.2.1).
fn spec_from_params(params: Params<'_>) -> Result<LogTrackSpec, String> {
    match params {
        Params::H264 {
            avcc,
            width,
            height,
        } => {
            let w = u16::try_from(width).map_err(|_| format!("width {width}"))?;
            let h = u16::try_from(height).map_err(|_| format!("height {height}"))?;
            let config = parse_avc_decoder_config(avcc, w, h).map_err(|e| e.to_string())?;
            if config.nal_length_size != 4 {
                return Err(format!(
                    "NAL length size {} (4 expected)",
                    config.nal_length_size
                ));
            }
            Ok(LogTrackSpec {
                kind: TrackKind::Video,
                codec: Codec::H264(config),
            })
        }
        Params::Aac {
            asc,
            clock_rate_hz,
            channels,
        } => {
            if clock_rate_hz == 0 {
                return Err("clock rate 0".into());
            }
            let mut config = parse_audio_specific_config(asc, clock_rate_hz, channels)
                .map_err(|e| e.to_string())?;
            // Frames are timed in the RTP clock, which may differ from the config's core
            // rate (implicit SBR signalling), as `ingest::sdp` does for ANNOUNCE.
            config.sample_rate_hz = clock_rate_hz;
            Ok(LogTrackSpec {
                kind: TrackKind::Audio,
                codec: Codec::Aac(config),
            })
        }
    }
}

/// The specs of the pulled streams (`pulled[k]` is retina's stream index of track `k`), or
/// `None` while some track's parameters are not yet known.
fn current_specs(
    streams: &[retina::client::Stream],
    pulled: &[usize],
) -> Result<Option<Vec<LogTrackSpec>>, PullError> {
    let mut specs = Vec::with_capacity(pulled.len());
    for &i in pulled {
        let Some(stream) = streams.get(i) else {
            return Ok(None);
        };
        let params = match stream.parameters() {
            Some(ParametersRef::Video(v)) => {
                let (width, height) = v.pixel_dimensions();
                Params::H264 {
                    avcc: v.extra_data(),
                    width,
                    height,
                }
            }
            Some(ParametersRef::Audio(a)) => Params::Aac {
                asc: a.extra_data(),
                clock_rate_hz: stream.clock_rate_hz(),
                channels: a.channels().get(),
            },
            Some(ParametersRef::Message(_)) => {
                return Err(PullError::Parameters {
                    stream: i,
                    detail: "not audio or video".into(),
                })
            }
            None => return Ok(None),
        };
        let spec = spec_from_params(params)
            .map_err(|detail| PullError::Parameters { stream: i, detail })?;
        specs.push(spec);
    }
    Ok(Some(specs))
}

/// Pulls `url` over `transport` with the default time limits until the source ends the
/// stream (`Ok`) or something fails; events go to `tx` as they come. See the module doc.
pub async fn pull_source(
    url: Url,
    transport: PullTransport,
    tx: impl FnMut(PullEvent<'_>),
) -> Result<(), PullError> {
    pull_source_with(url, PullOptions::new(transport), tx).await
}

/// `fut`'s retina result within `after`, each failure sorted by `step`.
async fn bounded<T>(
    step: PullStep,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T, retina::Error>>,
) -> Result<T, PullError> {
    match tokio::time::timeout(after, fut).await {
        Err(_) => Err(PullError::Timeout { step, after }),
        Ok(r) => r.map_err(|e| PullError::from_retina(step, &e)),
    }
}

/// [`pull_source`] with explicit [`PullOptions`].
pub async fn pull_source_with(
    url: Url,
    options: PullOptions,
    mut tx: impl FnMut(PullEvent<'_>),
) -> Result<(), PullError> {
    let (url, creds) = split_credentials(&url)?;
    let session_options = SessionOptions::default()
        .creds(creds)
        .user_agent(SERVER_NAME.to_string());

    // RFC 2326 §10.2 DESCRIBE (retina connects first; one bound covers both).
    let mut session = bounded(
        PullStep::Describe,
        options.describe_timeout,
        Session::describe(url, session_options),
    )
    .await?;

    // Choose the streams we carry; say why for the others.
    let mut pulled = Vec::new();
    let mut skipped = Vec::new();
    for (i, s) in session.streams().iter().enumerate() {
        match classify_stream(s.media(), s.encoding_name()) {
            Ok(_) => pulled.push(i),
            Err(reason) => {
                skipped.push(format!("stream {i}: {reason}"));
                tx(PullEvent::Skipped { stream: i, reason });
            }
        }
    }
    if pulled.is_empty() {
        let why = if skipped.is_empty() {
            "the SDP has no streams".to_string()
        } else {
            skipped.join("; ")
        };
        return Err(PullError::NoUsableTrack(why));
    }

    // RFC 2326 §10.4 SETUP, one stream at a time (each adopts the previous answer's Session).
    let transport = match options.transport {
        PullTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
        PullTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
    };
    // MP4 sample framing (4-byte NAL lengths, raw AAC) with SPS and PPS before every
    // keyframe: a viewer joining at any keyframe of the log can decode, even after a
    // mid-stream change of parameters.
    let format = FrameFormat {
        parameter_set_insertion: ParameterSetInsertion::EachKeyFrame,
        ..FrameFormat::MP4
    };
    for &i in &pulled {
        let setup = session.setup(
            i,
            SetupOptions::default()
                .transport(transport.clone())
                .frame_format(format),
        );
        bounded(PullStep::Setup, options.request_timeout, setup).await?;
    }

    // RFC 2326 §10.5 PLAY. Timestamps from RTP-Info when every stream has one, else from
    // the first packet: cameras often omit or garble `rtptime` (RFC 2326 §12.33).
    let play = session.play(
        PlayOptions::default()
            .initial_timestamp(retina::client::InitialTimestampPolicy::Permissive),
    );
    let playing = bounded(PullStep::Play, options.request_timeout, play).await?;
    let mut demuxed = playing
        .demuxed()
        .map_err(|e| PullError::from_retina(PullStep::Play, &e))?;

    let mut track_of = vec![None; demuxed.streams().len()];
    for (k, &i) in pulled.iter().enumerate() {
        if let Some(slot) = track_of.get_mut(i) {
            *slot = Some(k);
        }
    }
    let mut tracks: Option<Vec<LogTrackSpec>> = None;
    if let Some(specs) = current_specs(demuxed.streams(), &pulled)? {
        tx(PullEvent::Tracks(specs.clone()));
        tracks = Some(specs);
    }
    let mut deadline = tokio::time::Instant::now() + options.frame_timeout;
    loop {
        let step = if tracks.is_some() {
            PullStep::Media
        } else {
            PullStep::Parameters
        };
        let item = match tokio::time::timeout_at(deadline, demuxed.next()).await {
            Err(_) => {
                return Err(PullError::Timeout {
                    step,
                    after: options.frame_timeout,
                })
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(PullError::from_retina(step, &e)),
            Ok(Some(Ok(item))) => item,
        };
        let (stream, new_params, pts, sync, data) = match &item {
            CodecItem::VideoFrame(f) => (
                f.stream_id(),
                f.has_new_parameters(),
                f.timestamp().timestamp(),
                f.is_random_access_point(),
                f.data(),
            ),
            CodecItem::AudioFrame(f) => (
                f.stream_id(),
                false,
                f.timestamp().timestamp(),
                true,
                f.data(),
            ),
            CodecItem::Rtcp(rtcp) => {
                // retina unfolds a sender report's RTP time onto the stream's timeline (the
                // frames' timestamps) and keeps the compound's raw bytes.
                let (Some(at), Some(track)) = (
                    rtcp.rtp_timestamp(),
                    track_of.get(rtcp.stream_id()).copied().flatten(),
                ) else {
                    continue;
                };
                let report = rtcp
                    .pkts()
                    .find_map(|p| p.as_sender_report().ok().flatten());
                if let (Some(sr), Some(_)) = (report, tracks.as_ref()) {
                    tx(PullEvent::SenderReport {
                        track,
                        pts: at.timestamp(),
                        ntp: NtpTime(sr.ntp_timestamp().0),
                    });
                }
                continue;
            }
            // Message streams we never set up.
            _ => continue,
        };
        let Some(track) = track_of.get(stream).copied().flatten() else {
            continue;
        };
        if tracks.is_some() {
            deadline = tokio::time::Instant::now() + options.frame_timeout;
        }
        // retina's parameters reflect every frame it has returned, this one included.
        if tracks.is_none() || new_params {
            if let Some(specs) = current_specs(demuxed.streams(), &pulled)? {
                if tracks.as_ref() != Some(&specs) {
                    tx(PullEvent::Tracks(specs.clone()));
                    if tracks.is_none() {
                        deadline = tokio::time::Instant::now() + options.frame_timeout;
                    }
                    tracks = Some(specs);
                }
            }
        }
        if tracks.is_none() {
            // Before every track is described its frames cannot be logged; the
            // `Parameters` bound ends a source that never describes them.
            continue;
        }
        if data.len() > MAX_ACCESS_UNIT {
            tx(PullEvent::Dropped {
                track,
                reason: DropReason::TooLarge,
            });
            continue;
        }
        tx(PullEvent::Frame(Frame {
            track,
            pts,
            // RTP carries presentation times only (RFC 6184 §5.1); the log keeps decode
            // times monotonic.
            dts: pts,
            sync,
            data,
        }));
    }
}
