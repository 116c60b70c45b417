//! TCP sends for the shards' stream writer (`shard::tcp`): one gathered `sendmsg(2)` that
//! never blocks and never raises `SIGPIPE`, and the `TCP_NOTSENT_LOWAT` option.

use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::AsRawFd;

/// Most iovecs one `sendmsg(2)` takes (`IOV_MAX` on Linux; more fail with `EMSGSIZE`).
pub(crate) const MAX_IOVECS: usize = 1024;

/// Writes `slices`, in order, as far as the socket's buffer takes them without waiting:
/// the number of bytes written (0 when the buffer is full), or the socket's error.
pub(crate) fn send_gathered(socket: &impl AsRawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    send_gathered_more(socket, slices, false)
}

/// [`send_gathered`] with `MSG_MORE` when `more` is set: more bytes of the same message
/// follow at once (tcp(7)), so a small head leaves in one segment with them.
pub(crate) fn send_gathered_more(
    socket: &impl AsRawFd,
    slices: &[IoSlice<'_>],
    more: bool,
) -> io::Result<usize> {
    let flags = if more { libc::MSG_MORE } else { 0 };
    loop {
        match sendmsg_nowait(socket, slices, flags) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

/// One `sendmsg(2)` of at most [`MAX_IOVECS`] of `slices` with `MSG_DONTWAIT |
/// MSG_NOSIGNAL | extra_flags` (e.g. `MSG_ZEROCOPY`): bytes written, or the error as is.
pub(crate) fn sendmsg_nowait(
    socket: &impl AsRawFd,
    slices: &[IoSlice<'_>],
    extra_flags: libc::c_int,
) -> io::Result<usize> {
    let slices = &slices[..slices.len().min(MAX_IOVECS)];
    // SAFETY: all-zero is a valid msghdr (no name, no control).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it); the kernel only
    // reads through this pointer, and only during the call, while `slices` is borrowed.
    msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = slices.len() as _;
    // SAFETY: `msg` points at `slices.len()` live iovecs whose buffers are borrowed for the
    // whole call; sendmsg(2) copies (or, with MSG_ZEROCOPY, pins) them before returning.
    let ret = unsafe {
        libc::sendmsg(
            socket.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | extra_flags,
        )
    };
    if ret >= 0 {
        Ok(ret as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `sendfile(2)` of `len` bytes of `file` from `offset` to `socket`, without waiting (the
/// socket is non-blocking): bytes written, 0 when the socket's buffer is full, or the error.
/// The kernel takes the bytes from the page cache by reference: no copy through user space.
pub(crate) fn send_file(
    socket: &impl AsRawFd,
    file: &impl AsRawFd,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    let mut off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: sendfile(2) reads the two descriptors (borrowed, open for the call) and
        // reads and updates `off`, a live local; it touches no other memory of ours.
        let ret = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut off, len) };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// Sets `TCP_NOTSENT_LOWAT` (tcp(7)): the socket reports itself full, and `sendmsg` stops
/// taking bytes, once this many bytes are queued but not yet sent.
pub(crate) fn set_notsent_lowat(socket: &impl AsRawFd, bytes: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt(2) reads `optlen` bytes from `optval`, here a live c_int on the stack.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes queued on the socket and not yet sent (`SIOCOUTQNSD`, tcp(7)).
#[cfg(test)]
pub(crate) fn unsent_bytes(socket: &impl AsRawFd) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one c_int through the pointer, a live local.
    let ret = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCOUTQNSD, &mut value) };
    if ret == 0 {
        Ok(usize::try_from(value).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn gathered_slices_arrive_in_order_and_a_full_socket_takes_zero() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let n = send_gathered(&tx, &[IoSlice::new(b"ab"), IoSlice::new(b"cde")]).unwrap();
        assert_eq!(n, 5);
        let mut got = [0u8; 5];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcde");
        set_notsent_lowat(&tx, 16 * 1024).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut zero_seen = false;
        for _ in 0..10_000 {
            if send_gathered(&tx, &[IoSlice::new(&chunk)]).unwrap() == 0 {
                zero_seen = true;
                break;
            }
        }
        assert!(zero_seen, "a socket whose reader stopped must fill up");
        assert!(unsent_bytes(&tx).unwrap() > 0);
    }
}
