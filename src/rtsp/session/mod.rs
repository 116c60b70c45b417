//! The RTSP session core: the RFC 2326 state machine (Appendix A) as plain data, sans-IO.
//!
//! [`SessionCore::handle`] takes a parsed request, who sent it ([`Caller`]) and an [`Env`]
//! (the time, the wall-clock time and a random source), and returns a [`Reply`]: either the
//! answer with the [`Effect`]s to carry out (shard orders, statistics events), or a question
//! for a shard (PLAY and PAUSE need the shard's answer: where the stream starts, where it
//! paused) whose answer the caller feeds back through [`SessionCore::shard_answered`]. The
//! core never reads a clock, a socket or the thread RNG; the I/O shell (`crate::control`)
//! accepts, frames, writes, awaits shards and applies effects.
//!
//! What the core owns: the session table and its owners (docs/SECURITY.md, "Session
//! binding"), the media catalog and live channels it resolves URIs against, authentication,
//! play tokens, admission limits and the per-client log budget. Connections appear only as
//! [`ConnId`]s; the shell keeps their writers.
//!
//! Every refusal is a [`Refusal`], whose `status()` is the one refusal → status table.

mod refusal;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, RngCore};

pub use refusal::{Refusal, PUBLIC_METHODS};

use super::admission::{Admission, RequestRate};
use super::auth::{Authenticator, Verdict};
use super::log_limit::{Gate, LogLimiter, Suppressed};
use super::msg::{Method, Request, Response, StatusCode};
use super::range::{check_rate, format_npt_range, vod_play_window, RateHeader};
use super::transport::{format_tcp_reply, format_udp_reply, parse_transport, LowerTransport};
use super::uri::split_request_uri;
use crate::config::ServerConfig;
use crate::http::token::{is_token_syntax, token_in_query, TokenKey};
use crate::live::LiveChannel;
use crate::media::track::TrackKind;
use crate::media::{MediaFile, MediaLibrary};
use crate::shard::{
    Activity, PlayEnd, PlayStarted, SessionId, SessionSetup, TrackDest, TrackSetup,
};
use crate::stats::{
    digest_rtcp, EndReason, SessionHandle, SessionMeta, TrackKey, TrackReception,
    Transport as StatsTransport, ViewerSsrcs,
};
use crate::wire::ntp::NtpTime;
use crate::wire::rtp::Ssrc;
use crate::wire::sdp::{describe_media, FIRST_PAYLOAD_TYPE};

/// `Server` header value (RFC 2326 §12.36).
pub const SERVER_NAME: &str = concat!("shardcast/", env!("CARGO_PKG_VERSION"));

/// A connection, as the core knows it: a number the shell assigns.
pub type ConnId = u64;

/// Where a session is in the RFC 2326 Appendix A state machine (Init = no record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Set up, never played (or not since its last SETUP).
    Ready,
    /// Playing.
    Playing,
    /// Paused (stored media only).
    Paused,
}

/// Who sent a request: the connection and its two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The connection.
    pub conn: ConnId,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our own address as the connection reached it.
    pub local: SocketAddr,
}

/// The outside world a step may consult: the time, the wall-clock time, a random source.
pub struct Env<'a> {
    /// Monotonic time (timeouts, backoff, log budgets).
    pub now: Instant,
    /// Wall-clock time (`Date`, nonce and token ages).
    pub wall: SystemTime,
    /// Randomness for session ids, SSRCs, sequence and timestamp origins, nonces.
    pub rng: &'a mut dyn RngCore,
}

/// What a client proved when it created a session, and what every later request naming
/// the session must match (docs/SECURITY.md, "Session binding"). RFC 2326 §12.37 lets a
/// session span connections, so the connection is not part of it; the address and the
/// authenticated user are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    /// The client's IP address (the port changes with each connection).
    addr: IpAddr,
    /// The user it authenticated as; `None` on a stream open to anyone.
    user: Option<String>,
}

/// A session as the control plane knows it.
#[derive(Debug)]
struct SessionRecord {
    media: Arc<MediaFile>,
    shard: usize,
    tracks: Vec<TrackSetup>,
    state: SessionState,
    /// The shard has been given the session (first PLAY sent).
    on_shard: bool,
    /// Registered with the statistics hub (first PLAY answered).
    registered: bool,
    activity: Arc<Activity>,
    /// Connection that set up interleaved tracks (they die with it).
    tcp_conn: Option<ConnId>,
    /// SSRCs the viewer sent interleaved reports about our tracks from; an interleaved BYE
    /// must name one (RFC 3550 §6.6).
    viewer_ssrcs: ViewerSsrcs,
    peer: SocketAddr,
    /// Average bitrate committed against the shard's bandwidth limit.
    bitrate_bps: u64,
    /// The connection whose SETUP created the session (closed when an admin ends it).
    origin: ConnId,
    /// The play token the SETUP carried, echoed in RTP-Info URLs so clients match them with
    /// their control URLs.
    token: Option<String>,
    owner: Owner,
    /// The session's name in the HTTP API (the RTSP id stays with its owner).
    handle: SessionHandle,
    /// When its first SETUP arrived (a session never played expires after `setup-timeout`).
    created: Instant,
}

impl SessionRecord {
    /// Why the session has expired at `now`, if it has: idle past `session-timeout` (RFC
    /// 2326 §12.37), or set up but never played within `setup-timeout`.
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

    fn has_interleaved_rtcp_channel(&self, channel: u8) -> bool {
        self.tracks.iter().any(|t| {
            matches!(t.dest, TrackDest::Interleaved { rtcp_channel, .. } if rtcp_channel == channel)
        })
    }
}

/// An order to a shard that needs no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardOrder {
    /// Start sending from where the last PLAY prepared (after the PLAY response is out).
    Start(SessionId),
    /// End the session: RTCP BYE, free everything.
    Teardown(SessionId),
}

/// Counts of interleaved RTCP for the statistics hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterleavedRtcpCounts {
    /// Compound packets received.
    pub received: u64,
    /// Invalid ones (RFC 3550 A.2).
    pub invalid: u64,
    /// Report blocks about SSRCs that are not the session's.
    pub unknown_ssrc: u64,
    /// BYEs that ended a session.
    pub byes: u64,
    /// BYEs refused (no SSRC the viewer reported from before).
    pub byes_refused: u64,
}

