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

mod lifecycle;
mod methods;
mod multicast;
mod publish;
mod record;
mod refusal;
mod srtp;
#[cfg(test)]
mod tests;
pub mod v2;
mod whep;
mod whip;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, RngCore};

pub use multicast::MulticastError;
pub use publish::{IngestTransport, KeyedPublishRefusal, PublishStart};
use record::{Owner, OwnerKey, SessionRecord};
pub use refusal::{Refusal, PUBLIC_METHODS};
pub use whep::{
    WebRtcSettings, WhepAccepted, WhepAudio, WhepOffer, WhepRefusal, NO_CONNECTION,
    WEBRTC_PAYLOAD_BUDGET,
};
pub use whip::{WhipAccepted, WhipOffer, WhipPublisher, WhipRefusal, WhipTrack};

use super::admission::{Admission, Limits, RequestRate};
use super::auth::{AccessRule, Authenticator, UserSecret, Verdict};
use super::log_limit::{Gate, LogLimiter, Suppressed};
use super::msg::{Method, Request, Response, StatusCode, Version};
use super::range::{
    check_rate, choose_rate, format_npt_range, format_rate, vod_play_window, vod_reverse_window,
    RateHeader,
};
use super::transport::{
    format_tcp_reply, format_udp_reply, format_udp_reply_v2, parse_transport, LowerTransport,
};
use super::uri::split_request_uri;
use crate::ids::SERVER_NAME;
use crate::live::LiveChannel;
use crate::live_log::LiveLog;
use crate::media::track::TrackKind;
use crate::media::{MediaFile, MediaLibrary};
use crate::shard::{
    Activity, PlayEnd, PlayRate, PlayStarted, SessionId, SessionSetup, TrackDest, TrackSetup,
};
use crate::stats::{
    digest_rtcp, EndReason, SessionMeta, TrackKey, TrackReception, Transport as StatsTransport,
    ViewerSsrcs,
};
use crate::token::{is_token_syntax, token_in_query, TokenKey};
use crate::wire::ntp::NtpTime;
use crate::wire::rtp::Ssrc;
use crate::wire::sdp::describe_media;

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
    /// The connection is RTSPS (TLS): UDP media, which would leave in the clear, is refused.
    pub secure: bool,
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
    /// A publisher sent RECORD: start ingesting its tracks into the path's live log (and
    /// [`SessionCore::add_log`] it).
    PublishStart(Box<PublishStart>),
    /// A publisher ended (TEARDOWN, its connection, silence): stop ingesting; the path's
    /// viewers wait for a new publisher until the publisher timeout.
    PublishStop {
        /// The publisher's session.
        id: SessionId,
        /// The stream path.
        path: String,
    },
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
        /// Scale and speed chosen for this PLAY.
        rate: PlayRate,
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
    Play(PlayPending),
    Pause,
}

