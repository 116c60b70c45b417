//! G.711 (µ-law / A-law) in Matroska: the `A_MS/ACM` CodecPrivate (a Microsoft WAVEFORMATEX)
//! and the splitting of each block into RFC 3551 §4.2 20 ms pieces when the index is built.
//!
//! ```text
//! WAVEFORMATEX (little-endian, 18 bytes; ffmpeg's Matroska muxer writes cbSize = 0):
//!   wFormatTag u16 (7 = WAVE_FORMAT_MULAW, 6 = WAVE_FORMAT_ALAW) | nChannels u16
//!   | nSamplesPerSec u32 | nAvgBytesPerSec u32 | nBlockAlign u16 | wBitsPerSample u16
//!   | cbSize u16
//! ```
//!
//! Why split at indexing: the packetizers give every packet of a sample the sample's RTP
//! timestamp, so a block of 1024 G.711 bytes (128 ms, what ffmpeg writes) cannot be cut into
//! packets at send time without per-packet timestamp offsets. Cutting it here into samples of
//! rate/50 × channels bytes (RFC 3551 §4.2: "the default packetization interval MUST have a
//! duration of 20 ms"; the last piece of a block may be shorter), each timed at the block's
//! time plus its first sample's index on the sampling clock, makes one sample one RTP packet
//! whose timestamp is exact (the track's timescale is the sampling rate).

use super::track::{Codec, G711Config, G711Law, Track};

/// WAVEFORMATEX `wFormatTag` of µ-law (WAVE_FORMAT_MULAW, RFC 2361 Appendix A).
pub const WAVE_FORMAT_MULAW: u16 = 0x0007;
/// WAVEFORMATEX `wFormatTag` of A-law (WAVE_FORMAT_ALAW, RFC 2361 Appendix A).
pub const WAVE_FORMAT_ALAW: u16 = 0x0006;
/// Length of a WAVEFORMATEX without `cbSize` (the older WAVEFORMAT + wBitsPerSample).
const WAVEFORMAT_LEN: usize = 16;
/// Largest piece in bytes: 20 ms at 48 kHz stereo is 1920 bytes, over a 1200-byte WebRTC or
/// typical RTSP payload budget; pieces are kept at or under this (whole sample frames).
pub const MAX_PIECE_BYTES: u32 = 1000;

/// Parses an `A_MS/ACM` CodecPrivate as a G.711 WAVEFORMATEX, or says why it is not one.
pub fn parse_waveformatex(p: &[u8]) -> Result<G711Config, String> {
    if p.len() < WAVEFORMAT_LEN {
        return Err(format!(
            "A_MS/ACM CodecPrivate of {} bytes is not a WAVEFORMATEX (16 or more)",
            p.len()
        ));
    }
    let u16_at = |i: usize| u16::from_le_bytes([p[i], p[i + 1]]);
    let tag = u16_at(0);
    let law = match tag {
        WAVE_FORMAT_MULAW => G711Law::Mu,
        WAVE_FORMAT_ALAW => G711Law::A,
        other => {
            return Err(format!(
                "A_MS/ACM format tag {other:#06x} unsupported (only G.711: 6 A-law, 7 µ-law)"
            ))
        }
    };
    let channels = u16_at(2);
    let rate = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    let bits = u16_at(14);
    if bits != 8 {
        return Err(format!(
            "G.711 WAVEFORMATEX with {bits} bits per sample (not 8)"
        ));
    }
    let channels = match u8::try_from(channels) {
        Ok(c) if c > 0 => c,
        _ => return Err(format!("G.711 WAVEFORMATEX with {channels} channels")),
    };
    if rate == 0 {
        return Err("G.711 WAVEFORMATEX with a sampling rate of 0".into());
    }
    Ok(G711Config {
        law,
        sample_rate_hz: rate,
        channels,
    })
}

/// Bytes per piece for `c`: 20 ms (rate/50 samples, at least 1) of every channel, at most
/// [`MAX_PIECE_BYTES`] rounded down to whole sample frames (at least one frame).
pub fn piece_bytes(c: &G711Config) -> u32 {
    let ch = u32::from(c.channels.max(1));
    let frames = (c.sample_rate_hz / 50).max(1);
    let cap = (MAX_PIECE_BYTES / ch).max(1);
    frames.min(cap) * ch
}

