//! SRTP and SRTCP (RFC 3711) for WebRTC sessions keyed by DTLS-SRTP (RFC 5764), with the
//! two protection profiles browsers offer: `AEAD_AES_128_GCM` (RFC 7714, preferred) and
//! `AES_CM_128_HMAC_SHA1_80` (RFC 3711 §5).
//!
//! - [`SrtpKeyingMaterial::split`] cuts the DTLS exporter output into our and the peer's
//!   [`MasterKey`] (RFC 5764 §4.2).
//! - [`SrtpSender`] protects what a shard sends: [`SrtpSender::protect_rtp`] gathers an RTP
//!   header and payload slices (a payload header, slices of a memory mapping) into the
//!   caller's send buffer, encrypting on the way; it allocates nothing and keeps per-SSRC
//!   rollover counters (RFC 3711 §3.3.1) in a fixed table.
//! - [`SrtpReceiver`] unprotects in place what a peer sends, with rollover-counter
//!   estimation (RFC 3711 Appendix A) and replay windows (§3.3.2) per SSRC.
//!
//! Session keys are derived once, at setup (key derivation rate 0, RFC 5764 §4.1.2). This
//! module does not do MKI (RFC 5764 forbids it for DTLS-SRTP), rekeying, the 32-bit tag
//! profiles, AES-256, or encrypted header extensions (RFC 6904); a session that runs out of
//! index space fails with [`SrtpError::IndexExhausted`] and must be keyed again.

mod cm;
mod gcm;
mod kdf;
mod replay;

use std::fmt;

use cm::CmCipher;
use gcm::GcmCipher;
use replay::{ReplayWindow, RtpSeqState};

/// SSRCs one sender or receiver keeps state for; a session carries a video and an audio
/// stream, their retransmission streams and the peer's RTCP-only SSRC, well below this.
pub const MAX_SSRCS: usize = 8;

/// Why a packet could not be protected or unprotected. `Copy`, no allocation: the per-packet
/// path returns it and the caller counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The authentication tag did not verify: wrong key, corrupted or forged packet.
    #[error("srtp authentication tag mismatch")]
    BadTag,
    /// The packet index was accepted before or lies behind the replay window.
    #[error("replayed or too old srtp packet (index {index})")]
    Replay {
        /// The 48-bit SRTP or 31-bit SRTCP index refused.
        index: u64,
    },
    /// The packet is shorter than its header, tag and trailer.
    #[error("srtp packet too short ({len} bytes)")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Not RTP/RTCP version 2, or a header whose CSRCs or extension run past the packet.
    #[error("malformed rtp/rtcp header")]
    BadHeader,
    /// A DTLS-SRTP protection profile id we do not implement.
    #[error("unknown srtp protection profile 0x{0:04x}")]
    UnknownProfile(u16),
    /// The caller's output buffer cannot hold the protected packet.
    #[error("output buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall {
        /// Bytes the protected packet needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// A new SSRC while [`MAX_SSRCS`] are already tracked.
    #[error("more than {MAX_SSRCS} ssrcs in one srtp session")]
    TooManySsrcs,
    /// Keying material or a master key/salt of the wrong length for the profile.
    #[error("srtp keying material is {len} bytes, the profile needs {expected}")]
    KeyLength {
        /// Bytes given.
        len: usize,
        /// Bytes the profile needs.
        expected: usize,
    },
    /// The 48-bit SRTP or 31-bit SRTCP index space is spent: the session needs new keys.
    #[error("srtp index space exhausted; the session must be rekeyed")]
    IndexExhausted,
    /// The packet is beyond what the cipher can process in one message.
    #[error("packet too long for the srtp cipher")]
    TooLong,
}

