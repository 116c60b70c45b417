//! RFC 3640 MPEG-4 AAC packetizer, mode=AAC-hbr (sizelength=13, indexlength=3).
//!
//! One access unit per RTP packet with an AU header section (§3.2.1, AAC-hbr parameters
//! §3.3.6); an AU larger than the budget is fragmented (§3.2.3) into equal-sized pieces, each
//! carrying the same AU header with the full AU-size, the marker bit set only on the last.
//! Unfragmented packets always carry the marker (§3.2.3: "the final fragment of a fragmented
//! Access Unit or one or more complete Access Units").
//!
//! ```text
//! RFC 3640 §3.2.1 payload, with one AU header (AAC-hbr: 13-bit size, 3-bit index):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  AU-headers-length = 16 bits  |    AU-size (13 bits)    |Idx=0|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 access unit (or fragment of it)               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::{equal_fragment_size, sample_range, BodySource, PacketSpec, PacketizeError};
use crate::media::track::Sample;

/// Bytes of the AU header section: 16-bit AU-headers-length + one 16-bit AU-header.
pub const AU_HEADER_SECTION_LEN: usize = 4;
/// Largest AU the 13-bit AU-size field can describe (RFC 3640 §3.3.6).
pub const MAX_AU_SIZE: u32 = (1 << 13) - 1;

/// AAC packetizer state for one track (RFC 3640, mode=AAC-hbr).
#[derive(Debug, Clone)]
pub struct AacPacketizer {
    budget: u32,
    sample: Sample,
    /// `None` when idle; otherwise the sample's progress.
    progress: Option<Progress>,
}

/// Progress through the current access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// `begin_sample` called, nothing validated yet.
    Fresh,
    /// Sending fragments: next media offset, bytes left, fragment size, AU header.
    Sending {
        next: u64,
        remaining: u32,
        frag_size: u32,
        header: [u8; 4],
    },
}

impl AacPacketizer {
    /// Builds the packetizer for a payload budget (checked against the limits).
    pub fn new(payload_budget_bytes: usize) -> Result<Self, PacketizeError> {
        super::check_budget(payload_budget_bytes)?;
        Ok(AacPacketizer {
            budget: payload_budget_bytes as u32,
            sample: Sample {
                offset: 0,
                len: 0,
                dts: 0,
                cts_offset: 0,
                sync: true,
            },
            progress: None,
        })
    }

    /// The payload budget in bytes.
    pub fn payload_budget(&self) -> usize {
        self.budget as usize
    }

    /// Starts a new access unit; any unfinished previous one is abandoned.
    pub fn begin_sample(&mut self, sample: Sample) {
        self.sample = sample;
        self.progress = Some(Progress::Fresh);
    }

    /// Next packet of the current AU; `Ok(None)` when done. Does not allocate.
    pub fn next_packet(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        let progress = match self.progress {
            None => return Ok(None),
            Some(Progress::Fresh) => match self.start(media) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.progress = None;
                    return Ok(None);
                }
                Err(e) => {
                    self.progress = None;
                    return Err(e);
                }
            },
            Some(p) => p,
        };
        let Progress::Sending {
            next,
            remaining,
            frag_size,
            header,
        } = progress
        else {
            self.progress = None;
            return Ok(None);
        };
        let size = frag_size.min(remaining);
        let last = size == remaining;
        self.progress = (!last).then_some(Progress::Sending {
            next: next + u64::from(size),
            remaining: remaining - size,
            frag_size,
            header,
        });
        Ok(Some(PacketSpec {
            payload_header: header,
            payload_header_len: AU_HEADER_SECTION_LEN as u8,
            body_source: BodySource::Media,
            body_offset: next,
            body_len: size,
            // RFC 3640 §3.2.3: M=1 on a complete AU or the final fragment.
            marker: last,
        }))
    }

    /// Validates the AU and computes its header and fragment size; `None` for an empty AU.
    fn start(&self, media: &[u8]) -> Result<Option<Progress>, PacketizeError> {
        let (start, _) = sample_range(&self.sample, media)?;
        let len = self.sample.len;
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_AU_SIZE {
            return Err(PacketizeError::AuTooLarge);
        }
        Ok(Some(Progress::Sending {
            next: start as u64,
            remaining: len,
            frag_size: equal_fragment_size(len, self.budget - AU_HEADER_SECTION_LEN as u32),
            header: au_header_section(len as u16),
        }))
    }
}

