//! AEAD_AES_128_GCM and AEAD_AES_256_GCM for SRTP and SRTCP (RFC 7714): nonce formation,
//! associated data and the packet layouts, over `ring`'s AES-GCM.
//!
//! Why ring here when the rest of SRTP is RustCrypto: GCM is what browsers negotiate, so it
//! is the per-packet cost of every WebRTC viewer, and ring's assembly (AES-NI, VAES and
//! carry-less multiply, stitched) sealed a 1,188-byte payload in 265 ns where `aes-gcm`
//! took 952 ns on this machine (AMD EPYC, one measurement each, `/tmp` scratch bench; the
//! project's `bench/srtp.rs` gives the figure through our API). ring builds with cargo and
//! a C compiler, as the rest of the build already needs.
//!
//! Every function works in place on a buffer the caller owns; none allocates. Bounds were
//! checked by the caller (`mod.rs`), and are checked again by slicing (a bug panics in
//! tests rather than reading out of bounds).

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM};

use super::kdf::{self, Label};
use super::{MasterKey, SrtpError, SrtpProfile};

/// Bytes of the GCM authentication tag (RFC 7714 §12: 16 octets for both key sizes).
pub(super) const TAG_LEN: usize = 16;

/// The AEAD of one key size (RFC 7714 §14.2 registers both). The key bytes are kept beside
/// ring's key, which is not `Clone`, so a context can be cloned (at setup, never per packet).
struct Aead {
    key: LessSafeKey,
    raw: [u8; 32],
    raw_len: usize,
}

impl Aead {
    /// A 16-byte key is AES-128-GCM, a 32-byte one AES-256-GCM.
    fn new(raw_key: &[u8]) -> Aead {
        let algorithm = if raw_key.len() == 32 {
            &AES_256_GCM
        } else {
            &AES_128_GCM
        };
        let raw_len = raw_key.len().min(32);
        let mut raw = [0u8; 32];
        raw[..raw_len].copy_from_slice(&raw_key[..raw_len]);
        // The only error is a key of the wrong length, which the two arms above rule out
        // for the lengths `MasterKey` admits (16 and 32).
        let unbound = UnboundKey::new(algorithm, &raw[..algorithm.key_len()])
            .unwrap_or_else(|_| unreachable!("AES-GCM key lengths are 16 and 32"));
        Aead {
            key: LessSafeKey::new(unbound),
            raw,
            raw_len,
        }
    }

    fn profile(&self) -> SrtpProfile {
        if self.raw_len == 32 {
            SrtpProfile::AeadAes256Gcm
        } else {
            SrtpProfile::AeadAes128Gcm
        }
    }
}

impl Clone for Aead {
    fn clone(&self) -> Self {
        Aead::new(&self.raw[..self.raw_len])
    }
}

impl Aead {
    fn encrypt(&self, nonce: &[u8; 12], aad: &[u8], payload: &mut [u8]) -> Result<Tag, ()> {
        self.key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                payload,
            )
            .map_err(|_| ())
    }

    fn decrypt(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), ()> {
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| ())?;
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(tag),
                payload,
                0..,
            )
            .map(|_| ())
            .map_err(|_| ())
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
        GcmCipher {
            aead: Aead::new(key),
            salt,
        }
    }

    /// The profile of this cipher's key size.
    pub(super) fn profile(&self) -> SrtpProfile {
        self.aead.profile()
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
        tail[..TAG_LEN].copy_from_slice(tag.as_ref());
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
        tail[..TAG_LEN].copy_from_slice(tag.as_ref());
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
