//! Issue 16: encoders publish over RTSP (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD) and viewers
//! play the stream through the shards while it is published. The publishers and players are
//! independent implementations started by the tests: ffmpeg's RTSP muxer (`-f rtsp`, UDP and
//! TCP interleaved) and GStreamer's `rtspclientsink`; ffmpeg, GStreamer and retina play.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::clocked::{report_error_ms, viewer_timeline, ClockedPublisher};
use common::players::ffmpeg_decode_without_warnings;
use common::publishers::{
    ffmpeg_publish, ffmpeg_publish_rtmp, finish_publisher, gst_publish, media, wait_published,
};
use common::{RawRtsp, Server};

fn publish_and_play(transport: &str) {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let url = server.url("live/cam1");
    let mut publisher = ffmpeg_publish(&media("sample.mp4"), &url, transport);
    let sdp = wait_published(&server, "live/cam1", Duration::from_secs(10));
    assert!(sdp.contains("H264/90000"), "{sdp}");
    assert!(sdp.contains("mpeg4-generic"), "{sdp}");
    // The viewer joins at the latest keyframe and plays until the publisher's end: the
    // stream waits the publisher timeout (1 s) for it to return, then sends BYE.
    let decoded = ffmpeg_decode_without_warnings(&url, transport);
    eprintln!(
        "{transport}: {} frames, {:.2} s",
        decoded.frames, decoded.end_secs
    );
    let status = publisher.wait().unwrap();
    assert!(status.success(), "the publisher failed: {status}");
    // sample.mp4 is 10 s at 30 fps; the viewer joined within the first seconds.
    assert!(
        decoded.frames >= 150,
        "{} frames decoded over {transport} ({:.1} s)",
        decoded.frames,
        decoded.end_secs
    );
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("publishing") && l.contains("live/cam1")),
        "{lines:#?}"
    );
}

#[test]
fn ffmpeg_publishes_over_tcp_and_ffmpeg_plays_every_frame_after_the_join() {
    publish_and_play("tcp");
}

#[test]
fn ffmpeg_publishes_over_udp_and_ffmpeg_plays_every_frame_after_the_join() {
    publish_and_play("udp");
}

