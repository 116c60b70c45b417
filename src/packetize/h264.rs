//! RFC 6184 H.264 packetizer, packetization-mode=1 (non-interleaved).
//!
//! Walks a sample's length-prefixed NAL units (ISO/IEC 14496-15 avcC format, 1/2/4-byte
//! prefixes) and emits: a STAP-A with the SPS/PPS ahead of every sync sample (§5.7.1), single
//! NAL unit packets for NAL units that fit the budget (§5.6), and equal-sized FU-A fragments
//! for larger ones (§5.8). Access unit delimiters (type 9) are dropped, zero-length NAL units
//! skipped, and the marker bit is set on the last packet of the access unit (§5.1).
//!
//! ```text
//! NAL unit header (RFC 6184 §1.3):      STAP-A (RFC 6184 §5.7.1):
//! +---------------+                     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0|1|2|3|4|5|6|7|                     |F|NRI|Type=24|       NALU 1 Size             |
//! +-+-+-+-+-+-+-+-+                     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |F|NRI|  Type   |                     | NALU 1 (HDR + data) ... | NALU 2 Size | ...   |
//! +---------------+                     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! FU-A (RFC 6184 §5.8):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | FU indicator  |   FU header   |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               |
//! |                         FU payload                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! FU indicator: |F|NRI|Type=28|     FU header: |S|E|R|  Type   |
//! ```

use super::{
    equal_fragment_size, sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER,
};
use crate::media::track::{H264Config, Sample};

/// NAL unit type of an access unit delimiter (H.264 Table 7-1).
pub const NAL_TYPE_AUD: u8 = 9;
/// RTP payload type of a STAP-A aggregation packet (RFC 6184 §5.7.1).
pub const NAL_TYPE_STAP_A: u8 = 24;
/// RTP payload type of an FU-A fragment (RFC 6184 §5.8).
pub const NAL_TYPE_FU_A: u8 = 28;

/// Progress through the current sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No sample, or the sample is finished (or abandoned after an error).
    Idle,
    /// `begin_sample` was called; the sample is validated on the first `next_packet`.
    Fresh,
    /// Emitting packets.
    Running,
}

/// An FU-A in progress (RFC 6184 §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fragmenting {
    /// FU indicator byte (F|NRI of the NAL, type 28).
    indicator: u8,
    /// NAL unit type for the FU header.
    nal_type: u8,
    /// Media offset of the next fragment's first byte.
    next: u64,
    /// Bytes of the NAL still to send.
    remaining: u32,
    /// Size of every fragment but the last.
    frag_size: u32,
    /// True until the first fragment is emitted (S bit).
    first: bool,
    /// True if this NAL ends the access unit (marker on its last fragment).
    last_nal: bool,
}

/// H.264 packetizer state for one track (RFC 6184, packetization-mode=1).
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    budget: u32,
    nal_length_size: u8,
    stap_a: Vec<u8>,
    sample: Sample,
    state: State,
    /// Media offset of the next length prefix to read.
    cursor: u64,
    /// Media offset one past the sample's last byte.
    end: u64,
    /// Media offset of the length prefix of the last emitted-kind NAL (for the marker bit).
    last_nal_prefix: Option<u64>,
    /// STAP-A still to be sent for this sync sample.
    stap_pending: bool,
    frag: Option<Fragmenting>,
}

impl H264Packetizer {
    /// Builds the packetizer and its SPS/PPS STAP-A (RFC 6184 §5.7.1).
    pub fn new(cfg: &H264Config, payload_budget_bytes: usize) -> Result<Self, PacketizeError> {
        super::check_budget(payload_budget_bytes)?;
        if !matches!(cfg.nal_length_size, 1 | 2 | 4) {
            return Err(PacketizeError::InvalidNalLengthSize);
        }
        let stap_a = build_stap_a(cfg.sps.iter().chain(cfg.pps.iter()).map(Vec::as_slice))?;
        if stap_a.len() > payload_budget_bytes {
            return Err(PacketizeError::ParameterSetsTooLarge);
        }
        Ok(H264Packetizer {
            budget: payload_budget_bytes as u32,
            nal_length_size: cfg.nal_length_size,
            stap_a,
            sample: Sample {
                offset: 0,
                len: 0,
                dts: 0,
                cts_offset: 0,
                sync: false,
            },
            state: State::Idle,
            cursor: 0,
            end: 0,
            last_nal_prefix: None,
            stap_pending: false,
            frag: None,
        })
    }

