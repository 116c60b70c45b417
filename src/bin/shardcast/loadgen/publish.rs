//! The bench's publishers (`shardcast bench --publish rtsp|rtmp`): the stream its viewers
//! play is published to the started server by the bench itself, in a loop at real time.
//!
//! - **RTSP** ([`RtspPublisher`]): our own, so its send times can be taken per packet for
//!   the server's added latency ([`super::latency`]). ANNOUNCE with the file's SDP (RFC 2326
//!   §10.3; H.264 per RFC 6184 §8.2.1, AAC as mpeg4-generic per RFC 3640 §4.1), SETUP
//!   `mode=record` over UDP per track (§12.39 `client_port`), RECORD (§10.11), then RTP
//!   (RFC 3550 §5.1) paced by the file's decode times, packetized by the crate's own
//!   packetizers one access unit per packet, looping with continuous timestamps and sequence
//!   numbers; an RTCP sender report per track every second (RFC 3550 §6.4.1) stating the
//!   publisher's clock, and an OPTIONS keepalive every 20 s.
//! - **RTMP** ([`FfmpegPublisher`]): `ffmpeg -re -stream_loop -1 -i FILE -c copy -f flv`,
//!   started and killed by the bench.
//!
//! [`wait_online`] waits until the server answers a DESCRIBE of the published path with 200.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shardcast::media::MediaFile;
use shardcast::net::realtime_ns;
use shardcast::packetize::{body_slices, Packetizer, DEFAULT_PAYLOAD_BUDGET};
use shardcast::rtsp::response::{parse_response, RtspResponse};
use shardcast::wire::ntp::NtpTime;
use shardcast::wire::rtcp::{write_sender_report, SenderInfo, MAX_RTCP_COMPOUND};
use shardcast::wire::rtp::{write_rtp_header, RtpTimestamp, SeqNum, Ssrc, RTP_HEADER_LEN};
use shardcast::wire::sdp::{describe_media, FIRST_PAYLOAD_TYPE};

use super::latency::SendTimes;
use super::server::ServerProcess;
use super::{LoadError, SourceMedia};

/// The path the bench publishes to (the server gets `--publish 'bench/*'`).
pub(crate) const PUBLISH_PATH: &str = "bench/live";
/// The pattern the started server lets anyone publish to.
pub(crate) const PUBLISH_PATTERN: &str = "bench/*";
/// The name of the looped live channel a `--source channel` row plays.
pub(crate) const CHANNEL_NAME: &str = "benchloop";
/// How the bench publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PublishKind {
    /// Our own RTSP publisher (RTP over UDP); measures the server's added latency.
    Rtsp,
    /// ffmpeg over RTMP (FLV).
    Rtmp,
}

/// What a row's viewers play when the bench starts the server with a media file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StreamSource {
    /// A looped live channel of the file (`--live=benchloop=FILE`).
    Channel,
    /// The file published to the server by the bench.
    Published(PublishKind),
}

/// Timeout of one RTSP exchange of the publisher.
const RTSP_TIMEOUT: Duration = Duration::from_secs(5);
/// Sender reports per track: once a second.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Longest keepalive interval of the publisher's RTSP session; a third of the timeout the
/// server states in its Session header (RFC 2326 §12.37) when that is shorter. The server
/// ends a publisher whose RTSP connection goes quiet for that long.
const KEEPALIVE_MAX: Duration = Duration::from_secs(20);

/// The keepalive interval for a Session header `id[;timeout=N]` (RFC 2326 §12.37: the
/// default timeout is 60 s): a third of it, at least a second, at most [`KEEPALIVE_MAX`].
fn keepalive_for(session_header: Option<&str>) -> Duration {
    let timeout = session_header
        .and_then(|h| {
            h.split(';')
                .find_map(|p| p.trim().strip_prefix("timeout="))
                .and_then(|t| t.trim().parse::<u64>().ok())
        })
        .unwrap_or(60);
    Duration::from_secs((timeout / 3).max(1)).min(KEEPALIVE_MAX)
}
/// Largest RTP packet the publisher builds: the payload budget plus headers.
const PACKET_BYTES: usize = RTP_HEADER_LEN + DEFAULT_PAYLOAD_BUDGET + 64;

