//! RTSPS through the core: `rtsps` URLs and no UDP in the clear by default; with
//! `rtsps-srtp` on, DESCRIBE offers MIKEY keys (RFC 4567 §3.1) and `RTP/SAVP` SETUPs use them.

use super::*;

/// RTSPS: Content-Base says `rtsps` and our TLS address (even with a public address, which
/// names the plain port); UDP SETUP is 461 (the media would leave in the clear), and an
/// alternative over TCP in the same header is taken.
#[test]
fn rtsps_callers_get_rtsps_urls_and_no_udp() {
    let mut core = core_with(ConfigOverlay {
        public_address: Some("cams.example.com".into()),
        ..ConfigOverlay::default()
    });
    let mut w = World::new();
    let secure = Caller {
        secure: true,
        ..caller(VIEWER, 1)
    };
    let a = run(
        &mut core,
        &mut w,
        &request("DESCRIBE", "rtsps://h/sample", &[]),
        &secure,
    );
    assert_eq!(
        header(&a, "Content-Base"),
        Some(format!("rtsps://{LOCAL}/sample/").as_str())
    );
    let udp = "RTP/AVP;unicast;client_port=40000-40001";
    let a = run(
        &mut core,
        &mut w,
        &request("SETUP", "rtsps://h/sample/trackID=0", &[("Transport", udp)]),
        &secure,
    );
    assert_eq!(status(&a), 461);
    let both = format!("{udp},RTP/AVP/TCP;unicast;interleaved=0-1");
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            "rtsps://h/sample/trackID=0",
            &[("Transport", &both)],
        ),
        &secure,
    );
    assert_eq!(status(&a), 200);
    assert!(header(&a, "Transport").unwrap().contains("interleaved=0-1"));
}

/// A core with RTSPS and `rtsps-srtp` on.
fn srtp_core() -> SessionCore {
    core_with(ConfigOverlay {
        rtsps_listen: Some("127.0.0.1:8322".parse().unwrap()),
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        rtsps_srtp: Some(true),
        ..ConfigOverlay::default()
    })
}

/// Without `rtsps-srtp` (the default) a secure DESCRIBE offers plain `RTP/AVP` and no keys,
/// and an `RTP/SAVP` SETUP is 461 even after it.
#[test]
fn rtsps_offers_no_srtp_unless_configured() {
    let mut core = core();
    let mut w = World::new();
    let secure = Caller {
        secure: true,
        ..caller(VIEWER, 1)
    };
    let a = run(
        &mut core,
        &mut w,
        &request("DESCRIBE", "rtsps://h/sample", &[]),
        &secure,
    );
    let sdp = String::from_utf8(a.response.body.clone()).unwrap();
    assert!(
        sdp.contains(" RTP/AVP ") && !sdp.contains("SAVP") && !sdp.contains("key-mgmt"),
        "{sdp}"
    );
    let s = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            "rtsps://h/sample/trackID=0",
            &[("Transport", "RTP/SAVP/TCP;unicast;interleaved=0-1")],
        ),
        &secure,
    );
    assert_eq!(status(&s), 461);
}

