//! SRTP key derivation (RFC 3711 §4.3): the AES-CM PRF over the master key and salt.
//!
//! DTLS-SRTP fixes the key derivation rate at 0 (RFC 5764 §4.1.2 lists it among each
//! profile's parameters), so every session key is derived once, at setup,
//! and `index DIV kdr` is always 0. Both profiles use the same PRF; AEAD_AES_128_GCM feeds
//! it a 96-bit master salt (RFC 7714 §11), which sits in the high 96 of the 112 salt bits.
//! This module does not rekey: a session that exhausts its index space must be set up again.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes256};

/// Key derivation labels (RFC 3711 §4.3.1, §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Label {
    /// SRTP encryption key.
    RtpEncryption = 0x00,
    /// SRTP authentication key.
    RtpAuthentication = 0x01,
    /// SRTP salting key.
    RtpSalt = 0x02,
    /// SRTCP encryption key.
    RtcpEncryption = 0x03,
    /// SRTCP authentication key.
    RtcpAuthentication = 0x04,
    /// SRTCP salting key.
    RtcpSalt = 0x05,
}

/// Fills `out` with the PRF output for `label` (RFC 3711 §4.3.1 with kdr = 0, §4.3.3).
///
/// `master_salt` is 14 bytes (AES-CM) or 12 (AES-GCM; RFC 7714 §11); a shorter salt is
/// padded with zeros on the right, as libsrtp and webrtc-rs do.
/// `master_key` is 16 bytes (AES-128: RFC 3711 §4.3.3) or 32 (AES-256: the AES_256_CM_PRF
/// of RFC 6188 §3, which RFC 7714 §11 names for AEAD_AES_256_GCM).
pub(super) fn derive(master_key: &[u8], master_salt: &[u8], label: Label, out: &mut [u8]) {
    //= https://www.rfc-editor.org/rfc/rfc3711#section-4.3.1
    //# key_id = <label> || r.
    //# x = key_id XOR master_salt
    // With r = 0 the 56-bit key_id is the label followed by six zero bytes; aligned to the
    // right of the 112-bit salt, the label lands on salt byte 7.
    let mut x = [0u8; 16];
    let n = master_salt.len().min(14);
    x[..n].copy_from_slice(&master_salt[..n]);
    x[7] ^= label as u8;

    //= https://www.rfc-editor.org/rfc/rfc3711#section-4.3.3
    //# PRF_n(k_master, x) = AES_CM(k_master, x, n)
    // AES in counter mode with IV x * 2^16: the 16-bit block counter fills the last two bytes.
    let encrypt: &dyn Fn(&mut GenericArray<u8, _>) = match master_key.len() {
        32 => &|b| Aes256::new(GenericArray::from_slice(master_key)).encrypt_block(b),
        _ => &|b| Aes128::new(GenericArray::from_slice(&master_key[..16])).encrypt_block(b),
    };
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = GenericArray::from(x);
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        encrypt(&mut block);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}
