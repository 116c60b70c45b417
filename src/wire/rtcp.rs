//! RTCP (RFC 3550 §6): allocation-free builders for the sender's compound packets (§6.1
//! compound rule: a report first, then SDES with a CNAME; SR §6.4.1, SDES §6.5, BYE §6.6) and a
//! validating compound parser (the header checks of Appendix A.2; RR §6.4.2, APP §6.7) for
//! tests and receiver-report statistics.
//!
//! ```text
//! SR (§6.4.1):
//!         0                   1                   2                   3
//!         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! header |V=2|P|    RC   |   PT=SR=200   |             length            |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                         SSRC of sender                        |
//!        +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! sender |              NTP timestamp, most significant word             |
//! info   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |             NTP timestamp, least significant word             |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                         RTP timestamp                         |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                     sender's packet count                     |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                      sender's octet count                     |
//!        +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! report |                 SSRC_1 (SSRC of first source)                 |
//! block  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   1    | fraction lost |       cumulative number of packets lost       |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |           extended highest sequence number received           |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                      interarrival jitter                      |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                         last SR (LSR)                         |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                   delay since last SR (DLSR)                  |
//!        +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//!
//! SDES (§6.5) with one CNAME item (§6.5.1), null-terminated and padded to 32 bits:
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! header |V=2|P|    SC   |  PT=SDES=202  |             length            |
//!        +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! chunk  |                          SSRC/CSRC_1                          |
//!   1    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |    CNAME=1    |     length    | user and domain name        ...
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! BYE (§6.6):
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |V=2|P|    SC   |   PT=BYE=203  |             length            |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!        |                           SSRC/CSRC                           |
//!        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::ntp::NtpTime;
use super::rtp::{RtpTimestamp, Ssrc};

mod feedback;
pub use feedback::{
    nacked_sequences, write_full_intra_request, write_generic_nack, write_picture_loss, Feedback,
    FMT_FIR, FMT_GENERIC_NACK, FMT_PLI, PT_PSFB, PT_RTPFB,
};

/// RTCP packet type: sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// RTCP packet type: receiver report (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// RTCP packet type: source description (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// RTCP packet type: goodbye (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// RTCP packet type: application-defined (RFC 3550 §6.7).
pub const PT_APP: u8 = 204;
/// SDES item type of the canonical name (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;
/// Longest CNAME written; longer ones are truncated (at a UTF-8 boundary).
pub const MAX_CNAME_LEN: usize = 64;
/// A buffer this size always suffices for [`write_sender_report`] and [`write_bye`].
pub const MAX_RTCP_COMPOUND: usize = 256;

const SR_LEN: usize = 28;
const BYE_LEN: usize = 8;

/// The sender-info part of an SR (RFC 3550 §6.4.1): who sends, and the NTP and RTP time of
/// the same instant with the cumulative counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// SSRC of the sender.
    pub ssrc: Ssrc,
    /// Wallclock time of the report.
    pub ntp: NtpTime,
    /// RTP timestamp of the same instant.
    pub rtp_timestamp: RtpTimestamp,
    /// RTP packets sent so far.
    pub packet_count: u32,
    /// RTP payload octets sent so far.
    pub octet_count: u32,
}

/// Compound SR (no report blocks) + SDES CNAME (§6.1 compound rule, §6.4.1 SR, §6.5 SDES).
/// Returns the length written, or 0 if `out` is too small (never with [`MAX_RTCP_COMPOUND`]).
pub fn write_sender_report(out: &mut [u8], sender: &SenderInfo, cname: &str) -> usize {
    let cname = truncate_cname(cname);
    let need = SR_LEN + sdes_len(cname.len());
    if out.len() < need {
        return 0;
    }
    let n = write_sr(out, sender);
    n + write_sdes_cname(&mut out[n..], sender.ssrc, cname)
}

/// Compound SR + SDES CNAME + BYE (§6.6) for the end of a stream.
/// Returns the length written, or 0 if `out` is too small (never with [`MAX_RTCP_COMPOUND`]).
pub fn write_bye(out: &mut [u8], sender: &SenderInfo, cname: &str) -> usize {
    let cname = truncate_cname(cname);
    let need = SR_LEN + sdes_len(cname.len()) + BYE_LEN;
    if out.len() < need {
        return 0;
    }
    let mut n = write_sr(out, sender);
    n += write_sdes_cname(&mut out[n..], sender.ssrc, cname);
    n + write_bye_packet(&mut out[n..], &[sender.ssrc])
}

