//! What the core keeps per session, and who owns it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::{ConnId, SessionState, Settings};
use crate::ids::SessionHandle;
use crate::media::MediaFile;
use crate::shard::{Activity, TrackDest, TrackSetup};
use crate::stats::ViewerSsrcs;

/// What a client proved when it created a session, and what every later request naming
/// the session must match (docs/SECURITY.md, "Session binding"). RFC 2326 §12.37 lets a
/// session span connections, so the connection is not part of it; the address and the
/// authenticated user are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Owner {
    /// The client's IP address (the port changes with each connection).
    pub(super) addr: IpAddr,
    /// The user it authenticated as; `None` on a stream open to anyone.
    pub(super) user: Option<String>,
}

/// A session as the control plane knows it.
#[derive(Debug)]
pub(super) struct SessionRecord {
    pub(super) media: Arc<MediaFile>,
    pub(super) shard: usize,
    pub(super) tracks: Vec<TrackSetup>,
    pub(super) state: SessionState,
    /// The shard has been given the session (first PLAY sent).
    pub(super) on_shard: bool,
    /// Registered with the statistics hub (first PLAY answered).
    pub(super) registered: bool,
    pub(super) activity: Arc<Activity>,
    /// Connection that set up interleaved tracks (they die with it).
    pub(super) tcp_conn: Option<ConnId>,
    /// SSRCs the viewer sent interleaved reports about our tracks from; an interleaved BYE
    /// must name one (RFC 3550 §6.6).
    pub(super) viewer_ssrcs: ViewerSsrcs,
    pub(super) peer: SocketAddr,
    /// Average bitrate committed against the shard's bandwidth limit.
    pub(super) bitrate_bps: u64,
    /// The connection whose SETUP created the session (closed when an admin ends it).
    pub(super) origin: ConnId,
    /// The play token the SETUP carried, echoed in RTP-Info URLs so clients match them with
    /// their control URLs.
    pub(super) token: Option<String>,
    pub(super) owner: Owner,
    /// The session's name in the HTTP API (the RTSP id stays with its owner).
    pub(super) handle: SessionHandle,
    /// When its first SETUP arrived (a session never played expires after `setup-timeout`).
    pub(super) created: Instant,
    /// A WHEP session's resource key (`/whep/session/{key}`).
    pub(super) whep_key: Option<String>,
    /// Its tracks are a channel's multicast group: nothing of it is on a shard.
    pub(super) multicast: bool,
    /// Set by a PLAY in RTSP 2.0: where its end-of-stream `PLAY_NOTIFY` goes (RFC 7826
    /// §13.5); `None` after a 1.0 PLAY.
    pub(super) notify: Option<super::v2::NotifyTarget>,
}

impl SessionRecord {
    /// Why the session has expired at `now`, if it has: idle past `session-timeout` (RFC
    /// 2326 §12.37), or set up but never played within `setup-timeout`.
    pub(super) fn expiry(&self, now: Instant, config: &Settings) -> Option<String> {
        if self.state == SessionState::Ready
            && now.saturating_duration_since(self.created) > config.setup_timeout
        {
            return Some(format!(
                "expired: set up but not played within {:?} (setup-timeout)",
                config.setup_timeout
            ));
        }
        (self.activity.idle_for(now) > config.session_timeout).then(|| {
            format!(
                "expired after {:?} without RTSP or RTCP",
                config.session_timeout
            )
        })
    }

    pub(super) fn has_interleaved_rtcp_channel(&self, channel: u8) -> bool {
        self.tracks.iter().any(|t| {
            matches!(t.dest, TrackDest::Interleaved { rtcp_channel, .. } if rtcp_channel == channel)
        })
    }
}

/// The caller as the owner of the sessions it creates: its address and authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OwnerKey(pub(super) Owner);
