//! The viewer page plays shardcast's own HLS in a real browser: headless Chromium (Debian's
//! `chromium`; `scripts/install-test-deps.sh` installs it, a missing browser fails the test)
//! opens `/#play=NAME` on shardcast's HTTP port — the page takes the stream's `hls_url` from
//! `GET /api/v1/streams` and plays it from the shards' HLS port with the vendored hls.js —
//! and the test reads playback from the page's `window.shardcastPlayer.state()`, which
//! reports what the `<video>` element (`currentTime`, `getVideoPlaybackQuality()`,
//! `webkitAudioDecodedByteCount`) and hls.js say, nothing computed by our code.
//!
//! VOD: the bundled sample plays, seeks, and plays in Chromium's own HLS player too (the
//! path Safari takes). Live: a channel over LL-HLS starts within 1.5 s of the click, plays
//! within 2.5 s of the live edge, and a viewer paused for 20 s rejoins the edge. An
//! ffmpeg-cut rendition served by a static server checks the page's error path.
//!
//! How they fail: time that does not advance, fewer frames decoded than the frame rate
//! gives, no audio decoded, any hls.js error or console error, a seek that lands elsewhere
//! or stalls, a slow start or a player far behind live.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::Server;
use serde_json::Value;

/// The sample's frame rate (`ffprobe tests/media/sample.mp4`: 25/1) and length.
const SAMPLE_FPS: f64 = 25.0;
const SAMPLE_SECS: f64 = 10.0;

const STATE: &str = "window.shardcastPlayer.state()";

/// The viewer page on `server` playing stream `name` from the server's own HLS (the deep
/// link the page documents: the page looks the stream's `hls_url` up in the catalog).
/// The tests of this file run one at a time: each drives a Chromium and a server, and two
/// of them measure what a viewer sees (first frame ≤ 1.5 s, LL-HLS latency ≤ 2.5 s). Six
/// browsers decoding at once on the 2-vCPU CI machine measured the machine instead (1.6 s
/// and 3.4 s seen once each in fresh-clone runs); the bounds are for one viewer.
static ONE_BROWSER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_stream(server: &Server, name: &str) -> Page {
    Browser::open(&format!(
        "http://{}/#play={name}&engine=hls.js",
        server.http_addr()
    ))
}

/// A server with the live channel `ch` (the sample looped).
fn live_server() -> Server {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4");
    Server::start(&["--live", &format!("ch={sample}")])
}

/// The viewer page on `server` playing `hls` as `name` (the deep link the page documents).
fn open_player(server: &Server, name: &str, hls: &str) -> Page {
    let encoded: String = url::form_urlencoded::byte_serialize(hls.as_bytes()).collect();
    Browser::open(&format!(
        "http://{}/#play={name}&hls={encoded}",
        server.http_addr()
    ))
}

