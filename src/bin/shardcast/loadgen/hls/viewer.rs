//! One HLS viewer's decisions, sans-IO: given each response (status, body) and the time, what
//! to request next or when to wake. The engine ([`super::engine`]) does the sockets.
//!
//! The walk: multivariant playlist → media playlist → init segment (`EXT-X-MAP`) → then
//! - **VOD** (`EXT-X-ENDLIST`): segments in order, never more than [`VOD_AHEAD_SEGMENTS`]
//!   target durations ahead of the playback clock; at the end it starts over (a loop);
//! - **LL-HLS** (`CAN-BLOCK-RELOAD=YES` and `EXT-X-PART-INF`): join near the live edge as
//!   hls.js does — `PART-HOLD-BACK` from the end (draft-pantos-hls-rfc8216bis §4.4.3.8: "the
//!   client SHOULD NOT … begin playback less than PART-HOLD-BACK from the end"), at an
//!   independent part at or before that point — then fetch each part in turn; a part not yet
//!   listed is waited for with a blocking playlist reload `_HLS_msn=M&_HLS_part=P`
//!   (§6.2.5.2), and past a segment's last part the walk moves to the next segment;
//! - **live without blocking reload**: join three target durations from the end (RFC 8216
//!   §6.3.3: the client "SHOULD NOT choose a segment that starts less than three target
//!   durations from the end of the Playlist file"), fetch new segments, and reload the
//!   playlist every half target duration while none is new (RFC 8216 §6.3.4).

use std::time::{Duration, Instant};

use super::http::Url;
use super::playback::Playback;
use super::playlist::{self, MediaPlaylist};

/// VOD read-ahead bound, in target durations (≈ segments) ahead of the playback clock.
pub(crate) const VOD_AHEAD_SEGMENTS: f64 = 3.0;
/// Wait before retrying a failed request.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// Failures in a row after which a viewer gives up.
const MAX_FAILURES_IN_A_ROW: u32 = 20;

/// What a request fetches (so its response is read the right way).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fetch {
    /// The entry URL (multivariant, or directly a media playlist).
    Multivariant,
    /// The media playlist; `blocking` with `_HLS_msn`/`_HLS_part`.
    Media {
        /// A blocking reload.
        blocking: bool,
    },
    /// The init segment.
    Init,
    /// Media segment `msn`.
    Segment {
        /// Its MSN.
        msn: u64,
        /// Its duration, seconds.
        duration_secs: f64,
    },
    /// Part `part` of segment `msn`.
    Part {
        /// Its segment's MSN.
        msn: u64,
        /// Its index in the segment.
        part: u32,
        /// Its duration, seconds.
        duration_secs: f64,
    },
}

impl Fetch {
    /// Whether the body is read (playlists) rather than only counted (media).
    pub(crate) fn keeps_body(self) -> bool {
        matches!(self, Fetch::Multivariant | Fetch::Media { .. })
    }
}

/// What the viewer wants next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Send this request (the viewer remembers it as in flight).
    Get(Url, Fetch),
    /// Call [`Viewer::wake`] at this time.
    WakeAt(Instant),
    /// Nothing more (gave up).
    Stop,
}

/// How the viewer follows the media playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FollowMode {
    /// Not known before the first media playlist.
    Unknown,
    /// A complete playlist.
    Vod,
    /// Live, part by part with blocking reloads.
    LowLatency,
    /// Live, segment by segment with periodic reloads.
    Live,
}

/// What a viewer counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewerStats {
    /// Multivariant request → first segment or part complete.
    pub(crate) ttfs: Option<Duration>,
    /// Body bytes of complete responses.
    pub(crate) body_bytes: u64,
    /// Responses received (any status).
    pub(crate) responses: u64,
    /// Media segments fetched.
    pub(crate) segments: u64,
    /// Parts fetched.
    pub(crate) parts: u64,
    /// Playlists fetched (multivariant and media).
    pub(crate) playlists: u64,
    /// Of which blocking reloads.
    pub(crate) blocking_reloads: u64,
    /// Responses other than 200, by status.
    pub(crate) errors_by_status: Vec<(u16, u64)>,
    /// Connections that failed or closed mid-response.
    pub(crate) transport_errors: u64,
    /// VOD loops (back to the first segment).
    pub(crate) loops: u64,
    /// Times the viewer found its next segment gone from the window and rejoined the edge.
    pub(crate) fell_behind: u64,
    /// The first error seen, in words.
    pub(crate) first_error: Option<String>,
}

