//! Fuzz target: `shardcast::webrtc::srtp::fuzz_srtp_unprotect` on arbitrary bytes — raw SRTP/SRTCP into fixed-key receivers of both profiles, and protected-then-corrupted packets (no panic, no out-of-bounds, intact packets round-trip).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::webrtc::srtp::fuzz_srtp_unprotect(data);
});
