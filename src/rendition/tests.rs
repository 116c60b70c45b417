//! Unit tests of the rendition cache (paths, stamps) and of the transcoder on the bundled
//! sample (the ffmpeg checks are in `tests/opus_rendition.rs`).

use super::*;
use crate::media::mp4::parse_mp4;
use crate::media::track::Codec;

#[test]
fn rendition_path_stays_in_the_cache_folder() {
    let root = Path::new("/media");
    assert_eq!(
        opus_rendition_path(root, "sub/clip"),
        Path::new("/media/.shardcast/renditions/sub/clip.opus.mp4")
    );
    assert_eq!(
        opus_rendition_path(root, "../../etc/passwd"),
        Path::new("/media/.shardcast/renditions/etc/passwd.opus.mp4")
    );
    assert_eq!(
        opus_rendition_path(root, "/abs"),
        Path::new("/media/.shardcast/renditions/abs.opus.mp4")
    );
}

/// The bundled sample (AAC-LC 48 kHz stereo, 10 s) becomes an Opus MP4 that our reader
/// indexes: one Opus track, 48 kHz timescale, PreSkip 312 with the matching edit, 20 ms
/// samples covering the AAC duration.
#[test]
fn sample_becomes_an_opus_track_our_reader_indexes() {
    let bytes = crate::media::library::SAMPLE_MP4;
    let index = parse_mp4(bytes).expect("sample parses");
    let mut out = Vec::new();
    let report = transcode_to_opus_mp4(bytes, &index, &mut out).expect("transcodes");
    assert_eq!(report.channels, 2);
    assert_eq!(report.corrupt_frames, 0);
    let rendition = parse_mp4(&out).expect("rendition parses");
    assert_eq!(rendition.tracks.len(), 1);
    let t = &rendition.tracks[0];
    let Codec::Opus(c) = &t.codec else {
        panic!("not opus: {:?}", t.codec)
    };
    assert_eq!(
        (c.channels, c.pre_skip, c.input_sample_rate_hz),
        (2, 312, 48_000)
    );
    assert_eq!(t.timescale, 48_000);
    assert_eq!(t.edit_offset, 312);
    assert_eq!(t.samples.len() as u64, report.opus_frames);
    let aac = index
        .tracks
        .iter()
        .find(|t| matches!(t.codec, Codec::Aac(_)))
        .expect("aac track");
    let diff = t.duration().as_secs_f64() - aac.duration().as_secs_f64();
    assert!(diff.abs() < 0.025, "duration differs by {diff} s");
    assert!(t.samples.windows(2).all(|w| w[1].dts - w[0].dts == 960));
}

#[test]
fn file_without_aac_is_refused() {
    let bytes = crate::media::library::SAMPLE_MP4;
    let mut index = parse_mp4(bytes).expect("sample parses");
    index.tracks.retain(|t| !matches!(t.codec, Codec::Aac(_)));
    let err = transcode_to_opus_mp4(bytes, &index, &mut Vec::new()).expect_err("no aac");
    assert!(matches!(err, RenditionError::NoAacTrack));
}

/// Corrupt AAC frames (cut to 3 bytes, so the decoder runs out of bits mid-element) and
/// frames whose range lies outside the bytes are replaced by silence and counted; the
/// rendition keeps its full length.
#[test]
fn corrupt_aac_frames_become_counted_silence() {
    let bytes = crate::media::library::SAMPLE_MP4;
    let mut index = parse_mp4(bytes).expect("sample parses");
    let aac = index
        .tracks
        .iter_mut()
        .find(|t| matches!(t.codec, Codec::Aac(_)))
        .expect("aac track");
    let expected = aac.duration().as_secs_f64();
    let mut broken = 0;
    for s in aac.samples.iter_mut().skip(10).step_by(50) {
        s.len = 3;
        broken += 1;
    }
    aac.samples[5].offset = u64::MAX - 10;
    let report = transcode_to_opus_mp4(bytes, &index, &mut Vec::new()).expect("transcodes");
    assert_eq!(report.corrupt_frames, broken + 1, "{report:?}");
    let diff = report.duration.as_secs_f64() - expected;
    assert!(diff.abs() < 0.025, "duration differs by {diff} s");
}

/// The stamp makes a rendition fresh for its source, stale once the source changes.
#[test]
fn freshness_follows_the_source_stamp() {
    let dir = std::env::temp_dir().join(format!("shardcast-rendition-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("tmp dir");
    let source = dir.join("clip.mp4");
    fs::write(&source, crate::media::library::SAMPLE_MP4).expect("write source");
    let dest = opus_rendition_path(&dir, "clip");
    assert!(!is_fresh(&source, &dest));
    let report = make_opus_rendition(&source, &dest).expect("rendition");
    assert!(report.opus_frames > 0);
    assert!(is_fresh(&source, &dest));
    // No temporary file is left beside it.
    let names: Vec<_> = fs::read_dir(dest.parent().expect("parent"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("clip.opus.mp4")]);
    // A different source (size changes) makes it stale.
    let mut changed = crate::media::library::SAMPLE_MP4.to_vec();
    changed.extend_from_slice(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']);
    fs::write(&source, &changed).expect("rewrite source");
    assert!(!is_fresh(&source, &dest));
    let _ = fs::remove_dir_all(&dir);
}

/// A hostile edit list (a 10-hour leading delay) does not make the transcoder encode 10
/// hours of silence: silence is capped at the track's span plus a minute.
#[test]
fn huge_leading_delay_is_capped() {
    let bytes = crate::media::library::SAMPLE_MP4;
    let mut index = parse_mp4(bytes).expect("sample parses");
    let aac = index
        .tracks
        .iter_mut()
        .find(|t| matches!(t.codec, Codec::Aac(_)))
        .expect("aac track");
    aac.edit_offset = -(i64::from(aac.timescale) * 36_000);
    let report = transcode_to_opus_mp4(bytes, &index, &mut Vec::new()).expect("transcodes");
    // 10 s of audio after at most 10 s (the track's span) + 60 s of silence.
    assert!(
        report.duration < Duration::from_secs(10 + 10 + 60 + 1),
        "{report:?}"
    );
}
