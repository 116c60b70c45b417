//! The `shardcast` binary: command line, configuration, logging — the application edge
//! (errors are `anyhow` here, typed in the library).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use shardcast::config::{ConfigOverlay, ServerConfig};
use shardcast::media::{MediaFile, MediaLibrary};
use shardcast::shard::send::{GsoMode, IoBackend};

/// Live and on-demand RTSP/RTP streaming on pinned per-core shards.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve media over RTSP (the bundled sample when no --media is given).
    Serve(ServeArgs),
    /// Print a media file's tracks, codecs, timing and the SDP it would announce.
    Probe {
        /// The MP4/MOV file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (flags override its values).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder whose MP4/MOV files are served as rtsp://ADDR/<path-without-extension>.
    #[arg(long)]
    media: Option<PathBuf>,
    /// RTSP listen address [default: 127.0.0.1:8554]; port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Shard threads, each pinned to a core [default: one per core].
    #[arg(long)]
    shards: Option<usize>,
    /// Largest RTP payload in bytes [default: 1200].
    #[arg(long)]
    payload_budget: Option<usize>,
    /// Seconds without RTSP or RTCP activity before a session expires [default: 60].
    #[arg(long)]
    session_timeout: Option<u64>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive [default: info].
    #[arg(long)]
    log: Option<String>,
    /// A live channel: NAME=FILE plays FILE in a loop as rtsp://ADDR/NAME (repeatable).
    #[arg(long, value_parser = shardcast::config::parse_live_flag)]
    live: Vec<(String, PathBuf)>,
    /// How viewers join live channels: delayed (from the latest keyframe in real time) or
    /// burst (send the cached GOP, then follow live) [default: delayed].
    #[arg(long)]
    live_start: Option<shardcast::live::StartPolicy>,
    /// A user NAME:PASSWORD allowed to read streams (repeatable); once any user exists,
    /// every stream needs Digest credentials unless an access rule opens it.
    #[arg(long = "user", value_parser = shardcast::config::parse_user_flag)]
    users: Vec<shardcast::config::UserEntry>,
    /// Also accept Basic credentials (the password travels in the clear).
    #[arg(long)]
    allow_basic: bool,
    /// Most viewers (sessions) in the server; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    max_viewers: usize,
    /// Most viewers from one IP address; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    max_viewers_per_ip: usize,
    /// Most open RTSP connections; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// Most open RTSP connections from one IP address; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    max_connections_per_ip: usize,
    /// Most requests per second on one connection; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    max_requests_per_sec: u32,
    /// Most average outgoing Mbit/s per shard; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    max_mbps_per_shard: u64,
    /// UDP send backend: uring, sendmmsg or sendto [default: uring if the kernel allows it].
    #[arg(long)]
    io: Option<IoBackend>,
    /// UDP GSO (one send per run of equal-size packets to a viewer): on or off [default: on].
    #[arg(long)]
    gso: Option<GsoMode>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Probe { file } => probe(&file),
    }
}

fn init_logging(filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let config_path = args.config.clone();
    let flags = ConfigOverlay {
        media: args.media,
        listen: args.listen,
        shards: args.shards,
        payload_budget: args.payload_budget,
        session_timeout: args.session_timeout,
        log: args.log,
        live: (!args.live.is_empty()).then(|| args.live.into_iter().collect()),
        live_start: args.live_start,
        users: (!args.users.is_empty()).then_some(args.users),
        access: None,
        allow_basic: args.allow_basic.then_some(true),
        limits: Some(shardcast::rtsp::admission::Limits {
            max_viewers: args.max_viewers,
            max_viewers_per_ip: args.max_viewers_per_ip,
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            max_requests_per_sec: args.max_requests_per_sec,
            max_mbps_per_shard: args.max_mbps_per_shard,
        }),
        io: args.io,
        gso: args.gso,
    };
    // The same steps run at start and on SIGHUP: read the file, let the flags win, open the
    // media catalog.
    let load = move || -> Result<(ServerConfig, MediaLibrary)> {
        let file = match &config_path {
            Some(path) => ConfigOverlay::from_file(path)?,
            None => ConfigOverlay::default(),
        };
        let config = ServerConfig::from_overlay(file.overlaid_by(flags.clone()))?;
        let library = match &config.media {
            Some(dir) => MediaLibrary::from_root(dir)
                .with_context(|| format!("opening media folder {}", dir.display()))?,
            None => MediaLibrary::bundled().context("indexing the bundled sample")?,
        };
        Ok((config, library))
    };
    let (config, library) = load()?;
    init_logging(&config.log)?;
    let reload: shardcast::rtsp::server::Reloader =
        Box::new(move || load().map_err(|e| format!("{e:#}")));
    let mut streams = library.list();
    streams.extend(config.live.keys().cloned());
    if streams.is_empty() {
        tracing::warn!("no MP4/MOV files found; streams added later are served on request");
    }
    let server = shardcast::rtsp::server::start(config.clone(), library, Some(reload))
        .with_context(|| format!("starting the server on {}", config.listen))?;
    let addr = server.local_addr;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "shardcast listening on rtsp://{addr}/ with {} shards",
        config.shards
    )?;
    for name in &streams {
        writeln!(out, "stream rtsp://{addr}/{name}")?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    server.wait();
    Ok(())
}

fn probe(path: &std::path::Path) -> Result<()> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "media".into());
    let media = MediaFile::open(path, &name)?;
    if media.index.tracks.is_empty() {
        bail!("{}: no playable track", path.display());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: duration {:.3} s",
        path.display(),
        media.duration().as_secs_f64()
    )?;
    for summary in shardcast::media::mp4::summarize(&media.index) {
        writeln!(out, "  {summary}")?;
    }
    for skipped in &media.index.skipped {
        writeln!(out, "  skipped: {skipped}")?;
    }
    writeln!(
        out,
        "\nSDP:\n{}",
        shardcast::rtsp::server::describe_sdp(&media, "127.0.0.1:8554".parse()?, false)
    )?;
    Ok(())
}
