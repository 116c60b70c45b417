//! The recorder's policy with a fake clock: where fragments are cut, when files rotate and
//! what they are called, which late frames go to which file, drops, retention, and that any
//! sequence of frames neither panics nor yields a file our reader rejects. What ffmpeg makes
//! of the files is in `tests/recording.rs`.

use super::*;
use crate::media::mp4::parse_mp4;

const SAMPLE: &[u8] = include_bytes!("../../../tests/media/sample.mp4");
/// 4 s of H.264 High with B-frames (keyframes at 0 and 2 s) and AAC.
const BFRAMES: &[u8] = include_bytes!("../../../tests/media/bframes.mp4");

fn tracks() -> Vec<RecordTrack> {
    tracks_of(SAMPLE)
}

fn tracks_of(file: &[u8]) -> Vec<RecordTrack> {
    let index = parse_mp4(file).expect("clip parses");
    index
        .tracks
        .iter()
        .map(|t| RecordTrack::from_codec(t.kind, t.codec.clone()))
        .collect()
}

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_secs_f64(secs)
}

fn config(segment_secs: u64) -> RecordConfig {
    let mut c = RecordConfig::new("/media");
    c.segment_duration = Duration::from_secs(segment_secs);
    c
}

/// Video at 25 fps (keyframe every `gop` frames) and AAC at 48 kHz (1024 per frame), for
/// `secs` seconds, in arrival order; audio arrives `audio_lag` seconds after its time.
fn feed(secs: f64, gop: u64, audio_lag: f64) -> Vec<(Frame<'static>, SystemTime)> {
    let mut v = Vec::new();
    let frames = (secs * 25.0) as u64;
    for n in 0..frames {
        let t = n as f64 / 25.0;
        v.push((
            Frame {
                track: 0,
                pts: 1000 + n as i64 * 3600,
                dts: 1000 + n as i64 * 3600,
                sync: n % gop == 0,
                data: &[0, 0, 0, 2, 0x65, 0x88],
            },
            t,
        ));
    }
    let audio = (secs * 48_000.0 / 1024.0) as u64;
    for n in 0..audio {
        let t = n as f64 * 1024.0 / 48_000.0;
        v.push((
            Frame {
                track: 1,
                pts: 77 + n as i64 * 1024,
                dts: 77 + n as i64 * 1024,
                sync: true,
                data: &[0x21, 0x10, 0x04],
            },
            t + audio_lag,
        ));
    }
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    v.into_iter().map(|(f, t)| (f, at(t))).collect()
}

