//! Receiver statistics per session track: RFC 3550 extended sequence numbers (loss and
//! reordering, Appendix A.1/A.3), interarrival jitter (§6.4.1, Appendix A.8), time to first
//! packet and first H.264 keyframe. Pure arithmetic over (packet, arrival time); no I/O.

use hdrhistogram::Histogram;
use serde::Serialize;

use shardcast::stats::window::quantiles_of;
use shardcast::wire::rtp::RtpHeader;

/// What a track carries, from the SDP `m=` line; decides keyframe detection and SLO use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MediaKind {
    /// `m=video` (H.264 here).
    Video,
    /// `m=audio`.
    Audio,
    /// Anything else.
    Other,
}

/// RFC 3550 sequence-number bookkeeping with 16-bit wrap extension.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqTracker {
    base_ext: Option<i64>,
    max_ext: i64,
    received: u64,
    reordered: u64,
}

impl SeqTracker {
    /// Extends `seq` against the highest sequence number seen so far: the candidate within
    /// ±32768 of it (the wrap rule of RFC 3550 A.1). Returns the extended value.
    pub(crate) fn extend(&self, seq: u16) -> i64 {
        if self.base_ext.is_none() {
            return i64::from(seq);
        }
        let delta = seq.wrapping_sub(self.max_ext as u16) as i16;
        self.max_ext + i64::from(delta)
    }

    /// Counts one arriving packet; returns `true` if it came after a higher sequence number.
    pub(crate) fn observe(&mut self, seq: u16) -> bool {
        let ext = self.extend(seq);
        self.received += 1;
        match self.base_ext {
            None => {
                self.base_ext = Some(ext);
                self.max_ext = ext;
                false
            }
            Some(base) => {
                if ext > self.max_ext {
                    self.max_ext = ext;
                    false
                } else {
                    if ext < base {
                        self.base_ext = Some(ext);
                    }
                    self.reordered += 1;
                    true
                }
            }
        }
    }

    /// Packets received (duplicates included).
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Packets that arrived after a later one.
    pub(crate) fn reordered(&self) -> u64 {
        self.reordered
    }

    /// The extended highest sequence number received (RFC 3550 A.1), 0 before any packet.
    pub(crate) fn highest_extended(&self) -> u32 {
        self.max_ext as u32
    }

    /// Packets expected from the first to the highest sequence number (RFC 3550 A.3).
    pub(crate) fn expected(&self) -> u64 {
        match self.base_ext {
            Some(base) => (self.max_ext - base + 1) as u64,
            None => 0,
        }
    }

    /// Expected minus received, floored at zero (duplicates can make it negative).
    pub(crate) fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

/// RFC 3550 §6.4.1 interarrival jitter estimate, in timestamp units.
///
/// Steps larger than one second of media clock (a re-PLAY from the start, a seek) are treated
/// as a discontinuity: the reference is reset and the estimate left unchanged.
#[derive(Debug, Clone)]
pub(crate) struct JitterEstimator {
    clock_rate_hz: u32,
    prev: Option<(u64, u32)>,
    jitter: f64,
    discontinuities: u64,
}

impl JitterEstimator {
    /// An estimator for a stream with the given RTP clock rate.
    pub(crate) fn new(clock_rate_hz: u32) -> Self {
        Self {
            clock_rate_hz: clock_rate_hz.max(1),
            prev: None,
            jitter: 0.0,
            discontinuities: 0,
        }
    }

    /// Feeds one packet's arrival (ns, any epoch) and RTP timestamp; returns the estimate.
    //= https://www.rfc-editor.org/rfc/rfc3550#section-6.4.1
    //# D(i,j) = (Rj - Ri) - (Sj - Si) = (Rj - Sj) - (Ri - Si)
    //# J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16
    pub(crate) fn observe(&mut self, arrival_ns: u64, timestamp: u32) -> f64 {
        if let Some((prev_ns, prev_ts)) = self.prev {
            let arrival_units =
                (arrival_ns as f64 - prev_ns as f64) * f64::from(self.clock_rate_hz) / 1e9;
            let ts_units = f64::from(timestamp.wrapping_sub(prev_ts) as i32);
            let d = (arrival_units - ts_units).abs();
            if d > f64::from(self.clock_rate_hz) {
                self.discontinuities += 1;
            } else {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.prev = Some((arrival_ns, timestamp));
        self.jitter
    }

    /// The current estimate in milliseconds of media time.
    pub(crate) fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate_hz)
    }