/// A blocking RTSP client connection, enough for a publisher's handshake.
struct Rtsp {
    stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

impl Rtsp {
    fn connect(addr: SocketAddr) -> Result<Self, LoadError> {
        let stream = TcpStream::connect_timeout(&addr, RTSP_TIMEOUT)
            .map_err(|e| LoadError::io(format!("connecting to {addr}"), e))?;
        stream
            .set_read_timeout(Some(RTSP_TIMEOUT))
            .map_err(|e| LoadError::io("setting a read timeout", e))?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: Vec::new(),
            cseq: 0,
        })
    }

    fn request(
        &mut self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<RtspResponse, LoadError> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: shardcast-bench\r\n",
            self.cseq
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream
            .write_all(req.as_bytes())
            .map_err(|e| LoadError::io(format!("writing {method}"), e))?;
        loop {
            let parsed = parse_response(&self.buf)
                .map_err(|e| LoadError::Protocol(format!("the {method} response: {e}")))?;
            if let Some((resp, used)) = parsed {
                self.buf.drain(..used);
                if resp.status != 200 {
                    return Err(LoadError::Status {
                        method,
                        status: resp.status,
                    });
                }
                return Ok(resp);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(LoadError::Protocol(format!("{method}: oversized response")));
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| LoadError::io(format!("reading the {method} response"), e))?;
            if n == 0 {
                return Err(LoadError::Protocol(format!(
                    "server closed the connection before answering {method}"
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Waits until the server answers a DESCRIBE of `path` with 200 (the stream is online).
pub(crate) fn wait_online(addr: SocketAddr, path: &str, limit: Duration) -> Result<(), LoadError> {
    let url = format!("rtsp://{addr}/{path}");
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match Rtsp::connect(addr)
            .and_then(|mut c| c.request("DESCRIBE", &url, &[("Accept", "application/sdp")], ""))
        {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LoadError::Protocol(format!(
        "{url} did not come online within {} s (last: {last})",
        limit.as_secs()
    )))
}

/// Binds a consecutive UDP port pair on `ip` (RFC 2326 §12.39: `client_port` names an even
/// RTP port and the RTCP port above it; the server wants them consecutive).
pub(crate) fn bind_pair(ip: std::net::IpAddr) -> Result<(UdpSocket, UdpSocket), LoadError> {
    for _ in 0..64 {
        let rtp = UdpSocket::bind((ip, 0)).map_err(|e| LoadError::io("binding a UDP socket", e))?;
        let port = rtp
            .local_addr()
            .map_err(|e| LoadError::io("reading a UDP socket address", e))?
            .port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((ip, port + 1)) {
            return Ok((rtp, rtcp));
        }
    }
    Err(LoadError::Protocol(
        "no consecutive UDP port pair after 64 tries".into(),
    ))
}

/// The server's RTP and RTCP addresses from a SETUP answer's `server_port=a-b`.
fn server_ports(transport: Option<&str>, server: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
    let ports = transport?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("server_port="))?;
    let (rtp, rtcp) = match ports.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let a: u16 = ports.trim().parse().ok()?;
            (a, a.checked_add(1)?)
        }
    };
    Some((
        SocketAddr::new(server.ip(), rtp),
        SocketAddr::new(server.ip(), rtcp),
    ))
}

/// One published track's sockets, numbering and packetizer.
struct PubTrack {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    server_rtp: SocketAddr,
    server_rtcp: SocketAddr,
    packetizer: Packetizer,
    payload_type: u8,
    ssrc: Ssrc,
    seq: u16,
    rtp_base: u32,
    rate: u32,
    timescale: u32,
    /// Next sample and loop.
    next: usize,
    loop_index: u64,
    packets: u32,
    octets: u32,
}

/// Why the publisher thread stopped sending (`Copy`: it comes from the per-packet path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum SendError {
    /// The media has no such track or sample.
    #[error("track {0}: no sample to send")]
    NoSample(usize),
    /// A packet did not fit the send buffer.
    #[error("track {0}: a packet over {PACKET_BYTES} bytes")]
    Oversized(usize),
    /// The send failed for another reason than a full socket buffer.
    #[error("sending RTP: {0}")]
    Send(ErrorKind),
}

/// What the publisher thread did.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublishOutcome {
    /// RTP packets sent.
    pub(crate) packets: u64,
    /// Why it stopped early, if it did.
    pub(crate) error: Option<String>,
}

/// The bench's RTSP publisher: a thread sending the file in a loop until stopped (or
/// dropped).
pub(crate) struct RtspPublisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<PublishOutcome>>,
    times: Arc<SendTimes>,
    /// Packets sent so far.
    pub(crate) packets: Arc<AtomicU64>,
}

