//! The bench report: one Markdown table row per configuration, a JSON document, and a
//! self-contained HTML page with hand-drawn inline SVG plots (viewers vs loss, server CPU ns
//! per packet per backend, jitter percentiles) and a one-line conclusion in plain words.

use std::fmt::Write as _;

use serde::Serialize;

use super::{ConfigResult, Placement, RunResult, Slo};

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BenchReport {
    /// Unix time the bench started.
    pub(crate) started_unix_secs: u64,
    /// The command line.
    pub(crate) command: String,
    /// Kernel release, the machine's cores and the shard cores ([`machine_line`]).
    pub(crate) machine: String,
    /// Core placement.
    pub(crate) placement: Placement,
    /// Server shards.
    pub(crate) shards: Option<usize>,
    /// The SLO applied.
    pub(crate) slo: Slo,
    /// How the viewers received (what loopback's receive path charged to the server).
    pub(crate) receive: super::ReceiveTuning,
    /// Results per backend.
    pub(crate) configs: Vec<ConfigResult>,
    /// The plain-language conclusion.
    pub(crate) conclusion: String,
}

/// What the viewers' receive tuning means for the server's figures, in words.
pub(crate) fn receive_sentence(r: super::ReceiveTuning) -> String {
    let gro = if r.gro {
        "UDP_GRO on (loopback's receive path runs once per GSO train, on the server's core)"
    } else {
        "UDP_GRO off (loopback's receive path runs once per packet, on the server's core)"
    };
    let poll = if r.busy_poll {
        "busy polling without epoll (no server send has to wake a viewer or mark it ready)"
    } else {
        "sleeping in epoll (server sends pay the viewers' wake-ups)"
    };
    format!("{gro}; {poll}. A remote viewer costs the server neither.")
}

/// The Markdown table header matching [`markdown_row`].
pub(crate) fn markdown_header() -> String {
    "| config | viewers | playing | transport | Mbit/s/viewer | packets | loss % | stalled | reordered | audio jitter p50/p99 ms | video jitter p99 ms | first pkt p50/p99 ms | first key p99 ms | server CPU ns/pkt | core ns/pkt incl. softirq | pkts/syscall | segs/GSO send | lateness p50/p99 ms | server peak RSS MiB | threads | SLO |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        .to_owned()
}

/// One row: the configuration's fixed run, or its best passing capacity probe.
pub(crate) fn markdown_row(cfg: &ConfigResult) -> String {
    let Some(r) = representative_run(cfg) else {
        return format!(
            "| {} | – | – | – | – | – | – | – | – | – | – | – | – | – | – | – | – | – | – | – | not run: {} |",
            cfg.label,
            cfg.error.as_deref().unwrap_or("no run").replace('|', "/")
        );
    };
    let (cpu, core, rss, threads) = match &r.server {
        Some(s) => (
            format!("{:.0}", s.cpu_ns_per_packet),
            s.core_ns_per_packet
                .map_or("n/a".into(), |c| format!("{c:.0}")),
            format!("{:.1}", s.end.peak_rss_kib as f64 / 1024.0),
            s.end.threads.to_string(),
        ),
        None => ("n/a".into(), "n/a".into(), "n/a".into(), "n/a".into()),
    };
    let (per_syscall, per_gso, lateness) = match &r.data_plane {
        Some(d) => (
            format!("{:.1}", d.packets_per_syscall),
            format!("{:.1}", d.segments_per_gso_send),
            format!("{:.2}/{:.2}", d.lateness_p50_ms, d.lateness_p99_ms),
        ),
        None => ("n/a".into(), "n/a".into(), "n/a".into()),
    };
    let slo = match &cfg.capacity {
        Some(c) => format!("capacity {} ({})", c.capacity_viewers, c.limit),
        None => format!(
            "{}: {}",
            if r.slo_passed { "pass" } else { "FAIL" },
            r.slo_reason
        ),
    };
    format!(
        "| {} | {} | {} | {:?} | {:.2} | {} | {:.3} | {} | {} | {:.2}/{:.2} | {:.2} | {:.1}/{:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
        cfg.label,
        r.viewers,
        r.playing,
        r.transport,
        r.mbit_per_viewer,
        r.packets,
        r.loss_pct,
        r.stalled_sessions,
        r.reordered,
        r.jitter_audio.p50_ms,
        r.jitter_audio.p99_ms,
        r.jitter_video.p99_ms,
        r.first_packet.p50_ms,
        r.first_packet.p99_ms,
        r.first_keyframe.p99_ms,
        cpu,
        core,
        per_syscall,
        per_gso,
        lateness,
        rss,
        threads,
        slo.replace('|', "/"),
    )
}

