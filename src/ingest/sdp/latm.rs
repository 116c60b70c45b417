//! MP4A-LATM media sections (RFC 6416 §7.3; RFC 3016 §5.3 before it): the `config`
//! parameter is a StreamMuxConfig (ISO/IEC 14496-3 §1.7.3, Table 1.42) in hex, which holds
//! the AudioSpecificConfig (§1.6.2.1) at a bit offset that is not a whole byte. This reads the
//! common case into the same [`AacConfig`] an MP4 `esds` gives (the AudioSpecificConfig
//! re-aligned to bytes) and a [`LatmFormat`] for the depacketizer:
//!
//! ```text
//! audioMuxVersion 1 | [audioMuxVersionA 1 | taraBufferFullness LatmGetValue]  (version 1)
//! allStreamsSameTimeFraming 1 | numSubFrames 6 | numProgram 4 | numLayer 3
//! AudioSpecificConfig (version 0: its own length; version 1: ascLen LatmGetValue first)
//! frameLengthType 3 | latmBufferFullness 8 | otherDataPresent 1 [...] | crcCheckPresent 1 [crcCheckSum 8]
//! ```
//!
//! Refused (the section is skipped with the reason): `cpresent=1` (the configuration in-band,
//! RFC 6416 §6.1, also the default when `cpresent` is absent), audioMuxVersionA 1, several
//! programs or layers, allStreamsSameTimeFraming 0, a frameLengthType other than 0 (CELP,
//! HVXC, fixed lengths), other data, and AudioSpecificConfigs this reader cannot delimit
//! (version 0 with a program config element or an object type outside the AAC family).
//!
//! GStreamer's `rtpmp4apay` (1.22) writes the StreamMuxConfig only up to the end of the
//! AudioSpecificConfig bytes it took from the MP4 (`40002410` is version 0, one subframe,
//! then `1208`, AAC-LC 44.1 kHz mono, and nothing after), and ffmpeg's `rtpdec_latm.c` reads
//! no further either; so when fewer bits than the four trailing fields remain and they are
//! all zero, frameLengthType 0 is assumed.

use super::{parse_hex, quote, LatmFormat, PayloadFormat, MAX_AUDIO_CONFIG_BYTES};
use crate::media::mp4::parse_audio_specific_config;
use crate::media::track::Codec;

/// ISO/IEC 14496-3 §1.6.2.1: the sync extension that signals SBR backward-compatibly.
const SYNC_EXTENSION_SBR: u32 = 0x2b7;
/// ISO/IEC 14496-3 §1.6.2.1: the sync extension that signals PS after SBR.
const SYNC_EXTENSION_PS: u32 = 0x548;
/// Bits of frameLengthType, latmBufferFullness, otherDataPresent and crcCheckPresent.
const TAIL_BITS: usize = 3 + 8 + 1 + 1;

/// MSB-first bit reader over the config bytes; every read past the end is `None`.
struct BitReader<'a> {
    /// The bytes.
    data: &'a [u8],
    /// The next bit.
    pos: usize,
}

impl BitReader<'_> {
    /// Bits left.
    fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// The next `n` ≤ 32 bits without consuming them.
    fn peek(&self, n: usize) -> Option<u32> {
        if n > 32 || n > self.remaining() {
            return None;
        }
        let mut v = 0u32;
        for i in self.pos..self.pos + n {
            let byte = self.data.get(i / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - i % 8)) & 1);
        }
        Some(v)
    }

    /// Reads `n` ≤ 32 bits.
    fn read(&mut self, n: usize) -> Option<u32> {
        let v = self.peek(n)?;
        self.pos += n;
        Some(v)
    }

    /// ISO/IEC 14496-3 §1.7.3 LatmGetValue(): bytesForValue (2 bits), then that many + 1
    /// bytes, big-endian.
    fn latm_value(&mut self) -> Option<u32> {
        let bytes = self.read(2)? + 1;
        let mut v = 0u32;
        for _ in 0..bytes {
            v = (v << 8) | self.read(8)?;
        }
        Some(v)
    }

    /// ISO/IEC 14496-3 §1.6.2.1 GetAudioObjectType(): 5 bits, 31 escapes to 32 + 6 bits.
    fn audio_object_type(&mut self) -> Option<u32> {
        match self.read(5)? {
            31 => Some(32 + self.read(6)?),
            aot => Some(aot),
        }
    }

    /// samplingFrequencyIndex (4 bits; 15 escapes to a 24-bit frequency): the rate in Hz,
    /// 0 for a reserved index.
    fn sampling_frequency(&mut self) -> Option<u32> {
        /// ISO/IEC 14496-3 §1.6.3.4 Table 1.18.
        const RATES: [u32; 13] = [
            96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
            8_000, 7_350,
        ];
        match self.read(4)? {
            15 => self.read(24),
            i => Some(RATES.get(i as usize).copied().unwrap_or(0)),
        }
    }

    /// The bits `[from, to)` as bytes, the last one padded with zero bits.
    fn bytes_between(&self, from: usize, to: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity((to - from).div_ceil(8));
        let mut r = BitReader {
            data: self.data,
            pos: from,
        };
        while r.pos < to {
            let n = (to - r.pos).min(8);
            out.push(u8::try_from(r.read(n)? << (8 - n)).ok()?);
        }
        Some(out)
    }
}

