//! Everything the control plane can refuse, and the one table from refusal to RFC 2326
//! status code (§7.1.1, §11) with the headers each status needs.
//!
//! Leaf parsers keep their own error types ([`ParseError`], [`UriError`], [`RangeError`],
//! [`TransportError`]); a refusal wraps them, and [`Refusal::status`] is where the control
//! plane's answer is chosen (for the three leaf types that already know their status, by
//! asking them, so each mapping exists once). The `Display` text is the reason in the one
//! log line a refusal gets; the client only sees the status.

use super::SessionState;
use crate::rtsp::admission::Refused;
use crate::rtsp::msg::StatusCode;
use crate::rtsp::parse::ParseError;
use crate::rtsp::range::{RangeError, RateError};
use crate::rtsp::transport::TransportError;
use crate::rtsp::uri::UriError;
use crate::token::TokenError;

/// Methods served, for `Public` (OPTIONS, §12.28) and `Allow` (405, §12.4).
pub const PUBLIC_METHODS: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, ANNOUNCE, RECORD";

/// A request (or connection) the control plane refuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The bytes are no valid request; the connection is closed after the answer.
    #[error("bad request: {0}")]
    Parse(ParseError),
    /// The request URI is malformed or escapes the media root.
    #[error("request URI: {0}")]
    Uri(UriError),
    /// No stream (or track) by that name.
    #[error("{0}")]
    NotFound(String),
    /// The stream exists but its file cannot be served (corrupt, unsupported).
    #[error("cannot serve: {0}")]
    Unservable(String),
    /// The URI names another stream than the session's.
    #[error("URI names another stream than the session's")]
    OtherStream,
    /// A method this server does not serve (§10: ANNOUNCE, RECORD, SET_PARAMETER, REDIRECT).
    #[error("method not served")]
    MethodNotAllowed,
    /// A malformed RTSP 2.0 `Pipelined-Requests` header (RFC 7826 §18.33; → 400).
    #[error("{0}")]
    Pipeline(super::v2::BadPipeline),
    /// `Require` names options this server does not support (§12.32).
    #[error("Require: {0} not supported")]
    OptionNotSupported(String),
    /// Missing or wrong credentials; `challenges` are the `WWW-Authenticate` values to send.
    #[error("{why}")]
    Unauthorized {
        /// Why, for the log line.
        why: &'static str,
        /// `WWW-Authenticate` values (RFC 7616 §3.3), preferred first.
        challenges: Vec<String>,
    },
    /// Authenticated, but an access rule does not let this user read the stream.
    #[error("user {user:?} may not read {stream:?}")]
    Forbidden {
        /// The user.
        user: String,
        /// The stream path.
        stream: String,
    },
    /// Publishing refused: no publish permission for the path, the path is taken or names
    /// a stored stream (403).
    #[error("{0}")]
    PublishForbidden(String),
    /// An ANNOUNCE body that is no SDP, or declares nothing ingest can carry (415).
    #[error("{0}")]
    UnsupportedMedia(String),
    /// A publishing request out of order (SETUP before ANNOUNCE, RECORD before SETUP) (455).
    #[error("{0}")]
    PublishState(&'static str),
    /// `--require-token` and the URL carries no play token.
    #[error("no play token (?token=) in the URL")]
    TokenMissing,
    /// The play token is expired, tampered with, for another stream or address.
    #[error("{0}")]
    TokenInvalid(TokenError),
    /// Over an admission limit, or an authentication queue too long (503/453).
    #[error("{}", .0.why)]
    OverLimit(Refused),
    /// SETUP without a `Transport` header (§12.39).
    #[error("SETUP without Transport")]
    TransportMissing,
    /// A `Transport` header we cannot parse.
    #[error("transport {header:?}: {error}")]
    Transport {
        /// The header as sent.
        header: String,
        /// What is wrong with it.
        error: TransportError,
    },
    /// No alternative of the `Transport` header can be served (or its channels are taken).
    #[error("no supported alternative in transport {0:?}")]
    NoTransport(String),
    /// UDP over RTSPS: the media would leave in the clear what the viewer chose TLS for.
    #[error("UDP transport over RTSPS would send the media in the clear; use TCP (interleaved)")]
    UdpOverTls(String),
    /// `RTP/SAVP` on a connection that holds no SRTP keys for the track: plain RTSP (keys
    /// are only offered inside TLS), or no DESCRIBE of the stream on this RTSPS connection.
    #[error("SRTP transport {transport:?}: {why}")]
    SrtpUnkeyed {
        /// The header as sent.
        transport: String,
        /// Why no keys are held.
        why: &'static str,
    },
    /// A `KeyMgmt` header (RFC 4567 §3.2) that is no MIKEY message we can read.
    #[error("{0}")]
    KeyMgmt(String),
    /// `mode=record`: this server does not accept published streams.
    #[error("mode=record: this server does not accept published streams")]
    RecordNotSupported,
    /// No session by that id — or one that belongs to another client, which gets the same
    /// answer so that ids cannot be probed (docs/SECURITY.md, "Session binding").
    #[error("{0}")]
    SessionNotFound(&'static str),
    /// SETUP of the stream's aggregate URI when it has several tracks, or of another
    /// stream's track into a session (§11.3.8).
    #[error("aggregate operation not allowed")]
    AggregateNotAllowed,
    /// A track URI on a session of several tracks (§11.3.9).
    #[error("only aggregate operation allowed")]
    OnlyAggregate,
    /// The method is not valid in the session's state (Appendix A).
    #[error("not valid in state {0:?}")]
    NotValidInState(SessionState),
    /// A `Range` that cannot be played (§12.29).
    #[error("Range: {0}")]
    Range(RangeError),
    /// A malformed `Scale` or `Speed` (§12.34, §12.35).
    #[error("{header}: {error}")]
    Rate {
        /// `Scale` or `Speed`.
        header: &'static str,
        /// What is wrong with it.
        error: RateError,
    },
    /// Requests on this connection come faster than `max-requests-per-sec`.
    #[error("request rate over max-requests-per-sec")]
    RequestRate,
    /// The shard's command queue is full.
    #[error("shard {0} is overloaded")]
    ShardBusy(usize),
    /// The shard did not answer in time.
    #[error("shard {shard} did not answer {what} in time")]
    ShardTimeout {
        /// The shard.
        shard: usize,
        /// The command (PLAY, PAUSE).
        what: &'static str,
    },
    /// The shard dropped the command (it does not know the session).
    #[error("shard {0} dropped the request")]
    ShardDropped(usize),
    /// A request did not arrive whole in time (slowloris); the connection is closed.
    #[error("request incomplete after the head timeout")]
    RequestTimeout,
}

impl Refusal {
    /// The status to answer with: the control plane's one refusal → status table.
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            Parse(e) => e.status(),
            Uri(e) => e.status(),
            Range(e) => e.status(),
            NotFound(_) | Unservable(_) | OtherStream => StatusCode::NotFound,
            MethodNotAllowed => StatusCode::MethodNotAllowed,
            OptionNotSupported(_) => StatusCode::OptionNotSupported,
            Pipeline(_) => StatusCode::BadRequest,
            Unauthorized { .. } | TokenMissing => StatusCode::Unauthorized,
            Forbidden { .. } | TokenInvalid(_) | PublishForbidden(_) => StatusCode::Forbidden,
            UnsupportedMedia(_) => StatusCode::UnsupportedMediaType,
            PublishState(_) => StatusCode::MethodNotValidInThisState,
            OverLimit(r) => r.status,
            TransportMissing | Rate { .. } => StatusCode::BadRequest,
            KeyMgmt(_) => StatusCode::KeyManagementFailure,
            Transport { .. }
            | NoTransport(_)
            | UdpOverTls(_)
            | SrtpUnkeyed { .. }
            | RecordNotSupported => StatusCode::UnsupportedTransport,
            SessionNotFound(_) => StatusCode::SessionNotFound,
            AggregateNotAllowed => StatusCode::AggregateOperationNotAllowed,
            OnlyAggregate => StatusCode::OnlyAggregateOperationAllowed,
            NotValidInState(_) => StatusCode::MethodNotValidInThisState,
            RequestRate | ShardBusy(_) | ShardTimeout { .. } => StatusCode::ServiceUnavailable,
            ShardDropped(_) => StatusCode::InternalServerError,
            RequestTimeout => StatusCode::RequestTimeout,
        }
    }

    /// Headers the status needs: `Retry-After` (§12.31) on 503/453, `WWW-Authenticate`
    /// (§12.44, RFC 7616) on 401, `Allow` (§12.4) on 405, `Unsupported` (§12.43) on 551,
    /// `Connection: close` (§12.10) when the connection ends with this answer.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        use Refusal::*;
        match self {
            OverLimit(r) => vec![("Retry-After", r.retry_after_secs.to_string())],
            RequestRate | ShardBusy(_) | ShardTimeout { .. } => {
                vec![("Retry-After", "1".to_owned())]
            }
            Unauthorized { challenges, .. } => challenges
                .iter()
                .map(|c| ("WWW-Authenticate", c.clone()))
                .collect(),
            // RFC 2326 §11.4.1: a 401 carries a challenge; the token is not a credential
            // scheme RTSP clients know, so this one only names what is missing.
            TokenMissing => vec![(
                "WWW-Authenticate",
                "Bearer realm=\"shardcast\", error=\"invalid_request\", error_description=\"play token required in the URL query\"".to_owned(),
            )],
            MethodNotAllowed => vec![("Allow", PUBLIC_METHODS.to_owned())],
            OptionNotSupported(options) => vec![("Unsupported", options.clone())],
            Parse(_) | RequestTimeout => vec![("Connection", "close".to_owned())],
            _ => Vec::new(),
        }
    }

    /// Whether the connection is closed after this answer (framing is lost after a
    /// malformed message; a request that never completed).
    pub fn closes_connection(&self) -> bool {
        matches!(self, Refusal::Parse(_) | Refusal::RequestTimeout)
    }
}
