//! The crypto backend the bench's str0m viewers run on, built from crates this package already
//! links: DTLS is dimpl 0.7 on RustCrypto (the DTLS engine str0m 0.24 drives), SRTP's AES-GCM
//! (RFC 7714) is ring's, AES-CM with HMAC-SHA1 (RFC 3711 §4.1.1, §4.2.1) and STUN's HMAC-SHA1
//! (RFC 8489 §14.5) are RustCrypto's, and the certificate is rcgen's X.509 signed with `p256`.
//!
//! str0m's own `rust-crypto` backend is the same design (this file follows its shape, MIT/Apache
//! 2.0), but it enables dimpl's `rcgen` feature, which pulls aws-lc-sys, a C build.
//!
//! None of this is shardcast's own WebRTC code (`shardcast::webrtc`): the viewers must be an
//! implementation independent of the server they measure.

use std::sync::Arc;
use std::time::Instant;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePrivateKey as _;
use rand::RngCore as _;
use str0m::config::CryptoProvider;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher, CryptoError, Sha1HmacProvider,
    Sha256Provider, SrtpProvider, SupportedAeadAes128Gcm, SupportedAeadAes256Gcm,
    SupportedAes128CmSha1_80,
};

/// The provider every viewer's `Rtc` gets (`RtcConfig::set_crypto_provider`).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static SRTP: Srtp = Srtp;
    static HMAC: HmacSha1 = HmacSha1;
    static SHA256: Sha256 = Sha256;
    static DTLS: Dtls = Dtls;
    Arc::new(CryptoProvider {
        srtp_provider: &SRTP,
        sha1_hmac_provider: &HMAC,
        sha256_provider: &SHA256,
        dtls_provider: &DTLS,
    })
}

fn other(what: &str) -> CryptoError {
    CryptoError::Other(what.to_owned())
}

#[derive(Debug)]
struct HmacSha1;

impl Sha1HmacProvider for HmacSha1 {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        use hmac::Mac as _;
        // HMAC takes a key of any length (RFC 2104 §2): `new_from_slice` cannot fail.
        let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(key) else {
            return [0; 20];
        };
        for p in payloads {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

#[derive(Debug)]
struct Sha256;

impl Sha256Provider for Sha256 {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(data).into()
    }
}

/// AES-128 in counter mode (RFC 3711 §4.1.1); the HMAC-SHA1 tag is str0m's.
struct AesCm {
    key: [u8; 16],
}

impl std::fmt::Debug for AesCm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesCm")
    }
}

impl Aes128CmSha1_80Cipher for AesCm {
    fn encrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        use ctr::cipher::{KeyIvInit as _, StreamCipher as _};
        let out = output
            .get_mut(..input.len())
            .ok_or_else(|| other("AES-CM output too short"))?;
        out.copy_from_slice(input);
        ctr::Ctr128BE::<aes::Aes128>::new(&self.key.into(), iv.into()).apply_keystream(out);
        Ok(())
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.encrypt(iv, input, output)
    }
}

/// AES-GCM (RFC 7714 §8, §9): ring's AEAD, sealing and opening in the caller's buffer.
struct Gcm {
    key: ring::aead::LessSafeKey,
}

impl std::fmt::Debug for Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gcm")
    }
}

/// ring's tag length for AES-GCM (RFC 7714 §4.1: a 16-octet tag).
const GCM_TAG: usize = 16;

impl Gcm {
    fn new(alg: &'static ring::aead::Algorithm, key: &[u8]) -> Option<Self> {
        let key = ring::aead::UnboundKey::new(alg, key).ok()?;
        Some(Self {
            key: ring::aead::LessSafeKey::new(key),
        })
    }

