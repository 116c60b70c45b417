//! The control thread: one tokio current-thread runtime that accepts RTSP connections,
//! negotiates sessions (RFC 2326 §10, state machine of Appendix A) and hands them to shards.
//!
//! Writes to a connection always go through its [`InterleavedSink`], shared with the shard
//! that streams interleaved RTP on it, so responses and `$` frames never interleave
//! mid-message. The thread never blocks: shard answers come back over oneshot channels.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use super::admission::{Admission, Refused};
use super::auth::{Authenticator, Verdict};
use super::log_limit::{Gate, LogLimiter, Suppressed};
use super::msg::{Method, Request, Response, StatusCode};
use super::parse::{parse_message, Limits, Parsed};
use super::range::{check_rate, format_npt_range, vod_play_window, RateHeader};
use super::transport::{format_tcp_reply, format_udp_reply, parse_transport, LowerTransport};
use super::uri::split_request_uri;
use crate::config::ServerConfig;
use crate::http::HttpAccess;
use crate::ids::{SessionHandle, SERVER_NAME};
use crate::live::LiveChannel;
use crate::media::track::TrackKind;
use crate::media::{MediaFile, MediaLibrary};
use crate::shard::{
    Activity, InterleavedSink, SessionId, SessionSetup, ShardCommand, ShardHandle, TrackDest,
    TrackSetup,
};
use crate::stats::hub::Hub;
use crate::stats::{
    digest_rtcp, EndReason, SessionMeta, ShardEvent, TrackKey, Transport as StatsTransport,
    ViewerSsrcs, EVENT_QUEUE_DEPTH,
};
use crate::token::{is_token_syntax, redact_token, token_in_query, TokenKey};
use crate::wire::ntp::NtpTime;
use crate::wire::sdp::{write_sdp, SdpSession, SdpTrack};

mod operator;

/// Methods we implement, for `Public` (OPTIONS) and `Allow` (405).
const PUBLIC_METHODS: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER";
/// First RTP payload type; track `n` uses `96 + n` (dynamic range, RFC 3551 §6).
const FIRST_PAYLOAD_TYPE: u8 = 96;
/// Longest time a request may take to arrive once its first byte is in.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired sessions are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the statistics hub computes rates and records a history point.
const STATS_TICK: Duration = Duration::from_secs(1);
/// How often the shards' event queues (reports, sessions they ended) are drained.
const SHARD_EVENTS_TICK: Duration = Duration::from_millis(100);

/// Where a session is in the RFC 2326 Appendix A state machine (Init = no record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    Ready,
    Playing,
    Paused,
}

/// A session as the control thread knows it.
struct SessionRecord {
    media: Arc<MediaFile>,
    shard: usize,
    tracks: Vec<TrackSetup>,
    state: SessionState,
    on_shard: bool,
    activity: Arc<Activity>,
    /// Connection that set up interleaved tracks (they die with it) and its writer.
    tcp_conn: Option<(u64, Arc<InterleavedSink>)>,
    /// SSRCs the viewer sent interleaved reports about our tracks from; an interleaved BYE
    /// must name one (RFC 3550 §6.6).
    viewer_ssrcs: ViewerSsrcs,
    peer: SocketAddr,
    /// Average bitrate committed against the shard's bandwidth limit.
    bitrate_bps: u64,
    /// Writer of the connection whose SETUP created the session (closed when the session is
    /// ended through the API).
    origin: Arc<InterleavedSink>,
    /// The play token the SETUP carried, echoed in RTP-Info URLs so clients match them
    /// with their control URLs.
    token: Option<String>,
    /// Who created the session: only requests from the same client may control it.
    owner: Owner,
    /// The session's name in the HTTP API (the RTSP id stays with its owner).
    handle: SessionHandle,
    /// When its first SETUP arrived (a session never played expires after `setup-timeout`).
    created: Instant,
}

impl SessionRecord {
    /// Why the session has expired at `now`, if it has: idle past `config.session_timeout`
    /// (RFC 2326 §12.37), or set up but never played within `config.setup_timeout`.
    fn expiry(&self, now: Instant, config: &ServerConfig) -> Option<String> {
        if self.state == SessionState::Ready
            && now.saturating_duration_since(self.created) > config.setup_timeout
        {
            return Some(format!(
                "expired: set up but not played within {:?} (setup-timeout)",
                config.setup_timeout
            ));
        }
        (self.activity.idle_for(now) > config.session_timeout).then(|| {
            format!(
                "expired after {:?} without RTSP or RTCP",
                config.session_timeout
            )
        })
    }
}

/// What the client that created a session proved, and what every later request naming the
/// session must match (docs/SECURITY.md, "Session binding"). RFC 2326 §12.37 lets a session
/// span connections, so the connection itself is not part of it; the address it came from
/// and the user it authenticated as are. Anything else is answered `454 Session Not Found`,
/// exactly like an id that does not exist, so ids cannot be probed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    /// The client's IP address (the port changes with each connection).
    addr: IpAddr,
    /// The user it authenticated as (Digest or Basic); `None` on a stream open to anyone.
    user: Option<String>,
}

impl Owner {
    fn of(conn: &Conn, user: Option<&str>) -> Self {
        Self {
            addr: conn.peer.ip(),
            user: user.map(str::to_owned),
        }
    }
}

/// Shared state of the control thread (single-threaded: `Rc`/`RefCell`).
struct Control {
    config: ServerConfig,
    /// The media catalog (replaced on SIGHUP; sessions keep the files they opened).
    library: RefCell<Arc<MediaLibrary>>,
    shards: Vec<ShardHandle>,
    /// Sessions assigned per shard (counted here, so a burst of SETUPs spreads evenly).
    assigned: Vec<Cell<usize>>,
    sessions: RefCell<HashMap<SessionId, SessionRecord>>,
    /// Live channels by name.
    channels: HashMap<String, Arc<LiveChannel>>,
    /// Credentials and access rules, when any are configured (replaced on SIGHUP).
    auth: RefCell<Option<Authenticator>>,
    /// Connection, viewer and bandwidth limits.
    admission: RefCell<Admission>,
    next_conn: Cell<u64>,
    local_addr: SocketAddr,
    limits: Limits,
    /// Statistics of every session, stream and shard (see `stats::hub`).
    hub: RefCell<Hub>,
    /// Play tokens: the signing key, whether RTSP needs one, refusals so far.
    tokens: RefCell<TokenPolicy>,
    /// Who may do what over HTTP (replaced on SIGHUP).
    http_access: RefCell<HttpAccess>,
    /// Catalog entries for the API, by stream name.
    catalog: operator::CatalogCache,
    /// Budget of log lines per client address.
    log_limit: RefCell<LogLimiter>,
    /// Refused requests by status code since start (`/metrics`; the log is rate-limited).
    refused: RefCell<BTreeMap<u16, u64>>,
}

/// Play-token settings of the control thread.
struct TokenPolicy {
    key: TokenKey,
    required: bool,
    refusals: u64,
}

impl TokenPolicy {
    fn from_config(config: &ServerConfig) -> Self {
        let key = match &config.token_secret {
            Some(secret) => TokenKey::from_secret(secret),
            None => TokenKey::random(),
        };
        Self {
            key,
            required: config.require_token,
            refusals: 0,
        }
    }
}

fn http_access(config: &ServerConfig) -> HttpAccess {
    HttpAccess {
        admin_token: config.admin_token.clone(),
        api_read: config.api_read,
    }
}

