//! Publishing (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD): an encoder announces a stream's SDP
//! on a path, sets up each track with `mode=record` (UDP or TCP interleaved), and RECORD
//! makes it live. The core decides (authorization, one publisher per path, the track a
//! SETUP names, the transport answer) and hands the shell a [`PublishStart`]; the shell
//! (`control::ingest`) owns sockets, depacketizers and the stream's live log, and tells the
//! core when the log exists ([`SessionCore::add_log`]) or a publisher went silent
//! ([`SessionCore::end_publisher`]).
//!
//! How clients write it: ffmpeg `-f rtsp` sends ANNOUNCE, then SETUP per track (`streamid=N`
//! controls, `mode=record`), then RECORD, and keeps the session alive with OPTIONS;
//! GStreamer `rtspclientsink` sends the same with `stream=N` controls and `mode="RECORD"`.

use super::*;
use crate::ingest::sdp::{parse_announce, AnnouncedTrack};
use crate::rtsp::auth::{key_matches, publish_needs, PublishNeeds};

/// Announcements a connection may keep before RECORD (one per path; more is an abuse).
const MAX_ANNOUNCEMENTS_PER_CONNECTION: usize = 4;

/// How a publisher sends one track's RTP and RTCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestTransport {
    /// `$` frames on the publisher's RTSP connection (§10.12).
    Interleaved {
        /// The connection.
        conn: ConnId,
        /// RTP channel.
        rtp_channel: u8,
        /// RTCP channel.
        rtcp_channel: u8,
    },
    /// UDP from the publisher's `client_port` pair to our ingest ports; packets from any
    /// other address are not this track's.
    Udp {
        /// Where its RTP comes from.
        rtp_from: SocketAddr,
        /// Where its RTCP comes from.
        rtcp_from: SocketAddr,
    },
}

/// A publisher went live (RECORD): what the shell needs to ingest it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishStart {
    /// The publisher's session.
    pub id: SessionId,
    /// The stream path (`live/cam1`).
    pub path: String,
    /// The tracks set up, each with its transport, in the SDP's order.
    pub tracks: Vec<(AnnouncedTrack, IngestTransport)>,
    /// The publisher's address.
    pub peer: SocketAddr,
    /// The user it authenticated as, if any.
    pub user: Option<String>,
}

/// Why a publisher with only a stream key (RTMP, WHIP) may not publish; `Display` is the
/// sentence it is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyedPublishRefusal {
    /// The path is empty or has an empty, `.` or `..` segment.
    #[error("{0:?} is not a stream path")]
    BadPath(String),
    /// The path's publish key is needed and was not given, or is wrong.
    #[error("publishing to {0:?} needs its stream key (?key=)")]
    KeyNeeded(String),
    /// No rule lets anyone publish there with a key.
    #[error("publishing to {0:?} is not allowed")]
    NotAllowed(String),
    /// The path is a stored file or a live channel.
    #[error("{0:?} is a stored stream or channel")]
    Stored(String),
    /// Another publisher holds the path.
    #[error("{0:?} is already being published")]
    Taken(String),
}

/// An ANNOUNCE waiting for its SETUPs and RECORD.
#[derive(Debug)]
pub(super) struct Announcement {
    /// Who announced (authorized then: its SETUPs on this connection need no new proof).
    owner: Owner,
    conn: ConnId,
    path: String,
    tracks: Vec<AnnouncedTrack>,
    /// The `a=control`s of the media sections not carried (their SETUPs are answered).
    skipped: Vec<String>,
}

/// A publisher's session.
#[derive(Debug)]
pub(super) struct PublisherRecord {
    pub(super) path: String,
    pub(super) owner: Owner,
    pub(super) conn: ConnId,
    pub(super) peer: SocketAddr,
    tracks: Vec<AnnouncedTrack>,
    transports: Vec<Option<IngestTransport>>,
    /// The `a=control`s of the tracks not carried.
    skipped: Vec<String>,
    /// Interleaved channels given to tracks not carried (no other track may take them).
    ignored_channels: Vec<u8>,
    pub(super) recording: bool,
    pub(super) created: Instant,
}

