//! The control thread: process assembly and the I/O shell around the RTSP session core.
//!
//! [`start`] binds the RTSP (and HTTP) ports, spawns the shards, opens the live channels and
//! runs one tokio current-thread runtime on a thread of its own. On it: the accept loop and
//! one task per RTSP connection (`connection.rs`: read, frame, write, timeouts), the HTTP
//! side (`crate::http`, through [`ControlApi`](crate::http::ControlApi) in `operator.rs`),
//! the timers (expiry, statistics, shard events) and the signals (SIGTERM/SIGINT stop,
//! SIGHUP reload, SIGIO media revocation).
//!
//! Every decision is the session core's ([`SessionCore`], sans-IO); this module only feeds it
//! requests with the time and a random source, asks shards what it asks, and carries out the
//! [`Effect`]s it returns. The thread never blocks: shard answers come back over oneshot
//! channels, awaited with a deadline.

mod connection;
mod ingest;
mod multicast;
mod operator;
mod record;
mod renditions;
mod rtmp;
mod sources;
mod tunnel;
mod whip;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::http::HttpAccess;
use crate::live::LiveChannel;
use crate::media::{MediaFile, MediaLibrary};
use crate::rtsp::msg::Request;
use crate::rtsp::parse::Limits;
use crate::rtsp::session::{
    Answer, Caller, ConnId, Effect, Env, Reply, SessionCore, ShardAnswer, ShardAsk, ShardOrder,
    ShardReply,
};
use crate::shard::hls::{HlsContext, SharedHlsContext};
use crate::shard::{ShardCommand, ShardHandle, TcpSink};
use crate::stats::hub::Hub;
use crate::stats::ShardEvent;
use crate::stats::EVENT_QUEUE_DEPTH;
use crate::token::TokenKey;

/// How often expired sessions are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the statistics hub computes rates and records a history point.
const STATS_TICK: Duration = Duration::from_secs(1);
/// How often the shards' event queues (reports, sessions they ended) are drained.
const SHARD_EVENTS_TICK: Duration = Duration::from_millis(100);
/// How long the control thread waits for a shard to answer PLAY or PAUSE. A shard answers
/// within one tick (≤ 50 ms) unless it is stuck or far behind; the client then gets 503
/// with `Retry-After` and the operator one log line, instead of a request that never ends.
const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// State of the control thread (single-threaded: `Rc`/`RefCell`).
struct Control {
    /// The session core: every RTSP decision.
    core: RefCell<SessionCore>,
    /// Statistics of every session, stream and shard (see `stats::hub`).
    hub: RefCell<Hub>,
    shards: Vec<ShardHandle>,
    /// Writers of the open RTSP connections, by the id the core knows them by.
    conns: RefCell<HashMap<ConnId, Arc<TcpSink>>>,
    next_conn: Cell<ConnId>,
    /// Live RTSP-over-HTTP tunnels by cookie, with their GET connections' request inputs.
    tunnels: RefCell<crate::rtsp::tunnel::Tunnels<tunnel::TunnelInput>>,
    /// The RTSP address bound.
    local_addr: SocketAddr,
    /// The RTSPS side's TLS configuration (certificate re-read on SIGHUP), when it is on.
    tls: RefCell<Option<Arc<rustls::ServerConfig>>>,
    /// Request framing limits.
    limits: Limits,
    /// Who may do what over HTTP (replaced on SIGHUP).
    http_access: RefCell<HttpAccess>,
    /// Catalog entries for the API, by stream name.
    catalog: operator::CatalogCache,
    /// What the shards' HLS side reads (replaced on SIGHUP).
    hls: SharedHlsContext,
    /// The HLS address bound, when HLS is on.
    hls_addr: Option<SocketAddr>,
    /// The HTTP (API, page, WHEP) address bound, when the HTTP side is on.
    http_addr: Option<SocketAddr>,
    /// Opus renditions of AAC files for WebRTC viewers, when WebRTC is on.
    renditions: Option<Rc<renditions::Renditions>>,
    /// The configuration the server started with (a reload is compared with it).
    config: ServerConfig,
    /// Publishers' media into live logs.
    ingest: RefCell<ingest::Ingest>,
    /// WHIP publishers (their media goes on into `ingest`).
    whip: RefCell<whip::WhipShell>,
    /// On-demand sources requested while offline, and when (their task connects them).
    demands: RefCell<HashMap<String, Instant>>,
}

