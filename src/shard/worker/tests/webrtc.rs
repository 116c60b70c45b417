//! A WebRTC viewer against a real worker on loopback, the test playing the browser with
//! independent implementations: aioice's ICE checks (fixture), dimpl's DTLS client, and
//! webrtc-srtp keyed from that client's exported material decrypting what the shard sends.

use std::time::{Duration, Instant};

use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

use super::*;
use crate::shard::WebRtcStart;
use crate::webrtc::cert::{DtlsCertificate, Fingerprint};
use crate::webrtc::peer::PeerSetup;
use crate::webrtc::srtp::SrtpProfile;
use crate::webrtc::stun::tests::aioice;
use crate::wire::rtcp::{write_picture_loss, PT_SR};

/// Our SSRC for the video track.
const VIDEO_SSRC: u32 = 0xCAFE_BABE;
/// The payload type the answer negotiated (not the 96 RTSP would use).
const VIDEO_PT: u8 = 102;
/// The browser's SSRC in its RTCP.
const BROWSER_SSRC: u32 = 0x1111_2222;

/// A worker with a WebRTC port, driven by hand.
struct RtcRig {
    w: Worker,
    events: Receiver<ShardEvent>,
    counters: Arc<ShardCounters>,
    port: SocketAddr,
    media: Arc<MediaFile>,
}

fn rtc_rig() -> RtcRig {
    let rtp = bind();
    let rtcp = bind();
    let (_tx, commands) = crossbeam_channel::bounded(1);
    let (events_tx, events) = crossbeam_channel::bounded(16);
    let counters = Arc::new(ShardCounters::default());
    let mut links = Links::new(
        commands,
        events_tx,
        Arc::new(crate::poll::Waker::new().unwrap()),
    )
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let port = socket.local_addr().unwrap();
    links.webrtc = Some(socket);
    let w = Worker::new(
        0,
        rtp,
        rtcp,
        links,
        counters.clone(),
        SendConfig::default().resolve(),
        true,
    );
    let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
    RtcRig {
        w,
        events,
        counters,
        port,
        media,
    }
}

/// The credentials aioice's fixture requests were built with (`webrtc/ice/tests.rs`).
fn peer_setup(browser: &DtlsCertificate) -> PeerSetup {
    PeerSetup {
        local_ufrag: "Sh4rd0UF".into(),
        local_pwd: "shardcastLocalPassword+/09".into(),
        remote_ufrag: "bRws".into(),
        remote_pwd: "browserPasswordNotUsedByLite".into(),
        remote_fingerprint: Fingerprint::parse(browser.fingerprint()).unwrap(),
        certificate: Arc::new(DtlsCertificate::generate().unwrap()),
    }
}

impl RtcRig {
    /// Session `id`: the sample's H.264 track to a WebRTC viewer.
    fn start(&mut self, id: SessionId, browser: &DtlsCertificate) {
        let setup = SessionSetup {
            id,
            media: self.media.clone(),
            tracks: vec![TrackSetup {
                track_index: 0,
                payload_type: VIDEO_PT,
                ssrc: Ssrc(VIDEO_SSRC),
                initial_seq: SeqNum(40_000),
                initial_rtptime: RtpTimestamp(0),
                dest: TrackDest::WebRtc,
                source: None,
                srtp: None,
            }],
            sink: None,
            activity: Arc::new(Activity::default()),
            payload_budget_bytes: 1100,
            cname: "test".into(),
            live: None,
            log: None,
        };
        self.w
            .apply(ShardCommand::StartWebRtc(Box::new(WebRtcStart {
                setup,
                peer: peer_setup(browser),
            })));
    }

    /// Lets the worker read what arrived (loopback delivers at once; a few tries for safety).
    fn drain(&mut self) {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(5));
            self.w.drain_webrtc(Instant::now());
        }
    }
}

/// A browser's socket with a short read timeout.
fn browser_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// Every datagram waiting on `s`.
fn received(s: &UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = s.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// The datagrams that arrive on `s` until `deadline`.
fn received_until(s: &UdpSocket, deadline: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        s.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = s.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
    }
}

