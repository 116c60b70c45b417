//! One HTTP/1.1 connection served by a shard (RFC 9112): its request bytes in, one response
//! at a time out.
//!
//! Requests are read into a fixed buffer and parsed with `httparse` (a head larger than
//! [`MAX_HEAD`] or with more than [`MAX_HEADERS`] headers is refused, never buffered
//! further). A response is a head built once plus a body that is never copied per viewer:
//! static or shared bytes (playlists, init segments) or a media fragment — a cached
//! `moof` + `mdat` header followed by sample ranges of the memory-mapped file — written
//! with gathered `sendmsg` calls straight from the mapping, resumed where the last call
//! stopped when the socket has room again. One request is answered at a time; pipelined
//! requests wait in the buffer until the response before them is written.

use std::io::{self, IoSlice, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::hls::fmp4::Fragment;
use crate::media::MediaFile;
use crate::sys::tcp::{send_file, send_gathered, send_gathered_more};

/// Largest request head accepted (request line and headers).
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Most headers a request may have.
pub(crate) const MAX_HEADERS: usize = 64;
/// Slices one gathered write takes (a fragment body is a head plus a few merged ranges).
const IOVECS_PER_WRITE: usize = 64;

/// The methods served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// GET.
    Get,
    /// HEAD: the same head as GET, no body (RFC 9110 §9.3.2).
    Head,
    /// OPTIONS: a CORS preflight (Fetch standard) or capability probe.
    Options,
}

/// A parsed request: what the router needs, owned (a few small strings per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// Method.
    pub(crate) method: Method,
    /// Path, without the query, not yet decoded.
    pub(crate) path: String,
    /// Query after `?`, if any.
    pub(crate) query: Option<String>,
    /// The `Range` header (RFC 9110 §14.2), if any.
    pub(crate) range: Option<String>,
    /// The `If-None-Match` header (RFC 9110 §13.1.2), if any.
    pub(crate) if_none_match: Option<String>,
    /// Whether the connection stays open after the response (HTTP/1.1 default, RFC 9112
    /// §9.3; HTTP/1.0 only with `keep-alive`).
    pub(crate) keep_alive: bool,
}

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadRequest {
    /// Not HTTP/1.x, or a malformed head: 400.
    Malformed,
    /// Head over [`MAX_HEAD`] or [`MAX_HEADERS`]: 431.
    TooLarge,
    /// A method other than GET, HEAD, OPTIONS: 405.
    Method,
    /// A request with a body (`Content-Length` > 0 or `Transfer-Encoding`): 400; nothing
    /// here takes one, and skipping it would let a client smuggle a second request.
    Body,
}

/// What reading found.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A whole request.
    Request(Request),
    /// Nothing complete yet.
    Partial,
    /// A request that cannot be served: answer with its status and close.
    Bad(BadRequest),
    /// The peer closed or the connection failed.
    Closed,
}

/// A response body: bytes that are never copied per viewer.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// No body.
    Empty,
    /// Bytes built once and shared (a playlist for every viewer of this reload, an init
    /// segment for every viewer of the file).
    Shared(Arc<[u8]>),
    /// A media fragment: a cached head then ranges of the mapped file.
    Fragment(Arc<FragmentBody>),
    /// A media fragment staged once, contiguous, in an in-memory file, for `sendfile(2)`.
    Staged(Arc<StagedBody>),
}

/// A fragment's bytes (head and samples, contiguous) in an anonymous in-memory file
/// (`memfd_create(2)`), written once per shard and sent to every viewer by `sendfile(2)`:
/// the kernel then passes page references, as nginx does from pre-cut segment files,
/// instead of copying each viewer's bytes from the mapping.
#[derive(Debug)]
pub(crate) struct StagedBody {
    file: std::fs::File,
    len: u64,
}

