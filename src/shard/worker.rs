//! The shard thread's loop: commands in, due packets out, RTCP liveness in.
//!
//! Each tick: (1) apply queued commands, (2) pop every (session, track) whose next sample is
//! due, packetize it into the reusable `pending` array (RTP header written in place, body a
//! range of the mapping), (3) send the array with one batched call per [`MAX_BATCH`] packets,
//! (4) drain arriving RTCP as liveness, (5) sleep on the command channel until the next due
//! time. Steady state allocates nothing per packet: `pending`, the heap and the send scratch
//! are sized at start and reused.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::send::{GatherMsg, SendConfig, UdpSender, MAX_BATCH};
use super::session::{PlayState, ShardSession, SENDER_REPORT_INTERVAL};
use super::tcp::{interleaved_header, SinkError};
use super::{PlayStarted, SessionId, ShardCommand, ShardCounters};
use crate::packetize::{BodySource, PacketSpec};
use crate::sys::errqueue::{enable_recverr, take_error, QueuedError};
use crate::wire::ntp::NtpTime;
use crate::wire::rtcp::{write_bye, write_sender_report, SenderInfo, MAX_RTCP_COMPOUND};
use crate::wire::rtp::{write_rtp_header, RTP_HEADER_LEN};

/// Longest sleep between ticks when nothing is due (bounds RTCP draining latency).
const IDLE_WAKE: Duration = Duration::from_millis(50);
/// Samples one (session, track) may send per visit before yielding to others.
const SAMPLES_PER_VISIT: usize = 8;
/// Packets reserved for one tick; a tick that needs more grows the vector once.
const PENDING_CAPACITY: usize = 4096;
/// RTCP datagrams drained per tick.
const RTCP_DRAIN_PER_TICK: usize = 64;

/// A queue entry: stream `track` of session `slot` is due at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    slot: u32,
    track: u16,
    generation: u32,
}

/// A packet waiting for the batched send: its header slab and where its body lives.
#[derive(Debug, Clone, Copy)]
struct PendingPacket {
    header: [u8; RTP_HEADER_LEN + 4],
    header_len: u8,
    slot: u32,
    track: u16,
    spec: PacketSpec,
}

/// The state a shard thread owns.
pub(super) struct Worker {
    index: usize,
    udp: UdpSender,
    rtcp: UdpSocket,
    commands: Receiver<ShardCommand>,
    counters: Arc<ShardCounters>,
    sessions: Vec<Option<ShardSession>>,
    free_slots: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    by_peer: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<Due>>,
    pending: Vec<PendingPacket>,
    rtcp_buf: [u8; MAX_RTCP_COMPOUND],
    recv_buf: Box<[MaybeUninit<u8>; 2048]>,
    running: bool,
}

impl Worker {
    pub(super) fn new(
        index: usize,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        commands: Receiver<ShardCommand>,
        counters: Arc<ShardCounters>,
        send: SendConfig,
    ) -> Self {
        // ICMP errors for datagrams we send are queued on the socket, so a closed viewer port
        // is noticed (drain_unreachable) instead of being streamed to until the timeout.
        if let Err(e) = enable_recverr(&rtp) {
            tracing::warn!(
                shard = index,
                "IP_RECVERR: {e}; closed viewer ports go unnoticed"
            );
        }
        // Sends block when the kernel buffer is full: back-pressure instead of loss.
        if let Err(e) = rtp.set_nonblocking(false) {
            tracing::warn!(shard = index, "rtp socket mode: {e}");
        }
        Self {
            index,
            udp: UdpSender::new(rtp, send, index),
            rtcp,
            commands,
            counters,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            by_id: HashMap::new(),
            by_peer: HashMap::new(),
            queue: BinaryHeap::with_capacity(1024),
            pending: Vec::with_capacity(PENDING_CAPACITY),
            rtcp_buf: [0; MAX_RTCP_COMPOUND],
            recv_buf: Box::new([MaybeUninit::uninit(); 2048]),
            running: true,
        }
    }

