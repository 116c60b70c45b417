//! Server configuration: a TOML file (`--config FILE`) overlaid by command-line flags
//! (flags win), validated into [`ServerConfig`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::live::StartPolicy;
use crate::rtsp::admission::{Limits as AdmissionLimits, LimitsOverlay};
use crate::rtsp::auth::{AccessRule, UserSecret};
use crate::shard::send::{GsoMode, IoBackend, SendConfig};
use crate::stats::StatsMode;

/// Default nice value of the shard threads (see [`ServerConfig::shard_nice`]).
pub const DEFAULT_SHARD_NICE: i32 = -5;

/// Smallest payload budget accepted: an FU-A needs room for its 2-byte header and data, and
/// an AAC packet for its 4-byte AU header section.
pub const MIN_PAYLOAD_BUDGET: usize = 64;
/// Default `ingest-audio-hold-ms`: the span a looped channel's AAC packets may have
/// (`packetize::aac::MAX_AGGREGATE_SPAN_MS`), so an RTMP publisher's viewers get the packets
/// a channel of the same audio sends (six 64 kbit/s frames, 107 ms; the payload budget binds
/// first at higher rates: three 128 kbit/s frames, 43 ms). ffmpeg's RTSP muxer holds its AAC
/// as long (up to 8 frames a packet).
pub const DEFAULT_INGEST_AUDIO_HOLD_MS: u64 = 150;
/// Default `setup-timeout`: seconds a session may wait between SETUP and its first PLAY.
pub const DEFAULT_SETUP_TIMEOUT_SECS: u64 = 15;
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
    /// Seconds a session may stay set up without ever being played.
    pub setup_timeout: Option<u64>,
    /// `host[:port]` clients reach the RTSP server by (behind NAT or a load balancer): used
    /// in `Content-Base`, RTP-Info and the URLs the API hands out.
    pub public_address: Option<String>,
    /// Log filter (`info`, `debug`, `shardcast=trace`, ...).
    pub log: Option<String>,
    /// Live channels: name → file played in a loop (TOML table `[live]`).
    pub live: Option<BTreeMap<String, PathBuf>>,
    /// How viewers join a live channel: `delayed` or `burst`.
    pub live_start: Option<StartPolicy>,
    /// Live channels also sent to a multicast group (TOML table `[multicast]`): channel name →
    /// `"GROUP:PORT"`, the first track's RTP port (even); track k takes `PORT + 2k` and
    /// `PORT + 2k + 1` (RTCP).
    pub multicast: Option<BTreeMap<String, SocketAddr>>,
    /// Time to live of multicast packets (hops; 1 keeps them on the local network).
    pub multicast_ttl: Option<u8>,
    /// Users allowed to read streams (`[[users]]`); once any exists, streams need credentials.
    pub users: Option<Vec<UserEntry>>,
    /// Per-stream access rules (`[[access]]`), first match wins.
    pub access: Option<Vec<AccessRule>>,
    /// RTSP sources to pull (`[sources]`): stream path → `"rtsp://…"` (always on, TCP) or a
    /// table `{ url = "rtsp://…", transport = "tcp"|"udp", on-demand = true, grace = 10 }`.
    pub sources: Option<BTreeMap<String, SourceEntry>>,
    /// Paths anyone may publish to without credentials (`--publish 'live/*'`), for trying
    /// ingest out; otherwise publishing needs an `[[access]]` rule's `publish`/`publish-key`.
    pub publish: Option<Vec<String>>,
    /// Seconds a live stream waits for its publisher to come back before its viewers get
    /// BYE and its log is released.
    pub publisher_timeout: Option<u64>,
    /// Bytes of the memory-mapped live log of each ingested stream (its recent samples).
    pub live_log_size: Option<usize>,
    /// Milliseconds an RTMP or pulled stream's AAC frame may be held so several go in one
    /// RTP packet (`crate::ingest::regroup`); 0 = off, at most 150.
    pub ingest_audio_hold_ms: Option<u64>,
    /// Recording live streams to fragmented MP4 files (`[record]`, `--record PATTERN`).
    pub record: Option<RecordOverlay>,
    /// Accept HTTP Basic credentials (RFC 7617) as well as Digest; off by default because
    /// Basic sends the password in the clear.
    pub allow_basic: Option<bool>,
    /// Admission limits (`[limits]`); absent = the defaults, 0 = unlimited.
    pub limits: Option<LimitsOverlay>,
    /// UDP send backend (`uring`, `sendmmsg`, `sendto`); unset picks io_uring if available.
    pub io: Option<IoBackend>,
    /// UDP GSO (`on`, `off`).
    pub gso: Option<GsoMode>,
    /// Statistics in the data plane (`on`, `off`).
    pub stats: Option<StatsMode>,
    /// Nice value of the shard threads (−20 … 19); see [`ServerConfig::shard_nice`].
    pub shard_nice: Option<i32>,
    /// HTTP address of the web page, JSON API and `/metrics` (`"off"` disables it).
    pub http_listen: Option<HttpListen>,
    /// HLS address, served by the shards (`"off"` disables it).
    pub hls_listen: Option<HttpListen>,
    /// RTMP address for publishers (`"off"` disables it).
    pub rtmp_listen: Option<HttpListen>,
    /// RTSPS (RTSP over TLS) address; off unless set (needs `tls-cert` and `tls-key`).
    pub rtsps_listen: Option<SocketAddr>,
    /// PEM certificate chain of the RTSPS side.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the RTSPS side.
    pub tls_key: Option<PathBuf>,
    /// Whether RTSPS offers SRTP keys (MIKEY) for UDP media; off unless set.
    pub rtsps_srtp: Option<bool>,
    /// WebRTC media address: shard k takes UDP port `port + k` (`"off"` disables WebRTC).
    pub webrtc_listen: Option<HttpListen>,
    /// How HLS segment bodies are written: `sendfile` or `gather`.
    pub hls_body: Option<crate::shard::hls::BodyPath>,
    /// RTSP DESCRIBE and SETUP need a valid play token (`?token=`).
    pub require_token: Option<bool>,
    /// Secret that signs play tokens (env `SHARDCAST_TOKEN_SECRET`); random per run if unset.
    pub token_secret: Option<String>,
    /// Admin bearer token for mutating API calls (env `SHARDCAST_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// Whether reading the API and `/metrics` needs the admin token (`public`, `token`).
    pub api_read: Option<ApiRead>,
}

