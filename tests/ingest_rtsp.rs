//! Issue 16: encoders publish over RTSP (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD) and viewers
//! play the stream through the shards while it is published. The publishers and players are
//! independent implementations started by the tests: ffmpeg's RTSP muxer (`-f rtsp`, UDP and
//! TCP interleaved) and GStreamer's `rtspclientsink`; ffmpeg, GStreamer and retina play.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::players::ffmpeg_decode_without_warnings;
use common::{RawRtsp, Server};

fn media(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/media")
        .join(name)
        .display()
        .to_string()
}

/// ffmpeg publishing `file` in real time to `url` over `transport` (`udp` or `tcp`).
fn ffmpeg_publish(file: &str, url: &str, transport: &str) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-i",
            file,
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            transport,
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (installed by .ci/run)")
}

/// Waits until DESCRIBE of `name` answers 200 (the publisher is live); the SDP.
fn wait_published(server: &Server, name: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let mut c = RawRtsp::connect(server.addr);
        let r = c.request(
            "DESCRIBE",
            &server.url(name),
            &[("Accept", "application/sdp")],
        );
        if r.status == 200 {
            return String::from_utf8_lossy(&r.body).into_owned();
        }
        assert!(
            start.elapsed() < limit,
            "{name} not published within {limit:?} (last status {})",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn publish_and_play(transport: &str) {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let url = server.url("live/cam1");
    let mut publisher = ffmpeg_publish(&media("sample.mp4"), &url, transport);
    let sdp = wait_published(&server, "live/cam1", Duration::from_secs(10));
    assert!(sdp.contains("H264/90000"), "{sdp}");
    assert!(sdp.contains("mpeg4-generic"), "{sdp}");
    // The viewer joins at the latest keyframe and plays until the publisher's end: the
    // stream waits the publisher timeout (1 s) for it to return, then sends BYE.
    let decoded = ffmpeg_decode_without_warnings(&url, transport);
    eprintln!(
        "{transport}: {} frames, {:.2} s",
        decoded.frames, decoded.end_secs
    );
    let status = publisher.wait().unwrap();
    assert!(status.success(), "the publisher failed: {status}");
    // sample.mp4 is 10 s at 30 fps; the viewer joined within the first seconds.
    assert!(
        decoded.frames >= 150,
        "{} frames decoded over {transport} ({:.1} s)",
        decoded.frames,
        decoded.end_secs
    );
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("publishing") && l.contains("live/cam1")),
        "{lines:#?}"
    );
}

#[test]
fn ffmpeg_publishes_over_tcp_and_ffmpeg_plays_every_frame_after_the_join() {
    publish_and_play("tcp");
}

#[test]
fn ffmpeg_publishes_over_udp_and_ffmpeg_plays_every_frame_after_the_join() {
    publish_and_play("udp");
}
