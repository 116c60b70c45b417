//! The start-up banner `shardcast serve` prints on stdout once it accepts connections, and
//! its reader, kept together so that the format and its parser cannot drift apart:
//!
//! ```text
//! shardcast listening on rtsp://127.0.0.1:8554/ with 2 shards
//! http listening on http://127.0.0.1:8080/        (unless --http-listen off)
//! hls listening on http://127.0.0.1:8088/         (unless --hls-listen off)
//! rtmp listening on rtmp://127.0.0.1:1935/        (unless --rtmp-listen off)
//! rtsps listening on rtsps://127.0.0.1:8322/      (with --rtsps-listen)
//! webrtc listening on udp://127.0.0.1:8189/        (one line per shard, unless --webrtc-listen off)
//! stream rtsp://127.0.0.1:8554/sample             (one line per stream known at start)
//! ready
//! ```
//!
//! Whatever starts a server and needs its real addresses (port 0 picks a free one) reads
//! these lines: the load generator, the integration tests, `scripts/screenshot-dashboard.sh`.

use std::io::{self, Write};
use std::net::SocketAddr;

const RTSP_PREFIX: &str = "shardcast listening on rtsp://";
const HTTP_PREFIX: &str = "http listening on http://";
const HLS_PREFIX: &str = "hls listening on http://";
const RTMP_PREFIX: &str = "rtmp listening on rtmp://";
const RTSPS_PREFIX: &str = "rtsps listening on rtsps://";
const WEBRTC_PREFIX: &str = "webrtc listening on udp://";
const STREAM_PREFIX: &str = "stream ";
const READY: &str = "ready";

/// The addresses a server listens on besides RTSP, as [`Banner::write`] prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// HTTP (page, API, `/metrics`).
    pub http: Option<SocketAddr>,
    /// HLS, served by the shards.
    pub hls: Option<SocketAddr>,
    /// RTMP publishers.
    pub rtmp: Option<SocketAddr>,
    /// RTSPS.
    pub rtsps: Option<SocketAddr>,
    /// Each shard's WebRTC port, in shard order.
    pub webrtc: Vec<SocketAddr>,
}

/// What a server announced at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Banner {
    /// The RTSP listening address.
    pub rtsp: Option<SocketAddr>,
    /// The HTTP listening address (none with `--http-listen off`).
    pub http: Option<SocketAddr>,
    /// The HLS listening address (none with `--hls-listen off`).
    pub hls: Option<SocketAddr>,
    /// The RTMP listening address (none with `--rtmp-listen off`).
    pub rtmp: Option<SocketAddr>,
    /// The RTSPS listening address (with `--rtsps-listen`).
    pub rtsps: Option<SocketAddr>,
    /// The shards' WebRTC ports, in shard order (none with `--webrtc-listen off`).
    pub webrtc: Vec<SocketAddr>,
    /// Stream URLs known at start.
    pub streams: Vec<String>,
    /// The `ready` line was read: nothing more follows.
    pub ready: bool,
}

