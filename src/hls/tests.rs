//! Unit tests of the HLS core: the segmentation rules on the bundled sample and on
//! synthetic tracks, playlists read by the `m3u8-rs` parser and held to RFC 8216's rules,
//! live numbering across reloads and loop points, and hostile request names and queries.

use std::sync::Arc;
use std::time::Duration;

use m3u8_rs::{MediaPlaylist, Playlist};

use super::fmp4::{self, first_served_samples};
use super::playlist::*;
use super::segments::*;
use crate::live::{LiveChannel, StartPolicy};
use crate::media::library::SAMPLE_MP4;
use crate::media::track::{AacConfig, Codec, H264Config, MediaIndex, Sample, Track, TrackKind};
use crate::media::MediaFile;

fn sample() -> MediaFile {
    MediaFile::from_static("sample", SAMPLE_MP4).unwrap()
}

fn live(media: MediaFile) -> (LiveChannel, LiveHls) {
    let ch = LiveChannel::new("live", Arc::new(media), 1200, StartPolicy::Delayed).unwrap();
    let hls = LiveHls::new(&ch);
    (ch, hls)
}

/// Decode time of sample `k` of track `i`, on the segmentation's timeline.
fn decode_time(index: &MediaIndex, seg: &Segmentation, i: usize, k: usize) -> Duration {
    let t = &index.tracks[i];
    let ticks = seg.timing[i].decode_time(t, k);
    crate::media::track::ticks_to_duration(ticks, t.timescale)
}

/// The structural rules every segmentation must keep; fails naming the broken one.
fn assert_well_formed(index: &MediaIndex, seg: &Segmentation) {
    assert!(!seg.segments.is_empty());
    let mut next: Vec<usize> = seg.first_samples.clone();
    let mut clock = Duration::ZERO;
    for (j, s) in seg.segments.iter().enumerate() {
        assert_eq!(
            s.start,
            clock,
            "segment {j} starts where {} ended",
            j.max(1) - 1
        );
        let rounded = (s.duration.as_secs_f64() * 1000.0).round() / 1000.0;
        assert!(
            rounded.round() as u32 <= seg.target_duration_secs,
            "segment {j} ({rounded} s) fits the target duration (RFC 8216 §4.3.3.1)"
        );
        let mut part_clock = s.start;
        for (k, p) in s.parts.iter().enumerate() {
            assert_eq!(p.start, part_clock, "part {j}.{k} follows the previous one");
            assert!(p.duration <= seg.part_target, "part {j}.{k} ≤ PART-TARGET");
            assert!(!p.duration.is_zero(), "part {j}.{k} lasts");
            part_clock += p.duration;
            for (i, r) in p.tracks.iter().enumerate() {
                assert_eq!(r.start, next[i], "part {j}.{k} track {i} continues");
                next[i] = r.end;
                for sample in r.clone() {
                    let t = decode_time(index, seg, i, sample);
                    let last = j + 1 == seg.segments.len() && k + 1 == s.parts.len();
                    assert!(
                        t >= p.start || (j == 0 && k == 0),
                        "{i}/{sample} not before its part"
                    );
                    assert!(
                        t < p.start + p.duration || last,
                        "{i}/{sample} within its part"
                    );
                }
            }
        }
        assert_eq!(
            part_clock,
            s.start + s.duration,
            "segment {j}'s parts cover it"
        );
        assert_eq!(s.parts[0].independent, s.independent);
        for (i, r) in s.tracks.iter().enumerate() {
            assert_eq!(r.start, s.parts[0].tracks[i].start);
            assert_eq!(r.end, s.parts.last().unwrap().tracks[i].end);
        }
        clock += s.duration;
    }
    for (i, t) in index.tracks.iter().enumerate() {
        assert_eq!(
            next[i],
            t.samples.len(),
            "every sample of track {i} is in a segment"
        );
    }
}

