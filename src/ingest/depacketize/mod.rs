//! RTP packets of one announced track → access units ([`Frame`]s), sans-IO: the caller hands
//! in whole packets as they arrive (UDP datagrams or interleaved `$` frames) and gets frames
//! through a callback that borrows them; nothing here touches a socket or a clock.
//!
//! The shared RTP layer: the fixed header, CSRC list, header extension and padding (RFC 3550
//! §5.1, §5.3.1, via [`crate::wire::rtp::parse_rtp_header`]); the payload type check; the
//! extended sequence number with loss counted from gaps and late (reordered or duplicated)
//! packets dropped (RFC 3550 §A.1); the 32-bit timestamp unfolded to an `i64`; the
//! interarrival jitter when the caller gives arrival times (RFC 3550 §A.8). Then per codec:
//! H.264 (RFC 6184, `h264`), AAC (RFC 3640, `aac`) and AAC in LATM (RFC 6416, `latm`).
//!
//! Faults drop frames, never the stream: a frame with a lost packet, a malformed payload or a
//! size over [`MAX_ACCESS_UNIT`] is counted by [`DropReason`] in [`DepacketizeStats`] and the
//! next frame starts clean. Memory is bounded: one buffer per depacketizer for the frame being
//! assembled, reused, never past [`MAX_ACCESS_UNIT`]. Not done here: reordering (a late packet
//! is dropped, which costs its frame), RTCP, SRTP, the interleaved packetization mode.

mod aac;
mod h264;
mod latm;

#[cfg(test)]
mod tests;

use super::sdp::{AnnouncedTrack, PayloadFormat};
use super::{DropReason, Frame, MAX_ACCESS_UNIT};
use crate::media::track::H264Config;
use crate::wire::rtp::parse_rtp_header;

/// RFC 3550 §A.1 `MAX_DROPOUT`: a forward jump of at least this many sequence numbers is
/// not loss but a restarted or foreign sender, believed only when the next packet follows it.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 §A.1 `MAX_MISORDER`: packets up to this far behind the highest are late.
const MAX_MISORDER: u16 = 100;

/// What became of one pushed packet (frames come out through the callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The packet was taken into the stream (its frame may still be dropped).
    Accepted,
    /// Not an RTP version 2 packet, or its lengths are inconsistent (RFC 3550 §5.1).
    NotRtp,
    /// A payload type other than the track's (RFC 3550 §5.1 PT); ignored.
    WrongPayloadType,
    /// A duplicate, or older than the highest sequence number seen; dropped.
    Late,
    /// A sequence number far from the stream's (RFC 3550 §A.1 `MAX_DROPOUT`); dropped unless
    /// the next packet follows it, which restarts the sequence there.
    SequenceJump,
}

/// Counters of one depacketizer, for the caller's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DepacketizeStats {
    /// Packets pushed, whatever became of them.
    pub packets: u64,
    /// Packets that did not parse as RTP.
    pub not_rtp: u64,
    /// Packets with another payload type.
    pub wrong_payload_type: u64,
    /// Sequence numbers skipped by gaps (a late packet that fills one is counted here too).
    pub lost: u64,
    /// Late packets (reordered or duplicated), dropped.
    pub reordered: u64,
    /// Packets dropped for a sequence jump, and sequence restarts that followed.
    pub sequence_jumps: u64,
    /// Changes of SSRC (a new sender on the same track); the sequence restarts.
    pub ssrc_changes: u64,
    /// Frames emitted.
    pub frames: u64,
    /// Frames dropped, per reason in the order of [`DropReason::ALL`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Highest extended sequence number seen (RFC 3550 §A.1: cycles << 16 | max_seq).
    pub extended_highest_seq: u64,
    /// Interarrival jitter estimate in RTP clock units (RFC 3550 §A.8), if arrival times
    /// were given.
    pub jitter_rtp_units: u32,
}

impl DepacketizeStats {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[drop_index(reason)]
    }

    /// Counts one dropped frame.
    fn drop_frame(&mut self, reason: DropReason) {
        self.dropped[drop_index(reason)] += 1;
    }
}

/// The position of `reason` in [`DropReason::ALL`].
fn drop_index(reason: DropReason) -> usize {
    match reason {
        DropReason::Incomplete => 0,
        DropReason::Malformed => 1,
        DropReason::TooLarge => 2,
        DropReason::Flood => 3,
        DropReason::ReaderStalled => 4,
    }
}

