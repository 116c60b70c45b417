//! shardcast: a live and on-demand RTSP/RTP streaming server on pinned per-core shards.
//!
//! ```text
//!   RTSP clients ──TCP──▶ control thread (tokio current_thread)
//!                          │  rtsp::server: parse, session state machine, SDP
//!                          │  crossbeam channels: ShardCommand ▼   ▲ replies (tokio oneshot)
//!        ┌─────────────────┴───────────────┬───────────────────────┐
//!   shard 0 (pinned core 0)         shard 1 (pinned core 1)    ...
//!   own RTP/RTCP UDP port pair      own RTP/RTCP UDP port pair
//!   pacer: due-time queue → packetize (mapped bytes) → RTP header in place → GSO sends
//! ```
//!
//! Module map (details in `docs/ARCHITECTURE.md`):
//! - [`media`]: memory-mapped files, the root-confined catalog, the ISO-BMFF reader.
//! - [`packetize`]: RFC 6184 (H.264) and RFC 3640 (AAC) payload formats, sans-IO.
//! - [`wire`]: RTP/RTCP headers (RFC 3550), SDP (RFC 8866), NTP time.
//! - [`rtsp`]: RFC 2326 message parsing, Transport/Range headers, authentication, admission,
//!   the control server.
//! - [`shard`]: the per-core data plane and its send backends (sendto, sendmmsg, io_uring; UDP GSO).
//! - [`stats`]: RTCP receiver reports in, per-session/stream/shard statistics out.
//! - [`live`]: live channels (a file looped on one shared timeline, instant start).
//! - [`ingest`]: live feeds in (RTSP publishing, RTMP, pulled sources) as access units.
//! - [`hls`]: HLS and LL-HLS, sans-IO: fMP4 init and fragment heads over mapped samples,
//!   segments and parts (VOD and a live channel's loop timeline), playlists.
//! - [`http`]: the operator side: web page, JSON API, Prometheus `/metrics`, play-token issuing,
//!   and the `shardcast stats` terminal client.
//! - [`rendition`]: the Opus rendition of an AAC track, made once per file for WebRTC.
//! - [`webrtc`]: WebRTC cores (STUN/ICE-lite, DTLS, SRTP, SDP offer/answer), sans-IO.
//! - [`token`]: play tokens (sign, verify, query parsing), used by `rtsp` and `http`.
//! - [`ids`]: ids and names every layer shares (`SessionId`, `SessionHandle`, `SERVER_NAME`).
//! - [`banner`]: the start-up lines `shardcast serve` prints, and their reader.
//! - [`config`]: TOML + flags → validated [`config::ServerConfig`].
//! - [`net`]: batched UDP receive (`recvmmsg`, kernel timestamps, `UDP_GRO`) for receivers.
//! - `sys`: the only module allowed `unsafe` (syscalls behind safe types).
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod banner;
pub mod config;
pub mod control;
pub mod hls;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod live;
pub mod live_log;
pub mod media;
pub mod net;
pub mod packetize;
pub mod poll;
pub mod rendition;
pub mod rtsp;
pub mod shard;
pub mod stats;
#[allow(unsafe_code)]
mod sys;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod token;
pub mod webrtc;
pub mod wire;
