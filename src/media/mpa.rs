//! The MPEG audio frame header (ISO/IEC 11172-3 §2.4.1.3, extended by ISO/IEC 13818-3 and
//! the unofficial MPEG-2.5): read from a track's first frame for the catalog's sampling rate
//! and channel count, which the container may not tell truly (MP4 writers put 2 in every
//! `mp4a` sample entry's channelcount).

use super::track::{Codec, MediaIndex};

/// Sampling rate and channel count from the 4-byte header at the start of `frame`, `None`
/// when it is not a valid header (no sync word, reserved version, layer or rate).
pub fn frame_header(frame: &[u8]) -> Option<(u32, u8)> {
    let h = frame.get(..4)?;
    // 11-bit syncword, all ones.
    if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    // ID bits: 11 MPEG-1, 10 MPEG-2 (half rates), 00 MPEG-2.5 (quarter rates), 01 reserved.
    let divisor = match (h[1] >> 3) & 0x03 {
        0b11 => 1,
        0b10 => 2,
        0b00 => 4,
        _ => return None,
    };
    // Layer 00 is reserved.
    if (h[1] >> 1) & 0x03 == 0 {
        return None;
    }
    let rate = match (h[2] >> 2) & 0x03 {
        0 => 44_100,
        1 => 48_000,
        2 => 32_000,
        _ => return None,
    } / divisor;
    // mode 11 is single channel; the other three (stereo, joint, dual) are two.
    let channels = if h[3] >> 6 == 0b11 { 1 } else { 2 };
    Some((rate, channels))
}

/// Sets each MPEG audio track's rate and channels from its first frame's header when that
/// header is valid (`bytes` are the file's bytes the samples point into); a track whose first
/// frame is not a valid header keeps the container's values.
pub fn apply_frame_headers(index: &mut MediaIndex, bytes: &[u8]) {
    for t in &mut index.tracks {
        let Codec::MpegAudio(c) = &mut t.codec else {
            continue;
        };
        let Some(first) = t.samples.first() else {
            continue;
        };
        let Ok(start) = usize::try_from(first.offset) else {
            continue;
        };
        let end = start.saturating_add(first.len as usize).min(bytes.len());
        if let Some((rate, channels)) = bytes.get(start..end).and_then(frame_header) {
            c.sample_rate_hz = rate;
            c.channels = channels;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, joint stereo.
        assert_eq!(frame_header(&[0xff, 0xfb, 0x90, 0x64]), Some((44_100, 2)));
        // MPEG-1 layer III, 48 kHz, single channel.
        assert_eq!(frame_header(&[0xff, 0xfb, 0x94, 0xc4]), Some((48_000, 1)));
        // MPEG-2 layer III, 24 kHz; MPEG-2.5, 8 kHz.
        assert_eq!(frame_header(&[0xff, 0xf3, 0x84, 0xc4]), Some((24_000, 1)));
        assert_eq!(frame_header(&[0xff, 0xe3, 0x88, 0x00]), Some((8_000, 2)));
        // Truncated, no sync, reserved version, layer, rate.
        assert_eq!(frame_header(&[0xff, 0xfb, 0x90]), None);
        assert_eq!(frame_header(&[0x7f, 0xfb, 0x90, 0x64]), None);
        assert_eq!(frame_header(&[0xff, 0xeb, 0x90, 0x64]), None);
        assert_eq!(frame_header(&[0xff, 0xf9, 0x90, 0x64]), None);
        assert_eq!(frame_header(&[0xff, 0xfb, 0x9c, 0x64]), None);
    }

    /// A lying sample table (first frame past the end, truncated, or not a header) keeps the
    /// container's values and does not panic.
    #[test]
    fn lying_first_frames_keep_the_container_values() {
        use crate::media::track::{MpegAudioConfig, Sample, Track, TrackKind};
        let container = MpegAudioConfig {
            sample_rate_hz: 44_100,
            channels: 2,
        };
        let bytes = [0u8, 0, 0xff, 0xfb, 0x94, 0xc4, 1, 2];
        for (offset, len, want) in [
            (u64::MAX, 4, container),
            (6, 100, container),
            (5, 3, container),
            (0, 8, container),
            (
                2,
                u32::MAX,
                MpegAudioConfig {
                    sample_rate_hz: 48_000,
                    channels: 1,
                },
            ),
        ] {
            let mut index = MediaIndex {
                tracks: vec![Track {
                    track_id: 1,
                    kind: TrackKind::Audio,
                    codec: Codec::MpegAudio(container),
                    timescale: 48_000,
                    edit_offset: 0,
                    samples: vec![Sample {
                        offset,
                        len,
                        ..Sample::default()
                    }],
                }],
                skipped: Vec::new(),
            };
            apply_frame_headers(&mut index, &bytes);
            assert_eq!(
                index.tracks[0].codec,
                Codec::MpegAudio(want),
                "{offset} {len}"
            );
        }
    }
}
