use super::*;

use crate::wire::rtp::{RtpTimestamp, Ssrc};

fn info(
    ssrc: u32,
    ntp: NtpTime,
    rtp_timestamp: u32,
    packet_count: u32,
    octet_count: u32,
) -> SenderInfo {
    SenderInfo {
        ssrc: Ssrc(ssrc),
        ntp,
        rtp_timestamp: RtpTimestamp(rtp_timestamp),
        packet_count,
        octet_count,
    }
}

const NTP: NtpTime = NtpTime(0x1122_3344_5566_7788);

fn block(ssrc: u32) -> ReportBlock {
    ReportBlock {
        ssrc: Ssrc(ssrc),
        fraction_lost: 26,
        cumulative_lost: -3,
        highest_seq: 0x0001_0005,
        jitter: 900,
        lsr: 0x1234_5678,
        dlsr: 0x0001_8000,
    }
}

#[test]
fn receiver_report_round_trips_through_the_parser() {
    let block = block(0xABCD_0001);
    let mut out = [0u8; MAX_RTCP_COMPOUND];
    let n = write_receiver_report(&mut out, Ssrc(42), &[block], Some("bench"));
    let parsed = parse_compound(&out[..n]).unwrap();
    assert_eq!(
        parsed[0],
        RtcpPacket::ReceiverReport {
            ssrc: Ssrc(42),
            blocks: vec![block]
        }
    );
    assert!(
        matches!(&parsed[1], RtcpPacket::Sdes { chunks } if chunks[0].ssrc == Ssrc(42) && chunks[0].cname() == Some(&b"bench"[..]))
    );
    assert_eq!(parsed.len(), 2);
    assert_eq!(
        write_receiver_report(&mut out[..10], Ssrc(42), &[block], Some("bench")),
        0
    );
}

/// §6.4.2: an RR carries 0 to 31 blocks (the count field), alone or before an SDES; a BYE
/// packet appended after it names its sources (§6.6); what does not fit is not written.
#[test]
fn receiver_reports_with_any_block_count_and_a_bye_parse_back() {
    let mut out = vec![0u8; 1024];
    for count in [0usize, 1, 2, 7, MAX_RTCP_COUNT] {
        let blocks: Vec<ReportBlock> = (0..count as u32).map(block).collect();
        let n = write_receiver_report(&mut out, Ssrc(9), &blocks, None);
        assert_eq!(n, 8 + 24 * count);
        let m = write_bye_packet(&mut out[n..], &[Ssrc(9), Ssrc(10)]);
        assert_eq!(m, 12);
        assert_eq!(
            parse_compound(&out[..n + m]).unwrap(),
            vec![
                RtcpPacket::ReceiverReport {
                    ssrc: Ssrc(9),
                    blocks
                },
                RtcpPacket::Bye {
                    ssrcs: vec![Ssrc(9), Ssrc(10)]
                }
            ]
        );
    }
    let blocks: Vec<ReportBlock> = (0..32).map(block).collect();
    assert_eq!(write_receiver_report(&mut out, Ssrc(9), &blocks, None), 0);
    assert_eq!(write_bye_packet(&mut out, &[Ssrc(1); 32]), 0);
    assert_eq!(write_bye_packet(&mut out[..7], &[Ssrc(1)]), 0);
    // Seven blocks and the longest CNAME fill a MAX_RTCP_COMPOUND buffer.
    let cname = "x".repeat(MAX_CNAME_LEN);
    let mut small = [0u8; MAX_RTCP_COMPOUND];
    let blocks: Vec<ReportBlock> = (0..7).map(block).collect();
    assert!(write_receiver_report(&mut small, Ssrc(9), &blocks, Some(&cname)) > 0);
}

