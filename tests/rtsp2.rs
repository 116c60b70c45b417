//! RTSP 2.0 (RFC 7826): GStreamer's `rtspsrc default-rtsp-version=2-0` negotiates 2.0 and
//! plays a file to EOS over UDP and TCP and a live channel; a raw 2.0 client checks each
//! 2.0 header in its exact form (`Media-Properties` §18.29, `Accept-Ranges` §18.5,
//! `Seek-Style` §18.47, `RTP-Info` §18.45, `Transport` with `dest_addr`/`src_addr` §18.54,
//! `Supported` §18.51, `Pipelined-Requests` §18.33), the `PLAY_NOTIFY` at the end of a file
//! (§13.5) and that its own response to it is skipped; a 1.0 client sees none of it; other
//! versions get 505; malformed 2.0 headers are refused with one log line while another
//! viewer plays on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{gst_play, parse_rtp, udp_pair, RawRtsp, Server};
use shardcast::rtsp::response::{interleaved_frame, parse_response, RtspResponse};

/// A folder holding only `short.mp4` (2 s, 50 video frames at 25 fps, AAC), served as
/// `rtsp://…/short`.
fn short_media_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardcast-rtsp2-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        format!("{}/tests/media/short.mp4", env!("CARGO_MANIFEST_DIR")),
        dir.join("short.mp4"),
    )
    .unwrap();
    dir
}

/// Video frames in `short.mp4`, counted by ffprobe (the independent count).
fn short_video_frames() -> usize {
    let out = common::players::ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-count_frames",
        "-show_entries",
        "stream=nb_read_frames",
        "-of",
        "csv=p=0",
        &format!("{}/tests/media/short.mp4", env!("CARGO_MANIFEST_DIR")),
    ]);
    out.trim().parse().unwrap()
}

/// Something the server sent a 2.0 client: a response, or a request (`PLAY_NOTIFY`).
#[derive(Debug)]
enum Incoming {
    Response(RtspResponse),
    Request { head: String },
}

/// A raw RTSP 2.0 client (RFC 7826 §8.1 request lines `… RTSP/2.0`).
struct Client2 {
    stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    /// Interleaved frames read past: (channel, payload).
    frames: Vec<(u8, Vec<u8>)>,
}

impl Client2 {
    fn connect(addr: SocketAddr) -> Client2 {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Client2 {
            stream,
            buf: Vec::new(),
            cseq: 0,
            frames: Vec::new(),
        }
    }

