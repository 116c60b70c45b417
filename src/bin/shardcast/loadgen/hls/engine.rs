//! The sockets of the HLS viewers: one thread, one `epoll(7)` set (`shardcast::poll::Epoll`),
//! one non-blocking keep-alive connection per viewer, one request at a time on it. The
//! viewers' decisions are [`super::viewer`]'s, the response framing [`super::http`]'s; this
//! file connects, writes request heads, reads into one shared buffer, and keeps the viewers'
//! timers. Nothing here allocates per response but a viewer's request head and, for
//! playlists, their text (both buffers are reused).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use shardcast::poll::{Epoll, Interest, Ready};

use super::http::{write_get, Progress, ResponseFramer, Url};
use super::viewer::{Next, Viewer};

/// Viewers that may be starting (no media yet) at once, like the RTSP handshakes in flight.
pub(crate) const STARTS_IN_FLIGHT: u32 = 64;
/// The shared read buffer.
const READ_CHUNK: usize = 256 * 1024;
/// Longest epoll wait, so phases and ramps are checked often enough.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// What a run does.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// Entry URLs; viewers spread over them round-robin.
    pub(crate) entries: Vec<Url>,
    /// Viewers.
    pub(crate) viewers: u32,
    /// Starts per second; `None`: as fast as [`STARTS_IN_FLIGHT`] allows.
    pub(crate) ramp_per_sec: Option<f64>,
    /// Steady phase length (after every viewer has its first media, or the start budget).
    pub(crate) duration: Duration,
    /// Longest start phase.
    pub(crate) start_budget: Duration,
    /// Viewers ignore LL-HLS parts (follow live playlists by segments).
    pub(crate) segments_only: bool,
}

/// The phase boundaries the caller samples the server at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Every viewer plays (or the start budget ran out).
    SteadyStart,
    /// The steady phase is over; the run ends.
    SteadyEnd,
}

/// What a run leaves.
#[derive(Debug)]
pub(crate) struct EngineOutcome {
    /// Every started viewer.
    pub(crate) viewers: Vec<Viewer>,
    /// Seconds from the first start to the steady phase.
    pub(crate) start_secs: f64,
    /// Seconds of the steady phase.
    pub(crate) steady_secs: f64,
    /// Bytes read from the sockets (heads and bodies), whole run.
    pub(crate) wire_bytes: u64,
    /// Of which during the steady phase.
    pub(crate) steady_wire_bytes: u64,
    /// Responses completed during the steady phase.
    pub(crate) steady_responses: u64,
    /// Connections opened.
    pub(crate) connections: u64,
    /// When the run ended (the viewers' playback is judged up to here).
    pub(crate) end: Instant,
}

struct Slot {
    viewer: Viewer,
    sock: Option<TcpStream>,
    connecting: bool,
    /// Registered for writability too.
    write_interest: bool,
    out: Vec<u8>,
    out_at: usize,
    framer: ResponseFramer,
    awaiting: bool,
    timer_gen: u64,
    done: bool,
}

struct Engine {
    epoll: Epoll,
    slots: Vec<Slot>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    addrs: HashMap<String, SocketAddr>,
    wire_bytes: u64,
    responses: u64,
    connections: u64,
    /// Viewers that got media.
    with_media: u32,
    /// Viewers that gave up before any media (so never count in `with_media`).
    stopped_before_media: u32,
}

