//! Churn soak (`shardcast bench --churn 50/s`): keeps `--viewers` sessions playing while
//! ending the oldest at a fixed rate — most with a TEARDOWN, one in N by closing the sockets
//! without a word so the server must expire them — and starting new ones (full OPTIONS,
//! DESCRIBE, SETUP, PLAY) to refill. It samples the server's open descriptors, RSS and
//! threads from `/proc/<pid>` every few seconds, drains (TEARDOWN everything, wait out the
//! session timeout) and judges whether the resources returned to their baseline.
//!
//! The schedule ([`ChurnSchedule`]) is pure arithmetic over elapsed time, tested with a fake
//! clock; the driver ([`run_churn`]) does the I/O. It does not measure jitter (the fixed-load
//! mode does); loss is counted from sequence gaps of every session that played.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::receiver::{spawn_receiver, LiveCounters, ReceiverMsg, KEEPALIVE_EVERY};
use super::report::{axes, esc, fmt_num, nice_max, y_of, COLORS, H, PAD, W};
use super::server::{sample_process, ServerProcess};
use super::session::{open_session, RtpTransport};
use super::{LoadError, Placement, Target, HANDSHAKES_IN_FLIGHT, MAX_DURATION, MAX_VIEWERS};

/// Largest churn rate accepted, sessions ended (and started) per second.
pub(crate) const MAX_CHURN_PER_SEC: f64 = 1000.0;
/// Longest wait for one handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the initial fill to reach `viewers`.
const FILL_BUDGET: Duration = Duration::from_secs(60);
/// How often the driver acts on the schedule.
const TICK: Duration = Duration::from_millis(100);
/// Added to the session timeout before the after-drain sample.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// What one tick of the schedule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChurnStep {
    /// Sessions to end now, oldest first.
    pub(crate) end: u32,
    /// Handshakes to start now.
    pub(crate) start: u32,
}

/// The churn schedule: ends `rate_per_sec` sessions per second of churn time (the oldest
/// first) and starts as many handshakes as it takes to keep `viewers` playing or starting.
///
/// Ends are owed by elapsed time, not by tick count, so a late tick ends more and the total
/// after `t` seconds is `floor(rate · t)`. Ends owed while fewer sessions were playing
/// than owed are forgiven rather than carried forward (no burst after a failure streak).
#[derive(Debug, Clone)]
pub(crate) struct ChurnSchedule {
    viewers: u32,
    rate_per_sec: f64,
    abandon_one_in: u32,
    ends_owed_total: u64,
    ends_issued: u64,
}

impl ChurnSchedule {
    /// A schedule for `viewers` concurrent sessions at `rate_per_sec`; every
    /// `abandon_one_in`-th end (0 = never) closes without TEARDOWN.
    pub(crate) fn new(viewers: u32, rate_per_sec: f64, abandon_one_in: u32) -> Self {
        Self {
            viewers,
            rate_per_sec,
            abandon_one_in,
            ends_owed_total: 0,
            ends_issued: 0,
        }
    }

    /// The step at `since_churn_start` with `playing` sessions handed to the receiver and
    /// `starting` handshakes in flight.
    pub(crate) fn step(
        &mut self,
        since_churn_start: Duration,
        playing: u32,
        starting: u32,
    ) -> ChurnStep {
        let owed_total = (self.rate_per_sec * since_churn_start.as_secs_f64()).floor() as u64;
        let owed_now = owed_total.saturating_sub(self.ends_owed_total);
        self.ends_owed_total = owed_total.max(self.ends_owed_total);
        let end = owed_now.min(u64::from(playing)) as u32;
        let remaining = playing - end + starting;
        ChurnStep {
            end,
            start: self.viewers.saturating_sub(remaining),
        }
    }

    /// Whether the next end abandons its session (no TEARDOWN); call once per end.
    pub(crate) fn next_end_abandons(&mut self) -> bool {
        self.ends_issued += 1;
        self.abandon_one_in > 0
            && self
                .ends_issued
                .is_multiple_of(u64::from(self.abandon_one_in))
    }
}

