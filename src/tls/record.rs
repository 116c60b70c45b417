//! The TLS 1.3 record layer after the handshake (RFC 8446 §5.2), sans-IO: [`Sealer`] turns
//! plaintext into application-data records, [`Opener`] turns received bytes back into
//! plaintext.
//!
//! Why hand-written: after rustls's handshake, one connection is read by the control thread
//! (RTSP requests) and written by both the control thread (responses) and a shard (`$`
//! frames), and a `rustls::ServerConnection` cannot be shared that way. Linux kTLS would do
//! it in the kernel, but the kernels we run on may lack the `tls` ULP (this machine's
//! `/proc/sys/net/ipv4/tcp_available_ulp` lists only `mptcp`). So rustls hands over the
//! traffic secrets (`dangerous_extract_secrets`) and the two halves live where their users
//! are: the send half inside the connection's `TcpSink` (under the lock that already orders
//! responses and frames), the receive half with the request reader.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

/// Largest plaintext of one record (RFC 8446 §5.1: 2^14).
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Largest ciphertext of one record (RFC 8446 §5.2: 2^14 + 256).
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// The record header: type, legacy version, length (RFC 8446 §5.1).
pub const HEADER_LEN: usize = 5;
/// The AEAD tag of every suite we support.
pub const TAG_LEN: usize = 16;
/// Bytes one record adds to its plaintext: header, inner content type, tag.
pub const RECORD_OVERHEAD: usize = HEADER_LEN + 1 + TAG_LEN;

/// `ContentType` values (RFC 8446 §5.1, appendix B.1).
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
/// The alert description `close_notify` (RFC 8446 §6.1).
const CLOSE_NOTIFY: u8 = 0;
/// Alert descriptions we send when we end a connection on an error (RFC 8446 §6.2).
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;
/// Alert levels (RFC 8446 §6: the level is ignored in TLS 1.3, but errors are sent fatal).
const WARNING: u8 = 1;
const FATAL: u8 = 2;

/// How our side ends a TLS connection (RFC 8446 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    /// `close_notify` (§6.1: each party MUST send it before closing its write side, unless
    /// it sent an error alert).
    Notify,
    /// A fatal error alert with this description (§6.2).
    Fatal(u8),
    /// Nothing: the peer already ended the connection with an error alert of its own.
    Silent,
}

/// The AEAD of a TLS 1.3 cipher suite (RFC 8446 §B.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `TLS_AES_128_GCM_SHA256`.
    Aes128Gcm,
    /// `TLS_AES_256_GCM_SHA384`.
    Aes256Gcm,
    /// `TLS_CHACHA20_POLY1305_SHA256`.
    Chacha20Poly1305,
}

