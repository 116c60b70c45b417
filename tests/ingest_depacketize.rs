//! Conformance of `ingest::sdp` and `ingest::depacketize` against ffmpeg, an independent RTP
//! sender. ffmpeg encodes a clip (libx264 without B-frames, AAC), then streams each track of it
//! unchanged (`-c copy -f rtp`) to a UDP socket of this test and writes the SDP it would
//! announce; the test parses that SDP with `parse_announce`, depacketizes what arrived, and
//! compares every frame with what ffprobe reports about the same file's packets: count,
//! keyframes, size, MD5 of the bytes (the MP4 samples are AVCC with 4-byte lengths, the form
//! frames take) and the time since the first frame. Fails if a frame is lost, merged, split,
//! altered or mistimed, or the SDP is misread. A second test reads the SDP that ffmpeg's
//! RTSP muxer sends in an ANNOUNCE, captured from a listener here, against ffprobe's idea of
//! the clip (size, rate, channels).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use md5::{Digest, Md5};
use shardcast::ingest::depacketize::Depacketizer;
use shardcast::ingest::sdp::{parse_announce, Announced};
use shardcast::media::track::Codec;

/// One packet as ffprobe reports it.
#[derive(Debug)]
struct ProbePacket {
    pts: i64,
    time_base: (i64, i64),
    size: usize,
    key: bool,
    md5: String,
}

/// One frame as the depacketizer emitted it.
#[derive(Debug)]
struct GotFrame {
    pts: i64,
    size: usize,
    key: bool,
    md5: String,
}

/// The test clip, made once per run: 3 s of 640x360 testsrc2 at 25 fps, H.264 High without
/// B-frames and a keyframe every 30 frames (frames large enough for FU-A), 48 kHz stereo AAC.
fn clip() -> &'static Path {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        let dir = scratch_dir();
        let out = dir.join("clip.mp4");
        let (ok, _, err) = common::run_with_timeout(
            Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=640x360:rate=25:duration=3",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000:duration=3",
                    "-map",
                    "0:v",
                    "-map",
                    "1:a",
                    "-c:v",
                    "libx264",
                    "-bf",
                    "0",
                    "-g",
                    "30",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "aac",
                    "-ac",
                    "2",
                    "-b:a",
                    "96k",
                ])
                .arg(&out),
            Duration::from_secs(60),
        );
        assert!(ok, "ffmpeg could not make the clip: {err}");
        out
    })
}

fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ingest-depacketize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// ffprobe's packets of stream `v` or `a`, with the MD5 of their bytes.
fn probe(clip: &Path, stream: &str) -> Vec<ProbePacket> {
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                stream,
                "-show_streams",
                "-show_packets",
                "-show_data_hash",
                "MD5",
                "-of",
                "json",
            ])
            .arg(clip),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tb = v["streams"][0]["time_base"].as_str().unwrap();
    let (n, d) = tb.split_once('/').unwrap();
    let time_base = (n.parse().unwrap(), d.parse().unwrap());
    v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ProbePacket {
            pts: p["pts"].as_i64().unwrap(),
            time_base,
            size: p["size"].as_str().unwrap().parse().unwrap(),
            key: p["flags"].as_str().unwrap().starts_with('K'),
            md5: p["data_hash"]
                .as_str()
                .unwrap()
                .trim_start_matches("MD5:")
                .to_string(),
        })
        .collect()
}

/// Streams track `map` of the clip with `ffmpeg -c copy -f rtp` in packets of at most
/// `pkt_size` bytes to a socket here; returns the SDP ffmpeg wrote and the RTP packets in
/// arrival order.
fn stream_over_rtp(clip: &Path, map: &str, pkt_size: usize) -> (String, Vec<Vec<u8>>) {
    let (rtp, _rtcp) = common::udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut packets = Vec::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                match rtp.recv(&mut buf) {
                    Ok(n) => packets.push(buf[..n].to_vec()),
                    Err(_) if done.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
            packets
        })
    };
    let sdp_path = scratch_dir().join(format!("{}-{pkt_size}.sdp", map.replace(':', "_")));
    // -re paces at real time, so loopback never overflows the socket buffer.
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(clip)
            .args(["-map", map, "-c", "copy", "-f", "rtp", "-sdp_file"])
            .arg(&sdp_path)
            .arg(format!("rtp://127.0.0.1:{port}?pkt_size={pkt_size}")),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg -f rtp failed: {err}");
    done.store(true, Ordering::SeqCst);
    let packets = receiver.join().unwrap();
    let sdp = std::fs::read_to_string(&sdp_path).unwrap();
    (sdp, packets)
}

