//! `shardcast bench`: the capacity-planning load generator. It starts (or targets) a server,
//! opens real RTSP sessions, receives every RTP packet and measures loss, reordering, jitter,
//! start-up latency and the server's CPU per delivered packet; in fixed-load, ramp and
//! capacity-search modes, once per send backend.
//!
//! Module split: [`session`] (one viewer's handshake), `receiver` (the epoll/recvmmsg
//! thread), [`stats`] (RFC 3550 arithmetic), [`server`] (the process under test and
//! `/proc`), [`capacity`] (the search), [`churn`] (the churn soak: sessions ended and
//! started at a fixed rate, server descriptors/RSS/threads against their baseline),
//! [`report`] (JSON, HTML with SVG, Markdown), [`hls`] (HLS viewers over HTTP, `--protocol
//! hls`), [`nginx`] (the reference HLS server), [`publish`] (the bench publishing the stream
//! its viewers play, `--publish rtsp|rtmp`, and the looped channel it is compared with,
//! `--source`) and [`latency`] (the latency the server adds to a published stream). The
//! harness never prints; `bench.rs` does.

pub(crate) mod capacity;
pub(crate) mod churn;
pub(crate) mod hls;
pub(crate) mod host;
pub(crate) mod latency;
pub(crate) mod nginx;
pub(crate) mod publish;
mod receiver;
pub(crate) mod report;
pub(crate) mod server;
pub(crate) mod session;
pub(crate) mod stats;
pub(crate) mod whep;

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use capacity::{CapacityOutcome, ProbeVerdict, SearchBounds};
pub(crate) use receiver::ReceiveTuning;
use receiver::{spawn_receiver, LiveCounters, ReceiverMsg};
use server::{sample_process, ProcSample, ServerLaunch, ServerProcess};
use session::{open_session, RtpTransport};
use stats::{new_histogram, MediaKind, Percentiles};

/// Hard cap on viewers per run.
pub(crate) const MAX_VIEWERS: u32 = 20_000;
/// Most `--rounds` a fixed-load bench runs (each configuration this many times).
pub(crate) const MAX_ROUNDS: u32 = 20;
/// Hard cap on one run's playing time.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(600);
/// Handshakes in flight at once.
pub(crate) const HANDSHAKES_IN_FLIGHT: usize = 64;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// A socket or file operation failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The server answered a request with a non-200 status.
    #[error("{method} answered {status}")]
    Status {
        /// The RTSP method.
        method: &'static str,
        /// The status code.
        status: u16,
    },
    /// Something the server sent made no sense.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server did not start (or refused its arguments).
    #[error("server did not start with [{args}]: {detail}")]
    ServerStart {
        /// The extra arguments it was given.
        args: String,
        /// Exit status and its last stderr lines.
        detail: String,
    },
    /// The options ask for something the harness will not do.
    #[error("refused: {0}")]
    Refused(String),
}

impl LoadError {
    pub(crate) fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            cause,
        }
    }
}

/// Which server to load.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Start one per probe.
    Spawn(ServerLaunch),
    /// An existing server at this stream URL; its pid if CPU should be read.
    Url {
        /// `rtsp://host:port/stream`.
        url: String,
        /// Server process id for `/proc`.
        pid: Option<u32>,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Runs at a fixed viewer count: `rounds` of them per configuration, interleaved (every
    /// configuration once, then again), so a machine whose speed drifts during the
    /// invocation shifts every configuration of a round alike and ratios within a round
    /// stay comparable.
    Fixed {
        /// Viewers.
        viewers: u32,
        /// Runs per configuration (at least 1).
        rounds: u32,
    },
    /// Bisection for the largest count that holds the SLO.
    Capacity {
        /// Upper bound.
        max_viewers: u32,
    },
}

/// Service-level objective for a run to pass.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Slo {
    /// Largest acceptable loss, percent.
    pub(crate) max_loss_pct: f64,
    /// Largest acceptable audio jitter p99 at the harness, ms (used when the server's own
    /// pacing lateness is not available).
    pub(crate) max_jitter_p99_ms: f64,
    /// Largest acceptable pacing lateness p99 reported by the server, ms.
    pub(crate) max_lateness_p99_ms: f64,
}

/// All options of `shardcast bench`.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// Server to load.
    pub(crate) target: Target,
    /// Stream(s) of a spawned server: a name, a comma-separated list or `all` (sessions
    /// spread round-robin) — `None` takes the first announced.
    pub(crate) stream: Option<String>,
    /// Fixed or capacity.
    pub(crate) mode: Mode,
    /// Playing time per run (after all sessions started).
    pub(crate) duration: Duration,
    /// Session starts per second; `None` starts them as fast as the handshake bound allows.
    pub(crate) ramp_per_sec: Option<f64>,
    /// UDP or TCP-interleaved.
    pub(crate) transport: RtpTransport,
    /// How viewers receive (what the loopback receive path charges to the server's core).
    pub(crate) receive: ReceiveTuning,
    /// Server configurations to compare, one result row each (see [`variants`]).
    pub(crate) variants: Vec<Variant>,
    /// Pass/fail objective.
    pub(crate) slo: Slo,
    /// Probe budget for the capacity search.
    pub(crate) max_probes: u32,
    /// Show progress bars (stderr).
    pub(crate) progress: bool,
    /// The media file rows with a [`Variant::source`] stream (`--publish`, `--source`).
    pub(crate) source_media: Option<SourceMedia>,
}

/// The media file the bench streams itself: published to the server, or looped by it as a
/// live channel.
#[derive(Debug, Clone)]
pub(crate) struct SourceMedia {
    /// The file (the server's `--live=NAME=FILE`, ffmpeg's input).
    pub(crate) file: PathBuf,
    /// The file indexed (our RTSP publisher's samples).
    pub(crate) media: Arc<shardcast::media::MediaFile>,
}

