//! HLS served by the shards, read by independent clients: ffmpeg/ffprobe decode the VOD and
//! live streams through the server's own URLs (from `GET /api/v1/streams`), playlists parse
//! with the strict `m3u8-rs` parser and keep RFC 8216's rules across reloads, blocking
//! reloads (RFC 8216bis §6.2.5.2) return when their part is complete, and the HTTP rules
//! (ranges, ETags, CORS, HEAD) and bad input get the right status with everyone else served.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http_raw, http_request, run_with_timeout, HttpReply, Server};

const ADMIN: &str = "admin-secret-for-hls-tests";

fn live_server(extra: &[&str]) -> Server {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4");
    let mut args = vec![
        "--live",
        &*Box::leak(format!("ch={sample}").into_boxed_str()),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn hls(server: &Server) -> SocketAddr {
    server.hls.expect("the server printed its HLS address")
}

fn get(server: &Server, path: &str) -> HttpReply {
    http_request(hls(server), "GET", path, &[], b"")
}

/// The `hls_url` the API gives for `name`.
fn hls_url(server: &Server, name: &str) -> String {
    let streams = server.http_get("/api/v1/streams").json();
    streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} in the catalog"))["hls_url"]
        .as_str()
        .expect("hls_url")
        .to_owned()
}

fn media_playlist(text: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    }
}