/// What the AudioSpecificConfig inside a StreamMuxConfig says about framing.
struct AscShape {
    /// Samples per frame at the core sampling rate.
    frame_samples: u32,
    /// The core sampling rate (the first samplingFrequencyIndex).
    core_rate_hz: u32,
}

/// Reads an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) far enough to know where it ends:
/// the object type (with explicit SBR/PS, §1.6.2.1 AOT 5 and 29), the GASpecificConfig
/// (§4.4.1) and the backward-compatible sync extensions. `Err` says why it cannot be read.
fn read_audio_specific_config(r: &mut BitReader<'_>) -> Result<AscShape, String> {
    let short = || "config: AudioSpecificConfig truncated".to_string();
    let mut aot = r.audio_object_type().ok_or_else(short)?;
    let core_rate_hz = r.sampling_frequency().ok_or_else(short)?;
    let channel_configuration = r.read(4).ok_or_else(short)?;
    let mut explicit_extension = false;
    if aot == 5 || aot == 29 {
        // Explicit hierarchical signalling: the extension rate, then the core object type.
        explicit_extension = true;
        r.sampling_frequency().ok_or_else(short)?;
        aot = r.audio_object_type().ok_or_else(short)?;
        if aot == 22 {
            r.read(4).ok_or_else(short)?; // extensionChannelConfiguration
        }
    }
    if !matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23) {
        return Err(format!("audio object type {aot} in LATM unsupported"));
    }
    if core_rate_hz == 0 {
        return Err("config: reserved sampling frequency index".into());
    }
    // §4.4.1 GASpecificConfig.
    let frame_length_flag = r.read(1).ok_or_else(short)? == 1;
    if r.read(1).ok_or_else(short)? == 1 {
        r.read(14).ok_or_else(short)?; // coreCoderDelay
    }
    let extension_flag = r.read(1).ok_or_else(short)? == 1;
    if channel_configuration == 0 {
        return Err("program config element in LATM config unsupported".into());
    }
    if aot == 6 || aot == 20 {
        r.read(3).ok_or_else(short)?; // layerNr
    }
    if extension_flag {
        if aot == 22 {
            r.read(5 + 11).ok_or_else(short)?; // numOfSubFrame, layer_length
        }
        if matches!(aot, 17 | 19 | 20 | 23) {
            r.read(3).ok_or_else(short)?; // the three resilience flags
        }
        r.read(1).ok_or_else(short)?; // extensionFlag3
    }
    if matches!(aot, 17 | 19..=23) {
        // §1.6.2.1 epConfig; 2 and 3 are followed by an ErrorProtectionSpecificConfig.
        if r.read(2).ok_or_else(short)? >= 2 {
            return Err("error protection in LATM config unsupported".into());
        }
    }
    // §1.6.2.1: the backward-compatible SBR (and PS) signalling, read when 16 bits remain.
    if !explicit_extension && r.remaining() >= 16 && r.peek(11) == Some(SYNC_EXTENSION_SBR) {
        r.read(11).ok_or_else(short)?;
        let extension = r.audio_object_type().ok_or_else(short)?;
        if extension == 5 || extension == 22 {
            let sbr_present = r.read(1).ok_or_else(short)? == 1;
            if sbr_present {
                r.sampling_frequency().ok_or_else(short)?;
                if extension == 5 && r.remaining() >= 12 && r.peek(11) == Some(SYNC_EXTENSION_PS) {
                    r.read(12).ok_or_else(short)?; // syncExtensionType, psPresentFlag
                }
            }
            if extension == 22 {
                r.read(4).ok_or_else(short)?; // extensionChannelConfiguration
            }
        }
    }
    // §4.5.1.1: ER AAC-LD frames are 512 or 480 samples, the others 1024 or 960.
    let frame_samples = match (aot, frame_length_flag) {
        (23, false) => 512,
        (23, true) => 480,
        (_, false) => 1024,
        (_, true) => 960,
    };
    Ok(AscShape {
        frame_samples,
        core_rate_hz,
    })
}

/// A StreamMuxConfig read: the AudioSpecificConfig re-aligned and the framing.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct StreamMuxConfig {
    /// The AudioSpecificConfig's bytes, as an MP4 `esds` holds them.
    pub(super) audio_specific_config: Vec<u8>,
    /// `numSubFrames + 1`.
    pub(super) sub_frames: u8,
    /// Samples per frame at the core sampling rate.
    pub(super) frame_samples: u32,
    /// The core sampling rate in Hz.
    pub(super) core_rate_hz: u32,
}