    /// Runs until [`ShardCommand::Shutdown`] or the control thread goes away.
    pub(super) fn run(mut self) {
        while self.running {
            let now = Instant::now();
            self.send_due(now);
            self.drain_rtcp(now);
            let deadline = match self.queue.peek() {
                Some(Reverse(d)) => d.at.min(now + IDLE_WAKE),
                None => now + IDLE_WAKE,
            };
            match self.commands.recv_deadline(deadline) {
                Ok(cmd) => {
                    self.apply(cmd);
                    while let Ok(cmd) = self.commands.try_recv() {
                        self.apply(cmd);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.running = false,
            }
        }
        let ids: Vec<SessionId> = self.by_id.keys().copied().collect();
        for id in ids {
            self.remove(id, "shutdown");
        }
    }

    fn apply(&mut self, cmd: ShardCommand) {
        let now = Instant::now();
        match cmd {
            ShardCommand::Play {
                id,
                setup,
                start_npt_secs,
                reply,
            } => {
                let started = self.play(id, setup, start_npt_secs, now);
                let _ = reply.send(started);
            }
            ShardCommand::Pause { id, reply } => {
                let pos = self.by_id.get(&id).and_then(|&slot| {
                    let s = self.sessions[slot].as_mut()?;
                    let pos = s.position_secs();
                    s.generation = s.generation.wrapping_add(1);
                    if s.state == PlayState::Playing {
                        s.state = PlayState::Paused;
                    }
                    Some(if pos.is_finite() {
                        pos
                    } else {
                        s.media.duration().as_secs_f64()
                    })
                });
                let _ = reply.send(pos);
            }
            ShardCommand::Start { id } => self.start(id, now),
            ShardCommand::Teardown { id } => self.remove(id, "teardown"),
            ShardCommand::Shutdown => self.running = false,
        }
    }

    fn play(
        &mut self,
        id: SessionId,
        setup: Option<Box<super::SessionSetup>>,
        start_npt_secs: Option<f64>,
        now: Instant,
    ) -> Option<PlayStarted> {
        if let Some(setup) = setup {
            if !self.by_id.contains_key(&id) {
                let session = match ShardSession::new(*setup, now) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(shard = self.index, session = %format_args!("{id:016X}"), "cannot stream: {e}");
                        return None;
                    }
                };
                let slot = self.free_slots.pop().unwrap_or_else(|| {
                    self.sessions.push(None);
                    self.sessions.len() - 1
                });
                for t in &session.tracks {
                    if let super::TrackDest::Udp { rtp, rtcp } = t.setup.dest {
                        self.by_peer.insert(rtp, slot);
                        self.by_peer.insert(rtcp, slot);
                    }
                }
                self.sessions[slot] = Some(session);
                self.by_id.insert(id, slot);
                self.counters.sessions.fetch_add(1, Ordering::Relaxed);
            }
        }
        let slot = *self.by_id.get(&id)?;
        let s = self.sessions[slot].as_mut()?;
        let start = match start_npt_secs {
            _ if s.live.is_some() => {
                s.join_live(now);
                0.0
            }
            Some(t) => s.seek(t),
            None if s.all_tracks_done() => s.media.duration().as_secs_f64(),
            None => {
                let p = s.position_secs();
                if p.is_finite() {
                    p
                } else {
                    0.0
                }
            }
        };
        s.play_start = now;
        s.play_start_npt = start;
        // Primed: stale queue entries die with the old generation; `Start` begins sending.
        s.generation = s.generation.wrapping_add(1);
        s.state = PlayState::Paused;
        Some(PlayStarted {
            start_npt_secs: start,
            tracks: s.track_starts(),
        })
    }

    /// Begins sending a primed session: media time `play_start_npt` is due now.
    fn start(&mut self, id: SessionId, now: Instant) {
        let Some(&slot) = self.by_id.get(&id) else {
            return;
        };
        let Some(s) = self.sessions[slot].as_mut() else {
            return;
        };
        if s.state == PlayState::Playing {
            return;
        }
        s.play_start = now;
        s.generation = s.generation.wrapping_add(1);
        s.state = PlayState::Playing;
        for i in 0..s.tracks.len() {
            // A sender report right away gives players the RTP↔NTP mapping before media
            // (RFC 3550 §6.4.1), which A/V sync in ffmpeg and GStreamer relies on.
            s.tracks[i].last_sender_report = None;
            if let Some(at) = s.due(i, s.tracks[i].next_sample) {
                self.queue.push(Reverse(Due {
                    at,
                    slot: slot as u32,
                    track: i as u16,
                    generation: s.generation,
                }));
            }
        }
    }

