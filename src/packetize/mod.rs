//! RTP payload formats, sans-IO: turns one [`Sample`] (an access unit in the mapped media
//! bytes) into a sequence of [`PacketSpec`]s that describe RTP payloads without copying them.
//!
//! Implements RFC 6184 (H.264, packetization-mode=1: single NAL unit packets §5.6, STAP-A
//! §5.7.1, FU-A §5.8, marker bit §5.1) in [`h264`], RFC 7798 (H.265: single NAL unit packets
//! §4.4.1, aggregation packets §4.4.2, fragmentation units §4.4.3, marker §4.1) in [`h265`],
//! and RFC 3640 (MPEG-4 AAC, mode=AAC-hbr:
//! AU headers §3.2.1/§3.3.6, fragmentation §3.2.3) in [`aac`], and RFC 7587 (Opus: one Opus
//! packet per RTP packet §4.2, 48 kHz clock and marker §4.1) in [`opus`], and RFC 2250 §2
//! (MPEG-2 transport streams: whole TS packets, no payload header) in [`mp2t`], and RFC 7741
//! (VP8) and RFC 9628 (VP9: one-byte payload descriptors, equal pieces) in [`vpx`], and RFC 2250
//! §3.5 (MPEG audio: 4-byte header with Frag_offset) in [`mpa`], and RFC 3551 §4.5.14 (G.711
//! PCMU/PCMA: the bytes as they are) in [`g711`]. The per-packet path
//! ([`Packetizer::next_packet`]) never allocates and never panics on corrupt input; every
//! length read from the media is bounds-checked against the sample and the media slice.

pub mod aac;
pub mod g711;
pub mod h264;
pub mod h265;
pub mod mp2t;
pub mod mpa;
pub mod opus;
pub mod vpx;

use crate::media::track::{Codec, Sample};

/// Smallest accepted RTP payload budget in bytes.
pub const MIN_PAYLOAD_BUDGET: usize = 64;
/// Largest accepted RTP payload budget: a 16-bit RTSP interleaved frame minus the RTP header.
pub const MAX_PAYLOAD_BUDGET: usize = 65_535 - 12;
/// Default RTP payload budget, safe for typical 1500-byte MTU paths with tunnels.
pub const DEFAULT_PAYLOAD_BUDGET: usize = 1200;

/// Where a packet's body bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySource {
    /// The media bytes (mapping) at `[offset, offset+len)`.
    Media,
    /// The packetizer's own parameter-set buffer [`Packetizer::parameter_sets`] at `[offset, offset+len)`.
    ParameterSets,
    /// Whole access units that lie apart in the file: the bytes of the track's samples
    /// `offset`, `offset + 1`, … (as many as the AU header section lists), resolved by
    /// [`body_slices`]. `len` is their sum.
    Samples,
    /// The aggregation units of an H.265 AP (RFC 7798 §4.4.2) in place in the media bytes:
    /// from `offset`, a 16-bit NALU size and that many bytes, then `prefix_len - 2` bytes of
    /// the next NAL's length prefix to skip (its low two bytes are the next NALU size), and
    /// so on until `len` bytes are taken, resolved by [`body_slices`].
    Nals {
        /// The file's NAL length prefix size: 2 or 4.
        prefix_len: u8,
    },
}

/// A packet body as slices of its source buffers, in order.
#[derive(Debug, Clone, Copy)]
pub struct BodySlices<'a> {
    parts: [&'a [u8]; aac::MAX_AUS_PER_PACKET],
    len: u8,
}

impl<'a> BodySlices<'a> {
    /// The slices.
    pub fn as_slices(&self) -> &[&'a [u8]] {
        &self.parts[..usize::from(self.len)]
    }
}