    /// The whole STAP-A payload (header byte included) carrying SPS and PPS; empty if none.
    pub fn parameter_sets(&self) -> &[u8] {
        &self.stap_a
    }

    /// The payload budget in bytes.
    pub fn payload_budget(&self) -> usize {
        self.budget as usize
    }

    /// Starts a new access unit; any unfinished previous one is abandoned.
    pub fn begin_sample(&mut self, sample: Sample) {
        self.sample = sample;
        self.state = State::Fresh;
        self.frag = None;
        self.stap_pending = false;
        self.last_nal_prefix = None;
    }

    /// Next packet of the current sample; `Ok(None)` when done. Does not allocate.
    pub fn next_packet(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        match self.state {
            State::Idle => return Ok(None),
            State::Fresh => {
                if let Err(e) = self.validate(media) {
                    self.state = State::Idle;
                    return Err(e);
                }
                self.state = State::Running;
            }
            State::Running => {}
        }
        match self.step(media) {
            Ok(Some(spec)) => Ok(Some(spec)),
            Ok(None) => {
                self.state = State::Idle;
                Ok(None)
            }
            Err(e) => {
                self.state = State::Idle;
                Err(e)
            }
        }
    }

    /// Walks every length prefix of the sample once (reading only) so corrupt samples send
    /// nothing, and finds the last NAL that will be sent (it carries the marker, §5.1).
    fn validate(&mut self, media: &[u8]) -> Result<(), PacketizeError> {
        let (start, end) = sample_range(&self.sample, media)?;
        self.cursor = start as u64;
        self.end = end as u64;
        let mut pos = start as u64;
        let mut last = None;
        while let Some((prefix, nal_off, nal_len)) = self.read_nal(media, pos)? {
            pos = nal_off + u64::from(nal_len);
            if !is_skipped(media, nal_off, nal_len) {
                last = Some(prefix);
            }
        }
        self.last_nal_prefix = last;
        self.stap_pending = self.sample.sync && !self.stap_a.is_empty();
        Ok(())
    }

    /// Reads the NAL unit whose length prefix starts at `pos`: `(prefix_offset, nal_offset,
    /// nal_len)`, or `None` at the end of the sample. Bounds-checked against the sample.
    #[inline]
    fn read_nal(&self, media: &[u8], pos: u64) -> Result<Option<(u64, u64, u32)>, PacketizeError> {
        if pos >= self.end {
            return Ok(None);
        }
        let n = u64::from(self.nal_length_size);
        if self.end - pos < n {
            return Err(PacketizeError::TruncatedLengthPrefix);
        }
        let prefix = media
            .get(pos as usize..(pos + n) as usize)
            .ok_or(PacketizeError::SampleOutOfRange)?;
        let len = prefix
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let nal_off = pos + n;
        if len > self.end - nal_off {
            return Err(PacketizeError::NalLengthPastSample);
        }
        Ok(Some((pos, nal_off, len as u32)))
    }