#[test]
fn sender_report_fields_at_offsets() {
    let mut buf = [0u8; MAX_RTCP_COMPOUND];
    let n = write_sender_report(
        &mut buf,
        &info(0xaabb_ccdd, NTP, 90_000, 10, 12_345),
        "host",
    );
    // SR: 28 bytes; SDES: 4 + 4 + 2 + 4 + 1 null = 15 -> 16.
    assert_eq!(n, 28 + 16);
    let b = &buf[..n];
    assert_eq!(&b[0..4], &[0x80, 200, 0, 6]);
    assert_eq!(&b[4..8], &[0xaa, 0xbb, 0xcc, 0xdd]);
    assert_eq!(&b[8..16], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    assert_eq!(&b[16..20], &90_000u32.to_be_bytes());
    assert_eq!(&b[20..24], &10u32.to_be_bytes());
    assert_eq!(&b[24..28], &12_345u32.to_be_bytes());
    assert_eq!(&b[28..32], &[0x81, 202, 0, 3]);
    assert_eq!(&b[32..36], &[0xaa, 0xbb, 0xcc, 0xdd]);
    assert_eq!(&b[36..44], &[1, 4, b'h', b'o', b's', b't', 0, 0]);

    let pkts = parse_compound(b).unwrap();
    assert_eq!(
        pkts[0],
        RtcpPacket::SenderReport {
            ssrc: Ssrc(0xaabb_ccdd),
            ntp: NTP,
            rtp_timestamp: RtpTimestamp(90_000),
            packet_count: 10,
            octet_count: 12_345,
            blocks: vec![],
        }
    );
    let RtcpPacket::Sdes { chunks } = &pkts[1] else {
        panic!("expected SDES, got {:?}", pkts[1]);
    };
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].ssrc, Ssrc(0xaabb_ccdd));
    assert_eq!(chunks[0].cname(), Some(&b"host"[..]));
    assert_eq!(pkts.len(), 2);
}

#[test]
fn bye_compound() {
    let mut buf = [0u8; MAX_RTCP_COMPOUND];
    let n = write_bye(&mut buf, &info(7, NTP, 1, 2, 3), "abc");
    // SDES: 4 + 4 + 2 + 3 + 1 = 14 -> 16.
    assert_eq!(n, 28 + 16 + 8);
    assert_eq!(&buf[44..52], &[0x81, 203, 0, 1, 0, 0, 0, 7]);
    let pkts = parse_compound(&buf[..n]).unwrap();
    assert_eq!(pkts.len(), 3);
    assert_eq!(
        pkts[2],
        RtcpPacket::Bye {
            ssrcs: vec![Ssrc(7)]
        }
    );
}

#[test]
fn cname_lengths_and_truncation() {
    for len in 0..100 {
        let cname = "x".repeat(len);
        let mut buf = [0u8; MAX_RTCP_COMPOUND];
        let n = write_bye(&mut buf, &info(1, NTP, 0, 0, 0), &cname);
        assert!(n > 0 && n.is_multiple_of(4));
        let pkts = parse_compound(&buf[..n]).unwrap();
        let RtcpPacket::Sdes { chunks } = &pkts[1] else {
            panic!()
        };
        assert_eq!(chunks[0].cname().unwrap().len(), len.min(MAX_CNAME_LEN));
    }
    // Multi-byte characters are cut at a char boundary.
    let cname = "é".repeat(40); // 80 bytes
    let mut buf = [0u8; MAX_RTCP_COMPOUND];
    let n = write_sender_report(&mut buf, &info(1, NTP, 0, 0, 0), &cname);
    let pkts = parse_compound(&buf[..n]).unwrap();
    let RtcpPacket::Sdes { chunks } = &pkts[1] else {
        panic!()
    };
    let got = chunks[0].cname().unwrap();
    assert_eq!(got.len(), 64);
    assert!(std::str::from_utf8(got).is_ok());
    // Too small a buffer writes nothing.
    assert_eq!(
        write_sender_report(&mut [0u8; 40], &info(1, NTP, 0, 0, 0), "abcd"),
        0
    );
    assert_eq!(write_bye(&mut [0u8; 44], &info(1, NTP, 0, 0, 0), "abcd"), 0);
}

