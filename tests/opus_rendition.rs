//! The Opus rendition of AAC tracks (`shardcast::rendition`) checked by independent
//! tools: ffprobe must see one Opus stream at 48 kHz with the source's channel count and
//! audio duration (±50 ms); ffmpeg's own Opus decoder must decode it without a word on
//! stderr; the decoded signal must match the source's decoded by ffmpeg's AAC decoder
//! (loudness per 100 ms, the 440 Hz tone's frequency, and the time alignment of a noise
//! signal to within 1 ms, which fails if PreSkip or the edit list is wrong); our own reader
//! must index it; and ffmpeg must play an Opus MP4 from the server over RTSP (RFC 7587
//! packetizer + SDP). Needs ffmpeg/ffprobe (Debian `ffmpeg`, which `.ci/run` installs).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::players::ffmpeg_decode_stream;
use common::run_with_timeout;
use shardcast::media::mp4::parse_mp4;
use shardcast::media::track::Codec;
use shardcast::rendition::{is_fresh, make_opus_rendition, opus_rendition_path};

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "shardcast-opus-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> (String, String) {
    let (ok, out, err) = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(ok, "{cmd:?} failed: {err}");
    (out, err)
}

/// Makes an AAC file with ffmpeg from a lavfi source.
fn ffmpeg_aac(path: &Path, lavfi: &str, channels: &str) {
    run(Command::new("ffmpeg").args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        lavfi,
        "-ac",
        channels,
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        path.to_str().unwrap(),
    ]));
}

/// ffprobe's view of the first audio stream: (codec, sample rate, channels, duration s).
fn probe_audio(path: &Path) -> (String, u32, u32, f64) {
    let (out, _) = run(Command::new("ffprobe").args([
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=codec_name,sample_rate,channels,duration",
        "-of",
        "default=noprint_wrappers=1",
        path.to_str().unwrap(),
    ]));
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("ffprobe gave no {k}: {out}"))
            .to_string()
    };
    (
        field("codec_name"),
        field("sample_rate").parse().unwrap(),
        field("channels").parse().unwrap(),
        field("duration").parse().unwrap(),
    )
}