/// Most report blocks one SR or RR carries (the 5-bit count field, §6.4.1), and most sources
/// one BYE names (§6.6).
pub const MAX_RTCP_COUNT: usize = 31;

/// Length of a receiver report carrying `blocks` report blocks (§6.4.2).
const fn rr_len(blocks: usize) -> usize {
    8 + REPORT_BLOCK_LEN * blocks
}

/// Length of one report block (§6.4.1).
const REPORT_BLOCK_LEN: usize = 24;

/// An RR from `reporter` with one report block per entry of `blocks` (§6.4.2), followed, when
/// `cname` is given, by an SDES CNAME for `reporter` (§6.5): the compound a receiver sends
/// (§6.1). Without `cname` the RR stands alone, as a test of a lenient receiver or the start
/// of a compound the caller continues (e.g. with [`write_bye_packet`]). Returns the length
/// written, or 0 if `out` is too small (a [`MAX_RTCP_COMPOUND`] buffer holds up to 7 blocks
/// with a CNAME) or there are more than [`MAX_RTCP_COUNT`] blocks.
pub fn write_receiver_report(
    out: &mut [u8],
    reporter: Ssrc,
    blocks: &[ReportBlock],
    cname: Option<&str>,
) -> usize {
    let cname = cname.map(truncate_cname);
    let rr = rr_len(blocks.len());
    let need = rr + cname.map_or(0, |c| sdes_len(c.len()));
    if blocks.len() > MAX_RTCP_COUNT || out.len() < need {
        return 0;
    }
    write_common_header(out, blocks.len() as u8, PT_RR, rr);
    out[4..8].copy_from_slice(&reporter.to_be_bytes());
    for (block, b) in blocks
        .iter()
        .zip(out[8..rr].chunks_exact_mut(REPORT_BLOCK_LEN))
    {
        write_report_block(b, block);
    }
    rr + cname.map_or(0, |c| write_sdes_cname(&mut out[rr..], reporter, c))
}

/// A BYE packet naming `sources` without a reason (§6.6), to append to a compound after its
/// report (§6.1). Returns the length written, or 0 if `out` is too small or there are more
/// than [`MAX_RTCP_COUNT`] sources.
pub fn write_bye_packet(out: &mut [u8], sources: &[Ssrc]) -> usize {
    let len = 4 + 4 * sources.len();
    if sources.len() > MAX_RTCP_COUNT || out.len() < len {
        return 0;
    }
    write_common_header(out, sources.len() as u8, PT_BYE, len);
    for (ssrc, b) in sources.iter().zip(out[4..len].chunks_exact_mut(4)) {
        b.copy_from_slice(&ssrc.to_be_bytes());
    }
    len
}

