//! RTSP request and response types (RFC 2326 §6 Request, §7 Response; RFC 7826 §8 for
//! 2.0, whose messages differ only in the version they carry: [`Version`]).
//!
//! Implements the method table (§10), the status codes this server emits
//! (§7.1.1, §11), case-insensitive header lookup (§4.2 via RFC 2616 §4.2),
//! `CSeq` (§12.17) and `Session` (§12.37) accessors, and response
//! serialization (§7) with `CSeq` first and `Content-Length` (§12.14) derived
//! from the body.

use std::fmt;

/// An RTSP 1.0 method (RFC 2326 §10); method names are case-sensitive (§6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `OPTIONS` (§10.1).
    Options,
    /// `DESCRIBE` (§10.2).
    Describe,
    /// `SETUP` (§10.4).
    Setup,
    /// `PLAY` (§10.5).
    Play,
    /// `PAUSE` (§10.6).
    Pause,
    /// `TEARDOWN` (§10.7).
    Teardown,
    /// `GET_PARAMETER` (§10.8).
    GetParameter,
    /// `SET_PARAMETER` (§10.9).
    SetParameter,
    /// `ANNOUNCE` (§10.3).
    Announce,
    /// `RECORD` (§10.11).
    Record,
    /// `REDIRECT` (§10.10).
    Redirect,
}

impl Method {
    /// Every method, in RFC 2326 §10 table order.
    pub const ALL: [Method; 11] = [
        Method::Options,
        Method::Describe,
        Method::Announce,
        Method::Setup,
        Method::Play,
        Method::Pause,
        Method::Teardown,
        Method::GetParameter,
        Method::SetParameter,
        Method::Redirect,
        Method::Record,
    ];

