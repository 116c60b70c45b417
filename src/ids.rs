//! Ids and names every layer shares, so that none of them imports another for them: the
//! session id the control thread and the shards agree on, the opaque handle the API shows,
//! the `Server` header value, and the error of a named setting (`--io`, `--gso`, `--stats`).
//! The send backend's name (`--io`) lives here too: the shards run it, the statistics show
//! it. This module imports nothing from the crate.

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

/// Which syscall path sends UDP (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring `SENDMSG` operations, one submit per window.
    Uring,
    /// `sendmmsg(2)`, one call per window.
    Sendmmsg,
    /// One `sendmsg(2)` per send: the baseline.
    Sendto,
}

impl IoBackend {
    /// The flag/TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::Uring => "uring",
            IoBackend::Sendmmsg => "sendmmsg",
            IoBackend::Sendto => "sendto",
        }
    }

    /// A non-zero code for publishing the backend in an atomic ([`IoBackend::from_code`]).
    pub fn code(self) -> u8 {
        match self {
            IoBackend::Uring => 1,
            IoBackend::Sendmmsg => 2,
            IoBackend::Sendto => 3,
        }
    }

    /// The backend [`IoBackend::code`] gave `code`, `None` for any other value.
    pub fn from_code(code: u8) -> Option<IoBackend> {
        match code {
            1 => Some(IoBackend::Uring),
            2 => Some(IoBackend::Sendmmsg),
            3 => Some(IoBackend::Sendto),
            _ => None,
        }
    }
}

impl std::fmt::Display for IoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IoBackend {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uring" => Ok(IoBackend::Uring),
            "sendmmsg" => Ok(IoBackend::Sendmmsg),
            "sendto" => Ok(IoBackend::Sendto),
            _ => Err(UnknownChoice {
                value: s.to_owned(),
                allowed: "uring, sendmmsg, sendto",
            }),
        }
    }
}
