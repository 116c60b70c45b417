//! Ids and names every layer shares, so that none of them imports another for them: the
//! session id the control thread and the shards agree on, the opaque handle the API shows,
//! the `Server` header value, and the error of a named setting (`--io`, `--gso`, `--stats`).
//! This module imports nothing from the crate.

/// Session identifier, unique per server run.
pub type SessionId = u64;

/// An opaque per-session handle: how the HTTP API names a session (`/api/v1/sessions/{id}`),
/// so that reading the API never reveals the RTSP `Session` id that controls it.
pub type SessionHandle = u64;

/// `Server` header value of RTSP and HTTP responses (RFC 2326 §12.36, RFC 9110 §10.2.4).
pub const SERVER_NAME: &str = concat!("shardcast/", env!("CARGO_PKG_VERSION"));

/// An unknown value of a named setting (`--io`, `--gso`, `--stats`).
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not one of {allowed}")]
pub struct UnknownChoice {
    /// What was given.
    pub value: String,
    /// What is accepted.
    pub allowed: &'static str,
}
