//! WHEP viewers (draft-ietf-wish-whep) as the session core sees them: an SDP offer over
//! HTTP becomes a session in the same table as RTSP viewers — same access rules, play
//! tokens, admission limits, shard choice and statistics — whose media leaves from its
//! shard's WebRTC port (`docs/design/webrtc.md`).
//!
//! The core answers at once: nothing in the answer needs the shard (the ICE credentials,
//! SSRCs and candidate are chosen here), so the shell sends the shard its
//! [`WebRtcStart`] and the HTTP response together, with no round trip. A session is named
//! over HTTP by an unguessable resource key (its `Location`), never by its session id or
//! its API handle: whoever holds the key may end it with `DELETE`, as whoever holds an
//! RTSP session id may TEARDOWN it.

use super::*;
use crate::shard::WebRtcStart;
use crate::webrtc::cert::{DtlsCertificate, Fingerprint};
use crate::webrtc::ice::{generate_credentials, CREDENTIAL_RANDOM_BYTES};
use crate::webrtc::peer::PeerSetup;
use crate::webrtc::sdp::{
    negotiate, parse_offer, write_answer, AnswerParams, SectionChoice, SendTrack,
};

/// Largest RTP payload sent to a WebRTC viewer of a file: the 12-byte header, the payload
/// and the 16-byte SRTP tag in 1,200 bytes, the datagram size WebRTC stacks assume a path
/// carries (RFC 8831 §5 and browsers' own 1,200-byte packets; ICE adds no per-packet
/// overhead). Live streams keep the server's budget (`payload-budget`, at most 1,440: 1,468
/// bytes with the tag), whose numbering their viewers share.
pub const WEBRTC_PAYLOAD_BUDGET: usize = 1200 - 12 - 16;

/// What WebRTC needs from the process: the DTLS certificate every answer names and each
/// shard's WebRTC address (the host candidate of the sessions it owns).
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    /// The process's DTLS certificate (made once at start).
    pub certificate: Arc<DtlsCertificate>,
    /// Shard `k`'s WebRTC UDP address.
    pub shard_addrs: Vec<SocketAddr>,
}

/// The Opus audio a WebRTC viewer of a file can get: the file's AAC cannot go to browsers,
/// its Opus rendition (made once per file, `crate::rendition`) can.
#[derive(Debug, Clone)]
pub enum WhepAudio {
    /// Nothing to add: the stream has no AAC track, or no rendition applies (live streams).
    Own,
    /// The file's Opus rendition, mapped.
    Rendition(Arc<MediaFile>),
    /// The rendition is being made: answer 503 with `Retry-After`.
    Preparing,
    /// No rendition can be made (the reason is logged once by the shell): video only.
    Unavailable,
}

/// A WHEP `POST`, as the HTTP side received it.
#[derive(Debug)]
pub struct WhepOffer<'a> {
    /// The SDP offer (the request body).
    pub sdp: &'a [u8],
    /// A play token from `?token=` or `Authorization: Bearer`.
    pub token: Option<&'a str>,
    /// The HTTP client's address (admission limits, token binding, statistics).
    pub peer: SocketAddr,
}

/// Why a WHEP request is refused; `status()` is its HTTP status, `Display` its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhepRefusal {
    /// WebRTC is off (`--webrtc-listen off`).
    #[error("WebRTC is off on this server (--webrtc-listen)")]
    Off,
    /// No such stream.
    #[error("{0}")]
    NotFound(String),
    /// The stream needs a play token and none was given.
    #[error(
        "this stream needs a play token (?token= or Authorization: Bearer, from POST /api/v1/play)"
    )]
    TokenMissing,
    /// The token is not valid for this stream and address.
    #[error("the play token is not valid for this stream: {0}")]
    TokenInvalid(String),
    /// The offer does not parse.
    #[error("the SDP offer cannot be read: {0}")]
    BadOffer(String),
    /// The offer and the stream have nothing in common, or the stream cannot go over WebRTC.
    #[error("{0}")]
    Unprocessable(String),
    /// An admission limit (viewers, per address, bandwidth).
    #[error("{why}")]
    OverLimit {
        /// Which limit.
        why: String,
        /// Seconds for `Retry-After`.
        retry_after_secs: u32,
    },
    /// The stream's Opus audio is being made.
    #[error(
        "this stream's Opus audio for WebRTC is being prepared (once per file); retry shortly"
    )]
    Preparing,
    /// The shard's command queue is full.
    #[error("shard {0} is overloaded")]
    ShardBusy(usize),
}

