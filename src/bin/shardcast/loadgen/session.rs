//! Session driver: one viewer's RTSP handshake (OPTIONS, DESCRIBE, SETUP per track, PLAY;
//! RFC 2326 §10) over tokio, with UDP receive sockets or TCP-interleaved channels (§10.12),
//! handing the playing session to the receiver thread. Also the small SDP reader it needs
//! (`m=`, `a=rtpmap`, `a=control`, `a=range`; RFC 8866, RFC 2326 §C.1).

use std::net::UdpSocket;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use shardcast::rtsp::response::{interleaved_frame, parse_response, RtspResponse};

use super::host::bind_rtp_socket;
use super::stats::{MediaKind, TrackStats};
use super::LoadError;
use shardcast::net::realtime_ns;

/// How RTP reaches the load generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RtpTransport {
    /// One UDP socket per track (`client_port`).
    #[default]
    Udp,
    /// Interleaved `$` frames on the RTSP connection.
    Tcp,
}

/// One media description of the SDP.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SdpMedia {
    /// From the `m=` line.
    pub(crate) kind: MediaKind,
    /// First payload type of the `m=` line.
    pub(crate) payload_type: u8,
    /// Clock rate from `a=rtpmap` (90 kHz for video, 8 kHz if absent for audio).
    pub(crate) clock_rate_hz: u32,
    /// `a=control` value, absolute or relative.
    pub(crate) control: String,
}

/// What the load generator needs from a DESCRIBE answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SdpSummary {
    /// Media descriptions in order.
    pub(crate) media: Vec<SdpMedia>,
    /// Presentation length from `a=range:npt=0-D`; `None` for live or absent.
    pub(crate) duration_secs: Option<f64>,
}

/// Reads the parts of an SDP the harness uses; unknown lines are skipped.
pub(crate) fn parse_sdp(text: &str) -> SdpSummary {
    let mut media: Vec<SdpMedia> = Vec::new();
    let mut duration_secs = None;
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = match f.next() {
                Some("video") => MediaKind::Video,
                Some("audio") => MediaKind::Audio,
                _ => MediaKind::Other,
            };
            let payload_type = f.nth(2).and_then(|p| p.parse().ok()).unwrap_or(96);
            let clock_rate_hz = if kind == MediaKind::Video {
                90_000
            } else {
                8000
            };
            media.push(SdpMedia {
                kind,
                payload_type,
                clock_rate_hz,
                control: String::new(),
            });
        } else if let Some(v) = line.strip_prefix("a=rtpmap:") {
            // a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]
            let (Some(cur), Some((pt, enc))) = (media.last_mut(), v.split_once(' ')) else {
                continue;
            };
            if pt.parse() == Ok(cur.payload_type) {
                if let Some(rate) = enc.split('/').nth(1).and_then(|r| r.parse().ok()) {
                    cur.clock_rate_hz = rate;
                }
            }
        } else if let Some(v) = line.strip_prefix("a=control:") {
            if let Some(cur) = media.last_mut() {
                cur.control = v.to_owned();
            }
        } else if let Some(v) = line.strip_prefix("a=range:npt=") {
            if media.is_empty() {
                duration_secs = v
                    .split_once('-')
                    .and_then(|(_, end)| end.trim().parse::<f64>().ok());
            }
        }
    }
    SdpSummary {
        media,
        duration_secs,
    }
}

