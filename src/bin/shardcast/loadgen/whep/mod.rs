//! `shardcast bench --protocol whep`: real WebRTC viewers (str0m in RTP mode: ICE, DTLS,
//! SRTP decrypt, RTCP receiver reports) of one stream of a started server, and in the same
//! run plain RTP/UDP viewers (the RTSP harness) of the same stream, so the server's CPU per
//! delivered packet over WebRTC can be set against RTP's (issue 17's ≤ 1.6× target).
//!
//! Each round starts a fresh server for the RTP phase (the existing receivers, with one
//! datagram per packet and epoll waits as these viewers have) and another for the WHEP
//! phase; `--rounds N` interleaves them. The harness's own CPU and the machine's UDP
//! receive-buffer drops are reported beside the figures: on loopback a harness that cannot
//! keep up shows as loss, and the report then blames the client, not the server.

pub(crate) mod crypto;
pub(crate) mod engine;
pub(crate) mod report;
pub(crate) mod signal;
pub(crate) mod viewer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::server::{sample_process, ServerLaunch, ServerProcess};
use super::stats::{new_histogram, MediaKind, Percentiles};
use super::{host, LoadError, Placement, ServerUsage};
use engine::EngineConfig;

/// Harness CPU share above which the client side is taken to be the bottleneck.
const CLIENT_BOUND_CPU_PCT: f64 = 90.0;
/// Issue 17's target: WebRTC's server CPU per delivered packet at most this × RTP's.
pub(crate) const TARGET_RATIO: f64 = 1.6;

/// What `--protocol whep` runs.
#[derive(Debug, Clone)]
pub(crate) struct WhepOptions {
    /// How each server is started (a fresh one per phase).
    pub(crate) launch: ServerLaunch,
    /// The media file a live channel loops (`--live`), also the RTP phase's channel.
    pub(crate) media_file: PathBuf,
    /// Play a live channel of the media instead of the VOD file.
    pub(crate) live: bool,
    /// The stream to play (default: the first the server announces; with `live`, the channel).
    pub(crate) stream: Option<String>,
    /// Viewers per phase.
    pub(crate) viewers: u32,
    /// Steady phase.
    pub(crate) duration: Duration,
    /// Session starts per second.
    pub(crate) ramp_per_sec: Option<f64>,
    /// Rounds of (RTP phase, WHEP phase).
    pub(crate) rounds: u32,
    /// Run the RTP/UDP phase.
    pub(crate) compare_rtp: bool,
    /// SLO: largest loss, %.
    pub(crate) max_loss_pct: f64,
}

/// The WHEP phase's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WhepFigures {
    /// Viewers started.
    pub(crate) viewers: u32,
    /// Offers answered `201`.
    pub(crate) answered: u32,
    /// ICE and DTLS done (str0m's `Connected`).
    pub(crate) connected: u32,
    /// Viewers that received RTP.
    pub(crate) playing: u32,
    /// … video RTP, audio RTP.
    pub(crate) with_video: u32,
    /// Viewers that received audio RTP.
    pub(crate) with_audio: u32,
    /// POSTs answered `503` (Opus rendition being made, admission) and retried.
    pub(crate) retried_503: u32,
    /// The first viewer error, if any.
    pub(crate) first_error: Option<String>,
    /// First POST → steady phase, s.
    pub(crate) start_secs: f64,
    /// Steady phase, s.
    pub(crate) steady_secs: f64,
    /// RTP packets received (decrypted), whole run.
    pub(crate) packets: u64,
    /// Video and audio packets among them.
    pub(crate) packets_video: u64,
    /// Audio packets.
    pub(crate) packets_audio: u64,
    /// RTP bytes received.
    pub(crate) bytes: u64,
    /// Packets lost by sequence number.
    pub(crate) lost: u64,
    /// `lost` / expected, %.
    pub(crate) loss_pct: f64,
    /// Steady-phase RTP bitrate per playing viewer, Mbit/s.
    pub(crate) mbit_per_viewer: f64,
    /// First POST → first RTP packet.
    pub(crate) first_packet: Percentiles,
    /// First POST → ICE + DTLS connected.
    pub(crate) connect: Percentiles,
    /// Per-viewer video jitter (RFC 3550), ms.
    pub(crate) jitter_video: Percentiles,
    /// Per-viewer audio jitter, ms.
    pub(crate) jitter_audio: Percentiles,
    /// The server's CPU over the run (first POST → steady end) per RTP packet received: the
    /// same span the RTP phase's figure covers, so session setup (DTLS handshakes here, RTSP
    /// there) is in both.
    pub(crate) server: Option<ServerUsage>,
    /// The server's CPU per RTP packet over the steady phase alone (no handshakes), ns.
    pub(crate) steady_cpu_ns_per_packet: Option<f64>,
    /// The load generator's own load.
    pub(crate) harness: HarnessFigures,
    /// `DELETE`s answered 200, and not.
    pub(crate) deleted: u32,
    /// `DELETE`s that failed.
    pub(crate) delete_failed: u32,
    /// Datagrams the viewers read (STUN, DTLS, SRTP, SRTCP).
    pub(crate) datagrams: u64,
    /// Loop iterations.
    pub(crate) loops: u64,
    /// The server's WebRTC ports from its banner.
    pub(crate) webrtc_ports: Vec<String>,
}

