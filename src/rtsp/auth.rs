//! RTSP authentication: HTTP Digest (RFC 7616, MD5 and SHA-256, `qop=auth`) and, only when
//! configured, Basic (RFC 7617), plus per-stream access rules and brute-force backoff
//! ([`backoff`]: per address and per user name, serialized across connections).
//!
//! Secrets: users are stored as their Digest HA1 values, `H(user:realm:password)` per
//! algorithm (RFC 7616 §3.4.2), never as passwords; Basic credentials are checked by
//! computing the same HA1. Nonces are stateless: `issued time ‖ random ‖ tag`, where the tag is
//! a SHA-256 keyed with a per-process secret over the body and the challenge's algorithm, so a
//! forged or altered nonce is refused, a response computed with another algorithm than the
//! nonce's challenge is refused (no downgrade from SHA-256 to MD5, RFC 7616 §3.4 and §5.4),
//! and an expired one is answered with `stale=true` (§3.3). Replays are refused through the
//! nonce count (§3.4: `nc` must grow for each nonce); that table is bounded. An
//! `Authorization` naming a parameter twice, or asking for `userhash=true` (§3.4.4, never
//! offered here), is refused as malformed.
//!
//! Not here: which methods need authentication (the server asks for all but OPTIONS).

pub mod backoff;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::backoff::{Admit, Backoff};
use super::admission::Refused;
use super::msg::StatusCode;

use base64::Engine as _;
use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Realm announced in challenges (part of every stored HA1).
pub const REALM: &str = "shardcast";
/// How long a nonce is valid before the client must take a fresh one (`stale=true`).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Nonces whose counts are remembered at most; older entries are dropped first.
const MAX_TRACKED_NONCES: usize = 50_000;

/// Digest algorithms (RFC 7616 §3.3 `algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (what most RTSP clients, ffmpeg and GStreamer among them, implement).
    Md5,
    /// SHA-256 (preferred; offered first).
    Sha256,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The byte that binds a nonce to the challenge it was issued in.
    fn nonce_tag_byte(self) -> u8 {
        match self {
            Algorithm::Md5 => 1,
            Algorithm::Sha256 => 2,
        }
    }

    fn other(self) -> Self {
        match self {
            Algorithm::Md5 => Algorithm::Sha256,
            Algorithm::Sha256 => Algorithm::Md5,
        }
    }

    fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

/// A user's stored secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSecret {
    /// `MD5(user:realm:password)`, lowercase hex.
    pub ha1_md5: String,
    /// `SHA-256(user:realm:password)`, lowercase hex.
    pub ha1_sha256: String,
}

impl UserSecret {
    /// Derives both HA1 values from a password.
    pub fn from_password(user: &str, password: &str) -> Self {
        let a1 = format!("{user}:{REALM}:{password}");
        Self {
            ha1_md5: Algorithm::Md5.hash_hex(&a1),
            ha1_sha256: Algorithm::Sha256.hash_hex(&a1),
        }
    }

    fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// Who may read which streams.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessRule {
    /// A stream name, or a prefix ending in `*` (`news/*`, `*`).
    pub streams: String,
    /// Open to anyone, without credentials.
    #[serde(default)]
    pub public: bool,
    /// Users allowed (`*` = any authenticated user); ignored when `public`.
    #[serde(default)]
    pub users: Vec<String>,
}

impl AccessRule {
    fn matches(&self, path: &str) -> bool {
        match self.streams.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.streams || path.starts_with(&format!("{}/", self.streams)),
        }
    }
}

/// The outcome of checking a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (with the authenticated user, if any).
    Allowed(Option<String>),
    /// 401 with fresh challenges; `stale` when only the nonce was too old.
    Challenge {
        /// The nonce expired but the credentials were right.
        stale: bool,
        /// Why, for the log line.
        why: &'static str,
    },
    /// 403: authenticated, but not allowed to read this stream.
    Forbidden(String),
    /// 503 with `Retry-After`: the backoff queue for this address or user name is full; the
    /// credentials were not looked at.
    Throttled(Refused),
}

