use super::*;
use crate::media::track::Codec;
use crate::packetize::{payload_bytes, Packetizer};

pub(crate) const SPS: [u8; 8] = [0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0];
pub(crate) const PPS: [u8; 4] = [0x68, 0xeb, 0xe3, 0xcb];

pub(crate) fn config(nal_length_size: u8) -> H264Config {
    H264Config {
        profile_idc: 0x64,
        profile_compat: 0x00,
        level_idc: 0x1e,
        nal_length_size,
        sps: vec![SPS.to_vec()],
        pps: vec![PPS.to_vec()],
        width: 640,
        height: 360,
    }
}

/// A NAL of `len` bytes with header byte `hdr` and a recognisable body.
fn nal(hdr: u8, len: usize) -> Vec<u8> {
    let mut v = vec![hdr];
    v.extend((1..len).map(|i| (i * 7 + 3) as u8));
    v.truncate(len);
    v
}

/// Lays NALs out as one length-prefixed sample after 5 junk bytes; returns (media, sample).
fn layout(nals: &[Vec<u8>], nls: u8, sync: bool) -> (Vec<u8>, Sample) {
    let mut media = vec![0xaa; 5];
    for n in nals {
        let len = (n.len() as u64).to_be_bytes();
        media.extend_from_slice(&len[8 - usize::from(nls)..]);
        media.extend_from_slice(n);
    }
    let sample = Sample {
        offset: 5,
        len: (media.len() - 5) as u32,
        dts: 0,
        cts_offset: 0,
        sync,
    };
    media.extend_from_slice(&[0xbb; 3]);
    (media, sample)
}

fn run(
    p: &mut Packetizer,
    media: &[u8],
    sample: Sample,
) -> Result<Vec<PacketSpec>, PacketizeError> {
    p.begin_sample(sample);
    let mut out = Vec::new();
    while let Some(spec) = p.next_packet(media)? {
        out.push(spec);
        assert!(out.len() < 1_000_000);
    }
    Ok(out)
}

fn payloads(p: &Packetizer, media: &[u8], specs: &[PacketSpec]) -> Vec<Vec<u8>> {
    specs
        .iter()
        .map(|s| payload_bytes(s, media, p.parameter_sets(), &[]))
        .collect()
}

/// Test depacketizer: single NAL / STAP-A / FU-A payloads back to Annex B.
pub(crate) fn depacketize(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_fu = false;
    for p in payloads {
        let t = p[0] & 0x1f;
        match t {
            1..=23 => {
                assert!(!in_fu, "single NAL inside an FU-A");
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(p);
            }
            NAL_TYPE_STAP_A => {
                assert!(!in_fu);
                let mut rest = &p[1..];
                while !rest.is_empty() {
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.extend_from_slice(&rest[2..2 + n]);
                    rest = &rest[2 + n..];
                }
            }
            NAL_TYPE_FU_A => {
                let (s, e) = (p[1] & 0x80 != 0, p[1] & 0x40 != 0);
                assert!(!(s && e), "S and E both set");
                assert_eq!(p[1] & 0x20, 0, "R bit set");
                if s {
                    assert!(!in_fu, "S inside FU");
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.push((p[0] & 0xe0) | (p[1] & 0x1f));
                    in_fu = true;
                } else {
                    assert!(in_fu, "continuation without start");
                }
                out.extend_from_slice(&p[2..]);
                if e {
                    in_fu = false;
                }
            }
            _ => panic!("unexpected payload type {t}"),
        }
    }
    assert!(!in_fu, "unterminated FU-A");
    out
}

fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n);
    }
    out
}

fn packetizer(nls: u8, budget: usize) -> Packetizer {
    Packetizer::new(&Codec::H264(config(nls)), budget).unwrap()
}

/// Checks budget, marker-on-last-only and FU-A equal sizes; returns payloads.
fn check(p: &Packetizer, media: &[u8], specs: &[PacketSpec], budget: usize) -> Vec<Vec<u8>> {
    let pls = payloads(p, media, specs);
    for (i, (s, pl)) in specs.iter().zip(&pls).enumerate() {
        assert!(pl.len() <= budget, "payload {} > budget {budget}", pl.len());
        assert_eq!(pl.len(), s.payload_len());
        assert_eq!(s.marker, i + 1 == specs.len(), "marker only on last packet");
    }
    // Equal-sized FU-A runs: every fragment but the run's last has the same size.
    let mut i = 0;
    while i < pls.len() {
        if pls[i][0] & 0x1f == NAL_TYPE_FU_A {
            let mut j = i;
            while pls[j][1] & 0x40 == 0 {
                j += 1;
            }
            let first = pls[i].len();
            for pl in &pls[i..j] {
                assert_eq!(pl.len(), first, "unequal FU-A fragment");
            }
            assert!(pls[j].len() <= first);
            assert!(j > i, "FU-A with one fragment");
            i = j + 1;
        } else {
            i += 1;
        }
    }
    pls
}

