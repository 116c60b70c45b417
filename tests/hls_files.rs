//! The HLS core's output read by independent programs: the bundled sample and a B-frame clip
//! written as VOD (init.mp4, seg*.m4s, media.m3u8 from fragment heads plus body spans), and
//! a live window across a loop point, decoded by ffmpeg and probed frame by frame by
//! ffprobe. They fail (not skip) when ffmpeg or ffprobe is missing.
//!
//! What would make them fail: a box ffmpeg cannot read or warns about, a wrong data offset
//! (garbage samples: decode errors), frames lost or duplicated (frame counts), composition
//! offsets that reorder B-frames wrongly (the frame pts list differs from the source's),
//! audio and video that start apart, or timestamps that jump or go back at a loop point.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use shardcast::hls::{self, fmp4, segments, LiveHls, QuerySuffix};
use shardcast::live::{LiveChannel, StartPolicy};
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::track::TrackKind;
use shardcast::media::MediaFile;

/// A directory removed when the test ends (kept with `KEEP_HLS=1`, to look at the files).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "shardcast-hls-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_HLS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs a program; panics (the test fails) if it cannot be started.
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

/// Writes the VOD rendition of `media` into `dir`; returns the playlist's path.
fn write_vod(media: &MediaFile, dir: &Path) -> PathBuf {
    let index = &media.index;
    let bytes = media.bytes.as_slice();
    let seg = segments::segment_file(index, &fmp4::first_served_samples(index));
    std::fs::write(dir.join("init.mp4"), hls::init_segment(index).unwrap()).unwrap();
    for msn in 0..seg.segments.len() as u64 {
        let frag = seg.vod_fragment(index, msn, None).unwrap();
        assert_eq!(
            frag.body_len,
            frag.body.iter().map(|s| s.len).sum::<u64>(),
            "body_len is the spans' sum"
        );
        std::fs::write(dir.join(format!("seg{msn}.m4s")), frag.to_vec(bytes)).unwrap();
    }
    let playlist = dir.join("media.m3u8");
    std::fs::write(
        &playlist,
        hls::vod_media_playlist(&seg, &QuerySuffix::none()),
    )
    .unwrap();
    playlist
}

/// Decodes `input` with ffmpeg; asserts no warning or error.
fn assert_decodes_cleanly(input: &Path) {
    let input = input.to_str().unwrap();
    let (ok, _, stderr) = run(
        "ffmpeg",
        &["-nostdin", "-v", "warning", "-i", input, "-f", "null", "-"],
    );
    assert!(ok, "ffmpeg failed on {input}: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg warned on {input}:\n{stderr}"
    );
}

/// Decoded frames of `input` as (media type, pts seconds), in output order per stream.
fn decoded_frames(input: &Path) -> Vec<(String, f64)> {
    let (ok, stdout, stderr) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "frame=media_type,pts_time",
            "-of",
            "csv=p=0",
            input.to_str().unwrap(),
        ],
    );
    assert!(ok && stderr.trim().is_empty(), "ffprobe: {stderr}");
    stdout
        .lines()
        .filter_map(|l| {
            let (kind, pts) = l.split_once(',')?;
            Some((kind.to_owned(), pts.trim_end_matches(',').parse().ok()?))
        })
        .collect()
}

fn of_kind(frames: &[(String, f64)], kind: &str) -> Vec<f64> {
    frames
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, p)| *p)
        .collect()
}

