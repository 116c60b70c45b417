//! Fragmented MP4 (ISO/IEC 14496-12, CMAF-style) for HLS (RFC 8216 §3.3): the init segment
//! (`ftyp` + `moov` with empty sample tables and `mvex`) and fragment heads (`moof` + the
//! `mdat` header) whose bodies are byte ranges of the mapped file, never copies.
//!
//! Track numbering: the fMP4 `track_ID` of `index.tracks[i]` is `i + 1` ([`fmp4_track_id`]),
//! whatever the source file called it. Every track of a [`MediaIndex`] is H.264, AAC or Opus (the
//! indexer skips the rest), so every track is served.
//!
//! **Presentation alignment (the edit list).** A source file says where presentation starts
//! with an edit list (`Track::edit_offset`: pts = dts + cts − edit_offset): B-frame video
//! typically starts its composition times two frames late, AAC starts one frame (1024
//! priming samples) early. Players differ in honouring an `elst` in a fragmented init segment
//! (hls.js ignores it), and in negative composition offsets (ffmpeg 5.1 shifts a track whose
//! `trun` has them by the most negative one, Chromium does not), so the source's edits are
//! folded into the decode times instead ([`TrackTiming`]): every track's decode times move
//! by `G − edit_offset`, where the common lead `G` is the least that keeps every served
//! sample's decode time ≥ 0 (`tfdt` is unsigned). With the bundled sample, video (edit 2
//! frames) keeps its decode times and AAC (edit 1024 priming samples, which are not served, as
//! in the RTP path's live channels) moves forward by 2 frames less 1024 samples: both tracks
//! present their first sample at `G` = 80 ms, with the file's own composition offsets. One
//! edit per track, the same `G` everywhere, then maps `G` to time zero for players that
//! apply it (browsers' MSE parsers, ffmpeg); those that do not see both tracks start at `G`.

use std::ops::Range;

use thiserror::Error;

use crate::media::track::{Codec, MediaIndex, Track, TrackKind};

/// Why an init segment or a fragment could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Fmp4Error {
    /// A run names a track the index does not have.
    #[error("no track {0}")]
    NoTrack(usize),
    /// A run's sample range lies outside its track.
    #[error("samples {start}..{end} outside track {track} ({len} samples)")]
    NoSamples {
        /// Index of the track.
        track: usize,
        /// Start of the range.
        start: usize,
        /// End of the range.
        end: usize,
        /// Samples in the track.
        len: usize,
    },
    /// A value does not fit its field (a parameter set over 64 KiB, more than 31 SPS, a
    /// composition offset beyond 32 bits, a run over 4 GiB).
    #[error("{0} does not fit its box field")]
    TooLarge(&'static str),
    /// A track's codec is not served over HLS (H.265: no test browser here decodes HEVC, so
    /// `hvc1` fragments are not offered until one does; MPEG-TS: its elementary streams are
    /// not demuxed; docs/design/reach.md "Codecs").
    #[error("{0} is not served over HLS yet; play it over RTSP")]
    UnsupportedCodec(&'static str),
}

/// One contiguous range of the media bytes (the mapped file) that a fragment body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSpan {
    /// Offset in the media bytes.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A fragment: the `moof` and `mdat` header, then the body ranges in `mdat` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// `moof` followed by the `mdat` box header: the only bytes built for a fragment.
    pub head: Vec<u8>,
    /// Ranges of the media bytes that follow the head, in order (adjacent ranges merged).
    pub body: Vec<ByteSpan>,
    /// Sum of the body lengths.
    pub body_len: u64,
}

impl Fragment {
    /// Total length on the wire.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.body_len
    }

    /// Always false: a fragment has at least its head.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The whole fragment as one buffer (copies the body: for files written in tests and
    /// tools, not for serving). Spans outside `bytes` are left out.
    pub fn to_vec(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        out.extend_from_slice(&self.head);
        for span in &self.body {
            let start = usize::try_from(span.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(usize::try_from(span.len).unwrap_or(usize::MAX));
            if let Some(slice) = bytes.get(start..end) {
                out.extend_from_slice(slice);
            }
        }
        out
    }
}

