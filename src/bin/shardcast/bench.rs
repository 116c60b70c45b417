//! `shardcast bench`: the command line of the load generator and the orchestration around
//! it (configurations, rounds, the churn soak, the reports written to `--out`). The harness
//! itself is [`crate::loadgen`]; it never prints, this module does.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{parse_duration, parse_ms, parse_percent, parse_rate};

mod whep;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Target an already running server's stream instead of starting one (with `--protocol
    /// hls`: its multivariant playlist, `http://HOST:PORT/…/index.m3u8`).
    #[arg(long)]
    url: Option<String>,
    /// What the viewers speak: `rtsp` (RTP over UDP or TCP), `hls` (HTTP/1.1 viewers that
    /// fetch playlists and segments in real time; LL-HLS blocking reloads for live) or `whep`
    /// (WebRTC viewers on str0m: WHEP POST, ICE, DTLS, SRTP, RTCP; each round also runs as
    /// many RTP/UDP viewers of the same stream on a fresh server, for the CPU-per-packet ratio).
    #[arg(long, default_value = "rtsp", value_parser = ["rtsp", "hls", "whep"])]
    protocol: String,
    /// With --protocol whep: play a live channel looping the media (`--live=benchloop=FILE`;
    /// `--hls-media`, else the bundled sample) instead of the VOD file.
    #[arg(long)]
    live: bool,
    /// With --protocol hls: the servers to load, side by side in one run: `shardcast` (the
    /// started server, or --url) and/or `nginx` (nginx with sendfile serving the same media
    /// cut by ffmpeg).
    #[arg(long, value_delimiter = ',', default_value = "shardcast", value_parser = ["shardcast", "nginx"])]
    against: Vec<String>,
    /// With --protocol hls: a live stream (shardcast: a live channel of the media, LL-HLS;
    /// nginx: ffmpeg writing a sliding window in real time) instead of VOD.
    #[arg(long)]
    hls_live: bool,
    /// With --protocol hls: viewers follow live playlists segment by segment even where
    /// they offer LL-HLS parts (as a player without low-latency support does), so shardcast
    /// and nginx serve the same requests.
    #[arg(long)]
    hls_segments_only: bool,
    /// With --protocol hls or whep: the MP4 file the servers serve (nginx gets it cut by
    /// ffmpeg; a started shardcast serves it from its folder, or loops it as a live channel
    /// with --live / --hls-live). Default: the bundled 10 s sample.
    #[arg(long)]
    hls_media: Option<PathBuf>,
    /// With --url: the server's pid, so its CPU time and memory can be read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Allow a --url that is not loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Media folder for the started server (default: the bundled 10 s sample).
    #[arg(long)]
    media: Option<PathBuf>,
    /// Stream(s) to play: a name, a comma-separated list, or `all` (every stream the server
    /// announces); sessions spread over them round-robin (default: the first announced).
    #[arg(long)]
    stream: Option<String>,
    /// Shards of the started server, each pinned to a core of its own (the harness keeps the
    /// machine's last core, shared with the last shard only when there is no other).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Viewers for a fixed-load run (capped at 20000).
    #[arg(long, default_value_t = 100)]
    viewers: u32,
    /// Playing time of each run once all sessions started, e.g. 10s, 500ms, 1m (≤ 10m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Session start rate, e.g. 100/s (default: as fast as 64 handshakes in flight allow).
    #[arg(long, value_parser = parse_rate)]
    ramp: Option<f64>,
    /// RTP transport: udp or tcp (interleaved); `udp,tcp` measures every configuration over
    /// both, side by side in one invocation.
    #[arg(long, default_value = "udp", value_delimiter = ',', value_parser = ["udp", "tcp"])]
    transport: Vec<String>,
    /// Viewers' UDP sockets take the server's GSO trains whole (UDP_GRO) instead of one
    /// datagram per packet. On loopback the receive path runs on the sender's core: `on`
    /// charges the server per train (a remote viewer would cost it nothing), `off` per packet.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    receive_gro: String,
    /// How the viewers' receiver thread waits: `busy` sweeps the UDP sockets without sleeping
    /// and without epoll, so a server send neither wakes it nor marks an epoll entry ready
    /// (on loopback both run on the server's core); `sleep` blocks in epoll_wait and charges
    /// the server's core every wake-up.
    #[arg(long, default_value = "busy", value_parser = ["busy", "sleep"])]
    receive_poll: String,
    /// Search for the largest viewer count that holds the SLO (bisection up to --max-viewers).
    #[arg(long)]
    capacity: bool,
    /// Upper bound of the capacity search.
    #[arg(long, default_value_t = 5000)]
    max_viewers: u32,
    /// Fixed load: run every configuration this many times, interleaved (all once, then all
    /// again). Rows show each configuration's median run; a second table gives every
    /// round's CPU per packet and its ratio to the last configuration in the same round,
    /// which a machine's drifting speed cannot skew.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Probe budget of the capacity search.
    #[arg(long, default_value_t = 10)]
    max_probes: u32,
    /// SLO: largest loss, e.g. 0.1%.
    #[arg(long, default_value = "0.1%", value_parser = parse_percent)]
    slo_loss: f64,
    /// SLO: largest audio jitter p99 at the harness, e.g. 5ms (used only when the server's
    /// pacing lateness cannot be read, e.g. with --url).
    #[arg(long, default_value = "5ms", value_parser = parse_ms)]
    slo_jitter_p99: f64,
    /// SLO: largest pacing lateness p99 reported by the server (its /api/v1/stats), e.g. 5ms.
    #[arg(long, default_value = "5ms", value_parser = parse_ms)]
    slo_lateness_p99: f64,
    /// Server send backends to compare, comma-separated (passed to the server as --io X).
    #[arg(long, value_delimiter = ',')]
    io: Vec<String>,
    /// UDP GSO settings to compare, comma-separated: on,off (passed as --gso X). Combined
    /// with every --io value, so `--io uring,sendto --gso on,off` gives four rows.
    #[arg(long = "gso", value_delimiter = ',', value_parser = ["on", "off"])]
    gso_modes: Vec<String>,
    /// Statistics settings to compare, comma-separated: on,off (passed as --stats X).
    #[arg(long = "stats", value_delimiter = ',', value_parser = ["on", "off"])]
    stats_modes: Vec<String>,
    /// Compare server builds in one run: NAME=PATH (repeatable). Every configuration runs
    /// once per build; with --rounds the builds interleave, so each round's ratios compare
    /// them under the same machine conditions (e.g. `--server-exe old=../old/shardcast
    /// --server-exe new=target/release/shardcast --rounds 3`).
    #[arg(long = "server-exe", value_parser = parse_build)]
    server_exes: Vec<(String, PathBuf)>,
    /// Further arguments for the started server, e.g. --server-arg=--payload-budget=1400.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// The bench publishes the stream its viewers play: `rtsp` (its own publisher: ANNOUNCE,
    /// RECORD, RTP over UDP with sender reports; also measures the latency the server adds,
    /// publisher's packet in → viewer's packet out, p50/p99/max in the report) or `rtmp`
    /// (ffmpeg -re -stream_loop -1 … -f flv). The started server gets `--publish 'bench/*'`;
    /// the media (`--publish-media`, else `--hls-media`, else the bundled sample) is published
    /// in a loop at real time to `bench/live`, and the viewers play it once it is online.
    #[arg(long, value_parser = ["rtsp", "rtmp"])]
    publish: Option<String>,
    /// The file `--publish`/`--source` stream (default: `--hls-media`, else the bundled 10 s
    /// sample).
    #[arg(long)]
    publish_media: Option<PathBuf>,
    /// What the viewers play, comma-separated, one row each (interleaved by `--rounds`):
    /// `published` (the stream `--publish` sends; the default with `--publish`) and/or
    /// `channel` (a looped live channel of the same media, `--live=benchloop=FILE`). E.g.
    /// `--publish rtsp --source published,channel --rounds 3`: the rounds table then gives
    /// each round's CPU per delivered packet of the published stream against the channel's,
    /// and a second table per delivered megabyte (a live log sends each AAC frame in its own
    /// packet where a channel aggregates them, so the packet mixes differ).
    #[arg(long, value_delimiter = ',', value_parser = ["published", "channel"])]
    source: Vec<String>,
    /// A short run for CI: 20 viewers for 5 s on every backend the server accepts.
    #[arg(long)]
    smoke: bool,
    /// Report folder (bench.json, bench.html).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Churn soak: keep --viewers sessions playing and end/start this many per second (e.g.
    /// 50/s) for --duration, then drain and check the server's fds/RSS/threads.
    #[arg(long, value_parser = parse_rate)]
    churn: Option<f64>,
    /// With --churn: every N-th ended session just closes its sockets (no TEARDOWN); 0 = never.
    #[arg(long, default_value_t = 5)]
    abandon_one_in: u32,
    /// With --churn: the server's session timeout in seconds (given to a started server; the
    /// drain waits this long plus 5 s).
    #[arg(long, default_value_t = 10)]
    session_timeout: u64,
    /// With --churn: seconds between /proc samples of the server.
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
}

