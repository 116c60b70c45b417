//! What an HLS request gets: the routing, access and HTTP rules around the sans-IO
//! `crate::hls` (playlists, segmentation, fMP4), with the per-shard caches that make a
//! segment cost one header build for all its viewers.
//!
//! URLs (relative URIs inside playlists resolve against the playlist's):
//!
//! ```text
//! /hls/{stream}/index.m3u8          multivariant playlist (RFC 8216 §4.3.4.2)
//! /hls/{stream}/media.m3u8          media playlist; live: LL-HLS, blocking with _HLS_msn/_HLS_part
//! /hls/{stream}/init.mp4            init segment (EXT-X-MAP)
//! /hls/{stream}/seg{msn}.m4s        segment
//! /hls/{stream}/part{msn}.{k}.m4s   partial segment (RFC 8216bis §4.4.4.9)
//! ```
//!
//! Files, live channels, and ingested streams (published or pulled: their live logs, by the
//! context's directory, served from a per-stream store of finished segments and parts,
//! `super::logs`).
//!
//! Access: a stream that needs credentials over RTSP, or any stream with `--require-token`,
//! needs a play token (`?token=`, bound to the stream and expiring, `crate::token`) on every
//! request; playlists carry it on every URI they list, so a player needs nothing else.

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::conn::{
    BadRequest, Body, BodyPath, FragmentBody, Method, Outgoing, Request, StagedBody,
};
use super::logs::{LiveLogs, LogHls, LogView, Wanted};
use super::SharedHlsContext;
use crate::hls::fmp4::{first_served_samples, init_segment, Fragment};
use crate::hls::log_segments::{
    log_media_playlist, log_multivariant_playlist, LogReload, SegmentStore,
};
use crate::hls::playlist::{
    live_media_playlist, multivariant_playlist, parse_blocking_reload, parse_resource, reload_wait,
    vod_media_playlist, HlsResource, QuerySuffix, ReloadWait,
};
use crate::hls::segments::{segment_file, LiveHls, Segmentation, PART_TARGET};
use crate::live::LiveChannel;
use crate::media::library::{LibraryError, MediaLibrary};
use crate::media::name::split_path;
use crate::media::MediaFile;
use crate::stats::ShardCounters;
use crate::token::{token_in_query, TokenKey};

/// How long a resolved VOD stream is trusted before the library is asked again (which
/// notices a file changed on disk).
const RECHECK_EVERY: Duration = Duration::from_secs(2);
/// Fragment heads a shard keeps (a live channel's window is ~7 segments of ~6 parts each,
/// as segments and parts: ~50 per channel).
const FRAGMENT_CACHE: usize = 512;
/// Bytes of staged fragments (in-memory files) a shard keeps; responses being written
/// hold theirs until done. At 2 Mbit/s a live channel's window is ~4 MB (segments and
/// parts); VOD viewers spread over a file need one entry per segment they are at.
const STAGED_BYTES: u64 = 128 * 1024 * 1024;
/// Streams a shard keeps resolved.
const STREAM_CACHE: usize = 256;
/// CORS (Fetch standard): any page may play; the preflight names what players send.
const CORS: &str = "Access-Control-Allow-Origin: *\r\n\
                    Access-Control-Expose-Headers: Content-Length, Content-Range, ETag\r\n";

/// What the HLS side of every shard reads: the catalog and the access policy. Built by the
/// control thread, replaced whole on reload.
pub struct HlsContext {
    /// The media catalog.
    pub library: Arc<MediaLibrary>,
    /// Live channels by name.
    pub channels: HashMap<String, Arc<LiveChannel>>,
    /// Signs and checks play tokens.
    pub token_key: TokenKey,
    /// Every request needs a play token (`--require-token`).
    pub require_token: bool,
    /// Whether a stream is open without credentials (the RTSP access rules,
    /// `rtsp::auth::is_public`); others need a play token over HLS.
    pub is_public: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// How segment bodies reach the socket (`--hls-body`).
    pub body_path: BodyPath,
    /// Ingested streams' live logs (shared with the control thread, which adds and removes
    /// them as publishers come and go).
    pub logs: LiveLogs,
}

impl std::fmt::Debug for HlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsContext")
            .field("channels", &self.channels.len())
            .field("require_token", &self.require_token)
            .finish_non_exhaustive()
    }
}

