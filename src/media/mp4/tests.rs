//! Tests of the whole reader against the bundled sample clip (10 s, 640x360 25 fps H.264 Main
//! without B-frames, keyint 50, 48 kHz stereo AAC-LC), the B-frame clip (4 s, 320x180 25 fps
//! H.264 High with 2 B-frames and `ctts`, keyint 50, AAC-LC) and hostile edits of them.
//! Expected values come from `ffprobe -show_streams` / `-show_packets` on the same files.

use super::*;
use crate::media::track::{Codec, Track};

const SAMPLE: &[u8] = include_bytes!("../../../tests/media/sample.mp4");
const BFRAMES: &[u8] = include_bytes!("../../../tests/media/bframes.mp4");

fn parse_ok(data: &[u8]) -> MediaIndex {
    match parse_mp4(data) {
        Ok(i) => i,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn parse_err(data: &[u8]) -> Mp4Error {
    match parse_mp4(data) {
        Ok(_) => panic!("parse unexpectedly succeeded"),
        Err(e) => e,
    }
}

fn video(i: &MediaIndex) -> &Track {
    &i.tracks[0]
}

fn audio(i: &MediaIndex) -> &Track {
    &i.tracks[1]
}

// ---- a tiny box tree used to rebuild edited files ------------------------------------------

#[derive(Clone)]
enum Node {
    Leaf([u8; 4], Vec<u8>),
    Container([u8; 4], Vec<Node>),
}

const CONTAINERS: [&[u8; 4]; 7] = [
    b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl", b"dinf",
];

fn parse_tree(mut d: &[u8]) -> Vec<Node> {
    let mut out = Vec::new();
    while d.len() >= 8 {
        let size = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
        let typ: [u8; 4] = d[4..8].try_into().unwrap();
        let body = &d[8..size];
        if CONTAINERS.contains(&&typ) {
            out.push(Node::Container(typ, parse_tree(body)));
        } else {
            out.push(Node::Leaf(typ, body.to_vec()));
        }
        d = &d[size..];
    }
    out
}

fn write_tree(nodes: &[Node], out: &mut Vec<u8>) {
    for n in nodes {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match n {
            Node::Leaf(t, body) => {
                out.extend_from_slice(t);
                out.extend_from_slice(body);
            }
            Node::Container(t, kids) => {
                out.extend_from_slice(t);
                write_tree(kids, out);
            }
        }
        let size = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }
}

fn serialize(nodes: &[Node]) -> Vec<u8> {
    let mut v = Vec::new();
    write_tree(nodes, &mut v);
    v
}

/// All nodes of type `typ` in depth-first file order.
fn nodes_of<'a>(nodes: &'a mut [Node], typ: &[u8; 4], out: &mut Vec<&'a mut Node>) {
    for n in nodes {
        let is = match &*n {
            Node::Leaf(t, _) | Node::Container(t, _) => t == typ,
        };
        if is {
            out.push(n);
        } else if let Node::Container(_, kids) = n {
            nodes_of(kids, typ, out);
        }
    }
}

fn leaf_bodies<'a>(nodes: &'a mut [Node], typ: &[u8; 4]) -> Vec<&'a mut Vec<u8>> {
    let mut found = Vec::new();
    nodes_of(nodes, typ, &mut found);
    found
        .into_iter()
        .filter_map(|n| match n {
            Node::Leaf(_, body) => Some(body),
            Node::Container(..) => None,
        })
        .collect()
}

/// Absolute offset of the header of the first box of `typ` inside track `trak` (or in moov).
fn offset_of(data: &[u8], trak: Option<usize>, typ: &[u8; 4]) -> usize {
    fn walk(d: &[u8], base: usize, want: &[u8; 4], trak: &mut Option<usize>) -> Option<usize> {
        let mut pos = 0;
        while pos + 8 <= d.len() {
            let size = u32::from_be_bytes(d[pos..pos + 4].try_into().unwrap()) as usize;
            let typ: [u8; 4] = d[pos + 4..pos + 8].try_into().unwrap();
            let in_scope = trak.is_none();
            if &typ == want && in_scope {
                return Some(base + pos);
            }
            if &typ == b"trak" {
                if let Some(n) = trak {
                    if *n == 0 {
                        let mut none = None;
                        return walk(&d[pos + 8..pos + size], base + pos + 8, want, &mut none);
                    }
                    *n -= 1;
                    pos += size;
                    continue;
                }
            }
            if CONTAINERS.contains(&&typ) {
                if let Some(found) = walk(&d[pos + 8..pos + size], base + pos + 8, want, trak) {
                    return Some(found);
                }
            }
            pos += size;
        }
        None
    }
    let mut t = trak;
    walk(data, 0, typ, &mut t).expect("box present")
}