/// One track's samples in a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRun {
    /// Index into `MediaIndex::tracks`.
    pub track: usize,
    /// Sample indexes, in decode order; an empty range writes no `traf`.
    pub samples: Range<usize>,
    /// `tfdt` baseMediaDecodeTime of the first sample, in the track's timescale.
    pub base_decode_time: u64,
    /// The duration of the run's last sample, when it is not the file's (a live channel's
    /// last sample of a loop lasts until the next loop starts, so the track has no hole).
    pub last_duration: Option<u64>,
}

/// How a track's file decode times map to the fragments' (the module doc's alignment rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackTiming {
    /// Added to a sample's `dts` to get its fragment decode time (ticks, ≥ −first dts).
    pub decode_shift: i64,
    /// The common lead `G` in the track's timescale: where presentation starts on the
    /// fragments' timeline, which the init segment's edit list maps to time zero.
    pub presentation_start: u64,
}

impl TrackTiming {
    /// The timings of every track of `index` when track `i` serves from `first_samples[i]`
    /// (missing entries count as 0): `decode_shift = G − edit_offset` with the one lead `G`
    /// (in each track's timescale, rounded up) that keeps all decode times ≥ 0.
    pub fn for_index(index: &MediaIndex, first_samples: &[usize]) -> Vec<Self> {
        let first_dts = |i: usize, t: &Track| {
            let k = first_samples.get(i).copied().unwrap_or(0);
            t.samples
                .get(k)
                .or(t.samples.first())
                .map_or(0, |s| i128::from(s.dts))
        };
        // G in nanoseconds: the largest (edit_offset − first dts) over the tracks, ≥ 0.
        let lead_nanos = index
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ticks = i128::from(t.edit_offset) - first_dts(i, t);
                let ts = i128::from(t.timescale.max(1));
                (ticks * 1_000_000_000 + ts - 1).div_euclid(ts)
            })
            .max()
            .unwrap_or(0)
            .max(0);
        index
            .tracks
            .iter()
            .map(|t| {
                let ts = i128::from(t.timescale.max(1));
                let lead_ticks = (lead_nanos * ts + 999_999_999) / 1_000_000_000;
                Self {
                    decode_shift: i64::try_from(lead_ticks - i128::from(t.edit_offset))
                        .unwrap_or(0),
                    presentation_start: u64::try_from(lead_ticks).unwrap_or(0),
                }
            })
            .collect()
    }

    /// The fragment decode time of sample `k` of `track` (ticks; 0 if out of range).
    pub fn decode_time(&self, track: &Track, k: usize) -> u64 {
        track.samples.get(k).map_or(0, |s| {
            (s.dts as i64).saturating_add(self.decode_shift).max(0) as u64
        })
    }
}

/// The first sample each track serves: video from its first sample, audio from its first
/// sample presented at or after zero (the AAC priming frames before the edit start are left
/// out, as the RTP path's live channels do: see `live::LiveTrack::first_sample`).
pub fn first_served_samples(index: &MediaIndex) -> Vec<usize> {
    index
        .tracks
        .iter()
        .map(|t| match t.kind {
            TrackKind::Video => 0,
            TrackKind::Audio => t
                .samples
                .iter()
                .position(|s| t.pts_ticks(s) >= 0)
                .unwrap_or(0),
        })
        .collect()
}

/// The fMP4 `track_ID` of `index.tracks[track]` (1-based, in index order).
pub fn fmp4_track_id(track: usize) -> u32 {
    u32::try_from(track).map_or(u32::MAX, |t| t.saturating_add(1))
}