/// dimpl's DTLS 1.2 client presenting `cert`, as a browser is (RFC 8842: the answerer that
/// says `setup:passive` is the server).
fn dtls_client(cert: &DtlsCertificate) -> dimpl::Dtls {
    let now = Instant::now();
    let config = dimpl::Config::builder()
        .with_crypto_provider(dimpl::crypto::rust_crypto::default_provider())
        .build()
        .unwrap();
    let mut c = dimpl::Dtls::new_12(Arc::new(config), cert.inner.clone(), now);
    c.set_active(true);
    c.handle_timeout(now).unwrap();
    c
}

/// Runs the DTLS handshake through the worker's port; returns the client's SRTP keying
/// material.
fn handshake(rig: &mut RtcRig, client: &mut dimpl::Dtls, browser: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..20 {
        loop {
            match client.poll_output(&mut buf) {
                dimpl::Output::Packet(p) => {
                    browser.send_to(p, rig.port).unwrap();
                }
                dimpl::Output::KeyingMaterial(m, _) => return m.to_vec(),
                dimpl::Output::Timeout(_) => break,
                _ => {}
            }
        }
        rig.drain();
        for d in received(browser) {
            client.handle_packet(&d).unwrap();
        }
    }
    panic!("no keys after 20 rounds");
}

fn their_profile(p: SrtpProfile) -> TheirProfile {
    match p {
        SrtpProfile::AeadAes128Gcm => TheirProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => TheirProfile::AeadAes256Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => TheirProfile::Aes128CmHmacSha1_80,
    }
}

/// The browser's SRTP contexts from its exported material (RFC 5764 §4.2): it receives with
/// the server's key and salt, sends with its own.
fn browser_contexts(material: &[u8], profile: SrtpProfile) -> (TheirContext, TheirContext) {
    let (k, s) = (profile.master_key_len(), profile.master_salt_len());
    let (client_key, server_key) = (&material[..k], &material[k..2 * k]);
    let (client_salt, server_salt) = (&material[2 * k..2 * k + s], &material[2 * k + s..]);
    let receive = TheirContext::new(server_key, server_salt, their_profile(profile), None, None);
    let send = TheirContext::new(client_key, client_salt, their_profile(profile), None, None);
    (receive.unwrap(), send.unwrap())
}

/// What the browser decrypted: RTP (payload type, SSRC, sequence number, payload) and RTCP
/// packet types.
#[derive(Default)]
struct Decrypted {
    rtp: Vec<(u8, u32, u16, Vec<u8>)>,
    /// The RTP timestamps of `rtp`, in order.
    timestamps: Vec<u32>,
    rtcp_types: Vec<u8>,
}

fn decrypt_all(ctx: &mut TheirContext, datagrams: Vec<Vec<u8>>, into: &mut Decrypted) {
    for d in datagrams {
        if crate::webrtc::peer::is_rtcp(&d) {
            let plain = ctx.decrypt_rtcp(&d).expect("SRTCP the browser can open");
            let packets = parse_compound(&plain).expect("valid RTCP inside");
            for p in packets {
                into.rtcp_types.push(match p {
                    RtcpPacket::SenderReport { .. } => PT_SR,
                    RtcpPacket::Bye { .. } => 203,
                    _ => 0,
                });
            }
        } else {
            let plain = ctx.decrypt_rtp(&d).expect("SRTP the browser can open");
            let pt = plain[1] & 0x7f;
            let seq = u16::from_be_bytes([plain[2], plain[3]]);
            let ssrc = u32::from_be_bytes([plain[8], plain[9], plain[10], plain[11]]);
            into.rtp.push((pt, ssrc, seq, plain[12..].to_vec()));
            into.timestamps
                .push(u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]));
        }
    }
}

