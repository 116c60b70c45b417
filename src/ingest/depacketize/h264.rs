//! H.264 RTP payload (RFC 6184) → access units in AVCC form (each NAL unit prefixed by its
//! 4-byte big-endian length, ISO/IEC 14496-15 §5.3.2).
//!
//! Accepted: single NAL unit packets (§5.6), STAP-A (§5.7.1) and FU-A (§5.8), the packet
//! types of packetization modes 0 and 1 (mode 0 allows only the first, but senders that mix
//! them are still understood). STAP-B, MTAP16/24 and FU-B belong to the interleaved mode, and
//! NAL types 0, 30 and 31 are reserved or undefined (§5.2): their frames count as malformed.
//!
//! ```text
//! §5.8 FU-A: FU indicator, FU header, fragment
//! +---------------+---------------+
//! |0|1|2|3|4|5|6|7|0|1|2|3|4|5|6|7|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |F|NRI|  Type=28|S|E|R|  Type   |   fragment of the NAL unit's payload ...
//! +---------------+---------------+
//! ```
//!
//! An access unit is all NAL units with one timestamp (§5.1): it ends at the packet with the
//! marker bit, or at the first packet with another timestamp when a sender omits the marker.

use super::{reserve_capped, Ctx};
use crate::ingest::sdp::h264_config_from_sps;
use crate::ingest::{DropReason, Frame, MAX_ACCESS_UNIT};
use crate::media::track::H264Config;

/// NAL unit type of an IDR slice (H.264 Table 7-1).
const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
const NAL_PPS: u8 = 8;
/// RFC 6184 §5.2 Table 1: STAP-A.
const STAP_A: u8 = 24;
/// RFC 6184 §5.2 Table 1: FU-A.
const FU_A: u8 = 28;
/// Bytes of the AVCC length prefix.
const LENGTH_SIZE: usize = 4;

/// Reassembles access units from RFC 6184 payloads.
#[derive(Debug)]
pub(super) struct H264Depacketizer {
    /// The access unit being assembled, in AVCC form; reused from frame to frame.
    au: Vec<u8>,
    /// The unfolded timestamp of the open access unit; `None` between access units.
    au_ts: Option<i64>,
    /// Set when the open access unit is lost: its packets are skipped until it ends.
    broken: Option<DropReason>,
    /// While an FU-A is reassembled: the offset of its length prefix in `au` and its type.
    fu: Option<(usize, u8)>,
    /// The SPS last seen (announced or in-band), with its NAL header.
    sps: Vec<u8>,
    /// The PPS last seen.
    pps: Vec<u8>,
    /// The sets changed since the last [`H264Depacketizer::parameter_sets_changed`].
    sets_changed: bool,
}

impl H264Depacketizer {
    /// A depacketizer that knows the announced parameter sets (so in-band repeats of them are
    /// not reported as changes).
    pub(super) fn new(config: &H264Config) -> Self {
        H264Depacketizer {
            au: Vec::new(),
            au_ts: None,
            broken: None,
            fu: None,
            sps: config.sps.first().cloned().unwrap_or_default(),
            pps: config.pps.first().cloned().unwrap_or_default(),
            sets_changed: false,
        }
    }

    /// Packets were lost before the next one: the open access unit cannot be complete.
    pub(super) fn on_gap(&mut self) {
        if self.au_ts.is_some() {
            self.break_au(DropReason::Incomplete);
        }
    }

