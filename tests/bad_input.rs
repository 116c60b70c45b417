//! Hostile and broken input on the wire and on disk: every bad request gets the exact
//! RFC 2326 status code, exactly one refusal log line naming the peer and that status, and the
//! same server keeps serving a normal client afterwards (`assert_still_serves`: OPTIONS,
//! DESCRIBE, SETUP over UDP, PLAY of `sample`, at least 20 RTP packets within 3 s, TEARDOWN).
//!
//! How it fails: a wrong status code names the case; a parse error that leaves the connection
//! open (framing is lost) fails `closed_within`; a refusal logged zero or several times fails the
//! log count; a crash or a wedged control thread fails `assert_still_serves` or `is_running`;
//! a slow TCP viewer that stalls its shard shows as a sequence gap on a concurrent UDP viewer.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{parse_rtp, udp_pair, RawRtsp, RtspResponse, Server};

const SAMPLE: &[u8] = include_bytes!("media/sample.mp4");

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh client plays `sample` over UDP and receives at least 20 RTP packets within 3 s.
fn assert_still_serves(server: &Server) {
    assert_stream_serves(server, "sample");
}

/// A fresh client plays `name`'s first track over UDP: OPTIONS, DESCRIBE, SETUP, PLAY, at
/// least 20 RTP packets within 3 s, TEARDOWN.
fn assert_stream_serves(server: &Server, name: &str) {
    let url = server.url(name);
    let mut c = RawRtsp::connect(server.addr);
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200, "OPTIONS");
    let d = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200, "DESCRIBE {name}");
    assert!(!d.body.is_empty(), "DESCRIBE returns an SDP");
    let base = d.header("Content-Base").expect("Content-Base").to_owned();
    let (rtp, _rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let transport = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    let s = c.request(
        "SETUP",
        &format!("{base}trackID=0"),
        &[("Transport", &transport)],
    );
    assert_eq!(s.status, 200, "SETUP");
    let session = s.session().expect("Session");
    let p = c.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(p.status, 200, "PLAY");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while got < 20 && Instant::now() < deadline {
        if let Ok(n) = rtp.recv(&mut buf) {
            if parse_rtp(&buf[..n]).is_some() {
                got += 1;
            }
        }
    }
    assert!(got >= 20, "still serving: only {got} RTP packets in 3 s");
    let t = c.request("TEARDOWN", &url, &[("Session", &session)]);
    assert_eq!(t.status, 200, "TEARDOWN");
}

/// Log lines about a refusal to the client on local `port` with `status`.
fn refusal_lines(server: &Server, port: u16, status: u16) -> Vec<String> {
    let peer = format!("peer=127.0.0.1:{port} ");
    let code = format!("status={status}");
    server
        .log_lines()
        .into_iter()
        .filter(|l| {
            (l.contains(&peer) || l.ends_with(&format!("peer=127.0.0.1:{port}")))
                && l.contains(&code)
        })
        .collect()
}

/// Waits (up to 2 s) for the refusal line, then checks there is exactly one.
fn assert_one_refusal_line(server: &Server, port: u16, status: u16, case: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut lines = refusal_lines(server, port, status);
    while lines.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        lines = refusal_lines(server, port, status);
    }
    assert_eq!(
        lines.len(),
        1,
        "{case}: exactly one log line names the peer and status {status}: {lines:#?}"
    );
}

fn local_port(c: &RawRtsp) -> u16 {
    c.stream.local_addr().unwrap().port()
}

/// One request that the server refuses without closing the connection.
struct Refusal<'a> {
    case: &'a str,
    method: &'a str,
    url: String,
    headers: Vec<(&'a str, String)>,
    want: u16,
}

