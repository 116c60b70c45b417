//! SDP session descriptions for RTSP DESCRIBE (RFC 8866 §5: v=, o=, s=, c=, t=, a=, m= lines),
//! with the H.264 media type parameters of RFC 6184 §8.1 (packetization-mode,
//! profile-level-id, sprop-parameter-sets) mapped to SDP per §8.2.1, and the mpeg4-generic
//! AAC-hbr parameters of RFC 3640 §4.1 (streamtype, mode, sizelength/indexlength, config),
//! H.265 per RFC 7798 §7.1/§7.2 (`H265/90000`, profile/tier/level, `sprop-vps`, `sprop-sps`,
//! `sprop-pps`), and Opus per RFC 7587 §7 (`opus/48000/2`, `sprop-stereo`, §6.1).
//! RTSP aggregate control (`a=control`) and `a=range` follow RFC 2326 §C.1.
//!
//! ```text
//! v=0
//! o=- <sess-id> <sess-version> IN IP4 <addr>
//! s=<name>
//! c=IN IP4 0.0.0.0
//! t=0 0
//! a=tool:shardcast
//! a=control:*
//! a=range:npt=0-10.000
//! m=video 0 RTP/AVP 96
//! a=rtpmap:96 H264/90000
//! a=fmtp:96 packetization-mode=1;profile-level-id=...;sprop-parameter-sets=...
//! a=framerate:25
//! a=control:trackID=0
//! ```

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::media::track::{AacConfig, Codec, H264Config, H265Config, OpusConfig};

/// One media section of a session description.
#[derive(Debug, Clone)]
pub struct SdpTrack<'a> {
    /// The track's codec configuration.
    pub codec: &'a Codec,
    /// Dynamic RTP payload type (96-127).
    pub payload_type: u8,
    /// The `a=control` URL of the track, relative to the session (e.g. `trackID=0`).
    pub control: String,
    /// Frame rate announced as `a=framerate` (video only).
    pub frame_rate: Option<f64>,
    /// The multicast group the track is also sent to, and its TTL: the section then names
    /// the group's RTP port in `m=` and the group in its own `c=` line (RFC 8866 §5.7:
    /// `c=IN IP4 239.1.2.3/ttl`; an IPv6 group has no TTL there).
    pub multicast: Option<(std::net::SocketAddr, u8)>,
}

/// A whole session description.
#[derive(Debug, Clone)]
pub struct SdpSession<'a> {
    /// Session id and version of the `o=` line.
    pub session_id: u64,
    /// Origin address of the `o=` line (selects IP4/IP6 for `o=` and `c=`).
    pub origin_addr: IpAddr,
    /// Session name (`s=`).
    pub name: &'a str,
    /// Presentation length; `None` for live (`a=range:npt=now-`).
    pub duration_secs: Option<f64>,
    /// Media sections, in order.
    pub tracks: Vec<SdpTrack<'a>>,
}

/// Renders the session description with CRLF line endings.
pub fn write_sdp(s: &SdpSession) -> String {
    let mut out = String::with_capacity(512);
    let (addr_type, any) = match s.origin_addr {
        IpAddr::V4(_) => ("IP4", "0.0.0.0"),
        IpAddr::V6(_) => ("IP6", "::"),
    };
    let name = sanitize(s.name);
    let name = if name.trim().is_empty() { "-" } else { &name };
    line(&mut out, format_args!("v=0"));
    line(
        &mut out,
        format_args!(
            "o=- {0} {0} IN {addr_type} {1}",
            s.session_id, s.origin_addr
        ),
    );
    line(&mut out, format_args!("s={name}"));
    line(&mut out, format_args!("c=IN {addr_type} {any}"));
    line(&mut out, format_args!("t=0 0"));
    line(&mut out, format_args!("a=tool:shardcast"));
    line(&mut out, format_args!("a=control:*"));
    match s.duration_secs {
        Some(d) => {
            let d = if d.is_finite() && d > 0.0 { d } else { 0.0 };
            line(&mut out, format_args!("a=range:npt=0-{d:.3}"));
        }
        None => line(&mut out, format_args!("a=range:npt=now-")),
    }
    for t in &s.tracks {
        let pt = t.payload_type & 0x7f;
        let section = out.len();
        match t.codec {
            Codec::H264(h) => write_h264(&mut out, pt, h, t.frame_rate),
            Codec::H265(h) => write_h265(&mut out, pt, h, t.frame_rate),
            Codec::Aac(a) => write_aac(&mut out, pt, a),
            Codec::Opus(o) => write_opus(&mut out, pt, o),
            Codec::Mp2t(_) => write_mp2t(&mut out),
            Codec::Vp8(_) => write_vpx(&mut out, pt, "VP8"),
            Codec::Vp9(_) => write_vpx(&mut out, pt, "VP9"),
            Codec::MpegAudio(_) => write_mpa(&mut out),
            Codec::G711(g) => write_g711(&mut out, pt, g),
        }
        if let Some((group, ttl)) = t.multicast {
            announce_group(&mut out, section, group, ttl);
        }
        line(&mut out, format_args!("a=control:{}", sanitize(&t.control)));
    }
    out
}

