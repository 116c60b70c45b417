//! The HLS viewers' HTTP/1.1 client, sans-IO: URLs of one origin ([`Url`]), request heads
//! ([`write_get`]) and the framing of one response at a time ([`ResponseFramer`]) from
//! bytes in any cut, with keep-alive (RFC 9112 §9.3) and `Content-Length` bodies (RFC 9112
//! §6.3). Chunked transfer coding is refused with [`HttpError::Chunked`]: HLS servers send
//! segments and playlists with a length, and a viewer that silently accepted chunks would
//! measure a different server. The sockets are the engine's ([`super::engine`]).

use std::fmt::Write as _;

/// Largest response head accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 64;

/// Why a response could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpError {
    /// The head is not HTTP/1.x (httparse's reason).
    #[error("malformed response head: {0}")]
    Malformed(String),
    /// The head grew past [`MAX_HEAD_BYTES`].
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// `Transfer-Encoding: chunked` (not supported; see the module doc).
    #[error("chunked transfer coding is not supported by the load generator")]
    Chunked,
    /// `Content-Length` is not a number, or two disagree (RFC 9112 §6.3 item 5).
    #[error("invalid Content-Length")]
    BadLength,
    /// The server closed the connection before the head was complete.
    #[error("connection closed before the response head")]
    ClosedBeforeHead,
    /// The server closed the connection before `Content-Length` body bytes arrived.
    #[error("connection closed after {got} of {want} body bytes")]
    ClosedMidBody {
        /// Body bytes received.
        got: u64,
        /// `Content-Length`.
        want: u64,
    },
    /// Bytes arrived after a complete response although no other request was sent.
    #[error("{0} unexpected bytes after a complete response")]
    TrailingBytes(usize),
    /// A URL outside what the viewers support (another origin, not `http://`).
    #[error("unsupported URL: {0}")]
    Url(String),
}

/// An `http://` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// `host:port` (port 80 added when absent).
    pub(crate) authority: String,
    /// Path and query, starting with `/`.
    pub(crate) path: String,
}

impl Url {
    /// Parses an absolute `http://host[:port]/path?query` URL (no fragment, no userinfo).
    pub(crate) fn parse(url: &str) -> Result<Self, HttpError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::Url(format!("not an http:// URL: {url}")))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() || authority.contains('@') || path.contains('#') {
            return Err(HttpError::Url(url.to_owned()));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self { authority, path })
    }

    /// Resolves a URI from a playlist against this (the playlist's) URL (RFC 3986 §5.2,
    /// the cases playlists use: absolute `http://`, absolute path, relative path). A URI on
    /// another origin is refused: every viewer keeps one connection to one server.
    pub(crate) fn join(&self, uri: &str) -> Result<Self, HttpError> {
        if uri.contains("://") {
            let u = Self::parse(uri)?;
            if u.authority != self.authority {
                return Err(HttpError::Url(format!("{uri} is on another origin")));
            }
            return Ok(u);
        }
        if uri.starts_with('/') {
            return Ok(Self {
                authority: self.authority.clone(),
                path: uri.to_owned(),
            });
        }
        let no_query = self.path.split('?').next().unwrap_or("/");
        let dir = &no_query[..no_query.rfind('/').map_or(0, |i| i + 1)];
        let mut path = String::with_capacity(dir.len() + uri.len());
        path.push_str(dir);
        path.push_str(uri);
        Ok(Self {
            authority: self.authority.clone(),
            path,
        })
    }

    /// This URL with `_HLS_msn` and `_HLS_part` added to its query: the blocking playlist
    /// reload of draft-pantos-hls-rfc8216bis §6.2.5.2 for part `part` of segment `msn`.
    pub(crate) fn with_blocking_reload(&self, msn: u64, part: u32) -> Self {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        Self {
            authority: self.authority.clone(),
            path: format!("{}{sep}_HLS_msn={msn}&_HLS_part={part}", self.path),
        }
    }
}

