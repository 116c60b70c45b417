//! RTSP over HTTP: the tunnel Apple defined for QuickTime and that ffmpeg
//! (`-rtsp_transport http`), VLC/live555 (`--rtsp-http`) and GStreamer (`rtsph://`) speak,
//! served on the RTSP port itself (sans-IO; the shell is `control::tunnel`).
//!
//! A client opens two HTTP connections sharing an `x-sessioncookie` value: a GET
//! (`Accept: application/x-rtsp-tunnelled`) that the server answers `200 OK` with
//! `Content-Type: application/x-rtsp-tunnelled` and then uses for every RTSP response and
//! interleaved `$` frame (RFC 2326 §10.12), and a POST (`Content-Type:
//! application/x-rtsp-tunnelled`) whose body is the base64 (RFC 4648 §4) of the client's RTSP
//! requests, never answered on the POST itself. Clients encode each request on its own, so
//! padding may end a quantum in the middle of the body, and TCP may split it anywhere.
//!
//! This module tells HTTP from RTSP by a connection's first request line ([`classify`]),
//! parses the HTTP head ([`parse_http_head`], bounded like RTSP's by
//! [`Limits`]), decides what the head asks for ([`opening`]),
//! decodes the POST body incrementally ([`Base64Decoder`]) and pairs POSTs with GETs
//! ([`Tunnels`]): same cookie, same client address, one GET per cookie, one POST at a time.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::rtsp::parse::Limits;
use crate::rtsp::session::ConnId;

#[cfg(test)]
mod tests;

/// The media type of both tunnel connections (the GET's `Accept`, the POST's
/// `Content-Type`, the GET answer's `Content-Type`).
pub const TUNNEL_MEDIA_TYPE: &str = "application/x-rtsp-tunnelled";

/// Longest `x-sessioncookie` value accepted (clients send 16 to 32 characters).
pub const MAX_COOKIE_BYTES: usize = 128;

/// What a connection speaks, judged by its first request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLine {
    /// RTSP (or anything that is not an HTTP/1.x request line: the RTSP parser answers it).
    Rtsp,
    /// An HTTP/1.x request line (RFC 9112 §3): the tunnel side parses the head.
    Http,
}

/// Classifies a connection from the bytes received so far: `None` while they could still
/// be either. Only a buffer starting with `GET ` or `POST ` (methods RTSP 1.0 does not
/// have, RFC 2326 §6.1) waits for its whole first line; anything else is RTSP at once, so
/// RTSP clients see no change. A line longer than `limits.max_head_bytes` is HTTP, for the
/// head parser to refuse as too large.
pub fn classify(buf: &[u8], limits: &Limits) -> Option<FirstLine> {
    const PREFIXES: [&[u8]; 2] = [b"GET ", b"POST "];
    if buf.is_empty() {
        return None;
    }
    let matched = PREFIXES.iter().find(|p| buf.starts_with(p));
    if matched.is_none() {
        let could_become = PREFIXES
            .iter()
            .any(|p| buf.len() < p.len() && p.starts_with(buf));
        return if could_become {
            None
        } else {
            Some(FirstLine::Rtsp)
        };
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return (buf.len() > limits.max_head_bytes).then_some(FirstLine::Http);
    };
    let line = buf.get(..end).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.ends_with(b" HTTP/1.0") || line.ends_with(b" HTTP/1.1") {
        Some(FirstLine::Http)
    } else {
        Some(FirstLine::Rtsp)
    }
}

/// The HTTP method of a request on the RTSP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `GET`: the tunnel's server-to-client side.
    Get,
    /// `POST`: the tunnel's client-to-server side.
    Post,
    /// Anything else (refused with 405).
    Other,
}

/// The parts of an HTTP request head the tunnel looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHead {
    /// The request method.
    pub method: HttpMethod,
    /// The request target, as sent.
    pub target: String,
    /// The `x-sessioncookie` value, if the header is present (not yet validated).
    pub cookie: Option<String>,
    /// Whether an `Accept` header names [`TUNNEL_MEDIA_TYPE`].
    pub accepts_tunnel: bool,
    /// Whether `Content-Type` is [`TUNNEL_MEDIA_TYPE`].
    pub tunnel_content: bool,
}