#[test]
fn single_nal() {
    let n = nal(0x41, 100);
    let (media, sample) = layout(std::slice::from_ref(&n), 4, false);
    let mut p = packetizer(4, 1200);
    let specs = run(&mut p, &media, sample).unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].body_offset, 9);
    assert_eq!(specs[0].body_len, 100);
    assert_eq!(specs[0].payload_header_len, 0);
    assert_eq!(specs[0].body_source, BodySource::Media);
    assert!(specs[0].marker);
    assert_eq!(payload_bytes(&specs[0], &media, &[], &[]), n);
    // The sample is complete and stays complete.
    assert_eq!(p.next_packet(&media), Ok(None));
}

#[test]
fn multiple_nals_marker_on_last() {
    let nals = vec![nal(0x06, 20), nal(0x41, 300), nal(0x41, 50)];
    let (media, sample) = layout(&nals, 4, false);
    let mut p = packetizer(4, 1200);
    let specs = run(&mut p, &media, sample).unwrap();
    assert_eq!(specs.len(), 3);
    let pls = check(&p, &media, &specs, 1200);
    let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
    assert_eq!(depacketize(&pls), annex_b(&refs));
}

#[test]
fn fu_a_equal_split_at_budget_boundaries() {
    for budget in [64usize, 65, 100, 1200, 1400] {
        let b2 = budget - 2;
        for len in [
            budget - 1,
            budget,
            budget + 1,
            budget + 2,
            2 * b2,
            2 * b2 + 1,
            2 * b2 + 2,
            3 * b2 + 1,
            2 * budget,
            10 * budget + 3,
            65_000,
        ] {
            let n = nal(0x65, len);
            let (media, sample) = layout(std::slice::from_ref(&n), 4, false);
            let mut p = packetizer(4, budget);
            let specs = run(&mut p, &media, sample).unwrap();
            let pls = check(&p, &media, &specs, budget);
            if len <= budget {
                assert_eq!(specs.len(), 1, "len {len} budget {budget}");
                assert_eq!(specs[0].payload_header_len, 0);
            } else {
                let rest = len - 1;
                let expect_n = rest.div_ceil(b2);
                assert_eq!(specs.len(), expect_n, "len {len} budget {budget}");
                // FU indicator keeps F|NRI, FU header S/E and the original type.
                assert_eq!(pls[0][0], 0x60 | 28);
                assert_eq!(pls[0][1], 0x80 | 5);
                assert_eq!(pls[pls.len() - 1][1], 0x40 | 5);
                for pl in &pls[1..pls.len() - 1] {
                    assert_eq!(pl[1], 5);
                }
            }
            assert_eq!(depacketize(&pls), annex_b(&[&n]));
        }
    }
}

#[test]
fn sync_sample_gets_stap_a_first() {
    let mut cfg = config(4);
    cfg.sps = vec![vec![0x47, 1, 2, 3]]; // NRI 2
    cfg.pps = vec![vec![0x28, 9], vec![0x28, 8, 7]]; // NRI 1
    let mut p = Packetizer::new(&Codec::H264(cfg), 1200).unwrap();
    assert_eq!(
        p.parameter_sets(),
        &[
            0x40 | 24,
            0,
            4,
            0x47,
            1,
            2,
            3,
            0,
            2,
            0x28,
            9,
            0,
            3,
            0x28,
            8,
            7
        ]
    );
    let nals = vec![nal(0x65, 2000)];
    let (media, sample) = layout(&nals, 4, true);
    let specs = run(&mut p, &media, sample).unwrap();
    assert_eq!(specs[0].body_source, BodySource::ParameterSets);
    assert_eq!(specs[0].body_offset, 0);
    assert_eq!(specs[0].body_len as usize, p.parameter_sets().len());
    assert_eq!(specs[0].payload_header_len, 0);
    assert!(!specs[0].marker);
    let pls = check(&p, &media, &specs, 1200);
    let expected = annex_b(&[&[0x47, 1, 2, 3], &[0x28, 9], &[0x28, 8, 7], &nals[0]]);
    assert_eq!(depacketize(&pls), expected);
    // A non-sync sample gets no STAP-A.
    let (media, sample) = layout(&nals, 4, false);
    let specs = run(&mut p, &media, sample).unwrap();
    assert!(specs.iter().all(|s| s.body_source == BodySource::Media));
}

