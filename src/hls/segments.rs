//! Cutting a file into HLS segments and parts, and numbering them for VOD and for a live
//! channel's looping timeline (RFC 8216 §3, draft-pantos-hls-rfc8216bis §3.2 and §4.4.4.9).
//!
//! One [`Segmentation`] per file: segments start at video keyframes and last at least
//! [`MIN_SEGMENT`] (the next keyframe at or after 2 s from the segment's start); a GOP longer
//! than [`MAX_SEGMENT`] is cut at its first sample past 6 s, and the segment after such a cut
//! is not independent. Without video, audio is cut every 2 s. Each segment is split into
//! parts no longer than the part target, at sample boundaries. Times are decode times on the
//! presentation-aligned timeline of [`TrackTiming`] (so tracks of different timescales are
//! compared in nanoseconds); an audio sample belongs to the segment and part its decode
//! time falls in.
//!
//! [`LiveHls`] repeats the segmentation loop after loop on a channel's timeline: segment
//! `msn = n·K + j` is loop `n`'s segment `j` (K segments a loop), starting at
//! `n·loop_duration + start(j)`, its decode times `n·loop_ticks + dts` in each track's own
//! MP4 timescale, so timestamps run on across loop points as the RTP path's do
//! (`live` module doc). Completion is a time: the file is all there, so a part exists once
//! the channel clock reaches its end. No clock is read here; every call takes the channel
//! time (a `Duration` since the channel's epoch).

use std::ops::Range;
use std::time::Duration;

use super::fmp4::{self, Fmp4Error, Fragment, TrackRun, TrackTiming};
use crate::live::LiveChannel;
use crate::media::track::{MediaIndex, Track, TrackKind};

/// A segment lasts at least this long (up to the next keyframe at or after it).
pub const MIN_SEGMENT: Duration = Duration::from_secs(2);
/// A GOP longer than this is cut at its first sample past it.
pub const MAX_SEGMENT: Duration = Duration::from_secs(6);
/// The part target (`EXT-X-PART-INF:PART-TARGET`) unless one sample is longer.
pub const PART_TARGET: Duration = Duration::from_millis(334);
/// Complete segments a live playlist lists before the one being filled.
pub const LIVE_WINDOW_SEGMENTS: u64 = 6;

/// A part: a run of samples of one segment (RFC 8216bis §3.2 Partial Segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Sample indexes per track (`MediaIndex::tracks` order); may be empty for a track.
    pub tracks: Vec<Range<usize>>,
    /// Start on the file's timeline.
    pub start: Duration,
    /// Duration (up to the next part's start).
    pub duration: Duration,
    /// Starts with a video keyframe (or the file has no video).
    pub independent: bool,
}

/// A segment of the file (RFC 8216 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sample indexes per track (`MediaIndex::tracks` order).
    pub tracks: Vec<Range<usize>>,
    /// Start on the file's timeline.
    pub start: Duration,
    /// Duration (up to the next segment's start; the last one up to the file's end).
    pub duration: Duration,
    /// Starts with a video keyframe (or the file has no video).
    pub independent: bool,
    /// The parts, in order, covering the segment exactly.
    pub parts: Vec<Part>,
}

/// A file cut into segments and parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmentation {
    /// Segments in order; never empty for a file with samples.
    pub segments: Vec<Segment>,
    /// `EXT-X-TARGETDURATION` in seconds: every segment's duration rounded to the nearest
    /// integer is at most this (RFC 8216 §4.3.3.1), and at least 1.
    pub target_duration_secs: u32,
    /// `EXT-X-PART-INF:PART-TARGET`: no part is longer (RFC 8216bis §4.4.3.7).
    pub part_target: Duration,
    /// Per track, how file timestamps become fragment timestamps.
    pub timing: Vec<TrackTiming>,
    /// Per track, the first sample served (samples before it are never in a segment).
    pub first_samples: Vec<usize>,
    /// End of the timeline (the file's duration).
    pub end: Duration,
}

/// Why a fragment could not be described.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    /// No such segment.
    #[error("no segment {0}")]
    NoSegment(u64),
    /// No such part of an existing segment.
    #[error("no part {part} in segment {msn}")]
    NoPart {
        /// Media sequence number.
        msn: u64,
        /// Part index.
        part: usize,
    },
    /// The index does not match the segmentation, or a box field overflowed.
    #[error(transparent)]
    Fmp4(#[from] Fmp4Error),
}

