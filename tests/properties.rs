//! Property tests (proptest): what the server writes, its parsers read back unchanged
//! (RTSP requests, Transport, Range, RTP headers, RTCP SR), and the sequence/timestamp
//! arithmetic of live channels is consistent across 16-bit and 32-bit wrap-around.

use std::sync::Arc;

use proptest::prelude::*;
use shardcast::live::{LiveChannel, StartPolicy};
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::MediaFile;
use shardcast::rtsp::msg::Method;
use shardcast::rtsp::parse::{parse_message, Limits, Parsed};
use shardcast::rtsp::range::{format_npt_range, parse_range, NptTime};
use shardcast::rtsp::transport::{
    format_tcp_reply, format_udp_reply, parse_transport, LowerTransport,
};
use shardcast::wire::ntp::NtpTime;
use shardcast::wire::rtcp::{
    parse_compound, write_sender_report, RtcpPacket, SenderInfo, MAX_RTCP_COMPOUND,
};
use shardcast::wire::rtp::{parse_rtp_header, write_rtp_header, RtpTimestamp, SeqNum, Ssrc};

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Options),
        Just(Method::Describe),
        Just(Method::Setup),
        Just(Method::Play),
        Just(Method::Pause),
        Just(Method::Teardown),
        Just(Method::GetParameter),
    ]
}

proptest! {
    #[test]
    fn rtsp_request_round_trips_through_the_parser(
        m in method(),
        path in "[a-z0-9]{1,12}(/[a-z0-9]{1,12}){0,3}",
        cseq in 0u32..=u32::MAX,
        extra in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        split in 0usize..400,
    ) {
        let uri = format!("rtsp://127.0.0.1:8554/{path}");
        let mut text = format!("{} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n", m.as_str());
        let extra: Vec<(String, String)> = extra
            .into_iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("cseq") && !k.eq_ignore_ascii_case("content-length"))
            .map(|(k, v)| (k, v.trim().to_owned()))
            .collect();
        for (k, v) in &extra {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        let mut wire = text.into_bytes();
        wire.extend_from_slice(&body);
        // Any prefix is "need more", never an error or a wrong request.
        let cut = split.min(wire.len().saturating_sub(1));
        prop_assert!(matches!(parse_message(&wire[..cut], &Limits::default()), Ok(None)));
        let Ok(Some(Parsed::Request { request, consumed })) = parse_message(&wire, &Limits::default()) else {
            return Err(TestCaseError::fail("request did not parse"));
        };
        prop_assert_eq!(consumed, wire.len());
        prop_assert_eq!(request.method, m);
        prop_assert_eq!(&request.uri, &uri);
        prop_assert_eq!(request.cseq(), Some(cseq));
        prop_assert_eq!(&request.body, &body);
        for (k, v) in &extra {
            // Repeated names: the first occurrence wins in `header`.
            let first = extra.iter().find(|(k2, _)| k2.eq_ignore_ascii_case(k)).map(|(_, v2)| v2.as_str());
            prop_assert_eq!(request.header(k), first, "header {} (sent {:?})", k, v);
        }
    }

    #[test]
    fn transport_replies_parse_back(rtp in (1u16..u16::MAX).prop_map(|p| p & !1).prop_filter("nonzero", |p| *p > 0),
                                    server in (2u16..u16::MAX).prop_map(|p| p & !1),
                                    ch in (0u8..=254).prop_map(|c| c & !1),
                                    ssrc in any::<u32>()) {
        let udp = parse_transport(&format_udp_reply((rtp, rtp + 1), (server, server + 1), Ssrc(ssrc))).unwrap();
        prop_assert_eq!(&udp[0].lower, &LowerTransport::Udp);
        prop_assert_eq!(udp[0].client_port, Some((rtp, rtp + 1)));
        prop_assert_eq!(udp[0].ssrc, Some(Ssrc(ssrc)));
        let tcp = parse_transport(&format_tcp_reply((ch, ch + 1), Ssrc(ssrc))).unwrap();
        prop_assert_eq!(&tcp[0].lower, &LowerTransport::Tcp);
        prop_assert_eq!(tcp[0].interleaved, Some((ch, ch + 1)));
    }

    #[test]
    fn npt_ranges_parse_back_to_the_millisecond(start_ms in 0u64..100_000_000, len_ms in 0u64..100_000_000) {
        let start = start_ms as f64 / 1000.0;
        let end = (start_ms + len_ms) as f64 / 1000.0;
        let r = parse_range(&format_npt_range(start, Some(end))).unwrap();
        let NptTime::Seconds(s) = r.start else { return Err(TestCaseError::fail("start")) };
        prop_assert!((s - start).abs() < 0.0005);
        let Some(NptTime::Seconds(e)) = r.end else { return Err(TestCaseError::fail("end")) };
        prop_assert!((e - end).abs() < 0.0005);
    }

    #[test]
    fn rtp_headers_parse_back(pt in 0u8..128, marker in any::<bool>(), seq in any::<u16>(), ts in any::<u32>(), ssrc in any::<u32>()) {
        let mut h = [0u8; 12];
        write_rtp_header(&mut h, pt, marker, SeqNum(seq), RtpTimestamp(ts), Ssrc(ssrc));
        let p = parse_rtp_header(&h).unwrap();
        prop_assert_eq!((p.payload_type, p.marker, p.sequence_number, p.timestamp, p.ssrc), (pt, marker, seq, ts, ssrc));
    }

    #[test]
    fn sender_reports_validate_and_parse_back(ssrc in any::<u32>(), ntp in any::<u64>(), ts in any::<u32>(),
                                              packets in any::<u32>(), octets in any::<u32>(), cname in "[ -~]{0,80}") {
        let info = SenderInfo { ssrc: Ssrc(ssrc), ntp: NtpTime(ntp), rtp_timestamp: RtpTimestamp(ts), packet_count: packets, octet_count: octets };
        let mut buf = [0u8; MAX_RTCP_COMPOUND];
        let n = write_sender_report(&mut buf, &info, &cname);
        prop_assert!(n > 0 && n.is_multiple_of(4));
        let packets_parsed = parse_compound(&buf[..n]).unwrap();
        let RtcpPacket::SenderReport { ssrc: s, ntp: t, rtp_timestamp: r, packet_count: pc, octet_count: oc, .. } = &packets_parsed[0] else {
            return Err(TestCaseError::fail("first packet is not an SR"));
        };
        prop_assert_eq!((s.0, t.0, r.0, *pc, *oc), (ssrc, ntp, ts, packets, octets));
    }
}

/// Live channels number packets by formula; these properties hold for any loop count,
/// including loop counts that wrap the 16-bit sequence and 32-bit timestamp spaces many times.
mod live_wrap {
    use super::*;

    fn channel() -> LiveChannel {
        let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
        LiveChannel::new("live", media, 1200, StartPolicy::Delayed).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn sequence_and_timestamp_steps_are_the_same_in_every_loop(loop_index in 0u64..(1 << 40)) {
            let ch = channel();
            for t in &ch.tracks {
                let per_loop = t.packets_per_loop();
                // The first packet of the next loop follows the last one of this loop:
                // the step over a loop is exactly the packets in it, mod 2^16.
                let step = t.seq_of(loop_index, t.first_sample).distance(t.seq_of(loop_index + 1, t.first_sample));
                prop_assert_eq!(step, per_loop as u16);
                // Timestamps advance by the loop length per loop, mod 2^32.
                let dt = t.loop_offset_ticks(loop_index + 1).wrapping_sub(t.loop_offset_ticks(loop_index));
                prop_assert_eq!(dt, t.loop_ticks as u32);
            }
        }
    }
}
