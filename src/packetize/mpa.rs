//! RFC 2250 §3.5 MPEG audio packetizer (`MPA`, static payload type 14, RFC 3551 §4.5.13):
//! each packet is the 4-byte MPEG audio-specific header, then the sample's bytes (one or more
//! whole MPEG audio frames) or, for a sample larger than the payload budget, a fragment of it.
//!
//! ```text
//! RFC 2250 §3.5 MPEG Audio-specific header:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             MBZ               |          Frag_offset          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! - RFC 2250 §3.5: "Frag_offset: Byte offset into the audio frame for the data in this
//!   packet." Whole samples have offset 0; a sample over the budget is cut into equal pieces
//!   (every piece but the last the same size, as the other packetizers do for UDP GSO), each
//!   with its byte offset. A sample is at most 64 KiB - 1 so the offset fits 16 bits; a larger
//!   one is refused ([`PacketizeError::MpegAudioFrameTooLarge`]). MPEG audio frames are
//!   under 3 kB (free format aside): a 128 kbit/s 48 kHz MP3 frame is 384 bytes.
//! - One sample per RTP packet: a sample is one frame in MP4 and in ffmpeg's Matroska, so every
//!   packet holds one whole frame (or a fragment of one). RFC 2250 §3.5 allows several frames
//!   per packet; not aggregating costs ~12 bytes of RTP header per 26 ms frame.
//! - RFC 3551 §4.5.13 / RFC 2250 §3.2: the timestamp is the frame's presentation time at
//!   90 kHz ([`crate::media::track::Codec::clock_rate_hz`]); every fragment of a frame carries
//!   the same timestamp.
//! - Marker bit, RFC 3551 §4.5.13 ("the marker bit ... SHOULD be set for the first packet
//!   after a silence period" is the generic audio rule of §4.1): files carry no silence
//!   suppression, so it is never set.

use super::{
    equal_fragment_size, sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER,
};
use crate::media::track::Sample;

/// Length of the RFC 2250 §3.5 MPEG audio-specific header.
pub const MPA_HEADER_LEN: usize = 4;

/// Packetizes an MPEG audio track (RFC 2250 §3.5), one sample per packet or fragmented.
#[derive(Debug, Clone)]
pub struct MpaPacketizer {
    budget: usize,
    pending: Option<Sample>,
    /// Bytes of the pending sample already sent.
    sent: u32,
}

impl MpaPacketizer {
    /// A packetizer whose packets carry at most `payload_budget_bytes` (already validated).
    pub fn new(payload_budget_bytes: usize) -> Result<Self, PacketizeError> {
        super::check_budget(payload_budget_bytes)?;
        Ok(Self {
            budget: payload_budget_bytes,
            pending: None,
            sent: 0,
        })
    }

    /// Starts a sample; an unfinished previous one is dropped.
    pub fn begin_sample(&mut self, sample: Sample) {
        self.pending = Some(sample);
        self.sent = 0;
    }

    /// The next packet of the current sample, then `Ok(None)`. Allocates nothing.
    #[inline]
    pub fn next_packet(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        let Some(sample) = self.pending else {
            return Ok(None);
        };
        if self.sent == 0 {
            if let Err(e) = sample_range(&sample, media) {
                self.pending = None;
                return Err(e);
            }
            if sample.len == 0 || sample.len > u32::from(u16::MAX) {
                self.pending = None;
                return Err(PacketizeError::MpegAudioFrameTooLarge);
            }
        }
        // check_budget guarantees budget >= 64 > MPA_HEADER_LEN.
        let room = (self.budget - MPA_HEADER_LEN) as u32;
        let piece = equal_fragment_size(sample.len, room);
        let len = piece.min(sample.len - self.sent);
        let offset = self.sent;
        self.sent += len;
        if self.sent >= sample.len {
            self.pending = None;
        }
        let mut payload_header = [0; MAX_PAYLOAD_HEADER];
        // RFC 2250 §3.5: 16 bits MBZ, then Frag_offset (< 65536: checked above).
        payload_header[2..4].copy_from_slice(&(offset as u16).to_be_bytes());
        Ok(Some(PacketSpec {
            payload_header,
            payload_header_len: MPA_HEADER_LEN as u8,
            body_source: BodySource::Media,
            body_offset: sample.offset + u64::from(offset),
            body_len: len,
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
    use crate::media::track::{Codec, MpegAudioConfig};
    use crate::packetize::{payload_bytes, Packetizer};

    fn sample(offset: u64, len: u32) -> Sample {
        Sample {
            offset,
            len,
            dts: 0,
            cts_offset: 0,
            sync: true,
        }
    }

    fn codec() -> Codec {
        Codec::MpegAudio(MpegAudioConfig {
            sample_rate_hz: 44_100,
            channels: 2,
        })
    }

    /// RFC 2250 §3.5: a frame within the budget is one packet, header 0, bytes unchanged.
    #[test]
    fn whole_frame_is_one_packet_with_zero_header() {
        let media: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        assert_eq!(codec().clock_rate_hz(), 90_000);
        let mut p = Packetizer::new(&codec(), 1200).expect("packetizer");
        p.begin_sample(sample(10, 417));
        let spec = p.next_packet(&media).expect("ok").expect("packet");
        assert!(!spec.marker);
        let bytes = payload_bytes(&spec, &media, &[], &[]);
        assert_eq!(&bytes[..4], &[0, 0, 0, 0]);
        assert_eq!(&bytes[4..], &media[10..427]);
        assert_eq!(p.next_packet(&media), Ok(None));
    }

    /// RFC 2250 §3.5: a frame over the budget is fragmented, Frag_offset = byte offset, the
    /// pieces reassemble to the frame, each within the budget.
    #[test]
    fn large_frame_is_fragmented_with_offsets() {
        let media: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut p = MpaPacketizer::new(100).expect("packetizer");
        p.begin_sample(sample(3, 1000));
        let mut joined = Vec::new();
        while let Some(spec) = p.next_packet(&media).expect("ok") {
            assert!(spec.payload_len() <= 100);
            let bytes = payload_bytes(&spec, &media, &[], &[]);
            assert_eq!(&bytes[..2], &[0, 0]);
            let off = u16::from_be_bytes([bytes[2], bytes[3]]);
            assert_eq!(usize::from(off), joined.len());
            joined.extend_from_slice(&bytes[4..]);
        }
        assert_eq!(joined, media[3..1003]);
    }

    /// Corrupt indexes: a sample outside the media, empty, or too large for a 16-bit offset
    /// is refused and ends the sample.
    #[test]
    fn bad_samples_are_refused() {
        let media = vec![0u8; 70_000];
        let mut p = MpaPacketizer::new(1200).expect("packetizer");
        p.begin_sample(sample(69_990, 20));
        assert_eq!(p.next_packet(&media), Err(PacketizeError::SampleOutOfRange));
        assert_eq!(p.next_packet(&media), Ok(None));
        p.begin_sample(sample(0, 65_536));
        assert_eq!(
            p.next_packet(&media),
            Err(PacketizeError::MpegAudioFrameTooLarge)
        );
        assert_eq!(p.next_packet(&media), Ok(None));
        p.begin_sample(sample(0, 0));
        assert!(p.next_packet(&media).is_err());
        assert_eq!(p.next_packet(&media), Ok(None));
    }
}