    /// Takes one packet's payload.
    pub(super) fn push(&mut self, payload: &[u8], ts: i64, marker: bool, ctx: &mut Ctx<'_>) {
        if self.au_ts.is_some_and(|open| open != ts) {
            // §5.1: a new timestamp means the previous access unit is over (its marker lost
            // or never set).
            self.finish(ctx);
        }
        self.au_ts = Some(ts);
        if self.broken.is_none() {
            if let Err(reason) = self.take_payload(payload) {
                self.break_au(reason);
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc6184#section-5.1
        //# Marker bit (M): 1 bit
        //#    Set for the very last packet of the access unit indicated by the
        //#    RTP timestamp, in line with the normal use of the M bit in video
        //#    formats, to allow an efficient playout buffer handling.
        if marker {
            self.finish(ctx);
        }
    }

    /// Drops what the open access unit holds and skips its remaining packets.
    fn break_au(&mut self, reason: DropReason) {
        if self.broken.is_none() {
            self.broken = Some(reason);
        }
        self.au.clear();
        self.fu = None;
    }

    /// Ends the open access unit: emits it, or counts why it was dropped.
    fn finish(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ts) = self.au_ts.take() else {
            return;
        };
        if self.fu.is_some() {
            // An FU-A without its end fragment (§5.8: the E bit).
            self.break_au(DropReason::Incomplete);
        }
        match self.broken.take() {
            Some(reason) => ctx.stats.drop_frame(reason),
            None if self.au.is_empty() => {}
            None => {
                let sync = self.scan_nal_units();
                ctx.emit(Frame {
                    track: ctx.track,
                    pts: ts,
                    dts: ts,
                    sync,
                    data: &self.au,
                });
            }
        }
        self.au.clear();
        self.fu = None;
    }

    /// Walks the finished access unit: true if it holds an IDR slice; records in-band SPS
    /// and PPS that differ from the last ones (copying only on a change).
    fn scan_nal_units(&mut self) -> bool {
        let mut sync = false;
        let mut rest = &self.au[..];
        while let Some((len, tail)) = rest.split_first_chunk::<LENGTH_SIZE>() {
            let len = u32::from_be_bytes(*len) as usize;
            let Some((nal, after)) = tail.split_at_checked(len) else {
                break;
            };
            match nal.first().map(|h| h & 0x1f) {
                Some(NAL_IDR) => sync = true,
                Some(NAL_SPS) if nal != self.sps.as_slice() => {
                    self.sps.clear();
                    self.sps.extend_from_slice(nal);
                    self.sets_changed = true;
                }
                Some(NAL_PPS) if nal != self.pps.as_slice() => {
                    self.pps.clear();
                    self.pps.extend_from_slice(nal);
                    self.sets_changed = true;
                }
                _ => {}
            }
            rest = after;
        }
        sync
    }

    /// Appends the NAL units of one payload (§5.2: the type in the first byte's low 5 bits
    /// names the packet structure).
    fn take_payload(&mut self, payload: &[u8]) -> Result<(), DropReason> {
        let (&header, body) = payload.split_first().ok_or(DropReason::Malformed)?;
        match header & 0x1f {
            // §5.6 single NAL unit packet: the payload is the NAL unit.
            1..=23 => {
                self.expect_no_fragment()?;
                self.append_nal(payload)
            }
            STAP_A => {
                self.expect_no_fragment()?;
                self.take_stap_a(body)
            }
            FU_A => self.take_fu_a(header, body),
            // 0, 30, 31: reserved/undefined (§5.2); 25-27, 29: STAP-B, MTAP16, MTAP24, FU-B,
            // interleaved mode only (§6.2, §6.3: mode 1 forbids them).
            _ => Err(DropReason::Malformed),
        }
    }

    /// A NAL unit that is not an FU-A continuation may not interrupt an FU-A: the rest of the
    /// fragmented NAL unit was lost (§5.8: its fragments are sent consecutively).
    fn expect_no_fragment(&self) -> Result<(), DropReason> {
        match self.fu {
            Some(_) => Err(DropReason::Incomplete),
            None => Ok(()),
        }
    }

    /// The NAL units of a STAP-A payload after its header.
    ///
    /// ```text
    /// §5.7.1: STAP-A NAL HDR | NALU 1 Size (16) | NALU 1 HDR | NALU 1 Data | NALU 2 Size ...
    /// ```
    fn take_stap_a(&mut self, mut body: &[u8]) -> Result<(), DropReason> {
        if body.is_empty() {
            return Err(DropReason::Malformed);
        }
        while !body.is_empty() {
            let (size, rest) = body.split_first_chunk::<2>().ok_or(DropReason::Malformed)?;
            let size = usize::from(u16::from_be_bytes(*size));
            let (nal, rest) = rest.split_at_checked(size).ok_or(DropReason::Malformed)?;
            // §5.7.1: aggregated units are NAL units proper (types 1-23), never empty.
            match nal.first().map(|h| h & 0x1f) {
                Some(1..=23) => self.append_nal(nal)?,
                _ => return Err(DropReason::Malformed),
            }
            body = rest;
        }
        Ok(())
    }

    /// One FU-A (§5.8): starts, continues or ends the fragmented NAL unit.
    fn take_fu_a(&mut self, indicator: u8, body: &[u8]) -> Result<(), DropReason> {
        let (&fu_header, fragment) = body.split_first().ok_or(DropReason::Malformed)?;
        let start = fu_header & 0x80 != 0;
        let end = fu_header & 0x40 != 0;
        let nal_type = fu_header & 0x1f;
        if !matches!(nal_type, 1..=23) {
            return Err(DropReason::Malformed);
        }
        if start {
            self.expect_no_fragment()?;
            // §5.8: the reassembled header takes F and NRI from the FU indicator and the type
            // from the FU header.
            self.reserve(LENGTH_SIZE + 1 + fragment.len())?;
            let at = self.au.len();
            self.au.extend_from_slice(&[0; LENGTH_SIZE]);
            self.au.push((indicator & 0xe0) | nal_type);
            self.au.extend_from_slice(fragment);
            self.fu = Some((at, nal_type));
        } else {
            // A continuation without its start: the start was lost (or never sent).
            let (_, open_type) = self.fu.ok_or(DropReason::Incomplete)?;
            if open_type != nal_type {
                return Err(DropReason::Malformed);
            }
            self.reserve(fragment.len())?;
            self.au.extend_from_slice(fragment);
        }
        if end {
            if let Some((at, _)) = self.fu.take() {
                let len = self.au.len() - at - LENGTH_SIZE;
                // `reserve` kept the unit within MAX_ACCESS_UNIT, far below u32::MAX.
                let len = u32::try_from(len).map_err(|_| DropReason::TooLarge)?;
                if let Some(prefix) = self.au.get_mut(at..at + LENGTH_SIZE) {
                    prefix.copy_from_slice(&len.to_be_bytes());
                }
            }
        }
        Ok(())
    }

    /// Appends one whole NAL unit with its length prefix.
    fn append_nal(&mut self, nal: &[u8]) -> Result<(), DropReason> {
        self.reserve(LENGTH_SIZE + nal.len())?;
        let len = u32::try_from(nal.len()).map_err(|_| DropReason::TooLarge)?;
        self.au.extend_from_slice(&len.to_be_bytes());
        self.au.extend_from_slice(nal);
        Ok(())
    }

    /// Makes room for `extra` bytes, or refuses when the access unit would pass
    /// [`MAX_ACCESS_UNIT`] (the buffer is not grown for it).
    fn reserve(&mut self, extra: usize) -> Result<(), DropReason> {
        if self.au.len() + extra > MAX_ACCESS_UNIT {
            return Err(DropReason::TooLarge);
        }
        reserve_capped(&mut self.au, extra);
        Ok(())
    }

    /// A configuration with the newest parameter sets, once per change.
    pub(super) fn parameter_sets_changed(&mut self) -> Option<H264Config> {
        if !self.sets_changed || self.sps.is_empty() || self.pps.is_empty() {
            return None;
        }
        self.sets_changed = false;
        let mut config = h264_config_from_sps(&self.sps)?;
        config.pps = vec![self.pps.clone()];
        Some(config)
    }

    /// Bytes reserved for the access unit buffer.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.au.capacity()
    }
}