/// Something the shell carries out for the core.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Send `order` to shard `shard`.
    Shard {
        /// The shard.
        shard: usize,
        /// The order.
        order: ShardOrder,
    },
    /// A session started playing: register it with the statistics hub.
    SessionStarted(SessionMeta),
    /// A session ended: drop it from the statistics hub.
    SessionEnded(SessionId),
    /// A viewer's interleaved receiver reports.
    Receptions {
        /// The session.
        id: SessionId,
        /// One per report block about our tracks.
        receptions: Vec<TrackReception>,
    },
    /// Interleaved RTCP counted.
    InterleavedRtcp(InterleavedRtcpCounts),
}

/// The answer to a request, and what to do around it.
#[derive(Debug)]
pub struct Answer {
    /// The response, complete (CSeq, Server, Date).
    pub response: Response,
    /// Close the connection after writing it.
    pub close: bool,
    /// Hold the response this long first (authentication backoff).
    pub delay: Duration,
    /// Effects to carry out now.
    pub effects: Vec<Effect>,
    /// Effects to carry out once the response is written (PLAY's Start: media must not
    /// precede the response on an interleaved connection).
    pub after_response: Vec<Effect>,
}

/// A question for a shard.
#[derive(Debug)]
pub enum ShardAsk {
    /// Prepare to play (create the session on its first PLAY, seek), answer where it
    /// starts. The shell fills `setup.sink` with the writer of connection `sink_of`.
    Play {
        /// The session.
        id: SessionId,
        /// The session's state for the shard, on its first PLAY.
        setup: Option<Box<SessionSetup>>,
        /// The connection whose writer carries interleaved media, if any.
        sink_of: Option<ConnId>,
        /// Seek target, or `None` to resume.
        start_npt_secs: Option<f64>,
        /// Where to stop.
        end: PlayEnd,
    },
    /// Stop sending, answer the position.
    Pause {
        /// The session.
        id: SessionId,
    },
}

/// What a shard answered (or did not).
#[derive(Debug)]
pub enum ShardAnswer<T> {
    /// The answer.
    Answered(T),
    /// The command could not be queued (queue full).
    Busy,
    /// No answer in time.
    TimedOut,
    /// The shard dropped the command.
    Dropped,
}

/// A question for a shard and how to finish the request once it is answered.
#[derive(Debug)]
pub struct Pending {
    shard: usize,
    id: SessionId,
    kind: PendingKind,
}

#[derive(Debug)]
enum PendingKind {
    Play {
        content_base: String,
        token: Option<String>,
        track_order: Vec<usize>,
        live: bool,
        echo_rates: Vec<&'static str>,
    },
    Pause,
}

impl<T> ShardAnswer<T> {
    /// The answer turned into another type.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> ShardAnswer<U> {
        match self {
            ShardAnswer::Answered(v) => ShardAnswer::Answered(f(v)),
            ShardAnswer::Busy => ShardAnswer::Busy,
            ShardAnswer::TimedOut => ShardAnswer::TimedOut,
            ShardAnswer::Dropped => ShardAnswer::Dropped,
        }
    }
}

impl Pending {
    /// The shard to ask.
    pub fn shard(&self) -> usize {
        self.shard
    }
}

/// The result of [`SessionCore::handle`].
#[derive(Debug)]
pub enum Reply {
    /// Answer now.
    Answer(Answer),
    /// Ask a shard, then call [`SessionCore::shard_answered`] with `pending`.
    AskShard {
        /// The question.
        ask: ShardAsk,
        /// How to finish.
        pending: Pending,
    },
}

/// Play-token settings.
#[derive(Debug)]
pub struct TokenPolicy {
    /// The signing key.
    pub key: TokenKey,
    /// Whether RTSP DESCRIBE and SETUP need a token.
    pub required: bool,
    /// Refusals so far.
    pub refusals: u64,
}

/// The session core; see the module docs.
#[derive(Debug)]
pub struct SessionCore {
    config: ServerConfig,
    library: Arc<MediaLibrary>,
    channels: HashMap<String, Arc<LiveChannel>>,
    /// Each shard's (RTP, RTCP) server ports.
    shard_ports: Vec<(u16, u16)>,
    /// Sessions assigned per shard (so a burst of SETUPs spreads evenly).
    assigned: Vec<usize>,
    sessions: HashMap<SessionId, SessionRecord>,
    auth: Option<Authenticator>,
    admission: Admission,
    tokens: TokenPolicy,
    log_limit: LogLimiter,
    /// Refused requests by status code since start.
    refused: BTreeMap<u16, u64>,
}

/// The complete answer to `req` with `response` (CSeq echoed, §12.17; Server; Date).
fn complete(cseq: Option<u32>, mut response: Response, wall: SystemTime) -> Response {
    let mut out = Response::new(response.status);
    if let Some(cseq) = cseq {
        out = out.header("CSeq", cseq.to_string());
    }
    for (k, v) in response.headers.iter() {
        // append: a 401 carries several WWW-Authenticate challenges.
        out.headers.append(k, v);
    }
    out.body = std::mem::take(&mut response.body);
    out.header("Server", SERVER_NAME)
        .header("Date", httpdate::fmt_http_date(wall))
}

/// The response a refusal gets (before completion).
fn refusal_response(r: &Refusal) -> Response {
    let mut response = Response::new(r.status());
    for (k, v) in r.headers() {
        response.headers.append(k, v);
    }
    response
}

/// Session ids are 16 hex digits (RFC 2326 §3.4: opaque, at least 8 octets of randomness).
pub fn parse_session_id(s: &str) -> Option<SessionId> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
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