/// One server configuration under comparison, e.g. `--io uring --gso off`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Variant {
    /// Row label, e.g. `io=uring gso=off`, or `default`.
    pub(crate) label: String,
    /// Arguments given to the started server for this row.
    pub(crate) server_args: Vec<String>,
    /// The server executable for this row, when builds are compared (`--server-exe`).
    pub(crate) exe: Option<std::path::PathBuf>,
    /// The viewers' RTP transport for this row, when transports are compared
    /// (`--transport udp,tcp`); `None` takes [`BenchOptions::transport`].
    pub(crate) transport: Option<RtpTransport>,
    /// What this row's viewers play when the stream comes from the bench (`--publish`,
    /// `--source`): a looped channel of the media or the media published by the bench;
    /// `None` plays `--stream`.
    pub(crate) source: Option<publish::StreamSource>,
}

/// Every combination of the values given for each server flag (`--io`, `--gso`, `--stats`),
/// in the order given, so one invocation compares them side by side. A flag with no values
/// is left at the server's default; no flags at all gives one `default` row.
pub(crate) fn variants(flags: &[(&str, &[String])]) -> Vec<Variant> {
    let mut out = vec![Variant {
        label: String::new(),
        server_args: Vec::new(),
        exe: None,
        transport: None,
        source: None,
    }];
    for (flag, values) in flags {
        if values.is_empty() {
            continue;
        }
        out = out
            .into_iter()
            .flat_map(|v| {
                values.iter().map(move |value| {
                    let mut server_args = v.server_args.clone();
                    server_args.extend([format!("--{flag}"), value.clone()]);
                    let sep = if v.label.is_empty() { "" } else { " " };
                    Variant {
                        label: format!("{}{sep}{flag}={value}", v.label),
                        server_args,
                        exe: None,
                        transport: None,
                        source: None,
                    }
                })
            })
            .collect();
    }
    for v in &mut out {
        if v.label.is_empty() {
            v.label = "default".into();
        }
    }
    out
}

/// `variants` once per server build (`--server-exe NAME=PATH`), builds outermost: rows
/// `exe=NAME …`, so `--rounds` interleaves the builds and each round's ratios compare them
/// under the same machine conditions.
pub(crate) fn with_builds(
    variants: Vec<Variant>,
    builds: &[(String, std::path::PathBuf)],
) -> Vec<Variant> {
    if builds.is_empty() {
        return variants;
    }
    builds
        .iter()
        .flat_map(|(name, exe)| {
            variants.iter().map(move |v| Variant {
                label: if v.label == "default" {
                    format!("exe={name}")
                } else {
                    format!("exe={name} {}", v.label)
                },
                server_args: v.server_args.clone(),
                exe: Some(exe.clone()),
                transport: v.transport,
                source: v.source,
            })
        })
        .collect()
}

/// `variants` once per viewer transport when more than one is given (`--transport udp,tcp`),
/// transports innermost: rows `… transport=udp`, `… transport=tcp` next to each other, so
/// each server configuration is measured over both in one invocation.
pub(crate) fn with_transports(variants: Vec<Variant>, transports: &[RtpTransport]) -> Vec<Variant> {
    if transports.len() < 2 {
        return variants;
    }
    variants
        .iter()
        .flat_map(|v| {
            transports.iter().map(move |&t| {
                let name = match t {
                    RtpTransport::Udp => "udp",
                    RtpTransport::Tcp => "tcp",
                };
                Variant {
                    label: if v.label == "default" {
                        format!("transport={name}")
                    } else {
                        format!("{} transport={name}", v.label)
                    },
                    server_args: v.server_args.clone(),
                    exe: v.exe.clone(),
                    transport: Some(t),
                    source: v.source,
                }
            })
        })
        .collect()
}

/// `variants` once per stream source when the bench provides the stream (`--publish`,
/// `--source`), sources innermost: rows `… source=published-rtsp`, `… source=channel` next
/// to each other, so `--rounds` interleaves them and each round's ratio table compares the
/// published stream's CPU per packet with the looped channel's under the same conditions.
/// One source labels no rows differently.
pub(crate) fn with_sources(
    variants: Vec<Variant>,
    sources: &[publish::StreamSource],
) -> Vec<Variant> {
    if sources.is_empty() {
        return variants;
    }
    variants
        .iter()
        .flat_map(|v| {
            sources.iter().map(move |&src| {
                let name = source_label(src);
                Variant {
                    label: if sources.len() < 2 {
                        v.label.clone()
                    } else if v.label == "default" {
                        format!("source={name}")
                    } else {
                        format!("{} source={name}", v.label)
                    },
                    server_args: v.server_args.clone(),
                    exe: v.exe.clone(),
                    transport: v.transport,
                    source: Some(src),
                }
            })
        })
        .collect()
}

/// A source's name in row labels.
pub(crate) fn source_label(src: publish::StreamSource) -> &'static str {
    use publish::{PublishKind, StreamSource};
    match src {
        StreamSource::Channel => "channel",
        StreamSource::Published(PublishKind::Rtsp) => "published-rtsp",
        StreamSource::Published(PublishKind::Rtmp) => "published-rtmp",
    }
}

/// The stream URLs of a started server that sessions spread over, round-robin: `choice` is
/// one name, a comma-separated list, or `all` (every stream it announced); `None` takes
/// the first announced.
pub(crate) fn stream_urls(
    choice: Option<&str>,
    addr: std::net::SocketAddr,
    announced: &[String],
) -> Result<Vec<String>, LoadError> {
    let urls: Vec<String> = match choice {
        Some("all") => announced.to_vec(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|name| format!("rtsp://{addr}/{name}"))
            .collect(),
        None => announced.iter().take(1).cloned().collect(),
    };
    if urls.is_empty() {
        return Err(LoadError::Protocol("the server announced no stream".into()));
    }
    Ok(urls)
}

