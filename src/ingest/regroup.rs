//! Regrouping AAC frames that a source hands over one at a time, so RTP viewers get several
//! per packet (RFC 3640 §3.2.2: "one or more complete Access Units").
//!
//! An RTSP publisher's AAC arrives grouped (ffmpeg's and GStreamer's RTP muxers put about
//! three frames in a packet) and the live log keeps that grouping ([`crate::live_log`],
//! batches). RTMP carries one AAC frame per FLV tag, and a pulled source's frames come out
//! of its depacketizer one by one, so without this step each frame became its own RTP packet:
//! one datagram per viewer that never joins a GSO train, the costliest packet a shard sends.
//! With an RTMP publisher that made fan-out cost 1.35× a looped channel's per packet
//! (docs/BENCHMARKS.md, "Live ingest").
//!
//! [`AacRegroup`] holds a track's frames until they make a whole packet by the packetizer's
//! own rules ([`aac::aggregate_len`]: payload budget, equal steps, at most
//! [`MAX_AUS_PER_PACKET`]) or until the first would wait longer than the configured hold,
//! then hands them on together; the caller appends them to the log in one batch, where they
//! become one group. The hold is the only cost: the group's first frame reaches viewers up to
//! that much later. The default (150 ms, `config::DEFAULT_INGEST_AUDIO_HOLD_MS`) is the span
//! a looped channel's packets may have, so viewers get the packets a channel of the same
//! audio sends: six 64 kbit/s frames of 48 kHz (107 ms), three of 128 kbit/s (43 ms, the
//! payload budget binds first). Players' jitter buffers (hundreds of ms in RTSP players)
//! absorb it; an operator who wants the least audio delay sets a shorter hold or 0. A group
//! is released as soon as its next frame is predicted not to fit (the same step and the
//! group's largest size), so the usual wait is the group's span, not the hold.
//!
//! Sans-IO: it takes frames and the time, and calls back with the frames to append.

use std::time::{Duration, Instant};

use super::Frame;
use crate::media::track::Sample;
use crate::packetize::aac::{self, MAX_AUS_PER_PACKET, MAX_AU_SIZE};

/// A held frame: its times and where its bytes lie in [`AacRegroup::bytes`].
#[derive(Debug, Clone, Copy)]
struct Held {
    pts: i64,
    dts: i64,
    sync: bool,
    start: usize,
    len: usize,
}

/// One AAC track's frames held until they make one RTP packet (see the module doc).
#[derive(Debug)]
pub struct AacRegroup {
    track: usize,
    /// The track's clock (its frames' time scale).
    clock: u32,
    /// The viewers' RTP payload budget (as the log's packetizer has it).
    budget: usize,
    /// Longest a frame may be held, in wall time and in the track's clock.
    hold: Duration,
    hold_ticks: i64,
    held: Vec<Held>,
    /// The held frames' bytes, back to back (a reused buffer).
    bytes: Vec<u8>,
    /// When the first held frame arrived.
    since: Option<Instant>,
    /// The step between the last two frames (to predict the next one).
    step: Option<i64>,
    last_dts: Option<i64>,
}

impl AacRegroup {
    /// Regrouping for AAC track `track` with clock `clock` Hz, viewers' payload budget
    /// `budget`, holding a frame at most `hold`; `None` when `hold` is zero (off).
    pub fn new(track: usize, clock: u32, budget: usize, hold: Duration) -> Option<Self> {
        if hold.is_zero() {
            return None;
        }
        let clock = clock.max(1);
        let hold_ticks = (hold.as_nanos() * u128::from(clock) / 1_000_000_000) as i64;
        Some(Self {
            track,
            clock,
            budget,
            hold,
            hold_ticks,
            held: Vec::with_capacity(MAX_AUS_PER_PACKET),
            bytes: Vec::new(),
            since: None,
            step: None,
            last_dts: None,
        })
    }

