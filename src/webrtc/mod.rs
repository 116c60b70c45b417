//! WebRTC for viewers (WHEP) and publishers (WHIP), sans-IO.
//!
//! The shards carry WebRTC media the way they carry RTP: one UDP port per shard, every
//! packet of a session handled on the thread that owns it. This module holds the protocol
//! cores they drive; none of it does I/O. Design: `docs/design/webrtc.md`.
//!
//! One port carries four protocols; RFC 7983 §7 tells them apart by the first byte:
//! STUN 0–3, DTLS 20–63, RTP/RTCP 128–191 (see [`Demux::classify`]).
//!
//! - [`stun`]: STUN messages (RFC 8489), parsed in place; Binding responses written in place.
//! - [`ice`]: the ICE-lite agent of one session (RFC 8445 §2.5), consent (RFC 7675).
//! - [`srtp`]: SRTP/SRTCP protect and unprotect (RFC 3711, RFC 7714), keyed by DTLS-SRTP.
//! - [`peer`]: one session's transport: ICE-lite, then DTLS from the nominated address, then
//!   SRTP/SRTCP keyed by it.
//! - [`sdp`]: offer parsing, negotiation (H.264 by profile, Opus, BUNDLE), answer writing.
//! - [`cert`]: the process's self-signed DTLS certificate and SDP fingerprints (RFC 8122).
//! - [`dtls`]: the per-session DTLS 1.2 server that keys SRTP (RFC 5764).

pub mod cert;
pub mod dtls;
pub mod ice;
pub mod peer;
pub mod sdp;
pub mod srtp;
pub mod stun;

/// What a datagram on a WebRTC port is, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    /// STUN (RFC 8489): ICE connectivity and consent checks.
    Stun,
    /// DTLS (RFC 6347): the handshake that keys SRTP.
    Dtls,
    /// SRTP or SRTCP (RFC 3711); RFC 5761 §4 tells RTP from RTCP by payload type.
    Rtp,
    /// Anything else (TURN channels, ZRTP, garbage): dropped.
    Other,
}

impl Demux {
    /// Classifies a datagram by its first byte (RFC 7983 §7); an empty one is `Other`.
    pub fn classify(datagram: &[u8]) -> Demux {
        match datagram.first() {
            Some(0..=3) => Demux::Stun,
            Some(20..=63) => Demux::Dtls,
            Some(128..=191) => Demux::Rtp,
            _ => Demux::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Demux;

    #[test]
    fn first_byte_ranges_follow_rfc_7983() {
        assert_eq!(Demux::classify(&[0x00, 0x01]), Demux::Stun);
        assert_eq!(Demux::classify(&[3]), Demux::Stun);
        assert_eq!(Demux::classify(&[4]), Demux::Other);
        assert_eq!(Demux::classify(&[22, 0xfe, 0xfd]), Demux::Dtls);
        assert_eq!(Demux::classify(&[63]), Demux::Dtls);
        assert_eq!(Demux::classify(&[64]), Demux::Other);
        assert_eq!(Demux::classify(&[0x80, 96]), Demux::Rtp);
        assert_eq!(Demux::classify(&[191]), Demux::Rtp);
        assert_eq!(Demux::classify(&[192]), Demux::Other);
        assert_eq!(Demux::classify(&[]), Demux::Other);
    }
}
