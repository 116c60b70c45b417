//! Rate limit on the log lines one client can cause (sans-IO: the caller passes the time).
//!
//! Every refused request, session set-up and session end is worth a log line, but a client
//! can cause them at its own request rate: 741k pipelined 404s once wrote 101 MB of log in
//! 5 s, 2.5 bytes of log per byte received. Each source (an address; IPv6 clients by /64,
//! like the admission limits) gets [`LogLimiter::burst`] lines per window; later lines in
//! the window are counted instead, and the caller writes one "N more like these from ADDR
//! suppressed" line when the source's next window opens or when [`LogLimiter::sweep`] finds
//! the window closed. `/metrics` counters keep the full counts; only the log is thinned.
//!
//! Memory is bounded: at most [`MAX_SOURCES`] sources are tracked, and sources beyond that
//! share one overflow entry (so a spread-out flood still costs a few lines per window).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::admission::client_key;

/// Lines one source may cause per window before its lines are counted instead.
pub const DEFAULT_BURST: u32 = 100;
/// Length of a window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Sources tracked at most (beyond them, one shared overflow entry).
pub const MAX_SOURCES: usize = 4_096;

/// What happened to one source's lines in one window.
#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    logged: u32,
    suppressed: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            opened: now,
            logged: 0,
            suppressed: 0,
        }
    }
}

/// Lines suppressed for one source in a window that has closed: to be logged as one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    /// The source (`None`: the shared overflow entry of untracked sources).
    pub source: Option<IpAddr>,
    /// Lines not written.
    pub lines: u64,
}

/// Per-source log budget; see the module docs.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    window: Duration,
    sources: HashMap<IpAddr, Window>,
    overflow: Option<Window>,
    /// Lines suppressed since start (for `/metrics`).
    pub suppressed_total: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_BURST, DEFAULT_WINDOW)
    }
}

/// The verdict on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Write the line; first write the summary of `earlier` when there is one (the lines
    /// this source had suppressed in its previous window).
    Log {
        /// Suppressed lines of the source's previous window, not yet reported.
        earlier: Option<Suppressed>,
    },
    /// Count the line, do not write it.
    Suppress,
}

impl LogLimiter {
    /// `burst` lines per source per `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            sources: HashMap::new(),
            overflow: None,
            suppressed_total: 0,
        }
    }

    /// Lines per source per window.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Decides on one line caused by `source` at `now`.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> Gate {
        let key = client_key(source);
        let tracked = self.sources.len() < MAX_SOURCES || self.sources.contains_key(&key);
        let (entry, reported_as) = if tracked {
            (
                self.sources.entry(key).or_insert_with(|| Window::new(now)),
                Some(key),
            )
        } else {
            (self.overflow.get_or_insert_with(|| Window::new(now)), None)
        };
        let mut earlier = None;
        if now.saturating_duration_since(entry.opened) >= self.window {
            if entry.suppressed > 0 {
                earlier = Some(Suppressed {
                    source: reported_as,
                    lines: entry.suppressed,
                });
            }
            *entry = Window::new(now);
        }
        if entry.logged < self.burst {
            entry.logged += 1;
            Gate::Log { earlier }
        } else {
            entry.suppressed += 1;
            self.suppressed_total += 1;
            Gate::Suppress
        }
    }

    /// Forgets the sources whose window has closed by `now`, returning those that had lines
    /// suppressed (to be reported, one line each). Call it about once a second.
    pub fn sweep(&mut self, now: Instant) -> Vec<Suppressed> {
        let window = self.window;
        let closed = |w: &Window| now.saturating_duration_since(w.opened) >= window;
        let mut out = Vec::new();
        self.sources.retain(|&source, w| {
            if !closed(w) {
                return true;
            }
            if w.suppressed > 0 {
                out.push(Suppressed {
                    source: Some(source),
                    lines: w.suppressed,
                });
            }
            false
        });
        if let Some(w) = self.overflow.filter(|w| closed(w)) {
            if w.suppressed > 0 {
                out.push(Suppressed {
                    source: None,
                    lines: w.suppressed,
                });
            }
            self.overflow = None;
        }
        out
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn logged(gate: Gate) -> bool {
        matches!(gate, Gate::Log { .. })
    }

    #[test]
    fn a_source_gets_its_burst_then_is_counted_and_reported_once() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(3, Duration::from_secs(10));
        let verdicts: Vec<bool> = (0..10).map(|_| logged(l.admit(A, t0))).collect();
        assert_eq!(verdicts.iter().filter(|&&v| v).count(), 3);
        assert!(verdicts[..3].iter().all(|&v| v));
        // Another source has its own budget.
        assert!(logged(l.admit(B, t0)));
        assert_eq!(l.suppressed_total, 7);
        // Nothing to report while the window is open.
        assert!(l.sweep(t0 + Duration::from_secs(9)).is_empty());
        // The window closes: one summary for A, none for B, and both are forgotten.
        let report = l.sweep(t0 + Duration::from_secs(10));
        assert_eq!(
            report,
            vec![Suppressed {
                source: Some(A),
                lines: 7
            }]
        );
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn the_next_window_reports_what_the_last_one_suppressed() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(1, Duration::from_secs(10));
        assert!(logged(l.admit(A, t0)));
        assert_eq!(l.admit(A, t0), Gate::Suppress);
        assert_eq!(l.admit(A, t0), Gate::Suppress);
        assert_eq!(
            l.admit(A, t0 + Duration::from_secs(11)),
            Gate::Log {
                earlier: Some(Suppressed {
                    source: Some(A),
                    lines: 2
                })
            }
        );
        assert!(l.sweep(t0 + Duration::from_secs(12)).is_empty());
    }

    #[test]
    fn ipv6_sources_share_a_budget_per_64() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(2, Duration::from_secs(10));
        let hosts: Vec<IpAddr> = (1..=5u16)
            .map(|i| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, i)))
            .collect();
        let n = hosts.iter().filter(|&&h| logged(l.admit(h, t0))).count();
        assert_eq!(n, 2);
    }

    #[test]
    fn memory_is_bounded_by_an_overflow_entry() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(1, Duration::from_secs(10));
        let mut logged_lines = 0;
        for i in 0..(MAX_SOURCES as u32 + 1_000) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            if logged(l.admit(ip, t0)) {
                logged_lines += 1;
            }
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        // Tracked sources log once each; the 1,000 beyond share one line.
        assert_eq!(logged_lines, MAX_SOURCES + 1);
        let report = l.sweep(t0 + Duration::from_secs(10));
        assert_eq!(
            report,
            vec![Suppressed {
                source: None,
                lines: 999
            }]
        );
    }
}
