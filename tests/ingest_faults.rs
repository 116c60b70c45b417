//! Issue 16, "bad input and faults": hostile and broken publishers against a running server.
//! Each test drives `shardcast serve` with a publisher that misbehaves in one way (written in
//! the test over raw RTSP, or ffmpeg and a raw client over RTMP), then proves three things:
//! the server answers that publisher as the design says, it counts what it dropped in
//! `GET /api/v1/ingest` (`dropped{reason}`), and a viewer of another stream (a looped live
//! channel) keeps receiving without a gap. Viewers of the faulty stream read it over TCP
//! and reassemble its RTP (RFC 6184) in the test, so whole access units are compared byte
//! for byte; a test fails if a frame that should arrive does not, arrives changed, or one
//! that should be dropped arrives.

mod common;

use std::time::Duration;

use common::publishers::{media, wait_published};
use common::raw_publish::{
    rss_bytes, tagged_nal, wait_ingest, BystanderWatch, RawPublisher, TcpViewer,
};
use common::Server;

/// 90 kHz ticks between frames (30 fps).
const STEP: u32 = 3000;

/// A server that lets anyone publish on `live/*` and loops the sample as channel `ch` (the
/// bystander's stream), with `extra` arguments.
fn server(extra: &[&str]) -> Server {
    let ch = format!("ch={}", media("sample.mp4"));
    let mut args = vec!["--publish", "live/*", "--live", &ch];
    args.extend_from_slice(extra);
    Server::start_logged(&args)
}

/// The frame numbers a viewer got, once frame `last` arrived (panics after `limit`).
fn tags_through(server: &Server, viewer: &TcpViewer, last: u32, limit: Duration) -> Vec<u32> {
    let arrived = viewer.wait(limit, |g| {
        g.aus.iter().any(|au| {
            au.nals
                .iter()
                .any(|n| common::raw_publish::nal_tag(n) == Some(last))
        })
    });
    let tags = viewer.tags();
    assert!(
        arrived,
        "frame {last} never reached the viewer; got {tags:?}; server log:\n{}",
        server.log_lines().join("\n")
    );
    tags.into_iter().flatten().collect()
}

