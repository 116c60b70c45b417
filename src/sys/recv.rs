//! Batched UDP receive: a `recvmmsg(2)` batch that drains one UDP socket per call with the
//! kernel's receive timestamp (`SO_TIMESTAMPNS`) and the source address of every datagram
//! (the shards' RTCP drain, and, re-exported as the public `net` module, the load
//! generator's RTP receiver),
//! optionally as coalesced trains (`UDP_GRO`, the receive side of UDP GSO).

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest datagram kept per message; longer ones are truncated (RTP packets here are
/// under 1.5 KB).
pub const RECV_SLOT_BYTES: usize = 2048;

/// Largest datagram a socket with [`enable_udp_gro`] can return: a whole coalesced train.
pub const GRO_SLOT_BYTES: usize = 65_536;

/// Room for one `SCM_TIMESTAMPNS` control message (`CMSG_SPACE(16)` = 32 bytes) and one
/// `UDP_GRO` message (`CMSG_SPACE(4)` = 24 bytes).
const CMSG_SLOT_BYTES: usize = 64;

/// `UDP_GRO` from `<linux/udp.h>` (level `SOL_UDP`).
const UDP_GRO: libc::c_int = 104;

/// Nanoseconds since the Unix epoch on the realtime clock, the clock `SO_TIMESTAMPNS` uses.
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Asks the kernel to stamp every datagram received on `fd` (`SO_TIMESTAMPNS`).
pub fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
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

/// Lets `fd` receive a GSO train as one datagram (`UDP_GRO`, Linux ≥ 5.0) instead of one per
/// segment; such a datagram carries its segment size ([`Datagram::segment_size`]).
///
/// udp(7) documents only `UDP_SEGMENT`; the kernel's `udp_lib_setsockopt` also marks the
/// socket as accepting `SKB_GSO_UDP_L4` packets, so on loopback a sender's GSO train is queued
/// whole instead of being cut into segments (`udp_rcv_segment`) on the *sender's* core — what
/// a remote receiver (another machine) would spare the sender too.
pub fn enable_udp_gro(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the stated size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
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
pub struct Datagram<'a> {
    /// The bytes (truncated to [`RECV_SLOT_BYTES`]).
    pub bytes: &'a [u8],
    /// Kernel receive time in ns since the Unix epoch (or the call time without a stamp).
    pub arrival_ns: u64,
    /// With [`enable_udp_gro`]: the size of each coalesced datagram in `bytes` (the last may
    /// be shorter); `None` for a plain datagram.
    pub segment_size: Option<usize>,
}

impl<'a> Datagram<'a> {
    /// The original datagrams: `bytes` cut at `segment_size`, or `bytes` whole.
    pub fn segments(&self) -> std::slice::Chunks<'a, u8> {
        let size = self.segment_size.unwrap_or(self.bytes.len()).max(1);
        self.bytes.chunks(size)
    }
}

/// Reusable `recvmmsg` buffers for up to `capacity` datagrams per call.
pub struct RecvBatch {
    data: Vec<u8>,
    slot_bytes: usize,
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
    /// Buffers for batches of `capacity` datagrams of up to [`RECV_SLOT_BYTES`] each.
    pub fn new(capacity: usize) -> Self {
        Self::with_slot_bytes(capacity, RECV_SLOT_BYTES)
    }