/// A verdict and how long to hold it: the request's backoff slot, taken before its
/// credentials were verified, so right and wrong guesses are answered equally late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Wait this long before acting on the verdict (zero unless throttled).
    pub wait: Duration,
    /// What to answer.
    pub verdict: Verdict,
}

impl Checked {
    fn now(verdict: Verdict) -> Self {
        Self {
            wait: Duration::ZERO,
            verdict,
        }
    }
}

/// Checks credentials and access rules; one per server (control thread).
#[derive(Debug)]
pub struct Authenticator {
    users: HashMap<String, UserSecret>,
    rules: Vec<AccessRule>,
    allow_basic: bool,
    key: [u8; 32],
    nonce_counts: HashMap<String, (u32, u64)>,
    backoff: Backoff,
    /// Failed authentication attempts since start.
    pub failed_attempts: u64,
}

impl Authenticator {
    /// An authenticator for `users`; `None` when there is nothing to protect (no users and
    /// no rules), so the server can skip every check.
    pub fn new(
        users: HashMap<String, UserSecret>,
        rules: Vec<AccessRule>,
        allow_basic: bool,
    ) -> Option<Self> {
        if users.is_empty() && rules.iter().all(|r| r.public) {
            return None;
        }
        Some(Self {
            users,
            rules,
            allow_basic,
            key: rand::random(),
            nonce_counts: HashMap::new(),
            backoff: Backoff::default(),
            failed_attempts: 0,
        })
    }

    /// `WWW-Authenticate` values, preferred first (RFC 7616 §3.7): SHA-256, then MD5 (a
    /// client that understands only MD5 takes that one), then Basic when allowed.
    pub fn challenges(&self, stale: bool) -> Vec<String> {
        self.challenges_at(stale, SystemTime::now(), &mut rand::thread_rng())
    }

