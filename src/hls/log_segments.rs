//! HLS for an ingested stream's growing log (RFC 8216 §3, §4.3.3, §6.2.2), sans-IO: where a
//! segment is cut ([`cut_before`]), the bounded store of finished segments every shard serves
//! from ([`SegmentStore`]), and its playlists ([`log_media_playlist`],
//! [`log_multivariant_playlist`]).
//!
//! Unlike a file or a looped channel, a log is only known up to its newest sample and its old
//! bytes are overwritten, so segments are cut as samples arrive and each finished segment is
//! kept as bytes (copied once per stream by the shell, `shard::hls::logs`). The playlist is
//! written from the store alone: it never names a segment whose bytes are gone. No clock and
//! no log are read here.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::playlist::{codecs, QuerySuffix};
use super::segments::{LIVE_WINDOW_SEGMENTS, MAX_SEGMENT, MIN_SEGMENT};
use crate::media::track::{Codec, MediaIndex, TrackKind};

/// A forced cut (a GOP longer than the target) happens this far past the target duration,
/// so the segment still rounds to the target (RFC 8216 §4.3.3.1: "rounded to the nearest
/// integer") with frames up to 100 ms long.
const FORCE_SLACK: Duration = Duration::from_millis(400);
/// Finished segments kept behind the playlist window: a segment that left the playlist stays
/// available for about a playlist's duration (RFC 8216 §6.2.2).
pub const STORE_SEGMENTS: usize = 2 * LIVE_WINDOW_SEGMENTS as usize;
/// Bytes of finished segments a stream's store keeps at most (the oldest go first).
pub const LOG_STORE_BYTES: u64 = 64 * 1024 * 1024;

/// Whether a segment ends before a lead-track sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The sample belongs to the open segment.
    No,
    /// The sample is a keyframe starting the next segment (independent).
    AtKeyframe,
    /// The GOP ran past the target: the next segment starts here without a keyframe.
    Forced,
}

/// Whether the open segment ends before a lead-track sample `since_start` after the segment's
/// start (`sync`: a keyframe, or any audio sample when the stream has no video). `target`: the
/// target duration once fixed (before that, [`MAX_SEGMENT`]).
pub fn cut_before(since_start: Duration, sync: bool, target: Option<Duration>) -> Cut {
    if sync && since_start >= MIN_SEGMENT {
        Cut::AtKeyframe
    } else if since_start >= target.unwrap_or(MAX_SEGMENT) + FORCE_SLACK {
        Cut::Forced
    } else {
        Cut::No
    }
}

/// The target duration fixed by the first finished segment: its duration rounded to the
/// nearest second, at least [`MIN_SEGMENT`] and at most [`MAX_SEGMENT`] (RFC 8216 §4.3.3.1:
/// a live playlist's target duration does not change).
pub fn target_from_first(duration: Duration) -> Duration {
    let secs = (duration.as_millis() + 500) / 1000;
    Duration::from_secs(secs as u64).clamp(MIN_SEGMENT, MAX_SEGMENT)
}

/// A finished part of a segment (RFC 8216bis §3.2 Partial Segments): its duration and its
/// bytes (`moof` + `mdat`), cut from the log as soon as the log holds a lead-track sample
/// past its end.
#[derive(Debug, Clone)]
pub struct StoredPart {
    /// Duration (`EXT-X-PART:DURATION`).
    pub duration: Duration,
    /// Starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The whole fragment.
    pub bytes: Arc<[u8]>,
}

/// A finished segment: its place on the timeline and its bytes (`moof` + `mdat`).
#[derive(Debug, Clone)]
pub struct StoredSegment {
    /// Media sequence number.
    pub msn: u64,
    /// Duration (`EXTINF`).
    pub duration: Duration,
    /// Starts with a keyframe.
    pub independent: bool,
    /// A gap in the timeline before it (the store restarted after falling behind):
    /// `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// The whole fragment: one `moof` over the same samples as its parts together.
    pub bytes: Arc<[u8]>,
    /// Its parts while they are recent ([`PART_KEEP_TARGETS`]); empty once dropped.
    pub parts: Vec<StoredPart>,
}

