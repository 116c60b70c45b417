//! A shard playing live logs: join at the latest keyframe, follow as frames arrive, BYE at the end.

use super::*;
use crate::ingest::Frame;
use crate::live_log::{LogTrackSpec, LogWriter};
use crate::shard::TrackStart;

/// A log of the rig's media (both tracks), watched by shard 0 of the rig.
fn log_writer(r: &Rig) -> LogWriter {
    let specs: Vec<LogTrackSpec> = r
        .media
        .index
        .tracks
        .iter()
        .map(|t| LogTrackSpec {
            kind: t.kind,
            codec: t.codec.clone(),
        })
        .collect();
    LogWriter::create(
        "live/cam",
        &specs,
        crate::live_log::DEFAULT_CAPACITY,
        1200,
        vec![r.w.waker.clone()],
        Instant::now(),
    )
    .unwrap()
}

/// Appends the media's samples with decode times in `[from, to)` seconds, in decode order
/// across tracks (as a publisher sends them).
fn publish(r: &Rig, w: &mut LogWriter, from: f64, to: f64) -> usize {
    let bytes = r.media.bytes.as_slice();
    let mut frames: Vec<(f64, usize, usize)> = Vec::new();
    for (ti, t) in r.media.index.tracks.iter().enumerate() {
        for (k, s) in t.samples.iter().enumerate() {
            let secs = t.dts_ticks(s) as f64 / f64::from(t.timescale);
            if secs >= from && secs < to {
                frames.push((secs, ti, k));
            }
        }
    }
    frames.sort_by(|a, b| a.0.total_cmp(&b.0));
    for &(_, ti, k) in &frames {
        let t = &r.media.index.tracks[ti];
        let s = &t.samples[k];
        // A publisher's times are in the RTP clock.
        let clock =
            |ticks: i64| ticks * i64::from(t.codec.clock_rate_hz()) / i64::from(t.timescale);
        let frame = Frame {
            track: ti,
            pts: clock(t.pts_ticks(s)),
            dts: clock(t.dts_ticks(s)),
            sync: s.sync,
            data: &bytes[s.offset as usize..(s.offset + u64::from(s.len)) as usize],
        };
        w.append(&frame, Instant::now()).unwrap();
    }
    frames.len()
}

fn play_log(r: &mut Rig, id: SessionId, w: &LogWriter) -> (Viewer, Vec<TrackStart>) {
    let log = w.log().clone();
    let viewer = Viewer {
        rtp: bind(),
        rtcp: bind(),
        activity: Arc::new(Activity::default()),
    };
    viewer.rtp.set_nonblocking(true).unwrap();
    // A GOP goes out at once: room for it in the socket.
    socket2::SockRef::from(&viewer.rtp)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let dest = TrackDest::Udp {
        rtp: viewer.rtp.local_addr().unwrap(),
        rtcp: viewer.rtcp.local_addr().unwrap(),
    };
    let tracks = (0..2)
        .map(|i| TrackSetup {
            track_index: i,
            payload_type: 96 + i as u8,
            ssrc: log.tracks[i].ssrc,
            initial_seq: log.tracks[i].seq0,
            initial_rtptime: log.tracks[i].ts0,
            dest: dest.clone(),
            source: None,
            srtp: None,
        })
        .collect();
    let setup = SessionSetup {
        id,
        media: log.media.clone(),
        tracks,
        sink: None,
        activity: viewer.activity.clone(),
        payload_budget_bytes: 1200,
        cname: "test".into(),
        live: None,
        log: Some(log),
    };
    let now = Instant::now();
    let started =
        r.w.play(
            id,
            Some(Box::new(setup)),
            None,
            PlayEnd::Keep,
            PlayRate::NORMAL,
            now,
        )
        .unwrap();
    r.w.start(id, now);
    (viewer, started.tracks)
}

