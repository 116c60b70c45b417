//! A session as a shard sees it: per-track cursors into the sample table, RTP sequence and
//! timestamp state, and the media-time ↔ wall-clock mapping used for pacing.
//!
//! Timing model: while playing, media time `t` (seconds on the presentation timeline) is due
//! at `play_start + (t - play_start_npt)`. Samples are paced by their decode time (monotonic)
//! and stamped with their presentation time (RFC 6184 §5.1: the RTP timestamp is the
//! sampling/presentation timestamp of the access unit).
//!
//! Rates (stored media only, [`PlayRate`]): `Speed` divides the pacing, `(t -
//! play_start_npt) / speed`, timestamps untouched. Trick play (`Scale` ≠ 1, RFC 2326 §12.34)
//! sends the video track alone — its keyframes only when fast or backwards — and a frame
//! presented at media time `t` is due at `play_start + |t - play_start_npt| / |scale|` and
//! stamped with that delivery offset (`play_start_npt + |t - play_start_npt| / |scale|`), so
//! RTP time runs at the real-time rate players' jitter buffers expect; RTP-Info and Range map
//! it back to media time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::send::sock_addr;
use super::webrtc::WebRtcPeer;
use super::{
    Activity, PlayEnd, PlayRate, SessionId, SessionSetup, SrtpKeys, TcpSink, TrackDest, TrackSetup,
    TrackStart,
};
use crate::live::LiveChannel;
use crate::live_log::{LiveLog, Lookup};
use crate::media::track::{Track, TrackKind};
use crate::media::MediaFile;
use crate::packetize::{PacketizeError, Packetizer};
use crate::stats::{TrackKey, TrackReception, ViewerSsrcs, MAX_TRACKS};
use crate::webrtc::srtp::{MasterKey, SrtpProfile, SrtpReceiver, SrtpSender};
use crate::wire::ntp::NtpTime;
use crate::wire::rtp::{RtpTimestamp, SeqNum};

/// Interval between RTCP sender reports per track (RFC 3550 §6.2 recommends 5 s minimum).
pub(super) const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Playing state of a shard session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlayState {
    /// Packets flow.
    Playing,
    /// Position kept, nothing sent.
    Paused,
    /// Every track reached its end; BYE was sent.
    Ended,
}

/// An RTSPS viewer's SRTP contexts for one `RTP/SAVP` track (RFC 3711,
/// `AES_CM_128_HMAC_SHA1_80`): ours protects its RTP and RTCP, the client's (from its
/// `KeyMgmt`) unprotects the SRTCP it sends.
pub(super) struct TrackSrtp {
    /// Protects what we send.
    pub(super) sender: SrtpSender,
    /// Unprotects the client's SRTCP; `None` when it sent no key (its RTCP is dropped).
    pub(super) receiver: Option<SrtpReceiver>,
}

impl TrackSrtp {
    /// The contexts of `keys` (`None` only for a key of the wrong length, never made).
    fn new(keys: &SrtpKeys) -> Option<Box<Self>> {
        let profile = SrtpProfile::Aes128CmHmacSha1_80;
        let master = |k: &[u8; 30]| MasterKey::new(profile, &k[..16], &k[16..]).ok();
        let sender = SrtpSender::new(&master(&keys.ours)?);
        let receiver = match &keys.theirs {
            Some(k) => Some(SrtpReceiver::new(&master(k)?)),
            None => None,
        };
        Some(Box::new(Self { sender, receiver }))
    }
}

/// One track's streaming state.
pub(super) struct TrackStream {
    pub(super) setup: TrackSetup,
    /// SRTP contexts of an `RTP/SAVP` track (`setup.srtp`); a track whose setup has keys
    /// but no contexts sends nothing (never plain RTP).
    pub(super) srtp: Option<Box<TrackSrtp>>,
    /// Cached RTP socket address for the UDP case (no conversion per packet).
    pub(super) rtp_dest: Option<SockAddr>,
    pub(super) packetizer: Packetizer,
    /// Sequence number of the next packet.
    pub(super) seq: SeqNum,
    /// Index of the next sample to send.
    pub(super) next_sample: usize,
    /// Index of the first sample not to send: the end of the PLAY range (RFC 2326 §12.29),
    /// or the track's sample count. Set once per PLAY ([`ShardSession::set_end`]), so the
    /// per-sample check is one comparison.
    pub(super) stop_sample: usize,
    /// RTP packets sent (for SR, wraps per RFC 3550 §6.4.1).
    pub(super) packets_sent: u32,
    /// RTP payload octets sent (for SR).
    pub(super) octets_sent: u32,
    /// When the last SR went out.
    pub(super) last_sender_report: Option<Instant>,
    pub(super) clock_rate_hz: u32,
    pub(super) timescale: u32,
    /// Sample errors seen (corrupt NAL lengths and the like).
    pub(super) corrupt_samples: u64,
    /// Live channels: which loop of the file `next_sample` belongs to.
    pub(super) loop_index: u64,
    /// Live channels: the shard's shared packetization of this track
    /// ([`super::live_cache::LiveCache`]), attached by the worker when the session is created.
    pub(super) live_stream: Option<u32>,
    /// Live logs: the last sample sent (presentation time, arrival), for sender reports.
    pub(super) log_last: Option<(i64, Instant)>,
    /// Live logs, interleaved viewers: packets of sample `next_sample` already handed over
    /// when a large sample goes out in slices (0: none; see `worker::TCP_SLICE_BYTES`).
    pub(super) sliced_packets: u32,
    /// Since when a sliced sample has waited for the viewer's backlog to drain.
    pub(super) slice_waiting_since: Option<Instant>,
}