    fn send(&mut self, method: &str, url: &str, version: &str, headers: &[(&str, &str)]) {
        self.cseq += 1;
        let mut req = format!("{method} {url} {version}\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
    }

    /// Sends a 2.0 request and reads its response (asserting the 2.0 status line).
    fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> RtspResponse {
        self.send(method, url, "RTSP/2.0", headers);
        let cseq = self.cseq.to_string();
        match self.next(Duration::from_secs(10)) {
            Some(Incoming::Response(r)) => {
                assert_eq!(r.header("CSeq"), Some(cseq.as_str()), "{r:?}");
                r
            }
            other => panic!("{method} {url}: {other:?}"),
        }
    }

    /// The next response or request, skipping interleaved frames (kept in `frames`).
    fn next(&mut self, limit: Duration) -> Option<Incoming> {
        let end = Instant::now() + limit;
        loop {
            while let Some((ch, payload)) = interleaved_frame(&self.buf) {
                let used = 4 + payload.len();
                self.frames.push((ch, payload.to_vec()));
                self.buf.drain(..used);
            }
            if self.buf.starts_with(b"RTSP/") {
                let status_line_end = self.buf.windows(2).position(|w| w == b"\r\n");
                if let Some(e) = status_line_end {
                    assert!(
                        self.buf.starts_with(b"RTSP/2.0 "),
                        "a 2.0 request is answered in 2.0 (RFC 7826 §4.1): {:?}",
                        String::from_utf8_lossy(&self.buf[..e])
                    );
                }
                if let Some((r, used)) = parse_response(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    return Some(Incoming::Response(r));
                }
            } else if !self.buf.is_empty() && self.buf[0] != b'$' {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    assert!(!head.to_ascii_lowercase().contains("content-length"));
                    self.buf.drain(..end + 4);
                    return Some(Incoming::Request { head });
                }
            }
            if Instant::now() > end {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

/// A header of a request head (`Name: value` lines).
fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Plays `url` with rtspsrc in RTSP 2.0 over `protocol` (`common::gst_play`: each track's
/// branch linked as its pad appears), for at most `limit`: (success, stdout, stderr).
fn gst_2_0(url: &str, protocol: &str, limit: Duration) -> (bool, String, String) {
    gst_play(
        url,
        &[&format!("protocols={protocol}"), "default-rtsp-version=2-0"],
        &[
            ("video", "queue ! decodebin ! checksumsink"),
            ("audio", "queue ! decodebin ! fakesink"),
        ],
        &[("GST_DEBUG", "rtspsrc:4"), ("GST_DEBUG_NO_COLOR", "1")],
        false,
        limit,
    )
}

/// checksumsink's lines (`H:MM:SS.NNNNNNNNN <sha1>`, one per decoded frame).
fn checksum_lines(out: &str) -> usize {
    out.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            matches!((w.next(), w.next(), w.next()), (Some(t), Some(h), None)
                if t.contains(':') && h.len() == 40)
        })
        .count()
}

/// GStreamer 1.22 in RTSP 2.0 plays the file to EOS over UDP and over TCP, decodes every
/// video frame, and says it negotiated 2.0.
#[test]
fn gstreamer_2_0_plays_a_file_to_eos_over_udp_and_tcp() {
    let dir = short_media_dir("gst");
    let server = Server::start(&["--media", dir.to_str().unwrap()]);
    let expected = short_video_frames();
    for protocol in ["udp", "tcp"] {
        let url = server.url("short");
        let (ok, out, err) = gst_2_0(&url, protocol, Duration::from_secs(40));
        let context = format!("gst over {protocol}:\n{out}\n{err}");
        assert!(
            err.contains("Now using version: 2.0"),
            "rtspsrc negotiated 2.0: {context}"
        );
        assert!(out.contains("Got EOS"), "{context}");
        assert!(ok, "{context}");
        assert!(
            !err.contains("unknown transport field"),
            "answers in fields GStreamer knows: {context}"
        );
        let frames = checksum_lines(&out);
        assert_eq!(frames, expected, "every video frame decoded: {context}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// GStreamer in 2.0 plays frames of a live channel (no EOS: stopped after 6 s).
#[test]
fn gstreamer_2_0_plays_a_live_channel() {
    let server = Server::start(&[
        "--live",
        &format!("ch={}/tests/media/short.mp4", env!("CARGO_MANIFEST_DIR")),
    ]);
    let url = server.url("ch");
    let (_, out, err) = gst_2_0(&url, "tcp", Duration::from_secs(6));
    let context = format!("{out}\n{err}");
    assert!(err.contains("Now using version: 2.0"), "{context}");
    let frames = checksum_lines(&out);
    assert!(
        frames >= 50,
        "2 s and more of live video decoded: {frames}: {context}"
    );
}

/// Every 2.0 header in its exact form, UDP with `dest_addr`, a pipelined second SETUP, RTP
/// from the right SSRC, and the `PLAY_NOTIFY` at the end of the file; the client's response
/// to it is skipped and the connection goes on.
#[test]
fn raw_2_0_client_sees_each_header_and_the_end_of_stream_notify() {
    let dir = short_media_dir("raw");
    let server = Server::start_logged(&["--media", dir.to_str().unwrap()]);
    let url = server.url("short");
    let mut c = Client2::connect(server.addr);

    let o = c.request("OPTIONS", &url, &[]);
    assert_eq!(o.status, 200);
    assert_eq!(
        o.header("Supported"),
        Some("play.basic, play.scale, play.speed")
    );
    assert!(o.header("Public").unwrap().contains("PLAY"));

    let d = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200);
    assert_eq!(
        d.header("Media-Properties"),
        Some("Random-Access, Immutable, Unlimited")
    );
    let base = d.header("Content-Base").unwrap().to_owned();
    assert_eq!(base, format!("rtsp://{}/short/", server.addr));

    // Track 0 over UDP named by dest_addr, in a pipeline (RFC 7826 §18.33).
    let (rtp, _rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let transport = format!(
        "RTP/AVP/UDP;unicast;dest_addr=\"127.0.0.1:{port}\"/\"127.0.0.1:{}\"",
        port + 1
    );
    let s0 = c.request(
        "SETUP",
        &format!("{base}trackID=0"),
        &[("Transport", &transport), ("Pipelined-Requests", "7")],
    );
    assert_eq!(s0.status, 200, "{s0:?}");
    assert_eq!(s0.header("Accept-Ranges"), Some("npt"));
    assert_eq!(
        s0.header("Media-Properties"),
        Some("Random-Access, Immutable, Unlimited")
    );
    assert_eq!(s0.header("Pipelined-Requests"), Some("7"));
    let t = s0.header("Transport").unwrap();
    let session = s0.session().unwrap();
    assert_eq!(
        session.len(),
        16,
        "RFC 7826 §18.49: at least 8 octets of id"
    );
    let prefix = format!(
        "RTP/AVP/UDP;unicast;dest_addr=\"127.0.0.1:{port}\"/\"127.0.0.1:{}\";src_addr=\"127.0.0.1:",
        port + 1
    );
    assert!(t.starts_with(&prefix), "{t}");
    let ssrc_hex = t.rsplit_once(";ssrc=").unwrap().1;
    assert_eq!(ssrc_hex.len(), 8, "{t}");
    let ssrc = u32::from_str_radix(ssrc_hex, 16).unwrap();
    let src_rtp: SocketAddr = t
        .split("src_addr=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // Track 1 interleaved, same pipeline, no Session header: joins the same session.
    let s1 = c.request(
        "SETUP",
        &format!("{base}trackID=1"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
            ("Pipelined-Requests", "7"),
        ],
    );
    assert_eq!(s1.status, 200, "{s1:?}");
    assert_eq!(s1.session().as_deref(), Some(session.as_str()));
    let t1 = s1.header("Transport").unwrap();
    assert!(
        t1.starts_with("RTP/AVP/TCP;unicast;interleaved=2-3;ssrc="),
        "{t1}"
    );

    let p = c.request("PLAY", &base, &[("Session", &session), ("Range", "npt=0-")]);
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.header("Seek-Style"), Some("RAP"));
    assert_eq!(
        p.header("Media-Properties"),
        Some("Random-Access, Immutable, Unlimited")
    );
    let range = p.header("Range").unwrap().to_owned();
    assert!(range.starts_with("npt=0.000-2.0"), "the 2 s file: {range}");
    let info = p.header("RTP-Info").unwrap();
    let first = info.split(',').next().unwrap();
    let want = format!("url=\"{base}trackID=0\" ssrc={ssrc_hex}:seq=");
    assert!(first.starts_with(&want), "RFC 7826 §18.45 form: {info}");
    let seq0: u16 = first[want.len()..]
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first.contains(";rtptime="), "{info}");
    assert!(
        info.contains(&format!("url=\"{base}trackID=1\" ssrc=")),
        "{info}"
    );

    // RTP on UDP: from src_addr, with the answered SSRC, starting at RTP-Info's seq.
    let mut buf = [0u8; 2048];
    let (n, from) = rtp.recv_from(&mut buf).expect("RTP over UDP");
    assert_eq!(from, src_rtp, "RTP comes from src_addr");
    let h = parse_rtp(&buf[..n]).unwrap();
    assert_eq!((h.ssrc, h.seq), (ssrc, seq0));

    // At the end of the 2 s file: PLAY_NOTIFY on this connection (RFC 7826 §13.5).
    let notify = match c.next(Duration::from_secs(8)) {
        Some(Incoming::Request { head }) => head,
        Some(other) => panic!("unexpected {other:?}"),
        None => panic!("no PLAY_NOTIFY within 8 s of the end"),
    };
    let line = notify.lines().next().unwrap();
    assert_eq!(line, format!("PLAY_NOTIFY {base} RTSP/2.0"), "{notify}");
    assert_eq!(head_header(&notify, "Notify-Reason"), Some("end-of-stream"));
    assert_eq!(head_header(&notify, "Session"), Some(session.as_str()));
    assert_eq!(head_header(&notify, "Range"), Some(range.as_str()));
    assert_eq!(
        head_header(&notify, "CSeq"),
        Some("1"),
        "the server's own sequence"
    );
    let info = head_header(&notify, "RTP-Info").unwrap();
    assert!(
        info.starts_with(&format!("url=\"{base}trackID=0\" ssrc={ssrc_hex}:seq=")),
        "{info}"
    );
    // The last packet's seq: every packet of track 0 was read up to it.
    let mut last = h.seq;
    while let Ok((n, _)) = rtp.recv_from(&mut buf) {
        last = parse_rtp(&buf[..n]).unwrap().seq;
    }
    let notified: u16 = info
        .split(',')
        .next()
        .unwrap()
        .rsplit_once(":seq=")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(
        notified, last,
        "RTP-Info seq is the last packet sent: {info}"
    );
    assert!(c.frames.iter().any(|(ch, _)| *ch == 2), "audio interleaved");

    // The client's answer (RFC 7826 §8.2) is skipped; the connection serves on, silently.
    c.stream
        .write_all(b"RTSP/2.0 200 OK\r\nCSeq: 1\r\nSession: x\r\n\r\n")
        .unwrap();
    let o = c.request("GET_PARAMETER", &base, &[("Session", &session)]);
    assert_eq!(o.status, 200);
    let t = c.request("TEARDOWN", &base, &[("Session", &session)]);
    assert_eq!(t.status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log_lines().join("\n");
    assert!(!log.contains("refused"), "nothing refused: {log}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A 1.0 client on the same file sees none of the 2.0 headers and no PLAY_NOTIFY.
#[test]
fn rtsp_1_0_clients_see_nothing_of_2_0() {
    let dir = short_media_dir("v1");
    let server = Server::start(&["--media", dir.to_str().unwrap()]);
    let url = server.url("short");
    let mut c = RawRtsp::connect(server.addr);
    let o = c.request("OPTIONS", &url, &[]);
    assert_eq!(o.header("Supported"), None);
    let (d, session) = c.setup_interleaved(&url, &[0, 1]);
    assert_eq!(d.header("Media-Properties"), None);
    let p = c.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(p.status, 200);
    for name in [
        "Media-Properties",
        "Seek-Style",
        "Accept-Ranges",
        "Pipelined-Requests",
    ] {
        assert_eq!(p.header(name), None, "{name}");
    }
    let info = p.header("RTP-Info").unwrap();
    assert!(
        info.starts_with("url=rtsp://") && !info.contains("ssrc="),
        "{info}"
    );
    // Read media past the end of the file: a PLAY_NOTIFY would fail the response parser.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && c.read_frame().is_some() {}
    let g = c.request("GET_PARAMETER", &url, &[("Session", &session)]);
    assert_eq!(g.status, 200);
    assert_eq!(c.buffered(), 0, "nothing but the answer came");
    let _ = std::fs::remove_dir_all(dir);
}

/// Versions other than 1.0 and 2.0 are 505 (RFC 7826 §17.5.6); the answer is 1.0.
#[test]
fn other_versions_get_505() {
    let server = Server::start(&[]);
    for version in ["RTSP/3.0", "RTSP/1.1"] {
        let mut c = Client2::connect(server.addr);
        c.send("OPTIONS", "*", version, &[]);
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let mut chunk = [0u8; 1024];
            match c.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let (r, _) = parse_response(&got).unwrap().unwrap();
        assert_eq!(r.status, 505, "{version}");
        assert_eq!(r.header("CSeq"), Some("1"));
    }
}

/// A bad `dest_addr` is 461 and a hostile `Pipelined-Requests` 400, each with one log line;
/// a 1.0 viewer playing meanwhile keeps receiving.
#[test]
fn malformed_2_0_headers_are_refused_and_others_play_on() {
    let server = Server::start_logged(&[]);
    let url = server.url("sample");
    let mut viewer = RawRtsp::connect(server.addr);
    let (_, session) = viewer.setup_interleaved(&url, &[0]);
    let p = viewer.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(p.status, 200);

    let mut c = Client2::connect(server.addr);
    let cases: [(&str, &str, u16, &str); 4] = [
        (
            "RTP/AVP/UDP;unicast;dest_addr=\"nowhere:5000\"",
            "1",
            461,
            "invalid dest_addr",
        ),
        (
            "RTP/AVP/UDP;unicast;dest_addr=\"192.0.2.9:5000\"/\"192.0.2.9:5001\"",
            "2",
            461,
            "no supported alternative",
        ),
        (
            "RTP/AVP/TCP;unicast;interleaved=0-1",
            "12345678901234567890",
            400,
            "Pipelined-Requests",
        ),
        (
            "RTP/AVP/TCP;unicast;interleaved=0-1",
            "1;evil",
            400,
            "Pipelined-Requests",
        ),
    ];
    for (transport, pipeline, status, _) in cases {
        let r = c.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &[("Transport", transport), ("Pipelined-Requests", pipeline)],
        );
        assert_eq!(r.status, status, "{transport} / {pipeline}: {r:?}");
    }
    // The viewer still receives media after all that.
    let mut frames = 0;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && frames < 20 {
        if viewer.read_frame().is_some() {
            frames += 1;
        }
    }
    assert_eq!(frames, 20, "the other viewer plays on");
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log_lines();
    for (_, _, status, what) in cases {
        let lines = log
            .iter()
            .filter(|l| l.contains("request refused") && l.contains(&format!("status={status}")))
            .filter(|l| l.contains(what))
            .count();
        assert!(lines >= 1, "a log line for {what}: {log:#?}");
    }
    let refused = log.iter().filter(|l| l.contains("request refused")).count();
    assert_eq!(refused, cases.len(), "one line each: {log:#?}");
    let _ = UdpSocket::bind("127.0.0.1:0");
}
