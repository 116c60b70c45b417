//! Recording live streams to fragmented MP4 files (issue 16, `docs/design/live-ingest.md`),
//! sans-IO: frames in, bytes and file decisions out; the shell owns the files.
//!
//! - [`FragmentWriter`] writes an init segment (`ftyp` + `moov` with `mvex`, ISO/IEC 14496-12
//!   §8.8.1) and then one fragment (`moof` + `mdat`, §8.8.4, §8.1.1) per call, with the box
//!   builders HLS uses (`hls::fmp4`). Init segment plus fragments appended is one playable
//!   file, which `media::mp4::parse_mp4` indexes like any other (a recording plays, and seeks,
//!   while it is still being written; a fragment cut short by a crash is left out).
//! - [`Recorder`] is the policy: it takes [`Frame`]s with their wall time, keeps each
//!   track's last frame until the next one gives its duration, cuts a fragment at every
//!   keyframe of the video track (every second for audio-only streams; earlier if a
//!   fragment would pass [`MAX_FRAGMENT_BYTES`] or [`MAX_FRAGMENT_SPAN`]), starts a new file
//!   at the first keyframe after `segment_duration`, and names files
//!   `{media_root}/{record_dir}/{stream}/{YYYY-MM-DD_HH-MM-SS}.mp4` (UTC, the wall time of
//!   the file's first frame). [`Recorder::expired`] is the retention rule (age, total size).
//!
//! **Timing.** A file's decode times start at 0 at its first keyframe. Within a track, times
//! come from the frames' own clock (their `dts`); tracks are placed against each other by the
//! wall time of each track's first frame (a source's RTP clocks start at random values,
//! RFC 3550 §5.1). Frames of other tracks that arrive late for the file they belong to (audio
//! a little behind video on the wire) still go to the previous file, which stays open until
//! every track has passed the new file's start or [`DRAIN_LIMIT`] has gone by.
//!
//! Not done here: writing, `fsync`, listing files for retention (the shell's), and a change
//! of codec parameters mid-stream (in-band SPS/PPS stay in the samples and decoders use them,
//! but the sample entry keeps the first ones).

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::hls::fmp4::{
    fmp4_track_id, fragment_head, init_segment_for, Fmp4Error, InitTrack, TrafHead, TrunSample,
};
use crate::ingest::{DropReason, Frame, MAX_ACCESS_UNIT};
use crate::media::track::{Codec, TrackKind};

/// A fragment is cut before its samples pass this many bytes, keyframe or not.
pub const MAX_FRAGMENT_BYTES: usize = 8 << 20;
/// A fragment is cut before any track's samples in it span more than this, keyframe or not.
pub const MAX_FRAGMENT_SPAN: Duration = Duration::from_secs(10);
/// Fragment length of an audio-only recording.
pub const AUDIO_FRAGMENT: Duration = Duration::from_secs(1);
/// How long after a new file starts the previous one still takes late frames of its tracks.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Why a recorder or fragment writer could not be made or could not write.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// There is no track to record.
    #[error("no tracks to record")]
    NoTracks,
    /// A track's timescale is zero.
    #[error("track {0} has a zero timescale")]
    ZeroTimescale(usize),
    /// More runs than tracks were given to [`FragmentWriter::fragment`].
    #[error("{runs} runs for {tracks} tracks")]
    TooManyRuns {
        /// Runs given.
        runs: usize,
        /// Tracks of the writer.
        tracks: usize,
    },
    /// The stream name cannot be a path below the recording directory.
    #[error("stream name {0:?} is not a relative path of normal components")]
    BadStreamName(String),
    /// A box could not be built (a field overflow).
    #[error(transparent)]
    Fmp4(#[from] Fmp4Error),
}

/// A track to record: what the init segment says about it. Its timescale is the clock of
/// its frames' timestamps (for [`Frame`]s: the codec's RTP clock rate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTrack {
    /// Video or audio.
    pub kind: TrackKind,
    /// Codec and decoder configuration.
    pub codec: Codec,
    /// Ticks per second of the track's timestamps.
    pub timescale: u32,
}