impl WhepRefusal {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            WhepRefusal::NotFound(_) => 404,
            WhepRefusal::TokenMissing => 401,
            WhepRefusal::TokenInvalid(_) => 403,
            WhepRefusal::BadOffer(_) => 400,
            WhepRefusal::Unprocessable(_) => 422,
            WhepRefusal::Off
            | WhepRefusal::OverLimit { .. }
            | WhepRefusal::Preparing
            | WhepRefusal::ShardBusy(_) => 503,
        }
    }

    /// Seconds for `Retry-After`, when a retry may succeed.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            WhepRefusal::OverLimit {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            WhepRefusal::Preparing => Some(1),
            WhepRefusal::ShardBusy(_) => Some(1),
            _ => None,
        }
    }
}

/// An accepted offer: the answer for the HTTP response and the session for the shard.
#[derive(Debug)]
pub struct WhepAccepted {
    /// The SDP answer.
    pub answer: String,
    /// The session's resource key (`Location: /whep/session/{key}`).
    pub key: String,
    /// The session.
    pub id: SessionId,
    /// Its shard.
    pub shard: usize,
    /// What the shard needs (`ShardCommand::StartWebRtc`).
    pub start: Box<WebRtcStart>,
    /// Effects to carry out (the statistics hub registers the viewer).
    pub effects: Vec<Effect>,
    /// Things the viewer's log line should say (a track left out).
    pub warnings: Vec<String>,
}

/// One track the stream can send, and where its samples come from.
struct Offered {
    send: SendTrack,
    track_index: usize,
    source: Option<Arc<MediaFile>>,
    /// An AAC track standing in for the Opus rendition it would get (trial negotiation).
    rendition_pending: bool,
}

/// What `media` can send over WebRTC with `audio` for its AAC: H.264 and Opus as they are,
/// AAC as its rendition's Opus track (or, with `assume_rendition`, as an Opus placeholder
/// for a trial negotiation); the warnings for tracks left out.
fn sendable_tracks(
    media: &MediaFile,
    audio: &WhepAudio,
    assume_rendition: bool,
) -> (Vec<Offered>, Vec<String>) {
    use crate::media::track::Codec;
    let mut warnings = Vec::new();
    let mut offered = Vec::new();
    for (k, track) in media.index.tracks.iter().enumerate() {
        let own = |send| Offered {
            send,
            track_index: k,
            source: None,
            rendition_pending: false,
        };
        match (&track.codec, audio) {
            (Codec::H264(config), _) => offered.push(own(SendTrack::h264(config))),
            // `whep_unplayable` refuses a stream whose video is only H.265.
            (Codec::H265(_), _) => {
                warnings.push("its H.265 video is not sent over WebRTC".to_owned())
            }
            // `whep_unplayable` refuses a transport stream.
            (Codec::Mp2t(_), _) => warnings.push("its MPEG-TS is not sent over WebRTC".to_owned()),
            // `whep_unplayable` refuses a stream whose video is only VP8/VP9.
            (Codec::Vp8(_) | Codec::Vp9(_), _) => {
                warnings.push("its VP8/VP9 video is not sent over WebRTC".to_owned())
            }
            // Browsers' WebRTC decodes Opus and G.711, not MPEG audio (MP3).
            (Codec::MpegAudio(_), _) => {
                warnings.push("its MPEG audio (MP3) is not sent over WebRTC".to_owned())
            }
            // WebRTC could carry PCMU/PCMA (RFC 7874 §3), but it is not offered yet
            // (docs/design/reach.md "Other audio").
            (Codec::G711(g), _) => warnings.push(format!(
                "its G.711 audio ({}) is not sent over WebRTC",
                g.encoding_name()
            )),
            (Codec::Opus(_), _) => offered.push(own(SendTrack::Opus)),
            (Codec::Aac(_), _) if assume_rendition => offered.push(Offered {
                rendition_pending: true,
                ..own(SendTrack::Opus)
            }),
            (Codec::Aac(_), WhepAudio::Rendition(r)) => {
                let opus = r
                    .index
                    .tracks
                    .iter()
                    .position(|t| matches!(t.codec, Codec::Opus(_)));
                if let Some(opus) = opus {
                    offered.push(Offered {
                        send: SendTrack::Opus,
                        track_index: opus,
                        source: Some(r.clone()),
                        rendition_pending: false,
                    });
                }
            }
            (Codec::Aac(_), _) => warnings.push(
                "its AAC audio has no Opus rendition for WebRTC, so it is sent without sound"
                    .to_owned(),
            ),
        }
    }
    (offered, warnings)
}