/// Whether the load generator kept up.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HarnessFigures {
    /// The viewers' thread's CPU over the run, % of one core.
    pub(crate) cpu_pct: f64,
    /// The machine's UDP `RcvbufErrors` during the phase (datagrams dropped on a full socket).
    pub(crate) udp_rcvbuf_errors: Option<u64>,
    /// The machine's UDP `InErrors` during the phase.
    pub(crate) udp_in_errors: Option<u64>,
    /// The client side was the bottleneck (CPU ≥ 90 % or receive-buffer drops).
    pub(crate) client_bound: bool,
}

/// The RTP/UDP phase, from the RTSP harness's run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RtpFigures {
    /// Viewers started.
    pub(crate) viewers: u32,
    /// Viewers playing.
    pub(crate) playing: u32,
    /// RTP packets received.
    pub(crate) packets: u64,
    /// Loss, %.
    pub(crate) loss_pct: f64,
    /// Steady-phase bitrate per viewer.
    pub(crate) mbit_per_viewer: f64,
    /// PLAY → first packet.
    pub(crate) first_packet: Percentiles,
    /// Server CPU per packet, ns.
    pub(crate) cpu_ns_per_packet: Option<f64>,
    /// The server core's busy time per packet (softirq included), ns.
    pub(crate) core_ns_per_packet: Option<f64>,
    /// Its first session error, if any.
    pub(crate) first_error: Option<String>,
}

/// One round: RTP phase, then WHEP phase, and their ratio.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WhepRound {
    /// 1-based.
    pub(crate) round: u32,
    /// RTP/UDP phase (none when not run or it failed).
    pub(crate) rtp: Option<RtpFigures>,
    /// Why the RTP phase has no figures.
    pub(crate) rtp_error: Option<String>,
    /// WHEP phase.
    pub(crate) whep: Option<WhepFigures>,
    /// Why the WHEP phase has no figures.
    pub(crate) whep_error: Option<String>,
    /// WHEP server CPU per packet / RTP's.
    pub(crate) cpu_ratio: Option<f64>,
    /// The same from the server core's busy time.
    pub(crate) core_ratio: Option<f64>,
}

/// `bench.json` of a `--protocol whep` run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WhepReport {
    /// Unix time of the start.
    pub(crate) started_unix_secs: u64,
    /// The command line.
    pub(crate) command: String,
    /// Kernel and cores.
    pub(crate) machine: String,
    /// `model name` of /proc/cpuinfo.
    pub(crate) cpu_model: String,
    /// Server and harness cores.
    pub(crate) placement: Placement,
    /// Server shards.
    pub(crate) shards: usize,
    /// The stream played.
    pub(crate) stream: String,
    /// A live channel rather than VOD.
    pub(crate) live: bool,
    /// Viewers per phase.
    pub(crate) viewers: u32,
    /// Steady phase, s.
    pub(crate) duration_secs: f64,
    /// How the RTP phase's viewers receive.
    pub(crate) rtp_receive: String,
    /// The rounds.
    pub(crate) rounds: Vec<WhepRound>,
    /// Median WHEP/RTP CPU-per-packet ratio over the rounds that have one.
    pub(crate) median_cpu_ratio: Option<f64>,
    /// One paragraph.
    pub(crate) conclusion: String,
}

