//! The `Transport` request/response header (RFC 2326 §12.39).
//!
//! A client offers a comma-separated list of transports in preference order
//! (§12.39); each is `RTP/AVP[/UDP|/TCP]` followed by `;`-separated
//! parameters. This module parses the offers the server can serve (RTP over
//! UDP, §12.39 `client_port`, and RTP interleaved on the RTSP connection,
//! §10.12 and §12.39 `interleaved`) and formats the server's reply.
//!
//! Accepted values and deviations, all deliberate:
//! - Profile names are matched case-insensitively; other profiles
//!   (`RTP/SAVP`, `RAW/RAW/UDP`, ...) are unsupported alternatives.
//! - `client_port=a[-b]` and `interleaved=a[-b]` must name a consecutive pair
//!   (`b == a + 1`, RTP then RTCP, RFC 3550 §11); a single value `a` means
//!   `a, a + 1`. Port 0 and pairs whose second member would overflow are
//!   rejected. Odd RTP ports are accepted: RFC 3550 §11 only says an even port
//!   SHOULD be used, and rejecting working clients gains nothing.
//! - §12.39 makes `multicast` the default; real clients always say `unicast`
//!   when they want it and this server serves only unicast, so an alternative
//!   naming neither is treated as unicast. `unicast` together with `multicast`
//!   is a conflict.
//! - `mode` defaults to PLAY (§12.39); `mode_play` is whether PLAY is listed.
//! - `destination` is reported verbatim; the server must not send media to
//!   an address other than the client's without authorization (§12.39, §16).
//! - Unknown parameters, and `ttl`, `layers`, `port`, `source`,
//!   `server_port`, `append`, are ignored.
//! - RTSP 2.0's `dest_addr` (RFC 7826 §18.54: `dest_addr="ip:port"/"ip:port"`, the host
//!   optional as in `":5000"`) is parsed into [`DestAddr`]; only literal IP addresses are
//!   accepted (no host names to resolve), and the server sends only to the client's own
//!   address (an alternative naming another host is unusable). `src_addr` from a client
//!   is ignored.
//! - Consistency with the lower transport (e.g. UDP without `client_port`) is
//!   left to the server; it answers 461 (§11.3.9) when nothing is usable.

use std::fmt::Write as _;

use crate::wire::rtp::Ssrc;

/// The lower transport of an RTP/AVP offer (§12.39 `lower-transport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LowerTransport {
    /// RTP over UDP (`RTP/AVP` or `RTP/AVP/UDP`).
    Udp,
    /// RTP interleaved on the RTSP TCP connection (`RTP/AVP/TCP`, §10.12).
    Tcp,
}

/// One acceptable transport alternative offered by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSpec {
    /// UDP or TCP-interleaved.
    pub lower: LowerTransport,
    /// The profile is `RTP/SAVP` (SRTP, RFC 3711), not `RTP/AVP`.
    pub srtp: bool,
    /// `true` unless `multicast` was requested (see the module notes on the default).
    pub unicast: bool,
    /// `client_port` RTP and RTCP ports; always consecutive.
    pub client_port: Option<(u16, u16)>,
    /// `interleaved` RTP and RTCP channels; always consecutive.
    pub interleaved: Option<(u8, u8)>,
    /// Whether `mode` includes PLAY (the default when `mode` is absent).
    pub mode_play: bool,
    /// Whether `mode` includes RECORD (§10.11): the client publishes on this transport.
    /// Clients write it as `mode=record`, `mode=RECORD` or `mode="RECORD"`.
    pub mode_record: bool,
    /// `ssrc` suggested by the client (1 to 8 hex digits).
    pub ssrc: Option<Ssrc>,
    /// `destination` address, verbatim.
    pub destination: Option<String>,
    /// RTSP 2.0 `dest_addr` (RFC 7826 §18.54): where RTP and RTCP go.
    pub dest_addr: Option<DestAddr>,
}

/// A `dest_addr` (RFC 7826 §18.54): the RTP address, then the RTCP one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestAddr {
    /// The host, when given (`":5000"` names only a port: the sender's own address).
    pub host: Option<std::net::IpAddr>,
    /// RTP port (non-zero).
    pub rtp: u16,
    /// RTCP port (non-zero; the RTP port + 1 when only one address is given).
    pub rtcp: u16,
}