/// The RTSPS side: where it listens and the PEM files of its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspsConfig {
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Whether a DESCRIBE over RTSPS offers SRTP (`RTP/SAVP` with MIKEY keys, RFC 4567) so
    /// that players keying it (GStreamer) can take media over UDP; without it RTSPS media is
    /// interleaved only.
    pub srtp: bool,
}

/// Where the HTTP side listens: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    /// No HTTP server.
    Off,
    /// Listen on this address (port 0 picks a free port).
    Addr(SocketAddr),
}

impl std::str::FromStr for HttpListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(HttpListen::Off);
        }
        s.parse()
            .map(HttpListen::Addr)
            .map_err(|_| format!("expected ADDR:PORT or off, got {s:?}"))
    }
}

impl<'de> Deserialize<'de> for HttpListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who may read the JSON API and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiRead {
    /// Anyone who reaches the HTTP address.
    #[default]
    Public,
    /// Only holders of the admin bearer token.
    Token,
}

impl std::str::FromStr for ApiRead {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(ApiRead::Public),
            "token" => Ok(ApiRead::Token),
            _ => Err(format!("expected public or token, got {s:?}")),
        }
    }
}

/// Shortest accepted admin token or token secret, in bytes: shorter ones can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// A user in the configuration: a password, or its Digest HA1 hashes (`H(user:shardcast:password)`)
/// so the file holds no password.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserEntry {
    /// User name.
    pub name: String,
    /// Plain password (prefer the hashes).
    pub password: Option<String>,
    /// MD5 HA1, lowercase hex.
    pub ha1_md5: Option<String>,
    /// SHA-256 HA1, lowercase hex.
    pub ha1_sha256: Option<String>,
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
            setup_timeout: flags.setup_timeout.or(self.setup_timeout),
            public_address: flags.public_address.or(self.public_address),
            log: flags.log.or(self.log),
            live: match (self.live, flags.live) {
                (Some(mut file), Some(flags)) => {
                    file.extend(flags);
                    Some(file)
                }
                (file, flags) => flags.or(file),
            },
            live_start: flags.live_start.or(self.live_start),
            multicast: match (self.multicast, flags.multicast) {
                (Some(mut file), Some(flags)) => {
                    file.extend(flags);
                    Some(file)
                }
                (file, flags) => flags.or(file),
            },
            multicast_ttl: flags.multicast_ttl.or(self.multicast_ttl),
            users: match (self.users, flags.users) {
                (Some(mut file), Some(flags)) => {
                    file.extend(flags);
                    Some(file)
                }
                (file, flags) => flags.or(file),
            },
            access: flags.access.or(self.access),
            sources: match (self.sources, flags.sources) {
                (Some(mut file), Some(flags)) => {
                    file.extend(flags);
                    Some(file)
                }
                (file, flags) => flags.or(file),
            },
            publish: match (self.publish, flags.publish) {
                (Some(mut file), Some(flags)) => {
                    file.extend(flags);
                    Some(file)
                }
                (file, flags) => flags.or(file),
            },
            publisher_timeout: flags.publisher_timeout.or(self.publisher_timeout),
            live_log_size: flags.live_log_size.or(self.live_log_size),
            ingest_audio_hold_ms: flags.ingest_audio_hold_ms.or(self.ingest_audio_hold_ms),
            record: match (self.record, flags.record) {
                (Some(file), Some(flags)) => Some(file.overlaid_by(flags)),
                (file, flags) => flags.or(file),
            },
            allow_basic: flags.allow_basic.or(self.allow_basic),
            limits: match (self.limits, flags.limits) {
                (Some(file), Some(flags)) => Some(file.overlaid_by(flags)),
                (file, flags) => flags.or(file),
            },
            io: flags.io.or(self.io),
            gso: flags.gso.or(self.gso),
            stats: flags.stats.or(self.stats),
            shard_nice: flags.shard_nice.or(self.shard_nice),
            http_listen: flags.http_listen.or(self.http_listen),
            hls_listen: flags.hls_listen.or(self.hls_listen),
            rtmp_listen: flags.rtmp_listen.or(self.rtmp_listen),
            rtsps_listen: flags.rtsps_listen.or(self.rtsps_listen),
            tls_cert: flags.tls_cert.or(self.tls_cert),
            tls_key: flags.tls_key.or(self.tls_key),
            rtsps_srtp: flags.rtsps_srtp.or(self.rtsps_srtp),
            webrtc_listen: flags.webrtc_listen.or(self.webrtc_listen),
            hls_body: flags.hls_body.or(self.hls_body),
            require_token: flags.require_token.or(self.require_token),
            token_secret: flags.token_secret.or(self.token_secret),
            admin_token: flags.admin_token.or(self.admin_token),
            api_read: flags.api_read.or(self.api_read),
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
    /// How long a session may stay set up (RFC 2326 Appendix A "Ready") without a PLAY;
    /// players PLAY within milliseconds, so unplayed sessions are cut short.
    pub setup_timeout: Duration,
    /// The RTSP authority (`host[:port]`) clients use, when it is not our listening address.
    pub public_address: Option<String>,
    /// Log filter.
    pub log: String,
    /// Live channels: name → file.
    pub live: BTreeMap<String, PathBuf>,
    /// Instant-start policy of live channels.
    pub live_start: StartPolicy,
    /// Live channels sent once to a multicast group: name → group and first RTP port.
    pub multicast: BTreeMap<String, SocketAddr>,
    /// Multicast time to live (IP hops).
    pub multicast_ttl: u8,
    /// Users and their Digest secrets.
    pub users: HashMap<String, UserSecret>,
    /// Access rules.
    pub access: Vec<AccessRule>,
    /// Sources to pull, by stream path.
    pub sources: BTreeMap<String, SourceSpec>,
    /// Paths open to any publisher.
    pub publish: Vec<String>,
    /// How long a live stream waits for its publisher to return.
    pub publisher_timeout: Duration,
    /// Bytes of each ingested stream's live log.
    pub live_log_size: usize,
    /// How long an RTMP or pulled stream's AAC frames may be held to group them (zero: off).
    pub ingest_audio_hold: Duration,
    /// Recording of live streams; `None` when no path is recorded.
    pub record: Option<RecordSettings>,
    /// Whether Basic credentials are accepted.
    pub allow_basic: bool,
    /// Admission limits.
    pub admission: AdmissionLimits,
    /// UDP send path (backend and GSO).
    pub send: SendConfig,
    /// Whether shards record pacing lateness, digest RTCP and report statistics.
    pub stats: bool,
    /// Nice value each shard thread sets for itself (default −5). A shard shares its core
    /// with the control thread and the HTTP side; at equal priority the scheduler lets
    /// those run for milliseconds while packets wait (1,600 live viewers on one core: pacing
    /// lateness p99 17.8 and 44 ms at nice 0, 3.4–9 ms at −5 … −15). Much higher starves
    /// the control thread when the shard is overloaded (5,000 VOD viewers: the last PLAY
    /// answered 13.1 s after the ramp began at −15, 7.3 s at −5, 6.3 s at 0). Needs
    /// `CAP_SYS_NICE`; without it the shard logs once and runs at the default priority.
    pub shard_nice: i32,
    /// HTTP listen address; `None` when the HTTP side is off.
    pub http_listen: Option<SocketAddr>,
    /// HLS listen address, one `SO_REUSEPORT` listener per shard; `None` when HLS is off.
    pub hls_listen: Option<SocketAddr>,
    /// RTMP listen address; `None` when RTMP is off.
    pub rtmp_listen: Option<SocketAddr>,
    /// RTSPS listen address with its certificate and key files; `None` when RTSPS is off.
    /// The files are read again on SIGHUP (for new connections).
    pub rtsps: Option<RtspsConfig>,
    /// WebRTC media: shard k binds UDP `ip:port + k` (port 0: each a free port) and names it
    /// in its SDP answers' host candidate; `None` when WebRTC is off. The address must be
    /// one browsers reach: an unspecified IP (`0.0.0.0`) is refused, since a candidate
    /// cannot name it.
    pub webrtc_listen: Option<SocketAddr>,
    /// How HLS segment bodies reach the socket (docs/BENCHMARKS.md "HLS" measured both).
    pub hls_body: crate::shard::hls::BodyPath,
    /// RTSP DESCRIBE and SETUP need a valid play token.
    pub require_token: bool,
    /// Play-token signing secret; `None` means a random secret per run.
    pub token_secret: Option<String>,
    /// Admin bearer token; `None` refuses every mutating API call.
    pub admin_token: Option<String>,
    /// Who may read the API and `/metrics`.
    pub api_read: ApiRead,
}

