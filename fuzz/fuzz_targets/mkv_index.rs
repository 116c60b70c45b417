//! Fuzz target: `shardcast::media::mkv::fuzz_parse_mkv` on arbitrary bytes (the Matroska/WebM
//! indexer: no panic, no overflow, no sample outside the input).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::media::mkv::fuzz_parse_mkv(data);
});