/// Nanoseconds of `ticks` at `timescale` (i128: no overflow for any u64 tick count).
fn nanos(ticks: i128, timescale: u32) -> i128 {
    ticks * 1_000_000_000 / i128::from(timescale.max(1))
}

fn to_duration(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

/// Decode time of sample `k` of `track` on the aligned timeline, in nanoseconds.
fn time_of(track: &Track, timing: &TrackTiming, k: usize) -> i128 {
    let dts = track.samples.get(k).map_or(0, |s| s.dts);
    nanos(
        i128::from(dts) + i128::from(timing.decode_shift),
        track.timescale,
    )
}

/// Cuts `index` into segments and parts; track `i` starts at `first_samples[i]` (missing
/// entries count as 0). Use [`fmp4::first_served_samples`] for the usual choice.
pub fn segment_file(index: &MediaIndex, first_samples: &[usize]) -> Segmentation {
    let first: Vec<usize> = (0..index.tracks.len())
        .map(|i| {
            first_samples
                .get(i)
                .copied()
                .unwrap_or(0)
                .min(index.tracks[i].samples.len())
        })
        .collect();
    let timing = TrackTiming::for_index(index, &first);
    let end = index.duration().as_nanos() as i128;
    // The leading track decides the cuts: video if any, else the first track.
    let video = index.tracks.iter().position(|t| t.kind == TrackKind::Video);
    let lead = video.unwrap_or(0);
    let mut segments = Vec::new();
    if let Some(track) = index.tracks.get(lead) {
        let t = |k: usize| time_of(track, &timing[lead], k);
        let n = track.samples.len();
        let is_key = |k: usize| video.is_none() || track.samples[k].sync;
        // Segment boundaries as lead-track sample indexes.
        let mut cuts = vec![first[lead]];
        let mut k = first[lead];
        while k < n {
            let start = t(*cuts.last().unwrap_or(&k));
            let min = start + MIN_SEGMENT.as_nanos() as i128;
            let max = start + MAX_SEGMENT.as_nanos() as i128;
            k += 1;
            while k < n && !(t(k) >= min && is_key(k)) && t(k) <= max {
                k += 1;
            }
            if k < n {
                cuts.push(k);
            }
        }
        // Segment start times: the first one at 0 (every track's first sample decodes at 0
        // or later on the aligned timeline), then the lead track's cut samples.
        let starts: Vec<i128> = cuts
            .iter()
            .enumerate()
            .map(|(j, &k)| if j == 0 { 0 } else { t(k) })
            .collect();
        for (j, &cut) in cuts.iter().enumerate() {
            let seg_start = starts[j];
            let seg_end = starts.get(j + 1).copied().unwrap_or(end.max(seg_start + 1));
            let lead_end = cuts.get(j + 1).copied().unwrap_or(n);
            // Part boundaries in the lead track: grow while the part ends within the target.
            let mut part_cuts = vec![cut];
            let mut p = cut;
            let end_of = |q: usize| if q < lead_end { t(q) } else { seg_end };
            while p < lead_end {
                let part_start = if p == cut { seg_start } else { t(p) };
                // [p, q) plus sample q while the part still ends within the target.
                let mut q = p + 1;
                while q < lead_end && end_of(q + 1) - part_start <= target_nanos() {
                    q += 1;
                }
                if q < lead_end {
                    part_cuts.push(q);
                }
                p = q;
            }
            let part_starts: Vec<i128> = part_cuts
                .iter()
                .enumerate()
                .map(|(i, &k)| if i == 0 { seg_start } else { t(k) })
                .collect();
            let mut parts = Vec::with_capacity(part_cuts.len());
            for (i, &pc) in part_cuts.iter().enumerate() {
                let ps = part_starts[i];
                let pe = part_starts.get(i + 1).copied().unwrap_or(seg_end);
                parts.push(Part {
                    tracks: vec![0..0; index.tracks.len()],
                    start: to_duration(ps),
                    duration: to_duration(pe - ps),
                    independent: is_key(pc),
                });
            }
            segments.push(Segment {
                tracks: vec![0..0; index.tracks.len()],
                start: to_duration(seg_start),
                duration: to_duration(seg_end - seg_start),
                independent: is_key(cut),
                parts,
            });
        }
    }
    // Every track's samples to the segment and part their decode time falls in (the lead
    // track's by construction, as its cuts are the part starts).
    for (i, track) in index.tracks.iter().enumerate() {
        let mut k = first[i];
        let n = track.samples.len();
        let seg_count = segments.len();
        for (j, seg) in segments.iter_mut().enumerate() {
            let seg_start = k;
            let part_count = seg.parts.len();
            for (pi, part) in seg.parts.iter_mut().enumerate() {
                let last = j + 1 == seg_count && pi + 1 == part_count;
                let limit = (part.start + part.duration).as_nanos() as i128;
                let part_start = k;
                while k < n && (last || time_of(track, &timing[i], k) < limit) {
                    k += 1;
                }
                part.tracks[i] = part_start..k;
            }
            seg.tracks[i] = seg_start..k;
        }
    }
    let mut segmentation = Segmentation {
        segments,
        target_duration_secs: 1,
        part_target: PART_TARGET,
        timing,
        first_samples: first,
        end: to_duration(end),
    };
    segmentation.set_targets();
    segmentation
}

fn target_nanos() -> i128 {
    PART_TARGET.as_nanos() as i128
}

impl Segmentation {
    /// Sets the target duration and part target from the segments and parts.
    fn set_targets(&mut self) {
        self.target_duration_secs = self
            .segments
            .iter()
            .map(|s| {
                // Rounded as written (three decimals), then to the nearest second.
                let ms = (s.duration.as_nanos() + 500_000) / 1_000_000;
                (((ms + 500) / 1000) as u32).max(1)
            })
            .max()
            .unwrap_or(1);
        let longest_part = self
            .segments
            .iter()
            .flat_map(|s| s.parts.iter().map(|p| p.duration))
            .max()
            .unwrap_or_default();
        // Whole milliseconds, rounded up: the playlist writes it with three decimals.
        self.part_target = PART_TARGET.max(Duration::from_millis(
            longest_part.as_nanos().div_ceil(1_000_000) as u64,
        ));
    }

    /// Describes the VOD fragment of segment `msn`, or of its part `part` (sequence numbers
    /// as [`fragment_sequence_number`]); decode times are the samples' own.
    pub fn vod_fragment(
        &self,
        index: &MediaIndex,
        msn: u64,
        part: Option<usize>,
    ) -> Result<Fragment, SegmentError> {
        let j = usize::try_from(msn).map_err(|_| SegmentError::NoSegment(msn))?;
        self.fragment_at(index, msn, j, part, None)
    }

    /// The fragment of file segment `j` in loop `loop_index`, numbered as channel `msn`.
    fn fragment_at(
        &self,
        index: &MediaIndex,
        msn: u64,
        j: usize,
        part: Option<usize>,
        live_loop: Option<u64>,
    ) -> Result<Fragment, SegmentError> {
        let loop_index = live_loop.unwrap_or(0);
        let seg = self.segments.get(j).ok_or(SegmentError::NoSegment(msn))?;
        let ranges = match part {
            None => &seg.tracks,
            Some(p) => {
                &seg.parts
                    .get(p)
                    .ok_or(SegmentError::NoPart { msn, part: p })?
                    .tracks
            }
        };
        let mut runs = Vec::with_capacity(ranges.len());
        for (i, range) in ranges.iter().enumerate() {
            let track = index.tracks.get(i).ok_or(Fmp4Error::NoTrack(i))?;
            let timing = self.timing.get(i).copied().unwrap_or_default();
            let loop_ticks = loop_ticks(self.end, track.timescale);
            // Live: the loop's last sample lasts until the next loop's first one (the loop is
            // as long as the longest track; a shorter one would leave a hole in the player's
            // buffered range, which MSE players stall on at every loop point).
            let last_duration = match live_loop {
                Some(_) if range.end == track.samples.len() && range.end > range.start => {
                    let first = self.first_samples.get(i).copied().unwrap_or(0);
                    let next_loop = loop_ticks.wrapping_add(timing.decode_time(track, first));
                    next_loop
                        .checked_sub(timing.decode_time(track, range.end - 1))
                        .filter(|&d| d > 0)
                }
                _ => None,
            };
            runs.push(TrackRun {
                track: i,
                samples: range.clone(),
                base_decode_time: loop_index
                    .wrapping_mul(loop_ticks)
                    .wrapping_add(timing.decode_time(track, range.start)),
                last_duration,
            });
        }
        let seq = fragment_sequence_number(msn, part.unwrap_or(0));
        Ok(fmp4::fragment(index, seq, &runs)?)
    }

    /// Peak segment bitrate in bits/s (`BANDWIDTH`, RFC 8216 §4.3.4.2).
    pub fn peak_bitrate_bps(&self, index: &MediaIndex) -> u64 {
        self.segments
            .iter()
            .map(|s| {
                let bits = segment_bytes(index, s) as f64 * 8.0;
                (bits / s.duration.as_secs_f64().max(0.001)).ceil() as u64
            })
            .max()
            .unwrap_or(0)
    }

    /// Average bitrate in bits/s over all segments (`AVERAGE-BANDWIDTH`).
    pub fn average_bitrate_bps(&self, index: &MediaIndex) -> u64 {
        let bytes: u64 = self.segments.iter().map(|s| segment_bytes(index, s)).sum();
        let secs: f64 = self.segments.iter().map(|s| s.duration.as_secs_f64()).sum();
        (bytes as f64 * 8.0 / secs.max(0.001)).ceil() as u64
    }

    /// True when every segment starts with a keyframe (`EXT-X-INDEPENDENT-SEGMENTS`).
    pub fn all_independent(&self) -> bool {
        self.segments.iter().all(|s| s.independent)
    }
}

fn segment_bytes(index: &MediaIndex, seg: &Segment) -> u64 {
    seg.tracks
        .iter()
        .zip(&index.tracks)
        .map(|(r, t)| {
            t.samples
                .get(r.clone())
                .map_or(0, |s| s.iter().map(|s| u64::from(s.len)).sum::<u64>())
        })
        .sum()
}

/// The loop length in a track's MP4 timescale, rounded to the nearest tick (the RTP clock's
/// `LiveTrack::loop_ticks` is another clock: 90 kHz for video).
fn loop_ticks(loop_duration: Duration, timescale: u32) -> u64 {
    ((loop_duration.as_nanos() * u128::from(timescale) + 500_000_000) / 1_000_000_000) as u64
}

/// The `mfhd` sequence number of segment `msn`'s part `part` (a whole segment counts as its
/// part 0): increasing in decode order, 256 numbers per segment, modulo 2^32.
pub fn fragment_sequence_number(msn: u64, part: usize) -> u32 {
    (msn.wrapping_mul(256)
        .wrapping_add(part as u64)
        .wrapping_add(1)) as u32
}

/// A channel's HLS timeline: its file's segmentation repeated loop after loop.
#[derive(Debug, Clone)]
pub struct LiveHls {
    /// The file's segmentation (segment `j` of every loop).
    pub segmentation: Segmentation,
    /// Length of one loop (`LiveChannel::loop_duration`).
    pub loop_duration: Duration,
    /// Per track, the loop length in the track's MP4 timescale.
    pub loop_ticks: Vec<u64>,
}

/// Where the live edge is at a channel time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEdge {
    /// The segment being filled (the one the channel time falls in).
    pub filling_msn: u64,
    /// Its parts complete so far.
    pub complete_parts: usize,
    /// The first segment of the playlist window (`EXT-X-MEDIA-SEQUENCE`).
    pub first_msn: u64,
}