impl TrackStream {
    /// True when the track's packets go as `$` frames on the RTSP connection.
    pub(super) fn is_interleaved(&self) -> bool {
        matches!(self.setup.dest, TrackDest::Interleaved { .. })
    }

    /// RTP timestamp for a presentation time in media ticks.
    pub(super) fn rtp_timestamp(&self, pts_ticks: i64) -> RtpTimestamp {
        let clock_ticks = i128::from(pts_ticks) * i128::from(self.clock_rate_hz)
            / i128::from(self.timescale.max(1));
        self.setup
            .initial_rtptime
            .wrapping_add(clock_ticks as i64 as u32)
    }

    /// RTP timestamp for a media time in seconds (sender reports).
    pub(super) fn rtp_timestamp_at_secs(&self, secs: f64) -> RtpTimestamp {
        let clock_ticks = (secs * f64::from(self.clock_rate_hz)).round() as i64;
        self.setup.initial_rtptime.wrapping_add(clock_ticks as u32)
    }
}

/// Samples of a live log track whose least delay maps its RTP time to our clock in sender
/// reports without the publisher's (ten AAC groups; 2.5 s of 25 fps video).
const SR_LAG_SAMPLES: usize = 64;

/// A session owned by a shard.
pub(super) struct ShardSession {
    pub(super) id: SessionId,
    pub(super) media: Arc<MediaFile>,
    pub(super) tracks: Vec<TrackStream>,
    pub(super) sink: Option<Arc<TcpSink>>,
    pub(super) activity: Arc<Activity>,
    pub(super) cname: String,
    pub(super) state: PlayState,
    /// Wall-clock instant media time `play_start_npt` is due.
    pub(super) play_start: Instant,
    pub(super) play_start_npt: f64,
    /// The end of the range being played (RFC 2326 §12.29), kept across PLAYs without a
    /// `Range` (§10.5); `None` plays to the end of the media.
    pub(super) end_npt: Option<f64>,
    /// Bumped on every PLAY/PAUSE so stale queue entries are ignored.
    pub(super) generation: u32,
    /// Set when a TCP viewer could not keep up; the worker cuts it off.
    pub(super) cut_off: bool,
    /// Set when the viewer's RTP port answered ICMP unreachable: nothing more is sent.
    pub(super) unreachable: bool,
    /// The live channel watched, if any: numbering and timing come from its shared timeline.
    pub(super) live: Option<Arc<LiveChannel>>,
    /// The live log watched, if any: samples, numbering and timing come from it, and
    /// `next_sample` counts the log's samples.
    pub(super) log: Option<Arc<LiveLog>>,
    /// How far behind the channel's live edge this viewer is paced.
    pub(super) live_lag: Duration,
    /// Our tracks as RTCP report blocks name them: the SSRC each is sent with (the live
    /// channel's for live sessions, as SETUP chose it) and its RTP clock, in track order.
    pub(super) track_keys: Vec<TrackKey>,
    /// Latest report block per track received since the last shard report; taken (reset to
    /// `None`) when the report goes out.
    pub(super) receptions: [Option<TrackReception>; MAX_TRACKS],
    /// SSRCs the viewer has reported about our tracks from; its BYE must name one
    /// (RFC 3550 §6.6, see `stats::reception`).
    pub(super) viewer_ssrcs: ViewerSsrcs,
    /// RTP packets sent since the session began (all tracks; queued for UDP, written for TCP).
    pub(super) packets_total: u64,
    /// RTP bytes (header + payload) of those packets.
    pub(super) bytes_total: u64,
    /// A WebRTC viewer's transport (ICE, DTLS, SRTP), `None` for RTSP viewers.
    pub(super) webrtc: Option<Box<WebRtcPeer>>,
    /// The current PLAY's scale and speed ([`PlayRate::NORMAL`] for live sessions).
    pub(super) rate: PlayRate,
    /// Playing backwards: the lowest media time sent (the reverse range's end).
    pub(super) floor_npt: f64,
}

impl ShardSession {
    /// Builds the shard state from a SETUP result.
    pub(super) fn new(setup: SessionSetup, now: Instant) -> Result<Self, PacketizeError> {
        let mut tracks = Vec::with_capacity(setup.tracks.len());
        let mut track_keys = Vec::with_capacity(setup.tracks.len());
        for t in setup.tracks {
            // A track from another file (a WebRTC viewer's Opus rendition) indexes that file.
            let file = t.source.as_ref().unwrap_or(&setup.media);
            let track = &file.index.tracks[t.track_index];
            track_keys.push(TrackKey {
                ssrc: t.ssrc,
                clock_rate_hz: track.codec.clock_rate_hz(),
            });
            let rtp_dest = match &t.dest {
                TrackDest::Udp { rtp, .. } => Some(sock_addr(*rtp)),
                TrackDest::Interleaved { .. } | TrackDest::WebRtc => None,
            };
            tracks.push(TrackStream {
                packetizer: Packetizer::new(&track.codec, setup.payload_budget_bytes)?,
                seq: t.initial_seq,
                rtp_dest,
                next_sample: 0,
                stop_sample: track.samples.len(),
                packets_sent: 0,
                octets_sent: 0,
                last_sender_report: None,
                clock_rate_hz: track.codec.clock_rate_hz(),
                timescale: track.timescale,
                corrupt_samples: 0,
                loop_index: 0,
                live_stream: None,
                log_last: None,
                sliced_packets: 0,
                slice_waiting_since: None,
                srtp: t.srtp.as_ref().and_then(TrackSrtp::new),
                setup: t,
            });
        }
        Ok(Self {
            id: setup.id,
            media: setup.media,
            tracks,
            sink: setup.sink,
            activity: setup.activity,
            cname: setup.cname,
            state: PlayState::Paused,
            play_start: now,
            play_start_npt: 0.0,
            end_npt: None,
            generation: 0,
            cut_off: false,
            unreachable: false,
            live: setup.live,
            log: setup.log,
            live_lag: Duration::ZERO,
            track_keys,
            receptions: [None; MAX_TRACKS],
            viewer_ssrcs: ViewerSsrcs::default(),
            packets_total: 0,
            bytes_total: 0,
            webrtc: None,
            rate: PlayRate::NORMAL,
            floor_npt: 0.0,
        })
    }