impl ServerConfig {
    /// What the RTSP session core needs of this configuration.
    pub fn session_settings(&self) -> crate::rtsp::session::Settings {
        crate::rtsp::session::Settings {
            session_timeout: self.session_timeout,
            setup_timeout: self.setup_timeout,
            public_address: self.public_address.clone(),
            payload_budget_bytes: self.payload_budget_bytes,
            stats: self.stats,
            users: self.users.clone(),
            access: self.access.clone(),
            publish_open: self.publish.clone(),
            publisher_timeout: self.publisher_timeout,
            allow_basic: self.allow_basic,
            admission: self.admission,
            require_token: self.require_token,
            rtsps_srtp: self.rtsps.as_ref().is_some_and(|r| r.srtp),
        }
    }

    /// The settings whose change `other` makes that take effect only after a restart
    /// (they shape threads, sockets or running sessions).
    pub fn needs_restart_for(&self, other: &ServerConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        if other.http_listen != self.http_listen
            && !matches!(other.http_listen, Some(a) if a.port() == 0)
        {
            out.push("http-listen");
        }
        if other.rtmp_listen != self.rtmp_listen
            && !matches!(other.rtmp_listen, Some(a) if a.port() == 0)
        {
            out.push("rtmp-listen");
        }
        if other.hls_listen != self.hls_listen
            && !matches!(other.hls_listen, Some(a) if a.port() == 0)
        {
            out.push("hls-listen");
        }
        if other.rtsps.as_ref().map(|r| r.listen) != self.rtsps.as_ref().map(|r| r.listen)
            && !matches!(&other.rtsps, Some(r) if r.listen.port() == 0)
        {
            out.push("rtsps-listen");
        }
        if other.webrtc_listen != self.webrtc_listen
            && !matches!(other.webrtc_listen, Some(a) if a.port() == 0)
        {
            out.push("webrtc-listen");
        }
        if other.listen != self.listen && other.listen.port() != 0 {
            out.push("listen");
        }
        if other.shards != self.shards {
            out.push("shards");
        }
        if other.payload_budget_bytes != self.payload_budget_bytes {
            out.push("payload-budget");
        }
        if other.session_timeout != self.session_timeout {
            out.push("session-timeout");
        }
        if other.live != self.live
            || other.live_start != self.live_start
            || other.multicast != self.multicast
            || other.multicast_ttl != self.multicast_ttl
        {
            out.push("live");
        }
        if other.record != self.record {
            out.push("record");
        }
        out
    }

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
        let hold_ms = o
            .ingest_audio_hold_ms
            .unwrap_or(DEFAULT_INGEST_AUDIO_HOLD_MS);
        if hold_ms > crate::packetize::aac::MAX_AGGREGATE_SPAN_MS {
            return Err(ConfigError::Invalid {
                name: "ingest-audio-hold-ms",
                value: hold_ms.to_string(),
                why: format!(
                    "must be 0 (off) to {} milliseconds (the longest span of one AAC packet)",
                    crate::packetize::aac::MAX_AGGREGATE_SPAN_MS
                ),
            });
        }
        let ingest_audio_hold = Duration::from_millis(hold_ms);
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
        let setup_timeout = o
            .setup_timeout
            .unwrap_or(DEFAULT_SETUP_TIMEOUT_SECS.min(timeout));
        if !(1..=timeout).contains(&setup_timeout) {
            return Err(ConfigError::Invalid {
                name: "setup-timeout",
                value: setup_timeout.to_string(),
                why: format!("must be 1 to session-timeout ({timeout}) seconds"),
            });
        }
        for (name, value) in [
            ("token-secret", &o.token_secret),
            ("admin-token", &o.admin_token),
        ] {
            if let Some(v) = value {
                if v.len() < MIN_SECRET_LEN {
                    return Err(ConfigError::Invalid {
                        name,
                        value: "(hidden)".into(),
                        why: format!("must be at least {MIN_SECRET_LEN} bytes"),
                    });
                }
            }
        }
        let record = o
            .record
            .map(|r| record_settings(r, o.media.is_some()))
            .transpose()?
            .flatten();
        let live = live_channels(o.live.unwrap_or_default())?;
        let multicast = multicast_groups(o.multicast.unwrap_or_default(), &live)?;
        let api_read = o.api_read.unwrap_or_default();
        if api_read == ApiRead::Token && o.admin_token.is_none() {
            return Err(ConfigError::Invalid {
                name: "api-read",
                value: "token".into(),
                why: "needs admin-token (or SHARDCAST_ADMIN_TOKEN) to be set".into(),
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
            setup_timeout: Duration::from_secs(setup_timeout),
            public_address: o.public_address.map(check_public_address).transpose()?,
            log: o.log.unwrap_or_else(|| "info".into()),
            live,
            live_start: o.live_start.unwrap_or_default(),
            multicast,
            multicast_ttl: o.multicast_ttl.unwrap_or(DEFAULT_MULTICAST_TTL),
            users: user_secrets(o.users.unwrap_or_default())?,
            access: o.access.unwrap_or_default(),
            publish: o.publish.unwrap_or_default(),
            sources: sources(o.sources.unwrap_or_default())?,
            publisher_timeout: Duration::from_secs(o.publisher_timeout.unwrap_or(10).max(1)),
            live_log_size: o
                .live_log_size
                .unwrap_or(crate::live_log::DEFAULT_CAPACITY)
                .max(crate::live_log::MIN_CAPACITY),
            ingest_audio_hold,
            record,
            allow_basic: o.allow_basic.unwrap_or(false),
            admission: o.limits.unwrap_or_default().resolve(shards),
            send: SendConfig {
                io: o.io,
                gso: o.gso.unwrap_or_default(),
                multicast_ttl: Some(o.multicast_ttl.unwrap_or(DEFAULT_MULTICAST_TTL)),
            },
            stats: o.stats.unwrap_or_default() == StatsMode::On,
            shard_nice: match o.shard_nice.unwrap_or(DEFAULT_SHARD_NICE) {
                n @ -20..=19 => n,
                n => {
                    return Err(ConfigError::Invalid {
                        name: "shard-nice",
                        value: n.to_string(),
                        why: "must be -20 to 19".into(),
                    })
                }
            },
            http_listen: match o.http_listen {
                Some(HttpListen::Off) => None,
                Some(HttpListen::Addr(a)) => Some(a),
                None => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            },
            hls_listen: match o.hls_listen {
                Some(HttpListen::Off) => None,
                Some(HttpListen::Addr(a)) => Some(a),
                None => Some(SocketAddr::from(([127, 0, 0, 1], 8088))),
            },
            rtmp_listen: match o.rtmp_listen {
                Some(HttpListen::Off) => None,
                Some(HttpListen::Addr(a)) => Some(a),
                None => Some(SocketAddr::from(([127, 0, 0, 1], 1935))),
            },
            rtsps: match (o.rtsps_listen, o.tls_cert, o.tls_key) {
                (None, _, _) if o.rtsps_srtp == Some(true) => {
                    return Err(ConfigError::Invalid {
                        name: "rtsps-srtp",
                        value: "true".into(),
                        why: "needs rtsps-listen (SRTP keys are only offered over RTSPS)".into(),
                    })
                }
                (None, _, _) => None,
                (Some(listen), Some(cert), Some(key)) => Some(RtspsConfig {
                    listen,
                    cert,
                    key,
                    srtp: o.rtsps_srtp.unwrap_or(false),
                }),
                (Some(listen), _, _) => {
                    return Err(ConfigError::Invalid {
                        name: "rtsps-listen",
                        value: listen.to_string(),
                        why: "needs tls-cert and tls-key (PEM files)".into(),
                    })
                }
            },
            webrtc_listen: match o.webrtc_listen {
                Some(HttpListen::Off) => None,
                Some(HttpListen::Addr(a)) if a.ip().is_unspecified() => {
                    return Err(ConfigError::Invalid {
                        name: "webrtc-listen",
                        value: a.to_string(),
                        why: "SDP answers name this address as the browser's candidate: give \
                              one browsers reach, not an unspecified address"
                            .into(),
                    })
                }
                Some(HttpListen::Addr(a)) => Some(a),
                None => Some(SocketAddr::from(([127, 0, 0, 1], 8189))),
            },
            hls_body: o.hls_body.unwrap_or_default(),
            require_token: o.require_token.unwrap_or(false),
            token_secret: o.token_secret,
            admin_token: o.admin_token,
            api_read,
        })
    }
}

