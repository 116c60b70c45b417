//! Authentication against independent clients: ffmpeg/ffprobe (Digest MD5 from
//! `rtsp://user:pass@…`) and retina (Digest via its `http-auth` crate, which picks our
//! preferred SHA-256 challenge) succeed with the right password and fail with a wrong one;
//! raw requests check the challenges, Basic refusal, OPTIONS staying open, and per-stream
//! access rules from a config file (public stream, forbidden user → 403). Brute force:
//! wrong Digest guesses over parallel connections, from one address or for one user name
//! from two addresses, are answered one backoff slot at a time.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use futures::StreamExt;
use retina::client::{
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
};
use retina::codec::CodecItem;

use common::RawRtsp;

fn ffprobe(url: &str) -> (bool, String, String) {
    common::run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "compact",
            url,
        ]),
        Duration::from_secs(20),
    )
}

#[test]
fn ffprobe_digest_md5_succeeds_with_the_right_password_only() {
    let server = common::Server::start(&["--user", "alice:s3cret"]);
    let url = |creds: &str| format!("rtsp://{creds}@{}/sample", server.addr);
    let (ok, out, err) = ffprobe(&url("alice:s3cret"));
    assert!(
        ok && out.contains("codec_name=h264") && out.contains("codec_name=aac"),
        "{out}\n{err}"
    );
    let (ok, _, err) = ffprobe(&url("alice:wrong"));
    assert!(
        !ok && err.contains("401"),
        "wrong password must be refused: {err}"
    );
    let (ok, _, err) = ffprobe(&format!("rtsp://{}/sample", server.addr));
    assert!(
        !ok && err.contains("401"),
        "no credentials must be refused: {err}"
    );
}

async fn retina_frames(url: &str, creds: Option<(&str, &str)>) -> Result<usize, String> {
    let opts = SessionOptions::default().creds(creds.map(|(u, p)| Credentials {
        username: u.into(),
        password: p.into(),
    }));
    let mut session = Session::describe(url::Url::parse(url).unwrap(), opts)
        .await
        .map_err(|e| e.to_string())?;
    session
        .setup(
            0,
            SetupOptions::default().transport(Transport::Tcp(TcpTransportOptions::default())),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut demuxed = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| e.to_string())?
        .demuxed()
        .map_err(|e| e.to_string())?;
    let mut frames = 0;
    while frames < 10 {
        match tokio::time::timeout(Duration::from_secs(5), demuxed.next()).await {
            Ok(Some(Ok(CodecItem::VideoFrame(_)))) => frames += 1,
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("{other:?}")),
        }
    }
    Ok(frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retina_authenticates_with_digest_and_is_refused_with_a_wrong_password() {
    let server = common::Server::start(&["--user", "bob:hunter2"]);
    let url = server.url("sample");
    assert_eq!(retina_frames(&url, Some(("bob", "hunter2"))).await, Ok(10));
    let err = retina_frames(&url, Some(("bob", "nope")))
        .await
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
    let err = retina_frames(&url, None).await.unwrap_err();
    assert!(
        err.contains("401") || err.contains("Authentication"),
        "{err}"
    );
}

#[test]
fn challenges_offer_sha256_then_md5_and_basic_only_when_enabled() {
    let server = common::Server::start(&["--user", "alice:s3cret"]);
    let url = server.url("sample");
    let mut c = RawRtsp::connect(server.addr);
    assert_eq!(
        c.request("OPTIONS", &url, &[]).status,
        200,
        "OPTIONS needs no credentials"
    );
    let r = c.request("DESCRIBE", &url, &[]);
    assert_eq!(r.status, 401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("WWW-Authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[0].starts_with("Digest ") && challenges[0].contains("algorithm=SHA-256"));
    assert!(challenges[1].contains("algorithm=MD5") && challenges[1].contains("qop=\"auth\""));
    // Basic is refused unless enabled, even with the right password.
    let basic = "Basic YWxpY2U6czNjcmV0"; // alice:s3cret
    assert_eq!(
        c.request("DESCRIBE", &url, &[("Authorization", basic)])
            .status,
        401
    );

    let open = common::Server::start(&["--user", "alice:s3cret", "--allow-basic"]);
    let mut c = RawRtsp::connect(open.addr);
    let r = c.request("DESCRIBE", &open.url("sample"), &[("Authorization", basic)]);
    assert_eq!(r.status, 200);
    let r = c.request("DESCRIBE", &open.url("sample"), &[]);
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("WWW-Authenticate") && v.starts_with("Basic ")));
}

#[test]
fn access_rules_from_config_open_a_stream_and_forbid_a_user() {
    let config = common::write_config(
        "auth",
        &r#"
allow-basic = true
[[users]]
name = "alice"
password = "s3cret"
[[users]]
name = "carol"
# SHA-256("carol:shardcast:pw") and MD5 of the same: no password in the file.
ha1-sha256 = "SHA"
ha1-md5 = "MD5"
[[access]]
streams = "open"
public = true
[[access]]
streams = "sample"
users = ["alice"]
"#
        .replace("SHA", &sha256_hex("carol:shardcast:pw"))
        .replace("MD5", &md5_hex("carol:shardcast:pw")),
    );
    let server = common::Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--live",
        &format!("open={}/tests/media/short.mp4", env!("CARGO_MANIFEST_DIR")),
    ]);
    let mut c = RawRtsp::connect(server.addr);
    assert_eq!(
        c.request("DESCRIBE", &server.url("open"), &[]).status,
        200,
        "public stream"
    );
    let carol = format!("Basic {}", b64("carol:pw"));
    assert_eq!(
        c.request(
            "DESCRIBE",
            &server.url("sample"),
            &[("Authorization", &carol)]
        )
        .status,
        403
    );
    let alice = format!("Basic {}", b64("alice:s3cret"));
    assert_eq!(
        c.request(
            "DESCRIBE",
            &server.url("sample"),
            &[("Authorization", &alice)]
        )
        .status,
        200
    );
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