/// The sample: keyframes every 2 s → five 2 s segments starting at keyframes, all
/// independent, parts of 8 frames (320 ms). Fails if the cut rule, the part rule or the
/// audio assignment is off.
#[test]
fn sample_cuts_at_keyframes_every_two_seconds() {
    let media = sample();
    let index = &media.index;
    let seg = segment_file(index, &first_served_samples(index));
    assert_well_formed(index, &seg);
    assert_eq!(seg.segments.len(), 5);
    assert_eq!(seg.target_duration_secs, 2);
    assert_eq!(seg.part_target, PART_TARGET);
    let video = &index.tracks[0];
    for s in &seg.segments {
        assert!(video.samples[s.tracks[0].start].sync);
        assert!(s.independent);
        assert_eq!(s.parts[0].tracks[0].len(), 8);
        assert!(s.parts.iter().skip(1).all(|p| !p.independent));
    }
    assert!(seg.segments[..4]
        .iter()
        .all(|s| s.duration == Duration::from_secs(2)));
    // The AAC priming frame (presented before zero) is not served.
    assert_eq!(seg.first_samples[1], 1);
    assert!(seg.all_independent());
}

fn h264_config() -> H264Config {
    H264Config {
        profile_idc: 100,
        profile_compat: 0,
        level_idc: 30,
        nal_length_size: 4,
        sps: vec![vec![0x67, 0x64, 0x00, 0x1e, 0xac]],
        pps: vec![vec![0x68, 0xef]],
        width: 64,
        height: 48,
    }
}

/// A synthetic video track: `n` frames at 25 fps (timescale 12800), keyframes where `key`.
fn video_track(n: usize, key: impl Fn(usize) -> bool) -> Track {
    Track {
        track_id: 1,
        kind: TrackKind::Video,
        codec: Codec::H264(h264_config()),
        timescale: 12800,
        edit_offset: 0,
        samples: (0..n)
            .map(|k| Sample {
                offset: 100 * k as u64,
                len: 100,
                dts: 512 * k as u64,
                cts_offset: 0,
                sync: key(k),
            })
            .collect(),
    }
}

/// A synthetic AAC track: `n` frames of 1024 samples at 48 kHz.
fn audio_track(n: usize) -> Track {
    Track {
        track_id: 2,
        kind: TrackKind::Audio,
        codec: Codec::Aac(AacConfig {
            audio_specific_config: vec![0x11, 0x90],
            object_type: 2,
            sample_rate_hz: 48_000,
            channels: 2,
        }),
        timescale: 48_000,
        edit_offset: 0,
        samples: (0..n)
            .map(|k| Sample {
                offset: 1_000_000 + 10 * k as u64,
                len: 10,
                dts: 1024 * k as u64,
                cts_offset: 0,
                sync: true,
            })
            .collect(),
    }
}

/// One keyframe in 20 s: the GOP is cut at the first sample past 6 s, and the segments
/// after a cut are not independent; the target duration covers the 6 s segments.
#[test]
fn long_gop_is_cut_past_six_seconds_and_flagged_dependent() {
    let index = MediaIndex {
        tracks: vec![video_track(500, |k| k == 0), audio_track(937)],
        skipped: vec![],
    };
    let seg = segment_file(&index, &[0, 0]);
    assert_well_formed(&index, &seg);
    let starts: Vec<usize> = seg.segments.iter().map(|s| s.tracks[0].start).collect();
    // 6 s is frame 150; the first sample past it is 151.
    assert_eq!(starts, vec![0, 151, 302, 453]);
    assert!(seg.segments[0].independent);
    assert!(seg.segments[1..].iter().all(|s| !s.independent));
    assert!(!seg.all_independent());
    assert_eq!(seg.target_duration_secs, 6);
}

/// Keyframes every 0.5 s: a segment still lasts at least 2 s (the first keyframe at or after
/// 2 s), so segments hold four GOPs, and parts starting on a keyframe are independent.
#[test]
fn short_gops_join_into_two_second_segments() {
    let index = MediaIndex {
        tracks: vec![video_track(250, |k| k % 12 == 0)],
        skipped: vec![],
    };
    let seg = segment_file(&index, &[0]);
    assert_well_formed(&index, &seg);
    let starts: Vec<usize> = seg.segments.iter().map(|s| s.tracks[0].start).collect();
    // 2 s = frame 50; the next keyframe at or after it is 60.
    assert_eq!(starts, vec![0, 60, 120, 180, 240]);
    let independent: Vec<bool> = seg.segments[0]
        .parts
        .iter()
        .map(|p| p.independent)
        .collect();
    let expected: Vec<bool> = seg.segments[0]
        .parts
        .iter()
        .map(|p| p.tracks[0].start % 12 == 0)
        .collect();
    assert_eq!(independent, expected);
}

