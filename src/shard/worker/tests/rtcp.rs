//! A shard reading its viewers' RTCP: receiver reports into the statistics, malformed and
//! foreign packets counted, floods capped per tick, BYE ending a session only when it names
//! an SSRC the viewer reported from.

use super::*;

/// An RR's block for our video SSRC arrives on the RTCP port, one for audio on the RTP
/// port (RFC 5761 demultiplexing): the next reports carry each once, with jitter in ms on
/// the track's clock and RTT from LSR/DLSR (RFC 3550 §6.4.1). A NAT keep-alive on either
/// port is liveness only. Fails if blocks are lost, attributed to the wrong track, converted
/// with the wrong clock, carried twice, or if RTT ignores LSR or DLSR.
#[test]
fn receiver_reports_reach_the_next_report_with_jitter_and_round_trip() {
    let mut r = rig(true, 16);
    let v = r.add_session(7, 0xA000_0000, Instant::now());
    // The viewer saw our SR 30 ms ago and held it 10 ms: RTT = 30 − 10 = 20 ms.
    let lsr = NtpTime::from_system_time(SystemTime::now() - Duration::from_millis(30)).middle32();
    let dlsr = 655; // 10 ms in 1/65536 s (9.995 ms)
    let video = rr(Ssrc(0x1234), &[(Ssrc(0xA000_0000), 64, 900, lsr, dlsr)]);
    v.rtcp.send_to(&video, r.server_rtcp).unwrap();
    let later = Instant::now() + Duration::from_secs(1000);
    r.drain_until(later, |c| get(&c.rtcp_received) == 1);
    assert!(
        v.activity.idle_for(later) < Duration::from_secs(1),
        "RTCP is liveness"
    );

    let report = r.report();
    assert_eq!(report.shard, 0);
    let got = receptions_of(&report, 7);
    assert_eq!(got.len(), 1, "{got:?}");
    let video = got[0];
    assert_eq!(video.track, 0);
    assert_eq!(video.fraction_lost, 64);
    assert_eq!(video.cumulative_lost, 17);
    assert_eq!(video.highest_seq, 1000);
    assert!(
        (video.jitter_ms - 10.0).abs() < 1e-9,
        "900 ticks at 90 kHz: {video:?}"
    );
    let rtt = video.rtt_ms.expect("LSR was set");
    assert!(
        (19.9..25.0).contains(&rtt),
        "RTT {rtt} ms, expected about 20"
    );

    // Audio block on the RTP port (muxed RTCP), then a NAT keep-alive there.
    let audio_rate = r.clock_rate(1);
    let audio = rr(
        Ssrc(0x1234),
        &[(Ssrc(0xA000_0001), 8, audio_rate / 100, 0, 0)],
    );
    v.rtp.send_to(&audio, r.server_rtp).unwrap();
    v.rtp
        .send_to(&[0xce, 0xfa, 0xed, 0xfe], r.server_rtp)
        .unwrap();
    r.drain_until(later, |c| get(&c.rtcp_received) == 2);
    let got = receptions_of(&r.report(), 7);
    assert_eq!(
        got.len(),
        1,
        "the video block went with the previous report: {got:?}"
    );
    assert_eq!(got[0].track, 1);
    assert!((got[0].jitter_ms - 10.0).abs() < 1e-9, "{:?}", got[0]);
    assert_eq!(got[0].rtt_ms, None, "no SR seen yet (LSR = 0)");
    assert!(receptions_of(&r.report(), 7).is_empty(), "nothing new");
    assert_eq!(
        get(&r.counters.rtcp_received),
        2,
        "the keep-alive is not RTCP"
    );
    assert_eq!(get(&r.counters.nat_keepalives), 1);
    assert_eq!(get(&r.counters.rtcp_invalid), 0);
    // GStreamer's dummy packet reaches the RTCP port too: a keep-alive there as well; on
    // the RTP port it also sends 200 random bytes, which may look like an RTCP type.
    v.rtcp
        .send_to(&[0xce, 0xfa, 0xed, 0xfe], r.server_rtcp)
        .unwrap();
    let mut random = [0x5au8; 200];
    random[..2].copy_from_slice(&[0x09, 0xc8]);
    v.rtp.send_to(&random, r.server_rtp).unwrap();
    r.drain_until(later, |c| get(&c.nat_keepalives) == 3);
    assert_eq!(get(&r.counters.rtcp_received), 2);
    assert_eq!(get(&r.counters.rtcp_invalid), 0);
    // One in 32 of those random bytes starts like RTCP (version 2, a type in 192..=223): from
    // the viewer's RTP port, what is no valid compound is a keep-alive too, not invalid RTCP.
    random[..2].copy_from_slice(&[0x8d, 0xc5]);
    v.rtp.send_to(&random, r.server_rtp).unwrap();
    r.drain_until(later, |c| get(&c.nat_keepalives) == 4);
    assert_eq!(get(&r.counters.rtcp_received), 2);
    assert_eq!(get(&r.counters.rtcp_invalid), 0);
}

