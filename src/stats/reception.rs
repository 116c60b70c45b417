//! Turning a received compound RTCP packet into reception figures for our tracks.
//!
//! Sans-IO: the shard (UDP) calls [`digest_rtcp_into`], which allocates nothing, and the
//! control thread (interleaved `$` frames) calls [`digest_rtcp`], its collecting form, with
//! the datagram, the session's tracks and the arrival time.
//!
//! Round-trip time needs no per-SR state: a report block carries the middle 32 bits of the
//! NTP timestamp of the last SR it saw (LSR) and how long ago that was (DLSR), so
//! `RTT = A − LSR − DLSR` where `A` is our own NTP clock at arrival, in the same 1/65536 s
//! units (RFC 3550 §6.4.1, figure 2). Our SRs are stamped with the same wall clock.

use crate::wire::ntp::NtpTime;
use crate::wire::rtcp::{visit_compound, ReportBlock, RtcpError, RtcpItem};

/// Most tracks a session can have that reception figures are kept for.
pub const MAX_TRACKS: usize = 8;

/// Round trips longer than this are treated as bogus (clock jumps, forged LSR).
const MAX_PLAUSIBLE_RTT_MS: f64 = 60_000.0;

/// One of our tracks as the RTCP digest needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackKey {
    /// The SSRC we send this track with (report blocks name it).
    pub ssrc: u32,
    /// The track's RTP clock rate, to convert jitter to milliseconds.
    pub clock_rate_hz: u32,
}

/// What one report block says about one of our tracks (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrackReception {
    /// Position of the track in the session's track list.
    pub track: u8,
    /// Fraction lost since the receiver's previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Packets lost since the start of reception (may be negative with duplicates).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter converted to milliseconds with the track's clock.
    pub jitter_ms: f64,
    /// Round-trip time from LSR/DLSR, when the receiver had seen one of our SRs.
    pub rtt_ms: Option<f64>,
}

impl TrackReception {
    /// Fraction lost as a percentage.
    pub fn loss_pct(&self) -> f64 {
        f64::from(self.fraction_lost) * 100.0 / 256.0
    }
}

/// Everything a compound RTCP packet told us.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtcpDigest {
    /// Report blocks about our tracks, at most one per track (the last one wins).
    pub receptions: Vec<TrackReception>,
    /// Report blocks naming an SSRC that is not one of this session's tracks (ignored).
    pub unknown_ssrc_blocks: u32,
    /// The receiver said BYE (RFC 3550 §6.6): its session should end.
    pub bye: bool,
}

/// What [`digest_rtcp_into`] found besides the receptions it stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    /// Report blocks about our tracks that were stored.
    pub receptions: u32,
    /// Report blocks naming an SSRC that is not one of this session's tracks (ignored).
    pub unknown_ssrc_blocks: u32,
    /// The receiver said BYE (RFC 3550 §6.6): its session should end.
    pub bye: bool,
}

/// Parses and validates `datagram` and extracts the report blocks about `tracks`.
///
/// Invalid packets are rejected whole (RFC 3550 Appendix A.2): nothing of them is trusted.
pub fn digest_rtcp(
    datagram: &[u8],
    tracks: &[TrackKey],
    arrival: NtpTime,
) -> Result<RtcpDigest, RtcpError> {
    let mut latest = [None; MAX_TRACKS];
    let summary = digest_rtcp_into(datagram, tracks, arrival, &mut latest)?;
    Ok(RtcpDigest {
        receptions: latest.into_iter().flatten().collect(),
        unknown_ssrc_blocks: summary.unknown_ssrc_blocks,
        bye: summary.bye,
    })
}