/// What the codec layers need for each packet besides its payload.
struct Ctx<'e> {
    /// The track index frames carry.
    track: usize,
    /// The counters.
    stats: &'e mut DepacketizeStats,
    /// Where frames go.
    emit: &'e mut dyn FnMut(Frame<'_>),
}

impl Ctx<'_> {
    /// Hands a complete frame to the caller and counts it.
    fn emit(&mut self, frame: Frame<'_>) {
        self.stats.frames += 1;
        (self.emit)(frame);
    }
}

/// The RFC 3550 §A.1 sequence state: the highest sequence number and its wrap count.
#[derive(Debug, Clone, Copy, Default)]
struct SequenceTracker {
    /// False until the first packet.
    started: bool,
    /// Highest sequence number seen.
    max_seq: u16,
    /// Wraps of the sequence number (`cycles` in §A.1, here counted by one per wrap).
    cycles: u64,
    /// After a jump: the number that would confirm it (`bad_seq`).
    bad_seq: Option<u16>,
}

/// The sequence tracker's verdict on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqVerdict {
    /// The first packet.
    First,
    /// The packet after a jump confirmed it: a new sequence.
    Restart,
    /// In order, after `lost` missing sequence numbers.
    InOrder {
        /// Sequence numbers skipped.
        lost: u16,
    },
    /// A duplicate or late packet.
    Late,
    /// An unconfirmed jump.
    Jump,
}

