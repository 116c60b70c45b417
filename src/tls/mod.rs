//! RTSPS (RTSP over TLS, `rtsps://`): the server's certificate, the TLS 1.3 handshake
//! (rustls's), and our own record layer after it ([`record`], which says why).
//!
//! [`Handshake`] is sans-IO: the connection shell feeds it the bytes it reads and writes the
//! bytes it produces; it hands rustls whole records only, so when the handshake completes,
//! whatever the client sent after its `Finished` is still in the caller's buffer for the
//! [`record::Opener`].

pub mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ConnectionTrafficSecrets, ServerConfig, ServerConnection};

pub use record::{Closure, Opened, Opener, RecordError, Sealer, Suite};

/// Why the TLS side could not start or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("tls certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("tls key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration or the handshake.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A handshake record longer than TLS allows (RFC 8446 §5.1).
    #[error("tls: record of {0} bytes during the handshake")]
    RecordTooLong(usize),
    /// The first bytes are not a TLS record.
    #[error("tls: not a TLS record")]
    NotTls,
    /// The negotiated suite's secrets are of a kind we do not seal.
    #[error("tls: negotiated cipher suite not supported by the record layer")]
    Suite,
    /// Building the record layer from the secrets failed.
    #[error("tls: {0}")]
    Record(#[from] RecordError),
}

/// ring's provider: rustls 0.23.48 deprecates it for its lack of post-quantum key exchange,
/// but the alternative (aws-lc-rs) is a C/cmake build this project keeps out, and ring 0.17
/// is already in the tree (SRTP). X25519 and the NIST curves remain.
#[allow(deprecated)]
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    ring_provider::default_provider()
}

/// Loads the PEM certificate chain and private key into a rustls server configuration:
/// TLS 1.3 only, ring's cipher suites, no session tickets (nothing may follow the
/// handshake that our record layer would have to understand), secrets extractable.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.to_owned(),
            reason: "no CERTIFICATE in the file".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, private)?;
    config.enable_secret_extraction = true;
    config.send_tls13_tickets = 0;
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// What one handshake step asks of the shell.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write what [`Handshake::take_output`] gives, then read more.
    Continue,
    /// The handshake is complete: call [`Handshake::finish`].
    Done,
}

/// One server handshake, fed whole records.
pub struct Handshake {
    conn: ServerConnection,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake").finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake under `config`.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(Self {
            conn: ServerConnection::new(config)?,
        })
    }

    /// Hands the whole records at the front of `input` to rustls (draining them), stopping
    /// as soon as the handshake is complete, so that later records stay in `input`.
    pub fn feed(&mut self, input: &mut Vec<u8>) -> Result<Step, TlsError> {
        let mut pos = 0;
        let result = loop {
            if !self.conn.is_handshaking() {
                break Ok(Step::Done);
            }
            let Some(len) = record::record_len(&input[pos..]) else {
                break Ok(Step::Continue);
            };
            if len > record::HEADER_LEN + record::MAX_CIPHERTEXT {
                break Err(TlsError::RecordTooLong(len));
            }
            // RFC 8446 §5.1: a ContentType (20–23) and a legacy version 3.x. Anything else
            // (an HTTP request, random bytes) fails here without waiting for a "record".
            if !(20..=23).contains(&input[pos]) || input[pos + 1] != 3 {
                break Err(TlsError::NotTls);
            }
            if input.len() < pos + len {
                break Ok(Step::Continue);
            }
            let mut rec = &input[pos..pos + len];
            let fed = (|| {
                while !rec.is_empty() {
                    self.conn.read_tls(&mut rec).map_err(|e| {
                        TlsError::Rustls(rustls::Error::General(format!("read_tls: {e}")))
                    })?;
                }
                self.conn.process_new_packets()?;
                Ok::<(), TlsError>(())
            })();
            pos += len;
            if let Err(e) = fed {
                break Err(e);
            }
        };
        input.drain(..pos);
        result
    }

    /// Appends what rustls has to send (handshake messages, or the alert after a failure).
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// The negotiated record layer, both halves (call once [`Step::Done`] was returned and
    /// [`Handshake::take_output`] emptied).
    pub fn finish(self) -> Result<(Sealer, Opener), TlsError> {
        let secrets = self.conn.dangerous_extract_secrets()?;
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let (suite, key, iv) = split(&tx)?;
        let sealer = Sealer::new(suite, key, iv, tx_seq)?;
        let (suite, key, iv) = split(&rx)?;
        let opener = Opener::new(suite, key, iv, rx_seq)?;
        Ok((sealer, opener))
    }
}

fn split(s: &ConnectionTrafficSecrets) -> Result<(Suite, &[u8], &[u8]), TlsError> {
    match s {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            Ok((Suite::Aes128Gcm, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            Ok((Suite::Aes256Gcm, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            Ok((Suite::Chacha20Poly1305, key.as_ref(), iv.as_ref()))
        }
        _ => Err(TlsError::Suite),
    }
}

#[cfg(test)]
mod tests;