/// What a connection learns from handling one request.
struct Outcome {
    response: Response,
    close: bool,
    /// Shard command to send once the response is written (PLAY's `Start`).
    after_response: Option<(usize, ShardCommand)>,
    /// Why a request was refused, for its one log line.
    reason: Option<String>,
}

/// A refused request: the status to answer and, when there is more to say, why.
struct Refusal {
    status: StatusCode,
    reason: Option<String>,
}

impl From<StatusCode> for Refusal {
    fn from(status: StatusCode) -> Self {
        Self {
            status,
            reason: None,
        }
    }
}

impl Refusal {
    fn because(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: Some(reason.into()),
        }
    }
}

/// Per-connection context handed to request handlers.
struct Conn {
    id: u64,
    peer: SocketAddr,
    /// Our own address as this connection reached it (a concrete address even when the
    /// server listens on a wildcard).
    local: SocketAddr,
    sink: Arc<InterleavedSink>,
}

/// A running server: the control thread and its shards.
pub struct RunningServer {
    /// The RTSP address actually bound.
    pub local_addr: SocketAddr,
    /// The HTTP address actually bound, when the HTTP side is on.
    pub http_addr: Option<SocketAddr>,
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

/// Binds the RTSP port, starts the shards and the control thread.
/// Re-reads the configuration and media catalog (on SIGHUP).
pub type Reloader = Box<dyn Fn() -> Result<(ServerConfig, MediaLibrary), String> + Send>;

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
    let tokens = TokenPolicy::from_config(&config);
    if tokens.key.ephemeral && (config.require_token || http_addr.is_some()) {
        tracing::info!("no token-secret configured: play tokens are signed with a random per-run secret and die with the process");
    }
    if config.require_token {
        tracing::info!("RTSP DESCRIBE and SETUP need a play token (?token=)");
    }
    let shards = crate::shard::spawn_shards(
        config.shards,
        local_addr.ip(),
        config.send,
        config.stats,
        config.shard_nice,
    )?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
    let library = Arc::new(library);
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
        channels.insert(name.clone(), Arc::new(channel));
    }
    let auth = Authenticator::new(
        config.users.clone(),
        config.access.clone(),
        config.allow_basic,
    );
    if auth.is_some() {
        tracing::info!(
            users = config.users.len(),
            rules = config.access.len(),
            basic = config.allow_basic,
            "authentication required (Digest SHA-256/MD5)"
        );
    }
    let admission = RefCell::new(Admission::new(config.admission, config.shards));
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
            let ctl = Rc::new(Control {
                hub: RefCell::new(hub),
                tokens: RefCell::new(tokens),
                http_access: RefCell::new(http_access(&config)),
                catalog: operator::CatalogCache::default(),
                log_limit: RefCell::new(LogLimiter::default()),
                refused: RefCell::new(BTreeMap::new()),
                assigned: shards.iter().map(|_| Cell::new(0)).collect(),
                shards,
                config,
                library: RefCell::new(library),
                sessions: RefCell::new(HashMap::new()),
                channels,
                auth: RefCell::new(auth),
                admission,
                next_conn: Cell::new(0),
                local_addr,
                limits: Limits::default(),
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
            local.block_on(&rt, run_control(ctl.clone(), listener, shutdown_rx, reload));
            // Teardown (RTCP BYE) to every session, then stop and join the shards once the
            // connection tasks holding the control state are gone.
            ctl.shutdown_all();
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
        shutdown: Some(shutdown_tx),
        join: Some(join),
    })
}

async fn run_control(
    ctl: Rc<Control>,
    listener: StdTcpListener,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
    reload: Option<Reloader>,
) {
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // SIGIO: a writer is waiting for one of our read leases (a media file is about to be
    // truncated or rewritten in place). Registered before any file is mapped: SIGIO's default
    // action would end the process.
    let mut sigio = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::io()).ok();
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
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::task::spawn_local(serve_connection(ctl.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted; stopping"); break; }
            _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                tracing::info!("SIGTERM; stopping");
                break;
            }
            _ = async { match sigio.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                ctl.revoke_changing_media();
            }
            _ = async { match sighup.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                match &reload {
                    Some(reload) => match reload() {
                        Ok((config, library)) => ctl.apply_reload(config, library),
                        Err(e) => tracing::warn!("SIGHUP: reload failed, keeping the running configuration: {e}"),
                    },
                    None => tracing::info!("SIGHUP: nothing to reload"),
                }
            }
        }
    }
}

/// Once a second: shard rates, rolling windows and a history point in the hub.
async fn tick_statistics(ctl: Rc<Control>) {
    let mut tick = tokio::time::interval(STATS_TICK);
    loop {
        tick.tick().await;
        ctl.hub.borrow_mut().tick(Instant::now());
    }
}

/// Every [`SHARD_EVENTS_TICK`]: shard reports into the hub, and the records of sessions a
/// shard ended on its own dropped. Never blocks: the queues are read with `try_recv`.
async fn drain_shard_events(ctl: Rc<Control>) {
    let mut tick = tokio::time::interval(SHARD_EVENTS_TICK);
    loop {
        tick.tick().await;
        ctl.drain_shard_events(Instant::now());
    }
}

/// Tears down sessions idle for longer than the timeout (RFC 2326 §12.37).
async fn reap_expired(ctl: Rc<Control>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let expired: Vec<(SessionId, String)> = ctl
            .sessions
            .borrow()
            .iter()
            .filter_map(|(&id, r)| r.expiry(now, &ctl.config).map(|why| (id, why)))
            .collect();
        for (id, why) in expired {
            if let Some(rec) = ctl.remove_session(id) {
                if ctl.may_log(rec.peer.ip()) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session {why}");
                }
            }
        }
        let closed = ctl.log_limit.borrow_mut().sweep(now);
        for s in closed {
            log_suppressed(s);
        }
    }
}

