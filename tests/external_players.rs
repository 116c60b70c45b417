//! Conformance against independent players run as external programs: ffmpeg/ffprobe
//! (libavformat's RTSP client) and GStreamer's `rtspsrc`, over UDP and TCP. Each must decode
//! the whole bundled clip without errors and end by itself (RTCP BYE at end of stream).
//! These fail if a player reports an error, decodes a different number of frames, or hangs.
//! `.ci/run` installs both (Debian packages ffmpeg, gstreamer1.0-*); missing tools fail.

mod common;

use std::process::Command;
use std::time::Duration;

use common::players::{ffmpeg_decode, ffmpeg_decode_stream, gstreamer_reaches_eos, Decoded};
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

fn ffmpeg_decodes_whole_clip(transport: &str) {
    let server = common::Server::start(&[]);
    let (want_frames, want_secs) = sample_video_frames_and_duration();
    let Decoded {
        frames,
        end_secs: end,
    } = ffmpeg_decode(&server.url("sample"), transport);
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

/// The server aggregates small AAC frames, several per RTP packet (RFC 3640 §3.2.2):
/// libavformat's depacketizer must get every one of them back, each on its own time.
/// Fails if frames are lost or merged, or their timestamps do not span the clip.
#[test]
fn ffmpeg_decodes_every_aggregated_aac_frame() {
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let audio = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .unwrap();
    let want = audio.samples.len();
    let server = common::Server::start(&[]);
    for transport in ["udp", "tcp"] {
        let Decoded { frames, end_secs } =
            ffmpeg_decode_stream(&server.url("sample"), transport, "0:a");
        assert!(
            frames.abs_diff(want) <= 1,
            "{transport}: decoded {frames} AAC frames, file has {want}"
        );
        let want_secs = audio.duration().as_secs_f64();
        assert!(
            (end_secs - want_secs).abs() <= 0.1,
            "{transport}: audio ends at {end_secs:.3} s, track is {want_secs:.3} s"
        );
    }
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

fn gstreamer_plays_sample(protocol: &str) {
    let server = common::Server::start(&[]);
    gstreamer_reaches_eos(&server.url("sample"), protocol);
}

#[test]
fn gstreamer_rtspsrc_reaches_eos_over_udp() {
    gstreamer_plays_sample("udp");
}

#[test]
fn gstreamer_rtspsrc_reaches_eos_over_tcp() {
    gstreamer_plays_sample("tcp");
}

/// GStreamer's RFC 3640 depayloader gets every aggregated AAC frame back, each with its own
/// timestamp one frame (1024 / 48 kHz) after the last — including the first packet's later
/// frames, which it can time only from the SDP's `constantDuration`. Fails if frames are
/// lost, merged, or left without a timestamp.
#[test]
fn gstreamer_times_every_aggregated_aac_frame() {
    let server = common::Server::start(&[]);
    // `-v` prints identity's `last-message` on every buffer, as gst-launch -v did.
    let (ok, out, err) = common::gst_play(
        &server.url("sample"),
        &["protocols=udp"],
        &[
            ("audio", "rtpmp4gdepay ! identity silent=false ! fakesink"),
            ("video", "fakesink"),
        ],
        &[],
        true,
        Duration::from_secs(40),
    );
    assert!(ok, "GStreamer failed: {err}");
    // identity's `last-message` lines: "chain ******* (identity0:sink) (N bytes, dts: …, pts: H:MM:SS.NNNNNNNNN, …".
    let pts: Vec<Option<f64>> = out
        .lines()
        .filter(|l| l.contains("identity0") && l.contains("chain"))
        .map(|l| {
            let rest = l.split("pts: ").nth(1)?;
            let t = rest.split([',', ')']).next()?.trim();
            let mut parts = t.split(':');
            let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
            Some(
                h.parse::<f64>().ok()? * 3600.0
                    + m.parse::<f64>().ok()? * 60.0
                    + s.parse::<f64>().ok()?,
            )
        })
        .collect();
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let want = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .unwrap()
        .samples
        .len();
    assert!(
        pts.len().abs_diff(want) <= 1,
        "{} AAC frames out of {want}",
        pts.len()
    );
    let timed: Vec<f64> = pts.iter().flatten().copied().collect();
    assert_eq!(timed.len(), pts.len(), "every frame has a timestamp");
    // One frame (21.3 ms) apart on average; single steps vary by a few ms because
    // rtpjitterbuffer's clock-skew correction moves packets' times, but never to zero (one
    // time for several frames) or to a gap.
    let frame = 1024.0 / 48_000.0;
    for w in timed.windows(2) {
        let step = w[1] - w[0];
        assert!(
            step > frame / 2.0 && step < frame * 1.5,
            "frames 1024 samples apart, got a step of {step:.4} s"
        );
    }
    let mean = (timed[timed.len() - 1] - timed[0]) / (timed.len() - 1) as f64;
    assert!((mean - frame).abs() < 0.0005, "mean step {mean:.5} s");
}
