//! Movie fragments built box by box, each case exercising one rule of ISO/IEC 14496-12 §8.8
//! (where a sample's bytes are, where its defaults come from, what its decode time is), and
//! hostile fragments that must fail with a typed error, plus mutations of a real fragmented
//! file (the B-frame clip through the HLS writer, so its `trun`s carry signed composition
//! offsets) that must never panic. Agreement with an
//! independent reader (ffprobe) is in `tests/fmp4_read.rs`.

use super::super::parse_mp4;
use crate::media::mp4::{fuzz_parse_mp4, Mp4ErrorKind};
use crate::media::track::{MediaIndex, Sample};

const SAMPLE: &[u8] = include_bytes!("../../../../tests/media/sample.mp4");
/// H.264 High with B-frames (`ctts`), 4 s: its fragments' `trun`s hold composition offsets.
const BFRAMES: &[u8] = include_bytes!("../../../../tests/media/bframes.mp4");

fn boxed(typ: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(typ);
    v.extend_from_slice(body);
    v
}

fn full(typ: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = (u32::from(version) << 24 | flags).to_be_bytes().to_vec();
    b.extend_from_slice(body);
    boxed(typ, &b)
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// The init segment of the bundled sample as the HLS writer builds it: a `moov` with two
/// tracks (1 video at 12800 Hz, 2 audio) whose tables are empty, and `mvex`.
fn init() -> Vec<u8> {
    let index = parse_mp4(SAMPLE).expect("sample parses");
    crate::hls::init_segment(&index).expect("init segment")
}

/// Replaces the `mvex` of `init` with one holding `trex` boxes with these defaults
/// (track, duration, size, flags).
fn with_trex(init: &[u8], trex: &[(u32, u32, u32, u32)]) -> Vec<u8> {
    let mvex_at = init.windows(4).position(|w| w == b"mvex").expect("mvex") - 4;
    let moov_at = init.windows(4).position(|w| w == b"moov").expect("moov") - 4;
    let mut body = Vec::new();
    for &(id, d, s, f) in trex {
        body.extend(full(b"trex", 0, 0, &words(&[id, 1, d, s, f])));
    }
    let mut out = init[..mvex_at].to_vec();
    out.extend(boxed(b"mvex", &body));
    // mvex is moov's last child: fix moov's size.
    let moov_size = (out.len() - moov_at) as u32;
    out[moov_at..moov_at + 4].copy_from_slice(&moov_size.to_be_bytes());
    out
}

fn parse(data: &[u8]) -> Result<MediaIndex, Mp4ErrorKind> {
    parse_mp4(data).map_err(|e| e.kind)
}

fn samples(i: &MediaIndex, track_id: u32) -> Vec<Sample> {
    i.tracks
        .iter()
        .find(|t| t.track_id == track_id)
        .map(|t| t.samples.clone())
        .unwrap_or_default()
}

fn s(offset: u64, len: u32, dts: u64, cts_offset: i32, sync: bool) -> Sample {
    Sample {
        offset,
        len,
        dts,
        cts_offset,
        sync,
    }
}

/// A video fragment with default-base-is-moof, a tfdt v1 and a trun with every per-sample
/// field (v1, a negative offset), then an audio traf whose sizes and durations come from
/// tfhd defaults and whose flags come from trex.
#[test]
fn per_sample_fields_and_defaults() {
    let file0 = with_trex(&init(), &[(1, 0, 0, 0x0101_0000), (2, 0, 0, 0x0200_0000)]);
    let video_trun = full(
        b"trun",
        1,
        0x0f01,
        &words(&[
            2,
            0, // data offset, patched below
            512,
            10,
            0x0200_0000,
            1024,
            512,
            20,
            0x0101_0000,
            (-512i32) as u32,
        ]),
    );
    let video = boxed(
        b"traf",
        &[
            full(b"tfhd", 0, 0x02_0000, &words(&[1])),
            full(b"tfdt", 1, 0, &[0, 0, 0, 0, 0, 0, 0x10, 0]),
            video_trun,
        ]
        .concat(),
    );
    let audio = boxed(
        b"traf",
        &[
            full(b"tfhd", 0, 0x02_0018, &words(&[2, 1024, 7])),
            full(b"tfdt", 0, 0, &words(&[48_000])),
            full(b"trun", 0, 0x0001, &words(&[3, 0])),
        ]
        .concat(),
    );
    let mut moof = boxed(
        b"moof",
        &[full(b"mfhd", 0, 0, &words(&[1])), video, audio].concat(),
    );
    let moof_len = moof.len() as u32;
    // Patch the data offsets: video data right after the mdat header, audio after it.
    let trun_at = moof.windows(4).position(|w| w == b"trun").expect("trun") + 12;
    moof[trun_at..trun_at + 4].copy_from_slice(&(moof_len + 8).to_be_bytes());
    let trun2 = moof.windows(4).rposition(|w| w == b"trun").expect("trun") + 12;
    moof[trun2..trun2 + 4].copy_from_slice(&(moof_len + 8 + 30).to_be_bytes());
    let moof_at = file0.len() as u64;
    let data = moof_at + u64::from(moof_len) + 8;
    let mut file = file0;
    file.extend(moof);
    file.extend(boxed(b"mdat", &[0xaa; 51]));
    let i = parse(&file).expect("valid fragment");
    assert_eq!(
        samples(&i, 1),
        vec![
            s(data, 10, 4096, 1024, true),
            s(data + 10, 20, 4608, -512, false)
        ]
    );
    assert_eq!(
        samples(&i, 2),
        vec![
            s(data + 30, 7, 48_000, 0, true),
            s(data + 37, 7, 49_024, 0, true),
            s(data + 44, 7, 50_048, 0, true)
        ]
    );
}

/// Without base-data-offset or default-base-is-moof, the first traf's base is the moof and
/// the second's is where the first's data ended (§8.8.7.1); a trun without a data offset
/// continues after the previous run (§8.8.8.3); first-sample-flags apply to sample 0 only;
/// a traf without tfdt continues the track's decode time; an explicit base-data-offset is
/// absolute.
#[test]
fn implicit_bases_and_continuing_runs() {
    let file0 = with_trex(&init(), &[(1, 100, 4, 0x0101_0000), (2, 1024, 3, 0)]);
    let frag = |base: Option<u64>, offset: u32| {
        let tfhd = match base {
            Some(b) => full(
                b"tfhd",
                0,
                0x01,
                &[words(&[1]), b.to_be_bytes().to_vec()].concat(),
            ),
            None => full(b"tfhd", 0, 0, &words(&[1])),
        };
        let video = boxed(
            b"traf",
            &[
                tfhd,
                full(b"trun", 0, 0x0005, &words(&[2, offset, 0x0200_0000])),
                full(b"trun", 0, 0, &words(&[1])),
            ]
            .concat(),
        );
        let audio = boxed(
            b"traf",
            &[
                full(b"tfhd", 0, 0, &words(&[2])),
                full(b"trun", 0, 0, &words(&[2])),
            ]
            .concat(),
        );
        boxed(
            b"moof",
            &[full(b"mfhd", 0, 0, &words(&[1])), video, audio].concat(),
        )
    };
    let moof_len = frag(None, 0).len() as u32;
    let moof_at = file0.len() as u64;
    let data = moof_at + u64::from(moof_len) + 8;
    let mut file = file0;
    file.extend(frag(None, moof_len + 8));
    file.extend(boxed(b"mdat", &[0; 18]));
    // Second fragment: absolute base, data offset 0 from it.
    let second_len = frag(Some(0), 0).len() as u64;
    let second_data = file.len() as u64 + second_len + 8;
    file.extend(frag(Some(second_data), 0));
    file.extend(boxed(b"mdat", &[0; 18]));
    let i = parse(&file).expect("valid fragments");
    assert_eq!(
        samples(&i, 1),
        vec![
            s(data, 4, 0, 0, true),
            s(data + 4, 4, 100, 0, false),
            s(data + 8, 4, 200, 0, false),
            s(second_data, 4, 300, 0, true),
            s(second_data + 4, 4, 400, 0, false),
            s(second_data + 8, 4, 500, 0, false),
        ]
    );
    // Audio: the second traf of the moof starts where the video's data ended (+12); in the
    // second moof the video's base is explicit, and audio still follows the video data.
    assert_eq!(
        samples(&i, 2),
        vec![
            s(data + 12, 3, 0, 0, true),
            s(data + 15, 3, 1024, 0, true),
            s(second_data + 12, 3, 2048, 0, true),
            s(second_data + 15, 3, 3072, 0, true),
        ]
    );
}

/// One moof with a video trun of `count` samples of `size` bytes (every field defaulted but
/// the count and data offset) and the given tfdt, then its mdat of `mdat_len` bytes.
fn simple_fragment(file: &mut Vec<u8>, tfdt: u64, count: u32, size: u32, mdat_len: usize) {
    let traf = |off: u32| {
        boxed(
            b"traf",
            &[
                full(b"tfhd", 0, 0x02_0010, &words(&[1, size])),
                full(b"tfdt", 1, 0, &tfdt.to_be_bytes()),
                full(b"trun", 0, 0x0001, &words(&[count, off])),
            ]
            .concat(),
        )
    };
    let len = boxed(b"moof", &traf(0)).len() as u32 + 16;
    file.extend(boxed(
        b"moof",
        &[full(b"mfhd", 0, 0, &words(&[1])), traf(len + 8)].concat(),
    ));
    file.extend(boxed(b"mdat", &vec![0; mdat_len]));
}

#[test]
fn hostile_fragments_fail_with_typed_errors() {
    let base = with_trex(&init(), &[(1, 512, 0, 0), (2, 1024, 0, 0)]);
    // Data past the end in a fragment that is not the last: an error.
    let mut f = base.clone();
    simple_fragment(&mut f, 0, 2, 1_000_000, 5);
    simple_fragment(&mut f, 1024, 1, 10, 10);
    assert_eq!(parse(&f).err(), Some(Mp4ErrorKind::SampleOutOfRange));
    // The same as the last fragment: left out, and then no track has samples.
    let mut f = base.clone();
    simple_fragment(&mut f, 0, 2, 1_000_000, 5);
    assert_eq!(parse(&f).err(), Some(Mp4ErrorKind::NoPlayableTrack));
    // A tfdt that goes back.
    let mut f = base.clone();
    simple_fragment(&mut f, 5000, 1, 10, 10);
    simple_fragment(&mut f, 100, 1, 10, 10);
    assert!(matches!(parse(&f), Err(Mp4ErrorKind::Inconsistent(_))));
    // Billions of defaulted zero-size samples: over the budget, not allocated.
    let mut f = base.clone();
    simple_fragment(&mut f, 0, u32::MAX, 0, 0);
    simple_fragment(&mut f, 0, 1, 1, 1);
    assert_eq!(parse(&f).err(), Some(Mp4ErrorKind::SampleOutOfRange));
    // A per-sample table longer than the box.
    let mut f = base.clone();
    f.extend(boxed(
        b"moof",
        &boxed(
            b"traf",
            &[
                full(b"tfhd", 0, 0x02_0000, &words(&[1])),
                full(b"trun", 0, 0x0200, &words(&[1000, 4])),
            ]
            .concat(),
        ),
    ));
    assert_eq!(parse(&f).err(), Some(Mp4ErrorKind::Truncated));
    // A traf for a track the moov does not have.
    let mut f = base.clone();
    f.extend(boxed(
        b"moof",
        &boxed(b"traf", &full(b"tfhd", 0, 0, &words(&[9]))),
    ));
    assert!(matches!(parse(&f), Err(Mp4ErrorKind::Inconsistent(_))));
    // Fragments in a file whose moov has no mvex.
    let init = init();
    let mvex_at = init.windows(4).position(|w| w == b"mvex").expect("mvex") - 4;
    let mut f = init.clone();
    f[mvex_at + 4..mvex_at + 8].copy_from_slice(b"free");
    simple_fragment(&mut f, 0, 1, 1, 1);
    assert!(matches!(parse(&f), Err(Mp4ErrorKind::MissingBox(_))));
    // A data offset pointing before the file.
    let mut f = base.clone();
    f.extend(boxed(
        b"moof",
        &boxed(
            b"traf",
            &[
                full(b"tfhd", 0, 0x02_0010, &words(&[1, 1])),
                full(b"trun", 0, 0x0001, &words(&[1, (-1_000_000i32) as u32])),
            ]
            .concat(),
        ),
    ));
    simple_fragment(&mut f, 0, 1, 1, 1);
    assert_eq!(parse(&f).err(), Some(Mp4ErrorKind::SampleOutOfRange));
    // A non-fragmented file still fails on a truncated last box.
    assert_eq!(
        parse(&SAMPLE[..SAMPLE.len() - 1]).err(),
        Some(Mp4ErrorKind::BoxTooLarge)
    );
}

/// The B-frame clip as the HLS writer fragments it (init + every VOD fragment).
fn hls_file() -> Vec<u8> {
    let index = parse_mp4(BFRAMES).expect("clip parses");
    let first = crate::hls::fmp4::first_served_samples(&index);
    let seg = crate::hls::segment_file(&index, &first);
    let mut file = crate::hls::init_segment(&index).expect("init");
    for msn in 0..seg.segments.len() as u64 {
        let frag = seg.vod_fragment(&index, msn, None).expect("fragment");
        file.extend(frag.to_vec(BFRAMES));
    }
    file
}

/// Any mutation of the fragments' boxes (1–4 bytes flipped or set to 0 or 0xff) parses or
/// fails with an error; it never panics. Some mutations hit sample data, so some parse.
#[test]
fn mutations_of_moof_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::Cell;

    let file = hls_file();
    let moof_at = file.windows(4).position(|w| w == b"moof").expect("moof") - 4;
    // Mutate only inside the first two fragments' boxes, where the moof/traf/trun bytes are.
    let at = moof_at..moof_at + 4096;
    let mutation = prop_oneof![
        2 => (at.clone(), 0u8..8).prop_map(|(at, bit)| (at, Some(bit), 0u8)),
        1 => at.clone().prop_map(|at| (at, None, 0xff)),
        1 => at.prop_map(|at| (at, None, 0)),
    ];
    let ok = Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(mutation, 1..=4), |mutations| {
        let mut data = file.clone();
        for (at, bit, value) in mutations {
            data[at] = match bit {
                Some(b) => data[at] ^ (1 << b),
                None => value,
            };
        }
        fuzz_parse_mp4(&data);
        if parse_mp4(&data).is_ok() {
            ok.set(ok.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(ok.get() > 0);
}

/// Every prefix of a fragmented file parses or fails with an error (a file being written is
/// read at any length), and once the first fragment is complete every prefix parses.
#[test]
fn every_prefix_of_a_fragmented_file_parses_or_fails_cleanly() {
    let file = hls_file();
    let boxes = {
        let mut v = Vec::new();
        let mut pos = 0;
        while pos + 8 <= file.len() {
            let size = u32::from_be_bytes(file[pos..pos + 4].try_into().expect("4 bytes"));
            v.push(pos + size as usize);
            pos += size as usize;
        }
        v
    };
    // ftyp, moov, moof, mdat: the first fragment ends with the fourth box.
    let first_fragment_end = boxes[3];
    let whole = parse_mp4(&file).expect("whole file");
    let total: usize = whole.tracks.iter().map(|t| t.samples.len()).sum();
    let mut last = 0;
    for cut in (0..=file.len()).step_by(997).chain([file.len()]) {
        let r = parse_mp4(&file[..cut]);
        if cut >= first_fragment_end {
            let i = r.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let n: usize = i.tracks.iter().map(|t| t.samples.len()).sum();
            assert!(n >= last && n <= total, "cut at {cut}: {n} samples");
            last = n;
        }
    }
    assert_eq!(last, total);
}
