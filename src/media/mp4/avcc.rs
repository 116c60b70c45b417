//! H.264 sample entries: the `avc1`/`avc3` VisualSampleEntry (ISO/IEC 14496-12 §12.1.3) and
//! its `avcC` AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).

use super::boxes::{BoxIter, Mp4Box, Reader};
use super::error::{Mp4Error, Mp4ErrorKind};
use crate::media::track::H264Config;

/// Parses an `avc1` or `avc3` sample entry; `avc3` may carry its parameter sets in-band, so
/// empty SPS/PPS lists are accepted only for it.
pub(crate) fn parse_avc_entry(entry: &Mp4Box<'_>) -> Result<H264Config, Mp4Error> {
    let mut r = entry.reader();
    // §8.5.2.2 SampleEntry: reserved[6], data_reference_index.
    r.skip(8)?;
    // §12.1.3.2 VisualSampleEntry: pre_defined(2) reserved(2) pre_defined[3](12).
    r.skip(16)?;
    let width = r.u16()?;
    let height = r.u16()?;
    // horizresolution, vertresolution, reserved, frame_count, compressorname[32], depth, pre_defined.
    r.skip(4 + 4 + 4 + 2 + 32 + 2 + 2)?;
    let mut avcc = None;
    for child in BoxIter::new(r.rest(), r.abs(), &entry.path) {
        let child = child?;
        if child.typ == *b"avcC" {
            avcc = Some(child);
            break;
        }
    }
    let avcc = avcc.ok_or_else(|| entry.err(Mp4ErrorKind::MissingBox("avcC")))?;
    let allow_empty = entry.typ == *b"avc3";
    parse_avcc(&mut avcc.reader(), allow_empty, width, height)
}

/// Parses a whole AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1.2) that arrived
/// outside a file (a pulled RTSP source's parameters), with the picture size known from
/// elsewhere; SPS and PPS are required.
pub(crate) fn parse_avc_decoder_config(
    record: &[u8],
    width: u16,
    height: u16,
) -> Result<H264Config, Mp4Error> {
    parse_avcc(&mut Reader::new(record, 0, "avcC"), false, width, height)
}

/// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1.2).
pub(crate) fn parse_avcc(
    r: &mut Reader<'_>,
    allow_empty: bool,
    width: u16,
    height: u16,
) -> Result<H264Config, Mp4Error> {
    let version = r.u8()?;
    if version != 1 {
        return Err(r.err(Mp4ErrorKind::Unsupported(format!(
            "avcC configuration version {version}"
        ))));
    }
    let profile_idc = r.u8()?;
    let profile_compat = r.u8()?;
    let level_idc = r.u8()?;
    // reserved '111111'b, lengthSizeMinusOne (2 bits); the value 2 (3-byte lengths) is not allowed.
    let nal_length_size = (r.u8()? & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(r.err(Mp4ErrorKind::Invalid(
            "avcC nal length size must be 1, 2 or 4",
        )));
    }
    // reserved '111'b, numOfSequenceParameterSets (5 bits).
    let num_sps = r.u8()? & 0x1f;
    let sps = read_parameter_sets(r, usize::from(num_sps))?;
    let num_pps = r.u8()?;
    let pps = read_parameter_sets(r, usize::from(num_pps))?;
    // Profile-specific trailing fields (chroma format, bit depths, SPS extensions) are ignored.
    if !allow_empty && (sps.is_empty() || pps.is_empty()) {
        return Err(r.err(Mp4ErrorKind::Invalid("avc1 without sps or pps")));
    }
    Ok(H264Config {
        profile_idc,
        profile_compat,
        level_idc,
        nal_length_size,
        sps,
        pps,
        width,
        height,
    })
}

/// Reads `n` parameter sets, each a 16-bit length followed by the NAL unit.
fn read_parameter_sets(r: &mut Reader<'_>, n: usize) -> Result<Vec<Vec<u8>>, Mp4Error> {
    // n <= 255 and each set needs at least 2 bytes, so this capacity is bounded by the box.
    let mut sets = Vec::with_capacity(n.min(r.remaining() / 2));
    for _ in 0..n {
        let len = usize::from(r.u16()?);
        if len == 0 {
            return Err(r.err(Mp4ErrorKind::Invalid("empty parameter set")));
        }
        sets.push(r.bytes(len)?.to_vec());
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(length_byte: u8, sps: &[&[u8]], pps: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![1, 100, 0, 30, length_byte, 0xe0 | sps.len() as u8];
        for s in sps {
            v.extend_from_slice(&(s.len() as u16).to_be_bytes());
            v.extend_from_slice(s);
        }
        v.push(pps.len() as u8);
        for p in pps {
            v.extend_from_slice(&(p.len() as u16).to_be_bytes());
            v.extend_from_slice(p);
        }
        v
    }

    fn parse(data: &[u8], allow_empty: bool) -> Result<H264Config, Mp4ErrorKind> {
        parse_avcc(&mut Reader::new(data, 0, "avcC"), allow_empty, 1, 2).map_err(|e| e.kind)
    }

    #[test]
    fn parses_record() {
        let rec = record(0xff, &[&[0x67, 1, 2]], &[&[0x68, 3]]);
        let c = parse(&rec, false).expect("valid record");
        assert_eq!(
            (c.profile_idc, c.level_idc, c.nal_length_size),
            (100, 30, 4)
        );
        assert_eq!(c.sps, vec![vec![0x67, 1, 2]]);
        assert_eq!(c.pps, vec![vec![0x68, 3]]);
        assert_eq!((c.width, c.height), (1, 2));
        let c = parse(&record(0xfd, &[&[0x67]], &[&[0x68]]), false).expect("2-byte lengths");
        assert_eq!(c.nal_length_size, 2);
    }

    #[test]
    fn rejects_bad_records() {
        let three = record(0xfe, &[&[0x67]], &[&[0x68]]);
        assert!(matches!(
            parse(&three, false),
            Err(Mp4ErrorKind::Invalid(_))
        ));
        let empty = record(0xff, &[], &[]);
        assert!(matches!(
            parse(&empty, false),
            Err(Mp4ErrorKind::Invalid(_))
        ));
        assert!(parse(&empty, true).is_ok());
        let mut short = record(0xff, &[&[0x67, 1, 2]], &[&[0x68, 3]]);
        short.truncate(8);
        assert_eq!(parse(&short, false), Err(Mp4ErrorKind::Truncated));
        assert!(parse(&[], false).is_err());
        let mut v2 = record(0xff, &[&[0x67]], &[&[0x68]]);
        v2[0] = 2;
        assert!(matches!(
            parse(&v2, false),
            Err(Mp4ErrorKind::Unsupported(_))
        ));
    }
}