    /// Sends everything due by `now`.
    fn send_due(&mut self, now: Instant) {
        let mut to_cut: Vec<SessionId> = Vec::new();
        while let Some(&Reverse(due)) = self.queue.peek() {
            if due.at > now {
                break;
            }
            self.queue.pop();
            let slot = due.slot as usize;
            let Some(s) = self.sessions.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if s.generation != due.generation || s.state != PlayState::Playing {
                continue;
            }
            let i = due.track as usize;
            for _ in 0..SAMPLES_PER_VISIT {
                let next = s.tracks[i].next_sample;
                let Some(at) = s.due(i, next) else {
                    break;
                };
                if at > now {
                    self.queue.push(Reverse(Due { at, ..due }));
                    break;
                }
                emit_sample(
                    s,
                    due.slot,
                    i,
                    now,
                    &mut self.pending,
                    &self.rtcp,
                    &mut self.rtcp_buf,
                    &self.counters,
                );
                if s.cut_off {
                    break;
                }
            }
            if s.cut_off {
                to_cut.push(s.id);
                continue;
            }
            let next = s.tracks[i].next_sample;
            if next < s.track(i).samples.len() {
                // Visit budget used up while still behind: come back in this same tick.
                if let Some(at) = s.due(i, next).filter(|&at| at <= now) {
                    self.queue.push(Reverse(Due { at, ..due }));
                }
            } else if s.all_tracks_done() {
                s.state = PlayState::Ended;
                send_byes(s, &self.rtcp, &mut self.rtcp_buf);
                tracing::info!(shard = self.index, session = %format_args!("{:016X}", s.id), "end of stream");
            }
            if self.pending.len() >= MAX_BATCH {
                self.flush();
            }
        }
        self.flush();
        for id in to_cut {
            self.counters
                .slow_viewers_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.remove(id, "viewer too slow (TCP backlog full)");
        }
    }

    /// Sends `pending` in batches.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = &self.pending;
        let sessions = &self.sessions;
        let empty: &[u8] = &[];
        let outcome = self.udp.send_batch(pending.len(), |k| {
            let p = &pending[k];
            let s = sessions[p.slot as usize]
                .as_ref()
                .expect("pending packets belong to live sessions: removal happens after flush");
            let t = &s.tracks[p.track as usize];
            let body = body_of(&p.spec, s, t.packetizer.parameter_sets()).unwrap_or(empty);
            GatherMsg {
                header: &p.header[..p.header_len as usize],
                body,
                dest: t
                    .rtp_dest
                    .as_ref()
                    .expect("UDP packets only for UDP tracks"),
            }
        });
        let bytes: u64 = pending
            .iter()
            .map(|p| u64::from(p.header_len) + u64::from(p.spec.body_len))
            .sum();
        self.counters
            .packets
            .fetch_add(outcome.sent as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.counters
            .syscalls
            .fetch_add(outcome.syscalls as u64, Ordering::Relaxed);
        self.counters
            .gso_sends
            .fetch_add(outcome.gso_sends as u64, Ordering::Relaxed);
        self.counters
            .gso_segments
            .fetch_add(outcome.gso_segments as u64, Ordering::Relaxed);
        if outcome.failed > 0 {
            self.counters
                .send_errors
                .fetch_add(outcome.failed as u64, Ordering::Relaxed);
            tracing::debug!(shard = self.index, failed = outcome.failed, errno = ?outcome.last_error, "send errors");
        }
        self.pending.clear();
    }

    /// Reads RTCP (and NAT keep-alives) from both server ports as session liveness.
    fn drain_rtcp(&mut self, now: Instant) {
        for socket_is_rtcp in [true, false] {
            for _ in 0..RTCP_DRAIN_PER_TICK {
                // Only the sender matters for liveness today; RTCP parsing comes with the
                // receiver-statistics work.
                let socket = if socket_is_rtcp {
                    &self.rtcp
                } else {
                    self.udp.socket()
                };
                let res = recv_nonblocking(socket, &mut self.recv_buf[..]);
                let Ok((_n, from)) = res else {
                    break;
                };
                self.counters.rtcp_received.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = self
                    .by_peer
                    .get(&from)
                    .and_then(|&slot| self.sessions.get(slot))
                    .and_then(Option::as_ref)
                {
                    s.activity.touch(now);
                }
            }
        }
        self.drain_unreachable();
    }

