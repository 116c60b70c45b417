//! FLV tag bodies as RTMP carries them: the payload of an RTMP video message (type 9) is an
//! FLV `VIDEODATA` body and that of an audio message (type 8) an `AUDIODATA` body (Adobe
//! "Video File Format Specification" version 10.1, Annex E.4.2.1 and E.4.3.1), plus the
//! Enhanced RTMP extension headers (veovera "Enhanced RTMP" v1/v2: `IsExHeader` and a FourCC).
//!
//! This module only reads bytes: it says what a tag is and where its payload lies (ranges into
//! the tag, so the caller can slice the message's `Bytes` without copying), and parses the
//! decoder configurations a sequence header carries: the AVCDecoderConfigurationRecord
//! (ISO/IEC 14496-15 §5.3.3.1), the H.264 SPS for the picture size (ITU-T H.264 §7.3.2.1.1,
//! cropping §7.4.2.1.1) and the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1). It does not
//! keep state (timestamps, which configuration is current): that is [`super::RtmpConnection`].

use std::fmt;
use std::ops::Range;

use crate::media::track::{AacConfig, H264Config};

/// A codec a publisher may send, named for errors (legacy FLV ids or an Enhanced RTMP FourCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlvCodec {
    /// A legacy `CodecID` of a video tag (E.4.3.1).
    Video(u8),
    /// A legacy `SoundFormat` of an audio tag (E.4.2.1).
    Audio(u8),
    /// An Enhanced RTMP FourCC (`hvc1`, `av01`, `vp09`, `Opus`, ...).
    FourCc([u8; 4]),
}

impl fmt::Display for FlvCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            // E.4.3.1 CodecID; 12 and 13 are the common non-Adobe HEVC/AV1 extensions.
            FlvCodec::Video(id) => match id {
                1 => "JPEG video",
                2 => "Sorenson H.263",
                3 => "Screen video",
                4 => "On2 VP6",
                5 => "On2 VP6 with alpha",
                6 => "Screen video v2",
                7 => "H.264",
                12 => "HEVC (FLV codec id 12)",
                13 => "AV1 (FLV codec id 13)",
                _ => return write!(f, "video codec id {id}"),
            },
            // E.4.2.1 SoundFormat.
            FlvCodec::Audio(id) => match id {
                0 | 3 => "linear PCM",
                1 => "ADPCM",
                2 | 14 => "MP3",
                4..=6 => "Nellymoser",
                7 => "G.711 A-law",
                8 => "G.711 mu-law",
                10 => "AAC",
                11 => "Speex",
                _ => return write!(f, "sound format {id}"),
            },
            FlvCodec::FourCc(cc) => {
                let name = match &cc {
                    b"hvc1" => "HEVC",
                    b"av01" => "AV1",
                    b"vp09" => "VP9",
                    b"Opus" => "Opus",
                    b"fLaC" => "FLAC",
                    b"ac-3" => "AC-3",
                    b"ec-3" => "E-AC-3",
                    b".mp3" => "MP3",
                    _ => "",
                };
                let text = String::from_utf8_lossy(&cc);
                return if name.is_empty() {
                    write!(f, "FourCC '{text}'")
                } else {
                    write!(f, "{name} ('{text}')")
                };
            }
        };
        f.write_str(name)
    }
}

/// Why a tag body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The tag ends before a field it declares.
    #[error("flv tag truncated at {0}")]
    Truncated(&'static str),
    /// A field holds a value the specification does not allow.
    #[error("invalid flv tag: {0}")]
    Invalid(&'static str),
    /// The tag carries a codec shardcast cannot serve (only H.264 and AAC are carried).
    #[error("unsupported codec {0}: shardcast ingests H.264 video and AAC audio")]
    UnsupportedCodec(FlvCodec),
}

/// What an RTMP video message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// `AVCPacketType` 0 (or Enhanced `SequenceStart` for `avc1`): the
    /// AVCDecoderConfigurationRecord at this range of the tag.
    AvcSequenceHeader {
        /// Where the record lies in the tag.
        record: Range<usize>,
    },
    /// `AVCPacketType` 1 (or Enhanced `CodedFrames`/`CodedFramesX`): one access unit as
    /// length-prefixed NAL units (the record's `lengthSizeMinusOne` + 1 bytes each).
    AvcNalus {
        /// `FrameType` 1: a keyframe (IDR access unit).
        keyframe: bool,
        /// `CompositionTime` (SI24, milliseconds): pts = dts + this.
        composition_time_ms: i32,
        /// Where the NAL units lie in the tag.
        nalus: Range<usize>,
    },
    /// End of sequence, a video info/command frame, or Enhanced metadata: nothing to ingest.
    Ignored,
}