impl RecordTrack {
    /// A track whose timestamps are in the codec's RTP clock, as [`Frame`]'s are.
    pub fn from_codec(kind: TrackKind, codec: Codec) -> Self {
        let timescale = codec.clock_rate_hz();
        Self {
            kind,
            codec,
            timescale,
        }
    }
}

/// One sample of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSample<'a> {
    /// Decode duration in the track's timescale (the next sample's decode time follows it).
    pub duration: u32,
    /// Presentation minus decode time, in the track's timescale.
    pub cts_offset: i32,
    /// A random access point.
    pub sync: bool,
    /// The sample as an MP4 sample holds it (AVCC NAL units, raw AAC).
    pub data: &'a [u8],
}

/// One track's samples in a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackFragment<'a> {
    /// Decode time of the first sample (`tfdt`, §8.8.12), in the track's timescale.
    pub base_decode_time: u64,
    /// The samples in decode order; empty writes no `traf`.
    pub samples: &'a [RecordSample<'a>],
}

/// Writes an fMP4 file: the init segment, then fragments, each appended to `out`.
#[derive(Debug, Clone)]
pub struct FragmentWriter {
    init: Vec<u8>,
    tracks: usize,
    sequence_number: u32,
}

impl FragmentWriter {
    /// A writer for `tracks` (fMP4 track IDs 1, 2, … in this order); builds the init segment.
    pub fn new(tracks: &[RecordTrack]) -> Result<Self, RecordError> {
        Self::with_presentation_starts(tracks, &[])
    }

    /// Like [`FragmentWriter::new`], with the media time of each track that presentation
    /// starts at (`starts[i]`, missing = 0): an edit list (`elst`, §8.6.6) maps it to time 0,
    /// so samples may carry a composition delay that keeps `pts` ≥ `dts`.
    pub fn with_presentation_starts(
        tracks: &[RecordTrack],
        starts: &[u64],
    ) -> Result<Self, RecordError> {
        if tracks.is_empty() {
            return Err(RecordError::NoTracks);
        }
        if let Some(i) = tracks.iter().position(|t| t.timescale == 0) {
            return Err(RecordError::ZeroTimescale(i));
        }
        let heads: Vec<InitTrack<'_>> = tracks
            .iter()
            .enumerate()
            .map(|(i, t)| InitTrack {
                kind: t.kind,
                codec: &t.codec,
                timescale: t.timescale,
                presentation_start: starts.get(i).copied().unwrap_or(0),
            })
            .collect();
        Ok(Self {
            init: init_segment_for(&heads)?,
            tracks: tracks.len(),
            sequence_number: 0,
        })
    }

    /// Appends the init segment (`ftyp` + `moov`), the start of every file.
    pub fn init_segment(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.init);
    }

    /// Appends one fragment holding `runs[i]` for track `i` (missing or empty runs write no
    /// `traf`); writes nothing when every run is empty. Sequence numbers (`mfhd`, §8.8.5)
    /// count from 1.
    pub fn fragment(
        &mut self,
        runs: &[TrackFragment<'_>],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if runs.len() > self.tracks {
            return Err(RecordError::TooManyRuns {
                runs: runs.len(),
                tracks: self.tracks,
            });
        }
        let trafs: Vec<TrafHead> = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.samples.is_empty())
            .map(|(i, r)| TrafHead {
                track_id: fmp4_track_id(i),
                base_decode_time: r.base_decode_time,
                sample_count: r.samples.len(),
                data_len: r.samples.iter().map(|s| s.data.len() as u64).sum(),
            })
            .collect();
        if trafs.is_empty() {
            return Ok(());
        }
        let filled: Vec<&TrackFragment<'_>> =
            runs.iter().filter(|r| !r.samples.is_empty()).collect();
        let mut too_large = false;
        let head = fragment_head(self.sequence_number.wrapping_add(1), &trafs, &mut |t, k| {
            let s = filled.get(t).and_then(|r| r.samples.get(k));
            let s = s.copied().unwrap_or(RecordSample {
                duration: 0,
                cts_offset: 0,
                sync: false,
                data: &[],
            });
            let size = u32::try_from(s.data.len()).unwrap_or_else(|_| {
                too_large = true;
                u32::MAX
            });
            TrunSample {
                duration: s.duration,
                size,
                sync: s.sync,
                cts_offset: s.cts_offset,
            }
        })?;
        if too_large {
            return Err(Fmp4Error::TooLarge("sample").into());
        }
        self.sequence_number = self.sequence_number.wrapping_add(1);
        out.reserve(head.len() + trafs.iter().map(|t| t.data_len as usize).sum::<usize>());
        out.extend_from_slice(&head);
        for r in &filled {
            for s in r.samples {
                out.extend_from_slice(s.data);
            }
        }
        Ok(())
    }
}

