//! RTMP publishing: one TCP connection of an encoder (OBS, ffmpeg `-f flv rtmp://…`) as a
//! sans-IO state machine, [`RtmpConnection`]: bytes in, [`RtmpEvent`]s out (bytes to write
//! back, a publish request to authorize, the track list, access units, the end of the stream).
//! The shell owns the socket and the clock; nothing here blocks or reads the time.
//!
//! Layers: the handshake (Adobe RTMP 1.0 §5.2) and the chunk stream, protocol control and
//! command messages (§5.3, §5.4, §7) are `rml_rtmp`'s `Handshake` and `ServerSession`, behind
//! the guard in [`chunk`] that refuses the inputs on which rml 0.8 panics or buffers without
//! bound; the FLV tag bodies inside audio/video messages (FLV spec 10.1 Annex E.4) are read by
//! [`flv`] and turned into [`crate::ingest::Frame`]s.
//!
//! **Why `rml_rtmp`.** It is sans-IO (the handshake and the session take byte slices and
//! return packets and events, so it fits the control thread's shell like `rtsp::session`
//! does), it has been on crates.io since 2017 and is the RTMP layer of mmids, a Rust live
//! video server that takes OBS and ffmpeg publishers, and it builds offline from crates.io
//! (its dependencies are in the lock file; `cargo fetch` needs nothing else). Considered:
//! `scuffle-rtmp` and xiu's `rtmp` (both drive tokio sockets themselves, not sans-IO),
//! `shiguredo_rtmp` (sans-IO and dependency-free, but pre-release "canary" versions) and
//! `rtmp-runtime` (sans-IO ingest, but new and little used). The price of rml is its panics on
//! crafted input, which [`chunk`] closes, and one copy of each message out of the chunks (its
//! `Bytes`, which frames then slice without another copy).
//!
//! **Track announcement rule.** The kinds a publisher will send are those its onMetaData
//! names (`videocodecid`, `audiocodecid`) plus those of any tag already received. [`Tracks`]
//! is emitted when each of those kinds has its sequence header (AVCDecoderConfigurationRecord,
//! AudioSpecificConfig) and either onMetaData or a coded frame has arrived (encoders send every
//! sequence header before the first coded frame, so without metadata the first coded frame
//! closes the set). A kind still without a sequence header 1 s of media time (RTMP
//! timestamps) after the first coded frame is given up on and the others are announced. Video,
//! when present, is track 0 and audio follows. A sequence header that differs from the
//! current one, or a kind that appears later, emits [`Tracks`] again with the whole list.
//! Coded frames before their track is announced are dropped and counted
//! ([`DropReason::Incomplete`]).
//!
//! **Timestamps.** RTMP timestamps are 32-bit milliseconds that wrap (§5.3.1.3, "timestamps
//! ... within 2^31 - 1 milliseconds of each other" are adjacent): each is unfolded to 64 bits
//! as the previous one plus the signed 32-bit difference. Video: dts = ms × 90 (90 kHz),
//! pts = (ms + CompositionTime) × 90. AAC: the sample rate clock; each frame is 1024 samples
//! (ISO/IEC 14496-3 AAC-LC/HE-AAC core frame), so a frame whose millisecond time is within
//! 1 ms of the previous frame's end gets exactly that end, and other frames (a gap, the
//! first) are placed at ms × rate / 1000: RTMP's rounding to milliseconds is undone.
//!
//! [`Tracks`]: RtmpEvent::Tracks

pub mod chunk;
pub mod flv;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent,
    ServerSessionResult, StreamMetadata,
};

use self::chunk::{ChunkError, ChunkGuard};
use self::flv::{AudioTag, FlvError, NaluError, VideoTag};
use crate::ingest::{DropReason, Frame};
use crate::media::track::{AacConfig, Codec, H264Config, TrackKind};

/// Bytes handed to rml per call: keeps its 32-bit received-bytes counter from overflowing
/// (window sizes are below 2^31, see [`chunk`]).
const FEED_BYTES: usize = 64 << 10;
/// Most bytes kept while a publish request waits for the shell's answer (a few seconds of a
/// high-bitrate stream; encoders send the opening and then wait or trickle).
pub const MAX_HELD_BYTES: usize = 4 << 20;
/// How long (media milliseconds after the first coded frame) to wait for a sequence header
/// onMetaData promised.
const ANNOUNCE_WAIT_MS: i64 = 1000;
/// Samples per AAC access unit (ISO/IEC 14496-3 §4.5.1.1: 1024 for AAC-LC and HE-AAC's core).
const AAC_FRAME_SAMPLES: i64 = 1024;

