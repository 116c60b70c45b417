//! Issue 16's player matrix: every kind of publisher (ffmpeg over RTSP/UDP, ffmpeg over RTMP
//! as OBS's stand-in, GStreamer's `rtspclientsink` over RTSP/TCP) is played, while it
//! publishes, by retina (every frame from the join keyframe, no loss, the file's timing) and
//! by GStreamer (`rtspsrc ! decodebin`, every frame decoded to EOS without a warning or
//! error) at the same time. ffmpeg's decoding of each is in `ingest_rtsp.rs`.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::players::gstreamer_decoded_video_frames;
use common::publishers::{
    ffmpeg_publish, ffmpeg_publish_rtmp, finish_publisher, gst_publish, media, wait_published,
};
use common::retina_play::{assert_live_matches_file, play_live};
use common::Server;
use retina::client::Transport;

/// Who publishes the bundled sample.
#[derive(Clone, Copy, Debug)]
enum Publisher {
    FfmpegRtspUdp,
    FfmpegRtmp,
    GstreamerRtspTcp,
}

/// Publishes sample.mp4 with `who` to `live/NAME`, then plays it with retina (TCP) and
/// GStreamer (`gst_protocol`) at once; both must get the whole stream from their join.
fn publish_and_play_with_retina_and_gstreamer(who: Publisher, gst_protocol: &str) {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let name = format!("live/{who:?}").to_lowercase();
    let url = server.url(&name);
    let sample = media("sample.mp4");
    let publisher: Child = match who {
        Publisher::FfmpegRtspUdp => ffmpeg_publish(&sample, &url, "udp"),
        Publisher::FfmpegRtmp => {
            let rtmp = server.rtmp.expect("the server printed its RTMP address");
            ffmpeg_publish_rtmp(&sample, &format!("rtmp://{rtmp}/{name}"))
        }
        Publisher::GstreamerRtspTcp => gst_publish(&sample, &url, "tcp"),
    };
    wait_published(&server, &name, Duration::from_secs(10));
    let gst = {
        let url = url.clone();
        let protocol = gst_protocol.to_owned();
        std::thread::spawn(move || gstreamer_decoded_video_frames(&url, &protocol))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(play_live(&url, Transport::Tcp(Default::default())));
    let gst_frames = gst.join().expect("GStreamer played without a warning");
    let (status, stderr) = finish_publisher(publisher, Duration::from_secs(20));
    if let Some(status) = status {
        assert!(status.success(), "{who:?} failed: {status}\n{stderr}");
    }
    // RTMP carries millisecond timestamps: a frame's time is the file's within 1 ms.
    let tolerance = match who {
        Publisher::FfmpegRtmp => 90,
        _ => 0,
    };
    let retina_frames = assert_live_matches_file(&got, Path::new(&sample), 150, tolerance);
    eprintln!("{who:?}: retina {retina_frames} frames, GStreamer {gst_frames} frames");
    // GStreamer joined at about the same time as retina, at the same latest keyframe or
    // within a GOP of it (sample.mp4: a keyframe every 2 s, 60 frames).
    assert!(
        gst_frames + 60 >= retina_frames && gst_frames >= 150,
        "GStreamer decoded {gst_frames} frames, retina {retina_frames}"
    );
}

#[test]
fn ffmpeg_over_rtsp_udp_plays_in_retina_and_gstreamer() {
    publish_and_play_with_retina_and_gstreamer(Publisher::FfmpegRtspUdp, "udp");
}

#[test]
fn ffmpeg_over_rtmp_plays_in_retina_and_gstreamer() {
    publish_and_play_with_retina_and_gstreamer(Publisher::FfmpegRtmp, "tcp");
}

#[test]
fn gstreamer_over_rtsp_tcp_plays_in_retina_and_gstreamer() {
    publish_and_play_with_retina_and_gstreamer(Publisher::GstreamerRtspTcp, "udp");
}