/// Runs the shard's passes (each bounded to a few ms of work, so a GOP may take several)
/// and reads what `socks` receive, until nothing more comes for 200 ms.
fn pump(r: &mut Rig, socks: &[&UdpSocket]) -> Vec<Vec<(u32, u16, Vec<u8>)>> {
    let mut out = vec![Vec::new(); socks.len()];
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(200) {
        r.w.send_due(Instant::now());
        for (k, sock) in socks.iter().enumerate() {
            let got = receive_now(sock);
            if !got.is_empty() {
                quiet_since = Instant::now();
            }
            out[k].extend(got);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

/// The RTP packets already waiting on `sock`: (ssrc, seq, bytes).
fn receive_now(sock: &UdpSocket) -> Vec<(u32, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        let ssrc = u32::from_be_bytes(buf[8..12].try_into().unwrap());
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        out.push((ssrc, seq, buf[..n].to_vec()));
    }
    out
}

/// Per SSRC, sequence numbers must run without a gap from the RTP-Info start.
fn assert_contiguous(packets: &[(u32, u16, Vec<u8>)], starts: &mut Map<u32, u16>) {
    for (ssrc, seq, _) in packets {
        let next = starts.get_mut(ssrc).expect("a known SSRC");
        assert_eq!(*seq, *next, "ssrc {ssrc:08X}");
        *next = next.wrapping_add(1);
    }
}

#[test]
fn viewers_join_a_log_at_its_latest_keyframe_and_follow_it_as_frames_arrive_then_get_bye() {
    let mut r = rig(false, 64);
    let mut w = log_writer(&r);
    publish(&r, &mut w, 0.0, 3.0);
    let log = w.log().clone();
    let (a, starts) = play_log(&mut r, 1, &w);
    let mut next: Map<u32, u16> = starts
        .iter()
        .map(|t| (log.tracks[t.track_index].ssrc.0, t.seq.0))
        .collect();
    // The video starts at the last keyframe before 3 s, whose RTP timestamp RTP-Info names.
    let video = &r.media.index.tracks[0];
    let key = video
        .samples
        .iter()
        .rev()
        .find(|s| s.sync && (video.dts_ticks(s) as f64) < 3.0 * f64::from(video.timescale))
        .unwrap();
    let key_pts = video.pts_ticks(key) * 90_000 / i64::from(video.timescale);
    assert_eq!(
        starts[0].rtptime,
        log.tracks[0].ts0.wrapping_add(key_pts as u32)
    );
    let first = pump(&mut r, &[&a.rtp]).remove(0);
    assert!(!first.is_empty(), "the keyframe's GOP goes out at once");
    assert_contiguous(&first, &mut next);
    // A second viewer on the shard: the same bytes for the same packets.
    let (b, _) = play_log(&mut r, 2, &w);
    let b_first = pump(&mut r, &[&b.rtp]).remove(0);
    let by_seq: Map<(u32, u16), Vec<u8>> = first
        .iter()
        .map(|(s, q, p)| ((*s, *q), p.clone()))
        .collect();
    let shared = b_first
        .iter()
        .filter(|(s, q, p)| by_seq.get(&(*s, *q)) == Some(p))
        .count();
    assert_eq!(shared, b_first.len(), "viewer b's packets are viewer a's");
    // New frames: the waiting tracks are queued again and the sequence runs on.
    let appended = publish(&r, &mut w, 3.0, 5.0);
    assert!(appended > 0);
    r.w.poll_logs();
    let more = pump(&mut r, &[&a.rtp]).remove(0);
    assert!(more.len() > 50, "{} packets after new frames", more.len());
    assert_contiguous(&more, &mut next);
    // The stream ends: viewers get BYE.
    log.set_state(crate::live_log::LogState::Ended);
    r.w.poll_logs();
    let later = Instant::now() + BYE_DELAY + Duration::from_millis(5);
    r.w.send_due(later);
    let mut buf = [0u8; 1500];
    a.rtcp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut got_bye = false;
    while let Ok(n) = a.rtcp.recv(&mut buf) {
        if let Ok(packets) = parse_compound(&buf[..n]) {
            if packets.iter().any(|p| matches!(p, RtcpPacket::Bye { .. })) {
                got_bye = true;
                break;
            }
        }
    }
    assert!(got_bye, "BYE after the log ended");
}

/// Plays `w`'s log to one viewer over TCP interleaved channels (`sink`), video track only.
fn play_log_tcp(r: &mut Rig, id: SessionId, w: &LogWriter, sink: Arc<TcpSink>) {
    let log = w.log().clone();
    let tracks = vec![TrackSetup {
        track_index: 0,
        payload_type: 96,
        ssrc: log.tracks[0].ssrc,
        initial_seq: log.tracks[0].seq0,
        initial_rtptime: log.tracks[0].ts0,
        dest: TrackDest::Interleaved {
            rtp_channel: 0,
            rtcp_channel: 1,
        },
        source: None,
        srtp: None,
    }];
    let setup = SessionSetup {
        id,
        media: log.media.clone(),
        tracks,
        sink: Some(sink),
        activity: Arc::new(Activity::default()),
        payload_budget_bytes: 1200,
        cname: "test".into(),
        live: None,
        log: Some(log),
    };
    let now = Instant::now();
    r.w.play(
        id,
        Some(Box::new(setup)),
        None,
        PlayEnd::Keep,
        PlayRate::NORMAL,
        now,
    )
    .unwrap();
    r.w.start(id, now);
}

/// A 2 MB keyframe in AVCC form (one IDR NAL unit of non-zero bytes).
fn big_keyframe() -> Vec<u8> {
    let nal_len = 2_000_000u32;
    let mut data = nal_len.to_be_bytes().to_vec();
    data.push(0x65);
    data.extend((1..nal_len).map(|k| (k as u8) | 1));
    data
}

/// A log sample four times the TCP backlog limit reaches an interleaved viewer that reads
/// whole, in slices of `TCP_SLICE_BYTES` (sent whole, it overflowed the backlog and cut the
/// viewer off); a viewer that reads nothing is cut off as too slow once a slice has waited
/// `TCP_SLICE_STALL`, and never holds more than the backlog limit.
#[test]
fn a_large_log_sample_goes_to_a_tcp_viewer_in_slices_and_a_stalled_one_is_cut_off() {
    let data = big_keyframe();
    let frame = Frame {
        track: 0,
        pts: 0,
        dts: 0,
        sync: true,
        data: &data,
    };
    // A reader as fast as it can.
    let mut r = rig(false, 64);
    let mut w = log_writer(&r);
    w.append(&frame, Instant::now()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let sink = Arc::new(TcpSink::new(listener.accept().unwrap().0).unwrap());
    play_log_tcp(&mut r, 7, &w, sink.clone());
    let reader = std::thread::spawn(move || {
        let mut client = client;
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        // The NAL unit's bytes alone; the frames' headers come on top.
        while total <= 2_000_000 {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    let t0 = Instant::now();
    while !reader.is_finished() && t0.elapsed() < Duration::from_secs(10) {
        r.w.send_due(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    let total = reader.join().unwrap();
    assert!(total > 2_000_000, "{total} bytes reached the reader");
    assert!(r.w.by_id.contains_key(&7), "the reading viewer was cut off");
    assert!(!sink.is_closed());
    assert_eq!(get(&r.counters.slow_viewers_dropped), 0);

    // A viewer that reads nothing.
    let mut r = rig(false, 64);
    let mut w = log_writer(&r);
    w.append(&frame, Instant::now()).unwrap();
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
    play_log_tcp(&mut r, 8, &w, sink.clone());
    let t0 = Instant::now();
    let mut now = t0;
    while r.w.by_id.contains_key(&8) && now < t0 + Duration::from_secs(10) {
        assert!(sink.backlog_bytes() <= MAX_BACKLOG_BYTES);
        now += Duration::from_millis(50);
        r.w.send_due(now);
    }
    assert!(!r.w.by_id.contains_key(&8), "the stalled viewer stays");
    assert!(now - t0 > TCP_SLICE_STALL, "cut after {:?}", now - t0);
    assert_eq!(get(&r.counters.slow_viewers_dropped), 1);
    drop(TcpStream::from(client));
}

/// A publisher that sends three AAC frames per packet (ffmpeg's RTP muxer groups them): the
/// viewer gets each group as one RFC 3640 packet (one AU header per frame, the frames' bytes
/// back to back), with sequence numbers running on without a gap.
#[test]
fn aac_frames_a_publisher_grouped_reach_viewers_in_one_packet() {
    let mut r = rig(false, 64);
    let mut w = log_writer(&r);
    let media = r.media.clone();
    let audio = &media.index.tracks[1];
    let bytes = media.bytes.as_slice();
    let clock = |ticks: i64| ticks * 48_000 / i64::from(audio.timescale);
    let frames: Vec<&[u8]> = audio
        .samples
        .iter()
        .take(90)
        .map(|s| &bytes[s.offset as usize..(s.offset + u64::from(s.len)) as usize])
        .collect();
    let publish_groups = |w: &mut LogWriter, groups: std::ops::Range<usize>| {
        for g in groups {
            w.begin_batch();
            for (s, data) in audio.samples[g * 3..].iter().zip(&frames[g * 3..]).take(3) {
                let frame = Frame {
                    track: 1,
                    pts: clock(audio.pts_ticks(s)),
                    dts: clock(audio.dts_ticks(s)),
                    sync: true,
                    data,
                };
                w.append(&frame, Instant::now()).unwrap();
            }
            w.end_batch();
        }
    };
    // An audio-only log: a viewer joins at its live edge, after 10 groups.
    publish_groups(&mut w, 0..10);
    let log = w.log().clone();
    let (a, starts) = play_log(&mut r, 1, &w);
    publish_groups(&mut w, 10..30);
    r.w.poll_logs();
    let got = pump(&mut r, &[&a.rtp]).remove(0);
    let mut next: Map<u32, u16> = starts
        .iter()
        .map(|t| (log.tracks[t.track_index].ssrc.0, t.seq.0))
        .collect();
    assert_contiguous(&got, &mut next);
    let mut joined = Vec::new();
    for (_, _, p) in &got {
        let payload = &p[RTP_HEADER_LEN..];
        // RFC 3640 §3.2.1: AU-headers-length in bits, 16 per AU (AAC-hbr).
        let aus = usize::from(u16::from_be_bytes([payload[0], payload[1]])) / 16;
        assert_eq!(aus, 3, "the publisher's three frames in one packet");
        joined.extend_from_slice(&payload[2 + 2 * aus..]);
    }
    assert_eq!(got.len(), 20, "one packet per group");
    assert_eq!(
        joined,
        frames[30..90].concat(),
        "the frames, whole and in order"
    );
}
