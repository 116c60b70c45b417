//! Raw publishing helpers for the ingest fault tests: the ingest API entry of a stream, a raw
//! H.264 publisher over RTSP (RFC 2326 §10.3 ANNOUNCE,
//! §10.11 RECORD, TCP interleaved) whose packets a test shapes at will, a raw TCP viewer that
//! reassembles what the server sends (RFC 6184), and a watcher of another stream's viewer.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::publishers::media;
use super::{parse_rtp, RawRtsp, Server};

/// The `/api/v1/ingest` entry of stream `name`, if listed.
pub fn ingest_entry(server: &Server, name: &str) -> Option<serde_json::Value> {
    let ingest = server.http_get("/api/v1/ingest").json();
    ingest["ingest"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name).cloned())
}

/// Polls `/api/v1/ingest` until `name`'s entry satisfies `done` or `limit` passes (panics
/// then, with the last entry); the entry.
pub fn wait_ingest(
    server: &Server,
    name: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let entry = ingest_entry(server, name);
        if let Some(e) = entry.as_ref().filter(|e| done(e)) {
            return e.clone();
        }
        assert!(
            start.elapsed() < limit,
            "{name} in /api/v1/ingest: {entry:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resident set size of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/PID/status")
        * 1024
}

/// The H.264 configuration (SPS, PPS, profile) of the bundled sample's video track.
pub fn sample_h264() -> shardcast::media::track::H264Config {
    use shardcast::media::track::{Codec, TrackKind};
    let file =
        shardcast::media::MediaFile::open(std::path::Path::new(&media("sample.mp4")), "s").unwrap();
    let video = file
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    match &video.codec {
        Codec::H264(c) => c.clone(),
        _ => panic!("the sample's video is H.264"),
    }
}

/// A raw RTSP publisher of one H.264 track over TCP interleaved channels 0-1: the test builds
/// every RTP packet (RFC 6184), so it can lose, truncate or bloat them.
pub struct RawPublisher {
    /// The RTSP connection (RTP goes out on it as `$` frames, RFC 2326 §10.12).
    pub rtsp: RawRtsp,
    /// The next RTP sequence number.
    pub seq: u16,
}

/// The RTP SSRC the raw publisher sends with.
pub const PUBLISHER_SSRC: u32 = 0x0FA0_17ED;

impl RawPublisher {
    /// ANNOUNCE an H.264 SDP (the sample's parameter sets) on `name`, SETUP `mode=record`
    /// interleaved, RECORD.
    pub fn start(server: &Server, name: &str) -> RawPublisher {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let c = sample_h264();
        let url = server.url(name);
        let sdp = format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n\
             a=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1;profile-level-id={:02X}{:02X}{:02X};sprop-parameter-sets={},{}\r\n\
             a=control:streamid=0\r\n",
            c.profile_idc,
            c.profile_compat,
            c.level_idc,
            b64.encode(&c.sps[0]),
            b64.encode(&c.pps[0]),
        );
        let mut rtsp = RawRtsp::connect(server.addr);
        rtsp.send_raw(
            format!(
                "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 100\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
            .as_bytes(),
        );
        assert_eq!(rtsp.read_response().unwrap().status, 200, "ANNOUNCE");
        let setup = rtsp.request(
            "SETUP",
            &format!("{url}/streamid=0"),
            &[(
                "Transport",
                "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            )],
        );
        assert_eq!(setup.status, 200, "SETUP mode=record");
        let session = setup.session().unwrap();
        assert_eq!(
            rtsp.request("RECORD", &url, &[("Session", &session)])
                .status,
            200,
            "RECORD"
        );
        RawPublisher { rtsp, seq: 0 }
    }

    /// One RTP packet (PT 96) in a `$` frame on channel 0, appended to `out`; takes a
    /// sequence number.
    pub fn packet(&mut self, out: &mut Vec<u8>, marker: bool, ts: u32, payload: &[u8]) {
        let len = 12 + payload.len();
        out.extend_from_slice(&[b'$', 0]);
        out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        out.extend_from_slice(&[0x80, u8::from(marker) << 7 | 96]);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&PUBLISHER_SSRC.to_be_bytes());
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
    }

    /// Sends one access unit of one NAL unit at `ts`: a single NAL unit packet (RFC 6184
    /// §5.6) when it fits 1,400 bytes, else FU-A fragments (§5.8), the marker on the last.
    pub fn send_nal(&mut self, ts: u32, nal: &[u8]) {
        let payloads = fu_a(nal, 1400);
        self.send_payloads(ts, &payloads);
    }

    /// Sends the given payloads as one access unit at `ts`, the marker on the last.
    pub fn send_payloads(&mut self, ts: u32, payloads: &[Vec<u8>]) {
        let mut out = Vec::with_capacity(payloads.iter().map(|p| p.len() + 16).sum());
        for (k, p) in payloads.iter().enumerate() {
            self.packet(&mut out, k + 1 == payloads.len(), ts, p);
        }
        self.rtsp.send_raw(&out);
    }
}

/// RFC 6184 payloads carrying `nal`: itself (§5.6) when it fits `chunk` bytes, else FU-A
/// fragments of at most `chunk` bytes of its body (§5.8: the indicator takes F and NRI, the
/// header S, E and the type).
pub fn fu_a(nal: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    if nal.len() <= chunk {
        return vec![nal.to_vec()];
    }
    let (header, body) = (nal[0], &nal[1..]);
    let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(k, piece)| {
            let mut fu_header = header & 0x1f;
            if k == 0 {
                fu_header |= 0x80;
            }
            if k + 1 == pieces.len() {
                fu_header |= 0x40;
            }
            let mut p = vec![(header & 0xe0) | 28, fu_header];
            p.extend_from_slice(piece);
            p
        })
        .collect()
}

