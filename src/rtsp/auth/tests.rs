//! Unit tests of RTSP authentication: the RFC 7616 §3.9.1 example responses, Digest (MD5,
//! SHA-256) and Basic accepted and refused, replay/tamper/expiry, access rules, the
//! per-address and per-user-name backoff, the Digest refusals (algorithm downgrade, duplicated
//! parameters, userhash) and the parameter parser.

use super::*;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn auth(basic: bool, rules: Vec<AccessRule>) -> Authenticator {
    let users = [
        (
            "alice".to_owned(),
            UserSecret::from_password("alice", "secret"),
        ),
        (
            "bob".to_owned(),
            UserSecret::from_password("bob", "hunter2"),
        ),
    ]
    .into();
    Authenticator::new(users, rules, basic).unwrap()
}

fn nonce_of(challenge: &str) -> String {
    parse_params(challenge.trim_start_matches("Digest "))
        .into_iter()
        .find(|(k, _)| k == "nonce")
        .unwrap()
        .1
}

/// The nonce of the challenge for `alg`.
fn nonce_for(a: &Authenticator, alg: Algorithm) -> String {
    let challenges = a.challenges(false);
    let c = challenges
        .iter()
        .find(|c| c.contains(&format!("algorithm={},", alg.name())))
        .unwrap();
    nonce_of(c)
}

/// A client's Authorization header, computed independently of `authenticate`.
fn digest(
    alg: Algorithm,
    user: &str,
    pass: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: u32,
) -> String {
    let ha1 = alg.hash_hex(&format!("{user}:{REALM}:{pass}"));
    let ha2 = alg.hash_hex(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let resp = alg.hash_hex(&format!("{ha1}:{nonce}:{nc}:abcdef:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         algorithm={}, qop=auth, nc={nc}, cnonce=\"abcdef\", response=\"{resp}\"",
        alg.name()
    )
}

const URI: &str = "rtsp://127.0.0.1:8554/news";

#[test]
fn rfc_7616_section_3_9_1_example_responses() {
    // The RFC's worked example, composed the way `authenticate` composes it.
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    for (alg, want) in [
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let ha1 = alg.hash_hex("Mufasa:http-auth@example.org:Circle of Life");
        let ha2 = alg.hash_hex("GET:/dir/index.html");
        let got = alg.hash_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        assert_eq!(got, want, "{alg:?}");
    }
}

#[test]
fn digest_md5_and_sha256_accept_right_and_refuse_wrong_passwords() {
    let now = Instant::now();
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let mut a = auth(false, vec![]);
        let nonce = nonce_for(&a, alg);
        let good = digest(alg, "alice", "secret", "DESCRIBE", URI, &nonce, 1);
        assert_eq!(
            a.check("DESCRIBE", URI, "news", Some(&good), PEER, now)
                .verdict,
            Verdict::Allowed(Some("alice".into()))
        );
        let bad = digest(alg, "alice", "wrong", "DESCRIBE", URI, &nonce, 2);
        assert!(matches!(
            a.check("DESCRIBE", URI, "news", Some(&bad), PEER, now)
                .verdict,
            Verdict::Challenge { stale: false, .. }
        ));
    }
}

#[test]
fn replayed_tampered_expired_and_misdirected_digests_are_refused() {
    let now = Instant::now();
    let mut a = auth(false, vec![]);
    let nonce = nonce_of(&a.challenges(false)[1]);
    let first = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &nonce, 1);
    assert!(matches!(
        a.check("PLAY", URI, "news", Some(&first), PEER, now)
            .verdict,
        Verdict::Allowed(_)
    ));
    // Same nc again: replay.
    assert!(matches!(
        a.check("PLAY", URI, "news", Some(&first), PEER, now)
            .verdict,
        Verdict::Challenge {
            why: "replayed nonce count",
            ..
        }
    ));
    // Growing nc is fine.
    let second = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &nonce, 2);
    assert!(matches!(
        a.check("PLAY", URI, "news", Some(&second), PEER, now)
            .verdict,
        Verdict::Allowed(_)
    ));
    // A nonce with one hex digit changed.
    let mut forged = nonce.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let tampered = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &forged, 1);
    assert!(matches!(
        a.check("PLAY", URI, "news", Some(&tampered), PEER, now)
            .verdict,
        Verdict::Challenge {
            why: "unknown or altered nonce",
            ..
        }
    ));
    // Digest for another URI.
    let elsewhere = digest(
        Algorithm::Md5,
        "alice",
        "secret",
        "PLAY",
        "rtsp://h/other",
        &nonce,
        3,
    );
    assert!(matches!(
        a.check("PLAY", URI, "news", Some(&elsewhere), PEER, now)
            .verdict,
        Verdict::Challenge { .. }
    ));
    // The same valid digest after the nonce lifetime: stale, so the client retries at once.
    let later = SystemTime::now() + NONCE_LIFETIME + Duration::from_secs(5);
    let fresh = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &nonce, 9);
    assert!(matches!(
        a.check_at("PLAY", URI, "news", Some(&fresh), PEER, now, later)
            .verdict,
        Verdict::Challenge { stale: true, .. }
    ));
}