/// Options of a churn run.
#[derive(Debug, Clone)]
pub(crate) struct ChurnOptions {
    /// Server to load (a `--url` target needs its pid).
    pub(crate) target: Target,
    /// Stream name (spawned server) — `None` takes the first announced.
    pub(crate) stream: Option<String>,
    /// Concurrent sessions to keep.
    pub(crate) viewers: u32,
    /// Sessions ended and started per second.
    pub(crate) rate_per_sec: f64,
    /// Churn time (after the initial fill).
    pub(crate) duration: Duration,
    /// UDP or TCP-interleaved.
    pub(crate) transport: RtpTransport,
    /// How viewers receive.
    pub(crate) receive: super::ReceiveTuning,
    /// Every N-th end closes without TEARDOWN (0 = never).
    pub(crate) abandon_one_in: u32,
    /// The server's session timeout (given to a started server).
    pub(crate) session_timeout: Duration,
    /// Time between `/proc` samples.
    pub(crate) sample_every: Duration,
    /// Descriptors above baseline still counted as returned.
    pub(crate) fd_tolerance: u64,
    /// Threads above baseline still counted as returned.
    pub(crate) thread_tolerance: u64,
    /// RSS above baseline (KiB) still counted as settled.
    pub(crate) rss_tolerance_kib: u64,
}

/// Validates churn options before anything runs.
pub(crate) fn validate_churn(opts: &ChurnOptions) -> Result<(), LoadError> {
    if opts.viewers == 0 || opts.viewers > MAX_VIEWERS {
        return Err(LoadError::Refused(format!(
            "viewers must be 1..={MAX_VIEWERS}, got {}",
            opts.viewers
        )));
    }
    if !(opts.rate_per_sec > 0.0 && opts.rate_per_sec <= MAX_CHURN_PER_SEC) {
        return Err(LoadError::Refused(format!(
            "churn rate must be within (0, {MAX_CHURN_PER_SEC}]/s"
        )));
    }
    if opts.duration.is_zero() || opts.duration > MAX_DURATION {
        return Err(LoadError::Refused(format!(
            "duration must be within (0, {} s]",
            MAX_DURATION.as_secs()
        )));
    }
    if opts.session_timeout > Duration::from_secs(300) {
        return Err(LoadError::Refused(
            "churn waits out the session timeout; keep it ≤ 300 s".into(),
        ));
    }
    match &opts.target {
        Target::Url { url, pid } => {
            super::check_loopback(url, false)?;
            if pid.is_none() {
                return Err(LoadError::Refused(
                    "churn samples the server's /proc: give --server-pid with --url".into(),
                ));
            }
        }
        Target::Spawn(_) => {}
    }
    Ok(())
}

/// The phase a sample was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    /// Server started, no viewer yet.
    Baseline,
    /// Starting the first `viewers` sessions.
    Fill,
    /// Ending and starting at the churn rate.
    Churn,
    /// Everything torn down; waiting out the session timeout.
    Drain,
    /// The final sample.
    After,
}

/// One `/proc` sample of the server plus the harness's own counts.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ChurnSample {
    /// Seconds since the baseline sample.
    pub(crate) t_secs: f64,
    /// When it was taken.
    pub(crate) phase: Phase,
    /// Entries of `/proc/<pid>/fd`.
    pub(crate) fds: u64,
    /// VmRSS, KiB.
    pub(crate) rss_kib: u64,
    /// Threads.
    pub(crate) threads: u64,
    /// Server CPU (user + system) so far, ns.
    pub(crate) cpu_ns: u64,
    /// Sessions playing (handed to the receiver, not yet ended).
    pub(crate) playing: u64,
    /// Handshakes completed so far.
    pub(crate) started: u64,
    /// Sessions ended with TEARDOWN so far.
    pub(crate) ended_teardown: u64,
    /// Sessions ended without TEARDOWN so far.
    pub(crate) ended_abandoned: u64,
    /// Handshakes failed so far.
    pub(crate) failed_handshakes: u64,
    /// RTP packets received so far.
    pub(crate) packets: u64,
}

/// Baseline, peak and after-drain of one resource, and whether it returned.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResourceVerdict {
    /// `fds`, `threads` or `rss_kib`.
    pub(crate) metric: &'static str,
    /// Before any viewer.
    pub(crate) baseline: u64,
    /// Highest sample.
    pub(crate) peak: u64,
    /// After the drain.
    pub(crate) after: u64,
    /// Allowed excess over baseline.
    pub(crate) tolerance: u64,
    /// Whether it came back (see `rule`).
    pub(crate) returned: bool,
    /// The rule applied, in words.
    pub(crate) rule: String,
}