/// A NAL unit of `len` bytes (at least 8) that names frame `n`: header `0x65` (IDR) or
/// `0x41` (non-IDR slice), `b"nal"`, `n` in four 7-bit groups with the top bit set, then
/// bytes derived from `n`. No byte is zero, so no start code is emulated (H.264 §7.4.1;
/// retina refuses NAL units that hold one).
pub fn tagged_nal(n: u32, idr: bool, len: usize) -> Vec<u8> {
    let mut nal = vec![if idr { 0x65 } else { 0x41 }, b'n', b'a', b'l'];
    nal.extend((0..4).rev().map(|k| 0x80 | ((n >> (7 * k)) & 0x7f) as u8));
    let mut x = n.wrapping_mul(2_654_435_761).wrapping_add(1);
    while nal.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        nal.push((x as u8) | 1);
    }
    nal
}

/// The frame number a [`tagged_nal`] carries.
pub fn nal_tag(nal: &[u8]) -> Option<u32> {
    let tag = nal.get(1..8)?;
    (&tag[..3] == b"nal").then(|| tag[3..].iter().fold(0, |n, b| n << 7 | u32::from(b & 0x7f)))
}

/// One access unit a viewer reassembled.
#[derive(Debug, Clone)]
pub struct ViewerAu {
    /// Its RTP timestamp.
    pub ts: u32,
    /// Its NAL units.
    pub nals: Vec<Vec<u8>>,
}

/// What a [`TcpViewer`] received so far.
#[derive(Debug, Default)]
pub struct Received {
    /// Access units in arrival order.
    pub aus: Vec<ViewerAu>,
    /// Every RTP packet's sequence number and timestamp.
    pub packets: Vec<(u16, u32)>,
    /// RTCP BYE seen (RFC 3550 §6.6).
    pub bye: bool,
    /// A malformed packet (a fragment out of order): the description.
    pub errors: Vec<String>,
}