/// Runs the worker's send passes for `how_long` of real time, collecting what the browser
/// receives.
fn play_for(rig: &mut RtcRig, how_long: Duration, browser: &UdpSocket) -> Vec<Vec<u8>> {
    let end = Instant::now() + how_long;
    let mut got = Vec::new();
    let mut allocs = 0;
    let mut first = true;
    while Instant::now() < end {
        let before = allocations_on_this_thread();
        rig.w.send_due(Instant::now());
        rig.w.drain_webrtc(Instant::now());
        if !first {
            allocs += allocations_on_this_thread() - before;
        }
        first = false;
        std::thread::sleep(Duration::from_millis(5));
        got.extend(received(browser));
    }
    // The send path (protection into the slab, batched sends, sender reports, the NACK
    // history) and the port's drain allocate nothing once running.
    assert_eq!(allocs, 0, "allocations in the worker's passes");
    got
}

/// The whole path of a WHEP viewer on a shard: refused checks create nothing and answer
/// nothing; an aioice check with USE-CANDIDATE and the right password nominates the
/// browser's address; dimpl's handshake from there keys SRTP and starts play; webrtc-srtp
/// opens the H.264 packets (negotiated payload type and SSRC, consecutive sequence numbers,
/// FU-A/single NAL payloads) and the sender report; the browser's SRTCP (an RR and a
/// reduced-size PLI) reaches the statistics and rejoins at a keyframe; an address that never
/// passed a check receives nothing; Teardown sends BYE and stops media.
#[test]
fn a_whep_viewer_gets_srtp_h264_after_ice_and_dtls_and_nothing_after_teardown() {
    let mut rig = rtc_rig();
    let browser_cert = DtlsCertificate::generate().unwrap();
    let id: SessionId = 0x5EB;
    rig.start(id, &browser_cert);
    assert_eq!(rig.w.load(), 1);
    let browser = browser_socket();
    let intruder = browser_socket();

    // DTLS and SRTCP-looking bytes from an address no check nominated: dropped, unanswered.
    let mut early = dtls_client(&browser_cert);
    let mut buf = vec![0u8; 2048];
    let dimpl::Output::Packet(hello) = early.poll_output(&mut buf) else {
        panic!("a ClientHello first");
    };
    intruder.send_to(hello, rig.port).unwrap();
    intruder
        .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], rig.port)
        .unwrap();
    // A check with the wrong password (answered 401 Unauthenticated, RFC 8489 §9.1.3), and
    // one naming another session's ufrag (unanswered): no nomination.
    intruder
        .send_to(&aioice("request_wrong_password"), rig.port)
        .unwrap();
    intruder
        .send_to(&aioice("request_wrong_ufrag"), rig.port)
        .unwrap();
    rig.drain();
    let answers = received(&intruder);
    assert_eq!(answers.len(), 1, "only the wrong password is answered");
    assert_eq!(answers[0][..2], [0x01, 0x11], "a Binding error response");
    assert_eq!(answers[0][20..22], [0x00, 0x09], "ERROR-CODE first");
    assert_eq!(answers[0][26..28], [4, 1], "401");
    assert_eq!(get(&rig.counters.webrtc_dropped), 4);
    assert_eq!(get(&rig.counters.webrtc_refused), 1, "the wrong password");
    assert!(rig.w.rtc_peers().is_empty(), "no address nominated");

    // The right check from the browser: answered (a Binding success with its transaction id,
    // RFC 8489 §6.3), and its address nominated.
    let request = aioice("request_nominate");
    browser.send_to(&request, rig.port).unwrap();
    rig.drain();
    let answers = received(&browser);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0][..2], [0x01, 0x01], "Binding success response");
    assert_eq!(answers[0][8..20], request[8..20], "same transaction id");
    assert_eq!(rig.w.rtc_peers(), vec![browser.local_addr().unwrap()]);

    // The handshake from the nominated address keys SRTP and starts play.
    let mut client = dtls_client(&browser_cert);
    let material = handshake(&mut rig, &mut client, &browser);
    let profile = rig.w.rtc_profile(id).expect("keyed");
    assert_eq!(material.len(), profile.keying_material_len());
    let (mut receive, mut send) = browser_contexts(&material, profile);

    let mut got = Decrypted::default();
    let datagrams = play_for(&mut rig, Duration::from_millis(700), &browser);
    // The network loses packet 40,005 (the RTP header is in clear: RFC 3711 §3.1).
    let lost = |d: &Vec<u8>| !crate::webrtc::peer::is_rtcp(d) && d[2..4] == 40_005u16.to_be_bytes();
    let (lost_packet, datagrams): (Vec<_>, Vec<_>) = datagrams.into_iter().partition(lost);
    assert_eq!(lost_packet.len(), 1);
    decrypt_all(&mut receive, datagrams, &mut got);
    let lost_plain = receive.decrypt_rtp(&lost_packet[0]).unwrap().to_vec();
    assert!(
        got.rtp.len() > 20,
        "0.7 s of 25 fps H.264: {} packets",
        got.rtp.len()
    );
    for (k, (pt, ssrc, seq, payload)) in got.rtp.iter().enumerate() {
        assert_eq!(*pt, VIDEO_PT);
        assert_eq!(*ssrc, VIDEO_SSRC);
        let k = if k < 5 { k } else { k + 1 };
        assert_eq!(
            *seq,
            40_000u16.wrapping_add(k as u16),
            "in sequence from the first"
        );
        // RFC 6184 §5.2: a NAL unit type, or STAP-A/FU-A (24, 28).
        let nal_type = payload[0] & 0x1f;
        assert!(matches!(nal_type, 1..=23 | 24 | 28), "{nal_type}");
    }
    assert_eq!(
        got.rtp[0].3[0] & 0x1f,
        24,
        "a STAP-A with SPS and PPS first (keyframe)"
    );
    assert!(
        got.rtcp_types.contains(&PT_SR),
        "a sender report over SRTCP"
    );
    assert!(
        received(&intruder).is_empty(),
        "no media to an unchecked address"
    );

    // The browser's receiver report, then a reduced-size PLI alone (RFC 5506).
    let rr =
        crate::wire::rtcp::test_packets::rr(Ssrc(BROWSER_SSRC), &[(Ssrc(VIDEO_SSRC), 5, 90, 0, 0)]);
    browser
        .send_to(&send.encrypt_rtcp(&rr).unwrap(), rig.port)
        .unwrap();
    let mut pli = [0u8; 12];
    let n = write_picture_loss(&mut pli, Ssrc(BROWSER_SSRC), Ssrc(VIDEO_SSRC));
    browser
        .send_to(&send.encrypt_rtcp(&pli[..n]).unwrap(), rig.port)
        .unwrap();
    // The same SRTCP packet again (a replay, RFC 3711 §3.3.2), and one with a flipped bit in
    // its tag: both refused before they are read.
    let sealed = send.encrypt_rtcp(&rr).unwrap();
    browser.send_to(&sealed, rig.port).unwrap();
    let mut tampered = sealed.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    rig.drain();
    let refused_before = get(&rig.counters.webrtc_refused);
    browser.send_to(&sealed, rig.port).unwrap();
    browser.send_to(&tampered, rig.port).unwrap();
    rig.drain();
    assert_eq!(
        get(&rig.counters.webrtc_refused) - refused_before,
        2,
        "a replayed and a tampered SRTCP packet"
    );
    assert_eq!(get(&rig.counters.webrtc_srtcp), 3);
    assert_eq!(get(&rig.counters.webrtc_keyframe_requests), 1);
    // The block as an RTSP viewer's reaches the statistics: 17 lost, 90 ticks = 1 ms jitter.
    let block = rig
        .w
        .rtc_reception(id)
        .expect("the RR's block is kept for the report");
    assert_eq!((block.fraction_lost, block.cumulative_lost), (5, 17));
    assert!((block.jitter_ms - 1.0).abs() < 1e-9, "{}", block.jitter_ms);
    // After the PLI the next video packet starts a keyframe again (STAP-A with SPS/PPS).
    let mut after = Decrypted::default();
    let datagrams = play_for(&mut rig, Duration::from_millis(100), &browser);
    decrypt_all(&mut receive, datagrams, &mut after);
    let first = after.rtp.first().expect("media goes on");
    assert_eq!(first.3[0] & 0x1f, 24, "rejoined at a keyframe");
    assert_eq!(
        first.2,
        got.rtp.last().unwrap().2.wrapping_add(1),
        "numbering continues"
    );
    // The file rewound to its keyframe, but its RTP time goes on forward.
    let step = after.timestamps[0].wrapping_sub(*got.timestamps.last().unwrap()) as i32;
    assert!(
        (0..90_000).contains(&step),
        "timestamps advance across the rejoin: {step}"
    );

    // A generic NACK (RFC 4585 §6.2.1, written here by hand) for 40,005 and, by its BLP's
    // bit 0, 40,006; and one for a packet never sent (past the history): the first two are
    // sent again as they were, the third counted.
    let mut nack = vec![0x81, 205, 0, 4];
    nack.extend(BROWSER_SSRC.to_be_bytes());
    nack.extend(VIDEO_SSRC.to_be_bytes());
    nack.extend([0x9C, 0x45, 0x00, 0x01]); // PID 40,005, BLP 0x0001
    nack.extend([0x0F, 0xA0, 0x00, 0x00]); // PID 4,000
    browser
        .send_to(&send.encrypt_rtcp(&nack).unwrap(), rig.port)
        .unwrap();
    rig.drain();
    assert_eq!(get(&rig.counters.webrtc_nacked), 3);
    let mut resent = Decrypted::default();
    let datagrams = play_for(&mut rig, Duration::from_millis(30), &browser);
    decrypt_all(&mut receive, datagrams, &mut resent);
    let again = |seq: u16| resent.rtp.iter().find(|p| p.2 == seq).map(|p| p.3.clone());
    assert_eq!(
        again(40_005).as_deref(),
        Some(&lost_plain[12..]),
        "the lost packet, again"
    );
    let original = got.rtp.iter().find(|p| p.2 == 40_006).unwrap();
    assert_eq!(again(40_006).as_deref(), Some(&original.3[..]));
    assert_eq!(get(&rig.counters.webrtc_nacks_served), 2);
    assert_eq!(get(&rig.counters.webrtc_nacks_missed), 1);

    // FIR (RFC 5104 §4.3.1, by hand): honoured once per command sequence number; its
    // retransmission (same number) is not, even past the 500 ms limit.
    let mut fir = |seq: u8| {
        let mut p = vec![0x84, 206, 0, 4];
        p.extend(BROWSER_SSRC.to_be_bytes());
        p.extend(0u32.to_be_bytes());
        p.extend(VIDEO_SSRC.to_be_bytes());
        p.extend([seq, 0, 0, 0]);
        send.encrypt_rtcp(&p).unwrap()
    };
    let later = Instant::now() + Duration::from_secs(1);
    browser.send_to(&fir(9), rig.port).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    rig.w.drain_webrtc(later);
    assert_eq!(get(&rig.counters.webrtc_keyframe_requests), 2);
    browser.send_to(&fir(9), rig.port).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    rig.w.drain_webrtc(later + Duration::from_secs(1));
    assert_eq!(
        get(&rig.counters.webrtc_keyframe_requests),
        2,
        "a repeated FIR"
    );

    // Teardown: SRTCP BYE, then nothing.
    rig.w.apply(ShardCommand::Teardown { id });
    let mut bye = Decrypted::default();
    decrypt_all(&mut receive, received(&browser), &mut bye);
    assert!(bye.rtcp_types.contains(&203), "an SRTCP BYE");
    let datagrams = play_for(&mut rig, Duration::from_millis(200), &browser);
    assert!(datagrams.is_empty(), "media stopped");
    assert_eq!(rig.w.load(), 0);
    assert!(rig.w.rtc_peers().is_empty());
    assert!(
        rig.events.try_recv().is_err(),
        "a teardown is not reported back"
    );
}