/// retina plays a published stream from the join to the publisher's end: the first video
/// frame is a keyframe, nothing is lost, and every video frame's presentation time (relative
/// to that keyframe) is the file's — the server kept the publisher's timing exactly.
#[test]
fn retina_plays_a_published_stream_with_the_files_timing_and_no_loss() {
    use common::retina_play::{assert_live_matches_file, play_live};
    use retina::client::Transport;

    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let url = server.url("live/retina");
    let mut publisher = ffmpeg_publish(&media("sample.mp4"), &url, "tcp");
    wait_published(&server, "live/retina", Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(play_live(&url, Transport::Tcp(Default::default())));
    assert!(publisher.wait().unwrap().success());
    assert_live_matches_file(&got, std::path::Path::new(&media("sample.mp4")), 100, 0);
}

/// ffmpeg publishes over RTMP (`-f flv`, OBS's stand-in) to `rtmp://ADDR/live/obs`; ffmpeg
/// plays `rtsp://ADDR/live/obs` and decodes every frame after the join without a warning.
#[test]
fn ffmpeg_publishes_over_rtmp_and_ffmpeg_plays_it_over_rtsp() {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let mut publisher =
        ffmpeg_publish_rtmp(&media("sample.mp4"), &format!("rtmp://{rtmp}/live/obs"));
    wait_published(&server, "live/obs", Duration::from_secs(10));
    let decoded = ffmpeg_decode_without_warnings(&server.url("live/obs"), "tcp");
    eprintln!("rtmp: {} frames, {:.2} s", decoded.frames, decoded.end_secs);
    assert!(publisher.wait().unwrap().success());
    assert!(decoded.frames >= 150, "{} frames", decoded.frames);
}

/// A/V sync for RTSP viewers of an RTMP publisher: FLV carries no wall clock, so our sender
/// reports map each track's RTP time to our clock. ffmpeg records six seconds over RTSP
/// (placing the tracks by those reports, RFC 3550 §6.4.1) and every AAC frame of the
/// recording sits against the video as in the file, within EBU R37. The server's regrouping
/// holds an RTMP stream's AAC frames (`--ingest-audio-hold-ms`): mapping a group's head to
/// the group's arrival put the audio 130 ms late.
#[test]
fn rtsp_viewers_of_an_rtmp_publisher_get_audio_with_video() {
    use common::avsync::{assert_within_ebu_r37, hashed_packets, SourcePackets};

    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let mut publisher =
        ffmpeg_publish_rtmp(&media("sample.mp4"), &format!("rtmp://{rtmp}/live/lipsync"));
    wait_published(&server, "live/lipsync", Duration::from_secs(10));
    let out = std::env::temp_dir().join(format!("shardcast-lipsync-{}.mkv", std::process::id()));
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            &server.url("live/lipsync"),
            "-t",
            "6",
            "-c",
            "copy",
            "-y",
            out.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "ffmpeg recording over RTSP: {err}");
    let packets = hashed_packets(out.to_str().unwrap());
    let _ = std::fs::remove_file(&out);
    let offsets = SourcePackets::of(&media("sample.mp4"))
        .audio_against_video(&packets, "an RTSP recording of an RTMP publisher");
    assert!(offsets.len() > 200, "{} AAC frames", offsets.len());
    assert_within_ebu_r37(&offsets, "an RTSP recording of an RTMP publisher");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// Publishing is refused where no rule allows it (RTSP 403, RTMP rejected: ffmpeg fails),
/// and a second publisher on a live path is refused whichever protocol each uses.
#[test]
fn publishing_without_permission_or_onto_a_live_path_is_refused() {
    let closed = Server::start_logged(&[]);
    let url = closed.url("live/x");
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
            .arg(&url),
        Duration::from_secs(20),
    );
    assert!(!ok, "publishing without a rule must fail");
    assert!(err.contains("403"), "{err}");
    let rtmp = closed.rtmp.unwrap();
    let (ok, _, _) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{rtmp}/live/x")),
        Duration::from_secs(20),
    );
    assert!(!ok, "an RTMP publish without a rule must fail");

    let open = Server::start_logged(&["--publish", "live/*"]);
    let mut first = ffmpeg_publish(&media("sample.mp4"), &open.url("live/taken"), "tcp");
    wait_published(&open, "live/taken", Duration::from_secs(10));
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
            .arg(open.url("live/taken")),
        Duration::from_secs(20),
    );
    assert!(!ok && err.contains("403"), "second RTSP publisher: {err}");
    let (ok, _, _) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("short.mp4"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/taken", open.rtmp.unwrap())),
        Duration::from_secs(20),
    );
    assert!(!ok, "a second (RTMP) publisher on a live path must fail");
    let _ = first.kill();
    let _ = first.wait();
}