/// The `[record]` table as written (every field optional; `--record PATTERN` adds paths).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecordOverlay {
    /// Stream paths to record, as `--publish` patterns (`live/*` matches `live/x`; no `*`
    /// means that path and its sub-paths).
    pub paths: Option<Vec<String>>,
    /// Folder of recordings, relative to the media root (default `recordings`).
    pub dir: Option<PathBuf>,
    /// Seconds per file (default 3600); a new file starts at the first keyframe after it.
    pub segment: Option<u64>,
    /// Files older than this many seconds (by last write) are deleted.
    pub max_age: Option<u64>,
    /// Per stream: its oldest files are deleted while its files take more bytes than this.
    pub max_size: Option<u64>,
}

impl RecordOverlay {
    /// `self` with the fields set in `flags` replaced (paths are added).
    pub fn overlaid_by(self, flags: RecordOverlay) -> Self {
        Self {
            paths: match (self.paths, flags.paths) {
                (Some(mut file), Some(flags)) => {
                    file.extend(flags);
                    Some(file)
                }
                (file, flags) => flags.or(file),
            },
            dir: flags.dir.or(self.dir),
            segment: flags.segment.or(self.segment),
            max_age: flags.max_age.or(self.max_age),
            max_size: flags.max_size.or(self.max_size),
        }
    }
}

