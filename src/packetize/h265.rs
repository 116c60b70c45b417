//! RFC 7798 H.265 packetizer (sprop-max-don-diff = 0: no DONL fields, §4.4).
//!
//! Walks a sample's length-prefixed NAL units (ISO/IEC 14496-15 `hvcC` format, 1/2/4-byte
//! prefixes) and emits: an aggregation packet with the VPS/SPS/PPS ahead of every IRAP
//! access unit that does not carry them itself (§4.4.2, as H.264 does with its STAP-A),
//! single NAL unit packets (§4.4.1), aggregation packets for runs of small NAL units (§4.4.2)
//! and equal-sized fragmentation units for large ones (§4.4.3). Access unit delimiters
//! (type 35) and NAL units shorter than their 2-byte header are dropped, and the marker bit is
//! set on the last packet of the access unit (§4.1).
//!
//! An aggregation packet of the sample's own NAL units copies nothing: each aggregation
//! unit's 16-bit NALU size is the low two bytes of the file's 2- or 4-byte length prefix (the
//! NAL is smaller than the payload budget, so the high bytes are zero), so the body is a
//! chain of ranges of the mapping ([`BodySource::Nals`]). With 1-byte prefixes small NAL
//! units go out as single NAL unit packets.
//!
//! ```text
//! NAL unit / payload header (§1.1.4, §4.4):   FU (§4.4.3):
//! +---------------+---------------+           +---------------+---------------+
//! |F|   Type    |  LayerId  | TID |           |  PayloadHdr (Type = 49)       |
//! +-------------+-----------------+           +---------------+---------------+
//!                                             |S|E|  FuType   |  FU payload ... |
//! AP (§4.4.2):                                +---------------+
//! |  PayloadHdr (Type = 48)       |  NALU 1 Size  | NALU 1 HDR | NALU 1 Data | NALU 2 Size | ...
//! ```

use super::{
    equal_fragment_size, sample_range, BodySource, PacketSpec, PacketizeError, MAX_PAYLOAD_HEADER,
};
use crate::media::track::{H265Config, Sample};

/// NAL unit type of an access unit delimiter (H.265 Table 7-1).
pub const NAL_TYPE_AUD: u8 = 35;
/// Payload type of an aggregation packet (RFC 7798 §4.4.2).
pub const NAL_TYPE_AP: u8 = 48;
/// Payload type of a fragmentation unit (RFC 7798 §4.4.3).
pub const NAL_TYPE_FU: u8 = 49;
/// Most aggregation units in one AP built from a sample (the body is a chain of that many
/// ranges; see [`super::body_slices`]).
pub const MAX_AP_UNITS: usize = super::aac::MAX_AUS_PER_PACKET;

/// The NAL unit type of a 2-byte H.265 NAL unit header (§1.1.4: F(1) Type(6) LayerId(6) TID(3)).
#[inline]
pub fn nal_type(hdr0: u8) -> u8 {
    (hdr0 >> 1) & 0x3f
}

/// True for IRAP NAL unit types 16..=23 (BLA, IDR, CRA and reserved IRAP types, H.265 §7.4.2.2).
#[inline]
pub fn is_irap(typ: u8) -> bool {
    (16..=23).contains(&typ)
}

/// True for VPS, SPS and PPS NAL unit types (32, 33, 34).
#[inline]
fn is_parameter_set(typ: u8) -> bool {
    (32..=34).contains(&typ)
}

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

/// A fragmented NAL unit in progress (RFC 7798 §4.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fragmenting {
    /// PayloadHdr: the NAL's F, LayerId and TID with Type = 49.
    payload_hdr: [u8; 2],
    /// The NAL unit type, for the FU header's FuType.
    fu_type: u8,
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

/// Header fields merged over the units of an aggregation packet (§4.4.2): F is the OR of the
/// F bits, LayerId and TID the lowest of the units'.
#[derive(Debug, Clone, Copy)]
struct ApHeader {
    f: bool,
    layer_id: u8,
    tid: u8,
}

impl ApHeader {
    fn new() -> Self {
        ApHeader {
            f: false,
            layer_id: 0x3f,
            tid: 7,
        }
    }

    fn add(&mut self, hdr: [u8; 2]) {
        self.f |= hdr[0] & 0x80 != 0;
        self.layer_id = self.layer_id.min(((hdr[0] & 1) << 5) | (hdr[1] >> 3));
        self.tid = self.tid.min(hdr[1] & 0x07);
    }

    fn bytes(&self) -> [u8; 2] {
        [
            (u8::from(self.f) << 7) | (NAL_TYPE_AP << 1) | (self.layer_id >> 5),
            ((self.layer_id & 0x1f) << 3) | self.tid,
        ]
    }
}

