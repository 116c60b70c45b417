//! Helpers shared by the integration tests: a server process on a free port that is killed
//! on drop, a minimal raw RTSP client for requests no real player would send, and RTP
//! header parsing for what arrives.
#![allow(dead_code, unreachable_pub)]

pub mod avsync;
pub mod browser;
pub mod clocked;
pub mod players;
pub mod publishers;
pub mod raw_publish;
pub mod retina_play;
pub mod tls_client;
pub mod whep;
pub mod whip;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `shardcast serve` process on 127.0.0.1 with a free port.
pub struct Server {
    child: Child,
    /// RTSP address it listens on.
    pub addr: SocketAddr,
    /// Stream URLs it printed.
    pub streams: Vec<String>,
    /// HTTP address it printed (`http listening on`), unless started with `--http-listen off`.
    pub http: Option<SocketAddr>,
    /// HLS address it printed (`hls listening on`), unless started with `--hls-listen off`.
    pub hls: Option<SocketAddr>,
    /// RTMP address it printed (`rtmp listening on`), unless started with `--rtmp-listen off`.
    pub rtmp: Option<SocketAddr>,
    /// RTSPS address it printed (`rtsps listening on`), when started with `--rtsps-listen`.
    pub rtsps: Option<SocketAddr>,
    /// Each shard's WebRTC port it printed (`webrtc listening on`), in shard order.
    pub webrtc: Vec<SocketAddr>,
    /// Log lines (stderr) when started with [`Server::start_logged`].
    log: Option<Arc<Mutex<Vec<String>>>>,
}

impl Server {
    /// Starts the server with the bundled sample and `extra` arguments.
    pub fn start(extra: &[&str]) -> Server {
        Self::spawn(&[], extra, &[], false)
    }

    /// Like [`Server::start_logged`], run through `wrapper` (a command that runs the server,
    /// e.g. `ip netns exec NAME`): its addresses are the wrapper's world's.
    pub fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> Server {
        Self::spawn(wrapper, extra, &[], true)
    }