impl StagedBody {
    /// Copies `fragment` (head, then its ranges of `media`) into a new in-memory file.
    pub(crate) fn stage(fragment: &FragmentBody) -> io::Result<Self> {
        use std::io::Write as _;
        let fd = rustix::fs::memfd_create("shardcast-hls", rustix::fs::MemfdFlags::CLOEXEC)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(&fragment.fragment.head)?;
        let bytes = fragment.media.bytes.as_slice();
        for span in &fragment.fragment.body {
            let range = usize::try_from(span.offset)
                .ok()
                .and_then(|o| Some(o..o.checked_add(usize::try_from(span.len).ok()?)?))
                .and_then(|r| bytes.get(r))
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            file.write_all(range)?;
        }
        Ok(Self {
            file,
            len: fragment.len,
        })
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// A `moof` + `mdat` header and the mapped byte ranges that follow it.
#[derive(Debug)]
pub(crate) struct FragmentBody {
    /// The file the ranges index (kept mapped while a response is being written).
    pub(crate) media: Arc<MediaFile>,
    /// The head and the ranges of the file, in `mdat` order.
    pub(crate) fragment: Fragment,
    /// Head and ranges together.
    pub(crate) len: u64,
}

impl Body {
    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Shared(b) => b.len() as u64,
            Body::Fragment(f) => f.len,
            Body::Staged(f) => f.len,
        }
    }

    /// Appends the body's slices from byte `from` to `to` (exclusive) to `out`, up to its
    /// capacity; ranges outside the file (never expected: fragments are built from the
    /// validated index) end the body early, which the caller sees as a short write.
    fn slices<'a>(&'a self, from: u64, to: u64, out: &mut Vec<IoSlice<'a>>) {
        let push = |bytes: &'a [u8], base: u64, out: &mut Vec<IoSlice<'a>>| -> bool {
            let end = base + bytes.len() as u64;
            if end <= from || base >= to {
                return true;
            }
            let a = from.saturating_sub(base) as usize;
            let b = (to.min(end) - base) as usize;
            out.push(IoSlice::new(&bytes[a..b]));
            out.len() < IOVECS_PER_WRITE
        };
        match self {
            Body::Empty => {}
            Body::Shared(b) => {
                push(b, 0, out);
            }
            // Written by `sendfile` only (`HttpConn::write`).
            Body::Staged(_) => {}
            Body::Fragment(f) => {
                if !push(&f.fragment.head, 0, out) {
                    return;
                }
                let file = f.media.bytes.as_slice();
                let mut base = f.fragment.head.len() as u64;
                for span in &f.fragment.body {
                    if base >= to {
                        return;
                    }
                    let Some(bytes) = usize::try_from(span.offset)
                        .ok()
                        .and_then(|o| file.get(o..o.checked_add(usize::try_from(span.len).ok()?)?))
                    else {
                        return;
                    };
                    if !push(bytes, base, out) {
                        return;
                    }
                    base += span.len;
                }
            }
        }
    }
}

impl FragmentBody {
    /// Where body byte `from` lies when it is in a file range: (file offset, bytes of that
    /// range from there up to `to`); `None` when `from` is in the head.
    fn file_piece(&self, from: u64, to: u64) -> Option<(u64, u64)> {
        let mut base = self.fragment.head.len() as u64;
        if from < base {
            return None;
        }
        for span in &self.fragment.body {
            let end = base + span.len;
            if from < end {
                return Some((span.offset + (from - base), end.min(to) - from));
            }
            base = end;
        }
        None
    }
}

/// How a fragment's file ranges reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyPath {
    /// Each fragment staged once per shard as one contiguous in-memory file, sent to every
    /// viewer with `sendfile(2)` (response head by `sendmsg` with `MSG_MORE`): one copy per
    /// fragment and shard, none per viewer.
    #[default]
    Staged,
    /// `sendfile(2)` per range of the media file: no copy, but one call per range, and an
    /// interleaved MP4 has a range per sample.
    Sendfile,
    /// Gathered `sendmsg(2)` of mapping slices: one call for head and many ranges, but the
    /// kernel copies every byte from the mapping into the socket buffer, for every viewer.
    Gather,
}

impl std::str::FromStr for BodyPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "staged" => Ok(Self::Staged),
            "sendfile" => Ok(Self::Sendfile),
            "gather" => Ok(Self::Gather),
            other => Err(format!(
                "unknown HLS body path {other:?} (staged, sendfile or gather)"
            )),
        }
    }
}

/// A response being written.
#[derive(Debug)]
pub(crate) struct Outgoing {
    head: Vec<u8>,
    body: Body,
    /// The body bytes sent: `body_from..body_to` (a `Range` request's window, else all).
    body_from: u64,
    body_to: u64,
    /// Bytes of head + window written so far.
    sent: u64,
    /// Close the connection once written.
    close: bool,
}

