//! The three parties of issue 15 with tokens required: a viewer's browser, the operator's
//! own web app (`docs/examples/webapp.py`, run as a child process) and shardcast
//! (`--require-token`). The browser gets its pages from the web app, which asks shardcast's
//! API for a signed HLS URL bound to the viewer's address; the browser then fetches every
//! playlist and segment from shardcast's HLS port itself.
//!
//! What proves it, all measured outside our code: headless Chromium's `<video>` advances
//! ≥ 5 s with about 25 frames a second and decoded audio, hls.js reports no error and the
//! page no console error (a CSP violation would be one); the browser's own Resource Timing
//! entries show every playlist and segment came from the HLS port with a token; the web app's
//! request log shows it served only its two small pages; shardcast's `totals.hls_bytes`
//! grew by at least the media played. Then shardcast refuses, with 403 on playlists and
//! segments, a request without a token, with a tampered token, with another stream's token,
//! with an expired token, and with the page's token sent from another address.
//!
//! How they fail: no playback or too few frames, media fetched from anywhere but the HLS
//! port, the web app serving media or big pages, a refusal answered 200 (each refusal has
//! a positive control that must be 200, so the 403s cannot come from a broken request),
//! an unescaped stream name, or a traceback instead of an error page.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::{http_request, parse_http, HttpReply, Server};
use serde_json::Value;

const ADMIN: &str = "admin-secret-for-three-party-tests";
/// The sample's frame rate (`ffprobe tests/media/sample.mp4`: 25/1).
const SAMPLE_FPS: f64 = 25.0;
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4");

/// One headless Chromium at a time from this file: two playing at once on a 2-core machine
/// would measure the machine, not the stream.
static BROWSER: Mutex<()> = Mutex::new(());

/// What the page's `<video>` and hls.js say (the web app's page exposes hls.js errors as
/// `window.playerErrors`; everything else is the media element's own figures).
const STATE: &str = "(() => { const v = document.querySelector('video'); if (!v) return null;
    const q = v.getVideoPlaybackQuality();
    return { path: location.pathname, currentTime: v.currentTime, paused: v.paused,
      totalVideoFrames: q.totalVideoFrames, droppedVideoFrames: q.droppedVideoFrames,
      audioDecodedBytes: v.webkitAudioDecodedByteCount, duration: v.duration,
      errors: window.playerErrors,
      engine: window.Hls && window.Hls.isSupported() ? 'hls.js' : 'native' }; })()";

/// Every resource the page fetched (Resource Timing, the browser's own record).
const RESOURCES: &str = "performance.getEntriesByType('resource').map((e) => e.name)";

/// `python3 docs/examples/webapp.py` on a free port, killed on drop; its stderr (one line
/// per request it served) is collected.
struct WebApp {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl WebApp {
    /// The web app talking to shardcast's HTTP side at `shardcast` with `admin` as its token.
    fn start(shardcast: &str, admin: &str) -> WebApp {
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/docs/examples/webapp.py"
            ))
            .args(["--shardcast", shardcast, "--listen", "127.0.0.1:0"])
            .env("SHARDCAST_ADMIN_TOKEN", admin)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3 (is it installed?)");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("webapp printed no address; stderr: {:?}", log));
        let addr = line
            .strip_prefix("webapp listening on http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("webapp's first line: {line:?}"));
        WebApp { child, addr, log }
    }

    /// For `server`'s HTTP side.
    fn for_server(server: &Server) -> WebApp {
        WebApp::start(&format!("http://{}", server.http_addr()), ADMIN)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> HttpReply {
        http_request(self.addr, "GET", path, &[], b"")
    }

    /// (method, path, status, bytes) of every request the web app logged.
    fn requests(&self) -> Vec<(String, String, u16, u64)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut w = l.strip_prefix("request ")?.split(' ');
                Some((
                    w.next()?.to_owned(),
                    w.next()?.to_owned(),
                    w.next()?.parse().ok()?,
                    w.next()?.parse().ok()?,
                ))
            })
            .collect()
    }
}

impl Drop for WebApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("webapp log:\n{}", self.log.lock().unwrap().join("\n"));
        }
    }
}

fn tokens_required_server() -> Server {
    Server::start_env(
        &["--require-token", "--live", &format!("ch={SAMPLE}")],
        &[("SHARDCAST_ADMIN_TOKEN", ADMIN)],
    )
}

