//! RFC 3640 MPEG-4 AAC packetizer, mode=AAC-hbr (sizelength=13, indexlength=3,
//! indexdeltalength=3).
//!
//! Consecutive small access units are aggregated into one RTP packet (§3.2.2: "one or more
//! complete Access Units"), one AU header each, AU-Index-delta 0 (§3.2.1.1: consecutive AUs),
//! the RTP timestamp being the first AU's (§3.2.1): up to [`MAX_AUS_PER_PACKET`] AUs, of
//! equal duration (receivers derive the later AUs' times from it), spanning at most
//! [`MAX_AGGREGATE_SPAN_MS`], and within the payload budget ([`aggregate_len`]). The body
//! is gathered from the mapping: one slice when the AUs lie back to back, else one slice per
//! AU ([`BodySource::Samples`]; muxers such as ffmpeg's interleave audio and video in chunks
//! of one or two frames). At 48 kHz and
//! 128 kbit/s that is ~3 AUs per packet: a third of the audio sends, which on a loaded shard
//! are the costliest packets (one syscall-level send each, never a GSO train). The later AUs
//! leave up to the span early, which players' jitter buffers absorb; live channels add no
//! latency, since the media is already on disk. An AU larger than the budget goes alone and
//! is fragmented (§3.2.3) into equal-sized pieces, each carrying the same AU header with the
//! full AU-size, the marker bit set only on the last. Unfragmented packets always carry the
//! marker (§3.2.3: "the final fragment of a fragmented Access Unit or one or more complete
//! Access Units").
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

use super::{
    equal_fragment_size, sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER,
};
use crate::media::track::Sample;

/// Bytes of the AU header section: 16-bit AU-headers-length + one 16-bit AU-header.
pub const AU_HEADER_SECTION_LEN: usize = 4;
/// Largest AU the 13-bit AU-size field can describe (RFC 3640 §3.3.6).
pub const MAX_AU_SIZE: u32 = (1 << 13) - 1;
/// Most access units aggregated into one packet.
pub const MAX_AUS_PER_PACKET: usize = 8;
/// A group never crosses a sample index that is a multiple of this, so groups realign
/// however a viewer started (viewers of a live channel then share packets). 24 is a multiple
/// of every group size the budget and span commonly allow (3 AUs at 128 kbit/s, 4 at 96,
/// 6 at 64, 8 at 32 or less), so those tile it without a short group; with 8 a 64 kbit/s
/// track went 6 + 2, averaging 4 AUs per packet instead of 6.
pub const GROUP_ALIGN: u64 = 24;
/// Longest time from the first to the last AU of one aggregated packet: 8 AUs of 48 kHz
/// AAC start 149 ms apart. The later AUs leave that much early, which players' jitter
/// buffers absorb; [`MAX_AUS_PER_PACKET`] and the payload budget usually bind first.
pub const MAX_AGGREGATE_SPAN_MS: u64 = 150;

