//! Pulling RTSP sources (`shardcast::ingest::pull::pull_source`) from real servers: a second
//! shardcast's live channel over TCP interleaved and UDP, and GStreamer's RTSP server
//! (gst-rtsp-server, `scripts/gst-rtsp-server.py`) serving the same file. Every pulled frame
//! is checked against the file: its bytes against our MP4 reader's sample (with the SPS and
//! PPS that keyframes carry in front), its size, keyframe flag and presentation-time step
//! against ffprobe's packet list, and the announced tracks against the file's codec
//! configuration. A source whose picture size changes mid-stream (gst serving two x264
//! encodes back to back) announces its tracks again at the change. Sources that fail must
//! fail quickly with the error naming why: nothing listening, 401 from shardcast's real
//! authentication (and success with the URL's credentials), garbage on the socket, silence,
//! no H.264/AAC stream, media that stops.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardcast::ingest::pull::{
    pull_source, pull_source_with, PullError, PullEvent, PullOptions, PullStep, PullTransport,
};
use shardcast::live_log::LogTrackSpec;
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::track::{Codec, H264Config, TrackKind};
use shardcast::media::MediaFile;
use url::Url;

fn media(name: &str) -> String {
    format!("{}/tests/media/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// One pulled frame, copied out of the callback.
#[derive(Debug, Clone)]
struct Got {
    track: usize,
    pts: i64,
    dts: i64,
    sync: bool,
    data: Vec<u8>,
}

/// Everything a pull delivered, in order.
#[derive(Debug, Default)]
struct Pulled {
    tracks: Vec<Vec<LogTrackSpec>>,
    frames: Vec<Got>,
    skipped: Vec<String>,
    /// Frames that arrived before the first `Tracks` event (must be none).
    frames_before_tracks: usize,
    /// Sender reports: (track, pts on the frames' timeline).
    reports: Vec<(usize, i64)>,
}

impl Pulled {
    fn take(&mut self, ev: PullEvent<'_>) {
        match ev {
            PullEvent::Tracks(t) => self.tracks.push(t),
            PullEvent::Frame(f) => {
                if self.tracks.is_empty() {
                    self.frames_before_tracks += 1;
                }
                self.frames.push(Got {
                    track: f.track,
                    pts: f.pts,
                    dts: f.dts,
                    sync: f.sync,
                    data: f.data.to_vec(),
                });
            }
            PullEvent::Skipped { stream, reason } => {
                self.skipped.push(format!("{stream}: {reason}"))
            }
            PullEvent::SenderReport { track, pts, .. } => self.reports.push((track, pts)),
            PullEvent::Dropped { track, reason } => {
                panic!("track {track}: a frame dropped ({reason:?})")
            }
        }
    }
}

/// Pulls `url` for `secs` (or until it ends): what arrived, and the pull's result if it
/// returned within that time (`None`: still running, as a live source should be).
async fn pull_for(
    url: &str,
    options: PullOptions,
    secs: f64,
) -> (Pulled, Option<Result<(), PullError>>) {
    let mut pulled = Pulled::default();
    let result = tokio::time::timeout(
        Duration::from_secs_f64(secs),
        pull_source_with(Url::parse(url).unwrap(), options, |ev| pulled.take(ev)),
    )
    .await
    .ok();
    (pulled, result)
}

/// One packet as ffprobe lists it: presentation time (stream time base), size, key flag.
#[derive(Debug, Clone, Copy)]
struct Probed {
    pts: i64,
    size: usize,
    key: bool,
}

/// ffprobe's packets of the first video (`"v"`) or audio (`"a"`) stream of `path`, in
/// decode order, and the stream's time base denominator.
fn ffprobe_packets(path: &str, kind: &str) -> (Vec<Probed>, i64) {
    let tb = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &format!("{kind}:0")])
        .args(["-show_entries", "stream=time_base", "-of", "csv=p=0", path])
        .output()
        .expect("run ffprobe");
    let tb = String::from_utf8(tb.stdout).unwrap();
    let den: i64 = tb.trim().split('/').nth(1).unwrap().parse().unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &format!("{kind}:0")])
        .args([
            "-show_entries",
            "packet=pts,size,flags",
            "-of",
            "csv=p=0",
            path,
        ])
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8(out.stdout).unwrap();
    let packets = text
        .lines()
        // Packets with side data (AAC priming: `K_D`) end in an empty line.
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Probed {
                pts: f[0].parse().unwrap(),
                size: f[1].parse().unwrap(),
                key: f[2].starts_with('K'),
            }
        })
        .collect();
    (packets, den)
}

