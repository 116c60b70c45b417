//! Gather sends on TCP streams (RTP interleaved on the RTSP connection, RFC 2326 §10.12):
//! plain `sendmsg(2)` with iovecs, `MSG_ZEROCOPY` with its error-queue completions, and
//! io_uring `SENDMSG` / `SENDMSG_ZC` for many streams in one submission. Issue 19 measures
//! the zero-copy variants against the plain one (`bench/tcp_send_floor.rs`).
//!
//! Lifetime rules:
//! - Plain `sendmsg`: the kernel copies the bytes before the call returns.
//! - `MSG_ZEROCOPY` (Linux `Documentation/networking/msg_zerocopy.rst`): the kernel pins the
//!   pages of the bytes sent and transmits from them until it posts a completion on the
//!   socket's error queue. Pinned pages stay valid however the process treats the memory, so
//!   this is a matter of *content*, not memory safety: [`ZeroCopySender`] borrows the bytes
//!   for `'buf` and reaps (boundedly) every completion before it is dropped, so they are not
//!   freed or changed while the kernel may still send from them.
//! - io_uring: an operation may read its `msghdr` and `iovec`s until its completion is
//!   reaped, and a `SENDMSG_ZC` operation's bytes until its notification is. [`UringTcpSender`]
//!   waits for every operation's completion before `send` returns (so the `msghdr`s and the
//!   caller's `iovec` array may go), borrows the bytes for `'buf` and reaps every notification
//!   before it is dropped; if that cannot be done, the ring is leaked, never freed under the
//!   kernel.
//!
//! Not here: what to send, counting per packet (`shard::tcp_floor`).

use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::mem;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring};

use super::uring::UringUnavailable;

/// `SO_ZEROCOPY` (asm-generic/socket.h; the same value on every architecture the crate
/// builds for; not exported by `libc` for Linux).
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` (linux/errqueue.h): a zero-copy completion, not an error.
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED` (linux/errqueue.h): the kernel copied the bytes after all.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;
/// `IORING_SEND_ZC_REPORT_USAGE` (linux/io_uring.h): the notification says whether the
/// bytes were copied.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED` (linux/io_uring.h): bit of a notification's `res`.
const IORING_NOTIF_USAGE_ZC_COPIED: i32 = 1 << 31;

/// How long dropping a zero-copy sender waits for the kernel's outstanding completions.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Zero-copy completions reaped so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZeroCopyReport {
    /// Sends the kernel reported complete (it no longer reads their bytes).
    pub completed: u64,
    /// Of those, sends the kernel reports it copied after all (`SO_EE_CODE_ZEROCOPY_COPIED`,
    /// `IORING_NOTIF_USAGE_ZC_COPIED`): on loopback, delivery to a local socket copies
    /// zero-copy pages (`skb_orphan_frags_rx`).
    pub copied: u64,
    /// Notifications read (an error-queue entry covers a range of sends; io_uring posts one
    /// per operation).
    pub notifications: u64,
    /// Reaping calls made (`recvmsg(MSG_ERRQUEUE)`; io_uring notifications come with the
    /// ring's other completions and cost none of their own).
    pub reap_calls: u64,
}

/// One `sendmsg(2)` of `iov` on `stream`, non-blocking (`MSG_DONTWAIT`, `MSG_NOSIGNAL`):
/// the bytes accepted, which on a stream may be fewer than offered.
pub(crate) fn send_gather(stream: &TcpStream, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    sendmsg(stream, iov, 0)
}