/// Writes one 24-byte report block (§6.4.1) into `b`.
fn write_report_block(b: &mut [u8], block: &ReportBlock) {
    b[0..4].copy_from_slice(&block.ssrc.to_be_bytes());
    // Fraction lost (8 bits) and cumulative lost (24-bit two's complement, clamped).
    let cumulative = (block.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0xff_ffff;
    b[4..8].copy_from_slice(&((u32::from(block.fraction_lost) << 24) | cumulative).to_be_bytes());
    b[8..12].copy_from_slice(&block.highest_seq.to_be_bytes());
    b[12..16].copy_from_slice(&block.jitter.to_be_bytes());
    b[16..20].copy_from_slice(&block.lsr.to_be_bytes());
    b[20..24].copy_from_slice(&block.dlsr.to_be_bytes());
}

/// Fuzzing entry point: validate arbitrary bytes as an RTCP compound; must never panic, and
/// the allocation-free [`visit_compound`] must agree with [`parse_compound`] on validity, on
/// the error, and on the report blocks and BYEs it shows.
#[cfg(any(test, fuzzing))]
pub fn fuzz_rtcp(data: &[u8]) {
    // Reduced-size RTCP (a lone feedback packet) goes through the same walk without the
    // report-first rule: it must not panic either.
    let _ = visit_reduced_size(data, |_| {});
    let parsed = parse_compound(data);
    if let Ok(packets) = &parsed {
        assert!(
            !packets.is_empty(),
            "a valid compound holds at least one packet"
        );
    }
    let mut seen = Vec::new();
    let visited = visit_compound(data, |item| seen.push(item));
    match (&parsed, visited) {
        (Ok(packets), Ok(())) => {
            let expected: Vec<RtcpItem> = packets
                .iter()
                .flat_map(|p| match p {
                    RtcpPacket::SenderReport { ssrc, blocks, .. }
                    | RtcpPacket::ReceiverReport { ssrc, blocks } => {
                        std::iter::once(RtcpItem::Report { ssrc: *ssrc })
                            .chain(blocks.iter().copied().map(RtcpItem::Block))
                            .collect()
                    }
                    RtcpPacket::Bye { ssrcs } => std::iter::once(RtcpItem::Bye)
                        .chain(ssrcs.iter().copied().map(RtcpItem::ByeSource))
                        .collect(),
                    RtcpPacket::Feedback { requests } => {
                        requests.iter().copied().map(RtcpItem::Feedback).collect()
                    }
                    _ => Vec::new(),
                })
                .collect();
            assert_eq!(
                seen, expected,
                "visit_compound shows what parse_compound parses"
            );
        }
        (Err(a), Err(b)) => assert_eq!(*a, b, "both reject with the same error"),
        (a, b) => panic!("parse_compound {a:?} but visit_compound {b:?}"),
    }
}

/// The CNAME bytes actually sent: at most [`MAX_CNAME_LEN`], cut at a char boundary.
fn truncate_cname(cname: &str) -> &[u8] {
    let mut end = cname.len().min(MAX_CNAME_LEN);
    while !cname.is_char_boundary(end) {
        end -= 1;
    }
    &cname.as_bytes()[..end]
}

/// Length of an SDES packet with one CNAME chunk: header, SSRC, item type+length+text, then
/// at least one null octet padding the chunk to a 32-bit boundary (§6.5).
fn sdes_len(cname_len: usize) -> usize {
    (4 + 4 + 2 + cname_len + 1).next_multiple_of(4)
}

/// Writes the 4-byte common header (§6.4.1): V=2, P=0, count, PT, length in words minus one.
fn write_common_header(out: &mut [u8], count: u8, pt: u8, len_bytes: usize) {
    out[0] = (2 << 6) | (count & 0x1f);
    out[1] = pt;
    out[2..4].copy_from_slice(&((len_bytes / 4 - 1) as u16).to_be_bytes());
}

/// Writes an SR without report blocks (§6.4.1); `out` holds at least 28 bytes.
fn write_sr(out: &mut [u8], sender: &SenderInfo) -> usize {
    write_common_header(out, 0, PT_SR, SR_LEN);
    out[4..8].copy_from_slice(&sender.ssrc.to_be_bytes());
    out[8..16].copy_from_slice(&sender.ntp.0.to_be_bytes());
    out[16..20].copy_from_slice(&sender.rtp_timestamp.to_be_bytes());
    out[20..24].copy_from_slice(&sender.packet_count.to_be_bytes());
    out[24..28].copy_from_slice(&sender.octet_count.to_be_bytes());
    SR_LEN
}

/// Writes an SDES packet with one chunk holding one CNAME item (§6.5, §6.5.1).
fn write_sdes_cname(out: &mut [u8], ssrc: Ssrc, cname: &[u8]) -> usize {
    let len = sdes_len(cname.len());
    write_common_header(out, 1, PT_SDES, len);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8] = SDES_CNAME;
    out[9] = cname.len() as u8;
    out[10..10 + cname.len()].copy_from_slice(cname);
    // End-of-list null item plus padding to the 32-bit boundary.
    out[10 + cname.len()..len].fill(0);
    len
}

/// A reception report block (RFC 3550 §6.4.1/§6.4.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// SSRC of the source this block reports on.
    pub ssrc: Ssrc,
    /// Fraction lost since the last report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed, sign-extended).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp (0 if none).
    pub lsr: u32,
    /// Delay since the last SR in 1/65536 s.
    pub dlsr: u32,
}