/// Why a transport alternative is unusable; the server answers 461 (§11.3.9).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The header holds no alternatives.
    #[error("empty transport header")]
    Empty,
    /// A profile other than RTP/AVP over UDP or TCP.
    #[error("unsupported transport profile {0:?}")]
    UnsupportedProfile(String),
    /// `client_port` is not a valid consecutive non-zero pair.
    #[error("invalid client_port {0:?}")]
    InvalidClientPort(String),
    /// `interleaved` is not a valid consecutive channel pair.
    #[error("invalid interleaved channels {0:?}")]
    InvalidInterleaved(String),
    /// `ssrc` is not 1 to 8 hex digits.
    #[error("invalid ssrc {0:?}")]
    InvalidSsrc(String),
    /// `dest_addr` is not one or two quoted `[ip]:port` addresses (RFC 7826 §18.54).
    #[error("invalid dest_addr {0:?}")]
    InvalidDestAddr(String),
    /// Both `unicast` and `multicast` are given.
    #[error("both unicast and multicast requested")]
    Conflict,
}

/// Parses a Transport header: a comma-separated list of alternatives in preference order (RTP/AVP, RTP/AVP/UDP, RTP/AVP/TCP; params unicast, multicast, client_port=a[-b], interleaved=a[-b], mode="PLAY"/play, ssrc, destination, ttl ...). Unusable alternatives are skipped; `Ok` is never empty, and `Err` is the first alternative's error when none is usable.
pub fn parse_transport(value: &str) -> Result<Vec<TransportSpec>, TransportError> {
    let mut specs = Vec::new();
    let mut first_err = None;
    for alt in parse_transport_alternatives(value) {
        match alt {
            Ok(spec) => specs.push(spec),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if specs.is_empty() {
        Err(first_err.unwrap_or(TransportError::Empty))
    } else {
        Ok(specs)
    }
}

/// Parses every non-empty alternative, keeping the unusable ones as errors, in order.
pub fn parse_transport_alternatives(value: &str) -> Vec<Result<TransportSpec, TransportError>> {
    split_unquoted(value, ',')
        .map(str::trim)
        .filter(|alt| !alt.is_empty())
        .map(parse_alternative)
        .collect()
}

/// Server reply forms: "RTP/AVP;unicast;client_port=a-b;server_port=c-d;ssrc=XXXXXXXX" (ssrc 8 hex digits, RFC 2326 §12.39) and "RTP/AVP/TCP;unicast;interleaved=a-b;ssrc=XXXXXXXX".
pub fn format_udp_reply(client: (u16, u16), server: (u16, u16), ssrc: Ssrc) -> String {
    format!(
        "RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={ssrc:08X}",
        client.0, client.1, server.0, server.1
    )
}

/// The interleaved reply form, "RTP/AVP/TCP;unicast;interleaved=a-b;ssrc=XXXXXXXX" (§12.39).
pub fn format_tcp_reply(channels: (u8, u8), ssrc: Ssrc) -> String {
    let mut s = String::with_capacity(48);
    let _ = write!(
        s,
        "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={ssrc:08X}",
        channels.0, channels.1
    );
    s
}

/// Splits on `sep` outside double quotes (§12.39 `mode = <"> *Method <">`).
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut quoted = false;
        for (i, c) in current.char_indices() {
            if c == '"' {
                quoted = !quoted;
            } else if c == sep && !quoted {
                rest = current.get(i + c.len_utf8()..);
                return current.get(..i);
            }
        }
        rest = None;
        Some(current)
    })
}

/// Error payloads echo at most this many bytes of client input.
const ECHO_MAX: usize = 64;

fn echo(s: &str) -> String {
    let mut cut = s.len().min(ECHO_MAX);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.get(..cut).unwrap_or_default().to_owned()
}