    /// Stops sending to viewers whose RTP port answered ICMP "unreachable" (queued on the
    /// socket by `IP_RECVERR`); their sessions end at the session timeout, as no RTCP can
    /// come from a closed port.
    fn drain_unreachable(&mut self) {
        for _ in 0..RTCP_DRAIN_PER_TICK {
            let Some(err) = take_error(self.udp.socket()) else {
                break;
            };
            let QueuedError::Unreachable(addr) = err else {
                continue;
            };
            let Some(s) = self
                .by_peer
                .get(&addr)
                .and_then(|&slot| self.sessions.get_mut(slot))
                .and_then(Option::as_mut)
            else {
                continue;
            };
            if !s.unreachable {
                s.unreachable = true;
                s.generation = s.generation.wrapping_add(1);
                if s.state == PlayState::Playing {
                    s.state = PlayState::Paused;
                }
                self.counters
                    .unreachable_viewers
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(shard = self.index, session = %format_args!("{:016X}", s.id), %addr, "viewer port unreachable (ICMP); stopped sending until the session times out");
            }
        }
    }

    /// Ends a session: BYE on every track, then frees its slot.
    fn remove(&mut self, id: SessionId, why: &str) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        let Some(mut s) = self.sessions[slot].take() else {
            return;
        };
        if s.state != PlayState::Ended {
            send_byes(&mut s, &self.rtcp, &mut self.rtcp_buf);
        }
        if s.cut_off {
            if let Some(sink) = &s.sink {
                sink.close();
            }
        }
        for t in &s.tracks {
            if let super::TrackDest::Udp { rtp, rtcp } = t.setup.dest {
                self.by_peer.remove(&rtp);
                self.by_peer.remove(&rtcp);
            }
        }
        self.free_slots.push(slot);
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(shard = self.index, session = %format_args!("{id:016X}"), "session ended: {why}");
    }
}

/// Receives one datagram without blocking (the RTP socket stays blocking for sends).
fn recv_nonblocking(
    socket: &UdpSocket,
    buf: &mut [MaybeUninit<u8>],
) -> std::io::Result<(usize, SocketAddr)> {
    let (n, addr) = socket2::SockRef::from(socket).recv_from_with_flags(buf, libc::MSG_DONTWAIT)?;
    let addr = addr
        .as_socket()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    Ok((n, addr))
}

/// The body bytes of a packet, or `None` if its range is outside the data (never trusted).
fn body_of<'a>(spec: &PacketSpec, s: &'a ShardSession, params: &'a [u8]) -> Option<&'a [u8]> {
    let source = match spec.body_source {
        BodySource::Media => s.media.bytes.as_slice(),
        BodySource::ParameterSets => params,
    };
    let start = usize::try_from(spec.body_offset).ok()?;
    let end = start.checked_add(spec.body_len as usize)?;
    source.get(start..end)
}

