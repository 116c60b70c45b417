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

use shardcast::banner::Banner;

use super::host::clock_ticks_per_sec;
use super::LoadError;

/// How the server is started.
#[derive(Debug, Clone)]
pub(crate) struct ServerLaunch {
    /// The `shardcast` executable.
    pub(crate) exe: PathBuf,
    /// `--shards`.
    pub(crate) shards: usize,
    /// `--media`, if any.
    pub(crate) media: Option<PathBuf>,
    /// Further arguments passed verbatim (e.g. `--io uring`).
    pub(crate) extra_args: Vec<String>,
    /// Cores the server may run on (its threads inherit the mask; each shard then pins
    /// itself to one of them); empty: not pinned.
    pub(crate) pin_cores: Vec<usize>,
    /// Core the harness returns to after spawning, if any.
    pub(crate) harness_core: Option<usize>,
}

impl ServerLaunch {
    /// The one core the server has to itself, whose busy time (softirq included) is the
    /// server's; `None` when it is not pinned or spread over several cores (one of which
    /// the harness shares).
    pub(crate) fn exclusive_core(&self) -> Option<usize> {
        match self.pin_cores.as_slice() {
            [core] => Some(*core),
            _ => None,
        }
    }
}

/// A running server process, killed on drop.
pub(crate) struct ServerProcess {
    child: Child,
    /// Its RTSP address.
    pub(crate) addr: SocketAddr,
    /// Stream URLs it announced.
    pub(crate) streams: Vec<String>,
    /// Its HTTP API address, when it serves one (for the data plane's own figures).
    pub(crate) http: Option<SocketAddr>,
    /// Its RTMP address, when it listens for RTMP publishers (`--publish rtmp`).
    pub(crate) rtmp: Option<SocketAddr>,
    /// Its shards' WebRTC ports (`webrtc listening on udp://…` lines), when it has them.
    pub(crate) webrtc: Vec<SocketAddr>,
}