/// How many access units from `samples[0]` on go into one packet (≥ 1; 1 for an empty
/// slice). `index` is `samples[0]`'s index in its track: a group never crosses a multiple of
/// [`GROUP_ALIGN`]. See the module doc for the other rules.
pub fn aggregate_len(samples: &[Sample], index: u64, budget: usize, timescale: u32) -> usize {
    let Some(first) = samples.first() else {
        return 1;
    };
    let fits_alone = |s: &Sample| s.len > 0 && s.len <= MAX_AU_SIZE && s.cts_offset == 0;
    if !fits_alone(first) || AU_HEADER_SECTION_LEN + first.len as usize > budget {
        return 1;
    }
    let step = samples.get(1).and_then(|s| s.dts.checked_sub(first.dts));
    let span_limit = u64::from(timescale) * MAX_AGGREGATE_SPAN_MS / 1000;
    let mut total = first.len as usize;
    let mut k = 1;
    while k < MAX_AUS_PER_PACKET.min(samples.len()) {
        if (index + k as u64).is_multiple_of(GROUP_ALIGN) {
            break;
        }
        let (prev, s) = (&samples[k - 1], &samples[k]);
        let even = s.dts.checked_sub(prev.dts) == step && step.is_some_and(|d| d > 0);
        let in_span = s.dts.saturating_sub(first.dts) <= span_limit;
        let header = 2 + 2 * (k + 1);
        if !fits_alone(s) || !even || !in_span {
            break;
        }
        if header + total + s.len as usize > budget {
            break;
        }
        total += s.len as usize;
        k += 1;
    }
    k
}

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
    /// One packet of several whole AUs: where each lies, the first's sample index, and the
    /// AU header section.
    Group {
        aus: [(u64, u32); MAX_AUS_PER_PACKET],
        count: u8,
        first_index: u64,
        header: [u8; MAX_PAYLOAD_HEADER],
        header_len: u8,
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

    /// Starts one packet of the access units `aus` (as chosen by [`aggregate_len`]: each
    /// under [`MAX_AU_SIZE`], at most [`MAX_AUS_PER_PACKET`]); `first_index` is `aus[0]`'s
    /// sample index in its track.
    pub fn begin_group(&mut self, aus: &[Sample], first_index: u64) {
        let aus = &aus[..aus.len().min(MAX_AUS_PER_PACKET)];
        let Some(first) = aus.first() else {
            self.progress = None;
            return;
        };
        // RFC 3640 §3.2.1: AU-headers-length in bits, then per AU: AU-size (13 bits) and
        // AU-Index (first) or AU-Index-delta (later; 0 = consecutive), 3 bits each.
        let mut header = [0u8; MAX_PAYLOAD_HEADER];
        header[..2].copy_from_slice(&((16 * aus.len()) as u16).to_be_bytes());
        let mut places = [(0u64, 0u32); MAX_AUS_PER_PACKET];
        for (k, au) in aus.iter().enumerate() {
            let h = ((au.len.min(MAX_AU_SIZE) as u16) & 0x1fff) << 3;
            header[2 + 2 * k..4 + 2 * k].copy_from_slice(&h.to_be_bytes());
            places[k] = (au.offset, au.len);
        }
        self.sample = *first;
        self.progress = Some(Progress::Group {
            aus: places,
            count: aus.len() as u8,
            first_index,
            header,
            header_len: (2 + 2 * aus.len()) as u8,
        });
    }

    /// Next packet of the current AU; `Ok(None)` when done. Does not allocate.
    pub fn next_packet(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        if let Some(Progress::Group {
            aus,
            count,
            first_index,
            header,
            header_len,
        }) = self.progress
        {
            self.progress = None;
            let aus = &aus[..usize::from(count)];
            let mut len = 0u32;
            let mut back_to_back = true;
            for (k, &(offset, au_len)) in aus.iter().enumerate() {
                sample_range(
                    &Sample {
                        offset,
                        len: au_len,
                        ..self.sample
                    },
                    media,
                )?;
                back_to_back &= k == 0 || aus[k - 1].0 + u64::from(aus[k - 1].1) == offset;
                len = len.saturating_add(au_len);
            }
            if usize::from(header_len) + len as usize > self.budget as usize {
                return Err(PacketizeError::AuTooLarge);
            }
            // One slice of the mapping when the AUs lie back to back; else the AUs by index.
            let (body_source, body_offset) = if back_to_back {
                (BodySource::Media, aus[0].0)
            } else {
                (BodySource::Samples, first_index)
            };
            return Ok(Some(PacketSpec {
                payload_header: header,
                payload_header_len: header_len,
                body_source,
                body_offset,
                body_len: len,
                marker: true,
            }));
        }
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
        let mut payload_header = [0u8; MAX_PAYLOAD_HEADER];
        payload_header[..AU_HEADER_SECTION_LEN].copy_from_slice(&header);
        Ok(Some(PacketSpec {
            payload_header,
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
        let pl = payload_bytes(&s, &media, &[], &[]);
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
                let pl = payload_bytes(s, &media, &[], &[]);
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

    /// Back-to-back AUs of 1024 ticks at 48 kHz, `len` bytes each, from offset 3.
    fn aus(lens: &[u32]) -> (Vec<u8>, Vec<Sample>) {
        let mut media = vec![0xee; 3];
        let mut samples = Vec::new();
        for (k, &len) in lens.iter().enumerate() {
            samples.push(Sample {
                offset: media.len() as u64,
                len,
                dts: 1024 * k as u64,
                cts_offset: 0,
                sync: true,
            });
            media.extend((0..len).map(|i| (i as usize * 7 + k) as u8));
        }
        (media, samples)
    }

    #[test]
    fn consecutive_small_aus_share_one_packet_with_one_header_each() {
        let (media, samples) = aus(&[300, 301, 302, 303]);
        let mut p = packetizer(1200);
        // 2 + 3·2 + 903 = 911 fits; a fourth AU would make 1216 > 1200.
        assert_eq!(p.samples_per_packet(&samples, 0, 48_000), 3);
        p.begin_samples(&samples[..3], 0);
        let spec = p.next_packet(&media).unwrap().unwrap();
        assert_eq!(p.next_packet(&media), Ok(None));
        assert!(
            spec.marker,
            "complete AUs carry the marker (RFC 3640 §3.2.3)"
        );
        let pl = payload_bytes(&spec, &media, &[], &[]);
        // AU-headers-length 48 bits, then (size << 3 | delta 0) per AU.
        assert_eq!(&pl[..2], &[0x00, 0x30]);
        for (k, len) in [300u16, 301, 302].into_iter().enumerate() {
            let h = u16::from_be_bytes([pl[2 + 2 * k], pl[3 + 2 * k]]);
            assert_eq!((h >> 3, h & 7), (len, 0));
        }
        assert_eq!(&pl[8..], &media[3..3 + 903]);
    }

    #[test]
    fn groups_stop_at_gaps_uneven_durations_the_span_index_blocks_and_large_aus() {
        let (_, mut samples) = aus(&[100; 12]);
        let p = packetizer(1200);
        // 150 ms at 48 kHz: the eighth AU starts 149 ms after the first.
        assert_eq!(p.samples_per_packet(&samples, 0, 48_000), 8);
        // At 44.1 kHz the eighth starts 163 ms after the first: 7.
        assert_eq!(p.samples_per_packet(&samples, 0, 44_100), 7);
        // Never across an index that is a multiple of 24.
        assert_eq!(p.samples_per_packet(&samples[5..], 21, 96_000), 3);
        assert_eq!(p.samples_per_packet(&samples[4..], 4, 96_000), 8);
        // 150 ms at 6 kHz is 900 ticks: fewer than one 1024-tick AU after the first.
        assert_eq!(p.samples_per_packet(&samples, 0, 6_000), 1);
        // Not back to back (another track's bytes between) still groups: the body is then
        // gathered AU by AU.
        samples[2].offset += 1;
        assert_eq!(p.samples_per_packet(&samples, 0, 48_000), 8);
        let (_, mut samples) = aus(&[100; 4]);
        samples[2].dts += 1;
        assert_eq!(
            p.samples_per_packet(&samples, 0, 48_000),
            2,
            "uneven duration"
        );
        let (_, samples) = aus(&[1300, 100]);
        assert_eq!(
            p.samples_per_packet(&samples, 0, 48_000),
            1,
            "fragmented AU alone"
        );
        let (_, samples) = aus(&[100, 0, 100]);
        assert_eq!(p.samples_per_packet(&samples, 0, 48_000), 1, "empty AU");
        assert_eq!(p.samples_per_packet(&[], 0, 48_000), 1);
    }

    /// AUs that lie apart (a video frame between them in the file) still go in one packet;
    /// its body names them by sample index and resolves to their bytes in order.
    #[test]
    fn a_group_of_aus_apart_in_the_file_gathers_each() {
        let (mut media, mut samples) = aus(&[200, 210, 220]);
        // Move the second AU to the end of the "file", after 50 bytes of something else.
        let second: Vec<u8> = media[203..413].to_vec();
        media.extend([0x55; 50]);
        samples[1].offset = media.len() as u64;
        media.extend(&second);
        let all = [samples[0], samples[1], samples[2]];
        let mut p = packetizer(1200);
        assert_eq!(
            p.samples_per_packet(&all, 23, 48_000),
            1,
            "index 24 ends a group"
        );
        assert_eq!(p.samples_per_packet(&all, 0, 48_000), 3);
        p.begin_samples(&all, 40);
        let spec = p.next_packet(&media).unwrap().unwrap();
        assert_eq!(spec.body_source, BodySource::Samples);
        assert_eq!((spec.body_offset, spec.body_len), (40, 630));
        // The track's sample table: the group starts at index 40.
        let mut table = vec![Sample::default(); 40];
        table.extend(all);
        let pl = payload_bytes(&spec, &media, &[], &table);
        let mut want = spec.header().to_vec();
        for s in &all {
            want.extend_from_slice(
                &media[s.offset as usize..(s.offset + u64::from(s.len)) as usize],
            );
        }
        assert_eq!(pl, want);
        // A table that does not hold the AUs resolves to nothing rather than wrong bytes.
        assert!(crate::packetize::body_slices(&spec, &media, &[], &table[..41]).is_none());
    }

    #[test]
    fn a_group_past_the_media_is_an_error_not_a_panic() {
        let (media, samples) = aus(&[300, 300]);
        let mut p = packetizer(1200);
        p.begin_samples(&samples, 0);
        assert!(p.next_packet(&media[..400]).is_err());
        assert_eq!(p.next_packet(&media), Ok(None));
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
