use super::*;
use crate::live::{LiveChannel, StartPolicy};
use crate::media::library::SAMPLE_MP4;
use crate::media::MediaFile;
use crate::shard::send::{GsoMode, IoBackend, SendConfig};
use crate::shard::{Activity, SessionSetup, TcpSink, TrackDest, TrackSetup};
use crate::stats::TrackReception;
use crate::sys::count_alloc::allocations_on_this_thread;
use crate::wire::rtcp::test_packets::{rr, with_bye};
use crate::wire::rtcp::{parse_compound, RtcpPacket};
use crate::wire::rtp::{RtpTimestamp, SeqNum, Ssrc};
use std::collections::{BTreeSet, HashMap as Map};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

/// SSRCs of a test session: video (track 0, 90 kHz) is `base`, audio (track 1) `base + 1`.
fn ssrcs(base: u32) -> [Ssrc; 2] {
    [Ssrc(base), Ssrc(base + 1)]
}

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// A viewer's two UDP sockets and its session's liveness stamp.
struct Viewer {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    activity: Arc<Activity>,
}

/// A worker on real loopback sockets, driven by hand (no thread).
struct Rig {
    w: Worker,
    events: Receiver<ShardEvent>,
    counters: Arc<ShardCounters>,
    server_rtp: SocketAddr,
    server_rtcp: SocketAddr,
    media: Arc<MediaFile>,
    /// SRTP keys of the file sessions [`Rig::play`] sets up (`tests/srtp.rs`).
    srtp: Option<crate::shard::SrtpKeys>,
}

fn rig(stats: bool, event_depth: usize) -> Rig {
    rig_with(stats, event_depth, SendConfig::default().resolve())
}

fn rig_with(stats: bool, event_depth: usize, send: SendConfig) -> Rig {
    let rtp = bind();
    let rtcp = bind();
    let (server_rtp, server_rtcp) = (rtp.local_addr().unwrap(), rtcp.local_addr().unwrap());
    let (_tx, commands) = crossbeam_channel::bounded(1);
    let (events_tx, events) = crossbeam_channel::bounded(event_depth);
    let counters = Arc::new(ShardCounters::default());
    let links = Links::new(
        commands,
        events_tx,
        Arc::new(crate::poll::Waker::new().unwrap()),
    )
    .unwrap();
    let w = Worker::new(0, rtp, rtcp, links, counters.clone(), send, stats);
    let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
    Rig {
        w,
        events,
        counters,
        server_rtp,
        server_rtcp,
        media,
        srtp: None,
    }
}

impl Rig {
    /// A session `id` with both tracks over UDP to `dest` (or to a new viewer), playing
    /// from `t0`.
    fn add_session(&mut self, id: SessionId, ssrc_base: u32, t0: Instant) -> Viewer {
        let viewer = Viewer {
            rtp: bind(),
            rtcp: bind(),
            activity: Arc::new(Activity::default()),
        };
        let dest = TrackDest::Udp {
            rtp: viewer.rtp.local_addr().unwrap(),
            rtcp: viewer.rtcp.local_addr().unwrap(),
        };
        self.play(id, ssrc_base, dest, None, viewer.activity.clone(), t0);
        viewer
    }

    fn play(
        &mut self,
        id: SessionId,
        ssrc_base: u32,
        dest: TrackDest,
        sink: Option<Arc<TcpSink>>,
        activity: Arc<Activity>,
        t0: Instant,
    ) {
        let tracks = (0..2)
            .map(|i| TrackSetup {
                track_index: i,
                payload_type: 96 + i as u8,
                ssrc: ssrcs(ssrc_base)[i],
                initial_seq: SeqNum(0),
                initial_rtptime: RtpTimestamp(0),
                dest: dest.clone(),
                source: None,
                srtp: self.srtp.clone(),
            })
            .collect();
        let setup = SessionSetup {
            id,
            media: self.media.clone(),
            tracks,
            sink,
            activity,
            payload_budget_bytes: 1200,
            cname: "test".into(),
            live: None,
            log: None,
        };
        assert!(self
            .w
            .play(
                id,
                Some(Box::new(setup)),
                None,
                PlayEnd::Keep,
                PlayRate::NORMAL,
                t0
            )
            .is_some());
        self.w.start(id, t0);
    }

    /// A live channel looping the rig's media, starting now.
    fn channel(&self, policy: StartPolicy) -> Arc<LiveChannel> {
        Arc::new(LiveChannel::new("live", self.media.clone(), 1200, policy).unwrap())
    }