/// A `--transport` value (checked by clap).
fn transport_of(name: &str) -> crate::loadgen::session::RtpTransport {
    use crate::loadgen::session::RtpTransport;
    if name == "tcp" {
        RtpTransport::Tcp
    } else {
        RtpTransport::Udp
    }
}

/// The rows' stream sources from `--publish` and `--source`: none without either.
fn stream_sources(args: &BenchArgs) -> Result<Vec<crate::loadgen::publish::StreamSource>> {
    use crate::loadgen::publish::{PublishKind, StreamSource};
    let kind = args.publish.as_deref().map(|k| {
        if k == "rtmp" {
            PublishKind::Rtmp
        } else {
            PublishKind::Rtsp
        }
    });
    let names: Vec<&str> = if args.source.is_empty() {
        kind.map(|_| vec!["published"]).unwrap_or_default()
    } else {
        args.source.iter().map(String::as_str).collect()
    };
    let mut out = Vec::new();
    for name in names {
        let src = match (name, kind) {
            ("channel", _) => StreamSource::Channel,
            (_, Some(k)) => StreamSource::Published(k),
            (_, None) => bail!("--source published needs --publish rtsp or --publish rtmp"),
        };
        if !out.contains(&src) {
            out.push(src);
        }
    }
    Ok(out)
}

