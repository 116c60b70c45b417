//! Unit tests on crafted files: an EBML writer builds exactly the structure each test needs.

use super::*;

/// An element: ID bytes (marker included), minimal size vint, body.
fn el(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = id
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    out.extend(size(body.len() as u64));
    out.extend_from_slice(body);
    out
}

fn size(n: u64) -> Vec<u8> {
    let len = (1..=8).find(|l| n < (1u64 << (7 * l)) - 1).unwrap();
    let v = n | (1u64 << (7 * len));
    v.to_be_bytes()[8 - len..].to_vec()
}

/// An element of unknown size (RFC 8794 §6.2), followed by its children.
fn unknown(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = id
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    out.push(0xFF);
    out.extend_from_slice(body);
    out
}

fn uint(id: u32, v: u64) -> Vec<u8> {
    el(id, &v.to_be_bytes())
}

fn header(doc: &str) -> Vec<u8> {
    el(ids::EBML, &el(ids::DOC_TYPE, doc.as_bytes()))
}

fn avcc() -> Vec<u8> {
    vec![
        1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE,
    ]
}

fn track(number: u64, ty: u64, codec: &str, private: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut b = uint(ids::TRACK_NUMBER, number);
    b.extend(uint(ids::TRACK_TYPE, ty));
    b.extend(el(ids::CODEC_ID, codec.as_bytes()));
    if !private.is_empty() {
        b.extend(el(ids::CODEC_PRIVATE, private));
    }
    b.extend_from_slice(extra);
    el(ids::TRACK_ENTRY, &b)
}

fn video_track(number: u64) -> Vec<u8> {
    let v = [uint(ids::PIXEL_WIDTH, 320), uint(ids::PIXEL_HEIGHT, 240)].concat();
    track(number, 1, "V_MPEG4/ISO/AVC", &avcc(), &el(ids::VIDEO, &v))
}

fn aac_track(number: u64, default_duration: Option<u64>) -> Vec<u8> {
    let mut a = el(ids::SAMPLING_FREQUENCY, &48_000f64.to_bits().to_be_bytes());
    a.extend(uint(ids::CHANNELS, 2));
    let mut extra = el(ids::AUDIO, &a);
    if let Some(d) = default_duration {
        extra.extend(uint(ids::DEFAULT_DURATION, d));
    }
    track(number, 2, "A_AAC", &[0x11, 0x90], &extra)
}

fn simple(track: u8, rel: i16, flags: u8, frame: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80 | track];
    b.extend(rel.to_be_bytes());
    b.push(flags);
    b.extend_from_slice(frame);
    el(ids::SIMPLE_BLOCK, &b)
}

fn cluster(ts: u64, blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut b = uint(ids::CLUSTER_TIMESTAMP, ts);
    blocks.iter().for_each(|x| b.extend(x));
    el(ids::CLUSTER, &b)
}

fn file(tracks: &[Vec<u8>], clusters: &[Vec<u8>]) -> Vec<u8> {
    let mut seg = el(ids::INFO, &uint(ids::TIMESTAMP_SCALE, 1_000_000));
    seg.extend(el(ids::TRACKS, &tracks.concat()));
    clusters.iter().for_each(|c| seg.extend(c));
    [header("matroska"), el(ids::SEGMENT, &seg)].concat()
}

