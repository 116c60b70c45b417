//! A viewer's playback clock, sans-IO: what a player's buffer would do with the media the
//! viewer downloaded. Playback starts when the first segment or part is complete; the
//! position then advances in real time; when it reaches the end of what has been downloaded
//! the player stalls (rebuffers) until more media arrives, and resumes at once. Every call
//! takes the time, so tests drive it with a fake clock.

use std::time::{Duration, Instant};

/// The playback model of one viewer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Playback {
    /// When the clock last moved (`None` before the first media).
    at: Option<Instant>,
    /// Media seconds downloaded.
    buffered_secs: f64,
    /// Media seconds played at `at`.
    position_secs: f64,
    /// When the current stall began, if stalled.
    stall_since: Option<Instant>,
    /// Stalls so far.
    stalls: u32,
    /// Time spent stalled, closed stalls only.
    stalled: Duration,
}

impl Playback {
    /// Moves the clock to `now`: the position advances, or a stall begins at the instant it
    /// reached the end of the buffer.
    fn advance(&mut self, now: Instant) {
        let Some(at) = self.at else {
            return;
        };
        if now <= at {
            return;
        }
        self.at = Some(now);
        if self.stall_since.is_some() {
            return;
        }
        let elapsed = (now - at).as_secs_f64();
        let room = self.buffered_secs - self.position_secs;
        if elapsed >= room {
            self.position_secs = self.buffered_secs;
            self.stall_since = Some(at + Duration::from_secs_f64(room.max(0.0)));
            self.stalls += 1;
        } else {
            self.position_secs += elapsed;
        }
    }

    /// `duration_secs` of media finished downloading at `now` (the first starts playback;
    /// any ends a stall).
    pub(crate) fn on_media(&mut self, now: Instant, duration_secs: f64) {
        if self.at.is_none() {
            self.at = Some(now);
        }
        self.advance(now);
        self.buffered_secs += duration_secs.max(0.0);
        if let Some(since) = self.stall_since.take() {
            self.stalled += now.saturating_duration_since(since);
        }
    }

    /// Media seconds downloaded but not yet played at `now` (0 before playback starts).
    pub(crate) fn ahead_secs(&self, now: Instant) -> f64 {
        let mut probe = self.clone();
        probe.advance(now);
        probe.buffered_secs - probe.position_secs
    }

    /// Stalls and total stalled time up to `now` (a stall still open counts to `now`).
    pub(crate) fn stalls_at(&self, now: Instant) -> (u32, Duration) {
        let mut probe = self.clone();
        probe.advance(now);
        let open = probe
            .stall_since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        (probe.stalls, probe.stalled + open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn media_arriving_ahead_of_the_clock_never_stalls() {
        let t0 = Instant::now();
        let mut p = Playback::default();
        assert!(p.at.is_none());
        assert_eq!(p.ahead_secs(t0), 0.0);
        // Three 2 s segments at once, then one every 2 s, each 1.9 s into its slot.
        p.on_media(t0, 2.0);
        p.on_media(t0, 2.0);
        p.on_media(t0, 2.0);
        for i in 1..20 {
            p.on_media(t0 + secs(2.0 * f64::from(i) - 0.1), 2.0);
        }
        assert_eq!(p.stalls_at(t0 + secs(40.0)), (0, Duration::ZERO));
        assert!((p.ahead_secs(t0 + secs(38.0)) - 6.0).abs() < 1e-6);
    }

    /// One segment, then the next arrives 0.5 s after the buffer ran dry: one stall of 0.5 s,
    /// dated from the moment the position reached the end, not from the next event.
    #[test]
    fn a_late_segment_is_one_stall_of_the_gap() {
        let t0 = Instant::now();
        let mut p = Playback::default();
        p.on_media(t0, 2.0);
        assert_eq!(p.stalls_at(t0 + secs(1.9)).0, 0);
        let (n, open) = p.stalls_at(t0 + secs(2.2));
        assert_eq!(n, 1, "an open stall counts");
        assert!((open.as_secs_f64() - 0.2).abs() < 1e-6);
        p.on_media(t0 + secs(2.5), 2.0);
        let (n, total) = p.stalls_at(t0 + secs(3.0));
        assert_eq!(n, 1);
        assert!((total.as_secs_f64() - 0.5).abs() < 1e-6, "{total:?}");
        // Resumed at 2.5 s with 2 s of media: dry again at 4.5 s.
        assert!((p.ahead_secs(t0 + secs(4.0)) - 0.5).abs() < 1e-6);
        let (n, total) = p.stalls_at(t0 + secs(5.0));
        assert_eq!(n, 2);
        assert!((total.as_secs_f64() - 1.0).abs() < 1e-6);
        assert_eq!(p.buffered_secs, 4.0);
    }

    #[test]
    fn parts_following_the_live_edge_keep_the_hold_back() {
        let t0 = Instant::now();
        let mut p = Playback::default();
        // Join 1 s behind the edge: three parts at once, then one per 1/3 s in real time.
        for _ in 0..3 {
            p.on_media(t0, 1.0 / 3.0);
        }
        for k in 1..=90 {
            p.on_media(t0 + secs(f64::from(k) / 3.0), 1.0 / 3.0);
        }
        assert_eq!(p.stalls_at(t0 + secs(30.1)).0, 0);
        assert!((p.ahead_secs(t0 + secs(30.0)) - 1.0).abs() < 1e-6);
    }
}
