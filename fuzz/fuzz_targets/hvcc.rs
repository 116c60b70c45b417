//! Fuzz target: `shardcast::media::mp4::fuzz_parse_hvcc` on arbitrary bytes (the `hvcC` record parser: no panic, no overflow, no out-of-bounds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::media::mp4::fuzz_parse_hvcc(data);
});
