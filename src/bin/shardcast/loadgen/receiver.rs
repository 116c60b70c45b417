//! The receiver thread: owns every playing session's sockets, polls them with epoll, drains
//! UDP with `recvmmsg` (64 per call, kernel timestamps; a GSO train taken whole with
//! `UDP_GRO` is cut back into its packets here) and TCP as interleaved `$` frames
//! (RFC 2326 §10.12), feeds the per-track statistics, and keeps sessions alive: a keepalive
//! request every 20 s, a PLAY from the start when a VOD clip ends, and TEARDOWN at the end.
//! In churn mode the driver also ends single sessions while the rest play on: with a
//! TEARDOWN (sockets closed on its answer or after a grace period), or abandoned (sockets
//! closed without a word, left for the server's session timeout).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use hdrhistogram::Histogram;

use super::host::Epoll;
use super::latency::{LatencyFigures, LatencyProbe, SendTimes};
use super::session::PlayingSession;
use super::stats::{new_histogram, MediaKind, TrackStats};
use shardcast::net::{realtime_ns, RecvBatch, GRO_SLOT_BYTES};
use shardcast::rtsp::response::{interleaved_frame, parse_response};
use shardcast::wire::rtp::parse_rtp_header;

/// Datagrams per `recvmmsg` call.
pub(crate) const RECV_BATCH: usize = 64;
/// Keepalive interval of a fixed-load run (the server's default session timeout is 60 s).
pub(crate) const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);
/// Receiver reports per UDP track, like players send them (RFC 3550 §6.2: 5 s minimum).
const REPORT_EVERY: Duration = Duration::from_secs(5);
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

/// How the load generator's viewers receive, which decides what the loopback receive path
/// charges to the *server's* core (on loopback the kernel runs a datagram's receive, and the
/// wake-up of its reader, inside the sender's `sendmsg`). A remote viewer costs the server
/// neither; the defaults come closest to that, and `off`/`sleep` show the full loopback cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ReceiveTuning {
    /// Viewers' UDP sockets take a GSO train whole (`UDP_GRO`): the receive path runs once
    /// per train instead of once per packet.
    pub(crate) gro: bool,
    /// The receiver thread polls without sleeping (yielding its core when idle) and sweeps
    /// the viewers' UDP sockets with `recvmmsg` instead of registering them with epoll, so
    /// a server send finds no waiter to wake or epoll entry to mark ready.
    pub(crate) busy_poll: bool,
}

impl Default for ReceiveTuning {
    fn default() -> Self {
        Self {
            gro: true,
            busy_poll: true,
        }
    }
}

/// Messages from the driver.
#[derive(Debug)]
pub(crate) enum ReceiverMsg {
    /// A session has started playing.
    Add(Box<PlayingSession>),
    /// End one session (by viewer number) while the others play on.
    End {
        /// The viewer number given to `open_session`.
        index: usize,
        /// Close its sockets without a TEARDOWN (the server must expire it).
        abandon: bool,
    },
    /// Every session has started: the latency probe counts afresh, from packets received
    /// at this `CLOCK_REALTIME` ns on (the steady phase).
    Steady(u64),
    /// Freeze statistics, TEARDOWN everything and return.
    Stop,
}

/// Live totals the progress display reads.
#[derive(Debug, Default)]
pub(crate) struct LiveCounters {
    pub(crate) packets: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Sessions ended by [`ReceiverMsg::End`] with a TEARDOWN.
    pub(crate) ended_teardown: AtomicU64,
    /// Sessions ended by [`ReceiverMsg::End`] without one.
    pub(crate) ended_abandoned: AtomicU64,
    /// Churn TEARDOWNs answered 200.
    pub(crate) churn_teardowns_answered: AtomicU64,
    /// Packets missing by sequence number in sessions already ended.
    pub(crate) lost_ended: AtomicU64,
    /// Packets expected in sessions already ended.
    pub(crate) expected_ended: AtomicU64,
}

