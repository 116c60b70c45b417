//! MPEG-2 transport stream reader (ISO/IEC 13818-1): indexes a `.ts` file held in memory into
//! one track of [`Codec::Mp2t`] whose samples are runs of at most [`MAX_RUN_PACKETS`] whole,
//! contiguous 188-byte TS packets — the payload of one RFC 2250 §2 RTP packet each, sent
//! straight from the mapping.
//!
//! What is read (and nothing else: the elementary streams pass through untouched):
//! - §2.4.3.2 the packet header (sync byte 0x47, PID, `payload_unit_start_indicator`,
//!   `adaptation_field_control`);
//! - §2.4.3.4/§2.4.3.5 the adaptation field: `discontinuity_indicator`,
//!   `random_access_indicator` and the PCR (`program_clock_reference_base` at 90 kHz; the
//!   27 MHz extension is ignored: RTP/MP2T runs on the 90 kHz clock, RFC 3551 §6 PT 33);
//! - §2.4.4.3 the PAT (first program's PMT PID) and §2.4.4.8 the PMT (`PCR_PID` and the
//!   elementary streams' PIDs and `stream_type`s, for the catalog and for sync detection).
//!
//! Timing: each run's time is the PCR timeline interpolated linearly in byte position between
//! the PCRs of the PCR PID (ISO/IEC 13818-1 §2.4.2.2: bytes arrive at a constant rate between
//! two PCRs), taken at the run's first byte — RFC 2250 §2's "target transmission time for the
//! first byte of the packet payload". Runs are cut only when full or at a gap, not at PCRs,
//! so nearly every RTP packet carries the full seven.
//! The timeline starts at 0 at the first PCR and is kept monotonic: a PCR that wraps (2^33)
//! continues it; one flagged by `discontinuity_indicator`, or one that jumps by more than
//! [`MAX_PCR_STEP`] or goes backwards, continues it at the byte rate of the interval before.
//! Runs before the first PCR are at 0. The PES headers' PTS are read only to learn how far
//! presentation runs ahead of the PCR (`Mp2tConfig::presentation_lead`), which the duration
//! includes.
//!
//! Sync samples (where a seek lands): runs holding a packet with `random_access_indicator` on
//! the first video PID of the PMT (on any PID when the program has no video). When no such
//! packet exists at all, every run is a sync sample: a seek then lands at the requested byte
//! position and the player's decoder recovers at the next keyframe.
//!
//! Damage: bytes that are not at a 0x47 sync byte are skipped up to the next position whose
//! next packets also start with 0x47 (counted and logged once per file); a run never spans
//! such a gap. A truncated last packet is ignored. A file without PAT/PMT or with fewer than
//! two PCRs is refused ([`TsError`]). Nothing here panics on hostile bytes.

use crate::media::track::{Codec, MediaIndex, Mp2tConfig, Sample, TrackKind, TsStream};

/// Size of a transport stream packet (ISO/IEC 13818-1 §2.4.3.2).
pub const TS_PACKET_LEN: usize = 188;
/// Most TS packets in one RTP packet: 7 × 188 = 1316 bytes, what live555 and VLC send, fits
/// a 1500-byte Ethernet MTU with IP, UDP and RTP headers (RFC 2250 §2 allows any whole number).
pub const MAX_RUN_PACKETS: usize = 7;
/// Largest PCR step (90 kHz ticks, 1 s) taken as continuous; a larger one is a jump.
pub const MAX_PCR_STEP: u64 = 90_000;
/// The PCR base wraps at 2^33 (ISO/IEC 13818-1 §2.4.3.5: 33-bit field).
const PCR_WRAP: u64 = 1 << 33;
/// Largest PTS lead over the PCR taken as a muxer's buffering delay (10 s); a larger one is
/// a discontinuity or garbage and is ignored.
const MAX_PRESENTATION_LEAD: u64 = 10 * 90_000;
/// Sync byte (ISO/IEC 13818-1 §2.4.3.2).
const SYNC: u8 = 0x47;

