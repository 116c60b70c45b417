//! The web pages in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/install-test-deps.sh`; a missing browser fails this test) loads the dashboard
//! (`/dashboard`), runs its script against the live API, and the DOM it leaves shows the
//! catalog, a viewer count that rises while a client plays and falls after it tears down,
//! and drawn charts. The viewer page (`/`) renders the catalog (name, length or LIVE,
//! codecs, picture), fits a phone's width, and shows names as text on both pages.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{chromium, Browser};
use common::Server;

/// The DOM after the page's script ran for a few (virtual) seconds.
fn dump_dom(url: &str) -> String {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "shardcast-chromium-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let (ok, out, err) = common::run_with_timeout(
        Command::new(chromium()).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=4000",
            "--dump-dom",
            url,
        ]),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_dir_all(&profile);
    assert!(ok, "chromium failed on {url}: {err}");
    assert!(
        out.contains("</html>"),
        "no DOM from chromium: {out}\n{err}"
    );
    out
}

/// The text of the element with `id`, as serialized in the DOM dump.
fn text_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in the page"));
    let open_end = start + dom[start..].find('>').unwrap() + 1;
    let close = open_end + dom[open_end..].find('<').unwrap();
    dom[open_end..close].trim().to_owned()
}

/// The `points` of the polyline inside `<svg id="{id}">`.
fn polyline_points(dom: &str, id: &str) -> usize {
    let start = dom
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("svg #{id}"));
    let end = start + dom[start..].find("</svg>").unwrap();
    let svg = &dom[start..end];
    let Some(p) = svg.find("<polyline points=\"") else {
        return 0;
    };
    let rest = &svg[p + "<polyline points=\"".len()..];
    let points = &rest[..rest.find('"').unwrap()];
    points
        .split_whitespace()
        .filter(|pt| {
            let (x, y) = pt.split_once(',').unwrap_or(("x", "y"));
            x.parse::<f64>().is_ok() && y.parse::<f64>().is_ok()
        })
        .count()
}

/// Loads the page until `pred` holds on its DOM (the API and the browser both need a moment).
fn page_until(url: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let dom = dump_dom(url);
        if pred(&dom) {
            return dom;
        }
        assert!(Instant::now() < end, "page never showed {what}:\n{dom}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_page_shows_the_catalog_live_viewers_and_charts() {
    let server = Server::start(&[]);
    let url = format!("http://{}/dashboard", server.http_addr());

    // Idle: the catalog lists the sample with its URL, nobody watches, and once the hub has
    // two seconds of history the viewers chart is a line.
    let dom = page_until(&url, "a drawn viewers chart", |d| {
        polyline_points(d, "chart-viewers") >= 2
    });
    assert!(
        dom.contains("<tr data-stream=\"sample\" data-viewers=\"0\">"),
        "catalog row for the sample"
    );
    assert!(dom.contains(&server.url("sample")), "its rtsp:// URL");
    assert!(dom.contains(&format!(
        "ffplay -rtsp_transport tcp {}",
        server.url("sample")
    )));
    assert!(dom.contains(&format!("vlc {}", server.url("sample"))));
    assert!(dom.contains("H.264 · AAC"), "codecs");
    assert!(dom.contains("640×360"), "resolution");
    assert_eq!(text_of(&dom, "viewer-count"), "0");
    assert!(
        dom.contains("data-state=\"live\""),
        "the page reached the API"
    );
    for chart in ["chart-mbps", "chart-loss", "chart-jitter"] {
        assert!(polyline_points(&dom, chart) >= 2, "{chart} drawn");
    }

    // A client plays: the count rises, in the header and in the catalog row.
    let mut s = common::setup_udp(&server);
    let sid = s.session.clone();
    let r = s.rtsp.request("PLAY", &s.url, &[("Session", sid.as_str())]);
    assert_eq!(r.status, 200);
    let dom = page_until(&url, "one viewer", |d| text_of(d, "viewer-count") == "1");
    assert!(
        dom.contains("<tr data-stream=\"sample\" data-viewers=\"1\">"),
        "catalog row counts the viewer"
    );
    // The page lists the session by its API handle, never by its RTSP session id.
    let handle = server.http_get("/api/v1/sessions").json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        dom.contains(&format!("data-session=\"{handle}\"")),
        "viewers table lists the session"
    );
    assert!(!dom.contains(&sid), "the page shows no RTSP session id");

    // It tears down: the count falls back to zero.
    let r = s
        .rtsp
        .request("TEARDOWN", &s.url, &[("Session", sid.as_str())]);
    assert_eq!(r.status, 200);
    let dom = page_until(&url, "no viewer", |d| text_of(d, "viewer-count") == "0");
    assert!(dom.contains("<tr data-stream=\"sample\" data-viewers=\"0\">"));
    assert!(!dom.contains(&format!("data-session=\"{sid}\"")));
    assert!(polyline_points(&dom, "chart-viewers") >= 2);
}

