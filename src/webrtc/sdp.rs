//! SDP offer/answer for WHEP viewers and WHIP publishers: parse a browser's offer
//! ([`offer`]), decide what to send or receive ([`mod@negotiate`]), write the answer
//! ([`answer`]). Signalling runs once per session on the control thread, so these allocate;
//! nothing here is on the per-packet path.
//!
//! What it does not do: trickle ICE (the answer carries its one candidate and
//! `end-of-candidates`), renegotiation, simulcast, `rtx`, data channels (an `application`
//! section is answered as rejected), and any codec but H.264 and Opus.
//!
//! ```
//! use shardcast::webrtc::sdp::{negotiate, parse_offer, write_answer, AnswerParams, SendTrack};
//! # let offer_text = include_str!("../../tests/fixtures/webrtc/chromium-148_whep_offer.sdp");
//! let offer = parse_offer(offer_text.as_bytes())?;
//! let plid = shardcast::webrtc::sdp::ProfileLevelId::parse("42e01f").ok_or("plid")?;
//! let tracks = [SendTrack::H264 { profile_level_id: plid, parameter_sets: vec![] }, SendTrack::Opus];
//! let negotiated = negotiate(&offer, &tracks)?;
//! let answer = write_answer(&offer, &negotiated, &AnswerParams {
//!     ice_ufrag: "srv1", ice_pwd: "0123456789abcdefghijkl", fingerprint: "sha-256 00:11",
//!     candidate: "127.0.0.1:4000".parse()?, session_id: 1, cname: "shardcast",
//!     stream_id: "sample", send_ssrcs: &[0x1111, 0x2222], sprop_parameter_sets: false,
//! });
//! assert!(answer.contains("a=sendonly"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod answer;
pub mod h264;
pub mod negotiate;
pub mod offer;
#[cfg(test)]
mod tests;

pub use answer::{write_answer, AnswerParams};
pub use h264::{H264Profile, ProfileLevelId};
pub use negotiate::{
    negotiate, negotiate_publish, AcceptedSection, ChosenCodec, Negotiated, NegotiationError,
    NegotiationWarning, Role, SectionChoice, SendTrack,
};
pub use offer::{parse_offer, Direction, MediaKind, MediaSection, Offer, OfferError, Setup};

/// Fuzz entry point (`fuzz/fuzz_targets/webrtc_offer.rs`): parses `data` as an offer,
/// negotiates it as a WHEP viewer of H.264 Constrained Baseline + Opus and as a WHIP
/// publisher, and writes the answers. Must never panic.
#[cfg(any(test, fuzzing))]
pub fn fuzz_offer(data: &[u8]) {
    let Ok(offer) = parse_offer(data) else {
        return;
    };
    let tracks = [
        SendTrack::H264 {
            profile_level_id: ProfileLevelId {
                profile_idc: 0x42,
                profile_iop: 0xe0,
                level_idc: 0x1f,
            },
            parameter_sets: vec![vec![0x67, 0x42, 0xe0, 0x1f], vec![0x68, 0xce]],
        },
        SendTrack::Opus,
    ];
    let params = AnswerParams {
        ice_ufrag: "fuzz",
        ice_pwd: "0123456789abcdefghijkl",
        fingerprint: "sha-256 00:11",
        candidate: std::net::SocketAddr::from(([127, 0, 0, 1], 4000)),
        session_id: 1,
        cname: "fuzz",
        stream_id: "fuzz",
        send_ssrcs: &[1, 2],
        sprop_parameter_sets: true,
    };
    if let Ok(n) = negotiate(&offer, &tracks) {
        let _ = write_answer(&offer, &n, &params);
    }
    if let Ok(n) = negotiate_publish(&offer) {
        let _ = write_answer(&offer, &n, &params);
    }
}
