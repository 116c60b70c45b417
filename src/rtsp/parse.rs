//! Sans-IO framing and parsing of client-to-server RTSP 1.0 traffic.
//!
//! Implements the request message format of RFC 2326 §4 and §6 (request line
//! §6.1, headers §4.2 with the RFC 2616 §4.2 syntax, body length from
//! `Content-Length` §4.3/§12.14; a request without it has no body), the
//! mandatory `CSeq` header (§12.17), version checks (§3.1, 505 per §11.1), and
//! the `$`-prefixed interleaved binary frames of §10.12 that a client may send
//! on the control connection (e.g. RTCP receiver reports). Bare-LF line endings
//! and leading empty lines are tolerated (RFC 2616 §19.3 robustness);
//! obsolete header line folding is rejected with 400.
//!
//! Every limit in [`Limits`] is enforced while a message is still incomplete,
//! so a peer cannot make the caller buffer without bound.

use crate::rtsp::msg::{parse_cseq, Headers, Method, Request, StatusCode};

/// Limits against hostile peers (defaults: 8 KiB for the request line + headers, 100 headers, 64 KiB body, 4 KiB URI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of request line + headers + the terminating empty line.
    pub max_head_bytes: usize,
    /// Maximum number of header lines.
    pub max_headers: usize,
    /// Maximum `Content-Length`.
    pub max_body_bytes: usize,
    /// Maximum Request-URI length in bytes.
    pub max_uri_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 100,
            max_body_bytes: 64 * 1024,
            max_uri_bytes: 4 * 1024,
        }
    }
}

/// One complete item from the front of the client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete request; drop `consumed` bytes from the buffer and parse again.
    Request {
        /// The request.
        request: Request,
        /// Exact number of bytes it occupied (leading empty lines included).
        consumed: usize,
    },
    /// RFC 2326 §10.12 `$` interleaved frame from the client (e.g. RTCP RR), to be skipped
    Interleaved {
        /// The channel byte.
        channel: u8,
        /// Length of the payload following the 4-byte prefix.
        payload_len: usize,
        /// Prefix + payload; the whole frame is buffered before it is reported.
        consumed: usize,
    },
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The request line is not `Method SP Request-URI SP RTSP-Version` (§6.1).
    #[error("malformed request line")]
    MalformedRequestLine,
    /// A syntactically valid method token this server does not know (→ 501).
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// A version other than `RTSP/1.0`, e.g. `RTSP/2.0` (→ 505, §11.1).
    #[error("unsupported rtsp version")]
    BadVersion,
    /// A header line without a token name and `:`, with control bytes, or folded.
    #[error("malformed header line")]
    MalformedHeader,
    /// Request line + headers exceed [`Limits::max_head_bytes`] (→ 400; RTSP 1.0 has no 431).
    #[error("request head too large")]
    HeadTooLarge,
    /// More header lines than [`Limits::max_headers`] (→ 400).
    #[error("too many header lines")]
    TooManyHeaders,
    /// `Content-Length` exceeds [`Limits::max_body_bytes`] (→ 413).
    #[error("request body too large")]
    BodyTooLarge,
    /// The Request-URI exceeds [`Limits::max_uri_bytes`] (→ 414).
    #[error("request uri too long")]
    UriTooLong,
    /// No `CSeq` header (§12.17 makes it mandatory; → 400).
    #[error("missing cseq header")]
    MissingCseq,
    /// `CSeq` present but not a 32-bit decimal, or repeated with different values (→ 400).
    #[error("invalid cseq header")]
    BadCseq,
    /// `Content-Length` not a decimal, negative, or repeated with different values (→ 400).
    #[error("invalid content-length header")]
    BadContentLength,
    /// The head contains bytes that are not UTF-8 (→ 400).
    #[error("request head is not valid utf-8")]
    NonUtf8,
}

/// A parse failure, with what could be recovered for the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// The request's `CSeq` when it could be recovered, so the 4xx reply can echo it.
    pub cseq: Option<u32>,
    /// When the message was still well framed (unknown method, long URI, bad or
    /// missing `CSeq`): its exact length, so the caller may reply and continue
    /// with the next message. `None`: reply, then close the connection.
    pub consumed: Option<usize>,
}

