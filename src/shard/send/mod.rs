//! UDP send backends behind one small interface.
//!
//! A shard collects a tick's packets as `GatherMsg`s (header slab + body slice of the
//! mapping) and hands them to `UdpSender::send_batch`. The sender scans the batch once,
//! forms UDP GSO trains ([`gso`]) and fills a window of up to 64 sends, each one datagram or
//! one train; a full window goes to the kernel through the chosen backend:
//!
//! | `--io` | kernel entry per window | notes |
//! |---|---|---|
//! | `uring` | one `io_uring_enter` (SENDMSG ops, waits for all completions) | default when a ring can be created |
//! | `sendmmsg` | one `sendmmsg(2)` (more only after an error) | fallback default |
//! | `sendto` | one `sendmsg(2)` per send | baseline; `sendmsg` because a datagram is gathered from two slices |
//!
//! With GSO on, a run of equal-size datagrams to one viewer is one send in every backend. If
//! the kernel refuses a GSO send at runtime (`EIO`/`EINVAL`/`ENOPROTOOPT`), GSO is switched
//! off for the socket with one log line and the refused train is resent as plain datagrams.

pub mod gso;

use std::net::UdpSocket;
use std::str::FromStr;

use serde::Deserialize;

pub use crate::ids::UnknownChoice;

use crate::sys::cmsg::{is_gso_refusal, probe_udp_gso};
pub(crate) use crate::sys::mmsg::{sock_addr, GatherMsg};
use crate::sys::mmsg::{SendArena, Window, MAX_SENDS};
use crate::sys::uring::UringSender;
pub use crate::sys::uring::{probe_io_uring, UringUnavailable};

/// Packets the worker queues before it flushes: a batch of this size fills at most one window
/// of sends, so it costs one syscall with `sendmmsg` or `uring`.
pub const MAX_BATCH: usize = 64;

/// Kernel send buffer requested for shard sockets: room for bursts of many viewers' frames.
const SEND_BUFFER_BYTES: usize = 8 * 1024 * 1024;

pub use crate::ids::IoBackend;

/// Whether trains of equal-size datagrams go out as UDP GSO sends (`--gso`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GsoMode {
    /// Use `UDP_SEGMENT` where the socket accepts it.
    #[default]
    On,
    /// Plain datagrams only (for comparison).
    Off,
}

impl FromStr for GsoMode {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(GsoMode::On),
            "off" => Ok(GsoMode::Off),
            _ => Err(UnknownChoice {
                value: s.to_owned(),
                allowed: "on, off",
            }),
        }
    }
}

/// The send path a shard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendConfig {
    /// Backend; `None` picks io_uring when the kernel allows it, else `sendmmsg`.
    pub io: Option<IoBackend>,
    /// GSO on or off.
    pub gso: GsoMode,
    /// Time to live of multicast packets (`IP_MULTICAST_TTL` of the shards' sockets, which
    /// applies to multicast destinations only); `None` keeps the kernel's 1.
    pub multicast_ttl: Option<u8>,
}

impl SendConfig {
    /// Decides the backend once for all shards (probing io_uring with a NOP unless another
    /// backend was asked for) and logs the choice.
    pub fn resolve(self) -> SendConfig {
        let io = match self.io {
            Some(IoBackend::Sendmmsg) => IoBackend::Sendmmsg,
            Some(IoBackend::Sendto) => IoBackend::Sendto,
            asked => match probe_io_uring() {
                Ok(()) => IoBackend::Uring,
                Err(e) => {
                    if asked.is_some() {
                        tracing::warn!("--io uring: {e}; falling back to sendmmsg");
                    } else {
                        tracing::info!("io_uring unavailable ({e}); using sendmmsg");
                    }
                    IoBackend::Sendmmsg
                }
            },
        };
        tracing::info!(io = %io, gso = ?self.gso, "send backend");
        SendConfig {
            io: Some(io),
            gso: self.gso,
            multicast_ttl: self.multicast_ttl,
        }
    }
}