/// Resolves `spec`'s body to slices: a range of `media` or `parameter_sets`, or for
/// [`BodySource::Samples`] each listed AU of `samples` (the spec's track) in `media`. `None`
/// when anything is out of range or the AUs do not add up to `body_len`. Does not allocate.
pub fn body_slices<'a>(
    spec: &PacketSpec,
    media: &'a [u8],
    parameter_sets: &'a [u8],
    samples: &[Sample],
) -> Option<BodySlices<'a>> {
    let mut out = BodySlices {
        parts: [&[]; aac::MAX_AUS_PER_PACKET],
        len: 0,
    };
    let source = match spec.body_source {
        BodySource::Media => media,
        BodySource::ParameterSets => parameter_sets,
        BodySource::Samples => {
            let count = usize::from(spec.payload_header_len).saturating_sub(2) / 2;
            let first = usize::try_from(spec.body_offset).ok()?;
            let aus = samples.get(first..first.checked_add(count)?)?;
            if aus.len() > aac::MAX_AUS_PER_PACKET {
                return None;
            }
            let mut total = 0usize;
            for (k, au) in aus.iter().enumerate() {
                let (start, end) = sample_range(au, media).ok()?;
                out.parts[k] = &media[start..end];
                total += end - start;
            }
            out.len = aus.len() as u8;
            return (total == spec.body_len as usize).then_some(out);
        }
        BodySource::Nals { prefix_len } => return nal_chain(spec, media, prefix_len, out),
    };
    let start = usize::try_from(spec.body_offset).ok()?;
    let end = start.checked_add(spec.body_len as usize)?;
    out.parts[0] = source.get(start..end)?;
    out.len = 1;
    Some(out)
}

/// Resolves a [`BodySource::Nals`] body: aggregation units (16-bit size + NAL) chained
/// through the media, at most [`aac::MAX_AUS_PER_PACKET`] of them, adding up to `body_len`.
fn nal_chain<'a>(
    spec: &PacketSpec,
    media: &'a [u8],
    prefix_len: u8,
    mut out: BodySlices<'a>,
) -> Option<BodySlices<'a>> {
    let gap = usize::from(prefix_len).checked_sub(2)?;
    let want = spec.body_len as usize;
    let mut pos = usize::try_from(spec.body_offset).ok()?;
    let mut total = 0usize;
    for k in 0..aac::MAX_AUS_PER_PACKET {
        let size_bytes = media.get(pos..pos.checked_add(2)?)?;
        let size = usize::from(u16::from_be_bytes([size_bytes[0], size_bytes[1]]));
        let end = pos.checked_add(2 + size)?;
        out.parts[k] = media.get(pos..end)?;
        out.len = k as u8 + 1;
        total += 2 + size;
        if total >= want {
            return (total == want).then_some(out);
        }
        pos = end.checked_add(gap)?;
    }
    None
}

/// Longest payload-format header: the AU header section of an AAC packet carrying
/// [`aac::MAX_AUS_PER_PACKET`] access units (16-bit AU-headers-length + 16 bits per AU).
pub const MAX_PAYLOAD_HEADER: usize = 2 + 2 * aac::MAX_AUS_PER_PACKET;

/// One RTP packet to send, described without copying its payload: the RTP header is written
/// by the caller; the payload is `payload_header[..payload_header_len]` followed by the body bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSpec {
    /// Payload-format header bytes (FU indicator + FU header, or AAC AU header section).
    pub payload_header: [u8; MAX_PAYLOAD_HEADER],
    /// How many bytes of `payload_header` are used (0, 2, or 2 + 2 per AAC access unit).
    pub payload_header_len: u8,
    /// Which buffer `body_offset`/`body_len` index into.
    pub body_source: BodySource,
    /// Offset of the body within its source buffer.
    pub body_offset: u64,
    /// Length of the body in bytes.
    pub body_len: u32,
    /// RTP marker bit.
    pub marker: bool,
}

const _: () = assert!(std::mem::size_of::<PacketSpec>() <= 40);

impl PacketSpec {
    /// Bytes of payload (header+body) of this spec, for octet counting and size checks.
    pub fn payload_len(&self) -> usize {
        usize::from(self.payload_header_len) + self.body_len as usize
    }

    /// The used part of the payload header.
    pub fn header(&self) -> &[u8] {
        let n = usize::from(self.payload_header_len).min(self.payload_header.len());
        &self.payload_header[..n]
    }
}

