//! Opus sample entries: the `Opus` AudioSampleEntry and its `dOps` box (OpusSpecificBox),
//! from "Encapsulation of Opus in ISO Base Media File Format" (v0.8.1) §4.3.1–§4.3.2.
//!
//! Only channel mapping family 0 (one Opus stream, mono or stereo) is served: it is what an
//! RFC 7587 RTP stream and a WebRTC peer carry. Other families parse but are reported as
//! [`Mp4ErrorKind::Unsupported`], which skips the track.

use super::boxes::{BoxIter, Mp4Box, Reader};
use super::error::{Mp4Error, Mp4ErrorKind};
use crate::media::track::OpusConfig;

/// Parses an `Opus` sample entry (§4.3.1: an AudioSampleEntry, ISO/IEC 14496-12 §12.2.3,
/// whose only required child is `dOps`).
pub(crate) fn parse_opus_entry(entry: &Mp4Box<'_>) -> Result<OpusConfig, Mp4Error> {
    let mut r = entry.reader();
    // §8.5.2.2 SampleEntry: reserved[6], data_reference_index; §12.2.3.2 AudioSampleEntry:
    // reserved[2], channelcount, samplesize, pre_defined, reserved, samplerate.
    r.skip(8 + 8)?;
    let _channelcount = r.u16()?;
    r.skip(2 + 4 + 4)?;
    let dops = BoxIter::new(r.rest(), r.abs(), &entry.path)
        .find(|b| b.as_ref().map_or(true, |b| b.typ == *b"dOps"))
        .transpose()?
        .ok_or_else(|| entry.err(Mp4ErrorKind::MissingBox("dOps")))?;
    let config = parse_dops(&mut dops.reader())?;
    if config.channel_mapping_family != 0 {
        return Err(dops.err(Mp4ErrorKind::Unsupported(format!(
            "opus channel mapping family {}",
            config.channel_mapping_family
        ))));
    }
    Ok(config)
}

