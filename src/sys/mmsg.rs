//! Batched UDP sends with `sendmmsg(2)`, each message gathered from two slices (a header
//! built in place and a body borrowed from the media mapping), so no payload is copied in
//! user space.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::SockAddr;

/// One message of a batch: header and body slices, sent as one datagram to `dest`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatherMsg<'a> {
    /// Bytes that precede the body (RTP header + payload header).
    pub(crate) header: &'a [u8],
    /// The payload body, usually a slice of the media mapping.
    pub(crate) body: &'a [u8],
    /// Destination address.
    pub(crate) dest: &'a SockAddr,
}

/// Reusable `mmsghdr`/`iovec` arrays for up to `capacity` messages; allocated once per shard.
pub(crate) struct MmsgScratch {
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers stored between calls are dangling-but-unused; every `send`
// rewrites all pointers it passes to the kernel before use, so moving the scratch to another
// thread cannot expose a stale pointer.
unsafe impl Send for MmsgScratch {}

/// Result of one batched send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BatchOutcome {
    /// Messages handed to the kernel.
    pub(crate) sent: usize,
    /// Messages dropped because the kernel refused them (errors other than EINTR).
    pub(crate) failed: usize,
    /// `sendmmsg` calls made.
    pub(crate) syscalls: usize,
    /// Last error seen, if any.
    pub(crate) last_error: Option<i32>,
}

impl MmsgScratch {
    /// Scratch for batches of up to `capacity` messages.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is a valid value.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        Self {
            iovecs: vec![zero_iov; capacity * 2],
            headers: vec![zero_hdr; capacity],
        }
    }

    /// Largest batch one call takes.
    pub(crate) fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// Sends `count` messages, message `i` described by `msg(i)`, in calls of up to
    /// `capacity` messages each.
    /// Messages the kernel rejects are skipped and counted; the rest still go out.
    pub(crate) fn send<'a>(
        &mut self,
        socket: &UdpSocket,
        count: usize,
        mut msg: impl FnMut(usize) -> GatherMsg<'a>,
    ) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        let mut done = 0;
        while done < count {
            let n = (count - done).min(self.capacity());
            for i in 0..n {
                let m = msg(done + i);
                self.iovecs[2 * i] = libc::iovec {
                    iov_base: m.header.as_ptr() as *mut libc::c_void,
                    iov_len: m.header.len(),
                };
                self.iovecs[2 * i + 1] = libc::iovec {
                    iov_base: m.body.as_ptr() as *mut libc::c_void,
                    iov_len: m.body.len(),
                };
                let hdr = &mut self.headers[i].msg_hdr;
                hdr.msg_name = m.dest.as_ptr() as *mut libc::c_void;
                hdr.msg_namelen = m.dest.len();
                hdr.msg_iov = &mut self.iovecs[2 * i];
                hdr.msg_iovlen = 2;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
                self.headers[i].msg_len = 0;
            }
            let mut first = 0;
            while first < n {
                out.syscalls += 1;
                // SAFETY: headers[first..n] were filled above; each points at iovecs in
                // `self.iovecs` and at a SockAddr, and each iovec at a slice borrowed for `'a`,
                // which outlives this call. sendmmsg(2): "The msg_len fields of successive
                // elements of msgvec are updated" — we read only the return count.
                let ret = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        self.headers[first..n].as_mut_ptr(),
                        (n - first) as libc::c_uint,
                        0,
                    )
                };
                if ret < 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // sendmmsg(2): "If an error occurs after at least one message has been
                    // sent, the call succeeds, and returns the number of messages sent" — so an
                    // error here concerns msgvec[first]: drop it and go on with the rest.
                    out.failed += 1;
                    out.last_error = err.raw_os_error();
                    first += 1;
                } else {
                    let sent = ret as usize;
                    out.sent += sent;
                    first += sent.max(1).min(n - first);
                    if sent == 0 {
                        out.failed += 1;
                    }
                }
            }
            done += n;
        }
        out
    }
}

/// Converts a std address to the form `sendmmsg` takes.
pub(crate) fn sock_addr(addr: SocketAddr) -> SockAddr {
    SockAddr::from(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendmmsg_gathers_header_and_body_into_one_datagram_each() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = sock_addr(rx.local_addr().unwrap());
        let headers: Vec<[u8; 2]> = (0..5u8).map(|i| [0xAA, i]).collect();
        let body = b"payload-from-the-mapping";
        let mut scratch = MmsgScratch::new(3); // smaller than the batch: forces two rounds
        let out = scratch.send(&tx, 5, |i| GatherMsg {
            header: &headers[i],
            body: &body[i..],
            dest: &dest,
        });
        assert_eq!(out.sent, 5);
        assert_eq!(out.failed, 0);
        assert_eq!(out.syscalls, 2);
        let mut buf = [0u8; 64];
        for i in 0..5 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..2], &[0xAA, i as u8]);
            assert_eq!(&buf[2..n], &body[i..]);
        }
    }
}