fn rr_with_block() -> Vec<u8> {
    let mut b = vec![0x81, 201, 0, 7, 0, 0, 0, 0x42];
    b.extend_from_slice(&[0, 0, 0, 9]); // ssrc
    b.extend_from_slice(&[0x20, 0xff, 0xff, 0xfe]); // fraction 32, lost -2
    b.extend_from_slice(&[0, 1, 0, 5]);
    b.extend_from_slice(&[0, 0, 0, 33]);
    b.extend_from_slice(&[0x44, 0x55, 0x66, 0x77]);
    b.extend_from_slice(&[0, 1, 0, 0]);
    b
}

#[test]
fn receiver_report_and_app_and_unknown() {
    let mut b = rr_with_block();
    b.extend_from_slice(&[
        0x83, 204, 0, 3, 0, 0, 0, 1, b'n', b'a', b'm', b'e', 9, 9, 9, 9,
    ]);
    b.extend_from_slice(&[0x81, 207, 0, 0]);
    let pkts = parse_compound(&b).unwrap();
    assert_eq!(
        pkts[0],
        RtcpPacket::ReceiverReport {
            ssrc: Ssrc(0x42),
            blocks: vec![ReportBlock {
                ssrc: Ssrc(9),
                fraction_lost: 32,
                cumulative_lost: -2,
                highest_seq: 0x1_0005,
                jitter: 33,
                lsr: 0x4455_6677,
                dlsr: 0x1_0000,
            }],
        }
    );
    assert_eq!(
        pkts[1],
        RtcpPacket::App {
            subtype: 3,
            ssrc: Ssrc(1),
            name: *b"name",
            data: vec![9; 4]
        }
    );
    assert_eq!(pkts[2], RtcpPacket::Unknown { packet_type: 207 });
}

#[test]
fn validation_errors() {
    assert_eq!(parse_compound(&[]), Err(RtcpError::Truncated));
    assert_eq!(parse_compound(&[0x80, 201]), Err(RtcpError::Truncated));
    assert_eq!(
        parse_compound(&[0x40, 201, 0, 0]),
        Err(RtcpError::BadVersion)
    );
    assert_eq!(
        parse_compound(&[0x80, 202, 0, 0]),
        Err(RtcpError::FirstNotReport)
    );
    assert_eq!(
        parse_compound(&[0x80, 201, 0, 2, 0, 0, 0, 0]),
        Err(RtcpError::LengthOverrun)
    );
    // RR claims one block but has none.
    assert_eq!(
        parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 0]),
        Err(RtcpError::BodyTooShort)
    );
    // Padding on a non-last packet.
    let mut b = vec![0xa0, 201, 0, 1, 0, 0, 0, 4];
    b.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 0]);
    assert_eq!(parse_compound(&b), Err(RtcpError::PaddingNotLast));
    // Padding on the last packet is honoured; bad counts rejected.
    let mut b = vec![0x80, 201, 0, 1, 0, 0, 0, 0];
    b.extend_from_slice(&[0xa1, 203, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4]);
    assert_eq!(
        parse_compound(&b).unwrap()[1],
        RtcpPacket::Bye {
            ssrcs: vec![Ssrc(5)]
        }
    );
    let n = b.len();
    b[n - 1] = 0;
    assert_eq!(parse_compound(&b), Err(RtcpError::BadPadding));
    b[n - 1] = 9;
    assert_eq!(parse_compound(&b), Err(RtcpError::BadPadding));
    // SDES item running past its packet.
    let mut b = vec![0x80, 201, 0, 1, 0, 0, 0, 0];
    b.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b']);
    assert_eq!(parse_compound(&b), Err(RtcpError::BadSdes));
    // BYE reason longer than the packet.
    let mut b = vec![0x80, 201, 0, 1, 0, 0, 0, 0];
    b.extend_from_slice(&[0x81, 203, 0, 2, 0, 0, 0, 1, 5, b'a', b'b', b'c']);
    assert_eq!(parse_compound(&b), Err(RtcpError::BodyTooShort));
}