    /// The file stream `i`'s samples come from: its own `source` (a WebRTC viewer's Opus
    /// rendition) or the session's media.
    pub(super) fn track_file(&self, i: usize) -> &Arc<MediaFile> {
        self.tracks[i].setup.source.as_ref().unwrap_or(&self.media)
    }

    /// The media track behind stream `i`.
    pub(super) fn track(&self, i: usize) -> &Track {
        &self.track_file(i).index.tracks[self.tracks[i].setup.track_index]
    }

    /// Seconds of a tick count.
    fn secs(ticks: i64, timescale: u32) -> f64 {
        ticks as f64 / f64::from(timescale.max(1))
    }

    /// When sample `sample_index` of stream `i` is due.
    pub(super) fn due(&self, i: usize, sample_index: usize) -> Option<Instant> {
        if let Some(log) = &self.log {
            // Arrived samples are due at once (a viewer that fell behind catches up at once
            // too: `Gone` is due now, and sending it jumps to the latest keyframe).
            return match log.lookup(self.tracks[i].setup.track_index, sample_index as u64, 0) {
                Lookup::Ready(s) => Some(log.arrival(&s) + self.live_lag),
                Lookup::Gone => Some(log.epoch),
                Lookup::NotYet => None,
            };
        }
        if sample_index >= self.tracks[i].stop_sample || self.trick_skips(i) {
            return None;
        }
        let track = self.track(i);
        let sample = track.samples.get(sample_index)?;
        let dts = Self::secs(track.dts_ticks(sample), track.timescale);
        let (base, t) = match &self.live {
            Some(ch) => {
                let loops = ch.loop_duration.as_secs_f64() * self.tracks[i].loop_index as f64;
                (ch.epoch + self.live_lag, loops + dts)
            }
            None if self.rate.keyframes_only() => {
                let pts = Self::secs(track.pts_ticks(sample), track.timescale);
                (self.play_start, self.trick_offset(pts))
            }
            None if self.rate.is_trick() => (self.play_start, self.trick_offset(dts)),
            None => (
                self.play_start,
                (dts - self.play_start_npt) / self.rate.speed,
            ),
        };
        Some(if t >= 0.0 {
            base + Duration::from_secs_f64(t)
        } else {
            base.checked_sub(Duration::from_secs_f64(-t))
                .unwrap_or(base)
        })
    }

    /// Joins a live log at its latest keyframe (the log is the GOP cache): the video track
    /// there, the other tracks at their first sample that arrived since. The keyframe's
    /// GOP goes out at once (lowest latency: ingest is forwarded as it arrives). With no
    /// keyframe yet, every track waits for the next sample and video skips to a keyframe.
    pub(super) fn join_log(&mut self, shard: usize) {
        let Some(log) = self.log.clone() else {
            return;
        };
        let readable = log.pin(shard);
        let video = self
            .tracks
            .iter()
            .position(|t| log.tracks[t.setup.track_index].spec.kind == TrackKind::Video);
        let key =
            video.and_then(|v| log.latest_keyframe(self.tracks[v].setup.track_index, readable));
        for t in &mut self.tracks {
            let lt = &log.tracks[t.setup.track_index];
            t.next_sample = match (&key, lt.spec.kind) {
                (Some(k), TrackKind::Video) => k.n as usize,
                (Some(k), _) => {
                    log.first_arrived_since(t.setup.track_index, k.arrival_ns, readable) as usize
                }
                (None, _) => lt.published() as usize,
            };
            t.sliced_packets = 0;
            t.stop_sample = usize::MAX;
        }
        log.unpin(shard);
        self.live_lag = Duration::ZERO;
    }

    /// Forgets any sample half sent in slices (the track moves elsewhere: a seek, a join).
    fn drop_slices(&mut self) {
        for t in &mut self.tracks {
            t.sliced_packets = 0;
            t.slice_waiting_since = None;
        }
    }

    /// Joins the live channel at `now` (instant start at the latest keyframe).
    pub(super) fn join_live(&mut self, now: Instant) {
        let Some(ch) = self.live.clone() else {
            return;
        };
        let join = ch.join(now);
        self.live_lag = join.lag;
        self.drop_slices();
        for i in 0..self.tracks.len() {
            let point = if self.tracks[i].setup.source.is_some() {
                // A track of another file (its own numbering, `stamp`) starts at the first
                // sample presented at or after the join's media time, in the same loop.
                let (n, start_secs) = join.start;
                let track = self.track(i);
                let k = track.samples.partition_point(|s| {
                    Self::secs(track.pts_ticks(s), track.timescale) < start_secs
                });
                Some(if k >= track.samples.len() {
                    (n + 1, 0)
                } else {
                    (n, k)
                })
            } else {
                join.tracks.get(self.tracks[i].setup.track_index).copied()
            };
            if let Some((n, k)) = point {
                let t = &mut self.tracks[i];
                t.loop_index = n;
                t.next_sample = k;
            }
        }
    }

    /// True when trick play leaves track `i` out (every track but the video).
    fn trick_skips(&self, i: usize) -> bool {
        self.rate.is_trick() && self.track(i).kind != TrackKind::Video
    }

