//! Issue 16: encoders publish over RTSP (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD) and viewers
//! play the stream through the shards while it is published. The publishers and players are
//! independent implementations started by the tests: ffmpeg's RTSP muxer (`-f rtsp`, UDP and
//! TCP interleaved) and GStreamer's `rtspclientsink`; ffmpeg, GStreamer and retina play.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::players::ffmpeg_decode_without_warnings;
use common::{RawRtsp, Server};

fn media(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/media")
        .join(name)
        .display()
        .to_string()
}

/// ffmpeg publishing `file` in real time to `url` over `transport` (`udp` or `tcp`).
fn ffmpeg_publish(file: &str, url: &str, transport: &str) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-i",
            file,
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            transport,
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (installed by .ci/run)")
}

/// Waits until DESCRIBE of `name` answers 200 (the publisher is live); the SDP.
fn wait_published(server: &Server, name: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let mut c = RawRtsp::connect(server.addr);
        let r = c.request(
            "DESCRIBE",
            &server.url(name),
            &[("Accept", "application/sdp")],
        );
        if r.status == 200 {
            return String::from_utf8_lossy(&r.body).into_owned();
        }
        assert!(
            start.elapsed() < limit,
            "{name} not published within {limit:?} (last status {})",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn publish_and_play(transport: &str) {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let url = server.url("live/cam1");
    let mut publisher = ffmpeg_publish(&media("sample.mp4"), &url, transport);
    let sdp = wait_published(&server, "live/cam1", Duration::from_secs(10));
    assert!(sdp.contains("H264/90000"), "{sdp}");
    assert!(sdp.contains("mpeg4-generic"), "{sdp}");
    // The viewer joins at the latest keyframe and plays until the publisher's end: the
    // stream waits the publisher timeout (1 s) for it to return, then sends BYE.
    let decoded = ffmpeg_decode_without_warnings(&url, transport);
    eprintln!(
        "{transport}: {} frames, {:.2} s",
        decoded.frames, decoded.end_secs
    );
    let status = publisher.wait().unwrap();
    assert!(status.success(), "the publisher failed: {status}");
    // sample.mp4 is 10 s at 30 fps; the viewer joined within the first seconds.
    assert!(
        decoded.frames >= 150,
        "{} frames decoded over {transport} ({:.1} s)",
        decoded.frames,
        decoded.end_secs
    );
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("publishing") && l.contains("live/cam1")),
        "{lines:#?}"
    );
}

#[test]
fn ffmpeg_publishes_over_tcp_and_ffmpeg_plays_every_frame_after_the_join() {
    publish_and_play("tcp");
}

#[test]
fn ffmpeg_publishes_over_udp_and_ffmpeg_plays_every_frame_after_the_join() {
    publish_and_play("udp");
}

/// retina plays a published stream from the join to the publisher's end: the first video
/// frame is a keyframe, nothing is lost, and every video frame's presentation time (relative
/// to that keyframe) is the file's — the server kept the publisher's timing exactly.
#[test]
fn retina_plays_a_published_stream_with_the_files_timing_and_no_loss() {
    use futures::StreamExt;
    use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
    use retina::codec::CodecItem;
    use shardcast::media::track::TrackKind;
    use shardcast::media::MediaFile;

    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let url = server.url("live/retina");
    let mut publisher = ffmpeg_publish(&media("sample.mp4"), &url, "tcp");
    wait_published(&server, "live/retina", Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (video, audio) = rt.block_on(async {
        let mut session =
            Session::describe(url::Url::parse(&url).unwrap(), SessionOptions::default())
                .await
                .expect("DESCRIBE");
        assert_eq!(session.streams().len(), 2);
        for i in 0..2 {
            session
                .setup(
                    i,
                    SetupOptions::default().transport(Transport::Tcp(Default::default())),
                )
                .await
                .expect("SETUP");
        }
        let playing = session.play(PlayOptions::default()).await.expect("PLAY");
        let mut demuxed = playing.demuxed().expect("demuxed");
        let (mut video, mut audio) = (Vec::new(), 0usize);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still playing after 30 s"
            );
            // The publisher sends 10 s; frames stop then (retina does not end on BYE).
            match tokio::time::timeout(Duration::from_secs(3), demuxed.next()).await {
                Err(_) if !video.is_empty() => break,
                Err(_) => panic!("no frame within 3 s"),
                Ok(Some(Ok(CodecItem::VideoFrame(f)))) => {
                    assert_eq!(f.loss(), 0, "video loss before frame {}", video.len());
                    video.push((f.timestamp().elapsed(), f.is_random_access_point()));
                }
                Ok(Some(Ok(CodecItem::AudioFrame(f)))) => {
                    assert_eq!(f.loss(), 0, "audio loss before frame {audio}");
                    audio += 1;
                }
                Ok(Some(Ok(_))) => {}
                // The stream ends with RTCP BYE once the publisher is gone for its timeout.
                Ok(Some(Err(e))) => panic!("retina error after {} frames: {e}", video.len()),
                Ok(None) => break,
            }
        }
        (video, audio)
    });
    assert!(publisher.wait().unwrap().success());
    let file = MediaFile::open(std::path::Path::new(&media("sample.mp4")), "sample").unwrap();
    let track = file
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    let pts_90k: Vec<i64> = track
        .samples
        .iter()
        .map(|s| track.pts_ticks(s) * 90_000 / i64::from(track.timescale))
        .collect();
    assert!(
        video.first().is_some_and(|f| f.1),
        "the first frame is a keyframe"
    );
    // The join keyframe is the file's sample whose decode-order successors match.
    let n = video.len();
    assert!(n >= 100, "{n} video frames");
    let start = track.samples.len() - n;
    assert!(
        track.samples[start].sync,
        "the frames are the file's last {n}, from a keyframe"
    );
    for (k, (t, _)) in video.iter().enumerate() {
        assert_eq!(
            *t,
            pts_90k[start + k] - pts_90k[start],
            "video frame {k} after the join"
        );
    }
    assert!(audio > n, "{audio} audio frames beside {n} video frames");
}

