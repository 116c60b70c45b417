//! Issue 15's control-plane check: while HLS viewers load the shards, RTSP `OPTIONS` on the
//! control thread must still answer quickly. A probe thread sends one `OPTIONS` every
//! [`PROBE_EVERY`] on one RTSP connection and records each round trip (µs).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::loadgen::stats::new_histogram;

/// How often the probe asks.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A running probe; [`OptionsProbe::finish`] stops it and returns the round trips.
pub(crate) struct OptionsProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Histogram<u64>, u64)>,
}

impl OptionsProbe {
    /// Starts probing the RTSP server at `addr`.
    pub(crate) fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || probe(addr, &flag));
        Self { stop, thread }
    }

    /// Stops the probe: the round trips (µs) and the number of probes that failed.
    pub(crate) fn finish(self) -> (Histogram<u64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| (new_histogram(), 0))
    }
}

fn probe(addr: SocketAddr, stop: &AtomicBool) -> (Histogram<u64>, u64) {
    let mut rtts = new_histogram();
    let mut failed = 0;
    let mut conn: Option<TcpStream> = None;
    let mut cseq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        cseq += 1;
        let started = Instant::now();
        let result = conn
            .take()
            .map_or_else(|| connect(addr), Ok)
            .and_then(|mut c| options(&mut c, addr, cseq).map(|()| c));
        match result {
            Ok(c) => {
                rtts.saturating_record(started.elapsed().as_micros() as u64);
                conn = Some(c);
            }
            Err(_) => failed += 1,
        }
        std::thread::sleep(PROBE_EVERY.saturating_sub(started.elapsed()));
    }
    (rtts, failed)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_nodelay(true)?;
    Ok(c)
}

/// One `OPTIONS` (RFC 2326 §10.1) and its response head.
fn options(c: &mut TcpStream, addr: SocketAddr, cseq: u32) -> io::Result<()> {
    write!(c, "OPTIONS rtsp://{addr}/ RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n")?;
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        if n == 0 || got.len() > 8192 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got.starts_with(b"RTSP/1.0 200") {
        Ok(())
    } else {
        Err(io::Error::other("OPTIONS not answered 200"))
    }
}