fn f(state: &Value, key: &str) -> f64 {
    state[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number in {state}"))
}

/// Prints the state, so a passing run still records what the browser reported.
fn report(what: &str, state: &Value) {
    eprintln!("{what}: {state}");
}

#[test]
fn viewer_plays_vod_hls_with_hls_js() {
    let _one = one_at_a_time();
    let server = Server::start(&[]);
    let mut page = open_stream(&server, "sample");

    // Chromium's media stack can take the sample's H.264 Main + AAC-LC through Media Source
    // Extensions; without that nothing below could pass.
    let mse = page
        .eval_json("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.4d401e,mp4a.40.2\"')");
    assert_eq!(mse, Value::Bool(true), "Chromium plays H.264/AAC in MSE");

    // Playback starts (autoplay is allowed by the browser's flags).
    let start = page.wait_until(
        &format!("(() => {{ const s = {STATE}; return s.currentTime > 0.2 && !s.paused ? s : null; }})()"),
        Duration::from_secs(40),
    );
    let (t0, wall0) = (f(&start, "currentTime"), Instant::now());
    report("started", &start);
    assert_eq!(start["engine"], "hls.js", "Chromium plays through hls.js");
    assert_eq!(start["stream"], "sample");

    // At least 5 s of media plays, in about real time.
    let s = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime >= {} ? s : null; }})()",
            t0 + 5.0
        ),
        Duration::from_secs(30),
    );
    let wall = wall0.elapsed().as_secs_f64();
    report("after 5 s", &s);
    let played = f(&s, "currentTime");
    assert!(
        played - t0 <= wall * 1.1 + 0.5,
        "{:.2} s of media in {wall:.2} s of wall time: faster than real time",
        played - t0
    );
    assert!(!s["paused"].as_bool().unwrap(), "still playing");
    let frames = f(&s, "totalVideoFrames");
    let dropped = f(&s, "droppedVideoFrames");
    assert!(
        frames >= 0.9 * SAMPLE_FPS * played,
        "{frames} frames for {played:.2} s at {SAMPLE_FPS} fps"
    );
    assert!(
        dropped <= 0.05 * frames + 2.0,
        "{dropped} of {frames} frames dropped"
    );
    assert!(
        f(&s, "audioDecodedBytes") > 0.0,
        "the AAC track is decoded (muted, still decoded): {s}"
    );
    assert!(
        (f(&s, "duration") - SAMPLE_SECS).abs() < 0.2,
        "VOD duration from the playlist"
    );
    assert_eq!(s["live"], Value::Bool(false), "a VOD playlist is not live");
    assert_eq!(s["hlsErrors"], Value::Array(vec![]), "no hls.js errors");
    assert!(f(&s, "bufferedEnd") >= played, "buffered ahead");
    assert!(
        page.console_errors().is_empty(),
        "console errors (a CSP violation would be one): {:#?}",
        page.console_errors()
    );
    // The media came from the shards' HLS port.
    assert!(
        server.total_reaches("hls_bytes", 500_000, Duration::from_secs(5)) >= 500_000,
        "HLS bytes served by the shards"
    );

    // The page shows what plays.
    let shown = page.eval_json(
        "[document.getElementById('now-engine').textContent, document.getElementById('now-kind').textContent, document.getElementById('player').hidden]",
    );
    assert_eq!(shown, serde_json::json!(["hls.js", "VOD", false]));
}

#[test]
fn viewer_seeks_within_vod_hls() {
    let _one = one_at_a_time();
    let server = Server::start(&[]);
    let mut page = open_stream(&server, "sample");
    page.wait_until(
        &format!("(() => {{ const s = {STATE}; return s.currentTime > 0.2 && !s.paused; }})()"),
        Duration::from_secs(40),
    );

    // Forward past what is buffered, then back: each seek lands where it was asked to
    // (hls.js and MSE seek to the exact time; the decoder starts from the keyframe before
    // it and shows the target frame), and playback goes on from there.
    for target in [6.4_f64, 1.5] {
        let landed = page.eval_json(&format!(
            "new Promise((done) => {{
                const v = document.getElementById('video');
                v.addEventListener('seeked', () => done(v.currentTime), {{ once: true }});
                v.currentTime = {target};
            }})"
        ));
        let landed = landed.as_f64().expect("currentTime after seeked");
        eprintln!("seek to {target}: currentTime {landed} at `seeked`");
        assert!(
            (landed - target).abs() < 0.05,
            "seek to {target} landed at {landed}"
        );
        let s = page.wait_until(
            &format!(
                "(() => {{ const s = {STATE}; return s.currentTime >= {} && !s.paused ? s : null; }})()",
                target + 1.5
            ),
            Duration::from_secs(20),
        );
        report(&format!("1.5 s after seeking to {target}"), &s);
        assert_eq!(s["hlsErrors"], Value::Array(vec![]), "no hls.js errors");
    }
    assert!(
        page.console_errors().is_empty(),
        "console errors: {:#?}",
        page.console_errors()
    );
}

