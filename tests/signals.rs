//! Process lifecycle: on SIGTERM the server stops accepting, sends RTCP BYE to every viewer
//! and exits 0 within 5 s; on SIGHUP it reloads users, rules, limits, the media catalog and
//! the play-token and admin-token settings while admitted viewers keep streaming.

mod common;

use std::time::{Duration, Instant};

use common::{udp_pair, RawRtsp};

#[test]
fn sigterm_sends_bye_to_viewers_and_exits_zero_within_5s() {
    let mut server = common::Server::start(&[]);
    let url = server.url("sample");
    let mut c = RawRtsp::connect(server.addr);
    let (rtp, rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let t = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    let r = c.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", &t)]);
    assert_eq!(r.status, 200);
    let sid = r.session().unwrap();
    assert_eq!(c.request("PLAY", &url, &[("Session", &sid)]).status, 200);
    let mut buf = [0u8; 2048];
    rtp.recv(&mut buf).expect("streaming before the signal");

    let sent = Instant::now();
    assert_eq!(send_signal(server.pid(), libc::SIGTERM), 0);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exited within 5 s");
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(5));

    // An RTCP compound with a BYE (PT 203) arrived on the viewer's RTCP port.
    let saw_bye = common::wait_for_bye(&rtcp, Duration::from_millis(500));
    assert!(saw_bye, "viewer got RTCP BYE at shutdown");
}

/// Sends a signal with the `kill` command (keeps `unsafe` out of the tests).
fn send_signal(pid: u32, signal: i32) -> i32 {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill");
    if status.success() {
        0
    } else {
        1
    }
}

#[test]
fn sighup_reloads_users_without_dropping_viewers_and_new_files_are_served() {
    let dir = std::env::temp_dir().join(format!("shardcast-hup-{}", std::process::id()));
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::copy(
        format!("{}/tests/media/sample.mp4", env!("CARGO_MANIFEST_DIR")),
        media.join("one.mp4"),
    )
    .unwrap();
    let config = dir.join("shardcast.toml");
    let write_config = |user: &str| {
        std::fs::write(
            &config,
            format!("allow-basic = true\nmedia = {:?}\n[[users]]\nname = \"{user}\"\npassword = \"pw\"\n", media),
        )
        .unwrap()
    };
    write_config("alice");
    let mut server = common::Server::start(&["--config", config.to_str().unwrap()]);
    let basic = |user: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
        )
    };
    let alice = basic("alice");
    let bob = basic("bob");

    // A viewer plays "one" as alice.
    let url = server.url("one");
    let mut c = RawRtsp::connect(server.addr);
    let (rtp, _rtcp) = udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let t = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    let r = c.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", &t), ("Authorization", &alice)],
    );
    assert_eq!(r.status, 200);
    let sid = r.session().unwrap();
    assert_eq!(
        c.request(
            "PLAY",
            &url,
            &[("Session", &sid), ("Authorization", &alice)]
        )
        .status,
        200
    );

    // Swap the user and add a file, then SIGHUP.
    write_config("bob");
    std::fs::copy(media.join("one.mp4"), media.join("two.mp4")).unwrap();
    assert_eq!(send_signal(server.pid(), libc::SIGHUP), 0);
    let mut d = RawRtsp::connect(server.addr);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = d.request("DESCRIBE", &server.url("two"), &[("Authorization", &bob)]);
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reload never took effect (last status {})",
            r.status
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        d.request("DESCRIBE", &server.url("one"), &[("Authorization", &alice)])
            .status,
        401
    );

    // The viewer admitted before the reload still receives media without a gap.
    rtp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut last: Option<u16> = None;
    let mut got = 0;
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        if let Ok(n) = rtp.recv(&mut buf) {
            let seq = common::parse_rtp(&buf[..n]).unwrap().seq;
            if let Some(l) = last {
                assert_eq!(seq, l.wrapping_add(1));
            }
            last = Some(seq);
            got += 1;
        }
    }
    assert!(got > 10, "viewer kept streaming through the reload");
    assert!(server.is_running());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_rotates_the_admin_token_and_play_token_settings() {
    let dir = std::env::temp_dir().join(format!("shardcast-hup-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("shardcast.toml");
    let write_config = |admin: &str, secret: &str, require: bool| {
        std::fs::write(
            &config,
            format!(
                "admin-token = \"{admin}\"\ntoken-secret = \"{secret}\"\nrequire-token = {require}\n"
            ),
        )
        .unwrap();
    };
    let (old_admin, new_admin) = ("first-admin-token-0123", "second-admin-token-4567");
    write_config(old_admin, "first-token-secret-0123", false);
    let server = common::Server::start(&["--config", config.to_str().unwrap()]);
    let http = server.http_addr();
    let issue = |admin: &str| {
        common::http_request(
            http,
            "POST",
            "/api/v1/play",
            &[
                ("Authorization", &format!("Bearer {admin}")),
                ("Content-Type", "application/json"),
            ],
            br#"{"stream":"sample"}"#,
        )
    };
    let r = issue(old_admin);
    assert_eq!(r.status, 200);
    let old_url = r.json()["url"].as_str().unwrap().to_owned();
    // Tokens are not required yet: a plain URL plays.
    let mut c = RawRtsp::connect(server.addr);
    assert_eq!(
        c.request("DESCRIBE", &server.url("sample"), &[]).status,
        200
    );

    write_config(new_admin, "second-token-secret-4567", true);
    assert_eq!(send_signal(server.pid(), libc::SIGHUP), 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while issue(new_admin).status != 200 {
        assert!(Instant::now() < deadline, "reload never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(issue(old_admin).status, 401, "the old admin token is gone");
    let new_url = issue(new_admin).json()["url"].as_str().unwrap().to_owned();
    assert_eq!(
        c.request("DESCRIBE", &server.url("sample"), &[]).status,
        401,
        "require-token now applies"
    );
    assert_eq!(
        c.request("DESCRIBE", &old_url, &[]).status,
        403,
        "tokens signed with the old secret no longer verify"
    );
    assert_eq!(c.request("DESCRIBE", &new_url, &[]).status, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}