impl Outgoing {
    /// A response of `head` and the `from..to` window of `body` (empty for HEAD).
    pub(crate) fn new(head: Vec<u8>, body: Body, from: u64, to: u64, close: bool) -> Self {
        Self {
            head,
            body,
            body_from: from,
            body_to: to.max(from),
            sent: 0,
            close,
        }
    }

    fn total(&self) -> u64 {
        self.head.len() as u64 + (self.body_to - self.body_from)
    }
}

/// How far a write got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteState {
    /// Nothing to write, or the response is out.
    Done,
    /// The socket is full; wait for writability.
    Blocked,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct HttpConn {
    stream: TcpStream,
    /// The viewer's address.
    pub(crate) peer: SocketAddr,
    inbuf: Box<[u8]>,
    in_len: usize,
    out: Option<Outgoing>,
    /// Last time a request arrived or a write made progress.
    pub(crate) last_active: Instant,
    /// Body bytes written to this connection (the viewer's statistics).
    pub(crate) body_bytes: u64,
    /// Set once the connection is to be closed after the current response.
    closing: bool,
    /// TCP_CORK is on for the response being written.
    corked: bool,
}

impl HttpConn {
    /// Wraps an accepted, non-blocking connection.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, now: Instant) -> Self {
        Self {
            stream,
            peer,
            inbuf: vec![0; MAX_HEAD].into_boxed_slice(),
            in_len: 0,
            out: None,
            last_active: now,
            body_bytes: 0,
            closing: false,
            corked: false,
        }
    }

    /// The socket (for epoll registration).
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// True while a response is being written.
    pub(crate) fn is_writing(&self) -> bool {
        self.out.is_some()
    }

    /// True once the connection is to close after its response.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Reads what the socket holds and parses the next request, if no response is being
    /// written (pipelined requests wait: one response at a time).
    pub(crate) fn read_request(&mut self) -> Incoming {
        if self.out.is_some() || self.closing {
            return Incoming::Partial;
        }
        if let Some(done) = self.parse() {
            return done;
        }
        loop {
            if self.in_len == self.inbuf.len() {
                return Incoming::Bad(BadRequest::TooLarge);
            }
            match self.stream.read(&mut self.inbuf[self.in_len..]) {
                Ok(0) => return Incoming::Closed,
                Ok(n) => {
                    self.in_len += n;
                    if let Some(done) = self.parse() {
                        return done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Incoming::Partial,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Incoming::Closed,
            }
        }
    }

    /// Parses a request from the buffer; `None` when the head is incomplete.
    fn parse(&mut self) -> Option<Incoming> {
        if self.in_len == 0 {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let consumed = match req.parse(&self.inbuf[..self.in_len]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return None,
            Err(httparse::Error::TooManyHeaders) => {
                return Some(Incoming::Bad(BadRequest::TooLarge))
            }
            Err(_) => return Some(Incoming::Bad(BadRequest::Malformed)),
        };
        let parsed = to_request(&req);
        self.inbuf.copy_within(consumed..self.in_len, 0);
        self.in_len -= consumed;
        Some(match parsed {
            Ok(r) => Incoming::Request(r),
            Err(e) => Incoming::Bad(e),
        })
    }

    /// Starts writing `out` and writes what the socket takes now.
    pub(crate) fn respond(
        &mut self,
        out: Outgoing,
        now: Instant,
        path: BodyPath,
    ) -> io::Result<WriteState> {
        self.closing |= out.close;
        // A staged body leaves in several sendfile calls: corked (TCP_CORK, tcp(7)), the
        // kernel sends only full segments until the response is out, as nginx's
        // `tcp_nopush` does, instead of a short segment at the end of each call.
        let cork = matches!(out.body, Body::Staged(_));
        if cork {
            let _ = socket2::SockRef::from(&self.stream).set_cork(true);
        }
        self.corked = cork;
        self.out = Some(out);
        self.last_active = now;
        self.write(now, path)
    }

    /// Continues the response being written.
    pub(crate) fn write(&mut self, now: Instant, path: BodyPath) -> io::Result<WriteState> {
        let Some(out) = self.out.as_mut() else {
            return Ok(WriteState::Done);
        };
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(IOVECS_PER_WRITE);
        loop {
            let total = out.total();
            if out.sent >= total {
                self.out = None;
                if std::mem::take(&mut self.corked) {
                    let _ = socket2::SockRef::from(&self.stream).set_cork(false);
                }
                return Ok(WriteState::Done);
            }
            iov.clear();
            let head_len = out.head.len() as u64;
            let from = out.body_from + out.sent.saturating_sub(head_len);
            if let Body::Staged(staged) = &out.body {
                let n = if out.sent < head_len {
                    let more = out.body_to > out.body_from;
                    let head = [IoSlice::new(&out.head[out.sent as usize..])];
                    send_gathered_more(&self.stream, &head, more)? as u64
                } else {
                    let want = usize::try_from(out.body_to - from).unwrap_or(usize::MAX);
                    let n = send_file(&self.stream, &staged.file, from, want)? as u64;
                    self.body_bytes += n;
                    n
                };
                if n == 0 {
                    return Ok(WriteState::Blocked);
                }
                out.sent += n;
                self.last_active = now;
                continue;
            }
            if let (BodyPath::Sendfile, Body::Fragment(f)) = (path, &out.body) {
                if let Some(file) = f.media.file() {
                    let file_piece = if out.sent >= head_len {
                        f.file_piece(from, out.body_to)
                    } else {
                        None // the response head goes first
                    };
                    if let Some((offset, len)) = file_piece {
                        let want = usize::try_from(len).unwrap_or(usize::MAX);
                        let n = send_file(&self.stream, file, offset, want)? as u64;
                        if n == 0 {
                            return Ok(WriteState::Blocked);
                        }
                        self.body_bytes += n;
                        out.sent += n;
                        self.last_active = now;
                        if n < len {
                            return Ok(WriteState::Blocked);
                        }
                        continue;
                    }
                    // In the heads: the response head and the fragment's `moof` head, with
                    // MSG_MORE so they leave in one segment with the file bytes after them.
                    if out.sent < head_len {
                        iov.push(IoSlice::new(&out.head[out.sent as usize..]));
                    }
                    let head_end = (f.fragment.head.len() as u64).min(out.body_to);
                    if from < head_end {
                        iov.push(IoSlice::new(
                            &f.fragment.head[from as usize..head_end as usize],
                        ));
                    }
                    let offered: u64 = iov.iter().map(|s| s.len() as u64).sum();
                    let more = out.sent + offered < total;
                    let n = send_gathered_more(&self.stream, &iov, more)? as u64;
                    if n == 0 {
                        return Ok(WriteState::Blocked);
                    }
                    self.body_bytes += n.saturating_sub(head_len.saturating_sub(out.sent));
                    out.sent += n;
                    self.last_active = now;
                    if n < offered {
                        return Ok(WriteState::Blocked);
                    }
                    continue;
                }
            }
            if out.sent < head_len {
                iov.push(IoSlice::new(&out.head[out.sent as usize..]));
            }
            out.body.slices(from, out.body_to, &mut iov);
            let offered: u64 = iov.iter().map(|s| s.len() as u64).sum();
            if offered == 0 {
                // The body ended early (a range outside the file): close rather than send
                // a response shorter than its Content-Length.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "response body shorter than announced",
                ));
            }
            let n = send_gathered(&self.stream, &iov)? as u64;
            if n == 0 {
                return Ok(WriteState::Blocked);
            }
            self.body_bytes += n.saturating_sub(head_len.saturating_sub(out.sent));
            out.sent += n;
            self.last_active = now;
            if n < offered {
                return Ok(WriteState::Blocked);
            }
        }
    }
}

