//! The RTSP methods (RFC 2326 §10) as the core answers them: authorization, OPTIONS,
//! DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER.

use super::*;

/// Bytes SRTP adds to an RTP packet (`AES_CM_128_HMAC_SHA1_80`, RFC 3711 §3.1: the tag).
const SRTP_TAG_LEN: usize = 10;

impl SessionCore {
    /// RFC 2326 §11.4.1 / RFC 7616: every method but OPTIONS needs credentials once users
    /// are configured. Returns the caller as a session owner would be recorded, and how
    /// long to hold the answer (backoff); or the refusal.
    ///
    /// A request that names one of its own address's sessions is authorized against that
    /// session's stream, not whatever stream its URI names: otherwise a public stream's URI
    /// would carry requests into a restricted stream's session.
    pub(super) fn authorize(
        &mut self,
        req: &Request,
        caller: &Caller,
        env: &mut Env<'_>,
    ) -> Result<(OwnerKey, Duration), (Refusal, Duration)> {
        let anonymous = OwnerKey(Owner {
            addr: caller.peer.ip(),
            user: None,
        });
        if req.method == Method::Options {
            return Ok((anonymous, Duration::ZERO));
        }
        let Some(auth) = self.auth.as_mut() else {
            return Ok((anonymous, Duration::ZERO));
        };
        let path = req
            .session_id()
            .and_then(parse_session_id)
            .and_then(|id| self.sessions.get(&id))
            .filter(|r| r.owner.addr == caller.peer.ip())
            .map(|r| r.media.name.clone())
            .unwrap_or_else(|| {
                split_request_uri(&req.uri)
                    .map(|p| p.segments.join("/"))
                    .unwrap_or_default()
            });
        let checked = auth.check_at(
            req.method.as_str(),
            &req.uri,
            &path,
            req.header("Authorization"),
            caller.peer.ip(),
            env.now,
            env.wall,
        );
        let wait = checked.wait;
        match checked.verdict {
            Verdict::Allowed(user) => Ok((
                OwnerKey(Owner {
                    addr: caller.peer.ip(),
                    user,
                }),
                wait,
            )),
            Verdict::Forbidden(user) => Err((Refusal::Forbidden { user, stream: path }, wait)),
            Verdict::Throttled(r) => Err((Refusal::OverLimit(r), wait)),
            Verdict::Challenge { stale, why } => {
                let challenges = auth.challenges_at(stale, env.wall, env.rng);
                Err((Refusal::Unauthorized { why, challenges }, wait))
            }
        }
    }

    /// OPTIONS (§10.1): the methods; a keep-alive for the caller's own sessions. OPTIONS
    /// needs no credentials, so only the address can be checked.
    pub(super) fn options(&mut self, req: &Request, caller: &Caller, now: Instant) -> Step {
        if let Some(rec) = req
            .session_id()
            .and_then(parse_session_id)
            .and_then(|id| self.sessions.get(&id))
        {
            if rec.owner.addr == caller.peer.ip() {
                rec.activity.touch(now);
            }
        }
        Step::done(Done::ok(
            Response::new(StatusCode::Ok).header("Public", PUBLIC_METHODS),
        ))
    }

    /// GET_PARAMETER (§10.8): a keep-alive, checked like any request naming a session.
    pub(super) fn get_parameter(
        &mut self,
        req: &Request,
        owner: &OwnerKey,
        now: Instant,
    ) -> Result<Done, Refusal> {
        if req.session_id().is_some() {
            self.session_for(req, owner, now)?;
        }
        Ok(Done::ok(Response::new(StatusCode::Ok)))
    }

    /// Looks up the stream a request URI names: the media and the leftover segments.
    fn resolve(&self, uri: &str) -> Result<(Arc<MediaFile>, Vec<String>), Refusal> {
        let path = split_request_uri(uri).map_err(Refusal::Uri)?;
        let segments = path.segments;
        // An ingested stream: the longest leading run of segments naming a live log.
        for k in (1..=segments.len()).rev() {
            if let Some(log) = self.logs.get(&segments[..k].join("/")) {
                return Ok((log.media.clone(), segments[k..].to_vec()));
            }
        }
        if let Some(ch) = segments.first().and_then(|name| self.channels.get(name)) {
            return Ok((ch.media.clone(), segments[1..].to_vec()));
        }
        match self.library.resolve(&segments) {
            Ok((media, used)) => Ok((media, segments[used..].to_vec())),
            Err(crate::media::library::LibraryError::NotFound(name)) => {
                Err(Refusal::NotFound(format!("no stream named {name:?}")))
            }
            Err(e) => Err(Refusal::Unservable(e.to_string())),
        }
    }