fn put_u32(data: &mut [u8], at: usize, v: u32) {
    data[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

// ---- the real file -------------------------------------------------------------------------

#[test]
fn sample_tracks_match_ffprobe() {
    let index = parse_ok(SAMPLE);
    assert_eq!(index.tracks.len(), 2);
    assert!(index.skipped.is_empty());
    let v = video(&index);
    let a = audio(&index);
    assert_eq!((v.kind, a.kind), (TrackKind::Video, TrackKind::Audio));
    assert_eq!((v.track_id, a.track_id), (1, 2));
    assert_eq!((v.timescale, a.timescale), (12_800, 48_000));

    // Video: 250 frames, keyframes at 1, 51, 101, 151, 201 (ffprobe packet flags "K").
    assert_eq!(v.samples.len(), 250);
    let keys: Vec<usize> = (0..v.samples.len())
        .filter(|&i| v.samples[i].sync)
        .map(|i| i + 1)
        .collect();
    assert_eq!(keys, vec![1, 51, 101, 151, 201]);
    // No B-frames: no ctts, decode order is presentation order, and the edit list starts
    // the video at media time 0.
    assert!(
        v.samples.iter().all(|s| s.cts_offset == 0),
        "no B-frames, no composition offsets"
    );
    assert_eq!(v.edit_offset, 0);
    // ffprobe: first packet pos 7202 size 12364 pts 0 dts 0; 793657 bytes in all.
    let s0 = v.samples[0];
    assert_eq!((s0.offset, s0.len), (7202, 12_364));
    assert_eq!((v.pts_ticks(&s0), v.dts_ticks(&s0)), (0, 0));
    assert_eq!(
        v.samples.iter().map(|s| u64::from(s.len)).sum::<u64>(),
        793_657
    );
    assert!(v
        .samples
        .iter()
        .enumerate()
        .all(|(i, s)| s.dts == i as u64 * 512));
    let Codec::H264(h) = &v.codec else {
        panic!("video is not h264")
    };
    assert_eq!((h.profile_idc, h.level_idc, h.nal_length_size), (77, 30, 4));
    assert_eq!((h.width, h.height), (640, 360));
    assert!(!h.sps.is_empty() && !h.sps[0].is_empty() && !h.pps.is_empty());
    assert_eq!(h.sps[0][0] & 0x1f, 7);
    assert_eq!(h.pps[0][0] & 0x1f, 8);

    // Audio: 470 AAC-LC frames at 48 kHz stereo; first packet pos 7070 size 132.
    assert_eq!(a.samples.len(), 470);
    assert!(a.samples.iter().all(|s| s.sync));
    assert_eq!((a.samples[0].offset, a.samples[0].len), (7070, 132));
    assert_eq!(
        a.samples.iter().map(|s| u64::from(s.len)).sum::<u64>(),
        80_215
    );
    assert_eq!(a.edit_offset, 1024);
    let Codec::Aac(c) = &a.codec else {
        panic!("audio is not aac")
    };
    assert_eq!(
        (c.object_type, c.sample_rate_hz, c.channels),
        (2, 48_000, 2)
    );
    assert_eq!(a.codec.clock_rate_hz(), 48_000);

    for t in &index.tracks {
        for s in &t.samples {
            assert!(s.offset + u64::from(s.len) <= SAMPLE.len() as u64);
        }
    }
    let d = index.duration().as_secs_f64();
    assert!((d - 10.0).abs() < 0.1, "duration {d}");
}

/// The B-frame clip: `ctts` offsets read, the edit list's 1024-tick start, presentation order
/// different from decode order, all as ffprobe `-show_packets` reports them.
#[test]
fn bframes_clip_tracks_match_ffprobe() {
    let index = parse_ok(BFRAMES);
    assert_eq!(index.tracks.len(), 2);
    let v = video(&index);
    let a = audio(&index);
    assert_eq!((v.timescale, a.timescale), (12_800, 48_000));
    // Video: 100 frames, keyframes at 1 and 51 (ffprobe packet flags "K").
    assert_eq!(v.samples.len(), 100);
    let keys: Vec<usize> = (0..v.samples.len())
        .filter(|&i| v.samples[i].sync)
        .map(|i| i + 1)
        .collect();
    assert_eq!(keys, vec![1, 51]);
    assert_eq!(v.edit_offset, 1024);
    // ffprobe: first packet pos 4295 size 6623 pts 0 dts -1024; 164401 bytes in all.
    let s0 = v.samples[0];
    assert_eq!((s0.offset, s0.len), (4295, 6623));
    assert_eq!((v.pts_ticks(&s0), v.dts_ticks(&s0)), (0, -1024));
    assert_eq!(
        v.samples.iter().map(|s| u64::from(s.len)).sum::<u64>(),
        164_401
    );
    // ffprobe's pts of the first ten packets, in decode order: B-frames shown before the
    // P-frame decoded ahead of them.
    let pts: Vec<i64> = v.samples[..10].iter().map(|s| v.pts_ticks(s)).collect();
    assert_eq!(
        pts,
        vec![0, 1536, 512, 1024, 2560, 2048, 4096, 3072, 3584, 5632]
    );
    // ffprobe pts − dts over all packets: 62 × 512, 3 × 1024, 8 × 1536, 27 × 2048.
    let mut counts = std::collections::BTreeMap::new();
    for s in &v.samples {
        *counts.entry(v.pts_ticks(s) - v.dts_ticks(s)).or_insert(0) += 1;
    }
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![(512, 62), (1024, 3), (1536, 8), (2048, 27)]
    );
    let Codec::H264(h) = &v.codec else {
        panic!("video is not h264")
    };
    assert_eq!((h.profile_idc, h.level_idc), (100, 12));
    assert_eq!((h.width, h.height), (320, 180));
    // Audio: 189 frames, first at pos 13332, 32178 bytes.
    assert_eq!(a.samples.len(), 189);
    assert_eq!((a.samples[0].offset, a.samples[0].len), (13_332, 132));
    assert_eq!(
        a.samples.iter().map(|s| u64::from(s.len)).sum::<u64>(),
        32_178
    );
}

#[test]
fn h264_samples_are_length_prefixed_nal_units() {
    let index = parse_ok(SAMPLE);
    let v = video(&index);
    for (i, s) in v.samples.iter().enumerate() {
        let data = &SAMPLE[s.offset as usize..(s.offset + u64::from(s.len)) as usize];
        let mut pos = 0usize;
        let mut types = Vec::new();
        while pos < data.len() {
            let n = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(
                n > 0 && pos + 4 + n <= data.len(),
                "sample {i}: bad nal length"
            );
            types.push(data[pos + 4] & 0x1f);
            pos += 4 + n;
        }
        assert_eq!(
            pos,
            data.len(),
            "sample {i}: nal units must cover the sample exactly"
        );
        if i == 0 {
            assert!(
                types.contains(&5),
                "first sample must hold an idr slice: {types:?}"
            );
        }
    }
}

#[test]
fn summary_of_sample() {
    let index = parse_ok(SAMPLE);
    let s = summarize(&index);
    assert_eq!(s.len(), 2);
    let v = &s[0];
    assert_eq!(v.resolution, Some((640, 360)));
    assert_eq!((v.sample_count, v.keyframes), (250, 5));
    let fps = v.frame_rate.expect("video has a frame rate");
    assert!((fps - 25.0).abs() < 1e-9, "fps {fps}");
    let (min, avg, max) = v.gop_seconds.expect("several keyframes");
    assert!((min - 2.0).abs() < 1e-9 && (avg - 2.0).abs() < 1e-9 && (max - 2.0).abs() < 1e-9);
    // 793657 bytes over 10 s.
    assert_eq!(v.bitrate_bps, 634_926);
    let a = &s[1];
    assert_eq!(
        (a.sample_rate_hz, a.channels, a.frame_rate),
        (Some(48_000), Some(2), None)
    );
    assert_eq!(a.codec_detail, "AAC-LC");
    let text = v.to_string();
    assert!(
        text.contains("H.264 Main level 3.0") && text.contains("640x360"),
        "{text}"
    );
    assert!(
        text.contains("25.000 fps") && text.contains("5 keyframes"),
        "{text}"
    );
    let text = a.to_string();
    assert!(
        text.contains("48000 Hz, 2 ch") && text.contains("470 samples"),
        "{text}"
    );
}

// ---- layout variants built from the sample -------------------------------------------------

#[test]
fn mdat_before_moov_with_co64() {
    // The sample's mdat body starts at 7070, the B-frame clip's (with ctts) at 4295.
    mdat_before_moov_with_co64_of(SAMPLE, 7070);
    mdat_before_moov_with_co64_of(BFRAMES, 4295);
}

fn mdat_before_moov_with_co64_of(file: &[u8], mdat_body: u64) {
    let tree = parse_tree(file);
    let orig = parse_ok(file);
    // ftyp, mdat, moov: the mdat body moves to 40.
    let mut reordered: Vec<Node> = vec![tree[0].clone(), tree[3].clone(), tree[1].clone()];
    let shift = mdat_body - 40;
    for body in leaf_bodies(&mut reordered, b"stco") {
        let n = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
        let mut co64 = body[..8].to_vec();
        for i in 0..n {
            let off = u32::from_be_bytes(body[8 + 4 * i..12 + 4 * i].try_into().unwrap());
            co64.extend_from_slice(&(u64::from(off) - shift).to_be_bytes());
        }
        *body = co64;
    }
    let mut stcos = Vec::new();
    nodes_of(&mut reordered, b"stco", &mut stcos);
    for n in stcos {
        if let Node::Leaf(t, _) = n {
            *t = *b"co64";
        }
    }
    let data = serialize(&reordered);
    let index = parse_ok(&data);
    for (t0, t1) in orig.tracks.iter().zip(&index.tracks) {
        assert_eq!(t0.samples.len(), t1.samples.len());
        for (a, b) in t0.samples.iter().zip(&t1.samples) {
            assert_eq!(a.offset - shift, b.offset);
            let bytes_a = &file[a.offset as usize..][..a.len as usize];
            let bytes_b = &data[b.offset as usize..][..b.len as usize];
            assert_eq!(bytes_a, bytes_b);
            assert_eq!((a.dts, a.cts_offset, a.sync), (b.dts, b.cts_offset, b.sync));
        }
    }
}

#[test]
fn largesize_and_size_zero_mdat() {
    let mdat = offset_of(SAMPLE, None, b"mdat");
    let free = offset_of(SAMPLE, None, b"free");
    assert_eq!(free + 8, mdat);
    // Replace free(8) + mdat header(8) by one 16-byte largesize mdat header.
    let mut data = SAMPLE.to_vec();
    let size = (SAMPLE.len() - free) as u64;
    put_u32(&mut data, free, 1);
    data[free + 4..free + 8].copy_from_slice(b"mdat");
    data[free + 8..free + 16].copy_from_slice(&size.to_be_bytes());
    assert_eq!(
        parse_ok(&data).tracks[0].samples,
        parse_ok(SAMPLE).tracks[0].samples
    );
    // size 0: mdat runs to the end of the file.
    let mut data = SAMPLE.to_vec();
    put_u32(&mut data, mdat, 0);
    assert_eq!(parse_ok(&data).tracks.len(), 2);
}

#[test]
fn edits_and_sync_table_variants() {
    let mut tree = parse_tree(SAMPLE);
    // Drop the video stss: every sample becomes a sync sample.
    if let Node::Container(_, moov) = &mut tree[1] {
        if let Node::Container(_, trak) = &mut moov[1] {
            let mut stbls = Vec::new();
            nodes_of(trak, b"stbl", &mut stbls);
            if let Node::Container(_, kids) = &mut *stbls[0] {
                kids.retain(|n| !matches!(n, Node::Leaf(t, _) if t == b"stss"));
            }
        }
    }
    // Video elst: an empty edit of 500 ms (movie timescale 1000) then media_time 0.
    {
        let elsts = leaf_bodies(&mut tree, b"elst");
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 2];
        for (dur, mt) in [(500u32, -1i32), (10_000, 0)] {
            body.extend_from_slice(&dur.to_be_bytes());
            body.extend_from_slice(&mt.to_be_bytes());
            body.extend_from_slice(&[0, 1, 0, 0]);
        }
        *elsts.into_iter().next().unwrap() = body;
    }
    // mdat moves when moov shrinks: keep offsets valid by putting mdat first again.
    let moov_len_before = serialize(&parse_tree(SAMPLE)[1..2]).len();
    let moov_len_after = serialize(&tree[1..2]).len();
    let delta = moov_len_before as i64 - moov_len_after as i64;
    for body in leaf_bodies(&mut tree, b"stco") {
        let n = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
        for i in 0..n {
            let at = 8 + 4 * i;
            let off = u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
            body[at..at + 4].copy_from_slice(&((off as i64 - delta) as u32).to_be_bytes());
        }
    }
    let data = serialize(&tree);
    let index = parse_ok(&data);
    let v = video(&index);
    assert!(v.samples.iter().all(|s| s.sync));
    assert_eq!(v.edit_offset, -6400); // 0.5 s at 12800 Hz
    assert_eq!(v.pts_ticks(&v.samples[0]), 6400); // no composition offset to add
    assert_eq!(audio(&index).edit_offset, 1024);
}

