//! Gathered UDP sends: a fixed arena of `mmsghdr`/`iovec`/control-message slots, filled one
//! *send* at a time (one datagram, or one UDP GSO train of up to [`MAX_SEGMENTS`]
//! datagrams), then handed to the kernel by `sendmmsg(2)`, by one `sendmsg(2)` per send, or
//! (in `sys::uring`) by io_uring. Each datagram is gathered from a header built in place and
//! a body borrowed from the media mapping — one slice, or up to [`MAX_BODY_PARTS`] for a
//! packet of several access units that lie apart in the file — so no payload is copied in
//! user space.
//!
//! Not here: deciding which packets form a GSO train (`shard::send::gso`), or what to do
//! with an error (the caller reads [`SendSlot::result`]).

use std::io;
use std::marker::PhantomData;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::SockAddr;

use super::cmsg::GsoCmsg;

/// Sends (`mmsghdr`s, io_uring SQEs) one window holds.
pub(crate) const MAX_SENDS: usize = 64;
/// Datagrams one GSO send may carry: the kernel's `UDP_MAX_SEGMENTS` was 64 before Linux 5.5
/// (128 since); 64 works everywhere and needs 128 iovecs, far below `UIO_MAXIOV` (1024).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Header bytes the arena copies per datagram (for io_uring, whose operations must not
/// point into the caller's stack); the shard's headers are 16 bytes at most.
pub(crate) const MAX_COPIED_HEADER: usize = 32;
/// Body slices one datagram may be gathered from. A datagram of more than one is always a
/// send of its own (never in a GSO train), so a send needs at most
/// `max(2 · MAX_SEGMENTS, 1 + MAX_BODY_PARTS)` iovecs and a window at most `2 · MAX_PACKETS`.
pub(crate) const MAX_BODY_PARTS: usize = 8;
const MAX_PACKETS: usize = MAX_SENDS * MAX_SEGMENTS;
const _: () = assert!(2 * MAX_SEGMENTS <= 1024, "UIO_MAXIOV");
const _: () = assert!(MAX_BODY_PARTS < 2 * MAX_SEGMENTS);

/// One message of a batch: header and body slices, sent as one datagram to `dest`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatherMsg<'a> {
    /// Bytes that precede the body (RTP header + payload header).
    pub(crate) header: &'a [u8],
    /// The payload body: slices of the media mapping, in order (`parts` used).
    body: [&'a [u8]; MAX_BODY_PARTS],
    parts: u8,
    /// Destination address.
    pub(crate) dest: &'a SockAddr,
}

impl<'a> GatherMsg<'a> {
    /// A datagram of `header` then the body slices `body` (at most [`MAX_BODY_PARTS`]; more
    /// is a caller bug and panics).
    pub(crate) fn new(header: &'a [u8], body: &[&'a [u8]], dest: &'a SockAddr) -> Self {
        assert!(body.len() <= MAX_BODY_PARTS, "too many body parts");
        let mut parts: [&'a [u8]; MAX_BODY_PARTS] = [&[]; MAX_BODY_PARTS];
        parts[..body.len()].copy_from_slice(body);
        Self {
            header,
            body: parts,
            parts: body.len() as u8,
            dest,
        }
    }

    /// The body slices.
    pub(crate) fn body(&self) -> &[&'a [u8]] {
        &self.body[..usize::from(self.parts)]
    }

    /// Datagram size: header plus body.
    pub(crate) fn len(&self) -> usize {
        self.header.len() + self.body().iter().map(|b| b.len()).sum::<usize>()
    }

    /// Gathered from more than one body slice (such datagrams go in sends of their own).
    pub(crate) fn is_multipart(&self) -> bool {
        self.parts > 1
    }
}

/// Bookkeeping of one send in a window, readable after the kernel answered.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SendSlot {
    /// Caller's tag (the batch index of the send's first datagram).
    pub(crate) tag: usize,
    /// Datagrams in this send.
    pub(crate) segments: u16,
    /// GSO segment size, or 0 for a plain datagram.
    pub(crate) segment_size: u16,
    /// Bytes the kernel took (≥ 0) or `-errno`.
    pub(crate) result: i32,
    first_iov: u32,
    /// Fingerprint of the destination ([`dest_key`]): equal addresses give equal keys.
    pub(crate) dest_key: u64,
}

/// A cheap fingerprint of a destination: exact for IPv4 (address and port), a fold of the
/// bytes for IPv6. Different addresses may (rarely) share a key; callers only use equal keys
/// to add ordering, so a collision costs speed, never correctness.
pub(crate) fn dest_key(dest: &SockAddr) -> u64 {
    match dest.as_socket() {
        Some(SocketAddr::V4(a)) => (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()),
        Some(SocketAddr::V6(a)) => {
            let v = u128::from(*a.ip()) ^ (u128::from(a.port()) << 64) ^ u128::from(a.scope_id());
            (1 << 63) | ((v as u64) ^ ((v >> 64) as u64))
        }
        None => u64::MAX,
    }
}