    /// Trick play: seconds of delivery from the PLAY's start to media time `t`
    /// (`|t - play_start_npt| / |scale|`; backwards, `t` lies before the start).
    fn trick_offset(&self, t: f64) -> f64 {
        (t - self.play_start_npt).abs() / self.rate.scale.abs()
    }

    /// Sets the PLAY's rate (stored media only: live sessions keep normal play). Trick play
    /// backwards needs the floor its range ends at ([`Self::set_floor`]).
    pub(super) fn set_rate(&mut self, rate: PlayRate) {
        self.rate = if self.live.is_some() || self.log.is_some() {
            PlayRate::NORMAL
        } else {
            rate
        };
    }

    /// Playing backwards (RFC 2326 §12.34, negative scale): keyframes are sent from the
    /// start down to the range's end (`At`; otherwise 0), where the stream ends. The forward
    /// end is kept for later PLAYs. Returns the floor.
    pub(super) fn set_floor(&mut self, end: PlayEnd) -> f64 {
        self.floor_npt = match end {
            PlayEnd::At(e) => e.max(0.0),
            PlayEnd::Keep | PlayEnd::Media => 0.0,
        };
        for i in 0..self.tracks.len() {
            self.tracks[i].stop_sample = self.track(i).samples.len();
        }
        self.floor_npt
    }

    /// Prepares track `i` to send its next sample: live channels take the sequence number
    /// from the shared timeline. Returns the RTP timestamp for presentation time `pts_ticks`.
    pub(super) fn stamp(&mut self, i: usize, pts_ticks: i64) -> RtpTimestamp {
        let t = &mut self.tracks[i];
        if let Some(log) = &self.log {
            // `pts_ticks` is the log's presentation time; the sequence number was set from
            // the log sample by `stamp_log`.
            let lt = &log.tracks[t.setup.track_index];
            return lt.ts0.wrapping_add(pts_ticks as u32);
        }
        match &self.live {
            // A track of another file (a WebRTC viewer's Opus rendition) numbers its own
            // packets (`deliver` counts them); its loops advance its clock by the channel's
            // loop length, as the channel's own tracks' do (`live` module docs).
            Some(ch) if t.setup.source.is_some() => {
                let loop_ticks =
                    (ch.loop_duration.as_secs_f64() * f64::from(t.clock_rate_hz)).round() as u64;
                t.rtp_timestamp(pts_ticks)
                    .wrapping_add(t.loop_index.wrapping_mul(loop_ticks) as u32)
            }
            Some(ch) => {
                let lt = &ch.tracks[t.setup.track_index];
                t.seq = lt.seq_of(t.loop_index, t.next_sample);
                t.rtp_timestamp(pts_ticks)
                    .wrapping_add(lt.loop_offset_ticks(t.loop_index))
            }
            None if self.rate.is_trick() => {
                let pts = Self::secs(pts_ticks, t.timescale);
                let offset = (pts - self.play_start_npt).abs() / self.rate.scale.abs();
                t.rtp_timestamp_at_secs(self.play_start_npt + offset)
            }
            None => t.rtp_timestamp(pts_ticks),
        }
    }

    /// Live logs: the sequence number of track `i`'s next packet is the log's numbering
    /// (`seq0 + packets_before`), the same on every shard.
    pub(super) fn stamp_log(&mut self, i: usize, packets_before: u64) {
        if let Some(log) = &self.log {
            let t = &mut self.tracks[i];
            // Modulo 2^16 (RFC 3550 §5.1).
            t.seq = log.tracks[t.setup.track_index]
                .seq0
                .wrapping_add(packets_before as u16);
        }
    }

    /// What a sender report of track `i` of a live log sent at `now` carries (RFC 3550
    /// §6.4.1): the publisher's own clock when it sent sender reports (its NTP time and the
    /// matching RTP time, so players keep its A/V sync and can recover capture times), else
    /// our clock with the track's RTP time there ([`ShardSession::log_rtp_now`]). `None` for other sessions, and before a log session's first sample.
    pub(super) fn log_report(&self, i: usize, now: Instant) -> Option<(NtpTime, RtpTimestamp)> {
        let log = self.log.as_ref()?;
        let t = &self.tracks[i];
        let lt = &log.tracks[t.setup.track_index];
        if let Some(clock) = lt.source_clock(log.epoch) {
            let (ntp, pts) = clock.at(now, t.clock_rate_hz);
            return Some((ntp, lt.ts0.wrapping_add(pts as u32)));
        }
        Some((NtpTime::now(), self.log_rtp_now(i, now)?))
    }

    /// The RTP timestamp of track `i` of a live log now by our clock, as this viewer gets
    /// the samples (their arrival plus its `live_lag`): the track's presentation times put on
    /// our clock by the least delayed of its last [`SR_LAG_SAMPLES`] samples
    /// ([`LiveLog::recent_presentation_lag_ns`]). A publisher's packing (an AAC group's
    /// first frames arrive with its last, up to our RTMP hold later) thus moves no track
    /// against another; the last sent sample's own arrival did (RTMP audio 130 ms late).
    /// `None` before the first sample.
    fn log_rtp_now(&self, i: usize, now: Instant) -> Option<RtpTimestamp> {
        let log = self.log.as_ref()?;
        let t = &self.tracks[i];
        let (last_pts, last_arrival) = t.log_last?;
        let lt = &log.tracks[t.setup.track_index];
        let clock = i128::from(t.clock_rate_hz.max(1));
        let pts = match log.recent_presentation_lag_ns(t.setup.track_index, SR_LAG_SAMPLES) {
            Some(lag) => {
                let due_ns = now
                    .saturating_duration_since(log.epoch + self.live_lag)
                    .as_nanos() as i128;
                ((due_ns - lag) * clock / 1_000_000_000) as i64
            }
            None => {
                let since = now.saturating_duration_since(last_arrival + self.live_lag);
                last_pts + (since.as_nanos() as i128 * clock / 1_000_000_000) as i64
            }
        };
        Some(lt.ts0.wrapping_add(pts as u32))
    }

