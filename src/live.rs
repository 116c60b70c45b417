//! Live channels: a media file played in a loop on one shared timeline, as a broadcast.
//!
//! Every viewer of a channel gets the same bytes: one SSRC, sequence and timestamp space per
//! channel and track, announced through RTP-Info. Shards need no coordination for that: the
//! packetization of a sample is deterministic (it depends only on the payload budget), so a
//! channel precomputes how many packets each sample yields, and the sequence number of any
//! packet follows from (loop, sample, packet-in-sample):
//!
//! ```text
//! seq(loop n, sample k, packet j) = seq0 + n·packets_per_loop + packets_before[k] + j   (mod 2^16)
//! ts(loop n, sample k)            = ts0  + n·loop_ticks       + pts(k)                   (mod 2^32)
//! due(loop n, sample k)           = epoch + n·loop_duration + dts(k)     (+ a viewer's lag)
//! ```
//!
//! so timestamps and sequence numbers run on without a jump across the loop point
//! (RFC 3550 §5.1). The loop lasts as long as the longest track; a shorter track is silent
//! for the difference.
//!
//! **Instant start** ([`StartPolicy`]): a joining viewer begins at the most recent keyframe,
//! so its decoder starts at once rather than waiting up to a GOP for the next one:
//! - [`StartPolicy::Delayed`] plays from that keyframe in real time, so the viewer stays up
//!   to one GOP behind the live edge. Smooth playback; a little more latency.
//! - [`StartPolicy::Burst`] sends the cached GOP (keyframe to live edge) at once, then follows
//!   live. Lowest latency; players may fast-forward through the burst.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::track::{Track, TrackKind};
use crate::media::MediaFile;
use crate::packetize::{PacketizeError, Packetizer};
use crate::wire::rtp::{RtpTimestamp, SeqNum, Ssrc};

/// How a joining viewer catches the live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartPolicy {
    /// Start at the latest keyframe in real time (up to one GOP behind live).
    #[default]
    Delayed,
    /// Burst from the latest keyframe to the live edge, then follow live.
    Burst,
}

impl std::str::FromStr for StartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "delayed" => Ok(Self::Delayed),
            "burst" => Ok(Self::Burst),
            other => Err(format!("unknown start policy {other:?} (delayed or burst)")),
        }
    }
}

/// One track's shared numbering space.
#[derive(Debug)]
pub struct LiveTrack {
    /// SSRC every viewer sees for this track.
    pub ssrc: Ssrc,
    /// Sequence number of the first packet of loop 0.
    pub seq0: SeqNum,
    /// RTP timestamp of media time zero in loop 0.
    pub ts0: RtpTimestamp,
    /// First sample of each loop. Samples presented before zero (AAC encoder priming, placed
    /// there by the edit list) would overlap the previous loop's end if replayed, so a live
    /// channel never sends them.
    pub first_sample: usize,
    /// Packets produced by the samples of a loop before sample `k` (0 up to `first_sample`);
    /// one more entry than samples.
    packets_before: Vec<u32>,
    /// Per sample: whether a packet group starts there (every sample of a video track; the
    /// first AU of each aggregated AAC packet). Samples inside a group share their group's
    /// `packets_before`, so a viewer starting on one would reuse its group's numbers.
    group_start: Vec<bool>,
    /// Loop length in RTP clock ticks.
    pub loop_ticks: u64,
}

impl LiveTrack {
    /// Packets in one loop.
    pub fn packets_per_loop(&self) -> u32 {
        self.packets_before.last().copied().unwrap_or(0)
    }

    /// Whether sample `k` begins a packet group (see `group_start`); false past the end.
    pub fn starts_packets(&self, k: usize) -> bool {
        self.group_start.get(k).copied().unwrap_or(false)
    }

    /// Sequence number of the first packet of sample `k` in loop `n`.
    pub fn seq_of(&self, loop_index: u64, k: usize) -> SeqNum {
        let per_loop = u64::from(self.packets_per_loop());
        let before = u64::from(self.packets_before.get(k).copied().unwrap_or(0));
        // Modulo 2^16 (RFC 3550 §5.1): only the low 16 bits of the packet count matter.
        self.seq0
            .wrapping_add(loop_index.wrapping_mul(per_loop).wrapping_add(before) as u16)
    }

    /// RTP timestamp offset of loop `n`.
    pub fn loop_offset_ticks(&self, loop_index: u64) -> u32 {
        loop_index.wrapping_mul(self.loop_ticks) as u32
    }

