//! Fragmented MP4 read as VOD: files ffmpeg writes with `frag_keyframe+empty_moov+
//! default_base_moof` (with and without B-frames), `frag_every_frame` (one sample per
//! fragment, `tfhd` base data offsets instead of default-base-is-moof) and `-movflags cmaf`
//! are indexed by `parse_mp4`, and every sample of every track is compared with what
//! `ffprobe -show_packets` says about the same file: count, byte position, size, dts, pts and
//! keyframe flag, exactly. A file cut inside its last fragment (a recorder still writing, or
//! one that crashed) indexes as the whole file less that fragment. The HLS writer's init
//! segment plus its fragments, concatenated (the format the recorder writes), parse back to
//! the source's samples. They fail (not skip) when ffmpeg or ffprobe is missing.
//!
//! What would make them fail: a wrong base data offset (positions differ), a sample default
//! taken from the wrong box (sizes or durations differ), tfdt ignored (dts differ after the
//! first fragment), composition offsets read unsigned or not at all (pts differ), the
//! non-sync flag misread (keyframes differ), or an incomplete fragment failing the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use shardcast::hls::{self, fmp4, segments};
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::mp4::parse_mp4;
use shardcast::media::track::{MediaIndex, TrackKind};
use shardcast::media::MediaFile;

/// A directory removed when the test ends (kept with `KEEP_FMP4=1`).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "shardcast-fmp4-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_FMP4").is_none() {
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

/// Writes a 4 s testsrc + sine clip (H.264 25 fps, GOP 25, AAC 48 kHz) with `extra` output
/// options into `dir/name`.
fn make_clip(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "-nostdin",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
    ];
    args.extend_from_slice(extra);
    args.push(out.to_str().unwrap());
    let (ok, _, stderr) = run("ffmpeg", &args);
    assert!(ok, "ffmpeg {extra:?}: {stderr}");
    out
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    pos: u64,
    size: u32,
    dts: i64,
    pts: i64,
    key: bool,
}

/// `ffprobe -show_packets` of `file`, per stream, with each stream's codec type.
fn probe_packets(file: &Path) -> Vec<(String, Vec<Packet>)> {
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
    assert!(ok, "ffprobe {f}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut streams: Vec<(String, Vec<Packet>)> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["codec_type"].as_str().unwrap().to_owned(), Vec::new()))
        .collect();
    for p in v["packets"].as_array().unwrap() {
        // ffprobe's JSON gives some numbers as strings ("size", "pos") and some as numbers.
        let num = |k: &str| {
            p[k].as_i64()
                .or_else(|| p[k].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("packet field {k}: {p}"))
        };
        let i = p["stream_index"].as_u64().unwrap() as usize;
        streams[i].1.push(Packet {
            pos: num("pos") as u64,
            size: num("size") as u32,
            dts: num("dts"),
            pts: num("pts"),
            key: p["flags"].as_str().unwrap().starts_with('K'),
        });
    }
    streams
}

/// Our samples of the track of `kind` as ffprobe would list them.
///
/// One difference is ffmpeg's, not the file's: its mov demuxer (5.1, `mov_update_dts_shift`)
/// adds a fragmented track's most negative composition offset back to every pts, so that no
/// pts precedes its dts. ISO/IEC 14496-12 §8.8.8.3 says pts = dts + offset (what `-movflags
/// cmaf` means by writing a version 1 `trun` with negative offsets and no edit list: the
/// first frame presents at 0). So pts are compared shifted by that amount; it is 0 for every
/// track without negative offsets.
fn our_packets(index: &MediaIndex, kind: TrackKind) -> Vec<Packet> {
    let t = index.tracks.iter().find(|t| t.kind == kind).unwrap();
    let ffmpeg_shift = -i64::from(t.samples.iter().map(|s| s.cts_offset).min().unwrap().min(0));
    t.samples
        .iter()
        .map(|s| Packet {
            pos: s.offset,
            size: s.len,
            dts: t.dts_ticks(s),
            pts: t.pts_ticks(s) + ffmpeg_shift,
            key: s.sync,
        })
        .collect()
}

/// Parses `file` and checks every sample against ffprobe; returns the index.
fn assert_matches_ffprobe(file: &Path) -> MediaIndex {
    let bytes = std::fs::read(file).unwrap();
    let index = parse_mp4(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let probed = probe_packets(file);
    assert_eq!(index.tracks.len(), probed.len(), "one track per stream");
    for (kind, name) in [(TrackKind::Video, "video"), (TrackKind::Audio, "audio")] {
        let theirs = &probed.iter().find(|(k, _)| k == name).unwrap().1;
        let ours = our_packets(&index, kind);
        assert_eq!(ours.len(), theirs.len(), "{name} sample count");
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert_eq!(a, b, "{name} sample {i} of {}", file.display());
        }
    }
    index
}

/// Top-level boxes of a file as (type, offset, size).
fn top_level_boxes(bytes: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let typ: [u8; 4] = bytes[pos + 4..pos + 8].try_into().unwrap();
        out.push((typ, pos, size));
        pos += size;
    }
    out
}

