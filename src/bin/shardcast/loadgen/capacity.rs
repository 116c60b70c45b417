//! Capacity search: the largest viewer count that holds a service-level objective, found by
//! doubling from a small load until a probe fails (or the cap is reached) and then bisecting
//! between the last pass and the first failure. The probe is a closure, so the search is
//! tested with a fake server.

use serde::Serialize;

/// Bounds of a search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchBounds {
    /// First load tried.
    pub(crate) start_viewers: u32,
    /// Never probe above this.
    pub(crate) max_viewers: u32,
    /// Stop when the gap between pass and fail is at most this fraction of the pass (≥ 1 viewer).
    pub(crate) resolution: f64,
    /// Never run more probes than this.
    pub(crate) max_probes: u32,
}

/// What one probe found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ProbeVerdict {
    /// Viewers in the probe.
    pub(crate) viewers: u32,
    /// Whether the SLO held.
    pub(crate) passed: bool,
    /// Why it failed (or what held), in words.
    pub(crate) reason: String,
}

/// Result of a search.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct CapacityOutcome {
    /// Largest viewer count that passed (0 if none did).
    pub(crate) capacity_viewers: u32,
    /// What stopped the search: the failing probe's reason, the cap, or the probe budget.
    pub(crate) limit: String,
    /// Every probe in order.
    pub(crate) probes: Vec<ProbeVerdict>,
}

/// Runs the search; `probe(n)` runs `n` viewers and says whether the SLO held.
pub(crate) fn search<E>(
    bounds: SearchBounds,
    mut probe: impl FnMut(u32) -> Result<ProbeVerdict, E>,
) -> Result<CapacityOutcome, E> {
    let max = bounds.max_viewers.max(1);
    let mut probes = Vec::new();
    let mut pass = 0u32;
    let mut fail: Option<(u32, String)> = None;
    let mut next = bounds.start_viewers.clamp(1, max);
    // Phase 1: double until a failure or the cap.
    while (probes.len() as u32) < bounds.max_probes {
        let v = probe(next)?;
        let passed = v.passed;
        let reason = v.reason.clone();
        probes.push(v);
        if passed {
            pass = next;
            if next == max {
                break;
            }
            next = next.saturating_mul(2).min(max);
        } else {
            fail = Some((next, reason));
            break;
        }
    }
    // Phase 2: bisect between the last pass and the first failure.
    while let Some((hi, _)) = &fail {
        let hi = *hi;
        let gap_ok = f64::from(hi - pass) <= (f64::from(pass) * bounds.resolution).max(1.0);
        if gap_ok || probes.len() as u32 >= bounds.max_probes {
            break;
        }
        let mid = pass + (hi - pass) / 2;
        let v = probe(mid)?;
        if v.passed {
            pass = mid;
        } else {
            fail = Some((mid, v.reason.clone()));
        }
        probes.push(v);
    }
    let limit = match fail {
        Some((hi, reason)) => format!("{hi} viewers failed: {reason}"),
        None if pass == max => format!("--max-viewers {max} reached with the SLO still held"),
        None => "probe budget spent".to_owned(),
    };
    Ok(CapacityOutcome {
        capacity_viewers: pass,
        limit,
        probes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_server(capacity: u32) -> impl FnMut(u32) -> Result<ProbeVerdict, ()> {
        move |n| {
            Ok(ProbeVerdict {
                viewers: n,
                passed: n <= capacity,
                reason: if n <= capacity { "ok" } else { "loss" }.into(),
            })
        }
    }

    fn bounds(max: u32) -> SearchBounds {
        SearchBounds {
            start_viewers: 10,
            max_viewers: max,
            resolution: 0.05,
            max_probes: 20,
        }
    }

    #[test]
    fn bisection_converges_within_resolution_of_the_true_capacity() {
        let out = search(bounds(20_000), fake_server(1234)).unwrap();
        assert!(out.capacity_viewers <= 1234);
        assert!(f64::from(out.capacity_viewers) >= 1234.0 * 0.95, "{out:?}");
        assert!(out.limit.contains("failed: loss"));
        let sizes: Vec<u32> = out.probes.iter().map(|p| p.viewers).collect();
        assert_eq!(&sizes[..9], &[10, 20, 40, 80, 160, 320, 640, 1280, 960]);
    }

    #[test]
    fn search_stops_at_the_cap_when_everything_passes() {
        let out = search(bounds(300), fake_server(u32::MAX)).unwrap();
        assert_eq!(out.capacity_viewers, 300);
        assert_eq!(out.probes.last().unwrap().viewers, 300);
        assert!(out.limit.contains("reached"));
    }

    #[test]
    fn search_reports_zero_when_the_first_probe_fails_and_respects_the_budget() {
        let out = search(bounds(1000), fake_server(0)).unwrap();
        assert_eq!(out.capacity_viewers, 0);
        assert!(out.probes.len() <= 20);
        let mut b = bounds(100_000);
        b.max_probes = 3;
        let out = search(b, fake_server(50_000)).unwrap();
        assert_eq!(out.probes.len(), 3);
        assert_eq!(out.capacity_viewers, 40);
        assert_eq!(out.limit, "probe budget spent");
    }

    #[test]
    fn probe_errors_abort_the_search() {
        let r = search(bounds(100), |_| Err::<ProbeVerdict, _>("server died"));
        assert_eq!(r, Err("server died"));
    }
}