impl LiveEdge {
    /// Complete segments in the window.
    pub fn complete_segments(&self) -> Range<u64> {
        self.first_msn..self.filling_msn
    }
}

/// One segment of the live timeline.
#[derive(Debug, Clone, Copy)]
pub struct LiveSegment<'a> {
    /// Media sequence number.
    pub msn: u64,
    /// Channel time it starts at.
    pub start: Duration,
    /// Its duration.
    pub duration: Duration,
    /// The file segment it repeats.
    pub segment: &'a Segment,
}

impl LiveHls {
    /// The timeline of `channel` (its media's segmentation, the live tracks' first samples).
    pub fn new(channel: &LiveChannel) -> Self {
        let index = &channel.media.index;
        let first: Vec<usize> = channel.tracks.iter().map(|t| t.first_sample).collect();
        let mut segmentation = segment_file(index, &first);
        let loop_duration = channel.loop_duration.max(Duration::from_millis(1));
        // The last segment runs to the loop's end, where the next loop's first begins.
        segmentation.end = loop_duration;
        if let Some(last) = segmentation.segments.last_mut() {
            last.duration = loop_duration.saturating_sub(last.start);
            if let Some(part) = last.parts.last_mut() {
                part.duration = loop_duration.saturating_sub(part.start);
            }
        }
        segmentation.set_targets();
        let loop_ticks = index
            .tracks
            .iter()
            .map(|t| loop_ticks(loop_duration, t.timescale))
            .collect();
        Self {
            segmentation,
            loop_duration,
            loop_ticks,
        }
    }

