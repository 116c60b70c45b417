//! The client side of the message layer, sans-IO: a response (RFC 2326 §7) and the
//! interleaved `$` frames (§10.12) that may precede it, parsed from the front of the bytes a
//! client received from a server. The server never uses it; the load generator
//! (`shardcast bench`) and the integration tests' RTSP client do, so the two read responses
//! the same way.

/// A response as a client reads it (RFC 2326 §7): Status-Line, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspResponse {
    /// Status-Code (§7.1.1).
    pub status: u16,
    /// Header lines in order, `(name, value)` with the value trimmed; names compare
    /// ASCII-case-insensitively (§4.2). Lines without `:` are skipped.
    pub headers: Vec<(String, String)>,
    /// The `Content-Length` bytes after the head (§12.14; none without it).
    pub body: Vec<u8>,
}

impl RtspResponse {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session id of the `Session` header (§12.37), without `;timeout=`.
    pub fn session(&self) -> Option<String> {
        self.header("Session")
            .and_then(|s| s.split(';').next())
            .map(|s| s.trim().to_owned())
    }
}

/// Why the bytes at the front of the buffer are not a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The first line is not `RTSP/x.y SP 3DIGIT [SP Reason-Phrase]` (§7.1).
    #[error("malformed RTSP status line")]
    BadStatusLine,
    /// `Content-Length` is not a decimal number (§12.14).
    #[error("malformed Content-Length")]
    BadContentLength,
}

/// Parses one response at the front of `buf`: `Ok(Some((response, consumed)))` once its head
/// and body are complete, `Ok(None)` while bytes are missing. Interleaved frames must be taken
/// off first ([`interleaved_frame`]).
pub fn parse_response(buf: &[u8]) -> Result<Option<(RtspResponse, usize)>, ResponseError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        // A first line already complete can be judged before the rest arrives.
        if let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") {
            status_code(&String::from_utf8_lossy(&buf[..line_end]))?;
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = status_code(lines.next().unwrap_or_default())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len = match headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
    {
        Some((_, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse::<usize>()
            .map_err(|_| ResponseError::BadContentLength)?,
        Some(_) => return Err(ResponseError::BadContentLength),
        None => 0,
    };
    let total = (end + 4)
        .checked_add(len)
        .ok_or(ResponseError::BadContentLength)?;
    if buf.len() < total {
        return Ok(None);
    }
    let body = buf[end + 4..total].to_vec();
    Ok(Some((
        RtspResponse {
            status,
            headers,
            body,
        },
        total,
    )))
}

/// §7.1 `Status-Line = RTSP-Version SP Status-Code SP Reason-Phrase`; the Status-Code.
fn status_code(line: &str) -> Result<u16, ResponseError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let version_ok = version.strip_prefix("RTSP/").is_some_and(|v| {
        v.split_once('.').is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
    });
    if !version_ok || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ResponseError::BadStatusLine);
    }
    code.parse().map_err(|_| ResponseError::BadStatusLine)
}

/// A complete interleaved frame at the front of `buf` (§10.12: `$`, channel, 16-bit length,
/// payload): `(channel, payload)`; it occupies `4 + payload.len()` bytes. `None` when `buf`
/// does not start with `$` or the frame is not complete yet.
pub fn interleaved_frame(buf: &[u8]) -> Option<(u8, &[u8])> {
    if buf.len() < 4 || buf[0] != b'$' {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    buf.get(4..4 + len).map(|payload| (buf[1], payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_only_with_its_body() {
        let full = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession: 12AB;timeout=60\r\nContent-Length: 5\r\n\r\nhelloRTSP";
        for cut in 0..full.len() - 4 {
            assert_eq!(parse_response(&full[..cut]), Ok(None), "cut at {cut}");
        }
        let (r, used) = parse_response(full).unwrap().unwrap();
        assert_eq!(used, full.len() - 4, "the next message is left alone");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cseq"), Some("2"));
        assert_eq!(r.session().as_deref(), Some("12AB"));
        assert_eq!(r.body, b"hello");
    }

    /// Moved with the parser from the load generator.
    #[test]
    fn response_parser_waits_for_the_whole_body() {
        let full = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabcRTSP";
        assert!(parse_response(&full[..40]).unwrap().is_none());
        let (r, used) = parse_response(full).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice(), used), (200, &b"abc"[..], 50));
        assert_eq!(r.header("cseq"), Some("2"));
    }

    #[test]
    fn no_content_length_means_no_body_and_headers_keep_their_order() {
        let raw = b"RTSP/1.0 401 Unauthorized\r\nWWW-Authenticate: Digest a\r\nnot a header\r\nWWW-Authenticate: Basic b\r\n\r\n$";
        let (r, used) = parse_response(raw).unwrap().unwrap();
        assert_eq!((r.status, used, r.body.len()), (401, raw.len() - 1, 0));
        let auth: Vec<&str> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "WWW-Authenticate")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(auth, ["Digest a", "Basic b"]);
        assert_eq!(r.session(), None);
    }

    #[test]
    fn malformed_status_lines_and_lengths_are_errors_not_waits() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"RTSP/1.0 20 OK\r\n\r\n",
            b"RTSP/1.0 2000 OK\r\n\r\n",
            b"RTSP/x.0 200 OK\r\n\r\n",
            b"RTSP/1.0\r\n\r\n",
            b"garbage\r\nCSeq: 1\r\n",
        ] {
            assert_eq!(
                parse_response(bad),
                Err(ResponseError::BadStatusLine),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in ["-1", "", "1e3", "99999999999999999999999"] {
            let raw = format!("RTSP/1.0 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                parse_response(raw.as_bytes()),
                Err(ResponseError::BadContentLength),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_response(b"RTSP/1.0 200"),
            Ok(None),
            "line still arriving"
        );
    }

    #[test]
    fn interleaved_frames_are_whole_or_nothing() {
        let frame = [b'$', 3, 0, 2, 0xAA, 0xBB, b'R'];
        assert_eq!(interleaved_frame(&frame), Some((3, &frame[4..6])));
        assert_eq!(interleaved_frame(&frame[..5]), None);
        assert_eq!(interleaved_frame(b"RTSP/1.0 200 OK"), None);
        assert_eq!(interleaved_frame(&[b'$', 0, 0, 0]), Some((0, &[][..])));
    }
}
