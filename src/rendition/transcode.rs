//! The rendition pipeline: AAC access units (from the mapping) → PCM (symphonia) → 48 kHz
//! (when needed) → 20 ms Opus frames (opus-rs) → fragmented MP4 (the recorder's
//! [`FragmentWriter`], which writes the `Opus`/`dOps` sample entry like any other codec).

use std::io::Write;
use std::time::Duration;

use opus_rs::{Application, OpusEncoder};
use symphonia_codec_aac::AacDecoder;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration as SymDuration, Timestamp};

use super::resample::Resampler;
use super::{RenditionError, RenditionReport};
use crate::ingest::record::{FragmentWriter, RecordSample, RecordTrack, TrackFragment};
use crate::media::track::{Codec, MediaIndex, OpusConfig, Track, TrackKind};

/// Opus's sampling rate in this encapsulation and on the RTP clock (RFC 7587 §4.1).
pub(super) const OPUS_RATE_HZ: u32 = 48_000;
/// Samples per channel in one 20 ms Opus frame at 48 kHz.
pub(super) const FRAME: usize = 960;
/// The encoder's lookahead at 48 kHz, written as `dOps` PreSkip: libopus's
/// `OPUS_GET_LOOKAHEAD` for the audio application is `Fs/400 + Fs/250` (2.5 ms CELT
/// overlap + 4 ms delay compensation) = 312, and opus-rs, its port, keeps both delays.
/// The ffmpeg-made file in the `dops` tests carries the same 312.
pub const PRE_SKIP: u16 = 312;
/// Opus frames per MP4 fragment (5 s): a `trun` entry per frame costs 16 bytes.
const FRAMES_PER_FRAGMENT: usize = 250;
/// Samples per AAC-LC access unit (ISO/IEC 14496-3 §4.5.1.1, `frameLengthFlag` 0).
const AAC_FRAME: u64 = 1024;

