//! Parsing an SDP offer (RFC 8866 §5 syntax) into the typed [`Offer`] that negotiation reads,
//! with the WebRTC attributes JSEP (RFC 8829 §5.8) relies on: ICE credentials (RFC 8839
//! §5.4), `fingerprint` (RFC 8122 §5, kept raw for `webrtc::dtls`), `setup` (RFC 8842 §3),
//! `group:BUNDLE` (RFC 9143 §7), and per media section `mid` (RFC 5888 §4), direction
//! (RFC 3264 §5.1), `rtcp-mux` (RFC 5761 §5.1.3), `rtcp-rsize` (RFC 5506 §5), codecs from
//! `rtpmap`/`fmtp`/`rtcp-fb` (RFC 8866 §6.6, §6.15; RFC 4585 §4.2), `extmap` (RFC 8285 §8),
//! `ssrc` (RFC 5576 §4.1) and `msid` (RFC 8830 §2).
//!
//! Bounded: an offer over [`MAX_OFFER_BYTES`], with more than [`MAX_MEDIA_SECTIONS`] media
//! sections or more than [`MAX_PAYLOAD_TYPES`] formats in one is refused before anything is
//! stored, so what the parser keeps is at most a few times the input's size. Lines may end in
//! CRLF (RFC 8866 §5) or a bare LF (§5 asks parsers to accept it). Attributes the server has no
//! use for (candidates, `ice-options`, `msid-semantic`, …) are skipped.

use thiserror::Error;

/// The largest offer accepted, in bytes (Chromium's offers are 5–9 KiB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// The most media sections (`m=` lines) accepted in one offer.
pub const MAX_MEDIA_SECTIONS: usize = 16;
/// The most formats (payload types) accepted on one `m=` line (Chromium offers about 35).
pub const MAX_PAYLOAD_TYPES: usize = 128;

/// Why an offer could not be parsed; `Display` is a sentence for an HTTP 400 body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OfferError {
    /// The offer is longer than [`MAX_OFFER_BYTES`].
    #[error("the SDP offer is {bytes} bytes long; the limit is {MAX_OFFER_BYTES}")]
    TooLarge {
        /// Its length.
        bytes: usize,
    },
    /// The offer is not UTF-8 text (RFC 8866 §5: SDP is UTF-8).
    #[error("the SDP offer is not UTF-8 text")]
    NotText,
    /// The first line is not `v=0` (RFC 8866 §5.1).
    #[error("the SDP offer does not start with v=0")]
    NoVersion,
    /// More than [`MAX_MEDIA_SECTIONS`] `m=` lines.
    #[error("the SDP offer has more than {MAX_MEDIA_SECTIONS} media sections")]
    TooManyMediaSections,
    /// More than [`MAX_PAYLOAD_TYPES`] formats on one `m=` line.
    #[error(
        "media section {section} of the SDP offer lists {count} payload types; the limit is {MAX_PAYLOAD_TYPES}"
    )]
    TooManyPayloadTypes {
        /// Index of the media section (0-based).
        section: usize,
        /// How many formats it listed.
        count: usize,
    },
    /// A line that does not follow the grammar of its type.
    #[error("line {line} of the SDP offer is malformed: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What a media section carries (the `<media>` of RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    /// `audio`.
    Audio,
    /// `video`.
    Video,
    /// `application` (data channels).
    Application,
    /// Any other media type (`text`, `message`, …), answered as rejected.
    Other(String),
}

impl MediaKind {
    /// The SDP token.
    pub fn as_str(&self) -> &str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Application => "application",
            MediaKind::Other(s) => s,
        }
    }
}

/// The direction attribute of a media section (RFC 3264 §5.1; default `sendrecv`), from the
/// offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`.
    SendRecv,
    /// `a=sendonly`: the offerer sends.
    SendOnly,
    /// `a=recvonly`: the offerer receives.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The SDP attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The DTLS role attribute (RFC 8842 §3, from RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `active`: the offerer starts the handshake.
    Active,
    /// `passive`: the offerer waits for one.
    Passive,
    /// `actpass`: either (what an offer must say, RFC 8842 §5.2).
    ActPass,
    /// `holdconn`.
    HoldConn,
}

