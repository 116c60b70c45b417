//! Fuzz target: `shardcast::tls::record::fuzz_open` on arbitrary bytes (the RTSPS record
//! opener and the handshake's record framing: no panic, no unbounded buffering).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::tls::record::fuzz_open(data);
});