    /// The track it regroups.
    pub fn track(&self) -> usize {
        self.track
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes a frame of this track at `now`; `emit` gets every frame whose group is complete,
    /// in order (this one too, when it completes its group or cannot be grouped). The caller
    /// appends what one call emits in one log batch.
    pub fn push(&mut self, frame: &Frame<'_>, now: Instant, emit: &mut dyn FnMut(&Frame<'_>)) {
        let step = self.last_dts.map(|last| frame.dts - last);
        self.last_dts = Some(frame.dts);
        if let Some(step) = step.filter(|&s| s > 0) {
            self.step = Some(step);
        }
        let groupable = frame.pts == frame.dts
            && !frame.data.is_empty()
            && frame.data.len() <= MAX_AU_SIZE as usize;
        if !groupable {
            self.flush(emit);
            emit(frame);
            return;
        }
        if !self.held.is_empty() && !self.would_join(frame.dts, frame.data.len()) {
            self.flush(emit);
        }
        self.held.push(Held {
            pts: frame.pts,
            dts: frame.dts,
            sync: frame.sync,
            start: self.bytes.len(),
            len: frame.data.len(),
        });
        self.bytes.extend_from_slice(frame.data);
        self.since.get_or_insert(now);
        // Complete when the next frame, one step later and as large as the largest held,
        // would not join (or no step is known yet to predict it by).
        let complete = match self.step {
            Some(step) => {
                let last = self.held[self.held.len() - 1].dts;
                let largest = self.held.iter().map(|h| h.len).max().unwrap_or(0);
                !self.would_join(last + step, largest)
            }
            None => false,
        };
        if complete || self.expired(now) {
            self.flush(emit);
        }
    }