#[test]
fn visit_compound_shows_blocks_and_bye_and_rejects_what_parse_rejects() {
    let mut good = rr_with_block();
    good.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 0x42]);
    let mut seen = Vec::new();
    visit_compound(&good, |i| seen.push(i)).unwrap();
    let RtcpPacket::ReceiverReport { blocks, .. } = &parse_compound(&good).unwrap()[0] else {
        panic!("expected RR")
    };
    assert_eq!(
        seen,
        vec![
            RtcpItem::Report { ssrc: Ssrc(0x42) },
            RtcpItem::Block(blocks[0]),
            RtcpItem::Bye,
            RtcpItem::ByeSource(Ssrc(0x42))
        ]
    );
    assert_eq!(blocks[0].ssrc, Ssrc(9));
    // Every accepted and rejected example of the other tests, through both validators.
    let mut cases: Vec<Vec<u8>> = vec![
        good,
        vec![],
        vec![0x80, 201],
        vec![0x40, 201, 0, 0],
        vec![0x80, 202, 0, 0],
        vec![0x80, 201, 0, 2, 0, 0, 0, 0],
        vec![0x81, 201, 0, 1, 0, 0, 0, 0],
        vec![0xa0, 201, 0, 1, 0, 0, 0, 4, 0x80, 201, 0, 1, 0, 0, 0, 0],
        vec![
            0x80, 201, 0, 1, 0, 0, 0, 0, 0xa1, 203, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4,
        ],
        vec![
            0x80, 201, 0, 1, 0, 0, 0, 0, 0xa1, 203, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0,
        ],
        vec![
            0x80, 201, 0, 1, 0, 0, 0, 0, 0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b',
        ],
        vec![
            0x80, 201, 0, 1, 0, 0, 0, 0, 0x81, 203, 0, 2, 0, 0, 0, 1, 5, b'a', b'b', b'c',
        ],
        vec![0x80, 201, 0, 1, 0, 0, 0, 0, 0x80, 204, 0, 1, 0, 0, 0, 1],
    ];
    let mut buf = [0u8; MAX_RTCP_COMPOUND];
    let n = write_bye(&mut buf, &info(7, NTP, 1, 2, 3), "abc");
    cases.push(buf[..n].to_vec());
    let mut accepted = 0;
    for case in &cases {
        fuzz_rtcp(case);
        accepted += usize::from(visit_compound(case, |_| {}).is_ok());
    }
    assert_eq!(
        accepted, 3,
        "the good RR+BYE, the padded BYE and our own BYE compound"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any bytes: no panic, and `visit_compound` agrees with `parse_compound` (see
    /// [`fuzz_rtcp`]); with the first header made mostly valid, the body parsers are reached.
    #[test]
    fn garbage_never_panics_and_both_validators_agree(
        mut b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)
    ) {
        fuzz_rtcp(&b);
        let len = b.len();
        if len >= 4 {
            b[0] = 0x80 | (b[0] & 0x3f);
            b[1] = 200 + b[1] % 8;
            b[2] = 0;
            b[3] = (len / 4 - 1) as u8;
            fuzz_rtcp(&b[..len / 4 * 4]);
        }
    }
}

// Feedback packets written by aiortc 1.16 (an independent WebRTC stack, PyPI), with:
//   from aiortc.rtp import RtcpRtpfbPacket, RtcpPsfbPacket, RTCP_RTPFB_NACK, RTCP_PSFB_PLI
//   bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=0x11223344, media_ssrc=0xAABBCCDD,
//                         lost=[1000, 1001, 1005, 1016, 2000])).hex()
//   bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=0x11223344, media_ssrc=0xAABBCCDD)).hex()
const AIORTC_NACK: &str = "81cd000411223344aabbccdd03e8801107d00000";
const AIORTC_PLI: &str = "81ce000211223344aabbccdd";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn feedback_of(buf: &[u8]) -> Result<Vec<Feedback>, RtcpError> {
    let mut seen = Vec::new();
    visit_reduced_size(buf, |item| {
        if let RtcpItem::Feedback(f) = item {
            seen.push(f);
        }
    })?;
    Ok(seen)
}

