//! Writing the SDP answer (RFC 8866 §5 syntax; JSEP RFC 8829 §5.3.1 content) from a
//! [`Negotiated`] decision.
//!
//! ```text
//! v=0
//! o=- <session id> 2 IN IP4 <ip>
//! s=-
//! t=0 0
//! a=ice-lite                                  RFC 8839 §5.3: we never send checks
//! a=group:BUNDLE 0 1                          RFC 9143 §7.3: the accepted mids
//! m=video <port> UDP/TLS/RTP/SAVPF 109        same number and order as the offer's m= lines
//! c=IN IP4 <ip>
//! a=mid:0
//! a=ice-ufrag:… a=ice-pwd:… a=fingerprint:… a=setup:passive
//! a=sendonly                                  (WHEP; WHIP answers recvonly)
//! a=rtcp-mux  a=rtcp-rsize
//! a=rtpmap:109 H264/90000
//! a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
//! a=rtcp-fb:109 nack …
//! a=msid:<stream> <track>  a=ssrc:<ssrc> cname:<cname>
//! a=candidate:1 1 udp 2130706431 <ip> <port> typ host   first bundled section only
//! a=end-of-candidates
//! m=audio 0 UDP/TLS/RTP/SAVPF 111             a rejected section: port 0 (RFC 3264 §6)
//! ```
//!
//! Every accepted section carries the one candidate's address and port: all bundled sections
//! of an answer share the BUNDLE address (RFC 9143 §7.3.1).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::negotiate::{AcceptedSection, ChosenCodec, Negotiated, Role, SectionChoice};
use super::offer::Offer;

/// The server's side of the answer.
#[derive(Debug, Clone)]
pub struct AnswerParams<'a> {
    /// Our ICE ufrag (unique per session: the shard finds the session by it).
    pub ice_ufrag: &'a str,
    /// Our ICE password (RFC 8839 §5.4: at least 22 characters).
    pub ice_pwd: &'a str,
    /// Our certificate's fingerprint as `a=fingerprint` writes it (`sha-256 AB:CD:…`).
    pub fingerprint: &'a str,
    /// The shard's WebRTC UDP address: the one host candidate.
    pub candidate: SocketAddr,
    /// The `o=` line's session id (random per answer, RFC 8866 §5.2).
    pub session_id: u64,
    /// Our RTCP CNAME (RFC 3550 §6.5.1), for `a=ssrc:<n> cname:`.
    pub cname: &'a str,
    /// The `msid` stream id (RFC 8830 §2) of the tracks we send.
    pub stream_id: &'a str,
    /// WHEP: our SSRC for each [`super::negotiate::SendTrack`], by the track's index.
    pub send_ssrcs: &'a [u32],
    /// Whether the H.264 `fmtp` carries `sprop-parameter-sets` (RFC 6184 §8.1; optional:
    /// the stream repeats SPS/PPS in band before each keyframe).
    pub sprop_parameter_sets: bool,
}

/// Renders the answer, CRLF line endings.
pub fn write_answer(offer: &Offer, negotiated: &Negotiated, params: &AnswerParams<'_>) -> String {
    let mut out = String::with_capacity(1024);
    let ip = params.candidate.ip();
    let ip_type = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    line(&mut out, format_args!("v=0"));
    line(
        &mut out,
        format_args!("o=- {} 2 IN {ip_type} {ip}", params.session_id),
    );
    line(&mut out, format_args!("s=-"));
    line(&mut out, format_args!("t=0 0"));
    line(&mut out, format_args!("a=ice-lite"));
    let mids: Vec<String> = negotiated.accepted().map(|a| clean(&a.mid)).collect();
    line(&mut out, format_args!("a=group:BUNDLE {}", mids.join(" ")));
    let mut first_bundled = true;
    for (i, choice) in negotiated.sections.iter().enumerate() {
        match choice {
            SectionChoice::Accepted(a) => {
                write_accepted(&mut out, negotiated.role, a, params, first_bundled);
                first_bundled = false;
            }
            SectionChoice::Rejected => {
                let Some(m) = offer.media.get(i) else {
                    continue;
                };
                // RFC 3264 §6: a rejected stream keeps its media type and formats, port 0.
                let fmt = m.formats.first().map(String::as_str).unwrap_or("0");
                line(
                    &mut out,
                    format_args!(
                        "m={} 0 {} {}",
                        clean(m.kind.as_str()),
                        clean(&m.protocol),
                        clean(fmt)
                    ),
                );
                line(&mut out, format_args!("c=IN {ip_type} {ip}"));
                if let Some(mid) = &m.mid {
                    line(&mut out, format_args!("a=mid:{}", clean(mid)));
                }
                line(&mut out, format_args!("a=inactive"));
                // The format's rtpmap, as offered: the m= line names it, and strict parsers
                // (str0m) refuse a dynamic payload type without one.
                let codec = fmt.parse::<u8>().ok().and_then(|pt| m.codec(pt));
                if let Some(c) = codec.filter(|c| !c.name.is_empty() && c.clock_rate_hz > 0) {
                    let channels = c.channels.map(|n| format!("/{n}")).unwrap_or_default();
                    line(
                        &mut out,
                        format_args!(
                            "a=rtpmap:{} {}/{}{channels}",
                            c.payload_type,
                            clean(&c.name),
                            c.clock_rate_hz
                        ),
                    );
                }
            }
        }
    }
    out
}