/// [`digest_rtcp`] without allocating: validates `datagram` whole and, only if it is valid,
/// stores the last report block about each of `tracks` in `latest[track position]` (slots of
/// tracks the packet does not mention are left as they were). `latest` is untouched when the
/// packet is invalid. Blocks about tracks at positions past [`MAX_TRACKS`] are dropped.
pub fn digest_rtcp_into(
    datagram: &[u8],
    tracks: &[TrackKey],
    arrival: NtpTime,
    latest: &mut [Option<TrackReception>; MAX_TRACKS],
) -> Result<RtcpSummary, RtcpError> {
    let mut fresh: [Option<TrackReception>; MAX_TRACKS] = [None; MAX_TRACKS];
    let mut summary = RtcpSummary::default();
    visit_compound(datagram, |item| match item {
        RtcpItem::Bye => summary.bye = true,
        RtcpItem::Block(block) => match tracks.iter().position(|t| t.ssrc == block.ssrc) {
            None => summary.unknown_ssrc_blocks = summary.unknown_ssrc_blocks.saturating_add(1),
            Some(pos) => {
                if let Some(slot) = fresh.get_mut(pos) {
                    *slot = Some(reception_from_block(
                        pos,
                        &block,
                        tracks[pos].clock_rate_hz,
                        arrival,
                    ));
                    summary.receptions = summary.receptions.saturating_add(1);
                }
            }
        },
    })?;
    // Valid: only now does anything of the packet reach the caller's state.
    for (slot, new) in latest.iter_mut().zip(fresh) {
        if new.is_some() {
            *slot = new;
        }
    }
    Ok(summary)
}

/// Converts one report block (RFC 3550 §6.4.1) into figures in milliseconds.
fn reception_from_block(
    track: usize,
    block: &ReportBlock,
    clock_rate_hz: u32,
    arrival: NtpTime,
) -> TrackReception {
    let jitter_ms = if clock_rate_hz == 0 {
        0.0
    } else {
        f64::from(block.jitter) * 1000.0 / f64::from(clock_rate_hz)
    };
    TrackReception {
        track: track.min(usize::from(u8::MAX)) as u8,
        fraction_lost: block.fraction_lost,
        cumulative_lost: block.cumulative_lost,
        highest_seq: block.highest_seq,
        jitter_ms,
        rtt_ms: round_trip_ms(arrival, block.lsr, block.dlsr),
    }
}

