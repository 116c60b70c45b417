//! The ICE-lite agent against Chromium-shaped checks built by aioice (an independent ICE
//! implementation; fixture `tests/fixtures/webrtc/aioice-0.13_stun.txt`, the script that made
//! it is in its comment), with a fake clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::webrtc::stun::tests::aioice;
use crate::webrtc::stun::{attr, Class, MessageWriter, BINDING};

const LOCAL_UFRAG: &str = "Sh4rd0UF";
const LOCAL_PWD: &str = "shardcastLocalPassword+/09";
const REMOTE_UFRAG: &str = "bRws";

fn agent(now: Instant) -> IceLite {
    IceLite::new(
        LOCAL_UFRAG,
        LOCAL_PWD,
        REMOTE_UFRAG,
        "browserPasswordNotUsedByLite",
        now,
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Feeds a fixture request to the agent; returns the outcome and the response bytes.
fn feed(
    ice: &mut IceLite,
    now: Instant,
    from: SocketAddr,
    raw: &[u8],
) -> (Result<BindingOutcome, IceError>, Vec<u8>) {
    let msg = StunMessage::parse(raw).unwrap();
    let mut out = [0u8; 256];
    let r = ice.handle_binding(now, from, &msg, &mut out);
    let len = match r {
        Ok(BindingOutcome::Success { len, .. } | BindingOutcome::Error { len, .. }) => len,
        Err(_) => 0,
    };
    (r, out[..len].to_vec())
}

/// A Chromium-shaped check with USE-CANDIDATE nominates its source, and the answer is the
/// exact success response aioice builds for that address (IPv4 and IPv6).
#[test]
fn chromium_shaped_request_nominates() {
    for (from, expected) in [
        ("192.168.7.23:54321", "success_ipv4"),
        ("[2001:db8::7:23]:54321", "success_ipv6"),
    ] {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        let (r, resp) = feed(&mut ice, t0, addr(from), &aioice("request_nominate"));
        assert!(matches!(
            r,
            Ok(BindingOutcome::Success {
                selected: true,
                changed: true,
                ..
            })
        ));
        assert_eq!(resp, aioice(expected), "response to {from}");
        assert_eq!(ice.selected(), Some(addr(from)));
    }
}

/// A dual-stack socket reports an IPv4 browser as ::ffff:a.b.c.d: the answer names the IPv4
/// address (aioice's IPv4 response), while the selected address stays the socket's form.
#[test]
fn ipv4_mapped_source_is_reported_as_ipv4() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let from = addr("[::ffff:192.168.7.23]:54321");
    let (r, resp) = feed(&mut ice, t0, from, &aioice("request_nominate"));
    assert!(matches!(
        r,
        Ok(BindingOutcome::Success { selected: true, .. })
    ));
    assert_eq!(resp, aioice("success_ipv4"));
    assert_eq!(ice.selected(), Some(from));
}

#[test]
fn check_without_use_candidate_answers_but_does_not_nominate() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let (r, resp) = feed(
        &mut ice,
        t0,
        addr("192.168.7.23:54321"),
        &aioice("request_check"),
    );
    assert_eq!(
        r,
        Ok(BindingOutcome::Success {
            len: resp.len(),
            selected: false,
            changed: false
        })
    );
    assert_eq!(resp, aioice("success_ipv4"));
    assert_eq!(ice.selected(), None);
}

/// Wrong password: 401 without MESSAGE-INTEGRITY, byte-identical to aioice's, no nomination.
#[test]
fn wrong_password_gets_401_and_no_nomination() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let (r, resp) = feed(
        &mut ice,
        t0,
        addr("192.168.7.23:54321"),
        &aioice("request_wrong_password"),
    );
    assert!(matches!(
        r,
        Ok(BindingOutcome::Error {
            code: ErrorCode::Unauthenticated,
            ..
        })
    ));
    assert_eq!(resp, aioice("error_401"));
    assert_eq!(ice.selected(), None);
}

#[test]
fn wrong_ufrag_is_dropped() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let (r, resp) = feed(
        &mut ice,
        t0,
        addr("192.168.7.23:54321"),
        &aioice("request_wrong_ufrag"),
    );
    assert_eq!(r, Err(IceError::UnknownUsername));
    assert!(resp.is_empty());
    assert_eq!(ice.selected(), None);
}

