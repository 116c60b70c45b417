//! The bench's viewer against another WebRTC implementation on loopback, without shardcast:
//! a str0m `Rtc` as an ICE-lite, sendonly answerer (as a WHEP server is) writes RTP on the
//! answered media; the viewer must connect (ICE as the controlling agent, DTLS client, SRTP)
//! and count every packet under the right kind, with no loss. It proves the viewer and its
//! crypto backend before the server's shard side can.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{MediaKind as RtcKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::crypto::provider;
use super::stream_name;
use super::viewer::{State, Viewer, H264_PTS, OPUS_PT};
use crate::loadgen::stats::MediaKind;

struct Answerer {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    connected: bool,
    mids: Vec<(Mid, RtcKind)>,
    next: Instant,
}

impl Answerer {
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.next = t;
                    return;
                }
                Output::Transmit(t) => {
                    self.sock.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaAdded(m)) => self.mids.push((m.mid, m.kind)),
                Output::Event(_) => {}
            }
        }
    }

    fn pump(&mut self, buf: &mut [u8]) {
        while let Ok((n, source)) = self.sock.recv_from(buf) {
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            self.rtc.handle_input(input).unwrap();
            self.drain();
        }
        let now = Instant::now();
        if now >= self.next {
            self.rtc.handle_input(Input::Timeout(now)).unwrap();
            self.drain();
        }
    }
}

