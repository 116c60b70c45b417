//! Offer/answer negotiation (RFC 3264 §6, JSEP RFC 8829 §5.3.1) for the two roles the server
//! plays: a WHEP viewer's offer (`recvonly`, we send what a stream has) and a WHIP
//! publisher's offer (`sendonly`, we receive H.264 and Opus).
//!
//! Choices: video is H.264 with `packetization-mode=1` (RFC 6184 §6.3: non-interleaved mode,
//! FU-A and STAP-A, what the packetizer writes) whose profile matches the stream's, and whose
//! level is at least the stream's unless the offer says `level-asymmetry-allowed=1` (RFC 6184
//! §8.1, §8.2.2); audio is Opus `opus/48000/2` (RFC 7587 §7). The offerer's order is its
//! preference (RFC 3264 §5.1), so the first suitable payload type wins. RTCP feedback kept is
//! what the server answers: `nack`, `nack pli` (RFC 4585 §4.2), `ccm fir` (RFC 5104 §7.1);
//! `transport-cc`, `goog-remb`, every header extension and `rtx` (RFC 4588) are left out of
//! the answer. Transport: BUNDLE (RFC 9143) and `rtcp-mux` (RFC 5761) are required, since the
//! session lives on one port; the offer must carry ICE credentials and a DTLS fingerprint, and
//! must let us be the DTLS server (`setup:actpass` or `active`, RFC 8842 §5).
//!
//! Errors are sentences for the HTTP 4xx body; a stream whose audio cannot be sent is sent
//! without it, with a [`NegotiationWarning`].

use std::fmt::Write as _;

use thiserror::Error;

use super::h264::{H264Profile, ProfileLevelId};
use super::offer::{Direction, MediaKind, MediaSection, Offer, OfferedCodec, Setup};
use crate::media::track::H264Config;

/// RTCP feedback the server implements and so keeps from an offer.
const KEPT_RTCP_FB: [&str; 3] = ["nack", "nack pli", "ccm fir"];

/// What a stream can send to a viewer: one entry per track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTrack {
    /// H.264 video.
    H264 {
        /// The stream's `profile-level-id` (from its SPS).
        profile_level_id: ProfileLevelId,
        /// SPS and PPS NAL units, for `sprop-parameter-sets` (may be empty).
        parameter_sets: Vec<Vec<u8>>,
    },
    /// Opus audio, 48 kHz stereo (RFC 7587 §7).
    Opus,
}

impl SendTrack {
    /// The video track of an H.264 configuration: `profile-level-id` from the SPS bytes 1–3
    /// (else the `avcC` fields), as the RTSP SDP writer computes it
    /// ([`crate::wire::sdp::profile_level_id`]).
    pub fn h264(config: &H264Config) -> SendTrack {
        let profile_level_id = ProfileLevelId::parse(&crate::wire::sdp::profile_level_id(config))
            .unwrap_or(ProfileLevelId {
                profile_idc: config.profile_idc,
                profile_iop: config.profile_compat,
                level_idc: config.level_idc,
            });
        SendTrack::H264 {
            profile_level_id,
            parameter_sets: config.sps.iter().chain(&config.pps).cloned().collect(),
        }
    }

    fn kind(&self) -> MediaKind {
        match self {
            SendTrack::H264 { .. } => MediaKind::Video,
            SendTrack::Opus => MediaKind::Audio,
        }
    }
}

/// Which side sends media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// WHEP: we send, the answer says `sendonly`.
    Send,
    /// WHIP: we receive, the answer says `recvonly`.
    Receive,
}

/// The codec chosen for an accepted section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChosenCodec {
    /// H.264, `packetization-mode=1`.
    H264 {
        /// The `profile-level-id` the answer states: the stream's when we send, the offer's
        /// when we receive.
        profile_level_id: ProfileLevelId,
        /// SPS and PPS for `sprop-parameter-sets` (empty when we receive).
        parameter_sets: Vec<Vec<u8>>,
    },
    /// Opus 48000/2.
    Opus,
}