/// What the bundled sample must deliver per track: the codec, each sample's bytes as a pull
/// delivers them, and ffprobe's view of each.
struct FileTrack {
    codec: Codec,
    /// Per sample in decode order: the expected frame bytes.
    frames: Vec<Vec<u8>>,
    probed: Vec<Probed>,
    /// ffprobe's time base denominator (ticks per second).
    den: i64,
}

fn file_tracks() -> (FileTrack, FileTrack) {
    let file = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let bytes = file.bytes.as_slice();
    let track = |kind| {
        let t = file
            .index
            .tracks
            .iter()
            .find(|t| t.kind == kind)
            .unwrap()
            .clone();
        let frames = t
            .samples
            .iter()
            .map(|s| {
                let sample = &bytes[s.offset as usize..s.offset as usize + s.len as usize];
                match (&t.codec, s.sync) {
                    // retina puts the SPS and PPS before every keyframe (the file's samples
                    // carry none in-band: they are in its avcC).
                    (Codec::H264(c), true) => {
                        let mut v = Vec::new();
                        for ps in c.sps.iter().chain(&c.pps) {
                            v.extend_from_slice(&(ps.len() as u32).to_be_bytes());
                            v.extend_from_slice(ps);
                        }
                        v.extend_from_slice(sample);
                        v
                    }
                    _ => sample.to_vec(),
                }
            })
            .collect::<Vec<_>>();
        let sizes = t.samples.iter().map(|s| s.len as usize).collect::<Vec<_>>();
        (t.codec, frames, sizes)
    };
    let (vcodec, vframes, vsizes) = track(TrackKind::Video);
    let (acodec, aframes, asizes) = track(TrackKind::Audio);
    let (vprobe, vden) = ffprobe_packets(&media("sample.mp4"), "v");
    let (aprobe, aden) = ffprobe_packets(&media("sample.mp4"), "a");
    for (what, probed, sizes) in [("video", &vprobe, &vsizes), ("audio", &aprobe, &asizes)] {
        let ffprobe_sizes: Vec<usize> = probed.iter().map(|p| p.size).collect();
        assert_eq!(
            &ffprobe_sizes, sizes,
            "our reader and ffprobe: {what} sample sizes"
        );
    }
    (
        FileTrack {
            codec: vcodec,
            frames: vframes,
            probed: vprobe,
            den: vden,
        },
        FileTrack {
            codec: acodec,
            frames: aframes,
            probed: aprobe,
            den: aden,
        },
    )
}