/// Why an RTMP connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The handshake (§5.2) failed: not RTMP, or a version other than 3.
    #[error("rtmp handshake: {0}")]
    Handshake(#[source] HandshakeError),
    /// The chunk stream was refused before rml saw it (see [`chunk`]).
    #[error("rtmp chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// rml could not read a message or answer it.
    #[error("rtmp session: {0}")]
    Session(#[source] ServerSessionError),
    /// The publisher sends a codec shardcast does not carry (names it).
    #[error("rtmp publisher: {0}")]
    Codec(FlvError),
    /// A second publish while one is pending or live on this connection.
    #[error("a second publish on one rtmp connection")]
    SecondPublish,
    /// `accept_publish`/`reject` named a request that is not the pending publish.
    #[error("no pending rtmp publish request {0}")]
    UnknownRequest(u32),
    /// More than [`MAX_HELD_BYTES`] arrived while a publish request waited for its answer.
    #[error(
        "rtmp publisher sent more than {MAX_HELD_BYTES} bytes before its publish was answered"
    )]
    Unanswered,
    /// An earlier error ended this connection.
    #[error("rtmp connection already failed")]
    Failed,
}

impl From<ServerSessionError> for RtmpError {
    fn from(e: ServerSessionError) -> Self {
        RtmpError::Session(e)
    }
}

/// One track of a publisher, as announced by [`RtmpEvent::Tracks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpTrack {
    /// Video or audio.
    pub kind: TrackKind,
    /// H.264 (with `nal_length_size` 4: frames are rewritten to it) or AAC.
    pub codec: Codec,
}

/// One access unit of a publisher; [`RtmpFrame::as_frame`] lends it as an `ingest::Frame`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpFrame {
    /// Index into the last [`RtmpEvent::Tracks`] list.
    pub track: usize,
    /// Presentation time in the track's clock (90 kHz video, the sample rate for AAC).
    pub pts: i64,
    /// Decode time in the same clock.
    pub dts: i64,
    /// Keyframe (video FrameType 1; every AAC frame).
    pub sync: bool,
    /// The access unit as an MP4 sample: 4-byte length-prefixed NAL units, or raw AAC. A slice
    /// of rml's message buffer, copied only when NAL lengths had to be rewritten.
    pub data: Bytes,
}

impl RtmpFrame {
    /// This frame as the `ingest::Frame` every source produces.
    pub fn as_frame(&self) -> Frame<'_> {
        Frame {
            track: self.track,
            pts: self.pts,
            dts: self.dts,
            sync: self.sync,
            data: &self.data,
        }
    }
}

/// Why a publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `deleteStream` or `closeStream` on the publishing stream.
    StreamClosed,
    /// `FCUnpublish` (sent by ffmpeg and OBS before `deleteStream`).
    Unpublished,
}

/// What [`RtmpConnection`] asks of its shell.
#[derive(Debug, Clone, PartialEq)]
pub enum RtmpEvent {
    /// Write these bytes to the peer, in order.
    Send(Vec<u8>),
    /// The peer wants to publish; answer with [`RtmpConnection::accept_publish`] or
    /// [`RtmpConnection::reject`].
    PublishRequested {
        /// The application name from `connect` (`live` in `rtmp://host/live/KEY`).
        app: String,
        /// The stream key without its query string.
        key: String,
        /// What followed `?` in the stream key (tokens), empty if nothing.
        query: String,
        /// Pass back to `accept_publish`/`reject`.
        request_id: u32,
    },
    /// The publisher's tracks (the whole list, indexes as [`RtmpFrame::track`] uses them).
    Tracks(Vec<RtmpTrack>),
    /// One access unit.
    Frame(RtmpFrame),
    /// The publish ended (the connection may still publish again).
    Closed {
        /// Which command ended it.
        reason: CloseReason,
    },
}

/// Where the connection is.
enum Phase {
    Handshake(Box<Handshake>),
    Session(Box<ServerSession>),
    Failed,
}

/// The publish on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    Idle,
    Pending(u32),
    Live,
}

