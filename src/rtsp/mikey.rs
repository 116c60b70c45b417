//! The subset of MIKEY (RFC 3830) that keys SRTP for RTSPS viewers, sans-IO: a pre-shared-key
//! `I_MESSAGE` (data type `PSK_INIT`) whose KEMAC carries the SRTP master key and salt in
//! the clear (NULL encryption, NULL MAC). That is what GStreamer's `rtspsrc` reads from the
//! SDP `a=key-mgmt:mikey` attribute (RFC 4567 §3.1) and sends in the SETUP `KeyMgmt`
//! header (RFC 4567 §3.2), and what gst-rtsp-server sends.
//!
//! Why NULL encryption and MAC are acceptable here: RFC 3830 §6.2 restricts the NULL
//! algorithms to transports that already give confidentiality and integrity (§4.2.3); the
//! message only ever travels inside RTSPS (TLS 1.3), never over plain RTSP — the session core
//! offers it on secure connections only.
//!
//! [`parse`] reads any such message bounds-checked (every length against what is left, no
//! allocation beyond the crypto-session map, which the input bounds) and returns the SRTP
//! master key, salt and crypto sessions; everything else (public-key or Diffie-Hellman
//! envelopes, encrypted KEMACs, policies other than AES-CM-128 with HMAC-SHA1-80) is an
//! error naming what was found. [`build_psk_init`] writes the message we send.

/// MIKEY version (RFC 3830 §6.1).
const VERSION: u8 = 1;
/// Data type `Pre-shared` initiator message (RFC 3830 §6.1, Table 6.1.a).
const TYPE_PSK_INIT: u8 = 0;
/// CS ID map type `SRTP-ID` (RFC 3830 §6.1, §6.1.1).
const MAP_SRTP: u8 = 0;
/// PRF `MIKEY-1` (RFC 3830 §6.1, §4.1.3).
const PRF_MIKEY_1: u8 = 0;

/// Payload types (RFC 3830 §6.1, Table 6.1.c).
const PT_LAST: u8 = 0;
const PT_KEMAC: u8 = 1;
const PT_T: u8 = 5;
const PT_SP: u8 = 10;
const PT_RAND: u8 = 11;
const PT_KEY_DATA: u8 = 20;
const PT_GEN_EXT: u8 = 21;

/// KEMAC encryption `NULL` and MAC `NULL` (RFC 3830 §6.2).
const ENC_NULL: u8 = 0;
const MAC_NULL: u8 = 0;

/// Key data types (RFC 3830 §6.13): TEK, and TEK followed by a separate salt.
const KD_TEK: u8 = 2;
const KD_TEK_SALT: u8 = 3;
/// Key validity `NULL` (RFC 3830 §6.13): no SPI or interval follows.
const KV_NULL: u8 = 0;
const KV_SPI: u8 = 1;
const KV_INTERVAL: u8 = 2;

/// Security protocol `SRTP` in the SP payload (RFC 3830 §6.10).
const PROTO_SRTP: u8 = 0;
/// SRTP policy parameter types (RFC 3830 §6.10.1).
const SP_ENC_ALG: u8 = 0;
const SP_ENC_KEY_LEN: u8 = 1;
const SP_AUTH_ALG: u8 = 2;
const SP_AUTH_KEY_LEN: u8 = 3;
const SP_SALT_KEY_LEN: u8 = 4;
const SP_SRTP_ENC: u8 = 7;
const SP_SRTCP_ENC: u8 = 8;
const SP_SRTP_AUTH: u8 = 10;
const SP_AUTH_TAG_LEN: u8 = 11;
/// Encryption `AES-CM` and authentication `HMAC-SHA-1` (RFC 3830 §6.10.1).
const ENC_AES_CM: u8 = 1;
const AUTH_HMAC_SHA1: u8 = 1;

/// SRTP master key bytes of `AES_CM_128_HMAC_SHA1_80` (RFC 3711 §8.2).
pub const MASTER_KEY_LEN: usize = 16;
/// SRTP master salt bytes (RFC 3711 §8.2: 112 bits).
pub const MASTER_SALT_LEN: usize = 14;
/// Crypto sessions one message may list that are kept; a message listing more is refused.
pub const MAX_CRYPTO_SESSIONS: usize = 16;

