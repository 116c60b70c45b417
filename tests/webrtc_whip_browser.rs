//! WHIP publishing (RFC 9725, issue 17 item 6) end to end against real peers: headless
//! Chromium (`tests/common/whip.rs`) publishes an animated canvas (H.264, preferred with
//! `setCodecPreferences`) and a Web Audio oscillator (Opus) to `/whip/live/cam`; while it
//! publishes, ffmpeg (RTSP/TCP, every frame decoded without a warning), ffprobe (h264 + opus),
//! retina (the H.264 track, every frame from the join keyframe, no loss), a second Chromium
//! over WHEP (`tests/common/whep.rs`: frames decoded, nothing lost, Opus audio advancing),
//! HLS (the playlist) and `GET /api/v1/ingest` (`protocol: whip`, online, frames growing) all
//! see it; `DELETE` of the WHIP session ends the publisher (the stream waits
//! `--publisher-timeout`, then RTSP viewers get BYE and the stream leaves the catalog). And the
//! HTTP contract, with a real Chromium offer (`tests/fixtures/webrtc/chromium-148_whip_offer.sdp`)
//! edited where needed: 401 (`WWW-Authenticate: Bearer`) without or with a wrong key, 201 with
//! the key as `Authorization: Bearer` (§4.5) or `?key=`, 403 without a publish rule, 409 onto a
//! live path (browser or ffmpeg publisher) or a stored file, 415, 400, 422 for a VP8-only offer,
//! DELETE 200 then 404, PATCH 405, OPTIONS 204 with CORS.
//!
//! How they fail: every assertion says what was expected and what came (a status with the
//! server's reason, Chromium's stats, ffmpeg's warnings, retina's error).
//!
//! `WHIP_SAVE_OFFER=PATH` makes the publishing test write the offer Chromium POSTed to PATH
//! (how `tests/fixtures/webrtc/chromium-148_whip_h264_offer.sdp` was recorded).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::whep::{num, open_harness, request, start_playing, stats};
use common::whip::{
    check_sending, edit_offer, ffmpeg_decode_live, ffprobe_streams, ingest_entry, open_publisher,
    payload_types, poll, publish, retina_play_video, stream_entry, CHROMIUM_WHIP_OFFER,
};
use common::{http_request, HttpReply, Server};

/// The canvas's frame rate (`canvas.captureStream(25)`).
const FPS: f64 = 25.0;

/// Seconds each player watches the published stream.
const WATCH_SECS: f64 = 5.0;

const PATH: &str = "live/cam";

fn post_offer(addr: SocketAddr, path: &str, headers: &[(&str, &str)], sdp: &str) -> HttpReply {
    let mut h = vec![("Content-Type", "application/sdp")];
    h.extend_from_slice(headers);
    http_request(addr, "POST", path, &h, sdp.as_bytes())
}

/// Asserts `r` has `status`, with a text/plain reason when it is an error.
fn expect_status(r: &HttpReply, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: expected {status}, got {} (headers {:?}): {:?}",
        r.status,
        r.headers,
        r.text()
    );
    if status >= 400 {
        assert!(
            r.header("Content-Type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "{what}: expected a text/plain reason, got Content-Type {:?}",
            r.header("Content-Type")
        );
        assert!(
            !r.text().trim().is_empty(),
            "{what}: expected a sentence saying why, the body is empty"
        );
    }
}

/// The offer's m= lines and direction attributes, for messages and the report.
fn offer_shape(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| {
            l.starts_with("m=")
                || matches!(
                    *l,
                    "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"
                )
        })
        .map(str::to_owned)
        .collect()
}