/// A response, before the method (HEAD) and connection rules apply.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Status line and headers, ending with the blank line.
    pub(crate) head: Vec<u8>,
    /// The whole body.
    pub(crate) body: Body,
    /// The byte window of `body` to send (a `Range` request's), else all of it.
    pub(crate) window: Option<(u64, u64)>,
    /// One line for the log (refusals worth an operator's eye).
    pub(crate) log: Option<String>,
}

/// What a request was, for the viewer's statistics (filled while routing).
#[derive(Debug, Default)]
pub(crate) struct Served {
    /// The HLS viewer it belongs to (`v=` in the query, or new with a multivariant playlist).
    pub(crate) viewer: Option<u64>,
    /// The stream's name, once resolved.
    pub(crate) stream: Option<String>,
    /// What was served.
    pub(crate) kind: ServedKind,
    /// A segment or part asked for after it had left the live window.
    pub(crate) late: bool,
}

/// The kinds of HLS resources, as counted per viewer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ServedKind {
    /// A refusal, a preflight or a path we do not serve.
    #[default]
    Other,
    /// A multivariant or media playlist.
    Playlist,
    /// An init segment.
    Init,
    /// A whole segment.
    Segment,
    /// A partial segment.
    Part,
}

/// What routing decided.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Answer now.
    Reply(Reply),
    /// A blocking reload: route the request again at this time.
    Park(Instant),
    /// A blocking reload or hinted part of an ingested stream: route the request again
    /// once the log grew enough (`wanted`), or at `until` with `expired` set.
    Hold {
        /// The stream's log.
        log: Arc<LogHls>,
        /// What the request waits for.
        wanted: Wanted,
        /// When the wait runs out (three target durations).
        until: Instant,
    },
}

/// A resolved stream, shared by the requests of all its viewers on this shard (`Rc`: it
/// never leaves the shard's thread).
struct StreamEntry {
    /// Unique per entry (fragment cache keys), never reused.
    id: u64,
    media: Arc<MediaFile>,
    timeline: Timeline,
    init: Arc<[u8]>,
    /// Stable across shards and requests while the file (or channel) is the same: ETags.
    identity: u64,
    /// When the library last confirmed the file (VOD) or a request last used it.
    checked_at: Cell<Instant>,
}

enum Timeline {
    Vod(Segmentation),
    Live {
        channel: Arc<LiveChannel>,
        hls: LiveHls,
    },
}

impl Timeline {
    fn segmentation(&self) -> &Segmentation {
        match self {
            Timeline::Vod(s) => s,
            Timeline::Live { hls, .. } => &hls.segmentation,
        }
    }
}

/// A shard's router: resolves streams, checks access, builds or reuses what it serves.
pub(crate) struct Router {
    /// The shard's index (its pin slot in live logs).
    shard: usize,
    shared: SharedHlsContext,
    context: Arc<HlsContext>,
    streams: HashMap<String, Rc<StreamEntry>>,
    fragments: HashMap<(u64, u64, Option<usize>), Body>,
    /// Bytes of the staged fragments the cache holds (bounded by [`STAGED_BYTES`]).
    staged_bytes: u64,
    fragment_order: VecDeque<(u64, u64, Option<usize>)>,
    next_id: u64,
    counters: Arc<ShardCounters>,
}

/// Why a request gets no media.
#[derive(Debug)]
struct Refusal {
    status: u16,
    why: String,
    /// Worth a log line (not for the 404s of a live window moving on).
    log: bool,
}

impl Refusal {
    fn new(status: u16, why: impl Into<String>) -> Self {
        Self {
            status,
            why: why.into(),
            log: true,
        }
    }

    fn quiet(status: u16, why: impl Into<String>) -> Self {
        Self {
            status,
            why: why.into(),
            log: false,
        }
    }
}

impl Router {
    /// A router reading `shared`.
    pub(crate) fn new(
        shard: usize,
        shared: SharedHlsContext,
        counters: Arc<ShardCounters>,
    ) -> Self {
        let context = read_context(&shared);
        Self {
            shard,
            shared,
            context,
            streams: HashMap::new(),
            fragments: HashMap::new(),
            staged_bytes: 0,
            fragment_order: VecDeque::new(),
            next_id: 0,
            counters,
        }
    }

