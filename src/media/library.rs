//! The media library: maps stream names to files under one root, indexes each file once
//! (on first request, again when it changes on disk) and shares the index with every viewer.
//!
//! Root confinement: a stream name is a list of path segments already checked by
//! `rtsp::uri` (no `.`/`..`, no separators inside a segment); the library adds a supported
//! extension, canonicalizes the result and refuses anything whose real path (after symlinks)
//! is not under the canonical root. Nothing outside the root is ever opened for serving.
//!
//! Listing (`MediaLibrary::list`) walks the root's real directories only: it does not descend
//! through symlinked directories, and it visits each directory once, identified by (device,
//! inode), so neither a symlink loop (`root/a/loop -> ..`) nor a bind mount of a parent can
//! list a file twice or walk to the depth limit. A symlinked directory inside the root names a
//! directory the walk reaches under its real path anyway (one pointing outside is refused), so
//! nothing is lost from the list; a stream name through such a link still resolves, by the
//! canonicalization rule above. Symlinked *files* inside the root are listed under their own
//! names when their target lies under the root.
//!
//! Files the server writes itself (recordings, `control::record`) grow while they are served:
//! each request after the file grew re-indexes it by the (length, mtime) key, so a new viewer
//! gets what is on disk *now* (up to the last complete fragment) and an earlier viewer keeps
//! the mapping and index it opened (a mapping of the old length stays valid while the file
//! grows). Such files are registered in [`WritingFiles`] and mapped without a read lease: we
//! hold them open for writing, so the lease would be refused anyway (fcntl(2): `EAGAIN` when
//! the file is open for writing), and a lease taken between two of our writes would make our
//! own next open for writing wait for the lease-break time. Once the file is finished, the next
//! request maps it again, this time with the lease.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::media::mkv::{is_matroska, parse_mkv, MkvError};
use crate::media::mp4::{parse_mp4, Mp4Error};
use crate::media::track::MediaIndex;
use crate::media::ts::{looks_like_ts, parse_ts_with_stats, TsError, TsStats};
use crate::sys::lease::{lease_breaking, take_read_lease};
use crate::sys::mmap::MappedFile;
use crate::sys::ring::RingView;

/// File extensions served, in lookup order: ISO-BMFF, Matroska/WebM, then MPEG-TS (`ts`,
/// 188-byte packets; `.m2ts`'s 192-byte BDAV packets are not read).
pub const MEDIA_EXTENSIONS: [&str; 7] = ["mp4", "m4v", "mov", "m4a", "mkv", "webm", "ts"];

/// Extensions of Matroska files: read by the Matroska reader even when their first bytes say
/// otherwise (so a damaged one gets the Matroska error).
const MATROSKA_EXTENSIONS: [&str; 2] = ["mkv", "webm"];

/// Deepest directory level scanned when listing a media root.
const MAX_SCAN_DEPTH: usize = 8;

/// The bundled sample clip, compiled into the binary: 10 s of 640x360 H.264 Main profile
/// without B-frames (so WebRTC viewers, whose decoders do not reorder, can play it) at 25 fps
/// with a keyframe every 2 s, and 48 kHz stereo AAC-LC (`scripts/make-sample-media.sh`).
pub static SAMPLE_MP4: &[u8] = include_bytes!("../../tests/media/sample.mp4");

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// No such stream (also used for names that would leave the media root, so a prober learns nothing).
    #[error("no stream named {0:?}")]
    NotFound(String),
    /// The file exists but could not be read.
    #[error("reading {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (not a `source`: the message already carries it).
        cause: std::io::Error,
    },
    /// The file is not a usable MP4.
    #[error("{path}: {cause}")]
    Media {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: Mp4Error,
    },
    /// The file is not a usable MPEG transport stream.
    #[error("{path}: {cause}")]
    Ts {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: TsError,
    },
    /// The file is not a usable Matroska/WebM file.
    #[error("{path}: {cause}")]
    Matroska {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: MkvError,
    },
}