impl SessionCore {
    /// Turns WebRTC on: every WHEP answer names `settings`' certificate and shard ports.
    pub fn set_webrtc(&mut self, settings: Option<WebRtcSettings>) {
        self.webrtc = settings;
    }

    /// Whether WebRTC is on.
    pub fn webrtc_enabled(&self) -> bool {
        self.webrtc.is_some()
    }

    /// The stream a WHEP URL names (`/whep/{name}`): a published stream, a live channel or a
    /// catalog file.
    fn whep_media(&self, name: &str) -> Result<Arc<MediaFile>, WhepRefusal> {
        if let Some(log) = self.logs.get(name) {
            return Ok(log.media.clone());
        }
        if let Some(ch) = self.channels.get(name) {
            return Ok(ch.media.clone());
        }
        let segments: Vec<String> = name.split('/').map(str::to_owned).collect();
        match self.library.resolve(&segments) {
            Ok((media, used)) if used == segments.len() => Ok(media),
            Ok(_) | Err(crate::media::library::LibraryError::NotFound(_)) => {
                Err(WhepRefusal::NotFound(format!("no stream named {name:?}")))
            }
            Err(e) => Err(WhepRefusal::NotFound(format!("stream {name:?}: {e}"))),
        }
    }

    /// Whether `media` needs an Opus rendition for WebRTC: a file (played alone or looped as
    /// a live channel, whose shard then loops the rendition on the channel's timeline), not
    /// an ingested stream, with AAC audio.
    fn whep_wants_rendition(&self, media: &Arc<MediaFile>) -> bool {
        self.log_of(media).is_none()
            && media
                .index
                .tracks
                .iter()
                .any(|t| matches!(t.codec, crate::media::track::Codec::Aac(_)))
    }

