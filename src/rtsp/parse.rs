//! Sans-IO framing and parsing of client-to-server RTSP 1.0 and 2.0 traffic.
//!
//! Implements the request message format of RFC 2326 §4 and §6 (request line
//! §6.1, headers §4.2 with the RFC 2616 §4.2 syntax, body length from
//! `Content-Length` §4.3/§12.14; a request without it has no body), the
//! mandatory `CSeq` header (§12.17), version checks (§3.1, 505 per §11.1), and
//! the `$`-prefixed interleaved binary frames of §10.12 that a client may send
//! on the control connection (e.g. RTCP receiver reports). RTSP 2.0 requests
//! (RFC 7826 §8.1) parse as 1.0 ones do, tagged with their version; a response
//! from the client (RFC 7826 §8.2: its answer to our `PLAY_NOTIFY`, §13.5) is
//! framed and reported so the caller can skip it. Bare-LF line endings
//! and leading empty lines are tolerated (RFC 2616 §19.3 robustness);
//! obsolete header line folding is rejected with 400.
//!
//! Every limit in [`Limits`] is enforced while a message is still incomplete,
//! so a peer cannot make the caller buffer without bound.

use crate::rtsp::msg::{parse_cseq, Headers, Method, Request, StatusCode, Version};

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
    /// A response from the client (RFC 7826 §8.2), e.g. its answer to a `PLAY_NOTIFY`
    /// (§13.5): framed (head and `Content-Length` body) so the caller can skip it.
    Response {
        /// The Status-Code (§8.2.1).
        status: u16,
        /// Exact number of bytes it occupied.
        consumed: usize,
    },
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The request line is not `Method SP Request-URI SP RTSP-Version` (§6.1), or a
    /// client's response has no valid status line (RFC 7826 §8.2.1).
    #[error("malformed request line")]
    MalformedRequestLine,
    /// A syntactically valid method token this server does not know (→ 501).
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// A version other than `RTSP/1.0` and `RTSP/2.0`, e.g. `RTSP/3.0` (→ 505, RFC 2326
    /// §11.1, RFC 7826 §17.5.6).
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

    // RFC 7826 §8.2: a client may answer a server's request (PLAY_NOTIFY, §13.5).
    let is_response = rest.starts_with(b"RTSP/");

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
        if !is_response && !partial_request_line_ok(partial.unwrap_or_default()) {
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
    if is_response {
        return parse_client_response(request_line, lines, buf, start + head_len, limits)
            .map_err(|kind| error(kind, cseq_hint, None));
    }
    let (method_token, uri, version) = match split_request_line(request_line) {
        Some(parts) => parts,
        None => return fail(ParseErrorKind::MalformedRequestLine),
    };
    // §3.1: RTSP-Version = "RTSP" "/" 1*DIGIT "." 1*DIGIT; 1.0 and 2.0 (RFC 7826 §7.1)
    // are served, anything else is 505 (RFC 7826 §17.5.6).
    let Some(version) = Version::from_wire(version) else {
        return fail(if looks_like_version(version) {
            ParseErrorKind::BadVersion
        } else {
            ParseErrorKind::MalformedRequestLine
        });
    };

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
            version,
            uri: uri.to_owned(),
            headers,
            body: body.to_vec(),
        },
        consumed,
    }))
}

/// A client's response (RFC 7826 §8.2): `RTSP-Version SP Status-Code SP Reason-Phrase`,
/// header lines, and a `Content-Length` body, framed within the same limits as a request.
fn parse_client_response<'a>(
    status_line: &str,
    lines: impl Iterator<Item = &'a str>,
    buf: &[u8],
    head_end: usize,
    limits: &Limits,
) -> Result<Option<Parsed>, ParseErrorKind> {
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !looks_like_version(version)
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
        || status_line.bytes().any(is_ctl)
    {
        return Err(ParseErrorKind::MalformedRequestLine);
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ParseErrorKind::MalformedRequestLine)?;
    let mut body_len: Option<usize> = None;
    for line in lines {
        let (name, value) = parse_header_line(line).ok_or(ParseErrorKind::MalformedHeader)?;
        if name.eq_ignore_ascii_case("Content-Length") {
            let len = parse_content_length(value, limits)?;
            if body_len.is_some_and(|prev| prev != len) {
                return Err(ParseErrorKind::BadContentLength);
            }
            body_len = Some(len);
        }
    }
    let consumed = head_end
        .checked_add(body_len.unwrap_or(0))
        .ok_or(ParseErrorKind::BodyTooLarge)?;
    Ok((buf.len() >= consumed).then_some(Parsed::Response { status, consumed }))
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
                        Parsed::Response { consumed, .. } => *consumed,
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
mod tests;
