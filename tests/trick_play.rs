//! Trick play (RFC 2326 §12.34 `Scale`, §12.35 `Speed`; RFC 7826 §18.46): fast forward and
//! rewind of stored media by keyframes, on the delivery timeline (RTP time runs at the
//! real-time rate; `Range` and `RTP-Info` map it to media time), as GStreamer asks for it
//! with a rate seek and as a raw client sees it packet by packet.
//!
//! The bundled sample: 10 s of H.264 at 25 fps with a keyframe every 2 s (0, 2, 4, 6, 8 s)
//! and AAC.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{parse_rtp, RawRtsp, Server};

/// H.264 NAL unit types an RTP payload carries (RFC 6184 §5.2: a single NAL unit, the units
/// of a STAP-A, or the unit a FU-A fragments).
fn nal_types(payload: &[u8]) -> Vec<u8> {
    let Some(&first) = payload.first() else {
        return Vec::new();
    };
    match first & 0x1f {
        24 => {
            let mut types = Vec::new();
            let mut rest = &payload[1..];
            while rest.len() >= 3 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                types.push(rest[2] & 0x1f);
                rest = &rest[(2 + len).min(rest.len())..];
            }
            types
        }
        28 => payload.get(1).map(|h| vec![h & 0x1f]).unwrap_or_default(),
        t => vec![t],
    }
}

/// What a raw TCP-interleaved viewer saw of one PLAY.
struct Played {
    /// The PLAY answer.
    answer: common::RtspResponse,
    /// Video access units in arrival order: (RTP timestamp, arrival, NAL types).
    frames: Vec<(u32, Instant, Vec<u8>)>,
    /// RTP packets on the audio channel.
    audio_packets: usize,
    /// An RTCP BYE came on the video's RTCP channel.
    bye: bool,
}

/// Sets up both tracks of `stream` over TCP (video on channels 0-1, audio on 2-3) and
/// returns the connection, the URL and the session.
fn set_up(server: &Server, stream: &str) -> (RawRtsp, String, String) {
    let url = server.url(stream);
    let mut c = RawRtsp::connect(server.addr);
    let (_, session) = c.setup_interleaved(&url, &[0, 1]);
    (c, url, session)
}

/// PLAYs with `headers` and reads media until an RTCP BYE on the video's channel, or for
/// `limit`.
fn play(
    c: &mut RawRtsp,
    url: &str,
    session: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> Played {
    let mut all = vec![("Session", session)];
    all.extend_from_slice(headers);
    let answer = c.request("PLAY", url, &all);
    assert_eq!(answer.status, 200, "{answer:?}");
    let mut played = Played {
        answer,
        frames: Vec::new(),
        audio_packets: 0,
        bye: false,
    };
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let Some((ch, frame)) = c.read_frame() else {
            break;
        };
        match ch {
            0 => {
                let rtp = parse_rtp(&frame).expect("RTP");
                let types = nal_types(&frame[12..]);
                match played.frames.last_mut() {
                    Some(last) if last.0 == rtp.ts => last.2.extend(types),
                    _ => played.frames.push((rtp.ts, Instant::now(), types)),
                }
            }
            1 => {
                // RTCP compound: SR (200) ... BYE (203) (RFC 3550 §6.6).
                let mut rest = &frame[..];
                while rest.len() >= 4 {
                    if rest[1] == 203 {
                        played.bye = true;
                    }
                    let words = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
                    rest = &rest[(4 * (words + 1)).min(rest.len())..];
                }
                if played.bye {
                    break;
                }
            }
            2 => played.audio_packets += 1,
            _ => {}
        }
    }
    played
}

/// RTP-Info's rtptime for trackID=0 (RFC 2326 §12.33).
fn video_rtptime(answer: &common::RtspResponse) -> u32 {
    let info = answer.header("RTP-Info").expect("RTP-Info");
    let entry = info
        .split(',')
        .find(|e| e.contains("trackID=0"))
        .expect("an entry for the video");
    entry
        .split(';')
        .find_map(|p| p.trim().strip_prefix("rtptime="))
        .expect("rtptime")
        .parse()
        .unwrap()
}

