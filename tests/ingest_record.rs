//! Issue 16 item 6: live streams recorded to fragmented MP4 in the media folder, played as VOD
//! (while being written and after), rotated, and readable after a crash. ffmpeg publishes
//! the bundled sample (10 s, H.264 Main without B-frames at 25 fps, a keyframe every 2 s, AAC
//! 48 kHz), and for rotation also the B-frame clip (`tests/media/bframes.mp4`: 4 s, H.264
//! High with B-frames), over RTSP in real time to a server started with `--record 'live/*'`;
//! ffprobe and ffmpeg (independent readers) judge the files and what the server plays from
//! them. They fail (not skip) without ffmpeg.
//!
//! What would make them fail: frames lost or doubled (B-frames dropped as "backwards" did
//! this: 95 of 250 video frames of the earlier B-frame sample were recorded), a wrong duration, a seek that starts at the
//! wrong frame, a file that ffmpeg cannot decode or that our reader rejects after a crash, a
//! recording missing from the catalog while it is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::players::ffmpeg_decode_without_warnings;
use common::publishers::{ffmpeg_publish, media, wait_published};
use common::{retina_play, run_with_timeout, Server};
use shardcast::media::MediaFile;

/// A media folder removed when the test ends (kept with `KEEP_RECORDING=1`).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "shardcast-ingest-rec-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_RECORDING").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Recordings in the catalog (`/api/v1/streams`): (name, duration in seconds).
fn catalog_recordings(server: &Server) -> Vec<(String, f64)> {
    let json = server.http_get("/api/v1/streams").json();
    json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str()?;
            name.starts_with("recordings/")
                .then(|| (name.to_owned(), s["duration_secs"].as_f64().unwrap_or(0.0)))
        })
        .collect()
}