    fn seal(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let n = input.len();
        let out = output
            .get_mut(..n + GCM_TAG)
            .ok_or_else(|| other("AES-GCM output too short"))?;
        let (body, tag_out) = out.split_at_mut(n);
        body.copy_from_slice(input);
        let nonce = ring::aead::Nonce::assume_unique_for_key(*iv);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), body)
            .map_err(|_| other("AES-GCM seal"))?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    fn open(
        &self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        // str0m sizes `output` for the plaintext: the tag is passed to ring separately.
        let n = input
            .len()
            .checked_sub(GCM_TAG)
            .ok_or_else(|| other("AES-GCM input shorter than its tag"))?;
        let (body, tag) = input.split_at(n);
        let tag: [u8; GCM_TAG] = tag.try_into().map_err(|_| other("AES-GCM tag length"))?;
        let out = output
            .get_mut(..n)
            .ok_or_else(|| other("AES-GCM output too short"))?;
        out.copy_from_slice(body);
        let nonce = ring::aead::Nonce::assume_unique_for_key(*iv);
        // The AAD arrives in pieces (header, then the SRTCP index): one small joined copy
        // when there are several, as str0m's own backends do.
        let joined;
        let aad: &[u8] = match aads {
            [one] => one,
            many => {
                joined = many.concat();
                &joined
            }
        };
        let plain = self
            .key
            .open_in_place_separate_tag(
                nonce,
                ring::aead::Aad::from(aad),
                ring::aead::Tag::from(tag),
                out,
                0..,
            )
            .map_err(|_| other("AES-GCM authentication failed"))?;
        Ok(plain.len())
    }
}

impl AeadAes128GcmCipher for Gcm {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}

impl AeadAes256GcmCipher for Gcm {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}

/// A GCM key ring refuses (it takes any 16 or 32 bytes, so never in practice): every packet
/// then fails authentication and is dropped, which the viewer's loss figure shows.
#[derive(Debug)]
struct Refuse;

impl AeadAes128GcmCipher for Refuse {
    fn encrypt(
        &mut self,
        _: &[u8; 12],
        _: &[u8],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<(), CryptoError> {
        Err(other("no AES-GCM key"))
    }

    fn decrypt(
        &mut self,
        _: &[u8; 12],
        _: &[&[u8]],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<usize, CryptoError> {
        Err(other("no AES-GCM key"))
    }
}

impl AeadAes256GcmCipher for Refuse {
    fn encrypt(
        &mut self,
        _: &[u8; 12],
        _: &[u8],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<(), CryptoError> {
        Err(other("no AES-GCM key"))
    }

    fn decrypt(
        &mut self,
        _: &[u8; 12],
        _: &[&[u8]],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<usize, CryptoError> {
        Err(other("no AES-GCM key"))
    }
}

#[derive(Debug)]
struct Srtp;

#[derive(Debug)]
struct CmFactory;
#[derive(Debug)]
struct Gcm128Factory;
#[derive(Debug)]
struct Gcm256Factory;

impl SupportedAes128CmSha1_80 for CmFactory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        Box::new(AesCm { key })
    }
}

impl SupportedAeadAes128Gcm for Gcm128Factory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        match Gcm::new(&ring::aead::AES_128_GCM, &key) {
            Some(g) => Box::new(g),
            None => Box::new(Refuse),
        }
    }
}

impl SupportedAeadAes256Gcm for Gcm256Factory {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        match Gcm::new(&ring::aead::AES_256_GCM, &key) {
            Some(g) => Box::new(g),
            None => Box::new(Refuse),
        }
    }
}

/// One AES block of `input` and one of PKCS#7 padding, as str0m's key derivation (RFC 3711
/// §4.3.3, RFC 6188 §3 for AES-256) expects; a wrong-sized argument leaves `output` alone.
fn ecb_round<
    C: aes::cipher::BlockEncrypt
        + aes::cipher::KeyInit
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
>(
    key: &[u8],
    input: &[u8],
    output: &mut [u8],
) {
    let (Ok(cipher), Ok(block)) = (C::new_from_slice(key), <[u8; 16]>::try_from(input)) else {
        return;
    };
    let Some(out) = output.get_mut(..32) else {
        return;
    };
    let mut b1 = aes::cipher::Block::<C>::clone_from_slice(&block);
    cipher.encrypt_block(&mut b1);
    let mut b2 = aes::cipher::Block::<C>::clone_from_slice(&[0x10u8; 16]);
    cipher.encrypt_block(&mut b2);
    out[..16].copy_from_slice(&b1);
    out[16..].copy_from_slice(&b2);
}

impl SrtpProvider for Srtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        &CmFactory
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &Gcm128Factory
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &Gcm256Factory
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        ecb_round::<aes::Aes128>(key, input, output);
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        ecb_round::<aes::Aes256>(key, input, output);
    }
}

#[derive(Debug)]
struct Dtls;

struct DtlsConn(dimpl07::Dtls);