    /// Session `id` watching `ch` (both tracks, numbered by the channel as the control
    /// thread numbers them), track `i` to `dest(i)`, joining at `at`.
    fn play_live(
        &mut self,
        id: SessionId,
        ch: &Arc<LiveChannel>,
        dest: impl Fn(usize) -> TrackDest,
        sink: Option<Arc<TcpSink>>,
        at: Instant,
    ) {
        let tracks = (0..2)
            .map(|i| TrackSetup {
                track_index: i,
                payload_type: 96 + i as u8,
                ssrc: ch.tracks[i].ssrc,
                initial_seq: ch.tracks[i].seq0,
                initial_rtptime: ch.tracks[i].ts0,
                dest: dest(i),
                source: None,
                srtp: None,
            })
            .collect();
        let setup = SessionSetup {
            id,
            media: self.media.clone(),
            tracks,
            sink,
            activity: Arc::new(Activity::default()),
            payload_budget_bytes: 1200,
            cname: "test".into(),
            live: Some(ch.clone()),
            log: None,
        };
        assert!(self
            .w
            .play(
                id,
                Some(Box::new(setup)),
                None,
                PlayEnd::Keep,
                PlayRate::NORMAL,
                at
            )
            .is_some());
        self.w.start(id, at);
    }

    /// A UDP viewer `id` of `ch` joining at `at`; its RTP socket is non-blocking.
    fn add_live_viewer(&mut self, id: SessionId, ch: &Arc<LiveChannel>, at: Instant) -> Viewer {
        let viewer = Viewer {
            rtp: bind(),
            rtcp: bind(),
            activity: Arc::new(Activity::default()),
        };
        viewer.rtp.set_nonblocking(true).unwrap();
        let dest = TrackDest::Udp {
            rtp: viewer.rtp.local_addr().unwrap(),
            rtcp: viewer.rtcp.local_addr().unwrap(),
        };
        self.play_live(id, ch, |_| dest.clone(), None, at);
        viewer
    }

    /// Per track of session `id`: the absolute number of the next sample to send.
    fn next_absolute(&self, id: SessionId) -> [u64; 2] {
        let s = self.w.sessions[self.w.by_id[&id]].as_ref().unwrap();
        [s.absolute_sample(0), s.absolute_sample(1)]
    }

    fn clock_rate(&self, track: usize) -> u32 {
        self.media.index.tracks[track].codec.clock_rate_hz()
    }

