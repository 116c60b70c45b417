//! Fuzz target: `shardcast::rtsp::range::fuzz_range` on arbitrary bytes (no panic, no overflow, no out-of-bounds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::rtsp::range::fuzz_range(data);
});
