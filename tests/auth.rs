//! Authentication against independent clients: ffmpeg/ffprobe (Digest MD5 from
//! `rtsp://user:pass@…`) and retina (Digest via its `http-auth` crate, which picks our
//! preferred SHA-256 challenge) succeed with the right password and fail with a wrong one;
//! raw requests check the challenges, Basic refusal, OPTIONS staying open, and per-stream
//! access rules from a config file (public stream, forbidden user → 403).

mod common;

use std::process::Command;
use std::time::Duration;

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
    let dir = std::env::temp_dir().join(format!("shardcast-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("shardcast.toml");
    std::fs::write(
        &config,
        r#"
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
    )
    .unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
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