/// Transcodes the first AAC track of `bytes` (indexed as `index`) into an Opus MP4 written
/// to `out` (init segment, then one fragment per 5 s). Corrupt AAC frames become silence and
/// are counted in the report; they do not fail the file.
pub fn transcode_to_opus_mp4<W: Write>(
    bytes: &[u8],
    index: &MediaIndex,
    out: &mut W,
) -> Result<RenditionReport, RenditionError> {
    let (track, aac) = index
        .tracks
        .iter()
        .find_map(|t| match &t.codec {
            Codec::Aac(a) => Some((t, a)),
            _ => None,
        })
        .ok_or(RenditionError::NoAacTrack)?;
    let in_rate = aac.sample_rate_hz;
    let channels = aac.channels.clamp(1, 2);
    let mut params = AudioCodecParameters::new();
    params
        .for_codec(CODEC_ID_AAC)
        .with_sample_rate(in_rate)
        .with_extra_data(aac.audio_specific_config.clone().into_boxed_slice());
    let mut decoder = AacDecoder::try_new(&params, &AudioDecoderOptions::default())
        .map_err(|e| RenditionError::UnsupportedAac(e.to_string()))?;

    // Silence (leading gap, holes, corrupt frames) never exceeds the track's own decode span
    // plus a minute.
    let span_ticks = match (track.samples.first(), track.samples.last()) {
        (Some(a), Some(b)) => b.dts.saturating_sub(a.dts),
        _ => 0,
    };
    let span = u64::try_from(ticks_to_samples(
        i64::try_from(span_ticks).unwrap_or(i64::MAX),
        track.timescale,
        in_rate,
    ))
    .unwrap_or(0);
    let budget = span.saturating_add(60 * u64::from(in_rate));
    let mut sink = OpusSink::new(channels, in_rate, budget, out)?;
    let mut report = RenditionReport {
        source_track_id: track.track_id,
        source_sample_rate_hz: in_rate,
        channels,
        aac_frames: 0,
        corrupt_frames: 0,
        opus_frames: 0,
        duration: Duration::ZERO,
        mp4_bytes: 0,
    };
    let to_input = |ticks: i64| ticks_to_samples(ticks, track.timescale, in_rate);
    let first_dts = track.samples.first().map_or(0, |s| s.dts);
    // Where the decoded PCM starts on the presentation timeline (input samples): below zero
    // for AAC priming (the edit list skips it), above for a leading gap (silence).
    let start = to_input(first_dts as i64 - track.edit_offset);
    sink.set_start(start)?;
    let mut decoded: i64 = 0; // input samples decoded (or filled) since `first_dts`
    let mut pcm: Vec<f32> = Vec::with_capacity(2048 * 2);
    for (k, s) in track.samples.iter().enumerate() {
        // A hole in the decode times (a dropped frame in a recording) becomes silence, so
        // later frames keep their time.
        let at = to_input(s.dts.saturating_sub(first_dts) as i64);
        if at > decoded + AAC_FRAME as i64 / 2 {
            sink.push_silence((at - decoded) as u64)?;
            decoded = at;
        }
        report.aac_frames += 1;
        let data = usize::try_from(s.offset)
            .ok()
            .and_then(|o| bytes.get(o..o.checked_add(s.len as usize)?));
        let frame_dur = sample_duration(track, k);
        let decoded_ok = data.and_then(|data| {
            let packet = PacketRef::new(
                0,
                Timestamp::new(s.dts as i64),
                SymDuration::new(AAC_FRAME),
                data,
            );
            let buf = decoder.decode_ref(&packet).ok()?;
            let frames = buf.frames();
            let buf_channels = buf.spec().channels().count().max(1);
            pcm.clear();
            buf.copy_to_vec_interleaved::<f32>(&mut pcm);
            Some((frames, buf_channels))
        });
        match decoded_ok {
            Some((frames, buf_channels)) => {
                sink.push_pcm(&pcm, buf_channels)?;
                decoded += frames as i64;
            }
            None => {
                // A corrupt frame: silence of its duration, and a fresh decoder state (the
                // overlap it would add to the next frame is garbage).
                report.corrupt_frames += 1;
                decoder.reset();
                let n = to_input(frame_dur as i64).max(0) as u64;
                let n = if n == 0 { AAC_FRAME } else { n };
                sink.push_silence(n)?;
                decoded += n as i64;
            }
        }
    }
    let (opus_frames, out_samples, mp4_bytes) = sink.finish()?;
    report.opus_frames = opus_frames;
    report.duration = Duration::from_nanos(out_samples * 1_000_000_000 / u64::from(OPUS_RATE_HZ));
    report.mp4_bytes = mp4_bytes;
    if report.corrupt_frames > 0 {
        tracing::warn!(
            corrupt = report.corrupt_frames,
            frames = report.aac_frames,
            "aac frames that did not decode were replaced by silence in the opus rendition"
        );
    }
    Ok(report)
}

/// The Opus encoder every rendition uses: 48 kHz, the audio application, 64 kbit/s VBR for
/// stereo (32 for mono), complexity 10.
pub(super) fn opus_encoder(channels: u8) -> Result<OpusEncoder, RenditionError> {
    let mut encoder = OpusEncoder::new(
        OPUS_RATE_HZ as i32,
        usize::from(channels),
        Application::Audio,
    )
    .map_err(RenditionError::Encoder)?;
    encoder.bitrate_bps = if channels == 2 { 64_000 } else { 32_000 };
    encoder.complexity = 10;
    encoder.use_cbr = false;
    Ok(encoder)
}

/// Appends `pcm` (interleaved, `from` channels) to `out` as `to` channels (1 or 2): mono is
/// the mean, stereo the first two (a mono source doubled).
pub(super) fn mix_channels(pcm: &[f32], from: usize, to: usize, out: &mut Vec<f32>) {
    for f in pcm.chunks_exact(from.max(1)) {
        if to == 1 {
            out.push(f.iter().sum::<f32>() / f.len() as f32);
        } else {
            out.push(f[0]);
            out.push(f.get(1).copied().unwrap_or(f[0]));
        }
    }
}