impl RtspPublisher {
    /// Announces `media` at `rtsp://server/path`, sets up and records, then starts the
    /// thread that sends it.
    pub(crate) fn start(
        server: SocketAddr,
        path: &str,
        media: Arc<MediaFile>,
    ) -> Result<Self, LoadError> {
        let url = format!("rtsp://{server}/{path}");
        let mut conn = Rtsp::connect(server)?;
        let local_ip = conn
            .stream
            .local_addr()
            .map_err(|e| LoadError::io("reading the connection's address", e))?
            .ip();
        let sdp = describe_media(
            &media,
            server,
            true,
            None,
            u64::from(rand::random::<u32>()),
            None,
        );
        conn.request(
            "ANNOUNCE",
            &url,
            &[("Content-Type", "application/sdp")],
            &sdp,
        )?;
        let mut session: Option<String> = None;
        let mut keepalive_every = KEEPALIVE_MAX;
        let mut tracks = Vec::new();
        for (i, t) in media.index.tracks.iter().enumerate() {
            let (rtp, rtcp) = bind_pair(local_ip)?;
            let port = rtp
                .local_addr()
                .map_err(|e| LoadError::io("reading a UDP socket address", e))?
                .port();
            let transport = format!(
                "RTP/AVP;unicast;client_port={}-{};mode=record",
                port,
                port + 1
            );
            let mut headers = vec![("Transport", transport.as_str())];
            let sid;
            if let Some(s) = &session {
                sid = s.clone();
                headers.push(("Session", sid.as_str()));
            }
            let resp = conn.request("SETUP", &format!("{url}/trackID={i}"), &headers, "")?;
            if session.is_none() {
                session = resp
                    .header("Session")
                    .map(|s| s.split(';').next().unwrap_or("").trim().to_owned());
                keepalive_every = keepalive_for(resp.header("Session"));
            }
            let (server_rtp, server_rtcp) = server_ports(resp.header("Transport"), server)
                .ok_or_else(|| {
                    LoadError::Protocol("SETUP (record) answered without server_port".into())
                })?;
            let packetizer = Packetizer::new(&t.codec, DEFAULT_PAYLOAD_BUDGET)
                .map_err(|e| LoadError::Protocol(format!("track {i}: {e}")))?;
            for s in [&rtp, &rtcp] {
                s.set_nonblocking(true)
                    .map_err(|e| LoadError::io("making a UDP socket non-blocking", e))?;
            }
            tracks.push(PubTrack {
                rtp,
                rtcp,
                server_rtp,
                server_rtcp,
                packetizer,
                payload_type: FIRST_PAYLOAD_TYPE + i as u8,
                ssrc: Ssrc(rand::random()),
                seq: rand::random(),
                rtp_base: rand::random(),
                rate: t.codec.clock_rate_hz().max(1),
                timescale: t.timescale.max(1),
                next: 0,
                loop_index: 0,
                packets: 0,
                octets: 0,
            });
        }
        let session = session
            .filter(|s| !s.is_empty())
            .ok_or_else(|| LoadError::Protocol("SETUP answered without a Session".into()))?;
        conn.request(
            "RECORD",
            &url,
            &[("Session", &session), ("Range", "npt=0.000-")],
            "",
        )?;
        conn.stream
            .set_nonblocking(true)
            .map_err(|e| LoadError::io("making the RTSP connection non-blocking", e))?;
        let times = Arc::new(SendTimes::new(
            &tracks
                .iter()
                .map(|t| (t.rate, t.rtp_base))
                .collect::<Vec<_>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            media,
            tracks,
            conn,
            url,
            session,
            keepalive_every,
            times: times.clone(),
            stop: stop.clone(),
            packets: packets.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("bench-publish".into())
            .spawn(move || sender.run())
            .map_err(|e| LoadError::io("starting the publisher thread", e))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            times,
            packets,
        })
    }

    /// The send times the receiver pairs viewer packets with.
    pub(crate) fn times(&self) -> Arc<SendTimes> {
        self.times.clone()
    }

    /// Stops the thread (TEARDOWN) and returns what it did.
    pub(crate) fn stop(mut self) -> PublishOutcome {
        self.halt()
    }

