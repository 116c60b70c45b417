//! Issue 16 item 8: a published stream is visible while it is published. ffmpeg publishes
//! the sample over RTSP (`-re`, TCP interleaved); the catalog lists it with its source
//! (`online`, `rtsp`), `GET /api/v1/ingest` shows its frames and bytes growing at the file's
//! bitrate (what ffprobe says about the same file), no packet lost and a keyframe within one
//! GOP (ffprobe's keyframe times); an ffmpeg viewer counts as one viewer everywhere;
//! `/metrics` has the `shardcast_ingest_*` families and `shardcast stats` a sources line;
//! when the publisher leaves the stream
//! shows `waiting`, then leaves the catalog after the publisher timeout. Every API answer is
//! validated against `docs/openapi.json` (boon, draft 2020-12). In headless Chromium, the
//! dashboard's "Sources" table lists the publisher and the viewer page offers the stream
//! over HLS (its catalog entry's `hls_url`; playback itself: `tests/ingest_hls.rs`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::publishers::{ffmpeg_publish, media, wait_published};
use common::{HttpReply, Server};
use serde_json::Value;

const PATH: &str = "live/obs";
const ADMIN: &str = "test-admin-token-0123456789";

/// The OpenAPI document (as in `tests/http_api.rs`): a response is validated against the
/// schema the document gives for its path, method, status and `application/json`.
struct Spec {
    doc: Value,
    compiler: boon::Compiler,
    schemas: boon::Schemas,
}

const SPEC_URL: &str = "file:///shardcast/openapi.json";

impl Spec {
    fn load() -> Spec {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
                .expect("docs/openapi.json");
        let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.enable_format_assertions();
        compiler.add_resource(SPEC_URL, doc.clone()).unwrap();
        Spec {
            doc,
            compiler,
            schemas: boon::Schemas::new(),
        }
    }

    /// Validates a GET answer of `path` (a documented path template) and returns its body.
    fn check(&mut self, path: &str, reply: &HttpReply) -> Value {
        self.check_method("get", path, reply)
    }

    /// Validates an answer to `method path` and returns its body.
    fn check_method(&mut self, method: &str, path: &str, reply: &HttpReply) -> Value {
        let status = reply.status.to_string();
        let documented = &self.doc["paths"][path][method]["responses"][&status];
        assert!(documented.is_object(), "{method} {path} answered {status}");
        let body = reply.json();
        let pointer = format!(
            "{SPEC_URL}#/paths/{}/{method}/responses/{status}/content/application~1json/schema",
            path.replace('~', "~0").replace('/', "~1")
        );
        let idx = self
            .compiler
            .compile(&pointer, &mut self.schemas)
            .unwrap_or_else(|e| panic!("schema for {method} {path} {status}: {e:#}"));
        if let Err(e) = self.schemas.validate(&body, idx) {
            panic!("{method} {path} {status} does not match docs/openapi.json: {e:#}\n{body:#}");
        }
        body
    }
}

/// ffprobe's figures for `file`: media bits per second (sum of packet sizes over the
/// duration) and the longest interval between video keyframes, in seconds.
fn ffprobe_bitrate_and_gop(file: &str) -> (f64, f64) {
    let probe = |args: &[&str]| -> String {
        let out = Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(file)
            .output()
            .expect("ffprobe");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let duration: f64 = probe(&[
        "-show_entries",
        "format=duration",
        "-of",
        "default=nw=1:nk=1",
    ])
    .trim()
    .parse()
    .unwrap();
    let bytes: u64 = probe(&["-show_entries", "packet=size", "-of", "csv=p=0"])
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<u64>().ok())
        .sum();
    let keys: Vec<f64> = probe(&[
        "-select_streams",
        "v",
        "-show_entries",
        "packet=pts_time,flags",
        "-of",
        "csv=p=0",
    ])
    .lines()
    .filter(|l| l.contains('K'))
    .filter_map(|l| l.split(',').next()?.parse().ok())
    .collect();
    assert!(keys.len() >= 2, "keyframes: {keys:?}");
    let gop = keys
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(duration - keys[keys.len() - 1], f64::max);
    (bytes as f64 * 8.0 / duration, gop)
}