    /// Drains RTCP at `now` until `done` holds (datagrams sent on loopback may take a
    /// moment to be queued); fails after 2 s.
    fn drain_until(&mut self, now: Instant, done: impl Fn(&ShardCounters) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            self.w.drain_rtcp(now);
            if done(&self.counters) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "counters never got there: {:?}",
                self.counters
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Makes the worker report now and returns the report.
    fn report(&mut self) -> ShardReport {
        self.w.report();
        match self.events.try_recv() {
            Ok(ShardEvent::Report(r)) => *r,
            other => panic!("expected a report, got {other:?}"),
        }
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn receptions_of(report: &ShardReport, id: SessionId) -> Vec<TrackReception> {
    report
        .sessions
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("session {id} missing from {report:?}"))
        .receptions
        .clone()
}

/// Packets flowing fill the lateness histogram (one value per packet, bounded by the tick)
/// and each session's cumulative counters; a report ships and resets the histogram.
#[test]
fn lateness_and_session_counters_reach_the_report() {
    let mut r = rig(true, 16);
    let t0 = Instant::now();
    let _a = r.add_session(7, 0xA000_0000, t0);
    let tick = Duration::from_millis(5);
    let mut now = t0;
    while now < t0 + Duration::from_secs(2) {
        now += tick;
        r.w.send_due(now);
    }
    let packets = get(&r.counters.packets);
    assert!(packets > 100, "{packets}");
    assert_eq!(r.w.lateness.len(), packets, "one lateness value per packet");
    // Simulated ticks of 5 ms: nothing is later than a tick plus the real time a pass takes.
    assert!(
        r.w.lateness.max() < 5_000 + 50_000,
        "{}",
        r.w.lateness.max()
    );
    let first = r.report();
    assert_eq!(first.lateness_micros.len(), packets);
    assert_eq!(r.w.lateness.len(), 0, "reset after the report");
    let s = &first.sessions[0];
    assert_eq!((s.id, s.packets_sent), (7, packets));
    assert_eq!(s.bytes_sent, get(&r.counters.bytes));

    while now < t0 + Duration::from_secs(4) {
        now += tick;
        r.w.send_due(now);
    }
    let second = r.report();
    let total = get(&r.counters.packets);
    assert!(total > packets);
    assert_eq!(second.sessions[0].packets_sent, total, "cumulative");
    assert_eq!(
        second.lateness_micros.len(),
        total - packets,
        "only the new packets"
    );
}

/// A track that fell behind (a stalled shard) catches up in one tick and keeps playing,
/// whatever its backlog: each visit sends at most [`SAMPLES_PER_VISIT`] samples and the
/// track is always re-queued. Backlogs step by 3 ms, finer than a frame (40 ms) or an AAC
/// frame (~21 ms), so every sample count up to ~30 is covered, multiples of the visit
/// budget included (those once lost their track for good).
#[test]
fn a_track_behind_by_any_number_of_samples_catches_up_and_keeps_playing() {
    let tick = Duration::from_millis(5);
    for backlog_ms in (0..1200).step_by(3) {
        let mut r = rig(false, 16);
        let t0 = Instant::now();
        let _viewer = r.add_session(1, 0xB000_0000, t0);
        let mut now = t0 + Duration::from_millis(backlog_ms);
        r.w.send_due(now);
        for _ in 0..40 {
            now += tick;
            r.w.send_due(now);
        }
        let s = r.w.sessions[r.w.by_id[&1]].as_ref().unwrap();
        for i in 0..2 {
            let next = s.tracks[i].next_sample;
            let at = s.due(i, next).expect("the 10 s clip is still playing");
            assert!(
                at > now,
                "backlog {backlog_ms} ms: track {i} stopped at sample {next}, due {:?} before the last tick",
                now - at
            );
            let queued =
                r.w.queue
                    .iter()
                    .filter(|(_, d)| d.slot as usize == r.w.by_id[&1] && d.track as usize == i);
            assert_eq!(
                queued.count(),
                1,
                "backlog {backlog_ms} ms: track {i} queued once"
            );
        }
    }
}

/// A PLAY range with an end (RFC 2326 §12.29, `Range: npt=0-3`) stops both tracks at that
/// media time, then does what the end of the file does: the session ends its play and
/// sends its RTCP BYEs after [`BYE_DELAY`] (RFC 3550 §6.6), staying until TEARDOWN.
/// Fails if the end is ignored: media past 3 s is sent and no BYE comes.
#[test]
fn a_range_end_stops_sending_there_and_sends_the_end_of_stream_bye() {
    let mut r = rig(false, 16);
    let t0 = Instant::now();
    let v = r.add_session(7, 0xA000_0000, t0);
    v.rtp.set_nonblocking(true).unwrap();
    // A second PLAY (a seek) with an end, as `openRTSP -d 3` sends it.
    let started =
        r.w.play(7, None, Some(0.0), PlayEnd::At(3.0), PlayRate::NORMAL, t0)
            .expect("session known");
    assert_eq!((started.start_npt_secs, started.end_npt_secs), (0.0, 3.0));
    r.w.start(7, t0);
    let rates = [r.clock_rate(0), r.clock_rate(1)];
    // Highest presentation time received per track, in seconds (RTP time 0 is npt 0).
    let mut last = [f64::MIN; 2];
    let mut packets = [0usize; 2];
    let mut buf = [0u8; 2048];
    let mut drain = |last: &mut [f64; 2], packets: &mut [usize; 2]| {
        while let Ok(n) = v.rtp.recv(&mut buf) {
            let buf = &buf[..n];
            assert!(n > 14, "an RTP packet with a payload");
            let ssrc = Ssrc(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
            let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as i32;
            let i = ssrcs(0xA000_0000)
                .iter()
                .position(|&s| s == ssrc)
                .expect("our SSRC");
            packets[i] += 1;
            // An aggregated AAC packet is stamped with its first frame's time; its last
            // frame is 1024 ticks per further AU header later (RFC 3640 §3.2.1, §3.3.6).
            let marker = buf[1] & 0x80 != 0;
            let more = if i == 1 && marker {
                i64::from(u16::from_be_bytes([buf[12], buf[13]]) / 16).saturating_sub(1)
            } else {
                0
            };
            let ticks = i64::from(ts) + more * 1024;
            last[i] = last[i].max(ticks as f64 / f64::from(rates[i]));
        }
    };
    let mut now = t0;
    while now < t0 + Duration::from_millis(3500) {
        now += Duration::from_millis(20);
        r.w.send_due(now);
        drain(&mut last, &mut packets);
    }
    let slot = r.w.by_id[&7];
    let s = r.w.sessions[slot].as_ref().unwrap();
    assert_eq!(s.state, PlayState::Ended, "play ended at 3 s");
    assert!(packets.iter().all(|&n| n > 0), "{packets:?}");
    // Video (25 fps, no B-frames): last presented frame 2.960 s; audio within one frame.
    assert!((2.95..3.0).contains(&last[0]), "video up to {}", last[0]);
    assert!(
        (3.0 - 1024.0 / 48000.0..3.0).contains(&last[1]),
        "audio up to {}",
        last[1]
    );
    // The end-of-stream BYE, one per track, after BYE_DELAY.
    r.w.send_due(now + BYE_DELAY + Duration::from_millis(5));
    drain(&mut last, &mut packets);
    assert!(last[0] < 3.0 && last[1] < 3.0, "nothing more after the end");
    let mut byes = 0;
    while byes < 2 {
        let n = v.rtcp.recv(&mut buf).expect("an RTCP BYE per track");
        if let Ok(p) = parse_compound(&buf[..n]) {
            byes += usize::from(matches!(p.last(), Some(RtcpPacket::Bye { .. })));
        }
    }
    assert!(
        r.w.by_id.contains_key(&7),
        "the session stays until TEARDOWN"
    );
}

/// A shard far behind works through its backlog in passes of about [`PASS_WORK_LIMIT`],
/// so the loop applies commands (a PLAY waiting for its answer) between them rather than
/// after the whole backlog, and every pass makes progress until all of it is sent.
#[test]
fn a_backlogged_shard_works_in_bounded_passes_and_catches_up() {
    let mut r = rig(false, 16);
    let t0 = Instant::now();
    let _viewers: Vec<Viewer> = (0..200u32)
        .map(|i| r.add_session(u64::from(i) + 1, 0x1000_0000 + i * 4, t0))
        .collect();
    // Three seconds of media for 200 viewers: tens of thousands of packets.
    let now = t0 + Duration::from_secs(3);
    let behind = |w: &Worker| w.queue.iter().filter(|(at, _)| *at <= now).count();
    let started = Instant::now();
    r.w.send_due(now);
    let first = started.elapsed();
    assert!(
        behind(&r.w) > 0,
        "one pass sent the whole backlog ({first:?}) instead of stopping after {PASS_WORK_LIMIT:?}"
    );
    let mut passes = 1;
    while behind(&r.w) > 0 {
        let sent = r.counters.packets.load(Ordering::Relaxed);
        r.w.send_due(now);
        passes += 1;
        assert!(
            r.counters.packets.load(Ordering::Relaxed) > sent,
            "pass {passes} sent nothing"
        );
    }
    for id in 1..=200 {
        let s = r.w.sessions[r.w.by_id[&id]].as_ref().unwrap();
        for i in 0..2 {
            let at = s.due(i, s.tracks[i].next_sample).expect("still playing");
            assert!(
                at > now,
                "session {id} track {i} left behind after {passes} passes"
            );
        }
    }
}

/// `--stats off`: RTCP is liveness only (no digest: nothing invalid counted, no
/// receptions, BYE not acted on) and no lateness is recorded.
#[test]
fn statistics_off_digests_nothing_and_records_nothing() {
    let mut r = rig(false, 16);
    let t0 = Instant::now();
    let a = r.add_session(7, 0xA000_0000, t0);
    a.rtcp
        .send_to(
            &rr(Ssrc(1), &[(Ssrc(0xA000_0000), 9, 9, 0, 0)]),
            r.server_rtcp,
        )
        .unwrap();
    a.rtcp.send_to(&[0x40, 201, 0, 0], r.server_rtcp).unwrap();
    a.rtcp
        .send_to(&with_bye(rr(Ssrc(1), &[]), &[Ssrc(1)]), r.server_rtcp)
        .unwrap();
    let later = Instant::now() + Duration::from_secs(1000);
    r.drain_until(later, |c| get(&c.rtcp_received) == 3);
    assert!(
        a.activity.idle_for(later) < Duration::from_secs(1),
        "still liveness"
    );
    assert_eq!(get(&r.counters.rtcp_invalid), 0);
    assert_eq!(get(&r.counters.rtcp_byes), 0);
    assert!(r.w.by_id.contains_key(&7));
    let slot = r.w.by_id[&7];
    let s = r.w.sessions[slot].as_ref().unwrap();
    assert!(s.receptions.iter().all(Option::is_none));
    let mut now = t0;
    while now < t0 + Duration::from_secs(1) {
        now += Duration::from_millis(5);
        r.w.send_due(now);
    }
    assert!(get(&r.counters.packets) > 50);
    assert_eq!(r.w.lateness.len(), 0);
}

/// A full event queue never blocks the shard: a report that does not fit is counted as
/// dropped and its receptions go with the next one; a session end waits and is delivered
/// once there is room.
#[test]
fn a_full_event_queue_drops_reports_and_delays_session_ends() {
    let mut r = rig(true, 1);
    let t0 = Instant::now();
    let a = r.add_session(7, 0xA000_0000, t0);
    let b = r.add_session(8, 0xB000_0000, t0);
    let later = Instant::now() + Duration::from_secs(1000);
    a.rtcp
        .send_to(
            &rr(Ssrc(1), &[(Ssrc(0xA000_0000), 11, 0, 0, 0)]),
            r.server_rtcp,
        )
        .unwrap();
    // B reports before its BYE, so the BYE counts (RFC 3550 §6.6).
    b.rtcp
        .send_to(
            &rr(Ssrc(2), &[(Ssrc(0xB000_0000), 0, 0, 0, 0)]),
            r.server_rtcp,
        )
        .unwrap();
    r.drain_until(later, |c| get(&c.rtcp_received) == 2);
    r.w.report(); // fills the queue
    let t = Instant::now();
    r.w.report();
    assert!(t.elapsed() < Duration::from_millis(100), "never waits");
    assert_eq!(get(&r.counters.reports_dropped), 1);

    b.rtcp
        .send_to(&with_bye(rr(Ssrc(2), &[]), &[Ssrc(2)]), r.server_rtcp)
        .unwrap();
    a.rtcp
        .send_to(
            &rr(Ssrc(1), &[(Ssrc(0xA000_0000), 33, 0, 0, 0)]),
            r.server_rtcp,
        )
        .unwrap();
    r.drain_until(later, |c| get(&c.rtcp_received) == 4);
    assert!(!r.w.by_id.contains_key(&8), "the BYE took effect at once");
    assert_eq!(r.w.undelivered_ends, vec![(8, EndReason::ClientBye)]);
    r.w.report();
    assert_eq!(get(&r.counters.reports_dropped), 2);

    let Ok(ShardEvent::Report(first)) = r.events.try_recv() else {
        panic!("the first report")
    };
    assert_eq!(receptions_of(&first, 7)[0].fraction_lost, 11);
    r.w.deliver_undelivered_ends();
    assert!(r.w.undelivered_ends.is_empty());
    match r.events.try_recv() {
        Ok(ShardEvent::SessionEnded { id: 8, reason }) => {
            assert_eq!(reason, EndReason::ClientBye)
        }
        other => panic!("expected SessionEnded for 8, got {other:?}"),
    }
    let kept = r.report();
    assert_eq!(receptions_of(&kept, 7)[0].fraction_lost, 33, "carried over");
}

/// A TCP viewer that never reads is cut off when its backlog overflows, and the control
/// thread hears `SessionEnded { TooSlow }`; its packets' lateness was recorded as written.
#[test]
fn a_tcp_viewer_that_never_reads_is_reported_too_slow() {
    let mut r = rig(true, 16);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    client.set_recv_buffer_size(4096).unwrap();
    client
        .connect(&listener.local_addr().unwrap().into())
        .unwrap();
    let (server_side, _) = listener.accept().unwrap();
    socket2::SockRef::from(&server_side)
        .set_send_buffer_size(4096)
        .unwrap();
    let sink = Arc::new(TcpSink::new(server_side).unwrap());
    let dest = TrackDest::Interleaved {
        rtp_channel: 0,
        rtcp_channel: 1,
    };
    let t0 = Instant::now();
    r.play(
        7,
        0xA000_0000,
        dest,
        Some(sink.clone()),
        Arc::new(Activity::default()),
        t0,
    );
    let mut now = t0;
    while r.w.by_id.contains_key(&7) && now < t0 + Duration::from_secs(11) {
        now += Duration::from_millis(50);
        r.w.send_due(now);
    }
    assert!(!r.w.by_id.contains_key(&7), "cut off");
    assert!(sink.is_closed());
    assert_eq!(get(&r.counters.slow_viewers_dropped), 1);
    match r.events.try_recv() {
        Ok(ShardEvent::SessionEnded { id, reason }) => {
            assert_eq!((id, reason), (7, EndReason::TooSlow));
        }
        other => panic!("expected SessionEnded, got {other:?}"),
    }
    let written = get(&r.counters.packets);
    assert!(written > 100, "{written}");
    assert_eq!(
        r.w.lateness.len(),
        written,
        "interleaved packets are recorded as written"
    );
    drop(TcpStream::from(client));
}

/// Every RTP packet a viewer received: (SSRC, sequence number) → the whole packet.
type Received = Map<(Ssrc, SeqNum), Vec<u8>>;

/// Reads what is queued on a non-blocking UDP socket into `into`.
fn drain_udp(rtp: &UdpSocket, into: &mut Received) {
    let mut buf = [0u8; 2048];
    while let Ok(n) = rtp.recv(&mut buf) {
        let ssrc = Ssrc(u32::from_be_bytes(buf[8..12].try_into().unwrap()));
        let seq = SeqNum(u16::from_be_bytes([buf[2], buf[3]]));
        into.insert((ssrc, seq), buf[..n].to_vec());
    }
}

/// Reads what is queued on a non-blocking TCP stream, keeps partial frames in `partial`,
/// and files the RTP frames (even channels, RFC 2326 §10.12) into `into`.
fn drain_tcp(stream: &mut TcpStream, partial: &mut Vec<u8>, into: &mut Received) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        partial.extend_from_slice(&buf[..n]);
    }
    while partial.len() >= 4 {
        assert_eq!(partial[0], b'$', "frame boundary");
        let len = usize::from(u16::from_be_bytes([partial[2], partial[3]]));
        if partial.len() < 4 + len {
            break;
        }
        let frame: Vec<u8> = partial.drain(..4 + len).collect();
        if frame[1].is_multiple_of(2) {
            let p = &frame[4..];
            let ssrc = Ssrc(u32::from_be_bytes(p[8..12].try_into().unwrap()));
            into.insert((ssrc, SeqNum(u16::from_be_bytes([p[2], p[3]]))), p.to_vec());
        }
    }
}

/// Four UDP viewers and one TCP-interleaved viewer of one live channel on one shard, joining
/// at different times (different lags behind the live edge under the delayed policy, a
/// burst each under the burst policy): the shard packetizes each sample once — the
/// `live_packetizations` counter equals the samples sent (the union of what the viewers
/// were sent), not the sum over viewers — and every viewer's packet with a given SSRC and
/// sequence number is byte-identical (timestamp, marker, payload header and body) to every
/// other viewer's. Fails if viewers packetize for themselves, or if the shared bytes
/// differ from a viewer's own numbering.
#[test]
fn viewers_of_a_live_channel_share_one_packetization() {
    for policy in [StartPolicy::Delayed, StartPolicy::Burst] {
        let mut r = rig(true, 64);
        let ch = r.channel(policy);
        let t0 = Instant::now();
        let joins = [0.0, 0.7, 1.5, 2.3, 3.1].map(|s| t0 + Duration::from_secs_f64(s));
        let end = t0 + Duration::from_secs(6);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tcp_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tcp_client.set_nonblocking(true).unwrap();
        let sink = Arc::new(TcpSink::new(listener.accept().unwrap().0).unwrap());
        let mut udp: Vec<(SessionId, Viewer)> = Vec::new();
        let mut received: Vec<Received> = vec![Received::new(); joins.len()];
        let mut partial = Vec::new();
        let mut starts: Map<SessionId, [u64; 2]> = Map::new();
        let mut now = t0;
        while now < end {
            for (k, &at) in joins.iter().enumerate() {
                let id = k as SessionId + 1;
                if at <= now && !starts.contains_key(&id) {
                    if k == 2 {
                        let dest = |i: usize| TrackDest::Interleaved {
                            rtp_channel: 2 * i as u8,
                            rtcp_channel: 2 * i as u8 + 1,
                        };
                        r.play_live(id, &ch, dest, Some(sink.clone()), now);
                    } else {
                        udp.push((id, r.add_live_viewer(id, &ch, now)));
                    }
                    starts.insert(id, r.next_absolute(id));
                }
            }
            now += Duration::from_millis(5);
            r.w.send_due(now);
            for (id, v) in &udp {
                drain_udp(&v.rtp, &mut received[*id as usize - 1]);
            }
            drain_tcp(&mut tcp_client, &mut partial, &mut received[2]);
        }
        std::thread::sleep(Duration::from_millis(50));
        for (id, v) in &udp {
            drain_udp(&v.rtp, &mut received[*id as usize - 1]);
        }
        drain_tcp(&mut tcp_client, &mut partial, &mut received[2]);

        // Samples sent: per track, the union of each viewer's run of absolute samples.
        let mut union = [BTreeSet::new(), BTreeSet::new()];
        let mut per_viewer_sum = 0;
        for (&id, start) in &starts {
            let stop = r.next_absolute(id);
            for t in 0..2 {
                assert!(
                    stop[t] > start[t],
                    "{policy:?}: viewer {id} track {t} got samples"
                );
                union[t].extend(start[t]..stop[t]);
                per_viewer_sum += stop[t] - start[t];
            }
        }
        // One packetization per packet group: every video sample, and each aggregated
        // AAC packet's first sample.
        let sent = (0..2)
            .map(|t| {
                let n = r.media.index.tracks[t].samples.len() as u64;
                union[t]
                    .iter()
                    .filter(|&&abs| ch.tracks[t].starts_packets((abs % n) as usize))
                    .count() as u64
            })
            .sum::<u64>();
        assert_eq!(
            get(&r.counters.live_packetizations),
            sent,
            "{policy:?}: one packetization per sample, not per viewer ({per_viewer_sum} viewer-samples)"
        );
        assert!(per_viewer_sum > 3 * sent, "{policy:?}: the viewers overlap");
        assert_eq!(r.w.live.streams(), 2, "one stream per channel track");

        // Same (SSRC, seq) → same bytes, whoever received it, over UDP or TCP.
        let ssrcs = [ch.tracks[0].ssrc, ch.tracks[1].ssrc];
        let mut first_seen: Map<(Ssrc, SeqNum), &Vec<u8>> = Map::new();
        let mut shared = 0;
        for (k, packets) in received.iter().enumerate() {
            assert!(
                packets.len() > 100,
                "{policy:?}: viewer {k} got {}",
                packets.len()
            );
            for (key, bytes) in packets {
                assert!(
                    ssrcs.contains(&key.0),
                    "{policy:?}: the channel's SSRCs only"
                );
                match first_seen.get(key) {
                    Some(other) => {
                        assert_eq!(*other, bytes, "{policy:?}: viewer {k}, {key:?}");
                        shared += 1;
                    }
                    None => {
                        first_seen.insert(*key, bytes);
                    }
                }
            }
        }
        assert!(shared > 1000, "{policy:?}: only {shared} packets shared");
        // A viewer's first video packet is its keyframe's STAP-A (instant start).
        let video_samples = r.media.index.tracks[0].samples.len() as u64;
        for (k, packets) in received.iter().enumerate() {
            let join = starts[&(k as SessionId + 1)][0];
            let seq = ch.tracks[0].seq_of(join / video_samples, (join % video_samples) as usize);
            let first = &packets[&(ssrcs[0], seq)];
            assert_eq!(
                first[12] & 0x1f,
                24,
                "{policy:?}: viewer {k} starts on a keyframe"
            );
        }

        // Leaving frees the streams with the last viewer.
        for id in 1..=joins.len() as SessionId {
            r.w.remove(id, "test");
        }
        assert_eq!(r.w.live.streams(), 0);
    }
}

/// Steady-state streaming allocates nothing per packet: a worker plays the sample to a
/// local UDP socket on a simulated clock, and after a warm-up second the thread's
/// allocation count must not move while about a thousand packets go out and a receiver
/// report is digested every tick — for every backend, with GSO on and off, statistics on
/// (lateness recorded per sample). Fails if any per-packet, per-sample or per-RTCP path
/// allocates, or if lateness or RTCP stopped being recorded.
#[test]
fn steady_state_send_path_allocates_nothing() {
    for io in [IoBackend::Sendmmsg, IoBackend::Sendto, IoBackend::Uring] {
        for gso in [GsoMode::On, GsoMode::Off] {
            let send = SendConfig {
                io: Some(io),
                gso,
                multicast_ttl: None,
            }
            .resolve();
            let mut r = rig_with(true, 16, send);
            let t0 = Instant::now();
            let viewer = r.add_session(7, 1, t0);
            // Four viewers of a live channel, joining a few hundred ms apart: they share
            // one packetization per sample, at different lags behind the live edge.
            let ch = r.channel(StartPolicy::Delayed);
            let live_viewers: Vec<Viewer> = (0..4)
                .map(|k| {
                    let at = t0 + Duration::from_millis(300 * k);
                    r.add_live_viewer(100 + k, &ch, at)
                })
                .collect();
            // Two TCP-interleaved viewers, one of the file and one of the channel: their
            // frames are gathered per pass and written with one sendmsg each.
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let interleaved = |i: usize| TrackDest::Interleaved {
                rtp_channel: 2 * i as u8,
                rtcp_channel: 2 * i as u8 + 1,
            };
            let mut tcp_clients = Vec::new();
            for id in [200, 201] {
                let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                client.set_nonblocking(true).unwrap();
                tcp_clients.push(client);
                let sink = Arc::new(TcpSink::new(listener.accept().unwrap().0).unwrap());
                if id == 200 {
                    let activity = Arc::new(Activity::default());
                    r.play(id, 0xB000_0000, interleaved(0), Some(sink), activity, t0);
                } else {
                    r.play_live(id, &ch, interleaved, Some(sink), t0);
                }
            }
            let report = rr(Ssrc(0x1234), &[(Ssrc(1), 3, 90, 0, 0)]);
            let tick = Duration::from_millis(5);
            let mut now = t0;
            // Warm-up: the first second fills every reusable buffer once.
            let mut buf = [0u8; 2048];
            let mut tcp_buf = vec![0u8; 1 << 16];
            let mut drain_live = |viewers: &[Viewer]| {
                for v in viewers {
                    while v.rtp.recv(&mut buf).is_ok() {}
                }
                for c in &mut tcp_clients {
                    while matches!(c.read(&mut tcp_buf), Ok(n) if n > 0) {}
                }
            };
            while now < t0 + Duration::from_secs(1) {
                now += tick;
                r.w.send_due(now);
                viewer.rtcp.send_to(&report, r.server_rtcp).unwrap();
                r.w.drain_rtcp(now);
                drain_live(&live_viewers);
            }
            let packets_before = get(&r.counters.packets);
            let packetized_before = get(&r.counters.live_packetizations);
            let lateness_before = r.w.lateness.len();
            let rtcp_before = get(&r.counters.rtcp_received);
            let (tcp_packets_before, tcp_sends_before) =
                (get(&r.counters.tcp_packets), get(&r.counters.tcp_sends));
            let allocs_before = allocations_on_this_thread();
            while now < t0 + Duration::from_secs(9) {
                now += tick;
                r.w.send_due(now);
                viewer.rtcp.send_to(&report, r.server_rtcp).unwrap();
                r.w.drain_rtcp(now);
                drain_live(&live_viewers);
            }
            let allocs = allocations_on_this_thread() - allocs_before;
            let packets = get(&r.counters.packets) - packets_before;
            assert!(
                packets > 3000,
                "{io:?}/{gso:?}: only {packets} packets sent"
            );
            // 8 s of the channel is about 200 video and 375 audio samples, the audio in
            // ~95 aggregated packets; unshared, the four viewers would packetize four
            // times that.
            let tcp_packets = get(&r.counters.tcp_packets) - tcp_packets_before;
            let tcp_sends = get(&r.counters.tcp_sends) - tcp_sends_before;
            // A video frame's packets leave in one write (audio packets alone in theirs).
            assert!(
                tcp_packets > 1000 && tcp_packets > 2 * tcp_sends,
                "{io:?}/{gso:?}: {tcp_packets} TCP packets in {tcp_sends} sends"
            );
            assert_eq!(get(&r.counters.slow_viewers_dropped), 0);
            let packetized = get(&r.counters.live_packetizations) - packetized_before;
            assert!(
                (250..=350).contains(&packetized),
                "{io:?}/{gso:?}: {packetized} live packetizations in 8 s"
            );
            assert_eq!(
                allocs, 0,
                "{io:?}/{gso:?}: {allocs} allocations over {packets} packets"
            );
            assert_eq!(
                r.w.lateness.len() - lateness_before,
                packets,
                "lateness recorded"
            );
            assert!(
                get(&r.counters.rtcp_received) - rtcp_before > 1000,
                "RTCP digested"
            );
            assert_eq!(get(&r.counters.rtcp_invalid), 0);
        }
    }
}

mod live_logs;
mod rtcp;
mod srtp;
mod webrtc;
