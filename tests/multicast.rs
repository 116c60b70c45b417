//! Multicast (RFC 2326 §12.39, RFC 8866 §5.7; docs/design/reach.md, "Multicast"): a live
//! channel configured with `--multicast NAME=GROUP:PORT` is sent once to the group, and every
//! viewer that SETUPs `multicast` is told the group instead of getting its own copy.
//!
//! Each test creates its own network namespace (`ip netns`: loopback up, multicast on, a
//! route for 224.0.0.0/4 through it) and runs the server and every client inside it, so no
//! packet reaches a real network. Creating one needs root and iproute2 (`.ci/run` runs as
//! root and installs iproute2); a test that cannot create it fails.
//!
//! Peers: ffmpeg (`-rtsp_transport udp_multicast`, and reading the DESCRIBE's SDP as a file
//! to join the group with no RTSP at all), GStreamer (`rtspsrc protocols=udp-mcast`), and a
//! raw Python viewer (`tests/fixtures/multicast_viewer.py`) that reports the server's answers
//! and what arrived on the group.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{run_with_timeout, Server};

const GROUP: &str = "239.255.0.1";
const PORT: u16 = 5000;

/// A network namespace for one test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "shardcast-mc-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns.ip(&["-n", &ns.name, "link", "set", "lo", "multicast", "on"]);
        ns.ip(&["-n", &ns.name, "route", "add", "224.0.0.0/4", "dev", "lo"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
            panic!("running ip {args:?}: {e} (iproute2 is installed by .ci/run)")
        });
        assert!(
            out.status.success(),
            "ip {args:?}: {} (network namespaces need root)",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `program` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn sample() -> String {
    format!("{}/tests/media/sample.mp4", env!("CARGO_MANIFEST_DIR"))
}

/// The server inside `ns` with live channel `ch` on the group, and the plain `sample` file.
fn start(ns: &Netns, extra: &[&str]) -> Server {
    let live = format!("ch={}", sample());
    let group = format!("ch={GROUP}:{PORT}");
    let mut args = vec!["--live", &live, "--multicast", &group];
    args.extend_from_slice(extra);
    Server::start_wrapped(&["ip", "netns", "exec", &ns.name], &args)
}

/// Runs the raw multicast viewer for `secs` with `transport` (inside `ns`); its report.
fn raw_viewer(ns: &Netns, url: &str, secs: f64, transport: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multicast_viewer.py");
    let (ok, out, err) = run_with_timeout(
        ns.command("/usr/bin/python3")
            .arg(&script)
            .arg(url)
            .arg(secs.to_string())
            .arg(transport),
        Duration::from_secs_f64(secs + 20.0),
    );
    assert!(ok, "multicast_viewer.py: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("its report {out:?}: {e}"))
}

/// The server's `totals.rtp_packets`, read from inside `ns`.
fn rtp_packets_sent(ns: &Netns, server: &Server) -> u64 {
    let url = format!("http://{}/api/v1/stats", server.http_addr());
    let (ok, out, err) = run_with_timeout(
        ns.command("/usr/bin/python3").args([
            "-c",
            "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))['totals']['rtp_packets'])",
            &url,
        ]),
        Duration::from_secs(10),
    );
    assert!(ok, "reading {url}: {err}");
    out.trim().parse().expect("a packet count")
}

#[test]
fn ffmpeg_and_gstreamer_play_from_the_group() {
    let ns = Netns::new();
    let server = start(&ns, &[]);
    let url = server.url("ch");
    // ffmpeg: every frame of 4 s decoded from the group, without a warning.
    let (ok, frames, err) = run_with_timeout(
        ns.command("ffmpeg").args([
            "-nostdin",
            "-loglevel",
            "warning",
            "-rtsp_transport",
            "udp_multicast",
            "-i",
            &url,
            "-map",
            "0:v",
            "-t",
            "6",
            "-f",
            "framecrc",
            "-",
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "ffmpeg: {err}");
    assert!(err.trim().is_empty(), "ffmpeg warned: {err}");
    let decoded = frames.lines().filter(|l| !l.starts_with('#')).count();
    // 6 s at 25 fps from ffmpeg's first packet; a group is joined mid-GOP, so decoding starts
    // at the next keyframe (every 2 s in the sample): at least 4 s of frames.
    assert!(decoded >= 90, "ffmpeg decoded {decoded} frames in 6 s");
    // GStreamer: 50 frames decoded from the group, then a clean stop (its PAUSE and
    // TEARDOWN answered 200), no error or warning.
    let (ok, out, err) = run_with_timeout(
        ns.command("gst-launch-1.0").args([
            "-q",
            "rtspsrc",
            &format!("location={url}"),
            "protocols=udp-mcast",
            "!",
            "rtph264depay",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
            "num-buffers=50",
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "gst-launch-1.0: {out}{err}");
    assert!(
        !out.contains("ERROR") && !out.contains("WARNING") && !err.contains("ERROR"),
        "GStreamer: {out}{err}"
    );
    // Both were answered the group (never their own copy), on both tracks.
    let multicast_setups = server
        .log_lines()
        .iter()
        .filter(|l| {
            l.contains("stream=ch")
                && l.contains(&format!(
                    "transport=RTP/AVP;multicast;destination={GROUP};port="
                ))
        })
        .count();
    assert_eq!(
        multicast_setups, 4,
        "two players × two tracks set up multicast"
    );
}

/// Three raw viewers on the group at once: each is told the group, the ports, the TTL and
/// the channel's SSRC; each receives the whole stream (no sequence gap) and the group's RTCP
/// sender reports; and the server sends the group once — its packet count grows at one
/// viewer's rate, not three.
#[test]
fn one_copy_serves_every_listener() {
    let ns = Netns::new();
    let server = start(&ns, &[]);
    let url = server.url("ch");
    let before = rtp_packets_sent(&ns, &server);
    let t0 = std::time::Instant::now();
    let secs = 6.0;
    let viewers: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| raw_viewer(&ns, &url, secs, "RTP/AVP;multicast")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sent = rtp_packets_sent(&ns, &server) - before;
    let elapsed = t0.elapsed().as_secs_f64();
    let mut one_viewer_rate = 0.0;
    for report in &viewers {
        assert_eq!(report["describe_status"], 200, "{report}");
        let sdp = report["sdp"].as_str().unwrap();
        assert!(
            sdp.contains(&format!(
                "m=video {PORT} RTP/AVP 96\r\nc=IN IP4 {GROUP}/1\r\n"
            )),
            "the SDP names the group: {sdp}"
        );
        for (k, setup) in report["setups"].as_array().unwrap().iter().enumerate() {
            assert_eq!(setup["status"], 200, "{report}");
            let transport = setup["transport"].as_str().unwrap();
            let rtp = PORT + 2 * k as u16;
            assert!(
                transport.starts_with(&format!(
                    "RTP/AVP;multicast;destination={GROUP};port={rtp}-{};ttl=1;ssrc=",
                    rtp + 1
                )),
                "track {k}: {transport}"
            );
        }
        assert_eq!(report["play_status"], 200, "{report}");
        assert_eq!(report["play_headers"]["range"], "npt=now-", "{report}");
        assert_eq!(report["teardown_status"], 200, "{report}");
        let mut packets = 0.0;
        for (k, track) in report["tracks"].as_array().unwrap().iter().enumerate() {
            let answered = report["setups"][k]["transport"].as_str().unwrap();
            let ssrc = answered
                .split("ssrc=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            assert_eq!(
                track["ssrcs"],
                serde_json::json!([ssrc]),
                "track {k}: {report}"
            );
            assert_eq!(track["gaps"], 0, "track {k}: no packet lost: {report}");
            assert!(
                track["sender_reports"].as_u64().unwrap() >= 1,
                "track {k}: the group's RTCP sender reports arrive: {report}"
            );
            assert_eq!(track["rtcp_ssrcs"], serde_json::json!([ssrc]), "{report}");
            packets += track["packets"].as_f64().unwrap();
        }
        // 25 fps video in ~3 packets a frame and ~8 AAC packets a second: well over 300 in 6 s.
        assert!(packets > 300.0, "{packets} packets in {secs} s: {report}");
        one_viewer_rate = packets / secs;
    }
    // One copy: what the server sent over the whole window is about one viewer's stream
    // (three unicast copies plus the group would be four times that).
    let expected_once = one_viewer_rate * elapsed;
    assert!(
        (sent as f64) < 1.5 * expected_once,
        "the server sent {sent} RTP packets in {elapsed:.1} s while one viewer received {one_viewer_rate:.0}/s: the group is not sent once"
    );
}

/// A viewer's `destination`, `port` and `ttl` never move the group (a client cannot aim it
/// at anyone, RFC 2326 §12.39): the answer names the configured group. A file without a
/// group refuses `multicast` with 461 and one log line; a unicast viewer of the multicast
/// channel still gets its own stream (ffmpeg's default transport); the SDP in the DESCRIBE
/// is enough for ffmpeg to join the group without RTSP.
#[test]
fn hostile_parameters_files_without_a_group_and_unicast_viewers() {
    let ns = Netns::new();
    let server = start(&ns, &[]);
    let hostile = raw_viewer(
        &ns,
        &server.url("ch"),
        1.0,
        "RTP/AVP;multicast;destination=127.0.0.1;port=7000-7001;ttl=127",
    );
    for setup in hostile["setups"].as_array().unwrap() {
        let transport = setup["transport"].as_str().unwrap();
        assert!(
            transport.contains(&format!("destination={GROUP};port=500"))
                && transport.contains(";ttl=1;"),
            "the configured group, ports and TTL: {transport}"
        );
    }
    let refused = raw_viewer(&ns, &server.url("sample"), 0.5, "RTP/AVP;multicast");
    assert_eq!(refused["setups"][0]["status"], 461, "{refused}");
    std::thread::sleep(Duration::from_millis(300));
    let lines: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("status=461"))
        .collect();
    let asked = refused["setups"].as_array().unwrap().len();
    assert!(
        refused["setups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == 461),
        "{refused}"
    );
    assert_eq!(
        lines.len(),
        asked,
        "one log line per refused SETUP: {lines:?}"
    );
    // ffmpeg's default transport is unicast UDP: it gets its own copy of the channel.
    let (ok, frames, err) = run_with_timeout(
        ns.command("ffmpeg").args([
            "-nostdin",
            "-loglevel",
            "warning",
            "-i",
            &server.url("ch"),
            "-map",
            "0:v",
            "-t",
            "2",
            "-f",
            "framecrc",
            "-",
        ]),
        Duration::from_secs(30),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg unicast: {err}");
    assert!(frames.lines().filter(|l| !l.starts_with('#')).count() >= 40);
    assert!(
        server.log_lines().iter().any(
            |l| l.contains("stream=ch") && l.contains("transport=RTP/AVP;unicast;client_port=")
        ),
        "ffmpeg was set up unicast"
    );
    // The DESCRIBE's SDP, saved as a file: ffmpeg joins the group from its c= and m= lines.
    let sdp = hostile["sdp"].as_str().unwrap();
    let sdp_file = std::env::temp_dir().join(format!("{}-ch.sdp", ns.name));
    std::fs::write(&sdp_file, sdp).unwrap();
    let (ok, frames, err) = run_with_timeout(
        ns.command("ffmpeg").args([
            "-nostdin",
            "-loglevel",
            "error",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
            sdp_file.to_str().unwrap(),
            "-map",
            "0:v",
            "-t",
            "4",
            "-f",
            "framecrc",
            "-",
        ]),
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_file(&sdp_file);
    assert!(ok, "ffmpeg from the SDP file: {err}");
    let decoded = frames.lines().filter(|l| !l.starts_with('#')).count();
    // Joined mid-GOP: from the next keyframe (≤ 2 s), at least 2 s of 25 fps.
    assert!(
        decoded >= 48,
        "ffmpeg decoded {decoded} frames from the SDP alone"
    );
}
