//! Writing STUN messages into a caller's buffer (RFC 8489 §5, §14): the generic
//! [`MessageWriter`] and the two Binding responses an ICE-lite server sends.

use std::net::{IpAddr, SocketAddr};

use hmac::Mac;

use super::{
    attr, message_type, xor_pad, Class, ErrorCode, IntegrityKey, StunError, BINDING,
    FINGERPRINT_ATTR_LEN, FINGERPRINT_XOR, HEADER_LEN, INTEGRITY_ATTR_LEN, MAGIC_COOKIE,
};

/// Writes one STUN message into a caller's buffer, attribute by attribute, keeping the
/// header's length current (RFC 8489 §5). MESSAGE-INTEGRITY and FINGERPRINT go last, in that
/// order ([`Self::message_integrity`], [`Self::fingerprint`]).
#[derive(Debug)]
pub struct MessageWriter<'b> {
    out: &'b mut [u8],
    len: usize,
    transaction_id: [u8; 12],
    padding: u8,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message of `method` and `class` with the given transaction id.
    pub fn new(
        out: &'b mut [u8],
        method: u16,
        class: Class,
        transaction_id: &[u8; 12],
    ) -> Result<MessageWriter<'b>, StunError> {
        let header = out
            .get_mut(..HEADER_LEN)
            .ok_or(StunError::BufferTooSmall { needed: HEADER_LEN })?;
        header[..2].copy_from_slice(&message_type(method, class).to_be_bytes());
        header[2..4].copy_from_slice(&[0, 0]);
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        header[8..].copy_from_slice(transaction_id);
        Ok(MessageWriter {
            out,
            len: HEADER_LEN,
            transaction_id: *transaction_id,
            padding: 0,
        })
    }

    /// Sets the byte attribute values are padded with (0 unless set). RFC 8489 §14 lets it be
    /// anything; the RFC 5769 vectors use 0x20, and the tests reproduce them with it.
    pub fn padding_byte(mut self, byte: u8) -> MessageWriter<'b> {
        self.padding = byte;
        self
    }

    /// Sets the header's length field to the message so far plus `extra` bytes.
    fn set_length(&mut self, extra: usize) -> Result<(), StunError> {
        let body = u16::try_from(self.len - HEADER_LEN + extra)
            .map_err(|_| StunError::ValueTooLong { attr: 0 })?;
        self.out[2..4].copy_from_slice(&body.to_be_bytes());
        Ok(())
    }

    /// Reserves an attribute of `value_len` bytes (plus padding), writes its header and
    /// padding, updates the header length, and returns the value's slot.
    fn reserve(&mut self, ty: u16, value_len: usize) -> Result<&mut [u8], StunError> {
        let attr_len =
            u16::try_from(value_len).map_err(|_| StunError::ValueTooLong { attr: ty })?;
        let padded = value_len.next_multiple_of(4);
        let start = self.len;
        let end = start + 4 + padded;
        if end - HEADER_LEN > usize::from(u16::MAX) {
            return Err(StunError::ValueTooLong { attr: ty });
        }
        let slot = self
            .out
            .get_mut(start..end)
            .ok_or(StunError::BufferTooSmall { needed: end })?;
        slot[..2].copy_from_slice(&ty.to_be_bytes());
        slot[2..4].copy_from_slice(&attr_len.to_be_bytes());
        slot[4 + value_len..].fill(self.padding);
        self.len = end;
        self.set_length(0)?;
        Ok(&mut self.out[start + 4..start + 4 + value_len])
    }

    /// Appends an attribute with the given value.
    pub fn attribute(&mut self, ty: u16, value: &[u8]) -> Result<(), StunError> {
        self.reserve(ty, value.len())?.copy_from_slice(value);
        Ok(())
    }

    /// Appends XOR-MAPPED-ADDRESS for `addr` (RFC 8489 §14.2), IPv4 or IPv6.
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<(), StunError> {
        let pad = xor_pad(&self.transaction_id);
        let (family, ip, ip_len) = match addr.ip() {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                (0x01, b, 4)
            }
            IpAddr::V6(v6) => (0x02, v6.octets(), 16),
        };
        let value = self.reserve(attr::XOR_MAPPED_ADDRESS, 4 + ip_len)?;
        value[0] = 0;
        value[1] = family;
        value[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
        for ((v, a), p) in value[4..].iter_mut().zip(&ip).zip(&pad) {
            *v = a ^ p;
        }
        Ok(())
    }

    /// Appends ERROR-CODE (RFC 8489 §14.8): class and number, then the reason phrase.
    pub fn error_code(&mut self, code: ErrorCode) -> Result<(), StunError> {
        let reason = code.reason().as_bytes();
        let n = code.code();
        let value = self.reserve(attr::ERROR_CODE, 4 + reason.len())?;
        value[..4].copy_from_slice(&[0, 0, (n / 100) as u8, (n % 100) as u8]);
        value[4..].copy_from_slice(reason);
        Ok(())
    }

    /// Appends UNKNOWN-ATTRIBUTES listing `types` (RFC 8489 §14.9).
    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<(), StunError> {
        let value = self.reserve(attr::UNKNOWN_ATTRIBUTES, 2 * types.len())?;
        for (slot, ty) in value.chunks_exact_mut(2).zip(types) {
            slot.copy_from_slice(&ty.to_be_bytes());
        }
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over the message so far, the header
    /// length already counting this attribute (RFC 8489 §14.5).
    pub fn message_integrity(&mut self, key: &IntegrityKey) -> Result<(), StunError> {
        let start = self.len;
        self.reserve(attr::MESSAGE_INTEGRITY, 20)?;
        let mut mac = key.mac.clone();
        mac.update(&self.out[..start]);
        let tag = mac.finalize().into_bytes();
        self.out[start + 4..start + INTEGRITY_ATTR_LEN].copy_from_slice(&tag);
        Ok(())
    }

    /// Appends FINGERPRINT: CRC-32 of the message so far XOR 0x5354554e, the header length
    /// already counting this attribute (RFC 8489 §14.7). Returns the message's length.
    pub fn fingerprint(mut self) -> Result<usize, StunError> {
        let start = self.len;
        self.reserve(attr::FINGERPRINT, 4)?;
        let crc = crc32fast::hash(&self.out[..start]) ^ FINGERPRINT_XOR;
        self.out[start + 4..start + FINGERPRINT_ATTR_LEN].copy_from_slice(&crc.to_be_bytes());
        Ok(self.len)
    }

    /// Ends the message without FINGERPRINT. Returns its length.
    pub fn finish(self) -> usize {
        self.len
    }
}