#[test]
fn stap_a_nri_and_f_bit() {
    let stap = build_stap_a([&[0x80u8 | 0x07, 1][..], &[0x68, 2][..]].into_iter()).unwrap();
    assert_eq!(stap[0], 0x80 | 0x60 | 24);
    let stap = build_stap_a([&[0x07u8][..], &[0x08][..]].into_iter()).unwrap();
    assert_eq!(stap[0], 24);
    assert!(build_stap_a(std::iter::empty()).unwrap().is_empty());
}

#[test]
fn aud_skipped_keeps_sei_and_inband_parameter_sets() {
    let aud = vec![0x09, 0xf0];
    let nals = vec![
        aud.clone(),
        SPS.to_vec(),
        PPS.to_vec(),
        nal(0x06, 10),
        nal(0x65, 500),
        aud.clone(),
    ];
    let (media, sample) = layout(&nals, 4, false);
    let mut p = packetizer(4, 1200);
    let specs = run(&mut p, &media, sample).unwrap();
    assert_eq!(specs.len(), 4);
    // The marker lands on the slice even though a trailing AUD follows it.
    let pls = check(&p, &media, &specs, 1200);
    assert_eq!(
        depacketize(&pls),
        annex_b(&[&nals[1], &nals[2], &nals[3], &nals[4]])
    );
}

#[test]
fn sync_sample_of_only_aud_sends_stap_a_with_marker() {
    let (media, sample) = layout(&[vec![0x09, 0x10], vec![]], 2, true);
    let mut p = packetizer(2, 1200);
    let specs = run(&mut p, &media, sample).unwrap();
    assert_eq!(specs.len(), 1);
    assert!(specs[0].marker);
    let (media, sample) = layout(&[vec![0x09, 0x10]], 2, false);
    assert!(run(&mut p, &media, sample).unwrap().is_empty());
}

#[test]
fn zero_length_nals_skipped() {
    let nals = vec![vec![], nal(0x41, 30), vec![], vec![]];
    let (media, sample) = layout(&nals, 4, false);
    let mut p = packetizer(4, 1200);
    let specs = run(&mut p, &media, sample).unwrap();
    assert_eq!(specs.len(), 1);
    assert!(specs[0].marker);
}

#[test]
fn corrupt_lengths_error_not_panic() {
    let mut p = packetizer(4, 1200);
    // Length past the sample end (but inside the media).
    let (mut media, sample) = layout(&[nal(0x41, 30)], 4, false);
    media[8] = 31;
    assert_eq!(
        run(&mut p, &media, sample),
        Err(PacketizeError::NalLengthPastSample)
    );
    assert_eq!(p.next_packet(&media), Ok(None));
    // Huge length.
    media[5..9].copy_from_slice(&[0xff; 4]);
    assert_eq!(
        run(&mut p, &media, sample),
        Err(PacketizeError::NalLengthPastSample)
    );
    // Corruption in a later NAL: nothing of the sample is sent.
    let (mut media, sample) = layout(&[nal(0x41, 30), nal(0x41, 30)], 4, true);
    media[5 + 34 + 3] = 200;
    p.begin_sample(sample);
    assert_eq!(
        p.next_packet(&media),
        Err(PacketizeError::NalLengthPastSample)
    );
    assert_eq!(p.next_packet(&media), Ok(None));
    // Sample ends inside a length prefix.
    let (media, mut sample) = layout(&[nal(0x41, 30)], 4, false);
    sample.len += 2;
    assert_eq!(
        run(&mut p, &media, sample),
        Err(PacketizeError::TruncatedLengthPrefix)
    );
    // Sample outside the media.
    let (media, mut sample) = layout(&[nal(0x41, 30)], 4, false);
    sample.offset = media.len() as u64;
    assert_eq!(
        run(&mut p, &media, sample),
        Err(PacketizeError::SampleOutOfRange)
    );
    sample.offset = u64::MAX;
    assert_eq!(
        run(&mut p, &media, sample),
        Err(PacketizeError::SampleOutOfRange)
    );
    // No sample begun.
    let mut fresh = packetizer(4, 1200);
    assert_eq!(fresh.next_packet(&media), Ok(None));
}