    /// Why `media` cannot be played over WebRTC at all, whatever the browser offers (the
    /// catalog leaves its `whep_url` out, a POST gets 422 with this).
    pub fn whep_unplayable(media: &MediaFile) -> Option<String> {
        use crate::media::track::Codec;
        if media
            .index
            .tracks
            .iter()
            .any(|t| matches!(t.codec, Codec::Mp2t(_)))
        {
            // docs/design/reach.md "Codecs": a transport stream is served whole as RTP/MP2T;
            // WebRTC needs its streams demuxed, which is not done.
            return Some(format!(
                "stream {:?} is an MPEG transport stream, which is not sent over WebRTC; play it over RTSP",
                media.name
            ));
        }
        let video = media
            .index
            .tracks
            .iter()
            .find(|t| matches!(t.codec, Codec::H264(_)));
        if video.is_none()
            && media
                .index
                .tracks
                .iter()
                .find(|t| matches!(t.codec, Codec::H265(_) | Codec::Vp8(_) | Codec::Vp9(_)))
                .is_some()
        {
            // docs/design/reach.md "Codecs": no test browser here decodes HEVC, so WebRTC does
            // not offer it, and the stream's other tracks alone are not the whole stream.
            return Some(format!(
                "stream {:?} has {} video, which is not sent over WebRTC yet; play it over RTSP",
                media.name,
                media
                    .index
                    .tracks
                    .iter()
                    .find(|t| t.kind == crate::media::track::TrackKind::Video)
                    .map_or("its", |t| t.codec.name())
            ));
        }
        if let Some(v) = video {
            if v.reorders_frames() {
                return Some(format!(
                    "stream {:?} has B-frames (frames presented in another order than decoded), which \
                     browsers drop over WebRTC; play it over HLS",
                    media.name
                ));
            }
        }
        let sendable = media
            .index
            .tracks
            .iter()
            .any(|t| matches!(t.codec, Codec::H264(_) | Codec::Opus(_) | Codec::Aac(_)));
        (!sendable).then(|| {
            let mp3 = media
                .index
                .tracks
                .iter()
                .any(|t| matches!(t.codec, Codec::MpegAudio(_)));
            let g711 = media.index.tracks.iter().find_map(|t| match &t.codec {
                Codec::G711(g) => Some(g.encoding_name()),
                _ => None,
            });
            if mp3 {
                format!(
                    "stream {:?} has MPEG audio (MP3), which WebRTC does not carry, and no H.264 \
                     video; play it over RTSP",
                    media.name
                )
            } else if let Some(name) = g711 {
                format!(
                    "stream {:?} has G.711 audio ({name}), which is not sent over WebRTC yet, and \
                     no H.264 video; play it over RTSP",
                    media.name
                )
            } else {
                format!(
                    "stream {:?} has no H.264 video or audio to send over WebRTC",
                    media.name
                )
            }
        })
    }

    /// A play token for `stream` over WHEP: needed with `--require-token` or when the stream
    /// is not public over RTSP — the rule HLS follows (`shard::hls::routes`), since a browser
    /// cannot answer a Digest challenge from `fetch` without prompting.
    fn check_whep_token(
        &mut self,
        stream: &str,
        token: Option<&str>,
        peer: IpAddr,
        wall: SystemTime,
    ) -> Result<(), WhepRefusal> {
        let public = crate::rtsp::auth::is_public(&self.config.users, &self.config.access, stream);
        let policy = &mut self.tokens;
        if !policy.required && public {
            return Ok(());
        }
        let Some(token) = token else {
            policy.refusals += 1;
            return Err(WhepRefusal::TokenMissing);
        };
        policy.key.verify(token, stream, peer, wall).map_err(|e| {
            policy.refusals += 1;
            WhepRefusal::TokenInvalid(e.to_string())
        })?;
        Ok(())
    }