impl Banner {
    /// Writes the banner for a server listening on `rtsp` (and `listeners`) with `shards`
    /// shards and the streams `names`, then flushes `out`.
    pub fn write<'a>(
        out: &mut impl Write,
        rtsp: SocketAddr,
        shards: usize,
        listeners: &Listeners,
        names: impl IntoIterator<Item = &'a str>,
    ) -> io::Result<()> {
        let Listeners {
            http,
            hls,
            rtmp,
            rtsps,
            webrtc,
        } = listeners;
        writeln!(out, "{RTSP_PREFIX}{rtsp}/ with {shards} shards")?;
        if let Some(http) = http {
            writeln!(out, "{HTTP_PREFIX}{http}/")?;
        }
        if let Some(hls) = hls {
            writeln!(out, "{HLS_PREFIX}{hls}/")?;
        }
        if let Some(rtmp) = rtmp {
            writeln!(out, "{RTMP_PREFIX}{rtmp}/")?;
        }
        if let Some(rtsps) = rtsps {
            writeln!(out, "{RTSPS_PREFIX}{rtsps}/")?;
        }
        for addr in webrtc {
            writeln!(out, "{WEBRTC_PREFIX}{addr}/")?;
        }
        for name in names {
            writeln!(out, "{STREAM_PREFIX}rtsp://{rtsp}/{name}")?;
        }
        writeln!(out, "{READY}")?;
        out.flush()
    }

    /// Takes one stdout line of the server (without its line end); true once `ready` is read.
    /// Lines the banner does not know are skipped.
    pub fn read_line(&mut self, line: &str) -> bool {
        let addr = |rest: &str| rest.split('/').next().and_then(|a| a.parse().ok());
        if let Some(rest) = line.strip_prefix(RTSP_PREFIX) {
            self.rtsp = addr(rest);
        } else if let Some(rest) = line.strip_prefix(HTTP_PREFIX) {
            self.http = addr(rest);
        } else if let Some(rest) = line.strip_prefix(HLS_PREFIX) {
            self.hls = addr(rest);
        } else if let Some(rest) = line.strip_prefix(RTMP_PREFIX) {
            self.rtmp = addr(rest);
        } else if let Some(rest) = line.strip_prefix(RTSPS_PREFIX) {
            self.rtsps = addr(rest);
        } else if let Some(rest) = line.strip_prefix(WEBRTC_PREFIX) {
            self.webrtc.extend(addr(rest));
        } else if let Some(url) = line.strip_prefix(STREAM_PREFIX) {
            self.streams.push(url.to_owned());
        } else if line == READY {
            self.ready = true;
        }
        self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_reads_back_what_was_written() {
        let rtsp: SocketAddr = "[::1]:8554".parse().unwrap();
        let http: SocketAddr = "127.0.0.1:39001".parse().unwrap();
        let hls: SocketAddr = "127.0.0.1:39002".parse().unwrap();
        let rtmp: SocketAddr = "127.0.0.1:1935".parse().unwrap();
        let webrtc: Vec<SocketAddr> = vec![
            "127.0.0.1:8189".parse().unwrap(),
            "127.0.0.1:8190".parse().unwrap(),
        ];
        let mut out = Vec::new();
        Banner::write(
            &mut out,
            rtsp,
            2,
            &Listeners {
                http: Some(http),
                hls: Some(hls),
                rtmp: Some(rtmp),
                rtsps: Some("127.0.0.1:8322".parse().unwrap()),
                webrtc: webrtc.clone(),
            },
            ["sample", "live/cam"],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "shardcast listening on rtsp://[::1]:8554/ with 2 shards\n\
             http listening on http://127.0.0.1:39001/\n\
             hls listening on http://127.0.0.1:39002/\n\
             rtmp listening on rtmp://127.0.0.1:1935/\n\
             rtsps listening on rtsps://127.0.0.1:8322/\n\
             webrtc listening on udp://127.0.0.1:8189/\n\
             webrtc listening on udp://127.0.0.1:8190/\n\
             stream rtsp://[::1]:8554/sample\n\
             stream rtsp://[::1]:8554/live/cam\n\
             ready\n"
        );
        let mut banner = Banner::default();
        let ready: Vec<bool> = text.lines().map(|l| banner.read_line(l)).collect();
        assert_eq!(
            ready,
            [false, false, false, false, false, false, false, false, false, true]
        );
        assert_eq!(
            banner,
            Banner {
                rtsp: Some(rtsp),
                http: Some(http),
                hls: Some(hls),
                rtmp: Some(rtmp),
                rtsps: Some("127.0.0.1:8322".parse().unwrap()),
                webrtc,
                streams: vec![
                    "rtsp://[::1]:8554/sample".into(),
                    "rtsp://[::1]:8554/live/cam".into()
                ],
                ready: true,
            }
        );
    }

    #[test]
    fn without_http_and_with_unknown_lines() {
        let mut out = Vec::new();
        Banner::write(
            &mut out,
            "127.0.0.1:1".parse().unwrap(),
            1,
            &Listeners::default(),
            [],
        )
        .unwrap();
        let mut banner = Banner::default();
        assert!(!banner.read_line("something else"));
        for line in String::from_utf8(out).unwrap().lines() {
            banner.read_line(line);
        }
        assert_eq!((banner.http, banner.hls), (None, None));
        assert!(banner.streams.is_empty() && banner.ready);
        assert_eq!(banner.rtsp, Some("127.0.0.1:1".parse().unwrap()));
    }
}