impl Suite {
    /// Records one key may protect (RFC 8446 §5.5: 2^24.5 full-size records for AES-GCM;
    /// ChaCha20-Poly1305's limit is beyond reach). We never send KeyUpdate, so a connection
    /// that gets there is closed: at 100 records a second that is after two days.
    fn record_limit(self) -> u64 {
        match self {
            Suite::Aes128Gcm | Suite::Aes256Gcm => 1 << 24,
            Suite::Chacha20Poly1305 => u64::MAX,
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128Gcm => &aead::AES_128_GCM,
            Suite::Aes256Gcm => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// Why the record layer gave up on a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The key does not fit the suite.
    #[error("bad traffic key length")]
    BadKey,
    /// A record header with a type or length a TLS 1.3 peer never sends.
    #[error("malformed record header (type {0}, length {1})")]
    Header(u8, usize),
    /// A record that did not decrypt (wrong key, tampering, or not TLS at all).
    #[error("record failed to decrypt")]
    Decrypt,
    /// An encrypted record whose inner plaintext is all padding (RFC 8446 §5.4).
    #[error("record without content type")]
    NoContentType,
    /// A post-handshake handshake message (KeyUpdate, NewSessionTicket…): not supported.
    #[error("post-handshake message (type {0}) not supported")]
    PostHandshake(u8),
    /// An alert other than `close_notify`.
    #[error("peer sent alert {0}")]
    Alert(u8),
    /// An inner content type that is not allowed after the handshake.
    #[error("unexpected content type {0}")]
    ContentType(u8),
    /// The key protected as many records as it may (RFC 8446 §5.3, §5.5).
    #[error("record limit of the traffic key reached")]
    SequenceExhausted,
}

impl RecordError {
    /// How to end the connection after this error (RFC 8446 §5, §5.2, §5.4, §6.2).
    pub fn closure(&self) -> Closure {
        match self {
            RecordError::BadKey => Closure::Fatal(INTERNAL_ERROR),
            RecordError::Header(APPLICATION_DATA, len) if *len > MAX_CIPHERTEXT => {
                Closure::Fatal(RECORD_OVERFLOW)
            }
            RecordError::Header(APPLICATION_DATA, _) => Closure::Fatal(DECODE_ERROR),
            RecordError::Header(..) => Closure::Fatal(UNEXPECTED_MESSAGE),
            RecordError::Decrypt => Closure::Fatal(BAD_RECORD_MAC),
            RecordError::NoContentType
            | RecordError::PostHandshake(_)
            | RecordError::ContentType(_) => Closure::Fatal(UNEXPECTED_MESSAGE),
            RecordError::Alert(_) => Closure::Silent,
            RecordError::SequenceExhausted => Closure::Notify,
        }
    }
}

/// One direction's traffic key: AEAD key, static IV and record sequence number.
struct Keys {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
    limit: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("seq", &self.seq).finish()
    }
}

impl Keys {
    fn new(suite: Suite, key: &[u8], iv: &[u8], seq: u64) -> Result<Self, RecordError> {
        let key = UnboundKey::new(suite.algorithm(), key).map_err(|_| RecordError::BadKey)?;
        let iv: [u8; aead::NONCE_LEN] = iv.try_into().map_err(|_| RecordError::BadKey)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            iv,
            seq,
            limit: suite.record_limit(),
        })
    }

    /// The per-record nonce: the IV xor the sequence number, left-padded (RFC 8446 §5.3).
    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        let seq = self.seq;
        if seq >= self.limit {
            return Err(RecordError::SequenceExhausted);
        }
        self.seq = seq.checked_add(1).ok_or(RecordError::SequenceExhausted)?;
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// The send half: seals plaintext into application-data records.
#[derive(Debug)]
pub struct Sealer {
    keys: Keys,
}

impl Sealer {
    /// A sealer from extracted traffic secrets; `seq` is the next record's sequence number.
    pub fn new(suite: Suite, key: &[u8], iv: &[u8], seq: u64) -> Result<Self, RecordError> {
        Ok(Self {
            keys: Keys::new(suite, key, iv, seq)?,
        })
    }

