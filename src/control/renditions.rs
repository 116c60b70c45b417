//! The Opus renditions WebRTC viewers of AAC files get (`crate::rendition`), made once per
//! file off the control thread and kept mapped while the file is unchanged.
//!
//! A WHEP offer for a file with AAC audio looks its rendition up: a fresh one on disk
//! (`<media>/.shardcast/renditions/`, or the temporary folder for the bundled sample) is
//! mapped at once; otherwise one is made on tokio's blocking pool, one file at a time (the
//! work is CPU-bound, ~120× real time in a release build: a few seconds for a long film on
//! a shared core), and the offer is answered 503 with `Retry-After` until it is ready.
//! A file whose rendition cannot be made plays without sound, with one log line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::media::{MediaFile, MediaLibrary};
use crate::rendition::{is_fresh_for, opus_rendition_path, write_opus_rendition};
use crate::rtsp::session::WhepAudio;

/// A source file's identity: its length and modification time (`MediaLibrary::file_stamp`).
type Stamp = (u64, Option<SystemTime>);

/// The identity of the file behind `media` (a live channel's too): its mapping's length and
/// modification time, or the library's stamp for the bundled sample.
pub(super) fn source_stamp(media: &MediaFile, library: &MediaLibrary) -> Option<Stamp> {
    match media.file().and_then(|f| f.metadata().ok()) {
        Some(m) => Some((m.len(), m.modified().ok())),
        None => library.file_stamp(&media.name),
    }
}

/// Starts making the renditions of the live channels whose files have AAC audio: they play
/// all the time, so their first WebRTC viewer should not wait. Inside the `LocalSet`.
pub(super) fn prepare_channels(
    renditions: &Rc<Renditions>,
    channels: &[Arc<crate::live::LiveChannel>],
    library: &MediaLibrary,
) {
    for ch in channels {
        let aac = ch
            .media
            .index
            .tracks
            .iter()
            .any(|t| matches!(t.codec, crate::media::track::Codec::Aac(_)));
        if let (true, Some(stamp)) = (aac, source_stamp(&ch.media, library)) {
            renditions.lookup(&ch.media, stamp);
        }
    }
}

enum Entry {
    Making(Stamp),
    Ready(Stamp, Arc<MediaFile>),
    Failed(Stamp),
}

/// Renditions by stream name.
pub(super) struct Renditions {
    /// The folder the cache lives under: the media root, or a temporary folder.
    root: PathBuf,
    entries: RefCell<HashMap<String, Entry>>,
    /// One rendition is made at a time.
    turn: tokio::sync::Semaphore,
}

impl Renditions {
    /// Renditions cached under `media_root` (`None`: the bundled sample, cached in the
    /// temporary folder).
    pub(super) fn new(media_root: Option<PathBuf>) -> Rc<Self> {
        let root = media_root.unwrap_or_else(|| std::env::temp_dir().join("shardcast"));
        Rc::new(Self {
            root,
            entries: RefCell::new(HashMap::new()),
            turn: tokio::sync::Semaphore::new(1),
        })
    }

    /// The Opus audio for `media` (its file's `stamp`): mapped, being made (started now if
    /// needed), or unavailable. Must run inside the control thread's `LocalSet`.
    pub(super) fn lookup(self: &Rc<Self>, media: &Arc<MediaFile>, stamp: Stamp) -> WhepAudio {
        let name = media.name.clone();
        match self.entries.borrow().get(&name) {
            Some(Entry::Ready(s, r)) if *s == stamp => return WhepAudio::Rendition(r.clone()),
            Some(Entry::Making(s)) if *s == stamp => return WhepAudio::Preparing,
            Some(Entry::Failed(s)) if *s == stamp => return WhepAudio::Unavailable,
            _ => {}
        }
        let dest = opus_rendition_path(&self.root, &name);
        let source_stamp = (stamp.0, stamp.1.unwrap_or(UNIX_EPOCH));
        if is_fresh_for(&dest, source_stamp) {
            match MediaFile::open(&dest, &format!("{name} (Opus rendition)")) {
                Ok(r) => {
                    let r = Arc::new(r);
                    self.entries
                        .borrow_mut()
                        .insert(name, Entry::Ready(stamp, r.clone()));
                    return WhepAudio::Rendition(r);
                }
                Err(e) => {
                    tracing::warn!(stream = %name, "cached Opus rendition unreadable, making it again: {e}")
                }
            }
        }
        self.entries
            .borrow_mut()
            .insert(name.clone(), Entry::Making(stamp));
        let this = self.clone();
        let media = media.clone();
        tokio::task::spawn_local(async move {
            let Ok(_turn) = this.turn.acquire().await else {
                return;
            };
            tracing::info!(stream = %name, "making the Opus rendition of its AAC audio for WebRTC viewers");
            let path = dest.clone();
            let made = tokio::task::spawn_blocking(move || {
                write_opus_rendition(&media, source_stamp, &path)?;
                MediaFile::open(&path, "Opus rendition")
                    .map_err(crate::rendition::RenditionError::from)
            })
            .await;
            let entry = match made {
                Ok(Ok(r)) => {
                    tracing::info!(stream = %name, path = %dest.display(), "Opus rendition ready");
                    Entry::Ready(stamp, Arc::new(r))
                }
                Ok(Err(e)) => {
                    tracing::warn!(stream = %name, "no Opus rendition (WebRTC viewers get no sound): {e}");
                    Entry::Failed(stamp)
                }
                Err(e) => {
                    tracing::warn!(stream = %name, "Opus rendition task failed: {e}");
                    Entry::Failed(stamp)
                }
            };
            this.entries.borrow_mut().insert(name, entry);
        });
        WhepAudio::Preparing
    }
}
