//! Request-URI splitting and confinement (RFC 2326 §3.2 rtsp URL, §6.1 Request-URI).
//!
//! Accepts `rtsp://host[:port]/a/b/trackID=1` (schemes `rtsp`, `rtsps`,
//! `rtspu` per §3.2, case-insensitive, optional `user@`), an absolute path
//! `/a/b`, or `*` (§6.1, for OPTIONS). The path is split on `/`,
//! percent-decoded per segment (RFC 3986 §2.1), empty segments (and so a
//! trailing `/`) are dropped, and a `?query` is returned raw and separately.
//!
//! This is the guard behind "never serve a file outside the media root": any
//! `.` or `..` segment, NUL, backslash, or an encoded `/` inside a segment
//! (`%2f`, `%2e%2e`, `%5c`, `%00`) is [`UriError::Traversal`]. The server
//! answers every [`UriError`] with 400 Bad Request ([`UriError::status`]): the
//! request is refused before any lookup, so the reply reveals nothing about
//! what exists, and 400 tells an honest client its URI is at fault.

use crate::media::name::{split_path, PathError};
use crate::rtsp::msg::StatusCode;

/// A Request-URI split into decoded, traversal-free path segments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestPath {
    /// The URI was `*` (§6.1); `segments` is then empty.
    pub asterisk: bool,
    /// `host[:port]` from an absolute URI, without user info.
    pub authority: Option<String>,
    /// Decoded path segments; none is empty, `.` or `..`, none contains `/`, `\` or NUL.
    pub segments: Vec<String>,
    /// The raw text after `?`, if non-empty (e.g. a play token).
    pub query: Option<String>,
}

impl RequestPath {
    /// The decoded path rejoined as `/a/b` (`/` when there are no segments).
    pub fn path(&self) -> String {
        let mut p = String::new();
        for s in &self.segments {
            p.push('/');
            p.push_str(s);
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }
}

/// Why a Request-URI was refused; all map to 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The URI is empty.
    #[error("empty request uri")]
    Empty,
    /// A scheme other than rtsp, rtsps, rtspu.
    #[error("unsupported uri scheme")]
    UnsupportedScheme,
    /// Not an absolute rtsp URL, absolute path or `*`, or bad bytes.
    #[error("malformed request uri")]
    Malformed,
    /// A `%` not followed by two hex digits, or a decoded segment that is not UTF-8.
    #[error("invalid percent-encoding in request uri")]
    BadPercentEncoding,
    /// A `.`/`..` segment, NUL, backslash or encoded separator.
    #[error("path traversal in request uri")]
    Traversal,
}

impl UriError {
    /// The status to answer with (400 for all; see the module notes).
    pub fn status(&self) -> StatusCode {
        match self {
            UriError::Empty
            | UriError::UnsupportedScheme
            | UriError::Malformed
            | UriError::BadPercentEncoding
            | UriError::Traversal => StatusCode::BadRequest,
        }
    }
}

impl From<PathError> for UriError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::Malformed => UriError::Malformed,
            PathError::BadPercentEncoding => UriError::BadPercentEncoding,
            PathError::Traversal => UriError::Traversal,
        }
    }
}

/// Splits and confines a Request-URI (the path through [`split_path`]); see the module notes for what is accepted.
pub fn split_request_uri(uri: &str) -> Result<RequestPath, UriError> {
    if uri.is_empty() {
        return Err(UriError::Empty);
    }
    if uri == "*" {
        return Ok(RequestPath {
            asterisk: true,
            ..RequestPath::default()
        });
    }
    if uri
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b' ' || b == b'#')
    {
        return Err(UriError::Malformed);
    }
    let (authority, rest) = if uri.starts_with('/') {
        (None, uri)
    } else {
        let (scheme, after) = uri.split_once("://").ok_or(UriError::Malformed)?;
        if !["rtsp", "rtsps", "rtspu"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
        {
            return Err(UriError::UnsupportedScheme);
        }
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.contains('\\') {
            return Err(UriError::Malformed);
        }
        (Some(host.to_owned()), rest)
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, (!q.is_empty()).then(|| q.to_owned())),
        None => (rest, None),
    };
    let segments = split_path(path)?;
    Ok(RequestPath {
        asterisk: false,
        authority,
        segments,
        query,
    })
}