/// Audio alone: cut every 2 s at the first frame at or after it; all independent.
#[test]
fn audio_only_is_cut_every_two_seconds() {
    let index = MediaIndex {
        tracks: vec![audio_track(470)],
        skipped: vec![],
    };
    let seg = segment_file(&index, &[0]);
    assert_well_formed(&index, &seg);
    assert_eq!(seg.segments.len(), 5);
    for s in &seg.segments[..4] {
        let d = s.duration.as_secs_f64();
        assert!((2.0..2.03).contains(&d), "{d}");
    }
    assert!(seg.all_independent());
}

/// The head's size fields and body: the mdat header announces exactly the body, the spans
/// cover every sample once (merged where contiguous, so the interleaved sample gives few
/// spans), and a bad run is an error, not a panic.
#[test]
fn fragment_head_and_body_agree() {
    let media = sample();
    let index = &media.index;
    let seg = segment_file(index, &first_served_samples(index));
    let frag = seg.vod_fragment(index, 1, None).unwrap();
    let samples: u64 = seg.segments[1]
        .tracks
        .iter()
        .zip(&index.tracks)
        .map(|(r, t)| {
            t.samples[r.clone()]
                .iter()
                .map(|s| u64::from(s.len))
                .sum::<u64>()
        })
        .sum();
    assert_eq!(frag.body_len, samples);
    let n = frag.head.len();
    assert_eq!(&frag.head[n - 4..], b"mdat");
    let mdat_size = u32::from_be_bytes(frag.head[n - 8..n - 4].try_into().unwrap());
    assert_eq!(u64::from(mdat_size), samples + 8);
    let moof_size = u32::from_be_bytes(frag.head[..4].try_into().unwrap()) as usize;
    assert_eq!(moof_size, n - 8);
    let sample_count = seg.segments[1]
        .tracks
        .iter()
        .map(|r| r.len())
        .sum::<usize>();
    // Merged: fewer spans than samples, and no span continues where the one before ended.
    assert!(frag.body.len() < sample_count, "{} spans", frag.body.len());
    assert!(frag
        .body
        .windows(2)
        .all(|w| w[0].offset + w[0].len != w[1].offset));
    // Past the last segment: an error, never another segment's bytes.
    assert_eq!(
        seg.vod_fragment(index, 5, None),
        Err(SegmentError::NoSegment(5))
    );
    assert!(matches!(
        seg.vod_fragment(index, 0, Some(999)),
        Err(SegmentError::NoPart { msn: 0, part: 999 })
    ));
    let bad = fmp4::TrackRun {
        last_duration: None,
        track: 0,
        samples: 5..100_000,
        base_decode_time: 0,
    };
    assert!(matches!(
        fmp4::fragment(index, 1, &[bad]),
        Err(fmp4::Fmp4Error::NoSamples { .. })
    ));
}

fn parse_media(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    }
}

