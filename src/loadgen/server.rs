//! The server under test: spawning `shardcast serve` on a free loopback port (pinned to one
//! core), reading its banner, killing it at the end, and sampling its CPU time, memory and
//! threads from `/proc/<pid>` (proc(5)).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::LoadError;
use crate::sys::recv::clock_ticks_per_sec;

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerLaunch {
    /// The `shardcast` executable.
    pub exe: PathBuf,
    /// `--shards`.
    pub shards: usize,
    /// `--media`, if any.
    pub media: Option<PathBuf>,
    /// Further arguments passed verbatim (e.g. `--io uring`).
    pub extra_args: Vec<String>,
    /// Core to pin the server to (its threads inherit the mask), if any.
    pub pin_core: Option<usize>,
    /// Core the harness returns to after spawning, if any.
    pub harness_core: Option<usize>,
}

/// A running server process, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// Its RTSP address.
    pub addr: SocketAddr,
    /// Stream URLs it announced.
    pub streams: Vec<String>,
    /// Its HTTP API address, when it serves one (for the data plane's own figures).
    pub http: Option<SocketAddr>,
}

impl ServerProcess {
    /// Starts the server and waits up to 20 s for its `ready` line.
    pub fn spawn(launch: &ServerLaunch) -> Result<Self, LoadError> {
        let mut cmd = Command::new(&launch.exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards"])
            .arg(launch.shards.to_string());
        if let Some(m) = &launch.media {
            cmd.arg("--media").arg(m);
        }
        if !launch
            .extra_args
            .iter()
            .any(|a| a == "--log" || a.starts_with("--log="))
        {
            cmd.args(["--log", "warn"]);
        }
        // Benchmarks run several servers, possibly in parallel: never the fixed HTTP port.
        // The API gives the data plane's own figures (pacing lateness, sends per packet).
        if !launch
            .extra_args
            .iter()
            .any(|a| a == "--http-listen" || a.starts_with("--http-listen="))
        {
            cmd.args(["--http-listen", "127.0.0.1:0"]);
        }
        // Every viewer of a bench comes from this one loopback address: lift the per-address
        // and total session limits, whose defaults guard a server facing the internet.
        for flag in ["--max-viewers", "--max-viewers-per-ip"] {
            if !launch
                .extra_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
            {
                cmd.args([flag, "0"]);
            }
        }
        cmd.args(&launch.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The child inherits the spawning thread's CPU mask: pin, spawn, then move back.
        if let Some(core) = launch.pin_core {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        let spawned = cmd.spawn();
        if let Some(core) = launch.harness_core {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        let mut child =
            spawned.map_err(|e| LoadError::io(format!("spawning {}", launch.exe.display()), e))?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == 20 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut addr = None;
            let mut http = None;
            let mut streams = Vec::new();
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.strip_prefix("shardcast listening on rtsp://") {
                    addr = rest.split('/').next().and_then(|a| a.parse().ok());
                } else if let Some(rest) = line.strip_prefix("http listening on http://") {
                    http = rest.split('/').next().and_then(|a| a.parse().ok());
                } else if let Some(url) = line.strip_prefix("stream ") {
                    streams.push(url.to_owned());
                } else if line == "ready" {
                    break;
                }
            }
            let _ = tx.send((addr, streams, http));
            for _ in lines {}
        });
        let banner = rx.recv_timeout(Duration::from_secs(20));
        let stderr_text = |tail: &Arc<Mutex<VecDeque<String>>>| {
            // Give the stderr reader a moment to collect a failing server's last words.
            std::thread::sleep(Duration::from_millis(200));
            let t = tail.lock().unwrap_or_else(|p| p.into_inner());
            t.iter().cloned().collect::<Vec<_>>().join(" | ")
        };
        match banner {
            Ok((Some(addr), streams, http)) => Ok(Self {
                child,
                addr,
                streams,
                http,
            }),
            _ => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(LoadError::ServerStart {
                    args: launch.extra_args.join(" "),
                    detail: format!(
                        "exit {}: {}",
                        status
                            .and_then(|s| s.code())
                            .map_or("none".into(), |c| c.to_string()),
                        stderr_text(&stderr_tail)
                    ),
                })
            }
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this `shardcast` build's `serve` accepts `--io` (the send backends' flag).
pub fn serve_accepts_io_flag(exe: &Path) -> bool {
    Command::new(exe)
        .args(["serve", "--help"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--io"))
        .unwrap_or(false)
}

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ProcSample {
    /// utime + stime, ns.
    pub cpu_ns: u64,
    /// Peak resident set (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Current resident set (VmRSS), KiB.
    pub rss_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// Busy time of one CPU core from `/proc/stat` (proc(5): user, nice, system, idle, iowait,
/// irq, softirq, steal in clock ticks): everything but idle and iowait, in ns. With the server
/// pinned alone to that core this is its cost *including* the softirq work (the loopback
/// receive path) that the kernel accounts to no process.
pub fn sample_core_busy_ns(core: usize) -> Result<u64, LoadError> {
    let stat = std::fs::read_to_string("/proc/stat")
        .map_err(|e| LoadError::io("reading /proc/stat", e))?;
    core_busy_ns(&stat, core, clock_ticks_per_sec())
}

/// Parses `/proc/stat` for [`sample_core_busy_ns`].
pub fn core_busy_ns(stat: &str, core: usize, ticks_per_sec: u64) -> Result<u64, LoadError> {
    let label = format!("cpu{core}");
    let fields: Vec<u64> = stat
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(label.as_str())).then(|| it.filter_map(|f| f.parse().ok()).collect())
        })
        .ok_or_else(|| LoadError::Protocol(format!("/proc/stat has no {label} line")))?;
    if fields.len() < 7 {
        return Err(LoadError::Protocol(format!(
            "/proc/stat {label}: too few fields"
        )));
    }
    // user + nice + system + irq + softirq (+ steal: time the hypervisor took is not ours).
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6];
    Ok(busy * 1_000_000_000 / ticks_per_sec.max(1))
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn sample_process(pid: u32) -> Result<ProcSample, LoadError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| LoadError::io(format!("reading /proc/{pid}/stat"), e))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| LoadError::io(format!("reading /proc/{pid}/status"), e))?;
    parse_proc(&stat, &status, clock_ticks_per_sec())
}

