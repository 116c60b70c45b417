//! Fuzz target: `shardcast::webrtc::stun::fuzz_stun` on arbitrary bytes — parse, verify
//! MESSAGE-INTEGRITY and FINGERPRINT, write success and error responses and re-parse them (no
//! panic, no overflow, no out-of-bounds; our responses always verify).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::webrtc::stun::fuzz_stun(data);
});