/// One SDES item (RFC 3550 §6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    /// Item type (1 = CNAME).
    pub item_type: u8,
    /// Item text (UTF-8 by the RFC, kept raw).
    pub value: Vec<u8>,
}

/// One SDES chunk: a source and its items (RFC 3550 §6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    /// SSRC or CSRC the items describe.
    pub ssrc: Ssrc,
    /// The items, end-of-list marker excluded.
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    /// The CNAME item's value, if present.
    pub fn cname(&self) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|i| i.item_type == SDES_CNAME)
            .map(|i| i.value.as_slice())
    }
}

/// One packet of a parsed compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// Sender report (§6.4.1).
    SenderReport {
        /// Sender SSRC.
        ssrc: Ssrc,
        /// Wall-clock time of the report.
        ntp: NtpTime,
        /// RTP timestamp corresponding to `ntp`.
        rtp_timestamp: RtpTimestamp,
        /// Packets sent.
        packet_count: u32,
        /// Payload octets sent.
        octet_count: u32,
        /// Reception report blocks.
        blocks: Vec<ReportBlock>,
    },
    /// Receiver report (§6.4.2).
    ReceiverReport {
        /// Reporter SSRC.
        ssrc: Ssrc,
        /// Reception report blocks.
        blocks: Vec<ReportBlock>,
    },
    /// Source description (§6.5).
    Sdes {
        /// The chunks.
        chunks: Vec<SdesChunk>,
    },
    /// Goodbye (§6.6); the optional reason is validated but not kept.
    Bye {
        /// Sources leaving.
        ssrcs: Vec<Ssrc>,
    },
    /// Application-defined (§6.7).
    App {
        /// Subtype (the count field).
        subtype: u8,
        /// Source SSRC.
        ssrc: Ssrc,
        /// Four-character name.
        name: [u8; 4],
        /// Application data.
        data: Vec<u8>,
    },
    /// Transport-layer or payload-specific feedback (RFC 4585 §6.1): the requests we act on
    /// (NACK, PLI, FIR); other formats validate to an empty list.
    Feedback {
        /// The requests, in order.
        requests: Vec<Feedback>,
    },
    /// Any other packet type (e.g. RFC 3611 XR), skipped by length.
    Unknown {
        /// The packet type.
        packet_type: u8,
    },
}

/// Why a compound RTCP packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Fewer than 4 bytes where a header was expected (or an empty datagram).
    #[error("rtcp packet shorter than its header")]
    Truncated,
    /// Version field is not 2.
    #[error("rtcp version is not 2")]
    BadVersion,
    /// The length field runs past the end of the datagram.
    #[error("rtcp length field runs past the datagram")]
    LengthOverrun,
    /// The padding bit is set on a packet other than the last (Appendix A.2).
    #[error("rtcp padding bit set on a packet that is not last")]
    PaddingNotLast,
    /// The padding count is zero or larger than the packet body.
    #[error("invalid rtcp padding length")]
    BadPadding,
    /// The compound packet does not start with an SR or RR (§6.1).
    #[error("compound rtcp packet does not start with sr or rr")]
    FirstNotReport,
    /// A body is shorter than its count field requires.
    #[error("rtcp packet body shorter than its count requires")]
    BodyTooShort,
    /// An SDES chunk or item runs past its packet.
    #[error("malformed rtcp sdes chunk")]
    BadSdes,
}

fn be32(b: &[u8], at: usize) -> Result<u32, RtcpError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(RtcpError::BodyTooShort)
}

/// The SSRC at `at` in `b`.
fn ssrc_at(b: &[u8], at: usize) -> Result<Ssrc, RtcpError> {
    be32(b, at).map(Ssrc)
}

/// Whether `buf` passes the header checks of a compound packet (RFC 3550 §A.2: version 2, a
/// report first, lengths that add up to the datagram, padding only on the last packet),
/// without parsing the packets or allocating.
pub fn is_valid_compound(buf: &[u8]) -> bool {
    walk_compound(buf, true, |_, _, _| Ok(())).is_ok()
}