/// The environment of one core step: now, and the thread's random source.
fn with_env<T>(f: impl FnOnce(&mut Env<'_>) -> T) -> T {
    let mut rng = rand::thread_rng();
    let mut env = Env {
        now: Instant::now(),
        wall: SystemTime::now(),
        rng: &mut rng,
    };
    f(&mut env)
}

fn http_access(config: &ServerConfig) -> HttpAccess {
    HttpAccess {
        admin_token: config.admin_token.clone(),
        api_read: config.api_read,
    }
}

impl Control {
    /// Carries out the core's effects: shard orders, statistics.
    fn apply(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Shard { shard, order } => {
                    let command = match order {
                        ShardOrder::Start(id) => ShardCommand::Start { id },
                        ShardOrder::Teardown(id) => ShardCommand::Teardown { id },
                    };
                    if let Err(e) = self.shards[shard].send(command) {
                        tracing::warn!("{e}");
                    }
                }
                Effect::SessionStarted(meta) => self.hub.borrow_mut().session_started(meta),
                Effect::SessionEnded(id) => self.hub.borrow_mut().session_ended(id),
                Effect::Receptions { id, receptions } => {
                    self.hub.borrow_mut().record_receptions(id, &receptions);
                }
                Effect::PublishStart(start) => {
                    let now = Instant::now();
                    let started = self.ingest.borrow_mut().start(&start, now);
                    match started {
                        Ok(log) => self.core.borrow_mut().add_log(log),
                        Err(e) => {
                            tracing::warn!(stream = %start.path, "cannot ingest: {e}");
                            let effects = self
                                .core
                                .borrow_mut()
                                .end_publisher(start.id, "no live log");
                            self.apply(effects);
                        }
                    }
                }
                Effect::PublishStop { id, path } => {
                    self.ingest.borrow_mut().stop(id, &path, Instant::now());
                }
                Effect::InterleavedRtcp(c) => {
                    let mut hub = self.hub.borrow_mut();
                    let counts = &mut hub.interleaved_rtcp;
                    counts.received += c.received;
                    counts.invalid += c.invalid;
                    counts.unknown_ssrc += c.unknown_ssrc;
                    counts.byes += c.byes;
                    counts.byes_refused += c.byes_refused;
                }
            }
        }
    }

    /// Whether an on-demand source was requested while offline within the last
    /// [`sources::DEMAND_WAIT`] (it counts as a viewer until then).
    fn demanded(&self, path: &str, now: Instant) -> bool {
        let mut demands = self.demands.borrow_mut();
        demands.retain(|_, at| now.saturating_duration_since(*at) < sources::DEMAND_WAIT);
        demands.contains_key(path)
    }

    /// A DESCRIBE or SETUP for an on-demand source that is offline: start it and wait (at
    /// most [`sources::DEMAND_WAIT`]) until its log exists, so the request finds the stream.
    async fn demand_source(&self, req: &Request) {
        if !matches!(
            req.method,
            crate::rtsp::msg::Method::Describe | crate::rtsp::msg::Method::Setup
        ) {
            return;
        }
        let Ok(uri) = crate::rtsp::uri::split_request_uri(&req.uri) else {
            return;
        };
        let Some(path) = (1..=uri.segments.len()).rev().find_map(|k| {
            let p = uri.segments[..k].join("/");
            self.config
                .sources
                .get(&p)
                .filter(|s| matches!(s.mode, crate::ingest::pull::SourceMode::OnDemand { .. }))
                .map(|_| p)
        }) else {
            return;
        };
        let start = Instant::now();
        while !self.core.borrow().logs().contains_key(&path)
            && start.elapsed() < sources::DEMAND_WAIT
        {
            self.demands
                .borrow_mut()
                .insert(path.clone(), Instant::now());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One request through the core, asking a shard when the core needs its answer.
    async fn handle(&self, req: &Request, caller: &Caller) -> Answer {
        if !self.config.sources.is_empty() {
            self.demand_source(req).await;
        }
        let reply = with_env(|env| self.core.borrow_mut().handle(req, caller, env));
        match reply {
            Reply::Answer(answer) => answer,
            Reply::AskShard { ask, pending } => {
                let answer = self.ask_shard(pending.shard(), ask).await;
                with_env(|env| {
                    self.core
                        .borrow_mut()
                        .shard_answered(req, caller, pending, answer, env)
                })
            }
        }
    }

    /// Sends `ask` to shard `shard` and waits (at most [`SHARD_ANSWER_TIMEOUT`]) for its
    /// answer.
    async fn ask_shard(&self, shard: usize, ask: ShardAsk) -> ShardAnswer<ShardReply> {
        let handle = &self.shards[shard];
        match ask {
            ShardAsk::Play {
                id,
                mut setup,
                sink_of,
                start_npt_secs,
                end,
                rate,
            } => {
                if let Some(setup) = setup.as_mut() {
                    setup.sink = sink_of.and_then(|c| self.conns.borrow().get(&c).cloned());
                }
                let (reply, rx) = tokio::sync::oneshot::channel();
                let command = ShardCommand::Play {
                    id,
                    setup,
                    start_npt_secs,
                    end,
                    rate,
                    reply,
                };
                if let Err(e) = handle.send(command) {
                    tracing::warn!("{e}");
                    return ShardAnswer::Busy;
                }
                shard_answer(rx, SHARD_ANSWER_TIMEOUT)
                    .await
                    .map(ShardReply::Play)
            }
            ShardAsk::Pause { id } => {
                let (reply, rx) = tokio::sync::oneshot::channel();
                if let Err(e) = handle.send(ShardCommand::Pause { id, reply }) {
                    tracing::warn!("{e}");
                    return ShardAnswer::Busy;
                }
                shard_answer(rx, SHARD_ANSWER_TIMEOUT)
                    .await
                    .map(ShardReply::Pause)
            }
        }
    }
}

/// Waits up to `limit` for a shard's answer on `rx`.
async fn shard_answer<T>(
    rx: tokio::sync::oneshot::Receiver<Option<T>>,
    limit: Duration,
) -> ShardAnswer<T> {
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(Some(v))) => ShardAnswer::Answered(v),
        Ok(_) => ShardAnswer::Dropped,
        Err(_) => ShardAnswer::TimedOut,
    }
}

