//! Issue 16 item 3 through the server: a configured source is pulled (retina) into a live log
//! and played from it. The origin is a second shardcast (a live channel of the sample) or a
//! GStreamer RTSP server (`scripts/gst-rtsp-server.py`, as a camera); the player is ffmpeg.
//! A source that refuses is retried with backoff, one log line per state change, while the
//! server serves everything else.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::publishers::media;
use common::{run_with_timeout, RawRtsp, Server};

/// ffmpeg decodes `frames` video frames of `url` over TCP; fails on any warning.
fn ffmpeg_decodes(url: &str, frames: usize) {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "warning",
                "-rtsp_transport",
                "tcp",
                "-i",
            ])
            .arg(url)
            .args(["-map", "0:v", "-frames:v"])
            .arg(frames.to_string())
            .args(["-f", "framecrc", "-"]),
        Duration::from_secs(40),
    );
    assert!(ok, "ffmpeg failed on {url}: {err}");
    assert!(err.trim().is_empty(), "ffmpeg warned on {url}:\n{err}");
    let decoded = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert_eq!(decoded, frames, "{url}");
}

/// Waits until DESCRIBE of `name` answers 200.
fn wait_online(server: &Server, name: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let mut c = RawRtsp::connect(server.addr);
        if c.request("DESCRIBE", &server.url(name), &[]).status == 200 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{name} not online within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_shardcast_relays_another_s_live_channel_and_ffmpeg_plays_it() {
    let origin = Server::start(&["--live", &format!("news={}", media("sample.mp4"))]);
    let source = format!("relay/news={}", origin.url("news"));
    let edge = Server::start_logged(&["--source", &source]);
    wait_online(&edge, "relay/news", Duration::from_secs(15));
    ffmpeg_decodes(&edge.url("relay/news"), 120);
    let lines = edge.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("source relay/news: online")),
        "{lines:#?}"
    );
}

#[test]
fn a_gstreamer_rtsp_server_camera_is_pulled_over_udp_and_played() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gst-rtsp-server.py");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Debian's python3 (python3-gi), not whatever python3 is first on PATH.
    let mut camera = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(media("sample.mp4"))
        .args(["--port", &port.to_string(), "--path", "/stream"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with gst-rtsp-server (installed by .ci/run)");
    let dir = std::env::temp_dir().join(format!("shardcast-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sources.toml");
    std::fs::write(
        &config,
        format!(
            "[sources]\ncam = {{ url = \"rtsp://127.0.0.1:{port}/stream\", transport = \"udp\" }}\n"
        ),
    )
    .unwrap();
    let edge = Server::start_logged(&["--config", config.to_str().unwrap()]);
    wait_online(&edge, "cam", Duration::from_secs(20));
    ffmpeg_decodes(&edge.url("cam"), 60);
    let _ = camera.kill();
    let _ = camera.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_on_demand_source_starts_with_its_first_viewer_and_stops_after_the_grace() {
    let origin = Server::start(&["--live", &format!("news={}", media("sample.mp4"))]);
    let dir = std::env::temp_dir().join(format!("shardcast-ondemand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sources.toml");
    std::fs::write(
        &config,
        format!(
            "[sources]\n\"lazy/news\" = {{ url = \"{}\", on-demand = true, grace = 1 }}\n",
            origin.url("news")
        ),
    )
    .unwrap();
    let edge = Server::start_logged(&["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !edge
            .log_lines()
            .iter()
            .any(|l| l.contains("source lazy/news: connecting")),
        "an on-demand source waits for a viewer"
    );
    // The first DESCRIBE starts it and is answered once it is online.
    ffmpeg_decodes(&edge.url("lazy/news"), 30);
    let start = Instant::now();
    while !edge
        .log_lines()
        .iter()
        .any(|l| l.contains("source lazy/news: stopped"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:#?}",
            edge.log_lines()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_source_that_refuses_is_retried_with_backoff_and_one_line_per_state_change() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = format!("dead=rtsp://127.0.0.1:{port}/x");
    let edge = Server::start_logged(&["--source", &source]);
    std::thread::sleep(Duration::from_secs(5));
    // Everything else is served.
    let mut c = RawRtsp::connect(edge.addr);
    assert_eq!(c.request("DESCRIBE", &edge.url("sample"), &[]).status, 200);
    assert_eq!(c.request("DESCRIBE", &edge.url("dead"), &[]).status, 404);
    let lines: Vec<String> = edge
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("source dead:"))
        .collect();
    let failures = lines.iter().filter(|l| l.contains("failed")).count();
    // 1 s, 2 s (less jitter) ...: two or three failures in 5 s, never one per poll.
    assert!((2..=4).contains(&failures), "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("refused") || l.contains("connecting")),
        "{lines:#?}"
    );
    assert!(
        lines.len() <= 2 * failures + 1,
        "one line per state change: {lines:#?}"
    );
}

/// A pulled source's sender reports give the relayed stream its clock, as an RTSP
/// publisher's do (RFC 3550 §6.4.1; issue 16 item 5): a publisher with a clock years from
/// ours publishes to the origin, the edge pulls it, and the edge's viewer gets sender
/// reports on the publisher's clock — through two servers. A report built from either
/// server's clock is off by decades.
#[test]
fn a_pulled_sources_sender_reports_reach_the_edges_viewers() {
    use common::clocked::{report_error_ms, viewer_timeline, ClockedPublisher};

    let origin = Server::start(&["--publish", "live/*"]);
    let mut publisher = ClockedPublisher::start(origin.addr, "live/sr");
    publisher.run(0, 20, 50);
    let source = format!("relay/sr={}", origin.url("live/sr"));
    let edge = Server::start_logged(&["--source", &source]);
    // Publish on while the edge connects and a viewer plays (the thread paces real time).
    let frames = 800; // ~17 s at 48 kHz
    let publishing = std::thread::spawn(move || {
        publisher.run(20, frames, 50);
        publisher
    });
    wait_online(&edge, "relay/sr", Duration::from_secs(15));
    let mut viewer = common::setup_udp_stream(edge.addr, "relay/sr", 1);
    assert_eq!(
        viewer
            .rtsp
            .request(
                "PLAY",
                &edge.url("relay/sr"),
                &[("Session", &viewer.session)]
            )
            .status,
        200
    );
    // The edge's reports follow the origin's, which arrive every 5 s: within two rounds one
    // must carry the publisher's clock, and every report after it too.
    let rtcp = &viewer.socks[0].1;
    rtcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reports: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(13);
    while Instant::now() < deadline {
        if let Ok(len) = rtcp.recv(&mut buf) {
            if len >= 28 && buf[1] == 200 {
                reports.push(buf[..len].to_vec());
            }
        }
    }
    let publisher = publishing.join().unwrap();
    let clock = publisher.clock();
    let timeline = viewer_timeline(&viewer.socks[0].0, clock, frames);
    let errors: Vec<f64> = reports
        .iter()
        .filter_map(|r| report_error_ms(r, clock, timeline.shift))
        .collect();
    let first_on_clock = errors.iter().position(|&e| e < 10.0).unwrap_or_else(|| {
        panic!("no sender report on the publisher's clock: errors {errors:?} ms")
    });
    assert!(
        errors[first_on_clock..].iter().all(|&e| e < 10.0),
        "reports left the publisher's clock: errors {errors:?} ms"
    );
    assert!(errors.len() >= 2, "{} reports", errors.len());
}