/// RFC 7675 §5.1: a session whose browser stops its consent checks for 30 s ends, and the
/// control thread is told why; a never-checked one ends at the setup timeout likewise.
#[test]
fn a_silent_browser_loses_its_session_to_consent_expiry() {
    let mut rig = rtc_rig();
    let browser_cert = DtlsCertificate::generate().unwrap();
    rig.start(7, &browser_cert);
    let browser = browser_socket();
    browser
        .send_to(&aioice("request_nominate"), rig.port)
        .unwrap();
    rig.drain();
    assert_eq!(received(&browser).len(), 1);
    rig.w.drain_webrtc(Instant::now() + Duration::from_secs(10));
    assert_eq!(rig.w.load(), 1, "10 s of silence is fine");
    rig.w.drain_webrtc(Instant::now() + Duration::from_secs(32));
    assert_eq!(rig.w.load(), 0);
    match rig.events.try_recv() {
        Ok(ShardEvent::SessionEnded { id: 7, reason }) => {
            assert_eq!(reason, EndReason::ConsentExpired)
        }
        other => panic!("{other:?}"),
    }
    assert!(rig.w.rtc_peers().is_empty());
}

impl Worker {
    /// Sessions the shard owns now.
    fn load(&self) -> usize {
        self.counters.sessions.load(Ordering::Relaxed)
    }
}