/// Errors from building a packetizer or packetizing a sample (`Copy`, for the per-packet path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketizeError {
    /// The payload budget is below [`MIN_PAYLOAD_BUDGET`].
    #[error("payload budget too small (minimum 64 bytes)")]
    BudgetTooSmall,
    /// The payload budget is above [`MAX_PAYLOAD_BUDGET`].
    #[error("payload budget too large (maximum 65523 bytes)")]
    BudgetTooLarge,
    /// The avcC NAL length size is not 1, 2 or 4.
    #[error("unsupported nal length size (must be 1, 2 or 4)")]
    InvalidNalLengthSize,
    /// An SPS or PPS in the codec configuration is empty.
    #[error("empty nal unit in codec configuration")]
    EmptyNal,
    /// The SPS/PPS STAP-A does not fit one packet of the payload budget.
    #[error("parameter sets do not fit one stap-a packet")]
    ParameterSetsTooLarge,
    /// A NAL unit length prefix points past the end of the sample.
    #[error("nal unit length runs past the end of the sample")]
    NalLengthPastSample,
    /// The sample ends in the middle of a NAL unit length prefix.
    #[error("sample ends inside a nal unit length prefix")]
    TruncatedLengthPrefix,
    /// The sample's byte range is not inside the media bytes.
    #[error("sample byte range is outside the media")]
    SampleOutOfRange,
    /// An AAC access unit is larger than the 13-bit AU-size field can express.
    #[error("aac access unit larger than 8191 bytes")]
    AuTooLarge,
    /// An Opus packet is larger than the payload budget (RFC 7587 §4.2 forbids splitting it).
    #[error("opus packet larger than the payload budget")]
    OpusPacketOverBudget,
    /// An MPEG-TS sample is not 1 to 7 whole 188-byte packets (RFC 2250 §2).
    #[error("mpeg-ts sample is not 1 to 7 whole 188-byte packets")]
    NotWholeTsPackets,
    /// An MPEG audio sample is empty or too large for the 16-bit Frag_offset (RFC 2250 §3.5).
    #[error("mpeg audio sample empty or larger than 65535 bytes")]
    MpegAudioFrameTooLarge,
    /// A G.711 sample is empty or larger than the payload budget (RFC 3551 §4.5.14: one
    /// sample per packet, cut into 20 ms pieces when the file is indexed).
    #[error("g.711 sample empty or over the payload budget")]
    G711SampleOverBudget,
}

/// A payload-format packetizer for one track.
#[derive(Debug, Clone)]
pub enum Packetizer {
    /// RFC 6184 H.264, packetization-mode=1.
    H264(h264::H264Packetizer),
    /// RFC 7798 H.265.
    H265(h265::H265Packetizer),
    /// RFC 3640 AAC, mode=AAC-hbr.
    Aac(aac::AacPacketizer),
    /// RFC 7587 Opus.
    Opus(opus::OpusPacketizer),
    /// RFC 2250 §2 MPEG-2 transport stream.
    Mp2t(mp2t::Mp2tPacketizer),
    /// RFC 7741 VP8 or RFC 9628 VP9.
    Vpx(vpx::VpxPacketizer),
    /// RFC 2250 §3.5 MPEG audio.
    Mpa(mpa::MpaPacketizer),
    /// RFC 3551 §4.5.14 G.711 (PCMU/PCMA).
    G711(g711::G711Packetizer),
}

