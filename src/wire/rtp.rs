//! RTP fixed header (RFC 3550 §5.1): an in-place, allocation-free writer for the per-packet
//! send path and a bounds-checked parser (CSRC list and header extension per §5.3.1, padding
//! per §5.1) for tests and clients.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

/// Length of the fixed RTP header written by [`write_rtp_header`].
pub const RTP_HEADER_LEN: usize = 12;

/// RTP version number (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;

/// A synchronization source identifier (RFC 3550 §3, §8): names one RTP stream, in RTP
/// headers, RTCP reports and the RTSP `Transport` header's `ssrc=` parameter (RFC 2326
/// §12.39, eight hexadecimal digits: format with `{:08X}`). Chosen at random (§8.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Ssrc(pub u32);

/// An RTP sequence number (RFC 3550 §5.1): 16 bits that wrap, starting at a random value;
/// one more per packet sent. Displayed in decimal (RTP-Info `seq=`, RFC 2326 §12.33).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct SeqNum(pub u16);

/// An RTP timestamp (RFC 3550 §5.1): 32 bits of the payload's clock that wrap, starting at
/// a random value. Displayed in decimal (RTP-Info `rtptime=`, RFC 2326 §12.33).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct RtpTimestamp(pub u32);

impl Ssrc {
    /// The identifier in network byte order.
    #[inline]
    pub const fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl SeqNum {
    /// The sequence number `n` packets later, modulo 2^16 (RFC 3550 §5.1).
    #[inline]
    #[must_use]
    pub const fn wrapping_add(self, n: u16) -> Self {
        Self(self.0.wrapping_add(n))
    }

    /// How many packets `later` comes after `self`, modulo 2^16: the forward distance on
    /// the wrapping sequence space (`self.wrapping_add(self.distance(later)) == later`).
    #[inline]
    pub const fn distance(self, later: Self) -> u16 {
        later.0.wrapping_sub(self.0)
    }

    /// The number in network byte order.
    #[inline]
    pub const fn to_be_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

impl RtpTimestamp {
    /// The timestamp `ticks` clock ticks later, modulo 2^32 (RFC 3550 §5.1).
    #[inline]
    #[must_use]
    pub const fn wrapping_add(self, ticks: u32) -> Self {
        Self(self.0.wrapping_add(ticks))
    }

    /// How many clock ticks `later` comes after `self`, modulo 2^32.
    #[inline]
    pub const fn distance(self, later: Self) -> u32 {
        later.0.wrapping_sub(self.0)
    }

    /// The timestamp in network byte order.
    #[inline]
    pub const fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl std::fmt::LowerHex for Ssrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::LowerHex::fmt(&self.0, f)
    }
}

impl std::fmt::UpperHex for Ssrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::UpperHex::fmt(&self.0, f)
    }
}

impl std::fmt::Display for SeqNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Display for RtpTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// Random SSRCs (RFC 3550 §8.1), from whatever RNG the caller passes.
impl rand::distributions::Distribution<Ssrc> for rand::distributions::Standard {
    fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Ssrc {
        Ssrc(rng.gen())
    }
}

/// Random initial sequence numbers (RFC 3550 §5.1).
impl rand::distributions::Distribution<SeqNum> for rand::distributions::Standard {
    fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> SeqNum {
        SeqNum(rng.gen())
    }
}

/// Random initial timestamps (RFC 3550 §5.1).
impl rand::distributions::Distribution<RtpTimestamp> for rand::distributions::Standard {
    fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> RtpTimestamp {
        RtpTimestamp(rng.gen())
    }
}

