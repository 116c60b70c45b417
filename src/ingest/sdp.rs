//! The session description of an RTSP ANNOUNCE (RFC 2326 §10.3; SDP per RFC 8866) read into
//! the tracks a publisher will send: which payload type, which codec and its configuration,
//! and the `a=control` each track's SETUP names (RFC 2326 §C.1.1, §C.3).
//!
//! Carried: H.264 (`rtpmap H264/90000`, RFC 6184 §8.1/§8.2.1: `packetization-mode` 0 or 1,
//! `sprop-parameter-sets`, `profile-level-id`), MPEG-4 AAC (`mpeg4-generic/RATE[/CH]`,
//! RFC 3640 §4.1, modes AAC-hbr and AAC-lbr with their AU-header field lengths and `config`)
//! and AAC in LATM (`MP4A-LATM/RATE[/CH]`, RFC 6416 §7.3 with `cpresent=0` and the
//! StreamMuxConfig in `config`, what GStreamer's `rtpmp4apay` sends; module `latm`).
//! Every other media section (VP8, Opus, an encrypted profile, an `m=application`) is listed
//! in [`Announced::skipped`] with its control and the reason, so the caller can log it, and
//! still answer the publisher's SETUP for it, and go on.
//!
//! Written for what ffmpeg (`-f rtsp`), GStreamer `rtspclientsink` and cameras send, and for
//! hostile input: the body is capped at [`MAX_SDP_BYTES`], the media sections at
//! [`MAX_MEDIA_SECTIONS`], the parameter sets at [`MAX_PARAMETER_SETS`]; reasons quote at
//! most [`MAX_QUOTE_CHARS`] of the input. It does not check `o=`/`s=`/`t=` (nothing here
//! needs them) or follow `c=` addresses (the transport comes from SETUP).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;

use crate::media::mp4::parse_audio_specific_config;
use crate::media::track::{AacConfig, Codec, H264Config, TrackKind};

/// Largest session description accepted (the RTSP parser caps bodies at 64 KiB too).
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most media sections (`m=` lines) one description may have.
pub const MAX_MEDIA_SECTIONS: usize = 32;
/// Most `sprop-parameter-sets` entries one H.264 track may announce.
pub const MAX_PARAMETER_SETS: usize = 16;
/// Longest piece of the input quoted in a skip reason, in characters.
pub const MAX_QUOTE_CHARS: usize = 48;
/// Longest AudioSpecificConfig accepted from `config=`, in bytes.
const MAX_AUDIO_CONFIG_BYTES: usize = 64;

/// One track an ANNOUNCE offers that ingest can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedTrack {
    /// The media section's `a=control` value as written: an absolute URI, a URI relative to
    /// the ANNOUNCE's request URI (RFC 2326 §C.1.1), or `""` when the section has none.
    pub control: String,
    /// The RTP payload type the publisher will send (the `m=` format chosen).
    pub payload_type: u8,
    /// The codec and its decoder configuration, as a file's track would carry it.
    pub codec: Codec,
    /// Video for H.264, audio for AAC.
    pub kind: TrackKind,
    /// How the payload is laid out, for the depacketizer.
    pub format: PayloadFormat,
}

/// The payload-format parameters a depacketizer needs beyond the codec configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// RFC 6184 with the announced `packetization-mode` (0 single NAL unit, 1 non-interleaved).
    H264 {
        /// `packetization-mode` (RFC 6184 §8.1), 0 when absent.
        packetization_mode: u8,
    },
    /// RFC 3640 with these AU-header field lengths.
    Aac(AuHeaderFormat),
    /// RFC 6416 §6.1 (MP4A-LATM, `cpresent=0`): AudioMuxElements of this shape.
    Latm(LatmFormat),
    /// RFC 7587 §4.2: one Opus packet per RTP packet (WHIP publishers).
    Opus,
}

