//! Recording live streams (issue 16 item 6, `docs/design/live-ingest.md`): the shell around
//! the sans-IO [`Recorder`]. Ingest hands every frame of a recorded stream to its
//! [`StreamRecording`], which carries out the recorder's effects with plain `std::fs` calls.
//!
//! **Why blocking file writes on the control thread are acceptable.** A recorder writes one
//! fragment per GOP (every keyframe, at most
//! [`MAX_FRAGMENT_BYTES`](crate::ingest::record::MAX_FRAGMENT_BYTES), typically a few hundred
//! KB every 1–2 s per stream) with one `write_all` to a file opened in append mode: a copy into
//! the page cache, tens to hundreds of microseconds, the same order as depacketizing those
//! frames. The one slow call, `fsync(2)` when a file is finished, runs on a short-lived helper
//! thread (inline only at shutdown). A write that fails (disk full, I/O error, the folder
//! gone) stops that stream's recording with one log line; the stream itself goes on.
//!
//! **Crash safety.** Bytes reach the file fragment by fragment, so a crash (even `kill -9`)
//! loses only the fragment the recorder still holds in memory, plus at most the tail of a
//! fragment cut short mid-write, which the fragmented-MP4 reader leaves out
//! (`media::mp4::fragments`). `fsync` on rotation and close makes finished files durable
//! against power loss too.
//!
//! **Files and leases.** A file is created with `O_EXCL` (never an existing file: one the
//! catalog holds a read lease on would make our open for writing wait for the lease-break
//! time, `sys/lease.rs`), kept open until it is finished, and registered in the library's
//! [`WritingFiles`] meanwhile, so viewers map it without asking for a lease
//! (`media::library`). A name that exists already (a restart within the same second) gets a
//! `_N` suffix.
//!
//! **Retention.** Once a minute ([`RETENTION_INTERVAL`]) the recordings folder is walked and
//! every stream folder's files are expired by [`expired_files`] (age since the last write;
//! size per stream), files being written excepted — streams that ended included.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::RecordSettings;
use crate::ingest::record::{expired_files, RecordConfig, RecordEffect, RecordTrack, Recorder};
use crate::ingest::Frame;
use crate::live_log::LogTrackSpec;
use crate::media::library::WritingFiles;
use crate::rtsp::auth::{publish_needs, PublishNeeds};

/// How often old recordings are looked for.
pub(crate) const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Deepest folder level below the recordings folder that retention walks (stream paths are
/// a few segments deep).
const MAX_WALK_DEPTH: usize = 16;
/// Most `_N` suffixes tried for a file name that exists already.
const MAX_NAME_TRIES: usize = 100;

/// Who waits for `fsync` of a finished file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncOn {
    /// A helper thread (the control thread goes on).
    Helper,
    /// The caller (shutdown: the process is about to exit).
    Caller,
}

/// The recording policy of the server: which paths are recorded, where, how long kept.
pub(crate) struct Recording {
    patterns: Vec<String>,
    config: RecordConfig,
    writing: WritingFiles,
    next_retention: Option<Instant>,
}

