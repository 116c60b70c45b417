//! RTCP feedback messages (RFC 4585 §6) that a WebRTC viewer sends its sender: generic NACK
//! (§6.2.1), picture loss indication (§6.3.1) and full intra request (RFC 5104 §4.3.1).
//!
//! ```text
//! Common packet format for feedback messages (RFC 4585 §6.1):
//!     0                   1                   2                   3
//!     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |V=2|P|   FMT   |       PT      |          length               |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                  SSRC of packet sender                        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                  SSRC of media source                         |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    :            Feedback Control Information (FCI)                 :
//!
//! Generic NACK FCI (§6.2.1), one or more:      FIR FCI (RFC 5104 §4.3.1.1), one or more:
//!    |            PID                |             BLP               |   |  SSRC  |
//!                                                                        | Seq nr. | Reserved |
//! ```

use super::{write_common_header, RtcpError};
use crate::wire::rtp::Ssrc;

/// RTCP packet type: transport-layer feedback (RFC 4585 §6.1).
pub const PT_RTPFB: u8 = 205;
/// RTCP packet type: payload-specific feedback (RFC 4585 §6.1).
pub const PT_PSFB: u8 = 206;
/// RTPFB format: generic NACK (RFC 4585 §6.2.1).
pub const FMT_GENERIC_NACK: u8 = 1;
/// PSFB format: picture loss indication (RFC 4585 §6.3.1).
pub const FMT_PLI: u8 = 1;
/// PSFB format: full intra request (RFC 5104 §4.3.1).
pub const FMT_FIR: u8 = 4;

/// One feedback request found in an RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Generic NACK (RFC 4585 §6.2.1): packet `pid` is lost, and so is `pid + i + 1` for
    /// every bit `i` set in `blp` (least significant first). See [`nacked_sequences`].
    Nack {
        /// The media source the lost packets came from.
        media: Ssrc,
        /// Packet ID: the sequence number of a lost packet.
        pid: u16,
        /// Bitmask of following lost packets.
        blp: u16,
    },
    /// Picture loss indication (RFC 4585 §6.3.1): the decoder lost its reference; send a
    /// keyframe.
    PictureLoss {
        /// The media source whose picture was lost.
        media: Ssrc,
    },
    /// Full intra request (RFC 5104 §4.3.1): send a keyframe; `seq` repeats for a retransmitted
    /// request (§4.3.1.1), so one request is honoured once.
    FullIntraRequest {
        /// The media source asked for a keyframe (from the FCI, §4.3.1.2).
        media: Ssrc,
        /// The command sequence number.
        seq: u8,
    },
}

/// The sequence numbers one generic NACK entry names (RFC 4585 §6.2.1): `pid`, then
/// `pid + i + 1` for each bit `i` of `blp`.
pub fn nacked_sequences(pid: u16, blp: u16) -> impl Iterator<Item = u16> {
    std::iter::once(pid).chain(
        (0..16u16)
            .filter(move |i| blp & (1 << i) != 0)
            .map(move |i| pid.wrapping_add(i + 1)),
    )
}

/// Reads the feedback requests of one RTPFB or PSFB packet (type `pt`, format `fmt`, `body`
/// after the common header), calling `on` for each; other formats (transport-cc, REMB,
/// SLI, RPSI) are validated for the two SSRCs and skipped.
pub(super) fn visit_feedback(
    pt: u8,
    fmt: u8,
    body: &[u8],
    mut on: impl FnMut(Feedback),
) -> Result<(), RtcpError> {
    let (Some(media), Some(fci)) = (body.get(4..8), body.get(8..)) else {
        return Err(RtcpError::BodyTooShort);
    };
    let media = Ssrc(u32::from_be_bytes([media[0], media[1], media[2], media[3]]));
    match (pt, fmt) {
        (PT_RTPFB, FMT_GENERIC_NACK) => {
            if fci.is_empty() || fci.len() % 4 != 0 {
                return Err(RtcpError::BodyTooShort);
            }
            for entry in fci.chunks_exact(4) {
                on(Feedback::Nack {
                    media,
                    pid: u16::from_be_bytes([entry[0], entry[1]]),
                    blp: u16::from_be_bytes([entry[2], entry[3]]),
                });
            }
        }
        (PT_PSFB, FMT_PLI) => on(Feedback::PictureLoss { media }),
        (PT_PSFB, FMT_FIR) => {
            if fci.is_empty() || fci.len() % 8 != 0 {
                return Err(RtcpError::BodyTooShort);
            }
            for entry in fci.chunks_exact(8) {
                on(Feedback::FullIntraRequest {
                    media: Ssrc(u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]])),
                    seq: entry[4],
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// Writes a generic NACK (RFC 4585 §6.2.1) from `sender` about `media` with one FCI entry per
/// `(pid, blp)`; returns its length, or 0 if `out` is too small or `entries` is empty.
pub fn write_generic_nack(
    out: &mut [u8],
    sender: Ssrc,
    media: Ssrc,
    entries: &[(u16, u16)],
) -> usize {
    let len = 12 + 4 * entries.len();
    if entries.is_empty() || out.len() < len || len / 4 - 1 > usize::from(u16::MAX) {
        return 0;
    }
    write_feedback_head(out, FMT_GENERIC_NACK, PT_RTPFB, len, sender, media);
    for (k, &(pid, blp)) in entries.iter().enumerate() {
        out[12 + 4 * k..14 + 4 * k].copy_from_slice(&pid.to_be_bytes());
        out[14 + 4 * k..16 + 4 * k].copy_from_slice(&blp.to_be_bytes());
    }
    len
}

/// Writes a picture loss indication (RFC 4585 §6.3.1); returns 12, or 0 if `out` is too small.
pub fn write_picture_loss(out: &mut [u8], sender: Ssrc, media: Ssrc) -> usize {
    if out.len() < 12 {
        return 0;
    }
    write_feedback_head(out, FMT_PLI, PT_PSFB, 12, sender, media);
    12
}

/// Writes a full intra request (RFC 5104 §4.3.1) for `media` with command sequence number
/// `seq`; the header's media SSRC is 0 (§4.3.1.2). Returns 20, or 0 if `out` is too small.
pub fn write_full_intra_request(out: &mut [u8], sender: Ssrc, media: Ssrc, seq: u8) -> usize {
    if out.len() < 20 {
        return 0;
    }
    write_feedback_head(out, FMT_FIR, PT_PSFB, 20, sender, Ssrc(0));
    out[12..16].copy_from_slice(&media.to_be_bytes());
    out[16] = seq;
    out[17..20].fill(0);
    20
}

fn write_feedback_head(out: &mut [u8], fmt: u8, pt: u8, len: usize, sender: Ssrc, media: Ssrc) {
    write_common_header(out, fmt, pt, len);
    out[4..8].copy_from_slice(&sender.to_be_bytes());
    out[8..12].copy_from_slice(&media.to_be_bytes());
}
