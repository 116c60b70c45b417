//! Opus renditions of AAC tracks, made once per file and cached beside the media
//! (`docs/design/webrtc.md`, "Codecs": browsers decode Opus, not AAC, over WebRTC).
//!
//! [`make_opus_rendition`] decodes a file's first AAC track, resamples it to 48 kHz when it
//! is not already, encodes 20 ms Opus frames and writes an audio-only fragmented MP4 with
//! one `Opus` track ("Encapsulation of Opus in ISO Base Media File Format" §4.3), which the
//! reader (`media::mp4`) indexes like any file; the WebRTC session takes video from the
//! source and audio from the rendition. It is blocking and CPU-bound (the bundled sample's
//! 10 s of 48 kHz stereo took 0.08 s in a release build, ~120× real time, on a shared 2-core
//! machine): the caller runs it off the shards, once, and maps the result.
//!
//! **Timeline.** The rendition keeps the AAC track's presentation timeline: its first Opus
//! sample starts at the AAC track's presentation time zero (the AAC edit list, usually 1024
//! priming samples, is applied while decoding; a leading gap becomes silence, as do gaps in
//! the AAC decode times). The encoder's lookahead is the `dOps` `PreSkip` ([`PRE_SKIP`]) and
//! the track's edit list starts presentation that far into the media (§4.4 of the Opus
//! mapping; ffmpeg writes the same pair), so players align it with the source's video.
//!
//! **Cache.** [`opus_rendition_path`] puts renditions under `<media root>/.shardcast/renditions/`
//! ([`CACHE_DIR`], which the library's scan skips: never a stream of its own). Each
//! rendition ends with a top-level `free` box stamping the source's size and mtime, which
//! [`is_fresh`] compares. A rendition is written to a temporary name in the same folder and
//! renamed into place, so a reader never maps a half-written file.
//!
//! **Crates.** AAC-LC is decoded by `symphonia-codec-aac` (pure Rust, `forbid(unsafe_code)`).
//! Opus is encoded by `opus-rs`, a pure-Rust port of libopus with a safe API: it builds
//! with cargo alone (the README's `cargo run --release -- serve` on a fresh Debian). The
//! others were checked and set aside: `opusic-sys` (its `bundled` feature runs cmake),
//! `audiopus_sys` (builds libopus with cmake unless a system `libopus-dev` is found),
//! `unsafe-libopus` (libopus 1.3.1 transpiled by c2rust: the most faithful encoder, but its
//! API is raw `unsafe fn`s, which this crate allows only in `sys/`). The resampler is our
//! own windowed sinc (`resample`), exact for the rational rate pairs AAC uses.
//!
//! Not done: live streams (their AAC is transcoded on the control side later), AAC with
//! SBR/PS (HE-AAC) or more than 2 channels (the decoder refuses them:
//! [`RenditionError::UnsupportedAac`]).

pub mod live;
mod resample;
mod transcode;

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use transcode::{transcode_to_opus_mp4, PRE_SKIP};

use crate::ingest::record::RecordError;
use crate::media::library::LibraryError;
use crate::media::MediaFile;

pub use crate::media::CACHE_DIR;
/// The folder under [`CACHE_DIR`] that holds Opus renditions.
pub const RENDITIONS_DIR: &str = "renditions";

