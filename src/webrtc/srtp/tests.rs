//! SRTP conformance: the published vectors (RFC 3711 Appendix B.2 and B.3, RFC 7714
//! §16–§17), an independent implementation (webrtc-rs's `webrtc-srtp`) in both directions
//! for both profiles, rollover across the sequence wrap, refusal of tampered, truncated and
//! replayed packets, the fixed SSRC table, and zero allocation on the packet paths.

use super::cm::CmCipher;
use super::gcm::GcmCipher;
use super::kdf::{self, Label};
use super::*;
use crate::sys::count_alloc::allocations_on_this_thread;

use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

fn hex(s: &str) -> Vec<u8> {
    let clean: Vec<u8> = s.bytes().filter(|c| c.is_ascii_hexdigit()).collect();
    assert!(clean.len().is_multiple_of(2), "odd hex length");
    clean
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

const PROFILES: [SrtpProfile; 3] = [
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
    SrtpProfile::Aes128CmHmacSha1_80,
];

fn their_profile(p: SrtpProfile) -> TheirProfile {
    match p {
        SrtpProfile::AeadAes128Gcm => TheirProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => TheirProfile::AeadAes256Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => TheirProfile::Aes128CmHmacSha1_80,
    }
}

/// A master key with recognisable bytes for `profile`.
fn master(profile: SrtpProfile, fill: u8) -> (MasterKey, Vec<u8>, Vec<u8>) {
    let key: Vec<u8> = (0..profile.master_key_len() as u8)
        .map(|i| fill.wrapping_add(i))
        .collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8)
        .map(|i| fill ^ 0xa5 ^ i)
        .collect();
    (MasterKey::new(profile, &key, &salt).unwrap(), key, salt)
}

/// An RTP header: V=2, PT 96, the given sequence number, timestamp and SSRC.
fn rtp_header(seq: u16, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = 96;
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// An RTCP receiver report with one report block from `ssrc` (RFC 3550 §6.4.2).
fn rtcp_rr(ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 24));
    p
}

// ---------------------------------------------------------------------------------------
// RFC 3711 Appendix B
// ---------------------------------------------------------------------------------------