/// Checks one pulled track against the file's: the frames are consecutive samples of the
/// file (from wherever the source started, looping), byte for byte (the samples' sizes are
/// ffprobe's, checked in `file_tracks`); key flags are ffprobe's; each pts step is ffprobe's
/// step in the RTP clock, within `slack` ticks. Returns the frames checked.
fn check_track(got: &[&Got], file: &FileTrack, clock_hz: i64, slack: i64, what: &str) -> usize {
    let n = file.frames.len();
    assert!(!got.is_empty(), "{what}: no frames");
    let first = file
        .frames
        .iter()
        .position(|f| *f == got[0].data)
        .unwrap_or_else(|| {
            panic!(
                "{what}: the first frame ({} bytes, sync {}) is no sample of the file",
                got[0].data.len(),
                got[0].sync
            )
        });
    for (k, g) in got.iter().enumerate() {
        let i = (first + k) % n;
        let p = file.probed[i];
        assert_eq!(g.dts, g.pts, "{what} frame {k}: dts = pts");
        assert_eq!(
            g.data.len(),
            file.frames[i].len(),
            "{what} frame {k} (sample {i}): size"
        );
        assert!(
            g.data == file.frames[i],
            "{what} frame {k} (sample {i}): bytes differ"
        );
        assert_eq!(
            g.sync, p.key,
            "{what} frame {k} (sample {i}): keyframe flag"
        );
        if k > 0 && i > 0 {
            let step = (p.pts - file.probed[i - 1].pts) * clock_hz;
            assert_eq!(step % file.den, 0, "{what}: step converts exactly");
            let (got_step, want) = (g.pts - got[k - 1].pts, step / file.den);
            assert!(
                (got_step - want).abs() <= slack,
                "{what} frame {k} (sample {i}): pts step {got_step}, file {want}"
            );
        }
    }
    got.len()
}

/// Checks a pull of the bundled sample: the tracks equal the file's configuration, at least
/// `min_video` video frames arrived and every frame is the file's (times within `slack`).
fn check_sample_pull(pulled: &Pulled, min_video: usize, slack: i64, what: &str) {
    let (video, audio) = file_tracks();
    assert_eq!(pulled.frames_before_tracks, 0, "{what}: Tracks come first");
    assert_eq!(pulled.tracks.len(), 1, "{what}: parameters never changed");
    let specs = &pulled.tracks[0];
    assert_eq!(specs.len(), 2, "{what}: {specs:?}");
    let vk = specs
        .iter()
        .position(|s| s.kind == TrackKind::Video)
        .unwrap();
    let ak = specs
        .iter()
        .position(|s| s.kind == TrackKind::Audio)
        .unwrap();
    match (&specs[vk].codec, &video.codec) {
        (Codec::H264(got), Codec::H264(want)) => {
            assert_eq!(got, want, "{what}: H.264 configuration is the file's avcC")
        }
        other => panic!("{what}: video codecs {other:?}"),
    }
    match (&specs[ak].codec, &audio.codec) {
        (Codec::Aac(got), Codec::Aac(want)) => {
            assert_eq!(got, want, "{what}: AAC configuration is the file's")
        }
        other => panic!("{what}: audio codecs {other:?}"),
    }
    let of = |k| -> Vec<&Got> { pulled.frames.iter().filter(|f| f.track == k).collect() };
    let v = check_track(&of(vk), &video, 90_000, slack, &format!("{what} video"));
    let a = check_track(&of(ak), &audio, 48_000, slack, &format!("{what} audio"));
    assert!(v >= min_video, "{what}: {v} video frames");
    assert!(a >= min_video, "{what}: {a} audio frames");
    assert!(
        of(vk)[0].sync,
        "{what}: the source starts on a keyframe (live channels and gst do)"
    );
}

async fn pulls_a_second_shardcast(transport: PullTransport) {
    let server = common::Server::start(&["--live", &format!("ch={}", media("sample.mp4"))]);
    let (pulled, result) = pull_for(&server.url("ch"), PullOptions::new(transport), 5.0).await;
    assert!(result.is_none(), "a live channel runs on: {result:?}");
    assert!(pulled.skipped.is_empty(), "{:?}", pulled.skipped);
    check_sample_pull(&pulled, 75, 0, &format!("shardcast {transport:?}"));
    // The origin's sender reports come through with their RTP time on the frames' timeline
    // (retina unfolds it): within the stretch of frames pulled, give or take a second.
    assert!(
        !pulled.reports.is_empty(),
        "no sender report passed through"
    );
    for &(track, pts) in &pulled.reports {
        let clock = if pulled.tracks[0][track].kind == TrackKind::Video {
            90_000
        } else {
            48_000
        };
        let of_track = pulled.frames.iter().filter(|f| f.track == track);
        let (lo, hi) = of_track.fold((i64::MAX, i64::MIN), |(lo, hi), f| {
            (lo.min(f.pts), hi.max(f.pts))
        });
        assert!(
            pts > lo - clock && pts < hi + clock,
            "track {track}: report at {pts}, frames {lo}..{hi}"
        );
    }
}

