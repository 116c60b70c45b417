//! Keeps `shardcast bench --protocol whep` from rotting: 5 WebRTC viewers (str0m: WHEP POST,
//! ICE, DTLS, SRTP, RTCP) for 3 s of the bundled sample must all connect and receive video
//! and audio without loss, and the JSON report must carry the server's CPU per packet for
//! the WebRTC phase and for the RTP/UDP phase of the same run, and their ratio.
//!
//! It needs the shard side of WebRTC (ICE-lite, DTLS, SRTP send): without it the viewers
//! are answered but never connect, and this test fails with the viewers' error ("answered,
//! but ICE/DTLS did not connect within the start budget").

use std::process::Command;
use std::time::Duration;

mod common;

#[test]
fn bench_whep_five_viewers_play_without_loss_and_report_the_rtp_ratio() {
    let out = std::env::temp_dir().join(format!("shardcast-bench-whep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.args([
        "bench",
        "--protocol",
        "whep",
        "--viewers",
        "5",
        "--duration",
        "3s",
        "--quiet",
        "--out",
    ])
    .arg(&out);
    let (ok, stdout, stderr) = common::run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        ok,
        "bench --protocol whep failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let json = std::fs::read_to_string(out.join("bench.json")).expect("bench.json written");
    let report: serde_json::Value = serde_json::from_str(&json).expect("bench.json parses");
    let round = &report["rounds"][0];
    assert!(
        round["whep_error"].is_null(),
        "WHEP phase: {}",
        round["whep_error"]
    );
    assert!(
        round["rtp_error"].is_null(),
        "RTP phase: {}",
        round["rtp_error"]
    );
    let w = &round["whep"];
    assert!(
        w["first_error"].is_null(),
        "a viewer failed: {} ({stdout})",
        w["first_error"]
    );
    for key in [
        "answered",
        "connected",
        "playing",
        "with_video",
        "with_audio",
    ] {
        assert_eq!(w[key], 5, "{key}: {w:.1500}");
    }
    assert!(w["packets_video"].as_u64().unwrap_or(0) > 0, "video RTP");
    assert!(w["packets_audio"].as_u64().unwrap_or(0) > 0, "audio RTP");
    assert_eq!(w["lost"], 0, "no loss on loopback at 5 viewers: {w:.1500}");
    assert_eq!(w["deleted"], 5, "every session DELETEd");
    let cpu = w["server"]["cpu_ns_per_packet"].as_f64();
    assert!(
        cpu.is_some_and(|v| v > 0.0),
        "WebRTC CPU per packet: {w:.800}"
    );
    let rtp = &round["rtp"];
    assert_eq!(rtp["playing"], 5, "RTP viewers: {rtp}");
    assert!(
        rtp["cpu_ns_per_packet"].as_f64().is_some_and(|v| v > 0.0),
        "RTP CPU per packet: {rtp}"
    );
    assert!(
        round["cpu_ratio"].as_f64().is_some_and(|v| v > 0.0),
        "the WebRTC/RTP ratio: {round:.300}"
    );
    assert!(w["harness"]["cpu_pct"].as_f64().is_some(), "harness load");
    let html = std::fs::read_to_string(out.join("bench.html")).expect("bench.html written");
    assert!(html.contains("WebRTC"), "the page names the protocol");
    let _ = std::fs::remove_dir_all(&out);
}