/// Fixed storage for one window of sends; allocated once per shard and never resized, so
/// the addresses handed to the kernel stay put while the arena lives.
pub(crate) struct SendArena {
    msgs: Box<[libc::mmsghdr]>,
    iovecs: Box<[libc::iovec]>,
    cmsgs: Box<[GsoCmsg]>,
    names: Box<[libc::sockaddr_storage]>,
    headers: Box<[[u8; MAX_COPIED_HEADER]]>,
    slots: Box<[SendSlot]>,
    sends: usize,
    iovs: usize,
    /// Datagrams pushed (index of the next header slot).
    packets: usize,
    open: bool,
    /// The open send holds a multi-part datagram (and so nothing else).
    open_multipart: bool,
}

// SAFETY: the raw pointers stored in `msgs`/`iovecs` between windows are never dereferenced:
// every send rewrites the pointers of the slots it passes to the kernel, so moving the arena
// to another thread cannot expose a stale pointer.
unsafe impl Send for SendArena {}

impl Default for SendArena {
    fn default() -> Self {
        Self::new()
    }
}

impl SendArena {
    /// Storage for [`MAX_SENDS`] sends of up to [`MAX_SEGMENTS`] datagrams each.
    pub(crate) fn new() -> Self {
        // SAFETY: iovec, mmsghdr and sockaddr_storage are plain C structs for which all-zero
        // is a valid value.
        let (zero_iov, zero_msg, zero_name): (libc::iovec, libc::mmsghdr, libc::sockaddr_storage) =
            unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
        Self {
            msgs: vec![zero_msg; MAX_SENDS].into_boxed_slice(),
            iovecs: vec![zero_iov; 2 * MAX_PACKETS].into_boxed_slice(),
            cmsgs: vec![GsoCmsg::new(0); MAX_SENDS].into_boxed_slice(),
            names: vec![zero_name; MAX_SENDS].into_boxed_slice(),
            headers: vec![[0; MAX_COPIED_HEADER]; MAX_PACKETS].into_boxed_slice(),
            slots: vec![SendSlot::default(); MAX_SENDS].into_boxed_slice(),
            sends: 0,
            iovs: 0,
            packets: 0,
            open: false,
            open_multipart: false,
        }
    }

    /// Starts filling a window whose slices borrow for `'a`. With `copy_to_arena`, header
    /// bytes and destination addresses are copied into the arena (io_uring).
    pub(crate) fn window<'s, 'a>(&'s mut self, copy_to_arena: bool) -> Window<'s, 'a> {
        self.clear();
        Window {
            arena: self,
            copy_to_arena,
            _borrow: PhantomData,
        }
    }

    fn clear(&mut self) {
        self.sends = 0;
        self.iovs = 0;
        self.packets = 0;
        self.open = false;
        self.open_multipart = false;
    }
}

