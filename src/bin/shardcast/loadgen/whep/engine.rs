//! The WHEP viewers' loop: every viewer's socket in one epoll set, on the harness thread.
//! Viewers are created (socket, `Rtc`, offer) before the clock starts; then each is POSTed at
//! its ramp time (blocking, one at a time: a few ms each on loopback, with the loop pumped
//! between POSTs), `503 Retry-After` answers are retried, and the loop feeds str0m datagrams
//! and timeouts until the start budget and the steady phase are over. At the end every
//! session is `DELETE`d.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use shardcast::net::RecvBatch;
use shardcast::poll::Epoll;

use super::signal;
use super::viewer::{State, Viewer, READ_BATCH};
use crate::loadgen::host;

/// POSTs between two pumps of the loop while starting.
const POSTS_PER_PUMP: usize = 4;
/// Longest epoll wait.
const MAX_WAIT: Duration = Duration::from_millis(2);
/// How often every viewer's str0m timers are checked.
const TICK_EVERY: Duration = Duration::from_millis(5);
/// POSTs per viewer before a `503` is final.
const MAX_POSTS: u32 = 20;

/// What the engine runs.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// The server's HTTP address.
    pub(crate) http: SocketAddr,
    /// `/whep/{stream}`.
    pub(crate) path: String,
    /// Viewers.
    pub(crate) viewers: u32,
    /// POSTs per second (none: as fast as they are answered).
    pub(crate) ramp_per_sec: Option<f64>,
    /// Steady phase.
    pub(crate) duration: Duration,
    /// Longest start phase: every viewer playing or given up by then.
    pub(crate) start_budget: Duration,
}

/// Phase boundaries at which the caller samples the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the first POST.
    Start,
    /// Every viewer plays (or gave up): the steady phase begins.
    SteadyStart,
    /// The steady phase ends (sessions still playing).
    SteadyEnd,
}

/// What a run left.
pub(crate) struct EngineOutcome {
    /// Every viewer, with its counters.
    pub(crate) viewers: Vec<Viewer>,
    /// First POST → steady phase.
    pub(crate) start_secs: f64,
    /// Steady phase length.
    pub(crate) steady_secs: f64,
    /// RTP bytes received during the steady phase.
    pub(crate) steady_bytes: u64,
    /// RTP packets received during the steady phase.
    pub(crate) steady_packets: u64,
    /// Datagrams read (STUN, DTLS, SRTP, SRTCP).
    pub(crate) datagrams: u64,
    /// Loop iterations.
    pub(crate) loops: u64,
    /// `DELETE`s answered 200, and those that were not.
    pub(crate) deleted: (u32, u32),
    /// This thread's CPU time from the first POST to the steady phase's end, ns.
    pub(crate) harness_cpu_ns: u64,
    /// Wall time of the same span, ns.
    pub(crate) harness_wall_ns: u64,
}

struct Engine {
    epoll: Epoll,
    viewers: Vec<Viewer>,
    batch: RecvBatch,
    ready: Vec<u64>,
    datagrams: u64,
    loops: u64,
    next_tick: Instant,
}

impl Engine {
    fn pump(&mut self, wait: Duration) -> io::Result<()> {
        self.loops += 1;
        self.ready.clear();
        self.epoll.wait(wait, &mut self.ready)?;
        for &t in &self.ready {
            if let Some(v) = self.viewers.get_mut(t as usize) {
                self.datagrams += v.read(&mut self.batch);
                // A failed viewer reads no more: out of the (level-triggered) set, or its
                // queued datagrams would wake every wait.
                if v.state == State::Failed {
                    let _ = self.epoll.delete(v.socket());
                }
            }
        }
        let now = Instant::now();
        if now >= self.next_tick {
            for v in &mut self.viewers {
                v.tick(now);
            }
            self.next_tick = now + TICK_EVERY;
        }
        Ok(())
    }

    fn post(&mut self, i: usize, http: SocketAddr, path: &str) {
        let Some(v) = self.viewers.get_mut(i) else {
            return;
        };
        let now = Instant::now();
        v.posts += 1;
        v.first_post.get_or_insert(now);
        v.retry_at = None;
        match signal::post_offer(http, path, &v.offer) {
            Ok(r) if r.status == 201 => v.accept(&r.body, r.location, Instant::now()),
            Ok(r) if r.status == 503 && v.posts < MAX_POSTS => {
                let after = Duration::from_secs(r.retry_after.unwrap_or(1).clamp(1, 5));
                v.retry_at = Some(Instant::now() + after);
            }
            Ok(r) => {
                let body: String = r.body.trim().chars().take(200).collect();
                v.fail(format!("POST answered {}: {body}", r.status));
            }
            Err(e) => v.fail(format!("POST: {e}")),
        }
    }
}