/// The run a configuration is summarized by: for a capacity search its largest passing run,
/// else its last; for repeated fixed-load rounds the run with the median server CPU per
/// packet (the dearer middle run for an even count; the last round's when the server's CPU
/// is unknown).
pub(crate) fn representative_run(cfg: &ConfigResult) -> Option<&RunResult> {
    if cfg.capacity.is_none() && cfg.runs.len() > 1 {
        let mut measured: Vec<(f64, &RunResult)> = cfg
            .runs
            .iter()
            .filter_map(|r| cost_of(r).map(|c| (c, r)))
            .collect();
        if measured.len() == cfg.runs.len() {
            measured.sort_by(|a, b| a.0.total_cmp(&b.0));
            return Some(measured[measured.len() / 2].1);
        }
        return cfg.runs.last();
    }
    cfg.runs
        .iter()
        .filter(|r| r.slo_passed)
        .max_by_key(|r| r.viewers)
        .or(cfg.runs.last())
}

/// The server cost a run is ranked by: CPU ms per delivered MB for HLS runs, CPU ns per
/// packet for RTSP runs.
fn cost_of(r: &RunResult) -> Option<f64> {
    match &r.hls {
        Some(h) => h.server_cpu_ms_per_mb,
        None => r.server.map(|s| s.cpu_ns_per_packet),
    }
}

/// The Markdown table header of HLS runs, matching [`hls_markdown_row`].
pub(crate) fn hls_markdown_header() -> String {
    "| config | viewers | playing | mode | Mbit/s/viewer | stalls (viewers) | stalled s | TTFS p50/p99 ms | segments | parts | playlists (blocking) | req/s | HTTP errors | transport errors | server CPU ms/MB | core ms/MB incl. softirq | server peak RSS MiB | SLO |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        .to_owned()
}

/// One HLS row: the configuration's median run (by server CPU per MB).
pub(crate) fn hls_markdown_row(cfg: &ConfigResult) -> String {
    let (Some(r), Some(h)) = (
        representative_run(cfg),
        representative_run(cfg).and_then(|r| r.hls.as_ref()),
    ) else {
        return format!(
            "| {} | – | – | – | – | – | – | – | – | – | – | – | – | – | – | – | – | not run: {} |",
            cfg.label,
            cfg.error.as_deref().unwrap_or("no run").replace('|', "/")
        );
    };
    let opt = |v: Option<f64>, digits: usize| v.map_or("n/a".into(), |v| format!("{v:.digits$}"));
    let errors = if h.http_errors.is_empty() {
        "0".to_owned()
    } else {
        h.http_errors
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "| {} | {} | {} | {} | {:.2} | {} ({}) | {:.1} | {:.0}/{:.0} | {} | {} | {} ({}) | {:.0} | {} | {} | {} | {} | {} | {}: {} |",
        cfg.label,
        r.viewers,
        r.playing,
        h.mode,
        r.mbit_per_viewer,
        h.stalls,
        h.stalled_viewers,
        h.stall_secs,
        h.ttfs.p50_ms,
        h.ttfs.p99_ms,
        h.segments,
        h.parts,
        h.playlists,
        h.blocking_reloads,
        h.requests_per_sec,
        errors,
        h.transport_errors,
        opt(h.server_cpu_ms_per_mb, 3),
        opt(h.core_ms_per_mb, 3),
        opt(r.server.map(|s| s.end.peak_rss_kib as f64 / 1024.0), 1),
        if r.slo_passed { "pass" } else { "FAIL" },
        r.slo_reason.replace('|', "/"),
    )
}