/// Why an HTTP request on the RTSP port is refused; [`Refused::status`] is its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The head is not HTTP/1.x syntax (RFC 9112 §2–§5).
    #[error("malformed http request head")]
    Malformed,
    /// The head exceeds the RTSP limits (bytes or header count).
    #[error("http request head too large")]
    HeadTooLarge,
    /// A GET that does not ask for the tunnel: nothing else is served on this port.
    #[error("not a tunnel request (no Accept: application/x-rtsp-tunnelled)")]
    NotTunnel,
    /// A method other than GET and POST.
    #[error("method not allowed on the rtsp port")]
    Method,
    /// A POST whose body is not declared as the tunnel's media type.
    #[error("post content type is not application/x-rtsp-tunnelled")]
    ContentType,
    /// No `x-sessioncookie`, or one that is empty, too long or not visible ASCII.
    #[error("missing or malformed x-sessioncookie")]
    Cookie,
    /// A GET whose cookie already names a live tunnel.
    #[error("x-sessioncookie already in use")]
    CookieInUse,
    /// A POST whose cookie names no live GET.
    #[error("x-sessioncookie names no tunnel")]
    UnknownCookie,
    /// A POST from another client address than its GET's.
    #[error("post comes from another address than its get")]
    OtherAddress,
    /// A POST while another POST of the same tunnel is open.
    #[error("the tunnel already has a post connection")]
    PostInUse,
    /// The POST body is not base64.
    #[error("post body: {0}")]
    Body(#[from] Base64Error),
}

impl Refused {
    /// The HTTP status and reason phrase answering this refusal (RFC 9110 §15).
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Refused::Malformed | Refused::Cookie | Refused::Body(_) => (400, "Bad Request"),
            Refused::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Refused::NotTunnel => (404, "Not Found"),
            Refused::Method => (405, "Method Not Allowed"),
            Refused::ContentType => (415, "Unsupported Media Type"),
            Refused::CookieInUse
            | Refused::UnknownCookie
            | Refused::OtherAddress
            | Refused::PostInUse => (403, "Forbidden"),
        }
    }
}

/// Parses an HTTP/1.x request head at the front of `buf`: `Ok(None)` while it is
/// incomplete, else the head and the bytes it occupied. Enforces `limits.max_head_bytes`
/// and `limits.max_headers` while the head is still incomplete.
pub fn parse_http_head(buf: &[u8], limits: &Limits) -> Result<Option<(HttpHead, usize)>, Refused> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers.clamp(1, 256)];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_head_bytes {
                Err(Refused::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Refused::HeadTooLarge),
        Err(_) => return Err(Refused::Malformed),
    };
    if consumed > limits.max_head_bytes {
        return Err(Refused::HeadTooLarge);
    }
    let method = match req.method {
        Some("GET") => HttpMethod::Get,
        Some("POST") => HttpMethod::Post,
        _ => HttpMethod::Other,
    };
    let mut head = HttpHead {
        method,
        target: req.path.unwrap_or_default().to_owned(),
        cookie: None,
        accepts_tunnel: false,
        tunnel_content: false,
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("x-sessioncookie") {
            head.cookie = Some(value.to_owned());
        } else if h.name.eq_ignore_ascii_case("accept") {
            head.accepts_tunnel |= value
                .split(',')
                .any(|v| media_type(v).eq_ignore_ascii_case(TUNNEL_MEDIA_TYPE));
        } else if h.name.eq_ignore_ascii_case("content-type") {
            head.tunnel_content = media_type(value).eq_ignore_ascii_case(TUNNEL_MEDIA_TYPE);
        }
    }
    Ok(Some((head, consumed)))
}

/// The media type of an `Accept` element or `Content-Type` value, without parameters
/// (RFC 9110 §8.3.1, §12.5.1).
fn media_type(v: &str) -> &str {
    v.split(';').next().unwrap_or_default().trim()
}

/// Which side of a tunnel an HTTP head opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// The GET (server-to-client) side, with its cookie.
    Get(String),
    /// The POST (client-to-server) side, with its cookie.
    Post(String),
}