/// A play grant straight from shardcast's API (what a web app does): `lifetime` seconds,
/// bound to nobody.
fn grant(server: &Server, stream: &str, lifetime: u64) -> Value {
    let r = http_request(
        server.http_addr(),
        "POST",
        "/api/v1/play",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {ADMIN}")),
        ],
        format!("{{\"stream\":\"{stream}\",\"lifetime_secs\":{lifetime}}}").as_bytes(),
    );
    assert_eq!(r.status, 200, "POST /api/v1/play: {}", r.text());
    r.json()
}

/// `GET path` on `addr` from source address `from` (any 127/8 address is local on Linux);
/// the status.
fn status_from(from: IpAddr, addr: SocketAddr, path: &str) -> u16 {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr} from {from}: {e}"));
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_http(&raw)
        .unwrap_or_else(|| panic!("GET {path}: no HTTP response"))
        .status
}

fn status(addr: SocketAddr, path: &str) -> u16 {
    status_from(IpAddr::V4(Ipv4Addr::LOCALHOST), addr, path)
}

fn f(state: &Value, key: &str) -> f64 {
    state[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number in {state}"))
}

fn no_console_errors(page: &Page) {
    assert!(
        page.console_errors().is_empty(),
        "console errors (a CSP violation is one): {:#?}",
        page.console_errors()
    );
}

/// Waits for playback to start, then for 5 s more of media; checks frames, audio and
/// errors over that span; the state at the end.
fn plays_five_seconds(page: &mut Page, what: &str) -> Value {
    let start = page.wait_until(
        &format!("(() => {{ const s = {STATE}; return s && s.currentTime > 0.2 && !s.paused ? s : null; }})()"),
        Duration::from_secs(40),
    );
    eprintln!("{what} started: {start}");
    let (t0, frames0) = (f(&start, "currentTime"), f(&start, "totalVideoFrames"));
    let s = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s && s.currentTime >= {} ? s : null; }})()",
            t0 + 5.0
        ),
        Duration::from_secs(30),
    );
    eprintln!("{what} after 5 s: {s}");
    let played = f(&s, "currentTime") - t0;
    let frames = f(&s, "totalVideoFrames") - frames0;
    assert!(
        frames >= 0.9 * SAMPLE_FPS * played,
        "{what}: {frames} frames for {played:.2} s at {SAMPLE_FPS} fps"
    );
    assert!(
        f(&s, "droppedVideoFrames") <= 0.05 * f(&s, "totalVideoFrames") + 2.0,
        "{what}: frames dropped: {s}"
    );
    assert!(
        f(&s, "audioDecodedBytes") > 0.0,
        "{what}: the AAC track is decoded: {s}"
    );
    assert_eq!(s["errors"], Value::Array(vec![]), "{what}: hls.js errors");
    assert_eq!(s["engine"], "hls.js", "Chromium plays through hls.js");
    no_console_errors(page);
    s
}