/// The HLS run's conclusion: each server's figures, and shardcast's CPU per delivered MB
/// against nginx's (issue 15's target: within 1.3×), the median of the rounds' same-round
/// ratios when there are several.
pub(crate) fn hls_conclusion(configs: &[ConfigResult]) -> String {
    let mut parts = Vec::new();
    for c in configs {
        let Some(r) = representative_run(c) else {
            parts.push(format!("{}: not measured", c.label));
            continue;
        };
        let cpu = r
            .hls
            .as_ref()
            .and_then(|h| h.server_cpu_ms_per_mb)
            .map_or(String::new(), |v| format!(", {v:.3} ms server CPU per MB"));
        let options = r
            .hls
            .as_ref()
            .and_then(|h| Some((h.rtsp_options.as_ref()?, h.rtsp_options_failed)))
            .map_or(String::new(), |(p, failed)| {
                format!(
                    ", RTSP OPTIONS meanwhile p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} probes, {failed} failed)",
                    p.p50_ms, p.p99_ms, p.max_ms, p.count
                )
            });
        parts.push(format!(
            "{}: {} of {} viewers at {:.2} Mbit/s each, {} stalls{cpu}{options}",
            c.label,
            r.playing,
            r.viewers,
            r.mbit_per_viewer,
            r.hls.as_ref().map_or(0, |h| h.stalls),
        ));
    }
    let find = |name: &str| configs.iter().find(|c| c.label.starts_with(name));
    if let (Some(ours), Some(nginx)) = (find("shardcast"), find("nginx")) {
        let mut ratios: Vec<f64> = ours
            .runs
            .iter()
            .zip(&nginx.runs)
            .filter_map(|(a, b)| Some(cost_of(a)? / cost_of(b)?))
            .filter(|r| r.is_finite())
            .collect();
        ratios.sort_by(f64::total_cmp);
        if let Some(m) = ratios.get(ratios.len().saturating_sub(1) / 2) {
            parts.push(format!(
                "shardcast uses {m:.2}× nginx's CPU per delivered MB (target ≤ 1.3×: {})",
                if *m <= 1.3 { "met" } else { "NOT met" }
            ));
        }
    }
    parts.join("; ")
}

/// With repeated fixed-load rounds: a Markdown table of every round's server CPU per packet,
/// each with its ratio to the last configuration's run in the same round (run back to back,
/// so a machine whose speed drifts skews both alike), and the median ratio (the smaller
/// middle one for an even count). `None` for a
/// single round or when the server's CPU is unknown.
pub(crate) fn rounds_table(configs: &[ConfigResult]) -> Option<String> {
    rounds_table_of(configs, "server CPU ns/pkt", |r| {
        r.server.map(|s| s.cpu_ns_per_packet)
    })
}

/// [`rounds_table`] by server CPU per delivered megabyte of RTP, for rows whose packet mixes
/// differ (a live log sends every AAC frame in its own packet, a looped channel aggregates
/// them), where CPU per packet alone would favour the row with more, smaller packets.
pub(crate) fn rounds_table_per_mb(configs: &[ConfigResult]) -> Option<String> {
    rounds_table_of(configs, "server CPU µs/MB", |r| {
        let s = r.server?;
        (r.bytes > 0).then(|| s.cpu_secs * 1e6 / (r.bytes as f64 / 1e6))
    })
}