/// Runs the viewers; `on_phase` is called before the first POST and at the steady phase's
/// start and end.
pub(crate) fn run(
    cfg: &EngineConfig,
    mut on_phase: impl FnMut(Phase),
) -> io::Result<EngineOutcome> {
    let provider = super::crypto::provider();
    // One certificate for every viewer (the server checks each against its offer's
    // fingerprint, RFC 8842 §5; sharing one is allowed, RFC 8827 §6.5 makes it per origin).
    let cert = provider.dtls_provider.generate_certificate();
    let epoll = Epoll::new()?;
    let mut viewers = Vec::with_capacity(cfg.viewers as usize);
    let setup_now = Instant::now();
    for i in 0..cfg.viewers {
        let sock = host::bind_rtp_socket(IpAddr::V4(Ipv4Addr::LOCALHOST), false)?;
        epoll.add(&sock, u64::from(i))?;
        let v = Viewer::new(sock, provider.clone(), cert.as_ref(), setup_now)
            .map_err(|e| io::Error::other(format!("viewer {i}: {e}")))?;
        viewers.push(v);
    }
    let mut e = Engine {
        epoll,
        viewers,
        batch: RecvBatch::new(READ_BATCH),
        ready: Vec::with_capacity(shardcast::poll::EPOLL_MAX_EVENTS),
        datagrams: 0,
        loops: 0,
        next_tick: Instant::now(),
    };
    on_phase(Phase::Start);
    let cpu_start = thread_cpu_ns();
    let t0 = Instant::now();
    let start_deadline = t0 + cfg.start_budget;
    // Start phase: POST on the ramp, retry 503s, until every viewer plays or gave up.
    let mut next = 0usize;
    loop {
        let now = Instant::now();
        let mut posted = 0;
        while next < e.viewers.len() && posted < POSTS_PER_PUMP {
            if let Some(rate) = cfg.ramp_per_sec {
                if t0 + Duration::from_secs_f64(next as f64 / rate) > now {
                    break;
                }
            }
            e.post(next, cfg.http, &cfg.path);
            next += 1;
            posted += 1;
        }
        for i in 0..e.viewers.len() {
            if posted >= POSTS_PER_PUMP {
                break;
            }
            let due = e.viewers[i].state == State::Waiting
                && e.viewers[i].retry_at.is_some_and(|t| t <= now);
            if due {
                e.post(i, cfg.http, &cfg.path);
                posted += 1;
            }
        }
        let settled = next == e.viewers.len()
            && e.viewers.iter().all(|v| {
                v.state == State::Failed
                    || (v.state == State::Negotiated && v.first_packet.is_some())
            });
        if settled || now >= start_deadline {
            break;
        }
        e.pump(if posted > 0 { Duration::ZERO } else { MAX_WAIT })?;
    }
    // Whoever is not playing by now is reported with the reason.
    for v in &mut e.viewers {
        match (v.state, v.connected, v.first_packet) {
            (State::Waiting, ..) => v.fail(format!(
                "no 201 to {} POSTs (503 Retry-After each) within the start budget",
                v.posts
            )),
            (State::Negotiated, None, _) => v.fail(
                "answered, but ICE/DTLS did not connect within the start budget (no STUN answer from the server's port?)"
                    .into(),
            ),
            (State::Negotiated, Some(_), None) => {
                v.error.get_or_insert_with(|| "connected, but no RTP within the start budget".into());
            }
            _ => {}
        }
    }
    on_phase(Phase::SteadyStart);
    let steady_from = Instant::now();
    let bytes_from: u64 = e.viewers.iter().map(Viewer::bytes).sum();
    let packets_from: u64 = e.viewers.iter().map(Viewer::packets).sum();
    let steady_end = steady_from + cfg.duration;
    while Instant::now() < steady_end {
        e.pump(MAX_WAIT.min(steady_end.saturating_duration_since(Instant::now())))?;
    }
    on_phase(Phase::SteadyEnd);
    let end = Instant::now();
    let harness_cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
    let steady_bytes = e
        .viewers
        .iter()
        .map(Viewer::bytes)
        .sum::<u64>()
        .saturating_sub(bytes_from);
    let steady_packets = e
        .viewers
        .iter()
        .map(Viewer::packets)
        .sum::<u64>()
        .saturating_sub(packets_from);
    // End every session the WHEP way, then let str0m say goodbye on the wire.
    let mut deleted = (0u32, 0u32);
    for i in 0..e.viewers.len() {
        if let Some(loc) = e.viewers[i].location.take() {
            match signal::delete(cfg.http, &loc) {
                Ok(r) if r.status == 200 => deleted.0 += 1,
                _ => deleted.1 += 1,
            }
        }
        e.viewers[i].close(Instant::now());
    }
    Ok(EngineOutcome {
        start_secs: (steady_from - t0).as_secs_f64(),
        steady_secs: (end - steady_from).as_secs_f64(),
        steady_bytes,
        steady_packets,
        datagrams: e.datagrams,
        loops: e.loops,
        deleted,
        harness_cpu_ns,
        harness_wall_ns: (end - t0).as_nanos() as u64,
        viewers: e.viewers,
    })
}

/// This thread's user + system CPU time from `/proc/thread-self/stat` (proc(5) fields 14
/// and 15, clock ticks), in ns; 0 if unreadable.
pub(crate) fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| parse_stat_cpu_ticks(&s))
        .map_or(0, |t| t * 1_000_000_000 / host::clock_ticks_per_sec())
}

/// utime + stime of a `/proc/…/stat` line: the fields after the command's closing `)`.
pub(crate) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `RcvbufErrors` and `InErrors` of the `Udp:` rows of `/proc/net/snmp` (RFC 4113's
/// udpInErrors; the kernel's count of datagrams dropped for a full receive buffer).
pub(crate) fn udp_drops(snmp: &str) -> Option<(u64, u64)> {
    let mut rows = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = rows.next()?.split_whitespace().collect();
    let values: Vec<&str> = rows.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some((get("RcvbufErrors")?, get("InErrors")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields_are_found_after_the_command() {
        // A command with spaces and a parenthesis, as proc(5) warns.
        let line = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(200));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn udp_drop_counters_are_read_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 100 2 7 90 5 0 0 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(udp_drops(snmp), Some((5, 7)));
        assert_eq!(udp_drops("Ip: x\nIp: 1\n"), None);
    }
}
