//! The typed error of the Matroska reader: what went wrong and at which byte of the file.

/// A Matroska parse failure, located by absolute byte offset.
#[derive(Debug, thiserror::Error)]
#[error("matroska: {kind} (at byte {offset})")]
pub struct MkvError {
    /// Absolute byte offset in the file where the problem was found.
    pub offset: u64,
    /// What went wrong.
    pub kind: MkvErrorKind,
}

impl MkvError {
    /// An error at `offset`.
    pub(crate) fn new(offset: u64, kind: MkvErrorKind) -> Self {
        Self { offset, kind }
    }
}

/// Why a Matroska file could not be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MkvErrorKind {
    /// The file does not start with an EBML header (RFC 8794 §8.1).
    #[error("not a matroska/webm file (no EBML header)")]
    NotMatroska,
    /// The EBML header names another document type than `matroska` or `webm`.
    #[error("unsupported EBML document type {0:?}")]
    DocType(String),
    /// An element header or body ends past the end of the file.
    #[error("truncated")]
    Truncated,
    /// An element declares a size larger than its parent (or the file).
    #[error("element size exceeds its parent")]
    SizeTooLarge,
    /// A field holds a value the specification does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A required element is absent.
    #[error("missing element {0}")]
    Missing(&'static str),
    /// More samples than the reader indexes per file.
    #[error("more than {0} frames")]
    TooManySamples(usize),
    /// No track of the file has a supported codec with frames.
    #[error("no playable track")]
    NoPlayableTrack,
}
