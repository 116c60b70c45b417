//! The recorder's files read by ffmpeg: the bundled sample (10 s, H.264 Main without B-frames
//! at 25 fps, keyframe every 2 s, AAC 48 kHz) with 4 s files, and the B-frame clip
//! (`tests/media/bframes.mp4`: 4 s, H.264 High with B-frames, keyframe every 2 s, AAC) with
//! 2 s files, are each fed frame by frame through `Recorder` as a live source would deliver it (RTP clocks: 90 kHz video, 48 kHz audio; wall
//! times in step with the media), the effects are applied to a temporary directory, and
//! every file is checked with `ffprobe -show_packets` (every source sample present once,
//! sizes, decode and presentation times rebased to the file's start, keyframe flags),
//! `ffmpeg -v error -f null` (decodes without an error) and `ffmpeg -ss` (seeks), and
//! indexed by our own reader with the same result. They fail (not skip) without ffmpeg.
//!
//! What would make them fail: a frame lost or written twice at a cut or a rotation, a wrong
//! duration (decode times drift), composition offsets lost (pts = dts: the B-frame clip), a keyframe flag
//! lost, a box ffmpeg rejects, a file that does not start at a keyframe (no seek to 0).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardcast::ingest::record::{RecordConfig, RecordEffect, RecordTrack, Recorder};
use shardcast::ingest::Frame;
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::mp4::parse_mp4;
use shardcast::media::track::TrackKind;

/// A directory removed when the test ends (kept with `KEEP_RECORDING=1`).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "shardcast-rec-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_RECORDING").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is required for this test ({e}); apt-get install -y ffmpeg")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packet {
    size: u32,
    dts: i64,
    pts: i64,
    key: bool,
}

/// `ffprobe -show_packets` of `file`: (codec type, time base denominator, packets) per stream.
fn probe(file: &Path) -> Vec<(String, i64, Vec<Packet>)> {
    let f = file.to_str().unwrap();
    let (ok, out, err) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_streams",
            "-show_packets",
            "-of",
            "json",
            f,
        ],
    );
    assert!(ok && err.trim().is_empty(), "ffprobe {f}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut streams: Vec<(String, i64, Vec<Packet>)> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let tb = s["time_base"].as_str().unwrap();
            let den = tb.split_once('/').unwrap().1.parse().unwrap();
            (
                s["codec_type"].as_str().unwrap().to_owned(),
                den,
                Vec::new(),
            )
        })
        .collect();
    for p in v["packets"].as_array().unwrap() {
        let num = |k: &str| {
            p[k].as_i64()
                .or_else(|| p[k].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("packet field {k}: {p}"))
        };
        let i = p["stream_index"].as_u64().unwrap() as usize;
        streams[i].2.push(Packet {
            size: num("size") as u32,
            dts: num("dts"),
            pts: num("pts"),
            key: p["flags"].as_str().unwrap().starts_with('K'),
        });
    }
    streams
}

#[test]
fn recorded_sample_plays_seeks_and_keeps_every_frame() {
    record_and_check(
        SAMPLE_MP4,
        4,
        &[
            "recordings/live/sample/2025-06-15_15-06-40.mp4",
            "recordings/live/sample/2025-06-15_15-06-44.mp4",
            "recordings/live/sample/2025-06-15_15-06-48.mp4",
        ],
        [250, 470],
        2.0,
    );
}

/// B-frames: composition offsets (presentation order ≠ decode order) survive into files
/// that ffprobe reads with the source's pts.
#[test]
fn recorded_b_frames_keep_their_presentation_times() {
    let clip = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/media/bframes.mp4"
    ))
    .unwrap();
    let source = parse_mp4(&clip).unwrap();
    assert!(
        source.tracks[0].samples.iter().any(|s| s.cts_offset != 0),
        "the clip has B-frames"
    );
    record_and_check(
        &clip,
        2,
        &[
            "recordings/live/sample/2025-06-15_15-06-40.mp4",
            "recordings/live/sample/2025-06-15_15-06-42.mp4",
        ],
        [100, 189],
        1.0,
    );
}