#[test]
fn ffmpeg_fragmented_files_index_as_ffprobe_reads_them() {
    let dir = TempDir::new("ffmpeg");
    let frag = "+frag_keyframe+empty_moov+default_base_moof";
    let cases: [(&str, Vec<&str>); 4] = [
        ("bframes.mp4", vec!["-bf", "2", "-movflags", frag]),
        ("no_bframes.mp4", vec!["-bf", "0", "-movflags", frag]),
        (
            "every_frame.mp4",
            vec!["-bf", "2", "-movflags", "+frag_every_frame+empty_moov"],
        ),
        (
            "cmaf.mp4",
            vec!["-bf", "2", "-f", "mp4", "-movflags", "cmaf"],
        ),
    ];
    for (name, extra) in cases {
        let file = make_clip(&dir.0, name, &extra);
        let bytes = std::fs::read(&file).unwrap();
        let moofs = top_level_boxes(&bytes)
            .iter()
            .filter(|b| &b.0 == b"moof")
            .count();
        assert!(moofs >= 4, "{name} is fragmented ({moofs} moof)");
        let index = assert_matches_ffprobe(&file);
        let video = index
            .tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .unwrap();
        assert_eq!(video.samples.len(), 100, "{name}: 4 s at 25 fps");
        assert_eq!(video.samples.iter().filter(|s| s.sync).count(), 4, "{name}");
        if extra.contains(&"2") {
            assert!(
                video
                    .samples
                    .iter()
                    .any(|s| s.cts_offset != video.samples[0].cts_offset),
                "{name} has reordered frames"
            );
        }
    }
}

