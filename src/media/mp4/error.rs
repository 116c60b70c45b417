//! The typed error of the ISO-BMFF reader: where in the box tree (path and absolute byte
//! offset) parsing failed and why. Paths follow the box nesting of ISO/IEC 14496-12 §4.2,
//! e.g. `moov/trak[1]/mdia/minf/stbl/stsz` (track indexes are zero-based, in file order).

/// A parse failure, located by box path and absolute byte offset in the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind} (at byte {offset})")]
pub struct Mp4Error {
    /// Absolute byte offset in the file where the problem was found.
    pub offset: u64,
    /// Box path, e.g. `moov/trak[1]/mdia/minf/stbl/stsz` (`file` for the whole file).
    pub path: String,
    /// What went wrong.
    pub kind: Mp4ErrorKind,
}

impl Mp4Error {
    /// Builds an error at `offset` inside the box named by `path`.
    pub(crate) fn new(offset: u64, path: &str, kind: Mp4ErrorKind) -> Self {
        let path = if path.is_empty() { "file" } else { path };
        Self {
            offset,
            path: path.to_owned(),
            kind,
        }
    }
}

/// Why parsing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4ErrorKind {
    /// The data does not start with a known top-level ISO-BMFF box.
    #[error("not an iso-bmff (mp4/mov) file")]
    NotMp4,
    /// A box or field ends past the end of its container.
    #[error("truncated")]
    Truncated,
    /// A box declares a size larger than its container (or the file).
    #[error("box size exceeds its container")]
    BoxTooLarge,
    /// A `mvhd` or `mdhd` timescale is zero.
    #[error("zero timescale")]
    ZeroTimescale,
    /// A sample lies (partly) outside the file, or more samples are declared than the file can hold.
    #[error("sample table out of range")]
    SampleOutOfRange,
    /// Two tables or fields disagree (counts, ordering, references).
    #[error("inconsistent: {0}")]
    Inconsistent(&'static str),
    /// A field holds a value the specification does not allow.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// A required box is absent.
    #[error("missing required box {0}")]
    MissingBox(&'static str),
    /// A valid feature this reader does not serve (the track is skipped when it is track-local).
    #[error("unsupported {0}")]
    Unsupported(String),
    /// No track of the file has a supported handler and codec.
    #[error("no playable track")]
    NoPlayableTrack,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_path_kind_and_offset() {
        let e = Mp4Error::new(42, "moov/trak[1]/mdia/mdhd", Mp4ErrorKind::ZeroTimescale);
        assert_eq!(
            e.to_string(),
            "moov/trak[1]/mdia/mdhd: zero timescale (at byte 42)"
        );
        let e = Mp4Error::new(0, "", Mp4ErrorKind::NotMp4);
        assert_eq!(e.path, "file");
    }
}
