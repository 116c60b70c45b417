//! Matroska and WebM files over RTSP (issue 18, docs/design/reach.md "Matroska/WebM"), against
//! independent implementations: ffprobe and ffmpeg (libavformat's Matroska demuxer reading the
//! files, its RTSP client and depacketizers, libavcodec's decoders), GStreamer (`rtspsrc !
//! decodebin`), retina, and a packet-level check of the RTP timestamps against the block times
//! ffprobe reads from the file.
//!
//! The media are made by ffmpeg in the test setup (H.264 with B-frames + AAC in `.mkv`, H.265 +
//! AAC in `.mkv`, VP8 + Opus and VP9 + Opus in `.webm`, VP8 + Vorbis for a track we do not
//! serve); files with laced audio (Xiph and EBML lacing), with
//! unknown-size segment and clusters (as a live writer leaves them) and the bad inputs are
//! written here from the H.264 file's frames by a small EBML writer (ffmpeg's muxer never
//! laces), and ffprobe checks that each written file holds what we meant.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::players::{
    ffmpeg_decode_stream, ffmpeg_decode_without_warnings, ffprobe, gstreamer_decoded_video_frames,
};
use common::retina_play::{expected_of, play_all_of};
use common::{parse_rtp, run_with_timeout, RawRtsp, Server};
use retina::client::{TcpTransportOptions, Transport, UdpTransportOptions};
use shardcast::media::track::{Codec, Track, TrackKind};
use shardcast::media::MediaFile;

/// Video frames in each generated file: 3 s at 25 fps.
const FRAMES: usize = 75;

/// The media directory (made once per test run in Cargo's temporary directory for
/// integration tests; each file is written aside and renamed in).
fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("matroska-media");
        std::fs::create_dir_all(&dir).unwrap();
        let colour = [
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
        ];
        let aac = ["-c:a", "aac"];
        // H.264 High profile with 2 B-frames: decode order differs from presentation order.
        let h264 = [
            &[
                "-c:v",
                "libx264",
                "-g",
                "25",
                "-sc_threshold",
                "0",
                "-bf",
                "2",
            ][..],
            &["-pix_fmt", "yuv420p"],
            &colour,
            &aac,
        ]
        .concat();
        ffmpeg_make(&dir.join("h264.mkv"), "size=320x240", &h264);
        let h265 = [
            &["-c:v", "libx265", "-pix_fmt", "yuv420p"][..],
            &[
                "-x265-params",
                "keyint=25:min-keyint=25:bframes=0:open-gop=0:log-level=error",
            ],
            &colour,
            &aac,
        ]
        .concat();
        ffmpeg_make(&dir.join("h265.mkv"), "size=320x240", &h265);
        let vp8 = [
            "-c:v",
            "libvpx",
            "-b:v",
            "300k",
            "-g",
            "25",
            "-auto-alt-ref",
            "0",
        ];
        ffmpeg_make(
            &dir.join("opus.webm"),
            "size=320x240",
            &[&vp8[..], &["-c:a", "libopus"]].concat(),
        );
        let vp9 = [
            &["-c:v", "libvpx-vp9", "-b:v", "300k", "-g", "25"][..],
            &["-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
        ]
        .concat();
        ffmpeg_make(&dir.join("vp9.webm"), "size=320x240", &vp9);
        ffmpeg_make(
            &dir.join("vorbis.webm"),
            "size=320x240",
            &[&vp8[..], &["-c:a", "libvorbis"]].concat(),
        );

        let src = std::fs::read(dir.join("h264.mkv")).unwrap();
        let media = MediaFile::open(&dir.join("h264.mkv"), "h264").unwrap();
        let write = |name: &str, bytes: Vec<u8>| {
            let part = dir.join(format!("{name}.part"));
            std::fs::write(&part, bytes).unwrap();
            std::fs::rename(&part, dir.join(name)).unwrap();
        };
        write("xiph.mkv", remux(&media, &src, Lacing::Xiph, false, None));
        write("ebml.mkv", remux(&media, &src, Lacing::Ebml, false, None));
        write("live.mkv", remux(&media, &src, Lacing::None, true, None));
        write(
            "lying.mkv",
            remux(&media, &src, Lacing::Xiph, false, Some(10)),
        );
        // Bad inputs.
        let cut = src.len() * 3 / 5;
        write("truncated.mkv", src[..cut].to_vec());
        write("cut_header.mkv", src[..200.min(src.len())].to_vec());
        write(
            "random.mkv",
            (0..4000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        );
        write("past_end.mkv", past_end(&media));
        dir
    })
}