fn sendmsg(stream: &TcpStream, iov: &[IoSlice<'_>], extra: libc::c_int) -> io::Result<usize> {
    super::tcp::sendmsg_nowait(stream, iov, extra)
}

/// Turns `SO_ZEROCOPY` on: without it the kernel ignores `MSG_ZEROCOPY`.
pub(crate) fn enable_zerocopy(stream: &TcpStream) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) reads `optlen` bytes from `optval`, a live c_int on the stack.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ZEROCOPY,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `MSG_ZEROCOPY` sends on streams that have `SO_ZEROCOPY` on, with the completions read
/// back from each socket's error queue. Borrows the bytes it may send for `'buf` and, when
/// dropped, waits (up to 2 s) for every outstanding completion.
pub(crate) struct ZeroCopySender<'s, 'buf> {
    streams: &'s [TcpStream],
    /// Sends per stream that the kernel has not reported complete.
    outstanding: Vec<u64>,
    report: ZeroCopyReport,
    _buf: PhantomData<&'buf [u8]>,
}

impl<'s, 'buf> ZeroCopySender<'s, 'buf> {
    /// A sender over `streams`, each of which must have had [`enable_zerocopy`].
    pub(crate) fn new(streams: &'s [TcpStream]) -> Self {
        Self {
            streams,
            outstanding: vec![0; streams.len()],
            report: ZeroCopyReport::default(),
            _buf: PhantomData,
        }
    }