/// A running server: the control thread and its shards.
pub struct RunningServer {
    /// The RTSP address actually bound.
    pub local_addr: SocketAddr,
    /// The HTTP address actually bound, when the HTTP side is on.
    pub http_addr: Option<SocketAddr>,
    /// The HLS address actually bound, when HLS is on.
    pub hls_addr: Option<SocketAddr>,
    /// The RTMP address actually bound, when RTMP is on.
    pub rtmp_addr: Option<SocketAddr>,
    /// The RTSPS address actually bound, when RTSPS is on.
    pub rtsps_addr: Option<SocketAddr>,
    /// Each shard's WebRTC port, in shard order, when WebRTC is on.
    pub webrtc_addrs: Vec<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Waits until the server stops (SIGINT/SIGTERM or [`RunningServer::stop`]).
    pub fn wait(mut self) {
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }

    /// Stops the server: BYE to every viewer, then the threads end.
    pub fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Re-reads the configuration and media catalog (on SIGHUP).
pub type Reloader = Box<dyn Fn() -> Result<(ServerConfig, MediaLibrary), String> + Send>;

/// What the shards' HLS side reads: the catalog, and the RTSP access rules turned into "needs
/// a play token" (HLS takes no passwords).
fn hls_context(
    settings: &crate::rtsp::session::Settings,
    library: Arc<MediaLibrary>,
    channels: HashMap<String, Arc<LiveChannel>>,
    token_key: &TokenKey,
    body_path: crate::shard::hls::BodyPath,
    logs: crate::shard::hls::LiveLogs,
) -> HlsContext {
    let (users, access) = (settings.users.clone(), settings.access.clone());
    HlsContext {
        library,
        channels,
        token_key: token_key.clone(),
        require_token: settings.require_token,
        is_public: Box::new(move |stream| crate::rtsp::auth::is_public(&users, &access, stream)),
        body_path,
        logs,
    }
}

/// Opens the configured live channels.
fn open_channels(config: &ServerConfig) -> std::io::Result<HashMap<String, Arc<LiveChannel>>> {
    let mut channels = HashMap::new();
    for (name, file) in &config.live {
        let media = MediaFile::open(file, name)
            .map_err(|e| std::io::Error::other(format!("live channel {name}: {e}")))?;
        let channel = LiveChannel::new(
            name,
            Arc::new(media),
            config.payload_budget_bytes,
            config.live_start,
        )
        .map_err(|e| std::io::Error::other(format!("live channel {name}: {e}")))?;
        tracing::info!(channel = %name, file = %file.display(), loop_secs = channel.loop_duration.as_secs_f64(), policy = ?config.live_start, "live channel on air");
        if let Some(base) = config.multicast.get(name) {
            // Track k of a group takes ports PORT + 2k and PORT + 2k + 1.
            let last = usize::from(base.port()) + (2 * channel.tracks.len()).saturating_sub(1);
            if last > usize::from(u16::MAX) {
                return Err(std::io::Error::other(format!(
                    "multicast {name} = {base}: its {} tracks need ports up to {last}",
                    channel.tracks.len()
                )));
            }
        }
        channels.insert(name.clone(), Arc::new(channel));
    }
    Ok(channels)
}

/// Binds the RTSP port, starts the shards and the control thread. `reload`, when given, is
/// called on SIGHUP.
pub fn start(
    config: ServerConfig,
    library: MediaLibrary,
    reload: Option<Reloader>,
) -> std::io::Result<RunningServer> {
    let listener = StdTcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let http_listener = config.http_listen.map(crate::http::bind).transpose()?;
    let http_addr = http_listener
        .as_ref()
        .map(StdTcpListener::local_addr)
        .transpose()?;
    let token_key = match &config.token_secret {
        Some(secret) => TokenKey::from_secret(secret),
        None => TokenKey::random(),
    };
    if token_key.ephemeral && (config.require_token || http_addr.is_some()) {
        tracing::info!("no token-secret configured: play tokens are signed with a random per-run secret and die with the process");
    }
    if config.require_token {
        tracing::info!("RTSP DESCRIBE and SETUP need a play token (?token=)");
    }
    if !config.users.is_empty() || config.access.iter().any(|r| !r.public) {
        tracing::info!(
            users = config.users.len(),
            rules = config.access.len(),
            basic = config.allow_basic,
            "authentication required (Digest SHA-256/MD5)"
        );
    }
    let channels = open_channels(&config)?;
    // Recordings are files of the catalog that this process writes: the library must know
    // them (no read lease while they are written, `media::library`).
    let mut library = library;
    let writing = crate::media::library::WritingFiles::default();
    library.set_writing(writing.clone());
    let recording = match (&config.record, library.root()) {
        (Some(settings), Some(root)) => Some(record::Recording::new(settings, root, writing)?),
        (Some(_), None) => {
            return Err(std::io::Error::other(
                "recording needs a media folder (--media) to write into",
            ))
        }
        (None, _) => None,
    };
    let library = Arc::new(library);
    let hls_listeners = config
        .hls_listen
        .map(|addr| crate::shard::hls::bind_listeners(addr, config.shards))
        .transpose()?;
    let hls_addr = hls_listeners
        .as_ref()
        .and_then(|l| l.first())
        .map(StdTcpListener::local_addr)
        .transpose()?;
    // Ingested streams' logs for HLS: the session core adds and removes them.
    let hls_logs = crate::shard::hls::LiveLogs::default();
    let hls_context: SharedHlsContext = Arc::new(RwLock::new(Arc::new(hls_context(
        &config.session_settings(),
        library.clone(),
        channels.clone(),
        &token_key,
        config.hls_body,
        hls_logs.clone(),
    ))));
    let shared_hls = hls_context.clone();
    let shards = crate::shard::spawn_shards(
        config.shards,
        local_addr.ip(),
        config.send,
        config.stats,
        config.shard_nice,
        hls_listeners.map(|l| (l, hls_context.clone())),
        config.webrtc_listen,
    )?;
    let webrtc_addrs: Vec<SocketAddr> = shards.iter().filter_map(|s| s.webrtc_addr).collect();
    // One DTLS certificate for the process: every WHEP answer carries its fingerprint.
    let webrtc = if webrtc_addrs.len() == shards.len() && !shards.is_empty() {
        match crate::webrtc::cert::DtlsCertificate::generate() {
            Ok(cert) => Some(crate::rtsp::session::WebRtcSettings {
                certificate: Arc::new(cert),
                shard_addrs: webrtc_addrs.clone(),
            }),
            Err(e) => {
                tracing::error!("no DTLS certificate ({e}): WebRTC is off");
                None
            }
        }
    } else {
        None
    };
    let webrtc_on = webrtc.is_some();
    let media_root = library.root().map(std::path::Path::to_path_buf);
    // Publishers' UDP: one port pair for every publisher, demultiplexed by source address
    // (each track's `client_port`), as the shards' pairs serve every viewer.
    let ingest_sockets = match bind_ingest_ports(local_addr.ip()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("no UDP ingest ports ({e}): publishers must use TCP interleaved");
            None
        }
    };
    let ingest_ports = ingest_sockets
        .as_ref()
        .and_then(|(a, b)| Some((a.local_addr().ok()?.port(), b.local_addr().ok()?.port())));
    // WHIP publishers send to the RTP ingest port too (its datagrams are told apart by source
    // address, RFC 7983 first bytes and ICE ufrags). The answer's candidate must be an
    // address browsers can reach: the ingest socket's own, or, when it is bound to every
    // interface, the address WebRTC listens on (which `--webrtc-listen` requires to be one).
    let whip_addr = match (&ingest_sockets, webrtc_addrs.first(), webrtc.is_some()) {
        (Some((rtp, _)), Some(w), true) => rtp.local_addr().ok().map(|a| {
            if a.ip().is_unspecified() {
                SocketAddr::new(w.ip(), a.port())
            } else {
                a
            }
        }),
        _ => None,
    };
    let rtmp_listener = config
        .rtmp_listen
        .map(|addr| {
            let l = StdTcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(l)
        })
        .transpose()?;
    let rtmp_addr = rtmp_listener
        .as_ref()
        .map(StdTcpListener::local_addr)
        .transpose()?;
    let (rtsps_listener, tls_config) = match &config.rtsps {
        Some(r) => {
            let tls = crate::tls::server_config(&r.cert, &r.key).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
            })?;
            let l = StdTcpListener::bind(r.listen)?;
            l.set_nonblocking(true)?;
            (Some(l), Some(tls))
        }
        None => (None, None),
    };
    let rtsps_addr = rtsps_listener
        .as_ref()
        .map(StdTcpListener::local_addr)
        .transpose()?;
    let sources = config.sources.clone();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
    let join = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("control runtime: {e}");
                    return;
                }
            };
            let hub = Hub::new(
                shards.iter().map(|s| s.counters.clone()).collect(),
                Instant::now(),
            );
            let core = SessionCore::new(
                config.session_settings(),
                library,
                channels,
                shards.iter().map(|s| s.server_ports).collect(),
                token_key,
            );
            let ingest = ingest::Ingest::new(
                shards.iter().map(|s| s.waker()).collect(),
                config.payload_budget_bytes,
                config.live_log_size,
                config.publisher_timeout,
            );
            let mut ingest = ingest;
            if let Some(recording) = recording {
                ingest.set_recording(recording);
            }
            ingest.set_webrtc_audio(webrtc_on);
            ingest.set_audio_hold(config.ingest_audio_hold);
            let mut core = core;
            core.set_ingest_ports(ingest_ports);
            core.set_whip_addr(whip_addr);
            core.set_hls_logs(hls_logs);
            core.set_webrtc(webrtc);
            multicast::start_groups(&mut core, &shards, &config, local_addr.ip());
            let ctl = Rc::new(Control {
                ingest: RefCell::new(ingest),
                whip: RefCell::new(whip::WhipShell::default()),
                demands: RefCell::new(HashMap::new()),
                core: RefCell::new(core),
                hub: RefCell::new(hub),
                http_access: RefCell::new(http_access(&config)),
                catalog: operator::CatalogCache::default(),
                hls: shared_hls,
                hls_addr,
                http_addr,
                renditions: webrtc_on.then(|| renditions::Renditions::new(media_root)),
                shards,
                conns: RefCell::new(HashMap::new()),
                next_conn: Cell::new(0),
                tunnels: RefCell::new(crate::rtsp::tunnel::Tunnels::default()),
                local_addr,
                tls: RefCell::new(tls_config),
                limits: Limits::default(),
                config,
            });
            let local = tokio::task::LocalSet::new();
            if let Some(http) = http_listener {
                let api: Rc<dyn crate::http::ControlApi> = ctl.clone();
                local.spawn_local(crate::http::serve(
                    http,
                    api,
                    crate::http::HttpLimits::default(),
                ));
            }
            if let Some(renditions) = ctl.renditions.clone() {
                let core = ctl.core.borrow();
                let channels: Vec<_> = core.channels().values().cloned().collect();
                let library = core.library().clone();
                drop(core);
                local.spawn_local(async move {
                    renditions::prepare_channels(&renditions, &channels, &library);
                });
            }
            if let Some(sockets) = ingest_sockets {
                local.spawn_local(receive_ingest(ctl.clone(), sockets));
            }
            for (path, spec) in &sources {
                local.spawn_local(sources::run(ctl.clone(), path.clone(), spec.clone()));
            }
            if let Some(listener) = rtsps_listener {
                local.spawn_local(accept_rtsps(ctl.clone(), listener));
            }
            if let Some(listener) = rtmp_listener {
                let ctl = ctl.clone();
                local.spawn_local(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => rtmp::serve(ctl, l).await,
                        Err(e) => tracing::error!("rtmp listener: {e}"),
                    }
                });
            }
            local.block_on(&rt, run_control(ctl.clone(), listener, shutdown_rx, reload));
            ctl.ingest.borrow_mut().finish_recordings();
            // Teardown (RTCP BYE) to every session, then stop and join the shards once the
            // connection tasks holding the control state are gone.
            let effects = ctl.core.borrow_mut().end_all();
            ctl.apply(effects);
            drop(local);
            match Rc::try_unwrap(ctl) {
                Ok(ctl) => {
                    for shard in ctl.shards {
                        shard.shutdown();
                    }
                }
                Err(_) => tracing::warn!("control state still shared at exit; shards not joined"),
            }
            tracing::info!("stopped");
        })?;
    Ok(RunningServer {
        local_addr,
        http_addr,
        hls_addr,
        rtmp_addr,
        rtsps_addr,
        webrtc_addrs,
        shutdown: Some(shutdown_tx),
        join: Some(join),
    })
}

