//! `GET /metrics` parses as the Prometheus text format (crate prometheus-parse), carries the
//! documented families, counts a real viewer (retina) while it plays, and follows a publisher
//! (ffmpeg over RTMP) in the `shardcast_ingest_*` families.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::retina_play::{spawn_player, PlayerEvent};
use common::Server;
use prometheus_parse::{Sample, Scrape, Value};
use retina::client::Transport;

fn scrape(server: &Server) -> Scrape {
    let r = server.http_get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    // Every sample line belongs to a family with HELP and TYPE (the parser is lenient there).
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let base = ["_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| text.contains(&format!("# TYPE {b} summary")))
            .unwrap_or(name);
        assert!(text.contains(&format!("# HELP {base} ")), "HELP for {line}");
        assert!(text.contains(&format!("# TYPE {base} ")), "TYPE for {line}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

fn value(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{}: not a single value: {other:?}", s.metric),
    }
}

fn samples<'a>(scrape: &'a Scrape, name: &str) -> Vec<&'a Sample> {
    scrape.samples.iter().filter(|s| s.metric == name).collect()
}

fn one(scrape: &Scrape, name: &str) -> f64 {
    let s = samples(scrape, name);
    assert_eq!(s.len(), 1, "{name}: {s:?}");
    value(s[0])
}

#[test]
fn metrics_parse_and_count_a_playing_viewer() {
    let server = Server::start(&["--shards", "2"]);
    let idle = scrape(&server);
    assert_eq!(one(&idle, "shardcast_viewers"), 0.0);

    let player = spawn_player(server.url("sample"), Transport::Udp(Default::default()));
    match player.recv_timeout(Duration::from_secs(20)) {
        Ok(PlayerEvent::Playing) => {}
        other => panic!("retina did not start playing: {other:?}"),
    }
    // Give the shard time to send and the hub a tick to count.
    let end = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = scrape(&server);
        let sent: f64 = samples(&m, "shardcast_rtp_packets_sent_total")
            .iter()
            .map(|s| value(s))
            .sum();
        if one(&m, "shardcast_viewers") == 1.0 && sent > 0.0 {
            break m;
        }
        assert!(
            Instant::now() < end,
            "viewer never counted: {:#?}",
            m.samples
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let by_stream = samples(&m, "shardcast_viewers_by_stream");
    assert_eq!(by_stream.len(), 1, "{by_stream:?}");
    assert_eq!(by_stream[0].labels.get("stream"), Some("sample"));
    assert_eq!(value(by_stream[0]), 1.0);

    for name in [
        "shardcast_rtp_packets_sent_total",
        "shardcast_rtp_bytes_sent_total",
        "shardcast_send_syscalls_total",
    ] {
        let per_shard = samples(&m, name);
        let shards: Vec<&str> = per_shard
            .iter()
            .map(|s| s.labels.get("shard").expect("shard label"))
            .collect();
        assert_eq!(shards, vec!["0", "1"], "{name} per shard");
        assert!(
            per_shard.iter().map(|s| value(s)).sum::<f64>() > 0.0,
            "{name}"
        );
    }
    let bytes: f64 = samples(&m, "shardcast_rtp_bytes_sent_total")
        .iter()
        .map(|s| value(s))
        .sum();
    let packets: f64 = samples(&m, "shardcast_rtp_packets_sent_total")
        .iter()
        .map(|s| value(s))
        .sum();
    assert!(
        bytes > packets * 12.0,
        "every packet has at least an RTP header"
    );

    for name in [
        "shardcast_gso_sends_total",
        "shardcast_send_errors_total",
        "shardcast_rtcp_received_total",
        "shardcast_rtcp_invalid_total",
        "shardcast_rtcp_unknown_source_total",
        "shardcast_rtcp_unknown_ssrc_total",
        "shardcast_slow_viewers_dropped_total",
        "shardcast_rtsp_auth_failures_total",
    ] {
        let v = one(&m, name);
        assert!(v >= 0.0 && v.fract() == 0.0, "{name} = {v}");
    }
    assert_eq!(one(&m, "shardcast_send_errors_total"), 0.0);

    // Summaries: three quantiles plus _sum and _count.
    for name in [
        "shardcast_jitter_seconds",
        "shardcast_rtt_seconds",
        "shardcast_pacing_lateness_seconds",
    ] {
        let s = samples(&m, name);
        assert_eq!(s.len(), 1, "{name}: {s:?}");
        let Value::Summary(q) = &s[0].value else {
            panic!("{name} is a summary: {:?}", s[0].value);
        };
        let quantiles: Vec<f64> = q.iter().map(|c| c.quantile).collect();
        assert_eq!(quantiles, vec![0.5, 0.95, 0.99], "{name}");
        let count = one(&m, &format!("{name}_count"));
        let sum = one(&m, &format!("{name}_sum"));
        assert!(
            count >= 0.0 && sum >= 0.0,
            "{name}: count {count} sum {sum}"
        );
    }
    let types: HashMap<&str, &str> = [
        ("shardcast_viewers", "gauge"),
        ("shardcast_rtp_packets_sent_total", "counter"),
        ("shardcast_jitter_seconds", "summary"),
    ]
    .into();
    let text = server.http_get("/metrics").text();
    for (name, kind) in types {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}"
        );
    }
    // The page of help texts never lies about the unit: seconds, not milliseconds.
    let q = samples(&m, "shardcast_pacing_lateness_seconds");
    if let Value::Summary(q) = &q[0].value {
        for c in q {
            assert!(
                c.count.is_nan() || c.count < 10.0,
                "lateness quantile {} = {} s is implausible",
                c.quantile,
                c.count
            );
        }
    }
}