/// Parts are listed for segments ending within this many target durations of the playlist's
/// end (RFC 8216bis §4.4.4.9: a server keeps them for at least the last three).
pub const PART_LINES_TARGETS: u32 = 3;
/// Parts' bytes are kept one target duration longer than they are listed, so a player that
/// read a playlist just before can still fetch them.
pub const PART_KEEP_TARGETS: u32 = PART_LINES_TARGETS + 1;

/// The finished segments of one stream, newest last, bounded by count and bytes, and the
/// finished parts of the segment being filled.
#[derive(Debug, Default)]
pub struct SegmentStore {
    segments: VecDeque<StoredSegment>,
    bytes: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that left the store.
    discontinuities_gone: u64,
    /// `EXT-X-TARGETDURATION`, fixed by the first segment.
    target: Option<Duration>,
    /// The number of the segment being filled.
    open_msn: u64,
    /// Its finished parts.
    open_parts: Vec<StoredPart>,
    /// It follows a discontinuity (the tag goes before its first part).
    open_discontinuity: bool,
}

/// Whether a blocking playlist reload (RFC 8216bis §6.2.5.2) can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReload {
    /// The segment or part asked for is in the playlist (or already left it).
    Now,
    /// Not yet: hold the request until it is.
    Wait,
    /// Further ahead than the RFC lets a client ask: 400.
    TooFar,
}

/// RFC 8216bis §6.2.5.2 "Advance Part Limit": three divided by the part target (in parts).
pub fn advance_part_limit(part_target: Duration) -> u64 {
    if part_target < Duration::from_secs(1) {
        (3.0 / part_target.as_secs_f64().max(0.001)).ceil() as u64
    } else {
        3
    }
}

