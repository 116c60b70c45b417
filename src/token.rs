//! Play tokens: the web side's signed permission for one viewer to play one stream.
//!
//! A token rides in the RTSP URL's query, `rtsp://host/stream?token=EXP.IP.MAC`:
//!
//! - `EXP`: expiry, seconds since the UNIX epoch (decimal);
//! - `IP`: `any`, or the viewer's address as lowercase hex of its octets (8 digits for IPv4,
//!   32 for IPv6; an IPv4-mapped IPv6 address counts as IPv4);
//! - `MAC`: HMAC-SHA256 (RFC 2104, FIPS 180-4) with the server's secret over
//!   `"shardcast-play-v1\n" STREAM "\n" EXP "\n" IP`, base64url without padding (RFC 4648 §5).
//!
//! Only characters that need no escaping in a URL query are used, and none that RTSP header
//! syntax treats specially (`;` and `,` separate RTP-Info entries, RFC 2326 §12.33), so the
//! token can be carried into SDP control URLs and RTP-Info unchanged. A web backend that
//! shares the secret can mint tokens itself; `POST /api/v1/play` does it for those that
//! do not. The MAC is checked in constant time (`Mac::verify_slice`).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Default lifetime of an issued token.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Longest lifetime a token may be issued for.
pub const MAX_LIFETIME: Duration = Duration::from_secs(86_400);
/// Longest token text accepted (anything longer is malformed without further parsing).
pub const MAX_TOKEN_LEN: usize = 160;
/// Domain separation: a MAC made for something else with the same key never verifies.
const CONTEXT: &str = "shardcast-play-v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a token does not grant what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `EXP.IP.MAC`.
    #[error("malformed play token")]
    Malformed,
    /// The MAC does not match: tampered, signed with another secret, or for another stream.
    #[error("play token signature does not match (tampered, another stream or another secret)")]
    BadSignature,
    /// Valid, but past its expiry.
    #[error("play token expired {0} s ago")]
    Expired(u64),
    /// Valid, but bound to another viewer address.
    #[error("play token is bound to another viewer address")]
    WrongViewer,
}

/// The secret that signs and checks tokens.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
    /// True when the secret was generated at start (tokens die with the process).
    pub ephemeral: bool,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

/// What a verified token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Expiry, seconds since the UNIX epoch.
    pub expires_unix: u64,
    /// The viewer address it is bound to, if any.
    pub viewer_ip: Option<IpAddr>,
}

