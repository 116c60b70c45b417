//! The latency the server adds to a published stream (issue 16, "Targets"): the bench's own
//! RTSP publisher's packet in → a viewer's packet out, from kernel receive timestamps at
//! both ends.
//!
//! How it is measured, on loopback:
//! - **In**: the server's kernel receive timestamp of a publisher packet is taken inside the
//!   publisher's `sendmsg` (loopback delivers synchronously), so the publisher stores
//!   `CLOCK_REALTIME` (the clock of `SO_TIMESTAMPNS`) just *before* each packet's send: a
//!   bound never later than the server's receive timestamp, so the latency is never
//!   understated. Per frame the time of its *last* packet counts (the server cannot send a
//!   frame before it has it whole). The table is [`SendTimes`]: a bounded ring per track
//!   indexed by frame, written by the publisher thread and read by the receiver thread
//!   without locks or allocation.
//! - **Out**: the viewer's `SO_TIMESTAMPNS` receive timestamp of each RTP packet (over
//!   `--transport tcp`, a stream socket has none: the time the receiver read the frame, a
//!   bound never earlier than its arrival).
//! - **Counted**: the steady phase (every viewer playing); a packet of a frame the publisher
//!   sent before the viewer's PLAY is the server's GOP cache, sent at once to a joining
//!   viewer, and is counted apart, not as latency.
//! - **Pairing**: viewers' packets carry the server's RTP timestamps, not the publisher's.
//!   The server passes the publisher's clock through: its sender reports to viewers carry the
//!   publisher's NTP time for the viewer's RTP time (`live_log::LogWriter::sender_report`,
//!   `LiveLog` tracks' `source_clock`; RFC 3550 §6.4.1). The publisher's own reports map its
//!   RTP time linearly to its wall clock ([`PublisherClock`]), so one viewer sender report
//!   gives the constant offset between the viewer's RTP time and the publisher's for that
//!   track (the log numbers `ts = ts0 + pts` alike on every shard, so it holds for every
//!   viewer). A viewer packet's publisher RTP time then names its frame in the table.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::{new_histogram, Percentiles};
use shardcast::wire::ntp::{NtpTime, NTP_UNIX_OFFSET_SECS};

/// Frames remembered per track (a power of two): ~20 s of 50 fps video, far more than a
/// viewer lags behind the publisher on loopback.
pub(crate) const FRAMES_PER_TRACK: usize = 1024;
/// Tracks a publisher may have in the table.
pub(crate) const MAX_TRACKS: usize = 4;
/// Recent lookups the receiver remembers per track: all viewers get the same frames, in
/// bursts, so most packets find their frame here.
const CACHE: usize = 8;

/// One frame's entry: `tag` = `(frame number + 1) << 32 | publisher RTP timestamp` (0:
/// empty), `send_ns` = `CLOCK_REALTIME` just before its latest packet's send.
#[derive(Debug, Default)]
struct Slot {
    tag: AtomicU64,
    send_ns: AtomicU64,
}

#[derive(Debug)]
struct TrackTimes {
    slots: Box<[Slot]>,
    /// Frames begun so far.
    begun: AtomicU64,
    /// RTP clock rate.
    rate: u32,
    /// The publisher's RTP timestamp at [`SendTimes::wall_base_ns`].
    rtp_base: u32,
}

/// The publisher's send times per frame, shared with the receiver thread.
#[derive(Debug)]
pub(crate) struct SendTimes {
    tracks: Vec<TrackTimes>,
    /// `CLOCK_REALTIME` ns at which every track's RTP time was its `rtp_base` (0: unset).
    wall_base_ns: AtomicU64,
}

/// The publisher's clock for one track: RTP time `rtp_base` at wall time `wall_base_ns`,
/// advancing at `rate` Hz. Its sender reports state exactly this mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublisherClock {
    /// `CLOCK_REALTIME` ns of `rtp_base`.
    pub(crate) wall_base_ns: u64,
    /// RTP timestamp at `wall_base_ns`.
    pub(crate) rtp_base: u32,
    /// RTP clock rate, Hz.
    pub(crate) rate: u32,
}

