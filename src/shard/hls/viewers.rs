//! The HLS viewers a shard served lately, for the statistics: an HLS viewer is not a
//! connection (players open several and reconnect) but the `v=` id its playlists carry,
//! given out with its multivariant playlist. A shard counts what it answered each viewer and
//! reports its viewers once a second; the hub adds up what every shard reported.
//!
//! Bounded: at most [`MAX_VIEWERS`] per shard (requests of further new ids are served, not
//! counted per viewer), and a viewer the shard has not served for [`VIEWER_IDLE`] is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::routes::{Served, ServedKind};
use crate::stats::HlsViewerReport;

/// Viewers one shard keeps counts for.
pub(crate) const MAX_VIEWERS: usize = 65_536;
/// A viewer with no request on this shard for this long is no longer reported by it.
pub(crate) const VIEWER_IDLE: Duration = Duration::from_secs(30);

/// A shard's HLS viewers.
#[derive(Debug, Default)]
pub(crate) struct Viewers {
    by_id: HashMap<u64, (HlsViewerReport, Instant)>,
}

impl Viewers {
    /// Counts one answered request of `bytes` body bytes.
    pub(crate) fn record(&mut self, served: &Served, peer: SocketAddr, bytes: u64, now: Instant) {
        let (Some(id), Some(stream)) = (served.viewer, served.stream.as_ref()) else {
            return;
        };
        if !self.by_id.contains_key(&id) && self.by_id.len() >= MAX_VIEWERS {
            return;
        }
        let (v, seen) = self.by_id.entry(id).or_insert_with(|| {
            (
                HlsViewerReport {
                    id,
                    stream: stream.clone(),
                    peer,
                    bytes: 0,
                    playlists: 0,
                    media_requests: 0,
                    late_requests: 0,
                },
                now,
            )
        });
        *seen = now;
        v.peer = peer;
        v.bytes += bytes;
        match served.kind {
            ServedKind::Playlist => v.playlists += 1,
            ServedKind::Segment | ServedKind::Part => v.media_requests += 1,
            ServedKind::Init | ServedKind::Other => {}
        }
        if served.late {
            v.late_requests += 1;
        }
    }

    /// Every viewer served within [`VIEWER_IDLE`], forgetting the others.
    pub(crate) fn report(&mut self, now: Instant) -> Vec<HlsViewerReport> {
        self.by_id
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < VIEWER_IDLE);
        self.by_id.values().map(|(v, _)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(viewer: u64, kind: ServedKind, late: bool) -> Served {
        Served {
            viewer: Some(viewer),
            stream: Some("ch".into()),
            kind,
            late,
        }
    }

    #[test]
    fn counts_per_viewer_and_forgets_idle_ones() {
        let mut v = Viewers::default();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let t = Instant::now();
        v.record(&served(7, ServedKind::Playlist, false), peer, 100, t);
        v.record(&served(7, ServedKind::Part, false), peer, 5_000, t);
        v.record(&served(7, ServedKind::Segment, true), peer, 200, t);
        v.record(
            &served(9, ServedKind::Init, false),
            peer,
            800,
            t + VIEWER_IDLE / 2,
        );
        let mut r = v.report(t + VIEWER_IDLE / 2);
        r.sort_by_key(|x| x.id);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0].bytes,
                r[0].playlists,
                r[0].media_requests,
                r[0].late_requests
            ),
            (5_300, 1, 2, 1)
        );
        let r = v.report(t + VIEWER_IDLE);
        assert_eq!(r.iter().map(|x| x.id).collect::<Vec<_>>(), vec![9]);
        // No viewer id (a refusal before routing): not counted.
        let mut anonymous = served(1, ServedKind::Other, false);
        anonymous.viewer = None;
        v.record(&anonymous, peer, 10, t);
        assert_eq!(v.report(t + VIEWER_IDLE / 2).len(), 1);
    }
}