/// A window being filled: every pointer it stores comes from a slice borrowed for `'a` or
/// from the arena, and the kernel reads them only inside this window's send methods.
pub(crate) struct Window<'s, 'a> {
    arena: &'s mut SendArena,
    copy_to_arena: bool,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> Window<'_, 'a> {
    /// No room for another send: send the window first.
    pub(crate) fn is_full(&self) -> bool {
        self.arena.sends == MAX_SENDS
    }

    /// No send in the window.
    pub(crate) fn is_empty(&self) -> bool {
        self.arena.sends == 0
    }

    /// A send was begun and not yet ended.
    pub(crate) fn send_open(&self) -> bool {
        self.arena.open
    }

    /// Datagrams in the open send.
    pub(crate) fn open_segments(&self) -> usize {
        if self.arena.open {
            usize::from(self.arena.slots[self.arena.sends - 1].segments)
        } else {
            0
        }
    }

    /// Begins a send to `dest`. Panics if the window is full or a send is open (caller bug).
    pub(crate) fn begin_send(&mut self, dest: &'a SockAddr, tag: usize) {
        assert!(!self.is_full() && !self.arena.open, "window misuse");
        let k = self.arena.sends;
        let a = &mut *self.arena;
        let hdr = &mut a.msgs[k].msg_hdr;
        if self.copy_to_arena {
            let name = &mut a.names[k];
            let len = (dest.len() as usize).min(mem::size_of::<libc::sockaddr_storage>());
            // SAFETY: both regions are valid for `len` bytes (a SockAddr's storage is a
            // sockaddr_storage and `len` is capped to its size) and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    dest.as_ptr().cast::<u8>(),
                    (name as *mut libc::sockaddr_storage).cast::<u8>(),
                    len,
                );
            }
            hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        } else {
            hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
        }
        hdr.msg_namelen = dest.len();
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
        hdr.msg_flags = 0;
        a.msgs[k].msg_len = 0;
        a.slots[k] = SendSlot {
            tag,
            segments: 0,
            segment_size: 0,
            result: 0,
            first_iov: a.iovs as u32,
            dest_key: dest_key(dest),
        };
        a.sends += 1;
        a.open = true;
        a.open_multipart = false;
    }

    /// Appends a datagram (header + body slices) to the open send. Panics without an open
    /// send, past [`MAX_SEGMENTS`], or for a multi-part body in a send that has or will get
    /// other datagrams (caller bugs: see [`MAX_BODY_PARTS`]).
    pub(crate) fn push_segment(&mut self, header: &'a [u8], body: &[&'a [u8]]) {
        let a = &mut *self.arena;
        assert!(a.open, "no open send");
        let k = a.sends - 1;
        assert!(
            usize::from(a.slots[k].segments) < MAX_SEGMENTS,
            "too many segments"
        );
        let multipart = body.len() > 1;
        assert!(
            body.len() <= MAX_BODY_PARTS
                && !a.open_multipart
                && (!multipart || a.slots[k].segments == 0),
            "a multi-part datagram must be alone in its send"
        );
        a.open_multipart = multipart;
        assert!(
            a.iovs + 1 + body.len() <= a.iovecs.len(),
            "iovecs exhausted"
        );
        let packet = a.packets;
        a.packets += 1;
        let header_ptr = if self.copy_to_arena && header.len() <= MAX_COPIED_HEADER {
            let slot = &mut a.headers[packet];
            slot[..header.len()].copy_from_slice(header);
            slot.as_mut_ptr()
        } else {
            // A longer header stays borrowed: it lives for `'a`, past the wait for completion.
            header.as_ptr() as *mut u8
        };
        a.iovecs[a.iovs] = libc::iovec {
            iov_base: header_ptr.cast(),
            iov_len: header.len(),
        };
        a.iovs += 1;
        for part in body {
            a.iovecs[a.iovs] = libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            };
            a.iovs += 1;
        }
        a.slots[k].segments += 1;
    }

    /// Closes the open send; with `segment_size` and at least two datagrams it becomes one
    /// GSO send of that segment size.
    pub(crate) fn end_send(&mut self, segment_size: Option<u16>) {
        let a = &mut *self.arena;
        assert!(a.open, "no open send");
        a.open = false;
        let k = a.sends - 1;
        let slot = &mut a.slots[k];
        let first = slot.first_iov as usize;
        let hdr = &mut a.msgs[k].msg_hdr;
        hdr.msg_iov = &mut a.iovecs[first];
        hdr.msg_iovlen = a.iovs - first;
        if let Some(size) = segment_size.filter(|_| slot.segments >= 2) {
            slot.segment_size = size;
            a.cmsgs[k] = GsoCmsg::new(size);
            hdr.msg_control = (&mut a.cmsgs[k] as *mut GsoCmsg).cast();
            hdr.msg_controllen = GsoCmsg::SPACE;
        }
    }

    /// The sends of the window, with their results once sent.
    pub(crate) fn slots(&self) -> &[SendSlot] {
        &self.arena.slots[..self.arena.sends]
    }

    /// Empties the window for reuse (the pointers left behind are never read again).
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
    }

    /// The ended sends as `msghdr`s and their slots, for the io_uring backend.
    pub(super) fn prepared(&mut self) -> (&[libc::mmsghdr], &mut [SendSlot]) {
        assert!(!self.arena.open, "send still open");
        let n = self.arena.sends;
        (&self.arena.msgs[..n], &mut self.arena.slots[..n])
    }

    /// Leaks the arena's storage, replacing it with fresh storage, because the kernel may
    /// still read it (io_uring after a failed wait). Allocates; error path only.
    pub(super) fn leak_storage(&mut self) {
        mem::forget(mem::take(&mut *self.arena));
    }

    /// Sends the window with `sendmmsg(2)`; returns the number of calls made. A send the
    /// kernel refuses gets its `-errno` and the rest still go out.
    pub(crate) fn send_mmsg(&mut self, socket: &UdpSocket) -> usize {
        assert!(!self.arena.open, "send still open");
        let a = &mut *self.arena;
        let n = a.sends;
        let mut syscalls = 0;
        let mut first = 0;
        while first < n {
            syscalls += 1;
            // SAFETY: msgs[first..n] were filled by begin_send/end_send of this window: each
            // points at iovecs and a control message in the arena and at a destination and
            // slices borrowed for 'a, which outlives this call. sendmmsg(2): "The msg_len
            // fields of successive elements of msgvec are updated" — we read only [..ret].
            let ret = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    a.msgs[first..n].as_mut_ptr(),
                    (n - first) as libc::c_uint,
                    0,
                )
            };
            if ret < 0 {
                let errno = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if errno == libc::EINTR {
                    continue;
                }
                // sendmmsg(2): "If an error occurs after at least one message has been sent,
                // the call succeeds, and returns the number of messages sent" — so an error
                // here concerns msgvec[first]: record it and go on with the rest.
                a.slots[first].result = -errno;
                first += 1;
            } else if ret == 0 {
                a.slots[first].result = -libc::EIO;
                first += 1;
            } else {
                for i in first..first + ret as usize {
                    a.slots[i].result = a.msgs[i].msg_len as i32;
                }
                first += ret as usize;
            }
        }
        syscalls
    }

    /// Sends the window with one `sendmsg(2)` per send (the baseline); returns the calls made.
    pub(crate) fn send_each(&mut self, socket: &UdpSocket) -> usize {
        assert!(!self.arena.open, "send still open");
        let a = &mut *self.arena;
        let mut syscalls = 0;
        for k in 0..a.sends {
            loop {
                syscalls += 1;
                // SAFETY: msgs[k].msg_hdr was filled by begin_send/end_send of this window
                // and points only at the arena and at data borrowed for 'a (see send_mmsg).
                let ret = unsafe { libc::sendmsg(socket.as_raw_fd(), &a.msgs[k].msg_hdr, 0) };
                if ret >= 0 {
                    a.slots[k].result = ret as i32;
                    break;
                }
                let errno = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if errno != libc::EINTR {
                    a.slots[k].result = -errno;
                    break;
                }
            }
        }
        syscalls
    }
}

