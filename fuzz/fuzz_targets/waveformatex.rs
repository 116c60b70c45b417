//! Fuzz target: `shardcast::media::g711::fuzz_parse_waveformatex` on arbitrary bytes (the
//! Matroska `A_MS/ACM` WAVEFORMATEX parser and the G.711 block splitting: no panic, no
//! overflow, pieces whole sample frames that tile the block).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::media::g711::fuzz_parse_waveformatex(data);
});