/// Reads a StreamMuxConfig (ISO/IEC 14496-3 §1.7.3) of the common case; `Err` is the reason
/// for the skip line.
pub(super) fn parse_stream_mux_config(config: &[u8]) -> Result<StreamMuxConfig, String> {
    let mut r = BitReader {
        data: config,
        pos: 0,
    };
    let short = || "StreamMuxConfig truncated".to_string();
    let version = r.read(1).ok_or_else(short)?;
    if version == 1 {
        if r.read(1).ok_or_else(short)? == 1 {
            return Err("audioMuxVersionA 1 unsupported".into());
        }
        r.latm_value().ok_or_else(short)?; // taraBufferFullness
    }
    if r.read(1).ok_or_else(short)? == 0 {
        return Err("allStreamsSameTimeFraming 0 unsupported".into());
    }
    let num_sub_frames = r.read(6).ok_or_else(short)?;
    if r.read(4).ok_or_else(short)? != 0 {
        return Err("several programs in one LATM stream unsupported".into());
    }
    if r.read(3).ok_or_else(short)? != 0 {
        return Err("several layers in one LATM stream unsupported".into());
    }
    let asc_start;
    let asc_end;
    let shape;
    if version == 1 {
        // ascLen counts the AudioSpecificConfig and its fill bits.
        let len = usize::try_from(r.latm_value().ok_or_else(short)?).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_AUDIO_CONFIG_BYTES * 8 || len > r.remaining() {
            return Err(format!("bad ascLen {len}"));
        }
        asc_start = r.pos;
        asc_end = asc_start + len;
        let mut asc = BitReader {
            data: r.data.get(..asc_end.div_ceil(8)).unwrap_or_default(),
            pos: asc_start,
        };
        shape = read_audio_specific_config(&mut asc)?;
        if asc.pos > asc_end {
            return Err("AudioSpecificConfig longer than its ascLen".into());
        }
        r.pos = asc_end;
    } else {
        asc_start = r.pos;
        shape = read_audio_specific_config(&mut r)?;
        asc_end = r.pos;
        if asc_end - asc_start > MAX_AUDIO_CONFIG_BYTES * 8 {
            return Err("AudioSpecificConfig too long".into());
        }
    }
    if r.remaining() >= TAIL_BITS {
        let frame_length_type = r.read(3).ok_or_else(short)?;
        if frame_length_type != 0 {
            return Err(format!("frameLengthType {frame_length_type} unsupported"));
        }
        r.read(8).ok_or_else(short)?; // latmBufferFullness
        if r.read(1).ok_or_else(short)? == 1 {
            return Err("otherDataPresent unsupported".into());
        }
        if r.read(1).ok_or_else(short)? == 1 {
            r.read(8).ok_or_else(short)?; // crcCheckSum
        }
    } else if r.peek(r.remaining()) != Some(0) {
        // Fewer bits than the trailing fields need: only zero padding is a cut-short config.
        return Err(short());
    }
    let audio_specific_config = r.bytes_between(asc_start, asc_end).ok_or_else(short)?;
    Ok(StreamMuxConfig {
        audio_specific_config,
        sub_frames: u8::try_from(num_sub_frames + 1).unwrap_or(u8::MAX),
        frame_samples: shape.frame_samples,
        core_rate_hz: shape.core_rate_hz,
    })
}

/// Reads an MP4A-LATM media section (RFC 6416 §7.3): `rtpmap MP4A-LATM/<clock>[/<channels>]`,
/// `fmtp cpresent=0;config=<hex StreamMuxConfig>`.
pub(super) fn read_latm(
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
    // §7.3: cpresent defaults to 1 (the StreamMuxConfig in every AudioMuxElement).
    let mut cpresent = "1";
    let mut config = None;
    for (key, value) in super::fmtp_params(fmtp) {
        if key.eq_ignore_ascii_case("cpresent") {
            cpresent = value;
        } else if key.eq_ignore_ascii_case("config") {
            config = Some(value);
        }
    }
    if cpresent != "0" {
        return Err(format!(
            "cpresent={} (in-band StreamMuxConfig) unsupported",
            quote(cpresent)
        ));
    }
    let config = config.ok_or_else(|| "config missing".to_string())?;
    let bytes = parse_hex(config)
        .filter(|b| !b.is_empty() && b.len() <= MAX_AUDIO_CONFIG_BYTES + 16)
        .ok_or_else(|| format!("bad config {}", quote(config)))?;
    let smc = parse_stream_mux_config(&bytes)?;
    let mut aac = parse_audio_specific_config(&smc.audio_specific_config, rate, rtpmap_channels)
        .map_err(|e| format!("config: {e}"))?;
    // As for mpeg4-generic: frames are timed in the RTP clock, so that is the track's rate.
    aac.sample_rate_hz = rate;
    // A frame's samples at the core rate, in RTP clock ticks (2048 for SBR at twice the rate).
    let ticks = u64::from(smc.frame_samples) * u64::from(rate) / u64::from(smc.core_rate_hz);
    let frame_length = u32::try_from(ticks)
        .ok()
        .filter(|&t| t > 0 && t <= 1 << 16)
        .ok_or_else(|| format!("clock rate {rate} does not fit the config's sampling rate"))?;
    Ok((
        Codec::Aac(aac),
        PayloadFormat::Latm(LatmFormat {
            sub_frames: smc.sub_frames,
            frame_length,
        }),
    ))
}