impl Recording {
    /// Creates the recordings folder under `media_root` (checked to stay inside it by its
    /// real path, symlinks resolved); `writing` is shared with the media library.
    pub(crate) fn new(
        settings: &RecordSettings,
        media_root: &Path,
        writing: WritingFiles,
    ) -> io::Result<Self> {
        let root = media_root.canonicalize()?;
        let dir = root.join(&settings.dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let real = dir.canonicalize()?;
        let Ok(record_dir) = real.strip_prefix(&root).map(Path::to_path_buf) else {
            return Err(io::Error::other(format!(
                "record dir {} resolves to {}, outside the media root {}",
                dir.display(),
                real.display(),
                root.display()
            )));
        };
        tracing::info!(dir = %real.display(), paths = %settings.paths.join(","), segment_secs = settings.segment.as_secs(), "recording live streams");
        Ok(Self {
            patterns: settings.paths.clone(),
            config: RecordConfig {
                media_root: root,
                record_dir,
                segment_duration: settings.segment,
                max_age: settings.max_age,
                max_total_bytes: settings.max_size_bytes,
            },
            writing,
            next_retention: None,
        })
    }

    /// The real path of the recordings folder.
    pub(crate) fn dir(&self) -> PathBuf {
        self.config.media_root.join(&self.config.record_dir)
    }

    /// A recording of `stream` with these tracks, if its path is recorded (the same pattern
    /// rules as `--publish`, `rtsp::auth`).
    pub(crate) fn start(&self, stream: &str, specs: &[LogTrackSpec]) -> Option<StreamRecording> {
        if publish_needs(&self.patterns, &[], stream) != PublishNeeds::Nothing {
            return None;
        }
        let tracks = specs
            .iter()
            .map(|s| RecordTrack::from_codec(s.kind, s.codec.clone()))
            .collect();
        match Recorder::new(self.config.clone(), stream, tracks) {
            Ok(recorder) => {
                tracing::info!(stream = %stream, dir = %recorder.dir().display(), "recording");
                Some(StreamRecording {
                    stream: stream.to_owned(),
                    recorder,
                    open: HashMap::new(),
                    effects: Vec::new(),
                    writing: self.writing.clone(),
                    failed: false,
                })
            }
            Err(e) => {
                tracing::warn!(stream = %stream, "not recorded: {e}");
                None
            }
        }
    }

    /// Runs retention when it is due (once a [`RETENTION_INTERVAL`]); the files deleted.
    pub(crate) fn retention_if_due(&mut self, now: Instant, wall: SystemTime) -> usize {
        if self.config.max_age.is_none() && self.config.max_total_bytes.is_none() {
            return 0;
        }
        if self.next_retention.is_some_and(|t| now < t) {
            return 0;
        }
        self.next_retention = Some(now + RETENTION_INTERVAL);
        self.retention(wall)
    }

    /// Deletes expired files in every stream folder; the number deleted.
    pub(crate) fn retention(&self, wall: SystemTime) -> usize {
        let mut deleted = 0;
        let mut stack = vec![(self.dir(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files = Vec::new();
            for entry in entries.flatten() {
                // `file_type` does not follow symlinks: only our own real files and folders.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let path = entry.path();
                if kind.is_dir() && depth < MAX_WALK_DEPTH {
                    stack.push((path, depth + 1));
                } else if kind.is_file() && path.extension().is_some_and(|e| e == "mp4") {
                    if let Ok(meta) = entry.metadata() {
                        let modified = meta.modified().unwrap_or(wall);
                        files.push((path, modified, meta.len()));
                    }
                }
            }
            for path in expired_files(&self.config, &files, wall, |p| self.writing.contains(p)) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "recording expired: deleted");
                        deleted += 1;
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), "expired recording not deleted: {e}")
                    }
                }
            }
        }
        deleted
    }
}

/// A file being written: the open file and its real path (as [`WritingFiles`] has it).
struct OpenFile {
    file: File,
    real: PathBuf,
}

/// A finished file on its way out: `fsync`, then close, then no longer in
/// [`WritingFiles`] (in this order, so a viewer never asks for a lease while it is open for
/// writing). Done on drop, so even a helper thread that could not start finishes it.
struct Finishing {
    file: Option<File>,
    real: PathBuf,
    writing: WritingFiles,
}

impl Drop for Finishing {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            if let Err(e) = file.sync_all() {
                tracing::warn!(file = %self.real.display(), "recording fsync failed: {e}");
            }
        }
        self.writing.remove(&self.real);
    }
}

/// One stream's recording: its recorder and the files it has open.
pub(crate) struct StreamRecording {
    stream: String,
    recorder: Recorder,
    /// Open files by the recorder's path for them.
    open: HashMap<PathBuf, OpenFile>,
    /// The recorder's effects (a buffer reused for every frame).
    effects: Vec<RecordEffect>,
    writing: WritingFiles,
    /// A write failed: nothing more is recorded.
    failed: bool,
}

impl StreamRecording {
    /// Takes one frame that arrived at `wall`.
    pub(crate) fn push(&mut self, frame: &Frame<'_>, wall: SystemTime) {
        if self.failed {
            return;
        }
        self.recorder.push(frame, wall, &mut self.effects);
        self.apply(SyncOn::Helper);
    }