/// The shape of the AudioMuxElements an MP4A-LATM track carries (RFC 6416 §6.1), read from
/// its StreamMuxConfig (ISO/IEC 14496-3 §1.7.3). Only the common case is carried: one
/// program of one layer, all streams with the same time framing, frameLengthType 0 (every
/// access unit's length in its PayloadLengthInfo), no other data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatmFormat {
    /// Access units per AudioMuxElement: `numSubFrames + 1` (1 to 64).
    pub sub_frames: u8,
    /// RTP clock ticks per access unit: 1024 or 960 samples by the frameLengthFlag (480 or
    /// 512 for ER AAC-LD), scaled from the core sampling rate to the RTP clock.
    pub frame_length: u32,
}

/// The RFC 3640 §4.1 parameters that shape the AU Header Section (§3.2.1.1) and the
/// Auxiliary Section (§3.2.1.2), plus the duration of one access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuHeaderFormat {
    /// `sizelength`: bits of AU-size (13 for AAC-hbr, 6 for AAC-lbr); never zero.
    pub size_length: u8,
    /// `indexlength`: bits of AU-Index in the first AU-header.
    pub index_length: u8,
    /// `indexdeltalength`: bits of AU-Index-delta in the others.
    pub index_delta_length: u8,
    /// `ctsdeltalength`: bits of CTS-delta (each header then has a CTS-flag).
    pub cts_delta_length: u8,
    /// `dtsdeltalength`: bits of DTS-delta (each header then has a DTS-flag).
    pub dts_delta_length: u8,
    /// `randomaccessindication`: each header has a RAP-flag.
    pub random_access_indication: bool,
    /// `streamstateindication`: bits of Stream-state in each header.
    pub stream_state_indication: u8,
    /// `auxiliarydatasizelength`: bits of auxiliary-data-size (0: no Auxiliary Section).
    pub auxiliary_data_size_length: u8,
    /// RTP clock ticks per access unit: `constantDuration` when announced, else 1024 or 960
    /// samples by the AudioSpecificConfig's frameLengthFlag (ISO/IEC 14496-3 §4.4.1).
    pub frame_length: u32,
}

/// What an ANNOUNCE offers: the tracks that can be carried, and those that cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// Carried tracks in the order of their media sections.
    pub tracks: Vec<AnnouncedTrack>,
    /// The media sections left out, in their order.
    pub skipped: Vec<SkippedTrack>,
}

/// A media section of an ANNOUNCE that ingest does not carry. The publisher will still set
/// it up (GStreamer's `rtspclientsink` gives up entirely if one SETUP fails), so its control
/// is kept for the RTSP core to accept that SETUP and ignore the track's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTrack {
    /// The section's `a=control` value as written (`""` when it has none).
    pub control: String,
    /// The payload type the reason is about, if the section named a valid one.
    pub payload_type: Option<u8>,
    /// What the section offers, quoted for the log: `video 96 VP8/90000`.
    pub media: String,
    /// Why it is not carried: `unsupported codec`.
    pub reason: String,
}

impl std::fmt::Display for SkippedTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={}: {}", self.media, self.reason)
    }
}

/// Why an ANNOUNCE body cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is over [`MAX_SDP_BYTES`].
    #[error("session description of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body does not start with `v=0` (RFC 8866 §5.1).
    #[error("not a session description: it does not start with v=0")]
    NotSdp,
    /// More media sections than [`MAX_MEDIA_SECTIONS`].
    #[error("more than {max} media sections")]
    TooManyMedia {
        /// The limit.
        max: usize,
    },
    /// Not one media section can be carried.
    #[error("no track can be carried ({})", skipped.join("; "))]
    NothingToCarry {
        /// Why each media section was left out.
        skipped: Vec<String>,
    },
}

/// One `m=` section's lines, borrowed from the body.
#[derive(Default)]
struct MediaSection<'a> {
    /// The `m=` value: `<media> <port> <proto> <fmt> ...`.
    media_line: &'a str,
    /// `a=rtpmap:` values.
    rtpmaps: Vec<&'a str>,
    /// `a=fmtp:` values.
    fmtps: Vec<&'a str>,
    /// The first `a=control:` value.
    control: Option<&'a str>,
}