    /// The estimate in timestamp units, as a report block carries it (RFC 3550 §6.4.1).
    pub(crate) fn units(&self) -> u32 {
        self.jitter as u32
    }
}

/// Whether an H.264 RTP payload (RFC 6184) starts a keyframe: an IDR NAL (type 5), a STAP-A
/// (type 24, which carries SPS/PPS ahead of the IDR here), or an FU-A (28) start of an IDR.
pub(crate) fn is_h264_keyframe_start(payload: &[u8]) -> bool {
    match payload.first().map(|b| b & 0x1f) {
        Some(5) | Some(24) => true,
        Some(28) => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        _ => false,
    }
}

/// Everything measured for one track of one session.
#[derive(Debug, Clone)]
pub(crate) struct TrackStats {
    /// What the track carries.
    pub(crate) kind: MediaKind,
    /// RTP payload type from the SDP.
    pub(crate) payload_type: u8,
    /// Sequence bookkeeping.
    pub(crate) seq: SeqTracker,
    /// Jitter estimate.
    pub(crate) jitter: JitterEstimator,
    /// Bytes of RTP packets (headers included).
    pub(crate) bytes: u64,
    /// SSRC of the first packet; later packets with another SSRC are counted as foreign.
    pub(crate) ssrc: Option<u32>,
    /// Packets ignored: another SSRC, another payload type, or not RTP.
    pub(crate) foreign: u64,
    /// Arrival of the first packet (ns since the epoch).
    pub(crate) first_packet_ns: Option<u64>,
    /// Arrival of the latest packet (ns since the epoch): a track that stopped shows here.
    pub(crate) last_packet_ns: Option<u64>,
    /// Arrival of the first keyframe start (video only).
    pub(crate) first_keyframe_ns: Option<u64>,
    /// (expected, received) at the previous receiver report (RFC 3550 A.3 interval loss).
    pub(crate) report_prior: (u64, u64),
}

impl TrackStats {
    /// The report block a receiver sends about this track now (RFC 3550 §6.4.1, A.3), or
    /// `None` before the first packet. No SR is tracked: LSR and DLSR are 0 (no RTT).
    pub(crate) fn report_block(&mut self) -> Option<shardcast::wire::rtcp::ReportBlock> {
        let ssrc = self.ssrc?;
        let (expected, received) = (self.seq.expected(), self.seq.received());
        let (expected_prior, received_prior) = self.report_prior;
        self.report_prior = (expected, received);
        let expected_interval = expected.saturating_sub(expected_prior) as i64;
        let lost_interval = expected_interval - received.saturating_sub(received_prior) as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        Some(shardcast::wire::rtcp::ReportBlock {
            ssrc: shardcast::wire::rtp::Ssrc(ssrc),
            fraction_lost,
            cumulative_lost: (expected as i64 - received as i64).clamp(-0x80_0000, 0x7f_ffff)
                as i32,
            highest_seq: self.seq.highest_extended(),
            jitter: self.jitter.units(),
            lsr: 0,
            dlsr: 0,
        })
    }

    /// Empty statistics for a track.
    pub(crate) fn new(kind: MediaKind, payload_type: u8, clock_rate_hz: u32) -> Self {
        Self {
            kind,
            payload_type,
            seq: SeqTracker::default(),
            jitter: JitterEstimator::new(clock_rate_hz),
            bytes: 0,
            ssrc: None,
            foreign: 0,
            first_packet_ns: None,
            last_packet_ns: None,
            first_keyframe_ns: None,
            report_prior: (0, 0),
        }
    }

    /// Accounts one packet with its parsed header; returns the jitter estimate in µs, or
    /// `None` if the packet was not counted.
    pub(crate) fn observe(&mut self, pkt: &[u8], hdr: &RtpHeader, arrival_ns: u64) -> Option<u64> {
        if hdr.payload_type != self.payload_type || self.ssrc.is_some_and(|s| s != hdr.ssrc) {
            self.foreign += 1;
            return None;
        }
        self.ssrc = Some(hdr.ssrc);
        self.seq.observe(hdr.sequence_number);
        self.bytes += pkt.len() as u64;
        self.first_packet_ns.get_or_insert(arrival_ns);
        self.last_packet_ns = Some(arrival_ns);
        if self.kind == MediaKind::Video && self.first_keyframe_ns.is_none() {
            let payload = &pkt[hdr.payload_offset..hdr.payload_offset + hdr.payload_len];
            if is_h264_keyframe_start(payload) {
                self.first_keyframe_ns = Some(arrival_ns);
            }
        }
        self.jitter.observe(arrival_ns, hdr.timestamp);
        Some((self.jitter.jitter_ms() * 1000.0) as u64)
    }
}

/// A latency/jitter distribution in microseconds (3 significant digits, up to 1 hour).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a histogram in milliseconds, for the report.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct Percentiles {
    /// Samples recorded.
    pub(crate) count: u64,
    /// Median, ms.
    pub(crate) p50_ms: f64,
    /// 95th percentile, ms.
    pub(crate) p95_ms: f64,
    /// 99th percentile, ms.
    pub(crate) p99_ms: f64,
    /// Maximum, ms.
    pub(crate) max_ms: f64,
}

