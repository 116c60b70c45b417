//! Matroska and WebM reader over a byte slice: turns a `.mkv`/`.webm` file held in memory into
//! a [`MediaIndex`] whose samples are bounds-checked ranges of it, as the MP4 reader does
//! (a Matroska frame is contiguous inside its block, so no bytes are copied).
//!
//! Implements from RFC 8794 (EBML): §4 variable-size integers, §5 element IDs, §6 data sizes
//! including the unknown size (§6.2: an unknown-size `Segment` or `Cluster` — a file still
//! being written — ends where an element of its parent's level starts), §7 element bodies
//! (`ebml`); from RFC 9559 (Matroska): §5.1.2 `Info`/`TimestampScale`, §5.1.4 `Tracks`
//! (`tracks`), §5.1.3 `Cluster`/`Timestamp`, `SimpleBlock` and `BlockGroup`/`Block`/
//! `ReferenceBlock`/`BlockDuration`, §10 block structure and Xiph/EBML/fixed lacing (`block`);
//! `Cues` are not read: every block is indexed once, and seeking uses the keyframes.
//!
//! Times: Matroska stores presentation times. Each frame of a laced block is its own sample,
//! timed by the track's `DefaultDuration`, else spread evenly over the block's duration
//! (`BlockDuration`, else the time to the track's next block). Decode times of video tracks
//! are derived by sorting the presentation times within each GOP (keyframe to keyframe): the
//! n-th decoded frame of a GOP decodes at the n-th smallest presentation time, shifted by the
//! largest reordering delay of the track so no frame decodes after it is presented (H.264 and
//! H.265 with B-frames play). Times are rebased so the earliest frame of the file is at 0.
//! G.711 (`A_MS/ACM`) blocks are then split into 20 ms samples on the sampling clock
//! ([`crate::media::g711::split_track`]), one RTP packet each.
//!
//! Bounds: every element size is checked against its parent and the file; vints are at most 8
//! bytes and IDs 4; nesting is fixed by the structure walked (Segment → Cluster → BlockGroup →
//! Block, Segment → Tracks → TrackEntry → Video/Audio), so depth is bounded; a block whose
//! lace sizes lie is skipped and counted; at most [`MAX_SAMPLES`] frames are indexed. A file
//! cut short inside a cluster (a truncated copy, a live recording) is indexed up to its last
//! complete block. Nothing here panics on hostile bytes.

mod block;
mod ebml;
mod error;
mod ids;
mod tracks;

#[cfg(test)]
mod tests;

pub use error::{MkvError, MkvErrorKind};

use block::parse_block;
use ebml::{read_header, read_header_clamped, read_string, read_uint, Children};
use tracks::{map_codec, read_tracks};

use crate::media::track::{Codec, MediaIndex, Sample, Track, TrackKind};

/// Most frames indexed per file (all tracks): 2^22, about 16 hours of 25 fps video with
/// 48 kHz AAC. Each costs 24 bytes of index.
pub const MAX_SAMPLES: usize = 1 << 22;

/// The first four bytes of every EBML document (the `EBML` element ID, RFC 8794 §11.2.1).
pub const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// A Matroska file's index and what was left out of it.
#[derive(Debug)]
pub struct MkvIndex {
    /// The served tracks and the skipped ones, as for MP4.
    pub index: MediaIndex,
    /// Blocks skipped because their header or lace sizes were malformed.
    pub bad_blocks: u64,
    /// Where the file was cut short (inside a cluster or after the last complete element),
    /// if it was.
    pub truncated_at: Option<u64>,
}

/// Whether `bytes` start like an EBML document (Matroska, WebM).
pub fn is_matroska(bytes: &[u8]) -> bool {
    bytes.starts_with(&EBML_MAGIC)
}

/// Per-track state while the clusters are read.
struct Building {
    number: u64,
    kind: TrackKind,
    codec: Codec,
    default_duration_ns: u64,
    samples: Vec<Sample>,
    /// Presentation time of each sample in nanoseconds (file time, not yet rebased).
    pts_ns: Vec<i64>,
    /// Laced blocks without a DefaultDuration: (first sample, frame count, block duration in
    /// ns if the file gave one). Their frames are spread over the block once its end is known.
    lace_groups: Vec<(usize, usize, Option<i64>)>,
}

