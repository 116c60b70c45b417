//! RFC 7587 Opus packetizer: one Opus packet (one MP4 sample) per RTP packet, no payload
//! header.
//!
//! ```text
//! RFC 7587 §4.2 payload:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     RTP header (RFC 3550)                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            one Opus packet (RFC 6716 §3), the whole sample    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! - RFC 7587 §4.2: "The payload MUST contain exactly one Opus packet", so a sample is never
//!   split or aggregated; one larger than the payload budget is refused
//!   ([`PacketizeError::OpusPacketOverBudget`]). Opus packets are at most 1275 bytes per
//!   frame (RFC 6716 §3.4 R2); a 20 ms frame at 64 kbit/s is 160.
//! - RFC 7587 §4.1: the RTP clock is 48 kHz whatever the input rate
//!   ([`crate::media::track::Codec::clock_rate_hz`] says so; the shard rescales the track's
//!   timescale to it, as for every codec).
//! - Marker bit, RFC 7587 §4.1: "The M bit is set to one for the first packet sent after a
//!   DTX period; otherwise it is set to zero." Samples of an MP4 track follow each other
//!   without gaps (the renditions we write never use DTX), so it is never set here. A track
//!   with DTX gaps would still play: receivers use the marker only as a jitter-buffer hint.

use super::{sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER};
use crate::media::track::Sample;

/// Packetizes an Opus track, one sample per RTP packet (RFC 7587 §4.2).
#[derive(Debug, Clone)]
pub struct OpusPacketizer {
    budget: usize,
    pending: Option<Sample>,
}

impl OpusPacketizer {
    /// A packetizer whose packets carry at most `payload_budget_bytes` (already validated).
    pub fn new(payload_budget_bytes: usize) -> Result<Self, PacketizeError> {
        super::check_budget(payload_budget_bytes)?;
        Ok(Self {
            budget: payload_budget_bytes,
            pending: None,
        })
    }

    /// Starts a sample; an unfinished previous one is dropped.
    pub fn begin_sample(&mut self, sample: Sample) {
        self.pending = Some(sample);
    }

    /// The one packet of the current sample, then `Ok(None)`. Allocates nothing.
    #[inline]
    pub fn next_packet(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        let Some(sample) = self.pending.take() else {
            return Ok(None);
        };
        let (start, end) = sample_range(&sample, media)?;
        if end - start > self.budget {
            return Err(PacketizeError::OpusPacketOverBudget);
        }
        Ok(Some(PacketSpec {
            payload_header: [0; MAX_PAYLOAD_HEADER],
            payload_header_len: 0,
            body_source: BodySource::Media,
            body_offset: sample.offset,
            body_len: sample.len,
            marker: false,
        }))
    }

    /// The payload budget this packetizer was built with.
    pub fn payload_budget(&self) -> usize {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::track::{Codec, OpusConfig};
    use crate::packetize::{payload_bytes, Packetizer};

    fn sample(offset: u64, len: u32, dts: u64) -> Sample {
        Sample {
            offset,
            len,
            dts,
            cts_offset: 0,
            sync: true,
        }
    }

    fn opus_codec() -> Codec {
        Codec::Opus(OpusConfig {
            channels: 2,
            pre_skip: 312,
            input_sample_rate_hz: 44_100,
            output_gain: 0,
            channel_mapping_family: 0,
            channel_mapping_table: Vec::new(),
        })
    }

    /// RFC 7587 §4.1/§4.2 through the generic [`Packetizer`]: one packet per sample, the
    /// sample's bytes unchanged with no payload header, marker clear, 48 kHz clock even for
    /// a 44.1 kHz input.
    #[test]
    fn opus_sample_is_one_packet_without_header_or_marker() {
        let media: Vec<u8> = (0..=255u8).collect();
        let codec = opus_codec();
        assert_eq!(codec.clock_rate_hz(), 48_000);
        let mut p = Packetizer::new(&codec, 1200).expect("packetizer");
        let s = sample(10, 100, 960);
        assert_eq!(p.samples_per_packet(&[s, s], 0, 48_000), 1);
        p.begin_sample(s);
        let spec = p.next_packet(&media).expect("ok").expect("one packet");
        assert!(!spec.marker);
        assert_eq!(spec.payload_header_len, 0);
        assert_eq!(payload_bytes(&spec, &media, &[], &[]), media[10..110]);
        assert_eq!(p.next_packet(&media), Ok(None));
    }

    #[test]
    fn opus_sample_over_budget_or_outside_media_is_refused() {
        let media = vec![0u8; 2000];
        let mut p = OpusPacketizer::new(64).expect("packetizer");
        p.begin_sample(sample(0, 65, 0));
        assert_eq!(
            p.next_packet(&media),
            Err(PacketizeError::OpusPacketOverBudget)
        );
        assert_eq!(p.next_packet(&media), Ok(None));
        p.begin_sample(sample(1990, 20, 0));
        assert_eq!(p.next_packet(&media), Err(PacketizeError::SampleOutOfRange));
        assert_eq!(p.next_packet(&media), Ok(None));
        assert!(OpusPacketizer::new(10).is_err());
    }
}
