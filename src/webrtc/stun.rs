//! STUN (RFC 8489) as an ICE-lite server needs it: a zero-copy view of one message, the
//! short-term-credential checks (MESSAGE-INTEGRITY §14.5, FINGERPRINT §14.7), and a writer
//! that puts Binding responses (success with XOR-MAPPED-ADDRESS §14.2; errors with ERROR-CODE
//! §14.8 and UNKNOWN-ATTRIBUTES §14.9) into a buffer the caller owns.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Magic Cookie                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Transaction ID (96 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Type                  |            Length             |  (attributes, each
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   padded to 32 bits)
//! |                         Value (variable)                ....
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Nothing here allocates: [`StunMessage`] borrows the datagram, the writer fills the caller's
//! `&mut [u8]`, and the HMAC key is prepared once per session ([`IntegrityKey`]). Not done:
//! long-term credentials (REALM/NONCE, §9.2), MESSAGE-INTEGRITY-SHA256 (ICE uses SHA-1, RFC
//! 8445 §7.2.2), requests we would send (a lite agent sends none), TCP framing. Those
//! attributes, when comprehension-required, show up in [`StunMessage::unknown_required`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use thiserror::Error;

mod write;

pub use write::{write_binding_error, write_binding_success, MessageWriter};

/// Bytes in the fixed STUN header (RFC 8489 §5).
pub const HEADER_LEN: usize = 20;
/// The magic cookie every RFC 5389/8489 message carries (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The Binding method (RFC 8489 §18.2).
pub const BINDING: u16 = 0x001;
/// XORed into the CRC-32 of FINGERPRINT (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// MESSAGE-INTEGRITY attribute header + HMAC-SHA1 (RFC 8489 §14.5).
const INTEGRITY_ATTR_LEN: usize = 4 + 20;
/// FINGERPRINT attribute header + CRC-32 (RFC 8489 §14.7).
const FINGERPRINT_ATTR_LEN: usize = 4 + 4;
/// USERNAME "MUST contain a UTF-8-encoded sequence of fewer than 509 bytes" (RFC 8489 §14.3);
/// 513 is the limit on receipt, to allow for the OpaqueString processing.
const MAX_USERNAME_LEN: usize = 513;
/// SOFTWARE and the ERROR-CODE reason are "fewer than 128 characters (which can be as long as
/// 509 bytes when encoding them and as long as 763 bytes when decoding them)" (§14.14, §14.8).
const MAX_TEXT_LEN: usize = 763;
/// How many unknown comprehension-required attribute types a view records for a 420 answer.
pub const MAX_UNKNOWN: usize = 4;

/// Attribute types (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME (RFC 8489 §14.3).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (RFC 8489 §14.8).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445 §7.1.1).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445 §7.1.2).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE (RFC 8489 §14.14).
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT (RFC 8489 §14.7).
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445 §7.1.3).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445 §7.1.3).
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Why a datagram is not an acceptable STUN message, or a response did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StunError {
    /// Shorter than the 20-byte header.
    #[error("stun: {len} bytes is shorter than the header")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The two most significant bits are not zero (RFC 8489 §5).
    #[error("stun: first two bits not zero")]
    NotStun,
    /// The magic cookie is not 0x2112A442 (RFC 8489 §5).
    #[error("stun: bad magic cookie")]
    BadMagicCookie,
    /// The message length is not a multiple of 4 (RFC 8489 §5).
    #[error("stun: message length {length} not a multiple of 4")]
    LengthNotAligned {
        /// The header's length field.
        length: usize,
    },
    /// Header plus message length is not the datagram's length (one message per datagram).
    #[error("stun: message length {length} does not match a {datagram}-byte datagram")]
    LengthMismatch {
        /// The header's length field.
        length: usize,
        /// The datagram's length.
        datagram: usize,
    },
    /// An attribute's value and padding run past the end of the message (RFC 8489 §14).
    #[error("stun: attribute {attr:#06x} at byte {offset} overruns the message")]
    AttributeOverrun {
        /// Byte offset of the attribute's header.
        offset: usize,
        /// Its type.
        attr: u16,
    },
    /// A known attribute has the wrong length or a bad value.
    #[error("stun: malformed attribute {attr:#06x} at byte {offset}")]
    BadAttribute {
        /// Byte offset of the attribute's header.
        offset: usize,
        /// Its type.
        attr: u16,
    },
    /// Something follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[error("stun: attribute at byte {offset} after fingerprint")]
    AttributeAfterFingerprint {
        /// Byte offset of the attribute's header.
        offset: usize,
    },
    /// No MESSAGE-INTEGRITY to verify.
    #[error("stun: no message-integrity")]
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not match the key (RFC 8489 §9.1.3).
    #[error("stun: message-integrity mismatch")]
    IntegrityMismatch,
    /// No FINGERPRINT to verify.
    #[error("stun: no fingerprint")]
    NoFingerprint,
    /// FINGERPRINT does not match the message (RFC 8489 §7.3).
    #[error("stun: fingerprint mismatch")]
    FingerprintMismatch,
    /// The output buffer cannot hold the response.
    #[error("stun: response needs {needed} bytes, buffer is smaller")]
    BufferTooSmall {
        /// Bytes the message would need at least.
        needed: usize,
    },
    /// An attribute value given to the writer is longer than its limit.
    #[error("stun: value of attribute {attr:#06x} too long")]
    ValueTooLong {
        /// Its type.
        attr: u16,
    },
}

