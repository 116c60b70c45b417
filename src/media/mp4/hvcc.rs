//! H.265 sample entries: the `hvc1`/`hev1` VisualSampleEntry (ISO/IEC 14496-12 §12.1.3) and
//! its `hvcC` HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1).

use super::boxes::{BoxIter, Mp4Box, Reader};
use super::error::{Mp4Error, Mp4ErrorKind};
use crate::media::track::H265Config;

/// NAL unit type of a video parameter set (H.265 Table 7-1).
pub(crate) const NAL_TYPE_VPS: u8 = 32;
/// NAL unit type of a sequence parameter set.
pub(crate) const NAL_TYPE_SPS: u8 = 33;
/// NAL unit type of a picture parameter set.
pub(crate) const NAL_TYPE_PPS: u8 = 34;

/// Parses an `hvc1` or `hev1` sample entry. `hev1` may carry its parameter sets in-band
/// (§8.4.1.1.1), so empty VPS/SPS/PPS arrays are accepted only for it.
pub(crate) fn parse_hevc_entry(entry: &Mp4Box<'_>) -> Result<H265Config, Mp4Error> {
    let mut r = entry.reader();
    // §8.5.2.2 SampleEntry: reserved[6], data_reference_index.
    r.skip(8)?;
    // §12.1.3.2 VisualSampleEntry: pre_defined(2) reserved(2) pre_defined[3](12).
    r.skip(16)?;
    let width = r.u16()?;
    let height = r.u16()?;
    // horizresolution, vertresolution, reserved, frame_count, compressorname[32], depth, pre_defined.
    r.skip(4 + 4 + 4 + 2 + 32 + 2 + 2)?;
    let mut hvcc = None;
    for child in BoxIter::new(r.rest(), r.abs(), &entry.path) {
        let child = child?;
        if child.typ == *b"hvcC" {
            hvcc = Some(child);
            break;
        }
    }
    let hvcc = hvcc.ok_or_else(|| entry.err(Mp4ErrorKind::MissingBox("hvcC")))?;
    let allow_empty = entry.typ == *b"hev1";
    parse_hvcc(&mut hvcc.reader(), allow_empty, width, height)
}

/// Parses a whole HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1.2) that arrived
/// outside an MP4 sample entry (Matroska's `V_MPEGH/ISO/HEVC` CodecPrivate), with the picture
/// size known from elsewhere; VPS, SPS and PPS are required.
pub(crate) fn parse_hevc_decoder_config(
    record: &[u8],
    width: u16,
    height: u16,
) -> Result<H265Config, Mp4Error> {
    parse_hvcc(&mut Reader::new(record, 0, "hvcC"), false, width, height)
}

/// Parses an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1.2). Arrays of other
/// NAL unit types (SEI) are skipped; VPS, SPS and PPS are kept in file order.
pub(crate) fn parse_hvcc(
    r: &mut Reader<'_>,
    allow_empty: bool,
    width: u16,
    height: u16,
) -> Result<H265Config, Mp4Error> {
    let version = r.u8()?;
    if version != 1 {
        return Err(r.err(Mp4ErrorKind::Unsupported(format!(
            "hvcC configuration version {version}"
        ))));
    }
    // general_profile_space(2) general_tier_flag(1) general_profile_idc(5).
    let b = r.u8()?;
    let profile_compat = r.u32()?;
    let constraint_flags = r.array::<6>()?;
    let level_idc = r.u8()?;
    // min_spatial_segmentation_idc (16), parallelismType (8), chromaFormat (8),
    // bitDepthLumaMinus8 (8), bitDepthChromaMinus8 (8), avgFrameRate (16): not needed.
    r.skip(2 + 1 + 1 + 1 + 1 + 2)?;
    // constantFrameRate(2) numTemporalLayers(3) temporalIdNested(1) lengthSizeMinusOne(2);
    // the value 2 (3-byte lengths) is not allowed.
    let nal_length_size = (r.u8()? & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(r.err(Mp4ErrorKind::Invalid(
            "hvcC nal length size must be 1, 2 or 4",
        )));
    }
    let num_arrays = r.u8()?;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..num_arrays {
        // array_completeness(1) reserved(1) NAL_unit_type(6), numNalus(16).
        let nal_type = r.u8()? & 0x3f;
        let num_nalus = r.u16()?;
        let list = match nal_type {
            NAL_TYPE_VPS => Some(&mut vps),
            NAL_TYPE_SPS => Some(&mut sps),
            NAL_TYPE_PPS => Some(&mut pps),
            _ => None,
        };
        // Every NAL unit needs at least its 2-byte length, so a hostile count runs out of
        // box before it can grow the lists beyond the box size.
        match list {
            Some(list) => {
                for _ in 0..num_nalus {
                    let len = usize::from(r.u16()?);
                    if len < 2 {
                        return Err(r.err(Mp4ErrorKind::Invalid("hvcC parameter set too short")));
                    }
                    list.push(r.bytes(len)?.to_vec());
                }
            }
            None => {
                for _ in 0..num_nalus {
                    let len = usize::from(r.u16()?);
                    r.skip(len)?;
                }
            }
        }
    }
    if !allow_empty && (vps.is_empty() || sps.is_empty() || pps.is_empty()) {
        return Err(r.err(Mp4ErrorKind::Invalid("hvc1 without vps, sps or pps")));
    }
    Ok(H265Config {
        profile_space: b >> 6,
        tier_flag: b & 0x20 != 0,
        profile_idc: b & 0x1f,
        profile_compat,
        constraint_flags,
        level_idc,
        nal_length_size,
        vps,
        sps,
        pps,
        width,
        height,
    })
}

/// Fuzz entry point: any bytes as an `hvcC` body, with and without empty arrays allowed;
/// never panics, and what parses keeps within the record's bytes.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_hvcc(data: &[u8]) {
    for allow_empty in [false, true] {
        if let Ok(c) = parse_hvcc(&mut Reader::new(data, 0, "hvcC"), allow_empty, 1, 1) {
            let total: usize = c.vps.iter().chain(&c.sps).chain(&c.pps).map(Vec::len).sum();
            assert!(total <= data.len(), "parameter sets larger than the record");
            assert!(matches!(c.nal_length_size, 1 | 2 | 4));
            assert!(allow_empty || !(c.vps.is_empty() || c.sps.is_empty() || c.pps.is_empty()));
        }
    }
}

#[cfg(test)]
mod tests;
