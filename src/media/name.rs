//! Stream names from URL paths: the guard behind "never serve a file outside the media root",
//! shared by RTSP Request-URIs (`rtsp::uri`) and the HTTP API's stream paths.
//!
//! A path is split on `/`, each segment percent-decoded (RFC 3986 §2.1), and empty segments
//! (so a trailing `/`) are dropped. Any `.` or `..` segment, NUL, backslash, or an encoded
//! `/` inside a segment (`%2f`, `%2e%2e`, `%5c`, `%00`) is [`PathError::Traversal`].

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A decoded control character.
    #[error("control character in path")]
    Malformed,
    /// A `%` not followed by two hex digits, or a decoded segment that is not UTF-8.
    #[error("invalid percent-encoding in path")]
    BadPercentEncoding,
    /// A `.`/`..` segment, NUL, backslash or encoded separator.
    #[error("path traversal")]
    Traversal,
}

/// Splits `path` (without query) into decoded, traversal-free segments; none is empty, `.` or
/// `..`, none contains `/`, `\`, NUL or another control character.
pub fn split_path(path: &str) -> Result<Vec<String>, PathError> {
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode(raw)?;
        if decoded == b"." || decoded == b".." {
            return Err(PathError::Traversal);
        }
        if decoded.iter().any(|&b| b == 0 || b == b'/' || b == b'\\') {
            return Err(PathError::Traversal);
        }
        if decoded.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(PathError::Malformed);
        }
        segments.push(String::from_utf8(decoded).map_err(|_| PathError::BadPercentEncoding)?);
    }
    Ok(segments)
}

/// RFC 3986 §2.1 percent-decoding of one segment.
fn percent_decode(s: &str) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = |c: Option<u8>| -> Result<u8, PathError> {
                let c = c.ok_or(PathError::BadPercentEncoding)?;
                char::from(c)
                    .to_digit(16)
                    .and_then(|d| u8::try_from(d).ok())
                    .ok_or(PathError::BadPercentEncoding)
            };
            let hi = hex(bytes.next())?;
            let lo = hex(bytes.next())?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_decoded_and_confined() {
        assert_eq!(split_path("/a/b%20c//d/").unwrap(), ["a", "b c", "d"]);
        assert!(split_path("").unwrap().is_empty());
        for bad in ["/..", "/a/./b", "/a%2fb", "/%2e%2e", "/a%5cb", "/a%00"] {
            assert_eq!(split_path(bad), Err(PathError::Traversal), "{bad}");
        }
        assert_eq!(split_path("/a%0a"), Err(PathError::Malformed));
        assert_eq!(split_path("/a%g1"), Err(PathError::BadPercentEncoding));
        assert_eq!(split_path("/a%ff"), Err(PathError::BadPercentEncoding));
        assert_eq!(split_path("/a%4"), Err(PathError::BadPercentEncoding));
    }
}