    /// One `sendmsg(MSG_ZEROCOPY)` of `iov` on stream `conn`: the bytes accepted.
    pub(crate) fn send(&mut self, conn: usize, iov: &[IoSlice<'buf>]) -> io::Result<usize> {
        let n = sendmsg(&self.streams[conn], iov, libc::MSG_ZEROCOPY)?;
        // msg_zerocopy.rst: every send that returns success (bytes > 0) gets a notification
        // id; one that fails outright releases its id.
        if n > 0 {
            self.outstanding[conn] += 1;
        }
        Ok(n)
    }

    /// Sends on `conn` not yet reported complete.
    pub(crate) fn outstanding(&self, conn: usize) -> u64 {
        self.outstanding[conn]
    }

    /// Reads one entry off `conn`'s error queue if there is one (one `recvmsg` call); returns
    /// whether it held a zero-copy completion.
    pub(crate) fn reap(&mut self, conn: usize) -> bool {
        self.report.reap_calls += 1;
        match read_zerocopy_completion(&self.streams[conn]) {
            Some(c) => {
                let sends = u64::from(c.hi.wrapping_sub(c.lo)) + 1;
                self.outstanding[conn] = self.outstanding[conn].saturating_sub(sends);
                self.report.completed += sends;
                self.report.notifications += 1;
                if c.copied {
                    self.report.copied += sends;
                }
                true
            }
            None => false,
        }
    }

    /// What was reaped so far.
    pub(crate) fn report(&self) -> ZeroCopyReport {
        self.report
    }

    /// Reaps until no send is outstanding or `limit` has passed; returns the sends still
    /// outstanding.
    pub(crate) fn drain(&mut self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            for conn in 0..self.streams.len() {
                while self.outstanding[conn] > 0 && self.reap(conn) {}
            }
            let left: u64 = self.outstanding.iter().sum();
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ZeroCopySender<'_, '_> {
    fn drop(&mut self) {
        // The kernel pinned the pages it still sends from, so leaving here early is memory
        // safe; it would only let `'buf`'s owner change bytes not yet sent.
        let left = self.drain(DRAIN_WAIT);
        if left > 0 {
            tracing::warn!(
                left,
                "MSG_ZEROCOPY completions still outstanding after {DRAIN_WAIT:?}"
            );
        }
    }
}

/// One zero-copy completion: sends `lo..=hi` (notification ids, counted per socket from 0)
/// are done.
struct ZcCompletion {
    lo: u32,
    hi: u32,
    copied: bool,
}

/// Takes one entry off `stream`'s error queue without blocking; `None` when it is empty or
/// the entry is not a zero-copy completion.
fn read_zerocopy_completion(stream: &TcpStream) -> Option<ZcCompletion> {
    let mut control = [0u64; 16]; // 128 bytes, 8-aligned: room for one sock_extended_err cmsg
                                  // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: `msg` points only at `control`, alive for the call; no data buffer is needed
    // (msg_zerocopy.rst: completions carry no payload).
    let ret = unsafe {
        libc::recvmsg(
            stream.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if ret < 0 {
        return None;
    }
    let mut found = None;
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel filled, bounded by
    // msg_controllen; a header's data is read only if its length covers a sock_extended_err.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let is_recverr = (c.cmsg_level == libc::SOL_IP && c.cmsg_type == libc::IP_RECVERR)
                || (c.cmsg_level == libc::SOL_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
            if is_recverr
                && c.cmsg_len as usize
                    >= libc::CMSG_LEN(mem::size_of::<libc::sock_extended_err>() as u32) as usize
            {
                let ee = libc::CMSG_DATA(cmsg)
                    .cast::<libc::sock_extended_err>()
                    .read_unaligned();
                // msg_zerocopy.rst: ee_errno 0, origin ZEROCOPY, ids ee_info..=ee_data.
                if ee.ee_errno == 0 && ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                    found = Some(ZcCompletion {
                        lo: ee.ee_info,
                        hi: ee.ee_data,
                        copied: ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    });
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    found
}

/// Largest number of streams one `UringTcpSender::send` takes (one operation each).
pub const URING_MAX_STREAMS: usize = 4096;

/// io_uring `IORING_OP_SENDMSG` (or `SENDMSG_ZC`) on many streams: one operation per
/// stream, all submitted and waited for with one `io_uring_enter(2)` when they complete
/// inline (they do: `MSG_DONTWAIT` makes a full socket answer `-EAGAIN` instead of parking).
pub(crate) struct UringTcpSender<'s, 'buf> {
    ring: Option<IoUring>,
    zerocopy: bool,
    streams: &'s [TcpStream],
    /// One `msghdr` per stream, pointing into the caller's iovec array during `send`.
    msgs: Box<[libc::msghdr]>,
    /// `SENDMSG_ZC` notifications announced (`IORING_CQE_F_MORE`) and not yet reaped.
    pending_notifs: u64,
    report: ZeroCopyReport,
    _buf: PhantomData<&'buf [u8]>,
}

impl<'s, 'buf> UringTcpSender<'s, 'buf> {
    /// A ring with one submission entry per stream (at most [`URING_MAX_STREAMS`]); with
    /// `zerocopy`, `SENDMSG_ZC` (Linux 6.1) reporting whether the kernel copied.
    pub(crate) fn new(streams: &'s [TcpStream], zerocopy: bool) -> Result<Self, UringUnavailable> {
        let entries = streams
            .len()
            .clamp(1, URING_MAX_STREAMS)
            .next_power_of_two() as u32;
        let ring = IoUring::builder()
            // Room for every operation's completion and its notification, twice over.
            .setup_cqsize(entries * 4)
            .build(entries)
            .map_err(UringUnavailable::Setup)?;
        let mut probe = io_uring::Probe::new();
        let code = if zerocopy {
            opcode::SendMsgZc::CODE
        } else {
            opcode::SendMsg::CODE
        };
        if ring.submitter().register_probe(&mut probe).is_ok() && !probe.is_supported(code) {
            return Err(UringUnavailable::NoSendMsg);
        }
        // SAFETY: all-zero is a valid msghdr.
        let blank: libc::msghdr = unsafe { mem::zeroed() };
        Ok(Self {
            ring: Some(ring),
            zerocopy,
            streams,
            msgs: vec![blank; streams.len()].into_boxed_slice(),
            pending_notifs: 0,
            report: ZeroCopyReport::default(),
            _buf: PhantomData,
        })
    }

    /// Sends `iov.chunks(stride)` — chunk `k` on stream `k`, every stream once — as one
    /// submission, waits for every operation's completion, and stores each result (bytes or
    /// `-errno`) in `results[k]`. Returns the `io_uring_enter` calls made. Notifications
    /// that have arrived are reaped on the way.
    ///
    /// An error means the ring broke with operations possibly in flight: it has been leaked
    /// and this sender refuses further sends.
    pub(crate) fn send(
        &mut self,
        iov: &[IoSlice<'buf>],
        stride: usize,
        results: &mut [i32],
    ) -> io::Result<usize> {
        let Some(ring) = self.ring.as_mut() else {
            return Err(io::Error::other("io_uring sender is broken"));
        };
        let n = self.streams.len();
        if stride == 0 || iov.len() != n * stride || results.len() != n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one chunk of `stride` iovecs and one result per stream",
            ));
        }
        {
            let mut sq = ring.submission();
            for (k, chunk) in iov.chunks(stride).enumerate() {
                let msg = &mut self.msgs[k];
                msg.msg_iov = chunk.as_ptr().cast_mut().cast();
                msg.msg_iovlen = chunk.len() as _;
                results[k] = -libc::ECANCELED;
                let fd = types::Fd(self.streams[k].as_raw_fd());
                // MSG_DONTWAIT: a full socket completes with -EAGAIN at once (io_uring
                // marks the request NOWAIT) instead of arming a poll.
                let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32;
                let entry = if self.zerocopy {
                    opcode::SendMsgZc::new(fd, msg)
                        .flags(flags)
                        .ioprio(IORING_SEND_ZC_REPORT_USAGE)
                        .build()
                } else {
                    opcode::SendMsg::new(fd, msg).flags(flags).build()
                };
                // SAFETY: io_uring `push`: "parameters of the entry (such as buffer) are
                // valid and will be valid for the entire duration of the operation". The
                // msghdr lives in `self.msgs`, its iovecs in `iov`, both borrowed until this
                // call returns, and it returns only after every operation's completion is
                // reaped (or leaks the ring); the bytes are borrowed for 'buf, and every
                // SENDMSG_ZC notification is reaped before `self` is dropped (or the ring
                // is leaked). The ring has at least `n` entries, all free: the last call
                // reaped everything it submitted.
                if unsafe { sq.push(&entry.user_data(k as u64)) }.is_err() {
                    unreachable!("the ring has an entry per stream and they are all free");
                }
            }
        }
        let mut reaped = 0;
        let mut enters = 0;
        let deadline = Instant::now() + DRAIN_WAIT;
        while reaped < n {
            enters += 1;
            match ring.submit_and_wait(n - reaped) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => {
                    mem::forget(self.ring.take());
                    // The msghdrs may still be read: leak them with the ring.
                    mem::forget(mem::take(&mut self.msgs));
                    return Err(e);
                }
            }
            reaped += Self::reap(ring, &mut self.pending_notifs, &mut self.report, results);
            if reaped < n && Instant::now() >= deadline {
                // MSG_DONTWAIT operations complete inline; one that has not in 2 s will
                // not: give the ring up rather than free what it may still read.
                mem::forget(self.ring.take());
                mem::forget(mem::take(&mut self.msgs));
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "io_uring sends did not complete",
                ));
            }
        }
        for m in self.msgs.iter_mut() {
            m.msg_iov = std::ptr::null_mut();
            m.msg_iovlen = 0;
        }
        Ok(enters)
    }

    /// Reaps every completion the ring holds: operations' results into `results`, and
    /// notifications into the report. Returns the operations (not notifications) reaped.
    fn reap(
        ring: &mut IoUring,
        pending_notifs: &mut u64,
        report: &mut ZeroCopyReport,
        results: &mut [i32],
    ) -> usize {
        let mut ops = 0;
        for cqe in ring.completion() {
            let flags = cqe.flags();
            if cqueue::notif(flags) {
                *pending_notifs = pending_notifs.saturating_sub(1);
                report.notifications += 1;
                report.completed += 1;
                if cqe.result() & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                    report.copied += 1;
                }
                continue;
            }
            if cqueue::more(flags) {
                *pending_notifs += 1;
            }
            if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                *r = cqe.result();
            }
            ops += 1;
        }
        ops
    }

