//! `DtlsServer` against dimpl's own client on a fake clock (the independent peer, OpenSSL, is
//! in `tests/webrtc_dtls.rs`): retransmission, fingerprint refusal, framing checks.

use super::*;

#[test]
fn framing_check_refuses_truncated_and_foreign_records() {
    let mut rec = vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3];
    assert_eq!(check_record_framing(&rec), Ok(()));
    rec.extend_from_slice(&[21, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 5, 0, 2, 9, 9]);
    assert_eq!(check_record_framing(&rec), Ok(()));
    assert!(check_record_framing(&rec[..rec.len() - 1]).is_err());
    assert!(check_record_framing(&rec[..5]).is_err());
    assert!(check_record_framing(&[]).is_err());
    assert!(check_record_framing(&[24, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(check_record_framing(&[22, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(check_record_framing(&[22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]).is_err());
}

/// A dimpl DTLS 1.2 client in the same process, presenting `cert`.
fn dimpl_client(cert: &DtlsCertificate, now: Instant) -> dimpl::Dtls {
    let config = dimpl::Config::builder()
        .with_crypto_provider(dimpl::crypto::rust_crypto::default_provider())
        .build()
        .unwrap();
    let mut client = dimpl::Dtls::new_12(Arc::new(config), cert.inner.clone(), now);
    client.set_active(true);
    client.handle_timeout(now).unwrap();
    client
}

/// Everything the client has to send now.
fn client_output(client: &mut dimpl::Dtls) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::new();
    loop {
        match client.poll_output(&mut buf) {
            dimpl::Output::Packet(p) => out.push(p.to_vec()),
            dimpl::Output::Timeout(_) => return out,
            _ => {}
        }
    }
}

fn server_output(server: &mut DtlsServer) -> Vec<Vec<u8>> {
    let mut buf = [0u8; DTLS_MTU];
    let mut out = Vec::new();
    while let Some(n) = server.poll_transmit(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Exchanges datagrams until neither side has anything to send.
fn pump(client: &mut dimpl::Dtls, server: &mut DtlsServer, now: Instant) -> Vec<Vec<u8>> {
    let mut from_client = Vec::new();
    for _ in 0..16 {
        let c = client_output(client);
        for d in &c {
            server.handle_datagram(now, d).unwrap();
        }
        from_client.extend(c.iter().cloned());
        let s = server_output(server);
        for d in &s {
            client.handle_packet(d).unwrap();
        }
        if c.is_empty() && s.is_empty() {
            break;
        }
    }
    from_client
}

fn pair(now: Instant) -> (dimpl::Dtls, DtlsServer) {
    let client_cert = DtlsCertificate::generate().unwrap();
    let server_cert = Arc::new(DtlsCertificate::generate().unwrap());
    let fp = Fingerprint::parse(client_cert.fingerprint()).unwrap();
    let server = DtlsServer::new(server_cert, fp, now).unwrap();
    (dimpl_client(&client_cert, now), server)
}

/// A lost server flight is sent again at `poll_timeout` (RFC 6347 §4.2.4), not before, and the
/// handshake then completes; replayed and well-framed garbage records afterwards change nothing.
#[test]
fn lost_server_flight_is_retransmitted_at_its_timeout() {
    let t0 = Instant::now();
    let (mut client, mut server) = pair(t0);
    // ClientHello → HelloVerifyRequest (stateless cookie, RFC 6347 §4.2.1).
    for d in client_output(&mut client) {
        server.handle_datagram(t0, &d).unwrap();
    }
    let hvr = server_output(&mut server);
    assert_eq!(hvr.len(), 1);
    assert_eq!(hvr[0][13], 3, "handshake type hello_verify_request");
    client.handle_packet(&hvr[0]).unwrap();
    // ClientHello with the cookie → the server's flight, which we lose.
    for d in client_output(&mut client) {
        server.handle_datagram(t0, &d).unwrap();
    }
    let lost = server_output(&mut server);
    assert!(!lost.is_empty());
    let due = server.poll_timeout().unwrap();
    assert!(due > t0);
    server
        .handle_timeout(due - std::time::Duration::from_millis(1))
        .unwrap();
    assert!(server_output(&mut server).is_empty(), "resent early");
    server.handle_timeout(due).unwrap();
    let resent = server_output(&mut server);
    assert_eq!(resent.len(), lost.len());
    for d in &resent {
        client.handle_packet(d).unwrap();
    }
    let last_flight = pump(&mut client, &mut server, due);
    assert!(server.is_connected());
    let Some(DtlsEvent::Connected(keys)) = server.poll_event() else {
        panic!("no Connected event");
    };
    // dimpl's client offers all three profiles; dimpl's server prefers AES-256-GCM.
    assert_eq!(keys.profile_id, SRTP_AEAD_AES_256_GCM);
    assert_eq!(keys.material().len(), 88);
    assert_eq!(server.poll_event(), None);
    for d in &last_flight {
        assert!(server.handle_datagram(due, d).is_ok());
    }
    let mut fake = vec![23, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 99, 0, 40];
    fake.extend_from_slice(&[0x5A; 40]);
    assert!(server.handle_datagram(due, &fake).is_ok());
    assert!(server.is_connected());
    assert_eq!(server.srtp_keys(), Some(&keys));
}

#[test]
fn client_certificate_with_other_fingerprint_fails_before_our_finished() {
    let t0 = Instant::now();
    let client_cert = DtlsCertificate::generate().unwrap();
    let stranger = DtlsCertificate::generate().unwrap();
    let fp = Fingerprint::parse(stranger.fingerprint()).unwrap();
    let mut server =
        DtlsServer::new(Arc::new(DtlsCertificate::generate().unwrap()), fp, t0).unwrap();
    let mut client = dimpl_client(&client_cert, t0);
    let mut failed = None;
    'outer: for _ in 0..8 {
        for d in client_output(&mut client) {
            if let Err(e) = server.handle_datagram(t0, &d) {
                failed = Some(e);
                break 'outer;
            }
        }
        for d in server_output(&mut server) {
            client.handle_packet(&d).unwrap();
        }
    }
    assert_eq!(failed, Some(DtlsError::FingerprintMismatch));
    assert!(
        server_output(&mut server).is_empty(),
        "Finished must not leave"
    );
    assert!(server.is_closed() && !server.is_connected());
    assert_eq!(server.handle_timeout(t0), Err(DtlsError::Closed));
    assert_eq!(server.poll_event(), None);
}

#[test]
fn fuzz_entry_replays_seeds_and_pseudo_random_input() {
    fuzz_dtls(&[]);
    fuzz_dtls(include_bytes!(
        "../../../fuzz/seeds/dtls/openssl-3.0_client_hello.bin"
    ));
    let mut x: u32 = 0x1234_5678;
    for len in [1usize, 13, 14, 100, 300, 1500] {
        let data: Vec<u8> = (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Mostly DTLS-looking bytes so the framing check lets some through.
                if i % 13 == 0 {
                    22
                } else {
                    (x >> 8) as u8
                }
            })
            .collect();
        fuzz_dtls(&data);
    }
}

/// A flood of ClientHellos before the handshake never grows the outgoing queue past its bound
/// (dimpl 0.9 leaves 2 datagrams queued for 1000 hellos); a flood of handshake fragments that
/// never complete a message is bounded by dimpl's receive queue (30 records): the session fails
/// with `ReceiveQueueFull` instead of growing.
#[test]
fn floods_before_the_handshake_are_bounded() {
    let t0 = Instant::now();
    let (_, mut server) = pair(t0);
    let hello = include_bytes!("../../../fuzz/seeds/dtls/openssl-3.0_client_hello.bin");
    for seq in 0..1000u16 {
        // New record sequence numbers, so that replay detection does not drop them.
        let mut hello = hello.to_vec();
        hello[9..11].copy_from_slice(&seq.to_be_bytes());
        server.handle_datagram(t0, &hello).unwrap();
    }
    let queued = server.out_queue.len();
    assert!((1..=MAX_QUEUED_DATAGRAMS).contains(&queued));
    assert!(!server.is_closed());

    let (_, mut server) = pair(t0);
    let mut result = Ok(());
    for seq in 0..1000u16 {
        // Fragments of a 1000-byte "Certificate" (type 11) at message_seq 5: never complete.
        let mut rec = vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0];
        rec.extend_from_slice(&seq.to_be_bytes());
        rec.extend_from_slice(&[0, 16, 11, 0, 3, 0xE8, 0, 5, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        rec[21] = (seq % 200) as u8;
        result = server.handle_datagram(t0, &rec);
        if result.is_err() {
            break;
        }
    }
    assert!(server.out_queue.len() <= MAX_QUEUED_DATAGRAMS);
    if let Err(e) = result {
        assert!(e.is_fatal() && server.is_closed(), "{e}");
    }
}
