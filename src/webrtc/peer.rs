//! One WebRTC session's transport, sans-IO: ICE-lite checks, then the DTLS handshake from
//! the address the checks nominated, then SRTP/SRTCP with the keys DTLS exported
//! (RFC 8827 §6.5; RFC 5764 §4.2). The shard that owns the session feeds it the datagrams
//! its port classified ([`super::Demux`]) and sends what it returns; this type never touches
//! a socket or a clock.
//!
//! Whom it trusts: nothing reaches DTLS or SRTCP unless it comes from the selected address
//! (an address that sent a binding request carrying our ICE password and `USE-CANDIDATE`),
//! and media goes only there. The browser's certificate must match the fingerprint of its
//! offer, so the keys belong to whoever signalled the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::cert::{DtlsCertificate, Fingerprint};
use super::dtls::{DtlsError, DtlsEvent, DtlsServer};
use super::ice::{BindingOutcome, IceError, IceLite};
use super::srtp::{SrtpError, SrtpKeyingMaterial, SrtpProfile, SrtpReceiver, SrtpSender};
use super::stun::StunMessage;

/// What a session's transport needs from signalling: both sides' ICE credentials and the
/// browser's certificate fingerprint (from the offer), and our certificate.
#[derive(Debug, Clone)]
pub struct PeerSetup {
    /// Our ICE username fragment (unique per session: the shard finds sessions by it).
    pub local_ufrag: String,
    /// Our ICE password.
    pub local_pwd: String,
    /// The browser's ICE username fragment.
    pub remote_ufrag: String,
    /// The browser's ICE password.
    pub remote_pwd: String,
    /// The offer's `a=fingerprint`.
    pub remote_fingerprint: Fingerprint,
    /// The process's DTLS certificate (its fingerprint is in the answer).
    pub certificate: Arc<DtlsCertificate>,
}

/// Why a datagram was refused, or the session cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// An ICE check we drop without answering.
    #[error("{0}")]
    Ice(#[from] IceError),
    /// DTLS refused a datagram or failed.
    #[error("dtls: {0}")]
    Dtls(#[from] DtlsError),
    /// SRTP refused a packet (bad tag, replay) or the keys were unusable.
    #[error("srtp: {0}")]
    Srtp(#[from] SrtpError),
    /// DTLS or SRTCP from an address that is not the nominated one.
    #[error("datagram from {0}, which no ICE check nominated")]
    NotSelected(SocketAddr),
    /// SRTCP before the DTLS handshake keyed SRTP.
    #[error("srtcp before the dtls handshake completed")]
    NotKeyed,
}

impl PeerError {
    /// Whether the session cannot go on (DTLS failed or was closed); other errors drop one
    /// datagram.
    pub fn is_fatal(&self) -> bool {
        match self {
            PeerError::Dtls(e) => e.is_fatal(),
            _ => false,
        }
    }
}

/// A change in the session's transport the shard acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// An ICE check nominated (or moved to) this address: media goes here from now on.
    Selected(SocketAddr),
    /// DTLS completed and SRTP is keyed with this profile: media may flow.
    Keyed(SrtpProfile),
    /// The browser closed DTLS (`close_notify`): the session is over.
    Closed,
}

/// One session's ICE, DTLS and SRTP state.
pub struct PeerTransport {
    ice: IceLite,
    dtls: DtlsServer,
    send: Option<SrtpSender>,
    receive: Option<SrtpReceiver>,
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport")
            .field("local_ufrag", &self.ice.local_ufrag())
            .field("selected", &self.ice.selected())
            .field("keyed", &self.send.is_some())
            .finish_non_exhaustive()
    }
}

impl PeerTransport {
    /// A transport waiting for the browser's first ICE check.
    pub fn new(setup: PeerSetup, now: Instant) -> Result<PeerTransport, PeerError> {
        let ice = IceLite::new(
            &setup.local_ufrag,
            &setup.local_pwd,
            &setup.remote_ufrag,
            &setup.remote_pwd,
            now,
        );
        let dtls = DtlsServer::new(setup.certificate, setup.remote_fingerprint, now)?;
        Ok(PeerTransport {
            ice,
            dtls,
            send: None,
            receive: None,
        })
    }

    /// Our ICE username fragment.
    pub fn local_ufrag(&self) -> &str {
        self.ice.local_ufrag()
    }