/// `NAME=value` attributes of a tag line (quoted values unquoted); for the LL-HLS tags
/// `m3u8-rs` leaves unparsed.
fn attributes(line: &str) -> Vec<(String, String)> {
    let rest = line.split_once(':').map_or("", |(_, r)| r);
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let v: String = chars.by_ref().take_while(|&c| c != '"').collect();
            chars.next_if_eq(&',');
            v
        } else {
            chars.by_ref().take_while(|&c| c != ',').collect()
        };
        out.push((name, value));
    }
    out
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn vod_playlist_parses_and_keeps_rfc8216_rules() {
    let media = sample();
    let index = &media.index;
    let seg = segment_file(index, &first_served_samples(index));
    let q = QuerySuffix::try_from("?token=abc.DEF-1&v=7").unwrap();
    let text = vod_media_playlist(&seg, &q);
    let p = parse_media(&text);
    assert!(p.end_list);
    assert_eq!(p.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
    assert_eq!(p.media_sequence, 0);
    assert!(p.version.unwrap() >= 7);
    assert_eq!(p.segments.len(), seg.segments.len());
    assert_eq!(
        p.segments[0].map.as_ref().unwrap().uri,
        "init.mp4?token=abc.DEF-1&v=7"
    );
    let mut total = 0.0;
    for (msn, s) in p.segments.iter().enumerate() {
        assert_eq!(s.uri, format!("seg{msn}.m4s?token=abc.DEF-1&v=7"));
        assert!((s.duration.round() as u64) <= p.target_duration);
        total += f64::from(s.duration);
    }
    assert!(
        (total - media.duration().as_secs_f64()).abs() < 0.01,
        "{total}"
    );
    // Three decimals, as RFC 8216 §4.3.2.1 recommends for accuracy.
    assert!(text.contains("#EXTINF:2.000,"), "{text}");
}

#[test]
fn multivariant_playlist_names_codecs_resolution_and_bandwidth() {
    let media = sample();
    let index = &media.index;
    let seg = segment_file(index, &first_served_samples(index));
    let text = multivariant_playlist(index, &seg, &QuerySuffix::none());
    let Ok(Playlist::MasterPlaylist(m)) = m3u8_rs::parse_playlist_res(text.as_bytes()) else {
        panic!("not a multivariant playlist:\n{text}");
    };
    assert_eq!(m.variants.len(), 1);
    let v = &m.variants[0];
    assert_eq!(v.uri, "media.m3u8");
    // Main profile (0x4d), constraint_set1 (0x40), level 3.0 (0x1e): the sample's avcC /
    // SPS bytes 4d 40 1e.
    assert_eq!(v.codecs.as_deref(), Some("avc1.4d401e,mp4a.40.2"));
    let r = v.resolution.unwrap();
    assert_eq!((r.width, r.height), (640, 360));
    assert_eq!(v.frame_rate, Some(25.0));
    let avg = v.average_bandwidth.unwrap();
    // The file averages ~704 kbit/s (640 video + 64 audio): the peak is at least that.
    assert!((650_000..800_000).contains(&avg), "{avg}");
    assert!(v.bandwidth >= avg);
    assert!(m.independent_segments);
}

/// One live playlist's facts, read back from its text.
struct LiveView {
    sequence: u64,
    /// (msn, EXTINF seconds) of the complete segments.
    segments: Vec<(u64, f64)>,
    /// (msn, part, duration, independent) of every EXT-X-PART line, in order.
    parts: Vec<(u64, usize, f64, bool)>,
    hint: (u64, usize),
    part_target: f64,
    target: u64,
}

fn msn_part(uri: &str) -> (u64, usize) {
    let name = uri.split('?').next().unwrap();
    match parse_resource(name) {
        Some(HlsResource::Part { msn, part }) => (msn, part),
        other => panic!("not a part URI: {uri} ({other:?})"),
    }
}

fn read_live(text: &str) -> LiveView {
    let p = parse_media(text);
    assert!(!p.end_list && p.playlist_type.is_none());
    let mut parts = Vec::new();
    let mut hint = None;
    let mut part_target = None;
    let mut can_block = false;
    let mut part_hold_back = 0.0;
    for line in text.lines() {
        let attrs = attributes(line);
        if line.starts_with("#EXT-X-PART:") {
            let (msn, part) = msn_part(attr(&attrs, "URI").unwrap());
            let d: f64 = attr(&attrs, "DURATION").unwrap().parse().unwrap();
            parts.push((msn, part, d, attr(&attrs, "INDEPENDENT") == Some("YES")));
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            assert_eq!(attr(&attrs, "TYPE"), Some("PART"));
            hint = Some(msn_part(attr(&attrs, "URI").unwrap()));
        } else if line.starts_with("#EXT-X-PART-INF:") {
            part_target = attr(&attrs, "PART-TARGET").map(|v| v.parse::<f64>().unwrap());
        } else if line.starts_with("#EXT-X-SERVER-CONTROL:") {
            can_block = attr(&attrs, "CAN-BLOCK-RELOAD") == Some("YES");
            part_hold_back = attr(&attrs, "PART-HOLD-BACK").unwrap().parse().unwrap();
        }
    }
    let part_target = part_target.expect("EXT-X-PART-INF");
    assert!(can_block);
    assert!(
        part_hold_back >= 3.0 * part_target - 1e-9,
        "PART-HOLD-BACK ≥ 3 part targets"
    );
    let segments = p
        .segments
        .iter()
        .map(|s| match parse_resource(s.uri.split('?').next().unwrap()) {
            Some(HlsResource::Segment { msn }) => (msn, f64::from(s.duration)),
            other => panic!("not a segment URI: {} ({other:?})", s.uri),
        })
        .collect();
    LiveView {
        sequence: p.media_sequence,
        segments,
        parts,
        hint: hint.expect("EXT-X-PRELOAD-HINT"),
        part_target,
        target: p.target_duration,
    }
}

/// Live playlists every 50 ms over three loops of the sample (crossing two loop points): each
/// parses, keeps the rules (target duration, part target, hold-backs), numbers its
/// segments from EXT-X-MEDIA-SEQUENCE on without a gap, lists the filling segment's complete
/// parts and hints the next; successive playlists never go back, a segment keeps its
/// duration from one reload to the next, and every msn appears. Fails on any numbering gap,
/// including one at a loop point.
#[test]
fn live_playlists_stay_continuous_across_reloads_and_loops() {
    let (ch, live) = live(sample());
    let q = QuerySuffix::try_from("?token=t&v=1").unwrap();
    let mut seen: std::collections::BTreeMap<u64, f64> = Default::default();
    let mut last: Option<LiveView> = None;
    let end = ch.loop_duration * 3 + Duration::from_millis(500);
    let mut t = Duration::ZERO;
    while t < end {
        let v = read_live(&live_media_playlist(&live, t, &q));
        assert!(v.target >= 2);
        for (j, &(msn, d)) in v.segments.iter().enumerate() {
            assert_eq!(
                msn,
                v.sequence + j as u64,
                "segments numbered from the sequence"
            );
            assert!(d.round() as u64 <= v.target);
            if let Some(&before) = seen.get(&msn) {
                assert_eq!(before, d, "segment {msn} keeps its duration");
            }
            seen.insert(msn, d);
        }
        for &(_, _, d, _) in &v.parts {
            assert!(
                d <= v.part_target,
                "part {d} ≤ PART-TARGET {}",
                v.part_target
            );
        }
        let filling = v.segments.last().map_or(v.sequence, |s| s.0 + 1);
        assert_eq!(v.hint.0, filling, "the hint names the filling segment");
        let filling_parts: Vec<usize> = v
            .parts
            .iter()
            .filter(|p| p.0 == filling)
            .map(|p| p.1)
            .collect();
        assert_eq!(filling_parts, (0..v.hint.1).collect::<Vec<_>>());
        // The window: 6 complete segments once the channel has that many.
        assert_eq!(v.segments.len() as u64, filling.min(LIVE_WINDOW_SEGMENTS));
        // Each listed part is complete at t, the hinted one is not.
        for &(msn, part, _, _) in &v.parts {
            assert!(live.completes_at(msn, Some(part)).unwrap() <= t);
        }
        assert!(live.completes_at(v.hint.0, Some(v.hint.1)).unwrap() > t);
        if let Some(prev) = &last {
            assert!(v.sequence >= prev.sequence);
            assert!(v.hint >= prev.hint);
        }
        last = Some(v);
        t += Duration::from_millis(50);
    }
    let msns: Vec<u64> = seen.keys().copied().collect();
    let k = live.segmentation.segments.len() as u64;
    assert_eq!(msns, (0..msns.len() as u64).collect::<Vec<_>>());
    assert!(
        msns.len() as u64 >= 3 * k - 1,
        "{} segments over 3 loops",
        msns.len()
    );
}

/// Segment and part numbers map onto the loop: msn K is loop 1's segment 0, starting one
/// loop after segment 0, with decode times one loop (in each track's MP4 timescale, not the
/// RTP clock) later.
#[test]
fn live_segments_repeat_the_file_one_loop_later() {
    let media = sample();
    let (ch, live) = live(media);
    let index = &ch.media.index;
    let k = live.segmentation.segments.len() as u64;
    for j in 0..k {
        let (a, b) = (live.segment(j).unwrap(), live.segment(j + k).unwrap());
        assert_eq!(b.start, a.start + ch.loop_duration);
        assert_eq!(a.duration, b.duration);
    }
    let tfdt = |msn: u64| -> Vec<u64> {
        let head = live.fragment(index, msn, None).unwrap().head;
        head.windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"tfdt")
            .map(|(at, _)| u64::from_be_bytes(head[at + 8..at + 16].try_into().unwrap()))
            .collect()
    };
    let (zero, one) = (tfdt(0), tfdt(k));
    assert_eq!(zero.len(), 2);
    for (i, t) in index.tracks.iter().enumerate() {
        let loop_ticks = (ch.loop_duration.as_secs_f64() * f64::from(t.timescale)).round() as u64;
        assert_eq!(one[i] - zero[i], loop_ticks, "track {i}");
        if t.kind == TrackKind::Video {
            // 12800 Hz in the file, 90 kHz on RTP: the RTP loop length would be wrong here.
            assert_ne!(loop_ticks, ch.tracks[i].loop_ticks);
        }
    }
}

