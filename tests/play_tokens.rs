//! Play tokens end to end, with `--require-token`: `POST /api/v1/play` (admin bearer) signs
//! a URL that retina, ffmpeg and GStreamer play as it is (the token rides into the SDP control
//! URLs and RTP-Info), while missing (401), expired, tampered, other-stream and wrong-viewer
//! tokens (403) are refused at DESCRIBE and SETUP with one log line each. Signing and
//! verification themselves are unit-tested in `src/http/token.rs`.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::players::{ffmpeg_decode, gstreamer_reaches_eos};
use common::{http_request, RawRtsp, Server};
use retina::client::Transport;
use shardcast::token::TokenKey;

const ADMIN: &str = "play-token-test-admin-0123";
const SECRET: &str = "play-token-test-secret-4567";

fn server() -> Server {
    let live = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4");
    Server::start_env(
        &["--require-token", "--live", &format!("news={live}")],
        &[
            ("SHARDCAST_ADMIN_TOKEN", ADMIN),
            ("SHARDCAST_TOKEN_SECRET", SECRET),
        ],
    )
}

/// `POST /api/v1/play` with the admin token; the answer's JSON.
fn issue(server: &Server, body: &str) -> serde_json::Value {
    let r = http_request(
        server.http_addr(),
        "POST",
        "/api/v1/play",
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    r.json()
}

fn play_url(server: &Server, stream: &str) -> String {
    let grant = issue(server, &format!(r#"{{"stream":"{stream}"}}"#));
    let url = grant["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}?token=", server.url(stream))),
        "{url}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = grant["expires_unix"].as_u64().unwrap();
    assert!(
        (now + 290..=now + 310).contains(&exp),
        "default lifetime 300 s: {exp} vs {now}"
    );
    url
}

fn describe(server: &Server, url: &str) -> common::RtspResponse {
    let mut c = RawRtsp::connect(server.addr);
    c.request("DESCRIBE", url, &[("Accept", "application/sdp")])
}

/// The server's refusal log lines once there are at least `n` (or after 3 s: the log is read
/// from the server's stderr by another thread, so a line can trail its response).
fn refusals_reach(server: &Server, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let lines: Vec<String> = server
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("request refused:"))
            .collect();
        if lines.len() >= n || Instant::now() > end {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn issuing_needs_the_admin_bearer_token() {
    let server = server();
    let http = server.http_addr();
    let body = br#"{"stream":"sample"}"#;
    let json = [("Content-Type", "application/json")];
    let r = http_request(http, "POST", "/api/v1/play", &json, body);
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").is_some());
    let r = http_request(
        http,
        "POST",
        "/api/v1/play",
        &[
            ("Authorization", "Bearer play-token-test-admin-0124"),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(r.status, 401, "a token one character off is refused");
    let grant = issue(
        &server,
        r#"{"stream":"sample","lifetime_secs":60,"viewer_ip":"127.0.0.1"}"#,
    );
    let token = grant["token"].as_str().unwrap();
    assert!(token.contains(".7f000001."), "bound to 127.0.0.1: {token}");
    assert!(grant["url"].as_str().unwrap().ends_with(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_url_plays_with_retina() {
    let server = server();
    let url = play_url(&server, "sample");
    // Every frame, with the right timestamps: SETUP URLs and RTP-Info carry the token.
    common::retina_play::play_all(&url, Transport::Tcp(Default::default())).await;
    let url = play_url(&server, "sample");
    common::retina_play::play_all(&url, Transport::Udp(Default::default())).await;
}

#[test]
fn a_signed_url_plays_with_ffmpeg_and_gstreamer() {
    let server = server();
    for transport in ["tcp", "udp"] {
        let url = play_url(&server, "sample");
        let d = ffmpeg_decode(&url, transport);
        let expected = common::retina_play::expected();
        assert!(
            d.frames.abs_diff(expected.video_frames) <= 1,
            "ffmpeg over {transport} decoded {} of {} frames",
            d.frames,
            expected.video_frames
        );
    }
    let url = play_url(&server, "sample");
    gstreamer_reaches_eos(&url, "tcp");
    // A live channel's token names the channel.
    let url = play_url(&server, "news");
    let (ok, _out, err) = common::run_with_timeout(
        std::process::Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            &url,
            "-t",
            "2",
            "-f",
            "null",
            "-",
        ]),
        Duration::from_secs(30),
    );
    assert!(
        ok && err.trim().is_empty(),
        "ffmpeg on the live channel: {err}"
    );
    // A request refused on purpose, last: once its line is logged, any refusal of the
    // players' requests (logged before it) is too. It must be the only one.
    assert_eq!(describe(&server, &server.url("sample")).status, 401);
    let log = refusals_reach(&server, 1);
    assert!(
        log.len() == 1 && log[0].contains("status=401") && log[0].contains("no play token"),
        "the players' requests were refused: {log:#?}"
    );
}

#[test]
fn missing_expired_tampered_other_stream_and_wrong_viewer_tokens_are_refused() {
    let server = server();
    let key = TokenKey::from_secret(SECRET);
    let base = server.url("sample");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Missing: 401 with a challenge naming what is missing.
    let r = describe(&server, &base);
    assert_eq!(r.status, 401);
    assert!(r
        .header("WWW-Authenticate")
        .is_some_and(|c| c.contains("token")));

    // Valid, for comparison (signed here with the same secret, as a web backend would).
    let good = key.sign("sample", now + 60, None);
    let r = describe(&server, &format!("{base}?token={good}"));
    assert_eq!(r.status, 200);

    let expired = key.sign("sample", now - 1, None);
    let other_stream = key.sign("news", now + 60, None);
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let extended = good.replacen(&(now + 60).to_string(), &(now + 6000).to_string(), 1);
    let foreign =
        TokenKey::from_secret("some-other-secret-entirely").sign("sample", now + 60, None);
    let wrong_viewer = issue(&server, r#"{"stream":"sample","viewer_ip":"192.0.2.1"}"#);
    let wrong_viewer = wrong_viewer["token"].as_str().unwrap().to_owned();
    let cases = [
        ("expired", expired),
        ("tampered", tampered),
        ("extended expiry", extended),
        ("another stream's", other_stream),
        ("another secret's", foreign),
        ("another viewer's", wrong_viewer),
        ("garbage", "x;y".to_owned()),
    ];
    for (what, token) in &cases {
        let r = describe(&server, &format!("{base}?token={token}"));
        assert_eq!(r.status, 403, "{what} token at DESCRIBE");
    }
    // The right viewer address is accepted.
    let mine = issue(&server, r#"{"stream":"sample","viewer_ip":"127.0.0.1"}"#);
    let r = describe(&server, mine["url"].as_str().unwrap());
    assert_eq!(r.status, 200);

    // (An extra refusal logged later would show in the exact metric below.)
    let log = refusals_reach(&server, 1 + cases.len());
    assert_eq!(
        log.len(),
        1 + cases.len(),
        "one log line per refusal:\n{}",
        log.join("\n")
    );
    for (what, token) in &cases {
        assert!(
            !log.iter().any(|l| l.contains(token.as_str())),
            "the {what} token is not written to the log"
        );
    }
    assert!(log
        .iter()
        .any(|l| l.contains("status=401") && l.contains("no play token")));
    assert!(log
        .iter()
        .any(|l| l.contains("status=403") && l.contains("expired")));
    assert!(log
        .iter()
        .any(|l| l.contains("status=403") && l.contains("another viewer")));
    let m = server.http_get("/metrics").text();
    assert!(
        m.contains(&format!(
            "shardcast_rtsp_token_refusals_total {}\n",
            1 + cases.len()
        )),
        "{m}"
    );
}

#[test]
fn setup_is_checked_and_play_is_bound_to_the_checked_session() {
    let server = server();
    let url = play_url(&server, "sample");
    let token = url.split_once("?token=").unwrap().1.to_owned();
    let mut c = RawRtsp::connect(server.addr);
    let d = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200);
    let base = d.header("Content-Base").unwrap().to_owned();
    assert_eq!(
        base,
        format!("{}/", server.url("sample")),
        "Content-Base without the token"
    );
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    for track in 0..2 {
        assert!(
            sdp.contains(&format!("a=control:trackID={track}?token={token}\r\n")),
            "per-track controls carry the token:\n{sdp}"
        );
    }
    let (rtp, _rtcp) = common::udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let transport = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    // A SETUP without the token is refused even after a good DESCRIBE...
    let r = c.request(
        "SETUP",
        &format!("{base}trackID=0"),
        &[("Transport", &transport)],
    );
    assert_eq!(r.status, 401);
    // ...and one with another stream's token too.
    let other = play_url(&server, "news");
    let other_token = other.split_once("?token=").unwrap().1;
    let r = c.request(
        "SETUP",
        &format!("{base}trackID=0?token={other_token}"),
        &[("Transport", &transport)],
    );
    assert_eq!(r.status, 403);
    // The URL the SDP leads to works.
    let r = c.request(
        "SETUP",
        &format!("{base}trackID=0?token={token}"),
        &[("Transport", &transport)],
    );
    assert_eq!(r.status, 200);
    let sid = r.session().unwrap();
    // PLAY needs no token: it names the session the checked SETUP created.
    let p = c.request("PLAY", &base, &[("Session", &sid), ("Range", "npt=0-")]);
    assert_eq!(p.status, 200);
    let info = p.header("RTP-Info").unwrap();
    assert!(
        info.starts_with(&format!("url={base}trackID=0?token={token};seq=")),
        "RTP-Info names the tokenized control URL: {info}"
    );
    // An unknown session id gets nothing, token or not.
    let p = c.request("PLAY", &base, &[("Session", "0123456789ABCDEF")]);
    assert_eq!(p.status, 454);
    let t = c.request("TEARDOWN", &base, &[("Session", &sid)]);
    assert_eq!(t.status, 200);
}