/// Every round's `metric` of each configuration and its ratio to the last configuration's
/// in the same round (see [`rounds_table`]).
fn rounds_table_of(
    configs: &[ConfigResult],
    title: &str,
    metric: impl Fn(&RunResult) -> Option<f64>,
) -> Option<String> {
    let rounds = configs.iter().map(|c| c.runs.len()).max()?;
    if rounds < 2 || configs.iter().any(|c| c.capacity.is_some()) {
        return None;
    }
    let cpu =
        |c: &ConfigResult, round: usize| c.runs.get(round).and_then(&metric).filter(|v| *v > 0.0);
    let baseline = configs.last()?;
    (0..rounds)
        .any(|i| cpu(baseline, i).is_some())
        .then_some(())?;
    let mut t = format!("| config ({title}) |");
    for i in 1..=rounds {
        let _ = write!(t, " round {i} |");
    }
    let _ = writeln!(t, " median × vs {} |", baseline.label);
    t.push_str("|---|");
    t.push_str(&"---|".repeat(rounds + 1));
    for c in configs {
        t.push_str("\n| ");
        t.push_str(&c.label.replace('|', "/"));
        t.push_str(" |");
        let mut ratios = Vec::new();
        for i in 0..rounds {
            match (cpu(c, i), cpu(baseline, i)) {
                (Some(v), Some(b)) => {
                    let _ = write!(t, " {v:.0} ({:.2}×) |", b / v);
                    ratios.push(b / v);
                }
                (Some(v), None) => {
                    let _ = write!(t, " {v:.0} |");
                }
                _ => t.push_str(" – |"),
            }
        }
        ratios.sort_by(f64::total_cmp);
        match ratios.get(ratios.len().saturating_sub(1) / 2) {
            Some(m) => {
                let _ = write!(t, " {m:.2}× |");
            }
            _ => t.push_str(" – |"),
        }
    }
    Some(t)
}

/// Runs of the bench's RTSP publisher: a Markdown table of the latency the server added
/// (publisher's packet in → viewer's packet out, from `CLOCK_REALTIME` before the
/// publisher's send of a frame's last packet to the viewer's kernel receive timestamp),
/// one row per configuration's representative run. `None` when no run measured it.
pub(crate) fn latency_table(configs: &[ConfigResult]) -> Option<String> {
    let rows: Vec<String> = configs
        .iter()
        .filter_map(|c| {
            let r = representative_run(c)?;
            let l = r.latency?;
            Some(format!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
                c.label.replace('|', "/"),
                l.paired,
                l.added.p50_ms,
                l.added.p99_ms,
                l.added.max_ms,
                l.from_gop_cache,
                l.before_report,
                l.unpaired,
                l.negative,
            ))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "| config (server-added latency) | paired packets | p50 ms | p99 ms | max ms | from GOP cache (not counted) | before 1st SR | unpaired | negative |\n\
         |---|---|---|---|---|---|---|---|---|\n{}",
        rows.join("\n")
    ))
}

/// The report's machine line: kernel release, the machine's online CPU cores and, when the
/// bench started the server itself, its shard cores, e.g. "Linux 6.8.0, 2 cores (1 shard
/// core)". `shards` is `None` against a server given by `--url` (its shards are unknown).
pub(crate) fn machine_line(kernel: &str, cores: usize, shards: Option<usize>) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let shard_part = match shards {
        Some(n) => format!(" ({n} shard core{})", plural(n)),
        None => String::new(),
    };
    format!(
        "Linux {}, {cores} core{}{shard_part}",
        kernel.trim(),
        plural(cores)
    )
}

/// Online CPUs listed in `/proc/cpuinfo` text (one `processor` line each). Unlike
/// `std::thread::available_parallelism`, this does not shrink to the calling thread's
/// affinity mask, which the bench has pinned to one core by the time it writes the report.
pub(crate) fn cpuinfo_cores(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count()
}

