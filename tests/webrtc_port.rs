//! Each shard's WebRTC port (issue 17, `docs/design/webrtc.md`): announced in the banner, one
//! per shard, and hostile to what no session asked for. Until a session's ICE check passes,
//! nothing that arrives there — a STUN request naming no session's username, DTLS records,
//! SRTP, garbage — gets an answer or reaches a session: each datagram is dropped and counted,
//! and the RTSP viewer playing meanwhile loses nothing (retina checks every frame).
//!
//! What would make it fail: a datagram answered (the probe socket reads anything), dropped
//! datagrams not counted (`totals.webrtc_dropped`), a shard busy-looping on a flood or a
//! panic (the viewer misses frames or the server dies), two shards on one port.

mod common;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::Duration;

use common::retina_play::play_all;
use common::Server;
use retina::client::{Transport, UdpTransportOptions};

/// A STUN binding request (RFC 8489 §5) whose USERNAME names no session of the server.
fn stun_request_for_nobody(txid: u8) -> Vec<u8> {
    let username = b"nobody:peer";
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    m.extend_from_slice(&[txid; 12]);
    // USERNAME (0x0006), padded to 4 bytes.
    m.extend_from_slice(&[0x00, 0x06, 0x00, username.len() as u8]);
    m.extend_from_slice(username);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    let len = (m.len() - 20) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webrtc_ports_drop_and_count_what_no_session_asked_for() {
    let server = Server::start(&["--shards", "2"]);
    assert_eq!(server.webrtc.len(), 2, "one WebRTC port per shard");
    let distinct: HashSet<_> = server.webrtc.iter().collect();
    assert_eq!(
        distinct.len(),
        2,
        "shards share no port: {:?}",
        server.webrtc
    );

    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ports = server.webrtc.clone();
    let flood = std::thread::spawn(move || {
        let mut sent = 0u64;
        for round in 0..200u32 {
            for to in &ports {
                let kinds: [Vec<u8>; 5] = [
                    stun_request_for_nobody(round as u8),
                    // A DTLS handshake record (content type 22, DTLS 1.2) of garbage.
                    [&[22u8, 0xfe, 0xfd][..], &[round as u8; 60][..]].concat(),
                    // An SRTP-looking packet from an address no session nominated.
                    [&[0x80u8, 96][..], &[0xAB; 100][..]].concat(),
                    // Nothing RFC 7983 knows.
                    vec![0xff; 40],
                    Vec::new(),
                ];
                for d in &kinds {
                    probe.send_to(d, to).unwrap();
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Not one answer.
        let mut buf = [0u8; 2048];
        let answered = probe.recv_from(&mut buf).ok();
        (sent, answered)
    });
    // Meanwhile an RTSP viewer plays the whole sample, every frame on time.
    play_all(
        &server.url("sample"),
        Transport::Udp(UdpTransportOptions::default()),
    )
    .await;
    let (sent, answered) = flood.join().unwrap();
    assert_eq!(
        answered, None,
        "a WebRTC port answered what no session asked for"
    );
    // Loopback loses nothing here; allow the kernel a little.
    let received = server.total_reaches("webrtc_received", sent * 9 / 10, Duration::from_secs(5));
    assert!(
        received >= sent * 9 / 10,
        "{received} of {sent} datagrams read"
    );
    let stats = server.http_get("/api/v1/stats").json();
    assert_eq!(
        stats["totals"]["webrtc_dropped"], stats["totals"]["webrtc_received"],
        "every datagram dropped and counted"
    );
    let metrics = server.http_get("/metrics").text();
    assert!(
        metrics.contains("shardcast_webrtc_dropped_total"),
        "the drops are in /metrics"
    );
}