async fn serve_connection(ctl: Rc<Control>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let sink = match socket2::SockRef::from(&stream)
        .try_clone()
        .and_then(|s| InterleavedSink::new(s.into()))
    {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(%peer, "connection setup: {e}");
            return;
        }
    };
    let admitted = ctl.admission.borrow_mut().open_connection(peer.ip());
    if let Err(r) = admitted {
        ctl.count_refusal(r.status);
        if ctl.may_log(peer.ip()) {
            tracing::warn!(%peer, "connection refused: {}", r.why);
        }
        let mut bytes = Vec::new();
        ctl.common_headers(Response::new(r.status))
            .header("Retry-After", r.retry_after_secs.to_string())
            .header("Connection", "close")
            .serialize(&mut bytes);
        let _ = sink.write_parts(&[&bytes], true);
        let _ = flush_sink(&stream, &sink).await;
        return;
    }
    let mut rate = ctl.admission.borrow().request_rate();
    let conn_id = ctl.next_conn.get();
    ctl.next_conn.set(conn_id + 1);
    let conn = Conn {
        id: conn_id,
        peer,
        local: stream.local_addr().unwrap_or(ctl.local_addr),
        sink,
    };
    let max_buffer = ctl.limits.max_head_bytes + ctl.limits.max_body_bytes + 8;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let timeout = ctl.config.session_timeout;
    let mut idle_deadline = tokio::time::Instant::now() + timeout;
    let mut partial_since: Option<tokio::time::Instant> = None;
    'conn: loop {
        // Handle every complete message already buffered (pipelining, RFC 2326 §12.17).
        loop {
            match parse_message(&buf, &ctl.limits) {
                Ok(None) => break,
                Ok(Some(Parsed::Interleaved {
                    channel,
                    payload_len,
                    consumed,
                })) => {
                    if buf.len() < consumed {
                        break;
                    }
                    // Any frame from the client is liveness for its sessions; one on a track's
                    // RTCP channel is that session's RTCP.
                    ctl.touch_conn_sessions(conn.id, channel);
                    ctl.interleaved_rtcp(conn.id, channel, &buf[consumed - payload_len..consumed]);
                    buf.drain(..consumed);
                }
                Ok(Some(Parsed::Request { request, consumed })) => {
                    buf.drain(..consumed);
                    let out = if rate.allow(Instant::now()) {
                        ctl.handle(&request, &conn).await
                    } else {
                        ctl.admission.borrow_mut().refused += 1;
                        let refused = Refused {
                            status: StatusCode::ServiceUnavailable,
                            retry_after_secs: 1,
                            why: "request rate over max-requests-per-sec".into(),
                        };
                        ctl.finish(&request, &conn, over_limit(refused))
                    };
                    let mut bytes = Vec::with_capacity(512);
                    out.response.serialize(&mut bytes);
                    if conn.sink.write_parts(&[&bytes], true).is_err() || out.close {
                        break 'conn;
                    }
                    if let Some((shard, cmd)) = out.after_response {
                        if let Err(e) = ctl.shards[shard].send(cmd) {
                            tracing::warn!("{e}");
                        }
                    }
                }
                Err(e) => {
                    let status = e.status();
                    ctl.count_refusal(status);
                    if ctl.may_log(peer.ip()) {
                        tracing::warn!(%peer, status = status.code(), "bad request: {e}");
                    }
                    let mut resp = Response::new(status);
                    if let Some(cseq) = e.cseq {
                        resp = resp.header("CSeq", cseq.to_string());
                    }
                    let mut bytes = Vec::new();
                    ctl.common_headers(resp)
                        .header("Connection", "close")
                        .serialize(&mut bytes);
                    let _ = conn.sink.write_parts(&[&bytes], true);
                    // Framing is lost after a malformed message: close the connection.
                    let _ = flush_sink(&stream, &conn.sink).await;
                    break 'conn;
                }
            }
        }
        if buf.len() > max_buffer || conn.sink.is_closed() {
            break;
        }
        let want_flush = conn.sink.backlog_bytes() > 0;
        // A request must arrive whole within HEAD_TIMEOUT of its first byte, however slowly
        // it trickles: otherwise a client sending one byte a second (slowloris) would keep
        // its connection forever, since every byte resets the idle timer.
        let partial_deadline = if buf.is_empty() {
            partial_since = None;
            None
        } else {
            let since = *partial_since.get_or_insert_with(tokio::time::Instant::now);
            Some(since + HEAD_TIMEOUT.min(timeout))
        };
        tokio::select! {
            ready = stream.readable() => {
                if ready.is_err() {
                    break;
                }
                match stream.try_read_buf(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => idle_deadline = tokio::time::Instant::now() + timeout,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            _ = stream.writable(), if want_flush => {
                let _ = stream.try_io(Interest::WRITABLE, || conn.sink.flush().map(drop));
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if ctl.may_log(peer.ip()) {
                    tracing::info!(%peer, "closing connection idle for {timeout:?}");
                }
                break;
            }
            _ = async { tokio::time::sleep_until(partial_deadline.unwrap_or(idle_deadline)).await }, if partial_deadline.is_some() => {
                ctl.count_refusal(StatusCode::RequestTimeout);
                if ctl.may_log(peer.ip()) {
                    tracing::info!(%peer, status = 408, "closing connection: request incomplete after {:?}", HEAD_TIMEOUT.min(timeout));
                }
                let mut bytes = Vec::new();
                ctl.common_headers(Response::new(StatusCode::RequestTimeout))
                    .header("Connection", "close")
                    .serialize(&mut bytes);
                let _ = conn.sink.write_parts(&[&bytes], true);
                let _ = flush_sink(&stream, &conn.sink).await;
                break;
            }
        }
    }
    ctl.connection_closed(conn.id);
    ctl.admission.borrow_mut().close_connection(peer.ip());
}

/// Pushes out a connection's backlog, giving up after a short grace period.
async fn flush_sink(stream: &TcpStream, sink: &InterleavedSink) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while sink.backlog_bytes() > 0 {
        tokio::select! {
            r = stream.writable() => r?,
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
        match stream.try_io(Interest::WRITABLE, || sink.flush()) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A request over an admission limit: 503 or 453 with `Retry-After` (RFC 2326 §12.31).
fn over_limit(r: Refused) -> Outcome {
    let mut out = refuse(Refusal::because(r.status, r.why));
    out.response
        .headers
        .insert("Retry-After", r.retry_after_secs.to_string());
    out
}

fn refuse(r: Refusal) -> Outcome {
    Outcome {
        reason: r.reason,
        ..error(r.status)
    }
}

/// How long the control thread waits for a shard to answer PLAY or PAUSE. A shard answers
/// within one tick (≤ 50 ms) unless it is stuck or far behind; the client then gets 503
/// with `Retry-After` and the operator one log line, instead of a request that never ends.
const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits up to `limit` for shard `shard`'s answer to `what`: 503 (with one log line) when
/// it does not come in time, 500 when the shard dropped the request.
async fn shard_answer<T>(
    rx: tokio::sync::oneshot::Receiver<Option<T>>,
    shard: usize,
    what: &str,
    limit: Duration,
) -> Result<T, Outcome> {
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(Some(v))) => Ok(v),
        Ok(_) => Err(error(StatusCode::InternalServerError)),
        Err(_) => {
            tracing::warn!(
                shard,
                "shard did not answer {what} within {limit:?}; answering 503"
            );
            Err(Outcome {
                response: Response::new(StatusCode::ServiceUnavailable).header("Retry-After", "1"),
                close: false,
                after_response: None,
                reason: None,
            })
        }
    }
}

fn error(status: StatusCode) -> Outcome {
    Outcome {
        response: Response::new(status),
        close: false,
        after_response: None,
        reason: None,
    }
}

/// The one line that stands for a source's suppressed lines (see `log_limit`).
fn log_suppressed(s: Suppressed) {
    match s.source {
        Some(source) => tracing::info!(
            peer = %source,
            "{} more log lines like these from {source} suppressed",
            s.lines
        ),
        None => tracing::info!(
            "{} more log lines like these from other addresses suppressed",
            s.lines
        ),
    }
}

impl Control {
    /// Whether a log line caused by the client at `source` may be written now; writes the
    /// summary of its earlier suppressed lines first when one is due.
    fn may_log(&self, source: IpAddr) -> bool {
        let gate = self.log_limit.borrow_mut().admit(source, Instant::now());
        match gate {
            Gate::Suppress => false,
            Gate::Log { earlier } => {
                if let Some(s) = earlier {
                    log_suppressed(s);
                }
                true
            }
        }
    }

    /// Counts a refused request (or connection) by its status, for `/metrics`.
    fn count_refusal(&self, status: StatusCode) {
        *self.refused.borrow_mut().entry(status.code()).or_insert(0) += 1;
    }

    fn common_headers(&self, resp: Response) -> Response {
        resp.header("Server", SERVER_NAME)
            .header("Date", httpdate::fmt_http_date(SystemTime::now()))
    }

