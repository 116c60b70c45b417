//! VP8 (RFC 7741) and VP9 (RFC 9628) packetizer: one frame (one Matroska block) cut into
//! equal pieces, each behind a one-byte payload descriptor, the frame's bytes straight from
//! the mapping.
//!
//! ```text
//! RFC 7741 §4.2, VP8 payload descriptor     RFC 9628 §4.2, VP9 payload descriptor
//!   0 1 2 3 4 5 6 7                            0 1 2 3 4 5 6 7
//!  +-+-+-+-+-+-+-+-+                          +-+-+-+-+-+-+-+-+
//!  |X|R|N|S|R| PID |                          |I|P|L|F|B|E|V|Z|
//!  +-+-+-+-+-+-+-+-+                          +-+-+-+-+-+-+-+-+
//! ```
//!
//! - VP8: `X` = 0 (no picture id, TL0PICIDX or key index: all optional, §4.2), `N` = 0 (we
//!   cannot tell whether a frame is referenced without decoding it), `S` = 1 on the first
//!   packet of the frame only, `PID` = 0 (the frame is not split at its partition
//!   boundaries, which §4.2 allows: the partition index only informs). §4.1: the marker bit
//!   is set on the last packet of the frame.
//! - VP9: `I` = 0 (no picture id), `P` = 1 unless the frame is a keyframe (inter-picture
//!   predicted), `L` = 0 and `F` = 0 (one layer, non-flexible mode: no layer indices or
//!   reference indices follow), `B` = 1 on the first packet of the frame, `E` = 1 on its
//!   last, `V` = 0 (no scalability structure: a single-layer stream needs none; the frame
//!   header carries the size), `Z` = 0. §4.1: the marker bit is set on the last packet of the
//!   picture. A block holding a superframe (a hidden alt-ref frame and the shown frame,
//!   as libvpx writes them) travels as one picture, which is what decoders reassemble and
//!   expect (ffmpeg, libvpx).
//! - Both: the frame is cut into pieces of equal size (the last may be shorter) so a
//!   frame's packets leave in one UDP GSO train, as H.264 FU-A does.

use super::{
    equal_fragment_size, sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER,
};
use crate::media::track::Sample;

/// Which payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpxFormat {
    /// RFC 7741.
    Vp8,
    /// RFC 9628.
    Vp9,
}

/// Bytes of the payload descriptor we write.
const DESCRIPTOR_LEN: u32 = 1;

/// Packetizes a VP8 or VP9 track, one frame per sample.
#[derive(Debug, Clone)]
pub struct VpxPacketizer {
    format: VpxFormat,
    budget: usize,
    current: Option<Frame>,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Offset of the next byte to send.
    next: u64,
    /// Bytes left.
    left: u32,
    /// Size of every piece but the last.
    piece: u32,
    first: bool,
    keyframe: bool,
    /// The frame lies inside the media (checked on the first packet, which has the media).
    checked: bool,
}

impl VpxPacketizer {
    /// A packetizer for `format` whose packets carry at most `payload_budget_bytes`.
    pub fn new(format: VpxFormat, payload_budget_bytes: usize) -> Result<Self, PacketizeError> {
        super::check_budget(payload_budget_bytes)?;
        Ok(Self {
            format,
            budget: payload_budget_bytes,
            current: None,
        })
    }

    /// Starts a frame; an unfinished previous one is dropped.
    pub fn begin_sample(&mut self, sample: Sample) {
        let max = u32::try_from(self.budget).unwrap_or(u32::MAX) - DESCRIPTOR_LEN;
        self.current = Some(Frame {
            next: sample.offset,
            left: sample.len,
            piece: equal_fragment_size(sample.len, max),
            first: true,
            keyframe: sample.sync,
            checked: false,
        });
    }