/// Runs every round; `on_round` sees each as it completes.
pub(crate) fn run_whep_bench(
    opts: &WhepOptions,
    mut on_round: impl FnMut(&WhepRound),
) -> Result<Vec<WhepRound>, LoadError> {
    let nofile = host::raise_nofile_limit().unwrap_or(1024);
    // One socket per WHEP viewer (plus a transient TCP one), three per RTP viewer.
    if u64::from(opts.viewers) * 3 + 128 > nofile {
        return Err(LoadError::Refused(format!(
            "{} viewers need {} descriptors; the limit is {nofile}",
            opts.viewers,
            u64::from(opts.viewers) * 3 + 128
        )));
    }
    let source_media = if opts.live {
        let media = shardcast::media::MediaFile::open(&opts.media_file, "bench")
            .map_err(|e| LoadError::Protocol(format!("indexing the media: {e}")))?;
        Some(super::SourceMedia {
            file: opts.media_file.clone(),
            media: Arc::new(media),
        })
    } else {
        None
    };
    let mut rounds = Vec::new();
    for round in 1..=opts.rounds.max(1) {
        let (rtp, rtp_error) = if opts.compare_rtp {
            match rtp_phase(opts, source_media.clone()) {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, None)
        };
        let (whep, whep_error) = match whep_phase(opts) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let ratio = |w: Option<f64>, r: Option<f64>| match (w, r) {
            (Some(w), Some(r)) if r > 0.0 && w > 0.0 => Some(w / r),
            _ => None,
        };
        let ws = whep.as_ref().and_then(|w| w.server);
        let r = WhepRound {
            round,
            cpu_ratio: ratio(
                ws.map(|s| s.cpu_ns_per_packet),
                rtp.as_ref().and_then(|r| r.cpu_ns_per_packet),
            ),
            core_ratio: ratio(
                ws.and_then(|s| s.core_ns_per_packet),
                rtp.as_ref().and_then(|r| r.core_ns_per_packet),
            ),
            rtp,
            rtp_error,
            whep,
            whep_error,
        };
        on_round(&r);
        rounds.push(r);
    }
    Ok(rounds)
}

/// The RTP/UDP phase: the RTSP harness, one row, receiving as the WebRTC viewers do (one
/// datagram per packet, epoll waits), so the server is charged alike for the receive side.
fn rtp_phase(
    opts: &WhepOptions,
    source_media: Option<super::SourceMedia>,
) -> Result<RtpFigures, LoadError> {
    let mut variants = super::variants(&[]);
    if opts.live {
        for v in &mut variants {
            v.source = Some(super::publish::StreamSource::Channel);
        }
    }
    let bench = super::BenchOptions {
        target: super::Target::Spawn(opts.launch.clone()),
        stream: if opts.live { None } else { opts.stream.clone() },
        mode: super::Mode::Fixed {
            viewers: opts.viewers,
            rounds: 1,
        },
        duration: opts.duration,
        ramp_per_sec: opts.ramp_per_sec,
        transport: super::session::RtpTransport::Udp,
        receive: rtp_receive(),
        variants,
        slo: super::Slo {
            max_loss_pct: opts.max_loss_pct,
            max_jitter_p99_ms: 5.0,
            max_lateness_p99_ms: 5.0,
        },
        max_probes: 1,
        progress: false,
        source_media,
    };
    let configs = super::run_bench(&bench, |_| {})?;
    let cfg = configs
        .first()
        .ok_or_else(|| LoadError::Protocol("the RTP phase ran nothing".into()))?;
    if let Some(e) = &cfg.error {
        return Err(LoadError::Protocol(e.clone()));
    }
    let r = cfg
        .runs
        .last()
        .ok_or_else(|| LoadError::Protocol("the RTP phase has no run".into()))?;
    Ok(RtpFigures {
        viewers: r.viewers,
        playing: r.playing,
        packets: r.packets,
        loss_pct: r.loss_pct,
        mbit_per_viewer: r.mbit_per_viewer,
        first_packet: r.first_packet,
        cpu_ns_per_packet: r.server.map(|s| s.cpu_ns_per_packet),
        core_ns_per_packet: r.server.and_then(|s| s.core_ns_per_packet),
        first_error: r.first_error.clone(),
    })
}