#[test]
fn viewer_plays_a_live_channel_over_ll_hls_near_the_live_edge_and_rejoins_after_a_pause() {
    let _one = one_at_a_time();
    let server = live_server();
    // A channel that has been running a while (its first segment complete).
    std::thread::sleep(Duration::from_secs(3));
    let mut page = Browser::open(&format!("http://{}/#engine=hls.js", server.http_addr()));
    page.wait_until(
        "document.querySelector('li[data-stream=\"ch\"] button.play') !== null",
        Duration::from_secs(20),
    );
    // The click, then the first frame the page presents (requestVideoFrameCallback), timed
    // in the page.
    let first_frame_ms = page.eval_json(
        "new Promise((done) => {
            const v = document.getElementById('video');
            const t0 = performance.now();
            v.requestVideoFrameCallback(() => done(performance.now() - t0));
            document.querySelector('li[data-stream=\"ch\"] button.play').click();
        })",
    );
    let first_frame_ms = first_frame_ms.as_f64().expect("a frame was presented");
    eprintln!("first frame {first_frame_ms:.0} ms after the click");
    assert!(
        first_frame_ms <= 1500.0,
        "first frame {first_frame_ms:.0} ms after the click (target ≤ 1.5 s)"
    );
    let start = page.wait_until(
        &format!("(() => {{ const s = {STATE}; return s.currentTime > 0 && !s.paused && s.latency > 0 ? s : null; }})()"),
        Duration::from_secs(20),
    );
    report("live started", &start);
    assert_eq!(start["live"], Value::Bool(true));
    assert_eq!(start["engine"], "hls.js");
    let t0 = f(&start, "currentTime");
    let s = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime >= {} ? s : null; }})()",
            t0 + 6.0
        ),
        Duration::from_secs(20),
    );
    report("live after 6 s", &s);
    // hls.js's latency: the player's distance behind the live edge.
    let latency = f(&s, "latency");
    assert!(
        latency > 0.0 && latency <= 2.5,
        "{latency:.2} s behind the live edge (target ≤ 2.5 s)"
    );
    assert!(f(&s, "totalVideoFrames") >= 0.9 * SAMPLE_FPS * 6.0);
    assert!(f(&s, "droppedVideoFrames") <= 0.05 * f(&s, "totalVideoFrames") + 2.0);
    assert!(f(&s, "audioDecodedBytes") > 0.0);
    assert_eq!(s["hlsErrors"], Value::Array(vec![]), "no hls.js errors");
    let shown = page.eval_json(
        "[document.getElementById('now-kind').textContent, document.getElementById('now-latency').hidden]",
    );
    assert_eq!(shown, serde_json::json!(["LIVE", false]));

    // Paused 20 s: the position falls out of the 12 s window; on resume the player goes
    // back to the live edge.
    page.eval_json("document.getElementById('video').pause(), true");
    std::thread::sleep(Duration::from_secs(20));
    page.eval_json("document.getElementById('video').play().then(() => true)");
    let back = page.wait_until(
        &format!("(() => {{ const s = {STATE}; return !s.paused && s.latency > 0 && s.latency <= 4 ? s : null; }})()"),
        Duration::from_secs(20),
    );
    report("resumed after 20 s", &back);
    let t1 = f(&back, "currentTime");
    let on = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime >= {} ? s : null; }})()",
            t1 + 2.0
        ),
        Duration::from_secs(20),
    );
    report("playing after rejoining", &on);
    assert!(f(&on, "latency") <= 4.0, "rejoined the live edge: {on}");
    assert!(
        page.console_errors().is_empty(),
        "console errors: {:#?}",
        page.console_errors()
    );
}

