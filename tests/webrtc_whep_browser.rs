//! WHEP playback end to end against real WebRTC implementations (issue 17's acceptance):
//! headless Chromium (Debian's `chromium`, driven over DevTools by `tests/common/browser.rs`)
//! on the server's own origin offers recvonly video + audio, POSTs to `/whep/{stream}` on the
//! `--http-listen` port, plays the answer, and the assertions read Chromium's own
//! `getStats()` (`inbound-rtp`: `framesDecoded`, `packetsLost`, `totalSamplesDuration`,
//! `concealedSamples`, `jitterBufferDelay`); aiortc (`tests/fixtures/whep_client.py`, a
//! second implementation with FFmpeg and libopus decoders) plays the same stream; the viewer
//! page picks WebRTC for a stream with `whep_url` and falls back to HLS on its own for one
//! WebRTC cannot carry (B-frames); a tab that vanishes without `DELETE` ends within the ICE
//! consent timeout (RFC 7675 §5.1: 30 s); and the HTTP contract of `docs/design/webrtc.md`
//! ("WHEP over HTTP") holds for bad requests.
//!
//! How they fail: a refused POST or answer (the status and the server's reason, or
//! Chromium's error, are in the message), fewer frames decoded than the frame rate gives,
//! any packet lost on loopback, audio that does not advance or is mostly concealment, a
//! jitter buffer over 150 ms, a session the server keeps after its browser is gone, a wrong
//! status code for a bad request.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::whep::{
    check_playback, chromium_offer, num, open_harness, request, run_aiortc, sessions_become, start,
    start_playing, webrtc_sessions,
};
use common::Server;

/// The sample's frame rate (`ffprobe tests/media/sample.mp4`: H.264 Main 640×360, 25/1,
/// AAC-LC 48 kHz stereo, 10.0 s; over WebRTC its sound is the server's Opus rendition).
const SAMPLE_FPS: f64 = 25.0;

/// ICE consent freshness: a session with no valid check for 30 s ends (RFC 7675 §5.1).
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A server with the live channel `ch` (the sample looped), as `tests/live_channels.rs`.
fn live_server() -> Server {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4");
    Server::start(&["--live", &format!("ch={sample}")])
}