/// Indexes `bytes` read from `path` by what they are: Matroska when they start with the EBML
/// magic (`1A 45 DF A3`) or the file is named `.mkv`/`.webm`; a transport stream when the
/// file is named `.ts` or the bytes start with sync bytes at a 188-byte stride
/// (`media::ts`); ISO-BMFF otherwise. Logs one line for a file served only in part (tracks
/// skipped, malformed blocks, bytes off the packet grid, cut short).
fn index_file(bytes: &[u8], path: &Path) -> Result<MediaIndex, LibraryError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let named_matroska = MATROSKA_EXTENSIONS.contains(&extension.as_str());
    let mut index = if is_matroska(bytes) || named_matroska {
        let mkv = parse_mkv(bytes).map_err(|cause| LibraryError::Matroska {
            path: path.to_owned(),
            cause,
        })?;
        if mkv.bad_blocks > 0 || mkv.truncated_at.is_some() {
            tracing::warn!(
                path = %path.display(),
                bad_blocks = mkv.bad_blocks,
                truncated_at = ?mkv.truncated_at,
                "matroska file served in part: malformed blocks skipped or file cut short"
            );
        }
        mkv.index
    } else if extension == "ts" || looks_like_ts(bytes) {
        let (index, stats) = parse_ts_with_stats(bytes).map_err(|cause| LibraryError::Ts {
            path: path.to_owned(),
            cause,
        })?;
        if stats != TsStats::default() {
            // One line per indexing of a damaged file (module doc of `media::ts`).
            tracing::warn!(
                path = %path.display(),
                garbage_bytes = stats.garbage_bytes,
                resyncs = stats.resyncs,
                pcr_jumps = stats.pcr_jumps,
                "mpeg-ts: skipped bytes off the packet grid or bridged PCR jumps; serving the rest"
            );
        }
        index
    } else {
        parse_mp4(bytes).map_err(|cause| LibraryError::Media {
            path: path.to_owned(),
            cause,
        })?
    };
    crate::media::mpa::apply_frame_headers(&mut index, bytes);
    if !index.skipped.is_empty() {
        let has_video = index
            .tracks
            .iter()
            .any(|t| t.kind == crate::media::track::TrackKind::Video);
        tracing::warn!(
            path = %path.display(),
            skipped = ?index.skipped,
            has_video,
            "serving only some tracks of this file"
        );
    }
    Ok(index)
}

/// Media bytes: a file mapping or bytes compiled into the binary.
#[derive(Debug)]
pub enum MediaBytes {
    /// A read-only memory map.
    Mapped(MappedFileHandle),
    /// Static bytes (the bundled sample).
    Static(&'static [u8]),
    /// The byte ring of a live log (`crate::live_log`): samples are appended while viewers
    /// read; which ranges are stable is the log's business (see `live_log`).
    Ring(RingBytes),
}

/// Opaque shared owner of a live log's read-only ring view (the `sys` type stays private).
#[derive(Debug, Clone)]
pub struct RingBytes(pub(crate) Arc<RingView>);

/// Opaque owner of a mapping (the `sys` type stays private) and of the file descriptor that
/// holds its read lease, if any: both go away with the last viewer.
#[derive(Debug)]
pub struct MappedFileHandle {
    map: MappedFile,
    leased: Option<File>,
    /// The open file (the same as `leased` when leased), for `sendfile(2)` of its ranges.
    file: File,
}

impl MediaBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            MediaBytes::Mapped(m) => m.map.bytes(),
            MediaBytes::Static(s) => s,
            MediaBytes::Ring(r) => r.0.bytes(),
        }
    }
}

/// An indexed media file, shared by all its viewers.
#[derive(Debug)]
pub struct MediaFile {
    /// Stream name (path under the root without extension).
    pub name: String,
    /// The bytes sample offsets point into.
    pub bytes: MediaBytes,
    /// The parsed index.
    pub index: MediaIndex,
    /// Set when the file is about to change on disk under its mapping: its viewers are ended
    /// and new requests re-open the file.
    revoked: AtomicBool,
}