fn to_request(req: &httparse::Request<'_, '_>) -> Result<Request, BadRequest> {
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("OPTIONS") => Method::Options,
        Some(_) => return Err(BadRequest::Method),
        None => return Err(BadRequest::Malformed),
    };
    let target = req.path.ok_or(BadRequest::Malformed)?;
    if !target.starts_with('/') {
        return Err(BadRequest::Malformed);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let version = req.version.ok_or(BadRequest::Malformed)?;
    let mut keep_alive = version >= 1;
    let mut range = None;
    let mut if_none_match = None;
    for h in req.headers.iter() {
        let value = || {
            std::str::from_utf8(h.value)
                .map(|v| v.trim().to_owned())
                .map_err(|_| BadRequest::Malformed)
        };
        if h.name.eq_ignore_ascii_case("range") {
            range = Some(value()?);
        } else if h.name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(value()?);
        } else if h.name.eq_ignore_ascii_case("connection") {
            // RFC 9112 §9.3: `close` ends it; HTTP/1.0 stays open only with `keep-alive`.
            let v = value()?.to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                keep_alive = false;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value()? != "0")
        {
            return Err(BadRequest::Body);
        }
    }
    Ok(Request {
        method,
        path: path.to_owned(),
        query,
        range,
        if_none_match,
        keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (HttpConn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (HttpConn::new(server, peer, Instant::now()), client)
    }

    fn read_until(conn: &mut HttpConn) -> Incoming {
        for _ in 0..200 {
            match conn.read_request() {
                Incoming::Partial => std::thread::sleep(std::time::Duration::from_millis(2)),
                other => return other,
            }
        }
        Incoming::Partial
    }

    #[test]
    fn a_request_split_over_reads_and_a_pipelined_second_one_parse() {
        let (mut conn, mut client) = pair();
        client
            .write_all(b"GET /hls/a/index.m3u8?token=x HTTP/1.1\r\nHo")
            .unwrap();
        assert!(matches!(read_until(&mut conn), Incoming::Partial));
        client
            .write_all(b"st: h\r\nRange: bytes=0-9\r\n\r\nHEAD /b HTTP/1.0\r\n\r\n")
            .unwrap();
        let Incoming::Request(r) = read_until(&mut conn) else {
            panic!("a request")
        };
        assert_eq!(r.path, "/hls/a/index.m3u8");
        assert_eq!(r.query.as_deref(), Some("token=x"));
        assert_eq!(r.range.as_deref(), Some("bytes=0-9"));
        assert!(r.keep_alive);
        let Incoming::Request(r) = read_until(&mut conn) else {
            panic!("the pipelined request")
        };
        assert_eq!(
            (r.method, r.path.as_str(), r.keep_alive),
            (Method::Head, "/b", false)
        );
    }

    #[test]
    fn hostile_heads_are_refused_with_their_reason() {
        for (bytes, want) in [
            (&b"POST / HTTP/1.1\r\n\r\n"[..], BadRequest::Method),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                BadRequest::Body,
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                BadRequest::Body,
            ),
            (b"GET noslash HTTP/1.1\r\n\r\n", BadRequest::Malformed),
            (b"\x00\x01garbage\r\n\r\n", BadRequest::Malformed),
        ] {
            let (mut conn, mut client) = pair();
            client.write_all(bytes).unwrap();
            match read_until(&mut conn) {
                Incoming::Bad(got) => assert_eq!(got, want, "{bytes:?}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        let (mut conn, mut client) = pair();
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        client.write_all(&many).unwrap();
        assert!(matches!(
            read_until(&mut conn),
            Incoming::Bad(BadRequest::TooLarge)
        ));
        let (mut conn, mut client) = pair();
        client.write_all(&[b'a'; MAX_HEAD + 10]).unwrap();
        assert!(matches!(
            read_until(&mut conn),
            Incoming::Bad(BadRequest::TooLarge | BadRequest::Malformed)
        ));
    }

    #[test]
    fn a_large_body_resumes_where_the_socket_stopped_and_arrives_whole() {
        let (mut conn, mut client) = pair();
        let body: Arc<[u8]> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let out = Outgoing::new(
            head.clone(),
            Body::Shared(body.clone()),
            10,
            3_000_010,
            false,
        );
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while got.len() < 19 + 3_000_000 {
                let n = client.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        let mut state = conn.respond(out, Instant::now(), BodyPath::Gather).unwrap();
        while state == WriteState::Blocked {
            std::thread::sleep(std::time::Duration::from_millis(1));
            state = conn.write(Instant::now(), BodyPath::Gather).unwrap();
        }
        let got = reader.join().unwrap();
        assert_eq!(&got[..19], &head[..]);
        assert_eq!(&got[19..], &body[10..3_000_010]);
        assert_eq!(conn.body_bytes, 3_000_000);
        assert!(!conn.is_writing());
    }
}