    /// Appends `parts`, concatenated, to `out` as records of at most [`MAX_PLAINTEXT`]
    /// bytes each (one AEAD per record, not per part). `out` is the caller's reused buffer:
    /// nothing is allocated once it has grown to a batch's size.
    pub fn seal<'a>(
        &mut self,
        parts: impl IntoIterator<Item = &'a [u8]> + Clone,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let total: usize = parts.clone().into_iter().map(<[u8]>::len).sum();
        if total == 0 {
            return Ok(());
        }
        let records = total.div_ceil(MAX_PLAINTEXT);
        out.reserve(total + records * RECORD_OVERHEAD);
        let mut parts = parts.into_iter();
        let mut current: &[u8] = &[];
        let mut left = total;
        while left > 0 {
            let len = left.min(MAX_PLAINTEXT);
            left -= len;
            let start = out.len();
            out.extend_from_slice(&record_header(len));
            let mut need = len;
            while need > 0 {
                if current.is_empty() {
                    current = parts.next().unwrap_or(&[]);
                    if current.is_empty() {
                        continue;
                    }
                }
                let take = need.min(current.len());
                out.extend_from_slice(&current[..take]);
                current = &current[take..];
                need -= take;
            }
            self.close_record(start, APPLICATION_DATA, out)?;
        }
        Ok(())
    }

    /// Appends the alert that ends the connection as `closure` says, as one record (RFC
    /// 8446 §6: level, description; encrypted like any record after the handshake).
    pub fn seal_closure(&mut self, closure: Closure, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let alert = match closure {
            Closure::Notify => [WARNING, CLOSE_NOTIFY],
            Closure::Fatal(description) => [FATAL, description],
            Closure::Silent => return Ok(()),
        };
        let start = out.len();
        out.extend_from_slice(&record_header(alert.len()));
        out.extend_from_slice(&alert);
        self.close_record(start, ALERT, out)
    }

    /// Finishes the record that starts at `start` in `out` (its header, then its content):
    /// appends the real content type `kind` (TLSInnerPlaintext, no padding: RFC 8446 §5.2),
    /// encrypts in place and appends the tag. On error `out` is cut back to `start`.
    fn close_record(
        &mut self,
        start: usize,
        kind: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        out.push(kind);
        let header: [u8; HEADER_LEN] = [
            out[start],
            out[start + 1],
            out[start + 2],
            out[start + 3],
            out[start + 4],
        ];
        let sealed = self.keys.next_nonce().and_then(|nonce| {
            self.keys
                .key
                .seal_in_place_separate_tag(
                    nonce,
                    Aad::from(header),
                    &mut out[start + HEADER_LEN..],
                )
                .map_err(|_| RecordError::Decrypt)
        });
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Bytes [`Sealer::seal`] makes of `plaintext` bytes.
    pub fn sealed_len(plaintext: usize) -> usize {
        plaintext + plaintext.div_ceil(MAX_PLAINTEXT) * RECORD_OVERHEAD
    }
}

/// The header of an encrypted record of `content` bytes (RFC 8446 §5.2: opaque_type 23,
/// legacy_record_version 0x0303, the length of content, its type byte and the tag).
fn record_header(content: usize) -> [u8; HEADER_LEN] {
    let len = content + 1 + TAG_LEN;
    [APPLICATION_DATA, 3, 3, (len >> 8) as u8, (len & 0xff) as u8]
}

/// What [`Opener::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Every whole record was opened; more bytes are needed for the next one.
    More,
    /// The peer sent `close_notify`: the connection is done.
    Closed,
}

/// The receive half: opens records into plaintext.
#[derive(Debug)]
pub struct Opener {
    keys: Keys,
}

impl Opener {
    /// An opener from extracted traffic secrets; `seq` is the next record's sequence number.
    pub fn new(suite: Suite, key: &[u8], iv: &[u8], seq: u64) -> Result<Self, RecordError> {
        Ok(Self {
            keys: Keys::new(suite, key, iv, seq)?,
        })
    }