impl SessionCore {
    /// A core for `config`, serving `library` and the live `channels`, with shards whose
    /// server ports are `shard_ports`. `tokens` holds the play-token key (random when no
    /// secret is configured: drawn by the caller).
    pub fn new(
        config: ServerConfig,
        library: Arc<MediaLibrary>,
        channels: HashMap<String, Arc<LiveChannel>>,
        shard_ports: Vec<(u16, u16)>,
        tokens: TokenKey,
    ) -> Self {
        let auth = Authenticator::new(
            config.users.clone(),
            config.access.clone(),
            config.allow_basic,
        );
        Self {
            admission: Admission::new(config.admission, shard_ports.len()),
            assigned: vec![0; shard_ports.len()],
            tokens: TokenPolicy {
                key: tokens,
                required: config.require_token,
                refusals: 0,
            },
            auth,
            config,
            library,
            channels,
            shard_ports,
            sessions: HashMap::new(),
            log_limit: LogLimiter::default(),
            refused: BTreeMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The media catalog.
    pub fn library(&self) -> &Arc<MediaLibrary> {
        &self.library
    }

    /// Live channels by name.
    pub fn channels(&self) -> &HashMap<String, Arc<LiveChannel>> {
        &self.channels
    }

    /// Play-token settings.
    pub fn tokens(&self) -> &TokenPolicy {
        &self.tokens
    }

    /// RTSP requests with wrong credentials since start (or the last reload).
    pub fn auth_failures(&self) -> u64 {
        self.auth.as_ref().map_or(0, |a| a.failed_attempts)
    }

    /// Authentication attempts delayed or refused by the backoff.
    pub fn auth_throttled(&self) -> u64 {
        self.auth.as_ref().map_or(0, |a| a.throttled_attempts())
    }

    /// Refused requests and connections by status code since start.
    pub fn refused_by_status(&self) -> Vec<(u16, u64)> {
        self.refused.iter().map(|(&k, &v)| (k, v)).collect()
    }

    /// Log lines suppressed by the per-client budget since start.
    pub fn log_lines_suppressed(&self) -> u64 {
        self.log_limit.suppressed_total
    }

    /// Sessions in the table.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether a log line caused by the client at `source` may be written at `now`; writes
    /// the summary of its earlier suppressed lines first when one is due.
    pub fn may_log(&mut self, source: IpAddr, now: Instant) -> bool {
        match self.log_limit.admit(source, now) {
            Gate::Suppress => false,
            Gate::Log { earlier } => {
                if let Some(s) = earlier {
                    log_suppressed(s);
                }
                true
            }
        }
    }

    fn count_refusal(&mut self, status: StatusCode) {
        *self.refused.entry(status.code()).or_insert(0) += 1;
    }

    /// Admits a new connection from `peer`, or the refusal to answer before closing it.
    pub fn open_connection(&mut self, peer: SocketAddr, env: &mut Env<'_>) -> Result<(), Response> {
        match self.admission.open_connection(peer.ip()) {
            Ok(()) => Ok(()),
            Err(r) => {
                let refusal = Refusal::OverLimit(r);
                self.count_refusal(refusal.status());
                if self.may_log(peer.ip(), env.now) {
                    tracing::warn!(%peer, "connection refused: {refusal}");
                }
                let response = refusal_response(&refusal).header("Connection", "close");
                Err(complete(None, response, env.wall))
            }
        }
    }

    /// Forgets a closed connection: its interleaved sessions end with it.
    pub fn close_connection(&mut self, caller: &Caller, now: Instant) -> Vec<Effect> {
        self.admission.close_connection(caller.peer.ip());
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.tcp_conn == Some(caller.conn))
            .map(|(&id, _)| id)
            .collect();
        let mut effects = Vec::new();
        for id in ids {
            if let Some(rec) = self.end_session(id, true, &mut effects) {
                if self.may_log(rec.peer.ip(), now) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, "interleaved session ended with its connection");
                }
            }
        }
        effects
    }

    /// A request-rate limiter for a new connection (`max-requests-per-sec`).
    pub fn request_rate(&self) -> RequestRate {
        self.admission.request_rate()
    }

    /// Answers a request the shell refused itself (request rate), or that failed framing
    /// (`req` is then `None`): counted, logged within the client's budget, completed.
    pub fn refuse(
        &mut self,
        req: Option<&Request>,
        caller: &Caller,
        refusal: Refusal,
        env: &mut Env<'_>,
    ) -> Answer {
        if matches!(refusal, Refusal::OverLimit(_) | Refusal::RequestRate) {
            self.admission.refused += 1;
        }
        self.finish(req, caller, Err(refusal), env)
    }

    /// Handles one request; see the module docs.
    pub fn handle(&mut self, req: &Request, caller: &Caller, env: &mut Env<'_>) -> Reply {
        let owner = match self.authorize(req, caller, env) {
            Ok((owner, delay)) => (owner, delay),
            Err((refusal, delay)) => {
                let mut answer = self.finish(Some(req), caller, Err(refusal), env);
                answer.delay = delay;
                return Reply::Answer(answer);
            }
        };
        let (owner, delay) = owner;
        if let Some(options) = req.header("Require") {
            // RFC 2326 §12.32: we implement no option tags.
            let refusal = Refusal::OptionNotSupported(options.trim().to_owned());
            let mut answer = self.finish(Some(req), caller, Err(refusal), env);
            answer.delay = delay;
            return Reply::Answer(answer);
        }
        let step = match req.method {
            Method::Options => Ok(self.options(req, caller, env.now)),
            Method::Describe => self.describe(req, caller, env).map(Step::done),
            Method::Setup => self.setup(req, caller, &owner, env).map(Step::done),
            Method::Play => self.play(req, caller, &owner, env),
            Method::Pause => self.pause(req, &owner, env.now),
            Method::Teardown => self.teardown(req, &owner, env.now),
            Method::GetParameter => self.get_parameter(req, &owner, env.now).map(Step::done),
            Method::SetParameter | Method::Announce | Method::Record | Method::Redirect => {
                Err(Refusal::MethodNotAllowed)
            }
        };
        match step {
            Ok(Step::Ask(ask, pending)) => Reply::AskShard { ask, pending },
            Ok(Step::Done(done)) => {
                let mut answer = self.finish(Some(req), caller, Ok(done), env);
                answer.delay = delay;
                Reply::Answer(answer)
            }
            Err(refusal) => {
                let mut answer = self.finish(Some(req), caller, Err(refusal), env);
                answer.delay = delay;
                Reply::Answer(answer)
            }
        }
    }

    /// Finishes a request that waited for a shard: the answer, or the refusal the missing
    /// answer means (503 for a busy or silent shard, 500 for a dropped command).
    pub fn shard_answered(
        &mut self,
        req: &Request,
        caller: &Caller,
        pending: Pending,
        answer: ShardAnswer<ShardReply>,
        env: &mut Env<'_>,
    ) -> Answer {
        let Pending { shard, id, kind } = pending;
        let what = match kind {
            PendingKind::Play { .. } => "PLAY",
            PendingKind::Pause => "PAUSE",
        };
        // The shard has the session once a PLAY reached it, answered or not.
        if matches!(kind, PendingKind::Play { .. }) && !matches!(answer, ShardAnswer::Busy) {
            if let Some(rec) = self.sessions.get_mut(&id) {
                rec.on_shard = true;
            }
        }
        let reply = match answer {
            ShardAnswer::Answered(reply) => reply,
            ShardAnswer::Busy => {
                return self.finish(Some(req), caller, Err(Refusal::ShardBusy(shard)), env)
            }
            ShardAnswer::TimedOut => {
                tracing::warn!(shard, "shard did not answer {what} in time; answering 503");
                let refusal = Refusal::ShardTimeout { shard, what };
                return self.finish(Some(req), caller, Err(refusal), env);
            }
            ShardAnswer::Dropped => {
                return self.finish(Some(req), caller, Err(Refusal::ShardDropped(shard)), env)
            }
        };
        let done = match (kind, reply) {
            (
                PendingKind::Play {
                    content_base,
                    token,
                    track_order,
                    live,
                    echo_rates,
                },
                ShardReply::Play(started),
            ) => self.play_started(
                id,
                started,
                content_base,
                token,
                track_order,
                live,
                echo_rates,
            ),
            (PendingKind::Pause, ShardReply::Pause(position)) => self.paused(id, position),
            _ => Err(Refusal::ShardDropped(shard)),
        };
        self.finish(Some(req), caller, done, env)
    }

    /// Logs and counts a refusal, completes the response.
    fn finish(
        &mut self,
        req: Option<&Request>,
        caller: &Caller,
        done: Result<Done, Refusal>,
        env: &mut Env<'_>,
    ) -> Answer {
        // The CSeq to echo (§12.17): the request's, or what a parse error recovered.
        let cseq = match (&done, req) {
            (_, Some(req)) => req.cseq(),
            (Err(Refusal::Parse(e)), None) => e.cseq,
            _ => None,
        };
        let (response, close, effects, after_response) = match done {
            Ok(d) => (d.response, false, d.effects, d.after_response),
            Err(refusal) => {
                let status = refusal.status();
                self.count_refusal(status);
                if self.may_log(caller.peer.ip(), env.now) {
                    match req {
                        Some(req) => {
                            tracing::info!(peer = %caller.peer, method = req.method.as_str(), uri = %crate::http::token::redact_token(&req.uri), status = status.code(), "request refused: {refusal}")
                        }
                        None => {
                            tracing::warn!(peer = %caller.peer, status = status.code(), "{refusal}")
                        }
                    }
                }
                (
                    refusal_response(&refusal),
                    refusal.closes_connection(),
                    Vec::new(),
                    Vec::new(),
                )
            }
        };
        Answer {
            response: complete(cseq, response, env.wall),
            close,
            delay: Duration::ZERO,
            effects,
            after_response,
        }
    }

    /// RFC 2326 §11.4.1 / RFC 7616: every method but OPTIONS needs credentials once users
    /// are configured. Returns the caller as a session owner would be recorded, and how
    /// long to hold the answer (backoff); or the refusal.
    ///
    /// A request that names one of its own address's sessions is authorized against that
    /// session's stream, not whatever stream its URI names: otherwise a public stream's URI
    /// would carry requests into a restricted stream's session.
    fn authorize(
        &mut self,
        req: &Request,
        caller: &Caller,
        env: &mut Env<'_>,
    ) -> Result<(OwnerKey, Duration), (Refusal, Duration)> {
        let anonymous = OwnerKey(Owner {
            addr: caller.peer.ip(),
            user: None,
        });
        if req.method == Method::Options {
            return Ok((anonymous, Duration::ZERO));
        }
        let Some(auth) = self.auth.as_mut() else {
            return Ok((anonymous, Duration::ZERO));
        };
        let path = req
            .session_id()
            .and_then(parse_session_id)
            .and_then(|id| self.sessions.get(&id))
            .filter(|r| r.owner.addr == caller.peer.ip())
            .map(|r| r.media.name.clone())
            .unwrap_or_else(|| {
                split_request_uri(&req.uri)
                    .map(|p| p.segments.join("/"))
                    .unwrap_or_default()
            });
        let checked = auth.check_at(
            req.method.as_str(),
            &req.uri,
            &path,
            req.header("Authorization"),
            caller.peer.ip(),
            env.now,
            env.wall,
        );
        let wait = checked.wait;
        match checked.verdict {
            Verdict::Allowed(user) => Ok((
                OwnerKey(Owner {
                    addr: caller.peer.ip(),
                    user,
                }),
                wait,
            )),
            Verdict::Forbidden(user) => Err((Refusal::Forbidden { user, stream: path }, wait)),
            Verdict::Throttled(r) => Err((Refusal::OverLimit(r), wait)),
            Verdict::Challenge { stale, why } => {
                let challenges = auth.challenges_at(stale, env.wall, env.rng);
                Err((Refusal::Unauthorized { why, challenges }, wait))
            }
        }
    }

    /// OPTIONS (§10.1): the methods; a keep-alive for the caller's own sessions. OPTIONS
    /// needs no credentials, so only the address can be checked.
    fn options(&mut self, req: &Request, caller: &Caller, now: Instant) -> Step {
        if let Some(rec) = req
            .session_id()
            .and_then(parse_session_id)
            .and_then(|id| self.sessions.get(&id))
        {
            if rec.owner.addr == caller.peer.ip() {
                rec.activity.touch(now);
            }
        }
        Step::done(Done::ok(
            Response::new(StatusCode::Ok).header("Public", PUBLIC_METHODS),
        ))
    }

    /// GET_PARAMETER (§10.8): a keep-alive, checked like any request naming a session.
    fn get_parameter(
        &mut self,
        req: &Request,
        owner: &OwnerKey,
        now: Instant,
    ) -> Result<Done, Refusal> {
        if req.session_id().is_some() {
            self.session_for(req, owner, now)?;
        }
        Ok(Done::ok(Response::new(StatusCode::Ok)))
    }

    /// Looks up the stream a request URI names: the media and the leftover segments.
    fn resolve(&self, uri: &str) -> Result<(Arc<MediaFile>, Vec<String>), Refusal> {
        let path = split_request_uri(uri).map_err(Refusal::Uri)?;
        let segments = path.segments;
        if let Some(ch) = segments.first().and_then(|name| self.channels.get(name)) {
            return Ok((ch.media.clone(), segments[1..].to_vec()));
        }
        match self.library.resolve(&segments) {
            Ok((media, used)) => Ok((media, segments[used..].to_vec())),
            Err(crate::media::library::LibraryError::NotFound(name)) => {
                Err(Refusal::NotFound(format!("no stream named {name:?}")))
            }
            Err(e) => Err(Refusal::Unservable(e.to_string())),
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
    fn content_base(&self, caller: &Caller, media: &MediaFile) -> String {
        let authority = match &self.config.public_address {
            Some(public) => public.clone(),
            None => caller.local.to_string(),
        };
        format!("rtsp://{authority}/{}/", encode_name(&media.name))
    }

    /// The play token of a DESCRIBE or SETUP. With `--require-token` it must be valid for
    /// `stream` and the peer (a missing one is 401, a bad one 403); the token to carry into
    /// control URLs is returned.
    fn check_token(
        &mut self,
        uri: &str,
        stream: &str,
        peer: IpAddr,
        wall: SystemTime,
    ) -> Result<Option<String>, Refusal> {
        let query = split_request_uri(uri).ok().and_then(|p| p.query);
        let token = token_in_query(query.as_deref());
        let policy = &mut self.tokens;
        if !policy.required {
            return Ok(token.filter(|t| is_token_syntax(t)).map(str::to_owned));
        }
        let Some(token) = token else {
            policy.refusals += 1;
            return Err(Refusal::TokenMissing);
        };
        match policy.key.verify(token, stream, peer, wall) {
            Ok(_) => Ok(Some(token.to_owned())),
            Err(e) => {
                policy.refusals += 1;
                Err(Refusal::TokenInvalid(e))
            }
        }
    }

    /// DESCRIBE (§10.2): the SDP of the stream.
    fn describe(
        &mut self,
        req: &Request,
        caller: &Caller,
        env: &mut Env<'_>,
    ) -> Result<Done, Refusal> {
        let (media, rest) = self.resolve(&req.uri)?;
        if !rest.is_empty() {
            return Err(Refusal::NotFound(format!(
                "no track {:?} to describe",
                rest.join("/")
            )));
        }
        let token = self.check_token(&req.uri, &media.name, caller.peer.ip(), env.wall)?;
        let live = self.channel_of(&media).is_some();
        let sdp = describe_media(
            &media,
            caller.local,
            live,
            token.as_deref(),
            env.rng.gen_range(1..u64::from(u32::MAX)),
        );
        Ok(Done::ok(
            Response::new(StatusCode::Ok)
                .header("Content-Base", self.content_base(caller, &media))
                .body("application/sdp", sdp.into_bytes()),
        ))
    }

    /// SETUP (§10.4): a track into a new or the caller's existing session.
    fn setup(
        &mut self,
        req: &Request,
        caller: &Caller,
        owner: &OwnerKey,
        env: &mut Env<'_>,
    ) -> Result<Done, Refusal> {
        let (media, rest) = self.resolve(&req.uri)?;
        let track_index = match rest.as_slice() {
            [] if media.index.tracks.len() == 1 => 0,
            [] => return Err(Refusal::AggregateNotAllowed),
            [one] => match one
                .strip_prefix("trackID=")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) if n < media.index.tracks.len() => n,
                _ => return Err(Refusal::NotFound(format!("no track {one:?}"))),
            },
            _ => return Err(Refusal::NotFound(format!("no track {:?}", rest.join("/")))),
        };
        let token = self.check_token(&req.uri, &media.name, caller.peer.ip(), env.wall)?;
        let transport = req.header("Transport").ok_or(Refusal::TransportMissing)?;
        let alternatives = parse_transport(transport).map_err(|error| Refusal::Transport {
            header: transport.to_owned(),
            error,
        })?;
        // RFC 2326 §12.39 `mode`: this server only plays. A client asking to RECORD
        // (publish) is told its transport cannot be had, rather than given a session.
        if alternatives.iter().all(|a| !a.mode_play) {
            return Err(Refusal::RecordNotSupported);
        }
        let existing = match req.session_id() {
            Some(sid) => {
                let id = parse_session_id(sid)
                    .filter(|id| self.sessions.contains_key(id))
                    .ok_or(Refusal::SessionNotFound("unknown session"))?;
                let rec = &self.sessions[&id];
                if rec.owner != owner.0 {
                    return Err(Refusal::SessionNotFound(
                        "session belongs to another client",
                    ));
                }
                if !Arc::ptr_eq(&rec.media, &media) {
                    return Err(Refusal::AggregateNotAllowed);
                }
                if rec.state != SessionState::Ready {
                    return Err(Refusal::NotValidInState(rec.state));
                }
                Some((id, rec.shard))
            }
            None => None,
        };
        let used_channels: Vec<u8> = existing
            .and_then(|(id, _)| self.sessions.get(&id))
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
        let channel = self.channel_of(&media);
        let ssrc: Ssrc = match &channel {
            Some(ch) => ch.tracks[track_index].ssrc,
            None => env.rng.gen(),
        };
        // The shard: the session's, or the least loaded one with bandwidth left (checked
        // after the transport, so a refused transport creates nothing).
        let chosen_shard = existing.map(|(_, shard)| shard);
        let pick_ports = |shard: usize| self.shard_ports[shard];
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
                            rtp: SocketAddr::new(caller.peer.ip(), rtp),
                            rtcp: SocketAddr::new(caller.peer.ip(), rtcp),
                        };
                        chosen = Some((dest, Some((rtp, rtcp)), false));
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
                    chosen = Some((dest, None, true));
                    break;
                }
            }
        }
        let Some((dest, udp_ports, is_tcp)) = chosen else {
            return Err(Refusal::NoTransport(transport.to_owned()));
        };
        let (id, shard) = match (existing, chosen_shard) {
            (Some((id, _)), Some(shard)) => (id, shard),
            _ => {
                let mut order: Vec<usize> = (0..self.shard_ports.len()).collect();
                order.sort_by_key(|&i| self.assigned[i]);
                let shard = self
                    .admission
                    .open_viewer(caller.peer.ip(), media.bitrate_bps(), &order)
                    .map_err(Refusal::OverLimit)?;
                let mut id: SessionId = env.rng.gen();
                while id == 0 || self.sessions.contains_key(&id) {
                    id = env.rng.gen();
                }
                (id, shard)
            }
        };
        let transport_reply = match (&dest, udp_ports) {
            (_, Some(client)) => format_udp_reply(client, pick_ports(shard), ssrc),
            (
                TrackDest::Interleaved {
                    rtp_channel,
                    rtcp_channel,
                },
                None,
            ) => format_tcp_reply((*rtp_channel, *rtcp_channel), ssrc),
            (TrackDest::Udp { .. }, None) => {
                return Err(Refusal::NoTransport(transport.to_owned()))
            }
        };
        // A live channel's viewers share its numbering space (one SSRC per channel track).
        let (initial_seq, initial_rtptime) = match &channel {
            Some(ch) => (ch.tracks[track_index].seq0, ch.tracks[track_index].ts0),
            None => (env.rng.gen(), env.rng.gen()),
        };
        let setup = TrackSetup {
            track_index,
            payload_type: FIRST_PAYLOAD_TYPE + track_index as u8,
            ssrc,
            initial_seq,
            initial_rtptime,
            dest,
        };
        if !self.sessions.contains_key(&id) {
            self.assigned[shard] += 1;
            let handle = env.rng.gen();
            self.sessions.insert(
                id,
                SessionRecord {
                    media: media.clone(),
                    shard,
                    tracks: Vec::new(),
                    state: SessionState::Ready,
                    on_shard: false,
                    registered: false,
                    activity: Arc::new(Activity::default()),
                    tcp_conn: None,
                    viewer_ssrcs: ViewerSsrcs::default(),
                    peer: caller.peer,
                    bitrate_bps: media.bitrate_bps(),
                    origin: caller.conn,
                    token: None,
                    owner: owner.0.clone(),
                    handle,
                    created: env.now,
                },
            );
        }
        let log = self.may_log(caller.peer.ip(), env.now);
        let timeout = self.config.session_timeout;
        let rec = self
            .sessions
            .get_mut(&id)
            .ok_or(Refusal::SessionNotFound("unknown session"))?;
        if token.is_some() {
            rec.token = token;
        }
        rec.activity.touch(env.now);
        rec.tracks.retain(|t| t.track_index != track_index);
        rec.tracks.push(setup);
        if is_tcp {
            rec.tcp_conn = Some(caller.conn);
        }
        if log {
            tracing::info!(session = %format_args!("{id:016X}"), peer = %caller.peer, stream = %media.name, track = track_index, shard, transport = %transport_reply, "setup");
        }
        Ok(Done::ok(
            Response::new(StatusCode::Ok)
                .header("Transport", transport_reply)
                .header("Session", session_header(id, timeout)),
        ))
    }

    /// Finds the session a request names, if the caller owns it (any other client gets the
    /// answer of an unknown id); checks the URI is its aggregate (or its only track).
    fn session_for(
        &self,
        req: &Request,
        owner: &OwnerKey,
        now: Instant,
    ) -> Result<SessionId, Refusal> {
        let id = req
            .session_id()
            .and_then(parse_session_id)
            .ok_or(Refusal::SessionNotFound("no or malformed Session header"))?;
        let rec = self
            .sessions
            .get(&id)
            .ok_or(Refusal::SessionNotFound("unknown session"))?;
        if rec.owner != owner.0 {
            return Err(Refusal::SessionNotFound(
                "session belongs to another client",
            ));
        }
        rec.activity.touch(now);
        if req.uri != "*" {
            let (media, rest) = self.resolve(&req.uri)?;
            if !Arc::ptr_eq(&media, &rec.media) {
                return Err(Refusal::OtherStream);
            }
            if !rest.is_empty() && rec.tracks.len() > 1 {
                return Err(Refusal::OnlyAggregate);
            }
        }
        Ok(id)
    }

    /// PLAY (§10.5): checks, then asks the shard where the stream starts.
    fn play(
        &mut self,
        req: &Request,
        caller: &Caller,
        owner: &OwnerKey,
        env: &mut Env<'_>,
    ) -> Result<Step, Refusal> {
        let id = self.session_for(req, owner, env.now)?;
        // RFC 2326 §12.34/§12.35: no trick play yet, so a Scale or Speed is checked and
        // answered with the rate actually used, 1.
        let mut echo_rates = Vec::new();
        for (name, header) in [("Scale", RateHeader::Scale), ("Speed", RateHeader::Speed)] {
            if let Some(value) = req.header(name) {
                check_rate(header, value).map_err(|error| Refusal::Rate {
                    header: name,
                    error,
                })?;
                echo_rates.push(name);
            }
        }
        let rec = &self.sessions[&id];
        let live = self.channel_of(&rec.media);
        let duration = rec.media.duration().as_secs_f64();
        // A live channel cannot seek: every PLAY joins at the live edge, whatever Range asks
        // (players such as ffmpeg always send `npt=0.000-`).
        let range = if live.is_some() {
            None
        } else {
            req.header("Range")
        };
        let window = vod_play_window(range, duration).map_err(Refusal::Range)?;
        let setup = (!rec.on_shard).then(|| {
            Box::new(SessionSetup {
                id,
                media: rec.media.clone(),
                tracks: rec.tracks.clone(),
                sink: None,
                activity: rec.activity.clone(),
                payload_budget_bytes: self.config.payload_budget_bytes,
                cname: format!("shardcast@{}", caller.local.ip()),
                live: live.clone(),
            })
        });
        let pending = Pending {
            shard: rec.shard,
            id,
            kind: PendingKind::Play {
                content_base: self.content_base(caller, &rec.media),
                token: rec.token.clone(),
                track_order: rec.tracks.iter().map(|t| t.track_index).collect(),
                live: live.is_some(),
                echo_rates,
            },
        };
        let ask = ShardAsk::Play {
            id,
            setup,
            sink_of: rec.tcp_conn,
            start_npt_secs: window.start,
            end: window.end,
        };
        Ok(Step::Ask(ask, pending))
    }

    /// The PLAY answer once the shard said where the stream starts.
    #[allow(clippy::too_many_arguments)]
    fn play_started(
        &mut self,
        id: SessionId,
        started: PlayStarted,
        content_base: String,
        token: Option<String>,
        track_order: Vec<usize>,
        live: bool,
        echo_rates: Vec<&'static str>,
    ) -> Result<Done, Refusal> {
        let timeout = self.config.session_timeout;
        let rec = self.sessions.get_mut(&id).ok_or(Refusal::SessionNotFound(
            "session ended while the shard answered",
        ))?;
        rec.state = SessionState::Playing;
        let mut effects = Vec::new();
        if !rec.registered {
            rec.registered = true;
            effects.push(Effect::SessionStarted(SessionMeta {
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
            }));
        }
        // A tokenized SETUP URL is `trackID=N?token=...`: RTP-Info names the same URL,
        // since clients (ffmpeg, retina) match RTP-Info entries to their control URLs
        // verbatim (§12.33).
        let token_suffix = token.map(|t| format!("?token={t}")).unwrap_or_default();
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
        let mut response = Response::new(StatusCode::Ok)
            .header(
                "Range",
                if live {
                    "npt=now-".to_owned()
                } else {
                    format_npt_range(started.start_npt_secs, Some(started.end_npt_secs))
                },
            )
            .header("RTP-Info", rtp_info.join(","))
            .header("Session", session_header(id, timeout));
        for name in echo_rates {
            response = response.header(name, "1");
        }
        Ok(Done {
            response,
            effects,
            after_response: vec![Effect::Shard {
                shard: rec.shard,
                order: ShardOrder::Start(id),
            }],
        })
    }

    /// PAUSE (§10.6): stored media that is playing; the shard answers the position.
    fn pause(&mut self, req: &Request, owner: &OwnerKey, now: Instant) -> Result<Step, Refusal> {
        let id = self.session_for(req, owner, now)?;
        let rec = &self.sessions[&id];
        // A live broadcast cannot be held (§10.6 presumes stored media), and neither can a
        // session that is not playing.
        if rec.state == SessionState::Ready
            || !rec.on_shard
            || self.channel_of(&rec.media).is_some()
        {
            return Err(Refusal::NotValidInState(rec.state));
        }
        Ok(Step::Ask(
            ShardAsk::Pause { id },
            Pending {
                shard: rec.shard,
                id,
                kind: PendingKind::Pause,
            },
        ))
    }

    fn paused(&mut self, id: SessionId, position: f64) -> Result<Done, Refusal> {
        let timeout = self.config.session_timeout;
        let rec = self.sessions.get_mut(&id).ok_or(Refusal::SessionNotFound(
            "session ended while the shard answered",
        ))?;
        rec.state = SessionState::Paused;
        let duration = rec.media.duration().as_secs_f64();
        Ok(Done::ok(
            Response::new(StatusCode::Ok)
                .header("Range", format_npt_range(position, Some(duration)))
                .header("Session", session_header(id, timeout)),
        ))
    }

    /// TEARDOWN (§10.7): the session ends (its shard sends RTCP BYE).
    fn teardown(&mut self, req: &Request, owner: &OwnerKey, now: Instant) -> Result<Step, Refusal> {
        let id = self.session_for(req, owner, now)?;
        let mut effects = Vec::new();
        self.end_session(id, true, &mut effects);
        Ok(Step::done(Done {
            response: Response::new(StatusCode::Ok),
            effects,
            after_response: Vec::new(),
        }))
    }

    /// Ends a session: its record and admission accounting go, the hub forgets it, and its
    /// shard is told to tear it down (RTCP BYE) unless `tell_shard` is false (the shard
    /// ended it itself).
    fn end_session(
        &mut self,
        id: SessionId,
        tell_shard: bool,
        effects: &mut Vec<Effect>,
    ) -> Option<SessionRecord> {
        let rec = self.sessions.remove(&id)?;
        effects.push(Effect::SessionEnded(id));
        self.admission
            .close_viewer(rec.peer.ip(), rec.bitrate_bps, rec.shard);
        self.assigned[rec.shard] = self.assigned[rec.shard].saturating_sub(1);
        if rec.on_shard && tell_shard {
            effects.push(Effect::Shard {
                shard: rec.shard,
                order: ShardOrder::Teardown(id),
            });
        }
        Some(rec)
    }

    /// An interleaved frame from the client on connection `conn` (RFC 2326 §10.12): any frame
    /// is liveness for the connection's sessions; one on a track's RTCP channel is that
    /// session's RTCP (RFC 3550 §6.4), digested into statistics effects; a BYE ends the
    /// session (§6.6) if it names an SSRC the viewer reported from in an earlier frame.
    pub fn interleaved_frame(
        &mut self,
        conn: ConnId,
        channel: u8,
        payload: &[u8],
        arrival: NtpTime,
        now: Instant,
    ) -> Vec<Effect> {
        for rec in self.sessions.values().filter(|r| r.tcp_conn == Some(conn)) {
            rec.activity.touch(now);
        }
        let mut effects = Vec::new();
        if !self.config.stats {
            return effects;
        }
        // The sessions of this connection receiving RTCP on `channel`: usually one, but a
        // client may run several sessions on one connection with the same channel numbers;
        // the one whose SSRCs the report names is meant.
        let candidates: Vec<(SessionId, Vec<TrackKey>, ViewerSsrcs)> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.tcp_conn == Some(conn) && r.has_interleaved_rtcp_channel(channel))
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
            return effects;
        }
        let mut counts = InterleavedRtcpCounts {
            received: 1,
            ..InterleavedRtcpCounts::default()
        };
        let digests = candidates
            .iter()
            .map(|(id, keys, known)| digest_rtcp(payload, keys, arrival, *known).map(|d| (*id, d)));
        let best = match digests.collect::<Result<Vec<_>, _>>() {
            Ok(all) => all.into_iter().min_by_key(|(_, d)| d.unknown_ssrc_blocks),
            Err(e) => {
                counts.invalid += 1;
                tracing::debug!(conn, channel, "interleaved RTCP dropped: {e}");
                None
            }
        };
        let Some((id, digest)) = best else {
            effects.push(Effect::InterleavedRtcp(counts));
            return effects;
        };
        counts.unknown_ssrc += u64::from(digest.unknown_ssrc_blocks);
        effects.push(Effect::Receptions {
            id,
            receptions: digest.receptions.clone(),
        });
        if let Some(rec) = self.sessions.get_mut(&id) {
            rec.viewer_ssrcs = digest.viewer_ssrcs;
        }
        if digest.bye_refused {
            counts.byes_refused += 1;
            tracing::debug!(session = %format_args!("{id:016X}"), "interleaved RTCP BYE ignored: it names no SSRC the viewer reported from before (RFC 3550 §6.6)");
        }
        if digest.bye {
            counts.byes += 1;
            effects.push(Effect::InterleavedRtcp(counts));
            if let Some(rec) = self.end_session(id, true, &mut effects) {
                if self.may_log(rec.peer.ip(), now) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session ended: viewer sent RTCP BYE");
                }
            }
            return effects;
        }
        effects.push(Effect::InterleavedRtcp(counts));
        effects
    }

    /// A shard ended a session by itself (viewer BYE, TCP viewer too slow): the record goes
    /// without a Teardown back (the shard has already freed it).
    pub fn shard_ended(
        &mut self,
        id: SessionId,
        reason: EndReason,
        shard: usize,
        now: Instant,
    ) -> Vec<Effect> {
        let why = match reason {
            EndReason::ClientBye => "viewer sent RTCP BYE",
            EndReason::TooSlow => "viewer too slow (TCP backlog full)",
        };
        let mut effects = Vec::new();
        if let Some(rec) = self.end_session(id, false, &mut effects) {
            if self.may_log(rec.peer.ip(), now) {
                tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, shard, "session ended by its shard: {why}");
            }
        }
        effects
    }

    /// Ends the sessions that expired by `now` (idle, or never played), and reports the
    /// log lines suppressed in windows that closed. Call it about once a second.
    pub fn expire(&mut self, now: Instant) -> Vec<Effect> {
        let expired: Vec<(SessionId, String)> = self
            .sessions
            .iter()
            .filter_map(|(&id, r)| r.expiry(now, &self.config).map(|why| (id, why)))
            .collect();
        let mut effects = Vec::new();
        for (id, why) in expired {
            if let Some(rec) = self.end_session(id, true, &mut effects) {
                if self.may_log(rec.peer.ip(), now) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session {why}");
                }
            }
        }
        for s in self.log_limit.sweep(now) {
            log_suppressed(s);
        }
        effects
    }

    /// Ends a session an admin named (through its API handle, resolved by the caller);
    /// returns the effects and the connection that created it (to close), or `None` when
    /// there is no such session.
    pub fn end_by_admin(&mut self, id: SessionId) -> Option<(Vec<Effect>, ConnId)> {
        let mut effects = Vec::new();
        let rec = self.end_session(id, true, &mut effects)?;
        tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session ended through the API: BYE sent, closing its RTSP connection");
        Some((effects, rec.origin))
    }

    /// Ends every session (shutdown).
    pub fn end_all(&mut self) -> Vec<Effect> {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        let mut effects = Vec::new();
        for id in ids {
            self.end_session(id, true, &mut effects);
        }
        effects
    }

    /// Ends the viewers of media files that are about to change on disk (their read lease
    /// is being broken): BYE, then the last `Arc` drops, the mapping goes, the lease is
    /// released and the writer proceeds. New requests re-open and re-index the file.
    pub fn revoke_changing_media(&mut self) -> Vec<Effect> {
        let names = self.library.revoke_breaking();
        let doomed: Vec<(SessionId, String)> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.media.revoke_if_breaking())
            .map(|(&id, r)| (id, r.media.name.clone()))
            .collect();
        let mut effects = Vec::new();
        for (id, name) in &doomed {
            self.end_session(*id, true, &mut effects);
            tracing::info!(session = %format_args!("{id:016X}"), stream = %name, "session ended: its media file is changing on disk");
        }
        if !names.is_empty() || !doomed.is_empty() {
            tracing::warn!(files = ?names, sessions = doomed.len(), "media changing on disk: viewers ended, mapping released");
        }
        effects
    }

    /// Applies a reloaded configuration: users, access rules, Basic, admission limits, the
    /// media catalog, play-token settings take effect for new requests; running sessions
    /// keep their files. Returns the settings that need a restart to change.
    pub fn apply_reload(
        &mut self,
        config: ServerConfig,
        library: Arc<MediaLibrary>,
        rng: &mut dyn RngCore,
    ) -> Vec<&'static str> {
        self.auth = Authenticator::new(
            config.users.clone(),
            config.access.clone(),
            config.allow_basic,
        );
        self.admission.set_limits(config.admission);
        self.library = library;
        self.tokens.required = config.require_token;
        match &config.token_secret {
            Some(secret) => self.tokens.key = TokenKey::from_secret(secret),
            // A configured secret was removed: tokens signed with it must stop working.
            None if !self.tokens.key.ephemeral => self.tokens.key = TokenKey::random_from(rng),
            // Still no secret: keep this run's random one, so issued tokens stay valid.
            None => {}
        }
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
        // Everything else in the new configuration applies from now on; the settings that
        // need a restart keep their running values.
        let keep = old.clone();
        self.config = ServerConfig {
            listen: keep.listen,
            http_listen: keep.http_listen,
            shards: keep.shards,
            payload_budget_bytes: keep.payload_budget_bytes,
            session_timeout: keep.session_timeout,
            live: keep.live,
            live_start: keep.live_start,
            ..config
        };
        needs_restart
    }
}