/// (1)+(2) Chromium publishes over WHIP; ffmpeg, ffprobe, retina, a Chromium WHEP viewer, HLS
/// and the API see the stream; a second publisher gets 409; DELETE ends it.
#[test]
fn chromium_publishes_over_whip_and_every_player_sees_it_until_delete() {
    let t0 = Instant::now();
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "2"]);
    let http = server.http_addr();
    let mut publisher = open_publisher(&server);
    let published = publish(&mut publisher, &format!("/whip/{PATH}"), None);
    if let Ok(path) = std::env::var("WHIP_SAVE_OFFER") {
        std::fs::write(&path, &published.offer).expect("write WHIP_SAVE_OFFER");
    }
    let offer = &published.offer;
    eprintln!(
        "offer shape: {:?}; H.264 preferences: {}",
        offer_shape(offer),
        published.codec_prefs
    );
    // The page's own offer: sendonly video with only H.264 packetization-mode=1, sendonly audio.
    let shape = offer_shape(offer);
    assert!(
        shape.iter().filter(|l| *l == "a=sendonly").count() == 2
            && shape.iter().any(|l| l.starts_with("m=video"))
            && shape.iter().any(|l| l.starts_with("m=audio")),
        "the publisher's offer: expected sendonly video and audio, got {shape:?}"
    );
    let h264 = payload_types(offer, "video", "H264");
    let vp8 = payload_types(offer, "video", "VP8");
    assert!(
        !h264.is_empty() && vp8.is_empty(),
        "setCodecPreferences: expected H.264 only in the video section, got H.264 {h264:?}, VP8 {vp8:?}:\n{offer}"
    );
    assert!(
        offer.contains("packetization-mode=1;profile-level-id=42e01f"),
        "expected Constrained Baseline 42e01f packetization-mode=1 offered:\n{offer}"
    );
    let a = &published.answer;
    assert_eq!(
        a.status, 201,
        "POST /whip/{PATH} (RFC 9725 §4.2): expected 201 Created; got {} ({:?}): {}",
        a.status, a.content_type, a.body
    );
    assert_eq!(
        a.set_remote.as_deref(),
        Some("ok"),
        "expected Chromium to accept the answer:\n{}",
        a.body
    );
    assert!(
        a.location
            .as_deref()
            .is_some_and(|l| l.contains("/whip/session/")),
        "Location: expected /whip/session/{{key}}, got {:?}",
        a.location
    );
    for want in ["a=ice-lite", "a=recvonly", "H264/90000", "opus/48000/2"] {
        assert!(
            a.body.contains(want),
            "the SDP answer: expected {want:?} in it:\n{}",
            a.body
        );
    }
    let (_, encoded_fps) = check_sending(&mut publisher, 2.0);
    eprintln!("[{:.1} s] publishing", t0.elapsed().as_secs_f64());

    // RTSP: H.264 and Opus (RFC 7587: opus/48000/2).
    let url = server.url(PATH);
    let sdp = common::publishers::wait_published(&server, PATH, Duration::from_secs(10));
    assert!(
        sdp.contains("H264/90000") && sdp.to_lowercase().contains("opus/48000/2"),
        "RTSP DESCRIBE of {PATH}: expected H264/90000 and opus/48000/2, got:\n{sdp}"
    );

    // (a) ffmpeg and (c) retina at once, (d) the API meanwhile.
    let ff = {
        let url = url.clone();
        std::thread::spawn(move || ffmpeg_decode_live(&url, "tcp", WATCH_SECS))
    };
    let rt = {
        let url = url.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(retina_play_video(&url, WATCH_SECS))
        })
    };
    let first = poll(
        Duration::from_secs(5),
        "GET /api/v1/ingest to list live/cam with protocol whip, state online, frames > 0",
        || ingest_entry(&server, PATH),
        |e| {
            e.as_ref().is_some_and(|e| {
                e["protocol"] == "whip" && e["state"] == "online" && e["frames"].as_u64() > Some(0)
            })
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let later = ingest_entry(&server, PATH).expect("live/cam still in /api/v1/ingest");
    eprintln!("ingest: {later:#}");
    assert!(
        later["frames"].as_u64() > first["frames"].as_u64()
            && later["protocol"] == "whip"
            && later["state"] == "online",
        "GET /api/v1/ingest: expected frames to grow with protocol whip online; got {first:#} then {later:#}"
    );
    let decoded = ff.join().expect("ffmpeg decoded without a warning");
    eprintln!("ffmpeg: {decoded:?} in {WATCH_SECS} s");
    assert!(
        decoded.video as f64 >= 0.8 * FPS * WATCH_SECS,
        "ffmpeg over RTSP/TCP: expected ≥ {} video frames in {WATCH_SECS} s (80 % of {FPS} fps), got {} (the publisher encoded {encoded_fps:.1} fps)",
        0.8 * FPS * WATCH_SECS,
        decoded.video
    );
    // Opus at 20 ms a frame: 50 a second.
    assert!(
        decoded.audio as f64 >= 0.8 * 50.0 * WATCH_SECS,
        "ffmpeg over RTSP/TCP: expected ≥ {} Opus frames in {WATCH_SECS} s, got {}",
        0.8 * 50.0 * WATCH_SECS,
        decoded.audio
    );
    let got = rt.join().expect("retina played the H.264 track");
    eprintln!(
        "retina: tracks {:?}, {} video frames, {} keyframes",
        got.tracks,
        got.frames.len(),
        got.frames.iter().filter(|f| f.1).count()
    );
    assert!(
        got.tracks
            .iter()
            .any(|t| t.0 == "audio" && t.1 == "opus" && t.2 == 48_000 && t.3 == Some(2)),
        "retina: expected an opus/48000/2 audio track in the SDP, got {:?}",
        got.tracks
    );
    assert!(
        got.frames.first().is_some_and(|f| f.1),
        "retina: expected the first frame to be a keyframe, got {:?}",
        got.frames.first()
    );
    assert!(
        got.frames.windows(2).all(|w| w[0].0 < w[1].0),
        "retina: expected strictly increasing presentation times (the browser sends no B-frames)"
    );
    // The join keyframe may be up to the 2 s PLI interval away.
    assert!(
        got.frames.len() as f64 >= 0.8 * FPS * (WATCH_SECS - 2.0),
        "retina: expected ≥ {} frames in {WATCH_SECS} s less a 2 s wait for the keyframe, got {}",
        0.8 * FPS * (WATCH_SECS - 2.0),
        got.frames.len()
    );
    let probed = ffprobe_streams(&url);
    for (kind, codec) in [("video", "h264"), ("audio", "opus")] {
        assert!(
            probed.iter().any(|(k, c)| k == kind && c == codec),
            "ffprobe {url}: expected a {kind} stream {codec}, got {probed:?}"
        );
    }
    eprintln!("[{:.1} s] RTSP players done", t0.elapsed().as_secs_f64());

    // (b) a Chromium viewer over WHEP: H.264 and the publisher's Opus straight through.
    let mut viewer = open_harness(&server);
    start_playing(&mut viewer, &format!("/whep/{PATH}"));
    common::whep::wait_first_frame(&mut viewer, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let s_a = stats(&mut viewer);
    let t_a = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(WATCH_SECS - 1.0));
    let s_b = stats(&mut viewer);
    let dt = t_a.elapsed().as_secs_f64();
    eprintln!("WHEP viewer: {s_b}");
    let watched = s_b["watchedSecs"].as_f64().unwrap_or(0.0);
    let frames = num(&s_b, "video", "framesDecoded");
    assert!(
        frames >= 0.8 * FPS * watched,
        "WHEP viewer: expected framesDecoded ≥ 80 % of {FPS} fps × {watched:.1} s, got {frames}: {}",
        s_b["video"]
    );
    for kind in ["video", "audio"] {
        assert_eq!(
            num(&s_b, kind, "packetsLost"),
            0.0,
            "WHEP viewer: expected no {kind} packets lost on loopback: {}",
            s_b[kind]
        );
    }
    let played =
        num(&s_b, "audio", "totalSamplesDuration") - num(&s_a, "audio", "totalSamplesDuration");
    assert!(
        played >= 0.8 * dt,
        "WHEP viewer: expected audio totalSamplesDuration to advance ≥ {:.1} s in {dt:.1} s, got {played:.2} s: {}",
        0.8 * dt,
        s_b["audio"]
    );
    for (kind, want) in [("video", "video/H264"), ("audio", "audio/opus")] {
        let codec = s_b[kind]["codec"].as_str().unwrap_or_default();
        assert!(
            codec.starts_with(want),
            "WHEP viewer: expected {kind} codec {want}, got {codec:?}"
        );
    }
    drop(viewer);

    // HLS: the playlist lists segments.
    let entry = stream_entry(&server, PATH).expect("live/cam in /api/v1/streams");
    assert_eq!(
        entry["source"]["protocol"], "whip",
        "GET /api/v1/streams: expected source.protocol whip: {entry:#}"
    );
    if let Some(hls) = entry["hls_url"].as_str() {
        let rest = hls.strip_prefix("http://").unwrap_or(hls);
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr: SocketAddr = host.parse().expect("hls_url names host:port");
        let r = http_request(addr, "GET", path, &[], b"");
        assert!(
            r.status == 200 && r.text().starts_with("#EXTM3U"),
            "GET {hls}: expected 200 with a playlist, got {}: {}",
            r.status,
            r.text()
        );
        // A multivariant playlist names its media playlist on the line after EXT-X-STREAM-INF.
        let text = r.text();
        let media = text
            .lines()
            .skip_while(|l| !l.starts_with("#EXT-X-STREAM-INF"))
            .nth(1)
            .map(|uri| format!("{}/{uri}", &path[..path.rfind('/').unwrap_or(0)]));
        let (what, r) = match media {
            Some(m) => (m.clone(), http_request(addr, "GET", &m, &[], b"")),
            None => (path.to_owned(), r),
        };
        assert!(
            r.status == 200 && r.text().contains("#EXTINF"),
            "GET {what}: expected 200 with a media playlist listing segments, got {}: {}",
            r.status,
            r.text()
        );
    } else {
        panic!("GET /api/v1/streams: expected hls_url for live/cam: {entry:#}");
    }

    // A second publisher on the live path: 409.
    let r = post_offer(http, &format!("/whip/{PATH}"), &[], CHROMIUM_WHIP_OFFER);
    expect_status(&r, 409, "a second WHIP publisher on live/cam");

    // DELETE ends the publisher: an RTSP viewer gets BYE after the publisher timeout (2 s),
    // the stream waits, then leaves the catalog.
    let mut rtsp = common::setup_udp_stream(server.addr, PATH, 2);
    let session = rtsp.session.clone();
    let play = rtsp
        .rtsp
        .request("PLAY", &rtsp.url, &[("Session", session.as_str())]);
    assert_eq!(play.status, 200, "RTSP PLAY of {PATH}");
    let status = publisher.eval_json("window.whip.del()");
    assert_eq!(
        status, 200,
        "DELETE of the WHIP session: expected 200, got {status}"
    );
    let deleted_at = Instant::now();
    poll(
        Duration::from_secs(2),
        "live/cam's source state waiting after DELETE",
        || stream_entry(&server, PATH).map(|e| e["source"]["state"].clone()),
        |s| s.as_ref().is_some_and(|s| s == "waiting"),
    );
    assert!(
        common::wait_for_bye(&rtsp.socks[0].1, Duration::from_secs(6)),
        "an RTSP viewer: expected RTCP BYE within the 2 s publisher timeout after DELETE (waited 6 s)"
    );
    poll(
        Duration::from_secs(5),
        "live/cam gone from /api/v1/streams after the publisher timeout",
        || stream_entry(&server, PATH),
        Option::is_none,
    );
    eprintln!(
        "stream ended {:.1} s after DELETE",
        deleted_at.elapsed().as_secs_f64()
    );
    assert!(
        publisher.console_errors().is_empty(),
        "the publisher page: expected no console errors, got {:#?}",
        publisher.console_errors()
    );
    let loc = published.answer.location.clone().unwrap_or_default();
    let again = request(http, "DELETE", &loc, None, b"");
    assert_eq!(
        again.status,
        404,
        "a second DELETE of the ended WHIP session {loc}: expected 404, got {}: {}",
        again.status,
        again.text()
    );
    eprintln!("[{:.1} s] done", t0.elapsed().as_secs_f64());
}

/// The publisher page itself, without shardcast: its offer answered by a second peer
/// connection in the same page, it encodes H.264 and Opus at the canvas's rate and its stats
/// show it. When the server tests fail and this passes, the fault is not the page's.
#[test]
fn the_publisher_page_sends_h264_and_opus_to_a_peer_in_the_page() {
    let server = Server::start(&[]);
    let mut page = open_publisher(&server);
    let v = page.eval_json("window.whip.loopback()");
    let offer = v["offer"].as_str().unwrap_or_default();
    assert_eq!(
        offer_shape(offer)
            .iter()
            .filter(|l| *l == "a=sendonly")
            .count(),
        2,
        "expected sendonly video and audio in the offer:\n{offer}"
    );
    let (s, fps) = check_sending(&mut page, 2.0);
    eprintln!(
        "loopback: {fps:.1} fps, encoder {}, codec {}",
        s["video"]["encoderImplementation"], s["video"]["codec"]
    );
}

/// A VP8-only offer: Chromium's offer with its audio section dropped and only VP8 (and its
/// RTX) left in the video section.
fn vp8_only_offer() -> String {
    let vp8 = payload_types(CHROMIUM_WHIP_OFFER, "video", "VP8");
    assert!(!vp8.is_empty(), "the fixture offers VP8");
    let sdp = edit_offer(CHROMIUM_WHIP_OFFER, &|media| {
        (media == "video").then(|| vp8.clone())
    });
    assert!(
        !sdp.contains("H264") && !sdp.contains("opus") && sdp.contains("VP8/90000"),
        "{sdp}"
    );
    sdp
}

/// (3) The HTTP contract of `/whip/`, with Chromium's recorded offer (no browser needed).
#[test]
fn whip_http_answers_with_the_designed_status() {
    // Open publishing on live/*, and on `sample`, a stored file.
    let server = Server::start_logged(&[
        "--publish",
        "live/*",
        "--publish",
        "sample",
        "--publisher-timeout",
        "2",
    ]);
    let addr = server.http_addr();

    let r = http_request(
        addr,
        "OPTIONS",
        "/whip/live/x",
        &[
            ("Origin", "http://example.test"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type, authorization",
            ),
        ],
        b"",
    );
    assert_eq!(
        r.status, 204,
        "OPTIONS /whip/live/x: expected 204, got {} {:?}",
        r.status, r.headers
    );
    assert!(
        r.header("Access-Control-Allow-Origin").is_some()
            && r.header("Access-Control-Allow-Methods")
                .is_some_and(|m| m.contains("POST")),
        "OPTIONS /whip/live/x: expected CORS headers allowing POST, got {:?}",
        r.headers
    );

    let r = request(
        addr,
        "POST",
        "/whip/live/x",
        Some("text/plain"),
        CHROMIUM_WHIP_OFFER.as_bytes(),
    );
    expect_status(&r, 415, "POST with Content-Type text/plain");
    let r = post_offer(addr, "/whip/live/x", &[], "v=0\r\nthis is no SDP\r\n");
    expect_status(&r, 400, "POST of an unreadable SDP");
    let r = post_offer(addr, "/whip/live/x", &[], &vp8_only_offer());
    expect_status(&r, 422, "POST of a VP8-only offer (no H.264, no Opus)");
    let r = post_offer(addr, "/whip/sample", &[], CHROMIUM_WHIP_OFFER);
    expect_status(&r, 409, "POST onto `sample`, a stored file");

    // A WHIP publish onto a path an RTSP publisher (ffmpeg) holds.
    let ff = common::publishers::ffmpeg_publish_looped(
        &common::publishers::media("sample.mp4"),
        &server.url("live/ff"),
        "tcp",
        3,
    );
    common::publishers::wait_published(&server, "live/ff", Duration::from_secs(10));
    let r = post_offer(addr, "/whip/live/ff", &[], CHROMIUM_WHIP_OFFER);
    let _ = common::publishers::finish_publisher(ff, Duration::ZERO);
    expect_status(
        &r,
        409,
        "a WHIP POST onto live/ff, held by an RTSP publisher",
    );

    // A good offer: 201 with the answer, its Location and CORS; PATCH 405; DELETE 200, then 404.
    let r = post_offer(
        addr,
        "/whip/live/raw",
        &[("Origin", "http://example.test")],
        CHROMIUM_WHIP_OFFER,
    );
    expect_status(
        &r,
        201,
        "POST of Chromium's recorded offer to /whip/live/raw",
    );
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("application/sdp"))
            && r.text().starts_with("v=0"),
        "201: expected an application/sdp answer, got {:?}: {}",
        r.header("Content-Type"),
        r.text()
    );
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("*"),
        "201: expected Access-Control-Allow-Origin: *, got {:?}",
        r.headers
    );
    assert!(
        r.header("Access-Control-Expose-Headers")
            .is_some_and(|h| h.to_lowercase().contains("location")),
        "201: expected Access-Control-Expose-Headers to name location, got {:?}",
        r.headers
    );
    let loc = r
        .header("Location")
        .unwrap_or_else(|| panic!("201: expected a Location, got {:?}", r.headers))
        .to_owned();
    assert!(
        loc.starts_with("/whip/session/"),
        "Location: expected /whip/session/{{key}}, got {loc:?}"
    );
    // One publisher per path from the POST on, before any media has come.
    let r2 = post_offer(addr, "/whip/live/raw", &[], CHROMIUM_WHIP_OFFER);
    expect_status(
        &r2,
        409,
        "a second WHIP POST onto live/raw, answered 201 a moment ago",
    );
    let r = request(
        addr,
        "PATCH",
        &loc,
        Some("application/trickle-ice-sdpfrag"),
        b"a=end-of-candidates\r\n",
    );
    assert_eq!(
        r.status,
        405,
        "PATCH {loc} (no trickle ICE): expected 405, got {}: {}",
        r.status,
        r.text()
    );
    let r = request(addr, "DELETE", &loc, None, b"");
    assert_eq!(
        r.status,
        200,
        "DELETE {loc}: expected 200, got {}: {}",
        r.status,
        r.text()
    );
    let r = request(addr, "DELETE", &loc, None, b"");
    assert_eq!(
        r.status,
        404,
        "DELETE {loc} again: expected 404, got {}: {}",
        r.status,
        r.text()
    );
    let r = request(addr, "DELETE", "/whip/session/nosuchsession0000", None, b"");
    assert_eq!(
        r.status,
        404,
        "DELETE of an unknown session: expected 404, got {}: {}",
        r.status,
        r.text()
    );

    // A stream key: 401 with WWW-Authenticate: Bearer without it or with a wrong one; 201 with
    // it as a bearer token (RFC 9725 §4.5) or as ?key=.
    const KEY: &str = "whip-s3cret-key";
    let config = common::write_config(
        "whip-key",
        &format!("[[access]]\nstreams = \"live/*\"\npublish-key = \"{KEY}\"\n"),
    );
    let keyed = Server::start_logged(&["--config", config.to_str().unwrap()]);
    let kaddr = keyed.http_addr();
    for (what, path, headers) in [
        ("no key", "/whip/live/k", vec![]),
        (
            "a wrong bearer token",
            "/whip/live/k",
            vec![("Authorization", "Bearer wrong-key")],
        ),
        ("a wrong ?key=", "/whip/live/k?key=wrong-key", vec![]),
    ] {
        let r = post_offer(kaddr, path, &headers, CHROMIUM_WHIP_OFFER);
        expect_status(&r, 401, &format!("POST {path} with {what}"));
        assert!(
            r.header("WWW-Authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "401 for {what}: expected WWW-Authenticate: Bearer, got {:?}",
            r.headers
        );
    }
    let bearer = format!("Bearer {KEY}");
    for (what, path, headers) in [
        (
            "the key as a bearer token",
            "/whip/live/a".to_owned(),
            vec![("Authorization", bearer.as_str())],
        ),
        (
            "the key as ?key=",
            format!("/whip/live/b?key={KEY}"),
            vec![],
        ),
    ] {
        let r = post_offer(kaddr, &path, &headers, CHROMIUM_WHIP_OFFER);
        expect_status(&r, 201, &format!("POST {path} with {what}"));
        let loc = r.header("Location").unwrap_or_default().to_owned();
        let d = request(kaddr, "DELETE", &loc, None, b"");
        assert_eq!(
            d.status,
            200,
            "DELETE {loc:?} after {what}: expected 200, got {}: {}",
            d.status,
            d.text()
        );
    }

    // No publish rule at all: 403.
    let closed = Server::start_logged(&[]);
    let r = post_offer(closed.http_addr(), "/whip/live/x", &[], CHROMIUM_WHIP_OFFER);
    expect_status(&r, 403, "POST on a server with no publish rule");
}