/// The server's resource use over one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ServerUsage {
    /// CPU seconds (user + system) during the run.
    pub(crate) cpu_secs: f64,
    /// CPU ns per RTP packet delivered to the harness.
    pub(crate) cpu_ns_per_packet: f64,
    /// Busy ns of the server's pinned core per packet, softirq included (the loopback
    /// receive path, which the kernel charges to no process); `None` when not pinned.
    pub(crate) core_ns_per_packet: Option<f64>,
    /// Sample at the end of the run.
    pub(crate) end: ProcSample,
}

/// Per-track summary of one session.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrackSummary {
    /// Video or audio.
    pub(crate) kind: MediaKind,
    /// Packets counted.
    pub(crate) packets: u64,
    /// Bytes of RTP.
    pub(crate) bytes: u64,
    /// Missing sequence numbers.
    pub(crate) lost: u64,
    /// Out-of-order arrivals.
    pub(crate) reordered: u64,
    /// Final RFC 3550 jitter, ms.
    pub(crate) jitter_ms: f64,
    /// PLAY sent → first packet, ms.
    pub(crate) first_packet_ms: Option<f64>,
    /// PLAY sent → first keyframe, ms (video).
    pub(crate) first_keyframe_ms: Option<f64>,
}

/// The result of one run (one viewer count on one backend).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RunResult {
    /// Viewers requested.
    pub(crate) viewers: u32,
    /// Sessions that reached PLAY.
    pub(crate) playing: u32,
    /// Handshakes that failed or timed out.
    pub(crate) failed_handshakes: u32,
    /// First handshake error seen.
    pub(crate) first_error: Option<String>,
    /// Transport used.
    pub(crate) transport: RtpTransport,
    /// How viewers received.
    pub(crate) receive: ReceiveTuning,
    /// Seconds from the first start to the last PLAY answer.
    pub(crate) start_secs: f64,
    /// Seconds all sessions played together.
    pub(crate) steady_secs: f64,
    /// RTP packets received.
    pub(crate) packets: u64,
    /// RTP bytes received.
    pub(crate) bytes: u64,
    /// Packets missing by sequence number.
    pub(crate) lost: u64,
    /// Loss as a percentage of expected packets.
    pub(crate) loss_pct: f64,
    /// Out-of-order arrivals.
    pub(crate) reordered: u64,
    /// Mean received bit rate per playing viewer over the steady phase (every session
    /// playing), Mbit/s.
    pub(crate) mbit_per_viewer: f64,
    /// Sessions with a track that received nothing for [`STALL_LIMIT`] before the end: a
    /// stream that stopped leaves no sequence gap, so loss alone would not show it.
    pub(crate) stalled_sessions: u32,
    /// Audio jitter estimate across packets.
    pub(crate) jitter_audio: Percentiles,
    /// Video jitter estimate across packets (inflated by B-frame reordering; not in the SLO).
    pub(crate) jitter_video: Percentiles,
    /// PLAY → first packet across sessions.
    pub(crate) first_packet: Percentiles,
    /// PLAY → first keyframe across sessions.
    pub(crate) first_keyframe: Percentiles,
    /// `recvmmsg` calls that returned data, per UDP packet.
    pub(crate) packets_per_recv_call: f64,
    /// Clip loops (re-PLAYs).
    pub(crate) loops: u64,
    /// TEARDOWNs answered 200.
    pub(crate) teardowns_answered: u64,
    /// RTSP errors after PLAY.
    pub(crate) rtsp_errors: u64,
    /// Server resource use, when its pid is known.
    pub(crate) server: Option<ServerUsage>,
    /// The data plane's own figures (pacing lateness, sends), when its API is reachable.
    pub(crate) data_plane: Option<server::DataPlaneFigures>,
    /// Whether the SLO held.
    pub(crate) slo_passed: bool,
    /// Why (not).
    pub(crate) slo_reason: String,
    /// Every session's tracks.
    pub(crate) sessions: Vec<Vec<TrackSummary>>,
    /// HLS runs only: the HLS viewers' figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hls: Option<hls::HlsFigures>,
    /// Runs of a stream the bench's RTSP publisher published: the latency the server
    /// added, publisher's packet in → viewer's packet out (see [`latency`]), over the steady
    /// phase (the joining viewers' GOP-cache bursts excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency: Option<latency::LatencyFigures>,
    /// Runs of a published stream: RTP packets the bench's RTSP publisher sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) publisher_packets: Option<u64>,
}

/// Results for one server configuration.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConfigResult {
    /// Row label, e.g. `io=uring gso=on` or `default`.
    pub(crate) label: String,
    /// Arguments the server got for this row.
    pub(crate) server_args: Vec<String>,
    /// Set when the configuration could not run (e.g. the server rejected `--io`).
    pub(crate) error: Option<String>,
    /// Runs in order (one for fixed load, one per probe for capacity).
    pub(crate) runs: Vec<RunResult>,
    /// Capacity search outcome.
    pub(crate) capacity: Option<CapacityOutcome>,
}

fn check_loopback(url: &str, allow_remote: bool) -> Result<(), LoadError> {
    let authority = url
        .strip_prefix("rtsp://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| LoadError::Refused(format!("not an rtsp:// URL: {url}")))?;
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:554")
    };
    let addrs: Vec<_> = with_port
        .to_socket_addrs()
        .map_err(|e| LoadError::io(format!("resolving {authority}"), e))?
        .collect();
    if addrs.is_empty() {
        return Err(LoadError::Refused(format!(
            "{authority} resolves to nothing"
        )));
    }
    if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(LoadError::Refused(format!(
            "{authority} is not loopback; pass --allow-remote to load another machine"
        )));
    }
    Ok(())
}