impl Packetizer {
    /// Builds a packetizer; `payload_budget_bytes` is the max RTP payload size (default 1200).
    /// Errors if the budget is too small (< 64) or the codec configuration is unusable.
    pub fn new(codec: &Codec, payload_budget_bytes: usize) -> Result<Self, PacketizeError> {
        check_budget(payload_budget_bytes)?;
        match codec {
            Codec::H264(cfg) => Ok(Packetizer::H264(h264::H264Packetizer::new(
                cfg,
                payload_budget_bytes,
            )?)),
            Codec::H265(cfg) => Ok(Packetizer::H265(h265::H265Packetizer::new(
                cfg,
                payload_budget_bytes,
            )?)),
            Codec::Aac(_) => Ok(Packetizer::Aac(aac::AacPacketizer::new(
                payload_budget_bytes,
            )?)),
            Codec::Opus(_) => Ok(Packetizer::Opus(opus::OpusPacketizer::new(
                payload_budget_bytes,
            )?)),
            Codec::Mp2t(_) => Ok(Packetizer::Mp2t(mp2t::Mp2tPacketizer::new(
                payload_budget_bytes,
            )?)),
            Codec::Vp8(_) => Ok(Packetizer::Vpx(vpx::VpxPacketizer::new(
                vpx::VpxFormat::Vp8,
                payload_budget_bytes,
            )?)),
            Codec::Vp9(_) => Ok(Packetizer::Vpx(vpx::VpxPacketizer::new(
                vpx::VpxFormat::Vp9,
                payload_budget_bytes,
            )?)),
            Codec::MpegAudio(_) => Ok(Packetizer::Mpa(mpa::MpaPacketizer::new(
                payload_budget_bytes,
            )?)),
            Codec::G711(_) => Ok(Packetizer::G711(g711::G711Packetizer::new(
                payload_budget_bytes,
            )?)),
        }
    }

    /// Starts a new access unit; any unfinished previous one is abandoned.
    pub fn begin_sample(&mut self, sample: Sample) {
        match self {
            Packetizer::H264(p) => p.begin_sample(sample),
            Packetizer::H265(p) => p.begin_sample(sample),
            Packetizer::Aac(p) => p.begin_sample(sample),
            Packetizer::Opus(p) => p.begin_sample(sample),
            Packetizer::Mp2t(p) => p.begin_sample(sample),
            Packetizer::Vpx(p) => p.begin_sample(sample),
            Packetizer::Mpa(p) => p.begin_sample(sample),
            Packetizer::G711(p) => p.begin_sample(sample),
        }
    }

    /// How many samples from `samples[0]` on leave in the next packet(s): 1, except for AAC,
    /// which aggregates consecutive small access units (see [`aac::aggregate_len`]).
    /// `index` is `samples[0]`'s index in its track: groups depend on nothing else, so they
    /// are the same in every loop of a live channel and for every viewer starting on one.
    pub fn samples_per_packet(&self, samples: &[Sample], index: u64, timescale: u32) -> usize {
        match self {
            Packetizer::H264(_)
            | Packetizer::H265(_)
            | Packetizer::Opus(_)
            | Packetizer::Mp2t(_)
            | Packetizer::Vpx(_)
            | Packetizer::Mpa(_)
            | Packetizer::G711(_) => 1,
            Packetizer::Aac(p) => aac::aggregate_len(samples, index, p.payload_budget(), timescale),
        }
    }

    /// Starts the samples [`samples_per_packet`](Self::samples_per_packet) chose: one sample
    /// as [`begin_sample`](Self::begin_sample), several as one aggregated AAC packet.
    /// `index` is `samples[0]`'s index in its track (a body of AUs apart in the file names
    /// them by index: [`BodySource::Samples`]).
    pub fn begin_samples(&mut self, samples: &[Sample], index: u64) {
        match (self, samples) {
            (Packetizer::Aac(p), [_, _, ..]) => p.begin_group(samples, index),
            (p, [first, ..]) => p.begin_sample(*first),
            (p, []) => p.begin_sample(Sample::default()),
        }
    }

    /// Next packet of the current sample, `Ok(None)` when the sample is complete. On `Err`, the
    /// rest of the sample is abandoned (corrupt data) and the next call returns `Ok(None)`.
    #[inline]
    pub fn next_packet(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        match self {
            Packetizer::H264(p) => p.next_packet(media),
            Packetizer::H265(p) => p.next_packet(media),
            Packetizer::Aac(p) => p.next_packet(media),
            Packetizer::Opus(p) => p.next_packet(media),
            Packetizer::Mp2t(p) => p.next_packet(media),
            Packetizer::Vpx(p) => p.next_packet(media),
            Packetizer::Mpa(p) => p.next_packet(media),
            Packetizer::G711(p) => p.next_packet(media),
        }
    }

