//! The JSON API under `/api/v1`, checked live: retina plays the sample, every endpoint's
//! answer (successes and errors) is validated against `docs/openapi.json` with a JSON Schema
//! validator (boon, draft 2020-12 as OpenAPI 3.1 uses), DELETE ends the viewer (RTCP BYE,
//! RTSP connection closed), and hostile requests get a 4xx while the server keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::retina_play::{spawn_player, PlayerEvent};
use common::{http_raw, http_request, HttpReply, Server};
use retina::client::Transport;
use serde_json::Value;

const ADMIN: &str = "test-admin-token-0123456789";

/// The OpenAPI document, compiled on demand: a response is validated against the schema the
/// document gives for its path, method, status and `application/json`.
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
        assert_eq!(doc["openapi"], "3.1.0");
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

    /// Validates `reply` against the documented response `status` of `method path`.
    fn check(&mut self, method: &str, path: &str, reply: &HttpReply) -> Value {
        let status = reply.status.to_string();
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        let documented = &op["responses"][&status];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which is not documented: {}",
            reply.text()
        );
        if documented.get("content").is_none() {
            assert!(reply.body.is_empty(), "{method} {path} {status}: no body");
            return Value::Null;
        }
        assert_eq!(
            reply.header("Content-Type"),
            Some("application/json"),
            "{method} {path} {status}"
        );
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

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Polls `GET /api/v1/sessions` until `pred` holds on the list, or panics after `limit`.
fn wait_sessions(server: &Server, limit: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let end = Instant::now() + limit;
    loop {
        let r = server.http_get("/api/v1/sessions");
        assert_eq!(r.status, 200);
        let list = r.json()["sessions"].as_array().cloned().unwrap();
        if pred(&list) {
            return list;
        }
        assert!(Instant::now() < end, "sessions never matched: {list:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_endpoint_matches_the_openapi_file_and_delete_ends_a_retina_viewer() {
    let server = Server::start_env(&[], &[("SHARDCAST_ADMIN_TOKEN", ADMIN)]);
    let http = server.http_addr();
    let mut spec = Spec::load();

    // The document itself is served.
    let r = server.http_get("/api/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), spec.doc);

    let player = spawn_player(server.url("sample"), Transport::Udp(Default::default()));
    match player.recv_timeout(Duration::from_secs(20)) {
        Ok(PlayerEvent::Playing) => {}
        other => panic!("retina did not start playing: {other:?}"),
    }
    let list = wait_sessions(&server, Duration::from_secs(5), |l| l.len() == 1);
    let session = &list[0];
    assert_eq!(session["stream"], "sample");
    assert_eq!(session["transport"], "udp");
    assert_eq!(session["tracks"].as_array().unwrap().len(), 2);
    let id = session["id"].as_str().unwrap().to_owned();

    // Every read, validated.
    let streams = spec.check(
        "get",
        "/api/v1/streams",
        &server.http_get("/api/v1/streams"),
    );
    let sample = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sample")
        .expect("sample in the catalog")
        .clone();
    assert_eq!(sample["url"], server.url("sample"));
    assert_eq!(sample["viewers"], 1, "{sample:#}");
    assert_eq!(sample["codecs"], serde_json::json!(["H.264", "AAC"]));
    assert_eq!(
        (sample["width"].clone(), sample["height"].clone()),
        (640.into(), 360.into())
    );
    assert_eq!(sample["live"], false);
    let one = spec.check(
        "get",
        "/api/v1/streams/{name}",
        &server.http_get("/api/v1/streams/sample"),
    );
    assert_eq!(one["name"], "sample");
    spec.check(
        "get",
        "/api/v1/sessions",
        &server.http_get("/api/v1/sessions"),
    );
    let got = spec.check(
        "get",
        "/api/v1/sessions/{id}",
        &server.http_get(&format!("/api/v1/sessions/{id}")),
    );
    assert_eq!(got["id"], id.as_str());
    // Ids are hex: lower case names the same session.
    assert_eq!(
        server
            .http_get(&format!("/api/v1/sessions/{}", id.to_lowercase()))
            .status,
        200
    );
    let stats = spec.check("get", "/api/v1/stats", &server.http_get("/api/v1/stats"));
    assert_eq!(stats["viewers"], 1);
    assert!(
        stats["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "sample" && s["viewers"] == 1),
        "{:#}",
        stats["streams"]
    );
    assert_eq!(stats["publishers"], 0);
    assert!(sample.get("source").is_none(), "files have no source");
    // Nobody publishes: the ingest view is an empty list.
    let ingest = spec.check("get", "/api/v1/ingest", &server.http_get("/api/v1/ingest"));
    assert_eq!(ingest["ingest"], serde_json::json!([]));
    let short = spec.check(
        "get",
        "/api/v1/stats",
        &server.http_get("/api/v1/stats?history=1"),
    );
    assert!(short["history"].as_array().unwrap().len() <= 1);
    spec.check(
        "get",
        "/api/v1/stats",
        &server.http_get("/api/v1/stats?history=x"),
    );

    // Documented errors.
    let r = server.http_get("/api/v1/streams/no-such-stream");
    assert_eq!(r.status, 404);
    spec.check("get", "/api/v1/streams/{name}", &r);
    let r = server.http_get("/api/v1/streams/..%2f..%2fetc%2fpasswd");
    assert_eq!(r.status, 404, "traversal names nothing: {}", r.text());
    let r = server.http_get("/api/v1/sessions/0000000000000000");
    assert_eq!(r.status, 404);
    spec.check("get", "/api/v1/sessions/{id}", &r);
    let r = server.http_get("/api/v1/sessions/not-an-id");
    assert_eq!(r.status, 404);
    spec.check("get", "/api/v1/sessions/{id}", &r);
    for path in [
        "/api/v1/nothing",
        "/api/v2/streams",
        "/nothing",
        "/api/v1/streams/",
    ] {
        let r = server.http_get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string(), "{path}: JSON error");
    }

    // DELETE needs the admin bearer token.
    let path = format!("/api/v1/sessions/{id}");
    let r = http_request(http, "DELETE", &path, &[], b"");
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").unwrap().starts_with("Bearer"));
    spec.check("delete", "/api/v1/sessions/{id}", &r);
    let wrong = bearer("not-the-admin-token");
    let r = http_request(http, "DELETE", &path, &[("Authorization", &wrong)], b"");
    assert_eq!(r.status, 401);
    spec.check("delete", "/api/v1/sessions/{id}", &r);
    assert_eq!(
        server.http_get(&path).status,
        200,
        "refused DELETEs end nothing"
    );

    let admin = bearer(ADMIN);
    let deleted_at = Instant::now();
    let r = http_request(http, "DELETE", &path, &[("Authorization", &admin)], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    spec.check("delete", "/api/v1/sessions/{id}", &r);
    // retina's session ends: the server closed its RTSP connection (and sent BYE) long
    // before the 10 s clip would have ended by itself.
    match player.recv_timeout(Duration::from_secs(5)) {
        Ok(PlayerEvent::Ended { frames, error }) => {
            assert!(
                deleted_at.elapsed() < Duration::from_secs(5),
                "ended {:?} after DELETE",
                deleted_at.elapsed()
            );
            let expected = common::retina_play::expected();
            assert!(
                frames < expected.video_frames + expected.audio_frames,
                "the clip was cut short, not played out ({frames} frames, {error:?})"
            );
        }
        other => panic!("retina still playing 5 s after DELETE: {other:?}"),
    }
    wait_sessions(&server, Duration::from_secs(2), |l| l.is_empty());
    assert_eq!(server.http_get(&path).status, 404);
    let r = http_request(http, "DELETE", &path, &[("Authorization", &admin)], b"");
    assert_eq!(r.status, 404);
    spec.check("delete", "/api/v1/sessions/{id}", &r);
    let stats = server.http_get("/api/v1/stats").json();
    assert_eq!(stats["viewers"], 0);
}

#[test]
fn delete_sends_rtcp_bye_and_closes_the_rtsp_connection() {
    let server = Server::start_env(&[], &[("SHARDCAST_ADMIN_TOKEN", ADMIN)]);
    let mut s = common::setup_udp(&server);
    let sid = s.session.clone();
    let r = s.rtsp.request("PLAY", &s.url, &[("Session", sid.as_str())]);
    assert_eq!(r.status, 200);
    let list = wait_sessions(&server, Duration::from_secs(5), |l| l.len() == 1);
    // The API names the session by an opaque handle, never by its RTSP Session id (which
    // would let any reader of the API control it), and the RTSP id is no handle.
    let handle = list[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(handle, sid, "the API must not reveal the RTSP session id");
    let body = server.http_get("/api/v1/sessions").text();
    assert!(!body.contains(sid.as_str()), "{body}");
    let delete = |id: &str| {
        http_request(
            server.http_addr(),
            "DELETE",
            &format!("/api/v1/sessions/{id}"),
            &[("Authorization", &bearer(ADMIN))],
            b"",
        )
    };
    assert_eq!(
        delete(&sid).status,
        404,
        "an RTSP session id is not a handle"
    );
    assert_eq!(delete(&handle).status, 204);
    assert!(
        common::wait_for_bye(&s.socks[0].1, Duration::from_secs(3)),
        "RTCP BYE on the viewer's RTCP port (RFC 3550 §6.6)"
    );
    assert!(
        s.rtsp.closed_within(Duration::from_secs(3)),
        "the RTSP connection that set the session up is closed"
    );
}

#[test]
fn mutations_are_refused_without_an_admin_token_and_reads_can_need_one() {
    let mut spec = Spec::load();
    let open = Server::start(&[]);
    let http = open.http_addr();
    let r = http_request(
        http,
        "DELETE",
        "/api/v1/sessions/0000000000000001",
        &[],
        b"",
    );
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("admin"));
    spec.check("delete", "/api/v1/sessions/{id}", &r);
    let r = http_request(
        http,
        "POST",
        "/api/v1/play",
        &[
            ("Authorization", "Bearer anything-at-all-here"),
            ("Content-Type", "application/json"),
        ],
        br#"{"stream":"sample"}"#,
    );
    assert_eq!(r.status, 403);
    spec.check("post", "/api/v1/play", &r);

    let closed = Server::start_env(
        &["--api-read", "token"],
        &[("SHARDCAST_ADMIN_TOKEN", ADMIN)],
    );
    let http = closed.http_addr();
    let admin = bearer(ADMIN);
    for (path, template) in [
        ("/api/v1/streams", "/api/v1/streams"),
        ("/api/v1/streams/sample", "/api/v1/streams/{name}"),
        ("/api/v1/sessions", "/api/v1/sessions"),
        ("/api/v1/stats", "/api/v1/stats"),
    ] {
        let r = closed.http_get(path);
        assert_eq!(r.status, 401, "{path} without the token");
        spec.check("get", template, &r);
        let r = http_request(http, "GET", path, &[("Authorization", &admin)], b"");
        assert_eq!(r.status, 200, "{path} with the token");
        spec.check("get", template, &r);
    }
    assert_eq!(closed.http_get("/metrics").status, 401);
    let r = http_request(http, "GET", "/metrics", &[("Authorization", &admin)], b"");
    assert_eq!(r.status, 200);
    // The pages hold no data, so a browser can load them; their scripts send the token.
    let page = closed.http_get("/dashboard");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("viewer-count"));
    let page = closed.http_get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"streams\""));
}

#[test]
fn hostile_requests_get_4xx_and_the_server_keeps_serving() {
    let server = Server::start_env(&[], &[("SHARDCAST_ADMIN_TOKEN", ADMIN)]);
    let http = server.http_addr();
    let admin = bearer(ADMIN);
    let play = |body: &[u8]| {
        http_request(
            http,
            "POST",
            "/api/v1/play",
            &[
                ("Authorization", &admin),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    };
    let mut spec = Spec::load();

    // Bodies: too large (declared and streamed), not JSON, unknown fields, bad values.
    let r = play(&vec![b' '; 100 * 1024]);
    assert_eq!(r.status, 413, "{}", r.text());
    spec.check("post", "/api/v1/play", &r);
    let mut chunked = format!(
        "POST /api/v1/play HTTP/1.1\r\nHost: x\r\nAuthorization: {admin}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 8192));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = http_raw(http, &chunked).expect("an answer to a long chunked body");
    assert_eq!(r.status, 413, "{}", r.text());
    for (body, status) in [
        (&b"not json"[..], 400),
        (br#"{"stream":"sample","extra":1}"#, 400),
        (br#"{"stream":"sample","lifetime_secs":0}"#, 400),
        (br#"{"stream":"sample","lifetime_secs":999999999}"#, 400),
        (br#"{"stream":"sample","viewer_ip":"not-an-ip"}"#, 400),
        (br#"{"stream":"../../etc/passwd"}"#, 404),
        (br#"{"stream":"nope"}"#, 404),
    ] {
        let r = play(body);
        assert_eq!(
            r.status,
            status,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        spec.check("post", "/api/v1/play", &r);
    }
    // Methods.
    for (method, path) in [
        ("PUT", "/api/v1/streams"),
        ("POST", "/api/v1/stats"),
        ("GET", "/api/v1/play"),
        ("DELETE", "/metrics"),
        ("POST", "/"),
    ] {
        let r = http_request(http, method, path, &[], b"");
        assert_eq!(r.status, 405, "{method} {path}");
        assert!(r.header("Allow").is_some(), "{method} {path}: Allow");
    }
    // Heads: too large, too many fields, not HTTP.
    let huge = format!(
        "GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let r = http_raw(http, huge.as_bytes());
    assert!(
        r.as_ref().is_none_or(|r| (400..500).contains(&r.status)),
        "oversized head: {r:?}"
    );
    let mut many = String::from("GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    let r = http_raw(http, many.as_bytes()).expect("an answer to 200 header fields");
    assert!((400..500).contains(&r.status), "{}", r.status);
    let r = http_raw(
        http,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
    assert!(
        r.as_ref().is_none_or(|r| (400..500).contains(&r.status)),
        "{r:?}"
    );
    let r = http_raw(http, b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(r.status, 404);

    // Connections: one address may hold 32; the next is answered 503 and closed.
    // The server counts a connection once it has accepted it, which may trail `connect`: a
    // 33rd connection answered 200 only means it came first; it must be refused once all 32
    // are counted (a limit of 33 or more would answer 200 to the end).
    let held: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(http).unwrap()).collect();
    let stats = b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n";
    let status_within = |want: u16| {
        let end = Instant::now() + Duration::from_secs(3);
        loop {
            let got = http_raw(http, stats).map(|r| r.status);
            if got == Some(want) || Instant::now() > end {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(
        status_within(503),
        Some(503),
        "33rd connection from one address"
    );
    drop(held);
    // And once they close, the address is served again.
    assert_eq!(status_within(200), Some(200), "served after the 32 closed");

    // A request head that never completes is cut off after the header timeout (10 s).
    let mut slow = TcpStream::connect(http).unwrap();
    slow.write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "slow head held {:?}",
        start.elapsed()
    );

    // Still serving.
    let r = server.http_get("/api/v1/stats");
    assert_eq!(r.status, 200);
    spec.check("get", "/api/v1/stats", &r);
    let r = play(br#"{"stream":"sample","lifetime_secs":60}"#);
    assert_eq!(r.status, 200);
    spec.check("post", "/api/v1/play", &r);
}

/// Issue 13 item 12: `POST /api/v1/play` takes only `application/json` bodies (415 otherwise),
/// so a cross-site HTML form (text/plain, urlencoded or multipart, no preflight) cannot make
/// an admin's browser call it; credentials are still checked first (401 before 415).
#[test]
fn play_refuses_bodies_that_are_not_declared_json() {
    let server = Server::start_env(&[], &[("SHARDCAST_ADMIN_TOKEN", ADMIN)]);
    let http = server.http_addr();
    let admin = bearer(ADMIN);
    let mut spec = Spec::load();
    let body = br#"{"stream":"sample"}"#;
    let play = |content_type: Option<&str>, auth: bool| {
        let mut headers = Vec::new();
        if auth {
            headers.push(("Authorization", admin.as_str()));
        }
        if let Some(t) = content_type {
            headers.push(("Content-Type", t));
        }
        http_request(http, "POST", "/api/v1/play", &headers, body)
    };
    for ct in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let r = play(ct, true);
        assert_eq!(r.status, 415, "{ct:?}: {}", r.text());
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("application/json"));
        spec.check("post", "/api/v1/play", &r);
    }
    // Without the admin token the answer is 401 whatever the body's type.
    let r = play(Some("text/plain"), false);
    assert_eq!(r.status, 401, "{}", r.text());
    spec.check("post", "/api/v1/play", &r);
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/json;charset=UTF-8",
    ] {
        let r = play(Some(ct), true);
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
        spec.check("post", "/api/v1/play", &r);
    }
}

#[test]
fn stats_command_prints_the_live_figures_once() {
    let server = Server::start_env(
        &["--api-read", "token"],
        &[("SHARDCAST_ADMIN_TOKEN", ADMIN)],
    );
    let base = format!("http://{}", server.http_addr());
    let mut s = common::setup_udp(&server);
    let sid = s.session.clone();
    let r = s.rtsp.request("PLAY", &s.url, &[("Session", sid.as_str())]);
    assert_eq!(r.status, 200);
    let run = |args: &[&str]| {
        common::run_with_timeout(
            std::process::Command::new(env!("CARGO_BIN_EXE_shardcast"))
                .args(["stats", "--http", &base, "--once"])
                .args(args)
                .env_remove("SHARDCAST_ADMIN_TOKEN"),
            Duration::from_secs(20),
        )
    };
    // Reads need the token on this server: the command says so and fails.
    let (ok, _out, err) = run(&[]);
    assert!(!ok, "stats without the token must fail");
    assert!(err.contains("401"), "{err}");
    let (ok, out, err) = run(&["--admin-token", ADMIN]);
    assert!(ok, "stats --once failed: {err}");
    assert!(!out.contains('\x1b'), "--once prints plain text: {out:?}");
    assert!(out.contains("viewers 1 "), "{out}");
    assert!(out.contains("top sessions (1 of 1)"), "{out}");
    // Sessions are listed by their API handle, never by the RTSP session id.
    let listed = http_request(
        server.http_addr(),
        "GET",
        "/api/v1/sessions",
        &[("Authorization", &bearer(ADMIN))],
        b"",
    )
    .json();
    let handle = listed["sessions"][0]["id"].as_str().unwrap().to_owned();
    assert!(!out.contains(&sid), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&handle))
        .unwrap_or_else(|| panic!("session {handle} listed:\n{out}"));
    assert!(row.contains("sample") && row.contains(" udp "), "{row}");
    for label in ["jitter", "rtt", "lateness", "shard"] {
        assert!(
            out.lines().any(|l| l.starts_with(label)),
            "{label} row:\n{out}"
        );
    }
    // Nothing listening: a clear error, not a hang.
    let (ok, _out, err) = common::run_with_timeout(
        std::process::Command::new(env!("CARGO_BIN_EXE_shardcast")).args([
            "stats",
            "--http",
            "http://127.0.0.1:1",
            "--once",
        ]),
        Duration::from_secs(20),
    );
    assert!(!ok && err.contains("127.0.0.1:1"), "{err}");
}