#[test]
fn the_viewer_plays_rtp_from_an_ice_lite_str0m_answerer() {
    let now = Instant::now();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let local = sock.local_addr().unwrap();
    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_crypto_provider(provider())
        .clear_codecs()
        .enable_opus(true, false);
    config
        .codec_config()
        .add_h264(H264_PTS[0].0.into(), None, true, H264_PTS[0].1);
    let mut rtc = config.build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());

    let vsock = UdpSocket::bind("127.0.0.1:0").unwrap();
    vsock.set_nonblocking(true).unwrap();
    let mut viewer = Viewer::new(vsock, provider(), None, now).unwrap();
    assert!(viewer.offer.contains("a=recvonly"), "{}", viewer.offer);
    assert!(
        viewer.offer.contains("profile-level-id=4d401e"),
        "{}",
        viewer.offer
    );
    assert!(
        viewer.offer.contains("profile-level-id=42e01f"),
        "{}",
        viewer.offer
    );
    let offer = SdpOffer::from_sdp_string(&viewer.offer).unwrap();
    let answer = rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    let mut server = Answerer {
        rtc,
        sock,
        local,
        connected: false,
        mids: Vec::new(),
        next: now,
    };
    server.drain();
    viewer.accept(&answer, Some("/whep/session/x".into()), Instant::now());
    assert_eq!(viewer.state, State::Negotiated, "{:?}", viewer.error);

    let mut buf = vec![0u8; 2048];
    let mut batch = shardcast::net::RecvBatch::new(super::viewer::READ_BATCH);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(server.connected && viewer.connected.is_some()) {
        assert!(
            Instant::now() < deadline,
            "no connection: {:?}",
            viewer.error
        );
        server.pump(&mut buf);
        viewer.read(&mut batch);
        viewer.tick(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(server.mids.len(), 2, "video and audio media");
    let (mut vseq, mut aseq) = (1000u64, 50_000u64);
    for i in 0..40u32 {
        for (mid, kind) in server.mids.clone() {
            let (pt, seq) = match kind {
                RtcKind::Video => (H264_PTS[0].0, &mut vseq),
                _ => (OPUS_PT, &mut aseq),
            };
            let mut api = server.rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).unwrap();
            tx.write_rtp(
                RtpWrite::new(
                    pt.into(),
                    (*seq).into(),
                    i * 3000,
                    Instant::now(),
                    vec![0x65u8; 900],
                )
                .marker(true),
            );
            *seq += 1;
            server.drain();
        }
        server.pump(&mut buf);
        viewer.read(&mut batch);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while viewer.tracks.iter().map(|t| t.packets).sum::<u64>() < 80 && Instant::now() < deadline {
        server.pump(&mut buf);
        viewer.read(&mut batch);
        viewer.tick(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    let kinds: Vec<(MediaKind, u64, u64)> = viewer
        .tracks
        .iter()
        .map(|t| (t.kind, t.packets, t.lost()))
        .collect();
    assert!(kinds.contains(&(MediaKind::Video, 40, 0)), "{kinds:?}");
    assert!(kinds.contains(&(MediaKind::Audio, 40, 0)), "{kinds:?}");
    assert!(viewer.first_packet.is_some());
    assert!(viewer.error.is_none(), "{:?}", viewer.error);
}

#[test]
fn the_stream_name_is_the_url_path() {
    assert_eq!(stream_name("rtsp://127.0.0.1:8554/sample"), Some("sample"));
    assert_eq!(stream_name("rtsp://127.0.0.1:8554/a/b"), Some("a/b"));
    assert_eq!(stream_name("rtsp://127.0.0.1:8554/"), None);
    assert_eq!(stream_name("http://x/y"), None);
}

#[test]
fn a_rejected_section_gets_the_offers_rtpmap() {
    let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
    // As shardcast answers an audio section it cannot serve (src/webrtc/sdp/answer.rs).
    let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=mid:1\r\na=inactive\r\n";
    let patched = super::viewer::with_rejected_rtpmaps(answer, offer);
    assert_eq!(
        patched,
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=mid:1\r\na=inactive\r\na=rtpmap:111 opus/48000/2\r\n"
    );
    // An accepted section is left alone.
    assert_eq!(super::viewer::with_rejected_rtpmaps(offer, offer), offer);
}

fn figures(loss_pct: f64, cpu_pct: f64, rcvbuf: u64) -> super::WhepFigures {
    let p = crate::loadgen::stats::Percentiles::default();
    super::WhepFigures {
        viewers: 10,
        answered: 10,
        connected: 10,
        playing: 10,
        with_video: 10,
        with_audio: 10,
        retried_503: 0,
        first_error: None,
        start_secs: 1.0,
        steady_secs: 10.0,
        packets: 1000,
        packets_video: 800,
        packets_audio: 200,
        bytes: 1_000_000,
        lost: 0,
        loss_pct,
        mbit_per_viewer: 2.0,
        first_packet: p,
        connect: p,
        jitter_video: p,
        jitter_audio: p,
        server: None,
        steady_cpu_ns_per_packet: None,
        harness: super::HarnessFigures {
            cpu_pct,
            udp_rcvbuf_errors: Some(rcvbuf),
            udp_in_errors: Some(rcvbuf),
            client_bound: cpu_pct >= 90.0 || rcvbuf > 0,
        },
        deleted: 10,
        delete_failed: 0,
        datagrams: 1000,
        loops: 10,
        webrtc_ports: Vec::new(),
    }
}

fn round(ratio: Option<f64>, w: super::WhepFigures) -> super::WhepRound {
    super::WhepRound {
        round: 1,
        rtp: None,
        rtp_error: None,
        whep: Some(w),
        whep_error: None,
        cpu_ratio: ratio,
        core_ratio: None,
    }
}

#[test]
fn the_conclusion_judges_the_ratio_and_names_a_client_bottleneck() {
    use super::report::{conclusion, median_ratio};
    let ok = [round(Some(1.2), figures(0.0, 40.0, 0))];
    let c = conclusion(&ok, 0.1);
    assert!(c.contains("1.20× (meets"), "{c}");
    assert!(c.contains("kept up"), "{c}");
    let over = [round(Some(1.9), figures(0.0, 40.0, 0))];
    assert!(conclusion(&over, 0.1).contains("misses"));
    let busy = [round(Some(1.2), figures(0.5, 97.0, 120))];
    let c = conclusion(&busy, 0.1);
    assert!(c.contains("outside the 0.1 % SLO"), "{c}");
    assert!(c.contains("load generator was the bottleneck"), "{c}");
    assert!(c.contains("120 UDP datagrams"), "{c}");
    let rounds = [
        round(Some(1.5), figures(0.0, 1.0, 0)),
        round(Some(1.1), figures(0.0, 1.0, 0)),
        round(Some(1.3), figures(0.0, 1.0, 0)),
    ];
    assert_eq!(median_ratio(&rounds), Some(1.3));
}