/// Rewrites the media section starting at `section` for a multicast group: the `m=` line's
/// port becomes the group's RTP port and a `c=` line follows it (RFC 8866 §5.7, §5.14:
/// `c=` comes after `m=`, before the attributes).
fn announce_group(out: &mut String, section: usize, group: std::net::SocketAddr, ttl: u8) {
    let Some(m_end) = out[section..].find("\r\n").map(|i| section + i) else {
        return;
    };
    let m_line = &out[section..m_end];
    // "m=<media> 0 <proto> <fmt>": the port is the second field.
    let mut fields = m_line.splitn(3, ' ');
    let (Some(media), Some(_port), Some(rest)) = (fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let connection = match group.ip() {
        IpAddr::V4(ip) => format!("c=IN IP4 {ip}/{ttl}"),
        IpAddr::V6(ip) => format!("c=IN IP6 {ip}"),
    };
    let rewritten = format!("{media} {} {rest}\r\n{connection}", group.port());
    out.replace_range(section..m_end, &rewritten);
}

/// RFC 2250 §2 / RFC 3551 §6: MPEG-2 transport stream, static payload type 33, 90 kHz
/// (the `rtpmap` is optional for a static type; players expect it).
fn write_mp2t(out: &mut String) {
    line(out, format_args!("m=video 0 RTP/AVP {MP2T_PAYLOAD_TYPE}"));
    line(out, format_args!("a=rtpmap:{MP2T_PAYLOAD_TYPE} MP2T/90000"));
}

/// RFC 2250 §3.5 / RFC 3551 §4.5.13: MPEG audio, static payload type 14, 90 kHz. The
/// `rtpmap` (optional for a static type) carries no channel count: RFC 3551 Table 4 gives
/// none for MPA, the frames describe themselves.
fn write_mpa(out: &mut String) {
    line(out, format_args!("m=audio 0 RTP/AVP {MPA_PAYLOAD_TYPE}"));
    line(out, format_args!("a=rtpmap:{MPA_PAYLOAD_TYPE} MPA/90000"));
}

/// RFC 3551 §4.5.14 / §6: G.711 `PCMU` / `PCMA`. 8000 Hz mono uses the static payload type
/// (0 or 8, [`payload_type_for`]) with its `rtpmap` (optional, players expect it); any other
/// rate or channel count a dynamic type whose `rtpmap` names both (`PCMU/16000/2`; the
/// channel count is left out for one channel, RFC 8866 §6.6).
fn write_g711(out: &mut String, pt: u8, g: &crate::media::track::G711Config) {
    let name = g.encoding_name();
    let rate = g.sample_rate_hz;
    line(out, format_args!("m=audio 0 RTP/AVP {pt}"));
    if g.channels > 1 {
        line(
            out,
            format_args!("a=rtpmap:{pt} {name}/{rate}/{}", g.channels),
        );
    } else {
        line(out, format_args!("a=rtpmap:{pt} {name}/{rate}"));
    }
}

/// The static RTP payload type of G.711 µ-law at 8000 Hz mono (RFC 3551 §6, Table 4: `PCMU`).
pub const PCMU_PAYLOAD_TYPE: u8 = 0;

/// The static RTP payload type of G.711 A-law at 8000 Hz mono (RFC 3551 §6, Table 4: `PCMA`).
pub const PCMA_PAYLOAD_TYPE: u8 = 8;

/// The static RTP payload type of MPEG audio (RFC 3551 §6, Table 4: `MPA`).
pub const MPA_PAYLOAD_TYPE: u8 = 14;

/// The static RTP payload type of MPEG-2 transport streams (RFC 3551 §6, Table 5: `MP2T`).
pub const MP2T_PAYLOAD_TYPE: u8 = 33;

/// The RTP payload type of the track at `index` with `codec`: the static 33 for MPEG-TS
/// (RFC 3551 §6), 14 for MPEG audio, 0 / 8 for 8000 Hz mono G.711, else the dynamic [`FIRST_PAYLOAD_TYPE`]` + index`.
pub fn payload_type_for(codec: &Codec, index: usize) -> u8 {
    match codec {
        Codec::Mp2t(_) => MP2T_PAYLOAD_TYPE,
        Codec::MpegAudio(_) => MPA_PAYLOAD_TYPE,
        Codec::G711(g) if g.sample_rate_hz == 8000 && g.channels == 1 => match g.law {
            crate::media::track::G711Law::Mu => PCMU_PAYLOAD_TYPE,
            crate::media::track::G711Law::A => PCMA_PAYLOAD_TYPE,
        },
        _ => FIRST_PAYLOAD_TYPE + index as u8,
    }
}

/// Appends one line plus CRLF.
fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
    out.push_str("\r\n");
}