/// Polls `GET path` until `pred` holds on the validated answer, or panics after `limit`.
fn wait_for(
    server: &Server,
    spec: &mut Spec,
    (template, path): (&str, &str),
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + limit;
    loop {
        let r = server.http_get(path);
        let body = spec.check(template, &r);
        if pred(&body) {
            return body;
        }
        assert!(Instant::now() < end, "{what} within {limit:?}: {body:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn published(streams: &Value) -> Option<&Value> {
    streams["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == PATH)
}

fn ingested(ingest: &Value) -> Option<&Value> {
    ingest["ingest"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == PATH)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.get("stream") == Some(PATH)
                && s.labels.get("protocol") == Some("rtsp")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        })
}

#[test]
fn a_published_stream_is_listed_with_its_source_rates_viewers_and_metrics_until_it_ends() {
    let file = media("sample.mp4");
    let (file_bps, gop_secs) = ffprobe_bitrate_and_gop(&file);
    let server = Server::start_env(
        &["--publish", "live/*", "--publisher-timeout", "2"],
        &[("SHARDCAST_ADMIN_TOKEN", ADMIN)],
    );
    let mut spec = Spec::load();
    let url = server.url(PATH);
    let mut publisher = ffmpeg_publish(&file, &url, "tcp");
    let published_at = Instant::now();
    wait_published(&server, PATH, Duration::from_secs(10));

    // The catalog lists it, online, with the log's tracks and its HLS URL (the shards
    // serve published streams' logs over HLS, as the sample file on this server).
    let streams = wait_for(
        &server,
        &mut spec,
        ("/api/v1/streams", "/api/v1/streams"),
        Duration::from_secs(5),
        "the stream listed online",
        |b| published(b).is_some_and(|s| s["source"]["state"] == "online"),
    );
    let entry = published(&streams).unwrap();
    assert_eq!(entry["source"]["protocol"], "rtsp", "{entry:#}");
    assert_eq!(entry["live"], true);
    assert_eq!(entry["duration_secs"], Value::Null);
    assert!(
        entry["hls_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/hls/{PATH}/index.m3u8"))),
        "{entry:#}"
    );
    assert_eq!(entry["url"], url.as_str());
    assert_eq!(entry["codecs"], serde_json::json!(["H.264", "AAC"]));
    assert_eq!(
        (entry["width"].as_u64(), entry["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(entry["source"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let sample = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sample")
        .unwrap();
    assert!(
        sample.get("source").is_none(),
        "files have no source: {sample:#}"
    );
    assert!(
        sample["hls_url"].is_string(),
        "HLS is on for files: {sample:#}"
    );
    let one = spec.check(
        "/api/v1/streams/{name}",
        &server.http_get(&format!("/api/v1/streams/{PATH}")),
    );
    assert_eq!(one["source"]["state"], "online");
    // A signed play URL for it, RTSP and HLS, like its catalog entry.
    let r = common::http_request(
        server.http_addr(),
        "POST",
        "/api/v1/play",
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json"),
        ],
        format!(r#"{{"stream":"{PATH}"}}"#).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let grant = spec.check_method("post", "/api/v1/play", &r);
    assert!(
        grant["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{url}?token=")),
        "{grant:#}"
    );
    assert!(
        grant["hls_url"]
            .as_str()
            .is_some_and(|u| u.contains(&format!("/hls/{PATH}/index.m3u8?token="))),
        "{grant:#}"
    );

    // The ingest view: frames and bytes grow, at the file's bitrate, nothing lost.
    let first = wait_for(
        &server,
        &mut spec,
        ("/api/v1/ingest", "/api/v1/ingest"),
        Duration::from_secs(5),
        "a bitrate measured",
        |b| ingested(b).is_some_and(|s| s["bitrate_bps"].as_f64() > Some(0.0)),
    );
    let first = ingested(&first).unwrap().clone();
    std::thread::sleep(Duration::from_millis(2500));
    let ingest = spec.check("/api/v1/ingest", &server.http_get("/api/v1/ingest"));
    let now = ingested(&ingest).expect("still ingested").clone();
    eprintln!("ingest: {now:#}\nffprobe: {file_bps:.0} bit/s, GOP {gop_secs} s");
    for key in ["frames", "bytes", "packets"] {
        assert!(
            now[key].as_u64() > first[key].as_u64(),
            "{key} grows: {first:#} then {now:#}"
        );
    }
    assert!(now["keyframes"].as_u64() >= Some(1));
    assert_eq!(now["state"], "online");
    assert_eq!(now["protocol"], "rtsp");
    assert_eq!(now["lost"], 0, "loopback TCP loses nothing: {now:#}");
    assert_eq!(now["dropped"]["incomplete"], 0);
    let bps = now["bitrate_bps"].as_f64().unwrap();
    assert!(
        bps > file_bps / 2.0 && bps < file_bps * 2.0,
        "ingest bitrate {bps:.0} bit/s against the file's {file_bps:.0}"
    );
    // Over the whole publication so far: bytes against the file's rate and elapsed time.
    let elapsed = published_at.elapsed().as_secs_f64();
    let avg = now["bytes"].as_f64().unwrap() * 8.0 / elapsed;
    assert!(
        avg > file_bps / 2.0 && avg < file_bps * 2.0,
        "{avg:.0} bit/s on average over {elapsed:.1} s"
    );
    let fps = now["frames_per_sec"].as_f64().unwrap();
    assert!((15.0..=60.0).contains(&fps), "30 fps video: {fps}");
    let key_age = now["since_keyframe_secs"]
        .as_f64()
        .expect("a keyframe came");
    assert!(
        key_age < gop_secs + 1.0,
        "last keyframe {key_age} s ago, GOP {gop_secs} s"
    );
    assert!(now["jitter_ms"].as_f64().unwrap() >= 0.0);
    let stats = spec.check("/api/v1/stats", &server.http_get("/api/v1/stats?history=0"));
    assert_eq!(stats["publishers"], 1, "{stats:#}");
    assert!(stats["ingest_bitrate_bps"].as_f64() > Some(0.0));
    // `shardcast stats` lists the source.
    let (ok, out, err) = common::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_shardcast")).args([
            "stats",
            "--http",
            &format!("http://{}", server.http_addr()),
            "--once",
        ]),
        Duration::from_secs(20),
    );
    assert!(ok, "shardcast stats --once failed: {err}");
    assert!(out.contains("publishers 1 "), "{out}");
    assert!(out.contains("sources (1)"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with(PATH))
        .unwrap_or_else(|| panic!("{PATH} in the sources:\n{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..3], ["rtsp", "online"], "{row}");

    // A viewer (ffmpeg over TCP for 3 s) is one viewer in the catalog, the ingest view and
    // the metrics.
    let mut viewer = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
        ])
        .arg(&url)
        .args(["-t", "3", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let ingest = wait_for(
        &server,
        &mut spec,
        ("/api/v1/ingest", "/api/v1/ingest"),
        Duration::from_secs(5),
        "one viewer",
        |b| ingested(b).is_some_and(|s| s["viewers"] == 1),
    );
    assert_eq!(ingested(&ingest).unwrap()["viewers"], 1);
    let one = spec.check(
        "/api/v1/streams/{name}",
        &server.http_get(&format!("/api/v1/streams/{PATH}")),
    );
    assert_eq!(one["viewers"], 1, "{one:#}");
    let text = server.http_get("/metrics").text();
    assert_eq!(
        metric(&text, "shardcast_ingest_online"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "shardcast_ingest_viewers"), Some(1.0));
    assert!(metric(&text, "shardcast_ingest_bytes_total") > Some(0.0));
    assert!(metric(&text, "shardcast_ingest_frames_total") > Some(0.0));
    assert!(metric(&text, "shardcast_ingest_keyframes_total") >= Some(1.0));
    assert_eq!(
        metric(&text, "shardcast_ingest_packets_lost_total"),
        Some(0.0)
    );
    assert!(metric(&text, "shardcast_ingest_jitter_seconds").is_some());
    assert!(metric(&text, "shardcast_ingest_seconds_since_keyframe") < Some(gop_secs + 1.0));
    assert!(
        text.contains(&format!(
            "shardcast_ingest_frames_dropped_total{{stream=\"{PATH}\",protocol=\"rtsp\",reason=\"flood\"}} 0\n"
        )),
        "{text}"
    );
    assert!(text.contains("shardcast_publishers 1\n"), "{text}");
    let status = viewer.wait().unwrap();
    assert!(status.success(), "the viewer failed: {status}");

    // The publisher ends (the file is 10 s): the stream waits for it, then is gone.
    assert!(publisher.wait().unwrap().success());
    let waiting = wait_for(
        &server,
        &mut spec,
        ("/api/v1/streams", "/api/v1/streams"),
        Duration::from_secs(3),
        "the stream waiting for its publisher",
        |b| published(b).is_some_and(|s| s["source"]["state"] == "waiting"),
    );
    eprintln!("{:#}", published(&waiting).unwrap());
    let ingest = spec.check("/api/v1/ingest", &server.http_get("/api/v1/ingest"));
    assert_eq!(ingested(&ingest).unwrap()["state"], "waiting");
    let text = server.http_get("/metrics").text();
    assert_eq!(
        metric(&text, "shardcast_ingest_online"),
        Some(0.0),
        "{text}"
    );
    wait_for(
        &server,
        &mut spec,
        ("/api/v1/streams", "/api/v1/streams"),
        Duration::from_secs(5),
        "the stream gone after the publisher timeout",
        |b| published(b).is_none(),
    );
    let r = server.http_get(&format!("/api/v1/streams/{PATH}"));
    assert_eq!(r.status, 404);
    spec.check("/api/v1/streams/{name}", &r);
    let ingest = spec.check("/api/v1/ingest", &server.http_get("/api/v1/ingest"));
    assert!(ingested(&ingest).is_none(), "{ingest:#}");
    let text = server.http_get("/metrics").text();
    assert_eq!(metric(&text, "shardcast_ingest_online"), None, "{text}");
}

/// The DOM after the page's script ran for a few (virtual) seconds (as in `tests/web_page.rs`).
fn dump_dom(url: &str) -> String {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "shardcast-chromium-obs-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let (ok, out, err) = common::run_with_timeout(
        Command::new(common::browser::chromium()).args([
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

#[test]
fn the_dashboard_lists_the_publisher_and_the_viewer_page_offers_it_over_hls() {
    let server = Server::start(&["--publish", "live/*", "--publisher-timeout", "2"]);
    let url = server.url(PATH);
    let mut publisher = ffmpeg_publish(&media("sample.mp4"), &url, "tcp");
    wait_published(&server, PATH, Duration::from_secs(10));

    let dashboard = format!("http://{}/dashboard", server.http_addr());
    let end = Instant::now() + Duration::from_secs(30);
    let dom = loop {
        let dom = dump_dom(&dashboard);
        if dom.contains(&format!(
            "<tr data-source=\"{PATH}\" data-state=\"online\">"
        )) {
            break dom;
        }
        assert!(Instant::now() < end, "no source row for {PATH}:\n{dom}");
    };
    let row = &dom[dom.find("data-source=").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(">RTSP<"), "{row}");
    assert!(row.contains("kbit/s") || row.contains("Mbit/s"), "{row}");
    assert!(row.contains(" s ago"), "a keyframe age: {row}");
    // The catalog table lists it as live, with its RTSP URL.
    assert!(
        dom.contains(&format!("<tr data-stream=\"{PATH}\"")),
        "{dom}"
    );
    assert!(dom.contains(&format!("ffplay -rtsp_transport tcp {url}")));

    let viewer = dump_dom(&format!("http://{}/", server.http_addr()));
    let item = viewer
        .find(&format!("data-stream=\"{PATH}\""))
        .map(|at| &viewer[at..])
        .unwrap_or_else(|| panic!("{PATH} on the viewer page:\n{viewer}"));
    let item = &item[..item.find("</li>").unwrap()];
    assert!(item.contains("data-live=\"true\""), "{item}");
    assert!(
        item.contains("class=\"play\""),
        "an HLS play button (its catalog entry has an hls_url): {item}"
    );
    // The sample file is offered over HLS on the same page.
    let sample = &viewer[viewer.find("data-stream=\"sample\"").unwrap()..];
    assert!(sample[..sample.find("</li>").unwrap()].contains("class=\"play\""));
    let _ = publisher.kill();
    let _ = publisher.wait();
}