/// Result of one batched send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BatchOutcome {
    /// Datagrams handed to the kernel.
    pub(crate) sent: usize,
    /// Datagrams dropped because the kernel refused them (errors other than EINTR).
    pub(crate) failed: usize,
    /// Kernel entries: `sendmmsg`/`sendmsg` calls, or `io_uring_enter` calls.
    pub(crate) syscalls: usize,
    /// GSO sends the kernel accepted.
    pub(crate) gso_sends: usize,
    /// Datagrams carried inside those GSO sends.
    pub(crate) gso_segments: usize,
    /// Last errno seen, if any.
    pub(crate) last_error: Option<i32>,
}

/// The kernel path in use.
enum Backend {
    Sendto,
    Sendmmsg,
    Uring(Box<UringSender>),
}

/// Everything but the arena, so a window can borrow the arena while these are used.
struct Io {
    socket: UdpSocket,
    backend: Backend,
    gso: bool,
    shard: usize,
}

/// GSO sends of one window the kernel refused, to resend as plain datagrams.
struct Refused {
    /// (batch index of the first datagram, datagrams).
    trains: [(usize, u16); MAX_SENDS],
    len: usize,
    /// Whether any entry was a GSO refusal (rather than a reported ICMP error).
    gso: bool,
}

/// A shard's UDP sending side.
pub(crate) struct UdpSender {
    io: Io,
    arena: SendArena,
}

impl UdpSender {
    /// A sender over `socket` for shard `shard`, with `config.io` (resolved; `None` means
    /// sendmmsg) and GSO if asked for and the socket accepts it.
    pub(crate) fn new(socket: UdpSocket, config: SendConfig, shard: usize) -> Self {
        let backend = match config.io.unwrap_or(IoBackend::Sendmmsg) {
            IoBackend::Sendto => Backend::Sendto,
            IoBackend::Sendmmsg => Backend::Sendmmsg,
            IoBackend::Uring => match UringSender::new() {
                Ok(ring) => Backend::Uring(Box::new(ring)),
                Err(e) => {
                    tracing::warn!(shard, "io_uring ring: {e}; using sendmmsg");
                    Backend::Sendmmsg
                }
            },
        };
        let gso = config.gso == GsoMode::On
            && match probe_udp_gso(&socket) {
                Ok(()) => true,
                Err(errno) => {
                    tracing::warn!(shard, errno, "UDP GSO unavailable; sending plain datagrams");
                    false
                }
            };
        Self {
            io: Io {
                socket,
                backend,
                gso,
                shard,
            },
            arena: SendArena::new(),
        }
    }

    /// The socket (also read for RTCP/NAT probes arriving on the RTP port).
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.io.socket
    }

    /// The backend in use now (after any fallback).
    pub(crate) fn backend(&self) -> IoBackend {
        match self.io.backend {
            Backend::Sendto => IoBackend::Sendto,
            Backend::Sendmmsg => IoBackend::Sendmmsg,
            Backend::Uring(_) => IoBackend::Uring,
        }
    }

    /// Whether GSO trains are formed now.
    pub(crate) fn gso_enabled(&self) -> bool {
        self.io.gso
    }

    /// Sends `count` datagrams, the `i`th described by `msg(i)`, in order per destination.
    /// Each index is asked for once, except the datagrams of a GSO train the kernel refused,
    /// which are asked for again to be resent plainly.
    pub(crate) fn send_batch<'a>(
        &mut self,
        count: usize,
        mut msg: impl FnMut(usize) -> GatherMsg<'a>,
    ) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        let Self { io, arena } = self;
        let mut w = arena.window(matches!(io.backend, Backend::Uring(_)));
        let mut train = gso::Train::default();
        let mut open_multipart = false;
        for i in 0..count {
            let m = msg(i);
            let size = m.len();
            // A datagram gathered from several body slices travels in a send of its own.
            let joins = !m.is_multipart() && !open_multipart;
            if io.gso && w.send_open() && joins && train.accepts(m.dest, size) {
                train.push(size);
            } else {
                if w.send_open() {
                    w.end_send(train.segment_size().filter(|_| io.gso));
                }
                if w.is_full() {
                    io.flush(&mut w, &mut out, &mut msg);
                }
                w.begin_send(m.dest, i);
                train.start(m.dest, size);
            }
            open_multipart = m.is_multipart();
            w.push_segment(m.header, m.body());
        }
        if w.send_open() {
            w.end_send(train.segment_size().filter(|_| io.gso));
        }
        io.flush(&mut w, &mut out, &mut msg);
        debug_assert!(w.open_segments() == 0);
        out
    }
}

