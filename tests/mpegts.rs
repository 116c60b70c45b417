//! MPEG-TS files over RTSP as RTP/MP2T (RFC 2250 §2; issue 18, docs/design/reach.md
//! "Codecs"), against independent implementations: ffprobe and ffmpeg (libavformat's RTP
//! MP2T handler and TS demuxer), GStreamer (`rtpmp2tdepay ! tsdemux`), and a packet-level
//! check of the RTP the server sends against the file's own bytes and PCRs, parsed here.
//! Damaged files (garbage, bad sync bytes, PES lengths past the end, PCR jumps, a truncated
//! file, random bytes, no PCR) are served or refused without disturbing another viewer. The
//! media are made by ffmpeg in the test setup.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{parse_rtp, run_with_timeout, RawRtsp, Rtp, Server};
use shardcast::media::track::Codec;
use shardcast::media::ts::parse_ts_with_stats;

/// Video frames in the clip: 4 s at 25 fps.
const FRAMES: usize = 100;

/// The media directory (made once per test run in Cargo's temporary directory for
/// integration tests): `clip.ts` and the damaged variants of it.
fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mpegts-media");
        std::fs::create_dir_all(&dir).unwrap();
        let clip = dir.join("clip.ts");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:sample_rate=48000",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
            clip.to_str().unwrap(),
        ]);
        let shifted = dir.join("shifted.tmp");
        ffmpeg(&[
            "-i",
            clip.to_str().unwrap(),
            "-c",
            "copy",
            "-output_ts_offset",
            "100",
            "-f",
            "mpegts",
            shifted.to_str().unwrap(),
        ]);
        let bytes = std::fs::read(&clip).unwrap();
        let later = std::fs::read(&shifted).unwrap();
        std::fs::remove_file(&shifted).unwrap();
        for (name, data) in damaged(&bytes, &later) {
            std::fs::write(dir.join(format!("{name}.ts")), data).unwrap();
        }
        dir
    })
}