/// Parses and validates a compound RTCP packet (RFC 3550 §6.1, Appendix A.2 checks: version 2
/// everywhere, padding only on the last packet, first packet SR or RR, length words summing
/// exactly to the datagram).
///
/// Allocates the packet list and any SDES/APP contents; [`visit_compound`] applies the same
/// validation without allocating, for the shards' receive path.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    walk_compound(buf, true, |pt, count, body| {
        out.push(parse_one(pt, count, body)?);
        Ok(())
    })?;
    Ok(out)
}

/// What [`visit_compound`] shows of a compound packet: the parts a sender's statistics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpItem {
    /// The SSRC of the sender of an SR or RR (RFC 3550 §6.4.1, §6.4.2), shown before the
    /// report's blocks.
    Report {
        /// The reporter's SSRC.
        ssrc: Ssrc,
    },
    /// A reception report block of an SR or RR (RFC 3550 §6.4.1, §6.4.2).
    Block(ReportBlock),
    /// A BYE packet (RFC 3550 §6.6), shown before the sources it names.
    Bye,
    /// One SSRC a BYE packet names (RFC 3550 §6.6: SC sources), after its [`RtcpItem::Bye`].
    ByeSource(Ssrc),
    /// A feedback request (RFC 4585 §6): NACK, PLI or FIR.
    Feedback(Feedback),
}

/// Validates `buf` exactly as [`parse_compound`] does (the same checks, in the same order,
/// with the same errors) and calls `on` for every report, report block, BYE and feedback
/// request, in order, without allocating.
///
/// `on` may have been called for the packets before the one that turned out invalid: on
/// `Err`, the caller must discard everything it was shown (RFC 3550 Appendix A.2: an invalid
/// compound is dropped whole).
pub fn visit_compound(buf: &[u8], on: impl FnMut(RtcpItem)) -> Result<(), RtcpError> {
    visit(buf, true, on)
}

/// [`visit_compound`] for a peer that negotiated reduced-size RTCP (`a=rtcp-rsize`, RFC 5506
/// §5): a datagram may then be a lone feedback packet, not led by an SR or RR (§3.1); every
/// other check is the same.
pub fn visit_reduced_size(buf: &[u8], on: impl FnMut(RtcpItem)) -> Result<(), RtcpError> {
    visit(buf, false, on)
}

fn visit(buf: &[u8], report_first: bool, mut on: impl FnMut(RtcpItem)) -> Result<(), RtcpError> {
    walk_compound(buf, report_first, |pt, count, body| {
        let count = usize::from(count);
        match pt {
            PT_SR => {
                let blocks = report_blocks(body.get(24..).ok_or(RtcpError::BodyTooShort)?, count)?;
                on(RtcpItem::Report {
                    ssrc: ssrc_at(body, 0)?,
                });
                blocks.for_each(|b| on(RtcpItem::Block(b)));
            }
            PT_RR => {
                let blocks = report_blocks(body.get(4..).ok_or(RtcpError::BodyTooShort)?, count)?;
                on(RtcpItem::Report {
                    ssrc: ssrc_at(body, 0)?,
                });
                blocks.for_each(|b| on(RtcpItem::Block(b)));
            }
            PT_SDES => walk_sdes(body, count, |_, _| {})?,
            PT_BYE => {
                check_bye(body, count)?;
                on(RtcpItem::Bye);
                for i in 0..count {
                    on(RtcpItem::ByeSource(ssrc_at(body, 4 * i)?));
                }
            }
            PT_APP => check_app(body)?,
            PT_RTPFB | PT_PSFB => {
                feedback::visit_feedback(pt, count as u8, body, |f| on(RtcpItem::Feedback(f)))?
            }
            _ => {}
        }
        Ok(())
    })
}

