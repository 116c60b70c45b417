//! The write side of one TCP connection, shared by the control thread (RTSP responses) and a
//! shard (media: RTP/RTCP in `$` interleaved frames, RFC 2326 §10.12).
//!
//! Every write goes through one [`TcpSink`], so a response and a frame never interleave
//! mid-message: the socket is written only under the sink's lock, and bytes a write could
//! not hand to the kernel are queued, whole, in a bounded user-space backlog that goes out
//! before anything written later. The shard takes the lock once per connection per pass
//! ([`TcpSink::write_frames`], the pass's frames in one gathered `sendmsg`), the control
//! thread once per response ([`TcpSink::write_message`]). The socket is non-blocking: a
//! viewer whose backlog would exceed its limit is cut off (the shard sends what BYE fits,
//! then shuts the connection down) instead of stalling the shard or growing memory.

use std::io::{self, IoSlice};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::sys::tcp::{send_gathered, set_notsent_lowat, MAX_IOVECS};
use crate::tls::{Closure, Sealer};

/// Largest backlog a viewer may build before it is cut off (about 2 s of a 2 Mbit/s stream).
pub const MAX_BACKLOG_BYTES: usize = 512 * 1024;

/// Unsent bytes the kernel may hold for a media connection (`TCP_NOTSENT_LOWAT`), as media
/// time: beyond this a slow reader's queue grows in the backlog, where the cut-off rule sees
/// it, instead of hiding seconds of media in the kernel.
pub const KERNEL_UNSENT_SECS: f64 = 0.25;

/// Bounds of the `TCP_NOTSENT_LOWAT` a stream's bitrate gives.
const KERNEL_UNSENT_BOUNDS: (u32, u32) = (32 * 1024, 1024 * 1024);

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

/// What a batch write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// `sendmsg` calls made (0 when everything went to the backlog).
    pub syscalls: u32,
    /// Bytes queued in the backlog by this write (the kernel's buffer was full).
    pub queued: usize,
}

#[derive(Debug, Default)]
struct Backlog {
    buf: Vec<u8>,
    start: usize,
    /// RTSPS: the TLS send half (RFC 8446 §5.2). Under this lock, so responses and frames
    /// are sealed in the order they go on the wire.
    tls: Option<Sealer>,
    /// The records of the write in progress, reused from write to write.
    sealed: Vec<u8>,
}

impl Backlog {
    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Writes as much backlog as the socket takes; true when it is empty.
    fn drain(&mut self, stream: &TcpStream) -> io::Result<bool> {
        while self.start < self.buf.len() {
            match send_gathered(stream, &[IoSlice::new(&self.buf[self.start..])])? {
                0 => return Ok(false),
                n => self.start += n,
            }
        }
        self.buf.clear();
        self.start = 0;
        Ok(true)
    }