/// Packetizes the next sample of track `i` into `pending` (UDP) or onto the sink (TCP).
#[allow(clippy::too_many_arguments)]
fn emit_sample(
    s: &mut ShardSession,
    slot: u32,
    i: usize,
    now: Instant,
    pending: &mut Vec<PendingPacket>,
    rtcp: &UdpSocket,
    rtcp_buf: &mut [u8; MAX_RTCP_COMPOUND],
    counters: &ShardCounters,
) {
    let media = s.media.clone();
    let track = &media.index.tracks[s.tracks[i].setup.track_index];
    let Some(&sample) = track.samples.get(s.tracks[i].next_sample) else {
        return;
    };
    if s.tracks[i]
        .last_sender_report
        .is_none_or(|t| now.saturating_duration_since(t) >= SENDER_REPORT_INTERVAL)
    {
        send_sender_report(s, i, now, rtcp, rtcp_buf);
    }
    let bytes = media.bytes.as_slice();
    let ts = s.stamp(i, track.pts_ticks(&sample));
    s.tracks[i].packetizer.begin_sample(sample);
    loop {
        let spec = match s.tracks[i].packetizer.next_packet(bytes) {
            Ok(Some(spec)) => spec,
            Ok(None) => break,
            Err(e) => {
                s.tracks[i].corrupt_samples += 1;
                if s.tracks[i].corrupt_samples == 1 {
                    tracing::warn!(stream = %media.name, track = i, "corrupt sample {}: {e}", s.tracks[i].next_sample);
                }
                break;
            }
        };
        let mut rtp = [0u8; RTP_HEADER_LEN];
        let ph = &spec.payload_header[..usize::from(spec.payload_header_len).min(4)];
        let payload_len = ph.len() + spec.body_len as usize;
        let interleaved_channel = {
            let t = &mut s.tracks[i];
            write_rtp_header(
                &mut rtp,
                t.setup.payload_type,
                spec.marker,
                t.seq,
                ts,
                t.setup.ssrc,
            );
            t.seq = t.seq.wrapping_add(1);
            t.packets_sent = t.packets_sent.wrapping_add(1);
            t.octets_sent = t.octets_sent.wrapping_add(payload_len as u32);
            match t.setup.dest {
                super::TrackDest::Udp { .. } => None,
                super::TrackDest::Interleaved { rtp_channel, .. } => Some(rtp_channel),
            }
        };
        match interleaved_channel {
            None => {
                let mut header = [0u8; RTP_HEADER_LEN + 4];
                header[..RTP_HEADER_LEN].copy_from_slice(&rtp);
                header[RTP_HEADER_LEN..RTP_HEADER_LEN + ph.len()].copy_from_slice(ph);
                pending.push(PendingPacket {
                    header,
                    header_len: (RTP_HEADER_LEN + ph.len()) as u8,
                    slot,
                    track: i as u16,
                    spec,
                });
            }
            Some(channel) => {
                let Some(sink) = s.sink.as_ref() else {
                    s.cut_off = true;
                    return;
                };
                let body =
                    body_of(&spec, s, s.tracks[i].packetizer.parameter_sets()).unwrap_or(&[]);
                let mut head = [0u8; 4 + RTP_HEADER_LEN + 4];
                head[..4]
                    .copy_from_slice(&interleaved_header(channel, RTP_HEADER_LEN + payload_len));
                head[4..4 + RTP_HEADER_LEN].copy_from_slice(&rtp);
                head[4 + RTP_HEADER_LEN..4 + RTP_HEADER_LEN + ph.len()].copy_from_slice(ph);
                let head = &head[..4 + RTP_HEADER_LEN + ph.len()];
                counters.syscalls.fetch_add(1, Ordering::Relaxed);
                match sink.write_parts(&[head, body], false) {
                    Ok(()) => {
                        counters.packets.fetch_add(1, Ordering::Relaxed);
                        counters
                            .bytes
                            .fetch_add((RTP_HEADER_LEN + payload_len) as u64, Ordering::Relaxed);
                    }
                    Err(SinkError::Overflow | SinkError::Closed) => {
                        s.cut_off = true;
                        return;
                    }
                }
            }
        }
    }
    s.advance(i);
}

/// Sends an RTCP compound on track `i`'s RTCP path (UDP from our RTCP port, or the odd
/// interleaved channel). Best effort: RTCP loss is tolerated by design (RFC 3550 §6).
fn deliver_rtcp(s: &ShardSession, i: usize, bytes: &[u8], rtcp: &UdpSocket) {
    match &s.tracks[i].setup.dest {
        super::TrackDest::Udp { rtcp: dest, .. } => {
            let _ = rtcp.send_to(bytes, dest);
        }
        super::TrackDest::Interleaved { rtcp_channel, .. } => {
            if let Some(sink) = &s.sink {
                let _ = sink.write_parts(
                    &[&interleaved_header(*rtcp_channel, bytes.len()), bytes],
                    true,
                );
            }
        }
    }
}

