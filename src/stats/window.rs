//! A rolling distribution: quantiles over the last one to two windows, plus count and sum
//! since start (the shape of a Prometheus summary).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// How long one histogram generation collects before it becomes the "previous" one, for
/// viewer-reported figures (jitter, RTT): receiver reports come every ~5 s per viewer, so a
/// shorter window would often be empty.
pub const WINDOW: Duration = Duration::from_secs(30);
/// The window for pacing lateness, recorded for every packet: short, so the figure shows
/// the data plane now (5–10 s), not a start-up burst half a minute ago.
pub const LATENESS_WINDOW: Duration = Duration::from_secs(5);

/// Largest value recorded, in microseconds (larger values are clamped): one minute.
const MAX_MICROS: u64 = 60_000_000;

/// Percentiles of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Observations in the window.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest observation.
    pub max: f64,
}

/// Values in microseconds over a sliding window of one to two generations (`window`).
#[derive(Debug, Clone)]
pub struct RollingHistogram {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    rotated_at: Instant,
    window: Duration,
    /// Observations since start.
    pub total_count: u64,
    /// Sum of observations since start, in microseconds.
    pub total_sum_micros: u128,
}

/// A histogram covering 1 µs .. 60 s at 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static histogram bounds are valid")
}

impl RollingHistogram {
    /// An empty distribution with generations of [`WINDOW`], the first starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self::with_window(now, WINDOW)
    }

    /// An empty distribution with generations of `window`, the first starting at `now`.
    pub fn with_window(now: Instant, window: Duration) -> Self {
        Self {
            current: micros_histogram(),
            previous: micros_histogram(),
            rotated_at: now,
            window,
            total_count: 0,
            total_sum_micros: 0,
        }
    }

    /// Starts a new generation when the current one is a window old.
    pub fn rotate(&mut self, now: Instant) {
        if now.saturating_duration_since(self.rotated_at) >= self.window {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.rotated_at = now;
        }
    }

    /// Records one value in microseconds (clamped to the histogram's range).
    pub fn record_micros(&mut self, micros: u64) {
        let v = micros.clamp(1, MAX_MICROS);
        self.current.saturating_record(v);
        self.total_count += 1;
        self.total_sum_micros += u128::from(micros);
    }

    /// Records one value in milliseconds.
    pub fn record_ms(&mut self, ms: f64) {
        if ms.is_finite() && ms >= 0.0 {
            self.record_micros((ms * 1000.0).round() as u64);
        }
    }

    /// Adds a histogram of microsecond values recorded elsewhere (a shard's lateness).
    pub fn add(&mut self, other: &Histogram<u64>) {
        // Both histograms share bounds and precision, so `add` cannot fail on range.
        let _ = self.current.add(other);
        self.total_count += other.len();
        self.total_sum_micros += (other.mean() * other.len() as f64) as u128;
    }

    /// Quantiles over the current and previous windows, in milliseconds.
    pub fn quantiles(&self) -> Quantiles {
        let mut both = self.previous.clone();
        let _ = both.add(&self.current);
        quantiles_of(&both)
    }
}

/// Quantiles of a microsecond histogram, in milliseconds.
pub fn quantiles_of(h: &Histogram<u64>) -> Quantiles {
    if h.is_empty() {
        return Quantiles::default();
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Quantiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_cover_two_windows_then_forget() {
        let t0 = Instant::now();
        let mut h = RollingHistogram::new(t0);
        for v in 1..=100u64 {
            h.record_ms(v as f64);
        }
        let q = h.quantiles();
        assert_eq!(q.count, 100);
        assert!((q.p50 - 50.0).abs() < 0.1, "{q:?}");
        assert!((q.max - 100.0).abs() < 0.1, "{q:?}");
        h.rotate(t0 + WINDOW);
        assert_eq!(h.quantiles().count, 100, "previous window still counts");
        h.rotate(t0 + 2 * WINDOW);
        assert_eq!(
            h.quantiles().count,
            0,
            "older than two windows is forgotten"
        );
        assert_eq!(h.total_count, 100, "totals are since start");
        assert_eq!(h.total_sum_micros, 5050 * 1000);
    }

    #[test]
    fn a_shorter_window_forgets_sooner() {
        let t0 = Instant::now();
        let mut h = RollingHistogram::with_window(t0, LATENESS_WINDOW);
        h.record_ms(1.0);
        h.rotate(t0 + LATENESS_WINDOW);
        assert_eq!(h.quantiles().count, 1);
        h.rotate(t0 + 2 * LATENESS_WINDOW);
        assert_eq!(h.quantiles().count, 0);
    }

    #[test]
    fn added_histograms_count() {
        let t0 = Instant::now();
        let mut shard = micros_histogram();
        shard.record(2_000).unwrap();
        shard.record(4_000).unwrap();
        let mut h = RollingHistogram::new(t0);
        h.add(&shard);
        assert_eq!(h.total_count, 2);
        assert!((h.quantiles().max - 4.0).abs() < 0.01);
    }
}
