//! Publishers run as programs for the live-ingest tests: ffmpeg's RTSP muxer (`-f rtsp`, UDP
//! or TCP interleaved) and its FLV muxer over RTMP (OBS's stand-in), and GStreamer's
//! `rtspclientsink`; plus waiting until a published stream is live.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{RawRtsp, Server};

/// The path of `tests/media/NAME`.
pub fn media(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/media")
        .join(name)
        .display()
        .to_string()
}

/// ffmpeg publishing `file` in real time to `url` over `transport` (`udp` or `tcp`).
pub fn ffmpeg_publish(file: &str, url: &str, transport: &str) -> Child {
    ffmpeg_publish_looped(file, url, transport, 0)
}

/// Like [`ffmpeg_publish`], the file played `1 + loops` times in a row (`-stream_loop`:
/// ffmpeg keeps the timestamps running across the loop points).
pub fn ffmpeg_publish_looped(file: &str, url: &str, transport: &str, loops: u32) -> Child {
    let loops = loops.to_string();
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            &loops,
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

/// ffmpeg publishing `file` in real time over RTMP (`-f flv`, as OBS does) to `url`
/// (`rtmp://ADDR/APP/KEY`).
pub fn ffmpeg_publish_rtmp(file: &str, url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv"])
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (installed by .ci/run)")
}

/// GStreamer `rtspclientsink` publishing `file` (H.264 and AAC, which it announces as
/// MP4A-LATM, RFC 6416) over `protocols` (`tcp` or `udp`), paced by its clock.
pub fn gst_publish(file: &str, url: &str, protocols: &str) -> Child {
    Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={file}"))
        .args([
            "!",
            "qtdemux",
            "name=d",
            "d.video_0",
            "!",
            "queue",
            "!",
            "h264parse",
            "!",
            "rtspclientsink",
            "name=s",
        ])
        .arg(format!("location={url}"))
        .arg(format!("protocols={protocols}"))
        .args(["d.audio_0", "!", "queue", "!", "aacparse", "!", "s."])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (scripts/install-test-deps.sh installs it)")
}

/// Waits until DESCRIBE of `name` answers 200 (the publisher is live); the SDP.
pub fn wait_published(server: &Server, name: &str, limit: Duration) -> String {
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

/// Waits for a publisher started by a test: kills it if it has not ended `limit` after the
/// call (GStreamer 1.22's `rtspclientsink` sometimes never leaves its EOS on a loaded
/// machine, with nothing left on the socket). Returns its exit status if it ended by itself,
/// and its standard error.
pub fn finish_publisher(
    mut publisher: Child,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = publisher.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = publisher.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = publisher.wait_with_output().unwrap();
    (status, String::from_utf8_lossy(&output.stderr).into_owned())
}
