//! RTCP from viewers reaching the server process (issue 4): a viewer's BYE (RFC 3550 §6.6)
//! ends its session over UDP (digested by the shard, which tells the control thread) and over
//! TCP-interleaved (digested by the control thread); RTCP that is not valid ends nothing; with
//! `--stats off` RTCP is liveness only.
//!
//! A BYE counts only when it names an SSRC the viewer reported about our tracks from in an
//! earlier packet (issue 13): like ffmpeg and GStreamer, these viewers send an RR first.
//!
//! How it fails: a BYE that is not acted on leaves the session alive (GET_PARAMETER keeps
//! answering 200 instead of 454 Session Not Found); a control thread that does not drop the
//! record the shard ended does the same; an invalid packet that is trusted ends a session; a
//! spoofed BYE (unknown SSRC, or in the same compound as the first RR) ends a session.

mod common;

use std::time::{Duration, Instant};

use common::{parse_rtp, setup_udp, wait_for_bye, RawRtsp, Server};
use shardcast::wire::rtcp::{write_bye_packet, write_receiver_report, ReportBlock};
use shardcast::wire::rtp::Ssrc;

/// An RR (RFC 3550 §6.4.2) from `reporter`, with one report block about `ssrc` if given
/// (extended highest sequence 1000, jitter 90), then a BYE naming `reporter` (§6.6) if `bye`.
fn compound(reporter: u32, about: Option<u32>, bye: bool) -> Vec<u8> {
    let blocks: Vec<ReportBlock> = about
        .map(|ssrc| ReportBlock {
            ssrc: Ssrc(ssrc),
            highest_seq: 1000,
            jitter: 90,
            ..ReportBlock::default()
        })
        .into_iter()
        .collect();
    let mut p = [0u8; 64];
    let mut n = write_receiver_report(&mut p, Ssrc(reporter), &blocks, None);
    if bye {
        n += write_bye_packet(&mut p[n..], &[Ssrc(reporter)]);
    }
    p[..n].to_vec()
}

/// An RR from `reporter` with one report block about `ssrc`, then a BYE.
fn rr_bye(reporter: u32, ssrc: u32) -> Vec<u8> {
    compound(reporter, Some(ssrc), true)
}

/// The RR of [`rr_bye`] alone: what a viewer sends before it ever says BYE.
fn rr(reporter: u32, ssrc: u32) -> Vec<u8> {
    compound(reporter, Some(ssrc), false)
}

/// A valid compound from `reporter` without report blocks, then a BYE naming `reporter`.
fn bare_rr_bye(reporter: u32) -> Vec<u8> {
    compound(reporter, None, true)
}

/// Waits up to 3 s for the server's count of refused BYEs (`/api/v1/stats` totals) to reach
/// `n`; the count it reached.
fn byes_refused_reach(server: &Server, n: u64) -> u64 {
    server.total_reaches("rtcp_byes_refused", n, Duration::from_secs(3))
}

