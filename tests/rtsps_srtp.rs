//! SRTP over RTSPS keyed with MIKEY (RFC 3830, RFC 4567): GStreamer's `rtspsrc` plays the
//! bundled sample over `rtsps://` with SRTP over UDP (`protocols=udp`) and inside the
//! interleaved frames (`protocols=tcp`, `RTP/SAVP/TCP`), every frame to EOS without a
//! warning; ffmpeg (which SETUPs `RTP/AVP/TCP` on `rtsps://`) still plays every frame; a
//! rustls client reads the key from `a=key-mgmt:mikey`, SETUPs `RTP/SAVP` over UDP, and checks
//! the datagrams are SRTP that unprotects to the file's RTP, and that the SRTCP sender reports
//! authenticate. Bad input: a garbage or truncated `KeyMgmt` is 463 with one log line while
//! another viewer plays on; `RTP/SAVP` over plain RTSP is 461 (tests/rtsps.rs); an SRTCP
//! packet with a bad tag is dropped and counted.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::players::{ffmpeg_decode_without_warnings, gstreamer_decoded_video_frames_with};
use common::tls_client::{rtsps_server, rtsps_url, sample_video, TlsRtsp};
use shardcast::rtsp::mikey;
use shardcast::webrtc::srtp::{MasterKey, SrtpProfile, SrtpReceiver, SrtpSender};

fn server(tag: &str) -> (common::Server, PathBuf) {
    rtsps_server("srtp", tag, &["--rtsps-srtp"])
}

fn setups(server: &common::Server) -> Vec<String> {
    server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("setup"))
        .collect()
}

/// GStreamer over `rtsps://` with `protocols`: every frame to EOS, and every SETUP answered
/// with the SRTP profile `answer` names.
fn gstreamer_plays_srtp(protocols: &str, answer: &str) {
    let (server, _dir) = server(protocols);
    let url = rtsps_url(&server, "sample");
    let frames = gstreamer_decoded_video_frames_with(&url, protocols, &["tls-validation-flags=0"]);
    assert_eq!(
        frames,
        sample_video().1.len(),
        "frames over SRTP/{protocols}"
    );
    let lines = setups(&server);
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains(answer)),
        "{lines:?}"
    );
    // GStreamer's receiver reports are SRTCP under the key of its `KeyMgmt`: every one
    // authenticates and validates.
    let received = server.total_reaches("rtcp_received", 1, Duration::from_secs(3));
    assert!(received >= 1, "receiver reports arrived");
    assert_eq!(server.total_reaches("srtcp_dropped", 0, Duration::ZERO), 0);
    assert_eq!(server.total_reaches("rtcp_invalid", 0, Duration::ZERO), 0);
}

#[test]
fn gstreamer_plays_srtp_over_udp_on_rtsps() {
    gstreamer_plays_srtp("udp", "RTP/SAVP;unicast");
}

#[test]
fn gstreamer_plays_srtp_inside_tls_over_tcp() {
    gstreamer_plays_srtp("tcp", "RTP/SAVP/TCP");
}

#[test]
fn ffmpeg_still_plays_every_frame_over_rtsps() {
    let (server, _dir) = server("ffmpeg");
    let decoded = ffmpeg_decode_without_warnings(&rtsps_url(&server, "sample"), "tcp");
    assert_eq!(decoded.frames, sample_video().1.len(), "frames over RTSPS");
    let lines = setups(&server);
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("RTP/AVP/TCP")),
        "ffmpeg SETUPs plain RTP inside TLS: {lines:?}"
    );
}

/// The `a=key-mgmt:mikey` key of media section `k` of `sdp`.
fn offered_key(sdp: &str, k: usize) -> mikey::MikeyKeys {
    let section = sdp.split("m=").nth(k + 1).expect("media section");
    assert!(section.contains("RTP/SAVP"), "{section}");
    let b64 = section
        .lines()
        .find_map(|l| l.strip_prefix("a=key-mgmt:mikey "))
        .expect("a=key-mgmt");
    mikey::parse(&BASE64.decode(b64.trim()).unwrap()).expect("our MIKEY parses")
}

