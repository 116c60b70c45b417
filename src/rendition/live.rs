//! Opus for WebRTC viewers of a live stream whose audio is AAC (an RTMP or RTSP publisher, a
//! pulled camera): browsers decode Opus, not AAC (issue 17 item 4). The ingest side runs one
//! [`LiveOpus`] per such stream — once per stream, never per viewer — and writes its frames
//! into the stream's live log as a track only WebRTC viewers are given.
//!
//! The pipeline is the file renditions' (`super::transcode`): AAC access unit → PCM
//! (symphonia) → 48 kHz (our resampler, when the source is not 48 kHz) → 20 ms Opus frames
//! (opus-rs, the same encoder settings). Timing follows the source: the first frame's
//! presentation time, rescaled to 48 kHz, is the Opus track's origin; frames then follow
//! 960 samples apart, and a gap in the source (a lost frame, a publisher that paused) of more
//! than one frame restarts the timeline at the next frame's time, so audio stays in step
//! with the video it was captured with. A frame that does not decode becomes silence.
//! Latency added: at most one 20 ms Opus frame of buffering plus the resampler's few
//! milliseconds of filter delay, and the encoder's 6.5 ms lookahead.

use opus_rs::OpusEncoder;
use symphonia_codec_aac::AacDecoder;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration as SymDuration, Timestamp};

use super::resample::Resampler;
use super::transcode::{mix_channels, opus_encoder, FRAME, OPUS_RATE_HZ};
use super::RenditionError;
use crate::media::track::{AacConfig, OpusConfig};

/// Samples per AAC-LC access unit (ISO/IEC 14496-3 §4.5.1.1).
const AAC_FRAME: i64 = 1024;

/// One encoded Opus frame: its presentation time at 48 kHz and its bytes (valid until the
/// next call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusFrame<'a> {
    /// Presentation time, 48 kHz ticks on the source's timeline.
    pub pts: i64,
    /// One Opus packet (RFC 6716 §3).
    pub data: &'a [u8],
}

/// A live AAC → Opus transcoder for one stream.
pub struct LiveOpus {
    decoder: AacDecoder,
    in_rate: u32,
    channels: usize,
    resampler: Option<Resampler>,
    encoder: OpusEncoder,
    /// Decoded (and mixed) PCM of the current frame; resampled PCM.
    pcm: Vec<f32>,
    mixed: Vec<f32>,
    resampled: Vec<f32>,
    /// The 20 ms frame being filled (interleaved, 48 kHz).
    frame: Vec<f32>,
    packet: [u8; 1500],
    /// The source time (input samples) the next AAC frame is expected at.
    expected_in: Option<i64>,
    /// The 48 kHz time of the first sample of `frame`.
    frame_pts: i64,
    /// AAC frames that did not decode (silence instead).
    pub corrupt_frames: u64,
}

impl std::fmt::Debug for LiveOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOpus")
            .field("in_rate", &self.in_rate)
            .field("channels", &self.channels)
            .field("corrupt_frames", &self.corrupt_frames)
            .finish_non_exhaustive()
    }
}

impl LiveOpus {
    /// A transcoder for AAC described by `aac` (its AudioSpecificConfig). Fails for AAC the
    /// decoder does not handle (HE-AAC, more than two channels from a PCE).
    pub fn new(aac: &AacConfig) -> Result<LiveOpus, RenditionError> {
        let in_rate = aac.sample_rate_hz.max(1);
        let channels = aac.channels.clamp(1, 2);
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_sample_rate(in_rate)
            .with_extra_data(aac.audio_specific_config.clone().into_boxed_slice());
        let decoder = AacDecoder::try_new(&params, &AudioDecoderOptions::default())
            .map_err(|e| RenditionError::UnsupportedAac(e.to_string()))?;
        Ok(LiveOpus {
            decoder,
            in_rate,
            channels: usize::from(channels),
            resampler: (in_rate != OPUS_RATE_HZ)
                .then(|| Resampler::new(in_rate, OPUS_RATE_HZ, usize::from(channels))),
            encoder: opus_encoder(channels)?,
            pcm: Vec::with_capacity(2048 * 2),
            mixed: Vec::with_capacity(2048 * 2),
            resampled: Vec::with_capacity(4096 * 2),
            frame: Vec::with_capacity(FRAME * 2),
            packet: [0; 1500],
            expected_in: None,
            frame_pts: 0,
            corrupt_frames: 0,
        })
    }

