//! AEAD_AES_128_GCM and AEAD_AES_256_GCM for SRTP and SRTCP (RFC 7714): nonce formation, associated data and
//! the packet layouts, over RustCrypto's `aes-gcm` (AES-NI and PCLMULQDQ when the CPU has
//! them, detected at run time).
//!
//! Every function works in place on a buffer the caller owns; none allocates. Bounds were
//! checked by the caller (`mod.rs`), and are checked again by slicing (a bug panics in
//! tests rather than reading out of bounds).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};

use super::kdf::{self, Label};
use super::{MasterKey, SrtpError, SrtpProfile};

/// Bytes of the GCM authentication tag (RFC 7714 §12: AEAD_AES_128_GCM, 16 octets).
pub(super) const TAG_LEN: usize = 16;

/// The AEAD of one key size (RFC 7714 §14.2 registers both). Browsers' sessions use
/// AES-256 (the larger variant), so boxing it would add a pointer chase per packet to the
/// common case to save ~250 bytes per session.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Aead {
    Aes128(Aes128Gcm),
    Aes256(Aes256Gcm),
}

impl Aead {
    fn encrypt(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<Tag, aes_gcm::Error> {
        let nonce = Nonce::from_slice(nonce);
        match self {
            Aead::Aes128(a) => a.encrypt_in_place_detached(nonce, aad, payload),
            Aead::Aes256(a) => a.encrypt_in_place_detached(nonce, aad, payload),
        }
    }

    fn decrypt(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), aes_gcm::Error> {
        let (nonce, tag) = (Nonce::from_slice(nonce), Tag::from_slice(tag));
        match self {
            Aead::Aes128(a) => a.decrypt_in_place_detached(nonce, aad, payload, tag),
            Aead::Aes256(a) => a.decrypt_in_place_detached(nonce, aad, payload, tag),
        }
    }
}

/// One direction's session keys for RTP or for RTCP: the AEAD key and the 96-bit salt.
#[derive(Clone)]
pub(super) struct GcmCipher {
    aead: Aead,
    salt: [u8; 12],
}

impl GcmCipher {
    /// A cipher from session keys given directly (the RFC 7714 §16 vectors do this): a
    /// 16-byte key is AES-128-GCM, a 32-byte one AES-256-GCM.
    pub(super) fn from_session_keys(key: &[u8], salt: [u8; 12]) -> GcmCipher {
        let aead = match key.len() {
            32 => Aead::Aes256(Aes256Gcm::new(key.into())),
            _ => Aead::Aes128(Aes128Gcm::new(key[..16].into())),
        };
        GcmCipher { aead, salt }
    }

    /// The profile of this cipher's key size.
    pub(super) fn profile(&self) -> SrtpProfile {
        match self.aead {
            Aead::Aes128(_) => SrtpProfile::AeadAes128Gcm,
            Aead::Aes256(_) => SrtpProfile::AeadAes256Gcm,
        }
    }

    /// Derives the SRTP (`rtcp == false`) or SRTCP session keys from a master key
    /// (RFC 7714 §11: the RFC 3711 KDF; no authentication key, the AEAD carries it).
    pub(super) fn derive(master: &MasterKey, rtcp: bool) -> GcmCipher {
        let (key_label, salt_label) = if rtcp {
            (Label::RtcpEncryption, Label::RtcpSalt)
        } else {
            (Label::RtpEncryption, Label::RtpSalt)
        };
        // RFC 7714 §11: the session encryption key is as long as the master key.
        let mut key = [0u8; 32];
        let key = &mut key[..master.profile().master_key_len()];
        let mut salt = [0u8; 12];
        kdf::derive(master.key(), master.salt(), key_label, key);
        kdf::derive(master.key(), master.salt(), salt_label, &mut salt);
        GcmCipher::from_session_keys(key, salt)
    }

    /// The SRTP nonce (RFC 7714 §8.1).
    fn rtp_nonce(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
        // RFC 7714 §8.1: 2 zero octets ‖ SSRC ‖ ROC ‖ SEQ, XORed with the 12-octet salt.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        xor_salt(iv, &self.salt)
    }