/// What an RTMP audio message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// `AACPacketType` 0: the AudioSpecificConfig at this range of the tag.
    AacSequenceHeader {
        /// Where the AudioSpecificConfig lies in the tag.
        config: Range<usize>,
        /// `SoundType` 1 (stereo); used when the config's channel configuration is 0.
        stereo: bool,
    },
    /// `AACPacketType` 1: one raw AAC access unit at this range of the tag.
    AacRaw {
        /// Where the access unit lies in the tag.
        frame: Range<usize>,
    },
    /// An Enhanced RTMP audio packet that carries nothing to ingest.
    Ignored,
}

/// Reads an RTMP video message body (FLV spec 10.1 E.4.3.1 `VIDEODATA`, Enhanced RTMP
/// `ExVideoTagHeader`).
pub fn parse_video_tag(tag: &[u8]) -> Result<VideoTag, FlvError> {
    let &b0 = tag.first().ok_or(FlvError::Truncated("video tag header"))?;
    if b0 & 0x80 != 0 {
        return parse_ex_video_tag(tag, b0);
    }
    //= FLV spec 10.1, E.4.3.1 VIDEODATA
    //# FrameType UB[4]  1: key frame ... 5: video info/command frame
    //# CodecID   UB[4]  7: AVC
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    if codec_id != 7 {
        return Err(FlvError::UnsupportedCodec(FlvCodec::Video(codec_id)));
    }
    //# AVCPacketType UI8; CompositionTime SI24 (0 unless AVCPacketType == 1)
    let (&packet_type, rest) = tag[1..]
        .split_first()
        .ok_or(FlvError::Truncated("avc packet type"))?;
    let cts = rest
        .get(..3)
        .ok_or(FlvError::Truncated("composition time"))?;
    let cts = si24(cts);
    match packet_type {
        0 => Ok(VideoTag::AvcSequenceHeader {
            record: 5..tag.len(),
        }),
        1 => Ok(VideoTag::AvcNalus {
            keyframe: frame_type == 1,
            composition_time_ms: cts,
            nalus: 5..tag.len(),
        }),
        2 => Ok(VideoTag::Ignored),
        _ => Err(FlvError::Invalid("avc packet type")),
    }
}

/// Enhanced RTMP `ExVideoTagHeader`: `IsExHeader` UB[1], `FrameType` UB[3],
/// `PacketType` UB[4], then a FourCC. Only `avc1` is carried.
fn parse_ex_video_tag(tag: &[u8], b0: u8) -> Result<VideoTag, FlvError> {
    let frame_type = (b0 >> 4) & 0x07;
    let packet_type = b0 & 0x0f;
    let fourcc: [u8; 4] = tag
        .get(1..5)
        .and_then(|s| s.try_into().ok())
        .ok_or(FlvError::Truncated("enhanced video fourcc"))?;
    // PacketType 6 (multitrack) names no single FourCC here; 7 (ModEx) wraps another type.
    if packet_type >= 6 {
        return Err(FlvError::Invalid(
            "enhanced rtmp multitrack or modex packet",
        ));
    }
    if &fourcc != b"avc1" {
        return Err(FlvError::UnsupportedCodec(FlvCodec::FourCc(fourcc)));
    }
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    match packet_type {
        // SequenceStart: the AVCDecoderConfigurationRecord.
        0 => Ok(VideoTag::AvcSequenceHeader {
            record: 5..tag.len(),
        }),
        // CodedFrames: SI24 composition time, then the NAL units.
        1 => {
            let cts = tag
                .get(5..8)
                .ok_or(FlvError::Truncated("composition time"))?;
            Ok(VideoTag::AvcNalus {
                keyframe: frame_type == 1,
                composition_time_ms: si24(cts),
                nalus: 8..tag.len(),
            })
        }
        // CodedFramesX: composition time implied zero.
        3 => Ok(VideoTag::AvcNalus {
            keyframe: frame_type == 1,
            composition_time_ms: 0,
            nalus: 5..tag.len(),
        }),
        // SequenceEnd, Metadata.
        2 | 4 => Ok(VideoTag::Ignored),
        _ => Err(FlvError::Invalid("enhanced video packet type")),
    }
}