fn parse_alternative(alt: &str) -> Result<TransportSpec, TransportError> {
    let mut params = split_unquoted(alt, ';');
    let profile = params.next().unwrap_or_default().trim();
    // RFC 3711 §12 / RFC 4568 §7.1: `RTP/SAVP` is SRTP over the same lower transports.
    let is = |p: &str| profile.eq_ignore_ascii_case(p);
    let (lower, srtp) = if is("RTP/AVP") || is("RTP/AVP/UDP") {
        (LowerTransport::Udp, false)
    } else if is("RTP/AVP/TCP") {
        (LowerTransport::Tcp, false)
    } else if is("RTP/SAVP") || is("RTP/SAVP/UDP") {
        (LowerTransport::Udp, true)
    } else if is("RTP/SAVP/TCP") {
        (LowerTransport::Tcp, true)
    } else {
        return Err(TransportError::UnsupportedProfile(echo(profile)));
    };
    let mut spec = TransportSpec {
        lower,
        srtp,
        unicast: true,
        client_port: None,
        interleaved: None,
        mode_play: true,
        mode_record: false,
        ssrc: None,
        destination: None,
        dest_addr: None,
    };
    let (mut saw_unicast, mut saw_multicast) = (false, false);
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (param.trim(), None),
        };
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("unicast") {
            saw_unicast = true;
        } else if is("multicast") {
            saw_multicast = true;
        } else if is("client_port") {
            let v = value.unwrap_or_default();
            let pair = parse_pair::<u16>(v).filter(|&(a, _)| a != 0);
            spec.client_port =
                Some(pair.ok_or_else(|| TransportError::InvalidClientPort(echo(v)))?);
        } else if is("interleaved") {
            let v = value.unwrap_or_default();
            let pair = parse_pair::<u8>(v);
            spec.interleaved =
                Some(pair.ok_or_else(|| TransportError::InvalidInterleaved(echo(v)))?);
        } else if is("ssrc") {
            let v = value.unwrap_or_default();
            spec.ssrc = Some(parse_ssrc(v).ok_or_else(|| TransportError::InvalidSsrc(echo(v)))?);
        } else if is("mode") {
            let v = value.unwrap_or_default();
            spec.mode_play = v.split(',').any(|m| m.trim().eq_ignore_ascii_case("PLAY"));
            spec.mode_record = v
                .split(',')
                .any(|m| m.trim().eq_ignore_ascii_case("RECORD"));
        } else if is("dest_addr") {
            // The raw value: `unquote` would strip only the outer quotes of two addresses.
            let raw = param.split_once('=').map_or("", |(_, v)| v.trim());
            spec.dest_addr = Some(
                parse_dest_addr(raw).ok_or_else(|| TransportError::InvalidDestAddr(echo(raw)))?,
            );
        } else if is("destination") {
            spec.destination = value.filter(|v| !v.is_empty()).map(str::to_owned);
        }
        // Anything else (ttl, layers, port, source, server_port, append,
        // extensions) does not affect what this server sends.
    }
    if saw_unicast && saw_multicast {
        return Err(TransportError::Conflict);
    }
    spec.unicast = !saw_multicast;
    Ok(spec)
}

/// RFC 7826 §18.54 `dest_addr = addr-spec *("/" addr-spec)`, `addr-spec = DQUOTE (host
/// [":" port] / ":" port) DQUOTE`; here: one or two addresses, each a literal IPv4 address,
/// a bracketed IPv6 address or nothing, and a non-zero port.
pub fn parse_dest_addr(raw: &str) -> Option<DestAddr> {
    let mut parts = raw.split('/');
    let first = parse_addr_spec(parts.next()?)?;
    let second = match parts.next() {
        Some(p) => Some(parse_addr_spec(p)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    let (host, rtp) = first;
    let rtcp = match second {
        // RTP and RTCP to two different hosts is not something this server does.
        Some((h, port)) if h == host || h.is_none() => port,
        Some(_) => return None,
        None => rtp.checked_add(1)?,
    };
    Some(DestAddr { host, rtp, rtcp })
}

/// One quoted `host:port` or `:port`.
fn parse_addr_spec(spec: &str) -> Option<(Option<std::net::IpAddr>, u16)> {
    let inner = spec.trim().strip_prefix('"')?.strip_suffix('"')?;
    let (host, port) = inner.rsplit_once(':')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = if host.is_empty() {
        None
    } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(std::net::IpAddr::V6(v6.parse().ok()?))
    } else {
        Some(std::net::IpAddr::V4(host.parse().ok()?))
    };
    Some((host, port))
}

/// RTSP 2.0 UDP reply (RFC 7826 §18.54), in the client's own terms: to an offer with
/// `dest_addr`, `RTP/AVP/UDP;unicast;dest_addr="c:a"/"c:b";src_addr="s:c"/"s:d";
/// ssrc=XXXXXXXX`; to an offer with the 1.0 `client_port` (GStreamer 1.22 in 2.0, whose
/// transport parser warns "unknown transport field" on `dest_addr` and `src_addr` and reads
/// only the ports), `RTP/AVP/UDP;unicast;client_port=a-b;server_port=c-d;ssrc=XXXXXXXX`.
pub fn format_udp_reply_v2(
    client: std::net::SocketAddr,
    client_rtcp: u16,
    server: std::net::SocketAddr,
    server_rtcp: u16,
    ssrc: Ssrc,
    client_port_form: bool,
) -> String {
    let addr = |a: std::net::SocketAddr, port: u16| std::net::SocketAddr::new(a.ip(), port);
    let mut s = if client_port_form {
        format!(
            "RTP/AVP/UDP;unicast;client_port={}-{client_rtcp};server_port={}-{server_rtcp}",
            client.port(),
            server.port()
        )
    } else {
        format!(
            "RTP/AVP/UDP;unicast;dest_addr=\"{client}\"/\"{}\";src_addr=\"{server}\"/\"{}\"",
            addr(client, client_rtcp),
            addr(server, server_rtcp)
        )
    };
    let _ = write!(s, ";ssrc={ssrc:08X}");
    s
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// Unsigned integers usable in a consecutive pair.
trait PairNum: Copy + PartialEq + std::str::FromStr {
    fn succ(self) -> Option<Self>;
}
impl PairNum for u8 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}
impl PairNum for u16 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// `a` or `a-b` with `b == a + 1`; decimal digits only.
fn parse_pair<T: PairNum>(v: &str) -> Option<(T, T)> {
    let num = |s: &str| -> Option<T> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (num(a)?, Some(num(b)?)),
        None => (num(v)?, None),
    };
    let next = a.succ()?;
    match b {
        Some(b) if b != next => None,
        _ => Some((a, next)),
    }
}