/// A publisher that vanishes (killed: no TEARDOWN, its connection reset) and a new one that
/// takes over within the publisher timeout: the viewer keeps its session and sees one stream
/// — the same SSRCs, sequence numbers without a gap, audio timestamps running on one frame
/// after the last (RFC 3550 §5.1) — and gets RTCP BYE once no publisher returns.
#[test]
fn a_viewer_rides_through_a_publisher_reconnect_with_continuous_numbering() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "3"]);
    let url = server.url("live/re");
    let mut first = ffmpeg_publish(&media("sample.mp4"), &url, "tcp");
    wait_published(&server, "live/re", Duration::from_secs(10));
    let mut viewer = common::setup_udp_stream(server.addr, "live/re", 2);
    let play = viewer
        .rtsp
        .request("PLAY", &url, &[("Session", &viewer.session)]);
    assert_eq!(play.status, 200);
    let done = Arc::new(AtomicBool::new(false));
    let collect = |sock: std::net::UdpSocket| {
        let done = done.clone();
        std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    if let Some(rtp) = common::parse_rtp(&buf[..n]) {
                        got.push((rtp, Instant::now()));
                    }
                }
            }
            got
        })
    };
    let video = collect(viewer.socks[0].0.try_clone().unwrap());
    let audio = collect(viewer.socks[1].0.try_clone().unwrap());
    std::thread::sleep(Duration::from_secs(3));
    // The stream's counters in the API are the stream's: they go on growing across
    // publishers (what the first publisher's packets counted is kept).
    let packets_in = || {
        let all = server.http_get("/api/v1/ingest").json();
        all["ingest"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "live/re"))
            .and_then(|s| s["packets"].as_u64())
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_millis(1100));
    let first_packets = packets_in();
    assert!(
        first_packets > 50,
        "{first_packets} packets in from the first publisher"
    );
    // Vanish: no TEARDOWN, the TCP connection dies with the process.
    first.kill().unwrap();
    first.wait().unwrap();
    let vanished = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    // The same encoding (same parameter sets): the stream continues. (Other parameters would
    // start a new stream: viewers' decoders need them from a new DESCRIBE.)
    let mut second = ffmpeg_publish(&media("sample.mp4"), &url, "tcp");
    std::thread::sleep(Duration::from_secs(3));
    let both_packets = packets_in();
    assert!(
        both_packets > first_packets + 50,
        "packets in go on from {first_packets} (first publisher), got {both_packets} with the second"
    );
    assert!(second.wait().unwrap().success(), "the returning publisher");
    let ended = Instant::now();
    let bye = common::wait_for_bye(&viewer.socks[1].1, Duration::from_secs(8));
    done.store(true, Ordering::Relaxed);
    let (video, audio) = (video.join().unwrap(), audio.join().unwrap());
    assert!(
        bye,
        "RTCP BYE once the publisher timeout passed with nobody back"
    );
    for (name, packets) in [("video", &video), ("audio", &audio)] {
        assert!(packets.len() > 100, "{name}: {} packets", packets.len());
        assert!(
            packets.iter().all(|(p, _)| p.ssrc == packets[0].0.ssrc),
            "{name}: one SSRC throughout"
        );
        for w in packets.windows(2) {
            assert_eq!(
                w[1].0.seq,
                w[0].0.seq.wrapping_add(1),
                "{name}: sequence numbers run on without a gap"
            );
        }
        let before = packets.iter().filter(|(_, t)| *t < vanished).count();
        let after = packets.iter().filter(|(_, t)| *t > vanished).count();
        assert!(
            before > 10 && after > 10,
            "{name}: {before} packets before, {after} after"
        );
        assert!(packets
            .iter()
            .all(|(_, t)| *t < ended + Duration::from_secs(1)));
    }
    // AAC: packets of the publisher's groups of access units (ffmpeg's RTP muxer packs up
    // to 8 of these small ones, RFC 3640 §3.2.2; the server keeps its grouping), a group's
    // 1024 ticks per frame apart — across the reconnect too.
    for w in audio.windows(2) {
        let step = w[1].0.ts.wrapping_sub(w[0].0.ts);
        assert!(
            step > 0 && step % 1024 == 0 && step <= 8 * 1024,
            "audio timestamp step {step}"
        );
    }
}

/// What ffprobe sees of `url`: the codec names of its streams.
fn ffprobe_codecs(url: &str, transport: &str) -> Vec<String> {
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(20),
    );
    assert!(ok, "ffprobe failed on {url}: {err}");
    out.lines().map(|l| l.trim().to_string()).collect()
}

