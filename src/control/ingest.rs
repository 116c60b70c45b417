//! The ingest shell: publishers' RTP into live logs. The session core decides who publishes
//! what ([`PublishStart`]); this module owns what that takes at run time — the per-track
//! depacketizers, each stream's [`LogWriter`], the routes from `$` channels and UDP source
//! addresses to tracks — and the publisher timeout. It runs on the control thread: its work
//! is per publisher (a 2 Mbit/s stream is ~200 packets/s, each depacketized and copied once
//! into the log), never per viewer (docs/design/live-ingest.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ingest::depacketize::Depacketizer;
use crate::ingest::Frame;
use crate::live_log::{LiveLog, LogError, LogState, LogTrackSpec, LogWriter};
use crate::poll::Waker;
use crate::rtsp::session::{ConnId, IngestTransport, PublishStart};
use crate::shard::SessionId;

/// Where a received packet goes: a stream's track, RTP or RTCP.
#[derive(Debug, Clone)]
struct Route {
    path: String,
    publisher: SessionId,
    track: usize,
    rtcp: bool,
}

/// One ingested stream: its log and, while a publisher is on, its depacketizers.
struct Stream {
    writer: LogWriter,
    specs: Vec<LogTrackSpec>,
    publisher: Option<SessionId>,
    depacketizers: Vec<Depacketizer>,
    /// When the publisher last sent media.
    last_data: Instant,
    /// When the publisher left (viewers wait until the publisher timeout).
    gone_since: Option<Instant>,
}

/// What the timer found: streams whose wait ended, publishers gone silent.
#[derive(Debug, Default)]
pub(crate) struct IngestTick {
    /// Streams whose publisher did not return in time: their logs ended.
    pub(crate) ended: Vec<String>,
    /// Publishers that sent nothing for the publisher timeout.
    pub(crate) silent: Vec<SessionId>,
}

/// The control thread's ingest state.
pub(crate) struct Ingest {
    wakers: Vec<Arc<Waker>>,
    payload_budget: usize,
    log_size: usize,
    timeout: Duration,
    streams: HashMap<String, Stream>,
    tcp_routes: HashMap<(ConnId, u8), Route>,
    udp_routes: HashMap<SocketAddr, Route>,
    /// RTCP packets received from publishers (sender reports are not yet relayed).
    pub(crate) rtcp_packets: u64,
    /// Packets from addresses or channels no publisher set up.
    pub(crate) unrouted: u64,
}

