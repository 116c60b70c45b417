//! RFC 3551 §4.5.14 G.711 packetizer (`PCMU` / `PCMA`): the payload is the sample's bytes as
//! they are, no payload header.
//!
//! - One sample per RTP packet. The Matroska reader has already cut every block into 20 ms
//!   pieces (RFC 3551 §4.2 default packetization, [`crate::media::g711`]), each its own sample
//!   with its own exact timestamp (RFC 3551 §4.5.14: the clock rate is the sampling rate, one
//!   tick per sample frame), so nothing is fragmented or aggregated here. A sample over the
//!   payload budget (a budget under [`crate::media::g711::MAX_PIECE_BYTES`]) or an empty one is
//!   refused ([`PacketizeError::G711SampleOverBudget`]): splitting it here would give every
//!   packet the same timestamp.
//! - Marker bit, RFC 3551 §4.1: set "in the first packet after a silence period during which
//!   packets have not been transmitted". Files carry no silence suppression, so it is never
//!   set.

use super::{sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER};
use crate::media::track::Sample;

/// Packetizes a G.711 track, one sample per RTP packet (RFC 3551 §4.5.14).
#[derive(Debug, Clone)]
pub struct G711Packetizer {
    budget: usize,
    pending: Option<Sample>,
}

impl G711Packetizer {
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
        if end == start || end - start > self.budget {
            return Err(PacketizeError::G711SampleOverBudget);
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

    fn sample(offset: u64, len: u32) -> Sample {
        Sample {
            offset,
            len,
            dts: 0,
            cts_offset: 0,
            sync: true,
        }
    }

    #[test]
    fn one_packet_per_sample_no_header_no_marker() {
        let media: Vec<u8> = (0..=255u8).collect();
        let mut p = G711Packetizer::new(200).unwrap();
        p.begin_sample(sample(10, 160));
        let spec = p.next_packet(&media).unwrap().unwrap();
        assert_eq!(spec.payload_header_len, 0);
        assert!(!spec.marker);
        assert_eq!((spec.body_offset, spec.body_len), (10, 160));
        assert_eq!(
            super::super::payload_bytes(&spec, &media, &[], &[]),
            media[10..170].to_vec()
        );
        assert_eq!(p.next_packet(&media).unwrap(), None);
        // Over the budget, empty, outside the media: refused, and the sample ends.
        p.begin_sample(sample(0, 201));
        assert_eq!(
            p.next_packet(&media),
            Err(PacketizeError::G711SampleOverBudget)
        );
        assert_eq!(p.next_packet(&media).unwrap(), None);
        p.begin_sample(sample(0, 0));
        assert_eq!(
            p.next_packet(&media),
            Err(PacketizeError::G711SampleOverBudget)
        );
        p.begin_sample(sample(250, 160));
        assert_eq!(p.next_packet(&media), Err(PacketizeError::SampleOutOfRange));
        assert_eq!(p.next_packet(&media).unwrap(), None);
    }
}