#[tokio::test]
async fn pulls_a_shardcast_live_channel_over_tcp_frame_for_frame() {
    pulls_a_second_shardcast(PullTransport::Tcp).await;
}

#[tokio::test]
async fn pulls_a_shardcast_live_channel_over_udp_frame_for_frame() {
    pulls_a_second_shardcast(PullTransport::Udp).await;
}

/// GStreamer's RTSP server on a free port, killed on drop.
struct GstServer {
    child: Child,
    url: String,
}

impl GstServer {
    fn start(file: &str) -> GstServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = format!("{}/scripts/gst-rtsp-server.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("/usr/bin/python3")
            .args([&script, file, "--port", &port.to_string(), "--path", "/cam"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run scripts/gst-rtsp-server.py (scripts/install-test-deps.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("rtsp://"),
            "gst-rtsp-server did not start: {line:?}"
        );
        GstServer {
            child,
            url: line.trim().to_string(),
        }
    }
}

impl Drop for GstServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn pulls_gstreamer(transport: PullTransport) {
    let gst = GstServer::start(&media("sample.mp4"));
    let (pulled, result) = pull_for(&gst.url, PullOptions::new(transport), 5.0).await;
    assert!(result.is_none(), "gst serves 10 s of media: {result:?}");
    // GStreamer carries times in nanoseconds and converts each to the RTP clock
    // (rtpbasepayload): 1024 samples at 48 kHz (21 333 333.3 ns) come out as 1023 or 1024.
    check_sample_pull(&pulled, 75, 1, &format!("gst-rtsp-server {transport:?}"));
}

#[tokio::test]
async fn pulls_a_gstreamer_rtsp_server_over_tcp_frame_for_frame() {
    pulls_gstreamer(PullTransport::Tcp).await;
}

#[tokio::test]
async fn pulls_a_gstreamer_rtsp_server_over_udp_frame_for_frame() {
    pulls_gstreamer(PullTransport::Udp).await;
}

/// A pull of `url` that must fail within `limit`: its error.
async fn must_fail(url: &str, options: PullOptions, limit: Duration) -> (PullError, Pulled) {
    let start = Instant::now();
    let (pulled, result) = pull_for(url, options, limit.as_secs_f64() + 5.0).await;
    let err = match result {
        Some(Err(e)) => e,
        other => panic!("{url}: expected a failure, got {other:?}"),
    };
    assert!(
        start.elapsed() < limit,
        "{url}: failed only after {:?} ({err})",
        start.elapsed()
    );
    (err, pulled)
}

/// A port with nothing listening (bound, then closed).
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn a_refused_connection_fails_at_once_as_connect() {
    let url = format!("rtsp://{}/cam", closed_port());
    let (err, _) = must_fail(
        &url,
        PullOptions::new(PullTransport::Tcp),
        Duration::from_secs(2),
    )
    .await;
    assert!(matches!(err, PullError::Connect(_)), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn credentials_in_the_url_are_used_and_a_wrong_password_is_unauthorized() {
    let server = common::Server::start(&["--user", "alice:p@ss:w"]);
    let host = server.addr;
    for url in [
        format!("rtsp://alice:nope@{host}/sample"),
        format!("rtsp://{host}/sample"),
    ] {
        let (err, _) = must_fail(
            &url,
            PullOptions::new(PullTransport::Tcp),
            Duration::from_secs(8),
        )
        .await;
        assert_eq!(
            err,
            PullError::Unauthorized(PullStep::Describe),
            "{url}: {err}"
        );
    }
    // The password has an '@' and a ':': percent-encoded in the URL (RFC 3986 §3.2.1).
    let (pulled, result) = pull_for(
        &format!("rtsp://alice:p%40ss%3Aw@{host}/sample"),
        PullOptions::new(PullTransport::Tcp),
        3.0,
    )
    .await;
    assert!(result.is_none(), "the right credentials play: {result:?}");
    assert_eq!(pulled.tracks.len(), 1);
    assert!(pulled.frames.len() > 20, "{} frames", pulled.frames.len());
}

/// A TCP server on a free port that answers every connection with `answer(request)` and then
/// holds the socket open for 10 s.
fn fake_server(answer: fn(&str) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let _ = conn.write_all(&answer(&String::from_utf8_lossy(&buf[..n])));
                std::thread::sleep(Duration::from_secs(10));
            });
        }
    });
    addr
}