/// What the thread hands back.
pub(crate) struct ReceiverOutput {
    /// Every session that reached PLAY, with its final statistics.
    pub(crate) sessions: Vec<FinishedSession>,
    /// Jitter estimate per packet, µs, by kind (video, audio).
    pub(crate) jitter_video_us: Histogram<u64>,
    /// Jitter estimate per packet, µs, audio tracks.
    pub(crate) jitter_audio_us: Histogram<u64>,
    /// `recvmmsg` calls that returned data.
    pub(crate) recv_calls: u64,
    /// TEARDOWNs answered 200 before the grace period ran out.
    pub(crate) teardowns_answered: u64,
    /// Non-200 answers to keepalives/loop PLAYs, and write errors.
    pub(crate) rtsp_errors: u64,
    /// PLAYs sent to loop a clip.
    pub(crate) loops: u64,
    /// The server's added latency, when the run measured it (the bench's RTSP publisher).
    pub(crate) latency: Option<LatencyFigures>,
}

/// One session's final statistics.
pub(crate) struct FinishedSession {
    pub(crate) index: usize,
    pub(crate) play_sent_ns: u64,
    pub(crate) tracks: Vec<TrackStats>,
}

struct Live {
    s: PlayingSession,
    rtsp_buf: Vec<u8>,
    next_keepalive: Instant,
    /// Next receiver report (UDP sessions).
    next_report: Instant,
    next_loop: Option<Instant>,
    pending: u32,
    closed: bool,
    /// A churn TEARDOWN was sent; close the sockets on its answer or at this instant.
    closing_until: Option<Instant>,
    /// CSeq of the TEARDOWN sent, to tell its answer from a keepalive's.
    teardown_cseq: Option<u32>,
    /// The TEARDOWN was answered 200.
    teardown_answered: bool,
}

struct State {
    /// Slot per session ever added; `None` once a churned session has been closed.
    sessions: Vec<Option<Live>>,
    /// Viewer number → slot, for [`ReceiverMsg::End`].
    slot_of: std::collections::HashMap<usize, usize>,
    /// Statistics of sessions closed before the end of the run.
    finished: Vec<FinishedSession>,
    jitter_video_us: Histogram<u64>,
    jitter_audio_us: Histogram<u64>,
    counters: Arc<LiveCounters>,
    rtsp_errors: u64,
    counting: bool,
    /// Pairs viewer packets with the publisher's send times (published runs).
    latency: Option<LatencyProbe>,
    /// Slots of the sessions with RTCP sockets (the latency probe's clock viewer).
    rtcp_slots: Vec<usize>,
}

impl State {
    fn on_rtp(&mut self, slot: usize, track: usize, pkt: &[u8], arrival_ns: u64) {
        if !self.counting {
            return;
        }
        let Some(hdr) = parse_rtp_header(pkt) else {
            return;
        };
        // RFC 5761 §4: payload types 72–76 are RTCP (an SR on a reused port).
        if (72..=76).contains(&hdr.payload_type) {
            return;
        }
        let Some(t) = self.sessions[slot]
            .as_mut()
            .and_then(|l| l.s.tracks.get_mut(track))
        else {
            return;
        };
        if let Some(j) = t.observe(pkt, &hdr, arrival_ns) {
            self.counters.packets.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(pkt.len() as u64, Ordering::Relaxed);
            let h = match t.kind {
                MediaKind::Video => &mut self.jitter_video_us,
                _ => &mut self.jitter_audio_us,
            };
            h.saturating_record(j.max(1));
            let play_ns = self.sessions[slot].as_ref().map_or(0, |l| l.s.play_sent_ns);
            if let Some(p) = self.latency.as_mut() {
                p.on_packet(track, hdr.timestamp, arrival_ns, play_ns);
            }
        }
    }