/// Totals of a churn run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChurnTotals {
    /// Handshakes that reached PLAY.
    pub(crate) started: u64,
    /// Handshakes that failed or timed out.
    pub(crate) failed_handshakes: u64,
    /// First handshake error.
    pub(crate) first_error: Option<String>,
    /// Ended during churn with TEARDOWN.
    pub(crate) ended_teardown: u64,
    /// Churn TEARDOWNs answered 200 before the grace period ran out.
    pub(crate) churn_teardowns_answered: u64,
    /// Ended during churn without TEARDOWN (left to the session timeout).
    pub(crate) ended_abandoned: u64,
    /// Torn down at the end of the run.
    pub(crate) torn_down_at_stop: u64,
    /// Of those, TEARDOWNs answered 200.
    pub(crate) stop_teardowns_answered: u64,
    /// started − ended − torn down at stop (0 unless the harness lost track of one).
    pub(crate) unaccounted: i64,
    /// RTP packets received.
    pub(crate) packets: u64,
    /// Packets missing by sequence number.
    pub(crate) lost: u64,
    /// Loss as a percentage of expected packets.
    pub(crate) loss_pct: f64,
    /// RTSP errors after PLAY (keepalive/loop/TEARDOWN answers ≠ 200, write failures).
    pub(crate) rtsp_errors: u64,
}

/// The churn report (`bench.json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChurnReport {
    /// Unix time the run started.
    pub(crate) started_unix_secs: u64,
    /// The command line.
    pub(crate) command: String,
    /// Kernel release, cores.
    pub(crate) machine: String,
    /// Core placement.
    pub(crate) placement: Placement,
    /// Concurrent sessions kept.
    pub(crate) viewers: u32,
    /// Ends (and starts) per second.
    pub(crate) rate_per_sec: f64,
    /// Churn seconds requested.
    pub(crate) duration_secs: f64,
    /// Churn seconds run.
    pub(crate) churn_secs: f64,
    /// Every N-th end was abandoned.
    pub(crate) abandon_one_in: u32,
    /// Server session timeout, s.
    pub(crate) session_timeout_secs: u64,
    /// Transport.
    pub(crate) transport: RtpTransport,
    /// Every sample in order.
    pub(crate) samples: Vec<ChurnSample>,
    /// fds, threads, RSS.
    pub(crate) verdicts: Vec<ResourceVerdict>,
    /// Server CPU over the last drain interval, percent of one core (≈ 0 if no session is
    /// left sending).
    pub(crate) idle_cpu_pct_after: f64,
    /// RSS growth over the second half of the churn phase, KiB per 1000 sessions started
    /// then (a leak per session shows here even if the drain looks flat).
    pub(crate) rss_growth_kib_per_1k_sessions: Option<f64>,
    /// Session and packet totals.
    pub(crate) totals: ChurnTotals,
    /// Every resource returned and no session went unaccounted.
    pub(crate) passed: bool,
    /// In plain words.
    pub(crate) conclusion: String,
}

/// Counts `/proc/<pid>/fd` entries and reads RSS, threads and CPU.
fn sample_server(pid: u32) -> Result<(u64, super::server::ProcSample), LoadError> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| LoadError::io(format!("listing /proc/{pid}/fd"), e))?
        .count() as u64;
    Ok((fds, sample_process(pid)?))
}

struct Sampler {
    pid: u32,
    t0: Instant,
    samples: Vec<ChurnSample>,
}

struct HarnessCounts {
    playing: u64,
    started: u64,
    failed: u64,
}

impl Sampler {
    fn take(
        &mut self,
        phase: Phase,
        own: &HarnessCounts,
        live: &LiveCounters,
    ) -> Result<ChurnSample, LoadError> {
        let (fds, p) = sample_server(self.pid)?;
        let s = ChurnSample {
            t_secs: self.t0.elapsed().as_secs_f64(),
            phase,
            fds,
            rss_kib: p.rss_kib,
            threads: p.threads,
            cpu_ns: p.cpu_ns,
            playing: own.playing,
            started: own.started,
            ended_teardown: live.ended_teardown.load(Ordering::Relaxed),
            ended_abandoned: live.ended_abandoned.load(Ordering::Relaxed),
            failed_handshakes: own.failed,
            packets: live.packets.load(Ordering::Relaxed),
        };
        self.samples.push(s);
        Ok(s)
    }
}