/// Why a MIKEY message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MikeyError {
    /// The message ends inside a field.
    #[error("mikey message truncated in {0}")]
    Truncated(&'static str),
    /// A version other than 1.
    #[error("mikey version {0} (only 1 is defined)")]
    Version(u8),
    /// A data type other than the pre-shared-key initiator message.
    #[error("mikey data type {0} (only PSK_INIT, 0, is accepted)")]
    DataType(u8),
    /// A CS ID map type other than SRTP-ID.
    #[error("mikey crypto-session map type {0} (only SRTP-ID, 0, is accepted)")]
    MapType(u8),
    /// More crypto sessions than [`MAX_CRYPTO_SESSIONS`].
    #[error("mikey message lists {0} crypto sessions")]
    TooManySessions(usize),
    /// A timestamp type RFC 3830 §6.6 does not define.
    #[error("mikey timestamp type {0}")]
    Timestamp(u8),
    /// A payload this subset does not read (public key, Diffie-Hellman, signature, ...).
    #[error("mikey payload type {0} not supported")]
    Payload(u8),
    /// An encrypted KEMAC or one with a MAC: only NULL/NULL inside TLS is accepted.
    #[error("mikey KEMAC encryption {enc} / MAC {mac} (only NULL/NULL over TLS)")]
    Kemac {
        /// Encryption algorithm number.
        enc: u8,
        /// MAC algorithm number.
        mac: u8,
    },
    /// A key data sub-payload that is not a TEK, or with key validity data we do not read.
    #[error("mikey key data type {kind}, validity {kv}")]
    KeyType {
        /// Key data type.
        kind: u8,
        /// Key validity type.
        kv: u8,
    },
    /// Key and salt that do not make an `AES_CM_128_HMAC_SHA1_80` master key and salt.
    #[error("mikey key of {key} bytes and salt of {salt} (16 and 14 needed)")]
    KeyLength {
        /// Key bytes.
        key: usize,
        /// Salt bytes.
        salt: usize,
    },
    /// A security policy other than SRTP with AES-CM-128 and HMAC-SHA1-80.
    #[error("mikey security policy parameter {kind} = {value} not supported")]
    Policy {
        /// Parameter type.
        kind: u8,
        /// Its first value byte.
        value: u8,
    },
    /// No KEMAC with a key in it.
    #[error("mikey message carries no key")]
    NoKey,
    /// Bytes after the last payload.
    #[error("{0} bytes after the last mikey payload")]
    Trailing(usize),
}

/// One crypto session of the SRTP-ID map (RFC 3830 §6.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoSession {
    /// Security policy number (the SP payload's).
    pub policy: u8,
    /// The SSRC whose packets this session protects.
    pub ssrc: u32,
    /// Its rollover counter.
    pub roc: u32,
}

/// What a parsed message keys: one SRTP master key and salt for its crypto sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MikeyKeys {
    /// CSB ID (RFC 3830 §6.1).
    pub csb_id: u32,
    /// The crypto sessions listed (SSRC and ROC each).
    pub sessions: Vec<CryptoSession>,
    /// SRTP master key.
    pub key: [u8; MASTER_KEY_LEN],
    /// SRTP master salt.
    pub salt: [u8; MASTER_SALT_LEN],
}