/// Per-kind state of the media being published.
#[derive(Default)]
struct Media {
    /// onMetaData named a video / audio codec.
    meta_video: bool,
    meta_audio: bool,
    meta_seen: bool,
    meta_width: u16,
    meta_height: u16,
    /// A tag of this kind arrived.
    seen_video: bool,
    seen_audio: bool,
    video: Option<H264Config>,
    audio: Option<AacConfig>,
    /// Media time of the first coded frame (for the announcement wait).
    first_coded_ms: Option<i64>,
    /// Kinds in the last announced list, in index order.
    announced: Vec<TrackKind>,
    /// Last RTMP timestamp and its unfolded value.
    clock: Option<(u32, i64)>,
    /// Where the next AAC frame starts, in samples.
    next_audio_pts: Option<i64>,
}

/// One RTMP connection of a publisher (see the module doc).
pub struct RtmpConnection {
    phase: Phase,
    guard: ChunkGuard,
    app: String,
    publish: Publish,
    media: Media,
    drops: [u64; DropReason::ALL.len()],
    /// Guard-walked bytes that arrived while a publish was pending.
    held: Vec<u8>,
}

impl Default for RtmpConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl RtmpConnection {
    /// A connection waiting for the client's handshake (C0/C1).
    pub fn new() -> Self {
        Self {
            phase: Phase::Handshake(Box::new(Handshake::new(PeerType::Server))),
            guard: ChunkGuard::new(),
            app: String::new(),
            publish: Publish::Idle,
            media: Media::default(),
            drops: [0; DropReason::ALL.len()],
            held: Vec::new(),
        }
    }