/// RFC 6347 §4.2.4: the shard's DTLS flight lost on the way to the browser is sent again
/// when its retransmission timer fires — with no datagram arriving to prompt it — and the
/// handshake completes from the copy.
#[test]
fn a_lost_dtls_flight_is_sent_again_by_the_timer() {
    let mut rig = rtc_rig();
    let browser_cert = DtlsCertificate::generate().unwrap();
    let id: SessionId = 0xD71;
    rig.start(id, &browser_cert);
    let browser = browser_socket();
    browser
        .send_to(&aioice("request_nominate"), rig.port)
        .unwrap();
    rig.drain();
    assert_eq!(received(&browser).len(), 1);

    let mut client = dtls_client(&browser_cert);
    let mut buf = vec![0u8; 2048];
    let dimpl::Output::Packet(hello) = client.poll_output(&mut buf) else {
        panic!("a ClientHello first");
    };
    browser.send_to(hello, rig.port).unwrap();
    rig.drain();
    let first = received(&browser);
    assert!(!first.is_empty(), "the server's first flight");
    // Lost: the browser never sees it. Nothing arrives at the port; the timer alone resends.
    rig.w
        .drain_webrtc(Instant::now() + Duration::from_millis(100));
    assert!(received(&browser).is_empty(), "not before the timer");
    rig.w.drain_webrtc(Instant::now() + Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(10));
    let again = received(&browser);
    assert!(!again.is_empty(), "the flight again after its timeout");
    for d in again {
        client.handle_packet(&d).unwrap();
    }
    let material = handshake(&mut rig, &mut client, &browser);
    assert_eq!(
        rig.w.rtc_profile(id).map(|p| p.keying_material_len()),
        Some(material.len())
    );
}