    /// Opens the whole records at the front of `input` (which it drains of them, decrypting
    /// in place) and appends their application data to `plain`. A partial record stays in
    /// `input`. Any record but application data or `close_notify` is an error: the
    /// connection is to be closed.
    pub fn open(
        &mut self,
        input: &mut Vec<u8>,
        plain: &mut Vec<u8>,
    ) -> Result<Opened, RecordError> {
        let mut pos = 0;
        let result = loop {
            let Some(header) = input.get(pos..pos + HEADER_LEN) else {
                break Ok(Opened::More);
            };
            let (kind, len) = (
                header[0],
                usize::from(u16::from_be_bytes([header[3], header[4]])),
            );
            let aad: [u8; HEADER_LEN] = [header[0], header[1], header[2], header[3], header[4]];
            // RFC 8446 §5.2: encrypted records are type 23 and at most 2^14 + 256 bytes;
            // §5 allows a change_cipher_spec record (compatibility mode), which is dropped.
            let ccs = kind == CHANGE_CIPHER_SPEC && len == 1;
            let sealed = kind == APPLICATION_DATA && (TAG_LEN + 1..=MAX_CIPHERTEXT).contains(&len);
            if !(sealed || ccs) {
                break Err(RecordError::Header(kind, len));
            }
            let end = pos + HEADER_LEN + len;
            if input.len() < end {
                break Ok(Opened::More);
            }
            if ccs {
                pos = end;
                continue;
            }
            let nonce = match self.keys.next_nonce() {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            let body = &mut input[pos + HEADER_LEN..end];
            let inner = match self.keys.key.open_in_place(nonce, Aad::from(aad), body) {
                Ok(inner) => inner,
                Err(_) => break Err(RecordError::Decrypt),
            };
            // The content type is the last non-zero byte (§5.4: zero padding after it).
            let Some(type_at) = inner.iter().rposition(|&b| b != 0) else {
                break Err(RecordError::NoContentType);
            };
            let content = &inner[..type_at];
            match inner[type_at] {
                APPLICATION_DATA => plain.extend_from_slice(content),
                ALERT if content.get(1) == Some(&CLOSE_NOTIFY) => break Ok(Opened::Closed),
                ALERT => break Err(RecordError::Alert(content.get(1).copied().unwrap_or(255))),
                HANDSHAKE => {
                    break Err(RecordError::PostHandshake(
                        content.first().copied().unwrap_or(0),
                    ))
                }
                other => break Err(RecordError::ContentType(other)),
            }
            pos = end;
        };
        input.drain(..pos);
        result
    }
}

/// Length of the TLS record at the front of `bytes` (header included), once its header is in.
pub fn record_len(bytes: &[u8]) -> Option<usize> {
    let h = bytes.get(..HEADER_LEN)?;
    Some(HEADER_LEN + usize::from(u16::from_be_bytes([h[3], h[4]])))
}

/// Fuzz entry: opens arbitrary bytes as records, whole and in two pieces, with a fixed key
/// (and, when the input starts with a valid record of that key, the rest after it).
/// Never panics; the input buffer never grows.
pub fn fuzz_open(data: &[u8]) {
    let key = [0x42u8; 16];
    let iv = [0x24u8; 12];
    for split in [data.len(), data.len() / 2] {
        let Ok(mut opener) = Opener::new(Suite::Aes128Gcm, &key, &iv, 0) else {
            return;
        };
        let mut input = data[..split].to_vec();
        let mut plain = Vec::new();
        if opener.open(&mut input, &mut plain).is_ok() {
            input.extend_from_slice(&data[split..]);
            let before = input.len();
            let _ = opener.open(&mut input, &mut plain);
            assert!(input.len() <= before);
        }
        assert!(plain.len() <= data.len());
    }
    // A sealed record in front of the bytes: the opener gets past it, then judges the rest.
    if let (Ok(mut sealer), Ok(mut opener)) = (
        Sealer::new(Suite::Aes128Gcm, &key, &iv, 0),
        Opener::new(Suite::Aes128Gcm, &key, &iv, 0),
    ) {
        let mut input = Vec::new();
        if sealer
            .seal([&b"OPTIONS * RTSP/1.0\r\n\r\n"[..]], &mut input)
            .is_ok()
        {
            input.extend_from_slice(data);
            let mut plain = Vec::new();
            let _ = opener.open(&mut input, &mut plain);
            assert!(plain.starts_with(b"OPTIONS"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [7; 16];
    const IV: [u8; 12] = [9; 12];

    fn pair(suite: Suite) -> (Sealer, Opener) {
        let key: Vec<u8> = (0..suite.algorithm().key_len() as u8).collect();
        (
            Sealer::new(suite, &key, &IV, 5).unwrap(),
            Opener::new(suite, &key, &IV, 5).unwrap(),
        )
    }

    #[test]
    fn sealed_records_open_back_in_every_suite_across_record_boundaries() {
        for suite in [Suite::Aes128Gcm, Suite::Aes256Gcm, Suite::Chacha20Poly1305] {
            let (mut s, mut o) = pair(suite);
            let a: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
            let b = b"RTSP/1.0 200 OK\r\n\r\n".to_vec();
            let mut wire = Vec::new();
            s.seal([&a[..], &b[..]], &mut wire).unwrap();
            assert_eq!(wire.len(), Sealer::sealed_len(a.len() + b.len()));
            assert_eq!(wire.len(), a.len() + b.len() + 3 * RECORD_OVERHEAD);
            s.seal([&b[..]], &mut wire).unwrap();
            // Fed one byte at a time: partial records wait.
            let mut input = Vec::new();
            let mut plain = Vec::new();
            for &byte in &wire {
                input.push(byte);
                assert_eq!(o.open(&mut input, &mut plain), Ok(Opened::More));
            }
            assert!(input.is_empty());
            let mut want = a.clone();
            want.extend_from_slice(&b);
            want.extend_from_slice(&b);
            assert_eq!(plain, want, "{suite:?}");
        }
    }

    #[test]
    fn tampering_a_replay_and_wrong_headers_are_refused() {
        let (mut s, _) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        s.seal([&b"hello"[..]], &mut wire).unwrap();
        let mut bad = wire.clone();
        bad[8] ^= 1;
        let (_, mut o) = pair(Suite::Aes128Gcm);
        assert_eq!(o.open(&mut bad, &mut Vec::new()), Err(RecordError::Decrypt));
        // The same record twice: the second has the wrong sequence number.
        let (_, mut o) = pair(Suite::Aes128Gcm);
        let mut twice = [wire.clone(), wire.clone()].concat();
        assert_eq!(
            o.open(&mut twice, &mut Vec::new()),
            Err(RecordError::Decrypt)
        );
        let (_, mut o) = pair(Suite::Aes128Gcm);
        let mut hello = b"\x16\x03\x01\x00\x05hello".to_vec();
        assert_eq!(
            o.open(&mut hello, &mut Vec::new()),
            Err(RecordError::Header(22, 5))
        );
        let mut big = vec![23, 3, 3, 0x50, 0x00];
        assert!(matches!(
            o.open(&mut big, &mut Vec::new()),
            Err(RecordError::Header(23, _))
        ));
    }

    /// Seals an inner plaintext of a chosen type (what a peer's alert or KeyUpdate is).
    fn seal_typed(s: &mut Sealer, content: &[u8], kind: u8) -> Vec<u8> {
        let mut out = record_header(content.len()).to_vec();
        out.extend_from_slice(content);
        s.close_record(0, kind, &mut out).unwrap();
        out
    }

    /// Our closures open at the peer as what they say: `close_notify` ends the stream
    /// cleanly, an error alert is that alert; each error maps to the alert RFC 8446 names.
    #[test]
    fn closures_are_the_alerts_rfc_8446_names() {
        let (mut s, mut o) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        s.seal([&b"RTSP/1.0 200 OK\r\n\r\n"[..]], &mut wire)
            .unwrap();
        s.seal_closure(Closure::Notify, &mut wire).unwrap();
        let mut plain = Vec::new();
        assert_eq!(o.open(&mut wire, &mut plain), Ok(Opened::Closed));
        assert_eq!(plain, b"RTSP/1.0 200 OK\r\n\r\n");

        let (mut s, mut o) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        s.seal_closure(Closure::Fatal(BAD_RECORD_MAC), &mut wire)
            .unwrap();
        assert_eq!(
            o.open(&mut wire, &mut Vec::new()),
            Err(RecordError::Alert(BAD_RECORD_MAC))
        );
        let mut wire = Vec::new();
        s.seal_closure(Closure::Silent, &mut wire).unwrap();
        assert!(wire.is_empty());

        assert_eq!(RecordError::Decrypt.closure(), Closure::Fatal(20));
        assert_eq!(
            RecordError::Header(23, MAX_CIPHERTEXT + 1).closure(),
            Closure::Fatal(22)
        );
        assert_eq!(RecordError::Header(23, 3).closure(), Closure::Fatal(50));
        assert_eq!(RecordError::Header(22, 5).closure(), Closure::Fatal(10));
        assert_eq!(RecordError::NoContentType.closure(), Closure::Fatal(10));
        assert_eq!(RecordError::PostHandshake(24).closure(), Closure::Fatal(10));
        assert_eq!(RecordError::Alert(40).closure(), Closure::Silent);
    }

    #[test]
    fn close_notify_ends_key_update_and_other_alerts_are_errors() {
        let (mut s, mut o) = pair(Suite::Chacha20Poly1305);
        let mut wire = seal_typed(&mut s, b"abc", APPLICATION_DATA);
        wire.extend(seal_typed(&mut s, &[1, CLOSE_NOTIFY], ALERT));
        let mut plain = Vec::new();
        assert_eq!(o.open(&mut wire, &mut plain), Ok(Opened::Closed));
        assert_eq!(plain, b"abc");

        let (mut s, mut o) = pair(Suite::Aes256Gcm);
        // KeyUpdate (handshake type 24, RFC 8446 §4.6.3).
        let mut wire = seal_typed(&mut s, &[24, 0, 0, 1, 0], HANDSHAKE);
        assert_eq!(
            o.open(&mut wire, &mut Vec::new()),
            Err(RecordError::PostHandshake(24))
        );
        let (mut s, mut o) = pair(Suite::Aes256Gcm);
        let mut wire = seal_typed(&mut s, &[2, 40], ALERT);
        assert_eq!(
            o.open(&mut wire, &mut Vec::new()),
            Err(RecordError::Alert(40))
        );
        let (mut s, mut o) = pair(Suite::Aes256Gcm);
        let mut wire = seal_typed(&mut s, &[], 0);
        assert_eq!(
            o.open(&mut wire, &mut Vec::new()),
            Err(RecordError::NoContentType)
        );
        // Padding after the type is stripped (§5.4).
        let (mut s, mut o) = pair(Suite::Aes256Gcm);
        let mut wire = seal_typed(&mut s, b"xy\x17\0\0", 0);
        let mut plain = Vec::new();
        assert_eq!(o.open(&mut wire, &mut plain), Ok(Opened::More));
        assert_eq!(plain, b"xy");
    }

    #[test]
    fn the_nonce_is_the_iv_xor_the_sequence_number() {
        let mut k = Keys::new(Suite::Aes128Gcm, &KEY, &IV, 0x0102).unwrap();
        let n = k.next_nonce().unwrap();
        let mut want = IV;
        want[10] ^= 1;
        want[11] ^= 2;
        assert_eq!(n.as_ref(), &want);
        assert_eq!(k.seq, 0x0103);
        // RFC 8446 §5.5: AES-GCM keys stop at 2^24 records here.
        let mut k = Keys::new(Suite::Aes128Gcm, &KEY, &IV, (1 << 24) - 1).unwrap();
        assert!(k.next_nonce().is_ok());
        assert!(matches!(
            k.next_nonce(),
            Err(RecordError::SequenceExhausted)
        ));
    }

    #[test]
    fn fuzz_entry_runs_on_seeds() {
        let (mut s, _) = pair(Suite::Aes128Gcm);
        let mut sealed = Vec::new();
        s.seal([&b"x"[..]], &mut sealed).unwrap();
        for seed in [
            &b""[..],
            b"\x17\x03\x03\x00\x11",
            b"\x17\x03\x03\xff\xff",
            b"\x14\x03\x03\x00\x01\x01",
            b"\x15\x03\x03\x00\x02\x02\x28",
            &sealed,
        ] {
            fuzz_open(seed);
        }
    }

    #[test]
    fn random_input_never_panics() {
        let (_, o) = pair(Suite::Aes128Gcm);
        let mut o = o;
        let mut rng = 0x1234_5678_u32;
        for n in 0..300 {
            let mut input: Vec<u8> = (0..n * 7)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 17;
                    rng ^= rng << 5;
                    rng as u8
                })
                .collect();
            if n % 3 == 0 && input.len() > 5 {
                input[0] = 23;
                input[1] = 3;
                input[2] = 3;
            }
            let _ = o.open(&mut input, &mut Vec::new());
        }
    }
}