/// What the cluster walk counts.
#[derive(Default)]
struct Walk {
    bad_blocks: u64,
    truncated_at: Option<u64>,
    total_samples: usize,
    frames: Vec<(usize, usize)>,
}

/// Parses a Matroska or WebM file held in memory (a mapping or static bytes) into its index.
pub fn parse_mkv(bytes: &[u8]) -> Result<MkvIndex, MkvError> {
    if !is_matroska(bytes) {
        return Err(MkvError::new(0, MkvErrorKind::NotMatroska));
    }
    let len = bytes.len();
    let ebml = read_header(bytes, 0, len)?;
    let ebml_end = ebml.end.ok_or(MkvError::new(
        0,
        MkvErrorKind::Invalid("unknown-size EBML header"),
    ))?;
    for c in Children::new(bytes, ebml.data, ebml_end, &[]) {
        let c = c?;
        if let (ids::DOC_TYPE, Some(end)) = (c.id, c.end) {
            let doc = read_string(&bytes[c.data..end]);
            if doc != "matroska" && doc != "webm" {
                return Err(MkvError::new(c.start as u64, MkvErrorKind::DocType(doc)));
            }
        }
    }
    let mut walk = Walk::default();

    // RFC 9559 §4: the Segment follows the EBML header (Void elements may sit between).
    let mut pos = ebml_end;
    let segment = loop {
        if pos >= len {
            return Err(MkvError::new(pos as u64, MkvErrorKind::Missing("Segment")));
        }
        let (el, cut) = read_header_clamped(bytes, pos, len)?;
        if cut {
            walk.truncated_at = Some(len as u64);
        }
        if el.id == ids::SEGMENT {
            break el;
        }
        pos = el.end.ok_or(MkvError::new(
            pos as u64,
            MkvErrorKind::Invalid("unknown-size element before the segment"),
        ))?;
    };
    let seg_end = segment.end.unwrap_or(len);

    let mut scale_ns: u64 = 1_000_000;
    let mut entries = None;
    let mut clusters: Vec<(usize, usize)> = Vec::new();
    let mut pos = segment.data;
    while pos < seg_end {
        let (el, cut) = match read_header_clamped(bytes, pos, seg_end) {
            Ok(v) => v,
            Err(e) if e.kind == MkvErrorKind::Truncated => {
                walk.truncated_at = Some(pos as u64);
                break;
            }
            Err(e) => return Err(e),
        };
        if segment.end.is_none() && ids::SEGMENT_LEVEL.contains(&el.id) {
            break; // RFC 8794 §6.2: the unknown-size segment ends here.
        }
        if el.id == ids::CLUSTER {
            let end = match el.end {
                Some(end) => end,
                None => cluster_end(bytes, el.data, seg_end, &mut walk),
            };
            if cut {
                walk.truncated_at = Some(seg_end as u64);
            }
            clusters.push((el.data, end));
            pos = end;
            continue;
        }
        let Some(end) = el.end else {
            // Only segments and clusters may have an unknown size. After the tracks, such an
            // element (a writer's unfinished tags, say) ends the walk; before them, the file.
            if entries.is_some() {
                walk.truncated_at = Some(el.start as u64);
                break;
            }
            return Err(MkvError::new(
                el.start as u64,
                MkvErrorKind::Invalid("unknown size outside a segment or cluster"),
            ));
        };
        if cut {
            if matches!(el.id, ids::INFO | ids::TRACKS) {
                return Err(MkvError::new(el.start as u64, MkvErrorKind::Truncated));
            }
            walk.truncated_at = Some(el.start as u64);
            break;
        }
        match el.id {
            ids::INFO => {
                for c in Children::new(bytes, el.data, end, &[]) {
                    let c = c?;
                    if let (ids::TIMESTAMP_SCALE, Some(c_end)) = (c.id, c.end) {
                        scale_ns = read_uint(&bytes[c.data..c_end], c.start)?;
                    }
                }
                if scale_ns == 0 {
                    return Err(MkvError::new(
                        el.start as u64,
                        MkvErrorKind::Invalid("zero TimestampScale"),
                    ));
                }
            }
            ids::TRACKS if entries.is_none() => entries = Some(read_tracks(bytes, el.data, end)?),
            _ => {}
        }
        pos = end;
    }

    let entries = entries.ok_or(MkvError::new(
        segment.start as u64,
        MkvErrorKind::Missing("Tracks"),
    ))?;
    let mut building: Vec<Building> = Vec::new();
    let mut skipped = Vec::new();
    for t in &entries {
        if building.iter().any(|b| b.number == t.number) || u32::try_from(t.number).is_err() {
            skipped.push(format!(
                "track {}: duplicate or invalid track number",
                t.number
            ));
            continue;
        }
        match map_codec(t) {
            Ok((kind, codec)) => building.push(Building {
                number: t.number,
                kind,
                codec,
                default_duration_ns: t.default_duration_ns,
                samples: Vec::new(),
                pts_ns: Vec::new(),
                lace_groups: Vec::new(),
            }),
            Err(reason) => skipped.push(reason),
        }
    }

    for (data, end) in clusters {
        read_cluster(bytes, data, end, scale_ns, &mut building, &mut walk)?;
    }

    let min_ns = building
        .iter()
        .filter_map(|b| b.pts_ns.iter().min())
        .min()
        .copied()
        .unwrap_or(0);
    let mut tracks = Vec::new();
    for b in building {
        if b.samples.is_empty() {
            skipped.push(format!("track {}: no frames", b.number));
            continue;
        }
        let mut track = finish_track(b, min_ns, scale_ns);
        // G.711 blocks become 20 ms samples, one RTP packet each (media::g711).
        let pieces = crate::media::g711::piece_count(&track);
        if pieces > 0 {
            walk.total_samples = walk.total_samples.saturating_add(pieces);
            if walk.total_samples > MAX_SAMPLES {
                return Err(MkvError::new(
                    segment.start as u64,
                    MkvErrorKind::TooManySamples(MAX_SAMPLES),
                ));
            }
            crate::media::g711::split_track(&mut track);
        }
        tracks.push(track);
    }
    if tracks.is_empty() {
        return Err(MkvError::new(
            segment.start as u64,
            MkvErrorKind::NoPlayableTrack,
        ));
    }
    // Video first, then audio; the sort is stable so file order holds otherwise.
    tracks.sort_by_key(|t| t.kind != TrackKind::Video);
    Ok(MkvIndex {
        index: MediaIndex { tracks, skipped },
        bad_blocks: walk.bad_blocks,
        truncated_at: walk.truncated_at,
    })
}

