//! Slowloris: 2,000 connections that send nothing (and some that trickle a byte every half
//! second) cost bounded memory and do not stop a normal viewer from connecting and playing;
//! silent ones close after the idle timeout, tricklers get 408 once their request has taken
//! longer than that, and the server's descriptors return to their baseline.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{parse_rtp, setup_udp};

const IDLE: usize = 1_800;
const TRICKLERS: usize = 200;

fn status_field(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn two_thousand_silent_connections_cost_bounded_memory_and_expire() {
    let server = common::Server::start(&["--session-timeout", "3", "--log", "warn"]);
    let pid = server.pid();
    // Baseline once the control thread's runtime (epoll, waker, signal pipes) is up: one
    // request answered proves it; its connection is then closed.
    {
        let mut warm = common::RawRtsp::connect(server.addr);
        assert_eq!(
            warm.request("OPTIONS", &server.url("sample"), &[]).status,
            200
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_before_kib = status_field(pid, "VmRSS:");
    let fds_before = open_fds(pid);

    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let mut tricklers: Vec<TcpStream> = (0..TRICKLERS)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();

    // While they hang on, a normal viewer sets up and plays.
    let mut viewer = setup_udp(&server);
    let r = viewer
        .rtsp
        .request("PLAY", &viewer.url, &[("Session", &viewer.session)]);
    assert_eq!(
        r.status, 200,
        "a normal viewer is served despite 2,000 idle connections"
    );
    let mut buf = [0u8; 2048];
    let mut packets = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        // Trickle one byte of an endless request line every ~0.5 s.
        if packets % 50 == 0 {
            for t in &mut tricklers {
                let _ = t.write_all(b"O");
            }
        }
        if let Ok(n) = viewer.socks[0].0.recv(&mut buf) {
            assert!(parse_rtp(&buf[..n]).is_some());
            packets += 1;
        }
    }
    assert!(packets > 20, "viewer received {packets} packets");
    let rss_with_kib = status_field(pid, "VmRSS:");
    let growth_mib = rss_with_kib.saturating_sub(rss_before_kib) / 1024;
    eprintln!(
        "RSS {rss_before_kib} KiB → {rss_with_kib} KiB with {} connections",
        IDLE + TRICKLERS
    );
    assert!(
        growth_mib < 64,
        "2,000 idle connections grew memory by {growth_mib} MiB"
    );

    // Tricklers keep sending a byte every half second: a request that never completes is cut
    // off (408) once it has taken longer than the timeout, even though bytes keep coming.
    let trickle_until = Instant::now() + Duration::from_secs(6);
    let mut cut_off = vec![false; tricklers.len()];
    while Instant::now() < trickle_until && cut_off.iter().any(|c| !c) {
        for (t, cut) in tricklers.iter_mut().zip(cut_off.iter_mut()) {
            if !*cut && t.write_all(b"O").is_err() {
                *cut = true;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for t in tricklers.iter_mut().step_by(29) {
        t.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut answer = Vec::new();
        let _ = t.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("RTSP/1.0 408"), "trickler got {text:?}");
    }

    // Silent ones: closed once idle past the timeout (a read sees EOF or a reset).
    let deadline = Instant::now() + Duration::from_secs(8);
    for s in idle.iter_mut().step_by(97) {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        let mut b = [0u8; 1];
        let closed = matches!(s.read(&mut b), Ok(0) | Err(_));
        assert!(
            closed,
            "an idle connection was still open after the timeout"
        );
    }
    drop(idle);
    drop(tricklers);
    drop(viewer);
    // Descriptors return to baseline once everything is closed and the viewer expired.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fds = open_fds(pid);
        if fds <= fds_before + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server holds {fds} fds, baseline {fds_before}: {:?}",
            fd_targets(pid)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The 408 guard times one message staying incomplete, not a buffer that is never empty: a
/// client streaming interleaved `$` frames (RFC 2326 §10.12) whose writes each end inside the
/// next frame — as a TCP publisher's or viewer's often do — keeps its connection well past
/// the request timeout (here `--session-timeout 2`, so 2 s), and its next request is answered.
/// (Seen in CI: a GStreamer TCP publisher, 10 s of media, cut off with 408 at the end.)
#[test]
fn a_client_streaming_split_interleaved_frames_is_not_taken_for_a_slow_request() {
    let server = common::Server::start(&["--session-timeout", "2"]);
    let url = server.url("sample");
    let mut c = common::RawRtsp::connect(server.addr);
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200);
    // An RTCP receiver report for nobody's session on channel 1, framed.
    let mut frame = vec![b'$', 1, 0, 32];
    frame.extend_from_slice(&[0x81, 201, 0, 7]);
    frame.extend_from_slice(&[0x5a; 28]);
    let split = 13;
    c.send_raw(&frame[..split]);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        // The rest of the last frame, two whole frames, the start of the next.
        let mut chunk = frame[split..].to_vec();
        chunk.extend_from_slice(&frame);
        chunk.extend_from_slice(&frame);
        chunk.extend_from_slice(&frame[..split]);
        c.stream
            .write_all(&chunk)
            .expect("the server keeps the connection open");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.send_raw(&frame[split..]);
    let r = c.request("OPTIONS", &url, &[]);
    assert_eq!(r.status, 200, "answered after 5 s of split frames");
}
