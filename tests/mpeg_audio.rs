//! MPEG audio (MP3) from MP4 and Matroska over RTSP as RFC 2250 §3.5 `MPA` (static payload
//! type 14, RFC 3551 §4.5.13; issue 18, docs/design/reach.md "Other audio: MP3 and G.711"),
//! against independent implementations: ffprobe and ffmpeg (libavformat's MPA depacketizer,
//! libavcodec's MP3 decoder), GStreamer (`rtpmpadepay`, `mpegaudioparse`, `avdec_mp3`), and a
//! packet-level check of the RTP the server sends. The media are made by ffmpeg with
//! libmp3lame (an H.264 picture alongside) in the test setup.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::players::{ended_cleanly_after_eos, ffmpeg_decode_stream_without_warnings, ffprobe};
use common::{gst_play, parse_rtp, run_with_timeout, RawRtsp, Server};
use shardcast::media::track::{Codec, MpegAudioConfig, Track, TrackKind};
use shardcast::media::MediaFile;

/// The generated files: stream name and extension.
const FILES: [(&str, &str); 2] = [("mp3mp4", "mp4"), ("mp3mkv", "mkv")];
/// Sampling rate of the generated tone.
const RATE: u32 = 48_000;

/// The media directory with `mp3mp4.mp4` and `mp3mkv.mkv` (made once per test run).
fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mpeg-audio-media");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, ext) in FILES {
            make_clip(&dir.join(format!("{name}.{ext}")), ext, false);
        }
        make_clip(&dir.join("mp3only.mkv"), "mkv", true);
        dir
    })
}

/// 3 s of `testsrc2` in H.264 (no B-frames) with a 440 Hz MP3 tone (libmp3lame, 48 kHz mono).
/// With `audio_only`, the tone alone (`-vn`).
fn make_clip(path: &Path, ext: &str, audio_only: bool) {
    let part = path.with_extension(format!("{}.part.{ext}", std::process::id()));
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:sample_rate=48000",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-bf",
        "0",
        "-c:a",
        "libmp3lame",
    ]);
    if audio_only {
        cmd.arg("-vn");
    }
    cmd.arg(&part);
    let (ok, _out, err) = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        ok && err.trim().is_empty(),
        "ffmpeg with libmp3lame made {path:?}:\n{err}"
    );
    std::fs::rename(&part, path).unwrap();
}

fn path_of(name: &str, ext: &str) -> PathBuf {
    media_dir().join(format!("{name}.{ext}"))
}

fn open(name: &str, ext: &str) -> MediaFile {
    MediaFile::open(&path_of(name, ext), name).unwrap()
}

fn audio(media: &MediaFile) -> (usize, &Track, MpegAudioConfig) {
    let (k, track) = media
        .index
        .tracks
        .iter()
        .enumerate()
        .find(|(_, t)| t.kind == TrackKind::Audio)
        .expect("the MP3 track is served, not skipped");
    match &track.codec {
        Codec::MpegAudio(c) => (k, track, *c),
        other => panic!("audio is {}", other.name()),
    }
}

fn server() -> Server {
    Server::start(&["--media", media_dir().to_str().unwrap()])
}

/// The number of MP3 packets ffprobe reads from the file.
fn file_frames(name: &str, ext: &str) -> usize {
    let out = ffprobe(&[
        "-select_streams",
        "a:0",
        "-count_packets",
        "-show_entries",
        "stream=nb_read_packets",
        "-of",
        "default=nw=1:nk=1",
        path_of(name, ext).to_str().unwrap(),
    ]);
    out.trim().parse().unwrap()
}

#[test]
fn index_matches_ffprobe_of_the_file() {
    for (name, ext) in FILES {
        let media = open(name, ext);
        assert!(media.index.skipped.is_empty(), "{:?}", media.index.skipped);
        let (_, track, c) = audio(&media);
        assert_eq!((c.sample_rate_hz, c.channels), (RATE, 1), "{name}");
        assert_eq!(track.codec.clock_rate_hz(), 90_000);
        let out = ffprobe(&[
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "default=nw=1",
            path_of(name, ext).to_str().unwrap(),
        ]);
        for want in ["codec_name=mp3", "sample_rate=48000", "channels=1"] {
            assert!(out.lines().any(|l| l == want), "{name}: {want} in {out}");
        }
        assert_eq!(track.samples.len(), file_frames(name, ext), "{name}");
    }
}