/// Where and how long recordings are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// The media root (the catalog's folder).
    pub media_root: PathBuf,
    /// Folder of recordings inside the media root.
    pub record_dir: PathBuf,
    /// Length of one file; the next file starts at the first keyframe after it.
    pub segment_duration: Duration,
    /// Files older than this are deleted (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// The oldest files are deleted while the stream's files take more (`None`: no limit).
    pub max_total_bytes: Option<u64>,
}

impl RecordConfig {
    /// Defaults: `recordings/` under `media_root`, one-hour files, kept forever.
    pub fn new(media_root: impl Into<PathBuf>) -> Self {
        Self {
            media_root: media_root.into(),
            record_dir: PathBuf::from("recordings"),
            segment_duration: Duration::from_secs(3600),
            max_age: None,
            max_total_bytes: None,
        }
    }
}

/// A file the recorder writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFile {
    /// Its path.
    pub path: PathBuf,
    /// These bytes start the file (the init segment comes first): create it.
    pub starts_file: bool,
}

/// What the shell does for the recorder, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEffect {
    /// Append `bytes` to `file` (create it first when `starts_file`).
    Write {
        /// The file.
        file: RecordingFile,
        /// A fragment, preceded by the init segment when the file starts.
        bytes: Vec<u8>,
    },
    /// `closed` is complete (sync and close it); `next` is the file being written now (its
    /// first bytes may already have been written).
    Rotate {
        /// The finished file.
        closed: PathBuf,
        /// The current file.
        next: PathBuf,
    },
    /// `closed` is complete and no file follows (the recording ended).
    Close {
        /// The finished file.
        closed: PathBuf,
    },
}

/// A frame kept until it is written: its time on the recording's timeline.
#[derive(Debug, Clone)]
struct Pending {
    rec_dts: i64,
    duration: u32,
    cts_offset: i32,
    sync: bool,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct TrackState {
    timescale: u32,
    /// (the first frame's dts, its time on the recording's timeline).
    origin: Option<(i64, i64)>,
    last_rec_dts: Option<i64>,
    /// The latest time of any frame, and of the latest sync frame.
    max_rec_dts: Option<i64>,
    last_sync_rec_dts: Option<i64>,
    last_duration: u32,
    /// The newest frame, waiting for the next one to give its duration.
    held: Option<Pending>,
    /// Complete frames waiting for the next fragment.
    ready: Vec<Pending>,
}

impl TrackState {
    fn ready_span(&self) -> i64 {
        match (self.ready.first(), self.ready.last()) {
            (Some(a), Some(b)) => b.rec_dts - a.rec_dts + i64::from(b.duration),
            _ => 0,
        }
    }