/// Reads an RTMP audio message body (FLV spec 10.1 E.4.2.1 `AUDIODATA`, Enhanced RTMP v2
/// `ExAudioTagHeader` with SoundFormat 9).
pub fn parse_audio_tag(tag: &[u8]) -> Result<AudioTag, FlvError> {
    let &b0 = tag.first().ok_or(FlvError::Truncated("audio tag header"))?;
    //= FLV spec 10.1, E.4.2.1 AUDIODATA
    //# SoundFormat UB[4] 10 = AAC; SoundRate UB[2]; SoundSize UB[1]; SoundType UB[1] 1 = stereo
    let sound_format = b0 >> 4;
    if sound_format == 9 {
        let fourcc: [u8; 4] = tag
            .get(1..5)
            .and_then(|s| s.try_into().ok())
            .ok_or(FlvError::Truncated("enhanced audio fourcc"))?;
        if &fourcc != b"mp4a" {
            return Err(FlvError::UnsupportedCodec(FlvCodec::FourCc(fourcc)));
        }
        // AudioPacketType: 0 SequenceStart, 1 CodedFrames, 2 SequenceEnd, 4 MultichannelConfig.
        return match b0 & 0x0f {
            0 => Ok(AudioTag::AacSequenceHeader {
                config: 5..tag.len(),
                stereo: true,
            }),
            1 => Ok(AudioTag::AacRaw {
                frame: 5..tag.len(),
            }),
            2 | 4 => Ok(AudioTag::Ignored),
            _ => Err(FlvError::Invalid("enhanced audio packet type")),
        };
    }
    if sound_format != 10 {
        return Err(FlvError::UnsupportedCodec(FlvCodec::Audio(sound_format)));
    }
    //# AACPacketType UI8: 0 = AAC sequence header, 1 = AAC raw
    let &packet_type = tag.get(1).ok_or(FlvError::Truncated("aac packet type"))?;
    match packet_type {
        0 => Ok(AudioTag::AacSequenceHeader {
            config: 2..tag.len(),
            stereo: b0 & 0x01 != 0,
        }),
        1 => Ok(AudioTag::AacRaw {
            frame: 2..tag.len(),
        }),
        _ => Err(FlvError::Invalid("aac packet type")),
    }
}

/// A signed 24-bit big-endian integer (FLV `SI24`); `b` has at least 3 bytes.
fn si24(b: &[u8]) -> i32 {
    let v = match b {
        [a, b, c, ..] => i32::from_be_bytes([*a, *b, *c, 0]),
        _ => 0,
    };
    v >> 8
}

/// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1.2). Width and height
/// come from the first SPS (0 when it cannot be read; the caller falls back to onMetaData).
pub fn parse_avc_config(record: &[u8]) -> Result<H264Config, FlvError> {
    let mut r = Reader {
        data: record,
        pos: 0,
    };
    //# configurationVersion = 1; AVCProfileIndication; profile_compatibility; AVCLevelIndication
    if r.u8("avcC version")? != 1 {
        return Err(FlvError::Invalid("avcC configuration version"));
    }
    let profile_idc = r.u8("avcC profile")?;
    let profile_compat = r.u8("avcC compatibility")?;
    let level_idc = r.u8("avcC level")?;
    //# bit(6) reserved = '111111'b; unsigned int(2) lengthSizeMinusOne;
    let nal_length_size = (r.u8("avcC length size")? & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(FlvError::Invalid("avcC nal length size must be 1, 2 or 4"));
    }
    //# bit(3) reserved = '111'b; unsigned int(5) numOfSequenceParameterSets;
    let num_sps = r.u8("avcC sps count")? & 0x1f;
    let sps = r.parameter_sets(usize::from(num_sps))?;
    let num_pps = r.u8("avcC pps count")?;
    let pps = r.parameter_sets(usize::from(num_pps))?;
    if sps.is_empty() || pps.is_empty() {
        return Err(FlvError::Invalid("avcC without sps or pps"));
    }
    let (width, height) = sps
        .first()
        .and_then(|s| sps_dimensions(s))
        .unwrap_or((0, 0));
    Ok(H264Config {
        profile_idc,
        profile_compat,
        level_idc,
        nal_length_size,
        sps,
        pps,
        width,
        height,
    })
}

/// A bounds-checked big-endian reader.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self, what: &'static str) -> Result<u8, FlvError> {
        let v = *self.data.get(self.pos).ok_or(FlvError::Truncated(what))?;
        self.pos += 1;
        Ok(v)
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&[u8], FlvError> {
        let end = self.pos.checked_add(n).ok_or(FlvError::Truncated(what))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or(FlvError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }

    /// `n` parameter sets, each a 16-bit length and the NAL unit (§5.3.3.1.2).
    fn parameter_sets(&mut self, n: usize) -> Result<Vec<Vec<u8>>, FlvError> {
        let mut sets = Vec::with_capacity(n.min(self.data.len() / 2));
        for _ in 0..n {
            let len = self.bytes(2, "parameter set length")?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            if len == 0 {
                return Err(FlvError::Invalid("empty parameter set"));
            }
            sets.push(self.bytes(len, "parameter set")?.to_vec());
        }
        Ok(sets)
    }
}

/// Exp-Golomb bit reader over an RBSP (emulation prevention already removed).
struct Bits<'a> {
    data: &'a [u8],
    bit: usize,
}

impl Bits<'_> {
    fn u(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.bit / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - (self.bit % 8))) & 1);
            self.bit += 1;
        }
        Some(v)
    }

    /// `ue(v)` (H.264 §9.1); values past 2^31 are refused.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.u(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.u(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// `se(v)` (H.264 §9.1.1); only skipped here.
    fn se(&mut self) -> Option<()> {
        self.ue().map(|_| ())
    }
}

