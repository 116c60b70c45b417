//! The control thread's aggregation of shard reports and RTCP receptions: per session, per
//! stream, per shard and for the whole server, plus a ten-minute history for charts.
//!
//! Single-threaded (owned by the control thread); shards never touch it. Views are plain
//! serializable structs: the JSON API (`docs/openapi.json`) is their serde form.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::window::{Quantiles, RollingHistogram, LATENESS_WINDOW};
use super::ShardCounters;
use super::{HlsViewerReport, SessionHandle, SessionMeta, ShardReport, TrackReception, Transport};
use crate::ids::{IoBackend, SessionId};

/// Seconds of history kept for the dashboard's charts (one point per second).
pub const HISTORY_POINTS: usize = 600;

/// Jitter and RTT distributions of one scope (a stream, a shard, the server).
#[derive(Debug, Clone)]
struct Scope {
    jitter: RollingHistogram,
    rtt: RollingHistogram,
}

impl Scope {
    fn new(now: Instant) -> Self {
        Self {
            jitter: RollingHistogram::new(now),
            rtt: RollingHistogram::new(now),
        }
    }

    fn record(&mut self, r: &TrackReception) {
        self.jitter.record_ms(r.jitter_ms);
        if let Some(rtt) = r.rtt_ms {
            self.rtt.record_ms(rtt);
        }
    }

    fn rotate(&mut self, now: Instant) {
        self.jitter.rotate(now);
        self.rtt.rotate(now);
    }
}

/// A session as the hub tracks it.
#[derive(Debug, Clone)]
struct SessionStats {
    meta: SessionMeta,
    since: SystemTime,
    packets_sent: u64,
    bytes_sent: u64,
    /// Counters and time of the previous shard report, for rates.
    rate_base: Option<(u64, u64, Instant)>,
    packets_per_sec: f64,
    bitrate_bps: f64,
    /// Latest report block per track.
    tracks: Vec<Option<TrackReception>>,
    reports_received: u64,
}

impl SessionStats {
    /// Current loss: the worst track's fraction lost in its latest report.
    fn loss_pct(&self) -> f64 {
        self.tracks
            .iter()
            .flatten()
            .map(TrackReception::loss_pct)
            .fold(0.0, f64::max)
    }

    fn worst(&self, f: impl Fn(&TrackReception) -> Option<f64>) -> Option<f64> {
        self.tracks.iter().flatten().filter_map(f).reduce(f64::max)
    }
}

/// One shard as the hub tracks it.
#[derive(Debug, Clone)]
struct ShardStats {
    counters: Arc<ShardCounters>,
    scope: Scope,
    lateness: RollingHistogram,
    rate_base: (u64, u64, u64, Instant),
    packets_per_sec: f64,
    bitrate_bps: f64,
    packets_per_syscall: f64,
}

/// RTCP counters of interleaved (`$`) frames, which the control thread digests itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InterleavedRtcp {
    /// RTCP frames received on odd interleaved channels.
    pub received: u64,
    /// Frames rejected by validation.
    pub invalid: u64,
    /// Report blocks naming an SSRC not of that session.
    pub unknown_ssrc: u64,
    /// Viewers that ended their session with an interleaved RTCP BYE.
    pub byes: u64,
    /// Interleaved BYEs ignored: they named no SSRC the viewer had reported from before.
    pub byes_refused: u64,
}

/// One ingested stream's cumulative counters, as the hub takes them once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestCounters<'a> {
    /// Stream path.
    pub stream: &'a str,
    /// Whether a publisher is on now.
    pub online: bool,
    /// Bytes of the frames written to the stream's log since it was created.
    pub bytes: u64,
    /// Video frames written since it was created.
    pub video_frames: u64,
}

/// One ingested stream's rates over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IngestRate {
    /// Bits per second of frames written.
    pub bitrate_bps: f64,
    /// Video frames per second.
    pub frames_per_sec: f64,
}

/// Rolling rates of one ingested stream: the counters of the previous sample and the rates
/// they gave.
#[derive(Debug, Clone, Copy)]
struct IngestMeter {
    base: (u64, u64, Instant),
    online: bool,
    rate: IngestRate,
}

impl IngestMeter {
    fn new(c: &IngestCounters<'_>, now: Instant) -> Self {
        Self {
            base: (c.bytes, c.video_frames, now),
            online: c.online,
            rate: IngestRate::default(),
        }
    }

    /// Rates over the interval since the previous sample. A counter below its base means a
    /// new log replaced the stream's (its counters start at zero): all of it is new.
    fn update(&mut self, c: &IngestCounters<'_>, now: Instant) {
        let (b0, f0, t0) = self.base;
        let secs = now.saturating_duration_since(t0).as_secs_f64();
        self.online = c.online;
        if secs <= 0.0 {
            return;
        }
        let delta = |v: u64, v0: u64| if v >= v0 { v - v0 } else { v };
        self.rate = IngestRate {
            bitrate_bps: delta(c.bytes, b0) as f64 * 8.0 / secs,
            frames_per_sec: delta(c.video_frames, f0) as f64 / secs,
        };
        self.base = (c.bytes, c.video_frames, now);
    }
}