#[test]
fn simple_blocks_become_samples_at_their_times() {
    let f = file(
        &[video_track(1), track(2, 1, "V_AV1", &[], &[])],
        &[
            cluster(0, &[simple(1, 0, 0x80, b"key"), simple(1, 40, 0, b"p1")]),
            cluster(80, &[simple(1, 0, 0, b"p2"), simple(2, 0, 0x80, b"av1")]),
        ],
    );
    let mkv = parse_mkv(&f).unwrap();
    assert_eq!(mkv.bad_blocks, 0);
    assert_eq!(mkv.index.skipped, vec!["track 2: unsupported codec V_AV1"]);
    let t = &mkv.index.tracks[0];
    assert_eq!((t.kind, t.timescale), (TrackKind::Video, 90_000));
    let got: Vec<_> = t
        .samples
        .iter()
        .map(|s| {
            (
                &f[s.offset as usize..][..s.len as usize],
                t.pts_ns(s),
                s.sync,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (&b"key"[..], 0, true),
            (&b"p1"[..], 3600, false),
            (&b"p2"[..], 7200, false)
        ]
    );
    match &t.codec {
        Codec::H264(c) => assert_eq!((c.width, c.height, c.sps.len()), (320, 240, 1)),
        other => panic!("{other:?}"),
    }
}

/// `pts_ticks` under a shorter name for the tests.
trait PtsTicks {
    fn pts_ns(&self, s: &Sample) -> i64;
}
impl PtsTicks for Track {
    fn pts_ns(&self, s: &Sample) -> i64 {
        self.pts_ticks(s)
    }
}

#[test]
fn b_frames_get_decode_times_from_sorted_presentation_times() {
    // Decode order I P B B with presentation 0 120 40 80 (ms): I0 P3 B1 B2.
    let f = file(
        &[video_track(1)],
        &[cluster(
            0,
            &[
                simple(1, 0, 0x80, b"i"),
                simple(1, 120, 0, b"p"),
                simple(1, 40, 0, b"b"),
                simple(1, 80, 0, b"b"),
                simple(1, 160, 0x80, b"i"),
            ],
        )],
    );
    let t = &parse_mkv(&f).unwrap().index.tracks[0];
    let pts: Vec<_> = t.samples.iter().map(|s| t.pts_ticks(s)).collect();
    let dts: Vec<_> = t.samples.iter().map(|s| t.dts_ticks(s)).collect();
    assert_eq!(pts, vec![0, 10_800, 3600, 7200, 14_400]);
    // Sorted presentation times 0 40 80 120 (then 160), delayed by the largest lead of a
    // sorted time over its frame's presentation (the B frames: 80 - 40 = 40 ms).
    assert_eq!(dts, vec![-3600, 0, 3600, 7200, 10_800]);
    assert!(dts.windows(2).all(|w| w[0] < w[1]), "monotonic");
    assert!(
        dts.iter().zip(&pts).all(|(d, p)| d <= p),
        "decode before present"
    );
    assert!(t.reorders_frames());
}

#[test]
fn laced_audio_frames_are_timed_by_default_duration_or_spread() {
    // Xiph lacing, 3 frames of 4, 5 and 6 bytes.
    let mut laced = vec![0x82, 0, 0, 0x82, 2, 4, 5];
    laced.extend([1u8; 15]);
    let mut next = vec![0x82, 0, 64, 0x80];
    next.extend([2u8; 3]);
    let blocks = [el(ids::SIMPLE_BLOCK, &laced), el(ids::SIMPLE_BLOCK, &next)];
    // DefaultDuration 21.333 ms (1024 samples at 48 kHz).
    let f = file(&[aac_track(2, Some(21_333_333))], &[cluster(0, &blocks)]);
    let t = &parse_mkv(&f).unwrap().index.tracks[0];
    let lens: Vec<_> = t.samples.iter().map(|s| s.len).collect();
    assert_eq!(lens, vec![4, 5, 6, 3]);
    let pts: Vec<_> = t.samples.iter().map(|s| t.pts_ticks(s)).collect();
    assert_eq!(
        pts,
        vec![0, 1024, 2048, 3072],
        "snapped onto the AAC frame clock"
    );
    // Without DefaultDuration: spread evenly over the 64 ms up to the next block.
    let f = file(&[aac_track(2, None)], &[cluster(0, &blocks)]);
    let t = &parse_mkv(&f).unwrap().index.tracks[0];
    let pts: Vec<_> = t.samples.iter().map(|s| t.pts_ticks(s)).collect();
    assert_eq!(pts[..3], [0, 1024, 2048]);
    assert_eq!(pts[3], 3072);
    assert!(t.samples.iter().all(|s| s.sync));
}

#[test]
fn block_groups_use_reference_block_for_keyframes() {
    let block = |rel: i16, payload: &[u8]| {
        let mut b = vec![0x81];
        b.extend(rel.to_be_bytes());
        b.push(0);
        b.extend_from_slice(payload);
        el(ids::BLOCK, &b)
    };
    let g1 = el(ids::BLOCK_GROUP, &block(0, b"key"));
    let g2 = el(
        ids::BLOCK_GROUP,
        &[block(40, b"p"), el(ids::REFERENCE_BLOCK, &[0xD8])].concat(),
    );
    let f = file(&[video_track(1)], &[cluster(0, &[g1, g2])]);
    let t = &parse_mkv(&f).unwrap().index.tracks[0];
    let sync: Vec<_> = t.samples.iter().map(|s| s.sync).collect();
    assert_eq!(sync, vec![true, false]);
}

#[test]
fn unknown_size_segment_and_clusters_end_at_the_next_cluster() {
    let body = |ts: u64, rel: i16, key: u8, p: &[u8]| {
        [uint(ids::CLUSTER_TIMESTAMP, ts), simple(1, rel, key, p)].concat()
    };
    let mut seg = el(ids::INFO, &uint(ids::TIMESTAMP_SCALE, 1_000_000));
    seg.extend(el(ids::TRACKS, &video_track(1)));
    seg.extend(unknown(ids::CLUSTER, &body(0, 0, 0x80, b"one")));
    seg.extend(unknown(ids::CLUSTER, &body(40, 0, 0, b"two")));
    seg.extend(unknown(ids::CLUSTER, &body(80, 0, 0x80, b"three")));
    let f = [header("webm"), unknown(ids::SEGMENT, &seg)].concat();
    let mkv = parse_mkv(&f).unwrap();
    let t = &mkv.index.tracks[0];
    assert_eq!(t.samples.len(), 3);
    assert_eq!(mkv.truncated_at, None);
    let pts: Vec<_> = t.samples.iter().map(|s| t.pts_ticks(s)).collect();
    assert_eq!(pts, vec![0, 3600, 7200]);
}

#[test]
fn lying_lace_sizes_skip_the_block_only() {
    let mut lie = vec![0x82, 0, 0, 0x82, 2, 200, 5];
    lie.extend([1u8; 15]);
    let f = file(
        &[aac_track(2, None)],
        &[cluster(
            0,
            &[el(ids::SIMPLE_BLOCK, &lie), simple(2, 21, 0x80, b"ok")],
        )],
    );
    let mkv = parse_mkv(&f).unwrap();
    assert_eq!(mkv.bad_blocks, 1);
    assert_eq!(mkv.index.tracks[0].samples.len(), 1);
}

#[test]
fn truncated_files_keep_their_complete_blocks() {
    let f = file(
        &[video_track(1)],
        &[cluster(
            0,
            &[simple(1, 0, 0x80, b"key"), simple(1, 40, 0, &[7u8; 50])],
        )],
    );
    for cut in [f.len() - 10, f.len() - 40] {
        let mkv = parse_mkv(&f[..cut]).unwrap();
        assert_eq!(mkv.index.tracks[0].samples.len(), 1, "cut at {cut}");
        assert!(mkv.truncated_at.is_some());
    }
    // Cut inside Tracks: an error.
    let cut = f.iter().position(|&b| b == 0x86).unwrap() + 3;
    let e = parse_mkv(&f[..cut]).unwrap_err();
    assert!(
        matches!(e.kind, MkvErrorKind::Truncated | MkvErrorKind::Missing(_)),
        "{e}"
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    assert_eq!(
        parse_mkv(b"definitely not matroska").unwrap_err().kind,
        MkvErrorKind::NotMatroska
    );
    assert!(matches!(
        parse_mkv(&header("avi-ish")).unwrap_err().kind,
        MkvErrorKind::DocType(_)
    ));
    // A Tracks element claiming more bytes than the segment holds.
    let mut seg = vec![0x16, 0x54, 0xAE, 0x6B, 0x01, 0xFF, 0, 0, 0, 0, 0, 0];
    seg.extend(video_track(1));
    // (A Void element after the segment: its end is not the file's.)
    let f = [
        header("matroska"),
        el(ids::SEGMENT, &seg),
        el(0xEC, &[0; 4]),
    ]
    .concat();
    assert_eq!(parse_mkv(&f).unwrap_err().kind, MkvErrorKind::SizeTooLarge);
    // The same past the end of the file (the segment's size unknown).
    let f = [header("matroska"), unknown(ids::SEGMENT, &seg)].concat();
    assert_eq!(parse_mkv(&f).unwrap_err().kind, MkvErrorKind::Truncated);
    // No playable track.
    let f = file(&[track(1, 1, "V_AV1", &[], &[])], &[]);
    assert_eq!(
        parse_mkv(&f).unwrap_err().kind,
        MkvErrorKind::NoPlayableTrack
    );
    // A fuzz run over every prefix and some byte flips: no panic.
    let f = file(
        &[video_track(1), aac_track(2, None)],
        &[cluster(
            0,
            &[
                simple(1, 0, 0x80, b"key"),
                simple(2, 0, 0x86, &[3, 1, 1, 2, 2, 2]),
            ],
        )],
    );
    for cut in 0..f.len() {
        fuzz_parse_mkv(&f[..cut]);
    }
    for i in 0..f.len() {
        let mut g = f.clone();
        g[i] ^= 0xFF;
        fuzz_parse_mkv(&g);
    }
}

fn g711_track(number: u64, private: &[u8]) -> Vec<u8> {
    track(number, 2, "A_MS/ACM", private, &[])
}

/// G.711 WAVEFORMATEX: tag, channels, rate, avg bytes/s, block align, bits, cbSize.
fn wfx(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend(channels.to_le_bytes());
    v.extend(rate.to_le_bytes());
    v.extend((rate * u32::from(channels)).to_le_bytes());
    v.extend(channels.to_le_bytes());
    v.extend(bits.to_le_bytes());
    v.extend(0u16.to_le_bytes());
    v
}

/// `A_MS/ACM` with a G.711 WAVEFORMATEX becomes a G.711 track whose blocks are split into
/// 20 ms samples timed on the 8 kHz clock from each block's time; other format tags, short
/// or lying CodecPrivates are skipped with the reason.
#[test]
fn g711_blocks_become_20ms_samples() {
    let block0: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
    let block1: Vec<u8> = (0..170u32).map(|i| (i * 3) as u8).collect();
    let f = file(
        &[
            g711_track(1, &wfx(7, 1, 8000, 8)),
            g711_track(2, &wfx(1, 1, 8000, 16)),
            g711_track(3, &wfx(7, 1, 8000, 8)[..15]),
            g711_track(4, &wfx(6, 0, 8000, 8)),
            g711_track(5, &wfx(6, 1, 8000, 16)),
        ],
        // The second block at 55 ms: not on the 20 ms grid, its pieces follow its own time.
        &[cluster(
            10,
            &[simple(1, 0, 0x80, &block0), simple(1, 55, 0x80, &block1)],
        )],
    );
    let mkv = parse_mkv(&f).unwrap();
    assert_eq!(mkv.index.skipped.len(), 4, "{:?}", mkv.index.skipped);
    for (n, why) in [
        (2, "format tag 0x0001"),
        (3, "15 bytes is not a WAVEFORMATEX"),
        (4, "0 channels"),
        (5, "16 bits"),
    ] {
        assert!(
            mkv.index
                .skipped
                .iter()
                .any(|s| s.starts_with(&format!("track {n}:")) && s.contains(why)),
            "{why}: {:?}",
            mkv.index.skipped
        );
    }
    let t = &mkv.index.tracks[0];
    assert_eq!((t.kind, t.timescale), (TrackKind::Audio, 8000));
    let got: Vec<_> = t
        .samples
        .iter()
        .map(|s| {
            (
                &f[s.offset as usize..][..s.len as usize],
                t.pts_ns(s),
                s.sync,
            )
        })
        .collect();
    let want = vec![
        (&block0[..160], 0, true),
        (&block0[160..320], 160, true),
        (&block0[320..], 320, true),
        (&block1[..160], 440, true),
        (&block1[160..], 600, true),
    ];
    assert_eq!(got, want);
}

/// The fuzz seeds (ffmpeg's files, heads of laced and unknown-size ones) index, and thousands
/// of pseudo-random mutations of them never panic nor yield a sample outside the input.
#[test]
fn seeds_index_and_mutations_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/mkv_index");
    let mut n = 0;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let mkv = parse_mkv(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!mkv.index.tracks.is_empty());
        for _ in 0..300 {
            let mut m = data.clone();
            for _ in 0..1 + next() % 8 {
                let i = (next() % m.len() as u64) as usize;
                m[i] = next() as u8;
            }
            let cut = m.len() - (next() % 64) as usize;
            fuzz_parse_mkv(&m[..cut]);
        }
        n += 1;
    }
    assert!(n >= 5, "seeds in {}", dir.display());
}