/// One RTP format of a media section: its `rtpmap`, `fmtp` and `rtcp-fb` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedCodec {
    /// The payload type (0–127).
    pub payload_type: u8,
    /// Encoding name as written (`H264`, `opus`, `rtx`); empty without an `rtpmap` (static types).
    pub name: String,
    /// RTP clock rate in Hz (0 without an `rtpmap`).
    pub clock_rate_hz: u32,
    /// Encoding parameters of the `rtpmap` (audio channels), if given.
    pub channels: Option<u8>,
    /// The `fmtp` parameter string, unparsed (`level-asymmetry-allowed=1;packetization-mode=1;…`).
    pub fmtp: Option<String>,
    /// `rtcp-fb` values for this type, and for `*` (RFC 4585 §4.2): `nack`, `nack pli`, `ccm fir`, …
    pub rtcp_fb: Vec<String>,
}

impl OfferedCodec {
    /// The value of one `fmtp` parameter (`key=value` pairs split by `;`, RFC 8866 §6.15),
    /// key matched case-insensitively.
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref()?.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
        })
    }

    /// True when the encoding name is `name` (RFC 8866 §6.6: names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// For an `rtx` format (RFC 4588 §8.6), the payload type it repairs (`apt=`).
    pub fn rtx_apt(&self) -> Option<u8> {
        if !self.is("rtx") {
            return None;
        }
        self.fmtp_param("apt")?.parse().ok()
    }
}

/// One `a=extmap` (RFC 8285 §8): an RTP header extension id and its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extmap {
    /// The local identifier (1–14 one-byte, up to 255 two-byte).
    pub id: u8,
    /// The extension URI.
    pub uri: String,
}

/// One `a=ssrc:<ssrc> <attribute>[:<value>]` line (RFC 5576 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttr {
    /// The SSRC.
    pub ssrc: u32,
    /// The attribute name (`cname`, `msid`, …).
    pub attribute: String,
    /// Its value, if any.
    pub value: Option<String>,
}

/// One media section (`m=` line and the lines up to the next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// The media type.
    pub kind: MediaKind,
    /// The port; 0 means the offerer rejected or disabled the section (RFC 8866 §5.14).
    pub port: u16,
    /// The transport protocol (`UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`).
    pub protocol: String,
    /// The `<fmt>` list as written (payload types for RTP, `webrtc-datachannel` for SCTP).
    pub formats: Vec<String>,
    /// `a=mid` (RFC 5888 §4).
    pub mid: Option<String>,
    /// Direction (RFC 3264 §5.1); `sendrecv` when absent.
    pub direction: Direction,
    /// `a=rtcp-mux` present (RFC 5761 §5.1.3).
    pub rtcp_mux: bool,
    /// `a=rtcp-rsize` present (RFC 5506 §5).
    pub rtcp_rsize: bool,
    /// Media-level `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// Media-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Media-level `a=fingerprint` (raw value, `sha-256 AB:CD:…`).
    pub fingerprint: Option<String>,
    /// Media-level `a=setup`.
    pub setup: Option<Setup>,
    /// The RTP formats in `m=` line order (the offerer's preference, RFC 3264 §5.1).
    pub codecs: Vec<OfferedCodec>,
    /// Header extensions offered.
    pub extmaps: Vec<Extmap>,
    /// `a=ssrc` lines.
    pub ssrcs: Vec<SsrcAttr>,
    /// `a=msid` value (`<stream id> <track id>`).
    pub msid: Option<String>,
}

impl MediaSection {
    fn new(kind: MediaKind, port: u16, protocol: String, formats: Vec<String>) -> MediaSection {
        MediaSection {
            kind,
            port,
            protocol,
            formats,
            mid: None,
            direction: Direction::SendRecv,
            rtcp_mux: false,
            rtcp_rsize: false,
            ice_ufrag: None,
            ice_pwd: None,
            fingerprint: None,
            setup: None,
            codecs: Vec::new(),
            extmaps: Vec::new(),
            ssrcs: Vec::new(),
            msid: None,
        }
    }

