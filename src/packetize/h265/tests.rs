use super::*;
use crate::packetize::{body_slices, payload_bytes};

const VPS: &[u8] = &[0x40, 0x01, 0x0c, 0x01];
const SPS: &[u8] = &[0x42, 0x01, 0x01, 0x01, 0x60];
const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72];

fn config(nal_length_size: u8) -> H265Config {
    H265Config {
        profile_space: 0,
        tier_flag: false,
        profile_idc: 1,
        profile_compat: 0x6000_0000,
        constraint_flags: [0x90, 0, 0, 0, 0, 0],
        level_idc: 63,
        nal_length_size,
        vps: vec![VPS.to_vec()],
        sps: vec![SPS.to_vec()],
        pps: vec![PPS.to_vec()],
        width: 640,
        height: 360,
    }
}

/// A NAL unit of `typ` (TID 1, LayerId 0) and `len` bytes in all.
fn nal(typ: u8, len: usize) -> Vec<u8> {
    let mut v = vec![typ << 1, 0x01];
    v.extend((0..len.saturating_sub(2)).map(|i| (i % 251) as u8));
    v.truncate(len);
    v
}

/// Media bytes (one junk byte first) holding one sample of `nals` with `n`-byte prefixes.
fn sample_of(nals: &[Vec<u8>], n: u8, sync: bool) -> (Vec<u8>, Sample) {
    let mut media = vec![0xaa];
    for u in nals {
        let len = (u.len() as u32).to_be_bytes();
        media.extend_from_slice(&len[4 - usize::from(n)..]);
        media.extend_from_slice(u);
    }
    let sample = Sample {
        offset: 1,
        len: (media.len() - 1) as u32,
        dts: 0,
        cts_offset: 0,
        sync,
    };
    (media, sample)
}

/// Packetizes one sample: the specs and each payload's bytes.
fn run(
    p: &mut H265Packetizer,
    media: &[u8],
    sample: Sample,
) -> Result<Vec<(PacketSpec, Vec<u8>)>, PacketizeError> {
    p.begin_sample(sample);
    let mut out = Vec::new();
    while let Some(spec) = p.next_packet(media)? {
        assert!(spec.payload_len() <= p.payload_budget(), "over budget");
        let bytes = payload_bytes(&spec, media, p.parameter_sets(), &[]);
        assert_eq!(bytes.len(), spec.payload_len(), "body resolves");
        out.push((spec, bytes));
        assert!(out.len() < 10_000);
    }
    Ok(out)
}

/// Splits an AP payload (§4.4.2) into its NAL units.
fn ap_units(payload: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(nal_type(payload[0]), NAL_TYPE_AP);
    let mut units = Vec::new();
    let mut rest = &payload[2..];
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        units.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    units
}

#[test]
fn single_nal_unit_packet() {
    let mut p = H265Packetizer::new(&config(4), 1200).unwrap();
    let slice = nal(1, 500);
    let (media, sample) = sample_of(std::slice::from_ref(&slice), 4, false);
    let packets = run(&mut p, &media, sample).unwrap();
    assert_eq!(packets.len(), 1);
    let (spec, bytes) = &packets[0];
    assert_eq!(bytes, &slice, "§4.4.1: the NAL unit itself is the payload");
    assert_eq!(spec.body_source, BodySource::Media);
    assert!(spec.marker, "§4.1: last packet of the access unit");
}

