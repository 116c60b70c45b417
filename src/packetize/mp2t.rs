//! RFC 2250 §2 MPEG-2 transport stream packetizer (RTP/MP2T, static payload type 33 of
//! RFC 3551 §6): one run of whole 188-byte TS packets (one sample of a
//! [`crate::media::track::Codec::Mp2t`] track, at most seven, built by `media::ts`) per RTP
//! packet, sent as is from the mapping, with no payload header.
//!
//! ```text
//! RFC 2250 §2 payload:
//! +-----------------------------------------------+
//! |               RTP header (RFC 3550)           |
//! +-----------------------------------------------+
//! | TS packet 1 (188 bytes) | ... | TS packet N   |   N ≤ 7
//! +-----------------------------------------------+
//! ```
//!
//! - RFC 2250 §2: "The RTP payload will contain an integral number of MPEG transport
//!   packets", so a run is never split: its 1316 bytes are sent whole even above a smaller
//!   payload budget (7 × 188 with IP, UDP and RTP headers is 1356 bytes, inside a 1500-byte
//!   MTU, as live555 and VLC send it). A sample that is not whole packets is refused.
//! - RFC 2250 §2: "Timestamp: 32 bit 90K Hz timestamp representing the target transmission
//!   time for the first byte of the packet payload" — the sample's time, which `media::ts`
//!   interpolates from the PCRs.
//! - RFC 2250 §2: "M bit: Set to 1 whenever the timestamp is discontinuous" — the index keeps
//!   the timeline continuous across PCR jumps, so the marker is always clear.

use super::{sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER};
use crate::media::track::Sample;
use crate::media::ts::{MAX_RUN_PACKETS, TS_PACKET_LEN};

/// Packetizes a transport stream track, one run of TS packets per RTP packet.
#[derive(Debug, Clone)]
pub struct Mp2tPacketizer {
    budget: usize,
    pending: Option<Sample>,
}

impl Mp2tPacketizer {
    /// A packetizer built with `payload_budget_bytes` (validated; runs are sent whole, see
    /// the module doc).
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
        let len = end - start;
        if len == 0 || !len.is_multiple_of(TS_PACKET_LEN) || len > MAX_RUN_PACKETS * TS_PACKET_LEN {
            return Err(PacketizeError::NotWholeTsPackets);
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
    fn one_whole_run_per_packet_marker_clear() {
        let media = vec![0x47u8; 188 * 8];
        let mut p = Mp2tPacketizer::new(1200).unwrap();
        p.begin_sample(sample(188, 7 * 188));
        let spec = p.next_packet(&media).unwrap().unwrap();
        assert_eq!((spec.body_offset, spec.body_len), (188, 1316));
        assert_eq!(spec.payload_header_len, 0);
        assert!(!spec.marker);
        assert_eq!(spec.body_source, BodySource::Media);
        assert_eq!(p.next_packet(&media).unwrap(), None);
    }

    #[test]
    fn refuses_partial_packets_and_out_of_range() {
        let media = vec![0x47u8; 188 * 8];
        let mut p = Mp2tPacketizer::new(1200).unwrap();
        for (off, len) in [(0, 100), (0, 8 * 188), (0, 0)] {
            p.begin_sample(sample(off, len));
            assert_eq!(
                p.next_packet(&media),
                Err(PacketizeError::NotWholeTsPackets)
            );
            assert_eq!(p.next_packet(&media), Ok(None));
        }
        p.begin_sample(sample(188 * 7, 2 * 188));
        assert_eq!(p.next_packet(&media), Err(PacketizeError::SampleOutOfRange));
    }
}
