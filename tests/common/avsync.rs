//! Audio/video sync as an independent program reads it: ffprobe's packets of what a viewer
//! got, each found in the source file by the MD5 of its bytes (so its source time is
//! known), and every audio packet's distance from the first video frame compared with the
//! same distance in the file.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::run_with_timeout;

/// `(codec_type, pts in s, MD5 of the bytes)` of every packet ffprobe reads from `file`.
pub fn hashed_packets(file: &str) -> Vec<(String, f64, String)> {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_packets",
            "-show_data_hash",
            "MD5",
            "-show_entries",
            "packet=stream_index,pts_time,data_hash:stream=index,codec_type",
            "-of",
            "json",
            file,
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe on {file}: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<(u64, String)> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["index"].as_u64().unwrap(),
                s["codec_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let index = p["stream_index"].as_u64()?;
            let kind = kinds.iter().find(|(i, _)| *i == index)?.1.clone();
            let pts: f64 = p["pts_time"].as_str()?.parse().ok()?;
            Some((kind, pts, p["data_hash"].as_str()?.to_owned()))
        })
        .collect()
}

/// The source file's packets, to look a viewer's packets up in.
pub struct SourcePackets(Vec<(String, f64, String)>);

impl SourcePackets {
    /// ffprobe's packets of `file`.
    pub fn of(file: &str) -> Self {
        Self(hashed_packets(file))
    }

    /// The file's time of the `kind` packet with bytes `hash`, when it is there once.
    fn time_of(&self, kind: &str, hash: &str) -> Option<f64> {
        let mut at = self.0.iter().filter(|(k, _, h)| k == kind && h == hash);
        match (at.next(), at.next()) {
            (Some((_, t, _)), None) => Some(*t),
            _ => None,
        }
    }

    /// For every audio packet of `got`: its time after a video frame of `got` minus the same
    /// distance in the file (positive: audio late). Every audio packet must be the file's.
    /// A file played in a loop keeps its distances within one loop; the distances across a
    /// loop point (more than half the file apart) are left out.
    pub fn audio_against_video(&self, got: &[(String, f64, String)], what: &str) -> Vec<f64> {
        // The first video frame found in the file (a keyframe a depacketizer gave its
        // parameter sets in band has other bytes).
        let (v0, v0_source) = got
            .iter()
            .filter(|(k, _, _)| k == "video")
            .take(50)
            .find_map(|(_, t, hash)| Some((*t, self.time_of("video", hash)?)))
            .unwrap_or_else(|| panic!("{what}: none of the first video frames is the file's"));
        let span = self.0.iter().map(|(_, t, _)| *t).fold(0.0, f64::max);
        got.iter()
            .filter(|(k, _, _)| k == "audio")
            .map(|(_, t, hash)| {
                let a_source = self
                    .time_of("audio", hash)
                    .unwrap_or_else(|| panic!("{what}: an audio frame at {t} is not the file's"));
                (t - v0) - (a_source - v0_source)
            })
            .filter(|o| o.abs() < span / 2.0)
            .collect()
    }
}

/// EBU R37's tolerance for a broadcaster's output: sound at most 40 ms early and 60 ms late
/// against the picture.
pub fn assert_within_ebu_r37(offsets: &[f64], what: &str) {
    assert!(!offsets.is_empty(), "{what}: no audio");
    let (lo, hi) = offsets
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &o| (lo.min(o), hi.max(o)));
    eprintln!("{what}: audio against video {lo:+.4} … {hi:+.4} s from the file's");
    assert!(
        lo >= -0.040 && hi <= 0.060,
        "{what}: audio off by {lo:+.4} … {hi:+.4} s against the video (EBU R37: -0.040 … +0.060 s)"
    );
}