/// Parses the SDP body of an ANNOUNCE into the tracks ingest can carry.
pub fn parse_announce(sdp: &str) -> Result<Announced, SdpError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge {
            len: sdp.len(),
            max: MAX_SDP_BYTES,
        });
    }
    // RFC 8866 §5: lines end in CRLF, but parsers should accept LF alone.
    let mut lines = sdp
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty());
    if lines.next().map(str::trim_end) != Some("v=0") {
        return Err(SdpError::NotSdp);
    }
    let mut sections: Vec<MediaSection<'_>> = Vec::new();
    for line in lines {
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                if sections.len() == MAX_MEDIA_SECTIONS {
                    return Err(SdpError::TooManyMedia {
                        max: MAX_MEDIA_SECTIONS,
                    });
                }
                sections.push(MediaSection {
                    media_line: value.trim(),
                    ..MediaSection::default()
                });
            }
            // Session-level attributes (before the first m=) such as the aggregate
            // `a=control:*` say nothing about a track.
            "a" => {
                if let Some(section) = sections.last_mut() {
                    let (name, val) = value.split_once(':').unwrap_or((value, ""));
                    match name.trim() {
                        "rtpmap" => section.rtpmaps.push(val.trim()),
                        "fmtp" => section.fmtps.push(val.trim()),
                        "control" if section.control.is_none() => {
                            section.control = Some(val.trim());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut announced = Announced {
        tracks: Vec::new(),
        skipped: Vec::new(),
    };
    for section in &sections {
        match read_section(section) {
            Ok(track) => announced.tracks.push(track),
            Err(skipped) => announced.skipped.push(skipped),
        }
    }
    if announced.tracks.is_empty() {
        let skipped = if announced.skipped.is_empty() {
            vec!["no media sections".to_string()]
        } else {
            announced.skipped.iter().map(ToString::to_string).collect()
        };
        return Err(SdpError::NothingToCarry { skipped });
    }
    Ok(announced)
}

/// At most [`MAX_QUOTE_CHARS`] of `s`, control characters replaced, for a reason line.
fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_QUOTE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(MAX_QUOTE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Reads one media section into a track, or the reason it cannot be carried.
fn read_section(s: &MediaSection<'_>) -> Result<AnnouncedTrack, SkippedTrack> {
    // RFC 8866 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    let mut words = s.media_line.split_ascii_whitespace();
    let media = quote(words.next().unwrap_or(""));
    let _port = words.next();
    let proto = words.next().unwrap_or("");
    let formats: Vec<&str> = words.collect();
    let skip = |payload_type: Option<u8>, what: &str, reason: &str| SkippedTrack {
        control: s.control.unwrap_or("").to_string(),
        payload_type,
        media: format!("{media} {what}"),
        reason: reason.to_string(),
    };
    // RFC 3551 RTP/AVP and RFC 4585 RTP/AVPF (feedback is optional for the sender); the
    // secure profiles (RTP/SAVP, RFC 3711) would need keys we do not have.
    if !proto.eq_ignore_ascii_case("RTP/AVP") && !proto.eq_ignore_ascii_case("RTP/AVPF") {
        return Err(skip(None, &quote(proto), "unsupported transport profile"));
    }
    let mut first_reason = None;
    for fmt in &formats {
        let Ok(pt) = fmt.parse::<u8>() else {
            first_reason.get_or_insert_with(|| skip(None, &quote(fmt), "bad payload type"));
            continue;
        };
        if pt > 127 {
            first_reason.get_or_insert_with(|| skip(None, &quote(fmt), "bad payload type"));
            continue;
        }
        let Some(rtpmap) = attribute_for(&s.rtpmaps, pt) else {
            // Static payload types (RFC 3551 §6) name no codec we carry.
            first_reason
                .get_or_insert_with(|| skip(Some(pt), &pt.to_string(), "unsupported codec"));
            continue;
        };
        let fmtp = attribute_for(&s.fmtps, pt).unwrap_or("");
        // RFC 8866 §6.6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<params>]
        let mut parts = rtpmap.split('/');
        let encoding = parts.next().unwrap_or("").trim();
        let clock = parts.next().map(str::trim).unwrap_or("");
        let params = parts.next().map(str::trim);
        let what = format!("{pt} {}", quote(rtpmap));
        let result = if encoding.eq_ignore_ascii_case("H264") {
            read_h264(clock, fmtp)
        } else if encoding.eq_ignore_ascii_case("mpeg4-generic") {
            read_aac(clock, params, fmtp)
        } else if encoding.eq_ignore_ascii_case("MP4A-LATM") {
            latm::read_latm(clock, params, fmtp)
        } else {
            Err("unsupported codec".to_string())
        };
        match result {
            Ok((codec, format)) => {
                let kind = match codec {
                    Codec::H264(_)
                    | Codec::H265(_)
                    | Codec::Mp2t(_)
                    | Codec::Vp8(_)
                    | Codec::Vp9(_) => TrackKind::Video,
                    Codec::Aac(_) | Codec::Opus(_) | Codec::MpegAudio(_) | Codec::G711(_) => {
                        TrackKind::Audio
                    }
                };
                return Ok(AnnouncedTrack {
                    control: s.control.unwrap_or("").to_string(),
                    payload_type: pt,
                    codec,
                    kind,
                    format,
                });
            }
            Err(reason) => {
                first_reason.get_or_insert_with(|| skip(Some(pt), &what, &reason));
            }
        }
    }
    Err(first_reason.unwrap_or_else(|| skip(None, "", "no payload types")))
}

/// The value of the `a=rtpmap`/`a=fmtp` attribute for payload type `pt`, after the number.
fn attribute_for<'a>(values: &[&'a str], pt: u8) -> Option<&'a str> {
    values.iter().find_map(|v| {
        let (num, rest) = v.split_once(|c: char| c.is_ascii_whitespace())?;
        (num.parse::<u8>().ok()? == pt).then(|| rest.trim())
    })
}

/// The `key=value` pairs of an fmtp value, separated by `;` (RFC 8866 §6.15; names are
/// case-insensitive media type parameters, RFC 6838 §4.3).
fn fmtp_params(fmtp: &str) -> impl Iterator<Item = (&str, &str)> {
    fmtp.split(';').filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        Some((k.trim(), v.trim()))
    })
}