/// Runs ffmpeg quietly; panics on failure or any error output.
fn ffmpeg(args: &[&str]) {
    let (ok, _out, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
            .args(args),
        Duration::from_secs(120),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg {args:?}:\n{err}");
}

/// Packet `k` of a clean TS file.
fn pkt(bytes: &[u8], k: usize) -> &[u8] {
    &bytes[k * 188..(k + 1) * 188]
}

/// The damaged variants: (name, bytes).
fn damaged(clip: &[u8], later: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let n = clip.len() / 188;
    // Garbage (some of it 0x47) between packets 100 and 101, and packet 300's sync byte lost.
    let mut garbage = clip[..101 * 188].to_vec();
    garbage.extend_from_slice(&[0x47, 0x00, 0x47, 0x12, 0x34, 0x47, 0x47, 0xff, 0x00, 0x47]);
    garbage.extend_from_slice(&clip[101 * 188..]);
    garbage[10 + 300 * 188] = 0x00;
    // The last PES of the audio PID says it is 65535 bytes long.
    let mut pes_past_end = clip.to_vec();
    let last_pes = (0..n)
        .rev()
        .find(|&k| {
            let p = pkt(clip, k);
            p[1] & 0x40 != 0 && payload(p).starts_with(&[0, 0, 1, 0xc0])
        })
        .expect("an audio PES");
    let at = last_pes * 188 + (188 - payload(pkt(clip, last_pes)).len()) + 4;
    pes_past_end[at..at + 2].copy_from_slice(&[0xff, 0xff]);
    // The clip, then the clip 100 s later (a jump forward), then the clip again (backwards).
    let mut jumps = clip.to_vec();
    jumps.extend_from_slice(&later[..later.len() / 188 * 188]);
    jumps.extend_from_slice(clip);
    // Cut inside a packet.
    let truncated = clip[..clip.len() - 1000].to_vec();
    // Random bytes.
    let mut lcg = 0x2545_f491_u32;
    let random = (0..100_000)
        .map(|_| {
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (lcg >> 24) as u8
        })
        .collect();
    // Every PCR flag cleared.
    let mut no_pcr = clip.to_vec();
    for k in 0..n {
        let p = &mut no_pcr[k * 188..(k + 1) * 188];
        if p[3] & 0x20 != 0 && p[4] > 0 {
            p[5] &= !0x10;
        }
    }
    vec![
        ("garbage", garbage),
        ("pes_past_end", pes_past_end),
        ("jumps", jumps),
        ("truncated", truncated),
        ("random", random),
        ("no_pcr", no_pcr),
    ]
}

/// The payload of a TS packet (after the adaptation field).
fn payload(p: &[u8]) -> &[u8] {
    let control = (p[3] >> 4) & 3;
    let start = if control & 2 != 0 {
        5 + usize::from(p[4])
    } else {
        4
    };
    if control & 1 == 0 || start > 188 {
        return &[];
    }
    &p[start..]
}

/// What the test reads of a clean file itself (ISO/IEC 13818-1 §2.4.3): per packet the PID,
/// the random access indicator and the PCR base.
struct TsInfo {
    pids: Vec<u16>,
    rai: Vec<bool>,
    pcrs: Vec<(usize, u64)>,
}

fn ts_info(bytes: &[u8]) -> TsInfo {
    let mut info = TsInfo {
        pids: Vec::new(),
        rai: Vec::new(),
        pcrs: Vec::new(),
    };
    for (k, p) in bytes.chunks_exact(188).enumerate() {
        assert_eq!(p[0], 0x47);
        info.pids.push(u16::from_be_bytes([p[1] & 0x1f, p[2]]));
        let af = p[3] & 0x20 != 0 && p[4] > 0;
        info.rai.push(af && p[5] & 0x40 != 0);
        if af && p[5] & 0x10 != 0 {
            let b = &p[6..11];
            let base = u64::from(b[0]) << 25
                | u64::from(b[1]) << 17
                | u64::from(b[2]) << 9
                | u64::from(b[3]) << 1
                | u64::from(b[4] >> 7);
            info.pcrs.push((k * 188, base));
        }
    }
    info
}

/// The PCR-interpolated time (90 kHz, from the first PCR) of byte `at` of a file with one
/// continuous timeline.
fn pcr_time(pcrs: &[(usize, u64)], at: usize) -> f64 {
    let t0 = pcrs[0].1 as f64;
    let k = pcrs.iter().rposition(|&(o, _)| o <= at);
    let Some(k) = k else { return 0.0 };
    let (a, b) = if k + 1 < pcrs.len() {
        (pcrs[k], pcrs[k + 1])
    } else {
        (pcrs[k - 1], pcrs[k])
    };
    let rate = (b.1 - a.1) as f64 / (b.0 - a.0) as f64;
    pcrs[k].1 as f64 - t0 + (at - pcrs[k].0) as f64 * rate
}

/// Waits up to 5 s for a server log line holding both `a` and `b`.
fn log_line_with(server: &Server, a: &str, b: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = server.log_lines();
        if lines.iter().any(|l| l.contains(a) && l.contains(b)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {a:?} and {b:?}:\n{}",
            lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn server() -> Server {
    Server::start_logged(&["--media", media_dir().to_str().unwrap()])
}

fn clip_bytes() -> Vec<u8> {
    std::fs::read(media_dir().join("clip.ts")).unwrap()
}

/// One received RTP packet.
struct Packet {
    rtp: Rtp,
    payload: Vec<u8>,
    at: Instant,
}

/// DESCRIBE, SETUP (TCP interleaved), PLAY with `range`; reads RTP until `bytes` payload
/// bytes arrived. Returns the SDP, the PLAY response and the packets.
fn raw_play(
    server: &Server,
    name: &str,
    range: Option<&str>,
    bytes: usize,
) -> (String, common::RtspResponse, Vec<Packet>) {
    let url = server.url(name);
    let mut c = RawRtsp::connect(server.addr);
    let (d, session) = c.setup_interleaved(&url, &[0]);
    let sdp = String::from_utf8(d.body.clone()).unwrap();
    let mut headers = vec![("Session", session.as_str())];
    headers.extend(range.map(|r| ("Range", r)));
    let p = c.request("PLAY", &url, &headers);
    assert_eq!(p.status, 200);
    let mut packets = Vec::new();
    let mut got = 0;
    while got < bytes {
        let (ch, frame) = c.read_frame().expect("media until the end of the file");
        if ch != 0 {
            continue;
        }
        let rtp = parse_rtp(&frame).expect("RTP");
        got += frame.len() - 12;
        packets.push(Packet {
            rtp,
            payload: frame[12..].to_vec(),
            at: Instant::now(),
        });
    }
    (sdp, p, packets)
}

/// Per-frame CRCs of the first video stream ffmpeg decodes from `input` (extra input options
/// first), failing on any warning.
fn framecrcs(input: &str, options: &[&str]) -> Vec<String> {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "warning"])
            .args(options)
            .args(["-i", input, "-map", "0:v", "-f", "framecrc", "-"]),
        Duration::from_secs(40),
    );
    assert!(ok, "ffmpeg {input}: {err}");
    assert!(err.trim().is_empty(), "ffmpeg warned on {input}:\n{err}");
    out.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn index_covers_the_file_with_runs_timed_by_its_pcrs() {
    let path = media_dir().join("clip.ts");
    let bytes = clip_bytes();
    let (index, stats) = parse_ts_with_stats(&bytes).unwrap();
    assert_eq!(stats, Default::default(), "a clean file");
    let t = &index.tracks[0];
    let Codec::Mp2t(cfg) = &t.codec else {
        panic!("{}", t.codec.name())
    };
    // ffprobe's view of the program.
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=id,codec_name",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "{err}");
    // ffprobe lists the streams under the program and again on their own.
    let want: std::collections::BTreeSet<&str> =
        out.lines().filter(|l| !l.trim().is_empty()).collect();
    let want: Vec<String> = want.into_iter().map(str::to_owned).collect();
    let mut got: Vec<String> = cfg
        .streams
        .iter()
        .map(|s| {
            let name = match s.stream_type {
                0x1b => "h264",
                0x0f => "aac",
                _ => "other",
            };
            format!("{name},{:#x}", s.pid)
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    let info = ts_info(&bytes);
    let mut next = 0;
    for s in &t.samples {
        assert_eq!(s.offset as usize, next);
        next += s.len as usize;
        let want = pcr_time(&info.pcrs, s.offset as usize);
        assert!((s.dts as f64 - want).abs() <= 1.0, "{} vs {want}", s.dts);
    }
    assert_eq!(next, bytes.len());
    let secs = index.duration().as_secs_f64();
    assert!((4.0..5.0).contains(&secs), "duration {secs}");
}

#[test]
fn ffprobe_over_rtsp_sees_h264_and_aac_inside() {
    let server = server();
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate",
            "-of",
            "default=nw=1",
            &server.url("clip"),
        ]),
        Duration::from_secs(30),
    );
    assert!(ok && err.trim().is_empty(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "codec_name=h264",
        "width=320",
        "height=240",
        "codec_name=aac",
        "sample_rate=48000",
    ] {
        assert!(lines.contains(&want), "{want} in\n{out}");
    }
}

/// libavformat's RTP MP2T handler feeds its TS demuxer packet by packet and does not flush
/// it at the end of an RTSP session: the last video PES (length 0, "unbounded", §2.4.3.7)
/// only completes at the next PES start, so ffmpeg over RTSP gets every frame but the last
/// in decode order — from any server (the RTP test shows every byte of the file arrives).
/// With B-frames that frame is shown a little before the end. Every other frame is decoded,
/// bit-exact with the file's decode.
#[test]
fn ffmpeg_decodes_every_frame_over_udp_and_tcp_without_warnings() {
    let server = server();
    let file = framecrcs(media_dir().join("clip.ts").to_str().unwrap(), &[]);
    assert_eq!(file.len(), FRAMES);
    for transport in ["udp", "tcp"] {
        let got = framecrcs(&server.url("clip"), &["-rtsp_transport", transport]);
        assert_eq!(got.len(), FRAMES - 1, "over {transport}");
        let missing = (0..FRAMES - 1)
            .find(|&i| got[i] != file[i])
            .unwrap_or(FRAMES - 1);
        assert!(
            missing >= FRAMES - 4,
            "over {transport}: frame {missing} missing"
        );
        assert_eq!(got[missing..], file[missing + 1..], "over {transport}");
    }
}

/// Per-buffer checksums of GStreamer decoding `src` (a source element and its properties
/// followed by the elements that make TS of it) with `tsdemux`, `avdec_h264` and
/// `avdec_aac`, failing on any warning or error.
fn gst_checksums(src: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = src.to_vec();
    args.extend([
        "!",
        "tsdemux",
        "name=d",
        "d.",
        "!",
        "queue",
        "!",
        "h264parse",
        "!",
        "avdec_h264",
        "!",
        "checksumsink",
        "d.",
        "!",
        "queue",
        "!",
        "aacparse",
        "!",
        "avdec_aac",
        "!",
        "fakesink",
    ]);
    let (ok, out, err) = run_with_timeout(
        Command::new("gst-launch-1.0")
            .env("GST_DEBUG", "*:2")
            .env("GST_DEBUG_NO_COLOR", "1")
            .args(&args),
        Duration::from_secs(40),
    );
    assert!(ok, "gst-launch {src:?}:\n{out}\n{err}");
    assert!(out.contains("Got EOS"), "no EOS {src:?}:\n{out}\n{err}");
    let complaints: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        // filesrc's start-up note, and rtspsrc's shutdown after EOS (tests/common/players.rs).
        .filter(|l| !l.contains("pad not activated yet"))
        .filter(|l| !(l.contains(" rtspsrc ") && l.trim_end().ends_with("interrupted")))
        .collect();
    assert!(complaints.is_empty(), "{src:?}:\n{}", complaints.join("\n"));
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some(t), Some(h), None) if t.contains(':') && h.len() == 40 => Some(h.to_owned()),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn gstreamer_decodes_every_frame_to_eos() {
    for element in ["rtpmp2tdepay", "tsdemux", "avdec_h264"] {
        let (ok, _, err) = run_with_timeout(
            Command::new("gst-inspect-1.0").arg(element),
            Duration::from_secs(20),
        );
        assert!(ok, "GStreamer's {element} is installed: {err}");
    }
    let server = server();
    let location = format!("location={}", media_dir().join("clip.ts").display());
    let file = gst_checksums(&["filesrc", &location]);
    assert_eq!(file.len(), FRAMES);
    let url = format!("location={}", server.url("clip"));
    for protocol in ["tcp", "udp"] {
        let protocols = format!("protocols={protocol}");
        let got = gst_checksums(&[
            "rtspsrc",
            &url,
            &protocols,
            "buffer-mode=none",
            "!",
            "rtpmp2tdepay",
        ]);
        assert_eq!(got, file, "over {protocol}");
    }
}

#[test]
fn rtp_packets_follow_rfc2250() {
    let server = server();
    let bytes = clip_bytes();
    let info = ts_info(&bytes);
    let (sdp, _, packets) = raw_play(&server, "clip", None, bytes.len());
    // RFC 3551 §6: static payload type 33, MP2T/90000; one media section.
    assert!(
        sdp.contains("m=video 0 RTP/AVP 33\r\na=rtpmap:33 MP2T/90000\r\n"),
        "{sdp}"
    );
    assert_eq!(sdp.matches("m=").count(), 1, "{sdp}");
    let mut at = 0;
    let ts0 = packets[0].rtp.ts;
    for (k, p) in packets.iter().enumerate() {
        assert_eq!(p.rtp.pt, 33);
        assert!(!p.rtp.marker, "§2: the timeline is continuous");
        assert_eq!(p.rtp.seq, packets[0].rtp.seq.wrapping_add(k as u16));
        // Seven whole TS packets, the last packet possibly fewer.
        if k + 1 < packets.len() {
            assert_eq!(p.payload.len(), 7 * 188, "packet {k}");
        } else {
            assert!(p.payload.len().is_multiple_of(188) && !p.payload.is_empty());
        }
        // The file's bytes, in order, straight.
        assert_eq!(p.payload[..], bytes[at..at + p.payload.len()], "packet {k}");
        // §2: the 90 kHz time of the payload's first byte, from the file's PCRs.
        let want = pcr_time(&info.pcrs, at);
        let got = f64::from(p.rtp.ts.wrapping_sub(ts0));
        assert!(
            (got - want).abs() <= 1.0,
            "packet {k}: ts {got} vs PCR {want}"
        );
        at += p.payload.len();
    }
    assert_eq!(at, bytes.len());
    // Paced by the PCR: the span of the PCR timeline in wall time, not a burst.
    let pcr_span = (info.pcrs.last().unwrap().1 - info.pcrs[0].1) as f64 / 90_000.0;
    let wall = (packets.last().unwrap().at - packets[0].at).as_secs_f64();
    assert!(
        wall > pcr_span - 0.3 && wall < pcr_span + 1.0,
        "sent over {wall} s for {pcr_span} s of PCR"
    );
}

#[test]
fn seek_lands_on_the_last_random_access_point_before() {
    let server = server();
    let bytes = clip_bytes();
    let info = ts_info(&bytes);
    let video_pid = info.pids[info.rai.iter().position(|&r| r).unwrap()];
    for target in [1.5, 2.5, 3.2] {
        let range = format!("npt={target}-");
        let (_, play, packets) = raw_play(&server, "clip", Some(&range), 7 * 188);
        let first = &packets[0].payload;
        let at = bytes
            .chunks(7 * 188)
            .position(|run| run == first.as_slice())
            .expect("a run of the file")
            * 7
            * 188;
        let start: f64 = play
            .header("Range")
            .unwrap()
            .strip_prefix("npt=")
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let t = pcr_time(&info.pcrs, at) / 90_000.0;
        assert!(
            (start - t).abs() < 0.002,
            "{target}: Range {start} vs run at {t}"
        );
        assert!(start <= target && start > target - 1.1, "{target}: {start}");
        // The run holds a random access point of the video, and none lies between it and
        // the target.
        let k0 = at / 188;
        assert!((k0..k0 + 7).any(|k| info.rai[k] && info.pids[k] == video_pid));
        let later = (k0 + 7..info.rai.len())
            .filter(|&k| info.rai[k] && info.pids[k] == video_pid)
            .map(|k| pcr_time(&info.pcrs, k / 7 * 7 * 188) / 90_000.0)
            .next()
            .unwrap_or(f64::INFINITY);
        assert!(later > target, "{target}: a later keyframe at {later}");
    }
}

#[test]
fn catalog_lists_mpegts_and_hls_and_webrtc_refuse_it() {
    let server = server();
    let streams = server.http_get("/api/v1/streams").json();
    let list = streams["streams"].as_array().unwrap();
    let s = list.iter().find(|s| s["name"] == "clip").expect("listed");
    assert_eq!(s["codecs"], serde_json::json!(["MPEG-TS"]), "{s}");
    assert!(s["hls_url"].is_null(), "no HLS offered: {s}");
    assert!(s["whep_url"].is_null(), "no WHEP offered: {s}");
    let why = s["webrtc_unavailable"].as_str().unwrap();
    assert!(why.contains("MPEG transport stream"), "{why}");
    let hls = common::http_request(server.hls.unwrap(), "GET", "/hls/clip/index.m3u8", &[], b"");
    assert_eq!(hls.status, 415, "{}", hls.text());
    assert!(hls.text().contains("MPEG-TS"), "{}", hls.text());
}

#[test]
fn damaged_files_are_served_or_refused_and_another_viewer_keeps_playing() {
    let server = server();
    let clip = clip_bytes();
    let dir = media_dir();
    // A viewer of the clean clip, playing through all of the below.
    let viewer = {
        let addr = server.addr;
        let n = clip.len();
        std::thread::spawn(move || {
            let mut c = RawRtsp::connect(addr);
            let url = format!("rtsp://{addr}/clip");
            let (_, session) = c.setup_interleaved(&url, &[0]);
            assert_eq!(
                c.request("PLAY", &url, &[("Session", &session)]).status,
                200
            );
            let mut got = Vec::new();
            while got.len() < n {
                let (ch, frame) = c.read_frame().expect("the clean clip plays on");
                if ch == 0 {
                    got.extend_from_slice(&frame[12..]);
                }
            }
            got
        })
    };

    // Served: the packets that are whole and start with a sync byte, in order.
    let garbage = std::fs::read(dir.join("garbage.ts")).unwrap();
    let (index, stats) = parse_ts_with_stats(&garbage).unwrap();
    assert_eq!(stats.garbage_bytes, 10 + 188, "{stats:?}");
    assert_eq!(stats.resyncs, 2);
    let mut want = clip.clone();
    want.drain(300 * 188..301 * 188);
    let (_, _, packets) = raw_play(&server, "garbage", None, want.len());
    let got: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(
        got, want,
        "garbage and the packet with a bad sync byte left out"
    );
    log_line_with(&server, "garbage.ts", "skipped bytes off the packet grid");
    assert!(index.tracks[0].samples.len() > 1);

    for name in ["pes_past_end", "truncated"] {
        let bytes = std::fs::read(dir.join(format!("{name}.ts"))).unwrap();
        let whole = bytes.len() / 188 * 188;
        let (_, _, packets) = raw_play(&server, name, None, whole);
        let got: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
        assert_eq!(got[..], bytes[..whole], "{name}");
    }

    // PCR jumps: a continuous timeline, three clips long.
    let jumps = std::fs::read(dir.join("jumps.ts")).unwrap();
    let (index, stats) = parse_ts_with_stats(&jumps).unwrap();
    assert_eq!(stats.pcr_jumps, 2, "{stats:?}");
    let secs = index.duration().as_secs_f64();
    assert!((12.0..14.0).contains(&secs), "{secs}");
    let (sdp, _, packets) = raw_play(&server, "jumps", None, 7 * 188 * 40);
    assert!(sdp.contains("a=range:npt=0-1"), "{sdp}");
    let ts: Vec<u32> = packets
        .iter()
        .map(|p| p.rtp.ts.wrapping_sub(packets[0].rtp.ts))
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));

    // Refused with the reason, in one log line each.
    for (name, why) in [("random", "mpeg"), ("no_pcr", "fewer than two PCRs")] {
        let mut c = RawRtsp::connect(server.addr);
        let d = c.request("DESCRIBE", &server.url(name), &[]);
        assert_eq!(d.status, 404, "{name}");
        log_line_with(&server, &format!("{name}.ts"), why);
    }

    let got = viewer.join().expect("the other viewer");
    assert_eq!(got, clip, "the clean clip played whole meanwhile");
}

/// A transport stream cannot trick play (a run is seven TS packets, not a frame): `Scale: 4`
/// is answered with `Scale: 1` and the runs go out in order, byte for byte.
#[test]
fn scale_is_answered_with_one_and_the_stream_plays_on() {
    let server = server();
    let bytes = clip_bytes();
    let url = server.url("clip");
    let mut c = RawRtsp::connect(server.addr);
    let (_, session) = c.setup_interleaved(&url, &[0]);
    let p = c.request("PLAY", &url, &[("Session", &session), ("Scale", "4")]);
    assert_eq!(p.status, 200);
    assert_eq!(p.header("Scale"), Some("1"));
    let mut got = Vec::new();
    while got.len() < 20 * 7 * 188 {
        let (ch, frame) = c.read_frame().expect("media");
        if ch == 0 {
            got.extend_from_slice(&frame[12..]);
        }
    }
    assert_eq!(got, bytes[..got.len()], "the file's runs in order");
}