    /// An RTCP compound from the server for `slot`'s `track`: its sender reports set the
    /// latency probe's clock offset (RFC 3550 §6.4.1). Only the clock viewer's are read.
    fn on_rtcp(&mut self, slot: usize, track: usize, buf: &[u8]) {
        let reads = self.sessions[slot].as_ref().is_some_and(|l| l.s.reads_rtcp);
        let Some(p) = self.latency.as_mut().filter(|_| reads) else {
            return;
        };
        let Ok(packets) = shardcast::wire::rtcp::parse_compound(buf) else {
            return;
        };
        for packet in packets {
            if let shardcast::wire::rtcp::RtcpPacket::SenderReport {
                ntp, rtp_timestamp, ..
            } = packet
            {
                p.on_sender_report(track, ntp, rtp_timestamp.0);
            }
        }
    }

    /// Reads the RTCP sockets of `slot` (the clock viewer's, over UDP).
    fn drain_rtcp(&mut self, slot: usize, buf: &mut [u8]) {
        let tracks = self.sessions[slot].as_ref().map_or(0, |l| l.s.rtcp.len());
        for track in 0..tracks {
            loop {
                let got = self.sessions[slot]
                    .as_ref()
                    .and_then(|l| l.s.rtcp.get(track))
                    .map(|sock| sock.recv(buf));
                match got {
                    Some(Ok(n)) => self.on_rtcp(slot, track, &buf[..n]),
                    _ => break,
                }
            }
        }
    }

    /// Reads the RTSP connection: interleaved frames and responses. Returns how many
    /// TEARDOWNs were answered 200 (matched by CSeq).
    /// Reads every datagram queued on `slot`'s UDP socket for `track`; returns the
    /// `recvmmsg` calls that returned data.
    fn drain_udp(&mut self, batch: &mut RecvBatch, slot: usize, track: usize) -> u64 {
        let Some(fd) = self.sessions[slot]
            .as_ref()
            .and_then(|l| l.s.udp.get(track))
            .map(|u| u.as_raw_fd())
        else {
            return 0;
        };
        let mut calls = 0;
        loop {
            let n = batch.recv(fd).unwrap_or_default();
            if n == 0 {
                break;
            }
            calls += 1;
            for i in 0..n {
                let d = batch.datagram(i);
                for pkt in d.segments() {
                    self.on_rtp(slot, track, pkt, d.arrival_ns);
                }
            }
            if n < RECV_BATCH {
                break;
            }
        }
        calls
    }

