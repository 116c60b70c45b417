//! How sessions end (TEARDOWN, expiry, their connection, their shard, an admin, a file
//! changing on disk, shutdown), interleaved RTCP, and reloads.

use super::*;

impl SessionCore {
    /// Ends a session: its record and admission accounting go, the hub forgets it, and its
    /// shard is told to tear it down (RTCP BYE) unless `tell_shard` is false (the shard
    /// ended it itself).
    pub(super) fn end_session(
        &mut self,
        id: SessionId,
        tell_shard: bool,
        effects: &mut Vec<Effect>,
    ) -> Option<SessionRecord> {
        let rec = self.sessions.remove(&id)?;
        if let Some(key) = &rec.whep_key {
            self.whep_keys.remove(key);
        }
        effects.push(Effect::SessionEnded(id));
        self.admission
            .close_viewer(rec.peer.ip(), rec.bitrate_bps, rec.shard);
        self.assigned[rec.shard] = self.assigned[rec.shard].saturating_sub(1);
        if rec.on_shard && tell_shard {
            effects.push(Effect::Shard {
                shard: rec.shard,
                order: ShardOrder::Teardown(id),
            });
        }
        Some(rec)
    }

    /// An interleaved frame from the client on connection `conn` (RFC 2326 §10.12): any frame
    /// is liveness for the connection's sessions; one on a track's RTCP channel is that
    /// session's RTCP (RFC 3550 §6.4), digested into statistics effects; a BYE ends the
    /// session (§6.6) if it names an SSRC the viewer reported from in an earlier frame.
    pub fn interleaved_frame(
        &mut self,
        conn: ConnId,
        channel: u8,
        payload: &[u8],
        arrival: NtpTime,
        now: Instant,
    ) -> Vec<Effect> {
        for rec in self.sessions.values().filter(|r| r.tcp_conn == Some(conn)) {
            rec.activity.touch(now);
        }
        let mut effects = Vec::new();
        if !self.config.stats {
            return effects;
        }
        // `RTP/SAVP/TCP`: the frame carries SRTCP (RFC 3711 §3.4), unprotected with the key
        // the client's `KeyMgmt` gave; one that does not authenticate, or of a client that
        // gave no key, is dropped as invalid. (No replay window: TLS already keeps the
        // stream's order and integrity.)
        let srtcp_key = self
            .sessions
            .values()
            .filter(|r| r.tcp_conn == Some(conn))
            .flat_map(|r| r.tracks.iter())
            .find(|t| {
                t.srtp.is_some()
                    && matches!(t.dest, TrackDest::Interleaved { rtcp_channel, .. } if rtcp_channel == channel)
            })
            .map(|t| t.srtp.as_ref().and_then(|k| k.theirs));
        let plain;
        let payload = match srtcp_key {
            None => payload,
            Some(key) => match key
                .as_ref()
                .and_then(|k| super::srtp::unprotect_rtcp(k, payload))
            {
                Some(p) => {
                    plain = p;
                    &plain[..]
                }
                None => {
                    effects.push(Effect::InterleavedRtcp(InterleavedRtcpCounts {
                        received: 1,
                        invalid: 1,
                        ..InterleavedRtcpCounts::default()
                    }));
                    return effects;
                }
            },
        };
        // The sessions of this connection receiving RTCP on `channel`: usually one, but a
        // client may run several sessions on one connection with the same channel numbers;
        // the one whose SSRCs the report names is meant.
        let candidates: Vec<(SessionId, Vec<TrackKey>, ViewerSsrcs)> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.tcp_conn == Some(conn) && r.has_interleaved_rtcp_channel(channel))
            .map(|(&id, r)| {
                let keys = r
                    .tracks
                    .iter()
                    .map(|t| TrackKey {
                        ssrc: t.ssrc,
                        clock_rate_hz: r.media.index.tracks[t.track_index].codec.clock_rate_hz(),
                    })
                    .collect();
                (id, keys, r.viewer_ssrcs)
            })
            .collect();
        if candidates.is_empty() {
            return effects;
        }
        let mut counts = InterleavedRtcpCounts {
            received: 1,
            ..InterleavedRtcpCounts::default()
        };
        let digests = candidates
            .iter()
            .map(|(id, keys, known)| digest_rtcp(payload, keys, arrival, *known).map(|d| (*id, d)));
        let best = match digests.collect::<Result<Vec<_>, _>>() {
            Ok(all) => all.into_iter().min_by_key(|(_, d)| d.unknown_ssrc_blocks),
            Err(e) => {
                counts.invalid += 1;
                tracing::debug!(conn, channel, "interleaved RTCP dropped: {e}");
                None
            }
        };
        let Some((id, digest)) = best else {
            effects.push(Effect::InterleavedRtcp(counts));
            return effects;
        };
        counts.unknown_ssrc += u64::from(digest.unknown_ssrc_blocks);
        effects.push(Effect::Receptions {
            id,
            receptions: digest.receptions.clone(),
        });
        if let Some(rec) = self.sessions.get_mut(&id) {
            rec.viewer_ssrcs = digest.viewer_ssrcs;
        }
        if digest.bye_refused {
            counts.byes_refused += 1;
            tracing::debug!(session = %format_args!("{id:016X}"), "interleaved RTCP BYE ignored: it names no SSRC the viewer reported from before (RFC 3550 §6.6)");
        }
        if digest.bye {
            counts.byes += 1;
            effects.push(Effect::InterleavedRtcp(counts));
            if let Some(rec) = self.end_session(id, true, &mut effects) {
                if self.may_log(rec.peer.ip(), now) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session ended: viewer sent RTCP BYE");
                }
            }
            return effects;
        }
        effects.push(Effect::InterleavedRtcp(counts));
        effects
    }

    /// A shard ended a session by itself (viewer BYE, TCP viewer too slow): the record goes
    /// without a Teardown back (the shard has already freed it).
    pub fn shard_ended(
        &mut self,
        id: SessionId,
        reason: EndReason,
        shard: usize,
        now: Instant,
    ) -> Vec<Effect> {
        let why = match reason {
            EndReason::ClientBye => "viewer sent RTCP BYE",
            EndReason::TooSlow => "viewer too slow (TCP backlog full)",
            EndReason::ConsentExpired => "WebRTC consent expired (no ICE check for 30 s)",
            EndReason::DtlsClosed => "WebRTC viewer closed DTLS",
        };
        let mut effects = Vec::new();
        if let Some(rec) = self.end_session(id, false, &mut effects) {
            if self.may_log(rec.peer.ip(), now) {
                tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, shard, "session ended by its shard: {why}");
            }
        }
        effects
    }

    /// Ends the sessions that expired by `now` (idle, or never played), and reports the
    /// log lines suppressed in windows that closed. Call it about once a second.
    pub fn expire(&mut self, now: Instant) -> Vec<Effect> {
        self.expire_publishers(now);
        let expired: Vec<(SessionId, String)> = self
            .sessions
            .iter()
            .filter_map(|(&id, r)| r.expiry(now, &self.config).map(|why| (id, why)))
            .collect();
        let mut effects = Vec::new();
        for (id, why) in expired {
            if let Some(rec) = self.end_session(id, true, &mut effects) {
                if self.may_log(rec.peer.ip(), now) {
                    tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session {why}");
                }
            }
        }
        for s in self.log_limit.sweep(now) {
            log_suppressed(s);
        }
        effects
    }

    /// Ends a session an admin named (through its API handle, resolved by the caller);
    /// returns the effects and the connection that created it (to close), or `None` when
    /// there is no such session.
    pub fn end_by_admin(&mut self, id: SessionId) -> Option<(Vec<Effect>, ConnId)> {
        let mut effects = Vec::new();
        let rec = self.end_session(id, true, &mut effects)?;
        tracing::info!(session = %format_args!("{id:016X}"), peer = %rec.peer, stream = %rec.media.name, "session ended through the API: BYE sent, closing its RTSP connection");
        Some((effects, rec.origin))
    }

    /// Ends every session (shutdown).
    pub fn end_all(&mut self) -> Vec<Effect> {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        let mut effects = Vec::new();
        for id in ids {
            self.end_session(id, true, &mut effects);
        }
        effects
    }

    /// Ends the viewers of media files that are about to change on disk (their read lease
    /// is being broken): BYE, then the last `Arc` drops, the mapping goes, the lease is
    /// released and the writer proceeds. New requests re-open and re-index the file.
    pub fn revoke_changing_media(&mut self) -> Vec<Effect> {
        let names = self.library.revoke_breaking();
        let doomed: Vec<(SessionId, String)> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.media.revoke_if_breaking())
            .map(|(&id, r)| (id, r.media.name.clone()))
            .collect();
        let mut effects = Vec::new();
        for (id, name) in &doomed {
            self.end_session(*id, true, &mut effects);
            tracing::info!(session = %format_args!("{id:016X}"), stream = %name, "session ended: its media file is changing on disk");
        }
        if !names.is_empty() || !doomed.is_empty() {
            tracing::warn!(files = ?names, sessions = doomed.len(), "media changing on disk: viewers ended, mapping released");
        }
        effects
    }

    /// Applies reloaded settings: users, access rules, Basic, admission limits, the media
    /// catalog and the play-token settings take effect for new requests; running sessions
    /// keep their files. `token_secret` is the configured secret, if any: a removed secret
    /// is replaced by a random one from `rng` (tokens signed with it must stop working);
    /// still none keeps this run's random key, so issued tokens stay valid. The timeouts
    /// keep their running values (they shape running sessions).
    pub fn apply_reload(
        &mut self,
        settings: Settings,
        library: Arc<MediaLibrary>,
        token_secret: Option<&str>,
        rng: &mut dyn RngCore,
    ) {
        self.auth = Authenticator::new(
            settings.users.clone(),
            settings.access.clone(),
            settings.allow_basic,
        );
        self.admission.set_limits(settings.admission);
        self.library = library;
        self.tokens.required = settings.require_token;
        match token_secret {
            Some(secret) => self.tokens.key = TokenKey::from_secret(secret),
            None if !self.tokens.key.ephemeral => self.tokens.key = TokenKey::random_from(rng),
            None => {}
        }
        self.config = Settings {
            session_timeout: self.config.session_timeout,
            payload_budget_bytes: self.config.payload_budget_bytes,
            stats: self.config.stats,
            ..settings
        };
    }
}