/// One viewer.
#[derive(Debug)]
pub(crate) struct Viewer {
    entry: Url,
    media: Option<Url>,
    began: Option<Instant>,
    mode: FollowMode,
    playlist: Option<MediaPlaylist>,
    init_done: bool,
    /// Next media to fetch: segment MSN and, in LL-HLS, part index.
    msn: u64,
    part: u32,
    /// Last (non-blocking) media playlist request, for the reload interval.
    last_reload: Option<Instant>,
    in_flight: Option<(Url, Fetch)>,
    retry: Option<(Url, Fetch)>,
    failures_in_a_row: u32,
    playback: Playback,
    stats: ViewerStats,
    stopped: bool,
    /// Follow live playlists by segments even when they offer LL-HLS parts.
    segments_only: bool,
}

impl Viewer {
    /// The viewer ignores LL-HLS parts when `on` (a player without low-latency support).
    pub(crate) fn segments_only(mut self, on: bool) -> Self {
        self.segments_only = on;
        self
    }

    /// A viewer of the playlist at `entry`.
    pub(crate) fn new(entry: Url) -> Self {
        Self {
            entry,
            media: None,
            began: None,
            mode: FollowMode::Unknown,
            playlist: None,
            init_done: false,
            msn: 0,
            part: 0,
            last_reload: None,
            in_flight: None,
            retry: None,
            failures_in_a_row: 0,
            playback: Playback::default(),
            stats: ViewerStats::default(),
            stopped: false,
            segments_only: false,
        }
    }

    /// Starts: the multivariant request at `now` (the TTFS clock starts here).
    pub(crate) fn begin(&mut self, now: Instant) -> Next {
        self.began = Some(now);
        self.get(self.entry.clone(), Fetch::Multivariant)
    }

    /// What it counted.
    pub(crate) fn stats(&self) -> &ViewerStats {
        &self.stats
    }

    /// Its playback model.
    pub(crate) fn playback(&self) -> &Playback {
        &self.playback
    }

    /// How it follows the stream.
    pub(crate) fn mode(&self) -> FollowMode {
        self.mode
    }