/// Reads an H.264 media section (RFC 6184 §8.1, §8.2.1).
fn read_h264(clock: &str, fmtp: &str) -> Result<(Codec, PayloadFormat), String> {
    if clock != "90000" {
        return Err(format!("H.264 clock rate {} is not 90000", quote(clock)));
    }
    let mut packetization_mode = 0u8;
    let mut profile_level_id: Option<[u8; 3]> = None;
    let mut sps = Vec::new();
    let mut pps = Vec::new();
    for (key, value) in fmtp_params(fmtp) {
        if key.eq_ignore_ascii_case("packetization-mode") {
            packetization_mode = match value {
                "0" => 0,
                "1" => 1,
                "2" => return Err("packetization-mode 2 (interleaved) unsupported".into()),
                v => return Err(format!("bad packetization-mode {}", quote(v))),
            };
        } else if key.eq_ignore_ascii_case("profile-level-id") {
            profile_level_id = parse_hex(value)
                .and_then(|b| <[u8; 3]>::try_from(b).ok())
                .map(Some)
                .ok_or_else(|| format!("bad profile-level-id {}", quote(value)))?;
        } else if key.eq_ignore_ascii_case("sprop-parameter-sets") {
            // §8.1: a comma-separated list of base64 (RFC 4648 §4) NAL units.
            for (i, set) in value.split(',').enumerate() {
                if i == MAX_PARAMETER_SETS {
                    return Err(format!(
                        "more than {MAX_PARAMETER_SETS} sprop-parameter-sets"
                    ));
                }
                let set = set.trim();
                let nal = STANDARD
                    .decode(set)
                    .or_else(|_| STANDARD_NO_PAD.decode(set))
                    .map_err(|_| format!("bad base64 in sprop-parameter-sets {}", quote(set)))?;
                match nal.first().map(|h| h & 0x1f) {
                    Some(7) => sps.push(nal),
                    Some(8) => pps.push(nal),
                    // Other NAL units (SEI) may appear; they configure nothing here.
                    Some(_) => {}
                    None => return Err("empty sprop-parameter-sets entry".into()),
                }
            }
        }
    }
    let mut config = match sps.first() {
        Some(first) => h264_config_from_sps(first)
            .ok_or_else(|| "sprop-parameter-sets SPS shorter than 4 bytes".to_string())?,
        None => {
            // No parameter sets out of band: they must come in-band (the depacketizer
            // reports them); the profile comes from profile-level-id.
            let [profile_idc, profile_compat, level_idc] = profile_level_id.unwrap_or([0; 3]);
            H264Config {
                profile_idc,
                profile_compat,
                level_idc,
                nal_length_size: 4,
                sps: Vec::new(),
                pps: Vec::new(),
                width: 0,
                height: 0,
            }
        }
    };
    config.sps = sps;
    config.pps = pps;
    Ok((
        Codec::H264(config),
        PayloadFormat::H264 { packetization_mode },
    ))
}

