//! The `Tracks` element (RFC 9559 §5.1.4) and the mapping of each `TrackEntry`'s CodecID and
//! CodecPrivate onto the server's [`Codec`] values (Matroska codec mappings, RFC 9559 §24 and
//! the Matroska codec specifications): `V_MPEG4/ISO/AVC` (CodecPrivate = avcC),
//! `V_MPEGH/ISO/HEVC` (hvcC), `V_VP8` and `V_VP9` (no CodecPrivate needed), `A_AAC` (AudioSpecificConfig), `A_OPUS` (OpusHead, RFC 7845
//! §5.1), `A_MPEG/L3`, `A_MPEG/L2` (MPEG audio, no CodecPrivate) and `A_MS/ACM` with a G.711
//! WAVEFORMATEX (µ-law / A-law). Other codecs are reported, with the reason, as skipped tracks.

use super::ebml::{read_float, read_string, read_uint, Children};
use super::error::MkvError;
use super::ids;
use crate::media::mp4::{
    parse_audio_specific_config, parse_avc_decoder_config, parse_hevc_decoder_config,
};
use crate::media::track::{Codec, MpegAudioConfig, OpusConfig, TrackKind, VpxConfig};

/// What a `TrackEntry` says, before its codec is mapped.
#[derive(Debug, Default, Clone)]
pub(crate) struct TrackEntry<'a> {
    /// `TrackNumber` (what blocks refer to).
    pub number: u64,
    /// `TrackType`: 1 video, 2 audio (RFC 9559 §5.1.4.1.3).
    pub track_type: u64,
    /// `CodecID`.
    pub codec_id: String,
    /// `CodecPrivate`.
    pub private: &'a [u8],
    /// `DefaultDuration` in nanoseconds (0 when absent).
    pub default_duration_ns: u64,
    /// `PixelWidth`.
    pub width: u64,
    /// `PixelHeight`.
    pub height: u64,
    /// `SamplingFrequency` in Hz (default 8000, §5.1.4.1.28.1).
    pub sampling_hz: f64,
    /// `Channels` (default 1).
    pub channels: u64,
    /// A `ContentEncodings` element is present (compressed or encrypted frames).
    pub encoded: bool,
}