    /// Buffers for batches of `capacity` datagrams of up to `slot_bytes` each (longer ones
    /// are truncated); [`GRO_SLOT_BYTES`] for sockets with [`enable_udp_gro`].
    pub fn with_slot_bytes(capacity: usize, slot_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        let slot_bytes = slot_bytes.max(1);
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        // SAFETY: as above (an all-zero sockaddr_storage is family AF_UNSPEC).
        let zero_name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        Self {
            data: vec![0; capacity * slot_bytes],
            slot_bytes,
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
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        let cap = self.headers.len();
        let slot = self.slot_bytes;
        let data = self.data.as_mut_ptr();
        let control = self.control.as_mut_ptr().cast::<u8>();
        for i in 0..cap {
            // SAFETY (pointer arithmetic): i < cap, and `data`/`control` hold cap slots each.
            self.iovecs[i] = libc::iovec {
                iov_base: data.wrapping_add(i * slot).cast(),
                iov_len: slot,
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
    pub fn datagram(&self, i: usize) -> Datagram<'_> {
        assert!(i < self.received, "datagram index past the batch");
        let hdr = &self.headers[i];
        let slot = self.slot_bytes;
        let len = (hdr.msg_len as usize).min(slot);
        let bytes = &self.data[i * slot..i * slot + len];
        let (stamp, segment_size) = Self::control(&hdr.msg_hdr);
        Datagram {
            bytes,
            arrival_ns: stamp.unwrap_or(self.call_ns),
            segment_size,
        }
    }

    /// Where the `i`-th datagram of the last [`recv`](Self::recv) came from (`None` for an
    /// address that is not IPv4 or IPv6).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
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

    /// The receive timestamp and GRO segment size a datagram's control messages carry.
    fn control(msg: &libc::msghdr) -> (Option<u64>, Option<usize>) {
        let (mut stamp, mut segment_size) = (None, None);
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
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            } else if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == UDP_GRO {
                // SAFETY: the kernel's udp_cmsg_recv puts the segment size as an `int`;
                // read_unaligned as above.
                let size: libc::c_int =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                segment_size = usize::try_from(size).ok().filter(|&s| s > 0);
            }
            // SAFETY: as for CMSG_FIRSTHDR above.
            cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
        }
        (stamp, segment_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

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
        wait_readable(&rx);
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

    /// Sends one GSO train of 100-byte segments (100 + 100 + 50 bytes) to `to`.
    fn send_train(tx: &UdpSocket, to: SocketAddr) {
        use crate::sys::mmsg::{sock_addr, SendArena};
        let dest = sock_addr(to);
        let (a, b, c) = ([1u8; 100], [2u8; 100], [3u8; 50]);
        let mut arena = SendArena::new();
        let mut w = arena.window(false);
        w.begin_send(&dest, 0);
        w.push_segment(&a[..10], &[&a[10..]]);
        w.push_segment(&b[..10], &[&b[10..]]);
        w.push_segment(&c[..10], &[&c[10..]]);
        w.end_send(Some(100));
        assert_eq!(w.send_each(tx), 1, "one send carries the train");
    }

    /// Blocks (up to 2 s) until `sock` has a datagram queued, then makes it non-blocking again.
    fn wait_readable(sock: &UdpSocket) {
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        sock.peek(&mut [0u8; 1]).expect("a datagram arrives");
        sock.set_nonblocking(true).unwrap();
    }

    /// With UDP_GRO a GSO train arrives as one datagram carrying its segment size, and
    /// `segments` gives back the datagrams the sender meant; without it, one per segment.
    #[test]
    fn udp_gro_receives_a_gso_train_whole_and_segments_cut_it_back() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_rx_timestamps(rx.as_raw_fd()).unwrap();
        enable_udp_gro(rx.as_raw_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        send_train(&tx, rx.local_addr().unwrap());
        wait_readable(&rx);
        let mut batch = RecvBatch::with_slot_bytes(4, GRO_SLOT_BYTES);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 1);
        let d = batch.datagram(0);
        assert_eq!(d.bytes.len(), 250);
        assert_eq!(d.segment_size, Some(100));
        let lens: Vec<(usize, u8)> = d.segments().map(|s| (s.len(), s[0])).collect();
        assert_eq!(lens, vec![(100, 1), (100, 2), (50, 3)]);
        assert!(d.arrival_ns > 0);

        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        plain.set_nonblocking(true).unwrap();
        send_train(&tx, plain.local_addr().unwrap());
        wait_readable(&plain);
        assert_eq!(
            batch.recv(plain.as_raw_fd()).unwrap(),
            3,
            "cut by the kernel"
        );
        for i in 0..3 {
            let d = batch.datagram(i);
            assert_eq!(d.segment_size, None);
            assert_eq!(d.segments().count(), 1);
        }
    }
}