    /// The nominated address, where media goes.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.ice.selected()
    }

    /// Whether SRTP is keyed (media may flow).
    pub fn is_keyed(&self) -> bool {
        self.send.is_some()
    }

    /// A STUN message from `from`: answers it into `out` (the length to send back to
    /// `from`), with the event when the check nominated a new address (RFC 8445 §7.3).
    pub fn on_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &StunMessage<'_>,
        out: &mut [u8],
    ) -> Result<(usize, Option<PeerEvent>), PeerError> {
        match self.ice.handle_binding(now, from, msg, out)? {
            BindingOutcome::Success { len, changed, .. } => {
                Ok((len, changed.then_some(PeerEvent::Selected(from))))
            }
            BindingOutcome::Error { len, .. } => Ok((len, None)),
        }
    }

    /// A DTLS datagram from `from` (RFC 7983 §7: first byte 20–63). Only the selected
    /// address may speak DTLS; after it, the records to send are in [`Self::poll_transmit`].
    pub fn on_dtls(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Option<PeerEvent>, PeerError> {
        if self.ice.selected() != Some(from) {
            return Err(PeerError::NotSelected(from));
        }
        self.dtls.handle_datagram(now, datagram)?;
        self.take_dtls_event()
    }

    /// The next DTLS record flight datagram to send to the selected address, written into
    /// `out` (at least [`super::dtls::DTLS_MTU`] bytes); `None` when nothing is waiting.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<usize> {
        self.dtls.poll_transmit(out)
    }

    /// When [`Self::handle_timeout`] is due next (DTLS retransmission).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dtls.poll_timeout()
    }

    /// Runs DTLS timers (a lost flight is sent again).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Option<PeerEvent>, PeerError> {
        self.dtls.handle_timeout(now)?;
        self.take_dtls_event()
    }

    fn take_dtls_event(&mut self) -> Result<Option<PeerEvent>, PeerError> {
        match self.dtls.poll_event() {
            Some(DtlsEvent::Connected(keys)) => {
                let profile = SrtpProfile::from_dtls_id(keys.profile_id)?;
                // RFC 5764 §4.2: we are the DTLS server, so we send with the server's key.
                let (local, remote) = SrtpKeyingMaterial::split(profile, keys.material(), true)?;
                self.send = Some(SrtpSender::new(&local));
                self.receive = Some(SrtpReceiver::new(&remote));
                Ok(Some(PeerEvent::Keyed(profile)))
            }
            Some(DtlsEvent::Closed) => Ok(Some(PeerEvent::Closed)),
            None => Ok(None),
        }
    }

    /// An SRTCP packet from `from` (RFC 5761 §4: second byte 192–223), decrypted in place;
    /// returns the RTCP length. Refused unless from the selected address and keyed.
    pub fn on_srtcp(&mut self, from: SocketAddr, buf: &mut [u8]) -> Result<usize, PeerError> {
        if self.ice.selected() != Some(from) {
            return Err(PeerError::NotSelected(from));
        }
        let receive = self.receive.as_mut().ok_or(PeerError::NotKeyed)?;
        Ok(receive.unprotect_rtcp(buf)?)
    }

    /// An SRTP packet from `from` (a WHIP publisher's media), decrypted in place; returns
    /// the RTP length.
    pub fn on_srtp(&mut self, from: SocketAddr, buf: &mut [u8]) -> Result<usize, PeerError> {
        if self.ice.selected() != Some(from) {
            return Err(PeerError::NotSelected(from));
        }
        let receive = self.receive.as_mut().ok_or(PeerError::NotKeyed)?;
        Ok(receive.unprotect_rtp(buf)?)
    }

    /// The SRTP sender once keyed: the shard protects each packet with it into its send slab.
    pub fn sender(&mut self) -> Option<&mut SrtpSender> {
        self.send.as_mut()
    }

    /// Whether the session should end now: no consent (RFC 7675 §5.1: 30 s without a valid
    /// check from the selected address; before nomination, the setup timeout), or DTLS closed.
    pub fn is_over(&self, now: Instant) -> bool {
        self.ice.consent_expired(now) || self.dtls.is_closed()
    }
}

/// Whether an RTP-range datagram (RFC 7983 §7: first byte 128–191) is RTCP: RFC 5761 §4,
/// with rtcp-mux the second byte of RTCP (its packet type) is 192–223.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram.get(1), Some(192..=223))
}

#[cfg(test)]
mod tests;
