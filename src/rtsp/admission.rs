//! Admission control: limits that keep a flood of connections, viewers or requests from
//! hurting the viewers already served. A request over a limit is refused before any state is
//! created (never a half-set-up session), with `503 Service Unavailable` + `Retry-After` for
//! counts and `453 Not Enough Bandwidth` for the outgoing bitrate of the shards (RFC 2326
//! §11.3.1, §12.31).
//!
//! A limit of 0 means "no limit". Counting is done by the control thread only.
//!
//! Sessions are bounded by default (docs/SECURITY.md, "Default limits"): a client that
//! pipelines SETUPs creates a session per request, so an unbounded table lets one address
//! grow the server's memory at its own request rate. The defaults sit far above what players
//! reach (one session per stream they play) and above what a shard can stream anyway.
//!
//! Per-address counting groups IPv6 clients by their /64 prefix (RFC 4291 §2.5.4: one
//! subscriber's network), since one host can pick any address in it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::msg::StatusCode;

/// Default for `max-viewers-per-ip`: sessions one address (IPv6: one /64) may hold.
pub const DEFAULT_MAX_VIEWERS_PER_IP: usize = 1_000;
/// Default for `max-viewers`, per shard: twice and more what one shard core streams
/// (2,000–5,000 viewers measured in docs/BENCHMARKS.md).
pub const DEFAULT_MAX_VIEWERS_PER_SHARD: usize = 10_000;

/// Configured limits (0 = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Sessions (viewers) in the whole server.
    pub max_viewers: usize,
    /// Sessions per client IP address.
    pub max_viewers_per_ip: usize,
    /// Open RTSP connections.
    pub max_connections: usize,
    /// Open RTSP connections per client IP address.
    pub max_connections_per_ip: usize,
    /// Requests per second on one connection (a burst of the same size is allowed).
    pub max_requests_per_sec: u32,
    /// Average outgoing media bitrate per shard, in Mbit/s.
    pub max_mbps_per_shard: u64,
}

/// Limits as a config file or flags give them: unset fields take the defaults, 0 is
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LimitsOverlay {
    /// See [`Limits::max_viewers`].
    pub max_viewers: Option<usize>,
    /// See [`Limits::max_viewers_per_ip`].
    pub max_viewers_per_ip: Option<usize>,
    /// See [`Limits::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`Limits::max_connections_per_ip`].
    pub max_connections_per_ip: Option<usize>,
    /// See [`Limits::max_requests_per_sec`].
    pub max_requests_per_sec: Option<u32>,
    /// See [`Limits::max_mbps_per_shard`].
    pub max_mbps_per_shard: Option<u64>,
}

impl LimitsOverlay {
    /// `self` with every field set in `over` replaced by `over`'s value.
    pub fn overlaid_by(self, over: Self) -> Self {
        Self {
            max_viewers: over.max_viewers.or(self.max_viewers),
            max_viewers_per_ip: over.max_viewers_per_ip.or(self.max_viewers_per_ip),
            max_connections: over.max_connections.or(self.max_connections),
            max_connections_per_ip: over.max_connections_per_ip.or(self.max_connections_per_ip),
            max_requests_per_sec: over.max_requests_per_sec.or(self.max_requests_per_sec),
            max_mbps_per_shard: over.max_mbps_per_shard.or(self.max_mbps_per_shard),
        }
    }

    /// The limits for a server of `shards` shards: the defaults where unset.
    pub fn resolve(self, shards: usize) -> Limits {
        Limits {
            max_viewers: self
                .max_viewers
                .unwrap_or(DEFAULT_MAX_VIEWERS_PER_SHARD.saturating_mul(shards)),
            max_viewers_per_ip: self
                .max_viewers_per_ip
                .unwrap_or(DEFAULT_MAX_VIEWERS_PER_IP),
            max_connections: self.max_connections.unwrap_or(0),
            max_connections_per_ip: self.max_connections_per_ip.unwrap_or(0),
            max_requests_per_sec: self.max_requests_per_sec.unwrap_or(0),
            max_mbps_per_shard: self.max_mbps_per_shard.unwrap_or(0),
        }
    }
}

/// The key per-address limits count under: the address itself, or an IPv6 address's /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

/// A refusal: the status, how long to wait, and why (for the log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 503 or 453.
    pub status: StatusCode,
    /// Seconds for `Retry-After`.
    pub retry_after_secs: u32,
    /// Which limit.
    pub why: String,
}

impl Refused {
    fn busy(why: String) -> Self {
        Self {
            status: StatusCode::ServiceUnavailable,
            retry_after_secs: 5,
            why,
        }
    }
}

