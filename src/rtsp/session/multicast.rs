//! Live channels sent once to a multicast group (docs/design/reach.md, "Multicast").
//!
//! A channel configured with `multicast = "GROUP:PORT"` gets one *emitter*: an ordinary shard
//! session whose tracks go over UDP to the group (track k to `PORT + 2k`, its RTCP sender
//! reports to `PORT + 2k + 1`), started with the server and never expiring. It is built here
//! ([`SessionCore::add_multicast`]) and handed to the shell, which gives it to its shard like
//! any PLAY. Viewers that SETUP `multicast` (RFC 2326 §12.39, RFC 7826 §18.54) are told the
//! group, ports and TTL; their sessions never reach a shard: PLAY only counts them, so a
//! thousand multicast listeners cost the shard what one unicast viewer costs. Unicast SETUPs
//! of the same channel keep working. The group carries the channel's own SSRCs and numbering
//! (every viewer of a channel shares them), so the Transport answer names the same SSRC a
//! unicast viewer would get.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rand::{Rng, RngCore};

use super::{Done, Effect, Refusal, SessionCore, SessionMeta, SessionState, StatsTransport};
use crate::media::track::TrackKind;
use crate::rtsp::msg::{Response, StatusCode};
use crate::shard::{Activity, SessionId, SessionSetup, TrackDest, TrackSetup};
use crate::wire::rtp::Ssrc;

/// One channel's multicast group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MulticastGroup {
    /// Group address and the first track's RTP port.
    pub(super) base: SocketAddr,
    /// Time to live announced to viewers (the shards' sockets send with it).
    pub(super) ttl: u8,
    /// The emitter's session id on its shard (reserved: no viewer session gets it).
    pub(super) emitter: SessionId,
    /// The shard that sends the group.
    pub(super) shard: usize,
}

impl MulticastGroup {
    /// Where track `track_index` goes: (RTP, RTCP), `None` past port 65535.
    pub(super) fn track_ports(&self, track_index: usize) -> Option<(SocketAddr, SocketAddr)> {
        let rtp = usize::from(self.base.port()).checked_add(track_index.checked_mul(2)?)?;
        let rtp = u16::try_from(rtp).ok()?;
        let rtcp = rtp.checked_add(1)?;
        Some((
            SocketAddr::new(self.base.ip(), rtp),
            SocketAddr::new(self.base.ip(), rtcp),
        ))
    }
}

/// Why a channel could not be put on its multicast group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MulticastError {
    /// No live channel of that name.
    #[error("no live channel named {0:?}")]
    NoChannel(String),
    /// The channel's tracks need ports past 65535.
    #[error("{tracks} tracks from port {port} need ports past 65535")]
    PortsExhausted {
        /// First RTP port.
        port: u16,
        /// Tracks of the channel.
        tracks: usize,
    },
}

/// The multicast reply form (RFC 2326 §12.39, RFC 7826 §18.54 keeps `destination`, `port`
/// and `ttl` for multicast): `RTP/AVP;multicast;destination=G;port=a-b;ttl=T;ssrc=X`.
pub(super) fn format_multicast_reply(
    group: IpAddr,
    ports: (u16, u16),
    ttl: u8,
    ssrc: Ssrc,
) -> String {
    format!(
        "RTP/AVP;multicast;destination={group};port={}-{};ttl={ttl};ssrc={ssrc:08X};mode=\"PLAY\"",
        ports.0, ports.1
    )
}

