//! MPEG-4 AAC RTP payload (RFC 3640) → raw access units, one frame each.
//!
//! ```text
//! §3.2.1: +---------+-----------+-----------+---------------+
//!         | RTP     | AU Header | Auxiliary | Access Unit   |
//!         | Header  | Section   | Section   | Data Section  |
//!         +---------+-----------+-----------+---------------+
//! §3.2.1.1 AU Header Section: AU-headers-length (16 bits, in bits), then per AU:
//!   AU-size (sizelength) | AU-Index / AU-Index-delta (indexlength / indexdeltalength) |
//!   CTS-flag + CTS-delta | DTS-flag + DTS-delta | RAP-flag | Stream-state
//!   (each present only when the SDP gives it a length), padded to a whole byte.
//! ```
//!
//! Several AUs per packet are emitted straight from the packet (no copy), the k-th timed at
//! the packet's timestamp plus its index × the frame length (§3.2.1: the RTP timestamp is the
//! first AU's; §3.3.6 AAC-hbr; AU-Index-delta counts the AUs between). An AU bigger than its
//! packet is a fragment (§3.2.3): the packet carries one AU-header with the whole AU's size,
//! the following packets with the same timestamp carry the rest, the marker on the last; only
//! fragments are copied, into one reused buffer. Interleaving (a first AU-Index other than 0)
//! is not supported: such packets count as malformed.

use super::{reserve_capped, Ctx};
use crate::ingest::sdp::AuHeaderFormat;
use crate::ingest::{DropReason, Frame, MAX_ACCESS_UNIT};

/// RFC 3640 §3.3.6 AAC-hbr: 13-bit AU-size, 3-bit AU-Index and AU-Index-delta.
pub(super) const AAC_HBR: AuHeaderFormat = AuHeaderFormat {
    size_length: 13,
    index_length: 3,
    index_delta_length: 3,
    cts_delta_length: 0,
    dts_delta_length: 0,
    random_access_indication: false,
    stream_state_indication: 0,
    auxiliary_data_size_length: 0,
    frame_length: 1024,
};

/// MSB-first bit reader over a bounded slice; every read past the end is `None`.
struct Bits<'a> {
    /// The bytes.
    data: &'a [u8],
    /// The next bit.
    pos: usize,
    /// Bits that may be read (≤ 8 × `data.len()`).
    limit: usize,
}

impl Bits<'_> {
    /// Reads `n` ≤ 32 bits.
    fn read(&mut self, n: u8) -> Option<u32> {
        let n = usize::from(n);
        if n > 32 || self.pos + n > self.limit {
            return None;
        }
        let mut v = 0u64;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u64::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        u32::try_from(v).ok()
    }

    /// Bits left.
    fn remaining(&self) -> usize {
        self.limit - self.pos
    }
}

/// The fragmented AU being reassembled.
#[derive(Debug, Clone, Copy)]
struct Fragment {
    /// Its timestamp.
    ts: i64,
    /// Its announced size (the AU-size of every fragment's header).
    size: usize,
    /// Set when the AU is already lost: its remaining fragments are skipped.
    skip: Option<DropReason>,
    /// The loss was already counted (a gap: the later fragments still have to be skipped).
    counted: bool,
}

/// Reassembles access units from RFC 3640 payloads.
#[derive(Debug)]
pub(super) struct AacDepacketizer {
    /// The AU-header layout.
    format: AuHeaderFormat,
    /// Bytes of the fragmented AU so far; reused.
    buf: Vec<u8>,
    /// The fragmented AU in progress.
    fragment: Option<Fragment>,
}

/// One parsed AU-header.
#[derive(Debug, Clone, Copy)]
struct AuHeader {
    /// AU-size in bytes.
    size: usize,
    /// AU-Index (first header) or AU-Index-delta (others).
    index: u32,
}

impl AacDepacketizer {
    /// A depacketizer for the given AU-header layout.
    pub(super) fn new(format: AuHeaderFormat) -> Self {
        AacDepacketizer {
            format,
            buf: Vec::new(),
            fragment: None,
        }
    }

    /// Packets were lost: a fragmented AU in progress cannot be completed. It is counted now,
    /// and its later fragments (same timestamp and AU-size) are skipped rather than taken
    /// for the first fragment of another AU: fragments carry no start flag (§3.2.3).
    pub(super) fn on_gap(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(f) = &mut self.fragment {
            if !f.counted {
                ctx.stats
                    .drop_frame(f.skip.unwrap_or(DropReason::Incomplete));
                f.counted = true;
            }
            f.skip.get_or_insert(DropReason::Incomplete);
        }
        self.buf.clear();
    }

    /// Drops the fragmented AU in progress, if any, counting `reason` (or the reason it was
    /// already lost for) unless it was counted.
    fn abandon(&mut self, reason: DropReason, ctx: &mut Ctx<'_>) {
        if let Some(f) = self.fragment.take() {
            if !f.counted {
                ctx.stats.drop_frame(f.skip.unwrap_or(reason));
            }
        }
        self.buf.clear();
    }

    /// Reads one AU-header (§3.2.1.1); `first` selects AU-Index over AU-Index-delta.
    fn read_header(&self, bits: &mut Bits<'_>, first: bool) -> Option<AuHeader> {
        let f = &self.format;
        let size = bits.read(f.size_length)?;
        let index = bits.read(if first {
            f.index_length
        } else {
            f.index_delta_length
        })?;
        if f.cts_delta_length > 0 && bits.read(1)? == 1 {
            bits.read(f.cts_delta_length)?;
        }
        if f.dts_delta_length > 0 && bits.read(1)? == 1 {
            bits.read(f.dts_delta_length)?;
        }
        if f.random_access_indication {
            bits.read(1)?;
        }
        bits.read(f.stream_state_indication)?;
        Some(AuHeader {
            size: usize::try_from(size).ok()?,
            index,
        })
    }

