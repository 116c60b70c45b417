//! HLS over HTTP/1.1, served by the shard that accepted the connection (issue 15; design:
//! `docs/design/hls.md`).
//!
//! Every shard has its own listener on the HLS port (`SO_REUSEPORT`: the kernel spreads
//! connections over the shards), registered in the shard's epoll set with its connections.
//! A connection lives on its shard from accept to close: requests are parsed there
//! (`conn`), answered there (`routes`, over the sans-IO `crate::hls`), and bodies are
//! written there straight from the mapping. A blocking playlist reload (RFC 8216bis
//! §6.2.5.2) parks its request on the shard until the part it waits for is complete; the
//! shard's sleep is bounded by the earliest parked request.
//!
//! Bounded everywhere: connections per shard ([`MAX_CONNECTIONS`]), head size, one request
//! at a time per connection, idle and stalled connections closed ([`IDLE_TIMEOUT`],
//! [`STALL_TIMEOUT`]), accepted connections per wake (`ACCEPTS_PER_WAKE`).

pub(crate) mod conn;
pub mod logs;
pub(crate) mod routes;
pub(crate) mod viewers;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use conn::{Body, HttpConn, Incoming, Outgoing, Request, WriteState};
use routes::{Routed, Router, Served};
use viewers::Viewers;

use crate::poll::{Epoll, Interest, Ready};
use crate::stats::ShardCounters;

pub use conn::BodyPath;
pub use logs::{LiveLogs, LogHls};
pub use routes::HlsContext;

/// The epoll token of the shard's HLS listener.
pub(crate) const LISTENER_TOKEN: u64 = 1;
/// Connections one shard serves at once; more are accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 16_384;
/// A connection with no request and no write progress for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A response that made no write progress for this long (a viewer that stopped reading) is
/// abandoned and its connection closed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted per readiness of the listener (the rest wait for the next wake).
const ACCEPTS_PER_WAKE: usize = 64;
/// Unsent bytes the kernel may hold per HLS connection (`TCP_NOTSENT_LOWAT`): enough for a
/// part or two in flight, so writability means room for a large gathered write.
const KERNEL_UNSENT_BYTES: u32 = 256 * 1024;
/// Log lines about bad requests per shard and second (the rest are counted).
const LOG_LINES_PER_SEC: u32 = 10;

/// The context every shard's HLS service reads, replaced whole on reload.
pub type SharedHlsContext = Arc<RwLock<Arc<HlsContext>>>;

/// One connection slot.
#[derive(Debug)]
struct Slot {
    conn: HttpConn,
    generation: u32,
    /// A blocking reload waiting for its part.
    parked: Option<Request>,
    /// Names the parked request (timer entries of an earlier one are ignored).
    park_id: u64,
    /// The parked request is held on a log and its wait ran out: routed as expired.
    hold_expired: bool,
    /// Writability is watched only while a response is blocked.
    watching_writes: bool,
}

/// A shard's HLS side.
pub(crate) struct HlsService {
    shard: usize,
    listener: TcpListener,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    generation: u32,
    /// Parked requests by wake time: (when, slot, generation, park id).
    parked: BinaryHeap<Reverse<(Instant, usize, u32, u64)>>,
    /// Requests held until an ingested stream's log grows, by log.
    held: HashMap<usize, HeldLog>,
    next_park_id: u64,
    router: Router,
    next_sweep: Instant,
    log_budget: (Instant, u32),
    counters: Arc<ShardCounters>,
    /// The viewers this shard served lately, for the statistics.
    viewers: Viewers,
}

impl HlsService {
    /// Serves `listener` (already bound, shared with the other shards by `SO_REUSEPORT`),
    /// registered in `epoll`.
    pub(crate) fn new(
        shard: usize,
        listener: TcpListener,
        context: SharedHlsContext,
        counters: Arc<ShardCounters>,
        epoll: &Epoll,
        now: Instant,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        epoll.add(&listener, LISTENER_TOKEN)?;
        Ok(Self {
            shard,
            listener,
            slots: Vec::new(),
            free: Vec::new(),
            generation: 0,
            parked: BinaryHeap::new(),
            held: HashMap::new(),
            next_park_id: 0,
            router: Router::new(shard, context, counters.clone()),
            next_sweep: now + Duration::from_secs(1),
            log_budget: (now, 0),
            counters,
            viewers: Viewers::default(),
        })
    }

    /// The HLS viewers served lately, with this shard's counts (for its statistics report).
    pub(crate) fn viewer_reports(&mut self, now: Instant) -> Vec<crate::stats::HlsViewerReport> {
        self.viewers.report(now)
    }

