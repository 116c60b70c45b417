//! The media model every other layer reads: tracks, their codec configuration,
//! and a flat, `Copy` sample table whose offsets point into the media bytes.
//!
//! Nothing here holds sample data: a [`Sample`] is a range of the mapped file
//! plus its timing, so indexing a file copies no media.

use std::time::Duration;

/// One access unit (a video frame or an audio frame) as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Byte offset of the sample within the media bytes (already bounds-checked).
    pub offset: u64,
    /// Length of the sample in bytes.
    pub len: u32,
    /// Decode timestamp in the track's media timescale.
    pub dts: u64,
    /// Composition offset (`ctts`) in the track's timescale; pts = dts + cts_offset.
    pub cts_offset: i32,
    /// True for sync samples (keyframes; every sample when `stss` is absent).
    pub sync: bool,
}

const _: () = assert!(std::mem::size_of::<Sample>() <= 32);

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// A video track (`hdlr` = `vide`).
    Video,
    /// An audio track (`hdlr` = `soun`).
    Audio,
}

/// H.264 decoder configuration from the `avcC` box (ISO/IEC 14496-15 §5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Config {
    /// `AVCProfileIndication`.
    pub profile_idc: u8,
    /// `profile_compatibility` (the constraint flags byte).
    pub profile_compat: u8,
    /// `AVCLevelIndication`.
    pub level_idc: u8,
    /// Size in bytes of the NAL unit length prefix inside samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets, without length prefixes.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, without length prefixes.
    pub pps: Vec<Vec<u8>>,
    /// Coded width in pixels (from the visual sample entry).
    pub width: u16,
    /// Coded height in pixels (from the visual sample entry).
    pub height: u16,
}

/// H.265 decoder configuration from the `hvcC` box (ISO/IEC 14496-15 §8.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H265Config {
    /// `general_profile_space` (2 bits).
    pub profile_space: u8,
    /// `general_tier_flag`: false for the Main tier, true for the High tier.
    pub tier_flag: bool,
    /// `general_profile_idc` (5 bits; 1 = Main, 2 = Main 10).
    pub profile_idc: u8,
    /// `general_profile_compatibility_flags`.
    pub profile_compat: u32,
    /// `general_constraint_indicator_flags` (48 bits).
    pub constraint_flags: [u8; 6],
    /// `general_level_idc` (30 × the level number: 93 is level 3.1).
    pub level_idc: u8,
    /// Size in bytes of the NAL unit length prefix inside samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Video parameter sets (NAL type 32), without length prefixes.
    pub vps: Vec<Vec<u8>>,
    /// Sequence parameter sets (NAL type 33), without length prefixes.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets (NAL type 34), without length prefixes.
    pub pps: Vec<Vec<u8>>,
    /// Coded width in pixels (from the visual sample entry).
    pub width: u16,
    /// Coded height in pixels (from the visual sample entry).
    pub height: u16,
}

/// AAC decoder configuration from the `esds` box (ISO/IEC 14496-1 §7.2.6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The raw AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), announced in SDP `config=`.
    pub audio_specific_config: Vec<u8>,
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    /// Sampling rate in Hz (from the AudioSpecificConfig, else the sample entry).
    pub sample_rate_hz: u32,
    /// Channel count.
    pub channels: u8,
}

/// Opus decoder configuration from the `dOps` box ("Encapsulation of Opus in ISO Base Media
/// File Format" §4.3.2). Only channel mapping family 0 (mono or stereo, one Opus stream) is
/// served: it is what RFC 7587 RTP carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusConfig {
    /// `OutputChannelCount`: 1 or 2 for mapping family 0.
    pub channels: u8,
    /// `PreSkip`: samples at 48 kHz the decoder discards from the start of the stream.
    pub pre_skip: u16,
    /// `InputSampleRate`: the rate of the original input in Hz (informational; Opus is always
    /// decoded at 48 kHz in this encapsulation).
    pub input_sample_rate_hz: u32,
    /// `OutputGain` in Q7.8 dB.
    pub output_gain: i16,
    /// `ChannelMappingFamily`.
    pub channel_mapping_family: u8,
    /// `StreamCount`, `CoupledCount` and `ChannelMapping` (empty for family 0).
    pub channel_mapping_table: Vec<u8>,
}

/// One elementary stream listed in an MPEG-TS program map table (ISO/IEC 13818-1 §2.4.4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsStream {
    /// `elementary_PID`.
    pub pid: u16,
    /// `stream_type` (Table 2-34: 0x1b H.264, 0x24 H.265, 0x0f AAC, 0x02 MPEG-2 video, ...).
    pub stream_type: u8,
}