/// The class of a message, the two C bits of the type (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 0b00: a request.
    Request,
    /// 0b01: an indication.
    Indication,
    /// 0b10: a success response.
    Success,
    /// 0b11: an error response.
    Error,
}

impl Class {
    /// The class bits (C1 at bit 8, C0 at bit 4) as they sit in the message type.
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0x000,
            Class::Indication => 0x010,
            Class::Success => 0x100,
            Class::Error => 0x110,
        }
    }
}

/// Encodes method and class into the 14-bit message type (RFC 8489 §5, Figure 3:
/// M11..M7 C1 M6..M4 C0 M3..M0).
pub fn message_type(method: u16, class: Class) -> u16 {
    let m = method & 0x0fff;
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | class.bits()
}

/// Splits a message type into method and class (RFC 8489 §5).
fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2);
    let class = match t & 0x0110 {
        0x000 => Class::Request,
        0x010 => Class::Indication,
        0x100 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

/// The ICE role attribute of a check and its tie-breaker (RFC 8445 §7.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    /// ICE-CONTROLLING: the sender believes it is controlling.
    Controlling(u64),
    /// ICE-CONTROLLED: the sender believes it is controlled.
    Controlled(u64),
}

/// An ERROR-CODE a Binding error response carries (RFC 8489 §14.8, RFC 8445 §7.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: malformed, or without USERNAME/MESSAGE-INTEGRITY (RFC 8489 §9.1.3).
    BadRequest,
    /// 401: MESSAGE-INTEGRITY does not verify (RFC 8489 §9.1.3).
    Unauthenticated,
    /// 420: an unknown comprehension-required attribute (RFC 8489 §6.3.1).
    UnknownAttribute,
    /// 487: both agents claim the same role (RFC 8445 §7.3.1.1).
    RoleConflict,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::UnknownAttribute => 420,
            ErrorCode::RoleConflict => 487,
        }
    }

    /// The reason phrase RFC 8489 §14.8 (and RFC 8445 §16.1 for 487) suggests.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "Bad Request",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::UnknownAttribute => "Unknown Attribute",
            ErrorCode::RoleConflict => "Role Conflict",
        }
    }
}

/// An HMAC-SHA1 key prepared once (per session), cloned per message with no allocation.
///
/// Short-term credentials: the key is the password (RFC 8489 §9.1.1; OpaqueString leaves
/// ICE passwords, which are ice-chars, unchanged).
#[derive(Clone)]
pub struct IntegrityKey {
    mac: Hmac<Sha1>,
}

