//! G.711 µ-law / A-law from Matroska (`A_MS/ACM` with a WAVEFORMATEX) over RTSP as RFC 3551
//! §4.5.14 `PCMU` / `PCMA` (static payload types 0 and 8 at 8000 Hz mono; docs/design/reach.md
//! "Other audio: MP3 and G.711"), against independent implementations: ffprobe and ffmpeg
//! (libavformat's RTP/PCM depacketizer, libavcodec's G.711 decoders), GStreamer
//! (`rtppcmudepay`/`mulawdec`, `rtppcmadepay`/`alawdec`), and a packet-level check of the RTP
//! the server sends. The media are made by ffmpeg (`pcm_mulaw` / `pcm_alaw`, an H.264 picture
//! alongside) in the test setup.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::players::{ended_cleanly_after_eos, ffprobe};
use common::{gst_play, parse_rtp, run_with_timeout, RawRtsp, Server};
use shardcast::media::track::{Codec, G711Config, G711Law, Track, TrackKind};
use shardcast::media::MediaFile;

/// The generated files: stream name, ffmpeg encoder, ffmpeg raw muxer, RTP payload type,
/// encoding name, GStreamer depayloader and decoder.
struct Clip {
    name: &'static str,
    encoder: &'static str,
    raw_format: &'static str,
    pt: u8,
    encoding: &'static str,
    depay: &'static str,
    dec: &'static str,
    rate: u32,
    channels: u8,
}

impl Clip {
    /// Bytes of a 20 ms piece (RFC 3551 §4.2).
    fn piece(&self) -> usize {
        self.rate as usize / 50 * usize::from(self.channels)
    }
}

/// The third is a dynamic payload type: RFC 3551 §4.5.14 allows G.711 at other rates and
/// channel counts (`a=rtpmap:<pt> PCMA/16000/2`).
const CLIPS: [Clip; 3] = [
    Clip {
        name: "pcmu",
        encoder: "pcm_mulaw",
        raw_format: "mulaw",
        pt: 0,
        encoding: "PCMU",
        depay: "rtppcmudepay",
        dec: "mulawdec",
        rate: 8000,
        channels: 1,
    },
    Clip {
        name: "pcma",
        encoder: "pcm_alaw",
        raw_format: "alaw",
        pt: 8,
        encoding: "PCMA",
        depay: "rtppcmadepay",
        dec: "alawdec",
        rate: 8000,
        channels: 1,
    },
    Clip {
        name: "pcma16k",
        encoder: "pcm_alaw",
        raw_format: "alaw",
        pt: 97,
        encoding: "PCMA",
        depay: "rtppcmadepay",
        dec: "alawdec",
        rate: 16_000,
        channels: 2,
    },
];

/// The media directory with `pcmu.mkv`, `pcma.mkv` and `pcmuonly.mkv` (made once per run).
fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("g711-media");
        std::fs::create_dir_all(&dir).unwrap();
        for c in &CLIPS {
            make_clip(&dir.join(format!("{}.mkv", c.name)), c, false);
        }
        make_clip(&dir.join("pcmuonly.mkv"), &CLIPS[0], true);
        dir
    })
}

/// 3 s of `testsrc2` in H.264 with a 440 Hz tone in the clip's G.711 law, rate and channels;
/// with `audio_only`, the tone alone (`-vn`).
fn make_clip(path: &Path, clip: &Clip, audio_only: bool) {
    let rate = clip.rate.to_string();
    let channels = clip.channels.to_string();
    let part = path.with_extension(format!("{}.part.mkv", std::process::id()));
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
        "sine=f=440:sample_rate=8000",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-bf",
        "0",
        "-c:a",
        clip.encoder,
        "-ar",
        &rate,
        "-ac",
        &channels,
    ]);
    if audio_only {
        cmd.arg("-vn");
    }
    cmd.arg(&part);
    let (ok, _out, err) = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(ok && err.trim().is_empty(), "ffmpeg made {path:?}:\n{err}");
    std::fs::rename(&part, path).unwrap();
}

fn path_of(name: &str) -> PathBuf {
    media_dir().join(format!("{name}.mkv"))
}

fn open(name: &str) -> MediaFile {
    MediaFile::open(&path_of(name), name).unwrap()
}

fn audio(media: &MediaFile) -> (usize, &Track, G711Config) {
    let (k, track) = media
        .index
        .tracks
        .iter()
        .enumerate()
        .find(|(_, t)| t.kind == TrackKind::Audio)
        .expect("the G.711 track is served, not skipped");
    match &track.codec {
        Codec::G711(c) => (k, track, *c),
        other => panic!("audio is {}", other.name()),
    }
}

fn server() -> Server {
    Server::start(&["--media", media_dir().to_str().unwrap()])
}

/// The file's G.711 bytes as ffmpeg copies them out (`-c copy -f mulaw|alaw`).
fn file_audio_bytes(c: &Clip) -> Vec<u8> {
    let out = media_dir().join(format!(
        "{}.{}.{}",
        c.name,
        std::process::id(),
        c.raw_format
    ));
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            path_of(c.name).to_str().unwrap(),
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            c.raw_format,
            out.to_str().unwrap(),
        ]),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg -c copy: {err}");
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    bytes
}

