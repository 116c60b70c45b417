//! RTMP publishing against a real publisher: ffmpeg publishes a generated MP4 clip (libx264
//! without B-frames + AAC, 3 s) with `-c copy -f flv rtmp://127.0.0.1:PORT/live/testkey`, and
//! the test drives `ingest::rtmp::RtmpConnection` over a plain blocking socket loop. What the
//! connection announces and produces is checked against ffprobe's reading of the same MP4:
//! the stream parameters (profile, level, size, sample rate, channels), every packet's count,
//! keyframe flag and bytes (read from the MP4 at ffprobe's `pos`/`size`) and its time.
//! A second test publishes to another app/key, is rejected, and ffmpeg must fail.
//!
//! They fail (not skip) when ffmpeg or ffprobe is missing. What would make them fail: a lost,
//! split or merged FLV message (counts, bytes), a wrong NAL length rewrite or a header byte
//! left in a frame (bytes), a wrong CompositionTime sign or ms → 90 kHz / sample clock
//! conversion (times), SPS cropping read wrong (size), a rejection ffmpeg does not notice.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardcast::ingest::rtmp::{RtmpConnection, RtmpEvent, RtmpFrame, RtmpTrack};
use shardcast::media::track::{Codec, TrackKind};

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "shardcast-rtmp-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when the test ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is required for this test ({e}); apt-get install -y ffmpeg")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// testsrc 320x240 at 30 fps (libx264, no B-frames, a keyframe every 30 frames) and a 440 Hz
/// sine (AAC-LC, 44.1 kHz stereo), 3 s.
fn make_clip(dir: &Path) -> PathBuf {
    let path = dir.join("clip.mp4");
    run(
        "ffmpeg",
        &[
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "3",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-bf",
            "0",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-ac",
            "2",
            path.to_str().unwrap(),
        ],
    );
    path
}

/// One packet as ffprobe reads it from the MP4.
#[derive(Debug)]
struct Packet {
    pts_s: f64,
    dts_s: f64,
    key: bool,
    pos: usize,
    size: usize,
}

/// ffprobe's streams (as JSON values) and packets per stream index.
fn probe(path: &Path) -> (Vec<serde_json::Value>, [Vec<Packet>; 2]) {
    let json = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-show_packets",
            path.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let streams = v["streams"].as_array().unwrap().clone();
    let mut packets: [Vec<Packet>; 2] = [Vec::new(), Vec::new()];
    for p in v["packets"].as_array().unwrap() {
        let index = p["stream_index"].as_u64().unwrap() as usize;
        packets[index].push(Packet {
            pts_s: p["pts_time"].as_str().unwrap().parse().unwrap(),
            dts_s: p["dts_time"].as_str().unwrap().parse().unwrap(),
            key: p["flags"].as_str().unwrap().contains('K'),
            pos: p["pos"].as_str().unwrap().parse().unwrap(),
            size: p["size"].as_str().unwrap().parse().unwrap(),
        });
    }
    (streams, packets)
}

/// What one publisher connection produced.
#[derive(Default)]
struct Session {
    requests: Vec<(String, String)>,
    tracks: Vec<Vec<RtmpTrack>>,
    frames: Vec<RtmpFrame>,
    closed: usize,
    error: Option<String>,
}

/// Accepts one connection (within 20 s) and drives it until the peer closes: read → receive →
/// write every `Send`; a publish is accepted when `allow(app, key)`, else rejected.
fn serve_one(listener: &TcpListener, allow: impl Fn(&str, &str) -> bool) -> Session {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream: TcpStream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no publisher connected: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut conn = RtmpConnection::new();
    let mut session = Session::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut events = Vec::new();
    // `RTMP_CAPTURE=file`: keep every byte the publisher sent (fuzz seeds are made from it).
    let mut capture = std::env::var_os("RTMP_CAPTURE").map(|_| Vec::new());
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        };
        if let Some(c) = capture.as_mut() {
            c.extend_from_slice(&buf[..n]);
        }
        events.clear();
        let result = conn.receive(&buf[..n], &mut events);
        let mut i = 0;
        while i < events.len() {
            match &events[i] {
                RtmpEvent::Send(bytes) => {
                    let _ = stream.write_all(bytes);
                }
                RtmpEvent::PublishRequested {
                    app,
                    key,
                    request_id,
                    ..
                } => {
                    session.requests.push((app.clone(), key.clone()));
                    let mut more = Vec::new();
                    if allow(app, key) {
                        conn.accept_publish(*request_id, &mut more).unwrap();
                    } else {
                        conn.reject(*request_id, "unknown stream key", &mut more)
                            .unwrap();
                    }
                    events.extend(more);
                }
                RtmpEvent::Tracks(t) => session.tracks.push(t.clone()),
                RtmpEvent::Frame(f) => session.frames.push(f.clone()),
                RtmpEvent::Closed { .. } => session.closed += 1,
            }
            i += 1;
        }
        if let Err(e) = result {
            session.error = Some(e.to_string());
            break;
        }
    }
    if let (Some(c), Some(path)) = (capture, std::env::var_os("RTMP_CAPTURE")) {
        std::fs::write(path, c).unwrap();
    }
    session
}

fn publish(port: u16, app_key: &str, clip: &Path) -> Reaper {
    let url = format!("rtmp://127.0.0.1:{port}/{app_key}");
    let child = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-nostdin", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is required for this test; apt-get install -y ffmpeg");
    Reaper(child)
}