fn master(k: &mikey::MikeyKeys) -> MasterKey {
    MasterKey::new(SrtpProfile::Aes128CmHmacSha1_80, &k.key, &k.salt).unwrap()
}

/// Two UDP sockets on consecutive ports (RTP even, RTCP odd).
fn port_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..50 {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rtp.local_addr().unwrap().port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            return (rtp, rtcp);
        }
    }
    panic!("no free port pair");
}

/// A client key's `KeyMgmt` header (RFC 4567 §3.2).
fn keymgmt(url: &str, message: &[u8]) -> String {
    format!(
        "prot=mikey; uri=\"{url}\"; data=\"{}\"",
        BASE64.encode(message)
    )
}

fn client_message() -> Vec<u8> {
    mikey::build_psk_init(&mikey::PskInit {
        csb_id: 7,
        sessions: &[mikey::CryptoSession {
            policy: 0,
            ssrc: 0x1234_5678,
            roc: 0,
        }],
        ntp_utc: 0,
        rand: [9; 16],
        key: [1; 16],
        salt: [2; 14],
    })
}

#[test]
fn srtp_datagrams_unprotect_to_the_files_rtp_and_sender_reports_authenticate() {
    let (server, _dir) = server("packets");
    let (video, pts, timescale) = sample_video();
    let url = rtsps_url(&server, "sample");
    let mut c = TlsRtsp::connect(server.rtsps.unwrap());
    let d = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200);
    let sdp = String::from_utf8(d.body.clone()).unwrap();
    assert!(!sdp.contains("a=crypto"), "no SDES for ffmpeg: {sdp}");
    let keys = offered_key(&sdp, video);
    let base = d.header("Content-Base").unwrap().to_owned();
    let (rtp, rtcp) = port_pair();
    let port = rtp.local_addr().unwrap().port();
    let s = c.request(
        "SETUP",
        &format!("{base}trackID={video}"),
        &[
            (
                "Transport",
                &format!("RTP/SAVP;unicast;client_port={port}-{}", port + 1),
            ),
            ("KeyMgmt", &keymgmt(&url, &client_message())),
        ],
    );
    assert_eq!(s.status, 200);
    let answer = s.header("Transport").unwrap().to_owned();
    assert!(answer.starts_with("RTP/SAVP;unicast"), "{answer}");
    let server_rtcp: u16 = answer
        .split("server_port=")
        .nth(1)
        .and_then(|p| p.split(['-', ';']).nth(1))
        .and_then(|p| p.parse().ok())
        .expect("server_port");
    let ssrc = u32::from_str_radix(answer.split("ssrc=").nth(1).unwrap().trim(), 16).unwrap();
    assert_eq!(
        keys.sessions[0].ssrc, ssrc,
        "MIKEY's SRTP-ID map names the SSRC used"
    );
    let session = common::session_id(&s);
    let p = c.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(p.status, 200);

    // An SRTCP packet with a bad tag: dropped and counted, nothing else affected.
    let mut forged = [0u8; 8 + 4 + 10];
    forged[..8].copy_from_slice(&[0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78]);
    forged[8..12].copy_from_slice(&0x8000_0001u32.to_be_bytes());
    rtcp.send_to(&forged, ("127.0.0.1", server_rtcp)).unwrap();

    let mut rx = SrtpReceiver::new(&master(&keys));
    rtp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let frames = 40.min(pts.len());
    let mut markers = Vec::new();
    let mut last: Option<u16> = None;
    let mut buf = [0u8; 2048];
    while markers.len() < frames {
        let n = rtp.recv(&mut buf).expect("media");
        let wire = buf[..n].to_vec();
        let plain_len = rx.unprotect_rtp(&mut buf[..n]).expect("SRTP authenticates");
        assert_eq!(plain_len + 10, n, "an 80-bit tag");
        assert_ne!(wire[12..plain_len], buf[12..plain_len], "payload encrypted");
        let r = common::parse_rtp(&buf[..plain_len]).expect("RTP");
        assert_eq!(r.ssrc, ssrc);
        if let Some(seq) = last {
            assert_eq!(r.seq, seq.wrapping_add(1), "sequence numbers without a gap");
        }
        last = Some(r.seq);
        if r.marker {
            markers.push(r.ts);
        }
    }
    for (k, ts) in markers.iter().enumerate() {
        let got = i64::from(ts.wrapping_sub(markers[0]) as i32);
        let want = (pts[k] - pts[0]) * 90_000 / i64::from(timescale);
        assert!((got - want).abs() <= 1, "frame {k}: rtp {got}, file {want}");
    }
    // The first sender report went out with the first frame (SRTCP, RFC 3711 §3.4).
    rtcp.set_read_timeout(Some(Duration::from_secs(7))).unwrap();
    let n = rtcp.recv(&mut buf).expect("a sender report");
    let mut rx_rtcp = SrtpReceiver::new(&master(&keys));
    let plain = rx_rtcp
        .unprotect_rtcp(&mut buf[..n])
        .expect("SRTCP authenticates");
    assert_eq!(buf[1], 200, "an SR first");
    assert!(plain >= 28);
    assert!(
        server.total_reaches("srtcp_dropped", 1, Duration::from_secs(5)) >= 1,
        "the forged SRTCP was counted"
    );
    // A receiver report protected with the client's key is accepted (not counted dropped).
    let client = mikey::parse(&client_message()).unwrap();
    let mut tx = SrtpSender::new(&master(&client));
    let rr = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
    let mut out = [0u8; 64];
    let n = tx.protect_rtcp(&rr, &mut out).unwrap();
    rtcp.send_to(&out[..n], ("127.0.0.1", server_rtcp)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.total_reaches("srtcp_dropped", 1, Duration::ZERO), 1);
}

