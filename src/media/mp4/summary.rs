//! Human summaries of a parsed file for `shardcast probe`: per track codec, geometry or
//! audio format, sample and keyframe counts, GOP spacing, bitrate and frame rate, all
//! derived from the flattened sample tables (ISO/IEC 14496-12 §8.6–§8.7).

use std::fmt;
use std::time::Duration;

use crate::media::track::{Codec, MediaIndex, Track, TrackKind};

/// Summary of one track, as printed by `shardcast probe`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSummary {
    /// `track_ID` from `tkhd`.
    pub track_id: u32,
    /// Video or audio.
    pub kind: TrackKind,
    /// Codec name (`H.264`, `AAC`).
    pub codec: &'static str,
    /// Codec detail: H.264 profile/level, or the AAC audio object type.
    pub codec_detail: String,
    /// Width and height in pixels (video).
    pub resolution: Option<(u16, u16)>,
    /// Sampling rate in Hz (audio).
    pub sample_rate_hz: Option<u32>,
    /// Channel count (audio).
    pub channels: Option<u8>,
    /// Number of samples.
    pub sample_count: usize,
    /// Presentation duration ([`Track::duration`], edit list applied).
    pub duration: Duration,
    /// Number of sync samples.
    pub keyframes: usize,
    /// Seconds between consecutive sync samples (min, avg, max) in decode time; `None` with fewer than two.
    pub gop_seconds: Option<(f64, f64, f64)>,
    /// Average bitrate in bits/s: sample bytes over the media time span of the samples.
    pub bitrate_bps: u64,
    /// Average frames per second from the decode time span (video).
    pub frame_rate: Option<f64>,
}

/// Summarizes every track of `index`, in index order.
pub fn summarize(index: &MediaIndex) -> Vec<TrackSummary> {
    index.tracks.iter().map(summarize_track).collect()
}

fn summarize_track(t: &Track) -> TrackSummary {
    let ts = f64::from(t.timescale.max(1));
    let (codec_detail, resolution, sample_rate_hz, channels) = match &t.codec {
        Codec::H264(c) => (
            format!(
                "{} level {}.{}",
                h264_profile_name(c.profile_idc),
                c.level_idc / 10,
                c.level_idc % 10
            ),
            Some((c.width, c.height)),
            None,
            None,
        ),
        Codec::H265(c) => (
            format!(
                "{} level {}.{} ({} tier)",
                h265_profile_name(c.profile_idc),
                c.level_idc / 30,
                c.level_idc % 30 / 3,
                if c.tier_flag { "High" } else { "Main" }
            ),
            Some((c.width, c.height)),
            None,
            None,
        ),
        Codec::Aac(a) => (
            aac_object_name(a.object_type),
            None,
            Some(a.sample_rate_hz),
            Some(a.channels),
        ),
        Codec::Opus(o) => (
            format!("pre-skip {}", o.pre_skip),
            None,
            Some(48_000),
            Some(o.channels),
        ),
        Codec::Mp2t(c) => (
            c.streams
                .iter()
                .map(|s| {
                    let name = crate::media::ts::stream_type_name(s.stream_type);
                    format!("{name} (PID {:#x})", s.pid)
                })
                .collect::<Vec<_>>()
                .join(", "),
            None,
            None,
            None,
        ),
        Codec::Vp8(c) | Codec::Vp9(c) => (String::new(), Some((c.width, c.height)), None, None),
        Codec::MpegAudio(m) => (
            String::new(),
            None,
            (m.sample_rate_hz > 0).then_some(m.sample_rate_hz),
            (m.channels > 0).then_some(m.channels),
        ),
        Codec::G711(g) => (
            g.encoding_name().to_string(),
            None,
            Some(g.sample_rate_hz),
            Some(g.channels),
        ),
    };
    let first_dts = t.samples.first().map_or(0, |s| s.dts);
    let last_dts = t.samples.last().map_or(0, |s| s.dts);
    let n = t.samples.len();
    let decode_span = last_dts.saturating_sub(first_dts);
    // Media span including the last sample, which lasts as long as the gap before it.
    let last_gap = match t
        .samples
        .len()
        .checked_sub(2)
        .and_then(|i| t.samples.get(i))
    {
        Some(prev) => last_dts.saturating_sub(prev.dts),
        None => 0,
    };
    let media_seconds = decode_span.saturating_add(last_gap) as f64 / ts;
    let total_bytes: u64 = t.samples.iter().map(|s| u64::from(s.len)).sum();
    let bitrate_bps = if media_seconds > 0.0 {
        (total_bytes as f64 * 8.0 / media_seconds).round() as u64
    } else {
        0
    };
    let frame_rate = match t.kind {
        // A transport stream's samples are packet runs, not frames.
        TrackKind::Video if decode_span > 0 && !matches!(t.codec, Codec::Mp2t(_)) => {
            Some((n.saturating_sub(1)) as f64 / (decode_span as f64 / ts))
        }
        _ => None,
    };
    let sync_dts: Vec<u64> = t.samples.iter().filter(|s| s.sync).map(|s| s.dts).collect();
    let gaps: Vec<f64> = sync_dts
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some(b.saturating_sub(*a) as f64 / ts),
            _ => None,
        })
        .collect();
    let gop_seconds = if gaps.is_empty() {
        None
    } else {
        let min = gaps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = gaps.iter().copied().fold(0.0, f64::max);
        let avg = gaps.iter().sum::<f64>() / gaps.len() as f64;
        Some((min, avg, max))
    };
    TrackSummary {
        track_id: t.track_id,
        kind: t.kind,
        codec: t.codec.name(),
        codec_detail,
        resolution,
        sample_rate_hz,
        channels,
        sample_count: n,
        duration: t.duration(),
        keyframes: sync_dts.len(),
        gop_seconds,
        bitrate_bps,
        frame_rate,
    }
}

