use super::*;
use crate::media::library::SAMPLE_MP4;
use crate::packetize::DEFAULT_PAYLOAD_BUDGET;

fn sample_file() -> MediaFile {
    MediaFile::from_static("sample", SAMPLE_MP4).unwrap()
}

fn specs(file: &MediaFile) -> Vec<LogTrackSpec> {
    file.index
        .tracks
        .iter()
        .map(|t| LogTrackSpec {
            kind: t.kind,
            codec: t.codec.clone(),
        })
        .collect()
}

fn wakers(n: usize) -> Vec<Arc<Waker>> {
    (0..n).map(|_| Arc::new(Waker::new().unwrap())).collect()
}

/// When AAC frame `n` (1024 samples at 48 kHz) arrives from a real-time publisher that
/// started at `t0` (the flood allowance never runs out).
fn real_time(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_micros(n * 21_334)
}

/// A frame whose bytes say which frame it is: `n` as 8 bytes, repeated.
fn patterned(n: u64, len: usize) -> Vec<u8> {
    n.to_be_bytes().iter().copied().cycle().take(len).collect()
}

fn aac_frame(track: usize, n: u64, data: &[u8]) -> Frame<'_> {
    Frame {
        track,
        pts: n as i64 * 1024,
        dts: n as i64 * 1024,
        sync: true,
        data,
    }
}

#[test]
fn appended_samples_read_back_as_the_file_had_them_with_packet_counts_the_packetizer_agrees_with() {
    let file = sample_file();
    let now = Instant::now();
    let mut w = LogWriter::create(
        "live/cam",
        &specs(&file),
        DEFAULT_CAPACITY,
        DEFAULT_PAYLOAD_BUDGET,
        wakers(2),
        now,
    )
    .unwrap();
    let bytes = file.bytes.as_slice();
    let video = &file.index.tracks[0];
    for (k, s) in video.samples.iter().enumerate().take(60) {
        let data = &bytes[s.offset as usize..s.offset as usize + s.len as usize];
        let frame = Frame {
            track: 0,
            pts: video.pts_ticks(s),
            dts: video.dts_ticks(s),
            sync: s.sync,
            data,
        };
        assert_eq!(w.append(&frame, now), Ok(k as u64));
    }
    let log = w.log().clone();
    let readable = log.pin(0);
    let ring = log.media.bytes.as_slice();
    let mut packetizer = Packetizer::new(&video.codec, DEFAULT_PAYLOAD_BUDGET).unwrap();
    let mut packets = 0u64;
    for (k, s) in video.samples.iter().enumerate().take(60) {
        let Lookup::Ready(got) = log.lookup(0, k as u64, readable) else {
            panic!("sample {k} not readable");
        };
        assert_eq!((got.sync, got.pts), (s.sync, video.pts_ticks(s)));
        assert_eq!(got.packets_before, packets, "sample {k}");
        let at = got.as_sample(log.capacity());
        let read = &ring[at.offset as usize..at.offset as usize + at.len as usize];
        assert_eq!(
            read,
            &bytes[s.offset as usize..s.offset as usize + s.len as usize]
        );
        packetizer.begin_sample(*s);
        while packetizer.next_packet(bytes).unwrap().is_some() {
            packets += 1;
        }
    }
    assert_eq!(log.lookup(0, 60, readable), Lookup::NotYet);
    assert_eq!(log.lookup(1, 0, readable), Lookup::NotYet);
    let key = log.latest_keyframe(0, readable).unwrap();
    assert!(key.sync);
    assert!(video.samples[key.n as usize].sync);
    assert!(video.samples[key.n as usize + 1..60]
        .iter()
        .all(|s| !s.sync));
    log.unpin(0);
}

#[test]
fn a_small_ring_wraps_old_samples_go_and_samples_never_straddle_the_end() {
    let file = sample_file();
    let now = Instant::now();
    let audio = specs(&file)
        .into_iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .collect::<Vec<_>>();
    let mut w = LogWriter::create("a", &audio, MIN_CAPACITY, 1200, wakers(1), now).unwrap();
    let cap = w.log().capacity() as u64;
    for n in 0..1000u64 {
        let data = patterned(n, 300 + (n as usize * 37) % 900);
        w.append(&aac_frame(0, n, &data), real_time(now, n))
            .unwrap();
    }
    let log = w.log().clone();
    let readable = log.pin(0);
    let ring = log.media.bytes.as_slice();
    assert_eq!(log.lookup(0, 0, readable), Lookup::Gone);
    let mut readable_samples = 0;
    for n in 0..1000u64 {
        if let Lookup::Ready(s) = log.lookup(0, n, readable) {
            readable_samples += 1;
            assert!(
                s.pos % cap + u64::from(s.len) <= cap,
                "sample {n} straddles the end"
            );
            let at = s.as_sample(log.capacity());
            let got = &ring[at.offset as usize..at.offset as usize + at.len as usize];
            assert_eq!(got, &patterned(n, s.len as usize)[..], "sample {n}");
        }
    }
    // Half the ring is readable: roughly 32 KiB of ~750-byte frames.
    assert!((30..=60).contains(&readable_samples), "{readable_samples}");
    log.unpin(0);
}