/// Parses the SDP, depacketizes the packets with its one track; returns the announcement,
/// the frames and the depacketizer (for its counters).
fn depacketize(sdp: &str, packets: &[Vec<u8>]) -> (Announced, Vec<GotFrame>, Depacketizer) {
    let announced = parse_announce(sdp).unwrap_or_else(|e| panic!("{e}: {sdp}"));
    assert_eq!(announced.tracks.len(), 1, "{announced:?}");
    let mut d = Depacketizer::new(0, &announced.tracks[0]);
    let mut frames = Vec::new();
    for p in packets {
        d.push(p, &mut |f| {
            assert_eq!((f.track, f.pts), (0, f.dts));
            frames.push(GotFrame {
                pts: f.pts,
                size: f.data.len(),
                key: f.sync,
                md5: format!("{:x}", Md5::digest(f.data)),
            });
        });
    }
    let s = d.stats();
    assert_eq!(
        (s.lost, s.reordered, s.not_rtp, s.wrong_payload_type),
        (0, 0, 0, 0),
        "packets were lost on loopback or misread: {s:?}"
    );
    assert_eq!(s.dropped, [0; 5], "frames dropped: {s:?}");
    (announced, frames, d)
}

/// Frame by frame: the same bytes, keyframe flags and times (in the RTP clock, from the first
/// frame) as ffprobe's packets.
fn compare(what: &str, got: &[GotFrame], want: &[ProbePacket], clock_hz: i64) {
    assert_eq!(got.len(), want.len(), "{what}: frame count");
    assert_eq!(
        got.iter().filter(|f| f.key).count(),
        want.iter().filter(|p| p.key).count(),
        "{what}: keyframe count"
    );
    assert_eq!(
        got.iter().map(|f| f.size).sum::<usize>(),
        want.iter().map(|p| p.size).sum::<usize>(),
        "{what}: total bytes"
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!((g.size, g.key), (w.size, w.key), "{what}: frame {i}");
        assert_eq!(g.md5, w.md5, "{what}: bytes of frame {i}");
        let (num, den) = w.time_base;
        let want_ticks = (w.pts - want[0].pts) * num * clock_hz / den;
        let got_ticks = g.pts - got[0].pts;
        assert!(
            (got_ticks - want_ticks).abs() <= 1,
            "{what}: frame {i} at {got_ticks} ticks, ffprobe says {want_ticks}"
        );
    }
}

/// How many packets have RFC 6184 payload type `nal_type` (§5.2, the first payload byte).
fn count_type(packets: &[Vec<u8>], nal_type: u8) -> usize {
    packets
        .iter()
        .filter(|p| p.get(12).map(|b| b & 0x1f) == Some(nal_type))
        .count()
}

/// 1200-byte packets: every frame of the clip is fragmented (FU-A, RFC 6184 §5.8), the
/// first frame's SEI goes alone (single NAL unit packet, §5.6).
#[test]
fn h264_fu_a_from_ffmpeg_rtp_matches_ffprobe_frame_by_frame() {
    let (sdp, packets) = stream_over_rtp(clip(), "0:v", 1200);
    assert!(count_type(&packets, 28) > 0, "ffmpeg sent no FU-A");
    check_h264(&sdp, &packets);
}

/// 60000-byte packets: no frame is fragmented; ffmpeg aggregates the first frame's SEI and
/// IDR slice into a STAP-A (RFC 6184 §5.7.1) and sends the others as single NAL unit packets.
#[test]
fn h264_stap_a_from_ffmpeg_rtp_matches_ffprobe_frame_by_frame() {
    let (sdp, packets) = stream_over_rtp(clip(), "0:v", 60_000);
    assert!(count_type(&packets, 24) > 0, "ffmpeg sent no STAP-A");
    assert!(
        count_type(&packets, 1) > 0,
        "ffmpeg sent no single NAL unit packet"
    );
    check_h264(&sdp, &packets);
}

fn check_h264(sdp: &str, packets: &[Vec<u8>]) {
    let want = probe(clip(), "v");
    let (announced, got, mut d) = depacketize(sdp, packets);
    let Codec::H264(h) = &announced.tracks[0].codec else {
        panic!("not H.264: {sdp}")
    };
    assert_eq!((h.width, h.height), (640, 360));
    compare("h264", &got, &want, 90_000);
    assert!(want.iter().filter(|p| p.key).count() >= 3);
    // The parameter sets ffmpeg announced are the ones in use: no in-band change.
    assert_eq!(d.parameter_sets_changed(), None);
}

/// 1200-byte packets: ffmpeg aggregates several AUs per packet (RFC 3640 §3.2.2).
#[test]
fn aac_aggregated_from_ffmpeg_rtp_matches_ffprobe_frame_by_frame() {
    let (sdp, packets) = stream_over_rtp(clip(), "0:a", 1200);
    let frames = check_aac(&sdp, &packets);
    assert!(
        packets.len() < frames,
        "{} packets for {frames} AUs",
        packets.len()
    );
}