impl SequenceTracker {
    /// Classifies `seq` and advances the state (RFC 3550 §A.1 `update_seq`, without the
    /// probation, which a publisher that already answered RTSP does not need).
    fn update(&mut self, seq: u16) -> SeqVerdict {
        if !self.started {
            *self = SequenceTracker {
                started: true,
                max_seq: seq,
                cycles: 0,
                bad_seq: None,
            };
            return SeqVerdict::First;
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta == 0 {
            return SeqVerdict::Late;
        }
        if delta < MAX_DROPOUT {
            // In order, with a permissible gap; a smaller number means the 16 bits wrapped.
            if seq < self.max_seq {
                self.cycles += 1;
            }
            self.max_seq = seq;
            self.bad_seq = None;
            return SeqVerdict::InOrder { lost: delta - 1 };
        }
        if delta <= u16::MAX - MAX_MISORDER {
            // §A.1: "the sequence number made a very large jump"; two sequential packets
            // mean the sender restarted.
            if self.bad_seq == Some(seq) {
                self.max_seq = seq;
                self.bad_seq = None;
                return SeqVerdict::Restart;
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return SeqVerdict::Jump;
        }
        SeqVerdict::Late
    }

    /// The extended highest sequence number.
    fn extended(&self) -> u64 {
        (self.cycles << 16) | u64::from(self.max_seq)
    }
}

/// Unfolds 32-bit RTP timestamps into a 64-bit timeline: each timestamp is placed within
/// ±2^31 ticks of the previous one, so wraps forward and steps back both come out right.
#[derive(Debug, Clone, Copy, Default)]
struct TimestampUnfolder {
    /// The previous raw timestamp and its unfolded value.
    last: Option<(u32, i64)>,
}

impl TimestampUnfolder {
    /// The unfolded value of `ts`.
    fn unfold(&mut self, ts: u32) -> i64 {
        let value = match self.last {
            None => i64::from(ts),
            // Reinterpreting the wrapped difference as signed picks the nearer direction.
            Some((raw, unfolded)) => unfolded + i64::from(ts.wrapping_sub(raw) as i32),
        };
        self.last = Some((ts, value));
        value
    }
}

/// RFC 3550 §A.8 interarrival jitter, kept scaled by 16 as the RFC's integer version does.
#[derive(Debug, Clone, Copy, Default)]
struct Jitter {
    /// The previous packet's relative transit time.
    last_transit: Option<u32>,
    /// The estimate × 16.
    jitter_x16: u32,
}

impl Jitter {
    /// Updates the estimate with a packet of RTP timestamp `rtp_ts` that arrived at
    /// `arrival` (in the same clock) and returns the estimate in clock units.
    fn update(&mut self, arrival: u32, rtp_ts: u32) -> u32 {
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(last) = self.last_transit {
            let d = transit.wrapping_sub(last) as i32;
            let d = d.unsigned_abs();
            //= https://www.rfc-editor.org/rfc/rfc3550#appendix-A.8
            //# jitter += d - ((jitter + 8) >> 4);
            self.jitter_x16 = self
                .jitter_x16
                .saturating_add(d)
                .saturating_sub((self.jitter_x16.saturating_add(8)) >> 4);
        }
        self.last_transit = Some(transit);
        self.jitter_x16 >> 4
    }
}

/// The codec-specific half of a depacketizer.
#[derive(Debug)]
enum Codec {
    /// RFC 6184.
    H264(h264::H264Depacketizer),
    /// RFC 3640.
    Aac(aac::AacDepacketizer),
    /// RFC 6416.
    Latm(latm::LatmDepacketizer),
    /// RFC 7587.
    Opus,
    /// A codec live ingest does not carry (H.265: the announce is refused before a
    /// depacketizer is built); every packet is dropped as malformed.
    Refused,
}

/// Turns the RTP packets of one track into frames: the RTP layer shared by every codec and
/// the codec's reassembly. One per track of a publisher.
#[derive(Debug)]
pub struct Depacketizer {
    /// The track index frames carry.
    track: usize,
    /// The payload type the track was announced with.
    payload_type: u8,
    /// The SSRC of the current sender.
    ssrc: Option<u32>,
    /// Sequence state.
    seq: SequenceTracker,
    /// Timestamp unfolding.
    clock: TimestampUnfolder,
    /// Jitter estimate.
    jitter: Jitter,
    /// Counters.
    stats: DepacketizeStats,
    /// Reassembly.
    codec: Codec,
}

impl Depacketizer {
    /// A depacketizer for `track`, whose frames carry the index `track_index`.
    pub fn new(track_index: usize, track: &AnnouncedTrack) -> Self {
        let codec = match (&track.format, &track.codec) {
            (PayloadFormat::Aac(format), crate::media::track::Codec::Aac(_)) => {
                Codec::Aac(aac::AacDepacketizer::new(*format))
            }
            (PayloadFormat::Latm(format), crate::media::track::Codec::Aac(_)) => {
                Codec::Latm(latm::LatmDepacketizer::new(*format))
            }
            (_, crate::media::track::Codec::H264(config)) => {
                Codec::H264(h264::H264Depacketizer::new(config))
            }
            // An AAC codec always comes with an AAC format from `sdp`; if a caller pairs it
            // otherwise, the AAC-hbr defaults are the only sensible reading.
            (
                PayloadFormat::H264 { .. } | PayloadFormat::Opus,
                crate::media::track::Codec::Aac(_),
            ) => Codec::Aac(aac::AacDepacketizer::new(aac::AAC_HBR)),
            (_, crate::media::track::Codec::Opus(_)) => Codec::Opus,
            (
                _,
                crate::media::track::Codec::H265(_)
                | crate::media::track::Codec::Mp2t(_)
                | crate::media::track::Codec::Vp8(_)
                | crate::media::track::Codec::Vp9(_)
                | crate::media::track::Codec::MpegAudio(_)
                | crate::media::track::Codec::G711(_),
            ) => Codec::Refused,
        };
        Depacketizer {
            track: track_index,
            payload_type: track.payload_type,
            ssrc: None,
            seq: SequenceTracker::default(),
            clock: TimestampUnfolder::default(),
            jitter: Jitter::default(),
            stats: DepacketizeStats::default(),
            codec,
        }
    }

    /// Takes one whole RTP packet (header included) and calls `emit` for each frame it
    /// completes. Same as [`Depacketizer::push_at`] without an arrival time.
    pub fn push(&mut self, packet: &[u8], emit: &mut dyn FnMut(Frame<'_>)) -> PushOutcome {
        self.push_at(packet, None, emit)
    }

    /// Takes one whole RTP packet that arrived at `arrival_rtp_units` (the receiver's clock
    /// converted to the track's RTP clock rate, any origin; `None` if unknown, then jitter
    /// is not updated) and calls `emit` for each frame it completes.
    pub fn push_at(
        &mut self,
        packet: &[u8],
        arrival_rtp_units: Option<u32>,
        emit: &mut dyn FnMut(Frame<'_>),
    ) -> PushOutcome {
        self.stats.packets += 1;
        let Some(header) = parse_rtp_header(packet) else {
            self.stats.not_rtp += 1;
            return PushOutcome::NotRtp;
        };
        if header.payload_type != self.payload_type {
            self.stats.wrong_payload_type += 1;
            return PushOutcome::WrongPayloadType;
        }
        let mut gap = false;
        if self.ssrc != Some(header.ssrc) {
            if self.ssrc.is_some() {
                self.stats.ssrc_changes += 1;
                gap = true;
            }
            self.ssrc = Some(header.ssrc);
            self.seq = SequenceTracker::default();
        }
        match self.seq.update(header.sequence_number) {
            SeqVerdict::First => {}
            SeqVerdict::Restart => {
                self.stats.sequence_jumps += 1;
                gap = true;
            }
            SeqVerdict::InOrder { lost } => {
                if lost > 0 {
                    self.stats.lost += u64::from(lost);
                    gap = true;
                }
            }
            SeqVerdict::Late => {
                self.stats.reordered += 1;
                return PushOutcome::Late;
            }
            SeqVerdict::Jump => {
                self.stats.sequence_jumps += 1;
                return PushOutcome::SequenceJump;
            }
        }
        self.stats.extended_highest_seq = self.seq.extended();
        let ts = self.clock.unfold(header.timestamp);
        if let Some(arrival) = arrival_rtp_units {
            self.stats.jitter_rtp_units = self.jitter.update(arrival, header.timestamp);
        }
        let end = header.payload_offset + header.payload_len;
        let payload = packet.get(header.payload_offset..end).unwrap_or_default();
        let mut ctx = Ctx {
            track: self.track,
            stats: &mut self.stats,
            emit,
        };
        match &mut self.codec {
            Codec::H264(d) => {
                if gap {
                    d.on_gap();
                }
                d.push(payload, ts, header.marker, &mut ctx);
            }
            Codec::Aac(d) => {
                if gap {
                    d.on_gap(&mut ctx);
                }
                d.push(payload, ts, header.marker, &mut ctx);
            }
            Codec::Latm(d) => {
                if gap {
                    d.on_gap(&mut ctx);
                }
                d.push(payload, ts, header.marker, &mut ctx);
            }
            // RFC 7587 §4.2: the payload is exactly one Opus packet (RFC 6716 §3), a frame
            // of its own, every one a random access point. An empty payload carries nothing
            // (§4.2 forbids it; a sender's DTX sends none at all).
            Codec::Opus if payload.is_empty() => ctx.stats.drop_frame(DropReason::Malformed),
            Codec::Refused => ctx.stats.drop_frame(DropReason::Malformed),
            Codec::Opus => ctx.emit(Frame {
                track: self.track,
                pts: ts,
                dts: ts,
                sync: true,
                data: payload,
            }),
        }
        PushOutcome::Accepted
    }

    /// The SSRC of the current sender (`None` before the first packet).
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// The sender's SSRC and, for a 32-bit RTP timestamp it names (an RTCP sender report's,
    /// RFC 3550 §6.4.1), the unfolded timestamp nearest the stream's last, on the scale of the
    /// frames' `pts`. `None` before the first packet.
    pub fn unfold_report(&self, rtp_timestamp: u32) -> Option<(u32, i64)> {
        let (raw, unfolded) = self.clock.last?;
        let ssrc = self.ssrc?;
        Some((
            ssrc,
            unfolded + i64::from(rtp_timestamp.wrapping_sub(raw) as i32),
        ))
    }

    /// The counters so far.
    pub fn stats(&self) -> &DepacketizeStats {
        &self.stats
    }

    /// For H.264: a configuration with the SPS and PPS last seen in-band, if they differ from
    /// the announced ones or the previous call's (each change is reported once), so the
    /// caller can update the track. Always `None` for AAC.
    pub fn parameter_sets_changed(&mut self) -> Option<H264Config> {
        match &mut self.codec {
            Codec::H264(d) => d.parameter_sets_changed(),
            Codec::Aac(_) | Codec::Latm(_) | Codec::Opus | Codec::Refused => None,
        }
    }

    /// Bytes reserved for assembling frames (never more than [`MAX_ACCESS_UNIT`]).
    pub fn buffer_capacity(&self) -> usize {
        match &self.codec {
            Codec::H264(d) => d.buffer_capacity(),
            Codec::Aac(d) => d.buffer_capacity(),
            Codec::Latm(d) => d.buffer_capacity(),
            // Frames are the packet's payload, never assembled.
            Codec::Opus | Codec::Refused => 0,
        }
    }
}

/// Makes room for `extra` more bytes in `buf` without ever reserving past
/// [`MAX_ACCESS_UNIT`]; the caller has checked that `buf.len() + extra` fits. Doubling keeps
/// the steady state free of reallocation once the buffer holds the largest frame.
fn reserve_capped(buf: &mut Vec<u8>, extra: usize) {
    let need = buf.len() + extra;
    if need > buf.capacity() {
        let target = need
            .max(buf.capacity().saturating_mul(2))
            .min(MAX_ACCESS_UNIT)
            .max(need);
        buf.reserve_exact(target - buf.len());
    }
}

/// Fuzz entry point: the first byte picks the codec (bit 0 clear: H.264, or LATM with bit 1
/// set) and the AU-header layout or LATM subframes; the rest is a
/// series of packets, each `flags, len, payload[len]`: the flags say whether to write a valid
/// RTP header (marker, sequence step, timestamp step taken from them) or push the bytes raw.
/// Checks: no panic, frames within [`MAX_ACCESS_UNIT`] and on the right track, counters agree.
#[cfg(any(test, fuzzing))]
pub fn fuzz_depacketize(data: &[u8]) {
    use crate::ingest::sdp::AuHeaderFormat;
    use crate::media::track::{AacConfig, Codec as TrackCodec, TrackKind};
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let latm = AnnouncedTrack {
        control: String::new(),
        payload_type: 96,
        codec: TrackCodec::Aac(AacConfig {
            audio_specific_config: vec![0x11, 0x90],
            object_type: 2,
            sample_rate_hz: 48_000,
            channels: 2,
        }),
        kind: TrackKind::Audio,
        format: PayloadFormat::Latm(crate::ingest::sdp::LatmFormat {
            sub_frames: ((ctl >> 2) & 3) + 1,
            frame_length: 1024,
        }),
    };
    let track = if ctl & 3 == 2 {
        latm
    } else if ctl & 1 == 0 {
        AnnouncedTrack {
            control: String::new(),
            payload_type: 96,
            codec: TrackCodec::H264(H264Config {
                profile_idc: 100,
                profile_compat: 0,
                level_idc: 30,
                nal_length_size: 4,
                sps: vec![vec![0x67, 0x64, 0x00, 0x1e]],
                pps: vec![vec![0x68, 0xee, 0x3c, 0x80]],
                width: 0,
                height: 0,
            }),
            kind: TrackKind::Video,
            format: PayloadFormat::H264 {
                packetization_mode: 1,
            },
        }
    } else {
        let wide = ctl & 2 != 0;
        AnnouncedTrack {
            control: String::new(),
            payload_type: 96,
            codec: TrackCodec::Aac(AacConfig {
                audio_specific_config: vec![0x11, 0x90],
                object_type: 2,
                sample_rate_hz: 48_000,
                channels: 2,
            }),
            kind: TrackKind::Audio,
            format: PayloadFormat::Aac(AuHeaderFormat {
                size_length: if wide { 30 } else { 13 },
                index_length: 3,
                index_delta_length: 3,
                cts_delta_length: if ctl & 4 != 0 { 7 } else { 0 },
                dts_delta_length: if ctl & 8 != 0 { 5 } else { 0 },
                random_access_indication: ctl & 16 != 0,
                stream_state_indication: (ctl >> 5) & 3,
                auxiliary_data_size_length: if ctl & 0x80 != 0 { 9 } else { 0 },
                frame_length: 1024,
            }),
        }
    };
    let mut d = Depacketizer::new(3, &track);
    let mut emitted = 0u64;
    let mut seq = 0u16;
    let mut ts = 0u32;
    let mut packet = Vec::new();
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        packet.clear();
        if flags & 0x80 == 0 {
            seq = seq.wrapping_add(u16::from(flags & 3));
            ts = ts.wrapping_add(u32::from(flags & 0x0c) * 1000);
            let marker = flags & 0x10 != 0;
            packet.extend_from_slice(&[0x80, u8::from(marker) << 7 | 96]);
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&ts.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0, u8::from(flags & 0x20 != 0)]);
        }
        packet.extend_from_slice(payload);
        d.push_at(&packet, Some(u32::from(*flags) << 8), &mut |f| {
            assert_eq!(f.track, 3);
            assert!(f.data.len() <= MAX_ACCESS_UNIT && !f.data.is_empty());
            assert_eq!(f.pts, f.dts);
            emitted += 1;
        });
    }
    assert_eq!(d.stats().frames, emitted);
    assert!(d.buffer_capacity() <= MAX_ACCESS_UNIT);
    let _ = d.parameter_sets_changed();
}