/// Converts track ticks to input samples (rounded to nearest, sign kept).
fn ticks_to_samples(ticks: i64, timescale: u32, rate: u32) -> i64 {
    let ts = i128::from(timescale.max(1));
    let v = i128::from(ticks) * i128::from(rate);
    let r = if v >= 0 {
        (v + ts / 2) / ts
    } else {
        (v - ts / 2) / ts
    };
    i64::try_from(r).unwrap_or(if r < 0 { i64::MIN } else { i64::MAX })
}

/// Decode duration of sample `k` (to the next sample; the last as long as the one before).
fn sample_duration(track: &Track, k: usize) -> u64 {
    crate::hls::fmp4::sample_duration(track, k)
}

/// PCM in (input rate, any position on the timeline), Opus MP4 out.
struct OpusSink<'w, W: Write> {
    channels: usize,
    /// Input samples still to drop before presentation time zero.
    skip: u64,
    resampler: Option<Resampler>,
    resampled: Vec<f32>,
    /// The 20 ms frame being filled (interleaved, 48 kHz).
    frame: Vec<f32>,
    encoder: OpusEncoder,
    packet: [u8; 1500],
    /// 48 kHz samples per channel handed to the encoder (before padding).
    out_samples: u64,
    frames: u64,
    writer: FragmentWriter,
    /// The current fragment's packets, back to back, and their lengths.
    pending: Vec<u8>,
    pending_lens: Vec<usize>,
    base_decode_time: u64,
    out: &'w mut W,
    written: u64,
    /// Input samples of silence still allowed (see `push_silence`).
    silence_budget: u64,
}

impl<'w, W: Write> OpusSink<'w, W> {
    fn new(
        channels: u8,
        in_rate: u32,
        silence_budget: u64,
        out: &'w mut W,
    ) -> Result<Self, RenditionError> {
        let encoder = opus_encoder(channels)?;
        let codec = Codec::Opus(OpusConfig {
            channels,
            pre_skip: PRE_SKIP,
            input_sample_rate_hz: in_rate,
            output_gain: 0,
            channel_mapping_family: 0,
            channel_mapping_table: Vec::new(),
        });
        let track = RecordTrack {
            kind: TrackKind::Audio,
            codec,
            timescale: OPUS_RATE_HZ,
        };
        // The edit list starts presentation PreSkip samples into the media (Opus in ISOBMFF
        // §4.4), so the first decoded sample that is not lookahead plays at time zero.
        let writer = FragmentWriter::with_presentation_starts(&[track], &[u64::from(PRE_SKIP)])?;
        let mut init = Vec::new();
        writer.init_segment(&mut init);
        let mut sink = Self {
            channels: usize::from(channels),
            skip: 0,
            resampler: (in_rate != OPUS_RATE_HZ)
                .then(|| Resampler::new(in_rate, OPUS_RATE_HZ, usize::from(channels))),
            resampled: Vec::new(),
            frame: Vec::with_capacity(FRAME * 2),
            encoder,
            packet: [0; 1500],
            out_samples: 0,
            frames: 0,
            writer,
            pending: Vec::new(),
            pending_lens: Vec::new(),
            base_decode_time: 0,
            out,
            written: 0,
            silence_budget,
        };
        sink.write(&init)?;
        Ok(sink)
    }

    /// Places the first pushed sample at `start` input samples on the presentation timeline:
    /// a negative start drops that many samples, a positive one plays silence first.
    fn set_start(&mut self, start: i64) -> Result<(), RenditionError> {
        if start < 0 {
            self.skip = start.unsigned_abs();
            Ok(())
        } else {
            self.push_silence(start as u64)
        }
    }

    fn push_silence(&mut self, samples: u64) -> Result<(), RenditionError> {
        // Hostile timing (a huge edit or decode-time jump) must not make us encode hours of
        // silence: all the silence of a file together stays within its budget.
        let samples = samples.min(self.silence_budget);
        self.silence_budget -= samples;
        let block = vec![0.0f32; 1024 * self.channels];
        let mut left = samples;
        while left > 0 {
            let n = left.min(1024);
            self.push_interleaved(&block[..n as usize * self.channels])?;
            left -= n;
        }
        Ok(())
    }

