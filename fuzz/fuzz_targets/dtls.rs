//! Fuzz target: `shardcast::webrtc::dtls::fuzz_dtls` on arbitrary bytes (datagrams into a fresh DTLS server, its outputs and timers drained: no panic, no unbounded queue).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::webrtc::dtls::fuzz_dtls(data);
});