/// The edge, completion times and blocking reloads: a part is listed once complete, a
/// request for the next part waits until exactly its end, one past the segment's last part
/// means the next segment's first (RFC 8216bis §6.2.5.2), and one far ahead is refused.
#[test]
fn blocking_reloads_wait_for_the_part_or_are_refused() {
    let (_, live) = live(sample());
    let t = Duration::from_millis(4_500);
    let edge = live.edge(t);
    assert_eq!(edge.filling_msn, 2);
    assert_eq!(edge.complete_parts, 1); // part 0 ends at 4.32 s, part 1 at 4.64 s
    let next = BlockingReload {
        msn: 2,
        part: Some(1),
    };
    let done = live.completes_at(2, Some(1)).unwrap();
    assert_eq!(reload_wait(&live, t, next), ReloadWait::Until(done));
    assert_eq!(reload_wait(&live, done, next), ReloadWait::Now);
    let parts = live.segmentation.segments[2].parts.len();
    assert_eq!(live.normalize_part(2, parts), (3, 0));
    let past_last = BlockingReload {
        msn: 2,
        part: Some(parts),
    };
    assert_eq!(
        reload_wait(&live, t, past_last),
        ReloadWait::Until(live.completes_at(3, Some(0)).unwrap())
    );
    let far = BlockingReload { msn: 9, part: None };
    assert_eq!(reload_wait(&live, t, far), ReloadWait::TooFar);
    assert!(live.is_available(t, 1, None));
    assert!(live.is_available(t, 2, Some(0)));
    assert!(!live.is_available(t, 2, Some(1)));
    assert!(!live.is_available(t, 2, None));
    // Out of the window: more than 6 segments behind the filling one.
    let later = Duration::from_secs(30);
    assert!(!live.is_available(later, 0, None));
    assert!(live.is_available(later, live.edge(later).first_msn, None));
}