/// A peer that claims to be controlled gets 487 (with integrity, as aioice writes it): a
/// lite agent is always controlled (RFC 8445 §7.3.1.1).
#[test]
fn controlled_peer_gets_487() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let (r, resp) = feed(
        &mut ice,
        t0,
        addr("192.168.7.23:54321"),
        &aioice("request_controlled"),
    );
    assert!(matches!(
        r,
        Ok(BindingOutcome::Error {
            code: ErrorCode::RoleConflict,
            ..
        })
    ));
    assert_eq!(resp, aioice("error_487"));
    assert_eq!(ice.selected(), None);
}

/// The RFC 5769 sample request names ICE-CONTROLLED too: 487 once its password is ours.
#[test]
fn rfc5769_request_gets_role_conflict() {
    let t0 = Instant::now();
    let mut ice = IceLite::new("evtj", "VOkJxbRl1RmTxUk/WvJxBt", "h6vY", "", t0);
    let raw = crate::webrtc::stun::tests::rfc5769_request();
    let (r, resp) = feed(&mut ice, t0, addr("192.0.2.1:32853"), &raw);
    assert!(matches!(
        r,
        Ok(BindingOutcome::Error {
            code: ErrorCode::RoleConflict,
            ..
        })
    ));
    let m = StunMessage::parse(&resp).unwrap();
    assert_eq!(m.error_code(), Some(487));
    assert_eq!(m.transaction_id(), &raw[8..20]);
}

#[test]
fn consent_expires_30_s_after_last_check_from_selected() {
    let t0 = Instant::now();
    let s = |secs| t0 + Duration::from_secs(secs);
    let mut ice = agent(t0);
    let a = addr("192.168.7.23:54321");
    feed(&mut ice, s(1), a, &aioice("request_nominate"))
        .0
        .unwrap();
    assert!(!ice.consent_expired(s(30)));
    assert!(ice.consent_expired(s(31)));
    // A consent check (no USE-CANDIDATE) from the selected address refreshes it.
    let (r, _) = feed(&mut ice, s(20), a, &aioice("request_check"));
    assert!(matches!(
        r,
        Ok(BindingOutcome::Success {
            selected: true,
            changed: false,
            ..
        })
    ));
    assert!(!ice.consent_expired(s(49)));
    assert!(ice.consent_expired(s(50)));
    // A failed check does not.
    feed(&mut ice, s(45), a, &aioice("request_wrong_password"))
        .0
        .unwrap();
    assert!(ice.consent_expired(s(50)));
}

#[test]
fn unnominated_session_expires_after_setup_timeout() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    // Checks without nomination keep nothing alive.
    feed(
        &mut ice,
        t0 + Duration::from_secs(10),
        addr("192.168.7.23:54321"),
        &aioice("request_check"),
    )
    .0
    .unwrap();
    assert!(!ice.consent_expired(t0 + Duration::from_secs(29)));
    assert!(ice.consent_expired(t0 + Duration::from_secs(30)));
}

/// The browser moves (new network): a nomination from another address replaces the selected
/// one; checks from the old address are still answered but keep no consent.
#[test]
fn new_nomination_moves_the_selected_address() {
    let t0 = Instant::now();
    let s = |secs| t0 + Duration::from_secs(secs);
    let mut ice = agent(t0);
    let old = addr("192.168.7.23:54321");
    let new = addr("[2001:db8::7:23]:54321");
    feed(&mut ice, s(0), old, &aioice("request_nominate"))
        .0
        .unwrap();
    let (r, resp) = feed(&mut ice, s(10), new, &aioice("request_nominate"));
    assert!(matches!(
        r,
        Ok(BindingOutcome::Success {
            selected: true,
            changed: true,
            ..
        })
    ));
    assert_eq!(resp, aioice("success_ipv6"));
    assert_eq!(ice.selected(), Some(new));
    let (r, _) = feed(&mut ice, s(35), old, &aioice("request_check"));
    assert!(matches!(
        r,
        Ok(BindingOutcome::Success {
            selected: false,
            changed: false,
            ..
        })
    ));
    assert!(ice.consent_expired(s(40)));
    // Renominating the same address is no change.
    let (r, _) = feed(&mut ice, s(39), new, &aioice("request_nominate"));
    assert!(matches!(
        r,
        Ok(BindingOutcome::Success { changed: false, .. })
    ));
    assert!(!ice.consent_expired(s(40)));
}