    /// Packets sample `k` yields (0 for samples a loop never sends).
    pub fn packets_of(&self, k: usize) -> u32 {
        match (self.packets_before.get(k), self.packets_before.get(k + 1)) {
            (Some(&a), Some(&b)) => b.wrapping_sub(a),
            _ => 0,
        }
    }
}

/// Where a joining viewer starts.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinPoint {
    /// Per track: (loop index, first sample).
    pub tracks: Vec<(u64, usize)>,
    /// The loop the join is in, and the media time within it that the viewer starts at
    /// (the keyframe's decode time): where a track from another file (a WebRTC viewer's
    /// Opus rendition) starts too.
    pub start: (u64, f64),
    /// How far behind the live edge the viewer is paced.
    pub lag: Duration,
}

/// A channel: a file looping on a shared timeline.
#[derive(Debug)]
pub struct LiveChannel {
    /// Stream name.
    pub name: String,
    /// The looping media.
    pub media: Arc<MediaFile>,
    /// Wall-clock instant of media time zero of loop 0.
    pub epoch: Instant,
    /// Length of one loop.
    pub loop_duration: Duration,
    /// Per track, in `media.index.tracks` order.
    pub tracks: Vec<LiveTrack>,
    /// Instant-start policy for joining viewers.
    pub policy: StartPolicy,
}

impl LiveChannel {
    /// Builds a channel starting now, with random SSRCs and initial numbers (RFC 3550 §5.1).
    pub fn new(
        name: &str,
        media: Arc<MediaFile>,
        payload_budget_bytes: usize,
        policy: StartPolicy,
    ) -> Result<Self, PacketizeError> {
        let loop_duration = media.duration().max(Duration::from_millis(1));
        let bytes = media.bytes.as_slice();
        let mut tracks = Vec::with_capacity(media.index.tracks.len());
        for track in &media.index.tracks {
            let mut packetizer = Packetizer::new(&track.codec, payload_budget_bytes)?;
            let first_sample = if track.kind == TrackKind::Video {
                0
            } else {
                track
                    .samples
                    .iter()
                    .position(|s| track.pts_ticks(s) >= 0)
                    .unwrap_or(0)
            };
            let mut packets_before = vec![0; first_sample];
            let mut group_start = vec![false; track.samples.len()];
            let mut total = 0u32;
            let mut k = first_sample;
            while k < track.samples.len() {
                // The groups the shards cut (aggregated AAC): the same function of the
                // sample index, so the same in every loop. Samples inside a group have no
                // packet of their own; a viewer never starts on one (see `join`).
                let rest = &track.samples[k..];
                let group = packetizer
                    .samples_per_packet(rest, k as u64, track.timescale)
                    .clamp(1, rest.len());
                packets_before.extend(std::iter::repeat_n(total, group));
                group_start[k] = true;
                packetizer.begin_samples(&rest[..group], k as u64);
                // A corrupt sample yields the packets it yields on the shard too: the same
                // Err path abandons it there, so counting up to the error stays consistent.
                while let Ok(Some(_)) = packetizer.next_packet(bytes) {
                    total = total.wrapping_add(1);
                }
                k += group;
            }
            packets_before.push(total);
            let clock = u128::from(track.codec.clock_rate_hz());
            tracks.push(LiveTrack {
                first_sample,
                ssrc: rand::random(),
                seq0: rand::random(),
                ts0: rand::random(),
                packets_before,
                group_start,
                // Rounded: the loop length came from ticks, and truncation would drift by one.
                loop_ticks: ((loop_duration.as_nanos() * clock + 500_000_000) / 1_000_000_000)
                    as u64,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            media,
            epoch: Instant::now(),
            loop_duration,
            tracks,
            policy,
        })
    }

    /// The longest a viewer can be paced behind the live edge: the longest stretch between
    /// keyframes of the video track by decode time, counting the stretch from the last
    /// keyframe to the loop's end and, as [`LiveChannel::join`] falls back to the first sample,
    /// the one before the first keyframe. Zero without video (joins start at the live edge).
    pub fn longest_gop(&self) -> Duration {
        let tracks = &self.media.index.tracks;
        let Some(video) = tracks.iter().find(|t| t.kind == TrackKind::Video) else {
            return Duration::ZERO;
        };
        let loop_secs = self.loop_duration.as_secs_f64();
        let mut keys = video
            .samples
            .iter()
            .filter(|s| s.sync)
            .map(|s| secs(video.dts_ticks(s), video).clamp(0.0, loop_secs));
        let Some(first) = keys.next() else {
            return self.loop_duration;
        };
        let (mut longest, mut last) = (first, first);
        for key in keys {
            longest = longest.max(key - last);
            last = key;
        }
        longest = longest.max(loop_secs - last);
        Duration::from_secs_f64(longest.clamp(0.0, loop_secs))
    }

    /// The most samples and the most packets of track `i` whose decode times fall within any
    /// stretch of `span` of channel time, across loop points. Sizes a shard's cache of
    /// packetized samples (`shard::live_cache`).
    pub fn busiest_span(&self, i: usize, span: Duration) -> (usize, usize) {
        let (Some(track), Some(live)) = (self.media.index.tracks.get(i), self.tracks.get(i)) else {
            return (0, 0);
        };
        let first = live.first_sample.min(track.samples.len());
        let n = track.samples.len() - first;
        if n == 0 {
            return (0, 0);
        }
        let loop_secs = self.loop_duration.as_secs_f64();
        let span_secs = span.as_secs_f64();
        // A stretch of whole loops holds exactly one loop's samples each; the rest is found by
        // sliding a window over two consecutive loops.
        let whole = (span_secs / loop_secs).floor();
        let rest = span_secs - whole * loop_secs;
        let time = |j: usize| {
            let s = &track.samples[first + j % n];
            secs(track.dts_ticks(s), track) + (j / n) as f64 * loop_secs
        };
        let packets = |j: usize| live.packets_of(first + j % n) as usize;
        let (mut most_samples, mut most_packets) = (0, 0);
        let (mut end, mut in_window) = (0, 0);
        for start in 0..n {
            let limit = time(start) + rest;
            while end < start + n && time(end) <= limit {
                in_window += packets(end);
                end += 1;
            }
            most_samples = most_samples.max(end - start);
            most_packets = most_packets.max(in_window);
            in_window -= packets(start);
        }
        let whole = whole as usize;
        (
            whole * n + most_samples,
            whole * live.packets_per_loop() as usize + most_packets,
        )
    }

    /// Channel time at `now` (seconds since the epoch, across loops).
    fn channel_secs(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.epoch).as_secs_f64()
    }