/// The aggregate state.
#[derive(Debug)]
pub struct Hub {
    started: Instant,
    sessions: HashMap<SessionId, SessionStats>,
    /// HLS viewers by their `v=` id, from the shards' reports.
    hls_viewers: HashMap<u64, HlsViewerStats>,
    /// The API's handles of the sessions above.
    by_handle: HashMap<SessionHandle, SessionId>,
    shards: Vec<ShardStats>,
    streams: HashMap<String, Scope>,
    server: Scope,
    lateness: RollingHistogram,
    history: VecDeque<HistoryPoint>,
    /// RTCP that arrived interleaved on RTSP connections.
    pub interleaved_rtcp: InterleavedRtcp,
    /// Sessions ended through the API.
    pub sessions_ended_by_api: u64,
    /// Ingested streams' rates, by path.
    ingest: HashMap<String, IngestMeter>,
}

/// One point of the dashboard's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// Wall-clock time, milliseconds since the UNIX epoch.
    pub unix_ms: u64,
    /// Viewers (sessions on a shard).
    pub viewers: usize,
    /// RTP packets sent per second.
    pub packets_per_sec: f64,
    /// Megabits per second sent.
    pub mbps: f64,
    /// Mean current loss reported by viewers, weighted by their packet rate.
    pub loss_pct: f64,
    /// 95th percentile of reported jitter.
    pub jitter_p95_ms: f64,
    /// 95th percentile of round-trip time.
    pub rtt_p95_ms: f64,
    /// 99th percentile of pacing lateness.
    pub lateness_p99_ms: f64,
}

/// One track of a session, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackView {
    /// Position in the session's track list.
    pub track: u8,
    /// `video` or `audio`.
    pub kind: &'static str,
    /// Latest receiver report, if one arrived.
    pub reception: Option<TrackReception>,
}

/// One session, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionView {
    /// The session's opaque API handle (16 hex digits) — not its RTSP `Session` id, which
    /// only its owner knows.
    pub id: String,
    /// Stream name.
    pub stream: String,
    /// Viewer's RTSP connection address.
    pub peer: String,
    /// `udp` or `tcp`.
    pub transport: Transport,
    /// Shard streaming it.
    pub shard: usize,
    /// Start of playback, milliseconds since the UNIX epoch.
    pub since_unix_ms: u64,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP bytes sent.
    pub bytes_sent: u64,
    /// Current send rate.
    pub bitrate_bps: f64,
    /// Current loss (worst track, latest receiver report).
    pub loss_pct: f64,
    /// Packets lost in total as the viewer reports them (sum over tracks).
    pub packets_lost: i64,
    /// Worst track's latest jitter.
    pub jitter_ms: Option<f64>,
    /// Worst track's latest round-trip time.
    pub rtt_ms: Option<f64>,
    /// Receiver report blocks received.
    pub reports_received: u64,
    /// Per-track detail.
    pub tracks: Vec<TrackView>,
    /// HLS viewers: segments and parts served (`None` for RTSP sessions).
    pub segments_served: Option<u64>,
    /// HLS viewers: segments or parts asked for after they had left the live window, a
    /// stall the server can see (`None` for RTSP sessions).
    pub late_requests: Option<u64>,
}

/// How long the hub keeps an HLS viewer a shard stopped reporting.
const HLS_REPORT_GRACE: Duration = Duration::from_secs(3);

/// An HLS viewer, added up over the shards that served it.
#[derive(Debug)]
struct HlsViewerStats {
    since: SystemTime,
    /// (shard, its cumulative counts, when it last reported them).
    per_shard: Vec<(usize, HlsViewerReport, Instant)>,
    rate_base: Option<(u64, Instant)>,
    bitrate_bps: f64,
}

impl HlsViewerStats {
    fn bytes(&self) -> u64 {
        self.per_shard.iter().map(|(_, r, _)| r.bytes).sum()
    }

    /// The report most recently received (stream and address).
    fn latest(&self) -> Option<&HlsViewerReport> {
        self.per_shard
            .iter()
            .max_by_key(|(_, _, at)| *at)
            .map(|(_, r, _)| r)
    }

    fn view(&self, id: u64) -> Option<SessionView> {
        let (shard, latest, _) = self.per_shard.iter().max_by_key(|(_, _, at)| *at)?;
        let sum = |f: fn(&HlsViewerReport) -> u64| -> u64 {
            self.per_shard.iter().map(|(_, r, _)| f(r)).sum()
        };
        Some(SessionView {
            id: format!("{id:016X}"),
            stream: latest.stream.clone(),
            peer: latest.peer.to_string(),
            transport: Transport::Hls,
            shard: *shard,
            since_unix_ms: unix_ms(self.since),
            packets_sent: 0,
            bytes_sent: self.bytes(),
            bitrate_bps: self.bitrate_bps,
            loss_pct: 0.0,
            packets_lost: 0,
            jitter_ms: None,
            rtt_ms: None,
            reports_received: 0,
            tracks: Vec::new(),
            segments_served: Some(sum(|r| r.media_requests)),
            late_requests: Some(sum(|r| r.late_requests)),
        })
    }
}

/// Totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    /// RTP packets sent.
    pub rtp_packets: u64,
    /// RTP bytes sent.
    pub rtp_bytes: u64,
    /// Send syscalls (`io_uring_enter` for io_uring).
    pub send_syscalls: u64,
    /// RTP packets per send syscall.
    pub packets_per_syscall: f64,
    /// UDP GSO sends.
    pub gso_sends: u64,
    /// Datagrams inside GSO sends.
    pub gso_segments: u64,
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// RTP packets written to TCP connections (included in `rtp_packets`).
    pub tcp_packets: u64,
    /// Gathered `sendmsg` calls on TCP connections (included in `send_syscalls`).
    pub tcp_sends: u64,
    /// TCP RTP packets per `sendmsg` call.
    pub tcp_packets_per_send: f64,
    /// Media bytes that waited in a TCP connection's user-space backlog.
    pub tcp_backlogged_bytes: u64,
    /// HLS connections open now.
    pub hls_connections: u64,
    /// HLS requests answered.
    pub hls_requests: u64,
    /// HLS body bytes written (playlists, init segments, segments, parts).
    pub hls_bytes: u64,
    /// HLS requests for media that had left the live window (players that fell behind).
    pub hls_late_requests: u64,
    /// TCP viewers cut off for not reading.
    pub slow_viewers_dropped: u64,
    /// Viewers whose port answered ICMP unreachable.
    pub unreachable_viewers: u64,
    /// RTCP packets received (UDP and interleaved).
    pub rtcp_received: u64,
    /// RTCP packets rejected by validation.
    pub rtcp_invalid: u64,
    /// SRTCP from RTSPS viewers dropped (bad tag, replay, or no client key).
    pub srtcp_dropped: u64,
    /// RTCP packets from addresses that are no session's.
    pub rtcp_unknown_source: u64,
    /// Report blocks for SSRCs that are not the session's.
    pub rtcp_unknown_ssrc: u64,
    /// Viewers that ended their session with RTCP BYE.
    pub rtcp_byes: u64,
    /// RTCP BYEs ignored because they named no SSRC the viewer had reported from before
    /// (RFC 3550 §6.6).
    pub rtcp_byes_refused: u64,
    /// Shard reports dropped because the control thread's queue was full.
    pub reports_dropped: u64,
    /// Datagrams read from the shards' WebRTC ports (STUN, DTLS, SRTP).
    pub webrtc_received: u64,
    /// WebRTC datagrams dropped (unknown address or ICE username, no protocol of the port).
    pub webrtc_dropped: u64,
    /// WebRTC datagrams a session refused (wrong ICE password, failed DTLS, SRTCP with a bad tag or replayed).
    pub webrtc_refused: u64,
    /// SRTCP packets from WebRTC viewers that decrypted and validated (RFC 3711 §3.4).
    pub webrtc_srtcp: u64,
    /// Keyframe requests from WebRTC viewers honoured (PLI RFC 4585 §6.3.1, FIR RFC 5104 §4.3.1).
    pub webrtc_keyframe_requests: u64,
    /// Keyframe requests ignored: within 500 ms of the viewer's last honoured one.
    pub webrtc_keyframe_requests_ignored: u64,
    /// Sequence numbers WebRTC viewers reported lost (generic NACK, RFC 4585 §6.2.1).
    pub webrtc_nacked: u64,
    /// NACKed packets sent again from the session's history.
    pub webrtc_nacks_served: u64,
    /// NACKed packets not sent again (past the history, unknown SSRC, or a live log's).
    pub webrtc_nacks_missed: u64,
    /// Datagrams from viewers that are not RTCP (NAT keep-alives): liveness only.
    pub nat_keepalives: u64,
    /// Live samples packetized (once per shard for all of a channel's viewers).
    pub live_packetizations: u64,
}

/// One shard, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardView {
    /// Shard number.
    pub index: usize,
    /// Sessions it owns.
    pub viewers: usize,
    /// RTP packets per second.
    pub packets_per_sec: f64,
    /// Megabits per second.
    pub mbps: f64,
    /// Packets per send syscall over the last second.
    pub packets_per_syscall: f64,
    /// The send backend it uses now (`uring`, `sendmmsg`, `sendto`; after any fallback),
    /// `None` before its sender exists.
    pub io: Option<&'static str>,
    /// Whether it forms UDP GSO trains now.
    pub gso: bool,
    /// Send errors since start.
    pub send_errors: u64,
    /// Current loss reported by its viewers.
    pub loss_pct: f64,
    /// Pacing lateness distribution.
    pub lateness_ms: Quantiles,
    /// Jitter reported by its viewers.
    pub jitter_ms: Quantiles,
    /// Round-trip time to its viewers.
    pub rtt_ms: Quantiles,
}

/// One stream's viewers and quality, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatsView {
    /// Stream name.
    pub name: String,
    /// Viewers now.
    pub viewers: usize,
    /// Megabits per second sent to its viewers.
    pub mbps: f64,
    /// Current loss reported by its viewers.
    pub loss_pct: f64,
    /// Jitter reported by its viewers.
    pub jitter_ms: Quantiles,
    /// Round-trip time to its viewers.
    pub rtt_ms: Quantiles,
}

/// The whole server, as `GET /api/v1/stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsView {
    /// Seconds since the server started.
    pub uptime_secs: f64,
    /// Viewers now.
    pub viewers: usize,
    /// RTP packets per second.
    pub packets_per_sec: f64,
    /// Megabits per second.
    pub mbps: f64,
    /// Current loss reported by viewers, weighted by their packet rate.
    pub loss_pct: f64,
    /// Publishers sending now (ingested streams online).
    pub publishers: usize,
    /// Bits per second received from publishers over the last interval (frames written).
    pub ingest_bitrate_bps: f64,
    /// Jitter reported by viewers.
    pub jitter_ms: Quantiles,
    /// Round-trip time to viewers.
    pub rtt_ms: Quantiles,
    /// Pacing lateness of the data plane.
    pub lateness_ms: Quantiles,
    /// Totals since start.
    pub totals: Totals,
    /// Per shard.
    pub shards: Vec<ShardView>,
    /// Per stream with viewers.
    pub streams: Vec<StreamStatsView>,
    /// The last minutes, one point per second, oldest first.
    pub history: Vec<HistoryPoint>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Mean of `(value, weight)` pairs; a plain mean when every weight is zero.
