//! `GET /metrics`: the Prometheus text exposition format, version 0.0.4.
//!
//! Each family has `# HELP` and `# TYPE` lines; label values escape `\`, `"` and newline
//! (the format's only escapes). Counters end in `_total`; jitter, RTT and pacing lateness
//! are summaries in seconds whose quantiles cover the hub's rolling window (30–60 s; 5–10 s
//! for pacing lateness) and whose `_sum`/`_count` run since start.

use std::fmt::Write;

use super::{IngestInfo, MetricsSnapshot};
use crate::stats::window::Quantiles;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: Prometheus spells non-finite numbers `NaN`, `+Inf`, `-Inf`.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", num(value));
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn summary(&mut self, name: &str, help: &str, q: &Quantiles, count: u64, sum_secs: f64) {
        self.family(name, "summary", help);
        for (label, ms) in [("0.5", q.p50), ("0.95", q.p95), ("0.99", q.p99)] {
            // No observation in the window: the quantile is unknown, not zero.
            let v = if q.count == 0 { f64::NAN } else { ms / 1000.0 };
            self.sample(name, &[("quantile", label)], v);
        }
        self.sample(&format!("{name}_sum"), &[], sum_secs);
        self.sample(&format!("{name}_count"), &[], count as f64);
    }
}

/// The `shardcast_ingest_*` families: one sample per ingested stream, labelled by `stream`
/// and `protocol`. Counters count since the stream's log was created, except packets and
/// losses, which count the current publisher's RTP (they restart with a new publisher, a
/// counter reset to Prometheus).
fn ingest_families(o: &mut Out, m: &MetricsSnapshot) {
    type Get = fn(&IngestInfo) -> Option<f64>;
    let families: [(&str, &str, &str, Get); 10] = [
        (
            "shardcast_ingest_online",
            "gauge",
            "1 while a publisher sends the stream, 0 while the stream waits for it to return.",
            |i| Some(if i.source.state == "online" { 1.0 } else { 0.0 }),
        ),
        (
            "shardcast_ingest_bytes_total",
            "counter",
            "Bytes of the frames received from the stream's publishers.",
            |i| Some(i.bytes as f64),
        ),
        (
            "shardcast_ingest_frames_total",
            "counter",
            "Frames (access units) received from the stream's publishers.",
            |i| Some(i.frames as f64),
        ),
        (
            "shardcast_ingest_keyframes_total",
            "counter",
            "Video keyframes received from the stream's publishers.",
            |i| Some(i.keyframes as f64),
        ),
        (
            "shardcast_ingest_packets_total",
            "counter",
            "RTP packets received from the current RTSP publisher.",
            |i| Some(i.packets as f64),
        ),
        (
            "shardcast_ingest_packets_lost_total",
            "counter",
            "RTP packets lost on the way in from the current publisher: sequence gaps (RFC 3550 A.3).",
            |i| Some(i.lost as f64),
        ),
        (
            "shardcast_ingest_jitter_seconds",
            "gauge",
            "Interarrival jitter of the publisher's RTP, worst track (RFC 3550 6.4.1, A.8).",
            |i| Some(i.jitter_ms / 1000.0),
        ),
        (
            "shardcast_ingest_seconds_since_keyframe",
            "gauge",
            "Seconds since the last video keyframe arrived (absent before the first).",
            |i| i.since_keyframe_secs,
        ),
        (
            "shardcast_ingest_viewers",
            "gauge",
            "Viewers of the ingested stream now.",
            |i| Some(i.viewers as f64),
        ),
        (
            "shardcast_ingest_reader_skips_total",
            "counter",
            "Viewers that fell behind the stream's live log and jumped to its live edge.",
            |i| Some(i.reader_skips as f64),
        ),
    ];
    for (name, kind, help, get) in families {
        o.family(name, kind, help);
        for i in &m.ingest {
            if let Some(v) = get(i) {
                o.sample(
                    name,
                    &[("stream", &i.name), ("protocol", i.source.protocol)],
                    v,
                );
            }
        }
    }
    let name = "shardcast_ingest_frames_dropped_total";
    o.family(
        name,
        "counter",
        "Frames received but not written to the live log, by reason.",
    );
    for i in &m.ingest {
        for (reason, n) in &i.dropped {
            o.sample(
                name,
                &[
                    ("stream", &i.name),
                    ("protocol", i.source.protocol),
                    ("reason", reason),
                ],
                *n as f64,
            );
        }
    }
}