/// The SR sender info of track `i` for media time `media_secs` (RFC 3550 §6.4.1: NTP and RTP
/// time of the same instant).
fn sender_info(s: &ShardSession, i: usize, media_secs: f64) -> SenderInfo {
    let t = &s.tracks[i];
    SenderInfo {
        ssrc: t.setup.ssrc,
        ntp: NtpTime::now(),
        rtp_timestamp: t.rtp_timestamp_at_secs(media_secs),
        packet_count: t.packets_sent,
        octet_count: t.octets_sent,
    }
}

/// RTCP SR (+SDES) for track `i`.
fn send_sender_report(
    s: &mut ShardSession,
    i: usize,
    now: Instant,
    rtcp: &UdpSocket,
    buf: &mut [u8; MAX_RTCP_COMPOUND],
) {
    let info = sender_info(s, i, s.media_secs_at(now));
    let n = write_sender_report(buf, &info, &s.cname);
    deliver_rtcp(s, i, &buf[..n], rtcp);
    s.tracks[i].last_sender_report = Some(now);
}

/// RTCP SR + SDES + BYE on every track (RFC 3550 §6.6), at teardown and end of stream.
fn send_byes(s: &mut ShardSession, rtcp: &UdpSocket, buf: &mut [u8; MAX_RTCP_COMPOUND]) {
    let media_secs = s.media_secs_at(Instant::now());
    for i in 0..s.tracks.len() {
        let n = write_bye(buf, &sender_info(s, i, media_secs), &s.cname);
        deliver_rtcp(s, i, &buf[..n], rtcp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::library::SAMPLE_MP4;
    use crate::media::MediaFile;
    use crate::shard::send::{GsoMode, IoBackend, SendConfig};
    use crate::shard::{Activity, SessionSetup, TrackDest, TrackSetup};
    use crate::sys::count_alloc::allocations_on_this_thread;

    /// Steady-state streaming allocates nothing per packet: a worker plays the sample to a
    /// local UDP socket on a simulated clock, and after a warm-up second the thread's
    /// allocation count must not move while about a thousand packets go out — for every backend,
    /// with GSO on and off. Fails if any per-packet or per-sample path allocates.
    #[test]
    fn steady_state_send_path_allocates_nothing() {
        let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
        for io in [IoBackend::Sendmmsg, IoBackend::Sendto, IoBackend::Uring] {
            for gso in [GsoMode::On, GsoMode::Off] {
                let send = SendConfig { io: Some(io), gso }.resolve();
                let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
                let dest = rx.local_addr().unwrap();
                let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let (_tx, commands) = crossbeam_channel::bounded(1);
                let counters = Arc::new(ShardCounters::default());
                let mut w = Worker::new(0, rtp, rtcp, commands, counters.clone(), send);
                let tracks = (0..2)
                    .map(|i| TrackSetup {
                        track_index: i,
                        payload_type: 96 + i as u8,
                        ssrc: 1 + i as u32,
                        initial_seq: 0,
                        initial_rtptime: 0,
                        dest: TrackDest::Udp {
                            rtp: dest,
                            rtcp: dest,
                        },
                    })
                    .collect();
                let setup = SessionSetup {
                    id: 7,
                    media: media.clone(),
                    tracks,
                    sink: None,
                    activity: Arc::new(Activity::default()),
                    payload_budget_bytes: 1200,
                    cname: "test".into(),
                    live: None,
                };
                let t0 = Instant::now();
                assert!(w.play(7, Some(Box::new(setup)), None, t0).is_some());
                w.start(7, t0);
                let tick = Duration::from_millis(5);
                let mut now = t0;
                // Warm-up: the first second fills every reusable buffer once.
                while now < t0 + Duration::from_secs(1) {
                    now += tick;
                    w.send_due(now);
                }
                let packets_before = counters.packets.load(Ordering::Relaxed);
                let allocs_before = allocations_on_this_thread();
                while now < t0 + Duration::from_secs(9) {
                    now += tick;
                    w.send_due(now);
                }
                let allocs = allocations_on_this_thread() - allocs_before;
                let packets = counters.packets.load(Ordering::Relaxed) - packets_before;
                assert!(packets > 800, "{io:?}/{gso:?}: only {packets} packets sent");
                assert_eq!(
                    allocs, 0,
                    "{io:?}/{gso:?}: {allocs} allocations over {packets} packets"
                );
            }
        }
    }
}