/// ffmpeg publishes over RTMP (`-f flv`, OBS's stand-in) to `rtmp://ADDR/live/obs`; ffmpeg
/// plays `rtsp://ADDR/live/obs` and decodes every frame after the join without a warning.
#[test]
fn ffmpeg_publishes_over_rtmp_and_ffmpeg_plays_it_over_rtsp() {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(media("sample.mp4"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{rtmp}/live/obs"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    wait_published(&server, "live/obs", Duration::from_secs(10));
    let decoded = ffmpeg_decode_without_warnings(&server.url("live/obs"), "tcp");
    eprintln!("rtmp: {} frames, {:.2} s", decoded.frames, decoded.end_secs);
    assert!(publisher.wait().unwrap().success());
    assert!(decoded.frames >= 150, "{} frames", decoded.frames);
}

/// Publishing is refused where no rule allows it (RTSP 403, RTMP rejected: ffmpeg fails),
/// and a second publisher on a live path is refused whichever protocol each uses.
#[test]
fn publishing_without_permission_or_onto_a_live_path_is_refused() {
    let closed = Server::start_logged(&[]);
    let url = closed.url("live/x");
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
            .arg(&url),
        Duration::from_secs(20),
    );
    assert!(!ok, "publishing without a rule must fail");
    assert!(err.contains("403"), "{err}");
    let rtmp = closed.rtmp.unwrap();
    let (ok, _, _) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{rtmp}/live/x")),
        Duration::from_secs(20),
    );
    assert!(!ok, "an RTMP publish without a rule must fail");

    let open = Server::start_logged(&["--publish", "live/*"]);
    let mut first = ffmpeg_publish(&media("sample.mp4"), &open.url("live/taken"), "tcp");
    wait_published(&open, "live/taken", Duration::from_secs(10));
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
            .arg(open.url("live/taken")),
        Duration::from_secs(20),
    );
    assert!(!ok && err.contains("403"), "second RTSP publisher: {err}");
    let (ok, _, _) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/taken", open.rtmp.unwrap())),
        Duration::from_secs(20),
    );
    assert!(!ok, "a second (RTMP) publisher on a live path must fail");
    let _ = first.kill();
    let _ = first.wait();
}