/// How many pieces splitting `track` would make (0 for a track that is not G.711).
pub fn piece_count(track: &Track) -> usize {
    let Codec::G711(c) = &track.codec else {
        return 0;
    };
    let piece = piece_bytes(c);
    track
        .samples
        .iter()
        .map(|s| s.len.div_ceil(piece).max(1) as usize)
        .sum()
}

/// Splits each sample (block) of a G.711 track into pieces of [`piece_bytes`]: piece k of a
/// block starts at byte k × piece and `k × piece / channels` ticks after the block (the
/// track's timescale is the sampling rate, so the times are exact). Other tracks are left as
/// they are. A block whose length is not whole sample frames keeps its odd tail in its last
/// piece.
pub fn split_track(track: &mut Track) {
    let Codec::G711(c) = &track.codec else {
        return;
    };
    let piece = piece_bytes(c);
    let ch = u32::from(c.channels.max(1));
    let mut out = Vec::with_capacity(piece_count(track));
    for s in &track.samples {
        let mut done = 0u32;
        loop {
            let len = piece.min(s.len - done);
            let mut p = *s;
            p.offset = s.offset + u64::from(done);
            p.len = len;
            p.dts = s.dts.saturating_add(u64::from(done / ch));
            out.push(p);
            done += len;
            if done >= s.len {
                break;
            }
        }
    }
    track.samples = out;
}