/// A reader over the message that names the field it runs out in.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MikeyError> {
        if self.rest.len() < n {
            return Err(MikeyError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, MikeyError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, MikeyError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, MikeyError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses a MIKEY `PSK_INIT` message with a NULL KEMAC (RFC 3830 §6) into its SRTP keys.
pub fn parse(message: &[u8]) -> Result<MikeyKeys, MikeyError> {
    let mut r = Reader { rest: message };
    // RFC 3830 §6.1: the common header.
    let version = r.u8("header")?;
    if version != VERSION {
        return Err(MikeyError::Version(version));
    }
    let data_type = r.u8("header")?;
    if data_type != TYPE_PSK_INIT {
        return Err(MikeyError::DataType(data_type));
    }
    let mut next = r.u8("header")?;
    let _v_prf = r.u8("header")?;
    let csb_id = r.u32("header")?;
    let n_cs = usize::from(r.u8("header")?);
    let map_type = r.u8("header")?;
    if map_type != MAP_SRTP {
        return Err(MikeyError::MapType(map_type));
    }
    if n_cs > MAX_CRYPTO_SESSIONS {
        return Err(MikeyError::TooManySessions(n_cs));
    }
    // RFC 3830 §6.1.1: nine bytes per crypto session.
    let mut sessions = Vec::with_capacity(n_cs);
    for _ in 0..n_cs {
        sessions.push(CryptoSession {
            policy: r.u8("crypto session map")?,
            ssrc: r.u32("crypto session map")?,
            roc: r.u32("crypto session map")?,
        });
    }
    let mut key = None;
    while next != PT_LAST {
        match next {
            // RFC 3830 §6.6: the timestamp's length follows from its type.
            PT_T => {
                next = r.u8("timestamp")?;
                let len = match r.u8("timestamp")? {
                    0 | 1 => 8,
                    2 => 4,
                    other => return Err(MikeyError::Timestamp(other)),
                };
                r.take(len, "timestamp")?;
            }
            // RFC 3830 §6.11.
            PT_RAND => {
                next = r.u8("rand")?;
                let len = usize::from(r.u8("rand")?);
                r.take(len, "rand")?;
            }
            // RFC 3830 §6.10.
            PT_SP => {
                next = r.u8("security policy")?;
                let _policy_no = r.u8("security policy")?;
                let proto = r.u8("security policy")?;
                if proto != PROTO_SRTP {
                    return Err(MikeyError::Policy {
                        kind: 255,
                        value: proto,
                    });
                }
                let len = usize::from(r.u16("security policy")?);
                let params = r.take(len, "security policy")?;
                check_policy(params)?;
            }
            // RFC 3830 §6.2.
            PT_KEMAC => {
                next = r.u8("kemac")?;
                let enc = r.u8("kemac")?;
                let len = usize::from(r.u16("kemac")?);
                let inner = r.take(len, "kemac")?;
                let mac = r.u8("kemac")?;
                if enc != ENC_NULL || mac != MAC_NULL {
                    return Err(MikeyError::Kemac { enc, mac });
                }
                key = Some(key_data(inner)?);
            }
            // RFC 3830 §6.15: a general extension is skipped by its length.
            PT_GEN_EXT => {
                next = r.u8("extension")?;
                let _kind = r.u8("extension")?;
                let len = usize::from(r.u16("extension")?);
                r.take(len, "extension")?;
            }
            other => return Err(MikeyError::Payload(other)),
        }
    }
    if !r.rest.is_empty() {
        return Err(MikeyError::Trailing(r.rest.len()));
    }
    let (key, salt) = key.ok_or(MikeyError::NoKey)?;
    Ok(MikeyKeys {
        csb_id,
        sessions,
        key,
        salt,
    })
}

/// The SRTP policy parameters (RFC 3830 §6.10.1): anything said must agree with
/// `AES_CM_128_HMAC_SHA1_80` (what is not said takes its default, which does).
fn check_policy(mut params: &[u8]) -> Result<(), MikeyError> {
    while !params.is_empty() {
        let mut r = Reader { rest: params };
        let kind = r.u8("policy parameter")?;
        let len = usize::from(r.u8("policy parameter")?);
        let value = r.take(len, "policy parameter")?;
        params = r.rest;
        let Some(&v) = value.first() else {
            continue;
        };
        let ok = match kind {
            SP_ENC_ALG => v == ENC_AES_CM,
            SP_ENC_KEY_LEN => usize::from(v) == MASTER_KEY_LEN,
            SP_AUTH_ALG => v == AUTH_HMAC_SHA1,
            // RFC 3711 §8.2: the session authentication key is 160 bits; GStreamer writes the
            // tag length (10) here, which this accepts too.
            SP_AUTH_KEY_LEN => v == 20 || v == 10,
            SP_SALT_KEY_LEN => usize::from(v) == MASTER_SALT_LEN,
            SP_SRTP_ENC | SP_SRTCP_ENC | SP_SRTP_AUTH => v == 1,
            SP_AUTH_TAG_LEN => v == 10,
            _ => true,
        };
        if !ok {
            return Err(MikeyError::Policy { kind, value: v });
        }
    }
    Ok(())
}

/// The key data sub-payload inside a NULL KEMAC (RFC 3830 §6.13): a TEK of key and salt
/// together (30 bytes, as GStreamer writes it) or a TEK of 16 bytes with a 14-byte salt.
fn key_data(inner: &[u8]) -> Result<([u8; MASTER_KEY_LEN], [u8; MASTER_SALT_LEN]), MikeyError> {
    let mut r = Reader { rest: inner };
    // Further key data sub-payloads (several TEKs) are not used: the first keys the session.
    let next = r.u8("key data")?;
    if next != PT_LAST && next != PT_KEY_DATA {
        return Err(MikeyError::Payload(next));
    }
    let type_kv = r.u8("key data")?;
    let (kind, kv) = (type_kv >> 4, type_kv & 0x0f);
    if !(kind == KD_TEK || kind == KD_TEK_SALT) {
        return Err(MikeyError::KeyType { kind, kv });
    }
    let key_len = usize::from(r.u16("key data")?);
    let key = r.take(key_len, "key data")?;
    let salt: &[u8] = if kind == KD_TEK_SALT {
        let len = usize::from(r.u16("key salt")?);
        r.take(len, "key salt")?
    } else {
        &[]
    };
    match kv {
        KV_NULL => {}
        KV_SPI => {
            let len = usize::from(r.u8("key validity")?);
            r.take(len, "key validity")?;
        }
        KV_INTERVAL => {
            for _ in 0..2 {
                let len = usize::from(r.u8("key validity")?);
                r.take(len, "key validity")?;
            }
        }
        _ => return Err(MikeyError::KeyType { kind, kv }),
    }
    // Key and salt in one (GStreamer), or apart.
    let both: ([u8; MASTER_KEY_LEN], [u8; MASTER_SALT_LEN]);
    if salt.is_empty() && key.len() == MASTER_KEY_LEN + MASTER_SALT_LEN {
        let mut k = [0; MASTER_KEY_LEN];
        let mut s = [0; MASTER_SALT_LEN];
        k.copy_from_slice(&key[..MASTER_KEY_LEN]);
        s.copy_from_slice(&key[MASTER_KEY_LEN..]);
        both = (k, s);
    } else if key.len() == MASTER_KEY_LEN && salt.len() == MASTER_SALT_LEN {
        let mut k = [0; MASTER_KEY_LEN];
        let mut s = [0; MASTER_SALT_LEN];
        k.copy_from_slice(key);
        s.copy_from_slice(salt);
        both = (k, s);
    } else {
        return Err(MikeyError::KeyLength {
            key: key.len(),
            salt: salt.len(),
        });
    }
    Ok(both)
}

/// What [`build_psk_init`] writes.
#[derive(Debug, Clone)]
pub struct PskInit<'a> {
    /// CSB ID (RFC 3830 §6.1: random).
    pub csb_id: u32,
    /// The crypto sessions (our SSRC, ROC 0 at the start).
    pub sessions: &'a [CryptoSession],
    /// NTP-UTC timestamp (RFC 3830 §6.6).
    pub ntp_utc: u64,
    /// RAND (RFC 3830 §6.11: at least 16 bytes).
    pub rand: [u8; 16],
    /// SRTP master key.
    pub key: [u8; MASTER_KEY_LEN],
    /// SRTP master salt.
    pub salt: [u8; MASTER_SALT_LEN],
}

/// Writes an `I_MESSAGE` of type `PSK_INIT` (RFC 3830 §3.1, §6): HDR (SRTP-ID map), T
/// (NTP-UTC), RAND, SP (SRTP: AES-CM-128, HMAC-SHA1, 80-bit tag, encryption and
/// authentication on) and a KEMAC with NULL encryption and MAC (§6.2, allowed because the
/// message only travels inside TLS) holding one TEK sub-payload of key and salt together,
/// the layout GStreamer's `gst_mikey_message_to_caps` reads.
pub fn build_psk_init(m: &PskInit<'_>) -> Vec<u8> {
    let n_cs = m.sessions.len().min(MAX_CRYPTO_SESSIONS);
    let mut out = Vec::with_capacity(10 + 9 * n_cs + 10 + 18 + 32 + 40);
    out.extend_from_slice(&[VERSION, TYPE_PSK_INIT, PT_T, PRF_MIKEY_1]);
    out.extend_from_slice(&m.csb_id.to_be_bytes());
    out.extend_from_slice(&[n_cs as u8, MAP_SRTP]);
    for cs in &m.sessions[..n_cs] {
        out.push(cs.policy);
        out.extend_from_slice(&cs.ssrc.to_be_bytes());
        out.extend_from_slice(&cs.roc.to_be_bytes());
    }
    // T: NTP-UTC (type 0), 64 bits.
    out.extend_from_slice(&[PT_RAND, 0]);
    out.extend_from_slice(&m.ntp_utc.to_be_bytes());
    // RAND.
    out.extend_from_slice(&[PT_SP, m.rand.len() as u8]);
    out.extend_from_slice(&m.rand);
    // SP: policy 0, SRTP.
    let params: [[u8; 3]; 8] = [
        [SP_ENC_ALG, 1, ENC_AES_CM],
        [SP_ENC_KEY_LEN, 1, MASTER_KEY_LEN as u8],
        [SP_AUTH_ALG, 1, AUTH_HMAC_SHA1],
        [SP_AUTH_KEY_LEN, 1, 20],
        [SP_SALT_KEY_LEN, 1, MASTER_SALT_LEN as u8],
        [SP_SRTP_ENC, 1, 1],
        [SP_SRTCP_ENC, 1, 1],
        [SP_SRTP_AUTH, 1, 1],
    ];
    out.extend_from_slice(&[PT_KEMAC, 0, PROTO_SRTP]);
    out.extend_from_slice(&((params.len() * 3 + 3) as u16).to_be_bytes());
    for p in params {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&[SP_AUTH_TAG_LEN, 1, 10]);
    // KEMAC: NULL encryption, one key data sub-payload (TEK, KV NULL, key || salt), NULL MAC.
    let key_len = MASTER_KEY_LEN + MASTER_SALT_LEN;
    let inner_len = 4 + key_len;
    out.extend_from_slice(&[PT_LAST, ENC_NULL]);
    out.extend_from_slice(&(inner_len as u16).to_be_bytes());
    out.extend_from_slice(&[PT_LAST, (KD_TEK << 4) | KV_NULL]);
    out.extend_from_slice(&(key_len as u16).to_be_bytes());
    out.extend_from_slice(&m.key);
    out.extend_from_slice(&m.salt);
    out.push(MAC_NULL);
    out
}

/// The `data` of a `KeyMgmt` header (RFC 4567 §3.2: `KeyMgmt: prot=mikey; uri="…";
/// data="<base64>"`), when its protocol is MIKEY; `None` when the header has no such part.
pub fn keymgmt_data(header: &str) -> Option<&str> {
    // Several key-mgmt specs may be listed, separated by commas (§3.2); the first MIKEY one.
    for spec in header.split(',') {
        let mut is_mikey = false;
        let mut data = None;
        for param in spec.split(';') {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), v.trim().trim_matches('"')),
                None => continue,
            };
            if name.eq_ignore_ascii_case("prot") {
                is_mikey = value.eq_ignore_ascii_case("mikey");
            } else if name.eq_ignore_ascii_case("data") {
                data = Some(value);
            }
        }
        if is_mikey {
            return data;
        }
    }
    None
}