/// Runs ffmpeg making 3 s of `testsrc2=<size>:rate=25` and a 440 Hz tone at 48 kHz into `path`
/// with the codec arguments `codec`.
fn ffmpeg_make(path: &Path, size: &str, codec: &[&str]) {
    let part = path.with_extension(format!(
        "{}.part.{}",
        std::process::id(),
        path.extension().unwrap().to_str().unwrap()
    ));
    let src = format!("testsrc2={size}:rate=25");
    let (ok, _out, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
            .args(["-f", "lavfi", "-i", &src])
            .args(["-f", "lavfi", "-i", "sine=f=440:sample_rate=48000"])
            .args(["-t", "3"])
            .args(codec)
            .arg(part.to_str().unwrap()),
        Duration::from_secs(120),
    );
    assert!(
        ok && err.trim().is_empty(),
        "ffmpeg made {}:\n{err}",
        path.display()
    );
    std::fs::rename(&part, path).unwrap();
}

// ---- A small EBML writer (RFC 8794) for Matroska (RFC 9559) ----

fn vint_size(n: u64) -> Vec<u8> {
    let len = (1..=8).find(|l| n < (1u64 << (7 * l)) - 1).unwrap();
    let v = n | (1u64 << (7 * len));
    v.to_be_bytes()[8 - len..].to_vec()
}

fn id_bytes(id: u32) -> Vec<u8> {
    id.to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect()
}

fn el(id: u32, body: &[u8]) -> Vec<u8> {
    [id_bytes(id), vint_size(body.len() as u64), body.to_vec()].concat()
}

/// An element of unknown size (all-ones 1-byte size, RFC 8794 §6.2).
fn unknown(id: u32, body: &[u8]) -> Vec<u8> {
    [id_bytes(id), vec![0xFF], body.to_vec()].concat()
}

fn uint(id: u32, v: u64) -> Vec<u8> {
    el(id, &v.to_be_bytes())
}

/// A signed EBML lace size difference (RFC 9559 §10.3.3) in 2 bytes.
fn signed_vint2(d: i64) -> Vec<u8> {
    let raw = (d + (1 << 13) - 1) as u64;
    assert!(raw < (1 << 14) - 1);
    vec![0x40 | (raw >> 8) as u8, raw as u8]
}

#[derive(Clone, Copy, PartialEq)]
enum Lacing {
    None,
    Xiph,
    Ebml,
}

fn avcc(media: &MediaFile) -> (Vec<u8>, u16, u16) {
    let Codec::H264(c) = &video(media).codec else {
        panic!("H.264")
    };
    let mut r = vec![
        1,
        c.profile_idc,
        c.profile_compat,
        c.level_idc,
        0xFC | (c.nal_length_size - 1),
        0xE0 | c.sps.len() as u8,
    ];
    for s in &c.sps {
        r.extend((s.len() as u16).to_be_bytes());
        r.extend(s);
    }
    r.push(c.pps.len() as u8);
    for p in &c.pps {
        r.extend((p.len() as u16).to_be_bytes());
        r.extend(p);
    }
    (r, c.width, c.height)
}

fn tracks_element(media: &MediaFile) -> Vec<u8> {
    let (avcc, w, h) = avcc(media);
    let video = [
        uint(0xD7, 1),
        uint(0x83, 1),
        el(0x86, b"V_MPEG4/ISO/AVC"),
        el(0x63A2, &avcc),
        el(0xE0, &[uint(0xB0, w.into()), uint(0xBA, h.into())].concat()),
    ]
    .concat();
    let Codec::Aac(a) = &audio(media).codec else {
        panic!("AAC")
    };
    let audio = [
        uint(0xD7, 2),
        uint(0x83, 2),
        el(0x86, b"A_AAC"),
        el(0x63A2, &a.audio_specific_config),
        el(
            0xE1,
            &[el(0xB5, &48_000f64.to_bits().to_be_bytes()), uint(0x9F, 2)].concat(),
        ),
    ]
    .concat();
    el(0x1654_AE6B, &[el(0xAE, &video), el(0xAE, &audio)].concat())
}

fn header() -> Vec<u8> {
    el(0x1A45_DFA3, &el(0x4282, b"matroska"))
}

fn info() -> Vec<u8> {
    el(0x1549_A966, &uint(0x2A_D7B1, 1_000_000))
}

