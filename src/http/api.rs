//! The JSON API under `/api/v1` (described in `docs/openapi.json`, which tests validate the
//! live answers against).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `streams` | `{"streams": [Stream]}` |
//! | GET | `streams/{name}` | `Stream`, 404 |
//! | GET | `ingest` | `{"ingest": [Ingest]}` |
//! | GET | `sessions` | `{"sessions": [Session]}` |
//! | GET | `sessions/{id}` | `Session`, 404 |
//! | DELETE | `sessions/{id}` | 204 (admin), 404 |
//! | GET | `stats?history=N` | `Stats` |
//! | POST | `play` | `PlayGrant` (admin; body `application/json`, else 415) |
//! | GET | `openapi.json` | the description itself |
//!
//! Errors are `{"error": "..."}` with a 4xx status.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::server::{authorize, host_name, json_error, json_response, response, HttpResponse};
use super::server::{HttpLimits, Need};
use super::{ControlApi, PlayError, PlayRequest};
use crate::ids::SessionHandle;
use crate::media::name::split_path;
use crate::stats::hub::HISTORY_POINTS;

/// The OpenAPI description served at `/api/v1/openapi.json`.
pub static OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// A session handle as the API writes it: 16 hex digits.
pub fn parse_session_handle(s: &str) -> Option<SessionHandle> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| SessionHandle::from_str_radix(s, 16).ok())
        .flatten()
}

/// A stream name from the rest of the path: percent-decoded, and refused when it could
/// climb out of the media root (the same rules as RTSP request URIs).
pub(super) fn stream_name(raw: &str) -> Option<String> {
    if raw
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b' ' || b == b'#')
    {
        return None;
    }
    let path = raw.split_once('?').map_or(raw, |(path, _)| path);
    let segments = split_path(path).ok()?;
    (!segments.is_empty()).then(|| segments.join("/"))
}

fn no_store(mut r: HttpResponse) -> HttpResponse {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn allow(methods: &'static str) -> HttpResponse {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(methods));
    r
}

/// `history=N` from the query: how many history points `stats` returns (all by default).
fn history_param(query: Option<&str>) -> Result<usize, &'static str> {
    let Some(v) = query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("history="))
    else {
        return Ok(HISTORY_POINTS);
    };
    v.parse::<usize>()
        .map(|n| n.min(HISTORY_POINTS))
        .map_err(|_| "history must be a whole number")
}

/// Answers one request whose path starts with `/api/v1/` (`rest` is what follows).
pub async fn handle(
    api: &dyn ControlApi,
    req: Request<Incoming>,
    rest: &str,
    limits: &HttpLimits,
) -> HttpResponse {
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_name)
        .map(str::to_owned);
    let host = host.as_deref();
    let (first, tail) = match rest.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let access = api.access();
    let read = || authorize(req.headers(), &access, Need::Read);
    let r = match (first, tail) {
        ("openapi.json", None) if get => response(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(OPENAPI_JSON.as_bytes()),
        ),
        ("openapi.json", None) => allow("GET, HEAD"),
        ("streams", None) if get => match read() {
            Err(r) => *r,
            Ok(()) => json_response(
                StatusCode::OK,
                &serde_json::json!({ "streams": api.catalog(host) }),
            ),
        },
        ("streams", Some(name)) if get => match read() {
            Err(r) => *r,
            Ok(()) => match stream_name(name).and_then(|n| api.stream(&n, host)) {
                Some(s) => json_response(StatusCode::OK, &s),
                None => json_error(StatusCode::NOT_FOUND, format!("no stream named {name:?}")),
            },
        },
        ("streams", _) => allow("GET, HEAD"),
        ("ingest", None) if get => match read() {
            Err(r) => *r,
            Ok(()) => json_response(
                StatusCode::OK,
                &serde_json::json!({ "ingest": api.ingest() }),
            ),
        },
        ("ingest", None) => allow("GET, HEAD"),
        ("sessions", None) if get => match read() {
            Err(r) => *r,
            Ok(()) => json_response(
                StatusCode::OK,
                &serde_json::json!({ "sessions": api.sessions() }),
            ),
        },
        ("sessions", None) => allow("GET, HEAD"),
        ("sessions", Some(id)) => {
            let found = parse_session_handle(id);
            if get {
                match read() {
                    Err(r) => *r,
                    Ok(()) => match found.and_then(|id| api.session(id)) {
                        Some(s) => json_response(StatusCode::OK, &s),
                        None => {
                            json_error(StatusCode::NOT_FOUND, format!("no session with id {id:?}"))
                        }
                    },
                }
            } else if method == Method::DELETE {
                match authorize(req.headers(), &access, Need::Admin) {
                    Err(r) => *r,
                    Ok(()) => match found {
                        Some(sid) if api.end_session(sid) => {
                            tracing::info!(handle = %format_args!("{sid:016X}"), "session ended through the API");
                            response(StatusCode::NO_CONTENT, "application/json", Bytes::new())
                        }
                        _ => {
                            json_error(StatusCode::NOT_FOUND, format!("no session with id {id:?}"))
                        }
                    },
                }
            } else {
                allow("GET, HEAD, DELETE")
            }
        }
        ("stats", None) if get => match (read(), history_param(req.uri().query())) {
            (Err(r), _) => *r,
            (Ok(()), Err(why)) => json_error(StatusCode::BAD_REQUEST, why),
            (Ok(()), Ok(n)) => json_response(StatusCode::OK, &api.stats(n)),
        },
        ("stats", None) => allow("GET, HEAD"),
        ("play", None) if method == Method::POST => {
            match authorize(req.headers(), &access, Need::Admin) {
                Err(r) => *r,
                Ok(()) => play(api, req, host.map(str::to_owned), limits).await,
            }
        }
        ("play", None) => allow("POST"),
        _ => json_error(
            StatusCode::NOT_FOUND,
            format!("no such resource: /api/v1/{rest}"),
        ),
    };
    no_store(r)
}