impl ServerProcess {
    /// Starts the server and waits up to 20 s for its `ready` line.
    pub(crate) fn spawn(launch: &ServerLaunch) -> Result<Self, LoadError> {
        let mut cmd = Command::new(&launch.exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards"])
            .arg(launch.shards.to_string());
        if let Some(m) = &launch.media {
            cmd.arg("--media").arg(m);
        }
        let has = |flag: &str| {
            launch
                .extra_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        if !has("--log") {
            cmd.args(["--log", "warn"]);
        }
        // Benchmarks run several servers, possibly in parallel: never a fixed port. The API
        // gives the data plane's own figures (pacing lateness, sends per packet). A build
        // from before WebRTC has no `--webrtc-listen` (bench compares builds).
        for flag in [
            "--http-listen",
            "--hls-listen",
            "--rtmp-listen",
            "--webrtc-listen",
        ] {
            if !has(flag) && (flag != "--webrtc-listen" || serve_accepts_flag(&launch.exe, flag)) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        // Every viewer of a bench comes from this one loopback address: lift the per-address
        // and total session limits, whose defaults guard a server facing the internet.
        for flag in ["--max-viewers", "--max-viewers-per-ip"] {
            if !has(flag) {
                cmd.args([flag, "0"]);
            }
        }
        cmd.args(&launch.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The child inherits the spawning thread's CPU mask: pin, spawn, then move back.
        if !launch.pin_cores.is_empty() {
            super::host::pin_current_thread(&launch.pin_cores).map_err(|e| {
                LoadError::io(
                    format!("pinning the server to cores {:?}", launch.pin_cores),
                    e,
                )
            })?;
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
            let mut banner = Banner::default();
            while let Some(Ok(line)) = lines.next() {
                if banner.read_line(&line) {
                    break;
                }
            }
            let _ = tx.send((
                banner.rtsp,
                banner.streams,
                banner.http,
                banner.rtmp,
                banner.webrtc,
            ));
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
            Ok((Some(addr), streams, http, rtmp, webrtc)) => Ok(Self {
                child,
                addr,
                streams,
                http,
                rtmp,
                webrtc,
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
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this `shardcast` build's `serve` accepts `--io` (the send backends' flag).
pub(crate) fn serve_accepts_io_flag(exe: &Path) -> bool {
    serve_accepts_flag(exe, "--io")
}

/// Whether this `shardcast` build's `serve --help` names `flag`.
pub(crate) fn serve_accepts_flag(exe: &Path, flag: &str) -> bool {
    Command::new(exe)
        .args(["serve", "--help"])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|w| w == flag)
        })
        .unwrap_or(false)
}

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct ProcSample {
    /// utime + stime, ns.
    pub(crate) cpu_ns: u64,
    /// Peak resident set (VmHWM), KiB.
    pub(crate) peak_rss_kib: u64,
    /// Current resident set (VmRSS), KiB.
    pub(crate) rss_kib: u64,
    /// Threads.
    pub(crate) threads: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub(crate) fn sample_process(pid: u32) -> Result<ProcSample, LoadError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| LoadError::io(format!("reading /proc/{pid}/stat"), e))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| LoadError::io(format!("reading /proc/{pid}/status"), e))?;
    parse_proc(&stat, &status, clock_ticks_per_sec())
}

/// [`sample_process`] summed over `pid` and its children (`/proc/<pid>/task/*/children`,
/// proc(5)), e.g. nginx's master and workers: CPU, resident sets and threads added up.
pub(crate) fn sample_process_tree(pid: u32) -> Result<ProcSample, LoadError> {
    let mut total = sample_process(pid)?;
    for child in children_of(pid) {
        // A child that exited between the listing and the read adds nothing.
        if let Ok(s) = sample_process(child) {
            total.cpu_ns += s.cpu_ns;
            total.peak_rss_kib += s.peak_rss_kib;
            total.rss_kib += s.rss_kib;
            total.threads += s.threads;
        }
    }
    Ok(total)
}

/// The direct children of `pid`, from every one of its threads' `children` file.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Parses the two proc files; `ticks_per_sec` is `sysconf(_SC_CLK_TCK)`.
pub(crate) fn parse_proc(
    stat: &str,
    status: &str,
    ticks_per_sec: u64,
) -> Result<ProcSample, LoadError> {
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
    fn proc_fields_are_counted_after_the_command_name() {
        let stat = "4242 (shard cast) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 5 0";
        let status = "Name:\tshardcast\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n";
        let s = parse_proc(stat, status, 100).unwrap();
        assert_eq!(s.cpu_ns, 3_000_000_000, "(250 + 50) ticks at 100 Hz");
        assert_eq!((s.peak_rss_kib, s.rss_kib, s.threads), (20480, 10240, 5));
    }

    /// A child's CPU is added to its parent's: the test burns CPU in a child shell and the
    /// tree's figure must exceed the parent's own.
    #[test]
    fn a_process_tree_adds_its_children() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let me = std::process::id();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let own = sample_process(me).unwrap().cpu_ns;
            let tree = sample_process_tree(me).unwrap();
            if tree.cpu_ns >= own + 50_000_000 {
                assert!(children_of(me).contains(&child.id()));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child CPU never counted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample_process(std::process::id()).unwrap();
        assert!(s.threads >= 1 && s.rss_kib > 0);
    }
}

/// The data plane's own figures for a run, from the server's `GET /api/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct DataPlaneFigures {
    /// RTP packets per send syscall (`io_uring_enter` for io_uring).
    pub(crate) packets_per_syscall: f64,
    /// Datagrams per UDP GSO send (0 when none).
    pub(crate) segments_per_gso_send: f64,
    /// Share of packets that left inside GSO sends.
    pub(crate) gso_packet_share: f64,
    /// Pacing lateness p50, ms.
    pub(crate) lateness_p50_ms: f64,
    /// Pacing lateness p99, ms.
    pub(crate) lateness_p99_ms: f64,
    /// Largest pacing lateness, ms.
    pub(crate) lateness_max_ms: f64,
    /// Sends the kernel refused.
    pub(crate) send_errors: u64,
}

/// Reads [`DataPlaneFigures`] from the server's API at `http` (lateness over the last
/// 5–10 s, so a run of ≥ 10 s is judged on its steady state; totals since the server
/// started — one server per run).
pub(crate) fn data_plane_figures(http: SocketAddr) -> Result<DataPlaneFigures, LoadError> {
    let base = shardcast::http::client::HttpBase {
        authority: http.to_string(),
    };
    let reply = shardcast::http::client::get(
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
