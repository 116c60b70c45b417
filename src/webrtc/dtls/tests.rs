//! `DtlsServer` against dimpl's own client on a fake clock (the independent peer, OpenSSL, is
//! in `tests/webrtc_dtls.rs`): retransmission, fingerprint refusal, framing checks.

use super::*;

#[test]
fn framing_check_refuses_truncated_and_foreign_records() {
    let mut rec = vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3];
    assert_eq!(check_record_framing(&rec), Ok(()));
    rec.extend_from_slice(&[21, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 5, 0, 2, 9, 9]);
    assert_eq!(check_record_framing(&rec), Ok(()));
    assert!(check_record_framing(&rec[..rec.len() - 1]).is_err());
    assert!(check_record_framing(&rec[..5]).is_err());
    assert!(check_record_framing(&[]).is_err());
    assert!(check_record_framing(&[24, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(check_record_framing(&[22, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(check_record_framing(&[22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]).is_err());
}