impl PublisherClock {
    /// The RTP time at wall time `wall_ns` (RFC 3550 §5.1: modulo 2^32).
    pub(crate) fn rtp_at(&self, wall_ns: u64) -> u32 {
        let since = i128::from(wall_ns) - i128::from(self.wall_base_ns);
        let ticks = (since * i128::from(self.rate)).div_euclid(1_000_000_000);
        self.rtp_base.wrapping_add(ticks as u32)
    }
}

/// `CLOCK_REALTIME` ns of an NTP time (RFC 3550 §4: seconds since 1900 and a 2^-32 fraction).
pub(crate) fn ntp_to_unix_ns(ntp: NtpTime) -> u64 {
    let secs = u64::from(ntp.seconds()).saturating_sub(NTP_UNIX_OFFSET_SECS);
    let frac_ns = (u64::from(ntp.fraction()) * 1_000_000_000) >> 32;
    secs * 1_000_000_000 + frac_ns
}

impl SendTimes {
    /// A table for tracks with these RTP clock rates and initial RTP timestamps.
    pub(crate) fn new(tracks: &[(u32, u32)]) -> Self {
        Self {
            tracks: tracks
                .iter()
                .take(MAX_TRACKS)
                .map(|&(rate, rtp_base)| TrackTimes {
                    slots: (0..FRAMES_PER_TRACK).map(|_| Slot::default()).collect(),
                    begun: AtomicU64::new(0),
                    rate: rate.max(1),
                    rtp_base,
                })
                .collect(),
            wall_base_ns: AtomicU64::new(0),
        }
    }

    /// Sets the wall time of the tracks' `rtp_base` (the publisher, before its first packet).
    pub(crate) fn set_wall_base(&self, ns: u64) {
        self.wall_base_ns.store(ns.max(1), Ordering::Release);
    }

    /// Track `i`'s clock, once the publisher has started.
    pub(crate) fn clock(&self, i: usize) -> Option<PublisherClock> {
        let t = self.tracks.get(i)?;
        let wall_base_ns = self.wall_base_ns.load(Ordering::Acquire);
        (wall_base_ns != 0).then_some(PublisherClock {
            wall_base_ns,
            rtp_base: t.rtp_base,
            rate: t.rate,
        })
    }

    /// The publisher starts a frame of track `i` with RTP timestamp `ts`.
    pub(crate) fn begin_frame(&self, i: usize, ts: u32) {
        let Some(t) = self.tracks.get(i) else {
            return;
        };
        let k = t.begun.load(Ordering::Relaxed);
        let slot = &t.slots[(k as usize) & (FRAMES_PER_TRACK - 1)];
        // Empty while rewritten, so a reader never pairs the old tag with the new time.
        slot.tag.store(0, Ordering::Release);
        slot.send_ns.store(0, Ordering::Release);
        slot.tag
            .store(((k + 1) << 32) | u64::from(ts), Ordering::Release);
        t.begun.store(k + 1, Ordering::Release);
    }

    /// The publisher is about to send a packet of track `i`'s current frame.
    pub(crate) fn before_send(&self, i: usize, now_ns: u64) {
        let Some(t) = self.tracks.get(i) else {
            return;
        };
        let k = t.begun.load(Ordering::Relaxed);
        if k == 0 {
            return;
        }
        let slot = &t.slots[((k - 1) as usize) & (FRAMES_PER_TRACK - 1)];
        slot.send_ns.store(now_ns, Ordering::Release);
    }