/// RFC 3711 B.3: the session keys from master key E1F9…/salt 0EC6…; a wrong label
/// position, padding or counter placement changes every byte.
#[test]
fn kdf_matches_rfc3711_b3() {
    let key: [u8; 16] = hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap();
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut cipher_key = [0u8; 16];
    kdf::derive(&key, &salt, Label::RtpEncryption, &mut cipher_key);
    assert_eq!(cipher_key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut session_salt = [0u8; 14];
    kdf::derive(&key, &salt, Label::RtpSalt, &mut session_salt);
    assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0u8; 20];
    kdf::derive(&key, &salt, Label::RtpAuthentication, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

/// RFC 3711 B.2: the AES-CM keystream for session key 2B7E…, salt F0F1…FD, SSRC 0 and
/// index 0 (IV F0F1…FD0000): the first three blocks and the last three of the table
/// (counters FEFF, FF00, FF01), which also prove the 16-bit block counter carries.
#[test]
fn aes_cm_keystream_matches_rfc3711_b2() {
    let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let cm = CmCipher::from_session_keys(&key, &[0; 20], salt);
    let mut stream = vec![0u8; 0xff02 * 16];
    cm.apply_keystream(0, 0, &mut stream);
    assert_eq!(
        stream[..48].to_vec(),
        hex("E03EAD0935C95E80E166B16DD92B4EB4
             D23513162B02D0F72A43A2FE4A5F97AB
             41E95B3BB0A2E8DD477901E4FCA894C0")
    );
    assert_eq!(
        stream[0xfeff * 16..].to_vec(),
        hex("EC8CDF7398607CB0F2D21675EA9EA1E4
             362B7C3C6773516318A077D7FC5073AE
             6A2CC3787889374FBEB4C81B17BA6C44")
    );
}

// ---------------------------------------------------------------------------------------
// RFC 7714 §16–§17 (AEAD_AES_128_GCM, session key 0001…0f and salt "Quid pro quo" given
// directly, no KDF)
// ---------------------------------------------------------------------------------------

fn rfc7714_ciphers() -> Ciphers {
    let key: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
    let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
    Ciphers::Gcm {
        rtp: GcmCipher::from_session_keys(&key, salt),
        rtcp: GcmCipher::from_session_keys(&key, salt),
    }
}

fn rfc7714_sender() -> SrtpSender {
    SrtpSender {
        ciphers: rfc7714_ciphers(),
        streams: SsrcTable::new(),
    }
}

fn rfc7714_receiver() -> SrtpReceiver {
    SrtpReceiver {
        ciphers: rfc7714_ciphers(),
        rtp: SsrcTable::new(),
        rtcp: SsrcTable::new(),
    }
}

const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                           20646976 69736120 696e2070 61727465 73207472 6573";
const RFC7714_SRTP: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
                            be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
                            6a9152cf 765ee439 0cce";
const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                            4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
const RFC7714_SRTCP: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
                             6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458
                             96cf4d2f c5abf872 45d9eade 800005d4";
const RFC7714_SRTCP_UNENCRYPTED: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
                             0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef
                             841dd968 3dd78ec9 2ae58790 125f62b3 000005d4";

/// RFC 7714 §16.1.1 (encryption) and §16.1.2 (decryption): SSRC 5501a0b2, seq f17b,
/// ROC 0, gathered from a header and two payload slices; byte for byte.
#[test]
fn gcm_rtp_matches_rfc7714_16_1() {
    let plain = hex(RFC7714_RTP);
    let want = hex(RFC7714_SRTP);
    let mut out = [0u8; 128];
    let (header, payload) = plain.split_at(12);
    let (a, b) = payload.split_at(5);
    let n = rfc7714_sender()
        .protect_rtp(header, &[a, b], &mut out)
        .unwrap();
    assert_eq!(out[..n].to_vec(), want);

    let mut rx = rfc7714_receiver();
    let mut buf = want.clone();
    let n = rx.unprotect_rtp(&mut buf).unwrap();
    assert_eq!(buf[..n].to_vec(), plain);
    // The same packet again is a replay.
    let mut again = want;
    assert_eq!(
        rx.unprotect_rtp(&mut again),
        Err(SrtpError::Replay { index: 0xf17b })
    );
}

/// RFC 7714 §17.1: SRTCP encryption with SRTCP index 0x5d4 (E flag set), byte for byte,
/// and its decryption.
#[test]
fn gcm_rtcp_matches_rfc7714_17_1() {
    let plain = hex(RFC7714_RTCP);
    let want = hex(RFC7714_SRTCP);
    let mut tx = rfc7714_sender();
    tx.set_next_rtcp_index(0x4d61_7273, 0x5d4);
    let mut out = [0u8; 128];
    let n = tx.protect_rtcp(&plain, &mut out).unwrap();
    assert_eq!(out[..n].to_vec(), want);

    let mut buf = want;
    let n = rfc7714_receiver().unprotect_rtcp(&mut buf).unwrap();
    assert_eq!(buf[..n].to_vec(), plain);
}

/// RFC 7714 §17.3: SRTCP authenticated but not encrypted (E flag clear) verifies, and a
/// flipped payload bit does not.
#[test]
fn gcm_unencrypted_rtcp_matches_rfc7714_17_3() {
    let plain = hex(RFC7714_RTCP);
    let mut buf = hex(RFC7714_SRTCP_UNENCRYPTED);
    let n = rfc7714_receiver().unprotect_rtcp(&mut buf).unwrap();
    assert_eq!(buf[..n].to_vec(), plain);

    let mut bad = hex(RFC7714_SRTCP_UNENCRYPTED);
    bad[20] ^= 1;
    assert_eq!(
        rfc7714_receiver().unprotect_rtcp(&mut bad),
        Err(SrtpError::BadTag)
    );
}

// ---------------------------------------------------------------------------------------
// Keying material, profiles
// ---------------------------------------------------------------------------------------

/// RFC 5764 §4.2 layout: client key, server key, client salt, server salt; the server
/// sends with the server half.
#[test]
fn keying_material_splits_per_rfc5764() {
    for profile in PROFILES {
        let (k, s) = (profile.master_key_len(), profile.master_salt_len());
        let exported: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        let (local, remote) = SrtpKeyingMaterial::split(profile, &exported, true).unwrap();
        assert_eq!(local.key().to_vec(), exported[k..2 * k].to_vec());
        assert_eq!(local.salt().to_vec(), exported[2 * k + s..].to_vec());
        assert_eq!(remote.key().to_vec(), exported[..k].to_vec());
        assert_eq!(remote.salt().to_vec(), exported[2 * k..2 * k + s].to_vec());
        let (client_local, _) = SrtpKeyingMaterial::split(profile, &exported, false).unwrap();
        assert_eq!(client_local.key, remote.key);
        assert!(matches!(
            SrtpKeyingMaterial::split(profile, &exported[1..], true),
            Err(SrtpError::KeyLength { .. })
        ));
    }
    assert_eq!(SrtpProfile::AeadAes128Gcm.keying_material_len(), 56);
    assert_eq!(SrtpProfile::AeadAes256Gcm.keying_material_len(), 88);
    assert_eq!(SrtpProfile::Aes128CmHmacSha1_80.keying_material_len(), 60);
}

#[test]
fn profile_ids_follow_rfc5764_and_rfc7714() {
    assert_eq!(SrtpProfile::Aes128CmHmacSha1_80.dtls_id(), 0x0001);
    assert_eq!(SrtpProfile::AeadAes128Gcm.dtls_id(), 0x0007);
    assert_eq!(SrtpProfile::AeadAes256Gcm.dtls_id(), 0x0008);
    assert_eq!(
        SrtpProfile::from_dtls_id(0x0008),
        Ok(SrtpProfile::AeadAes256Gcm)
    );
    for p in PROFILES {
        assert_eq!(SrtpProfile::from_dtls_id(p.dtls_id()), Ok(p));
    }
    assert_eq!(
        SrtpProfile::from_dtls_id(0x0002),
        Err(SrtpError::UnknownProfile(0x0002))
    );
    assert_eq!(SrtpProfile::Aes128CmHmacSha1_80.rtp_overhead(), 10);
    assert_eq!(SrtpProfile::Aes128CmHmacSha1_80.rtcp_overhead(), 14);
    assert_eq!(SrtpProfile::AeadAes128Gcm.rtp_overhead(), 16);
    assert_eq!(SrtpProfile::AeadAes128Gcm.rtcp_overhead(), 20);
}

// ---------------------------------------------------------------------------------------
// Round trips, rollover, refusals
// ---------------------------------------------------------------------------------------

/// Protect → unprotect across the 16-bit wrap (ROC 0 → 1) with two SSRCs interleaved and
/// a CSRC + header-extension header, both profiles; the ROC the receiver estimates must
/// match the sender's or the tag (which covers the ROC) fails.
#[test]
fn round_trip_over_sequence_wrap() {
    for profile in PROFILES {
        let (key, _, _) = master(profile, 7);
        let mut tx = SrtpSender::new(&key);
        let mut rx = SrtpReceiver::new(&key);
        let payload: Vec<u8> = (0..=255).collect();
        for i in 0..40u16 {
            let seq = 65520u16.wrapping_add(i);
            for ssrc in [0x1111_1111, 0x2222_2222] {
                // CC = 1, X = 1: one CSRC and a one-word extension.
                let mut header = vec![0x91, 96];
                header.extend_from_slice(&seq.to_be_bytes());
                header.extend_from_slice(&[0, 0, 0, 9]);
                header.extend_from_slice(&u32::to_be_bytes(ssrc));
                header.extend_from_slice(&[1, 2, 3, 4, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
                let mut out = [0u8; 400];
                let n = tx
                    .protect_rtp(&header, &[&payload[..7], &payload[7..]], &mut out)
                    .unwrap();
                assert_eq!(n, header.len() + payload.len() + profile.rtp_overhead());
                assert_eq!(out[..header.len()], header[..], "header goes in clear");
                assert_ne!(out[header.len()..header.len() + 16], payload[..16]);
                let len = rx.unprotect_rtp(&mut out[..n]).unwrap();
                assert_eq!(out[..header.len()], header[..]);
                assert_eq!(out[header.len()..len], payload[..], "{profile:?} seq {seq}");
            }
        }
        assert_eq!(rx.rtp.get(0x1111_1111).unwrap().seq.roc, 1);
        assert_eq!(tx.streams.get(0x2222_2222).unwrap().rtp.unwrap().roc, 1);
    }
}

/// A late packet from before the wrap (ROC 0) arriving after it (ROC 1) is decrypted with
/// ROC 0 (Appendix A's `ROC - 1` branch), and a packet after the wrap arriving first still
/// advances the ROC.
#[test]
fn reordered_packets_around_the_wrap_use_the_right_roc() {
    for profile in PROFILES {
        let (key, _, _) = master(profile, 9);
        let mut tx = SrtpSender::new(&key);
        let mut rx = SrtpReceiver::new(&key);
        let mut packets = Vec::new();
        for seq in [65533u16, 65534, 65535, 0, 1] {
            let mut out = vec![0u8; 64];
            let n = tx
                .protect_rtp(&rtp_header(seq, 5), &[b"payload"], &mut out)
                .unwrap();
            out.truncate(n);
            packets.push(out);
        }
        for i in [0usize, 3, 1, 4, 2] {
            let mut p = packets[i].clone();
            let n = rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(&p[12..n], b"payload", "{profile:?} packet {i}");
        }
    }
}

/// Every byte of a protected packet is covered: flipping any one fails the tag (or the
/// header parse); truncation is refused; replays and packets behind the window are refused.
#[test]
fn tampered_truncated_and_replayed_packets_are_refused() {
    for profile in PROFILES {
        let (key, _, _) = master(profile, 3);
        let mut tx = SrtpSender::new(&key);
        let mut out = [0u8; 128];
        let n = tx
            .protect_rtp(&rtp_header(100, 77), &[b"hello srtp"], &mut out)
            .unwrap();
        let good = out[..n].to_vec();
        for i in 0..n {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let got = SrtpReceiver::new(&key).unprotect_rtp(&mut bad);
            assert!(
                matches!(got, Err(SrtpError::BadTag | SrtpError::BadHeader)),
                "{profile:?} byte {i}: {got:?}"
            );
        }
        for cut in 0..n {
            let mut short = good[..cut].to_vec();
            assert!(SrtpReceiver::new(&key).unprotect_rtp(&mut short).is_err());
        }
        let mut rx = SrtpReceiver::new(&key);
        assert!(rx.unprotect_rtp(&mut good.clone()).is_ok());
        assert_eq!(
            rx.unprotect_rtp(&mut good.clone()),
            Err(SrtpError::Replay { index: 100 })
        );
        // 200 packets later, seq 100 is behind the 128-packet window even if never seen.
        let mut old = [0u8; 128];
        let old_n = tx
            .protect_rtp(&rtp_header(101, 77), &[b"late"], &mut old)
            .unwrap();
        for seq in 102..300 {
            let n = tx
                .protect_rtp(&rtp_header(seq, 77), &[b"x"], &mut out)
                .unwrap();
            rx.unprotect_rtp(&mut out[..n]).unwrap();
        }
        assert_eq!(
            rx.unprotect_rtp(&mut old[..old_n]),
            Err(SrtpError::Replay { index: 101 })
        );

        // SRTCP: replay refused, tamper refused, truncation refused.
        let rr = rtcp_rr(77, 0x42);
        let n = tx.protect_rtcp(&rr, &mut out).unwrap();
        let good = out[..n].to_vec();
        let mut rx = SrtpReceiver::new(&key);
        let mut p = good.clone();
        assert_eq!(rx.unprotect_rtcp(&mut p), Ok(rr.len()));
        assert_eq!(p[..rr.len()], rr[..]);
        assert_eq!(
            rx.unprotect_rtcp(&mut good.clone()),
            Err(SrtpError::Replay { index: 0 })
        );
        for i in 0..n {
            let mut bad = good.clone();
            bad[i] ^= 0x80;
            assert!(SrtpReceiver::new(&key).unprotect_rtcp(&mut bad).is_err());
        }
        for cut in 0..n {
            assert!(SrtpReceiver::new(&key)
                .unprotect_rtcp(&mut good[..cut].to_vec())
                .is_err());
        }
    }
}

/// A key for one profile does not open the other's packets, nor the other direction's.
#[test]
fn wrong_key_is_refused() {
    for profile in PROFILES {
        let (ours, _, _) = master(profile, 1);
        let (theirs, _, _) = master(profile, 2);
        let mut out = [0u8; 64];
        let n = SrtpSender::new(&ours)
            .protect_rtp(&rtp_header(1, 1), &[b"abc"], &mut out)
            .unwrap();
        assert_eq!(
            SrtpReceiver::new(&theirs).unprotect_rtp(&mut out[..n]),
            Err(SrtpError::BadTag)
        );
    }
}

/// The SSRC tables never grow: the ninth SSRC is refused by sender and receiver, and
/// packets with a bad tag do not take a receiver slot.
#[test]
fn ssrc_table_is_bounded() {
    let (key, _, _) = master(SrtpProfile::AeadAes128Gcm, 4);
    let mut tx = SrtpSender::new(&key);
    let mut rx = SrtpReceiver::new(&key);
    let mut out = [0u8; 64];
    for ssrc in 0..MAX_SSRCS as u32 {
        // A forged packet first: refused, and must not consume the slot.
        let mut forged = [0u8; 40];
        forged[..12].copy_from_slice(&rtp_header(1, 1000 + ssrc));
        assert_eq!(rx.unprotect_rtp(&mut forged), Err(SrtpError::BadTag));
        let n = tx
            .protect_rtp(&rtp_header(1, ssrc), &[b"a"], &mut out)
            .unwrap();
        rx.unprotect_rtp(&mut out[..n]).unwrap();
    }
    assert_eq!(
        tx.protect_rtp(&rtp_header(1, 99), &[b"a"], &mut out),
        Err(SrtpError::TooManySsrcs)
    );
    let mut other = SrtpSender::new(&key);
    let n = other
        .protect_rtp(&rtp_header(1, 99), &[b"a"], &mut out)
        .unwrap();
    assert_eq!(
        rx.unprotect_rtp(&mut out[..n]),
        Err(SrtpError::TooManySsrcs)
    );
}

/// Bad inputs to protect are errors, not panics.
#[test]
fn protect_refuses_bad_input() {
    let (key, _, _) = master(SrtpProfile::Aes128CmHmacSha1_80, 5);
    let mut tx = SrtpSender::new(&key);
    let mut out = [0u8; 32];
    assert!(matches!(
        tx.protect_rtp(&rtp_header(1, 1), &[&[0u8; 16]], &mut out),
        Err(SrtpError::BufferTooSmall {
            needed: 38,
            available: 32
        })
    ));
    assert_eq!(
        tx.protect_rtp(&[0x80, 96, 0, 1], &[], &mut out),
        Err(SrtpError::TooShort { len: 4 })
    );
    let mut v1 = rtp_header(1, 1);
    v1[0] = 0x40;
    assert_eq!(
        tx.protect_rtp(&v1, &[], &mut out),
        Err(SrtpError::BadHeader)
    );
    // CC = 15 CSRCs declared, none present.
    let mut cc = rtp_header(1, 1);
    cc[0] = 0x8f;
    assert_eq!(
        tx.protect_rtp(&cc, &[], &mut out),
        Err(SrtpError::BadHeader)
    );
    assert_eq!(
        tx.protect_rtcp(&[0x81, 201, 0], &mut out),
        Err(SrtpError::TooShort { len: 3 })
    );
}

// ---------------------------------------------------------------------------------------
// Independent implementation: webrtc-rs's webrtc-srtp
// ---------------------------------------------------------------------------------------

/// Our SRTP and SRTCP open with webrtc-srtp (its own KDF, ROC tracking and ciphers),
/// across the sequence wrap, with a header extension, both profiles.
#[test]
fn webrtc_srtp_unprotects_what_we_protect() {
    for profile in PROFILES {
        let (key, k, s) = master(profile, 0x31);
        let mut tx = SrtpSender::new(&key);
        let mut theirs = TheirContext::new(&k, &s, their_profile(profile), None, None).unwrap();
        let payload: Vec<u8> = (0..1200u32).map(|i| (i * 7) as u8).collect();
        for i in 0..20u16 {
            let seq = 65530u16.wrapping_add(i);
            let mut header = rtp_header(seq, 0xdead_beef).to_vec();
            if i % 2 == 1 {
                // X = 1 with a one-byte-header extension (RFC 8285), as browsers send.
                header[0] |= 0x10;
                header.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x22, 1, 2, 3]);
            }
            let mut out = [0u8; 1500];
            let n = tx
                .protect_rtp(
                    &header,
                    &[&payload[..2], &payload[2..600], &payload[600..]],
                    &mut out,
                )
                .unwrap();
            let plain = theirs.decrypt_rtp(&out[..n]).unwrap();
            assert_eq!(plain[..header.len()], header[..]);
            assert_eq!(plain[header.len()..], payload[..], "{profile:?} seq {seq}");
        }
        for fill in 0..5 {
            let rr = rtcp_rr(0xdead_beef, fill);
            let mut out = [0u8; 128];
            let n = tx.protect_rtcp(&rr, &mut out).unwrap();
            let plain = theirs.decrypt_rtcp(&out[..n]).unwrap();
            assert_eq!(plain[..], rr[..], "{profile:?} rtcp {fill}");
        }
    }
}

/// What webrtc-srtp protects, we unprotect: RTP across the wrap (our ROC estimation from
/// its packets) and SRTCP, both profiles.
#[test]
fn we_unprotect_what_webrtc_srtp_protects() {
    for profile in PROFILES {
        let (key, k, s) = master(profile, 0x52);
        let mut rx = SrtpReceiver::new(&key);
        let mut theirs = TheirContext::new(&k, &s, their_profile(profile), None, None).unwrap();
        for i in 0..20u16 {
            let seq = 65530u16.wrapping_add(i);
            let mut plain = rtp_header(seq, 0x0102_0304).to_vec();
            plain.extend((0..300u32).map(|j| (j as u8) ^ (i as u8)));
            let mut wire = theirs.encrypt_rtp(&plain).unwrap().to_vec();
            let n = rx.unprotect_rtp(&mut wire).unwrap();
            assert_eq!(wire[..n], plain[..], "{profile:?} seq {seq}");
        }
        assert_eq!(rx.rtp.get(0x0102_0304).unwrap().seq.roc, 1);
        for fill in 0..5 {
            let rr = rtcp_rr(0x0a0b_0c0d, fill);
            let mut wire = theirs.encrypt_rtcp(&rr).unwrap().to_vec();
            let n = rx.unprotect_rtcp(&mut wire).unwrap();
            assert_eq!(wire[..n], rr[..], "{profile:?} rtcp {fill}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Allocation, fuzz entry point
// ---------------------------------------------------------------------------------------

/// The packet paths allocate nothing: 2,000 RTP packets (over the wrap) and 200 RTCP
/// packets protected and unprotected per profile, with the thread's allocation count
/// unchanged (the crate's test allocator counts per thread; any `Vec` or `Box` on these
/// paths fails this).
#[test]
fn protect_and_unprotect_do_not_allocate() {
    for profile in PROFILES {
        let (key, _, _) = master(profile, 0x11);
        let mut tx = SrtpSender::new(&key);
        let mut rx = SrtpReceiver::new(&key);
        let payload = [0x33u8; 1200];
        let rr = rtcp_rr(9, 1);
        let mut out = [0u8; 1500];
        let mut header = rtp_header(64000, 9);
        // Warm up: the first packet of an SSRC takes its slot (no allocation either, but
        // keep the measured loop to the steady state the shard runs).
        let n = tx.protect_rtp(&header, &[&payload], &mut out).unwrap();
        rx.unprotect_rtp(&mut out[..n]).unwrap();
        let before = allocations_on_this_thread();
        for i in 1..2000u32 {
            let seq = (64000 + i) as u16;
            header[2..4].copy_from_slice(&seq.to_be_bytes());
            let n = tx
                .protect_rtp(
                    &header,
                    &[&payload[..1], &payload[1..500], &payload[500..]],
                    &mut out,
                )
                .unwrap();
            let _ = rx.unprotect_rtp(&mut out[..n]);
            if i % 10 == 0 {
                let n = tx.protect_rtcp(&rr, &mut out).unwrap();
                rx.unprotect_rtcp(&mut out[..n]).unwrap();
            }
        }
        assert_eq!(
            allocations_on_this_thread(),
            before,
            "{profile:?} allocated"
        );
    }
}

/// The counting allocator sees allocations on this thread (so the test above can fail).
#[test]
fn allocation_counter_counts() {
    let before = allocations_on_this_thread();
    let v = std::hint::black_box(vec![1u8; 10]);
    assert!(allocations_on_this_thread() > before);
    drop(v);
}

/// The fuzz entry point on pseudo-random inputs and on the committed seeds.
#[test]
fn fuzz_entry_survives_random_input_and_seeds() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..400usize {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fuzz_srtp_unprotect(&data);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/srtp_unprotect");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        fuzz_srtp_unprotect(&std::fs::read(entry.path()).unwrap());
        seeds += 1;
    }
    assert!(seeds > 0, "no srtp_unprotect seeds");
}

/// RFC 3711 Appendix A's three cases, and the refusals at the ends of the ROC space.
#[test]
fn roc_estimate_follows_rfc3711_appendix_a() {
    use super::replay::estimate_roc;
    assert_eq!(estimate_roc(5, 100, 200), Ok(5));
    assert_eq!(
        estimate_roc(5, 100, 65000),
        Ok(4),
        "late packet from before the wrap"
    );
    assert_eq!(
        estimate_roc(5, 65000, 10),
        Ok(6),
        "first packets after the wrap"
    );
    assert_eq!(estimate_roc(5, 40000, 20000), Ok(5));
    assert_eq!(
        estimate_roc(0, 100, 65000),
        Err(SrtpError::Replay { index: 65000 })
    );
    assert_eq!(
        estimate_roc(u32::MAX, 65000, 10),
        Err(SrtpError::IndexExhausted)
    );
}

/// The window keeps exactly 128 indexes: 127 behind the top is still accepted once, 128
/// behind is too old, and a jump past the window forgets everything below.
#[test]
fn replay_window_edges() {
    use super::replay::ReplayWindow;
    let mut w = ReplayWindow::default();
    w.accept(1000);
    assert!(w.check(1000 - 127).is_ok());
    w.accept(1000 - 127);
    assert_eq!(w.check(1000 - 127), Err(SrtpError::Replay { index: 873 }));
    assert_eq!(w.check(1000 - 128), Err(SrtpError::Replay { index: 872 }));
    assert!(w.check(999).is_ok());
    w.accept(5000);
    assert_eq!(w.check(1000), Err(SrtpError::Replay { index: 1000 }));
    assert!(w.check(4999).is_ok());
    assert_eq!(w.check(5000), Err(SrtpError::Replay { index: 5000 }));
}