/// A track whose samples come from another file than the session's media (a WebRTC
/// viewer's Opus rendition, `TrackSetup::source`): its sample table, due times and packet
/// bodies are that file's, while the other track keeps the session's media.
#[test]
fn a_track_with_its_own_source_file_reads_samples_and_bodies_from_it() {
    let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
    let other = Arc::new(
        MediaFile::from_static("short", include_bytes!("../../../../tests/media/short.mp4"))
            .unwrap(),
    );
    let audio = other
        .index
        .tracks
        .iter()
        .position(|t| t.kind == crate::media::track::TrackKind::Audio)
        .expect("short.mp4 has audio");
    let track = |i: usize, source: Option<Arc<MediaFile>>| TrackSetup {
        track_index: i,
        payload_type: 96 + i as u8,
        ssrc: Ssrc(1 + i as u32),
        initial_seq: SeqNum(0),
        initial_rtptime: RtpTimestamp(0),
        dest: TrackDest::WebRtc,
        source,
        srtp: None,
    };
    let setup = SessionSetup {
        id: 9,
        media: media.clone(),
        tracks: vec![track(0, None), track(audio, Some(other.clone()))],
        sink: None,
        activity: Arc::new(Activity::default()),
        payload_budget_bytes: 1100,
        cname: "test".into(),
        live: None,
        log: None,
    };
    let mut s = ShardSession::new(setup, Instant::now()).unwrap();
    let theirs = &other.index.tracks[audio];
    assert_eq!(s.track(1).samples.len(), theirs.samples.len());
    assert_ne!(
        s.track(1).samples.len(),
        media.index.tracks[1].samples.len(),
        "the files differ, so the test can tell them apart"
    );
    assert_eq!(
        s.track(0).samples.len(),
        media.index.tracks[0].samples.len()
    );
    // Due times from the source's decode times; both start at media time 0 together.
    s.play_start = Instant::now();
    let k = 10;
    let due = s.due(1, k).unwrap() - s.play_start;
    let dts = theirs.dts_ticks(&theirs.samples[k]) as f64 / f64::from(theirs.timescale);
    assert!((due.as_secs_f64() - dts).abs() < 1e-6);
    // Bodies: the packetizer over the source's bytes, read back from the source's bytes.
    let bytes = other.bytes.as_slice();
    let sample = theirs.samples[k];
    s.tracks[1]
        .packetizer
        .begin_samples(&theirs.samples[k..k + 1], k as u64);
    let spec = s.tracks[1].packetizer.next_packet(bytes).unwrap().unwrap();
    let body = super::body_of(&spec, &s, 1).expect("the body resolves in the source file");
    let joined: Vec<u8> = body.as_slices().concat();
    let start = sample.offset as usize;
    assert_eq!(joined[..], bytes[start..start + sample.len as usize]);
}