    /// The send time of the last packet of track `i`'s frame whose publisher RTP timestamp
    /// is within `tolerance` ticks of `ts`, searching back from the newest frame.
    fn lookup(&self, i: usize, ts: u32, tolerance: u32) -> Option<u64> {
        let t = self.tracks.get(i)?;
        let newest = t.begun.load(Ordering::Acquire);
        let oldest = newest.saturating_sub(FRAMES_PER_TRACK as u64 - 1);
        for k in (oldest..newest).rev() {
            let slot = &t.slots[(k as usize) & (FRAMES_PER_TRACK - 1)];
            let tag = slot.tag.load(Ordering::Acquire);
            if tag >> 32 != k + 1 {
                continue;
            }
            let diff = (tag as u32).wrapping_sub(ts) as i32;
            if diff.unsigned_abs() > tolerance {
                continue;
            }
            let ns = slot.send_ns.load(Ordering::Acquire);
            if slot.tag.load(Ordering::Acquire) == tag && ns != 0 {
                return Some(ns);
            }
            return None;
        }
        None
    }
}

/// What a run reports of the server's added latency.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct LatencyFigures {
    /// Publisher's send (of a frame's last packet) → viewer's kernel receive timestamp, over
    /// every paired viewer packet.
    pub(crate) added: Percentiles,
    /// Viewer packets paired with a publisher frame.
    pub(crate) paired: u64,
    /// Viewer packets received before the clock viewer's first sender report of their track
    /// was read (not paired).
    pub(crate) before_report: u64,
    /// Viewer packets whose frame is not in the publisher's table (not paired).
    pub(crate) unpaired: u64,
    /// Paired packets received before the publisher's send time: a pairing error (never
    /// expected; counted, not recorded).
    pub(crate) negative: u64,
    /// Packets of frames the publisher sent before the viewer's PLAY: the server's GOP
    /// cache, sent at once to a joining viewer (not counted in `added`).
    pub(crate) from_gop_cache: u64,
    /// Viewer sender reports whose offset differed from the one in use (the offset is
    /// constant while the publisher plays on; a change means the server reported by its own
    /// clock, e.g. before the publisher's first report reached it).
    pub(crate) offset_changes: u64,
}

/// The receiver thread's side: viewer sender reports in, per-packet latencies out.
#[derive(Debug)]
pub(crate) struct LatencyProbe {
    times: std::sync::Arc<SendTimes>,
    /// Per track: viewer RTP time − publisher RTP time.
    offsets: [Option<u32>; MAX_TRACKS],
    /// Per track: recent (viewer RTP timestamp, send time) lookups, round-robin.
    cache: [[(u32, Option<u64>); CACHE]; MAX_TRACKS],
    cache_next: [usize; MAX_TRACKS],
    cache_len: [usize; MAX_TRACKS],
    hist_us: Histogram<u64>,
    paired: u64,
    before_report: u64,
    unpaired: u64,
    negative: u64,
    from_gop_cache: u64,
    offset_changes: u64,
    /// Packets received before this `CLOCK_REALTIME` ns are not counted.
    count_from_ns: u64,
}

impl LatencyProbe {
    /// A probe reading `times`.
    pub(crate) fn new(times: std::sync::Arc<SendTimes>) -> Self {
        Self {
            times,
            offsets: [None; MAX_TRACKS],
            cache: [[(0, None); CACHE]; MAX_TRACKS],
            cache_next: [0; MAX_TRACKS],
            cache_len: [0; MAX_TRACKS],
            hist_us: new_histogram(),
            paired: 0,
            before_report: 0,
            unpaired: 0,
            negative: 0,
            from_gop_cache: 0,
            offset_changes: 0,
            count_from_ns: 0,
        }
    }