/// The VOD rendition of `source` decodes without a warning; its video frames are the
/// source's, in the same presentation order with the same pts; audio decodes and starts
/// within one video frame of video.
fn check_vod(media: &MediaFile, source: &Path, dir: &Path) {
    let playlist = write_vod(media, dir);
    assert_decodes_cleanly(&playlist);
    let ours = decoded_frames(&playlist);
    let theirs = decoded_frames(source);
    let (video, audio) = (of_kind(&ours, "video"), of_kind(&ours, "audio"));
    let source_video = of_kind(&theirs, "video");
    let video_samples = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap()
        .samples
        .len();
    assert_eq!(
        video.len(),
        video_samples,
        "every video sample decodes once"
    );
    assert!(
        video.windows(2).all(|w| w[1] > w[0]),
        "video frames come out in increasing pts: {video:?}"
    );
    assert_eq!(video.len(), source_video.len());
    // The same presentation times, all moved by the lead that keeps decode times ≥ 0.
    for (a, b) in video.iter().zip(&source_video) {
        let (a, b) = (a - video[0], b - source_video[0]);
        assert!((a - b).abs() < 0.001, "frame pts {a} vs source {b}");
    }
    let source_audio = of_kind(&theirs, "audio");
    assert!(
        audio.len() + 1 >= source_audio.len() && !audio.is_empty(),
        "audio frames: {} ours, {} in the source (less the priming frame)",
        audio.len(),
        source_audio.len()
    );
    let frame = 1.0 / media.index.tracks[0].frame_rate().unwrap();
    assert!(
        (video[0] - audio[0]).abs() <= frame,
        "first video pts {} and audio pts {} agree within a frame",
        video[0],
        audio[0]
    );
}

#[test]
fn vod_sample_decodes_every_frame_in_order_with_audio_aligned() {
    let dir = TempDir::new("vod");
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let source = dir.0.join("source.mp4");
    std::fs::write(&source, SAMPLE_MP4).unwrap();
    let out = dir.0.join("hls");
    std::fs::create_dir_all(&out).unwrap();
    check_vod(&media, &source, &out);
}

#[test]
fn vod_b_frame_clip_presents_in_the_sources_order() {
    let dir = TempDir::new("bframes");
    let source = dir.0.join("bframes.mp4");
    let (ok, _, stderr) = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "5",
            "-c:v",
            "libx264",
            "-bf",
            "2",
            "-g",
            "60",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            source.to_str().unwrap(),
        ],
    );
    assert!(ok, "making the B-frame clip: {stderr}");
    let media = MediaFile::open(&source, "bframes").unwrap();
    let video = &media.index.tracks[0];
    assert!(
        video
            .samples
            .iter()
            .any(|s| s.cts_offset != video.samples[0].cts_offset),
        "the clip has reordered frames"
    );
    let out = dir.0.join("hls");
    std::fs::create_dir_all(&out).unwrap();
    check_vod(&media, &source, &out);
}

/// A live window across the loop point (the last segments of loop 0, the first of loop 1),
/// once as a playlist ffmpeg's HLS reader follows and once as one concatenated fMP4 file:
/// no warning (no "Non-monotonic DTS"), and no frame's pts steps back or jumps by more than
/// the loop point's gap (video ends 5 ms before the loop does).
#[test]
fn live_window_across_the_loop_point_runs_on() {
    let dir = TempDir::new("live");
    let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
    let channel = LiveChannel::new("live", media.clone(), 1200, StartPolicy::Delayed).unwrap();
    let live = LiveHls::new(&channel);
    let index = &media.index;
    let bytes = media.bytes.as_slice();
    let k = live.segmentation.segments.len() as u64;
    assert!(k >= 3);
    let window: Vec<u64> = (k - 2..k + 3).collect();
    let init = hls::init_segment(index).unwrap();
    std::fs::write(dir.0.join("init.mp4"), &init).unwrap();
    let mut concatenated = init.clone();
    let mut playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n",
        live.segmentation.target_duration_secs,
        k - 2
    );
    for &msn in &window {
        let frag = live.fragment(index, msn, None).unwrap().to_vec(bytes);
        std::fs::write(dir.0.join(format!("seg{msn}.m4s")), &frag).unwrap();
        concatenated.extend_from_slice(&frag);
        let seg = live.segment(msn).unwrap();
        playlist.push_str(&format!(
            "#EXTINF:{:.3},\nseg{msn}.m4s\n",
            seg.duration.as_secs_f64()
        ));
    }
    playlist.push_str("#EXT-X-ENDLIST\n");
    let m3u8 = dir.0.join("window.m3u8");
    std::fs::write(&m3u8, playlist).unwrap();
    let mp4 = dir.0.join("window.mp4");
    std::fs::write(&mp4, &concatenated).unwrap();

    let loop_secs = channel.loop_duration.as_secs_f64();
    for input in [&m3u8, &mp4] {
        assert_decodes_cleanly(input);
        let frames = decoded_frames(input);
        let video = of_kind(&frames, "video");
        let audio = of_kind(&frames, "audio");
        for (name, pts, max_step) in [("video", &video, 0.046), ("audio", &audio, 0.027)] {
            assert!(pts.len() > 10, "{name} decodes");
            for w in pts.windows(2) {
                let step = w[1] - w[0];
                assert!(
                    step > 0.0 && step <= max_step,
                    "{name} pts step {step} at {} in {}",
                    w[0],
                    input.display()
                );
            }
        }
        // The concatenated file keeps the channel's own times: the window crosses the loop.
        if input == &mp4 {
            assert!(video[0] < loop_secs && *video.last().unwrap() > loop_secs);
        }
    }
}