/// The "go live" page (`/publish`) publishes its test pattern and tone over WHIP with nothing
/// but its URL, as an operator's bookmark would: the server lists the stream, ffmpeg
/// decodes it over RTSP (H.264 and Opus), and the page's stop button ends the publish.
#[test]
fn the_go_live_page_publishes_a_test_pattern_until_stopped() {
    let server = Server::start(&["--publish", "live/*", "--publisher-timeout", "2"]);
    let mut page = common::browser::Browser::open(&format!(
        "http://{}/publish#path=live/page&source=pattern&start=1",
        server.http_addr()
    ));
    let state = page.wait_until(
        "(() => { const s = window.shardcastPublisher && window.shardcastPublisher.state(); \
          return s && s.status === 'live' && s.framesSent > 10 ? s : null; })()",
        Duration::from_secs(20),
    );
    assert!(
        state["codec"].as_str().unwrap_or_default().contains("H264"),
        "the page sends H.264: {state}"
    );
    let decode = ffmpeg_decode_live(&server.url("live/page"), "tcp", 3.0);
    assert!(
        decode.video >= 30 && decode.audio >= 60,
        "ffmpeg decoded {decode:?} from the page's stream in 3 s"
    );
    page.eval_json("window.shardcastPublisher.stop()");
    poll(
        Duration::from_secs(10),
        "the stream to end after the page's stop (DELETE) and the 2 s publisher timeout",
        || stream_entry(&server, "live/page"),
        |e| e.is_none(),
    );
    assert!(
        page.console_errors().is_empty(),
        "the page logged errors: {:#?}",
        page.console_errors()
    );
}