impl Io {
    /// Sends the window, resends refused GSO trains plainly, and leaves the window empty.
    fn flush<'a>(
        &mut self,
        w: &mut Window<'_, 'a>,
        out: &mut BatchOutcome,
        msg: &mut impl FnMut(usize) -> GatherMsg<'a>,
    ) {
        let mut refused = Refused {
            trains: [(0, 0); MAX_SENDS],
            len: 0,
            gso: false,
        };
        self.submit(w, out, &mut refused);
        if refused.len == 0 {
            return;
        }
        if refused.gso && self.gso {
            self.gso = false;
            tracing::warn!(
                shard = self.shard,
                errno = ?out.last_error,
                "the kernel refused a UDP GSO send; sending plain datagrams from now on"
            );
        }
        // Plain sends are never refused as GSO, and a reported ICMP error is consumed by the
        // send that reported it, so the resends below are final (no loop).
        let (trains, len) = (refused.trains, std::mem::replace(&mut refused.len, 0));
        for &(first, segments) in &trains[..len] {
            for j in first..first + usize::from(segments) {
                if w.is_full() {
                    self.submit(w, out, &mut refused);
                }
                let m = msg(j);
                w.begin_send(m.dest, j);
                w.push_segment(m.header, m.body());
                w.end_send(None);
            }
        }
        self.submit(w, out, &mut refused);
    }

    /// Hands the window to the kernel, accounts every send and empties the window. GSO sends
    /// refused as "cannot segment" are listed in `refused` instead of counted as failed.
    fn submit(&mut self, w: &mut Window<'_, '_>, out: &mut BatchOutcome, refused: &mut Refused) {
        if w.is_empty() {
            return;
        }
        let result = match &mut self.backend {
            Backend::Sendto => Ok(w.send_each(&self.socket)),
            Backend::Sendmmsg => Ok(w.send_mmsg(&self.socket)),
            Backend::Uring(ring) => {
                let datagrams: usize = w.slots().iter().map(|s| usize::from(s.segments)).sum();
                ring.send(w, &self.socket).map_err(|(calls, e)| {
                    tracing::error!(
                        shard = self.shard,
                        "io_uring failed: {e}; using sendmmsg from now on"
                    );
                    (calls, datagrams, e.raw_os_error().unwrap_or(libc::EIO))
                })
            }
        };
        match result {
            Ok(calls) => {
                out.syscalls += calls;
                for s in w.slots() {
                    let segments = usize::from(s.segments);
                    if s.result >= 0 {
                        out.sent += segments;
                        if s.segment_size > 0 {
                            out.gso_sends += 1;
                            out.gso_segments += segments;
                        }
                    } else if s.segment_size > 0 && is_gso_refusal(-s.result) {
                        out.last_error = Some(-s.result);
                        refused.trains[refused.len] = (s.tag, s.segments);
                        refused.len += 1;
                        refused.gso = true;
                    } else if is_reported_icmp_error(-s.result) && refused.len < MAX_SENDS {
                        // With IP_RECVERR the kernel reports an ICMP error for *any* earlier
                        // datagram on the next send (sock_alloc_send_pskb returns and clears
                        // sk_err): this send was not at fault, so it is sent once more.
                        out.last_error = Some(-s.result);
                        refused.trains[refused.len] = (s.tag, s.segments);
                        refused.len += 1;
                    } else {
                        out.failed += segments;
                        out.last_error = Some(-s.result);
                    }
                }
            }
            Err((calls, datagrams, errno)) => {
                // The ring is gone (its memory leaked); what it sent is unknown.
                self.backend = Backend::Sendmmsg;
                out.syscalls += calls;
                out.failed += datagrams;
                out.last_error = Some(errno);
            }
        }
        w.clear();
    }
}