/// `NAME=PATH` of `--server-exe`.
fn parse_build(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH, got {s:?}")),
    }
}

pub(crate) fn bench(args: BenchArgs) -> Result<()> {
    use crate::loadgen::{self, report, server, session::RtpTransport, Mode, Target};
    let exe = std::env::current_exe().context("locating the shardcast executable")?;
    let placement = loadgen::plan_placement(args.shards);
    let (viewers, duration) = if args.smoke {
        (20, Duration::from_secs(5))
    } else {
        (args.viewers, args.duration)
    };
    if let Some(rate) = args.churn {
        return churn_bench(&args, rate, exe, placement);
    }
    if args.protocol == "hls" {
        // HLS rows compare per core with nginx's workers: every shard on the server's core.
        return hls_bench(&args, viewers, duration, exe, loadgen::plan_placement(1));
    }
    if args.protocol == "whep" {
        return whep::whep_bench(&args, viewers, duration, exe, placement);
    }
    let io: Vec<String> = if !args.io.is_empty() {
        args.io.clone()
    } else if args.smoke && args.url.is_none() && server::serve_accepts_io_flag(&exe) {
        ["uring", "sendmmsg", "sendto"].map(str::to_owned).to_vec()
    } else {
        Vec::new()
    };
    let transports: Vec<RtpTransport> = args.transport.iter().map(|t| transport_of(t)).collect();
    let sources = stream_sources(&args)?;
    let sample_copy =
        std::env::temp_dir().join(format!("shardcast-bench-source-{}.mp4", std::process::id()));
    let source_media = if sources.is_empty() {
        None
    } else {
        if args.url.is_some() {
            bail!("--publish/--source need a server the bench starts (not --url)");
        }
        if args.stream.is_some() {
            bail!(
                "--stream does not apply with --publish/--source (viewers play the bench's stream)"
            );
        }
        let file = match args.publish_media.as_ref().or(args.hls_media.as_ref()) {
            Some(f) => f.clone(),
            None => {
                std::fs::write(&sample_copy, shardcast::media::library::SAMPLE_MP4)
                    .with_context(|| format!("writing {}", sample_copy.display()))?;
                sample_copy.clone()
            }
        };
        let media = shardcast::media::MediaFile::open(&file, "bench")
            .with_context(|| format!("indexing {}", file.display()))?;
        Some(loadgen::SourceMedia {
            file,
            media: std::sync::Arc::new(media),
        })
    };
    let variants = loadgen::with_sources(
        loadgen::with_transports(
            loadgen::with_builds(
                loadgen::variants(&[
                    ("io", &io),
                    ("gso", &args.gso_modes),
                    ("stats", &args.stats_modes),
                ]),
                &args.server_exes,
            ),
            &transports,
        ),
        &sources,
    );
    let target = match &args.url {
        Some(url) => Target::Url {
            url: url.clone(),
            pid: args.server_pid,
        },
        None => Target::Spawn(server::ServerLaunch {
            exe: exe.clone(),
            shards: args.shards,
            media: args.media.clone(),
            extra_args: args.server_args.clone(),
            pin_cores: placement.server_cores.clone(),
            harness_core: placement.harness_core,
        }),
    };
    if args.capacity && args.rounds != 1 {
        bail!("--rounds applies to fixed-load runs, not to --capacity");
    }
    let opts = loadgen::BenchOptions {
        target,
        stream: args.stream.clone(),
        mode: if args.capacity && !args.smoke {
            Mode::Capacity {
                max_viewers: args.max_viewers,
            }
        } else {
            Mode::Fixed {
                viewers,
                rounds: args.rounds,
            }
        },
        duration,
        ramp_per_sec: args.ramp,
        transport: transports.first().copied().unwrap_or(RtpTransport::Udp),
        receive: loadgen::ReceiveTuning {
            gro: args.receive_gro == "on",
            busy_poll: args.receive_poll == "busy",
        },
        variants,
        slo: loadgen::Slo {
            max_loss_pct: args.slo_loss,
            max_jitter_p99_ms: args.slo_jitter_p99,
            max_lateness_p99_ms: args.slo_lateness_p99,
        },
        max_probes: args.max_probes.clamp(1, 30),
        progress: !args.quiet && std::io::stderr().is_terminal(),
        source_media,
    };
    loadgen::validate(&opts, args.allow_remote)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started_unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report::markdown_header())?;
    out.flush()?;
    drop(out);
    let configs = loadgen::run_bench(&opts, |cfg| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", report::markdown_row(cfg));
        let _ = out.flush();
    });
    let _ = std::fs::remove_file(&sample_copy);
    let configs = configs?;
    if let Some(rounds) = report::rounds_table(&configs) {
        println!("\n{rounds}");
    }
    if sources.len() > 1 {
        if let Some(rounds) = report::rounds_table_per_mb(&configs) {
            println!("\n{rounds}");
        }
    }
    if let Some(latency) = report::latency_table(&configs) {
        println!("\n{latency}");
    }
    for c in &configs {
        if let Some(e) = &c.error {
            if e.contains("--io") && e.contains("unexpected argument") {
                eprintln!(
                    "{}: not measured: this server build rejects `--io` (the send backends arrive from another branch)",
                    c.label
                );
            } else {
                eprintln!("{}: not measured: {e}", c.label);
            }
        }
    }
    let shards = args.url.is_none().then_some(args.shards);
    let conclusion = report::conclusion(&configs, shards);
    // The machine's cores, not this thread's: the harness is pinned to one core by now.
    let machine = report::machine_line(
        &std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default(),
        report::machine_cores(),
        shards,
    );
    let report = report::BenchReport {
        started_unix_secs,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        placement,
        shards,
        slo: opts.slo,
        receive: opts.receive,
        configs,
        conclusion,
    };
    let written = write_reports(&args.out, &report, &report::html(&report))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nconclusion: {}", report.conclusion)?;
    writeln!(
        out,
        "viewers' receive: {}",
        report::receive_sentence(report.receive)
    )?;
    writeln!(out, "{written}")?;
    Ok(())
}