/// Judges one resource: returned if `after ≤ baseline + tolerance`, or (for RSS, `flat`)
/// if the last three samples span no more than the tolerance / 10.
fn judge_resource(
    metric: &'static str,
    samples: &[ChurnSample],
    get: impl Fn(&ChurnSample) -> u64,
    tolerance: u64,
    flat_allowed: bool,
) -> ResourceVerdict {
    let baseline = samples.first().map_or(0, &get);
    let after = samples.last().map_or(0, &get);
    let peak = samples.iter().map(&get).max().unwrap_or(0);
    let near = after <= baseline + tolerance;
    let tail: Vec<u64> = samples.iter().rev().take(3).map(&get).collect();
    let flat_band = tolerance / 10;
    let flat = tail.len() == 3
        && tail.iter().max().unwrap_or(&0) - tail.iter().min().unwrap_or(&0) <= flat_band;
    let (returned, rule) = if flat_allowed {
        (
            near || flat,
            format!(
                "after ≤ baseline + {tolerance} ({}), or the last 3 samples within {flat_band} ({})",
                if near { "yes" } else { "no" },
                if flat { "yes" } else { "no" }
            ),
        )
    } else {
        (near, format!("after ≤ baseline + {tolerance}"))
    };
    ResourceVerdict {
        metric,
        baseline,
        peak,
        after,
        tolerance,
        returned,
        rule,
    }
}

