//! Fuzz target: `shardcast::media::ts::fuzz_parse_ts` on arbitrary bytes (the MPEG-TS indexer: no panic, no overflow, no out-of-bounds; runs of whole packets inside the data, monotonic times).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::media::ts::fuzz_parse_ts(data);
});