    fn halt(&mut self) -> PublishOutcome {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(o)) => o,
            Some(Err(_)) => PublishOutcome {
                packets: self.packets.load(Ordering::Relaxed),
                error: Some("the publisher thread panicked".into()),
            },
            None => PublishOutcome::default(),
        }
    }
}

impl Drop for RtspPublisher {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// The publisher thread's state.
struct Sender {
    media: Arc<MediaFile>,
    tracks: Vec<PubTrack>,
    conn: Rtsp,
    url: String,
    session: String,
    keepalive_every: Duration,
    times: Arc<SendTimes>,
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
}

impl Sender {
    /// Nanoseconds after the start at which track `i`'s next sample is due (its decode time
    /// in its loop), and that sample's RTP timestamp.
    fn next_due(&self, i: usize, loop_ns: u64) -> Option<(u64, u32)> {
        let pt = &self.tracks[i];
        let track = self.media.index.tracks.get(i)?;
        let sample = track.samples.get(pt.next)?;
        let ts_scale = i128::from(pt.timescale);
        let dts_ns = (i128::from(track.dts_ticks(sample)) * 1_000_000_000 / ts_scale).max(0);
        let due = pt.loop_index.saturating_mul(loop_ns) as i128 + dts_ns;
        // Continuous timestamps over loops: the loop's start in RTP ticks plus the pts.
        let loop_ticks =
            i128::from(pt.loop_index) * i128::from(loop_ns) * i128::from(pt.rate) / 1_000_000_000;
        let pts_ticks = i128::from(track.pts_ticks(sample)) * i128::from(pt.rate) / ts_scale;
        let ts = pt.rtp_base.wrapping_add((loop_ticks + pts_ticks) as u32);
        Some((due as u64, ts))
    }

    fn run(mut self) -> PublishOutcome {
        let loop_ns = (self.media.index.duration().as_nanos() as u64).max(1_000_000);
        let start_ns = realtime_ns();
        let start = Instant::now();
        self.times.set_wall_base(start_ns);
        let mut packet = [0u8; PACKET_BYTES];
        let mut rtcp = [0u8; MAX_RTCP_COMPOUND];
        let mut next_report = start;
        let mut next_keepalive = start + self.keepalive_every;
        let mut scratch = [0u8; 4096];
        let mut error = None;
        while !self.stop.load(Ordering::Acquire) {
            // The track whose next sample is due first.
            let Some((i, due_ns, ts)) = (0..self.tracks.len())
                .filter_map(|i| self.next_due(i, loop_ns).map(|(d, ts)| (i, d, ts)))
                .min_by_key(|&(_, d, _)| d)
            else {
                error = Some("the media has no samples".into());
                break;
            };
            let now = Instant::now();
            let due = start + Duration::from_nanos(due_ns);
            if due > now {
                // Sleep in short steps so stop and reports stay timely.
                std::thread::sleep((due - now).min(Duration::from_millis(20)));
                if Instant::now() < due {
                    continue;
                }
            }
            if let Err(e) = self.send_sample(i, ts, &mut packet) {
                error = Some(e.to_string());
                break;
            }
            let now = Instant::now();
            if now >= next_report {
                next_report += REPORT_EVERY;
                self.send_reports(&mut rtcp);
            }
            if now >= next_keepalive {
                next_keepalive += self.keepalive_every;
                self.keepalive();
            }
            // Answers to keepalives: read and dropped.
            while let Ok(n) = self.conn.stream.read(&mut scratch) {
                if n == 0 {
                    break;
                }
            }
        }
        let teardown = format!(
            "TEARDOWN {} RTSP/1.0\r\nCSeq: {}\r\nSession: {}\r\n\r\n",
            self.url,
            self.conn.cseq + 1,
            self.session
        );
        let _ = self.conn.stream.write_all(teardown.as_bytes());
        PublishOutcome {
            packets: self.packets.load(Ordering::Relaxed),
            error,
        }
    }