    /// How fragment bodies are written.
    pub(crate) fn body_path(&self) -> BodyPath {
        self.context.body_path
    }

    /// Once a second: forget streams not asked for lately, pick up a reloaded context.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let context = read_context(&self.shared);
        if !Arc::ptr_eq(&context, &self.context) {
            self.context = context;
            self.streams.clear();
        }
        self.streams.retain(|_, e| {
            now.saturating_duration_since(e.checked_at.get()) < Duration::from_secs(60)
        });
    }

    /// Routes one request at `now` (`wall` for token expiry).
    pub(crate) fn route(
        &mut self,
        req: &Request,
        peer: SocketAddr,
        now: Instant,
        wall: SystemTime,
        served: &mut Served,
        expired: bool,
    ) -> Routed {
        if req.method == Method::Options {
            // A CORS preflight (Fetch standard §3.2.2) or a capability probe.
            let head = format!(
                "HTTP/1.1 204 No Content\r\n{CORS}Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
                 Access-Control-Allow-Headers: Range, If-None-Match\r\nAccess-Control-Max-Age: 86400\r\n\
                 Allow: GET, HEAD, OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            return Routed::Reply(Reply {
                head: head.into_bytes(),
                body: Body::Empty,
                window: None,
                log: None,
            });
        }
        match self.route_get(req, peer, now, wall, served, expired) {
            Ok(routed) => routed,
            Err(r) => Routed::Reply(error_reply(r.status, &r.why, r.log)),
        }
    }

    fn route_get(
        &mut self,
        req: &Request,
        peer: SocketAddr,
        now: Instant,
        wall: SystemTime,
        served: &mut Served,
        expired: bool,
    ) -> Result<Routed, Refusal> {
        let rest = req
            .path
            .strip_prefix("/hls/")
            .ok_or_else(|| Refusal::quiet(404, "not an HLS path (/hls/{stream}/index.m3u8)"))?;
        let mut segments =
            split_path(rest).map_err(|e| Refusal::new(400, format!("bad path: {e}")))?;
        let resource_name = segments
            .pop()
            .ok_or_else(|| Refusal::quiet(404, "no HLS resource named"))?;
        let resource = parse_resource(&resource_name)
            .ok_or_else(|| Refusal::quiet(404, format!("no HLS resource {resource_name:?}")))?;
        if segments.is_empty() {
            return Err(Refusal::quiet(404, "no stream named"));
        }
        let name = segments.join("/");
        let log = self
            .context
            .logs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned();
        if let Some(log) = log {
            let query = self.query_suffix(&name, req, peer, wall, resource, served)?;
            return self.log_resource(&log, req, resource, &query, served, now, expired);
        }
        let entry = self.stream(&name, &segments, now)?;
        let query =
            self.query_suffix(&entry.media.name.clone(), req, peer, wall, resource, served)?;
        match resource {
            HlsResource::Multivariant => {
                let text = multivariant_playlist(
                    &entry.media.index,
                    entry.timeline.segmentation(),
                    &query,
                );
                Ok(Routed::Reply(playlist_reply(text, "max-age=60")))
            }
            HlsResource::MediaPlaylist => self.media_playlist(&entry, req, &query, now),
            HlsResource::Init => {
                let etag = format!("\"{:x}-init\"", entry.identity);
                Ok(Routed::Reply(media_reply(
                    req,
                    Body::Shared(entry.init.clone()),
                    &etag,
                )?))
            }
            HlsResource::Segment { msn } => self.fragment(&entry, req, msn, None, now, served),
            HlsResource::Part { msn, part } => {
                self.fragment(&entry, req, msn, Some(part), now, served)
            }
        }
    }

    /// Checks access to `stream` and names the request's viewer (`served`); the query every
    /// URI of a playlist carries (`?token=…&v=…`).
    fn query_suffix(
        &self,
        stream: &str,
        req: &Request,
        peer: SocketAddr,
        wall: SystemTime,
        resource: HlsResource,
        served: &mut Served,
    ) -> Result<QuerySuffix, Refusal> {
        let token = self.check_access(stream, req, peer, wall)?;
        served.stream = Some(stream.to_owned());
        // The viewer: named by the playlists we hand out (`v=`), new with each multivariant
        // playlist asked for without one. Statistics only: it grants nothing.
        served.viewer = viewer_in_query(req.query.as_deref())
            .or_else(|| (resource == HlsResource::Multivariant).then(|| rand::random::<u64>() | 1));
        let mut suffix = String::new();
        for (k, v) in [
            ("token", token.clone()),
            ("v", served.viewer.map(|v| format!("{v:x}"))),
        ] {
            if let Some(v) = v {
                suffix.push(if suffix.is_empty() { '?' } else { '&' });
                let _ = write!(suffix, "{k}={v}");
            }
        }
        let query = QuerySuffix::try_from(suffix.as_str())
            .map_err(|_| Refusal::new(400, "token has characters a URI cannot carry"))?;
        served.kind = match resource {
            HlsResource::Multivariant | HlsResource::MediaPlaylist => ServedKind::Playlist,
            HlsResource::Init => ServedKind::Init,
            HlsResource::Segment { .. } => ServedKind::Segment,
            HlsResource::Part { .. } => ServedKind::Part,
        };
        Ok(query)
    }

    /// A resource of an ingested stream (`crate::hls::log_segments`): the store is brought
    /// up to date first, so the playlist lists exactly the segments and parts it holds. A
    /// blocking reload (RFC 8216bis §6.2.5.2) or a request for the hinted part that is not
    /// there yet is held (`Routed::Hold`) until it is, at most three target durations;
    /// `expired`: this is that request again after the wait ran out (503).
    #[allow(clippy::too_many_arguments)]
    fn log_resource(
        &self,
        log: &Arc<LogHls>,
        req: &Request,
        resource: HlsResource,
        query: &QuerySuffix,
        served: &mut Served,
        now: Instant,
        expired: bool,
    ) -> Result<Routed, Refusal> {
        let name = log.log.name();
        let not_yet =
            || Refusal::quiet(404, format!("stream {name:?} has no complete segment yet"));
        let reply = match resource {
            HlsResource::Multivariant => {
                // Served before the first segment is finished too: players give up on a
                // multivariant playlist sooner than on a media playlist (hls.js: one retry
                // against four), and this one needs only the codecs.
                let view = log.with_store(self.shard, |store, _| {
                    log_multivariant_playlist(&log.log.media.index, store, query)
                });
                let text = match view {
                    LogView::Ready(text) => text,
                    LogView::Empty => {
                        log_multivariant_playlist(&log.log.media.index, &SegmentStore::new(), query)
                    }
                };
                playlist_reply(text, "no-cache")
            }
            HlsResource::MediaPlaylist => {
                let blocking = parse_blocking_reload(req.query.as_deref().unwrap_or(""))
                    .map_err(|e| Refusal::new(e.status(), format!("blocking reload: {e}")))?;
                let view = log.with_store(self.shard, |store, ended| {
                    let wait = match blocking {
                        // An ended stream grows no more: the last playlist at once.
                        Some(w) if !ended => store.reload(w.msn, w.part, PART_TARGET),
                        _ => LogReload::Now,
                    };
                    let text = (wait == LogReload::Now)
                        .then(|| log_media_playlist(store, PART_TARGET, query, ended));
                    (wait, text, store.target())
                });
                match view {
                    LogView::Ready((_, Some(text), _)) => playlist_reply(text, "no-cache"),
                    LogView::Ready((LogReload::TooFar, _, _)) => {
                        return Err(Refusal::new(
                            400,
                            format!(
                                "_HLS_msn={} _HLS_part={:?} is further ahead of the live edge \
                                 than RFC 8216bis §6.2.5.2 allows",
                                blocking.map_or(0, |b| b.msn),
                                blocking.and_then(|b| b.part)
                            ),
                        ))
                    }
                    LogView::Ready((_, None, target)) => {
                        let Some(w) = blocking else {
                            return Err(not_yet());
                        };
                        if expired {
                            return Err(Refusal::quiet(
                                503,
                                format!(
                                    "_HLS_msn={} _HLS_part={:?} of {name:?} did not appear \
                                     within three target durations",
                                    w.msn, w.part
                                ),
                            ));
                        }
                        return Ok(Routed::Hold {
                            log: log.clone(),
                            wanted: Wanted::Reload {
                                msn: w.msn,
                                part: w.part,
                            },
                            until: now + target * 3,
                        });
                    }
                    LogView::Empty => return Err(not_yet()),
                }
            }
            HlsResource::Init => {
                let init = log.init().map_err(|e| {
                    Refusal::new(415, format!("{name} cannot be served as HLS: {e}"))
                })?;
                let etag = format!("\"{:x}-init\"", log_identity(log));
                media_reply(req, Body::Shared(init), &etag)?
            }
            HlsResource::Segment { msn } => {
                let view = log.with_store(self.shard, |store, _| {
                    let oldest = store.oldest_msn();
                    (store.get(msn).map(|s| s.bytes.clone()), oldest)
                });
                let LogView::Ready((Some(bytes), _)) = view else {
                    if let LogView::Ready((None, Some(oldest))) = view {
                        if msn < oldest {
                            // Asked for after it left the store: a stall the server sees.
                            self.count_late(served);
                        }
                    }
                    return Err(Refusal::quiet(
                        404,
                        format!("segment {msn} of {name:?} is not stored (gone or not finished)"),
                    ));
                };
                let etag = format!("\"{:x}-{msn}\"", log_identity(log));
                media_reply(req, Body::Shared(bytes), &etag)?
            }
            HlsResource::Part { msn, part } => {
                let view = log.with_store(self.shard, |store, ended| {
                    (
                        store.part(msn, part).map(|p| p.bytes.clone()),
                        store.open_edge(),
                        store.oldest_msn(),
                        ended,
                        store.target(),
                    )
                });
                let (bytes, edge, oldest, ended, target) = match view {
                    LogView::Ready(v) => v,
                    LogView::Empty => return Err(not_yet()),
                };
                match bytes {
                    Some(bytes) => {
                        let etag = format!("\"{:x}-{msn}.{part}\"", log_identity(log));
                        media_reply(req, Body::Shared(bytes), &etag)?
                    }
                    // The part the playlist's EXT-X-PRELOAD-HINT names: held until it is
                    // finished (RFC 8216bis §6.2.6).
                    None if edge == (msn, part) && !ended && !expired => {
                        return Ok(Routed::Hold {
                            log: log.clone(),
                            wanted: Wanted::Part { msn, part },
                            until: now + target * 3,
                        })
                    }
                    None if edge == (msn, part) && expired => {
                        return Err(Refusal::quiet(
                            503,
                            format!(
                                "part {msn}.{part} of {name:?} did not appear within three \
                                 target durations"
                            ),
                        ))
                    }
                    None => {
                        if oldest.is_some_and(|o| msn < o) || msn + 1 < edge.0 {
                            self.count_late(served);
                        }
                        return Err(Refusal::quiet(
                            404,
                            format!("part {msn}.{part} of {name:?} is not stored"),
                        ));
                    }
                }
            }
        };
        Ok(Routed::Reply(reply))
    }

    /// A segment or part asked for after it had left the store: a stall the server sees.
    fn count_late(&self, served: &mut Served) {
        served.late = true;
        self.counters
            .hls_late_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn media_playlist(
        &self,
        entry: &StreamEntry,
        req: &Request,
        query: &QuerySuffix,
        now: Instant,
    ) -> Result<Routed, Refusal> {
        match &entry.timeline {
            Timeline::Vod(seg) => Ok(Routed::Reply(playlist_reply(
                vod_media_playlist(seg, query),
                "max-age=60",
            ))),
            Timeline::Live { channel, hls } => {
                let t = now.saturating_duration_since(channel.epoch);
                let blocking = parse_blocking_reload(req.query.as_deref().unwrap_or(""))
                    .map_err(|e| Refusal::new(e.status(), format!("blocking reload: {e}")))?;
                if let Some(wanted) = blocking {
                    match reload_wait(hls, t, wanted) {
                        ReloadWait::Now => {}
                        ReloadWait::Until(at) => return Ok(Routed::Park(channel.epoch + at)),
                        ReloadWait::TooFar => {
                            return Err(Refusal::new(
                                400,
                                format!(
                                    "_HLS_msn={} is more than 3 target durations ahead of the live edge",
                                    wanted.msn
                                ),
                            ))
                        }
                    }
                }
                // RFC 8216bis §6.2.5.2 and Apple's LL-HLS guidance: a playlist changes every
                // part; caches may keep it for at most a part.
                Ok(Routed::Reply(playlist_reply(
                    live_media_playlist(hls, t, query),
                    "no-cache",
                )))
            }
        }
    }

    fn fragment(
        &mut self,
        entry: &Rc<StreamEntry>,
        req: &Request,
        msn: u64,
        part: Option<usize>,
        now: Instant,
        served: &mut Served,
    ) -> Result<Routed, Refusal> {
        let etag = match part {
            Some(p) => format!("\"{:x}-{msn}.{p}\"", entry.identity),
            None => format!("\"{:x}-{msn}\"", entry.identity),
        };
        if let Some(body) = self.fragments.get(&(entry.id, msn, part)) {
            return Ok(Routed::Reply(media_reply(req, body.clone(), &etag)?));
        }
        let fragment: Fragment = match &entry.timeline {
            Timeline::Vod(seg) => {
                let exists = usize::try_from(msn)
                    .ok()
                    .and_then(|m| seg.segments.get(m))
                    .is_some_and(|s| part.is_none_or(|p| p < s.parts.len()));
                if !exists {
                    return Err(Refusal::quiet(
                        404,
                        format!("no segment {msn} part {part:?}"),
                    ));
                }
                seg.vod_fragment(&entry.media.index, msn, part)
                    .map_err(|e| Refusal::new(500, format!("segment {msn}: {e}")))?
            }
            Timeline::Live { channel, hls } => {
                let t = now.saturating_duration_since(channel.epoch);
                if !hls.is_available(t, msn, part) {
                    // Outside the window (gone, or not yet complete): never another
                    // segment's bytes. A stall seen by the server when it is gone.
                    if msn < hls.edge(t).first_msn {
                        served.late = true;
                        self.counters
                            .hls_late_requests
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Err(Refusal::quiet(
                        404,
                        format!("segment {msn} part {part:?} is not in the live window"),
                    ));
                }
                hls.fragment(&entry.media.index, msn, part)
                    .map_err(|e| Refusal::new(500, format!("segment {msn}: {e}")))?
            }
        };
        let len = fragment.len();
        let mapped = FragmentBody {
            media: entry.media.clone(),
            fragment,
            len,
        };
        let body = match self.context.body_path {
            BodyPath::Staged => match StagedBody::stage(&mapped) {
                Ok(staged) => Body::Staged(Arc::new(staged)),
                Err(e) => {
                    // No memory for the in-memory file: serve from the mapping instead.
                    tracing::warn!("HLS: staging segment {msn} of {}: {e}", entry.media.name);
                    Body::Fragment(Arc::new(mapped))
                }
            },
            BodyPath::Sendfile | BodyPath::Gather => Body::Fragment(Arc::new(mapped)),
        };
        let key = (entry.id, msn, part);
        let staged = |b: &Body| match b {
            Body::Staged(s) => s.len(),
            _ => 0,
        };
        self.staged_bytes += staged(&body);
        while self.fragment_order.len() >= FRAGMENT_CACHE || self.staged_bytes > STAGED_BYTES {
            let Some(old) = self.fragment_order.pop_front() else {
                break;
            };
            if let Some(b) = self.fragments.remove(&old) {
                self.staged_bytes -= staged(&b);
            }
        }
        self.fragment_order.push_back(key);
        self.fragments.insert(key, body.clone());
        Ok(Routed::Reply(media_reply(req, body, &etag)?))
    }

    /// The play token a request must carry, checked; `Some(token)` to carry on into the
    /// URIs of a playlist.
    fn check_access(
        &self,
        stream: &str,
        req: &Request,
        peer: SocketAddr,
        wall: SystemTime,
    ) -> Result<Option<String>, Refusal> {
        let token = token_in_query(req.query.as_deref());
        let needed = self.context.require_token || !(self.context.is_public)(stream);
        if !needed {
            return Ok(None);
        }
        let Some(token) = token else {
            return Err(Refusal::new(
                403,
                format!("stream {stream:?} needs a play token (?token=, from POST /api/v1/play)"),
            ));
        };
        match self
            .context
            .token_key
            .verify(token, stream, peer.ip(), wall)
        {
            Ok(_) => Ok(Some(token.to_owned())),
            Err(e) => Err(Refusal::new(403, format!("{e}"))),
        }
    }

    /// The resolved stream `name`, from the cache when fresh.
    fn stream(
        &mut self,
        name: &str,
        segments: &[String],
        now: Instant,
    ) -> Result<Rc<StreamEntry>, Refusal> {
        if let Some(e) = self.streams.get(name) {
            let fresh = now.saturating_duration_since(e.checked_at.get()) < RECHECK_EVERY
                || matches!(e.timeline, Timeline::Live { .. });
            if fresh && !e.media.is_revoked() {
                return Ok(e.clone());
            }
        }
        let (media, channel) = match self.context.channels.get(name) {
            Some(ch) => (ch.media.clone(), Some(ch.clone())),
            None => match self.context.library.resolve(segments) {
                Ok((media, used)) if used == segments.len() => (media, None),
                Ok(_) | Err(LibraryError::NotFound(_)) => {
                    return Err(Refusal::quiet(404, format!("no stream named {name:?}")))
                }
                Err(e) => return Err(Refusal::new(500, format!("{name}: {e}"))),
            },
        };
        if let Some(e) = self.streams.get(name) {
            if Arc::ptr_eq(&e.media, &media) {
                // Unchanged on disk: keep the segmentation and cached fragments.
                e.checked_at.set(now);
                return Ok(e.clone());
            }
        }
        let entry = Rc::new(self.build_entry(name, media, channel, now)?);
        if self.streams.len() >= STREAM_CACHE {
            self.streams.clear();
        }
        self.streams.insert(name.to_owned(), entry.clone());
        Ok(entry)
    }

    fn build_entry(
        &mut self,
        name: &str,
        media: Arc<MediaFile>,
        channel: Option<Arc<LiveChannel>>,
        now: Instant,
    ) -> Result<StreamEntry, Refusal> {
        let init = init_segment(&media.index)
            .map_err(|e| Refusal::new(415, format!("{name} cannot be served as HLS: {e}")))?;
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        let timeline = match channel {
            Some(channel) => {
                // The channel's numbering is random per run: it names this run's timeline.
                if let Some(t) = channel.tracks.first() {
                    t.ssrc.hash(&mut h);
                }
                let hls = LiveHls::new(&channel);
                Timeline::Live { channel, hls }
            }
            None => {
                if let Some(stamp) = self.context.library.file_stamp(&media.name) {
                    stamp.hash(&mut h);
                }
                Timeline::Vod(segment_file(
                    &media.index,
                    &first_served_samples(&media.index),
                ))
            }
        };
        if timeline.segmentation().segments.is_empty() {
            return Err(Refusal::new(415, format!("{name} has no samples to serve")));
        }
        self.next_id += 1;
        Ok(StreamEntry {
            id: self.next_id,
            media,
            timeline,
            init: init.into(),
            identity: h.finish(),
            checked_at: Cell::new(now),
        })
    }
}

/// Names this run's log of a stream (ETags): its tracks' SSRCs are random per log.
fn log_identity(log: &LogHls) -> u64 {
    let mut h = DefaultHasher::new();
    log.log.name().hash(&mut h);
    for t in &log.log.tracks {
        t.ssrc.hash(&mut h);
    }
    h.finish()
}

fn read_context(shared: &SharedHlsContext) -> Arc<HlsContext> {
    shared.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The viewer id of a query (`v=` in hex), if any.
fn viewer_in_query(query: Option<&str>) -> Option<u64> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("v="))
        .filter(|v| !v.is_empty() && v.len() <= 16)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .filter(|&v| v != 0)
}

/// A playlist response (RFC 8216 §4: `application/vnd.apple.mpegurl`).
fn playlist_reply(text: String, cache: &str) -> Reply {
    let body: Arc<[u8]> = text.into_bytes().into();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\n\
         Content-Length: {}\r\nCache-Control: {cache}\r\n{CORS}\r\n",
        body.len()
    );
    Reply {
        head: head.into_bytes(),
        body: Body::Shared(body),
        window: None,
        log: None,
    }
}

