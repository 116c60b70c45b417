//! Fuzz target: `shardcast::rtsp::parse::fuzz_parse_request` on arbitrary bytes (no panic, no overflow, no out-of-bounds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::rtsp::parse::fuzz_parse_request(data);
});