/// Runs the churn soak and returns its report (without command, machine and placement,
/// which the caller fills in).
pub(crate) fn run_churn(
    opts: &ChurnOptions,
    mut on_sample: impl FnMut(&ChurnSample),
) -> Result<ChurnReport, LoadError> {
    let _ = super::host::raise_nofile_limit();
    let (server, url, pid) = match &opts.target {
        Target::Spawn(launch) => {
            let mut launch = launch.clone();
            if !launch
                .extra_args
                .iter()
                .any(|a| a.starts_with("--session-timeout"))
            {
                launch.extra_args.extend([
                    "--session-timeout".to_owned(),
                    opts.session_timeout.as_secs().to_string(),
                ]);
            }
            let server = ServerProcess::spawn(&launch)?;
            let url = super::stream_urls(opts.stream.as_deref(), server.addr, &server.streams)?
                .swap_remove(0);
            let pid = server.pid();
            (Some(server), url, pid)
        }
        Target::Url { url, pid } => (
            None,
            url.clone(),
            pid.ok_or_else(|| LoadError::Refused("churn needs the server's pid".into()))?,
        ),
    };
    // Let the server settle (lazy allocations of its first second) before the baseline.
    std::thread::sleep(Duration::from_secs(1));
    let counters = Arc::new(LiveCounters::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let hard_deadline = Instant::now() + FILL_BUDGET + opts.duration + Duration::from_secs(60);
    // Keep every session alive well inside the server's timeout (the harness sends no RTCP
    // receiver reports): with a 20 s keepalive and a 10 s timeout the server would expire
    // sessions older than 10 s and close their idle RTSP connections, and churn would
    // measure expiry rather than TEARDOWN.
    let keepalive_every = (opts.session_timeout / 3).clamp(Duration::from_secs(1), KEEPALIVE_EVERY);
    let recv = spawn_receiver(
        rx,
        counters.clone(),
        hard_deadline,
        keepalive_every,
        opts.receive.busy_poll,
        None,
    )
    .map_err(|e| LoadError::io("starting the receiver thread", e))?;
    let mut sampler = Sampler {
        pid,
        t0: Instant::now(),
        samples: Vec::new(),
    };
    let mut own = HarnessCounts {
        playing: 0,
        started: 0,
        failed: 0,
    };
    on_sample(&sampler.take(Phase::Baseline, &own, &counters)?);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::io("starting the tokio runtime", e))?;
    let mut schedule = ChurnSchedule::new(opts.viewers, opts.rate_per_sec, opts.abandon_one_in);
    let mut first_error: Option<String> = None;
    let transport = opts.transport;
    let receive_gro = opts.receive.gro;
    let account = |r: Result<Result<usize, String>, tokio::task::JoinError>,
                   own: &mut HarnessCounts,
                   playing: &mut VecDeque<usize>,
                   first_error: &mut Option<String>| match r {
        Ok(Ok(index)) => {
            own.started += 1;
            playing.push_back(index);
        }
        Ok(Err(e)) => {
            own.failed += 1;
            first_error.get_or_insert(e);
        }
        Err(e) => {
            own.failed += 1;
            first_error.get_or_insert(e.to_string());
        }
    };
    let churn_secs = rt.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT));
        let mut set: tokio::task::JoinSet<Result<usize, String>> = tokio::task::JoinSet::new();
        let mut playing: VecDeque<usize> = VecDeque::new();
        let mut starting = 0u32;
        let mut next_index = 0usize;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let fill_until = Instant::now() + FILL_BUDGET;
        let mut churn_start: Option<Instant> = None;
        let mut next_sample = Instant::now() + opts.sample_every;
        let churn_secs = loop {
            tick.tick().await;
            while let Some(r) = set.try_join_next() {
                starting -= 1;
                account(r, &mut own, &mut playing, &mut first_error);
            }
            let now = Instant::now();
            if churn_start.is_none()
                && (playing.len() >= opts.viewers as usize || now >= fill_until)
            {
                churn_start = Some(now);
            }
            let step = match churn_start {
                Some(t) if now.duration_since(t) >= opts.duration => {
                    break now.duration_since(t).as_secs_f64()
                }
                Some(t) => schedule.step(now.duration_since(t), playing.len() as u32, starting),
                None => ChurnStep {
                    end: 0,
                    start: opts.viewers.saturating_sub(playing.len() as u32 + starting),
                },
            };
            for _ in 0..step.end {
                let Some(index) = playing.pop_front() else {
                    break;
                };
                let abandon = schedule.next_end_abandons();
                let _ = tx.send(ReceiverMsg::End { index, abandon });
            }
            for _ in 0..step.start {
                let (index, url, tx, permits) =
                    (next_index, url.clone(), tx.clone(), permits.clone());
                next_index += 1;
                starting += 1;
                set.spawn(async move {
                    let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                    match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        open_session(index, &url, transport, receive_gro, false),
                    )
                    .await
                    {
                        Ok(Ok(s)) => {
                            let _ = tx.send(ReceiverMsg::Add(Box::new(s)));
                            Ok(index)
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("handshake timed out".to_owned()),
                    }
                });
            }
            own.playing = playing.len() as u64;
            if now >= next_sample {
                next_sample += opts.sample_every;
                let phase = if churn_start.is_some() {
                    Phase::Churn
                } else {
                    Phase::Fill
                };
                match sampler.take(phase, &own, &counters) {
                    Ok(s) => on_sample(&s),
                    Err(e) => {
                        first_error.get_or_insert(format!("sampling the server: {e}"));
                        break churn_start.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
                    }
                }
            }
        };
        // Handshakes still in flight finish (and are torn down with the rest) or time out,
        // so that no half-made session escapes the count.
        while let Some(r) = set.join_next().await {
            account(r, &mut own, &mut playing, &mut first_error);
        }
        churn_secs
    });
    drop(rt);
    let _ = tx.send(ReceiverMsg::Stop);
    drop(tx);
    let out = recv
        .join()
        .map_err(|_| LoadError::Protocol("the receiver thread panicked".into()))?;
    own.playing = 0;

    let drain_until = Instant::now() + opts.session_timeout + DRAIN_MARGIN;
    loop {
        let left = drain_until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(opts.sample_every));
        let phase = if Instant::now() >= drain_until {
            Phase::After
        } else {
            Phase::Drain
        };
        on_sample(&sampler.take(phase, &own, &counters)?);
    }
    if sampler.samples.last().map(|s| s.phase) != Some(Phase::After) {
        on_sample(&sampler.take(Phase::After, &own, &counters)?);
    }
    drop(server);

    let samples = sampler.samples;
    let verdicts = vec![
        judge_resource("fds", &samples, |s| s.fds, opts.fd_tolerance, false),
        judge_resource(
            "threads",
            &samples,
            |s| s.threads,
            opts.thread_tolerance,
            false,
        ),
        judge_resource(
            "rss_kib",
            &samples,
            |s| s.rss_kib,
            opts.rss_tolerance_kib,
            true,
        ),
    ];
    let idle_cpu_pct_after = match samples.len() {
        n if n >= 2 => {
            let (a, b) = (&samples[n - 2], &samples[n - 1]);
            let wall = (b.t_secs - a.t_secs).max(1e-3);
            b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / 1e9 / wall * 100.0
        }
        _ => 0.0,
    };
    let rss_growth_kib_per_1k_sessions = rss_growth_per_1k(&samples);
    let (mut packets, mut lost, mut expected) = (0, 0, 0);
    for s in &out.sessions {
        for t in &s.tracks {
            packets += t.seq.received();
            lost += t.seq.lost();
            expected += t.seq.expected();
        }
    }
    let ended_teardown = counters.ended_teardown.load(Ordering::Relaxed);
    let ended_abandoned = counters.ended_abandoned.load(Ordering::Relaxed);
    // Sessions still open at Stop: every session the receiver held minus those it retired.
    let torn_down_at_stop =
        (out.sessions.len() as u64).saturating_sub(ended_teardown + ended_abandoned);
    let totals = ChurnTotals {
        started: own.started,
        failed_handshakes: own.failed,
        first_error,
        ended_teardown,
        churn_teardowns_answered: counters.churn_teardowns_answered.load(Ordering::Relaxed),
        ended_abandoned,
        torn_down_at_stop,
        stop_teardowns_answered: out.teardowns_answered,
        unaccounted: out.sessions.len() as i64 - own.started as i64,
        packets,
        lost,
        loss_pct: if expected > 0 {
            lost as f64 * 100.0 / expected as f64
        } else {
            0.0
        },
        rtsp_errors: out.rtsp_errors,
    };
    let passed =
        verdicts.iter().all(|v| v.returned) && totals.unaccounted == 0 && totals.started > 0;
    let conclusion = churn_conclusion(&verdicts, &totals, opts, idle_cpu_pct_after);
    Ok(ChurnReport {
        started_unix_secs: 0,
        command: String::new(),
        machine: String::new(),
        placement: Placement {
            server_core: None,
            server_cores: Vec::new(),
            harness_core: None,
            how: String::new(),
        },
        viewers: opts.viewers,
        rate_per_sec: opts.rate_per_sec,
        duration_secs: opts.duration.as_secs_f64(),
        churn_secs,
        abandon_one_in: opts.abandon_one_in,
        session_timeout_secs: opts.session_timeout.as_secs(),
        transport: opts.transport,
        samples,
        verdicts,
        idle_cpu_pct_after,
        rss_growth_kib_per_1k_sessions,
        totals,
        passed,
        conclusion,
    })
}

