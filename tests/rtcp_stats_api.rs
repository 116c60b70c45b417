//! RTCP receiver reports end to end: what viewers report reaches `/api/v1/sessions` and
//! `/metrics`.
//!
//! - ffmpeg and GStreamer (independent RTCP senders) play the sample; the API shows their
//!   sessions on the right stream with non-zero jitter and round-trip time from their RRs.
//! - A viewer whose socket loses every 10th packet reports it (RR computed as RFC 3550
//!   Appendix A.3 says); the API shows ~10 % loss within 10 s, while a second, loss-free
//!   viewer keeps 0 %.
//! - Malformed RTCP (short, wrong version, lengths past the end, bad padding, blocks for
//!   unknown SSRCs, strangers, a 10,000 packets/s flood) is counted in `/metrics`, changes no
//!   viewer's figures, and the server keeps streaming to everyone.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{parse_rtp, setup_udp, Server};
use serde_json::Value;
use shardcast::wire::rtcp::{write_receiver_report, ReportBlock, MAX_RTCP_COMPOUND};
use shardcast::wire::rtp::Ssrc;

/// Polls `/api/v1/sessions` until `pred` holds for some session or `limit` passes.
fn wait_for_session(server: &Server, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + limit;
    let mut last = Value::Null;
    while Instant::now() < end {
        let r = server.http_get("/api/v1/sessions");
        assert_eq!(r.status, 200);
        last = r.json();
        if let Some(s) = last["sessions"]
            .as_array()
            .and_then(|a| a.iter().find(|s| pred(s)))
        {
            return s.clone();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no session matched within {limit:?}; last answer: {last:#}");
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// A child process killed on drop.
struct Player(Child);

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Player {
    Player(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e} (scripts/install-test-deps.sh)")),
    )
}

/// The session of the player at `peer_ip` has jitter and RTT from its own reports.
fn reported_quality(server: &Server, who: &str) -> Value {
    let s = wait_for_session(server, Duration::from_secs(9), |s| {
        s["stream"] == "sample"
            && num(s, "jitter_ms").is_some_and(|j| j > 0.0)
            && num(s, "rtt_ms").is_some_and(|r| r > 0.0)
    });
    assert_eq!(s["transport"], "udp", "{who}: {s:#}");
    assert!(s["reports_received"].as_u64().unwrap() >= 1, "{who}: {s:#}");
    // Loopback: a round trip well under a second; jitter under a frame interval or so.
    let rtt = num(&s, "rtt_ms").unwrap();
    assert!(rtt < 1000.0, "{who}: RTT {rtt} ms");
    s
}

#[test]
fn ffmpeg_receiver_reports_show_jitter_and_rtt_in_the_api() {
    let server = Server::start(&[]);
    let _ffmpeg = spawn(Command::new("ffmpeg").args([
        "-hide_banner",
        "-nostdin",
        "-rtsp_transport",
        "udp",
        "-i",
        &server.url("sample"),
        "-f",
        "null",
        "-",
    ]));
    let s = reported_quality(&server, "ffmpeg");
    assert!(s["packets_sent"].as_u64().unwrap() > 0, "{s:#}");
    // The whole server's distributions include it.
    let stats = server.http_get("/api/v1/stats").json();
    assert!(
        stats["jitter_ms"]["count"].as_u64().unwrap() >= 1,
        "{stats:#}"
    );
    assert!(stats["rtt_ms"]["count"].as_u64().unwrap() >= 1, "{stats:#}");
}

#[test]
fn gstreamer_receiver_reports_show_jitter_and_rtt_in_the_api() {
    let server = Server::start(&[]);
    let location = format!("location={}", server.url("sample"));
    let _gst = spawn(Command::new("gst-launch-1.0").args([
        "-q",
        "rtspsrc",
        &location,
        "protocols=udp",
        "name=src",
        "src.",
        "!",
        "queue",
        "!",
        "fakesink",
        "src.",
        "!",
        "queue",
        "!",
        "fakesink",
    ]));
    reported_quality(&server, "GStreamer");
}

/// RFC 3550 Appendix A.1/A.3/A.8 receiver state for one source, as a player keeps it.
#[derive(Default)]
struct Reception {
    ssrc: u32,
    base_seq: Option<u32>,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    jitter: f64,
    last_transit: Option<f64>,
}

impl Reception {
    fn on_packet(&mut self, ssrc: u32, seq: u16, rtp_ts: u32, arrival_units: f64) {
        self.ssrc = ssrc;
        if self.base_seq.is_none() {
            self.base_seq = Some(u32::from(seq));
            self.max_seq = seq;
        } else if seq < self.max_seq && self.max_seq - seq > 0x8000 {
            self.cycles += 0x1_0000;
            self.max_seq = seq;
        } else if seq > self.max_seq {
            self.max_seq = seq;
        }
        self.received += 1;
        let transit = arrival_units - f64::from(rtp_ts);
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    fn extended_max(&self) -> u32 {
        self.cycles + u32::from(self.max_seq)
    }

    /// A receiver report block (RFC 3550 §6.4.1, A.3) with `lsr`/`dlsr` as given.
    fn report_block(&mut self, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.extended_max() - self.base_seq.unwrap_or(0) + 1;
        let lost = expected as i64 - i64::from(self.received);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)) as u32
        };
        ReportBlock {
            ssrc: Ssrc(self.ssrc),
            fraction_lost: fraction.min(255) as u8,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter as u32,
            lsr,
            dlsr,
        }
    }
}

/// An RR with one block plus an SDES CNAME (a valid compound packet, RFC 3550 §6.1).
fn receiver_report(reporter: u32, block: &ReportBlock) -> Vec<u8> {
    let mut p = [0u8; MAX_RTCP_COMPOUND];
    let n = write_receiver_report(&mut p, Ssrc(reporter), &[*block], Some("t"));
    p[..n].to_vec()
}

/// The middle 32 bits of an SR's NTP timestamp (RFC 3550 §6.4.1 LSR), if `d` starts with one.
fn sender_report_lsr(d: &[u8]) -> Option<u32> {
    (d.len() >= 28 && d[1] == 200).then(|| u32::from_be_bytes([d[10], d[11], d[12], d[13]]))
}

/// Our NTP clock as the middle 32 bits, for DLSR arithmetic.
fn ntp_middle_now() -> u32 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = (d.as_secs() + 2_208_988_800) as u32;
    let frac = ((u64::from(d.subsec_nanos()) << 16) / 1_000_000_000) as u32;
    (secs << 16) | frac
}