/// The fuzz target's body: parses arbitrary bytes, and a `KeyMgmt` header made of them.
pub fn fuzz_parse(data: &[u8]) {
    let _ = parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = keymgmt_data(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Vec<u8> {
        build_psk_init(&PskInit {
            csb_id: 0x0102_0304,
            sessions: &[CryptoSession {
                policy: 0,
                ssrc: 0xdead_beef,
                roc: 0,
            }],
            ntp_utc: 0x1122_3344_5566_7788,
            rand: [7; 16],
            key: [1; 16],
            salt: [2; 14],
        })
    }

    #[test]
    fn what_we_build_parses_back() {
        let keys = parse(&ours()).unwrap();
        assert_eq!(keys.csb_id, 0x0102_0304);
        assert_eq!(keys.key, [1; 16]);
        assert_eq!(keys.salt, [2; 14]);
        assert_eq!(
            keys.sessions,
            vec![CryptoSession {
                policy: 0,
                ssrc: 0xdead_beef,
                roc: 0
            }]
        );
    }

    /// The layout gst_mikey_message_new_from_caps writes (GStreamer 1.22 rtspsrc's KeyMgmt):
    /// no crypto sessions in the header map here, T, RAND, SP with the tag length in
    /// AUTH_KEY_LEN, KEMAC NULL with a 30-byte TEK.
    #[test]
    fn a_gstreamer_shaped_message_parses() {
        let mut m = vec![1, 0, PT_T, 0, 0xaa, 0xbb, 0xcc, 0xdd, 1, 0];
        m.extend_from_slice(&[0, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0]);
        m.extend_from_slice(&[PT_RAND, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        m.extend_from_slice(&[PT_SP, 16]);
        m.extend_from_slice(&[9; 16]);
        m.extend_from_slice(&[PT_KEMAC, 0, 0, 0, 21]);
        for p in [
            [0, 1, 1],
            [1, 1, 16],
            [2, 1, 1],
            [3, 1, 10],
            [7, 1, 1],
            [8, 1, 1],
            [10, 1, 1],
        ] {
            m.extend_from_slice(&p);
        }
        m.extend_from_slice(&[PT_LAST, 0, 0, 34, PT_LAST, 0x20, 0, 30]);
        m.extend_from_slice(&[5; 30]);
        m.push(0);
        let keys = parse(&m).unwrap();
        assert_eq!(keys.key, [5; 16]);
        assert_eq!(keys.salt, [5; 14]);
        assert_eq!(keys.sessions[0].ssrc, 0x1122_3344);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let m = ours();
        for n in 0..m.len() {
            assert!(parse(&m[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut longer = m.clone();
        longer.push(0);
        assert_eq!(parse(&longer), Err(MikeyError::Trailing(1)));
    }

    #[test]
    fn encrypted_kemacs_and_other_types_are_refused() {
        let mut m = ours();
        m[1] = 2; // PK_INIT
        assert_eq!(parse(&m), Err(MikeyError::DataType(2)));
        let mut m = ours();
        m[0] = 2;
        assert_eq!(parse(&m), Err(MikeyError::Version(2)));
        // The KEMAC's encryption byte: the header, one CS, T, RAND, SP lead it.
        let sp_len = 5 + 27;
        let kemac = 10 + 9 + 10 + 18 + sp_len;
        let mut m = ours();
        assert_eq!(m[kemac], PT_LAST);
        m[kemac + 1] = 1;
        assert_eq!(parse(&m), Err(MikeyError::Kemac { enc: 1, mac: 0 }));
        // An AES-256 policy.
        let mut m = ours();
        let sp = 10 + 9 + 10 + 18;
        assert_eq!(m[sp + 5 + 3], SP_ENC_KEY_LEN);
        m[sp + 5 + 5] = 32;
        assert!(matches!(parse(&m), Err(MikeyError::Policy { .. })));
    }

    #[test]
    fn the_fuzz_seeds_parse_as_expected() {
        let seeds = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/mikey/");
        let read = |name: &str| std::fs::read(format!("{seeds}{name}")).unwrap();
        assert_eq!(parse(&read("ours.bin")).unwrap().key, [1; 16]);
        assert_eq!(parse(&read("gstreamer-keymgmt.bin")).unwrap().salt, [5; 14]);
        assert!(parse(&read("truncated.bin")).is_err());
        let header = String::from_utf8(read("keymgmt-header.txt")).unwrap();
        assert!(keymgmt_data(&header).is_some());
    }

    #[test]
    fn keymgmt_headers() {
        assert_eq!(
            keymgmt_data(r#"prot=mikey; uri="rtsps://h/s/trackID=0"; data="AQAF""#),
            Some("AQAF")
        );
        assert_eq!(
            keymgmt_data("prot=other;data=x, prot=mikey;data=y"),
            Some("y")
        );
        assert_eq!(keymgmt_data("data=x"), None);
        assert_eq!(keymgmt_data(""), None);
    }

    #[test]
    fn fuzz_body_runs_on_odd_inputs() {
        for input in [
            &b""[..],
            &[1, 0, 1, 0, 0, 0, 0, 0, 255, 0],
            &[1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            b"prot=mikey;data=\"",
        ] {
            fuzz_parse(input);
        }
        let m = ours();
        for i in 0..m.len() {
            let mut x = m.clone();
            x[i] ^= 0xff;
            fuzz_parse(&x);
        }
    }
}