/// Decides what an HTTP head opens, or why it is refused.
pub fn opening(head: &HttpHead) -> Result<Opening, Refused> {
    match head.method {
        HttpMethod::Other => return Err(Refused::Method),
        HttpMethod::Get if !head.accepts_tunnel => return Err(Refused::NotTunnel),
        HttpMethod::Post if !head.tunnel_content => return Err(Refused::ContentType),
        HttpMethod::Get | HttpMethod::Post => {}
    }
    let cookie = head.cookie.as_deref().unwrap_or_default();
    let valid = !cookie.is_empty()
        && cookie.len() <= MAX_COOKIE_BYTES
        && cookie.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(Refused::Cookie);
    }
    Ok(match head.method {
        HttpMethod::Post => Opening::Post(cookie.to_owned()),
        _ => Opening::Get(cookie.to_owned()),
    })
}

/// The answer to a tunnel GET: HTTP/1.0 (so no length and no chunking: the body is the
/// RTSP stream until the connection closes), not to be cached.
pub fn get_answer() -> Vec<u8> {
    format!(
        "HTTP/1.0 200 OK\r\nServer: shardcast\r\nConnection: close\r\nCache-Control: no-store\r\nPragma: no-cache\r\nContent-Type: {TUNNEL_MEDIA_TYPE}\r\n\r\n"
    )
    .into_bytes()
}