    /// Notifications announced and not yet reaped.
    pub(crate) fn pending_notifications(&self) -> u64 {
        self.pending_notifs
    }

    /// What was reaped so far (notifications of `SENDMSG_ZC`; all zero for `SENDMSG`).
    pub(crate) fn report(&self) -> ZeroCopyReport {
        self.report
    }

    /// Waits up to `limit` for every announced notification; returns those still pending.
    pub(crate) fn drain(&mut self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        let Some(ring) = self.ring.as_mut() else {
            return self.pending_notifs;
        };
        while self.pending_notifs > 0 && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = types::Timespec::from(left.max(Duration::from_millis(1)));
            let args = types::SubmitArgs::new().timespec(&wait);
            match ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::ETIME)
                    ) => {}
                // Kernels without IORING_FEAT_EXT_ARG: poll instead of a timed wait.
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            Self::reap(ring, &mut self.pending_notifs, &mut self.report, &mut []);
        }
        self.pending_notifs
    }
}

impl Drop for UringTcpSender<'_, '_> {
    fn drop(&mut self) {
        if self.drain(DRAIN_WAIT) > 0 {
            // The kernel may still read the bytes of the operations not yet notified:
            // never tear the ring down under it.
            tracing::warn!(
                pending = self.pending_notifs,
                "io_uring SENDMSG_ZC notifications outstanding after {DRAIN_WAIT:?}: ring leaked"
            );
            mem::forget(self.ring.take());
        }
    }
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

