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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
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
    /// Users allowed to publish (`*` = any authenticated user). Publishing is a separate
    /// permission: `public` and `users` never grant it, and a path whose first matching rule
    /// has neither `publish` nor `publish_key` cannot be published to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// A stream key that lets a publisher in without a user: `?key=` in the RTSP URL, or
    /// the RTMP stream key.
    #[serde(default)]
    pub publish_key: Option<String>,
}

/// What publishing to a path takes (the first rule that matches it decides, as for playing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishNeeds {
    /// Nothing: an open pattern (`serve --publish`) matches.
    Nothing,
    /// One of these users (`*`: any authenticated user), or the key if there is one.
    Grant {
        /// Users allowed.
        users: Vec<String>,
        /// The stream key accepted instead of credentials.
        key: Option<String>,
    },
    /// Nobody may publish here.
    Refused,
}

/// What publishing to `path` needs under the open patterns (`serve --publish`: `live/*`
/// matches `live/x`; no `*` means that path and its sub-paths) and the access rules.
pub fn publish_needs(open: &[String], rules: &[AccessRule], path: &str) -> PublishNeeds {
    let pattern = |streams: &str| AccessRule {
        streams: streams.to_owned(),
        public: false,
        users: Vec::new(),
        publish: Vec::new(),
        publish_key: None,
    };
    if open.iter().any(|p| pattern(p).matches(path)) {
        return PublishNeeds::Nothing;
    }
    match rules.iter().find(|r| r.matches(path)) {
        Some(r) if !r.publish.is_empty() || r.publish_key.is_some() => PublishNeeds::Grant {
            users: r.publish.clone(),
            key: r.publish_key.clone(),
        },
        _ => PublishNeeds::Refused,
    }
}

/// Whether `given` is the stream key `expected` (compared in constant time).
pub fn key_matches(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

impl AccessRule {
    fn matches(&self, path: &str) -> bool {
        match self.streams.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.streams || path.starts_with(&format!("{}/", self.streams)),
        }
    }
}

/// Whether `path` is open without credentials under `users` and `rules` (the same rules the
/// RTSP check applies): everything when there are no users and every rule is public, else
/// only streams whose first matching rule is public. The HLS side, which takes no
/// passwords, requires a play token for every other stream.
pub fn is_public(users: &HashMap<String, UserSecret>, rules: &[AccessRule], path: &str) -> bool {
    if users.is_empty() && rules.iter().all(|r| r.public) {
        return true;
    }
    rules
        .iter()
        .find(|r| r.matches(path))
        .is_some_and(|r| r.public)
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
        let checked = self.check_user_at(method, uri, authorization, peer, now, wall);
        match (checked.verdict, rule) {
            (Verdict::Allowed(Some(user)), Some(r))
                if !r.users.iter().any(|u| u == "*" || *u == user) =>
            {
                Checked {
                    wait: checked.wait,
                    verdict: Verdict::Forbidden(user),
                }
            }
            (verdict, _) => Checked {
                wait: checked.wait,
                verdict,
            },
        }
    }

    /// Checks credentials alone, whatever the access rules say (publishing has its own
    /// permission, `publish_needs`): `Allowed(Some(user))` for a valid user, else a
    /// challenge or a throttle, with the same backoff as [`Self::check_at`].
    #[allow(clippy::too_many_arguments)]
    pub fn check_user_at(
        &mut self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        peer: IpAddr,
        now: Instant,
        wall: SystemTime,
    ) -> Checked {
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
                Verdict::Allowed(Some(user))
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
mod tests;
