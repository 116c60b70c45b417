//! The DTLS 1.2 server that keys SRTP (RFC 5764), one per WebRTC session.
//!
//! A WHEP/WHIP answer says `a=setup:passive` (RFC 8842 §5), so the browser is the DTLS client
//! and we are the server. [`DtlsServer`] wraps dimpl's sans-IO engine (DTLS 1.2, ECDHE-ECDSA
//! with AES-GCM or ChaCha20-Poly1305, extended master secret required, RFC 7627) and adds what
//! WebRTC needs on top of it:
//!
//! - the client must present a certificate (dimpl sends CertificateRequest), and its DER must
//!   hash to the offer's `a=fingerprint` (RFC 8827 §6.5, RFC 8122 §5); a mismatch fails the
//!   handshake before our Finished leaves;
//! - the handshake must negotiate `use_srtp` (RFC 5764 §4.1.1); completion yields [`SrtpKeys`],
//!   the keying material exported with the label `EXTRACTOR-dtls_srtp` (RFC 5764 §4.2);
//! - datagrams that are not a run of well-framed DTLS 1.2 records (RFC 6347 §4.1) are refused
//!   before dimpl sees them, with the non-fatal [`DtlsError::Malformed`], so that a spoofed
//!   packet cannot end a session;
//! - application data (SCTP data channels, RFC 8261) is not supported and is dropped.
//!
//! **SRTP profiles.** dimpl 0.9's server picks by its own fixed preference, with no setting:
//! `SRTP_AEAD_AES_256_GCM` (0x0008), then `SRTP_AEAD_AES_128_GCM` (0x0007), then
//! `SRTP_AES128_CM_HMAC_SHA1_80` (0x0001) (RFC 5764 §4.1.2, RFC 7714 §14.2). Chromium and Firefox
//! both offer 0x0008 first, so the SRTP layer must take all three; a client offering none of them
//! gets a handshake without `use_srtp` and [`DtlsError::NoSrtpProfile`].
//!
//! **Bounds before the handshake** (dimpl's own): a stateless cookie exchange
//! (HelloVerifyRequest, RFC 6347 §4.2.1) before any per-client state; at most 30 buffered
//! incoming handshake records (`max_queue_rx`; more is the fatal `ReceiveQueueFull`) and 10
//! outgoing (`max_queue_tx`); 4 retransmissions per flight from a 1 s RTO doubling; the whole
//! handshake within 40 s. Replayed and out-of-window records are dropped by dimpl's replay
//! window (RFC 6347 §4.1.2.6); our outgoing queue holds at most [`MAX_QUEUED_DATAGRAMS`].
//!
//! Time is passed in, nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::cert::{DtlsCertificate, Fingerprint};

/// The largest datagram the server writes (dimpl's MTU setting); [`DtlsServer::poll_transmit`]
/// needs an `out` buffer at least this long.
pub const DTLS_MTU: usize = 1150;

/// Outgoing datagrams held between `handle_*` and `poll_transmit`; older ones are dropped first
/// (the flight is retransmitted on its timer anyway).
pub const MAX_QUEUED_DATAGRAMS: usize = 32;

/// The largest keying material any profile exports: 2 × (32-byte key + 12-byte salt) for
/// `SRTP_AEAD_AES_256_GCM` (RFC 7714 §12).
pub const MAX_SRTP_KEYING_LEN: usize = 88;

/// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 5764 §4.1.2).
pub const SRTP_AES128_CM_HMAC_SHA1_80: u16 = 0x0001;
/// `SRTP_AEAD_AES_128_GCM` (RFC 7714 §14.2).
pub const SRTP_AEAD_AES_128_GCM: u16 = 0x0007;
/// `SRTP_AEAD_AES_256_GCM` (RFC 7714 §14.2).
pub const SRTP_AEAD_AES_256_GCM: u16 = 0x0008;