/// Malformed RTCP (short, wrong version, length past the end, padding errors), blocks
/// naming another viewer's or an unknown SSRC, and RTCP from an unknown address are each
/// counted in their own counter and change no session's figures — every malformed packet
/// carries a block for the sender's own SSRC that would show if it were trusted.
#[test]
fn malformed_and_foreign_rtcp_is_counted_and_changes_nothing() {
    let mut r = rig(true, 16);
    let t0 = Instant::now();
    let a = r.add_session(7, 0xA000_0000, t0);
    let b = r.add_session(8, 0xB000_0000, t0);
    let own = rr(Ssrc(0x1234), &[(Ssrc(0xA000_0000), 200, 9000, 0, 0)]);
    let mut wrong_version = own.clone();
    wrong_version[0] = 0x41;
    let mut length_past_end = own.clone();
    length_past_end[3] += 1;
    let mut padding_not_last = own.clone();
    padding_not_last[0] |= 0x20;
    padding_not_last.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 1]);
    let mut padding_zero = own.clone();
    padding_zero[0] |= 0x20;
    padding_zero[3] += 1;
    padding_zero.extend_from_slice(&[0, 0, 0, 0]);
    let mut padding_too_long = padding_zero.clone();
    *padding_too_long.last_mut().unwrap() = 200;
    let malformed = [
        own[..3].to_vec(),
        own[..own.len() - 4].to_vec(),
        wrong_version,
        length_past_end,
        padding_not_last,
        padding_zero,
        padding_too_long,
    ];
    for m in &malformed {
        a.rtcp.send_to(m, r.server_rtcp).unwrap();
    }
    // Valid, but about b's video and an SSRC nobody has.
    let foreign = rr(
        Ssrc(0x1234),
        &[
            (Ssrc(0xB000_0000), 255, 1, 0, 0),
            (Ssrc(0xDEAD_BEEF), 255, 1, 0, 0),
        ],
    );
    a.rtcp.send_to(&foreign, r.server_rtcp).unwrap();
    // From an address that is no session's: a valid RR about a's and b's tracks, to both
    // ports, and a keep-alive.
    let stranger = bind();
    let about_both = rr(
        Ssrc(0x99),
        &[
            (Ssrc(0xA000_0000), 255, 1, 0, 0),
            (Ssrc(0xB000_0000), 255, 1, 0, 0),
        ],
    );
    stranger.send_to(&about_both, r.server_rtcp).unwrap();
    stranger.send_to(&about_both, r.server_rtp).unwrap();
    stranger
        .send_to(&[0xce, 0xfa, 0xed, 0xfe], r.server_rtp)
        .unwrap();
    let n = malformed.len() as u64;
    let later = Instant::now() + Duration::from_secs(1000);
    r.drain_until(later, |c| get(&c.rtcp_received) == n + 1 + 3);

    assert_eq!(get(&r.counters.rtcp_invalid), n);
    assert_eq!(get(&r.counters.rtcp_unknown_ssrc), 2);
    assert_eq!(get(&r.counters.rtcp_unknown_source), 3);
    assert_eq!(get(&r.counters.rtcp_byes), 0);
    let report = r.report();
    assert!(receptions_of(&report, 7).is_empty(), "{report:?}");
    assert!(receptions_of(&report, 8).is_empty(), "{report:?}");
    // Arrival from a's address is still liveness; nothing came from b's.
    assert!(a.activity.idle_for(later) < Duration::from_secs(1));
    assert!(b.activity.idle_for(later) > Duration::from_secs(999));
    drop(b);
}