/// Runs the viewers; `on_phase` is called at the steady phase's start and end (where the
/// caller samples the server).
pub(crate) fn run(
    cfg: &EngineConfig,
    mut on_phase: impl FnMut(Phase),
) -> io::Result<EngineOutcome> {
    let mut e = Engine {
        epoll: Epoll::new()?,
        slots: Vec::with_capacity(cfg.viewers as usize),
        timers: BinaryHeap::new(),
        addrs: HashMap::new(),
        wire_bytes: 0,
        responses: 0,
        connections: 0,
        with_media: 0,
        stopped_before_media: 0,
    };
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut ready: Vec<Ready> = Vec::with_capacity(shardcast::poll::EPOLL_MAX_EVENTS);
    let t0 = Instant::now();
    let start_deadline = t0 + cfg.start_budget;
    let mut steady: Option<(Instant, u64, u64)> = None;
    let (start_secs, steady_secs, steady_wire_bytes, steady_responses, end) = loop {
        let now = Instant::now();
        match steady {
            None => {
                let all_in = e.slots.len() as u32 == cfg.viewers
                    && e.with_media + e.stopped_before_media >= cfg.viewers;
                if all_in || now >= start_deadline {
                    on_phase(Phase::SteadyStart);
                    steady = Some((Instant::now(), e.wire_bytes, e.responses));
                }
            }
            Some((from, bytes, responses)) if now >= from + cfg.duration => {
                on_phase(Phase::SteadyEnd);
                let end = Instant::now();
                break (
                    (from - t0).as_secs_f64(),
                    (end - from).as_secs_f64(),
                    e.wire_bytes - bytes,
                    e.responses - responses,
                    end,
                );
            }
            Some(_) => {}
        }
        // Starts: bounded in flight, and by the ramp.
        let mut next_start: Option<Instant> = None;
        while (e.slots.len() as u32) < cfg.viewers {
            let starting =
                (e.slots.len() as u32).saturating_sub(e.with_media + e.stopped_before_media);
            if starting >= STARTS_IN_FLIGHT {
                break;
            }
            if let Some(rate) = cfg.ramp_per_sec {
                let due = t0 + Duration::from_secs_f64(e.slots.len() as f64 / rate);
                if due > now {
                    next_start = Some(due);
                    break;
                }
            }
            let i = e.slots.len();
            let entry = cfg.entries[i % cfg.entries.len()].clone();
            e.slots.push(Slot {
                viewer: Viewer::new(entry).segments_only(cfg.segments_only),
                sock: None,
                connecting: false,
                write_interest: false,
                out: Vec::with_capacity(256),
                out_at: 0,
                framer: ResponseFramer::default(),
                awaiting: false,
                timer_gen: 0,
                done: false,
            });
            let next = e.slots[i].viewer.begin(now);
            e.apply(i, next, now);
        }
        // Timers that are due.
        while let Some(&Reverse((at, i, generation))) = e.timers.peek() {
            if at > now {
                break;
            }
            e.timers.pop();
            if e.slots[i].timer_gen == generation && !e.slots[i].done {
                let next = e.slots[i].viewer.wake(now);
                e.apply(i, next, now);
            }
        }
        let mut wake = now + MAX_WAIT;
        if let Some(Reverse((at, _, _))) = e.timers.peek() {
            wake = wake.min(*at);
        }
        if let Some(s) = next_start {
            wake = wake.min(s);
        }
        if let Some((from, _, _)) = steady {
            wake = wake.min(from + cfg.duration);
        }
        ready.clear();
        e.epoll
            .wait_events(wake.saturating_duration_since(Instant::now()), &mut ready)?;
        let now = Instant::now();
        for r in &ready {
            e.on_ready(r.token as usize, *r, now, &mut scratch);
        }
    };
    Ok(EngineOutcome {
        viewers: e.slots.into_iter().map(|s| s.viewer).collect(),
        start_secs,
        steady_secs,
        wire_bytes: e.wire_bytes,
        steady_wire_bytes,
        steady_responses,
        connections: e.connections,
        end,
    })
}

