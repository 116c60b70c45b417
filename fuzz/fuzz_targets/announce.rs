//! Fuzz target: `shardcast::ingest::sdp::fuzz_announce` on arbitrary bytes (no panic, bounded results).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::ingest::sdp::fuzz_announce(data);
});