/// The machine's online CPU cores, whatever the calling thread's affinity: counted from
/// `/proc/cpuinfo`, else `available_parallelism` (0 when neither answers).
pub(crate) fn machine_cores() -> usize {
    match std::fs::read_to_string("/proc/cpuinfo").map(|t| cpuinfo_cores(&t)) {
        Ok(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(0, |n| n.get()),
    }
}

/// "This machine served N viewers of an X Mbit/s stream per shard core with L% loss".
pub(crate) fn conclusion(configs: &[ConfigResult], shards: Option<usize>) -> String {
    // The most viewers served; among equals, the least server CPU per packet.
    let cpu = |r: &RunResult| r.server.map_or(f64::INFINITY, |s| s.cpu_ns_per_packet);
    let best = configs
        .iter()
        .filter_map(|c| representative_run(c).map(|r| (c, r)))
        .filter(|(_, r)| r.slo_passed)
        .max_by(|(_, a), (_, b)| a.playing.cmp(&b.playing).then(cpu(b).total_cmp(&cpu(a))));
    let Some((cfg, r)) = best else {
        return "no configuration met the SLO; see the table for why".into();
    };
    let per_core = match shards {
        Some(n) if n > 0 => format!(" on {n} shard core{}", if n == 1 { "" } else { "s" }),
        _ => String::new(),
    };
    let how = match &cfg.capacity {
        Some(c) => format!(" (capacity search; stopped by: {})", c.limit),
        None => String::new(),
    };
    let cpu = r
        .server
        .map(|s| {
            format!(
                ", at {:.0} ns of server CPU per packet",
                s.cpu_ns_per_packet
            )
        })
        .unwrap_or_default();
    let pacing = match &r.data_plane {
        Some(d) => format!("{:.2} ms pacing lateness p99", d.lateness_p99_ms),
        None => format!("{:.2} ms audio jitter p99", r.jitter_audio.p99_ms),
    };
    format!(
        "this machine served {} viewers of a {:.2} Mbit/s stream{per_core} with {:.3}% loss and {pacing} ({}{cpu}){how}{}",
        r.playing,
        r.mbit_per_viewer,
        r.loss_pct,
        cfg.label,
        nic_sentence(r.playing, r.mbit_per_viewer, shards)
    )
}

/// Where the network, not the CPU, becomes the limit: the served rate per shard core against
/// 10 and 25 Gbit/s NICs, in words ("" when there is nothing to say).
pub(crate) fn nic_sentence(viewers: u32, mbit_per_viewer: f64, shards: Option<usize>) -> String {
    let cores = shards.unwrap_or(1).max(1) as f64;
    let gbit_per_core = f64::from(viewers) * mbit_per_viewer / 1000.0 / cores;
    if !gbit_per_core.is_finite() || gbit_per_core <= 0.0 {
        return String::new();
    }
    let cores_for = |nic_gbit: f64| (nic_gbit / gbit_per_core).ceil();
    format!(
        "; that is {gbit_per_core:.2} Gbit/s per shard core, so a 10 Gbit/s NIC, not the CPU, is the limit from {:.0} such cores on (25 Gbit/s: {:.0})",
        cores_for(10.0),
        cores_for(25.0)
    )
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) const W: f64 = 560.0;
pub(super) const H: f64 = 260.0;
pub(super) const PAD: f64 = 50.0;
pub(super) const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

pub(super) fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

pub(super) fn axes(svg: &mut String, title: &str, x_label: &str, y_label: &str, y_max: f64) {
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">
<text x="{}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{}</text>
<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{PAD}" y1="30" x2="{PAD}" y2="{}" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="12" y="{}" text-anchor="middle" transform="rotate(-90 12 {})">{}</text>
"##,
        W / 2.0,
        esc(title),
        H - PAD,
        W - 10.0,
        H - PAD,
        H - PAD,
        W / 2.0,
        H - 10.0,
        esc(x_label),
        H / 2.0,
        H / 2.0,
        esc(y_label)
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let y = H - PAD - (H - PAD - 30.0) * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{PAD}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            W - 10.0,
            PAD - 4.0,
            y + 4.0,
            fmt_num(v)
        );
    }
}

pub(super) fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub(super) fn y_of(v: f64, y_max: f64) -> f64 {
    H - PAD - (H - PAD - 30.0) * (v / y_max).clamp(0.0, 1.0)
}

