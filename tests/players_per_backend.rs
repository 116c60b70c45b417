//! Independent players through every send path: ffmpeg and GStreamer play a clip over UDP
//! from a server on each backend (`--io uring|sendmmsg|sendto`) with GSO on and off. A
//! backend that mis-cuts a GSO train, misorders a batch or drops a datagram shows up as a
//! decode error, a missing frame or a hang. (retina and a raw wire-checking client cover the
//! same matrix in `tests/backends.rs`.) The 2-second clip keeps the 12 runs short.

mod common;

use std::path::PathBuf;

use common::players::{backend_available, ffmpeg_decode, gstreamer_reaches_eos};
use shardcast::media::track::TrackKind;
use shardcast::media::MediaFile;

fn media_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/media")
}

/// Video frames and duration of `tests/media/short.mp4`, from our index of it.
fn short_clip() -> (usize, f64) {
    let media = MediaFile::open(&media_dir().join("short.mp4"), "short").unwrap();
    let video = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    (video.samples.len(), media.duration().as_secs_f64())
}

fn server(io: &str, gso: &str) -> common::Server {
    let media = media_dir();
    common::Server::start(&[
        "--media",
        media.to_str().unwrap(),
        "--io",
        io,
        "--gso",
        gso,
        "--shards",
        "1",
    ])
}

fn ffmpeg_plays(io: &str, gso: &str) {
    if !backend_available(io) {
        return;
    }
    let server = server(io, gso);
    let (want_frames, want_secs) = short_clip();
    let got = ffmpeg_decode(&server.url("short"), "udp");
    assert!(
        got.frames.abs_diff(want_frames) <= 1,
        "--io {io} --gso {gso}: ffmpeg decoded {} video frames, clip has {want_frames}",
        got.frames
    );
    assert!(
        (got.end_secs - want_secs).abs() <= 0.1,
        "--io {io} --gso {gso}: ffmpeg decoded {:.3} s, clip is {want_secs:.3} s",
        got.end_secs
    );
}

fn gstreamer_plays(io: &str, gso: &str) {
    if !backend_available(io) {
        return;
    }
    let server = server(io, gso);
    gstreamer_reaches_eos(&server.url("short"), "udp");
}

macro_rules! per_backend {
    ($($name:ident: $player:ident($io:literal, $gso:literal);)*) => {$(
        #[test]
        fn $name() {
            $player($io, $gso);
        }
    )*};
}

per_backend! {
    ffmpeg_uring_gso_on: ffmpeg_plays("uring", "on");
    ffmpeg_uring_gso_off: ffmpeg_plays("uring", "off");
    ffmpeg_sendmmsg_gso_on: ffmpeg_plays("sendmmsg", "on");
    ffmpeg_sendmmsg_gso_off: ffmpeg_plays("sendmmsg", "off");
    ffmpeg_sendto_gso_on: ffmpeg_plays("sendto", "on");
    ffmpeg_sendto_gso_off: ffmpeg_plays("sendto", "off");
    gstreamer_uring_gso_on: gstreamer_plays("uring", "on");
    gstreamer_uring_gso_off: gstreamer_plays("uring", "off");
    gstreamer_sendmmsg_gso_on: gstreamer_plays("sendmmsg", "on");
    gstreamer_sendmmsg_gso_off: gstreamer_plays("sendmmsg", "off");
    gstreamer_sendto_gso_on: gstreamer_plays("sendto", "on");
    gstreamer_sendto_gso_off: gstreamer_plays("sendto", "off");
}