    async fn handle(&self, req: &Request, conn: &Conn) -> Outcome {
        let out = match self.authorize(req, conn).await {
            Err(refused) => refused,
            Ok(user) => {
                let caller = Owner::of(conn, user.as_deref());
                self.dispatch(req, conn, &caller).await
            }
        };
        self.finish(req, conn, out)
    }

    /// Logs a refusal (one line) and completes the response: CSeq, Server, Date.
    fn finish(&self, req: &Request, conn: &Conn, mut out: Outcome) -> Outcome {
        if !matches!(out.response.status, StatusCode::Ok) {
            self.count_refusal(out.response.status);
        }
        if !matches!(out.response.status, StatusCode::Ok) && self.may_log(conn.peer.ip()) {
            let reason = out
                .reason
                .as_deref()
                .unwrap_or(out.response.status.reason());
            tracing::info!(peer = %conn.peer, method = req.method.as_str(), uri = %redact_token(&req.uri), status = out.response.status.code(), "request refused: {reason}");
        }
        let mut resp = Response::new(out.response.status);
        if let Some(cseq) = req.cseq() {
            resp = resp.header("CSeq", cseq.to_string());
        }
        for (k, v) in out.response.headers.iter() {
            // append: a 401 carries several WWW-Authenticate challenges.
            resp.headers.append(k, v);
        }
        resp.body = std::mem::take(&mut out.response.body);
        out.response = self.common_headers(resp);
        out
    }

    /// RFC 2326 §11.4.1 / RFC 7616: every method but OPTIONS needs credentials once users
    /// are configured. Returns the authenticated user (`None` when the stream is open to
    /// anyone), or the refusal.
    ///
    /// A request that names one of its own client's sessions is authorized against that
    /// session's stream, not whatever stream its URI names: otherwise a public stream's URI
    /// would carry requests into a restricted stream's session.
    async fn authorize(&self, req: &Request, conn: &Conn) -> Result<Option<String>, Outcome> {
        if req.method == Method::Options {
            return Ok(None);
        }
        let path = match self.session_stream(req, conn.peer.ip()) {
            Some(stream) => stream,
            None => split_request_uri(&req.uri)
                .map(|p| p.segments.join("/"))
                .unwrap_or_default(),
        };
        let checked = {
            let mut guard = self.auth.borrow_mut();
            let Some(auth) = guard.as_mut() else {
                return Ok(None);
            };
            auth.check(
                req.method.as_str(),
                &req.uri,
                &path,
                req.header("Authorization"),
                conn.peer.ip(),
                Instant::now(),
            )
        };
        if !checked.wait.is_zero() {
            // The backoff slot (auth/backoff.rs), shared by all connections: held whether
            // the credentials were right or not, without blocking anyone else.
            tokio::time::sleep(checked.wait).await;
        }
        match checked.verdict {
            Verdict::Allowed(user) => Ok(user),
            Verdict::Forbidden(user) => Err(refuse(Refusal::because(
                StatusCode::Forbidden,
                format!("user {user:?} may not read {path:?}"),
            ))),
            Verdict::Throttled(r) => Err(over_limit(r)),
            Verdict::Challenge { stale, why } => {
                let mut out = refuse(Refusal::because(StatusCode::Unauthorized, why));
                let challenges = self
                    .auth
                    .borrow()
                    .as_ref()
                    .map(|a| a.challenges(stale))
                    .unwrap_or_default();
                for challenge in challenges {
                    out.response.headers.append("WWW-Authenticate", challenge);
                }
                Err(out)
            }
        }
    }

    /// The stream of the session a request names, when that session was created from the
    /// request's address (a session of another address is treated as unknown).
    fn session_stream(&self, req: &Request, addr: IpAddr) -> Option<String> {
        let id = parse_session_id(req.session_id()?)?;
        let sessions = self.sessions.borrow();
        let rec = sessions.get(&id).filter(|r| r.owner.addr == addr)?;
        Some(rec.media.name.clone())
    }

    async fn dispatch(&self, req: &Request, conn: &Conn, caller: &Owner) -> Outcome {
        match req.method {
            Method::Options => {
                // Keep-alive (RFC 2326 §10.1) for the caller's own sessions only. OPTIONS
                // needs no credentials, so only the address can be checked here.
                if let Some(id) = req.session_id().and_then(parse_session_id) {
                    if let Some(rec) = self.sessions.borrow().get(&id) {
                        if rec.owner.addr == caller.addr {
                            rec.activity.touch(Instant::now());
                        }
                    }
                }
                Outcome {
                    response: Response::new(StatusCode::Ok).header("Public", PUBLIC_METHODS),
                    close: false,
                    after_response: None,
                    reason: None,
                }
            }
            Method::Describe => self.describe(req, conn),
            Method::Setup => self.setup(req, conn, caller),
            Method::Play => self.play(req, conn, caller).await,
            Method::Pause => self.pause(req, caller).await,
            Method::Teardown => self.teardown(req, caller),
            // A keep-alive (RFC 2326 §10.8) is checked like any request naming a session.
            Method::GetParameter => match req.session_id().map(|_| self.session_for(req, caller)) {
                Some(Err(r)) => refuse(r),
                _ => Outcome {
                    response: Response::new(StatusCode::Ok),
                    close: false,
                    after_response: None,
                    reason: None,
                },
            },
            Method::SetParameter | Method::Announce | Method::Record | Method::Redirect => {
                Outcome {
                    response: Response::new(StatusCode::MethodNotAllowed)
                        .header("Allow", PUBLIC_METHODS),
                    close: false,
                    after_response: None,
                    reason: None,
                }
            }
        }
    }

    /// Looks up the stream a request URI names: the media and the leftover segments.
    fn resolve(&self, uri: &str) -> Result<(Arc<MediaFile>, Vec<String>), Refusal> {
        let path = split_request_uri(uri)
            .map_err(|e| Refusal::because(e.status(), format!("request URI: {e}")))?;
        let segments = path.segments;
        if let Some(ch) = segments.first().and_then(|name| self.channels.get(name)) {
            return Ok((ch.media.clone(), segments[1..].to_vec()));
        }
        let library = self.library.borrow().clone();
        match library.resolve(&segments) {
            Ok((media, used)) => Ok((media, segments[used..].to_vec())),
            Err(crate::media::library::LibraryError::NotFound(_)) => {
                Err(StatusCode::NotFound.into())
            }
            Err(e) => Err(Refusal::because(
                StatusCode::NotFound,
                format!("cannot serve: {e}"),
            )),
        }
    }

    /// The live channel playing `media`, if it is one.
    fn channel_of(&self, media: &Arc<MediaFile>) -> Option<Arc<LiveChannel>> {
        self.channels
            .values()
            .find(|c| Arc::ptr_eq(&c.media, media))
            .cloned()
    }

    /// `Content-Base` (RFC 2326 §12.11) of a stream, and the base of the RTP-Info URLs: the
    /// configured `public-address`, else our own address as the connection reached it —
    /// never the request's authority, which is whatever the client chose to write there.
    fn content_base(&self, conn: &Conn, media: &MediaFile) -> String {
        let authority = match &self.config.public_address {
            Some(public) => public.clone(),
            None => conn.local.to_string(),
        };
        format!("rtsp://{authority}/{}/", operator::encode_name(&media.name))
    }