impl MediaFile {
    /// Indexes static bytes (the bundled sample, tests).
    pub fn from_static(name: &str, bytes: &'static [u8]) -> Result<Self, Mp4Error> {
        let index = parse_mp4(bytes)?;
        Ok(Self {
            name: name.to_owned(),
            bytes: MediaBytes::Static(bytes),
            index,
            revoked: AtomicBool::new(false),
        })
    }

    /// The media facade of a live log: its ring as the bytes, its tracks' codecs with empty
    /// sample tables (a log's samples are in its own index, `crate::live_log`).
    pub(crate) fn live(
        name: &str,
        bytes: RingBytes,
        tracks: Vec<crate::media::track::Track>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            bytes: MediaBytes::Ring(bytes),
            index: MediaIndex {
                tracks,
                skipped: Vec::new(),
            },
            revoked: AtomicBool::new(false),
        }
    }

    /// Maps and indexes one file (no root confinement: for `shardcast probe` and tests).
    pub fn open(path: &Path, name: &str) -> Result<Self, LibraryError> {
        let file = File::open(path).map_err(|source| LibraryError::Io {
            path: path.to_owned(),
            cause: source,
        })?;
        Self::map(file, path, name, false)
    }

    /// Maps and indexes `file`; with `lease`, first takes a read lease so the file cannot be
    /// truncated under the mapping without notice (see `sys/lease.rs`).
    fn map(file: File, path: &Path, name: &str, lease: bool) -> Result<Self, LibraryError> {
        let leased = lease
            && {
                match take_read_lease(&file) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "no read lease ({e}): truncating this file in place while it plays would crash the server; replace files by rename");
                        false
                    }
                }
            };
        let map = MappedFile::map(&file).map_err(|source| LibraryError::Io {
            path: path.to_owned(),
            cause: source,
        })?;
        let index = index_file(map.bytes(), path)?;
        Ok(Self {
            name: name.to_owned(),
            bytes: MediaBytes::Mapped(MappedFileHandle {
                map,
                leased: leased.then(|| file.try_clone()).and_then(Result::ok),
                file,
            }),
            index,
            revoked: AtomicBool::new(false),
        })
    }

    /// True once the file was revoked (it is changing on disk).
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Revokes the file if a writer is waiting for its lease; true if it is revoked.
    pub fn revoke_if_breaking(&self) -> bool {
        if self.lease_breaking() {
            self.revoked.store(true, Ordering::Release);
        }
        self.is_revoked()
    }

    /// True when a writer is waiting for our read lease on this file.
    fn lease_breaking(&self) -> bool {
        match &self.bytes {
            MediaBytes::Mapped(MappedFileHandle {
                leased: Some(f), ..
            }) => lease_breaking(f),
            _ => false,
        }
    }

    /// Average media bitrate in bits/s over all tracks (for bandwidth admission).
    pub fn bitrate_bps(&self) -> u64 {
        let bytes: u64 = self
            .index
            .tracks
            .iter()
            .flat_map(|t| t.samples.iter())
            .map(|s| u64::from(s.len))
            .sum();
        let secs = self.duration().as_secs_f64().max(0.001);
        (bytes as f64 * 8.0 / secs) as u64
    }

    /// Presentation duration.
    pub fn duration(&self) -> Duration {
        self.index.duration()
    }

    /// The open file its bytes are mapped from (`None` for static bytes): lets a writer hand
    /// ranges to the kernel by file offset (`sendfile(2)`) instead of from the mapping.
    pub fn file(&self) -> Option<&File> {
        match &self.bytes {
            MediaBytes::Mapped(m) => Some(&m.file),
            MediaBytes::Static(_) | MediaBytes::Ring(_) => None,
        }
    }
}

