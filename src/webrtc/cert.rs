//! The DTLS certificate and SDP fingerprints.
//!
//! WebRTC certificates are self-signed and never checked against a CA: the `a=fingerprint`
//! attribute of the (HTTPS-carried) SDP authenticates them (RFC 8827 §6.5). So the server makes
//! one ECDSA P-256 certificate per process ([`DtlsCertificate::generate`]), every answer carries
//! its SHA-256 fingerprint ([`DtlsCertificate::fingerprint`]), and each session checks the
//! client's certificate against the offer's fingerprint ([`Fingerprint::matches`]).
//!
//! The X.509 encoding is rcgen's; the key and its signature are RustCrypto's `p256`, the curve
//! implementation dimpl's `rust-crypto` provider also uses. This module does not verify
//! certificate chains, names or validity periods: WebRTC has none to verify.

use std::fmt::Write as _;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePrivateKey as _;
use rand::RngCore as _;
use sha2::Digest as _;

use super::dtls::DtlsError;

/// The longest digest a fingerprint can carry (SHA-512).
const MAX_DIGEST_LEN: usize = 64;

/// The server's DTLS certificate: ECDSA P-256, self-signed, made once per process and shared by
/// every session (`Arc<DtlsCertificate>`).
pub struct DtlsCertificate {
    /// The certificate and its PKCS#8 private key, in the form dimpl takes.
    pub(crate) inner: dimpl::DtlsCertificate,
    /// `sha-256 AB:CD:…`, the value of the answer's `a=fingerprint` (RFC 8122 §5).
    fingerprint: String,
}

impl std::fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("DtlsCertificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The certificate's public key for rcgen: an uncompressed SEC1 point (RFC 5480 §2.2).
struct P256PublicKey {
    sec1_point: Vec<u8>,
}

/// The signer rcgen calls to sign the certificate: ECDSA with SHA-256 (RFC 5758 §3.2).
struct P256Signer {
    key: SigningKey,
    public: P256PublicKey,
}

impl rcgen::PublicKeyData for P256Signer {
    fn der_bytes(&self) -> &[u8] {
        &self.public.sec1_point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for P256Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // X.509 carries ECDSA signatures as the DER `Ecdsa-Sig-Value` (RFC 5480 §2.2 / RFC 3279 §2.2.3).
        let signature: DerSignature = self.key.sign(msg);
        Ok(signature.as_bytes().to_vec())
    }
}

impl DtlsCertificate {
    /// Makes a fresh self-signed ECDSA P-256 certificate with a random 128-bit serial number.
    pub fn generate() -> Result<Self, DtlsError> {
        let key = random_signing_key()?;
        let sec1_point = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let signer = P256Signer {
            key,
            public: P256PublicKey { sec1_point },
        };
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|_| DtlsError::CertificateGeneration("certificate parameters"))?;
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, "shardcast");
        params.distinguished_name = name;
        params.is_ca = rcgen::IsCa::NoCa;
        // Firefox refuses a second certificate with the same issuer and serial it has seen, even
        // from another process or host: the serial must be random, not 1.
        let mut serial = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut serial);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params
            .self_signed(&signer)
            .map_err(|_| DtlsError::CertificateGeneration("signing the certificate"))?;
        let private_key = signer
            .key
            .to_pkcs8_der()
            .map_err(|_| DtlsError::CertificateGeneration("encoding the private key"))?;
        let certificate = cert.der().to_vec();
        let fingerprint = format_fingerprint("sha-256", &sha2::Sha256::digest(&certificate));
        Ok(DtlsCertificate {
            inner: dimpl::DtlsCertificate {
                certificate,
                private_key: private_key.as_bytes().to_vec(),
            },
            fingerprint,
        })
    }

    /// The SDP fingerprint, `sha-256 AB:CD:…` (RFC 8122 §5: uppercase hex pairs joined by colons).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The certificate, DER-encoded.
    pub fn der(&self) -> &[u8] {
        &self.inner.certificate
    }
}

/// A P-256 private scalar from the OS random source; the rare out-of-range value is redrawn.
fn random_signing_key() -> Result<SigningKey, DtlsError> {
    for _ in 0..8 {
        let mut scalar = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut scalar);
        if let Ok(key) = SigningKey::from_slice(&scalar) {
            return Ok(key);
        }
    }
    Err(DtlsError::CertificateGeneration("drawing a P-256 key"))
}