/// A flood from one address is drained at most [`RTCP_DRAIN_PER_TICK`] datagrams per socket
/// and tick (the kernel drops the rest), and sending goes on between drains.
#[test]
fn an_rtcp_flood_is_capped_per_tick_and_sending_goes_on() {
    let mut r = rig(true, 16);
    let t0 = Instant::now();
    let a = r.add_session(7, 0xA000_0000, t0);
    let packet = rr(Ssrc(0x1234), &[(Ssrc(0xA000_0000), 1, 1, 0, 0)]);
    for _ in 0..10_000 {
        let _ = a.rtcp.send_to(&packet, r.server_rtcp);
    }
    let mut now = t0;
    for tick in 1..=3u64 {
        let packets_before = get(&r.counters.packets);
        now += Duration::from_millis(40);
        r.w.send_due(now);
        assert!(
            get(&r.counters.packets) > packets_before,
            "tick {tick}: media still flows"
        );
        r.w.drain_rtcp(now);
        assert_eq!(
            get(&r.counters.rtcp_received),
            tick * RTCP_DRAIN_PER_TICK as u64,
            "one batch per tick, however many are queued"
        );
    }
    assert_eq!(get(&r.counters.rtcp_invalid), 0);
}

/// A valid BYE ends the session (RFC 3550 §6.6) and tells the control thread; BYE-looking
/// packets that are not valid RTCP — one on the RTCP port, one on the RTP (NAT keep-alive)
/// port — end nothing. The other session is untouched.
#[test]
fn a_viewer_bye_ends_its_session_and_tells_the_control_thread() {
    let mut r = rig(true, 16);
    let t0 = Instant::now();
    let a = r.add_session(7, 0xA000_0000, t0);
    let _b = r.add_session(8, 0xB000_0000, t0);
    // BYE alone: a compound must start with SR or RR (RFC 3550 §6.1). Invalid RTCP on the
    // RTCP port; on the RTP port, from the viewer's RTP port, no valid compound is a
    // keep-alive (GStreamer's random ones look like this now and then).
    let bare_bye = [0x81, 203, 0, 1, 0, 0, 0x12, 0x34];
    a.rtcp.send_to(&bare_bye, r.server_rtcp).unwrap();
    a.rtp.send_to(&bare_bye, r.server_rtp).unwrap();
    let later = Instant::now() + Duration::from_secs(1000);
    r.drain_until(later, |c| {
        get(&c.rtcp_invalid) == 1 && get(&c.nat_keepalives) == 1
    });
    assert!(r.w.by_id.contains_key(&7), "an invalid BYE ends nothing");
    assert!(r.events.try_recv().is_err());

    // An RR about our video track first (as ffmpeg and GStreamer send), then a valid
    // RR + BYE from the same SSRC on the RTP port (where NAT keep-alives arrive).
    a.rtcp
        .send_to(
            &rr(Ssrc(0x1234), &[(Ssrc(0xA000_0000), 0, 0, 0, 0)]),
            r.server_rtcp,
        )
        .unwrap();
    r.drain_until(later, |c| get(&c.rtcp_received) == 2);
    let bye = with_bye(rr(Ssrc(0x1234), &[]), &[Ssrc(0x1234)]);
    a.rtp.send_to(&bye, r.server_rtp).unwrap();
    r.drain_until(later, |c| get(&c.rtcp_byes) == 1);
    assert_eq!(get(&r.counters.rtcp_byes_refused), 0);
    assert!(!r.w.by_id.contains_key(&7));
    assert!(r.w.by_id.contains_key(&8));
    assert_eq!(r.counters.sessions.load(Ordering::Relaxed), 1);
    match r.events.try_recv() {
        Ok(ShardEvent::SessionEnded { id, reason }) => {
            assert_eq!((id, reason), (7, EndReason::ClientBye));
        }
        other => panic!("expected SessionEnded, got {other:?}"),
    }
    // We answered with our own BYE on each track's RTCP path.
    let mut buf = [0u8; 512];
    let mut byes = 0;
    while let Ok(n) = a.rtcp.recv(&mut buf) {
        if let Ok(p) = parse_compound(&buf[..n]) {
            byes += usize::from(matches!(p.last(), Some(RtcpPacket::Bye { .. })));
        }
        if byes == 2 {
            break;
        }
    }
    assert_eq!(byes, 2, "a BYE per track");
    let report = r.report();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.sessions[0].id, 8);
}

