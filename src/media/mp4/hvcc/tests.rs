use super::*;

/// An hvcC record: the fixed header with `length_byte` (its low 2 bits are
/// lengthSizeMinusOne), then one array per `(type, units)`.
fn record(length_byte: u8, arrays: &[(u8, &[&[u8]])]) -> Vec<u8> {
    // version, profile byte (space 1, tier 1, profile 2), compat flags, constraint flags,
    // level 120, min_spatial_segmentation, parallelism, chroma, bit depths, avgFrameRate.
    let mut v = vec![1, 0x62, 0x40, 0, 0, 0, 0xb0, 0, 0, 0, 0, 0, 120];
    v.extend_from_slice(&[0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0]);
    v.push(length_byte);
    v.push(arrays.len() as u8);
    for (typ, units) in arrays {
        v.push(0x80 | typ);
        v.extend_from_slice(&(units.len() as u16).to_be_bytes());
        for u in *units {
            v.extend_from_slice(&(u.len() as u16).to_be_bytes());
            v.extend_from_slice(u);
        }
    }
    v
}

fn parse(data: &[u8], allow_empty: bool) -> Result<H265Config, Mp4ErrorKind> {
    parse_hvcc(&mut Reader::new(data, 0, "hvcC"), allow_empty, 640, 360).map_err(|e| e.kind)
}

const VPS: &[u8] = &[0x40, 0x01, 0x0c];
const SPS: &[u8] = &[0x42, 0x01, 0x01, 0x02];
const PPS: &[u8] = &[0x44, 0x01, 0xc1];
const SEI: &[u8] = &[0x4e, 0x01, 0x05, 0xff];

#[test]
fn parses_hand_made_record() {
    let rec = record(
        0xff,
        &[
            (32, &[VPS]),
            (33, &[SPS]),
            (39, &[SEI, SEI]),
            (34, &[PPS, PPS]),
        ],
    );
    let c = parse(&rec, false).expect("valid record");
    assert_eq!((c.profile_space, c.tier_flag, c.profile_idc), (1, true, 2));
    assert_eq!(c.profile_compat, 0x4000_0000);
    assert_eq!(c.constraint_flags, [0xb0, 0, 0, 0, 0, 0]);
    assert_eq!((c.level_idc, c.nal_length_size), (120, 4));
    assert_eq!(c.vps, vec![VPS.to_vec()]);
    assert_eq!(c.sps, vec![SPS.to_vec()]);
    assert_eq!(c.pps, vec![PPS.to_vec(), PPS.to_vec()]);
    assert_eq!((c.width, c.height), (640, 360));
    let c = parse(
        &record(0xfd, &[(32, &[VPS]), (33, &[SPS]), (34, &[PPS])]),
        false,
    )
    .expect("2-byte lengths");
    assert_eq!(c.nal_length_size, 2);
}

#[test]
fn parses_x265_record() {
    // The hvcC of `ffmpeg -c:v libx265 -tag:v hvc1` (x265 3.5, 640x360 Main, level 2.1),
    // whose fourth array is a 2 KB prefix SEI with x265's settings.
    let rec = include_bytes!("../../../../fuzz/seeds/hvcc/x265_hvc1.bin");
    let c = parse(rec, false).expect("x265's record");
    assert_eq!((c.profile_space, c.tier_flag, c.profile_idc), (0, false, 1));
    assert_eq!(c.profile_compat, 0x6000_0000);
    assert_eq!(c.constraint_flags, [0x90, 0, 0, 0, 0, 0]);
    assert_eq!((c.level_idc, c.nal_length_size), (63, 4));
    assert_eq!((c.vps.len(), c.sps.len(), c.pps.len()), (1, 1, 1));
    assert_eq!(
        (c.vps[0].len(), c.sps[0].len(), c.pps[0].len()),
        (24, 42, 7)
    );
    assert_eq!(c.vps[0][0] >> 1, NAL_TYPE_VPS);
    assert_eq!(c.sps[0][0] >> 1, NAL_TYPE_SPS);
    assert_eq!(c.pps[0][0] >> 1, NAL_TYPE_PPS);
}

#[test]
fn rejects_bad_records() {
    let all: &[(u8, &[&[u8]])] = &[(32, &[VPS]), (33, &[SPS]), (34, &[PPS])];
    let three = record(0xfe, all);
    assert!(matches!(
        parse(&three, false),
        Err(Mp4ErrorKind::Invalid(_))
    ));
    let no_pps = record(0xff, &[(32, &[VPS]), (33, &[SPS])]);
    assert!(matches!(
        parse(&no_pps, false),
        Err(Mp4ErrorKind::Invalid(_))
    ));
    // hev1 keeps its sets in band: empty arrays are fine there.
    assert!(parse(&no_pps, true).is_ok());
    assert!(parse(&record(0xff, &[]), true).is_ok());
    let short_unit = record(0xff, &[(32, &[&[0x40]]), (33, &[SPS]), (34, &[PPS])]);
    assert!(matches!(
        parse(&short_unit, false),
        Err(Mp4ErrorKind::Invalid(_))
    ));
    let whole = record(0xff, all);
    for cut in 0..whole.len() {
        assert_eq!(
            parse(&whole[..cut], true),
            Err(Mp4ErrorKind::Truncated),
            "cut at {cut}"
        );
    }
    let mut v2 = whole.clone();
    v2[0] = 0;
    assert!(matches!(
        parse(&v2, false),
        Err(Mp4ErrorKind::Unsupported(_))
    ));
    // A count of 65535 units in a short box runs out of bytes, it allocates nothing first.
    let mut huge = record(0xff, &[(33, &[SPS])]);
    huge[24..26].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(parse(&huge, true), Err(Mp4ErrorKind::Truncated));
}

#[test]
fn fuzz_entry_accepts_anything() {
    fuzz_hvcc(&[]);
    fuzz_hvcc(&record(0xff, &[(32, &[VPS]), (33, &[SPS]), (34, &[PPS])]));
    fuzz_hvcc(include_bytes!("../../../../fuzz/seeds/hvcc/truncated.bin"));
    fuzz_hvcc(&[1; 64]);
}
