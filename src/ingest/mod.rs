//! Live ingest: everything that turns an outside feed into access units for a live log.
//!
//! Every source — an RTSP publisher (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD), an RTMP
//! publisher, a pulled RTSP source — ends in the same [`Frame`]s: one access unit in the
//! byte format of an MP4 sample, so the packetizers, the HLS writer and the recorder read
//! ingested media exactly as they read files. Design: `docs/design/live-ingest.md`.

pub mod depacketize;
pub mod pull;
pub mod record;
pub mod regroup;
pub mod rtmp;
pub mod sdp;

/// Largest access unit ingest assembles (16 MiB). Past it the frame being assembled is dropped
/// and counted, and the stream goes on from the next frame: live555 and MediaMTX users hit
/// fixed, smaller buffers that truncate frames of 4K keyframes silently.
pub const MAX_ACCESS_UNIT: usize = 16 << 20;

/// One access unit from a live source, ready to be appended to a live log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Index of the track in the source's track list.
    pub track: usize,
    /// Presentation time in the track's RTP clock (90 kHz for video, the sampling rate for
    /// AAC), extended to 64 bits (wrap-arounds of the 32-bit RTP timestamp unfolded).
    pub pts: i64,
    /// Decode time in the same clock; equal to `pts` when the source does not say
    /// (RTP carries presentation times only, RFC 6184 §5.1).
    pub dts: i64,
    /// True for a random access point (an H.264 IDR access unit; every AAC frame).
    pub sync: bool,
    /// The access unit as an MP4 sample holds it: H.264 as NAL units each prefixed by a 4-byte
    /// big-endian length (ISO/IEC 14496-15 §5.3.2, `nal_length_size` 4); AAC as one raw access
    /// unit (ISO/IEC 14496-3, no ADTS header).
    pub data: &'a [u8],
}

/// One track of a live source as it declares it: what a live log is created with
/// (`crate::live_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTrackSpec {
    /// Video or audio.
    pub kind: crate::media::track::TrackKind,
    /// Codec and configuration (H.264 `nal_length_size` must be 4: [`Frame::data`]'s format).
    pub codec: crate::media::track::Codec,
}

/// Why a frame was dropped instead of reaching the log (counted per reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A packet of the frame was lost (a sequence gap inside it, a fragment missing).
    Incomplete,
    /// The frame was malformed (a truncated FU-A, an AU header past the packet, a NAL type
    /// the payload format forbids).
    Malformed,
    /// The frame would exceed [`MAX_ACCESS_UNIT`].
    TooLarge,
    /// The publisher sent faster than real time beyond the flood allowance.
    Flood,
    /// A shard was still reading the bytes the log would have overwritten.
    ReaderStalled,
}

impl DropReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [DropReason; 5] = [
        DropReason::Incomplete,
        DropReason::Malformed,
        DropReason::TooLarge,
        DropReason::Flood,
        DropReason::ReaderStalled,
    ];

    /// The reason's label in metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Incomplete => "incomplete",
            DropReason::Malformed => "malformed",
            DropReason::TooLarge => "too_large",
            DropReason::Flood => "flood",
            DropReason::ReaderStalled => "reader_stalled",
        }
    }
}