/// RFC 6184 FU-A carries a NAL unit of any size, and `ingest::MAX_ACCESS_UNIT` (16 MiB) caps
/// an access unit, lowered to a quarter of the live log (`live-log-size`) when that is
/// smaller. An 8 MB IDR NAL (6,000 FU-A fragments) under the default 64 MiB log reaches a TCP
/// viewer whole, byte for byte; a 17 MiB one is dropped and counted as `too_large` while the
/// frames after it arrive; the server's RSS grows by less than the bound stated below.
#[test]
fn an_8_mb_nal_reaches_a_viewer_whole_and_one_past_the_limit_is_dropped_and_counted() {
    let server = server(&[]);
    let bystander = BystanderWatch::start(&server, "ch");
    let mut publisher = RawPublisher::start(&server, "live/big");
    publisher.send_nal(0, &tagged_nal(0, true, 3000));
    wait_published(&server, "live/big", Duration::from_secs(5));
    let viewer = TcpViewer::play(server.addr, "live/big");
    assert_eq!(
        tags_through(&server, &viewer, 0, Duration::from_secs(5)),
        [0]
    );
    let rss_start = rss_bytes(server.pid());
    let big = tagged_nal(2, true, 8_000_000);
    publisher.send_nal(STEP, &tagged_nal(1, false, 900));
    publisher.send_nal(2 * STEP, &big);
    publisher.send_nal(3 * STEP, &tagged_nal(3, false, 900));
    // Past the limit by one MiB: dropped whole, never half-delivered.
    publisher.send_nal(4 * STEP, &tagged_nal(4, true, 17 << 20));
    publisher.send_nal(5 * STEP, &tagged_nal(5, false, 900));
    publisher.send_nal(6 * STEP, &tagged_nal(6, true, 2000));
    let tags = tags_through(&server, &viewer, 6, Duration::from_secs(15));
    assert_eq!(
        tags,
        [0, 1, 2, 3, 5, 6],
        "frames in order, the 17 MiB one dropped"
    );
    // All told: the depacketizer's buffer grown to MAX_ACCESS_UNIT, the 8 MB frame in the
    // log's pages, its packets cached once by the shard, and 16 MiB for the rest.
    let total = rss_bytes(server.pid()).saturating_sub(rss_start);
    assert!(total < 48 << 20, "RSS grew {} MiB", total >> 20);
    // Memory does not grow with oversized frames: three more, each followed by a good one.
    let rss_before = rss_bytes(server.pid());
    for k in 0..3u32 {
        publisher.send_nal((7 + 2 * k) * STEP, &tagged_nal(7 + 2 * k, true, 17 << 20));
        publisher.send_nal((8 + 2 * k) * STEP, &tagged_nal(8 + 2 * k, false, 900));
    }
    let tags = tags_through(&server, &viewer, 12, Duration::from_secs(15));
    assert_eq!(tags, [0, 1, 2, 3, 5, 6, 8, 10, 12]);
    {
        let got = viewer.got.lock().unwrap();
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        let au = got
            .aus
            .iter()
            .find(|au| {
                au.nals
                    .iter()
                    .any(|n| common::raw_publish::nal_tag(n) == Some(2))
            })
            .unwrap();
        // The server puts the parameter sets (types 7, 8) before a keyframe's slices.
        let slices: Vec<&Vec<u8>> = au
            .nals
            .iter()
            .filter(|n| !matches!(n[0] & 0x1f, 7 | 8))
            .collect();
        assert_eq!(slices.len(), 1, "one slice NAL in the big access unit");
        assert!(
            slices[0] == &big,
            "the 8 MB NAL arrived changed ({} bytes)",
            slices[0].len()
        );
        // Sequence numbers run on without a gap: the dropped frame took no numbers.
        for w in got.packets.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1), "viewer sequence gap");
        }
    }
    let entry = wait_ingest(&server, "live/big", Duration::from_secs(5), |e| {
        e["dropped"]["too_large"].as_u64() == Some(4)
    });
    assert_eq!(entry["frames"].as_u64(), Some(9), "{entry}");
    // The bound: the depacketizer's one reused buffer (at most MAX_ACCESS_UNIT) was already
    // grown by the first oversized frame, so 51 MiB more of them add only the log pages of
    // three small frames and allocator noise; a server that kept or re-allocated an
    // oversized frame would grow by 16 MiB or more here.
    let grown = rss_bytes(server.pid()).saturating_sub(rss_before);
    eprintln!(
        "RSS grew {} KiB over three more 17 MiB frames",
        grown / 1024
    );
    assert!(grown < 4 << 20, "RSS grew {} KiB", grown >> 10);
    bystander.assert_unaffected(Duration::from_millis(500));
}

/// The limit is a quarter of the live log when that is below 16 MiB (`live_log` needs a
/// sample to fit a quarter of its ring): with `live-log-size = 16 MiB` a 4 MiB NAL is carried
/// whole and an 8 MB one is dropped as `too_large` by the log, and the stream goes on.
#[test]
fn a_small_live_log_lowers_the_limit_to_a_quarter_of_it() {
    let config = common::write_config("faults-small-log", "live-log-size = 16777216\n");
    let server = server(&["--config", config.to_str().unwrap()]);
    let mut publisher = RawPublisher::start(&server, "live/small");
    publisher.send_nal(0, &tagged_nal(0, true, 3000));
    wait_published(&server, "live/small", Duration::from_secs(5));
    let viewer = TcpViewer::play(server.addr, "live/small");
    assert_eq!(
        tags_through(&server, &viewer, 0, Duration::from_secs(5)),
        [0]
    );
    // A quarter of the ring, less the AVCC length prefix: the largest sample it takes.
    let fits = tagged_nal(1, true, (4 << 20) - 4);
    publisher.send_nal(STEP, &fits);
    publisher.send_nal(2 * STEP, &tagged_nal(2, true, 8_000_000));
    publisher.send_nal(3 * STEP, &tagged_nal(3, false, 900));
    assert_eq!(
        tags_through(&server, &viewer, 3, Duration::from_secs(10)),
        [0, 1, 3]
    );
    let got = viewer.got.lock().unwrap();
    let au = &got.aus[1];
    assert!(
        au.nals.iter().any(|n| n == &fits),
        "the 4 MiB NAL arrived whole"
    );
    drop(got);
    let entry = wait_ingest(&server, "live/small", Duration::from_secs(5), |e| {
        e["dropped"]["too_large"].as_u64() == Some(1)
    });
    assert_eq!(entry["frames"].as_u64(), Some(3), "{entry}");
}

