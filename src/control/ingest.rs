//! The ingest shell: publishers' RTP into live logs. The session core decides who publishes
//! what ([`PublishStart`]); this module owns what that takes at run time — the per-track
//! depacketizers, each stream's [`LogWriter`], the routes from `$` channels and UDP source
//! addresses to tracks — and the publisher timeout. It runs on the control thread: its work
//! is per publisher (a 2 Mbit/s stream is ~200 packets/s, each depacketized and copied once
//! into the log), never per viewer (docs/design/live-ingest.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::record::{Recording, StreamRecording, SyncOn};
use crate::ingest::depacketize::Depacketizer;
use crate::ingest::regroup::AacRegroup;
use crate::ingest::{DropReason, Frame};
use crate::live_log::{LiveLog, LogError, LogState, LogTrackSpec, LogWriter};
use crate::poll::Waker;
use crate::rendition::live::LiveOpus;
use crate::rtsp::session::{ConnId, IngestTransport, PublishStart};
use crate::shard::SessionId;
use crate::wire::ntp::NtpTime;

/// Where a received packet goes: a stream's track, RTP or RTCP.
#[derive(Debug, Clone)]
struct Route {
    path: String,
    publisher: SessionId,
    track: usize,
    rtcp: bool,
}

/// How a stream is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// RTSP ANNOUNCE/RECORD.
    Rtsp,
    /// RTMP publish.
    Rtmp,
    /// A configured source pulled over RTSP.
    Pull,
    /// A WebRTC publisher (WHIP, RFC 9725).
    Whip,
}

impl Protocol {
    /// The name in the API and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtsp => "rtsp",
            Protocol::Rtmp => "rtmp",
            Protocol::Pull => "pull",
            Protocol::Whip => "whip",
        }
    }
}

/// One ingested stream as the API shows it (taken once a second by statistics).
#[derive(Debug, Clone)]
pub(crate) struct IngestSnapshot {
    /// Stream path.
    pub(crate) path: String,
    /// How it is fed.
    pub(crate) protocol: Protocol,
    /// The publisher's address (the last one, when it is gone).
    pub(crate) peer: SocketAddr,
    /// Online, waiting for the publisher to return, or ended.
    pub(crate) state: LogState,
    /// Since when the current publisher is on (or since when it is gone).
    pub(crate) since: Instant,
    /// Codec names per track (`H.264`, `AAC`).
    pub(crate) codecs: Vec<&'static str>,
    /// Frames, bytes and video keyframes written to the log since it was created.
    pub(crate) frames: u64,
    /// Bytes of those frames.
    pub(crate) bytes: u64,
    /// Video keyframes among them.
    pub(crate) keyframes: u64,
    /// Video frames among them (for the frame rate).
    pub(crate) video_frames: u64,
    /// Time since the last video keyframe arrived (`None`: none yet, or no video).
    pub(crate) since_keyframe: Option<Duration>,
    /// Frames dropped, per `DropReason::ALL` (depacketizers and the log together).
    pub(crate) dropped: [u64; crate::ingest::DropReason::ALL.len()],
    /// RTP packets received and lost on the way in (sequence gaps), RTSP publishers only.
    pub(crate) packets: u64,
    /// Sequence numbers skipped.
    pub(crate) lost: u64,
    /// Largest interarrival jitter of its tracks, in milliseconds (RFC 3550 §6.4.1).
    pub(crate) jitter_ms: f64,
    /// Viewers that fell behind the log and jumped to its live edge.
    pub(crate) reader_skips: u64,
}

/// One ingested stream: its log and, while a publisher is on, its depacketizers.
struct Stream {
    protocol: Protocol,
    peer: SocketAddr,
    /// When the current publisher started (or the stream was created).
    since: Instant,
    writer: LogWriter,
    specs: Vec<LogTrackSpec>,
    publisher: Option<SessionId>,
    depacketizers: Vec<Depacketizer>,
    /// When the publisher last sent media.
    last_data: Instant,
    /// When the publisher left (viewers wait until the publisher timeout).
    gone_since: Option<Instant>,
    /// The current publisher's recording, when the path is recorded.
    recording: Option<StreamRecording>,
    /// Opus made of the stream's AAC for WebRTC viewers, when WebRTC is on.
    webrtc_audio: Option<WebRtcAudio>,
    /// The AAC track's frames held until they make one RTP packet, for sources that hand
    /// frames over one at a time (RTMP, pulled sources; `crate::ingest::regroup`).
    regroup: Option<AacRegroup>,
    /// What earlier publishers' depacketizers counted (packets, lost, drops per reason), so
    /// the stream's counters only grow as publishers come and go (`/metrics` counters and
    /// the API's totals are the stream's, like its frames and bytes).
    past: (u64, u64, [u64; DropReason::ALL.len()]),
}