/// A publisher that vanishes (killed: no TEARDOWN, its connection reset) and a new one that
/// takes over within the publisher timeout: the viewer keeps its session and sees one stream
/// — the same SSRCs, sequence numbers without a gap, audio timestamps running on one frame
/// after the last (RFC 3550 §5.1) — and gets RTCP BYE once no publisher returns.
#[test]
fn a_viewer_rides_through_a_publisher_reconnect_with_continuous_numbering() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "3"]);
    let url = server.url("live/re");
    let mut first = ffmpeg_publish(&media("sample.mp4"), &url, "tcp");
    wait_published(&server, "live/re", Duration::from_secs(10));
    let mut viewer = common::setup_udp_stream(server.addr, "live/re", 2);
    let play = viewer
        .rtsp
        .request("PLAY", &url, &[("Session", &viewer.session)]);
    assert_eq!(play.status, 200);
    let done = Arc::new(AtomicBool::new(false));
    let collect = |sock: std::net::UdpSocket| {
        let done = done.clone();
        std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    if let Some(rtp) = common::parse_rtp(&buf[..n]) {
                        got.push((rtp, Instant::now()));
                    }
                }
            }
            got
        })
    };
    let video = collect(viewer.socks[0].0.try_clone().unwrap());
    let audio = collect(viewer.socks[1].0.try_clone().unwrap());
    std::thread::sleep(Duration::from_secs(3));
    // Vanish: no TEARDOWN, the TCP connection dies with the process.
    first.kill().unwrap();
    first.wait().unwrap();
    let vanished = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    // The same encoding (same parameter sets): the stream continues. (Other parameters would
    // start a new stream: viewers' decoders need them from a new DESCRIBE.)
    let mut second = ffmpeg_publish(&media("sample.mp4"), &url, "tcp");
    assert!(second.wait().unwrap().success(), "the returning publisher");
    let ended = Instant::now();
    let bye = common::wait_for_bye(&viewer.socks[1].1, Duration::from_secs(8));
    done.store(true, Ordering::Relaxed);
    let (video, audio) = (video.join().unwrap(), audio.join().unwrap());
    assert!(
        bye,
        "RTCP BYE once the publisher timeout passed with nobody back"
    );
    for (name, packets) in [("video", &video), ("audio", &audio)] {
        assert!(packets.len() > 100, "{name}: {} packets", packets.len());
        assert!(
            packets.iter().all(|(p, _)| p.ssrc == packets[0].0.ssrc),
            "{name}: one SSRC throughout"
        );
        for w in packets.windows(2) {
            assert_eq!(
                w[1].0.seq,
                w[0].0.seq.wrapping_add(1),
                "{name}: sequence numbers run on without a gap"
            );
        }
        let before = packets.iter().filter(|(_, t)| *t < vanished).count();
        let after = packets.iter().filter(|(_, t)| *t > vanished).count();
        assert!(
            before > 10 && after > 10,
            "{name}: {before} packets before, {after} after"
        );
        assert!(packets
            .iter()
            .all(|(_, t)| *t < ended + Duration::from_secs(1)));
    }
    // AAC: one access unit per packet here, 1024 ticks apart — across the reconnect too.
    for w in audio.windows(2) {
        let step = w[1].0.ts.wrapping_sub(w[0].0.ts);
        assert!(step > 0 && step <= 4 * 1024, "audio timestamp step {step}");
    }
}

/// GStreamer `rtspclientsink` publishing sample.mp4 (H.264 and AAC, which it announces as
/// MP4A-LATM, RFC 6416) over `protocols` (`tcp` or `udp`), paced by its clock.
fn gst_publish(file: &str, url: &str, protocols: &str) -> Child {
    Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={file}"))
        .args([
            "!",
            "qtdemux",
            "name=d",
            "d.video_0",
            "!",
            "queue",
            "!",
            "h264parse",
            "!",
            "rtspclientsink",
            "name=s",
        ])
        .arg(format!("location={url}"))
        .arg(format!("protocols={protocols}"))
        .args(["d.audio_0", "!", "queue", "!", "aacparse", "!", "s."])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (scripts/install-test-deps.sh installs it)")
}

/// What ffprobe sees of `url`: the codec names of its streams.
fn ffprobe_codecs(url: &str, transport: &str) -> Vec<String> {
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(20),
    );
    assert!(ok, "ffprobe failed on {url}: {err}");
    out.lines().map(|l| l.trim().to_string()).collect()
}

fn gst_publish_and_play(protocols: &str) {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let url = server.url("live/gst");
    let publisher = gst_publish(&media("sample.mp4"), &url, protocols);
    let sdp = wait_published(&server, "live/gst", Duration::from_secs(10));
    // Both tracks are carried: the LATM audio is re-announced as RFC 3640 AAC.
    assert!(sdp.contains("H264/90000"), "{sdp}");
    assert!(sdp.contains("mpeg4-generic"), "{sdp}");
    let probe = {
        let url = url.clone();
        let transport = protocols.to_string();
        std::thread::spawn(move || ffprobe_codecs(&url, &transport))
    };
    let decoded = ffmpeg_decode_without_warnings(&url, protocols);
    eprintln!(
        "gst {protocols}: {} frames, {:.2} s",
        decoded.frames, decoded.end_secs
    );
    let mut codecs = probe.join().unwrap();
    codecs.sort();
    assert_eq!(codecs, ["aac", "h264"], "ffprobe's streams");
    let output = publisher.wait_with_output().unwrap();
    // At its end rtspclientsink sends PAUSE (RFC 2326 §10.6 allows it while recording): it
    // must be answered 200, so GStreamer exits cleanly.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "rtspclientsink failed: {}\n{stderr}",
        output.status,
    );
    // sample.mp4 is 10 s at 30 fps; the viewer joined within the first seconds.
    assert!(
        decoded.frames >= 150,
        "{} frames decoded over {protocols} ({:.1} s)",
        decoded.frames,
        decoded.end_secs
    );
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("publishing") && l.contains("live/gst") && l.contains("AAC")),
        "{lines:#?}"
    );
}

#[test]
fn gstreamer_publishes_h264_and_latm_over_tcp_and_ffmpeg_plays_every_frame_after_the_join() {
    gst_publish_and_play("tcp");
}

#[test]
fn gstreamer_publishes_h264_and_latm_over_udp_and_ffmpeg_plays_every_frame_after_the_join() {
    gst_publish_and_play("udp");
}