#[test]
fn resource_names_parse_strictly() {
    use HlsResource::*;
    let table: &[(&str, Option<HlsResource>)] = &[
        ("index.m3u8", Some(Multivariant)),
        ("media.m3u8", Some(MediaPlaylist)),
        ("init.mp4", Some(Init)),
        ("seg0.m4s", Some(Segment { msn: 0 })),
        ("seg12.m4s", Some(Segment { msn: 12 })),
        ("part12.3.m4s", Some(Part { msn: 12, part: 3 })),
        ("part0.0.m4s", Some(Part { msn: 0, part: 0 })),
        ("seg012.m4s", None),
        ("seg-1.m4s", None),
        ("seg+1.m4s", None),
        ("seg.m4s", None),
        ("seg1.m4s.m4s", None),
        ("seg99999999999999999999.m4s", None),
        ("part1..m4s", None),
        ("part1.2.3.m4s", None),
        ("part.1.m4s", None),
        ("part1.m4s", None),
        ("../init.mp4", None),
        ("init.mp4/", None),
        ("INDEX.M3U8", None),
        ("", None),
        ("seg1.ts", None),
        ("seg１.m4s", None),
    ];
    for (name, want) in table {
        assert_eq!(parse_resource(name), *want, "{name:?}");
    }
}

