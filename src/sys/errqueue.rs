//! The socket error queue (`IP_RECVERR`, ip(7)): how a shard learns that a viewer's UDP port is
//! closed. With `IP_RECVERR` set, an ICMP "port unreachable" for a datagram we sent is queued
//! on our socket with the original destination, instead of being dropped (unconnected UDP
//! sockets otherwise never hear of it).

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Asks the kernel to queue ICMP errors for datagrams sent from `socket` (IPv4 and IPv6).
pub(crate) fn enable_recverr(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    let v6 = socket.local_addr()?.is_ipv6();
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    // SAFETY: setsockopt(2) reads `optlen` bytes from `optval`, here a live c_int on the stack.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
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

/// What one error-queue entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueuedError {
    /// The destination's port or host is unreachable (ICMP type 3 / ICMPv6 type 1, or
    /// `ECONNREFUSED`); carries the original destination of the refused datagram.
    Unreachable(SocketAddr),
    /// Some other error (e.g. a local one), not tied to a viewer.
    Other,
}

/// Takes one entry off `socket`'s error queue without blocking; `None` when it is empty.
pub(crate) fn take_error(socket: &UdpSocket) -> Option<QueuedError> {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut control = [0u64; 64]; // 512 bytes, 8-aligned: room for a sock_extended_err cmsg
    let mut data = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to the locals above, alive for the call.
    // recvmsg(2) with MSG_ERRQUEUE: "the original destination address of the datagram that
    // caused the error is supplied via msg_name" (ip(7), IP_RECVERR).
    let ret = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if ret < 0 {
        return None;
    }
    let mut errno = 0;
    let mut origin = 0u8;
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel filled, bounded by
    // msg_controllen; each header is read only if it lies inside that buffer.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let is_recverr = (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR)
                || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
            if is_recverr
                && c.cmsg_len as usize
                    >= libc::CMSG_LEN(mem::size_of::<libc::sock_extended_err>() as u32) as usize
            {
                let ee = libc::CMSG_DATA(cmsg)
                    .cast::<libc::sock_extended_err>()
                    .read_unaligned();
                errno = ee.ee_errno as i32;
                origin = ee.ee_origin;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let from_icmp = origin == libc::SO_EE_ORIGIN_ICMP || origin == libc::SO_EE_ORIGIN_ICMP6;
    if from_icmp
        && matches!(
            errno,
            libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH
        )
    {
        // SAFETY: the kernel wrote a sockaddr of `msg_namelen` bytes into `name`.
        let addr = unsafe { socket2::SockAddr::new(name, msg.msg_namelen) };
        if let Some(a) = addr.as_socket() {
            return Some(QueuedError::Unreachable(a));
        }
    }
    Some(QueuedError::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_closed_port_shows_up_as_unreachable_with_its_address() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_recverr(&tx).unwrap();
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = gone.local_addr().unwrap();
        drop(gone);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            let _ = tx.send_to(b"x", dest);
            std::thread::sleep(Duration::from_millis(20));
            while let Some(e) = take_error(&tx) {
                if let QueuedError::Unreachable(a) = e {
                    seen = Some(a);
                }
            }
        }
        assert_eq!(seen, Some(dest));
        assert_eq!(take_error(&tx), None, "queue drained");
    }
}