/// Decodes the audio of `input` (a file, or an RTSP URL over `transport`) to 16-bit PCM with
/// `-v warning` and returns the decoded sample count (the framecrc sizes / 2); panics on any
/// warning or error.
fn decoded_samples(input: &str, transport: Option<&str>) -> usize {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "warning"]);
    if let Some(t) = transport {
        cmd.args(["-rtsp_transport", t]);
    }
    cmd.args([
        "-i",
        input,
        "-map",
        "0:a",
        "-c:a",
        "pcm_s16le",
        "-f",
        "framecrc",
        "-",
    ]);
    let (ok, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(40));
    assert!(ok, "ffmpeg failed on {input} ({transport:?}): {err}");
    // ffmpeg notes (at warning level) that a stream gave a channel count but no layout
    // (WAVEFORMATEX has no channel mask; an rtpmap has a count only) and that it took the
    // count's default layout: about the container/SDP kind, not about the data.
    let err: String = err
        .lines()
        .filter(|l| !l.starts_with("Guessed Channel Layout for Input Stream"))
        .collect();
    assert!(
        err.trim().is_empty(),
        "ffmpeg warned on {input} ({transport:?}):\n{err}"
    );
    let mut bytes = 0usize;
    for line in out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        // stream, dts, pts, duration, size, crc
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        bytes += f[4].parse::<usize>().unwrap();
    }
    bytes / 2
}

#[test]
fn index_matches_the_file() {
    for c in &CLIPS {
        let media = open(c.name);
        assert!(media.index.skipped.is_empty(), "{:?}", media.index.skipped);
        let (_, track, g) = audio(&media);
        let law = if c.encoding == "PCMU" {
            G711Law::Mu
        } else {
            G711Law::A
        };
        assert_eq!(
            (g.law, g.sample_rate_hz, g.channels),
            (law, c.rate, c.channels)
        );
        assert_eq!(track.timescale, c.rate);
        assert_eq!(track.codec.clock_rate_hz(), c.rate);
        let out = ffprobe(&[
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "default=nw=1",
            path_of(c.name).to_str().unwrap(),
        ]);
        let codec = format!("codec_name={}", c.encoder);
        let rate = format!("sample_rate={}", c.rate);
        let channels = format!("channels={}", c.channels);
        for want in [&codec, &rate, &channels] {
            assert!(
                out.lines().any(|l| l == want),
                "{}: {want} in {out}",
                c.name
            );
        }
        // 20 ms pieces (160 bytes at 8 kHz mono), each at its exact time on the sampling
        // clock: the pieces tile the file's audio without gaps or overlaps.
        let bytes = file_audio_bytes(c);
        let total: u64 = track.samples.iter().map(|s| u64::from(s.len)).sum();
        assert_eq!(total, bytes.len() as u64, "{}", c.name);
        assert!(track
            .samples
            .iter()
            .all(|s| s.len as usize <= c.piece() && s.len > 0));
        for w in track.samples.windows(2) {
            assert_eq!(
                w[1].dts - w[0].dts,
                u64::from(w[0].len / u32::from(c.channels)),
                "{}: contiguous on the sample clock",
                c.name
            );
        }
    }
}