/// Reads every `TrackEntry` of a `Tracks` element whose data spans `data..end`.
pub(crate) fn read_tracks<'a>(
    file: &'a [u8],
    data: usize,
    end: usize,
) -> Result<Vec<TrackEntry<'a>>, MkvError> {
    let mut out = Vec::new();
    for el in Children::new(file, data, end, &[]) {
        let el = el?;
        let Some(el_end) = el.end else {
            return Err(unknown_size(el.start));
        };
        if el.id != ids::TRACK_ENTRY {
            continue;
        }
        let mut t = TrackEntry {
            sampling_hz: 8000.0,
            channels: 1,
            ..TrackEntry::default()
        };
        for f in Children::new(file, el.data, el_end, &[]) {
            let f = f?;
            let Some(f_end) = f.end else {
                return Err(unknown_size(f.start));
            };
            let body = &file[f.data..f_end];
            match f.id {
                ids::TRACK_NUMBER => t.number = read_uint(body, f.start)?,
                ids::TRACK_TYPE => t.track_type = read_uint(body, f.start)?,
                ids::CODEC_ID => t.codec_id = read_string(body),
                ids::CODEC_PRIVATE => t.private = body,
                ids::DEFAULT_DURATION => t.default_duration_ns = read_uint(body, f.start)?,
                ids::CONTENT_ENCODINGS => t.encoded = true,
                ids::VIDEO | ids::AUDIO => {
                    for v in Children::new(file, f.data, f_end, &[]) {
                        let v = v?;
                        let Some(v_end) = v.end else {
                            return Err(unknown_size(v.start));
                        };
                        let body = &file[v.data..v_end];
                        match v.id {
                            ids::PIXEL_WIDTH => t.width = read_uint(body, v.start)?,
                            ids::PIXEL_HEIGHT => t.height = read_uint(body, v.start)?,
                            ids::SAMPLING_FREQUENCY => t.sampling_hz = read_float(body, v.start)?,
                            ids::CHANNELS => t.channels = read_uint(body, v.start)?,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out.push(t);
    }
    Ok(out)
}

fn unknown_size(at: usize) -> MkvError {
    MkvError::new(
        at as u64,
        super::error::MkvErrorKind::Invalid("unknown size outside a segment or cluster"),
    )
}

/// Maps a track entry onto a served codec, or says why it is not served.
pub(crate) fn map_codec(t: &TrackEntry<'_>) -> Result<(TrackKind, Codec), String> {
    let unsupported = |what: &str| format!("track {}: {what}", t.number);
    if t.encoded {
        return Err(unsupported(&format!(
            "{} with content encoding (compressed or encrypted frames) unsupported",
            t.codec_id
        )));
    }
    let width = u16::try_from(t.width).unwrap_or(0);
    let height = u16::try_from(t.height).unwrap_or(0);
    match (t.track_type, t.codec_id.as_str()) {
        (1, "V_MPEG4/ISO/AVC") => parse_avc_decoder_config(t.private, width, height)
            .map(|c| (TrackKind::Video, Codec::H264(c)))
            .map_err(|e| unsupported(&format!("bad avcC CodecPrivate: {}", e.kind))),
        (1, "V_MPEGH/ISO/HEVC") => parse_hevc_decoder_config(t.private, width, height)
            .map(|c| (TrackKind::Video, Codec::H265(c)))
            .map_err(|e| unsupported(&format!("bad hvcC CodecPrivate: {}", e.kind))),
        // RFC 7741 / RFC 9628: the frames carry everything; CodecPrivate (VP9's optional
        // profile/level list) is not needed.
        (1, "V_VP8") => Ok((TrackKind::Video, Codec::Vp8(VpxConfig { width, height }))),
        (1, "V_VP9") => Ok((TrackKind::Video, Codec::Vp9(VpxConfig { width, height }))),
        (2, "A_AAC") => {
            let rate = if t.sampling_hz.is_finite() && t.sampling_hz >= 1.0 {
                t.sampling_hz.min(f64::from(u32::MAX)) as u32
            } else {
                0
            };
            let channels = u16::try_from(t.channels).unwrap_or(0);
            parse_audio_specific_config(t.private, rate, channels)
                .map(|c| (TrackKind::Audio, Codec::Aac(c)))
                .map_err(|e| unsupported(&format!("bad AAC CodecPrivate: {e}")))
        }
        // RFC 2250 §3.5: MPEG audio frames describe themselves; CodecPrivate is not used.
        (2, "A_MPEG/L3" | "A_MPEG/L2") => {
            let rate = if t.sampling_hz.is_finite() && t.sampling_hz >= 1.0 {
                t.sampling_hz.min(f64::from(u32::MAX)) as u32
            } else {
                0
            };
            let channels = u8::try_from(t.channels).unwrap_or(0);
            Ok((
                TrackKind::Audio,
                Codec::MpegAudio(MpegAudioConfig {
                    sample_rate_hz: rate,
                    channels,
                }),
            ))
        }
        // Microsoft ACM audio: a WAVEFORMATEX in CodecPrivate; only its G.711 format tags
        // (RFC 3551 §4.5.14 PCMU/PCMA) are served.
        (2, "A_MS/ACM") => crate::media::g711::parse_waveformatex(t.private)
            .map(|c| (TrackKind::Audio, Codec::G711(c)))
            .map_err(|e| unsupported(&e)),
        (2, "A_OPUS") => parse_opus_head(t.private)
            .map(|c| (TrackKind::Audio, Codec::Opus(c)))
            .map_err(|e| unsupported(&e)),
        (1 | 2, id) => Err(unsupported(&format!("unsupported codec {id}"))),
        (ty, id) => Err(unsupported(&format!("track type {ty} ({id}) not served"))),
    }
}

/// Parses an Ogg Opus identification header, the CodecPrivate of `A_OPUS` (RFC 7845 §5.1):
///
/// ```text
/// "OpusHead" | version (1) | channel count (1) | pre-skip (2, LE) | input sample rate (4, LE)
/// | output gain (2, LE, signed Q7.8) | mapping family (1) | [stream count, coupled count,
/// channel mapping (channel count)]
/// ```
///
/// Only mapping family 0 is served (one Opus stream, RFC 7587).
pub(crate) fn parse_opus_head(p: &[u8]) -> Result<OpusConfig, String> {
    if p.len() < 19 || &p[..8] != b"OpusHead" {
        return Err("A_OPUS CodecPrivate is not an OpusHead".into());
    }
    //= RFC 7845 §5.1
    //# Version (8 bits, unsigned): The version number MUST be set to 1 ... Clients SHOULD
    //# treat any version number from 0 to 15 as compatible
    if p[8] > 15 {
        return Err(format!("OpusHead version {}", p[8]));
    }
    let channels = p[9];
    if channels == 0 {
        return Err("OpusHead channel count is 0".into());
    }
    let family = p[18];
    if family != 0 {
        return Err(format!("opus channel mapping family {family} unsupported"));
    }
    if channels > 2 {
        return Err(format!("OpusHead family 0 with {channels} channels"));
    }
    Ok(OpusConfig {
        channels,
        pre_skip: u16::from_le_bytes([p[10], p[11]]),
        input_sample_rate_hz: u32::from_le_bytes([p[12], p[13], p[14], p[15]]),
        output_gain: i16::from_le_bytes([p[16], p[17]]),
        channel_mapping_family: 0,
        channel_mapping_table: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_head() {
        let mut h = b"OpusHead".to_vec();
        h.extend([1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0xFF, 0xFF, 0]);
        let c = parse_opus_head(&h).unwrap();
        assert_eq!(
            (
                c.channels,
                c.pre_skip,
                c.input_sample_rate_hz,
                c.output_gain
            ),
            (2, 312, 48_000, -1)
        );
        h[18] = 1;
        assert!(parse_opus_head(&h).unwrap_err().contains("family 1"));
        assert!(parse_opus_head(&h[..12]).is_err());
        assert!(parse_opus_head(b"OpusTags12345678901234").is_err());
    }

    #[test]
    fn mpeg_audio_tracks_map_to_mpa() {
        for id in ["A_MPEG/L3", "A_MPEG/L2"] {
            let t = TrackEntry {
                number: 2,
                track_type: 2,
                codec_id: id.into(),
                sampling_hz: 44_100.0,
                channels: 2,
                ..TrackEntry::default()
            };
            let (kind, codec) = map_codec(&t).unwrap();
            assert_eq!(kind, TrackKind::Audio);
            assert_eq!(
                codec,
                Codec::MpegAudio(MpegAudioConfig {
                    sample_rate_hz: 44_100,
                    channels: 2
                })
            );
        }
        // A lying rate and channel count become "unknown", not a wrapped value.
        let t = TrackEntry {
            track_type: 2,
            codec_id: "A_MPEG/L3".into(),
            sampling_hz: f64::NAN,
            channels: 300,
            ..TrackEntry::default()
        };
        let (_, codec) = map_codec(&t).unwrap();
        assert_eq!(
            codec,
            Codec::MpegAudio(MpegAudioConfig {
                sample_rate_hz: 0,
                channels: 0
            })
        );
        // MPEG-1 layer I is not mapped (no `A_MPEG/L1` in ffmpeg's files; skipped with why).
        let t = TrackEntry {
            track_type: 2,
            codec_id: "A_MPEG/L1".into(),
            ..TrackEntry::default()
        };
        assert!(map_codec(&t)
            .unwrap_err()
            .contains("unsupported codec A_MPEG/L1"));
    }
}