#[test]
fn a_bad_keymgmt_is_463_with_one_log_line_and_a_viewer_plays_on() {
    let (server, _dir) = server("keymgmt");
    let url = rtsps_url(&server, "sample");
    let (video, _, _) = sample_video();
    // A viewer playing plain RTP inside TLS.
    let mut good = TlsRtsp::connect(server.rtsps.unwrap());
    let d = good.request("DESCRIBE", &url, &[]);
    let base = d.header("Content-Base").unwrap().to_owned();
    let s = good.request(
        "SETUP",
        &format!("{base}trackID={video}"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    let session = common::session_id(&s);
    assert_eq!(
        good.request("PLAY", &url, &[("Session", &session)]).status,
        200
    );

    let mut bad = TlsRtsp::connect(server.rtsps.unwrap());
    assert_eq!(bad.request("DESCRIBE", &url, &[]).status, 200);
    let message = client_message();
    let cases = [
        keymgmt(&url, b"garbage, no MIKEY at all"),
        keymgmt(&url, &message[..message.len() / 2]),
        "prot=mikey; uri=\"x\"; data=\"!!!not base64!!!\"".to_owned(),
        "prot=mikey; uri=\"x\"".to_owned(),
    ];
    for (k, header) in cases.iter().enumerate() {
        let before = server.log_lines().len();
        let s = bad.request(
            "SETUP",
            &format!("{url}/trackID={video}"),
            &[
                ("Transport", "RTP/SAVP;unicast;client_port=40000-40001"),
                ("KeyMgmt", header),
            ],
        );
        assert_eq!(s.status, 463, "case {k}: {header}");
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut new = Vec::new();
        while Instant::now() < deadline {
            new = server.log_lines()[before..].to_vec();
            if !new.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        let new = if new.is_empty() {
            new
        } else {
            server.log_lines()[before..].to_vec()
        };
        assert_eq!(new.len(), 1, "case {k}: one log line: {new:?}");
        assert!(
            new[0].contains("KeyMgmt") || new[0].contains("mikey"),
            "{new:?}"
        );
    }
    // The viewer still gets frames.
    let mut got = 0;
    while got < 20 {
        let (ch, _) = good.read_frame().expect("the viewer plays on");
        if ch == 0 {
            got += 1;
        }
    }
}