    /// Whether it gave up.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    fn get(&mut self, url: Url, fetch: Fetch) -> Next {
        self.in_flight = Some((url.clone(), fetch));
        Next::Get(url, fetch)
    }

    /// The time asked for by [`Next::WakeAt`] came.
    pub(crate) fn wake(&mut self, now: Instant) -> Next {
        if let Some((url, fetch)) = self.retry.take() {
            return self.get(url, fetch);
        }
        self.schedule(now)
    }

    /// The in-flight request's connection failed (refused, reset, closed mid-body): retried
    /// after a pause.
    pub(crate) fn on_transport_error(&mut self, now: Instant, why: &str) -> Next {
        self.stats.transport_errors += 1;
        self.stats.first_error.get_or_insert_with(|| why.to_owned());
        self.fail(now)
    }

    fn fail(&mut self, now: Instant) -> Next {
        self.failures_in_a_row += 1;
        if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW {
            self.stopped = true;
            self.in_flight = None;
            return Next::Stop;
        }
        self.retry = self.in_flight.take();
        Next::WakeAt(now + RETRY_AFTER)
    }

    /// The in-flight request was answered with `status`; `body` is its body when
    /// [`Fetch::keeps_body`], `body_len` its length in any case.
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        status: u16,
        body: &[u8],
        body_len: u64,
    ) -> Next {
        self.stats.responses += 1;
        self.stats.body_bytes += body_len;
        let Some((url, fetch)) = self.in_flight.take() else {
            return self.schedule(now);
        };
        if status != 200 {
            self.count_status(status, &url);
            return self.on_refused(now, url, fetch);
        }
        self.failures_in_a_row = 0;
        match fetch {
            Fetch::Multivariant => {
                self.stats.playlists += 1;
                match playlist::media_uri_of(body) {
                    Ok(Some(uri)) => match self.entry.join(&uri) {
                        Ok(media) => {
                            self.media = Some(media.clone());
                            self.last_reload = Some(now);
                            self.get(media, Fetch::Media { blocking: false })
                        }
                        Err(e) => self.give_up(&e.to_string()),
                    },
                    // The entry is a media playlist already.
                    Ok(None) => {
                        self.media = Some(self.entry.clone());
                        self.on_media_playlist(now, body, false)
                    }
                    Err(e) => self.give_up(&e.to_string()),
                }
            }
            Fetch::Media { blocking } => {
                self.stats.playlists += 1;
                if blocking {
                    self.stats.blocking_reloads += 1;
                }
                self.on_media_playlist(now, body, blocking)
            }
            Fetch::Init => {
                self.init_done = true;
                self.schedule(now)
            }
            Fetch::Segment { msn, duration_secs } => {
                self.stats.segments += 1;
                self.media_done(now, duration_secs);
                if self.msn == msn {
                    self.msn += 1;
                    self.part = 0;
                }
                self.schedule(now)
            }
            Fetch::Part {
                msn,
                part,
                duration_secs,
            } => {
                self.stats.parts += 1;
                self.media_done(now, duration_secs);
                if (self.msn, self.part) == (msn, part) {
                    self.part += 1;
                }
                self.schedule(now)
            }
        }
    }

    fn count_status(&mut self, status: u16, url: &Url) {
        match self
            .stats
            .errors_by_status
            .iter_mut()
            .find(|(s, _)| *s == status)
        {
            Some((_, n)) => *n += 1,
            None => self.stats.errors_by_status.push((status, 1)),
        }
        self.stats
            .first_error
            .get_or_insert_with(|| format!("GET {} answered {status}", url.path));
    }

    /// A non-200 answer: media is skipped (a live segment that left the window, a part the
    /// server refused) and the playlist reloaded; playlists and init are retried.
    fn on_refused(&mut self, now: Instant, url: Url, fetch: Fetch) -> Next {
        self.in_flight = Some((url, fetch));
        match fetch {
            Fetch::Segment { msn, .. } if self.msn == msn => {
                self.msn += 1;
                self.part = 0;
            }
            Fetch::Part { msn, part, .. } if (self.msn, self.part) == (msn, part) => {
                self.part += 1;
            }
            _ => {}
        }
        if let (
            Fetch::Segment { .. } | Fetch::Part { .. } | Fetch::Media { blocking: true },
            Some(m),
        ) = (fetch, self.media.clone())
        {
            self.in_flight = Some((m, Fetch::Media { blocking: false }));
        }
        self.fail(now)
    }

    fn give_up(&mut self, why: &str) -> Next {
        self.stats.first_error.get_or_insert_with(|| why.to_owned());
        self.stopped = true;
        Next::Stop
    }

    fn media_done(&mut self, now: Instant, duration_secs: f64) {
        if self.stats.ttfs.is_none() {
            self.stats.ttfs = self.began.map(|b| now.saturating_duration_since(b));
        }
        self.playback.on_media(now, duration_secs);
    }

    fn on_media_playlist(&mut self, now: Instant, body: &[u8], blocking: bool) -> Next {
        let pl = match playlist::parse_media(body) {
            Ok(pl) => pl,
            Err(e) => return self.give_up(&e.to_string()),
        };
        if !blocking {
            self.last_reload = Some(now);
        }
        if self.mode == FollowMode::Unknown {
            self.mode = if pl.end_list {
                FollowMode::Vod
            } else if pl.is_low_latency() && !self.segments_only {
                FollowMode::LowLatency
            } else {
                FollowMode::Live
            };
            (self.msn, self.part) = start_point(&pl, self.mode);
        }
        let init = (!self.init_done).then(|| pl.init_uri.clone()).flatten();
        self.playlist = Some(pl);
        match init {
            Some(uri) => match self.entry_for(&uri) {
                Ok(u) => self.get(u, Fetch::Init),
                Err(e) => self.give_up(&e),
            },
            None => {
                self.init_done = true;
                self.schedule(now)
            }
        }
    }

    fn entry_for(&self, uri: &str) -> Result<Url, String> {
        self.media
            .as_ref()
            .unwrap_or(&self.entry)
            .join(uri)
            .map_err(|e| e.to_string())
    }

    /// Decides the next request from the playlist in hand.
    fn schedule(&mut self, now: Instant) -> Next {
        if self.stopped {
            return Next::Stop;
        }
        let (Some(pl), Some(media)) = (&self.playlist, &self.media) else {
            return self.get(self.entry.clone(), Fetch::Multivariant);
        };
        match self.mode {
            FollowMode::Unknown => Next::Stop,
            FollowMode::Vod => {
                let ahead = self.playback.ahead_secs(now);
                let limit = VOD_AHEAD_SEGMENTS * pl.target_duration_secs.max(0.1);
                if ahead >= limit {
                    return Next::WakeAt(now + Duration::from_secs_f64(ahead - limit + 0.001));
                }
                if self.msn >= pl.media_sequence + pl.segments.len() as u64 {
                    self.msn = pl.media_sequence;
                    self.stats.loops += 1;
                }
                let Some(seg) = pl.segment(self.msn) else {
                    return Next::Stop;
                };
                let fetch = Fetch::Segment {
                    msn: self.msn,
                    duration_secs: seg.duration_secs,
                };
                match self.entry_for(&seg.uri) {
                    Ok(u) => self.get(u, fetch),
                    Err(e) => self.give_up(&e),
                }
            }
            FollowMode::LowLatency => {
                loop {
                    if let Some(p) = pl.part(self.msn, self.part) {
                        let fetch = Fetch::Part {
                            msn: self.msn,
                            part: self.part,
                            duration_secs: p.duration_secs,
                        };
                        return match self.entry_for(&p.uri) {
                            Ok(u) => self.get(u, fetch),
                            Err(e) => self.give_up(&e),
                        };
                    }
                    match pl.segment(self.msn) {
                        // Past the last part of a complete segment: the next segment.
                        Some(seg)
                            if self.part as usize >= seg.parts.len() && !seg.parts.is_empty() =>
                        {
                            self.msn += 1;
                            self.part = 0;
                        }
                        // A complete segment whose parts left the playlist (the viewer fell
                        // behind the parts window): the whole segment, then on.
                        Some(seg) if self.part == 0 => {
                            let fetch = Fetch::Segment {
                                msn: self.msn,
                                duration_secs: seg.duration_secs,
                            };
                            return match self.entry_for(&seg.uri) {
                                Ok(u) => self.get(u, fetch),
                                Err(e) => self.give_up(&e),
                            };
                        }
                        Some(_) => {
                            self.msn += 1;
                            self.part = 0;
                        }
                        None if self.msn < pl.media_sequence => {
                            self.stats.fell_behind += 1;
                            (self.msn, self.part) = start_point(pl, self.mode);
                        }
                        None => {
                            let url = media.with_blocking_reload(self.msn, self.part);
                            return self.get(url, Fetch::Media { blocking: true });
                        }
                    }
                }
            }
            FollowMode::Live => {
                if self.msn < pl.media_sequence {
                    self.stats.fell_behind += 1;
                    (self.msn, self.part) = start_point(pl, self.mode);
                }
                if let Some(seg) = pl.segment(self.msn) {
                    let fetch = Fetch::Segment {
                        msn: self.msn,
                        duration_secs: seg.duration_secs,
                    };
                    return match self.entry_for(&seg.uri) {
                        Ok(u) => self.get(u, fetch),
                        Err(e) => self.give_up(&e),
                    };
                }
                let every = Duration::from_secs_f64(pl.target_duration_secs.max(0.2) / 2.0);
                let due = self.last_reload.map_or(now, |t| t + every);
                if now >= due {
                    let media = media.clone();
                    self.get(media, Fetch::Media { blocking: false })
                } else {
                    Next::WakeAt(due)
                }
            }
        }
    }
}