#[test]
fn unsupported_tracks_are_skipped() {
    // Rename the audio handler to 'text' and the video sample entry to 'av01'.
    let mut data = SAMPLE.to_vec();
    let hdlr = offset_of(SAMPLE, Some(1), b"hdlr");
    data[hdlr + 16..hdlr + 20].copy_from_slice(b"text");
    let index = parse_ok(&data);
    assert_eq!(index.tracks.len(), 1);
    assert_eq!(
        index.skipped,
        vec!["track 2: unsupported handler text".to_owned()]
    );

    let stsd = offset_of(SAMPLE, Some(0), b"stsd");
    data[stsd + 20..stsd + 24].copy_from_slice(b"av01");
    let e = parse_err(&data);
    assert_eq!(e.kind, Mp4ErrorKind::NoPlayableTrack);

    let mut data = SAMPLE.to_vec();
    data[stsd + 20..stsd + 24].copy_from_slice(b"av01");
    let index = parse_ok(&data);
    assert_eq!(index.tracks.len(), 1);
    assert_eq!(index.tracks[0].kind, TrackKind::Audio);
    assert_eq!(
        index.skipped,
        vec!["track 1: unsupported codec av01".to_owned()]
    );
}

// ---- hostile input -------------------------------------------------------------------------

#[test]
fn not_mp4_and_empty() {
    for data in [
        &b""[..],
        b"ftyp",
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        b"\x00\x00\x00\x08junk",
    ] {
        let e = parse_err(data);
        assert_eq!(e.kind, Mp4ErrorKind::NotMp4);
        assert_eq!(e.path, "file");
    }
    // Only an ftyp: a known first box but no moov.
    let e = parse_err(&SAMPLE[..32]);
    assert_eq!(e.kind, Mp4ErrorKind::MissingBox("moov"));
}

