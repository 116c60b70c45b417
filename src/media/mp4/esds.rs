//! AAC and MPEG-1/2 audio (MP3) sample entries: the `mp4a` AudioSampleEntry (ISO/IEC 14496-12 §12.2.3, plus the
//! QuickTime version 1/2 extensions), its `esds` box carrying an ES_Descriptor
//! (ISO/IEC 14496-1 §7.2.6.5 ES_Descriptor, §7.2.6.6 DecoderConfigDescriptor,
//! §7.2.6.7 DecoderSpecificInfo; sizes per §8.3.3 expandable classes), and the
//! AudioSpecificConfig inside it (ISO/IEC 14496-3 §1.6.2.1).

use super::boxes::{BoxIter, Mp4Box, Reader};
use super::error::{Mp4Error, Mp4ErrorKind};
use crate::media::track::{AacConfig, Codec, MpegAudioConfig};

/// ES_DescrTag (ISO/IEC 14496-1 §7.2.2.1).
const ES_DESCR_TAG: u8 = 0x03;
/// DecoderConfigDescrTag.
const DECODER_CONFIG_DESCR_TAG: u8 = 0x04;
/// DecSpecificInfoTag.
const DEC_SPECIFIC_INFO_TAG: u8 = 0x05;
/// objectTypeIndication for ISO/IEC 14496-3 (MPEG-4 Audio).
const OTI_MPEG4_AUDIO: u8 = 0x40;
/// objectTypeIndication for ISO/IEC 13818-3 (MPEG-2 audio, layers I–III incl. MP3 at half
/// rates; ISO/IEC 14496-1 Table 5 / the MP4 registration authority).
const OTI_MPEG2_AUDIO: u8 = 0x69;
/// objectTypeIndication for ISO/IEC 11172-3 (MPEG-1 audio: MP1, MP2, MP3).
const OTI_MPEG1_AUDIO: u8 = 0x6B;

/// What an `esds` describes: AAC with its AudioSpecificConfig, or MPEG-1/2 audio (which needs
/// no decoder-specific info: its frames carry their headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EsAudio {
    /// objectTypeIndication 0x40: the raw AudioSpecificConfig bytes.
    Aac(Vec<u8>),
    /// objectTypeIndication 0x69 or 0x6B.
    MpegAudio,
}

/// Sampling frequencies by samplingFrequencyIndex (ISO/IEC 14496-3 §1.6.3.4, Table 1.18).
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Parses an `mp4a` sample entry and its `esds` (directly inside, or inside a QuickTime `wave`):
/// AAC, or MPEG-1/2 audio (MP3) by the esds object type indication.
pub(crate) fn parse_mp4a_entry(entry: &Mp4Box<'_>) -> Result<Codec, Mp4Error> {
    let mut r = entry.reader();
    // §8.5.2.2 SampleEntry: reserved[6], data_reference_index.
    r.skip(8)?;
    // §12.2.3.2 AudioSampleEntry: reserved[2] (QuickTime: version, revision), reserved (vendor).
    let version = r.u16()?;
    r.skip(6)?;
    let mut channels = r.u16()?;
    // samplesize, pre_defined, reserved.
    r.skip(6)?;
    // samplerate is 16.16 fixed point.
    let mut entry_rate = r.u32()? >> 16;
    match version {
        0 => {}
        // QuickTime sound description v1: four 32-bit fields.
        1 => r.skip(16)?,
        // QuickTime v2: sizeOfStructOnly, audioSampleRate (f64), numAudioChannels, then 5 x u32.
        2 => {
            r.skip(4)?;
            let rate = f64::from_bits(r.u64()?);
            if rate.is_finite() && rate >= 1.0 && rate <= f64::from(u32::MAX) {
                entry_rate = rate as u32;
            }
            channels = u16::try_from(r.u32()?).unwrap_or(0);
            r.skip(20)?;
        }
        v => {
            return Err(r.err(Mp4ErrorKind::Unsupported(format!(
                "mp4a sample entry version {v}"
            ))))
        }
    }
    let esds = find_esds(BoxIter::new(r.rest(), r.abs(), &entry.path))?
        .ok_or_else(|| entry.err(Mp4ErrorKind::MissingBox("esds")))?;
    let (_version, _flags, mut er) = esds.full_box()?;
    match parse_es_audio(&mut er)? {
        EsAudio::Aac(asc) => parse_audio_specific_config(&asc, entry_rate, channels)
            .map(Codec::Aac)
            .map_err(|k| esds.err(k)),
        EsAudio::MpegAudio => Ok(Codec::MpegAudio(MpegAudioConfig {
            sample_rate_hz: entry_rate,
            channels: u8::try_from(channels).unwrap_or(0),
        })),
    }
}