impl SessionCore {
    /// Whether `req` is part of publishing: ANNOUNCE, RECORD, a SETUP whose transport asks
    /// for RECORD, or any request naming one of the publishers' sessions.
    pub(super) fn is_publishing(&self, req: &Request) -> bool {
        match req.method {
            Method::Announce | Method::Record => true,
            Method::Setup
                if req
                    .header("Transport")
                    .and_then(|t| parse_transport(t).ok())
                    .is_some_and(|alts| alts.iter().any(|a| a.mode_record)) =>
            {
                true
            }
            _ => req
                .session_id()
                .and_then(parse_session_id)
                .is_some_and(|id| self.publishers.contains_key(&id)),
        }
    }

    /// The path a publishing request is about: its session's, or its URI's.
    fn publish_path(&self, req: &Request, caller: &Caller) -> String {
        if let Some(rec) = req
            .session_id()
            .and_then(parse_session_id)
            .and_then(|id| self.publishers.get(&id))
            .filter(|r| r.owner.addr == caller.peer.ip())
        {
            return rec.path.clone();
        }
        let segments = split_request_uri(&req.uri)
            .map(|p| p.segments)
            .unwrap_or_default();
        // A SETUP names a track under an announced path: the announcement's path.
        if req.method == Method::Setup {
            if let Some(a) = self
                .announcements
                .iter()
                .filter(|a| a.conn == caller.conn)
                .filter(|a| {
                    let p: Vec<&str> = a.path.split('/').collect();
                    segments.len() >= p.len() && segments.iter().zip(&p).all(|(s, p)| s == p)
                })
                .max_by_key(|a| a.path.len())
            {
                return a.path.clone();
            }
        }
        segments.join("/")
    }