    /// A viewer's sender report for track `i` (RFC 3550 §6.4.1: `ntp` and `rtp` are the same
    /// instant): sets the track's offset from the publisher's clock.
    pub(crate) fn on_sender_report(&mut self, i: usize, ntp: NtpTime, rtp: u32) {
        let (Some(clock), Some(slot)) = (self.times.clock(i), self.offsets.get_mut(i)) else {
            return;
        };
        let publisher_rtp = clock.rtp_at(ntp_to_unix_ns(ntp));
        let offset = rtp.wrapping_sub(publisher_rtp);
        if let Some(old) = *slot {
            // Rounding of the NTP fraction and of the server's extrapolation: a tick or two.
            if (offset.wrapping_sub(old) as i32).unsigned_abs() <= 2 {
                return;
            }
            self.offset_changes += 1;
        }
        *slot = Some(offset);
        self.cache_len[i] = 0;
    }

    /// A viewer's RTP packet of track `i` with timestamp `ts`, received at `arrival_ns`
    /// (`CLOCK_REALTIME`) by a viewer whose PLAY went out at `play_ns`. Allocates nothing.
    pub(crate) fn on_packet(&mut self, i: usize, ts: u32, arrival_ns: u64, play_ns: u64) {
        if arrival_ns < self.count_from_ns {
            return;
        }
        let Some(Some(offset)) = self.offsets.get(i).copied() else {
            self.before_report += 1;
            return;
        };
        let cached = self.cache[i][..self.cache_len[i]]
            .iter()
            .find(|(t, _)| *t == ts)
            .map(|&(_, ns)| ns);
        let sent = match cached {
            Some(ns) => ns,
            None => {
                let rate = self.times.clock(i).map_or(90_000, |c| c.rate);
                // A millisecond of ticks: frames lie ≥ 10 ms apart, pairing errors ≤ 2 ticks.
                let ns = self
                    .times
                    .lookup(i, ts.wrapping_sub(offset), (rate / 1000).max(2));
                let at = self.cache_next[i];
                self.cache[i][at] = (ts, ns);
                self.cache_next[i] = (at + 1) % CACHE;
                self.cache_len[i] = (self.cache_len[i] + 1).min(CACHE);
                ns
            }
        };
        match sent {
            Some(sent) if sent < play_ns => self.from_gop_cache += 1,
            Some(sent) if arrival_ns >= sent => {
                self.paired += 1;
                self.hist_us
                    .saturating_record(((arrival_ns - sent) / 1000).max(1));
            }
            Some(_) => self.negative += 1,
            None => self.unpaired += 1,
        }
    }

    /// Forgets what was recorded and counts only packets received from `from_ns` on (the
    /// offsets stay).
    pub(crate) fn count_from(&mut self, from_ns: u64) {
        self.hist_us.reset();
        self.paired = 0;
        self.before_report = 0;
        self.unpaired = 0;
        self.negative = 0;
        self.from_gop_cache = 0;
        self.count_from_ns = from_ns;
    }