/// Builds a request with our writer for the cases aioice's fixture does not cover.
fn build(attrs: &[(u16, &[u8])], pwd: Option<&str>, fingerprint: bool) -> Vec<u8> {
    let mut out = [0u8; 256];
    let tid = [7u8; 12];
    let mut w = MessageWriter::new(&mut out, BINDING, Class::Request, &tid).unwrap();
    for (ty, v) in attrs {
        w.attribute(*ty, v).unwrap();
    }
    if let Some(pwd) = pwd {
        w.message_integrity(&IntegrityKey::new(pwd.as_bytes()))
            .unwrap();
    }
    let n = if fingerprint {
        w.fingerprint().unwrap()
    } else {
        w.finish()
    };
    out[..n].to_vec()
}

const USER: &[u8] = b"Sh4rd0UF:bRws";
const CONTROLLING: (u16, &[u8]) = (attr::ICE_CONTROLLING, &[1, 2, 3, 4, 5, 6, 7, 8]);
const PRIORITY: (u16, &[u8]) = (attr::PRIORITY, &[0x6e, 0, 0x1e, 0xff]);

/// Each bad request maps to one answer (RFC 8489 §9.1.3, §6.3.1; RFC 8445 §7.3), and none
/// nominates.
#[test]
fn bad_requests_map_to_answers() {
    let from = addr("10.0.0.1:5000");
    let u = (attr::USERNAME, USER);
    let uc = (attr::USE_CANDIDATE, &b""[..]);
    type Expected = Result<Option<ErrorCode>, IceError>;
    let cases: [(&str, Vec<u8>, Expected); 7] = [
        (
            "no fingerprint",
            build(&[u, CONTROLLING, PRIORITY, uc], Some(LOCAL_PWD), false),
            Err(IceError::Fingerprint(StunError::NoFingerprint)),
        ),
        (
            "no integrity",
            build(&[u, CONTROLLING, PRIORITY, uc], None, true),
            Ok(Some(ErrorCode::BadRequest)),
        ),
        (
            "no username",
            build(&[CONTROLLING, PRIORITY, uc], Some(LOCAL_PWD), true),
            Ok(Some(ErrorCode::BadRequest)),
        ),
        (
            "unknown comprehension-required attribute",
            build(
                &[u, CONTROLLING, PRIORITY, uc, (0x0042, b"?")],
                Some(LOCAL_PWD),
                true,
            ),
            Ok(Some(ErrorCode::UnknownAttribute)),
        ),
        (
            "no role",
            build(&[u, PRIORITY, uc], Some(LOCAL_PWD), true),
            Ok(Some(ErrorCode::BadRequest)),
        ),
        (
            "no priority",
            build(&[u, CONTROLLING, uc], Some(LOCAL_PWD), true),
            Ok(Some(ErrorCode::BadRequest)),
        ),
        (
            "valid",
            build(&[u, CONTROLLING, PRIORITY, uc], Some(LOCAL_PWD), true),
            Ok(None),
        ),
    ];
    for (what, raw, expected) in cases {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        let (r, resp) = feed(&mut ice, t0, from, &raw);
        let got = r.map(|o| match o {
            BindingOutcome::Error { code, .. } => Some(code),
            BindingOutcome::Success { .. } => None,
        });
        assert_eq!(got, expected, "{what}");
        assert_eq!(ice.selected().is_some(), expected == Ok(None), "{what}");
        if let Ok(code) = expected {
            let m = StunMessage::parse(&resp).unwrap();
            assert_eq!(m.error_code(), code.map(ErrorCode::code), "{what}");
            assert_eq!(m.verify_fingerprint(), Ok(()), "{what}");
            // Integrity only on answers to authenticated requests (RFC 8489 §9.1.3).
            let authenticated = !matches!(what, "no integrity" | "no username");
            assert_eq!(m.integrity_offset().is_some(), authenticated, "{what}");
        }
    }
}