    /// The method's wire name, e.g. `"GET_PARAMETER"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::Pause => "PAUSE",
            Method::Teardown => "TEARDOWN",
            Method::GetParameter => "GET_PARAMETER",
            Method::SetParameter => "SET_PARAMETER",
            Method::Announce => "ANNOUNCE",
            Method::Record => "RECORD",
            Method::Redirect => "REDIRECT",
        }
    }

    /// Looks up a wire name, case-sensitively as RFC 2326 §6.1 requires.
    pub fn from_wire(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status code this server can send (RFC 2326 §7.1.1, definitions in §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// 200 OK.
    Ok = 200,
    /// 400 Bad Request.
    BadRequest = 400,
    /// 401 Unauthorized.
    Unauthorized = 401,
    /// 403 Forbidden.
    Forbidden = 403,
    /// 404 Not Found.
    NotFound = 404,
    /// 405 Method Not Allowed.
    MethodNotAllowed = 405,
    /// 408 Request Time-out (a request that trickles in too slowly).
    RequestTimeout = 408,
    /// 413 Request Entity Too Large.
    RequestEntityTooLarge = 413,
    /// 414 Request-URI Too Large.
    RequestUriTooLarge = 414,
    /// 415 Unsupported Media Type.
    UnsupportedMediaType = 415,
    /// 453 Not Enough Bandwidth (§11.3.1).
    NotEnoughBandwidth = 453,
    /// 454 Session Not Found (§11.3.2).
    SessionNotFound = 454,
    /// 455 Method Not Valid in This State (§11.3.3).
    MethodNotValidInThisState = 455,
    /// 456 Header Field Not Valid for Resource (§11.3.4).
    HeaderFieldNotValid = 456,
    /// 457 Invalid Range (§11.3.5).
    InvalidRange = 457,
    /// 459 Aggregate Operation Not Allowed (§11.3.7).
    AggregateOperationNotAllowed = 459,
    /// 460 Only Aggregate Operation Allowed (§11.3.8).
    OnlyAggregateOperationAllowed = 460,
    /// 461 Unsupported Transport (§11.3.9).
    UnsupportedTransport = 461,
    /// 463 Key Management Failure (RFC 4567, RTSP 1.0; gst-rtsp-server answers the same): a
    /// `KeyMgmt` header we cannot use.
    KeyManagementFailure = 463,
    /// 466 Key Management Error (RFC 7826 §17.4.26): 463's meaning in RTSP 2.0.
    KeyManagementError = 466,
    /// 500 Internal Server Error.
    InternalServerError = 500,
    /// 501 Not Implemented.
    NotImplemented = 501,
    /// 503 Service Unavailable.
    ServiceUnavailable = 503,
    /// 505 RTSP Version Not Supported.
    VersionNotSupported = 505,
    /// 551 Option not supported (§11.3.14): a `Require` names an option we lack.
    OptionNotSupported = 551,
}

impl StatusCode {
    /// The numeric code, e.g. 454.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The reason phrase from RFC 2326 §7.1.1.
    pub fn reason(self) -> &'static str {
        match self {
            StatusCode::Ok => "OK",
            StatusCode::BadRequest => "Bad Request",
            StatusCode::Unauthorized => "Unauthorized",
            StatusCode::Forbidden => "Forbidden",
            StatusCode::NotFound => "Not Found",
            StatusCode::MethodNotAllowed => "Method Not Allowed",
            StatusCode::RequestTimeout => "Request Time-out",
            StatusCode::RequestEntityTooLarge => "Request Entity Too Large",
            StatusCode::RequestUriTooLarge => "Request-URI Too Large",
            StatusCode::UnsupportedMediaType => "Unsupported Media Type",
            StatusCode::NotEnoughBandwidth => "Not Enough Bandwidth",
            StatusCode::SessionNotFound => "Session Not Found",
            StatusCode::MethodNotValidInThisState => "Method Not Valid in This State",
            StatusCode::HeaderFieldNotValid => "Header Field Not Valid for Resource",
            StatusCode::InvalidRange => "Invalid Range",
            StatusCode::AggregateOperationNotAllowed => "Aggregate operation not allowed",
            StatusCode::OnlyAggregateOperationAllowed => "Only aggregate operation allowed",
            StatusCode::UnsupportedTransport => "Unsupported transport",
            StatusCode::KeyManagementFailure => "Key Management Failure",
            StatusCode::KeyManagementError => "Key Management Error",
            StatusCode::InternalServerError => "Internal Server Error",
            StatusCode::NotImplemented => "Not Implemented",
            StatusCode::ServiceUnavailable => "Service Unavailable",
            StatusCode::VersionNotSupported => "RTSP Version not supported",
            StatusCode::OptionNotSupported => "Option not supported",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

/// An ordered header list; names compare ASCII-case-insensitively (RFC 2326 §4.2).
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The value of the first header called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of headers called `name`, in order (case-insensitive).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing (in place) any headers of the same name.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        let mut slot = None;
        let mut i = 0;
        self.0.retain(|(n, _)| {
            let keep = if n.eq_ignore_ascii_case(&name) {
                if slot.is_none() {
                    slot = Some(i);
                    true
                } else {
                    false
                }
            } else {
                true
            };
            if keep {
                i += 1;
            }
            keep
        });
        match slot.and_then(|s| self.0.get_mut(s)) {
            Some(entry) => *entry = (name, value),
            None => self.0.push((name, value)),
        }
    }

    /// Appends a header without touching existing ones of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Removes every header called `name` (case-insensitive).
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Iterates `(name, value)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The protocol version of a message: RTSP 1.0 (RFC 2326) or 2.0 (RFC 7826).
///
/// RFC 7826 §4.1: the version is per message; a server answers a request in the version
/// the request used, so the version picks the header writers, never the decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// `RTSP/1.0` (RFC 2326).
    #[default]
    V1_0,
    /// `RTSP/2.0` (RFC 7826).
    V2_0,
}

impl Version {
    /// The wire form, `RTSP/1.0` or `RTSP/2.0` (RFC 7826 §7.1, §8.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "RTSP/1.0",
            Version::V2_0 => "RTSP/2.0",
        }
    }

    /// The version a request line names, if this server speaks it.
    pub fn from_wire(s: &str) -> Option<Version> {
        match s {
            "RTSP/1.0" => Some(Version::V1_0),
            "RTSP/2.0" => Some(Version::V2_0),
            _ => None,
        }
    }
}

/// A parsed request. Header names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request method (§6.1).
    pub method: Method,
    /// The request line's version (RFC 7826 §4.1); the answer uses the same.
    pub version: Version,
    /// The Request-URI exactly as sent (§6.1); see [`crate::rtsp::uri`].
    pub uri: String,
    /// The request headers in wire order.
    pub headers: Headers,
    /// The body, exactly `Content-Length` bytes (§12.14).
    pub body: Vec<u8>,
}

impl Request {
    /// The `CSeq` header (§12.17) as a number, if present and numeric.
    pub fn cseq(&self) -> Option<u32> {
        self.headers.get("CSeq").and_then(parse_cseq)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The `Session` header's id (§12.37): the value before any `;`, trimmed; `None` if empty.
    pub fn session_id(&self) -> Option<&str> {
        let value = self.headers.get("Session")?;
        let id = value.split(';').next().unwrap_or("").trim();
        (!id.is_empty()).then_some(id)
    }
}

/// Parses a `CSeq` value (§12.17: `1*DIGIT`), allowing surrounding whitespace.
pub(crate) fn parse_cseq(value: &str) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// A response under construction; `serialize` writes `RTSP/1.0 <code> <reason>\r\n` (or
/// `RTSP/2.0`, its [`Version`]), headers (CSeq first), Content-Length when body non-empty, blank line, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status line's version (RFC 7826 §4.1: the request's).
    pub version: Version,
    /// The status line's code (§7.1).
    pub status: StatusCode,
    /// Response headers; `Content-Length` here is ignored and recomputed.
    pub headers: Headers,
    /// The body (e.g. SDP for DESCRIBE).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers and no body.
    pub fn new(status: StatusCode) -> Self {
        Response {
            version: Version::V1_0,
            status,
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// Sets a header (replacing any of the same name) and returns the response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the body and its `Content-Type` (§12.16).
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers.insert("Content-Type", content_type);
        self.body = body;
        self
    }

    /// Appends the wire form (§7) to `out`. CR, LF and NUL inside header names
    /// or values are replaced by spaces so echoed client data cannot inject
    /// header lines; header names are written as given.
    pub fn serialize(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.version.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.code().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\n");
        let is_cseq = |n: &str| n.eq_ignore_ascii_case("CSeq");
        let is_len = |n: &str| n.eq_ignore_ascii_case("Content-Length");
        let cseq = self.headers.iter().filter(|(n, _)| is_cseq(n));
        let rest = self
            .headers
            .iter()
            .filter(|(n, _)| !is_cseq(n) && !is_len(n));
        for (name, value) in cseq.chain(rest) {
            write_sanitized(out, name);
            out.extend_from_slice(b": ");
            write_sanitized(out, value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

fn write_sanitized(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().map(|b| match b {
        b'\r' | b'\n' | 0 => b' ',
        other => other,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::from_wire(m.as_str()), Some(m));
        }
        assert_eq!(Method::from_wire("options"), None);
        assert_eq!(Method::from_wire("GET"), None);
    }

    #[test]
    fn status_codes() {
        assert_eq!(StatusCode::SessionNotFound.code(), 454);
        assert_eq!(StatusCode::UnsupportedTransport.code(), 461);
        assert_eq!(StatusCode::VersionNotSupported.code(), 505);
        assert_eq!(StatusCode::Ok.to_string(), "200 OK");
    }

    #[test]
    fn headers_case_insensitive_and_insert_replaces() {
        let mut h = Headers::default();
        h.append("Content-Type", "a");
        h.append("X", "1");
        h.append("content-type", "b");
        assert_eq!(h.get("CONTENT-TYPE"), Some("a"));
        assert_eq!(h.get_all("content-type").collect::<Vec<_>>(), ["a", "b"]);
        h.insert("Content-type", "c");
        assert_eq!(h.len(), 2);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("Content-type", "c"), ("X", "1")]
        );
        h.remove("x");
        assert_eq!(h.len(), 1);
        assert!(!h.is_empty());
    }

    #[test]
    fn request_accessors() {
        let mut headers = Headers::default();
        headers.append("cseq", " 42 ");
        headers.append("Session", "6B8B4567;timeout=60");
        let r = Request {
            method: Method::Play,
            version: Version::V1_0,
            uri: "rtsp://h/x".into(),
            headers,
            body: vec![],
        };
        assert_eq!(r.cseq(), Some(42));
        assert_eq!(r.session_id(), Some("6B8B4567"));
        assert_eq!(r.header("SESSION"), Some("6B8B4567;timeout=60"));

        let mut headers = Headers::default();
        headers.append("CSeq", "-1");
        headers.append("Session", " ;timeout=1");
        let r = Request { headers, ..r };
        assert_eq!(r.cseq(), None);
        assert_eq!(r.session_id(), None);
    }

    #[test]
    fn serialize_puts_cseq_first_and_counts_body() {
        let resp = Response::new(StatusCode::Ok)
            .header("Server", "shardcast")
            .header("CSeq", "2")
            .header("Content-Length", "999")
            .body("application/sdp", b"v=0\r\n".to_vec());
        let mut out = Vec::new();
        resp.serialize(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RTSP/1.0 200 OK\r\nCSeq: 2\r\nServer: shardcast\r\n\
             Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
        );
    }

    #[test]
    fn serialize_without_body_and_sanitizes() {
        let resp = Response::new(StatusCode::SessionNotFound)
            .header("CSeq", "7")
            .header("Session", "a\r\nInjected: yes");
        let mut out = Vec::new();
        resp.serialize(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RTSP/1.0 454 Session Not Found\r\nCSeq: 7\r\nSession: a  Injected: yes\r\n\r\n"
        );
    }

    #[test]
    fn serialize_writes_the_response_version() {
        let mut resp = Response::new(StatusCode::Ok).header("CSeq", "1");
        resp.version = Version::V2_0;
        let mut out = Vec::new();
        resp.serialize(&mut out);
        assert_eq!(out, b"RTSP/2.0 200 OK\r\nCSeq: 1\r\n\r\n");
        assert_eq!(Version::from_wire("RTSP/2.0"), Some(Version::V2_0));
        assert_eq!(Version::from_wire("RTSP/3.0"), None);
        assert_eq!(Version::from_wire("rtsp/2.0"), None);
    }
}