/// An MPEG-2 transport stream served whole as RTP/MP2T (RFC 2250 §2): what its first
/// program holds, for the catalog; the streams themselves pass through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp2tConfig {
    /// `PCR_PID` of the program: the clock the stream is paced by.
    pub pcr_pid: u16,
    /// The program's elementary streams, in PMT order.
    pub streams: Vec<TsStream>,
    /// How far (90 kHz ticks) presentation times (PES PTS) run ahead of the PCR at the bytes
    /// that carry them, at most: a muxer's decoder-buffer delay (ffmpeg's is 0.7 s). The
    /// stream is presented that much past its last byte's PCR time, so the duration
    /// ([`Track::duration`]) includes it: players clip at the announced range end.
    pub presentation_lead: u32,
}

/// The codec of a supported track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// H.264 / AVC (`avc1` or `avc3`).
    H264(H264Config),
    /// H.265 / HEVC (`hvc1` or `hev1`).
    H265(H265Config),
    /// MPEG-4 AAC (`mp4a` with object type indication 0x40).
    Aac(AacConfig),
    /// Opus (`Opus` sample entry with a `dOps` box).
    Opus(OpusConfig),
    /// A whole MPEG-2 transport stream (`.ts`): samples are runs of 188-byte TS packets.
    Mp2t(Mp2tConfig),
    /// VP8 (Matroska/WebM `V_VP8`): one frame per sample.
    Vp8(VpxConfig),
    /// VP9 (Matroska/WebM `V_VP9`): one frame (or superframe) per sample.
    Vp9(VpxConfig),
    /// MPEG-1/2 audio, layers I–III (MP3: `mp4a` with object type indication 0x6B or 0x69,
    /// Matroska `A_MPEG/L3`, `A_MPEG/L2`): one or more whole frames per sample, sent as
    /// RFC 2250 §3.5 `MPA` (static payload type 14, RFC 3551 §4.5.13).
    MpegAudio(MpegAudioConfig),
    /// G.711 µ-law or A-law (Matroska `A_MS/ACM` with WAVEFORMATEX format tag 7 or 6): each
    /// sample is one ~20 ms piece of a block (split when the index is built, see
    /// [`crate::media::g711`]), sent as RFC 3551 §4.5.14 `PCMU` / `PCMA`.
    G711(G711Config),
}

/// The G.711 companding law (ITU-T G.711; RFC 3551 §4.5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// µ-law: RTP encoding name `PCMU`, static payload type 0 at 8000 Hz mono.
    Mu,
    /// A-law: RTP encoding name `PCMA`, static payload type 8 at 8000 Hz mono.
    A,
}

/// A G.711 track: one byte per sample per channel, channels interleaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct G711Config {
    /// µ-law or A-law.
    pub law: G711Law,
    /// Sampling rate in Hz (never 0), also the RTP clock rate (RFC 3551 §4.5.14).
    pub sample_rate_hz: u32,
    /// Channel count (never 0).
    pub channels: u8,
}

impl G711Config {
    /// The RTP encoding name (RFC 3551 Table 4).
    pub fn encoding_name(&self) -> &'static str {
        match self.law {
            G711Law::Mu => "PCMU",
            G711Law::A => "PCMA",
        }
    }
}

/// An MPEG-1/2 audio track: the frames carry their own headers (RFC 2250 needs no out-of-band
/// configuration), so only the container's rate and channel count are kept, for the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpegAudioConfig {
    /// Sampling rate in Hz from the container (0 when unknown).
    pub sample_rate_hz: u32,
    /// Channel count from the container (0 when unknown).
    pub channels: u8,
}

/// A VP8 or VP9 track: its frames describe themselves (RFC 7741 and RFC 9628 carry no
/// out-of-band configuration), so only the container's picture size is kept, for the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpxConfig {
    /// Pixel width (Matroska `PixelWidth`), 0 when unknown.
    pub width: u16,
    /// Pixel height (Matroska `PixelHeight`), 0 when unknown.
    pub height: u16,
}

impl Codec {
    /// The RTP clock rate for this codec: 90 kHz for video (RFC 6184 §8.2.1, RFC 7798 §7.1),
    /// the sampling rate for AAC (RFC 3640 §3.2.1), always 48 kHz for Opus (RFC 7587 §4.1),
    /// 90 kHz for MPEG-TS (RFC 3551 §6, payload type 33).
    pub fn clock_rate_hz(&self) -> u32 {
        match self {
            // RFC 7741 §6.1 and RFC 9628 §6: VP8 and VP9 use 90 kHz too.
            // RFC 3551 §4.5.13: MPA uses a 90 kHz clock whatever the sampling rate.
            Codec::H264(_)
            | Codec::H265(_)
            | Codec::Mp2t(_)
            | Codec::Vp8(_)
            | Codec::Vp9(_)
            | Codec::MpegAudio(_) => 90_000,
            Codec::Aac(a) => a.sample_rate_hz,
            Codec::Opus(_) => 48_000,
            // RFC 3551 §4.5.14: the clock rate is the sampling rate.
            Codec::G711(g) => g.sample_rate_hz,
        }
    }