/// Waits (at most 20 s) for ffmpeg to exit; returns its success and its stderr.
fn finish(mut ffmpeg: Reaper) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = ffmpeg.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "ffmpeg did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = ffmpeg.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.success(), err)
}

fn h264_profile_name(idc: u8) -> &'static str {
    match idc {
        66 => "Constrained Baseline",
        77 => "Main",
        100 => "High",
        _ => "other",
    }
}

#[test]
fn ffmpeg_publish_matches_ffprobe_of_the_source() {
    let dir = TempDir::new("publish");
    let clip = make_clip(&dir.0);
    let file = std::fs::read(&clip).unwrap();
    let (streams, packets) = probe(&clip);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ffmpeg = publish(port, "live/testkey", &clip);
    let session = serve_one(&listener, |app, key| app == "live" && key == "testkey");
    let (ok, stderr) = finish(ffmpeg);
    assert!(ok, "ffmpeg failed: {stderr}");
    assert_eq!(session.error, None);
    assert_eq!(
        session.requests,
        [("live".to_owned(), "testkey".to_owned())]
    );
    assert_eq!(
        session.closed, 1,
        "FCUnpublish/deleteStream end the publish once"
    );

    // Track configurations against ffprobe's streams.
    assert_eq!(
        session.tracks.len(),
        1,
        "announced once: {:?}",
        session.tracks
    );
    let tracks = &session.tracks[0];
    assert_eq!(tracks.len(), 2);
    let (video, audio) = (&streams[0], &streams[1]);
    let Codec::H264(v) = &tracks[0].codec else {
        panic!("track 0 is H.264")
    };
    assert_eq!(tracks[0].kind, TrackKind::Video);
    assert_eq!(
        video["profile"].as_str().unwrap(),
        h264_profile_name(v.profile_idc)
    );
    assert_eq!(video["level"].as_u64().unwrap(), u64::from(v.level_idc));
    assert_eq!(video["width"].as_u64().unwrap(), u64::from(v.width));
    assert_eq!(video["height"].as_u64().unwrap(), u64::from(v.height));
    let Codec::Aac(a) = &tracks[1].codec else {
        panic!("track 1 is AAC")
    };
    assert_eq!(audio["profile"].as_str().unwrap(), "LC");
    assert_eq!(a.object_type, 2);
    assert_eq!(
        audio["sample_rate"].as_str().unwrap(),
        a.sample_rate_hz.to_string()
    );
    assert_eq!(audio["channels"].as_u64().unwrap(), u64::from(a.channels));

    // Frames against ffprobe's packets, track by track, in order.
    let clock = [90_000.0, f64::from(a.sample_rate_hz)];
    let ours: [Vec<&RtmpFrame>; 2] =
        [0, 1].map(|t| session.frames.iter().filter(|f| f.track == t).collect());
    // ffmpeg may shift every stream by one amount (FLV times start at 0): take it from video.
    let offset_s = ours[0][0].pts as f64 / clock[0] - packets[0][0].pts_s;
    for track in 0..2 {
        let (ours, theirs) = (&ours[track], &packets[track]);
        assert_eq!(ours.len(), theirs.len(), "track {track}: frame count");
        assert_eq!(
            ours.iter().filter(|f| f.sync).count(),
            theirs.iter().filter(|p| p.key).count(),
            "track {track}: keyframe count"
        );
        let mut last_dts = i64::MIN;
        for (i, (f, p)) in ours.iter().zip(theirs.iter()).enumerate() {
            assert_eq!(f.sync, p.key, "track {track} frame {i}: keyframe flag");
            // libx264 in MP4 writes 4-byte NAL lengths, the form frames come out in, so the
            // bytes compare as they are (AAC: the raw access unit).
            assert_eq!(f.data.len(), p.size, "track {track} frame {i}: size");
            assert!(
                f.data[..] == file[p.pos..p.pos + p.size],
                "track {track} frame {i}: bytes differ from the MP4 sample"
            );
            assert!(
                f.dts > last_dts,
                "track {track} frame {i}: dts not increasing"
            );
            last_dts = f.dts;
            let pts_s = f.pts as f64 / clock[track] - offset_s;
            let dts_s = f.dts as f64 / clock[track] - offset_s;
            assert!(
                (pts_s - p.pts_s).abs() <= 0.001 + 1e-9 && (dts_s - p.dts_s).abs() <= 0.001 + 1e-9,
                "track {track} frame {i}: pts/dts {pts_s:.6}/{dts_s:.6} s, ffprobe {:.6}/{:.6} s",
                p.pts_s,
                p.dts_s
            );
        }
    }
}

#[test]
fn rejected_publisher_sees_an_error_and_ffmpeg_fails() {
    let dir = TempDir::new("reject");
    let clip = make_clip(&dir.0);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ffmpeg = publish(port, "other/wrongkey", &clip);
    let session = serve_one(&listener, |app, key| app == "live" && key == "testkey");
    let (ok, stderr) = finish(ffmpeg);
    assert_eq!(
        session.requests,
        [("other".to_owned(), "wrongkey".to_owned())]
    );
    assert!(session.frames.is_empty() && session.tracks.is_empty());
    assert!(!ok, "ffmpeg must fail when its publish is refused");
    assert!(
        stderr.contains("unknown stream key") || stderr.contains("Server error"),
        "ffmpeg's error names the refusal: {stderr}"
    );
}