/// SRTP over RTSPS (MIKEY, `rtsps-srtp` on): a secure DESCRIBE offers `RTP/SAVP` with a key
/// per media section, a plain one none; `RTP/SAVP` SETUPs need that offer on the same
/// connection (else 461), take the client's `KeyMgmt` (unreadable → 463) and echo the
/// profile, with the SSRC the MIKEY map named.
#[test]
fn rtsps_describe_offers_mikey_keys_and_savp_setups_use_them() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut core = srtp_core();
    let mut w = World::new();
    let secure = Caller {
        secure: true,
        ..caller(VIEWER, 1)
    };
    let plain = run(
        &mut core,
        &mut w,
        &request("DESCRIBE", &url(""), &[]),
        &caller(VIEWER, 2),
    );
    let plain_sdp = String::from_utf8(plain.response.body.clone()).unwrap();
    assert!(
        !plain_sdp.contains("SAVP") && !plain_sdp.contains("key-mgmt"),
        "{plain_sdp}"
    );
    let savp = "RTP/SAVP;unicast;client_port=40000-40001";
    let setup = |t: &str, keymgmt: Option<&str>| {
        let mut h = vec![("Transport", t)];
        if let Some(k) = keymgmt {
            h.push(("KeyMgmt", k));
        }
        request("SETUP", "rtsps://h/sample/trackID=0", &h)
    };
    // No DESCRIBE on this connection yet: no keys.
    assert_eq!(
        status(&run(&mut core, &mut w, &setup(savp, None), &secure)),
        461
    );
    let a = run(
        &mut core,
        &mut w,
        &request("DESCRIBE", "rtsps://h/sample", &[]),
        &secure,
    );
    let sdp = String::from_utf8(a.response.body.clone()).unwrap();
    let sections: Vec<&str> = sdp.split("m=").skip(1).collect();
    assert_eq!(sections.len(), 2, "{sdp}");
    let mut keys = Vec::new();
    for section in &sections {
        assert!(section.contains(" RTP/SAVP "), "{section}");
        let line = section
            .lines()
            .find_map(|l| l.strip_prefix("a=key-mgmt:mikey "))
            .expect("a=key-mgmt per media section");
        keys.push(crate::rtsp::mikey::parse(&b64.decode(line).unwrap()).unwrap());
    }
    assert_ne!(keys[0].key, keys[1].key, "a key per media section");
    // Plain RTSP on another connection gets nothing from that offer.
    assert_eq!(
        status(&run(
            &mut core,
            &mut w,
            &setup(savp, None),
            &caller(VIEWER, 2)
        )),
        461
    );
    // Unreadable KeyMgmt: 463.
    for bad in [
        "prot=mikey; data=\"AAAA\"",
        "prot=mikey; data=\"***\"",
        "prot=mikey",
    ] {
        let a = run(&mut core, &mut w, &setup(savp, Some(bad)), &secure);
        assert_eq!(status(&a), 463, "{bad}");
        // RTSP 2.0 numbers it 466 (RFC 7826 §17.4.26).
        let mut v2 = setup(savp, Some(bad));
        v2.version = Version::V2_0;
        let a = run(&mut core, &mut w, &v2, &secure);
        assert_eq!(status(&a), 466, "{bad}");
    }
    let client = crate::rtsp::mikey::build_psk_init(&crate::rtsp::mikey::PskInit {
        csb_id: 1,
        sessions: &[],
        ntp_utc: 0,
        rand: [3; 16],
        key: [4; 16],
        salt: [5; 14],
    });
    let keymgmt = format!("prot=mikey; uri=\"x\"; data=\"{}\"", b64.encode(client));
    let a = run(&mut core, &mut w, &setup(savp, Some(&keymgmt)), &secure);
    assert_eq!(status(&a), 200);
    let answer = header(&a, "Transport").unwrap();
    assert!(
        answer.starts_with("RTP/SAVP;unicast;client_port=40000-40001"),
        "{answer}"
    );
    assert!(
        answer.ends_with(&format!("ssrc={:08X}", keys[0].sessions[0].ssrc)),
        "{answer} names the SSRC of the MIKEY map"
    );
    // Interleaved SRTP on the same connection, a new session.
    let tcp = request(
        "SETUP",
        "rtsps://h/sample/trackID=1",
        &[("Transport", "RTP/SAVP/TCP;unicast;interleaved=2-3")],
    );
    let mut fresh = Caller {
        secure: true,
        ..caller(VIEWER, 3)
    };
    assert_eq!(
        status(&run(&mut core, &mut w, &tcp, &fresh)),
        461,
        "no offer on conn 3"
    );
    fresh.conn = 1;
    let a = run(&mut core, &mut w, &tcp, &fresh);
    assert_eq!(status(&a), 200);
    assert!(header(&a, "Transport")
        .unwrap()
        .starts_with("RTP/SAVP/TCP;unicast;interleaved=2-3"));
    // The connection's offer ends with it.
    let _ = core.close_connection(&secure, w.now);
    assert_eq!(
        status(&run(&mut core, &mut w, &setup(savp, None), &secure)),
        461
    );
}