/// Validates the target before anything runs.
pub(crate) fn validate(opts: &BenchOptions, allow_remote: bool) -> Result<(), LoadError> {
    if let Target::Url { url, .. } = &opts.target {
        check_loopback(url, allow_remote)?;
        if opts
            .variants
            .iter()
            .any(|v| !v.server_args.is_empty() || v.exe.is_some())
        {
            return Err(LoadError::Refused(
                "--io/--gso/--stats/--server-exe need a server the harness starts (not --url)"
                    .into(),
            ));
        }
    }
    if opts.variants.iter().any(|v| v.source.is_some()) {
        if !matches!(opts.target, Target::Spawn(_)) {
            return Err(LoadError::Refused(
                "--publish/--source need a server the harness starts (not --url)".into(),
            ));
        }
        if opts.source_media.is_none() {
            return Err(LoadError::Refused(
                "--publish/--source need a media file".into(),
            ));
        }
    }
    let viewers = match opts.mode {
        Mode::Fixed { viewers, rounds } => {
            if rounds == 0 || rounds > MAX_ROUNDS {
                return Err(LoadError::Refused(format!(
                    "--rounds must be 1..={MAX_ROUNDS}, got {rounds}"
                )));
            }
            viewers
        }
        Mode::Capacity { max_viewers } => max_viewers,
    };
    if viewers == 0 || viewers > MAX_VIEWERS {
        return Err(LoadError::Refused(format!(
            "viewers must be 1..={MAX_VIEWERS}, got {viewers}"
        )));
    }
    if opts.duration.is_zero() || opts.duration > MAX_DURATION {
        return Err(LoadError::Refused(format!(
            "duration must be within (0, {} s]",
            MAX_DURATION.as_secs()
        )));
    }
    Ok(())
}

/// Runs every configuration; `on_config` sees each result as soon as it is known.
pub(crate) fn run_bench(
    opts: &BenchOptions,
    mut on_config: impl FnMut(&ConfigResult),
) -> Result<Vec<ConfigResult>, LoadError> {
    // Each UDP viewer holds 3 descriptors (RTSP + 2 RTP sockets); TCP 1.
    let nofile = host::raise_nofile_limit().unwrap_or(1024);
    let any_udp = opts.transport == RtpTransport::Udp
        || opts
            .variants
            .iter()
            .any(|v| v.transport == Some(RtpTransport::Udp));
    let per_viewer = if any_udp { 3 } else { 1 };
    let fd_cap = (nofile.saturating_sub(128) / per_viewer).min(u64::from(MAX_VIEWERS)) as u32;
    let multi = if opts.progress {
        MultiProgress::new()
    } else {
        MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    };
    let mut results: Vec<ConfigResult> = opts
        .variants
        .iter()
        .map(|v| ConfigResult {
            label: v.label.clone(),
            server_args: v.server_args.clone(),
            error: None,
            runs: Vec::new(),
            capacity: None,
        })
        .collect();
    let probe = |variant: &Variant, viewers: u32| -> Result<RunResult, LoadError> {
        let viewers = viewers.min(fd_cap.max(1));
        run_once(opts, variant, viewers, &multi)
    };
    if let Mode::Fixed { viewers, rounds } = opts.mode {
        for round in 1..=rounds {
            for (variant, cfg) in opts.variants.iter().zip(&mut results) {
                if cfg.error.is_some() {
                    continue;
                }
                match probe(variant, viewers) {
                    Ok(r) => cfg.runs.push(r),
                    Err(e) => cfg.error = Some(e.to_string()),
                }
                if round == rounds {
                    on_config(cfg);
                }
            }
        }
        return Ok(results);
    }
    let Mode::Capacity { max_viewers } = opts.mode else {
        return Ok(results);
    };
    for (variant, cfg) in opts.variants.iter().zip(&mut results) {
        let bounds = SearchBounds {
            start_viewers: 50.min(max_viewers),
            max_viewers: max_viewers.min(fd_cap.max(1)),
            resolution: 0.05,
            max_probes: opts.max_probes,
        };
        let mut runs = Vec::new();
        let outcome = capacity::search(bounds, |n| {
            let r = probe(variant, n)?;
            let v = ProbeVerdict {
                viewers: n,
                passed: r.slo_passed,
                reason: r.slo_reason.clone(),
            };
            runs.push(r);
            Ok::<_, LoadError>(v)
        });
        cfg.runs = runs;
        match outcome {
            Ok(mut o) => {
                if max_viewers > fd_cap {
                    o.limit.push_str(&format!(
                        " (viewers capped at {fd_cap} by the open-file limit {nofile})"
                    ));
                }
                cfg.capacity = Some(o);
            }
            Err(e) => cfg.error = Some(e.to_string()),
        }
        on_config(cfg);
    }
    Ok(results)
}