/// What went wrong in the certificate, the fingerprint or the DTLS session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// Making the self-signed certificate failed at the named step.
    #[error("dtls certificate generation failed: {0}")]
    CertificateGeneration(&'static str),
    /// The `a=fingerprint` names a hash function we do not check (RFC 8122 §5).
    #[error("unsupported fingerprint hash function")]
    UnsupportedFingerprintHash,
    /// The `a=fingerprint` value is not `hash-func SP 2UHEX *(":" 2UHEX)` (RFC 8122 §5).
    #[error("malformed fingerprint: {0}")]
    MalformedFingerprint(&'static str),
    /// The datagram is not a run of DTLS 1.2 records (RFC 6347 §4.1); it was dropped and the
    /// session goes on. The only error that is not fatal.
    #[error("malformed dtls datagram: {0}")]
    Malformed(&'static str),
    /// The client's certificate does not hash to the offer's fingerprint (RFC 8827 §6.5).
    #[error("client certificate does not match the offer's fingerprint")]
    FingerprintMismatch,
    /// The handshake completed without a `use_srtp` profile we take (RFC 5764 §4.1.1).
    #[error("no srtp protection profile negotiated")]
    NoSrtpProfile,
    /// dimpl ended the session: a handshake failure, a fatal alert from the peer, a timeout, a
    /// full receive queue.
    #[error("dtls: {0}")]
    Protocol(#[from] dimpl::Error),
    /// The peer closed the session (`close_notify`, RFC 5246 §7.2.1) or it had failed before.
    #[error("dtls session closed")]
    Closed,
}

impl DtlsError {
    /// Whether the session is over: every error but [`DtlsError::Malformed`].
    pub fn is_fatal(&self) -> bool {
        !matches!(self, DtlsError::Malformed(_))
    }
}

/// The SRTP master keys and salts of both directions, as exported (RFC 5764 §4.2):
/// `client_write_key | server_write_key | client_write_salt | server_write_salt`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The negotiated protection profile's id (e.g. [`SRTP_AEAD_AES_128_GCM`]).
    pub profile_id: u16,
    material: [u8; MAX_SRTP_KEYING_LEN],
    material_len: usize,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material stays out of logs.
        f.debug_struct("SrtpKeys")
            .field("profile_id", &self.profile_id)
            .field("material_len", &self.material_len)
            .finish_non_exhaustive()
    }
}

impl SrtpKeys {
    /// The exported keying material: 2 × (key + salt) of the profile, 60 bytes for
    /// `AES128_CM_HMAC_SHA1_80`, 56 for `AEAD_AES_128_GCM`, 88 for `AEAD_AES_256_GCM`.
    pub fn material(&self) -> &[u8] {
        self.material.get(..self.material_len).unwrap_or(&[])
    }
}

/// What a session reports once, through [`DtlsServer::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake completed, the client's certificate matched: SRTP can start.
    Connected(SrtpKeys),
    /// The peer sent `close_notify`: the session is over.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Closed,
    Failed,
}

/// One WebRTC session's DTLS server (sans-IO).
pub struct DtlsServer {
    dtls: dimpl::Dtls,
    remote_fingerprint: Fingerprint,
    state: State,
    /// The client's certificate has been seen and matched.
    peer_verified: bool,
    keys: Option<SrtpKeys>,
    /// dimpl said Connected; with `keys` and `peer_verified` that makes us connected.
    dimpl_connected: bool,
    events: VecDeque<DtlsEvent>,
    out_queue: VecDeque<Vec<u8>>,
    /// dimpl writes each output here before it is queued.
    scratch: Vec<u8>,
    timeout: Option<Instant>,
}