    /// Decoded PCM with `buf_channels` channels, mixed to the track's channel count.
    fn push_pcm(&mut self, pcm: &[f32], buf_channels: usize) -> Result<(), RenditionError> {
        if buf_channels == self.channels {
            return self.push_interleaved(pcm);
        }
        let mut mixed = Vec::with_capacity(pcm.len() / buf_channels * self.channels);
        mix_channels(pcm, buf_channels, self.channels, &mut mixed);
        self.push_interleaved(&mixed)
    }

    fn push_interleaved(&mut self, mut pcm: &[f32]) -> Result<(), RenditionError> {
        let frames = (pcm.len() / self.channels) as u64;
        if self.skip > 0 {
            let drop = self.skip.min(frames);
            self.skip -= drop;
            pcm = &pcm[drop as usize * self.channels..];
        }
        if pcm.is_empty() {
            return Ok(());
        }
        let mut resampled = std::mem::take(&mut self.resampled);
        resampled.clear();
        let at48 = match &mut self.resampler {
            Some(r) => {
                r.push(pcm, &mut resampled);
                &resampled[..]
            }
            None => pcm,
        };
        let result = self.push48(at48);
        self.resampled = resampled;
        result
    }

    /// 48 kHz interleaved PCM into 20 ms frames.
    fn push48(&mut self, mut pcm: &[f32]) -> Result<(), RenditionError> {
        self.out_samples += (pcm.len() / self.channels) as u64;
        let frame_len = FRAME * self.channels;
        while !pcm.is_empty() {
            let take = (frame_len - self.frame.len()).min(pcm.len());
            self.frame.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.frame.len() == frame_len {
                self.encode_frame()?;
            }
        }
        Ok(())
    }

    fn encode_frame(&mut self) -> Result<(), RenditionError> {
        let n = self
            .encoder
            .encode(&self.frame, FRAME, &mut self.packet)
            .map_err(RenditionError::Encoder)?;
        self.frame.clear();
        self.pending
            .extend_from_slice(self.packet.get(..n).unwrap_or(&[]));
        self.pending_lens.push(n);
        self.frames += 1;
        if self.pending_lens.len() >= FRAMES_PER_FRAGMENT {
            self.flush_fragment()?;
        }
        Ok(())
    }

    fn flush_fragment(&mut self) -> Result<(), RenditionError> {
        if self.pending_lens.is_empty() {
            return Ok(());
        }
        let mut samples = Vec::with_capacity(self.pending_lens.len());
        let mut at = 0usize;
        for &len in &self.pending_lens {
            samples.push(RecordSample {
                duration: FRAME as u32,
                cts_offset: 0,
                sync: true,
                data: self.pending.get(at..at + len).unwrap_or(&[]),
            });
            at += len;
        }
        let mut buf = Vec::with_capacity(self.pending.len() + 64 + samples.len() * 16);
        self.writer.fragment(
            &[TrackFragment {
                base_decode_time: self.base_decode_time,
                samples: &samples,
            }],
            &mut buf,
        )?;
        self.base_decode_time += (samples.len() * FRAME) as u64;
        self.pending.clear();
        self.pending_lens.clear();
        self.write(&buf)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RenditionError> {
        self.out.write_all(bytes).map_err(RenditionError::Output)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Flushes the resampler, pads the last frame so the decoder's output covers every input
    /// sample after PreSkip, writes the last fragment. Returns (Opus frames, 48 kHz samples
    /// of audio, bytes written).
    fn finish(mut self) -> Result<(u64, u64, u64), RenditionError> {
        if let Some(mut r) = self.resampler.take() {
            let mut tail = Vec::new();
            r.finish(&mut tail);
            self.push48(&tail)?;
        }
        let audio = self.out_samples;
        // Decoded length is frames × 960 − PreSkip; it must reach `audio`.
        let needed = (audio + u64::from(PRE_SKIP)).div_ceil(FRAME as u64).max(1);
        let zeros = vec![0.0f32; FRAME * self.channels];
        while self.frames < needed {
            let take = FRAME * self.channels - self.frame.len();
            self.frame.extend_from_slice(&zeros[..take]);
            self.encode_frame()?;
        }
        self.flush_fragment()?;
        self.out.flush().map_err(RenditionError::Output)?;
        Ok((self.frames, audio, self.written))
    }
}