/// Renders the whole exposition.
pub fn render(m: &MetricsSnapshot) -> String {
    let s = &m.stats;
    let t = &s.totals;
    let mut o = Out(String::with_capacity(4096));
    o.one(
        "shardcast_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        s.uptime_secs,
    );
    o.one(
        "shardcast_viewers",
        "gauge",
        "Viewers now: RTSP sessions being streamed and HLS viewers served in the last 30 s.",
        s.viewers as f64,
    );
    o.family(
        "shardcast_viewers_by_stream",
        "gauge",
        "Sessions being streamed now, per stream.",
    );
    for st in &s.streams {
        o.sample(
            "shardcast_viewers_by_stream",
            &[("stream", &st.name)],
            st.viewers as f64,
        );
    }
    o.one(
        "shardcast_publishers",
        "gauge",
        "Publishers sending now (ingested streams online).",
        s.publishers as f64,
    );
    o.one(
        "shardcast_packets_per_second",
        "gauge",
        "RTP packets sent per second over the last second.",
        s.packets_per_sec,
    );
    o.one(
        "shardcast_loss_ratio",
        "gauge",
        "Current loss reported by viewers (RTCP fraction lost), weighted by packet rate, 0..1.",
        s.loss_pct / 100.0,
    );
    let shard_family = |o: &mut Out, name: &str, help: &str, f: &dyn Fn(usize) -> u64| {
        o.family(name, "counter", help);
        for i in 0..m.shards.len() {
            o.sample(name, &[("shard", &i.to_string())], f(i) as f64);
        }
    };
    shard_family(
        &mut o,
        "shardcast_rtp_packets_sent_total",
        "RTP packets sent, per shard.",
        &|i| m.shards[i].packets,
    );
    shard_family(
        &mut o,
        "shardcast_rtp_bytes_sent_total",
        "RTP bytes (header and payload) sent, per shard.",
        &|i| m.shards[i].bytes,
    );
    shard_family(
        &mut o,
        "shardcast_send_syscalls_total",
        "Send system calls (io_uring_enter for io_uring), per shard.",
        &|i| m.shards[i].syscalls,
    );
    let counters: [(&str, &str, u64); 30] = [
        (
            "shardcast_hls_requests_total",
            "HLS requests answered by the shards (every status).",
            t.hls_requests,
        ),
        (
            "shardcast_hls_bytes_total",
            "HLS body bytes written (playlists, init segments, segments, parts).",
            t.hls_bytes,
        ),
        (
            "shardcast_hls_late_requests_total",
            "HLS segment or part requests for media that had left the live window.",
            t.hls_late_requests,
        ),
        (
            "shardcast_tcp_packets_total",
            "RTP packets written to TCP connections (interleaved).",
            t.tcp_packets,
        ),
        (
            "shardcast_tcp_sends_total",
            "Gathered sendmsg calls carrying TCP media (one per viewer per pass).",
            t.tcp_sends,
        ),
        (
            "shardcast_tcp_backlogged_bytes_total",
            "Media bytes that waited in a TCP viewer's user-space backlog.",
            t.tcp_backlogged_bytes,
        ),
        (
            "shardcast_gso_sends_total",
            "UDP GSO sends (one syscall entry carrying several datagrams).",
            t.gso_sends,
        ),
        (
            "shardcast_send_errors_total",
            "Sends the kernel refused.",
            t.send_errors,
        ),
        (
            "shardcast_rtcp_received_total",
            "RTCP packets received (UDP and interleaved).",
            t.rtcp_received,
        ),
        (
            "shardcast_rtcp_invalid_total",
            "RTCP packets rejected by validation (RFC 3550 A.2).",
            t.rtcp_invalid,
        ),
        (
            "shardcast_srtcp_dropped_total",
            "SRTCP from RTSPS viewers dropped: bad tag, replay, or no client key (RFC 3711 §3.4).",
            t.srtcp_dropped,
        ),
        (
            "shardcast_webrtc_datagrams_total",
            "Datagrams read from the shards' WebRTC ports (STUN, DTLS, SRTP; RFC 7983).",
            t.webrtc_received,
        ),
        (
            "shardcast_webrtc_dropped_total",
            "WebRTC datagrams dropped: no session's address or ICE username, or no protocol of the port.",
            t.webrtc_dropped,
        ),
        (
            "shardcast_webrtc_refused_total",
            "WebRTC datagrams a session refused (wrong ICE password, failed DTLS, SRTCP with a bad tag or replayed).",
            t.webrtc_refused,
        ),
        (
            "shardcast_webrtc_srtcp_total",
            "SRTCP packets from WebRTC viewers that decrypted and validated (RFC 3711 §3.4).",
            t.webrtc_srtcp,
        ),
        (
            "shardcast_webrtc_keyframe_requests_total",
            "Keyframe requests from WebRTC viewers honoured (PLI RFC 4585 §6.3.1, FIR RFC 5104 §4.3.1).",
            t.webrtc_keyframe_requests,
        ),
        (
            "shardcast_webrtc_keyframe_requests_ignored_total",
            "Keyframe requests ignored: within 500 ms of the viewer's last honoured one.",
            t.webrtc_keyframe_requests_ignored,
        ),
        (
            "shardcast_webrtc_nacked_total",
            "Sequence numbers WebRTC viewers reported lost (generic NACK, RFC 4585 §6.2.1).",
            t.webrtc_nacked,
        ),
        (
            "shardcast_webrtc_nacks_served_total",
            "NACKed packets sent again from the session's history.",
            t.webrtc_nacks_served,
        ),
        (
            "shardcast_webrtc_nacks_missed_total",
            "NACKed packets not sent again (past the history, unknown SSRC, or a live log's).",
            t.webrtc_nacks_missed,
        ),
        (
            "shardcast_rtcp_unknown_source_total",
            "RTCP packets from addresses that are no session's.",
            t.rtcp_unknown_source,
        ),
        (
            "shardcast_rtcp_unknown_ssrc_total",
            "RTCP report blocks naming an SSRC that is not the session's.",
            t.rtcp_unknown_ssrc,
        ),
        (
            "shardcast_rtcp_byes_total",
            "Viewers that ended their session with RTCP BYE.",
            t.rtcp_byes,
        ),
        (
            "shardcast_rtcp_byes_refused_total",
            "RTCP BYEs ignored: they named no SSRC the viewer had reported from before.",
            t.rtcp_byes_refused,
        ),
        (
            "shardcast_nat_keepalives_total",
            "Datagrams from viewers that are not RTCP (NAT keep-alives), counted as liveness.",
            t.nat_keepalives,
        ),
        (
            "shardcast_live_packetizations_total",
            "Live-channel samples packetized (once per shard for all of a channel's viewers).",
            t.live_packetizations,
        ),
        (
            "shardcast_slow_viewers_dropped_total",
            "TCP-interleaved viewers cut off for not reading.",
            t.slow_viewers_dropped,
        ),
        (
            "shardcast_unreachable_viewers_total",
            "Viewers whose port answered ICMP port unreachable.",
            t.unreachable_viewers,
        ),
        (
            "shardcast_shard_reports_dropped_total",
            "Shard statistics reports dropped because the control thread's queue was full.",
            t.reports_dropped,
        ),
        (
            "shardcast_sessions_ended_by_api_total",
            "Sessions ended through DELETE /api/v1/sessions/{id}.",
            m.sessions_ended_by_api,
        ),
    ];
    for (name, help, v) in counters {
        o.one(name, "counter", help, v as f64);
    }
    o.one(
        "shardcast_rtsp_auth_failures_total",
        "counter",
        "RTSP requests with wrong credentials (since start or the last SIGHUP reload).",
        m.auth_failures as f64,
    );
    o.one(
        "shardcast_rtsp_auth_throttled_total",
        "counter",
        "RTSP authentication attempts queued or refused by the per-address and per-user-name backoff (since start or the last SIGHUP reload).",
        m.auth_throttled as f64,
    );
    o.one(
        "shardcast_rtsp_token_refusals_total",
        "counter",
        "RTSP requests refused for a missing or invalid play token.",
        m.token_refusals as f64,
    );
    o.family(
        "shardcast_rtsp_refused_total",
        "counter",
        "RTSP requests (and connections over a limit) refused, by status code; counted in full even when their log lines are suppressed.",
    );
    for (status, n) in &m.rtsp_refused {
        o.sample(
            "shardcast_rtsp_refused_total",
            &[("status", &status.to_string())],
            *n as f64,
        );
    }
    o.one(
        "shardcast_log_lines_suppressed_total",
        "counter",
        "Log lines not written because their client address was over its log budget.",
        m.log_lines_suppressed as f64,
    );
    o.one(
        "shardcast_ingest_unrouted_total",
        "counter",
        "UDP datagrams on the ingest ports from addresses no publisher set up (dropped).",
        m.ingest_unrouted as f64,
    );
    o.one(
        "shardcast_whip_refused_total",
        "counter",
        "Datagrams refused from WHIP publishers (wrong ICE password, bad SRTP tag, replay, unaccepted payload type).",
        m.whip_refused as f64,
    );
    ingest_families(&mut o, m);
    let [jitter, rtt, lateness] = m.distributions;
    o.summary(
        "shardcast_jitter_seconds",
        "Interarrival jitter reported by viewers (RTCP, RFC 3550 6.4.1).",
        &s.jitter_ms,
        jitter.1,
        jitter.2,
    );
    o.summary(
        "shardcast_rtt_seconds",
        "Round-trip time to viewers from RTCP LSR/DLSR (RFC 3550 6.4.1).",
        &s.rtt_ms,
        rtt.1,
        rtt.2,
    );
    o.summary(
        "shardcast_pacing_lateness_seconds",
        "How long after its due time each RTP packet was handed to the kernel.",
        &s.lateness_ms,
        lateness.1,
        lateness.2,
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ShardTotals;
    use crate::stats::hub::Hub;
    use crate::stats::SessionMeta;
    use crate::stats::ShardCounters;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn exposition_has_help_type_and_samples() {
        let t0 = Instant::now();
        let mut hub = Hub::new(vec![Arc::new(ShardCounters::default())], t0);
        hub.session_started(SessionMeta {
            id: 7,
            handle: 8,
            stream: "we\"ird\\name".into(),
            peer: "127.0.0.1:1".parse().unwrap(),
            transport: crate::stats::Transport::Udp,
            shard: 0,
            track_kinds: vec!["video"],
        });
        let snap = MetricsSnapshot {
            stats: hub.stats(t0),
            shards: vec![ShardTotals {
                packets: 10,
                bytes: 1000,
                syscalls: 2,
            }],
            distributions: hub.distribution_totals(),
            auth_failures: 3,
            auth_throttled: 5,
            token_refusals: 4,
            sessions_ended_by_api: 0,
            rtsp_refused: vec![(404, 5), (454, 6)],
            log_lines_suppressed: 7,
            ingest_unrouted: 8,
            whip_refused: 9,
            ingest: vec![IngestInfo {
                name: "live/\"cam\"".into(),
                source: crate::http::SourceInfo {
                    protocol: "rtsp",
                    state: "online",
                    peer: "127.0.0.1:4000".into(),
                    since_secs: 3.0,
                },
                codecs: vec!["H.264"],
                bitrate_bps: 1e6,
                frames_per_sec: 30.0,
                frames: 300,
                bytes: 125_000,
                keyframes: 5,
                since_keyframe_secs: Some(0.5),
                packets: 900,
                lost: 2,
                jitter_ms: 1.5,
                dropped: [("incomplete", 1), ("flood", 0)].into_iter().collect(),
                reader_skips: 0,
                viewers: 3,
            }],
        };
        let text = render(&snap);
        assert!(text.contains("# TYPE shardcast_viewers gauge\nshardcast_viewers 1\n"));
        assert!(text.contains(r#"shardcast_viewers_by_stream{stream="we\"ird\\name"} 1"#));
        assert!(text.contains("shardcast_rtp_packets_sent_total{shard=\"0\"} 10\n"));
        assert!(text.contains("shardcast_rtsp_auth_failures_total 3\n"));
        assert!(text.contains("shardcast_rtsp_refused_total{status=\"454\"} 6\n"));
        assert!(text.contains("shardcast_log_lines_suppressed_total 7\n"));
        assert!(text.contains("shardcast_ingest_unrouted_total 8\n"));
        assert!(text.contains("shardcast_whip_refused_total 9\n"));
        assert!(text.contains("shardcast_rtsp_auth_throttled_total 5\n"));
        assert!(text.contains("shardcast_jitter_seconds{quantile=\"0.99\"} NaN\n"));
        assert!(text.contains("shardcast_jitter_seconds_count 0\n"));
        let labels = r#"{stream="live/\"cam\"",protocol="rtsp"}"#;
        for line in [
            format!("shardcast_ingest_online{labels} 1\n"),
            format!("shardcast_ingest_bytes_total{labels} 125000\n"),
            format!("shardcast_ingest_packets_lost_total{labels} 2\n"),
            format!("shardcast_ingest_jitter_seconds{labels} 0.0015\n"),
            format!("shardcast_ingest_seconds_since_keyframe{labels} 0.5\n"),
            format!("shardcast_ingest_viewers{labels} 3\n"),
            concat!(
                r#"shardcast_ingest_frames_dropped_total{stream="live/\"cam\"",protocol="rtsp",reason="incomplete"} 1"#,
                "\n"
            )
            .to_owned(),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        // Every sample line belongs to a family announced before it.
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name
                    .strip_suffix("_sum")
                    .or_else(|| name.strip_suffix("_count"))
                    .filter(|b| typed.contains(*b))
                    .unwrap_or(name);
                assert!(typed.contains(base), "{line}");
            }
        }
    }
}