/// The answer to a refused HTTP request: its status, no body, and the connection closes.
pub fn refusal_answer(refused: &Refused) -> Vec<u8> {
    let (code, reason) = refused.status();
    format!("HTTP/1.0 {code} {reason}\r\nServer: shardcast\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

/// A byte of a POST body that is not base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("byte {byte:#04x} at offset {offset} is not base64 here")]
pub struct Base64Error {
    /// Offset of the byte in the whole body.
    pub offset: u64,
    /// The byte.
    pub byte: u8,
}

/// An incremental base64 decoder (RFC 4648 §4 alphabet) for a POST body that arrives in
/// pieces split anywhere. Whitespace is skipped; `=` may end any quantum (each request is
/// encoded on its own, so padding appears mid-body); any other byte outside the alphabet,
/// data after padding within a quantum, or `=` too early is refused. It keeps one quantum
/// of state: memory does not depend on the input.
#[derive(Debug, Clone, Default)]
pub struct Base64Decoder {
    quantum: [u8; 4],
    filled: usize,
    padding: usize,
    offset: u64,
}

impl Base64Decoder {
    /// Decodes `input` onto the end of `out` (at most `input.len() * 3 / 4 + 3` bytes).
    /// After an error the decoder must not be fed again.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Base64Error> {
        for &byte in input {
            let offset = self.offset;
            self.offset += 1;
            let bad = Base64Error { offset, byte };
            let value = match byte {
                b'A'..=b'Z' => byte - b'A',
                b'a'..=b'z' => byte - b'a' + 26,
                b'0'..=b'9' => byte - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b' ' | b'\t' | b'\r' | b'\n' => continue,
                b'=' => {
                    // Padding only in a quantum's last two places (RFC 4648 §4).
                    if self.filled < 2 {
                        return Err(bad);
                    }
                    self.padding += 1;
                    self.push(0, out);
                    continue;
                }
                _ => return Err(bad),
            };
            if self.padding > 0 {
                return Err(bad);
            }
            self.push(value, out);
        }
        Ok(())
    }

    /// Whether the body so far ended on a quantum boundary.
    pub fn at_boundary(&self) -> bool {
        self.filled == 0
    }

    fn push(&mut self, value: u8, out: &mut Vec<u8>) {
        if let Some(slot) = self.quantum.get_mut(self.filled) {
            *slot = value;
        }
        self.filled += 1;
        if self.filled < 4 {
            return;
        }
        let [a, b, c, d] = self.quantum;
        let bytes = [(a << 2) | (b >> 4), (b << 4) | (c >> 2), (c << 6) | d];
        out.extend_from_slice(bytes.get(..3 - self.padding).unwrap_or_default());
        self.filled = 0;
        self.padding = 0;
    }
}

/// One live tunnel: its GET's client address and connection, and where its requests go.
#[derive(Debug)]
struct Tunnel<S> {
    ip: IpAddr,
    conn: ConnId,
    input: S,
    post: Option<ConnId>,
}

/// What a paired POST feeds: the GET's connection (its sessions, channels and sink) and its
/// request input.
#[derive(Debug, Clone)]
pub struct Paired<S> {
    /// The GET's connection id.
    pub conn: ConnId,
    /// The GET connection's request input.
    pub input: S,
}

/// The live tunnels by cookie, and the pairing rules. `S` is the GET connection's request
/// input (a channel sender in the shell). One entry per live GET connection, so the map is
/// bounded by the connection limits.
#[derive(Debug)]
pub struct Tunnels<S> {
    by_cookie: HashMap<String, Tunnel<S>>,
}

impl<S> Default for Tunnels<S> {
    fn default() -> Self {
        Tunnels {
            by_cookie: HashMap::new(),
        }
    }
}

impl<S: Clone> Tunnels<S> {
    /// A GET from `ip` on connection `conn` opens the tunnel `cookie`; refused if the
    /// cookie is live.
    pub fn open_get(
        &mut self,
        cookie: &str,
        ip: IpAddr,
        conn: ConnId,
        input: S,
    ) -> Result<(), Refused> {
        if self.by_cookie.contains_key(cookie) {
            return Err(Refused::CookieInUse);
        }
        self.by_cookie.insert(
            cookie.to_owned(),
            Tunnel {
                ip,
                conn,
                input,
                post: None,
            },
        );
        Ok(())
    }

    /// A POST from `ip` on connection `post` joins the tunnel `cookie`: refused unless a
    /// GET from the same address holds the cookie and no other POST is open on it. (A
    /// client may close its POST and open another, as QuickTime does after each request.)
    pub fn open_post(
        &mut self,
        cookie: &str,
        ip: IpAddr,
        post: ConnId,
    ) -> Result<Paired<S>, Refused> {
        let tunnel = self
            .by_cookie
            .get_mut(cookie)
            .ok_or(Refused::UnknownCookie)?;
        if tunnel.ip != ip {
            return Err(Refused::OtherAddress);
        }
        if tunnel.post.is_some() {
            return Err(Refused::PostInUse);
        }
        tunnel.post = Some(post);
        Ok(Paired {
            conn: tunnel.conn,
            input: tunnel.input.clone(),
        })
    }

    /// POST connection `post` of tunnel `cookie` closed.
    pub fn close_post(&mut self, cookie: &str, post: ConnId) {
        if let Some(t) = self.by_cookie.get_mut(cookie) {
            if t.post == Some(post) {
                t.post = None;
            }
        }
    }

    /// GET connection `conn` closed: its tunnel ends.
    pub fn close_get(&mut self, cookie: &str, conn: ConnId) {
        if self.by_cookie.get(cookie).is_some_and(|t| t.conn == conn) {
            self.by_cookie.remove(cookie);
        }
    }

    /// Live tunnels.
    pub fn len(&self) -> usize {
        self.by_cookie.len()
    }

    /// Whether no tunnel is live.
    pub fn is_empty(&self) -> bool {
        self.by_cookie.is_empty()
    }
}

/// Fuzzing entry: the first-line classifier, the HTTP head parser and the pairing rules on
/// arbitrary head bytes, and the base64 decoder on arbitrary body bytes split at an
/// arbitrary point. Checks the decoder's output bound.
pub fn fuzz_tunnel(data: &[u8]) {
    let limits = Limits::default();
    let split = data.first().map_or(0, |&b| usize::from(b));
    let data = data.get(1..).unwrap_or_default();
    let _ = classify(data, &limits);
    if let Ok(Some((head, consumed))) = parse_http_head(data, &limits) {
        assert!(consumed <= data.len());
        if let Ok(Opening::Post(cookie) | Opening::Get(cookie)) = opening(&head) {
            let mut tunnels = Tunnels::default();
            let ip = IpAddr::from([127, 0, 0, 1]);
            let _ = tunnels.open_get(&cookie, ip, 1, ());
            assert!(tunnels.open_post(&cookie, ip, 2).is_ok());
        }
    }
    let mut decoder = Base64Decoder::default();
    let mut out = Vec::new();
    let (a, b) = data.split_at(split.min(data.len()));
    if decoder.feed(a, &mut out).is_ok() {
        let _ = decoder.feed(b, &mut out);
    }
    assert!(out.len() <= data.len() * 3 / 4 + 3);
}