/// Why a rendition could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenditionError {
    /// The source has no AAC track to transcode.
    #[error("no aac track")]
    NoAacTrack,
    /// The AAC track is a kind the decoder does not handle (HE-AAC, more than 2 channels, a
    /// channel configuration only a PCE gives).
    #[error("unsupported aac: {0}")]
    UnsupportedAac(String),
    /// The Opus encoder refused its settings or a frame.
    #[error("opus encoder: {0}")]
    Encoder(&'static str),
    /// The source could not be mapped or indexed.
    #[error(transparent)]
    Source(#[from] LibraryError),
    /// Building the MP4 boxes failed (a field overflow).
    #[error("writing the rendition mp4: {0}")]
    Mp4(#[from] RecordError),
    /// Writing to the caller's output of [`transcode_to_opus_mp4`] failed.
    #[error("writing the rendition: {0}")]
    Output(#[source] std::io::Error),
    /// A file operation failed.
    #[error("writing {path}: {cause}")]
    Io {
        /// The file being written or renamed.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
}

/// What a rendition run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// `track_ID` of the source AAC track.
    pub source_track_id: u32,
    /// Sampling rate of the AAC track in Hz (resampled to 48 kHz when different).
    pub source_sample_rate_hz: u32,
    /// Channels of both tracks (1 or 2).
    pub channels: u8,
    /// AAC access units read.
    pub aac_frames: u64,
    /// AAC access units that failed to decode and were replaced by silence.
    pub corrupt_frames: u64,
    /// Opus packets written (20 ms each).
    pub opus_frames: u64,
    /// Presentation duration of the audio (without the encoder's pre-skip and padding).
    pub duration: Duration,
    /// Bytes of the MP4 written (without the source stamp).
    pub mp4_bytes: u64,
}

/// Where the Opus rendition of stream `stream_name` lives:
/// `<media_root>/.shardcast/renditions/<stream_name>.opus.mp4`. Only the normal components of
/// the name are used, so the path never leaves the cache folder.
pub fn opus_rendition_path(media_root: &Path, stream_name: &str) -> PathBuf {
    let mut path = media_root.join(CACHE_DIR).join(RENDITIONS_DIR);
    let parts: Vec<_> = Path::new(stream_name)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let (last, dirs) = match parts.split_last() {
        Some((last, dirs)) => (last.as_str(), dirs),
        None => ("_", &[][..]),
    };
    for d in dirs {
        path.push(d);
    }
    path.push(format!("{last}.opus.mp4"));
    path
}

/// True when `rendition` exists, is no older than `source`, and its stamp records the
/// source's current size and modification time (so a replaced source makes it stale).
pub fn is_fresh(source: &Path, rendition: &Path) -> bool {
    let (Ok(src), Ok(ren)) = (fs::metadata(source), fs::metadata(rendition)) else {
        return false;
    };
    let (Ok(src_mtime), Ok(ren_mtime)) = (src.modified(), ren.modified()) else {
        return false;
    };
    if ren_mtime < src_mtime {
        return false;
    }
    is_fresh_for(rendition, (src.len(), src_mtime))
}

/// True when `rendition` exists and its stamp records `source_stamp` (the source's size and
/// modification time, as [`write_opus_rendition`] was given them).
pub fn is_fresh_for(rendition: &Path, source_stamp: (u64, SystemTime)) -> bool {
    let Ok(ren) = fs::metadata(rendition) else {
        return false;
    };
    if ren.len() < STAMP_LEN as u64 {
        return false;
    }
    let mut tail = [0u8; STAMP_LEN];
    let read = File::open(rendition).and_then(|mut f| {
        f.seek(SeekFrom::End(-(STAMP_LEN as i64)))?;
        f.read_exact(&mut tail)
    });
    read.is_ok() && tail == stamp(source_stamp.0, source_stamp.1)
}

/// Makes the Opus rendition of `source`'s first AAC track at `dest` (folders created as
/// needed), replacing any older one atomically. Blocking: run it off the shards.
pub fn make_opus_rendition(source: &Path, dest: &Path) -> Result<RenditionReport, RenditionError> {
    let meta = fs::metadata(source).map_err(|cause| RenditionError::Io {
        path: source.to_owned(),
        cause,
    })?;
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let media = MediaFile::open(source, "rendition source")?;
    write_opus_rendition(&media, (meta.len(), mtime), dest)
}

/// Makes the rendition of an already mapped `media` at `dest`; `source_stamp` is the
/// source file's (size, mtime) as read before it was mapped, recorded for [`is_fresh`].
pub fn write_opus_rendition(
    media: &MediaFile,
    source_stamp: (u64, SystemTime),
    dest: &Path,
) -> Result<RenditionReport, RenditionError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |cause| RenditionError::Io { path, cause }
    };
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
    let file_name = dest.file_name().map_or_else(
        || "rendition".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = BufWriter::new(file);
        let report = transcode_to_opus_mp4(media.bytes.as_slice(), &media.index, &mut out)
            .map_err(|e| match e {
                RenditionError::Output(cause) => RenditionError::Io {
                    path: tmp.clone(),
                    cause,
                },
                other => other,
            })?;
        out.write_all(&stamp(source_stamp.0, source_stamp.1))
            .map_err(io_err(&tmp))?;
        let file = out.into_inner().map_err(|e| RenditionError::Io {
            path: tmp.clone(),
            cause: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, dest).map_err(io_err(dest))?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Length of the source stamp: a top-level `free` box (ISO/IEC 14496-12 §8.1.2, ignored by
/// readers) holding [`STAMP_MAGIC`], the source's size and its mtime.
const STAMP_LEN: usize = 8 + 16 + 8 + 8 + 4;
/// Marks a `free` box as shardcast's source stamp.
const STAMP_MAGIC: &[u8; 16] = b"shardcast-source";

/// The stamp box for a source of `len` bytes modified at `mtime`.
fn stamp(len: u64, mtime: SystemTime) -> [u8; STAMP_LEN] {
    let (secs, nanos) = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => (
            -(e.duration().as_secs() as i64),
            e.duration().subsec_nanos(),
        ),
    };
    let mut b = [0u8; STAMP_LEN];
    b[0..4].copy_from_slice(&(STAMP_LEN as u32).to_be_bytes());
    b[4..8].copy_from_slice(b"free");
    b[8..24].copy_from_slice(STAMP_MAGIC);
    b[24..32].copy_from_slice(&len.to_be_bytes());
    b[32..40].copy_from_slice(&secs.to_be_bytes());
    b[40..44].copy_from_slice(&nanos.to_be_bytes());
    b
}

#[cfg(test)]
mod tests;