/// One accepted media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedSection {
    /// The offer's mid (answers reuse it, RFC 8829 §5.3.1).
    pub mid: String,
    /// `audio` or `video`.
    pub kind: MediaKind,
    /// The offer's transport protocol, echoed in the answer's `m=` line.
    pub protocol: String,
    /// The payload type chosen (the offer's number for it).
    pub payload_type: u8,
    /// The codec.
    pub codec: ChosenCodec,
    /// RTCP feedback kept (`nack`, `nack pli`, `ccm fir`), in offer order.
    pub rtcp_fb: Vec<String>,
    /// The offer had `a=rtcp-rsize` (RFC 5506), so the answer repeats it.
    pub rtcp_rsize: bool,
    /// WHEP: the index of the [`SendTrack`] this section carries.
    pub track: Option<usize>,
    /// WHIP: the SSRCs the publisher announced (`a=ssrc`, RFC 5576), primary and `rtx` alike.
    pub remote_ssrcs: Vec<u32>,
}

/// The answer's decision for one offered media section, in offer order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionChoice {
    /// Answered with port 0 (RFC 3264 §6).
    Rejected,
    /// Answered with a codec.
    Accepted(AcceptedSection),
}

/// What negotiation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Whether we send (WHEP) or receive (WHIP).
    pub role: Role,
    /// The offerer's ICE ufrag (RFC 8839 §5.4), for checking its STUN requests.
    pub remote_ice_ufrag: String,
    /// The offerer's ICE password.
    pub remote_ice_pwd: String,
    /// The offerer's `a=fingerprint` value (`sha-256 AB:…`), for `webrtc::dtls`.
    pub remote_fingerprint: String,
    /// One choice per offered section, same order and count.
    pub sections: Vec<SectionChoice>,
    /// Things the user should know that did not stop the session.
    pub warnings: Vec<NegotiationWarning>,
}

impl Negotiated {
    /// The accepted sections, in order.
    pub fn accepted(&self) -> impl Iterator<Item = &AcceptedSection> {
        self.sections.iter().filter_map(|s| match s {
            SectionChoice::Accepted(a) => Some(a),
            SectionChoice::Rejected => None,
        })
    }
}

/// A track left out of the session; the session still works.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiationWarning {
    /// The stream has audio, but the offer has no audio section we can send in.
    #[error(
        "the offer has no audio section that can receive, so the stream is sent without sound"
    )]
    NoAudioSection,
    /// The stream has Opus audio, but the audio section offers no Opus.
    #[error(
        "the offer's audio has no Opus (it offers {offered}), so the stream is sent without sound"
    )]
    NoOpus {
        /// The audio codecs offered.
        offered: String,
    },
    /// A publisher's audio section has no Opus; its audio is not received.
    #[error("the offer's audio has no Opus (it offers {offered}); only its video is received")]
    PublisherNoOpus {
        /// The audio codecs offered.
        offered: String,
    },
}

/// Why an offer cannot be answered; `Display` is a sentence for the HTTP 4xx body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiationError {
    /// The stream has no track WebRTC can carry.
    #[error("the stream has no H.264 video or Opus audio to send over WebRTC")]
    NothingToSend,
    /// The stream has video and the offer has no video section that can receive it.
    #[error("the offer has no video section that can receive (add a recvonly video transceiver)")]
    NoVideoSection,
    /// The stream is audio only and the offer has no audio section that can receive it.
    #[error("the offer has no audio section that can receive (add a recvonly audio transceiver)")]
    NoAudioSection,
    /// No offered H.264 format fits the stream.
    #[error(
        "the offer has no H.264 format this stream can be sent in: the stream is H.264 {ours} \
         ({profile}) and needs packetization-mode=1 with the same profile and a level of at least \
         its own (or level-asymmetry-allowed=1); the offer has {offered_h264} (all its video codecs: {offered_codecs})"
    )]
    NoCompatibleH264 {
        /// The stream's `profile-level-id`.
        ours: ProfileLevelId,
        /// The stream's profile name.
        profile: &'static str,
        /// The H.264 formats offered (`42e01f packetization-mode=1, …` or `no H.264`).
        offered_h264: String,
        /// Every video codec name offered.
        offered_codecs: String,
    },
    /// An audio-only stream and no Opus in the offer.
    #[error("the offer's audio has no Opus (it offers {offered}); the stream's audio is Opus")]
    NoOpus {
        /// The audio codecs offered.
        offered: String,
    },
    /// WHIP: the publisher's video has no H.264 in packetization mode 1.
    #[error(
        "the offer's video has no H.264 with packetization-mode=1 (it offers {offered}); publish H.264"
    )]
    PublisherNoH264 {
        /// The video codecs offered.
        offered: String,
    },
    /// WHIP: no section that sends audio or video.
    #[error(
        "the offer has no audio or video section that sends (use sendonly transceivers to publish)"
    )]
    NothingToReceive,
    /// An accepted section has no `a=mid` (RFC 8829 §5.2.1 requires one in every section).
    #[error("media section {section} of the offer has no a=mid")]
    NoMid {
        /// Index of the section.
        section: usize,
    },
    /// The offer does not bundle the sections we accept (RFC 9143).
    #[error(
        "the offer does not put media section {mid} in an a=group:BUNDLE; this server needs BUNDLE"
    )]
    NoBundle {
        /// The section's mid.
        mid: String,
    },
    /// An accepted section lacks `a=rtcp-mux` (RFC 5761).
    #[error("media section {mid} of the offer has no a=rtcp-mux; this server needs RTP and RTCP on one port")]
    NoRtcpMux {
        /// The section's mid.
        mid: String,
    },
    /// No `a=ice-ufrag`/`a=ice-pwd` (RFC 8839 §5.4).
    #[error("the offer has no ICE credentials (a=ice-ufrag and a=ice-pwd)")]
    NoIceCredentials,
    /// No `a=fingerprint` (RFC 8122 §5).
    #[error("the offer has no a=fingerprint for DTLS")]
    NoFingerprint,
    /// The offer wants to be the DTLS server (`setup:passive`) or holds the connection; we are
    /// always passive (RFC 8842 §5.2: an offer says `actpass`).
    #[error("the offer's a=setup must be actpass or active; this server is always the DTLS server (passive)")]
    SetupConflict,
}