/// Garbage at the UDP ingest port while Chromium publishes over WHIP: 100 datagrams of each
/// RFC 7983 class from an address no ICE check nominated, and ICE checks naming the
/// publisher's real ufrag with a wrong password. The publisher's stream goes on untouched
/// (ffmpeg decodes it at its rate, nothing lost on the way in), the stray datagrams are
/// counted (`shardcast_ingest_unrouted_total`), and none of it writes a log line per
/// datagram.
#[test]
fn garbage_and_forged_checks_at_the_ingest_port_leave_the_publisher_untouched() {
    let server = Server::start_logged(&["--publish", "live/*"]);
    let mut publisher = open_publisher(&server);
    let published = common::whip::start_publishing(&mut publisher, "/whip/live/cam");
    let answer = &published.answer.body;
    let port: u16 = answer
        .lines()
        .find_map(|l| {
            let c = l.strip_prefix("a=candidate:")?;
            c.split_whitespace().nth(5)?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no host candidate in the answer: {answer}"));
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap_or_else(|| panic!("no ice-ufrag in the answer: {answer}"))
        .trim()
        .to_owned();
    poll(
        Duration::from_secs(15),
        "the WHIP stream online",
        || ingest_entry(&server, "live/cam"),
        |e| e.as_ref().is_some_and(|e| e["state"] == "online"),
    );
    let unrouted_before = metric(&server, "shardcast_ingest_unrouted_total");
    let stray = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", port);
    // RFC 7983 §7 classes by first byte: STUN 0–3, DTLS 20–63, RTP/RTCP 128–191, other.
    let classes: [&[u8]; 5] = [
        &[
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ],
        &[
            0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
        ],
        &[
            0x80, 0x66, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8,
        ],
        &[
            0x80, 0xc8, 0x00, 0x06, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[0xff, 0xee, 0xdd, 0xcc],
    ];
    for class in classes {
        for _ in 0..100 {
            stray.send_to(class, target).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Binding requests (RFC 8489 §6) naming the publisher's session, with a
    // MESSAGE-INTEGRITY made of no password at all.
    let username = format!("{ufrag}:forged");
    for k in 0..40u8 {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        attrs.extend_from_slice(&0x0008u16.to_be_bytes());
        attrs.extend_from_slice(&20u16.to_be_bytes());
        attrs.extend_from_slice(&[0x5a; 20]);
        let mut msg = Vec::new();
        msg.extend_from_slice(&0x0001u16.to_be_bytes());
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&0x2112_a442u32.to_be_bytes());
        msg.extend_from_slice(&[k; 12]);
        msg.extend_from_slice(&attrs);
        stray.send_to(&msg, target).unwrap();
    }
    // The stream is untouched: ffmpeg decodes it at its rate, and ingest lost nothing.
    let decode = ffmpeg_decode_live(&server.url("live/cam"), "tcp", 3.0);
    assert!(
        decode.video as f64 >= 0.8 * FPS * 3.0,
        "ffmpeg decoded {decode:?} in 3 s while garbage arrived"
    );
    let entry = ingest_entry(&server, "live/cam").expect("still published");
    assert_eq!(entry["state"], "online", "{entry}");
    assert_eq!(entry["lost"], 0, "nothing lost on the way in: {entry}");
    let unrouted = metric(&server, "shardcast_ingest_unrouted_total") - unrouted_before;
    assert!(
        unrouted >= 500,
        "the 500 stray datagrams are counted unrouted (got {unrouted})"
    );
    let lines = server.log_lines();
    let noisy = lines
        .iter()
        .filter(|l| l.contains("whip") || l.contains("unrouted") || l.contains("stun"))
        .count();
    assert!(
        noisy <= 5,
        "at most the publisher's own few lines, not one per datagram: {lines:#?}"
    );
    publisher.eval_json("window.whip.close()");
}

/// A counter's value in `/metrics`.
fn metric(server: &Server, name: &str) -> u64 {
    let text = server.http_get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}