impl std::fmt::Debug for DtlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsServer")
            .field("state", &self.state)
            .field("remote_fingerprint", &self.remote_fingerprint)
            .field("queued", &self.out_queue.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DtlsServer {
    /// A server for one session, presenting `cert` and accepting only a client certificate that
    /// hashes to `remote_fingerprint` (the offer's `a=fingerprint`).
    pub fn new(
        cert: Arc<DtlsCertificate>,
        remote_fingerprint: Fingerprint,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        let config = dimpl::Config::builder()
            .with_crypto_provider(dimpl::crypto::rust_crypto::default_provider())
            .mtu(DTLS_MTU)
            // RFC 8827 §6.5: both sides present certificates; ours is checked by fingerprint.
            .require_client_certificate(true)
            .build()?;
        let mut dtls = dimpl::Dtls::new_12(Arc::new(config), cert.inner.clone(), now);
        // Server role (RFC 8842 §5, `a=setup:passive`): wait for the ClientHello.
        dtls.set_active(false);
        let mut server = DtlsServer {
            dtls,
            remote_fingerprint,
            state: State::Handshaking,
            peer_verified: false,
            keys: None,
            dimpl_connected: false,
            events: VecDeque::with_capacity(2),
            out_queue: VecDeque::with_capacity(8),
            scratch: vec![0; DTLS_MTU],
            timeout: None,
        };
        // dimpl's server draws its random on the first timeout call.
        server.dtls.handle_timeout(now)?;
        server.drain()?;
        Ok(server)
    }

    /// Feeds one received datagram (a DTLS datagram by RFC 7983 §7's first-byte rule).
    ///
    /// [`DtlsError::Malformed`] drops the datagram and leaves the session as it was; every other
    /// error ends the session (see [`DtlsError::is_fatal`]).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        self.check_open()?;
        check_record_framing(datagram)?;
        let result = self
            .dtls
            .handle_timeout(now)
            .and_then(|()| self.dtls.handle_packet(datagram));
        if let Err(e) = result {
            return Err(self.fail(e.into()));
        }
        self.drain()
    }

    /// Writes the next datagram to send into `out` and returns its length; `None` when there
    /// is nothing to send. `out` should hold [`DTLS_MTU`] bytes; a datagram that does not fit
    /// is dropped (its flight is retransmitted on the timer).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<usize> {
        while let Some(datagram) = self.out_queue.pop_front() {
            if let Some(dst) = out.get_mut(..datagram.len()) {
                dst.copy_from_slice(&datagram);
                return Some(datagram.len());
            }
        }
        None
    }

    /// When [`DtlsServer::handle_timeout`] should next be called (flight retransmission,
    /// handshake deadline); `None` once the session is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking | State::Connected => self.timeout,
            State::Closed | State::Failed => None,
        }
    }

    /// Advances the timers to `now`: retransmits a flight, or fails the handshake past its
    /// deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        self.check_open()?;
        if let Err(e) = self.dtls.handle_timeout(now) {
            return Err(self.fail(e.into()));
        }
        self.drain()
    }

    /// The next event, each reported once.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// Whether the handshake completed with a matching certificate and an SRTP profile, and the
    /// session has not been closed since.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the session is over (closed by the peer or failed).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// The SRTP keys, once connected.
    pub fn srtp_keys(&self) -> Option<&SrtpKeys> {
        match self.state {
            State::Connected => self.keys.as_ref(),
            _ => None,
        }
    }

    fn check_open(&self) -> Result<(), DtlsError> {
        match self.state {
            State::Handshaking | State::Connected => Ok(()),
            State::Closed | State::Failed => Err(DtlsError::Closed),
        }
    }

    /// Marks the session failed and forgets anything not yet sent: after a failed certificate
    /// check our Finished must not leave.
    fn fail(&mut self, error: DtlsError) -> DtlsError {
        self.state = State::Failed;
        self.out_queue.clear();
        self.timeout = None;
        error
    }

    /// Takes everything dimpl has to say until its closing `Timeout`.
    fn drain(&mut self) -> Result<(), DtlsError> {
        loop {
            match self.dtls.poll_output(&mut self.scratch) {
                dimpl::Output::Packet(p) => {
                    if self.out_queue.len() == MAX_QUEUED_DATAGRAMS {
                        self.out_queue.pop_front();
                    }
                    self.out_queue.push_back(p.to_vec());
                }
                dimpl::Output::BufferTooSmall { needed } => {
                    // dimpl writes no datagram above the MTU; a record that does is a bug we
                    // should not loop on.
                    if needed > DTLS_MTU * 4 {
                        return Err(self.fail(DtlsError::Malformed("oversized output")));
                    }
                    self.scratch.resize(needed, 0);
                }
                dimpl::Output::Timeout(t) => {
                    self.timeout = Some(t);
                    break;
                }
                dimpl::Output::PeerCert(der) => {
                    if !self.remote_fingerprint.matches(der) {
                        return Err(self.fail(DtlsError::FingerprintMismatch));
                    }
                    self.peer_verified = true;
                }
                dimpl::Output::KeyingMaterial(material, profile) => {
                    self.keys = srtp_keys(&material, profile);
                }
                dimpl::Output::Connected => self.dimpl_connected = true,
                // Data channels are not supported (module docs).
                dimpl::Output::ApplicationData(_) => {}
                dimpl::Output::CloseNotify => {
                    self.state = State::Closed;
                    self.timeout = None;
                    self.events.push_back(DtlsEvent::Closed);
                    // dimpl may still queue our own close_notify; send it, then stop.
                }
                // Output is non-exhaustive; a future event is not one we act on.
                _ => {}
            }
        }
        if self.state == State::Handshaking && self.dimpl_connected {
            if !self.peer_verified {
                // dimpl requires the certificate; never connect without having checked it.
                return Err(self.fail(DtlsError::FingerprintMismatch));
            }
            let Some(keys) = self.keys else {
                return Err(self.fail(DtlsError::NoSrtpProfile));
            };
            self.state = State::Connected;
            self.events.push_back(DtlsEvent::Connected(keys));
        }
        Ok(())
    }
}

