//! AES_CM_128_HMAC_SHA1_80 for SRTP and SRTCP (RFC 3711 §4.1.1 AES counter mode, §4.2.1
//! HMAC-SHA1 truncated to 80 bits), over RustCrypto's `aes`, `ctr`, `hmac` and `sha1`.
//!
//! Every function works in place on a buffer the caller owns; none allocates (the keyed
//! HMAC and the expanded AES key are cloned per packet, which copies their state).

use aes::cipher::{generic_array::GenericArray, InnerIvInit, KeyInit, StreamCipher};
use aes::Aes128;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::kdf::{self, Label};
use super::{MasterKey, SrtpError};

/// Bytes of the authentication tag (RFC 3711 §5.2: HMAC-SHA1 truncated to 80 bits).
pub(super) const TAG_LEN: usize = 10;

type Aes128Ctr = ctr::Ctr128BE<Aes128>;
type CtrCore = ctr::CtrCore<Aes128, ctr::flavors::Ctr128BE>;

/// One direction's session keys for RTP or for RTCP: cipher key, auth key, 112-bit salt.
#[derive(Clone)]
pub(super) struct CmCipher {
    aes: Aes128,
    mac: Hmac<Sha1>,
    salt: [u8; 14],
}

impl CmCipher {
    /// A cipher from session keys given directly.
    pub(super) fn from_session_keys(key: &[u8; 16], auth_key: &[u8; 20], salt: [u8; 14]) -> Self {
        // HMAC pads a key shorter than the hash block with zeros (RFC 2104 §2), so the
        // 160-bit key padded to SHA-1's 64-byte block is the same key, and this `new`
        // cannot fail.
        let mut block_key = [0u8; 64];
        block_key[..20].copy_from_slice(auth_key);
        CmCipher {
            aes: Aes128::new(key.into()),
            mac: <Hmac<Sha1> as KeyInit>::new(GenericArray::from_slice(&block_key)),
            salt,
        }
    }

    /// Derives the SRTP (`rtcp == false`) or SRTCP session keys from a master key
    /// (RFC 3711 §4.3.1; §8.2 sizes: 128-bit key, 160-bit auth key, 112-bit salt).
    pub(super) fn derive(master: &MasterKey, rtcp: bool) -> CmCipher {
        let labels = if rtcp {
            [
                Label::RtcpEncryption,
                Label::RtcpAuthentication,
                Label::RtcpSalt,
            ]
        } else {
            [
                Label::RtpEncryption,
                Label::RtpAuthentication,
                Label::RtpSalt,
            ]
        };
        let mut key = [0u8; 16];
        let mut auth = [0u8; 20];
        let mut salt = [0u8; 14];
        kdf::derive(master.key(), master.salt(), labels[0], &mut key);
        kdf::derive(master.key(), master.salt(), labels[1], &mut auth);
        kdf::derive(master.key(), master.salt(), labels[2], &mut salt);
        CmCipher::from_session_keys(&key, &auth, salt)
    }

    /// XORs the AES-CM keystream for (`ssrc`, `index`) into `data` (RFC 3711 §4.1.1).
    pub(super) fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        //= https://www.rfc-editor.org/rfc/rfc3711#section-4.1.1
        //# IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        // The 48-bit index: bytes 2..8 of its big-endian u64 form.
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= s;
        }
        // The low 16 bits are the block counter; a packet is far below 2^16 blocks, so the
        // full-width increment of `Ctr128BE` never carries into the IV.
        let core = CtrCore::inner_iv_init(self.aes.clone(), GenericArray::from_slice(&iv));
        let mut ctr = Aes128Ctr::from_core(core);
        ctr.apply_keystream(data);
    }

    /// The 80-bit tag over `parts` (RFC 3711 §4.2: HMAC-SHA1 over the authenticated portion
    /// followed by the ROC for SRTP, nothing for SRTCP).
    fn tag(&self, authenticated: &[u8], roc: Option<u32>) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(authenticated);
        if let Some(roc) = roc {
            mac.update(&roc.to_be_bytes());
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Encrypts `buf[header_len..plain_len]` and appends the tag; returns the SRTP length.
    pub(super) fn seal_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        plain_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> usize {
        let index = (u64::from(roc) << 16) | u64::from(seq);
        self.apply_keystream(ssrc, index, &mut buf[header_len..plain_len]);
        let tag = self.tag(&buf[..plain_len], Some(roc));
        buf[plain_len..plain_len + TAG_LEN].copy_from_slice(&tag);
        plain_len + TAG_LEN
    }

    /// Verifies and decrypts the SRTP packet `buf` in place; returns the RTP length.
    pub(super) fn open_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let plain_len = buf.len() - TAG_LEN;
        let tag = self.tag(&buf[..plain_len], Some(roc));
        if !bool::from(tag.ct_eq(&buf[plain_len..])) {
            return Err(SrtpError::BadTag);
        }
        let index = (u64::from(roc) << 16) | u64::from(seq);
        self.apply_keystream(ssrc, index, &mut buf[header_len..plain_len]);
        Ok(plain_len)
    }

    /// Encrypts all but the first 8 bytes of `buf[..plain_len]`, appends the E‖index word
    /// and the tag over packet and word (RFC 3711 §3.4); returns the SRTCP length.
    pub(super) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        plain_len: usize,
        ssrc: u32,
        index: u32,
    ) -> usize {
        self.apply_keystream(ssrc, u64::from(index), &mut buf[8..plain_len]);
        let word = (0x8000_0000 | index).to_be_bytes();
        buf[plain_len..plain_len + 4].copy_from_slice(&word);
        let tag = self.tag(&buf[..plain_len + 4], None);
        buf[plain_len + 4..plain_len + 4 + TAG_LEN].copy_from_slice(&tag);
        plain_len + 4 + TAG_LEN
    }

    /// Verifies (and, when `encrypted`, decrypts) the SRTCP packet `buf` in place; returns
    /// the RTCP length. `buf` ends with the E‖index word and the tag.
    pub(super) fn open_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<usize, SrtpError> {
        let authenticated = buf.len() - TAG_LEN;
        let tag = self.tag(&buf[..authenticated], None);
        if !bool::from(tag.ct_eq(&buf[authenticated..])) {
            return Err(SrtpError::BadTag);
        }
        let plain_len = authenticated - 4;
        if encrypted {
            self.apply_keystream(ssrc, u64::from(index), &mut buf[8..plain_len]);
        }
        Ok(plain_len)
    }
}
