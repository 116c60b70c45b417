//! A tiny blocking HTTP/1.1 GET client (RFC 9112) for `shardcast stats`: one request per
//! connection (`Connection: close`), bounded in time and size, `Content-Length`,
//! chunked or read-to-close bodies. Plain `http://` only: the API is meant for loopback or
//! a trusted network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response accepted.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not `http://host[:port]`.
    #[error("not an http://host:port URL: {0:?}")]
    BadUrl(String),
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The response is not HTTP/1.x or is malformed.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// The response exceeded [`MAX_RESPONSE_BYTES`].
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// Where the server is: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBase {
    /// `host:port` as written (the `Host` header).
    pub authority: String,
}

impl HttpBase {
    /// Parses `http://host[:port][/]` (port 80 when absent).
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(bad)?
            .trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad());
        }
        let has_port = if rest.starts_with('[') {
            rest.contains("]:")
        } else {
            rest.contains(':')
        };
        Ok(Self {
            authority: if has_port {
                rest.to_owned()
            } else {
                format!("{rest}:80")
            },
        })
    }
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Body (chunked encoding removed).
    pub body: Vec<u8>,
}

/// `GET path` with an optional bearer token, everything within `timeout` per I/O step.
pub fn get(
    base: &HttpBase,
    path: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<HttpReply, ClientError> {
    let addr = base
        .authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| ClientError::BadUrl(base.authority.clone()))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n",
        base.authority
    );
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut raw)?;
    if raw.len() > MAX_RESPONSE_BYTES {
        return Err(ClientError::TooLarge);
    }
    parse_response(&raw)
}

/// Parses a whole HTTP/1.1 response read until the server closed the connection.
pub fn parse_response(raw: &[u8]) -> Result<HttpReply, ClientError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ClientError::Malformed("no end of head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| ClientError::Malformed("head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ClientError::Malformed("status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ClientError::Malformed("status code"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(ClientError::Malformed("header line"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| ClientError::Malformed("content-length"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or(ClientError::Malformed("body shorter than content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpReply { status, body })
}

/// Removes chunked transfer coding (RFC 9112 §7.1).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ClientError::Malformed("chunk size line"))?;
        let line =
            std::str::from_utf8(&data[..eol]).map_err(|_| ClientError::Malformed("chunk"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ClientError::Malformed("chunk size"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data
            .get(..size)
            .ok_or(ClientError::Malformed("chunk shorter than its size"))?;
        out.extend_from_slice(chunk);
        data = data
            .get(size + 2..)
            .ok_or(ClientError::Malformed("chunk end"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            HttpBase::parse("http://127.0.0.1:8080/").unwrap().authority,
            "127.0.0.1:8080"
        );
        assert_eq!(
            HttpBase::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert_eq!(
            HttpBase::parse("http://[::1]:9").unwrap().authority,
            "[::1]:9"
        );
        assert!(HttpBase::parse("https://x").is_err());
        assert!(HttpBase::parse("http://x/y").is_err());
        assert!(HttpBase::parse("http://").is_err());
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiXX").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nall of it").unwrap();
        assert_eq!(r.body, b"all of it");
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