    /// Live channels: the absolute number of track `i`'s next sample (`loop · samples + k`),
    /// unique across loops; the key of the shard's packet cache.
    pub(super) fn absolute_sample(&self, i: usize) -> u64 {
        let t = &self.tracks[i];
        if self.log.is_some() {
            return t.next_sample as u64;
        }
        let len = self.track(i).samples.len() as u64;
        t.loop_index
            .wrapping_mul(len)
            .wrapping_add(t.next_sample as u64)
    }

    /// Moves track `i` past the sample just sent; live channels wrap to the next loop; fast
    /// trick play moves to the next keyframe in its direction (past the floor backwards: the
    /// track is done).
    pub(super) fn advance(&mut self, i: usize) {
        if self.log.is_some() {
            self.tracks[i].next_sample += 1;
            return;
        }
        if self.rate.keyframes_only() {
            let track = self.track(i);
            let len = track.samples.len();
            let from = self.tracks[i].next_sample;
            let next = if self.rate.reverse() {
                let floor = (self.floor_npt * f64::from(track.timescale)).floor() as i64;
                track.samples[..from.min(len)]
                    .iter()
                    .rposition(|s| s.sync && track.pts_ticks(s) >= floor)
                    .unwrap_or(len)
            } else {
                let after = (from + 1).min(len);
                track.samples[after..]
                    .iter()
                    .position(|s| s.sync)
                    .map_or(len, |k| after + k)
            };
            self.tracks[i].next_sample = next;
            return;
        }
        let len = self.track(i).samples.len();
        let loop_start = self.live.as_ref().map(|ch| {
            if self.tracks[i].setup.source.is_some() {
                0
            } else {
                ch.tracks[self.tracks[i].setup.track_index].first_sample
            }
        });
        let t = &mut self.tracks[i];
        t.next_sample += 1;
        if let Some(first) = loop_start {
            if t.next_sample >= len {
                t.next_sample = first;
                t.loop_index += 1;
            }
        }
    }

    /// Positions every track at `npt_secs`: video at the sync sample at or before it, other
    /// tracks one frame before their first sample presented at or after the chosen start. Returns the start.
    pub(super) fn seek(&mut self, npt_secs: f64) -> f64 {
        self.drop_slices();
        let mut start = npt_secs.max(0.0);
        let video = (0..self.tracks.len()).find(|&i| self.track(i).kind == TrackKind::Video);
        if let Some(v) = video {
            let track = self.track(v);
            let ts = track.timescale;
            let target = (start * f64::from(ts)).floor() as i64;
            let mut key = 0;
            for (idx, s) in track.samples.iter().enumerate() {
                if s.sync && track.pts_ticks(s) <= target {
                    key = idx;
                }
                if track.dts_ticks(s) > target {
                    break;
                }
            }
            start = Self::secs(track.pts_ticks(&track.samples[key]), ts).max(0.0);
            self.tracks[v].next_sample = key;
        }
        for i in 0..self.tracks.len() {
            if Some(i) == video {
                continue;
            }
            let track = self.track(i);
            let target = (start * f64::from(track.timescale)).floor() as i64;
            let first = track
                .samples
                .iter()
                .position(|s| track.pts_ticks(s) >= target)
                .unwrap_or(track.samples.len());
            // One frame of pre-roll: an AAC frame only decodes fully with its predecessor
            // (MDCT overlap, ISO/IEC 14496-3 §4.6.11), and the file's first frame is usually
            // encoder priming that the edit list places just before zero.
            self.tracks[i].next_sample = first.saturating_sub(1);
        }
        start
    }