    /// The play token of a DESCRIBE or SETUP. With `--require-token` it must be valid for
    /// `stream` and the peer (a missing one is 401, a bad one 403); the token to carry into
    /// control URLs is returned.
    fn check_token(
        &self,
        uri: &str,
        stream: &str,
        peer: IpAddr,
    ) -> Result<Option<String>, Box<Outcome>> {
        let query = split_request_uri(uri).ok().and_then(|p| p.query);
        let token = token_in_query(query.as_deref());
        let mut policy = self.tokens.borrow_mut();
        if !policy.required {
            return Ok(token.filter(|t| is_token_syntax(t)).map(str::to_owned));
        }
        let Some(token) = token else {
            policy.refusals += 1;
            let mut out = refuse(Refusal::because(
                StatusCode::Unauthorized,
                "no play token (?token=) in the URL",
            ));
            // RFC 2326 §11.4.1: a 401 carries a challenge; the token is not a credential
            // scheme RTSP clients know, so this one only names what is missing.
            out.response.headers.insert(
                "WWW-Authenticate",
                "Bearer realm=\"shardcast\", error=\"invalid_request\", error_description=\"play token required in the URL query\"".to_owned(),
            );
            return Err(Box::new(out));
        };
        match policy.key.verify(token, stream, peer, SystemTime::now()) {
            Ok(_) => Ok(Some(token.to_owned())),
            Err(e) => {
                policy.refusals += 1;
                Err(Box::new(refuse(Refusal::because(
                    StatusCode::Forbidden,
                    format!("{e}"),
                ))))
            }
        }
    }

    fn describe(&self, req: &Request, conn: &Conn) -> Outcome {
        let (media, rest) = match self.resolve(&req.uri) {
            Ok(r) => r,
            Err(r) => return refuse(r),
        };
        if !rest.is_empty() {
            return error(StatusCode::NotFound);
        }
        let token = match self.check_token(&req.uri, &media.name, conn.peer.ip()) {
            Ok(t) => t,
            Err(out) => return *out,
        };
        let live = self.channel_of(&media).is_some();
        let sdp = describe_sdp_with_token(&media, conn.local, live, token.as_deref());
        Outcome {
            response: Response::new(StatusCode::Ok)
                .header("Content-Base", self.content_base(conn, &media))
                .body("application/sdp", sdp.into_bytes()),
            close: false,
            after_response: None,
            reason: None,
        }
    }