impl Percentiles {
    /// Summarizes a µs histogram (the server's own [`quantiles_of`], under the report's
    /// field names).
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        let q = quantiles_of(h);
        Self {
            count: q.count,
            p50_ms: q.p50,
            p95_ms: q.p95,
            p99_ms: q.p99,
            max_ms: q.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_servers_quantiles_in_ms() {
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn jitter_matches_hand_computed_rfc3550_example() {
        // 8 kHz clock, 20 ms packets (160 units). Arrivals in units: 0, 170, 320, 490, so the
        // transit alternates 0, 10, 0, 10 and every |D| is 10 units.
        // J1 = 10/16 = 0.625; J2 = 0.625 + 9.375/16 = 1.2109375;
        // J3 = 1.2109375 + 8.7890625/16 = 1.76025390625 units = 0.22003173828125 ms.
        let mut j = JitterEstimator::new(8000);
        let unit_ns = 125_000; // 1/8000 s
        let arrivals = [0u64, 170, 320, 490];
        let stamps = [1000u32, 1160, 1320, 1480];
        let mut last = 0.0;
        for (a, s) in arrivals.iter().zip(stamps) {
            last = j.observe(1_000_000_000 + a * unit_ns, s);
        }
        assert!((last - 1.760_253_906_25).abs() < 1e-9, "{last}");
        assert!((j.jitter_ms() - 0.220_031_738_281_25).abs() < 1e-9);
    }

    #[test]
    fn jitter_ignores_timestamp_wrap_and_resets_on_a_jump() {
        let mut j = JitterEstimator::new(90_000);
        // Perfect pacing across the 32-bit wrap: 40 ms = 3600 units.
        let start = u32::MAX - 3600;
        for i in 0..4u32 {
            j.observe(u64::from(i) * 40_000_000, start.wrapping_add(i * 3600));
        }
        assert!(j.jitter_ms() < 1e-6);
        // A re-PLAY from the start: the timestamp jumps back 10 s.
        j.observe(200_000_000, start.wrapping_sub(900_000));
        assert_eq!(j.discontinuities, 1);
        assert!(j.jitter_ms() < 1e-6);
    }

    #[test]
    fn sequence_extension_crosses_the_16_bit_wrap() {
        let mut s = SeqTracker::default();
        for seq in [65_533u16, 65_534, 65_535, 0, 1, 2] {
            assert!(!s.observe(seq));
        }
        assert_eq!(s.extend(3), 65_536 + 3);
        assert_eq!(s.expected(), 6);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn sequence_gap_counts_loss_and_late_packet_counts_reordering() {
        let mut s = SeqTracker::default();
        for seq in [10u16, 11, 13, 14] {
            s.observe(seq);
        }
        assert_eq!((s.expected(), s.received(), s.lost()), (5, 4, 1));
        assert!(s.observe(12), "12 after 14 is reordered");
        assert_eq!((s.lost(), s.reordered()), (0, 1));
        // A gap across the wrap: 65535 then 2 loses 0 and 1.
        let mut w = SeqTracker::default();
        w.observe(65_535);
        w.observe(2);
        assert_eq!((w.expected(), w.lost()), (4, 2));
    }

    #[test]
    fn keyframe_detection_follows_rfc6184_nal_types() {
        assert!(is_h264_keyframe_start(&[0x65, 0x88]));
        assert!(is_h264_keyframe_start(&[0x78, 0, 2]));
        assert!(is_h264_keyframe_start(&[0x7c, 0x85]));
        assert!(!is_h264_keyframe_start(&[0x7c, 0x05]), "FU-A middle");
        assert!(
            !is_h264_keyframe_start(&[0x7c, 0x81]),
            "FU-A start of a P slice"
        );
        assert!(!is_h264_keyframe_start(&[0x41]));
        assert!(!is_h264_keyframe_start(&[]));
    }
}