/// A server whose media folder holds the sample and `bframes` (H.264 High with B-frames,
/// `has_b_frames=2`, 4 s), in a copy of its own.
fn bframes_server() -> Server {
    let dir = std::env::temp_dir().join(format!("shardcast-whep-bframes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["sample.mp4", "bframes.mp4"] {
        std::fs::copy(
            format!("{}/tests/media/{f}", env!("CARGO_MANIFEST_DIR")),
            dir.join(f),
        )
        .unwrap();
    }
    Server::start(&["--media", dir.to_str().unwrap()])
}

/// (a) The bundled sample plays in Chromium over WHEP with picture and sound.
#[test]
fn chromium_plays_the_sample_over_whep() {
    let server = Server::start(&[]);
    let mut page = open_harness(&server);
    let answer = start_playing(&mut page, "/whep/sample");
    eprintln!("answer:\n{}", answer.body);
    let s = check_playback(&mut page, "sample", SAMPLE_FPS, 6.0);
    let video_codec = s["video"]["codec"].as_str().unwrap_or_default();
    assert!(
        video_codec.starts_with("video/H264"),
        "Chromium decodes H.264: {video_codec}"
    );
    let audio_codec = s["audio"]["codec"].as_str().unwrap_or_default();
    assert!(
        audio_codec.starts_with("audio/opus"),
        "Chromium receives Opus (the AAC sample's rendition): {audio_codec}"
    );
    assert_eq!(
        (
            num(&s, "video", "frameWidth"),
            num(&s, "video", "frameHeight")
        ),
        (640.0, 360.0),
        "the sample's picture size: {}",
        s["video"]
    );
    assert_eq!(
        s["transport"]["dtlsState"], "connected",
        "{}",
        s["transport"]
    );
    assert!(
        page.console_errors().is_empty(),
        "console errors: {:#?}",
        page.console_errors()
    );
    // The server counts this viewer as a WebRTC session of the sample.
    assert_eq!(
        webrtc_sessions(&server, "sample").len(),
        1,
        "GET /api/v1/sessions lists the WebRTC viewer"
    );
}

/// (b) A live channel plays the same way; the first frame comes within a second of the
/// POST (the target is 400 ms from the click on a quiet machine; this is printed).
#[test]
fn chromium_plays_a_live_channel_over_whep() {
    let server = live_server();
    std::thread::sleep(Duration::from_secs(2));
    let mut page = open_harness(&server);
    start_playing(&mut page, "/whep/ch");
    let s = check_playback(&mut page, "live channel", SAMPLE_FPS, 8.0);
    let first = s["firstFrameMs"].as_f64().unwrap_or(f64::MAX);
    assert!(
        first <= 1000.0,
        "first frame {first:.0} ms after the POST (target 400 ms)"
    );
    assert!(
        num(&s, "video", "keyFramesDecoded") >= 1.0,
        "{}",
        s["video"]
    );
}

/// A published stream's AAC reaches browsers as the Opus the server makes of it once per
/// stream as it arrives (`rendition::live`): ffmpeg publishes the sample (H.264 + AAC) over
/// RTSP, Chromium plays it over WHEP with picture and sound, while RTSP viewers still get
/// the publisher's own two tracks and nothing else.
#[test]
fn a_published_aac_stream_plays_with_sound_over_whep() {
    let server = Server::start(&["--publish", "live/*"]);
    let sample = common::publishers::media("sample.mp4");
    let mut publisher =
        common::publishers::ffmpeg_publish_looped(&sample, &server.url("live/aac"), "tcp", 2);
    let sdp = common::publishers::wait_published(&server, "live/aac", Duration::from_secs(10));
    assert!(
        sdp.contains("H264/90000")
            && sdp.to_lowercase().contains("mpeg4-generic")
            && !sdp.to_lowercase().contains("opus")
            && sdp.matches("m=").count() == 2,
        "RTSP viewers get the publisher's tracks only: {sdp}"
    );
    let mut page = open_harness(&server);
    start_playing(&mut page, "/whep/live/aac");
    let s = check_playback(&mut page, "published stream", SAMPLE_FPS, 6.0);
    let codec = s["audio"]["codec"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        codec.contains("opus"),
        "audio codec {codec:?}: {}",
        s["audio"]
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// (c) A stream with B-frames: the POST answers 422 with the reason, and the viewer page
/// falls back to HLS on its own and plays it.
#[test]
fn bframes_get_422_and_the_viewer_falls_back_to_hls() {
    let server = bframes_server();
    let mut page = open_harness(&server);
    let a = start(&mut page, "/whep/bframes");
    eprintln!("POST /whep/bframes: {} {:?}", a.status, a.body);
    assert_eq!(
        a.status, 422,
        "B-frames cannot go to a browser over WebRTC; the server answered {}: {}",
        a.status, a.body
    );
    assert!(
        a.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("text/plain"),
        "the reason is text/plain: {:?}",
        a.content_type
    );
    assert!(
        a.body.to_lowercase().contains("b-frame"),
        "the reason names B-frames: {:?}",
        a.body
    );
    let entry = server.http_get("/api/v1/streams/bframes").json();
    eprintln!("catalog entry: {entry}");

    // The viewer page: told to try WHEP for it (the catalog may rightly leave `whep_url`
    // out), it gets the 422 and plays HLS instead, saying so.
    let mut viewer = Browser::open(&format!(
        "http://{}/#play=bframes&whep=/whep/bframes",
        server.http_addr()
    ));
    let st = "window.shardcastPlayer.state()";
    let s0 = viewer.wait_until(
        &format!(
            "(() => {{ const s = {st}; return s.currentTime > 0.2 && !s.paused ? s : null; }})()"
        ),
        Duration::from_secs(30),
    );
    eprintln!("viewer after the fallback: {s0}");
    assert_eq!(s0["protocol"], "hls", "the page fell back to HLS: {s0}");
    assert_eq!(s0["engine"], "hls.js", "{s0}");
    let why = s0["fallback"].as_str().unwrap_or_default();
    assert!(
        why.contains("422"),
        "the page records why it left WebRTC: {why:?}"
    );
    let t0 = s0["currentTime"].as_f64().unwrap();
    let s1 = viewer.wait_until(
        &format!(
            "(() => {{ const s = {st}; return s.currentTime >= {} ? s : null; }})()",
            t0 + 1.5
        ),
        Duration::from_secs(10),
    );
    assert!(
        s1["totalVideoFrames"].as_f64().unwrap_or(0.0) > 0.0,
        "frames decoded over HLS: {s1}"
    );
    let shown = viewer.eval_json(
        "[document.getElementById('now-engine').textContent, document.getElementById('now-engine').dataset.protocol, document.getElementById('now-fallback').hidden]",
    );
    assert_eq!(shown, serde_json::json!(["hls.js", "hls", false]));
    // Nothing of the refused attempt is left on the server.
    assert!(webrtc_sessions(&server, "bframes").is_empty());
}

/// (d) A browser killed outright (no DELETE, no DTLS close_notify, no more consent checks):
/// the server ends its session within the consent timeout.
#[test]
fn a_vanished_browser_ends_its_session_within_the_consent_timeout() {
    let server = Server::start(&[]);
    let mut page = open_harness(&server);
    start_playing(&mut page, "/whep/sample");
    common::whep::wait_first_frame(&mut page, Duration::from_secs(10));
    assert_eq!(
        webrtc_sessions(&server, "sample").len(),
        1,
        "one session while playing"
    );
    // Dropping the page SIGKILLs the browser's whole process group.
    drop(page);
    let gone = sessions_become(
        &server,
        "sample",
        0,
        CONSENT_TIMEOUT + Duration::from_secs(8),
    );
    eprintln!("session ended {gone:?} after the browser was killed");
    assert!(
        gone.is_some(),
        "the server still lists the session {:?} after the consent timeout: {:?}",
        CONSENT_TIMEOUT + Duration::from_secs(8),
        webrtc_sessions(&server, "sample")
    );
}

/// (d) `DELETE` ends a session at once; closing the peer connection and leaving the page
/// (Chromium sends a DTLS close_notify, RFC 5246 §7.2.1) ends the other within the consent
/// timeout at the latest.
#[test]
fn delete_and_leaving_the_page_end_sessions() {
    let server = Server::start(&[]);
    let mut page = open_harness(&server);
    start_playing(&mut page, "/whep/sample");
    common::whep::wait_first_frame(&mut page, Duration::from_secs(10));
    assert_eq!(webrtc_sessions(&server, "sample").len(), 1);
    let t0 = Instant::now();
    let status = page.eval_json("window.whep.del()");
    assert_eq!(status, 200, "DELETE of the session's Location");
    let gone = sessions_become(&server, "sample", 0, Duration::from_secs(2));
    assert!(
        gone.is_some(),
        "DELETE answered {status} but the session is still listed {:?} later",
        t0.elapsed()
    );
    let again = page.eval_json("window.whep.del()");
    assert_eq!(again, 404, "a second DELETE of the same session");
    page.eval_json("window.whep.close()");

    // A second viewer in a fresh harness, then the tab navigates away without DELETE.
    page.navigate(&format!("http://{}/", server.http_addr()));
    page.wait_until(
        "document.readyState === 'complete'",
        Duration::from_secs(20),
    );
    page.eval_json(common::whep::HARNESS_JS);
    start_playing(&mut page, "/whep/sample");
    common::whep::wait_first_frame(&mut page, Duration::from_secs(10));
    assert_eq!(webrtc_sessions(&server, "sample").len(), 1);
    page.navigate("about:blank");
    let gone = sessions_become(
        &server,
        "sample",
        0,
        CONSENT_TIMEOUT + Duration::from_secs(8),
    );
    eprintln!("session ended {gone:?} after the tab left");
    assert!(gone.is_some(), "the session outlived its tab");
}

/// (e) The HTTP contract for bad requests (`docs/design/webrtc.md`, "WHEP over HTTP").
#[test]
fn whep_http_answers_bad_requests_with_the_designed_status() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    let mut page = open_harness(&server);

    // Not SDP at all.
    let r = request(
        addr,
        "POST",
        "/whep/sample",
        Some("application/sdp"),
        b"v=0\r\nthis is not SDP\r\n",
    );
    assert_eq!(
        r.status,
        400,
        "a malformed offer: {} {}",
        r.status,
        r.text()
    );
    assert!(!r.text().trim().is_empty(), "400 says why");

    // Chromium's own offer with only VP8 for video.
    let vp8 = chromium_offer(
        &mut page,
        "const t = pc.addTransceiver('video', {direction: 'recvonly'});
         t.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs
             .filter(c => c.mimeType === 'video/VP8'));
         pc.addTransceiver('audio', {direction: 'recvonly'});",
    );
    let r = request(
        addr,
        "POST",
        "/whep/sample",
        Some("application/sdp"),
        vp8.as_bytes(),
    );
    eprintln!("VP8-only offer: {} {:?}", r.status, r.text());
    assert_eq!(r.status, 422, "a VP8-only offer: {} {}", r.status, r.text());
    assert!(
        r.text().contains("VP8"),
        "422 names what was offered: {:?}",
        r.text()
    );

    // A real offer under the wrong content type.
    let good = chromium_offer(
        &mut page,
        "pc.addTransceiver('video', {direction: 'recvonly'}); pc.addTransceiver('audio', {direction: 'recvonly'});",
    );
    let r = request(
        addr,
        "POST",
        "/whep/sample",
        Some("text/plain"),
        good.as_bytes(),
    );
    assert_eq!(
        r.status,
        415,
        "Content-Type text/plain: {} {}",
        r.status,
        r.text()
    );
    let r = request(
        addr,
        "POST",
        "/whep/nosuch",
        Some("application/sdp"),
        good.as_bytes(),
    );
    assert_eq!(
        r.status,
        404,
        "an unknown stream: {} {}",
        r.status,
        r.text()
    );

    // CORS preflight, as a page on another origin sends it.
    let r = common::http_request(
        addr,
        "OPTIONS",
        "/whep/sample",
        &[
            ("Origin", "http://elsewhere.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(r.status, 204, "OPTIONS: {} {:?}", r.status, r.headers);
    assert!(
        r.header("Access-Control-Allow-Origin").is_some(),
        "CORS: {:?}",
        r.headers
    );
    assert!(
        r.header("Access-Control-Allow-Methods")
            .unwrap_or("")
            .contains("POST"),
        "{:?}",
        r.headers
    );
    assert!(
        r.header("Accept-Post")
            .unwrap_or("")
            .contains("application/sdp"),
        "{:?}",
        r.headers
    );

    // A session made over plain HTTP with the browser's offer (no ICE needed to create it).
    let r = request(
        addr,
        "POST",
        "/whep/sample",
        Some("application/sdp"),
        good.as_bytes(),
    );
    assert_eq!(r.status, 201, "a good offer: {} {}", r.status, r.text());
    let loc = r.header("Location").expect("Location").to_owned();
    // A path (as the design writes it) or an absolute URL on this server.
    let loc = match loc.find("/whep/") {
        Some(i) => loc[i..].to_owned(),
        None => panic!("Location names /whep/session/…: {loc}"),
    };
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
        "PATCH (trickle ICE): {} {}",
        r.status,
        r.text()
    );
    assert!(
        r.header("Allow").unwrap_or("").contains("DELETE"),
        "405 says what is allowed: {:?}",
        r.headers
    );
    let r = request(addr, "DELETE", &loc, None, b"");
    assert_eq!(r.status, 200, "DELETE {loc}: {} {}", r.status, r.text());
    let r = request(addr, "DELETE", &loc, None, b"");
    assert_eq!(
        r.status,
        404,
        "DELETE {loc} again: {} {}",
        r.status,
        r.text()
    );
    let r = request(
        addr,
        "DELETE",
        "/whep/session/0123456789abcdef0123456789abcdef",
        None,
        b"",
    );
    assert_eq!(
        r.status,
        404,
        "DELETE of an unknown session: {} {}",
        r.status,
        r.text()
    );
}

/// The viewer page plays a stream whose catalog entry has `whep_url` over WebRTC and says so.
#[test]
fn the_viewer_page_plays_over_webrtc_and_shows_it() {
    let server = Server::start(&[]);
    let entry = server.http_get("/api/v1/streams/sample").json();
    assert!(
        entry["whep_url"].is_string(),
        "the sample's catalog entry has whep_url: {entry}"
    );
    let mut page = Browser::open(&format!("http://{}/#play=sample", server.http_addr()));
    let st = "window.shardcastPlayer.state()";
    let s = page.wait_until(
        &format!("(() => {{ const s = {st}; return s.totalVideoFrames > 25 && !s.paused ? s : null; }})()"),
        Duration::from_secs(20),
    );
    eprintln!("viewer over WebRTC: {s}");
    assert_eq!(s["protocol"], "webrtc", "{s}");
    assert_eq!(s["whep"]["connectionState"], "connected", "{s}");
    assert!(s["fallback"].is_null(), "{s}");
    let shown = page.eval_json(
        "[document.getElementById('now-engine').textContent, document.getElementById('now-engine').dataset.protocol]",
    );
    assert_eq!(shown, serde_json::json!(["WebRTC", "webrtc"]));
    let w = page.eval_json("window.shardcastPlayer.webrtcStats()");
    assert!(num(&w, "video", "framesDecoded") > 25.0, "{w}");
    assert_eq!(webrtc_sessions(&server, "sample").len(), 1);
    // Closing the player DELETEs the session.
    page.eval_json("document.getElementById('close').click(), true");
    assert!(
        sessions_become(&server, "sample", 0, Duration::from_secs(3)).is_some(),
        "closing the player ends the WebRTC session"
    );
    assert!(
        page.console_errors().is_empty(),
        "console errors: {:#?}",
        page.console_errors()
    );
}

/// A second, independent WebRTC implementation plays the sample: aiortc (ICE from aioice,
/// DTLS from OpenSSL through pyOpenSSL/cryptography, SRTP from libsrtp2, H.264 decoded by
/// FFmpeg through PyAV, Opus by libopus).
#[test]
fn aiortc_plays_the_sample_over_whep() {
    let server = Server::start(&[]);
    let url = format!("http://{}/whep/sample", server.http_addr());
    let secs = 5.0;
    let r = run_aiortc(&url, secs);
    let j = &r.json;
    eprintln!("aiortc: {j}");
    assert_eq!(j["status"], 201, "POST answered: {j}\n{}", r.stderr);
    assert!(j["error"].is_null(), "aiortc: {j}\n{}", r.stderr);
    let got = |k: &str| j[k].as_f64().unwrap_or(0.0);
    let watched = got("seconds");
    assert!(
        got("video_frames") >= 0.8 * SAMPLE_FPS * watched,
        "aiortc decoded {} video frames in {watched:.2} s: {j}",
        j["video_frames"]
    );
    assert_eq!((got("width"), got("height")), (640.0, 360.0), "{j}");
    let rate = got("audio_rate").max(1.0);
    assert!(
        got("audio_samples") / rate >= 0.8 * watched,
        "aiortc decoded {} s of audio in {watched:.2} s: {j}",
        got("audio_samples") / rate
    );
    assert_eq!(j["delete_status"], 200, "{j}");
    assert!(
        sessions_become(&server, "sample", 0, Duration::from_secs(3)).is_some(),
        "the DELETE ended the session"
    );
}