    /// Where a viewer joining at `now` starts: the latest keyframe at or before the live edge
    /// (see the module doc for the two policies).
    pub fn join(&self, now: Instant) -> JoinPoint {
        let loop_secs = self.loop_duration.as_secs_f64();
        let t = self.channel_secs(now);
        let n = (t / loop_secs).floor() as u64;
        let within = t - n as f64 * loop_secs;
        let tracks = &self.media.index.tracks;
        let video = tracks.iter().position(|t| t.kind == TrackKind::Video);
        // The keyframe at or before the live edge (by decode time: that is when it was sent).
        let start_secs = match video {
            Some(v) => {
                let tr = &tracks[v];
                let mut key = 0;
                for (k, s) in tr.samples.iter().enumerate() {
                    if secs(tr.dts_ticks(s), tr) > within {
                        break;
                    }
                    if s.sync {
                        key = k;
                    }
                }
                tr.samples
                    .get(key)
                    .map_or(0.0, |s| secs(tr.dts_ticks(s), tr))
            }
            None => within,
        };
        let mut points = Vec::with_capacity(tracks.len());
        for (i, tr) in tracks.iter().enumerate() {
            let k = if Some(i) == video {
                tr.samples
                    .iter()
                    .position(|s| secs(tr.dts_ticks(s), tr) >= start_secs)
                    .unwrap_or(0)
            } else {
                let first = tr
                    .samples
                    .iter()
                    .position(|s| secs(tr.pts_ticks(s), tr) >= start_secs)
                    .unwrap_or(tr.samples.len());
                // One frame of AAC pre-roll, as for VOD seeks, then back to the start of the
                // aggregated packet holding it, so this viewer's packets are everyone's.
                let lt = &self.tracks[i];
                let mut k = first.saturating_sub(1).max(lt.first_sample);
                while k > lt.first_sample && k < tr.samples.len() && !lt.starts_packets(k) {
                    k -= 1;
                }
                k
            };
            if k >= tr.samples.len() {
                points.push((n + 1, self.tracks[i].first_sample));
            } else {
                points.push((n, k));
            }
        }
        let lag = match self.policy {
            StartPolicy::Delayed => Duration::from_secs_f64((within - start_secs).max(0.0)),
            StartPolicy::Burst => Duration::ZERO,
        };
        JoinPoint {
            tracks: points,
            start: (n, start_secs),
            lag,
        }
    }
}