    /// The figures so far.
    pub(crate) fn figures(&self) -> LatencyFigures {
        LatencyFigures {
            added: Percentiles::of(&self.hist_us),
            paired: self.paired,
            before_report: self.before_report,
            unpaired: self.unpaired,
            negative: self.negative,
            from_gop_cache: self.from_gop_cache,
            offset_changes: self.offset_changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ntp_of_unix_ns(ns: u64) -> NtpTime {
        NtpTime::from_system_time(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
    }

    #[test]
    fn the_publisher_clock_maps_wall_time_to_rtp_time_modulo_2_32() {
        let c = PublisherClock {
            wall_base_ns: 1_000_000_000,
            rtp_base: u32::MAX - 10,
            rate: 90_000,
        };
        assert_eq!(c.rtp_at(1_000_000_000), u32::MAX - 10);
        assert_eq!(c.rtp_at(2_000_000_000), 90_000 - 11);
        assert_eq!(c.rtp_at(0), (u32::MAX - 10).wrapping_sub(90_000));
        let t = 1_700_000_000_123_456_789u64;
        let back = ntp_to_unix_ns(ntp_of_unix_ns(t));
        assert!(back.abs_diff(t) <= 1, "{back} vs {t}");
    }

    /// A server that adds 3 ms and renumbers the timestamps by a constant: the probe pairs
    /// each viewer packet with its frame's last packet through a sender report carrying the
    /// publisher's clock, and records 3 ms; packets before any report, or of frames the
    /// publisher never sent, are unpaired, not recorded.
    #[test]
    fn viewer_packets_pair_with_the_last_packet_of_their_frame_through_a_sender_report() {
        let base = 1_700_000_000_000_000_000u64;
        let times = Arc::new(SendTimes::new(&[(90_000, 1000)]));
        times.set_wall_base(base);
        let clock = times.clock(0).unwrap();
        let mut probe = LatencyProbe::new(times.clone());
        let server_offset = 0x8000_0000u32;
        // Frame n at 40 ms steps: two packets 1 ms apart.
        for n in 0..100u64 {
            let ts = 1000 + (n as u32) * 3600;
            let at = base + n * 40_000_000;
            times.begin_frame(0, ts);
            times.before_send(0, at);
            times.before_send(0, at + 1_000_000);
        }
        probe.on_packet(0, 1000u32.wrapping_add(server_offset), base + 5_000_000, 0);
        assert_eq!(probe.figures().before_report, 1, "no report yet");
        // The server's report: the publisher's NTP time for its own RTP time.
        let wall = base + 1_234_567_890;
        probe.on_sender_report(
            0,
            ntp_of_unix_ns(wall),
            clock.rtp_at(wall).wrapping_add(server_offset),
        );
        for n in 50..60u64 {
            let ts = (1000 + (n as u32) * 3600).wrapping_add(server_offset);
            let last_sent = base + n * 40_000_000 + 1_000_000;
            probe.on_packet(0, ts, last_sent + 3_000_000, 0);
            probe.on_packet(0, ts, last_sent + 3_000_000, 0);
        }
        probe.on_packet(0, 7u32.wrapping_add(server_offset), base, 0);
        // A viewer that played after frame 10 was sent gets it from the GOP cache.
        let frame10 = 1000u32 + 10 * 3600;
        probe.on_packet(
            0,
            frame10.wrapping_add(server_offset),
            base + 2_000_000_000,
            base + 1_000_000_000,
        );
        let f = probe.figures();
        assert_eq!(
            (
                f.paired,
                f.before_report,
                f.unpaired,
                f.negative,
                f.from_gop_cache
            ),
            (20, 1, 1, 0, 1),
            "{f:?}"
        );
        assert!((f.added.p50_ms - 3.0).abs() < 0.01, "{f:?}");
        assert!((f.added.max_ms - 3.0).abs() < 0.01, "{f:?}");
        // A report by another clock (the server's own) changes the offset and is counted.
        probe.on_sender_report(0, ntp_of_unix_ns(wall), clock.rtp_at(wall));
        assert_eq!(probe.figures().offset_changes, 1);
        // Counting afresh from a later instant: earlier arrivals are ignored.
        probe.count_from(base + 10_000_000_000);
        probe.on_packet(0, 1000u32.wrapping_add(server_offset), base + 5_000_000, 0);
        assert_eq!(
            probe.figures(),
            LatencyFigures {
                offset_changes: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_frame_rewritten_in_its_slot_is_not_paired_with_the_old_time() {
        let times = SendTimes::new(&[(48_000, 0)]);
        for n in 0..(FRAMES_PER_TRACK as u32 + 5) {
            times.begin_frame(0, n * 1024);
            times.before_send(0, 1 + u64::from(n));
        }
        assert_eq!(times.lookup(0, 3 * 1024, 48), None, "overwritten");
        let last = (FRAMES_PER_TRACK as u32 + 4) * 1024;
        assert_eq!(
            times.lookup(0, last, 48),
            Some(u64::from(FRAMES_PER_TRACK as u32 + 5))
        );
        times.begin_frame(0, last + 1024);
        assert_eq!(times.lookup(0, last + 1024, 48), None, "no packet sent yet");
    }
}
