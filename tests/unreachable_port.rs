//! A viewer whose UDP port closes (the kernel answers ICMP port unreachable) stops being sent
//! to at once, and a healthy viewer on the same shard loses no packet meanwhile — even though
//! the ICMP error is reported on the shared shard socket's next send. Each case checks, in
//! `/api/v1/stats`, that the backend it asked for is the one that ran (`--io uring` falls back
//! to sendmmsg where io_uring is missing): io_uring cases fail where io_uring is missing unless
//! `SHARDCAST_ALLOW_MISSING=uring` is set (then they print a loud line and skip), as in
//! `tests/backends.rs`.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::players::backend_available;
use common::{parse_rtp, setup_udp_stream};

#[test]
fn closed_viewer_port_stops_the_stream_and_spares_the_healthy_viewer() {
    for io in ["uring", "sendmmsg", "sendto"] {
        closed_port_case(io);
    }
}

fn closed_port_case(io: &str) {
    if !backend_available(io) {
        return;
    }
    let server = common::Server::start(&["--shards", "1", "--io", io]);
    let mut healthy = setup_udp_stream(server.addr, "sample", 1);
    let mut leaving = setup_udp_stream(server.addr, "sample", 1);
    for v in [&mut healthy, &mut leaving] {
        let r = v.rtsp.request("PLAY", &v.url, &[("Session", &v.session)]);
        assert_eq!(r.status, 200);
    }
    let mut buf = [0u8; 2048];
    let (rtp, rtcp) = leaving.socks.pop().unwrap();
    let port = rtp.local_addr().unwrap().port();
    rtp.recv(&mut buf)
        .expect("the leaving viewer was streaming");
    // The viewer's RTP socket goes away (its RTSP connection stays, sending nothing).
    drop(rtp);
    let closed_at = Instant::now();

    // Meanwhile the healthy viewer must see a gapless sequence.
    let sock = &healthy.socks[0].0;
    let mut last: Option<u16> = None;
    let mut got = 0;
    while closed_at.elapsed() < Duration::from_millis(1500) {
        if let Ok(n) = sock.recv(&mut buf) {
            let seq = parse_rtp(&buf[..n]).unwrap().seq;
            if let Some(l) = last {
                assert_eq!(seq, l.wrapping_add(1), "{io}: healthy viewer lost a packet");
            }
            last = Some(seq);
            got += 1;
        }
    }
    assert!(got > 50, "healthy viewer kept receiving ({got} packets)");

    // Reopen the same port: if the server were still sending there, packets would arrive.
    let again = UdpSocket::bind(("127.0.0.1", port)).expect("port free again");
    again
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    assert!(
        again.recv(&mut buf).is_err(),
        "{io}: the server still streams to the closed port"
    );
    drop(rtcp);

    // The backend asked for is the one that sent all along (a fallback would show here).
    let stats = server.http_get("/api/v1/stats").json();
    assert_eq!(
        stats["shards"][0]["io"], io,
        "the shard's send backend (asked for --io {io}): {}",
        stats["shards"][0]
    );
}
