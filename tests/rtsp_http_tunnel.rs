//! RTSP over HTTP (the `x-sessioncookie` tunnel) on the RTSP port, against the clients that
//! speak it: ffmpeg (`-rtsp_transport http`) and GStreamer (`rtsph://`) play the bundled
//! sample through it, every frame, without a warning. Then what a client might send wrong
//! — a POST with an unknown cookie, a POST from another address, base64 garbage, a GET whose
//! POST never comes, a plain HTTP GET, a second GET with a live cookie — each gets its clear
//! answer and at most one log line, while an RTSP viewer of the same server plays on
//! unaffected. Fails if a player errs or decodes a different number of frames, if an answer
//! or close is missing or wrong, or if the viewer loses a frame.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::players::{ffmpeg_decode_without_warnings, gstreamer_decoded_video_frames};
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::track::TrackKind;
use shardcast::media::MediaFile;

fn sample_video_frames() -> usize {
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let video = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    video.samples.len()
}

/// Lines of the server's log that say a tunnel opened.
fn tunnels_opened(server: &common::Server) -> usize {
    server
        .log_lines()
        .iter()
        .filter(|l| l.contains("rtsp over http: tunnel opened"))
        .count()
}

#[test]
fn ffmpeg_decodes_every_frame_through_the_http_tunnel() {
    let server = common::Server::start_logged(&["--log", "debug"]);
    let decoded = ffmpeg_decode_without_warnings(&server.url("sample"), "http");
    assert_eq!(
        decoded.frames,
        sample_video_frames(),
        "frames through the tunnel"
    );
    assert_eq!(tunnels_opened(&server), 1, "ffmpeg used the tunnel");
}

#[test]
fn gstreamer_rtsph_reaches_eos_through_the_http_tunnel() {
    let server = common::Server::start_logged(&["--log", "debug"]);
    let url = format!("rtsph://{}/sample", server.addr);
    let frames = gstreamer_decoded_video_frames(&url, "tcp");
    assert_eq!(frames, sample_video_frames(), "frames through the tunnel");
    assert_eq!(tunnels_opened(&server), 1, "rtspsrc used the tunnel");
}

/// A connection to the server from `from` (127.0.0.1 unless another loopback address).
fn connect_from(server: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes (panics if it does not within the read
/// timeout).
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .expect("server closes the connection");
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until `needle` arrived; what was read.
fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = stream
            .read(&mut chunk)
            .expect("answer before the read timeout");
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn tunnel_get(server: SocketAddr, cookie: &str) -> TcpStream {
    let mut get = connect_from(server, [127, 0, 0, 1]);
    write!(get, "GET /sample HTTP/1.0\r\nx-sessioncookie: {cookie}\r\nAccept: application/x-rtsp-tunnelled\r\nPragma: no-cache\r\n\r\n").unwrap();
    let head = read_until(&mut get, "\r\n\r\n");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: application/x-rtsp-tunnelled\r\n"),
        "{head}"
    );
    get
}

fn tunnel_post(server: SocketAddr, from: [u8; 4], cookie: &str, body: &[u8]) -> TcpStream {
    let mut post = connect_from(server, from);
    write!(post, "POST /sample HTTP/1.0\r\nx-sessioncookie: {cookie}\r\nContent-Type: application/x-rtsp-tunnelled\r\nContent-Length: 32767\r\n\r\n").unwrap();
    post.write_all(body).unwrap();
    post
}

fn refused_lines(server: &common::Server) -> usize {
    server
        .log_lines()
        .iter()
        .filter(|l| l.contains("http request on the rtsp port refused"))
        .count()
}

#[test]
fn bad_tunnel_requests_get_their_answer_while_an_rtsp_viewer_plays_on() {
    let server = common::Server::start_logged(&[]);
    let addr = server.addr;
    let url = server.url("sample");
    let viewer = std::thread::spawn(move || ffmpeg_decode_without_warnings(&url, "tcp"));
    std::thread::sleep(Duration::from_millis(500));
    let b64 = base64::engine::general_purpose::STANDARD;

    // A plain HTTP GET: nothing but the tunnel is served here.
    let mut plain = connect_from(addr, [127, 0, 0, 1]);
    plain
        .write_all(b"GET /foo HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut plain);
    assert!(answer.starts_with("HTTP/1.0 404 Not Found\r\n"), "{answer}");

    // A POST whose cookie names no GET.
    let mut stray = tunnel_post(addr, [127, 0, 0, 1], "nosuchcookie", b"");
    let answer = read_until_closed(&mut stray);
    assert!(answer.starts_with("HTTP/1.0 403 Forbidden\r\n"), "{answer}");

    // A GET, then a POST with its cookie from another address, a second GET with the
    // same cookie: refused; the GET's own POST then works.
    let mut get = tunnel_get(addr, "cookieA");
    let options = b64.encode(b"OPTIONS rtsp://127.0.0.1/sample RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    let mut foreign = tunnel_post(addr, [127, 0, 0, 2], "cookieA", options.as_bytes());
    let answer = read_until_closed(&mut foreign);
    assert!(answer.starts_with("HTTP/1.0 403 Forbidden\r\n"), "{answer}");
    let mut twin = connect_from(addr, [127, 0, 0, 1]);
    twin.write_all(b"GET /sample HTTP/1.0\r\nx-sessioncookie: cookieA\r\nAccept: application/x-rtsp-tunnelled\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut twin);
    assert!(answer.starts_with("HTTP/1.0 403 Forbidden\r\n"), "{answer}");
    // The request split inside a base64 quantum, in two writes.
    let (first, second) = options.split_at(5);
    let mut post = tunnel_post(addr, [127, 0, 0, 1], "cookieA", first.as_bytes());
    std::thread::sleep(Duration::from_millis(50));
    post.write_all(second.as_bytes()).unwrap();
    let answer = read_until(&mut get, "\r\n\r\n");
    assert!(answer.starts_with("RTSP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("CSeq: 1\r\n"), "{answer}");

    // Base64 garbage on a POST: 400 on the POST, which closes.
    let get_b = tunnel_get(addr, "cookieB");
    let mut garbage = tunnel_post(addr, [127, 0, 0, 1], "cookieB", b"T1BU!!!!");
    let answer = read_until_closed(&mut garbage);
    assert!(
        answer.starts_with("HTTP/1.0 400 Bad Request\r\n"),
        "{answer}"
    );

    let decoded = viewer.join().unwrap();
    assert_eq!(
        decoded.frames,
        sample_video_frames(),
        "the RTSP viewer's frames"
    );
    // One line per refusal at most (the per-client log budget may hold some back).
    let refusals = 5;
    let lines = refused_lines(&server);
    assert!(
        (1..=refusals).contains(&lines),
        "{lines} refusal lines for {refusals} refusals:\n{}",
        server.log_lines().join("\n")
    );
    drop((get, post, get_b));
}

#[test]
fn a_get_whose_post_never_comes_closes_at_the_idle_timeout() {
    let server = common::Server::start(&["--session-timeout", "2"]);
    let started = Instant::now();
    let mut get = tunnel_get(server.addr, "lonely");
    let rest = read_until_closed(&mut get);
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{rest}");
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(6),
        "closed after {waited:?}, idle timeout is 2 s"
    );
}