    /// Like [`Server::start`] with environment variables (secrets are read from there) and
    /// the log collected.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(&[], extra, env, true)
    }

    /// Like [`Server::start`], but its log (stderr) is collected for [`Server::log_lines`].
    pub fn start_logged(extra: &[&str]) -> Server {
        Self::spawn(&[], extra, &[], true)
    }

    /// Polls `/api/v1/stats` until `totals.<key>` reaches `at_least` or `limit` passes; the
    /// last value read.
    pub fn total_reaches(&self, key: &str, at_least: u64, limit: Duration) -> u64 {
        let end = Instant::now() + limit;
        loop {
            let got = self.http_get("/api/v1/stats").json()["totals"][key]
                .as_u64()
                .unwrap_or_else(|| panic!("totals.{key} in /api/v1/stats"));
            if got >= at_least || Instant::now() > end {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines collected so far (empty unless started with [`Server::start_logged`]).
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .as_ref()
            .map(|l| l.lock().unwrap().clone())
            .unwrap_or_default()
    }

    fn spawn(wrapper: &[&str], extra: &[&str], env: &[(&str, &str)], capture_log: bool) -> Server {
        let bin = env!("CARGO_BIN_EXE_shardcast");
        let mut cmd = match wrapper {
            [] => Command::new(bin),
            [program, args @ ..] => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
        };
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(extra);
        cmd.env_remove("SHARDCAST_ADMIN_TOKEN")
            .env_remove("SHARDCAST_TOKEN_SECRET")
            .envs(env.iter().copied());
        // Tests run in parallel: never the default fixed HTTP port.
        if !extra.contains(&"--http-listen") {
            cmd.args(["--http-listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--rtmp-listen") {
            cmd.args(["--rtmp-listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--hls-listen") {
            cmd.args(["--hls-listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--webrtc-listen") {
            cmd.args(["--webrtc-listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--log") {
            cmd.args(["--log", "info"]);
        }
        cmd.stdout(Stdio::piped()).stderr(if capture_log {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        let mut child = cmd.spawn().expect("spawn shardcast");
        let log = child.stderr.take().map(|stderr| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut banner = shardcast::banner::Banner::default();
            while let Some(Ok(line)) = lines.next() {
                if banner.read_line(&line) {
                    break;
                }
            }
            let _ = tx.send(banner);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let banner = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server printed its address");
        let addr = banner
            .rtsp
            .filter(|a| a.port() != 0)
            .expect("server failed to start");
        Server {
            child,
            addr,
            streams: banner.streams,
            http: banner.http,
            hls: banner.hls,
            rtmp: banner.rtmp,
            rtsps: banner.rtsps,
            webrtc: banner.webrtc,
            log,
        }
    }

    /// `rtsp://addr/name`.
    pub fn url(&self, name: &str) -> String {
        format!("rtsp://{}/{}", self.addr, name)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Server {
    /// The HTTP address; panics when the server runs without HTTP.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("server prints `http listening on`")
    }

    /// `GET path` on the server's HTTP side.
    pub fn http_get(&self, path: &str) -> HttpReply {
        http_request(self.http_addr(), "GET", path, &[], b"")
    }
}

/// An HTTP response as a test sees it.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (with the body) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One blocking HTTP/1.1 request (`Connection: close`), read to the end.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    http_raw(addr, &raw).unwrap_or_else(|| panic!("{method} {path}: no HTTP response"))
}

/// Sends raw bytes and parses whatever HTTP response comes back before the server closes
/// the connection (or 10 s pass); `None` when nothing parseable came.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Option<HttpReply> {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP side");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_http(&raw)
}

/// Parses one HTTP/1.1 response with a Content-Length (or read-to-close) body.
pub fn parse_http(raw: &[u8]) -> Option<HttpReply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(rest.len());
    Some(HttpReply {
        status,
        headers,
        body: rest.get(..len)?.to_vec(),
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            match self.child.try_wait() {
                Ok(Some(status)) => eprintln!(
                    "===== server {} had already exited: {status} =====",
                    self.child.id()
                ),
                _ => dump_process_state(self.child.id()),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints where every thread of process `pid` is: name, state, kernel wait channel and
/// kernel stack (`/proc`, root only), and with gdb installed each thread's backtrace. Called
/// when a test fails with its server still running, so that a request the server never
/// answered shows what the server was doing instead of only the client's timeout.
pub fn dump_process_state(pid: u32) {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let mut out = format!("===== server {pid} at the test's failure =====\n");
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let dir = task.path();
            let stat = read(dir.join("stat"));
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_owned();
            out.push_str(&format!(
                "--- thread {} {} state {state} wchan {}\n{}",
                task.file_name().to_string_lossy(),
                read(dir.join("comm")).trim(),
                read(dir.join("wchan")),
                read(dir.join("stack"))
            ));
        }
    }
    let gdb = Command::new("timeout")
        .args(["30", "gdb", "-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "thread apply all bt 25"])
        .stdin(Stdio::null())
        .output();
    match gdb {
        Ok(o) if o.status.success() => out.push_str(&String::from_utf8_lossy(&o.stdout)),
        Ok(o) => out.push_str(&format!(
            "(gdb backtraces unavailable: {})\n",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => out.push_str(&format!("(gdb backtraces unavailable: {e})\n")),
    }
    eprintln!("{out}===== end of server {pid} =====");
}

/// A parsed RTSP response (the library's client-side parser).
pub use shardcast::rtsp::response::RtspResponse;
use shardcast::rtsp::response::{interleaved_frame, parse_response};

/// A blocking raw RTSP connection for hand-written (and hostile) requests.
pub struct RawRtsp {
    pub stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    /// Why the last `read_response`/`read_frame` returned `None` (end of stream, timeout or
    /// error, and after how long), for the failure message.
    last_failure: String,
}

impl RawRtsp {
    pub fn connect(addr: SocketAddr) -> RawRtsp {
        Self::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Wraps an already connected stream (e.g. one with socket options set before connect).
    pub fn from_stream(stream: TcpStream) -> RawRtsp {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawRtsp {
            stream,
            buf: Vec::new(),
            cseq: 0,
            last_failure: String::new(),
        }
    }

    /// DESCRIBEs `url`, then SETUPs `trackID=N` for each of `tracks` over TCP interleaved
    /// (the k-th on channels 2k and 2k+1) in one session; asserts each answer is 200. Returns
    /// the DESCRIBE answer and the session id.
    pub fn setup_interleaved(&mut self, url: &str, tracks: &[usize]) -> (RtspResponse, String) {
        let d = self.request("DESCRIBE", url, &[("Accept", "application/sdp")]);
        assert_eq!(d.status, 200, "DESCRIBE {url}");
        let base = d.header("Content-Base").unwrap().to_owned();
        let mut session = String::new();
        for (k, track) in tracks.iter().enumerate() {
            let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * k, 2 * k + 1);
            let mut headers = vec![("Transport", transport.as_str())];
            if !session.is_empty() {
                headers.push(("Session", session.as_str()));
            }
            let s = self.request("SETUP", &format!("{base}trackID={track}"), &headers);
            assert_eq!(s.status, 200, "SETUP trackID={track}");
            session = session_id(&s);
        }
        (d, session)
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request with a fresh CSeq and the given extra header lines, returns the reply.
    pub fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> RtspResponse {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes());
        let Some(resp) = self.read_response() else {
            panic!(
                "no response to {method} {url}: {}; {} bytes buffered: {:?}",
                self.last_failure,
                self.buf.len(),
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            );
        };
        assert_eq!(
            resp.header("CSeq"),
            Some(self.cseq.to_string().as_str()),
            "CSeq echoed"
        );
        resp
    }

    /// Reads one response, skipping interleaved frames (returned separately by `read_frame`).
    pub fn read_response(&mut self) -> Option<RtspResponse> {
        let started = Instant::now();
        loop {
            if let Some(r) = self.try_parse() {
                return Some(r);
            }
            let mut chunk = [0u8; 4096];
            let n = self.read_some(&mut chunk, started)?;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One `read` (retried when a signal interrupts it); `None`, with the reason kept in
    /// `last_failure`, at end of stream, timeout or error.
    fn read_some(&mut self, chunk: &mut [u8], started: Instant) -> Option<usize> {
        loop {
            match self.stream.read(chunk) {
                Ok(0) => {
                    self.last_failure = format!(
                        "the server closed the connection (end of stream) after {:?}",
                        started.elapsed()
                    );
                    return None;
                }
                Ok(n) => return Some(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.last_failure = format!(
                        "read failed after {:?}: {e} ({:?}; a timeout reads as WouldBlock)",
                        started.elapsed(),
                        e.kind()
                    );
                    return None;
                }
            }
        }
    }

    /// Waits up to `limit` for the server to close the connection: true when a read sees
    /// end-of-stream or a reset, false on timeout. Data still arriving is discarded.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        self.buf.clear();
        let mut chunk = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Bytes received but not yet returned by `read_response`/`read_frame`.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn try_parse(&mut self) -> Option<RtspResponse> {
        while let Some((_, payload)) = interleaved_frame(&self.buf) {
            let used = 4 + payload.len();
            self.buf.drain(..used);
        }
        if self.buf.first() == Some(&b'$') {
            return None;
        }
        match parse_response(&self.buf) {
            Ok(Some((resp, used))) => {
                self.buf.drain(..used);
                Some(resp)
            }
            Ok(None) => None,
            Err(e) => panic!(
                "{e}: {:?}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            ),
        }
    }

    /// Reads one interleaved frame: (channel, payload).
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let started = Instant::now();
        loop {
            if let Some((ch, payload)) = interleaved_frame(&self.buf) {
                let payload = payload.to_vec();
                self.buf.drain(..4 + payload.len());
                return Some((ch, payload));
            }
            let mut chunk = [0u8; 65536];
            let n = self.read_some(&mut chunk, started)?;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The fields of an RTP header the tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

pub fn parse_rtp(p: &[u8]) -> Option<Rtp> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    Some(Rtp {
        pt: p[1] & 0x7f,
        marker: p[1] & 0x80 != 0,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    })
}

/// Whole AAC access units completed by one RTP packet of an RFC 3640 AAC-hbr stream
/// (`packet` includes its 12-byte RTP header): 0 without the marker bit (a fragment before
/// the last), else the AU-headers-length / 16 AU headers (§3.2.1; the last fragment of a
/// fragmented AU counts 1). Panics on a malformed AU header section, or when several whole
/// AUs do not fill the body exactly (13-bit AU-size, 3-bit index/delta, §3.3.6).
pub fn aac_units_completed(packet: &[u8]) -> usize {
    let rtp = parse_rtp(packet).expect("valid RTP");
    if !rtp.marker {
        return 0;
    }
    assert!(packet.len() >= 16, "AAC payload has its AU header section");
    let aus = usize::from(u16::from_be_bytes([packet[12], packet[13]]) / 16);
    assert!((1..=8).contains(&aus), "seq {}: {aus} AU headers", rtp.seq);
    let header_end = 14 + 2 * aus;
    assert!(
        packet.len() >= header_end,
        "seq {}: AU headers fit",
        rtp.seq
    );
    if aus > 1 {
        let sizes: usize = (0..aus)
            .map(|k| usize::from(u16::from_be_bytes([packet[14 + 2 * k], packet[15 + 2 * k]]) >> 3))
            .sum();
        assert_eq!(
            sizes,
            packet.len() - header_end,
            "seq {}: AU sizes fill the packet",
            rtp.seq
        );
    }
    aus
}

/// A bound even/odd UDP port pair for a test client.
pub fn udp_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rtp.local_addr().unwrap().port();
        if !port.is_multiple_of(2) {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            rtp.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let sock = socket2::SockRef::from(&rtp);
            let _ = sock.set_recv_buffer_size(4 << 20);
            return (rtp, rtcp);
        }
    }
    panic!("no UDP port pair")
}

/// Runs `cmd` with a deadline (killed past it); returns (success, stdout, stderr).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "spawning {:?}: {e} (is it installed? .ci/run installs it)",
                cmd.get_program()
            )
        });
    let start = Instant::now();
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = pipe.read_to_end(&mut all);
            String::from_utf8_lossy(&all).into_owned()
        })
    };
    let t_out = reader(Box::new(child.stdout.take().unwrap()));
    let t_err = reader(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.is_some_and(|s| s.success()),
        t_out.join().unwrap(),
        t_err.join().unwrap(),
    )
}

/// Plays `url` with GStreamer's rtspsrc until EOS through `tests/common/gst_play.py`, which
/// links each rtspsrc pad to its media's branch in rtspsrc's pad-added callback (gst-launch's
/// delayed linking of `src. ! application/x-rtp,media=… ! …` loses a pad now and then, and
/// the pipeline stalls: see the script's doc). `props` are rtspsrc properties
/// (`protocols=tcp`); `branches` are `(media, gst-launch description)` pairs (`("audio",
/// "queue ! rtpmpadepay ! fakesink")`), empty for the script's default (decode video into
/// checksumsink, audio into fakesink); `env` is set for it (`GST_DEBUG`); `verbose` prints
/// property changes as `gst-launch -v`. Returns (success, stdout, stderr) with gst-launch's
/// lines for checksums, EOS, warnings and errors.
pub fn gst_play(
    url: &str,
    props: &[&str],
    branches: &[(&str, &str)],
    env: &[(&str, &str)],
    verbose: bool,
    limit: Duration,
) -> (bool, String, String) {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/common/gst_play.py"
    ))
    .arg(url)
    .args(props)
    .envs(env.iter().copied());
    for (media, branch) in branches {
        cmd.arg(format!("--{media}")).arg(branch);
    }
    if verbose {
        cmd.arg("-v");
    }
    run_with_timeout(&mut cmd, limit)
}

/// A raw client's UDP session on the bundled sample: both tracks set up, not yet playing.
pub struct UdpSession {
    pub rtsp: RawRtsp,
    pub session: String,
    /// (RTP, RTCP) sockets per track, in SETUP order (video, audio).
    pub socks: Vec<(UdpSocket, UdpSocket)>,
    pub url: String,
    /// The SDP DESCRIBE returned.
    pub sdp: String,
    /// Per track, the server's RTP address from `server_port` (RTP must come from there).
    pub server_rtp: Vec<SocketAddr>,
}

/// DESCRIBE and SETUP both tracks of the sample over UDP.
pub fn setup_udp(server: &Server) -> UdpSession {
    setup_udp_stream(server.addr, "sample", 2)
}

/// DESCRIBE stream `name` and SETUP its first `tracks` tracks over UDP in one session.
pub fn setup_udp_stream(addr: SocketAddr, name: &str, tracks: usize) -> UdpSession {
    let url = format!("rtsp://{addr}/{name}");
    let mut rtsp = RawRtsp::connect(addr);
    let d = rtsp.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200);
    let base = d.header("Content-Base").expect("Content-Base").to_owned();
    let mut session = None::<String>;
    let mut socks = Vec::new();
    let mut server_rtp = Vec::new();
    for track in 0..tracks {
        let (rtp, rtcp) = udp_pair();
        let port = rtp.local_addr().unwrap().port();
        let transport = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
        let mut headers = vec![("Transport", transport.as_str())];
        let sid;
        if let Some(s) = &session {
            sid = s.clone();
            headers.push(("Session", sid.as_str()));
        }
        let r = rtsp.request("SETUP", &format!("{base}trackID={track}"), &headers);
        assert_eq!(r.status, 200, "SETUP track {track}");
        let t = r.header("Transport").unwrap();
        assert!(
            t.contains(&format!("client_port={}-{}", port, port + 1)),
            "{t}"
        );
        let server_port: u16 = t
            .split(';')
            .find_map(|p| p.strip_prefix("server_port="))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("RFC 2326 §12.39: server_port answered: {t}"));
        server_rtp.push(SocketAddr::new(addr.ip(), server_port));
        session = r.session();
        socks.push((rtp, rtcp));
    }
    UdpSession {
        rtsp,
        session: session.unwrap(),
        socks,
        url,
        sdp: String::from_utf8_lossy(&d.body).into_owned(),
        server_rtp,
    }
}

/// Waits up to `within` for an RTCP compound containing a BYE (PT 203, RFC 3550 §6.6) on
/// `sock`, walking each datagram's packets by their length words.
pub fn wait_for_bye(sock: &UdpSocket, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 1500];
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let mut off = 0;
            while off + 4 <= n {
                if buf[off + 1] == 203 {
                    return true;
                }
                off += 4 * (usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]])) + 1);
            }
        }
    }
    false
}

/// Writes `toml` as a fresh config file for one test (`tag` names it) and returns its path.
pub fn write_config(tag: &str, toml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shardcast-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shardcast.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// A fresh self-signed P-256 certificate and key (PEM) in `dir`, made by the `openssl` CLI
/// (`scripts/install-test-deps.sh` installs it), for `--tls-cert`/`--tls-key`.
pub fn make_cert(dir: &std::path::Path, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl CLI (scripts/install-test-deps.sh installs it)");
    assert!(status.success(), "openssl req");
    (cert, key)
}

/// The session id of a SETUP answer (its `Session` header without `;timeout=`).
pub fn session_id(setup: &RtspResponse) -> String {
    setup
        .header("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}
