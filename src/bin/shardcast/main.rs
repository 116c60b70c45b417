//! The `shardcast` binary: command line, configuration, logging — the application edge
//! (errors are `anyhow` here, typed in the library).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod bench;
mod loadgen;

use shardcast::config::{ConfigOverlay, ServerConfig};
use shardcast::media::{MediaFile, MediaLibrary};
use shardcast::shard::send::{GsoMode, IoBackend};
use shardcast::stats::StatsMode;

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
    /// Load a server with real RTSP viewers and report loss, jitter and server CPU per packet.
    Bench(bench::BenchArgs),
    /// Live figures of a running server in the terminal (polls its HTTP API).
    Stats(StatsArgs),
}

#[derive(Args)]
struct StatsArgs {
    /// The server's HTTP address (its --http-listen).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// Print the figures once and exit.
    #[arg(long)]
    once: bool,
    /// Time between refreshes, e.g. 1s, 500ms.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Admin bearer token, when the server has api-read = "token" [env: SHARDCAST_ADMIN_TOKEN].
    #[arg(long)]
    admin_token: Option<String>,
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
    /// Seconds a session may stay set up without a PLAY [default: 15, at most the session
    /// timeout].
    #[arg(long)]
    setup_timeout: Option<u64>,
    /// host[:port] clients reach the RTSP server by, when not the listening address (NAT,
    /// load balancer): used in Content-Base and the URLs the API hands out.
    #[arg(long)]
    public_address: Option<String>,
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
    /// Also send live channel NAME once to a multicast group: NAME=GROUP:PORT, PORT the first
    /// track's RTP port (even; track k uses PORT+2k, PORT+2k+1); viewers SETUP `multicast`
    /// (repeatable).
    #[arg(long, value_parser = shardcast::config::parse_multicast_flag)]
    multicast: Vec<(String, std::net::SocketAddr)>,
    /// Time to live (hops) of multicast packets [default: 1, the local network].
    #[arg(long)]
    multicast_ttl: Option<u8>,
    /// A user NAME:PASSWORD allowed to read streams (repeatable); once any user exists,
    /// every stream needs Digest credentials unless an access rule opens it.
    #[arg(long = "user", value_parser = shardcast::config::parse_user_flag)]
    users: Vec<shardcast::config::UserEntry>,
    /// Also accept Basic credentials (the password travels in the clear).
    #[arg(long)]
    allow_basic: bool,
    /// Let anyone publish (RTSP ANNOUNCE/RECORD) to paths matching PATTERN, e.g. 'live/*'
    /// (repeatable). Without it publishing needs an [[access]] rule with publish or
    /// publish-key.
    #[arg(long = "publish", value_name = "PATTERN")]
    publish: Vec<String>,
    /// Record live streams on paths matching PATTERN (repeatable) to fragmented MP4 files in
    /// the media folder's recordings/ (one file an hour, kept forever; [record] in the config
    /// file has the options). Needs --media.
    #[arg(long = "record", value_name = "PATTERN")]
    record: Vec<String>,
    /// Pull an RTSP source as stream NAME: NAME=rtsp://[user:pass@]host/path (repeatable;
    /// always on, over TCP; [sources] in the config file has more options).
    #[arg(long = "source", value_name = "NAME=URL", value_parser = shardcast::config::parse_source_flag)]
    sources: Vec<(String, shardcast::config::SourceEntry)>,
    /// Seconds a live stream waits for its publisher to come back before viewers get BYE
    /// [default: 10].
    #[arg(long)]
    publisher_timeout: Option<u64>,
    /// Milliseconds an RTMP or pulled stream's AAC frame may be held so several go in one
    /// RTP packet, as RTSP publishers group them; 0 = off, at most 150 [default: 150, the span of a channel's AAC packets].
    #[arg(long)]
    ingest_audio_hold_ms: Option<u64>,
    /// Most viewers (sessions) in the server; 0 = unlimited [default: 10,000 per shard].
    #[arg(long)]
    max_viewers: Option<usize>,
    /// Most viewers (sessions) from one IP address (IPv6: one /64); 0 = unlimited
    /// [default: 1,000].
    #[arg(long)]
    max_viewers_per_ip: Option<usize>,
    /// Most open RTSP connections; 0 = unlimited.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most open RTSP connections from one IP address; 0 = unlimited.
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// Most requests per second on one connection; 0 = unlimited.
    #[arg(long)]
    max_requests_per_sec: Option<u32>,
    /// Most average outgoing Mbit/s per shard; 0 = unlimited.
    #[arg(long)]
    max_mbps_per_shard: Option<u64>,
    /// UDP send backend: uring, sendmmsg or sendto [default: uring if the kernel allows it].
    #[arg(long)]
    io: Option<IoBackend>,
    /// UDP GSO (one send per run of equal-size packets to a viewer): on or off [default: on].
    #[arg(long)]
    gso: Option<GsoMode>,
    /// Statistics in the data plane (pacing lateness, RTCP receiver reports, per-session
    /// counters): on or off [default: on].
    #[arg(long)]
    stats: Option<StatsMode>,
    /// Nice value of the shard threads, -20 (highest) to 19, so the pacing threads win
    /// their core from the control thread [default: -5; needs CAP_SYS_NICE, else ignored
    /// with one log line].
    #[arg(long, allow_hyphen_values = true)]
    shard_nice: Option<i32>,
    /// HTTP address of the web page, JSON API and /metrics, or `off` [default: 127.0.0.1:8080];
    /// port 0 picks a free port (printed).
    #[arg(long)]
    http_listen: Option<shardcast::config::HttpListen>,
    /// HLS address (playlists and segments for browsers, served by the shards), or `off`
    /// [default: 127.0.0.1:8088]; port 0 picks a free port (printed).
    #[arg(long)]
    hls_listen: Option<shardcast::config::HttpListen>,
    /// RTMP address publishers (OBS, ffmpeg -f flv) send to as rtmp://ADDR/APP/NAME, or
    /// `off` [default: 127.0.0.1:1935]; port 0 picks a free port (printed).
    #[arg(long)]
    rtmp_listen: Option<shardcast::config::HttpListen>,
    /// RTSPS (RTSP over TLS 1.3, rtsps://ADDR/NAME) address; off unless given. Needs
    /// --tls-cert and --tls-key; TCP-interleaved media only (plain UDP SETUP is answered 461;
    /// see --rtsps-srtp).
    #[arg(long)]
    rtsps_listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain for RTSPS (re-read on SIGHUP for new connections).
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for RTSPS (re-read on SIGHUP for new connections).
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
    /// Offer SRTP over RTSPS: DESCRIBE answers RTP/SAVP with MIKEY keys (RFC 4567) so
    /// players that key it (GStreamer) may take media over UDP, protected; such players then
    /// use SRTP inside TLS too. Needs --rtsps-listen.
    #[arg(long)]
    rtsps_srtp: bool,
    /// WebRTC media address: shard k takes UDP port PORT+k, named in WHEP/WHIP answers as
    /// the browser's candidate (so an address browsers reach), or `off`
    /// [default: 127.0.0.1:8189]; port 0 picks free ports (printed).
    #[arg(long)]
    webrtc_listen: Option<shardcast::config::HttpListen>,
    /// How HLS segment bodies are written: `sendfile` (file ranges by reference from the page
    /// cache) or `gather` (one gathered sendmsg from the mapping) [default: sendfile].
    #[arg(long)]
    hls_body: Option<shardcast::shard::hls::BodyPath>,
    /// RTSP DESCRIBE and SETUP need a valid play token (?token=, from POST /api/v1/play);
    /// secret from token-secret in the config file or SHARDCAST_TOKEN_SECRET.
    #[arg(long)]
    require_token: bool,
    /// Who may read the JSON API and /metrics: public, or token (the admin bearer token from
    /// admin-token in the config file or SHARDCAST_ADMIN_TOKEN) [default: public].
    #[arg(long)]
    api_read: Option<shardcast::config::ApiRead>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Probe { file } => probe(&file),
        Command::Bench(args) => bench::bench(args),
        Command::Stats(args) => stats(args),
    };
    // `shardcast probe f.mp4 | head`: the reader went away; that is not our failure.
    match result {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
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
        setup_timeout: args.setup_timeout,
        public_address: args.public_address,
        log: args.log,
        live: (!args.live.is_empty()).then(|| args.live.into_iter().collect()),
        live_start: args.live_start,
        multicast: (!args.multicast.is_empty()).then(|| args.multicast.into_iter().collect()),
        multicast_ttl: args.multicast_ttl,
        users: (!args.users.is_empty()).then_some(args.users),
        access: None,
        publish: (!args.publish.is_empty()).then_some(args.publish),
        sources: (!args.sources.is_empty()).then(|| args.sources.into_iter().collect()),
        publisher_timeout: args.publisher_timeout,
        live_log_size: None,
        ingest_audio_hold_ms: args.ingest_audio_hold_ms,
        record: (!args.record.is_empty()).then(|| shardcast::config::RecordOverlay {
            paths: Some(args.record),
            ..Default::default()
        }),
        allow_basic: args.allow_basic.then_some(true),
        limits: Some(shardcast::rtsp::admission::LimitsOverlay {
            max_viewers: args.max_viewers,
            max_viewers_per_ip: args.max_viewers_per_ip,
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            max_requests_per_sec: args.max_requests_per_sec,
            max_mbps_per_shard: args.max_mbps_per_shard,
        }),
        io: args.io,
        gso: args.gso,
        stats: args.stats,
        shard_nice: args.shard_nice,
        http_listen: args.http_listen,
        hls_listen: args.hls_listen,
        rtmp_listen: args.rtmp_listen,
        rtsps_listen: args.rtsps_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        rtsps_srtp: args.rtsps_srtp.then_some(true),
        webrtc_listen: args.webrtc_listen,
        hls_body: args.hls_body,
        require_token: args.require_token.then_some(true),
        // Secrets come from the environment (or the config file), never from the command
        // line, where every local user could read them in the process list.
        token_secret: secret_from_env("SHARDCAST_TOKEN_SECRET"),
        admin_token: secret_from_env("SHARDCAST_ADMIN_TOKEN"),
        api_read: args.api_read,
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
    let reload: shardcast::control::Reloader =
        Box::new(move || load().map_err(|e| format!("{e:#}")));
    let mut streams = library.list();
    streams.extend(config.live.keys().cloned());
    if streams.is_empty() {
        tracing::warn!("no MP4/MOV files found; streams added later are served on request");
    }
    let server = shardcast::control::start(config.clone(), library, Some(reload))
        .with_context(|| format!("starting the server on {}", config.listen))?;
    let addr = server.local_addr;
    shardcast::banner::Banner::write(
        &mut std::io::stdout().lock(),
        addr,
        config.shards,
        &shardcast::banner::Listeners {
            http: server.http_addr,
            hls: server.hls_addr,
            rtmp: server.rtmp_addr,
            rtsps: server.rtsps_addr,
            webrtc: server.webrtc_addrs.clone(),
        },
        streams.iter().map(String::as_str),
    )?;
    server.wait();
    Ok(())
}