/// The same viewer against a running shard thread (`spawn_shards` with a WebRTC port): the
/// port is in the shard's epoll set, commands reach it over the channel, and its loop
/// answers checks, completes DTLS, sends SRTP and stops at Teardown.
#[test]
fn a_running_shard_serves_a_whep_viewer_from_its_webrtc_port() {
    let shards = crate::shard::spawn_shards(
        1,
        "127.0.0.1".parse().unwrap(),
        SendConfig::default(),
        false,
        0,
        None,
        Some("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let shard = &shards[0];
    let port = shard.webrtc_addr.expect("a WebRTC port");
    let browser_cert = DtlsCertificate::generate().unwrap();
    let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
    let id: SessionId = 0xABC;
    let setup = SessionSetup {
        id,
        media,
        tracks: vec![TrackSetup {
            track_index: 0,
            payload_type: VIDEO_PT,
            ssrc: Ssrc(VIDEO_SSRC),
            initial_seq: SeqNum(7),
            initial_rtptime: RtpTimestamp(0),
            dest: TrackDest::WebRtc,
            source: None,
            srtp: None,
        }],
        sink: None,
        activity: Arc::new(Activity::default()),
        payload_budget_bytes: 1100,
        cname: "test".into(),
        live: None,
        log: None,
    };
    shard
        .send(ShardCommand::StartWebRtc(Box::new(WebRtcStart {
            setup,
            peer: peer_setup(&browser_cert),
        })))
        .unwrap();
    let browser = browser_socket();
    browser
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The command may still be queued: repeat the check until it is answered.
    let mut answered = false;
    for _ in 0..10 {
        browser.send_to(&aioice("request_nominate"), port).unwrap();
        if !received(&browser).is_empty() {
            answered = true;
            break;
        }
    }
    assert!(answered, "the running shard answers the check");
    let mut client = dtls_client(&browser_cert);
    let mut buf = vec![0u8; 2048];
    let mut material = None;
    let mut early_media = Vec::new();
    'handshake: for _ in 0..20 {
        loop {
            match client.poll_output(&mut buf) {
                dimpl::Output::Packet(p) => {
                    browser.send_to(p, port).unwrap();
                }
                dimpl::Output::KeyingMaterial(m, _) => {
                    material = Some(m.to_vec());
                    break 'handshake;
                }
                dimpl::Output::Timeout(_) => break,
                _ => {}
            }
        }
        // Media may follow the server's last flight at once: DTLS (RFC 7983 §7: 20–63) to
        // the client, the rest kept for later.
        for d in received_until(&browser, Instant::now() + Duration::from_millis(300)) {
            if (20..=63).contains(&d[0]) {
                client.handle_packet(&d).unwrap();
            } else {
                early_media.push(d);
            }
        }
    }
    let material = material.expect("keys");
    let profile = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmHmacSha1_80,
    ]
    .into_iter()
    .find(|p| p.keying_material_len() == material.len())
    .unwrap();
    let (mut receive, _) = browser_contexts(&material, profile);
    let mut got = Decrypted::default();
    decrypt_all(&mut receive, early_media, &mut got);
    let more = received_until(&browser, Instant::now() + Duration::from_millis(500));
    decrypt_all(&mut receive, more, &mut got);
    assert!(got.rtp.len() > 10, "{} packets", got.rtp.len());
    assert_eq!(got.rtp[0].2, 7);
    assert!(got.rtp.iter().all(|p| p.0 == VIDEO_PT && p.1 == VIDEO_SSRC));
    assert!(got.rtcp_types.contains(&PT_SR));
    shard.send(ShardCommand::Teardown { id }).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _ = received_until(&browser, Instant::now() + Duration::from_millis(100));
    let after = received_until(&browser, Instant::now() + Duration::from_millis(300));
    assert!(after.is_empty(), "media stopped");
    assert_eq!(shard.load(), 0);
    for s in shards {
        s.shutdown();
    }
}

