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
    /// The whole fragment.
    pub bytes: Arc<[u8]>,
}

/// The finished segments of one stream, newest last, bounded by count and bytes.
#[derive(Debug, Default)]
pub struct SegmentStore {
    segments: VecDeque<StoredSegment>,
    bytes: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that left the store.
    discontinuities_gone: u64,
}

impl SegmentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next finished segment; drops the oldest past [`STORE_SEGMENTS`] +
    /// the window or [`LOG_STORE_BYTES`].
    pub fn push(&mut self, segment: StoredSegment) {
        self.bytes += segment.bytes.len() as u64;
        self.segments.push_back(segment);
        while self.segments.len() > STORE_SEGMENTS
            || (self.bytes > LOG_STORE_BYTES && self.segments.len() > 1)
        {
            if let Some(old) = self.segments.pop_front() {
                self.bytes -= old.bytes.len() as u64;
                if old.discontinuity {
                    self.discontinuities_gone += 1;
                }
            }
        }
    }

    /// Segment `msn`, while stored.
    pub fn get(&self, msn: u64) -> Option<&StoredSegment> {
        let first = self.segments.front()?.msn;
        let k = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(k).filter(|s| s.msn == msn)
    }

    /// The oldest stored segment's number.
    pub fn oldest_msn(&self) -> Option<u64> {
        self.segments.front().map(|s| s.msn)
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

    /// Bytes held.
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

/// The live media playlist of a log's store (RFC 8216 §4.3.3): the window's segments, every
/// URI relative and followed by `query`; `EXT-X-ENDLIST` once the stream `ended`.
pub fn log_media_playlist(
    store: &SegmentStore,
    target: Duration,
    query: &QuerySuffix,
    ended: bool,
) -> String {
    let q = query.as_str();
    let mut out = String::with_capacity(512);
    let first = store.window().next().map_or(0, |s| s.msn);
    let gone_before_window = store
        .segments
        .iter()
        .take_while(|s| s.msn < first)
        .filter(|s| s.discontinuity)
        .count() as u64;
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:{}\n#EXT-X-MAP:URI=\"init.mp4{q}\"\n",
        target.as_secs().max(1),
        store.discontinuities_gone + gone_before_window,
    );
    for s in store.window() {
        // Written on the first listed segment too: the sequence counts only the tags that
        // left the playlist (RFC 8216 §6.2.1).
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = write!(out, "#EXTINF:{},\nseg{}.m4s{q}\n", secs3(s.duration), s.msn);
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
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

    fn seg(msn: u64, len: usize) -> StoredSegment {
        StoredSegment {
            msn,
            duration: Duration::from_secs(2),
            independent: true,
            discontinuity: false,
            bytes: vec![0u8; len].into(),
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
        let text = log_media_playlist(&store, Duration::from_secs(2), &QuerySuffix::none(), false);
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
            log_media_playlist(store, Duration::from_secs(2), &QuerySuffix::none(), true)
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