    /// The Opus track's configuration (RFC 7587 carries no PreSkip; this is for the log's
    /// facade and any fMP4 made of it).
    pub fn config(&self) -> OpusConfig {
        OpusConfig {
            channels: self.channels as u8,
            pre_skip: super::PRE_SKIP,
            input_sample_rate_hz: self.in_rate,
            output_gain: 0,
            channel_mapping_family: 0,
            channel_mapping_table: Vec::new(),
        }
    }

    /// One AAC access unit presented at `pts` (ticks of the source's `in_rate` clock, as the
    /// log's AAC track stamps it): calls `emit` for every Opus frame it completes.
    pub fn push(&mut self, pts: i64, aac: &[u8], emit: &mut dyn FnMut(OpusFrame<'_>)) {
        let continuous = self
            .expected_in
            .is_some_and(|e| (pts - e).abs() <= AAC_FRAME);
        if !continuous {
            // The first frame, or a gap or jump: a new timeline from this frame's time (the
            // partial frame and the resampler's tail of the old one are dropped).
            self.frame.clear();
            if let Some(r) = &mut self.resampler {
                *r = Resampler::new(self.in_rate, OPUS_RATE_HZ, self.channels);
            }
            self.frame_pts = rescale(pts, self.in_rate, OPUS_RATE_HZ);
        }
        let packet = PacketRef::new(
            0,
            Timestamp::new(pts),
            SymDuration::new(AAC_FRAME as u64),
            aac,
        );
        self.pcm.clear();
        let decoded = match self.decoder.decode_ref(&packet) {
            // A frame that decodes to nothing (symphonia takes an empty payload) keeps its
            // time as silence, like one that fails.
            Ok(buf) if buf.frames() > 0 => {
                let channels = buf.spec().channels().count().max(1);
                buf.copy_to_vec_interleaved::<f32>(&mut self.pcm);
                Some(channels)
            }
            Ok(_) | Err(_) => None,
        };
        let frames = match decoded {
            Some(from) => {
                self.mixed.clear();
                if from == self.channels {
                    std::mem::swap(&mut self.mixed, &mut self.pcm);
                } else {
                    mix_channels(&self.pcm, from, self.channels, &mut self.mixed);
                }
                self.mixed.len() / self.channels
            }
            None => {
                // What players do: a frame that does not decode is silence of its length,
                // and the decoder starts afresh.
                self.corrupt_frames += 1;
                self.decoder.reset();
                self.mixed.clear();
                self.mixed.resize(AAC_FRAME as usize * self.channels, 0.0);
                AAC_FRAME as usize
            }
        };
        self.expected_in = Some(pts + frames as i64);
        self.resampled.clear();
        let at48: &[f32] = match &mut self.resampler {
            Some(r) => {
                r.push(&self.mixed, &mut self.resampled);
                &self.resampled
            }
            None => &self.mixed,
        };
        let frame_len = FRAME * self.channels;
        let mut rest = at48;
        while !rest.is_empty() {
            let take = (frame_len - self.frame.len()).min(rest.len());
            self.frame.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.frame.len() == frame_len {
                let n = self
                    .encoder
                    .encode(&self.frame, FRAME, &mut self.packet)
                    .unwrap_or(0);
                self.frame.clear();
                if let Some(data) = self.packet.get(..n).filter(|d| !d.is_empty()) {
                    emit(OpusFrame {
                        pts: self.frame_pts,
                        data,
                    });
                }
                self.frame_pts += FRAME as i64;
            }
        }
    }
}

/// `t` ticks of `from` Hz in ticks of `to` Hz (rounded down).
fn rescale(t: i64, from: u32, to: u32) -> i64 {
    let v = i128::from(t) * i128::from(to) / i128::from(from.max(1));
    i64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ffmpeg's AAC-LC encoding of a 440 Hz tone, 48 kHz stereo: its AudioSpecificConfig
    /// and frames come from the bundled sample's first AAC track.
    fn sample_aac() -> (AacConfig, Vec<(i64, Vec<u8>)>) {
        let media =
            crate::media::MediaFile::from_static("sample", crate::media::library::SAMPLE_MP4)
                .unwrap();
        let track = media
            .index
            .tracks
            .iter()
            .find(|t| matches!(t.codec, crate::media::track::Codec::Aac(_)))
            .unwrap();
        let crate::media::track::Codec::Aac(config) = &track.codec else {
            unreachable!()
        };
        let bytes = media.bytes.as_slice();
        let frames = track
            .samples
            .iter()
            .map(|s| {
                let o = s.offset as usize;
                (s.dts as i64, bytes[o..o + s.len as usize].to_vec())
            })
            .collect();
        (config.clone(), frames)
    }

    #[test]
    fn a_live_aac_track_becomes_20_ms_opus_frames_on_its_own_timeline() {
        let (config, frames) = sample_aac();
        let mut live = LiveOpus::new(&config).unwrap();
        let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
        // The log's pts origin is arbitrary (an unfolded RTP timestamp).
        let origin = 1_000_000;
        for (dts, data) in &frames {
            live.push(origin + dts, data, &mut |f| {
                out.push((f.pts, f.data.to_vec()))
            });
        }
        assert_eq!(live.corrupt_frames, 0);
        let in_rate = i64::from(config.sample_rate_hz);
        let audio_48k = frames.len() as i64 * 1024 * 48_000 / in_rate;
        // Every whole 20 ms of the input is out (the last partial frame waits).
        assert!(
            (out.len() as i64 - audio_48k / 960).abs() <= 1,
            "{} frames for {audio_48k} samples",
            out.len()
        );
        assert_eq!(out[0].0, origin * 48_000 / in_rate);
        assert!(out.windows(2).all(|w| w[1].0 - w[0].0 == 960));
        // Each is an Opus packet a decoder takes: TOC byte (RFC 6716 §3.1) of a 20 ms frame
        // (config 31 CELT FB 20 ms, or SILK/hybrid 20 ms configs: 1, 5, 9, 13, 15).
        for (_, p) in &out {
            let config = p[0] >> 3;
            assert!(
                [1, 5, 9, 13, 15, 31, 19, 23, 27].contains(&config),
                "toc {:#x}",
                p[0]
            );
        }
    }

    #[test]
    fn a_gap_restarts_the_timeline_and_garbage_is_silence() {
        let (config, frames) = sample_aac();
        let mut live = LiveOpus::new(&config).unwrap();
        let mut out: Vec<i64> = Vec::new();
        for (dts, data) in frames.iter().take(50) {
            live.push(*dts, data, &mut |f| out.push(f.pts));
        }
        let before = out.len();
        // Ten seconds later (a publisher that paused), then a frame that does not decode (empty).
        let later = 10 * i64::from(config.sample_rate_hz);
        for (k, (dts, data)) in frames.iter().skip(50).take(50).enumerate() {
            let data: &[u8] = if k == 3 { &[] } else { data };
            live.push(later + dts, data, &mut |f| out.push(f.pts));
        }
        // (symphonia decodes an empty frame to a frame of output: either way its time is kept)
        let jump = out[before];
        let expected = (later + frames[50].0) * 48_000 / i64::from(config.sample_rate_hz);
        assert!((jump - expected).abs() < 960, "{jump} vs {expected}");
        assert!(out[before..].windows(2).all(|w| w[1] - w[0] == 960));
    }
}