/// Waits for a line containing `needle` in the server's log.
fn wait_log(server: &Server, needle: &str, limit: Duration) {
    let end = Instant::now() + limit;
    while !server.log_lines().iter().any(|l| l.contains(needle)) {
        assert!(
            Instant::now() < end,
            "no log line with {needle:?} within {limit:?}:\n{}",
            server.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `.mp4` files of the stream `live/NAME`'s recordings, sorted (by time: names are UTC).
fn recorded_files(root: &Path, stream: &str) -> Vec<PathBuf> {
    let dir = root.join("recordings").join(stream);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .collect();
    files.sort();
    files
}

fn ffprobe(args: &[&str], file: &str) -> String {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(file),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe {file}: {err}");
    out
}

/// `format.duration` in seconds.
fn probe_duration(file: &str) -> f64 {
    ffprobe(
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
        file,
    )
    .trim()
    .parse()
    .unwrap()
}

/// Packets per stream as ffprobe reads them: (video, audio).
fn probe_packets(file: &str) -> (usize, usize) {
    let out = ffprobe(
        &[
            "-count_packets",
            "-show_entries",
            "stream=codec_type,nb_read_packets",
            "-of",
            "csv=p=0",
        ],
        file,
    );
    let (mut video, mut audio) = (0, 0);
    for line in out.lines() {
        match line.split_once(',') {
            Some(("video", n)) => video = n.trim().parse().unwrap(),
            Some(("audio", n)) => audio = n.trim().parse().unwrap(),
            _ => {}
        }
    }
    (video, audio)
}

/// Decoded video frames of `input` (after `before` input options): (pts in seconds, CRC).
fn video_crcs(before: &[&str], input: &str) -> Vec<(f64, String)> {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error"])
            .args(before)
            .args(["-i", input, "-map", "0:v", "-f", "framecrc", "-"]),
        Duration::from_secs(40),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg {input}: {err}");
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

/// Recorded while published, the recording plays from its start while the publisher is
/// still on (timeshift); once the publisher ended it has the published duration and every
/// frame, ffmpeg's `-ss 5` through the server (RTSP `Range: npt=5-`) starts at the source's
/// frame at 5 s, and ffmpeg plays the whole of it over RTSP.
#[test]
fn a_recording_plays_while_written_and_afterwards_with_its_duration_and_seek() {
    let dir = TempDir::new("vod");
    let server = Server::start_logged(&[
        "--media",
        dir.arg(),
        "--publish",
        "live/*",
        "--record",
        "live/*",
        "--publisher-timeout",
        "1",
    ]);
    let sample = media("sample.mp4");
    let mut publisher = ffmpeg_publish(&sample, &server.url("live/cam1"), "tcp");
    wait_published(&server, "live/cam1", Duration::from_secs(10));

    // The recording is in the catalog while it is written, with what it has so far.
    let start = Instant::now();
    let (name, so_far) = loop {
        if let Some((n, d)) = catalog_recordings(&server)
            .into_iter()
            .find(|(n, d)| n.starts_with("recordings/live/cam1/") && *d >= 2.0)
        {
            break (n, d);
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "no recording with 2 s in the catalog: {:?}",
            catalog_recordings(&server)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "still published while the recording is played"
    );
    assert!(so_far < 9.0, "a recording being written has {so_far} s");
    let timeshift = ffmpeg_decode_without_warnings(&server.url(&name), "tcp");
    eprintln!(
        "timeshift: {} frames, {:.2} s of {so_far:.2}",
        timeshift.frames, timeshift.end_secs
    );
    // The snapshot's frames (25 fps), give or take the last one.
    assert!(
        timeshift.frames as f64 >= so_far * 25.0 - 2.0,
        "{} frames",
        timeshift.frames
    );
    assert!((timeshift.end_secs - so_far).abs() < 0.5);

    let status = publisher.wait().unwrap();
    assert!(status.success(), "the publisher failed: {status}");
    wait_log(&server, "recording finished", Duration::from_secs(5));
    let files = recorded_files(&dir.0, "live/cam1");
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].to_str().unwrap();
    assert_eq!(
        format!(
            "recordings/live/cam1/{}",
            files[0].file_stem().unwrap().to_str().unwrap()
        ),
        name
    );

    // Duration and frames: the whole published clip (the publisher starts at a keyframe).
    let (duration, source_duration) = (probe_duration(file), probe_duration(&sample));
    assert!(
        (duration - source_duration).abs() < 0.5,
        "recorded {duration} s of {source_duration} s"
    );
    let (video, audio) = probe_packets(file);
    let (source_video, source_audio) = probe_packets(&sample);
    assert_eq!(video, source_video, "every video frame recorded once");
    // AAC frames that arrive before the first keyframe are not recorded (a few ms worth).
    assert!(
        audio <= source_audio && audio + 5 >= source_audio,
        "{audio} of {source_audio} audio frames"
    );
    let ours = MediaFile::open(&files[0], "rec").expect("our reader indexes the recording");
    let counts: Vec<usize> = ours.index.tracks.iter().map(|t| t.samples.len()).collect();
    assert_eq!(counts, vec![video, audio], "our reader agrees with ffprobe");

    // Seek through the server: ffmpeg's -ss before -i sends PLAY with Range: npt=5-.
    let source = video_crcs(&[], &sample);
    let sought = video_crcs(
        &["-rtsp_transport", "tcp", "-ss", "5", "-copyts"],
        &server.url(&name),
    );
    let (first_pts, first_crc) = sought.first().expect("frames after the seek").clone();
    assert!(
        (4.9..5.2).contains(&first_pts),
        "first frame after -ss 5 at {first_pts} s"
    );
    let at = source
        .iter()
        .find(|(pts, _)| (pts - first_pts).abs() < 0.02)
        .expect("a source frame at that time");
    assert_eq!(at.1, first_crc, "the source's frame at {first_pts} s");
    assert!(
        sought.len() >= 115,
        "{} frames after the seek",
        sought.len()
    );

    // The whole recording over RTSP: retina receives every frame, each at the source's
    // presentation time (our index of the recording, checked against ffprobe above, equals
    // the source's timing), and ffmpeg decodes it without a warning.
    let recorded = retina_play::expected_of(&ours);
    let source_exp = retina_play::expected();
    assert_eq!(
        recorded.video_pts, source_exp.video_pts,
        "the source's timing"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(retina_play::play_all_of(
        &server.url(&name),
        retina::client::Transport::Tcp(Default::default()),
        &recorded,
    ));
    let whole = ffmpeg_decode_without_warnings(&server.url(&name), "tcp");
    // Every frame: the sample has no B-frames. (With the earlier B-frame sample ffmpeg's RTSP
    // client decoded one frame less, the first B-frame, though retina received it.)
    assert!(
        whole.frames >= source.len(),
        "{} of {} frames decoded",
        whole.frames,
        source.len()
    );
    assert!((whole.end_secs - source_duration).abs() < 0.5);
}

/// 2 s files: the recording rotates at keyframes into several files, each playable on its
/// own, and the files together hold every video frame of the clip once, in order (their
/// decoded frames are the source's).
#[test]
fn short_segments_rotate_without_losing_or_doubling_a_frame() {
    rotate_and_check(&media("sample.mp4"), "sample", 4);
}

/// The same with B-frames (decode order ≠ presentation order across the cuts): 4 s of
/// keyframes every 2 s rotate into two files holding every frame once.
#[test]
fn short_segments_with_b_frames_rotate_without_losing_or_doubling_a_frame() {
    rotate_and_check(&media("bframes.mp4"), "bframes", 2);
}

/// Publishes `sample` to a server recording 2 s files and checks that it rotated into at
/// least `min_files` files that together hold the clip's frames once each, in order. `tag`
/// keeps the tests' config files apart.
fn rotate_and_check(sample: &str, tag: &str, min_files: usize) {
    let dir = TempDir::new("rotate");
    let config = common::write_config(
        &format!("ingest-record-rotate-{tag}"),
        &format!(
            "media = {:?}\npublish = [\"live/*\"]\n[record]\npaths = [\"live/*\"]\nsegment = 2\n",
            dir.arg()
        ),
    );
    let server = Server::start_logged(&[
        "--config",
        config.to_str().unwrap(),
        "--publisher-timeout",
        "1",
    ]);
    let mut publisher = ffmpeg_publish(sample, &server.url("live/rot"), "tcp");
    assert!(publisher.wait().unwrap().success());
    wait_log(&server, "recording finished", Duration::from_secs(5));
    let files = recorded_files(&dir.0, "live/rot");
    assert!(files.len() >= min_files, "rotated into {files:?}");

    let source = video_crcs(&[], sample);
    let (source_video, source_audio) = probe_packets(sample);
    let (mut crcs, mut audio) = (Vec::new(), 0);
    for f in &files {
        let f = f.to_str().unwrap();
        let frames = video_crcs(&[], f);
        assert!(!frames.is_empty(), "{f} has video");
        crcs.extend(frames.into_iter().map(|(_, c)| c));
        let (v, a) = probe_packets(f);
        assert!(v > 0 && a > 0, "{f}: {v} video, {a} audio packets");
        audio += a;
        let d = probe_duration(f);
        assert!((1.5..4.5).contains(&d), "{f}: {d} s");
    }
    let expected: Vec<String> = source.into_iter().map(|(_, c)| c).collect();
    assert_eq!(crcs.len(), source_video);
    assert_eq!(
        crcs, expected,
        "the files' frames are the source's, once each"
    );
    assert!(
        audio <= source_audio && audio + 5 >= source_audio,
        "{audio} of {source_audio} audio frames across files"
    );
}

/// `kill -9` of the server while it records: the file it was writing is read by ffprobe and
/// by our reader up to its last complete fragment (the fragment held in memory is lost); a
/// fragment cut short (the same file with its last bytes gone) is left out, not an error.
#[test]
fn a_crash_leaves_a_file_readable_up_to_its_last_complete_fragment() {
    let dir = TempDir::new("crash");
    let server = Server::start_logged(&[
        "--media",
        dir.arg(),
        "--publish",
        "live/*",
        "--record",
        "live/*",
    ]);
    let mut publisher = ffmpeg_publish(&media("sample.mp4"), &server.url("live/crash"), "tcp");
    wait_published(&server, "live/crash", Duration::from_secs(10));
    let start = Instant::now();
    while !catalog_recordings(&server).iter().any(|(_, d)| *d >= 3.9) {
        assert!(start.elapsed() < Duration::from_secs(9), "no 4 s recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = publisher.wait();

    let files = recorded_files(&dir.0, "live/crash");
    assert_eq!(files.len(), 1);
    let file = files[0].to_str().unwrap();
    let (video, audio) = probe_packets(file);
    assert!(video >= 100, "{video} video frames survived (4 s recorded)");
    let ours = MediaFile::open(&files[0], "crash").expect("our reader takes the crashed file");
    let counts: Vec<usize> = ours.index.tracks.iter().map(|t| t.samples.len()).collect();
    assert_eq!(counts, vec![video, audio], "our reader agrees with ffprobe");
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg").args(["-v", "error", "-i", file, "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg decodes it: {err}");

    // The last fragment cut short: our reader leaves it out, a GOP (50 frames) fewer.
    let bytes = std::fs::read(&files[0]).unwrap();
    let cut = dir.0.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let short = MediaFile::open(&cut, "cut").expect("a truncated last fragment is left out");
    assert_eq!(short.index.tracks[0].samples.len(), video - 50);
    assert!(short.index.tracks[1].samples.len() < audio);
}

/// A recording is a file like any other, and a file's multi-megabyte keyframe reaches a
/// viewer over TCP whole: in slices, as a live log's does, where sent at once it overflowed
/// the viewer's backlog and cut the viewer off (before, slicing covered live logs only).
/// An 8 MB IDR NAL is published, recorded, and played back from the recording over TCP.
#[test]
fn a_recorded_8_mb_keyframe_reaches_a_tcp_viewer_of_the_file_whole() {
    use common::raw_publish::{nal_tag, tagged_nal, RawPublisher, TcpViewer};
    let dir = TempDir::new("bigkey");
    let server = Server::start_logged(&[
        "--publish",
        "live/*",
        "--record",
        "live/*",
        "--media",
        dir.arg(),
    ]);
    let big = tagged_nal(2, true, 8_000_000);
    {
        let mut publisher = RawPublisher::start(&server, "live/big");
        publisher.send_nal(0, &tagged_nal(0, true, 3000));
        wait_published(&server, "live/big", Duration::from_secs(5));
        publisher.send_nal(3000, &tagged_nal(1, false, 900));
        publisher.send_nal(6000, &big);
        publisher.send_nal(9000, &tagged_nal(3, false, 900));
        publisher.send_nal(12000, &tagged_nal(4, false, 900));
        std::thread::sleep(Duration::from_millis(500));
    }
    // The publisher's connection closed: its recording is finished.
    wait_log(&server, "recording finished", Duration::from_secs(10));
    let files = recorded_files(&dir.0, "live/big");
    assert_eq!(files.len(), 1, "{files:?}");
    let name = format!(
        "recordings/live/big/{}",
        files[0].file_stem().unwrap().to_str().unwrap()
    );
    let viewer = TcpViewer::play(server.addr, &name);
    let arrived = viewer.wait(Duration::from_secs(20), |g| {
        g.aus
            .iter()
            .any(|au| au.nals.iter().any(|n| nal_tag(n) == Some(3)))
    });
    let tags: Vec<u32> = viewer.tags().into_iter().flatten().collect();
    assert!(
        arrived,
        "frame 3 (after the 8 MB keyframe) never reached the viewer of the file; got {tags:?}; server log:\n{}",
        server.log_lines().join("\n")
    );
    assert_eq!(&tags[..4], [0, 1, 2, 3], "frames in order");
    let got = viewer.got.lock().unwrap();
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    let au = got
        .aus
        .iter()
        .find(|au| au.nals.iter().any(|n| nal_tag(n) == Some(2)))
        .unwrap();
    let slice = au
        .nals
        .iter()
        .find(|n| !matches!(n[0] & 0x1f, 7 | 8))
        .unwrap();
    assert!(
        slice == &big,
        "the 8 MB NAL arrived changed ({} bytes)",
        slice.len()
    );
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|l| l.contains("too slow") || l.contains("cut off")),
        "the viewer was cut off: {:#?}",
        server.log_lines()
    );
}