/// `hash-func SP fingerprint`, the fingerprint as hex pairs in uppercase joined by colons.
fn format_fingerprint(hash: &str, digest: &[u8]) -> String {
    let mut s = String::with_capacity(hash.len() + 1 + digest.len() * 3);
    s.push_str(hash);
    s.push(' ');
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// A hash function named in `a=fingerprint` (RFC 8122 §5, the IANA "Hash Function Textual
/// Names" registry) that this server can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintHash {
    /// `sha-256`, the one every WebRTC endpoint sends (RFC 8827 §6.5 requires it).
    Sha256,
    /// `sha-384`.
    Sha384,
    /// `sha-512`.
    Sha512,
}

impl FingerprintHash {
    /// The digest length in bytes.
    pub fn len_bytes(self) -> usize {
        match self {
            FingerprintHash::Sha256 => 32,
            FingerprintHash::Sha384 => 48,
            FingerprintHash::Sha512 => 64,
        }
    }

    /// The textual name used in SDP.
    pub fn name(self) -> &'static str {
        match self {
            FingerprintHash::Sha256 => "sha-256",
            FingerprintHash::Sha384 => "sha-384",
            FingerprintHash::Sha512 => "sha-512",
        }
    }
}

/// The remote peer's certificate fingerprint from the offer's `a=fingerprint` (RFC 8122 §5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    hash: FingerprintHash,
    digest: [u8; MAX_DIGEST_LEN],
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_fingerprint(self.hash.name(), self.digest()))
    }
}

impl Fingerprint {
    /// Parses the attribute value, `sha-256 AB:CD:…` (the part after `a=fingerprint:`).
    ///
    /// RFC 8122 §5: `hash-func SP fingerprint`, with `fingerprint = 2UHEX *(":" 2UHEX)`. The hash
    /// name is matched case-insensitively (§5: "hash-func ... case-insensitive"); lowercase hex is
    /// accepted too, as libwebrtc does. `sha-1` and older hashes are refused with
    /// [`DtlsError::UnsupportedFingerprintHash`]: browsers have sent `sha-256` since 2015.
    pub fn parse(value: &str) -> Result<Fingerprint, DtlsError> {
        let value = value.trim();
        let (name, hex) = value
            .split_once(' ')
            .ok_or(DtlsError::MalformedFingerprint(
                "no space after the hash name",
            ))?;
        let hash = if name.eq_ignore_ascii_case("sha-256") {
            FingerprintHash::Sha256
        } else if name.eq_ignore_ascii_case("sha-384") {
            FingerprintHash::Sha384
        } else if name.eq_ignore_ascii_case("sha-512") {
            FingerprintHash::Sha512
        } else {
            return Err(DtlsError::UnsupportedFingerprintHash);
        };
        let mut digest = [0u8; MAX_DIGEST_LEN];
        let mut n = 0;
        for pair in hex.trim().split(':') {
            let &[hi, lo] = pair.as_bytes() else {
                return Err(DtlsError::MalformedFingerprint("not a pair of hex digits"));
            };
            let byte = hex_value(hi)
                .zip(hex_value(lo))
                .map(|(h, l)| h << 4 | l)
                .ok_or(DtlsError::MalformedFingerprint("not a hex digit"))?;
            let slot = digest
                .get_mut(n)
                .ok_or(DtlsError::MalformedFingerprint("longer than the hash"))?;
            *slot = byte;
            n += 1;
        }
        if n != hash.len_bytes() {
            return Err(DtlsError::MalformedFingerprint(
                "length does not match the hash",
            ));
        }
        Ok(Fingerprint { hash, digest })
    }

    /// The hash function named.
    pub fn hash(&self) -> FingerprintHash {
        self.hash
    }

    /// The digest bytes.
    pub fn digest(&self) -> &[u8] {
        self.digest.get(..self.hash.len_bytes()).unwrap_or(&[])
    }