/// A raw UDP viewer of the sample's video track.
struct Viewer {
    /// Ends with (packets received and kept, packets seen).
    thread: std::thread::JoinHandle<(u32, u32)>,
    /// A clone of its RTCP socket (to send as this viewer).
    rtcp: UdpSocket,
    /// The shard's RTCP address.
    server_rtcp: SocketAddr,
}

/// Starts a [`Viewer`] that drops one packet in every `drop_every` (0 = none) before "reading"
/// it and sends an RR every 500 ms. The dropped one is the middle of each run (the 5th of
/// 10), not its last: a report sent just after a dropped packet cannot count it yet (RFC 3550
/// §6.4.1 counts gaps below the highest sequence received), and with the bundled sample the
/// first report falls just after the 50th packet, so dropping the 10th, 20th, … showed 4 of 49
/// (20/256) in that interval instead of about 10 %.
fn lossy_viewer(server: &Server, drop_every: u32, stop: Arc<AtomicBool>) -> Viewer {
    let mut s = setup_udp(server);
    let r = s.rtsp.request("PLAY", &s.url, &[("Session", &s.session)]);
    assert_eq!(r.status, 200);
    let server_rtp = s.server_rtp[0];
    let server_rtcp = SocketAddr::new(server_rtp.ip(), server_rtp.port() + 1);
    let rtcp_clone = s.socks[0].1.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        let _keep = &s.rtsp;
        let (rtp, rtcp) = (&s.socks[0].0, &s.socks[0].1);
        rtp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        rtcp.set_nonblocking(true).unwrap();
        let t0 = Instant::now();
        let mut rx = Reception::default();
        let mut seen = 0u32;
        let mut lsr_at: Option<(u32, u32)> = None;
        let mut next_report = Instant::now() + Duration::from_millis(500);
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = rtp.recv_from(&mut buf) {
                if from == server_rtp {
                    let p = parse_rtp(&buf[..n]).expect("RTP");
                    seen += 1;
                    if drop_every == 0 || seen % drop_every != drop_every / 2 {
                        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        rx.on_packet(ssrc, p.seq, ts, t0.elapsed().as_secs_f64() * 90_000.0);
                    }
                }
            }
            while let Ok((n, from)) = rtcp.recv_from(&mut buf) {
                if from == server_rtcp {
                    if let Some(lsr) = sender_report_lsr(&buf[..n]) {
                        lsr_at = Some((lsr, ntp_middle_now()));
                    }
                }
            }
            if Instant::now() >= next_report && rx.base_seq.is_some() {
                next_report += Duration::from_millis(500);
                let (lsr, dlsr) =
                    lsr_at.map_or((0, 0), |(lsr, at)| (lsr, ntp_middle_now().wrapping_sub(at)));
                let block = rx.report_block(lsr, dlsr);
                rtcp.send_to(&receiver_report(0x5EED_0001, &block), server_rtcp)
                    .unwrap();
            }
        }
        (rx.received, seen)
    });
    Viewer {
        thread,
        rtcp: rtcp_clone,
        server_rtcp,
    }
}