    /// Packetizes and sends track `i`'s next sample with RTP timestamp `ts`; moves on to the
    /// next sample (and loop). Allocates nothing.
    fn send_sample(
        &mut self,
        i: usize,
        ts: u32,
        packet: &mut [u8; PACKET_BYTES],
    ) -> Result<(), SendError> {
        let media = self.media.clone();
        let Some(track) = media.index.tracks.get(i) else {
            return Err(SendError::NoSample(i));
        };
        let bytes = media.bytes.as_slice();
        let pt = &mut self.tracks[i];
        if pt.next >= track.samples.len() {
            return Err(SendError::NoSample(i));
        }
        // Small AAC frames grouped into one packet (RFC 3640 §3.2.2, within the payload
        // budget) as ffmpeg's RTP muxer does, sent when the group's first frame is due; the
        // server keeps a publisher's grouping, so a viewer's packet is one of ours.
        let group_len = pt
            .packetizer
            .samples_per_packet(&track.samples[pt.next..], pt.next as u64, track.timescale)
            .max(1);
        pt.packetizer
            .begin_samples(&track.samples[pt.next..pt.next + group_len], pt.next as u64);
        self.times.begin_frame(i, ts);
        loop {
            let spec = match pt.packetizer.next_packet(bytes) {
                Ok(Some(spec)) => spec,
                Ok(None) => break,
                // A corrupt sample: the rest of it is skipped, the stream goes on.
                Err(_) => break,
            };
            let Some(body) =
                body_slices(&spec, bytes, pt.packetizer.parameter_sets(), &track.samples)
            else {
                break;
            };
            let mut header = [0u8; RTP_HEADER_LEN];
            write_rtp_header(
                &mut header,
                pt.payload_type,
                spec.marker,
                SeqNum(pt.seq),
                RtpTimestamp(ts),
                pt.ssrc,
            );
            let mut len = 0;
            for part in std::iter::once(&header[..])
                .chain(std::iter::once(spec.header()))
                .chain(body.as_slices().iter().copied())
            {
                let Some(dst) = packet.get_mut(len..len + part.len()) else {
                    return Err(SendError::Oversized(i));
                };
                dst.copy_from_slice(part);
                len += part.len();
            }
            // Just before the send: never later than the server's kernel receive timestamp.
            self.times.before_send(i, realtime_ns());
            match pt.rtp.send_to(&packet[..len], pt.server_rtp) {
                Ok(_) => {}
                // A full socket buffer on loopback: the packet is lost, as on a network.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(SendError::Send(e.kind())),
            }
            pt.seq = pt.seq.wrapping_add(1);
            pt.packets = pt.packets.wrapping_add(1);
            pt.octets = pt.octets.wrapping_add((len - RTP_HEADER_LEN) as u32);
            self.packets.fetch_add(1, Ordering::Relaxed);
        }
        pt.next += group_len;
        if pt.next >= track.samples.len() {
            pt.next = 0;
            pt.loop_index += 1;
        }
        Ok(())
    }

    /// An SR per track (RFC 3550 §6.4.1): now, and the publisher's RTP time now by the clock
    /// the latency probe assumes ([`super::latency::PublisherClock`]).
    fn send_reports(&mut self, buf: &mut [u8; MAX_RTCP_COMPOUND]) {
        let now_ns = realtime_ns();
        for (i, pt) in self.tracks.iter().enumerate() {
            let Some(clock) = self.times.clock(i) else {
                continue;
            };
            let info = SenderInfo {
                ssrc: pt.ssrc,
                ntp: NtpTime::from_system_time(
                    std::time::UNIX_EPOCH + Duration::from_nanos(now_ns),
                ),
                rtp_timestamp: RtpTimestamp(clock.rtp_at(now_ns)),
                packet_count: pt.packets,
                octet_count: pt.octets,
            };
            let n = write_sender_report(buf, &info, "bench-publisher");
            let _ = pt.rtcp.send_to(&buf[..n], pt.server_rtcp);
        }
    }

    fn keepalive(&mut self) {
        self.conn.cseq += 1;
        let req = format!(
            "OPTIONS {} RTSP/1.0\r\nCSeq: {}\r\nSession: {}\r\n\r\n",
            self.url, self.conn.cseq, self.session
        );
        let _ = self.conn.stream.write_all(req.as_bytes());
    }
}

/// ffmpeg publishing a file over RTMP in a loop at real time; killed on drop.
pub(crate) struct FfmpegPublisher {
    child: Child,
}

impl FfmpegPublisher {
    /// Starts `ffmpeg -re -stream_loop -1 -i FILE -c copy -f flv rtmp://ADDR/PATH`.
    pub(crate) fn start(file: &Path, rtmp: SocketAddr, path: &str) -> Result<Self, LoadError> {
        let child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
            ])
            .arg(file)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{rtmp}/{path}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LoadError::io("starting ffmpeg (the RTMP publisher)", e))?;
        Ok(Self { child })
    }

    /// Whether ffmpeg is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for FfmpegPublisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench's publisher of one run, started once the server is up, online before the