#[test]
fn truncated_everywhere() {
    let mut cut = 0;
    while cut < SAMPLE.len() {
        // Ok is impossible short of the full file, but the point is: no panic.
        assert!(parse_mp4(&SAMPLE[..cut]).is_err(), "cut at {cut}");
        cut += 997;
    }
    // Around the start of mdat (header at 7062).
    for cut in 6960..7160 {
        assert!(parse_mp4(&SAMPLE[..cut]).is_err());
    }
}

#[test]
fn box_larger_than_file() {
    let mut data = SAMPLE.to_vec();
    put_u32(&mut data, 32, 0x7fff_ffff);
    let e = parse_err(&data);
    assert_eq!(
        (e.kind, e.path.as_str(), e.offset),
        (Mp4ErrorKind::BoxTooLarge, "moov", 32)
    );
    // A child larger than its parent.
    let mut data = SAMPLE.to_vec();
    let stsz = offset_of(SAMPLE, Some(0), b"stsz");
    put_u32(&mut data, stsz, 100_000);
    let e = parse_err(&data);
    assert_eq!(e.kind, Mp4ErrorKind::BoxTooLarge);
    assert_eq!(e.path, "moov/trak[0]/mdia/minf/stbl/stsz");
}

#[test]
fn zero_timescales() {
    let mut data = SAMPLE.to_vec();
    let mdhd = offset_of(SAMPLE, Some(1), b"mdhd");
    put_u32(&mut data, mdhd + 20, 0); // header 8, version/flags 4, two 32-bit times
    let e = parse_err(&data);
    assert_eq!(e.kind, Mp4ErrorKind::ZeroTimescale);
    assert_eq!(e.path, "moov/trak[1]/mdia/mdhd");
    assert_eq!(e.offset, mdhd as u64);
    let mut data = SAMPLE.to_vec();
    let mvhd = offset_of(SAMPLE, None, b"mvhd");
    put_u32(&mut data, mvhd + 20, 0);
    assert_eq!(parse_err(&data).kind, Mp4ErrorKind::ZeroTimescale);
}