/// Accepts RTSPS connections; each is served with the TLS configuration of its accept time
/// (a SIGHUP's new certificate applies to new connections only).
async fn accept_rtsps(ctl: Rc<Control>, listener: StdTcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("rtsps listener: {e}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let config = ctl.tls.borrow().clone();
                if let Some(config) = config {
                    tokio::task::spawn_local(connection::serve_tls(
                        ctl.clone(),
                        stream,
                        peer,
                        config,
                    ));
                }
            }
            Err(e) => {
                tracing::warn!("rtsps accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Re-reads the RTSPS certificate and key (SIGHUP); on failure the running one stays.
fn reload_tls(ctl: &Control, config: &ServerConfig) {
    let Some(r) = config.rtsps.as_ref().or(ctl.config.rtsps.as_ref()) else {
        return;
    };
    if ctl.tls.borrow().is_none() {
        return;
    }
    match crate::tls::server_config(&r.cert, &r.key) {
        Ok(tls) => {
            *ctl.tls.borrow_mut() = Some(tls);
            tracing::info!(cert = %r.cert.display(), "SIGHUP: rtsps certificate reloaded (for new connections)");
        }
        Err(e) => tracing::warn!("SIGHUP: keeping the running rtsps certificate: {e}"),
    }
}

/// A signal stream, or one that never fires when the handler could not be installed.
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal.as_mut() {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn run_control(
    ctl: Rc<Control>,
    listener: StdTcpListener,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
    reload: Option<Reloader>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sighup = signal(SignalKind::hangup()).ok();
    // SIGIO: a writer is waiting for one of our read leases (a media file is about to be
    // truncated or rewritten in place). Registered before any file is mapped: SIGIO's default
    // action would end the process.
    let mut sigio = signal(SignalKind::io()).ok();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("rtsp listener: {e}");
            return;
        }
    };
    tokio::task::spawn_local(reap_expired(ctl.clone()));
    tokio::task::spawn_local(tick_statistics(ctl.clone()));
    tokio::task::spawn_local(drain_shard_events(ctl.clone()));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::task::spawn_local(connection::serve(ctl.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted; stopping"); break; }
            _ = next_signal(&mut sigterm) => {
                tracing::info!("SIGTERM; stopping");
                break;
            }
            _ = next_signal(&mut sigio) => {
                let effects = ctl.core.borrow_mut().revoke_changing_media();
                ctl.apply(effects);
            }
            _ = next_signal(&mut sighup) => match &reload {
                Some(reload) => match reload() {
                    Ok((config, library)) => apply_reload(&ctl, config, library),
                    Err(e) => tracing::warn!("SIGHUP: reload failed, keeping the running configuration: {e}"),
                },
                None => tracing::info!("SIGHUP: nothing to reload"),
            },
        }
    }
}

/// Applies a reloaded configuration (SIGHUP): the core takes users, rules, limits, the
/// catalog and play-token settings; the HTTP side its access policy.
fn apply_reload(ctl: &Control, config: ServerConfig, library: MediaLibrary) {
    reload_tls(ctl, &config);
    *ctl.http_access.borrow_mut() = http_access(&config);
    let (users, rules) = (config.users.len(), config.access.len());
    let mut rng = rand::thread_rng();
    let needs_restart = ctl.config.needs_restart_for(&config);
    let mut core = ctl.core.borrow_mut();
    let mut library = library;
    library.set_writing(core.library().writing().clone());
    core.apply_reload(
        config.session_settings(),
        Arc::new(library),
        config.token_secret.as_deref(),
        &mut rng,
    );
    let refreshed = hls_context(
        &config.session_settings(),
        core.library().clone(),
        core.channels().clone(),
        &core.tokens().key,
        config.hls_body,
        core.hls_logs().clone(),
    );
    *ctl.hls.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(refreshed);
    tracing::info!(
        users,
        rules,
        sessions = core.session_count(),
        "SIGHUP: reloaded users, access rules, limits, media catalog, play-token and API settings"
    );
    if !needs_restart.is_empty() {
        tracing::warn!(
            "SIGHUP: changes to {} take effect after a restart",
            needs_restart.join(", ")
        );
    }
}

/// Once a second: shard rates, ingested streams' rates, rolling windows and a history point
/// in the hub.
async fn tick_statistics(ctl: Rc<Control>) {
    let mut tick = tokio::time::interval(STATS_TICK);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let snapshots = ctl.ingest.borrow().snapshot(now);
        let mut hub = ctl.hub.borrow_mut();
        hub.record_ingest(
            snapshots.iter().map(|s| crate::stats::hub::IngestCounters {
                stream: &s.path,
                online: s.state == crate::live_log::LogState::Online,
                bytes: s.bytes,
                video_frames: s.video_frames,
            }),
            now,
        );
        hub.tick(now);
    }
}

/// Every [`SHARD_EVENTS_TICK`]: shard reports into the hub, and the sessions a shard ended
/// on its own dropped. Never blocks: the queues are read with `try_recv`.
async fn drain_shard_events(ctl: Rc<Control>) {
    let mut tick = tokio::time::interval(SHARD_EVENTS_TICK);
    loop {
        tick.tick().await;
        let now = Instant::now();
        for shard in &ctl.shards {
            // At most a queue's worth per shard and tick, so a runaway shard cannot hold
            // the control thread.
            for _ in 0..EVENT_QUEUE_DEPTH {
                let Ok(event) = shard.events.try_recv() else {
                    break;
                };
                match event {
                    ShardEvent::Report(report) => {
                        ctl.hub.borrow_mut().apply_report(&report, now);
                    }
                    ShardEvent::EndOfStream { id, tracks } => {
                        let notify = ctl.core.borrow_mut().end_of_stream(
                            id,
                            &tracks,
                            std::time::SystemTime::now(),
                        );
                        if let Some((conn, bytes)) = notify {
                            let sink = ctl.conns.borrow().get(&conn).cloned();
                            if let Some(sink) = sink {
                                let _ = sink.write_message(&[&bytes]);
                            }
                        }
                    }
                    ShardEvent::SessionEnded { id, reason } => {
                        let effects =
                            ctl.core
                                .borrow_mut()
                                .shard_ended(id, reason, shard.index, now);
                        ctl.apply(effects);
                    }
                }
            }
        }
    }
}

/// Once a second: sessions past their timeout end (RFC 2326 §12.37).
async fn reap_expired(ctl: Rc<Control>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let effects = ctl.core.borrow_mut().expire(now);
        ctl.apply(effects);
        let ingest = ctl.ingest.borrow_mut().tick(now);
        for path in ingest.ended {
            ctl.core.borrow_mut().remove_log(&path);
        }
        for id in ingest.silent {
            ctl.end_whip(id, "no media for the publisher timeout");
            let effects = ctl
                .core
                .borrow_mut()
                .end_publisher(id, "no media for the publisher timeout");
            ctl.apply(effects);
        }
    }
}

