//! RTSPS (RTSP over TLS 1.3, `--rtsps-listen`) against the clients that speak it: ffmpeg
//! (`-rtsp_transport tcp -i rtsps://…`) and GStreamer (`rtspsrc location=rtsps://…
//! tls-validation-flags=0`) play the bundled sample, every frame, without a warning; a
//! rustls client reads the decrypted `$` frames and checks the RTP against the file. Then
//! what does not belong on the port — random bytes, an HTTP request, a ClientHello and
//! silence, a TLS 1.2-only ClientHello — is closed with one log line each (the last two at
//! the handshake timeout and with a `protocol_version` alert) while a viewer plays on; UDP
//! SETUP over RTSPS is answered 461; SIGHUP switches new connections to a new certificate.
//! The certificates are made by the `openssl` CLI in the test.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::make_cert;
use common::players::{ffmpeg_decode_without_warnings, gstreamer_decoded_video_frames_with};
use common::tls_client::{client_config, rtsps_server, rtsps_url, sample_video, TlsRtsp};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

fn tmp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("shardcast-rtsps-{}-{tag}", std::process::id()))
}

fn server(tag: &str, extra: &[&str]) -> (common::Server, PathBuf) {
    rtsps_server("rtsps", tag, extra)
}

fn log_count(server: &common::Server, needle: &str) -> usize {
    server
        .log_lines()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn ffmpeg_decodes_every_frame_over_rtsps() {
    let (server, _dir) = server("ffmpeg", &[]);
    let decoded = ffmpeg_decode_without_warnings(&rtsps_url(&server, "sample"), "tcp");
    assert_eq!(decoded.frames, sample_video().1.len(), "frames over RTSPS");
    assert_eq!(log_count(&server, "rtsps:"), 0, "{:?}", server.log_lines());
}

#[test]
fn gstreamer_rtspsrc_decodes_every_frame_over_rtsps() {
    let (server, _dir) = server("gst", &[]);
    let frames = gstreamer_decoded_video_frames_with(
        &rtsps_url(&server, "sample"),
        "tcp",
        &["tls-validation-flags=0"],
    );
    assert_eq!(frames, sample_video().1.len(), "frames over RTSPS");
}

/// RTSP over HTTP inside TLS on the RTSPS port: ffmpeg's `-rtsp_transport https` (its GET
/// and POST are two TLS connections) and GStreamer's `rtspsh://` decode every frame, and
/// nothing is logged as a TLS failure.
#[test]
fn ffmpeg_and_gstreamer_play_through_the_https_tunnel() {
    let (server, _dir) = server("https-tunnel", &[]);
    let rtsps = server.rtsps.unwrap();
    let decoded = ffmpeg_decode_without_warnings(&format!("rtsp://{rtsps}/sample"), "https");
    assert_eq!(decoded.frames, sample_video().1.len(), "ffmpeg frames");
    let frames = gstreamer_decoded_video_frames_with(
        &format!("rtspsh://{rtsps}/sample"),
        "tcp",
        &["tls-validation-flags=0"],
    );
    assert_eq!(frames, sample_video().1.len(), "GStreamer frames");
    assert_eq!(log_count(&server, "rtsps:"), 0, "{:?}", server.log_lines());
}

/// Inside TLS the tunnel keeps its rules: a POST whose cookie has no GET is 403 (sealed, then
/// `close_notify`), and a GET then garbage records ends with `bad_record_mac` — one log line
/// each — while a viewer on the same port plays on.
#[test]
fn https_tunnel_refusals_and_bad_records_inside_tls() {
    let (server, _dir) = server("https-bad", &[]);
    let url = rtsps_url(&server, "sample");
    let mut viewer = TlsRtsp::connect(server.rtsps.unwrap());
    assert_eq!(viewer.request("DESCRIBE", &url, &[]).status, 200);

    let mut post = TlsRtsp::connect(server.rtsps.unwrap());
    post.tls
        .write_all(
            b"POST /sample HTTP/1.0\r\nx-sessioncookie: nobody-has-this\r\n\
              Content-Type: application/x-rtsp-tunnelled\r\nContent-Length: 32767\r\n\r\n",
        )
        .unwrap();
    post.read_to_close()
        .expect("the refusal, then close_notify");
    let answer = String::from_utf8_lossy(&post.buf).into_owned();
    assert!(answer.starts_with("HTTP/1.0 403"), "{answer}");

    let mut get = TlsRtsp::connect(server.rtsps.unwrap());
    get.tls
        .write_all(
            b"GET /sample HTTP/1.0\r\nx-sessioncookie: a-real-cookie\r\n\
              Accept: application/x-rtsp-tunnelled\r\n\r\n",
        )
        .unwrap();
    let started = Instant::now();
    while !String::from_utf8_lossy(&get.buf).contains("\r\n\r\n") {
        assert!(get.fill(), "the GET is answered");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert!(
        String::from_utf8_lossy(&get.buf).starts_with("HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&get.buf)
    );
    // An application-data record that does not decrypt.
    let mut record = vec![23, 3, 3, 0, 40];
    record.extend_from_slice(&[0x42; 40]);
    get.tls.sock.write_all(&record).unwrap();
    let end = get.read_to_close().expect_err("an alert");
    assert!(format!("{end:?}").contains("BadRecordMac"), "{end:?}");
    let needle = "rtsps: closing connection: record failed to decrypt";
    while log_count(&server, needle) == 0 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(log_count(&server, needle), 1, "{:?}", server.log_lines());

    // The viewer on the same port is served on.
    let s = viewer.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(s.status, 200);
}

// ---- a rustls client: tests/common/tls_client.rs --------------------------------------

#[test]
fn a_rustls_client_reads_rtp_that_matches_the_file() {
    let (server, _dir) = server("raw", &[]);
    let (video, pts, timescale) = sample_video();
    let url = rtsps_url(&server, "sample");
    let mut c = TlsRtsp::connect(server.rtsps.unwrap());
    let d = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200);
    let base = d.header("Content-Base").unwrap().to_owned();
    assert!(base.starts_with("rtsps://"), "Content-Base {base}");
    let s = c.request(
        "SETUP",
        &format!("{base}trackID={video}"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(s.status, 200);
    let session = common::session_id(&s);
    let p = c.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(p.status, 200);
    let mut markers = Vec::new();
    let mut last: Option<(u16, u32)> = None;
    while markers.len() < pts.len() {
        let (ch, frame) = c.read_frame().expect("media until the last frame");
        if ch != 0 {
            continue;
        }
        let rtp = common::parse_rtp(&frame).expect("RTP");
        assert_eq!(rtp.pt, 96);
        if let Some((seq, ssrc)) = last {
            assert_eq!(
                rtp.seq,
                seq.wrapping_add(1),
                "sequence numbers without a gap"
            );
            assert_eq!(rtp.ssrc, ssrc);
        }
        last = Some((rtp.seq, rtp.ssrc));
        if rtp.marker {
            markers.push(rtp.ts);
        }
    }
    // One marker per frame (RFC 6184 §5.1), its timestamp the frame's presentation time on
    // the 90 kHz clock (in sending = decode order).
    for (k, ts) in markers.iter().enumerate() {
        let got = i64::from(ts.wrapping_sub(markers[0]) as i32);
        let want = (pts[k] - pts[0]) * 90_000 / i64::from(timescale);
        assert!((got - want).abs() <= 1, "frame {k}: rtp {got}, file {want}");
    }
}

/// RFC 8446 §6.1: we send `close_notify` before closing our side of an RTSPS connection —
/// in answer to the client's, and after a malformed request's 400 — so a client can tell our
/// end from a truncation attack. (An error ends it with that error's alert instead: see the
/// KeyUpdate test.)
#[test]
fn rtsps_connections_end_with_close_notify() {
    let (server, _dir) = server("close-notify", &[]);
    let url = rtsps_url(&server, "sample");
    let mut c = TlsRtsp::connect(server.rtsps.unwrap());
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200);
    c.tls.conn.send_close_notify();
    c.tls.flush().unwrap();
    c.read_to_close()
        .expect("the server's close_notify answers the client's");

    let mut c = TlsRtsp::connect(server.rtsps.unwrap());
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200);
    c.tls.write_all(b"NOT RTSP AT ALL\r\n\r\n").unwrap();
    c.read_to_close()
        .expect("after the 400, the server's close_notify");
    let (resp, _) = shardcast::rtsp::response::parse_response(&c.buf)
        .unwrap()
        .expect("a response");
    assert_eq!(resp.status, 400);
}

#[test]
fn a_key_update_closes_the_connection_with_one_log_line() {
    let (server, _dir) = server("keyupdate", &[]);
    let mut c = TlsRtsp::connect(server.rtsps.unwrap());
    assert_eq!(
        c.request("OPTIONS", &rtsps_url(&server, "sample"), &[])
            .status,
        200
    );
    c.tls.conn.refresh_traffic_keys().unwrap();
    c.tls.flush().unwrap();
    let started = Instant::now();
    // RFC 8446 §6.2: ended with the alert the error calls for, not a bare close.
    let end = c.read_to_close().expect_err("an alert, not close_notify");
    assert!(
        format!("{end:?}").contains("UnexpectedMessage"),
        "unexpected_message alert: {end:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "closed at once");
    // The log is read by another thread: wait (bounded) for the line to arrive.
    let needle = "rtsps: closing connection: post-handshake message (type 24)";
    while log_count(&server, needle) == 0 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let lines = log_count(&server, needle);
    assert_eq!(lines, 1, "{}", server.log_lines().join("\n"));
    // Others are served on.
    let mut other = TlsRtsp::connect(server.rtsps.unwrap());
    assert_eq!(
        other
            .request("OPTIONS", &rtsps_url(&server, "sample"), &[])
            .status,
        200
    );
}

#[test]
fn udp_setup_over_rtsps_is_refused_with_461() {
    let (server, _dir) = server("udp", &[]);
    let url = rtsps_url(&server, "sample");
    let mut c = TlsRtsp::connect(server.rtsps.unwrap());
    let d = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    let base = d.header("Content-Base").unwrap().to_owned();
    let s = c.request(
        "SETUP",
        &format!("{base}trackID=0"),
        &[("Transport", "RTP/AVP;unicast;client_port=40000-40001")],
    );
    assert_eq!(s.status, 461, "UDP over RTSPS");
    // TCP is still offered on the same connection.
    let s = c.request(
        "SETUP",
        &format!("{base}trackID=0"),
        &[(
            "Transport",
            "RTP/AVP;unicast;client_port=40000-40001,RTP/AVP/TCP;unicast;interleaved=0-1",
        )],
    );
    assert_eq!(s.status, 200);
    assert!(s.header("Transport").unwrap().contains("interleaved=0-1"));
}

/// `RTP/SAVP` (SRTP) needs the keys a DESCRIBE on the same RTSPS connection offered: an
/// SRTP-only SETUP without one is 461 over RTSPS as over plain RTSP — never answered with
/// plain RTP — and an offer that also lists `RTP/AVP/TCP` gets the interleaved transport.
/// (Keyed SRTP is tests/rtsps_srtp.rs.)
#[test]
fn savp_setups_without_keys_are_refused_never_served_in_the_clear() {
    let (server, _dir) = server("savp", &[]);
    let url = rtsps_url(&server, "sample");
    let mut c = TlsRtsp::connect(server.rtsps.unwrap());
    // Without --rtsps-srtp a DESCRIBE over RTSPS offers no keys either.
    let d = c.request("DESCRIBE", &url, &[]);
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    assert!(
        sdp.contains(" RTP/AVP ") && !sdp.contains("SAVP") && !sdp.contains("key-mgmt"),
        "{sdp}"
    );
    for offer in [
        "RTP/SAVP;unicast;client_port=40000-40001",
        "RTP/SAVP/UDP;unicast;client_port=40000-40001",
        "RTP/SAVP/TCP;unicast;interleaved=0-1",
    ] {
        let s = c.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &[("Transport", offer)],
        );
        assert_eq!(s.status, 461, "{offer}");
    }
    let s = c.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[(
            "Transport",
            "RTP/SAVP;unicast;client_port=40000-40001,RTP/AVP/TCP;unicast;interleaved=0-1",
        )],
    );
    assert_eq!(s.status, 200);
    let answer = s.header("Transport").unwrap();
    assert!(
        answer.starts_with("RTP/AVP/TCP") && answer.contains("interleaved=0-1"),
        "{answer}"
    );
    // Plain RTSP: the same, DESCRIBE or not (keys are never offered in the clear).
    let mut plain = common::RawRtsp::connect(server.addr);
    let d = plain.request("DESCRIBE", &format!("rtsp://{}/sample", server.addr), &[]);
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    assert!(!sdp.contains("SAVP") && !sdp.contains("key-mgmt"), "{sdp}");
    let plain_url = format!("rtsp://{}/sample/trackID=0", server.addr);
    let s = plain.request(
        "SETUP",
        &plain_url,
        &[("Transport", "RTP/SAVP;unicast;client_port=40000-40001")],
    );
    assert_eq!(s.status, 461, "RTP/SAVP over plain RTSP");
}

#[test]
fn sighup_gives_new_connections_the_new_certificate() {
    let (server, dir) = server("sighup", &[]);
    let before = TlsRtsp::connect(server.rtsps.unwrap()).peer_certificate();
    let fresh = tmp_dir("sighup-new");
    let (cert, key) = make_cert(&fresh, "renewed");
    std::fs::copy(cert, dir.join("cert.pem")).unwrap();
    std::fs::copy(key, dir.join("key.pem")).unwrap();
    let mut old = TlsRtsp::connect(server.rtsps.unwrap());
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_count(&server, "rtsps certificate reloaded") == 0 {
        assert!(Instant::now() < deadline, "{:?}", server.log_lines());
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = TlsRtsp::connect(server.rtsps.unwrap()).peer_certificate();
    assert_ne!(before, after, "new connections get the new certificate");
    // A connection made before the reload keeps working.
    let o = old.request("OPTIONS", &rtsps_url(&server, "sample"), &[]);
    assert_eq!(o.status, 200);
}

// ---- what does not belong on the port --------------------------------------------------

const HANDSHAKE_FAILED: &str = "rtsps: tls handshake failed";

/// A plain RTSP viewer reading interleaved frames in the background until the end of the
/// file; returns how many frames it got.
fn plain_viewer(server: &common::Server) -> std::thread::JoinHandle<usize> {
    let addr = server.addr;
    let url = server.url("sample");
    std::thread::spawn(move || {
        let mut c = common::RawRtsp::connect(addr);
        let (_, session) = c.setup_interleaved(&url, &[0]);
        let p = c.request("PLAY", &url, &[("Session", &session)]);
        assert_eq!(p.status, 200);
        // Until the RTCP BYE at the end of the file (RFC 3550 §6.6, packet type 203).
        let mut frames = 0;
        while let Some((ch, payload)) = c.read_frame() {
            frames += 1;
            if ch == 1 && has_bye(&payload) {
                break;
            }
        }
        frames
    })
}

/// Whether an RTCP compound packet holds a BYE.
fn has_bye(mut p: &[u8]) -> bool {
    while p.len() >= 4 {
        if p[1] == 203 {
            return true;
        }
        let len = (usize::from(u16::from_be_bytes([p[2], p[3]])) + 1) * 4;
        p = p.get(len..).unwrap_or_default();
    }
    false
}

/// Sends `bytes` on a new connection to the RTSPS port; how long until the server closed
/// it, and what it sent.
fn send_and_wait_close(addr: SocketAddr, bytes: &[u8]) -> (Duration, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    (started.elapsed(), got)
}

/// A ClientHello as rustls writes it (TLS 1.3 offered).
fn client_hello() -> Vec<u8> {
    let mut c =
        ClientConnection::new(client_config(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

/// A ClientHello offering TLS 1.2 only (no `supported_versions` extension).
fn tls12_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0xc0, 0x2f, 1, 0]);
    let ext: &[u8] = &[
        0, 10, 0, 4, 0, 2, 0, 29, 0, 11, 0, 2, 1, 0, 0, 13, 0, 4, 0, 2, 8, 4,
    ];
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(ext);
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

/// Runs one bad client against a server whose plain viewer plays on; checks the close
/// time, what the server answered, and one log line.
fn bad_client(tag: &str, bytes: &[u8], within: (Duration, Duration), check: impl Fn(&[u8])) {
    let (server, _dir) = server(tag, &[]);
    let viewer = plain_viewer(&server);
    std::thread::sleep(Duration::from_millis(300));
    let (took, answer) = send_and_wait_close(server.rtsps.unwrap(), bytes);
    assert!(
        took >= within.0 && took < within.1,
        "{tag}: closed after {took:?}, expected within {within:?}"
    );
    check(&answer);
    // A good RTSPS client is still served.
    let mut good = TlsRtsp::connect(server.rtsps.unwrap());
    assert_eq!(
        good.request("OPTIONS", &rtsps_url(&server, "sample"), &[])
            .status,
        200
    );
    let frames = viewer.join().unwrap();
    let (_, pts, _) = sample_video();
    assert!(frames >= pts.len(), "{tag}: the viewer got {frames} frames");
    assert_eq!(
        log_count(&server, HANDSHAKE_FAILED),
        1,
        "{tag}: one log line\n{}",
        server.log_lines().join("\n")
    );
}

const QUICK: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(2));

#[test]
fn random_bytes_are_closed_with_one_log_line() {
    let mut rng = 0x9e37_79b9_u32;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng as u8
        })
        .collect();
    bad_client("random", &bytes, QUICK, |_| {});
}

#[test]
fn an_http_request_is_closed_with_one_log_line() {
    bad_client(
        "http",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        QUICK,
        |answer| assert!(answer.is_empty(), "nothing answered in plaintext"),
    );
}

#[test]
fn a_client_hello_then_silence_is_closed_at_the_handshake_timeout() {
    bad_client(
        "silence",
        &client_hello(),
        (Duration::from_secs(9), Duration::from_secs(15)),
        |answer| assert_eq!(answer.first(), Some(&22), "the server's flight was sent"),
    );
}

#[test]
fn a_tls12_only_client_hello_gets_a_protocol_version_alert() {
    bad_client("tls12", &tls12_hello(), QUICK, |answer| {
        // RFC 8446 §6.2: alert record, fatal, protocol_version (70).
        assert_eq!(answer, [21, 3, 3, 0, 2, 2, 70], "{answer:?}");
    });
}