#[test]
fn sample_out_of_range() {
    let mut data = SAMPLE.to_vec();
    let stco = offset_of(SAMPLE, Some(0), b"stco");
    // Fourth chunk offset (header 8, version/flags 4, entry_count 4, entries).
    put_u32(&mut data, stco + 16 + 12, SAMPLE.len() as u32 - 10);
    let e = parse_err(&data);
    assert_eq!(e.kind, Mp4ErrorKind::SampleOutOfRange);
    assert_eq!(e.path, "moov/trak[0]/mdia/minf/stbl/stco");
    assert_eq!(e.offset, (stco + 16 + 12) as u64);
    assert_eq!(
        e.to_string(),
        format!(
            "moov/trak[0]/mdia/minf/stbl/stco: sample table out of range (at byte {})",
            stco + 28
        )
    );
    // A huge sample size.
    let mut data = SAMPLE.to_vec();
    let stsz = offset_of(SAMPLE, Some(1), b"stsz");
    put_u32(&mut data, stsz + 20 + 4 * 7, u32::MAX);
    assert_eq!(parse_err(&data).kind, Mp4ErrorKind::SampleOutOfRange);
}

#[test]
fn huge_entry_counts() {
    // (file, box, offset of the count field from the box header); only the B-frame clip
    // has a ctts.
    let fields: [(&[u8], &[u8; 4], usize); 7] = [
        (SAMPLE, b"stsz", 16),
        (SAMPLE, b"stts", 12),
        (BFRAMES, b"ctts", 12),
        (SAMPLE, b"stsc", 12),
        (SAMPLE, b"stco", 12),
        (SAMPLE, b"stss", 12),
        (BFRAMES, b"stss", 12),
    ];
    for (file, typ, at) in fields {
        for count in [u32::MAX, 0x4000_0000, 1_000_000] {
            let mut data = file.to_vec();
            let b = offset_of(file, Some(0), typ);
            put_u32(&mut data, b + at, count);
            let e = parse_err(&data);
            assert_eq!(
                e.kind,
                Mp4ErrorKind::Truncated,
                "{:?} {count}",
                std::str::from_utf8(typ)
            );
        }
    }
    // A constant sample size with an enormous count is bounded by the file size.
    let mut data = SAMPLE.to_vec();
    let stsz = offset_of(SAMPLE, Some(1), b"stsz");
    put_u32(&mut data, stsz + 12, 1);
    put_u32(&mut data, stsz + 16, u32::MAX);
    assert_eq!(parse_err(&data).kind, Mp4ErrorKind::SampleOutOfRange);
    // A plausible constant count (within the file) must still agree with stts.
    put_u32(&mut data, stsz + 16, 100_000);
    assert!(matches!(
        parse_err(&data).kind,
        Mp4ErrorKind::Inconsistent(_)
    ));
}