/// Scatter/line plot of loss % against viewers, one series per configuration.
fn loss_plot(configs: &[ConfigResult]) -> String {
    let pts: Vec<(usize, f64, f64)> = configs
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.runs
                .iter()
                .map(move |r| (i, f64::from(r.viewers), r.loss_pct))
        })
        .collect();
    let x_max = nice_max(pts.iter().map(|p| p.1).fold(0.0, f64::max));
    let y_max = nice_max(pts.iter().map(|p| p.2).fold(0.0, f64::max).max(0.1));
    let mut svg = String::new();
    axes(&mut svg, "Viewers vs loss", "viewers", "loss %", y_max);
    for i in 0..=4 {
        let v = x_max * f64::from(i) / 4.0;
        let x = PAD + (W - PAD - 10.0) * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            H - PAD + 14.0,
            fmt_num(v)
        );
    }
    for (ci, c) in configs.iter().enumerate() {
        let color = COLORS[ci % COLORS.len()];
        let mut series: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.0 == ci)
            .map(|p| (p.1, p.2))
            .collect();
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = series
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    PAD + (W - PAD - 10.0) * x / x_max,
                    y_of(*y, y_max)
                )
            })
            .collect();
        if path.len() > 1 {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" points="{}"/>"#,
                path.join(" ")
            );
        }
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"/>"#);
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            W - 150.0,
            40.0 + 14.0 * ci as f64,
            esc(&c.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Grouped bar chart: one group per configuration, one bar per named value.
fn bar_plot(title: &str, y_label: &str, groups: &[(String, Vec<(String, f64)>)]) -> String {
    let y_max = nice_max(
        groups
            .iter()
            .flat_map(|g| g.1.iter().map(|v| v.1))
            .fold(0.0, f64::max),
    );
    let mut svg = String::new();
    axes(&mut svg, title, "", y_label, y_max);
    let n = groups.len().max(1) as f64;
    let group_w = (W - PAD - 10.0) / n;
    for (gi, (label, values)) in groups.iter().enumerate() {
        let x0 = PAD + group_w * gi as f64;
        let bw = (group_w * 0.8) / values.len().max(1) as f64;
        for (vi, (name, v)) in values.iter().enumerate() {
            let x = x0 + group_w * 0.1 + bw * vi as f64;
            let y = y_of(*v, y_max);
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                bw * 0.9,
                (H - PAD - y).max(0.0),
                COLORS[vi % COLORS.len()],
                esc(label),
                esc(name),
                fmt_num(*v)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                x + bw * 0.45,
                y - 3.0,
                fmt_num(*v)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + group_w / 2.0,
            H - PAD + 14.0,
            esc(label)
        );
    }
    if let Some((_, values)) = groups.first() {
        for (vi, (name, _)) in values.iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{}">{}</text>"#,
                W - 80.0,
                40.0 + 14.0 * vi as f64,
                COLORS[vi % COLORS.len()],
                esc(name)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// A Markdown table (header row, `|---|` rule, rows; no `|` inside cells) as HTML.
fn html_table(markdown: &str) -> String {
    let mut table = String::from("<table>");
    let rows = markdown.lines().filter(|l| !l.starts_with("|---"));
    for (i, line) in rows.enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        table.push_str("<tr>");
        for cell in line.trim().trim_matches('|').split('|') {
            let _ = write!(table, "<{tag}>{}</{tag}>", esc(cell.trim()));
        }
        table.push_str("</tr>\n");
    }
    table.push_str("</table>");
    table
}

/// The self-contained HTML page.
pub(crate) fn html(report: &BenchReport) -> String {
    let cpu_groups: Vec<(String, Vec<(String, f64)>)> = report
        .configs
        .iter()
        .filter_map(|c| {
            let r = representative_run(c)?;
            Some((
                c.label.clone(),
                vec![match &r.hls {
                    Some(h) => ("ms/MB".to_owned(), h.server_cpu_ms_per_mb.unwrap_or(0.0)),
                    None => (
                        "ns/packet".to_owned(),
                        r.server.map_or(0.0, |s| s.cpu_ns_per_packet),
                    ),
                }],
            ))
        })
        .collect();
    let jitter_groups: Vec<(String, Vec<(String, f64)>)> = report
        .configs
        .iter()
        .filter_map(|c| {
            let j = representative_run(c)?.jitter_audio;
            Some((
                c.label.clone(),
                vec![
                    ("p50".to_owned(), j.p50_ms),
                    ("p95".to_owned(), j.p95_ms),
                    ("p99".to_owned(), j.p99_ms),
                    ("max".to_owned(), j.max_ms),
                ],
            ))
        })
        .collect();
    let is_hls = report
        .configs
        .iter()
        .any(|c| c.runs.iter().any(|r| r.hls.is_some()));
    let mut markdown = if is_hls {
        hls_markdown_header()
    } else {
        markdown_header()
    };
    for c in &report.configs {
        markdown.push('\n');
        markdown.push_str(&if is_hls {
            hls_markdown_row(c)
        } else {
            markdown_row(c)
        });
    }
    let mut table = html_table(&markdown);
    if let Some(rounds) = rounds_table(&report.configs).filter(|_| !is_hls) {
        table.push_str("\n<h2>Rounds</h2>\n");
        table.push_str(&html_table(&rounds));
    }
    if let Some(latency) = latency_table(&report.configs) {
        table.push_str("\n<h2>Latency added by the server</h2>\n<p>Publisher's packet in → viewer's packet out: from the publisher's clock just before it sends a frame's last packet (on loopback the server's kernel receive timestamp is taken inside that send, so never earlier) to the viewer's kernel receive timestamp (SO_TIMESTAMPNS), paired through the server's RTCP sender reports, which carry the publisher's clock. Steady phase only.</p>\n");
        table.push_str(&html_table(&latency));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>shardcast bench</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ccc;padding:3px 6px}} .plots svg{{margin:0 1em 1em 0;border:1px solid #eee}} .conclusion{{font-size:1.2em;font-weight:bold}}</style>
</head><body>
<h1>shardcast bench</h1>
<p class="conclusion">{}</p>
<p>Command: <code>{}</code><br>Machine: {}<br>Placement: {}<br>Viewers' receive: {}<br>SLO: loss ≤ {}%, server pacing lateness p99 ≤ {} ms (from its /api/v1/stats; when unavailable, harness audio jitter p99 ≤ {} ms, RFC 3550 §6.4.1 estimate; video jitter is reported but not judged, because B-frames make video RTP timestamps non-monotonic)</p>
{}
<div class="plots">
{}{}{}
</div>
</body></html>
"#,
        esc(&report.conclusion),
        esc(&report.command),
        esc(&report.machine),
        esc(&report.placement.how),
        esc(&receive_sentence(report.receive)),
        report.slo.max_loss_pct,
        report.slo.max_lateness_p99_ms,
        report.slo.max_jitter_p99_ms,
        table,
        if is_hls {
            String::new()
        } else {
            loss_plot(&report.configs)
        },
        if is_hls {
            bar_plot("Server CPU per delivered MB", "ms", &cpu_groups)
        } else {
            bar_plot("Server CPU per delivered packet", "ns", &cpu_groups)
        },
        if is_hls {
            String::new()
        } else {
            bar_plot("Audio jitter percentiles", "ms", &jitter_groups)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_maxima_round_up() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.07), 0.1);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(4800.0), 5000.0);
    }

    #[test]
    fn the_machine_line_says_cores_and_shard_cores_apart() {
        assert_eq!(
            machine_line("6.8.0-45-generic\n", 2, Some(1)),
            "Linux 6.8.0-45-generic, 2 cores (1 shard core)"
        );
        assert_eq!(
            machine_line("6.8.0", 8, Some(4)),
            "Linux 6.8.0, 8 cores (4 shard cores)"
        );
        assert_eq!(machine_line("6.8.0", 1, None), "Linux 6.8.0, 1 core");
        let cpuinfo = "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n";
        assert_eq!(cpuinfo_cores(cpuinfo), 2);
        assert_eq!(cpuinfo_cores(""), 0);
    }

    /// The bug behind issue 13 item 13: the bench pins its thread to one core before it
    /// writes the report, and `available_parallelism` then answers 1 on any machine.
    #[test]
    fn machine_cores_ignores_the_callers_affinity() {
        let online = cpuinfo_cores(&std::fs::read_to_string("/proc/cpuinfo").unwrap());
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        let pinned = std::thread::spawn(move || {
            if let Some(first) = ids.first() {
                assert!(core_affinity::set_for_current(*first));
            }
            machine_cores()
        })
        .join()
        .unwrap();
        assert_eq!(pinned, online);
    }

    #[test]
    fn the_nic_sentence_says_how_many_cores_fill_a_link() {
        let s = nic_sentence(800, 2.15, Some(1));
        assert!(s.contains("1.72 Gbit/s per shard core"), "{s}");
        assert!(s.contains("from 6 such cores on (25 Gbit/s: 15)"), "{s}");
        assert_eq!(nic_sentence(0, 2.0, Some(1)), "");
        assert!(nic_sentence(1000, 2.0, Some(2)).contains("1.00 Gbit/s per shard core"));
    }

    fn rounds(label: &str, cpu_ns: &[f64]) -> ConfigResult {
        let run = |cpu: f64| RunResult {
            viewers: 10,
            playing: 10,
            slo_passed: true,
            server: Some(crate::loadgen::ServerUsage {
                cpu_secs: 1.0,
                cpu_ns_per_packet: cpu,
                core_ns_per_packet: None,
                end: Default::default(),
            }),
            ..Default::default()
        };
        ConfigResult {
            label: label.into(),
            server_args: vec![],
            error: None,
            runs: cpu_ns.iter().map(|&c| run(c)).collect(),
            capacity: None,
        }
    }

    #[test]
    fn rounds_compare_each_configuration_with_the_baseline_of_the_same_round() {
        // The machine slows down in round 2: both configurations pay, the ratio holds.
        let configs = [
            rounds("io=uring gso=on", &[1000.0, 2000.0, 1100.0]),
            rounds("io=sendto gso=off", &[3000.0, 6000.0, 2200.0]),
        ];
        let t = rounds_table(&configs).expect("three rounds make a table");
        let uring = t.lines().find(|l| l.starts_with("| io=uring")).unwrap();
        assert_eq!(
            uring,
            "| io=uring gso=on | 1000 (3.00×) | 2000 (3.00×) | 1100 (2.00×) | 3.00× |"
        );
        assert!(t.contains("median × vs io=sendto gso=off"), "{t}");
        // The conclusion names the cheapest of equally many viewers served.
        assert!(conclusion(&configs, Some(1)).contains("io=uring gso=on"));
        // The row shows the median run, not the best or the last.
        let median = representative_run(&configs[0]).unwrap();
        assert_eq!(median.server.unwrap().cpu_ns_per_packet, 1100.0);
        // An even count takes the dearer middle run.
        let even = rounds("x", &[1.0, 4.0, 2.0, 3.0]);
        assert_eq!(
            representative_run(&even)
                .unwrap()
                .server
                .unwrap()
                .cpu_ns_per_packet,
            3.0
        );
        assert!(rounds_table(&[rounds("one", &[1.0])]).is_none());
        let html = html_table(&t);
        assert_eq!(html.matches("<tr>").count(), 3, "{html}");
    }

    /// Two sources with different packet mixes: per packet the one with more, smaller
    /// packets looks cheaper; per megabyte delivered they cost the same.
    #[test]
    fn rounds_per_megabyte_compare_rows_whose_packets_differ_in_size() {
        let with_bytes = |label: &str, cpu_ns: f64, bytes: u64| {
            let mut c = rounds(label, &[cpu_ns, cpu_ns]);
            for r in &mut c.runs {
                r.bytes = bytes;
            }
            c
        };
        // 1 s of CPU over 2 MB either way: 1e9 ns / 2000 packets and / 4000 packets.
        let configs = [
            with_bytes("source=published-rtsp", 250_000.0, 2_000_000),
            with_bytes("source=channel", 500_000.0, 2_000_000),
        ];
        let per_packet = rounds_table(&configs).unwrap();
        assert!(per_packet.contains("250000 (2.00×)"), "{per_packet}");
        let per_mb = rounds_table_per_mb(&configs).unwrap();
        assert!(
            per_mb.starts_with("| config (server CPU µs/MB) |"),
            "{per_mb}"
        );
        assert!(per_mb.contains("500000 (1.00×)"), "{per_mb}");
        assert!(per_mb.contains("| 1.00× |"), "{per_mb}");
    }

    #[test]
    fn a_config_that_did_not_run_still_gets_a_row_and_a_conclusion() {
        let cfg = ConfigResult {
            label: "io=uring".into(),
            server_args: vec!["--io".into(), "uring".into()],
            error: Some(
                "server did not start with [--io uring]: exit 2: unexpected argument '--io'".into(),
            ),
            runs: vec![],
            capacity: None,
        };
        let row = markdown_row(&cfg);
        assert!(row.starts_with("| io=uring |") && row.contains("not run"));
        assert_eq!(
            row.matches('|').count(),
            markdown_header()
                .lines()
                .next()
                .unwrap()
                .matches('|')
                .count()
        );
        assert!(conclusion(&[cfg], Some(1)).contains("no configuration"));
    }
}