    /// The codec with payload type `pt`.
    pub fn codec(&self, pt: u8) -> Option<&OfferedCodec> {
        self.codecs.iter().find(|c| c.payload_type == pt)
    }

    fn codec_mut(&mut self, pt: u8) -> Option<&mut OfferedCodec> {
        self.codecs.iter_mut().find(|c| c.payload_type == pt)
    }

    /// True for an RTP profile (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, …), whose formats are payload types.
    pub fn is_rtp(&self) -> bool {
        self.protocol.split('/').any(|p| p == "RTP")
    }
}

/// A parsed offer: session-level attributes and the media sections in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offer {
    /// Session-level `a=ice-ufrag` (RFC 8839 §5.4: media-level overrides it).
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Session-level `a=fingerprint` (Firefox writes it here).
    pub fingerprint: Option<String>,
    /// Session-level `a=setup`.
    pub setup: Option<Setup>,
    /// The mids of the first `a=group:BUNDLE` (RFC 9143 §7), empty if none.
    pub bundle: Vec<String>,
    /// Media sections in offer order.
    pub media: Vec<MediaSection>,
}

impl Offer {
    /// The ICE ufrag that applies to `section`: its own, else the session's (RFC 8839 §5.4).
    pub fn ice_ufrag_for<'a>(&'a self, section: &'a MediaSection) -> Option<&'a str> {
        section.ice_ufrag.as_deref().or(self.ice_ufrag.as_deref())
    }

    /// The ICE password that applies to `section`.
    pub fn ice_pwd_for<'a>(&'a self, section: &'a MediaSection) -> Option<&'a str> {
        section.ice_pwd.as_deref().or(self.ice_pwd.as_deref())
    }

    /// The fingerprint that applies to `section` (RFC 8122 §5: media-level overrides).
    pub fn fingerprint_for<'a>(&'a self, section: &'a MediaSection) -> Option<&'a str> {
        section
            .fingerprint
            .as_deref()
            .or(self.fingerprint.as_deref())
    }

    /// The setup role that applies to `section`.
    pub fn setup_for(&self, section: &MediaSection) -> Option<Setup> {
        section.setup.or(self.setup)
    }
}