#[test]
fn the_web_apps_page_plays_straight_from_shardcast_and_tokens_guard_every_request() {
    let server = tokens_required_server();
    let hls = server.hls.expect("shardcast printed its HLS address");
    let webapp = WebApp::for_server(&server);
    let bitrate_bps = server.http_get("/api/v1/streams/sample").json()["bitrate_bps"]
        .as_f64()
        .expect("bitrate_bps of the sample");
    let hls_before = server.total_reaches("hls_bytes", 0, Duration::ZERO);

    // The viewer opens the web app's list and clicks the sample.
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut page = Browser::open(&webapp.url("/"));
    page.wait_until(
        "document.querySelector('a.play[data-stream=\"sample\"]') !== null",
        Duration::from_secs(20),
    );
    page.eval_json("document.querySelector('a.play[data-stream=\"sample\"]').click(), true");
    let s = plays_five_seconds(&mut page, "sample");
    assert_eq!(
        s["path"], "/watch/sample",
        "the click opened the watch page"
    );
    let played = f(&s, "currentTime");

    // The browser's own record: hls.js came from shardcast's HTTP side, every playlist and
    // segment from its HLS port with a token, nothing from the web app.
    let resources: Vec<String> = serde_json::from_value(page.eval_json(RESOURCES)).unwrap();
    let hls_origin = format!("http://{hls}/");
    assert!(
        resources.contains(&format!(
            "http://{}/assets/hls-1.7.4.min.js",
            server.http_addr()
        )),
        "hls.js from shardcast: {resources:#?}"
    );
    let media: Vec<&String> = resources
        .iter()
        .filter(|r| r.contains(".m3u8") || r.contains(".m4s") || r.contains(".mp4"))
        .collect();
    assert!(
        media.iter().filter(|r| r.contains(".m4s")).count() >= 3,
        "segments fetched: {resources:#?}"
    );
    for r in &media {
        assert!(
            r.starts_with(&format!("{hls_origin}hls/sample/")) && r.contains("?token="),
            "media from shardcast's HLS port, with a token: {r}"
        );
    }
    assert!(
        !resources.iter().any(|r| r.starts_with(&webapp.url("/"))),
        "the page fetched nothing from the web app: {resources:#?}"
    );

    // The web app's own log: its two pages, small; no media.
    let served = webapp.requests();
    eprintln!("web app served: {served:?}");
    let paths: Vec<&str> = served.iter().map(|(_, p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/", "/watch/sample"],
        "the web app served its pages only"
    );
    assert!(served.iter().all(|(m, _, st, _)| m == "GET" && *st == 200));
    let webapp_bytes: u64 = served.iter().map(|(_, _, _, b)| b).sum();
    assert!(webapp_bytes < 8 * 1024, "{webapp_bytes} bytes of pages");

    // shardcast served at least the media played.
    let media_bytes = (bitrate_bps * played / 8.0) as u64;
    let hls_after = server.total_reaches(
        "hls_bytes",
        hls_before + media_bytes,
        Duration::from_secs(5),
    );
    eprintln!(
        "shardcast served {} HLS bytes for {played:.2} s of media ({media_bytes} bytes at {bitrate_bps} bit/s); the web app {webapp_bytes}",
        hls_after - hls_before
    );
    assert!(
        hls_after - hls_before >= media_bytes,
        "hls_bytes grew by {} for {media_bytes} bytes of media played",
        hls_after - hls_before
    );
    assert!(hls_after - hls_before > 20 * webapp_bytes);

    // The page's token: valid for the sample from the viewer's address (the positive
    // control), refused from another address: the web app bound it to the viewer.
    let signed = media
        .iter()
        .find(|r| r.contains("/index.m3u8?token="))
        .expect("the multivariant playlist was fetched");
    let token = signed.split_once("?token=").unwrap().1.to_owned();
    let seg0 = format!("/hls/sample/seg0.m4s?token={token}");
    assert_eq!(
        status(hls, &seg0),
        200,
        "the page's token from the viewer's address"
    );
    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        status_from(elsewhere, hls, &seg0),
        403,
        "the page's token from another address"
    );
    let unbound = grant(&server, "sample", 60)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        status_from(
            elsewhere,
            hls,
            &format!("/hls/sample/seg0.m4s?token={unbound}")
        ),
        200,
        "an unbound token works from 127.0.0.2: the 403 above is the binding"
    );

    // A player without a token: the API's plain hls_url, and every resource.
    let plain = server.http_get("/api/v1/streams/sample").json()["hls_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain_path = plain.split_once(&hls.to_string()).unwrap().1.to_owned();
    assert_eq!(plain_path, "/hls/sample/index.m3u8");
    let resources = ["index.m3u8", "media.m3u8", "init.mp4", "seg0.m4s"];
    for r in resources {
        assert_eq!(
            status(hls, &format!("/hls/sample/{r}")),
            403,
            "{r} without a token"
        );
    }
    // Tampered: one character of the signature changed.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    // Another stream's: a valid token for the live channel.
    let other = grant(&server, "ch", 60)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        status(hls, &format!("/hls/ch/media.m3u8?token={other}")),
        200
    );
    for r in resources {
        assert_eq!(
            status(hls, &format!("/hls/sample/{r}?token={tampered}")),
            403,
            "{r} with a tampered token"
        );
        assert_eq!(
            status(hls, &format!("/hls/sample/{r}?token={other}")),
            403,
            "{r} with the live channel's token"
        );
    }
    // Expired: valid at first, refused once its 1 s has run out.
    let short = grant(&server, "sample", 1)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let short_seg = format!("/hls/sample/seg0.m4s?token={short}");
    assert_eq!(
        status(hls, &short_seg),
        200,
        "a 1 s token before it expires"
    );
    let end = Instant::now() + Duration::from_secs(5);
    while status(hls, &short_seg) != 403 {
        assert!(Instant::now() < end, "a 1 s token still accepted after 5 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    for r in resources {
        assert_eq!(
            status(hls, &format!("/hls/sample/{r}?token={short}")),
            403,
            "{r} with an expired token"
        );
    }
}