    /// Media time of the earliest unsent sample (the position to resume from; in trick play
    /// the video's next frame).
    pub(super) fn position_secs(&self) -> f64 {
        (0..self.tracks.len())
            .filter(|&i| !self.trick_skips(i))
            .filter_map(|i| {
                let track = self.track(i);
                let s = track.samples.get(self.tracks[i].next_sample)?;
                Some(Self::secs(track.pts_ticks(s), track.timescale))
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// RTP-Info data: the seq and timestamp of each track's next packet.
    pub(super) fn track_starts(&mut self) -> Vec<TrackStart> {
        if let Some(log) = self.log.clone() {
            return (0..self.tracks.len())
                .map(|i| {
                    let t = &self.tracks[i];
                    let lt = &log.tracks[t.setup.track_index];
                    let (packets_before, pts) =
                        match log.lookup(t.setup.track_index, t.next_sample as u64, 0) {
                            Lookup::Ready(s) => (s.packets_before, s.pts),
                            _ => lt.next_numbers(),
                        };
                    TrackStart {
                        track_index: t.setup.track_index,
                        seq: lt.seq0.wrapping_add(packets_before as u16),
                        rtptime: lt.ts0.wrapping_add(pts as u32),
                    }
                })
                .collect();
        }
        (0..self.tracks.len())
            .map(|i| {
                let track = self.track(i);
                let pts = track
                    .samples
                    .get(self.tracks[i].next_sample)
                    .map_or(0, |s| track.pts_ticks(s));
                let rtptime = self.stamp(i, pts);
                let t = &self.tracks[i];
                TrackStart {
                    track_index: t.setup.track_index,
                    seq: t.seq,
                    rtptime,
                }
            })
            .collect()
    }

    /// The RTP time now, in seconds of the stream's timeline, for sender reports: media time
    /// (advancing at `speed`), or in trick play the delivery timeline [`Self::stamp`] uses.
    pub(super) fn media_secs_at(&self, now: Instant) -> f64 {
        match &self.live {
            Some(ch) => now
                .saturating_duration_since(ch.epoch + self.live_lag)
                .as_secs_f64(),
            None => {
                let elapsed = now.saturating_duration_since(self.play_start).as_secs_f64();
                let rate = if self.rate.is_trick() {
                    1.0
                } else {
                    self.rate.speed
                };
                self.play_start_npt + elapsed * rate
            }
        }
    }

    /// True when every track has sent its last sample (the last before the range's end).
    pub(super) fn all_tracks_done(&self) -> bool {
        self.live.is_none()
            && self.log.is_none()
            && (0..self.tracks.len())
                .filter(|&i| !self.trick_skips(i))
                .all(|i| self.tracks[i].next_sample >= self.tracks[i].stop_sample)
    }

    /// The end of the range being played in normal play time: the requested end clamped to
    /// the media's duration, or the duration.
    pub(super) fn end_secs(&self) -> f64 {
        let duration = self.media.duration().as_secs_f64();
        self.end_npt.map_or(duration, |e| e.min(duration))
    }

    /// Sets where play stops (RFC 2326 §12.29, §10.5): `end` replaces the kept end unless it
    /// is [`PlayEnd::Keep`]; then each track stops at its first sample, in decode order from
    /// its next sample on, presented at or after the end, so every track stops at the same
    /// media time. (With B-frames, frames presented just before the end that follow such a
    /// sample in decode order are not sent: they could not be decoded without it.) Live
    /// sessions play on whatever the end. Returns the end played, not before `start`.
    /// Called once per PLAY, after the start is positioned: a scan, not on the send path.
    pub(super) fn set_end(&mut self, end: PlayEnd, start: f64) -> f64 {
        if self.live.is_some() || self.log.is_some() {
            return self.end_secs();
        }
        match end {
            PlayEnd::Keep => {}
            PlayEnd::Media => self.end_npt = None,
            PlayEnd::At(e) => self.end_npt = Some(e),
        }
        let end = self.end_secs().max(start);
        let whole = self
            .end_npt
            .is_none_or(|e| e >= self.media.duration().as_secs_f64());
        for i in 0..self.tracks.len() {
            let track = self.track(i);
            let len = track.samples.len();
            let stop = if whole {
                len
            } else {
                let from = self.tracks[i].next_sample.min(len);
                track.samples[from..]
                    .iter()
                    .position(|s| Self::secs(track.pts_ticks(s), track.timescale) >= end)
                    .map_or(len, |k| from + k)
            };
            self.tracks[i].stop_sample = stop;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::StartPolicy;
    use crate::media::library::SAMPLE_MP4;
    use crate::wire::rtp::Ssrc;

    /// 4 s of H.264 High with B-frames (keyframes at 0 and 2 s) and AAC.
    const BFRAMES_MP4: &[u8] = include_bytes!("../../tests/media/bframes.mp4");

    /// A session on the bundled 10 s sample (video track 0 without B-frames, AAC track 1),
    /// watching `live` if given.
    fn session(live: Option<Arc<LiveChannel>>) -> ShardSession {
        session_on(SAMPLE_MP4, live)
    }

    /// A session on `file` (video track 0, audio track 1), watching `live` if given.
    fn session_on(file: &'static [u8], live: Option<Arc<LiveChannel>>) -> ShardSession {
        let media = Arc::new(MediaFile::from_static("sample", file).unwrap());
        let dest = TrackDest::Udp {
            rtp: "127.0.0.1:9".parse().unwrap(),
            rtcp: "127.0.0.1:10".parse().unwrap(),
        };
        let tracks = (0..2)
            .map(|i| TrackSetup {
                track_index: i,
                payload_type: 96 + i as u8,
                ssrc: Ssrc(7 + i as u32),
                initial_seq: SeqNum(0),
                initial_rtptime: RtpTimestamp(0),
                dest: dest.clone(),
                source: None,
                srtp: None,
            })
            .collect();
        let setup = SessionSetup {
            id: 1,
            media,
            tracks,
            sink: None,
            activity: Arc::new(Activity::default()),
            payload_budget_bytes: 1200,
            cname: "test".into(),
            live,
            log: None,
        };
        ShardSession::new(setup, Instant::now()).unwrap()
    }

    fn pts_secs(s: &ShardSession, i: usize, k: usize) -> f64 {
        let track = s.track(i);
        ShardSession::secs(track.pts_ticks(&track.samples[k]), track.timescale)
    }

    /// Checks that track `i` sends exactly the samples from its next one presented before
    /// `end`, in decode order up to the first presented at or after it.
    fn assert_stops_at(s: &ShardSession, i: usize, end: f64) {
        let t = &s.tracks[i];
        let len = s.track(i).samples.len();
        assert!(t.stop_sample <= len);
        for k in t.next_sample..t.stop_sample {
            assert!(
                pts_secs(s, i, k) < end,
                "track {i} sample {k} is before {end}"
            );
        }
        if t.stop_sample < len {
            assert!(
                pts_secs(s, i, t.stop_sample) >= end,
                "track {i} stops at a sample presented at or after {end}"
            );
        }
        assert_eq!(
            s.due(i, t.stop_sample),
            None,
            "track {i}: nothing due at its stop"
        );
        if t.next_sample < t.stop_sample {
            assert!(s.due(i, t.stop_sample - 1).is_some());
        }
    }

    /// RFC 2326 §12.29: a range end stops every track at the same media time; the stop is
    /// the first sample in decode order presented at or after the end (the B-frame clip's
    /// P-frame at 3.000 s; the B-frames at 2.920 and 2.960 s that follow it in decode order,
    /// per ffprobe, go with it), and audio stops at its first frame at or after 3 s. Fails if
    /// the end is ignored (stops at the track's end) or cut by decode time.
    #[test]
    fn a_range_end_stops_each_track_at_its_first_sample_presented_at_or_after_it() {
        let mut s = session_on(BFRAMES_MP4, None);
        let start = s.seek(0.0);
        assert_eq!(start, 0.0);
        assert_eq!(s.set_end(PlayEnd::At(3.0), start), 3.0);
        for i in 0..2 {
            assert_stops_at(&s, i, 3.0);
            assert!(
                s.tracks[i].stop_sample < s.track(i).samples.len(),
                "track {i} stops before the end of the file"
            );
        }
        // Video: the last frame sent is presented at 2.880 s, two 25 fps frames short of the
        // 2.920 and 2.960 s B-frames that need the 3.000 s P-frame.
        let v = &s.tracks[0];
        assert!((pts_secs(&s, 0, v.stop_sample) - 3.0).abs() < 1e-9);
        let last_video = (v.next_sample..v.stop_sample)
            .map(|k| pts_secs(&s, 0, k))
            .fold(f64::MIN, f64::max);
        assert!((last_video - 2.88).abs() < 1e-9, "{last_video}");
        // Audio: its last frame starts within one AAC frame (1024/48000 s) of the end.
        let a = &s.tracks[1];
        let last_audio = pts_secs(&s, 1, a.stop_sample - 1);
        assert!(
            (3.0 - 1024.0 / 48000.0..3.0).contains(&last_audio),
            "{last_audio}"
        );

        // Sending up to the stop ends the session's play: the end-of-stream condition.
        assert!(!s.all_tracks_done());
        for i in 0..2 {
            s.tracks[i].next_sample = s.tracks[i].stop_sample;
        }
        assert!(s.all_tracks_done());
        assert_eq!(s.end_secs(), 3.0);
    }

    /// Without B-frames (the bundled sample) decode order is presentation order: a 3 s end
    /// sends the 75 frames before it, the last presented at 2.960 s.
    #[test]
    fn a_range_end_without_b_frames_sends_every_frame_before_it() {
        let mut s = session(None);
        let start = s.seek(0.0);
        assert_eq!(s.set_end(PlayEnd::At(3.0), start), 3.0);
        assert_stops_at(&s, 0, 3.0);
        let v = &s.tracks[0];
        assert_eq!((v.next_sample, v.stop_sample), (0, 75));
        assert!((pts_secs(&s, 0, 74) - 2.96).abs() < 1e-9);
    }

    /// §10.5: a PLAY without a Range keeps the end; a Range without one clears it; an end
    /// past the duration is the duration; an end before the (resumed) start is the start.
    #[test]
    fn the_end_is_kept_replaced_and_clamped() {
        let mut s = session(None);
        let len = [s.track(0).samples.len(), s.track(1).samples.len()];
        let start = s.seek(5.0);
        assert_eq!(start, 4.0, "keyframe at or before 5 s");
        assert_eq!(s.set_end(PlayEnd::At(7.5), start), 7.5);
        assert_stops_at(&s, 0, 7.5);
        assert_stops_at(&s, 1, 7.5);
        let stops = [s.tracks[0].stop_sample, s.tracks[1].stop_sample];
        // Paused at ~6 s, resumed without a Range: same end, same stops.
        for (t, stop) in s.tracks.iter_mut().zip(stops) {
            t.next_sample = (t.next_sample + stop) / 2;
        }
        let resume = s.position_secs();
        assert_eq!(s.set_end(PlayEnd::Keep, resume), 7.5);
        assert_eq!([s.tracks[0].stop_sample, s.tracks[1].stop_sample], stops);
        // A Range without an end: to the end of the file.
        let start = s.seek(1.0);
        let duration = s.media.duration().as_secs_f64();
        assert!((10.0..10.01).contains(&duration), "{duration}");
        assert_eq!(s.set_end(PlayEnd::Media, start), duration);
        assert_eq!([s.tracks[0].stop_sample, s.tracks[1].stop_sample], len);
        assert_eq!(s.end_npt, None);
        // Past the duration: the whole file, answered as the duration.
        assert_eq!(s.set_end(PlayEnd::At(60.011), start), duration);
        assert_eq!([s.tracks[0].stop_sample, s.tracks[1].stop_sample], len);
        // Resumed past the end asked (`npt=now-2` at 4 s): nothing more is sent.
        let start = s.seek(4.0);
        assert_eq!(s.set_end(PlayEnd::At(2.0), start), start);
        for i in 0..2 {
            assert!(s.tracks[i].stop_sample <= s.tracks[i].next_sample + 1);
            assert_stops_at(&s, i, start);
        }
    }

    /// Live channels cannot stop early: an end leaves every track to the end of its loop
    /// (where it wraps), so the channel plays on.
    #[test]
    fn a_live_session_ignores_the_end() {
        let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
        let ch = Arc::new(LiveChannel::new("live", media, 1200, StartPolicy::Delayed).unwrap());
        let mut s = session(Some(ch));
        s.join_live(Instant::now());
        s.set_end(PlayEnd::At(0.5), 0.0);
        for i in 0..2 {
            assert_eq!(s.tracks[i].stop_sample, s.track(i).samples.len());
        }
        assert!(!s.all_tracks_done());
    }

    /// Plays `s` from `start` at `rate` as the worker's PLAY does, and walks the video
    /// track as the send loop would: (pts, delivery offset from the start, RTP seconds).
    fn trick_walk(
        s: &mut ShardSession,
        start: f64,
        rate: PlayRate,
        end: PlayEnd,
    ) -> Vec<(f64, f64, f64)> {
        let start = s.seek(start);
        s.set_rate(rate);
        if s.rate.reverse() {
            s.set_floor(end);
        } else {
            s.set_end(end, start);
        }
        s.play_start_npt = start;
        let mut sent = Vec::new();
        while let Some(at) = s.due(0, s.tracks[0].next_sample) {
            let track = s.track(0);
            let sample = track.samples[s.tracks[0].next_sample];
            assert!(sample.sync, "only keyframes in fast trick play");
            let pts_ticks = track.pts_ticks(&sample);
            let pts = ShardSession::secs(pts_ticks, track.timescale);
            let rtp = s.stamp(0, pts_ticks).0;
            sent.push((
                pts,
                at.saturating_duration_since(s.play_start).as_secs_f64(),
                f64::from(rtp) / 90_000.0,
            ));
            s.advance(0);
            assert!(sent.len() < 100, "the walk ends");
        }
        sent
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.002
    }

    /// Scale 2 from 0 (RFC 2326 §12.34): the sample's keyframes at 0, 2, 4, 6, 8 s leave
    /// 1 s apart and carry RTP times 1 s apart (the delivery timeline); audio is not due;
    /// the stream is done after the last keyframe.
    #[test]
    fn fast_forward_sends_keyframes_on_the_delivery_timeline() {
        let mut s = session(None);
        let rate = PlayRate {
            scale: 2.0,
            speed: 1.0,
        };
        let sent = trick_walk(&mut s, 0.0, rate, PlayEnd::Media);
        let pts: Vec<f64> = sent.iter().map(|x| x.0).collect();
        assert_eq!(pts.len(), 5, "{sent:?}");
        for (k, (p, at, rtp)) in sent.iter().enumerate() {
            assert!(close(*p, 2.0 * k as f64), "{sent:?}");
            assert!(close(*at, k as f64), "due {at} s after the start: {sent:?}");
            assert!(close(*rtp, k as f64), "RTP time {rtp} s: {sent:?}");
        }
        assert_eq!(
            s.due(1, s.tracks[1].next_sample),
            None,
            "no audio in trick play"
        );
        assert!(s.all_tracks_done());
    }

    /// Scale −4 from 9 s: keyframes 8, 6, 4, 2, 0 s, half a second apart, RTP time rising
    /// from the start's media time; a floor (the reverse range's end) at 3 s stops at 4 s.
    #[test]
    fn rewind_walks_keyframes_backwards_down_to_the_floor() {
        let mut s = session(None);
        let rate = PlayRate {
            scale: -4.0,
            speed: 1.0,
        };
        let sent = trick_walk(&mut s, 9.0, rate, PlayEnd::Media);
        let pts: Vec<f64> = sent.iter().map(|x| x.0).collect();
        assert_eq!(pts.len(), 5, "{sent:?}");
        for (k, (p, at, rtp)) in sent.iter().enumerate() {
            assert!(close(*p, 8.0 - 2.0 * k as f64), "{sent:?}");
            assert!(close(*at, 0.5 * k as f64), "{sent:?}");
            assert!(close(*rtp, 8.0 + 0.5 * k as f64), "{sent:?}");
        }
        assert!(s.all_tracks_done());
        let mut s = session(None);
        let sent = trick_walk(&mut s, 9.0, rate, PlayEnd::At(3.0));
        let pts: Vec<f64> = sent.iter().map(|x| x.0).collect();
        assert_eq!(pts, [8.0, 6.0, 4.0], "{sent:?}");
    }

    /// Slow motion (scale 0.5) sends every video frame at half the rate with stretched RTP
    /// time; `Speed` 2 (scale 1) paces every track twice as fast with media-time stamps.
    #[test]
    fn slow_motion_and_speed_pace_every_frame() {
        let mut s = session(None);
        s.seek(0.0);
        s.set_rate(PlayRate {
            scale: 0.5,
            speed: 1.0,
        });
        s.play_start_npt = 0.0;
        let track = s.track(0);
        let k = 25; // 1 s in at 25 fps
        let pts = track.pts_ticks(&track.samples[k]);
        let at = s.due(0, k).unwrap().saturating_duration_since(s.play_start);
        assert!(close(at.as_secs_f64(), 2.0), "{at:?}");
        assert!(close(f64::from(s.stamp(0, pts).0) / 90_000.0, 2.0));
        assert_eq!(s.due(1, 0), None, "no audio in slow motion");
        let mut s = session(None);
        s.set_rate(PlayRate {
            scale: 1.0,
            speed: 2.0,
        });
        let track = s.track(0);
        let pts = track.pts_ticks(&track.samples[k]);
        let at = s.due(0, k).unwrap().saturating_duration_since(s.play_start);
        assert!(close(at.as_secs_f64(), 0.5), "{at:?}");
        assert_eq!(s.stamp(0, pts).0, 90_000, "Speed keeps media-time stamps");
        assert!(s.due(1, 10).is_some(), "audio plays at Speed 2");
        assert!(close(
            s.media_secs_at(s.play_start + Duration::from_secs(1)),
            2.0
        ));
    }

    /// A live session ignores any rate.
    #[test]
    fn a_live_session_plays_at_normal_rate() {
        let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
        let ch = Arc::new(LiveChannel::new("ch", media, 1200, StartPolicy::Delayed).unwrap());
        let mut s = session(Some(ch));
        s.set_rate(PlayRate {
            scale: 4.0,
            speed: 1.0,
        });
        assert_eq!(s.rate, PlayRate::NORMAL);
    }
}