    /// Writes what the recorder holds and finishes every file (the stream ended).
    pub(crate) fn finish(mut self, sync: SyncOn) {
        if !self.failed {
            self.recorder.finish(&mut self.effects);
            self.apply(sync);
        }
        self.close_all(sync);
        tracing::info!(stream = %self.stream, "recording finished");
    }

    /// Whether a write failed and the recording stopped.
    #[cfg(test)]
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    fn apply(&mut self, sync: SyncOn) {
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            if let Err(e) = self.carry_out(effect, sync) {
                tracing::warn!(stream = %self.stream, "recording stopped (the stream goes on): {e}");
                self.failed = true;
                self.close_all(sync);
                break;
            }
        }
        effects.clear();
        self.effects = effects;
    }

    fn carry_out(&mut self, effect: RecordEffect, sync: SyncOn) -> io::Result<()> {
        match effect {
            RecordEffect::Write { file, bytes } => {
                if file.starts_file {
                    let opened = self.create(&file.path)?;
                    self.open.insert(file.path.clone(), opened);
                }
                let Some(open) = self.open.get_mut(&file.path) else {
                    return Err(io::Error::other(format!(
                        "{}: bytes for a file that is not open",
                        file.path.display()
                    )));
                };
                // One write per fragment: a crash cuts at most this fragment short.
                open.file
                    .write_all(&bytes)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", open.real.display())))
            }
            RecordEffect::Rotate { closed, .. } | RecordEffect::Close { closed } => {
                if let Some(f) = self.open.remove(&closed) {
                    finish_file(f, &self.writing, sync);
                }
                Ok(())
            }
        }
    }

    /// Creates `path` (or `path` with a `_N` suffix when it exists), never opening an
    /// existing file; registers it as being written.
    fn create(&self, path: &Path) -> io::Result<OpenFile> {
        let context =
            |e: io::Error, p: &Path| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| context(e, dir))?;
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let mut candidate = path.to_path_buf();
        for n in 1..=MAX_NAME_TRIES {
            match OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&candidate)
            {
                Ok(file) => {
                    let real = candidate
                        .canonicalize()
                        .map_err(|e| context(e, &candidate))?;
                    self.writing.insert(real.clone());
                    return Ok(OpenFile { file, real });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let stem = stem.as_deref().unwrap_or("recording");
                    candidate = path.with_file_name(format!("{stem}_{n}.mp4"));
                }
                Err(e) => return Err(context(e, &candidate)),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{}: {MAX_NAME_TRIES} names taken", path.display()),
        ))
    }

    fn close_all(&mut self, sync: SyncOn) {
        for (_, f) in self.open.drain() {
            finish_file(f, &self.writing, sync);
        }
    }
}