/// Chromium 148 has its own HLS player (`canPlayType` says "maybe"); `#engine=native`
/// makes the page use it, the path Safari takes. It loads the playlist URL straight into
/// the `<video>`, which the viewer's CSP allows through `media-src`, and it is a second
/// HLS implementation beside hls.js reading the same files.
#[test]
fn viewer_plays_vod_hls_with_the_browsers_own_player() {
    let _one = one_at_a_time();
    let server = Server::start(&[]);
    let mut page = Browser::open(&format!(
        "http://{}/#play=sample&engine=native",
        server.http_addr()
    ));
    let start = page.wait_until(
        &format!("(() => {{ const s = {STATE}; return s.currentTime > 0.2 && !s.paused ? s : null; }})()"),
        Duration::from_secs(40),
    );
    report("native started", &start);
    assert_eq!(start["engine"], "native");
    let t0 = f(&start, "currentTime");
    let s = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime >= {} ? s : null; }})()",
            t0 + 3.0
        ),
        Duration::from_secs(20),
    );
    report("native after 3 s", &s);
    let played = f(&s, "currentTime");
    assert!(f(&s, "totalVideoFrames") >= 0.9 * SAMPLE_FPS * played);
    assert!(f(&s, "audioDecodedBytes") > 0.0);
    assert!((f(&s, "duration") - SAMPLE_SECS).abs() < 0.2);
    assert_eq!(s["hlsErrors"], Value::Array(vec![]), "no media errors");
    assert!(
        page.console_errors().is_empty(),
        "console errors: {:#?}",
        page.console_errors()
    );
}

/// A playlist that is not there: hls.js reports a fatal network error, the page retries
/// once, and the second fatal error ends playback with a message naming it. Every error is
/// in `hlsErrors` as hls.js reported it.
#[test]
fn viewer_reports_a_missing_playlist_after_one_retry() {
    let _one = one_at_a_time();
    let server = Server::start(&[]);
    let missing = format!("http://{}/hls/nosuch/index.m3u8", server.hls.unwrap());
    let mut page = open_player(&server, "sample", &missing);
    let msg = page.wait_until(
        "(() => { const e = document.getElementById('now-error'); return e.hidden ? null : e.textContent; })()",
        Duration::from_secs(60),
    );
    assert_eq!(msg, "Playback failed: networkError / manifestLoadError");
    let s = page.eval_json(STATE);
    report("missing playlist", &s);
    let fatal: Vec<&Value> = s["hlsErrors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fatal"] == true)
        .collect();
    assert_eq!(fatal.len(), 2, "one retry, then the end: {s}");
    for e in fatal {
        assert_eq!(e["details"], "manifestLoadError");
        assert_eq!(e["status"], 404);
    }
}

/// The channel loops every 10.08 s; its timestamps run on across the loop point (RFC 3550's
/// rule on the RTP side, `tfdt` here), so a browser plays through it without a stall or a
/// hole in what it buffered.
#[test]
fn a_live_channel_plays_through_its_loop_points_in_the_browser() {
    let _one = one_at_a_time();
    let server = live_server();
    std::thread::sleep(Duration::from_secs(5));
    let mut page = open_stream(&server, "ch");
    let start = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime > 0 && !s.paused ? s : null; }})()"
        ),
        Duration::from_secs(20),
    );
    let (t0, wall0) = (f(&start, "currentTime"), Instant::now());
    // Past the loop point at 10.08 s and on for a few seconds.
    let s = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime >= {} ? s : null; }})()",
            14.0_f64.max(t0 + 8.0)
        ),
        Duration::from_secs(30),
    );
    report("across the loop point", &s);
    let played = f(&s, "currentTime") - t0;
    let wall = wall0.elapsed().as_secs_f64();
    assert!(
        wall - played < 0.6,
        "{played:.2} s played in {wall:.2} s: stalled"
    );
    assert_eq!(s["hlsErrors"], Value::Array(vec![]), "no hls.js errors");
    let ranges = page.eval_json("(() => { const v = document.getElementById('video'); const r = []; for (let i = 0; i < v.buffered.length; i++) r.push([v.buffered.start(i), v.buffered.end(i)]); return r; })()");
    assert_eq!(
        ranges.as_array().unwrap().len(),
        1,
        "one buffered range, no hole: {ranges}"
    );
}