/// Movie timescale of `mvhd` (its durations are all zero: the movie is fragmented).
const MOVIE_TIMESCALE: u32 = 1000;

/// The unity matrix of `mvhd`/`tkhd` (ISO/IEC 14496-12 §8.2.2.3).
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Writes boxes into a growing buffer, patching each size when the box closes.
struct BoxWriter {
    out: Vec<u8>,
}

impl BoxWriter {
    fn new(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
        }
    }

    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }
    fn zeros(&mut self, n: usize) {
        self.out.resize(self.out.len() + n, 0);
    }

    /// A box (§4.2 `Box`): 32-bit size, type, then what `body` writes.
    fn boxed(&mut self, typ: &[u8; 4], body: impl FnOnce(&mut Self)) {
        let start = self.out.len();
        self.u32(0);
        self.bytes(typ);
        body(self);
        // Boxes built here are small (headers and sample tables of one fragment).
        let size = u32::try_from(self.out.len() - start).unwrap_or(u32::MAX);
        self.out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    /// A full box (§4.2 `FullBox`): version and 24-bit flags after the type.
    fn full(&mut self, typ: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Self)) {
        self.boxed(typ, |w| {
            w.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
            body(w);
        });
    }

    /// An ISO/IEC 14496-1 §8.3.3 expandable descriptor: tag, size in 7-bit groups, body.
    fn descriptor(&mut self, tag: u8, body: &[u8]) -> Result<(), Fmp4Error> {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&l| l < 1 << 28)
            .ok_or(Fmp4Error::TooLarge("descriptor"))?;
        self.u8(tag);
        // Always four size bytes (0x80 continuation), as many muxers write: simple and valid.
        for shift in [21, 14, 7] {
            self.u8(0x80 | ((len >> shift) & 0x7f) as u8);
        }
        self.u8((len & 0x7f) as u8);
        self.bytes(body);
        Ok(())
    }
}

/// What an init segment says about one track: its kind, codec, timescale and where its
/// presentation starts on the fragments' timeline (an edit list when not zero).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitTrack<'a> {
    /// Video or audio.
    pub(crate) kind: TrackKind,
    /// The codec and its configuration (the sample entry).
    pub(crate) codec: &'a Codec,
    /// Media timescale (`mdhd`).
    pub(crate) timescale: u32,
    /// Media time mapped to presentation time zero (`elst`), 0 for none.
    pub(crate) presentation_start: u64,
}

/// The init segment: `ftyp` + `moov` for every track of `index` (RFC 8216 §3.3, EXT-X-MAP).
pub fn init_segment(index: &MediaIndex) -> Result<Vec<u8>, Fmp4Error> {
    let timings = TrackTiming::for_index(index, &first_served_samples(index));
    let tracks: Vec<InitTrack<'_>> = index
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| InitTrack {
            kind: t.kind,
            codec: &t.codec,
            timescale: t.timescale,
            presentation_start: timings.get(i).map_or(0, |t| t.presentation_start),
        })
        .collect();
    init_segment_for(&tracks)
}

