//! The web page in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/install-test-deps.sh`; a missing browser fails this test) loads `/dashboard`, runs the
//! page's script against the live API, and the DOM it leaves shows the catalog, a viewer
//! count that rises while a client plays and falls after it tears down, and drawn charts.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

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
    let url = format!("http://{}/", server.http_addr());
    let dom = page_until(&url, "the catalog", |d| d.contains("data-stream="));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !dom.contains("id=\"pwned\""),
        "a stream name became an element:\n{dom}"
    );
    assert!(
        dom.contains("&lt;img id=pwned src=x onerror=alert(1)&gt;"),
        "the name is shown as text:\n{dom}"
    );
}