    /// The live channel playing `media`, if it is one.
    pub(super) fn channel_of(&self, media: &Arc<MediaFile>) -> Option<Arc<LiveChannel>> {
        self.channels
            .values()
            .find(|c| Arc::ptr_eq(&c.media, media))
            .cloned()
    }

    /// The live log behind `media`, if it is an ingested stream's.
    pub(super) fn log_of(&self, media: &Arc<MediaFile>) -> Option<Arc<LiveLog>> {
        self.logs
            .values()
            .find(|l| Arc::ptr_eq(&l.media, media))
            .cloned()
    }

    /// `Content-Base` (RFC 2326 §12.11) of a stream, and the base of the RTP-Info URLs: the
    /// configured `public-address`, else our own address as the connection reached it —
    /// never the request's authority, which is whatever the client chose to write there.
    /// On RTSPS the scheme is `rtsps` and the authority the address the connection reached
    /// (`public-address` names the plain RTSP port).
    fn content_base(&self, caller: &Caller, media: &MediaFile) -> String {
        let (scheme, authority) = match &self.config.public_address {
            _ if caller.secure => ("rtsps", caller.local.to_string()),
            Some(public) => ("rtsp", public.clone()),
            None => ("rtsp", caller.local.to_string()),
        };
        format!("{scheme}://{authority}/{}/", encode_name(&media.name))
    }

    /// The play token of a DESCRIBE or SETUP. With `--require-token` it must be valid for
    /// `stream` and the peer (a missing one is 401, a bad one 403); the token to carry into
    /// control URLs is returned.
    fn check_token(
        &mut self,
        uri: &str,
        stream: &str,
        peer: IpAddr,
        wall: SystemTime,
    ) -> Result<Option<String>, Refusal> {
        let query = split_request_uri(uri).ok().and_then(|p| p.query);
        let token = token_in_query(query.as_deref());
        let policy = &mut self.tokens;
        if !policy.required {
            return Ok(token.filter(|t| is_token_syntax(t)).map(str::to_owned));
        }
        let Some(token) = token else {
            policy.refusals += 1;
            return Err(Refusal::TokenMissing);
        };
        match policy.key.verify(token, stream, peer, wall) {
            Ok(_) => Ok(Some(token.to_owned())),
            Err(e) => {
                policy.refusals += 1;
                Err(Refusal::TokenInvalid(e))
            }
        }
    }

    /// DESCRIBE (§10.2): the SDP of the stream; over RTSPS with SRTP keys offered.
    pub(super) fn describe(
        &mut self,
        req: &Request,
        caller: &Caller,
        env: &mut Env<'_>,
    ) -> Result<Done, Refusal> {
        let (media, rest) = self.resolve(&req.uri)?;
        if !rest.is_empty() {
            return Err(Refusal::NotFound(format!(
                "no track {:?} to describe",
                rest.join("/")
            )));
        }
        let token = self.check_token(&req.uri, &media.name, caller.peer.ip(), env.wall)?;
        let live = self.channel_of(&media).is_some() || self.log_of(&media).is_some();
        let mut sdp = describe_media(
            &media,
            caller.local,
            live,
            token.as_deref(),
            env.rng.gen_range(1..u64::from(u32::MAX)),
            self.channel_of(&media)
                .and_then(|ch| self.multicast_of(&ch.name))
                .map(|g| (g.base, g.ttl)),
        );
        if caller.secure && self.config.rtsps_srtp {
            // RTSPS with `rtsps-srtp`: each media section offered as `RTP/SAVP` with a fresh
            // key in `a=key-mgmt:mikey` (RFC 4567 §3.1), remembered for this connection's
            // SETUPs. A player that SETUPs `RTP/AVP/TCP` (ffmpeg) still gets plain RTP inside
            // TLS. Off by default: a player that takes the offer (GStreamer) then uses SRTP
            // over TCP too, a second encryption inside TLS, so only operators who want UDP
            // media over RTSPS pay for it.
            let channel = self.channel_of(&media);
            let log = self.log_of(&media);
            let offer = super::srtp::SrtpOffer::new(
                &media,
                |i| match (&channel, &log) {
                    (Some(ch), _) => ch.tracks.get(i).map(|t| t.ssrc),
                    (None, Some(log)) => log.tracks.get(i).map(|t| t.ssrc),
                    (None, None) => None,
                },
                env.rng,
            );
            sdp = crate::wire::sdp::with_key_mgmt(&sdp, &offer.key_mgmt(env.wall, env.rng));
            self.srtp_offers.insert(caller.conn, offer);
        }
        Ok(Done::ok(
            Response::new(StatusCode::Ok)
                .header("Content-Base", self.content_base(caller, &media))
                .body("application/sdp", sdp.into_bytes()),
        )
        .about(live))
    }