    /// Authorization of a publishing request (`publish_needs`): an open pattern, the path's
    /// stream key in `?key=`, or credentials of a user its rule lists. Viewers' permissions
    /// never grant it.
    pub(super) fn authorize_publish(
        &mut self,
        req: &Request,
        caller: &Caller,
        env: &mut Env<'_>,
    ) -> Result<(OwnerKey, Duration), (Refusal, Duration)> {
        // Requests after the authorized ANNOUNCE (its SETUPs on the same connection, then
        // anything naming the session) are the same publisher: ffmpeg does not repeat a
        // stream key's query in SETUP URLs, and the session binding already checks who sends
        // them (owner address and user).
        if let Some(rec) = req
            .session_id()
            .and_then(parse_session_id)
            .and_then(|id| self.publishers.get(&id))
            .filter(|r| r.owner.addr == caller.peer.ip())
        {
            return Ok((OwnerKey(rec.owner.clone()), Duration::ZERO));
        }
        let path = self.publish_path(req, caller);
        if req.method == Method::Setup && req.session_id().is_none() {
            if let Some(a) = self
                .announcements
                .iter()
                .find(|a| a.conn == caller.conn && a.path == path)
            {
                return Ok((OwnerKey(a.owner.clone()), Duration::ZERO));
            }
        }
        let anonymous = OwnerKey(Owner {
            addr: caller.peer.ip(),
            user: None,
        });
        let refused = |why: String| (Refusal::PublishForbidden(why), Duration::ZERO);
        let (users, key) =
            match publish_needs(&self.config.publish_open, &self.config.access, &path) {
                PublishNeeds::Nothing => return Ok((anonymous, Duration::ZERO)),
                PublishNeeds::Refused => {
                    return Err(refused(format!("publishing to {path:?} is not allowed")))
                }
                PublishNeeds::Grant { users, key } => (users, key),
            };
        if let Some(expected) = &key {
            let query = split_request_uri(&req.uri).ok().and_then(|p| p.query);
            let given = query.as_deref().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("key="))
                    .map(str::to_owned)
            });
            if given.is_some_and(|g| key_matches(expected, &g)) {
                return Ok((anonymous, Duration::ZERO));
            }
        }
        let Some(auth) = self.auth.as_mut() else {
            return Err(refused(format!(
                "publishing to {path:?} needs its stream key (?key=)"
            )));
        };
        if users.is_empty() {
            return Err(refused(format!(
                "publishing to {path:?} needs its stream key (?key=)"
            )));
        }
        let checked = auth.check_user_at(
            req.method.as_str(),
            &req.uri,
            req.header("Authorization"),
            caller.peer.ip(),
            env.now,
            env.wall,
        );
        let wait = checked.wait;
        match checked.verdict {
            Verdict::Allowed(Some(user)) if users.iter().any(|u| u == "*" || *u == user) => Ok((
                OwnerKey(Owner {
                    addr: caller.peer.ip(),
                    user: Some(user),
                }),
                wait,
            )),
            Verdict::Allowed(user) => Err((
                Refusal::PublishForbidden(format!(
                    "user {:?} may not publish to {path:?}",
                    user.unwrap_or_default()
                )),
                wait,
            )),
            Verdict::Forbidden(user) => Err((
                Refusal::PublishForbidden(format!("user {user:?} may not publish to {path:?}")),
                wait,
            )),
            Verdict::Throttled(r) => Err((Refusal::OverLimit(r), wait)),
            Verdict::Challenge { stale, why } => {
                let challenges = auth.challenges_at(stale, env.wall, env.rng);
                Err((Refusal::Unauthorized { why, challenges }, wait))
            }
        }
    }

    /// Whether `path` has a publisher recording (or one set up to record) other than `except`.
    fn path_taken(&self, path: &str, except: Option<SessionId>) -> bool {
        self.publishers
            .iter()
            .any(|(id, r)| r.path == path && Some(*id) != except)
            // A WHIP publisher holds its path from its POST on (its log opens later).
            || self.whip_keys.values().any(|w| w.path == path)
            // Another kind of publisher (RTMP) keeps the path's log online.
            || self
                .logs
                .get(path)
                .is_some_and(|l| l.state() == crate::live_log::LogState::Online)
    }

    /// Whether `path` names a stored file or a live channel (never publishable).
    fn is_stored(&self, path: &str) -> bool {
        let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
        let stored =
            matches!(self.library.resolve(&segments), Ok((_, used)) if used == segments.len());
        stored || self.channels.contains_key(path)
    }

    /// May an RTMP publisher publish to `path` (`rtmp://host/APP/NAME` is path `APP/NAME`)?
    /// RTMP carries no credentials, so the path's open pattern or its stream key (`key=` in
    /// the query after the stream name, as OBS's stream key field lets one write it) decides,
    /// with the same rules and the same one-publisher-per-path as RTSP. `Err` is the reason
    /// sent to the publisher.
    pub fn authorize_rtmp(&self, path: &str, query: &str) -> Result<(), String> {
        let given = query.split('&').find_map(|kv| kv.strip_prefix("key="));
        self.authorize_keyed_publish(path, given)
            .map_err(|e| e.to_string())
    }

    /// May a publisher that proves itself only by a stream key (`given`: RTMP's `?key=`, a
    /// WHIP bearer token) publish to `path`? The path's open pattern or its publish key
    /// decides, with the same rules and the same one-publisher-per-path as RTSP.
    pub(super) fn authorize_keyed_publish(
        &self,
        path: &str,
        given: Option<&str>,
    ) -> Result<(), KeyedPublishRefusal> {
        let path_ok = !path.is_empty()
            && path.split('/').all(|seg| {
                !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['\\', '\0'])
            });
        if !path_ok {
            return Err(KeyedPublishRefusal::BadPath(path.to_owned()));
        }
        match publish_needs(&self.config.publish_open, &self.config.access, path) {
            PublishNeeds::Nothing => {}
            PublishNeeds::Grant {
                key: Some(expected),
                ..
            } => {
                if !given.is_some_and(|g| key_matches(&expected, g)) {
                    return Err(KeyedPublishRefusal::KeyNeeded(path.to_owned()));
                }
            }
            PublishNeeds::Grant { key: None, .. } | PublishNeeds::Refused => {
                return Err(KeyedPublishRefusal::NotAllowed(path.to_owned()));
            }
        }
        if self.is_stored(path) {
            return Err(KeyedPublishRefusal::Stored(path.to_owned()));
        }
        if self.path_taken(path, None) {
            return Err(KeyedPublishRefusal::Taken(path.to_owned()));
        }
        Ok(())
    }

    /// ANNOUNCE (§10.3): the stream's description, to be recorded on the request's path.
    pub(super) fn announce(
        &mut self,
        req: &Request,
        caller: &Caller,
        owner: &OwnerKey,
    ) -> Result<Done, Refusal> {
        let path = split_request_uri(&req.uri)
            .map_err(Refusal::Uri)?
            .segments
            .join("/");
        if path.is_empty() {
            return Err(Refusal::PublishForbidden(
                "no stream path in the URI".into(),
            ));
        }
        let content_type = req.header("Content-Type").unwrap_or_default();
        if !content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        {
            return Err(Refusal::UnsupportedMedia(format!(
                "ANNOUNCE needs an application/sdp body, not {content_type:?}"
            )));
        }
        if self.is_stored(&path) {
            return Err(Refusal::PublishForbidden(format!(
                "{path:?} is a stored stream or channel"
            )));
        }
        if self.path_taken(&path, None) {
            return Err(Refusal::PublishForbidden(format!(
                "{path:?} is already being published"
            )));
        }
        let body = std::str::from_utf8(&req.body)
            .map_err(|_| Refusal::UnsupportedMedia("the SDP is not UTF-8".into()))?;
        let announced =
            parse_announce(body).map_err(|e| Refusal::UnsupportedMedia(e.to_string()))?;
        if !announced.skipped.is_empty() {
            let lines: Vec<String> = announced.skipped.iter().map(ToString::to_string).collect();
            tracing::info!(peer = %caller.peer, stream = %path, "announce: tracks not carried: {}", lines.join("; "));
        }
        self.announcements
            .retain(|a| !(a.conn == caller.conn && a.path == path));
        if self
            .announcements
            .iter()
            .filter(|a| a.conn == caller.conn)
            .count()
            >= MAX_ANNOUNCEMENTS_PER_CONNECTION
        {
            return Err(Refusal::PublishForbidden(
                "too many announcements on this connection".into(),
            ));
        }
        self.announcements.push(Announcement {
            owner: owner.0.clone(),
            conn: caller.conn,
            path,
            tracks: announced.tracks,
            skipped: announced.skipped.into_iter().map(|t| t.control).collect(),
        });
        Ok(Done::ok(Response::new(StatusCode::Ok)))
    }

    /// SETUP with `mode=record`: one announced track into a new or the caller's publisher
    /// session. A track the ANNOUNCE offered but ingest does not carry is answered the same
    /// (200 with a transport: publishers such as GStreamer's `rtspclientsink` give up on any
    /// failed SETUP) but gets no [`IngestTransport`], so its packets are never routed.
    pub(super) fn setup_record(
        &mut self,
        req: &Request,
        caller: &Caller,
        owner: &OwnerKey,
        env: &mut Env<'_>,
    ) -> Result<Done, Refusal> {
        let existing = match req.session_id() {
            Some(sid) => {
                let id = parse_session_id(sid)
                    .filter(|id| self.publishers.contains_key(id))
                    .ok_or(Refusal::SessionNotFound("unknown session"))?;
                let rec = &self.publishers[&id];
                if rec.owner != owner.0 {
                    return Err(Refusal::SessionNotFound(
                        "session belongs to another client",
                    ));
                }
                if rec.recording {
                    return Err(Refusal::PublishState("SETUP while recording"));
                }
                Some(id)
            }
            None => None,
        };
        let path = match existing {
            Some(id) => self.publishers[&id].path.clone(),
            None => self.publish_path(req, caller),
        };
        let (tracks, skipped) = match existing {
            Some(id) => {
                let rec = &self.publishers[&id];
                (rec.tracks.clone(), rec.skipped.clone())
            }
            None => self
                .announcements
                .iter()
                .find(|a| a.conn == caller.conn && a.path == path)
                .map(|a| (a.tracks.clone(), a.skipped.clone()))
                .ok_or(Refusal::PublishState("SETUP for recording before ANNOUNCE"))?,
        };
        // `Some(k)`: carried track k; `None`: a track not carried, in channel slot `slot`.
        let (track, slot) = match self.announced_track(&req.uri, &path, &tracks) {
            Ok(k) => (Some(k), k),
            Err(refusal) => {
                let controls: Vec<&str> = skipped.iter().map(String::as_str).collect();
                match control_position(&req.uri, &path, &controls) {
                    Some(j) => (None, tracks.len() + j),
                    None => return Err(refusal),
                }
            }
        };
        let transport = req.header("Transport").ok_or(Refusal::TransportMissing)?;
        let alternatives = parse_transport(transport).map_err(|error| Refusal::Transport {
            header: transport.to_owned(),
            error,
        })?;
        let used: Vec<u8> = existing
            .map(|id| {
                let rec = &self.publishers[&id];
                rec.transports
                    .iter()
                    .flatten()
                    .filter_map(|t| match t {
                        IngestTransport::Interleaved {
                            rtp_channel,
                            rtcp_channel,
                            ..
                        } => Some([*rtp_channel, *rtcp_channel]),
                        IngestTransport::Udp { .. } => None,
                    })
                    .flatten()
                    .chain(rec.ignored_channels.iter().copied())
                    .collect()
            })
            .unwrap_or_default();
        let mut chosen = None;
        for alt in alternatives {
            // `RTP/SAVP`: publishers' SRTP is not keyed here; never taken as plain RTP.
            if !alt.unicast || !alt.mode_record || alt.srtp {
                continue;
            }
            match (alt.lower, alt.client_port, self.ingest_ports) {
                // RTSPS: a publisher's UDP media would travel in the clear.
                (LowerTransport::Udp, Some(_), Some(_)) if caller.secure => {}
                (LowerTransport::Udp, Some((rtp, rtcp)), Some(server)) => {
                    let ingest = IngestTransport::Udp {
                        rtp_from: SocketAddr::new(caller.peer.ip(), rtp),
                        rtcp_from: SocketAddr::new(caller.peer.ip(), rtcp),
                    };
                    let reply = format!(
                        "RTP/AVP/UDP;unicast;client_port={rtp}-{rtcp};server_port={}-{};mode=record",
                        server.0, server.1
                    );
                    chosen = Some((ingest, reply));
                    break;
                }
                (LowerTransport::Tcp, ..) => {
                    let (a, b) = alt.interleaved.unwrap_or_else(|| {
                        let a = u8::try_from(slot).unwrap_or(u8::MAX).saturating_mul(2);
                        (a, a.saturating_add(1))
                    });
                    if used.contains(&a) || used.contains(&b) {
                        continue;
                    }
                    let ingest = IngestTransport::Interleaved {
                        conn: caller.conn,
                        rtp_channel: a,
                        rtcp_channel: b,
                    };
                    chosen = Some((
                        ingest,
                        format!("RTP/AVP/TCP;unicast;interleaved={a}-{b};mode=record"),
                    ));
                    break;
                }
                _ => {}
            }
        }
        let Some((ingest, reply)) = chosen else {
            return Err(Refusal::NoTransport(transport.to_owned()));
        };
        let id = match existing {
            Some(id) => id,
            None => {
                if self.path_taken(&path, None) {
                    return Err(Refusal::PublishForbidden(format!(
                        "{path:?} is already being published"
                    )));
                }
                let mut id: SessionId = env.rng.gen();
                while self.id_in_use(id) || self.publishers.contains_key(&id) {
                    id = env.rng.gen();
                }
                self.publishers.insert(
                    id,
                    PublisherRecord {
                        path: path.clone(),
                        owner: owner.0.clone(),
                        conn: caller.conn,
                        peer: caller.peer,
                        transports: vec![None; tracks.len()],
                        tracks,
                        skipped,
                        ignored_channels: Vec::new(),
                        recording: false,
                        created: env.now,
                    },
                );
                self.announcements
                    .retain(|a| !(a.conn == caller.conn && a.path == path));
                id
            }
        };
        if let Some(rec) = self.publishers.get_mut(&id) {
            match (track, ingest) {
                (Some(k), ingest) => rec.transports[k] = Some(ingest),
                (
                    None,
                    IngestTransport::Interleaved {
                        rtp_channel,
                        rtcp_channel,
                        ..
                    },
                ) => rec.ignored_channels.extend([rtp_channel, rtcp_channel]),
                (None, IngestTransport::Udp { .. }) => {}
            }
        }
        match track {
            Some(track) => {
                tracing::info!(session = %format_args!("{id:016X}"), peer = %caller.peer, stream = %path, track, transport = %reply, "setup record");
            }
            None => {
                tracing::info!(session = %format_args!("{id:016X}"), peer = %caller.peer, stream = %path, uri = %req.uri, transport = %reply, "setup record of a track not carried: its packets are ignored");
            }
        }
        Ok(Done::ok(
            Response::new(StatusCode::Ok)
                .header("Transport", reply)
                .header("Session", session_header(id, self.config.session_timeout)),
        ))
    }

    /// The announced track a SETUP URI names: its `a=control` as an absolute URI, relative
    /// to the path (`streamid=0`, `stream=0`, `trackID=0`), or the only track.
    fn announced_track(
        &self,
        uri: &str,
        path: &str,
        tracks: &[AnnouncedTrack],
    ) -> Result<usize, Refusal> {
        let segments = split_request_uri(uri).map_err(Refusal::Uri)?.segments;
        let depth = path.split('/').count();
        let rest = segments.get(depth..).unwrap_or_default().join("/");
        let controls: Vec<&str> = tracks.iter().map(|t| t.control.as_str()).collect();
        match control_position(uri, path, &controls) {
            Some(k) => Ok(k),
            None if rest.is_empty() && tracks.len() == 1 => Ok(0),
            None => Err(Refusal::NotFound(format!(
                "no announced track {rest:?} under {path:?}"
            ))),
        }
    }

    /// RECORD (§10.11): the publisher's set-up tracks go live.
    pub(super) fn record(&mut self, req: &Request, owner: &OwnerKey) -> Result<Done, Refusal> {
        let id = req
            .session_id()
            .and_then(parse_session_id)
            .ok_or(Refusal::SessionNotFound("no or malformed Session header"))?;
        let rec = self
            .publishers
            .get_mut(&id)
            .ok_or(Refusal::SessionNotFound("unknown session"))?;
        if rec.owner != owner.0 {
            return Err(Refusal::SessionNotFound(
                "session belongs to another client",
            ));
        }
        let tracks: Vec<(AnnouncedTrack, IngestTransport)> = rec
            .tracks
            .iter()
            .zip(&rec.transports)
            .filter_map(|(t, tr)| Some((t.clone(), tr.clone()?)))
            .collect();
        if tracks.is_empty() {
            return Err(Refusal::PublishState("RECORD before any track was set up"));
        }
        let mut done = Done::ok(
            Response::new(StatusCode::Ok)
                .header("Session", session_header(id, self.config.session_timeout)),
        );
        if !rec.recording {
            rec.recording = true;
            done.effects
                .push(Effect::PublishStart(Box::new(PublishStart {
                    id,
                    path: rec.path.clone(),
                    tracks,
                    peer: rec.peer,
                    user: rec.owner.user.clone(),
                })));
        }
        Ok(done)
    }

    /// TEARDOWN of a publisher's session.
    pub(super) fn teardown_publisher(
        &mut self,
        id: SessionId,
        owner: &OwnerKey,
    ) -> Result<Done, Refusal> {
        match self.publishers.get(&id) {
            Some(rec) if rec.owner == owner.0 => {}
            _ => return Err(Refusal::SessionNotFound("unknown session")),
        }
        let mut done = Done::ok(Response::new(StatusCode::Ok));
        self.end_publisher_into(id, "teardown", &mut done.effects);
        Ok(done)
    }

    /// A keep-alive (OPTIONS, GET_PARAMETER) naming a publisher's session: answered 200.
    pub(super) fn publisher_alive(&self, req: &Request, owner: &OwnerKey) -> Option<Done> {
        let id = req.session_id().and_then(parse_session_id)?;
        let rec = self.publishers.get(&id)?;
        (rec.owner.addr == owner.0.addr).then(|| {
            Done::ok(
                Response::new(StatusCode::Ok)
                    .header("Session", session_header(id, self.config.session_timeout)),
            )
        })
    }

    /// Ends a publisher (the shell saw it go silent, or its connection closed): the stream's
    /// viewers keep waiting for a new publisher until the publisher timeout.
    pub fn end_publisher(&mut self, id: SessionId, why: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.end_publisher_into(id, why, &mut effects);
        effects
    }

    fn end_publisher_into(&mut self, id: SessionId, why: &str, effects: &mut Vec<Effect>) {
        if let Some(rec) = self.publishers.remove(&id) {
            tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.path, "publisher ended: {why}");
            if rec.recording {
                effects.push(Effect::PublishStop { id, path: rec.path });
            }
        }
    }

    /// A connection closed: its announcements go, and its publishers end (a publisher's
    /// RTSP connection is its liveness, as MediaMTX and live555 treat it).
    pub(super) fn close_publishing(&mut self, conn: ConnId, effects: &mut Vec<Effect>) {
        self.announcements.retain(|a| a.conn != conn);
        let ids: Vec<SessionId> = self
            .publishers
            .iter()
            .filter(|(_, r)| r.conn == conn)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.end_publisher_into(id, "connection closed", effects);
        }
    }

    /// Publishers that never sent RECORD within the setup timeout are forgotten.
    pub(super) fn expire_publishers(&mut self, now: Instant) {
        let timeout = self.config.setup_timeout;
        self.publishers
            .retain(|_, r| r.recording || now.saturating_duration_since(r.created) < timeout);
    }

    /// The UDP port pair publishers send RTP and RTCP to (`None`: only TCP interleaved).
    pub fn set_ingest_ports(&mut self, ports: Option<(u16, u16)>) {
        self.ingest_ports = ports;
    }

    /// Publishers recording now: (session, path, peer).
    pub fn publishers(&self) -> Vec<(SessionId, String, SocketAddr)> {
        self.publishers
            .iter()
            .filter(|(_, r)| r.recording)
            .map(|(&id, r)| (id, r.path.clone(), r.peer))
            .collect()
    }
}

/// The position of the `a=control` (absolute, or relative to `path`) a SETUP URI names.
fn control_position(uri: &str, path: &str, controls: &[&str]) -> Option<usize> {
    let segments = split_request_uri(uri).ok()?.segments;
    let depth = path.split('/').count();
    let rest = segments.get(depth..).unwrap_or_default().join("/");
    controls.iter().position(|control| {
        let control = control.trim();
        if control.is_empty() {
            return false;
        }
        if control.contains("://") {
            return split_request_uri(control)
                .map(|p| p.segments == segments)
                .unwrap_or(false);
        }
        control.trim_start_matches('/') == rest
    })
}