/// Names the common H.264 profiles (ITU-T H.264 Annex A).
fn h264_profile_name(profile_idc: u8) -> String {
    match profile_idc {
        66 => "Baseline".to_owned(),
        77 => "Main".to_owned(),
        88 => "Extended".to_owned(),
        100 => "High".to_owned(),
        110 => "High 10".to_owned(),
        122 => "High 4:2:2".to_owned(),
        244 => "High 4:4:4".to_owned(),
        p => format!("profile {p}"),
    }
}

/// Names the H.265 general profiles (ITU-T H.265 Annex A.3).
fn h265_profile_name(profile_idc: u8) -> String {
    match profile_idc {
        1 => "Main".to_owned(),
        2 => "Main 10".to_owned(),
        3 => "Main Still Picture".to_owned(),
        4 => "Range Extensions".to_owned(),
        p => format!("profile {p}"),
    }
}

/// Names the common MPEG-4 audio object types (ISO/IEC 14496-3 §1.5.1.1).
fn aac_object_name(object_type: u8) -> String {
    match object_type {
        1 => "AAC Main".to_owned(),
        2 => "AAC-LC".to_owned(),
        3 => "AAC SSR".to_owned(),
        4 => "AAC LTP".to_owned(),
        5 => "HE-AAC (SBR)".to_owned(),
        29 => "HE-AACv2 (PS)".to_owned(),
        o => format!("object type {o}"),
    }
}

impl fmt::Display for TrackSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
        };
        write!(
            f,
            "track {} {kind}: {} {}",
            self.track_id, self.codec, self.codec_detail
        )?;
        if let Some((w, h)) = self.resolution {
            write!(f, ", {w}x{h}")?;
        }
        if let Some(fps) = self.frame_rate {
            write!(f, ", {fps:.3} fps")?;
        }
        if let Some(rate) = self.sample_rate_hz {
            write!(f, ", {rate} Hz")?;
        }
        if let Some(ch) = self.channels {
            write!(f, ", {ch} ch")?;
        }
        write!(
            f,
            ", {} samples, {:.3} s, {} keyframes",
            self.sample_count,
            self.duration.as_secs_f64(),
            self.keyframes
        )?;
        if let Some((min, avg, max)) = self.gop_seconds {
            write!(f, ", gop {min:.3}/{avg:.3}/{max:.3} s (min/avg/max)")?;
        }
        write!(f, ", {:.1} kbit/s", self.bitrate_bps as f64 / 1000.0)
    }
}