/// H.265 packetizer state for one track (RFC 7798).
#[derive(Debug, Clone)]
pub struct H265Packetizer {
    budget: u32,
    nal_length_size: u8,
    /// The VPS/SPS/PPS as one AP payload (or one NAL when there is a single set).
    parameter_sets: Vec<u8>,
    sample: Sample,
    state: State,
    /// Media offset of the next length prefix to read.
    cursor: u64,
    /// Media offset one past the sample's last byte.
    end: u64,
    /// Media offset of the length prefix of the last NAL that is sent (for the marker bit).
    last_nal_prefix: Option<u64>,
    /// Parameter sets still to be sent for this IRAP sample.
    parameter_sets_pending: bool,
    frag: Option<Fragmenting>,
}

impl H265Packetizer {
    /// Builds the packetizer and its VPS/SPS/PPS aggregation packet (RFC 7798 §4.4.2).
    pub fn new(cfg: &H265Config, payload_budget_bytes: usize) -> Result<Self, PacketizeError> {
        super::check_budget(payload_budget_bytes)?;
        if !matches!(cfg.nal_length_size, 1 | 2 | 4) {
            return Err(PacketizeError::InvalidNalLengthSize);
        }
        let sets: Vec<&[u8]> = cfg
            .vps
            .iter()
            .chain(&cfg.sps)
            .chain(&cfg.pps)
            .map(Vec::as_slice)
            .collect();
        let parameter_sets = build_parameter_sets(&sets)?;
        if parameter_sets.len() > payload_budget_bytes {
            return Err(PacketizeError::ParameterSetsTooLarge);
        }
        Ok(H265Packetizer {
            budget: payload_budget_bytes as u32,
            nal_length_size: cfg.nal_length_size,
            parameter_sets,
            sample: Sample::default(),
            state: State::Idle,
            cursor: 0,
            end: 0,
            last_nal_prefix: None,
            parameter_sets_pending: false,
            frag: None,
        })
    }

