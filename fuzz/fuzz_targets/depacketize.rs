//! Fuzz target: `shardcast::ingest::depacketize::fuzz_depacketize` on arbitrary bytes (no panic, no overflow, frames bounded).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::ingest::depacketize::fuzz_depacketize(data);
});
