//! HLS and LL-HLS (RFC 8216, draft-pantos-hls-rfc8216bis) from the mapped files, sans-IO:
//! fragmented MP4 ([`fmp4`]: init segment, fragment heads whose bodies are mapping ranges),
//! the cutting of a file into segments and parts and their numbering for VOD and live
//! channels ([`segments`]), and the playlists plus the parsing of request names and
//! blocking-reload queries ([`playlist`]); an ingested stream's growing log cut into a
//! bounded store of finished segments and its playlists ([`log_segments`]).
//!
//! No sockets and no clock: every function takes the media index, a channel's timeline and
//! a time, and returns bytes or descriptions. The shards' HTTP shell serves them.

pub mod fmp4;
pub mod log_segments;
pub mod playlist;
pub mod segments;
#[cfg(test)]
mod tests;

pub use fmp4::{init_segment, ByteSpan, Fmp4Error, Fragment, TrackRun, TrackTiming};
pub use playlist::{
    live_media_playlist, multivariant_playlist, parse_blocking_reload, parse_resource,
    vod_media_playlist, BlockingReload, HlsResource, QuerySuffix, ReloadQueryError, ReloadWait,
};
pub use segments::{segment_file, LiveEdge, LiveHls, Part, Segment, SegmentError, Segmentation};