/// Sends the request on a new connection, checks the status, the CSeq echo, one log line,
/// that the connection still answers, and that the server still serves others.
fn check_refusal(server: &Server, r: &Refusal<'_>) -> RtspResponse {
    let mut c = RawRtsp::connect(server.addr);
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = c.request(r.method, &r.url, &headers);
    assert_eq!(resp.status, r.want, "{}", r.case);
    assert_one_refusal_line(server, local_port(&c), r.want, r.case);
    // A refusal is not a framing error: the connection stays usable.
    assert_eq!(
        c.request("OPTIONS", "*", &[]).status,
        200,
        "{}: connection still answers",
        r.case
    );
    assert_still_serves(server);
    resp
}

/// A client session on `sample` with both tracks set up over UDP (not playing yet).
struct UdpViewer {
    rtsp: RawRtsp,
    url: String,
    base: String,
    session: String,
    socks: Vec<(std::net::UdpSocket, std::net::UdpSocket)>,
}

fn setup_udp(server: &Server, tracks: usize) -> UdpViewer {
    let url = server.url("sample");
    let mut rtsp = RawRtsp::connect(server.addr);
    let d = rtsp.request("DESCRIBE", &url, &[]);
    assert_eq!(d.status, 200);
    let base = d.header("Content-Base").unwrap().to_owned();
    let mut session: Option<String> = None;
    let mut socks = Vec::new();
    for track in 0..tracks {
        let (rtp, rtcp) = udp_pair();
        let port = rtp.local_addr().unwrap().port();
        let transport = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
        let mut headers = vec![("Transport", transport.as_str())];
        if let Some(s) = &session {
            headers.push(("Session", s.as_str()));
        }
        let r = rtsp.request("SETUP", &format!("{base}trackID={track}"), &headers);
        assert_eq!(r.status, 200, "SETUP track {track}");
        session = r.session();
        socks.push((rtp, rtcp));
    }
    UdpViewer {
        rtsp,
        url,
        base,
        session: session.unwrap(),
        socks,
    }
}