#[test]
fn ffprobe_over_rtsp_reports_g711() {
    let server = server();
    for c in &CLIPS {
        let out = ffprobe(&[
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "default=nw=1",
            &server.url(c.name),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        let codec = format!("codec_name={}", c.encoder);
        let rate = format!("sample_rate={}", c.rate);
        let channels = format!("channels={}", c.channels);
        for want in ["codec_name=h264", &codec, &rate, &channels] {
            assert!(lines.contains(&want), "{}: {want} in\n{out}", c.name);
        }
    }
}

#[test]
fn ffmpeg_decodes_every_sample_over_tcp_and_udp_without_warnings() {
    let server = server();
    for c in &CLIPS {
        let want = decoded_samples(path_of(c.name).to_str().unwrap(), None);
        let three_secs = 3 * c.rate as usize * usize::from(c.channels);
        assert!(
            want * 100 >= three_secs * 95,
            "{}: {want} samples in the file",
            c.name
        );
        for transport in ["tcp", "udp"] {
            let got = decoded_samples(&server.url(c.name), Some(transport));
            assert_eq!(got, want, "{} over {transport}", c.name);
        }
    }
}

#[test]
fn gstreamer_depayloads_and_decodes_g711_to_eos() {
    let server = server();
    for c in &CLIPS {
        for element in [c.depay, c.dec] {
            let (ok, _, err) = run_with_timeout(
                Command::new("gst-inspect-1.0").arg(element),
                Duration::from_secs(20),
            );
            assert!(ok, "GStreamer's {element} is installed: {err}");
        }
        for protocol in ["tcp", "udp"] {
            let url = server.url(c.name);
            let audio = format!("queue ! {} ! {} ! fakesink", c.depay, c.dec);
            let (ok, out, err) = gst_play(
                &url,
                &[&format!("protocols={protocol}")],
                &[
                    ("audio", &audio),
                    ("video", "queue ! rtph264depay ! fakesink"),
                ],
                &[],
                false,
                Duration::from_secs(40),
            );
            assert!(
                out.contains("Got EOS from element"),
                "{} over {protocol}: no EOS:\n{out}\n{err}",
                c.name
            );
            assert!(
                ended_cleanly_after_eos(ok, &out, &err),
                "{} over {protocol}:\n{out}\n{err}",
                c.name
            );
        }
    }
}

#[test]
fn catalog_lists_g711_and_hls_and_whep_refuse_it() {
    let server = server();
    let streams = server.http_get("/api/v1/streams").json();
    let list = streams["streams"].as_array().unwrap();
    for c in &CLIPS {
        let s = list.iter().find(|s| s["name"] == c.name).expect("listed");
        let codec = format!("G.711 {}", c.encoding);
        assert_eq!(s["codecs"], serde_json::json!(["H.264", codec]), "{s}");
        assert_eq!(s["tracks"][1]["sample_rate_hz"], c.rate, "{s}");
        assert_eq!(s["tracks"][1]["channels"], c.channels, "{s}");
        assert!(s["hls_url"].is_null(), "no HLS offered: {s}");
        let hls = common::http_request(
            server.hls.unwrap(),
            "GET",
            &format!("/hls/{}/index.m3u8", c.name),
            &[],
            b"",
        );
        assert_eq!(hls.status, 415, "{}", hls.text());
        assert!(hls.text().contains("G.711"), "{}", hls.text());
        assert!(
            s["webrtc_unavailable"].is_null(),
            "WHEP sends the video: {s}"
        );
    }
    // G.711 alone: nothing WebRTC is offered, refused with the reason.
    let s = list
        .iter()
        .find(|s| s["name"] == "pcmuonly")
        .expect("listed");
    assert_eq!(s["codecs"], serde_json::json!(["G.711 PCMU"]), "{s}");
    assert!(s["whep_url"].is_null(), "{s}");
    let why = s["webrtc_unavailable"].as_str().unwrap();
    assert!(why.contains("G.711 audio (PCMU)"), "{why}");
}

/// RFC 3551 §4.5.14 on the wire: PT 0 / 8 with its static `rtpmap` (a dynamic one with rate and
/// channels otherwise), no payload header, no marker, each packet's timestamp the previous
/// one's plus its sample count (160 for 20 ms at 8 kHz), and the payloads, concatenated, the
/// file's G.711 bytes.
#[test]
fn rtp_packets_follow_rfc3551() {
    let server = server();
    for c in &CLIPS {
        let media = open(c.name);
        let (k, track, _) = audio(&media);
        let want = file_audio_bytes(c);
        let url = server.url(c.name);
        let mut rtsp = RawRtsp::connect(server.addr);
        let (d, session) = rtsp.setup_interleaved(&url, &[k]);
        let sdp = String::from_utf8(d.body.clone()).unwrap();
        let media_lines = if c.channels == 1 {
            format!(
                "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} {}/{}\r\n",
                c.encoding,
                c.rate,
                pt = c.pt
            )
        } else {
            format!(
                "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} {}/{}/{}\r\n",
                c.encoding,
                c.rate,
                c.channels,
                pt = c.pt
            )
        };
        assert!(sdp.contains(&media_lines), "{sdp}");
        let p = rtsp.request("PLAY", &url, &[("Session", &session)]);
        assert_eq!(p.status, 200);
        let mut got: Vec<u8> = Vec::new();
        let mut last: Option<(u32, usize)> = None;
        for n in 0..track.samples.len() {
            let frame = loop {
                let (ch, frame) = rtsp.read_frame().expect("a packet per piece");
                if ch == 0 {
                    break frame;
                }
            };
            let rtp = parse_rtp(&frame).expect("RTP");
            assert_eq!(rtp.pt, c.pt, "{} packet {n}", c.name);
            assert!(!rtp.marker, "{} packet {n}: no silence, no marker", c.name);
            assert_eq!(frame[0] & 0x3f, 0, "no padding, extension or CSRCs");
            let payload = &frame[12..];
            assert!(
                !payload.is_empty() && payload.len() <= c.piece(),
                "{} packet {n}: {} bytes",
                c.name,
                payload.len()
            );
            if let Some((ts, len)) = last {
                assert_eq!(
                    rtp.ts.wrapping_sub(ts),
                    (len / usize::from(c.channels)) as u32,
                    "{} packet {n}: timestamp steps by the previous packet's samples",
                    c.name
                );
            }
            last = Some((rtp.ts, payload.len()));
            got.extend_from_slice(payload);
        }
        assert_eq!(got.len(), want.len(), "{}", c.name);
        assert!(got == want, "{}: the payloads are the file's audio", c.name);
        let full = track
            .samples
            .iter()
            .filter(|s| s.len as usize == c.piece())
            .count();
        assert!(
            full * c.piece() * 10 >= want.len() * 9,
            "mostly 20 ms pieces"
        );
    }
}
