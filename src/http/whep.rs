//! WHEP over HTTP (draft-ietf-wish-whep §4): `POST /whep/{stream}` with an SDP offer creates
//! a WebRTC viewer and answers `201 Created` with the SDP answer and the session's
//! `Location`; `DELETE` on that location ends it. The decisions are the session core's
//! ([`ControlApi::whep_offer`]); this module is the HTTP contract around them
//! (`docs/design/webrtc.md`, "WHEP over HTTP"):
//!
//! - `PATCH` (trickle ICE, ICE restart, §4.3) is answered `405` with `Allow`: an ICE-lite
//!   server with one host candidate has nothing to trickle, and the browser's candidates need
//!   no signalling (its checks reach our port).
//! - Every answer carries CORS headers (§4.6 recommends them): a page on another origin may
//!   play; nothing here relies on cookies, and a restricted stream needs a play token, which
//!   the page got from its own web side.
//! - Errors are `text/plain` sentences: the viewer page shows them and falls back to HLS.

use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::api::{read_body, stream_name};
use super::server::{response, HttpLimits, HttpResponse};
use super::ControlApi;
use crate::rtsp::session::WhepRefusal;
use crate::token::token_in_query;

/// The path prefix of session resources (`/whep/session/{key}`). A stream named `session`
/// (or under it) cannot be played over WHEP.
pub const SESSION_PREFIX: &str = "session/";

/// `Content-Type` of offers and answers (RFC 3264 over HTTP: RFC 8866 §8.1).
const SDP: &str = "application/sdp";

/// What a WHEP `POST` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhepCreated {
    /// The SDP answer.
    pub answer: String,
    /// The session's resource key (`/whep/session/{key}`).
    pub key: String,
}

/// Routes `/whep/{rest}`.
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
            Method::DELETE if api.whep_delete(key) => text(StatusCode::OK, "session ended"),
            Method::DELETE => text(StatusCode::NOT_FOUND, "no such WHEP session"),
            Method::OPTIONS => preflight("DELETE, OPTIONS"),
            // §4.3: no trickle ICE and no ICE restart on an ICE-lite server.
            _ => not_allowed(
                "DELETE, OPTIONS",
                "this server is ICE-lite with one host candidate: there is nothing to trickle and no ICE restart; DELETE ends the session",
            ),
        }
    } else {
        match stream_name(rest) {
            None => text(
                StatusCode::NOT_FOUND,
                "no stream in the URL (/whep/{stream})",
            ),
            Some(stream) => match method {
                Method::POST => offer(api, req, &stream, peer, limits).await,
                Method::OPTIONS => preflight("POST, OPTIONS"),
                _ => not_allowed("POST, OPTIONS", "POST an SDP offer to play this stream"),
            },
        }
    };
    cors(&mut r);
    r
}

/// `POST /whep/{stream}`.
async fn offer(
    api: &dyn ControlApi,
    req: Request<Incoming>,
    stream: &str,
    peer: std::net::SocketAddr,
    limits: &HttpLimits,
) -> HttpResponse {
    if let Some(refused) = not_sdp(&req) {
        return refused;
    }
    // A play token in the query, or as a bearer token (the WHEP way, §4.5).
    let token = token_in_query(req.uri().query())
        .map(str::to_owned)
        .or_else(|| bearer(&req));
    let body = match read_body(req, limits).await {
        Ok(b) => b,
        Err((status, message)) => return text(status, message),
    };
    match api.whep_offer(stream, &body, token.as_deref(), peer) {
        Ok(c) => created(c.answer, &format!("/whep/{SESSION_PREFIX}{}", c.key)),
        Err(refusal) => refused(&refusal),
    }
}

/// `415` unless the request's `Content-Type` is `application/sdp` (parameters ignored).
pub(super) fn not_sdp(req: &Request<Incoming>) -> Option<HttpResponse> {
    let is_sdp = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case(SDP));
    (!is_sdp).then(|| {
        text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        )
    })
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1).
pub(super) fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
}

/// `201 Created` with the SDP answer and the new session's `Location`.
pub(super) fn created(answer: String, location: &str) -> HttpResponse {
    let mut r = response(StatusCode::CREATED, SDP, Bytes::from(answer));
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The response a refusal gets: its status, `Retry-After` when a retry may work, the
/// sentence as the body.
fn refused(refusal: &WhepRefusal) -> HttpResponse {
    let status =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = text(status, refusal.to_string());
    if let Some(secs) = refusal.retry_after_secs() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if matches!(refusal, WhepRefusal::TokenMissing) {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"shardcast\""),
        );
    }
    r
}

pub(super) fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut body = body.into();
    body.push('\n');
    response(status, "text/plain; charset=utf-8", Bytes::from(body))
}

pub(super) fn not_allowed(allow: &'static str, why: &str) -> HttpResponse {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, why);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The answer to a CORS preflight (and to a plain `OPTIONS`, §4.6): what may be sent.
pub(super) fn preflight(allow: &'static str) -> HttpResponse {
    let mut r = response(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
    let h = r.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(allow),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert("accept-post", HeaderValue::from_static(SDP));
    r
}

/// CORS on every WHEP answer: any origin may read it, the `Location` of a new session and
/// the `Retry-After` of a 503 (neither is a CORS-safelisted response header).
pub(super) fn cors(r: &mut HttpResponse) {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location, retry-after"),
    );
}
