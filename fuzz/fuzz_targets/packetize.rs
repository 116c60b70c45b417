//! Fuzz target: `shardcast::packetize::fuzz_packetize` on arbitrary bytes (no panic, no overflow, no out-of-bounds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::packetize::fuzz_packetize(data);
});
