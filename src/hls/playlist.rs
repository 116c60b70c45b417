//! HLS playlists (RFC 8216, draft-pantos-hls-rfc8216bis for LL-HLS) and the parsing of the
//! request names and blocking-reload queries they lead to.
//!
//! The playlists are text built from a [`Segmentation`] or a [`LiveHls`] at a channel time;
//! every URI is relative (`init.mp4`, `seg{msn}.m4s`, `part{msn}.{k}.m4s`, `media.m3u8`)
//! followed by the caller's [`QuerySuffix`] (`?token=…&v=…`), so tokens ride along.

use std::fmt::Write as _;
use std::time::Duration;

use thiserror::Error;

use super::segments::{LiveHls, Segmentation};
use crate::media::track::{Codec, MediaIndex, TrackKind};

/// Part segments older than this many target durations lose their `EXT-X-PART` lines
/// (RFC 8216bis §4.4.4.9 lets a server drop them; it must keep them for the last 3).
const PART_LINES_TARGETS: u32 = 3;

/// A query string appended to every URI of a playlist: empty, or `?` then URI query
/// characters only (RFC 3986 §3.4), so it can sit inside a quoted attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySuffix(String);

/// A query suffix was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("query suffix must be empty or '?' then at most 1024 URI query characters")]
pub struct BadQuerySuffix;

impl QuerySuffix {
    /// No query.
    pub fn none() -> Self {
        Self::default()
    }

    /// The suffix as written after each URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for QuerySuffix {
    type Error = BadQuerySuffix;

    fn try_from(s: &str) -> Result<Self, BadQuerySuffix> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        let rest = s.strip_prefix('?').ok_or(BadQuerySuffix)?;
        // RFC 3986 §3.4 query = *( pchar / "/" / "?" ); pchar = unreserved / pct-encoded /
        // sub-delims / ":" / "@". No quote, space or control can reach the playlist.
        let ok = rest.len() <= 1024
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadQuerySuffix)
        }
    }
}