/// retina (an independent, strict client) plays `url` over TCP on its own thread until a
/// video frame carries [`tagged_nal`] `last` (or `limit` passes): each frame's tag, and the
/// packets retina saw lost before it. Returns once retina's PLAY was answered.
fn retina_frames(
    url: String,
    last: u32,
    limit: Duration,
) -> std::thread::JoinHandle<Vec<(u32, u64)>> {
    let (playing_tx, playing_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        use futures::StreamExt;
        use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
        use retina::codec::CodecItem;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut session =
                Session::describe(url::Url::parse(&url).unwrap(), SessionOptions::default())
                    .await
                    .expect("retina DESCRIBE");
            session
                .setup(
                    0,
                    SetupOptions::default().transport(Transport::Tcp(Default::default())),
                )
                .await
                .expect("retina SETUP");
            let playing = session
                .play(PlayOptions::default())
                .await
                .expect("retina PLAY");
            let _ = playing_tx.send(());
            let mut demuxed = playing.demuxed().expect("demuxed");
            let mut frames = Vec::new();
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                match tokio::time::timeout_at(deadline, demuxed.next()).await {
                    Err(_) => panic!("retina: frame {last} not within {limit:?}; got {frames:?}"),
                    Ok(Some(Ok(CodecItem::VideoFrame(f)))) => {
                        // AVCC: find the tagged NAL among the frame's NAL units.
                        let mut rest = f.data();
                        let mut tag = None;
                        while rest.len() >= 4 {
                            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                            let nal = &rest[4..4 + n];
                            tag = tag.or(common::raw_publish::nal_tag(nal));
                            rest = &rest[4 + n..];
                        }
                        let tag = tag.expect("a tagged NAL in every frame");
                        frames.push((tag, f.loss() as u64));
                        if tag == last {
                            return frames;
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => panic!("retina error after {frames:?}: {e}"),
                    Ok(None) => panic!("retina: the stream ended after {frames:?}"),
                }
            }
        })
    });
    assert!(
        playing_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "retina did not get to play"
    );
    thread
}