#[test]
fn basic_only_when_enabled() {
    let now = Instant::now();
    let creds = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    );
    assert!(matches!(
        auth(false, vec![])
            .check("DESCRIBE", URI, "news", Some(&creds), PEER, now)
            .verdict,
        Verdict::Challenge { .. }
    ));
    assert_eq!(
        auth(true, vec![])
            .check("DESCRIBE", URI, "news", Some(&creds), PEER, now)
            .verdict,
        Verdict::Allowed(Some("alice".into()))
    );
    assert!(auth(true, vec![])
        .challenges(false)
        .iter()
        .any(|c| c.starts_with("Basic ")));
}

#[test]
fn rules_open_streams_and_restrict_users() {
    let rules = vec![
        AccessRule {
            streams: "public/*".into(),
            public: true,
            users: vec![],
            ..Default::default()
        },
        AccessRule {
            streams: "news".into(),
            public: false,
            users: vec!["alice".into()],
            ..Default::default()
        },
    ];
    let now = Instant::now();
    let mut a = auth(false, rules);
    assert_eq!(
        a.check("DESCRIBE", URI, "public/clip", None, PEER, now)
            .verdict,
        Verdict::Allowed(None)
    );
    let nonce = nonce_of(&a.challenges(false)[0]);
    let bob = digest(
        Algorithm::Sha256,
        "bob",
        "hunter2",
        "DESCRIBE",
        URI,
        &nonce,
        1,
    );
    assert_eq!(
        a.check("DESCRIBE", URI, "news/trackID=0", Some(&bob), PEER, now)
            .verdict,
        Verdict::Forbidden("bob".into())
    );
    let alice = digest(
        Algorithm::Sha256,
        "alice",
        "secret",
        "DESCRIBE",
        URI,
        &nonce,
        2,
    );
    assert!(matches!(
        a.check("DESCRIBE", URI, "news", Some(&alice), PEER, now)
            .verdict,
        Verdict::Allowed(_)
    ));
    // No rule for "other": any authenticated user.
    let bob2 = digest(
        Algorithm::Sha256,
        "bob",
        "hunter2",
        "DESCRIBE",
        URI,
        &nonce,
        3,
    );
    assert!(matches!(
        a.check("DESCRIBE", URI, "other", Some(&bob2), PEER, now)
            .verdict,
        Verdict::Allowed(_)
    ));
}