/// A file cut inside its last fragment (in the `mdat`, and inside the `moof` itself) indexes
/// as the whole file without that fragment's samples; cut right after a complete fragment it
/// loses nothing.
#[test]
fn truncated_last_fragment_is_left_out() {
    let dir = TempDir::new("truncated");
    let file = make_clip(
        &dir.0,
        "whole.mp4",
        &[
            "-bf",
            "2",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
        ],
    );
    let whole = assert_matches_ffprobe(&file);
    let bytes = std::fs::read(&file).unwrap();
    let boxes = top_level_boxes(&bytes);
    let last = boxes.iter().rposition(|b| &b.0 == b"moof").unwrap();
    let (_, last_moof, moof_size) = boxes[last];
    let (typ, mdat_at, mdat_size) = boxes[last + 1];
    assert_eq!(&typ, b"mdat", "the last moof's mdat follows it");
    let mdat_end = mdat_at + mdat_size;
    let expected = |cut_at: usize| -> Vec<(TrackKind, usize)> {
        whole
            .tracks
            .iter()
            .map(|t| {
                let n = t
                    .samples
                    .iter()
                    .filter(|s| (s.offset as usize) < cut_at)
                    .count();
                (t.kind, n)
            })
            .collect()
    };
    let counts = |index: &MediaIndex| -> Vec<(TrackKind, usize)> {
        index
            .tracks
            .iter()
            .map(|t| (t.kind, t.samples.len()))
            .collect()
    };
    let without_last = expected(last_moof);
    assert!(without_last.iter().all(|&(_, n)| n > 0));
    assert_ne!(
        without_last,
        counts(&whole),
        "the last fragment has samples"
    );
    for cut in [
        mdat_end - 1,               // inside the last mdat
        last_moof + moof_size + 20, // a few bytes into the last mdat
        last_moof + moof_size,      // the mdat header missing
        last_moof + moof_size / 2,  // inside the last moof
        last_moof + 3,              // inside the moof's size field
    ] {
        let index = parse_mp4(&bytes[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(counts(&index), without_last, "cut at {cut}");
        for (a, b) in index.tracks.iter().zip(&whole.tracks) {
            assert_eq!(a.samples[..], b.samples[..a.samples.len()], "cut at {cut}");
        }
    }
    // Cut exactly at the last moof: every complete fragment is there; cut after the last
    // mdat (inside ffmpeg's trailing `mfra`), nothing is missing.
    let index = parse_mp4(&bytes[..last_moof]).unwrap();
    assert_eq!(counts(&index), without_last);
    if mdat_end < bytes.len() {
        let index = parse_mp4(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(counts(&index), counts(&whole));
    }
    // ffprobe agrees on the truncated file up to the last complete fragment.
    let cut = dir.0.join("cut.mp4");
    std::fs::write(&cut, &bytes[..last_moof]).unwrap();
    assert_matches_ffprobe(&cut);
}

/// The HLS writer's init segment and every VOD fragment, concatenated into one file, parse
/// back to the source's samples: the same bytes, sync flags and composition offsets, decode
/// times moved by the track's `decode_shift`. ffprobe reads the same file the same way. For
/// the bundled sample (no B-frames) and the B-frame clip (non-zero composition offsets).
#[test]
fn hls_writer_output_parses_back_to_the_source_samples() {
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    hls_writer_output_parses_back(&media, "hls");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/bframes.mp4");
    let media = MediaFile::open(&clip, "bframes").unwrap();
    assert!(
        media.index.tracks[0]
            .samples
            .iter()
            .any(|s| s.cts_offset != 0),
        "the clip has B-frames"
    );
    hls_writer_output_parses_back(&media, "hls-bframes");
}

fn hls_writer_output_parses_back(media: &MediaFile, tag: &str) {
    let dir = TempDir::new(tag);
    let index = &media.index;
    let source = media.bytes.as_slice();
    let first = fmp4::first_served_samples(index);
    let seg = segments::segment_file(index, &first);
    let mut file = hls::init_segment(index).unwrap();
    for msn in 0..seg.segments.len() as u64 {
        let frag = seg.vod_fragment(index, msn, None).unwrap();
        file.extend_from_slice(&frag.to_vec(source));
    }
    let parsed = parse_mp4(&file).unwrap();
    let timings = fmp4::TrackTiming::for_index(index, &first);
    assert_eq!(parsed.tracks.len(), index.tracks.len());
    for (i, (ours, src)) in parsed.tracks.iter().zip(&index.tracks).enumerate() {
        assert_eq!((ours.kind, ours.timescale), (src.kind, src.timescale));
        assert_eq!(ours.codec, src.codec, "track {i}: the init segment's codec");
        let served = &src.samples[first[i]..];
        assert_eq!(ours.samples.len(), served.len(), "track {i} sample count");
        for (k, (a, b)) in ours.samples.iter().zip(served).enumerate() {
            let bytes_a = &file[a.offset as usize..][..a.len as usize];
            let bytes_b = &source[b.offset as usize..][..b.len as usize];
            assert!(bytes_a == bytes_b, "track {i} sample {k}: same bytes");
            assert_eq!(
                (a.dts as i64, a.cts_offset, a.sync),
                (b.dts as i64 + timings[i].decode_shift, b.cts_offset, b.sync),
                "track {i} sample {k}"
            );
        }
    }
    let path = dir.0.join("hls.mp4");
    std::fs::write(&path, &file).unwrap();
    assert_matches_ffprobe(&path);
}
