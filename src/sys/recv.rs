//! Batched UDP receive: a `recvmmsg(2)` batch that drains one UDP socket per call with the
//! kernel's receive timestamp (`SO_TIMESTAMPNS`) and the source address of every datagram
//! (the load generator's RTP receiver and the shards' RTCP drain), plus the load generator's
//! `epoll(7)` set over many non-blocking sockets and the few process-level calls the harness
//! needs (file-descriptor limit, clock tick rate).

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest datagram kept per message; longer ones are truncated (RTP packets here are
/// under 1.5 KB).
pub(crate) const RECV_SLOT_BYTES: usize = 2048;

/// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`) with alignment slack.
const CMSG_SLOT_BYTES: usize = 64;

/// Nanoseconds since the Unix epoch on the realtime clock, the clock `SO_TIMESTAMPNS` uses.
pub(crate) fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An epoll instance; each registered fd carries a caller-chosen `u64` token.
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new epoll set returning up to `max_events` readiness events per wait.
    pub(crate) fn new(max_events: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a negative return is an error.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let zero = libc::epoll_event { events: 0, u64: 0 };
        Ok(Self {
            fd,
            events: vec![zero; max_events.max(1)],
        })
    }

    /// Registers `fd` for level-triggered readability with `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; epoll_ctl(2)
        // copies it ("The event argument describes the object linked to fd").
        let ret = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` and returns the tokens of ready fds (EINTR yields none).
    pub(crate) fn wait(&mut self, timeout: Duration) -> io::Result<impl Iterator<Item = u64> + '_> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `self.events` is a live buffer of `len` epoll_events; epoll_wait(2) writes
        // at most `maxevents` of them and returns how many — we read only [..n].
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ms,
            )
        };
        let n = if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            0
        } else {
            n as usize
        };
        Ok(self.events[..n].iter().map(|e| e.u64))
    }
}

/// Asks the kernel to stamp every datagram received on `fd` (`SO_TIMESTAMPNS`).
pub(crate) fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the stated size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One received datagram of a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Datagram<'a> {
    /// The bytes (truncated to [`RECV_SLOT_BYTES`]).
    pub(crate) bytes: &'a [u8],
    /// Kernel receive time in ns since the Unix epoch (or the call time without a stamp).
    pub(crate) arrival_ns: u64,
}

/// Reusable `recvmmsg` buffers for up to `capacity` datagrams per call.
pub(crate) struct RecvBatch {
    data: Vec<u8>,
    control: Vec<u64>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Source address of each datagram (`msg_name`, filled by the kernel).
    names: Vec<libc::sockaddr_storage>,
    received: usize,
    call_ns: u64,
}

// SAFETY: the raw pointers kept between calls are rewritten by every `recv` before the kernel
// sees them, and point into `self`'s own heap buffers, which move with the value.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Buffers for batches of `capacity` datagrams.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        // SAFETY: as above (an all-zero sockaddr_storage is family AF_UNSPEC).
        let zero_name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        Self {
            data: vec![0; capacity * RECV_SLOT_BYTES],
            control: vec![0; capacity * CMSG_SLOT_BYTES / 8],
            iovecs: vec![zero_iov; capacity],
            headers: vec![zero_hdr; capacity],
            names: vec![zero_name; capacity],
            received: 0,
            call_ns: 0,
        }
    }

    /// Receives up to the batch capacity from non-blocking `fd`; `Ok(0)` when nothing is
    /// queued (EAGAIN).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        let cap = self.headers.len();
        let data = self.data.as_mut_ptr();
        let control = self.control.as_mut_ptr().cast::<u8>();
        for i in 0..cap {
            // SAFETY (pointer arithmetic): i < cap, and `data`/`control` hold cap slots each.
            self.iovecs[i] = libc::iovec {
                iov_base: data.wrapping_add(i * RECV_SLOT_BYTES).cast(),
                iov_len: RECV_SLOT_BYTES,
            };
            let hdr = &mut self.headers[i].msg_hdr;
            hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = control.wrapping_add(i * CMSG_SLOT_BYTES).cast();
            hdr.msg_controllen = CMSG_SLOT_BYTES as _;
            hdr.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        self.call_ns = realtime_ns();
        let ret = loop {
            // SAFETY: headers[..cap] point at iovecs, control slots and address slots inside
            // `self`, which outlive the call; recvmmsg(2): "The msg_len field ... contains the number of
            // bytes returned" for each of the first `ret` messages — we read only those.
            let ret = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    cap as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if ret >= 0 {
                break ret as usize;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(err),
            }
        };
        self.received = ret;
        Ok(ret)
    }

    /// The `i`-th datagram of the last [`recv`](Self::recv) (`i` below its return value).
    pub(crate) fn datagram(&self, i: usize) -> Datagram<'_> {
        assert!(i < self.received, "datagram index past the batch");
        let hdr = &self.headers[i];
        let len = (hdr.msg_len as usize).min(RECV_SLOT_BYTES);
        let bytes = &self.data[i * RECV_SLOT_BYTES..i * RECV_SLOT_BYTES + len];
        let arrival_ns = self.timestamp(&hdr.msg_hdr).unwrap_or(self.call_ns);
        Datagram { bytes, arrival_ns }
    }

    /// Where the `i`-th datagram of the last [`recv`](Self::recv) came from (`None` for an
    /// address that is not IPv4 or IPv6).
    pub(crate) fn source(&self, i: usize) -> Option<SocketAddr> {
        assert!(i < self.received, "datagram index past the batch");
        let len = self.headers[i].msg_hdr.msg_namelen;
        if len as usize > mem::size_of::<libc::sockaddr_storage>() {
            return None;
        }
        // SAFETY: recvmmsg(2) wrote the sender's address into names[i] and its length into
        // msg_namelen (value-result, at most the size we passed, checked above); the rest of
        // the storage is initialised (zeroed at creation). `as_socket` reads the family
        // field and only then the matching sockaddr_in/sockaddr_in6.
        let addr = unsafe { socket2::SockAddr::new(self.names[i], len) };
        addr.as_socket()
    }

    fn timestamp(&self, msg: &libc::msghdr) -> Option<u64> {
        // SAFETY: `msg` was filled by the kernel in the last recvmmsg; its msg_control points
        // at our control slot and msg_controllen says how much of it the kernel wrote, which is
        // what CMSG_FIRSTHDR/CMSG_NXTHDR walk (cmsg(3)).
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
        while !cmsg.is_null() {
            // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return either null or a header inside the buffer.
            let c = unsafe { &*cmsg };
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                // SAFETY: for SCM_TIMESTAMPNS the data is a `struct timespec` (socket(7));
                // read_unaligned because the buffer gives no alignment guarantee for it.
                let ts: libc::timespec =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            // SAFETY: as for CMSG_FIRSTHDR above.
            cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
        }
        None
    }
}

/// Raises this process's open-file soft limit to its hard limit; returns the new soft limit.
/// Children spawned afterwards inherit it.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit the call fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; setrlimit(2) only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Clock ticks per second, the unit of `utime`/`stime` in `/proc/<pid>/stat` (proc(5)).
pub(crate) fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn recvmmsg_drains_a_batch_with_kernel_timestamps_and_sources() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_rx_timestamps(rx.as_raw_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = realtime_ns();
        for i in 0..5u8 {
            tx.send_to(&[i; 10], rx.local_addr().unwrap()).unwrap();
        }
        let mut epoll = Epoll::new(8).unwrap();
        epoll.add(rx.as_raw_fd(), 7).unwrap();
        let tokens: Vec<u64> = epoll.wait(Duration::from_secs(2)).unwrap().collect();
        assert_eq!(tokens, vec![7]);
        let mut batch = RecvBatch::new(3);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 3);
        for i in 0..3 {
            let d = batch.datagram(i);
            assert_eq!(d.bytes, &[i as u8; 10]);
            assert_eq!(batch.source(i), Some(tx.local_addr().unwrap()));
            assert!(d.arrival_ns >= before && d.arrival_ns <= realtime_ns());
        }
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 2);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 0, "EAGAIN is Ok(0)");
    }
}
