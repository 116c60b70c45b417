//! Fuzz target: `shardcast::rtsp::tunnel::fuzz_tunnel` — the RTSP-over-HTTP first-line
//! classifier, HTTP head parser, pairing rules and incremental base64 decoder on arbitrary
//! bytes (first byte: where the body is split). No panic, no overflow, output bounded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::rtsp::tunnel::fuzz_tunnel(data);
});