    /// Bytes referenced by [`BodySource::ParameterSets`] (the H.264 STAP-A or H.265 AP
    /// payload, built once in `new`).
    pub fn parameter_sets(&self) -> &[u8] {
        match self {
            Packetizer::H264(p) => p.parameter_sets(),
            Packetizer::H265(p) => p.parameter_sets(),
            Packetizer::Aac(_)
            | Packetizer::Opus(_)
            | Packetizer::Mp2t(_)
            | Packetizer::Vpx(_)
            | Packetizer::Mpa(_)
            | Packetizer::G711(_) => &[],
        }
    }

    /// Bytes of payload (header+body) of a spec, for octet counting.
    pub fn payload_len(&self, spec: &PacketSpec) -> usize {
        spec.payload_len()
    }

    /// The payload budget this packetizer was built with.
    pub fn payload_budget(&self) -> usize {
        match self {
            Packetizer::H264(p) => p.payload_budget(),
            Packetizer::H265(p) => p.payload_budget(),
            Packetizer::Aac(p) => p.payload_budget(),
            Packetizer::Opus(p) => p.payload_budget(),
            Packetizer::Mp2t(p) => p.payload_budget(),
            Packetizer::Vpx(p) => p.payload_budget(),
            Packetizer::Mpa(p) => p.payload_budget(),
            Packetizer::G711(p) => p.payload_budget(),
        }
    }
}

/// Validates a payload budget against [`MIN_PAYLOAD_BUDGET`] and [`MAX_PAYLOAD_BUDGET`].
pub(crate) fn check_budget(budget: usize) -> Result<(), PacketizeError> {
    if budget < MIN_PAYLOAD_BUDGET {
        Err(PacketizeError::BudgetTooSmall)
    } else if budget > MAX_PAYLOAD_BUDGET {
        Err(PacketizeError::BudgetTooLarge)
    } else {
        Ok(())
    }
}

/// Returns the sample's bytes as `(start, end)` indices into `media`, or `SampleOutOfRange`.
#[inline]
pub(crate) fn sample_range(
    sample: &Sample,
    media: &[u8],
) -> Result<(usize, usize), PacketizeError> {
    let start = usize::try_from(sample.offset).map_err(|_| PacketizeError::SampleOutOfRange)?;
    let end = start
        .checked_add(sample.len as usize)
        .ok_or(PacketizeError::SampleOutOfRange)?;
    if end > media.len() {
        return Err(PacketizeError::SampleOutOfRange);
    }
    Ok((start, end))
}

/// Equal-size fragmentation shared by FU-A (RFC 6184 §5.8) and AAC fragments (RFC 3640 §3.2.3):
/// the fragment size for splitting `total` bytes into pieces of at most `max` bytes, such that
/// every fragment but the last has exactly this size (UDP GSO needs equal segment sizes).
#[inline]
pub(crate) fn equal_fragment_size(total: u32, max: u32) -> u32 {
    let max = max.max(1);
    let n = total.div_ceil(max).max(1);
    total.div_ceil(n).max(1)
}

/// Collects a spec's payload bytes into a Vec (tests and tools; not the send path).
/// `samples` is the spec's track, needed only for [`BodySource::Samples`]. Out-of-range
/// bodies are left out rather than panicking.
pub fn payload_bytes(
    spec: &PacketSpec,
    media: &[u8],
    parameter_sets: &[u8],
    samples: &[Sample],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(spec.payload_len());
    out.extend_from_slice(spec.header());
    if let Some(body) = body_slices(spec, media, parameter_sets, samples) {
        for part in body.as_slices() {
            out.extend_from_slice(part);
        }
    }
    out
}