#[test]
fn stream_names_stay_text_on_the_page() {
    // A media file whose name is an HTML tag: the page must show it, not run it.
    let dir = std::env::temp_dir().join(format!("shardcast-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = "<img id=pwned src=x onerror=alert(1)>";
    std::fs::write(
        dir.join(format!("{name}.mp4")),
        shardcast::media::library::SAMPLE_MP4,
    )
    .unwrap();
    let server = Server::start(&["--media", dir.to_str().unwrap()]);
    for page in ["/dashboard", "/"] {
        let url = format!("http://{}{page}", server.http_addr());
        let dom = page_until(&url, "the catalog", |d| d.contains("data-stream="));
        assert!(
            !dom.contains("id=\"pwned\""),
            "{page}: a stream name became an element:\n{dom}"
        );
        assert!(
            dom.contains("&lt;img id=pwned src=x onerror=alert(1)&gt;"),
            "{page}: the name is shown as text:\n{dom}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_viewer_page_lists_the_catalog_and_fits_a_phone() {
    let server = Server::start(&["--live", &format!("news={}", sample_path())]);
    let mut page = Browser::open(&format!("http://{}/", server.http_addr()));
    page.wait_until(
        "document.querySelectorAll('#streams li[data-stream]').length >= 2",
        Duration::from_secs(30),
    );
    // Each row as the page drew it: name, length or LIVE badge, codecs and picture, and
    // what plays it.
    let rows = page.eval_json(
        "[...document.querySelectorAll('#streams li[data-stream]')].map((li) => ({
            name: li.dataset.stream,
            live: li.dataset.live,
            shown: li.querySelector('.stream-name').textContent,
            length: (li.querySelector('.length') || {}).textContent || null,
            badge: (li.querySelector('.badge.live') || {}).textContent || null,
            facts: li.querySelector('.stream-facts').textContent,
            button: !!li.querySelector('button.play'),
            rtsp: (li.querySelector('.rtsp code') || {}).textContent || null,
        }))",
    );
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("a row for {name}: {rows}"))
            .clone()
    };
    let streams = server.http_get("/api/v1/streams").json();
    for (name, live) in [("sample", false), ("news", true)] {
        let r = row(name);
        assert_eq!(r["shown"], name);
        assert_eq!(r["live"], live.to_string());
        if live {
            assert_eq!(r["badge"], "LIVE", "{r}");
            assert_eq!(r["length"], serde_json::Value::Null);
        } else {
            assert_eq!(r["length"], "0:10", "{r}");
            assert_eq!(r["badge"], serde_json::Value::Null);
        }
        let facts = r["facts"].as_str().unwrap();
        assert!(facts.contains("H.264 · AAC"), "codecs: {facts}");
        assert!(facts.contains("640×360 @ 25 fps"), "picture: {facts}");
        // A stream the API gives an HLS URL gets a play button; one without shows its
        // rtsp:// URL for an RTSP player instead.
        let api = streams["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        if api.get("hls_url").is_some_and(|u| u.is_string()) {
            assert_eq!(r["button"], true, "{r}");
        } else {
            assert_eq!(r["button"], false, "{r}");
            assert_eq!(r["rtsp"], api["url"], "{r}");
        }
    }

    // A phone-sized window: one column, nothing wider than the screen.
    page.set_viewport(375, 740);
    let fit = page.wait_until(
        "(() => { const w = document.documentElement.scrollWidth; return w <= innerWidth ? [w, innerWidth] : null; })()",
        Duration::from_secs(5),
    );
    eprintln!("at 375 px: scrollWidth, innerWidth = {fit}");
    let columns = page.eval_json(
        "getComputedStyle(document.getElementById('streams')).gridTemplateColumns.split(' ').length",
    );
    assert_eq!(columns, 1, "one column of streams on a phone");

    // An unknown stream in the deep link says so instead of playing nothing silently.
    page.navigate(&format!("http://{}/#play=nope", server.http_addr()));
    let msg = page.wait_until(
        "(() => { const e = document.getElementById('now-error'); return e.hidden ? null : e.textContent; })()",
        Duration::from_secs(10),
    );
    assert_eq!(msg, "No stream named nope.");
    assert!(
        page.console_errors().is_empty(),
        "console errors: {:#?}",
        page.console_errors()
    );
}

fn sample_path() -> String {
    format!("{}/tests/media/sample.mp4", env!("CARGO_MANIFEST_DIR"))
}