/// RSS growth from the middle to the end of the churn phase per 1000 sessions started in
/// that span (the first half is left out: allocator arenas and caches warm up there).
fn rss_growth_per_1k(samples: &[ChurnSample]) -> Option<f64> {
    let churn: Vec<&ChurnSample> = samples.iter().filter(|s| s.phase == Phase::Churn).collect();
    let (mid, end) = (churn.get(churn.len() / 2)?, churn.last()?);
    let sessions = end.started.checked_sub(mid.started).filter(|&n| n > 0)?;
    Some((end.rss_kib as f64 - mid.rss_kib as f64) * 1000.0 / sessions as f64)
}

fn churn_conclusion(
    verdicts: &[ResourceVerdict],
    t: &ChurnTotals,
    opts: &ChurnOptions,
    idle_cpu_pct: f64,
) -> String {
    let leaked: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.returned)
        .map(|v| {
            format!(
                "{} {} → {} (baseline {})",
                v.metric, v.peak, v.after, v.baseline
            )
        })
        .collect();
    let sessions = format!(
        "{} sessions started, {} ended by TEARDOWN, {} abandoned, {} torn down at the end, {} handshakes failed, loss {:.3}%",
        t.started, t.ended_teardown, t.ended_abandoned, t.torn_down_at_stop, t.failed_handshakes, t.loss_pct
    );
    if leaked.is_empty() && t.unaccounted == 0 {
        format!(
            "no leak: descriptors, threads and RSS returned to baseline after {} viewers churned at {}/s ({sessions}; server CPU {idle_cpu_pct:.1}% after the drain)",
            opts.viewers, opts.rate_per_sec
        )
    } else {
        format!(
            "LEAK or unaccounted sessions: {} ({sessions}; {} unaccounted; server CPU {idle_cpu_pct:.1}% after the drain)",
            if leaked.is_empty() { "none of fds/threads/RSS".to_owned() } else { leaked.join(", ") },
            t.unaccounted
        )
    }
}

