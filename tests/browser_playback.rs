//! The viewer page plays HLS in a real browser: headless Chromium (Debian's `chromium`;
//! `scripts/install-test-deps.sh` installs it, a missing browser fails the test) opens
//! `/#play=sample&hls=URL` on shardcast's HTTP port, and the test reads playback from the
//! page's `window.shardcastPlayer.state()`, which reports what the `<video>` element
//! (`currentTime`, `getVideoPlaybackQuality()`, `webkitAudioDecodedByteCount`) and hls.js
//! say, nothing computed by our code.
//!
//! The HLS here is cut from the bundled sample by ffmpeg (`-f hls -hls_segment_type fmp4`)
//! and served by a small static server in the test on another port of 127.0.0.1, so these
//! tests prove the page, the vendored hls.js, the content security policy (a violation is a
//! console error, and playback from another port needs the policy's allowance) and
//! Chromium's H.264/AAC decoding, independently of shardcast's own HLS server; they move to
//! that server's URLs once it exists.
//!
//! A live rendition (ffmpeg looping the sample in real time into a sliding 6-segment
//! playlist) checks the live side: the page learns it is live from the playlist, shows the
//! LIVE badge and hls.js's latency, and plays on. Chromium's own HLS player (new in 14x,
//! the path Safari takes through the page) plays the VOD rendition too.
//!
//! How they fail: time that does not advance, fewer frames decoded than the frame rate
//! gives, no audio decoded, any hls.js error or console error, a seek that lands elsewhere
//! or stalls.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::Server;
use serde_json::Value;

/// The sample's frame rate (`ffprobe tests/media/sample.mp4`: 25/1) and length.
const SAMPLE_FPS: f64 = 25.0;
const SAMPLE_SECS: f64 = 10.0;

const STATE: &str = "window.shardcastPlayer.state()";

/// `tests/media/sample.mp4` cut into a fMP4 VOD HLS rendition by ffmpeg, in a temporary
/// directory removed on drop.
struct HlsDir(PathBuf);

impl HlsDir {
    fn cut(tag: &str) -> HlsDir {
        let dir = std::env::temp_dir().join(format!("shardcast-hls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/sample.mp4");
        let (ok, _, err) = common::run_with_timeout(
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-i"])
                .arg(&sample)
                .args([
                    "-c",
                    "copy",
                    "-f",
                    "hls",
                    "-hls_segment_type",
                    "fmp4",
                    "-hls_playlist_type",
                    "vod",
                    "-hls_time",
                    "2",
                    "-hls_fmp4_init_filename",
                    "init.mp4",
                    "-hls_segment_filename",
                ])
                .arg(dir.join("seg%d.m4s"))
                .arg(dir.join("index.m3u8")),
            Duration::from_secs(60),
        );
        assert!(ok, "ffmpeg cutting HLS: {err}");
        HlsDir(dir)
    }
}

impl Drop for HlsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// ffmpeg looping the sample in real time (`-re -stream_loop -1`) into a live fMP4 HLS
/// playlist of the last 6 two-second segments, in a temporary directory; the process is
/// killed and the directory removed on drop.
struct LiveHls {
    dir: HlsDir,
    ffmpeg: std::process::Child,
}

impl LiveHls {
    fn start(tag: &str) -> LiveHls {
        let dir = std::env::temp_dir().join(format!("shardcast-hls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/sample.mp4");
        let ffmpeg = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&sample)
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_segment_type",
                "fmp4",
                "-hls_time",
                "2",
                "-hls_list_size",
                "6",
                // Written under a temporary name and renamed: the static server never
                // serves half a file.
                "-hls_flags",
                "delete_segments+temp_file",
                "-hls_fmp4_init_filename",
                "init.mp4",
                "-hls_segment_filename",
            ])
            .arg(dir.join("seg%d.m4s"))
            .arg(dir.join("index.m3u8"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ffmpeg (is it installed? scripts/install-test-deps.sh)");
        let live = LiveHls {
            dir: HlsDir(dir),
            ffmpeg,
        };
        // Two segments in the playlist before a player starts.
        let playlist = live.dir.0.join("index.m3u8");
        let end = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&playlist).map_or(true, |p| p.matches("#EXTINF").count() < 2)
        {
            assert!(Instant::now() < end, "ffmpeg wrote no live playlist");
            std::thread::sleep(Duration::from_millis(100));
        }
        live
    }
}

impl Drop for LiveHls {
    fn drop(&mut self) {
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
    }
}