    /// SETUP (§10.4): a track into a new or the caller's existing session.
    pub(super) fn setup(
        &mut self,
        req: &Request,
        caller: &Caller,
        owner: &OwnerKey,
        env: &mut Env<'_>,
    ) -> Result<Done, Refusal> {
        let (media, rest) = self.resolve(&req.uri)?;
        let track_index = match rest.as_slice() {
            [] if media.index.tracks.len() == 1 => 0,
            [] => return Err(Refusal::AggregateNotAllowed),
            [one] => match one
                .strip_prefix("trackID=")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) if n < media.index.tracks.len() => n,
                _ => return Err(Refusal::NotFound(format!("no track {one:?}"))),
            },
            _ => return Err(Refusal::NotFound(format!("no track {:?}", rest.join("/")))),
        };
        let token = self.check_token(&req.uri, &media.name, caller.peer.ip(), env.wall)?;
        let transport = req.header("Transport").ok_or(Refusal::TransportMissing)?;
        let alternatives = parse_transport(transport).map_err(|error| Refusal::Transport {
            header: transport.to_owned(),
            error,
        })?;
        // RFC 2326 §12.39 `mode`: this server only plays. A client asking to RECORD
        // (publish) is told its transport cannot be had, rather than given a session.
        if alternatives.iter().all(|a| !a.mode_play) {
            return Err(Refusal::RecordNotSupported);
        }
        let existing = match req.session_id() {
            Some(sid) => {
                let id = parse_session_id(sid)
                    .filter(|id| self.sessions.contains_key(id))
                    .ok_or(Refusal::SessionNotFound("unknown session"))?;
                let rec = &self.sessions[&id];
                if rec.owner != owner.0 {
                    return Err(Refusal::SessionNotFound(
                        "session belongs to another client",
                    ));
                }
                if !Arc::ptr_eq(&rec.media, &media) {
                    return Err(Refusal::AggregateNotAllowed);
                }
                if rec.state != SessionState::Ready {
                    return Err(Refusal::NotValidInState(rec.state));
                }
                Some((id, rec.shard, rec.multicast))
            }
            None => None,
        };
        let used_channels: Vec<u8> = existing
            .and_then(|(id, _, _)| self.sessions.get(&id))
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|t| t.track_index != track_index)
                    .filter_map(|t| match t.dest {
                        TrackDest::Interleaved {
                            rtp_channel,
                            rtcp_channel,
                        } => Some([rtp_channel, rtcp_channel]),
                        TrackDest::Udp { .. } | TrackDest::WebRtc => None,
                    })
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        let channel = self.channel_of(&media);
        let log = self.log_of(&media);
        let ssrc: Ssrc = match (&channel, &log) {
            (Some(ch), _) => ch.tracks[track_index].ssrc,
            (None, Some(log)) => log.tracks[track_index].ssrc,
            (None, None) => env.rng.gen(),
        };
        // The shard: the session's, or the least loaded one with bandwidth left (checked
        // after the transport, so a refused transport creates nothing).
        let chosen_shard = existing.map(|(_, shard, _)| shard);
        let pick_ports = |shard: usize| self.shard_ports[shard];
        let group = channel
            .as_ref()
            .and_then(|ch| self.multicast_of(&ch.name))
            .cloned();
        let mut chosen = None;
        let mut multicast = None;
        let mut udp_client_port = false;
        let mut udp_over_tls = false;
        let mut srtp_unkeyed = None;
        let mut chosen_srtp = None;
        for alt in alternatives {
            if !alt.mode_play {
                continue;
            }
            // `RTP/SAVP` (RFC 3711): only with the keys a DESCRIBE on this RTSPS connection
            // offered (MIKEY, `super::srtp`) — never answered with plain RTP.
            let srtp_keys = if alt.srtp {
                if !caller.secure {
                    srtp_unkeyed = Some("SRTP keys are only offered over RTSPS");
                    continue;
                }
                if !self.config.rtsps_srtp {
                    srtp_unkeyed = Some("this server offers no SRTP (rtsps-srtp is off)");
                    continue;
                }
                let Some(offer) = self
                    .srtp_offers
                    .get(&caller.conn)
                    .filter(|o| Arc::ptr_eq(&o.media, &media))
                else {
                    srtp_unkeyed =
                        Some("no DESCRIBE of this stream on this connection offered SRTP keys");
                    continue;
                };
                if !alt.unicast {
                    continue;
                }
                // RFC 4567 §3.2: the client's own key, for the SRTCP it sends.
                let theirs =
                    super::srtp::client_key(req.header("KeyMgmt")).map_err(Refusal::KeyMgmt)?;
                offer.keys(track_index, theirs)
            } else {
                None
            };
            if !alt.unicast && caller.secure {
                // RTSPS: a group is plain RTP over UDP too.
                udp_over_tls = true;
                continue;
            }
            if !alt.unicast {
                // RFC 2326 §12.39 `multicast`: only a channel with a group, over UDP. The group,
                // ports and TTL are the channel's, whatever `destination`, `port` or `ttl` the
                // client suggested: a client cannot aim the group's traffic anywhere else.
                let ports = match (&group, alt.lower) {
                    (Some(g), LowerTransport::Udp) => g.track_ports(track_index),
                    _ => None,
                };
                if let (Some(g), Some((rtp, rtcp))) = (&group, ports) {
                    chosen = Some((TrackDest::Udp { rtp, rtcp }, None, false));
                    multicast = Some(g.clone());
                    break;
                }
                continue;
            }
            match alt.lower {
                // RTSPS: plain RTP over UDP would leak what the viewer chose TLS for.
                LowerTransport::Udp if caller.secure && srtp_keys.is_none() => {
                    udp_over_tls = true;
                }
                LowerTransport::Udp => {
                    // RTSP 2.0 names the ports in `dest_addr` (RFC 7826 §18.54); a host
                    // there other than the client's makes the alternative unusable.
                    let ports = alt.client_port.or_else(|| {
                        alt.dest_addr
                            .filter(|d| d.host.is_none_or(|h| h == caller.peer.ip()))
                            .map(|d| (d.rtp, d.rtcp))
                    });
                    if let Some((rtp, rtcp)) = ports {
                        // The client's own address only: `destination` redirection would let
                        // anyone aim a stream at a third party (RFC 2326 §12.39, §17).
                        let dest = TrackDest::Udp {
                            rtp: SocketAddr::new(caller.peer.ip(), rtp),
                            rtcp: SocketAddr::new(caller.peer.ip(), rtcp),
                        };
                        udp_client_port = alt.client_port.is_some();
                        chosen = Some((dest, Some((rtp, rtcp)), false));
                        chosen_srtp = srtp_keys;
                        break;
                    }
                }
                LowerTransport::Tcp => {
                    let (a, b) = alt.interleaved.unwrap_or_else(|| {
                        let a = (track_index as u8).saturating_mul(2);
                        (a, a.saturating_add(1))
                    });
                    if used_channels.contains(&a) || used_channels.contains(&b) {
                        continue;
                    }
                    let dest = TrackDest::Interleaved {
                        rtp_channel: a,
                        rtcp_channel: b,
                    };
                    chosen = Some((dest, None, true));
                    chosen_srtp = srtp_keys;
                    break;
                }
            }
        }
        let Some((dest, udp_ports, is_tcp)) = chosen else {
            if udp_over_tls {
                return Err(Refusal::UdpOverTls(transport.to_owned()));
            }
            if let Some(why) = srtp_unkeyed {
                return Err(Refusal::SrtpUnkeyed {
                    transport: transport.to_owned(),
                    why,
                });
            }
            return Err(Refusal::NoTransport(transport.to_owned()));
        };
        // An SRTP track uses the SSRC its MIKEY crypto-session map named (RFC 3830 §6.1.1).
        let (srtp, ssrc) = match chosen_srtp {
            Some((keys, offered)) => (Some(keys), offered),
            None => (None, ssrc),
        };
        // One session is all multicast or all unicast: its PLAY either joins the group or
        // asks a shard, never both.
        if let Some((_, _, was_multicast)) = existing {
            if was_multicast != multicast.is_some() {
                return Err(Refusal::NoTransport(format!(
                    "{transport} (the session's other tracks are {})",
                    if was_multicast {
                        "multicast"
                    } else {
                        "unicast"
                    }
                )));
            }
        }
        // A multicast viewer costs its shard no bandwidth (the group is sent once either way)
        // but still counts against the viewer limits.
        let (viewer_bps, order): (u64, Vec<usize>) = match &multicast {
            Some(g) => (0, vec![g.shard]),
            None => {
                let mut order: Vec<usize> = (0..self.shard_ports.len()).collect();
                order.sort_by_key(|&i| self.assigned[i]);
                (media.bitrate_bps(), order)
            }
        };
        let (id, shard) = match (existing, chosen_shard) {
            (Some((id, _, _)), Some(shard)) => (id, shard),
            _ => {
                let shard = self
                    .admission
                    .open_viewer(caller.peer.ip(), viewer_bps, &order)
                    .map_err(Refusal::OverLimit)?;
                let mut id: SessionId = env.rng.gen();
                while self.id_in_use(id) {
                    id = env.rng.gen();
                }
                (id, shard)
            }
        };
        let transport_reply = match (&dest, udp_ports) {
            (TrackDest::Udp { rtp, rtcp }, None) if multicast.is_some() => {
                let ttl = multicast.as_ref().map_or(1, |g| g.ttl);
                super::multicast::format_multicast_reply(
                    rtp.ip(),
                    (rtp.port(), rtcp.port()),
                    ttl,
                    ssrc,
                )
            }
            // RFC 7826 §18.54: the 2.0 form names addresses (`dest_addr`, `src_addr`).
            (_, Some(client)) if req.version == Version::V2_0 => {
                let (server_rtp, server_rtcp) = pick_ports(shard);
                format_udp_reply_v2(
                    SocketAddr::new(caller.peer.ip(), client.0),
                    client.1,
                    SocketAddr::new(caller.local.ip(), server_rtp),
                    server_rtcp,
                    ssrc,
                    udp_client_port,
                )
            }
            (_, Some(client)) => format_udp_reply(client, pick_ports(shard), ssrc),
            (
                TrackDest::Interleaved {
                    rtp_channel,
                    rtcp_channel,
                },
                None,
            ) => format_tcp_reply((*rtp_channel, *rtcp_channel), ssrc),
            (TrackDest::Udp { .. } | TrackDest::WebRtc, None) => {
                return Err(Refusal::NoTransport(transport.to_owned()))
            }
        };
        // RFC 3711 §12: the answer names the SRTP profile the media leaves in.
        let transport_reply = if srtp.is_some() {
            transport_reply.replacen("RTP/AVP", "RTP/SAVP", 1)
        } else {
            transport_reply
        };
        // A live channel's viewers share its numbering space (one SSRC per channel track).
        // So do a live log's (the log numbers its packets).
        let (initial_seq, initial_rtptime) = match (&channel, &log) {
            (Some(ch), _) => (ch.tracks[track_index].seq0, ch.tracks[track_index].ts0),
            (None, Some(log)) => (log.tracks[track_index].seq0, log.tracks[track_index].ts0),
            (None, None) => (env.rng.gen(), env.rng.gen()),
        };
        let setup = TrackSetup {
            track_index,
            payload_type: media
                .index
                .tracks
                .get(track_index)
                .map_or(crate::wire::sdp::FIRST_PAYLOAD_TYPE, |t| {
                    crate::wire::sdp::payload_type_for(&t.codec, track_index)
                }),
            ssrc,
            initial_seq,
            initial_rtptime,
            dest,
            source: None,
            srtp,
        };
        if !self.sessions.contains_key(&id) {
            self.assigned[shard] += 1;
            let handle = env.rng.gen();
            self.sessions.insert(
                id,
                SessionRecord {
                    media: media.clone(),
                    shard,
                    tracks: Vec::new(),
                    state: SessionState::Ready,
                    on_shard: false,
                    registered: false,
                    activity: Arc::new(Activity::default()),
                    tcp_conn: None,
                    viewer_ssrcs: ViewerSsrcs::default(),
                    peer: caller.peer,
                    bitrate_bps: viewer_bps,
                    origin: caller.conn,
                    token: None,
                    owner: owner.0.clone(),
                    handle,
                    created: env.now,
                    whep_key: None,
                    multicast: multicast.is_some(),
                    notify: None,
                },
            );
        }
        let log_live = log.is_some();
        let log = self.may_log(caller.peer.ip(), env.now);
        let timeout = self.config.session_timeout;
        let rec = self
            .sessions
            .get_mut(&id)
            .ok_or(Refusal::SessionNotFound("unknown session"))?;
        if token.is_some() {
            rec.token = token;
        }
        rec.activity.touch(env.now);
        rec.tracks.retain(|t| t.track_index != track_index);
        rec.tracks.push(setup);
        if is_tcp {
            rec.tcp_conn = Some(caller.conn);
        }
        if log {
            tracing::info!(session = %format_args!("{id:016X}"), peer = %caller.peer, stream = %media.name, track = track_index, shard, transport = %transport_reply, "setup");
        }
        self.remember_pipeline(req, caller, id);
        Ok(Done::ok(
            Response::new(StatusCode::Ok)
                .header("Transport", transport_reply)
                .header("Session", session_header(id, timeout)),
        )
        .about(channel.is_some() || log_live))
    }

    /// Finds the session a request names, if the caller owns it (any other client gets the
    /// answer of an unknown id); checks the URI is its aggregate (or its only track).
    fn session_for(
        &self,
        req: &Request,
        owner: &OwnerKey,
        now: Instant,
    ) -> Result<SessionId, Refusal> {
        let id = req
            .session_id()
            .and_then(parse_session_id)
            .ok_or(Refusal::SessionNotFound("no or malformed Session header"))?;
        let rec = self
            .sessions
            .get(&id)
            .ok_or(Refusal::SessionNotFound("unknown session"))?;
        if rec.owner != owner.0 {
            return Err(Refusal::SessionNotFound(
                "session belongs to another client",
            ));
        }
        rec.activity.touch(now);
        if req.uri != "*" {
            // The session's own stream first, by name: it may have left the catalog since
            // (a publisher gone for good, a file removed) and its viewer must still be able
            // to PAUSE, keep alive and TEARDOWN what it set up (§10.7).
            let rest = match own_stream_rest(&req.uri, &rec.media.name) {
                Some(rest) => rest,
                None => {
                    let (media, rest) = self.resolve(&req.uri)?;
                    if !Arc::ptr_eq(&media, &rec.media) {
                        return Err(Refusal::OtherStream);
                    }
                    rest
                }
            };
            if !rest.is_empty() && rec.tracks.len() > 1 {
                return Err(Refusal::OnlyAggregate);
            }
        }
        Ok(id)
    }

    /// PLAY (§10.5): checks, then asks the shard where the stream starts.
    pub(super) fn play(
        &mut self,
        req: &Request,
        caller: &Caller,
        owner: &OwnerKey,
        env: &mut Env<'_>,
    ) -> Result<Step, Refusal> {
        let id = self.session_for(req, owner, env.now)?;
        if self.sessions.get(&id).is_some_and(|r| r.multicast) {
            return self.multicast_play(id).map(Step::done);
        }
        // RFC 2326 §12.34/§12.35: Scale and Speed are checked here and served as
        // `choose_rate` decides (trick play for stored media with video); the answer
        // carries the rate actually used.
        let mut asked = [None, None];
        for (k, (name, header)) in [("Scale", RateHeader::Scale), ("Speed", RateHeader::Speed)]
            .into_iter()
            .enumerate()
        {
            if let Some(value) = req.header(name) {
                asked[k] = Some(check_rate(header, value).map_err(|error| Refusal::Rate {
                    header: name,
                    error,
                })?);
            }
        }
        let rec = &self.sessions[&id];
        let live = self.channel_of(&rec.media);
        let log = self.log_of(&rec.media);
        let duration = rec.media.duration().as_secs_f64();
        let stored = live.is_none() && log.is_none();
        // Trick play walks a video track's frames: H.264 or H.265 samples, each a whole
        // frame (an MPEG-TS run is seven transport packets, not a frame: it plays at 1).
        let frame_video = rec.tracks.iter().any(|t| {
            matches!(
                rec.media.index.tracks[t.track_index].codec,
                crate::media::track::Codec::H264(_) | crate::media::track::Codec::H265(_)
            )
        });
        let rate = choose_rate(asked[0], asked[1], stored && frame_video);
        let echo_rates: Vec<(&'static str, String)> = [
            ("Scale", asked[0].map(|_| rate.scale)),
            ("Speed", asked[1].map(|_| rate.speed)),
        ]
        .into_iter()
        .filter_map(|(name, v)| Some((name, format_rate(v?))))
        .collect();
        // A live channel cannot seek: every PLAY joins at the live edge, whatever Range asks
        // (players such as ffmpeg always send `npt=0.000-`).
        let range = if stored { req.header("Range") } else { None };
        let window = if rate.reverse() {
            vod_reverse_window(range, duration)
        } else {
            vod_play_window(range, duration)
        }
        .map_err(Refusal::Range)?;
        let setup = (!rec.on_shard).then(|| {
            Box::new(SessionSetup {
                id,
                media: rec.media.clone(),
                tracks: rec.tracks.clone(),
                sink: None,
                activity: rec.activity.clone(),
                // A file's SRTP packets keep within the budget with their tag (RFC 3711
                // §3.1); a live stream's numbering counts packets of the server's budget.
                payload_budget_bytes: if live.is_none()
                    && log.is_none()
                    && rec.tracks.iter().any(|t| t.srtp.is_some())
                {
                    self.config
                        .payload_budget_bytes
                        .saturating_sub(SRTP_TAG_LEN)
                } else {
                    self.config.payload_budget_bytes
                },
                cname: format!("shardcast@{}", caller.local.ip()),
                live: live.clone(),
                log: log.clone(),
            })
        });
        let pending = Pending {
            shard: rec.shard,
            id,
            kind: PendingKind::Play(PlayPending {
                content_base: self.content_base(caller, &rec.media),
                token: rec.token.clone(),
                track_order: rec.tracks.iter().map(|t| t.track_index).collect(),
                live: live.is_some() || log.is_some(),
                echo_rates,
                version: req.version,
                conn: caller.conn,
            }),
        };
        let ask = ShardAsk::Play {
            id,
            setup,
            sink_of: rec.tcp_conn,
            start_npt_secs: window.start,
            end: window.end,
            rate,
        };
        Ok(Step::Ask(ask, pending))
    }

    /// The PLAY answer once the shard said where the stream starts.
    pub(super) fn play_started(
        &mut self,
        id: SessionId,
        started: PlayStarted,
        play: PlayPending,
    ) -> Result<Done, Refusal> {
        let PlayPending {
            content_base,
            token,
            track_order,
            live,
            echo_rates,
            version,
            conn,
        } = play;
        let timeout = self.config.session_timeout;
        let rec = self.sessions.get_mut(&id).ok_or(Refusal::SessionNotFound(
            "session ended while the shard answered",
        ))?;
        rec.state = SessionState::Playing;
        let mut effects = Vec::new();
        if !rec.registered {
            rec.registered = true;
            effects.push(Effect::SessionStarted(SessionMeta {
                id,
                handle: rec.handle,
                stream: rec.media.name.clone(),
                peer: rec.peer,
                transport: if rec.tcp_conn.is_some() {
                    StatsTransport::Tcp
                } else {
                    StatsTransport::Udp
                },
                shard: rec.shard,
                track_kinds: rec
                    .tracks
                    .iter()
                    .map(|t| match rec.media.index.tracks[t.track_index].kind {
                        TrackKind::Video => "video",
                        TrackKind::Audio => "audio",
                    })
                    .collect(),
            }));
        }
        // A tokenized SETUP URL is `trackID=N?token=...`: RTP-Info names the same URL,
        // since clients (ffmpeg, retina) match RTP-Info entries to their control URLs
        // verbatim (§12.33).
        let token_suffix = token.map(|t| format!("?token={t}")).unwrap_or_default();
        let rtp_info: Vec<String> = track_order
            .iter()
            .filter_map(|ti| started.tracks.iter().find(|t| t.track_index == *ti))
            .map(|t| match version {
                Version::V1_0 => format!(
                    "url={content_base}trackID={}{token_suffix};seq={};rtptime={}",
                    t.track_index, t.seq, t.rtptime
                ),
                // RFC 7826 §18.45: `url="…" ssrc=HEX:seq=…;rtptime=…`.
                Version::V2_0 => {
                    let ssrc = rec
                        .tracks
                        .iter()
                        .find(|s| s.track_index == t.track_index)
                        .map_or(Ssrc(0), |s| s.ssrc);
                    v2::rtp_info_entry(
                        &format!("{content_base}trackID={}{token_suffix}", t.track_index),
                        ssrc,
                        t.seq.0,
                        Some(t.rtptime.0),
                    )
                }
            })
            .collect();
        // RFC 7826 §13.5: a 2.0 session hears of the end of a file on this connection.
        rec.notify = (version == Version::V2_0 && !live).then(|| v2::NotifyTarget {
            conn,
            base: content_base.clone(),
            token_suffix: token_suffix.clone(),
            range: (started.start_npt_secs, started.end_npt_secs),
        });
        let mut response = Response::new(StatusCode::Ok)
            .header(
                "Range",
                if live {
                    "npt=now-".to_owned()
                } else {
                    format_npt_range(started.start_npt_secs, Some(started.end_npt_secs))
                },
            )
            .header("RTP-Info", rtp_info.join(","))
            .header("Session", session_header(id, timeout));
        for (name, value) in echo_rates {
            response = response.header(name, value);
        }
        Ok(Done {
            response,
            effects,
            after_response: vec![Effect::Shard {
                shard: rec.shard,
                order: ShardOrder::Start(id),
            }],
            live: Some(live),
        })
    }

    /// PAUSE (§10.6): a session that has played; the shard stops sending and answers the
    /// position. A live stream's viewer is held the same way and rejoins the live edge on
    /// its next PLAY (as live555, gst-rtsp-server and MediaMTX do: players such as GStreamer
    /// PAUSE whenever their pipeline stops, and a refusal surfaces there as an error). A
    /// multicast viewer has nothing on a shard to hold: the group runs on for the others.
    pub(super) fn pause(
        &mut self,
        req: &Request,
        owner: &OwnerKey,
        now: Instant,
    ) -> Result<Step, Refusal> {
        let id = self.session_for(req, owner, now)?;
        let timeout = self.config.session_timeout;
        let rec = self
            .sessions
            .get_mut(&id)
            .ok_or(Refusal::SessionNotFound("unknown session"))?;
        if rec.state == SessionState::Ready {
            return Err(Refusal::NotValidInState(rec.state));
        }
        if rec.multicast {
            rec.state = SessionState::Paused;
            return Ok(Step::done(Done::ok(
                Response::new(StatusCode::Ok).header("Session", session_header(id, timeout)),
            )));
        }
        if !rec.on_shard {
            return Err(Refusal::NotValidInState(rec.state));
        }
        Ok(Step::Ask(
            ShardAsk::Pause { id },
            Pending {
                shard: rec.shard,
                id,
                kind: PendingKind::Pause,
            },
        ))
    }

    pub(super) fn paused(&mut self, id: SessionId, position: f64) -> Result<Done, Refusal> {
        let timeout = self.config.session_timeout;
        let media =
            self.sessions
                .get(&id)
                .map(|r| r.media.clone())
                .ok_or(Refusal::SessionNotFound(
                    "session ended while the shard answered",
                ))?;
        let live = self.channel_of(&media).is_some() || self.log_of(&media).is_some();
        if let Some(rec) = self.sessions.get_mut(&id) {
            rec.state = SessionState::Paused;
        }
        let duration = media.duration().as_secs_f64();
        let mut response = Response::new(StatusCode::Ok);
        // A live stream has no position to report: its next PLAY starts at the live edge.
        if !live {
            response = response.header("Range", format_npt_range(position, Some(duration)));
        }
        Ok(Done::ok(
            response.header("Session", session_header(id, timeout)),
        ))
    }

    /// TEARDOWN (§10.7): the session ends (its shard sends RTCP BYE).
    pub(super) fn teardown(
        &mut self,
        req: &Request,
        owner: &OwnerKey,
        now: Instant,
    ) -> Result<Step, Refusal> {
        let id = self.session_for(req, owner, now)?;
        let mut effects = Vec::new();
        self.end_session(id, true, &mut effects);
        Ok(Step::done(Done {
            response: Response::new(StatusCode::Ok),
            effects,
            after_response: Vec::new(),
            live: None,
        }))
    }
}

/// The segments after `name` in the request URI's path, if the path starts with the stream
/// `name` (`live/cam1` in `rtsp://host/live/cam1/trackID=0`).
pub(super) fn own_stream_rest(uri: &str, name: &str) -> Option<Vec<String>> {
    let segments = split_request_uri(uri).ok()?.segments;
    let own: Vec<&str> = name.split('/').collect();
    let head = segments.get(..own.len())?;
    head.iter()
        .zip(&own)
        .all(|(a, b)| a == b)
        .then(|| segments[own.len()..].to_vec())
}