    fn read_exact_bounded(r: &mut TcpStream, n: usize) -> Vec<u8> {
        r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; n];
        r.read_exact(&mut buf).unwrap();
        buf
    }

    /// Every variant delivers the gathered bytes in order, and the zero-copy ones report a
    /// completion for each send (copied, on loopback).
    #[test]
    fn every_variant_delivers_the_gathered_bytes_and_reaps_its_completions() {
        let head = *b"$\x00\x00\x05";
        let body = b"hello".to_vec();
        let iov = [IoSlice::new(&head), IoSlice::new(&body)];
        let want: Vec<u8> = head.iter().chain(body.iter()).copied().collect();

        let (a, mut b) = pair();
        assert_eq!(send_gather(&a, &iov).unwrap(), 9);
        assert_eq!(read_exact_bounded(&mut b, 9), want);

        enable_zerocopy(&a).unwrap();
        let streams = [a];
        {
            let mut zc = ZeroCopySender::new(&streams);
            for _ in 0..3 {
                assert_eq!(zc.send(0, &iov).unwrap(), 9);
            }
            assert_eq!(read_exact_bounded(&mut b, 27), want.repeat(3));
            assert_eq!(zc.drain(Duration::from_secs(2)), 0);
            let r = zc.report();
            assert_eq!(r.completed, 3, "{r:?}");
            assert_eq!(r.copied, 3, "loopback copies: {r:?}");
        }

        if crate::sys::uring::probe_io_uring().is_err() {
            assert_eq!(
                std::env::var("SHARDCAST_ALLOW_MISSING").as_deref(),
                Ok("uring"),
                "io_uring unavailable; set SHARDCAST_ALLOW_MISSING=uring to skip"
            );
            return;
        }
        for zerocopy in [false, true] {
            let mut ring = UringTcpSender::new(&streams, zerocopy).unwrap();
            let mut results = [0i32; 1];
            ring.send(&iov, 2, &mut results).unwrap();
            assert_eq!(results, [9]);
            assert_eq!(read_exact_bounded(&mut b, 9), want);
            assert_eq!(ring.drain(Duration::from_secs(2)), 0);
            let r = ring.report();
            if zerocopy {
                assert_eq!((r.completed, r.copied), (1, 1), "{r:?}");
            } else {
                assert_eq!(r, ZeroCopyReport::default());
            }
        }
    }
}