    /// Appends `slices` after skipping their first `skip` bytes (a copy: only bytes the
    /// kernel could not take right away come here).
    fn append(&mut self, slices: &[IoSlice<'_>], skip: usize) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut skip = skip;
        for slice in slices {
            if skip >= slice.len() {
                skip -= slice.len();
                continue;
            }
            self.buf.extend_from_slice(&slice[skip..]);
            skip = 0;
        }
    }
}

/// The shared, non-blocking writer of one TCP connection.
#[derive(Debug)]
pub struct TcpSink {
    stream: TcpStream,
    backlog: Mutex<Backlog>,
    closed: AtomicBool,
}

impl TcpSink {
    /// Wraps a (duplicated) handle of the connection; it is switched to non-blocking mode.
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            backlog: Mutex::new(Backlog::default()),
            closed: AtomicBool::new(false),
        })
    }

    /// Sizes the kernel's unsent queue for a stream of `bytes_per_sec` (see
    /// [`KERNEL_UNSENT_SECS`]). The send buffer itself stays autotuned: it must hold what is
    /// in flight on the viewer's path, which only the kernel knows.
    pub fn size_for_media(&self, bytes_per_sec: f64) -> io::Result<()> {
        let (low, high) = KERNEL_UNSENT_BOUNDS;
        let lowat = (bytes_per_sec * KERNEL_UNSENT_SECS).clamp(f64::from(low), f64::from(high));
        set_notsent_lowat(&self.stream, lowat as u32)
    }

    /// RTSPS: from now on every write is sealed into TLS records (RFC 8446 §5.2) by
    /// `sealer`, one record per ≤ 16 KiB of a write (a pass's frames share records).
    pub fn set_tls(&self, sealer: Sealer) {
        self.backlog.lock().unwrap_or_else(|p| p.into_inner()).tls = Some(sealer);
    }

    /// RTSPS: ends the TLS stream as `closure` says (RFC 8446 §6.1: `close_notify` before
    /// our side closes; §6.2: an error alert instead when we end it on an error), queued
    /// after everything already written, and closes the sink: every later write is refused.
    /// The caller flushes the backlog (`control::connection::flush_sink`). A plain TCP sink,
    /// or one whose TLS stream was already ended, is left as it is.
    pub fn end_tls(&self, closure: Closure) {
        let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut sealer) = b.tls.take() else {
            return;
        };
        let mut alert = Vec::with_capacity(32);
        if !self.is_closed() && sealer.seal_closure(closure, &mut alert).is_ok() {
            let _ = self.write_with(&mut b, &[IoSlice::new(&alert)], None);
        }
        self.closed.store(true, Ordering::Release);
    }

    /// True once the sink was closed or failed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Writes `parts` as one message (an RTSP response, an RTCP BYE), in order after anything
    /// already queued. Never refused for size: the backlog limit applies to media only.
    pub fn write_message(&self, parts: &[&[u8]]) -> Result<(), SinkError> {
        let slices: [IoSlice<'_>; 4] =
            std::array::from_fn(|i| IoSlice::new(parts.get(i).copied().unwrap_or(&[])));
        self.write_locked(&slices[..parts.len().min(4)], None)
            .map(drop)
    }

    /// Writes one pass's whole frames for this connection with as few gathered `sendmsg`
    /// calls as the kernel's iovec limit allows (one for up to `MAX_IOVECS` (1,024) slices), after
    /// the backlog. What the socket does not take is queued; if that takes the backlog past
    /// `limit`, the frames are still queued whole and [`SinkError::Overflow`] says the viewer
    /// is to be cut off.
    pub fn write_frames(&self, slices: &[IoSlice<'_>], limit: usize) -> Result<Written, SinkError> {
        self.write_locked(slices, Some(limit))
    }

    fn write_locked(
        &self,
        slices: &[IoSlice<'_>],
        limit: Option<usize>,
    ) -> Result<Written, SinkError> {
        if self.is_closed() {
            return Err(SinkError::Closed);
        }
        let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        // Checked again under the lock: `end_tls` closes the sink while holding it, and
        // nothing may follow its alert (least of all in the clear).
        if self.is_closed() {
            return Err(SinkError::Closed);
        }
        let result = match b.tls.take() {
            None => self.write_with(&mut b, slices, limit),
            Some(mut sealer) => {
                // The sealer and buffer are taken out and put back: the buffer keeps its
                // capacity, so a pass allocates nothing once it has grown to the stream's
                // batch size.
                let mut sealed = std::mem::take(&mut b.sealed);
                sealed.clear();
                let result = match sealer.seal(slices.iter().map(|s| &s[..]), &mut sealed) {
                    Ok(()) => self.write_with(&mut b, &[IoSlice::new(&sealed)], limit),
                    Err(_) => Err(SinkError::Closed),
                };
                b.sealed = sealed;
                b.tls = Some(sealer);
                result
            }
        };
        if result == Err(SinkError::Closed) {
            self.closed.store(true, Ordering::Release);
        }
        result
    }

    fn write_with(
        &self,
        b: &mut Backlog,
        slices: &[IoSlice<'_>],
        limit: Option<usize>,
    ) -> Result<Written, SinkError> {
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut out = Written::default();
        if b.pending() > 0 {
            out.syscalls += 1;
            if !b.drain(&self.stream).map_err(|_| SinkError::Closed)? {
                b.append(slices, 0);
                out.queued = total;
                return over_limit(b, limit).map(|()| out);
            }
        }
        let mut written = 0;
        for chunk in slices.chunks(MAX_IOVECS) {
            let len: usize = chunk.iter().map(|s| s.len()).sum();
            out.syscalls += 1;
            let n = send_gathered(&self.stream, chunk).map_err(|_| SinkError::Closed)?;
            written += n;
            if n < len {
                break;
            }
        }
        if written < total {
            // The rest of the frames, whatever the limit: a frame must never be left
            // half-written, and what follows must come after it.
            b.append(slices, written);
            out.queued = total - written;
            return over_limit(b, limit).map(|()| out);
        }
        Ok(out)
    }

    /// Tries to send queued bytes: `Ok(true)` when nothing is left, `Err(WouldBlock)` when the
    /// socket is full (the form `tokio::net::TcpStream::try_io` expects).
    pub fn flush(&self) -> io::Result<bool> {
        let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        match b.drain(&self.stream) {
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
        self.backlog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending()
    }

    /// Shuts the connection down in both directions; the control thread's reader then sees
    /// end-of-stream and tears the connection's sessions down.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn over_limit(b: &Backlog, limit: Option<usize>) -> Result<(), SinkError> {
    match limit {
        Some(limit) if b.pending() > limit => Err(SinkError::Overflow),
        _ => Ok(()),
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

    fn frame<'a>(head: &'a [u8; 4], body: &'a [u8]) -> [IoSlice<'a>; 2] {
        [IoSlice::new(head), IoSlice::new(body)]
    }

    #[test]
    fn frames_and_messages_arrive_whole_and_in_order() {
        let (tx, mut rx) = pair();
        let sink = TcpSink::new(tx).unwrap();
        let h = interleaved_header(0, 3);
        let w = sink.write_frames(&frame(&h, b"abc"), 1000).unwrap();
        assert_eq!(
            w,
            Written {
                syscalls: 1,
                queued: 0
            }
        );
        sink.write_message(&[b"RTSP/1.0 200 OK\r\n\r\n"]).unwrap();
        let mut got = vec![0u8; 7 + 19];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got[..7], b"$\x00\x00\x03abc");
        assert_eq!(&got[7..], b"RTSP/1.0 200 OK\r\n\r\n");
    }

    #[test]
    fn with_tls_frames_and_messages_are_sealed_in_order_one_record_per_16_kib() {
        use crate::tls::{Opened, Opener, Suite};
        let (key, iv) = ([3u8; 32], [4u8; 12]);
        let (tx, mut rx) = pair();
        let sink = TcpSink::new(tx).unwrap();
        sink.set_tls(Sealer::new(Suite::Chacha20Poly1305, &key, &iv, 0).unwrap());
        sink.write_message(&[b"RTSP/1.0 200 OK\r\n\r\n"]).unwrap();
        let body: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
        let head = interleaved_header(0, body.len());
        let slices: Vec<IoSlice<'_>> = (0..20).flat_map(|_| frame(&head, &body)).collect();
        let w = sink.write_frames(&slices, usize::MAX).unwrap();
        assert_eq!(w.syscalls, 1);
        // 19 + 20 × 1,204 bytes of plaintext: the response's record, then the pass's 24,080
        // bytes in two records.
        let wire_len = 19 + 22 + 20 * 1204 + 2 * 22;
        let mut wire = vec![0u8; wire_len];
        rx.read_exact(&mut wire).unwrap();
        let mut opener = Opener::new(Suite::Chacha20Poly1305, &key, &iv, 0).unwrap();
        let mut plain = Vec::new();
        assert_eq!(opener.open(&mut wire, &mut plain), Ok(Opened::More));
        assert!(wire.is_empty());
        assert_eq!(&plain[..19], b"RTSP/1.0 200 OK\r\n\r\n");
        for f in plain[19..].chunks(1204) {
            assert_eq!(&f[..4], &head);
            assert_eq!(&f[4..], &body[..]);
        }
        assert_eq!(plain.len(), 19 + 20 * 1204);
    }

    /// `end_tls` sends `close_notify` after what was written and refuses every later write
    /// (a frame after it would otherwise leave in the clear); a second end sends nothing.
    #[test]
    fn end_tls_sends_close_notify_last_and_refuses_later_writes() {
        use crate::tls::{Opened, Opener, Suite};
        let (key, iv) = ([5u8; 32], [6u8; 12]);
        let (tx, mut rx) = pair();
        let sink = TcpSink::new(tx).unwrap();
        sink.set_tls(Sealer::new(Suite::Chacha20Poly1305, &key, &iv, 0).unwrap());
        sink.write_message(&[b"RTSP/1.0 200 OK\r\n\r\n"]).unwrap();
        sink.end_tls(Closure::Notify);
        assert!(sink.is_closed());
        assert_eq!(
            sink.write_message(&[b"late"]),
            Err(SinkError::Closed),
            "nothing after the alert"
        );
        sink.end_tls(Closure::Notify);
        sink.close();
        let mut wire = Vec::new();
        rx.read_to_end(&mut wire).unwrap();
        // The response's record, then the alert's (2 bytes of content).
        assert_eq!(wire.len(), 19 + 22 + 2 + 22);
        let mut opener = Opener::new(Suite::Chacha20Poly1305, &key, &iv, 0).unwrap();
        let mut plain = Vec::new();
        assert_eq!(opener.open(&mut wire, &mut plain), Ok(Opened::Closed));
        assert_eq!(plain, b"RTSP/1.0 200 OK\r\n\r\n");
    }

    #[test]
    fn more_slices_than_one_sendmsg_takes_go_out_in_order() {
        let (tx, mut rx) = pair();
        let sink = TcpSink::new(tx).unwrap();
        let bytes: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let slices: Vec<IoSlice<'_>> = bytes.chunks(1).map(IoSlice::new).collect();
        let w = sink.write_frames(&slices, usize::MAX).unwrap();
        assert_eq!(w.syscalls, 3, "1,024 iovecs per sendmsg");
        let mut got = vec![0u8; bytes.len()];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(got, bytes);
    }

    #[test]
    fn a_reader_that_stops_reading_is_refused_at_the_backlog_limit_with_frames_whole() {
        let (tx, mut rx) = pair();
        let sink = TcpSink::new(tx).unwrap();
        sink.size_for_media(275_000.0).unwrap();
        let body: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
        let head = interleaved_header(0, body.len());
        let mut sent = 0usize;
        let mut refused = false;
        for _ in 0..100_000 {
            // Seven frames per pass, as a 2.2 Mbit/s video frame gives.
            let slices: Vec<IoSlice<'_>> = (0..7).flat_map(|_| frame(&head, &body)).collect();
            sent += 1;
            match sink.write_frames(&slices, MAX_BACKLOG_BYTES) {
                Ok(_) => {}
                Err(SinkError::Overflow) => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(refused, "backlog must be bounded");
        assert!(sink.backlog_bytes() <= MAX_BACKLOG_BYTES + 7 * 1204);
        // A response queued behind the backlog still arrives whole, after every frame.
        sink.write_message(&[b"RTSP/1.0 200 OK\r\n\r\n"]).unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 65536];
            while !all.ends_with(b"\r\n\r\n") {
                match rx.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
            all
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sink.backlog_bytes() > 0 && std::time::Instant::now() < deadline {
            let _ = sink.flush();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let all = reader.join().unwrap();
        assert_eq!(all.len(), sent * 7 * 1204 + 19);
        for (k, f) in all[..sent * 7 * 1204].chunks(1204).enumerate() {
            assert_eq!(&f[..4], &head, "frame {k} starts where it should");
            assert_eq!(&f[4..], &body[..], "frame {k} is whole");
        }
    }
}