/// A secret from the environment; unset or empty means none.
fn secret_from_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `shardcast stats`: polls `/api/v1/stats`, `/api/v1/sessions` and `/api/v1/ingest` and
/// prints the figures, redrawn in place on a terminal.
fn stats(args: StatsArgs) -> Result<()> {
    use shardcast::http::client::{get, HttpBase};
    let base = HttpBase::parse(&args.http)?;
    let token = args
        .admin_token
        .clone()
        .or_else(|| secret_from_env("SHARDCAST_ADMIN_TOKEN"));
    let timeout = Duration::from_secs(5);
    let fetch = |path: &str| -> Result<serde_json::Value> {
        let reply = get(&base, path, token.as_deref(), timeout)
            .with_context(|| format!("GET {}{path}", args.http.trim_end_matches('/')))?;
        if reply.status != 200 {
            let why = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            bail!("GET {path}: HTTP {} {why}", reply.status);
        }
        serde_json::from_slice(&reply.body).with_context(|| format!("GET {path}: not JSON"))
    };
    let tty = std::io::stdout().is_terminal() && !args.once;
    if tty {
        print!("\x1b[2J");
    }
    loop {
        let stats = fetch("/api/v1/stats?history=0")?;
        let sessions = fetch("/api/v1/sessions")?;
        // A server from before publishing has no ingest view: show no sources.
        let ingest = fetch("/api/v1/ingest").unwrap_or(serde_json::Value::Null);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let text = shardcast::http::terminal::render(
            args.http.trim_end_matches('/'),
            &stats,
            &sessions,
            &ingest,
            now_ms,
        );
        let mut out = std::io::stdout().lock();
        if tty {
            // Home, draw, clear whatever the previous screen left below.
            write!(out, "\x1b[H{}\x1b[J", text.replace('\n', "\x1b[K\n"))?;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
        drop(out);
        if args.once {
            return Ok(());
        }
        std::thread::sleep(args.interval);
    }
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
        shardcast::wire::sdp::describe_media(
            &media,
            "127.0.0.1:8554".parse()?,
            false,
            None,
            1,
            None
        )
    )?;
    Ok(())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s, m)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches("/s")
        .parse()
        .map_err(|_| format!("not a rate: {s:?} (try 100/s)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("rate must be positive: {s:?}"));
    }
    Ok(v)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("not a percentage: {s:?} (try 0.1%)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("percentage must be ≥ 0: {s:?}"));
    }
    Ok(v)
}

fn parse_ms(s: &str) -> Result<f64, String> {
    Ok(parse_duration(s)?.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_units_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err() && parse_duration("3h").is_err());
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_percent("0.1%"), Ok(0.1));
        assert_eq!(parse_ms("5ms"), Ok(5.0));
        assert!(parse_rate("-1/s").is_err());
    }
}
