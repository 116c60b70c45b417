//! The one control message shardcast sends: `UDP_SEGMENT` (UDP generic segmentation offload,
//! Linux ≥ 4.18), which makes one `sendmsg` carry a train of equal-size datagrams that the
//! kernel (or the NIC) cuts apart, plus the per-socket probe for it.
//!
//! udp(7): "UDP_SEGMENT (since Linux 4.18) Enables UDP segmentation offload. [...] the
//! payload is split into segments of the given size; the last segment may be shorter."
//! Not here: which packets form a train (`shard::send::gso`).

use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// `SOL_UDP` (`IPPROTO_UDP`), the level of UDP socket options and control messages.
pub(crate) const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT` from `<linux/udp.h>`: the segment size, as a `u16`.
pub(crate) const UDP_SEGMENT: libc::c_int = 103;

/// One `cmsghdr` carrying a `u16` segment size, laid out as `CMSG_SPACE(2)` bytes.
///
/// On Linux the data of a control message starts at `CMSG_ALIGN(sizeof(struct cmsghdr))`;
/// `cmsghdr` is pointer-aligned and a multiple of the pointer size, so `segment_size`
/// right after `hdr` sits exactly there (checked by a test against `CMSG_LEN(0)`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GsoCmsg {
    hdr: libc::cmsghdr,
    segment_size: u16,
    _pad: [u8; 6],
}

const _: () = assert!(mem::size_of::<GsoCmsg>() == mem::size_of::<libc::cmsghdr>() + 8);

impl GsoCmsg {
    /// A control message announcing `segment_size`-byte segments.
    pub(crate) fn new(segment_size: u16) -> Self {
        // SAFETY: cmsghdr is a plain C struct for which all-zero is valid (and fills any
        // private padding fields some libcs declare).
        let mut hdr: libc::cmsghdr = unsafe { mem::zeroed() };
        hdr.cmsg_level = SOL_UDP;
        hdr.cmsg_type = UDP_SEGMENT;
        // CMSG_LEN(2): header plus the two data bytes, without trailing padding.
        hdr.cmsg_len = (mem::size_of::<libc::cmsghdr>() + 2) as _;
        Self {
            hdr,
            segment_size,
            _pad: [0; 6],
        }
    }

    /// Bytes to pass as `msg_controllen` (`CMSG_SPACE(2)`).
    pub(crate) const SPACE: usize = mem::size_of::<GsoCmsg>();
}

/// Whether `socket` accepts `UDP_SEGMENT`: reads the option back, which kernels without UDP
/// GSO refuse with `ENOPROTOOPT`. Does not change the socket.
pub(crate) fn probe_udp_gso(socket: &UdpSocket) -> Result<(), i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given; getsockopt(2):
    // "optlen is a value-result argument, initially containing the size of the buffer
    // pointed to by optval".
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            SOL_UDP,
            UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// Whether a failed GSO send means "this path cannot segment" rather than a per-packet
/// problem: `EIO` (no checksum offload on the egress device, quinn-udp's observation),
/// `EINVAL` (segment too large for the path MTU, too many segments) or `ENOPROTOOPT`.
pub(crate) fn is_gso_refusal(errno: i32) -> bool {
    matches!(errno, libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)
}

/// Turns off UDP checksums on `socket` (`SO_NO_CHECK`), which makes the kernel refuse GSO
/// sends with `EINVAL` ("cannot segment without checksum offload") while plain sends work:
/// the way tests provoke a runtime GSO refusal on loopback.
#[cfg(test)]
pub(crate) fn refuse_gso_for_tests(socket: &UdpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the size given; socket(7) SO_NO_CHECK takes an int.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0, "SO_NO_CHECK: {}", std::io::Error::last_os_error());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_cmsg_matches_the_libc_layout_macros() {
        // SAFETY: CMSG_LEN/CMSG_SPACE are pure arithmetic.
        let (len0, len2, space2) =
            unsafe { (libc::CMSG_LEN(0), libc::CMSG_LEN(2), libc::CMSG_SPACE(2)) };
        let c = GsoCmsg::new(1200);
        let data_offset = mem::offset_of!(GsoCmsg, segment_size);
        assert_eq!(data_offset, len0 as usize, "data starts at CMSG_DATA");
        assert_eq!(c.hdr.cmsg_len, len2 as usize);
        assert_eq!(GsoCmsg::SPACE, space2 as usize);
    }

    #[test]
    fn loopback_socket_supports_udp_segment() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(probe_udp_gso(&s), Ok(()));
        assert!(is_gso_refusal(libc::EIO) && !is_gso_refusal(libc::EAGAIN));
    }
}