/// Parses the two proc files; `ticks_per_sec` is `sysconf(_SC_CLK_TCK)`.
pub fn parse_proc(stat: &str, status: &str, ticks_per_sec: u64) -> Result<ProcSample, LoadError> {
    // proc(5): the command name (field 2) is in parentheses and may hold spaces, so count
    // fields after the last ')'. Field 3 (state) is then index 0; utime (14) index 11,
    // stime (15) index 12.
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| LoadError::Protocol("malformed /proc stat".into()))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| -> Result<u64, LoadError> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| LoadError::Protocol(format!("/proc stat field {} missing", i + 3)))
    };
    let ticks = num(11)? + num(12)?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_ns: ticks * 1_000_000_000 / ticks_per_sec.max(1),
        peak_rss_kib: kib("VmHWM:"),
        rss_kib: kib("VmRSS:"),
        threads: kib("Threads:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_busy_counts_softirq_not_idle() {
        let stat =
            "cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 10 1 20 500 7 2 30 4 0 0\ncpu1 5 0 5 5 0 0 0 0 0 0\n";
        // (10 + 1 + 20 + 2 + 30) ticks at 100 Hz = 630 ms.
        assert_eq!(core_busy_ns(stat, 0, 100).unwrap(), 630_000_000);
        assert_eq!(core_busy_ns(stat, 1, 100).unwrap(), 100_000_000);
        assert!(core_busy_ns(stat, 2, 100).is_err());
    }

    #[test]
    fn proc_fields_are_counted_after_the_command_name() {
        let stat = "4242 (shard cast) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 5 0";
        let status = "Name:\tshardcast\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n";
        let s = parse_proc(stat, status, 100).unwrap();
        assert_eq!(s.cpu_ns, 3_000_000_000, "(250 + 50) ticks at 100 Hz");
        assert_eq!((s.peak_rss_kib, s.rss_kib, s.threads), (20480, 10240, 5));
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample_process(std::process::id()).unwrap();
        assert!(s.threads >= 1 && s.rss_kib > 0);
    }
}

/// The data plane's own figures for a run, from the server's `GET /api/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DataPlaneFigures {
    /// RTP packets per send syscall (`io_uring_enter` for io_uring).
    pub packets_per_syscall: f64,
    /// Datagrams per UDP GSO send (0 when none).
    pub segments_per_gso_send: f64,
    /// Share of packets that left inside GSO sends.
    pub gso_packet_share: f64,
    /// Pacing lateness p50, ms.
    pub lateness_p50_ms: f64,
    /// Pacing lateness p99, ms.
    pub lateness_p99_ms: f64,
    /// Largest pacing lateness, ms.
    pub lateness_max_ms: f64,
    /// Sends the kernel refused.
    pub send_errors: u64,
}

/// Reads [`DataPlaneFigures`] from the server's API at `http` (lateness over the last
/// 5–10 s, so a run of ≥ 10 s is judged on its steady state; totals since the server
/// started — one server per run).
pub fn data_plane_figures(http: SocketAddr) -> Result<DataPlaneFigures, LoadError> {
    let base = crate::http::client::HttpBase {
        authority: http.to_string(),
    };
    let reply = crate::http::client::get(
        &base,
        "/api/v1/stats?history=0",
        None,
        Duration::from_secs(5),
    )
    .map_err(|e| LoadError::Protocol(format!("GET /api/v1/stats: {e}")))?;
    if reply.status != 200 {
        return Err(LoadError::Protocol(format!(
            "GET /api/v1/stats answered {}",
            reply.status
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| LoadError::Protocol(format!("/api/v1/stats: {e}")))?;
    let f = |path: &[&str]| path.iter().fold(&v, |v, k| &v[*k]).as_f64().unwrap_or(0.0);
    let packets = f(&["totals", "rtp_packets"]);
    let gso_sends = f(&["totals", "gso_sends"]);
    let gso_segments = f(&["totals", "gso_segments"]);
    Ok(DataPlaneFigures {
        packets_per_syscall: f(&["totals", "packets_per_syscall"]),
        segments_per_gso_send: if gso_sends > 0.0 {
            gso_segments / gso_sends
        } else {
            0.0
        },
        gso_packet_share: if packets > 0.0 {
            gso_segments / packets
        } else {
            0.0
        },
        lateness_p50_ms: f(&["lateness_ms", "p50"]),
        lateness_p99_ms: f(&["lateness_ms", "p99"]),
        lateness_max_ms: f(&["lateness_ms", "max"]),
        send_errors: f(&["totals", "send_errors"]) as u64,
    })
}