#[test]
fn a_pin_stops_the_writer_from_overwriting_what_a_pass_may_read_and_the_frame_is_counted() {
    let file = sample_file();
    let now = Instant::now();
    let audio = specs(&file)
        .into_iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .collect::<Vec<_>>();
    let mut w = LogWriter::create("a", &audio, MIN_CAPACITY, 1200, wakers(2), now).unwrap();
    let data = vec![7u8; 1000];
    for n in 0..40 {
        w.append(&aac_frame(0, n, &data), real_time(now, n))
            .unwrap();
    }
    let log = w.log().clone();
    let readable = log.pin(1);
    let mut n = 40;
    let stalled = loop {
        match w.append(&aac_frame(0, n, &data), real_time(now, n)) {
            Ok(_) => n += 1,
            Err(r) => break r,
        }
        assert!(n < 1000, "the writer never met the pin");
    };
    assert_eq!(stalled, DropReason::ReaderStalled);
    // Everything readable when the pass pinned is still intact.
    let ring = log.media.bytes.as_slice();
    for k in 0..n {
        if let Lookup::Ready(s) = log.lookup(0, k, readable) {
            let at = s.as_sample(log.capacity());
            assert!(ring[at.offset as usize..][..1000].iter().all(|&b| b == 7));
        }
    }
    let stalled_count = log.counters.dropped[DropReason::ALL
        .iter()
        .position(|&r| r == DropReason::ReaderStalled)
        .unwrap()]
    .load(Ordering::Relaxed);
    assert_eq!(stalled_count, 1);
    log.unpin(1);
    assert!(w.append(&aac_frame(0, n, &data), real_time(now, n)).is_ok());
}

#[test]
fn a_returning_publisher_continues_the_timeline_one_frame_after_the_last() {
    let file = sample_file();
    let now = Instant::now();
    let audio = specs(&file)
        .into_iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .collect::<Vec<_>>();
    let mut w = LogWriter::create("a", &audio, MIN_CAPACITY, 1200, wakers(1), now).unwrap();
    let data = [1u8; 10];
    for n in 0..5 {
        w.append(&aac_frame(0, n, &data), real_time(now, n))
            .unwrap();
    }
    w.resume();
    // The new publisher starts its clock somewhere else entirely.
    let frame = Frame {
        pts: 9_000_000,
        dts: 9_000_000,
        ..aac_frame(0, 0, &data)
    };
    let n = w.append(&frame, now).unwrap();
    let log = w.log().clone();
    let readable = log.pin(0);
    let Lookup::Ready(s) = log.lookup(0, n, readable) else {
        panic!()
    };
    assert_eq!(s.pts, 5 * 1024);
    log.unpin(0);
}

/// A viewer whose PLAY is answered before a track's first frame gets RTP-Info from
/// `next_numbers` (RFC 2326 §12.33); the first frame, whatever its source timestamp (a random
/// RTP start, RFC 3550 §5.1), must then carry exactly those numbers. It once kept the source's
/// time: retina saw the first frame 1,790,718,923 ticks after the announced start.
#[test]
fn a_tracks_first_frame_carries_the_numbers_announced_before_it() {
    let file = sample_file();
    let now = Instant::now();
    let mut w = LogWriter::create("a", &specs(&file), MIN_CAPACITY, 1200, wakers(1), now).unwrap();
    let log = w.log().clone();
    let (video, audio) = (0, 1);
    let announced = log.tracks[video].next_numbers();
    assert_eq!(announced, (0, 0));
    // Audio first (as the sample's file order has it), its source time far from zero.
    let data = [1u8; 10];
    let first_audio = Frame {
        pts: 3_000_000_123,
        dts: 3_000_000_123,
        ..aac_frame(audio, 0, &data)
    };
    w.append(&first_audio, now).unwrap();
    let nal = [0, 0, 0, 6, 0x65, 0x88, 0x84, 0x00, 0x33, 0xff];
    let key = Frame {
        track: video,
        pts: 1_790_718_923,
        dts: 1_790_718_923,
        sync: true,
        data: &nal,
    };
    let n = w.append(&key, now).unwrap();
    let readable = log.pin(0);
    let Lookup::Ready(s) = log.lookup(video, n, readable) else {
        panic!("the keyframe is readable")
    };
    assert_eq!((s.packets_before, s.pts), announced);
    // Later frames keep their spacing from it.
    let next = Frame {
        pts: 1_790_718_923 + 3600,
        dts: 1_790_718_923 + 3600,
        sync: false,
        ..key
    };
    let n2 = w.append(&next, now).unwrap();
    let Lookup::Ready(s2) = log.lookup(video, n2, readable) else {
        panic!("the second frame is readable")
    };
    assert_eq!(s2.pts, 3600);
    log.unpin(0);
}