    /// [`Authenticator::challenges`] with the time and the nonces' randomness passed in.
    pub fn challenges_at(
        &self,
        stale: bool,
        wall: SystemTime,
        rng: &mut dyn rand::RngCore,
    ) -> Vec<String> {
        let now = unix_secs(wall);
        let mut out = Vec::with_capacity(3);
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let mut c = format!(
                "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
                self.make_nonce(now, rng.next_u64(), alg),
                alg.name()
            );
            if stale {
                c.push_str(", stale=true");
            }
            out.push(c);
        }
        if self.allow_basic {
            out.push(format!("Basic realm=\"{REALM}\""));
        }
        out
    }

    /// A nonce for the `alg` challenge: the tag covers the algorithm, so the nonce is
    /// accepted only with a response computed with that algorithm.
    fn make_nonce(&self, issued: u64, random: u64, alg: Algorithm) -> String {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&issued.to_be_bytes());
        body[8..].copy_from_slice(&random.to_be_bytes());
        let tag = self.tag(&body, alg);
        format!("{}{}", hex(&body), hex(&tag))
    }

    fn tag(&self, body: &[u8; 16], alg: Algorithm) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update([alg.nonce_tag_byte()]);
        h.update(body);
        let d = h.finalize();
        let mut t = [0u8; 8];
        t.copy_from_slice(&d[..8]);
        t
    }

    /// Validates a nonce for a response computed with `alg`: the issue time (unix seconds)
    /// when it is ours, untampered and was issued in the `alg` challenge.
    fn nonce_issued(&self, nonce: &str, alg: Algorithm) -> Result<u64, &'static str> {
        const ALTERED: &str = "unknown or altered nonce";
        let raw = unhex(nonce).ok_or(ALTERED)?;
        if raw.len() != 24 {
            return Err(ALTERED);
        }
        let mut body = [0u8; 16];
        body.copy_from_slice(&raw[..16]);
        if !bool::from(self.tag(&body, alg).ct_eq(&raw[16..24])) {
            // RFC 7616 §3.4 / §5.4: the response must use the algorithm of the challenge
            // the nonce came from; anything else is a downgrade attempt.
            return Err(
                if bool::from(self.tag(&body, alg.other()).ct_eq(&raw[16..24])) {
                    "digest algorithm differs from the nonce's challenge"
                } else {
                    ALTERED
                },
            );
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        Ok(u64::from_be_bytes(issued))
    }

    /// Attempts delayed or refused by the backoff since start.
    pub fn throttled_attempts(&self) -> u64 {
        self.backoff.throttled
    }

    /// Checks one request. `path` is the request URI's stream path (`news/today/trackID=0`),
    /// `uri` the Request-URI as sent (Digest `uri=` must equal it). The caller waits
    /// [`Checked::wait`] before acting on the verdict (the backoff slot, see [`backoff`]).
    pub fn check(
        &mut self,
        method: &str,
        uri: &str,
        path: &str,
        authorization: Option<&str>,
        peer: IpAddr,
        now: Instant,
    ) -> Checked {
        self.check_at(
            method,
            uri,
            path,
            authorization,
            peer,
            now,
            SystemTime::now(),
        )
    }

    /// [`Authenticator::check`] with the wall-clock time (nonce ages) passed in.
    #[allow(clippy::too_many_arguments)]
    pub fn check_at(
        &mut self,
        method: &str,
        uri: &str,
        path: &str,
        authorization: Option<&str>,
        peer: IpAddr,
        now: Instant,
        wall: SystemTime,
    ) -> Checked {
        let rule = self.rules.iter().find(|r| r.matches(path)).cloned();
        if rule.as_ref().is_some_and(|r| r.public) {
            return Checked::now(Verdict::Allowed(None));
        }
        // A first request without credentials is the normal start of the exchange, not an
        // attempt: no slot, no failure.
        let Some(authorization) = authorization else {
            return Checked::now(Verdict::Challenge {
                stale: false,
                why: "no credentials",
            });
        };
        // The slot is taken on the claimed name before anything is verified. The answer is
        // held until it whatever the outcome; the check itself runs now, so failures still
        // in their queue already count for the attempts behind them.
        let claimed = claimed_user(authorization);
        let wait = match self.backoff.admit(peer, claimed.as_deref(), now) {
            Admit::After(wait) => wait,
            Admit::Refuse(retry) => {
                return Checked::now(Verdict::Throttled(Refused {
                    status: StatusCode::ServiceUnavailable,
                    retry_after_secs: u32::try_from(retry.as_secs().saturating_add(1))
                        .unwrap_or(u32::MAX),
                    why: "too many failed authentication attempts (backoff queue full)".into(),
                }));
            }
        };
        let verdict = match self.authenticate(method, uri, authorization, unix_secs(wall)) {
            Ok(user) => {
                self.backoff.succeeded(peer, &user, now);
                match rule {
                    Some(r) if !r.users.iter().any(|u| u == "*" || *u == user) => {
                        Verdict::Forbidden(user)
                    }
                    _ => Verdict::Allowed(Some(user)),
                }
            }
            Err((stale, why)) => {
                // Right credentials on an expired nonce are not a failure; wrong, replayed
                // or malformed ones are.
                if !stale {
                    self.failed_attempts += 1;
                    self.backoff.failed(peer, claimed.as_deref(), now);
                }
                Verdict::Challenge { stale, why }
            }
        };
        Checked { wait, verdict }
    }

    /// Verifies an `Authorization` value; `Err((stale, why))` on failure.
    fn authenticate(
        &mut self,
        method: &str,
        uri: &str,
        authorization: &str,
        now_secs: u64,
    ) -> Result<String, (bool, &'static str)> {
        let (scheme, rest) = authorization
            .trim()
            .split_once(' ')
            .ok_or((false, "malformed Authorization"))?;
        if scheme.eq_ignore_ascii_case("basic") {
            if !self.allow_basic {
                return Err((false, "Basic authentication is not enabled"));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| (false, "malformed Basic credentials"))?;
            let text =
                String::from_utf8(decoded).map_err(|_| (false, "malformed Basic credentials"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or((false, "malformed Basic credentials"))?;
            let secret = self.users.get(user).ok_or((false, "unknown user"))?;
            let given = UserSecret::from_password(user, pass);
            return if bool::from(
                given
                    .ha1_sha256
                    .as_bytes()
                    .ct_eq(secret.ha1_sha256.as_bytes()),
            ) {
                Ok(user.to_owned())
            } else {
                Err((false, "wrong password"))
            };
        }
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err((false, "unsupported authentication scheme"));
        }
        let p = parse_params(rest);
        // RFC 7616 §3.4 lists each parameter once; with two `response=` (or two anything)
        // the meaning depends on which one a parser takes, so refuse the ambiguity.
        if p.iter().enumerate().any(|(i, (n, _))| {
            p[..i]
                .iter()
                .any(|(earlier, _)| earlier.eq_ignore_ascii_case(n))
        }) {
            return Err((false, "digest with a parameter given twice"));
        }
        let get = |k: &str| {
            p.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let user = get("username").ok_or((false, "digest without username"))?;
        let realm = get("realm").ok_or((false, "digest without realm"))?;
        let nonce = get("nonce").ok_or((false, "digest without nonce"))?;
        let digest_uri = get("uri").ok_or((false, "digest without uri"))?;
        let response = get("response").ok_or((false, "digest without response"))?;
        let alg = match get("algorithm").unwrap_or("MD5") {
            a if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            a if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            _ => return Err((false, "unsupported digest algorithm")),
        };
        // RFC 7616 §3.4.4: we never offer `userhash=true`, so a client hashing the name is
        // wrong or probing; `username` would not be the user name.
        if get("userhash").is_some_and(|v| !v.eq_ignore_ascii_case("false")) {
            return Err((false, "digest userhash is not supported"));
        }
        if realm != REALM {
            return Err((false, "wrong realm"));
        }
        // RFC 7616 §3.4.6: the digest must be for this request's URI.
        if digest_uri != uri {
            return Err((false, "digest uri differs from the request URI"));
        }
        let qop = get("qop");
        if qop != Some("auth") {
            return Err((
                false,
                "digest without qop=auth (replay protection needs it)",
            ));
        }
        let nc_text = get("nc").ok_or((false, "digest without nc"))?;
        let cnonce = get("cnonce").ok_or((false, "digest without cnonce"))?;
        let nc = u32::from_str_radix(nc_text, 16).map_err(|_| (false, "malformed nc"))?;
        let issued = self.nonce_issued(nonce, alg).map_err(|why| (false, why))?;
        let secret = self.users.get(user).ok_or((false, "unknown user"))?;
        let ha2 = alg.hash_hex(&format!("{method}:{digest_uri}"));
        let expected = alg.hash_hex(&format!(
            "{}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}",
            secret.ha1(alg)
        ));
        if !bool::from(
            expected
                .as_bytes()
                .ct_eq(response.to_ascii_lowercase().as_bytes()),
        ) {
            return Err((false, "wrong password"));
        }
        if now_secs.saturating_sub(issued) > NONCE_LIFETIME.as_secs() {
            return Err((true, "nonce expired"));
        }
        // §3.4: a nonce count that does not grow is a replay.
        if self.nonce_counts.len() >= MAX_TRACKED_NONCES {
            let cutoff = now_secs.saturating_sub(NONCE_LIFETIME.as_secs());
            self.nonce_counts.retain(|_, (_, issued)| *issued >= cutoff);
        }
        let full = self.nonce_counts.len() >= MAX_TRACKED_NONCES;
        match self.nonce_counts.get_mut(nonce) {
            Some((last, _)) if nc <= *last => return Err((false, "replayed nonce count")),
            Some((last, _)) => *last = nc,
            None if full => return Err((true, "too many live nonces")),
            None => {
                self.nonce_counts.insert(nonce.to_owned(), (nc, issued));
            }
        }
        Ok(user.to_owned())
    }
}

/// The user name an `Authorization` value claims (Digest `username=`, the user of Basic
/// credentials), before anything is verified: the backoff's per-name key.
fn claimed_user(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(user, _)| user.to_owned());
    }
    if scheme.eq_ignore_ascii_case("digest") {
        return parse_params(rest)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("username"))
            .map(|(_, v)| v);
    }
    None
}

