//! Fuzz target: `shardcast::ingest::rtmp::fuzz_rtmp` on arbitrary bytes (a publisher's chunk stream after a fixed handshake: no panic, no overflow, no frame over the access unit limit).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast::ingest::rtmp::fuzz_rtmp(data);
});