/// Bytes from a linear congruential generator: reproducible junk.
fn junk(n: usize, mut seed: u32) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn garbage_from_the_source_fails_quickly_as_protocol() {
    for answer in [
        (|_: &str| junk(4096, 7)) as fn(&str) -> Vec<u8>,
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
        |_| {
            let mut v = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n".to_vec();
            v.extend(junk(2048, 3));
            v
        },
    ] {
        let url = format!("rtsp://{}/cam", fake_server(answer));
        let (err, _) = must_fail(
            &url,
            PullOptions::new(PullTransport::Tcp),
            Duration::from_secs(3),
        )
        .await;
        assert!(
            matches!(
                err,
                PullError::Protocol {
                    step: PullStep::Describe,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_silent_source_times_out_at_the_describe_bound() {
    let url = format!("rtsp://{}/cam", fake_server(|_| Vec::new()));
    let options = PullOptions {
        describe_timeout: Duration::from_secs(1),
        ..PullOptions::new(PullTransport::Tcp)
    };
    let (err, _) = must_fail(&url, options, Duration::from_secs(3)).await;
    assert_eq!(
        err,
        PullError::Timeout {
            step: PullStep::Describe,
            after: Duration::from_secs(1)
        }
    );
}

/// The CSeq of an RTSP request (RFC 2326 §12.17), to answer it.
fn cseq(request: &str) -> &str {
    request
        .lines()
        .find_map(|l| l.strip_prefix("CSeq:"))
        .map(str::trim)
        .unwrap_or("1")
}

#[tokio::test]
async fn a_source_with_no_h264_or_aac_has_no_usable_track() {
    let url = format!(
        "rtsp://{}/cam",
        fake_server(|req| {
            let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n\
                       m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=1\r\n\
                       m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\na=control:trackID=2\r\n";
            format!(
                "RTSP/1.0 200 OK\r\nCSeq: {}\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{sdp}",
                cseq(req),
                sdp.len()
            )
            .into_bytes()
        })
    );
    let (err, pulled) = must_fail(
        &url,
        PullOptions::new(PullTransport::Tcp),
        Duration::from_secs(3),
    )
    .await;
    assert!(matches!(err, PullError::NoUsableTrack(_)), "{err:?}");
    assert_eq!(pulled.skipped.len(), 2, "{:?}", pulled.skipped);
    assert!(
        err.to_string().contains("pcma") && err.to_string().contains("jpeg"),
        "{err}"
    );
}

#[tokio::test]
async fn media_that_stops_fails_at_the_frame_bound() {
    // A 2 s file on demand: its frames end, the session stays; the frame bound ends the pull.
    let server = common::Server::start(&["--media", &media("")]);
    let options = PullOptions {
        frame_timeout: Duration::from_secs(2),
        ..PullOptions::new(PullTransport::Tcp)
    };
    let (err, pulled) = must_fail(&server.url("short"), options, Duration::from_secs(8)).await;
    assert_eq!(
        err,
        PullError::Timeout {
            step: PullStep::Media,
            after: Duration::from_secs(2)
        }
    );
    let video = pulled.frames.iter().filter(|f| f.track == 0).count();
    assert_eq!(video, 50, "every frame of short.mp4 arrived first");
}

#[tokio::test]
async fn pull_source_uses_the_default_bounds() {
    // The plain entry point reaches the same server; its bound (10 s) is not hit in 4 s.
    let server = common::Server::start(&["--live", &format!("ch={}", media("short.mp4"))]);
    let mut frames = 0usize;
    let r = tokio::time::timeout(
        Duration::from_secs(4),
        pull_source(
            Url::parse(&server.url("ch")).unwrap(),
            PullTransport::Tcp,
            |ev| frames += usize::from(matches!(ev, PullEvent::Frame(_))),
        ),
    )
    .await;
    assert!(r.is_err(), "still running: {r:?}");
    assert!(frames > 20, "{frames} frames");
}

/// An MP4 whose picture size changes after 3 s, with a tone: two x264 encodes one after the
/// other (the second's SPS and PPS in-band, as ffmpeg's MP4 muxer keeps them in the
/// samples), and AAC.
fn resolution_change_file(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let mut annex_b = Vec::new();
    for size in ["320x180", "640x360"] {
        let part = dir.join(format!("{size}.h264"));
        let status = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
            ])
            .args(["-i", &format!("testsrc=size={size}:rate=25"), "-t", "3"])
            .args([
                "-c:v", "libx264", "-bf", "0", "-g", "25", "-pix_fmt", "yuv420p",
            ])
            .args(["-f", "h264"])
            .arg(&part)
            .status()
            .expect("run ffmpeg");
        assert!(status.success());
        annex_b.extend(std::fs::read(&part).unwrap());
    }
    let both = dir.join("both.h264");
    std::fs::write(&both, annex_b).unwrap();
    let mp4 = dir.join("both.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "h264",
        ])
        .args(["-framerate", "25", "-i"])
        .arg(&both)
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "6",
        ])
        .args(["-c:v", "copy", "-c:a", "aac", "-shortest"])
        .arg(&mp4)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    mp4.display().to_string()
}