impl IntegrityKey {
    /// Prepares the key for a short-term password.
    pub fn new(password: &[u8]) -> IntegrityKey {
        #[allow(clippy::expect_used)]
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(password)
            .expect("HMAC takes keys of any length (RFC 2104 §2)");
        IntegrityKey { mac }
    }
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

/// A validated STUN message borrowing its datagram: the attributes an ICE-lite server reads.
///
/// Unknown comprehension-optional attributes (0x8000–0xFFFF) are skipped; unknown
/// comprehension-required ones (0x0000–0x7FFF) are recorded ([`Self::unknown_required`]) so the
/// caller can answer 420 (RFC 8489 §6.3.1). Of a repeated attribute the first counts; after
/// MESSAGE-INTEGRITY everything but FINGERPRINT is ignored (§14.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunMessage<'a> {
    raw: &'a [u8],
    method: u16,
    class: Class,
    transaction_id: [u8; 12],
    username: Option<&'a [u8]>,
    software: Option<&'a [u8]>,
    integrity_offset: Option<usize>,
    fingerprint_offset: Option<usize>,
    priority: Option<u32>,
    role: Option<IceRole>,
    use_candidate: bool,
    xor_mapped_address: Option<SocketAddr>,
    error_code: Option<u16>,
    unknown: [u16; MAX_UNKNOWN],
    unknown_len: u8,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The XOR pad of XOR-MAPPED-ADDRESS: magic cookie then transaction id (RFC 8489 §14.2).
fn xor_pad(transaction_id: &[u8; 12]) -> [u8; 16] {
    let mut pad = [0u8; 16];
    pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    pad[4..].copy_from_slice(transaction_id);
    pad
}

//= https://www.rfc-editor.org/rfc/rfc8489#section-14.2
//# X-Port is computed by XOR'ing the mapped port with the most significant 16 bits of the
//# magic cookie. If the IP address family is IPv4, X-Address is computed by XOR'ing the mapped
//# IP address with the magic cookie. If the IP address family is IPv6, X-Address is computed
//# by XOR'ing the mapped IP address with the concatenation of the magic cookie and the 96-bit
//# transaction ID.
fn parse_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let pad = xor_pad(transaction_id);
    let family = *value.get(1)?;
    let port = be16(value, 2)? ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (family, value.len()) {
        (0x01, 8) => {
            let mut a = [0u8; 4];
            for (i, b) in a.iter_mut().enumerate() {
                *b = value[4 + i] ^ pad[i];
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (0x02, 20) => {
            let mut a = [0u8; 16];
            for (i, b) in a.iter_mut().enumerate() {
                *b = value[4 + i] ^ pad[i];
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

impl<'a> StunMessage<'a> {
    /// Parses and validates one datagram as a STUN message (RFC 8489 §5, §14): first two bits,
    /// magic cookie, length a multiple of 4 and equal to the datagram's, every attribute and
    /// its padding inside the message, known attributes of the right length, FINGERPRINT last.
    /// Integrity and fingerprint values are checked separately ([`Self::verify_integrity`],
    /// [`Self::verify_fingerprint`]).
    pub fn parse(datagram: &'a [u8]) -> Result<StunMessage<'a>, StunError> {
        let d = datagram;
        let header = d
            .get(..HEADER_LEN)
            .ok_or(StunError::TooShort { len: d.len() })?;
        let t = u16::from_be_bytes([header[0], header[1]]);
        if t & 0xc000 != 0 {
            return Err(StunError::NotStun);
        }
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if be32(header, 4) != Some(MAGIC_COOKIE) {
            return Err(StunError::BadMagicCookie);
        }
        if length % 4 != 0 {
            return Err(StunError::LengthNotAligned { length });
        }
        if HEADER_LEN + length != d.len() {
            return Err(StunError::LengthMismatch {
                length,
                datagram: d.len(),
            });
        }
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&header[8..20]);
        let (method, class) = split_type(t);
        let mut m = StunMessage {
            raw: d,
            method,
            class,
            transaction_id,
            username: None,
            software: None,
            integrity_offset: None,
            fingerprint_offset: None,
            priority: None,
            role: None,
            use_candidate: false,
            xor_mapped_address: None,
            error_code: None,
            unknown: [0; MAX_UNKNOWN],
            unknown_len: 0,
        };
        let mut pos = HEADER_LEN;
        while pos < d.len() {
            let (Some(ty), Some(len)) = (be16(d, pos), be16(d, pos + 2)) else {
                return Err(StunError::AttributeOverrun {
                    offset: pos,
                    attr: be16(d, pos).unwrap_or(0),
                });
            };
            let len = usize::from(len);
            let start = pos + 4;
            // RFC 8489 §14: values are padded to a multiple of 4; the padding is in the
            // message (and under integrity and fingerprint) but its bytes may be anything.
            let next = start + len.next_multiple_of(4);
            if next > d.len() {
                return Err(StunError::AttributeOverrun {
                    offset: pos,
                    attr: ty,
                });
            }
            let value = &d[start..start + len];
            let bad = StunError::BadAttribute {
                offset: pos,
                attr: ty,
            };
            if m.fingerprint_offset.is_some() {
                return Err(StunError::AttributeAfterFingerprint { offset: pos });
            }
            //= https://www.rfc-editor.org/rfc/rfc8489#section-14.5
            //# With the exception of the MESSAGE-INTEGRITY-SHA256 and FINGERPRINT attributes,
            //# agents MUST ignore all other attributes that follow MESSAGE-INTEGRITY.
            if m.integrity_offset.is_some() && ty != attr::FINGERPRINT {
                pos = next;
                continue;
            }
            match ty {
                attr::USERNAME => {
                    if len > MAX_USERNAME_LEN {
                        return Err(bad);
                    }
                    m.username.get_or_insert(value);
                }
                attr::SOFTWARE => {
                    if len > MAX_TEXT_LEN {
                        return Err(bad);
                    }
                    m.software.get_or_insert(value);
                }
                attr::MESSAGE_INTEGRITY => {
                    if len != 20 {
                        return Err(bad);
                    }
                    m.integrity_offset = Some(pos);
                }
                attr::FINGERPRINT => {
                    if len != 4 {
                        return Err(bad);
                    }
                    m.fingerprint_offset = Some(pos);
                }
                attr::PRIORITY => {
                    let p = be32(value, 0).filter(|_| len == 4).ok_or(bad)?;
                    m.priority.get_or_insert(p);
                }
                attr::ICE_CONTROLLING | attr::ICE_CONTROLLED => {
                    let tie = be64(value, 0).filter(|_| len == 8).ok_or(bad)?;
                    m.role.get_or_insert(if ty == attr::ICE_CONTROLLING {
                        IceRole::Controlling(tie)
                    } else {
                        IceRole::Controlled(tie)
                    });
                }
                attr::USE_CANDIDATE => {
                    if len != 0 {
                        return Err(bad);
                    }
                    m.use_candidate = true;
                }
                attr::XOR_MAPPED_ADDRESS => {
                    let a = parse_xor_address(value, &m.transaction_id).ok_or(bad)?;
                    m.xor_mapped_address.get_or_insert(a);
                }
                attr::ERROR_CODE => {
                    // §14.8: 21 reserved bits, class 3..=6 (3 bits), number 0..=99 (8 bits).
                    let word = be32(value, 0).ok_or(bad)?;
                    let (class, number) = ((word >> 8) & 0x7, word & 0xff);
                    if !(3..=6).contains(&class) || number > 99 || len - 4 > MAX_TEXT_LEN {
                        return Err(bad);
                    }
                    m.error_code.get_or_insert((class * 100 + number) as u16);
                }
                // Understood but not for us: a mapped address and the unknown-attributes
                // list only appear in responses, which a lite agent never asked for.
                attr::MAPPED_ADDRESS | attr::UNKNOWN_ATTRIBUTES => {}
                // Only the first MAX_UNKNOWN are kept for the 420's list: a check from a
                // browser has none, and a list is no reason to grow memory.
                0x0000..=0x7fff if usize::from(m.unknown_len) < MAX_UNKNOWN => {
                    m.unknown[usize::from(m.unknown_len)] = ty;
                    m.unknown_len += 1;
                }
                _ => {}
            }
            pos = next;
        }
        Ok(m)
    }

    /// The whole message (the datagram it was parsed from).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The method (0x001 is Binding).
    pub fn method(&self) -> u16 {
        self.method
    }

    /// The class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// Whether this is a Binding request.
    pub fn is_binding_request(&self) -> bool {
        self.method == BINDING && self.class == Class::Request
    }

    /// The 96-bit transaction id.
    pub fn transaction_id(&self) -> &[u8; 12] {
        &self.transaction_id
    }

    /// USERNAME's value, without padding (RFC 8489 §14.3).
    pub fn username(&self) -> Option<&'a [u8]> {
        self.username
    }

    /// SOFTWARE's value, without padding (RFC 8489 §14.14).
    pub fn software(&self) -> Option<&'a [u8]> {
        self.software
    }

    /// Byte offset of the MESSAGE-INTEGRITY attribute's header, if present.
    pub fn integrity_offset(&self) -> Option<usize> {
        self.integrity_offset
    }

    /// Byte offset of the FINGERPRINT attribute's header, if present.
    pub fn fingerprint_offset(&self) -> Option<usize> {
        self.fingerprint_offset
    }

    /// PRIORITY (RFC 8445 §7.1.1).
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }

    /// ICE-CONTROLLING or ICE-CONTROLLED, whichever came first (RFC 8445 §7.1.3).
    pub fn role(&self) -> Option<IceRole> {
        self.role
    }

    /// Whether USE-CANDIDATE is present (RFC 8445 §7.1.2).
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// XOR-MAPPED-ADDRESS, decoded (RFC 8489 §14.2).
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address
    }

    /// ERROR-CODE as a number such as 401 (RFC 8489 §14.8).
    pub fn error_code(&self) -> Option<u16> {
        self.error_code
    }

    /// Unknown comprehension-required attribute types (the first [`MAX_UNKNOWN`]); a request
    /// with any gets 420 (RFC 8489 §6.3.1).
    pub fn unknown_required(&self) -> &[u16] {
        &self.unknown[..usize::from(self.unknown_len)]
    }

    //= https://www.rfc-editor.org/rfc/rfc8489#section-14.5
    //# The text used as input to HMAC is the STUN message, up to and including the attribute
    //# preceding the MESSAGE-INTEGRITY attribute. The Length field of the STUN message
    //# header is adjusted to point to the end of the MESSAGE-INTEGRITY attribute.
    /// Verifies MESSAGE-INTEGRITY (HMAC-SHA1) with `key`, in constant time.
    pub fn verify_integrity(&self, key: &IntegrityKey) -> Result<(), StunError> {
        let off = self.integrity_offset.ok_or(StunError::NoIntegrity)?;
        let (Some(head), Some(body), Some(expected)) = (
            self.raw.get(..HEADER_LEN),
            self.raw.get(HEADER_LEN..off),
            self.raw.get(off + 4..off + INTEGRITY_ATTR_LEN),
        ) else {
            return Err(StunError::NoIntegrity);
        };
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(head);
        let adjusted = u16::try_from(off + INTEGRITY_ATTR_LEN - HEADER_LEN)
            .map_err(|_| StunError::IntegrityMismatch)?;
        header[2..4].copy_from_slice(&adjusted.to_be_bytes());
        let mut mac = key.mac.clone();
        mac.update(&header);
        mac.update(body);
        mac.verify_slice(expected)
            .map_err(|_| StunError::IntegrityMismatch)
    }

    //= https://www.rfc-editor.org/rfc/rfc8489#section-14.7
    //# The value of the attribute is computed as the CRC-32 of the STUN message up to (but
    //# excluding) the FINGERPRINT attribute itself, XOR'ed with the 32-bit value 0x5354554e.
    /// Verifies FINGERPRINT. It is the last attribute (checked by [`Self::parse`]), so the
    /// header's length already covers it.
    pub fn verify_fingerprint(&self) -> Result<(), StunError> {
        let off = self.fingerprint_offset.ok_or(StunError::NoFingerprint)?;
        let (Some(covered), Some(value)) = (self.raw.get(..off), be32(self.raw, off + 4)) else {
            return Err(StunError::NoFingerprint);
        };
        if crc32fast::hash(covered) ^ FINGERPRINT_XOR == value {
            Ok(())
        } else {
            Err(StunError::FingerprintMismatch)
        }
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/stun.rs`): parse arbitrary bytes, verify them with the
/// RFC 5769 password, and answer them; every response we write must parse, verify and carry
/// back the address it was given.
#[cfg(any(test, fuzzing))]
pub fn fuzz_stun(data: &[u8]) {
    let Ok(msg) = StunMessage::parse(data) else {
        return;
    };
    let key = IntegrityKey::new(b"VOkJxbRl1RmTxUk/WvJxBt");
    let _ = msg.verify_integrity(&key);
    let _ = msg.verify_fingerprint();
    let _ = msg.unknown_required();
    // An address from the message's own bytes, alternating families.
    let tid = *msg.transaction_id();
    let port = u16::from_be_bytes([tid[0], tid[1]]);
    let mapped = if tid[2] & 1 == 0 {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(tid[3], tid[4], tid[5], tid[6])),
            port,
        )
    } else {
        let mut v6 = [0u8; 16];
        v6[..12].copy_from_slice(&tid);
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6)), port)
    };
    let mut out = [0u8; 256];
    #[allow(clippy::expect_used)]
    let n = write_binding_success(&mut out, &tid, mapped, &key).expect("fits in 256 bytes");
    #[allow(clippy::expect_used)]
    let response = StunMessage::parse(&out[..n]).expect("our response parses");
    assert_eq!(response.class(), Class::Success);
    assert_eq!(response.transaction_id(), &tid);
    assert_eq!(response.xor_mapped_address(), Some(mapped));
    assert_eq!(response.verify_integrity(&key), Ok(()));
    assert_eq!(response.verify_fingerprint(), Ok(()));
    let unknown = msg.unknown_required();
    for code in [
        ErrorCode::BadRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::UnknownAttribute,
        ErrorCode::RoleConflict,
    ] {
        #[allow(clippy::expect_used)]
        let n = write_binding_error(&mut out, &tid, code, unknown, Some(&key))
            .expect("fits in 256 bytes");
        #[allow(clippy::expect_used)]
        let response = StunMessage::parse(&out[..n]).expect("our error response parses");
        assert_eq!(response.error_code(), Some(code.code()));
        assert_eq!(response.verify_integrity(&key), Ok(()));
        assert_eq!(response.verify_fingerprint(), Ok(()));
    }
    // Too small a buffer is an error, never a panic.
    assert!(write_binding_success(&mut out[..40], &tid, mapped, &key).is_err());
}

#[cfg(test)]
pub(crate) mod tests;