/// Validated recording settings (`docs/design/live-ingest.md`, recording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSettings {
    /// Stream path patterns recorded (`--publish` syntax).
    pub paths: Vec<String>,
    /// Folder of recordings relative to the media root: normal components only, so it stays
    /// inside the root (the server also checks its real path when it creates it).
    pub dir: PathBuf,
    /// Length of one file.
    pub segment: Duration,
    /// Age limit of a file (since its last write).
    pub max_age: Option<Duration>,
    /// Size limit of one stream's files together.
    pub max_size_bytes: Option<u64>,
}

/// Longest accepted `segment`, a day: longer files only make retention coarser.
pub const MAX_RECORD_SEGMENT_SECS: u64 = 86_400;

fn record_settings(
    r: RecordOverlay,
    has_media: bool,
) -> Result<Option<RecordSettings>, ConfigError> {
    let invalid = |name: &'static str, value: String, why: &str| ConfigError::Invalid {
        name,
        value,
        why: why.to_owned(),
    };
    let paths = r.paths.unwrap_or_default();
    if paths.is_empty() {
        return Ok(None);
    }
    if let Some(p) = paths.iter().find(|p| p.is_empty() || p.starts_with('/')) {
        return Err(invalid(
            "record.paths",
            p.clone(),
            "patterns are stream paths like live/* or live/cam1",
        ));
    }
    if !has_media {
        return Err(invalid(
            "record.paths",
            paths.join(","),
            "recording needs a media folder (--media) to write into",
        ));
    }
    let dir = r.dir.unwrap_or_else(|| PathBuf::from("recordings"));
    let inside = dir.components().count() > 0
        && dir
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside {
        return Err(invalid(
            "record.dir",
            dir.display().to_string(),
            "must be a relative path inside the media root (no .., not absolute)",
        ));
    }
    let segment = r.segment.unwrap_or(3600);
    if !(1..=MAX_RECORD_SEGMENT_SECS).contains(&segment) {
        return Err(invalid(
            "record.segment",
            segment.to_string(),
            "must be 1 to 86400 seconds",
        ));
    }
    if r.max_age == Some(0) {
        return Err(invalid(
            "record.max-age",
            "0".into(),
            "must be at least 1 second",
        ));
    }
    if r.max_size == Some(0) {
        return Err(invalid(
            "record.max-size",
            "0".into(),
            "must be at least 1 byte",
        ));
    }
    Ok(Some(RecordSettings {
        paths,
        dir,
        segment: Duration::from_secs(segment),
        max_age: r.max_age.map(Duration::from_secs),
        max_size_bytes: r.max_size,
    }))
}

/// Validates channel names: one URL path segment of safe characters.
fn live_channels(
    live: BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    for name in live.keys() {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name != "."
            && name != "..";
        if !ok {
            return Err(ConfigError::Invalid {
                name: "live",
                value: name.clone(),
                why: "channel names are 1-128 characters of A-Z a-z 0-9 - _ .".into(),
            });
        }
    }
    Ok(live)
}

/// Multicast time to live unless configured: 1 keeps the packets on the local network
/// (RFC 1112 §6.1); operators raise it to cross their multicast routers.
pub const DEFAULT_MULTICAST_TTL: u8 = 1;