/// Fuzz entry point: runs [`split_request_uri`] on arbitrary bytes and checks its invariants.
#[cfg(any(test, fuzzing))]
pub fn fuzz_uri(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match split_request_uri(&s) {
        Ok(p) => {
            for seg in &p.segments {
                assert!(!seg.is_empty() && seg != "." && seg != "..");
                assert!(!seg.contains(['/', '\\', '\0']));
            }
            let _ = p.path();
        }
        Err(e) => assert_eq!(e.status(), StatusCode::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(uri: &str) -> Vec<String> {
        split_request_uri(uri).expect(uri).segments
    }

    #[test]
    fn client_uris() {
        let p = split_request_uri("rtsp://127.0.0.1:8554/sample/trackID=1").unwrap();
        assert_eq!(p.authority.as_deref(), Some("127.0.0.1:8554"));
        assert_eq!(p.segments, ["sample", "trackID=1"]);
        assert_eq!(p.path(), "/sample/trackID=1");
        assert!(!p.asterisk);
        // Aggregate control URL with a trailing slash (ffmpeg, VLC PLAY).
        assert_eq!(segs("rtsp://127.0.0.1:8554/sample/"), ["sample"]);
        assert_eq!(segs("RTSP://[::1]:554/a/b"), ["a", "b"]);
        assert_eq!(segs("rtsps://user:pw@cam.example/live"), ["live"]);
        assert_eq!(
            split_request_uri("rtsp://user:pw@cam.example/live")
                .unwrap()
                .authority
                .as_deref(),
            Some("cam.example")
        );
        assert_eq!(segs("/a/b"), ["a", "b"]);
        assert_eq!(segs("rtsp://h"), Vec::<String>::new());
        assert_eq!(split_request_uri("rtsp://h").unwrap().path(), "/");
        assert_eq!(
            segs("/my%20movie/clip%C3%A9.mp4"),
            ["my movie", "clipé.mp4"]
        );
        assert_eq!(segs("/a//b"), ["a", "b"]);
        assert_eq!(segs("/a/...b/.hidden"), ["a", "...b", ".hidden"]);
        let star = split_request_uri("*").unwrap();
        assert!(star.asterisk && star.segments.is_empty());
    }

    #[test]
    fn query_split_off() {
        let p = split_request_uri("rtsp://h:554/live/cam1?token=abc%2Fdef&x=1").unwrap();
        assert_eq!(p.segments, ["live", "cam1"]);
        assert_eq!(p.query.as_deref(), Some("token=abc%2Fdef&x=1"));
        let p = split_request_uri("rtsp://h?t=1").unwrap();
        assert!(p.segments.is_empty());
        assert_eq!(p.query.as_deref(), Some("t=1"));
        assert_eq!(split_request_uri("/a/?").unwrap().query, None);
    }

    #[test]
    fn traversal_rejected() {
        for uri in [
            "rtsp://h/../etc/passwd",
            "rtsp://h/a/../../b",
            "/./a",
            "/a/.",
            "/a/%2e%2e/b",
            "/a/%2E%2e",
            "/a/.%2e/b",
            "/%2e",
            "/a%2f..%2fb",
            "/a%2Fb",
            "/a\\..\\b",
            "/a/%5c",
            "/a%00.mp4",
            "rtsp://h/..?x=1",
        ] {
            assert_eq!(split_request_uri(uri), Err(UriError::Traversal), "{uri}");
        }
    }

    #[test]
    fn malformed_rejected() {
        use UriError as E;
        for (uri, want) in [
            ("", E::Empty),
            ("http://h/a", E::UnsupportedScheme),
            ("file:///etc/passwd", E::UnsupportedScheme),
            ("a/b", E::Malformed),
            ("rtsp:///a", E::Malformed),
            ("rtsp://user@/a", E::Malformed),
            ("/a#frag", E::Malformed),
            ("/a\tb", E::Malformed),
            ("/a/%0a", E::Malformed),
            ("/a/%", E::BadPercentEncoding),
            ("/a/%4", E::BadPercentEncoding),
            ("/a/%zz", E::BadPercentEncoding),
            ("/a/%ff", E::BadPercentEncoding),
        ] {
            let got = split_request_uri(uri);
            assert_eq!(got, Err(want), "{uri}");
        }
        assert_eq!(E::Traversal.status(), StatusCode::BadRequest);
    }

    /// Request-URI vocabulary (traversal, percent-encoding, separators) the property strings
    /// together.
    const PIECES: &[&str] = &[
        "rtsp://", "h:554", "/", ".", "..", "%", "2e", "2f", "5c", "00", "?", "a", "\\", "@", "é",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Any string of URI vocabulary, and any bytes, keep [`fuzz_uri`]'s
        /// invariants.
        #[test]
        fn fuzz_smoke(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..10),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        ) {
            fuzz_uri(pieces.concat().as_bytes());
            fuzz_uri(&raw);
        }
    }
}