impl SegmentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next finished segment (its parts are the open parts, moved in; `segment.parts`
    /// is replaced); drops the oldest past [`STORE_SEGMENTS`] or [`LOG_STORE_BYTES`], and the
    /// parts of segments older than [`PART_KEEP_TARGETS`] target durations. The first segment
    /// fixes the target duration ([`target_from_first`]).
    pub fn push(&mut self, mut segment: StoredSegment) {
        if self.target.is_none() {
            self.target = Some(target_from_first(segment.duration));
        }
        let parts = std::mem::take(&mut self.open_parts);
        let part_bytes: usize = parts.iter().map(|p| p.bytes.len()).sum();
        self.bytes -= part_bytes as u64;
        segment.parts = parts;
        self.bytes += (segment.bytes.len() + part_bytes) as u64;
        self.open_msn = segment.msn + 1;
        self.open_discontinuity = false;
        self.segments.push_back(segment);
        // Parts' bytes of segments that ended long enough ago.
        let keep = self.target() * PART_KEEP_TARGETS;
        let mut since_end = Duration::ZERO;
        for s in self.segments.iter_mut().rev() {
            if since_end > keep && !s.parts.is_empty() {
                let freed: usize = s.parts.iter().map(|p| p.bytes.len()).sum();
                self.bytes -= freed as u64;
                s.parts = Vec::new();
            }
            since_end += s.duration;
        }
        while self.segments.len() > STORE_SEGMENTS
            || (self.bytes > LOG_STORE_BYTES && self.segments.len() > 1)
        {
            if let Some(old) = self.segments.pop_front() {
                let parts: usize = old.parts.iter().map(|p| p.bytes.len()).sum();
                self.bytes -= (old.bytes.len() + parts) as u64;
                if old.discontinuity {
                    self.discontinuities_gone += 1;
                }
            }
        }
    }

    /// Adds the next finished part of the segment being filled (`msn`: that segment's
    /// number; `discontinuity`: it follows a gap).
    pub fn push_part(&mut self, msn: u64, discontinuity: bool, part: StoredPart) {
        if msn != self.open_msn {
            self.open_msn = msn;
            self.open_parts.clear();
        }
        self.open_discontinuity = discontinuity;
        self.bytes += part.bytes.len() as u64;
        self.open_parts.push(part);
    }

    /// The target duration (2 s until the first segment fixed it).
    pub fn target(&self) -> Duration {
        self.target.unwrap_or(MIN_SEGMENT)
    }

    /// The target duration once the first segment fixed it.
    pub fn target_fixed(&self) -> Option<Duration> {
        self.target
    }

    /// The segment being filled: its number and how many of its parts are finished.
    pub fn open_edge(&self) -> (u64, usize) {
        (self.open_msn, self.open_parts.len())
    }

    /// The finished parts of the segment being filled.
    pub fn open_parts(&self) -> &[StoredPart] {
        &self.open_parts
    }

    /// Segment `msn`, while stored.
    pub fn get(&self, msn: u64) -> Option<&StoredSegment> {
        let first = self.segments.front()?.msn;
        let k = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(k).filter(|s| s.msn == msn)
    }

    /// Part `part` of segment `msn` (finished or being filled), while stored.
    pub fn part(&self, msn: u64, part: usize) -> Option<&StoredPart> {
        if msn == self.open_msn {
            return self.open_parts.get(part);
        }
        self.get(msn)?.parts.get(part)
    }

    /// The oldest stored segment's number.
    pub fn oldest_msn(&self) -> Option<u64> {
        self.segments.front().map(|s| s.msn)
    }

    /// Whether a blocking reload for segment `msn` (and its part `part`) can be answered
    /// (RFC 8216bis §6.2.5.2): a part index past a finished segment's last part is part 0
    /// of the next segment; a segment more than two past the last finished one, or a part
    /// more than the Advance Part Limit past the last finished part, is too far.
    pub fn reload(&self, msn: u64, part: Option<usize>, part_target: Duration) -> LogReload {
        let (open, done) = self.open_edge();
        let Some(part) = part else {
            // The segment appears (its EXTINF) when it is finished.
            return if msn < open {
                LogReload::Now
            } else if msn > open.saturating_add(1) {
                LogReload::TooFar
            } else {
                LogReload::Wait
            };
        };
        if msn < open {
            // Finished (or gone): its parts are all there; one past the last is the open
            // segment's part 0.
            let count = self.get(msn).map(|s| s.parts.len());
            return match count {
                Some(c) if part >= c && c > 0 && msn + 1 == open => {
                    if done > 0 {
                        LogReload::Now
                    } else {
                        LogReload::Wait
                    }
                }
                _ => LogReload::Now,
            };
        }
        let limit = advance_part_limit(part_target);
        // Parts ahead of the last finished one (counting the open segment's unknown rest as
        // a target duration's worth).
        let ahead = if msn == open {
            (part as u64 + 1).saturating_sub(done as u64)
        } else if msn == open + 1 {
            let per_segment =
                (self.target().as_secs_f64() / part_target.as_secs_f64().max(0.001)).ceil() as u64;
            per_segment.saturating_sub(done as u64) + part as u64 + 1
        } else {
            return LogReload::TooFar;
        };
        if ahead == 0 {
            LogReload::Now
        } else if ahead > limit {
            LogReload::TooFar
        } else {
            LogReload::Wait
        }
    }

    /// The segments a playlist lists: the newest [`LIVE_WINDOW_SEGMENTS`].
    pub fn window(&self) -> impl Iterator<Item = &StoredSegment> {
        let skip = self
            .segments
            .len()
            .saturating_sub(LIVE_WINDOW_SEGMENTS as usize);
        self.segments.iter().skip(skip)
    }

    /// No segment finished yet.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes held (segments and parts).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Peak and average bitrate of the stored segments, bits/s (`BANDWIDTH`,
    /// `AVERAGE-BANDWIDTH`, RFC 8216 §4.3.4.2).
    pub fn bitrates_bps(&self) -> (u64, u64) {
        let rate = |bytes: usize, d: Duration| bytes as f64 * 8.0 / d.as_secs_f64().max(0.001);
        let peak = self
            .segments
            .iter()
            .map(|s| rate(s.bytes.len(), s.duration))
            .fold(0.0, f64::max);
        let total: usize = self.segments.iter().map(|s| s.bytes.len()).sum();
        let secs: Duration = self.segments.iter().map(|s| s.duration).sum();
        (peak.ceil() as u64, rate(total, secs).ceil() as u64)
    }
}

