//! `shardcast stats`: the live figures as text for a terminal, from the JSON the API
//! returns (`GET /api/v1/stats`, `GET /api/v1/sessions`, `GET /api/v1/ingest`). Works on `serde_json::Value` so a
//! newer server's extra fields, or a missing one, never break the view.

use std::fmt::Write;

use serde_json::Value;

/// Sessions listed under "top sessions".
pub const TOP_SESSIONS: usize = 10;

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return f64::NAN,
        }
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

fn fmt_num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".into()
    }
}

fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let t = secs as u64;
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Cuts a name to `width` characters, marking the cut with `…`.
fn cut(name: &str, width: usize) -> String {
    if name.chars().count() > width {
        name.chars().take(width - 1).collect::<String>() + "…"
    } else {
        name.to_owned()
    }
}

/// The "sources" section: one line per ingested stream (`GET /api/v1/ingest`); nothing when
/// there is none or the server does not have the endpoint (`ingest` is then `null`).
fn render_sources(o: &mut String, ingest: &Value) {
    let list: Vec<&Value> = ingest
        .get("ingest")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if list.is_empty() {
        return;
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "sources ({})", list.len());
    let _ = writeln!(
        o,
        "{:<20}{:<6}{:<9}{:>9}{:>6}{:>8}{:>11}{:>10}{:>9}{:>9}",
        "path",
        "proto",
        "state",
        "Mbit/s",
        "fps",
        "lost",
        "jitter ms",
        "keyframe",
        "viewers",
        "since"
    );
    for src in list {
        let key = f(src, &["since_keyframe_secs"]);
        let _ = writeln!(
            o,
            "{:<20}{:<6}{:<9}{:>9}{:>6}{:>8}{:>11}{:>10}{:>9}{:>9}",
            cut(s(src, "name"), 19),
            s(src, "protocol"),
            s(src, "state"),
            fmt_num(f(src, &["bitrate_bps"]) / 1e6, 2),
            fmt_num(f(src, &["frames_per_sec"]), 0),
            fmt_num(f(src, &["lost"]), 0),
            fmt_num(f(src, &["jitter_ms"]), 2),
            if key.is_finite() {
                format!("{key:.1}s")
            } else {
                "-".into()
            },
            fmt_num(f(src, &["viewers"]), 0),
            fmt_duration(f(src, &["since_secs"])),
        );
    }
}