#[test]
fn blocking_reload_queries_follow_rfc8216bis() {
    let ok = |msn, part| Ok(Some(BlockingReload { msn, part }));
    assert_eq!(parse_blocking_reload(""), Ok(None));
    assert_eq!(parse_blocking_reload("token=abc&v=3"), Ok(None));
    assert_eq!(parse_blocking_reload("_HLS_msn=5"), ok(5, None));
    assert_eq!(
        parse_blocking_reload("token=x&_HLS_msn=5&_HLS_part=2&v=1"),
        ok(5, Some(2))
    );
    assert_eq!(
        parse_blocking_reload("_HLS_part=2&_HLS_msn=05"),
        ok(5, Some(2))
    );
    assert_eq!(
        parse_blocking_reload("_HLS_msn=0&_HLS_part=0"),
        ok(0, Some(0))
    );
    use ReloadQueryError::*;
    let bad: &[(&str, ReloadQueryError)] = &[
        ("_HLS_part=1", PartWithoutMsn),
        ("_HLS_msn=", NotANumber("_HLS_msn")),
        ("_HLS_msn", NotANumber("_HLS_msn")),
        ("_HLS_msn=abc", NotANumber("_HLS_msn")),
        ("_HLS_msn=-1", NotANumber("_HLS_msn")),
        ("_HLS_msn=1.5", NotANumber("_HLS_msn")),
        ("_HLS_msn=%31", NotANumber("_HLS_msn")),
        ("_HLS_msn=99999999999999999999999", NotANumber("_HLS_msn")),
        ("_HLS_msn=1&_HLS_part=x", NotANumber("_HLS_part")),
        ("_HLS_msn=1&_HLS_msn=2", Repeated("_HLS_msn")),
    ];
    for (q, want) in bad {
        let got = parse_blocking_reload(q);
        assert_eq!(got.as_ref().err(), Some(want), "{q:?}");
        assert_eq!(got.unwrap_err().status(), 400);
    }
}

