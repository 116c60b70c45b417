//! WHIP publishers (RFC 9725) as the session core sees them: an SDP offer over HTTP becomes
//! a publisher with the same publish rules and the same one-publisher-per-path as RTSP and
//! RTMP publishers (`docs/design/webrtc.md`, "WHIP").
//!
//! The core decides and answers at once: authorization (the path's open pattern, or its
//! publish key given as `Authorization: Bearer` (RFC 9725 §4.5) or `?key=`), negotiation
//! (H.264 `packetization-mode=1` and Opus, what the live log carries), our ICE credentials
//! and the candidate (the UDP ingest port). Everything after the answer — ICE, DTLS, SRTP,
//! depacketizing into the live log — is the control thread's ingest shell
//! (`control::whip`). A publisher is named over HTTP by an unguessable resource key (its
//! `Location`), as WHEP viewers are; whoever holds the key may end it with `DELETE`.

use super::publish::KeyedPublishRefusal;
use super::*;
use crate::webrtc::cert::Fingerprint;
use crate::webrtc::ice::{generate_credentials, CREDENTIAL_RANDOM_BYTES};
use crate::webrtc::peer::PeerSetup;
use crate::webrtc::sdp::{
    negotiate_publish, parse_offer, write_answer, AnswerParams, ChosenCodec, MediaKind,
};

/// A WHIP `POST`, as the HTTP side received it.
#[derive(Debug)]
pub struct WhipOffer<'a> {
    /// The SDP offer (the request body).
    pub sdp: &'a [u8],
    /// The stream key from `Authorization: Bearer` or `?key=`.
    pub key: Option<&'a str>,
    /// The HTTP client's address (logged; the media may come from another address: ICE
    /// decides where it comes from).
    pub peer: SocketAddr,
}

/// Why a WHIP request is refused; `status()` is its HTTP status, `Display` its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhipRefusal {
    /// WebRTC is off (`--webrtc-listen off`): no certificate, no candidate address.
    #[error("WebRTC is off on this server (--webrtc-listen)")]
    Off,
    /// The UDP ingest port could not be bound at start.
    #[error("this server has no UDP ingest port, which WHIP publishers send to")]
    NoIngestPort,
    /// The publish rules refused.
    #[error("{0}")]
    Publish(#[from] KeyedPublishRefusal),
    /// The offer could not be read.
    #[error("unreadable offer: {0}")]
    BadOffer(String),
    /// The offer has nothing the server can receive.
    #[error("{0}")]
    Unprocessable(String),
}

impl WhipRefusal {
    /// The HTTP status code (RFC 9725 §4.2 leaves errors to HTTP semantics).
    pub fn status(&self) -> u16 {
        match self {
            WhipRefusal::Off | WhipRefusal::NoIngestPort => 503,
            WhipRefusal::Publish(p) => match p {
                KeyedPublishRefusal::BadPath(_) => 404,
                KeyedPublishRefusal::KeyNeeded(_) => 401,
                KeyedPublishRefusal::NotAllowed(_) => 403,
                KeyedPublishRefusal::Stored(_) | KeyedPublishRefusal::Taken(_) => 409,
            },
            WhipRefusal::BadOffer(_) => 400,
            WhipRefusal::Unprocessable(_) => 422,
        }
    }
}

/// One track a WHIP publisher will send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipTrack {
    /// Video or audio.
    pub kind: TrackKind,
    /// The payload type it arrives with (the offer's number).
    pub payload_type: u8,
    /// H.264 (its `profile-level-id`; SPS and PPS come in band) or Opus.
    pub codec: ChosenCodec,
    /// The SSRCs the offer announced for it (`a=ssrc`), primary and `rtx`; may be empty.
    pub remote_ssrcs: Vec<u32>,
}

/// An accepted publisher: what the ingest shell runs.
#[derive(Debug)]
pub struct WhipPublisher {
    /// The publisher's id in ingest (its log's publisher).
    pub id: SessionId,
    /// The stream path (`live/cam1`).
    pub path: String,
    /// The HTTP client's address.
    pub peer: SocketAddr,
    /// ICE credentials, the browser's fingerprint, our certificate.
    pub transport: PeerSetup,
    /// The tracks, video first when there is one.
    pub tracks: Vec<WhipTrack>,
}

/// An accepted offer: the answer for the HTTP response and the publisher for the shell.
#[derive(Debug)]
pub struct WhipAccepted {
    /// The SDP answer.
    pub answer: String,
    /// The resource key (`/whip/session/{key}`).
    pub key: String,
    /// The publisher to run.
    pub publisher: WhipPublisher,
}