/// Writes the H.264 file's frames again: video one frame per SimpleBlock, audio in groups of 4
/// frames per block laced as `lacing` (or one per block), a cluster per keyframe; with
/// `unknown_sizes` the segment and every cluster have unknown sizes; with `lie`, the lace
/// sizes of that audio block claim 1000 bytes more than the block holds.
fn remux(
    media: &MediaFile,
    src: &[u8],
    lacing: Lacing,
    unknown_sizes: bool,
    lie: Option<usize>,
) -> Vec<u8> {
    let v = video(media);
    let a = audio(media);
    let ms = |t: &Track, ticks: i64| {
        (ticks * 1000 + i64::from(t.timescale) / 2) / i64::from(t.timescale)
    };
    // (order time ms, is audio, first sample index, count)
    let mut events: Vec<(i64, bool, usize, usize)> = v
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (ms(v, v.dts_ticks(s)), false, i, 1))
        .collect();
    let group = if lacing == Lacing::None { 1 } else { 4 };
    for first in (0..a.samples.len()).step_by(group) {
        let n = group.min(a.samples.len() - first);
        events.push((ms(a, a.pts_ticks(&a.samples[first])), true, first, n));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let data = |t: &Track, i: usize| {
        let s = &t.samples[i];
        &src[s.offset as usize..][..s.len as usize]
    };
    let mut clusters: Vec<Vec<u8>> = Vec::new();
    let mut cluster_ts = 0i64;
    let mut open: Option<Vec<u8>> = None;
    let mut audio_block = 0;
    for (_, is_audio, first, n) in events {
        let (track, pts, key) = if is_audio {
            (a, ms(a, a.pts_ticks(&a.samples[first])), true)
        } else {
            let s = &v.samples[first];
            (v, ms(v, v.pts_ticks(s)), s.sync)
        };
        if open.is_none() || (!is_audio && key) {
            if let Some(c) = open.take() {
                clusters.push(c);
            }
            cluster_ts = pts.max(0);
            open = Some(uint(0xE7, cluster_ts as u64));
        }
        let rel = i16::try_from(pts - cluster_ts).unwrap();
        let mut block = vec![if is_audio { 0x82 } else { 0x81 }];
        block.extend(rel.to_be_bytes());
        let frames: Vec<&[u8]> = (first..first + n).map(|i| data(track, i)).collect();
        let laced = n > 1;
        let flags = (if key { 0x80 } else { 0 })
            | match (laced, lacing) {
                (true, Lacing::Xiph) => 0x02,
                (true, Lacing::Ebml) => 0x06,
                _ => 0,
            };
        block.push(flags);
        if laced {
            block.push((n - 1) as u8);
            let mut sizes: Vec<i64> = frames[..n - 1].iter().map(|f| f.len() as i64).collect();
            if is_audio && lie == Some(audio_block) {
                sizes[0] += 1000;
            }
            match lacing {
                Lacing::Xiph => {
                    for mut s in sizes {
                        while s >= 255 {
                            block.push(255);
                            s -= 255;
                        }
                        block.push(s as u8);
                    }
                }
                Lacing::Ebml => {
                    block.extend(vint_size(sizes[0] as u64));
                    for w in sizes.windows(2) {
                        block.extend(signed_vint2(w[1] - w[0]));
                    }
                }
                Lacing::None => unreachable!(),
            }
        }
        if is_audio {
            audio_block += 1;
        }
        frames.iter().for_each(|f| block.extend_from_slice(f));
        open.as_mut().unwrap().extend(el(0xA3, &block));
    }
    clusters.extend(open);
    let mut segment = [info(), tracks_element(media)].concat();
    for c in clusters {
        segment.extend(if unknown_sizes {
            unknown(0x1F43_B675, &c)
        } else {
            el(0x1F43_B675, &c)
        });
    }
    let segment = if unknown_sizes {
        unknown(0x1853_8067, &segment)
    } else {
        el(0x1853_8067, &segment)
    };
    [header(), segment].concat()
}

/// A file whose Tracks element claims more bytes than the file holds.
fn past_end(media: &MediaFile) -> Vec<u8> {
    let mut tracks = tracks_element(media);
    // Tracks ID (4 bytes), then its size: an 8-byte vint far past the end.
    let body = tracks.split_off(4 + vint_size((tracks.len() - 5) as u64).len());
    let mut t = tracks[..4].to_vec();
    t.extend([0x01, 0, 0, 0, 0, 0x10, 0, 0]);
    t.extend(body);
    [header(), unknown(0x1853_8067, &[info(), t].concat())].concat()
}

// ---- Helpers ----

fn open(name: &str) -> MediaFile {
    MediaFile::open(&media_dir().join(name), name).unwrap()
}

fn video(media: &MediaFile) -> &Track {
    media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .expect("a video track")
}