    /// Produces the next packet once the sample is validated.
    #[inline]
    fn step(&mut self, media: &[u8]) -> Result<Option<PacketSpec>, PacketizeError> {
        if self.stap_pending {
            // RFC 6184 §5.7.1: the buffer holds the whole STAP-A payload.
            self.stap_pending = false;
            return Ok(Some(PacketSpec {
                payload_header: [0; MAX_PAYLOAD_HEADER],
                payload_header_len: 0,
                body_source: BodySource::ParameterSets,
                body_offset: 0,
                body_len: self.stap_a.len() as u32,
                marker: self.last_nal_prefix.is_none(),
            }));
        }
        if let Some(mut f) = self.frag {
            let spec = next_fragment(&mut f);
            self.frag = (f.remaining > 0).then_some(f);
            return Ok(Some(spec));
        }
        // Find the next NAL to send, skipping zero-length NALs and AUDs.
        loop {
            let Some((prefix, nal_off, nal_len)) = self.read_nal(media, self.cursor)? else {
                return Ok(None);
            };
            self.cursor = nal_off + u64::from(nal_len);
            if is_skipped(media, nal_off, nal_len) {
                continue;
            }
            let last_nal = self.last_nal_prefix == Some(prefix);
            if nal_len <= self.budget {
                // RFC 6184 §5.6: single NAL unit packet, the NAL (header included) as payload.
                return Ok(Some(PacketSpec {
                    payload_header: [0; MAX_PAYLOAD_HEADER],
                    payload_header_len: 0,
                    body_source: BodySource::Media,
                    body_offset: nal_off,
                    body_len: nal_len,
                    marker: last_nal,
                }));
            }
            // RFC 6184 §5.8: FU-A. nal_len > budget >= 64, so there are at least 2 fragments
            // (S and E are never both set).
            let hdr = media
                .get(nal_off as usize)
                .copied()
                .ok_or(PacketizeError::SampleOutOfRange)?;
            let rest = nal_len - 1;
            let mut f = Fragmenting {
                indicator: (hdr & 0xe0) | NAL_TYPE_FU_A,
                nal_type: hdr & 0x1f,
                next: nal_off + 1,
                remaining: rest,
                frag_size: equal_fragment_size(rest, self.budget - 2),
                first: true,
                last_nal,
            };
            let spec = next_fragment(&mut f);
            self.frag = (f.remaining > 0).then_some(f);
            return Ok(Some(spec));
        }
    }
}

/// Produces one FU-A fragment and advances `f`; `f.remaining == 0` after the final one (E bit).
#[inline]
fn next_fragment(f: &mut Fragmenting) -> PacketSpec {
    let size = f.frag_size.min(f.remaining);
    let is_end = size == f.remaining;
    // FU header: |S|E|R|Type| (RFC 6184 §5.8); R is always 0.
    let fu_header = (u8::from(f.first) << 7) | (u8::from(is_end) << 6) | f.nal_type;
    let mut payload_header = [0u8; MAX_PAYLOAD_HEADER];
    payload_header[..2].copy_from_slice(&[f.indicator, fu_header]);
    let spec = PacketSpec {
        payload_header,
        payload_header_len: 2,
        body_source: BodySource::Media,
        body_offset: f.next,
        body_len: size,
        marker: is_end && f.last_nal,
    };
    f.first = false;
    f.next += u64::from(size);
    f.remaining -= size;
    spec
}

/// True for NAL units that are not sent: zero-length ones and access unit delimiters.
#[inline]
fn is_skipped(media: &[u8], nal_off: u64, nal_len: u32) -> bool {
    if nal_len == 0 {
        return true;
    }
    match media.get(nal_off as usize) {
        Some(&hdr) => hdr & 0x1f == NAL_TYPE_AUD,
        None => true,
    }
}

/// Builds a STAP-A payload (RFC 6184 §5.7.1) from whole NAL units: a header byte with
/// F = OR of the F bits, NRI = max NRI, type 24, then a 16-bit size and the NAL for each.
/// Returns an empty buffer when there are no NAL units.
fn build_stap_a<'a>(
    nals: impl Iterator<Item = &'a [u8]> + Clone,
) -> Result<Vec<u8>, PacketizeError> {
    let mut f_nri = 0u8;
    let mut total = 1usize;
    let mut any = false;
    for nal in nals.clone() {
        let hdr = *nal.first().ok_or(PacketizeError::EmptyNal)?;
        let len = u16::try_from(nal.len()).map_err(|_| PacketizeError::ParameterSetsTooLarge)?;
        f_nri = (f_nri & 0x60).max(hdr & 0x60) | ((f_nri | hdr) & 0x80);
        total += 2 + usize::from(len);
        any = true;
    }
    if !any {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(total);
    out.push(f_nri | NAL_TYPE_STAP_A);
    for nal in nals {
        out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        out.extend_from_slice(nal);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