/// Walks the packets of a compound with the header checks of RFC 3550 §6.1 and Appendix A.2
/// and hands `f` each packet's type, count field and body (after the common header, padding
/// removed). Stops at the first error, from the headers or from `f`. `report_first` is the
/// compound rule (§6.1) that reduced-size RTCP lifts (RFC 5506 §3.1).
fn walk_compound(
    buf: &[u8],
    report_first: bool,
    mut f: impl FnMut(u8, u8, &[u8]) -> Result<(), RtcpError>,
) -> Result<(), RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Truncated);
    }
    let mut first = true;
    let mut rest = buf;
    while !rest.is_empty() {
        let hdr = rest.get(..4).ok_or(RtcpError::Truncated)?;
        if hdr[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let padding = hdr[0] & 0x20 != 0;
        let count = hdr[0] & 0x1f;
        let pt = hdr[1];
        let len = (usize::from(u16::from_be_bytes([hdr[2], hdr[3]])) + 1) * 4;
        let pkt = rest.get(..len).ok_or(RtcpError::LengthOverrun)?;
        rest = &rest[len..];
        if report_first && first && pt != PT_SR && pt != PT_RR {
            return Err(RtcpError::FirstNotReport);
        }
        first = false;
        let mut body = &pkt[4..];
        if padding {
            if !rest.is_empty() {
                return Err(RtcpError::PaddingNotLast);
            }
            let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = &body[..body.len() - pad];
        }
        f(pt, count, body)?;
    }
    Ok(())
}

/// Parses one packet body (after the common header and without padding).
fn parse_one(pt: u8, count: u8, body: &[u8]) -> Result<RtcpPacket, RtcpError> {
    let count = usize::from(count);
    Ok(match pt {
        PT_SR => {
            let blocks =
                report_blocks(body.get(24..).ok_or(RtcpError::BodyTooShort)?, count)?.collect();
            RtcpPacket::SenderReport {
                ssrc: ssrc_at(body, 0)?,
                ntp: NtpTime((u64::from(be32(body, 4)?) << 32) | u64::from(be32(body, 8)?)),
                rtp_timestamp: RtpTimestamp(be32(body, 12)?),
                packet_count: be32(body, 16)?,
                octet_count: be32(body, 20)?,
                blocks,
            }
        }
        PT_RR => RtcpPacket::ReceiverReport {
            ssrc: ssrc_at(body, 0)?,
            blocks: report_blocks(body.get(4..).ok_or(RtcpError::BodyTooShort)?, count)?.collect(),
        },
        PT_SDES => RtcpPacket::Sdes {
            chunks: parse_sdes(body, count)?,
        },
        PT_BYE => {
            check_bye(body, count)?;
            let ssrcs = (0..count)
                .map(|i| ssrc_at(body, 4 * i))
                .collect::<Result<Vec<_>, _>>()?;
            RtcpPacket::Bye { ssrcs }
        }
        PT_APP => {
            check_app(body)?;
            RtcpPacket::App {
                subtype: count as u8,
                ssrc: ssrc_at(body, 0)?,
                name: be32(body, 4)?.to_be_bytes(),
                data: body[8..].to_vec(),
            }
        }
        PT_RTPFB | PT_PSFB => {
            let mut requests = Vec::new();
            feedback::visit_feedback(pt, count as u8, body, |f| requests.push(f))?;
            RtcpPacket::Feedback { requests }
        }
        other => RtcpPacket::Unknown { packet_type: other },
    })
}

/// BYE (§6.6): `count` SSRCs, then an optional reason (length octet + text) within the body.
fn check_bye(body: &[u8], count: usize) -> Result<(), RtcpError> {
    if body.len() < 4 * count {
        return Err(RtcpError::BodyTooShort);
    }
    if let Some(&n) = body.get(4 * count) {
        if 4 * count + 1 + usize::from(n) > body.len() {
            return Err(RtcpError::BodyTooShort);
        }
    }
    Ok(())
}

/// APP (§6.7): SSRC and a four-character name before the data.
fn check_app(body: &[u8]) -> Result<(), RtcpError> {
    if body.len() < 8 {
        return Err(RtcpError::BodyTooShort);
    }
    Ok(())
}

/// The `count` 24-byte report blocks at the start of `b` (§6.4.1), checked to fit.
fn report_blocks(
    b: &[u8],
    count: usize,
) -> Result<impl Iterator<Item = ReportBlock> + '_, RtcpError> {
    let blocks = b
        .get(..count * REPORT_BLOCK_LEN)
        .ok_or(RtcpError::BodyTooShort)?;
    Ok(blocks.chunks_exact(REPORT_BLOCK_LEN).map(|c| {
        let word = |at: usize| u32::from_be_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
        let lost = word(4);
        ReportBlock {
            ssrc: Ssrc(word(0)),
            fraction_lost: (lost >> 24) as u8,
            // 24-bit two's complement: shift up and arithmetic-shift back to sign-extend.
            cumulative_lost: ((lost << 8) as i32) >> 8,
            highest_seq: word(8),
            jitter: word(12),
            lsr: word(16),
            dlsr: word(20),
        }
    }))
}