    /// The next piece of the current frame, `Ok(None)` once it is sent. Allocates nothing.
    #[inline]
    pub fn next_packet(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        let Some(frame) = self.current.as_mut() else {
            return Ok(None);
        };
        if !frame.checked {
            let whole = Sample {
                offset: frame.next,
                len: frame.left,
                ..Sample::default()
            };
            if let Err(e) = sample_range(&whole, media) {
                self.current = None;
                return Err(e);
            }
            frame.checked = true;
        }
        let len = frame.piece.min(frame.left);
        let last = len == frame.left;
        let descriptor = match self.format {
            // X R N S R PID: S on the first packet of the frame.
            VpxFormat::Vp8 => u8::from(frame.first) << 4,
            // I P L F B E V Z.
            VpxFormat::Vp9 => {
                (u8::from(!frame.keyframe) << 6)
                    | (u8::from(frame.first) << 3)
                    | (u8::from(last) << 2)
            }
        };
        let mut payload_header = [0; MAX_PAYLOAD_HEADER];
        payload_header[0] = descriptor;
        let spec = PacketSpec {
            payload_header,
            payload_header_len: DESCRIPTOR_LEN as u8,
            body_source: BodySource::Media,
            body_offset: frame.next,
            body_len: len,
            marker: last,
        };
        frame.next += u64::from(len);
        frame.left -= len;
        frame.first = false;
        if last {
            self.current = None;
        }
        Ok(Some(spec))
    }

    /// The payload budget this packetizer was built with.
    pub fn payload_budget(&self) -> usize {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packetize::payload_bytes;

    fn frame(offset: u64, len: u32, sync: bool) -> Sample {
        Sample {
            offset,
            len,
            dts: 0,
            cts_offset: 0,
            sync,
        }
    }

    fn packets(p: &mut VpxPacketizer, s: Sample, media: &[u8]) -> Vec<PacketSpec> {
        p.begin_sample(s);
        std::iter::from_fn(|| p.next_packet(media).unwrap()).collect()
    }

    /// RFC 7741 §4.1/§4.2: S on the first packet only, marker on the last only, equal pieces,
    /// and the pieces put back together are the frame.
    #[test]
    fn vp8_frame_is_cut_into_equal_pieces_with_s_and_marker() {
        let media: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut p = VpxPacketizer::new(VpxFormat::Vp8, 1200).unwrap();
        let specs = packets(&mut p, frame(100, 3000, true), &media);
        assert_eq!(specs.len(), 3);
        let mut body = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            assert_eq!(s.header(), [if i == 0 { 0x10 } else { 0x00 }]);
            assert_eq!(s.marker, i == 2);
            assert!(s.payload_len() <= 1200);
            body.extend_from_slice(&payload_bytes(s, &media, &[], &[])[1..]);
        }
        assert_eq!(specs[0].body_len, specs[1].body_len, "equal pieces for GSO");
        assert_eq!(body, media[100..3100]);
        let small = packets(&mut p, frame(0, 10, false), &media);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].header(), [0x10]);
        assert!(small[0].marker);
    }

    /// RFC 9628 §4.2: B on the first packet, E on the last, P on inter frames only.
    #[test]
    fn vp9_descriptor_marks_begin_end_and_inter_frames() {
        let media = vec![7u8; 4000];
        let mut p = VpxPacketizer::new(VpxFormat::Vp9, 1200).unwrap();
        let key: Vec<u8> = packets(&mut p, frame(0, 2500, true), &media)
            .iter()
            .map(|s| s.header()[0])
            .collect();
        assert_eq!(key, [0x08, 0x00, 0x04]);
        let inter: Vec<u8> = packets(&mut p, frame(0, 100, false), &media)
            .iter()
            .map(|s| s.header()[0])
            .collect();
        assert_eq!(inter, [0x4C], "P, B and E in one packet");
    }

    #[test]
    fn frames_outside_the_media_are_refused() {
        let media = vec![0u8; 100];
        let mut p = VpxPacketizer::new(VpxFormat::Vp8, 1200).unwrap();
        p.begin_sample(frame(90, 20, true));
        assert_eq!(p.next_packet(&media), Err(PacketizeError::SampleOutOfRange));
        assert_eq!(p.next_packet(&media), Ok(None));
        p.begin_sample(frame(u64::MAX - 1, 20, true));
        assert_eq!(p.next_packet(&media), Err(PacketizeError::SampleOutOfRange));
    }
}