    /// The SRTCP nonce (RFC 7714 §9.1).
    fn rtcp_nonce(&self, ssrc: u32, index: u32) -> [u8; 12] {
        // RFC 7714 §9.1: 2 zero octets ‖ SSRC ‖ 2 zero octets ‖ 0 bit ‖ 31-bit SRTCP index,
        // XORed with the 12-octet salt.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[8..12].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
        xor_salt(iv, &self.salt)
    }

    /// Encrypts `buf[header_len..plain_len]` and appends the tag; returns the SRTP length.
    /// The caller checked that `buf` holds `plain_len + TAG_LEN` bytes.
    pub(super) fn seal_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        plain_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let nonce = self.rtp_nonce(ssrc, roc, seq);
        // RFC 7714 §8.2: the associated data is the RTP header, CSRCs and extension included.
        let (aad, rest) = buf.split_at_mut(header_len);
        let (payload, tail) = rest.split_at_mut(plain_len - header_len);
        let tag = self
            .aead
            .encrypt(&nonce, aad, payload)
            .map_err(|_| SrtpError::TooLong)?;
        tail[..TAG_LEN].copy_from_slice(&tag);
        Ok(plain_len + TAG_LEN)
    }

    /// Verifies and decrypts the SRTP packet `buf` (header, ciphertext, tag) in place;
    /// returns the RTP length.
    pub(super) fn open_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let nonce = self.rtp_nonce(ssrc, roc, seq);
        let plain_len = buf.len() - TAG_LEN;
        let (packet, tag) = buf.split_at_mut(plain_len);
        let (aad, payload) = packet.split_at_mut(header_len);
        self.aead
            .decrypt(&nonce, aad, payload, tag)
            .map_err(|_| SrtpError::BadTag)?;
        Ok(plain_len)
    }

    /// Encrypts the RTCP packet `buf[..plain_len]` (all but its first 8 bytes), then writes
    /// the tag and the E flag with the SRTCP index after it (RFC 7714 §9, layout of §9.1's
    /// figure: header, ciphertext, tag, E‖index); returns the SRTCP length.
    pub(super) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        plain_len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let nonce = self.rtcp_nonce(ssrc, index);
        let word = (0x8000_0000 | index).to_be_bytes();
        // RFC 7714 §9.1/§17: the AAD is the first 8 octets of the packet followed by the
        // ESRTCP word (E flag and index); the rest of the packet is the plaintext.
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&buf[..8]);
        aad[8..].copy_from_slice(&word);
        let (body, tail) = buf[8..].split_at_mut(plain_len - 8);
        let tag = self
            .aead
            .encrypt(&nonce, &aad, body)
            .map_err(|_| SrtpError::TooLong)?;
        tail[..TAG_LEN].copy_from_slice(&tag);
        tail[TAG_LEN..TAG_LEN + 4].copy_from_slice(&word);
        Ok(plain_len + TAG_LEN + 4)
    }

    /// Verifies (and, when `encrypted`, decrypts) the SRTCP packet `buf` in place; returns
    /// the RTCP length. `buf` ends with the tag and the 4-byte E‖index word.
    pub(super) fn open_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<usize, SrtpError> {
        let nonce = self.rtcp_nonce(ssrc, index);
        let plain_len = buf.len() - TAG_LEN - 4;
        if encrypted {
            let mut aad = [0u8; 12];
            aad[..8].copy_from_slice(&buf[..8]);
            aad[8..].copy_from_slice(&buf[plain_len + TAG_LEN..]);
            let (packet, tail) = buf.split_at_mut(plain_len);
            self.aead
                .decrypt(&nonce, &aad, &mut packet[8..], &tail[..TAG_LEN])
                .map_err(|_| SrtpError::BadTag)?;
        } else {
            // RFC 7714 §9.1 (E = 0): unencrypted SRTCP authenticates the whole packet and the
            // ESRTCP word as AAD over an empty plaintext. Moving the word in front of the
            // tag makes the AAD one contiguous slice; the bytes after `plain_len` are the
            // caller's scratch once we return.
            buf[plain_len..].rotate_left(TAG_LEN);
            let (aad, tag) = buf.split_at_mut(plain_len + 4);
            self.aead
                .decrypt(&nonce, aad, &mut [], tag)
                .map_err(|_| SrtpError::BadTag)?;
        }
        Ok(plain_len)
    }
}

fn xor_salt(mut iv: [u8; 12], salt: &[u8; 12]) -> [u8; 12] {
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}