    /// Connections open.
    pub(crate) fn connections(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The earliest time the service needs to run without a socket event.
    pub(crate) fn next_deadline(&self) -> Instant {
        match self.parked.peek() {
            Some(Reverse((at, _, _, _))) => (*at).min(self.next_sweep),
            None => self.next_sweep,
        }
    }

    /// Handles one readiness event of the listener or a connection.
    pub(crate) fn on_ready(&mut self, epoll: &Epoll, ready: Ready, now: Instant) {
        if ready.token == LISTENER_TOKEN {
            self.accept(epoll, now);
            return;
        }
        let Some(slot) = self.slot_of(ready.token) else {
            return;
        };
        if ready.writable {
            self.write(epoll, slot, now);
        }
        if ready.readable || ready.closed {
            self.serve(epoll, slot, now);
        }
    }

    /// Parked requests whose time came, and the once-a-second sweep of idle connections.
    pub(crate) fn on_timers(&mut self, epoll: &Epoll, now: Instant) {
        while let Some(&Reverse((at, slot, generation, id))) = self.parked.peek() {
            if at > now {
                break;
            }
            self.parked.pop();
            if let Some(Some(s)) = self.slots.get_mut(slot) {
                if s.generation == generation && s.park_id == id {
                    if let Some(req) = s.parked.take() {
                        // A held request whose wait ran out is routed once more as such.
                        let expired = std::mem::take(&mut s.hold_expired);
                        self.answer(epoll, slot, req, now, expired);
                    }
                }
            }
        }
        self.recheck_held(epoll, now);
        if now >= self.next_sweep {
            self.next_sweep = now + Duration::from_secs(1);
            let mut expired = Vec::new();
            for (k, s) in self.slots.iter().enumerate() {
                let Some(s) = s else { continue };
                let quiet = now.saturating_duration_since(s.conn.last_active);
                if (s.conn.is_writing() && quiet >= STALL_TIMEOUT)
                    || (s.parked.is_none() && quiet >= IDLE_TIMEOUT)
                {
                    expired.push(k);
                }
            }
            for k in expired {
                self.close(epoll, k, "idle or stalled");
            }
            self.router.sweep(now);
        }
    }

    fn slot_of(&self, token: u64) -> Option<usize> {
        let slot = (token & 0xffff_ffff).checked_sub(2)? as usize;
        let generation = (token >> 32) as u32;
        match self.slots.get(slot) {
            Some(Some(s)) if s.generation == generation => Some(slot),
            _ => None,
        }
    }

    fn token(slot: usize, generation: u32) -> u64 {
        (u64::from(generation) << 32) | (slot as u64 + 2)
    }

    fn accept(&mut self, epoll: &Epoll, now: Instant) {
        for _ in 0..ACCEPTS_PER_WAKE {
            let (stream, peer) = match self.listener.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: the listener stays readable; try again next wake.
                    self.log(now, format_args!("HLS accept: {e}"));
                    return;
                }
            };
            if self.connections() >= MAX_CONNECTIONS {
                self.log(
                    now,
                    format_args!("HLS connection from {peer} refused: {MAX_CONNECTIONS} open"),
                );
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let _ = crate::sys::tcp::set_notsent_lowat(&stream, KERNEL_UNSENT_BYTES);
            self.generation = self.generation.wrapping_add(1);
            let generation = self.generation;
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            if epoll.add(&stream, Self::token(slot, generation)).is_err() {
                self.free.push(slot);
                continue;
            }
            self.slots[slot] = Some(Slot {
                conn: HttpConn::new(stream, peer, now),
                generation,
                parked: None,
                park_id: 0,
                hold_expired: false,
                watching_writes: false,
            });
            self.counters
                .hls_connections
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads and answers what a connection sent.
    fn serve(&mut self, epoll: &Epoll, slot: usize, now: Instant) {
        loop {
            let Some(Some(s)) = self.slots.get_mut(slot) else {
                return;
            };
            if s.parked.is_some() || s.conn.is_writing() {
                // Answered in order: the next request waits for this one.
                if s.parked.is_some() && peer_closed(&s.conn) {
                    self.close(epoll, slot, "closed while waiting");
                }
                return;
            }
            match s.conn.read_request() {
                Incoming::Partial => return,
                Incoming::Closed => {
                    self.close(epoll, slot, "");
                    return;
                }
                Incoming::Bad(why) => {
                    let peer = s.conn.peer;
                    self.log(
                        now,
                        format_args!("HLS request from {peer} refused: {why:?}"),
                    );
                    let reply = routes::bad_request(why);
                    self.send(epoll, slot, reply, now);
                    return;
                }
                Incoming::Request(req) => {
                    if !self.answer(epoll, slot, req, now, false) {
                        return;
                    }
                }
            }
        }
    }

    /// Routes `req` and starts its response (or parks it); true if the connection can take
    /// its next request at once.
    fn answer(
        &mut self,
        epoll: &Epoll,
        slot: usize,
        req: Request,
        now: Instant,
        expired: bool,
    ) -> bool {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return false;
        };
        let peer = s.conn.peer;
        let mut served = Served::default();
        match self
            .router
            .route(&req, peer, now, SystemTime::now(), &mut served, expired)
        {
            Routed::Reply(reply) => {
                let bytes = match (req.method, reply.window) {
                    (conn::Method::Head, _) => 0,
                    (_, Some((from, to))) => to - from,
                    (_, None) => reply.body.len(),
                };
                self.viewers.record(&served, peer, bytes, now);
                tracing::trace!(shard = self.shard, %peer, path = %req.path, query = ?req.query.as_deref().map(crate::token::redact_token), "HLS request answered");
                if let Some(line) = &reply.log {
                    self.log(now, format_args!("HLS {} from {peer}: {line}", req.path));
                }
                self.counters.hls_requests.fetch_add(1, Ordering::Relaxed);
                self.send(epoll, slot, reply.into_outgoing(&req), now)
            }
            Routed::Park(until) => {
                tracing::trace!(shard = self.shard, %peer, path = %req.path, query = ?req.query, wait_ms = until.saturating_duration_since(now).as_millis() as u64, "HLS request parked");
                self.park(slot, req, until, false);
                false
            }
            Routed::Hold { log, wanted, until } => {
                tracing::trace!(shard = self.shard, %peer, path = %req.path, query = ?req.query, ?wanted, "HLS request held for its log");
                let Some((id, generation)) = self.park(slot, req, until, true) else {
                    return false;
                };
                let key = Arc::as_ptr(&log) as usize;
                let shard = self.shard;
                let entry = self.held.entry(key).or_insert_with(|| {
                    // The writer wakes this shard after each append while it watches.
                    log.log.watch(shard, true);
                    HeldLog {
                        progress: log.progress(),
                        log,
                        waiting: Vec::new(),
                    }
                });
                entry.waiting.push(HeldRequest {
                    slot,
                    generation,
                    id,
                    wanted,
                });
                false
            }
        }
    }

    /// Parks `req` on `slot` until `until` (`held`: on a log, answered earlier when it grows);
    /// the park id and the slot's generation.
    fn park(
        &mut self,
        slot: usize,
        req: Request,
        until: Instant,
        held: bool,
    ) -> Option<(u64, u32)> {
        let s = self.slots.get_mut(slot)?.as_mut()?;
        self.next_park_id += 1;
        let id = self.next_park_id;
        s.parked = Some(req);
        s.park_id = id;
        s.hold_expired = held;
        self.parked.push(Reverse((until, slot, s.generation, id)));
        Some((id, s.generation))
    }

    /// Requests held on logs: for each log that grew (or changed state) since the last look,
    /// answer the requests whose segment or part is now there. Cost per wake: one atomic
    /// load per track of each log with held requests; per growth of such a log, one store
    /// refresh and one store lookup per request held on it. Requests whose connection went
    /// away or that were answered otherwise are dropped here, and a log nobody waits on is
    /// no longer watched.
    fn recheck_held(&mut self, epoll: &Epoll, now: Instant) {
        if self.held.is_empty() {
            return;
        }
        let mut due: Vec<(usize, u64)> = Vec::new();
        let sweep = now >= self.next_sweep;
        for held in self.held.values_mut() {
            let progress = held.log.progress();
            if progress == held.progress && !sweep {
                continue;
            }
            held.progress = progress;
            let slots = &self.slots;
            held.waiting.retain(|w| {
                let parked = matches!(
                    slots.get(w.slot),
                    Some(Some(s)) if s.generation == w.generation && s.park_id == w.id && s.parked.is_some()
                );
                if !parked {
                    return false;
                }
                if held.log.ready(self.shard, w.wanted) {
                    due.push((w.slot, w.id));
                    return false;
                }
                true
            });
        }
        let shard = self.shard;
        self.held.retain(|_, h| {
            if h.waiting.is_empty() {
                h.log.log.watch(shard, false);
                false
            } else {
                true
            }
        });
        for (slot, id) in due {
            if let Some(Some(s)) = self.slots.get_mut(slot) {
                if s.park_id == id {
                    if let Some(req) = s.parked.take() {
                        s.hold_expired = false;
                        self.answer(epoll, slot, req, now, false);
                        // Pipelined requests behind it.
                        self.serve(epoll, slot, now);
                    }
                }
            }
        }
    }

    /// Starts writing a response; true when it went out whole and the connection stays open.
    fn send(&mut self, epoll: &Epoll, slot: usize, out: Outgoing, now: Instant) -> bool {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return false;
        };
        let before = s.conn.body_bytes;
        let state = s.conn.respond(out, now, self.router.body_path());
        self.counters
            .hls_bytes
            .fetch_add(s.conn.body_bytes - before, Ordering::Relaxed);
        self.after_write(epoll, slot, state)
    }

