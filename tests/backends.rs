//! The server plays the bundled sample through every send backend (`--io uring|sendmmsg|sendto`)
//! with GSO on and off, to a raw UDP client that checks the wire: every video frame arrives
//! (one marker per frame), no sequence gap on either track, and FU-A fragments pair up (a
//! start bit opens, an end bit closes, nothing else in between — RFC 6184 §5.8), so GSO trains
//! were cut back into the right datagrams. retina, a strict client, then plays each backend
//! over UDP with GSO on and off (ffmpeg and GStreamer do the same in
//! `tests/players_per_backend.rs`). io_uring tests fail where io_uring is missing unless
//! `SHARDCAST_ALLOW_MISSING=uring` is set (then they print a loud line and skip).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::players::backend_available;
use common::retina_play::{expected, play_all};
use common::{parse_rtp, setup_udp};
use retina::client::{Transport, UdpTransportOptions};

/// What one track delivered.
#[derive(Debug, Default)]
struct TrackLog {
    packets: usize,
    /// Frames completed: marker bits for H.264, access units in marked packets for AAC.
    markers: usize,
    seq_gaps: Vec<(u16, u16)>,
    fu_errors: Vec<String>,
    fu_pairs: usize,
}

/// Receives RTP from `server` on `sock` until `markers_wanted` markers or `limit`; checks
/// sequence continuity and, for H.264, FU-A start/end pairing. Datagrams from any other
/// address are ignored, as strict clients do: a port reused from another test's viewer can
/// still receive that test's server's RTCP.
fn receive(
    sock: &UdpSocket,
    server: SocketAddr,
    markers_wanted: usize,
    h264: bool,
    limit: Duration,
) -> TrackLog {
    let mut log = TrackLog::default();
    let mut buf = [0u8; 2048];
    let mut last: Option<u16> = None;
    let mut in_fu = false;
    let start = Instant::now();
    while log.markers < markers_wanted && start.elapsed() < limit {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if from != server {
            continue;
        }
        let p = parse_rtp(&buf[..n]).expect("valid RTP");
        log.packets += 1;
        if let Some(l) = last {
            if p.seq != l.wrapping_add(1) {
                log.seq_gaps.push((l, p.seq));
            }
        }
        last = Some(p.seq);
        if h264 && n > 12 {
            let nal_type = buf[12] & 0x1f;
            if nal_type == 28 {
                assert!(n > 13, "FU-A has its header");
                let (s, e) = (buf[13] & 0x80 != 0, buf[13] & 0x40 != 0);
                if s == in_fu {
                    log.fu_errors
                        .push(format!("seq {}: start={s} while in_fu={in_fu}", p.seq));
                }
                in_fu = true;
                if e {
                    in_fu = false;
                    log.fu_pairs += 1;
                }
                if p.marker && in_fu {
                    log.fu_errors
                        .push(format!("seq {}: marker inside an FU-A", p.seq));
                }
            } else if in_fu {
                log.fu_errors
                    .push(format!("seq {}: NAL type {nal_type} inside an FU-A", p.seq));
                in_fu = false;
            }
        }
        log.markers += if h264 {
            usize::from(p.marker)
        } else {
            common::aac_units_completed(&buf[..n])
        };
    }
    log
}

fn raw_client_receives_every_frame(io: &str, gso: &str) {
    if !backend_available(io) {
        return;
    }
    let server = common::Server::start(&["--io", io, "--gso", gso, "--shards", "1"]);
    let mut s = setup_udp(&server);
    let exp = expected();
    assert_eq!(exp.video_frames, 250, "the bundled sample");
    let r = s.rtsp.request("PLAY", &s.url, &[("Session", &s.session)]);
    assert_eq!(r.status, 200);
    let server_rtp = s.server_rtp[0];
    let (video, audio) = (
        s.socks[0].0.try_clone().unwrap(),
        s.socks[1].0.try_clone().unwrap(),
    );
    let limit = Duration::from_secs(30);
    let audio_frames = exp.audio_frames;
    let audio_log = std::thread::spawn(move || {
        // AAC: complete AUs (one or several per packet) carry the marker bit (RFC 3640
        // §3.2.3); `markers` counts AUs.
        receive(&audio, server_rtp, audio_frames, false, limit)
    });
    let v = receive(&video, server_rtp, exp.video_frames, true, limit);
    let a = audio_log.join().unwrap();
    assert_eq!(
        v.markers, exp.video_frames,
        "{io}/gso {gso}: every video frame ends with a marker ({} packets)",
        v.packets
    );
    assert!(
        v.seq_gaps.is_empty(),
        "video sequence gaps: {:?}",
        v.seq_gaps
    );
    assert!(v.fu_errors.is_empty(), "FU-A pairing: {:?}", v.fu_errors);
    assert!(v.fu_pairs > 0, "the sample's large frames are fragmented");
    assert_eq!(a.markers, exp.audio_frames, "every audio frame");
    assert!(
        a.seq_gaps.is_empty(),
        "audio sequence gaps: {:?}",
        a.seq_gaps
    );
    let _ = s
        .rtsp
        .request("TEARDOWN", &s.url, &[("Session", &s.session)]);
}

macro_rules! raw_udp_tests {
    ($($name:ident: $io:literal, $gso:literal;)*) => {$(
        #[test]
        fn $name() {
            raw_client_receives_every_frame($io, $gso);
        }
    )*};
}

raw_udp_tests! {
    uring_gso_on_delivers_every_frame_in_sequence: "uring", "on";
    uring_gso_off_delivers_every_frame_in_sequence: "uring", "off";
    sendmmsg_gso_on_delivers_every_frame_in_sequence: "sendmmsg", "on";
    sendmmsg_gso_off_delivers_every_frame_in_sequence: "sendmmsg", "off";
    sendto_gso_on_delivers_every_frame_in_sequence: "sendto", "on";
    sendto_gso_off_delivers_every_frame_in_sequence: "sendto", "off";
}

async fn retina_plays(io: &str, gso: &str) {
    if !backend_available(io) {
        return;
    }
    let server = common::Server::start(&["--io", io, "--gso", gso, "--shards", "1"]);
    play_all(
        &server.url("sample"),
        Transport::Udp(UdpTransportOptions::default()),
    )
    .await;
}

macro_rules! retina_tests {
    ($($name:ident: $io:literal, $gso:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            retina_plays($io, $gso).await;
        }
    )*};
}

retina_tests! {
    retina_plays_every_frame_through_uring_with_gso: "uring", "on";
    retina_plays_every_frame_through_uring_without_gso: "uring", "off";
    retina_plays_every_frame_through_sendmmsg_with_gso: "sendmmsg", "on";
    retina_plays_every_frame_through_sendmmsg_without_gso: "sendmmsg", "off";
    retina_plays_every_frame_through_sendto_with_gso: "sendto", "on";
    retina_plays_every_frame_through_sendto_without_gso: "sendto", "off";
}