fn gst_publish_and_play(protocols: &str) {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let url = server.url("live/gst");
    let publisher = gst_publish(&media("sample.mp4"), &url, protocols);
    let sdp = wait_published(&server, "live/gst", Duration::from_secs(10));
    // Both tracks are carried: the LATM audio is re-announced as RFC 3640 AAC.
    assert!(sdp.contains("H264/90000"), "{sdp}");
    assert!(sdp.contains("mpeg4-generic"), "{sdp}");
    let probe = {
        let url = url.clone();
        let transport = protocols.to_string();
        std::thread::spawn(move || ffprobe_codecs(&url, &transport))
    };
    let decoded = ffmpeg_decode_without_warnings(&url, protocols);
    eprintln!(
        "gst {protocols}: {} frames, {:.2} s",
        decoded.frames, decoded.end_secs
    );
    let mut codecs = probe.join().unwrap();
    codecs.sort();
    assert_eq!(codecs, ["aac", "h264"], "ffprobe's streams");
    // At its end rtspclientsink sends PAUSE (RFC 2326 §10.6 allows it while recording): it
    // must be answered 200, so GStreamer exits cleanly (or hangs in its own EOS: see
    // `finish_publisher`; then it must have printed nothing).
    let (status, stderr) = finish_publisher(publisher, Duration::from_secs(20));
    if let Some(status) = status {
        assert!(
            status.success(),
            "rtspclientsink failed: {status}\n{stderr}\nserver log:\n{}",
            server.log_lines().join("\n")
        );
    } else {
        assert!(
            stderr.trim().is_empty(),
            "rtspclientsink hung after: {stderr}"
        );
    }
    // sample.mp4 is 10 s at 30 fps; the viewer joined within the first seconds.
    assert!(
        decoded.frames >= 150,
        "{} frames decoded over {protocols} ({:.1} s)",
        decoded.frames,
        decoded.end_secs
    );
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("publishing") && l.contains("live/gst") && l.contains("AAC")),
        "{lines:#?}"
    );
}

#[test]
fn gstreamer_publishes_h264_and_latm_over_tcp_and_ffmpeg_plays_every_frame_after_the_join() {
    gst_publish_and_play("tcp");
}

#[test]
fn gstreamer_publishes_h264_and_latm_over_udp_and_ffmpeg_plays_every_frame_after_the_join() {
    gst_publish_and_play("udp");
}

/// A publisher's RTCP sender reports give the stream its clock (RFC 3550 §6.4.1): the
/// server's own sender reports to a viewer carry the publisher's NTP time for the viewer's RTP
/// timestamps (MediaMTX #1300: users recover the capture time from them). The publisher here
/// is a raw client whose clock is set years away from ours, so a report built from the
/// server's clock cannot pass.
#[test]
fn viewers_sender_reports_carry_the_publishers_clock() {
    let server = Server::start_logged(&["--publish", "live/*"]);
    let mut publisher = ClockedPublisher::start(server.addr, "live/sr");
    publisher.run(0, 20, 50);
    let mut viewer = common::setup_udp_stream(server.addr, "live/sr", 1);
    let url = server.url("live/sr");
    assert_eq!(
        viewer
            .rtsp
            .request("PLAY", &url, &[("Session", &viewer.session)])
            .status,
        200
    );
    publisher.run(20, 300, 50);
    // Every viewer timestamp is the publisher's, shifted by one constant.
    let (rtp, rtcp) = (&viewer.socks[0].0, &viewer.socks[0].1);
    let timeline = viewer_timeline(rtp, publisher.clock(), 300);
    assert!(
        timeline.frames.len() > 100,
        "{} frames reached the viewer",
        timeline.frames.len()
    );
    // Our sender reports: NTP time and RTP time of one instant on the publisher's clock.
    rtcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reports = 0;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(8);
    while reports < 2 && Instant::now() < deadline {
        let Ok(len) = rtcp.recv(&mut buf) else {
            continue;
        };
        let Some(error_ms) = report_error_ms(&buf[..len], publisher.clock(), timeline.shift) else {
            continue;
        };
        assert!(
            error_ms < 5.0,
            "sender report off the publisher's clock by {error_ms:.1} ms"
        );
        reports += 1;
    }
    assert!(reports >= 1, "the viewer got a sender report");
}

