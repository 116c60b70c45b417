//! What making Opus of a live stream's AAC costs the control thread
//! (`shardcast::rendition::live::LiveOpus`, once per ingested stream with AAC): the bundled
//! sample's AAC track (48 kHz stereo AAC-LC, 10 s) pushed frame by frame, as ingest does
//! when the frames arrive, timed in rounds.
//!
//! | column | meaning |
//! |---|---|
//! | µs/frame | wall time per AAC frame (21.3 ms of audio) decoded, resampled if needed, encoded, median round |
//! | × real time | seconds of audio per second of CPU |
//! | % of a core per stream | 100 / (× real time) |
//!
//! Run: `cargo bench --bench live_opus` (five rounds) or `-- --quick` (one). One thread.

use std::hint::black_box;
use std::time::Instant;

use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::track::Codec;
use shardcast::media::MediaFile;
use shardcast::rendition::live::LiveOpus;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 5 };
    let media = MediaFile::from_static("sample", SAMPLE_MP4).expect("the bundled sample indexes");
    let track = media
        .index
        .tracks
        .iter()
        .find(|t| matches!(t.codec, Codec::Aac(_)))
        .expect("the sample has AAC");
    let Codec::Aac(config) = &track.codec else {
        unreachable!("found as AAC")
    };
    let bytes = media.bytes.as_slice();
    let frames: Vec<(i64, &[u8])> = track
        .samples
        .iter()
        .map(|s| {
            let o = s.offset as usize;
            (s.dts as i64, &bytes[o..o + s.len as usize])
        })
        .collect();
    let audio_secs = frames.len() as f64 * 1024.0 / f64::from(config.sample_rate_hz);
    let mut per_frame_us = Vec::new();
    for _ in 0..rounds {
        let mut live = LiveOpus::new(config).expect("AAC-LC decodes");
        let mut out = 0usize;
        let start = Instant::now();
        for (pts, data) in &frames {
            live.push(*pts, data, &mut |f| out += black_box(f.data.len()));
        }
        let secs = start.elapsed().as_secs_f64();
        black_box(out);
        per_frame_us.push(secs * 1e6 / frames.len() as f64);
    }
    per_frame_us.sort_by(f64::total_cmp);
    let median = per_frame_us[per_frame_us.len() / 2];
    let realtime = (audio_secs / frames.len() as f64) * 1e6 / median;
    println!("| µs/frame | × real time | % of a core per stream |");
    println!("|---|---|---|");
    println!("| {median:.1} | {realtime:.0} | {:.2} |", 100.0 / realtime);
}