/// An SRTP protection profile (RFC 5764 §4.1.2 registry) we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714 §14.2): 128-bit key, 96-bit salt, 16-byte tag.
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM` (RFC 7714 §14.2): 256-bit key, 96-bit salt, 16-byte tag. What
    /// dimpl's DTLS server picks whenever the browser offers it (Chromium and Firefox list
    /// it first), so every browser session uses it.
    AeadAes256Gcm,
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 5764 §4.1.2): 128-bit key, 112-bit salt, 10-byte tag.
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    /// The DTLS `use_srtp` protection profile id (RFC 5764 §4.1.2: 0x0001; RFC 7714 §14.2:
    /// 0x0007 and 0x0008).
    pub const fn dtls_id(self) -> u16 {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 0x0001,
            SrtpProfile::AeadAes128Gcm => 0x0007,
            SrtpProfile::AeadAes256Gcm => 0x0008,
        }
    }

    /// The profile of a DTLS `use_srtp` protection profile id.
    pub fn from_dtls_id(id: u16) -> Result<SrtpProfile, SrtpError> {
        match id {
            0x0001 => Ok(SrtpProfile::Aes128CmHmacSha1_80),
            0x0007 => Ok(SrtpProfile::AeadAes128Gcm),
            0x0008 => Ok(SrtpProfile::AeadAes256Gcm),
            other => Err(SrtpError::UnknownProfile(other)),
        }
    }

    /// Master key bytes (16; 32 for AES-256).
    pub const fn master_key_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Master salt bytes (RFC 3711 §8.2: 14; RFC 7714 §12: 12).
    pub const fn master_salt_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 14,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => 12,
        }
    }

    /// Authentication tag bytes on every SRTP and SRTCP packet (10 or 16).
    pub const fn tag_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => cm::TAG_LEN,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => gcm::TAG_LEN,
        }
    }

    /// Bytes SRTP adds to an RTP packet: the tag (no MKI).
    pub const fn rtp_overhead(self) -> usize {
        self.tag_len()
    }

    /// Bytes SRTCP adds to an RTCP packet: the E‖index word and the tag (RFC 3711 §3.4).
    pub const fn rtcp_overhead(self) -> usize {
        4 + self.tag_len()
    }

    /// Bytes to ask the DTLS exporter for ("EXTRACTOR-dtls_srtp", RFC 5764 §4.2):
    /// two keys and two salts.
    pub const fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }
}

/// One direction's SRTP master key and salt, with its profile.
#[derive(Clone)]
pub struct MasterKey {
    profile: SrtpProfile,
    /// The first `profile.master_key_len()` bytes are the key.
    key: [u8; 32],
    /// The first `profile.master_salt_len()` bytes are the salt.
    salt: [u8; 14],
}

impl MasterKey {
    /// A master key from its parts; their lengths must match the profile.
    pub fn new(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> Result<MasterKey, SrtpError> {
        if key.len() != profile.master_key_len() {
            return Err(SrtpError::KeyLength {
                len: key.len(),
                expected: profile.master_key_len(),
            });
        }
        let mut padded_key = [0u8; 32];
        padded_key[..key.len()].copy_from_slice(key);
        if salt.len() != profile.master_salt_len() {
            return Err(SrtpError::KeyLength {
                len: salt.len(),
                expected: profile.master_salt_len(),
            });
        }
        let mut padded = [0u8; 14];
        padded[..salt.len()].copy_from_slice(salt);
        Ok(MasterKey {
            profile,
            key: padded_key,
            salt: padded,
        })
    }

    /// The protection profile this key is for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.master_salt_len()]
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.profile.master_key_len()]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// The DTLS-SRTP keying material layout (RFC 5764 §4.2).
#[derive(Debug)]
pub enum SrtpKeyingMaterial {}

impl SrtpKeyingMaterial {
    /// Splits the exporter output into (local, remote) master keys: the DTLS server sends
    /// with the server's key and salt and receives with the client's.
    pub fn split(
        profile: SrtpProfile,
        exported: &[u8],
        we_are_dtls_server: bool,
    ) -> Result<(MasterKey, MasterKey), SrtpError> {
        //= https://www.rfc-editor.org/rfc/rfc5764#section-4.2
        //# client_write_SRTP_master_key[SRTPSecurityParams.master_key_len];
        //# server_write_SRTP_master_key[SRTPSecurityParams.master_key_len];
        //# client_write_SRTP_master_salt[SRTPSecurityParams.master_salt_len];
        //# server_write_SRTP_master_salt[SRTPSecurityParams.master_salt_len];
        if exported.len() != profile.keying_material_len() {
            return Err(SrtpError::KeyLength {
                len: exported.len(),
                expected: profile.keying_material_len(),
            });
        }
        let (k, s) = (profile.master_key_len(), profile.master_salt_len());
        let client = MasterKey::new(profile, &exported[..k], &exported[2 * k..2 * k + s])?;
        let server = MasterKey::new(profile, &exported[k..2 * k], &exported[2 * k + s..])?;
        Ok(if we_are_dtls_server {
            (server, client)
        } else {
            (client, server)
        })
    }
}

/// Bytes SRTP adds per packet (see [`SrtpSender::overhead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpOverhead {
    /// Added to each RTP packet (the tag).
    pub rtp_bytes: usize,
    /// Added to each RTCP packet (E‖index and the tag).
    pub rtcp_bytes: usize,
}