/// A hostile publisher — `$` frames that are no RTP, a wrong payload type, truncated AU
/// headers, then a flood of frames far faster than real time — is refused frame by frame and
/// counted (`/api/v1/ingest` `dropped`), while a viewer of a file on the same server streams on
/// without a gap and the server keeps answering.
#[test]
fn a_hostile_publisher_is_dropped_and_counted_and_nobody_else_notices() {
    let server = Server::start_logged(&["--publish", "live/*"]);
    let url = server.url("live/bad");
    // A file viewer streaming all along.
    let mut vod = common::setup_udp(&server);
    assert_eq!(
        vod.rtsp
            .request("PLAY", &vod.url, &[("Session", &vod.session)])
            .status,
        200
    );
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=bad\r\nt=0 0\r\nm=audio 0 RTP/AVP 97\r\n\
               a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
               a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n\
               a=control:streamid=0\r\n";
    let mut publisher = RawRtsp::connect(server.addr);
    publisher.send_raw(
        format!(
            "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 100\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .as_bytes(),
    );
    assert_eq!(publisher.read_response().unwrap().status, 200);
    let setup = publisher.request(
        "SETUP",
        &format!("{url}/streamid=0"),
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        )],
    );
    assert_eq!(setup.status, 200);
    let session = setup.session().unwrap();
    assert_eq!(
        publisher
            .request("RECORD", &url, &[("Session", &session)])
            .status,
        200
    );
    let frame = |payload: &[u8]| {
        let mut f = vec![b'$', 0];
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let rtp = |pt: u8, seq: u16, ts: u32, payload: &[u8]| {
        let mut p = vec![0x80, 0x80 | pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0xBAD0_0001u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    };
    let au = [0x21u8; 40];
    let good = |n: u16| {
        let mut payload = 16u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&((au.len() as u16) << 3).to_be_bytes());
        payload.extend_from_slice(&au);
        rtp(97, n, u32::from(n) * 1024, &payload)
    };
    let mut burst = Vec::new();
    // Not RTP at all, a wrong payload type, an AU header claiming more than the packet holds.
    burst.extend(frame(b"\xff\xfe garbage that is not RTP"));
    burst.extend(frame(&rtp(33, 0, 0, &au)));
    burst.extend(frame(&rtp(97, 1, 1024, &[0x00, 0x10, 0xff, 0xf8, 1, 2, 3])));
    // A flood: 3,000 frames (64 s of audio) at once; the allowance is a 10 s burst.
    for n in 2..3002u16 {
        burst.extend(frame(&good(n)));
    }
    publisher.send_raw(&burst);
    // The server answers everyone, and counts what it refused.
    let start = Instant::now();
    let dropped = loop {
        let ingest = server.http_get("/api/v1/ingest").json();
        let entry = ingest["ingest"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == "live/bad").cloned());
        if let Some(e) = entry.filter(|e| e["dropped"]["flood"].as_u64().unwrap_or(0) > 0) {
            break e;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{ingest}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let flood = dropped["dropped"]["flood"].as_u64().unwrap();
    let malformed = dropped["dropped"]["malformed"].as_u64().unwrap();
    let frames = dropped["frames"].as_u64().unwrap();
    assert!(malformed >= 1, "{dropped}");
    // About 10 s of 1024-sample frames at 48 kHz went in; the rest is counted as flood.
    assert!((400..=520).contains(&frames), "{dropped}");
    assert!(flood >= 2400, "{dropped}");
    let mut describe = RawRtsp::connect(server.addr);
    assert_eq!(
        describe
            .request("DESCRIBE", &server.url("sample"), &[])
            .status,
        200
    );
    // The file viewer never missed a packet.
    let sock = &vod.socks[0].0;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut seqs = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            seqs.push(common::parse_rtp(&buf[..n]).unwrap().seq);
        }
    }
    assert!(seqs.len() > 50, "{} packets", seqs.len());
    for w in seqs.windows(2) {
        assert_eq!(
            w[1],
            w[0].wrapping_add(1),
            "the file viewer's stream has a gap"
        );
    }
}