/// Binds the UDP pair publishers send RTP and RTCP to (consecutive even/odd ports when the
/// kernel's pick allows, as RFC 3550 §11 suggests; any free pair otherwise).
fn bind_ingest_ports(
    ip: std::net::IpAddr,
) -> std::io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
    let pair = || -> std::io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
        for _ in 0..16 {
            let rtp = std::net::UdpSocket::bind((ip, 0))?;
            let port = rtp.local_addr()?.port();
            if port % 2 == 0 {
                if let Ok(rtcp) = std::net::UdpSocket::bind((ip, port + 1)) {
                    return Ok((rtp, rtcp));
                }
            }
        }
        Ok((
            std::net::UdpSocket::bind((ip, 0))?,
            std::net::UdpSocket::bind((ip, 0))?,
        ))
    };
    let (rtp, rtcp) = pair()?;
    // Every publisher's media shares the RTP socket, read by the control thread between its
    // other work: a 4 MiB queue holds a 4K keyframe burst (or a burst of strays) where the
    // default ~200 KiB drops it. The kernel caps it at net.core.rmem_max (best effort).
    let _ = socket2::SockRef::from(&rtp).set_recv_buffer_size(INGEST_RECV_BUFFER);
    Ok((rtp, rtcp))
}

/// Receive buffer asked for the RTP ingest socket.
const INGEST_RECV_BUFFER: usize = 4 << 20;

