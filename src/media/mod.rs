//! Media files: the root-confined library, the ISO-BMFF reader and the track model.
pub mod library;
pub mod mp4;
pub mod name;
pub mod track;

pub use library::{MediaFile, MediaLibrary};