/// RFC 6184 §5.8: a frame whose FU-A lost a middle fragment, one with a truncated FU-A (the
/// FU indicator alone, no FU header) and one whose end fragment never came are each dropped
/// whole and counted (`incomplete`, `malformed`), never the stream: the frames around them
/// reach a raw TCP viewer byte for byte, and retina receives them with no loss reported
/// (the server numbers packets by the log, so a dropped frame leaves no sequence gap).
#[test]
fn frames_with_lost_or_truncated_fragments_are_dropped_and_the_frames_around_them_arrive() {
    let server = server(&[]);
    let bystander = BystanderWatch::start(&server, "ch");
    let mut publisher = RawPublisher::start(&server, "live/frag");
    publisher.send_nal(0, &tagged_nal(0, true, 5000));
    wait_published(&server, "live/frag", Duration::from_secs(5));
    let viewer = TcpViewer::play(server.addr, "live/frag");
    assert_eq!(
        tags_through(&server, &viewer, 0, Duration::from_secs(5)),
        [0]
    );
    let retina = retina_frames(server.url("live/frag"), 7, Duration::from_secs(15));
    let frame = |n: u32, idr: bool| common::raw_publish::fu_a(&tagged_nal(n, idr, 6000), 1400);
    let send = |p: &mut RawPublisher, n: u32, payloads: &[Vec<u8>]| {
        p.send_payloads(n * STEP, payloads);
    };
    send(&mut publisher, 1, &frame(1, false));
    // Frame 2: its third of five fragments lost on the way (a sequence gap).
    let two = frame(2, false);
    assert_eq!(two.len(), 5);
    let mut out = Vec::new();
    for (k, p) in two.iter().enumerate() {
        if k == 2 {
            publisher.seq = publisher.seq.wrapping_add(1);
            continue;
        }
        publisher.packet(&mut out, k == 4, 2 * STEP, p);
    }
    publisher.rtsp.send_raw(&out);
    send(&mut publisher, 3, &frame(3, false));
    // Frame 4: its third fragment cut to the FU indicator alone.
    let mut four = frame(4, false);
    four[2].truncate(1);
    publisher.send_payloads(4 * STEP, &four);
    send(&mut publisher, 5, &frame(5, false));
    // Frame 6: its end fragment (with the marker) never sent; frame 7 follows.
    let six = frame(6, false);
    let mut out = Vec::new();
    for p in &six[..4] {
        publisher.packet(&mut out, false, 6 * STEP, p);
    }
    publisher.rtsp.send_raw(&out);
    send(&mut publisher, 7, &frame(7, true));

    let tags = tags_through(&server, &viewer, 7, Duration::from_secs(10));
    assert_eq!(
        tags,
        [0, 1, 3, 5, 7],
        "the broken frames 2, 4 and 6 dropped, the rest in order"
    );
    {
        let got = viewer.got.lock().unwrap();
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        for au in &got.aus[1..] {
            let n = au
                .nals
                .iter()
                .find_map(|n| common::raw_publish::nal_tag(n))
                .unwrap();
            let whole = tagged_nal(n, n == 7, 6000);
            assert!(au.nals.contains(&whole), "frame {n} arrived changed");
        }
        for w in got.packets.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1), "viewer sequence gap");
        }
    }
    let retina = retina.join().expect("retina played");
    let tags: Vec<u32> = retina.iter().map(|f| f.0).collect();
    assert_eq!(tags, [0, 1, 3, 5, 7], "retina's frames");
    assert!(
        retina.iter().all(|f| f.1 == 0),
        "retina saw loss: {retina:?}"
    );
    let entry = wait_ingest(&server, "live/frag", Duration::from_secs(5), |e| {
        e["dropped"]["incomplete"].as_u64() == Some(2)
    });
    assert_eq!(entry["dropped"]["malformed"].as_u64(), Some(1), "{entry}");
    assert_eq!(entry["frames"].as_u64(), Some(5), "{entry}");
    bystander.assert_unaffected(Duration::from_millis(500));
}

/// What the server does with a publisher's timestamps (`live_log::MAX_CLOCK_JUMP`): a frame
/// whose timestamp strays more than 5 s from what its arrival says is a jump of the source's
/// clock and is rebased one frame step after the last frame, as a returning publisher's
/// first frame is; a real gap (a frame that arrives as late as its timestamp says) is kept.
/// Here the publisher's 32-bit RTP clock wraps, leaps an hour ahead, falls 20 s back, then
/// pauses a real second: the viewer's timestamps advance one frame (3000 ticks) at every
/// step but the real gap, which keeps its 90,000, and the server serves on.
#[test]
fn timestamps_that_jump_or_go_back_reach_viewers_as_one_continuous_timeline() {
    let server = server(&[]);
    let mut publisher = RawPublisher::start(&server, "live/clock");
    // Wraps past 2^32 between frames 2 and 3.
    let base = u32::MAX - 2 * STEP;
    let ts = |n: u32| base.wrapping_add(n * STEP);
    publisher.send_nal(ts(0), &tagged_nal(0, true, 2000));
    wait_published(&server, "live/clock", Duration::from_secs(5));
    let viewer = TcpViewer::play(server.addr, "live/clock");
    assert_eq!(
        tags_through(&server, &viewer, 0, Duration::from_secs(5)),
        [0]
    );
    let hour = 3600 * 90_000u32;
    let sent = [
        ts(1),
        ts(2),
        ts(3),
        ts(4),
        // An hour ahead, and on from there.
        ts(5).wrapping_add(hour),
        ts(6).wrapping_add(hour),
        // Twenty seconds back.
        ts(6).wrapping_add(hour).wrapping_sub(20 * 90_000),
        ts(7).wrapping_add(hour).wrapping_sub(20 * 90_000),
    ];
    for (k, &t) in sent.iter().enumerate() {
        let n = k as u32 + 1;
        publisher.send_nal(t, &tagged_nal(n, false, 900));
    }
    tags_through(&server, &viewer, 8, Duration::from_secs(5));
    // A real pause: the next frame comes a second later and its timestamp says so (the
    // sleep is the publisher's behaviour under test, not a wait for the server).
    std::thread::sleep(Duration::from_secs(1));
    let last = sent[sent.len() - 1];
    publisher.send_nal(last.wrapping_add(90_000), &tagged_nal(9, false, 900));
    publisher.send_nal(
        last.wrapping_add(90_000 + STEP),
        &tagged_nal(10, true, 2000),
    );
    let tags = tags_through(&server, &viewer, 10, Duration::from_secs(5));
    assert_eq!(tags, (0..=10).collect::<Vec<_>>());
    let got = viewer.got.lock().unwrap();
    let steps: Vec<u32> = got
        .aus
        .windows(2)
        .map(|w| w[1].ts.wrapping_sub(w[0].ts))
        .collect();
    let mut expected = vec![STEP; 10];
    expected[8] = 90_000;
    assert_eq!(
        steps, expected,
        "the viewer's RTP timestamp steps (RFC 3550 §5.1)"
    );
    drop(got);
    // Nothing panicked: the server still answers.
    let mut c = common::RawRtsp::connect(server.addr);
    assert_eq!(
        c.request("DESCRIBE", &server.url("live/clock"), &[]).status,
        200
    );
    let entry = common::raw_publish::ingest_entry(&server, "live/clock").unwrap();
    assert_eq!(entry["frames"].as_u64(), Some(11), "{entry}");
}