impl Ingest {
    /// Ingest with the shards' wakers, the viewers' payload budget, each log's size and the
    /// publisher timeout.
    pub(crate) fn new(
        wakers: Vec<Arc<Waker>>,
        payload_budget: usize,
        log_size: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            wakers,
            payload_budget,
            log_size,
            timeout,
            streams: HashMap::new(),
            tcp_routes: HashMap::new(),
            udp_routes: HashMap::new(),
            rtcp_packets: 0,
            unrouted: 0,
        }
    }

    /// An RTSP publisher went live: its stream's log (see [`Ingest::open`]) and the routes of
    /// its tracks. Returns the log to publish in the catalog.
    pub(crate) fn start(
        &mut self,
        start: &PublishStart,
        now: Instant,
    ) -> Result<Arc<LiveLog>, IngestError> {
        let specs: Vec<LogTrackSpec> = start
            .tracks
            .iter()
            .map(|(t, _)| LogTrackSpec {
                kind: t.kind,
                codec: t.codec.clone(),
            })
            .collect();
        let depacketizers = start
            .tracks
            .iter()
            .enumerate()
            .map(|(k, (t, _))| Depacketizer::new(k, t))
            .collect();
        let log = self.open(start.id, &start.path, specs, depacketizers, start.peer, now)?;
        for (track, (_, transport)) in start.tracks.iter().enumerate() {
            let route = |rtcp| Route {
                path: start.path.clone(),
                publisher: start.id,
                track,
                rtcp,
            };
            match transport {
                IngestTransport::Interleaved {
                    conn,
                    rtp_channel,
                    rtcp_channel,
                } => {
                    self.tcp_routes.insert((*conn, *rtp_channel), route(false));
                    self.tcp_routes.insert((*conn, *rtcp_channel), route(true));
                }
                IngestTransport::Udp {
                    rtp_from,
                    rtcp_from,
                } => {
                    self.udp_routes.insert(*rtp_from, route(false));
                    self.udp_routes.insert(*rtcp_from, route(true));
                }
            }
        }
        Ok(log)
    }

    /// Opens `path` for publisher `id` with `specs`: a waiting log with the same tracks (its
    /// publisher gone, or this publisher announcing again) is resumed, so viewers' numbering
    /// runs on; a log whose tracks differ is ended and replaced (its viewers need the new
    /// parameters from a new DESCRIBE); a path another publisher holds is refused.
    pub(crate) fn open(
        &mut self,
        id: SessionId,
        path: &str,
        specs: Vec<LogTrackSpec>,
        depacketizers: Vec<Depacketizer>,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<Arc<LiveLog>, IngestError> {
        if let Some(s) = self.streams.get_mut(path) {
            if s.publisher.is_some_and(|p| p != id) {
                return Err(IngestError::Taken(path.to_owned()));
            }
            if s.specs == specs {
                if s.publisher.is_none() {
                    s.writer.resume();
                    tracing::info!(stream = %path, %peer, "publisher back: the stream continues");
                }
                s.publisher = Some(id);
                s.depacketizers = depacketizers;
                s.gone_since = None;
                s.last_data = now;
                return Ok(s.writer.log().clone());
            }
            if let Some(old) = self.streams.remove(path) {
                old.writer.log().set_state(LogState::Ended);
                tracing::info!(stream = %path, "the publisher's tracks changed: a new stream replaces the old one");
            }
        }
        let writer = LogWriter::create(
            path,
            &specs,
            self.log_size,
            self.payload_budget,
            self.wakers.clone(),
            now,
        )?;
        let codecs: Vec<&str> = specs.iter().map(|s| s.codec.name()).collect();
        tracing::info!(stream = %path, %peer, tracks = %codecs.join("+"), "publishing");
        let log = writer.log().clone();
        self.streams.insert(
            path.to_owned(),
            Stream {
                writer,
                specs,
                publisher: Some(id),
                depacketizers,
                last_data: now,
                gone_since: None,
            },
        );
        Ok(log)
    }

    /// A frame from a source that is not RTP (RTMP, a pulled source), for publisher `id`.
    pub(crate) fn frame(&mut self, id: SessionId, path: &str, frame: &Frame<'_>, now: Instant) {
        if let Some(s) = self.streams.get_mut(path) {
            if s.publisher == Some(id) {
                s.last_data = now;
                let _ = s.writer.append(frame, now);
            }
        }
    }

    /// A publisher ended: its routes go; its stream waits for a new publisher.
    pub(crate) fn stop(&mut self, id: SessionId, path: &str, now: Instant) {
        self.tcp_routes.retain(|_, r| r.publisher != id);
        self.udp_routes.retain(|_, r| r.publisher != id);
        if let Some(s) = self.streams.get_mut(path) {
            if s.publisher == Some(id) {
                s.publisher = None;
                s.depacketizers.clear();
                s.gone_since = Some(now);
                s.writer.log().set_state(LogState::Waiting);
            }
        }
    }

    /// A `$` frame on connection `conn`: true if it was a publisher's (taken).
    pub(crate) fn interleaved(
        &mut self,
        conn: ConnId,
        channel: u8,
        packet: &[u8],
        now: Instant,
    ) -> bool {
        let Some(route) = self.tcp_routes.get(&(conn, channel)).cloned() else {
            return false;
        };
        self.ingest(&route, packet, now);
        true
    }

    /// A UDP datagram on the ingest ports from `from`.
    pub(crate) fn udp(&mut self, from: SocketAddr, packet: &[u8], now: Instant) {
        match self.udp_routes.get(&from).cloned() {
            Some(route) => self.ingest(&route, packet, now),
            // Never trusted: only a publisher's own set-up ports feed a stream.
            None => self.unrouted += 1,
        }
    }

    fn ingest(&mut self, route: &Route, packet: &[u8], now: Instant) {
        if route.rtcp {
            self.rtcp_packets += 1;
            return;
        }
        let Some(s) = self.streams.get_mut(&route.path) else {
            return;
        };
        let Stream {
            writer,
            depacketizers,
            last_data,
            ..
        } = s;
        let Some(d) = depacketizers.get_mut(route.track) else {
            return;
        };
        *last_data = now;
        // Frames that do not fit (flood, a stalled reader) are counted by the log.
        d.push(packet, &mut |frame| {
            let _ = writer.append(&frame, now);
        });
    }

    /// Once a second: streams whose publisher did not come back end; silent publishers are
    /// reported (the caller ends them through the core).
    pub(crate) fn tick(&mut self, now: Instant) -> IngestTick {
        let mut tick = IngestTick::default();
        let timeout = self.timeout;
        self.streams.retain(|path, s| {
            if s.gone_since
                .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
            {
                s.writer.log().set_state(LogState::Ended);
                tracing::info!(stream = %path, "publisher did not return within {timeout:?}: stream ended");
                tick.ended.push(path.clone());
                return false;
            }
            if let Some(id) = s.publisher {
                if now.saturating_duration_since(s.last_data) >= timeout {
                    tick.silent.push(id);
                }
            }
            true
        });
        tick
    }
}

/// Why a publisher's stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    /// Another publisher holds the path.
    #[error("{0:?} is already being published")]
    Taken(String),
    /// The live log could not be created.
    #[error(transparent)]
    Log(#[from] LogError),
}