/// Why a file is not served as MPEG-TS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// No position in the file has sync bytes at a 188-byte stride.
    #[error("not an mpeg transport stream (no 0x47 sync bytes 188 bytes apart)")]
    NotTs,
    /// No PAT with a program, or no PMT for it.
    #[error("mpeg-ts: no program (PAT/PMT) found")]
    NoProgram,
    /// The PCR PID carries fewer than two PCRs: the stream cannot be paced.
    #[error("mpeg-ts: fewer than two PCRs on PCR PID {0:#06x}; cannot pace the stream")]
    NoPcr(u16),
}

/// True when `bytes` look like a transport stream: sync bytes at 0, 188 and 376 (as many of
/// them as the file holds, at least one whole packet).
pub fn looks_like_ts(bytes: &[u8]) -> bool {
    bytes.len() >= TS_PACKET_LEN
        && [0, TS_PACKET_LEN, 2 * TS_PACKET_LEN]
            .iter()
            .all(|&p| bytes.get(p).is_none_or(|&b| b == SYNC))
}

/// True when a packet may start at `pos`: a sync byte there and at the next two packet
/// starts that lie inside the file.
fn sync_at(bytes: &[u8], pos: usize) -> bool {
    bytes.get(pos) == Some(&SYNC)
        && [TS_PACKET_LEN, 2 * TS_PACKET_LEN].iter().all(|&d| {
            pos.checked_add(d)
                .and_then(|q| bytes.get(q))
                .is_none_or(|&b| b == SYNC)
        })
}

/// Walks whole packets, skipping garbage between them (module doc).
struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    garbage: u64,
    resyncs: u64,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8]) -> Option<Self> {
        let start = (0..bytes.len()).find(|&p| sync_at(bytes, p))?;
        Some(Self {
            bytes,
            pos: start,
            garbage: start as u64,
            resyncs: u64::from(start > 0),
        })
    }

    /// A packet at `pos` is taken when it starts with a sync byte and so does the next or
    /// the one after (or the file ends first): garbage that happens to start with 0x47 is
    /// not, and one damaged sync byte loses one packet, not two.
    fn plausible(&self, pos: usize) -> bool {
        let at = |d: usize| pos.checked_add(d).map(|q| self.bytes.get(q));
        at(0) == Some(Some(&SYNC))
            && [TS_PACKET_LEN, 2 * TS_PACKET_LEN]
                .iter()
                .any(|&d| matches!(at(d), Some(None | Some(&SYNC)) | None))
    }

    /// The next whole packet and its offset; `None` at the end (a truncated tail is ignored).
    fn next_packet(&mut self) -> Option<(usize, &'a [u8])> {
        loop {
            let end = self.pos.checked_add(TS_PACKET_LEN)?;
            let pkt = self.bytes.get(self.pos..end)?;
            if self.plausible(self.pos) {
                let at = self.pos;
                self.pos = end;
                return Some((at, pkt));
            }
            let from = self.pos + 1;
            let next = (from..self.bytes.len()).find(|&p| sync_at(self.bytes, p));
            let to = next.unwrap_or(self.bytes.len());
            self.garbage += (to - self.pos) as u64;
            self.resyncs += 1;
            self.pos = to;
        }
    }
}

/// The fields of one packet this reader uses (ISO/IEC 13818-1 §2.4.3.2, §2.4.3.4).
#[derive(Debug, Default)]
struct Packet<'a> {
    pid: u16,
    unit_start: bool,
    discontinuity: bool,
    random_access: bool,
    /// `program_clock_reference_base` (90 kHz).
    pcr: Option<u64>,
    payload: &'a [u8],
}