/// Proves the shard has acted on every datagram it read from the viewer so far: sends a NAT
/// keep-alive (not RTCP, RFC 5761 §4) from `sock` to the shard's RTCP port once the earlier
/// datagrams were counted, and waits until it is counted too (as a keep-alive, or from an
/// unknown source if the session is gone). A shard reads each socket once per drain and ends
/// BYE'd sessions before the drain returns, so by then any BYE it acted on shows in
/// `totals.rtcp_byes`.
fn fence(server: &Server, sock: &std::net::UdpSocket, server_rtcp: std::net::SocketAddr) {
    let seen = || {
        let t = &server.http_get("/api/v1/stats").json()["totals"];
        t["nat_keepalives"].as_u64().expect("totals.nat_keepalives")
            + t["rtcp_unknown_source"]
                .as_u64()
                .expect("totals.rtcp_unknown_source")
    };
    let before = seen();
    sock.send_to(&[0xce, 0xfa, 0xed, 0xfe], server_rtcp)
        .unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    while seen() == before {
        assert!(
            Instant::now() < end,
            "the shard never read the fence keep-alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The session id of a Session header (without `;timeout=`).
fn session_id(session: &str) -> &str {
    session.split(';').next().unwrap_or(session)
}

/// Waits up to 3 s for GET_PARAMETER on the session to answer `status`.
fn session_status_becomes(rtsp: &mut RawRtsp, url: &str, session: &str, status: u16) -> bool {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let r = rtsp.request("GET_PARAMETER", url, &[("Session", session)]);
        if r.status == status {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Plays both tracks over UDP and returns the session and the video SSRC.
fn play_udp(server: &Server) -> (common::UdpSession, u32) {
    let mut s = setup_udp(server);
    let url = s.url.clone();
    let session = s.session.clone();
    let r = s.rtsp.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(r.status, 200, "PLAY");
    let mut buf = [0u8; 2048];
    s.socks[0]
        .0
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let n = s.socks[0].0.recv(&mut buf).expect("video RTP");
    let ssrc = parse_rtp(&buf[..n]).expect("RTP").ssrc;
    (s, ssrc)
}

#[test]
fn a_udp_viewer_bye_ends_its_session() {
    let server = Server::start_logged(&["--shards", "1"]);
    let (mut s, ssrc) = play_udp(&server);
    let id = session_id(&s.session).to_owned();
    let server_rtcp = {
        let mut a = s.server_rtp[0];
        a.set_port(a.port() + 1);
        a
    };
    let rtcp = &s.socks[0].1;
    // Not valid RTCP (a compound must start with SR or RR, RFC 3550 §6.1): ends nothing.
    rtcp.send_to(&rr_bye(0x1234, ssrc)[32..], server_rtcp)
        .unwrap();
    assert!(
        server.total_reaches("rtcp_invalid", 1, Duration::from_secs(3)) >= 1,
        "the shard read the invalid BYE and refused it"
    );
    fence(&server, rtcp, server_rtcp);
    let stats = server.http_get("/api/v1/stats").json();
    assert_eq!(stats["totals"]["rtcp_byes"], 0, "{stats:#}");
    assert_eq!(stats["shards"][0]["viewers"], 1, "{stats:#}");
    let (url, session) = (s.url.clone(), s.session.clone());
    assert_eq!(
        s.rtsp
            .request("GET_PARAMETER", &url, &[("Session", &session)])
            .status,
        200,
        "an invalid BYE is not trusted"
    );

    // Viewers report before they leave; the BYE then names the SSRC they reported from.
    rtcp.send_to(&rr(0x1234, ssrc), server_rtcp).unwrap();
    rtcp.send_to(&rr_bye(0x1234, ssrc), server_rtcp).unwrap();
    assert!(
        wait_for_bye(rtcp, Duration::from_secs(3)),
        "the shard answers with its own BYE"
    );
    assert!(
        session_status_becomes(&mut s.rtsp, &url, &session, 454),
        "the control thread dropped the session record"
    );
    let logs = wait_for_log(&server, |l| {
        l.contains(&id) && l.contains("session ended by its shard: viewer sent RTCP BYE")
    });
    assert!(
        logs.iter()
            .any(|l| l.contains(&id)
                && l.contains("session ended by its shard: viewer sent RTCP BYE")),
        "one log line names the session and why: {logs:#?}"
    );
}

/// Issue 13 item 6 over UDP: someone sending from the viewer's exact address cannot end its
/// session with a BYE naming an SSRC the viewer never reported from, nor with the first RR
/// and a BYE in one compound; the session keeps streaming; the viewer's own BYE still works.
#[test]
fn a_spoofed_udp_bye_does_not_end_the_session() {
    let server = Server::start_logged(&["--shards", "1"]);
    let (mut s, ssrc) = play_udp(&server);
    let server_rtcp = {
        let mut a = s.server_rtp[0];
        a.set_port(a.port() + 1);
        a
    };
    let (url, session) = (s.url.clone(), s.session.clone());
    let rtcp = &s.socks[0].1;
    // Unknown SSRC, before any report.
    rtcp.send_to(&bare_rr_bye(0x5555), server_rtcp).unwrap();
    assert_eq!(
        byes_refused_reach(&server, 1),
        1,
        "the spoofed BYE is refused"
    );
    // The first RR (about our video SSRC) and a BYE in one compound.
    rtcp.send_to(&rr_bye(0x1234, ssrc), server_rtcp).unwrap();
    assert_eq!(
        byes_refused_reach(&server, 2),
        2,
        "same-compound BYE refused"
    );
    // An SSRC other than the one the viewer reported from.
    rtcp.send_to(&bare_rr_bye(0x5555), server_rtcp).unwrap();
    assert_eq!(byes_refused_reach(&server, 3), 3, "other-SSRC BYE refused");

    // Still streaming: after the refusals were counted, drop what is queued and wait for new RTP.
    let video = &s.socks[0].0;
    video.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    while video.recv(&mut buf).is_ok() {}
    video.set_nonblocking(false).unwrap();
    video
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let n = video
        .recv(&mut buf)
        .expect("RTP keeps coming after the spoofed BYEs");
    assert_eq!(parse_rtp(&buf[..n]).expect("RTP").ssrc, ssrc);
    assert_eq!(
        s.rtsp
            .request("GET_PARAMETER", &url, &[("Session", &session)])
            .status,
        200
    );

    // The viewer's BYE, from the SSRC it reported from in an earlier packet, ends it.
    rtcp.send_to(&bare_rr_bye(0x1234), server_rtcp).unwrap();
    assert!(
        wait_for_bye(rtcp, Duration::from_secs(3)),
        "the shard answers with its own BYE"
    );
    assert!(session_status_becomes(&mut s.rtsp, &url, &session, 454));
    let metrics = server.http_get("/metrics").text();
    assert!(
        metrics.contains("shardcast_rtcp_byes_refused_total 3"),
        "{metrics}"
    );
}

#[test]
fn with_statistics_off_rtcp_is_only_liveness() {
    let server = Server::start(&["--shards", "1", "--stats", "off"]);
    let (mut s, ssrc) = play_udp(&server);
    let mut server_rtcp = s.server_rtp[0];
    server_rtcp.set_port(server_rtcp.port() + 1);
    // A BYE that would count with statistics on: an RR first, then RR + BYE.
    s.socks[0]
        .1
        .send_to(&rr(0x1234, ssrc), server_rtcp)
        .unwrap();
    s.socks[0]
        .1
        .send_to(&rr_bye(0x1234, ssrc), server_rtcp)
        .unwrap();
    assert!(
        server.total_reaches("rtcp_received", 2, Duration::from_secs(3)) >= 2,
        "the shard read the RR and the BYE"
    );
    fence(&server, &s.socks[0].1, server_rtcp);
    let stats = server.http_get("/api/v1/stats").json();
    assert_eq!(stats["totals"]["rtcp_byes"], 0, "{stats:#}");
    assert_eq!(stats["shards"][0]["viewers"], 1, "{stats:#}");
    let (url, session) = (s.url.clone(), s.session.clone());
    assert_eq!(
        s.rtsp
            .request("GET_PARAMETER", &url, &[("Session", &session)])
            .status,
        200,
        "--stats off: no RTCP digest, so the BYE is not acted on"
    );
}

#[test]
fn an_interleaved_viewer_bye_ends_its_session() {
    let server = Server::start_logged(&["--shards", "1"]);
    let url = server.url("sample");
    let mut rtsp = RawRtsp::connect(server.addr);
    let d = rtsp.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200);
    let base = d.header("Content-Base").expect("Content-Base").to_owned();
    let r = rtsp.request(
        "SETUP",
        &format!("{base}trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(r.status, 200, "SETUP");
    let session = r.session().expect("Session");
    let id = session_id(&session).to_owned();
    assert_eq!(
        rtsp.request("PLAY", &url, &[("Session", &session)]).status,
        200
    );
    let ssrc = loop {
        let (channel, payload) = rtsp.read_frame().expect("interleaved frames");
        if channel == 0 {
            break parse_rtp(&payload).expect("RTP").ssrc;
        }
    };
    let frame = |payload: &[u8]| {
        let mut f = vec![b'$', 1];
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    // Wrong version: invalid, ends nothing.
    let mut invalid = rr_bye(0x1234, ssrc);
    invalid[0] = 0x41;
    rtsp.send_raw(&frame(&invalid));
    assert_eq!(
        rtsp.request("GET_PARAMETER", &url, &[("Session", &session)])
            .status,
        200,
        "an invalid BYE is not trusted"
    );
    // The first RR and a BYE in one frame: refused; so is a BYE naming an SSRC the viewer
    // never reported from (issue 13 item 6).
    rtsp.send_raw(&frame(&rr_bye(0x1234, ssrc)));
    assert_eq!(
        byes_refused_reach(&server, 1),
        1,
        "same-compound BYE refused"
    );
    rtsp.send_raw(&frame(&bare_rr_bye(0x5555)));
    assert_eq!(byes_refused_reach(&server, 2), 2, "other-SSRC BYE refused");
    assert_eq!(
        rtsp.request("GET_PARAMETER", &url, &[("Session", &session)])
            .status,
        200,
        "a refused BYE ends nothing"
    );
    // A BYE from the SSRC the viewer reported from in an earlier frame ends the session.
    rtsp.send_raw(&frame(&bare_rr_bye(0x1234)));
    assert!(
        session_status_becomes(&mut rtsp, &url, &session, 454),
        "the interleaved BYE ended the session"
    );
    let logs = wait_for_log(&server, |l| {
        l.contains(&id) && l.contains("session ended: viewer sent RTCP BYE")
    });
    assert!(
        logs.iter()
            .any(|l| l.contains(&id) && l.contains("session ended: viewer sent RTCP BYE")),
        "{logs:#?}"
    );
}

/// The server's log once a line matches `pred`, or after 3 s (the log is read from the
/// server's stderr pipe by another thread, so a line can trail the event it reports).
fn wait_for_log(server: &Server, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let logs = server.log_lines();
        if logs.iter().any(|l| pred(l)) || Instant::now() > end {
            return logs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