fn run_once(
    opts: &BenchOptions,
    variant: &Variant,
    viewers: u32,
    multi: &MultiProgress,
) -> Result<RunResult, LoadError> {
    use publish::{StreamSource, CHANNEL_NAME, PUBLISH_PATH, PUBLISH_PATTERN};
    let label = variant.label.as_str();
    // Keep a spawned server alive for the whole run; it is killed on drop.
    let core = match &opts.target {
        Target::Spawn(launch) => launch.exclusive_core(),
        Target::Url { .. } => None,
    };
    let source = variant.source.zip(opts.source_media.as_ref());
    let (server, urls, pid, http) = match &opts.target {
        Target::Spawn(launch) => {
            let mut launch = launch.clone();
            launch
                .extra_args
                .extend(variant.server_args.iter().cloned());
            if let Some(exe) = &variant.exe {
                launch.exe = exe.clone();
            }
            match source {
                Some((StreamSource::Channel, m)) => launch
                    .extra_args
                    .push(format!("--live={CHANNEL_NAME}={}", m.file.display())),
                Some((StreamSource::Published(_), _)) => launch
                    .extra_args
                    .extend(["--publish".to_owned(), PUBLISH_PATTERN.to_owned()]),
                None => {}
            }
            let server = ServerProcess::spawn(&launch)?;
            let urls = match source {
                Some((StreamSource::Channel, _)) => {
                    vec![format!("rtsp://{}/{CHANNEL_NAME}", server.addr)]
                }
                Some((StreamSource::Published(_), _)) => {
                    vec![format!("rtsp://{}/{PUBLISH_PATH}", server.addr)]
                }
                None => stream_urls(opts.stream.as_deref(), server.addr, &server.streams)?,
            };
            let pid = server.pid();
            let http = server.http;
            (Some(server), urls, Some(pid), http)
        }
        Target::Url { url, pid } => (None, vec![url.clone()], *pid, None),
    };
    let publisher = match (source, &server) {
        (Some((StreamSource::Published(kind), m)), Some(server)) => {
            Some(publish::Publisher::start(kind, m, server)?)
        }
        _ => None,
    };
    let watch = ServerWatch {
        pid,
        http,
        core,
        send_times: publisher.as_ref().and_then(publish::Publisher::send_times),
    };
    let transport = variant.transport.unwrap_or(opts.transport);
    let result = drive(opts, &urls, watch, viewers, multi, label, transport);
    let publisher_outcome = publisher.map(publish::Publisher::stop);
    drop(server);
    let mut result = result?;
    if let Some(o) = publisher_outcome {
        result.publisher_packets = o.packets;
        if let Some(e) = o.error {
            return Err(LoadError::Protocol(format!("the publisher stopped: {e}")));
        }
    }
    Ok(result)
}

/// Where the harness reads the server's own figures during a run.
#[derive(Debug, Clone)]
struct ServerWatch {
    /// Its pid, for `/proc/<pid>` CPU and memory.
    pid: Option<u32>,
    /// Its HTTP API, for the data plane's figures.
    http: Option<std::net::SocketAddr>,
    /// The core it is pinned to, for busy time including softirq.
    core: Option<usize>,
    /// The bench's RTSP publisher's send times, for the server's added latency.
    send_times: Option<Arc<latency::SendTimes>>,
}