#[test]
fn parallel_failures_from_one_address_are_queued_one_at_a_time() {
    // Nine wrong guesses arriving at once (as over nine connections): five free, then
    // each answered one backoff after the previous one's slot.
    let now = Instant::now();
    let mut a = auth(false, vec![]);
    let nonce = nonce_for(&a, Algorithm::Md5);
    let mut waits = Vec::new();
    for nc in 1..=9 {
        let bad = digest(Algorithm::Md5, "alice", "nope", "DESCRIBE", URI, &nonce, nc);
        let c = a.check("DESCRIBE", URI, "news", Some(&bad), PEER, now);
        assert!(matches!(c.verdict, Verdict::Challenge { stale: false, .. }));
        waits.push(c.wait.as_millis());
    }
    assert_eq!(waits, [0, 0, 0, 0, 0, 200, 600, 1400, 3000]);
    assert_eq!(a.failed_attempts, 9);
    assert_eq!(a.throttled_attempts(), 4);
    // A missing Authorization (the normal first request) is neither an attempt nor
    // queued.
    let c = a.check("DESCRIBE", URI, "news", None, PEER, now);
    assert!(c.wait.is_zero() && matches!(c.verdict, Verdict::Challenge { .. }));
    assert_eq!(a.failed_attempts, 9);
    // Once the queue is MAX_QUEUE long, attempts are refused at once, unverified.
    let more = digest(Algorithm::Md5, "alice", "nope", "DESCRIBE", URI, &nonce, 99);
    let refused = (0..10)
        .map(|_| a.check("DESCRIBE", URI, "news", Some(&more), PEER, now))
        .find(|c| matches!(c.verdict, Verdict::Throttled(_)))
        .unwrap();
    assert!(refused.wait.is_zero());
    assert!(matches!(refused.verdict, Verdict::Throttled(r)
        if r.status == StatusCode::ServiceUnavailable && r.retry_after_secs >= 5));
}

#[test]
fn a_right_guess_is_held_as_long_as_a_wrong_one() {
    let now = Instant::now();
    let mut waits = Vec::new();
    for pass in ["secret", "wrong"] {
        let mut a = auth(false, vec![]);
        let nonce = nonce_for(&a, Algorithm::Sha256);
        for nc in 1..=6 {
            let bad = digest(Algorithm::Sha256, "alice", "x", "PLAY", URI, &nonce, nc);
            a.check("PLAY", URI, "news", Some(&bad), PEER, now);
        }
        let guess = digest(Algorithm::Sha256, "alice", pass, "PLAY", URI, &nonce, 7);
        let c = a.check("PLAY", URI, "news", Some(&guess), PEER, now);
        assert_eq!(
            matches!(c.verdict, Verdict::Allowed(_)),
            pass == "secret",
            "{c:?}"
        );
        waits.push(c.wait);
    }
    assert!(
        waits[0] > Duration::ZERO && waits[0] == waits[1],
        "{waits:?}"
    );
}

#[test]
fn basic_guesses_are_keyed_on_their_user_name_too() {
    let now = Instant::now();
    let mut a = auth(true, vec![]);
    let basic = |creds: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };
    for i in 0..5u8 {
        let peer = IpAddr::from([10, 0, 0, i]);
        a.check("DESCRIBE", URI, "news", Some(&basic("bob:x")), peer, now);
    }
    // A sixth address, first failure of its own, but bob's fifth is behind it.
    let c = a.check(
        "DESCRIBE",
        URI,
        "news",
        Some(&basic("bob:y")),
        IpAddr::from([10, 0, 0, 9]),
        now,
    );
    assert_eq!(c.wait, Duration::from_millis(200));
    assert_eq!(claimed_user(&basic("bob:x:y")).as_deref(), Some("bob"));
}

#[test]
fn a_response_with_another_algorithm_than_the_nonce_is_refused() {
    // RFC 7616 §3.4: a nonce from the SHA-256 challenge answered with MD5 (a downgrade),
    // and the reverse.
    let now = Instant::now();
    for (challenge, response) in [
        (Algorithm::Sha256, Algorithm::Md5),
        (Algorithm::Md5, Algorithm::Sha256),
    ] {
        let mut a = auth(false, vec![]);
        let nonce = nonce_for(&a, challenge);
        let mixed = digest(response, "alice", "secret", "DESCRIBE", URI, &nonce, 1);
        assert_eq!(
            a.check("DESCRIBE", URI, "news", Some(&mixed), PEER, now)
                .verdict,
            Verdict::Challenge {
                stale: false,
                why: "digest algorithm differs from the nonce's challenge"
            },
            "{challenge:?} nonce, {response:?} response"
        );
        let matching = digest(challenge, "alice", "secret", "DESCRIBE", URI, &nonce, 2);
        assert_eq!(
            a.check("DESCRIBE", URI, "news", Some(&matching), PEER, now)
                .verdict,
            Verdict::Allowed(Some("alice".into()))
        );
    }
    // No `algorithm=` means MD5 (RFC 7616 §3.4): only with the MD5 challenge's nonce.
    let mut a = auth(false, vec![]);
    let nonce = nonce_for(&a, Algorithm::Sha256);
    let bare = digest(
        Algorithm::Md5,
        "alice",
        "secret",
        "DESCRIBE",
        URI,
        &nonce,
        1,
    )
    .replace("algorithm=MD5, ", "");
    assert!(matches!(
        a.check("DESCRIBE", URI, "news", Some(&bare), PEER, now)
            .verdict,
        Verdict::Challenge { .. }
    ));
}

