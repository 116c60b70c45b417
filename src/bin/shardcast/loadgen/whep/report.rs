//! The `--protocol whep` report: a Markdown row per phase and round, the conclusion (issue
//! 17's targets: < 0.1 % loss, WebRTC's server CPU per delivered packet ≤ 1.6× RTP's), and
//! a small HTML page.

use super::{WhepReport, WhepRound, TARGET_RATIO};

/// The Markdown table's header.
pub(crate) fn markdown_header() -> String {
    "| round | viewers | protocol | playing | video/audio | loss % | Mbit/s per viewer | first packet p50/p99 ms | server ns/pkt | core ns/pkt | WebRTC/RTP | harness CPU % | rcvbuf drops |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|"
        .to_owned()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The round's rows (RTP, then WebRTC).
pub(crate) fn markdown_rows(r: &WhepRound) -> String {
    let mut out = Vec::new();
    match (&r.rtp, &r.rtp_error) {
        (Some(p), _) => out.push(format!(
            "| {} | {} | RTP/UDP | {} | – | {:.3} | {:.2} | {:.0}/{:.0} | {} | {} | | | |",
            r.round,
            p.viewers,
            p.playing,
            p.loss_pct,
            p.mbit_per_viewer,
            p.first_packet.p50_ms,
            p.first_packet.p99_ms,
            opt(p.cpu_ns_per_packet, 0),
            opt(p.core_ns_per_packet, 0),
        )),
        (None, Some(e)) => out.push(format!("| {} | | RTP/UDP | not measured: {e} |", r.round)),
        (None, None) => {}
    }
    match (&r.whep, &r.whep_error) {
        (Some(w), _) => out.push(format!(
            "| {} | {} | WebRTC | {} | {}/{} | {:.3} | {:.2} | {:.0}/{:.0} | {} | {} | {} | {:.0} | {} |",
            r.round,
            w.viewers,
            w.playing,
            w.with_video,
            w.with_audio,
            w.loss_pct,
            w.mbit_per_viewer,
            w.first_packet.p50_ms,
            w.first_packet.p99_ms,
            opt(w.server.map(|s| s.cpu_ns_per_packet), 0),
            opt(w.server.and_then(|s| s.core_ns_per_packet), 0),
            r.cpu_ratio.map_or(String::new(), |x| format!("{x:.2}×")),
            w.harness.cpu_pct,
            w.harness
                .udp_rcvbuf_errors
                .map_or("–".into(), |d| d.to_string()),
        )),
        (None, Some(e)) => out.push(format!("| {} | | WebRTC | not measured: {e} |", r.round)),
        (None, None) => {}
    }
    out.join("\n")
}

/// The median of the rounds' CPU-per-packet ratios.
pub(crate) fn median_ratio(rounds: &[WhepRound]) -> Option<f64> {
    let mut v: Vec<f64> = rounds.iter().filter_map(|r| r.cpu_ratio).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// One paragraph: viewers, loss against the SLO, the ratio against the target, and who was
/// the bottleneck.
pub(crate) fn conclusion(rounds: &[WhepRound], max_loss_pct: f64) -> String {
    let Some(last) = rounds.iter().rev().find(|r| r.whep.is_some()) else {
        let why = rounds
            .iter()
            .find_map(|r| r.whep_error.clone())
            .unwrap_or_else(|| "no round ran".into());
        return format!("WebRTC not measured: {why}");
    };
    let Some(w) = &last.whep else {
        return "WebRTC not measured".into();
    };
    let mut s = format!(
        "{}/{} WebRTC viewers played ({} with video, {} with audio; {} connected), loss {:.3} % ({} the {} % SLO)",
        w.playing,
        w.viewers,
        w.with_video,
        w.with_audio,
        w.connected,
        w.loss_pct,
        if w.loss_pct < max_loss_pct && w.playing == w.viewers {
            "within"
        } else {
            "outside"
        },
        max_loss_pct
    );
    if let Some(e) = &w.first_error {
        s.push_str(&format!("; first viewer error: {e}"));
    }
    match median_ratio(rounds) {
        Some(ratio) => s.push_str(&format!(
            "; server CPU per delivered packet, WebRTC/RTP (median of {} round{}): {ratio:.2}× ({} the ≤ {TARGET_RATIO}× target)",
            rounds.iter().filter(|r| r.cpu_ratio.is_some()).count(),
            if rounds.len() == 1 { "" } else { "s" },
            if ratio <= TARGET_RATIO { "meets" } else { "misses" },
        )),
        None => s.push_str("; no WebRTC/RTP CPU ratio (a phase lacks server CPU figures)"),
    }
    if let (Some(all), Some(steady)) = (
        w.server.map(|x| x.cpu_ns_per_packet),
        w.steady_cpu_ns_per_packet,
    ) {
        s.push_str(&format!(
            " (WebRTC {all:.0} ns per packet with its DTLS handshakes, {steady:.0} ns in the steady phase alone)"
        ));
    }
    if w.harness.client_bound {
        s.push_str(&format!(
            ". The load generator was the bottleneck, not the server: its viewers' thread used {:.0} % of a core and the machine dropped {} UDP datagrams on full receive buffers, so loss and bitrate here understate what the server delivered",
            w.harness.cpu_pct,
            w.harness
                .udp_rcvbuf_errors
                .map_or("an unknown number of".into(), |d| d.to_string())
        ));
    } else {
        s.push_str(&format!(
            ". The load generator kept up ({:.0} % of a core, {} receive-buffer drops)",
            w.harness.cpu_pct,
            w.harness
                .udp_rcvbuf_errors
                .map_or("unknown".into(), |d| d.to_string())
        ));
    }
    s.push('.');
    s
}

/// The `model name` line of `/proc/cpuinfo` (empty if unreadable).
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `bench.html`: the command, the machine, the table and the conclusion.
pub(crate) fn html(r: &WhepReport) -> String {
    let rows: Vec<String> = r.rounds.iter().map(markdown_rows).collect();
    format!(
        "<!doctype html><meta charset=utf-8><title>shardcast bench --protocol whep</title>\
         <h1>WebRTC (WHEP) viewers against RTP/UDP</h1><p><code>{}</code></p><p>{} — {}</p>\
         <pre>{}\n{}</pre><p>{}</p>",
        escape(&r.command),
        escape(&r.machine),
        escape(&r.cpu_model),
        escape(&markdown_header()),
        escape(&rows.join("\n")),
        escape(&r.conclusion)
    )
}
