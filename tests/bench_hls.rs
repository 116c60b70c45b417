//! `shardcast bench --protocol hls` against nginx (an independent HTTP server, `sendfile on`)
//! serving the bundled sample cut into fMP4 HLS by ffmpeg, VOD and live (ffmpeg writing a
//! sliding window in real time): 20 viewers for 10 s must play with zero stalls, fetch
//! about the media's bit rate (ffprobe's figure, not ours) times the time they played, and
//! report a time to first segment and nginx's CPU. It fails if the viewers' HTTP client,
//! the playlist walk, the playback model, the nginx setup or the report format breaks —
//! e.g. a viewer that fetched too little stalls, one that ran ahead of real time exceeds
//! the byte bound.
//!
//! Needs nginx and ffmpeg (`scripts/install-test-deps.sh`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

const VIEWERS: u64 = 20;

/// The sample's overall bit rate in bit/s, as ffprobe reads it.
fn ffprobe_bit_rate(file: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=bit_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs (scripts/install-test-deps.sh)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ffprobe prints the bit rate")
}

fn run_bench(live: bool) -> serde_json::Value {
    assert!(
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .iter()
            .any(|p| Path::new(p).exists()),
        "nginx is missing: run scripts/install-test-deps.sh"
    );
    let out = std::env::temp_dir().join(format!(
        "shardcast-bench-hls-{}-{}",
        std::process::id(),
        if live { "live" } else { "vod" }
    ));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.args([
        "bench",
        "--protocol",
        "hls",
        "--against",
        "nginx",
        "--hls-media",
        "tests/media/sample.mp4",
        "--viewers",
        &VIEWERS.to_string(),
        "--duration",
        "10s",
        "--quiet",
        "--out",
    ])
    .arg(&out);
    if live {
        cmd.arg("--hls-live");
    }
    let (ok, stdout, stderr) = common::run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(ok, "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("| config |") && stdout.contains("TTFS"),
        "{stdout}"
    );
    let json = std::fs::read_to_string(out.join("bench.json")).expect("bench.json written");
    let html = std::fs::read_to_string(out.join("bench.html")).expect("bench.html written");
    assert!(
        html.contains("Server CPU per delivered MB"),
        "the HTML plots CPU per MB"
    );
    let _ = std::fs::remove_dir_all(&out);
    serde_json::from_str(&json).expect("bench.json parses")
}

/// Checks one nginx run; `mode` is how the viewers followed the playlist.
fn check(report: &serde_json::Value, mode: &str) {
    let bit_rate = ffprobe_bit_rate(Path::new("tests/media/sample.mp4"));
    let cfg = &report["configs"][0];
    assert_eq!(cfg["label"], "nginx");
    assert!(cfg["error"].is_null(), "not measured: {}", cfg["error"]);
    let run = &cfg["runs"][0];
    let hls = &run["hls"];
    assert_eq!(hls["mode"], mode, "{hls}");
    assert_eq!(
        run["playing"], VIEWERS,
        "every viewer got media: {run:.600}"
    );
    assert_eq!(
        hls["stalls"], 0,
        "no stalls on loopback at 20 viewers: {hls}"
    );
    assert_eq!(hls["transport_errors"], 0, "{hls}");
    assert!(
        hls["http_errors"].as_object().is_some_and(|m| m.is_empty()),
        "{hls}"
    );
    let ttfs = &hls["ttfs"];
    assert_eq!(ttfs["count"], VIEWERS);
    assert!(
        ttfs["p50_ms"].as_f64().unwrap() > 0.0 && ttfs["p99_ms"].as_f64().unwrap() < 2000.0,
        "TTFS measured: {ttfs}"
    );
    // Bytes ≈ bit rate × time: a viewer plays from its first segment to the end of the run
    // and may hold up to 3 segments (6 s) ahead, plus the one in flight; the joining
    // viewer of a live stream starts 3 segments behind the edge, the same bound.
    let played = run["start_secs"].as_f64().unwrap() + run["steady_secs"].as_f64().unwrap();
    let per_viewer = run["bytes"].as_f64().unwrap() / VIEWERS as f64 * 8.0;
    let low = bit_rate * (played - 2.5) * 0.9;
    let high = bit_rate * (played + 8.5) * 1.1;
    assert!(
        per_viewer >= low && per_viewer <= high,
        "{per_viewer:.0} bits per viewer over {played:.1} s at {bit_rate:.0} bit/s: not within [{low:.0}, {high:.0}]"
    );
    assert!(
        hls["server_cpu_ms_per_mb"].as_f64().is_some(),
        "nginx's CPU (master + workers) was read: {hls}"
    );
    assert!(hls["requests_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn hls_viewers_play_nginx_vod_without_stalls() {
    let report = run_bench(false);
    check(&report, "vod");
    let hls = &report["configs"][0]["runs"][0]["hls"];
    // 10 s of playing a 10 s clip with ≤ 3 segments of read-ahead: it looped at least once.
    assert!(hls["segments"].as_u64().unwrap() >= VIEWERS * 6, "{hls}");
}

#[test]
fn hls_viewers_follow_nginx_live_without_stalls() {
    let report = run_bench(true);
    check(&report, "live");
    let hls = &report["configs"][0]["runs"][0]["hls"];
    // Plain live HLS reloads the playlist every half target duration (1 s here).
    let playlists = hls["playlists"].as_u64().unwrap();
    assert!(playlists >= VIEWERS * 8, "playlist reloads: {hls}");
    assert_eq!(hls["blocking_reloads"], 0, "nginx cannot block: {hls}");
}