/// Writes `bench.json` and `bench.html` into `dir`; returns the line that names them.
fn write_reports(
    dir: &std::path::Path,
    json: &impl serde::Serialize,
    html: &str,
) -> Result<String> {
    let (json_path, html_path) = crate::loadgen::report_paths(dir);
    std::fs::write(&json_path, serde_json::to_string_pretty(json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&html_path, html).with_context(|| format!("writing {}", html_path.display()))?;
    Ok(format!(
        "report: {} {}",
        json_path.display(),
        html_path.display()
    ))
}

/// `--protocol hls`: one row per `--against` server, each `--rounds` times, interleaved.
fn hls_bench(
    args: &BenchArgs,
    viewers: u32,
    duration: Duration,
    exe: PathBuf,
    placement: crate::loadgen::Placement,
) -> Result<()> {
    use crate::loadgen::hls::{self, HlsOptions, HlsRow, HlsSource};
    use crate::loadgen::{nginx::NginxSetup, report, server};
    if args.capacity || args.churn.is_some() {
        bail!("--protocol hls runs a fixed load: no --capacity or --churn");
    }
    if !args.io.is_empty() || !args.gso_modes.is_empty() || !args.server_exes.is_empty() {
        bail!("--protocol hls compares servers with --against, not --io/--gso/--server-exe");
    }
    if viewers == 0 || viewers > crate::loadgen::MAX_VIEWERS {
        bail!("viewers must be 1..={}", crate::loadgen::MAX_VIEWERS);
    }
    if duration.is_zero() || duration > crate::loadgen::MAX_DURATION {
        bail!("duration must be within (0, 600 s]");
    }
    if args.rounds == 0 || args.rounds > crate::loadgen::MAX_ROUNDS {
        bail!("--rounds must be 1..={}", crate::loadgen::MAX_ROUNDS);
    }
    if let Some(url) = &args.url {
        check_http_loopback(url, args.allow_remote)?;
    }
    // Live channels and nginx need the media as a file: the bundled sample is written out.
    let sample_copy =
        std::env::temp_dir().join(format!("shardcast-bench-sample-{}.mp4", std::process::id()));
    let media_file = match &args.hls_media {
        Some(f) => f.clone(),
        None => {
            std::fs::write(&sample_copy, shardcast::media::library::SAMPLE_MP4)
                .with_context(|| format!("writing {}", sample_copy.display()))?;
            sample_copy.clone()
        }
    };
    let mut rows = Vec::new();
    let mut against = args.against.clone();
    against.dedup();
    for server_name in &against {
        let source = match (server_name.as_str(), &args.url) {
            ("shardcast", Some(url)) => HlsSource::Url {
                url: url.clone(),
                pid: args.server_pid,
            },
            ("shardcast", None) => {
                let mut extra_args = args.server_args.clone();
                let (media, stream) = if args.hls_live {
                    extra_args.push(format!("--live=bench={}", media_file.display()));
                    (args.media.clone(), Some("bench".to_owned()))
                } else if args.hls_media.is_some() {
                    let (dir, name) = hls::media_dir_and_name(&media_file)
                        .context("--hls-media needs a file name")?;
                    (Some(dir), Some(args.stream.clone().unwrap_or(name)))
                } else {
                    (args.media.clone(), args.stream.clone())
                };
                if server::serve_accepts_flag(&exe, "--hls-listen")
                    && !extra_args.iter().any(|a| a.starts_with("--hls-listen"))
                {
                    extra_args.extend(["--hls-listen".to_owned(), "127.0.0.1:0".to_owned()]);
                }
                HlsSource::Shardcast {
                    launch: server::ServerLaunch {
                        exe: exe.clone(),
                        shards: args.shards,
                        media,
                        extra_args,
                        pin_cores: placement.server_cores.clone(),
                        harness_core: placement.harness_core,
                    },
                    stream,
                }
            }
            _ => HlsSource::Nginx(NginxSetup {
                media: Some(media_file.clone()),
                live: args.hls_live,
                workers: args.shards.max(1),
                pin_core: placement.server_core,
                harness_core: placement.harness_core,
            }),
        };
        rows.push(HlsRow {
            label: server_name.clone(),
            source,
        });
    }
    let opts = HlsOptions {
        rows,
        viewers,
        duration,
        ramp_per_sec: args.ramp,
        rounds: args.rounds,
        server_core: placement.server_core,
        segments_only: args.hls_segments_only,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started_unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("{}", report::hls_markdown_header());
    let configs = hls::run_hls_bench(&opts, |cfg| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", report::hls_markdown_row(cfg));
        let _ = out.flush();
    });
    let _ = std::fs::remove_file(&sample_copy);
    for c in &configs {
        if let Some(e) = &c.error {
            eprintln!("{}: not measured: {e}", c.label);
        }
        for r in &c.runs {
            if let Some(e) = r.first_error.as_ref().filter(|_| r.playing < r.viewers) {
                eprintln!("{}: first error: {e}", c.label);
            }
        }
    }
    let shards = args.url.is_none().then_some(args.shards);
    let report = report::BenchReport {
        started_unix_secs,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: report::machine_line(
            &std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default(),
            report::machine_cores(),
            shards,
        ),
        placement,
        shards,
        slo: crate::loadgen::Slo {
            max_loss_pct: args.slo_loss,
            max_jitter_p99_ms: args.slo_jitter_p99,
            max_lateness_p99_ms: args.slo_lateness_p99,
        },
        receive: crate::loadgen::ReceiveTuning {
            gro: args.receive_gro == "on",
            busy_poll: args.receive_poll == "busy",
        },
        conclusion: report::hls_conclusion(&configs),
        configs,
    };
    let written = write_reports(&args.out, &report, &report::html(&report))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nconclusion: {}", report.conclusion)?;
    writeln!(out, "{written}")?;
    Ok(())
}

/// Refuses an `http://` URL that is not loopback unless `--allow-remote`.
fn check_http_loopback(url: &str, allow_remote: bool) -> Result<()> {
    use std::net::ToSocketAddrs;
    let u = crate::loadgen::hls::http::Url::parse(url)?;
    let addrs: Vec<_> = u
        .authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", u.authority))?
        .collect();
    if addrs.is_empty() {
        bail!("{} resolves to nothing", u.authority);
    }
    if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
        bail!(
            "{} is not loopback; pass --allow-remote to load another machine",
            u.authority
        );
    }
    Ok(())
}