/// Fuzz entry point: treats `data` as one sample and runs both packetizers to completion,
/// checking invariants (payload within budget, bodies in range, errors terminate the sample).
#[cfg(any(test, fuzzing))]
pub fn fuzz_packetize(data: &[u8]) {
    use crate::media::track::{AacConfig, H264Config};
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let nal_length_size = [1u8, 2, 4][usize::from(ctl % 3)];
    let budget = MIN_PAYLOAD_BUDGET + usize::from(ctl >> 2) * 7;
    let sample = Sample {
        offset: 1,
        len: rest.len() as u32,
        dts: 0,
        cts_offset: 0,
        sync: ctl & 0x80 != 0,
    };
    let h264 = Codec::H264(H264Config {
        profile_idc: 100,
        profile_compat: 0,
        level_idc: 30,
        nal_length_size,
        sps: vec![vec![0x67, 0x64, 0x00, 0x1e]],
        pps: vec![vec![0x68, 0xee, 0x3c, 0x80]],
        width: 640,
        height: 360,
    });
    let aac = Codec::Aac(AacConfig {
        audio_specific_config: vec![0x11, 0x90],
        object_type: 2,
        sample_rate_hz: 48_000,
        channels: 2,
    });
    let opus = Codec::Opus(crate::media::track::OpusConfig {
        channels: 2,
        pre_skip: 312,
        input_sample_rate_hz: 48_000,
        output_gain: 0,
        channel_mapping_family: 0,
        channel_mapping_table: Vec::new(),
    });
    let h265 = Codec::H265(crate::media::track::H265Config {
        profile_space: 0,
        tier_flag: false,
        profile_idc: 1,
        profile_compat: 0x6000_0000,
        constraint_flags: [0x90, 0, 0, 0, 0, 0],
        level_idc: 90,
        nal_length_size,
        vps: vec![vec![0x40, 0x01, 0x0c]],
        sps: vec![vec![0x42, 0x01, 0x01]],
        pps: vec![vec![0x44, 0x01, 0xc1]],
        width: 640,
        height: 360,
    });
    let mp2t = Codec::Mp2t(crate::media::track::Mp2tConfig {
        pcr_pid: 0x100,
        streams: Vec::new(),
        presentation_lead: 0,
    });
    let mpa = Codec::MpegAudio(crate::media::track::MpegAudioConfig {
        sample_rate_hz: 44_100,
        channels: 2,
    });
    let g711 = Codec::G711(crate::media::track::G711Config {
        law: crate::media::track::G711Law::Mu,
        sample_rate_hz: 8000,
        channels: 1,
    });
    for codec in [h264, h265, aac, opus, mp2t, mpa, g711] {
        let Ok(mut p) = Packetizer::new(&codec, budget) else {
            continue;
        };
        p.begin_sample(sample);
        // Every packet consumes at least one sample byte except the single STAP-A.
        let max_packets = rest.len() + 2;
        let mut count = 0usize;
        loop {
            match p.next_packet(data) {
                Ok(Some(spec)) => {
                    count += 1;
                    assert!(count <= max_packets, "packetizer does not terminate");
                    // RFC 2250 §2: TS runs are whole packets, sent whole (`mp2t`).
                    let whole_ts = matches!(p, Packetizer::Mp2t(_));
                    assert!(
                        whole_ts || spec.payload_len() <= budget,
                        "payload over budget"
                    );
                    let src_len = match spec.body_source {
                        BodySource::Media => data.len(),
                        BodySource::ParameterSets => p.parameter_sets().len(),
                        BodySource::Nals { .. } => {
                            let body = body_slices(&spec, data, &[], &[])
                                .expect("an aggregation packet's units resolve");
                            let total: usize = body.as_slices().iter().map(|b| b.len()).sum();
                            assert_eq!(total, spec.body_len as usize);
                            data.len()
                        }
                        BodySource::Samples => unreachable!("one sample never aggregates"),
                    };
                    assert!(spec.body_offset + u64::from(spec.body_len) <= src_len as u64);
                }
                Ok(None) => break,
                Err(_) => {
                    assert_eq!(p.next_packet(data), Ok(None), "error must end the sample");
                    break;
                }
            }
        }
        assert_eq!(
            p.next_packet(data),
            Ok(None),
            "finished sample stays finished"
        );
    }
    fuzz_aac_groups(ctl, budget, data);
}