    fn on_tcp(&mut self, slot: usize, scratch: &mut [u8]) -> usize {
        let mut answered_200 = 0;
        loop {
            let Some(live) = self.sessions[slot].as_mut() else {
                return answered_200;
            };
            if live.closed {
                return answered_200;
            }
            match live.s.rtsp.read(scratch) {
                Ok(0) => {
                    live.closed = true;
                    break;
                }
                Ok(n) => live.rtsp_buf.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    live.closed = true;
                    break;
                }
            }
        }
        let arrival_ns = realtime_ns();
        let Some(live) = self.sessions[slot].as_mut() else {
            return answered_200;
        };
        let mut buf = std::mem::take(&mut live.rtsp_buf);
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            if rest[0] == b'$' {
                let Some((channel, payload)) = interleaved_frame(rest) else {
                    break;
                };
                let len = payload.len();
                if channel.is_multiple_of(2) {
                    self.on_rtp(slot, usize::from(channel / 2), payload, arrival_ns);
                } else if self.latency.is_some() {
                    self.on_rtcp(slot, usize::from(channel / 2), payload);
                }
                pos += 4 + len;
            } else if rest.starts_with(b"RTSP/") {
                match parse_response(rest) {
                    Ok(Some((resp, used))) => {
                        let cseq = resp.header("CSeq").and_then(|c| c.trim().parse().ok());
                        if let Some(live) = self.sessions[slot].as_mut() {
                            live.pending = live.pending.saturating_sub(1);
                            if resp.status == 200 && cseq.is_some() && cseq == live.teardown_cseq {
                                live.teardown_answered = true;
                                answered_200 += 1;
                            }
                        }
                        if resp.status != 200 {
                            self.rtsp_errors += 1;
                        }
                        pos += used;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // Not a response after all: count it and resynchronize.
                        self.rtsp_errors += 1;
                        pos += 1;
                    }
                }
            } else if rest.len() < 5 && b"RTSP/".starts_with(rest) {
                break;
            } else {
                pos += 1; // resynchronize on garbage
            }
        }
        buf.drain(..pos);
        if let Some(live) = self.sessions[slot].as_mut() {
            live.rtsp_buf = buf;
        }
        answered_200
    }

    fn send_request(&mut self, slot: usize, method: &str, extra: &str) {
        let Some(live) = self.sessions[slot].as_mut() else {
            return;
        };
        if live.closed {
            return;
        }
        live.s.cseq += 1;
        let req = format!(
            "{method} {} RTSP/1.0\r\nCSeq: {}\r\nSession: {}\r\n{extra}User-Agent: shardcast-bench\r\n\r\n",
            live.s.url, live.s.cseq, live.s.session_id
        );
        // A request is far smaller than a socket buffer; a short write means trouble.
        match live.s.rtsp.write(req.as_bytes()) {
            Ok(n) if n == req.len() => {
                live.pending += 1;
                if method == "TEARDOWN" {
                    live.teardown_cseq = Some(live.s.cseq);
                }
            }
            _ => self.rtsp_errors += 1,
        }
    }

    /// Closes a session's sockets (dropping them also removes them from the epoll set) and
    /// keeps its statistics.
    fn retire(&mut self, slot: usize) {
        let Some(live) = self.sessions[slot].take() else {
            return;
        };
        self.slot_of.remove(&live.s.index);
        let (lost, expected) = live
            .s
            .tracks
            .iter()
            .fold((0, 0), |(l, e), t| (l + t.seq.lost(), e + t.seq.expected()));
        self.counters.lost_ended.fetch_add(lost, Ordering::Relaxed);
        self.counters
            .expected_ended
            .fetch_add(expected, Ordering::Relaxed);
        self.finished.push(FinishedSession {
            index: live.s.index,
            play_sent_ns: live.s.play_sent_ns,
            tracks: live.s.tracks,
        });
    }

    /// Starts ending one session: a TEARDOWN (closed later), or abandoned at once.
    fn end(&mut self, index: usize, abandon: bool, now: Instant) {
        let Some(&slot) = self.slot_of.get(&index) else {
            return;
        };
        if abandon {
            self.counters
                .ended_abandoned
                .fetch_add(1, Ordering::Relaxed);
            self.retire(slot);
            return;
        }
        self.counters.ended_teardown.fetch_add(1, Ordering::Relaxed);
        if let Some(live) = self.sessions[slot].as_mut() {
            live.pending = 0;
            live.closing_until = Some(now + TEARDOWN_GRACE);
            live.next_loop = None;
        }
        self.send_request(slot, "TEARDOWN", "");
    }
}

/// Token layout: slot << 8 | (0 = RTSP connection, 1 + i = UDP socket of track i).
/// One RR per UDP track, from the track's own socket (the address the server knows it by)
/// to the server's RTCP port. Best effort: a full socket buffer just skips a report.
fn send_receiver_reports(s: &mut PlayingSession) {
    let mut buf = [0u8; shardcast::wire::rtcp::MAX_RTCP_COMPOUND];
    for (i, sock) in s.udp.iter().enumerate() {
        let (Some(Some(dest)), Some(t)) = (s.server_rtcp.get(i), s.tracks.get_mut(i)) else {
            continue;
        };
        let Some(block) = t.report_block() else {
            continue;
        };
        let reporter = shardcast::wire::rtp::Ssrc(0x5348_0000 | (s.index as u32 & 0xffff));
        let n = shardcast::wire::rtcp::write_receiver_report(
            &mut buf,
            reporter,
            &[block],
            Some("bench"),
        );
        let _ = sock.send_to(&buf[..n], dest);
    }
}

fn token(slot: usize, sub: usize) -> u64 {
    ((slot as u64) << 8) | sub as u64
}