/// Seconds with three decimals, as `EXTINF` and the part attributes take them.
fn secs3(d: Duration) -> String {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// RFC 6381 §3.3 codec strings of the served tracks: `avc1.PPCCLL` from the SPS
/// (profile_idc, constraint flags, level_idc, ITU-T H.264 §7.3.2.1.1), `mp4a.40.N` with N the
/// AAC audio object type.
pub fn codecs(index: &MediaIndex) -> String {
    let mut out = Vec::new();
    for track in &index.tracks {
        match &track.codec {
            Codec::H264(c) => {
                let (p, k, l) = match c.sps.first() {
                    Some(sps) if sps.len() >= 4 => (sps[1], sps[2], sps[3]),
                    _ => (c.profile_idc, c.profile_compat, c.level_idc),
                };
                out.push(format!("avc1.{p:02x}{k:02x}{l:02x}"));
            }
            Codec::H265(c) => out.push(hvc1_codec(c)),
            Codec::Aac(c) => out.push(format!("mp4a.40.{}", c.object_type)),
            // RFC 6381 names Opus in MP4 `Opus` (the sample entry); HLS and browsers use `opus`.
            Codec::Opus(_) => out.push("opus".to_string()),
            // Never reaches a playlist: `init_segment_for` refuses it first.
            Codec::Mp2t(_)
            | Codec::Vp8(_)
            | Codec::Vp9(_)
            | Codec::MpegAudio(_)
            | Codec::G711(_) => {}
        }
    }
    out.join(",")
}

/// The ISO/IEC 14496-15 Annex E.3 codec string of an H.265 track: `hvc1.` profile space
/// (none, A, B, C) and profile_idc, the compatibility flags bit-reversed in hex, tier (L/H)
/// and level_idc, then the constraint bytes up to the last non-zero one (e.g. `hvc1.1.6.L93.B0`).
pub fn hvc1_codec(c: &crate::media::track::H265Config) -> String {
    let space = ["", "A", "B", "C"][usize::from(c.profile_space & 3)];
    let tier = if c.tier_flag { 'H' } else { 'L' };
    let mut s = format!(
        "hvc1.{space}{}.{:X}.{tier}{}",
        c.profile_idc,
        c.profile_compat.reverse_bits(),
        c.level_idc
    );
    let used = c
        .constraint_flags
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &c.constraint_flags[..used] {
        let _ = write!(s, ".{b:X}");
    }
    s
}

/// The multivariant playlist (RFC 8216 §4.3.4.2 `EXT-X-STREAM-INF`): one variant, the media
/// playlist `media.m3u8`.
pub fn multivariant_playlist(
    index: &MediaIndex,
    segmentation: &Segmentation,
    query: &QuerySuffix,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    if segmentation.all_independent() {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
        segmentation.peak_bitrate_bps(index),
        segmentation.average_bitrate_bps(index),
        codecs(index)
    );
    if let Some(video) = index.tracks.iter().find(|t| t.kind == TrackKind::Video) {
        if let Codec::H264(c) = &video.codec {
            let _ = write!(out, ",RESOLUTION={}x{}", c.width, c.height);
        }
        if let Some(fps) = video.frame_rate() {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
    }
    let _ = write!(out, "\nmedia.m3u8{}\n", query.as_str());
    out
}

/// The VOD media playlist (RFC 8216 §4.3.3.5 `EXT-X-PLAYLIST-TYPE:VOD`, §4.3.3.4 `EXT-X-ENDLIST`).
pub fn vod_media_playlist(segmentation: &Segmentation, query: &QuerySuffix) -> String {
    let q = query.as_str();
    let mut out = String::with_capacity(64 + segmentation.segments.len() * 32);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n",
        segmentation.target_duration_secs
    );
    if segmentation.all_independent() {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let _ = writeln!(out, "#EXT-X-MAP:URI=\"init.mp4{q}\"");
    for (msn, seg) in segmentation.segments.iter().enumerate() {
        let _ = write!(out, "#EXTINF:{},\nseg{msn}.m4s{q}\n", secs3(seg.duration));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// The live LL-HLS media playlist at channel time `t` (RFC 8216bis §4.4.3.7 `EXT-X-PART-INF`,
/// §4.4.3.8 `EXT-X-SERVER-CONTROL`, §4.4.4.9 `EXT-X-PART`, §4.4.5.3 `EXT-X-PRELOAD-HINT`):
/// the last complete segments with their parts, the filling segment's complete parts, and
/// a hint naming the next part.
pub fn live_media_playlist(live: &LiveHls, t: Duration, query: &QuerySuffix) -> String {
    let q = query.as_str();
    let seg = &live.segmentation;
    let edge = live.edge(t);
    let target = seg.target_duration_secs;
    let mut out = String::with_capacity(1024);
    // PART-HOLD-BACK: at least 3 part targets (RFC 8216bis §4.4.3.8 "SHOULD"); HOLD-BACK at
    // least 3 target durations (its "MUST").
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},HOLD-BACK={}\n\
         #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        secs3(seg.part_target * 3),
        secs3(Duration::from_secs(u64::from(target) * 3)),
        secs3(seg.part_target),
        edge.first_msn,
    );
    if seg.all_independent() {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let _ = writeln!(out, "#EXT-X-MAP:URI=\"init.mp4{q}\"");
    let parts_from = t.saturating_sub(Duration::from_secs(u64::from(target * PART_LINES_TARGETS)));
    let write_parts = |out: &mut String, msn: u64, count: usize| {
        let Some(s) = live.segment(msn) else { return };
        for (k, part) in s.segment.parts.iter().take(count).enumerate() {
            let _ = write!(
                out,
                "#EXT-X-PART:DURATION={},URI=\"part{msn}.{k}.m4s{q}\"",
                secs3(part.duration)
            );
            out.push_str(if part.independent {
                ",INDEPENDENT=YES\n"
            } else {
                "\n"
            });
        }
    };
    for msn in edge.complete_segments() {
        let Some(s) = live.segment(msn) else { break };
        if s.start + s.duration >= parts_from {
            write_parts(&mut out, msn, usize::MAX);
        }
        let _ = write!(out, "#EXTINF:{},\nseg{msn}.m4s{q}\n", secs3(s.duration));
    }
    write_parts(&mut out, edge.filling_msn, edge.complete_parts);
    let _ = writeln!(
        out,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{}.{}.m4s{q}\"",
        edge.filling_msn, edge.complete_parts
    );
    out
}

/// What an HLS request names (the last path segment under `/hls/{stream}/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsResource {
    /// `index.m3u8`: the multivariant playlist.
    Multivariant,
    /// `media.m3u8`: the media playlist.
    MediaPlaylist,
    /// `init.mp4`: the init segment.
    Init,
    /// `seg{msn}.m4s`.
    Segment {
        /// Media sequence number.
        msn: u64,
    },
    /// `part{msn}.{part}.m4s`.
    Part {
        /// Media sequence number of the parent segment.
        msn: u64,
        /// Part index within it.
        part: usize,
    },
}

/// A canonical decimal: digits only, no sign, no leading zero (one name per resource, so
/// caches and ETags see one key), at most 19 digits.
fn decimal(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses a request's last path segment; `None` for anything else (a 404).
pub fn parse_resource(name: &str) -> Option<HlsResource> {
    match name {
        "index.m3u8" => return Some(HlsResource::Multivariant),
        "media.m3u8" => return Some(HlsResource::MediaPlaylist),
        "init.mp4" => return Some(HlsResource::Init),
        _ => {}
    }
    let stem = name.strip_suffix(".m4s")?;
    if let Some(msn) = stem.strip_prefix("seg") {
        return Some(HlsResource::Segment { msn: decimal(msn)? });
    }
    let (msn, part) = stem.strip_prefix("part")?.split_once('.')?;
    Some(HlsResource::Part {
        msn: decimal(msn)?,
        part: usize::try_from(decimal(part)?).ok()?,
    })
}

/// A blocking playlist reload (RFC 8216bis §6.2.5.2): wait until segment `msn` (and its part
/// `part`, if given) is in the playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingReload {
    /// `_HLS_msn`.
    pub msn: u64,
    /// `_HLS_part`.
    pub part: Option<usize>,
}

/// A blocking-reload query the server must answer with 400 (RFC 8216bis §6.2.5.2).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReloadQueryError {
    /// `_HLS_part` without `_HLS_msn`.
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
    /// A value that is not a decimal integer.
    #[error("{0} is not a decimal integer")]
    NotANumber(&'static str),
    /// The same directive twice.
    #[error("{0} given twice")]
    Repeated(&'static str),
}

impl ReloadQueryError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::PartWithoutMsn | Self::NotANumber(_) | Self::Repeated(_) => 400,
        }
    }
}

