//! Fuzz target: `shardcast::rtsp::uri::fuzz_uri` on arbitrary bytes (no panic, no overflow, no out-of-bounds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::rtsp::uri::fuzz_uri(data);
});