/// Replaces control characters (CR/LF would inject SDP lines) with spaces.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The RFC 6184 §8.1 `profile-level-id`: SPS bytes 1..4 (profile_idc, constraint flags,
/// level_idc) when an SPS is present, else the avcC fields, as 6 hex digits.
pub fn profile_level_id(h: &H264Config) -> String {
    match h.sps.first().and_then(|sps| sps.get(1..4)) {
        Some(b) => hex(b),
        None => hex(&[h.profile_idc, h.profile_compat, h.level_idc]),
    }
}

/// Uppercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Formats a frame rate with at most 3 decimals, trailing zeros trimmed (25 -> "25").
fn format_rate(fps: f64) -> String {
    let s = format!("{fps:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The H.264 media section (RFC 6184 §8.2.1).
fn write_h264(out: &mut String, pt: u8, h: &H264Config, frame_rate: Option<f64>) {
    line(out, format_args!("m=video 0 RTP/AVP {pt}"));
    line(out, format_args!("a=rtpmap:{pt} H264/90000"));
    let mut fmtp = format!(
        "a=fmtp:{pt} packetization-mode=1;profile-level-id={}",
        profile_level_id(h)
    );
    // §8.1: sprop-parameter-sets is a comma-separated list of base64 SPS and PPS NAL units.
    let sets: Vec<String> = h
        .sps
        .iter()
        .chain(h.pps.iter())
        .filter(|p| !p.is_empty())
        .map(|p| BASE64.encode(p))
        .collect();
    if !sets.is_empty() {
        fmtp.push_str(";sprop-parameter-sets=");
        fmtp.push_str(&sets.join(","));
    }
    line(out, format_args!("{fmtp}"));
    if let Some(fps) = frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
        line(out, format_args!("a=framerate:{}", format_rate(fps)));
    }
}

/// The H.265 media section (RFC 7798 §7.2.1): `H265/90000`, the general profile, tier and
/// level (§7.1 `profile-space`, `profile-id`, `tier-flag`, `level-id`), and each parameter
/// set kind base64-encoded in `sprop-vps`, `sprop-sps` and `sprop-pps` (§7.1, comma-separated
/// when there are several) so a player can start without the in-band sets.
fn write_h265(out: &mut String, pt: u8, h: &H265Config, frame_rate: Option<f64>) {
    line(out, format_args!("m=video 0 RTP/AVP {pt}"));
    line(out, format_args!("a=rtpmap:{pt} H265/90000"));
    let mut fmtp = format!(
        "a=fmtp:{pt} profile-space={};profile-id={};tier-flag={};level-id={}",
        h.profile_space,
        h.profile_idc,
        u8::from(h.tier_flag),
        h.level_idc
    );
    for (name, sets) in [
        ("sprop-vps", &h.vps),
        ("sprop-sps", &h.sps),
        ("sprop-pps", &h.pps),
    ] {
        let encoded: Vec<String> = sets
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| BASE64.encode(p))
            .collect();
        if !encoded.is_empty() {
            let _ = write!(fmtp, ";{name}={}", encoded.join(","));
        }
    }
    line(out, format_args!("{fmtp}"));
    if let Some(fps) = frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
        line(out, format_args!("a=framerate:{}", format_rate(fps)));
    }
}