/// Finds `esds` among sample-entry children, looking one level into `wave` (QuickTime).
fn find_esds<'a>(children: BoxIter<'a>) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
    for child in children {
        let child = child?;
        if child.typ == *b"esds" {
            return Ok(Some(child));
        }
        if child.typ == *b"wave" {
            for inner in child.children() {
                let inner = inner?;
                if inner.typ == *b"esds" {
                    return Ok(Some(inner));
                }
            }
        }
    }
    Ok(None)
}

/// Reads one descriptor header (tag, then a size of up to four 7-bit groups with a
/// continuation bit, ISO/IEC 14496-1 §8.3.3) and returns the tag and a reader over its body.
fn read_descriptor<'a>(r: &mut Reader<'a>) -> Result<(u8, Reader<'a>), Mp4Error> {
    let tag = r.u8()?;
    let mut size: usize = 0;
    for i in 0..4 {
        let b = r.u8()?;
        size = (size << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(r.err(Mp4ErrorKind::Invalid("descriptor size longer than 4 bytes")));
        }
    }
    let at = r.abs();
    let body = r.bytes(size)?;
    Ok((tag, Reader::new(body, at, r.path())))
}

/// Finds the first sub-descriptor with `tag` among the descriptors filling `r`.
fn find_descriptor<'a>(r: &mut Reader<'a>, tag: u8) -> Result<Option<Reader<'a>>, Mp4Error> {
    while r.remaining() > 0 {
        let (t, body) = read_descriptor(r)?;
        if t == tag {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// Walks ES_Descriptor → DecoderConfigDescriptor → DecoderSpecificInfo and returns the raw
/// AudioSpecificConfig bytes. A non-AAC objectTypeIndication is reported as unsupported.
#[cfg(test)]
pub(crate) fn parse_es_descriptor(r: &mut Reader<'_>) -> Result<Vec<u8>, Mp4Error> {
    match parse_es_audio(r)? {
        EsAudio::Aac(asc) => Ok(asc),
        EsAudio::MpegAudio => Err(r.err(Mp4ErrorKind::Unsupported(
            "mpeg-1/2 audio where aac is expected".into(),
        ))),
    }
}

/// Walks ES_Descriptor → DecoderConfigDescriptor (→ DecoderSpecificInfo for AAC). An
/// objectTypeIndication other than AAC or MPEG-1/2 audio is reported as unsupported.
pub(crate) fn parse_es_audio(r: &mut Reader<'_>) -> Result<EsAudio, Mp4Error> {
    let (tag, mut es) = read_descriptor(r)?;
    if tag != ES_DESCR_TAG {
        return Err(r.err(Mp4ErrorKind::Invalid(
            "esds does not start with an es_descriptor",
        )));
    }
    // §7.2.6.5.1: ES_ID, then flags streamDependenceFlag, URL_Flag, OCRstreamFlag, priority.
    es.skip(2)?;
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.skip(2)?; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        let url_len = usize::from(es.u8()?);
        es.skip(url_len)?;
    }
    if flags & 0x20 != 0 {
        es.skip(2)?; // OCR_ES_Id
    }
    let mut dc = find_descriptor(&mut es, DECODER_CONFIG_DESCR_TAG)?
        .ok_or_else(|| es.err(Mp4ErrorKind::MissingBox("DecoderConfigDescriptor")))?;
    // §7.2.6.6.1: objectTypeIndication, streamType/upStream, bufferSizeDB(24), max/avgBitrate.
    let oti = dc.u8()?;
    if oti == OTI_MPEG1_AUDIO || oti == OTI_MPEG2_AUDIO {
        return Ok(EsAudio::MpegAudio);
    }
    if oti != OTI_MPEG4_AUDIO {
        return Err(dc.err(Mp4ErrorKind::Unsupported(format!(
            "mp4a object type indication 0x{oti:02x}"
        ))));
    }
    dc.skip(1 + 3 + 4 + 4)?;
    let dsi = find_descriptor(&mut dc, DEC_SPECIFIC_INFO_TAG)?
        .ok_or_else(|| dc.err(Mp4ErrorKind::MissingBox("DecoderSpecificInfo")))?;
    Ok(EsAudio::Aac(dsi.rest().to_vec()))
}

/// MSB-first bit reader for the AudioSpecificConfig.
struct Bits<'a> {
    data: &'a [u8],
    bit: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.bit / 8)?;
            let b = (byte >> (7 - (self.bit % 8))) & 1;
            v = (v << 1) | u32::from(b);
            self.bit += 1;
        }
        Some(v)
    }
}