/// Records `clip` with `segment_secs` files, checks the files' names, that together they
/// hold `frames` (video, audio) as ffprobe and our reader see them, and that ffmpeg seeks
/// `seek` seconds into the first file.
fn record_and_check(
    clip: &[u8],
    segment_secs: u64,
    want_files: &[&str],
    frames_in_all: [usize; 2],
    seek: f64,
) {
    let dir = TempDir::new("sample");
    let source = parse_mp4(clip).unwrap();
    let tracks: Vec<RecordTrack> = source
        .tracks
        .iter()
        .map(|t| RecordTrack::from_codec(t.kind, t.codec.clone()))
        .collect();
    let mut config = RecordConfig::new(&dir.0);
    config.segment_duration = Duration::from_secs(segment_secs);
    let mut recorder = Recorder::new(config, "live/sample", tracks).unwrap();

    // The source's samples as a live source delivers them: in the RTP clock, in time order
    // (video first at equal times), each arriving at its decode time.
    let wall0 = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let mut frames: Vec<(f64, usize, Frame<'_>)> = Vec::new();
    // (source track, clock rate, frames in RTP clock) for the checks below.
    let mut expected: Vec<Vec<Packet>> = Vec::new();
    for (i, t) in source.tracks.iter().enumerate() {
        let clock = i64::from(t.codec.clock_rate_hz());
        let scale = |ticks: i64| ticks * clock / i64::from(t.timescale);
        let mut packets = Vec::new();
        for s in &t.samples {
            let dts = scale(s.dts as i64);
            let pts = scale(s.dts as i64 + i64::from(s.cts_offset));
            let data = &clip[s.offset as usize..][..s.len as usize];
            frames.push((
                s.dts as f64 / f64::from(t.timescale),
                i,
                Frame {
                    track: i,
                    pts,
                    dts,
                    sync: s.sync,
                    data,
                },
            ));
            packets.push(Packet {
                size: s.len,
                dts,
                pts,
                key: s.sync,
            });
        }
        expected.push(packets);
    }
    frames.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut effects = Vec::new();
    for (secs, _, f) in &frames {
        recorder.push(f, wall0 + Duration::from_secs_f64(*secs), &mut effects);
    }
    recorder.finish(&mut effects);

    // Apply the effects as the shell would.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut closed: Vec<PathBuf> = Vec::new();
    let mut nexts: Vec<PathBuf> = Vec::new();
    for e in effects {
        match e {
            RecordEffect::Write { file, bytes } => {
                use std::io::Write;
                if file.starts_file {
                    std::fs::create_dir_all(file.path.parent().unwrap()).unwrap();
                    assert!(!file.path.exists());
                    files.push(file.path.clone());
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(file.starts_file)
                    .append(true)
                    .open(&file.path)
                    .unwrap();
                f.write_all(&bytes).unwrap();
            }
            RecordEffect::Rotate { closed: c, next } => {
                // The next file may not have its first bytes yet.
                nexts.push(next);
                closed.push(c);
            }
            RecordEffect::Close { closed: c } => closed.push(c),
        }
    }
    assert_eq!(closed, files, "every file is closed once, in order");
    assert_eq!(
        nexts,
        files[1..],
        "each rotation names the file after the closed one"
    );
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(&dir.0).unwrap().display().to_string())
        .collect();
    assert_eq!(names, want_files);

    // Every file: ffprobe sees the source's frames from the file's start keyframe on, with
    // times rebased to it; ours indexes the same; ffmpeg decodes it without an error.
    let mut seen = vec![0usize; 2];
    for file in &files {
        let f = file.to_str().unwrap();
        let (ok, _, err) = run(
            "ffmpeg",
            &["-nostdin", "-v", "error", "-i", f, "-f", "null", "-"],
        );
        assert!(ok && err.trim().is_empty(), "ffmpeg decoding {f}: {err}");
        let probed = probe(file);
        let ours = parse_mp4(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(probed.len(), 2);
        let video_start = expected[0][seen[0]].dts; // 90 kHz
        for (i, kind, name) in [
            (0, TrackKind::Video, "video"),
            (1, TrackKind::Audio, "audio"),
        ] {
            let (_, den, packets) = probed.iter().find(|s| s.0 == name).unwrap();
            let clock = source.tracks[i].codec.clock_rate_hz() as i64;
            assert_eq!(*den, clock, "{name} time base is the RTP clock");
            let start = video_start * clock / 90_000;
            let from = seen[i];
            let want: Vec<Packet> = expected[i][from..from + packets.len()]
                .iter()
                .map(|p| Packet {
                    dts: p.dts - start,
                    pts: p.pts - start,
                    ..*p
                })
                .collect();
            assert_eq!(packets, &want, "{name} packets of {f}");
            let t = ours.tracks.iter().find(|t| t.kind == kind).unwrap();
            let mine: Vec<Packet> = t
                .samples
                .iter()
                .map(|s| Packet {
                    size: s.len,
                    dts: t.dts_ticks(s),
                    pts: t.pts_ticks(s),
                    key: s.sync,
                })
                .collect();
            assert_eq!(&mine, packets, "our index of {f} ({name})");
            seen[i] += packets.len();
        }
        assert!(probed[0].2[0].key, "{f} starts at a keyframe");
    }
    assert_eq!(seen, frames_in_all, "every source frame is in one file");

    // Seeking: `seek` s into the first file, ffmpeg starts decoding at or just after it.
    let seek_arg = seek.to_string();
    let first = files[0].to_str().unwrap();
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "info",
            "-ss",
            &seek_arg,
            "-copyts",
            "-i",
            first,
            "-map",
            "0:v",
            "-frames:v",
            "1",
            "-vf",
            "showinfo",
            "-f",
            "null",
            "-",
        ],
    );
    assert!(ok, "ffmpeg -ss {seek}: {err}");
    let pts_time: f64 = err
        .split("pts_time:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no showinfo line: {err}"));
    assert!(
        (seek - 0.05..seek + 0.2).contains(&pts_time),
        "first frame after -ss {seek} at {pts_time}"
    );
}