#[test]
fn the_web_apps_page_plays_the_live_channel_over_ll_hls() {
    let server = tokens_required_server();
    let hls = server.hls.expect("shardcast printed its HLS address");
    let webapp = WebApp::for_server(&server);
    // A channel that has been running a while (its first segment complete).
    std::thread::sleep(Duration::from_secs(3));
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut page = Browser::open(&webapp.url("/watch/ch"));
    plays_five_seconds(&mut page, "live ch");
    let resources: Vec<String> = serde_json::from_value(page.eval_json(RESOURCES)).unwrap();
    let parts: Vec<&String> = resources.iter().filter(|r| r.contains("/part")).collect();
    assert!(
        !parts.is_empty(),
        "hls.js in low-latency mode fetched parts: {resources:#?}"
    );
    for r in resources.iter().filter(|r| r.contains("/hls/")) {
        assert!(
            r.starts_with(&format!("http://{hls}/hls/ch/")) && r.contains("?token="),
            "{r}"
        );
    }
    let paths: Vec<String> = webapp.requests().into_iter().map(|r| r.1).collect();
    assert_eq!(paths, ["/watch/ch"]);
}

#[test]
fn the_web_app_escapes_stream_names_and_answers_errors_with_a_page() {
    // A catalog whose one stream is named like markup.
    let dir = std::env::temp_dir().join(format!("shardcast-three-party-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let name = "x\"<b>&'";
    std::fs::copy(SAMPLE, dir.join(format!("{name}.mp4"))).unwrap();
    let server = Server::start_env(
        &["--require-token", "--media", dir.to_str().unwrap()],
        &[("SHARDCAST_ADMIN_TOKEN", ADMIN)],
    );
    let hls = server.hls.unwrap();
    let webapp = WebApp::for_server(&server);

    let list = webapp.get("/");
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(
        list.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let text = list.text();
    assert!(
        text.contains("x&quot;&lt;b&gt;&amp;&#x27;") && !text.contains("<b>"),
        "the name is escaped in the list: {text}"
    );
    let href = text
        .split("class=\"play\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a link");
    assert_eq!(href, "/watch/x%22%3Cb%3E%26%27");
    let watch = webapp.get(href);
    assert_eq!(watch.status, 200, "{}", watch.text());
    let text = watch.text();
    assert!(!text.contains("<b>"), "no raw markup from the name: {text}");
    assert!(
        text.contains("<h1>x&quot;&lt;b&gt;&amp;&#x27;</h1>"),
        "{text}"
    );
    // The signed URL is a JSON string in the script (shardcast percent-encodes the name).
    let source = text
        .split("const source = ")
        .nth(1)
        .and_then(|r| r.split(", live = ").next())
        .expect("the source in the script");
    let source: String = serde_json::from_str(source).expect("a JSON string");
    assert!(
        source.starts_with(&format!(
            "http://{hls}/hls/x%22%3Cb%3E%26%27/index.m3u8?token="
        )),
        "{source}"
    );
    let path = source.split_once(&hls.to_string()).unwrap().1;
    assert_eq!(status(hls, path), 200, "the signed URL plays");
    let csp = watch.header("Content-Security-Policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'nonce-")
            && csp.contains(&format!(" http://{}; ", server.http_addr()))
            && csp.contains(&format!("connect-src http://{hls};"))
            && csp.contains(&format!("media-src blob: http://{hls};")),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");

    // An unknown stream, and one named like a script: a 404 page naming the cause.
    let missing = webapp.get("/watch/nosuch");
    assert_eq!(missing.status, 404);
    assert!(
        missing
            .text()
            .contains("no stream named &quot;nosuch&quot;"),
        "{}",
        missing.text()
    );
    let hostile = webapp.get("/watch/%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(hostile.status, 404);
    assert!(!hostile.text().contains("<script>"), "{}", hostile.text());

    // A web app with the wrong admin token, and one whose shardcast is down: a 502 page
    // with what went wrong, never a traceback.
    let wrong = WebApp::start(
        &format!("http://{}", server.http_addr()),
        "not-the-admin-token",
    );
    let refused = wrong.get(href);
    assert_eq!(refused.status, 502);
    assert!(
        refused.text().contains("shardcast answered 401"),
        "{}",
        refused.text()
    );
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = WebApp::start(&format!("http://{closed}"), ADMIN);
    for path in ["/", "/watch/sample"] {
        let r = down.get(path);
        assert_eq!(r.status, 502, "{path}");
        assert!(
            r.text()
                .contains(&format!("shardcast is not reachable at http://{closed}")),
            "{}",
            r.text()
        );
    }
    for app in [&webapp, &wrong, &down] {
        let log = app.log.lock().unwrap().join("\n");
        assert!(!log.contains("Traceback"), "{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