    /// Whether `der` (a certificate, DER) hashes to this fingerprint.
    pub fn matches(&self, der: &[u8]) -> bool {
        match self.hash {
            FingerprintHash::Sha256 => sha2::Sha256::digest(der).as_slice() == self.digest(),
            FingerprintHash::Sha384 => sha2::Sha384::digest(der).as_slice() == self.digest(),
            FingerprintHash::Sha512 => sha2::Sha512::digest(der).as_slice() == self.digest(),
        }
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_fingerprint_is_sha256_of_der_in_rfc_8122_form() {
        let cert = DtlsCertificate::generate().unwrap();
        let fp = cert.fingerprint();
        let hex = fp.strip_prefix("sha-256 ").unwrap();
        assert_eq!(hex.len(), 32 * 3 - 1);
        assert!(hex
            .split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F'))));
        let parsed = Fingerprint::parse(fp).unwrap();
        assert!(parsed.matches(cert.der()));
        assert!(!parsed.matches(&cert.der()[1..]));
        // Each call makes a new key and serial.
        let other = DtlsCertificate::generate().unwrap();
        assert_ne!(other.fingerprint(), fp);
        assert!(!parsed.matches(other.der()));
    }

    /// The certificate's fields as OpenSSL reads them: `openssl x509` is an independent X.509
    /// parser; it must see a P-256 key, ecdsa-with-SHA256 and a self-signature that verifies.
    #[test]
    fn openssl_reads_the_certificate_as_self_signed_p256() {
        use std::process::Command;
        let cert = DtlsCertificate::generate().unwrap();
        let dir = std::env::temp_dir().join(format!("shardcast-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.der");
        std::fs::write(&path, cert.der()).unwrap();
        let text = Command::new("openssl")
            .args([
                "x509",
                "-inform",
                "DER",
                "-noout",
                "-text",
                "-fingerprint",
                "-sha256",
            ])
            .arg("-in")
            .arg(&path)
            .output()
            .expect("openssl (scripts/install-test-deps.sh installs it)");
        assert!(text.status.success());
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        assert!(text.contains("prime256v1"), "{text}");
        let fp_line = text
            .lines()
            .find_map(|l| l.strip_prefix("sha256 Fingerprint="))
            .unwrap();
        assert_eq!(
            cert.fingerprint().strip_prefix("sha-256 ").unwrap(),
            fp_line
        );
        let pem = dir.join("c.pem");
        let conv = Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(&path)
            .arg("-out")
            .arg(&pem)
            .status()
            .unwrap();
        assert!(conv.success());
        let verify = Command::new("openssl")
            .args(["verify", "-check_ss_sig", "-CAfile"])
            .arg(&pem)
            .arg(&pem)
            .output()
            .unwrap();
        // A leaf that is not a CA may be refused as a trust anchor by some OpenSSL versions;
        // the signature check itself must not be what fails.
        let out = String::from_utf8_lossy(&verify.stdout).to_string()
            + &String::from_utf8_lossy(&verify.stderr);
        assert!(!out.contains("signature failure"), "{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parse_accepts_rfc_8122_forms_and_refuses_others() {
        let sha256 = "sha-256 ".to_string() + &["AB"; 32].join(":");
        let fp = Fingerprint::parse(&sha256).unwrap();
        assert_eq!(fp.hash(), FingerprintHash::Sha256);
        assert_eq!(fp.digest(), &[0xAB; 32]);
        assert_eq!(
            Fingerprint::parse(&sha256.to_lowercase().replace("sha-256", "SHA-256")).unwrap(),
            fp
        );
        assert_eq!(
            Fingerprint::parse(&("sha-512 ".to_string() + &["01"; 64].join(":")))
                .unwrap()
                .hash(),
            FingerprintHash::Sha512
        );
        assert_eq!(
            Fingerprint::parse(&("sha-1 ".to_string() + &["01"; 20].join(":"))),
            Err(DtlsError::UnsupportedFingerprintHash)
        );
        assert_eq!(
            Fingerprint::parse("md5 00:11"),
            Err(DtlsError::UnsupportedFingerprintHash)
        );
        for bad in [
            "",
            "sha-256",
            "sha-256 ",
            "sha-256 AB:CD",
            "sha-256 ABC",
            &("sha-256 ".to_string() + &["AB"; 33].join(":")),
            &("sha-256 ".to_string() + &["AB"; 31].join(":") + ":G0"),
            &("sha-256 ".to_string() + &["AB"; 32].join(":") + ":"),
            &("sha-256 ".to_string() + &["é"; 32].join(":")),
        ] {
            assert!(
                matches!(
                    Fingerprint::parse(bad),
                    Err(DtlsError::MalformedFingerprint(_))
                ),
                "{bad:?}"
            );
        }
    }
}
