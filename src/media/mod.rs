//! Media files: the root-confined library, the ISO-BMFF reader, the track model and the
//! Opus renditions of AAC tracks.
pub mod library;
pub mod mp4;
pub mod name;
pub mod rendition;
pub mod track;

pub use library::{MediaFile, MediaLibrary};