/// The AAC media section (RFC 3640 §4.1, mode=AAC-hbr as in §3.3.6). For AAC-LC (object
/// type 2) it also states `constantDuration=1024`: packets aggregate several AUs, and a
/// receiver needs the duration to time the later ones; GStreamer's depayloader otherwise
/// guesses it from the next packet and leaves the first packet's later AUs untimed.
fn write_aac(out: &mut String, pt: u8, a: &AacConfig) {
    line(out, format_args!("m=audio 0 RTP/AVP {pt}"));
    line(
        out,
        format_args!(
            "a=rtpmap:{pt} mpeg4-generic/{}/{}",
            a.sample_rate_hz, a.channels
        ),
    );
    // An AAC-LC frame is 1024 samples of the core sampling rate, the RTP clock here.
    let duration = if a.object_type == 2 {
        ";constantDuration=1024"
    } else {
        ""
    };
    line(
        out,
        format_args!(
            "a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
             indexlength=3;indexdeltalength=3{duration};config={}",
            hex(&a.audio_specific_config)
        ),
    );
}

/// The Opus media section (RFC 7587 §7/§6.1): the rtpmap is always `opus/48000/2` whatever
/// the channel count ("the media subtype ... MUST be 48000 ... and the number of channels
/// MUST be 2"); `sprop-stereo=1` says a stereo track is sent, `stereo=1` that we would take
/// stereo too (§6.1); `useinbandfec=1` and `minptime=10` as WebRTC peers announce them.
/// RFC 7741 §6.1 (`VP8/90000`) and RFC 9628 §6 (`VP9/90000`): no format parameters are
/// needed (VP9's optional `profile-id` is left to the frames' own headers).
fn write_vpx(out: &mut String, pt: u8, name: &str) {
    line(out, format_args!("m=video 0 RTP/AVP {pt}"));
    line(out, format_args!("a=rtpmap:{pt} {name}/90000"));
}

fn write_opus(out: &mut String, pt: u8, o: &OpusConfig) {
    line(out, format_args!("m=audio 0 RTP/AVP {pt}"));
    line(out, format_args!("a=rtpmap:{pt} opus/48000/2"));
    let stereo = if o.channels >= 2 {
        ";stereo=1;sprop-stereo=1"
    } else {
        ""
    };
    line(
        out,
        format_args!("a=fmtp:{pt} minptime=10;useinbandfec=1{stereo}"),
    );
}

/// The SDP a DESCRIBE of `media` answers (RFC 2326 §C.1): one media section per track,
/// payload type `96 + n`, control `trackID=n` (relative to `Content-Base`). A DESCRIBE that
/// carried a play token gets `trackID=n?token=…` so the SETUPs built from it carry the token
/// too. Live channels announce `a=range:npt=now-` (§C.1.5). `session_id` is the `o=` line's
/// id (random per answer, RFC 8866 §5.2).
pub fn describe_media(
    media: &crate::media::MediaFile,
    origin: std::net::SocketAddr,
    live: bool,
    token: Option<&str>,
    session_id: u64,
    multicast: Option<(std::net::SocketAddr, u8)>,
) -> String {
    let suffix = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let tracks = media
        .index
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| SdpTrack {
            codec: &t.codec,
            payload_type: payload_type_for(&t.codec, i),
            control: format!("trackID={i}{suffix}"),
            frame_rate: t.frame_rate(),
            multicast: multicast.and_then(|(base, ttl)| {
                let port = u16::try_from(usize::from(base.port()) + 2 * i).ok()?;
                Some((std::net::SocketAddr::new(base.ip(), port), ttl))
            }),
        })
        .collect();
    write_sdp(&SdpSession {
        session_id,
        origin_addr: origin.ip(),
        name: &media.name,
        duration_secs: (!live).then(|| media.duration().as_secs_f64()),
        tracks,
    })
}