/// An init segment or fragment: `ETag`/`If-None-Match` (RFC 9110 §13.1.2), byte ranges
/// (RFC 9110 §14), immutable caching (RFC 8246: the bytes of a URI never change).
fn media_reply(req: &Request, body: Body, etag: &str) -> Result<Reply, Refusal> {
    let len = body.len();
    if let Some(tags) = &req.if_none_match {
        if tags.trim() == "*"
            || tags
                .split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        {
            let head = format!(
                "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\
                 Cache-Control: max-age=31536000, immutable\r\n{CORS}\r\n"
            );
            return Ok(Reply {
                head: head.into_bytes(),
                body: Body::Empty,
                window: None,
                log: None,
            });
        }
    }
    let common = format!(
        "Content-Type: video/mp4\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\
         Cache-Control: max-age=31536000, immutable\r\n{CORS}"
    );
    match req.range.as_deref().map(|r| parse_range(r, len)) {
        None | Some(RangeAsk::Ignore) => {
            let head = format!("HTTP/1.1 200 OK\r\n{common}Content-Length: {len}\r\n\r\n");
            Ok(Reply {
                head: head.into_bytes(),
                body,
                window: None,
                log: None,
            })
        }
        Some(RangeAsk::Window(from, to)) => {
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\n{common}Content-Range: bytes {from}-{}/{len}\r\n\
                 Content-Length: {}\r\n\r\n",
                to - 1,
                to - from
            );
            Ok(Reply {
                head: head.into_bytes(),
                body,
                window: Some((from, to)),
                log: None,
            })
        }
        Some(RangeAsk::Unsatisfiable) => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\n{CORS}\r\n"
            );
            Ok(Reply {
                head: head.into_bytes(),
                body: Body::Empty,
                window: None,
                log: None,
            })
        }
    }
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAsk {
    /// Serve bytes `from..to`.
    Window(u64, u64),
    /// No satisfiable range: 416.
    Unsatisfiable,
    /// Not one byte range we serve (several ranges, another unit, malformed): the whole
    /// body, as RFC 9110 §14.2 allows a server to ignore `Range`.
    Ignore,
}