impl std::fmt::Debug for DtlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtlsConn")
    }
}

impl DtlsProvider for Dtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self_signed().ok()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // ICE has proven the path before DTLS starts: no cookie exchange (RFC 6347 §4.2.1
        // makes it optional), as str0m's backends configure it.
        let mut builder = dimpl07::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("dimpl config: {e}")))?,
        );
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls13 => dimpl07::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl07::Dtls::new_auto(config, cert, now),
            _ => dimpl07::Dtls::new_12(config, cert, now),
        };
        Ok(Box::new(DtlsConn(dtls)))
    }
}

impl DtlsInstance for DtlsConn {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

/// The public key rcgen embeds: an uncompressed SEC1 point (RFC 5480 §2.2).
struct Signer {
    key: SigningKey,
    point: Vec<u8>,
}

impl rcgen::PublicKeyData for Signer {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // ECDSA with SHA-256, DER `Ecdsa-Sig-Value` (RFC 5758 §3.2, RFC 3279 §2.2.3).
        let sig: DerSignature = self.key.sign(msg);
        Ok(sig.as_bytes().to_vec())
    }
}

/// A self-signed ECDSA P-256 certificate and its PKCS#8 key, as dimpl takes them. WebRTC
/// authenticates it by the SDP fingerprint alone (RFC 8827 §6.5).
fn self_signed() -> Result<DtlsCert, &'static str> {
    let mut key = None;
    for _ in 0..8 {
        let mut scalar = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut scalar);
        if let Ok(k) = SigningKey::from_slice(&scalar) {
            key = Some(k);
            break;
        }
    }
    let key = key.ok_or("no P-256 scalar")?;
    let point = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
    let signer = Signer { key, point };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|_| "params")?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, "shardcast-bench");
    params.distinguished_name = name;
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&signer).map_err(|_| "signing")?;
    let private_key = signer.key.to_pkcs8_der().map_err(|_| "pkcs8")?;
    Ok(DtlsCert {
        certificate: cert.der().to_vec(),
        private_key: private_key.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7714 §16.1.1's AEAD_AES_128_GCM RTP example is long; instead check ring against
    /// the GCM test case 3 of the GCM specification (McGrew–Viega, also NIST SP 800-38D):
    /// key feffe992…, IV cafebabefacedbaddecaf888, no AAD.
    #[test]
    fn gcm_matches_the_published_test_case() {
        let key = hex("feffe9928665731c6d6a8f9467308308");
        let iv: [u8; 12] = hex("cafebabefacedbaddecaf888")
            .try_into()
            .unwrap_or([0; 12]);
        let plain = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        );
        let want = hex(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f59854d5c2af327cd64a62cf35abd2ba6fab4",
        );
        let g = Gcm::new(&ring::aead::AES_128_GCM, &key).unwrap();
        let mut out = vec![0u8; plain.len() + GCM_TAG];
        g.seal(&iv, &[], &plain, &mut out).unwrap();
        assert_eq!(out, want);
        // str0m gives the plaintext's length as the output.
        let mut back = vec![0u8; plain.len()];
        let n = g.open(&iv, &[&[]], &out, &mut back).unwrap();
        assert_eq!(&back[..n], &plain[..]);
        out[3] ^= 1;
        assert!(
            g.open(&iv, &[&[]], &out, &mut back).is_err(),
            "a bad tag is refused"
        );
    }

    #[test]
    fn the_certificate_is_der_that_dimpl_accepts() {
        let cert = self_signed().unwrap();
        assert_eq!(cert.certificate.first(), Some(&0x30), "a DER SEQUENCE");
        let config = Arc::new(dimpl07::Config::builder().build().unwrap());
        let mut d = dimpl07::Dtls::new_12(config, cert, Instant::now());
        d.set_active(true);
        let mut buf = vec![0u8; 2048];
        // A client with this key and certificate starts its handshake (a ClientHello record).
        let _ = d.handle_timeout(Instant::now());
        let mut saw_packet = false;
        for _ in 0..8 {
            match d.poll_output(&mut buf) {
                dimpl07::Output::Packet(p) => {
                    saw_packet = p.first() == Some(&22);
                    break;
                }
                dimpl07::Output::Timeout(_) => break,
                _ => {}
            }
        }
        assert!(saw_packet, "a DTLS handshake record");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