/// The sample of `name` for stream `live/m` published over RTMP.
fn ingest_value(scrape: &Scrape, name: &str) -> Option<f64> {
    samples(scrape, name)
        .into_iter()
        .find(|s| {
            s.labels.get("stream") == Some("live/m") && s.labels.get("protocol") == Some("rtmp")
        })
        .map(value)
}

#[test]
fn ingest_families_follow_an_rtmp_publisher() {
    let server = Server::start(&["--publish", "live/*", "--publisher-timeout", "1"]);
    // Announced with no sample while nobody publishes.
    let idle = scrape(&server);
    assert_eq!(one(&idle, "shardcast_publishers"), 0.0);
    for name in [
        "shardcast_ingest_online",
        "shardcast_ingest_bytes_total",
        "shardcast_ingest_frames_dropped_total",
    ] {
        assert!(samples(&idle, name).is_empty(), "{name}");
    }
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let mut publisher = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/media/sample.mp4"
        ))
        .args(["-t", "4", "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{rtmp}/live/m"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let end = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&server);
        if ingest_value(&m, "shardcast_ingest_frames_total") > Some(30.0) {
            break m;
        }
        assert!(Instant::now() < end, "no ingest samples: {:#?}", m.samples);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ingest_value(&m, "shardcast_ingest_online"), Some(1.0));
    assert_eq!(one(&m, "shardcast_publishers"), 1.0);
    assert!(ingest_value(&m, "shardcast_ingest_bytes_total") > Some(0.0));
    assert!(ingest_value(&m, "shardcast_ingest_keyframes_total") >= Some(1.0));
    // RTMP runs over TCP without RTP: no packets, no sequence gaps, no jitter.
    assert_eq!(
        ingest_value(&m, "shardcast_ingest_packets_lost_total"),
        Some(0.0)
    );
    assert_eq!(
        ingest_value(&m, "shardcast_ingest_jitter_seconds"),
        Some(0.0)
    );
    assert_eq!(ingest_value(&m, "shardcast_ingest_viewers"), Some(0.0));
    let reasons: Vec<&str> = samples(&m, "shardcast_ingest_frames_dropped_total")
        .iter()
        .map(|s| s.labels.get("reason").expect("reason label"))
        .collect();
    assert_eq!(reasons.len(), 5, "one sample per drop reason: {reasons:?}");
    assert!(reasons.contains(&"flood") && reasons.contains(&"too_large"));
    let text = server.http_get("/metrics").text();
    for (name, kind) in [
        ("shardcast_ingest_online", "gauge"),
        ("shardcast_ingest_bytes_total", "counter"),
        ("shardcast_ingest_frames_total", "counter"),
        ("shardcast_ingest_keyframes_total", "counter"),
        ("shardcast_ingest_packets_lost_total", "counter"),
        ("shardcast_ingest_jitter_seconds", "gauge"),
        ("shardcast_ingest_seconds_since_keyframe", "gauge"),
        ("shardcast_ingest_frames_dropped_total", "counter"),
        ("shardcast_ingest_viewers", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}"
        );
    }
    assert!(publisher.wait().unwrap().success());
    // Gone: the stream waits (online 0), then its samples leave the exposition.
    let end = Instant::now() + Duration::from_secs(6);
    loop {
        let m = scrape(&server);
        if ingest_value(&m, "shardcast_ingest_online").is_none() {
            assert_eq!(one(&m, "shardcast_publishers"), 0.0);
            break;
        }
        assert!(Instant::now() < end, "the stream never left /metrics");
        std::thread::sleep(Duration::from_millis(200));
    }
}