/// What a PLAY's answer needs once the shard has said where the stream starts.
#[derive(Debug)]
struct PlayPending {
    /// Base of the RTP-Info URLs (`Content-Base`).
    content_base: String,
    /// The play token to echo in RTP-Info URLs.
    token: Option<String>,
    /// The session's tracks in SETUP order (RTP-Info follows it).
    track_order: Vec<usize>,
    /// A live channel (`Range: npt=now-`).
    live: bool,
    /// `Scale`/`Speed` headers the request carried, with the value actually used.
    echo_rates: Vec<(&'static str, String)>,
    /// The request's version (RFC 7826 §4.1) and connection: a 2.0 PLAY gets the 2.0
    /// `RTP-Info` and, at the end of a file, a `PLAY_NOTIFY` on that connection.
    version: Version,
    conn: ConnId,
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

/// What the core needs of the configuration (built by `config::ServerConfig::
/// session_settings`; the core does not see process-shaping settings such as ports).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Inactivity after which a session expires (RFC 2326 §12.37).
    pub session_timeout: Duration,
    /// How long a session may stay set up without a PLAY.
    pub setup_timeout: Duration,
    /// The RTSP authority clients use, when it is not the address they reached.
    pub public_address: Option<String>,
    /// Largest RTP payload in bytes (passed to shards with each new session).
    pub payload_budget_bytes: usize,
    /// Whether interleaved RTCP is digested into statistics.
    pub stats: bool,
    /// Users and their Digest secrets.
    pub users: HashMap<String, UserSecret>,
    /// Per-stream access rules.
    pub access: Vec<AccessRule>,
    /// Paths anyone may publish to (`serve --publish`).
    pub publish_open: Vec<String>,
    /// How long a live stream waits for its publisher to come back.
    pub publisher_timeout: Duration,
    /// Whether Basic credentials are accepted.
    pub allow_basic: bool,
    /// Admission limits.
    pub admission: Limits,
    /// Whether DESCRIBE and SETUP need a play token.
    pub require_token: bool,
    /// Whether a DESCRIBE over RTSPS offers SRTP keys (`rtsps-srtp`).
    pub rtsps_srtp: bool,
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
    config: Settings,
    library: Arc<MediaLibrary>,
    channels: HashMap<String, Arc<LiveChannel>>,
    /// Live logs of ingested streams, by stream path (`live/cam1`), while they exist.
    logs: HashMap<String, Arc<LiveLog>>,
    /// The same logs as HLS serves them (shared with the shards), kept in step with `logs`.
    hls_logs: crate::shard::hls::LiveLogs,
    /// ANNOUNCEs waiting for their SETUPs.
    announcements: Vec<publish::Announcement>,
    /// Publishers' sessions (a separate table: they have no shard and no viewer state).
    publishers: HashMap<SessionId, publish::PublisherRecord>,
    /// The UDP ports publishers send to, when UDP ingest is on.
    ingest_ports: Option<(u16, u16)>,
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
    /// WebRTC's certificate and shard ports, when WebRTC is on.
    webrtc: Option<WebRtcSettings>,
    /// WHEP sessions by their resource key (`/whep/session/{key}`).
    whep_keys: HashMap<String, whep::WhepSession>,
    /// WHIP publishers by their resource key (`/whip/session/{key}`), from their POST until
    /// they end.
    whip_keys: HashMap<String, whip::WhipRecord>,
    /// Where WHIP publishers send (the UDP ingest port, at an address browsers can reach).
    whip_addr: Option<SocketAddr>,
    /// Live channels sent to a multicast group, by name.
    multicast: HashMap<String, multicast::MulticastGroup>,
    /// RTSP 2.0 pipelines (RFC 7826 §18.33): (connection, startup id) → the session its
    /// first SETUP created. Pruned to live sessions on every insert, dropped with the
    /// connection.
    pipelines: HashMap<(ConnId, u32), SessionId>,
    /// The server's own CSeq sequence per connection, for `PLAY_NOTIFY` (RFC 7826 §13.5).
    notify_cseq: HashMap<ConnId, u32>,
    /// SRTP keys the last DESCRIBE on each RTSPS connection offered (MIKEY, `srtp`),
    /// dropped with the connection.
    srtp_offers: HashMap<ConnId, srtp::SrtpOffer>,
}

/// The complete answer to `req` with `response` (CSeq echoed, §12.17; Server; Date), in
/// the request's version (RFC 7826 §4.1).
fn complete(cseq: Option<u32>, mut response: Response, wall: SystemTime) -> Response {
    let mut out = Response::new(response.status);
    out.version = response.version;
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
        config: Settings,
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
            logs: HashMap::new(),
            hls_logs: crate::shard::hls::LiveLogs::default(),
            announcements: Vec::new(),
            publishers: HashMap::new(),
            ingest_ports: None,
            shard_ports,
            sessions: HashMap::new(),
            log_limit: LogLimiter::default(),
            refused: BTreeMap::new(),
            webrtc: None,
            whep_keys: HashMap::new(),
            whip_keys: HashMap::new(),
            whip_addr: None,
            multicast: HashMap::new(),
            pipelines: HashMap::new(),
            srtp_offers: HashMap::new(),
            notify_cseq: HashMap::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &Settings {
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

    /// Live logs of ingested streams by path.
    pub fn logs(&self) -> &HashMap<String, Arc<LiveLog>> {
        &self.logs
    }

    /// An ingested stream's log becomes playable at its path (replacing a previous one).
    pub fn add_log(&mut self, log: Arc<LiveLog>) {
        {
            let mut hls = self.hls_logs.write().unwrap_or_else(|p| p.into_inner());
            // A returning publisher resumes the same log: its HLS segments run on.
            let same = hls
                .get(log.name())
                .is_some_and(|h| Arc::ptr_eq(&h.log, &log));
            if !same {
                hls.insert(
                    log.name().to_owned(),
                    Arc::new(crate::shard::hls::LogHls::new(log.clone())),
                );
            }
        }
        self.logs.insert(log.name().to_owned(), log);
    }

    /// Shares the directory the shards' HLS side reads (`HlsContext::logs`).
    pub fn set_hls_logs(&mut self, logs: crate::shard::hls::LiveLogs) {
        self.hls_logs = logs;
    }

    /// The live logs as the shards' HLS side reads them (`HlsContext::logs`).
    pub fn hls_logs(&self) -> &crate::shard::hls::LiveLogs {
        &self.hls_logs
    }

    /// An ingested stream's log is gone: new requests for its path get 404 (sessions
    /// already playing it keep their `Arc` until their shard ends them).
    pub fn remove_log(&mut self, name: &str) -> Option<Arc<LiveLog>> {
        self.hls_logs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.logs.remove(name)
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

    /// Viewers' sessions of stream `name` (set up or playing).
    pub fn viewers_of(&self, name: &str) -> usize {
        self.sessions
            .values()
            .filter(|r| r.media.name == name)
            .count()
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
        self.pipelines.retain(|&(conn, _), _| conn != caller.conn);
        self.notify_cseq.remove(&caller.conn);
        self.srtp_offers.remove(&caller.conn);
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.tcp_conn == Some(caller.conn))
            .map(|(&id, _)| id)
            .collect();
        let mut effects = Vec::new();
        self.close_publishing(caller.conn, &mut effects);
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
        let publishing = self.is_publishing(req);
        let authorized = if publishing {
            self.authorize_publish(req, caller, env)
        } else {
            self.authorize(req, caller, env)
        };
        let (owner, delay) = match authorized {
            Ok(allowed) => allowed,
            Err((refusal, delay)) => return self.answer(req, caller, Err(refusal), delay, env),
        };
        if let Some(options) = req.header("Require") {
            // RFC 2326 §12.32: we implement no 1.0 option tags; in 2.0 the feature tags
            // of `v2::SUPPORTED_TAGS` (RFC 7826 §18.43, §11.1).
            if req.version == Version::V1_0 || !v2::supports_all(options) {
                let refusal = Refusal::OptionNotSupported(options.trim().to_owned());
                return self.answer(req, caller, Err(refusal), delay, env);
            }
        }
        // RFC 7826 §18.33: a request of a pipeline without `Session` belongs to the session
        // the pipeline's first SETUP created; it is answered as if it named it.
        let pipelined;
        let req = match self.pipeline_session(req, caller) {
            Ok(Some(named)) => {
                pipelined = named;
                &pipelined
            }
            Ok(None) => req,
            Err(refusal) => return self.answer(req, caller, Err(refusal), delay, env),
        };
        if publishing {
            let step = match req.method {
                Method::Announce => self.announce(req, caller, &owner),
                Method::Setup => self.setup_record(req, caller, &owner, env),
                Method::Record => self.record(req, &owner),
                Method::Teardown => match req.session_id().and_then(parse_session_id) {
                    Some(id) => self.teardown_publisher(id, &owner),
                    None => Err(Refusal::SessionNotFound("no or malformed Session header")),
                },
                // PAUSE while recording (§10.6) halts delivery for a while: rtspclientsink
                // sends it at its end. Nothing to stop on our side (the publisher pushes).
                Method::Options | Method::GetParameter | Method::SetParameter | Method::Pause => {
                    self.publisher_alive(req, &owner)
                        .ok_or(Refusal::SessionNotFound("unknown session"))
                }
                _ => Err(Refusal::PublishState(
                    "method not valid on a publisher's session",
                )),
            };
            return self.answer(req, caller, step, delay, env);
        }
        let step = match req.method {
            Method::Options => Ok(self.options(req, caller, env.now)),
            Method::Describe => self.describe(req, caller, env).map(Step::done),
            Method::Setup => self.setup(req, caller, &owner, env).map(Step::done),
            Method::Play => self.play(req, caller, &owner, env),
            Method::Pause => self.pause(req, &owner, env.now),
            Method::Teardown => self.teardown(req, &owner, env.now),
            Method::GetParameter => self.get_parameter(req, &owner, env.now).map(Step::done),
            Method::Announce | Method::Record => Err(Refusal::PublishState(
                "RECORD or ANNOUNCE without a publishing context",
            )),
            Method::SetParameter | Method::Redirect => Err(Refusal::MethodNotAllowed),
        };
        match step {
            Ok(Step::Ask(ask, pending)) => Reply::AskShard { ask, pending },
            Ok(Step::Done(done)) => self.answer(req, caller, Ok(done), delay, env),
            Err(refusal) => self.answer(req, caller, Err(refusal), delay, env),
        }
    }

    /// [`SessionCore::finish`] as a reply held for `delay` (the authentication backoff).
    fn answer(
        &mut self,
        req: &Request,
        caller: &Caller,
        done: Result<Done, Refusal>,
        delay: Duration,
        env: &mut Env<'_>,
    ) -> Reply {
        let mut answer = self.finish(Some(req), caller, done, env);
        answer.delay = delay;
        Reply::Answer(answer)
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
            PendingKind::Play(_) => "PLAY",
            PendingKind::Pause => "PAUSE",
        };
        // The shard has the session once a PLAY reached it, answered or not.
        if matches!(kind, PendingKind::Play(_)) && !matches!(answer, ShardAnswer::Busy) {
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
            (PendingKind::Play(play), ShardReply::Play(started)) => {
                self.play_started(id, started, play)
            }
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
        let version = req.map_or(Version::V1_0, |r| r.version);
        let (response, close, effects, after_response) = match done {
            Ok(mut d) => {
                if let (Version::V2_0, Some(req)) = (version, req) {
                    v2::decorate(req.method, d.live, &mut d.response);
                    if let Some(p) = req.header("Pipelined-Requests") {
                        d.response.headers.insert("Pipelined-Requests", p);
                    }
                }
                (d.response, false, d.effects, d.after_response)
            }
            Err(refusal) => {
                let status = match refusal.status() {
                    // RFC 7826 §17.4.26: RTSP 2.0 numbers the key-management failure 466 (its
                    // 463 is "Destination Prohibited").
                    StatusCode::KeyManagementFailure if version == Version::V2_0 => {
                        StatusCode::KeyManagementError
                    }
                    status => status,
                };
                self.count_refusal(status);
                if self.may_log(caller.peer.ip(), env.now) {
                    match req {
                        Some(req) => {
                            tracing::info!(peer = %caller.peer, method = req.method.as_str(), uri = %crate::token::redact_token(&req.uri), status = status.code(), "request refused: {refusal}")
                        }
                        None => {
                            tracing::warn!(peer = %caller.peer, status = status.code(), "{refusal}")
                        }
                    }
                }
                let mut response = refusal_response(&refusal);
                response.status = status;
                response.version = version;
                (
                    response,
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

/// A handler's successful outcome.
#[derive(Debug)]
struct Done {
    response: Response,
    effects: Vec<Effect>,
    after_response: Vec<Effect>,
    /// Whether the media the answer is about is live (`None`: about no media); RTSP 2.0
    /// writes `Media-Properties` from it (`v2::decorate`).
    live: Option<bool>,
}

impl Done {
    fn ok(response: Response) -> Self {
        Self {
            response,
            effects: Vec::new(),
            after_response: Vec::new(),
            live: None,
        }
    }

    /// The same, about media that is `live` or not.
    fn about(mut self, live: bool) -> Self {
        self.live = Some(live);
        self
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
