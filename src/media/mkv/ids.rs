//! Element IDs used by the reader (RFC 8794 §11.2 for the EBML header, RFC 9559 §5 for
//! Matroska), marker bits included.

/// `EBML` header (RFC 8794 §11.2.1).
pub(crate) const EBML: u32 = 0x1A45_DFA3;
/// `DocType` (RFC 8794 §11.2.6).
pub(crate) const DOC_TYPE: u32 = 0x4282;
/// `Segment` (RFC 9559 §5.1).
pub(crate) const SEGMENT: u32 = 0x1853_8067;
/// `SeekHead` (§5.1.1).
pub(crate) const SEEK_HEAD: u32 = 0x114D_9B74;
/// `Info` (§5.1.2).
pub(crate) const INFO: u32 = 0x1549_A966;
/// `TimestampScale` (§5.1.2.9): nanoseconds per timestamp unit.
pub(crate) const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
/// `Cluster` (§5.1.3).
pub(crate) const CLUSTER: u32 = 0x1F43_B675;
/// `Timestamp` of a cluster (§5.1.3.1).
pub(crate) const CLUSTER_TIMESTAMP: u32 = 0xE7;
/// `BlockGroup` (§5.1.3.5).
pub(crate) const BLOCK_GROUP: u32 = 0xA0;
/// `Block` (§5.1.3.5.1).
pub(crate) const BLOCK: u32 = 0xA1;
/// `ReferenceBlock` (§5.1.3.5.5): present on frames that are not keyframes.
pub(crate) const REFERENCE_BLOCK: u32 = 0xFB;
/// `BlockDuration` (§5.1.3.5.3).
pub(crate) const BLOCK_DURATION: u32 = 0x9B;
/// `SimpleBlock` (§5.1.3.4).
pub(crate) const SIMPLE_BLOCK: u32 = 0xA3;
/// `Tracks` (§5.1.4).
pub(crate) const TRACKS: u32 = 0x1654_AE6B;
/// `TrackEntry` (§5.1.4.1).
pub(crate) const TRACK_ENTRY: u32 = 0xAE;
/// `TrackNumber` (§5.1.4.1.1).
pub(crate) const TRACK_NUMBER: u32 = 0xD7;
/// `TrackType` (§5.1.4.1.3).
pub(crate) const TRACK_TYPE: u32 = 0x83;
/// `DefaultDuration` (§5.1.4.1.11), nanoseconds per frame.
pub(crate) const DEFAULT_DURATION: u32 = 0x23_E383;
/// `CodecID` (§5.1.4.1.21).
pub(crate) const CODEC_ID: u32 = 0x86;
/// `CodecPrivate` (§5.1.4.1.22).
pub(crate) const CODEC_PRIVATE: u32 = 0x63A2;
/// `Video` (§5.1.4.1.28).
pub(crate) const VIDEO: u32 = 0xE0;
/// `PixelWidth` (§5.1.4.1.28.6).
pub(crate) const PIXEL_WIDTH: u32 = 0xB0;
/// `PixelHeight` (§5.1.4.1.28.7).
pub(crate) const PIXEL_HEIGHT: u32 = 0xBA;
/// `Audio` (§5.1.4.1.29).
pub(crate) const AUDIO: u32 = 0xE1;
/// `SamplingFrequency` (§5.1.4.1.29.1).
pub(crate) const SAMPLING_FREQUENCY: u32 = 0xB5;
/// `Channels` (§5.1.4.1.29.3).
pub(crate) const CHANNELS: u32 = 0x9F;
/// `ContentEncodings` (§5.1.4.1.31).
pub(crate) const CONTENT_ENCODINGS: u32 = 0x6D80;
/// `Cues` (§5.1.5).
pub(crate) const CUES: u32 = 0x1C53_BB6B;
/// `Attachments` (§5.1.6).
pub(crate) const ATTACHMENTS: u32 = 0x1941_A469;
/// `Chapters` (§5.1.7).
pub(crate) const CHAPTERS: u32 = 0x1043_A770;
/// `Tags` (§5.1.8).
pub(crate) const TAGS: u32 = 0x1254_C367;

/// IDs at the level of a cluster (a Segment's children) and above: an unknown-size cluster
/// ends where one of them starts (RFC 8794 §6.2).
pub(crate) const CLUSTER_LEVEL: [u32; 10] = [
    SEEK_HEAD,
    INFO,
    TRACKS,
    CLUSTER,
    CUES,
    ATTACHMENTS,
    CHAPTERS,
    TAGS,
    SEGMENT,
    EBML,
];

/// IDs at the level of a segment: an unknown-size segment ends where another one starts.
pub(crate) const SEGMENT_LEVEL: [u32; 2] = [SEGMENT, EBML];