/// The `Session` header of a response (§12.37), with the timeout clients must beat.
fn session_header(id: SessionId, timeout: Duration) -> String {
    format!("{id:016X};timeout={}", timeout.as_secs())
}

/// Percent-encodes a stream name for a URL path, segment by segment (RFC 3986 §3.3:
/// unreserved characters stay).
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, seg) in name.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        for b in seg.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The caller as the owner of the sessions it creates: its address and authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnerKey(Owner);

/// A handler's successful outcome.
#[derive(Debug)]
struct Done {
    response: Response,
    effects: Vec<Effect>,
    after_response: Vec<Effect>,
}

impl Done {
    fn ok(response: Response) -> Self {
        Self {
            response,
            effects: Vec::new(),
            after_response: Vec::new(),
        }
    }
}

/// A handler's next step: answer, or ask a shard first.
#[derive(Debug)]
enum Step {
    Done(Done),
    Ask(ShardAsk, Pending),
}

impl Step {
    fn done(d: Done) -> Self {
        Step::Done(d)
    }
}

/// What a shard answers to a [`ShardAsk`].
#[derive(Debug)]
pub enum ShardReply {
    /// PLAY: where the stream starts and stops.
    Play(PlayStarted),
    /// PAUSE: the position paused at.
    Pause(f64),
}