/// An init segment (`ftyp` + `moov` with `mvex`) for these tracks, numbered from 1 in order
/// ([`fmp4_track_id`]): shared by HLS and the recorder (`ingest::record`).
pub(crate) fn init_segment_for(tracks: &[InitTrack<'_>]) -> Result<Vec<u8>, Fmp4Error> {
    // H.265: no test browser decodes it; MPEG-TS: its streams are not demuxed into fMP4;
    // VP8/VP9: no `vp08`/`vp09` sample entry is written (docs/design/reach.md "Codecs");
    // MPEG audio (MP3): no `.mp3`/OTI 0x6B entry is written, G.711: no `ulaw`/`alaw` entry
    // (reach.md "Other audio").
    if let Some(t) = tracks.iter().find(|t| !t.codec.fmp4_carries()) {
        return Err(Fmp4Error::UnsupportedCodec(t.codec.name()));
    }
    let mut w = BoxWriter::new(1024);
    // §4.3 ftyp: CMAF brands (ISO/IEC 23000-19 §7.2) and the ISO base brands we follow.
    w.boxed(b"ftyp", |w| {
        w.bytes(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"cmfc", b"isom", b"mp41", b"dash"] {
            w.bytes(brand);
        }
    });
    let mut result = Ok(());
    w.boxed(b"moov", |w| {
        // §8.2.2 mvhd, version 0.
        w.full(b"mvhd", 0, 0, |w| {
            w.u32(0); // creation_time
            w.u32(0); // modification_time
            w.u32(MOVIE_TIMESCALE);
            w.u32(0); // duration: unknown (fragmented)
            w.u32(0x0001_0000); // rate 1.0
            w.u16(0x0100); // volume 1.0
            w.zeros(2 + 8);
            for m in UNITY_MATRIX {
                w.u32(m);
            }
            w.zeros(24); // pre_defined
            w.u32(fmp4_track_id(tracks.len()));
        });
        for (i, track) in tracks.iter().enumerate() {
            if let Err(e) = write_trak(w, i, track) {
                result = Err(e);
            }
        }
        // §8.8.1 mvex: the movie is fragmented; §8.8.3 trex per track, defaults unused
        // (every trun states duration, size and flags per sample).
        w.boxed(b"mvex", |w| {
            for i in 0..tracks.len() {
                w.full(b"trex", 0, 0, |w| {
                    w.u32(fmp4_track_id(i));
                    w.u32(1); // default_sample_description_index
                    w.u32(0);
                    w.u32(0);
                    w.u32(0);
                });
            }
        });
    });
    result.map(|()| w.out)
}

fn write_trak(w: &mut BoxWriter, i: usize, track: &InitTrack<'_>) -> Result<(), Fmp4Error> {
    let presentation_start = track.presentation_start;
    let mut result = Ok(());
    let (width, height) = match track.codec {
        Codec::H264(c) => (c.width, c.height),
        Codec::H265(c) => (c.width, c.height),
        Codec::Vp8(c) | Codec::Vp9(c) => (c.width, c.height),
        Codec::Aac(_) | Codec::Opus(_) | Codec::Mp2t(_) | Codec::MpegAudio(_) | Codec::G711(_) => {
            (0, 0)
        }
    };
    w.boxed(b"trak", |w| {
        // §8.3.2 tkhd, version 0, flags track_enabled | track_in_movie.
        w.full(b"tkhd", 0, 0x3, |w| {
            w.u32(0);
            w.u32(0);
            w.u32(fmp4_track_id(i));
            w.u32(0); // reserved
            w.u32(0); // duration
            w.zeros(8);
            w.u16(0); // layer
            w.u16(0); // alternate_group
            w.u16(if track.kind == TrackKind::Audio {
                0x0100
            } else {
                0
            });
            w.u16(0);
            for m in UNITY_MATRIX {
                w.u32(m);
            }
            w.u32(u32::from(width) << 16);
            w.u32(u32::from(height) << 16);
        });
        if presentation_start > 0 {
            // §8.6.5 elst: presentation starts `G` into the media, so the first sample is
            // shown at time zero. Browsers' MSE parsers apply it (Chromium: the buffered
            // range then starts at 0, as with ffmpeg's own fMP4, instead of a G-long hole
            // that hls.js seeks over with a `bufferSeekOverHole` event); hls.js itself and
            // ffmpeg shift every track alike, so the tracks stay aligned either way.
            // segment_duration 0: the edit runs to the end of the (fragmented) media.
            w.boxed(b"edts", |w| {
                w.full(b"elst", 0, 0, |w| {
                    w.u32(1); // entry_count
                    w.u32(0); // segment_duration
                    w.u32(u32::try_from(presentation_start).unwrap_or(0)); // media_time
                    w.u16(1); // media_rate_integer
                    w.u16(0); // media_rate_fraction
                });
            });
        }
        w.boxed(b"mdia", |w| {
            // §8.4.2 mdhd: the source track's timescale, so sample times copy over as is.
            w.full(b"mdhd", 0, 0, |w| {
                w.u32(0);
                w.u32(0);
                w.u32(track.timescale);
                w.u32(0);
                w.u16(0x55c4); // language "und" (ISO 639-2/T, 5-bit packed)
                w.u16(0);
            });
            // §8.4.3 hdlr.
            let (handler, name): (&[u8; 4], &[u8]) = match track.kind {
                TrackKind::Video => (b"vide", b"VideoHandler\0"),
                TrackKind::Audio => (b"soun", b"SoundHandler\0"),
            };
            w.full(b"hdlr", 0, 0, |w| {
                w.u32(0);
                w.bytes(handler);
                w.zeros(12);
                w.bytes(name);
            });
            w.boxed(b"minf", |w| {
                match track.kind {
                    // §12.1.2 vmhd (flags 1), §12.2.2 smhd.
                    TrackKind::Video => w.full(b"vmhd", 0, 1, |w| w.zeros(8)),
                    TrackKind::Audio => w.full(b"smhd", 0, 0, |w| w.zeros(4)),
                }
                // §8.7.1 dinf / §8.7.2 dref: one self-contained `url ` entry (flags 1).
                w.boxed(b"dinf", |w| {
                    w.full(b"dref", 0, 0, |w| {
                        w.u32(1);
                        w.full(b"url ", 0, 1, |_| {});
                    });
                });
                w.boxed(b"stbl", |w| {
                    w.full(b"stsd", 0, 0, |w| {
                        w.u32(1);
                        result = write_sample_entry(w, track);
                    });
                    // Empty tables: the samples are in the fragments (§8.8.1).
                    w.full(b"stts", 0, 0, |w| w.u32(0));
                    w.full(b"stsc", 0, 0, |w| w.u32(0));
                    w.full(b"stsz", 0, 0, |w| {
                        w.u32(0);
                        w.u32(0);
                    });
                    w.full(b"stco", 0, 0, |w| w.u32(0));
                });
            });
        });
    });
    result
}

fn write_sample_entry(w: &mut BoxWriter, track: &InitTrack<'_>) -> Result<(), Fmp4Error> {
    let mut result = Ok(());
    match track.codec {
        Codec::H264(c) => {
            let avcc = avc_decoder_configuration(c)?;
            // ISO/IEC 14496-15 §5.4.2.1 avc1 = §12.1.3 VisualSampleEntry + avcC.
            w.boxed(b"avc1", |w| {
                w.zeros(6);
                w.u16(1); // data_reference_index
                w.zeros(16); // pre_defined, reserved, pre_defined[3]
                w.u16(c.width);
                w.u16(c.height);
                w.u32(0x0048_0000); // 72 dpi
                w.u32(0x0048_0000);
                w.u32(0);
                w.u16(1); // frame_count
                w.zeros(32); // compressorname
                w.u16(0x0018); // depth
                w.u16(0xffff); // pre_defined = -1
                w.boxed(b"avcC", |w| w.bytes(&avcc));
            });
        }
        Codec::Aac(c) => {
            // ISO/IEC 14496-12 §12.2.3 AudioSampleEntry + ISO/IEC 14496-14 §5.6 esds.
            let rate = if c.sample_rate_hz <= 0xffff {
                c.sample_rate_hz << 16
            } else {
                0
            };
            w.boxed(b"mp4a", |w| {
                w.zeros(6);
                w.u16(1);
                w.zeros(8);
                w.u16(u16::from(c.channels));
                w.u16(16); // samplesize
                w.u16(0);
                w.u16(0);
                w.u32(rate);
                w.full(b"esds", 0, 0, |w| {
                    result = write_es_descriptor(w, &c.audio_specific_config);
                });
            });
        }
        // Refused up front in `init_segment_for`.
        Codec::H265(_) => result = Err(Fmp4Error::UnsupportedCodec("H.265")),
        Codec::Mp2t(_) | Codec::Vp8(_) | Codec::Vp9(_) | Codec::MpegAudio(_) | Codec::G711(_) => {
            result = Err(Fmp4Error::UnsupportedCodec(track.codec.name()))
        }
        Codec::Opus(c) => {
            // "Encapsulation of Opus in ISO Base Media File Format" §4.3.1: an
            // AudioSampleEntry `Opus` (samplesize 16, samplerate 48000) + §4.3.2 `dOps`.
            w.boxed(b"Opus", |w| {
                w.zeros(6);
                w.u16(1);
                w.zeros(8);
                w.u16(u16::from(c.channels));
                w.u16(16);
                w.u16(0);
                w.u16(0);
                w.u32(48_000 << 16);
                w.boxed(b"dOps", |w| {
                    w.u8(0); // Version
                    w.u8(c.channels);
                    w.u16(c.pre_skip);
                    w.u32(c.input_sample_rate_hz);
                    w.u16(c.output_gain as u16);
                    w.u8(c.channel_mapping_family);
                    if c.channel_mapping_family != 0 {
                        w.bytes(&c.channel_mapping_table);
                    }
                });
            });
        }
    }
    result
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) from the parsed `avcC` fields.
fn avc_decoder_configuration(c: &crate::media::track::H264Config) -> Result<Vec<u8>, Fmp4Error> {
    let mut out = vec![
        1,
        c.profile_idc,
        c.profile_compat,
        c.level_idc,
        0xfc | (c.nal_length_size.clamp(1, 4) - 1),
    ];
    let sps_count = u8::try_from(c.sps.len())
        .ok()
        .filter(|&n| n <= 31)
        .ok_or(Fmp4Error::TooLarge("SPS count"))?;
    out.push(0xe0 | sps_count);
    for sps in &c.sps {
        let len = u16::try_from(sps.len()).map_err(|_| Fmp4Error::TooLarge("SPS"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(sps);
    }
    out.push(u8::try_from(c.pps.len()).map_err(|_| Fmp4Error::TooLarge("PPS count"))?);
    for pps in &c.pps {
        let len = u16::try_from(pps.len()).map_err(|_| Fmp4Error::TooLarge("PPS"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(pps);
    }
    Ok(out)
}

/// ES_Descriptor (ISO/IEC 14496-1 §7.2.6.5) with its DecoderConfigDescriptor (§7.2.6.6),
/// DecoderSpecificInfo (the AudioSpecificConfig) and SLConfigDescriptor (§7.3.2.3.1).
fn write_es_descriptor(w: &mut BoxWriter, asc: &[u8]) -> Result<(), Fmp4Error> {
    let mut dsi = BoxWriter::new(16);
    dsi.descriptor(0x05, asc)?;
    let mut dcd = BoxWriter::new(32);
    dcd.u8(0x40); // objectTypeIndication: ISO/IEC 14496-3 audio
    dcd.u8(0x05 << 2 | 1); // streamType audio, upStream 0, reserved 1
    dcd.bytes(&[0, 0, 0]); // bufferSizeDB
    dcd.u32(0); // maxBitrate
    dcd.u32(0); // avgBitrate
    dcd.bytes(&dsi.out);
    let mut es = BoxWriter::new(48);
    es.u16(0); // ES_ID
    es.u8(0); // no dependsOn, URL, OCR
    es.descriptor(0x04, &dcd.out)?;
    es.descriptor(0x06, &[0x02])?; // SLConfigDescriptor predefined = 2 (MP4)
    w.descriptor(0x03, &es.out)
}

/// `trun` flags (§8.8.8.1): data-offset, per-sample duration, size, flags, composition offset.
const TRUN_FLAGS: u32 = 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800;
/// `tfhd` flag default-base-is-moof (§8.8.7.1): data offsets count from the `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// Sample flags (§8.8.3.1) of a sync sample: sample_depends_on = 2 (depends on no other).
const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: sample_depends_on = 1, sample_is_non_sync_sample = 1.
const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Bytes per sample in a `trun` with [`TRUN_FLAGS`].
const TRUN_SAMPLE_BYTES: usize = 16;

/// The duration of sample `k` of `track` in ticks: up to the next sample's decode time; the
/// last sample lasts as long as the one before it.
pub fn sample_duration(track: &Track, k: usize) -> u64 {
    let s = &track.samples;
    match (s.get(k), s.get(k + 1)) {
        (Some(a), Some(b)) => b.dts.saturating_sub(a.dts),
        (Some(a), None) if k > 0 => a.dts.saturating_sub(s[k - 1].dts),
        _ => 0,
    }
}

/// One sample as a `trun` entry states it (§8.8.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrunSample {
    /// Decode duration in the track's timescale.
    pub(crate) duration: u32,
    /// Size in bytes.
    pub(crate) size: u32,
    /// A sync sample (keyframe).
    pub(crate) sync: bool,
    /// Composition offset (pts − dts), signed (version 1 `trun`).
    pub(crate) cts_offset: i32,
}

/// One track fragment (`traf`) of a fragment head: whose, from when, how many samples and
/// how many bytes of the `mdat` they take (the data of the trafs follows in their order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrafHead {
    /// fMP4 `track_ID`.
    pub(crate) track_id: u32,
    /// `tfdt` baseMediaDecodeTime.
    pub(crate) base_decode_time: u64,
    /// Samples in the `trun`.
    pub(crate) sample_count: usize,
    /// Sum of the samples' sizes.
    pub(crate) data_len: u64,
}

/// Builds the head of a fragment (ISO/IEC 14496-12 §8.8.4 `moof` + §8.1.1 `mdat` header)
/// holding `runs` in order, and lists its body: each run's samples, run after run.
pub fn fragment(
    index: &MediaIndex,
    sequence_number: u32,
    runs: &[TrackRun],
) -> Result<Fragment, Fmp4Error> {
    let mut tracks = Vec::with_capacity(runs.len());
    let mut trafs = Vec::with_capacity(runs.len());
    for run in runs {
        let track = index
            .tracks
            .get(run.track)
            .ok_or(Fmp4Error::NoTrack(run.track))?;
        if run.samples.start > run.samples.end || run.samples.end > track.samples.len() {
            return Err(Fmp4Error::NoSamples {
                track: run.track,
                start: run.samples.start,
                end: run.samples.end,
                len: track.samples.len(),
            });
        }
        if !run.samples.is_empty() {
            tracks.push((run, track));
            trafs.push(TrafHead {
                track_id: fmp4_track_id(run.track),
                base_decode_time: run.base_decode_time,
                sample_count: run.samples.len(),
                data_len: track.samples[run.samples.clone()]
                    .iter()
                    .map(|s| u64::from(s.len))
                    .sum::<u64>(),
            });
        }
    }
    let head = fragment_head(sequence_number, &trafs, &mut |t, k| {
        let (run, track) = tracks[t];
        let i = run.samples.start + k;
        let s = &track.samples[i];
        let duration = match run.last_duration {
            Some(d) if i + 1 == run.samples.end => d,
            _ => sample_duration(track, i),
        };
        TrunSample {
            duration: u32::try_from(duration).unwrap_or(u32::MAX),
            size: s.len,
            sync: s.sync,
            cts_offset: s.cts_offset,
        }
    })?;
    let mut body: Vec<ByteSpan> = Vec::new();
    for (run, track) in &tracks {
        for s in &track.samples[run.samples.clone()] {
            match body.last_mut() {
                Some(last) if last.offset + last.len == s.offset => {
                    last.len += u64::from(s.len);
                }
                _ => body.push(ByteSpan {
                    offset: s.offset,
                    len: u64::from(s.len),
                }),
            }
        }
    }
    Ok(Fragment {
        head,
        body,
        body_len: trafs.iter().map(|t| t.data_len).sum(),
    })
}

/// The `moof` and `mdat` header of a fragment whose `mdat` holds the data of `trafs` in
/// order; `sample(t, k)` gives sample `k` of `trafs[t]`. Shared by HLS (bodies are mapping
/// ranges) and the recorder (bodies are the frames it buffered).
pub(crate) fn fragment_head(
    sequence_number: u32,
    trafs: &[TrafHead],
    sample: &mut dyn FnMut(usize, usize) -> TrunSample,
) -> Result<Vec<u8>, Fmp4Error> {
    // Sizes first, so data offsets are known when the trun is written.
    let mut moof_len = 8 + 16; // moof header + mfhd
    let mut body_len = 0u64;
    for t in trafs.iter().filter(|t| t.sample_count > 0) {
        moof_len += 8 + 16 + 20 + 20 + t.sample_count * TRUN_SAMPLE_BYTES;
        body_len += t.data_len;
    }
    // §8.1.1 mdat: a 64-bit largesize once the box passes 4 GiB.
    let mdat_header_len = if body_len + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let mut w = BoxWriter::new(moof_len + mdat_header_len);
    let mut data_offset = (moof_len + mdat_header_len) as u64;
    let mut result = Ok(());
    w.boxed(b"moof", |w| {
        // §8.8.5 mfhd.
        w.full(b"mfhd", 0, 0, |w| w.u32(sequence_number));
        for (i, t) in trafs.iter().enumerate().filter(|(_, t)| t.sample_count > 0) {
            if let Err(e) = write_traf(w, t, data_offset, &mut |k| sample(i, k)) {
                result = Err(e);
            }
            data_offset += t.data_len;
        }
    });
    result?;
    debug_assert_eq!(w.out.len(), moof_len);
    if mdat_header_len == 16 {
        w.u32(1);
        w.bytes(b"mdat");
        w.u64(body_len + 16);
    } else {
        w.u32((body_len + 8) as u32);
        w.bytes(b"mdat");
    }
    Ok(w.out)
}

fn write_traf(
    w: &mut BoxWriter,
    traf: &TrafHead,
    data_offset: u64,
    sample: &mut dyn FnMut(usize) -> TrunSample,
) -> Result<(), Fmp4Error> {
    let data_offset = i32::try_from(data_offset).map_err(|_| Fmp4Error::TooLarge("data offset"))?;
    let count = u32::try_from(traf.sample_count).map_err(|_| Fmp4Error::TooLarge("run"))?;
    w.boxed(b"traf", |w| {
        // §8.8.7 tfhd: track, default-base-is-moof, no other defaults.
        w.full(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |w| {
            w.u32(traf.track_id)
        });
        // §8.8.12 tfdt version 1: 64-bit baseMediaDecodeTime (live timelines outgrow 32 bits).
        w.full(b"tfdt", 1, 0, |w| w.u64(traf.base_decode_time));
        // §8.8.8 trun version 1: signed composition offsets (as a v1 `ctts` may hold), so
        // B-frames present in order.
        w.full(b"trun", 1, TRUN_FLAGS, |w| {
            w.u32(count);
            w.u32(data_offset as u32);
            for k in 0..traf.sample_count {
                let s = sample(k);
                w.u32(s.duration);
                w.u32(s.size);
                w.u32(if s.sync {
                    SAMPLE_FLAGS_SYNC
                } else {
                    SAMPLE_FLAGS_NON_SYNC
                });
                w.u32(s.cts_offset as u32);
            }
        });
    });
    Ok(())
}