/// Decodes the first audio stream with ffmpeg to 48 kHz mono f32 (ffmpeg's decoders and
/// resampler, independent of ours).
fn decode_mono_48k(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args([
            "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "f32le", "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `ffmpeg -v error -i file -f null -` must print nothing.
fn assert_decodes_silently(path: &Path) {
    let (_, err) = run(Command::new("ffmpeg").args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-i",
        path.to_str().unwrap(),
        "-f",
        "null",
        "-",
    ]));
    assert!(err.trim().is_empty(), "ffmpeg complained: {err}");
}

fn rms_db(x: &[f32]) -> f64 {
    let e = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * (e + 1e-20).log10()
}

/// Loudness per 100 ms window of the two signals agrees within `tol_db` wherever the
/// source is above −40 dBFS (the last partial window is ignored).
fn assert_rms_windows_match(src: &[f32], ren: &[f32], tol_db: f64) {
    let n = src.len().min(ren.len()) / 4800;
    assert!(n >= 10, "too little audio: {} / {}", src.len(), ren.len());
    let mut compared = 0;
    for w in 0..n {
        let r = w * 4800..(w + 1) * 4800;
        let (a, b) = (rms_db(&src[r.clone()]), rms_db(&ren[r]));
        if a > -40.0 {
            compared += 1;
            assert!(
                (a - b).abs() < tol_db,
                "window {w}: source {a:.1} dB, opus {b:.1} dB"
            );
        }
    }
    assert!(
        compared >= n / 2,
        "only {compared} of {n} windows had signal"
    );
}

/// Lag (in samples, positive = rendition late) maximizing the normalized cross-correlation
/// of the middle second, searched over ±`max_lag`.
fn best_lag(src: &[f32], ren: &[f32], max_lag: i64) -> (i64, f64) {
    let mid = src.len().min(ren.len()) / 2;
    let span = 48_000.min(mid - max_lag as usize - 1);
    let a = &src[mid - span / 2..mid + span / 2];
    let mut best = (0, f64::MIN);
    for lag in -max_lag..=max_lag {
        let start = (mid as i64 - span as i64 / 2 + lag) as usize;
        let b = &ren[start..start + a.len()];
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let c = dot / (na * nb + 1e-20);
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

/// Frequency from zero crossings over the middle of `x` (48 kHz).
fn tone_hz(x: &[f32]) -> f64 {
    let part = &x[x.len() / 4..x.len() * 3 / 4];
    let crossings = part
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    crossings as f64 / (part.len() as f64 / 48_000.0)
}

/// Our reader indexes the rendition: one Opus track of 20 ms samples whose count × 20 ms
/// is the duration (± one frame of padding).
fn assert_our_reader_indexes(path: &Path, channels: u8, want_secs: f64) {
    let bytes = std::fs::read(path).unwrap();
    let index = parse_mp4(&bytes).unwrap();
    assert_eq!(index.tracks.len(), 1);
    let t = &index.tracks[0];
    match &t.codec {
        Codec::Opus(c) => assert_eq!(c.channels, channels),
        other => panic!("not opus: {other:?}"),
    }
    // The AAC track's last frame is padded (its edit's segment_duration, which ffprobe
    // applies, trims it; we keep the whole frame): up to one AAC frame plus one Opus frame
    // of padding and PreSkip.
    let secs = t.samples.len() as f64 * 0.020;
    assert!(
        (secs - want_secs).abs() <= 0.05,
        "{} samples = {secs} s for {want_secs} s",
        t.samples.len()
    );
    assert!((t.duration().as_secs_f64() - want_secs).abs() < 0.05);
}

/// The bundled sample (AAC-LC 48 kHz stereo with H.264): ffprobe, ffmpeg, signal, reader,
/// freshness; prints the transcode speed.
#[test]
fn sample_rendition_is_opus_48k_stereo_matching_the_source() {
    let root = temp_dir("sample");
    let source = root.join("sample.mp4");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/sample.mp4"),
        &source,
    )
    .unwrap();
    let dest = opus_rendition_path(&root, "sample");
    let started = Instant::now();
    let report = make_opus_rendition(&source, &dest).unwrap();
    let took = started.elapsed();
    eprintln!(
        "transcode: {:.1} s of audio in {:.2} s = {:.1}x real time ({report:?})",
        report.duration.as_secs_f64(),
        took.as_secs_f64(),
        report.duration.as_secs_f64() / took.as_secs_f64()
    );
    assert!(is_fresh(&source, &dest));
    let (_, _, _, src_secs) = probe_audio(&source);
    let (codec, rate, channels, secs) = probe_audio(&dest);
    assert_eq!((codec.as_str(), rate, channels), ("opus", 48_000, 2));
    assert!(
        (secs - src_secs).abs() <= 0.05,
        "opus {secs} s, aac {src_secs} s"
    );
    assert_decodes_silently(&dest);
    let (src, ren) = (decode_mono_48k(&source), decode_mono_48k(&dest));
    assert!(
        (src.len() as f64 - ren.len() as f64).abs() <= 0.05 * 48_000.0,
        "decoded {} vs {} samples",
        src.len(),
        ren.len()
    );
    assert_rms_windows_match(&src, &ren, 3.0);
    assert!((tone_hz(&ren) - 440.0).abs() < 2.0, "{} Hz", tone_hz(&ren));
    assert_our_reader_indexes(&dest, 2, src_secs);
    let _ = std::fs::remove_dir_all(&root);
}

/// A 44.1 kHz mono AAC sine made by ffmpeg: resampled to 48 kHz, mono Opus, the tone still
/// 440 Hz, the loudness kept.
#[test]
fn mono_44k_sine_rendition_keeps_the_tone() {
    let root = temp_dir("sine");
    let source = root.join("sine.mp4");
    ffmpeg_aac(
        &source,
        "sine=frequency=440:sample_rate=44100:duration=3",
        "1",
    );
    let dest = opus_rendition_path(&root, "sine");
    let report = make_opus_rendition(&source, &dest).unwrap();
    assert_eq!((report.source_sample_rate_hz, report.channels), (44_100, 1));
    let (_, src_rate, _, src_secs) = probe_audio(&source);
    assert_eq!(src_rate, 44_100);
    let (codec, rate, channels, secs) = probe_audio(&dest);
    assert_eq!((codec.as_str(), rate, channels), ("opus", 48_000, 1));
    assert!(
        (secs - src_secs).abs() <= 0.05,
        "opus {secs} s, aac {src_secs} s"
    );
    assert_decodes_silently(&dest);
    let (src, ren) = (decode_mono_48k(&source), decode_mono_48k(&dest));
    assert_rms_windows_match(&src, &ren, 3.0);
    let hz = tone_hz(&ren);
    assert!((hz - 440.0).abs() < 2.0, "rendition tone at {hz} Hz");
    assert_our_reader_indexes(&dest, 1, src_secs);
    let _ = std::fs::remove_dir_all(&root);
}

/// Pink noise at 44.1 kHz stereo: the rendition is time-aligned with the source as ffmpeg
/// plays both (its AAC decoder and priming edit, its Opus decoder with PreSkip and the edit
/// list), to within 1 ms, and still correlates strongly. A wrong PreSkip, a missing edit or
/// a drifting resampler moves the peak by 6.5 ms or more.
#[test]
fn noise_rendition_is_time_aligned_with_the_source() {
    let root = temp_dir("noise");
    let source = root.join("noise.mp4");
    ffmpeg_aac(
        &source,
        "anoisesrc=color=pink:sample_rate=44100:duration=3:amplitude=0.3",
        "2",
    );
    let dest = opus_rendition_path(&root, "noise");
    make_opus_rendition(&source, &dest).unwrap();
    assert_decodes_silently(&dest);
    let (src, ren) = (decode_mono_48k(&source), decode_mono_48k(&dest));
    let (lag, corr) = best_lag(&src, &ren, 960);
    assert!(
        lag.abs() <= 48,
        "rendition is {lag} samples off (corr {corr:.2})"
    );
    assert!(corr > 0.8, "correlation {corr:.2} at lag {lag}");
    let _ = std::fs::remove_dir_all(&root);
}

/// An Opus MP4 (the sample's rendition, copied into a media folder) plays over RTSP in
/// ffmpeg, TCP and UDP, without errors, for its whole duration; the rendition cache folder is
/// not listed as a stream.
#[test]
fn opus_mp4_plays_over_rtsp_in_ffmpeg() {
    let root = temp_dir("rtsp");
    let source = root.join("clip.mp4");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/sample.mp4"),
        &source,
    )
    .unwrap();
    let dest = opus_rendition_path(&root, "clip");
    let report = make_opus_rendition(&source, &dest).unwrap();
    std::fs::copy(&dest, root.join("opus.mp4")).unwrap();
    let server = common::Server::start(&["--media", root.to_str().unwrap()]);
    assert!(
        server.streams.iter().all(|s| !s.contains(".shardcast")),
        "cache listed: {:?}",
        server.streams
    );
    assert!(
        server.streams.iter().any(|s| s.ends_with("/opus")),
        "{:?}",
        server.streams
    );
    let want = report.duration.as_secs_f64();
    for transport in ["tcp", "udp"] {
        let decoded = ffmpeg_decode_stream(&server.url("opus"), transport, "0:a");
        assert!(
            (decoded.end_secs - want).abs() < 0.1,
            "{transport}: {decoded:?}, want {want} s"
        );
        assert!(
            (decoded.frames as i64 - report.opus_frames as i64).abs() <= 2,
            "{transport}: {decoded:?}, {} opus frames",
            report.opus_frames
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