/// The counters behind the limits.
#[derive(Debug, Default)]
pub struct Admission {
    limits: Limits,
    connections: usize,
    connections_per_ip: HashMap<IpAddr, usize>,
    viewers: usize,
    viewers_per_ip: HashMap<IpAddr, usize>,
    /// Committed average bitrate per shard, bits/s.
    shard_bps: Vec<u64>,
    /// Requests refused by a limit since start.
    pub refused: u64,
}

impl Admission {
    /// Counters for `shards` shards under `limits`.
    pub fn new(limits: Limits, shards: usize) -> Self {
        Self {
            limits,
            shard_bps: vec![0; shards],
            ..Self::default()
        }
    }

    /// Replaces the limits (SIGHUP); current counts are kept, so a lowered limit only refuses
    /// new arrivals.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    fn refuse(&mut self, r: Refused) -> Refused {
        self.refused += 1;
        r
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn open_connection(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let ip = client_key(ip);
        let l = self.limits;
        if l.max_connections > 0 && self.connections >= l.max_connections {
            return Err(self.refuse(Refused::busy(format!(
                "{} connections open (max-connections)",
                self.connections
            ))));
        }
        let per_ip = self.connections_per_ip.get(&ip).copied().unwrap_or(0);
        if l.max_connections_per_ip > 0 && per_ip >= l.max_connections_per_ip {
            return Err(self.refuse(Refused::busy(format!(
                "{per_ip} connections from {ip} (max-connections-per-ip)"
            ))));
        }
        self.connections += 1;
        *self.connections_per_ip.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    /// Forgets a closed connection.
    pub fn close_connection(&mut self, ip: IpAddr) {
        let ip = client_key(ip);
        self.connections = self.connections.saturating_sub(1);
        decrement(&mut self.connections_per_ip, ip);
    }

    /// Admits a new viewer of a stream averaging `bps` bits/s from `ip`; returns the shard
    /// to put it on, chosen among `by_preference` (least loaded first) as the first with
    /// bandwidth left.
    pub fn open_viewer(
        &mut self,
        ip: IpAddr,
        bps: u64,
        by_preference: &[usize],
    ) -> Result<usize, Refused> {
        let ip = client_key(ip);
        let l = self.limits;
        if l.max_viewers > 0 && self.viewers >= l.max_viewers {
            return Err(self.refuse(Refused::busy(format!(
                "{} viewers (max-viewers)",
                self.viewers
            ))));
        }
        let per_ip = self.viewers_per_ip.get(&ip).copied().unwrap_or(0);
        if l.max_viewers_per_ip > 0 && per_ip >= l.max_viewers_per_ip {
            return Err(self.refuse(Refused::busy(format!(
                "{per_ip} viewers from {ip} (max-viewers-per-ip)"
            ))));
        }
        let cap = l.max_mbps_per_shard.saturating_mul(1_000_000);
        let shard = by_preference.iter().copied().find(|&s| {
            cap == 0
                || self
                    .shard_bps
                    .get(s)
                    .is_some_and(|&used| used.saturating_add(bps) <= cap)
        });
        let Some(shard) = shard else {
            return Err(self.refuse(Refused {
                status: StatusCode::NotEnoughBandwidth,
                retry_after_secs: 10,
                why: format!(
                    "every shard is at its {} Mbit/s limit (max-mbps-per-shard)",
                    l.max_mbps_per_shard
                ),
            }));
        };
        self.viewers += 1;
        *self.viewers_per_ip.entry(ip).or_insert(0) += 1;
        if let Some(used) = self.shard_bps.get_mut(shard) {
            *used = used.saturating_add(bps);
        }
        Ok(shard)
    }

    /// Forgets an ended viewer.
    pub fn close_viewer(&mut self, ip: IpAddr, bps: u64, shard: usize) {
        let ip = client_key(ip);
        self.viewers = self.viewers.saturating_sub(1);
        decrement(&mut self.viewers_per_ip, ip);
        if let Some(used) = self.shard_bps.get_mut(shard) {
            *used = used.saturating_sub(bps);
        }
    }

    /// A per-connection request-rate limiter under these limits.
    pub fn request_rate(&self) -> RequestRate {
        RequestRate::new(self.limits.max_requests_per_sec)
    }
}

fn decrement(map: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

/// A token bucket: `rate` requests per second with a burst of `rate`.
#[derive(Debug, Clone)]
pub struct RequestRate {
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RequestRate {
    /// A bucket for `per_sec` requests per second (0 = unlimited).
    pub fn new(per_sec: u32) -> Self {
        Self {
            rate: f64::from(per_sec),
            tokens: f64::from(per_sec),
            last: None,
        }
    }

    /// Takes a token for a request at `now`; false when over the rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.rate);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn sessions_are_bounded_unless_a_limit_is_set_to_zero() {
        let defaults = LimitsOverlay::default().resolve(2);
        assert_eq!(defaults.max_viewers, 2 * DEFAULT_MAX_VIEWERS_PER_SHARD);
        assert_eq!(defaults.max_viewers_per_ip, DEFAULT_MAX_VIEWERS_PER_IP);
        let lifted = LimitsOverlay {
            max_viewers: Some(0),
            max_viewers_per_ip: Some(0),
            ..LimitsOverlay::default()
        };
        let file = LimitsOverlay {
            max_viewers: Some(7),
            max_connections: Some(9),
            ..LimitsOverlay::default()
        };
        let merged = file.overlaid_by(lifted).resolve(2);
        assert_eq!((merged.max_viewers, merged.max_viewers_per_ip), (0, 0));
        assert_eq!(merged.max_connections, 9, "the file's value stays");
    }

    #[test]
    fn ipv6_clients_count_by_64_and_mapped_ipv4_as_ipv4() {
        let host =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        assert_eq!(client_key(host(1)), client_key(host(0xffff)));
        assert_ne!(
            client_key(host(1)),
            client_key(IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001, 0xdb8, 1, 3, 0, 0, 0, 1
            )))
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let mut a = Admission::new(
            Limits {
                max_viewers_per_ip: 2,
                ..Limits::default()
            },
            1,
        );
        assert!(a.open_viewer(host(1), 0, &[0]).is_ok());
        assert!(a.open_viewer(host(2), 0, &[0]).is_ok());
        assert!(a.open_viewer(host(3), 0, &[0]).is_err(), "same /64");
        a.close_viewer(host(1), 0, 0);
        assert!(a.open_viewer(host(3), 0, &[0]).is_ok());
    }

    #[test]
    fn connection_limits_total_and_per_ip() {
        let mut a = Admission::new(
            Limits {
                max_connections: 3,
                max_connections_per_ip: 2,
                ..Limits::default()
            },
            1,
        );
        assert!(a.open_connection(A).is_ok());
        assert!(a.open_connection(A).is_ok());
        let r = a.open_connection(A).unwrap_err();
        assert_eq!(r.status, StatusCode::ServiceUnavailable);
        assert!(a.open_connection(B).is_ok());
        assert!(a
            .open_connection(B)
            .unwrap_err()
            .why
            .contains("max-connections"));
        a.close_connection(A);
        assert!(a.open_connection(B).is_ok());
        assert_eq!(a.refused, 2);
    }

    #[test]
    fn viewers_fill_shards_by_bandwidth_then_get_453() {
        let limits = Limits {
            max_mbps_per_shard: 2,
            max_viewers_per_ip: 10,
            ..Limits::default()
        };
        let mut a = Admission::new(limits, 2);
        // 1 Mbit/s viewers: two fit on each shard.
        assert_eq!(a.open_viewer(A, 1_000_000, &[0, 1]), Ok(0));
        assert_eq!(a.open_viewer(A, 1_000_000, &[0, 1]), Ok(0));
        assert_eq!(a.open_viewer(A, 1_000_000, &[0, 1]), Ok(1));
        assert_eq!(a.open_viewer(A, 1_000_000, &[1, 0]), Ok(1));
        assert_eq!(
            a.open_viewer(A, 1_000_000, &[0, 1]).unwrap_err().status,
            StatusCode::NotEnoughBandwidth
        );
        a.close_viewer(A, 1_000_000, 1);
        assert_eq!(a.open_viewer(A, 1_000_000, &[0, 1]), Ok(1));
    }

    #[test]
    fn viewer_limits_total_and_per_ip() {
        let mut a = Admission::new(
            Limits {
                max_viewers: 2,
                max_viewers_per_ip: 1,
                ..Limits::default()
            },
            1,
        );
        assert!(a.open_viewer(A, 0, &[0]).is_ok());
        assert!(a
            .open_viewer(A, 0, &[0])
            .unwrap_err()
            .why
            .contains("per-ip"));
        assert!(a.open_viewer(B, 0, &[0]).is_ok());
        assert!(a
            .open_viewer(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3)), 0, &[0])
            .is_err());
    }

    #[test]
    fn request_rate_allows_a_burst_then_refills() {
        let t0 = Instant::now();
        let mut r = RequestRate::new(5);
        assert_eq!((0..7).filter(|_| r.allow(t0)).count(), 5);
        assert!(
            r.allow(t0 + Duration::from_millis(250)),
            "refilled ~1.25 tokens"
        );
        assert!(RequestRate::new(0).allow(t0), "0 = unlimited");
    }
}