    /// Whether HLS's fragmented MP4 (`crate::hls::fmp4`) carries this codec: H.264, AAC and
    /// Opus. The others are refused there (415) and the catalog offers no HLS URL for them.
    pub fn fmp4_carries(&self) -> bool {
        matches!(self, Codec::H264(_) | Codec::Aac(_) | Codec::Opus(_))
    }

    /// Short codec name for logs and `probe` output.
    pub fn name(&self) -> &'static str {
        match self {
            Codec::H264(_) => "H.264",
            Codec::H265(_) => "H.265",
            Codec::Aac(_) => "AAC",
            Codec::Opus(_) => "Opus",
            Codec::Mp2t(_) => "MPEG-TS",
            Codec::Vp8(_) => "VP8",
            Codec::Vp9(_) => "VP9",
            Codec::MpegAudio(_) => "MPEG audio",
            Codec::G711(g) => match g.law {
                G711Law::Mu => "G.711 PCMU",
                G711Law::A => "G.711 PCMA",
            },
        }
    }
}

/// One playable track of a media file.
#[derive(Debug, Clone)]
pub struct Track {
    /// `track_ID` from `tkhd`.
    pub track_id: u32,
    /// Video or audio.
    pub kind: TrackKind,
    /// Codec and its decoder configuration.
    pub codec: Codec,
    /// Media timescale from `mdhd` (ticks per second); never zero.
    pub timescale: u32,
    /// Media time (in `timescale` ticks) that the first edit starts at: subtract it from
    /// `dts + cts_offset` to get the presentation time (ISO/IEC 14496-12 §8.6.6, simple `elst`).
    /// Negative for an initial empty edit (a delay).
    pub edit_offset: i64,
    /// Sample table in decode order; never empty.
    pub samples: Vec<Sample>,
}

impl Track {
    /// Frames per second of a video track (for SDP `a=framerate` and the catalog): samples
    /// over duration; `None` for audio or a track too short to tell.
    pub fn frame_rate(&self) -> Option<f64> {
        // A transport stream's samples are packet runs, not frames.
        if self.kind != TrackKind::Video
            || self.samples.len() < 2
            || matches!(self.codec, Codec::Mp2t(_))
        {
            return None;
        }
        let secs = self.duration().as_secs_f64();
        (secs > 0.0).then(|| self.samples.len() as f64 / secs)
    }

    /// Whether frames are presented in another order than decoded (B-frames: a presentation
    /// time earlier than the previous sample's). WebRTC players drop such frames.
    pub fn reorders_frames(&self) -> bool {
        self.samples
            .windows(2)
            .any(|w| self.pts_ticks(&w[1]) < self.pts_ticks(&w[0]))
    }

    /// Presentation time of `sample` in timescale ticks, edit list applied (may be negative
    /// for samples before the edit start).
    pub fn pts_ticks(&self, sample: &Sample) -> i64 {
        // Saturating: a hostile file's decode times and edit offset can sit near the ends of
        // the range (fuzz/regressions/mp4_index).
        self.dts_ticks(sample)
            .saturating_add(i64::from(sample.cts_offset))
    }

    /// Decode time of `sample` in timescale ticks on the presentation timeline
    /// (edit list applied), used for pacing because it is monotonic.
    pub fn dts_ticks(&self, sample: &Sample) -> i64 {
        i64::try_from(sample.dts)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.edit_offset)
    }

    /// Track duration: end of the last-presented sample on the presentation timeline. Sample
    /// durations are not stored; the last one is taken to last as long as the previous
    /// decode-time gap.
    pub fn duration(&self) -> Duration {
        let n = self.samples.len();
        let gap = match (self.samples.get(n.wrapping_sub(2)), self.samples.last()) {
            (Some(a), Some(b)) => b.dts.saturating_sub(a.dts) as i64,
            _ => 0,
        };
        let end_ticks = self
            .samples
            .iter()
            .map(|s| self.pts_ticks(s))
            .max()
            .map_or(0, |pts| pts.saturating_add(gap));
        let lead = match &self.codec {
            Codec::Mp2t(c) => i64::from(c.presentation_lead),
            _ => 0,
        };
        ticks_to_duration(end_ticks.saturating_add(lead).max(0) as u64, self.timescale)
    }
}

/// Everything the server knows about one media file.
#[derive(Debug, Clone)]
pub struct MediaIndex {
    /// Supported tracks, video first, in file order otherwise.
    pub tracks: Vec<Track>,
    /// Tracks present in the file but not served, with the reason (e.g. `"track 2: unsupported codec av01"`).
    pub skipped: Vec<String>,
}

impl MediaIndex {
    /// Presentation duration: the longest track.
    pub fn duration(&self) -> Duration {
        self.tracks
            .iter()
            .map(Track::duration)
            .max()
            .unwrap_or_default()
    }
}

/// Converts media ticks to a `Duration`.
pub fn ticks_to_duration(ticks: u64, timescale: u32) -> Duration {
    let ts = u64::from(timescale.max(1));
    Duration::from_secs(ticks / ts) + Duration::from_nanos((ticks % ts) * 1_000_000_000 / ts)
}