/// Starts the receiver thread; it runs until it gets [`ReceiverMsg::Stop`] or the deadline.
pub(crate) fn spawn_receiver(
    rx: Receiver<ReceiverMsg>,
    counters: Arc<LiveCounters>,
    deadline: Instant,
    keepalive_every: Duration,
    busy_poll: bool,
    latency: Option<Arc<SendTimes>>,
) -> std::io::Result<JoinHandle<ReceiverOutput>> {
    let epoll = Epoll::new()?;
    std::thread::Builder::new()
        .name("bench-recv".into())
        .spawn(move || {
            let mut st = State {
                sessions: Vec::new(),
                slot_of: std::collections::HashMap::new(),
                finished: Vec::new(),
                jitter_video_us: new_histogram(),
                jitter_audio_us: new_histogram(),
                counters,
                rtsp_errors: 0,
                counting: true,
                latency: latency.map(LatencyProbe::new),
                rtcp_slots: Vec::new(),
            };
            let mut rtcp_buf = vec![0u8; 2048];
            // Slots big enough for a whole GSO train (sockets with UDP_GRO).
            let mut batch = RecvBatch::with_slot_bytes(RECV_BATCH, GRO_SLOT_BYTES);
            let mut scratch = vec![0u8; 64 * 1024];
            let mut ready: Vec<u64> = Vec::with_capacity(256);
            let mut recv_calls = 0u64;
            let mut loops = 0u64;
            let mut next_timer_scan = Instant::now();
            let mut stopping_at: Option<Instant> = None;
            let mut teardowns_answered = 0u64;
            loop {
                let now = Instant::now();
                if stopping_at.is_none() {
                    loop {
                        match rx.try_recv() {
                            Ok(ReceiverMsg::Add(mut s)) => {
                                let slot = st.sessions.len();
                                let mut ok = epoll.add(&s.rtsp, token(slot, 0)).is_ok();
                                if !busy_poll {
                                    for (i, u) in s.udp.iter().enumerate() {
                                        ok &= epoll.add(u, token(slot, 1 + i)).is_ok();
                                    }
                                }
                                if !ok {
                                    st.rtsp_errors += 1;
                                }
                                let next_loop = s.clip.map(|c| {
                                    let since_play = Duration::from_nanos(
                                        realtime_ns().saturating_sub(s.play_sent_ns),
                                    );
                                    now + c.saturating_sub(since_play)
                                });
                                let rtsp_buf = std::mem::take(&mut s.leftover);
                                let has_leftover = !rtsp_buf.is_empty();
                                st.slot_of.insert(s.index, slot);
                                if !s.rtcp.is_empty() {
                                    st.rtcp_slots.push(slot);
                                }
                                st.sessions.push(Some(Live {
                                    s: *s,
                                    rtsp_buf,
                                    next_keepalive: now + keepalive_every,
                                    // Spread the viewers' reports over the interval.
                                    next_report: now
                                        + Duration::from_millis(1000 + (slot as u64 * 997) % 4000),
                                    next_loop,
                                    pending: 0,
                                    closed: false,
                                    closing_until: None,
                                    teardown_cseq: None,
                                    teardown_answered: false,
                                }));
                                if has_leftover {
                                    st.on_tcp(slot, &mut scratch);
                                }
                            }
                            Ok(ReceiverMsg::End { index, abandon }) => st.end(index, abandon, now),
                            Ok(ReceiverMsg::Steady(from_ns)) => {
                                if let Some(p) = st.latency.as_mut() {
                                    p.count_from(from_ns);
                                }
                            }
                            Ok(ReceiverMsg::Stop) | Err(TryRecvError::Disconnected) => {
                                stopping_at = Some(now);
                                break;
                            }
                            Err(TryRecvError::Empty) => break,
                        }
                    }
                    if now >= deadline && stopping_at.is_none() {
                        stopping_at = Some(now);
                    }
                    if stopping_at.is_some() {
                        // Freeze the statistics, then say goodbye.
                        st.counting = false;
                        for slot in 0..st.sessions.len() {
                            // A session a churn TEARDOWN is closing has had its goodbye.
                            if let Some(live) = st.sessions[slot].as_mut() {
                                if live.closing_until.is_none() {
                                    live.pending = 0;
                                    st.send_request(slot, "TEARDOWN", "");
                                }
                            }
                        }
                    }
                }
                if let Some(at) = stopping_at {
                    let waiting = st
                        .sessions
                        .iter()
                        .flatten()
                        .any(|l| l.pending > 0 && !l.closed);
                    if !waiting || now.duration_since(at) > TEARDOWN_GRACE {
                        break;
                    }
                }
                // The clock viewer's sender reports first: they pair the packets that follow.
                for k in 0..st.rtcp_slots.len() {
                    st.drain_rtcp(st.rtcp_slots[k], &mut rtcp_buf);
                }
                ready.clear();
                let wait = if busy_poll {
                    Duration::ZERO
                } else {
                    Duration::from_millis(5)
                };
                if epoll.wait(wait, &mut ready).is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if busy_poll && ready.is_empty() {
                    // Let the harness's other threads on this core run.
                    std::thread::yield_now();
                }
                for &tok in &ready {
                    let slot = (tok >> 8) as usize;
                    let sub = (tok & 0xff) as usize;
                    if sub == 0 {
                        let ok = st.on_tcp(slot, &mut scratch);
                        if stopping_at.is_some() {
                            teardowns_answered += ok as u64;
                        } else if let Some(live) = st.sessions[slot].as_ref() {
                            if live.closing_until.is_some()
                                && (live.teardown_answered || live.closed)
                            {
                                st.counters
                                    .churn_teardowns_answered
                                    .fetch_add(ok as u64, Ordering::Relaxed);
                                st.retire(slot);
                            }
                        }
                        continue;
                    }
                    recv_calls += st.drain_udp(&mut batch, slot, sub - 1);
                }
                if busy_poll {
                    // The viewers' UDP sockets are not in the epoll set: swept here instead,
                    // so a server send finds no waiter to wake on its own core (loopback).
                    for slot in 0..st.sessions.len() {
                        let tracks = st.sessions[slot].as_ref().map_or(0, |l| l.s.udp.len());
                        for track in 0..tracks {
                            recv_calls += st.drain_udp(&mut batch, slot, track);
                        }
                    }
                }
                if stopping_at.is_none() && now >= next_timer_scan {
                    next_timer_scan = now + Duration::from_millis(20);
                    for slot in 0..st.sessions.len() {
                        let Some(live) = st.sessions[slot].as_mut() else {
                            continue;
                        };
                        if live.closing_until.is_some_and(|t| now >= t) {
                            st.retire(slot);
                        } else if live.closing_until.is_some() {
                            // Waiting for the TEARDOWN answer: no keepalive, no loop.
                        } else if live.next_loop.is_some_and(|t| now >= t) {
                            let clip = live.s.clip.unwrap_or(Duration::MAX);
                            live.next_loop = Some(now + clip);
                            st.send_request(slot, "PLAY", "Range: npt=0-\r\n");
                            loops += 1;
                        } else if now >= live.next_keepalive {
                            live.next_keepalive = now + keepalive_every;
                            st.send_request(slot, "GET_PARAMETER", "");
                        }
                        if let Some(live) = st.sessions[slot].as_mut() {
                            if now >= live.next_report && live.closing_until.is_none() {
                                live.next_report = now + REPORT_EVERY;
                                send_receiver_reports(&mut live.s);
                            }
                        }
                    }
                }
            }
            let mut sessions = std::mem::take(&mut st.finished);
            sessions.extend(st.sessions.into_iter().flatten().map(|l| FinishedSession {
                index: l.s.index,
                play_sent_ns: l.s.play_sent_ns,
                tracks: l.s.tracks,
            }));
            ReceiverOutput {
                sessions,
                jitter_video_us: st.jitter_video_us,
                jitter_audio_us: st.jitter_audio_us,
                recv_calls,
                teardowns_answered,
                rtsp_errors: st.rtsp_errors,
                loops,
                latency: st.latency.as_ref().map(LatencyProbe::figures),
            }
        })
}