/// `sdp` with its media sections made SRTP (RFC 3711 §12: profile `RTP/SAVP`) and keyed with
/// MIKEY (RFC 4567 §3.1: `a=key-mgmt:mikey <base64>` per media section, here the last line
/// of the section), the `k`-th media section with `key_mgmt[k]`. Sections beyond
/// `key_mgmt` are left as they are. Only for RTSPS answers: the keys are readable by whoever
/// reads the SDP.
pub fn with_key_mgmt(sdp: &str, key_mgmt: &[String]) -> String {
    let mut out =
        String::with_capacity(sdp.len() + key_mgmt.iter().map(|k| k.len() + 24).sum::<usize>());
    let mut section: Option<usize> = None;
    let mut next = 0;
    let close = |out: &mut String, section: Option<usize>| {
        if let Some(key) = section.and_then(|k| key_mgmt.get(k)) {
            line(out, format_args!("a=key-mgmt:mikey {key}"));
        }
    };
    for l in sdp.split_terminator("\r\n") {
        if let Some(m) = l.strip_prefix("m=") {
            close(&mut out, section);
            section = Some(next);
            next += 1;
            if next <= key_mgmt.len() {
                line(
                    &mut out,
                    format_args!("m={}", m.replacen(" RTP/AVP ", " RTP/SAVP ", 1)),
                );
                continue;
            }
        }
        line(&mut out, format_args!("{l}"));
    }
    close(&mut out, section);
    out
}