    /// Releases the held frames if the first has waited the hold (the caller calls this on
    /// every frame of any track and on its timer, so a source that stops sending audio does
    /// not keep the last group).
    pub fn expire(&mut self, now: Instant, emit: &mut dyn FnMut(&Frame<'_>)) {
        if self.expired(now) {
            self.flush(emit);
        }
    }

    /// Releases whatever is held (the publisher left, or the stream ends).
    pub fn flush(&mut self, emit: &mut dyn FnMut(&Frame<'_>)) {
        for h in &self.held {
            emit(&Frame {
                track: self.track,
                pts: h.pts,
                dts: h.dts,
                sync: h.sync,
                data: &self.bytes[h.start..h.start + h.len],
            });
        }
        self.held.clear();
        self.bytes.clear();
        self.since = None;
    }

    fn expired(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.hold)
    }

    /// Whether a frame at `dts` of `len` bytes would go in the held frames' packet: within
    /// the hold's span of the first, and taken whole by the packetizer's aggregation rules.
    fn would_join(&self, dts: i64, len: usize) -> bool {
        let Some(first) = self.held.first() else {
            return true;
        };
        if self.held.len() >= MAX_AUS_PER_PACKET
            || dts < first.dts
            || dts - first.dts > self.hold_ticks
        {
            return false;
        }
        let mut samples = [Sample::default(); MAX_AUS_PER_PACKET];
        let mut offset = 0u64;
        let times = self.held.iter().map(|h| (h.dts, h.len)).chain([(dts, len)]);
        for (s, (t, n)) in samples.iter_mut().zip(times) {
            *s = Sample {
                offset,
                len: n as u32,
                dts: (t - first.dts) as u64,
                cts_offset: 0,
                sync: true,
            };
            offset += n as u64;
        }
        let k = self.held.len() + 1;
        // Index 1, as the log's writer groups: the alignment rule for channels' viewers
        // (`aac::GROUP_ALIGN`) never binds within `MAX_AUS_PER_PACKET`.
        aac::aggregate_len(&samples[..k], 1, self.budget, self.clock) == k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const BUDGET: usize = 1_200;

    fn frame(n: i64, data: &[u8]) -> Frame<'_> {
        Frame {
            track: 1,
            pts: 1_000 + n * 1024,
            dts: 1_000 + n * 1024,
            sync: true,
            data,
        }
    }

    /// Pushes `count` frames of `len` bytes 21.3 ms apart; returns the sizes of the emitted
    /// groups (frames per `push`/`expire` call that emitted) and every frame's wait.
    fn run(len: usize, count: i64, hold_ms: u64) -> (Vec<usize>, Vec<Duration>) {
        let t0 = Instant::now();
        let mut r = AacRegroup::new(1, RATE, BUDGET, Duration::from_millis(hold_ms)).unwrap();
        let mut groups = Vec::new();
        let mut waits = Vec::new();
        let data: Vec<Vec<u8>> = (0..count).map(|n| vec![n as u8; len]).collect();
        for n in 0..count {
            let now = t0 + Duration::from_micros(n as u64 * 21_333);
            let mut emitted = 0;
            r.push(&frame(n, &data[n as usize]), now, &mut |f| {
                let k = (f.pts - 1_000) / 1024;
                assert_eq!(f.data, &data[k as usize][..], "frame {k}'s own bytes");
                let arrived = t0 + Duration::from_micros(k as u64 * 21_333);
                waits.push(now - arrived);
                emitted += 1;
            });
            if emitted > 0 {
                groups.push(emitted);
            }
        }
        let mut left = 0;
        r.flush(&mut |_| left += 1);
        if left > 0 {
            groups.push(left);
        }
        (groups, waits)
    }

    #[test]
    fn frames_of_128_kbits_go_three_to_a_packet_released_when_the_third_arrives() {
        // 341-byte frames (128 kbit/s at 48 kHz): the budget takes three (4 + 341·3 + 4).
        let (groups, waits) = run(341, 12, 50);
        assert_eq!(groups, vec![3, 3, 3, 3]);
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(43)),
            "{waits:?}"
        );
    }

    #[test]
    fn the_hold_bounds_small_frames_groups() {
        // 100-byte frames fit eight to a packet; a 50 ms hold spans three (0, 21, 43 ms).
        let (groups, waits) = run(100, 9, 50);
        assert_eq!(groups, vec![3, 3, 3]);
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(50)),
            "{waits:?}"
        );
        // A 150 ms hold lets the packetizer's eight-AU limit bind.
        let (groups, waits) = run(100, 16, 150);
        assert_eq!(groups, vec![8, 8]);
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(150)),
            "{waits:?}"
        );
    }

    #[test]
    fn a_large_or_odd_frame_flushes_the_group_and_goes_alone() {
        let t0 = Instant::now();
        let mut r = AacRegroup::new(1, RATE, BUDGET, Duration::from_millis(50)).unwrap();
        let small = [1u8; 100];
        let big = [2u8; 9_000];
        let mut got = Vec::new();
        r.push(&frame(0, &small), t0, &mut |f| got.push(f.data.len()));
        r.push(&frame(1, &big), t0, &mut |f| got.push(f.data.len()));
        assert_eq!(
            got,
            vec![100, 9_000],
            "held frame first, then the one too large to group"
        );
        assert_eq!(r.held(), 0);
        // Times that go backwards end the group; the frame starts a new one.
        got.clear();
        r.push(&frame(2, &small), t0, &mut |f| got.push(f.data.len()));
        r.push(&frame(3, &small), t0, &mut |f| got.push(f.data.len()));
        assert_eq!((got.len(), r.held()), (0, 2));
        r.push(&frame(1, &small), t0, &mut |f| got.push(f.data.len()));
        assert_eq!((got.len(), r.held()), (2, 1));
    }

    #[test]
    fn expire_releases_a_group_the_source_stopped_adding_to() {
        let t0 = Instant::now();
        let mut r = AacRegroup::new(1, RATE, BUDGET, Duration::from_millis(50)).unwrap();
        let data = [0u8; 100];
        let mut got = 0;
        r.push(&frame(0, &data), t0, &mut |_| got += 1);
        r.expire(t0 + Duration::from_millis(49), &mut |_| got += 1);
        assert_eq!(got, 0);
        r.expire(t0 + Duration::from_millis(50), &mut |_| got += 1);
        assert_eq!((got, r.held()), (1, 0));
    }

    #[test]
    fn a_zero_hold_is_off() {
        assert!(AacRegroup::new(0, RATE, BUDGET, Duration::ZERO).is_none());
    }
}