/// Seconds with three decimals (`EXTINF`).
fn secs3(d: Duration) -> String {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The LL-HLS media playlist of a log's store (RFC 8216 §4.3.3, RFC 8216bis §4.4.3.7
/// `EXT-X-PART-INF`, §4.4.3.8 `EXT-X-SERVER-CONTROL`, §4.4.4.9 `EXT-X-PART`, §4.4.5.3
/// `EXT-X-PRELOAD-HINT`): the window's segments, the parts of those that ended within
/// [`PART_LINES_TARGETS`] target durations, the filling segment's finished parts and a hint
/// naming its next part; every URI relative and followed by `query`; `EXT-X-ENDLIST` (and
/// no hint) once the stream `ended`.
pub fn log_media_playlist(
    store: &SegmentStore,
    part_target: Duration,
    query: &QuerySuffix,
    ended: bool,
) -> String {
    let q = query.as_str();
    let target = store.target();
    let mut out = String::with_capacity(2048);
    let first = store.window().next().map_or(0, |s| s.msn);
    let gone_before_window = store
        .segments
        .iter()
        .take_while(|s| s.msn < first)
        .filter(|s| s.discontinuity)
        .count() as u64;
    // PART-HOLD-BACK: at least 3 part targets (RFC 8216bis §4.4.3.8 "SHOULD"); HOLD-BACK at
    // least 3 target durations (its "MUST"); as the channels' playlists.
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},HOLD-BACK={}\n\
         #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:{}\n#EXT-X-MAP:URI=\"init.mp4{q}\"\n",
        target.as_secs().max(1),
        secs3(part_target * 3),
        secs3(target * 3),
        secs3(part_target),
        store.discontinuities_gone + gone_before_window,
    );
    let write_parts = |out: &mut String, msn: u64, parts: &[StoredPart]| {
        for (k, p) in parts.iter().enumerate() {
            let _ = write!(
                out,
                "#EXT-X-PART:DURATION={},URI=\"part{msn}.{k}.m4s{q}\"",
                secs3(p.duration)
            );
            out.push_str(if p.independent {
                ",INDEPENDENT=YES\n"
            } else {
                "\n"
            });
        }
    };
    // How long after each window segment's end the playlist ends.
    let open_len: Duration = store.open_parts.iter().map(|p| p.duration).sum();
    let window: Vec<&StoredSegment> = store.window().collect();
    let mut after_end = vec![Duration::ZERO; window.len()];
    let mut acc = open_len;
    for (k, s) in window.iter().enumerate().rev() {
        after_end[k] = acc;
        acc += s.duration;
    }
    let horizon = target * PART_LINES_TARGETS;
    for (k, s) in window.iter().enumerate() {
        // Written on the first listed segment too: the sequence counts only the tags that
        // left the playlist (RFC 8216 §6.2.1).
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if after_end[k] <= horizon {
            write_parts(&mut out, s.msn, &s.parts);
        }
        let _ = write!(out, "#EXTINF:{},\nseg{}.m4s{q}\n", secs3(s.duration), s.msn);
    }
    if store.open_discontinuity && !store.open_parts.is_empty() {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    write_parts(&mut out, store.open_msn, &store.open_parts);
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    } else {
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{}.{}.m4s{q}\"",
            store.open_msn,
            store.open_parts.len()
        );
    }
    out
}