/// Runs `frames` through a recorder; returns the effects and the files' bytes by path.
fn record(
    rec: &mut Recorder,
    frames: &[(Frame<'_>, SystemTime)],
) -> (Vec<RecordEffect>, Vec<(PathBuf, Vec<u8>)>) {
    let mut effects = Vec::new();
    for (f, wall) in frames {
        rec.push(f, *wall, &mut effects);
    }
    rec.finish(&mut effects);
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for e in &effects {
        if let RecordEffect::Write { file, bytes } = e {
            match files.iter_mut().find(|(p, _)| *p == file.path) {
                Some((_, b)) => {
                    assert!(!file.starts_file, "a file starts once");
                    b.extend_from_slice(bytes);
                }
                None => {
                    assert!(file.starts_file, "the first write starts the file");
                    files.push((file.path.clone(), bytes.clone()));
                }
            }
        }
    }
    (effects, files)
}

#[test]
fn file_names_are_utc_civil_times() {
    assert_eq!(file_stamp(UNIX_EPOCH), "1970-01-01_00-00-00");
    assert_eq!(file_stamp(at(0.0)), "2023-11-14_22-13-20");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
    assert_eq!(file_stamp(leap), "2000-02-29_01-01-01");
    let end = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
    assert_eq!(file_stamp(end), "2099-12-31_23-59-59");
}

/// One file of 6 s: a fragment per keyframe (GOP 1 s), every frame in it, the file named
/// for its first frame's wall time, closed at the end.
#[test]
fn fragments_at_keyframes_and_every_frame_recorded() {
    let mut rec = Recorder::new(config(3600), "live/cam", tracks()).expect("recorder");
    let frames = feed(6.0, 25, 0.0);
    let (effects, files) = record(&mut rec, &frames);
    assert_eq!(files.len(), 1);
    let path = PathBuf::from("/media/recordings/live/cam/2023-11-14_22-13-20.mp4");
    assert_eq!(files[0].0, path);
    assert_eq!(effects.last(), Some(&RecordEffect::Close { closed: path }));
    let writes = effects
        .iter()
        .filter(|e| matches!(e, RecordEffect::Write { .. }))
        .count();
    assert_eq!(writes, 6, "one fragment per GOP");
    let index = parse_mp4(&files[0].1).expect("the file parses");
    let v = &index.tracks[0];
    assert_eq!(v.samples.len(), 150);
    assert!(v
        .samples
        .iter()
        .enumerate()
        .all(|(i, s)| s.dts == i as u64 * 3600));
    assert_eq!(v.samples.iter().filter(|s| s.sync).count(), 6);
    let a = &index.tracks[1];
    assert_eq!(a.samples.len(), (6.0f64 * 48_000.0 / 1024.0) as usize);
    assert!(a
        .samples
        .iter()
        .enumerate()
        .all(|(i, s)| s.dts == i as u64 * 1024));
}

/// With 2 s files, a new file starts at each keyframe after 2 s: named for that frame's wall
/// time, starting at decode time 0, and audio a little late on the wire (80 ms) still goes
/// to the file its time belongs to; together the files hold every frame once.
#[test]
fn rotation_at_keyframes_with_late_audio() {
    let mut rec = Recorder::new(config(2), "cam", tracks()).expect("recorder");
    let frames = feed(7.0, 25, 0.08);
    let (effects, files) = record(&mut rec, &frames);
    let names: Vec<String> = files
        .iter()
        .map(|(p, _)| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "2023-11-14_22-13-20.mp4",
            "2023-11-14_22-13-22.mp4",
            "2023-11-14_22-13-24.mp4",
            "2023-11-14_22-13-26.mp4"
        ]
    );
    let rotations: Vec<&RecordEffect> = effects
        .iter()
        .filter(|e| matches!(e, RecordEffect::Rotate { .. }))
        .collect();
    assert_eq!(rotations.len(), 3);
    let (mut video, mut audio) = (0, 0);
    for (i, (path, bytes)) in files.iter().enumerate() {
        let index = parse_mp4(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v = &index.tracks[0];
        let a = &index.tracks[1];
        assert!(
            v.samples[0].sync && v.samples[0].dts == 0,
            "file {i} starts at a keyframe"
        );
        // Tracks are placed by their first frame's arrival: in the first file audio starts
        // at its 80 ms lag (3840 ticks); in the others within one audio frame of the video.
        let lead = if i == 0 { 3840 } else { 0 };
        assert!(
            (lead..lead + 1024).contains(&a.samples[0].dts),
            "file {i} audio starts at {}",
            a.samples[0].dts
        );
        video += v.samples.len();
        audio += a.samples.len();
        if i < 3 {
            assert_eq!(v.samples.len(), 50, "file {i}: 2 s of video");
            // 2 s of audio: 93 or 94 frames (1.92 s in the first file: 90).
            let expected = if i == 0 { 89..=90 } else { 93..=94 };
            assert!(
                expected.contains(&a.samples.len()),
                "file {i}: {}",
                a.samples.len()
            );
        }
    }
    assert_eq!(video, 175);
    assert_eq!(audio, (7.0f64 * 48_000.0 / 1024.0) as usize);
}

/// Audio-only: a fragment every second, files rotate at the first frame after the duration.
#[test]
fn audio_only_cuts_every_second() {
    let audio = tracks().remove(1);
    let mut rec = Recorder::new(config(3), "radio", vec![audio]).expect("recorder");
    let frames: Vec<(Frame<'_>, SystemTime)> = feed(7.0, 25, 0.0)
        .into_iter()
        .filter(|(f, _)| f.track == 1)
        .map(|(f, w)| (Frame { track: 0, ..f }, w))
        .collect();
    let (effects, files) = record(&mut rec, &frames);
    assert_eq!(files.len(), 3);
    let writes = effects
        .iter()
        .filter(|e| matches!(e, RecordEffect::Write { .. }))
        .count();
    assert!((7..=8).contains(&writes), "{writes} fragments in 7 s");
    let total: usize = files
        .iter()
        .map(|(_, b)| parse_mp4(b).expect("parses").tracks[0].samples.len())
        .sum();
    assert_eq!(total, frames.len());
}

/// Frames before the first video keyframe are not recorded; frames with an unknown track,
/// a decode time that does not advance, or a composition offset beyond 32 bits are dropped
/// and counted.
#[test]
fn bad_frames_are_dropped_and_counted() {
    let mut rec = Recorder::new(config(3600), "cam", tracks()).expect("recorder");
    let mut out = Vec::new();
    let f = |track, dts: i64, sync| Frame {
        track,
        pts: dts,
        dts,
        sync,
        data: &[0, 0, 0, 1, 0x65],
    };
    rec.push(&f(0, 0, false), at(0.0), &mut out);
    rec.push(&f(1, 0, true), at(0.0), &mut out);
    assert!(rec.current_file().is_none(), "waits for a keyframe");
    rec.push(&f(0, 3600, true), at(0.04), &mut out);
    assert!(rec.current_file().is_some());
    rec.push(&f(5, 0, true), at(0.05), &mut out);
    rec.push(&f(0, 3600, false), at(0.06), &mut out);
    rec.push(
        &Frame {
            pts: i64::from(i32::MAX) + 7200 + 1,
            ..f(0, 7200, false)
        },
        at(0.07),
        &mut out,
    );
    assert_eq!(rec.dropped(DropReason::Malformed), 3);
    assert!(out.is_empty());
    rec.push(&f(0, 7200, false), at(0.08), &mut out);
    rec.finish(&mut out);
    let bytes = match &out[0] {
        RecordEffect::Write { bytes, .. } => bytes.clone(),
        other => panic!("{other:?}"),
    };
    let index = parse_mp4(&bytes).expect("parses");
    assert_eq!(
        index.tracks.len(),
        1,
        "audio never started after the keyframe"
    );
    assert_eq!(index.tracks[0].samples.len(), 2);
}

#[test]
fn stream_names_stay_below_the_recording_dir() {
    for bad in ["", "../x", "/abs", "a/../b", "a/./b"] {
        assert!(
            matches!(
                Recorder::new(config(1), bad, tracks()),
                Err(RecordError::BadStreamName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        Recorder::new(config(1), "cam", vec![]).err(),
        Some(RecordError::NoTracks)
    );
}

/// Retention: files past the age limit go, then the oldest while the total is over the size
/// limit; the file being written stays whatever its age.
#[test]
fn retention_by_age_and_total_size() {
    let mut c = config(3600);
    c.max_age = Some(Duration::from_secs(3600 * 24));
    c.max_total_bytes = Some(250);
    let mut rec = Recorder::new(c, "cam", tracks()).expect("recorder");
    let mut out = Vec::new();
    for (f, w) in feed(1.0, 25, 0.0) {
        rec.push(&f, w, &mut out);
    }
    let current = rec.current_file().expect("recording").to_path_buf();
    let now = at(0.0) + Duration::from_secs(3600 * 48);
    let h = |hours: u64| now - Duration::from_secs(3600 * hours);
    let files = vec![
        (PathBuf::from("a"), h(30), 10),
        (PathBuf::from("b"), h(20), 100),
        (PathBuf::from("c"), h(10), 100),
        (PathBuf::from("d"), h(5), 100),
        (current.clone(), h(48), 10),
    ];
    // a: too old; then 310 bytes remain, over 250: b goes (the oldest young one).
    assert_eq!(
        rec.expired(&files, now),
        vec![PathBuf::from("a"), PathBuf::from("b")]
    );
    let none = Recorder::new(config(3600), "cam", tracks()).expect("recorder");
    assert!(none.expired(&files, now).is_empty());
}

/// The writer alone: nothing for empty runs, more runs than tracks refused, sequence
/// numbers from 1, and the samples' bytes in the mdat in run order.
#[test]
fn fragment_writer_layout() {
    let mut w = FragmentWriter::new(&tracks()).expect("writer");
    let mut out = Vec::new();
    let empty = TrackFragment {
        base_decode_time: 0,
        samples: &[],
    };
    w.fragment(&[empty, empty], &mut out).expect("empty");
    assert!(out.is_empty());
    assert!(matches!(
        w.fragment(&[empty, empty, empty], &mut out),
        Err(RecordError::TooManyRuns { .. })
    ));
    let v = [RecordSample {
        duration: 3600,
        cts_offset: 0,
        sync: true,
        data: b"VVVV",
    }];
    let a = [RecordSample {
        duration: 1024,
        cts_offset: 0,
        sync: true,
        data: b"AA",
    }];
    w.init_segment(&mut out);
    w.fragment(
        &[
            TrackFragment {
                base_decode_time: 0,
                samples: &v,
            },
            TrackFragment {
                base_decode_time: 0,
                samples: &a,
            },
        ],
        &mut out,
    )
    .expect("fragment");
    assert!(out.ends_with(b"VVVVAA"));
    let mfhd = out.windows(4).position(|x| x == b"mfhd").expect("mfhd");
    assert_eq!(&out[mfhd + 8..mfhd + 12], &1u32.to_be_bytes());
    let index = parse_mp4(&out).expect("parses");
    assert_eq!(index.tracks[0].samples[0].len, 4);
    assert_eq!(index.tracks[1].samples[0].len, 2);
}

/// Any sequence of frames (tracks, times, flags and sizes at random, unknown tracks and
/// backward times included) never panics, and every file written parses.
#[test]
fn any_frames_never_panic_and_files_parse() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let frame = (
        0usize..3,
        -5i64..4000,
        -100i64..3000,
        any::<bool>(),
        0usize..40,
        0u64..3000,
    );
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let data = [0x55u8; 64];
    let result = runner.run(&proptest::collection::vec(frame, 0..200), |frames| {
        let mut c = config(1);
        c.segment_duration = Duration::from_millis(300);
        let mut rec = Recorder::new(c, "p", tracks()).expect("recorder");
        let mut out = Vec::new();
        let (mut dts, mut ms) = ([0i64; 3], 0u64);
        for (track, step, cts, sync, len, wall_step) in frames {
            let d = &mut dts[track];
            *d += step;
            ms += wall_step;
            let f = Frame {
                track,
                pts: *d + cts,
                dts: *d,
                sync,
                data: &data[..len],
            };
            rec.push(&f, at(ms as f64 / 1000.0), &mut out);
        }
        rec.finish(&mut out);
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for e in &out {
            if let RecordEffect::Write { file, bytes } = e {
                match files.iter_mut().find(|(p, _)| *p == file.path) {
                    Some((_, b)) => b.extend_from_slice(bytes),
                    None => files.push((file.path.clone(), bytes.clone())),
                }
            }
        }
        for (path, bytes) in &files {
            if let Err(e) = parse_mp4(bytes) {
                return Err(TestCaseError::fail(format!("{}: {e}", path.display())));
            }
        }
        // Every file written is closed once, after its writes.
        let closed: Vec<&PathBuf> = out
            .iter()
            .filter_map(|e| match e {
                RecordEffect::Rotate { closed, .. } | RecordEffect::Close { closed } => {
                    Some(closed)
                }
                RecordEffect::Write { .. } => None,
            })
            .collect();
        let mut written: Vec<&PathBuf> = files.iter().map(|(p, _)| p).collect();
        let mut sorted = closed.clone();
        sorted.sort();
        written.sort();
        prop_assert_eq!(sorted, written);
        for (i, e) in out.iter().enumerate() {
            if let RecordEffect::Write { file, .. } = e {
                let closed_at = out.iter().position(|c| match c {
                    RecordEffect::Rotate { closed, .. } | RecordEffect::Close { closed } => {
                        *closed == file.path
                    }
                    RecordEffect::Write { .. } => false,
                });
                prop_assert!(closed_at.is_some_and(|c| c > i), "write after close");
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Files shorter than the audio's lag (1 s files, audio placed on time by its first frame,
/// then 1.5 s late): a file still draining
/// when the next rotation comes is closed then, and every file is closed once, after its
/// last write. (Audio that late for a closed file is lost: the test checks only closing.)
#[test]
fn files_shorter_than_the_audio_lag_are_each_closed_once() {
    let mut rec = Recorder::new(config(1), "cam", tracks()).expect("recorder");
    // The first audio frame is on time (it places the track), the rest 1.5 s late.
    let mut frames = feed(6.0, 25, 1.5);
    let first_audio = frames
        .iter()
        .position(|(f, _)| f.track == 1)
        .expect("audio");
    frames[first_audio].1 = at(0.0);
    frames.sort_by_key(|(_, w)| *w);
    let (effects, files) = record(&mut rec, &frames);
    assert!(files.len() >= 5, "{} files", files.len());
    for (path, bytes) in &files {
        parse_mp4(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let closes: Vec<usize> = effects
            .iter()
            .enumerate()
            .filter(|(_, e)| match e {
                RecordEffect::Rotate { closed, .. } | RecordEffect::Close { closed } => {
                    closed == path
                }
                RecordEffect::Write { .. } => false,
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(closes.len(), 1, "{} closed once", path.display());
        let last_write = effects
            .iter()
            .rposition(|e| matches!(e, RecordEffect::Write { file, .. } if file.path == *path));
        assert!(
            last_write < Some(closes[0]),
            "{} written after close",
            path.display()
        );
    }
}

/// An RTP source gives presentation times only (`dts` = `pts`, RFC 6184 §5.1): the B-frame
/// clip's video (presentation order differs from decode order) fed that way, with 2 s files,
/// keeps every frame, in decode order, each shown at its own time. This used to drop every
/// B-frame as "backwards" (95 of 250 frames recorded from an ffmpeg publisher).
#[test]
fn presentation_times_only_with_b_frames_keep_every_frame() {
    let index = parse_mp4(BFRAMES).expect("clip parses");
    let video = &index.tracks[0];
    assert!(
        video.samples.iter().any(|s| s.cts_offset != 0),
        "the clip has B-frames"
    );
    let scale = |t: i64| t * 90_000 / i64::from(video.timescale);
    let mut rec = Recorder::new(config(2), "live/b", tracks_of(BFRAMES)).expect("recorder");
    let frames: Vec<(Frame<'_>, SystemTime)> = video
        .samples
        .iter()
        .map(|s| {
            let pts = scale(s.dts as i64 + i64::from(s.cts_offset));
            let data = &BFRAMES[s.offset as usize..s.offset as usize + s.len as usize];
            (
                Frame {
                    track: 0,
                    pts,
                    dts: pts,
                    sync: s.sync,
                    data,
                },
                at(s.dts as f64 / f64::from(video.timescale)),
            )
        })
        .collect();
    let (_, files) = record(&mut rec, &frames);
    assert_eq!(rec.dropped(DropReason::Malformed), 0);
    assert!(files.len() >= 2, "rotated");
    // File by file: the frames in decode order, each shown at the source's time relative to
    // the file's first frame (a keyframe, shown at the file's 0).
    let mut next = 0;
    for (path, bytes) in &files {
        let idx = parse_mp4(bytes).expect("the file parses");
        let t = &idx.tracks[0];
        assert!(
            t.samples.windows(2).all(|w| w[0].dts < w[1].dts),
            "decode times increase in {}",
            path.display()
        );
        // The edit list takes the composition delay back out; no frame is presented before
        // it is decoded.
        assert!(t.samples.iter().all(|s| s.cts_offset >= 0));
        let shown: Vec<i64> = t.samples.iter().map(|s| t.pts_ticks(s)).collect();
        let source = &frames[next..next + shown.len()];
        let expected: Vec<i64> = source
            .iter()
            .map(|(f, _)| f.pts - source[0].0.pts)
            .collect();
        assert_eq!(shown, expected, "{}", path.display());
        next += shown.len();
    }
    assert_eq!(next, frames.len(), "every frame recorded once");
}