/// Validates `[multicast]`: each name a configured live channel, each address a multicast
/// group (not the local network control block 224.0.0.0/24 or `ff02::/16`, which routers
/// never forward and hosts use for their own protocols) with an even, non-zero RTP port
/// (RFC 3550 §11).
fn multicast_groups(
    groups: BTreeMap<String, SocketAddr>,
    live: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, SocketAddr>, ConfigError> {
    for (name, addr) in &groups {
        let invalid = |why: &str| ConfigError::Invalid {
            name: "multicast",
            value: format!("{name} = {addr}"),
            why: why.into(),
        };
        if !live.contains_key(name) {
            return Err(invalid(
                "only live channels ([live] or --live) can be multicast",
            ));
        }
        let usable = match addr.ip() {
            IpAddr::V4(v4) => v4.is_multicast() && v4.octets()[..3] != [224, 0, 0],
            IpAddr::V6(v6) => v6.is_multicast() && v6.segments()[0] & 0xff0f != 0xff02,
        };
        if !usable {
            return Err(invalid(
                "the group must be a multicast address outside 224.0.0.0/24 and ff02::/16, e.g. 239.255.0.1",
            ));
        }
        if addr.port() == 0 || addr.port() % 2 != 0 {
            return Err(invalid(
                "the RTP port must be even and non-zero (RFC 3550 §11)",
            ));
        }
    }
    let mut seen: Vec<SocketAddr> = Vec::new();
    for addr in groups.values() {
        if seen.contains(addr) {
            return Err(ConfigError::Invalid {
                name: "multicast",
                value: addr.to_string(),
                why: "two channels on one group and port".into(),
            });
        }
        seen.push(*addr);
    }
    Ok(groups)
}

/// Parses `NAME=GROUP:PORT` (the `--multicast` flag).
pub fn parse_multicast_flag(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=GROUP:PORT, got {s:?}"))?;
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|e| format!("{addr:?}: {e} (expected GROUP:PORT, e.g. 239.255.0.1:5000)"))?;
    Ok((name.to_owned(), addr))
}

/// A `[sources]` entry as written: a URL, or a table with options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SourceEntry {
    /// `cam1 = "rtsp://…"`: always on, over TCP.
    Url(String),
    /// `cam1 = { url = "rtsp://…", transport = "udp", on-demand = true, grace = 10 }`.
    Table(SourceTable),
}

/// The table form of a `[sources]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceTable {
    /// The source's RTSP URL (credentials in its userinfo).
    pub url: String,
    /// `tcp` (interleaved, the default) or `udp`.
    #[serde(default)]
    pub transport: Option<String>,
    /// Connect only while someone watches (the first viewer starts it).
    #[serde(default)]
    pub on_demand: bool,
    /// Seconds an on-demand source stays connected after its last viewer left.
    #[serde(default)]
    pub grace: Option<u64>,
}

/// A validated source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Its URL.
    pub url: url::Url,
    /// How RTP comes from it.
    pub transport: crate::ingest::pull::PullTransport,
    /// Always on or on demand.
    pub mode: crate::ingest::pull::SourceMode,
}

/// `--source NAME=URL`: an always-on source pulled over TCP.
pub fn parse_source_flag(s: &str) -> Result<(String, SourceEntry), String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=rtsp://..., got {s:?}"))?;
    Ok((name.to_owned(), SourceEntry::Url(url.to_owned())))
}

fn sources(
    entries: BTreeMap<String, SourceEntry>,
) -> Result<BTreeMap<String, SourceSpec>, ConfigError> {
    use crate::ingest::pull::{PullTransport, SourceMode, DEFAULT_GRACE};
    let invalid = |value: &str, why: String| ConfigError::Invalid {
        name: "sources",
        value: value.to_owned(),
        why,
    };
    let mut out = BTreeMap::new();
    for (name, entry) in entries {
        let name_ok = !name.is_empty()
            && name.len() <= 255
            && name.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if !name_ok {
            return Err(invalid(
                &name,
                "source names are paths of A-Z a-z 0-9 - _ . segments".into(),
            ));
        }
        let table = match entry {
            SourceEntry::Url(url) => SourceTable {
                url,
                transport: None,
                on_demand: false,
                grace: None,
            },
            SourceEntry::Table(t) => t,
        };
        let url = url::Url::parse(&table.url)
            .ok()
            .filter(|u| u.scheme() == "rtsp" && u.host().is_some())
            .ok_or_else(|| invalid(&name, "the url must be rtsp://host[:port]/path".into()))?;
        let transport = match table.transport.as_deref() {
            None | Some("tcp") => PullTransport::Tcp,
            Some("udp") => PullTransport::Udp,
            Some(other) => return Err(invalid(&name, format!("transport {other:?}: tcp or udp"))),
        };
        let mode = if table.on_demand {
            SourceMode::OnDemand {
                grace: table.grace.map_or(DEFAULT_GRACE, Duration::from_secs),
            }
        } else {
            SourceMode::AlwaysOn
        };
        out.insert(
            name,
            SourceSpec {
                url,
                transport,
                mode,
            },
        );
    }
    Ok(out)
}

/// Checks a `public-address`: an RFC 3986 §3.2 authority without userinfo (`host`,
/// `host:port`, `[v6]:port`), since it is pasted into URLs as it is.
fn check_public_address(a: String) -> Result<String, ConfigError> {
    let ok = !a.is_empty()
        && a.len() <= 255
        && a.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    if ok {
        Ok(a)
    } else {
        Err(ConfigError::Invalid {
            name: "public-address",
            value: a,
            why: "must be host or host:port (letters, digits, . - _ : and [] for IPv6)".into(),
        })
    }
}

/// Turns configured users into Digest secrets.
fn user_secrets(users: Vec<UserEntry>) -> Result<HashMap<String, UserSecret>, ConfigError> {
    let mut out = HashMap::new();
    for u in users {
        let invalid = |why: &str| ConfigError::Invalid {
            name: "users",
            value: u.name.clone(),
            why: why.to_owned(),
        };
        if u.name.is_empty() || u.name.contains([':', '"', '\\']) {
            return Err(invalid(
                "user names are non-empty and contain no : \" or \\",
            ));
        }
        let secret = match (&u.password, &u.ha1_md5, &u.ha1_sha256) {
            (Some(p), None, None) => UserSecret::from_password(&u.name, p),
            (None, md5, sha) if md5.is_some() || sha.is_some() => {
                let check = |h: &Option<String>, len: usize| match h {
                    Some(h) if h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        Ok(h.to_ascii_lowercase())
                    }
                    Some(_) => Err(invalid("ha1 values are lowercase hex of the right length")),
                    None => Ok(String::new()),
                };
                UserSecret {
                    ha1_md5: check(md5, 32)?,
                    ha1_sha256: check(sha, 64)?,
                }
            }
            _ => return Err(invalid("give either password or ha1-md5/ha1-sha256")),
        };
        out.insert(u.name, secret);
    }
    Ok(out)
}

