//! WHEP signalling (draft-ietf-wish-whep §4): `POST` the offer, read `201` + answer +
//! `Location`, or `503` + `Retry-After`; `DELETE` the `Location` at the end. One blocking
//! HTTP/1.1 exchange per request (`Connection: close`, RFC 9112 §9.6), with timeouts: the
//! bench signals once per viewer, so a connection pool would buy nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The largest answer read (an SDP answer is a few KiB).
const MAX_RESPONSE: usize = 64 * 1024;
/// Connect, read and write timeout of one exchange.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What a WHEP request came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// HTTP status.
    pub(crate) status: u16,
    /// `Location`, if any.
    pub(crate) location: Option<String>,
    /// `Retry-After` in seconds (the delta-seconds form, RFC 9110 §10.2.3), if any.
    pub(crate) retry_after: Option<u64>,
    /// The body, as text (lossy).
    pub(crate) body: String,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignalError {
    /// Connecting, writing or reading failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// The response did not parse or was too long.
    #[error("bad HTTP response: {0}")]
    Bad(&'static str),
}

/// `POST {path}` with an `application/sdp` offer.
pub(crate) fn post_offer(
    http: SocketAddr,
    path: &str,
    offer: &str,
) -> Result<Response, SignalError> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/sdp\r\nAccept: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        offer.len()
    );
    exchange(http, head.as_bytes(), offer.as_bytes())
}

/// `DELETE {location}` (the session's resource URL, a path on the same server).
pub(crate) fn delete(http: SocketAddr, location: &str) -> Result<Response, SignalError> {
    let head = format!(
        "DELETE {location} HTTP/1.1\r\nHost: {http}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    exchange(http, head.as_bytes(), &[])
}

fn exchange(http: SocketAddr, head: &[u8], body: &[u8]) -> Result<Response, SignalError> {
    let mut s =
        TcpStream::connect_timeout(&http, TIMEOUT).map_err(|e| SignalError::Io("connect", e))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| SignalError::Io("socket timeouts", e))?;
    let _ = s.set_nodelay(true);
    s.write_all(head)
        .and_then(|()| s.write_all(body))
        .map_err(|e| SignalError::Io("sending the request", e))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s
            .read(&mut chunk)
            .map_err(|e| SignalError::Io("reading the response", e))?;
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_RESPONSE {
            return Err(SignalError::Bad("response over 64 KiB"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = parse(&buf)? {
            return Ok(r);
        }
    }
    parse(&buf)?.ok_or(SignalError::Bad("connection closed mid-response"))
}

/// A complete response in `buf`, `None` while more is needed.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Response>, SignalError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(SignalError::Bad("status line or headers")),
    };
    let status = resp.code.ok_or(SignalError::Bad("no status"))?;
    let (mut location, mut retry_after, mut length) = (None, None, None);
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).map(str::trim);
        if h.name.eq_ignore_ascii_case("location") {
            location = v.ok().map(str::to_owned);
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = v.ok().and_then(|v| v.parse().ok());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or(SignalError::Bad("Content-Length"))?,
            );
        }
    }
    let rest = buf.get(head_len..).unwrap_or_default();
    // Without Content-Length the body runs to the end of the connection (RFC 9112 §6.3).
    let body = match length {
        Some(n) if rest.len() < n => return Ok(None),
        Some(n) => rest.get(..n).unwrap_or_default(),
        None => rest,
    };
    Ok(Some(Response {
        status,
        location,
        retry_after,
        body: String::from_utf8_lossy(body).into_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_answer_gives_location_and_body() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: /whep/session/abc\r\nContent-Length: 5\r\n\r\nv=0\r\n";
        let r = parse(raw).unwrap().unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.location.as_deref(), Some("/whep/session/abc"));
        assert_eq!(r.body, "v=0\r\n");
        assert_eq!(
            parse(&raw[..raw.len() - 2]).unwrap(),
            None,
            "a short body waits"
        );
    }

    #[test]
    fn retry_after_is_read_and_garbage_is_an_error() {
        let raw =
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
        let r = parse(raw).unwrap().unwrap();
        assert_eq!((r.status, r.retry_after), (503, Some(1)));
        assert!(parse(b"NOT HTTP\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