/// Picture width and height in pixels from an H.264 SPS NAL unit (header byte included):
/// ITU-T H.264 §7.3.2.1.1 up to `frame_cropping`, sizes by §7.4.2.1.1 (equations 7-13 to
/// 7-20). `None` if the SPS is truncated or malformed.
pub fn sps_dimensions(sps_nal: &[u8]) -> Option<(u16, u16)> {
    // §7.4.1.1: drop emulation_prevention_three_byte (00 00 03 -> 00 00). An SPS is at most
    // 64 KiB (its avcC length is 16 bits), so this copy is bounded.
    let mut rbsp = Vec::with_capacity(sps_nal.len());
    let mut zeros = 0;
    for &b in sps_nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits {
        data: &rbsp,
        bit: 0,
    };
    let profile_idc = r.u(8)?;
    r.u(16)?; // constraint flags, reserved, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.u(1)?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.u(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.u(1)? == 1 {
            // seq_scaling_matrix_present_flag: scaling_list() per §7.3.2.1.1.1.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.u(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            let delta = se_value(&mut r)?;
                            next = (last + delta + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.u(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.u(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.u(1)?);
    if frame_mbs_only == 0 {
        r.u(1)?; // mb_adaptive_frame_field_flag
    }
    r.u(1)?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.u(1)? == 1 {
        crop_l = u64::from(r.ue()?);
        crop_r = u64::from(r.ue()?);
        crop_t = u64::from(r.ue()?);
        crop_b = u64::from(r.ue()?);
    }
    // Table 6-1 (SubWidthC, SubHeightC) and equations 7-19 / 7-20.
    let chroma_array_type = if separate_colour_plane == 1 {
        0
    } else {
        chroma_format_idc
    };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, 2 - frame_mbs_only),
        1 => (2, 2 * (2 - frame_mbs_only)),
        2 => (2, 2 - frame_mbs_only),
        _ => (1, 2 - frame_mbs_only),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (crop_l + crop_r))?;
    let height =
        ((2 - frame_mbs_only) * height_map_units * 16).checked_sub(crop_y * (crop_t + crop_b))?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// `se(v)` value (H.264 §9.1.1 Table 9-3), for the scaling lists.
fn se_value(r: &mut Bits<'_>) -> Option<i64> {
    let k = i64::from(r.ue()?);
    Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
}

/// Parses an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): audioObjectType (escape 31 →
/// 32 + 6 bits), samplingFrequencyIndex (15 → explicit 24-bit rate), channelConfiguration
/// (§1.6.3.5: 1-6 that many channels, 7 eight; 0 takes `fallback_channels`).
pub fn parse_audio_specific_config(
    asc: &[u8],
    fallback_channels: u8,
) -> Result<AacConfig, FlvError> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let truncated = FlvError::Truncated("audio specific config");
    let mut b = Bits { data: asc, bit: 0 };
    let mut object_type = b.u(5).ok_or(truncated)?;
    if object_type == 31 {
        object_type = 32 + b.u(6).ok_or(truncated)?;
    }
    let index = b.u(4).ok_or(truncated)?;
    let sample_rate_hz = if index == 15 {
        b.u(24).ok_or(truncated)?
    } else {
        *RATES
            .get(index as usize)
            .ok_or(FlvError::Invalid("reserved sampling frequency index"))?
    };
    if sample_rate_hz == 0 {
        return Err(FlvError::Invalid("zero sampling rate"));
    }
    let channels = match b.u(4).ok_or(truncated)? {
        c @ 1..=6 => c as u8,
        7 => 8,
        _ => fallback_channels,
    };
    if channels == 0 {
        return Err(FlvError::Invalid("channel count"));
    }
    Ok(AacConfig {
        audio_specific_config: asc.to_vec(),
        object_type: u8::try_from(object_type).unwrap_or(u8::MAX),
        sample_rate_hz,
        channels,
    })
}

/// Why an AVC access unit's NAL units could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NaluError {
    /// A length prefix is zero or runs past the tag.
    Malformed,
    /// The rewritten access unit would exceed [`crate::ingest::MAX_ACCESS_UNIT`].
    TooLarge,
}

/// Checks an access unit of NAL units with `length_size`-byte prefixes (1, 2 or 4) and, unless
/// they are already 4 bytes, rewrites them with 4-byte prefixes (the format of an MP4 sample
/// that `ingest::Frame` promises). `Ok(None)`: the input is already in that format.
pub fn normalize_nalus(data: &[u8], length_size: u8) -> Result<Option<Vec<u8>>, NaluError> {
    let size = usize::from(length_size);
    if data.is_empty() || !matches!(size, 1 | 2 | 4) {
        return Err(NaluError::Malformed);
    }
    let mut out = (size != 4).then(|| Vec::with_capacity(data.len() + data.len() / 2));
    let mut pos = 0;
    while pos < data.len() {
        let prefix = data.get(pos..pos + size).ok_or(NaluError::Malformed)?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let start = pos + size;
        let end = start.checked_add(len).ok_or(NaluError::Malformed)?;
        let nal = data.get(start..end).ok_or(NaluError::Malformed)?;
        if nal.is_empty() {
            return Err(NaluError::Malformed);
        }
        if let Some(out) = out.as_mut() {
            if out.len() + 4 + nal.len() > crate::ingest::MAX_ACCESS_UNIT {
                return Err(NaluError::TooLarge);
            }
            let len32 = u32::try_from(nal.len()).map_err(|_| NaluError::TooLarge)?;
            out.extend_from_slice(&len32.to_be_bytes());
            out.extend_from_slice(nal);
        }
        pos = end;
    }
    Ok(out)
}