/// A static file server on 127.0.0.1 for one directory: GET/HEAD/OPTIONS, one request per
/// connection, `Access-Control-Allow-Origin: *` (the page is on another port, so hls.js's
/// requests are cross-origin). Stops on drop.
struct StaticServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    fn start(root: PathBuf) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let root = root.clone();
                        let n = n.clone();
                        std::thread::spawn(move || serve_one(conn, &root, &n));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        StaticServer {
            addr,
            stop,
            served,
            thread: Some(thread),
        }
    }

    fn url(&self, file: &str) -> String {
        format!("http://{}/{file}", self.addr)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(conn: TcpStream, root: &Path, served: &AtomicUsize) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let cors = "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: *\r\n";
    let mut conn = conn;
    if method == "OPTIONS" {
        let _ = write!(
            conn,
            "HTTP/1.1 204 No Content\r\n{cors}Access-Control-Allow-Methods: GET, HEAD\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    let file = (!path.contains("..") && !path.is_empty())
        .then(|| std::fs::read(root.join(path)).ok())
        .flatten();
    let Some(body) = file else {
        let _ = write!(
            conn,
            "HTTP/1.1 404 Not Found\r\n{cors}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    };
    let mime = if path.ends_with(".m3u8") {
        "application/vnd.apple.mpegurl"
    } else {
        "video/mp4"
    };
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\n{cors}Content-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        let _ = conn.write_all(&body);
    }
    served.fetch_add(1, Ordering::Relaxed);
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
    let hls = HlsDir::cut("play");
    let files = StaticServer::start(hls.0.clone());
    let server = Server::start(&[]);
    let mut page = open_player(&server, "sample", &files.url("index.m3u8"));

    // Chromium's media stack can take H.264 High + AAC-LC through Media Source Extensions;
    // without that nothing below could pass.
    let mse = page
        .eval_json("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.64001e,mp4a.40.2\"')");
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
    // hls.js fetched the playlist, the init segment and media segments from the other port.
    assert!(files.served.load(Ordering::Relaxed) >= 4);

    // The page shows what plays.
    let shown = page.eval_json(
        "[document.getElementById('now-engine').textContent, document.getElementById('now-kind').textContent, document.getElementById('player').hidden]",
    );
    assert_eq!(shown, serde_json::json!(["hls.js", "VOD", false]));
}

#[test]
fn viewer_seeks_within_vod_hls() {
    let hls = HlsDir::cut("seek");
    let files = StaticServer::start(hls.0.clone());
    let server = Server::start(&[]);
    let mut page = open_player(&server, "sample", &files.url("index.m3u8"));
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
fn viewer_plays_live_hls_and_shows_its_latency() {
    let live = LiveHls::start("live");
    let files = StaticServer::start(live.dir.0.clone());
    let server = Server::start(&[]);
    // A name the catalog does not have: whether it is live comes from the playlist.
    let mut page = open_player(&server, "feed", &files.url("index.m3u8"));
    let start = page.wait_until(
        &format!("(() => {{ const s = {STATE}; return s.currentTime > 0 && !s.paused && s.latency > 0 ? s : null; }})()"),
        Duration::from_secs(40),
    );
    report("live started", &start);
    assert_eq!(
        start["live"],
        Value::Bool(true),
        "hls.js read a live playlist"
    );
    assert_eq!(start["engine"], "hls.js");
    let t0 = f(&start, "currentTime");
    let s = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime >= {} ? s : null; }})()",
            t0 + 3.0
        ),
        Duration::from_secs(20),
    );
    report("live after 3 s", &s);
    // hls.js's latency: the distance to the live edge, within the 12 s the playlist holds.
    let latency = f(&s, "latency");
    assert!(latency > 0.0 && latency < 12.0, "latency {latency}");
    assert!(f(&s, "liveSyncPosition") > 0.0);
    assert!(f(&s, "totalVideoFrames") >= 0.9 * SAMPLE_FPS * 3.0);
    assert!(f(&s, "audioDecodedBytes") > 0.0);
    assert_eq!(s["hlsErrors"], Value::Array(vec![]), "no hls.js errors");
    // The page shows LIVE and the latency it read.
    let shown = page.eval_json(
        "[document.getElementById('now-kind').textContent, document.getElementById('now-latency').hidden, document.getElementById('latency').textContent]",
    );
    assert_eq!(shown[0], "LIVE", "{shown}");
    assert_eq!(shown[1], false, "latency shown: {shown}");
    assert!(shown[2].as_str().unwrap().ends_with(" s"), "{shown}");
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
    let hls = HlsDir::cut("native");
    let files = StaticServer::start(hls.0.clone());
    let server = Server::start(&[]);
    let encoded: String =
        url::form_urlencoded::byte_serialize(files.url("index.m3u8").as_bytes()).collect();
    let mut page = Browser::open(&format!(
        "http://{}/#play=sample&hls={encoded}&engine=native",
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
    let hls = HlsDir::cut("missing");
    let files = StaticServer::start(hls.0.clone());
    let server = Server::start(&[]);
    let mut page = open_player(&server, "sample", &files.url("missing.m3u8"));
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
