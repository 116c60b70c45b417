//! Publishers for the ingest tests: ffmpeg's RTSP muxer publishing a file in real time, and
//! the wait until the server plays what it publishes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{RawRtsp, Server};

/// The path of a bundled test file (`tests/media/NAME`).
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