/// Walks `count` SDES chunks (§6.5): SSRC, items until a null type octet, then padding to the
/// next 32-bit boundary. `on(ssrc, None)` opens a chunk, `on(ssrc, Some((type, value)))`
/// shows one of its items.
fn walk_sdes<'a>(
    body: &'a [u8],
    count: usize,
    mut on: impl FnMut(Ssrc, Option<(u8, &'a [u8])>),
) -> Result<(), RtcpError> {
    let mut pos = 0usize;
    for _ in 0..count {
        let ssrc = ssrc_at(body, pos).map_err(|_| RtcpError::BadSdes)?;
        on(ssrc, None);
        pos += 4;
        loop {
            let item_type = *body.get(pos).ok_or(RtcpError::BadSdes)?;
            if item_type == 0 {
                pos = (pos + 1).next_multiple_of(4);
                break;
            }
            let n = usize::from(*body.get(pos + 1).ok_or(RtcpError::BadSdes)?);
            let value = body.get(pos + 2..pos + 2 + n).ok_or(RtcpError::BadSdes)?;
            on(ssrc, Some((item_type, value)));
            pos += 2 + n;
        }
        if pos > body.len() {
            return Err(RtcpError::BadSdes);
        }
    }
    Ok(())
}

/// Parses `count` SDES chunks (§6.5) into owned chunks and items.
fn parse_sdes(body: &[u8], count: usize) -> Result<Vec<SdesChunk>, RtcpError> {
    let mut chunks: Vec<SdesChunk> = Vec::with_capacity(count.min(31));
    walk_sdes(body, count, |ssrc, item| match item {
        None => chunks.push(SdesChunk {
            ssrc,
            items: Vec::new(),
        }),
        Some((item_type, value)) => {
            if let Some(chunk) = chunks.last_mut() {
                chunk.items.push(SdesItem {
                    item_type,
                    value: value.to_vec(),
                });
            }
        }
    })?;
    Ok(chunks)
}

/// Receiver-side RTCP for the crate's unit tests, written with the public writers.
#[cfg(test)]
pub(crate) mod test_packets {
    use super::{write_bye_packet, write_receiver_report, ReportBlock, MAX_RTCP_COUNT};
    use crate::wire::rtp::Ssrc;

    /// An RR (RFC 3550 §6.4.2) from `reporter` with one block per
    /// `(ssrc, fraction lost, jitter, lsr, dlsr)`; cumulative lost 17, highest seq 1000.
    pub(crate) fn rr(reporter: Ssrc, blocks: &[(Ssrc, u8, u32, u32, u32)]) -> Vec<u8> {
        let blocks: Vec<ReportBlock> = blocks
            .iter()
            .map(|&(ssrc, fraction_lost, jitter, lsr, dlsr)| ReportBlock {
                ssrc,
                fraction_lost,
                cumulative_lost: 17,
                highest_seq: 1000,
                jitter,
                lsr,
                dlsr,
            })
            .collect();
        let mut buf = vec![0u8; 8 + 24 * MAX_RTCP_COUNT];
        let n = write_receiver_report(&mut buf, reporter, &blocks, None);
        assert!(n > 0, "{} blocks fit an RR", blocks.len());
        buf.truncate(n);
        buf
    }

    /// `packet` followed by a BYE naming `sources` (RFC 3550 §6.6).
    pub(crate) fn with_bye(mut packet: Vec<u8>, sources: &[Ssrc]) -> Vec<u8> {
        let at = packet.len();
        packet.resize(at + 4 + 4 * sources.len(), 0);
        let n = write_bye_packet(&mut packet[at..], sources);
        assert_eq!(n, packet.len() - at);
        packet
    }
}

#[cfg(test)]
mod tests;