/// Parses the leading fields of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1):
/// audioObjectType (with the escape to 32+6 bits), samplingFrequencyIndex (or the explicit
/// 24-bit frequency when it is 15) and channelConfiguration. A zero frequency or channel
/// configuration falls back to the sample entry's values.
pub(crate) fn parse_audio_specific_config(
    asc: &[u8],
    entry_rate: u32,
    entry_channels: u16,
) -> Result<AacConfig, Mp4ErrorKind> {
    let truncated = Mp4ErrorKind::Invalid("audio specific config truncated");
    let mut b = Bits { data: asc, bit: 0 };
    let mut object_type = b.read(5).ok_or(truncated.clone())?;
    if object_type == 31 {
        object_type = 32 + b.read(6).ok_or(truncated.clone())?;
    }
    let freq_index = b.read(4).ok_or(truncated.clone())?;
    let rate = if freq_index == 15 {
        b.read(24).ok_or(truncated.clone())?
    } else {
        let idx = usize::try_from(freq_index).unwrap_or(usize::MAX);
        *SAMPLING_FREQUENCIES
            .get(idx)
            .ok_or(Mp4ErrorKind::Invalid("reserved sampling frequency index"))?
    };
    let channel_config = b.read(4).ok_or(truncated)?;
    // §1.6.3.5 Table 1.19: configurations 1-6 have that many channels, 7 has 8; others
    // (0 = program config element, newer layouts) take the sample entry's count.
    let channels = match channel_config {
        1..=6 => channel_config,
        7 => 8,
        _ => u32::from(entry_channels),
    };
    let sample_rate_hz = if rate != 0 { rate } else { entry_rate };
    if sample_rate_hz == 0 {
        return Err(Mp4ErrorKind::Invalid("zero sampling rate"));
    }
    let channels = u8::try_from(channels)
        .ok()
        .filter(|&c| c != 0)
        .ok_or(Mp4ErrorKind::Invalid("channel count"))?;
    Ok(AacConfig {
        audio_specific_config: asc.to_vec(),
        object_type: u8::try_from(object_type).unwrap_or(u8::MAX),
        sample_rate_hz,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_48k_stereo() {
        // 00010 0011 0010 000 -> AOT 2, index 3 (48 kHz), 2 channels.
        let c = parse_audio_specific_config(&[0x11, 0x90], 0, 0).expect("valid asc");
        assert_eq!(
            (c.object_type, c.sample_rate_hz, c.channels),
            (2, 48_000, 2)
        );
        assert_eq!(c.audio_specific_config, vec![0x11, 0x90]);
    }

    #[test]
    fn explicit_frequency_and_escape() {
        // AOT 31 escape + 6 bits (0 -> 32), index 15, 24-bit 12345, channel config 1.
        let fields: [(u64, u32); 5] = [(31, 5), (0, 6), (15, 4), (12_345, 24), (1, 4)];
        let mut v = Vec::new();
        let mut acc: u64 = 0;
        let mut n = 0;
        for (val, w) in fields {
            acc = (acc << w) | val;
            n += w;
        }
        acc <<= 48 - n;
        v.extend_from_slice(&acc.to_be_bytes()[2..]);
        let c = parse_audio_specific_config(&v, 0, 0).expect("valid asc");
        assert_eq!(
            (c.object_type, c.sample_rate_hz, c.channels),
            (32, 12_345, 1)
        );
    }

    #[test]
    fn fallbacks_and_errors() {
        // AOT 2, index 3, channel config 0 -> entry channel count.
        let c = parse_audio_specific_config(&[0x11, 0x80], 0, 6).expect("pce channels");
        assert_eq!(c.channels, 6);
        assert!(parse_audio_specific_config(&[0x11, 0x80], 0, 0).is_err());
        assert!(parse_audio_specific_config(&[], 44_100, 2).is_err());
        assert!(parse_audio_specific_config(&[0x16, 0x90], 0, 2).is_err()); // index 13
    }

    fn esds_body(oti: u8, long_sizes: bool) -> Vec<u8> {
        let size = |n: usize| -> Vec<u8> {
            if long_sizes {
                vec![0x80, 0x80, 0x80, n as u8]
            } else {
                vec![n as u8]
            }
        };
        let dsi = [0x11u8, 0x90];
        let mut dsi_d = vec![DEC_SPECIFIC_INFO_TAG];
        dsi_d.extend(size(dsi.len()));
        dsi_d.extend_from_slice(&dsi);
        let mut dc = vec![oti, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        dc.extend(dsi_d);
        let mut dc_d = vec![DECODER_CONFIG_DESCR_TAG];
        dc_d.extend(size(dc.len()));
        dc_d.extend(dc);
        let mut es = vec![0, 1, 0x40, 3, b'a', b'b', b'c'];
        es.extend(dc_d);
        let mut es_d = vec![ES_DESCR_TAG];
        es_d.extend(size(es.len()));
        es_d.extend(es);
        es_d
    }

    #[test]
    fn es_descriptor_walk() {
        for long in [false, true] {
            let body = esds_body(0x40, long);
            let asc = parse_es_descriptor(&mut Reader::new(&body, 0, "esds")).expect("valid");
            assert_eq!(asc, vec![0x11, 0x90]);
        }
        let mp3 = esds_body(0x6b, false);
        let e = parse_es_descriptor(&mut Reader::new(&mp3, 0, "esds")).map_err(|e| e.kind);
        assert!(matches!(e, Err(Mp4ErrorKind::Unsupported(_))));
        for oti in [0x69, 0x6b] {
            let mp3 = esds_body(oti, false);
            let a = parse_es_audio(&mut Reader::new(&mp3, 0, "esds")).expect("mpeg audio");
            assert_eq!(a, EsAudio::MpegAudio);
        }
        let vorbis = esds_body(0xdd, false);
        let e = parse_es_audio(&mut Reader::new(&vorbis, 0, "esds")).map_err(|e| e.kind);
        assert!(matches!(e, Err(Mp4ErrorKind::Unsupported(_))));
        let body = esds_body(0x40, false);
        for cut in 0..body.len() {
            assert!(parse_es_descriptor(&mut Reader::new(&body[..cut], 0, "esds")).is_err());
        }
        let five = [ES_DESCR_TAG, 0x80, 0x80, 0x80, 0x80, 0x01, 0];
        assert!(parse_es_descriptor(&mut Reader::new(&five, 0, "esds")).is_err());
    }
}