/// The first fragment of loop 1 carries decode times exactly one loop (in each track's own
/// timescale) after loop 0's: read back with ffprobe's packet dts, not our own parser.
#[test]
fn live_decode_times_advance_by_one_loop_per_loop() {
    let dir = TempDir::new("loops");
    let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
    let channel = LiveChannel::new("live", media.clone(), 1200, StartPolicy::Delayed).unwrap();
    let live = LiveHls::new(&channel);
    let k = live.segmentation.segments.len() as u64;
    let bytes = media.bytes.as_slice();
    let first_dts = |msn: u64| {
        let mut file = hls::init_segment(&media.index).unwrap();
        file.extend(
            live.fragment(&media.index, msn, None)
                .unwrap()
                .to_vec(bytes),
        );
        let path = dir.0.join(format!("one{msn}.mp4"));
        std::fs::write(&path, file).unwrap();
        let (ok, stdout, stderr) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "packet=stream_index,dts",
                "-of",
                "csv=p=0",
                path.to_str().unwrap(),
            ],
        );
        assert!(ok, "{stderr}");
        let mut firsts = [None, None];
        for line in stdout.lines() {
            let mut f = line.split(',');
            let (Some(s), Some(d)) = (f.next(), f.next()) else {
                continue;
            };
            let (s, d): (usize, i64) = (s.parse().unwrap(), d.parse().unwrap());
            firsts[s].get_or_insert(d);
        }
        firsts.map(Option::unwrap)
    };
    let (zero, one, two) = (first_dts(0), first_dts(k), first_dts(2 * k));
    for (i, track) in media.index.tracks.iter().enumerate() {
        let ticks =
            (channel.loop_duration.as_secs_f64() * f64::from(track.timescale)).round() as i64;
        assert_eq!(
            one[i] - zero[i],
            ticks,
            "track {i}: loop 1 starts one loop later"
        );
        assert_eq!(two[i] - one[i], ticks, "track {i}: loop 2 too");
    }
}

/// Parts are fragments of their own: the parts of the segments either side of the loop point,
/// concatenated after the init segment, decode cleanly to exactly the frames (same pts) the
/// whole segments give. Fails if a part's decode time, data offset or sample split is off.
#[test]
fn live_parts_decode_to_the_same_frames_as_their_segments() {
    let dir = TempDir::new("parts");
    let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
    let channel = LiveChannel::new("live", media.clone(), 1200, StartPolicy::Delayed).unwrap();
    let live = LiveHls::new(&channel);
    let index = &media.index;
    let bytes = media.bytes.as_slice();
    let k = live.segmentation.segments.len() as u64;
    let init = hls::init_segment(index).unwrap();
    let (mut whole, mut parted) = (init.clone(), init);
    for msn in [k - 1, k] {
        whole.extend(live.fragment(index, msn, None).unwrap().to_vec(bytes));
        let parts = live.segment(msn).unwrap().segment.parts.len();
        assert!(parts > 1);
        for part in 0..parts {
            parted.extend(live.fragment(index, msn, Some(part)).unwrap().to_vec(bytes));
        }
    }
    let (a, b) = (dir.0.join("whole.mp4"), dir.0.join("parted.mp4"));
    std::fs::write(&a, whole).unwrap();
    std::fs::write(&b, parted).unwrap();
    assert_decodes_cleanly(&b);
    let (fa, fb) = (decoded_frames(&a), decoded_frames(&b));
    assert!(of_kind(&fa, "video").len() > 90);
    assert_eq!(of_kind(&fa, "video"), of_kind(&fb, "video"));
    assert_eq!(of_kind(&fa, "audio"), of_kind(&fb, "audio"));
}