/// Fuzz entry point: parses `data` as an `A_MS/ACM` CodecPrivate and, when it is G.711,
/// splits a block of the remaining bytes' length; must never panic.
#[cfg(any(test, fuzzing))]
pub fn fuzz_parse_waveformatex(data: &[u8]) {
    let Ok(c) = parse_waveformatex(data) else {
        return;
    };
    let piece = piece_bytes(&c);
    assert!(piece > 0 && piece.is_multiple_of(u32::from(c.channels)));
    assert!(piece <= MAX_PIECE_BYTES.max(u32::from(c.channels)));
    let len = u32::try_from(data.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(97);
    let mut t = Track {
        track_id: 1,
        kind: super::track::TrackKind::Audio,
        codec: Codec::G711(c),
        timescale: c.sample_rate_hz,
        edit_offset: 0,
        samples: vec![super::track::Sample {
            offset: 3,
            len,
            dts: u64::MAX - 5,
            cts_offset: 0,
            sync: true,
        }],
    };
    let n = piece_count(&t);
    split_track(&mut t);
    assert_eq!(t.samples.len(), n);
    assert_eq!(
        t.samples.iter().map(|s| u64::from(s.len)).sum::<u64>(),
        u64::from(len)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::track::{Sample, TrackKind};

    fn wfx(tag: u16, ch: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&ch.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&rate.wrapping_mul(u32::from(ch)).to_le_bytes());
        v.extend_from_slice(&ch.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v
    }

    #[test]
    fn waveformatex() {
        // What ffmpeg writes for -c:a pcm_mulaw -ar 8000 -ac 1 (dumped from a file).
        let ffmpeg = [
            0x07, 0x00, 0x01, 0x00, 0x40, 0x1f, 0x00, 0x00, 0x40, 0x1f, 0x00, 0x00, 0x01, 0x00,
            0x08, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            parse_waveformatex(&ffmpeg),
            Ok(G711Config {
                law: G711Law::Mu,
                sample_rate_hz: 8000,
                channels: 1
            })
        );
        let a = parse_waveformatex(&wfx(6, 2, 16_000, 8)).unwrap();
        assert_eq!(
            (a.law, a.sample_rate_hz, a.channels),
            (G711Law::A, 16_000, 2)
        );
        // 16 bytes (no cbSize) is enough.
        assert!(parse_waveformatex(&wfx(7, 1, 8000, 8)[..16]).is_ok());
        // Short, other tags (PCM 1, ADPCM 2, MP3 0x55), lying fields.
        for n in 0..16 {
            let e = parse_waveformatex(&ffmpeg[..n]).unwrap_err();
            assert!(e.contains("not a WAVEFORMATEX"), "{e}");
        }
        for tag in [1u16, 2, 0x55, 0xfffe] {
            let e = parse_waveformatex(&wfx(tag, 1, 8000, 8)).unwrap_err();
            assert!(e.contains("format tag"), "{e}");
        }
        assert!(parse_waveformatex(&wfx(7, 1, 8000, 16))
            .unwrap_err()
            .contains("16 bits"));
        assert!(parse_waveformatex(&wfx(7, 0, 8000, 8))
            .unwrap_err()
            .contains("0 channels"));
        assert!(parse_waveformatex(&wfx(6, 300, 8000, 8))
            .unwrap_err()
            .contains("300 channels"));
        assert!(parse_waveformatex(&wfx(7, 1, 0, 8))
            .unwrap_err()
            .contains("rate of 0"));
        // Any bytes, and the fuzz target's body on the seeds and mutations: no panic.
        for n in 0..40 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_waveformatex(&junk);
            fuzz_parse_waveformatex(&junk);
        }
        let seed = wfx(7, 1, 8000, 8);
        for i in 0..seed.len() {
            for v in [0u8, 1, 2, 6, 7, 8, 0x7f, 0xff] {
                let mut m = seed.clone();
                m[i] = v;
                fuzz_parse_waveformatex(&m);
            }
        }
        fuzz_parse_waveformatex(&wfx(6, 255, u32::MAX, 8));
        fuzz_parse_waveformatex(&wfx(6, 255, 1, 8));
    }

    fn track(c: G711Config, blocks: &[(u64, u32, u64)]) -> Track {
        Track {
            track_id: 2,
            kind: TrackKind::Audio,
            codec: Codec::G711(c),
            timescale: c.sample_rate_hz,
            edit_offset: 0,
            samples: blocks
                .iter()
                .map(|&(offset, len, dts)| Sample {
                    offset,
                    len,
                    dts,
                    cts_offset: 0,
                    sync: true,
                })
                .collect(),
        }
    }

    #[test]
    fn blocks_split_into_20ms_pieces() {
        let mono = G711Config {
            law: G711Law::Mu,
            sample_rate_hz: 8000,
            channels: 1,
        };
        assert_eq!(piece_bytes(&mono), 160);
        // ffmpeg's 1024-byte blocks, 128 ms apart; the second starts off the 20 ms grid.
        let mut t = track(
            mono,
            &[(100, 1024, 0), (2000, 1024, 1024), (5000, 10, 2048)],
        );
        assert_eq!(piece_count(&t), 7 + 7 + 1);
        split_track(&mut t);
        let got: Vec<(u64, u32, u64)> =
            t.samples.iter().map(|s| (s.offset, s.len, s.dts)).collect();
        let mut want = Vec::new();
        for (base, dts) in [(100u64, 0u64), (2000, 1024)] {
            for k in 0..6u64 {
                want.push((base + 160 * k, 160, dts + 160 * k));
            }
            want.push((base + 960, 64, dts + 960));
        }
        want.push((5000, 10, 2048));
        assert_eq!(got, want);
        assert!(t.samples.iter().all(|s| s.sync && s.cts_offset == 0));

        // Stereo 16 kHz: 320 frames × 2 = 640 bytes, timed in frames.
        let stereo = G711Config {
            law: G711Law::A,
            sample_rate_hz: 16_000,
            channels: 2,
        };
        assert_eq!(piece_bytes(&stereo), 640);
        let mut t = track(stereo, &[(0, 1300, 500)]);
        split_track(&mut t);
        let got: Vec<(u64, u32, u64)> =
            t.samples.iter().map(|s| (s.offset, s.len, s.dts)).collect();
        assert_eq!(got, vec![(0, 640, 500), (640, 640, 820), (1280, 20, 1140)]);

        // 48 kHz stereo: 20 ms is 1920 bytes, capped at 1000 (500 frames).
        let big = G711Config {
            law: G711Law::A,
            sample_rate_hz: 48_000,
            channels: 2,
        };
        assert_eq!(piece_bytes(&big), 1000);
        // Tiny rates and many channels still make whole frames of at least one.
        let tiny = G711Config {
            law: G711Law::Mu,
            sample_rate_hz: 10,
            channels: 255,
        };
        assert_eq!(piece_bytes(&tiny), 255);
        let wide = G711Config {
            law: G711Law::Mu,
            sample_rate_hz: 8000,
            channels: 7,
        };
        assert!(piece_bytes(&wide).is_multiple_of(7));
        // An empty block stays one empty sample (the packetizer refuses it at send time).
        let mut t = track(mono, &[(0, 0, 0)]);
        split_track(&mut t);
        assert_eq!(t.samples.len(), 1);
    }
}
