//! Which consecutive datagrams form one UDP GSO train (`UDP_SEGMENT`, udp(7)).
//!
//! A train is a run of ≥ 2 consecutive datagrams to the same destination whose sizes are all
//! equal to the first's, except that the last may be shorter — the kernel cuts the gathered
//! payload into segments of the first's size, so only the last segment can be short. A train
//! stops at [`MAX_GSO_SEGMENTS`] datagrams and [`MAX_GSO_PAYLOAD`] bytes. The packetizer cuts a
//! NAL's FU-A fragments to equal sizes and the worker queues a frame's packets consecutively
//! per viewer, so a video frame becomes one train per viewer.
//!
//! Not here: the syscalls (`sys::mmsg`, `sys::uring`).

use socket2::SockAddr;

use crate::sys::mmsg::MAX_SEGMENTS;

/// Most datagrams per GSO send (the kernel's `UDP_MAX_SEGMENTS` was 64 before Linux 5.5).
pub const MAX_GSO_SEGMENTS: usize = MAX_SEGMENTS;
/// Most payload bytes per GSO send: one IPv4 datagram's limit (65535 − 20 − 8), which keeps
/// the whole train under 64 KiB.
pub const MAX_GSO_PAYLOAD: usize = 65_507;

/// The train being formed while a batch is scanned.
#[derive(Debug, Default)]
pub(super) struct Train<'a> {
    dest: Option<&'a SockAddr>,
    segment_size: usize,
    segments: usize,
    bytes: usize,
    closed: bool,
}

impl<'a> Train<'a> {
    /// Starts a train with its first datagram.
    pub(super) fn start(&mut self, dest: &'a SockAddr, size: usize) {
        *self = Self {
            dest: Some(dest),
            segment_size: size,
            segments: 1,
            bytes: size,
            closed: false,
        };
    }

    /// Whether a datagram of `size` bytes to `dest` may join.
    pub(super) fn accepts(&self, dest: &SockAddr, size: usize) -> bool {
        let Some(d) = self.dest else {
            return false;
        };
        !self.closed
            && size != 0
            && size <= self.segment_size
            && self.segments < MAX_GSO_SEGMENTS
            && self.bytes + size <= MAX_GSO_PAYLOAD
            && (std::ptr::eq(d, dest) || d == dest)
    }

    /// Adds a datagram that [`Train::accepts`] admitted; a shorter one ends the train.
    pub(super) fn push(&mut self, size: usize) {
        self.segments += 1;
        self.bytes += size;
        self.closed = size < self.segment_size;
    }

    /// The segment size to announce, when the train is a valid GSO send.
    pub(super) fn segment_size(&self) -> Option<u16> {
        u16::try_from(self.segment_size).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SockAddr {
        SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Feeds sizes/destinations through the rule and returns the train lengths.
    fn trains(items: &[(u16, usize)]) -> Vec<usize> {
        let addrs: Vec<SockAddr> = items.iter().map(|&(p, _)| addr(p)).collect();
        let mut t = Train::default();
        let mut out = Vec::new();
        for (i, &(_, size)) in items.iter().enumerate() {
            if t.accepts(&addrs[i], size) {
                t.push(size);
                *out.last_mut().unwrap() += 1;
            } else {
                t.start(&addrs[i], size);
                out.push(1);
            }
        }
        out
    }

    #[test]
    fn equal_sizes_to_one_peer_form_one_train_and_a_shorter_one_ends_it() {
        let mut v = vec![(1, 1200); 5];
        v.push((1, 700));
        v.push((1, 1200));
        assert_eq!(trains(&v), vec![6, 1]);
    }

    #[test]
    fn destination_change_or_larger_packet_starts_a_new_train() {
        let v = [(1, 100), (2, 100), (2, 100), (2, 200), (1, 200)];
        assert_eq!(trains(&v), vec![1, 2, 1, 1]);
    }

    #[test]
    fn trains_stop_at_64_segments_and_at_65507_bytes() {
        assert_eq!(trains(&vec![(1, 100); 70]), vec![64, 6]);
        // 65507 / 1200 = 54 segments fit.
        assert_eq!(trains(&vec![(1, 1200); 70]), vec![54, 16]);
    }
}