/// A name for a profile in messages.
fn profile_name(p: Option<H264Profile>) -> &'static str {
    match p {
        Some(H264Profile::ConstrainedBaseline) => "Constrained Baseline",
        Some(H264Profile::Baseline) => "Baseline",
        Some(H264Profile::Main) => "Main",
        Some(H264Profile::Extended) => "Extended",
        Some(H264Profile::High) => "High",
        Some(H264Profile::ConstrainedHigh) => "Constrained High",
        Some(H264Profile::High10) => "High 10",
        Some(H264Profile::High422) => "High 4:2:2",
        Some(H264Profile::High444) => "High 4:4:4 Predictive",
        None => "unknown profile",
    }
}

/// The offer's `profile-level-id` of an H.264 format (RFC 6184 §8.1 default when absent).
fn offered_plid(c: &OfferedCodec) -> Option<ProfileLevelId> {
    match c.fmtp_param("profile-level-id") {
        Some(v) => ProfileLevelId::parse(v),
        None => Some(ProfileLevelId::DEFAULT),
    }
}

/// An H.264 format in packetization mode 1 (RFC 6184 §8.1: absent means mode 0).
fn is_h264_mode1(c: &OfferedCodec) -> bool {
    c.is("H264") && c.clock_rate_hz == 90_000 && c.fmtp_param("packetization-mode") == Some("1")
}

/// Opus as RFC 7587 §7 requires it in SDP: `opus/48000/2`.
fn is_opus(c: &OfferedCodec) -> bool {
    c.is("opus") && c.clock_rate_hz == 48_000 && c.channels == Some(2)
}

/// Can a receiver that offered `c` decode a stream of `ours`? RFC 6184 §8.2.2: same profile
/// (by meaning, so Constrained Baseline matches across `42e0`/`42c0`/`4240`/`4d80`), and our
/// level no higher than theirs unless they allow level asymmetry.
fn h264_fits(c: &OfferedCodec, ours: ProfileLevelId) -> bool {
    let Some(theirs) = offered_plid(c) else {
        return false;
    };
    let same_profile = ours.profile().is_some() && ours.profile() == theirs.profile();
    let asymmetry = c.fmtp_param("level-asymmetry-allowed") == Some("1");
    is_h264_mode1(c) && same_profile && (asymmetry || ours.level_rank() <= theirs.level_rank())
}

/// The RTCP feedback of `c` the server implements.
fn kept_fb(c: &OfferedCodec) -> Vec<String> {
    c.rtcp_fb
        .iter()
        .filter(|f| KEPT_RTCP_FB.contains(&f.as_str()))
        .cloned()
        .collect()
}

/// Distinct codec names of a section, `rtx` and FEC left out (`VP8, VP9, H264, AV1`).
fn codec_names(m: &MediaSection) -> String {
    let mut names: Vec<&str> = Vec::new();
    for c in &m.codecs {
        let name = if c.name.is_empty() { "?" } else { &c.name };
        let skip = [
            "rtx",
            "red",
            "ulpfec",
            "flexfec-03",
            "CN",
            "telephone-event",
        ]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s));
        if !skip && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