/// One direction's session ciphers, RTP and RTCP, of one profile.
// The variants differ by ~220 of ~1,700 bytes (expanded AES keys, GHASH and HMAC states);
// boxing one would add a pointer chase per packet to save a little per-session memory.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Ciphers {
    Gcm { rtp: GcmCipher, rtcp: GcmCipher },
    Cm { rtp: CmCipher, rtcp: CmCipher },
}

impl Ciphers {
    fn derive(master: &MasterKey) -> Ciphers {
        match master.profile {
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => Ciphers::Gcm {
                rtp: GcmCipher::derive(master, false),
                rtcp: GcmCipher::derive(master, true),
            },
            SrtpProfile::Aes128CmHmacSha1_80 => Ciphers::Cm {
                rtp: CmCipher::derive(master, false),
                rtcp: CmCipher::derive(master, true),
            },
        }
    }

    fn profile(&self) -> SrtpProfile {
        match self {
            Ciphers::Gcm { rtp, .. } => rtp.profile(),
            Ciphers::Cm { .. } => SrtpProfile::Aes128CmHmacSha1_80,
        }
    }
}

/// The fields of an RTP header SRTP needs (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy)]
struct RtpHeader {
    /// Fixed header, CSRCs and extension: the part sent in clear.
    len: usize,
    seq: u16,
    ssrc: u32,
}

impl RtpHeader {
    /// Parses the header at the start of `packet`; it must fit in `packet`.
    fn parse(packet: &[u8]) -> Result<RtpHeader, SrtpError> {
        //  0                   1                   2                   3
        //  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        // +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        // |V=2|P|X|  CC   |M|     PT      |       sequence number         |
        // |                           timestamp                           |
        // |           synchronization source (SSRC) identifier            |
        // |            contributing source (CSRC) identifiers             |  CC × 4
        // |      defined by profile       |           length              |  if X
        // |                        header extension                       |  length × 4
        let fixed: &[u8; 12] = packet
            .get(..12)
            .and_then(|b| b.try_into().ok())
            .ok_or(SrtpError::TooShort { len: packet.len() })?;
        if fixed[0] >> 6 != 2 {
            return Err(SrtpError::BadHeader);
        }
        let mut len = 12 + 4 * usize::from(fixed[0] & 0x0f);
        if fixed[0] & 0x10 != 0 {
            let words = packet.get(len + 2..len + 4).ok_or(SrtpError::BadHeader)?;
            len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        if len > packet.len() {
            return Err(SrtpError::BadHeader);
        }
        Ok(RtpHeader {
            len,
            seq: u16::from_be_bytes([fixed[2], fixed[3]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        })
    }
}

/// The SSRC of an RTCP packet's sender (bytes 4..8), after checking version 2.
fn rtcp_ssrc(packet: &[u8]) -> Result<u32, SrtpError> {
    let head = packet
        .get(..8)
        .ok_or(SrtpError::TooShort { len: packet.len() })?;
    if head[0] >> 6 != 2 {
        return Err(SrtpError::BadHeader);
    }
    Ok(u32::from_be_bytes([head[4], head[5], head[6], head[7]]))
}

/// A fixed table of per-SSRC state, sized at setup; never grows.
#[derive(Debug, Clone)]
struct SsrcTable<T> {
    slots: [Option<(u32, T)>; MAX_SSRCS],
}

impl<T: Copy> SsrcTable<T> {
    fn new() -> Self {
        SsrcTable {
            slots: [None; MAX_SSRCS],
        }
    }

    fn get(&self, ssrc: u32) -> Option<T> {
        self.slots
            .iter()
            .flatten()
            .find(|(s, _)| *s == ssrc)
            .map(|(_, t)| *t)
    }

    /// Stores `value` for `ssrc`, taking a free slot for a new SSRC.
    fn set(&mut self, ssrc: u32, value: T) -> Result<(), SrtpError> {
        if let Some(slot) = self.slots.iter_mut().flatten().find(|(s, _)| *s == ssrc) {
            slot.1 = value;
            return Ok(());
        }
        let free = self.slots.iter_mut().find(|s| s.is_none());
        *free.ok_or(SrtpError::TooManySsrcs)? = Some((ssrc, value));
        Ok(())
    }

    /// Whether a new SSRC would still fit.
    fn has_room_for(&self, ssrc: u32) -> bool {
        self.slots.iter().any(|s| s.is_none()) || self.get(ssrc).is_some()
    }
}

/// What the sender keeps per SSRC.
#[derive(Debug, Clone, Copy, Default)]
struct TxStream {
    /// RTP rollover state; `None` until the SSRC's first RTP packet.
    rtp: Option<RtpSeqState>,
    /// The SRTCP index of the next RTCP packet (RFC 3711 §3.4: starts at 0).
    next_rtcp_index: u32,
}

/// The sending side of an SRTP session: protects our RTP and RTCP with our master key.
#[derive(Clone)]
pub struct SrtpSender {
    ciphers: Ciphers,
    streams: SsrcTable<TxStream>,
}

impl fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSender")
            .field("profile", &self.ciphers.profile())
            .finish_non_exhaustive()
    }
}

impl SrtpSender {
    /// Derives the session keys (RFC 3711 §4.3) for sending with `master_key`.
    pub fn new(master_key: &MasterKey) -> SrtpSender {
        SrtpSender {
            ciphers: Ciphers::derive(master_key),
            streams: SsrcTable::new(),
        }
    }