/// Writes a Binding success response to `request` for a peer seen at `mapped`:
/// XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with our password, FINGERPRINT (RFC 8489 §6.3.1.1,
/// RFC 8445 §7.3.1.4). Returns the response's length.
pub fn write_binding_success(
    out: &mut [u8],
    transaction_id: &[u8; 12],
    mapped: SocketAddr,
    key: &IntegrityKey,
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(out, BINDING, Class::Success, transaction_id)?;
    w.xor_mapped_address(mapped)?;
    w.message_integrity(key)?;
    w.fingerprint()
}

/// Writes a Binding error response with `code`; `unknown` lists the attributes for a 420
/// (RFC 8489 §6.3.1.1). MESSAGE-INTEGRITY is added when `key` is given: a response to an
/// authenticated request carries it, one to a request that failed authentication (400, 401)
/// must not (RFC 8489 §9.1.3). FINGERPRINT always (RFC 8445 §7.3). Returns the length.
pub fn write_binding_error(
    out: &mut [u8],
    transaction_id: &[u8; 12],
    code: ErrorCode,
    unknown: &[u16],
    key: Option<&IntegrityKey>,
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(out, BINDING, Class::Error, transaction_id)?;
    w.error_code(code)?;
    if code == ErrorCode::UnknownAttribute {
        w.unknown_attributes(unknown)?;
    }
    if let Some(key) = key {
        w.message_integrity(key)?;
    }
    w.fingerprint()
}