/// First dynamic RTP payload type; track `n` uses `96 + n` (RFC 3551 §6).
pub const FIRST_PAYLOAD_TYPE: u8 = 96;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn h264() -> Codec {
        Codec::H264(H264Config {
            profile_idc: 0x64,
            profile_compat: 0,
            level_idc: 0x1e,
            nal_length_size: 4,
            sps: vec![vec![0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9]],
            pps: vec![vec![0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]],
            width: 640,
            height: 360,
        })
    }

    fn aac() -> Codec {
        Codec::Aac(AacConfig {
            audio_specific_config: vec![0x11, 0x90],
            object_type: 2,
            sample_rate_hz: 48_000,
            channels: 2,
        })
    }

    #[test]
    fn golden_h264_aac() {
        let (v, a) = (h264(), aac());
        let s = SdpSession {
            session_id: 1234,
            origin_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            name: "sample.mp4",
            duration_secs: Some(10.0),
            tracks: vec![
                SdpTrack {
                    codec: &v,
                    payload_type: 96,
                    control: "trackID=0".into(),
                    frame_rate: Some(25.0),
                    multicast: None,
                },
                SdpTrack {
                    codec: &a,
                    payload_type: 97,
                    control: "trackID=1".into(),
                    frame_rate: None,
                    multicast: None,
                },
            ],
        };
        let expected = "v=0\r\n\
            o=- 1234 1234 IN IP4 192.0.2.10\r\n\
            s=sample.mp4\r\n\
            c=IN IP4 0.0.0.0\r\n\
            t=0 0\r\n\
            a=tool:shardcast\r\n\
            a=control:*\r\n\
            a=range:npt=0-10.000\r\n\
            m=video 0 RTP/AVP 96\r\n\
            a=rtpmap:96 H264/90000\r\n\
            a=fmtp:96 packetization-mode=1;profile-level-id=64001E;sprop-parameter-sets=Z2QAHqzZ,aOvjyyLA\r\n\
            a=framerate:25\r\n\
            a=control:trackID=0\r\n\
            m=audio 0 RTP/AVP 97\r\n\
            a=rtpmap:97 mpeg4-generic/48000/2\r\n\
            a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;constantDuration=1024;config=1190\r\n\
            a=control:trackID=1\r\n";
        assert_eq!(write_sdp(&s), expected);
    }

    /// RFC 7798 §7.2.1: `H265/90000`, the profile/tier/level of `hvcC`, and each parameter
    /// set kind in its own base64 `sprop-*` list (two PPS comma-separated); none when `hev1`
    /// keeps them in band.
    #[test]
    fn h265_section() {
        let mut cfg = H265Config {
            profile_space: 0,
            tier_flag: true,
            profile_idc: 2,
            profile_compat: 0x2000_0000,
            constraint_flags: [0x90, 0, 0, 0, 0, 0],
            level_idc: 120,
            nal_length_size: 4,
            vps: vec![vec![0x40, 0x01, 0x0c]],
            sps: vec![vec![0x42, 0x01, 0x01]],
            pps: vec![vec![0x44, 0x01, 0xc1], vec![0x44, 0x01, 0xc2]],
            width: 1920,
            height: 1080,
        };
        let sdp_of = |cfg: &H265Config| {
            let v = Codec::H265(cfg.clone());
            write_sdp(&SdpSession {
                session_id: 1,
                origin_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                name: "hevc",
                duration_secs: Some(3.0),
                tracks: vec![SdpTrack {
                    codec: &v,
                    payload_type: 96,
                    control: "trackID=0".into(),
                    frame_rate: Some(25.0),
                    multicast: None,
                }],
            })
        };
        assert!(sdp_of(&cfg).contains(
            "m=video 0 RTP/AVP 96\r\n\
             a=rtpmap:96 H265/90000\r\n\
             a=fmtp:96 profile-space=0;profile-id=2;tier-flag=1;level-id=120;\
             sprop-vps=QAEM;sprop-sps=QgEB;sprop-pps=RAHB,RAHC\r\n\
             a=framerate:25\r\n\
             a=control:trackID=0\r\n"
        ));
        cfg.vps.clear();
        cfg.sps.clear();
        cfg.pps.clear();
        let sdp = sdp_of(&cfg);
        assert!(sdp.contains("a=fmtp:96 profile-space=0;profile-id=2;tier-flag=1;level-id=120\r\n"));
        assert!(!sdp.contains("sprop"));
    }

    /// RFC 7587 §7: `opus/48000/2` for mono and stereo alike; §6.1 `sprop-stereo=1` (and
    /// `stereo=1`) only for a stereo track.
    #[test]
    fn opus_sections_mono_and_stereo() {
        let opus = |channels| {
            Codec::Opus(crate::media::track::OpusConfig {
                channels,
                pre_skip: 312,
                input_sample_rate_hz: 44_100,
                output_gain: 0,
                channel_mapping_family: 0,
                channel_mapping_table: Vec::new(),
            })
        };
        let (stereo, mono) = (opus(2), opus(1));
        let s = SdpSession {
            session_id: 7,
            origin_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            name: "o",
            duration_secs: Some(3.0),
            tracks: vec![
                SdpTrack {
                    codec: &stereo,
                    payload_type: 96,
                    control: "trackID=0".into(),
                    frame_rate: None,
                    multicast: None,
                },
                SdpTrack {
                    codec: &mono,
                    payload_type: 97,
                    control: "trackID=1".into(),
                    frame_rate: None,
                    multicast: None,
                },
            ],
        };
        let sdp = write_sdp(&s);
        assert!(sdp.contains(
            "m=audio 0 RTP/AVP 96\r\n\
             a=rtpmap:96 opus/48000/2\r\n\
             a=fmtp:96 minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1\r\n\
             a=control:trackID=0\r\n"
        ));
        assert!(sdp.contains(
            "m=audio 0 RTP/AVP 97\r\n\
             a=rtpmap:97 opus/48000/2\r\n\
             a=fmtp:97 minptime=10;useinbandfec=1\r\n\
             a=control:trackID=1\r\n"
        ));
    }

    /// RFC 3551 §4.5.14 / §6: 8000 Hz mono G.711 on its static type, anything else dynamic
    /// with rate and channels in the rtpmap.
    #[test]
    fn g711_static_and_dynamic() {
        use crate::media::track::{G711Config, G711Law};
        let g = |law, rate, channels| {
            Codec::G711(G711Config {
                law,
                sample_rate_hz: rate,
                channels,
            })
        };
        let cases = [
            (
                g(G711Law::Mu, 8000, 1),
                "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            ),
            (
                g(G711Law::A, 8000, 1),
                "m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
            ),
            (
                g(G711Law::Mu, 16_000, 1),
                "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 PCMU/16000\r\n",
            ),
            (
                g(G711Law::A, 8000, 2),
                "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 PCMA/8000/2\r\n",
            ),
        ];
        for (codec, want) in &cases {
            let pt = payload_type_for(codec, 1);
            let s = SdpSession {
                session_id: 1,
                origin_addr: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                name: "g711",
                duration_secs: Some(3.0),
                tracks: vec![SdpTrack {
                    codec,
                    payload_type: pt,
                    control: "trackID=1".into(),
                    frame_rate: None,
                    multicast: None,
                }],
            };
            let sdp = write_sdp(&s);
            assert!(sdp.contains(want), "{sdp}");
            assert_eq!(codec.clock_rate_hz(), codec_rate(codec));
        }
    }

    fn codec_rate(c: &Codec) -> u32 {
        match c {
            Codec::G711(g) => g.sample_rate_hz,
            _ => 0,
        }
    }

    #[test]
    fn live_ipv6_no_sprop() {
        let mut cfg = match h264() {
            Codec::H264(h) => h,
            Codec::H265(_)
            | Codec::Aac(_)
            | Codec::Opus(_)
            | Codec::Mp2t(_)
            | Codec::Vp8(_)
            | Codec::Vp9(_)
            | Codec::MpegAudio(_)
            | Codec::G711(_) => unreachable!(),
        };
        cfg.sps.clear();
        cfg.pps.clear();
        cfg.profile_compat = 0xc0;
        let v = Codec::H264(cfg);
        let s = SdpSession {
            session_id: 1,
            origin_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            name: "bad\r\nname",
            duration_secs: None,
            tracks: vec![SdpTrack {
                codec: &v,
                payload_type: 96,
                control: "trackID=0".into(),
                frame_rate: Some(30000.0 / 1001.0),
                multicast: None,
            }],
        };
        let sdp = write_sdp(&s);
        assert!(sdp.contains("o=- 1 1 IN IP6 ::1\r\n"));
        assert!(sdp.contains("c=IN IP6 ::\r\n"));
        assert!(sdp.contains("s=bad  name\r\n"));
        assert!(sdp.contains("a=range:npt=now-\r\n"));
        assert!(sdp.contains("a=fmtp:96 packetization-mode=1;profile-level-id=64C01E\r\n"));
        assert!(sdp.contains("a=framerate:29.97\r\n"));
        assert!(!sdp.contains("sprop"));
        // Every line ends in CRLF and there are no bare LFs.
        assert_eq!(sdp.matches('\n').count(), sdp.matches("\r\n").count());
    }

    #[test]
    fn odd_durations_and_names() {
        let s = SdpSession {
            session_id: 0,
            origin_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            name: "",
            duration_secs: Some(f64::NAN),
            tracks: vec![],
        };
        let sdp = write_sdp(&s);
        assert!(sdp.contains("s=-\r\n"));
        assert!(sdp.contains("a=range:npt=0-0.000\r\n"));
        let s = SdpSession {
            duration_secs: Some(9.9996),
            ..s
        };
        assert!(write_sdp(&s).contains("a=range:npt=0-10.000\r\n"));
        assert_eq!(format_rate(23.976), "23.976");
        assert_eq!(format_rate(50.0), "50");
    }

    /// RTSPS: each media section becomes `RTP/SAVP` with its key as the section's last line;
    /// the session part and other attributes are untouched.
    #[test]
    fn key_mgmt_is_added_per_media_section() {
        let sdp = "v=0\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=control:trackID=0\r\nm=audio 0 RTP/AVP 97\r\na=control:trackID=1\r\n";
        let out = with_key_mgmt(sdp, &["AAA".to_owned(), "BBB".to_owned()]);
        assert_eq!(
            out,
            "v=0\r\ns=x\r\nm=video 0 RTP/SAVP 96\r\na=control:trackID=0\r\na=key-mgmt:mikey AAA\r\n\
             m=audio 0 RTP/SAVP 97\r\na=control:trackID=1\r\na=key-mgmt:mikey BBB\r\n"
        );
        // Sections without a key stay plain.
        let one = with_key_mgmt(sdp, &["AAA".to_owned()]);
        assert!(one.contains("m=audio 0 RTP/AVP 97\r\na=control:trackID=1\r\n"));
        assert_eq!(one.matches("key-mgmt").count(), 1);
    }
}