/// ffmpeg's and ffprobe's stderr lines that are warnings or errors (with `-v warning`).
fn complaints(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn ffmpeg_decodes_every_frame_of_the_vod_stream_from_its_hls_url() {
    let server = Server::start(&[]);
    let url = hls_url(&server, "sample");
    assert!(
        url.starts_with(&format!("http://{}/hls/sample/", hls(&server))),
        "{url}"
    );
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "warning",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames",
            "-of",
            "csv=p=0",
            &url,
        ]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffprobe failed: {err}");
    assert!(complaints(&err).is_empty(), "ffprobe warned: {err}");
    // The bundled sample: 250 video frames (10 s at 25 fps) and its AAC frames.
    // ffprobe lists the streams once per program and once on their own: the same counts.
    let video: Vec<&str> = out.lines().filter(|l| l.starts_with("video")).collect();
    assert!(
        !video.is_empty() && video.iter().all(|l| *l == "video,250"),
        "{out}"
    );
    let audio = out
        .lines()
        .find_map(|l| l.strip_prefix("audio,"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(audio > 400, "audio frames decoded: {out}");
}

#[test]
fn ffmpeg_plays_the_live_channel_over_hls_without_warnings() {
    let server = live_server(&[]);
    let url = hls_url(&server, "ch");
    // ffmpeg refuses a live playlist without a complete segment (only parts): a channel
    // just started has none for its first segment's 2 s.
    std::thread::sleep(Duration::from_millis(2500));
    let (ok, _out, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-v", "warning", "-nostdin", "-i", &url, "-t", "6", "-f", "null", "-",
        ]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg failed: {err}");
    let bad: Vec<&str> = complaints(&err)
        .into_iter()
        // ffmpeg's HLS demuxer (5.1) re-reads the init section of an fMP4 live stream after
        // each playlist reload and says so; it says the same of ffmpeg's own live fMP4 HLS
        // (`-f hls -hls_segment_type fmp4` served statically): a property of the client.
        .filter(|l| {
            !l.contains("Found duplicated MOOV Atom") && !l.contains("Last message repeated")
        })
        .collect();
    assert!(bad.is_empty(), "ffmpeg warned: {err}");
}

#[test]
fn live_playlists_obey_rfc_8216_across_reloads_and_a_loop_point() {
    let server = live_server(&[]);
    let mut last_seq: Option<(u64, Vec<String>)> = None;
    // The sample loops every 10 s: 12 s of reloads cross a loop point.
    let end = Instant::now() + Duration::from_secs(12);
    let mut reloads = 0;
    while Instant::now() < end {
        let text = get(&server, "/hls/ch/media.m3u8").text();
        let p = media_playlist(&text);
        let target = p.target_duration as f64;
        for s in &p.segments {
            assert!(
                (s.duration as f64).round() <= target,
                "EXTINF {} over target {target} (RFC 8216 §4.3.3.1)\n{text}",
                s.duration
            );
        }
        let part_target: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
            .expect("EXT-X-PART-INF")
            .parse()
            .unwrap();
        for l in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
            let d: f64 = l
                .split("DURATION=")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                d <= part_target,
                "part {d} over PART-TARGET {part_target}: {l}"
            );
        }
        assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"), "{text}");
        assert!(text.contains("CAN-BLOCK-RELOAD=YES"), "{text}");
        let uris: Vec<String> = p.segments.iter().map(|s| s.uri.clone()).collect();
        if let Some((seq, prev)) = &last_seq {
            // Media sequence numbers continue (RFC 8216 §6.2.2): a segment keeps its number.
            assert!(
                p.media_sequence >= *seq,
                "sequence went back: {seq} -> {}",
                p.media_sequence
            );
            let shift = (p.media_sequence - seq) as usize;
            for (k, uri) in prev.iter().enumerate().skip(shift) {
                assert_eq!(
                    uris.get(k - shift),
                    Some(uri),
                    "segment {uri} renumbered\n{text}"
                );
            }
        }
        last_seq = Some((p.media_sequence, uris));
        reloads += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(reloads >= 15);
    let (seq, uris) = last_seq.unwrap();
    assert!(
        seq + uris.len() as u64 >= 5,
        "12 s of a 2 s-segment channel: at least 5 segments listed or gone ({seq}, {uris:?})"
    );
}

#[test]
fn a_blocking_reload_returns_when_its_part_is_complete() {
    let server = live_server(&[]);
    let text = get(&server, "/hls/ch/media.m3u8").text();
    let p = media_playlist(&text);
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .expect("a preload hint");
    // part{msn}.{k}.m4s
    let name = hint.trim_end_matches('"');
    let nums = name.trim_start_matches("part").trim_end_matches(".m4s");
    let (msn, part) = nums.split_once('.').unwrap();
    let started = Instant::now();
    let reply = get(
        &server,
        &format!("/hls/ch/media.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
    );
    let waited = started.elapsed();
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().contains(name),
        "the blocked reload lists the part it waited for ({name}):\n{}",
        reply.text()
    );
    assert!(
        waited < Duration::from_millis(1500),
        "answered {waited:?} after the request: at most about one part"
    );
    // The part itself is there now.
    let part = get(&server, &format!("/hls/ch/{name}"));
    assert_eq!(part.status, 200);
    assert_eq!(part.header("Content-Type"), Some("video/mp4"));
    assert!(part.body.len() > 100 && &part.body[4..8] == b"moof");
    // Far ahead of the live edge: 400 (RFC 8216bis §6.2.5.2).
    let far = p.media_sequence + 1000;
    assert_eq!(
        get(&server, &format!("/hls/ch/media.m3u8?_HLS_msn={far}")).status,
        400
    );
    assert_eq!(get(&server, "/hls/ch/media.m3u8?_HLS_part=1").status, 400);
    assert_eq!(get(&server, "/hls/ch/media.m3u8?_HLS_msn=x").status, 400);
}

#[test]
fn segments_leave_the_live_window_as_404_never_other_bytes() {
    let server = live_server(&[]);
    let text = get(&server, "/hls/ch/media.m3u8").text();
    let p = media_playlist(&text);
    let newest = p.media_sequence + p.segments.len() as u64 + 5;
    assert_eq!(
        get(&server, &format!("/hls/ch/seg{newest}.m4s")).status,
        404
    );
    std::thread::sleep(Duration::from_secs(16));
    // 16 s later the first segment then listed (window of 6 × 2 s) is gone; asked for by a
    // viewer, it counts as that viewer's late request (a stall the server sees).
    assert_eq!(
        get(
            &server,
            &format!("/hls/ch/seg{}.m4s?v=5eed", p.media_sequence)
        )
        .status,
        404
    );
    assert!(server.total_reaches("hls_late_requests", 1, Duration::from_secs(3)) >= 1);
    // Shards report their viewers once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let viewer = loop {
        let sessions = server.http_get("/api/v1/sessions").json();
        if let Some(v) = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "0000000000005EED")
        {
            break v.clone();
        }
        assert!(Instant::now() < deadline, "the late viewer in {sessions}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(viewer["late_requests"], 1, "{viewer}");
}

#[test]
fn hls_viewers_appear_in_the_api_like_rtsp_viewers() {
    let server = live_server(&[]);
    std::thread::sleep(Duration::from_millis(2500));
    // A player's walk: multivariant (gives the viewer its id), media playlist, init, parts.
    let mv = get(&server, "/hls/ch/index.m3u8").text();
    let media_uri = mv
        .lines()
        .find(|l| l.starts_with("media.m3u8"))
        .unwrap()
        .to_owned();
    let viewer = media_uri
        .split("v=")
        .nth(1)
        .expect("the viewer id in the URI")
        .to_owned();
    let media = get(&server, &format!("/hls/ch/{media_uri}")).text();
    let uris: Vec<&str> = media
        .lines()
        .filter_map(|l| {
            l.split("URI=\"")
                .nth(1)
                .map(|r| r.split('"').next().unwrap())
        })
        .collect();
    assert!(
        uris.iter().all(|u| u.ends_with(&format!("v={viewer}"))),
        "{media}"
    );
    let mut fetched = 0;
    for uri in uris
        .iter()
        .filter(|u| u.starts_with("part") || u.starts_with("init"))
        .take(6)
    {
        let r = get(&server, &format!("/hls/ch/{uri}"));
        assert_eq!(r.status, 200, "{uri}");
        fetched += r.body.len();
    }
    // Shards report once a second.
    let want = format!("{:0>16}", viewer.to_uppercase());
    let deadline = Instant::now() + Duration::from_secs(5);
    let found = loop {
        let sessions = server.http_get("/api/v1/sessions").json();
        if let Some(s) = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == want.as_str())
        {
            if s["bytes_sent"].as_u64().unwrap_or(0) as usize >= fetched {
                break s.clone();
            }
        }
        assert!(Instant::now() < deadline, "viewer {want} not in {sessions}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found["transport"], "hls");
    assert_eq!(found["stream"], "ch");
    assert!(found["segments_served"].as_u64().unwrap() >= 5, "{found}");
    assert_eq!(found["late_requests"], 0);
    assert!(found["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let streams = server.http_get("/api/v1/streams").json();
    let ch = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ch")
        .unwrap()
        .clone();
    assert_eq!(ch["viewers"], 1, "{ch}");
}

#[test]
fn http_rules_ranges_etags_cors_head_and_keep_alive() {
    let server = Server::start(&[]);
    let whole = get(&server, "/hls/sample/seg1.m4s");
    assert_eq!(whole.status, 200);
    assert_eq!(
        whole.header("Cache-Control"),
        Some("max-age=31536000, immutable")
    );
    assert_eq!(whole.header("Access-Control-Allow-Origin"), Some("*"));
    let etag = whole.header("ETag").unwrap().to_owned();
    let len = whole.body.len();
    let r = http_request(
        hls(&server),
        "GET",
        "/hls/sample/seg1.m4s",
        &[("Range", "bytes=10-19")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, whole.body[10..20]);
    assert_eq!(
        r.header("Content-Range").unwrap(),
        format!("bytes 10-19/{len}")
    );
    let tail = http_request(
        hls(&server),
        "GET",
        "/hls/sample/seg1.m4s",
        &[("Range", "bytes=-100")],
        b"",
    );
    assert_eq!(tail.body, whole.body[len - 100..]);
    let past = http_request(
        hls(&server),
        "GET",
        "/hls/sample/seg1.m4s",
        &[("Range", &format!("bytes={len}-"))],
        b"",
    );
    assert_eq!(past.status, 416);
    let cached = http_request(
        hls(&server),
        "GET",
        "/hls/sample/seg1.m4s",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    let mut s = TcpStream::connect(hls(&server)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"HEAD /hls/sample/seg1.m4s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head = String::from_utf8_lossy(&raw);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {len}\r\n")),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    let pre = http_request(
        hls(&server),
        "OPTIONS",
        "/hls/sample/index.m3u8",
        &[
            ("Origin", "http://elsewhere"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    );
    assert_eq!(pre.status, 204);
    assert!(pre
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("GET"));
    // Keep-alive: three requests on one connection, answered in order.
    let mut s = TcpStream::connect(hls(&server)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /hls/sample/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\nGET /hls/sample/init.mp4 HTTP/1.1\r\nHost: x\r\n\r\nGET /hls/sample/media.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert!(text.find("#EXT-X-STREAM-INF").unwrap() < text.find("ftyp").unwrap());
    assert!(text.rfind("#EXT-X-ENDLIST").unwrap() > text.find("ftyp").unwrap());
}

#[test]
fn bad_requests_get_their_status_and_the_server_keeps_serving() {
    let server = Server::start(&[]);
    let addr = hls(&server);
    assert_eq!(get(&server, "/hls/nosuch/index.m3u8").status, 404);
    assert_eq!(get(&server, "/hls/sample/seg99.m4s").status, 404);
    assert_eq!(get(&server, "/hls/sample/part0.99.m4s").status, 404);
    assert_eq!(get(&server, "/hls/sample/seg01.m4s").status, 404);
    assert_eq!(get(&server, "/hls/sample/other.txt").status, 404);
    assert_eq!(get(&server, "/elsewhere").status, 404);
    assert_eq!(get(&server, "/hls/../etc/passwd/index.m3u8").status, 400);
    assert_eq!(get(&server, "/hls/%2e%2e/sample/index.m3u8").status, 400);
    let post = http_raw(
        addr,
        b"POST /hls/sample/index.m3u8 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(post.status, 405);
    let mut big = b"GET /hls/sample/index.m3u8 HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert_eq!(http_raw(addr, &big).unwrap().status, 431);
    assert_eq!(
        http_raw(addr, b"\x16\x03\x01garbage\r\n\r\n")
            .unwrap()
            .status,
        400
    );
    // A viewer that asks for a segment and never reads, and one that vanishes mid-body.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(
            b"GET /hls/sample/seg0.m4s HTTP/1.1\r\nHost: x\r\n\r\n"
                .repeat(50)
                .as_slice(),
        )
        .unwrap();
    {
        let mut gone = TcpStream::connect(addr).unwrap();
        gone.write_all(b"GET /hls/sample/seg2.m4s HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut some = [0u8; 100];
        let _ = gone.read(&mut some);
    }
    // Everyone else is served.
    let ok = get(&server, "/hls/sample/seg3.m4s");
    assert_eq!(ok.status, 200);
    assert!(ok.body.len() > 10_000);
    drop(stuck);
    assert_eq!(get(&server, "/hls/sample/index.m3u8").status, 200);
}

#[test]
fn with_require_token_every_request_needs_a_valid_token_for_its_stream() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4");
    let server = Server::start_env(
        &["--require-token", "--live", &format!("ch={sample}")],
        &[("SHARDCAST_ADMIN_TOKEN", ADMIN)],
    );
    let auth = format!("Bearer {ADMIN}");
    let grant = |stream: &str| {
        let r = http_request(
            server.http_addr(),
            "POST",
            "/api/v1/play",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            format!("{{\"stream\":\"{stream}\"}}").as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let g = grant("sample");
    let url = g["hls_url"]
        .as_str()
        .expect("hls_url in the grant")
        .to_owned();
    let token = g["token"].as_str().unwrap().to_owned();
    let path = url
        .split_once(&hls(&server).to_string())
        .unwrap()
        .1
        .to_owned();
    assert!(
        path.ends_with(&format!("index.m3u8?token={token}")),
        "{path}"
    );
    let mv = get(&server, &path);
    assert_eq!(mv.status, 200);
    assert!(
        mv.text().contains(&format!("media.m3u8?token={token}")),
        "{}",
        mv.text()
    );
    let media = get(&server, &format!("/hls/sample/media.m3u8?token={token}")).text();
    for uri in media
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(uri.ends_with(&format!("?token={token}")), "{uri}");
    }
    assert!(media.contains(&format!("init.mp4?token={token}")));
    assert_eq!(
        get(&server, &format!("/hls/sample/seg0.m4s?token={token}")).status,
        200
    );
    // Missing, tampered, another stream's.
    assert_eq!(get(&server, "/hls/sample/seg0.m4s").status, 403);
    assert_eq!(get(&server, "/hls/sample/index.m3u8").status, 403);
    let mut bad = token.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        get(&server, &format!("/hls/sample/seg0.m4s?token={bad}")).status,
        403
    );
    let other = grant("ch")["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&server, &format!("/hls/sample/seg0.m4s?token={other}")).status,
        403
    );
    assert_eq!(
        get(&server, &format!("/hls/ch/media.m3u8?token={other}")).status,
        200
    );
    // Expired: a token signed with a lifetime that has run out.
    let r = http_request(
        server.http_addr(),
        "POST",
        "/api/v1/play",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        b"{\"stream\":\"sample\",\"lifetime_secs\":1}",
    );
    if r.status == 200 {
        let short = r.json()["token"].as_str().unwrap().to_owned();
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(
            get(&server, &format!("/hls/sample/seg0.m4s?token={short}")).status,
            403
        );
    } else {
        panic!("a short-lived token: {}", r.text());
    }
}

/// Segment bodies leave staged in an in-memory file by `sendfile(2)` (default), by
/// `sendfile(2)` per range of the media file (`--hls-body sendfile`) or by gathered
/// `sendmsg(2)` from the mapping (`--hls-body gather`): the same bytes every way, whole and
/// in every byte range, including ranges that start in the `moof` head and end in the media.
#[test]
fn staged_sendfile_and_gathered_bodies_are_the_same_bytes_in_every_range() {
    let dir = std::env::temp_dir().join(format!("shardcast-hls-body-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4"),
        dir.join("clip.mp4"),
    )
    .unwrap();
    let media = dir.to_str().unwrap();
    let sendfile = Server::start(&["--media", media]);
    let gather = Server::start(&["--media", media, "--hls-body", "gather"]);
    for path in [
        "/hls/clip/seg0.m4s",
        "/hls/clip/seg2.m4s",
        "/hls/clip/part1.3.m4s",
    ] {
        let a = get(&sendfile, path);
        let b = get(&gather, path);
        assert_eq!((a.status, b.status), (200, 200), "{path}");
        assert!(a.body.len() > 1_000, "{path}");
        assert!(a.body == b.body, "{path}: sendfile and gather differ");
        let len = a.body.len();
        for (from, to) in [(0, 99), (50, 2_000), (len / 3, len - 1), (len - 1, len - 1)] {
            let range = format!("bytes={from}-{to}");
            let r = http_request(hls(&sendfile), "GET", path, &[("Range", &range)], b"");
            assert_eq!(r.status, 206, "{path} {range}");
            assert!(r.body == a.body[from..=to], "{path} {range}: other bytes");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