    /// Moves the held frame to `ready`, lasting until `next_rec_dts` (or as long as the
    /// frame before it, when there is no next frame).
    fn complete_held(&mut self, next_rec_dts: Option<i64>) {
        if let Some(mut h) = self.held.take() {
            h.duration = match next_rec_dts {
                // Negative between a reference frame and a B-frame shown before it: the run's
                // durations are made again when it is written (`to_decode_times`).
                Some(next) => u32::try_from(next - h.rec_dts).unwrap_or(0),
                None => self.last_duration,
            };
            self.last_duration = h.duration;
            self.ready.push(h);
        }
    }
}

/// A file being written: where it starts on the recording's timeline (in the clock track's
/// ticks) and its writer.
#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    start_ticks: i64,
    writer: FragmentWriter,
    started: bool,
    /// Per track, the time after the last sample written to this file: the next fragment's
    /// samples start there or later (decode times never go back, §8.8.12).
    written_end: Vec<Option<i64>>,
    /// Per track, the composition delay added to every sample of this file (and mapped back
    /// to time 0 by its edit list), fixed by its first fragment.
    cts_shift: Vec<i32>,
}

/// The recording policy of one stream (module doc).
#[derive(Debug)]
pub struct Recorder {
    config: RecordConfig,
    dir: PathBuf,
    tracks: Vec<RecordTrack>,
    state: Vec<TrackState>,
    /// The track whose keyframes cut fragments and start files (the first video track, or
    /// track 0 of an audio-only stream).
    clock: usize,
    clock_is_video: bool,
    start_wall: Option<SystemTime>,
    current: Option<OpenFile>,
    /// The previous file, still taking late frames of its tracks.
    draining: Option<OpenFile>,
    dropped: [u64; DropReason::ALL.len()],
}

impl Recorder {
    /// A recorder for `stream` (a relative path such as `live/cam1`) with these tracks.
    pub fn new(
        config: RecordConfig,
        stream: &str,
        tracks: Vec<RecordTrack>,
    ) -> Result<Self, RecordError> {
        // Validates the tracks and the codec configuration once.
        FragmentWriter::new(&tracks)?;
        let rel = Path::new(stream);
        let normal = stream
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !normal {
            return Err(RecordError::BadStreamName(stream.to_owned()));
        }
        let dir = config.media_root.join(&config.record_dir).join(rel);
        let video = tracks.iter().position(|t| t.kind == TrackKind::Video);
        let state = tracks
            .iter()
            .map(|t| TrackState {
                timescale: t.timescale,
                origin: None,
                last_rec_dts: None,
                max_rec_dts: None,
                last_sync_rec_dts: None,
                last_duration: 0,
                held: None,
                ready: Vec::new(),
            })
            .collect();
        Ok(Self {
            config,
            dir,
            tracks,
            state,
            clock: video.unwrap_or(0),
            clock_is_video: video.is_some(),
            start_wall: None,
            current: None,
            draining: None,
            dropped: [0; DropReason::ALL.len()],
        })
    }

