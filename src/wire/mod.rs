//! Wire formats: RTP fixed header (RFC 3550 §5.1), RTCP compound packets (RFC 3550 §6),
//! NTP timestamps (RFC 3550 §4) and SDP session descriptions (RFC 8866, with the H.264
//! parameters of RFC 6184 §8.1-8.2 and the AAC parameters of RFC 3640 §4.1).

pub mod ntp;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