/// Receives publishers' UDP RTP and RTCP into ingest until the control thread stops.
async fn receive_ingest(ctl: Rc<Control>, (rtp, rtcp): (std::net::UdpSocket, std::net::UdpSocket)) {
    let sockets = rtp
        .set_nonblocking(true)
        .and_then(|()| rtcp.set_nonblocking(true))
        .and_then(|()| {
            Ok((
                tokio::net::UdpSocket::from_std(rtp)?,
                tokio::net::UdpSocket::from_std(rtcp)?,
            ))
        });
    let (rtp, rtcp) = match sockets {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("UDP ingest: {e}");
            return;
        }
    };
    // A datagram is at most 64 KiB; one buffer per socket, reused.
    let mut rtp_buf = vec![0u8; 65_536];
    let mut rtcp_buf = vec![0u8; 2048];
    // WHIP's timers (DTLS retransmission, reports, keyframe requests, consent).
    let mut whip_tick = tokio::time::interval(WHIP_TICK);
    whip_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = rtp.recv_from(&mut rtp_buf) => if let Ok((n, from)) = got {
                ctl.ingest_datagram(from, &mut rtp_buf[..n]);
            },
            got = rtcp.recv_from(&mut rtcp_buf) => if let Ok((n, from)) = got {
                ctl.ingest_datagram(from, &mut rtcp_buf[..n]);
            },
            _ = whip_tick.tick() => {
                let mut effects = Vec::new();
                ctl.whip.borrow_mut().tick(Instant::now(), &mut ctl.ingest.borrow_mut(), &mut effects);
                ctl.apply_whip(effects);
            },
        }
        // What WHIP answered (STUN, DTLS flights, SRTCP reports) leaves from the port its
        // publishers send to: their ICE checks named it.
        let outbox = ctl.whip.borrow_mut().take_outbox();
        for (to, datagram) in outbox {
            if let Err(e) = rtp.try_send_to(&datagram, to) {
                tracing::debug!(%to, "whip send: {e}");
            }
        }
    }
}

