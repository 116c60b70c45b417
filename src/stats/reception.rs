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
//!
//! A BYE (RFC 3550 §6.6) ends a session only when it names an SSRC the viewer has already
//! reported from: [`ViewerSsrcs`] remembers the sender SSRCs of earlier valid SRs and RRs
//! (§6.4.1, §6.4.2) that carried a report block about one of the session's own SSRCs. A
//! packet's own reports are learned only after its BYE is judged, so an RR and a BYE in one
//! compound do not vouch for each other: someone who can send from the viewer's address must
//! also know one of our SSRCs and have reported with the BYE's SSRC earlier.

use crate::wire::ntp::NtpTime;
use crate::wire::rtcp::{visit_compound, ReportBlock, RtcpError, RtcpItem};
use crate::wire::rtp::Ssrc;

/// Most tracks a session can have that reception figures are kept for.
pub const MAX_TRACKS: usize = 8;

/// Round trips longer than this are treated as bogus (clock jumps, forged LSR).
const MAX_PLAUSIBLE_RTT_MS: f64 = 60_000.0;

/// One of our tracks as the RTCP digest needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackKey {
    /// The SSRC we send this track with (report blocks name it).
    pub ssrc: Ssrc,
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

/// How many SSRCs one viewer is remembered by (one per track at most in practice: ffmpeg
/// reports from one SSRC, GStreamer from one per stream). When full, the oldest is forgotten.
pub const MAX_VIEWER_SSRCS: usize = 4;

/// The SSRCs a viewer has sent valid reports about our tracks from, the ones its BYE may
/// name (RFC 3550 §6.6). Fixed size: kept in every session without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewerSsrcs {
    ssrcs: [Ssrc; MAX_VIEWER_SSRCS],
    len: u8,
    /// Slot the next SSRC replaces once all are used.
    next: u8,
}

impl ViewerSsrcs {
    /// True when the viewer has reported from `ssrc`.
    pub fn knows(&self, ssrc: Ssrc) -> bool {
        self.ssrcs[..usize::from(self.len)].contains(&ssrc)
    }

    /// Remembers `ssrc`, forgetting the oldest when all slots are used.
    pub fn learn(&mut self, ssrc: Ssrc) {
        if self.knows(ssrc) {
            return;
        }
        if usize::from(self.len) < MAX_VIEWER_SSRCS {
            self.ssrcs[usize::from(self.len)] = ssrc;
            self.len += 1;
        } else {
            self.ssrcs[usize::from(self.next)] = ssrc;
            self.next = (self.next + 1) % MAX_VIEWER_SSRCS as u8;
        }
    }

    /// The remembered SSRCs.
    pub fn as_slice(&self) -> &[Ssrc] {
        &self.ssrcs[..usize::from(self.len)]
    }
}

/// Everything a compound RTCP packet told us.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtcpDigest {
    /// Report blocks about our tracks, at most one per track (the last one wins).
    pub receptions: Vec<TrackReception>,
    /// Report blocks naming an SSRC that is not one of this session's tracks (ignored).
    pub unknown_ssrc_blocks: u32,
    /// The receiver said BYE for an SSRC it had reported from before (RFC 3550 §6.6): its
    /// session should end.
    pub bye: bool,
    /// The packet held a BYE naming no SSRC the viewer had reported from: ignored.
    pub bye_refused: bool,
    /// The viewer's SSRCs after this packet (the caller keeps them for the next one).
    pub viewer_ssrcs: ViewerSsrcs,
}

/// What [`digest_rtcp_into`] found besides the receptions it stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    /// Report blocks about our tracks that were stored.
    pub receptions: u32,
    /// Report blocks naming an SSRC that is not one of this session's tracks (ignored).
    pub unknown_ssrc_blocks: u32,
    /// The receiver said BYE for an SSRC it had reported from before (RFC 3550 §6.6): its
    /// session should end.
    pub bye: bool,
    /// The packet held a BYE naming no SSRC the viewer had reported from: ignored.
    pub bye_refused: bool,
}

/// Parses and validates `datagram` and extracts the report blocks about `tracks`; `known`
/// are the viewer's SSRCs before this packet (see [`digest_rtcp_into`]).
///
/// Invalid packets are rejected whole (RFC 3550 Appendix A.2): nothing of them is trusted.
pub fn digest_rtcp(
    datagram: &[u8],
    tracks: &[TrackKey],
    arrival: NtpTime,
    known: ViewerSsrcs,
) -> Result<RtcpDigest, RtcpError> {
    let mut latest = [None; MAX_TRACKS];
    let mut viewer_ssrcs = known;
    let summary = digest_rtcp_into(datagram, tracks, arrival, &mut latest, &mut viewer_ssrcs)?;
    Ok(RtcpDigest {
        receptions: latest.into_iter().flatten().collect(),
        unknown_ssrc_blocks: summary.unknown_ssrc_blocks,
        bye: summary.bye,
        bye_refused: summary.bye_refused,
        viewer_ssrcs,
    })
}