impl ParseError {
    /// The status code to answer with; the one mapping from parse errors to RFC 2326 §7.1.1 codes.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ParseErrorKind::MalformedRequestLine => StatusCode::BadRequest,
            ParseErrorKind::UnknownMethod(_) => StatusCode::NotImplemented,
            ParseErrorKind::BadVersion => StatusCode::VersionNotSupported,
            ParseErrorKind::MalformedHeader => StatusCode::BadRequest,
            // RTSP 1.0 defines no "header fields too large" code (RFC 6585's
            // 431 is HTTP-only); 413 is about the entity body (RFC 2616
            // §10.4.14, referenced by RFC 2326 §11), so an oversized head is a
            // plain 400.
            ParseErrorKind::HeadTooLarge => StatusCode::BadRequest,
            ParseErrorKind::TooManyHeaders => StatusCode::BadRequest,
            ParseErrorKind::BodyTooLarge => StatusCode::RequestEntityTooLarge,
            ParseErrorKind::UriTooLong => StatusCode::RequestUriTooLarge,
            ParseErrorKind::MissingCseq => StatusCode::BadRequest,
            ParseErrorKind::BadCseq => StatusCode::BadRequest,
            ParseErrorKind::BadContentLength => StatusCode::BadRequest,
            ParseErrorKind::NonUtf8 => StatusCode::BadRequest,
        }
    }
}

/// Parses one message from the front of `buf`. Ok(None) means "need more bytes" (and the head so far is within limits).
pub fn parse_message(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ParseError> {
    // Leading empty lines are skipped (RFC 2616 §4.1 robustness) but count
    // against the head limit, so an endless stream of CRLFs is still bounded.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or_default();
    let Some(&first) = rest.first() else {
        return if start > limits.max_head_bytes {
            Err(error(ParseErrorKind::HeadTooLarge, None, None))
        } else {
            Ok(None)
        };
    };

    // §10.12: '$', channel, 16-bit big-endian length, payload.
    if first == b'$' {
        let [_, channel, hi, lo, ..] = *rest else {
            return Ok(None);
        };
        let payload_len = usize::from(u16::from_be_bytes([hi, lo]));
        let consumed = start + 4 + payload_len;
        return Ok((buf.len() >= consumed).then_some(Parsed::Interleaved {
            channel,
            payload_len,
            consumed,
        }));
    }

    // Find the end of the head, scanning at most `max_head_bytes` (blank
    // lines included) so the work per call is bounded.
    let budget = limits.max_head_bytes.saturating_sub(start);
    let window = rest.get(..budget.min(rest.len())).unwrap_or_default();
    let mut header_lines = 0usize;
    let mut line_start = 0usize;
    let mut head_len = None;
    for (i, _) in window.iter().enumerate().filter(|&(_, &b)| b == b'\n') {
        let line = window.get(line_start..i).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            head_len = Some(i + 1);
            break;
        }
        if line_start > 0 {
            header_lines += 1;
            if header_lines > limits.max_headers {
                let cseq = sniff_cseq(window);
                return Err(error(ParseErrorKind::TooManyHeaders, cseq, None));
            }
        }
        line_start = i + 1;
    }
    let Some(head_len) = head_len else {
        if start + rest.len() > limits.max_head_bytes {
            return Err(error(
                ParseErrorKind::HeadTooLarge,
                sniff_cseq(window),
                None,
            ));
        }
        // Reject obvious garbage (TLS, HTTP/2 preface bytes, binary) early
        // instead of waiting for a line that may never come.
        let first_line_end = window.iter().position(|&b| b == b'\n');
        let partial = window.get(..first_line_end.unwrap_or(window.len()));
        if !partial_request_line_ok(partial.unwrap_or_default()) {
            return Err(error(ParseErrorKind::MalformedRequestLine, None, None));
        }
        return Ok(None);
    };
    let head = window.get(..head_len).unwrap_or_default();
    let cseq_hint = sniff_cseq(head);
    let fail = |kind| Err(error(kind, cseq_hint, None));

    let Ok(head) = std::str::from_utf8(head) else {
        return fail(ParseErrorKind::NonUtf8);
    };
    let mut lines = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .take_while(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or_default();
    let (method_token, uri, version) = match split_request_line(request_line) {
        Some(parts) => parts,
        None => return fail(ParseErrorKind::MalformedRequestLine),
    };
    // §3.1: RTSP-Version = "RTSP" "/" 1*DIGIT "." 1*DIGIT; only 1.0 is served.
    if version != "RTSP/1.0" {
        return fail(if looks_like_version(version) {
            ParseErrorKind::BadVersion
        } else {
            ParseErrorKind::MalformedRequestLine
        });
    }

    let mut headers = Headers::default();
    for line in lines {
        match parse_header_line(line) {
            Some((name, value)) => headers.append(name, value),
            None => return fail(ParseErrorKind::MalformedHeader),
        }
    }

    // §4.3 / §12.14: Content-Length governs the body; absent means none.
    let mut body_len: Option<usize> = None;
    for value in headers.get_all("Content-Length") {
        let len = match parse_content_length(value, limits) {
            Ok(len) => len,
            Err(kind) => return fail(kind),
        };
        if body_len.is_some_and(|prev| prev != len) {
            return fail(ParseErrorKind::BadContentLength);
        }
        body_len = Some(len);
    }
    let body_len = body_len.unwrap_or(0);
    let head_end = start + head_len;
    let Some(consumed) = head_end.checked_add(body_len) else {
        return fail(ParseErrorKind::BodyTooLarge);
    };
    let Some(body) = buf.get(head_end..consumed) else {
        return Ok(None);
    };

    // From here the message is well framed: errors carry `consumed`.
    let framed = |kind, cseq| Err(error(kind, cseq, Some(consumed)));
    let mut cseq = None;
    for value in headers.get_all("CSeq") {
        match parse_cseq(value) {
            Some(v) if cseq.is_none_or(|prev| prev == v) => cseq = Some(v),
            _ => return framed(ParseErrorKind::BadCseq, cseq_hint),
        }
    }
    let Some(method) = Method::from_wire(method_token) else {
        let mut name = method_token.to_owned();
        truncate_at_char_boundary(&mut name, 32);
        return framed(ParseErrorKind::UnknownMethod(name), cseq);
    };
    if uri.len() > limits.max_uri_bytes {
        return framed(ParseErrorKind::UriTooLong, cseq);
    }
    if cseq.is_none() {
        return framed(ParseErrorKind::MissingCseq, None);
    }
    Ok(Some(Parsed::Request {
        request: Request {
            method,
            uri: uri.to_owned(),
            headers,
            body: body.to_vec(),
        },
        consumed,
    }))
}

fn error(kind: ParseErrorKind, cseq: Option<u32>, consumed: Option<usize>) -> ParseError {
    ParseError {
        kind,
        cseq,
        consumed,
    }
}

/// RFC 2616 §2.2 `tchar` (token characters), which RFC 2326 §15 reuses.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Whether an incomplete first line could still become a request line.
fn partial_request_line_ok(partial: &[u8]) -> bool {
    let partial = partial.strip_suffix(b"\r").unwrap_or(partial);
    let method_end = partial
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(partial.len());
    let (method, tail) = partial.split_at(method_end);
    method.iter().all(|&b| is_tchar(b)) && !tail.iter().any(|&b| is_ctl(b))
}

/// §6.1: `Method SP Request-URI SP RTSP-Version`; runs of spaces are tolerated.
fn split_request_line(line: &str) -> Option<(&str, &str, &str)> {
    if line.bytes().any(is_ctl) {
        return None;
    }
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let method = parts.next()?;
    let uri = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || !method.bytes().all(is_tchar) {
        return None;
    }
    Some((method, uri, version))
}

/// `token "/" 1*DIGIT "." 1*DIGIT`, e.g. `RTSP/2.0` or `HTTP/1.1`.
fn looks_like_version(v: &str) -> bool {
    let Some((proto, num)) = v.split_once('/') else {
        return false;
    };
    let Some((major, minor)) = num.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !proto.is_empty() && proto.bytes().all(is_tchar) && digits(major) && digits(minor)
}

/// RFC 2616 §4.2 `field-name ":" [ field-value ]`; no folding, no CTLs but HT.
fn parse_header_line(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        // Also catches obs-fold continuation lines, which start with SP/HT.
        return None;
    }
    if value.bytes().any(|b| is_ctl(b) && b != b'\t') {
        return None;
    }
    Some((name, value.trim_matches([' ', '\t'])))
}