#[test]
fn oversized_frames_and_unknown_tracks_are_dropped_and_counted() {
    let file = sample_file();
    let now = Instant::now();
    let audio = specs(&file)
        .into_iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .collect::<Vec<_>>();
    let mut w = LogWriter::create("a", &audio, MIN_CAPACITY, 1200, wakers(1), now).unwrap();
    let big = vec![0u8; MIN_CAPACITY / 4 + 1];
    assert_eq!(
        w.append(&aac_frame(0, 0, &big), now),
        Err(DropReason::TooLarge)
    );
    assert_eq!(
        w.append(&aac_frame(3, 0, &[1]), now),
        Err(DropReason::Malformed)
    );
    assert_eq!(w.log().tracks[0].published(), 0);
}

/// A reader thread pinning, reading and checking every readable sample's bytes while the
/// writer laps a small ring many times: it must never see a sample's bytes change.
#[test]
fn concurrent_readers_see_whole_samples_or_none() {
    let file = sample_file();
    let now = Instant::now();
    let audio = specs(&file)
        .into_iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .collect::<Vec<_>>();
    let mut w = LogWriter::create("a", &audio, MIN_CAPACITY, 1200, wakers(1), now).unwrap();
    let log = w.log().clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut checked = 0u64;
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let readable = log.pin(0);
                let ring = log.media.bytes.as_slice();
                for _ in 0..16 {
                    match log.lookup(0, next, readable) {
                        Lookup::Ready(s) => {
                            let at = s.as_sample(log.capacity());
                            let got =
                                &ring[at.offset as usize..at.offset as usize + at.len as usize];
                            assert_eq!(got, &patterned(next, s.len as usize)[..], "sample {next}");
                            checked += 1;
                            next += 1;
                        }
                        Lookup::NotYet => break,
                        Lookup::Gone => {
                            next = log.latest_keyframe(0, readable).map_or(next + 1, |s| s.n);
                        }
                    }
                }
                log.unpin(0);
            }
            checked
        })
    };
    let mut stalled = 0;
    for n in 0..50_000u64 {
        let data = patterned(n, 200 + (n as usize * 131) % 1500);
        if w.append(&aac_frame(0, n, &data), real_time(now, n)) == Err(DropReason::ReaderStalled) {
            // The patterned bytes name the sample number, which a dropped frame keeps: retry.
            stalled += 1;
            while w
                .append(&aac_frame(0, n, &data), real_time(now, n))
                .is_err()
            {
                std::thread::yield_now();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let checked = reader.join().unwrap();
    assert!(
        checked > 100,
        "reader checked {checked} samples ({stalled} stalls)"
    );
}

#[test]
fn a_publisher_faster_than_real_time_is_cut_to_the_burst_and_counted() {
    let file = sample_file();
    let t0 = Instant::now();
    let audio = specs(&file)
        .into_iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .collect::<Vec<_>>();
    let mut w = LogWriter::create("a", &audio, DEFAULT_CAPACITY, 1200, wakers(1), t0).unwrap();
    let data = [3u8; 100];
    let rate = f64::from(w.log().tracks[0].clock_rate_hz());
    let frame_secs = 1024.0 / rate;
    // Everything at once: the burst's worth of media goes in, the rest is dropped.
    let mut accepted = 0u64;
    for n in 0..2000 {
        if w.append(&aac_frame(0, n, &data), t0).is_ok() {
            accepted += 1;
        }
    }
    let burst = (FLOOD_BURST.as_secs_f64() / frame_secs) as u64;
    assert!(
        accepted.abs_diff(burst) <= 1,
        "{accepted} accepted, burst {burst}"
    );
    let flood = DropReason::ALL
        .iter()
        .position(|&r| r == DropReason::Flood)
        .unwrap();
    assert_eq!(
        w.log().counters.dropped[flood].load(Ordering::Relaxed),
        2000 - accepted
    );
    // A second later, a second's worth more.
    let t1 = t0 + Duration::from_secs(1);
    let mut more = 0;
    for n in accepted..accepted + 200 {
        if w.append(&aac_frame(0, n, &data), t1).is_ok() {
            more += 1;
        }
    }
    let per_second = (1.0 / frame_secs) as i64;
    assert!((more - per_second).abs() <= 1, "{more} accepted after 1 s");
    // A jump in the source's timestamps costs one frame at most, not the allowance.
    let t2 = t1 + FLOOD_BURST;
    let jump = Frame {
        pts: 1 << 40,
        dts: 1 << 40,
        ..aac_frame(0, 0, &data)
    };
    assert!(w.append(&jump, t2).is_ok());
    assert!(w.append(&aac_frame(0, 0, &data), t2).is_ok());
}

/// A source whose timestamps leap an hour ahead, then go 20 s back, is rebased each time so
/// the log's timeline runs on one frame step after the last; a real gap (frames arriving as
/// late as their timestamps say) is kept.
#[test]
fn clock_jumps_are_rebased_and_real_gaps_are_kept() {
    let file = sample_file();
    let t0 = Instant::now();
    let audio = specs(&file)
        .into_iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .collect::<Vec<_>>();
    let mut w = LogWriter::create("a", &audio, DEFAULT_CAPACITY, 1200, wakers(1), t0).unwrap();
    let rate = i64::from(w.log().tracks[0].clock_rate_hz());
    let data = [5u8; 10];
    let at = |pts: i64| Frame {
        pts,
        dts: pts,
        ..aac_frame(0, 0, &data)
    };
    let mut pts_of = Vec::new();
    let mut push = |w: &mut LogWriter, pts: i64, arrival: Instant| {
        let n = w.append(&at(pts), arrival).unwrap();
        let log = w.log().clone();
        let readable = log.pin(0);
        let Lookup::Ready(s) = log.lookup(0, n, readable) else {
            panic!("sample {n}")
        };
        log.unpin(0);
        pts_of.push(s.pts);
    };
    for n in 0..5 {
        push(&mut w, n * 1024, real_time(t0, n as u64));
    }
    // An hour ahead, then on from there.
    let hour = 3600 * rate;
    push(&mut w, hour + 5 * 1024, real_time(t0, 5));
    push(&mut w, hour + 6 * 1024, real_time(t0, 6));
    // 20 s back.
    push(&mut w, hour - 20 * rate, real_time(t0, 7));
    push(&mut w, hour - 20 * rate + 1024, real_time(t0, 8));
    // A real 8 s gap: the frame arrives 8 s later and says so.
    push(
        &mut w,
        hour - 12 * rate + 1024,
        real_time(t0, 8) + Duration::from_secs(8),
    );
    assert_eq!(
        pts_of,
        [
            0,
            1024,
            2048,
            3072,
            4096,
            5120,
            6144,
            7168,
            8192,
            8192 + 8 * rate
        ],
        "one frame step across each jump, the real gap kept"
    );
}

/// AAC frames that came in one publisher packet (a batch) are published together and keep
/// their grouping: the frames after the first join its packet (one packet, so one sequence
/// number, for the group), within the payload budget; frames of separate packets never join.
#[test]
fn aac_frames_of_one_packet_are_published_together_and_keep_their_grouping() {
    let file = sample_file();
    let t0 = Instant::now();
    let mut w = LogWriter::create(
        "live/cam",
        &specs(&file),
        DEFAULT_CAPACITY,
        DEFAULT_PAYLOAD_BUDGET,
        wakers(1),
        t0,
    )
    .unwrap();
    let audio = 1;
    let data: Vec<Vec<u8>> = (0..8).map(|n| patterned(n, 340)).collect();
    // One packet of three frames.
    w.begin_batch();
    for n in 0..3 {
        w.append(&aac_frame(audio, n, &data[n as usize]), real_time(t0, n))
            .unwrap();
        assert_eq!(
            w.log().tracks[audio].published(),
            0,
            "nothing shows mid-batch"
        );
    }
    w.end_batch();
    assert_eq!(w.log().tracks[audio].published(), 3);
    // Then a packet of one frame, and one of five that the budget splits.
    w.begin_batch();
    w.append(&aac_frame(audio, 3, &data[3]), real_time(t0, 3))
        .unwrap();
    w.end_batch();
    w.begin_batch();
    for n in 4..8 {
        let big = patterned(n, 500);
        w.append(&aac_frame(audio, n, &big), real_time(t0, n))
            .unwrap();
    }
    w.end_batch();
    let log = w.log();
    let got: Vec<(bool, u64)> = (0..8)
        .map(|n| match log.lookup(audio, n, 0) {
            Lookup::Ready(s) => (s.joins, s.packets_before),
            other => panic!("sample {n}: {other:?}"),
        })
        .collect();
    // 4 + 500-byte frames with 4 bytes of AU headers each against a ~1,400-byte budget: two
    // per packet.
    assert_eq!(
        got,
        [
            (false, 0),
            (true, 1),
            (true, 1),
            (false, 1),
            (false, 2),
            (true, 3),
            (false, 3),
            (true, 4),
        ]
    );
    assert_eq!(log.tracks[audio].next_numbers().0, 4, "four packets in all");
    // The groups' bytes lie back to back: one slice of the mapping per packet.
    for n in [1, 2] {
        let (Lookup::Ready(prev), Lookup::Ready(s)) =
            (log.lookup(audio, n - 1, 0), log.lookup(audio, n, 0))
        else {
            panic!()
        };
        assert_eq!(prev.pos + u64::from(prev.len), s.pos);
    }
}

#[test]
fn a_tracks_earliest_arrival_is_its_least_delayed_sample_and_samples_are_found_by_decode_time() {
    let file = sample_file();
    let t0 = Instant::now();
    let mut w = LogWriter::create(
        "live/cam",
        &specs(&file),
        DEFAULT_CAPACITY,
        DEFAULT_PAYLOAD_BUDGET,
        wakers(1),
        t0,
    )
    .unwrap();
    let audio = 1;
    assert_eq!(
        w.log().earliest_arrival_lag_ns(audio, 0),
        None,
        "no sample yet"
    );
    // Groups of four AAC frames, each sent as ffmpeg's RTP muxer does: when the next frame
    // comes, so the group's first waited four frame times and its last one.
    let data: Vec<Vec<u8>> = (0..12).map(|n| patterned(n, 200)).collect();
    for group in 0..3u64 {
        let sent = real_time(t0, group * 4 + 4);
        w.begin_batch();
        for n in group * 4..group * 4 + 4 {
            w.append(&aac_frame(audio, n, &data[n as usize]), sent)
                .unwrap();
        }
        w.end_batch();
    }
    let log = w.log();
    let first = match log.lookup(audio, 0, 0) {
        Lookup::Ready(s) => s,
        other => panic!("{other:?}"),
    };
    let lag = log.earliest_arrival_lag_ns(audio, 0).unwrap();
    // Frame n decodes at n · 1024 / 48 kHz after the first; the least delayed is a group's
    // last, one frame time (21.333 ms) after it was due.
    let due_first = i128::from(first.dts) * 1_000_000_000 / 48_000;
    let one_frame = 1_000_000_000 * 1024 / 48_000;
    // The first frame was due at t0 (the log's epoch): the lag measured from there.
    let late = lag + due_first;
    assert!(
        (late - one_frame).abs() < 50_000,
        "earliest lag {lag} ns: {late} ns after the frames' due times"
    );
    // Sender reports look at the last few samples' presentation times: the last group's
    // last frame gives the same lag; its first frame alone waited four frame times.
    let recent = log.recent_presentation_lag_ns(audio, 4).unwrap();
    assert!((recent - lag).abs() < 50_000, "{recent} against {lag}");
    let head = match log.lookup(audio, 8, 0) {
        Lookup::Ready(s) => i128::from(s.arrival_ns) - i128::from(s.pts) * 1_000_000_000 / 48_000,
        other => panic!("{other:?}"),
    };
    assert!(head - recent > 3 * one_frame, "{head} against {recent}");
    assert_eq!(log.first_decoding_from(audio, first.dts + 5 * 1024, 0), 5);
    assert_eq!(
        log.first_decoding_from(audio, first.dts + 5 * 1024 - 1, 0),
        5
    );
    assert_eq!(
        log.first_decoding_from(audio, first.dts + 40 * 1024, 0),
        12,
        "not yet written"
    );
}