/// The H.264 formats of a section (`42e01f packetization-mode=1, 42001f packetization-mode=0`).
fn h264_list(m: &MediaSection) -> String {
    let mut out = String::new();
    for c in m.codecs.iter().filter(|c| c.is("H264")) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let plid = c.fmtp_param("profile-level-id").unwrap_or("(none: 42000a)");
        let mode = c.fmtp_param("packetization-mode").unwrap_or("0");
        let _ = write!(out, "{plid} packetization-mode={mode}");
    }
    if out.is_empty() {
        out.push_str("no H.264");
    }
    out
}

/// Unique SSRCs of a section's `a=ssrc` lines, in order.
fn ssrcs_of(m: &MediaSection) -> Vec<u32> {
    let mut v: Vec<u32> = Vec::new();
    for s in &m.ssrcs {
        if !v.contains(&s.ssrc) {
            v.push(s.ssrc);
        }
    }
    v
}

/// A section that can be answered at all: RTP, not rejected by the offerer.
fn usable(m: &MediaSection) -> bool {
    m.port != 0 && m.is_rtp()
}

/// Negotiates a WHEP viewer's offer: `tracks` are what the stream has; each goes in the
/// first free section of its kind that can receive, and a track of a kind already placed
/// that finds no further section is left out.
pub fn negotiate(offer: &Offer, tracks: &[SendTrack]) -> Result<Negotiated, NegotiationError> {
    if tracks.is_empty() {
        return Err(NegotiationError::NothingToSend);
    }
    let mut sections = vec![SectionChoice::Rejected; offer.media.len()];
    let mut warnings = Vec::new();
    let mut audio_error = None;
    for (t, track) in tracks.iter().enumerate() {
        let kind = track.kind();
        let slot = offer.media.iter().enumerate().find(|(i, m)| {
            m.kind == kind
                && usable(m)
                && matches!(m.direction, Direction::RecvOnly | Direction::SendRecv)
                && matches!(sections.get(*i), Some(SectionChoice::Rejected))
        });
        let Some((i, m)) = slot else {
            let placed_same_kind = sections
                .iter()
                .any(|s| matches!(s, SectionChoice::Accepted(a) if a.kind == kind));
            match track {
                // A second video track with no second video section is not sent.
                SendTrack::H264 { .. } if placed_same_kind => continue,
                SendTrack::H264 { .. } => return Err(NegotiationError::NoVideoSection),
                SendTrack::Opus if placed_same_kind => continue,
                SendTrack::Opus => {
                    audio_error = Some(NegotiationError::NoAudioSection);
                    warnings.push(NegotiationWarning::NoAudioSection);
                    continue;
                }
            }
        };
        let chosen = match track {
            SendTrack::H264 {
                profile_level_id,
                parameter_sets,
            } => {
                let Some(c) = m.codecs.iter().find(|c| h264_fits(c, *profile_level_id)) else {
                    return Err(NegotiationError::NoCompatibleH264 {
                        ours: *profile_level_id,
                        profile: profile_name(profile_level_id.profile()),
                        offered_h264: h264_list(m),
                        offered_codecs: codec_names(m),
                    });
                };
                let codec = ChosenCodec::H264 {
                    profile_level_id: *profile_level_id,
                    parameter_sets: parameter_sets.clone(),
                };
                (c, codec)
            }
            SendTrack::Opus => {
                let Some(c) = m.codecs.iter().find(|c| is_opus(c)) else {
                    let offered = codec_names(m);
                    audio_error = Some(NegotiationError::NoOpus {
                        offered: offered.clone(),
                    });
                    warnings.push(NegotiationWarning::NoOpus { offered });
                    continue;
                };
                (c, ChosenCodec::Opus)
            }
        };
        let (c, codec) = chosen;
        let accepted = accept(i, m, c, codec, Some(t), Vec::new())?;
        if let Some(s) = sections.get_mut(i) {
            *s = SectionChoice::Accepted(accepted);
        }
    }
    if !sections
        .iter()
        .any(|s| matches!(s, SectionChoice::Accepted(_)))
    {
        // Only an audio track, and it could not be placed: that is an error, not a warning.
        return Err(audio_error.unwrap_or(NegotiationError::NothingToSend));
    }
    finish(offer, Role::Send, sections, warnings)
}