#[test]
fn loss_reported_by_a_viewer_shows_in_the_api_within_10_s_and_only_for_it() {
    let server = Server::start(&["--shards", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let lossy = lossy_viewer(&server, 10, stop.clone());
    let clean = lossy_viewer(&server, 0, stop.clone());
    let sessions = || server.http_get("/api/v1/sessions").json();
    // The lossy viewer's session shows ~10 % (RR fraction lost: 25/256 or 26/256).
    let s = wait_for_session(&server, Duration::from_secs(10), |s| {
        num(s, "loss_pct").is_some_and(|l| l > 5.0)
    });
    let took = t0.elapsed();
    let loss = num(&s, "loss_pct").unwrap();
    assert!((8.0..=12.0).contains(&loss), "loss {loss} %: {s:#}");
    assert!(s["packets_lost"].as_i64().unwrap() > 0, "{s:#}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The other viewer reports no loss, and its figures show none once it has reported.
    let other = wait_for_session(&server, Duration::from_secs(3), |o| {
        o["id"] != s["id"] && o["reports_received"].as_u64().is_some_and(|n| n >= 1)
    });
    let all = sessions();
    let all = all["sessions"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
    let other = &other;
    assert_eq!(num(other, "loss_pct"), Some(0.0), "{other:#}");
    assert_eq!(other["packets_lost"].as_i64(), Some(0), "{other:#}");
    stop.store(true, Ordering::Relaxed);
    let (kept, seen) = lossy.thread.join().unwrap();
    assert!(seen > 0 && kept < seen, "the lossy viewer dropped packets");
    clean.thread.join().unwrap();
}

/// Scrapes one un-labelled sample (or the sum over labels) from `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let text = server.http_get("/metrics").text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn malformed_and_flooding_rtcp_is_counted_and_distorts_nobody() {
    let server = Server::start(&["--shards", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let clean = lossy_viewer(&server, 0, stop.clone());
    let s = wait_for_session(&server, Duration::from_secs(8), |s| {
        s["reports_received"].as_u64().is_some_and(|n| n >= 1)
    });
    let server_rtcp = clean.server_rtcp;
    let own = &clean.rtcp;
    let invalid_before = metric(&server, "shardcast_rtcp_invalid_total");
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good_rr = receiver_report(9, &ReportBlock::default());
    let mut wrong_version = good_rr.clone();
    wrong_version[0] = 0x41;
    let mut past_end = good_rr.clone();
    past_end[3] = 200;
    let mut padding_not_last = good_rr.clone();
    padding_not_last[0] |= 0x20;
    let malformed: Vec<Vec<u8>> = vec![
        vec![0x80],
        vec![0x80, 201, 0],
        wrong_version,
        past_end,
        padding_not_last,
        good_rr[..good_rr.len() - 3].to_vec(),
    ];
    // Malformed RTCP from the viewer's own address, and from a stranger.
    for m in &malformed {
        own.send_to(m, server_rtcp).unwrap();
        stranger.send_to(m, server_rtcp).unwrap();
    }
    // Reports with 100 % loss about an SSRC that is nobody's: from the viewer (its session
    // must not take them) and from a stranger.
    let unknown = ReportBlock {
        ssrc: Ssrc(0xDEAD_BEEF),
        fraction_lost: 255,
        ..ReportBlock::default()
    };
    own.send_to(&receiver_report(9, &unknown), server_rtcp)
        .unwrap();
    stranger
        .send_to(&receiver_report(9, &unknown), server_rtcp)
        .unwrap();
    // A flood: 10,000 malformed datagrams within about a second from the viewer's address.
    let flood_start = Instant::now();
    for i in 0..10_000u32 {
        let _ = own.send_to(&malformed[(i % 6) as usize], server_rtcp);
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(90));
        }
    }
    let flood_secs = flood_start.elapsed().as_secs_f64();
    // Wait (≤ 5 s) until the shard has counted what it was sent, rather than a fixed time.
    let counted_by = Instant::now() + Duration::from_secs(5);
    let (invalid, unknown_source, unknown_ssrc) = loop {
        let invalid = metric(&server, "shardcast_rtcp_invalid_total") - invalid_before;
        let unknown_source = metric(&server, "shardcast_rtcp_unknown_source_total");
        let unknown_ssrc = metric(&server, "shardcast_rtcp_unknown_ssrc_total");
        if (invalid >= 6.0 && unknown_source >= 7.0 && unknown_ssrc >= 1.0)
            || Instant::now() > counted_by
        {
            break (invalid, unknown_source, unknown_ssrc);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        invalid >= 6.0,
        "malformed datagrams counted as invalid: {invalid}"
    );
    assert!(unknown_source >= 7.0, "stranger counted: {unknown_source}");
    assert!(
        unknown_ssrc >= 1.0,
        "foreign SSRC block counted: {unknown_ssrc}"
    );
    // The viewer's own figures are untouched: still its own (loss-free) reports. Read from a
    // statistics report the shard made after it digested the flood (one that counts a
    // report the viewer sent since).
    let reported = wait_for_session(&server, Duration::from_secs(3), |o| o["id"] == s["id"])
        ["reports_received"]
        .as_u64()
        .expect("reports_received");
    let after = wait_for_session(&server, Duration::from_secs(5), |o| {
        o["id"] == s["id"] && o["reports_received"].as_u64().is_some_and(|n| n > reported)
    });
    assert_eq!(num(&after, "loss_pct"), Some(0.0), "{after:#}");
    assert_eq!(after["packets_lost"].as_i64(), Some(0), "{after:#}");
    let stats = server.http_get("/api/v1/stats").json();
    assert_eq!(stats["viewers"], 1, "{stats:#}");
    assert_eq!(num(&stats, "loss_pct"), Some(0.0), "{stats:#}");
    stop.store(true, Ordering::Relaxed);
    let (kept, seen) = clean.thread.join().unwrap();
    assert_eq!(kept, seen);
    assert!(
        kept > 100,
        "the viewer kept receiving through the flood: {kept}"
    );
    // And the server still answers RTSP.
    let mut rtsp = common::RawRtsp::connect(server.addr);
    let r = rtsp.request("OPTIONS", &server.url("sample"), &[]);
    assert_eq!(r.status, 200);
    eprintln!("flood: 10,000 datagrams in {flood_secs:.2} s; invalid counted {invalid}");
}