/// One mutated byte of `moov`: where, and what it becomes.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    /// One bit flipped.
    Flip(usize, u8),
    /// A "dangerous" value: all ones.
    Max(usize),
    /// A "dangerous" value: zero.
    Zero(usize),
}

#[test]
fn mutations_of_moov_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::{Cell, RefCell};

    let moov_start = 32usize;
    let moov_len = 7022usize;
    let at = moov_start..moov_start + moov_len;
    // Half the time flip one bit, otherwise write a dangerous value; 1–4 bytes at once.
    let mutation = prop_oneof![
        2 => (at.clone(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        1 => at.clone().prop_map(Mutation::Max),
        1 => at.prop_map(Mutation::Zero),
    ];
    let data = RefCell::new(SAMPLE.to_vec());
    let ok = Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(mutation, 1..=4), |mutations| {
        /// Puts the mutated bytes back when the case ends, even by a panic, so every
        /// case (and every shrinking step) starts from the real file.
        struct Restore<'a> {
            data: std::cell::RefMut<'a, Vec<u8>>,
            saved: Vec<(usize, u8)>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                for &(at, b) in self.saved.iter().rev() {
                    self.data[at] = b;
                }
            }
        }
        let mut r = Restore {
            data: data.borrow_mut(),
            saved: Vec::with_capacity(mutations.len()),
        };
        for m in mutations {
            let (at, new) = match m {
                Mutation::Flip(at, bit) => (at, r.data[at] ^ (1 << bit)),
                Mutation::Max(at) => (at, 0xff),
                Mutation::Zero(at) => (at, 0),
            };
            r.saved.push((at, r.data[at]));
            r.data[at] = new;
        }
        fuzz_parse_mp4(&r.data);
        if parse_mp4(&r.data).is_ok() {
            ok.set(ok.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(*data.borrow(), SAMPLE);
    // Some mutations hit don't-care bytes (names, matrices, reserved), so some parses succeed.
    assert!(ok.get() > 0);
}