/// Parses `NAME:PASSWORD` (the `--user` flag).
pub fn parse_user_flag(s: &str) -> Result<UserEntry, String> {
    let (name, password) = s
        .split_once(':')
        .ok_or_else(|| "expected NAME:PASSWORD".to_owned())?;
    Ok(UserEntry {
        name: name.to_owned(),
        password: Some(password.to_owned()),
        ..Default::default()
    })
}

/// Parses `NAME=FILE` (the `--live` flag).
pub fn parse_live_flag(s: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=FILE, got {s:?}"))?;
    Ok((name.to_owned(), PathBuf::from(file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_groups_are_checked() {
        let with = |toml: &str| {
            let o: ConfigOverlay =
                toml::from_str(&format!("[live]\nch = \"a.mp4\"\n[multicast]\n{toml}")).unwrap();
            ServerConfig::from_overlay(o)
        };
        let ok = with("ch = \"239.255.0.1:5000\"").unwrap();
        assert_eq!(ok.multicast["ch"], "239.255.0.1:5000".parse().unwrap());
        assert_eq!(ok.multicast_ttl, DEFAULT_MULTICAST_TTL);
        assert_eq!(ok.send.multicast_ttl, Some(1));
        assert!(with("ch = \"[ff15::1]:5000\"").is_ok());
        for bad in [
            "ch = \"192.0.2.1:5000\"",   // not a group
            "ch = \"224.0.0.5:5000\"",   // local network control block
            "ch = \"[ff02::1]:5000\"",   // link-local scope
            "ch = \"239.255.0.1:5001\"", // odd RTP port
            "ch = \"239.255.0.1:0\"",
            "other = \"239.255.0.1:5000\"", // not a live channel
        ] {
            assert!(
                matches!(
                    with(bad),
                    Err(ConfigError::Invalid {
                        name: "multicast",
                        ..
                    })
                ),
                "{bad} accepted"
            );
        }
        let o: ConfigOverlay = toml::from_str(
            "multicast-ttl = 16\n[live]\na = \"a.mp4\"\nb = \"b.mp4\"\n[multicast]\na = \"239.1.1.1:5000\"\nb = \"239.1.1.1:5000\"",
        )
        .unwrap();
        assert!(
            ServerConfig::from_overlay(o).is_err(),
            "two channels on one group and port"
        );
        assert_eq!(
            parse_multicast_flag("ch=239.1.2.3:5000").unwrap(),
            ("ch".to_owned(), "239.1.2.3:5000".parse().unwrap())
        );
        assert!(parse_multicast_flag("ch=239.1.2.3").is_err());
    }

    #[test]
    fn shard_nice_defaults_high_and_must_be_a_nice_value() {
        let cfg = ServerConfig::from_overlay(ConfigOverlay::default()).unwrap();
        assert_eq!(cfg.shard_nice, DEFAULT_SHARD_NICE);
        let zero: ConfigOverlay = toml::from_str("shard-nice = 0").unwrap();
        assert_eq!(ServerConfig::from_overlay(zero).unwrap().shard_nice, 0);
        for bad in [-21, 20] {
            let o = ConfigOverlay {
                shard_nice: Some(bad),
                ..Default::default()
            };
            assert!(ServerConfig::from_overlay(o).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn webrtc_listen_defaults_to_loopback_and_refuses_an_address_no_candidate_can_name() {
        let cfg = ServerConfig::from_overlay(ConfigOverlay::default()).unwrap();
        assert_eq!(cfg.webrtc_listen, Some("127.0.0.1:8189".parse().unwrap()));
        let off: ConfigOverlay = toml::from_str("webrtc-listen = \"off\"").unwrap();
        assert_eq!(ServerConfig::from_overlay(off).unwrap().webrtc_listen, None);
        let lan: ConfigOverlay = toml::from_str("webrtc-listen = \"192.0.2.7:9000\"").unwrap();
        assert_eq!(
            ServerConfig::from_overlay(lan).unwrap().webrtc_listen,
            Some("192.0.2.7:9000".parse().unwrap())
        );
        for any in ["0.0.0.0:8189", "[::]:8189"] {
            let o: ConfigOverlay = toml::from_str(&format!("webrtc-listen = \"{any}\"")).unwrap();
            let err = ServerConfig::from_overlay(o).unwrap_err().to_string();
            assert!(err.contains("webrtc-listen"), "{any}: {err}");
        }
    }

    #[test]
    fn rtsps_is_off_by_default_and_needs_its_certificate_and_key() {
        let cfg = ServerConfig::from_overlay(ConfigOverlay::default()).unwrap();
        assert_eq!(cfg.rtsps, None);
        let o: ConfigOverlay = toml::from_str(
            "rtsps-listen = \"127.0.0.1:8322\"\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"",
        )
        .unwrap();
        assert_eq!(
            ServerConfig::from_overlay(o).unwrap().rtsps,
            Some(RtspsConfig {
                listen: "127.0.0.1:8322".parse().unwrap(),
                cert: "c.pem".into(),
                key: "k.pem".into(),
                srtp: false,
            })
        );
        let o: ConfigOverlay =
            toml::from_str("rtsps-listen = \"127.0.0.1:8322\"\ntls-cert = \"c.pem\"").unwrap();
        let err = ServerConfig::from_overlay(o).unwrap_err().to_string();
        assert!(err.contains("tls-key"), "{err}");
    }

    #[test]
    fn rtsps_srtp_is_off_unless_asked_and_needs_rtsps() {
        let o: ConfigOverlay = toml::from_str(
            "rtsps-listen = \"127.0.0.1:8322\"\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"",
        )
        .unwrap();
        let cfg = ServerConfig::from_overlay(o).unwrap();
        assert!(!cfg.session_settings().rtsps_srtp);
        let o: ConfigOverlay = toml::from_str(
            "rtsps-listen = \"127.0.0.1:8322\"\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"\n\
             rtsps-srtp = true",
        )
        .unwrap();
        let cfg = ServerConfig::from_overlay(o).unwrap();
        assert!(cfg.session_settings().rtsps_srtp);
        let o: ConfigOverlay = toml::from_str("rtsps-srtp = true").unwrap();
        let err = ServerConfig::from_overlay(o).unwrap_err().to_string();
        assert!(err.contains("rtsps-listen"), "{err}");
    }

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let file: ConfigOverlay = toml::from_str(
            "shards = 3\npayload-budget = 1000\nlog = \"debug\"\nio = \"sendto\"\ngso = \"off\"\n\
             live-start = \"burst\"\n[live]\nnews = \"a.mp4\"",
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
        assert_eq!(cfg.live_start, StartPolicy::Burst);
        assert_eq!(cfg.live.get("news"), Some(&PathBuf::from("a.mp4")));
        assert_eq!(cfg.send.io, Some(IoBackend::Sendto));
        assert_eq!(cfg.send.gso, GsoMode::Off);
        assert!(cfg.stats, "statistics default on");
        let off: ConfigOverlay = toml::from_str("stats = \"off\"").unwrap();
        assert!(!ServerConfig::from_overlay(off.clone()).unwrap().stats);
        let on_flag = ConfigOverlay {
            stats: Some(StatsMode::On),
            ..Default::default()
        };
        assert!(
            ServerConfig::from_overlay(off.overlaid_by(on_flag))
                .unwrap()
                .stats
        );
        assert!(toml::from_str::<ConfigOverlay>("stats = \"maybe\"").is_err());
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
        let bad_name = ConfigOverlay {
            live: Some([("a/b".to_owned(), PathBuf::from("x.mp4"))].into()),
            ..Default::default()
        };
        assert!(ServerConfig::from_overlay(bad_name).is_err());
    }

    #[test]
    fn record_table_and_flag_are_validated() {
        let file: ConfigOverlay = toml::from_str(
            "media = \"/m\"\n[record]\npaths = [\"live/*\"]\nsegment = 60\nmax-age = 86400\n\
             max-size = 1000000",
        )
        .unwrap();
        let flags = ConfigOverlay {
            record: Some(RecordOverlay {
                paths: Some(vec!["cams/*".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cfg = ServerConfig::from_overlay(file.overlaid_by(flags)).unwrap();
        let r = cfg.record.unwrap();
        assert_eq!(r.paths, vec!["live/*".to_owned(), "cams/*".to_owned()]);
        assert_eq!(r.dir, PathBuf::from("recordings"));
        assert_eq!(r.segment, Duration::from_secs(60));
        assert_eq!(r.max_age, Some(Duration::from_secs(86400)));
        assert_eq!(r.max_size_bytes, Some(1_000_000));
        // No paths: nothing recorded.
        let off: ConfigOverlay = toml::from_str("[record]\nsegment = 60").unwrap();
        assert!(ServerConfig::from_overlay(off).unwrap().record.is_none());
        for (bad, what) in [
            ("[record]\npaths = [\"live/*\"]", "record.paths"),
            (
                "media = \"/m\"\n[record]\npaths = [\"a\"]\ndir = \"../x\"",
                "record.dir",
            ),
            (
                "media = \"/m\"\n[record]\npaths = [\"a\"]\ndir = \"/x\"",
                "record.dir",
            ),
            (
                "media = \"/m\"\n[record]\npaths = [\"a\"]\nsegment = 0",
                "record.segment",
            ),
            (
                "media = \"/m\"\n[record]\npaths = [\"a\"]\nmax-age = 0",
                "record.max-age",
            ),
        ] {
            let o: ConfigOverlay = toml::from_str(bad).unwrap();
            let err = ServerConfig::from_overlay(o).unwrap_err().to_string();
            assert!(err.contains(what), "{bad}: {err}");
        }
        assert!(toml::from_str::<ConfigOverlay>("[record]\ntypo = 1").is_err());
    }

    #[test]
    fn http_side_settings() {
        let cfg = ServerConfig::from_overlay(ConfigOverlay::default()).unwrap();
        assert_eq!(cfg.http_listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(!cfg.require_token);
        assert_eq!(cfg.api_read, ApiRead::Public);
        let file: ConfigOverlay = toml::from_str(
            "http-listen = \"off\"\nrequire-token = true\napi-read = \"token\"\n\
             admin-token = \"0123456789abcdef0123\"\ntoken-secret = \"fedcba9876543210\"",
        )
        .unwrap();
        let cfg = ServerConfig::from_overlay(file.clone()).unwrap();
        assert_eq!(cfg.http_listen, None);
        assert!(cfg.require_token);
        assert_eq!(cfg.api_read, ApiRead::Token);
        let flags = ConfigOverlay {
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        };
        let cfg = ServerConfig::from_overlay(file.overlaid_by(flags)).unwrap();
        assert_eq!(cfg.http_listen, Some("127.0.0.1:0".parse().unwrap()));
        // Reading with a token but no token to read with, and guessable secrets, are refused.
        let no_admin = ConfigOverlay {
            api_read: Some(ApiRead::Token),
            ..Default::default()
        };
        assert!(ServerConfig::from_overlay(no_admin).is_err());
        let short = ConfigOverlay {
            admin_token: Some("short".into()),
            ..Default::default()
        };
        let err = ServerConfig::from_overlay(short).unwrap_err().to_string();
        assert!(
            err.contains("admin-token") && !err.contains("short"),
            "{err}"
        );
        assert!("nonsense".parse::<HttpListen>().is_err());
    }
}