/// Parses an offer. See the module doc for what is kept and the bounds.
pub fn parse_offer(bytes: &[u8]) -> Result<Offer, OfferError> {
    if bytes.len() > MAX_OFFER_BYTES {
        return Err(OfferError::TooLarge { bytes: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| OfferError::NotText)?;
    let mut offer = Offer::default();
    let mut saw_version = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let bad = |reason| OfferError::Malformed {
            line: line_no,
            reason,
        };
        // RFC 8866 §5: `<type>=<value>`, type one letter, no space around `=`.
        let (kind, value) = match line.as_bytes() {
            [t, b'=', ..] if t.is_ascii_alphabetic() => (*t, &line[2..]),
            _ => return Err(bad("not <letter>=<value>")),
        };
        if !saw_version {
            if kind != b'v' || value != "0" {
                return Err(OfferError::NoVersion);
            }
            saw_version = true;
            continue;
        }
        match kind {
            b'm' => {
                if offer.media.len() >= MAX_MEDIA_SECTIONS {
                    return Err(OfferError::TooManyMediaSections);
                }
                let section = parse_media_line(value, offer.media.len()).map_err(|e| match e {
                    MediaLineError::Malformed(reason) => bad(reason),
                    MediaLineError::Too(e) => e,
                })?;
                offer.media.push(section);
            }
            b'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                match offer.media.last_mut() {
                    Some(m) => media_attribute(m, name, val).map_err(bad)?,
                    None => session_attribute(&mut offer, name, val).map_err(bad)?,
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return Err(OfferError::NoVersion);
    }
    Ok(offer)
}

enum MediaLineError {
    Malformed(&'static str),
    Too(OfferError),
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` (RFC 8866 §5.14).
fn parse_media_line(value: &str, index: usize) -> Result<MediaSection, MediaLineError> {
    let mut parts = value.split(' ').filter(|p| !p.is_empty());
    let (Some(media), Some(port), Some(proto)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(MediaLineError::Malformed(
            "m= needs <media> <port> <proto> <fmt>",
        ));
    };
    let port = port.split('/').next().unwrap_or(port);
    let port: u16 = port
        .parse()
        .map_err(|_| MediaLineError::Malformed("the m= port is not a number 0-65535"))?;
    let formats: Vec<&str> = parts.take(MAX_PAYLOAD_TYPES + 1).collect();
    if formats.len() > MAX_PAYLOAD_TYPES {
        let count = value.split(' ').filter(|p| !p.is_empty()).count() - 3;
        return Err(MediaLineError::Too(OfferError::TooManyPayloadTypes {
            section: index,
            count,
        }));
    }
    if formats.is_empty() {
        return Err(MediaLineError::Malformed("m= lists no formats"));
    }
    let kind = match media {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        "application" => MediaKind::Application,
        other => MediaKind::Other(other.to_owned()),
    };
    let mut section = MediaSection::new(
        kind,
        port,
        proto.to_owned(),
        formats.iter().map(|f| (*f).to_owned()).collect(),
    );
    if section.is_rtp() {
        for f in &formats {
            let pt = parse_pt(f).map_err(|_| {
                MediaLineError::Malformed("an RTP format is not a payload type 0-127")
            })?;
            if section.codec(pt).is_none() {
                section.codecs.push(OfferedCodec {
                    payload_type: pt,
                    name: String::new(),
                    clock_rate_hz: 0,
                    channels: None,
                    fmtp: None,
                    rtcp_fb: Vec::new(),
                });
            }
        }
    }
    Ok(section)
}

fn parse_pt(s: &str) -> Result<u8, &'static str> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err("not a payload type 0-127"),
    }
}

fn non_empty(val: Option<&str>, what: &'static str) -> Result<String, &'static str> {
    match val.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(what),
    }
}

fn parse_setup(val: Option<&str>) -> Result<Setup, &'static str> {
    match val.map(str::trim) {
        Some("active") => Ok(Setup::Active),
        Some("passive") => Ok(Setup::Passive),
        Some("actpass") => Ok(Setup::ActPass),
        Some("holdconn") => Ok(Setup::HoldConn),
        _ => Err("a=setup is not active, passive, actpass or holdconn"),
    }
}

fn session_attribute(offer: &mut Offer, name: &str, val: Option<&str>) -> Result<(), &'static str> {
    match name {
        "ice-ufrag" => offer.ice_ufrag = Some(non_empty(val, "a=ice-ufrag is empty")?),
        "ice-pwd" => offer.ice_pwd = Some(non_empty(val, "a=ice-pwd is empty")?),
        "fingerprint" => offer.fingerprint = Some(non_empty(val, "a=fingerprint is empty")?),
        "setup" => offer.setup = Some(parse_setup(val)?),
        "group" => {
            let v = val.ok_or("a=group has no semantics")?;
            let mut tokens = v.split(' ').filter(|t| !t.is_empty());
            // RFC 9143 §7: the first BUNDLE group is the one negotiated here.
            if tokens.next() == Some("BUNDLE") && offer.bundle.is_empty() {
                offer.bundle = tokens
                    .take(MAX_MEDIA_SECTIONS + 1)
                    .map(str::to_owned)
                    .collect();
            }
        }
        _ => {}
    }
    Ok(())
}

fn media_attribute(
    m: &mut MediaSection,
    name: &str,
    val: Option<&str>,
) -> Result<(), &'static str> {
    match name {
        "mid" => m.mid = Some(non_empty(val, "a=mid is empty")?),
        "sendrecv" => m.direction = Direction::SendRecv,
        "sendonly" => m.direction = Direction::SendOnly,
        "recvonly" => m.direction = Direction::RecvOnly,
        "inactive" => m.direction = Direction::Inactive,
        "rtcp-mux" => m.rtcp_mux = true,
        "rtcp-rsize" => m.rtcp_rsize = true,
        "ice-ufrag" => m.ice_ufrag = Some(non_empty(val, "a=ice-ufrag is empty")?),
        "ice-pwd" => m.ice_pwd = Some(non_empty(val, "a=ice-pwd is empty")?),
        "fingerprint" => m.fingerprint = Some(non_empty(val, "a=fingerprint is empty")?),
        "setup" => m.setup = Some(parse_setup(val)?),
        "msid" => m.msid = Some(non_empty(val, "a=msid is empty")?),
        "rtpmap" => rtpmap(m, val.ok_or("a=rtpmap has no value")?)?,
        "fmtp" => {
            let v = val.ok_or("a=fmtp has no value")?;
            let (pt, params) = v.split_once(' ').ok_or("a=fmtp needs <pt> <params>")?;
            let pt = parse_pt(pt)?;
            // A format not on the m= line is ignored (RFC 8866 §6.15 ties fmtp to a listed format).
            if let Some(c) = m.codec_mut(pt) {
                c.fmtp = Some(params.trim().to_owned());
            }
        }
        "rtcp-fb" => {
            let v = val.ok_or("a=rtcp-fb has no value")?;
            let (pt, fb) = v.split_once(' ').ok_or("a=rtcp-fb needs <pt> <type>")?;
            let fb = fb.trim();
            if fb.is_empty() {
                return Err("a=rtcp-fb needs <pt> <type>");
            }
            if pt == "*" {
                // RFC 4585 §4.2: `*` applies to every payload type of the section.
                for c in &mut m.codecs {
                    push_fb(c, fb);
                }
            } else if let Some(c) = m.codec_mut(parse_pt(pt)?) {
                push_fb(c, fb);
            }
        }
        "extmap" => {
            let v = val.ok_or("a=extmap has no value")?;
            let mut it = v.split(' ').filter(|t| !t.is_empty());
            let id = it.next().ok_or("a=extmap needs <id> <uri>")?;
            let id = id.split('/').next().unwrap_or(id);
            let id: u8 = id
                .parse()
                .map_err(|_| "a=extmap id is not a number 1-255")?;
            let uri = it.next().ok_or("a=extmap needs <id> <uri>")?;
            m.extmaps.push(Extmap {
                id,
                uri: uri.to_owned(),
            });
        }
        "ssrc" => {
            let v = val.ok_or("a=ssrc has no value")?;
            let (ssrc, attr) = v.split_once(' ').ok_or("a=ssrc needs <ssrc> <attribute>")?;
            let ssrc: u32 = ssrc.parse().map_err(|_| "a=ssrc is not a 32-bit number")?;
            let (attribute, value) = match attr.split_once(':') {
                Some((a, v)) => (a, Some(v.to_owned())),
                None => (attr, None),
            };
            m.ssrcs.push(SsrcAttr {
                ssrc,
                attribute: attribute.trim().to_owned(),
                value,
            });
        }
        _ => {}
    }
    Ok(())
}

fn push_fb(c: &mut OfferedCodec, fb: &str) {
    if !c.rtcp_fb.iter().any(|f| f == fb) {
        c.rtcp_fb.push(fb.to_owned());
    }
}

/// `a=rtpmap:<pt> <encoding name>/<clock rate>[/<encoding parameters>]` (RFC 8866 §6.6).
fn rtpmap(m: &mut MediaSection, v: &str) -> Result<(), &'static str> {
    let (pt, enc) = v
        .split_once(' ')
        .ok_or("a=rtpmap needs <pt> <name>/<rate>")?;
    let pt = parse_pt(pt)?;
    let mut parts = enc.trim().split('/');
    let name = parts.next().unwrap_or_default();
    let rate = parts.next().ok_or("a=rtpmap needs <name>/<rate>")?;
    if name.is_empty() {
        return Err("a=rtpmap has an empty encoding name");
    }
    let clock_rate_hz: u32 = rate
        .parse()
        .map_err(|_| "a=rtpmap clock rate is not a number")?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().map_err(|_| "a=rtpmap channels is not a number")?),
        None => None,
    };
    if let Some(c) = m.codec_mut(pt) {
        c.name = name.to_owned();
        c.clock_rate_hz = clock_rate_hz;
        c.channels = channels;
    }
    Ok(())
}
