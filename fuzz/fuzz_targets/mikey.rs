//! Fuzz target: `shardcast::rtsp::mikey::fuzz_parse` on arbitrary bytes (the MIKEY subset
//! that keys SRTP over RTSPS, and the `KeyMgmt` header reader: no panic, bounded work).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::rtsp::mikey::fuzz_parse(data);
});
