//! Conformance against independent players run as external programs: ffmpeg/ffprobe
//! (libavformat's RTSP client) and GStreamer's `rtspsrc`, over UDP and TCP. Each must decode
//! the whole bundled clip without errors and end by itself (RTCP BYE at end of stream).
//! These fail if a player reports an error, decodes a different number of frames, or hangs.
//! `.ci/run` installs both (Debian packages ffmpeg, gstreamer1.0-*); missing tools fail.

mod common;

use std::process::Command;
use std::time::Duration;

use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::track::TrackKind;
use shardcast::media::MediaFile;

fn sample_video_frames_and_duration() -> (usize, f64) {
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let video = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    (video.samples.len(), media.duration().as_secs_f64())
}

/// Decodes the stream with ffmpeg into per-frame CRCs; returns (video frames, video end time).
fn ffmpeg_decode(url: &str, transport: &str) -> (usize, f64) {
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-map",
            "0:v",
            "-f",
            "framecrc",
            "-",
        ]),
        Duration::from_secs(40),
    );
    assert!(ok, "ffmpeg failed over {transport}: {err}");
    assert!(
        err.trim().is_empty(),
        "ffmpeg reported errors over {transport}:\n{err}"
    );
    let mut tb = 0.0;
    let mut frames = 0;
    let mut end = 0.0;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("#tb 0: ") {
            let (n, d) = rest.split_once('/').unwrap();
            tb = n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            frames += 1;
            let pts: f64 = f[2].parse().unwrap();
            let dur: f64 = f[3].parse().unwrap();
            end = f64::max(end, (pts + dur) * tb);
        }
    }
    (frames, end)
}

fn ffmpeg_decodes_whole_clip(transport: &str) {
    let server = common::Server::start(&[]);
    let (want_frames, want_secs) = sample_video_frames_and_duration();
    let (frames, end) = ffmpeg_decode(&server.url("sample"), transport);
    assert!(
        frames.abs_diff(want_frames) <= 1,
        "{transport}: decoded {frames} video frames, file has {want_frames}"
    );
    // ffmpeg's RTSP output timeline starts at the first packet, so its end is the duration.
    assert!(
        (end - want_secs).abs() <= 0.1,
        "{transport}: decoded {end:.3} s, clip is {want_secs:.3} s"
    );
}

#[test]
fn ffmpeg_decodes_whole_clip_over_udp() {
    ffmpeg_decodes_whole_clip("udp");
}

#[test]
fn ffmpeg_decodes_whole_clip_over_tcp() {
    ffmpeg_decodes_whole_clip("tcp");
}

#[test]
fn ffprobe_reports_codecs_resolution_and_sample_rate() {
    let server = common::Server::start(&[]);
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate,channels",
            "-of",
            "compact",
            &server.url("sample"),
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe failed: {err}");
    assert!(
        out.contains("codec_name=h264") && out.contains("width=640") && out.contains("height=360"),
        "{out}"
    );
    assert!(
        out.contains("codec_name=aac")
            && out.contains("sample_rate=48000")
            && out.contains("channels=2"),
        "{out}"
    );
}

fn gstreamer_reaches_eos(protocol: &str) {
    let server = common::Server::start(&[]);
    let location = format!("location={}", server.url("sample"));
    let protocols = format!("protocols={protocol}");
    let (ok, out, err) = common::run_with_timeout(
        Command::new("gst-launch-1.0").args([
            "-q",
            "rtspsrc",
            &location,
            &protocols,
            "name=src",
            "src.",
            "!",
            "queue",
            "!",
            "decodebin",
            "!",
            "fakesink",
            "src.",
            "!",
            "queue",
            "!",
            "decodebin",
            "!",
            "fakesink",
        ]),
        Duration::from_secs(40),
    );
    assert!(ok, "gst-launch over {protocol} failed:\n{out}\n{err}");
    assert!(
        !err.contains("ERROR") && !out.contains("ERROR"),
        "gst errors over {protocol}:\n{out}\n{err}"
    );
}

#[test]
fn gstreamer_rtspsrc_reaches_eos_over_udp() {
    gstreamer_reaches_eos("udp");
}

#[test]
fn gstreamer_rtspsrc_reaches_eos_over_tcp() {
    gstreamer_reaches_eos("tcp");
}
