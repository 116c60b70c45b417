//! Crate-level tests. Replays the fuzz seed corpora (`fuzz/seeds/<target>/`) and any crash reproducers committed
//! under `fuzz/regressions/<target>/` through the same `fuzz_*` entry points the cargo-fuzz
//! targets call, on stable, in every `cargo test`.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            run(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no seeds for {target}");
}

#[test]
fn fuzz_seeds_replay_without_panics() {
    replay("rtsp_request", crate::rtsp::parse::fuzz_parse_request);
    replay("transport", crate::rtsp::transport::fuzz_transport);
    replay("range", crate::rtsp::range::fuzz_range);
    replay("uri", crate::rtsp::uri::fuzz_uri);
    replay("mp4_index", crate::media::mp4::fuzz_parse_mp4);
    replay("mpegts_index", crate::media::ts::fuzz_parse_ts);
    replay("mkv_index", crate::media::mkv::fuzz_parse_mkv);
    replay("packetize", crate::packetize::fuzz_packetize);
    replay("rtcp", crate::wire::rtcp::fuzz_rtcp);
    replay("depacketize", crate::ingest::depacketize::fuzz_depacketize);
    replay("announce", crate::ingest::sdp::fuzz_announce);
    replay("stun", crate::webrtc::stun::fuzz_stun);
    replay("srtp_unprotect", crate::webrtc::srtp::fuzz_srtp_unprotect);
    replay("webrtc_offer", crate::webrtc::sdp::fuzz_offer);
    replay("dtls", crate::webrtc::dtls::fuzz_dtls);
}