/// §12.39 `ssrc = 8*8(HEX)`; shorter forms (leading zeros dropped) are accepted.
fn parse_ssrc(v: &str) -> Option<Ssrc> {
    if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(v, 16).ok().map(Ssrc)
}

/// Fuzz entry point: runs [`parse_transport`] on arbitrary bytes and checks its invariants.
#[cfg(any(test, fuzzing))]
pub fn fuzz_transport(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let all = parse_transport_alternatives(&s);
    match parse_transport(&s) {
        Ok(specs) => {
            assert!(!specs.is_empty());
            assert_eq!(specs.len(), all.iter().filter(|a| a.is_ok()).count());
            for spec in specs {
                if let Some((a, b)) = spec.client_port {
                    assert!(a != 0 && u32::from(b) == u32::from(a) + 1);
                }
                if let Some((a, b)) = spec.interleaved {
                    assert_eq!(u16::from(b), u16::from(a) + 1);
                    let reply = format_tcp_reply((a, b), spec.ssrc.unwrap_or_default());
                    let back = parse_transport(&reply).map(|v| v.into_iter().next());
                    assert_eq!(
                        back.ok().flatten().and_then(|t| t.interleaved),
                        Some((a, b))
                    );
                }
            }
        }
        Err(e) => {
            assert!(all.iter().all(|a| a.is_err()));
            let _ = e.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(client: (u16, u16)) -> TransportSpec {
        TransportSpec {
            lower: LowerTransport::Udp,
            srtp: false,
            unicast: true,
            client_port: Some(client),
            interleaved: None,
            mode_play: true,
            mode_record: false,
            ssrc: None,
            destination: None,
            dest_addr: None,
        }
    }

    fn tcp(ch: (u8, u8)) -> TransportSpec {
        TransportSpec {
            lower: LowerTransport::Tcp,
            srtp: false,
            client_port: None,
            interleaved: Some(ch),
            ..udp((1, 2))
        }
    }

    #[test]
    fn real_client_offers() {
        // VLC / live555, retina UDP.
        assert_eq!(
            parse_transport("RTP/AVP;unicast;client_port=5000-5001"),
            Ok(vec![udp((5000, 5001))])
        );
        // ffmpeg.
        assert_eq!(
            parse_transport("RTP/AVP/UDP;unicast;client_port=23048-23049"),
            Ok(vec![udp((23048, 23049))])
        );
        // ffmpeg / retina / VLC --rtsp-tcp.
        assert_eq!(
            parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1"),
            Ok(vec![tcp((0, 1))])
        );
        // GStreamer rtspsrc offering both, UDP preferred.
        assert_eq!(
            parse_transport(
                "RTP/AVP;unicast;client_port=40508-40509,RTP/AVP/TCP;unicast;interleaved=0-1"
            ),
            Ok(vec![udp((40508, 40509)), tcp((0, 1))])
        );
    }

    #[test]
    fn gstreamer_with_multicast_and_unknown_profile() {
        let specs = parse_transport(
            "RTP/SAVP;unicast;client_port=6000-6001, RTP/AVP;multicast;ttl=16 ,\
             RTP/AVP;unicast;client_port=6000-6001;mode=\"PLAY\",RTP/AVP/TCP;unicast;interleaved=2-3",
        )
        .unwrap();
        assert_eq!(specs.len(), 4);
        assert!(specs[0].srtp && specs[0].lower == LowerTransport::Udp);
        assert_eq!(specs[0].client_port, Some((6000, 6001)));
        assert!(!specs[1].unicast);
        assert_eq!(specs[1].client_port, None);
        assert_eq!(specs[2], udp((6000, 6001)));
        assert_eq!(specs[3], tcp((2, 3)));
        let savp_tcp = parse_transport("RTP/SAVP/TCP;unicast;interleaved=0-1").unwrap();
        assert!(savp_tcp[0].srtp && savp_tcp[0].lower == LowerTransport::Tcp);
        let all = parse_transport_alternatives("RTP/XAVP;unicast, RTP/AVP;unicast");
        assert_eq!(
            all[0],
            Err(TransportError::UnsupportedProfile("RTP/XAVP".into()))
        );
        assert!(all[1].is_ok());
    }

    #[test]
    fn single_values_and_params() {
        assert_eq!(
            parse_transport("RTP/AVP;unicast;client_port=5000"),
            Ok(vec![udp((5000, 5001))])
        );
        assert_eq!(
            parse_transport("rtp/avp/tcp;interleaved=4"),
            Ok(vec![tcp((4, 5))])
        );
        let t = parse_transport(
            "RTP/AVP;unicast;destination=192.0.2.7;client_port=7000-7001;ssrc=0000AbCd;mode=play;ttl=3;x-foo=bar",
        )
        .unwrap();
        assert_eq!(t[0].ssrc, Some(Ssrc(0xabcd)));
        assert_eq!(t[0].destination.as_deref(), Some("192.0.2.7"));
        assert!(t[0].mode_play);
        let t = parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"RECORD\"").unwrap();
        assert!(!t[0].mode_play);
        assert!(t[0].mode_record);
        let t = parse_transport("RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record").unwrap();
        assert!(t[0].mode_record && !t[0].mode_play);
        let t =
            parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"PLAY,RECORD\"").unwrap();
        assert_eq!(t.len(), 1);
        assert!(t[0].mode_play);
        // TCP without interleaved: the server picks channels.
        assert_eq!(
            parse_transport("RTP/AVP/TCP;unicast").unwrap()[0].interleaved,
            None
        );
    }

    #[test]
    fn rejected_values() {
        use TransportError as E;
        for (value, want) in [
            ("", E::Empty),
            (" , ,", E::Empty),
            (
                "RTP/AVP;client_port=0-1",
                E::InvalidClientPort("0-1".into()),
            ),
            ("RTP/AVP;client_port=0", E::InvalidClientPort("0".into())),
            (
                "RTP/AVP;client_port=65535",
                E::InvalidClientPort("65535".into()),
            ),
            (
                "RTP/AVP;client_port=5000-6000",
                E::InvalidClientPort("5000-6000".into()),
            ),
            (
                "RTP/AVP;client_port=5001-5000",
                E::InvalidClientPort("5001-5000".into()),
            ),
            (
                "RTP/AVP;client_port=70000-70001",
                E::InvalidClientPort("70000-70001".into()),
            ),
            ("RTP/AVP;client_port=-1", E::InvalidClientPort("-1".into())),
            ("RTP/AVP;client_port", E::InvalidClientPort("".into())),
            (
                "RTP/AVP;client_port=+5-6",
                E::InvalidClientPort("+5-6".into()),
            ),
            (
                "RTP/AVP/TCP;interleaved=255",
                E::InvalidInterleaved("255".into()),
            ),
            (
                "RTP/AVP/TCP;interleaved=255-256",
                E::InvalidInterleaved("255-256".into()),
            ),
            (
                "RTP/AVP/TCP;interleaved=0-3",
                E::InvalidInterleaved("0-3".into()),
            ),
            ("RTP/AVP;ssrc=123456789", E::InvalidSsrc("123456789".into())),
            ("RTP/AVP;ssrc=xyz", E::InvalidSsrc("xyz".into())),
            ("RTP/AVP;unicast;multicast", E::Conflict),
            (
                "RAW/RAW/UDP;unicast",
                E::UnsupportedProfile("RAW/RAW/UDP".into()),
            ),
        ] {
            assert_eq!(parse_transport(value), Err(want), "{value:?}");
        }
        // A usable alternative after a broken one is still found.
        assert_eq!(
            parse_transport("RTP/AVP;client_port=0,RTP/AVP/TCP;interleaved=0-1"),
            Ok(vec![tcp((0, 1))])
        );
        // Echoed input is bounded.
        let long = format!("RTP/AVP;client_port={}", "9".repeat(1000));
        match parse_transport(&long) {
            Err(E::InvalidClientPort(s)) => assert_eq!(s.len(), ECHO_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reply_forms() {
        assert_eq!(
            format_udp_reply((5000, 5001), (6970, 6971), Ssrc(0x1a2b)),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=00001A2B"
        );
        assert_eq!(
            format_tcp_reply((0, 1), Ssrc(0xdeadbeef)),
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=DEADBEEF"
        );
        let back = parse_transport(&format_udp_reply((5000, 5001), (6970, 6971), Ssrc(7))).unwrap();
        assert_eq!(back[0].ssrc, Some(Ssrc(7)));
    }

    /// Transport-header vocabulary the property strings together.
    const PIECES: &[&str] = &[
        "RTP/AVP",
        "/TCP",
        "/UDP",
        ";",
        ",",
        "=",
        "-",
        "\"",
        "unicast",
        "multicast",
        "client_port",
        "interleaved",
        "ssrc",
        "mode",
        "PLAY",
        "0",
        "1",
        "255",
        "65535",
        "5000",
        "ffffffff",
        " ",
        "é",
        "\u{0}",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Any string of Transport vocabulary, and any bytes, keep [`fuzz_transport`]'s
        /// invariants.
        #[test]
        fn fuzz_smoke(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..24),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        ) {
            fuzz_transport(pieces.concat().as_bytes());
            fuzz_transport(&raw);
        }
    }

    /// RFC 7826 §18.54 `dest_addr`: both addresses, a port alone, IPv6; hostile forms fail.
    #[test]
    fn rtsp2_dest_addr() {
        let spec = parse_transport(
            "RTP/AVP/UDP;unicast;dest_addr=\"127.0.0.1:5000\"/\"127.0.0.1:5001\";mode=\"PLAY\"",
        )
        .unwrap();
        assert_eq!(
            spec[0].dest_addr,
            Some(DestAddr {
                host: Some("127.0.0.1".parse().unwrap()),
                rtp: 5000,
                rtcp: 5001
            })
        );
        assert_eq!(
            parse_dest_addr("\":6000\""),
            Some(DestAddr {
                host: None,
                rtp: 6000,
                rtcp: 6001
            })
        );
        assert_eq!(
            parse_dest_addr("\"[::1]:7000\"/\"[::1]:7003\"").map(|d| (d.rtp, d.rtcp)),
            Some((7000, 7003))
        );
        for bad in [
            "",
            "127.0.0.1:5000",
            "\"127.0.0.1:0\"",
            "\"127.0.0.1:70000\"",
            "\"example.com:5000\"",
            "\"127.0.0.1:5000\"/\"127.0.0.2:5001\"",
            "\"1:2\"/\"1:2\"/\"1:2\"",
            "\"127.0.0.1:65535\"",
            "\"127.0.0.1:-5\"",
        ] {
            assert_eq!(parse_dest_addr(bad), None, "{bad}");
        }
        assert!(matches!(
            parse_transport("RTP/AVP/UDP;unicast;dest_addr=\"nonsense\""),
            Err(TransportError::InvalidDestAddr(_))
        ));
        let reply = format_udp_reply_v2(
            "127.0.0.1:5000".parse().unwrap(),
            5001,
            "127.0.0.1:6970".parse().unwrap(),
            6971,
            Ssrc(0xAB),
            false,
        );
        assert_eq!(
            reply,
            "RTP/AVP/UDP;unicast;dest_addr=\"127.0.0.1:5000\"/\"127.0.0.1:5001\";src_addr=\"127.0.0.1:6970\"/\"127.0.0.1:6971\";ssrc=000000AB"
        );
    }
}