/// Renders one screen. `now_unix_ms` dates the sessions' "since" column; `ingest` is the
/// answer of `GET /api/v1/ingest` (`null` from a server without it).
pub fn render(
    source: &str,
    stats: &Value,
    sessions: &Value,
    ingest: &Value,
    now_unix_ms: u64,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "shardcast {source}   up {}",
        fmt_duration(f(stats, &["uptime_secs"]))
    );
    let _ = writeln!(
        o,
        "viewers {}   {} Mbit/s   {} packets/s   loss {} %   {} packets/syscall",
        fmt_num(f(stats, &["viewers"]), 0),
        fmt_num(f(stats, &["mbps"]), 2),
        fmt_num(f(stats, &["packets_per_sec"]), 0),
        fmt_num(f(stats, &["loss_pct"]), 2),
        fmt_num(f(stats, &["totals", "packets_per_syscall"]), 1),
    );
    if f(stats, &["publishers"]).is_finite() {
        let _ = writeln!(
            o,
            "publishers {}   ingest {} Mbit/s",
            fmt_num(f(stats, &["publishers"]), 0),
            fmt_num(f(stats, &["ingest_bitrate_bps"]) / 1e6, 2),
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<14}{:>9}{:>9}{:>9}{:>9}{:>10}",
        "ms", "p50", "p95", "p99", "max", "count"
    );
    for (label, key) in [
        ("jitter", "jitter_ms"),
        ("rtt", "rtt_ms"),
        ("lateness", "lateness_ms"),
    ] {
        // No observation in the window: unknown, not zero.
        let empty = f(stats, &[key, "count"]) == 0.0;
        let q = |k: &str| {
            if empty {
                "-".to_owned()
            } else {
                fmt_num(f(stats, &[key, k]), 2)
            }
        };
        let _ = writeln!(
            o,
            "{:<14}{:>9}{:>9}{:>9}{:>9}{:>10}",
            label,
            q("p50"),
            q("p95"),
            q("p99"),
            q("max"),
            fmt_num(f(stats, &[key, "count"]), 0)
        );
    }
    let t = |k: &str| fmt_num(f(stats, &["totals", k]), 0);
    let _ = writeln!(
        o,
        "totals: {} packets  {} send errors  {} GSO sends  RTCP {} in / {} invalid / {} unknown source / {} unknown SSRC  {} slow viewers dropped",
        t("rtp_packets"),
        t("send_errors"),
        t("gso_sends"),
        t("rtcp_received"),
        t("rtcp_invalid"),
        t("rtcp_unknown_source"),
        t("rtcp_unknown_ssrc"),
        t("slow_viewers_dropped"),
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<7}{:>8}{:>10}{:>11}{:>12}{:>8}{:>14}{:>12}",
        "shard",
        "viewers",
        "Mbit/s",
        "packets/s",
        "pkt/syscall",
        "loss %",
        "lateness p99",
        "send errors"
    );
    for sh in stats
        .get("shards")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            o,
            "{:<7}{:>8}{:>10}{:>11}{:>12}{:>8}{:>14}{:>12}",
            fmt_num(f(sh, &["index"]), 0),
            fmt_num(f(sh, &["viewers"]), 0),
            fmt_num(f(sh, &["mbps"]), 2),
            fmt_num(f(sh, &["packets_per_sec"]), 0),
            fmt_num(f(sh, &["packets_per_syscall"]), 1),
            fmt_num(f(sh, &["loss_pct"]), 2),
            fmt_num(f(sh, &["lateness_ms", "p99"]), 2),
            fmt_num(f(sh, &["send_errors"]), 0),
        );
    }
    render_sources(&mut o, ingest);
    let mut list: Vec<&Value> = sessions
        .get("sessions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    list.sort_by(|a, b| {
        f(b, &["bitrate_bps"])
            .partial_cmp(&f(a, &["bitrate_bps"]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "top sessions ({} of {})",
        list.len().min(TOP_SESSIONS),
        list.len()
    );
    let _ = writeln!(
        o,
        "{:<18}{:<23}{:<16}{:<5}{:>6}{:>9}{:>8}{:>11}{:>9}{:>9}",
        "id", "peer", "stream", "tr", "shard", "Mbit/s", "loss %", "jitter ms", "rtt ms", "since"
    );
    for sess in list.iter().take(TOP_SESSIONS) {
        let since_ms = f(sess, &["since_unix_ms"]);
        let age = (now_unix_ms as f64 - since_ms) / 1000.0;
        let stream = cut(s(sess, "stream"), 15);
        let _ = writeln!(
            o,
            "{:<18}{:<23}{:<16}{:<5}{:>6}{:>9}{:>8}{:>11}{:>9}{:>9}",
            s(sess, "id"),
            s(sess, "peer"),
            stream,
            s(sess, "transport"),
            fmt_num(f(sess, &["shard"]), 0),
            fmt_num(f(sess, &["bitrate_bps"]) / 1e6, 2),
            fmt_num(f(sess, &["loss_pct"]), 2),
            fmt_num(f(sess, &["jitter_ms"]), 2),
            fmt_num(f(sess, &["rtt_ms"]), 2),
            fmt_duration(age),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_figures_shards_and_top_sessions() {
        let stats = json!({
            "uptime_secs": 3725.0, "viewers": 2, "mbps": 3.5, "packets_per_sec": 410.0,
            "loss_pct": 0.25,
            "jitter_ms": {"count": 4, "p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0},
            "rtt_ms": {"count": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0},
            "lateness_ms": {"count": 9, "p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
            "totals": {"rtp_packets": 1000, "packets_per_syscall": 12.5},
            "shards": [{"index": 0, "viewers": 2, "mbps": 3.5, "packets_per_sec": 410.0,
                        "packets_per_syscall": 12.5, "loss_pct": 0.25, "send_errors": 0,
                        "lateness_ms": {"p99": 0.3}}],
        });
        let sessions = json!({"sessions": [
            {"id": "00000000000000AA", "peer": "127.0.0.1:5000", "stream": "slow",
             "transport": "udp", "shard": 0, "bitrate_bps": 1e5, "loss_pct": 0.0,
             "jitter_ms": null, "rtt_ms": null, "since_unix_ms": 1_000},
            {"id": "00000000000000BB", "peer": "127.0.0.1:5002", "stream": "fast",
             "transport": "tcp", "shard": 0, "bitrate_bps": 3e6, "loss_pct": 0.5,
             "jitter_ms": 1.5, "rtt_ms": 0.4, "since_unix_ms": 1_000},
        ]});
        let text = render("http://x", &stats, &sessions, &Value::Null, 62_000);
        assert!(text.contains("up 1h02m05s"), "{text}");
        assert!(
            text.contains("viewers 2   3.50 Mbit/s   410 packets/s"),
            "{text}"
        );
        assert!(text.contains("top sessions (2 of 2)"), "{text}");
        let fast = text.find("00000000000000BB").unwrap();
        let slow = text.find("00000000000000AA").unwrap();
        assert!(fast < slow, "sorted by bitrate:\n{text}");
        assert!(text.contains("1m01s"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("rtt") && l.contains(" - ")),
            "an empty distribution shows '-':\n{text}"
        );
        // Missing figures show as '-', never as a panic.
        let empty = render("http://x", &json!({}), &json!({}), &json!({}), 0);
        assert!(empty.contains("viewers -"), "{empty}");
        assert!(
            !empty.contains("sources"),
            "no sources, no section:\n{empty}"
        );
        assert!(!text.contains("publishers"), "an older server:\n{text}");
    }

    proptest::proptest! {
        /// Whatever a server answers for a source (any name, any numbers, wrong types), the
        /// sources section renders without a panic and names the source's row.
        #[test]
        fn any_source_renders(
            name in "\\PC{0,40}",
            state in "\\PC{0,12}",
            x in proptest::prelude::any::<f64>(),
            n in proptest::prelude::any::<u64>(),
        ) {
            let ingest = json!({"ingest": [
                {"name": name, "protocol": 7, "state": state, "bitrate_bps": x,
                 "frames_per_sec": n, "lost": x, "jitter_ms": "x",
                 "since_keyframe_secs": x, "viewers": n, "since_secs": x},
                {}, null, [1, 2],
            ]});
            let text = render("http://x", &json!({}), &json!({}), &ingest, 0);
            proptest::prop_assert!(text.contains("sources (4)"), "{}", text);
        }
    }

    #[test]
    fn renders_sources_with_their_state_and_figures() {
        let stats = json!({"publishers": 1, "ingest_bitrate_bps": 2.5e6});
        let ingest = json!({"ingest": [
            {"name": "live/a-very-long-camera-name", "protocol": "rtsp", "state": "online",
             "bitrate_bps": 2.5e6, "frames_per_sec": 30.0, "lost": 3, "jitter_ms": 1.25,
             "since_keyframe_secs": 0.4, "viewers": 7, "since_secs": 65.0},
            {"name": "live/b", "protocol": "rtmp", "state": "waiting",
             "bitrate_bps": 0.0, "frames_per_sec": 0.0, "lost": 0, "jitter_ms": 0.0,
             "since_keyframe_secs": null, "viewers": 0, "since_secs": 2.0},
        ]});
        let text = render("http://x", &stats, &json!({}), &ingest, 0);
        assert!(text.contains("publishers 1   ingest 2.50 Mbit/s"), "{text}");
        assert!(text.contains("sources (2)"), "{text}");
        let a = text
            .lines()
            .find(|l| l.starts_with("live/a-very-long-c…"))
            .unwrap_or_else(|| panic!("{text}"));
        for cell in [
            "rtsp", "online", "2.50", "30", "3", "1.25", "0.4s", "7", "1m05s",
        ] {
            assert!(a.split_whitespace().any(|c| c == cell), "{cell} in {a}");
        }
        let b = text.lines().find(|l| l.starts_with("live/b")).unwrap();
        assert!(b.contains("rtmp") && b.contains("waiting"), "{b}");
        assert!(
            b.split_whitespace().any(|c| c == "-"),
            "no keyframe yet: {b}"
        );
    }
}
