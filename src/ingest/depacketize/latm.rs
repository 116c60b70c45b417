//! MPEG-4 audio in LATM (RFC 6416 §6.1, MP4A-LATM with `cpresent=0`) → raw access units.
//!
//! ```text
//! RTP payload = AudioMuxElement(muxConfigPresent = 0) ... (ISO/IEC 14496-3 §1.7.3)
//! AudioMuxElement = numSubFrames + 1 times { PayloadLengthInfo | PayloadMux }
//! PayloadLengthInfo (one program, one layer, frameLengthType 0) =
//!     MuxSlotLengthBytes: bytes of 255 summed, plus the first byte below 255
//! PayloadMux = that many bytes: one raw access unit (what an MP4 sample holds)
//! ```
//!
//! §6.1: a packet carries whole AudioMuxElements (one or more, concatenated) or one fragment
//! of an element; the marker bit is set on the packet that ends an element, and the RTP
//! timestamp is that of the first access unit; the next ones follow by the frame length.
//! A packet with the marker and nothing pending is read in place (no copy); fragments are
//! gathered in one reused buffer capped at [`MAX_ACCESS_UNIT`]. With the format's fields all
//! byte-aligned (the `sdp` reader refuses other data and multiple streams), an element is a
//! series of lengths and bytes that must end exactly where the data ends; anything else is
//! malformed, and nothing of it is emitted.
//!
//! A sender that never sets the marker still works: a new timestamp ends what is pending.
//!
//! After a loss, the next packet may be a whole element or the tail of one whose start was
//! lost, and fragments carry no start flag (§6.1): a tail can parse as a valid element by
//! chance. So after a sequence gap the packets are skipped up to the next marker or the next
//! new timestamp, whichever comes first: one more frame may be lost, none is invented.

use super::{reserve_capped, Ctx};
use crate::ingest::sdp::LatmFormat;
use crate::ingest::{DropReason, Frame, MAX_ACCESS_UNIT};

/// Most access units one packet (or one reassembled element) may carry; past it the data is
/// malformed. A 64 KiB packet of one-byte AUs would hold fewer.
const MAX_UNITS: usize = 32 * 1024;

/// The element being gathered from fragments.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The timestamp of its packets.
    ts: i64,
    /// Set when it is already lost (too large): its remaining fragments are skipped until
    /// the marker.
    skip: Option<DropReason>,
}

/// Skipping after a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    /// Not skipping.
    Off,
    /// The next packet is skipped, whatever its timestamp.
    Next,
    /// Packets with this timestamp are skipped (the element the first skipped one was in).
    Timestamp(i64),
}

/// Reassembles access units from RFC 6416 payloads.
#[derive(Debug)]
pub(super) struct LatmDepacketizer {
    /// Subframes per element and ticks per access unit.
    format: LatmFormat,
    /// Bytes of the fragmented element so far; reused.
    buf: Vec<u8>,
    /// The fragmented element in progress.
    pending: Option<Pending>,
    /// Skipping after a loss.
    resync: Resync,
    /// Access unit boundaries of the data being emitted; reused.
    units: Vec<(usize, usize)>,
}

impl LatmDepacketizer {
    /// A depacketizer for elements of this shape.
    pub(super) fn new(format: LatmFormat) -> Self {
        LatmDepacketizer {
            format,
            buf: Vec::new(),
            pending: None,
            resync: Resync::Off,
            units: Vec::new(),
        }
    }

    /// Packets were lost: the element in progress, or else one the lost packets held, is
    /// counted as incomplete, and packets are skipped until the stream is in step again.
    pub(super) fn on_gap(&mut self, ctx: &mut Ctx<'_>) {
        match self.pending.take() {
            // Already counted (too large).
            Some(Pending { skip: Some(_), .. }) => {}
            Some(Pending { skip: None, .. }) | None => {
                if self.resync == Resync::Off {
                    ctx.stats.drop_frame(DropReason::Incomplete);
                }
            }
        }
        self.buf.clear();
        self.resync = Resync::Next;
    }

    /// Takes one packet's payload.
    pub(super) fn push(&mut self, payload: &[u8], ts: i64, marker: bool, ctx: &mut Ctx<'_>) {
        match self.resync {
            Resync::Off => {}
            Resync::Timestamp(t) if t != ts => self.resync = Resync::Off,
            Resync::Next | Resync::Timestamp(_) => {
                self.resync = if marker {
                    Resync::Off
                } else {
                    Resync::Timestamp(ts)
                };
                return;
            }
        }
        if let Some(p) = self.pending {
            if p.ts != ts {
                // The element's last fragment never came (or the sender sets no marker).
                self.finish(ctx);
            }
        }
        match self.pending {
            None if marker => self.emit_elements(payload, ts, ctx),
            None => {
                self.buf.clear();
                self.pending = Some(Pending { ts, skip: None });
                self.append(payload, ctx);
            }
            Some(_) => {
                self.append(payload, ctx);
                if marker {
                    self.finish(ctx);
                }
            }
        }
    }

    /// Adds a fragment to the pending element, unless it is lost or would grow past the cap.
    fn append(&mut self, data: &[u8], ctx: &mut Ctx<'_>) {
        let Some(p) = &mut self.pending else {
            return;
        };
        if p.skip.is_some() {
            return;
        }
        if self.buf.len() + data.len() > MAX_ACCESS_UNIT {
            ctx.stats.drop_frame(DropReason::TooLarge);
            p.skip = Some(DropReason::TooLarge);
            self.buf.clear();
            return;
        }
        reserve_capped(&mut self.buf, data.len());
        self.buf.extend_from_slice(data);
    }

    /// The pending element ends: its access units are emitted if it is whole.
    fn finish(&mut self, ctx: &mut Ctx<'_>) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if p.skip.is_none() {
            let buf = std::mem::take(&mut self.buf);
            self.emit_elements(&buf, p.ts, ctx);
            self.buf = buf;
        }
        self.buf.clear();
    }

    /// Emits the access units of `data`, whole AudioMuxElements, the first at `ts`; if it is
    /// not exactly that, emits nothing and counts one malformed frame.
    fn emit_elements(&mut self, data: &[u8], ts: i64, ctx: &mut Ctx<'_>) {
        if !self.split_units(data) {
            ctx.stats.drop_frame(DropReason::Malformed);
            return;
        }
        let step = i64::from(self.format.frame_length);
        let mut pts = ts;
        for &(start, end) in &self.units {
            if let Some(au) = data.get(start..end) {
                ctx.emit(Frame {
                    track: ctx.track,
                    pts,
                    dts: pts,
                    sync: true,
                    data: au,
                });
            }
            pts += step;
        }
    }

    /// Fills `units` with the byte ranges of the access units in `data`; false unless `data`
    /// is one or more whole elements of non-empty access units, within [`MAX_UNITS`].
    fn split_units(&mut self, data: &[u8]) -> bool {
        self.units.clear();
        if data.is_empty() {
            return false;
        }
        let mut pos = 0usize;
        while pos < data.len() {
            for _ in 0..self.format.sub_frames {
                // PayloadLengthInfo: MuxSlotLengthBytes, 255 means "and more".
                let mut len = 0usize;
                loop {
                    let Some(&b) = data.get(pos) else {
                        return false;
                    };
                    pos += 1;
                    len += usize::from(b);
                    if b != 255 {
                        break;
                    }
                }
                let end = pos + len;
                if len == 0 || end > data.len() || self.units.len() == MAX_UNITS {
                    return false;
                }
                self.units.push((pos, end));
                pos = end;
            }
        }
        true
    }

    /// Bytes reserved for fragmented elements.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}