/// Parses the header and adaptation field of a 188-byte packet; `None` for a packet flagged
/// with `transport_error_indicator` or whose adaptation field overruns it.
fn parse_packet(pkt: &[u8]) -> Option<Packet<'_>> {
    let h = pkt.get(..4)?;
    if h[1] & 0x80 != 0 {
        return None;
    }
    let mut p = Packet {
        pid: u16::from_be_bytes([h[1] & 0x1f, h[2]]),
        unit_start: h[1] & 0x40 != 0,
        ..Packet::default()
    };
    let control = (h[3] >> 4) & 0x3;
    let mut payload_start = 4;
    if control & 0x2 != 0 {
        let af_len = usize::from(*pkt.get(4)?);
        let af = pkt.get(5..5 + af_len)?;
        payload_start = 5 + af_len;
        if let Some(&flags) = af.first() {
            p.discontinuity = flags & 0x80 != 0;
            p.random_access = flags & 0x40 != 0;
            if flags & 0x10 != 0 {
                if let Some(b) = af.get(1..6) {
                    // §2.4.3.5: 33-bit base, 6 reserved bits, 9-bit extension.
                    p.pcr = Some(
                        u64::from(b[0]) << 25
                            | u64::from(b[1]) << 17
                            | u64::from(b[2]) << 9
                            | u64::from(b[3]) << 1
                            | u64::from(b[4] >> 7),
                    );
                }
            }
        }
    }
    if control & 0x1 != 0 {
        p.payload = pkt.get(payload_start..).unwrap_or_default();
    }
    Some(p)
}

/// The section starting in a packet's payload (§2.4.4.2 `pointer_field`), as (table_id,
/// the bytes after `section_length` up to and without the CRC_32). Sections continued in a
/// later packet are not reassembled (PAT and PMT fit one packet in practice); `None` then.
fn section(payload: &[u8]) -> Option<(u8, &[u8])> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    let table_id = *s.first()?;
    let len = usize::from(u16::from_be_bytes([*s.get(1)? & 0x0f, *s.get(2)?]));
    let body = s.get(3..3 + len)?;
    Some((table_id, body.get(..len.checked_sub(4)?)?))
}

/// The PMT PID of the first program of a PAT section body (§2.4.4.3).
fn pat_pmt_pid(body: &[u8]) -> Option<u16> {
    body.get(5..)?
        .chunks_exact(4)
        .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| u16::from_be_bytes([e[2] & 0x1f, e[3]]))
}

/// PCR PID and elementary streams of a PMT section body (§2.4.4.8).
fn pmt(body: &[u8]) -> Option<(u16, Vec<TsStream>)> {
    let pcr_pid = u16::from_be_bytes([*body.get(5)? & 0x1f, *body.get(6)?]);
    let info_len = usize::from(u16::from_be_bytes([*body.get(7)? & 0x0f, *body.get(8)?]));
    let mut rest = body.get(9 + info_len..)?;
    let mut streams = Vec::new();
    while let Some(e) = rest.get(..5) {
        let es_len = usize::from(u16::from_be_bytes([e[3] & 0x0f, e[4]]));
        streams.push(TsStream {
            stream_type: e[0],
            pid: u16::from_be_bytes([e[1] & 0x1f, e[2]]),
        });
        rest = rest.get(5 + es_len..).unwrap_or_default();
    }
    Some((pcr_pid, streams))
}

/// The PTS of a PES packet header starting `payload` (ISO/IEC 13818-1 §2.4.3.6-§2.4.3.7:
/// `packet_start_code_prefix`, `stream_id`, `PES_packet_length`, flags, then the PTS when
/// `PTS_DTS_flags` is `10` or `11`), if it has one.
fn pes_pts(payload: &[u8]) -> Option<u64> {
    let h = payload.get(..14)?;
    if h[..3] != [0, 0, 1] || h[7] & 0x80 == 0 || h[6] & 0xc0 != 0x80 {
        return None;
    }
    Some(
        u64::from((h[9] >> 1) & 0x07) << 30
            | u64::from(h[10]) << 22
            | u64::from(h[11] >> 1) << 15
            | u64::from(h[12]) << 7
            | u64::from(h[13] >> 1),
    )
}