    /// Frames dropped so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        let i = DropReason::ALL.iter().position(|&r| r == reason);
        i.and_then(|i| self.drops.get(i)).copied().unwrap_or(0)
    }

    /// Takes bytes read from the socket; events for them go to `out`. An error means the
    /// connection must be closed (after writing the `Send`s already in `out`); every later
    /// call fails with [`RtmpError::Failed`].
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<RtmpEvent>) -> Result<(), RtmpError> {
        let result = self.receive_inner(bytes, out);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn receive_inner(&mut self, bytes: &[u8], out: &mut Vec<RtmpEvent>) -> Result<(), RtmpError> {
        if let Phase::Handshake(hs) = &mut self.phase {
            match hs.process_bytes(bytes).map_err(RtmpError::Handshake)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    send(out, response_bytes);
                    return Ok(());
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    send(out, response_bytes);
                    let (session, results) = ServerSession::new(ServerSessionConfig::new())?;
                    self.phase = Phase::Session(Box::new(session));
                    self.results(results, out)?;
                    return self.feed(&remaining_bytes, out);
                }
            }
        }
        self.feed(bytes, out)
    }

    /// Hands chunk stream bytes to rml once the guard has walked them.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<RtmpEvent>) -> Result<(), RtmpError> {
        for piece in bytes.chunks(FEED_BYTES) {
            self.guard.check(piece)?;
            let splits = self.guard.splits().to_vec();
            self.run(piece, &splits, out)?;
        }
        Ok(())
    }

    /// Hands guard-walked bytes to rml: up to each command's end (`splits`), then the rest, so
    /// that a `connect` is accepted before rml reads the `publish` behind it in the same read.
    /// From a publish request on, bytes are held until the shell answers it: ffmpeg sends
    /// `publish`, `@setDataFrame` and the sequence headers back to back, and rml would drop
    /// media on a stream that is not yet publishing.
    fn run(
        &mut self,
        piece: &[u8],
        splits: &[usize],
        out: &mut Vec<RtmpEvent>,
    ) -> Result<(), RtmpError> {
        let mut start = 0;
        for end in splits.iter().copied().chain([piece.len()]) {
            if matches!(self.publish, Publish::Pending(_)) {
                return self.hold(&piece[start..]);
            }
            if end > start {
                let results = self.session()?.handle_input(&piece[start..end])?;
                self.results(results, out)?;
                start = end;
            }
        }
        if matches!(self.publish, Publish::Pending(_)) {
            return self.hold(&piece[start..]);
        }
        Ok(())
    }

    /// Keeps guard-walked bytes until the pending publish is answered (bounded).
    fn hold(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        if self.held.len() + bytes.len() > MAX_HELD_BYTES {
            return Err(RtmpError::Unanswered);
        }
        self.held.extend_from_slice(bytes);
        Ok(())
    }

    /// Feeds the bytes held while a publish was pending.
    fn release(&mut self, out: &mut Vec<RtmpEvent>) -> Result<(), RtmpError> {
        let held = std::mem::take(&mut self.held);
        let result = self.run(&held, &[], out);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn session(&mut self) -> Result<&mut ServerSession, RtmpError> {
        match &mut self.phase {
            Phase::Session(session) => Ok(session),
            _ => Err(RtmpError::Failed),
        }
    }

    /// Accepts the pending publish `request_id` (from [`RtmpEvent::PublishRequested`]). Bytes
    /// that arrived meanwhile are processed now: their events (tracks, frames) go to `out`.
    pub fn accept_publish(
        &mut self,
        request_id: u32,
        out: &mut Vec<RtmpEvent>,
    ) -> Result<(), RtmpError> {
        if self.publish != Publish::Pending(request_id) {
            return Err(RtmpError::UnknownRequest(request_id));
        }
        let results = self.session()?.accept_request(request_id)?;
        self.publish = Publish::Live;
        self.media = Media::default();
        self.results(results, out)?;
        self.release(out)
    }

    /// Refuses the pending publish `request_id` with `reason` (sent to the client in an
    /// `_error` with code `NetStream.Publish.Denied`). The shell should close the connection
    /// once the bytes are written; the client sees the reason. Bytes held meanwhile are
    /// processed (media in them is ignored).
    pub fn reject(
        &mut self,
        request_id: u32,
        reason: &str,
        out: &mut Vec<RtmpEvent>,
    ) -> Result<(), RtmpError> {
        if self.publish != Publish::Pending(request_id) {
            return Err(RtmpError::UnknownRequest(request_id));
        }
        let results =
            self.session()?
                .reject_request(request_id, "NetStream.Publish.Denied", reason)?;
        self.publish = Publish::Idle;
        self.results(results, out)?;
        self.release(out)
    }

    fn results(
        &mut self,
        results: Vec<ServerSessionResult>,
        out: &mut Vec<RtmpEvent>,
    ) -> Result<(), RtmpError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => send(out, packet.bytes),
                ServerSessionResult::RaisedEvent(event) => self.event(event, out)?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn event(
        &mut self,
        event: ServerSessionEvent,
        out: &mut Vec<RtmpEvent>,
    ) -> Result<(), RtmpError> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                // Every app may connect; the publish names app and key together for the shell.
                self.app = app_name;
                let results = self.session()?.accept_request(request_id)?;
                self.results(results, out)?;
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => {
                if self.publish != Publish::Idle {
                    return Err(RtmpError::SecondPublish);
                }
                self.publish = Publish::Pending(request_id);
                let (key, query) = match stream_key.split_once('?') {
                    Some((k, q)) => (k.to_owned(), q.to_owned()),
                    None => (stream_key, String::new()),
                };
                out.push(RtmpEvent::PublishRequested {
                    app: app_name,
                    key,
                    query,
                    request_id,
                });
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                // Publishers only: a player is refused at once (no request is left pending).
                let results = self.session()?.reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "this endpoint takes publishers only",
                )?;
                self.results(results, out)?;
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.close(CloseReason::StreamClosed, out);
            }
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. }
                if command_name == "FCUnpublish" =>
            {
                self.close(CloseReason::Unpublished, out);
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                self.metadata(&metadata);
            }
            // Media on a stream that is not publishing never gets here (rml drops it).
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } if self.publish == Publish::Live => {
                self.video(data, timestamp.value, out)?;
            }
            // Media on a stream that is not publishing never gets here (rml drops it).
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } if self.publish == Publish::Live => {
                self.audio(data, timestamp.value, out)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self, reason: CloseReason, out: &mut Vec<RtmpEvent>) {
        if self.publish == Publish::Live {
            self.publish = Publish::Idle;
            out.push(RtmpEvent::Closed { reason });
        }
    }

    fn metadata(&mut self, m: &StreamMetadata) {
        let media = &mut self.media;
        media.meta_seen = true;
        media.meta_video = m.video_codec_id.is_some();
        media.meta_audio = m.audio_codec_id.is_some();
        media.meta_width = m
            .video_width
            .and_then(|w| u16::try_from(w).ok())
            .unwrap_or(0);
        media.meta_height = m
            .video_height
            .and_then(|h| u16::try_from(h).ok())
            .unwrap_or(0);
    }

    fn count(&mut self, reason: DropReason) {
        if let Some(i) = DropReason::ALL.iter().position(|&r| r == reason) {
            self.drops[i] += 1;
        }
    }

    /// Unfolds a 32-bit RTMP timestamp (see the module doc).
    fn unfold(&mut self, ts: u32) -> i64 {
        let ms = match self.media.clock {
            None => i64::from(ts),
            Some((last, ext)) => ext.saturating_add(i64::from(ts.wrapping_sub(last) as i32)),
        };
        self.media.clock = Some((ts, ms));
        ms
    }

    fn video(&mut self, data: Bytes, ts: u32, out: &mut Vec<RtmpEvent>) -> Result<(), RtmpError> {
        self.media.seen_video = true;
        let tag = match flv::parse_video_tag(&data) {
            Ok(tag) => tag,
            Err(e @ FlvError::UnsupportedCodec(_)) => return Err(RtmpError::Codec(e)),
            Err(_) => {
                self.count(DropReason::Malformed);
                return Ok(());
            }
        };
        let ms = self.unfold(ts);
        match tag {
            VideoTag::Ignored => {}
            VideoTag::AvcSequenceHeader { record } => {
                let Ok(mut config) = flv::parse_avc_config(&data[record]) else {
                    self.count(DropReason::Malformed);
                    return Ok(());
                };
                if config.width == 0 || config.height == 0 {
                    config.width = self.media.meta_width;
                    config.height = self.media.meta_height;
                }
                let changed = self.media.video.as_ref() != Some(&config);
                self.media.video = Some(config);
                self.announce(changed, ms, out);
            }
            VideoTag::AvcNalus {
                keyframe,
                composition_time_ms,
                nalus,
            } => {
                self.coded(ms, out);
                let (Some(track), Some(config)) =
                    (self.track_of(TrackKind::Video), self.media.video.as_ref())
                else {
                    self.count(DropReason::Incomplete);
                    return Ok(());
                };
                let payload =
                    match flv::normalize_nalus(&data[nalus.clone()], config.nal_length_size) {
                        Ok(None) => data.slice(nalus),
                        Ok(Some(rewritten)) => Bytes::from(rewritten),
                        Err(NaluError::Malformed) => {
                            self.count(DropReason::Malformed);
                            return Ok(());
                        }
                        Err(NaluError::TooLarge) => {
                            self.count(DropReason::TooLarge);
                            return Ok(());
                        }
                    };
                let dts = ms.saturating_mul(90);
                let pts = ms
                    .saturating_add(i64::from(composition_time_ms))
                    .saturating_mul(90);
                out.push(RtmpEvent::Frame(RtmpFrame {
                    track,
                    pts,
                    dts,
                    sync: keyframe,
                    data: payload,
                }));
            }
        }
        Ok(())
    }

    fn audio(&mut self, data: Bytes, ts: u32, out: &mut Vec<RtmpEvent>) -> Result<(), RtmpError> {
        self.media.seen_audio = true;
        let tag = match flv::parse_audio_tag(&data) {
            Ok(tag) => tag,
            Err(e @ FlvError::UnsupportedCodec(_)) => return Err(RtmpError::Codec(e)),
            Err(_) => {
                self.count(DropReason::Malformed);
                return Ok(());
            }
        };
        let ms = self.unfold(ts);
        match tag {
            AudioTag::Ignored => {}
            AudioTag::AacSequenceHeader { config, stereo } => {
                let channels = if stereo { 2 } else { 1 };
                let Ok(config) = flv::parse_audio_specific_config(&data[config], channels) else {
                    self.count(DropReason::Malformed);
                    return Ok(());
                };
                let changed = self.media.audio.as_ref() != Some(&config);
                if changed {
                    self.media.next_audio_pts = None;
                }
                self.media.audio = Some(config);
                self.announce(changed, ms, out);
            }
            AudioTag::AacRaw { frame } => {
                self.coded(ms, out);
                let (Some(track), Some(config)) =
                    (self.track_of(TrackKind::Audio), self.media.audio.as_ref())
                else {
                    self.count(DropReason::Incomplete);
                    return Ok(());
                };
                if frame.is_empty() {
                    self.count(DropReason::Malformed);
                    return Ok(());
                }
                let rate = i64::from(config.sample_rate_hz);
                // ms × rate / 1000 in 128 bits: a crafted stream can push ms far out.
                let ticks = i128::from(ms) * i128::from(rate) / 1000;
                let ticks =
                    i64::try_from(ticks).unwrap_or(if ticks < 0 { i64::MIN } else { i64::MAX });
                let tolerance = rate / 1000 + 1;
                let pts = match self.media.next_audio_pts {
                    Some(next) if (ticks.saturating_sub(next)).abs() <= tolerance => next,
                    _ => ticks,
                };
                self.media.next_audio_pts = Some(pts.saturating_add(AAC_FRAME_SAMPLES));
                out.push(RtmpEvent::Frame(RtmpFrame {
                    track,
                    pts,
                    dts: pts,
                    sync: true,
                    data: data.slice(frame),
                }));
            }
        }
        Ok(())
    }

    /// Index of `kind` in the announced list.
    fn track_of(&self, kind: TrackKind) -> Option<usize> {
        self.media.announced.iter().position(|&k| k == kind)
    }

    /// A coded frame arrived at `ms`: it closes the set of kinds (see the module doc).
    fn coded(&mut self, ms: i64, out: &mut Vec<RtmpEvent>) {
        self.media.first_coded_ms.get_or_insert(ms);
        self.announce(false, ms, out);
    }

    /// Emits `Tracks` when the announcement rule is met and the list differs from the last
    /// one, or when `changed` (a new sequence header) touches an announced kind.
    fn announce(&mut self, changed: bool, ms: i64, out: &mut Vec<RtmpEvent>) {
        let m = &self.media;
        let closed = m.meta_seen || m.first_coded_ms.is_some();
        if !closed {
            return;
        }
        let waited = m
            .first_coded_ms
            .is_some_and(|first| ms.saturating_sub(first) >= ANNOUNCE_WAIT_MS);
        let want_video = m.meta_video || m.seen_video;
        let want_audio = m.meta_audio || m.seen_audio;
        let missing = (want_video && m.video.is_none()) || (want_audio && m.audio.is_none());
        if missing && !waited {
            return;
        }
        let mut tracks = Vec::with_capacity(2);
        if let Some(v) = &m.video {
            tracks.push(RtmpTrack {
                kind: TrackKind::Video,
                codec: Codec::H264(H264Config {
                    // Frames are rewritten to 4-byte lengths (`flv::normalize_nalus`).
                    nal_length_size: 4,
                    ..v.clone()
                }),
            });
        }
        if let Some(a) = &m.audio {
            tracks.push(RtmpTrack {
                kind: TrackKind::Audio,
                codec: Codec::Aac(a.clone()),
            });
        }
        let kinds: Vec<TrackKind> = tracks.iter().map(|t| t.kind).collect();
        if tracks.is_empty() || (kinds == m.announced && !changed) {
            return;
        }
        self.media.announced = kinds;
        out.push(RtmpEvent::Tracks(tracks));
    }
}

