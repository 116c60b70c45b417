//! The write side of an RTSP connection, shared by the control thread (RTSP responses) and a
//! shard (RTP/RTCP in `$` interleaved frames, RFC 2326 §10.12).
//!
//! Every write to the socket goes through one [`InterleavedSink`] so frames and responses
//! never interleave mid-message. The socket is non-blocking: a write that does not fit in the
//! kernel buffer leaves its remainder in a bounded user-space backlog; a viewer whose backlog
//! would exceed [`MAX_BACKLOG_BYTES`] is cut off (the shard sends what BYE fits, then the
//! connection is shut down) instead of stalling the shard or growing memory.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Largest backlog a viewer may build before it is cut off (about 2 s of a 2 Mbit/s stream).
pub const MAX_BACKLOG_BYTES: usize = 512 * 1024;

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The peer does not read fast enough; the backlog limit was reached.
    #[error("viewer too slow: backlog over {MAX_BACKLOG_BYTES} bytes")]
    Overflow,
    /// The connection is closed or failed.
    #[error("connection closed")]
    Closed,
}

#[derive(Debug)]
struct Backlog {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl Backlog {
    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Writes as much backlog as the socket takes; true when it is empty.
    fn drain(&mut self) -> io::Result<bool> {
        while self.start < self.buf.len() {
            match self.stream.write(&self.buf[self.start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.start += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.start = 0;
        Ok(true)
    }

    fn append(&mut self, parts: &[&[u8]], skip: usize) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut skip = skip;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            self.buf.extend_from_slice(&part[skip..]);
            skip = 0;
        }
    }
}

/// The shared, non-blocking writer of one RTSP connection.
#[derive(Debug)]
pub struct InterleavedSink {
    inner: Mutex<Backlog>,
    closed: AtomicBool,
}

impl InterleavedSink {
    /// Wraps a (duplicated) handle of the connection; it is switched to non-blocking mode.
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            inner: Mutex::new(Backlog {
                stream,
                buf: Vec::new(),
                start: 0,
            }),
            closed: AtomicBool::new(false),
        })
    }

    /// True once the sink was closed or failed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Writes `parts` as one message, in order after anything already queued. With
    /// `may_exceed` (RTSP responses, BYE), the backlog limit does not apply.
    pub fn write_parts(&self, parts: &[&[u8]], may_exceed: bool) -> Result<(), SinkError> {
        if self.is_closed() {
            return Err(SinkError::Closed);
        }
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let result = (|| {
            if b.pending() > 0 && !b.drain().map_err(|_| SinkError::Closed)? {
                if !may_exceed && b.pending() + total > MAX_BACKLOG_BYTES {
                    return Err(SinkError::Overflow);
                }
                b.append(parts, 0);
                return Ok(());
            }
            let slices: [IoSlice<'_>; 4] =
                std::array::from_fn(|i| IoSlice::new(parts.get(i).copied().unwrap_or(&[])));
            let n_slices = parts.len().min(4);
            let written = loop {
                match b.stream.write_vectored(&slices[..n_slices]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                    Err(_) => return Err(SinkError::Closed),
                }
            };
            if written < total {
                // Only the remainder of this one message is queued, whatever the limit: a
                // frame must never be left half-written.
                b.append(parts, written);
            }
            Ok(())
        })();
        if result == Err(SinkError::Closed) {
            self.closed.store(true, Ordering::Release);
        }
        result
    }

    /// Tries to send queued bytes: `Ok(true)` when nothing is left, `Err(WouldBlock)` when the
    /// socket is full (the form `tokio::net::TcpStream::try_io` expects).
    pub fn flush(&self) -> io::Result<bool> {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match b.drain() {
            Ok(true) => Ok(true),
            Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => {
                self.closed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Bytes queued in user space.
    pub fn backlog_bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending()
    }

    /// Shuts the connection down in both directions; the control thread's reader then sees
    /// end-of-stream and tears the connection's sessions down.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = b.stream.shutdown(Shutdown::Both);
    }
}

/// The 4-byte interleaved frame header: `$`, channel, 16-bit length (RFC 2326 §10.12).
pub fn interleaved_header(channel: u8, len: usize) -> [u8; 4] {
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [b'$', channel, len[0], len[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn frames_arrive_whole_and_in_order() {
        let (tx, mut rx) = pair();
        let sink = InterleavedSink::new(tx).unwrap();
        sink.write_parts(&[&interleaved_header(0, 3), b"abc"], false)
            .unwrap();
        sink.write_parts(&[b"RTSP/1.0 200 OK\r\n\r\n"], true)
            .unwrap();
        let mut got = vec![0u8; 7 + 19];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got[..7], b"$\x00\x00\x03abc");
        assert_eq!(&got[7..], b"RTSP/1.0 200 OK\r\n\r\n");
    }

    #[test]
    fn a_reader_that_stops_reading_is_refused_at_the_backlog_limit() {
        let (tx, _rx_never_read) = pair();
        let sink = InterleavedSink::new(tx).unwrap();
        let chunk = vec![0u8; 1200];
        let mut refused = false;
        for _ in 0..100_000 {
            match sink.write_parts(&[&interleaved_header(0, chunk.len()), &chunk], false) {
                Ok(()) => {}
                Err(SinkError::Overflow) => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(refused, "backlog must be bounded");
        assert!(sink.backlog_bytes() <= MAX_BACKLOG_BYTES + 1204);
    }
}
