//! Admission limits on the wire: a request over a limit gets 503 (or 453 for bandwidth) with
//! `Retry-After`, no session is half set up, and the viewers already admitted keep receiving
//! every packet. Also: `Transport: destination=` cannot aim a stream at a third party.

mod common;

use std::time::{Duration, Instant};

use common::{parse_rtp, udp_pair, RawRtsp, RtspResponse};

/// SETUP of the video track on a new session; returns the response and the sockets.
fn setup_video(
    c: &mut RawRtsp,
    url: &str,
) -> (RtspResponse, std::net::UdpSocket, std::net::UdpSocket) {
    let (rtp, rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let t = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    let r = c.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", &t)]);
    (r, rtp, rtcp)
}

/// Receives for `secs` and asserts packets arrived without a sequence gap.
fn assert_gapless(sock: &std::net::UdpSocket, secs: f64) -> usize {
    let mut buf = [0u8; 2048];
    let mut last: Option<u16> = None;
    let mut n = 0;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if let Ok(len) = sock.recv(&mut buf) {
            let seq = parse_rtp(&buf[..len]).unwrap().seq;
            if let Some(l) = last {
                assert_eq!(seq, l.wrapping_add(1), "admitted viewer lost packets");
            }
            last = Some(seq);
            n += 1;
        }
    }
    n
}

#[test]
fn viewer_limit_refuses_the_extra_viewer_and_spares_the_admitted_ones() {
    let server = common::Server::start(&["--max-viewers", "2"]);
    let url = server.url("sample");
    let mut c = RawRtsp::connect(server.addr);
    let mut admitted = Vec::new();
    for _ in 0..2 {
        let (r, rtp, rtcp) = setup_video(&mut c, &url);
        assert_eq!(r.status, 200);
        let sid = r.session().unwrap();
        assert_eq!(c.request("PLAY", &url, &[("Session", &sid)]).status, 200);
        admitted.push((rtp, rtcp));
    }
    let (r, _, _) = setup_video(&mut c, &url);
    assert_eq!(r.status, 503, "third viewer is over max-viewers");
    assert!(r.header("Retry-After").is_some());
    assert!(r.header("Session").is_none(), "no half-set-up session");
    for (rtp, _) in &admitted {
        assert!(assert_gapless(rtp, 1.0) > 10);
    }
}

#[test]
fn connection_limit_per_ip_refuses_with_503_and_frees_on_close() {
    let server = common::Server::start(&["--max-connections-per-ip", "2"]);
    let url = server.url("sample");
    let mut a = RawRtsp::connect(server.addr);
    let mut b = RawRtsp::connect(server.addr);
    assert_eq!(a.request("OPTIONS", &url, &[]).status, 200);
    assert_eq!(b.request("OPTIONS", &url, &[]).status, 200);
    let mut c = RawRtsp::connect(server.addr);
    let r = c.read_response().expect("an immediate 503");
    assert_eq!(r.status, 503);
    assert!(r.header("Retry-After").is_some());
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "refused connection is closed"
    );
    drop(a);
    // The slot frees once the server sees the close.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut d = RawRtsp::connect(server.addr);
        d.send_raw(format!("OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").as_bytes());
        let r = d.read_response().unwrap();
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn request_rate_limit_answers_503_retry_after_1() {
    let server = common::Server::start(&["--max-requests-per-sec", "5"]);
    let url = server.url("sample");
    let mut c = RawRtsp::connect(server.addr);
    let statuses: Vec<u16> = (0..12)
        .map(|_| c.request("OPTIONS", &url, &[]).status)
        .collect();
    assert!(statuses[..5].iter().all(|&s| s == 200), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        c.request("OPTIONS", &url, &[]).status,
        200,
        "the bucket refills"
    );
}

#[test]
fn bandwidth_limit_per_shard_answers_453() {
    // The sample averages ~0.7 Mbit/s: one viewer fits under 1 Mbit/s, a second does not.
    let server = common::Server::start(&["--shards", "1", "--max-mbps-per-shard", "1"]);
    let url = server.url("sample");
    let mut c = RawRtsp::connect(server.addr);
    let (r, _rtp, _rtcp) = setup_video(&mut c, &url);
    assert_eq!(r.status, 200);
    let (r, _, _) = setup_video(&mut c, &url);
    assert_eq!(r.status, 453, "Not Enough Bandwidth (RFC 2326 §11.3.1)");
    assert!(r.header("Retry-After").is_some());
}

#[test]
fn transport_destination_is_ignored_so_streams_cannot_be_reflected() {
    // RFC 2326 §12.39 lets a client name another destination; honouring it would let anyone
    // aim a stream at a third party. The stream must go to the requester's own address.
    let server = common::Server::start(&[]);
    let url = server.url("sample");
    let (mine, _rtcp) = udp_pair();
    let port = mine.local_addr().unwrap().port();
    let victim = std::net::UdpSocket::bind(("127.0.0.2", port)).expect("127.0.0.2 is loopback");
    victim
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut c = RawRtsp::connect(server.addr);
    let t = format!(
        "RTP/AVP;unicast;destination=127.0.0.2;client_port={}-{}",
        port,
        port + 1
    );
    let r = c.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", &t)]);
    assert_eq!(r.status, 200);
    assert!(!r.header("Transport").unwrap().contains("127.0.0.2"));
    let sid = r.session().unwrap();
    assert_eq!(c.request("PLAY", &url, &[("Session", &sid)]).status, 200);
    let mut buf = [0u8; 2048];
    assert!(mine.recv(&mut buf).is_ok(), "the requester gets the stream");
    assert!(
        victim.recv(&mut buf).is_err(),
        "nothing reaches the named third party"
    );
}