/// How the RTP phase's viewers receive (see [`rtp_phase`]).
pub(crate) fn rtp_receive() -> super::ReceiveTuning {
    super::ReceiveTuning {
        gro: false,
        busy_poll: false,
    }
}

/// The stream name in an announced `rtsp://host/NAME` URL.
fn stream_name(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("rtsp://")?;
    let (_, name) = rest.split_once('/')?;
    (!name.is_empty()).then_some(name)
}

/// The WHEP phase on a fresh server.
fn whep_phase(opts: &WhepOptions) -> Result<WhepFigures, LoadError> {
    let mut launch = opts.launch.clone();
    if opts.live {
        launch.extra_args.push(format!(
            "--live={}={}",
            super::publish::CHANNEL_NAME,
            opts.media_file.display()
        ));
    }
    let server = ServerProcess::spawn(&launch)?;
    if server.webrtc.is_empty() {
        return Err(LoadError::Protocol(
            "the server printed no `webrtc listening on udp://` line (WebRTC off or a build without it)".into(),
        ));
    }
    let http = server
        .http
        .ok_or_else(|| LoadError::Protocol("the server has no HTTP listener for WHEP".into()))?;
    let name = match (&opts.stream, opts.live) {
        (_, true) => super::publish::CHANNEL_NAME.to_owned(),
        (Some(s), false) => s.clone(),
        (None, false) => server
            .streams
            .first()
            .and_then(|u| stream_name(u))
            .ok_or_else(|| LoadError::Protocol("the server announced no stream".into()))?
            .to_owned(),
    };
    if opts.live {
        wait_for_stream(http, &name)?;
    }
    let cfg = EngineConfig {
        http,
        path: format!("/whep/{name}"),
        viewers: opts.viewers,
        ramp_per_sec: opts.ramp_per_sec,
        duration: opts.duration,
        start_budget: Duration::from_secs(15)
            + opts.ramp_per_sec.map_or(Duration::ZERO, |r| {
                Duration::from_secs_f64(f64::from(opts.viewers) / r)
            })
            + Duration::from_millis(u64::from(opts.viewers) * 5),
    };
    let pid = server.pid();
    let core = opts.launch.exclusive_core();
    let mut samples = Vec::with_capacity(2);
    let snmp = || {
        std::fs::read_to_string("/proc/net/snmp")
            .ok()
            .and_then(|s| engine::udp_drops(&s))
    };
    // Sampled before the first POST, at the steady phase's start and at its end.
    let out = engine::run(&cfg, |_phase| {
        samples.push((
            sample_process(pid).ok(),
            core.and_then(|c| host::sample_core_busy_ns(c).ok()),
            snmp(),
        ));
    })
    .map_err(|e| LoadError::io("running the WHEP viewers", e))?;
    let webrtc_ports = server.webrtc.iter().map(ToString::to_string).collect();
    drop(server);
    Ok(summarize(&out, &samples, webrtc_ports))
}

type Sample = (
    Option<super::server::ProcSample>,
    Option<u64>,
    Option<(u64, u64)>,
);