impl SessionCore {
    /// Puts live channel `name` on the multicast group `base` (group and first RTP port) with
    /// `ttl`, sent by the shard with the fewest sessions assigned. Returns that shard and the
    /// emitter session to PLAY and Start on it (the shell does; nothing answers it).
    pub fn add_multicast(
        &mut self,
        name: &str,
        base: SocketAddr,
        ttl: u8,
        cname: String,
        rng: &mut dyn RngCore,
    ) -> Result<(usize, Box<SessionSetup>), MulticastError> {
        let channel = self
            .channels
            .get(name)
            .cloned()
            .ok_or_else(|| MulticastError::NoChannel(name.to_owned()))?;
        let shard = (0..self.assigned.len())
            .min_by_key(|&i| self.assigned[i])
            .unwrap_or(0);
        let mut emitter: SessionId = rng.gen();
        while self.id_in_use(emitter) {
            emitter = rng.gen();
        }
        let group = MulticastGroup {
            base,
            ttl,
            emitter,
            shard,
        };
        let media = channel.media.clone();
        let mut tracks = Vec::with_capacity(channel.tracks.len());
        for (track_index, (live_track, track)) in
            channel.tracks.iter().zip(&media.index.tracks).enumerate()
        {
            let (rtp, rtcp) =
                group
                    .track_ports(track_index)
                    .ok_or(MulticastError::PortsExhausted {
                        port: base.port(),
                        tracks: channel.tracks.len(),
                    })?;
            tracks.push(TrackSetup {
                track_index,
                payload_type: crate::wire::sdp::payload_type_for(&track.codec, track_index),
                ssrc: live_track.ssrc,
                initial_seq: live_track.seq0,
                initial_rtptime: live_track.ts0,
                dest: TrackDest::Udp { rtp, rtcp },
                source: None,
                srtp: None,
            });
        }
        self.assigned[shard] += 1;
        self.multicast.insert(name.to_owned(), group);
        let setup = SessionSetup {
            id: emitter,
            media,
            tracks,
            sink: None,
            activity: Arc::new(Activity::default()),
            payload_budget_bytes: self.config.payload_budget_bytes,
            cname,
            live: Some(channel),
            log: None,
        };
        Ok((shard, Box::new(setup)))
    }

    /// True when `id` may not be given to a new session: zero, taken, or a multicast emitter's.
    pub(super) fn id_in_use(&self, id: SessionId) -> bool {
        id == 0
            || self.sessions.contains_key(&id)
            || self.multicast.values().any(|g| g.emitter == id)
    }

    /// The multicast group of stream `name`, if it has one.
    pub(super) fn multicast_of(&self, name: &str) -> Option<&MulticastGroup> {
        self.multicast.get(name)
    }

    /// PLAY of a multicast session: the group is already on the air, so the viewer is only
    /// counted (statistics, the catalog's viewer count) and told where the live edge is.
    /// No `RTP-Info`: the viewer joins a running stream whose next packet the control thread
    /// does not know, and RFC 2326 §12.33 makes the header optional; players sync from the
    /// group's RTCP sender reports.
    pub(super) fn multicast_play(&mut self, id: SessionId) -> Result<Done, Refusal> {
        let timeout = self.config.session_timeout;
        let rec = self
            .sessions
            .get_mut(&id)
            .ok_or(Refusal::SessionNotFound("unknown session"))?;
        rec.state = SessionState::Playing;
        let mut effects = Vec::new();
        if !rec.registered {
            rec.registered = true;
            effects.push(Effect::SessionStarted(SessionMeta {
                id,
                handle: rec.handle,
                stream: rec.media.name.clone(),
                peer: rec.peer,
                transport: StatsTransport::Multicast,
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
        Ok(Done {
            response: Response::new(StatusCode::Ok)
                .header("Range", "npt=now-")
                .header("Session", super::session_header(id, timeout)),
            effects,
            after_response: Vec::new(),
            // A group only ever carries a live channel.
            live: Some(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_take_consecutive_port_pairs_and_stop_at_65535() {
        let g = MulticastGroup {
            base: "239.1.2.3:5000".parse().unwrap(),
            ttl: 4,
            emitter: 7,
            shard: 0,
        };
        assert_eq!(
            g.track_ports(1),
            Some((
                "239.1.2.3:5002".parse().unwrap(),
                "239.1.2.3:5003".parse().unwrap()
            ))
        );
        let top = MulticastGroup {
            base: "239.1.2.3:65534".parse().unwrap(),
            ..g
        };
        assert!(top.track_ports(0).is_some());
        assert_eq!(top.track_ports(1), None);
    }

    #[test]
    fn reply_names_group_ports_ttl_and_ssrc() {
        assert_eq!(
            format_multicast_reply("239.1.2.3".parse().unwrap(), (5000, 5001), 1, Ssrc(0xAB)),
            "RTP/AVP;multicast;destination=239.1.2.3;port=5000-5001;ttl=1;ssrc=000000AB;mode=\"PLAY\""
        );
    }
}