fn write_accepted(
    out: &mut String,
    role: Role,
    a: &AcceptedSection,
    p: &AnswerParams<'_>,
    first_bundled: bool,
) {
    let ip = p.candidate.ip();
    let port = p.candidate.port();
    let ip_type = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let pt = a.payload_type;
    line(
        out,
        format_args!(
            "m={} {port} {} {pt}",
            clean(a.kind.as_str()),
            clean(&a.protocol)
        ),
    );
    line(out, format_args!("c=IN {ip_type} {ip}"));
    line(out, format_args!("a=mid:{}", clean(&a.mid)));
    line(out, format_args!("a=ice-ufrag:{}", clean(p.ice_ufrag)));
    line(out, format_args!("a=ice-pwd:{}", clean(p.ice_pwd)));
    line(out, format_args!("a=fingerprint:{}", clean(p.fingerprint)));
    // RFC 8842 §5.3: the answerer picks a role; we are always the DTLS server.
    line(out, format_args!("a=setup:passive"));
    let direction = match role {
        Role::Send => "sendonly",
        Role::Receive => "recvonly",
    };
    line(out, format_args!("a={direction}"));
    line(out, format_args!("a=rtcp-mux"));
    if a.rtcp_rsize {
        line(out, format_args!("a=rtcp-rsize"));
    }
    match &a.codec {
        ChosenCodec::H264 {
            profile_level_id,
            parameter_sets,
        } => {
            line(out, format_args!("a=rtpmap:{pt} H264/90000"));
            // RFC 6184 §8.2.2: level-asymmetry-allowed must be in both offer and answer for
            // the levels to differ; profile-level-id states the stream's profile and level.
            let mut fmtp = format!(
                "a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile_level_id}"
            );
            let sets: Vec<String> = parameter_sets
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| BASE64.encode(s))
                .collect();
            if p.sprop_parameter_sets && !sets.is_empty() {
                let _ = write!(fmtp, ";sprop-parameter-sets={}", sets.join(","));
            }
            line(out, format_args!("{fmtp}"));
        }
        ChosenCodec::Opus => {
            line(out, format_args!("a=rtpmap:{pt} opus/48000/2"));
            line(out, format_args!("a=fmtp:{pt} minptime=10;useinbandfec=1"));
        }
    }
    for fb in &a.rtcp_fb {
        line(out, format_args!("a=rtcp-fb:{pt} {}", clean(fb)));
    }
    if role == Role::Send {
        if let Some(ssrc) = a.track.and_then(|t| p.send_ssrcs.get(t)) {
            let stream = clean(p.stream_id);
            let track = format!("{stream}-{}", clean(a.kind.as_str()));
            // RFC 8830 §2 (msid) and RFC 5576 §4.1 (ssrc): the browser maps our SSRC to a track.
            line(out, format_args!("a=msid:{stream} {track}"));
            line(out, format_args!("a=ssrc:{ssrc} cname:{}", clean(p.cname)));
            line(out, format_args!("a=ssrc:{ssrc} msid:{stream} {track}"));
        }
    }
    if first_bundled {
        // RFC 8839 §5.1 candidate grammar; priority 2130706431 = (126 << 24) | (65535 << 8) | 255,
        // the host type preference of RFC 8445 §5.1.2.2 for component 1.
        line(
            out,
            format_args!("a=candidate:1 1 udp 2130706431 {ip} {port} typ host"),
        );
        line(out, format_args!("a=end-of-candidates"));
    }
}

/// Appends one line plus CRLF.
fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
    out.push_str("\r\n");
}

/// Drops control characters (CR/LF would inject lines) from a value echoed or given.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}