fn parse_content_length(value: &str, limits: &Limits) -> Result<usize, ParseErrorKind> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseErrorKind::BadContentLength);
    }
    // All digits: a parse failure can only be overflow, i.e. far too large.
    match v.parse::<usize>() {
        Ok(len) if len <= limits.max_body_bytes => Ok(len),
        _ => Err(ParseErrorKind::BodyTooLarge),
    }
}

/// Best-effort `CSeq` recovery from complete lines of a possibly broken head.
fn sniff_cseq(head: &[u8]) -> Option<u32> {
    let complete = match head.iter().rposition(|&b| b == b'\n') {
        Some(end) => head.get(..end)?,
        None => return None,
    };
    complete.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        if !name.eq_ignore_ascii_case(b"CSeq") {
            return None;
        }
        let value = std::str::from_utf8(value.get(1..)?).ok()?;
        parse_cseq(value)
    })
}

fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Fuzz entry point: runs [`parse_message`] on arbitrary bytes and checks its invariants.
#[cfg(any(test, fuzzing))]
pub fn fuzz_parse_request(data: &[u8]) {
    let tight = Limits {
        max_head_bytes: 96,
        max_headers: 4,
        max_body_bytes: 16,
        max_uri_bytes: 24,
    };
    for limits in [Limits::default(), tight] {
        // Drain the buffer like a connection loop would.
        let mut rest = data;
        loop {
            match parse_message(rest, &limits) {
                Ok(Some(parsed)) => {
                    let consumed = match &parsed {
                        Parsed::Request { consumed, .. } => *consumed,
                        Parsed::Interleaved { consumed, .. } => *consumed,
                    };
                    assert!(consumed > 0 && consumed <= rest.len());
                    let exact = rest.get(..consumed).unwrap_or_default();
                    // Exactly the consumed bytes parse to the same item...
                    assert_eq!(parse_message(exact, &limits), Ok(Some(parsed)));
                    // ...and one byte fewer is incomplete.
                    let short = exact.get(..consumed - 1).unwrap_or_default();
                    assert_eq!(parse_message(short, &limits), Ok(None));
                    rest = rest.get(consumed..).unwrap_or_default();
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.status();
                    let _ = e.to_string();
                    if let Some(consumed) = e.consumed {
                        assert!(consumed > 0 && consumed <= rest.len());
                        rest = rest.get(consumed..).unwrap_or_default();
                    } else {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn req(buf: &[u8]) -> (Request, usize) {
        match parse_message(buf, &lim()) {
            Ok(Some(Parsed::Request { request, consumed })) => (request, consumed),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn err(buf: &[u8]) -> ParseError {
        match parse_message(buf, &lim()) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Parses everything complete in `buf`: the items and the bytes left over.
    fn parse_all(buf: &[u8]) -> (Vec<Parsed>, usize) {
        let mut out = Vec::new();
        let mut off = 0;
        while let Some(p) = parse_message(&buf[off..], &lim()).expect("valid stream") {
            off += match &p {
                Parsed::Request { consumed, .. } | Parsed::Interleaved { consumed, .. } => {
                    *consumed
                }
            };
            out.push(p);
        }
        (out, off)
    }

    // ---- fixtures, in the byte form each client sends ----

    const FFMPEG_OPTIONS: &[u8] = b"OPTIONS rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
CSeq: 1\r\n\
User-Agent: Lavf59.27.100\r\n\
\r\n";
    const FFMPEG_DESCRIBE: &[u8] = b"DESCRIBE rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
Accept: application/sdp\r\n\
CSeq: 2\r\n\
User-Agent: Lavf59.27.100\r\n\
\r\n";
    const FFMPEG_SETUP_UDP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/sample/trackID=1 RTSP/1.0\r\n\
Transport: RTP/AVP/UDP;unicast;client_port=23048-23049\r\n\
CSeq: 3\r\n\
User-Agent: Lavf59.27.100\r\n\
\r\n";
    const FFMPEG_SETUP_TCP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/sample/trackID=2 RTSP/1.0\r\n\
Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\
CSeq: 4\r\n\
User-Agent: Lavf59.27.100\r\n\
Session: 6B8B4567\r\n\
\r\n";
    const FFMPEG_PLAY: &[u8] = b"PLAY rtsp://127.0.0.1:8554/sample/ RTSP/1.0\r\n\
Range: npt=0.000-\r\n\
CSeq: 5\r\n\
User-Agent: Lavf59.27.100\r\n\
Session: 6B8B4567\r\n\
\r\n";
    const FFMPEG_TEARDOWN: &[u8] = b"TEARDOWN rtsp://127.0.0.1:8554/sample/ RTSP/1.0\r\n\
CSeq: 6\r\n\
User-Agent: Lavf59.27.100\r\n\
Session: 6B8B4567\r\n\
\r\n";

    const GST_OPTIONS: &[u8] = b"OPTIONS rtsp://10.0.0.5:8554/sample RTSP/1.0\r\n\
CSeq: 1\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";
    const GST_DESCRIBE: &[u8] = b"DESCRIBE rtsp://10.0.0.5:8554/sample RTSP/1.0\r\n\
CSeq: 2\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Accept: application/sdp\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";
    const GST_SETUP: &[u8] = b"SETUP rtsp://10.0.0.5:8554/sample/trackID=1 RTSP/1.0\r\n\
CSeq: 3\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Transport: RTP/AVP;unicast;client_port=40508-40509,RTP/AVP/TCP;unicast;interleaved=0-1\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";
    const GST_PLAY: &[u8] = b"PLAY rtsp://10.0.0.5:8554/sample/ RTSP/1.0\r\n\
CSeq: 5\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Range: npt=0-\r\n\
Session: 4cd0a4e1d2b0ee17\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";

    const VLC_OPTIONS: &[u8] = b"OPTIONS rtsp://192.168.1.20:8554/sample RTSP/1.0\r\n\
CSeq: 2\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
\r\n";
    const VLC_DESCRIBE: &[u8] = b"DESCRIBE rtsp://192.168.1.20:8554/sample RTSP/1.0\r\n\
CSeq: 3\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Accept: application/sdp\r\n\
\r\n";
    const VLC_SETUP: &[u8] = b"SETUP rtsp://192.168.1.20:8554/sample/trackID=1 RTSP/1.0\r\n\
CSeq: 4\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\
\r\n";
    const VLC_PLAY: &[u8] = b"PLAY rtsp://192.168.1.20:8554/sample/ RTSP/1.0\r\n\
CSeq: 6\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Session: 47112344\r\n\
Range: npt=5-\r\n\
\r\n";
    const VLC_GET_PARAMETER: &[u8] = b"GET_PARAMETER rtsp://192.168.1.20:8554/sample/ RTSP/1.0\r\n\
CSeq: 7\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Session: 47112344\r\n\
\r\n";

    const RETINA_OPTIONS: &[u8] = b"OPTIONS rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
CSeq: 1\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";
    const RETINA_DESCRIBE: &[u8] = b"DESCRIBE rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
Accept: application/sdp\r\n\
CSeq: 2\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";
    const RETINA_SETUP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/sample/trackID=1 RTSP/1.0\r\n\
CSeq: 3\r\n\
Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";
    const RETINA_PLAY: &[u8] = b"PLAY rtsp://127.0.0.1:8554/sample/ RTSP/1.0\r\n\
CSeq: 5\r\n\
Range: npt=0.000-\r\n\
Session: 9a3f7e21\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";

    const ALL_FIXTURES: &[&[u8]] = &[
        FFMPEG_OPTIONS,
        FFMPEG_DESCRIBE,
        FFMPEG_SETUP_UDP,
        FFMPEG_SETUP_TCP,
        FFMPEG_PLAY,
        FFMPEG_TEARDOWN,
        GST_OPTIONS,
        GST_DESCRIBE,
        GST_SETUP,
        GST_PLAY,
        VLC_OPTIONS,
        VLC_DESCRIBE,
        VLC_SETUP,
        VLC_PLAY,
        VLC_GET_PARAMETER,
        RETINA_OPTIONS,
        RETINA_DESCRIBE,
        RETINA_SETUP,
        RETINA_PLAY,
    ];

    #[test]
    fn ffmpeg_session() {
        let (r, n) = req(FFMPEG_OPTIONS);
        assert_eq!(n, FFMPEG_OPTIONS.len());
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.uri, "rtsp://127.0.0.1:8554/sample");
        assert_eq!(r.cseq(), Some(1));
        assert_eq!(r.header("user-agent"), Some("Lavf59.27.100"));
        assert!(r.body.is_empty());

        let (r, _) = req(FFMPEG_DESCRIBE);
        assert_eq!(r.method, Method::Describe);
        assert_eq!(r.header("Accept"), Some("application/sdp"));

        let (r, _) = req(FFMPEG_SETUP_UDP);
        assert_eq!(r.method, Method::Setup);
        assert_eq!(r.uri, "rtsp://127.0.0.1:8554/sample/trackID=1");
        assert_eq!(
            r.header("transport"),
            Some("RTP/AVP/UDP;unicast;client_port=23048-23049")
        );
        assert_eq!(r.session_id(), None);

        let (r, _) = req(FFMPEG_SETUP_TCP);
        assert_eq!(r.session_id(), Some("6B8B4567"));

        let (r, _) = req(FFMPEG_PLAY);
        assert_eq!(r.method, Method::Play);
        assert_eq!(r.header("Range"), Some("npt=0.000-"));
        assert_eq!(r.cseq(), Some(5));

        let (r, _) = req(FFMPEG_TEARDOWN);
        assert_eq!(r.method, Method::Teardown);
    }

    #[test]
    fn gstreamer_session() {
        let (r, _) = req(GST_OPTIONS);
        assert_eq!((r.method, r.cseq()), (Method::Options, Some(1)));
        let (r, _) = req(GST_DESCRIBE);
        assert_eq!(r.header("date"), Some("Tue, 07 Feb 2023 10:12:01 GMT"));
        let (r, _) = req(GST_SETUP);
        assert_eq!(
            r.header("Transport"),
            Some("RTP/AVP;unicast;client_port=40508-40509,RTP/AVP/TCP;unicast;interleaved=0-1")
        );
        let (r, _) = req(GST_PLAY);
        assert_eq!(r.session_id(), Some("4cd0a4e1d2b0ee17"));
        assert_eq!(r.header("range"), Some("npt=0-"));
    }

    #[test]
    fn vlc_live555_session() {
        let (r, _) = req(VLC_OPTIONS);
        assert_eq!(
            r.header("User-Agent"),
            Some("LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)")
        );
        let (r, _) = req(VLC_SETUP);
        assert_eq!(
            r.header("Transport"),
            Some("RTP/AVP;unicast;client_port=5000-5001")
        );
        let (r, _) = req(VLC_PLAY);
        assert_eq!(r.header("Range"), Some("npt=5-"));
        let (r, _) = req(VLC_GET_PARAMETER);
        assert_eq!(r.method, Method::GetParameter);
        assert_eq!(r.session_id(), Some("47112344"));
        let _ = req(VLC_DESCRIBE);
    }

    #[test]
    fn retina_session() {
        for f in [RETINA_OPTIONS, RETINA_DESCRIBE, RETINA_SETUP, RETINA_PLAY] {
            let (r, n) = req(f);
            assert_eq!(n, f.len());
            assert_eq!(r.header("User-Agent"), Some("retina_0.4.21"));
        }
        let (r, _) = req(RETINA_SETUP);
        assert_eq!(
            r.header("Transport"),
            Some("RTP/AVP/TCP;unicast;interleaved=0-1")
        );
    }

    #[test]
    fn bare_lf_and_leading_blank_lines() {
        let buf = b"\r\n\nOPTIONS * RTSP/1.0\nCSeq: 9\n\n";
        let (r, n) = req(buf);
        assert_eq!(n, buf.len());
        assert_eq!(r.uri, "*");
        assert_eq!(r.cseq(), Some(9));
    }

    #[test]
    fn body_follows_content_length() {
        let buf = b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 10\r\n\
Content-Type: text/parameters\r\nContent-Length: 12\r\n\r\nbarparam: 1\nOPTIONS";
        let (r, n) = req(buf);
        assert_eq!(r.method, Method::SetParameter);
        assert_eq!(r.body, b"barparam: 1\n");
        assert_eq!(&buf[n..], b"OPTIONS");
        // Body not all there yet.
        assert_eq!(parse_message(&buf[..n - 1], &lim()), Ok(None));
    }

    #[test]
    fn header_values_trimmed_names_case_insensitive() {
        let (r, _) = req(b"OPTIONS * RTSP/1.0\r\ncseq:\t 3 \t\r\nX-Empty:\r\n\r\n");
        assert_eq!(r.cseq(), Some(3));
        assert_eq!(r.header("x-empty"), Some(""));
    }

    #[test]
    fn pipelined_requests_consume_exactly() {
        let stream: Vec<u8> = ALL_FIXTURES.concat();
        let (items, used) = parse_all(&stream);
        assert_eq!(used, stream.len());
        assert_eq!(items.len(), ALL_FIXTURES.len());
        for (item, fixture) in items.iter().zip(ALL_FIXTURES) {
            match item {
                Parsed::Request { consumed, .. } => assert_eq!(*consumed, fixture.len()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn split_at_every_byte_boundary() {
        // A pipelined stream with a body and an interleaved frame in between.
        let mut stream = Vec::new();
        stream.extend_from_slice(GST_SETUP);
        stream.extend_from_slice(&[b'$', 1, 0, 3, 0xaa, 0xbb, 0xcc]);
        stream.extend_from_slice(
            b"SET_PARAMETER rtsp://h/s RTSP/1.0\nCSeq: 4\nContent-Length: 5\n\nhello",
        );
        stream.extend_from_slice(VLC_PLAY);
        let (full, used) = parse_all(&stream);
        assert_eq!(used, stream.len());
        assert_eq!(full.len(), 4);
        for cut in 0..=stream.len() {
            let (items, used) = parse_all(&stream[..cut]);
            assert!(used <= cut);
            assert_eq!(items[..], full[..items.len()], "cut at {cut}");
            // Everything that is complete has been returned.
            let complete =
                full.iter()
                    .scan(0, |off, p| {
                        *off += match p {
                            Parsed::Request { consumed, .. }
                            | Parsed::Interleaved { consumed, .. } => *consumed,
                        };
                        Some(*off)
                    })
                    .take_while(|&end| end <= cut)
                    .count();
            assert_eq!(items.len(), complete, "cut at {cut}");
        }
    }

    #[test]
    fn interleaved_frames_between_requests() {
        let mut stream = Vec::new();
        stream.extend_from_slice(RETINA_SETUP);
        // An RTCP receiver report on channel 1 (8 bytes of RR header).
        stream.extend_from_slice(&[b'$', 1, 0, 8, 0x80, 0xc9, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        stream.extend_from_slice(RETINA_PLAY);
        stream.extend_from_slice(&[b'$', 0, 0, 0]);
        let (items, used) = parse_all(&stream);
        assert_eq!(used, stream.len());
        assert_eq!(
            items[1],
            Parsed::Interleaved {
                channel: 1,
                payload_len: 8,
                consumed: 12
            }
        );
        assert_eq!(
            items[3],
            Parsed::Interleaved {
                channel: 0,
                payload_len: 0,
                consumed: 4
            }
        );
        // Prefix and partial payload are "need more".
        assert_eq!(parse_message(b"$", &lim()), Ok(None));
        assert_eq!(parse_message(&[b'$', 1, 0xff, 0xff, 0], &lim()), Ok(None));
    }

    #[test]
    fn hostile_head_too_large() {
        // A 9 KiB header value, complete...
        let mut buf = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Junk: ".to_vec();
        buf.extend(std::iter::repeat_n(b'a', 9 * 1024));
        let incomplete = buf.clone();
        buf.extend_from_slice(b"\r\n\r\n");
        let e = err(&buf);
        assert_eq!(e.kind, ParseErrorKind::HeadTooLarge);
        assert_eq!(e.cseq, Some(1));
        assert_eq!(e.status(), StatusCode::BadRequest);
        assert_eq!(e.consumed, None);
        // ...and endless, without any line end: detected once past 8 KiB.
        assert_eq!(err(&incomplete).kind, ParseErrorKind::HeadTooLarge);
        let mut endless = b"OPTIONS rtsp://h/".to_vec();
        endless.resize(8 * 1024, b'a');
        assert_eq!(parse_message(&endless, &lim()), Ok(None));
        endless.push(b'a');
        assert_eq!(err(&endless).kind, ParseErrorKind::HeadTooLarge);
        // Endless blank lines are bounded too.
        assert_eq!(
            err(&vec![b'\n'; 8 * 1024 + 1]).kind,
            ParseErrorKind::HeadTooLarge
        );
    }

    #[test]
    fn hostile_too_many_headers() {
        let mut buf = b"DESCRIBE rtsp://h/s RTSP/1.0\r\nCSeq: 8\r\n".to_vec();
        for i in 0..100 {
            buf.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        // 101 headers, not even terminated yet.
        let e = err(&buf);
        assert_eq!(e.kind, ParseErrorKind::TooManyHeaders);
        assert_eq!(e.cseq, Some(8));
        // Exactly 100 is fine.
        let mut ok = b"DESCRIBE rtsp://h/s RTSP/1.0\r\nCSeq: 8\r\n".to_vec();
        for i in 0..99 {
            ok.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        ok.extend_from_slice(b"\r\n");
        assert_eq!(req(&ok).0.headers.len(), 100);
    }

    #[test]
    fn hostile_missing_or_bad_cseq() {
        let buf = b"OPTIONS * RTSP/1.0\r\nUser-Agent: x\r\n\r\nOPTIONS";
        let e = err(buf);
        assert_eq!(e.kind, ParseErrorKind::MissingCseq);
        assert_eq!(e.status(), StatusCode::BadRequest);
        assert_eq!(e.consumed, Some(buf.len() - 7));
        for bad in ["abc", "-1", "4294967296", ""] {
            let buf = format!("OPTIONS * RTSP/1.0\r\nCSeq: {bad}\r\n\r\n");
            assert_eq!(err(buf.as_bytes()).kind, ParseErrorKind::BadCseq, "{bad}");
        }
        let e = err(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n\r\n");
        assert_eq!(e.kind, ParseErrorKind::BadCseq);
        assert_eq!(e.cseq, Some(1));
    }

    #[test]
    fn hostile_unknown_method_keeps_framing() {
        let buf = b"FOO rtsp://h/s RTSP/1.0\r\nCSeq: 12\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(parse_message(&buf[..buf.len() - 1], &lim()), Ok(None));
        let e = err(buf);
        assert_eq!(e.kind, ParseErrorKind::UnknownMethod("FOO".into()));
        assert_eq!(e.status(), StatusCode::NotImplemented);
        assert_eq!((e.cseq, e.consumed), (Some(12), Some(buf.len())));
        // Methods are case-sensitive (§6.1).
        let e = err(b"options * RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        assert_eq!(e.kind, ParseErrorKind::UnknownMethod("options".into()));
    }

    #[test]
    fn hostile_garbage() {
        // A TLS ClientHello is rejected at once, without waiting for a line.
        let e = err(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]);
        assert_eq!(e.kind, ParseErrorKind::MalformedRequestLine);
        assert_eq!(
            err(b"\x00\x01\x02\r\n\r\n").kind,
            ParseErrorKind::MalformedRequestLine
        );
        assert_eq!(
            err(b"OPTIONS\r\nCSeq: 1\r\n\r\n").kind,
            ParseErrorKind::MalformedRequestLine
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0 extra\r\nCSeq: 1\r\n\r\n").kind,
            ParseErrorKind::MalformedRequestLine
        );
        assert_eq!(
            err(b"OPTIONS * garbage\r\nCSeq: 1\r\n\r\n").kind,
            ParseErrorKind::MalformedRequestLine
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nNo colon here\r\n\r\n").kind,
            ParseErrorKind::MalformedHeader
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nCSeq : 1\r\n\r\n").kind,
            ParseErrorKind::MalformedHeader
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nX: a\x01b\r\nCSeq: 1\r\n\r\n").kind,
            ParseErrorKind::MalformedHeader
        );
        // obs-fold continuation line.
        let e = err(b"OPTIONS * RTSP/1.0\r\nCSeq: 3\r\nX-A: a\r\n  b\r\n\r\n");
        assert_eq!((e.kind, e.cseq), (ParseErrorKind::MalformedHeader, Some(3)));
    }

    #[test]
    fn hostile_versions() {
        let e = err(b"OPTIONS * RTSP/2.0\r\nCSeq: 4\r\n\r\n");
        assert_eq!(e.kind, ParseErrorKind::BadVersion);
        assert_eq!(e.status(), StatusCode::VersionNotSupported);
        assert_eq!(e.cseq, Some(4));
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").kind,
            ParseErrorKind::BadVersion
        );
        assert_eq!(
            err(b"OPTIONS * rtsp/1.0\r\nCSeq: 4\r\n\r\n").kind,
            ParseErrorKind::BadVersion
        );
    }

    #[test]
    fn hostile_non_utf8() {
        let e = err(b"OPTIONS * RTSP/1.0\r\nCSeq: 5\r\nUser-Agent: \xff\xfe\r\n\r\n");
        assert_eq!(e.kind, ParseErrorKind::NonUtf8);
        assert_eq!(e.cseq, Some(5));
        assert_eq!(e.status(), StatusCode::BadRequest);
        // UTF-8 in a value is fine.
        let (r, _) = req("OPTIONS * RTSP/1.0\r\nCSeq: 5\r\nUser-Agent: café\r\n\r\n".as_bytes());
        assert_eq!(r.header("user-agent"), Some("café"));
    }

    #[test]
    fn hostile_content_length() {
        for (value, kind) in [
            ("-1", ParseErrorKind::BadContentLength),
            ("abc", ParseErrorKind::BadContentLength),
            ("+5", ParseErrorKind::BadContentLength),
            ("1 2", ParseErrorKind::BadContentLength),
            ("", ParseErrorKind::BadContentLength),
            ("65537", ParseErrorKind::BodyTooLarge),
            ("18446744073709551616", ParseErrorKind::BodyTooLarge),
            (
                "99999999999999999999999999999999",
                ParseErrorKind::BodyTooLarge,
            ),
        ] {
            let buf = format!(
                "ANNOUNCE rtsp://h/s RTSP/1.0\r\nCSeq: 6\r\nContent-Length: {value}\r\n\r\n"
            );
            let e = err(buf.as_bytes());
            assert_eq!(e.kind, kind, "{value:?}");
            assert_eq!(e.cseq, Some(6));
            assert_eq!(e.consumed, None);
        }
        let e = err(b"ANNOUNCE rtsp://h/s RTSP/1.0\r\nCSeq: 6\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nab");
        assert_eq!(e.kind, ParseErrorKind::BadContentLength);
        // 64 KiB exactly is allowed (and waits for the body).
        let buf = b"ANNOUNCE rtsp://h/s RTSP/1.0\r\nCSeq: 6\r\nContent-Length: 65536\r\n\r\n";
        assert_eq!(parse_message(buf, &lim()), Ok(None));
    }

    #[test]
    fn hostile_uri_too_long() {
        let uri = format!("rtsp://h/{}", "a".repeat(4100));
        let buf = format!("DESCRIBE {uri} RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        let e = err(buf.as_bytes());
        assert_eq!(e.kind, ParseErrorKind::UriTooLong);
        assert_eq!(e.status(), StatusCode::RequestUriTooLarge);
        assert_eq!((e.cseq, e.consumed), (Some(2), Some(buf.len())));
    }

    #[test]
    fn error_status_table() {
        use ParseErrorKind as K;
        let table = [
            (K::MalformedRequestLine, 400),
            (K::UnknownMethod("FOO".into()), 501),
            (K::BadVersion, 505),
            (K::MalformedHeader, 400),
            (K::HeadTooLarge, 400),
            (K::TooManyHeaders, 400),
            (K::BodyTooLarge, 413),
            (K::UriTooLong, 414),
            (K::MissingCseq, 400),
            (K::BadCseq, 400),
            (K::BadContentLength, 400),
            (K::NonUtf8, 400),
        ];
        for (kind, code) in table {
            let msg = kind.to_string();
            assert!(msg.starts_with(|c: char| c.is_ascii_lowercase()), "{msg}");
            let e = error(kind, None, None);
            assert_eq!(e.status().code(), code, "{e}");
        }
    }

    /// Deterministic xorshift64* so the fuzz smoke test needs no dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn fuzz_smoke() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"$:\r\n \t;=-0123456789CSeqContent-Length\x00\xff";
        for i in 0..4000 {
            let mut data = if i % 2 == 0 {
                // Mutated pipelines of real fixtures.
                let mut d = Vec::new();
                for _ in 0..=rng.below(3) {
                    d.extend_from_slice(ALL_FIXTURES[rng.below(ALL_FIXTURES.len())]);
                }
                for _ in 0..rng.below(8) {
                    let at = rng.below(d.len());
                    match rng.below(3) {
                        0 => d[at] = alphabet[rng.below(alphabet.len())],
                        1 => {
                            d.remove(at);
                        }
                        _ => d.insert(at, rng.next() as u8),
                    }
                }
                d
            } else {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            };
            if i % 7 == 0 {
                data.insert(0, b'$');
            }
            fuzz_parse_request(&data);
        }
    }
}