/// Where a viewer joins a playlist: (MSN, part).
fn start_point(pl: &MediaPlaylist, mode: FollowMode) -> (u64, u32) {
    match mode {
        FollowMode::Unknown | FollowMode::Vod => (pl.media_sequence, 0),
        FollowMode::Live => {
            let hold = 3.0 * pl.target_duration_secs;
            let mut from_end = 0.0;
            let mut i = pl.segments.len();
            while i > 0 && from_end < hold {
                i -= 1;
                from_end += pl.segments[i].duration_secs;
            }
            (pl.media_sequence + i as u64, 0)
        }
        FollowMode::LowLatency => {
            // Every part in the window, oldest first: (msn, index, duration, independent).
            let mut parts: Vec<(u64, u32, f64, bool)> = Vec::new();
            for (i, s) in pl.segments.iter().enumerate() {
                let msn = pl.media_sequence + i as u64;
                for (k, p) in s.parts.iter().enumerate() {
                    parts.push((msn, k as u32, p.duration_secs, p.independent || k == 0));
                }
            }
            for (k, p) in pl.partial.iter().enumerate() {
                parts.push((
                    pl.next_msn(),
                    k as u32,
                    p.duration_secs,
                    p.independent || k == 0,
                ));
            }
            let hold = pl
                .part_hold_back_secs
                .unwrap_or(3.0 * pl.part_target_secs.unwrap_or(1.0));
            let mut from_end = 0.0;
            let mut i = parts.len();
            while i > 0 && from_end < hold {
                i -= 1;
                from_end += parts[i].2;
            }
            while i > 0 && !parts[i].3 {
                i -= 1;
            }
            match parts.get(i) {
                Some(&(msn, k, _, _)) => (msn, k),
                None => (pl.next_msn(), 0),
            }
        }
    }
}

#[cfg(test)]
mod tests;