/// The Markdown summary printed to stdout.
pub(crate) fn markdown(r: &ChurnReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "churn: {} viewers, {}/s for {:.0} s (1 in {} abandoned, session timeout {} s, {:?})\n",
        r.viewers,
        r.rate_per_sec,
        r.churn_secs,
        r.abandon_one_in,
        r.session_timeout_secs,
        r.transport
    );
    let _ = writeln!(
        s,
        "| metric | baseline | peak | after drain | returned | rule |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for v in &r.verdicts {
        let (b, p, a) = if v.metric == "rss_kib" {
            (
                format!("{:.1} MiB", v.baseline as f64 / 1024.0),
                format!("{:.1} MiB", v.peak as f64 / 1024.0),
                format!("{:.1} MiB", v.after as f64 / 1024.0),
            )
        } else {
            (
                v.baseline.to_string(),
                v.peak.to_string(),
                v.after.to_string(),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {b} | {p} | {a} | {} | {} |",
            if v.metric == "rss_kib" {
                "rss"
            } else {
                v.metric
            },
            if v.returned { "yes" } else { "NO" },
            v.rule
        );
    }
    let t = &r.totals;
    let _ = writeln!(
        s,
        "\n| sessions started | ended (TEARDOWN / answered) | ended (abandoned) | torn down at end (answered) | handshake failures | unaccounted | packets | lost | loss % | RTSP errors |\n|---|---|---|---|---|---|---|---|---|---|\n| {} | {} / {} | {} | {} ({}) | {} | {} | {} | {} | {:.4} | {} |",
        t.started,
        t.ended_teardown,
        t.churn_teardowns_answered,
        t.ended_abandoned,
        t.torn_down_at_stop,
        t.stop_teardowns_answered,
        t.failed_handshakes,
        t.unaccounted,
        t.packets,
        t.lost,
        t.loss_pct,
        t.rtsp_errors
    );
    if let Some(e) = &t.first_error {
        let _ = writeln!(s, "\nfirst handshake error: {e}");
    }
    let _ = writeln!(
        s,
        "\nserver CPU over the last drain interval: {:.1}% of a core",
        r.idle_cpu_pct_after
    );
    if let Some(g) = r.rss_growth_kib_per_1k_sessions {
        let _ = writeln!(
            s,
            "server RSS growth over the second half of the churn: {g:+.1} KiB per 1000 sessions"
        );
    }
    let _ = writeln!(
        s,
        "\n{}: {}",
        if r.passed { "PASS" } else { "FAIL" },
        r.conclusion
    );
    s
}

/// A line plot of one per-sample value against time, with the phases shaded.
fn series_plot(
    title: &str,
    y_label: &str,
    samples: &[ChurnSample],
    get: impl Fn(&ChurnSample) -> f64,
) -> String {
    let x_max = nice_max(samples.iter().map(|s| s.t_secs).fold(0.0, f64::max));
    let y_max = nice_max(samples.iter().map(&get).fold(0.0, f64::max));
    let x_of = |t: f64| PAD + (W - PAD - 10.0) * t / x_max;
    let mut svg = String::new();
    axes(&mut svg, title, "seconds", y_label, y_max);
    for i in 0..=4 {
        let v = x_max * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x_of(v),
            H - PAD + 14.0,
            fmt_num(v)
        );
    }
    for (phase, color) in [(Phase::Drain, "#fff3d6"), (Phase::Fill, "#e8f0fb")] {
        let ts: Vec<f64> = samples
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.t_secs)
            .collect();
        if let (Some(a), Some(b)) = (ts.first(), ts.last()) {
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="30" width="{:.1}" height="{}" fill="{color}" opacity="0.7"><title>{phase:?}</title></rect>"#,
                x_of(*a),
                (x_of(*b) - x_of(*a)).max(2.0),
                H - PAD - 30.0
            );
        }
    }
    let pts: Vec<String> = samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x_of(s.t_secs), y_of(get(s), y_max)))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
        COLORS[0],
        pts.join(" ")
    );
    svg.push_str("</svg>\n");
    svg
}

