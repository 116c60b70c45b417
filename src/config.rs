//! Server configuration: a TOML file (`--config FILE`) overlaid by command-line flags
//! (flags win), validated into [`ServerConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::shard::send::{GsoMode, IoBackend, SendConfig};

/// Smallest payload budget accepted: an FU-A needs room for its 2-byte header and data, and
/// an AAC packet for its 4-byte AU header section.
pub const MIN_PAYLOAD_BUDGET: usize = 64;
/// Largest payload budget: a 1500-byte Ethernet MTU minus IPv6 (40), UDP (8) and RTP (12) headers.
pub const MAX_PAYLOAD_BUDGET: usize = 1440;

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Box<toml::de::Error>,
    },
    /// A value is outside its allowed range.
    #[error("{name} = {value}: {why}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        why: String,
    },
}

/// Settings as they appear in a TOML file or on the command line; every field optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigOverlay {
    /// Folder of media files to serve.
    pub media: Option<PathBuf>,
    /// RTSP listen address.
    pub listen: Option<SocketAddr>,
    /// Number of shard threads.
    pub shards: Option<usize>,
    /// Largest RTP payload in bytes.
    pub payload_budget: Option<usize>,
    /// Seconds without RTSP or RTCP activity before a session expires.
    pub session_timeout: Option<u64>,
    /// Log filter (`info`, `debug`, `shardcast=trace`, ...).
    pub log: Option<String>,
    /// UDP send backend (`uring`, `sendmmsg`, `sendto`); unset picks io_uring if available.
    pub io: Option<IoBackend>,
    /// UDP GSO (`on`, `off`).
    pub gso: Option<GsoMode>,
}

impl ConfigOverlay {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// `self` with every field set in `flags` replaced by the flag's value.
    pub fn overlaid_by(self, flags: ConfigOverlay) -> Self {
        Self {
            media: flags.media.or(self.media),
            listen: flags.listen.or(self.listen),
            shards: flags.shards.or(self.shards),
            payload_budget: flags.payload_budget.or(self.payload_budget),
            session_timeout: flags.session_timeout.or(self.session_timeout),
            log: flags.log.or(self.log),
            io: flags.io.or(self.io),
            gso: flags.gso.or(self.gso),
        }
    }
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Folder of media files; `None` serves the bundled sample.
    pub media: Option<PathBuf>,
    /// RTSP listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Number of shard threads (each pinned to a core).
    pub shards: usize,
    /// Largest RTP payload in bytes.
    pub payload_budget_bytes: usize,
    /// Inactivity after which a session expires and a silent connection is closed.
    pub session_timeout: Duration,
    /// Log filter.
    pub log: String,
    /// UDP send path (backend and GSO).
    pub send: SendConfig,
}

impl ServerConfig {
    /// Applies defaults and validates ranges.
    pub fn from_overlay(o: ConfigOverlay) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = o.shards.unwrap_or(cores);
        if !(1..=256).contains(&shards) {
            return Err(ConfigError::Invalid {
                name: "shards",
                value: shards.to_string(),
                why: "must be 1 to 256".into(),
            });
        }
        let budget = o.payload_budget.unwrap_or(1200);
        if !(MIN_PAYLOAD_BUDGET..=MAX_PAYLOAD_BUDGET).contains(&budget) {
            return Err(ConfigError::Invalid {
                name: "payload-budget",
                value: budget.to_string(),
                why: format!("must be {MIN_PAYLOAD_BUDGET} to {MAX_PAYLOAD_BUDGET} bytes"),
            });
        }
        let timeout = o.session_timeout.unwrap_or(60);
        if !(1..=86_400).contains(&timeout) {
            return Err(ConfigError::Invalid {
                name: "session-timeout",
                value: timeout.to_string(),
                why: "must be 1 to 86400 seconds".into(),
            });
        }
        Ok(Self {
            media: o.media,
            listen: o
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8554))),
            shards,
            payload_budget_bytes: budget,
            session_timeout: Duration::from_secs(timeout),
            log: o.log.unwrap_or_else(|| "info".into()),
            send: SendConfig {
                io: o.io,
                gso: o.gso.unwrap_or_default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let file: ConfigOverlay = toml::from_str(
            "shards = 3\npayload-budget = 1000\nlog = \"debug\"\nio = \"sendto\"\ngso = \"off\"",
        )
        .unwrap();
        let flags = ConfigOverlay {
            shards: Some(1),
            ..Default::default()
        };
        let cfg = ServerConfig::from_overlay(file.overlaid_by(flags)).unwrap();
        assert_eq!(cfg.shards, 1);
        assert_eq!(cfg.payload_budget_bytes, 1000);
        assert_eq!(cfg.log, "debug");
        assert_eq!(cfg.listen.port(), 8554);
        assert_eq!(cfg.session_timeout, Duration::from_secs(60));
        assert_eq!(cfg.send.io, Some(IoBackend::Sendto));
        assert_eq!(cfg.send.gso, GsoMode::Off);
    }

    #[test]
    fn out_of_range_values_name_their_limit() {
        let bad = ConfigOverlay {
            payload_budget: Some(10),
            ..Default::default()
        };
        let err = ServerConfig::from_overlay(bad).unwrap_err().to_string();
        assert!(err.contains("payload-budget = 10"), "{err}");
        assert!(toml::from_str::<ConfigOverlay>("typo = 1").is_err());
    }
}