/// Resolves a track's `a=control` against the Content-Base (RFC 2326 §C.1.1).
pub(crate) fn control_url(base: &str, control: &str) -> String {
    if control.starts_with("rtsp://") || control.starts_with("rtsps://") {
        control.to_owned()
    } else if control.is_empty() || control == "*" {
        base.trim_end_matches('/').to_owned()
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// A session whose PLAY succeeded, ready for the receiver thread.
#[derive(Debug)]
pub(crate) struct PlayingSession {
    /// Viewer number.
    pub(crate) index: usize,
    /// The RTSP connection (non-blocking), kept for keepalive, looping and TEARDOWN.
    pub(crate) rtsp: std::net::TcpStream,
    /// Bytes read past the PLAY response (interleaved frames already in flight).
    pub(crate) leftover: Vec<u8>,
    /// UDP RTP socket per track (empty over TCP).
    pub(crate) udp: Vec<UdpSocket>,
    /// UDP RTCP socket per track, for the one viewer that reads the server's sender reports
    /// (`open_session`'s `with_rtcp`; empty otherwise and over TCP).
    pub(crate) rtcp: Vec<UdpSocket>,
    /// This viewer reads the server's sender reports (over UDP on `rtcp`, over TCP on the
    /// odd interleaved channels) for the latency probe.
    pub(crate) reads_rtcp: bool,
    /// Statistics per track, in SETUP order (interleaved channel 2·i).
    pub(crate) tracks: Vec<TrackStats>,
    /// Per UDP track, the server's RTCP address (`server_port`'s odd port) for receiver
    /// reports.
    pub(crate) server_rtcp: Vec<Option<std::net::SocketAddr>>,
    /// RTSP Session id.
    pub(crate) session_id: String,
    /// Aggregate control URL (for PLAY/TEARDOWN).
    pub(crate) url: String,
    /// Realtime ns when PLAY was written.
    pub(crate) play_sent_ns: u64,
    /// Clip length, for looping VOD.
    pub(crate) clip: Option<Duration>,
    /// Last CSeq used.
    pub(crate) cseq: u32,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

impl Conn {
    async fn request(
        &mut self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<RtspResponse, LoadError> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: shardcast-bench\r\n",
            self.cseq
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| LoadError::io(format!("writing {method}"), e))?;
        loop {
            // Interleaved frames can precede the response only after a PLAY; skip them.
            while let Some((_, payload)) = interleaved_frame(&self.buf) {
                let used = 4 + payload.len();
                self.buf.drain(..used);
            }
            if self.buf.first() != Some(&b'$') {
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
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .read(&mut chunk)
                .await
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

/// Runs one viewer's handshake against `url` and returns it playing.
///
/// Over UDP, each track gets its own RTP socket; the RTCP port of the pair (`port + 1`) is
/// announced but not bound, to halve the descriptors per viewer (the receiver drops RTCP
/// by payload type should that port later belong to another viewer's socket) — unless
/// `with_rtcp`: then it is bound too, for the server's sender reports (the latency probe's
/// clock viewer).
pub(crate) async fn open_session(
    index: usize,
    url: &str,
    transport: RtpTransport,
    receive_gro: bool,
    with_rtcp: bool,
) -> Result<PlayingSession, LoadError> {
    let authority = url
        .strip_prefix("rtsp://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| LoadError::Protocol(format!("not an rtsp:// URL: {url}")))?;
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| LoadError::io(format!("connecting to {authority}"), e))?;
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_err(|e| LoadError::io("reading the server's address", e))?;
    let local = stream
        .local_addr()
        .map_err(|e| LoadError::io("reading the connection's own address", e))?
        .ip();
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        cseq: 0,
    };
    conn.request("OPTIONS", url, &[]).await?;
    let desc = conn
        .request("DESCRIBE", url, &[("Accept", "application/sdp")])
        .await?;
    let base = desc
        .header("Content-Base")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{url}/"));
    let sdp = parse_sdp(&String::from_utf8_lossy(&desc.body));
    if sdp.media.is_empty() {
        return Err(LoadError::Protocol("DESCRIBE returned no media".into()));
    }
    let mut session_id: Option<String> = None;
    let mut server_rtcp = Vec::new();
    let mut udp = Vec::new();
    let mut rtcp = Vec::new();
    let mut tracks = Vec::new();
    for (i, m) in sdp.media.iter().enumerate() {
        let transport_header = match transport {
            RtpTransport::Udp if with_rtcp => {
                let (sock, rtcp_sock) = super::publish::bind_pair(local)?;
                for s in [&sock, &rtcp_sock] {
                    s.set_nonblocking(true)
                        .map_err(|e| LoadError::io("making a UDP socket non-blocking", e))?;
                }
                let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
                shardcast::net::enable_rx_timestamps(fd)
                    .map_err(|e| LoadError::io("enabling SO_TIMESTAMPNS", e))?;
                if receive_gro {
                    shardcast::net::enable_udp_gro(fd)
                        .map_err(|e| LoadError::io("enabling UDP_GRO", e))?;
                }
                let port = sock
                    .local_addr()
                    .map_err(|e| LoadError::io("reading a UDP socket address", e))?
                    .port();
                udp.push(sock);
                rtcp.push(rtcp_sock);
                format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1)
            }
            RtpTransport::Udp => {
                let sock = bind_rtp_socket(local, receive_gro)
                    .map_err(|e| LoadError::io("opening an RTP socket", e))?;
                let port = sock
                    .local_addr()
                    .map_err(|e| LoadError::io("reading a UDP socket address", e))?
                    .port();
                udp.push(sock);
                format!(
                    "RTP/AVP;unicast;client_port={}-{}",
                    port,
                    port.wrapping_add(1)
                )
            }
            RtpTransport::Tcp => {
                format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1)
            }
        };
        let mut headers = vec![("Transport", transport_header.as_str())];
        let sid;
        if let Some(s) = &session_id {
            sid = s.clone();
            headers.push(("Session", sid.as_str()));
        }
        let resp = conn
            .request("SETUP", &control_url(&base, &m.control), &headers)
            .await?;
        if session_id.is_none() {
            session_id = resp
                .header("Session")
                .map(|s| s.split(';').next().unwrap_or("").trim().to_owned());
        }
        if transport == RtpTransport::Udp {
            server_rtcp.push(server_rtcp_addr(resp.header("Transport"), peer));
        }
        tracks.push(TrackStats::new(m.kind, m.payload_type, m.clock_rate_hz));
    }
    let session_id = session_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| LoadError::Protocol("SETUP answered without a Session".into()))?;
    let aggregate = base.trim_end_matches('/').to_owned();
    let play_sent_ns = realtime_ns();
    // No Range: a first PLAY without one starts at the beginning (RFC 2326 §10.5), as
    // `npt=0-` does, but a shared-pipeline server (gst-rtsp-server) seeks its one pipeline
    // back to 0 for every viewer on `npt=0-`, restarting the stream for all of them.
    conn.request("PLAY", &aggregate, &[("Session", &session_id)])
        .await?;
    let rtsp = conn
        .stream
        .into_std()
        .map_err(|e| LoadError::io("detaching the RTSP connection", e))?;
    Ok(PlayingSession {
        index,
        rtsp,
        leftover: conn.buf,
        udp,
        rtcp,
        reads_rtcp: with_rtcp,
        tracks,
        server_rtcp,
        session_id,
        url: aggregate,
        play_sent_ns,
        clip: sdp.duration_secs.map(Duration::from_secs_f64),
        cseq: conn.cseq,
    })
}

/// The server's RTCP address from a SETUP answer's `server_port=RTP-RTCP` (RFC 2326
/// §12.39) at the server's IP address.
fn server_rtcp_addr(
    transport: Option<&str>,
    server: std::net::SocketAddr,
) -> Option<std::net::SocketAddr> {
    let ports = transport?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("server_port="))?;
    let rtcp: u16 = match ports.split_once('-') {
        Some((_, rtcp)) => rtcp.trim().parse().ok()?,
        None => ports.trim().parse::<u16>().ok()?.checked_add(1)?,
    };
    Some(std::net::SocketAddr::new(server.ip(), rtcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=sample\r\nt=0 0\r\n\
        a=control:*\r\na=range:npt=0-10.000\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=control:trackID=1\r\n";

    #[test]
    fn server_rtcp_port_comes_from_the_transport_answer() {
        let server: std::net::SocketAddr = "127.0.0.1:8554".parse().unwrap();
        let t = "RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001;ssrc=1";
        assert_eq!(
            server_rtcp_addr(Some(t), server),
            Some("127.0.0.1:6001".parse().unwrap())
        );
        assert_eq!(
            server_rtcp_addr(Some("RTP/AVP;server_port=6000"), server),
            Some("127.0.0.1:6001".parse().unwrap())
        );
        assert_eq!(server_rtcp_addr(Some("RTP/AVP;unicast"), server), None);
        assert_eq!(server_rtcp_addr(None, server), None);
    }

    #[test]
    fn sdp_yields_tracks_clock_rates_and_clip_length() {
        let s = parse_sdp(SDP);
        assert_eq!(s.duration_secs, Some(10.0));
        assert_eq!(s.media.len(), 2);
        assert_eq!(
            (
                s.media[0].kind,
                s.media[0].payload_type,
                s.media[0].clock_rate_hz
            ),
            (MediaKind::Video, 96, 90_000)
        );
        assert_eq!(
            (
                s.media[1].kind,
                s.media[1].payload_type,
                s.media[1].clock_rate_hz
            ),
            (MediaKind::Audio, 97, 48_000)
        );
        assert_eq!(s.media[1].control, "trackID=1");
        let live = parse_sdp("a=range:npt=now-\r\nm=video 0 RTP/AVP 96\r\n");
        assert_eq!(live.duration_secs, None);
    }

    #[test]
    fn control_urls_resolve_against_the_content_base() {
        let base = "rtsp://127.0.0.1:8554/sample/";
        assert_eq!(
            control_url(base, "trackID=0"),
            "rtsp://127.0.0.1:8554/sample/trackID=0"
        );
        assert_eq!(
            control_url("rtsp://h/s", "trackID=1"),
            "rtsp://h/s/trackID=1"
        );
        assert_eq!(control_url(base, "rtsp://x/y"), "rtsp://x/y");
        assert_eq!(control_url(base, "*"), "rtsp://127.0.0.1:8554/sample");
    }
}