/// Converts a std address to the form the send calls take.
pub(crate) fn sock_addr(addr: SocketAddr) -> SockAddr {
    SockAddr::from(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_keys_tell_addresses_apart() {
        let key = |s: &str| dest_key(&sock_addr(s.parse().unwrap()));
        assert_eq!(key("127.0.0.1:5000"), key("127.0.0.1:5000"));
        assert_ne!(key("127.0.0.1:5000"), key("127.0.0.1:5001"));
        assert_ne!(key("127.0.0.1:5000"), key("127.0.0.2:5000"));
        assert_eq!(key("[::1]:5000"), key("[::1]:5000"));
        assert_ne!(key("[::1]:5000"), key("[::1]:5001"));
        assert_ne!(key("[::1]:5000"), key("127.0.0.1:5000"));
    }

    #[test]
    fn sendmmsg_gathers_header_and_body_into_one_datagram_each() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = sock_addr(rx.local_addr().unwrap());
        let headers: Vec<[u8; 2]> = (0..5u8).map(|i| [0xAA, i]).collect();
        let body = b"payload-from-the-mapping";
        let mut arena = SendArena::new();
        let mut w = arena.window(false);
        for (i, h) in headers.iter().enumerate() {
            w.begin_send(&dest, i);
            w.push_segment(h, &[&body[i..]]);
            w.end_send(None);
        }
        assert_eq!(w.send_mmsg(&tx), 1);
        assert!(w
            .slots()
            .iter()
            .all(|s| s.result > 0 && s.segment_size == 0));
        let mut buf = [0u8; 64];
        for i in 0..5 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..2], &[0xAA, i as u8]);
            assert_eq!(&buf[2..n], &body[i..]);
        }
    }

    #[test]
    fn one_gso_send_arrives_as_separate_datagrams_with_a_short_last() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = sock_addr(rx.local_addr().unwrap());
        let body = [7u8; 100];
        let headers: Vec<[u8; 4]> = (0..4u8).map(|i| [0xBB, i, 0, 0]).collect();
        let mut arena = SendArena::new();
        let mut w = arena.window(true);
        w.begin_send(&dest, 0);
        for (i, h) in headers.iter().enumerate() {
            let len = if i == 3 { 50 } else { 100 };
            w.push_segment(h, &[&body[..len]]);
        }
        w.end_send(Some(104));
        assert_eq!(w.send_each(&tx), 1);
        assert_eq!(w.slots()[0].result, 3 * 104 + 54);
        let mut buf = [0u8; 256];
        for i in 0..4u8 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(n, if i == 3 { 54 } else { 104 });
            assert_eq!(&buf[..2], &[0xBB, i]);
        }
    }
}