/// Writes a version-2 RTP header without padding/extension/CSRCs in place.
#[inline]
pub fn write_rtp_header(
    buf: &mut [u8; 12],
    payload_type: u8,
    marker: bool,
    seq: SeqNum,
    timestamp: RtpTimestamp,
    ssrc: Ssrc,
) {
    // V=2, P=0, X=0, CC=0.
    buf[0] = RTP_VERSION << 6;
    buf[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// A parsed RTP header (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Padding bit: the payload ends with padding octets.
    pub padding: bool,
    /// Extension bit: a header extension follows the CSRCs (§5.3.1).
    pub extension: bool,
    /// Number of CSRC identifiers.
    pub csrc_count: u8,
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// Timestamp in the payload's clock.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Offset of the payload within the packet (after CSRCs and extension).
    pub payload_offset: usize,
    /// Length of the payload, excluding padding octets.
    pub payload_len: usize,
}

/// Parses an RTP packet's header; `None` if not version 2 or any length is inconsistent.
pub fn parse_rtp_header(pkt: &[u8]) -> Option<RtpHeader> {
    let fixed = pkt.get(..RTP_HEADER_LEN)?;
    if fixed[0] >> 6 != RTP_VERSION {
        return None;
    }
    let padding = fixed[0] & 0x20 != 0;
    let extension = fixed[0] & 0x10 != 0;
    let csrc_count = fixed[0] & 0x0f;
    let mut off = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
    if extension {
        // §5.3.1: 16-bit profile-defined field, 16-bit length in 32-bit words.
        let ext = pkt.get(off..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if off > pkt.len() {
        return None;
    }
    let mut end = pkt.len();
    if padding {
        // §5.1: the last octet counts the padding octets, itself included.
        let pad = usize::from(*pkt.last()?);
        if pad == 0 || pad > end - off {
            return None;
        }
        end -= pad;
    }
    Some(RtpHeader {
        padding,
        extension,
        csrc_count,
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7f,
        sequence_number: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        payload_offset: off,
        payload_len: end - off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header_bytes() {
        let mut buf = [0u8; 12];
        write_rtp_header(
            &mut buf,
            96,
            true,
            SeqNum(0x1234),
            RtpTimestamp(0xdead_beef),
            Ssrc(0x0102_0304),
        );
        assert_eq!(
            buf,
            [0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04]
        );
        write_rtp_header(
            &mut buf,
            97,
            false,
            SeqNum(0xffff),
            RtpTimestamp(0),
            Ssrc(u32::MAX),
        );
        assert_eq!(
            buf,
            [0x80, 97, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        // The payload type is masked to 7 bits, never touching the marker.
        write_rtp_header(&mut buf, 0xff, false, SeqNum(0), RtpTimestamp(0), Ssrc(0));
        assert_eq!(buf[1], 0x7f);
    }

    /// RFC 3550 §5.1: sequence numbers and timestamps wrap; `distance` is the forward
    /// distance on the circle, and the formats are the ones RTSP writes (RFC 2326 §12.33
    /// decimal `seq=`/`rtptime=`, §12.39 eight hex digits `ssrc=`).
    #[test]
    fn numbers_wrap_and_format_as_rtsp_writes_them() {
        assert_eq!(SeqNum(0xffff).wrapping_add(2), SeqNum(1));
        assert_eq!(SeqNum(0xfffe).distance(SeqNum(3)), 5);
        assert_eq!(SeqNum(3).distance(SeqNum(0xfffe)), 0xfffb);
        assert_eq!(RtpTimestamp(u32::MAX).wrapping_add(1), RtpTimestamp(0));
        assert_eq!(RtpTimestamp(u32::MAX - 9).distance(RtpTimestamp(10)), 20);
        assert_eq!(format!("{}", SeqNum(65_535)), "65535");
        assert_eq!(format!("{}", RtpTimestamp(4_000_000_000)), "4000000000");
        assert_eq!(format!("{:08X}", Ssrc(0x1a2b)), "00001A2B");
        assert_eq!(format!("{:08x}", Ssrc(0xDEAD_BEEF)), "deadbeef");
        assert_eq!(std::mem::size_of::<SeqNum>(), 2);
        assert_eq!(std::mem::size_of::<Option<Ssrc>>(), 8);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn distance_undoes_wrapping_add(a in proptest::prelude::any::<u16>(), n in proptest::prelude::any::<u16>(),
                                        t in proptest::prelude::any::<u32>(), d in proptest::prelude::any::<u32>()) {
            proptest::prop_assert_eq!(SeqNum(a).distance(SeqNum(a).wrapping_add(n)), n);
            proptest::prop_assert_eq!(SeqNum(a).wrapping_add(SeqNum(a).distance(SeqNum(n))), SeqNum(n));
            proptest::prop_assert_eq!(RtpTimestamp(t).distance(RtpTimestamp(t).wrapping_add(d)), d);
        }

        /// Any bytes parse without panicking, and a parsed payload lies within the packet.
        #[test]
        fn any_bytes_parse_without_panicking(pkt in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Some(h) = parse_rtp_header(&pkt) {
                proptest::prop_assert!(h.payload_offset + h.payload_len <= pkt.len());
            }
        }
    }

    #[test]
    fn parse_roundtrip() {
        let mut pkt = vec![0u8; 12];
        let hdr: &mut [u8; 12] = (&mut pkt[..12]).try_into().unwrap();
        write_rtp_header(hdr, 96, true, SeqNum(7), RtpTimestamp(90_000), Ssrc(42));
        pkt.extend_from_slice(b"payload");
        let h = parse_rtp_header(&pkt).unwrap();
        assert!(h.marker && !h.padding && !h.extension);
        assert_eq!(
            (h.payload_type, h.sequence_number, h.timestamp, h.ssrc),
            (96, 7, 90_000, 42)
        );
        assert_eq!(
            &pkt[h.payload_offset..h.payload_offset + h.payload_len],
            b"payload"
        );
    }

    #[test]
    fn parse_csrc_extension_padding() {
        // CC=1, X=1, P=1; one CSRC, a one-word extension, 2 payload bytes, 3 padding bytes.
        let mut pkt = vec![0xb1, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        pkt.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension
        pkt.extend_from_slice(&[0xaa, 0xbb, 0, 0, 3]);
        let h = parse_rtp_header(&pkt).unwrap();
        assert_eq!(h.csrc_count, 1);
        assert_eq!(h.payload_offset, 24);
        assert_eq!(h.payload_len, 2);
    }

    #[test]
    fn parse_rejects_bad_packets() {
        assert_eq!(parse_rtp_header(&[0x80; 11]), None);
        assert_eq!(parse_rtp_header(&[0x40; 12]), None); // version 1
        assert_eq!(
            parse_rtp_header(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        ); // CSRCs missing
        assert_eq!(
            parse_rtp_header(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(
            parse_rtp_header(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        ); // pad 0
        assert_eq!(
            parse_rtp_header(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
            None
        ); // pad > len
        for len in 0..64 {
            let _ = parse_rtp_header(&vec![0xff; len]);
        }
    }
}