/// Splits `k=v, k="v, w"` auth-params (RFC 7235 §2.1).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = q.get(end..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((name, value));
    }
    out
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn auth(basic: bool, rules: Vec<AccessRule>) -> Authenticator {
        let users = [
            (
                "alice".to_owned(),
                UserSecret::from_password("alice", "secret"),
            ),
            (
                "bob".to_owned(),
                UserSecret::from_password("bob", "hunter2"),
            ),
        ]
        .into();
        Authenticator::new(users, rules, basic).unwrap()
    }

    fn nonce_of(challenge: &str) -> String {
        parse_params(challenge.trim_start_matches("Digest "))
            .into_iter()
            .find(|(k, _)| k == "nonce")
            .unwrap()
            .1
    }

    /// The nonce of the challenge for `alg`.
    fn nonce_for(a: &Authenticator, alg: Algorithm) -> String {
        let challenges = a.challenges(false);
        let c = challenges
            .iter()
            .find(|c| c.contains(&format!("algorithm={},", alg.name())))
            .unwrap();
        nonce_of(c)
    }

    /// A client's Authorization header, computed independently of `authenticate`.
    fn digest(
        alg: Algorithm,
        user: &str,
        pass: &str,
        method: &str,
        uri: &str,
        nonce: &str,
        nc: u32,
    ) -> String {
        let ha1 = alg.hash_hex(&format!("{user}:{REALM}:{pass}"));
        let ha2 = alg.hash_hex(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let resp = alg.hash_hex(&format!("{ha1}:{nonce}:{nc}:abcdef:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             algorithm={}, qop=auth, nc={nc}, cnonce=\"abcdef\", response=\"{resp}\"",
            alg.name()
        )
    }

    const URI: &str = "rtsp://127.0.0.1:8554/news";

    #[test]
    fn rfc_7616_section_3_9_1_example_responses() {
        // The RFC's worked example, composed the way `authenticate` composes it.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, want) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let ha1 = alg.hash_hex("Mufasa:http-auth@example.org:Circle of Life");
            let ha2 = alg.hash_hex("GET:/dir/index.html");
            let got = alg.hash_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
            assert_eq!(got, want, "{alg:?}");
        }
    }

    #[test]
    fn digest_md5_and_sha256_accept_right_and_refuse_wrong_passwords() {
        let now = Instant::now();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let mut a = auth(false, vec![]);
            let nonce = nonce_for(&a, alg);
            let good = digest(alg, "alice", "secret", "DESCRIBE", URI, &nonce, 1);
            assert_eq!(
                a.check("DESCRIBE", URI, "news", Some(&good), PEER, now)
                    .verdict,
                Verdict::Allowed(Some("alice".into()))
            );
            let bad = digest(alg, "alice", "wrong", "DESCRIBE", URI, &nonce, 2);
            assert!(matches!(
                a.check("DESCRIBE", URI, "news", Some(&bad), PEER, now)
                    .verdict,
                Verdict::Challenge { stale: false, .. }
            ));
        }
    }

    #[test]
    fn replayed_tampered_expired_and_misdirected_digests_are_refused() {
        let now = Instant::now();
        let mut a = auth(false, vec![]);
        let nonce = nonce_of(&a.challenges(false)[1]);
        let first = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &nonce, 1);
        assert!(matches!(
            a.check("PLAY", URI, "news", Some(&first), PEER, now)
                .verdict,
            Verdict::Allowed(_)
        ));
        // Same nc again: replay.
        assert!(matches!(
            a.check("PLAY", URI, "news", Some(&first), PEER, now)
                .verdict,
            Verdict::Challenge {
                why: "replayed nonce count",
                ..
            }
        ));
        // Growing nc is fine.
        let second = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &nonce, 2);
        assert!(matches!(
            a.check("PLAY", URI, "news", Some(&second), PEER, now)
                .verdict,
            Verdict::Allowed(_)
        ));
        // A nonce with one hex digit changed.
        let mut forged = nonce.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        let tampered = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &forged, 1);
        assert!(matches!(
            a.check("PLAY", URI, "news", Some(&tampered), PEER, now)
                .verdict,
            Verdict::Challenge {
                why: "unknown or altered nonce",
                ..
            }
        ));
        // Digest for another URI.
        let elsewhere = digest(
            Algorithm::Md5,
            "alice",
            "secret",
            "PLAY",
            "rtsp://h/other",
            &nonce,
            3,
        );
        assert!(matches!(
            a.check("PLAY", URI, "news", Some(&elsewhere), PEER, now)
                .verdict,
            Verdict::Challenge { .. }
        ));
        // The same valid digest after the nonce lifetime: stale, so the client retries at once.
        let later = SystemTime::now() + NONCE_LIFETIME + Duration::from_secs(5);
        let fresh = digest(Algorithm::Md5, "alice", "secret", "PLAY", URI, &nonce, 9);
        assert!(matches!(
            a.check_at("PLAY", URI, "news", Some(&fresh), PEER, now, later)
                .verdict,
            Verdict::Challenge { stale: true, .. }
        ));
    }

    #[test]
    fn basic_only_when_enabled() {
        let now = Instant::now();
        let creds = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:secret")
        );
        assert!(matches!(
            auth(false, vec![])
                .check("DESCRIBE", URI, "news", Some(&creds), PEER, now)
                .verdict,
            Verdict::Challenge { .. }
        ));
        assert_eq!(
            auth(true, vec![])
                .check("DESCRIBE", URI, "news", Some(&creds), PEER, now)
                .verdict,
            Verdict::Allowed(Some("alice".into()))
        );
        assert!(auth(true, vec![])
            .challenges(false)
            .iter()
            .any(|c| c.starts_with("Basic ")));
    }

    #[test]
    fn rules_open_streams_and_restrict_users() {
        let rules = vec![
            AccessRule {
                streams: "public/*".into(),
                public: true,
                users: vec![],
            },
            AccessRule {
                streams: "news".into(),
                public: false,
                users: vec!["alice".into()],
            },
        ];
        let now = Instant::now();
        let mut a = auth(false, rules);
        assert_eq!(
            a.check("DESCRIBE", URI, "public/clip", None, PEER, now)
                .verdict,
            Verdict::Allowed(None)
        );
        let nonce = nonce_of(&a.challenges(false)[0]);
        let bob = digest(
            Algorithm::Sha256,
            "bob",
            "hunter2",
            "DESCRIBE",
            URI,
            &nonce,
            1,
        );
        assert_eq!(
            a.check("DESCRIBE", URI, "news/trackID=0", Some(&bob), PEER, now)
                .verdict,
            Verdict::Forbidden("bob".into())
        );
        let alice = digest(
            Algorithm::Sha256,
            "alice",
            "secret",
            "DESCRIBE",
            URI,
            &nonce,
            2,
        );
        assert!(matches!(
            a.check("DESCRIBE", URI, "news", Some(&alice), PEER, now)
                .verdict,
            Verdict::Allowed(_)
        ));
        // No rule for "other": any authenticated user.
        let bob2 = digest(
            Algorithm::Sha256,
            "bob",
            "hunter2",
            "DESCRIBE",
            URI,
            &nonce,
            3,
        );
        assert!(matches!(
            a.check("DESCRIBE", URI, "other", Some(&bob2), PEER, now)
                .verdict,
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn parallel_failures_from_one_address_are_queued_one_at_a_time() {
        // Nine wrong guesses arriving at once (as over nine connections): five free, then
        // each answered one backoff after the previous one's slot.
        let now = Instant::now();
        let mut a = auth(false, vec![]);
        let nonce = nonce_for(&a, Algorithm::Md5);
        let mut waits = Vec::new();
        for nc in 1..=9 {
            let bad = digest(Algorithm::Md5, "alice", "nope", "DESCRIBE", URI, &nonce, nc);
            let c = a.check("DESCRIBE", URI, "news", Some(&bad), PEER, now);
            assert!(matches!(c.verdict, Verdict::Challenge { stale: false, .. }));
            waits.push(c.wait.as_millis());
        }
        assert_eq!(waits, [0, 0, 0, 0, 0, 200, 600, 1400, 3000]);
        assert_eq!(a.failed_attempts, 9);
        assert_eq!(a.throttled_attempts(), 4);
        // A missing Authorization (the normal first request) is neither an attempt nor
        // queued.
        let c = a.check("DESCRIBE", URI, "news", None, PEER, now);
        assert!(c.wait.is_zero() && matches!(c.verdict, Verdict::Challenge { .. }));
        assert_eq!(a.failed_attempts, 9);
        // Once the queue is MAX_QUEUE long, attempts are refused at once, unverified.
        let more = digest(Algorithm::Md5, "alice", "nope", "DESCRIBE", URI, &nonce, 99);
        let refused = (0..10)
            .map(|_| a.check("DESCRIBE", URI, "news", Some(&more), PEER, now))
            .find(|c| matches!(c.verdict, Verdict::Throttled(_)))
            .unwrap();
        assert!(refused.wait.is_zero());
        assert!(matches!(refused.verdict, Verdict::Throttled(r)
            if r.status == StatusCode::ServiceUnavailable && r.retry_after_secs >= 5));
    }

    #[test]
    fn a_right_guess_is_held_as_long_as_a_wrong_one() {
        let now = Instant::now();
        let mut waits = Vec::new();
        for pass in ["secret", "wrong"] {
            let mut a = auth(false, vec![]);
            let nonce = nonce_for(&a, Algorithm::Sha256);
            for nc in 1..=6 {
                let bad = digest(Algorithm::Sha256, "alice", "x", "PLAY", URI, &nonce, nc);
                a.check("PLAY", URI, "news", Some(&bad), PEER, now);
            }
            let guess = digest(Algorithm::Sha256, "alice", pass, "PLAY", URI, &nonce, 7);
            let c = a.check("PLAY", URI, "news", Some(&guess), PEER, now);
            assert_eq!(
                matches!(c.verdict, Verdict::Allowed(_)),
                pass == "secret",
                "{c:?}"
            );
            waits.push(c.wait);
        }
        assert!(
            waits[0] > Duration::ZERO && waits[0] == waits[1],
            "{waits:?}"
        );
    }

    #[test]
    fn basic_guesses_are_keyed_on_their_user_name_too() {
        let now = Instant::now();
        let mut a = auth(true, vec![]);
        let basic = |creds: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            )
        };
        for i in 0..5u8 {
            let peer = IpAddr::from([10, 0, 0, i]);
            a.check("DESCRIBE", URI, "news", Some(&basic("bob:x")), peer, now);
        }
        // A sixth address, first failure of its own, but bob's fifth is behind it.
        let c = a.check(
            "DESCRIBE",
            URI,
            "news",
            Some(&basic("bob:y")),
            IpAddr::from([10, 0, 0, 9]),
            now,
        );
        assert_eq!(c.wait, Duration::from_millis(200));
        assert_eq!(claimed_user(&basic("bob:x:y")).as_deref(), Some("bob"));
    }

    #[test]
    fn a_response_with_another_algorithm_than_the_nonce_is_refused() {
        // RFC 7616 §3.4: a nonce from the SHA-256 challenge answered with MD5 (a downgrade),
        // and the reverse.
        let now = Instant::now();
        for (challenge, response) in [
            (Algorithm::Sha256, Algorithm::Md5),
            (Algorithm::Md5, Algorithm::Sha256),
        ] {
            let mut a = auth(false, vec![]);
            let nonce = nonce_for(&a, challenge);
            let mixed = digest(response, "alice", "secret", "DESCRIBE", URI, &nonce, 1);
            assert_eq!(
                a.check("DESCRIBE", URI, "news", Some(&mixed), PEER, now)
                    .verdict,
                Verdict::Challenge {
                    stale: false,
                    why: "digest algorithm differs from the nonce's challenge"
                },
                "{challenge:?} nonce, {response:?} response"
            );
            let matching = digest(challenge, "alice", "secret", "DESCRIBE", URI, &nonce, 2);
            assert_eq!(
                a.check("DESCRIBE", URI, "news", Some(&matching), PEER, now)
                    .verdict,
                Verdict::Allowed(Some("alice".into()))
            );
        }
        // No `algorithm=` means MD5 (RFC 7616 §3.4): only with the MD5 challenge's nonce.
        let mut a = auth(false, vec![]);
        let nonce = nonce_for(&a, Algorithm::Sha256);
        let bare = digest(
            Algorithm::Md5,
            "alice",
            "secret",
            "DESCRIBE",
            URI,
            &nonce,
            1,
        )
        .replace("algorithm=MD5, ", "");
        assert!(matches!(
            a.check("DESCRIBE", URI, "news", Some(&bare), PEER, now)
                .verdict,
            Verdict::Challenge { .. }
        ));
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        let now = Instant::now();
        let mut a = auth(false, vec![]);
        let nonce = nonce_for(&a, Algorithm::Md5);
        let good = digest(
            Algorithm::Md5,
            "alice",
            "secret",
            "DESCRIBE",
            URI,
            &nonce,
            1,
        );
        for extra in [
            ", response=\"00000000000000000000000000000000\"",
            ", Response=\"00000000000000000000000000000000\"",
            ", username=\"bob\"",
            ", algorithm=SHA-256",
        ] {
            let twice = format!("{good}{extra}");
            assert_eq!(
                a.check("DESCRIBE", URI, "news", Some(&twice), PEER, now)
                    .verdict,
                Verdict::Challenge {
                    stale: false,
                    why: "digest with a parameter given twice"
                },
                "{extra}"
            );
        }
        // The same request without the duplicate is fine.
        assert!(matches!(
            a.check("DESCRIBE", URI, "news", Some(&good), PEER, now)
                .verdict,
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn userhash_is_refused() {
        // RFC 7616 §3.4.4: never offered here.
        let now = Instant::now();
        let mut a = auth(false, vec![]);
        let nonce = nonce_for(&a, Algorithm::Sha256);
        let good = digest(Algorithm::Sha256, "alice", "secret", "PLAY", URI, &nonce, 1);
        assert_eq!(
            a.check(
                "PLAY",
                URI,
                "news",
                Some(&format!("{good}, userhash=true")),
                PEER,
                now
            )
            .verdict,
            Verdict::Challenge {
                stale: false,
                why: "digest userhash is not supported"
            }
        );
        // `userhash=false` says what is true anyway.
        let good = digest(Algorithm::Sha256, "alice", "secret", "PLAY", URI, &nonce, 2);
        assert!(matches!(
            a.check(
                "PLAY",
                URI,
                "news",
                Some(&format!("{good}, userhash=false")),
                PEER,
                now
            )
            .verdict,
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn param_parser_handles_quotes_escapes_and_commas() {
        let p = parse_params(r#"username="a\"b", realm="x, y", nc=00000001, qop=auth"#);
        assert_eq!(p[0], ("username".into(), "a\"b".into()));
        assert_eq!(p[1], ("realm".into(), "x, y".into()));
        assert_eq!(p[2], ("nc".into(), "00000001".into()));
        assert_eq!(p[3], ("qop".into(), "auth".into()));
    }
}