/// Errors the kernel reports on a send for an ICMP error queued by an earlier datagram.
fn is_reported_icmp_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH
    )
}

/// One datagram for [`SendFloor::send`]: an RTP header and a body slice, to `dest`.
#[derive(Debug, Clone, Copy)]
pub struct FloorDatagram<'a> {
    /// The RTP header (a shard's comes from its header slab).
    pub header: &'a [u8],
    /// The payload (a shard's is a slice of the mapped file).
    pub body: &'a [u8],
    /// The viewer.
    pub dest: &'a socket2::SockAddr,
}

/// What [`SendFloor::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloorOutcome {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams it refused.
    pub failed: usize,
    /// Kernel entries (`sendmsg`, `sendmmsg` or `io_uring_enter` calls).
    pub syscalls: usize,
    /// GSO sends, and the datagrams inside them.
    pub gso_sends: usize,
    /// Datagrams carried by those GSO sends.
    pub gso_segments: usize,
}

/// A shard's send layer alone — the same trains, windows and backends, but no sessions,
/// pacing or packetizing — so `bench/send_floor.rs` can measure what the kernel path itself
/// costs per packet at a given number of segments per send: the floor a shard's own cost
/// per packet is compared with.
pub struct SendFloor {
    inner: UdpSender,
}

impl SendFloor {
    /// A sender over `socket` (its send buffer raised as a shard's is) with backend `io` and
    /// GSO on or off.
    pub fn new(socket: UdpSocket, io: IoBackend, gso: GsoMode) -> Self {
        tune_socket(&socket);
        let config = SendConfig {
            io: Some(io),
            gso,
            multicast_ttl: None,
        };
        Self {
            inner: UdpSender::new(socket, config, 0),
        }
    }

    /// Sends `datagrams` in order per destination; runs of equal-size datagrams to one
    /// destination become GSO trains when GSO is on.
    pub fn send(&mut self, datagrams: &[FloorDatagram<'_>]) -> FloorOutcome {
        let out = self.inner.send_batch(datagrams.len(), |i| {
            let d = &datagrams[i];
            GatherMsg::new(d.header, &[d.body], d.dest)
        });
        FloorOutcome {
            sent: out.sent,
            failed: out.failed,
            syscalls: out.syscalls,
            gso_sends: out.gso_sends,
            gso_segments: out.gso_segments,
        }
    }
}

/// Raises a shard socket's send buffer (best effort; the kernel caps it at `wmem_max`).
/// Sets the multicast TTL of a shard socket (RFC 1112 §6.1), when one is configured.
pub(crate) fn set_multicast_ttl(socket: &UdpSocket, ttl: Option<u8>) {
    let Some(ttl) = ttl else { return };
    let sock = socket2::SockRef::from(socket);
    let result = match socket.local_addr() {
        Ok(std::net::SocketAddr::V6(_)) => sock.set_multicast_hops_v6(u32::from(ttl)),
        _ => sock.set_multicast_ttl_v4(u32::from(ttl)),
    };
    if let Err(e) = result {
        tracing::warn!("multicast TTL {ttl}: {e}");
    }
}

pub(crate) fn tune_socket(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_send_buffer_size(SEND_BUFFER_BYTES) {
        tracing::debug!("SO_SNDBUF: {e}");
    }
}

#[cfg(test)]
mod tests;