#[tokio::test]
async fn a_mid_stream_resolution_change_announces_new_tracks() {
    let dir = std::env::temp_dir().join(format!("shardcast-ingest-pull-{}", std::process::id()));
    let gst = GstServer::start(&resolution_change_file(&dir));
    let (pulled, result) = pull_for(&gst.url, PullOptions::new(PullTransport::Tcp), 5.0).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(result.is_none(), "{result:?}");
    let video = |t: &[LogTrackSpec]| -> H264Config {
        t.iter()
            .find_map(|s| match &s.codec {
                Codec::H264(c) => Some(c.clone()),
                _ => None,
            })
            .expect("an H.264 track")
    };
    let sizes: Vec<(u16, u16)> = pulled
        .tracks
        .iter()
        .map(|t| {
            let c = video(t);
            (c.width, c.height)
        })
        .collect();
    assert_eq!(
        sizes,
        [(320, 180), (640, 360)],
        "tracks announced again on the change"
    );
    let audio = |t: &[LogTrackSpec]| t.iter().find(|s| s.kind == TrackKind::Audio).cloned();
    assert_eq!(
        audio(&pulled.tracks[0]),
        audio(&pulled.tracks[1]),
        "audio unchanged"
    );
    assert!(audio(&pulled.tracks[0]).is_some());
    // The first keyframe of the new size carries the new SPS in front (retina's
    // parameter-set insertion), after 3 s of the old size.
    let new_sps = &video(&pulled.tracks[1]).sps[0];
    let first_new = pulled
        .frames
        .iter()
        .filter(|f| f.track == 0)
        .position(|f| f.sync && f.data.get(4..).is_some_and(|d| d.starts_with(new_sps)))
        .expect("a keyframe with the new SPS");
    assert_eq!(first_new, 75, "the old size's 75 frames came first");
}