/// Finds the first program's PMT: its PCR PID and streams.
fn find_program(bytes: &[u8]) -> Option<(u16, Vec<TsStream>)> {
    let mut walker = Walker::new(bytes)?;
    let mut pmt_pid = None;
    while let Some((_, pkt)) = walker.next_packet() {
        let Some(p) = parse_packet(pkt) else { continue };
        if !p.unit_start {
            continue;
        }
        match (p.pid, pmt_pid) {
            (0, None) => {
                if let Some((0x00, body)) = section(p.payload) {
                    pmt_pid = pat_pmt_pid(body);
                }
            }
            (pid, Some(want)) if pid == want => {
                if let Some((0x02, body)) = section(p.payload) {
                    if let Some(found) = pmt(body) {
                        return Some(found);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// One run under construction: its samples entry and whether it is complete.
struct RunBuilder {
    samples: Vec<Sample>,
    open: Option<(usize, usize, bool)>,
}

impl RunBuilder {
    /// Adds the packet at `at`; starts a new run when the run is full or `at` does not follow it.
    fn push(&mut self, at: usize, sync: bool) {
        if let Some((start, count, s)) = &mut self.open {
            if *count < MAX_RUN_PACKETS && *start + *count * TS_PACKET_LEN == at {
                *count += 1;
                *s |= sync;
                return;
            }
        }
        self.close();
        self.open = Some((at, 1, sync));
    }

    fn close(&mut self) {
        if let Some((start, count, sync)) = self.open.take() {
            self.samples.push(Sample {
                offset: start as u64,
                len: (count * TS_PACKET_LEN) as u32,
                dts: 0,
                cts_offset: 0,
                sync,
            });
        }
    }
}

/// Counters of one indexing, for the log line and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TsStats {
    /// Bytes skipped outside packets.
    pub garbage_bytes: u64,
    /// Times the reader lost sync and searched for the next packet.
    pub resyncs: u64,
    /// PCR discontinuities and jumps the timeline was continued across.
    pub pcr_jumps: u64,
}

/// Parses a transport stream held in memory into its one-track index.
pub fn parse_ts(bytes: &[u8]) -> Result<MediaIndex, TsError> {
    parse_ts_with_stats(bytes).map(|(index, _)| index)
}

/// [`parse_ts`], also returning what damage was skipped (the caller logs it, with the file's
/// name: `media::library`).
pub fn parse_ts_with_stats(bytes: &[u8]) -> Result<(MediaIndex, TsStats), TsError> {
    let mut walker = Walker::new(bytes).ok_or(TsError::NotTs)?;
    let (pcr_pid, streams) = find_program(bytes).ok_or(TsError::NoProgram)?;
    let video_pid = streams
        .iter()
        .find(|s| stream_type_is_video(s.stream_type))
        .map(|s| s.pid);
    let mut runs = RunBuilder {
        samples: Vec::new(),
        open: None,
    };
    // PCR points: (byte offset, timeline ticks).
    let mut points: Vec<(u64, u64)> = Vec::new();
    let mut last_pcr: Option<u64> = None;
    let mut rate: Option<f64> = None;
    let mut stats = TsStats::default();
    let mut any_random_access = false;
    let mut lead = 0u64;
    while let Some((at, pkt)) = walker.next_packet() {
        let p = parse_packet(pkt).unwrap_or_default();
        let sync = p.random_access && video_pid.is_none_or(|v| v == p.pid);
        any_random_access |= sync;
        let pcr = if p.pid == pcr_pid { p.pcr } else { None };
        runs.push(at, sync);
        if let (true, Some(prev)) = (p.unit_start, last_pcr) {
            if streams.iter().any(|s| s.pid == p.pid) {
                if let Some(pts) = pes_pts(p.payload) {
                    let ahead = (pts + PCR_WRAP - prev) % PCR_WRAP;
                    if ahead <= MAX_PRESENTATION_LEAD {
                        lead = lead.max(ahead);
                    }
                }
            }
        }
        let Some(pcr) = pcr else { continue };
        let t = match (points.last(), last_pcr) {
            (Some(&(last_at, last_t)), Some(prev)) => {
                let bytes_between = (at as u64).saturating_sub(last_at);
                let step = (pcr + PCR_WRAP - prev) % PCR_WRAP;
                if p.discontinuity || step > MAX_PCR_STEP {
                    // Continue the timeline at the byte rate seen before the jump.
                    stats.pcr_jumps += 1;
                    let est = rate.map_or(0.0, |r| r * bytes_between as f64);
                    last_t.saturating_add(est.round() as u64)
                } else {
                    if bytes_between > 0 {
                        rate = Some(step as f64 / bytes_between as f64);
                    }
                    last_t.saturating_add(step)
                }
            }
            _ => 0,
        };
        last_pcr = Some(pcr);
        points.push((at as u64, t));
    }
    runs.close();
    stats.garbage_bytes = walker.garbage;
    stats.resyncs = walker.resyncs;
    if points.len() < 2 {
        return Err(TsError::NoPcr(pcr_pid));
    }
    let mut samples = runs.samples;
    interpolate(&mut samples, &points);
    if !any_random_access {
        for s in &mut samples {
            s.sync = true;
        }
    }
    let track = crate::media::track::Track {
        track_id: u32::from(pcr_pid),
        kind: TrackKind::Video,
        codec: Codec::Mp2t(Mp2tConfig {
            pcr_pid,
            streams,
            presentation_lead: lead as u32,
        }),
        timescale: 90_000,
        edit_offset: 0,
        samples,
    };
    Ok((
        MediaIndex {
            tracks: vec![track],
            skipped: Vec::new(),
        },
        stats,
    ))
}

/// Sets each run's time from the PCR `points` (sorted by offset, times non-decreasing):
/// linear in byte offset between two points, extrapolated at the last interval's rate after
/// the last one, 0 before the first.
fn interpolate(samples: &mut [Sample], points: &[(u64, u64)]) {
    let mut k = 0;
    for s in samples.iter_mut() {
        while k + 1 < points.len() && points[k + 1].0 <= s.offset {
            k += 1;
        }
        let (a_at, a_t) = points[k];
        if s.offset < a_at {
            s.dts = 0;
            continue;
        }
        // After the last point, extrapolate with the last interval.
        let (lo, hi) = if k + 1 < points.len() {
            (points[k], points[k + 1])
        } else {
            (points[k.saturating_sub(1)], points[k])
        };
        let span_bytes = hi.0.saturating_sub(lo.0);
        let span_t = hi.1.saturating_sub(lo.1);
        let extra = if span_bytes == 0 {
            0
        } else {
            (u128::from(s.offset - a_at) * u128::from(span_t) / u128::from(span_bytes)) as u64
        };
        s.dts = a_t.saturating_add(extra);
    }
}

/// Whether an ISO/IEC 13818-1 Table 2-34 `stream_type` is video (MPEG-1/2 video, MPEG-4
/// part 2, H.264, H.265, and 0xea VC-1 as SMPTE registers it).
pub fn stream_type_is_video(stream_type: u8) -> bool {
    matches!(stream_type, 0x01 | 0x02 | 0x10 | 0x1b | 0x24 | 0xea)
}

/// Short name of a `stream_type` for the catalog (ISO/IEC 13818-1 Table 2-34; 0x81/0x87 are
/// ATSC A/52 AC-3 and E-AC-3).
pub fn stream_type_name(stream_type: u8) -> &'static str {
    match stream_type {
        0x01 => "MPEG-1 video",
        0x02 => "MPEG-2 video",
        0x03 => "MPEG-1 audio",
        0x04 => "MPEG-2 audio",
        0x06 => "private data",
        0x0f => "AAC",
        0x10 => "MPEG-4 video",
        0x11 => "AAC (LATM)",
        0x15 => "metadata",
        0x1b => "H.264",
        0x24 => "H.265",
        0x81 => "AC-3",
        0x87 => "E-AC-3",
        0xea => "VC-1",
        _ => "other",
    }
}

/// Fuzz entry point: indexes `data` as a transport stream (must never panic) and checks the
/// index's invariants: runs of whole packets inside the data, times non-decreasing.
#[cfg(any(test, fuzzing))]
pub fn fuzz_parse_ts(data: &[u8]) {
    let _ = looks_like_ts(data);
    if let Ok((index, _)) = parse_ts_with_stats(data) {
        let mut last = 0;
        for s in &index.tracks[0].samples {
            assert!((s.len as usize).is_multiple_of(TS_PACKET_LEN) && s.len > 0);
            assert!(s.len as usize <= MAX_RUN_PACKETS * TS_PACKET_LEN);
            assert!(s.offset + u64::from(s.len) <= data.len() as u64);
            assert!(s.dts >= last, "times are monotonic");
            last = s.dts;
        }
        let _ = index.duration();
    }
}

#[cfg(test)]
mod tests;