/// A connection from `source` (a 127.0.0.x address) to `server`.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> RawRtsp {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    sock.connect(&server.into()).unwrap();
    RawRtsp::from_stream(TcpStream::from(sock))
}

/// The nonce of the MD5 challenge in a 401.
fn md5_nonce(r: &common::RtspResponse) -> String {
    let challenge = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("WWW-Authenticate") && v.contains("algorithm=MD5"))
        .map(|(_, v)| v.clone())
        .expect("an MD5 challenge");
    let start = challenge.find("nonce=\"").unwrap() + 7;
    let len = challenge[start..].find('"').unwrap();
    challenge[start..start + len].to_owned()
}

/// A Digest MD5 `Authorization` for DESCRIBE of `url`, as ffmpeg would compute it.
fn md5_digest(user: &str, pass: &str, url: &str, nonce: &str) -> String {
    let ha1 = md5_hex(&format!("{user}:shardcast:{pass}"));
    let ha2 = md5_hex(&format!("DESCRIBE:{url}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"shardcast\", nonce=\"{nonce}\", uri=\"{url}\", \
         algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{response}\""
    )
}

/// `n` connections from `source` each take a challenge, then all send a wrong guess for
/// `user` at once (on a barrier). Returns, as they arrive, each answer's status and its
/// time after the guesses were sent.
fn parallel_wrong_guesses(
    server: SocketAddr,
    source: Ipv4Addr,
    user: &'static str,
    n: usize,
) -> mpsc::Receiver<(u16, Duration)> {
    let url = format!("rtsp://{server}/sample");
    let (tx, rx) = mpsc::channel();
    let barrier = Arc::new(Barrier::new(n + 1));
    for _ in 0..n {
        let (tx, barrier, url) = (tx.clone(), barrier.clone(), url.clone());
        std::thread::spawn(move || {
            let mut c = connect_from(source, server);
            let challenge = c.request("DESCRIBE", &url, &[]);
            assert_eq!(
                challenge.status, 401,
                "a first DESCRIBE is challenged at once"
            );
            let guess = md5_digest(user, "guess", &url, &md5_nonce(&challenge));
            let request =
                format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAuthorization: {guess}\r\n\r\n");
            c.stream
                .set_read_timeout(Some(Duration::from_secs(40)))
                .unwrap();
            barrier.wait();
            let sent = Instant::now();
            c.send_raw(request.as_bytes());
            // No answer (the server was stopped at the end of the test) is not reported.
            if let Some(r) = c.read_response() {
                let _ = tx.send((r.status, sent.elapsed()));
            }
        });
    }
    barrier.wait();
    rx
}

/// Waits for answers until `count` of them are 401s; returns the time of the last one.
/// Every answer must be 401 (verified and wrong) or 503 (backoff queue full, unverified).
fn time_of_nth_401(rx: &mpsc::Receiver<(u16, Duration)>, count: usize) -> Duration {
    let mut challenged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while challenged.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let (status, at) = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("only {challenged:?} answered with 401: {e}"));
        assert!(status == 401 || status == 503, "status {status}");
        if status == 401 {
            challenged.push(at);
        }
    }
    challenged.sort();
    challenged[count - 1]
}

#[test]
fn parallel_wrong_guesses_from_one_address_are_answered_one_slot_at_a_time() {
    let server = common::Server::start(&["--user", "alice:secret"]);
    // 30 guesses at once over 30 connections. Five failures are free; then each next guess
    // is answered one backoff (0.2 s, doubling) after the previous one's slot: the 9th
    // answer comes at 0.2 + 0.4 + 0.8 + 1.6 = 3.0 s. Delays per connection (the old
    // behaviour) answered it after 1.6 s, and all 30 within about 5 s.
    let rx = parallel_wrong_guesses(server.addr, Ipv4Addr::LOCALHOST, "alice", 30);
    let ninth = time_of_nth_401(&rx, 9);
    assert!(
        ninth >= Duration::from_millis(2_700),
        "the 9th wrong guess was answered after {ninth:?}"
    );
    let metrics = server.http_get("/metrics").text();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert!(counter("shardcast_rtsp_auth_failures_total") >= 9.0);
    assert!(counter("shardcast_rtsp_auth_throttled_total") >= 4.0);
}

#[test]
fn wrong_guesses_for_one_user_from_two_addresses_share_the_backoff() {
    let server = common::Server::start(&["--user", "alice:secret"]);
    let first = Ipv4Addr::new(127, 0, 0, 1);
    let second = Ipv4Addr::new(127, 0, 0, 2);
    // Five free failures for alice from the first address...
    let rx = parallel_wrong_guesses(server.addr, first, "alice", 5);
    time_of_nth_401(&rx, 5);
    // ...then three at once from a second address that has never failed: alice's queue
    // answers them 0.2, 0.6 and 1.4 s later (keyed per address only, all at once).
    let rx = parallel_wrong_guesses(server.addr, second, "alice", 3);
    let third = time_of_nth_401(&rx, 3);
    assert!(
        third >= Duration::from_millis(1_200),
        "the 3rd guess from {second} was answered after {third:?}"
    );
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