/// How often WHIP publishers' timers run (DTLS retransmission timers start at one second).
const WHIP_TICK: Duration = Duration::from_millis(50);

impl Control {
    /// A datagram on the ingest ports: an RTSP publisher's, else a WHIP publisher's, else
    /// counted unrouted (never trusted).
    fn ingest_datagram(&self, from: SocketAddr, datagram: &mut [u8]) {
        let now = Instant::now();
        let mut ingest = self.ingest.borrow_mut();
        if ingest.udp(from, datagram, now) {
            return;
        }
        let mut effects = Vec::new();
        let taken = self
            .whip
            .borrow_mut()
            .datagram(from, datagram, now, &mut ingest, &mut effects);
        if !taken {
            ingest.unrouted += 1;
        }
        drop(ingest);
        self.apply_whip(effects);
    }

    /// Carries out what WHIP asked of the session core.
    fn apply_whip(&self, effects: Vec<whip::WhipEffect>) {
        for effect in effects {
            match effect {
                whip::WhipEffect::Opened(log) => self.core.borrow_mut().add_log(log),
                whip::WhipEffect::Ended(id) => self.core.borrow_mut().whip_ended(id),
            }
        }
    }

    /// Ends WHIP publisher `id`, if it is one.
    fn end_whip(&self, id: crate::shard::SessionId, why: &str) {
        let now = Instant::now();
        self.whip
            .borrow_mut()
            .end(id, why, &mut self.ingest.borrow_mut(), now);
        self.core.borrow_mut().whip_ended(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard that never answers costs the client a 503 after the limit (the core's
    /// refusal table maps `TimedOut` to 503), not a request that hangs; an answer passes
    /// through; a dropped request is `Dropped` (500).
    #[test]
    fn a_shard_that_does_not_answer_times_out_after_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let limit = Duration::from_millis(50);
            let (tx, rx) = tokio::sync::oneshot::channel::<Option<u32>>();
            let started = Instant::now();
            let silent = shard_answer(rx, limit).await;
            assert!(started.elapsed() >= limit);
            assert!(matches!(silent, ShardAnswer::TimedOut));
            drop(tx);

            let (tx, rx) = tokio::sync::oneshot::channel();
            tx.send(Some(7u32)).unwrap();
            assert!(matches!(
                shard_answer(rx, limit).await,
                ShardAnswer::Answered(7)
            ));

            let (tx, rx) = tokio::sync::oneshot::channel::<Option<u32>>();
            drop(tx);
            assert!(matches!(
                shard_answer(rx, limit).await,
                ShardAnswer::Dropped
            ));
        });
    }
}