/// A viewer playing the first track of a stream over TCP interleaved channels 0-1, reading on
/// its own thread and reassembling RFC 6184 payloads into access units.
pub struct TcpViewer {
    /// What arrived.
    pub got: Arc<Mutex<Received>>,
    /// The RTSP session id.
    pub session: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpViewer {
    /// DESCRIBE, SETUP track 0 interleaved, PLAY.
    pub fn play(addr: SocketAddr, name: &str) -> TcpViewer {
        let url = format!("rtsp://{addr}/{name}");
        let mut rtsp = RawRtsp::connect(addr);
        let d = rtsp.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
        assert_eq!(d.status, 200, "DESCRIBE {name}");
        let base = d.header("Content-Base").expect("Content-Base").to_owned();
        let s = rtsp.request(
            "SETUP",
            &format!("{base}trackID=0"),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        );
        assert_eq!(s.status, 200, "SETUP");
        let session = s.session().unwrap();
        assert_eq!(
            rtsp.request("PLAY", &url, &[("Session", &session)]).status,
            200
        );
        let got = Arc::new(Mutex::new(Received::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (got, stop) = (got.clone(), stop.clone());
            rtsp.stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            std::thread::spawn(move || read_loop(rtsp, &got, &stop))
        };
        TcpViewer {
            got,
            session,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits up to `limit` until `done` holds for what arrived; false on timeout.
    pub fn wait(&self, limit: Duration, done: impl Fn(&Received) -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if done(&self.got.lock().unwrap()) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The frame numbers ([`nal_tag`] of each access unit's first NAL unit) in arrival order.
    pub fn tags(&self) -> Vec<Option<u32>> {
        let got = self.got.lock().unwrap();
        got.aus
            .iter()
            .map(|au| au.nals.iter().find_map(|n| nal_tag(n)))
            .collect()
    }
}

impl Drop for TcpViewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_loop(mut rtsp: RawRtsp, got: &Mutex<Received>, stop: &AtomicBool) {
    let mut open: Option<ViewerAu> = None;
    let mut fu: Option<Vec<u8>> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some((channel, p)) = rtsp.read_frame() else {
            continue;
        };
        let mut g = got.lock().unwrap();
        if channel == 1 {
            let mut off = 0;
            while off + 4 <= p.len() {
                g.bye |= p[off + 1] == 203;
                off += 4 * (usize::from(u16::from_be_bytes([p[off + 2], p[off + 3]])) + 1);
            }
            continue;
        }
        let Some(rtp) = parse_rtp(&p) else {
            g.errors.push("not RTP".into());
            continue;
        };
        g.packets.push((rtp.seq, rtp.ts));
        let cc = usize::from(p[0] & 0x0f);
        let payload = &p[12 + 4 * cc..];
        if open.as_ref().is_some_and(|au| au.ts != rtp.ts) {
            g.aus.extend(open.take());
            fu = None;
        }
        let au = open.get_or_insert_with(|| ViewerAu {
            ts: rtp.ts,
            nals: Vec::new(),
        });
        match payload.first().map(|h| h & 0x1f) {
            Some(1..=23) => au.nals.push(payload.to_vec()),
            Some(24) => {
                let mut rest = &payload[1..];
                while rest.len() >= 2 {
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let Some(nal) = rest.get(2..2 + n) else {
                        g.errors.push("STAP-A unit past the packet".into());
                        break;
                    };
                    au.nals.push(nal.to_vec());
                    rest = &rest[2 + n..];
                }
            }
            Some(28) if payload.len() >= 2 => {
                let (ind, hdr) = (payload[0], payload[1]);
                if hdr & 0x80 != 0 {
                    fu = Some(vec![(ind & 0xe0) | (hdr & 0x1f)]);
                }
                match fu.as_mut() {
                    Some(nal) => nal.extend_from_slice(&payload[2..]),
                    None => g
                        .errors
                        .push(format!("FU-A without start, seq {}", rtp.seq)),
                }
                if hdr & 0x40 != 0 {
                    if let Some(nal) = fu.take() {
                        au.nals.push(nal);
                    }
                }
            }
            other => g.errors.push(format!("payload type {other:?}")),
        }
        if rtp.marker {
            g.aus.extend(open.take());
            fu = None;
        }
    }
}

/// A viewer of another stream (a looped live channel) over UDP, its packets recorded on a
/// thread with their arrival: the proof that a fault elsewhere cost it nothing.
pub struct BystanderWatch {
    session: super::UdpSession,
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(u16, Instant)>>>,
}

impl BystanderWatch {
    /// Plays the video track of `name` (UDP) and starts recording.
    pub fn start(server: &Server, name: &str) -> BystanderWatch {
        let mut session = super::setup_udp_stream(server.addr, name, 1);
        let url = session.url.clone();
        let sid = session.session.clone();
        assert_eq!(
            session
                .rtsp
                .request("PLAY", &url, &[("Session", &sid)])
                .status,
            200
        );
        let sock: UdpSocket = session.socks[0].0.try_clone().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        if let Some(rtp) = parse_rtp(&buf[..n]) {
                            got.push((rtp.seq, Instant::now()));
                        }
                    }
                }
                got
            })
        };
        BystanderWatch {
            session,
            started: Instant::now(),
            stop,
            thread: Some(thread),
        }
    }

    /// Stops recording and asserts the viewer got packets all along: sequence numbers without
    /// a gap and no silence longer than `max_silence` (the channel sends 30 frames a second).
    /// Watches for at least a second in all, however fast the test was.
    pub fn assert_unaffected(mut self, max_silence: Duration) {
        let window =
            (self.started + Duration::from_secs(1)).saturating_duration_since(Instant::now());
        std::thread::sleep(window);
        self.stop.store(true, Ordering::Relaxed);
        let got = self.thread.take().unwrap().join().unwrap();
        assert!(got.len() > 20, "the bystander got {} packets", got.len());
        for w in got.windows(2) {
            assert_eq!(
                w[1].0,
                w[0].0.wrapping_add(1),
                "the bystander's stream has a gap in sequence numbers"
            );
            let silence = w[1].1 - w[0].1;
            assert!(
                silence <= max_silence,
                "the bystander heard nothing for {silence:?}"
            );
        }
        // Its RTSP session still answers.
        let url = self.session.url.clone();
        let sid = self.session.session.clone();
        assert_eq!(
            self.session
                .rtsp
                .request("GET_PARAMETER", &url, &[("Session", &sid)])
                .status,
            200
        );
    }
}