/// 200-byte packets: most AUs are larger, so ffmpeg fragments them (RFC 3640 §3.2.3).
#[test]
fn aac_fragmented_from_ffmpeg_rtp_matches_ffprobe_frame_by_frame() {
    let (sdp, packets) = stream_over_rtp(clip(), "0:a", 200);
    let fragments = packets
        .iter()
        .filter(|p| p.get(1).is_some_and(|b| b & 0x80 == 0))
        .count();
    assert!(fragments > 0, "ffmpeg fragmented no AU");
    check_aac(&sdp, &packets);
}

/// Checks ffmpeg's AAC packets against ffprobe; returns how many AUs they carried.
fn check_aac(sdp: &str, packets: &[Vec<u8>]) -> usize {
    let want = probe(clip(), "a");
    let (announced, got, _) = depacketize(sdp, packets);
    let Codec::Aac(a) = &announced.tracks[0].codec else {
        panic!("not AAC: {sdp}")
    };
    assert_eq!(
        (a.sample_rate_hz, a.channels, a.object_type),
        (48_000, 2, 2)
    );
    // ffmpeg's RTP muxer never flushes the AUs it is still aggregating when the input ends
    // (rtpenc.c's trailer sends none of rtpenc_aac.c's buffer), so the last few AUs of the
    // file may not be sent: compare with the AUs that were, counted by the tests' own
    // AU-header reader, and make sure at most a packet's worth is missing.
    let sent: usize = packets.iter().map(|p| common::aac_units_completed(p)).sum();
    assert!(
        sent <= want.len() && sent + 8 >= want.len(),
        "ffmpeg sent {sent} of {} AUs",
        want.len()
    );
    compare("aac", &got, &want[..sent], 48_000);
    sent
}

/// Runs `ffmpeg -f rtsp` against a listener here that answers OPTIONS and keeps the
/// ANNOUNCE body, then closes; returns the body.
fn capture_announce(clip: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "ffmpeg closed before ANNOUNCE");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if body.len() < len {
                continue;
            }
            let cseq = head
                .lines()
                .find_map(|l| l.strip_prefix("CSeq: "))
                .unwrap()
                .trim()
                .to_string();
            if head.starts_with("OPTIONS") {
                write!(
                    conn,
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: ANNOUNCE, SETUP, RECORD\r\n\r\n"
                )
                .unwrap();
                buf.drain(..head.len() + 4 + len);
                continue;
            }
            assert!(head.starts_with("ANNOUNCE "), "{head}");
            return body[..len].to_string();
        }
    });
    // ffmpeg fails once the connection closes after ANNOUNCE; only the body matters.
    let _ = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "quiet", "-i"])
            .arg(clip)
            .args(["-c", "copy", "-f", "rtsp"])
            .arg(format!("rtsp://127.0.0.1:{port}/live/test")),
        Duration::from_secs(30),
    );
    server.join().unwrap()
}

#[test]
fn ffmpeg_rtsp_announce_describes_the_clip_as_ffprobe_does() {
    let clip = clip();
    let sdp = capture_announce(clip);
    let a = parse_announce(&sdp).unwrap_or_else(|e| panic!("{e}: {sdp}"));
    assert!(a.skipped.is_empty(), "{:?}", a.skipped);
    assert_eq!(a.tracks.len(), 2, "{sdp}");
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height,sample_rate,channels",
                "-of",
                "json",
            ])
            .arg(clip),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let streams = v["streams"].as_array().unwrap();
    let Codec::H264(h) = &a.tracks[0].codec else {
        panic!("first track not H.264: {sdp}")
    };
    assert_eq!(streams[0]["codec_name"], "h264");
    assert_eq!(
        (i64::from(h.width), i64::from(h.height)),
        (
            streams[0]["width"].as_i64().unwrap(),
            streams[0]["height"].as_i64().unwrap()
        )
    );
    let Codec::Aac(c) = &a.tracks[1].codec else {
        panic!("second track not AAC: {sdp}")
    };
    assert_eq!(streams[1]["codec_name"], "aac");
    assert_eq!(
        c.sample_rate_hz.to_string(),
        streams[1]["sample_rate"].as_str().unwrap()
    );
    assert_eq!(
        i64::from(c.channels),
        streams[1]["channels"].as_i64().unwrap()
    );
    assert_eq!(
        (a.tracks[0].control.as_str(), a.tracks[1].control.as_str()),
        ("streamid=0", "streamid=1")
    );
}