/// Files the server is writing now (recordings), by real path: mapped without a read lease
/// (module doc). Shared by every library of the process (a reload makes a new library).
#[derive(Debug, Clone, Default)]
pub struct WritingFiles(Arc<Mutex<HashSet<PathBuf>>>);

impl WritingFiles {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `path` (a real path: canonicalized) is being written by this process.
    pub fn insert(&self, path: PathBuf) {
        self.set().insert(path);
    }

    /// `path` is finished (closed).
    pub fn remove(&self, path: &Path) {
        self.set().remove(path);
    }

    /// Whether `path` is being written.
    pub fn contains(&self, path: &Path) -> bool {
        self.set().contains(path)
    }
}

/// Cache key: a file is re-indexed when its length or modification time changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    len: u64,
    modified: Option<SystemTime>,
}

/// A cached index: the key it was made at, the file, and whether it was mapped without a
/// lease because we were writing the file.
type CacheEntry = (FileKey, Arc<MediaFile>, bool);

/// Where streams come from.
#[derive(Debug)]
enum Source {
    /// Only the bundled sample, as `sample`.
    Bundled(Arc<MediaFile>),
    /// Files under a root directory.
    Root(PathBuf),
}

/// Resolves stream names to indexed files.
#[derive(Debug)]
pub struct MediaLibrary {
    source: Source,
    /// Indexed files by real path: the key they were indexed at, the index, and whether it
    /// was mapped without a lease because we were writing the file.
    cache: Mutex<HashMap<PathBuf, CacheEntry>>,
    writing: WritingFiles,
}

impl MediaLibrary {
    /// A library serving only the bundled sample clip as `sample`.
    pub fn bundled() -> Result<Self, Mp4Error> {
        let file = MediaFile::from_static("sample", SAMPLE_MP4)?;
        Ok(Self {
            source: Source::Bundled(Arc::new(file)),
            cache: Mutex::new(HashMap::new()),
            writing: WritingFiles::default(),
        })
    }