/// Issue 13 item 6: a BYE from the viewer's address ends its session only if it names an
/// SSRC the viewer reported about our tracks from in an earlier datagram (RFC 3550 §6.6).
/// A BYE naming an unknown SSRC, or riding in the same compound as the first RR, is
/// counted and ignored, and the session keeps streaming.
#[test]
fn a_bye_must_name_an_ssrc_the_viewer_reported_from_earlier() {
    let mut r = rig(true, 16);
    let t0 = Instant::now();
    let a = r.add_session(7, 0xA000_0000, t0);
    let later = Instant::now() + Duration::from_secs(1000);
    // A spoofer knowing the viewer's address but nothing else.
    a.rtcp
        .send_to(
            &with_bye(rr(Ssrc(0x5555), &[]), &[Ssrc(0x5555)]),
            r.server_rtcp,
        )
        .unwrap();
    r.drain_until(later, |c| get(&c.rtcp_byes_refused) == 1);
    // The first RR about our SSRC and a BYE in one compound: the RR vouches for later
    // packets only.
    let first = with_bye(
        rr(Ssrc(0x1234), &[(Ssrc(0xA000_0001), 0, 0, 0, 0)]),
        &[Ssrc(0x1234)],
    );
    a.rtcp.send_to(&first, r.server_rtcp).unwrap();
    r.drain_until(later, |c| get(&c.rtcp_byes_refused) == 2);
    // Now the viewer's SSRC is known, but a BYE naming another one still ends nothing.
    a.rtcp
        .send_to(
            &with_bye(rr(Ssrc(0x5555), &[]), &[Ssrc(0x5555)]),
            r.server_rtcp,
        )
        .unwrap();
    r.drain_until(later, |c| get(&c.rtcp_byes_refused) == 3);
    assert_eq!(get(&r.counters.rtcp_byes), 0);
    assert!(r.w.by_id.contains_key(&7));
    assert!(r.events.try_recv().is_err());
    // The session still streams.
    let sent = get(&r.counters.packets);
    let mut now = t0;
    while now < t0 + Duration::from_millis(500) {
        now += Duration::from_millis(5);
        r.w.send_due(now);
    }
    assert!(get(&r.counters.packets) > sent);
    // The viewer's own BYE, from the SSRC it reported from earlier, ends it.
    a.rtcp
        .send_to(
            &with_bye(rr(Ssrc(0x1234), &[]), &[Ssrc(0x1234)]),
            r.server_rtcp,
        )
        .unwrap();
    r.drain_until(later, |c| get(&c.rtcp_byes) == 1);
    assert!(!r.w.by_id.contains_key(&7));
    assert_eq!(get(&r.counters.rtcp_byes_refused), 3);
}