/// `fsync`s and closes a finished file, on a helper thread or here.
fn finish_file(f: OpenFile, writing: &WritingFiles, sync: SyncOn) {
    let finishing = Finishing {
        file: Some(f.file),
        real: f.real,
        writing: writing.clone(),
    };
    match sync {
        SyncOn::Caller => drop(finishing),
        SyncOn::Helper => {
            // If the thread cannot start, the closure (and `finishing`) is dropped here, and
            // the drop syncs inline.
            let _ = std::thread::Builder::new()
                .name("record-sync".into())
                .spawn(move || drop(finishing));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::track::{AacConfig, Codec, TrackKind};

    fn temp_root(tag: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "shardcast-recshell-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn settings(dir: &str) -> RecordSettings {
        RecordSettings {
            paths: vec!["live/*".into()],
            dir: PathBuf::from(dir),
            segment: Duration::from_secs(3600),
            max_age: Some(Duration::from_secs(3600)),
            max_size_bytes: None,
        }
    }

    fn aac_spec() -> LogTrackSpec {
        LogTrackSpec {
            kind: TrackKind::Audio,
            // AAC-LC, 48 kHz, stereo (ISO/IEC 14496-3 §1.6.2.1).
            codec: Codec::Aac(AacConfig {
                audio_specific_config: vec![0x11, 0x90],
                object_type: 2,
                sample_rate_hz: 48_000,
                channels: 2,
            }),
        }
    }

    #[test]
    fn recordings_dir_must_resolve_inside_the_media_root() {
        let root = temp_root("escape");
        let outside = temp_root("outside");
        std::os::unix::fs::symlink(&outside, root.join("rec")).unwrap();
        let err = Recording::new(&settings("rec"), &root, WritingFiles::default())
            .err()
            .expect("a symlink out of the root is refused");
        assert!(err.to_string().contains("outside the media root"), "{err}");
        let ok = Recording::new(&settings("recordings"), &root, WritingFiles::default()).unwrap();
        assert!(ok.dir().is_dir());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn only_matching_paths_are_recorded() {
        let root = temp_root("match");
        let rec = Recording::new(&settings("recordings"), &root, WritingFiles::default()).unwrap();
        assert!(rec.start("live/cam1", &[aac_spec()]).is_some());
        assert!(rec.start("other/cam1", &[aac_spec()]).is_none());
        assert!(rec.start("live", &[aac_spec()]).is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Audio frames (1024 samples at 48 kHz) written through the shell: a file appears,
    /// registered as being written until finished; an existing name is never opened (a
    /// `_1` suffix instead); a write error stops the recording, not the caller.
    #[test]
    fn files_are_created_exclusively_and_registered_while_written() {
        let root = temp_root("files");
        let writing = WritingFiles::default();
        let rec = Recording::new(&settings("recordings"), &root, writing.clone()).unwrap();
        let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // The name the first file will get exists already.
        let dir = rec.dir().join("live/a");
        std::fs::create_dir_all(&dir).unwrap();
        let taken = dir.join(format!("{}.mp4", crate::ingest::record::file_stamp(wall0)));
        std::fs::write(&taken, b"someone else's").unwrap();

        let mut s = rec.start("live/a", &[aac_spec()]).unwrap();
        let data = [0x21u8; 200];
        for k in 0..150i64 {
            let frame = Frame {
                track: 0,
                pts: k * 1024,
                dts: k * 1024,
                sync: true,
                data: &data,
            };
            s.push(&frame, wall0 + Duration::from_micros(k as u64 * 21_333));
        }
        assert!(!s.failed());
        let written = dir.join(format!(
            "{}_1.mp4",
            crate::ingest::record::file_stamp(wall0)
        ));
        let real = written.canonicalize().unwrap();
        assert!(writing.contains(&real), "registered while written");
        assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's");
        let partial = std::fs::metadata(&written).unwrap().len();
        assert!(partial > 0);
        s.finish(SyncOn::Caller);
        assert!(!writing.contains(&real), "unregistered once finished");
        let bytes = std::fs::read(&written).unwrap();
        assert!(bytes.len() as u64 > partial);
        let index = crate::media::mp4::parse_mp4(&bytes).unwrap();
        assert_eq!(index.tracks[0].samples.len(), 150);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_write_error_stops_the_recording_only() {
        let root = temp_root("fail");
        let rec = Recording::new(&settings("recordings"), &root, WritingFiles::default()).unwrap();
        // A regular file where the stream's folder should be: creating the file fails.
        std::fs::create_dir_all(rec.dir().join("live")).unwrap();
        std::fs::write(rec.dir().join("live/b"), b"x").unwrap();
        let mut s = rec.start("live/b", &[aac_spec()]).unwrap();
        let data = [0x21u8; 10];
        let wall0 = SystemTime::now();
        for k in 0..100i64 {
            let frame = Frame {
                track: 0,
                pts: k * 1024,
                dts: k * 1024,
                sync: true,
                data: &data,
            };
            s.push(&frame, wall0 + Duration::from_micros(k as u64 * 21_333));
        }
        assert!(s.failed());
        s.finish(SyncOn::Caller);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn retention_deletes_old_files_of_ended_streams_but_not_files_being_written() {
        let root = temp_root("retention");
        let writing = WritingFiles::default();
        let rec = Recording::new(&settings("recordings"), &root, writing.clone()).unwrap();
        let dir = rec.dir().join("live/c");
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("old.mp4");
        let busy = dir.join("busy.mp4");
        let other = dir.join("notes.txt");
        for p in [&old, &busy, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        writing.insert(busy.canonicalize().unwrap());
        // Two hours later, everything is past the one-hour age limit.
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(rec.retention(later), 1);
        assert!(!old.exists());
        assert!(busy.exists() && other.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