/// An [`H264Config`] for 4-byte NAL lengths from a sequence parameter set (with its NAL
/// header byte): profile, constraint flags and level from its first bytes (H.264 §7.3.2.1.1),
/// width and height from the parsed SPS (cropping applied), 0 × 0 if the SPS does not parse.
/// Holds only this SPS and no PPS; the caller fills the lists. `None` if shorter than 4 bytes.
pub fn h264_config_from_sps(sps: &[u8]) -> Option<H264Config> {
    let [_, profile_idc, profile_compat, level_idc, ..] = *sps else {
        return None;
    };
    let (width, height) = sps_dimensions(sps).unwrap_or((0, 0));
    Some(H264Config {
        profile_idc,
        profile_compat,
        level_idc,
        nal_length_size: 4,
        sps: vec![sps.to_vec()],
        pps: Vec::new(),
        width,
        height,
    })
}

/// The cropped picture size an SPS NAL unit describes, by the independent `h264-reader` parser.
fn sps_dimensions(sps: &[u8]) -> Option<(u16, u16)> {
    use h264_reader::nal::sps::SeqParameterSet;
    use h264_reader::rbsp::{decode_nal, BitReader};
    let rbsp = decode_nal(sps).ok()?;
    let parsed = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?;
    let (w, h) = parsed.pixel_dimensions().ok()?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// Reads an mpeg4-generic media section (RFC 3640 §4.1) in mode AAC-hbr or AAC-lbr.
fn read_aac(
    clock: &str,
    channels: Option<&str>,
    fmtp: &str,
) -> Result<(Codec, PayloadFormat), String> {
    let rate: u32 = clock
        .parse()
        .ok()
        .filter(|&r| r > 0)
        .ok_or_else(|| format!("bad clock rate {}", quote(clock)))?;
    let rtpmap_channels: u16 = match channels {
        Some(c) => c
            .parse()
            .map_err(|_| format!("bad channel count {}", quote(c)))?,
        None => 1,
    };
    let mut mode = None;
    let mut config = None;
    let mut constant_duration = None;
    let mut f = AuHeaderFormat {
        size_length: 0,
        index_length: 0,
        index_delta_length: 0,
        cts_delta_length: 0,
        dts_delta_length: 0,
        random_access_indication: false,
        stream_state_indication: 0,
        auxiliary_data_size_length: 0,
        frame_length: 1024,
    };
    let bits = |key: &str, v: &str| -> Result<u8, String> {
        v.parse::<u8>()
            .ok()
            .filter(|&b| b <= 32)
            .ok_or_else(|| format!("bad {key} {}", quote(v)))
    };
    for (key, value) in fmtp_params(fmtp) {
        match key.to_ascii_lowercase().as_str() {
            "mode" => mode = Some(value),
            "config" => config = Some(value),
            "sizelength" => f.size_length = bits(key, value)?,
            "indexlength" => f.index_length = bits(key, value)?,
            "indexdeltalength" => f.index_delta_length = bits(key, value)?,
            "ctsdeltalength" => f.cts_delta_length = bits(key, value)?,
            "dtsdeltalength" => f.dts_delta_length = bits(key, value)?,
            "randomaccessindication" => f.random_access_indication = value == "1",
            "streamstateindication" => f.stream_state_indication = bits(key, value)?,
            "auxiliarydatasizelength" => f.auxiliary_data_size_length = bits(key, value)?,
            "constantduration" => {
                constant_duration = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|&d| d > 0 && d <= 1 << 16)
                        .ok_or_else(|| format!("bad constantDuration {}", quote(value)))?,
                );
            }
            // streamtype=5 (audio), profile-level-id and others change nothing here.
            _ => {}
        }
    }
    let mode = mode.unwrap_or("");
    if !mode.eq_ignore_ascii_case("AAC-hbr") && !mode.eq_ignore_ascii_case("AAC-lbr") {
        return Err(format!("unsupported mode {}", quote(mode)));
    }
    // constantSize (sizelength 0) would mean fixed-size AUs, which AAC does not have.
    if f.size_length == 0 {
        return Err("sizelength missing or 0".into());
    }
    let config = config.ok_or_else(|| "config missing".to_string())?;
    let asc = parse_hex(config)
        .filter(|b| !b.is_empty() && b.len() <= MAX_AUDIO_CONFIG_BYTES)
        .ok_or_else(|| format!("bad config {}", quote(config)))?;
    let mut aac = parse_audio_specific_config(&asc, rate, rtpmap_channels)
        .map_err(|e| format!("config: {e}"))?;
    // §4.1: the RTP clock is the rtpmap rate; frames are timed in it, so the track's rate is
    // that clock even when the config names a core rate (implicit SBR signalling).
    aac.sample_rate_hz = rate;
    f.frame_length = constant_duration.unwrap_or_else(|| frame_length(&aac));
    Ok((Codec::Aac(aac), PayloadFormat::Aac(f)))
}