/// Parses the body of a `dOps` box (§4.3.2; a plain Box, not a FullBox):
///
/// ```text
/// unsigned int(8)  Version;              // 0
/// unsigned int(8)  OutputChannelCount;
/// unsigned int(16) PreSkip;
/// unsigned int(32) InputSampleRate;
/// signed int(16)   OutputGain;
/// unsigned int(8)  ChannelMappingFamily;
/// if (ChannelMappingFamily != 0) ChannelMappingTable(OutputChannelCount):
///     unsigned int(8) StreamCount; unsigned int(8) CoupledCount;
///     unsigned int(8) ChannelMapping[OutputChannelCount];
/// ```
pub(crate) fn parse_dops(r: &mut Reader<'_>) -> Result<OpusConfig, Mp4Error> {
    //= Opus in ISOBMFF §4.3.2
    //# Version: shall be set to 0. ... If a reader encounters an unknown Version, it shall
    //# not attempt to decode.
    let version = r.u8()?;
    if version != 0 {
        return Err(r.err(Mp4ErrorKind::Unsupported(format!("dOps version {version}"))));
    }
    let channels = r.u8()?;
    if channels == 0 {
        return Err(r.err(Mp4ErrorKind::Invalid("dOps OutputChannelCount is 0")));
    }
    let pre_skip = r.u16()?;
    let input_sample_rate_hz = r.u32()?;
    let output_gain = r.u16()? as i16;
    let channel_mapping_family = r.u8()?;
    let channel_mapping_table = if channel_mapping_family == 0 {
        //# ChannelMappingFamily 0 ... OutputChannelCount shall be 1 or 2.
        if channels > 2 {
            return Err(r.err(Mp4ErrorKind::Invalid(
                "dOps family 0 with more than 2 channels",
            )));
        }
        Vec::new()
    } else {
        let table = r.bytes(2 + usize::from(channels))?;
        let (streams, coupled) = (table[0], table[1]);
        if streams == 0 || coupled > streams {
            return Err(r.err(Mp4ErrorKind::Invalid("dOps stream counts")));
        }
        table.to_vec()
    };
    Ok(OpusConfig {
        channels,
        pre_skip,
        input_sample_rate_hz,
        output_gain,
        channel_mapping_family,
        channel_mapping_table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<OpusConfig, Mp4Error> {
        parse_dops(&mut Reader::new(bytes, 0, "dOps"))
    }

    /// The `dOps` body ffmpeg 5.1's mp4 muxer wrote for a libopus stereo stream (an
    /// independent writer): version 0, 2 channels, pre-skip 312 (libopus's lookahead at
    /// 48 kHz), input rate 48000, gain 0, family 0.
    #[test]
    fn dops_from_ffmpeg_stereo() {
        let body = [
            0x00, 0x02, 0x01, 0x38, 0x00, 0x00, 0xbb, 0x80, 0x00, 0x00, 0x00,
        ];
        let c = parse(&body).expect("valid dOps");
        assert_eq!(c.channels, 2);
        assert_eq!(c.pre_skip, 312);
        assert_eq!(c.input_sample_rate_hz, 48_000);
        assert_eq!(c.output_gain, 0);
        assert_eq!(c.channel_mapping_family, 0);
        assert!(c.channel_mapping_table.is_empty());
    }

    /// Family 1 (Vorbis channel order, RFC 7845 §5.1.1.2): 6 channels in 4 streams, 2 of
    /// them coupled, mapping 0 4 1 2 3 5; negative gain read as signed Q7.8.
    #[test]
    fn dops_family_one_reads_table_and_signed_gain() {
        let body = [
            0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0xac, 0x44, 0xff, 0x00, 0x01, 0x04, 0x02, 0x00,
            0x04, 0x01, 0x02, 0x03, 0x05,
        ];
        let c = parse(&body).expect("valid dOps");
        assert_eq!(c.channels, 6);
        assert_eq!(c.input_sample_rate_hz, 44_100);
        assert_eq!(c.output_gain, -256);
        assert_eq!(c.channel_mapping_family, 1);
        assert_eq!(c.channel_mapping_table, [4, 2, 0, 4, 1, 2, 3, 5]);
    }

    /// Opus MP4s written by ffmpeg 5.1 with libopus (an independent muxer and encoder): a
    /// plain file (`elst` media_time 312) and a fragmented mono one (16 kHz input, timescale
    /// 16000, no edit) index as one Opus track each, with ffprobe's packet count (16).
    #[test]
    fn ffmpeg_opus_files_index_with_their_audio_track() {
        use crate::media::mp4::parse_mp4;
        use crate::media::track::{Codec, TrackKind};
        let cases: [(&[u8], u8, u32, u32, i64); 2] = [
            (
                include_bytes!("../../../tests/fixtures/mp4/ffmpeg-5.1_opus_stereo.mp4"),
                2,
                48_000,
                48_000,
                312,
            ),
            (
                include_bytes!("../../../tests/fixtures/mp4/ffmpeg-5.1_opus_mono_fragmented.mp4"),
                1,
                16_000,
                16_000,
                0,
            ),
        ];
        for (bytes, channels, input_rate, timescale, edit) in cases {
            let index = parse_mp4(bytes).expect("ffmpeg opus mp4 parses");
            assert!(index.skipped.is_empty(), "{:?}", index.skipped);
            let [t] = &index.tracks[..] else {
                panic!("one track expected: {:?}", index.tracks)
            };
            assert_eq!(t.kind, TrackKind::Audio);
            let Codec::Opus(c) = &t.codec else {
                panic!("not opus: {:?}", t.codec)
            };
            assert_eq!(c.channels, channels);
            assert_eq!(c.pre_skip, 312);
            assert_eq!(c.input_sample_rate_hz, input_rate);
            assert_eq!(t.codec.clock_rate_hz(), 48_000);
            assert_eq!(t.timescale, timescale);
            assert_eq!(t.edit_offset, edit);
            assert_eq!(t.samples.len(), 16);
        }
    }

    #[test]
    fn dops_rejects_bad_input() {
        // Unknown version.
        assert!(matches!(
            parse(&[1, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]).map_err(|e| e.kind),
            Err(Mp4ErrorKind::Unsupported(_))
        ));
        // Zero channels; family 0 with 3 channels.
        assert!(parse(&[0, 0, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]).is_err());
        assert!(parse(&[0, 3, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]).is_err());
        // Truncated at every length.
        let body = [
            0x00, 0x02, 0x01, 0x38, 0x00, 0x00, 0xbb, 0x80, 0x00, 0x00, 0x00,
        ];
        for n in 0..body.len() {
            assert_eq!(
                parse(&body[..n]).map_err(|e| e.kind),
                Err(Mp4ErrorKind::Truncated),
                "{n}"
            );
        }
        // Family 1 whose table runs past the box; coupled > streams.
        assert!(parse(&[0, 6, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 1, 4, 2, 0]).is_err());
        assert!(parse(&[0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 1, 1, 2, 0, 1]).is_err());
    }
}