    /// Answers a WHEP offer for stream `stream`; see the module docs. `audio` is asked, only
    /// once the request is authorized and the offer read, for the Opus rendition of a file
    /// with AAC audio (the shell's cache: looking it up may start making it).
    pub fn whep_offer(
        &mut self,
        stream: &str,
        offer: &WhepOffer<'_>,
        audio: impl FnOnce(&Arc<MediaFile>) -> WhepAudio,
        env: &mut Env<'_>,
    ) -> Result<WhepAccepted, WhepRefusal> {
        let settings = self.webrtc.clone().ok_or(WhepRefusal::Off)?;
        let media = self.whep_media(stream)?;
        self.check_whep_token(&media.name, offer.token, offer.peer.ip(), env.wall)?;
        let parsed = parse_offer(offer.sdp).map_err(|e| WhepRefusal::BadOffer(e.to_string()))?;
        if let Some(why) = Self::whep_unplayable(&media) {
            return Err(WhepRefusal::Unprocessable(why));
        }
        // Negotiate first as if the file's AAC were Opus already: an offer that cannot take
        // the stream (no common video codec) is refused without making a rendition, and one
        // with no audio section needs none.
        let wants_rendition = self.whep_wants_rendition(&media);
        let trial = sendable_tracks(&media, &WhepAudio::Own, wants_rendition);
        let sends: Vec<SendTrack> = trial.0.iter().map(|o| o.send.clone()).collect();
        let negotiated =
            negotiate(&parsed, &sends).map_err(|e| WhepRefusal::Unprocessable(e.to_string()))?;
        let carries_rendition = negotiated.accepted().any(|a| {
            a.track
                .and_then(|t| trial.0.get(t))
                .is_some_and(|o| o.rendition_pending)
        });
        // An ingested stream's AAC has its Opus in the log itself (made once per stream
        // as it arrives: `rendition::live`), read through the log's WebRTC facade.
        let log_opus = self.log_of(&media).and_then(|l| l.webrtc_media.clone());
        let audio = match log_opus {
            Some(facade) => WhepAudio::Rendition(facade),
            None if carries_rendition => audio(&media),
            None => WhepAudio::Own,
        };
        if matches!(audio, WhepAudio::Preparing) {
            return Err(WhepRefusal::Preparing);
        }
        let (offered, mut warnings) = sendable_tracks(&media, &audio, false);
        let sends: Vec<SendTrack> = offered.iter().map(|o| o.send.clone()).collect();
        let negotiated =
            negotiate(&parsed, &sends).map_err(|e| WhepRefusal::Unprocessable(e.to_string()))?;
        warnings.extend(negotiated.warnings.iter().map(ToString::to_string));
        let channel = self.channel_of(&media);
        let log = self.log_of(&media);
        let remote_fingerprint = Fingerprint::parse(&negotiated.remote_fingerprint)
            .map_err(|e| WhepRefusal::BadOffer(format!("a=fingerprint: {e}")))?;

        let mut order: Vec<usize> = (0..self.shard_ports.len()).collect();
        order.sort_by_key(|&i| self.assigned[i]);
        let shard = self
            .admission
            .open_viewer(offer.peer.ip(), media.bitrate_bps(), &order)
            .map_err(|r| WhepRefusal::OverLimit {
                why: r.why,
                retry_after_secs: r.retry_after_secs,
            })?;
        let Some(&candidate) = settings.shard_addrs.get(shard) else {
            self.admission
                .close_viewer(offer.peer.ip(), media.bitrate_bps(), shard);
            return Err(WhepRefusal::Off);
        };
        let mut id: SessionId = env.rng.gen();
        while self.id_in_use(id) {
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

        // Our SSRC and numbering per sendable track: a live channel's or log's own (its
        // viewers share one packetization), else random (RFC 3550 §5.1, §8).
        let numbering = |o: &Offered, rng: &mut dyn RngCore| match (&channel, &log, &o.source) {
            (Some(ch), _, None) => {
                let t = &ch.tracks[o.track_index];
                (t.ssrc, t.seq0, t.ts0)
            }
            // The log's own tracks, and its WebRTC-only Opus track (read through its
            // facade): the log's numbering, which all its viewers share.
            (None, Some(log), source)
                if source.is_none()
                    || source
                        .as_ref()
                        .zip(log.webrtc_media.as_ref())
                        .is_some_and(|(a, b)| Arc::ptr_eq(a, b)) =>
            {
                let t = &log.tracks[o.track_index];
                (t.ssrc, t.seq0, t.ts0)
            }
            _ => (
                Ssrc(rng.next_u32()),
                crate::wire::rtp::SeqNum(rng.next_u32() as u16),
                crate::wire::rtp::RtpTimestamp(rng.next_u32()),
            ),
        };
        let numbers: Vec<_> = offered.iter().map(|o| numbering(o, env.rng)).collect();
        let send_ssrcs: Vec<u32> = numbers.iter().map(|n| n.0 .0).collect();
        let mut tracks = Vec::new();
        let mut kinds = Vec::new();
        for choice in &negotiated.sections {
            let SectionChoice::Accepted(a) = choice else {
                continue;
            };
            let Some(t) = a.track else { continue };
            let (ssrc, initial_seq, initial_rtptime) = numbers[t];
            tracks.push(TrackSetup {
                track_index: offered[t].track_index,
                payload_type: a.payload_type,
                ssrc,
                initial_seq,
                initial_rtptime,
                dest: TrackDest::WebRtc,
                source: offered[t].source.clone(),
                srtp: None,
            });
            kinds.push(match a.kind {
                crate::webrtc::sdp::MediaKind::Video => "video",
                _ => "audio",
            });
        }
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
                send_ssrcs: &send_ssrcs,
                sprop_parameter_sets: true,
            },
        );
        let activity = Arc::new(Activity::default());
        activity.touch(env.now);
        let handle = env.rng.gen();
        self.assigned[shard] += 1;
        self.sessions.insert(
            id,
            SessionRecord {
                media: media.clone(),
                shard,
                tracks: tracks.clone(),
                state: SessionState::Playing,
                on_shard: true,
                registered: true,
                activity: activity.clone(),
                tcp_conn: None,
                viewer_ssrcs: ViewerSsrcs::default(),
                peer: offer.peer,
                bitrate_bps: media.bitrate_bps(),
                origin: NO_CONNECTION,
                token: None,
                owner: Owner {
                    addr: offer.peer.ip(),
                    user: None,
                },
                handle,
                created: env.now,
                whep_key: Some(key.clone()),
                multicast: false,
                notify: None,
            },
        );
        self.whep_keys.insert(
            key.clone(),
            WhepSession {
                id,
                ufrag: local_ufrag.clone(),
            },
        );
        // A live channel's or log's viewers share its numbering, which counts the packets
        // of the server's payload budget: a smaller budget would cut some frames into more
        // packets than the numbering has room for, and sequence numbers would repeat
        // (Chromium then drops the frames up to the next keyframe). Files number their own.
        let payload_budget_bytes = if channel.is_some() || log.is_some() {
            self.config.payload_budget_bytes
        } else {
            self.config.payload_budget_bytes.min(WEBRTC_PAYLOAD_BUDGET)
        };
        let setup = SessionSetup {
            id,
            media: media.clone(),
            tracks,
            sink: None,
            activity,
            payload_budget_bytes,
            cname,
            live: channel,
            log,
        };
        let start = Box::new(WebRtcStart {
            setup,
            peer: PeerSetup {
                local_ufrag,
                local_pwd,
                remote_ufrag: negotiated.remote_ice_ufrag.clone(),
                remote_pwd: negotiated.remote_ice_pwd.clone(),
                remote_fingerprint,
                certificate: settings.certificate.clone(),
            },
        });
        let effects = vec![Effect::SessionStarted(SessionMeta {
            id,
            handle,
            stream: media.name.clone(),
            peer: offer.peer,
            transport: StatsTransport::Webrtc,
            shard,
            track_kinds: kinds,
        })];
        if self.may_log(offer.peer.ip(), env.now) {
            tracing::info!(session = %format_args!("{id:016X}"), peer = %offer.peer, stream = %media.name, shard, "whep session{}", warnings.iter().map(|w| format!("; {w}")).collect::<String>());
        }
        Ok(WhepAccepted {
            answer,
            key,
            id,
            shard,
            start,
            effects,
            warnings,
        })
    }

    /// The shard could not take an accepted session (its queue was full): forget it.
    pub fn whep_abort(&mut self, id: SessionId) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.end_session(id, false, &mut effects);
        effects
    }

    /// `DELETE /whep/session/{key}`: ends the session the key names (its shard sends BYE).
    /// `None` when no session has that key.
    pub fn whep_delete(&mut self, key: &str, now: Instant) -> Option<Vec<Effect>> {
        let id = self.whep_keys.get(key)?.id;
        let mut effects = Vec::new();
        let rec = self.end_session(id, true, &mut effects)?;
        if self.may_log(rec.peer.ip(), now) {
            tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "whep session ended by DELETE");
        }
        Some(effects)
    }
}

/// What the core keeps of a WHEP session besides its [`SessionRecord`].
#[derive(Debug, Clone)]
pub(super) struct WhepSession {
    /// The session.
    pub(super) id: SessionId,
    /// Our ICE ufrag (unique among live sessions: the shard finds the session by it).
    pub(super) ufrag: String,
}

/// The originating connection of a session no RTSP connection created (WHEP).
pub const NO_CONNECTION: ConnId = ConnId::MAX;