/// The AU header section for one AU of `au_size` bytes (RFC 3640 §3.2.1, §3.3.6):
/// AU-headers-length = 16 (bits), then AU-size (13 bits) and AU-Index = 0 (3 bits).
#[inline]
pub fn au_header_section(au_size: u16) -> [u8; 4] {
    let h = (au_size & 0x1fff) << 3;
    [0x00, 0x10, (h >> 8) as u8, h as u8]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::track::{AacConfig, Codec};
    use crate::packetize::{payload_bytes, Packetizer};

    fn packetizer(budget: usize) -> Packetizer {
        let codec = Codec::Aac(AacConfig {
            audio_specific_config: vec![0x11, 0x90],
            object_type: 2,
            sample_rate_hz: 48_000,
            channels: 2,
        });
        Packetizer::new(&codec, budget).unwrap()
    }

    fn au(len: usize) -> (Vec<u8>, Sample) {
        let mut media = vec![0xee; 3];
        media.extend((0..len).map(|i| (i * 13 + 1) as u8));
        media.push(0xee);
        let sample = Sample {
            offset: 3,
            len: len as u32,
            dts: 0,
            cts_offset: 0,
            sync: true,
        };
        (media, sample)
    }

    fn run(p: &mut Packetizer, media: &[u8], s: Sample) -> Result<Vec<PacketSpec>, PacketizeError> {
        p.begin_sample(s);
        let mut out = Vec::new();
        while let Some(spec) = p.next_packet(media)? {
            out.push(spec);
        }
        Ok(out)
    }

    #[test]
    fn au_header_bits() {
        assert_eq!(au_header_section(371), [0x00, 0x10, 0x0b, 0x98]);
        assert_eq!(au_header_section(8191), [0x00, 0x10, 0xff, 0xf8]);
    }

    #[test]
    fn small_au_one_packet() {
        let (media, sample) = au(371);
        let mut p = packetizer(1200);
        let specs = run(&mut p, &media, sample).unwrap();
        assert_eq!(specs.len(), 1);
        let s = specs[0];
        assert!(s.marker);
        assert_eq!(s.payload_header_len, 4);
        assert_eq!((s.body_offset, s.body_len), (3, 371));
        let pl = payload_bytes(&s, &media, &[]);
        assert_eq!(&pl[..4], &[0x00, 0x10, 0x0b, 0x98]);
        assert_eq!(&pl[4..], &media[3..3 + 371]);
        // Exactly budget - 4 still fits one packet.
        let (media, sample) = au(1196);
        assert_eq!(run(&mut p, &media, sample).unwrap().len(), 1);
    }

    #[test]
    fn fragmented_au() {
        for (budget, len) in [(1200usize, 1197usize), (64, 8191), (100, 500), (1200, 5000)] {
            let (media, sample) = au(len);
            let mut p = packetizer(budget);
            let specs = run(&mut p, &media, sample).unwrap();
            assert!(specs.len() >= 2);
            let mut joined = Vec::new();
            for (i, s) in specs.iter().enumerate() {
                let pl = payload_bytes(s, &media, &[]);
                assert!(pl.len() <= budget);
                assert_eq!(
                    &pl[..4],
                    &au_header_section(len as u16),
                    "full AU-size every fragment"
                );
                assert_eq!(s.marker, i + 1 == specs.len());
                if i + 1 < specs.len() {
                    assert_eq!(s.body_len, specs[0].body_len, "equal fragments");
                } else {
                    assert!(s.body_len <= specs[0].body_len);
                }
                joined.extend_from_slice(&pl[4..]);
            }
            assert_eq!(joined, &media[3..3 + len]);
        }
    }

    #[test]
    fn bad_aus() {
        let mut p = packetizer(1200);
        let (media, sample) = au(8192);
        assert_eq!(run(&mut p, &media, sample), Err(PacketizeError::AuTooLarge));
        assert_eq!(p.next_packet(&media), Ok(None));
        let (media, mut sample) = au(10);
        sample.len = 100;
        assert_eq!(
            run(&mut p, &media, sample),
            Err(PacketizeError::SampleOutOfRange)
        );
        assert_eq!(p.next_packet(&media), Ok(None));
        let (media, sample) = au(0);
        assert_eq!(run(&mut p, &media, sample), Ok(vec![]));
        assert!(p.parameter_sets().is_empty());
    }
}