    /// Frames dropped for `reason` (malformed timestamps, an unknown track, too large).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.dropped.get(i).copied())
            .unwrap_or(0)
    }

    /// The file being written, if any.
    pub fn current_file(&self) -> Option<&Path> {
        self.current.as_ref().map(|f| f.path.as_path())
    }

    /// The folder of this stream's recordings.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn drop_frame(&mut self, reason: DropReason) {
        if let Some(i) = DropReason::ALL.iter().position(|r| *r == reason) {
            if let Some(n) = self.dropped.get_mut(i) {
                *n += 1;
            }
        }
    }

    /// Takes one frame that arrived at `wall`; pushes what the shell must do to `out`.
    pub fn push(&mut self, frame: &Frame<'_>, wall: SystemTime, out: &mut Vec<RecordEffect>) {
        let t = frame.track;
        let Some(timescale) = self.state.get(t).map(|s| s.timescale) else {
            self.drop_frame(DropReason::Malformed);
            return;
        };
        if frame.data.len() > MAX_ACCESS_UNIT {
            self.drop_frame(DropReason::TooLarge);
            return;
        }
        let Ok(cts_offset) = i32::try_from(frame.pts.saturating_sub(frame.dts)) else {
            self.drop_frame(DropReason::Malformed);
            return;
        };
        let start_wall = match self.start_wall {
            Some(w) => w,
            // The recording starts at the clock track's first keyframe.
            None if t == self.clock && frame.sync => {
                self.start_wall = Some(wall);
                wall
            }
            None => return,
        };
        let st = &mut self.state[t];
        let (origin_dts, origin_rec) = *st.origin.get_or_insert_with(|| {
            let since = wall.duration_since(start_wall).unwrap_or_default();
            (frame.dts, ticks(since, timescale))
        });
        let rec_dts = frame
            .dts
            .saturating_sub(origin_dts)
            .saturating_add(origin_rec);
        // Frames come in decode order, but an RTP source gives presentation times only
        // (RFC 6184 §5.1: `dts` = `pts`), which go back and forth between reference frames
        // and the B-frames between them. A sync frame must come after everything before it
        // (an IDR picture: nothing after it is shown before it, H.264 §8.2.1); any other
        // frame after the latest sync frame and not at the same time as the one before it.
        // Decode times are then made from the presentation times when a run is written
        // (`to_decode_times`).
        let in_order = if frame.sync {
            st.max_rec_dts.is_none_or(|m| rec_dts > m)
        } else {
            st.last_sync_rec_dts.is_none_or(|s| rec_dts > s) && st.last_rec_dts != Some(rec_dts)
        };
        if !in_order {
            self.drop_frame(DropReason::Malformed);
            return;
        }
        st.last_rec_dts = Some(rec_dts);
        st.max_rec_dts = Some(st.max_rec_dts.map_or(rec_dts, |m| m.max(rec_dts)));
        if frame.sync {
            st.last_sync_rec_dts = Some(rec_dts);
        }
        st.complete_held(Some(rec_dts));

        if self.current.is_none() {
            self.open_file(rec_dts, wall);
        }
        self.finish_draining_if_done(rec_dts, t, out);
        if t == self.clock && self.is_cut_point(frame.sync, rec_dts) {
            let start = self.current.as_ref().map_or(0, |f| f.start_ticks);
            let rotate = frame.sync
                && rec_dts.saturating_sub(start) >= ticks(self.config.segment_duration, timescale);
            // On a rotation, frames of other tracks from the new file's start on wait for it.
            self.flush(if rotate { rec_dts } else { i64::MAX }, out);
            if rotate {
                self.rotate(rec_dts, wall, out);
            }
        } else if self.over_limits() {
            self.flush(i64::MAX, out);
        }
        self.state[t].held = Some(Pending {
            rec_dts,
            duration: 0,
            cts_offset,
            sync: frame.sync,
            data: frame.data.to_vec(),
        });
    }

    /// Writes everything held and closes the files (the stream ended).
    pub fn finish(&mut self, out: &mut Vec<RecordEffect>) {
        for st in &mut self.state {
            st.complete_held(None);
        }
        let start = self.current.as_ref().map_or(i64::MAX, |f| f.start_ticks);
        let prev = self.draining.take();
        self.write_fragment(start, prev, out, true);
        let cur = self.current.take();
        self.write_fragment(i64::MAX, cur, out, true);
    }

    /// Files of this stream to delete: older than `max_age`, then the oldest while the total
    /// size is over `max_total_bytes`. `files` are (path, modification time, size); the file
    /// being written (and one still taking late frames) is never expired.
    pub fn expired(&self, files: &[(PathBuf, SystemTime, u64)], now: SystemTime) -> Vec<PathBuf> {
        expired_files(&self.config, files, now, |p| {
            self.current.as_ref().is_some_and(|f| f.path == p)
                || self.draining.as_ref().is_some_and(|f| f.path == p)
        })
    }

    fn is_cut_point(&self, sync: bool, rec_dts: i64) -> bool {
        let st = &self.state[self.clock];
        if self.clock_is_video {
            return sync && !self.state.iter().all(|s| s.ready.is_empty());
        }
        let first = st.ready.first().map_or(rec_dts, |s| s.rec_dts);
        rec_dts - first >= ticks(AUDIO_FRAGMENT, st.timescale)
    }

    fn over_limits(&self) -> bool {
        let bytes: usize = self
            .state
            .iter()
            .flat_map(|s| s.ready.iter().chain(&s.held))
            .map(|p| p.data.len())
            .sum();
        bytes >= MAX_FRAGMENT_BYTES
            || self
                .state
                .iter()
                .any(|s| s.ready_span() >= ticks(MAX_FRAGMENT_SPAN, s.timescale))
    }

    fn file_path(&self, wall: SystemTime) -> PathBuf {
        let name = file_stamp(wall);
        let mut path = self.dir.join(format!("{name}.mp4"));
        let mut n = 1;
        while self.current.as_ref().is_some_and(|f| f.path == path)
            || self.draining.as_ref().is_some_and(|f| f.path == path)
        {
            path = self.dir.join(format!("{name}_{n}.mp4"));
            n += 1;
        }
        path
    }

    fn open_file(&mut self, start_ticks: i64, wall: SystemTime) {
        let path = self.file_path(wall);
        if let Ok(writer) = FragmentWriter::new(&self.tracks) {
            self.current = Some(OpenFile {
                path,
                start_ticks,
                writer,
                started: false,
                written_end: vec![None; self.tracks.len()],
                cts_shift: vec![0; self.tracks.len()],
            });
        }
    }

    /// Starts a new file at the clock track's `rec_dts`; the old one drains (and one still
    /// draining, when files are shorter than [`DRAIN_LIMIT`], is closed first).
    fn rotate(&mut self, rec_dts: i64, wall: SystemTime, out: &mut Vec<RecordEffect>) {
        if let Some(prev) = self.draining.take() {
            self.close_draining(prev, out);
        }
        self.draining = self.current.take();
        self.open_file(rec_dts, wall);
        if self.draining.as_ref().is_some_and(|f| !f.started) {
            self.draining = None;
        }
    }

    /// Ends the previous file's drain once every track has passed the current file's start
    /// or the clock track is [`DRAIN_LIMIT`] past it.
    fn finish_draining_if_done(&mut self, rec_dts: i64, track: usize, out: &mut Vec<RecordEffect>) {
        let Some(start) = self.current.as_ref().map(|f| f.start_ticks) else {
            return;
        };
        if self.draining.is_none() {
            return;
        }
        let clock_ts = self.state[self.clock].timescale;
        let timed_out =
            track == self.clock && rec_dts.saturating_sub(start) >= ticks(DRAIN_LIMIT, clock_ts);
        let all_passed = self.state.iter().all(|s| {
            s.max_rec_dts
                .is_some_and(|last| last >= rescale(start, clock_ts, s.timescale))
        });
        if timed_out || all_passed {
            if let Some(prev) = self.draining.take() {
                self.close_draining(prev, out);
            }
        }
    }

    /// Writes the previous file's last frames (everything before the current file's start,
    /// held frames included with an estimated duration) and closes it.
    fn close_draining(&mut self, prev: OpenFile, out: &mut Vec<RecordEffect>) {
        let start = self.current.as_ref().map(|f| f.start_ticks);
        let clock_ts = self.state[self.clock].timescale;
        for st in &mut self.state {
            let before = start.map(|s| rescale(s, clock_ts, st.timescale));
            if st
                .held
                .as_ref()
                .is_some_and(|h| before.is_none_or(|b| h.rec_dts < b))
            {
                st.complete_held(None);
            }
        }
        let closed = prev.path.clone();
        self.write_fragment(start.unwrap_or(i64::MAX), Some(prev), out, false);
        match &self.current {
            Some(f) => out.push(RecordEffect::Rotate {
                closed,
                next: f.path.clone(),
            }),
            None => out.push(RecordEffect::Close { closed }),
        }
    }

    /// Writes the ready frames before `limit` (clock ticks): those before the current file's
    /// start to the draining file, the rest to the current file.
    fn flush(&mut self, limit: i64, out: &mut Vec<RecordEffect>) {
        if let Some(prev) = self.draining.take() {
            let start = self.current.as_ref().map_or(i64::MAX, |f| f.start_ticks);
            self.draining = self.write_fragment(start.min(limit), Some(prev), out, false);
        }
        let cur = self.current.take();
        self.current = self.write_fragment(limit, cur, out, false);
    }

    /// Writes the ready frames before `before` (clock ticks) to `file` as one fragment;
    /// returns the file unless `closing`.
    fn write_fragment(
        &mut self,
        before: i64,
        file: Option<OpenFile>,
        out: &mut Vec<RecordEffect>,
        closing: bool,
    ) -> Option<OpenFile> {
        let mut file = file?;
        let clock_ts = self.state[self.clock].timescale;
        let file_start = file.start_ticks;
        let mut taken: Vec<Vec<Pending>> = Vec::with_capacity(self.state.len());
        let mut late = 0;
        for (st, end) in self.state.iter_mut().zip(&mut file.written_end) {
            let limit = rescale(before, clock_ts, st.timescale);
            let n = st.ready.iter().take_while(|p| p.rec_dts < limit).count();
            let mut run: Vec<Pending> = st.ready.drain(..n).collect();
            to_decode_times(&mut run);
            // A B-frame shown before the end of a fragment cut mid-GOP (a size or span
            // limit) cannot follow it: dropped.
            let before_len = run.len();
            run.retain(|p| end.is_none_or(|e| p.rec_dts >= e));
            late += before_len - run.len();
            if let Some(p) = run.last() {
                *end = Some(p.rec_dts + i64::from(p.duration));
            }
            taken.push(run);
        }
        for _ in 0..late {
            self.drop_frame(DropReason::Malformed);
        }
        let starts: Vec<i64> = self
            .state
            .iter()
            .map(|st| rescale(file_start, clock_ts, st.timescale))
            .collect();
        if !file.started {
            // Decode times made from presentation times put some frames' presentation
            // before their decode (negative offsets): the first fragment's largest such lead
            // becomes the file's composition delay, which its edit list takes back out — a
            // B-frame file as encoders write them (players then never see pts < dts, and
            // pacing by decode time sends no frame after its presentation time).
            for ((run, &start), shift) in taken.iter().zip(&starts).zip(&mut file.cts_shift) {
                let lead = run
                    .iter()
                    .filter(|p| p.rec_dts >= start)
                    .map(|p| -p.cts_offset)
                    .max()
                    .unwrap_or(0);
                *shift = lead.max(0);
            }
            let presentation: Vec<u64> = file
                .cts_shift
                .iter()
                .map(|&d| u64::from(d.unsigned_abs()))
                .collect();
            match FragmentWriter::with_presentation_starts(&self.tracks, &presentation) {
                Ok(w) => file.writer = w,
                Err(_) => file.cts_shift.iter_mut().for_each(|d| *d = 0),
            }
        }
        let samples: Vec<Vec<RecordSample<'_>>> = taken
            .iter()
            .zip(&starts)
            .zip(&file.cts_shift)
            .map(|((run, &start), &shift)| {
                // A frame before the file's start has nowhere to go (tfdt is unsigned).
                run.iter()
                    .filter(|p| p.rec_dts >= start)
                    .map(|p| RecordSample {
                        duration: p.duration,
                        cts_offset: p.cts_offset.saturating_add(shift),
                        sync: p.sync,
                        data: &p.data,
                    })
                    .collect()
            })
            .collect();
        let runs: Vec<TrackFragment<'_>> = taken
            .iter()
            .zip(&starts)
            .zip(&samples)
            .map(|((run, &start), samples)| TrackFragment {
                base_decode_time: run
                    .iter()
                    .find(|p| p.rec_dts >= start)
                    .map_or(0, |p| u64::try_from(p.rec_dts - start).unwrap_or(0)),
                samples,
            })
            .collect();
        let mut bytes = Vec::new();
        if !file.started {
            file.writer.init_segment(&mut bytes);
        }
        let before_len = bytes.len();
        match file.writer.fragment(&runs, &mut bytes) {
            Ok(()) if bytes.len() > before_len => {
                out.push(RecordEffect::Write {
                    file: RecordingFile {
                        path: file.path.clone(),
                        starts_file: !file.started,
                    },
                    bytes,
                });
                file.started = true;
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, path = %file.path.display(), "recording fragment dropped");
            }
        }
        if closing {
            if file.started {
                out.push(RecordEffect::Close { closed: file.path });
            }
            return None;
        }
        Some(file)
    }
}