#[test]
fn small_nal_units_aggregate_in_place() {
    for n in [2u8, 4] {
        let mut p = H265Packetizer::new(&config(n), 1200).unwrap();
        let nals = vec![nal(39, 30), nal(1, 200), nal(1, 300)];
        let (media, sample) = sample_of(&nals, n, false);
        let packets = run(&mut p, &media, sample).unwrap();
        assert_eq!(packets.len(), 1, "{n}-byte prefixes: one AP");
        let (spec, bytes) = &packets[0];
        assert_eq!(spec.body_source, BodySource::Nals { prefix_len: n });
        assert_eq!(ap_units(bytes), nals);
        // PayloadHdr: F = 0, Type 48, LayerId 0, TID 1 (the lowest of the units').
        assert_eq!(&bytes[..2], &[NAL_TYPE_AP << 1, 0x01]);
        assert!(spec.marker);
        let body = body_slices(spec, &media, &[], &[]).unwrap();
        assert_eq!(
            body.as_slices().len(),
            3,
            "one range of the mapping per unit"
        );
    }
    // 1-byte prefixes cannot stand in for the 16-bit NALU sizes: single packets.
    let mut p = H265Packetizer::new(&config(1), 1200).unwrap();
    let nals = vec![nal(39, 30), nal(1, 200)];
    let (media, sample) = sample_of(&nals, 1, false);
    let packets = run(&mut p, &media, sample).unwrap();
    let got: Vec<Vec<u8>> = packets.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(got, nals);
    assert_eq!(
        packets.iter().map(|(s, _)| s.marker).collect::<Vec<_>>(),
        [false, true]
    );
}

#[test]
fn aggregation_respects_budget_and_unit_count() {
    let mut p = H265Packetizer::new(&config(4), 200).unwrap();
    // 10 tiny units: an AP holds at most MAX_AP_UNITS, the rest go in a second one.
    let tiny: Vec<Vec<u8>> = (0..10).map(|_| nal(1, 5)).collect();
    let (media, sample) = sample_of(&tiny, 4, false);
    let packets = run(&mut p, &media, sample).unwrap();
    assert_eq!(packets.len(), 2);
    assert_eq!(ap_units(&packets[0].1).len(), MAX_AP_UNITS);
    assert_eq!(ap_units(&packets[1].1).len(), 10 - MAX_AP_UNITS);
    assert_eq!((packets[0].0.marker, packets[1].0.marker), (false, true));
    // Units that do not fit together with the next go alone: 120 + 2 + 2 + 120 > 200.
    let nals = vec![nal(1, 120), nal(1, 120), nal(1, 30), nal(1, 30)];
    let (media, sample) = sample_of(&nals, 4, false);
    let packets = run(&mut p, &media, sample).unwrap();
    assert_eq!(packets.len(), 2, "{packets:?}");
    assert_eq!(packets[0].1, nals[0], "single NAL unit packet");
    assert_eq!(ap_units(&packets[1].1), nals[1..].to_vec());
}

#[test]
fn large_nal_units_fragment_in_equal_sizes() {
    let budget = 1200;
    let mut p = H265Packetizer::new(&config(4), budget).unwrap();
    // TID 1, LayerId 0; a trailing SEI after the slice carries the marker instead.
    let slice = nal(1, 5000);
    let (media, sample) = sample_of(std::slice::from_ref(&slice), 4, false);
    let packets = run(&mut p, &media, sample).unwrap();
    // 4998 bytes after the NAL header in fragments of at most 1197: 5 of 1000 (GSO-ready).
    assert_eq!(packets.len(), 5);
    let mut rebuilt = vec![];
    for (k, (spec, bytes)) in packets.iter().enumerate() {
        assert_eq!(nal_type(bytes[0]), NAL_TYPE_FU);
        assert_eq!(bytes[1], 0x01, "LayerId and TID of the NAL");
        let (s, e) = (bytes[2] & 0x80 != 0, bytes[2] & 0x40 != 0);
        assert_eq!((s, e), (k == 0, k == 4), "S/E bits of fragment {k}");
        assert_eq!(bytes[2] & 0x3f, 1, "FuType");
        assert_eq!(spec.marker, k == 4);
        if k < 4 {
            assert_eq!(bytes.len() - 3, 1000, "equal fragment sizes");
        }
        rebuilt.extend_from_slice(&bytes[3..]);
    }
    assert_eq!(&rebuilt[..], &slice[2..]);
    // The marker moves to the last NAL when a small one follows the fragmented one.
    let (media, sample) = sample_of(&[slice, nal(40, 20)], 4, false);
    let packets = run(&mut p, &media, sample).unwrap();
    assert_eq!(packets.len(), 6);
    assert!(packets[..5].iter().all(|(s, _)| !s.marker));
    assert!(packets[5].0.marker);
}