fn drive(
    opts: &BenchOptions,
    urls: &[String],
    watch: ServerWatch,
    viewers: u32,
    multi: &MultiProgress,
    label: &str,
    transport: RtpTransport,
) -> Result<RunResult, LoadError> {
    let counters = Arc::new(LiveCounters::default());
    let ServerWatch {
        pid,
        http,
        core,
        send_times,
    } = watch;
    let measure_latency = send_times.is_some();
    let (tx, rx) = crossbeam_channel::unbounded();
    // Hard stop for the receiver whatever happens here.
    let start_budget = Duration::from_secs(30)
        + opts.ramp_per_sec.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(f64::from(viewers) / r)
        });
    let hard_deadline = Instant::now() + start_budget + opts.duration + Duration::from_secs(10);
    let recv = spawn_receiver(
        rx,
        counters.clone(),
        hard_deadline,
        receiver::KEEPALIVE_EVERY,
        opts.receive.busy_poll,
        send_times,
    )
    .map_err(|e| LoadError::io("starting the receiver thread", e))?;
    let cpu_before = pid.map(sample_process).transpose()?;
    let core_before = core.and_then(|c| host::sample_core_busy_ns(c).ok());
    let t0 = Instant::now();

    let bar = multi.add(ProgressBar::new(u64::from(viewers)));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} starting {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::io("starting the tokio runtime", e))?;
    let receive_gro = opts.receive.gro;
    let ramp = opts.ramp_per_sec;
    let (playing, failed, first_error) = rt.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT));
        let mut set = tokio::task::JoinSet::new();
        let start = tokio::time::Instant::now();
        let deadline = start + start_budget;
        for i in 0..viewers as usize {
            if let Some(rate) = ramp {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            // Sessions spread over the streams round-robin.
            let url = urls[i % urls.len()].clone();
            let tx = tx.clone();
            set.spawn(async move {
                let r = tokio::time::timeout_at(
                    deadline,
                    // Viewer 0 reads the server's sender reports: the latency probe's clock.
                    open_session(i, &url, transport, receive_gro, measure_latency && i == 0),
                )
                .await;
                drop(permit);
                match r {
                    Ok(Ok(s)) => {
                        let _ = tx.send(ReceiverMsg::Add(Box::new(s)));
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("handshake timed out".to_owned()),
                }
            });
        }
        let (mut ok, mut failed, mut first_error) = (0u32, 0u32, None);
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
            bar.set_position(u64::from(ok + failed));
            if failed > 0 {
                bar.set_message(format!("{failed} failed"));
            }
        }
        (ok, failed, first_error)
    });
    let start_secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    multi.remove(&bar);

    let play = multi.add(ProgressBar::new(opts.duration.as_millis() as u64));
    play.set_style(
        ProgressStyle::with_template("{prefix:>14} playing  {bar:30} {elapsed}/{msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    play.set_prefix(format!("{label} {viewers}v"));
    // Latency counts from here, over the steady phase (packets of frames sent before a
    // viewer's PLAY, its GOP-cache burst, are told apart by the probe).
    let _ = tx.send(ReceiverMsg::Steady(shardcast::net::realtime_ns()));
    let steady_start = Instant::now();
    let bytes_at_steady_start = counters.bytes.load(Ordering::Relaxed);
    let steady_end = steady_start + opts.duration;
    while Instant::now() < steady_end {
        std::thread::sleep(Duration::from_millis(200).min(steady_end - Instant::now()));
        play.set_position(steady_start.elapsed().as_millis() as u64);
        let p = counters.packets.load(Ordering::Relaxed);
        let b = counters.bytes.load(Ordering::Relaxed);
        play.set_message(format!(
            "{}s  {p} pkts  {:.1} Mbit/s",
            opts.duration.as_secs(),
            b as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e6
        ));
    }
    let steady_secs = steady_start.elapsed().as_secs_f64();
    let cpu_after = pid.map(sample_process).transpose()?;
    let core_after = core.and_then(|c| host::sample_core_busy_ns(c).ok());
    // Read while every session still plays (a failed read only loses these figures).
    let data_plane = http.and_then(|h| server::data_plane_figures(h).ok());
    let steady_bytes = counters
        .bytes
        .load(Ordering::Relaxed)
        .saturating_sub(bytes_at_steady_start);
    let stop_ns = shardcast::net::realtime_ns();
    let _ = tx.send(ReceiverMsg::Stop);
    drop(tx);
    play.finish_and_clear();
    multi.remove(&play);
    let out = recv
        .join()
        .map_err(|_| LoadError::Protocol("the receiver thread panicked".into()))?;

    let mut first_packet = new_histogram();
    let mut first_keyframe = new_histogram();
    let (mut packets, mut bytes, mut lost, mut expected, mut reordered) = (0, 0, 0, 0, 0);
    let mut sessions = Vec::with_capacity(out.sessions.len());
    let mut stalled_sessions = 0u32;
    for s in &out.sessions {
        let mut first: Option<u64> = None;
        let mut tracks = Vec::new();
        for t in &s.tracks {
            packets += t.seq.received();
            bytes += t.bytes;
            lost += t.seq.lost();
            expected += t.seq.expected();
            reordered += t.seq.reordered();
            let rel = |ns: Option<u64>| ns.map(|n| n.saturating_sub(s.play_sent_ns));
            if let Some(n) = rel(t.first_packet_ns) {
                first = Some(first.map_or(n, |f| f.min(n)));
            }
            if let Some(n) = rel(t.first_keyframe_ns) {
                first_keyframe.saturating_record((n / 1000).max(1));
            }
            tracks.push(TrackSummary {
                kind: t.kind,
                packets: t.seq.received(),
                bytes: t.bytes,
                lost: t.seq.lost(),
                reordered: t.seq.reordered(),
                jitter_ms: t.jitter.jitter_ms(),
                first_packet_ms: rel(t.first_packet_ns).map(|n| n as f64 / 1e6),
                first_keyframe_ms: rel(t.first_keyframe_ns).map(|n| n as f64 / 1e6),
            });
        }
        if let Some(n) = first {
            first_packet.saturating_record((n / 1000).max(1));
        }
        if session_stalled(s, stop_ns) {
            stalled_sessions += 1;
        }
        sessions.push(tracks);
        let _ = s.index;
    }
    let loss_pct = if expected > 0 {
        lost as f64 * 100.0 / expected as f64
    } else {
        0.0
    };
    let server = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => {
            let cpu = b.cpu_ns.saturating_sub(a.cpu_ns);
            Some(ServerUsage {
                cpu_secs: cpu as f64 / 1e9,
                cpu_ns_per_packet: if packets > 0 {
                    cpu as f64 / packets as f64
                } else {
                    0.0
                },
                core_ns_per_packet: match (core_before, core_after) {
                    (Some(a), Some(b)) if packets > 0 => {
                        Some(b.saturating_sub(a) as f64 / packets as f64)
                    }
                    _ => None,
                },
                end: b,
            })
        }
        _ => None,
    };
    let jitter_audio = Percentiles::of(&out.jitter_audio_us);
    let (slo_passed, slo_reason) = judge(
        &opts.slo,
        &RunFigures {
            viewers,
            playing,
            packets,
            loss_pct,
            stalled_sessions,
            jitter_audio_p99_ms: jitter_audio.p99_ms,
            lateness_p99_ms: data_plane.map(|d| d.lateness_p99_ms),
        },
    );
    Ok(RunResult {
        viewers,
        playing,
        failed_handshakes: failed,
        first_error,
        transport,
        receive: opts.receive,
        start_secs,
        steady_secs,
        packets,
        bytes,
        lost,
        loss_pct,
        reordered,
        stalled_sessions,
        mbit_per_viewer: if playing > 0 && steady_secs > 0.0 {
            steady_bytes as f64 * 8.0 / steady_secs / 1e6 / f64::from(playing)
        } else {
            0.0
        },
        jitter_audio,
        jitter_video: Percentiles::of(&out.jitter_video_us),
        first_packet: Percentiles::of(&first_packet),
        first_keyframe: Percentiles::of(&first_keyframe),
        packets_per_recv_call: if out.recv_calls > 0 {
            packets as f64 / out.recv_calls as f64
        } else {
            0.0
        },
        loops: out.loops,
        teardowns_answered: out.teardowns_answered,
        rtsp_errors: out.rtsp_errors,
        server,
        data_plane,
        slo_passed,
        slo_reason,
        sessions,
        hls: None,
        latency: out.latency,
        publisher_packets: None,
    })
}

/// The figures of one run that the SLO judges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunFigures {
    /// Sessions the run opened.
    pub(crate) viewers: u32,
    /// Sessions that reached PLAY.
    pub(crate) playing: u32,
    /// RTP packets received.
    pub(crate) packets: u64,
    /// Loss, percent of expected packets.
    pub(crate) loss_pct: f64,
    /// Sessions with a track quiet for [`STALL_LIMIT`] at the end.
    pub(crate) stalled_sessions: u32,
    /// Audio jitter p99 at the harness, ms.
    pub(crate) jitter_audio_p99_ms: f64,
    /// The server's pacing lateness p99, ms, when known.
    pub(crate) lateness_p99_ms: Option<f64>,
}

