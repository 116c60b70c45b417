//! Bad input against WebRTC while a real browser watches (issue 17, "Bad input"): headless
//! Chromium plays the sample over WHEP while the test throws at the server what an attacker
//! or a broken client would — datagrams of every RFC 7983 class from an address no ICE check
//! nominated (STUN, DTLS garbage, forged SRTP/SRTCP), ICE checks with a wrong password for a
//! real session, and a flood of `POST /whep` past the admission limit — and then Chromium's
//! own `getStats()` must show the viewer untouched (every frame, no packet lost, sound
//! advancing), the server must have counted what it dropped and refused (`/metrics`), written
//! at most one log line for the attacked session, and answered the flood with `503` and
//! `Retry-After` without creating sessions past the limit.
//!
//! How it fails: a frame or packet lost by the viewer, a counter that did not move (the
//! garbage reached something it should not have), more than one log line for one session's
//! refusals, a POST past the limit that was accepted, or the server gone.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::whep::{check_playback, open_harness, request, start_playing};
use common::Server;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The sample's frame rate (25/1).
const SAMPLE_FPS: f64 = 25.0;

/// Chromium 148's recvonly offer (video + audio), for POSTs made outside the browser.
const OFFER: &str = include_str!("fixtures/webrtc/chromium-148_whep_offer.sdp");

/// A STUN binding request (RFC 8489 §5) naming `username`, with a `MESSAGE-INTEGRITY` keyed
/// by `password` (§14.5: HMAC-SHA1 over the message up to the attribute, with the length
/// field counting it) and `USE-CANDIDATE` (RFC 8445 §7.1.2) — written here byte by byte.
fn binding_request(username: &str, password: &str, txid: [u8; 12]) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut attr = |t: u16, v: &[u8]| {
        attrs.extend_from_slice(&t.to_be_bytes());
        attrs.extend_from_slice(&(v.len() as u16).to_be_bytes());
        attrs.extend_from_slice(v);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
    };
    attr(0x0006, username.as_bytes()); // USERNAME
    attr(0x0025, &[]); // USE-CANDIDATE
    attr(0x802A, &7u64.to_be_bytes()); // ICE-CONTROLLING
    let mut msg = Vec::new();
    msg.extend_from_slice(&0x0001u16.to_be_bytes());
    msg.extend_from_slice(&((attrs.len() + 24) as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    msg.extend_from_slice(&txid);
    msg.extend_from_slice(&attrs);
    let mut mac = Hmac::<Sha1>::new_from_slice(password.as_bytes()).unwrap();
    mac.update(&msg);
    let tag = mac.finalize().into_bytes();
    msg.extend_from_slice(&0x0008u16.to_be_bytes());
    msg.extend_from_slice(&20u16.to_be_bytes());
    msg.extend_from_slice(&tag);
    msg
}

/// A counter's value in `/metrics`.
fn metric(server: &Server, name: &str) -> u64 {
    let text = server.http_get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[test]
fn a_watching_browser_is_untouched_by_garbage_forged_checks_and_a_post_flood() {
    let server = Server::start_logged(&["--shards", "1", "--max-viewers", "4"]);
    let port = server.webrtc[0];
    let http = server.http_addr();

    // A session whose ICE username we know (POSTed outside the browser): the target of
    // checks with a wrong password. It is never keyed.
    let target = request(
        http,
        "POST",
        "/whep/sample",
        Some("application/sdp"),
        OFFER.as_bytes(),
    );
    let target = if target.status == 503 {
        // The sample's Opus rendition is being made for its first viewer: retry.
        std::thread::sleep(Duration::from_secs(2));
        request(
            http,
            "POST",
            "/whep/sample",
            Some("application/sdp"),
            OFFER.as_bytes(),
        )
    } else {
        target
    };
    assert_eq!(target.status, 201, "{}", target.text());
    let answer = target.text();
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned();
    let remote_ufrag = OFFER
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned();

    let mut page = open_harness(&server);
    start_playing(&mut page, "/whep/sample");
    let dropped_before = metric(&server, "shardcast_webrtc_dropped_total");
    let refused_before = metric(&server, "shardcast_webrtc_refused_total");

    let attack = std::thread::spawn(move || {
        let evil = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sent = 0u64;
        for round in 0..40u8 {
            // RFC 7983 §7 classes from an address no check nominated: STUN that is not a
            // request we know, DTLS records, SRTP and SRTCP with made-up contents.
            for first in [0u8, 1, 22, 23, 63, 128, 144, 191, 200, 255] {
                let mut d = vec![first; 120];
                d[1] = if first >= 128 && round % 2 == 0 {
                    200
                } else {
                    round
                };
                evil.send_to(&d, port).unwrap();
                sent += 1;
            }
            // Checks naming the real session with a wrong password.
            let check = binding_request(
                &format!("{ufrag}:{remote_ufrag}"),
                "not-the-password-of-this-session",
                [round; 12],
            );
            evil.send_to(&check, port).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    });
    // The flood: POSTs past --max-viewers 4 (the browser and the target hold two).
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = request(
            http,
            "POST",
            "/whep/sample",
            Some("application/sdp"),
            OFFER.as_bytes(),
        );
        if r.status == 503 {
            assert!(
                r.header("retry-after").is_some(),
                "503 without Retry-After: {}",
                r.text()
            );
        }
        statuses.push(r.status);
    }
    let accepted = statuses.iter().filter(|&&s| s == 201).count();
    assert_eq!(
        accepted, 2,
        "with --max-viewers 4 and two sessions open, exactly two more: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 503),
        "{statuses:?}"
    );

    let s = check_playback(&mut page, "sample under attack", SAMPLE_FPS, 6.0);
    let garbage = attack.join().unwrap();
    assert!(s["video"].is_object(), "{s}");

    let dropped = metric(&server, "shardcast_webrtc_dropped_total") - dropped_before;
    let refused = metric(&server, "shardcast_webrtc_refused_total") - refused_before;
    eprintln!("sent {garbage} garbage datagrams: {dropped} dropped, {refused} refused; flood: {statuses:?}");
    assert!(
        dropped >= garbage,
        "{garbage} datagrams from an unknown address, {dropped} counted dropped"
    );
    assert!(
        refused >= 40,
        "40 checks with a wrong password, {refused} refused"
    );
    let lines: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("ICE check"))
        .collect();
    assert!(
        lines.len() <= 1,
        "one log line per session for its refused checks, got:\n{}",
        lines.join("\n")
    );
    // The server still answers and still serves.
    assert_eq!(server.http_get("/api/v1/streams").status, 200);
}