#[test]
fn ffprobe_over_rtsp_reports_mp3() {
    let server = server();
    for (name, _) in FILES {
        let out = ffprobe(&[
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name,sample_rate",
            "-of",
            "default=nw=1",
            &server.url(name),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        for want in ["codec_name=h264", "codec_name=mp3", "sample_rate=48000"] {
            assert!(lines.contains(&want), "{name}: {want} in\n{out}");
        }
    }
}

#[test]
fn ffmpeg_decodes_every_audio_frame_over_tcp_and_udp_without_warnings() {
    let server = server();
    for (name, ext) in FILES {
        let frames = file_frames(name, ext);
        for transport in ["tcp", "udp"] {
            let got = ffmpeg_decode_stream_without_warnings(&server.url(name), transport, "0:a");
            assert_eq!(got.frames, frames, "{name} over {transport}");
            let secs = frames as f64 * 1152.0 / f64::from(RATE);
            assert!(
                (got.end_secs - secs).abs() < 0.1,
                "{name} over {transport}: {} vs {secs}",
                got.end_secs
            );
        }
    }
}

#[test]
fn gstreamer_depayloads_and_decodes_mp3_to_eos() {
    for element in ["rtpmpadepay", "mpegaudioparse", "avdec_mp3"] {
        let (ok, _, err) = run_with_timeout(
            Command::new("gst-inspect-1.0").arg(element),
            Duration::from_secs(20),
        );
        assert!(ok, "GStreamer's {element} is installed: {err}");
    }
    let server = server();
    for (name, _) in FILES {
        for protocol in ["tcp", "udp"] {
            let url = server.url(name);
            let (ok, out, err) = gst_play(
                &url,
                &[&format!("protocols={protocol}")],
                &[
                    (
                        "audio",
                        "queue ! rtpmpadepay ! mpegaudioparse ! avdec_mp3 ! fakesink",
                    ),
                    ("video", "queue ! rtph264depay ! fakesink"),
                ],
                &[],
                false,
                Duration::from_secs(40),
            );
            assert!(
                out.contains("Got EOS from element"),
                "{name} over {protocol}: no EOS:\n{out}\n{err}"
            );
            assert!(
                ended_cleanly_after_eos(ok, &out, &err),
                "{name} over {protocol}:\n{out}\n{err}"
            );
        }
    }
}

#[test]
fn catalog_lists_mp3_and_hls_refuses_it() {
    let server = server();
    let streams = server.http_get("/api/v1/streams").json();
    let list = streams["streams"].as_array().unwrap();
    for (name, _) in FILES {
        let s = list.iter().find(|s| s["name"] == name).expect("listed");
        assert_eq!(
            s["codecs"],
            serde_json::json!(["H.264", "MPEG audio"]),
            "{s}"
        );
        assert_eq!(s["tracks"][1]["sample_rate_hz"], RATE, "{s}");
        assert!(s["hls_url"].is_null(), "no HLS offered: {s}");
        let hls = common::http_request(
            server.hls.unwrap(),
            "GET",
            &format!("/hls/{name}/index.m3u8"),
            &[],
            b"",
        );
        assert_eq!(hls.status, 415, "{}", hls.text());
        assert!(hls.text().contains("MPEG audio"), "{}", hls.text());
        assert!(
            s["webrtc_unavailable"].is_null(),
            "WHEP sends the video: {s}"
        );
    }
    // MP3 alone: nothing WebRTC carries, refused with the reason.
    let s = list
        .iter()
        .find(|s| s["name"] == "mp3only")
        .expect("listed");
    assert_eq!(s["codecs"], serde_json::json!(["MPEG audio"]), "{s}");
    assert!(s["whep_url"].is_null(), "{s}");
    let why = s["webrtc_unavailable"].as_str().unwrap();
    assert!(why.contains("MPEG audio (MP3)"), "{why}");
}

/// RFC 2250 §3.5 / RFC 3551 §4.5.13 on the wire: PT 14, the 4-byte header (MBZ 0,
/// Frag_offset 0 for these whole frames), no marker, timestamps the file's frame times at
/// 90 kHz, and payloads the file's frames byte for byte, in order.
#[test]
fn rtp_packets_follow_rfc2250() {
    let server = server();
    for (name, ext) in FILES {
        let media = open(name, ext);
        let (k, track, _) = audio(&media);
        let bytes = std::fs::read(path_of(name, ext)).unwrap();
        let url = server.url(name);
        let mut c = RawRtsp::connect(server.addr);
        let (d, session) = c.setup_interleaved(&url, &[k]);
        let sdp = String::from_utf8(d.body.clone()).unwrap();
        assert!(
            sdp.contains("m=audio 0 RTP/AVP 14\r\na=rtpmap:14 MPA/90000\r\n"),
            "{sdp}"
        );
        let p = c.request("PLAY", &url, &[("Session", &session)]);
        assert_eq!(p.status, 200);
        let first = track.dts_ticks(&track.samples[0]);
        let mut ts0 = None;
        for (n, s) in track.samples.iter().enumerate() {
            let frame = loop {
                let (ch, frame) = c.read_frame().expect("a packet per frame");
                if ch == 0 {
                    break frame;
                }
            };
            let rtp = parse_rtp(&frame).expect("RTP");
            assert_eq!(rtp.pt, 14, "{name} frame {n}");
            assert!(!rtp.marker, "{name} frame {n}: no silence, no marker");
            assert_eq!(frame[0] & 0x3f, 0, "no padding, extension or CSRCs");
            assert_eq!(
                &frame[12..16],
                &[0, 0, 0, 0],
                "{name} frame {n}: MBZ, offset 0"
            );
            let at = s.offset as usize;
            assert_eq!(
                &frame[16..],
                &bytes[at..at + s.len as usize],
                "{name} frame {n}: the file's frame"
            );
            let ts0 = *ts0.get_or_insert(rtp.ts);
            let want = (track.dts_ticks(s) - first) as f64 * 90_000.0 / f64::from(track.timescale);
            let got = f64::from(rtp.ts.wrapping_sub(ts0));
            assert!(
                (got - want).abs() <= 1.0,
                "{name} frame {n}: ts {got} vs file {want}"
            );
        }
    }
}
