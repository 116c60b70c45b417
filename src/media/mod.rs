//! Media files: the root-confined library, the ISO-BMFF, Matroska and MPEG-TS readers and the track
//! model.
pub mod g711;
pub mod library;
pub mod mkv;
pub mod mp4;
pub mod mpa;
pub mod name;
pub mod track;
pub mod ts;

/// The hidden folder under the media root that holds shardcast's own caches (Opus
/// renditions, `crate::rendition`): never listed as streams.
pub const CACHE_DIR: &str = ".shardcast";

pub use library::{MediaFile, MediaLibrary};