/// RFC 9110 §14.1.2 `bytes=first-last`, `bytes=first-`, `bytes=-suffix`; one range only.
fn parse_range(value: &str, len: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(n) if len > 0 => RangeAsk::Window(len - n.min(len), len),
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Ignore,
        },
        (first, "") => match num(first) {
            Some(a) if a < len => RangeAsk::Window(a, len),
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Ignore,
        },
        (first, last) => match (num(first), num(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a < len {
                    RangeAsk::Window(a, b.saturating_add(1).min(len))
                } else {
                    RangeAsk::Unsatisfiable
                }
            }
            _ => RangeAsk::Ignore,
        },
    }
}

/// An error response: the status, a one-line reason in the body (for people and logs).
fn error_reply(status: u16, why: &str, log: bool) -> Reply {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut body = String::with_capacity(why.len() + 1);
    let _ = writeln!(body, "{why}");
    let allow = if status == 405 {
        "Allow: GET, HEAD, OPTIONS\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n{allow}{CORS}\r\n",
        body.len()
    );
    Reply {
        head: head.into_bytes(),
        body: Body::Shared(body.into_bytes().into()),
        window: None,
        log: log.then(|| format!("{status} {why}")),
    }
}

/// The answer to a request refused before routing; the connection closes after it.
pub(crate) fn bad_request(why: BadRequest) -> Outgoing {
    let (status, text) = match why {
        BadRequest::Malformed => (400, "malformed HTTP request"),
        BadRequest::TooLarge => (431, "request head too large"),
        BadRequest::Method => (405, "only GET, HEAD and OPTIONS are served"),
        BadRequest::Body => (400, "requests with a body are not served"),
    };
    let reply = error_reply(status, text, false);
    let len = reply.body.len();
    Outgoing::new(reply.head, reply.body, 0, len, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Window(0, 10));
        assert_eq!(parse_range("bytes=90-200", 100), RangeAsk::Window(90, 100));
        assert_eq!(parse_range("bytes=50-", 100), RangeAsk::Window(50, 100));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Window(90, 100));
        assert_eq!(parse_range("bytes=-1000", 100), RangeAsk::Window(0, 100));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=x-1", 100), RangeAsk::Ignore);
        assert_eq!(
            parse_range("bytes=99999999999999999999-", 100),
            RangeAsk::Ignore
        );
    }
}