#[test]
fn responses_and_indications_are_dropped() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let (r, _) = feed(&mut ice, t0, addr("10.0.0.1:5000"), &aioice("success_ipv4"));
    assert_eq!(r, Err(IceError::NotBindingRequest));
}

#[test]
fn small_output_buffer_is_an_error_not_a_panic() {
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let raw = aioice("request_nominate");
    let msg = StunMessage::parse(&raw).unwrap();
    let mut out = [0u8; 40];
    assert!(matches!(
        ice.handle_binding(t0, addr("10.0.0.1:5000"), &msg, &mut out),
        Err(IceError::Write(StunError::BufferTooSmall { .. }))
    ));
}

#[test]
fn local_ufrag_comes_from_username() {
    let raw = aioice("request_nominate");
    let m = StunMessage::parse(&raw).unwrap();
    assert_eq!(IceLite::local_ufrag_of(&m), Some(&b"Sh4rd0UF"[..]));
    let raw = build(&[(attr::USERNAME, b"nocolon")], None, true);
    assert_eq!(
        IceLite::local_ufrag_of(&StunMessage::parse(&raw).unwrap()),
        None
    );
    let raw = build(&[], None, true);
    assert_eq!(
        IceLite::local_ufrag_of(&StunMessage::parse(&raw).unwrap()),
        None
    );
}

/// Lengths and alphabet of RFC 8839 §5.4, each byte one character, all 64 reachable.
#[test]
fn generated_credentials_are_ice_chars_of_the_right_length() {
    let mut random = [0u8; CREDENTIAL_RANDOM_BYTES];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let (ufrag, pwd) = generate_credentials(&random);
    assert_eq!((ufrag.len(), pwd.len()), (UFRAG_CHARS, PWD_CHARS));
    assert!(ufrag.len() >= 4 && pwd.len() >= 22);
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    assert!(ufrag.chars().chain(pwd.chars()).all(ice_char));
    assert_eq!(&ufrag[..3], "AHO");
    let mut seen = std::collections::HashSet::new();
    for b in 0..=255u8 {
        let (u, _) = generate_credentials(&[b; CREDENTIAL_RANDOM_BYTES]);
        seen.insert(u);
    }
    assert_eq!(seen.len(), 64);
    let mut other = random;
    other[0] ^= 1;
    assert_ne!(generate_credentials(&other).0, ufrag);
}

/// Our credentials work end to end: a check signed with a generated password nominates.
#[test]
fn generated_credentials_authenticate_checks() {
    let (ufrag, pwd) = generate_credentials(&[0x5a; CREDENTIAL_RANDOM_BYTES]);
    let t0 = Instant::now();
    let mut ice = IceLite::new(&ufrag, &pwd, "rmt1", "", t0);
    let user = format!("{ufrag}:rmt1");
    let raw = build(
        &[
            (attr::USERNAME, user.as_bytes()),
            CONTROLLING,
            PRIORITY,
            (attr::USE_CANDIDATE, b""),
        ],
        Some(&pwd),
        true,
    );
    let (r, _) = feed(&mut ice, t0, addr("10.0.0.1:5000"), &raw);
    assert!(matches!(
        r,
        Ok(BindingOutcome::Success { selected: true, .. })
    ));
}

/// The per-packet path allocates nothing: parsing a check, verifying it and writing the
/// answer (success and error), 10,000 times on a live agent (counted by the crate's test
/// allocator, `sys::count_alloc`).
#[test]
fn steady_state_checks_allocate_nothing() {
    use crate::sys::count_alloc::allocations_on_this_thread;
    let t0 = Instant::now();
    let mut ice = agent(t0);
    let good = aioice("request_nominate");
    let bad = aioice("request_wrong_password");
    let from = addr("192.168.7.23:54321");
    let mut out = [0u8; 256];
    let before = allocations_on_this_thread();
    for i in 0..10_000u64 {
        let raw = if i % 2 == 0 { &good[..] } else { &bad[..] };
        let msg = StunMessage::parse(raw).unwrap();
        let now = t0 + Duration::from_millis(i);
        assert!(ice.handle_binding(now, from, &msg, &mut out).is_ok());
        assert!(!ice.consent_expired(now));
    }
    assert_eq!(allocations_on_this_thread() - before, 0);
}