    /// Takes one packet's payload.
    pub(super) fn push(&mut self, payload: &[u8], ts: i64, marker: bool, ctx: &mut Ctx<'_>) {
        // §3.2.1: AU-headers-length, the AU Header Section's length in bits.
        let Some((len, rest)) = payload.split_first_chunk::<2>() else {
            self.abandon(DropReason::Incomplete, ctx);
            ctx.stats.drop_frame(DropReason::Malformed);
            return;
        };
        let header_bits = usize::from(u16::from_be_bytes(*len));
        let Some((header_section, rest)) = rest.split_at_checked(header_bits.div_ceil(8)) else {
            self.abandon(DropReason::Incomplete, ctx);
            ctx.stats.drop_frame(DropReason::Malformed);
            return;
        };
        let mut headers = Bits {
            data: header_section,
            pos: 0,
            limit: header_bits,
        };
        let Some(data) = self.skip_auxiliary(rest) else {
            self.abandon(DropReason::Incomplete, ctx);
            ctx.stats.drop_frame(DropReason::Malformed);
            return;
        };
        let Some(first) = self.read_header(&mut headers, true) else {
            self.abandon(DropReason::Incomplete, ctx);
            ctx.stats.drop_frame(DropReason::Malformed);
            return;
        };
        let single = headers.remaining() == 0;
        if let Some(f) = self.fragment {
            if single && f.ts == ts && f.size == first.size {
                self.continue_fragment(data, marker, ctx);
                return;
            }
            // Anything else ends the fragmented AU before its last fragment.
            self.abandon(DropReason::Incomplete, ctx);
        }
        if first.index != 0 {
            // §3.2.1.1: AU-Index is 0 unless the sender interleaves, which is not supported.
            ctx.stats.drop_frame(DropReason::Malformed);
            return;
        }
        if single && first.size > data.len() {
            self.start_fragment(first.size, data, ts, marker, ctx);
            return;
        }
        let mut data = data;
        let mut header = first;
        let mut index: i64 = 0;
        loop {
            match data.split_at_checked(header.size) {
                Some((au, rest)) if !au.is_empty() => {
                    ctx.emit(Frame {
                        track: ctx.track,
                        pts: ts + index * i64::from(self.format.frame_length),
                        dts: ts + index * i64::from(self.format.frame_length),
                        sync: true,
                        data: au,
                    });
                    data = rest;
                }
                // An AU past the packet's end (only a lone AU may be fragmented), or empty.
                _ => {
                    ctx.stats.drop_frame(DropReason::Malformed);
                    return;
                }
            }
            if headers.remaining() == 0 {
                return;
            }
            match self.read_header(&mut headers, false) {
                Some(h) => {
                    index += i64::from(h.index) + 1;
                    header = h;
                }
                None => {
                    // Header bits left over that make no whole header: padding misdeclared.
                    ctx.stats.drop_frame(DropReason::Malformed);
                    return;
                }
            }
        }
    }

    /// The data after the Auxiliary Section (§3.2.1.2), present only when
    /// `auxiliarydatasizelength` is set; `None` if it claims more than the packet has.
    fn skip_auxiliary<'p>(&self, rest: &'p [u8]) -> Option<&'p [u8]> {
        let n = self.format.auxiliary_data_size_length;
        if n == 0 {
            return Some(rest);
        }
        let mut bits = Bits {
            data: rest,
            pos: 0,
            limit: rest.len().saturating_mul(8),
        };
        let size = usize::try_from(bits.read(n)?).ok()?;
        let total_bits = usize::from(n).checked_add(size)?;
        rest.get(total_bits.div_ceil(8)..)
    }

    /// The first fragment of an AU of `size` bytes.
    fn start_fragment(
        &mut self,
        size: usize,
        data: &[u8],
        ts: i64,
        marker: bool,
        ctx: &mut Ctx<'_>,
    ) {
        self.buf.clear();
        let mut f = Fragment {
            ts,
            size,
            skip: None,
            counted: false,
        };
        if size > MAX_ACCESS_UNIT {
            f.skip = Some(DropReason::TooLarge);
        } else {
            reserve_capped(&mut self.buf, data.len());
            self.buf.extend_from_slice(data);
        }
        self.fragment = Some(f);
        if marker {
            // §3.2.3: the marker is set on the last fragment only; it cannot be complete.
            self.abandon(DropReason::Malformed, ctx);
        }
    }

    /// A later fragment of the AU in progress.
    fn continue_fragment(&mut self, data: &[u8], marker: bool, ctx: &mut Ctx<'_>) {
        let Some(f) = self.fragment else {
            return;
        };
        if f.skip.is_none() {
            if self.buf.len() + data.len() > f.size {
                self.abandon(DropReason::Malformed, ctx);
                return;
            }
            reserve_capped(&mut self.buf, data.len());
            self.buf.extend_from_slice(data);
        }
        if marker || (f.skip.is_none() && self.buf.len() == f.size) {
            if f.skip.is_none() && self.buf.len() == f.size {
                self.fragment = None;
                ctx.emit(Frame {
                    track: ctx.track,
                    pts: f.ts,
                    dts: f.ts,
                    sync: true,
                    data: &self.buf,
                });
                self.buf.clear();
            } else {
                // The last fragment came, but bytes are missing (or the AU was too large).
                self.abandon(DropReason::Incomplete, ctx);
            }
        }
    }

    /// Bytes reserved for fragmented AUs.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}