#[test]
fn a_parameter_given_twice_is_refused() {
    let now = Instant::now();
    let mut a = auth(false, vec![]);
    let nonce = nonce_for(&a, Algorithm::Md5);
    let good = digest(
        Algorithm::Md5,
        "alice",
        "secret",
        "DESCRIBE",
        URI,
        &nonce,
        1,
    );
    for extra in [
        ", response=\"00000000000000000000000000000000\"",
        ", Response=\"00000000000000000000000000000000\"",
        ", username=\"bob\"",
        ", algorithm=SHA-256",
    ] {
        let twice = format!("{good}{extra}");
        assert_eq!(
            a.check("DESCRIBE", URI, "news", Some(&twice), PEER, now)
                .verdict,
            Verdict::Challenge {
                stale: false,
                why: "digest with a parameter given twice"
            },
            "{extra}"
        );
    }
    // The same request without the duplicate is fine.
    assert!(matches!(
        a.check("DESCRIBE", URI, "news", Some(&good), PEER, now)
            .verdict,
        Verdict::Allowed(_)
    ));
}

#[test]
fn userhash_is_refused() {
    // RFC 7616 §3.4.4: never offered here.
    let now = Instant::now();
    let mut a = auth(false, vec![]);
    let nonce = nonce_for(&a, Algorithm::Sha256);
    let good = digest(Algorithm::Sha256, "alice", "secret", "PLAY", URI, &nonce, 1);
    assert_eq!(
        a.check(
            "PLAY",
            URI,
            "news",
            Some(&format!("{good}, userhash=true")),
            PEER,
            now
        )
        .verdict,
        Verdict::Challenge {
            stale: false,
            why: "digest userhash is not supported"
        }
    );
    // `userhash=false` says what is true anyway.
    let good = digest(Algorithm::Sha256, "alice", "secret", "PLAY", URI, &nonce, 2);
    assert!(matches!(
        a.check(
            "PLAY",
            URI,
            "news",
            Some(&format!("{good}, userhash=false")),
            PEER,
            now
        )
        .verdict,
        Verdict::Allowed(_)
    ));
}

#[test]
fn param_parser_handles_quotes_escapes_and_commas() {
    let p = parse_params(r#"username="a\"b", realm="x, y", nc=00000001, qop=auth"#);
    assert_eq!(p[0], ("username".into(), "a\"b".into()));
    assert_eq!(p[1], ("realm".into(), "x, y".into()));
    assert_eq!(p[2], ("nc".into(), "00000001".into()));
    assert_eq!(p[3], ("qop".into(), "auth".into()));
}

#[test]
fn publishing_needs_its_own_permission_and_open_patterns_grant_it() {
    let rules = vec![
        AccessRule {
            streams: "live/cam1".into(),
            publish: vec!["enc".into()],
            publish_key: Some("s3cret".into()),
            ..Default::default()
        },
        AccessRule {
            streams: "*".into(),
            public: true,
            ..Default::default()
        },
    ];
    // A public rule lets anyone play, never publish.
    assert_eq!(publish_needs(&[], &rules, "other"), PublishNeeds::Refused);
    assert_eq!(
        publish_needs(&[], &rules, "live/cam1"),
        PublishNeeds::Grant {
            users: vec!["enc".into()],
            key: Some("s3cret".into())
        }
    );
    let open = vec!["live/*".to_owned()];
    assert_eq!(
        publish_needs(&open, &rules, "live/cam2"),
        PublishNeeds::Nothing
    );
    assert_eq!(publish_needs(&open, &rules, "vod/x"), PublishNeeds::Refused);
    assert!(key_matches("s3cret", "s3cret"));
    assert!(!key_matches("s3cret", "s3creT"));
    assert!(!key_matches("s3cret", "s3cre"));
}
