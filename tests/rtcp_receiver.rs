//! RTCP from viewers reaching the server process (issue 4): a viewer's BYE (RFC 3550 §6.6)
//! ends its session over UDP (digested by the shard, which tells the control thread) and over
//! TCP-interleaved (digested by the control thread); RTCP that is not valid ends nothing; with
//! `--stats off` RTCP is liveness only.
//!
//! How it fails: a BYE that is not acted on leaves the session alive (GET_PARAMETER keeps
//! answering 200 instead of 454 Session Not Found); a control thread that does not drop the
//! record the shard ended does the same; an invalid packet that is trusted ends a session.

mod common;

use std::time::{Duration, Instant};

use common::{parse_rtp, setup_udp, wait_for_bye, RawRtsp, Server};

/// An RR (RFC 3550 §6.4.2) from `reporter` with one report block about `ssrc`, then a BYE.
fn rr_bye(reporter: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&reporter.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // fraction lost, cumulative lost
    p.extend_from_slice(&1000u32.to_be_bytes()); // extended highest sequence
    p.extend_from_slice(&90u32.to_be_bytes()); // jitter
    p.extend_from_slice(&[0; 8]); // LSR, DLSR
    p.extend_from_slice(&[0x81, 203, 0, 1]);
    p.extend_from_slice(&reporter.to_be_bytes());
    p
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
    std::thread::sleep(Duration::from_millis(500));
    let (url, session) = (s.url.clone(), s.session.clone());
    assert_eq!(
        s.rtsp
            .request("GET_PARAMETER", &url, &[("Session", &session)])
            .status,
        200,
        "an invalid BYE is not trusted"
    );

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

#[test]
fn with_statistics_off_rtcp_is_only_liveness() {
    let server = Server::start(&["--shards", "1", "--stats", "off"]);
    let (mut s, ssrc) = play_udp(&server);
    let mut server_rtcp = s.server_rtp[0];
    server_rtcp.set_port(server_rtcp.port() + 1);
    s.socks[0]
        .1
        .send_to(&rr_bye(0x1234, ssrc), server_rtcp)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
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
    rtsp.send_raw(&frame(&rr_bye(0x1234, ssrc)));
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