    fn per_loop(&self) -> u64 {
        (self.segmentation.segments.len() as u64).max(1)
    }

    /// Segment `msn` of the channel; `None` only for a file without samples.
    pub fn segment(&self, msn: u64) -> Option<LiveSegment<'_>> {
        let k = self.per_loop();
        let segment = self.segmentation.segments.get((msn % k) as usize)?;
        let loop_start = self
            .loop_duration
            .saturating_mul(u32::try_from(msn / k).ok()?);
        Some(LiveSegment {
            msn,
            start: loop_start + segment.start,
            duration: segment.duration,
            segment,
        })
    }

    /// The channel time at which segment `msn` (or its part `part`) is complete: the end of
    /// its last sample's slot. `None` for a part the segment does not have.
    pub fn completes_at(&self, msn: u64, part: Option<usize>) -> Option<Duration> {
        let seg = self.segment(msn)?;
        match part {
            None => Some(seg.start + seg.duration),
            Some(p) => {
                let part = seg.segment.parts.get(p)?;
                Some(seg.start - seg.segment.start + part.start + part.duration)
            }
        }
    }

    /// RFC 8216bis §6.2.5.2: a part index past the segment's last part means part 0 of the
    /// next segment. Returns the (msn, part) a blocking request waits for.
    pub fn normalize_part(&self, msn: u64, part: usize) -> (u64, usize) {
        match self.segment(msn) {
            Some(seg) if part >= seg.segment.parts.len() => (msn.saturating_add(1), 0),
            _ => (msn, part),
        }
    }

    /// The live edge at channel time `t`.
    pub fn edge(&self, t: Duration) -> LiveEdge {
        let k = self.per_loop();
        let loop_nanos = self.loop_duration.as_nanos().max(1);
        let n = (t.as_nanos() / loop_nanos) as u64;
        let within = Duration::from_nanos((t.as_nanos() % loop_nanos) as u64);
        let segs = &self.segmentation.segments;
        // The last segment starting at or before `within` (segment 0 starts at 0).
        let j = segs
            .partition_point(|s| s.start <= within)
            .saturating_sub(1);
        let filling_msn = n * k + j as u64;
        let complete_parts = segs.get(j).map_or(0, |s| {
            s.parts
                .iter()
                .take_while(|p| p.start + p.duration <= within)
                .count()
        });
        LiveEdge {
            filling_msn,
            complete_parts,
            first_msn: filling_msn.saturating_sub(LIVE_WINDOW_SEGMENTS),
        }
    }

    /// Whether segment `msn` (or its part) may be served at `t`: complete and not older than
    /// the window's first segment.
    pub fn is_available(&self, t: Duration, msn: u64, part: Option<usize>) -> bool {
        let edge = self.edge(t);
        msn >= edge.first_msn && self.completes_at(msn, part).is_some_and(|done| done <= t)
    }

    /// Describes the fragment of segment `msn` (or its part `part`), decode times on the
    /// channel's timeline (`index` must be the channel's media index).
    pub fn fragment(
        &self,
        index: &MediaIndex,
        msn: u64,
        part: Option<usize>,
    ) -> Result<Fragment, SegmentError> {
        let k = self.per_loop();
        let j = usize::try_from(msn % k).map_err(|_| SegmentError::NoSegment(msn))?;
        self.segmentation
            .fragment_at(index, msn, j, part, Some(msn / k))
    }
}
