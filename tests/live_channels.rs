//! Live channels, checked on the wire: viewers of one channel share one SSRC, sequence and
//! timestamp space (the same bytes for the same media, whenever they joined); a viewer who
//! joins mid-GOP starts with a keyframe (instant start); sequence numbers and timestamps run on
//! across loops of the file without a jump; SDP announces `npt=now-`; PAUSE holds a viewer
//! and its next PLAY rejoins the live edge at a keyframe.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{parse_rtp, setup_udp_stream, RawRtsp};

fn media(name: &str) -> String {
    format!("{}/tests/media/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// One received packet: RTP header fields and payload.
#[derive(Debug, Clone)]
struct Packet {
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

/// Plays `url` over UDP for `secs`; returns per track the packets in arrival order.
fn watch(addr: SocketAddr, url: &str, secs: f64) -> (RawRtsp, Vec<Vec<Packet>>) {
    let name = url.rsplit('/').next().unwrap();
    let v = setup_udp_stream(addr, name, 2);
    assert!(
        v.sdp.contains("a=range:npt=now-"),
        "live SDP announces npt=now-:\n{}",
        v.sdp
    );
    let (mut rtsp, session, socks) = (v.rtsp, v.session, v.socks);
    let r = rtsp.request(
        "PLAY",
        url,
        &[("Session", &session), ("Range", "npt=0.000-")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Range"), Some("npt=now-"));
    let handles: Vec<_> = socks
        .into_iter()
        .map(|(rtp, rtcp)| {
            std::thread::spawn(move || {
                let _keep = rtcp;
                rtp.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                while Instant::now() < end {
                    if let Ok(n) = rtp.recv(&mut buf) {
                        let h = parse_rtp(&buf[..n]).unwrap();
                        got.push(Packet {
                            seq: h.seq,
                            ts: h.ts,
                            ssrc: h.ssrc,
                            payload: buf[12..n].to_vec(),
                        });
                    }
                }
                got
            })
        })
        .collect();
    let tracks = handles.into_iter().map(|h| h.join().unwrap()).collect();
    (rtsp, tracks)
}

#[test]
fn viewers_joining_apart_get_identical_packets_and_start_on_a_keyframe() {
    let server = common::Server::start(&["--live", &format!("news={}", media("sample.mp4"))]);
    let url = server.url("news");
    // Join the channel 1.3 s in (mid-GOP: keyframes every 2 s), then a second viewer 3 s later.
    std::thread::sleep(Duration::from_millis(1300));
    let early = std::thread::spawn({
        let url = url.clone();
        let addr = server.addr;
        move || watch(addr, &url, 6.0).1
    });
    std::thread::sleep(Duration::from_secs(3));
    let (_late_conn, late) = watch(server.addr, &url, 3.0);
    let early = early.join().unwrap();
    for (t, name) in [(0, "video"), (1, "audio")] {
        assert!(
            !late[t].is_empty() && !early[t].is_empty(),
            "{name} packets arrive"
        );
        assert_eq!(
            early[t][0].ssrc, late[t][0].ssrc,
            "{name}: one SSRC per channel track"
        );
        let by_seq: HashMap<u16, &Packet> = early[t].iter().map(|p| (p.seq, p)).collect();
        let mut shared = 0;
        for p in &late[t] {
            if let Some(e) = by_seq.get(&p.seq) {
                assert_eq!(
                    e.ts, p.ts,
                    "{name} seq {}: same timestamp for both viewers",
                    p.seq
                );
                assert_eq!(
                    e.payload, p.payload,
                    "{name} seq {}: same bytes for both viewers",
                    p.seq
                );
                shared += 1;
            }
        }
        // Each starts at the keyframe before its join, the early viewer 1.3 s behind the
        // live edge and the late one ~0.3 s: the late one's 3 s of media share ~2 s with the
        // early one's (measured: 2/3 of its packets). AAC packets carry up to 8 frames, ~6 a
        // second, so audio counts are small.
        assert!(
            shared >= 10 && shared * 2 >= late[t].len(),
            "{name}: the viewers overlap in {shared} of the late viewer's {} packets",
            late[t].len()
        );
    }
    for viewer in [&early, &late] {
        let nal_type = viewer[0][0].payload[0] & 0x1f;
        assert_eq!(
            nal_type, 24,
            "instant start: the first video packet is the keyframe's STAP-A"
        );
    }
}

#[test]
fn sequence_and_timestamps_are_continuous_across_three_loops() {
    let server = common::Server::start(&["--live", &format!("short={}", media("short.mp4"))]);
    let url = server.url("short");
    // The clip is 2 s long: 6.5 s of viewing crosses the loop point at least three times.
    let (_conn, tracks) = watch(server.addr, &url, 6.5);
    // 6.5 s: ~160 video frames in more packets; ~300 AAC frames, aggregated ~5 per packet.
    for (t, name, least) in [(0usize, "video", 100), (1, "audio", 50)] {
        let packets = &tracks[t];
        assert!(packets.len() > least, "{name}: {} packets", packets.len());
        for w in packets.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(1),
                "{name}: no sequence gap or jump"
            );
        }
    }
    // Audio timestamps advance by one AAC frame (1024 ticks) per access unit the previous
    // packet carried (RFC 3640 AU-headers-length / 16 bits; packets aggregate several); at the
    // loop point the step may include the short gap by which the audio track is shorter than
    // the loop (under one video frame, 40 ms = 1920 ticks at 48 kHz), never a jump back or
    // far ahead.
    let audio = &tracks[1];
    let mut loops = 0;
    for w in audio.windows(2) {
        let aus = u32::from(u16::from_be_bytes([w[0].payload[0], w[0].payload[1]]) / 16);
        assert!((1..=8).contains(&aus), "{aus} AUs in one packet");
        let step = w[1].ts.wrapping_sub(w[0].ts);
        let frames = 1024 * aus;
        assert!(
            (frames..=frames + 1920).contains(&step),
            "audio timestamp step {step} after {aus} AUs"
        );
        loops += usize::from(step != frames);
    }
    // Only a loop point may step by more than the frames sent, and 6.5 s of a 2 s loop
    // crosses at most 4 of them (short.mp4's audio fills its loop, so it measures 0).
    assert!(
        loops <= 4,
        "{loops} audio steps were not exactly one frame per AU: more than the loop points"
    );
    // Video: per access unit (marker-free check): timestamps stay within one GOP's span of the
    // running maximum, so no loop point resets them.
    let video = &tracks[0];
    let mut max_ts = video[0].ts;
    for p in video {
        let ahead = p.ts.wrapping_sub(max_ts) as i32;
        assert!(
            ahead > -(90_000 / 2) && ahead < 90_000 / 2,
            "video timestamp jump of {ahead} ticks"
        );
        if ahead > 0 {
            max_ts = p.ts;
        }
    }
    let span = max_ts.wrapping_sub(video[0].ts);
    assert!(
        span > 5 * 90_000,
        "video timestamps advanced {span} ticks over three loops"
    );
}

/// Packets on `rtp` for `secs` (RTP header and payload).
fn receive(rtp: &std::net::UdpSocket, secs: f64) -> Vec<Packet> {
    rtp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while Instant::now() < end {
        if let Ok(n) = rtp.recv(&mut buf) {
            let h = parse_rtp(&buf[..n]).unwrap();
            got.push(Packet {
                seq: h.seq,
                ts: h.ts,
                ssrc: h.ssrc,
                payload: buf[12..n].to_vec(),
            });
        }
    }
    got
}

/// PAUSE on a live channel (RFC 2326 §10.6) holds the viewer: 200 without a `Range` (a live
/// stream has no position), nothing sent while paused, and the next PLAY rejoins the live
/// edge (`npt=now-`) starting with a keyframe, in the channel's numbering (the sequence
/// jumps forward over what the others got meanwhile). GStreamer PAUSEs whenever its
/// pipeline stops; live555, gst-rtsp-server and MediaMTX accept it.
#[test]
fn pause_holds_a_live_viewer_and_play_rejoins_the_live_edge() {
    let server = common::Server::start(&["--live", &format!("news={}", media("sample.mp4"))]);
    let url = server.url("news");
    let v = setup_udp_stream(server.addr, "news", 2);
    let (mut rtsp, session, socks) = (v.rtsp, v.session, v.socks);
    let r = rtsp.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(r.status, 200);
    let before = receive(&socks[0].0, 1.0);
    assert!(
        before.len() > 10,
        "{} video packets before PAUSE",
        before.len()
    );
    let p = rtsp.request("PAUSE", &url, &[("Session", &session)]);
    assert_eq!(p.status, 200, "PAUSE of a live viewer");
    assert_eq!(p.header("Range"), None, "no position for a live stream");
    // What was in flight when PAUSE arrived drains first.
    let _ = receive(&socks[0].0, 0.3);
    let held = receive(&socks[0].0, 1.5);
    assert!(held.is_empty(), "{} packets sent while paused", held.len());
    let r = rtsp.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(r.status, 200, "PLAY after PAUSE");
    assert_eq!(r.header("Range"), Some("npt=now-"));
    let after = receive(&socks[0].0, 1.0);
    assert!(after.len() > 10, "{} video packets after PLAY", after.len());
    assert_eq!(
        after[0].payload[0] & 0x1f,
        24,
        "the resumed stream starts with the keyframe's STAP-A"
    );
    assert_eq!(after[0].ssrc, before[0].ssrc, "the channel's SSRC");
    let last = before.last().unwrap().seq;
    let jump = after[0].seq.wrapping_sub(last);
    assert!(
        (1..30_000).contains(&jump),
        "the sequence runs forward from {last} to {} across the pause",
        after[0].seq
    );
}
