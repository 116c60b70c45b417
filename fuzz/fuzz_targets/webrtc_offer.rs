//! Fuzz target: `shardcast::webrtc::sdp::fuzz_offer` on arbitrary bytes: parse an SDP offer,
//! negotiate it as a WHEP viewer (H.264 + Opus) and as a WHIP publisher, write the answers
//! (no panic, no overflow, no unbounded growth).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::webrtc::sdp::fuzz_offer(data);
});