/// Seconds since the UNIX epoch of `t`.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn ip_field(ip: Option<IpAddr>) -> String {
    match ip.map(canonical) {
        None => "any".into(),
        Some(IpAddr::V4(v4)) => hex(&v4.octets()),
        Some(IpAddr::V6(v6)) => hex(&v6.octets()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_ip_field(s: &str) -> Option<Option<IpAddr>> {
    if s == "any" {
        return Some(None);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let bytes: Vec<u8> = (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .ok()?;
    match (s.len(), bytes.as_slice()) {
        (8, b) => <[u8; 4]>::try_from(b).ok().map(|o| Some(IpAddr::from(o))),
        (32, b) => <[u8; 16]>::try_from(b)
            .ok()
            .map(|o| Some(canonical(IpAddr::from(o)))),
        _ => None,
    }
}

impl TokenKey {
    /// A key from a configured secret.
    pub fn from_secret(secret: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            ephemeral: false,
        }
    }

    /// A random 256-bit key for this run only.
    pub fn random() -> Self {
        Self::random_from(&mut rand::thread_rng())
    }

    /// A random 256-bit key for this run only, drawn from `rng`.
    pub fn random_from(rng: &mut dyn RngCore) -> Self {
        let mut secret = vec![0u8; 32];
        rng.fill_bytes(&mut secret);
        Self {
            secret,
            ephemeral: true,
        }
    }

    fn mac(&self, stream: &str, exp: &str, ip: &str) -> HmacSha256 {
        // HMAC accepts keys of any length (RFC 2104 §2), so this cannot fail.
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC-SHA256 takes keys of any length");
        for (i, part) in [CONTEXT, stream, exp, ip].iter().enumerate() {
            if i > 0 {
                mac.update(b"\n");
            }
            mac.update(part.as_bytes());
        }
        mac
    }

    /// A token for `stream` valid until `expires_unix`, optionally bound to `viewer_ip`.
    pub fn sign(&self, stream: &str, expires_unix: u64, viewer_ip: Option<IpAddr>) -> String {
        let exp = expires_unix.to_string();
        let ip = ip_field(viewer_ip);
        let tag = self.mac(stream, &exp, &ip).finalize().into_bytes();
        format!("{exp}.{ip}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks `token` for `stream`, requested from `peer` at `now`.
    pub fn verify(
        &self,
        token: &str,
        stream: &str,
        peer: IpAddr,
        now: SystemTime,
    ) -> Result<Grant, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(exp), Some(ip), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed);
        }
        let expires_unix: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let viewer_ip = parse_ip_field(ip).ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        // Constant-time comparison of the whole tag (RFC 2104 §5: compare all bits).
        self.mac(stream, exp, ip)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let now = unix_secs(now);
        if now >= expires_unix {
            return Err(TokenError::Expired(now - expires_unix));
        }
        if let Some(bound) = viewer_ip {
            if canonical(peer) != bound {
                return Err(TokenError::WrongViewer);
            }
        }
        Ok(Grant {
            expires_unix,
            viewer_ip,
        })
    }
}

/// The `token` parameter of a raw URL query (`a=b&token=...`), if present.
pub fn token_in_query(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// `uri` with the value of any `token=` query parameter replaced by `…`, for logs: a token
/// refused for one viewer may be valid for another until it expires.
pub fn redact_token(uri: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.into();
    };
    if !query.split('&').any(|p| p.starts_with("token=")) {
        return uri.into();
    }
    let redacted: Vec<&str> = query
        .split('&')
        .map(|p| {
            if p.starts_with("token=") {
                "token=…"
            } else {
                p
            }
        })
        .collect();
    format!("{path}?{}", redacted.join("&")).into()
}

/// True when `token` only uses the characters tokens are made of, so it can be echoed into
/// SDP and RTSP headers as it is.
pub fn is_token_syntax(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn signed_tokens_verify_until_expiry() {
        let key = TokenKey::from_secret("0123456789abcdef");
        let t = key.sign("sample", 1_000, None);
        assert!(is_token_syntax(&t), "{t}");
        assert!(t.starts_with("1000.any."), "{t}");
        let g = key.verify(&t, "sample", ME, at(999)).unwrap();
        assert_eq!(g.expires_unix, 1_000);
        assert_eq!(g.viewer_ip, None);
        assert_eq!(
            key.verify(&t, "sample", ME, at(1_000)),
            Err(TokenError::Expired(0))
        );
        assert_eq!(
            key.verify(&t, "sample", ME, at(1_060)),
            Err(TokenError::Expired(60))
        );
    }

    #[test]
    fn tampering_other_streams_secrets_and_viewers_are_refused() {
        let key = TokenKey::from_secret("0123456789abcdef");
        let t = key.sign("sample", 2_000, Some(ME));
        assert!(t.starts_with("2000.c0000207."), "{t}");
        assert!(key.verify(&t, "sample", ME, at(1_000)).is_ok());
        // IPv4-mapped IPv6 is the same viewer.
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(key.verify(&t, "sample", mapped, at(1_000)).is_ok());
        assert_eq!(
            key.verify(&t, "sample", "192.0.2.8".parse().unwrap(), at(1_000)),
            Err(TokenError::WrongViewer)
        );
        assert_eq!(
            key.verify(&t, "other", ME, at(1_000)),
            Err(TokenError::BadSignature)
        );
        let other_key = TokenKey::from_secret("fedcba9876543210");
        assert_eq!(
            other_key.verify(&t, "sample", ME, at(1_000)),
            Err(TokenError::BadSignature)
        );
        // Extending the expiry or dropping the address binding breaks the MAC.
        let later = t.replacen("2000", "9000", 1);
        assert_eq!(
            key.verify(&later, "sample", ME, at(1_000)),
            Err(TokenError::BadSignature)
        );
        let unbound = t.replacen("c0000207", "any", 1);
        assert_eq!(
            key.verify(&unbound, "sample", ME, at(1_000)),
            Err(TokenError::BadSignature)
        );
        // Flipping one character of the MAC.
        let mut bytes = t.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(key.verify(&flipped, "sample", ME, at(1_000)).is_err());
    }

    #[test]
    fn ipv6_viewers_and_malformed_tokens() {
        let key = TokenKey::random();
        assert!(key.ephemeral);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let t = key.sign("a/b", 5_000, Some(v6));
        assert!(is_token_syntax(&t));
        assert!(key.verify(&t, "a/b", v6, at(10)).is_ok());
        for bad in [
            "",
            "1.2",
            "1.any.x.y",
            "x.any.AAAA",
            "1.zz.AAAA",
            "1.0102.AAAA",
            "1.any.!!!",
            "99999999999999999999999.any.AAAA",
            &"1".repeat(500),
        ] {
            assert_eq!(
                key.verify(bad, "a/b", v6, at(0)),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn query_parameter() {
        assert_eq!(token_in_query(Some("token=abc")), Some("abc"));
        assert_eq!(token_in_query(Some("x=1&token=abc&y=2")), Some("abc"));
        assert_eq!(token_in_query(Some("xtoken=abc")), None);
        assert_eq!(token_in_query(None), None);
        assert!(!is_token_syntax("a;b"));
        assert!(!is_token_syntax("a,b"));
        assert!(!is_token_syntax("a b"));
        assert_eq!(
            redact_token("rtsp://h/s/trackID=0?a=1&token=123.any.xyz"),
            "rtsp://h/s/trackID=0?a=1&token=…"
        );
        assert_eq!(redact_token("rtsp://h/s"), "rtsp://h/s");
        assert_eq!(redact_token("rtsp://h/s?x=1"), "rtsp://h/s?x=1");
    }
}