/// The retention rule of [`Recorder::expired`] for one stream's `files` (path, modification
/// time, size) without a recorder (a stream that ended still has its files expired): older
/// than `config.max_age`, then the oldest while the total is over `config.max_total_bytes`;
/// files for which `live` is true (being written) are kept and still count in the total.
pub fn expired_files(
    config: &RecordConfig,
    files: &[(PathBuf, SystemTime, u64)],
    now: SystemTime,
    live: impl Fn(&Path) -> bool,
) -> Vec<PathBuf> {
    let mut by_age: Vec<&(PathBuf, SystemTime, u64)> = files.iter().collect();
    by_age.sort_by_key(|(_, modified, _)| *modified);
    let mut total: u64 = files.iter().map(|(_, _, size)| *size).sum();
    let mut out = Vec::new();
    for (path, modified, size) in by_age {
        if live(path) {
            continue;
        }
        let too_old = config
            .max_age
            .is_some_and(|max| now.duration_since(*modified).unwrap_or_default() > max);
        let too_big = config.max_total_bytes.is_some_and(|max| total > max);
        if too_old || too_big {
            total = total.saturating_sub(*size);
            out.push(path.clone());
        }
    }
    out
}

/// Gives a run of frames in decode order increasing decode times when their times (from
/// presentation times, for RTP sources) are not: the run's times sorted are its decode times
/// (a GOP's decode times are its presentation times in order), each frame's composition
/// offset keeps its presentation time (`pts` − `dts`, negative for some frames: signed
/// offsets of a version 1 `trun`, ISO/IEC 14496-12 §8.8.8, the CMAF way), and durations are
/// the steps between the sorted times, the last one to the time after the run.
fn to_decode_times(run: &mut [Pending]) {
    if run.windows(2).all(|w| w[0].rec_dts < w[1].rec_dts) {
        return;
    }
    let mut times: Vec<i64> = run.iter().map(|p| p.rec_dts).collect();
    times.sort_unstable();
    let step = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .min()
        .unwrap_or(1);
    let (Some(last), Some(&latest)) = (run.last(), times.last()) else {
        return;
    };
    let end = (last.rec_dts + i64::from(last.duration)).max(latest + step);
    for (k, p) in run.iter_mut().enumerate() {
        let dts = times[k];
        let next = times.get(k + 1).copied().unwrap_or(end);
        p.cts_offset = i32::try_from(i64::from(p.cts_offset) + p.rec_dts - dts).unwrap_or(0);
        p.duration = u32::try_from(next - dts).unwrap_or(0);
        p.rec_dts = dts;
    }
}

/// `d` in ticks of `timescale` (rounded down, saturating).
fn ticks(d: Duration, timescale: u32) -> i64 {
    i64::try_from(d.as_nanos() * u128::from(timescale) / 1_000_000_000).unwrap_or(i64::MAX)
}

/// `t` ticks of `from` in ticks of `to` (rounded down, saturating).
fn rescale(t: i64, from: u32, to: u32) -> i64 {
    if from == to || t == i64::MAX {
        return t;
    }
    let v = i128::from(t) * i128::from(to) / i128::from(from.max(1));
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// `YYYY-MM-DD_HH-MM-SS` of `wall` in UTC (civil date from days since 1970-01-01, the
/// proleptic Gregorian calendar).
pub fn file_stamp(wall: SystemTime) -> String {
    let secs = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}_{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day number counted from 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