/// The WHEP phase's figures from the engine's outcome and the two samples.
fn summarize(
    out: &engine::EngineOutcome,
    samples: &[Sample],
    webrtc_ports: Vec<String>,
) -> WhepFigures {
    let mut first_packet = new_histogram();
    let mut connect = new_histogram();
    let mut jitter_video = new_histogram();
    let mut jitter_audio = new_histogram();
    let (mut packets, mut pv, mut pa, mut bytes, mut lost, mut expected) = (0, 0, 0, 0, 0, 0);
    let (mut answered, mut connected, mut playing, mut with_video, mut with_audio) =
        (0, 0, 0, 0, 0);
    let mut retried_503 = 0;
    let mut first_error = None;
    for v in &out.viewers {
        retried_503 += v.posts.saturating_sub(1);
        answered += u32::from(v.answered.is_some());
        let since_post = |t: Option<std::time::Instant>| {
            t.zip(v.first_post)
                .map(|(t, p)| (t.saturating_duration_since(p).as_micros() as u64).max(1))
        };
        if let Some(us) = since_post(v.connected) {
            connected += 1;
            connect.saturating_record(us);
        }
        if let Some(us) = since_post(v.first_packet) {
            playing += 1;
            first_packet.saturating_record(us);
        }
        with_video += u32::from(v.tracks.iter().any(|t| t.kind == MediaKind::Video));
        with_audio += u32::from(v.tracks.iter().any(|t| t.kind == MediaKind::Audio));
        for t in &v.tracks {
            packets += t.packets;
            bytes += t.bytes;
            lost += t.lost();
            expected += t.expected();
            let j = ((t.jitter.jitter_ms() * 1000.0) as u64).max(1);
            match t.kind {
                MediaKind::Audio => {
                    pa += t.packets;
                    jitter_audio.saturating_record(j);
                }
                _ => {
                    pv += t.packets;
                    jitter_video.saturating_record(j);
                }
            }
        }
        if first_error.is_none() {
            first_error.clone_from(&v.error);
        }
    }
    let (before, steady, after) = (samples.first(), samples.get(1), samples.get(2));
    let steady_cpu_ns_per_packet = match (steady.and_then(|s| s.0), after.and_then(|s| s.0)) {
        (Some(a), Some(b)) if out.steady_packets > 0 => {
            Some(b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / out.steady_packets as f64)
        }
        _ => None,
    };
    let server = match (before.and_then(|s| s.0), after.and_then(|s| s.0)) {
        (Some(a), Some(b)) => {
            let cpu = b.cpu_ns.saturating_sub(a.cpu_ns);
            let per = |x: u64| {
                if packets > 0 {
                    x as f64 / packets as f64
                } else {
                    0.0
                }
            };
            Some(ServerUsage {
                cpu_secs: cpu as f64 / 1e9,
                cpu_ns_per_packet: per(cpu),
                core_ns_per_packet: match (before.and_then(|s| s.1), after.and_then(|s| s.1)) {
                    (Some(x), Some(y)) if packets > 0 => Some(per(y.saturating_sub(x))),
                    _ => None,
                },
                end: b,
            })
        }
        _ => None,
    };
    let drops = match (before.and_then(|s| s.2), after.and_then(|s| s.2)) {
        (Some(a), Some(b)) => Some((b.0.saturating_sub(a.0), b.1.saturating_sub(a.1))),
        _ => None,
    };
    let cpu_pct = if out.harness_wall_ns > 0 {
        out.harness_cpu_ns as f64 * 100.0 / out.harness_wall_ns as f64
    } else {
        0.0
    };
    let viewers = out.viewers.len() as u32;
    WhepFigures {
        viewers,
        answered,
        connected,
        playing,
        with_video,
        with_audio,
        retried_503,
        first_error,
        start_secs: out.start_secs,
        steady_secs: out.steady_secs,
        packets,
        packets_video: pv,
        packets_audio: pa,
        bytes,
        lost,
        loss_pct: if expected > 0 {
            lost as f64 * 100.0 / expected as f64
        } else {
            0.0
        },
        mbit_per_viewer: if playing > 0 && out.steady_secs > 0.0 {
            out.steady_bytes as f64 * 8.0 / out.steady_secs / 1e6 / f64::from(playing)
        } else {
            0.0
        },
        first_packet: Percentiles::of(&first_packet),
        connect: Percentiles::of(&connect),
        jitter_video: Percentiles::of(&jitter_video),
        jitter_audio: Percentiles::of(&jitter_audio),
        server,
        steady_cpu_ns_per_packet,
        harness: HarnessFigures {
            cpu_pct,
            udp_rcvbuf_errors: drops.map(|d| d.0),
            udp_in_errors: drops.map(|d| d.1),
            client_bound: cpu_pct >= CLIENT_BOUND_CPU_PCT || drops.is_some_and(|d| d.0 > 0),
        },
        deleted: out.deleted.0,
        delete_failed: out.deleted.1,
        datagrams: out.datagrams,
        loops: out.loops,
        webrtc_ports,
    }
}

/// Waits up to 10 s for a live channel to be listed with a `whep_url` in the catalog.
fn wait_for_stream(http: std::net::SocketAddr, name: &str) -> Result<(), LoadError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = std::net::TcpStream::connect(http).ok().and_then(|mut s| {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            s.write_all(
                format!(
                    "GET /api/v1/streams HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).ok()?;
            Some(body.contains(&format!("/whep/{name}")))
        });
        if listed == Some(true) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(LoadError::Protocol(format!(
                "live channel {name} was not listed with a whep_url within 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests;