/// Reads `_HLS_msn` and `_HLS_part` from a query string (without the `?`); other
/// parameters (`token`, `v`, `_HLS_skip`) are ignored. `Ok(None)` when there is no
/// `_HLS_msn`: an ordinary reload.
pub fn parse_blocking_reload(query: &str) -> Result<Option<BlockingReload>, ReloadQueryError> {
    let (mut msn, mut part) = (None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, slot) = match key {
            "_HLS_msn" => ("_HLS_msn", &mut msn),
            "_HLS_part" => ("_HLS_part", &mut part),
            _ => continue,
        };
        if slot.is_some() {
            return Err(ReloadQueryError::Repeated(name));
        }
        // Leading zeros are tolerated here: a query is not a cache key.
        let trimmed = value.trim_start_matches('0');
        let digits = if trimmed.is_empty() && !value.is_empty() {
            "0"
        } else {
            trimmed
        };
        *slot = Some(decimal(digits).ok_or(ReloadQueryError::NotANumber(name))?);
    }
    match (msn, part) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ReloadQueryError::PartWithoutMsn),
        (Some(msn), part) => Ok(Some(BlockingReload {
            msn,
            part: part
                .map(usize::try_from)
                .transpose()
                .map_err(|_| ReloadQueryError::NotANumber("_HLS_part"))?,
        })),
    }
}

/// How a blocking reload at channel time `t` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadWait {
    /// The asked-for segment or part is complete: answer now.
    Now,
    /// Answer at this channel time, when the part completes.
    Until(Duration),
    /// Further ahead than 3 target durations: 400 (RFC 8216bis §6.2.5.2).
    TooFar,
}

/// When to answer `req` at channel time `t` (a part past its segment's last is part 0 of
/// the next segment, RFC 8216bis §6.2.5.2).
pub fn reload_wait(live: &LiveHls, t: Duration, req: BlockingReload) -> ReloadWait {
    let done = match req.part {
        // The segment appears (its EXTINF) when it completes.
        None => live.completes_at(req.msn, None),
        Some(p) => {
            let (msn, part) = live.normalize_part(req.msn, p);
            live.completes_at(msn, Some(part))
        }
    };
    let Some(done) = done else {
        return ReloadWait::TooFar;
    };
    let limit = Duration::from_secs(u64::from(live.segmentation.target_duration_secs) * 3);
    if done <= t {
        ReloadWait::Now
    } else if done - t > limit {
        ReloadWait::TooFar
    } else {
        ReloadWait::Until(done)
    }
}