/// What the core keeps of a WHIP publisher: its path stays taken until it ends.
#[derive(Debug, Clone)]
pub(super) struct WhipRecord {
    /// The publisher.
    pub(super) id: SessionId,
    /// Its stream path.
    pub(super) path: String,
}

impl SessionCore {
    /// Where WHIP publishers send: the UDP ingest port, at an address browsers can reach.
    /// `None` turns WHIP off.
    pub fn set_whip_addr(&mut self, addr: Option<SocketAddr>) {
        self.whip_addr = addr;
    }

    /// `POST /whip/{path}`: authorizes, negotiates and answers a publisher's offer.
    pub fn whip_offer(
        &mut self,
        path: &str,
        offer: &WhipOffer<'_>,
        env: &mut Env<'_>,
    ) -> Result<WhipAccepted, WhipRefusal> {
        let settings = self.webrtc.clone().ok_or(WhipRefusal::Off)?;
        let candidate = self.whip_addr.ok_or(WhipRefusal::NoIngestPort)?;
        if let Err(refusal) = self.authorize_keyed_publish(path, offer.key) {
            if self.may_log(offer.peer.ip(), env.now) {
                tracing::info!(peer = %offer.peer, stream = %path, "whip publish refused: {refusal}");
            }
            return Err(refusal.into());
        }
        let parsed = parse_offer(offer.sdp).map_err(|e| WhipRefusal::BadOffer(e.to_string()))?;
        let negotiated =
            negotiate_publish(&parsed).map_err(|e| WhipRefusal::Unprocessable(e.to_string()))?;
        let remote_fingerprint = Fingerprint::parse(&negotiated.remote_fingerprint)
            .map_err(|e| WhipRefusal::BadOffer(format!("a=fingerprint: {e}")))?;
        let mut id: SessionId = env.rng.gen();
        while id == 0 || self.sessions.contains_key(&id) || self.publishers.contains_key(&id) {
            id = env.rng.gen();
        }
        let (local_ufrag, local_pwd) = loop {
            let mut random = [0u8; CREDENTIAL_RANDOM_BYTES];
            env.rng.fill_bytes(&mut random);
            let (ufrag, pwd) = generate_credentials(&random);
            if !self.whep_keys.values().any(|w| w.ufrag == ufrag) {
                break (ufrag, pwd);
            }
        };
        let mut key_bytes = [0u8; 16];
        env.rng.fill_bytes(&mut key_bytes);
        let key: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut tracks: Vec<WhipTrack> = negotiated
            .accepted()
            .map(|a| WhipTrack {
                kind: match a.kind {
                    MediaKind::Video => TrackKind::Video,
                    _ => TrackKind::Audio,
                },
                payload_type: a.payload_type,
                codec: a.codec.clone(),
                remote_ssrcs: a.remote_ssrcs.clone(),
            })
            .collect();
        tracks.sort_by_key(|t| t.kind != TrackKind::Video);
        let cname = format!("shardcast@{}", candidate.ip());
        let answer = write_answer(
            &parsed,
            &negotiated,
            &AnswerParams {
                ice_ufrag: &local_ufrag,
                ice_pwd: &local_pwd,
                fingerprint: settings.certificate.fingerprint(),
                candidate,
                session_id: env.rng.next_u64() >> 1,
                cname: &cname,
                stream_id: "shardcast",
                send_ssrcs: &[],
                sprop_parameter_sets: false,
            },
        );
        self.whip_keys.insert(
            key.clone(),
            WhipRecord {
                id,
                path: path.to_owned(),
            },
        );
        let warnings: String = negotiated
            .warnings
            .iter()
            .map(|w| format!("; {w}"))
            .collect();
        tracing::info!(peer = %offer.peer, stream = %path, "whip publisher accepted{warnings}");
        Ok(WhipAccepted {
            answer,
            key,
            publisher: WhipPublisher {
                id,
                path: path.to_owned(),
                peer: offer.peer,
                transport: PeerSetup {
                    local_ufrag,
                    local_pwd,
                    remote_ufrag: negotiated.remote_ice_ufrag.clone(),
                    remote_pwd: negotiated.remote_ice_pwd.clone(),
                    remote_fingerprint,
                    certificate: settings.certificate,
                },
                tracks,
            },
        })
    }

    /// `DELETE /whip/session/{key}`: the publisher the key names, forgotten here (the shell
    /// ends its ingest). `None` when no publisher has that key.
    pub fn whip_delete(&mut self, key: &str) -> Option<SessionId> {
        self.whip_keys.remove(key).map(|r| r.id)
    }

    /// A WHIP publisher ended on its own (consent expired, DTLS closed, no media): its path
    /// is free again.
    pub fn whip_ended(&mut self, id: SessionId) {
        self.whip_keys.retain(|_, r| r.id != id);
    }
}
