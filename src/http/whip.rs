//! WHIP over HTTP (RFC 9725 §4): `POST /whip/{path}` with a publisher's SDP offer answers
//! `201 Created` with the SDP answer and the publisher's `Location`; `DELETE` on that
//! location ends the publish. The decisions are the session core's
//! ([`ControlApi::whip_offer`]); this module is the HTTP contract around them, the same as
//! WHEP's ([`super::whep`]):
//!
//! - The stream key is a bearer token (§4.5: `Authorization: Bearer KEY`, what OBS's WHIP
//!   output sends from its "Bearer Token" field) or `?key=` as RTMP takes it: the path's
//!   publish rules of `[[access]]` decide, as for RTSP and RTMP publishers.
//! - `PATCH` (trickle ICE, ICE restart, §4.3) is answered `405` with `Allow`: an ICE-lite
//!   server with one host candidate has nothing to trickle.
//! - Errors are `text/plain` sentences; `401` carries `WWW-Authenticate: Bearer`.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::api::{read_body, stream_name};
use super::server::{HttpLimits, HttpResponse};
use super::whep::{bearer, cors, created, not_allowed, not_sdp, preflight, text};
use super::ControlApi;
use crate::rtsp::session::WhipRefusal;

/// The path prefix of publisher resources (`/whip/session/{key}`). A stream named `session`
/// (or under it) cannot be published over WHIP.
pub const SESSION_PREFIX: &str = "session/";

/// What a WHIP `POST` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipCreated {
    /// The SDP answer.
    pub answer: String,
    /// The publisher's resource key (`/whip/session/{key}`).
    pub key: String,
}

/// Routes `/whip/{rest}`.
pub async fn handle(
    api: &dyn ControlApi,
    req: Request<Incoming>,
    rest: &str,
    peer: std::net::SocketAddr,
    limits: &HttpLimits,
) -> HttpResponse {
    let method = req.method().clone();
    let mut r = if let Some(key) = rest.strip_prefix(SESSION_PREFIX) {
        match method {
            Method::DELETE if api.whip_delete(key) => text(StatusCode::OK, "publish ended"),
            Method::DELETE => text(StatusCode::NOT_FOUND, "no such WHIP publisher"),
            Method::OPTIONS => preflight("DELETE, OPTIONS"),
            // §4.3: no trickle ICE and no ICE restart on an ICE-lite server.
            _ => not_allowed(
                "DELETE, OPTIONS",
                "this server is ICE-lite with one host candidate: there is nothing to trickle and no ICE restart; DELETE ends the publish",
            ),
        }
    } else {
        match stream_name(rest) {
            None => text(
                StatusCode::NOT_FOUND,
                "no stream path in the URL (/whip/{path})",
            ),
            Some(path) => match method {
                Method::POST => offer(api, req, &path, peer, limits).await,
                Method::OPTIONS => preflight("POST, OPTIONS"),
                _ => not_allowed("POST, OPTIONS", "POST an SDP offer to publish to this path"),
            },
        }
    };
    cors(&mut r);
    r
}

/// `POST /whip/{path}`.
async fn offer(
    api: &dyn ControlApi,
    req: Request<Incoming>,
    path: &str,
    peer: std::net::SocketAddr,
    limits: &HttpLimits,
) -> HttpResponse {
    if let Some(refused) = not_sdp(&req) {
        return refused;
    }
    let key = bearer(&req).or_else(|| {
        req.uri()
            .query()?
            .split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .map(str::to_owned)
    });
    let body = match read_body(req, limits).await {
        Ok(b) => b,
        Err((status, message)) => return text(status, message),
    };
    match api.whip_offer(path, &body, key.as_deref(), peer) {
        Ok(c) => created(c.answer, &format!("/whip/{SESSION_PREFIX}{}", c.key)),
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = text(status, refusal.to_string());
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"shardcast\""),
                );
            }
            if matches!(refusal, WhipRefusal::Off | WhipRefusal::NoIngestPort) {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(60u32));
            }
            r
        }
    }
}