/// Applies the SLO to a run's figures; returns (passed, reason in words). Pacing is judged
/// by the server's own lateness p99 when known, else by the audio jitter the harness saw
/// (which also carries the harness's own scheduling).
pub(crate) fn judge(slo: &Slo, run: &RunFigures) -> (bool, String) {
    let RunFigures {
        viewers,
        playing,
        packets,
        loss_pct,
        stalled_sessions,
        jitter_audio_p99_ms,
        lateness_p99_ms,
    } = *run;
    if playing < viewers {
        return (
            false,
            format!(
                "{} of {viewers} sessions failed to start",
                viewers - playing
            ),
        );
    }
    if packets == 0 {
        return (false, "no packets received".into());
    }
    if stalled_sessions > 0 {
        return (
            false,
            format!(
                "{stalled_sessions} sessions received nothing on a track for the last {} s",
                STALL_LIMIT.as_secs()
            ),
        );
    }
    if loss_pct > slo.max_loss_pct {
        return (
            false,
            format!("loss {loss_pct:.3}% > {}%", slo.max_loss_pct),
        );
    }
    match lateness_p99_ms {
        Some(late) if late > slo.max_lateness_p99_ms => (
            false,
            format!(
                "pacing lateness p99 {late:.2} ms > {} ms",
                slo.max_lateness_p99_ms
            ),
        ),
        Some(late) => (
            true,
            format!("loss {loss_pct:.3}%, pacing lateness p99 {late:.2} ms"),
        ),
        None if jitter_audio_p99_ms > slo.max_jitter_p99_ms => (
            false,
            format!(
                "audio jitter p99 {jitter_audio_p99_ms:.2} ms > {} ms",
                slo.max_jitter_p99_ms
            ),
        ),
        None => (
            true,
            format!("loss {loss_pct:.3}%, audio jitter p99 {jitter_audio_p99_ms:.2} ms"),
        ),
    }
}

/// How long a playing track may go without a packet before the run counts its session as
/// stalled. A clip's loop (BYE, then the harness's new PLAY) pauses a track for ~0.3 s.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(2);

/// Whether a session had a track with no packet in the [`STALL_LIMIT`] before `stop_ns`
/// (counting from its PLAY, so a track that never received anything counts too).
fn session_stalled(s: &receiver::FinishedSession, stop_ns: u64) -> bool {
    let limit = STALL_LIMIT.as_nanos() as u64;
    s.tracks.iter().any(|t| {
        let heard = t.last_packet_ns.unwrap_or(0).max(s.play_sent_ns);
        stop_ns.saturating_sub(heard) > limit
    })
}

/// Where the harness runs relative to the server.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Placement {
    /// The server's first core (a single-core server's, and nginx's, whole placement).
    pub(crate) server_core: Option<usize>,
    /// Cores an RTSP/WebRTC server with `--shards` shards runs on (each shard pins itself to
    /// one of them): as many as it has shards, and every core when that leaves none to the
    /// harness alone; empty when not pinned.
    pub(crate) server_cores: Vec<usize>,
    /// Core of the harness, if pinned.
    pub(crate) harness_core: Option<usize>,
    /// How, in words.
    pub(crate) how: String,
}

/// Pins the harness (the calling thread, before it spawns any) to the machine's last core
/// when there are ≥ 2 cores, and gives the server the first `shards` of the others (all of
/// them, the harness's included, when there are too few), via sched_setaffinity.
pub(crate) fn plan_placement(shards: usize) -> Placement {
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    if let [first, .., last] = cores.as_slice() {
        if core_affinity::set_for_current(core_affinity::CoreId { id: *last }) {
            let server_cores = server_cores_for(&cores, shards);
            let shared = server_cores.contains(last);
            return Placement {
                server_core: Some(*first),
                how: format!(
                    "server pinned to core(s) {server_cores:?}, harness to core {last}{} (sched_setaffinity)",
                    if shared {
                        " which it shares with the server's last shard"
                    } else {
                        ""
                    }
                ),
                server_cores,
                harness_core: Some(*last),
            };
        }
    }
    Placement {
        server_core: None,
        server_cores: Vec::new(),
        harness_core: None,
        how: format!("not pinned ({} core(s) visible)", cores.len()),
    }
}

/// The server's cores for `shards` shards on a machine with `cores` (the last one the
/// harness's): one per shard while the harness keeps a core to itself, else all of them.
fn server_cores_for(cores: &[usize], shards: usize) -> Vec<usize> {
    let own = cores.len().saturating_sub(1);
    if shards.max(1) <= own {
        cores[..shards.max(1)].to_vec()
    } else {
        cores.to_vec()
    }
}