#[test]
fn generic_nack_from_aiortc_names_the_lost_packets() {
    let nack = unhex(AIORTC_NACK);
    let seen = feedback_of(&nack).expect("valid reduced-size NACK");
    let media = Ssrc(0xAABB_CCDD);
    assert_eq!(
        seen,
        vec![
            Feedback::Nack {
                media,
                pid: 1000,
                blp: 0x8011
            },
            Feedback::Nack {
                media,
                pid: 2000,
                blp: 0
            },
        ]
    );
    let lost: Vec<u16> = seen
        .iter()
        .flat_map(|f| match *f {
            Feedback::Nack { pid, blp, .. } => nacked_sequences(pid, blp).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(lost, vec![1000, 1001, 1005, 1016, 2000]);
    // Our writer produces the same bytes.
    let mut out = [0u8; 64];
    let n = write_generic_nack(
        &mut out,
        Ssrc(0x1122_3344),
        media,
        &[(1000, 0x8011), (2000, 0)],
    );
    assert_eq!(&out[..n], &nack[..]);
    // A lone NACK is not a valid compound (RFC 3550 §6.1) without rtcp-rsize.
    assert_eq!(
        visit_compound(&nack, |_| {}),
        Err(RtcpError::FirstNotReport)
    );
}

#[test]
fn picture_loss_from_aiortc_and_ours_match() {
    let pli = unhex(AIORTC_PLI);
    assert_eq!(
        feedback_of(&pli).expect("valid PLI"),
        vec![Feedback::PictureLoss {
            media: Ssrc(0xAABB_CCDD)
        }]
    );
    let mut out = [0u8; 12];
    assert_eq!(
        write_picture_loss(&mut out, Ssrc(0x1122_3344), Ssrc(0xAABB_CCDD)),
        12
    );
    assert_eq!(&out[..], &pli[..]);
}

#[test]
fn full_intra_request_names_its_target_in_the_fci() {
    // RFC 5104 §4.3.1: header media SSRC 0, FCI = target SSRC, seq nr, 3 reserved bytes.
    let mut out = [0u8; 20];
    assert_eq!(
        write_full_intra_request(&mut out, Ssrc(1), Ssrc(0xCAFE), 7),
        20
    );
    assert_eq!(&out[..12], &[0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(
        feedback_of(&out).expect("valid FIR"),
        vec![Feedback::FullIntraRequest {
            media: Ssrc(0xCAFE),
            seq: 7
        }]
    );
}

#[test]
fn feedback_after_a_receiver_report_is_seen_in_a_compound() {
    let mut packet = test_packets::rr(Ssrc(9), &[(Ssrc(0xAABB_CCDD), 0, 0, 0, 0)]);
    packet.extend_from_slice(&unhex(AIORTC_PLI));
    let mut items = Vec::new();
    visit_compound(&packet, |item| items.push(item)).expect("valid compound");
    assert_eq!(
        items.last(),
        Some(&RtcpItem::Feedback(Feedback::PictureLoss {
            media: Ssrc(0xAABB_CCDD)
        }))
    );
}

#[test]
fn malformed_feedback_is_refused() {
    // NACK with no FCI entry; FCI not a multiple of 4; FIR FCI not a multiple of 8; a body
    // without the media SSRC.
    let nack = unhex(AIORTC_NACK);
    let mut empty = nack[..12].to_vec();
    empty[3] = 2;
    assert_eq!(feedback_of(&empty), Err(RtcpError::BodyTooShort));
    let mut fir = [0u8; 20];
    write_full_intra_request(&mut fir, Ssrc(1), Ssrc(2), 0);
    let mut short_fir = fir[..16].to_vec();
    short_fir[3] = 3;
    assert_eq!(feedback_of(&short_fir), Err(RtcpError::BodyTooShort));
    let headless = [0x81, 205, 0, 1, 0, 0, 0, 1];
    assert_eq!(feedback_of(&headless), Err(RtcpError::BodyTooShort));
    // Every truncation of a valid NACK is refused, never a panic.
    for n in 0..nack.len() {
        assert!(feedback_of(&nack[..n]).is_err(), "truncated at {n}");
    }
    // Unknown formats (transport-cc, REMB) are skipped, not refused.
    let mut twcc = nack.clone();
    twcc[0] = 0x8f;
    assert_eq!(feedback_of(&twcc), Ok(Vec::new()));
}