/// The profile's id and the exported material, if the profile is one we know and the length
/// is the profile's (RFC 5764 §4.2: 2 × (key + salt)).
fn srtp_keys(material: &[u8], profile: dimpl::SrtpProfile) -> Option<SrtpKeys> {
    let (profile_id, len) = match profile {
        dimpl::SrtpProfile::AES128_CM_SHA1_80 => (SRTP_AES128_CM_HMAC_SHA1_80, 2 * (16 + 14)),
        dimpl::SrtpProfile::AEAD_AES_128_GCM => (SRTP_AEAD_AES_128_GCM, 2 * (16 + 12)),
        dimpl::SrtpProfile::AEAD_AES_256_GCM => (SRTP_AEAD_AES_256_GCM, 2 * (32 + 12)),
        _ => return None,
    };
    if material.len() != len {
        return None;
    }
    let mut keys = SrtpKeys {
        profile_id,
        material: [0; MAX_SRTP_KEYING_LEN],
        material_len: len,
    };
    keys.material.get_mut(..len)?.copy_from_slice(material);
    Some(keys)
}

/// Checks that `datagram` is one or more whole DTLS 1.2 records (RFC 6347 §4.1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  ContentType  |    ProtocolVersion            |    epoch ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///      ... epoch  |         sequence_number (48 bits) ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |    length     |  fragment ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Content types 20–23 (change_cipher_spec, alert, handshake, application_data, RFC 5246
/// §6.2.1); version DTLS 1.0 (0xFEFF, allowed in a ClientHello record, RFC 6347 §4.1) or 1.2
/// (0xFEFD); length at most 2^14 + 2048 (RFC 5246 §6.2.3).
fn check_record_framing(datagram: &[u8]) -> Result<(), DtlsError> {
    const HEADER: usize = 13;
    if datagram.is_empty() {
        return Err(DtlsError::Malformed("empty datagram"));
    }
    let mut rest = datagram;
    while !rest.is_empty() {
        let Some((header, body)) = rest.split_at_checked(HEADER) else {
            return Err(DtlsError::Malformed("truncated record header"));
        };
        let &[content_type, major, minor, _, _, _, _, _, _, _, _, len_hi, len_lo] = header else {
            return Err(DtlsError::Malformed("truncated record header"));
        };
        if !(20..=23).contains(&content_type) {
            return Err(DtlsError::Malformed("unknown content type"));
        }
        if major != 0xFE || !(minor == 0xFF || minor == 0xFD) {
            return Err(DtlsError::Malformed("not dtls 1.0 or 1.2"));
        }
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if len > (1 << 14) + 2048 {
            return Err(DtlsError::Malformed("record longer than 2^14 + 2048"));
        }
        let Some((_, next)) = body.split_at_checked(len) else {
            return Err(DtlsError::Malformed("truncated record"));
        };
        rest = next;
    }
    Ok(())
}

/// Fuzz entry point: `data` cut into datagrams (each a length byte and that many bytes) fed to
/// a fresh server, then its outputs and timers drained; must never panic.
#[cfg(any(test, fuzzing))]
pub fn fuzz_dtls(data: &[u8]) {
    use std::sync::OnceLock;
    use std::time::Duration;
    static CERT: OnceLock<Option<Arc<DtlsCertificate>>> = OnceLock::new();
    let Some(cert) = CERT
        .get_or_init(|| DtlsCertificate::generate().ok().map(Arc::new))
        .clone()
    else {
        return;
    };
    let Ok(fp) = Fingerprint::parse(cert.fingerprint()) else {
        return;
    };
    let now = Instant::now();
    let Ok(mut server) = DtlsServer::new(cert, fp, now) else {
        return;
    };
    let mut out = [0u8; DTLS_MTU];
    // The whole input as one datagram first (a seed file is one captured datagram), then the
    // length-prefixed split.
    let _ = server.handle_datagram(now, data);
    let mut rest = data;
    let mut t = now;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        t += Duration::from_millis(u64::from(len));
        let _ = server.handle_datagram(t, datagram);
        while server.poll_transmit(&mut out).is_some() {}
        if let Some(deadline) = server.poll_timeout() {
            if deadline <= t {
                let _ = server.handle_timeout(t);
            }
        }
        if server.is_closed() {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