impl Stream {
    /// Runs `op` on the stream's regrouping (if any) with a sink that appends what it
    /// releases, all in one log batch (the released frames become one packet's group).
    fn regrouped(
        &mut self,
        now: Instant,
        op: impl FnOnce(&mut AacRegroup, &mut dyn FnMut(&Frame<'_>)),
    ) {
        let Stream {
            writer,
            recording,
            webrtc_audio,
            regroup,
            ..
        } = self;
        let Some(r) = regroup.as_mut() else {
            return;
        };
        let wall = SystemTime::now();
        writer.begin_batch();
        op(r, &mut |f| {
            append(writer, (recording, webrtc_audio), f, now, wall)
        });
        writer.end_batch();
        flush_webrtc_audio(writer, webrtc_audio, now);
    }

    /// The publisher's depacketizers go (it left, or a new one takes over): their counts
    /// join the stream's past.
    fn retire_depacketizers(&mut self) {
        for d in self.depacketizers.drain(..) {
            let st = d.stats();
            self.past.0 += st.packets;
            self.past.1 += st.lost;
            for (sum, n) in self.past.2.iter_mut().zip(st.dropped) {
                *sum += n;
            }
        }
    }

    /// A source's sender report for `track`: the log's clock for it, and for the Opus made
    /// of it (the same instant in its 48 kHz time), so WebRTC viewers' reports keep the
    /// source's clock and its A/V sync.
    fn sender_report(&mut self, track: usize, pts: i64, ntp: NtpTime, now: Instant) {
        self.writer.sender_report(track, pts, ntp, now);
        if let Some(a) = self.webrtc_audio.as_ref().filter(|a| a.aac_track == track) {
            self.writer
                .sender_report(a.opus_track, a.opus_pts(pts), ntp, now);
        }
    }
}

/// A stream's AAC made into Opus as it arrives (`crate::rendition::live`), once per stream,
/// into the log's WebRTC-only track. Runs here, per publisher: 0.4 % of a core per stream
/// (`cargo bench --bench live_opus`: AAC decode and Opus encode of 47 frames a second).
struct WebRtcAudio {
    /// The log track of the source's AAC, and of its Opus.
    aac_track: usize,
    opus_track: usize,
    /// The AAC track's clock (its frames' `pts` scale).
    aac_rate: u32,
    live: LiveOpus,
    /// Opus frames made and not yet appended: (pts, length) and their bytes back to back
    /// (reused buffers).
    pending: Vec<(i64, usize)>,
    pending_bytes: Vec<u8>,
}

impl WebRtcAudio {
    /// For a stream of `specs` whose audio is AAC and that has no Opus of its own: the
    /// transcoder and the Opus track's spec. `None` otherwise, or when the AAC is a kind the
    /// decoder does not take (logged).
    fn for_tracks(path: &str, specs: &[LogTrackSpec]) -> Option<(WebRtcAudio, LogTrackSpec)> {
        use crate::media::track::Codec;
        if specs.iter().any(|t| matches!(t.codec, Codec::Opus(_))) {
            return None;
        }
        let (aac_track, aac) = specs.iter().enumerate().find_map(|(k, t)| match &t.codec {
            Codec::Aac(a) => Some((k, a)),
            _ => None,
        })?;
        match LiveOpus::new(aac) {
            Ok(live) => {
                let spec = LogTrackSpec {
                    kind: crate::media::track::TrackKind::Audio,
                    codec: Codec::Opus(live.config()),
                };
                let audio = WebRtcAudio {
                    aac_track,
                    opus_track: specs.len(),
                    aac_rate: aac.sample_rate_hz.max(1),
                    live,
                    pending: Vec::new(),
                    pending_bytes: Vec::new(),
                };
                Some((audio, spec))
            }
            Err(e) => {
                tracing::warn!(stream = %path, "no Opus for WebRTC viewers ({e}): they get no sound");
                None
            }
        }
    }

    /// The Opus track's time for the AAC track's `pts`.
    fn opus_pts(&self, pts: i64) -> i64 {
        let v = i128::from(pts) * 48_000 / i128::from(self.aac_rate);
        i64::try_from(v).unwrap_or(0)
    }
}

/// Appends `frame` to the log and hands it to the recording. A frame the log refuses as a
/// flood is not recorded either (a publisher faster than real time would fill the disk at
/// its own pace); every other frame is, whether or not the log took it (a viewer stalling
/// the log must not cut holes in the recording).
fn append(
    writer: &mut LogWriter,
    (recording, webrtc_audio): (&mut Option<StreamRecording>, &mut Option<WebRtcAudio>),
    frame: &Frame<'_>,
    now: Instant,
    wall: SystemTime,
) {
    let appended = writer.append(frame, now);
    if let Some(r) = recording.as_mut() {
        if appended != Err(DropReason::Flood) {
            r.push(frame, wall);
        }
    }
    if let Some(a) = webrtc_audio.as_mut().filter(|a| a.aac_track == frame.track) {
        if appended != Err(DropReason::Flood) {
            let WebRtcAudio {
                live,
                pending,
                pending_bytes,
                ..
            } = a;
            live.push(frame.pts, frame.data, &mut |opus| {
                pending.push((opus.pts, opus.data.len()));
                pending_bytes.extend_from_slice(opus.data);
            });
        }
    }
}

/// Appends the Opus frames made since the last call. Called after a publisher packet's
/// batch (its AAC frames must lie back to back in the ring to go out grouped in one packet,
/// as the publisher grouped them), or at once for a source without batches.
fn flush_webrtc_audio(
    writer: &mut LogWriter,
    webrtc_audio: &mut Option<WebRtcAudio>,
    now: Instant,
) {
    let Some(a) = webrtc_audio.as_mut() else {
        return;
    };
    let mut at = 0;
    for &(pts, len) in &a.pending {
        let data = a.pending_bytes.get(at..at + len).unwrap_or_default();
        at += len;
        let _ = writer.append(
            &Frame {
                track: a.opus_track,
                pts,
                dts: pts,
                sync: true,
                data,
            },
            now,
        );
    }
    a.pending.clear();
    a.pending_bytes.clear();
}

/// What the timer found: streams whose wait ended, publishers gone silent.
#[derive(Debug, Default)]
pub(crate) struct IngestTick {
    /// Streams whose publisher did not return in time: their logs ended.
    pub(crate) ended: Vec<String>,
    /// Publishers that sent nothing for the publisher timeout.
    pub(crate) silent: Vec<SessionId>,
}

/// The control thread's ingest state.
pub(crate) struct Ingest {
    wakers: Vec<Arc<Waker>>,
    payload_budget: usize,
    log_size: usize,
    timeout: Duration,
    streams: HashMap<String, Stream>,
    tcp_routes: HashMap<(ConnId, u8), Route>,
    udp_routes: HashMap<SocketAddr, Route>,
    /// RTCP packets received from publishers (sender reports are not yet relayed).
    pub(crate) rtcp_packets: u64,
    /// Packets from addresses or channels no publisher set up.
    pub(crate) unrouted: u64,
    /// Which streams are recorded, and retention (`None`: nothing is).
    recording: Option<Recording>,
    /// Whether streams with AAC get Opus for WebRTC viewers (WebRTC is on).
    webrtc_audio: bool,
    /// How long an RTMP or pulled stream's AAC frames may be held to group them.
    audio_hold: Duration,
}

impl Ingest {
    /// Ingest with the shards' wakers, the viewers' payload budget, each log's size and the
    /// publisher timeout.
    pub(crate) fn new(
        wakers: Vec<Arc<Waker>>,
        payload_budget: usize,
        log_size: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            wakers,
            payload_budget,
            log_size,
            timeout,
            streams: HashMap::new(),
            tcp_routes: HashMap::new(),
            udp_routes: HashMap::new(),
            rtcp_packets: 0,
            unrouted: 0,
            recording: None,
            webrtc_audio: false,
            audio_hold: Duration::ZERO,
        }
    }

    /// Holds a new RTMP or pulled stream's AAC frames up to `hold` so several go in one RTP
    /// packet (`crate::ingest::regroup`); zero turns it off.
    pub(crate) fn set_audio_hold(&mut self, hold: Duration) {
        self.audio_hold = hold;
    }

    /// The regrouping a stream of `protocol` with `specs` gets: sources whose AAC frames come
    /// one at a time (RTMP's FLV tags, a pulled source's depacketizer) and only when the
    /// hold is on. An RTSP or WHIP publisher's packets keep their own grouping (batches).
    fn regroup_for(&self, protocol: Protocol, specs: &[LogTrackSpec]) -> Option<AacRegroup> {
        if !matches!(protocol, Protocol::Rtmp | Protocol::Pull) {
            return None;
        }
        let (track, spec) = specs
            .iter()
            .enumerate()
            .find(|(_, t)| matches!(t.codec, crate::media::track::Codec::Aac(_)))?;
        let clock = spec.codec.clock_rate_hz();
        AacRegroup::new(track, clock, self.payload_budget, self.audio_hold)
    }

    /// Makes Opus of every new stream's AAC for WebRTC viewers (`rendition::live`).
    pub(crate) fn set_webrtc_audio(&mut self, on: bool) {
        self.webrtc_audio = on;
    }

    /// Records the streams `recording` says, from the next publisher on.
    pub(crate) fn set_recording(&mut self, recording: Recording) {
        self.recording = Some(recording);
    }

    /// Finishes every recording, waiting for their files' `fsync` (the server stops).
    pub(crate) fn finish_recordings(&mut self) {
        for s in self.streams.values_mut() {
            if let Some(r) = s.recording.take() {
                r.finish(SyncOn::Caller);
            }
        }
    }

    /// An RTSP publisher went live: its stream's log (see [`Ingest::open`]) and the routes of
    /// its tracks. Returns the log to publish in the catalog.
    pub(crate) fn start(
        &mut self,
        start: &PublishStart,
        now: Instant,
    ) -> Result<Arc<LiveLog>, IngestError> {
        let specs: Vec<LogTrackSpec> = start
            .tracks
            .iter()
            .map(|(t, _)| LogTrackSpec {
                kind: t.kind,
                codec: t.codec.clone(),
            })
            .collect();
        let depacketizers = start
            .tracks
            .iter()
            .enumerate()
            .map(|(k, (t, _))| Depacketizer::new(k, t))
            .collect();
        let log = self.open(
            start.id,
            &start.path,
            specs,
            depacketizers,
            (Protocol::Rtsp, start.peer),
            now,
        )?;
        for (track, (_, transport)) in start.tracks.iter().enumerate() {
            let route = |rtcp| Route {
                path: start.path.clone(),
                publisher: start.id,
                track,
                rtcp,
            };
            match transport {
                IngestTransport::Interleaved {
                    conn,
                    rtp_channel,
                    rtcp_channel,
                } => {
                    self.tcp_routes.insert((*conn, *rtp_channel), route(false));
                    self.tcp_routes.insert((*conn, *rtcp_channel), route(true));
                }
                IngestTransport::Udp {
                    rtp_from,
                    rtcp_from,
                } => {
                    self.udp_routes.insert(*rtp_from, route(false));
                    self.udp_routes.insert(*rtcp_from, route(true));
                }
            }
        }
        Ok(log)
    }

    /// Opens `path` for publisher `id` with `specs`: a waiting log with the same tracks (its
    /// publisher gone, or this publisher announcing again) is resumed, so viewers' numbering
    /// runs on; a log whose tracks differ is ended and replaced (its viewers need the new
    /// parameters from a new DESCRIBE); a path another publisher holds is refused.
    pub(crate) fn open(
        &mut self,
        id: SessionId,
        path: &str,
        specs: Vec<LogTrackSpec>,
        depacketizers: Vec<Depacketizer>,
        (protocol, peer): (Protocol, SocketAddr),
        now: Instant,
    ) -> Result<Arc<LiveLog>, IngestError> {
        let regroup = self.regroup_for(protocol, &specs);
        if let Some(s) = self.streams.get_mut(path) {
            if s.publisher.is_some_and(|p| p != id) {
                return Err(IngestError::Taken(path.to_owned()));
            }
            if s.specs == specs {
                if s.publisher.is_none() {
                    s.writer.resume();
                    tracing::info!(stream = %path, %peer, "publisher back: the stream continues");
                }
                // Each publisher's media goes to files of its own: its clocks start anew
                // (RFC 3550 §5.1), and the recorder's timeline follows one source's clocks.
                if let Some(r) = s.recording.take() {
                    r.finish(SyncOn::Helper);
                }
                s.recording = self.recording.as_ref().and_then(|r| r.start(path, &specs));
                s.regrouped(now, |r, emit| r.flush(emit));
                s.regroup = regroup;
                s.publisher = Some(id);
                (s.protocol, s.peer, s.since) = (protocol, peer, now);
                s.retire_depacketizers();
                s.depacketizers = depacketizers;
                s.gone_since = None;
                s.last_data = now;
                return Ok(s.writer.log().clone());
            }
            if let Some(mut old) = self.streams.remove(path) {
                if let Some(r) = old.recording.take() {
                    r.finish(SyncOn::Helper);
                }
                old.writer.log().set_state(LogState::Ended);
                tracing::info!(stream = %path, "the publisher's tracks changed: a new stream replaces the old one");
            }
        }
        let (webrtc_audio, opus_spec) = match self.webrtc_audio {
            true => WebRtcAudio::for_tracks(path, &specs).unzip(),
            false => (None, None),
        };
        let writer = LogWriter::create_with_webrtc_audio(
            path,
            &specs,
            opus_spec,
            self.log_size,
            self.payload_budget,
            self.wakers.clone(),
            now,
        )?;
        let codecs: Vec<&str> = specs.iter().map(|s| s.codec.name()).collect();
        tracing::info!(stream = %path, %peer, tracks = %codecs.join("+"), "publishing");
        let log = writer.log().clone();
        let recording = self.recording.as_ref().and_then(|r| r.start(path, &specs));
        self.streams.insert(
            path.to_owned(),
            Stream {
                protocol,
                peer,
                since: now,
                writer,
                specs,
                publisher: Some(id),
                depacketizers,
                last_data: now,
                gone_since: None,
                recording,
                webrtc_audio,
                regroup,
                past: (0, 0, [0; DropReason::ALL.len()]),
            },
        );
        Ok(log)
    }

    /// A frame from a source that is not RTP (RTMP, a pulled source), for publisher `id`.
    pub(crate) fn frame(&mut self, id: SessionId, path: &str, frame: &Frame<'_>, now: Instant) {
        if let Some(s) = self.streams.get_mut(path) {
            if s.publisher == Some(id) {
                s.last_data = now;
                if s.regroup.as_ref().is_some_and(|r| r.track() == frame.track) {
                    s.regrouped(now, |r, emit| r.push(frame, now, emit));
                    return;
                }
                // Any frame is a tick for the held audio: a source that stopped sending
                // audio does not keep its last group past the hold.
                s.regrouped(now, |r, emit| r.expire(now, emit));
                append(
                    &mut s.writer,
                    (&mut s.recording, &mut s.webrtc_audio),
                    frame,
                    now,
                    SystemTime::now(),
                );
                flush_webrtc_audio(&mut s.writer, &mut s.webrtc_audio, now);
            }
        }
    }

    /// A sender report from a source that is not an RTSP publisher (a pulled source): NTP time
    /// `ntp` is `track`'s timestamp `pts` (the scale of its frames' `pts`), for publisher `id`.
    pub(crate) fn sender_report(
        &mut self,
        id: SessionId,
        path: &str,
        (track, pts, ntp): (usize, i64, NtpTime),
        now: Instant,
    ) {
        if let Some(s) = self.streams.get_mut(path) {
            if s.publisher == Some(id) {
                s.sender_report(track, pts, ntp, now);
            }
        }
    }

    /// A publisher ended: its routes go; its stream waits for a new publisher.
    pub(crate) fn stop(&mut self, id: SessionId, path: &str, now: Instant) {
        self.tcp_routes.retain(|_, r| r.publisher != id);
        self.udp_routes.retain(|_, r| r.publisher != id);
        if let Some(s) = self.streams.get_mut(path) {
            if s.publisher == Some(id) {
                s.regrouped(now, |r, emit| r.flush(emit));
                s.publisher = None;
                s.retire_depacketizers();
                s.gone_since = Some(now);
                s.since = now;
                s.writer.log().set_state(LogState::Waiting);
                // The publisher's recording ends with it (a returning one starts new files).
                if let Some(r) = s.recording.take() {
                    r.finish(SyncOn::Helper);
                }
            }
        }
    }

    /// A `$` frame on connection `conn`: true if it was a publisher's (taken).
    pub(crate) fn interleaved(
        &mut self,
        conn: ConnId,
        channel: u8,
        packet: &[u8],
        now: Instant,
    ) -> bool {
        let Some(route) = self.tcp_routes.get(&(conn, channel)).cloned() else {
            return false;
        };
        self.ingest(&route, packet, now);
        true
    }

    /// A UDP datagram on the ingest ports from `from`, if an RTSP publisher set up that
    /// address: true when taken. Anything else is never trusted here (only a publisher's own
    /// set-up ports feed a stream); the caller offers it to WHIP, then counts it unrouted.
    pub(crate) fn udp(&mut self, from: SocketAddr, packet: &[u8], now: Instant) -> bool {
        match self.udp_routes.get(&from).cloned() {
            Some(route) => {
                self.ingest(&route, packet, now);
                true
            }
            None => false,
        }
    }

    /// An RTP packet (decrypted) for `track` of publisher `id`'s stream, whose depacketizers
    /// were given to [`Ingest::open`] (a WHIP publisher).
    pub(crate) fn rtp(
        &mut self,
        id: SessionId,
        path: &str,
        track: usize,
        packet: &[u8],
        now: Instant,
    ) {
        if self
            .streams
            .get(path)
            .is_some_and(|s| s.publisher == Some(id))
        {
            let route = Route {
                path: path.to_owned(),
                publisher: id,
                track,
                rtcp: false,
            };
            self.ingest(&route, packet, now);
        }
    }

    /// An RTCP compound (decrypted) from publisher `id`, whose tracks share one transport
    /// (BUNDLE): each track takes the sender reports of its own SSRC.
    pub(crate) fn rtcp(&mut self, id: SessionId, path: &str, packet: &[u8], now: Instant) {
        let tracks = match self.streams.get(path) {
            Some(s) if s.publisher == Some(id) => s.depacketizers.len(),
            _ => return,
        };
        self.rtcp_packets += 1;
        for track in 0..tracks {
            let route = Route {
                path: path.to_owned(),
                publisher: id,
                track,
                rtcp: true,
            };
            self.sender_reports(&route, packet, now);
        }
    }

    /// What publisher `id`'s depacketizers counted, per track with the sender's SSRC (for
    /// the receiver reports a WHIP publisher gets); empty unless `id` holds `path`.
    pub(crate) fn receive_stats(
        &self,
        id: SessionId,
        path: &str,
    ) -> Vec<(Option<u32>, crate::ingest::depacketize::DepacketizeStats)> {
        match self.streams.get(path) {
            Some(s) if s.publisher == Some(id) => s
                .depacketizers
                .iter()
                .map(|d| (d.ssrc(), *d.stats()))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn ingest(&mut self, route: &Route, packet: &[u8], now: Instant) {
        if route.rtcp {
            self.rtcp_packets += 1;
            self.sender_reports(route, packet, now);
            return;
        }
        let Some(s) = self.streams.get_mut(&route.path) else {
            return;
        };
        let Stream {
            writer,
            depacketizers,
            last_data,
            specs,
            recording,
            webrtc_audio,
            ..
        } = s;
        let Some(d) = depacketizers.get_mut(route.track) else {
            return;
        };
        *last_data = now;
        // Arrival in the track's RTP clock, for the interarrival jitter (RFC 3550 §A.8).
        let clock = f64::from(specs[route.track].codec.clock_rate_hz());
        let arrival = (now
            .saturating_duration_since(writer.log().epoch)
            .as_secs_f64()
            * clock) as u64 as u32;
        let wall = SystemTime::now();
        // Frames that do not fit (flood, a stalled reader) are counted by the log. The frames
        // of one packet are published together, AAC frames keeping the publisher's grouping.
        writer.begin_batch();
        d.push_at(packet, Some(arrival), &mut |frame| {
            append(writer, (recording, webrtc_audio), &frame, now, wall);
        });
        writer.end_batch();
        flush_webrtc_audio(writer, webrtc_audio, now);
    }

    /// What the API shows of every stream (taken once a second).
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<IngestSnapshot> {
        use std::sync::atomic::Ordering::Relaxed;
        self.streams
            .iter()
            .map(|(path, s)| {
                let log = s.writer.log();
                let c = &log.counters;
                let mut dropped: [u64; crate::ingest::DropReason::ALL.len()] =
                    std::array::from_fn(|k| c.dropped[k].load(Relaxed) + s.past.2[k]);
                let (mut packets, mut lost, mut jitter_ms) = (s.past.0, s.past.1, 0f64);
                for (k, d) in s.depacketizers.iter().enumerate() {
                    let st = d.stats();
                    for (sum, n) in dropped.iter_mut().zip(st.dropped) {
                        *sum += n;
                    }
                    packets += st.packets;
                    lost += st.lost;
                    let clock = f64::from(s.specs[k].codec.clock_rate_hz().max(1));
                    jitter_ms = jitter_ms.max(f64::from(st.jitter_rtp_units) * 1000.0 / clock);
                }
                let key = c.last_keyframe_ns.load(Relaxed);
                IngestSnapshot {
                    path: path.clone(),
                    protocol: s.protocol,
                    peer: s.peer,
                    state: log.state(),
                    since: s.since,
                    codecs: s.specs.iter().map(|t| t.codec.name()).collect(),
                    frames: c.frames.load(Relaxed),
                    bytes: c.bytes.load(Relaxed),
                    keyframes: c.keyframes.load(Relaxed),
                    video_frames: log
                        .tracks
                        .iter()
                        .filter(|t| t.spec.kind == crate::media::track::TrackKind::Video)
                        .map(|t| t.published())
                        .sum(),
                    since_keyframe: (key > 0).then(|| {
                        now.saturating_duration_since(log.epoch + Duration::from_nanos(key - 1))
                    }),
                    dropped,
                    packets,
                    lost,
                    jitter_ms,
                    reader_skips: c.reader_skips.load(Relaxed),
                }
            })
            .collect()
    }

    /// A publisher's RTCP: its sender reports (RFC 3550 §6.4.1) give the log its clock, which
    /// the shards' own reports to viewers then carry. Other packets are ignored; an invalid
    /// compound (RFC 3550 §A.2) is dropped.
    fn sender_reports(&mut self, route: &Route, packet: &[u8], now: Instant) {
        let Some(s) = self.streams.get_mut(&route.path) else {
            return;
        };
        if route.track >= s.depacketizers.len() {
            return;
        }
        let Ok(packets) = crate::wire::rtcp::parse_compound(packet) else {
            return;
        };
        for p in packets {
            if let crate::wire::rtcp::RtcpPacket::SenderReport {
                ssrc,
                ntp,
                rtp_timestamp,
                ..
            } = p
            {
                let unfolded = s
                    .depacketizers
                    .get(route.track)
                    .and_then(|d| d.unfold_report(rtp_timestamp.0));
                match unfolded {
                    Some((sender, pts)) if sender == ssrc.0 => {
                        s.sender_report(route.track, pts, ntp, now);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Once a second: streams whose publisher did not come back end; silent publishers are
    /// reported (the caller ends them through the core).
    pub(crate) fn tick(&mut self, now: Instant) -> IngestTick {
        let mut tick = IngestTick::default();
        let timeout = self.timeout;
        for s in self.streams.values_mut() {
            s.regrouped(now, |r, emit| r.expire(now, emit));
        }
        self.streams.retain(|path, s| {
            if s.gone_since
                .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
            {
                s.writer.log().set_state(LogState::Ended);
                if let Some(r) = s.recording.take() {
                    r.finish(SyncOn::Helper);
                }
                tracing::info!(stream = %path, "publisher did not return within {timeout:?}: stream ended");
                tick.ended.push(path.clone());
                return false;
            }
            if let Some(id) = s.publisher {
                if now.saturating_duration_since(s.last_data) >= timeout {
                    tick.silent.push(id);
                }
            }
            true
        });
        if let Some(r) = self.recording.as_mut() {
            r.retention_if_due(now, SystemTime::now());
        }
        tick
    }
}

/// Why a publisher's stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    /// Another publisher holds the path.
    #[error("{0:?} is already being published")]
    Taken(String),
    /// The live log could not be created.
    #[error(transparent)]
    Log(#[from] LogError),
}