/// Path helper for the report files.
pub(crate) fn report_paths(out_dir: &std::path::Path) -> (PathBuf, PathBuf) {
    (out_dir.join("bench.json"), out_dir.join("bench.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn shards_get_a_core_each_and_share_the_harness_core_only_when_short() {
        assert_eq!(server_cores_for(&[0, 1], 1), vec![0]);
        assert_eq!(server_cores_for(&[0, 1], 2), vec![0, 1]);
        assert_eq!(server_cores_for(&[0, 1, 2, 3], 2), vec![0, 1]);
        assert_eq!(server_cores_for(&[0, 1, 2, 3], 3), vec![0, 1, 2]);
        assert_eq!(server_cores_for(&[0, 1, 2, 3], 8), vec![0, 1, 2, 3]);
        assert_eq!(server_cores_for(&[0, 1], 0), vec![0]);
    }

    #[test]
    fn builds_are_the_outermost_dimension() {
        let v = with_builds(
            variants(&[("io", &strings(&["uring", "sendto"]))]),
            &[("old".into(), "/a".into()), ("new".into(), "/b".into())],
        );
        let labels: Vec<&str> = v.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "exe=old io=uring",
                "exe=old io=sendto",
                "exe=new io=uring",
                "exe=new io=sendto"
            ]
        );
        assert_eq!(v[3].exe.as_deref(), Some(std::path::Path::new("/b")));
        let plain = with_builds(variants(&[]), &[("old".into(), "/a".into())]);
        assert_eq!(plain[0].label, "exe=old");
    }

    #[test]
    fn transports_are_the_innermost_dimension_and_one_transport_adds_no_rows() {
        let v = with_transports(
            with_builds(
                variants(&[("io", &strings(&["uring"]))]),
                &[("old".into(), "/a".into())],
            ),
            &[RtpTransport::Udp, RtpTransport::Tcp],
        );
        let labels: Vec<&str> = v.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "exe=old io=uring transport=udp",
                "exe=old io=uring transport=tcp"
            ]
        );
        assert_eq!(v[1].transport, Some(RtpTransport::Tcp));
        assert_eq!(v[1].server_args, strings(&["--io", "uring"]));
        let plain = with_transports(variants(&[]), &[RtpTransport::Tcp]);
        assert_eq!(
            (plain[0].label.as_str(), plain[0].transport),
            ("default", None)
        );
        let both = with_transports(variants(&[]), &[RtpTransport::Udp, RtpTransport::Tcp]);
        assert_eq!(both[0].label, "transport=udp");
    }

    #[test]
    fn sources_are_the_innermost_dimension_and_one_source_keeps_the_labels() {
        use publish::{PublishKind, StreamSource};
        let both = [
            StreamSource::Published(PublishKind::Rtsp),
            StreamSource::Channel,
        ];
        let v = with_sources(variants(&[("io", &strings(&["uring", "sendto"]))]), &both);
        let labels: Vec<&str> = v.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "io=uring source=published-rtsp",
                "io=uring source=channel",
                "io=sendto source=published-rtsp",
                "io=sendto source=channel"
            ]
        );
        assert_eq!(v[1].source, Some(StreamSource::Channel));
        assert_eq!(v[1].server_args, strings(&["--io", "uring"]));
        let plain = with_sources(variants(&[]), &both);
        assert_eq!(plain[0].label, "source=published-rtsp");
        let one = with_sources(variants(&[]), &[StreamSource::Published(PublishKind::Rtmp)]);
        assert_eq!(
            (one[0].label.as_str(), one[0].source),
            ("default", Some(StreamSource::Published(PublishKind::Rtmp)))
        );
        assert_eq!(with_sources(variants(&[]), &[])[0].source, None);
    }

    #[test]
    fn variants_are_the_product_of_the_flags_in_order() {
        let v = variants(&[
            ("io", &strings(&["uring", "sendto"])),
            ("gso", &strings(&["on", "off"])),
            ("stats", &[]),
        ]);
        let labels: Vec<&str> = v.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "io=uring gso=on",
                "io=uring gso=off",
                "io=sendto gso=on",
                "io=sendto gso=off"
            ]
        );
        assert_eq!(
            v[1].server_args,
            strings(&["--io", "uring", "--gso", "off"])
        );
        let none = variants(&[("io", &[]), ("gso", &[])]);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].label, "default");
        assert!(none[0].server_args.is_empty());
    }

    #[test]
    fn streams_spread_over_names_lists_or_all() {
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let announced = strings(&["rtsp://127.0.0.1:9/a", "rtsp://127.0.0.1:9/b"]);
        assert_eq!(stream_urls(None, addr, &announced).unwrap(), announced[..1]);
        assert_eq!(
            stream_urls(Some("all"), addr, &announced).unwrap(),
            announced
        );
        assert_eq!(
            stream_urls(Some("x, y"), addr, &announced).unwrap(),
            strings(&["rtsp://127.0.0.1:9/x", "rtsp://127.0.0.1:9/y"])
        );
        assert!(stream_urls(None, addr, &[]).is_err());
    }

    /// A track that stopped (no gap, so no loss) or never started fails the run; one that
    /// paused less than the limit (a clip's loop) does not.
    #[test]
    fn a_session_whose_track_went_quiet_is_stalled_and_fails_the_slo() {
        let second = 1_000_000_000u64;
        let stop = 100 * second;
        let session = |last: [Option<u64>; 2]| receiver::FinishedSession {
            index: 0,
            play_sent_ns: 50 * second,
            tracks: last
                .iter()
                .map(|&l| {
                    let mut t = stats::TrackStats::new(MediaKind::Video, 96, 90_000);
                    t.last_packet_ns = l;
                    t
                })
                .collect(),
        };
        let recent = Some(stop - second / 2);
        assert!(!session_stalled(&session([recent, recent]), stop));
        assert!(session_stalled(
            &session([recent, Some(stop - 3 * second)]),
            stop
        ));
        assert!(session_stalled(&session([recent, None]), stop));
        let just_played = receiver::FinishedSession {
            play_sent_ns: stop - second,
            ..session([None, None])
        };
        assert!(!session_stalled(&just_played, stop), "counts from PLAY");

        let slo = Slo {
            max_loss_pct: 0.1,
            max_jitter_p99_ms: 30.0,
            max_lateness_p99_ms: 5.0,
        };
        let run = RunFigures {
            viewers: 10,
            playing: 10,
            packets: 1000,
            loss_pct: 0.0,
            stalled_sessions: 3,
            jitter_audio_p99_ms: 1.0,
            lateness_p99_ms: Some(1.0),
        };
        let (passed, why) = judge(&slo, &run);
        assert!(!passed);
        assert!(why.starts_with("3 sessions received nothing"), "{why}");
        let fine = RunFigures {
            stalled_sessions: 0,
            ..run
        };
        assert!(judge(&slo, &fine).0);
    }
}