/// A publisher whose TCP connection is reset in the middle of a frame (no TEARDOWN; RST, not
/// FIN): the half frame is never delivered, the server logs one line for the publisher's
/// end, its viewer keeps its RTSP session through `--publisher-timeout` (2 s; the stream is
/// `waiting` in the API) and then gets RTCP BYE (RFC 3550 §6.6), the stream and its log are
/// gone (DESCRIBE 404, no ingest entry), and a viewer of another stream never noticed.
#[test]
fn a_publisher_reset_mid_frame_leaves_viewers_waiting_for_the_timeout_then_bye() {
    let server = server(&["--publisher-timeout", "2"]);
    let bystander = BystanderWatch::start(&server, "ch");
    let mut publisher = RawPublisher::start(&server, "live/gone");
    publisher.send_nal(0, &tagged_nal(0, true, 2000));
    wait_published(&server, "live/gone", Duration::from_secs(5));
    let mut viewer = common::setup_udp_stream(server.addr, "live/gone", 1);
    let url = viewer.url.clone();
    let sid = viewer.session.clone();
    assert_eq!(
        viewer
            .rtsp
            .request("PLAY", &url, &[("Session", &sid)])
            .status,
        200
    );
    for n in 1..5 {
        publisher.send_nal(n * STEP, &tagged_nal(n, false, 900));
    }
    // The viewer gets frames 0-4, each whole. (Read before the reset: a reset peer's data
    // still unread by the server is discarded by the kernel.)
    let (rtp, rtcp) = (&viewer.socks[0].0, &viewer.socks[0].1);
    rtp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut frames = 0;
    let tag_of = |payload: &[u8]| match payload[0] & 0x1f {
        // An FU-A start: the NAL header is rebuilt from the indicator and the FU header.
        28 => common::raw_publish::nal_tag(&[&[payload[1]], &payload[2..]].concat()),
        _ => common::raw_publish::nal_tag(payload),
    };
    while frames < 5 {
        let n = rtp.recv(&mut buf).expect("frames 0-4 reach the viewer");
        frames += usize::from(common::parse_rtp(&buf[..n]).unwrap().marker);
    }
    // Half of frame 5: two of its five fragments, taken in by the server (its packet count
    // says so), then the connection is reset.
    let half = common::raw_publish::fu_a(&tagged_nal(5, false, 6000), 1400);
    let mut out = Vec::new();
    for p in &half[..2] {
        publisher.packet(&mut out, false, 5 * STEP, p);
    }
    publisher.rtsp.send_raw(&out);
    common::raw_publish::wait_ingest(&server, "live/gone", Duration::from_secs(5), |e| {
        e["packets"].as_u64() == Some(8)
    });
    let stream = publisher.rtsp.stream.try_clone().unwrap();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(publisher);
    drop(stream);
    let reset = std::time::Instant::now();
    // Nothing of the cut frame is ever sent.
    while let Ok(n) = rtp.recv(&mut buf) {
        assert_ne!(
            tag_of(&buf[12..n]),
            Some(5),
            "a fragment of the cut frame reached the viewer"
        );
    }
    // Waiting: the session answers and the stream is listed as waiting for its publisher.
    let entry =
        common::raw_publish::wait_ingest(&server, "live/gone", Duration::from_secs(2), |e| {
            e["state"] == "waiting"
        });
    assert!(reset.elapsed() < Duration::from_secs(2), "{entry}");
    assert_eq!(
        viewer
            .rtsp
            .request("GET_PARAMETER", &url, &[("Session", &sid)])
            .status,
        200,
        "the viewer's session lives on while the stream waits"
    );
    assert!(
        common::wait_for_bye(rtcp, Duration::from_secs(6)),
        "RTCP BYE after the publisher timeout"
    );
    let after = reset.elapsed();
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(5),
        "BYE {after:?} after the reset; the publisher timeout is 2 s"
    );
    // The stream and its log are released.
    let start = std::time::Instant::now();
    while common::raw_publish::ingest_entry(&server, "live/gone").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the ingest entry stays"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = common::RawRtsp::connect(server.addr);
    assert_eq!(
        c.request("DESCRIBE", &server.url("live/gone"), &[]).status,
        404
    );
    let ended: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("publisher ended") && l.contains("live/gone"))
        .collect();
    assert_eq!(
        ended.len(),
        1,
        "one log line for the publisher's end: {ended:#?}"
    );
    bystander.assert_unaffected(Duration::from_millis(500));
}