/// Hostile input never panics: random bytes and mutations of valid names and queries.
#[test]
fn hostile_names_and_queries_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let seeds = [
        "part12.3.m4s",
        "seg4.m4s",
        "_HLS_msn=5&_HLS_part=2",
        "init.mp4",
    ];
    let alphabet = b"0123456789.&=_HLSmsnpartseg4%-+\xff\x00 ";
    for round in 0..20_000 {
        let base = seeds[round % seeds.len()].as_bytes();
        let mut bytes: Vec<u8> = base.to_vec();
        for _ in 0..rng.gen_range(0..6) {
            let at = rng.gen_range(0..=bytes.len());
            match rng.gen_range(0..3) {
                0 => bytes.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse_resource(&s);
        let _ = parse_blocking_reload(&s);
        let _ = QuerySuffix::try_from(&*s);
    }
    let long = "9".repeat(100_000);
    assert_eq!(parse_resource(&format!("seg{long}.m4s")), None);
    assert!(parse_blocking_reload(&format!("_HLS_msn={long}")).is_err());
}

#[test]
fn query_suffixes_cannot_break_out_of_a_uri() {
    for good in ["", "?token=abc.def_1-2~&v=9", "?a=%20b"] {
        assert!(QuerySuffix::try_from(good).is_ok(), "{good:?}");
    }
    for bad in [
        "token=a",
        "?a=\"b",
        "?a=b\n#EXT-X-ENDLIST",
        "?a b",
        "?a=\u{e9}",
        &format!("?{}", "a".repeat(2000)),
    ] {
        assert_eq!(QuerySuffix::try_from(bad), Err(BadQuerySuffix), "{bad:?}");
    }
}

/// Per track of a fragment head: (track_ID, tfdt, sum of the `trun` sample durations).
fn traf_spans(head: &[u8]) -> Vec<(u32, u64, u64)> {
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 8; // inside moof
    let moof_end = be32(head, 0) as usize;
    while at + 8 <= moof_end {
        let (size, kind) = (be32(head, at) as usize, &head[at + 4..at + 8]);
        if kind == b"traf" {
            let (mut id, mut tfdt, mut total) = (0, 0, 0u64);
            let mut inner = at + 8;
            while inner + 8 <= at + size {
                let (isize, ikind) = (be32(head, inner) as usize, &head[inner + 4..inner + 8]);
                match ikind {
                    b"tfhd" => id = be32(head, inner + 12),
                    b"tfdt" => {
                        tfdt = u64::from_be_bytes(head[inner + 12..inner + 20].try_into().unwrap())
                    }
                    b"trun" => {
                        let count = be32(head, inner + 12) as usize;
                        for s in 0..count {
                            total += u64::from(be32(head, inner + 20 + s * 16));
                        }
                    }
                    _ => {}
                }
                inner += isize;
            }
            out.push((id, tfdt, total));
        }
        at += size;
    }
    out
}

#[test]
fn a_live_loop_leaves_no_hole_in_any_track_across_the_loop_point() {
    // The loop lasts as long as the longest track; the shorter one's last sample of a loop
    // lasts until the next loop starts, or an MSE player's buffered range gets a hole (and
    // the player stalls) at every loop point.
    let (ch, hls) = live(sample());
    let index = &ch.media.index;
    let k = hls.segmentation.segments.len() as u64;
    for n in 0..3 {
        let last = hls.fragment(index, n * k + k - 1, None).unwrap();
        let next = hls.fragment(index, (n + 1) * k, None).unwrap();
        let (a, b) = (traf_spans(&last.head), traf_spans(&next.head));
        assert_eq!(a.len(), index.tracks.len());
        for ((id, tfdt, dur), (id2, tfdt2, _)) in a.iter().zip(&b) {
            assert_eq!(id, id2);
            assert_eq!(
                tfdt + dur,
                *tfdt2,
                "track {id}: loop {n} ends at {} but loop {} starts at {tfdt2}",
                tfdt + dur,
                n + 1
            );
        }
    }
}

/// docs/design/reach.md "Codecs": H.265 is not served over HLS yet; the init segment says so
/// (the route answers 415 with it). The RFC 6381 / ISO/IEC 14496-15 Annex E codec string is
/// ready for when it is.
#[test]
fn h265_is_refused_with_the_reason_and_named_like_hvc1() {
    use crate::media::track::H265Config;
    let mut cfg = H265Config {
        profile_space: 0,
        tier_flag: false,
        profile_idc: 1,
        profile_compat: 0x6000_0000,
        constraint_flags: [0x90, 0, 0, 0, 0, 0],
        level_idc: 63,
        nal_length_size: 4,
        vps: vec![vec![0x40, 0x01]],
        sps: vec![vec![0x42, 0x01]],
        pps: vec![vec![0x44, 0x01]],
        width: 640,
        height: 360,
    };
    let mut video = video_track(50, |k| k % 25 == 0);
    video.codec = Codec::H265(cfg.clone());
    let index = MediaIndex {
        tracks: vec![video, audio_track(94)],
        skipped: Vec::new(),
    };
    let err = fmp4::init_segment(&index).unwrap_err();
    assert_eq!(err, fmp4::Fmp4Error::UnsupportedCodec("H.265"));
    assert!(err.to_string().contains("not served over HLS"), "{err}");
    // Annex E.3: x265's Main level 2.1 (the hvcC of tests/h265.rs), and a Main 10 High tier
    // stream in profile space 1.
    assert_eq!(hvc1_codec(&cfg), "hvc1.1.6.L63.90");
    assert_eq!(codecs(&index), "hvc1.1.6.L63.90,mp4a.40.2");
    cfg.profile_space = 1;
    cfg.tier_flag = true;
    cfg.profile_idc = 2;
    cfg.profile_compat = 0x2000_0000;
    cfg.level_idc = 120;
    cfg.constraint_flags = [0xb0, 0, 0, 0, 0, 0];
    assert_eq!(hvc1_codec(&cfg), "hvc1.A2.4.H120.B0");
}
