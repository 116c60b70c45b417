//! Media files: the ISO-BMFF reader and the track model.
pub mod mp4;
pub mod track;