fn churn_bench(
    args: &BenchArgs,
    rate: f64,
    exe: PathBuf,
    placement: crate::loadgen::Placement,
) -> Result<()> {
    use crate::loadgen::{churn, report, server, Target};
    let target = match &args.url {
        Some(url) => Target::Url {
            url: url.clone(),
            pid: args.server_pid,
        },
        None => Target::Spawn(server::ServerLaunch {
            exe,
            shards: args.shards,
            media: args.media.clone(),
            extra_args: args
                .io
                .first()
                .map(|b| vec!["--io".to_owned(), b.clone()])
                .unwrap_or_default()
                .into_iter()
                .chain(args.server_args.iter().cloned())
                .collect(),
            pin_cores: placement.server_cores.clone(),
            harness_core: placement.harness_core,
        }),
    };
    let opts = churn::ChurnOptions {
        target,
        stream: args.stream.clone(),
        viewers: args.viewers,
        rate_per_sec: rate,
        duration: args.duration,
        transport: match args.transport.as_slice() {
            [one] => transport_of(one),
            _ => bail!("--churn runs over one transport: --transport udp or --transport tcp"),
        },
        receive: crate::loadgen::ReceiveTuning {
            gro: args.receive_gro == "on",
            busy_poll: args.receive_poll == "busy",
        },
        abandon_one_in: args.abandon_one_in,
        session_timeout: Duration::from_secs(args.session_timeout),
        sample_every: Duration::from_secs(args.sample_every.clamp(1, 60)),
        fd_tolerance: 4,
        thread_tolerance: 0,
        rss_tolerance_kib: 10 * 1024,
    };
    churn::validate_churn(&opts)?;
    if args.url.is_some() && args.allow_remote {
        bail!("--churn runs on loopback only");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started_unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let quiet = args.quiet;
    let mut r = churn::run_churn(&opts, |s| {
        if !quiet {
            eprintln!(
                "{:>7.1}s {:<8} fds {:>5}  rss {:>7.1} MiB  threads {:>3}  playing {:>5}  started {:>6}  ended {:>6}+{:<5} failed {:>4}  packets {}",
                s.t_secs,
                format!("{:?}", s.phase).to_lowercase(),
                s.fds,
                s.rss_kib as f64 / 1024.0,
                s.threads,
                s.playing,
                s.started,
                s.ended_teardown,
                s.ended_abandoned,
                s.failed_handshakes,
                s.packets
            );
        }
    })?;
    r.started_unix_secs = started_unix_secs;
    r.command = std::env::args().collect::<Vec<_>>().join(" ");
    // The machine's online CPUs: the harness thread is pinned by now, and
    // available_parallelism() reports the affinity mask (1), not the machine.
    let cpus = report::machine_cores();
    r.machine = format!(
        "Linux {}, {cpus} CPUs",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
    );
    r.placement = placement;
    let written = write_reports(&args.out, &r, &churn::html(&r))?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", churn::markdown(&r))?;
    writeln!(out, "{written}")?;
    Ok(())
}