    fn write(&mut self, epoll: &Epoll, slot: usize, now: Instant) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        let before = s.conn.body_bytes;
        let state = s.conn.write(now, self.router.body_path());
        self.counters
            .hls_bytes
            .fetch_add(s.conn.body_bytes - before, Ordering::Relaxed);
        if self.after_write(epoll, slot, state) {
            // The response is out: serve what was pipelined behind it.
            self.serve(epoll, slot, now);
        }
    }

    /// Watches writability while blocked, closes after a closing response; true when the
    /// connection is idle and open.
    fn after_write(&mut self, epoll: &Epoll, slot: usize, state: io::Result<WriteState>) -> bool {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return false;
        };
        let token = Self::token(slot, s.generation);
        match state {
            Err(_) => {
                self.close(epoll, slot, "");
                false
            }
            Ok(WriteState::Blocked) => {
                if !s.watching_writes {
                    s.watching_writes = true;
                    let _ = epoll.modify(s.conn.stream(), token, Interest::ReadWrite);
                }
                false
            }
            Ok(WriteState::Done) => {
                if s.watching_writes {
                    s.watching_writes = false;
                    let _ = epoll.modify(s.conn.stream(), token, Interest::Read);
                }
                if s.conn.is_closing() {
                    self.close(epoll, slot, "");
                    return false;
                }
                true
            }
        }
    }

    fn close(&mut self, epoll: &Epoll, slot: usize, why: &str) {
        let Some(s) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = epoll.delete(s.conn.stream());
        if !why.is_empty() {
            tracing::debug!(shard = self.shard, peer = %s.conn.peer, "HLS connection closed: {why}");
        }
        self.free.push(slot);
        self.counters
            .hls_connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// One log line, within the shard's budget of [`LOG_LINES_PER_SEC`].
    fn log(&mut self, now: Instant, line: std::fmt::Arguments<'_>) {
        let (since, used) = &mut self.log_budget;
        if now.saturating_duration_since(*since) >= Duration::from_secs(1) {
            if *used > LOG_LINES_PER_SEC {
                tracing::info!(
                    shard = self.shard,
                    "{} more HLS refusals in the last second not logged",
                    *used - LOG_LINES_PER_SEC
                );
            }
            *since = now;
            *used = 0;
        }
        *used += 1;
        if *used <= LOG_LINES_PER_SEC {
            tracing::info!(shard = self.shard, "{line}");
        }
    }
}

/// The requests one shard holds on one log.
struct HeldLog {
    log: Arc<LogHls>,
    /// [`LogHls::progress`] when last looked at.
    progress: u64,
    waiting: Vec<HeldRequest>,
}

/// One held request: its slot and what it waits for.
struct HeldRequest {
    slot: usize,
    generation: u32,
    id: u64,
    wanted: logs::Wanted,
}

/// True when a parked request's peer has gone (a zero-length peek).
fn peer_closed(conn: &HttpConn) -> bool {
    let mut b = [0u8; 1];
    matches!(conn.stream().peek(&mut b), Ok(0))
}

/// Binds `count` listeners on `addr` with `SO_REUSEPORT` (the first decides the port when
/// `addr` has port 0); the kernel spreads incoming connections over them.
pub fn bind_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

impl routes::Reply {
    fn into_outgoing(self, req: &Request) -> Outgoing {
        let close = !req.keep_alive;
        let (from, to) = self.window.unwrap_or((0, self.body.len()));
        let body = if req.method == conn::Method::Head {
            Body::Empty
        } else {
            self.body
        };
        let to = if matches!(body, Body::Empty) {
            from
        } else {
            to
        };
        Outgoing::new(self.head, body, from, to, close)
    }
}