    /// The parameter-set payload (an AP with its PayloadHdr, or the single set); empty if none.
    pub fn parameter_sets(&self) -> &[u8] {
        &self.parameter_sets
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
        self.parameter_sets_pending = false;
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
    /// nothing; finds the last NAL that will be sent (it carries the marker, §4.1) and whether
    /// the sample is an IRAP access unit without its own parameter sets.
    fn validate(&mut self, media: &[u8]) -> Result<(), PacketizeError> {
        let (start, end) = sample_range(&self.sample, media)?;
        self.cursor = start as u64;
        self.end = end as u64;
        let mut pos = start as u64;
        let mut last = None;
        let (mut irap, mut has_sets) = (self.sample.sync, false);
        while let Some((prefix, nal_off, nal_len)) = self.read_nal(media, pos)? {
            pos = nal_off + u64::from(nal_len);
            if let Some(hdr) = sent_header(media, nal_off, nal_len) {
                last = Some(prefix);
                let typ = nal_type(hdr[0]);
                irap |= is_irap(typ);
                has_sets |= is_parameter_set(typ);
            }
        }
        self.last_nal_prefix = last;
        self.parameter_sets_pending = irap && !has_sets && !self.parameter_sets.is_empty();
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
        if self.parameter_sets_pending {
            // The buffer holds the whole payload (PayloadHdr included).
            self.parameter_sets_pending = false;
            return Ok(Some(PacketSpec {
                payload_header: [0; MAX_PAYLOAD_HEADER],
                payload_header_len: 0,
                body_source: BodySource::ParameterSets,
                body_offset: 0,
                body_len: self.parameter_sets.len() as u32,
                marker: self.last_nal_prefix.is_none(),
            }));
        }
        if let Some(mut f) = self.frag {
            let spec = next_fragment(&mut f);
            self.frag = (f.remaining > 0).then_some(f);
            return Ok(Some(spec));
        }
        loop {
            let Some((prefix, nal_off, nal_len)) = self.read_nal(media, self.cursor)? else {
                return Ok(None);
            };
            self.cursor = nal_off + u64::from(nal_len);
            let Some(hdr) = sent_header(media, nal_off, nal_len) else {
                continue;
            };
            if nal_len <= self.budget {
                if let Some(spec) = self.aggregate(media, prefix, nal_len, hdr)? {
                    return Ok(Some(spec));
                }
                // §4.4.1: single NAL unit packet, the NAL (header included) as payload.
                return Ok(Some(PacketSpec {
                    payload_header: [0; MAX_PAYLOAD_HEADER],
                    payload_header_len: 0,
                    body_source: BodySource::Media,
                    body_offset: nal_off,
                    body_len: nal_len,
                    marker: self.last_nal_prefix == Some(prefix),
                }));
            }
            // §4.4.3: nal_len > budget >= 64, so the rest after the 2-byte NAL header is cut
            // into at least 2 fragments (S and E are never both set).
            let rest = nal_len - 2;
            let mut f = Fragmenting {
                payload_hdr: [(hdr[0] & 0x81) | (NAL_TYPE_FU << 1), hdr[1]],
                fu_type: nal_type(hdr[0]),
                next: nal_off + 2,
                remaining: rest,
                frag_size: equal_fragment_size(rest, self.budget - 3),
                first: true,
                last_nal: self.last_nal_prefix == Some(prefix),
            };
            let spec = next_fragment(&mut f);
            self.frag = (f.remaining > 0).then_some(f);
            return Ok(Some(spec));
        }
    }

    /// §4.4.2: an aggregation packet of the NAL at `prefix` and the sent NAL units right after
    /// it, as many as fit the budget (at most [`MAX_AP_UNITS`]); `None` when fewer than two
    /// fit (an AP carries at least two units) or the prefixes are 1 byte. On success the
    /// cursor moves past the last aggregated NAL.
    #[inline]
    fn aggregate(
        &mut self,
        media: &[u8],
        prefix: u64,
        nal_len: u32,
        hdr: [u8; 2],
    ) -> Result<Option<PacketSpec>, PacketizeError> {
        if self.nal_length_size == 1 {
            return Ok(None);
        }
        let mut header = ApHeader::new();
        header.add(hdr);
        let mut size = 2 + 2 + nal_len;
        let mut count = 1usize;
        let mut pos = self.cursor;
        let mut last_prefix = prefix;
        while count < MAX_AP_UNITS {
            let Some((p, off, len)) = self.read_nal(media, pos)? else {
                break;
            };
            // A dropped NAL in between would break the chain of ranges.
            let Some(h) = sent_header(media, off, len) else {
                break;
            };
            // `len` may be anything up to the sample's length: compare without overflowing.
            if u64::from(size) + 2 + u64::from(len) > u64::from(self.budget) {
                break;
            }
            header.add(h);
            size += 2 + len;
            count += 1;
            pos = off + u64::from(len);
            last_prefix = p;
        }
        if count < 2 {
            return Ok(None);
        }
        self.cursor = pos;
        let mut payload_header = [0u8; MAX_PAYLOAD_HEADER];
        payload_header[..2].copy_from_slice(&header.bytes());
        Ok(Some(PacketSpec {
            payload_header,
            payload_header_len: 2,
            body_source: BodySource::Nals {
                prefix_len: self.nal_length_size,
            },
            // The low 16 bits of the first length prefix: its NALU size field.
            body_offset: prefix + u64::from(self.nal_length_size) - 2,
            body_len: size - 2,
            marker: self.last_nal_prefix == Some(last_prefix),
        }))
    }
}

/// Produces one fragmentation unit and advances `f`; `f.remaining == 0` after the final one
/// (E bit).
#[inline]
fn next_fragment(f: &mut Fragmenting) -> PacketSpec {
    let size = f.frag_size.min(f.remaining);
    let is_end = size == f.remaining;
    // FU header: |S|E|FuType| (§4.4.3).
    let fu_header = (u8::from(f.first) << 7) | (u8::from(is_end) << 6) | f.fu_type;
    let mut payload_header = [0u8; MAX_PAYLOAD_HEADER];
    payload_header[..3].copy_from_slice(&[f.payload_hdr[0], f.payload_hdr[1], fu_header]);
    let spec = PacketSpec {
        payload_header,
        payload_header_len: 3,
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

/// The 2-byte header of a NAL unit that is sent; `None` for dropped ones: shorter than the
/// header, or access unit delimiters.
#[inline]
fn sent_header(media: &[u8], nal_off: u64, nal_len: u32) -> Option<[u8; 2]> {
    if nal_len < 2 {
        return None;
    }
    let start = usize::try_from(nal_off).ok()?;
    let hdr: [u8; 2] = media.get(start..start.checked_add(2)?)?.try_into().ok()?;
    (nal_type(hdr[0]) != NAL_TYPE_AUD).then_some(hdr)
}

/// The in-band parameter sets payload: an AP (§4.4.2) of all of them, or the NAL itself when
/// there is one (an AP carries at least two units); empty when there are none.
fn build_parameter_sets(sets: &[&[u8]]) -> Result<Vec<u8>, PacketizeError> {
    match sets {
        [] => return Ok(Vec::new()),
        [one] => {
            if one.len() < 2 {
                return Err(PacketizeError::EmptyNal);
            }
            return Ok(one.to_vec());
        }
        _ => {}
    }
    let mut header = ApHeader::new();
    let mut total = 2usize;
    for set in sets {
        let hdr: [u8; 2] = set
            .get(..2)
            .and_then(|h| h.try_into().ok())
            .ok_or(PacketizeError::EmptyNal)?;
        header.add(hdr);
        u16::try_from(set.len()).map_err(|_| PacketizeError::ParameterSetsTooLarge)?;
        total += 2 + set.len();
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&header.bytes());
    for set in sets {
        out.extend_from_slice(&(set.len() as u16).to_be_bytes());
        out.extend_from_slice(set);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