/// An RTMP peer on a blocking socket: rml_rtmp's client handshake (Adobe RTMP 1.0 §5.2) done;
/// the bytes the server sent after it.
fn rtmp_handshake(addr: std::net::SocketAddr) -> (std::net::TcpStream, Vec<u8>) {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    stream
        .write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed during the handshake");
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).unwrap();
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).unwrap();
                return (stream, remaining_bytes);
            }
        }
    }
}

/// An RTMP publisher (rml_rtmp's client session) on `rtmp://addr/APP/KEY`, accepted.
fn rtmp_publisher(
    addr: std::net::SocketAddr,
    app: &str,
    key: &str,
) -> (std::net::TcpStream, rml_rtmp::sessions::ClientSession) {
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    use std::io::{Read, Write};
    let (mut stream, rest) = rtmp_handshake(addr);
    let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let send = |stream: &mut std::net::TcpStream, r: ClientSessionResult| {
        if let ClientSessionResult::OutboundResponse(p) = r {
            stream.write_all(&p.bytes).unwrap();
        }
    };
    send(&mut stream, session.request_connection(app.into()).unwrap());
    let mut input = rest;
    let mut buf = [0u8; 4096];
    loop {
        for r in session.handle_input(&input).unwrap() {
            match r {
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    let r = session
                        .request_publishing(key.into(), PublishRequestType::Live)
                        .unwrap();
                    send(&mut stream, r);
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    return (stream, session);
                }
                ClientSessionResult::RaisedEvent(e) => {
                    assert!(!format!("{e:?}").contains("Rejected"), "{e:?}")
                }
                other => send(&mut stream, other),
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed before accepting the publish");
        input = buf[..n].to_vec();
    }
}

/// Waits up to `limit` for a log line containing every one of `needles`; all such lines.
fn log_lines_with(server: &Server, needles: &[&str], limit: Duration) -> Vec<String> {
    let end = std::time::Instant::now() + limit;
    loop {
        let lines: Vec<String> = server
            .log_lines()
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect();
        if !lines.is_empty() || std::time::Instant::now() > end {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when the server closes `stream` (end of stream or reset) within `limit`.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    let end = std::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Hostile RTMP (Adobe RTMP 1.0 §5.3.1 chunk stream): garbage right after the handshake, a
/// command chunk declaring a 16 MiB message (the 24-bit maximum, far above the 64 KiB any
/// command needs), and a publisher that vanishes (reset) in the middle of a video message.
/// Each ends that connection — the server closes the first two — with one log line naming
/// the peer; the publisher's frames before the cut were counted and its stream waits for it;
/// a viewer of another stream never noticed, and RTSP still answers.
#[test]
fn hostile_rtmp_connections_end_with_one_log_line_each_and_nobody_else_notices() {
    use std::io::Write;
    let server = server(&["--publisher-timeout", "5"]);
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let bystander = BystanderWatch::start(&server, "ch");

    // 1. Garbage after the handshake.
    let (mut garbage, _) = rtmp_handshake(rtmp);
    let peer = garbage.local_addr().unwrap().to_string();
    let noise: Vec<u8> = (0..4096u32)
        .map(|k| (k.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.write_all(&noise).unwrap();
    assert!(
        closed_within(&mut garbage, Duration::from_secs(5)),
        "garbage: not closed"
    );
    let lines = log_lines_with(&server, &["rtmp", &peer], Duration::from_secs(5));
    assert_eq!(lines.len(), 1, "garbage: one log line: {lines:#?}");

    // 2. A command message 2^24 - 1 bytes long (§5.3.1.2: type 0 header, csid 3, type 20).
    let (mut absurd, _) = rtmp_handshake(rtmp);
    let peer = absurd.local_addr().unwrap().to_string();
    let mut chunk = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
    chunk.extend_from_slice(&[0x02; 128]);
    absurd.write_all(&chunk).unwrap();
    assert!(
        closed_within(&mut absurd, Duration::from_secs(5)),
        "absurd length: not closed"
    );
    let lines = log_lines_with(&server, &["rtmp", &peer], Duration::from_secs(5));
    assert_eq!(lines.len(), 1, "absurd length: one log line: {lines:#?}");

    // 3. A publisher: sequence header and a keyframe, then half of a 20 kB video message,
    //    then a reset.
    let (mut stream, mut session) = rtmp_publisher(rtmp, "live", "vanish");
    let peer = stream.local_addr().unwrap().to_string();
    let c = common::raw_publish::sample_h264();
    // FLV AVC sequence header (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 §5.2.4.1).
    let mut seq_header = vec![
        0x17,
        0x00,
        0,
        0,
        0,
        1,
        c.profile_idc,
        c.profile_compat,
        c.level_idc,
        0xff,
        0xe1,
    ];
    seq_header.extend_from_slice(&(c.sps[0].len() as u16).to_be_bytes());
    seq_header.extend_from_slice(&c.sps[0]);
    seq_header.push(1);
    seq_header.extend_from_slice(&(c.pps[0].len() as u16).to_be_bytes());
    seq_header.extend_from_slice(&c.pps[0]);
    let video = |key: bool, nal: &[u8]| {
        let mut tag = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        tag.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        tag.extend_from_slice(nal);
        tag
    };
    let mut out = Vec::new();
    let push =
        |session: &mut rml_rtmp::sessions::ClientSession, data: Vec<u8>, ms: u32| match session
            .publish_video_data(data.into(), rml_rtmp::time::RtmpTimestamp::new(ms), false)
            .unwrap()
        {
            rml_rtmp::sessions::ClientSessionResult::OutboundResponse(p) => p.bytes,
            other => panic!("{other:?}"),
        };
    out.extend(push(&mut session, seq_header, 0));
    out.extend(push(
        &mut session,
        video(true, &tagged_nal(0, true, 3000)),
        0,
    ));
    out.extend(push(
        &mut session,
        video(false, &tagged_nal(1, false, 900)),
        33,
    ));
    let big = push(
        &mut session,
        video(false, &tagged_nal(2, false, 20_000)),
        66,
    );
    out.extend_from_slice(&big[..big.len() / 2]);
    stream.write_all(&out).unwrap();
    wait_ingest(&server, "live/vanish", Duration::from_secs(5), |e| {
        e["frames"].as_u64() == Some(2)
    });
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    let lines = log_lines_with(
        &server,
        &["rtmp publisher ended", &peer],
        Duration::from_secs(5),
    );
    assert_eq!(
        lines.len(),
        1,
        "vanished publisher: one log line: {lines:#?}"
    );
    let entry = wait_ingest(&server, "live/vanish", Duration::from_secs(5), |e| {
        e["state"] == "waiting"
    });
    assert_eq!(
        entry["frames"].as_u64(),
        Some(2),
        "the half message is no frame: {entry}"
    );

    let mut c = common::RawRtsp::connect(server.addr);
    assert_eq!(c.request("DESCRIBE", &server.url("ch"), &[]).status, 200);
    bystander.assert_unaffected(Duration::from_millis(500));
}

/// The packets `ffmpeg -stream_loop 3 -i FILE -c copy -f flv` sends, as ffprobe counts them
/// in the same output written to a file. Not simply 4 × the file's samples: ffmpeg's looping
/// leaves out an AAC frame at each loop point of some files (3 of the sample's 4 × 470 audio
/// frames are not sent, all 4 × 250 video frames are).
fn looped_flv_packets(file: &str) -> u64 {
    let out = std::env::temp_dir().join(format!("shardcast-flood-{}.flv", std::process::id()));
    let (ok, _, err) = common::run_with_timeout(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
            .args(["-stream_loop", "3", "-i", file, "-c", "copy", "-f", "flv"])
            .arg(&out),
        Duration::from_secs(20),
    );
    assert!(ok, "ffmpeg writing the looped flv: {err}");
    let (ok, listing, err) = common::run_with_timeout(
        std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=stream_index",
                "-of",
                "csv",
            ])
            .arg(&out),
        Duration::from_secs(20),
    );
    let _ = std::fs::remove_file(&out);
    assert!(ok, "ffprobe of the looped flv: {err}");
    let packets = listing.lines().filter(|l| l.starts_with("packet")).count() as u64;
    assert!(packets >= 2800, "{packets} packets in the looped flv");
    packets
}

/// An RTMP publisher far faster than real time: ffmpeg sends the sample looped four times
/// (40 s of media) with `-f flv` and no `-re`, as fast as the socket takes it. The flood
/// allowance (`live_log::FLOOD_BURST`, 10 s) lets about 10 s plus the elapsed time in; the
/// rest is dropped and counted (`flood`), the server's RSS grows by less than 24 MiB (the
/// log's pages for what went in; nothing queues), and a viewer of another stream never
/// noticed.
#[test]
fn an_rtmp_flood_is_cut_to_the_burst_counted_and_bounded() {
    let server = server(&[]);
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let bystander = BystanderWatch::start(&server, "ch");
    let rss_before = rss_bytes(server.pid());
    let started = std::time::Instant::now();
    let (ok, _, err) = common::run_with_timeout(
        std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-stream_loop",
                "3",
                "-i",
            ])
            .arg(media("sample.mp4"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{rtmp}/live/flood")),
        Duration::from_secs(20),
    );
    let elapsed = started.elapsed();
    assert!(ok, "ffmpeg: {err}");
    assert!(
        elapsed < Duration::from_secs(15),
        "ffmpeg took {elapsed:?}: no flood"
    );
    // ffmpeg is done when the kernel took its bytes; the server may still be reading them.
    // Wait until every frame ffmpeg sent is accounted for (in, or dropped as flood), or the
    // deadline: the equality is asserted below either way.
    let offered = looped_flv_packets(&media("sample.mp4"));
    let entry = wait_ingest(&server, "live/flood", Duration::from_secs(10), |e| {
        e["frames"].as_u64().unwrap_or(0) + e["dropped"]["flood"].as_u64().unwrap_or(0) >= offered
    });
    // Video at 25 fps and AAC at ~47 frames a second: 40 s offered is about 2,900 frames.
    let frames = entry["frames"].as_u64().unwrap();
    let flood = entry["dropped"]["flood"].as_u64().unwrap();
    let allowed = (10.0 + elapsed.as_secs_f64() + 1.0) * 80.0;
    assert!(
        frames as f64 <= allowed && frames >= 600,
        "{frames} frames went in over {elapsed:?}: {entry}"
    );
    assert!(flood >= 1000, "{entry}");
    // Every frame ffmpeg sent is accounted for: in, or dropped as flood.
    assert_eq!(frames + flood, offered, "{entry}");
    let grown = rss_bytes(server.pid()).saturating_sub(rss_before);
    eprintln!(
        "flood: {frames} in, {flood} dropped, in {elapsed:?}; RSS +{} KiB",
        grown >> 10
    );
    assert!(grown < 24 << 20, "RSS grew {} MiB", grown >> 20);
    bystander.assert_unaffected(Duration::from_millis(500));
}