    fn setup(&self, req: &Request, conn: &Conn, caller: &Owner) -> Outcome {
        let (media, rest) = match self.resolve(&req.uri) {
            Ok(r) => r,
            Err(r) => return refuse(r),
        };
        let track_index = match rest.as_slice() {
            [] if media.index.tracks.len() == 1 => 0,
            [] => return error(StatusCode::AggregateOperationNotAllowed),
            [one] => match one
                .strip_prefix("trackID=")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) if n < media.index.tracks.len() => n,
                _ => return error(StatusCode::NotFound),
            },
            _ => return error(StatusCode::NotFound),
        };
        let token = match self.check_token(&req.uri, &media.name, conn.peer.ip()) {
            Ok(t) => t,
            Err(out) => return *out,
        };
        let Some(transport) = req.header("Transport") else {
            return error(StatusCode::BadRequest);
        };
        let alternatives = match parse_transport(transport) {
            Ok(a) => a,
            Err(e) => {
                return refuse(Refusal::because(
                    StatusCode::UnsupportedTransport,
                    format!("transport {transport:?}: {e}"),
                ))
            }
        };
        // RFC 2326 §12.39 `mode`: this server only plays. A client asking to RECORD (publish)
        // is told its transport cannot be had, rather than given a session for it.
        if alternatives.iter().all(|a| !a.mode_play) {
            return refuse(Refusal::because(
                StatusCode::UnsupportedTransport,
                "mode=record: this server does not accept published streams",
            ));
        }
        let mut sessions = self.sessions.borrow_mut();
        let existing = req.session_id();
        let (id, shard) = match existing {
            Some(sid) => {
                let Some((id, rec)) = parse_session_id(sid)
                    .and_then(|id| sessions.get(&id).map(|r| (id, r)))
                    .filter(|(_, r)| r.owner == *caller)
                else {
                    return error(StatusCode::SessionNotFound);
                };
                if !Arc::ptr_eq(&rec.media, &media) {
                    return error(StatusCode::AggregateOperationNotAllowed);
                }
                if rec.state != SessionState::Ready {
                    return error(StatusCode::MethodNotValidInThisState);
                }
                (id, rec.shard)
            }
            None => {
                let mut order: Vec<usize> = (0..self.shards.len()).collect();
                order.sort_by_key(|&i| self.assigned[i].get());
                let shard = match self.admission.borrow_mut().open_viewer(
                    conn.peer.ip(),
                    media.bitrate_bps(),
                    &order,
                ) {
                    Ok(shard) => shard,
                    Err(r) => return over_limit(r),
                };
                let mut id: SessionId = rand::thread_rng().gen();
                while id == 0 || sessions.contains_key(&id) {
                    id = rand::thread_rng().gen();
                }
                (id, shard)
            }
        };
        let used_channels: Vec<u8> = sessions
            .get(&id)
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|t| t.track_index != track_index)
                    .filter_map(|t| match t.dest {
                        TrackDest::Interleaved {
                            rtp_channel,
                            rtcp_channel,
                        } => Some([rtp_channel, rtcp_channel]),
                        TrackDest::Udp { .. } => None,
                    })
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        let mut rng = rand::thread_rng();
        let ssrc: u32 = match self.channel_of(&media) {
            Some(ch) => ch.tracks[track_index].ssrc,
            None => rng.gen(),
        };
        let mut chosen = None;
        for alt in alternatives {
            if !alt.unicast || !alt.mode_play {
                continue;
            }
            match alt.lower {
                LowerTransport::Udp => {
                    if let Some((rtp, rtcp)) = alt.client_port {
                        // The client's own address only: `destination` redirection would let
                        // anyone aim a stream at a third party (RFC 2326 §12.39, §17).
                        let dest = TrackDest::Udp {
                            rtp: SocketAddr::new(conn.peer.ip(), rtp),
                            rtcp: SocketAddr::new(conn.peer.ip(), rtcp),
                        };
                        let reply =
                            format_udp_reply((rtp, rtcp), self.shards[shard].server_ports, ssrc);
                        chosen = Some((dest, reply, false));
                        break;
                    }
                }
                LowerTransport::Tcp => {
                    let (a, b) = alt.interleaved.unwrap_or_else(|| {
                        let a = (track_index as u8).saturating_mul(2);
                        (a, a.saturating_add(1))
                    });
                    if used_channels.contains(&a) || used_channels.contains(&b) {
                        continue;
                    }
                    let dest = TrackDest::Interleaved {
                        rtp_channel: a,
                        rtcp_channel: b,
                    };
                    chosen = Some((dest, format_tcp_reply((a, b), ssrc), true));
                    break;
                }
            }
        }
        let Some((dest, transport_reply, is_tcp)) = chosen else {
            return refuse(Refusal::because(
                StatusCode::UnsupportedTransport,
                format!("no supported alternative in transport {transport:?}"),
            ));
        };
        // A live channel's viewers share its numbering space (one SSRC per channel track).
        let (initial_seq, initial_rtptime) = match self.channel_of(&media) {
            Some(ch) => (ch.tracks[track_index].seq0, ch.tracks[track_index].ts0),
            None => (rng.gen(), rng.gen()),
        };
        let setup = TrackSetup {
            track_index,
            payload_type: FIRST_PAYLOAD_TYPE + track_index as u8,
            ssrc,
            initial_seq,
            initial_rtptime,
            dest,
        };
        let rec = sessions.entry(id).or_insert_with(|| {
            self.assigned[shard].set(self.assigned[shard].get() + 1);
            SessionRecord {
                media: media.clone(),
                shard,
                tracks: Vec::new(),
                state: SessionState::Ready,
                on_shard: false,
                activity: Arc::new(Activity::default()),
                tcp_conn: None,
                viewer_ssrcs: ViewerSsrcs::default(),
                peer: conn.peer,
                bitrate_bps: media.bitrate_bps(),
                origin: conn.sink.clone(),
                token: None,
                owner: caller.clone(),
                handle: self.new_handle(),
                created: Instant::now(),
            }
        });
        if token.is_some() {
            rec.token = token;
        }
        rec.activity.touch(Instant::now());
        rec.tracks.retain(|t| t.track_index != track_index);
        rec.tracks.push(setup);
        if is_tcp {
            rec.tcp_conn = Some((conn.id, conn.sink.clone()));
        }
        if self.may_log(conn.peer.ip()) {
            tracing::info!(session = %format_args!("{id:016X}"), peer = %conn.peer, stream = %media.name, track = track_index, shard, transport = %transport_reply, "setup");
        }
        Outcome {
            response: Response::new(StatusCode::Ok)
                .header("Transport", transport_reply)
                .header("Session", self.session_header(id)),
            close: false,
            after_response: None,
            reason: None,
        }
    }

    fn session_header(&self, id: SessionId) -> String {
        format!(
            "{id:016X};timeout={}",
            self.config.session_timeout.as_secs()
        )
    }

    /// A fresh API handle, unrelated to any session id.
    fn new_handle(&self) -> SessionHandle {
        rand::thread_rng().gen()
    }

    /// Finds the session a request names, if `caller` owns it (any other client gets the
    /// answer of an unknown id); checks the URI is its aggregate (or its only track).
    fn session_for(&self, req: &Request, caller: &Owner) -> Result<SessionId, Refusal> {
        let id = req
            .session_id()
            .and_then(parse_session_id)
            .ok_or(Refusal::from(StatusCode::SessionNotFound))?;
        let sessions = self.sessions.borrow();
        let rec = sessions
            .get(&id)
            .ok_or(Refusal::from(StatusCode::SessionNotFound))?;
        if rec.owner != *caller {
            return Err(Refusal::because(
                StatusCode::SessionNotFound,
                "session belongs to another client",
            ));
        }
        rec.activity.touch(Instant::now());
        if req.uri != "*" {
            let (media, rest) = self.resolve(&req.uri)?;
            if !Arc::ptr_eq(&media, &rec.media) {
                return Err(Refusal::because(
                    StatusCode::NotFound,
                    "URI names another stream than the session's",
                ));
            }
            if !rest.is_empty() && rec.tracks.len() > 1 {
                return Err(StatusCode::OnlyAggregateOperationAllowed.into());
            }
        }
        Ok(id)
    }

    async fn play(&self, req: &Request, conn: &Conn, caller: &Owner) -> Outcome {
        let id = match self.session_for(req, caller) {
            Ok(id) => id,
            Err(r) => return refuse(r),
        };
        let (rx, shard_index, content_base, track_order, live, token) = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(rec) = sessions.get_mut(&id) else {
                return error(StatusCode::SessionNotFound);
            };
            let duration = rec.media.duration().as_secs_f64();
            let live = self.channel_of(&rec.media).is_some();
            // RFC 2326 §12.34/§12.35: no trick play yet, so a Scale or Speed is checked and
            // answered with the rate actually used, 1.
            for (name, header) in [("Scale", RateHeader::Scale), ("Speed", RateHeader::Speed)] {
                if let Some(Err(e)) = req.header(name).map(|v| check_rate(header, v)) {
                    return refuse(Refusal::because(
                        StatusCode::BadRequest,
                        format!("{name}: {e}"),
                    ));
                }
            }
            let window = match req.header("Range") {
                // A live channel cannot seek: every PLAY joins at the live edge, whatever
                // Range asks (players such as ffmpeg always send `npt=0.000-`).
                _ if live => vod_play_window(None, duration),
                range => vod_play_window(range, duration),
            };
            let window = match window {
                Ok(w) => w,
                Err(e) => return refuse(Refusal::because(e.status(), format!("Range: {e}"))),
            };
            let setup = (!rec.on_shard).then(|| {
                Box::new(SessionSetup {
                    id,
                    media: rec.media.clone(),
                    tracks: rec.tracks.clone(),
                    sink: rec.tcp_conn.as_ref().map(|(_, sink)| sink.clone()),
                    activity: rec.activity.clone(),
                    payload_budget_bytes: self.config.payload_budget_bytes,
                    cname: format!("shardcast@{}", self.local_addr.ip()),
                    live: self.channel_of(&rec.media),
                })
            });
            let (tx, rx) = tokio::sync::oneshot::channel();
            if let Err(e) = self.shards[rec.shard].send(ShardCommand::Play {
                id,
                setup,
                start_npt_secs: window.start,
                end: window.end,
                reply: tx,
            }) {
                tracing::warn!("{e}");
                return Outcome {
                    response: Response::new(StatusCode::ServiceUnavailable)
                        .header("Retry-After", "1"),
                    close: false,
                    after_response: None,
                    reason: None,
                };
            }
            rec.on_shard = true;
            let order: Vec<usize> = rec.tracks.iter().map(|t| t.track_index).collect();
            (
                rx,
                rec.shard,
                self.content_base(conn, &rec.media),
                order,
                live,
                rec.token.clone(),
            )
        };
        // A tokenized SETUP URL is `trackID=N?token=...`: RTP-Info names the same URL, since
        // clients (ffmpeg, retina) match RTP-Info entries to their control URLs verbatim.
        let token_suffix = token.map(|t| format!("?token={t}")).unwrap_or_default();
        let started = match shard_answer(rx, shard_index, "PLAY", SHARD_ANSWER_TIMEOUT).await {
            Ok(started) => started,
            Err(outcome) => return outcome,
        };
        let shard = match self.sessions.borrow_mut().get_mut(&id) {
            Some(rec) => {
                rec.state = SessionState::Playing;
                let mut hub = self.hub.borrow_mut();
                if !hub.has_session(id) {
                    hub.session_started(SessionMeta {
                        id,
                        handle: rec.handle,
                        stream: rec.media.name.clone(),
                        peer: rec.peer,
                        transport: if rec.tcp_conn.is_some() {
                            StatsTransport::Tcp
                        } else {
                            StatsTransport::Udp
                        },
                        shard: rec.shard,
                        track_kinds: rec
                            .tracks
                            .iter()
                            .map(|t| match rec.media.index.tracks[t.track_index].kind {
                                TrackKind::Video => "video",
                                TrackKind::Audio => "audio",
                            })
                            .collect(),
                    });
                }
                rec.shard
            }
            None => return error(StatusCode::SessionNotFound),
        };
        let rtp_info: Vec<String> = track_order
            .iter()
            .filter_map(|ti| started.tracks.iter().find(|t| t.track_index == *ti))
            .map(|t| {
                format!(
                    "url={content_base}trackID={}{token_suffix};seq={};rtptime={}",
                    t.track_index, t.seq, t.rtptime
                )
            })
            .collect();
        let mut outcome = Outcome {
            response: Response::new(StatusCode::Ok)
                .header(
                    "Range",
                    if live {
                        "npt=now-".to_owned()
                    } else {
                        format_npt_range(started.start_npt_secs, Some(started.end_npt_secs))
                    },
                )
                .header("RTP-Info", rtp_info.join(","))
                .header("Session", self.session_header(id)),
            close: false,
            after_response: Some((shard, ShardCommand::Start { id })),
            reason: None,
        };
        for name in ["Scale", "Speed"] {
            if req.header(name).is_some() {
                outcome.response = outcome.response.header(name, "1");
            }
        }
        outcome
    }

    async fn pause(&self, req: &Request, caller: &Owner) -> Outcome {
        let id = match self.session_for(req, caller) {
            Ok(id) => id,
            Err(r) => return refuse(r),
        };
        let rx = {
            let sessions = self.sessions.borrow();
            let Some(rec) = sessions.get(&id) else {
                return error(StatusCode::SessionNotFound);
            };
            // A live broadcast cannot be held (RFC 2326 §10.6 presumes stored media), and
            // neither can a session that is not playing.
            if rec.state == SessionState::Ready
                || !rec.on_shard
                || self.channel_of(&rec.media).is_some()
            {
                return error(StatusCode::MethodNotValidInThisState);
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            if self.shards[rec.shard]
                .send(ShardCommand::Pause { id, reply: tx })
                .is_err()
            {
                return error(StatusCode::ServiceUnavailable);
            }
            (rx, rec.shard)
        };
        let pos = match shard_answer(rx.0, rx.1, "PAUSE", SHARD_ANSWER_TIMEOUT).await {
            Ok(pos) => pos,
            Err(outcome) => return outcome,
        };
        let duration = match self.sessions.borrow_mut().get_mut(&id) {
            Some(rec) => {
                rec.state = SessionState::Paused;
                rec.media.duration().as_secs_f64()
            }
            None => return error(StatusCode::SessionNotFound),
        };
        Outcome {
            response: Response::new(StatusCode::Ok)
                .header("Range", format_npt_range(pos, Some(duration)))
                .header("Session", self.session_header(id)),
            close: false,
            after_response: None,
            reason: None,
        }
    }

    fn teardown(&self, req: &Request, caller: &Owner) -> Outcome {
        let id = match self.session_for(req, caller) {
            Ok(id) => id,
            Err(r) => return refuse(r),
        };
        self.remove_session(id);
        Outcome {
            response: Response::new(StatusCode::Ok),
            close: false,
            after_response: None,
            reason: None,
        }
    }

    fn touch_conn_sessions(&self, conn: u64, _channel: u8) {
        let now = Instant::now();
        for rec in self.sessions.borrow().values() {
            if rec.tcp_conn.as_ref().is_some_and(|(c, _)| *c == conn) {
                rec.activity.touch(now);
            }
        }
    }

    /// RTCP that arrived interleaved on connection `conn`, channel `channel` (RFC 2326
    /// §10.12): digested with the tracks of the session whose RTCP channel it is (RFC 3550
    /// §6.4), counted in the hub; a BYE ends the session (§6.6) if it names an SSRC the viewer
    /// reported from in an earlier frame (others are counted and ignored). With `--stats off`,
    /// or on a channel that is no track's RTCP channel (RTP from the client), it is liveness
    /// only.
    fn interleaved_rtcp(&self, conn: u64, channel: u8, payload: &[u8]) {
        if !self.config.stats {
            return;
        }
        // The sessions of this connection receiving RTCP on `channel`: usually one, but a
        // client may run several sessions on one connection with the same channel numbers;
        // the one whose SSRCs the report names is meant.
        let candidates: Vec<(SessionId, Vec<TrackKey>, ViewerSsrcs)> = self
            .sessions
            .borrow()
            .iter()
            .filter(|(_, r)| r.tcp_conn.as_ref().is_some_and(|(c, _)| *c == conn))
            .filter(|(_, r)| {
                r.tracks.iter().any(|t| {
                    matches!(t.dest, TrackDest::Interleaved { rtcp_channel, .. } if rtcp_channel == channel)
                })
            })
            .map(|(&id, r)| {
                let keys = r
                    .tracks
                    .iter()
                    .map(|t| TrackKey {
                        ssrc: t.ssrc,
                        clock_rate_hz: r.media.index.tracks[t.track_index].codec.clock_rate_hz(),
                    })
                    .collect();
                (id, keys, r.viewer_ssrcs)
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let arrival = NtpTime::now();
        let mut hub = self.hub.borrow_mut();
        hub.interleaved_rtcp.received += 1;
        let digests = candidates
            .iter()
            .map(|(id, keys, known)| digest_rtcp(payload, keys, arrival, *known).map(|d| (*id, d)));
        let best = match digests.collect::<Result<Vec<_>, _>>() {
            Ok(all) => all.into_iter().min_by_key(|(_, d)| d.unknown_ssrc_blocks),
            Err(e) => {
                hub.interleaved_rtcp.invalid += 1;
                tracing::debug!(conn, channel, "interleaved RTCP dropped: {e}");
                None
            }
        };
        let Some((id, digest)) = best else {
            return;
        };
        hub.interleaved_rtcp.unknown_ssrc += u64::from(digest.unknown_ssrc_blocks);
        hub.record_receptions(id, &digest.receptions);
        if let Some(rec) = self.sessions.borrow_mut().get_mut(&id) {
            rec.viewer_ssrcs = digest.viewer_ssrcs;
        }
        if digest.bye_refused {
            hub.interleaved_rtcp.byes_refused += 1;
            tracing::debug!(session = %format_args!("{id:016X}"), "interleaved RTCP BYE ignored: it names no SSRC the viewer reported from before (RFC 3550 §6.6)");
        }
        if digest.bye {
            hub.interleaved_rtcp.byes += 1;
            drop(hub);
            if let Some(rec) = self.remove_session(id) {
                if self.may_log(rec.peer.ip()) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session ended: viewer sent RTCP BYE");
                }
            }
        }
    }

    /// Applies what the shards reported: statistics into the hub, and the records of sessions
    /// a shard ended by itself (viewer BYE, TCP viewer too slow) dropped like the reaper does,
    /// without a Teardown back (the shard has already freed it).
    fn drain_shard_events(&self, now: Instant) {
        for shard in &self.shards {
            // At most a queue's worth per shard and tick, so a runaway shard cannot hold the
            // control thread.
            for _ in 0..EVENT_QUEUE_DEPTH {
                let Ok(event) = shard.events.try_recv() else {
                    break;
                };
                match event {
                    ShardEvent::Report(report) => {
                        self.hub.borrow_mut().apply_report(&report, now);
                    }
                    ShardEvent::SessionEnded { id, reason } => {
                        let why = match reason {
                            EndReason::ClientBye => "viewer sent RTCP BYE",
                            EndReason::TooSlow => "viewer too slow (TCP backlog full)",
                        };
                        let rec = self.drop_session(id, false);
                        if let Some(rec) = rec.filter(|r| self.may_log(r.peer.ip())) {
                            tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, shard = shard.index, "session ended by its shard: {why}");
                        }
                    }
                }
            }
        }
    }

    /// Ends a session: its record, hub entry and admission accounting go, and its shard is
    /// told to tear it down (RTCP BYE).
    fn remove_session(&self, id: SessionId) -> Option<SessionRecord> {
        self.drop_session(id, true)
    }

    /// Drops a session's record, hub entry and admission accounting; `tell_shard` sends the
    /// shard a Teardown (false when the shard ended the session itself).
    fn drop_session(&self, id: SessionId, tell_shard: bool) -> Option<SessionRecord> {
        let rec = self.sessions.borrow_mut().remove(&id)?;
        self.hub.borrow_mut().session_ended(id);
        self.admission
            .borrow_mut()
            .close_viewer(rec.peer.ip(), rec.bitrate_bps, rec.shard);
        let n = &self.assigned[rec.shard];
        n.set(n.get().saturating_sub(1));
        if rec.on_shard && tell_shard {
            let _ = self.shards[rec.shard].send(ShardCommand::Teardown { id });
        }
        Some(rec)
    }

    fn connection_closed(&self, conn: u64) {
        let ids: Vec<SessionId> = self
            .sessions
            .borrow()
            .iter()
            .filter(|(_, r)| r.tcp_conn.as_ref().is_some_and(|(c, _)| *c == conn))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if let Some(rec) = self.remove_session(id) {
                if self.may_log(rec.peer.ip()) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, "interleaved session ended with its connection");
                }
            }
        }
    }

    /// Applies a reloaded configuration: users, access rules, Basic, admission limits and
    /// the media catalog take effect for new requests; running sessions keep their files.
    /// Settings that shape threads or sockets need a restart and are reported.
    fn apply_reload(&self, config: ServerConfig, library: MediaLibrary) {
        let auth = Authenticator::new(
            config.users.clone(),
            config.access.clone(),
            config.allow_basic,
        );
        *self.auth.borrow_mut() = auth;
        self.admission.borrow_mut().set_limits(config.admission);
        *self.library.borrow_mut() = Arc::new(library);
        {
            let mut tokens = self.tokens.borrow_mut();
            tokens.required = config.require_token;
            match &config.token_secret {
                Some(secret) => tokens.key = TokenKey::from_secret(secret),
                // A configured secret was removed: tokens signed with it must stop working.
                None if !tokens.key.ephemeral => tokens.key = TokenKey::random(),
                // Still no secret: keep this run's random one, so issued tokens stay valid.
                None => {}
            }
        }
        *self.http_access.borrow_mut() = http_access(&config);
        let old = &self.config;
        let mut needs_restart = Vec::new();
        if config.http_listen != old.http_listen
            && !matches!(config.http_listen, Some(a) if a.port() == 0)
        {
            needs_restart.push("http-listen");
        }
        if config.listen != old.listen && config.listen.port() != 0 {
            needs_restart.push("listen");
        }
        if config.shards != old.shards {
            needs_restart.push("shards");
        }
        if config.payload_budget_bytes != old.payload_budget_bytes {
            needs_restart.push("payload-budget");
        }
        if config.session_timeout != old.session_timeout {
            needs_restart.push("session-timeout");
        }
        if config.live != old.live || config.live_start != old.live_start {
            needs_restart.push("live");
        }
        tracing::info!(
            users = config.users.len(),
            rules = config.access.len(),
            sessions = self.sessions.borrow().len(),
            "SIGHUP: reloaded users, access rules, limits, media catalog, play-token and API settings"
        );
        if !needs_restart.is_empty() {
            tracing::warn!(
                "SIGHUP: changes to {} take effect after a restart",
                needs_restart.join(", ")
            );
        }
    }

    /// Ends the viewers of media files that are about to change on disk (their read lease is
    /// being broken): BYE, then the last `Arc` drops, the mapping goes, the lease is released
    /// and the writer proceeds. New requests re-open and re-index the file.
    fn revoke_changing_media(&self) {
        let names = self.library.borrow().revoke_breaking();
        let doomed: Vec<(SessionId, String)> = self
            .sessions
            .borrow()
            .iter()
            .filter(|(_, r)| r.media.revoke_if_breaking())
            .map(|(&id, r)| (id, r.media.name.clone()))
            .collect();
        for (id, name) in &doomed {
            self.remove_session(*id);
            tracing::info!(session = %format_args!("{id:016X}"), stream = %name, "session ended: its media file is changing on disk");
        }
        if !names.is_empty() || !doomed.is_empty() {
            tracing::warn!(files = ?names, sessions = doomed.len(), "media changing on disk: viewers ended, mapping released");
        }
    }

    fn shutdown_all(&self) {
        let ids: Vec<SessionId> = self.sessions.borrow().keys().copied().collect();
        for id in ids {
            self.remove_session(id);
        }
    }
}