    /// The profile in use.
    pub fn profile(&self) -> SrtpProfile {
        self.ciphers.profile()
    }

    /// Bytes protection adds to each RTP and RTCP packet.
    pub fn overhead(&self) -> SrtpOverhead {
        SrtpOverhead {
            rtp_bytes: self.profile().rtp_overhead(),
            rtcp_bytes: self.profile().rtcp_overhead(),
        }
    }

    /// Protects the RTP packet `header` ‖ `payload[0]` ‖ `payload[1]` ‖ … into `out`:
    /// header in clear, payload encrypted, tag appended (RFC 3711 §3.1); returns the SRTP
    /// length. `header` is the RTP header (12 bytes, CSRCs, extension); bytes after the
    /// header length it declares are treated as payload. Allocates nothing.
    pub fn protect_rtp(
        &mut self,
        header: &[u8],
        payload: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let plain_len = header.len() + payload.iter().map(|p| p.len()).sum::<usize>();
        let needed = plain_len + self.profile().rtp_overhead();
        if out.len() < needed {
            return Err(SrtpError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        out[..header.len()].copy_from_slice(header);
        let mut at = header.len();
        for part in payload {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        self.protect_rtp_in_place(out, plain_len)
    }

    /// Protects the RTP packet `buf[..plain_len]` in place, writing the tag after it;
    /// returns the SRTP length. `buf` must have room for [`SrtpProfile::rtp_overhead`] more.
    pub fn protect_rtp_in_place(
        &mut self,
        buf: &mut [u8],
        plain_len: usize,
    ) -> Result<usize, SrtpError> {
        let needed = plain_len.saturating_add(self.profile().rtp_overhead());
        if buf.len() < needed {
            return Err(SrtpError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        let h = RtpHeader::parse(&buf[..plain_len])?;
        let mut stream = self.streams.get(h.ssrc).unwrap_or_default();
        let mut seq_state = stream.rtp.unwrap_or(RtpSeqState::first(h.seq));
        //= https://www.rfc-editor.org/rfc/rfc3711#section-3.3.1
        //# Each time the RTP sequence number, SEQ, wraps modulo 2^16, the sender side
        //# MUST increment ROC by one, modulo 2^32
        let (roc, _index) = seq_state.index_of(h.seq)?;
        seq_state.advance(roc, h.seq);
        stream.rtp = Some(seq_state);
        self.streams.set(h.ssrc, stream)?;
        match &self.ciphers {
            Ciphers::Gcm { rtp, .. } => rtp.seal_rtp(buf, h.len, plain_len, h.ssrc, roc, h.seq),
            Ciphers::Cm { rtp, .. } => Ok(rtp.seal_rtp(buf, h.len, plain_len, h.ssrc, roc, h.seq)),
        }
    }

    /// Protects the (compound) RTCP packet `packet` into `out`: first 8 bytes in clear, the
    /// rest encrypted, E flag set with the SRTCP index, tag (RFC 3711 §3.4; RFC 7714 §9);
    /// returns the SRTCP length. Allocates nothing.
    pub fn protect_rtcp(&mut self, packet: &[u8], out: &mut [u8]) -> Result<usize, SrtpError> {
        let ssrc = rtcp_ssrc(packet)?;
        let needed = packet.len() + self.profile().rtcp_overhead();
        if out.len() < needed {
            return Err(SrtpError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let mut stream = self.streams.get(ssrc).unwrap_or_default();
        let index = stream.next_rtcp_index;
        // RFC 3711 §3.4: a 31-bit index; past it the session must be rekeyed.
        if index > 0x7fff_ffff {
            return Err(SrtpError::IndexExhausted);
        }
        stream.next_rtcp_index = index + 1;
        self.streams.set(ssrc, stream)?;
        out[..packet.len()].copy_from_slice(packet);
        match &self.ciphers {
            Ciphers::Gcm { rtcp, .. } => rtcp.seal_rtcp(out, packet.len(), ssrc, index),
            Ciphers::Cm { rtcp, .. } => Ok(rtcp.seal_rtcp(out, packet.len(), ssrc, index)),
        }
    }

    /// Sets the next SRTCP index of `ssrc` (the RFC 7714 vectors start mid-session).
    #[cfg(test)]
    fn set_next_rtcp_index(&mut self, ssrc: u32, index: u32) {
        let mut stream = self.streams.get(ssrc).unwrap_or_default();
        stream.next_rtcp_index = index;
        let _ = self.streams.set(ssrc, stream);
    }
}

/// What the receiver keeps per RTP SSRC.
#[derive(Debug, Clone, Copy)]
struct RxRtpStream {
    seq: RtpSeqState,
    window: ReplayWindow,
}

/// The receiving side of an SRTP session: unprotects the peer's RTP and RTCP in place.
#[derive(Clone)]
pub struct SrtpReceiver {
    ciphers: Ciphers,
    rtp: SsrcTable<RxRtpStream>,
    rtcp: SsrcTable<ReplayWindow>,
}

impl fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("profile", &self.ciphers.profile())
            .finish_non_exhaustive()
    }
}

impl SrtpReceiver {
    /// Derives the session keys (RFC 3711 §4.3) for receiving with the peer's `master_key`.
    pub fn new(master_key: &MasterKey) -> SrtpReceiver {
        SrtpReceiver {
            ciphers: Ciphers::derive(master_key),
            rtp: SsrcTable::new(),
            rtcp: SsrcTable::new(),
        }
    }

    /// The profile in use.
    pub fn profile(&self) -> SrtpProfile {
        self.ciphers.profile()
    }

    /// Verifies and decrypts the SRTP packet `buf` (exactly the datagram) in place; returns
    /// the RTP packet's length (`buf[..len]`). A packet is accepted only if its tag
    /// verifies and its index is new to the SSRC's replay window; only then do the
    /// rollover counter and the window move (RFC 3711 §3.3).
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile().rtp_overhead();
        let authenticated = buf
            .len()
            .checked_sub(tag_len)
            .filter(|&n| n >= 12)
            .ok_or(SrtpError::TooShort { len: buf.len() })?;
        let h = RtpHeader::parse(&buf[..authenticated])?;
        let known = self.rtp.get(h.ssrc);
        if known.is_none() && !self.rtp.has_room_for(h.ssrc) {
            return Err(SrtpError::TooManySsrcs);
        }
        let mut stream = known.unwrap_or(RxRtpStream {
            seq: RtpSeqState::first(h.seq),
            window: ReplayWindow::default(),
        });
        let (roc, index) = stream.seq.index_of(h.seq)?;
        stream.window.check(index)?;
        let len = match &self.ciphers {
            Ciphers::Gcm { rtp, .. } => rtp.open_rtp(buf, h.len, h.ssrc, roc, h.seq)?,
            Ciphers::Cm { rtp, .. } => rtp.open_rtp(buf, h.len, h.ssrc, roc, h.seq)?,
        };
        stream.seq.advance(roc, h.seq);
        stream.window.accept(index);
        self.rtp.set(h.ssrc, stream)?;
        Ok(len)
    }

    /// Verifies and decrypts the SRTCP packet `buf` (exactly the datagram) in place;
    /// returns the RTCP packet's length. Replayed and too-old SRTCP indexes are refused
    /// (RFC 3711 §3.3.2, a window per sending SSRC).
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let profile = self.profile();
        let len = buf.len();
        if len < 8 + profile.rtcp_overhead() {
            return Err(SrtpError::TooShort { len });
        }
        let ssrc = rtcp_ssrc(buf)?;
        // The E‖index word follows the tag with GCM (RFC 7714 §9.1) and precedes it with
        // AES-CM (RFC 3711 §3.4).
        let at = match profile {
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => len - 4,
            SrtpProfile::Aes128CmHmacSha1_80 => len - 4 - cm::TAG_LEN,
        };
        let word = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let (encrypted, index) = (word & 0x8000_0000 != 0, word & 0x7fff_ffff);
        let known = self.rtcp.get(ssrc);
        if known.is_none() && !self.rtcp.has_room_for(ssrc) {
            return Err(SrtpError::TooManySsrcs);
        }
        let mut window = known.unwrap_or_default();
        window.check(u64::from(index))?;
        let plain_len = match &self.ciphers {
            Ciphers::Gcm { rtcp, .. } => rtcp.open_rtcp(buf, ssrc, index, encrypted)?,
            Ciphers::Cm { rtcp, .. } => rtcp.open_rtcp(buf, ssrc, index, encrypted)?,
        };
        window.accept(u64::from(index));
        self.rtcp.set(ssrc, window)?;
        Ok(plain_len)
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/srtp_unprotect.rs`): feeds `data` to fixed-key
/// receivers of both profiles as raw SRTP and SRTCP, and, to get past the tag, protects
/// pieces of it with the matching sender, flips a chosen byte and unprotects again. Panics
/// only if a packet protected and left intact fails to come back unchanged.
#[cfg(any(test, fuzzing))]
pub fn fuzz_srtp_unprotect(data: &[u8]) {
    let exported = [0x5a; 88];
    for profile in [
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::Aes128CmHmacSha1_80,
    ] {
        let material = &exported[..profile.keying_material_len()];
        let Ok((ours, _)) = SrtpKeyingMaterial::split(profile, material, true) else {
            return;
        };
        let mut tx = SrtpSender::new(&ours);
        let mut rx = SrtpReceiver::new(&ours);
        let mut out = [0u8; 2048];
        // Pieces: one length byte, one control byte, then the bytes.
        let mut rest = data;
        while let [len, control, tail @ ..] = rest {
            let n = usize::from(*len).min(tail.len());
            let (piece, next) = tail.split_at(n);
            rest = next;
            let mut buf = [0u8; 2048];
            buf[..piece.len()].copy_from_slice(piece);
            match control % 4 {
                0 => {
                    let _ = rx.unprotect_rtp(&mut buf[..piece.len()]);
                }
                1 => {
                    let _ = rx.unprotect_rtcp(&mut buf[..piece.len()]);
                }
                2 => {
                    let Ok(n) = tx.protect_rtp(piece, &[], &mut out) else {
                        continue;
                    };
                    if let Some(b) = out[..n].get_mut(usize::from(*control >> 2)) {
                        *b ^= control & 0x80 | 1;
                    }
                    let _ = rx.unprotect_rtp(&mut out[..n]);
                }
                _ => {
                    let Ok(n) = tx.protect_rtcp(piece, &mut out) else {
                        continue;
                    };
                    if control & 0x04 != 0 {
                        let got = rx.unprotect_rtcp(&mut out[..n]);
                        assert_eq!(got, Ok(piece.len()), "intact srtcp refused");
                        assert_eq!(&out[..piece.len()], piece);
                    } else if let Some(b) = out[..n].get_mut(usize::from(*control >> 3)) {
                        *b ^= 1;
                        let _ = rx.unprotect_rtcp(&mut out[..n]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
