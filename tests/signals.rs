//! Process lifecycle: on SIGTERM the server stops accepting, sends RTCP BYE to every viewer
//! and exits 0 within 5 s.

mod common;

use std::time::{Duration, Instant};

use common::{udp_pair, RawRtsp};

#[test]
fn sigterm_sends_bye_to_viewers_and_exits_zero_within_5s() {
    let mut server = common::Server::start(&[]);
    let url = server.url("sample");
    let mut c = RawRtsp::connect(server.addr);
    let (rtp, rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let t = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    let r = c.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", &t)]);
    assert_eq!(r.status, 200);
    let sid = r.session().unwrap();
    assert_eq!(c.request("PLAY", &url, &[("Session", &sid)]).status, 200);
    let mut buf = [0u8; 2048];
    rtp.recv(&mut buf).expect("streaming before the signal");

    let sent = Instant::now();
    assert_eq!(send_signal(server.pid(), libc::SIGTERM), 0);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exited within 5 s");
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(5));

    // An RTCP compound with a BYE (PT 203) arrived on the viewer's RTCP port.
    rtcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut saw_bye = false;
    while let Ok(n) = rtcp.recv(&mut buf) {
        let mut off = 0;
        while off + 4 <= n {
            if buf[off + 1] == 203 {
                saw_bye = true;
            }
            off += 4 * (usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]])) + 1);
        }
    }
    assert!(saw_bye, "viewer got RTCP BYE at shutdown");
}

/// Sends a signal with the `kill` command (keeps `unsafe` out of the tests).
fn send_signal(pid: u32, signal: i32) -> i32 {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill");
    if status.success() {
        0
    } else {
        1
    }
}
