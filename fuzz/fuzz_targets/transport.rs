//! Fuzz target: `shardcast::rtsp::transport::fuzz_transport` on arbitrary bytes (no panic, no overflow, no out-of-bounds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::rtsp::transport::fuzz_transport(data);
});