/// [`digest_rtcp`] without allocating: validates `datagram` whole and, only if it is valid,
/// stores the last report block about each of `tracks` in `latest[track position]` (slots of
/// tracks the packet does not mention are left as they were). `latest` is untouched when the
/// packet is invalid. Blocks about tracks at positions past [`MAX_TRACKS`] are dropped.
///
/// A BYE counts ([`RtcpSummary::bye`]) only if one of the SSRCs it names is in `viewer`
/// already (RFC 3550 §6.6); otherwise it is [`RtcpSummary::bye_refused`]. Then, if the packet
/// is valid, the sender SSRC of each SR or RR in it that carried a block about one of
/// `tracks` is added to `viewer`, for the packets that follow.
pub fn digest_rtcp_into(
    datagram: &[u8],
    tracks: &[TrackKey],
    arrival: NtpTime,
    latest: &mut [Option<TrackReception>; MAX_TRACKS],
    viewer: &mut ViewerSsrcs,
) -> Result<RtcpSummary, RtcpError> {
    let mut fresh: [Option<TrackReception>; MAX_TRACKS] = [None; MAX_TRACKS];
    let mut summary = RtcpSummary::default();
    let mut reporter = None;
    let mut reporters = ViewerSsrcs::default();
    let mut bye_seen = false;
    let known = *viewer;
    visit_compound(datagram, |item| match item {
        RtcpItem::Report { ssrc } => reporter = Some(ssrc),
        RtcpItem::Bye => bye_seen = true,
        RtcpItem::ByeSource(ssrc) => summary.bye |= known.knows(ssrc),
        RtcpItem::Feedback(_) => {}
        RtcpItem::Block(block) => match tracks.iter().position(|t| t.ssrc == block.ssrc) {
            None => summary.unknown_ssrc_blocks = summary.unknown_ssrc_blocks.saturating_add(1),
            Some(pos) => {
                if let Some(r) = reporter {
                    reporters.learn(r);
                }
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
    summary.bye_refused = bye_seen && !summary.bye;
    for &ssrc in reporters.as_slice() {
        viewer.learn(ssrc);
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
    use crate::wire::rtcp::test_packets::{rr as receiver_report, with_bye};

    const VIDEO: TrackKey = TrackKey {
        ssrc: Ssrc(0xAAAA_0001),
        clock_rate_hz: 90_000,
    };
    const AUDIO: TrackKey = TrackKey {
        ssrc: Ssrc(0xBBBB_0002),
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
            Ssrc(7),
            &[
                (AUDIO.ssrc, 64, 480, 0x0000_8000, 0x0000_4000),
                (VIDEO.ssrc, 0, 900, 0, 0),
                (Ssrc(0xDEAD_BEEF), 255, 1, 0, 0),
            ],
        );
        let d = digest_rtcp(&rr, &[VIDEO, AUDIO], arrival, ViewerSsrcs::default()).unwrap();
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
    fn a_bye_counts_only_for_an_ssrc_reported_from_in_an_earlier_packet() {
        let t = [VIDEO, AUDIO];
        let mut viewer = ViewerSsrcs::default();
        let mut latest = [None; MAX_TRACKS];
        let mut digest =
            |pkt: &[u8], v: &mut ViewerSsrcs| digest_rtcp_into(pkt, &t, NtpTime(0), &mut latest, v);
        // No report yet: a BYE (here behind an RR without blocks) is refused.
        let s = digest(
            &with_bye(receiver_report(Ssrc(7), &[]), &[Ssrc(7)]),
            &mut viewer,
        )
        .unwrap();
        assert!(!s.bye && s.bye_refused);
        // The first RR about our track and a BYE in the same compound: still refused.
        let rr = receiver_report(Ssrc(7), &[(VIDEO.ssrc, 0, 0, 0, 0)]);
        let s = digest(&with_bye(rr.clone(), &[Ssrc(7)]), &mut viewer).unwrap();
        assert!(
            !s.bye && s.bye_refused,
            "an RR does not vouch for its own compound"
        );
        assert_eq!(
            viewer.as_slice(),
            &[Ssrc(7)],
            "but it is learned for later packets"
        );
        // Now a BYE naming another SSRC is refused, one naming 7 (among others) counts.
        let s = digest(
            &with_bye(receiver_report(Ssrc(9), &[]), &[Ssrc(9)]),
            &mut viewer,
        )
        .unwrap();
        assert!(!s.bye && s.bye_refused);
        let s = digest(
            &with_bye(receiver_report(Ssrc(9), &[]), &[Ssrc(9), Ssrc(7)]),
            &mut viewer,
        )
        .unwrap();
        assert!(s.bye && !s.bye_refused);
        // A packet without BYE is neither.
        let s = digest(&rr, &mut viewer).unwrap();
        assert!(!s.bye && !s.bye_refused);
        // A BYE naming nobody is refused.
        let s = digest(&with_bye(receiver_report(Ssrc(7), &[]), &[]), &mut viewer).unwrap();
        assert!(!s.bye && s.bye_refused);
    }

    #[test]
    fn only_valid_reports_about_our_tracks_teach_a_viewer_ssrc() {
        let mut viewer = ViewerSsrcs::default();
        // A report about someone else's SSRC teaches nothing.
        let d = digest_rtcp(
            &receiver_report(Ssrc(5), &[(Ssrc(0xDEAD_BEEF), 0, 0, 0, 0)]),
            &[VIDEO],
            NtpTime(0),
            viewer,
        )
        .unwrap();
        assert_eq!(d.viewer_ssrcs, viewer);
        // Nor does an invalid compound, even with a good block in it.
        let mut bad = receiver_report(Ssrc(5), &[(VIDEO.ssrc, 0, 0, 0, 0)]);
        bad.extend_from_slice(&[0x81, 203, 0, 5, 0, 0, 0, 5]);
        let mut latest = [None; MAX_TRACKS];
        assert!(digest_rtcp_into(&bad, &[VIDEO], NtpTime(0), &mut latest, &mut viewer).is_err());
        assert_eq!(viewer, ViewerSsrcs::default());
        // An SR's sender SSRC counts like an RR's.
        let mut sr = vec![0x81, 200, 0, 12, 0, 0, 0, 6];
        sr.extend_from_slice(&[0; 20]);
        sr.extend_from_slice(&receiver_report(Ssrc(0), &[(VIDEO.ssrc, 0, 0, 0, 0)])[8..]);
        let d = digest_rtcp(&sr, &[VIDEO], NtpTime(0), viewer).unwrap();
        assert_eq!(d.viewer_ssrcs.as_slice(), &[Ssrc(6)]);
        let d = digest_rtcp(
            &with_bye(receiver_report(Ssrc(6), &[]), &[Ssrc(6)]),
            &[VIDEO],
            NtpTime(0),
            d.viewer_ssrcs,
        )
        .unwrap();
        assert!(d.bye);
    }

    #[test]
    fn viewer_ssrcs_are_bounded_and_forget_the_oldest() {
        let mut v = ViewerSsrcs::default();
        for ssrc in 1..=MAX_VIEWER_SSRCS as u32 {
            v.learn(Ssrc(ssrc));
            v.learn(Ssrc(ssrc));
        }
        assert_eq!(v.as_slice().len(), MAX_VIEWER_SSRCS);
        v.learn(Ssrc(100));
        assert!(!v.knows(Ssrc(1)) && v.knows(Ssrc(2)) && v.knows(Ssrc(100)));
        v.learn(Ssrc(101));
        assert!(!v.knows(Ssrc(2)) && v.knows(Ssrc(3)) && v.knows(Ssrc(101)));
    }

    #[test]
    fn digest_into_keeps_other_tracks_and_touches_nothing_when_invalid() {
        let arrival = NtpTime(0x0001_0000u64 << 16);
        let mut latest = [None; MAX_TRACKS];
        let rr = receiver_report(Ssrc(7), &[(VIDEO.ssrc, 10, 900, 0, 0)]);
        let mut v = ViewerSsrcs::default();
        let s = digest_rtcp_into(&rr, &[VIDEO, AUDIO], arrival, &mut latest, &mut v).unwrap();
        assert_eq!(s.receptions, 1);
        assert_eq!(latest[0].unwrap().fraction_lost, 10);
        assert_eq!(latest[1], None);
        // A later report about audio only leaves the video slot as it was.
        let rr = receiver_report(Ssrc(7), &[(AUDIO.ssrc, 20, 480, 0, 0)]);
        digest_rtcp_into(&rr, &[VIDEO, AUDIO], arrival, &mut latest, &mut v).unwrap();
        assert_eq!(latest[0].unwrap().fraction_lost, 10);
        assert_eq!(latest[1].unwrap().fraction_lost, 20);
        // A valid RR followed by a broken packet changes nothing.
        let before = latest;
        let mut bad = receiver_report(Ssrc(7), &[(VIDEO.ssrc, 99, 1, 0, 0)]);
        bad.extend_from_slice(&[0x81, 203, 0, 5, 0, 0, 0, 7]);
        assert_eq!(
            digest_rtcp_into(&bad, &[VIDEO, AUDIO], arrival, &mut latest, &mut v),
            Err(RtcpError::LengthOverrun)
        );
        assert_eq!(latest, before);
    }

    #[test]
    fn invalid_packets_are_rejected_whole() {
        let mut rr = receiver_report(Ssrc(7), &[(VIDEO.ssrc, 10, 1, 0, 0)]);
        rr[0] = 0x41; // version 1
        assert!(digest_rtcp(&rr, &[VIDEO], NtpTime(0), ViewerSsrcs::default()).is_err());
        let rr = receiver_report(Ssrc(7), &[(VIDEO.ssrc, 10, 1, 0, 0)]);
        assert!(digest_rtcp(
            &rr[..rr.len() - 1],
            &[VIDEO],
            NtpTime(0),
            ViewerSsrcs::default()
        )
        .is_err());
        assert!(digest_rtcp(&[], &[VIDEO], NtpTime(0), ViewerSsrcs::default()).is_err());
    }
}