/// Nominates a new browser for the session with `browser_cert` and completes DTLS; returns
/// the browser's socket and its receiving and sending SRTP contexts.
fn connect(rig: &mut RtcRig, browser_cert: &DtlsCertificate) -> (UdpSocket, TheirContext) {
    let browser = browser_socket();
    browser
        .send_to(&aioice("request_nominate"), rig.port)
        .unwrap();
    rig.drain();
    assert_eq!(received(&browser).len(), 1, "the check answered");
    let mut client = dtls_client(browser_cert);
    let material = handshake(rig, &mut client, &browser);
    let profile = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmHmacSha1_80,
    ]
    .into_iter()
    .find(|p| p.keying_material_len() == material.len())
    .unwrap();
    let (receive, _) = browser_contexts(&material, profile);
    (browser, receive)
}

/// A WebRTC viewer of a live channel joins when keyed as an RTSP PLAY does: at the latest
/// keyframe (here 5.5 s into the channel, not its start), numbered by the channel's shared
/// timeline.
#[test]
fn a_live_whep_viewer_starts_at_the_channels_latest_keyframe() {
    let mut rig = rtc_rig();
    let mut ch = LiveChannel::new("live", rig.media.clone(), 1100, StartPolicy::Delayed).unwrap();
    ch.epoch -= Duration::from_millis(5500);
    let ch = Arc::new(ch);
    let browser_cert = DtlsCertificate::generate().unwrap();
    let id: SessionId = 0x11FE;
    let setup = SessionSetup {
        id,
        media: rig.media.clone(),
        tracks: vec![TrackSetup {
            track_index: 0,
            payload_type: VIDEO_PT,
            ssrc: ch.tracks[0].ssrc,
            initial_seq: ch.tracks[0].seq0,
            initial_rtptime: ch.tracks[0].ts0,
            dest: TrackDest::WebRtc,
            source: None,
            srtp: None,
        }],
        sink: None,
        activity: Arc::new(Activity::default()),
        payload_budget_bytes: 1100,
        cname: "test".into(),
        live: Some(ch.clone()),
        log: None,
    };
    rig.w.apply(ShardCommand::StartWebRtc(Box::new(WebRtcStart {
        setup,
        peer: peer_setup(&browser_cert),
    })));
    let (browser, mut receive) = connect(&mut rig, &browser_cert);
    let join = ch.join(Instant::now());
    let (loop_index, key) = join.tracks[0];
    assert!(key > 0, "the channel is past its first keyframe");
    let mut got = Decrypted::default();
    let datagrams = play_for(&mut rig, Duration::from_millis(300), &browser);
    decrypt_all(&mut receive, datagrams, &mut got);
    let first = got.rtp.first().expect("live media");
    assert_eq!(first.1, ch.tracks[0].ssrc.0);
    assert_eq!(first.3[0] & 0x1f, 24, "a keyframe's STAP-A first");
    assert_eq!(SeqNum(first.2), ch.tracks[0].seq_of(loop_index, key));
}

mod nack;
