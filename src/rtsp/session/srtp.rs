//! SRTP keying for RTSPS viewers with MIKEY (RFC 3830 over RFC 4567), sans-IO: the keys a
//! DESCRIBE on a secure connection offers (one fresh master key per media section, sent in
//! `a=key-mgmt:mikey`, remembered on the connection), and the client's key a SETUP's
//! `KeyMgmt` header carries (for the SRTCP receiver reports it sends).
//!
//! Only over RTSPS: the keys travel in the clear inside the MIKEY message (NULL KEMAC,
//! RFC 3830 §6.2), which TLS protects; over plain RTSP nothing is offered and an `RTP/SAVP`
//! SETUP is 461 (`docs/design/reach.md`, "SRTP over RTSPS").

use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::{Rng, RngCore};

use crate::media::MediaFile;
use crate::rtsp::mikey::{self, CryptoSession, PskInit, MASTER_KEY_LEN, MASTER_SALT_LEN};
use crate::shard::SrtpKeys;
use crate::webrtc::srtp::{MasterKey, SrtpProfile, SrtpReceiver};
use crate::wire::ntp::NtpTime;
use crate::wire::rtp::Ssrc;

/// Longest `KeyMgmt` `data` read (base64 of a MIKEY message): GStreamer's is ~140 bytes; a
/// longer one is refused before decoding.
const MAX_KEYMGMT_DATA: usize = 2048;

/// The keys one DESCRIBE offered on a connection: per track, our master key and salt and
/// the SSRC the SETUP will use (named in the MIKEY crypto-session map, RFC 3830 §6.1.1).
#[derive(Clone)]
pub(super) struct SrtpOffer {
    /// The media described.
    pub(super) media: Arc<MediaFile>,
    /// Per track: master key ‖ salt, SSRC.
    pub(super) tracks: Vec<([u8; MASTER_KEY_LEN + MASTER_SALT_LEN], Ssrc)>,
}

impl std::fmt::Debug for SrtpOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpOffer")
            .field("media", &self.media.name)
            .field("tracks", &self.tracks.len())
            .finish_non_exhaustive()
    }
}

impl SrtpOffer {
    /// Fresh random keys for every track of `media`; `ssrc_of(track)` is the SSRC a live
    /// stream's track already has (its viewers share it), `None` for a file (a random one,
    /// which the SETUP then uses).
    pub(super) fn new(
        media: &Arc<MediaFile>,
        ssrc_of: impl Fn(usize) -> Option<Ssrc>,
        rng: &mut dyn RngCore,
    ) -> Self {
        let tracks = (0..media.index.tracks.len())
            .map(|i| {
                let mut key = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
                rng.fill_bytes(&mut key);
                (key, ssrc_of(i).unwrap_or_else(|| rng.gen()))
            })
            .collect();
        Self {
            media: media.clone(),
            tracks,
        }
    }

    /// The base64 MIKEY message of each track for its `a=key-mgmt:mikey` attribute (RFC 4567
    /// §3.1): `PSK_INIT` with a NULL KEMAC (`rtsp::mikey::build_psk_init`).
    pub(super) fn key_mgmt(&self, wall: SystemTime, rng: &mut dyn RngCore) -> Vec<String> {
        self.tracks
            .iter()
            .map(|(both, ssrc)| {
                let mut key = [0u8; MASTER_KEY_LEN];
                let mut salt = [0u8; MASTER_SALT_LEN];
                key.copy_from_slice(&both[..MASTER_KEY_LEN]);
                salt.copy_from_slice(&both[MASTER_KEY_LEN..]);
                let mut rand = [0u8; 16];
                rng.fill_bytes(&mut rand);
                let message = mikey::build_psk_init(&PskInit {
                    csb_id: rng.gen(),
                    sessions: &[CryptoSession {
                        policy: 0,
                        ssrc: ssrc.0,
                        roc: 0,
                    }],
                    ntp_utc: NtpTime::from_system_time(wall).0,
                    rand,
                    key,
                    salt,
                });
                BASE64.encode(message)
            })
            .collect()
    }

    /// The keys of `track` for a SETUP, with the client's key when it sent one.
    pub(super) fn keys(
        &self,
        track: usize,
        theirs: Option<[u8; MASTER_KEY_LEN + MASTER_SALT_LEN]>,
    ) -> Option<(SrtpKeys, Ssrc)> {
        let (ours, ssrc) = self.tracks.get(track)?;
        Some((
            SrtpKeys {
                ours: *ours,
                theirs,
            },
            *ssrc,
        ))
    }
}

/// The client's SRTP master key ‖ salt from a SETUP's `KeyMgmt` header (RFC 4567 §3.2):
/// `Ok(None)` without the header (its SRTCP is then dropped and counted), an error naming
/// what is wrong with a header that is not one MIKEY `PSK_INIT` with a NULL KEMAC.
pub(super) fn client_key(
    header: Option<&str>,
) -> Result<Option<[u8; MASTER_KEY_LEN + MASTER_SALT_LEN]>, String> {
    let Some(header) = header else {
        return Ok(None);
    };
    let data = mikey::keymgmt_data(header).ok_or("KeyMgmt names no prot=mikey data")?;
    if data.len() > MAX_KEYMGMT_DATA {
        return Err(format!("KeyMgmt data of {} bytes", data.len()));
    }
    let message = BASE64
        .decode(data)
        .map_err(|e| format!("KeyMgmt data is not base64: {e}"))?;
    let keys = mikey::parse(&message).map_err(|e| format!("KeyMgmt: {e}"))?;
    let mut both = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
    both[..MASTER_KEY_LEN].copy_from_slice(&keys.key);
    both[MASTER_KEY_LEN..].copy_from_slice(&keys.salt);
    Ok(Some(both))
}

/// The RTCP compound inside an SRTCP packet protected with the client's master key ‖ salt
/// `key` (RFC 3711 §3.4, `AES_CM_128_HMAC_SHA1_80`); `None` when it does not authenticate.
pub(super) fn unprotect_rtcp(
    key: &[u8; MASTER_KEY_LEN + MASTER_SALT_LEN],
    packet: &[u8],
) -> Option<Vec<u8>> {
    let master = MasterKey::new(
        SrtpProfile::Aes128CmHmacSha1_80,
        &key[..MASTER_KEY_LEN],
        &key[MASTER_KEY_LEN..],
    )
    .ok()?;
    let mut buf = packet.to_vec();
    let n = SrtpReceiver::new(&master).unprotect_rtcp(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}