// ---------------------------------------------------------------------------------------------
// Framing errors: answered, logged once, connection closed
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_requests_get_their_status_and_the_connection_is_closed() {
    let server = Server::start_logged(&[]);
    let huge_header = format!(
        "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let mut many_headers = String::from("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n");
    for i in 0..100 {
        many_headers.push_str(&format!("X-H{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    let non_utf8: &[u8] = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Bin: \xff\xfe\xc3\x28\r\n\r\n";
    let describe = server.url("sample");
    let big_body =
        format!("ANNOUNCE {describe} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 65537\r\n\r\n");
    let absurd_body = format!(
        "ANNOUNCE {describe} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999999999999999999\r\n\r\n"
    );
    // (case, bytes, status, CSeq echoed)
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        (
            "garbage request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            None,
        ),
        ("method only", b"DESCRIBE\r\n\r\n".to_vec(), 400, None),
        (
            "NUL in request line",
            b"OPTIONS /a\0b RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec(),
            400,
            Some("1"),
        ),
        ("head over 8 KiB", huge_header.into_bytes(), 400, Some("1")),
        // 101 header lines: CSeq + 100 others.
        ("101 headers", many_headers.into_bytes(), 400, Some("1")),
        (
            "missing CSeq",
            b"OPTIONS * RTSP/1.0\r\nUser-Agent: t\r\n\r\n".to_vec(),
            400,
            None,
        ),
        (
            "unknown method",
            b"FOO * RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec(),
            501,
            Some("1"),
        ),
        (
            "RTSP/3.0",
            b"OPTIONS * RTSP/3.0\r\nCSeq: 1\r\n\r\n".to_vec(),
            505,
            Some("1"),
        ),
        ("non-UTF-8 header value", non_utf8.to_vec(), 400, Some("1")),
        (
            "Content-Length over 64 KiB",
            big_body.into_bytes(),
            413,
            Some("1"),
        ),
        (
            "Content-Length overflowing",
            absurd_body.into_bytes(),
            413,
            Some("1"),
        ),
        (
            "valid request after a parse error is not answered",
            b"GARBAGE\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n".to_vec(),
            400,
            None,
        ),
    ];
    for (case, bytes, want, cseq) in cases {
        let mut c = RawRtsp::connect(server.addr);
        c.send_raw(&bytes);
        let r = c
            .read_response()
            .unwrap_or_else(|| panic!("{case}: a response before the close"));
        assert_eq!(r.status, want, "{case}");
        assert_eq!(r.header("CSeq"), cseq, "{case}: CSeq echo");
        assert_eq!(
            r.header("Connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("close"),
            "{case}: Connection: close announced"
        );
        assert_eq!(
            c.buffered(),
            0,
            "{case}: nothing after the error response (later requests are not answered)"
        );
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{case}: framing is lost, so the server closes the connection"
        );
        assert_one_refusal_line(&server, local_port(&c), want, case);
        assert_still_serves(&server);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let url = server.url("sample");
    let mut c = RawRtsp::connect(server.addr);
    let batch = format!(
        "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n\
         DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n\
         OPTIONS * RTSP/1.0\r\nCSeq: 3\r\n\r\n"
    );
    c.stream.write_all(batch.as_bytes()).unwrap();
    for cseq in 1..=3 {
        let r = c.read_response().expect("a response per pipelined request");
        assert_eq!(r.status, 200, "request {cseq}");
        assert_eq!(r.header("CSeq"), Some(cseq.to_string().as_str()), "order");
        if cseq == 2 {
            assert!(
                r.body.starts_with(b"v=0"),
                "the DESCRIBE answer carries the SDP"
            );
        } else {
            assert!(r.header("Public").is_some(), "OPTIONS answer has Public");
        }
    }
    assert_still_serves(&server);
}

// ---------------------------------------------------------------------------------------------
// Well-framed requests refused: connection stays open
// ---------------------------------------------------------------------------------------------

#[test]
fn methods_not_served_get_405_with_allow() {
    let server = Server::start_logged(&[]);
    // Publishing is served, but refused on a server with no publish rule.
    for method in ["ANNOUNCE", "RECORD"] {
        check_refusal(
            &server,
            &Refusal {
                case: method,
                method,
                url: server.url("sample"),
                headers: vec![],
                want: 403,
            },
        );
    }
    for method in ["SET_PARAMETER", "REDIRECT"] {
        let r = check_refusal(
            &server,
            &Refusal {
                case: method,
                method,
                url: server.url("sample"),
                headers: vec![],
                want: 405,
            },
        );
        let allow = r
            .header("Allow")
            .expect("405 carries Allow (RFC 2326 §10.4.6)");
        for m in ["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN"] {
            assert!(allow.contains(m), "{method}: Allow lists {m}: {allow}");
        }
        assert!(
            !allow.split(',').any(|a| a.trim() == method),
            "{method}: Allow does not list it: {allow}"
        );
    }
}

#[test]
fn describe_of_unknown_or_escaping_paths_is_never_200() {
    let server = Server::start_logged(&[]);
    let host = server.addr;
    // (case, uri, status): unknown names are 404; URIs that try to leave the media root are
    // refused by rtsp::uri before any lookup, which answers 400 (UriError::status).
    let cases = [
        ("unknown path", format!("rtsp://{host}/nosuch"), 404),
        ("dot-dot", format!("rtsp://{host}/../etc/passwd"), 400),
        ("encoded dot-dot", format!("rtsp://{host}/%2e%2e/x"), 400),
        (
            "encoded separators",
            format!("rtsp://{host}/sample/..%2f..%2fetc"),
            400,
        ),
        (
            "backslashes",
            format!("rtsp://{host}/..\\..\\etc\\passwd"),
            400,
        ),
        ("encoded NUL", format!("rtsp://{host}/sample%00.mp4"), 400),
        ("bad percent-encoding", format!("rtsp://{host}/%zz"), 400),
        ("absolute path dot-dot", "/../sample".to_owned(), 400),
    ];
    for (case, url, want) in cases {
        let r = check_refusal(
            &server,
            &Refusal {
                case,
                method: "DESCRIBE",
                url,
                headers: vec![],
                want,
            },
        );
        assert!(r.body.is_empty(), "{case}: no SDP");
    }
}

#[test]
fn setup_errors_get_rfc_2326_codes() {
    let server = Server::start_logged(&[]);
    let base = format!("{}/", server.url("sample"));
    let udp = "RTP/AVP;unicast;client_port=40000-40001".to_owned();
    let t = |v: &str| vec![("Transport", v.to_owned())];
    // One refusal of each kind through a real connection (status, CSeq, one log line, the
    // connection stays usable); the full table of SETUP refusals is the session core's
    // unit test `rtsp::session::tests::setup_refusals`.
    let cases = [
        ("unknown track", format!("{base}trackID=9"), t(&udp), 404),
        (
            "unknown protocol",
            format!("{base}trackID=0"),
            t("FOO/BAR"),
            461,
        ),
        (
            "unknown Session",
            format!("{base}trackID=0"),
            vec![
                ("Transport", udp.clone()),
                ("Session", "0123456789ABCDEF".to_owned()),
            ],
            454,
        ),
    ];
    for (case, url, headers, want) in cases {
        check_refusal(
            &server,
            &Refusal {
                case,
                method: "SETUP",
                url,
                headers,
                want,
            },
        );
    }

    // §11.3.6 / Appendix A: no SETUP while playing.
    let mut v = setup_udp(&server, 1);
    let r = v.rtsp.request("PLAY", &v.url, &[("Session", &v.session)]);
    assert_eq!(r.status, 200);
    let (rtp, _rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let transport = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    let r = v.rtsp.request(
        "SETUP",
        &format!("{}trackID=1", v.base),
        &[("Transport", &transport), ("Session", &v.session)],
    );
    assert_eq!(r.status, 455, "SETUP into a playing session");
    assert_one_refusal_line(&server, local_port(&v.rtsp), 455, "SETUP while playing");
    // The playing session is unharmed.
    v.socks[0]
        .0
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = v.socks[0].0.recv(&mut buf).expect("session still streams");
    assert!(parse_rtp(&buf[..n]).is_some());
    let r = v
        .rtsp
        .request("TEARDOWN", &v.url, &[("Session", &v.session)]);
    assert_eq!(r.status, 200);
    assert_still_serves(&server);
}

#[test]
fn play_pause_teardown_errors_get_rfc_2326_codes() {
    let server = Server::start_logged(&[]);
    let url = server.url("sample");
    // The full table is the session core's unit test
    // `rtsp::session::tests::play_pause_teardown_refusals`; here one case through a real
    // connection, then refusals on a real session that must keep streaming.
    let cases = [(
        "PLAY with an unknown session",
        "PLAY",
        vec![("Session", "0123456789ABCDEF".to_owned())],
        454,
    )];
    for (case, method, headers, want) in cases {
        check_refusal(
            &server,
            &Refusal {
                case,
                method,
                url: url.clone(),
                headers,
                want,
            },
        );
    }

    // Cases that need a real session (both tracks, Ready).
    let mut v = setup_udp(&server, 2);
    let port = local_port(&v.rtsp);
    let sid = v.session.clone();
    let track0 = format!("{}trackID=0", v.base);
    let state_cases: [(&str, &str, &str, Option<&str>, u16); 2] = [
        // §11.3.5 457: a start beyond the end of the presentation.
        ("Range past the end", "PLAY", &url, Some("npt=999-"), 457),
        // §11.3.11 460: one track of a 2-track session cannot be played alone.
        ("track-level PLAY", "PLAY", &track0, None, 460),
    ];
    for (case, method, uri, range, want) in state_cases {
        let mut headers = vec![("Session", sid.as_str())];
        if let Some(range) = range {
            headers.push(("Range", range));
        }
        let before = refusal_lines(&server, port, want).len();
        let r = v.rtsp.request(method, uri, &headers);
        assert_eq!(r.status, want, "{case}");
        let deadline = Instant::now() + Duration::from_secs(2);
        while refusal_lines(&server, port, want).len() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            refusal_lines(&server, port, want).len(),
            before + 1,
            "{case}: one refusal log line"
        );
        assert_still_serves(&server);
    }
    // After all that, the session itself still plays.
    let r = v.rtsp.request("PLAY", &url, &[("Session", &sid)]);
    assert_eq!(
        r.status, 200,
        "the refused requests left the session usable"
    );
    let mut buf = [0u8; 2048];
    v.socks[0]
        .0
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert!(v.socks[0].0.recv(&mut buf).is_ok(), "and streams");
    assert_eq!(
        v.rtsp
            .request("TEARDOWN", &url, &[("Session", &sid)])
            .status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Timeouts: expired sessions and silent connections
// ---------------------------------------------------------------------------------------------

#[test]
fn expired_session_is_gone_and_silent_connection_is_closed_while_others_play() {
    let mut server = Server::start_logged(&["--session-timeout", "2"]);
    let start = Instant::now();
    // A client that connects and never sends a byte.
    let mut silent = RawRtsp::connect(server.addr);
    // A session that is set up and then abandoned (no RTSP, no RTCP).
    let v = setup_udp(&server, 1);
    let abandoned = v.session.clone();
    let url = v.url.clone();
    drop(v);
    // Others are unaffected while both wait to be timed out.
    assert_still_serves(&server);
    assert!(
        silent.closed_within(Duration::from_secs(4).saturating_sub(start.elapsed())),
        "a silent connection is closed within ~4 s with --session-timeout 2"
    );
    let closed_after = start.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1800),
        "not before the timeout: {closed_after:?}"
    );
    // The session expires after 2 s of silence (reaped each second).
    let wait = Duration::from_millis(3500).saturating_sub(start.elapsed());
    std::thread::sleep(wait);
    let mut again = RawRtsp::connect(server.addr);
    let r = again.request("PLAY", &url, &[("Session", &abandoned)]);
    assert_eq!(r.status, 454, "expired session is gone (RFC 2326 §12.37)");
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("session expired")),
        "the expiry is logged"
    );
    assert_still_serves(&server);
    assert!(server.is_running());
}

// ---------------------------------------------------------------------------------------------
// Media folder with broken files
// ---------------------------------------------------------------------------------------------

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("shardcast-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Offset of the first box of type `kind` (depth-first through the container boxes).
fn find_box(data: &[u8], start: usize, end: usize, kind: &[u8; 4]) -> Option<usize> {
    let mut off = start;
    while off + 8 <= end {
        let size = u32::from_be_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        if size < 8 || off + size > end {
            return None;
        }
        let typ: [u8; 4] = data[off + 4..off + 8].try_into().unwrap();
        if &typ == kind {
            return Some(off);
        }
        if [b"moov", b"trak", b"mdia", b"minf", b"stbl"].contains(&&typ) {
            if let Some(found) = find_box(data, off + 8, off + size, kind) {
                return Some(found);
            }
        }
        off += size;
    }
    None
}

fn write_bad_files(root: &Path) {
    std::fs::write(root.join("good.mp4"), SAMPLE).unwrap();
    std::fs::write(root.join("notmp4.mp4"), b"this is plain text, not an mp4\n").unwrap();
    std::fs::write(root.join("truncated.mp4"), &SAMPLE[..SAMPLE.len() * 4 / 10]).unwrap();

    let mut big = SAMPLE.to_vec();
    let too_big = u32::try_from(SAMPLE.len() + 1000).unwrap();
    big[0..4].copy_from_slice(&too_big.to_be_bytes());
    std::fs::write(root.join("bigbox.mp4"), big).unwrap();

    let mut zero = SAMPLE.to_vec();
    let mdhd = find_box(&zero, 0, zero.len(), b"mdhd").expect("sample has an mdhd");
    assert_eq!(zero[mdhd + 8], 0, "version 0 mdhd");
    // Payload at +8: version/flags 4, creation 4, modification 4, then the timescale.
    let ts = mdhd + 8 + 12;
    assert_ne!(&zero[ts..ts + 4], &[0, 0, 0, 0]);
    zero[ts..ts + 4].copy_from_slice(&[0, 0, 0, 0]);
    std::fs::write(root.join("zerotimescale.mp4"), zero).unwrap();

    let mut stco = SAMPLE.to_vec();
    let at = find_box(&stco, 0, stco.len(), b"stco").expect("sample has an stco");
    // Payload: version/flags 4, entry count 4, then 32-bit offsets; patch the first.
    let entry = at + 8 + 8;
    let past_end = u32::try_from(SAMPLE.len() + 4096).unwrap();
    stco[entry..entry + 4].copy_from_slice(&past_end.to_be_bytes());
    std::fs::write(root.join("badstco.mp4"), stco).unwrap();
}

#[test]
fn media_folder_with_broken_files_refuses_them_and_serves_the_good_one() {
    let tmp = TempDir::new("badmedia");
    let root = tmp.0.join("media");
    let outside = tmp.0.join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    write_bad_files(&root);
    std::fs::write(outside.join("secret.mp4"), SAMPLE).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.mp4"), root.join("link.mp4")).unwrap();

    let server = Server::start_logged(&["--media", root.to_str().unwrap()]);
    let host = server.addr;
    let cases = [
        ("text file", server.url("notmp4"), 404),
        ("truncated at 40%", server.url("truncated"), 404),
        ("first box larger than the file", server.url("bigbox"), 404),
        ("zero mdhd timescale", server.url("zerotimescale"), 404),
        ("stco entry past the end", server.url("badstco"), 404),
        (
            "symlink to a file outside the root",
            server.url("link"),
            404,
        ),
        (
            "dot-dot out of the root",
            format!("rtsp://{host}/../outside/secret"),
            400,
        ),
        (
            "encoded dot-dot out of the root",
            format!("rtsp://{host}/%2e%2e/outside/secret"),
            400,
        ),
    ];
    for (case, url, want) in cases {
        let mut c = RawRtsp::connect(server.addr);
        let r = c.request("DESCRIBE", &url, &[]);
        assert_eq!(r.status, want, "{case}");
        assert!(r.body.is_empty(), "{case}: no SDP");
        assert_one_refusal_line(&server, local_port(&c), want, case);
        assert_stream_serves(&server, "good");
    }
    // The reasons are logged (the client only learns 404).
    let log = server.log_lines().join("\n");
    for file in [
        "notmp4.mp4",
        "truncated.mp4",
        "bigbox.mp4",
        "zerotimescale.mp4",
        "badstco.mp4",
    ] {
        assert!(log.contains(file), "why {file} is refused is logged");
    }
}

// ---------------------------------------------------------------------------------------------
// TCP interleaved viewers that vanish or stall
// ---------------------------------------------------------------------------------------------

/// A new session on `c`: SETUP of both tracks over TCP interleaved (channels `first`..`first+3`)
/// and PLAY; returns the session id.
fn play_tcp(c: &mut RawRtsp, server: &Server, first: u8) -> String {
    let url = server.url("sample");
    let mut session: Option<String> = None;
    for track in 0..2u8 {
        let rtp = first + track * 2;
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", rtp, rtp + 1);
        let mut headers = vec![("Transport", transport.as_str())];
        if let Some(s) = &session {
            headers.push(("Session", s.as_str()));
        }
        let r = c.request("SETUP", &format!("{url}/trackID={track}"), &headers);
        assert_eq!(r.status, 200, "SETUP TCP track {track}");
        session = r.session();
    }
    let session = session.unwrap();
    let r = c.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(r.status, 200);
    session
}

#[test]
fn tcp_viewer_vanishing_mid_stream_leaves_the_server_serving() {
    let mut server = Server::start_logged(&[]);
    let mut c = RawRtsp::connect(server.addr);
    let session = play_tcp(&mut c, &server, 0);
    for _ in 0..10 {
        let (ch, payload) = c.read_frame().expect("interleaved frames");
        assert!(ch < 4);
        if ch % 2 == 0 {
            assert!(parse_rtp(&payload).is_some());
        }
    }
    drop(c);
    // The session dies with its connection.
    let deadline = Instant::now() + Duration::from_secs(3);
    let ended = |s: &Server| {
        s.log_lines()
            .iter()
            .any(|l| l.contains(&session) && l.contains("ended"))
    };
    while !ended(&server) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ended(&server), "the vanished viewer's session is torn down");
    assert_still_serves(&server);
    assert!(server.is_running(), "no crash");
}

/// The kernel's ceiling for an autotuned TCP send buffer (`tcp_wmem` max).
fn tcp_wmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

#[test]
fn tcp_viewer_that_stops_reading_is_cut_off_while_udp_viewer_gets_every_packet() {
    let mut server = Server::start_logged(&[]);
    // The stalled viewer: a tiny receive buffer, and it never reads after PLAY. The server's
    // kernel send buffer autotunes up to tcp_wmem max (4 MiB by default), far more than one
    // play of the 0.9 MB clip, so the 512 KiB user-space backlog could never fill with one
    // session. The viewer therefore plays enough copies of the clip over the same connection
    // (one session per channel pair) to exceed kernel buffer + backlog with 2 MiB to spare.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut stalled = RawRtsp::from_stream(TcpStream::from(sock));
    let needed = tcp_wmem_max() + (512 << 10) + (2 << 20);
    let copies = needed.div_ceil(SAMPLE.len()).min(60);
    let stalled_sessions: Vec<String> = (0..copies)
        .map(|i| play_tcp(&mut stalled, &server, u8::try_from(i * 4).unwrap()))
        .collect();

    // A well-behaved UDP viewer of the same clip at the same time.
    let mut v = setup_udp(&server, 2);
    let r = v.rtsp.request("PLAY", &v.url, &[("Session", &v.session)]);
    assert_eq!(r.status, 200);
    let mut counts = [0usize; 2];
    let mut last: [Option<u16>; 2] = [None, None];
    let mut buf = [0u8; 2048];
    for (rtp, _) in &v.socks {
        rtp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
    }
    let cut_off = |s: &Server| {
        s.log_lines().iter().any(|l| {
            l.contains("too slow") && stalled_sessions.iter().any(|id| l.contains(id.as_str()))
        })
    };
    // The clip is 10 s; stop when both tracks have been quiet for 1.5 s, or at 14 s.
    let start = Instant::now();
    let mut last_packet = Instant::now();
    let mut cut_at = None;
    while start.elapsed() < Duration::from_secs(14)
        && last_packet.elapsed() < Duration::from_millis(1500)
    {
        for (i, (rtp, _)) in v.socks.iter().enumerate() {
            while let Ok(n) = rtp.recv(&mut buf) {
                let p = parse_rtp(&buf[..n]).expect("RTP");
                if let Some(l) = last[i] {
                    assert_eq!(p.seq, l.wrapping_add(1), "track {i}: no sequence gap");
                }
                last[i] = Some(p.seq);
                // Video: packets; audio (track 1): AAC frames, several per packet.
                counts[i] += if i == 1 {
                    common::aac_units_completed(&buf[..n])
                } else {
                    1
                };
                last_packet = Instant::now();
            }
        }
        if cut_at.is_none() && cut_off(&server) {
            cut_at = Some(start.elapsed());
        }
    }
    assert!(
        counts[0] > 200 && counts[1] > 400,
        "the UDP viewer received the whole clip (video packets, AAC frames): {counts:?}"
    );
    let cut_at = cut_at.unwrap_or_else(|| {
        panic!("the stalled viewer ({copies} sessions on one connection) was not cut off")
    });
    eprintln!("stalled viewer cut off after {cut_at:?}; UDP viewer got {counts:?} packets");
    // The server shut the connection down: anything the viewer sends now is answered with a
    // reset, and what is left to read ends in an error or end-of-stream.
    let _ = stalled
        .stream
        .write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 99\r\n\r\n");
    assert!(
        stalled.closed_within(Duration::from_secs(5)),
        "the cut-off viewer's connection is closed by the server"
    );
    assert_still_serves(&server);
    assert!(server.is_running(), "no crash");
}
