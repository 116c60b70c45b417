//! The whole transport of one session against independent peers: aioice's Chromium-shaped
//! ICE check (fixture), dimpl's DTLS client, and webrtc-srtp keyed from that client's own
//! exported material — so the keys we derive, the direction we send with and the packets we
//! protect are checked by code that is not ours.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

use super::*;
use crate::webrtc::dtls::DTLS_MTU;
use crate::webrtc::stun::tests::aioice;

/// The credentials aioice's fixture requests were built with (`ice/tests.rs`).
fn setup(client_cert: &DtlsCertificate) -> PeerSetup {
    PeerSetup {
        local_ufrag: "Sh4rd0UF".into(),
        local_pwd: "shardcastLocalPassword+/09".into(),
        remote_ufrag: "bRws".into(),
        remote_pwd: "browserPasswordNotUsedByLite".into(),
        remote_fingerprint: Fingerprint::parse(client_cert.fingerprint()).unwrap(),
        certificate: Arc::new(DtlsCertificate::generate().unwrap()),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A dimpl DTLS 1.2 client presenting `cert` (the browser's role: DTLS client, RFC 8842).
fn client(cert: &DtlsCertificate, now: Instant) -> dimpl::Dtls {
    let config = dimpl::Config::builder()
        .with_crypto_provider(dimpl::crypto::rust_crypto::default_provider())
        .build()
        .unwrap();
    let mut c = dimpl::Dtls::new_12(Arc::new(config), cert.inner.clone(), now);
    c.set_active(true);
    c.handle_timeout(now).unwrap();
    c
}

/// Runs the handshake between `client` at `from` and `peer`; returns the client's keying
/// material and every event the peer reported.
fn handshake(
    client: &mut dimpl::Dtls,
    peer: &mut PeerTransport,
    from: SocketAddr,
    now: Instant,
) -> (Vec<u8>, Vec<PeerEvent>) {
    let mut keys = None;
    let mut events = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut out = [0u8; DTLS_MTU];
    for _ in 0..16 {
        let mut sent = 0;
        loop {
            match client.poll_output(&mut buf) {
                dimpl::Output::Packet(p) => {
                    let p = p.to_vec();
                    events.extend(peer.on_dtls(now, from, &p).unwrap());
                    sent += 1;
                }
                dimpl::Output::KeyingMaterial(m, _) => keys = Some(m.to_vec()),
                dimpl::Output::Timeout(_) => break,
                _ => {}
            }
        }
        let mut answered = 0;
        while let Some(n) = peer.poll_transmit(&mut out) {
            client.handle_packet(&out[..n]).unwrap();
            answered += 1;
        }
        if sent == 0 && answered == 0 {
            break;
        }
    }
    (keys.expect("the client exported SRTP keys"), events)
}

fn their_profile(p: SrtpProfile) -> TheirProfile {
    match p {
        SrtpProfile::AeadAes128Gcm => TheirProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => TheirProfile::AeadAes256Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => TheirProfile::Aes128CmHmacSha1_80,
    }
}

/// The client's contexts from its own exported material (RFC 5764 §4.2 layout): it receives
/// with the server's key and salt and sends with its own.
fn client_contexts(material: &[u8], profile: SrtpProfile) -> (TheirContext, TheirContext) {
    let (k, s) = (profile.master_key_len(), profile.master_salt_len());
    let (client_key, server_key) = (&material[..k], &material[k..2 * k]);
    let (client_salt, server_salt) = (&material[2 * k..2 * k + s], &material[2 * k + s..]);
    let receive = TheirContext::new(server_key, server_salt, their_profile(profile), None, None);
    let send = TheirContext::new(client_key, client_salt, their_profile(profile), None, None);
    (receive.unwrap(), send.unwrap())
}

#[test]
fn a_nominated_browser_gets_keyed_srtp_both_ways() {
    let t0 = Instant::now();
    let browser_cert = DtlsCertificate::generate().unwrap();
    let mut peer = PeerTransport::new(setup(&browser_cert), t0).unwrap();
    let browser = addr("192.168.7.23:54321");

    // Before any check, DTLS from the browser's address is refused.
    let mut early = client(&browser_cert, t0);
    let mut buf = vec![0u8; 2048];
    let hello = match early.poll_output(&mut buf) {
        dimpl::Output::Packet(p) => p.to_vec(),
        other => panic!("a ClientHello first, got {other:?}"),
    };
    assert!(matches!(
        peer.on_dtls(t0, browser, &hello),
        Err(PeerError::NotSelected(_))
    ));

    // aioice's check with USE-CANDIDATE nominates the address; the answer is sent back.
    let request = aioice("request_nominate");
    let msg = StunMessage::parse(&request).unwrap();
    let mut out = [0u8; 256];
    let (len, event) = peer.on_stun(t0, browser, &msg, &mut out).unwrap();
    assert!(len > 20);
    assert_eq!(event, Some(PeerEvent::Selected(browser)));
    assert_eq!(peer.selected(), Some(browser));

    // DTLS from the nominated address keys SRTP.
    let mut dtls_client = client(&browser_cert, t0);
    let (material, events) = handshake(&mut dtls_client, &mut peer, browser, t0);
    let [PeerEvent::Keyed(profile)] = events[..] else {
        panic!("one Keyed event, got {events:?}")
    };
    // dimpl prefers AES-256-GCM when offered, as browsers do (RFC 7714 §14.2).
    assert_eq!(profile, SrtpProfile::AeadAes256Gcm);
    assert_eq!(material.len(), profile.keying_material_len());
    assert!(peer.is_keyed());

    // Our SRTP, gathered from a header and two payload slices, opens with the browser's keys.
    let (mut their_receive, mut their_send) = client_contexts(&material, profile);
    let header = [0x80, 102, 0x12, 0x34, 0, 0, 0x10, 0, 0xCA, 0xFE, 0xBA, 0xBE];
    let body: Vec<u8> = (0..1100u32).map(|i| (i * 13) as u8).collect();
    let mut wire = vec![0u8; 1500];
    let n = peer
        .sender()
        .unwrap()
        .protect_rtp(&header, &[&[0x7c, 0x85], &body], &mut wire)
        .unwrap();
    let plain = their_receive.decrypt_rtp(&wire[..n]).unwrap();
    assert_eq!(plain[..12], header[..]);
    assert_eq!(plain[12..14], [0x7c, 0x85]);
    assert_eq!(plain[14..], body[..]);

    // The browser's SRTCP (a receiver report) opens with ours, once; a replay is refused.
    let rr = crate::wire::rtcp::test_packets::rr(
        crate::wire::rtp::Ssrc(0x1111),
        &[(crate::wire::rtp::Ssrc(0xCAFE_BABE), 0, 7, 0, 0)],
    );
    let srtcp = their_send.encrypt_rtcp(&rr).unwrap().to_vec();
    let mut copy = srtcp.clone();
    let n = peer.on_srtcp(browser, &mut copy).unwrap();
    assert_eq!(copy[..n], rr[..]);
    let mut replay = srtcp.clone();
    assert!(matches!(
        peer.on_srtcp(browser, &mut replay),
        Err(PeerError::Srtp(SrtpError::Replay { .. }))
    ));
    // The same packet from another address is refused before any decryption.
    let mut elsewhere = srtcp;
    assert!(matches!(
        peer.on_srtcp(addr("10.0.0.9:4000"), &mut elsewhere),
        Err(PeerError::NotSelected(_))
    ));
    assert!(is_rtcp(&rr) && !is_rtcp(&header));
}

#[test]
fn srtcp_before_keys_and_a_silent_browser_end_nothing_but_themselves() {
    let t0 = Instant::now();
    let browser_cert = DtlsCertificate::generate().unwrap();
    let mut peer = PeerTransport::new(setup(&browser_cert), t0).unwrap();
    let browser = addr("192.168.7.23:54321");
    let request = aioice("request_nominate");
    let msg = StunMessage::parse(&request).unwrap();
    let mut out = [0u8; 256];
    peer.on_stun(t0, browser, &msg, &mut out).unwrap();
    let mut rtcp = [
        0x80u8, 201, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert!(matches!(
        peer.on_srtcp(browser, &mut rtcp),
        Err(PeerError::NotKeyed)
    ));
    assert!(peer.sender().is_none());
    // Garbage DTLS from the browser is refused without ending the session.
    let garbage = peer.on_dtls(t0, browser, &[22, 0xfe, 0xfd, 1, 2, 3]);
    assert!(matches!(&garbage, Err(e) if !e.is_fatal()), "{garbage:?}");
    assert!(!peer.is_over(t0 + Duration::from_secs(29)));
    // No consent check for 30 s (RFC 7675 §5.1): the session is over.
    assert!(peer.is_over(t0 + Duration::from_secs(31)));
}