/// Samples per frame from the frameLengthFlag of a GASpecificConfig (ISO/IEC 14496-3
/// §4.4.1: 960 when set) for the object types that carry one directly after the channel
/// configuration; 1024 otherwise.
fn frame_length(aac: &AacConfig) -> u32 {
    let asc = &aac.audio_specific_config;
    // audioObjectType (5 bits, escape 31) and samplingFrequencyIndex (4, escape 15 + 24).
    let Some(&first) = asc.first() else {
        return 1024;
    };
    let aot = first >> 3;
    let freq_index =
        ((u16::from(first) << 8 | u16::from(asc.get(1).copied().unwrap_or(0))) >> 7) & 0x0f;
    if !matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23) {
        return 1024;
    }
    // 5 + 4 (+ 24) + 4 bits precede frameLengthFlag.
    let bit = if freq_index == 15 { 37 } else { 13 };
    match asc.get(bit / 8) {
        Some(b) if (b >> (7 - bit % 8)) & 1 == 1 => 960,
        _ => 1024,
    }
}

/// Bytes of an even-length hex string (either case); `None` if it is not one.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Fuzz entry point: any bytes as an ANNOUNCE body parse without panicking, a success has
/// tracks, and every carried track builds a depacketizer.
#[cfg(any(test, fuzzing))]
pub fn fuzz_announce(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_announce(&text) {
        Ok(a) => {
            assert!(!a.tracks.is_empty(), "success without tracks");
            assert!(a.skipped.len() <= MAX_MEDIA_SECTIONS);
            for (i, t) in a.tracks.iter().enumerate() {
                let _ = crate::ingest::depacketize::Depacketizer::new(i, t);
            }
        }
        Err(SdpError::NothingToCarry { skipped }) => {
            assert!(!skipped.is_empty() && skipped.len() <= MAX_MEDIA_SECTIONS)
        }
        Err(_) => {}
    }
}

mod latm;
#[cfg(test)]
mod tests;