fn secs(ticks: i64, track: &Track) -> f64 {
    ticks as f64 / f64::from(track.timescale.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::library::SAMPLE_MP4;

    fn channel(policy: StartPolicy) -> LiveChannel {
        let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
        LiveChannel::new("live", media, 1200, policy).unwrap()
    }

    #[test]
    fn sequence_numbers_continue_across_the_loop_point() {
        let ch = channel(StartPolicy::Delayed);
        for t in &ch.tracks {
            let per_loop = t.packets_per_loop();
            assert!(per_loop > 0);
            let last_sample = t.packets_before.len() - 2;
            let last_packets = per_loop - t.packets_before[last_sample];
            // The packet after the last one of loop 0 is the first of loop 1.
            assert_eq!(
                t.seq_of(0, last_sample).wrapping_add(last_packets as u16),
                t.seq_of(1, 0)
            );
        }
    }

    /// The sample clip has a keyframe every 2 s (25 fps, 10 s): the longest GOP is 2 s, and
    /// the busiest stretches count what the file holds. Fails if the wrap at the loop point,
    /// whole loops or the window's ends are miscounted.
    #[test]
    fn longest_gop_and_busiest_span_follow_the_file() {
        let ch = channel(StartPolicy::Delayed);
        // The last GOP runs on to the loop's end: 10.00533 s (the audio track's length: 470
        // frames of 1024 at 48 kHz less its 1024-tick edit) minus the last keyframe's decode
        // time (8.00 s: without B-frames decode and presentation times agree).
        let gop = ch.longest_gop().as_secs_f64();
        assert!((2.005..=2.006).contains(&gop), "{gop}");
        let (video, live) = (&ch.media.index.tracks[0], &ch.tracks[0]);
        let n = video.samples.len();
        let per_loop = live.packets_per_loop() as usize;
        let biggest = (0..n).map(|k| live.packets_of(k)).max().unwrap() as usize;
        assert_eq!(live.packets_of(n), 0);
        // A zero-length stretch holds one sample: at most the biggest.
        assert_eq!(ch.busiest_span(0, Duration::ZERO), (1, biggest));
        // One second at 25 fps: 26 decode times fit in a closed second.
        let (samples, packets) = ch.busiest_span(0, Duration::from_secs(1));
        assert_eq!(samples, 26);
        assert!(packets >= biggest && packets < per_loop / 2, "{packets}");
        // Two and a half loops hold two loops plus the busiest half loop, across the wrap.
        let (samples, packets) = ch.busiest_span(0, ch.loop_duration * 5 / 2);
        let (half_s, half_p) = ch.busiest_span(0, ch.loop_duration / 2);
        assert_eq!((samples, packets), (2 * n + half_s, 2 * per_loop + half_p));
        assert!((125..=127).contains(&half_s), "{half_s}");
        // Audio has no GOP, but its busiest stretch is counted the same way.
        let (audio_samples, _) = ch.busiest_span(1, Duration::from_secs(1));
        assert!((46..=48).contains(&audio_samples), "{audio_samples}");
        assert_eq!(ch.busiest_span(9, Duration::from_secs(1)), (0, 0));
    }

    #[test]
    fn joining_viewer_starts_at_latest_keyframe_before_the_live_edge() {
        let mut ch = channel(StartPolicy::Delayed);
        // Pretend the channel started 5.3 s ago: keyframes every 2 s → join at the 4 s one.
        ch.epoch = Instant::now() - Duration::from_millis(5300);
        let join = ch.join(Instant::now());
        let video = &ch.media.index.tracks[0];
        let (n, k) = join.tracks[0];
        assert_eq!(n, 0);
        assert!(video.samples[k].sync, "starts on a keyframe");
        let key_secs = secs(video.dts_ticks(&video.samples[k]), video);
        assert!((3.8..=4.1).contains(&key_secs), "keyframe at {key_secs}");
        assert!(
            join.lag > Duration::from_millis(1000) && join.lag < Duration::from_millis(1600),
            "{:?}",
            join.lag
        );
        let burst = LiveChannel {
            policy: StartPolicy::Burst,
            ..ch
        };
        assert_eq!(burst.join(Instant::now()).lag, Duration::ZERO);
    }
}