    /// A library serving every supported file under `root`.
    pub fn from_root(root: &Path) -> std::io::Result<Self> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Self {
            source: Source::Root(root),
            cache: Mutex::new(HashMap::new()),
            writing: WritingFiles::default(),
        })
    }

    /// Shares `writing` (the files this process writes) with this library.
    pub fn set_writing(&mut self, writing: WritingFiles) {
        self.writing = writing;
    }

    /// The files this process is writing, as this library knows them.
    pub fn writing(&self) -> &WritingFiles {
        &self.writing
    }

    /// The real path of the media root (`None` for the bundled sample).
    pub fn root(&self) -> Option<&Path> {
        match &self.source {
            Source::Root(root) => Some(root),
            Source::Bundled(_) => None,
        }
    }

    /// Revokes every cached file whose read lease is being broken (called on SIGIO): they
    /// leave the cache, and their viewers must be ended so the mapping — and with it the
    /// lease — goes away and the writer can proceed. Returns the revoked stream names.
    pub fn revoke_breaking(&self) -> Vec<String> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut names = Vec::new();
        cache.retain(|_, (_, media, _)| {
            if media.revoke_if_breaking() {
                names.push(media.name.clone());
                false
            } else {
                true
            }
        });
        names
    }

    /// Stream names available now, sorted (a scan of the root; the bundled sample otherwise).
    pub fn list(&self) -> Vec<String> {
        match &self.source {
            Source::Bundled(f) => vec![f.name.clone()],
            Source::Root(root) => {
                let mut names = Vec::new();
                let mut visited = HashSet::new();
                if let Ok(meta) = std::fs::metadata(root) {
                    visited.insert((meta.dev(), meta.ino()));
                }
                scan(root, root, 0, &mut visited, &mut names);
                names.sort();
                names
            }
        }
    }

    /// Length and modification time of the file stream `name` is served from, without
    /// mapping or indexing it: lets callers cache what they derive from an index.
    pub fn file_stamp(&self, name: &str) -> Option<(u64, Option<SystemTime>)> {
        match &self.source {
            Source::Bundled(f) => (f.name == name).then_some((SAMPLE_MP4.len() as u64, None)),
            Source::Root(root) => {
                let segments: Vec<String> = name.split('/').map(str::to_owned).collect();
                let meta = std::fs::metadata(find_file(root, &segments)?).ok()?;
                Some((meta.len(), meta.modified().ok()))
            }
        }
    }

    /// Finds the stream named by the longest prefix of `segments`; returns it with the
    /// number of segments the name used (the rest address a track, e.g. `trackID=1`).
    pub fn resolve(&self, segments: &[String]) -> Result<(Arc<MediaFile>, usize), LibraryError> {
        let joined = segments.join("/");
        match &self.source {
            Source::Bundled(f) => {
                if segments.first().map(String::as_str) == Some(f.name.as_str()) {
                    Ok((f.clone(), 1))
                } else {
                    Err(LibraryError::NotFound(joined))
                }
            }
            Source::Root(root) => {
                for used in (1..=segments.len()).rev() {
                    if let Some(path) = find_file(root, &segments[..used]) {
                        let name = segments[..used].join("/");
                        return Ok((self.open(&path, &name)?, used));
                    }
                }
                Err(LibraryError::NotFound(joined))
            }
        }
    }

    /// Returns the cached index of `path`, (re-)indexing it when new or changed on disk.
    fn open(&self, path: &Path, name: &str) -> Result<Arc<MediaFile>, LibraryError> {
        let io_err = |source| LibraryError::Io {
            path: path.to_owned(),
            cause: source,
        };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        let key = FileKey {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        let writing = self.writing.contains(path);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_key, media, unleased)) = cache.get(path) {
            // A file indexed while we wrote it is mapped again once finished, with the lease.
            if *cached_key == key && (writing || !*unleased) {
                return Ok(media.clone());
            }
            if writing || *unleased {
                tracing::debug!(path = %path.display(), "recording grew or was finished; re-indexing");
            } else {
                tracing::info!(path = %path.display(), "media changed on disk; re-indexing");
            }
        }
        let media = Arc::new(MediaFile::map(file, path, name, !writing)?);
        // Bound the cache: drop entries nobody else holds before inserting.
        cache.retain(|_, (_, m, _)| Arc::strong_count(m) > 1);
        cache.insert(path.to_owned(), (key, media.clone(), writing));
        Ok(media)
    }
}

/// The file for a stream name under `root`, if one exists and really lies under `root`.
fn find_file(root: &Path, segments: &[String]) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for seg in segments {
        // Defence in depth: rtsp::uri already rejects these.
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains(['/', '\\', '\0']) {
            return None;
        }
        rel.push(seg);
    }
    let last = segments.last()?;
    let dir = root.join(&rel).parent()?.to_owned();
    for ext in MEDIA_EXTENSIONS {
        // Append the extension rather than replace one: `a.b` is served from `a.b.mp4`.
        let candidate = dir.join(format!("{last}.{ext}"));
        if let Ok(real) = candidate.canonicalize() {
            if !real.starts_with(root) {
                tracing::warn!(path = %candidate.display(), "refusing a file that resolves outside the media root");
            } else if real.is_file() {
                return Some(real);
            }
        }
    }
    None
}