/// Appends bytes to write, joined with a `Send` just before them (one write instead of many).
fn send(out: &mut Vec<RtmpEvent>, bytes: Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    if let Some(RtmpEvent::Send(last)) = out.last_mut() {
        last.extend_from_slice(&bytes);
    } else {
        out.push(RtmpEvent::Send(bytes));
    }
}

/// Fuzz entry point: a fixed client handshake, then `data` cut into reads of sizes taken from
/// its first byte, every publish accepted; checks that no frame exceeds the access unit limit.
#[cfg(any(test, fuzzing))]
pub fn fuzz_rtmp(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut conn = RtmpConnection::new();
    let mut out = Vec::new();
    // C0 (version 3) and C1/C2 of zeros: rml takes a C1 without a digest as the original
    // (echo) handshake and does not verify C2.
    let mut hello = vec![3u8];
    hello.resize(1 + 2 * 1536, 0);
    if conn.receive(&hello, &mut out).is_err() {
        return;
    }
    let step = usize::from(ctl).max(1) * 7;
    for piece in rest.chunks(step) {
        out.clear();
        if conn.receive(piece, &mut out).is_err() {
            return;
        }
        for event in &out {
            match event {
                RtmpEvent::PublishRequested { request_id, .. } => {
                    let mut more = Vec::new();
                    if conn.accept_publish(*request_id, &mut more).is_err() {
                        return;
                    }
                }
                RtmpEvent::Frame(f) => {
                    assert!(f.data.len() <= crate::ingest::MAX_ACCESS_UNIT);
                    assert!(!f.data.is_empty());
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