fn audio(media: &MediaFile) -> &Track {
    media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .expect("an audio track")
}

fn server() -> Server {
    Server::start_logged(&["--media", media_dir().to_str().unwrap()])
}

/// The presentation times (ms) of the packets of stream `sel` (`v:0`, `a:0`) ffprobe reads
/// from the file `name`, in file order.
fn probe_packet_pts(name: &str, sel: &str) -> Vec<i64> {
    let path = media_dir().join(name);
    let out = ffprobe(&[
        "-select_streams",
        sel,
        "-show_entries",
        "packet=pts",
        "-of",
        "csv=p=0",
        path.to_str().unwrap(),
    ]);
    // (A packet's side data, e.g. Opus's skip samples, prints as an empty record.)
    out.lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect()
}

// ---- Tests ----

#[test]
fn index_matches_ffprobe_of_the_files() {
    for (name, video_codec, audio_codec) in [
        ("h264.mkv", Some("H.264"), "AAC"),
        ("h265.mkv", Some("H.265"), "AAC"),
        ("opus.webm", Some("VP8"), "Opus"),
        ("vp9.webm", Some("VP9"), "Opus"),
        ("xiph.mkv", Some("H.264"), "AAC"),
        ("ebml.mkv", Some("H.264"), "AAC"),
        ("live.mkv", Some("H.264"), "AAC"),
    ] {
        let media = open(name);
        let a = audio(&media);
        assert_eq!(a.codec.name(), audio_codec, "{name}");
        assert_eq!(
            a.samples.len(),
            probe_packet_pts(name, "a:0").len(),
            "{name} audio frames"
        );
        match video_codec {
            Some(c) => {
                assert!(
                    media.index.skipped.is_empty(),
                    "{name}: {:?}",
                    media.index.skipped
                );
                let v = video(&media);
                assert_eq!(v.codec.name(), c);
                assert_eq!(v.samples.len(), FRAMES, "{name}");
                assert_eq!(probe_packet_pts(name, "v:0").len(), FRAMES, "{name}");
                assert_eq!(v.samples.iter().filter(|s| s.sync).count(), 3, "{name}");
            }
            None => unreachable!("every file here has video"),
        }
    }
    // Vorbis is listed as unsupported; the file is served as VP8 video only.
    let media = open("vorbis.webm");
    assert_eq!(media.index.tracks.len(), 1);
    assert_eq!(video(&media).codec.name(), "VP8");
    assert_eq!(video(&media).samples.len(), FRAMES);
    assert_eq!(media.index.skipped.len(), 1, "{:?}", media.index.skipped);
    assert!(
        media.index.skipped[0].contains("A_VORBIS"),
        "{:?}",
        media.index.skipped
    );
    // The H.264 file has B-frames: decode times were derived, each before its presentation.
    let media = open("h264.mkv");
    let v = video(&media);
    assert!(v.reorders_frames(), "x264 with -bf 2 reorders frames");
    let dts: Vec<i64> = v.samples.iter().map(|s| v.dts_ticks(s)).collect();
    assert!(dts.windows(2).all(|w| w[0] < w[1]));
    assert!(v.samples.iter().all(|s| v.dts_ticks(s) <= v.pts_ticks(s)));
    // Our presentation times are the file's block times (ms, ffprobe) exactly.
    let mut ours: Vec<i64> = v.samples.iter().map(|s| v.pts_ticks(s) / 90).collect();
    let mut probed = probe_packet_pts("h264.mkv", "v:0");
    // (Both from the video's first presentation: the file's audio starts earlier.)
    let base = *probed.iter().min().unwrap();
    probed.iter_mut().for_each(|p| *p -= base);
    let ours_base = *ours.iter().min().unwrap();
    ours.iter_mut().for_each(|p| *p -= ours_base);
    ours.sort_unstable();
    probed.sort_unstable();
    assert_eq!(ours, probed);
    // The laced and unknown-size files hold the same frames as their source.
    for name in ["xiph.mkv", "ebml.mkv", "live.mkv"] {
        let other = open(name);
        let src = std::fs::read(media_dir().join("h264.mkv")).unwrap();
        let bytes = std::fs::read(media_dir().join(name)).unwrap();
        for (a, b) in [
            (video(&media), video(&other)),
            (audio(&media), audio(&other)),
        ] {
            assert_eq!(a.samples.len(), b.samples.len(), "{name}");
            for (x, y) in a.samples.iter().zip(&b.samples) {
                assert_eq!(
                    &src[x.offset as usize..][..x.len as usize],
                    &bytes[y.offset as usize..][..y.len as usize],
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn ffprobe_over_rtsp_reports_codecs_size_and_rate() {
    let server = server();
    for (name, want) in [
        (
            "h264",
            &[
                "codec_name=h264",
                "width=320",
                "height=240",
                "codec_name=aac",
                "sample_rate=48000",
            ][..],
        ),
        (
            "h265",
            &[
                "codec_name=hevc",
                "width=320",
                "height=240",
                "codec_name=aac",
                "sample_rate=48000",
            ],
        ),
        (
            "opus",
            &[
                "codec_name=vp8",
                "width=320",
                "height=240",
                "codec_name=opus",
                "sample_rate=48000",
            ],
        ),
        (
            "vp9",
            &[
                "codec_name=vp9",
                "width=320",
                "height=240",
                "codec_name=opus",
                "sample_rate=48000",
            ],
        ),
        ("vorbis", &["codec_name=vp8", "width=320", "height=240"]),
    ] {
        let out = ffprobe(&[
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate,r_frame_rate",
            "-of",
            "default=nw=1",
            &server.url(name),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        for w in want {
            assert!(lines.contains(w), "{name}: {w} in\n{out}");
        }
        assert!(lines.contains(&"r_frame_rate=25/1"), "{name}: {out}");
        if name == "vorbis" {
            assert_eq!(
                lines
                    .iter()
                    .filter(|l| l.starts_with("codec_name="))
                    .count(),
                1,
                "only the VP8 track is served: {out}"
            );
        }
    }
}

#[test]
fn ffmpeg_decodes_every_frame_over_tcp_and_udp_without_warnings() {
    let server = server();
    for name in ["h264", "h265", "xiph", "ebml", "live", "opus", "vp9"] {
        for transport in ["tcp", "udp"] {
            let got = ffmpeg_decode_without_warnings(&server.url(name), transport);
            assert_eq!(got.frames, FRAMES, "{name} over {transport}");
            assert!(
                (got.end_secs - 3.0).abs() < 0.05,
                "{name} over {transport}: {}",
                got.end_secs
            );
        }
    }
    // Audio: every frame of the laced files and of the WebM's Opus track.
    for (name, file) in [
        ("xiph", "xiph.mkv"),
        ("ebml", "ebml.mkv"),
        ("opus", "opus.webm"),
        ("vp9", "vp9.webm"),
    ] {
        let frames = audio(&open(file)).samples.len();
        for transport in ["tcp", "udp"] {
            let got = ffmpeg_decode_stream(&server.url(name), transport, "0:a");
            assert_eq!(got.frames, frames, "{name} audio over {transport}");
        }
    }
}

#[test]
fn gstreamer_decodes_to_eos() {
    let server = server();
    for name in ["h264", "h265", "live", "opus", "vp9"] {
        for protocol in ["tcp", "udp"] {
            let frames = gstreamer_decoded_video_frames(&server.url(name), protocol);
            assert_eq!(frames, FRAMES, "{name} over {protocol}");
        }
    }
    // The WebM with Vorbis serves one (VP8) track: one decodebin branch.
    for protocol in ["tcp", "udp"] {
        let location = format!("location={}", server.url("vorbis"));
        let protocols = format!("protocols={protocol}");
        let (ok, out, err) = run_with_timeout(
            Command::new("gst-launch-1.0").args([
                "rtspsrc",
                &location,
                &protocols,
                "!",
                "decodebin",
                "!",
                "fakesink",
            ]),
            Duration::from_secs(40),
        );
        assert!(
            ok && out.contains("Got EOS from element") && !out.contains("ERROR"),
            "vorbis (VP8 only) over {protocol}:\n{out}\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retina_plays_every_frame_with_the_files_timestamps() {
    let server = server();
    for (name, file) in [
        ("h264", "h264.mkv"),
        ("h265", "h265.mkv"),
        ("ebml", "ebml.mkv"),
    ] {
        let media = open(file);
        let exp = expected_of(&media);
        assert_eq!(exp.video_frames, FRAMES);
        play_all_of(
            &server.url(name),
            Transport::Udp(UdpTransportOptions::default()),
            &exp,
        )
        .await;
        play_all_of(
            &server.url(name),
            Transport::Tcp(TcpTransportOptions::default()),
            &exp,
        )
        .await;
    }
}

/// Plays track `track` of `name` over TCP interleaved with a raw client until `frames`
/// markers (video) or packets (audio); returns the RTP timestamps, one per frame.
fn raw_play_timestamps(server: &Server, name: &str, track: usize, frames: usize) -> Vec<u32> {
    let url = server.url(name);
    let mut c = RawRtsp::connect(server.addr);
    let (_, session) = c.setup_interleaved(&url, &[track]);
    assert_eq!(
        c.request("PLAY", &url, &[("Session", &session)]).status,
        200
    );
    let mut out = Vec::new();
    let mut frame_ts = None;
    while out.len() < frames {
        let (ch, data) = c.read_frame().expect("media until the last frame");
        if ch != 0 {
            continue;
        }
        let rtp = parse_rtp(&data).expect("RTP");
        if track == 0 {
            // One timestamp per access unit, ended by the marker (RFC 6184 §5.1).
            assert_eq!(
                *frame_ts.get_or_insert(rtp.ts),
                rtp.ts,
                "frame {}",
                out.len()
            );
            if rtp.marker {
                out.push(rtp.ts);
                frame_ts = None;
            }
        } else {
            // RFC 3640 §3.2.1 AAC-hbr: 16-bit AU headers, one per frame; the packet's timestamp
            // is its first frame's, the next ones follow at 1024 samples (§3.2.3.1, constant
            // duration).
            let au_bits = u16::from_be_bytes([data[12], data[13]]);
            assert!(au_bits > 0 && au_bits % 16 == 0, "{au_bits}");
            for i in 0..u32::from(au_bits / 16) {
                out.push(rtp.ts.wrapping_add(1024 * i));
            }
        }
    }
    out
}

#[test]
fn rtp_timestamps_are_the_files_block_times() {
    let server = server();
    // Video (B-frames: RTP carries presentation times, so not monotonic in decode order).
    let probed = probe_packet_pts("h264.mkv", "v:0");
    let got = raw_play_timestamps(&server, "h264", 0, FRAMES);
    for (k, (ts, pts)) in got.iter().zip(&probed).enumerate() {
        let rtp_ms = i64::from(ts.wrapping_sub(got[0]) as i32) / 90;
        assert_eq!(rtp_ms, pts - probed[0], "video frame {k}");
    }
    assert!(
        got.windows(2).any(|w| (w[1].wrapping_sub(w[0]) as i32) < 0),
        "presentation order differs from decode order"
    );
    // Audio: 48 kHz; Matroska times are whole ms, RTP is exact (1024 per frame) and within 1 ms.
    for name in ["h264", "xiph"] {
        let probed = probe_packet_pts(&format!("{name}.mkv"), "a:0");
        let got = raw_play_timestamps(&server, name, 1, probed.len());
        for (k, (ts, pts)) in got.iter().zip(&probed).enumerate() {
            let rtp = i64::from(ts.wrapping_sub(got[0]));
            assert_eq!(rtp, 1024 * k as i64, "{name} audio frame {k}");
            let ms = (pts - probed[0]) as f64;
            assert!(
                (rtp as f64 / 48.0 - ms).abs() <= 1.0,
                "{name} audio frame {k}: {rtp} vs {ms} ms"
            );
        }
    }
}

/// The packets of `stream` (`v:0`) of file `name` as ffprobe reads them: (pts ms, size,
/// keyframe), in file order.
fn probe_packets(name: &str, stream: &str) -> Vec<(i64, usize, bool)> {
    let path = media_dir().join(name);
    let out = ffprobe(&[
        "-select_streams",
        stream,
        "-show_entries",
        "packet=pts,size,flags",
        "-of",
        "csv=p=0",
        path.to_str().unwrap(),
    ]);
    out.lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].contains('K'),
            )
        })
        .collect()
}

/// RFC 7741 (VP8) and RFC 9628 (VP9) on the wire, frame by frame against the file: the
/// payload descriptor starts each frame (VP8 `S`, VP9 `B`), VP9's `E` ends it and its `P`
/// is clear exactly on keyframes; the marker is on each frame's last packet only; all packets
/// of a frame share its timestamp, which is the block time (ms, ffprobe) at 90 kHz; the
/// pieces put back together are as long as the file's frame, and a VP8 keyframe starts with
/// its start code (RFC 6386 §9.1).
#[test]
fn vp8_and_vp9_packets_carry_their_descriptors_and_the_files_frames() {
    let server = server();
    for (name, file, vp9) in [("opus", "opus.webm", false), ("vp9", "vp9.webm", true)] {
        let probed = probe_packets(file, "v:0");
        assert_eq!(probed.len(), FRAMES, "{file}");
        let url = server.url(name);
        let mut c = RawRtsp::connect(server.addr);
        let (setup, session) = c.setup_interleaved(&url, &[0]);
        assert_eq!(setup.status, 200);
        assert_eq!(
            c.request("PLAY", &url, &[("Session", &session)]).status,
            200
        );
        let mut frames: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut current: Option<(u32, Vec<u8>)> = None;
        while frames.len() < FRAMES {
            let (ch, data) = c.read_frame().expect("media until the last frame");
            if ch != 0 {
                continue;
            }
            let rtp = parse_rtp(&data).expect("RTP");
            let k = frames.len();
            let descriptor = data[12];
            let first = current.is_none();
            if vp9 {
                // I P L F B E V Z: no picture id, layer indices or scalability structure.
                assert_eq!(descriptor & 0xB3, 0, "{name} frame {k}: {descriptor:#04x}");
                assert_eq!(descriptor & 0x08 != 0, first, "{name} frame {k}: B");
                assert_eq!(descriptor & 0x04 != 0, rtp.marker, "{name} frame {k}: E");
                assert_eq!(descriptor & 0x40 == 0, probed[k].2, "{name} frame {k}: P");
            } else {
                // X R N S R PID: S on the frame's first packet, partition 0, no extensions.
                assert_eq!(descriptor & !0x10, 0, "{name} frame {k}: {descriptor:#04x}");
                assert_eq!(descriptor & 0x10 != 0, first, "{name} frame {k}: S");
            }
            let (ts, body) = current.get_or_insert_with(|| (rtp.ts, Vec::new()));
            assert_eq!(*ts, rtp.ts, "{name} frame {k}: one timestamp per frame");
            body.extend_from_slice(&data[13..]);
            if rtp.marker {
                frames.push(current.take().unwrap());
            }
        }
        let t0 = frames[0].0;
        for (k, ((ts, body), (pts, size, key))) in frames.iter().zip(&probed).enumerate() {
            let ms = i64::from(ts.wrapping_sub(t0) as i32) / 90;
            assert_eq!(ms, pts - probed[0].0, "{name} frame {k}: time");
            assert_eq!(body.len(), *size, "{name} frame {k}: size");
            if !vp9 && *key {
                assert_eq!(
                    &body[3..6],
                    [0x9d, 0x01, 0x2a],
                    "{name} frame {k}: start code"
                );
            }
        }
    }
}

/// Video frames ffmpeg decodes from `url` with `args` before it, as (pts seconds, CRC).
fn video_crcs(args: &[&str], url: &str) -> Vec<(f64, String)> {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error"])
            .args(args)
            .args(["-i", url, "-map", "0:v", "-f", "framecrc", "-"]),
        Duration::from_secs(40),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg {url}: {err}");
    let mut tb = 0.0;
    let mut frames = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("#tb 0: ") {
            let (n, d) = rest.split_once('/').unwrap();
            tb = n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            frames.push((f[2].parse::<f64>().unwrap() * tb, f[5].to_owned()));
        }
    }
    frames
}

#[test]
fn range_npt_seeks_to_the_keyframe() {
    let server = server();
    let file = media_dir().join("h264.mkv");
    let source = video_crcs(&[], file.to_str().unwrap());
    assert_eq!(source.len(), FRAMES);
    // ffmpeg's -ss before -i sends PLAY with Range: npt=2-; there is a keyframe at 2 s.
    let sought = video_crcs(
        &["-rtsp_transport", "tcp", "-ss", "2", "-copyts"],
        &server.url("h264"),
    );
    let (first_pts, first_crc) = sought.first().expect("frames after the seek").clone();
    assert!(
        (1.95..2.1).contains(&first_pts),
        "first frame after -ss 2 at {first_pts} s"
    );
    let at = source
        .iter()
        .find(|(pts, _)| (pts - first_pts).abs() < 0.02)
        .expect("a source frame at that time");
    assert_eq!(at.1, first_crc, "the file's frame at {first_pts} s");
    assert_eq!(sought.len(), 25, "the last second's frames");
    // A raw PLAY with a Range inside the second GOP starts at its keyframe (1 s).
    let url = server.url("h264");
    let mut c = RawRtsp::connect(server.addr);
    let (_, session) = c.setup_interleaved(&url, &[0]);
    let p = c.request(
        "PLAY",
        &url,
        &[("Session", &session), ("Range", "npt=1.5-")],
    );
    assert_eq!(p.status, 200);
    let range = p.header("Range").unwrap().to_owned();
    assert!(
        range.starts_with("npt=1") && !range.starts_with("npt=1.5"),
        "{range}"
    );
}

/// Waits (up to 5 s: the log is read by another thread) for a log line containing all of
/// `parts`; panics with the log if none comes.
fn wait_log(server: &Server, parts: &[&str]) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log_lines();
        if log.iter().any(|l| parts.iter().all(|p| l.contains(p))) {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "a log line with {parts:?}:\n{}",
            log.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// DESCRIBE of `name`: its status.
fn describe_status(server: &Server, name: &str) -> u16 {
    let mut c = RawRtsp::connect(server.addr);
    c.request(
        "DESCRIBE",
        &server.url(name),
        &[("Accept", "application/sdp")],
    )
    .status
}

#[test]
fn bad_files_get_a_clear_error_and_others_still_play() {
    let server = server();
    for (name, why) in [
        ("past_end", "matroska: truncated"),
        ("cut_header", "matroska"),
        ("random", "not a matroska/webm file"),
    ] {
        assert_eq!(describe_status(&server, name), 404, "{name}");
        wait_log(&server, &[&format!("{name}.mkv"), why]);
        assert_eq!(describe_status(&server, "h264"), 200, "after {name}");
    }
    // The file's own reader agrees: clear typed errors.
    for name in ["past_end.mkv", "cut_header.mkv", "random.mkv"] {
        let e = MediaFile::open(&media_dir().join(name), name)
            .unwrap_err()
            .to_string();
        assert!(e.contains(name) && e.contains("matroska"), "{e}");
    }
    // A truncated copy plays what it holds up to its last complete block; a block whose lace
    // sizes lie is skipped (its 4 audio frames), the rest plays.
    let truncated = open("truncated.mkv");
    let frames = video(&truncated).samples.len();
    assert!((20..FRAMES).contains(&frames), "{frames}");
    let got = ffmpeg_decode_without_warnings(&server.url("truncated"), "tcp");
    assert_eq!(got.frames, frames);
    let lying = open("lying.mkv");
    assert_eq!(
        audio(&lying).samples.len() + 4,
        audio(&open("xiph.mkv")).samples.len()
    );
    let got = ffmpeg_decode_without_warnings(&server.url("lying"), "udp");
    assert_eq!(got.frames, FRAMES);
    for name in ["truncated.mkv", "lying.mkv"] {
        wait_log(&server, &[name, "served in part"]);
    }
    assert_eq!(describe_status(&server, "h265"), 200);
}

#[test]
fn catalog_lists_matroska_streams_and_what_they_miss() {
    let server = server();
    let streams = server.http_get("/api/v1/streams").json();
    let list = streams["streams"].as_array().unwrap();
    let find = |n: &str| {
        list.iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n} listed"))
    };
    assert_eq!(find("h264")["codecs"], serde_json::json!(["H.264", "AAC"]));
    assert_eq!(find("h265")["codecs"], serde_json::json!(["H.265", "AAC"]));
    assert_eq!(find("opus")["codecs"], serde_json::json!(["VP8", "Opus"]));
    assert_eq!(find("vp9")["codecs"], serde_json::json!(["VP9", "Opus"]));
    // HLS carries H.264 with AAC, but neither VP8/VP9 nor H.265 (it answers 415 for them):
    // the catalog offers an HLS URL only where it plays.
    assert!(find("h264")["hls_url"].is_string(), "{}", find("h264"));
    for n in ["h265", "opus", "vp9"] {
        assert!(find(n)["hls_url"].is_null(), "no HLS offered: {}", find(n));
    }
    // The WebM's audio is Vorbis: the catalog says the stream misses it.
    let missing = find("vorbis")["unsupported"]
        .as_array()
        .expect("unsupported listed")
        .clone();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].as_str().unwrap().contains("A_VORBIS"),
        "{missing:?}"
    );
    assert!(find("h264").get("unsupported").is_none(), "nothing missing");
    assert!(find("opus").get("unsupported").is_none(), "VP8 is served");
    // One line naming the unsupported audio track.
    wait_log(&server, &["vorbis.webm", "A_VORBIS"]);
}

/// HLS (fMP4 made from the same samples) plays a Matroska file too: ffmpeg's HLS client
/// decodes every video frame without a warning.
#[test]
fn hls_plays_matroska_files() {
    let server = server();
    let hls = server.hls.expect("HLS listener");
    for name in ["h264", "live", "xiph"] {
        let url = format!("http://{hls}/hls/{name}/index.m3u8");
        let (ok, out, err) = run_with_timeout(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-nostdin", "-v", "warning", "-i", &url])
                .args(["-map", "0:v", "-f", "framecrc", "-"]),
            Duration::from_secs(40),
        );
        assert!(ok && err.trim().is_empty(), "{name} over HLS: {err}");
        let frames = out.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(frames, FRAMES, "{name} over HLS");
    }
}