/// Lists the media files under `dir` into `out`. Descends into real subdirectories only
/// (not through symlinks), each at most once by (device, inode) in `visited`, at most
/// [`MAX_SCAN_DEPTH`] levels deep.
fn scan(
    root: &Path,
    dir: &Path,
    depth: usize,
    visited: &mut HashSet<(u64, u64)>,
    out: &mut Vec<String>,
) {
    if depth > MAX_SCAN_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            // shardcast's own caches (Opus renditions) are never streams.
            if depth == 0 && entry.file_name() == crate::media::CACHE_DIR {
                continue;
            }
            // `file_type` does not follow symlinks: this is a real directory. Its (device,
            // inode) still guards against bind mounts that loop back up the tree.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if visited.insert((meta.dev(), meta.ino())) {
                scan(root, &path, depth + 1, visited, out);
            }
            continue;
        }
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if !real.starts_with(root) || !real.is_file() {
            // Outside the root, or a symlinked directory (not descended, see the module doc).
            continue;
        }
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            if MEDIA_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
                if let Ok(rel) = path.with_extension("").strip_prefix(root) {
                    let name: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(name.join("/"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(s: &str) -> Vec<String> {
        s.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn bundled_library_serves_sample_and_nothing_else() {
        let lib = MediaLibrary::bundled().unwrap();
        let (f, used) = lib.resolve(&segs("sample/trackID=0")).unwrap();
        assert_eq!((f.name.as_str(), used), ("sample", 1));
        assert!(matches!(
            lib.resolve(&segs("other")),
            Err(LibraryError::NotFound(_))
        ));
    }

    #[test]
    fn root_library_resolves_nested_names_and_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("shardcast-lib-{}", std::process::id()));
        let outside = dir.join("outside");
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("sub/clip.mp4"), SAMPLE_MP4).unwrap();
        std::fs::write(outside.join("secret.mp4"), SAMPLE_MP4).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.mp4"), root.join("link.mp4")).unwrap();
        std::fs::write(root.join("bad.mp4"), b"not an mp4 at all").unwrap();

        let lib = MediaLibrary::from_root(&root).unwrap();
        assert_eq!(lib.list(), vec!["bad".to_owned(), "sub/clip".to_owned()]);
        let (f, used) = lib.resolve(&segs("sub/clip/trackID=1")).unwrap();
        assert_eq!((f.name.as_str(), used), ("sub/clip", 2));
        let (again, _) = lib.resolve(&segs("sub/clip")).unwrap();
        assert!(Arc::ptr_eq(&f, &again), "index is shared, not rebuilt");
        assert!(matches!(
            lib.resolve(&segs("link")),
            Err(LibraryError::NotFound(_))
        ));
        assert!(matches!(
            lib.resolve(&segs("../outside/secret")),
            Err(LibraryError::NotFound(_))
        ));
        assert!(matches!(
            lib.resolve(&segs("bad")),
            Err(LibraryError::Media { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A recording being written (issue 16): mapped without a lease while we hold it open for
    /// appending, re-indexed when it grew (a viewer that opened it earlier keeps its
    /// snapshot), and mapped again with the lease once it is finished. (While a lease is
    /// held, opening the file for writing waits for the lease-break time and sends us SIGIO:
    /// why the recorder never reopens a file, `control::record`.)
    #[test]
    fn a_growing_recording_is_reindexed_and_leased_only_when_finished() {
        use crate::ingest::record::{FragmentWriter, RecordSample, RecordTrack, TrackFragment};
        use crate::media::track::{AacConfig, Codec, TrackKind};
        use std::io::Write;

        let dir = std::env::temp_dir().join(format!("shardcast-grow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec.mp4");
        let track = RecordTrack::from_codec(
            TrackKind::Audio,
            Codec::Aac(AacConfig {
                audio_specific_config: vec![0x11, 0x90],
                object_type: 2,
                sample_rate_hz: 48_000,
                channels: 2,
            }),
        );
        let mut writer = FragmentWriter::new(&[track]).unwrap();
        let mut first = Vec::new();
        writer.init_segment(&mut first);
        let data = [0x21u8; 100];
        let samples = [RecordSample {
            duration: 1024,
            cts_offset: 0,
            sync: true,
            data: &data,
        }; 10];
        let mut fragment = |k: u64| {
            let mut out = Vec::new();
            let run = TrackFragment {
                base_decode_time: k * 10 * 1024,
                samples: &samples,
            };
            writer.fragment(&[run], &mut out).unwrap();
            out
        };
        first.extend(fragment(0));

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.write_all(&first).unwrap();
        let lib = {
            let mut lib = MediaLibrary::from_root(&dir).unwrap();
            lib.set_writing(WritingFiles::default());
            lib
        };
        let real = path.canonicalize().unwrap();
        lib.writing().insert(real.clone());
        let (early, _) = lib.resolve(&segs("rec")).unwrap();
        assert_eq!(early.index.tracks[0].samples.len(), 10);
        assert!(!has_lease(&early), "no lease on a file we write");

        // The next fragment, and half of the one after: the new index has 20 samples.
        file.write_all(&fragment(1)).unwrap();
        let third = fragment(2);
        file.write_all(&third[..third.len() / 2]).unwrap();
        let (grown, _) = lib.resolve(&segs("rec")).unwrap();
        assert_eq!(grown.index.tracks[0].samples.len(), 20);
        assert_eq!(early.index.tracks[0].samples.len(), 10, "snapshot kept");
        file.write_all(&third[third.len() / 2..]).unwrap();

        // Finished: closed and unregistered; the same bytes are mapped again, leased.
        drop(file);
        lib.writing().remove(&real);
        let (done, _) = lib.resolve(&segs("rec")).unwrap();
        assert_eq!(done.index.tracks[0].samples.len(), 30);
        assert!(
            has_lease(&done),
            "a finished recording is leased like any file"
        );
        drop((early, grown, done));
        std::fs::remove_dir_all(&dir).unwrap();

        fn has_lease(m: &MediaFile) -> bool {
            matches!(
                &m.bytes,
                MediaBytes::Mapped(MappedFileHandle {
                    leased: Some(_),
                    ..
                })
            )
        }
    }

    /// Issue 13 item 10: a looping directory symlink used to be followed to the depth limit
    /// (43 files became 3,716 entries); every file is now listed once, under its real path.
    #[test]
    fn directory_symlink_loops_list_each_file_once() {
        let dir = std::env::temp_dir().join(format!("shardcast-loop-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("top.mp4"), b"x").unwrap();
        std::fs::write(root.join("a/one.mp4"), b"x").unwrap();
        std::fs::write(root.join("a/b/two.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink("..", root.join("a/loop")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("a/b/up")).unwrap();
        // A link to a directory elsewhere inside the root: not descended, still resolvable.
        std::os::unix::fs::symlink("a/b", root.join("alias")).unwrap();
        std::fs::write(root.join("a/b/clip.mp4"), SAMPLE_MP4).unwrap();

        let lib = MediaLibrary::from_root(&root).unwrap();
        assert_eq!(
            lib.list(),
            vec![
                "a/b/clip".to_owned(),
                "a/b/two".to_owned(),
                "a/one".to_owned(),
                "top".to_owned()
            ]
        );
        let (f, used) = lib.resolve(&segs("alias/clip")).unwrap();
        assert_eq!((f.name.as_str(), used), ("alias/clip", 2));
        assert!(lib.resolve(&segs("a/loop/a/b/clip")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The rendition cache (`<root>/.shardcast/`) is never listed as streams; a folder of
    /// that name deeper down is an ordinary folder.
    #[test]
    fn scan_skips_the_rendition_cache() {
        let dir = std::env::temp_dir().join(format!("shardcast-cache-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join(".shardcast/renditions")).unwrap();
        std::fs::create_dir_all(root.join("sub/.shardcast")).unwrap();
        std::fs::write(root.join("clip.mp4"), b"x").unwrap();
        std::fs::write(root.join(".shardcast/renditions/clip.opus.mp4"), b"x").unwrap();
        std::fs::write(root.join("sub/.shardcast/kept.mp4"), b"x").unwrap();
        let root = root.canonicalize().unwrap();
        let lib = MediaLibrary::from_root(&root).unwrap();
        assert_eq!(
            lib.list(),
            vec!["clip".to_owned(), "sub/.shardcast/kept".to_owned()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