/// Negotiates a WHIP publisher's offer: the first sending video section with H.264 in
/// packetization mode 1 (any profile we recognise; the offerer's first such format) and the
/// first sending audio section with Opus are accepted; everything else is rejected.
pub fn negotiate_publish(offer: &Offer) -> Result<Negotiated, NegotiationError> {
    let mut sections = vec![SectionChoice::Rejected; offer.media.len()];
    let mut warnings = Vec::new();
    let (mut have_video, mut have_audio) = (false, false);
    for (i, m) in offer.media.iter().enumerate() {
        if !usable(m) || !matches!(m.direction, Direction::SendOnly | Direction::SendRecv) {
            continue;
        }
        let (c, codec) = match m.kind {
            MediaKind::Video if !have_video => {
                let found = m.codecs.iter().find(|c| {
                    is_h264_mode1(c) && offered_plid(c).and_then(|p| p.profile()).is_some()
                });
                let Some(c) = found else {
                    return Err(NegotiationError::PublisherNoH264 {
                        offered: codec_names(m),
                    });
                };
                let Some(profile_level_id) = offered_plid(c) else {
                    continue;
                };
                have_video = true;
                let codec = ChosenCodec::H264 {
                    profile_level_id,
                    parameter_sets: Vec::new(),
                };
                (c, codec)
            }
            MediaKind::Audio if !have_audio => {
                let Some(c) = m.codecs.iter().find(|c| is_opus(c)) else {
                    warnings.push(NegotiationWarning::PublisherNoOpus {
                        offered: codec_names(m),
                    });
                    continue;
                };
                have_audio = true;
                (c, ChosenCodec::Opus)
            }
            _ => continue,
        };
        let accepted = accept(i, m, c, codec, None, ssrcs_of(m))?;
        if let Some(s) = sections.get_mut(i) {
            *s = SectionChoice::Accepted(accepted);
        }
    }
    if !have_video && !have_audio {
        return Err(NegotiationError::NothingToReceive);
    }
    finish(offer, Role::Receive, sections, warnings)
}

/// An accepted section, with the per-section transport checks (mid, rtcp-mux).
fn accept(
    index: usize,
    m: &MediaSection,
    c: &OfferedCodec,
    codec: ChosenCodec,
    track: Option<usize>,
    remote_ssrcs: Vec<u32>,
) -> Result<AcceptedSection, NegotiationError> {
    let mid = m
        .mid
        .clone()
        .ok_or(NegotiationError::NoMid { section: index })?;
    if !m.rtcp_mux {
        return Err(NegotiationError::NoRtcpMux { mid });
    }
    Ok(AcceptedSection {
        mid,
        kind: m.kind.clone(),
        protocol: m.protocol.clone(),
        payload_type: c.payload_type,
        codec,
        rtcp_fb: kept_fb(c),
        rtcp_rsize: m.rtcp_rsize,
        track,
        remote_ssrcs,
    })
}

/// Session-wide checks over the accepted sections: BUNDLE, ICE credentials, fingerprint,
/// DTLS role. Credentials are those of the first accepted section (with BUNDLE they are the
/// tagged section's, RFC 9143 §7.1).
fn finish(
    offer: &Offer,
    role: Role,
    sections: Vec<SectionChoice>,
    warnings: Vec<NegotiationWarning>,
) -> Result<Negotiated, NegotiationError> {
    let mut first: Option<&MediaSection> = None;
    for (i, s) in sections.iter().enumerate() {
        let (SectionChoice::Accepted(a), Some(m)) = (s, offer.media.get(i)) else {
            continue;
        };
        if !offer.bundle.contains(&a.mid) {
            return Err(NegotiationError::NoBundle { mid: a.mid.clone() });
        }
        first.get_or_insert(m);
    }
    let Some(first) = first else {
        return Err(NegotiationError::NothingToSend);
    };
    let (Some(ufrag), Some(pwd)) = (offer.ice_ufrag_for(first), offer.ice_pwd_for(first)) else {
        return Err(NegotiationError::NoIceCredentials);
    };
    let fingerprint = offer
        .fingerprint_for(first)
        .ok_or(NegotiationError::NoFingerprint)?;
    if matches!(
        offer.setup_for(first),
        Some(Setup::Passive | Setup::HoldConn)
    ) {
        return Err(NegotiationError::SetupConflict);
    }
    Ok(Negotiated {
        role,
        remote_ice_ufrag: ufrag.to_owned(),
        remote_ice_pwd: pwd.to_owned(),
        remote_fingerprint: fingerprint.to_owned(),
        sections,
        warnings,
    })
}