/// The SDP (RFC 8866) announced for a media file in DESCRIBE.
/// Live channels announce `a=range:npt=now-` (RFC 2326 §C.1.5).
pub fn describe_sdp(media: &MediaFile, origin: SocketAddr, live: bool) -> String {
    describe_sdp_with_token(media, origin, live, None)
}

/// [`describe_sdp`] for a DESCRIBE that carried a play token: each track's control URL
/// becomes `trackID=N?token=...` (RFC 2326 §C.1.1: relative to Content-Base), so the SETUPs
/// clients build from it carry the token too.
pub fn describe_sdp_with_token(
    media: &MediaFile,
    origin: SocketAddr,
    live: bool,
    token: Option<&str>,
) -> String {
    let suffix = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let tracks = media
        .index
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| SdpTrack {
            codec: &t.codec,
            payload_type: FIRST_PAYLOAD_TYPE + i as u8,
            control: format!("trackID={i}{suffix}"),
            frame_rate: frame_rate(t),
        })
        .collect();
    write_sdp(&SdpSession {
        session_id: rand::thread_rng().gen_range(1..u64::from(u32::MAX)),
        origin_addr: origin.ip(),
        name: &media.name,
        duration_secs: (!live).then(|| media.duration().as_secs_f64()),
        tracks,
    })
}