/// RTMP carries one AAC frame per FLV tag. The server holds them up to
/// `--ingest-audio-hold-ms` (default 150) so RTSP viewers get several per RFC 3640 packet
/// (§3.2.2), as RTSP publishers send them: sample.mp4's 64 kbit/s 48 kHz AAC goes six frames
/// (107 ms) to a packet by default, as a looped channel of it does, three (43 ms) with a
/// 50 ms hold (fewer when the publisher's timing stretches a group past the hold). Every
/// frame arrives whole and in the file's order (the AU sizes are a run of
/// the file's), each packet's timestamp one group after the last. With the hold off (`0`)
/// each frame is its own packet, as before.
#[test]
fn rtmp_aac_frames_reach_rtsp_viewers_grouped_within_the_hold() {
    use common::players::ffprobe;

    let sample = media("sample.mp4");
    let file_sizes: Vec<usize> = ffprobe(&[
        "-select_streams",
        "a:0",
        "-show_entries",
        "packet=size",
        "-of",
        "csv=p=0",
        &sample,
    ])
    .lines()
    .map(|l| l.trim().trim_end_matches(','))
    .filter(|l| !l.is_empty())
    .map(|l| l.parse().unwrap())
    .collect();
    // (hold, frames most packets have, most frames the hold's span allows: the first frame
    // and as many 1024-sample steps as fit in it at 48 kHz).
    for (hold, group, most) in [("default", 6usize, 8usize), ("50", 3, 3), ("0", 1, 1)] {
        let mut args = vec!["--publish", "live/*", "--publisher-timeout", "1"];
        if hold != "default" {
            args.extend(["--ingest-audio-hold-ms", hold]);
        }
        let server = Server::start_logged(&args);
        let rtmp = server.rtmp.expect("the server printed its RTMP address");
        let mut publisher = ffmpeg_publish_rtmp(&sample, &format!("rtmp://{rtmp}/live/aac"));
        wait_published(&server, "live/aac", Duration::from_secs(10));
        let mut viewer = common::setup_udp_stream(server.addr, "live/aac", 2);
        let url = server.url("live/aac");
        let play = viewer
            .rtsp
            .request("PLAY", &url, &[("Session", &viewer.session)]);
        assert_eq!(play.status, 200);
        let sock = &viewer.socks[1].0;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut packets: Vec<Vec<u8>> = Vec::new();
        let mut buf = [0u8; 2048];
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                packets.push(buf[..n].to_vec());
            }
        }
        let _ = publisher.kill();
        let _ = publisher.wait();
        assert!(
            packets.len() > 15,
            "hold {hold}: {} audio packets",
            packets.len()
        );
        let mut sizes = Vec::new();
        let mut counts = Vec::new();
        for p in &packets {
            let aus = common::aac_units_completed(p);
            assert!(aus >= 1, "hold {hold}: an unfragmented packet per group");
            for k in 0..aus {
                sizes.push(usize::from(
                    u16::from_be_bytes([p[14 + 2 * k], p[15 + 2 * k]]) >> 3,
                ));
            }
            counts.push(aus);
        }
        for (k, w) in packets.windows(2).enumerate() {
            let (a, b) = (
                common::parse_rtp(&w[0]).unwrap(),
                common::parse_rtp(&w[1]).unwrap(),
            );
            assert_eq!(b.seq, a.seq.wrapping_add(1), "hold {hold}: no packet lost");
            assert_eq!(
                b.ts.wrapping_sub(a.ts),
                1024 * counts[k] as u32,
                "hold {hold}: packet {k}'s timestamp is one group ({} frames) after the last",
                counts[k]
            );
        }
        // A group the publisher's timing stretches past the hold goes out short (ffmpeg's
        // FLV tags arrive with a few ms of jitter: with a 50 ms hold about one packet in six
        // has 2); small frames (the encoder's first) let the budget take one more.
        assert!(
            sizes.len() > 100,
            "hold {hold}: {} frames in 3 s",
            sizes.len()
        );
        let full = counts.iter().filter(|&&n| n >= group).count();
        assert!(
            counts.iter().all(|&n| n <= most) && full * 2 >= counts.len(),
            "hold {hold}: frames per packet {counts:?}, expected at most {most}, mostly {group}"
        );
        assert!(
            file_sizes.windows(sizes.len()).any(|w| w == &sizes[..]),
            "hold {hold}: the {} frames received are a run of the file's frames",
            sizes.len()
        );
    }
}