fn weighted_mean(pairs: impl Iterator<Item = (f64, f64)> + Clone) -> f64 {
    let (sum, weights) = pairs
        .clone()
        .fold((0.0, 0.0), |(s, w), (v, wt)| (s + v * wt, w + wt));
    if weights > 0.0 {
        return sum / weights;
    }
    let (sum, n) = pairs.fold((0.0, 0usize), |(s, n), (v, _)| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

impl Hub {
    /// An empty hub for the given shards' counters.
    pub fn new(shard_counters: Vec<Arc<ShardCounters>>, now: Instant) -> Self {
        let shards = shard_counters
            .into_iter()
            .map(|counters| ShardStats {
                counters,
                scope: Scope::new(now),
                lateness: RollingHistogram::with_window(now, LATENESS_WINDOW),
                rate_base: (0, 0, 0, now),
                packets_per_sec: 0.0,
                bitrate_bps: 0.0,
                packets_per_syscall: 0.0,
            })
            .collect();
        Self {
            started: now,
            sessions: HashMap::new(),
            hls_viewers: HashMap::new(),
            by_handle: HashMap::new(),
            shards,
            streams: HashMap::new(),
            server: Scope::new(now),
            lateness: RollingHistogram::with_window(now, LATENESS_WINDOW),
            history: VecDeque::with_capacity(HISTORY_POINTS),
            interleaved_rtcp: InterleavedRtcp::default(),
            sessions_ended_by_api: 0,
            ingest: HashMap::new(),
        }
    }

    /// A session began playing.
    pub fn session_started(&mut self, meta: SessionMeta) {
        let tracks = vec![None; meta.track_kinds.len()];
        self.by_handle.insert(meta.handle, meta.id);
        self.sessions
            .entry(meta.id)
            .or_insert_with(|| SessionStats {
                meta,
                since: SystemTime::now(),
                packets_sent: 0,
                bytes_sent: 0,
                rate_base: None,
                packets_per_sec: 0.0,
                bitrate_bps: 0.0,
                tracks,
                reports_received: 0,
            });
    }

    /// A session ended (any reason).
    pub fn session_ended(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_handle.remove(&s.meta.handle);
        }
    }

    /// The session the API calls `handle`.
    pub fn session_of_handle(&self, handle: SessionHandle) -> Option<SessionId> {
        self.by_handle.get(&handle).copied()
    }

    /// Whether the hub knows the session.
    pub fn has_session(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Viewers of a stream now (RTSP sessions and HLS viewers).
    pub fn viewers_of(&self, stream: &str) -> usize {
        self.sessions
            .values()
            .filter(|s| s.meta.stream == stream)
            .count()
            + self
                .hls_viewers
                .values()
                .filter(|v| v.latest().is_some_and(|r| r.stream == stream))
                .count()
    }

    /// HLS viewers now.
    pub fn hls_viewer_count(&self) -> usize {
        self.hls_viewers.len()
    }

    /// Records report blocks received for a session (from a shard report or interleaved RTCP).
    pub fn record_receptions(&mut self, id: SessionId, receptions: &[TrackReception]) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let shard = s.meta.shard;
        let scope = self
            .streams
            .entry(s.meta.stream.clone())
            .or_insert_with(|| Scope::new(self.started));
        for r in receptions {
            if let Some(slot) = s.tracks.get_mut(usize::from(r.track)) {
                *slot = Some(*r);
                s.reports_received += 1;
                scope.record(r);
                self.server.record(r);
                if let Some(sh) = self.shards.get_mut(shard) {
                    sh.scope.record(r);
                }
            }
        }
    }

    /// Applies a shard's periodic report.
    pub fn apply_report(&mut self, report: &ShardReport, now: Instant) {
        if let Some(sh) = self.shards.get_mut(report.shard) {
            sh.lateness.add(&report.lateness_micros);
        }
        self.lateness.add(&report.lateness_micros);
        for d in &report.sessions {
            if let Some(s) = self.sessions.get_mut(&d.id) {
                if let Some((p0, b0, t0)) = s.rate_base {
                    let secs = now.saturating_duration_since(t0).as_secs_f64();
                    if secs > 0.0 {
                        s.packets_per_sec = d.packets_sent.saturating_sub(p0) as f64 / secs;
                        s.bitrate_bps = d.bytes_sent.saturating_sub(b0) as f64 * 8.0 / secs;
                    }
                }
                s.rate_base = Some((d.packets_sent, d.bytes_sent, now));
                s.packets_sent = d.packets_sent;
                s.bytes_sent = d.bytes_sent;
            }
            if !d.receptions.is_empty() {
                self.record_receptions(d.id, &d.receptions);
            }
        }
        for r in &report.hls_viewers {
            let v = self
                .hls_viewers
                .entry(r.id)
                .or_insert_with(|| HlsViewerStats {
                    since: SystemTime::now(),
                    per_shard: Vec::new(),
                    rate_base: None,
                    bitrate_bps: 0.0,
                });
            match v
                .per_shard
                .iter_mut()
                .find(|(sh, _, _)| *sh == report.shard)
            {
                Some(entry) => {
                    entry.1 = r.clone();
                    entry.2 = now;
                }
                None => v.per_shard.push((report.shard, r.clone(), now)),
            }
        }
    }

    /// Once a second: shard rates from their counters, window rotation, a history point.
    pub fn tick(&mut self, now: Instant) {
        for sh in &mut self.shards {
            let c = &sh.counters;
            let packets = c.packets.load(Ordering::Relaxed);
            let bytes = c.bytes.load(Ordering::Relaxed);
            let syscalls = c.syscalls.load(Ordering::Relaxed);
            let (p0, b0, s0, t0) = sh.rate_base;
            let secs = now.saturating_duration_since(t0).as_secs_f64();
            if secs > 0.0 {
                sh.packets_per_sec = packets.saturating_sub(p0) as f64 / secs;
                sh.bitrate_bps = bytes.saturating_sub(b0) as f64 * 8.0 / secs;
                let calls = syscalls.saturating_sub(s0);
                sh.packets_per_syscall = if calls == 0 {
                    0.0
                } else {
                    packets.saturating_sub(p0) as f64 / calls as f64
                };
            }
            sh.rate_base = (packets, bytes, syscalls, now);
            sh.scope.rotate(now);
            sh.lateness.rotate(now);
        }
        self.server.rotate(now);
        self.lateness.rotate(now);
        // An HLS viewer lives while a shard reports it (a shard stops VIEWER_IDLE after its
        // last request there); reports come every second.
        self.hls_viewers.retain(|_, v| {
            v.per_shard
                .retain(|(_, _, at)| now.saturating_duration_since(*at) < HLS_REPORT_GRACE);
            if v.per_shard.is_empty() {
                return false;
            }
            let bytes = v.bytes();
            if let Some((b0, t0)) = v.rate_base {
                let secs = now.saturating_duration_since(t0).as_secs_f64();
                if secs >= 1.0 {
                    v.bitrate_bps = bytes.saturating_sub(b0) as f64 * 8.0 / secs;
                    v.rate_base = Some((bytes, now));
                }
            } else {
                v.rate_base = Some((bytes, now));
            }
            true
        });
        let sessions = &self.sessions;
        self.streams.retain(|name, scope| {
            scope.rotate(now);
            sessions.values().any(|s| &s.meta.stream == name)
        });
        let stats = self.summary();
        if self.history.len() == HISTORY_POINTS {
            self.history.pop_front();
        }
        self.history.push_back(HistoryPoint {
            unix_ms: unix_ms(SystemTime::now()),
            viewers: stats.0,
            packets_per_sec: stats.1,
            mbps: stats.2,
            loss_pct: stats.3,
            jitter_p95_ms: self.server.jitter.quantiles().p95,
            rtt_p95_ms: self.server.rtt.quantiles().p95,
            lateness_p99_ms: self.lateness.quantiles().p99,
        });
    }

    /// (viewers, packets/s, Mbit/s, loss %) for the whole server.
    fn summary(&self) -> (usize, f64, f64, f64) {
        let pps = self.shards.iter().map(|s| s.packets_per_sec).sum();
        let mbps = self.shards.iter().map(|s| s.bitrate_bps).sum::<f64>() / 1e6;
        let loss = weighted_mean(
            self.sessions
                .values()
                .map(|s| (s.loss_pct(), s.packets_per_sec)),
        );
        (
            self.sessions.len() + self.hls_viewers.len(),
            pps,
            mbps,
            loss,
        )
    }

    fn view(s: &SessionStats) -> SessionView {
        SessionView {
            id: format!("{:016X}", s.meta.handle),
            stream: s.meta.stream.clone(),
            peer: s.meta.peer.to_string(),
            transport: s.meta.transport,
            shard: s.meta.shard,
            since_unix_ms: unix_ms(s.since),
            packets_sent: s.packets_sent,
            bytes_sent: s.bytes_sent,
            bitrate_bps: s.bitrate_bps,
            loss_pct: s.loss_pct(),
            packets_lost: s
                .tracks
                .iter()
                .flatten()
                .map(|r| i64::from(r.cumulative_lost))
                .sum(),
            jitter_ms: s.worst(|r| Some(r.jitter_ms)),
            rtt_ms: s.worst(|r| r.rtt_ms),
            reports_received: s.reports_received,
            tracks: s
                .tracks
                .iter()
                .enumerate()
                .map(|(i, r)| TrackView {
                    track: i as u8,
                    kind: s.meta.track_kinds.get(i).copied().unwrap_or("unknown"),
                    reception: *r,
                })
                .collect(),
            segments_served: None,
            late_requests: None,
        }
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Vec<SessionView> {
        let mut v: Vec<&SessionStats> = self.sessions.values().collect();
        v.sort_by_key(|s| (s.since, s.meta.id));
        let mut out: Vec<SessionView> = v.into_iter().map(Self::view).collect();
        let mut hls: Vec<(&u64, &HlsViewerStats)> = self.hls_viewers.iter().collect();
        hls.sort_by_key(|(id, v)| (v.since, **id));
        out.extend(hls.into_iter().filter_map(|(id, v)| v.view(*id)));
        out
    }

    /// One session.
    pub fn session(&self, handle: SessionHandle) -> Option<SessionView> {
        let id = self.session_of_handle(handle)?;
        self.sessions.get(&id).map(Self::view)
    }

    /// Totals since start, from the shards' counters and the interleaved RTCP counters.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for sh in &self.shards {
            let c = &sh.counters;
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            t.rtp_packets += get(&c.packets);
            t.rtp_bytes += get(&c.bytes);
            t.send_syscalls += get(&c.syscalls);
            t.gso_sends += get(&c.gso_sends);
            t.gso_segments += get(&c.gso_segments);
            t.send_errors += get(&c.send_errors);
            t.tcp_packets += get(&c.tcp_packets);
            t.tcp_sends += get(&c.tcp_sends);
            t.tcp_backlogged_bytes += get(&c.tcp_backlogged_bytes);
            t.hls_connections += get(&c.hls_connections);
            t.hls_requests += get(&c.hls_requests);
            t.hls_bytes += get(&c.hls_bytes);
            t.hls_late_requests += get(&c.hls_late_requests);
            t.slow_viewers_dropped += get(&c.slow_viewers_dropped);
            t.unreachable_viewers += get(&c.unreachable_viewers);
            t.rtcp_received += get(&c.rtcp_received);
            t.rtcp_invalid += get(&c.rtcp_invalid);
            t.srtcp_dropped += get(&c.srtcp_dropped);
            t.rtcp_unknown_source += get(&c.rtcp_unknown_source);
            t.rtcp_unknown_ssrc += get(&c.rtcp_unknown_ssrc);
            t.rtcp_byes += get(&c.rtcp_byes);
            t.rtcp_byes_refused += get(&c.rtcp_byes_refused);
            t.reports_dropped += get(&c.reports_dropped);
            t.webrtc_received += get(&c.webrtc_received);
            t.webrtc_dropped += get(&c.webrtc_dropped);
            t.webrtc_refused += get(&c.webrtc_refused);
            t.webrtc_srtcp += get(&c.webrtc_srtcp);
            t.webrtc_keyframe_requests += get(&c.webrtc_keyframe_requests);
            t.webrtc_keyframe_requests_ignored += get(&c.webrtc_keyframe_requests_ignored);
            t.webrtc_nacked += get(&c.webrtc_nacked);
            t.webrtc_nacks_served += get(&c.webrtc_nacks_served);
            t.webrtc_nacks_missed += get(&c.webrtc_nacks_missed);
            t.nat_keepalives += get(&c.nat_keepalives);
            t.live_packetizations += get(&c.live_packetizations);
        }
        t.rtcp_received += self.interleaved_rtcp.received;
        t.rtcp_invalid += self.interleaved_rtcp.invalid;
        t.rtcp_unknown_ssrc += self.interleaved_rtcp.unknown_ssrc;
        t.rtcp_byes += self.interleaved_rtcp.byes;
        t.rtcp_byes_refused += self.interleaved_rtcp.byes_refused;
        t.packets_per_syscall = if t.send_syscalls == 0 {
            0.0
        } else {
            t.rtp_packets as f64 / t.send_syscalls as f64
        };
        t.tcp_packets_per_send = if t.tcp_sends == 0 {
            0.0
        } else {
            t.tcp_packets as f64 / t.tcp_sends as f64
        };
        t
    }

    /// The whole picture for `GET /api/v1/stats`.
    pub fn stats(&self, now: Instant) -> StatsView {
        let (viewers, packets_per_sec, mbps, loss_pct) = self.summary();
        let loss_where = |pred: &dyn Fn(&SessionStats) -> bool| {
            weighted_mean(
                self.sessions
                    .values()
                    .filter(|s| pred(s))
                    .map(|s| (s.loss_pct(), s.packets_per_sec)),
            )
        };
        let shards = self
            .shards
            .iter()
            .enumerate()
            .map(|(index, sh)| ShardView {
                index,
                viewers: sh.counters.sessions.load(Ordering::Relaxed),
                packets_per_sec: sh.packets_per_sec,
                mbps: sh.bitrate_bps / 1e6,
                packets_per_syscall: sh.packets_per_syscall,
                io: sh.counters.send_backend().map(IoBackend::as_str),
                gso: sh.counters.gso.load(Ordering::Relaxed),
                send_errors: sh.counters.send_errors.load(Ordering::Relaxed),
                loss_pct: loss_where(&|s| s.meta.shard == index),
                lateness_ms: sh.lateness.quantiles(),
                jitter_ms: sh.scope.jitter.quantiles(),
                rtt_ms: sh.scope.rtt.quantiles(),
            })
            .collect();
        let mut names: Vec<&String> = self.streams.keys().collect();
        for s in self.sessions.values() {
            if !names.contains(&&s.meta.stream) {
                names.push(&s.meta.stream);
            }
        }
        names.sort();
        let streams = names
            .into_iter()
            .map(|name| {
                let of = |s: &&SessionStats| &s.meta.stream == name;
                let scope = self.streams.get(name);
                StreamStatsView {
                    name: name.clone(),
                    viewers: self.sessions.values().filter(of).count(),
                    mbps: self
                        .sessions
                        .values()
                        .filter(of)
                        .map(|s| s.bitrate_bps)
                        .sum::<f64>()
                        / 1e6,
                    loss_pct: loss_where(&|s| &s.meta.stream == name),
                    jitter_ms: scope.map(|s| s.jitter.quantiles()).unwrap_or_default(),
                    rtt_ms: scope.map(|s| s.rtt.quantiles()).unwrap_or_default(),
                }
            })
            .collect();
        StatsView {
            uptime_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            viewers,
            packets_per_sec,
            mbps,
            loss_pct,
            publishers: self.ingest.values().filter(|m| m.online).count(),
            ingest_bitrate_bps: self.ingest.values().map(|m| m.rate.bitrate_bps).sum(),
            jitter_ms: self.server.jitter.quantiles(),
            rtt_ms: self.server.rtt.quantiles(),
            lateness_ms: self.lateness.quantiles(),
            totals: self.totals(),
            shards,
            streams,
            history: self.history.iter().copied().collect(),
        }
    }

    /// Once a second: every ingested stream's counters. Rates are bytes and frames over the
    /// time since the previous sample; streams not in `streams` are forgotten.
    pub fn record_ingest<'a>(
        &mut self,
        streams: impl IntoIterator<Item = IngestCounters<'a>>,
        now: Instant,
    ) {
        let mut seen = std::collections::HashSet::new();
        for c in streams {
            match self.ingest.get_mut(c.stream) {
                Some(m) => m.update(&c, now),
                None => {
                    self.ingest
                        .insert(c.stream.to_owned(), IngestMeter::new(&c, now));
                }
            }
            seen.insert(c.stream);
        }
        self.ingest.retain(|name, _| seen.contains(name.as_str()));
    }

    /// An ingested stream's rates over the last interval (zero before two samples).
    pub fn ingest_rate(&self, stream: &str) -> IngestRate {
        self.ingest.get(stream).map(|m| m.rate).unwrap_or_default()
    }

    /// Cumulative (count, sum in seconds) of jitter, RTT and lateness observations, for
    /// Prometheus summaries: `[(name, count, sum_secs)]`.
    pub fn distribution_totals(&self) -> [(&'static str, u64, f64); 3] {
        let secs = |h: &RollingHistogram| h.total_sum_micros as f64 / 1e6;
        [
            (
                "jitter",
                self.server.jitter.total_count,
                secs(&self.server.jitter),
            ),
            ("rtt", self.server.rtt.total_count, secs(&self.server.rtt)),
            ("lateness", self.lateness.total_count, secs(&self.lateness)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::window::micros_histogram;
    use crate::stats::SessionDelta;
    use std::time::Duration;

    fn meta(id: SessionId, stream: &str, shard: usize) -> SessionMeta {
        SessionMeta {
            id,
            handle: !id,
            stream: stream.into(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            transport: Transport::Udp,
            shard,
            track_kinds: vec!["video", "audio"],
        }
    }

    fn reception(track: u8, fraction_lost: u8, jitter_ms: f64, rtt_ms: f64) -> TrackReception {
        TrackReception {
            track,
            fraction_lost,
            cumulative_lost: i32::from(fraction_lost),
            highest_seq: 100,
            jitter_ms,
            rtt_ms: Some(rtt_ms),
        }
    }

    #[test]
    fn reports_reach_sessions_streams_shards_and_server() {
        let t0 = Instant::now();
        let counters = vec![
            Arc::new(ShardCounters::default()),
            Arc::new(ShardCounters::default()),
        ];
        let mut hub = Hub::new(counters.clone(), t0);
        hub.session_started(meta(1, "sample", 0));
        hub.session_started(meta(2, "other", 1));
        let mut lateness = micros_histogram();
        lateness.record(3_000).unwrap();
        let report = ShardReport {
            shard: 0,
            lateness_micros: lateness,
            sessions: vec![SessionDelta {
                id: 1,
                packets_sent: 100,
                bytes_sent: 100_000,
                receptions: vec![reception(1, 128, 4.0, 20.0)],
            }],
            hls_viewers: vec![],
        };
        hub.apply_report(&report, t0);
        let later = ShardReport {
            sessions: vec![SessionDelta {
                id: 1,
                packets_sent: 200,
                bytes_sent: 200_000,
                receptions: vec![],
            }],
            lateness_micros: micros_histogram(),
            ..report
        };
        hub.apply_report(&later, t0 + Duration::from_secs(1));
        counters[0].packets.store(200, Ordering::Relaxed);
        counters[0].syscalls.store(20, Ordering::Relaxed);
        hub.tick(t0 + Duration::from_secs(1));

        // The API names a session by its handle, never by its RTSP session id.
        assert!(hub.session(1).is_none());
        let s = hub.session(!1).unwrap();
        assert_eq!(s.id, "FFFFFFFFFFFFFFFE");
        assert!((s.loss_pct - 50.0).abs() < 1e-9);
        assert_eq!(s.jitter_ms, Some(4.0));
        assert_eq!(s.rtt_ms, Some(20.0));
        assert!((s.bitrate_bps - 800_000.0).abs() < 1e-6);
        assert_eq!(s.tracks[0].reception, None);
        assert_eq!(s.tracks[1].kind, "audio");

        let st = hub.stats(t0 + Duration::from_secs(1));
        assert_eq!(st.viewers, 2);
        assert_eq!(st.totals.packets_per_syscall, 10.0);
        assert!((st.shards[0].packets_per_syscall - 10.0).abs() < 1e-9);
        assert!((st.jitter_ms.p50 - 4.0).abs() < 0.01);
        assert!((st.lateness_ms.max - 3.0).abs() < 0.01);
        assert_eq!(st.shards[1].jitter_ms.count, 0, "shard 1 had no reports");
        let sample = st.streams.iter().find(|s| s.name == "sample").unwrap();
        assert_eq!(sample.viewers, 1);
        assert_eq!(sample.rtt_ms.count, 1);
        assert_eq!(st.history.len(), 1);
        // Session 2 reports nothing and sends nothing: loss is the loss of session 1 only
        // when weighted by packet rate.
        assert!((st.loss_pct - 50.0).abs() < 1e-9, "{}", st.loss_pct);

        hub.session_ended(1);
        assert!(hub.session(!1).is_none());
        assert_eq!(hub.session_of_handle(!1), None);
        assert_eq!(hub.viewers_of("sample"), 0);
        // Receptions for unknown sessions are ignored.
        hub.record_receptions(1, &[reception(0, 255, 1.0, 1.0)]);
        assert_eq!(hub.stats(t0).jitter_ms.count, 1);
    }

    #[test]
    fn ingest_bitrate_is_bytes_over_the_last_interval() {
        let t0 = Instant::now();
        let mut hub = Hub::new(vec![Arc::new(ShardCounters::default())], t0);
        let c = |bytes, video_frames, online| IngestCounters {
            stream: "live/a",
            online,
            bytes,
            video_frames,
        };
        hub.record_ingest([c(1_000, 10, true)], t0);
        assert_eq!(
            hub.ingest_rate("live/a"),
            IngestRate::default(),
            "one sample"
        );
        assert_eq!(hub.stats(t0).publishers, 1);
        // 250 kB and 30 frames over 2 s: 1 Mbit/s, 15 fps.
        hub.record_ingest([c(251_000, 40, true)], t0 + Duration::from_secs(2));
        let r = hub.ingest_rate("live/a");
        assert!((r.bitrate_bps - 1_000_000.0).abs() < 1e-6, "{r:?}");
        assert!((r.frames_per_sec - 15.0).abs() < 1e-9, "{r:?}");
        // The rate covers the last interval only, not the average since the start.
        hub.record_ingest([c(263_500, 43, true)], t0 + Duration::from_secs(3));
        let r = hub.ingest_rate("live/a");
        assert!((r.bitrate_bps - 100_000.0).abs() < 1e-6, "{r:?}");
        assert!((hub.stats(t0).ingest_bitrate_bps - 100_000.0).abs() < 1e-6);
        // The publisher left: nothing arrives, the rate falls to zero, not a publisher.
        hub.record_ingest([c(263_500, 43, false)], t0 + Duration::from_secs(4));
        assert_eq!(hub.ingest_rate("live/a").bitrate_bps, 0.0);
        assert_eq!(hub.stats(t0).publishers, 0);
        // A new log replaced the stream's (counters from zero): all of it is new, never a
        // negative or wrapped rate.
        hub.record_ingest([c(5_000, 2, true)], t0 + Duration::from_secs(5));
        let r = hub.ingest_rate("live/a");
        assert!((r.bitrate_bps - 40_000.0).abs() < 1e-6, "{r:?}");
        // A second sample at the same instant changes nothing (no division by zero).
        hub.record_ingest([c(9_000, 2, true)], t0 + Duration::from_secs(5));
        assert!((hub.ingest_rate("live/a").bitrate_bps - 40_000.0).abs() < 1e-6);
        // A stream that is gone is forgotten.
        hub.record_ingest([], t0 + Duration::from_secs(6));
        assert_eq!(hub.ingest_rate("live/a"), IngestRate::default());
        let st = hub.stats(t0);
        assert_eq!((st.publishers, st.ingest_bitrate_bps), (0, 0.0));
    }

    proptest::proptest! {
        /// Any counters at any times (counters that jump back, samples at the same instant
        /// or out of order): rates stay finite and never negative, and nothing panics.
        #[test]
        fn ingest_rates_are_finite_and_never_negative(
            samples in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(),
                 0u64..5_000, proptest::prelude::any::<bool>()),
                1..40,
            )
        ) {
            let t0 = Instant::now();
            let mut hub = Hub::new(vec![], t0);
            for (bytes, video_frames, at_ms, online) in samples {
                let now = t0 + Duration::from_millis(at_ms);
                hub.record_ingest(
                    [IngestCounters { stream: "s", online, bytes, video_frames }],
                    now,
                );
                let r = hub.ingest_rate("s");
                proptest::prop_assert!(r.bitrate_bps.is_finite() && r.bitrate_bps >= 0.0);
                proptest::prop_assert!(r.frames_per_sec.is_finite() && r.frames_per_sec >= 0.0);
                let st = hub.stats(now);
                proptest::prop_assert_eq!(st.publishers, usize::from(online));
            }
        }
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let mut hub = Hub::new(vec![Arc::new(ShardCounters::default())], t0);
        for i in 0..(HISTORY_POINTS + 10) {
            hub.tick(t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(hub.stats(t0).history.len(), HISTORY_POINTS);
    }

    #[test]
    fn an_hls_viewer_served_by_two_shards_is_one_viewer_until_both_stop_reporting() {
        let t0 = Instant::now();
        let counters: Vec<Arc<ShardCounters>> = (0..2).map(|_| Arc::default()).collect();
        let mut hub = Hub::new(counters, t0);
        let viewer = |bytes, media_requests, late_requests| HlsViewerReport {
            id: 0xabc,
            stream: "ch".into(),
            peer: "127.0.0.1:4000".parse().unwrap(),
            bytes,
            playlists: 3,
            media_requests,
            late_requests,
        };
        let report = |shard, v: Vec<HlsViewerReport>| ShardReport {
            shard,
            lateness_micros: micros_histogram(),
            sessions: vec![],
            hls_viewers: v,
        };
        hub.apply_report(&report(0, vec![viewer(1_000, 2, 0)]), t0);
        hub.apply_report(&report(1, vec![viewer(500, 1, 1)]), t0);
        hub.tick(t0);
        assert_eq!(hub.viewers_of("ch"), 1);
        let s = hub.sessions();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].transport, Transport::Hls);
        assert_eq!(s[0].id, "0000000000000ABC");
        assert_eq!(
            (s[0].bytes_sent, s[0].segments_served, s[0].late_requests),
            (1_500, Some(3), Some(1))
        );
        // Shard 1 stops reporting it: its counts stay out; shard 0 still has the viewer.
        let t1 = t0 + Duration::from_secs(5);
        hub.apply_report(&report(0, vec![viewer(3_000, 4, 0)]), t1);
        hub.tick(t1);
        assert_eq!(hub.sessions()[0].bytes_sent, 3_000);
        hub.tick(t1 + Duration::from_secs(5));
        assert!(hub.sessions().is_empty(), "gone once no shard reports it");
        assert_eq!(hub.viewers_of("ch"), 0);
    }
}