/// Writes a keep-alive `GET` request head for `url` into `out` (cleared first).
pub(crate) fn write_get(url: &Url, out: &mut Vec<u8>) {
    let mut head = String::with_capacity(96 + url.path.len());
    let _ = write!(
        head,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shardcast-bench\r\nAccept: */*\r\n\r\n",
        url.path, url.authority
    );
    out.clear();
    out.extend_from_slice(head.as_bytes());
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLen {
    /// `Content-Length` bytes.
    Exact(u64),
    /// Until the server closes (no length given, RFC 9112 §6.3 item 8).
    UntilClose,
}

/// The head of a framed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// Status code.
    pub(crate) status: u16,
    /// Whether the connection may carry the next request (HTTP/1.1 without
    /// `Connection: close`, and a length-delimited body).
    pub(crate) keep_alive: bool,
}

/// What feeding bytes gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The response is not complete yet.
    More,
    /// The response is complete: its head and body length.
    Done(Head, u64),
}

/// Frames one response at a time from bytes as they arrive. The head accumulates in a
/// reused buffer; the body is kept (in [`ResponseFramer::body`]) only when asked, since a
/// viewer needs playlists' text but only the length of segments.
#[derive(Debug, Default)]
pub(crate) struct ResponseFramer {
    head_buf: Vec<u8>,
    head: Option<(Head, BodyLen)>,
    body_got: u64,
    keep_body: bool,
    body: Vec<u8>,
}

impl ResponseFramer {
    /// Prepares for the next response; `keep_body` keeps its body bytes.
    pub(crate) fn start(&mut self, keep_body: bool) {
        self.head_buf.clear();
        self.head = None;
        self.body_got = 0;
        self.keep_body = keep_body;
        self.body.clear();
    }

    /// The kept body of the last response.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    /// Consumes `data` (all of it, or an error).
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<Progress, HttpError> {
        if self.head.is_none() {
            let old = self.head_buf.len();
            let take = data
                .len()
                .min(MAX_HEAD_BYTES + 1 - old.min(MAX_HEAD_BYTES + 1));
            self.head_buf.extend_from_slice(&data[..take]);
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut fields);
            match resp.parse(&self.head_buf) {
                Ok(httparse::Status::Partial) => {
                    if self.head_buf.len() > MAX_HEAD_BYTES {
                        return Err(HttpError::HeadTooLarge);
                    }
                    return Ok(Progress::More);
                }
                Ok(httparse::Status::Complete(head_len)) => {
                    let parsed = parse_head(&resp)?;
                    // The head ended inside this chunk: the rest of it is body.
                    data = &data[head_len - old..];
                    self.head = Some(parsed);
                }
                Err(e) => return Err(HttpError::Malformed(e.to_string())),
            }
        }
        let Some((head, len)) = self.head else {
            return Ok(Progress::More);
        };
        let (body_part, rest) = match len {
            BodyLen::Exact(want) => {
                let room = usize::try_from(want - self.body_got).unwrap_or(usize::MAX);
                data.split_at(data.len().min(room))
            }
            BodyLen::UntilClose => (data, &data[data.len()..]),
        };
        self.body_got += body_part.len() as u64;
        if self.keep_body {
            self.body.extend_from_slice(body_part);
        }
        if !rest.is_empty() {
            return Err(HttpError::TrailingBytes(rest.len()));
        }
        match len {
            BodyLen::Exact(want) if self.body_got == want => Ok(Progress::Done(head, want)),
            _ => Ok(Progress::More),
        }
    }

    /// The server closed the connection: completes a response delimited by the close, or
    /// says what was cut off.
    pub(crate) fn eof(&mut self) -> Result<Progress, HttpError> {
        match self.head {
            None => Err(HttpError::ClosedBeforeHead),
            Some((head, BodyLen::UntilClose)) => Ok(Progress::Done(head, self.body_got)),
            Some((_, BodyLen::Exact(want))) if self.body_got < want => {
                Err(HttpError::ClosedMidBody {
                    got: self.body_got,
                    want,
                })
            }
            Some((head, BodyLen::Exact(want))) => Ok(Progress::Done(head, want)),
        }
    }
}

fn parse_head(resp: &httparse::Response<'_, '_>) -> Result<(Head, BodyLen), HttpError> {
    let status = resp.code.unwrap_or(0);
    let mut length: Option<u64> = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| HttpError::BadLength);
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // RFC 9112 §6.1: any coding other than identity means chunked comes last.
            if value.map_or(true, |v| !v.trim().eq_ignore_ascii_case("identity")) {
                return Err(HttpError::Chunked);
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value?.trim().parse().map_err(|_| HttpError::BadLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::BadLength);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.unwrap_or("");
            if v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
                close = true;
            } else if v
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
            {
                close = false;
            }
        }
    }
    // RFC 9112 §6.3: 1xx, 204 and 304 responses have no body whatever their headers say.
    let len = match (status, length) {
        (100..=199 | 204 | 304, _) => BodyLen::Exact(0),
        (_, Some(n)) => BodyLen::Exact(n),
        (_, None) => BodyLen::UntilClose,
    };
    Ok((
        Head {
            status,
            keep_alive: !close && len != BodyLen::UntilClose,
        },
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 10\r\n\r\n0123456789";

    /// Every cut of a response into two reads frames the same response: the framer must not
    /// assume a head (or its CRLFCRLF) arrives in one read.
    #[test]
    fn a_response_split_at_every_byte_frames_the_same() {
        for cut in 0..=OK.len() {
            let mut f = ResponseFramer::default();
            f.start(true);
            let first = f.feed(&OK[..cut]).unwrap();
            let second = f.feed(&OK[cut..]).unwrap();
            let done = if cut == OK.len() { first } else { second };
            assert_eq!(
                done,
                Progress::Done(
                    Head {
                        status: 200,
                        keep_alive: true
                    },
                    10
                ),
                "cut at {cut}"
            );
            assert_eq!(f.body(), b"0123456789");
        }
    }

    #[test]
    fn byte_by_byte_keeps_nothing_when_not_asked_but_counts_the_body() {
        let mut f = ResponseFramer::default();
        f.start(false);
        let mut last = Progress::More;
        for b in OK {
            assert_eq!(last, Progress::More);
            last = f.feed(std::slice::from_ref(b)).unwrap();
        }
        assert!(matches!(last, Progress::Done(_, 10)));
        assert!(f.body().is_empty());
        assert_eq!(f.body_got, 10);
    }

    /// Keep-alive reuse: the framer restarted on the same connection frames the next
    /// response; `Connection: close` and HTTP/1.0 say the connection cannot be reused.
    #[test]
    fn keep_alive_reuse_and_close() {
        let mut f = ResponseFramer::default();
        f.start(false);
        assert!(matches!(f.feed(OK).unwrap(), Progress::Done(h, _) if h.keep_alive));
        f.start(true);
        let second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno!";
        assert_eq!(
            f.feed(second).unwrap(),
            Progress::Done(
                Head {
                    status: 404,
                    keep_alive: false
                },
                3
            )
        );
        assert_eq!(f.body(), b"no!");
        f.start(false);
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(f.feed(old).unwrap(), Progress::Done(h, 0) if !h.keep_alive));
    }

    /// A server that closes mid-body is an error with the counts, not a response and not a
    /// wait for bytes that never come; a close before the head likewise.
    #[test]
    fn a_close_mid_body_is_an_error() {
        let mut f = ResponseFramer::default();
        f.start(false);
        assert_eq!(f.feed(&OK[..OK.len() - 4]).unwrap(), Progress::More);
        assert_eq!(
            f.eof().unwrap_err(),
            HttpError::ClosedMidBody { got: 6, want: 10 }
        );
        f.start(false);
        assert_eq!(f.eof().unwrap_err(), HttpError::ClosedBeforeHead);
        f.start(false);
        assert_eq!(f.feed(b"HTTP/1.1 200 OK\r\n").unwrap(), Progress::More);
        assert_eq!(f.eof().unwrap_err(), HttpError::ClosedBeforeHead);
    }

    #[test]
    fn chunked_bad_lengths_and_oversized_heads_are_refused() {
        let mut f = ResponseFramer::default();
        f.start(false);
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(f.feed(chunked).unwrap_err(), HttpError::Chunked);
        f.start(false);
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(f.feed(two).unwrap_err(), HttpError::BadLength);
        f.start(false);
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(f.feed(&big).unwrap_err(), HttpError::HeadTooLarge);
        f.start(false);
        assert!(matches!(
            f.feed(b"SIP/2.0 200 OK\r\n\r\n").unwrap_err(),
            HttpError::Malformed(_)
        ));
        f.start(false);
        let extra = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab";
        assert_eq!(f.feed(extra).unwrap_err(), HttpError::TrailingBytes(1));
    }

    #[test]
    fn a_body_without_length_ends_at_close_and_204_has_none() {
        let mut f = ResponseFramer::default();
        f.start(true);
        assert_eq!(
            f.feed(b"HTTP/1.1 200 OK\r\n\r\nabc").unwrap(),
            Progress::More
        );
        assert!(matches!(f.eof().unwrap(), Progress::Done(h, 3) if !h.keep_alive));
        f.start(false);
        let no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n";
        assert!(matches!(f.feed(no_content).unwrap(), Progress::Done(h, 0) if h.status == 204));
    }

    #[test]
    fn urls_resolve_like_a_player() {
        let base = Url::parse("http://127.0.0.1:8088/hls/cam/index.m3u8?token=t").unwrap();
        assert_eq!(base.authority, "127.0.0.1:8088");
        assert_eq!(base.path, "/hls/cam/index.m3u8?token=t");
        assert_eq!(
            base.join("media.m3u8?token=t&v=3").unwrap().path,
            "/hls/cam/media.m3u8?token=t&v=3"
        );
        assert_eq!(base.join("/x/y.m4s").unwrap().path, "/x/y.m4s");
        assert_eq!(base.join("http://127.0.0.1:8088/a").unwrap().path, "/a");
        assert!(base.join("http://example.com/a").is_err());
        assert_eq!(Url::parse("http://h/p").unwrap().authority, "h:80");
        assert_eq!(Url::parse("http://h:81").unwrap().path, "/");
        assert!(Url::parse("https://h/").is_err());
        let media = base.join("media.m3u8").unwrap();
        assert_eq!(
            media.with_blocking_reload(12, 3).path,
            "/hls/cam/media.m3u8?_HLS_msn=12&_HLS_part=3"
        );
        assert_eq!(
            base.with_blocking_reload(1, 0).path,
            "/hls/cam/index.m3u8?token=t&_HLS_msn=1&_HLS_part=0"
        );
        let mut out = Vec::new();
        write_get(&media, &mut out);
        assert!(out.starts_with(b"GET /hls/cam/media.m3u8 HTTP/1.1\r\nHost: 127.0.0.1:8088\r\n"));
        assert!(out.ends_with(b"\r\n\r\n"));
    }
}
