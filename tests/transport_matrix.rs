//! Issue 18's matrix across the transports players reach us through when UDP and plain TCP
//! are blocked: every container × codec we serve, played through the RTSP-over-HTTP tunnel
//! and over RTSPS by ffmpeg (`-rtsp_transport http`; `rtsps://` over TCP: every video frame
//! decoded, no warning) and by GStreamer (`rtsph://`; `rtsps://` with
//! `tls-validation-flags=0`: every video frame to EOS). UDP and TCP for each container are
//! in `external_players.rs`, `h265.rs`, `matroska.rs`, `mpegts.rs`, `mpeg_audio.rs` and
//! `g711.rs`; docs/CONFORMANCE.md
//! carries the whole matrix.
//!
//! The files are made by ffmpeg here (3 s at 25 fps with an audio tone); a copy of the
//! bundled sample is the MP4 H.264 + AAC cell.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::players::{ffmpeg_decode_without_warnings, gstreamer_decoded_video_frames_with};
use common::{make_cert, run_with_timeout, Server};
use shardcast::media::track::TrackKind;
use shardcast::media::MediaFile;

/// Frames of each made file (3 s at 25 fps).
const FRAMES: usize = 75;

/// The made files: stream name → (file, ffmpeg's video and audio arguments).
const FILES: [(&str, &str, &[&str]); 7] = [
    (
        "h265",
        "h265.mp4",
        &[
            "-c:v",
            "libx265",
            "-tag:v",
            "hvc1",
            "-x265-params",
            "keyint=25:bframes=0:log-level=error",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    ),
    (
        "h264",
        "h264.mkv",
        &[
            "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
        ],
    ),
    (
        "vp8",
        "vp8.webm",
        &[
            "-c:v",
            "libvpx",
            "-b:v",
            "300k",
            "-g",
            "25",
            "-auto-alt-ref",
            "0",
            "-c:a",
            "libopus",
        ],
    ),
    (
        "vp9",
        "vp9.webm",
        &[
            "-c:v",
            "libvpx-vp9",
            "-b:v",
            "300k",
            "-g",
            "25",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-c:a",
            "libopus",
        ],
    ),
    (
        "ts",
        "ts.ts",
        &[
            "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
        ],
    ),
    // MP3 (RFC 2250 MPA) from MP4 and G.711 µ-law (RFC 3551 PCMU) from Matroska: the other
    // audio, through the same tunnel and TLS (tests/mpeg_audio.rs and tests/g711.rs play them
    // over UDP and TCP and check the packets).
    (
        "mp3",
        "mp3.mp4",
        &[
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "libmp3lame",
        ],
    ),
    (
        "pcmu",
        "pcmu.mkv",
        &[
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "pcm_mulaw",
            "-ar",
            "8000",
            "-ac",
            "1",
        ],
    ),
];

/// The media folder, made once per test run.
fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("transport-matrix-media");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4"),
            dir.join("sample.mp4"),
        )
        .unwrap();
        for (_, file, args) in FILES {
            let path = dir.join(file);
            let part = dir.join(format!("part-{}-{file}", std::process::id()));
            let (ok, _, err) = run_with_timeout(
                Command::new("ffmpeg")
                    .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
                    .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
                    .args(["-f", "lavfi", "-i", "sine=f=440:sample_rate=48000"])
                    .args(["-t", "3"])
                    .args(args)
                    // Tagged colour: GStreamer warns about YUV without a colour matrix.
                    .args(["-colorspace", "bt709", "-color_primaries", "bt709"])
                    .args(["-color_trc", "bt709"])
                    .arg(&part),
                Duration::from_secs(120),
            );
            assert!(ok && err.trim().is_empty(), "ffmpeg made {file}: {err}");
            std::fs::rename(&part, &path).unwrap();
        }
        dir
    })
}

/// A server on the made files and the sample with RTSPS on (its certificate in a folder of
/// its own: `tag` tells the tests apart).
fn server(tag: &str) -> (Server, PathBuf) {
    let media = media_dir();
    let tls = std::env::temp_dir().join(format!("shardcast-matrix-{}-{tag}", std::process::id()));
    let (cert, key) = make_cert(&tls, "shardcast-matrix");
    let server = Server::start_logged(&[
        "--media",
        media.to_str().unwrap(),
        "--rtsps-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    (server, tls)
}

/// Video frames of stream `name` as ffmpeg decodes them at most: the file's video samples.
/// For MPEG-TS ffmpeg's RTP/MP2T handler never flushes its demuxer's last frame at the end of
/// a session (every byte arrives: `mpegts.rs` checks it), so one less.
fn expected_frames(name: &str) -> usize {
    if name == "sample" {
        let media =
            MediaFile::from_static("sample", shardcast::media::library::SAMPLE_MP4).unwrap();
        return media
            .index
            .tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .unwrap()
            .samples
            .len();
    }
    if name == "ts" {
        FRAMES - 1
    } else {
        FRAMES
    }
}

fn names() -> impl Iterator<Item = &'static str> {
    std::iter::once("sample").chain(FILES.iter().map(|(name, _, _)| *name))
}

#[test]
fn ffmpeg_plays_every_container_through_the_http_tunnel_and_over_rtsps() {
    let (server, _tls) = server("ffmpeg");
    let rtsps = server.rtsps.expect("the banner names the RTSPS address");
    for name in names() {
        let want = expected_frames(name);
        let tunnel = ffmpeg_decode_without_warnings(&server.url(name), "http");
        assert_eq!(tunnel.frames, want, "{name} through the HTTP tunnel");
        let tls = ffmpeg_decode_without_warnings(&format!("rtsps://{rtsps}/{name}"), "tcp");
        assert_eq!(tls.frames, want, "{name} over RTSPS");
    }
}

/// GStreamer's `rtspsrc` with `decodebin` on the video: every container but MPEG-TS, whose one
/// RTP/MP2T stream GStreamer demuxes into several (`mpegts.rs` plays it with an explicit
/// `rtpmp2tdepay ! tsdemux` pipeline).
#[test]
fn gstreamer_plays_every_container_through_the_http_tunnel_and_over_rtsps() {
    let (server, _tls) = server("gstreamer");
    let rtsps = server.rtsps.expect("the banner names the RTSPS address");
    for name in names().filter(|n| *n != "ts") {
        let want = expected_frames(name);
        let tunnel = gstreamer_decoded_video_frames_with(
            &format!("rtsph://{}/{name}", server.addr),
            "tcp",
            &[],
        );
        assert_eq!(tunnel, want, "{name} through the HTTP tunnel (rtsph://)");
        let tls = gstreamer_decoded_video_frames_with(
            &format!("rtsps://{rtsps}/{name}"),
            "tcp",
            &["tls-validation-flags=0"],
        );
        assert_eq!(tls, want, "{name} over RTSPS");
    }
}