/// True when a `Content-Type` value names `application/json`: type and subtype compared
/// case-insensitively, parameters such as `; charset=utf-8` allowed (RFC 9110 §8.3.1).
/// Reads a request body of at most `max_body_bytes` within `body_timeout` (a declared
/// `Content-Length` over the limit is refused before reading); the error is the status and
/// message to refuse with (413, 408, 400).
pub(super) async fn read_body(
    req: Request<Incoming>,
    limits: &HttpLimits,
) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes", limits.max_body_bytes),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), limits.max_body_bytes);
    match tokio::time::timeout(limits.body_timeout, body.collect()).await {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("body not received within {:?}", limits.body_timeout),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err((StatusCode::BAD_REQUEST, format!("reading body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/json"))
}

/// `POST /api/v1/play`: reads a bounded JSON body within the body timeout and signs a URL.
///
/// The body must be declared `application/json` (else 415, RFC 9110 §15.5.16): an HTML form
/// on another site can only send `text/plain`, urlencoded or multipart bodies without a CORS
/// preflight, so it cannot reach this call from an admin's browser.
async fn play(
    api: &dyn ControlApi,
    req: Request<Incoming>,
    host: Option<String>,
    limits: &HttpLimits,
) -> HttpResponse {
    if !is_json(req.headers().get(header::CONTENT_TYPE)) {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be Content-Type: application/json",
        );
    }
    let bytes = match read_body(req, limits).await {
        Ok(b) => b,
        Err((status, message)) => return json_error(status, message),
    };
    let parsed: PlayRequest = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"stream\": NAME, \"viewer_ip\"?: IP, \"lifetime_secs\"?: N}}: {e}"
                ),
            )
        }
    };
    let Some(name) = stream_name(&parsed.stream) else {
        return json_error(
            StatusCode::NOT_FOUND,
            format!("no stream named {:?}", parsed.stream),
        );
    };
    let parsed = PlayRequest {
        stream: name,
        ..parsed
    };
    match api.issue_play_url(&parsed, host.as_deref()) {
        Ok(grant) => {
            tracing::info!(stream = %parsed.stream, viewer_ip = ?parsed.viewer_ip, expires_unix = grant.expires_unix, "play token issued");
            json_response(StatusCode::OK, &grant)
        }
        Err(e @ PlayError::UnknownStream(_)) => json_error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ PlayError::BadLifetime) => json_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Default lifetime and bounds of issued tokens, for the `play` handler's callers.
pub fn lifetime(req: &PlayRequest) -> Result<Duration, PlayError> {
    let secs = req
        .lifetime_secs
        .unwrap_or(crate::token::DEFAULT_LIFETIME.as_secs());
    if secs == 0 || secs > crate::token::MAX_LIFETIME.as_secs() {
        return Err(PlayError::BadLifetime);
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_history() {
        assert_eq!(parse_session_handle("00000000000000FF"), Some(255));
        assert_eq!(parse_session_handle("00000000000000ff"), Some(255));
        assert_eq!(parse_session_handle("+0000000000000FF"), None);
        assert_eq!(parse_session_handle("FF"), None);
        assert_eq!(stream_name("news/today").as_deref(), Some("news/today"));
        assert_eq!(stream_name("a%20b").as_deref(), Some("a b"));
        assert_eq!(stream_name("../etc/passwd"), None);
        assert_eq!(stream_name("a%2f..%2fb"), None);
        assert_eq!(stream_name(""), None);
        assert_eq!(history_param(None).ok(), Some(HISTORY_POINTS));
        assert_eq!(history_param(Some("history=5")).ok(), Some(5));
        assert_eq!(
            history_param(Some("history=99999")).ok(),
            Some(HISTORY_POINTS)
        );
        assert!(history_param(Some("history=x")).is_err());
        let req = |l| PlayRequest {
            stream: "s".into(),
            viewer_ip: None,
            lifetime_secs: l,
        };
        assert_eq!(lifetime(&req(None)), Ok(Duration::from_secs(300)));
        assert_eq!(lifetime(&req(Some(0))), Err(PlayError::BadLifetime));
        assert_eq!(lifetime(&req(Some(86_401))), Err(PlayError::BadLifetime));
    }

    #[test]
    fn only_json_bodies_are_json() {
        let is = |v: &'static str| is_json(Some(&HeaderValue::from_static(v)));
        assert!(is("application/json"));
        assert!(is("Application/JSON; charset=utf-8"));
        assert!(is(" application/json ;charset=UTF-8"));
        assert!(!is("text/plain"));
        assert!(!is("text/plain; x=application/json"));
        assert!(!is("application/x-www-form-urlencoded"));
        assert!(!is("multipart/form-data; boundary=x"));
        assert!(!is("application/jsonx"));
        assert!(!is(""));
        assert!(!is_json(None));
    }
}
