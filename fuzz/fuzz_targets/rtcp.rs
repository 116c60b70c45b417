//! Fuzz target: `shardcast::wire::rtcp::fuzz_rtcp` on arbitrary bytes (no panic, no overflow, no out-of-bounds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::wire::rtcp::fuzz_rtcp(data);
});