/// Checks that every frame is a keyframe (an IDR slice, no other slices), that RTP time
/// starts at RTP-Info's and steps by `step_secs` (the delivery timeline), and that frames
/// arrived about that far apart.
fn assert_keyframes_on_delivery_timeline(p: &Played, count: usize, step_secs: f64) {
    assert_eq!(
        p.frames.len(),
        count,
        "frames (rtp ts, types): {:?}",
        summary(p)
    );
    let first = video_rtptime(&p.answer);
    for (k, (ts, _, types)) in p.frames.iter().enumerate() {
        assert!(
            types.contains(&5) && !types.contains(&1),
            "frame {k} is an IDR alone: NAL types {types:?}"
        );
        let want = first.wrapping_add((step_secs * 90_000.0 * k as f64).round() as u32);
        assert_eq!(*ts, want, "frame {k}'s RTP time: {:?}", summary(p));
    }
    let span = p.frames[count - 1]
        .1
        .duration_since(p.frames[0].1)
        .as_secs_f64();
    let expected = step_secs * (count - 1) as f64;
    assert!(
        span > expected * 0.6 && span < expected + 1.5,
        "frames arrived over {span:.2} s, paced for {expected:.2} s"
    );
    assert_eq!(p.audio_packets, 0, "no audio in trick play");
    assert!(p.bye, "the end of the trick play range is a BYE");
}

fn summary(p: &Played) -> Vec<(u32, Vec<u8>)> {
    p.frames.iter().map(|f| (f.0, f.2.clone())).collect()
}

/// Scale 4 from 2 s: keyframes 2, 4, 6, 8 s, half a second apart on the wire and in RTP
/// time, no audio, then BYE; the answer echoes the scale and the range played.
#[test]
fn fast_forward_sends_keyframes_paced_and_stamped_on_the_delivery_timeline() {
    let server = Server::start(&[]);
    let (mut c, url, session) = set_up(&server, "sample");
    let p = play(
        &mut c,
        &url,
        &session,
        &[("Range", "npt=2-"), ("Scale", "4")],
        Duration::from_secs(10),
    );
    assert_eq!(p.answer.header("Scale"), Some("4"));
    assert!(
        p.answer
            .header("Range")
            .is_some_and(|r| r.starts_with("npt=2.000-")),
        "{:?}",
        p.answer.header("Range")
    );
    assert_keyframes_on_delivery_timeline(&p, 4, 0.5);
}

/// Scale −2 with `Range: npt=9-3` (RFC 7826 §18.46: backwards the range runs from a later
/// start to an earlier end): keyframes 8, 6, 4 s, one second apart, RTP time still rising;
/// then a normal PLAY from 0 plays video and audio again with every frame.
#[test]
fn rewind_walks_keyframes_backwards_then_normal_play_resumes() {
    let server = Server::start(&[]);
    let (mut c, url, session) = set_up(&server, "sample");
    let p = play(
        &mut c,
        &url,
        &session,
        &[("Range", "npt=9-3"), ("Scale", "-2")],
        Duration::from_secs(10),
    );
    assert_eq!(p.answer.header("Scale"), Some("-2"));
    assert_eq!(p.answer.header("Range"), Some("npt=8.000-3.000"));
    assert_keyframes_on_delivery_timeline(&p, 3, 1.0);
    let normal = play(
        &mut c,
        &url,
        &session,
        &[("Range", "npt=0-1")],
        Duration::from_secs(6),
    );
    assert_eq!(normal.answer.header("Scale"), None);
    assert!(
        normal.frames.len() >= 24,
        "a second of video at 25 fps: {}",
        normal.frames.len()
    );
    assert!(
        normal.frames.iter().any(|f| f.2.contains(&1)),
        "P-frames again"
    );
    assert!(normal.audio_packets > 0, "audio again");
}

/// Live streams cannot trick: a live channel answers `Scale: 1` and plays on normally.
#[test]
fn a_live_channel_answers_scale_one() {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/sample.mp4");
    let server = Server::start(&["--live", &format!("news={}", media.display())]);
    let (mut c, url, session) = set_up(&server, "news");
    let p = play(
        &mut c,
        &url,
        &session,
        &[("Scale", "8")],
        Duration::from_secs(2),
    );
    assert_eq!(p.answer.header("Scale"), Some("1"));
    assert!(p.audio_packets > 0, "normal play: audio flows");
}

/// GStreamer (rtspsrc + avdec_h264) seeks at rate 2 with key-unit trick mode: it sends
/// `Scale: 2`, decodes the five keyframes, and reaches EOS in about 5 s instead of 10.
#[test]
fn gstreamer_fast_forwards_at_rate_two() {
    let server = Server::start(&[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gst_trick_play.py");
    let (ok, out, err) = common::run_with_timeout(
        std::process::Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(server.url("sample"))
            .args(["2.0", "0"]),
        Duration::from_secs(45),
    );
    assert!(ok, "the GStreamer script: {err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("its JSON report");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["seek_ok"], true, "{report}");
    assert_eq!(report["eos"], true, "{report}");
    assert_eq!(report["frames"], 5, "the five keyframes decoded: {report}");
    let elapsed = report["elapsed"].as_f64().unwrap();
    assert!(
        elapsed < 8.0,
        "10 s at rate 2 took {elapsed:.1} s: {report}"
    );
}