/// viewers start.
pub(crate) enum Publisher {
    /// Our RTSP publisher.
    Rtsp(RtspPublisher),
    /// ffmpeg over RTMP.
    Rtmp(FfmpegPublisher),
}

/// What a publisher did over its run.
pub(crate) struct PublisherOutcome {
    /// RTP packets sent (our RTSP publisher only).
    pub(crate) packets: Option<u64>,
    /// Why it stopped during the run, if it did.
    pub(crate) error: Option<String>,
}

impl Publisher {
    /// How long a published stream may take to come online.
    const ONLINE_WITHIN: Duration = Duration::from_secs(15);
    /// Time the RTSP publisher runs before the viewers start: its first sender reports
    /// (one per track per second) reach the server, so the viewers' reports carry its clock.
    const RTSP_WARMUP: Duration = Duration::from_millis(1500);

    /// Starts publishing `media` to `server` and waits until the stream is online.
    pub(crate) fn start(
        kind: PublishKind,
        media: &SourceMedia,
        server: &ServerProcess,
    ) -> Result<Self, LoadError> {
        let started = Instant::now();
        let p = match kind {
            PublishKind::Rtsp => Publisher::Rtsp(RtspPublisher::start(
                server.addr,
                PUBLISH_PATH,
                media.media.clone(),
            )?),
            PublishKind::Rtmp => {
                let rtmp = server.rtmp.ok_or_else(|| {
                    LoadError::Protocol("the server announced no RTMP address".into())
                })?;
                Publisher::Rtmp(FfmpegPublisher::start(&media.file, rtmp, PUBLISH_PATH)?)
            }
        };
        wait_online(server.addr, PUBLISH_PATH, Self::ONLINE_WITHIN)?;
        if let Publisher::Rtsp(_) = p {
            std::thread::sleep(Self::RTSP_WARMUP.saturating_sub(started.elapsed()));
        }
        Ok(p)
    }

    /// The RTSP publisher's send times (none for RTMP).
    pub(crate) fn send_times(&self) -> Option<Arc<SendTimes>> {
        match self {
            Publisher::Rtsp(p) => Some(p.times()),
            Publisher::Rtmp(_) => None,
        }
    }

    /// Stops publishing; says whether it ran throughout.
    pub(crate) fn stop(self) -> PublisherOutcome {
        match self {
            Publisher::Rtsp(p) => {
                let o = p.stop();
                PublisherOutcome {
                    packets: Some(o.packets),
                    error: o.error,
                }
            }
            Publisher::Rtmp(mut p) => PublisherOutcome {
                packets: None,
                error: (!p.running()).then(|| "ffmpeg exited during the run".to_owned()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ports_come_from_the_setup_answer() {
        let server: SocketAddr = "127.0.0.1:8554".parse().unwrap();
        let t = "RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001;mode=record";
        assert_eq!(
            server_ports(Some(t), server),
            Some((
                "127.0.0.1:6000".parse().unwrap(),
                "127.0.0.1:6001".parse().unwrap()
            ))
        );
        assert_eq!(server_ports(Some("RTP/AVP;unicast"), server), None);
    }

    #[test]
    fn the_keepalive_is_a_third_of_the_session_timeout_within_bounds() {
        assert_eq!(
            keepalive_for(Some("ABCD;timeout=7")),
            Duration::from_secs(2)
        );
        assert_eq!(keepalive_for(Some("ABCD; timeout=300")), KEEPALIVE_MAX);
        assert_eq!(
            keepalive_for(Some("ABCD;timeout=1")),
            Duration::from_secs(1)
        );
        assert_eq!(keepalive_for(Some("ABCD")), Duration::from_secs(20));
        assert_eq!(keepalive_for(None), Duration::from_secs(20));
    }

    #[test]
    fn a_port_pair_is_consecutive_and_even() {
        let (rtp, rtcp) = bind_pair("127.0.0.1".parse().unwrap()).unwrap();
        let a = rtp.local_addr().unwrap().port();
        assert_eq!(a % 2, 0);
        assert_eq!(rtcp.local_addr().unwrap().port(), a + 1);
    }
}