impl Engine {
    fn apply(&mut self, i: usize, next: Next, now: Instant) {
        match next {
            Next::Get(url, fetch) => {
                if self.slots[i].sock.is_none() {
                    if let Err(err) = self.connect(i, &url) {
                        return self.transport_error(
                            i,
                            &format!("connect {}: {err}", url.authority),
                            now,
                        );
                    }
                }
                let s = &mut self.slots[i];
                write_get(&url, &mut s.out);
                s.out_at = 0;
                s.framer.start(fetch.keeps_body());
                s.awaiting = true;
                if !s.connecting {
                    self.flush(i, now);
                }
            }
            Next::WakeAt(at) => {
                let s = &mut self.slots[i];
                s.timer_gen += 1;
                self.timers.push(Reverse((at, i, s.timer_gen)));
            }
            Next::Stop => {
                let s = &mut self.slots[i];
                if !s.done {
                    s.done = true;
                    s.sock = None;
                    if s.viewer.stats().ttfs.is_none() {
                        self.stopped_before_media += 1;
                    }
                }
            }
        }
    }

    fn connect(&mut self, i: usize, url: &Url) -> io::Result<()> {
        let addr = match self.addrs.get(&url.authority) {
            Some(a) => *a,
            None => {
                let a = url.authority.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "resolves to nothing")
                })?;
                self.addrs.insert(url.authority.clone(), a);
                a
            }
        };
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let stream: TcpStream = sock.into();
        self.epoll
            .add_with(&stream, i as u64, Interest::ReadWrite)?;
        self.connections += 1;
        let s = &mut self.slots[i];
        s.sock = Some(stream);
        s.connecting = true;
        s.write_interest = true;
        Ok(())
    }

    /// Writes what is left of the request head; watches writability only while some is.
    fn flush(&mut self, i: usize, now: Instant) {
        let s = &mut self.slots[i];
        let Some(sock) = s.sock.as_mut() else {
            return;
        };
        while s.out_at < s.out.len() {
            match sock.write(&s.out[s.out_at..]) {
                Ok(0) => return self.transport_error(i, "write returned 0", now),
                Ok(n) => s.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.transport_error(i, &format!("write: {e}"), now),
            }
        }
        let want_write = s.out_at < s.out.len();
        if want_write != s.write_interest {
            let interest = if want_write {
                Interest::ReadWrite
            } else {
                Interest::Read
            };
            if self.epoll.modify(&*sock, i as u64, interest).is_ok() {
                s.write_interest = want_write;
            }
        }
    }

    fn on_ready(&mut self, i: usize, r: Ready, now: Instant, scratch: &mut [u8]) {
        if i >= self.slots.len() || self.slots[i].sock.is_none() {
            return;
        }
        if self.slots[i].connecting {
            if !(r.writable || r.closed) {
                return;
            }
            let s = &mut self.slots[i];
            let failed = match s.sock.as_ref().map(TcpStream::take_error) {
                Some(Ok(None)) => None,
                Some(Ok(Some(e))) | Some(Err(e)) => Some(e),
                None => return,
            };
            if let Some(e) = failed {
                return self.transport_error(i, &format!("connect: {e}"), now);
            }
            s.connecting = false;
            self.flush(i, now);
        } else if r.writable {
            self.flush(i, now);
        }
        if r.readable || r.closed {
            self.read(i, now, scratch);
        }
    }

    fn read(&mut self, i: usize, now: Instant, scratch: &mut [u8]) {
        loop {
            let s = &mut self.slots[i];
            let Some(sock) = s.sock.as_mut() else {
                return;
            };
            let n = match sock.read(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.transport_error(i, &format!("read: {e}"), now),
            };
            self.wire_bytes += n as u64;
            if !s.awaiting {
                // An idle keep-alive connection the server closed (its idle timeout): the
                // next request opens another. Bytes nobody asked for are an error.
                s.sock = None;
                if n > 0 {
                    return self.transport_error(i, "bytes on an idle connection", now);
                }
                return;
            }
            let progress = if n == 0 {
                s.framer.eof()
            } else {
                s.framer.feed(&scratch[..n])
            };
            match progress {
                Ok(Progress::More) if n == 0 => {
                    return self.transport_error(i, "closed mid-response", now)
                }
                Ok(Progress::More) => {}
                Ok(Progress::Done(head, len)) => {
                    s.awaiting = false;
                    if !head.keep_alive || n == 0 {
                        s.sock = None;
                    }
                    self.responses += 1;
                    let had_media = s.viewer.stats().ttfs.is_some();
                    let next = s.viewer.on_response(now, head.status, s.framer.body(), len);
                    if !had_media && s.viewer.stats().ttfs.is_some() {
                        self.with_media += 1;
                    }
                    self.apply(i, next, now);
                    return;
                }
                Err(e) => return self.transport_error(i, &e.to_string(), now),
            }
        }
    }

    fn transport_error(&mut self, i: usize, why: &str, now: Instant) {
        let s = &mut self.slots[i];
        s.sock = None;
        s.connecting = false;
        s.awaiting = false;
        let next = s.viewer.on_transport_error(now, why);
        self.apply(i, next, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A tiny scripted server: answers each request on a connection with the next of
    /// `replies` (raw bytes), then closes when `close_after` replies were sent.
    fn serve(
        replies: Vec<Vec<u8>>,
        close_after: usize,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut replies = replies.into_iter();
            'conns: while let Ok((mut c, _)) = l.accept() {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut sent = 0;
                loop {
                    let mut buf = [0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => continue 'conns,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&got)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    seen.push(line);
                    let Some(r) = replies.next() else {
                        // Out of replies: hold the request unanswered until the viewer goes.
                        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                        return seen;
                    };
                    // Written in two pieces, so the viewer sees a head cut mid-way.
                    let (a, b) = r.split_at(r.len() / 2);
                    let _ = c.write_all(a);
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = c.write_all(b);
                    sent += 1;
                    if sent == close_after {
                        continue 'conns;
                    }
                }
            }
            seen
        });
        (addr, h)
    }

    fn ok(ctype: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// One viewer against a scripted server: the first connection carries the playlists and
    /// the init segment (keep-alive reuse), then is cut in the middle of a segment body.
    /// The viewer must count the cut as a transport error and fetch the segment again on a
    /// new connection, not hang; then (a one-segment VOD) it loops to the segment again.
    #[test]
    fn a_cut_mid_body_is_counted_and_retried_on_a_new_connection() {
        let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\ns0.m4s\n#EXT-X-ENDLIST\n";
        let mut cut = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
        cut.extend_from_slice(&[7u8; 400]);
        let replies = vec![
            ok(
                "application/vnd.apple.mpegurl",
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nm.m3u8\n",
            ),
            ok("application/vnd.apple.mpegurl", media.as_bytes()),
            ok("video/mp4", &[1u8; 100]),
            cut,
            ok("video/mp4", &[2u8; 1000]),
        ];
        let (addr, server) = serve(replies, 4);
        let cfg = EngineConfig {
            entries: vec![Url::parse(&format!("http://{addr}/x/index.m3u8")).unwrap()],
            viewers: 1,
            ramp_per_sec: None,
            duration: Duration::from_millis(600),
            start_budget: Duration::from_secs(5),
            segments_only: false,
        };
        let mut phases = Vec::new();
        let out = run(&cfg, |p| phases.push(p)).unwrap();
        assert_eq!(phases, [Phase::SteadyStart, Phase::SteadyEnd]);
        let v = &out.viewers[0];
        assert_eq!(v.stats().transport_errors, 1, "{:?}", v.stats());
        assert_eq!(v.stats().segments, 1);
        assert!(v.stats().ttfs.is_some());
        assert_eq!(out.connections, 2, "keep-alive reused the first connection");
        drop(out);
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            [
                "GET /x/index.m3u8 HTTP/1.1",
                "GET /x/m.m3u8 HTTP/1.1",
                "GET /x/init.mp4 HTTP/1.1",
                "GET /x/s0.m4s HTTP/1.1",
                "GET /x/s0.m4s HTTP/1.1",
                "GET /x/s0.m4s HTTP/1.1",
            ]
        );
    }
}