/// `A − LSR − DLSR` in milliseconds (RFC 3550 §6.4.1), or `None` when the receiver has not
/// seen an SR yet (LSR = 0) or the result is implausible (a clock step or a forged block).
pub fn round_trip_ms(arrival: NtpTime, lsr: u32, dlsr: u32) -> Option<f64> {
    if lsr == 0 {
        return None;
    }
    // Modular arithmetic on the 32-bit middle word; a "negative" result wraps to a huge one.
    let units = arrival.middle32().wrapping_sub(lsr).wrapping_sub(dlsr);
    let ms = f64::from(units) * 1000.0 / 65536.0;
    (ms <= MAX_PLAUSIBLE_RTT_MS).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RR (RFC 3550 §6.4.2) from `reporter` with one block per `(ssrc, lost, jitter, lsr, dlsr)`.
    fn receiver_report(reporter: u32, blocks: &[(u32, u8, u32, u32, u32)]) -> Vec<u8> {
        let words = 1 + 6 * blocks.len();
        let mut out = vec![0x80 | blocks.len() as u8, 201];
        out.extend_from_slice(&(words as u16).to_be_bytes());
        out.extend_from_slice(&reporter.to_be_bytes());
        for &(ssrc, fraction, jitter, lsr, dlsr) in blocks {
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&(u32::from(fraction) << 24 | 17).to_be_bytes());
            out.extend_from_slice(&1000u32.to_be_bytes());
            out.extend_from_slice(&jitter.to_be_bytes());
            out.extend_from_slice(&lsr.to_be_bytes());
            out.extend_from_slice(&dlsr.to_be_bytes());
        }
        out
    }

    const VIDEO: TrackKey = TrackKey {
        ssrc: 0xAAAA_0001,
        clock_rate_hz: 90_000,
    };
    const AUDIO: TrackKey = TrackKey {
        ssrc: 0xBBBB_0002,
        clock_rate_hz: 48_000,
    };

    #[test]
    fn round_trip_follows_rfc3550_figure_2() {
        // The RFC's example: A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000 (46853.125 s),
        // DLSR = 0x0005:4000 (5.250 s) → RTT = 0x0006:2000 = 6.125 s.
        let arrival = NtpTime(0xb710_8000u64 << 16);
        let rtt = round_trip_ms(arrival, 0xb705_2000, 0x0005_4000).unwrap();
        assert!((rtt - 6125.0).abs() < 1e-6, "{rtt}");
    }

    #[test]
    fn no_round_trip_without_a_sender_report() {
        assert_eq!(round_trip_ms(NtpTime(1 << 40), 0, 0), None);
    }

    #[test]
    fn future_lsr_is_implausible_not_huge() {
        let arrival = NtpTime(0x1000_0000u64 << 16);
        assert_eq!(round_trip_ms(arrival, 0x1000_0001, 0), None);
    }

    #[test]
    fn blocks_map_to_tracks_and_jitter_uses_the_track_clock() {
        let arrival = NtpTime(0x0001_0000u64 << 16);
        let rr = receiver_report(
            7,
            &[
                (AUDIO.ssrc, 64, 480, 0x0000_8000, 0x0000_4000),
                (VIDEO.ssrc, 0, 900, 0, 0),
                (0xDEAD_BEEF, 255, 1, 0, 0),
            ],
        );
        let d = digest_rtcp(&rr, &[VIDEO, AUDIO], arrival).unwrap();
        assert_eq!(d.unknown_ssrc_blocks, 1);
        assert!(!d.bye);
        let audio = d.receptions.iter().find(|r| r.track == 1).unwrap();
        assert_eq!(audio.fraction_lost, 64);
        assert!((audio.loss_pct() - 25.0).abs() < 1e-9);
        assert!((audio.jitter_ms - 10.0).abs() < 1e-9);
        assert_eq!(audio.cumulative_lost, 17);
        assert_eq!(audio.highest_seq, 1000);
        // A = 1.0 s, LSR = 0.5 s, DLSR = 0.25 s → 250 ms.
        assert!((audio.rtt_ms.unwrap() - 250.0).abs() < 1e-6);
        let video = d.receptions.iter().find(|r| r.track == 0).unwrap();
        assert!((video.jitter_ms - 10.0).abs() < 1e-9);
        assert_eq!(video.rtt_ms, None);
    }

    #[test]
    fn bye_is_reported() {
        let mut pkt = receiver_report(7, &[]);
        pkt.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 7]);
        let d = digest_rtcp(&pkt, &[VIDEO], NtpTime(0)).unwrap();
        assert!(d.bye);
        assert!(d.receptions.is_empty());
    }

    #[test]
    fn digest_into_keeps_other_tracks_and_touches_nothing_when_invalid() {
        let arrival = NtpTime(0x0001_0000u64 << 16);
        let mut latest = [None; MAX_TRACKS];
        let rr = receiver_report(7, &[(VIDEO.ssrc, 10, 900, 0, 0)]);
        let s = digest_rtcp_into(&rr, &[VIDEO, AUDIO], arrival, &mut latest).unwrap();
        assert_eq!(s.receptions, 1);
        assert_eq!(latest[0].unwrap().fraction_lost, 10);
        assert_eq!(latest[1], None);
        // A later report about audio only leaves the video slot as it was.
        let rr = receiver_report(7, &[(AUDIO.ssrc, 20, 480, 0, 0)]);
        digest_rtcp_into(&rr, &[VIDEO, AUDIO], arrival, &mut latest).unwrap();
        assert_eq!(latest[0].unwrap().fraction_lost, 10);
        assert_eq!(latest[1].unwrap().fraction_lost, 20);
        // A valid RR followed by a broken packet changes nothing.
        let before = latest;
        let mut bad = receiver_report(7, &[(VIDEO.ssrc, 99, 1, 0, 0)]);
        bad.extend_from_slice(&[0x81, 203, 0, 5, 0, 0, 0, 7]);
        assert_eq!(
            digest_rtcp_into(&bad, &[VIDEO, AUDIO], arrival, &mut latest),
            Err(RtcpError::LengthOverrun)
        );
        assert_eq!(latest, before);
    }

    #[test]
    fn invalid_packets_are_rejected_whole() {
        let mut rr = receiver_report(7, &[(VIDEO.ssrc, 10, 1, 0, 0)]);
        rr[0] = 0x41; // version 1
        assert!(digest_rtcp(&rr, &[VIDEO], NtpTime(0)).is_err());
        let rr = receiver_report(7, &[(VIDEO.ssrc, 10, 1, 0, 0)]);
        assert!(digest_rtcp(&rr[..rr.len() - 1], &[VIDEO], NtpTime(0)).is_err());
        assert!(digest_rtcp(&[], &[VIDEO], NtpTime(0)).is_err());
    }
}