/// Where an unknown-size cluster starting its data at `data` ends: at the first element of
/// cluster level or above (RFC 8794 §6.2), else at `limit`. A malformed or cut child ends it
/// too (the block walk then reports it).
fn cluster_end(bytes: &[u8], data: usize, limit: usize, walk: &mut Walk) -> usize {
    let mut children = Children::new(bytes, data, limit, &ids::CLUSTER_LEVEL);
    for c in children.by_ref() {
        match c {
            Ok(el) if el.end.is_some() => {}
            _ => {
                walk.truncated_at.get_or_insert(limit as u64);
                return limit;
            }
        }
    }
    children.pos()
}

/// Reads the blocks of one cluster (data `data..end`) into the tracks being built.
fn read_cluster(
    bytes: &[u8],
    data: usize,
    end: usize,
    scale_ns: u64,
    tracks: &mut [Building],
    walk: &mut Walk,
) -> Result<(), MkvError> {
    let mut cluster_ts: u64 = 0;
    for c in Children::new(bytes, data, end, &[]) {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                // A cut or malformed element: the rest of this cluster is unusable.
                if matches!(e.kind, MkvErrorKind::Truncated | MkvErrorKind::SizeTooLarge)
                    && end == bytes.len()
                {
                    walk.truncated_at = Some(e.offset);
                } else {
                    walk.bad_blocks += 1;
                }
                return Ok(());
            }
        };
        let Some(c_end) = c.end else {
            walk.bad_blocks += 1;
            return Ok(());
        };
        match c.id {
            ids::CLUSTER_TIMESTAMP => cluster_ts = read_uint(&bytes[c.data..c_end], c.start)?,
            ids::SIMPLE_BLOCK => {
                let body = &bytes[c.data..c_end];
                // RFC 9559 §10.2: SimpleBlock flag 0x80 marks a keyframe.
                add_block(body, c.data, cluster_ts, scale_ns, None, None, tracks, walk)?;
            }
            ids::BLOCK_GROUP => {
                let mut block = None;
                let mut referenced = false;
                let mut duration = None;
                for g in Children::new(bytes, c.data, c_end, &[]) {
                    let Ok(g) = g else {
                        walk.bad_blocks += 1;
                        block = None;
                        break;
                    };
                    let Some(g_end) = g.end else {
                        walk.bad_blocks += 1;
                        block = None;
                        break;
                    };
                    match g.id {
                        ids::BLOCK => block = Some((g.data, g_end)),
                        ids::REFERENCE_BLOCK => referenced = true,
                        ids::BLOCK_DURATION => {
                            duration = read_uint(&bytes[g.data..g_end], g.start).ok()
                        }
                        _ => {}
                    }
                }
                if let Some((b_data, b_end)) = block {
                    // RFC 9559 §5.1.3.5.5: a Block without ReferenceBlock is a keyframe.
                    add_block(
                        &bytes[b_data..b_end],
                        b_data,
                        cluster_ts,
                        scale_ns,
                        Some(!referenced),
                        duration,
                        tracks,
                        walk,
                    )?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Adds the frames of one block (body at absolute offset `at`) to its track. `keyframe` is
/// `None` for a SimpleBlock (its flags say), `duration` the BlockDuration in scale units.
#[allow(clippy::too_many_arguments)]
fn add_block(
    body: &[u8],
    at: usize,
    cluster_ts: u64,
    scale_ns: u64,
    keyframe: Option<bool>,
    duration: Option<u64>,
    tracks: &mut [Building],
    walk: &mut Walk,
) -> Result<(), MkvError> {
    let header = match parse_block(body, &mut walk.frames) {
        Ok(h) => h,
        Err(_) => {
            walk.bad_blocks += 1;
            return Ok(());
        }
    };
    let Some(track) = tracks.iter_mut().find(|t| t.number == header.track) else {
        return Ok(()); // a track we do not serve
    };
    if walk.total_samples + walk.frames.len() > MAX_SAMPLES {
        return Err(MkvError::new(
            at as u64,
            MkvErrorKind::TooManySamples(MAX_SAMPLES),
        ));
    }
    let units = i128::from(cluster_ts) + i128::from(header.relative);
    let time_ns = clamp_i64(units * i128::from(scale_ns));
    let sync = keyframe.unwrap_or(header.flags & 0x80 != 0) || track.kind == TrackKind::Audio;
    let n = walk.frames.len();
    if n > 1 && track.default_duration_ns == 0 {
        let dur = duration.map(|d| clamp_i64(i128::from(d) * i128::from(scale_ns)));
        track.lace_groups.push((track.samples.len(), n, dur));
    }
    for (k, &(off, flen)) in walk.frames.iter().enumerate() {
        let Ok(len) = u32::try_from(flen) else {
            walk.bad_blocks += 1;
            return Ok(());
        };
        let step = i128::from(track.default_duration_ns) * k as i128;
        track.samples.push(Sample {
            offset: (at + off) as u64,
            len,
            dts: 0,
            cts_offset: 0,
            // Only the first frame of a laced keyframe block starts a GOP.
            sync: sync && (k == 0 || track.kind == TrackKind::Audio),
        });
        track.pts_ns.push(clamp_i64(i128::from(time_ns) + step));
    }
    walk.total_samples += n;
    Ok(())
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Turns a built track into a served one: lace timing, rebase, ticks, decode times.
fn finish_track(mut b: Building, min_ns: i64, scale_ns: u64) -> Track {
    // Spread the frames of laced blocks over the block's duration.
    for i in 0..b.lace_groups.len() {
        let (first, n, dur) = b.lace_groups[i];
        let start = b.pts_ns[first];
        let dur = dur.or_else(|| {
            b.pts_ns
                .get(first + n)
                .map(|next| next.saturating_sub(start))
                .filter(|d| *d > 0)
        });
        let dur = dur.or_else(|| {
            // The last block of the track: as long as the block before it.
            first
                .checked_sub(1)
                .and_then(|p| b.pts_ns.get(p))
                .map(|prev| start.saturating_sub(*prev).saturating_mul(n as i64))
        });
        let dur = dur.unwrap_or(0).max(0);
        for k in 1..n {
            if let Some(t) = b.pts_ns.get_mut(first + k) {
                *t = start.saturating_add(dur / n as i64 * k as i64);
            }
        }
    }
    let timescale = b.codec.clock_rate_hz().max(1);
    let to_ticks = |ns: i64| -> i64 {
        let v = (i128::from(ns) - i128::from(min_ns)) * i128::from(timescale);
        clamp_i64((v + 500_000_000) / 1_000_000_000)
    };
    let mut pts: Vec<i64> = b.pts_ns.iter().map(|&ns| to_ticks(ns)).collect();
    if let Codec::Aac(_) = b.codec {
        // AAC frames are 1024 samples (ISO/IEC 14496-3 §4.5.2.1); Matroska times are rounded
        // to the TimestampScale (1 ms by default): snap each frame onto the running frame
        // clock while it agrees to within one timestamp unit, so RTP times do not jitter.
        let tol =
            clamp_i64((i128::from(scale_ns) * i128::from(timescale) + 999_999_999) / 1_000_000_000);
        for i in 1..pts.len() {
            let expected = pts[i - 1].saturating_add(1024);
            if (pts[i].saturating_sub(expected)).abs() <= tol {
                pts[i] = expected;
            }
        }
    }
    // Decode order: within each GOP, the n-th frame decodes at the n-th smallest
    // presentation time; `delay` keeps every decode time at or before its presentation.
    let mut decode = pts.clone();
    if b.kind == TrackKind::Video {
        let mut start = 0;
        while start < decode.len() {
            let end = (start + 1..decode.len())
                .find(|&i| b.samples[i].sync)
                .unwrap_or(decode.len());
            decode[start..end].sort_unstable();
            start = end;
        }
    }
    let delay = decode
        .iter()
        .zip(&pts)
        .map(|(d, p)| d.saturating_sub(*p))
        .max()
        .unwrap_or(0)
        .max(0);
    let first_decode = decode
        .iter()
        .copied()
        .min()
        .unwrap_or(0)
        .saturating_sub(delay);
    let edit_offset = delay.saturating_add(first_decode.min(0).saturating_neg());
    for ((s, d), p) in b.samples.iter_mut().zip(&decode).zip(&pts) {
        // Stored decode time: decode - delay + edit_offset (>= 0); pts = dts - edit + cts.
        let stored = d.saturating_sub(delay).saturating_add(edit_offset);
        s.dts = u64::try_from(stored).unwrap_or(0);
        let cts = p.saturating_sub(d.saturating_sub(delay));
        s.cts_offset = i32::try_from(cts).unwrap_or(i32::MAX);
    }
    Track {
        track_id: u32::try_from(b.number).unwrap_or(u32::MAX),
        kind: b.kind,
        codec: b.codec,
        timescale,
        edit_offset,
        samples: b.samples,
    }
}

/// Fuzz entry point: indexes `data` as Matroska and summarizes it, ignoring the outcome
/// (must never panic).
#[cfg(any(test, fuzzing))]
pub fn fuzz_parse_mkv(data: &[u8]) {
    if let Ok(mkv) = parse_mkv(data) {
        for s in crate::media::mp4::summarize(&mkv.index) {
            let _ = s.to_string();
        }
        let _ = mkv.index.duration();
        for t in &mkv.index.tracks {
            for s in &t.samples {
                let end = s.offset + u64::from(s.len);
                assert!(end <= data.len() as u64, "sample outside the file");
            }
        }
    }
}