/// Session ids are 16 hex digits (RFC 2326 §3.4: opaque, at least 8 octets of randomness).
fn parse_session_id(s: &str) -> Option<SessionId> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Frames per second of a video track (for `a=framerate`).
fn frame_rate(t: &crate::media::track::Track) -> Option<f64> {
    if t.kind != crate::media::track::TrackKind::Video || t.samples.len() < 2 {
        return None;
    }
    let secs = t.duration().as_secs_f64();
    (secs > 0.0).then(|| t.samples.len() as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard that never answers costs the client a 503 after the limit, not a request that
    /// hangs; an answer passes through; a dropped request is a 500.
    #[test]
    fn a_shard_that_does_not_answer_gets_503_after_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let limit = Duration::from_millis(50);
            let (tx, rx) = tokio::sync::oneshot::channel::<Option<u32>>();
            let started = Instant::now();
            let silent = shard_answer(rx, 0, "PLAY", limit).await;
            assert!(started.elapsed() >= limit);
            let outcome = silent.expect_err("no answer is an error");
            assert_eq!(outcome.response.status, StatusCode::ServiceUnavailable);
            drop(tx);

            let (tx, rx) = tokio::sync::oneshot::channel();
            tx.send(Some(7u32)).unwrap();
            assert_eq!(shard_answer(rx, 0, "PLAY", limit).await.ok(), Some(7));

            let (tx, rx) = tokio::sync::oneshot::channel::<Option<u32>>();
            drop(tx);
            let dropped = shard_answer(rx, 0, "PAUSE", limit).await.unwrap_err();
            assert_eq!(dropped.response.status, StatusCode::InternalServerError);
        });
    }
}