/// Part of [`fuzz_packetize`]: cuts `data` into AUs of sizes taken from its bytes, in a
/// shuffled order in the "file", and checks that an aggregated packet's body resolves to the
/// AUs' bytes (or is refused as out of range), within the budget, marker set.
#[cfg(any(test, fuzzing))]
fn fuzz_aac_groups(ctl: u8, budget: usize, data: &[u8]) {
    let mut samples = Vec::new();
    let mut offset = 0usize;
    for (k, &b) in data.iter().take(16).enumerate() {
        let len = usize::from(b % 64) + 1;
        // Every other AU claims bytes past the end when `ctl` says so (a corrupt index).
        let claimed = if ctl & 1 == 1 && k % 5 == 4 {
            data.len()
        } else {
            offset
        };
        samples.push(Sample {
            offset: claimed as u64,
            len: len as u32,
            dts: 1024 * k as u64,
            cts_offset: 0,
            sync: true,
        });
        offset = (offset + len * 3) % data.len().max(1);
    }
    if samples.is_empty() {
        return;
    }
    let aac = Codec::Aac(crate::media::track::AacConfig {
        audio_specific_config: vec![0x11, 0x90],
        object_type: 2,
        sample_rate_hz: 48_000,
        channels: 2,
    });
    let Ok(mut p) = Packetizer::new(&aac, budget) else {
        return;
    };
    let index = u64::from(ctl % 8);
    let n = p.samples_per_packet(&samples, index, 48_000);
    assert!((1..=aac::MAX_AUS_PER_PACKET).contains(&n) && n <= samples.len());
    p.begin_samples(&samples[..n], 0);
    while let Ok(Some(spec)) = p.next_packet(data) {
        assert!(spec.payload_len() <= budget, "payload over budget");
        if n > 1 {
            assert!(spec.marker, "whole AUs carry the marker");
            let body = body_slices(&spec, data, &[], &samples).expect("validated AUs resolve");
            let total: usize = body.as_slices().iter().map(|b| b.len()).sum();
            assert_eq!(total, spec.body_len as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_spec_is_small() {
        assert!(std::mem::size_of::<PacketSpec>() <= 40);
    }

    #[test]
    fn equal_fragments() {
        assert_eq!(equal_fragment_size(100, 100), 100);
        assert_eq!(equal_fragment_size(101, 100), 51);
        assert_eq!(equal_fragment_size(200, 100), 100);
        assert_eq!(equal_fragment_size(201, 100), 67);
        assert_eq!(equal_fragment_size(1, 100), 1);
        assert_eq!(equal_fragment_size(0, 100), 1);
    }

    #[test]
    fn budget_limits() {
        assert_eq!(check_budget(63), Err(PacketizeError::BudgetTooSmall));
        assert_eq!(check_budget(64), Ok(()));
        assert_eq!(
            check_budget(MAX_PAYLOAD_BUDGET + 1),
            Err(PacketizeError::BudgetTooLarge)
        );
    }

    #[test]
    fn payload_bytes_out_of_range_does_not_panic() {
        let spec = PacketSpec {
            payload_header: {
                let mut h = [0; MAX_PAYLOAD_HEADER];
                h[..4].copy_from_slice(&[1, 2, 3, 4]);
                h
            },
            payload_header_len: 2,
            body_source: BodySource::Media,
            body_offset: 10,
            body_len: 10,
            marker: false,
        };
        assert_eq!(payload_bytes(&spec, &[0; 5], &[], &[]), vec![1, 2]);
        assert_eq!(payload_bytes(&spec, &[7; 20], &[], &[]).len(), 12);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any bytes as a codec description and sample: no panic (see [`fuzz_packetize`]).
        #[test]
        fn any_input_packetizes_without_panicking(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)
        ) {
            fuzz_packetize(&data);
        }
    }

    #[test]
    fn fuzz_smoke() {
        fuzz_packetize(&[0x80, 0, 0, 0, 0]);
        fuzz_packetize(&[0x81, 0, 0, 0, 5, 0x65]);
        fuzz_packetize(&[0x02, 0xff, 0xff, 0xff, 0xff]);
    }
}