/// The multivariant playlist of a log (RFC 8216 §4.3.4.2): one variant, `media.m3u8`, its
/// bitrates from the stored segments.
pub fn log_multivariant_playlist(
    index: &MediaIndex,
    store: &SegmentStore,
    query: &QuerySuffix,
) -> String {
    let (peak, average) = store.bitrates_bps();
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
        peak.max(1),
        average.max(1),
        codecs(index)
    );
    if let Some(video) = index.tracks.iter().find(|t| t.kind == TrackKind::Video) {
        if let Codec::H264(c) = &video.codec {
            if c.width > 0 && c.height > 0 {
                let _ = write!(out, ",RESOLUTION={}x{}", c.width, c.height);
            }
        }
    }
    let _ = write!(out, "\nmedia.m3u8{}\n", query.as_str());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::segments::PART_TARGET;

    fn seg(msn: u64, len: usize) -> StoredSegment {
        StoredSegment {
            msn,
            duration: Duration::from_secs(2),
            independent: true,
            discontinuity: false,
            bytes: vec![0u8; len].into(),
            parts: Vec::new(),
        }
    }

    #[test]
    fn cuts_at_keyframes_after_the_minimum_and_forces_past_the_target() {
        let s = Duration::from_millis;
        assert_eq!(cut_before(s(1960), true, None), Cut::No);
        assert_eq!(cut_before(s(2000), true, None), Cut::AtKeyframe);
        assert_eq!(cut_before(s(2400), false, Some(s(2000))), Cut::Forced);
        assert_eq!(cut_before(s(2399), false, Some(s(2000))), Cut::No);
        assert_eq!(cut_before(s(6000), false, None), Cut::No);
        assert_eq!(cut_before(s(6400), false, None), Cut::Forced);
        assert_eq!(target_from_first(s(2040)), s(2000));
        assert_eq!(target_from_first(s(500)), s(2000));
        assert_eq!(target_from_first(s(4500)), s(5000));
        assert_eq!(target_from_first(s(60_000)), s(6000));
    }

    #[test]
    fn store_is_bounded_and_the_playlist_lists_only_stored_segments() {
        let mut store = SegmentStore::new();
        for msn in 0..40 {
            store.push(seg(msn, 1000));
        }
        assert_eq!(
            store.get(40 - STORE_SEGMENTS as u64 - 1).map(|s| s.msn),
            None
        );
        assert_eq!(store.get(39).map(|s| s.msn), Some(39));
        assert_eq!(store.oldest_msn(), Some(40 - STORE_SEGMENTS as u64));
        let text = log_media_playlist(&store, PART_TARGET, &QuerySuffix::none(), false);
        let listed: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("seg")?.strip_suffix(".m4s")?.parse().ok())
            .collect();
        assert_eq!(listed, (34..40).collect::<Vec<_>>());
        assert!(listed.iter().all(|&m| store.get(m).is_some()));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:34\n"));
        assert!(!text.contains("ENDLIST"));
        // A discontinuity is tagged while listed and counted once it left (RFC 8216 §6.2.1).
        let mut gap = seg(40, 1000);
        gap.discontinuity = true;
        store.push(gap);
        let text = |store: &SegmentStore| {
            log_media_playlist(store, PART_TARGET, &QuerySuffix::none(), true)
        };
        assert!(text(&store).contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"));
        assert!(text(&store).contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nseg40.m4s"));
        assert!(text(&store).ends_with("#EXT-X-ENDLIST\n"));
        for msn in 41..47 {
            store.push(seg(msn, 1000));
        }
        assert!(text(&store).contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
        assert!(!text(&store).contains("#EXT-X-DISCONTINUITY\n"));
        // Bytes bound: one huge segment pushes the rest out.
        store.push(seg(47, LOG_STORE_BYTES as usize));
        assert_eq!(store.get(46).map(|s| s.msn), None);
        assert_eq!(store.get(47).map(|s| s.msn), Some(47));
    }
}