#[test]
fn begin_sample_abandons_previous() {
    let (media, sample) = layout(&[nal(0x65, 5000)], 4, false);
    let mut p = packetizer(4, 1200);
    p.begin_sample(sample);
    assert!(p.next_packet(&media).unwrap().is_some());
    let (media2, sample2) = layout(&[nal(0x41, 40)], 4, false);
    let specs = run(&mut p, &media2, sample2).unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].body_len, 40);
}

#[test]
fn nal_length_sizes_1_2_4() {
    for nls in [1u8, 2, 4] {
        let max = if nls == 1 { 255 } else { 3000 };
        let nals = vec![nal(0x06, 7), nal(0x41, max), nal(0x01, 1)];
        let (media, sample) = layout(&nals, nls, true);
        let mut p = packetizer(nls, 200);
        let specs = run(&mut p, &media, sample).unwrap();
        let pls = check(&p, &media, &specs, 200);
        let refs: Vec<&[u8]> = [&SPS[..], &PPS[..]]
            .into_iter()
            .chain(nals.iter().map(Vec::as_slice))
            .collect();
        assert_eq!(depacketize(&pls), annex_b(&refs), "nls {nls}");
    }
}

#[test]
fn new_rejects_unusable_config() {
    let c = |cfg: H264Config, b| Packetizer::new(&Codec::H264(cfg), b).map(|_| ());
    assert_eq!(c(config(4), 63), Err(PacketizeError::BudgetTooSmall));
    assert_eq!(
        c(config(3), 1200),
        Err(PacketizeError::InvalidNalLengthSize)
    );
    assert_eq!(
        c(config(0), 1200),
        Err(PacketizeError::InvalidNalLengthSize)
    );
    let mut cfg = config(4);
    cfg.pps.push(vec![]);
    assert_eq!(c(cfg, 1200), Err(PacketizeError::EmptyNal));
    let mut cfg = config(4);
    cfg.sps = vec![vec![0x67; 1300]];
    assert_eq!(
        c(cfg.clone(), 1200),
        Err(PacketizeError::ParameterSetsTooLarge)
    );
    assert_eq!(c(cfg, 1400), Ok(()));
    let mut cfg = config(4);
    cfg.sps = vec![vec![0x67; 70_000]];
    assert_eq!(c(cfg, 65_000), Err(PacketizeError::ParameterSetsTooLarge));
    // No parameter sets: no STAP-A, sync samples start with their first NAL.
    let mut cfg = config(4);
    cfg.sps.clear();
    cfg.pps.clear();
    let mut p = Packetizer::new(&Codec::H264(cfg), 1200).unwrap();
    assert!(p.parameter_sets().is_empty());
    let (media, sample) = layout(&[nal(0x65, 10)], 4, true);
    assert_eq!(run(&mut p, &media, sample).unwrap().len(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any NAL counts, sizes, header types, payload budgets and length-prefix sizes
    /// reassemble exactly (NAL lengths stay below 256 with 1-byte prefixes).
    #[test]
    fn random_nal_sizes_reassemble(
        nls in proptest::sample::select(vec![1u8, 2, 4]),
        budget in 64usize..1564,
        sync in proptest::prelude::any::<bool>(),
        shapes in proptest::collection::vec((0usize..6000, 0usize..6), 1..=6),
    ) {
        let max_len = if nls == 1 { 256 } else { 6000 };
        let nals: Vec<Vec<u8>> = shapes
            .iter()
            .map(|&(len, hdr)| nal([0x09u8, 0x06, 0x41, 0x65, 0x01, 0x21][hdr], len % max_len))
            .collect();
        let (media, sample) = layout(&nals, nls, sync);
        let mut p = packetizer(nls, budget);
        let specs = run(&mut p, &media, sample).unwrap();
        let pls = check(&p, &media, &specs, budget);
        let mut expected: Vec<&[u8]> = Vec::new();
        if sync {
            expected.extend([&SPS[..], &PPS[..]]);
        }
        expected.extend(
            nals.iter()
                .filter(|n| !n.is_empty() && n[0] & 0x1f != NAL_TYPE_AUD)
                .map(Vec::as_slice),
        );
        proptest::prop_assert_eq!(depacketize(&pls), annex_b(&expected));
    }
}