/// The self-contained HTML page: the summary tables and time series of fds, RSS, sessions.
pub(crate) fn html(r: &ChurnReport) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>shardcast churn soak</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} pre{{font-size:12px;background:#f6f6f6;padding:1em}} .plots svg{{margin:0 1em 1em 0;border:1px solid #eee}}</style>
</head><body>
<h1>shardcast churn soak</h1>
<p>Command: <code>{}</code><br>Machine: {}<br>Placement: {}</p>
<pre>{}</pre>
<div class="plots">
{}{}{}{}
</div>
<p>Blue shading: initial fill; yellow: drain (after TEARDOWN of everything, waiting out the session timeout).</p>
</body></html>
"#,
        esc(&r.command),
        esc(&r.machine),
        esc(&r.placement.how),
        esc(&markdown(r)),
        series_plot("Server open descriptors", "fds", &r.samples, |s| s.fds
            as f64),
        series_plot("Server RSS", "MiB", &r.samples, |s| s.rss_kib as f64
            / 1024.0),
        series_plot("Server threads", "threads", &r.samples, |s| s.threads
            as f64),
        series_plot(
            "Sessions playing (harness)",
            "sessions",
            &r.samples,
            |s| s.playing as f64
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Drives the schedule with a fake clock and an ideal server (every handshake started at
    /// one tick is playing at the next), returning (ends, abandons, starts, min playing).
    fn simulate(viewers: u32, rate: f64, ticks: u32, tick: f64) -> (u64, u64, u64, u32) {
        let mut s = ChurnSchedule::new(viewers, rate, 5);
        let (mut playing, mut starting) = (viewers, 0u32);
        let (mut ends, mut abandons, mut starts, mut min_playing) = (0, 0, 0, u32::MAX);
        for i in 1..=ticks {
            playing += starting;
            starting = 0;
            min_playing = min_playing.min(playing);
            let step = s.step(secs(f64::from(i) * tick), playing, starting);
            for _ in 0..step.end {
                ends += 1;
                abandons += u64::from(s.next_end_abandons());
            }
            playing -= step.end;
            starting += step.start;
            starts += u64::from(step.start);
        }
        (ends, abandons, starts, min_playing)
    }

    #[test]
    fn churn_ends_rate_times_elapsed_and_refills_to_the_target() {
        // 10 s at 50/s in 100 ms ticks: 500 ends, every 5th abandoned, 500 starts, and the
        // count playing or starting never drops below the target.
        let (ends, abandons, starts, min_playing) = simulate(500, 50.0, 100, 0.1);
        assert_eq!((ends, abandons, starts), (500, 100, 500));
        assert_eq!(min_playing, 500);
    }

    #[test]
    fn churn_owes_ends_by_time_not_by_tick_count() {
        // A fractional rate over uneven ticks still ends floor(rate · t).
        let mut s = ChurnSchedule::new(100, 2.5, 0);
        let total: u32 = [0.3, 0.5, 1.9, 2.0, 3.99, 4.0]
            .iter()
            .map(|&t| s.step(secs(t), 100, 0).end)
            .sum();
        assert_eq!(total, 10, "floor(2.5 · 4.0)");
        // A late tick (the driver stalled 2 s) ends the whole backlog at once.
        assert_eq!(s.step(secs(6.0), 100, 0).end, 5);
        assert!(!s.next_end_abandons(), "abandon_one_in = 0 never abandons");
    }

    #[test]
    fn churn_counts_handshakes_in_flight_and_forgives_ends_it_could_not_make() {
        let mut s = ChurnSchedule::new(10, 10.0, 5);
        // 3 playing, 4 starting: end the 3 owed... of 10 owed, start 10 − (0 + 4) = 6.
        assert_eq!(s.step(secs(1.0), 3, 4), ChurnStep { end: 3, start: 6 });
        // The 7 unmade ends are not carried: one more second owes 10, not 17.
        assert_eq!(s.step(secs(2.0), 10, 0).end, 10);
        // Full and nothing owed: no action.
        assert_eq!(s.step(secs(2.05), 10, 0), ChurnStep { end: 0, start: 0 });
    }

    #[test]
    fn resources_return_within_tolerance_or_rss_flattens() {
        let mk = |fds, rss_kib, threads| ChurnSample {
            t_secs: 0.0,
            phase: Phase::Churn,
            fds,
            rss_kib,
            threads,
            cpu_ns: 0,
            playing: 0,
            started: 0,
            ended_teardown: 0,
            ended_abandoned: 0,
            failed_handshakes: 0,
            packets: 0,
        };
        let samples = [
            mk(10, 5000, 3),
            mk(600, 40_000, 3),
            mk(12, 30_000, 3),
            mk(11, 30_100, 3),
            mk(12, 30_200, 3),
        ];
        let fds = judge_resource("fds", &samples, |s| s.fds, 4, false);
        assert!(fds.returned && fds.peak == 600 && fds.after == 12);
        let tight = judge_resource("fds", &samples, |s| s.fds, 1, false);
        assert!(!tight.returned, "12 > 10 + 1 is a leak");
        // RSS 25 MiB above baseline, but flat (200 KiB spread ≤ 10240 / 10) over the tail.
        let rss = judge_resource("rss_kib", &samples, |s| s.rss_kib, 10_240, true);
        assert!(rss.returned, "{}", rss.rule);
        assert_eq!(rss_growth_per_1k(&samples), None, "no session count moved");
        let (mut mid, mut end) = (mk(0, 10_000, 3), mk(0, 11_000, 3));
        (mid.started, end.started) = (1000, 3000);
        assert_eq!(
            rss_growth_per_1k(&[mk(0, 9000, 3), mid, end]),
            Some(500.0),
            "1000 KiB over 2000 sessions"
        );
        let growing = [
            mk(0, 5000, 3),
            mk(0, 20_000, 3),
            mk(0, 30_000, 3),
            mk(0, 40_000, 3),
        ];
        assert!(!judge_resource("rss_kib", &growing, |s| s.rss_kib, 10_240, true).returned);
    }
}