#[test]
fn parameter_sets_before_irap_access_units() {
    let mut p = H265Packetizer::new(&config(4), 1200).unwrap();
    assert_eq!(
        ap_units(p.parameter_sets()),
        vec![VPS.to_vec(), SPS.to_vec(), PPS.to_vec()]
    );
    for irap in 16..=21u8 {
        let idr = nal(irap, 800);
        let (media, sample) = sample_of(std::slice::from_ref(&idr), 4, false);
        let packets = run(&mut p, &media, sample).unwrap();
        assert_eq!(packets.len(), 2, "type {irap}");
        assert_eq!(packets[0].0.body_source, BodySource::ParameterSets);
        assert!(!packets[0].0.marker);
        assert_eq!(packets[1].1, idr);
        assert!(packets[1].0.marker);
    }
    // An IRAP sample that carries its own sets sends them as they are, not twice.
    let own = vec![VPS.to_vec(), SPS.to_vec(), PPS.to_vec(), nal(19, 800)];
    let (media, sample) = sample_of(&own, 4, true);
    let packets = run(&mut p, &media, sample).unwrap();
    assert!(packets
        .iter()
        .all(|(s, _)| s.body_source != BodySource::ParameterSets));
    assert_eq!(ap_units(&packets[0].1), own, "sets and slice fit one AP");
    // Not IRAP, not sync: no sets.
    let (media, sample) = sample_of(&[nal(1, 800)], 4, false);
    assert_eq!(run(&mut p, &media, sample).unwrap().len(), 1);
    // A sync sample (stss) is treated as a keyframe too.
    let (media, sample) = sample_of(&[nal(1, 800)], 4, true);
    assert_eq!(run(&mut p, &media, sample).unwrap().len(), 2);
    // hev1 without sets in hvcC: nothing to add.
    let mut cfg = config(4);
    cfg.vps.clear();
    cfg.sps.clear();
    cfg.pps.clear();
    let mut p = H265Packetizer::new(&cfg, 1200).unwrap();
    assert!(p.parameter_sets().is_empty());
    let (media, sample) = sample_of(&[nal(19, 800)], 4, true);
    assert_eq!(run(&mut p, &media, sample).unwrap().len(), 1);
    // One set alone is a single NAL unit packet (an AP needs two units).
    cfg.sps = vec![SPS.to_vec()];
    let p = H265Packetizer::new(&cfg, 1200).unwrap();
    assert_eq!(p.parameter_sets(), SPS);
}

#[test]
fn drops_delimiters_and_refuses_corrupt_samples() {
    let mut p = H265Packetizer::new(&config(4), 1200).unwrap();
    let nals = vec![nal(NAL_TYPE_AUD, 3), nal(1, 900), vec![0x02]];
    let (media, sample) = sample_of(&nals, 4, false);
    let packets = run(&mut p, &media, sample).unwrap();
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].1, nals[1]);
    assert!(packets[0].0.marker, "the last sent NAL carries the marker");
    // A length past the sample: nothing is sent, and the sample stays finished.
    let (mut media, sample) = sample_of(&[nal(1, 100)], 4, false);
    media[4] = 200;
    assert_eq!(
        run(&mut p, &media, sample).unwrap_err(),
        PacketizeError::NalLengthPastSample
    );
    assert_eq!(p.next_packet(&media), Ok(None));
    let short = Sample { len: 3, ..sample };
    assert_eq!(
        run(&mut p, &media, short).unwrap_err(),
        PacketizeError::TruncatedLengthPrefix
    );
    let outside = Sample {
        offset: 1_000,
        ..sample
    };
    assert_eq!(
        run(&mut p, &media, outside).unwrap_err(),
        PacketizeError::SampleOutOfRange
    );
    let mut cfg = config(3);
    assert_eq!(
        H265Packetizer::new(&cfg, 1200).unwrap_err(),
        PacketizeError::InvalidNalLengthSize
    );
    cfg.nal_length_size = 4;
    cfg.sps = vec![vec![0x42]];
    assert_eq!(
        H265Packetizer::new(&cfg, 1200).unwrap_err(),
        PacketizeError::EmptyNal
    );
    cfg.sps = vec![vec![0x42; 100]];
    assert_eq!(
        H265Packetizer::new(&cfg, 64).unwrap_err(),
        PacketizeError::ParameterSetsTooLarge
    );
}
