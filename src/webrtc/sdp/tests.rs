//! Offers recorded from real browsers (`tests/fixtures/webrtc/`, see its README) parsed,
//! negotiated and answered; the RFC 6184 profile rules on hand-made fmtp lines; every refusal
//! with its sentence; and bad input (truncated, oversized, not text) never panicking.

use super::*;

const CHROMIUM_WHEP: &str =
    include_str!("../../../tests/fixtures/webrtc/chromium-148_whep_offer.sdp");
const CHROMIUM_WHIP: &str =
    include_str!("../../../tests/fixtures/webrtc/chromium-148_whip_offer.sdp");
const FIREFOX: &str = include_str!("../../../tests/fixtures/webrtc/firefox-53_sendrecv_offer.sdp");

fn plid(s: &str) -> ProfileLevelId {
    ProfileLevelId::parse(s).unwrap()
}

fn h264(s: &str) -> SendTrack {
    SendTrack::H264 {
        profile_level_id: plid(s),
        parameter_sets: vec![vec![0x67, 0x42, 0xe0, 0x1f], vec![0x68, 0xce, 0x3c, 0x80]],
    }
}

fn params() -> AnswerParams<'static> {
    AnswerParams {
        ice_ufrag: "srv1",
        ice_pwd: "0123456789abcdefghijkl",
        fingerprint: "sha-256 AA:BB",
        candidate: "127.0.0.1:40000".parse().unwrap(),
        session_id: 42,
        cname: "shardcast",
        stream_id: "sample",
        send_ssrcs: &[0x1111_1111, 0x2222_2222],
        sprop_parameter_sets: true,
    }
}

fn accepted(n: &Negotiated) -> Vec<&AcceptedSection> {
    n.accepted().collect()
}

#[test]
fn chromium_whep_offer_parses() {
    let o = parse_offer(CHROMIUM_WHEP.as_bytes()).unwrap();
    assert_eq!(o.bundle, ["0", "1"]);
    assert_eq!(o.media.len(), 2);
    let (v, a) = (&o.media[0], &o.media[1]);
    assert_eq!(
        (v.kind.clone(), a.kind.clone()),
        (MediaKind::Video, MediaKind::Audio)
    );
    assert_eq!((v.mid.as_deref(), a.mid.as_deref()), (Some("0"), Some("1")));
    assert_eq!(v.direction, Direction::RecvOnly);
    assert!(v.rtcp_mux && v.rtcp_rsize && a.rtcp_mux);
    assert_eq!(v.protocol, "UDP/TLS/RTP/SAVPF");
    assert!(o.ice_ufrag_for(v).is_some_and(|u| u.len() >= 4));
    assert!(o.ice_pwd_for(v).is_some_and(|p| p.len() >= 22));
    assert!(o
        .fingerprint_for(v)
        .is_some_and(|f| f.starts_with("sha-256 ")));
    assert_eq!(o.setup_for(v), Some(Setup::ActPass));
    // Every format on the m= line is a codec, in m= order; rtpmap/fmtp/rtcp-fb attached.
    assert_eq!(v.codecs.len(), v.formats.len());
    assert_eq!(v.codecs[0].payload_type, 96);
    assert!(v.codecs[0].is("VP8"));
    assert_eq!(
        v.codecs[0].rtcp_fb,
        ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    );
    assert_eq!(v.codec(97).and_then(|c| c.rtx_apt()), Some(96));
    let h = v.codec(109).unwrap();
    assert!(h.is("H264") && h.clock_rate_hz == 90_000);
    assert_eq!(h.fmtp_param("profile-level-id"), Some("42e01f"));
    assert_eq!(h.fmtp_param("packetization-mode"), Some("1"));
    assert!(v
        .extmaps
        .iter()
        .any(|e| e.uri == "urn:ietf:params:rtp-hdrext:sdes:mid"));
    let opus = a.codec(111).unwrap();
    assert!(opus.is("opus") && opus.clock_rate_hz == 48_000 && opus.channels == Some(2));
    assert_eq!(opus.fmtp_param("useinbandfec"), Some("1"));
}

#[test]
fn chromium_whep_constrained_baseline_picks_the_first_cb_mode1_type() {
    let o = parse_offer(CHROMIUM_WHEP.as_bytes()).unwrap();
    let n = negotiate(&o, &[h264("42e01f"), SendTrack::Opus]).unwrap();
    assert!(n.warnings.is_empty());
    let acc = accepted(&n);
    assert_eq!(acc.len(), 2);
    // 103 is 42001f (Baseline, not Constrained Baseline): RFC 6184 §8.2.2 profiles differ.
    assert_eq!(acc[0].payload_type, 109);
    assert_eq!(acc[0].rtcp_fb, ["ccm fir", "nack", "nack pli"]);
    assert_eq!(acc[0].track, Some(0));
    assert_eq!(acc[1].payload_type, 111);
    assert!(acc[1].rtcp_fb.is_empty(), "transport-cc is dropped");
    assert_eq!(n.remote_ice_ufrag, o.media[0].ice_ufrag.clone().unwrap());
    assert_eq!(n.role, Role::Send);
}

#[test]
fn chromium_whep_other_profiles() {
    let o = parse_offer(CHROMIUM_WHEP.as_bytes()).unwrap();
    let pt = |s: &str| accepted(&negotiate(&o, &[h264(s)]).unwrap())[0].payload_type;
    assert_eq!(pt("42001f"), 103, "Baseline");
    assert_eq!(pt("42c01e"), 109, "42c0 is Constrained Baseline too");
    assert_eq!(
        pt("424015"),
        109,
        "4240 (constraint_set1 only) is Constrained Baseline"
    );
    assert_eq!(pt("4d001f"), 117, "Main");
    assert_eq!(
        pt("4d0033"),
        117,
        "a higher level, with level-asymmetry-allowed=1"
    );
    assert_eq!(pt("f4001f"), 41, "High 4:4:4 Predictive");
}

#[test]
fn high_profile_refused_when_not_offered_with_readable_reason() {
    // Debian's Chromium 148 offers no High (64xxxx) profile; the bundled sample is High.
    let o = parse_offer(CHROMIUM_WHEP.as_bytes()).unwrap();
    let e = negotiate(&o, &[h264("64001e"), SendTrack::Opus]).unwrap_err();
    assert!(matches!(e, NegotiationError::NoCompatibleH264 { .. }));
    let msg = e.to_string();
    assert!(msg.contains("64001e (High)"), "{msg}");
    assert!(msg.contains("42e01f packetization-mode=1"), "{msg}");
    assert!(msg.contains("42001f packetization-mode=0"), "{msg}");
    assert!(msg.contains("VP8, VP9"), "{msg}");
}

#[test]
fn level_asymmetry_and_level_1b() {
    let offer = |fmtp: &str| {
        let text = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE v\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=fingerprint:sha-256 AA\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:v\r\na=recvonly\r\n\
             a=rtcp-mux\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\n"
        );
        parse_offer(text.as_bytes()).unwrap()
    };
    let fits = |fmtp: &str, ours: &str| negotiate(&offer(fmtp), &[h264(ours)]).is_ok();
    let no_asym = "packetization-mode=1;profile-level-id=42e01f";
    assert!(fits(no_asym, "42e01f"));
    assert!(fits(no_asym, "42e01e"), "a lower level is always fine");
    assert!(
        !fits(no_asym, "42e020"),
        "3.2 > 3.1 without level-asymmetry-allowed"
    );
    assert!(fits(
        &format!("{no_asym};level-asymmetry-allowed=1"),
        "42e033"
    ));
    // Level 1b (level_idc 11 + constraint_set3 in Baseline) is above 1.0 and below 1.1.
    assert!(!fits(
        "packetization-mode=1;profile-level-id=42e00a",
        "42f00b"
    ));
    assert!(fits(
        "packetization-mode=1;profile-level-id=42e00b",
        "42f00b"
    ));
    // Mode 0 or no mode is not what the packetizer writes (FU-A needs mode 1, RFC 6184 §6.3).
    assert!(!fits("profile-level-id=42e01f", "42e01f"));
    assert!(!fits(
        "packetization-mode=0;profile-level-id=42e01f",
        "42e01f"
    ));
    // No profile-level-id means 42000a, Baseline level 1.0 (RFC 6184 §8.1).
    assert!(fits("packetization-mode=1", "42000a"));
    assert!(!fits("packetization-mode=1", "42e00a"));
}

#[test]
fn profile_table_follows_annex_a() {
    let p = |s: &str| plid(s).profile();
    assert_eq!(p("42e01f"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("42c01f"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("42401f"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("42001f"), Some(H264Profile::Baseline));
    assert_eq!(p("42801f"), Some(H264Profile::Baseline));
    assert_eq!(p("4d801f"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("4d001f"), Some(H264Profile::Main));
    assert_eq!(p("58c01f"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("58801f"), Some(H264Profile::Baseline));
    assert_eq!(p("58001f"), Some(H264Profile::Extended));
    assert_eq!(p("64001f"), Some(H264Profile::High));
    assert_eq!(p("640c1f"), Some(H264Profile::ConstrainedHigh));
    assert_eq!(p("f4001f"), Some(H264Profile::High444));
    assert_eq!(p("42e11f"), None, "reserved low bits set");
    assert_eq!(p("99001f"), None);
    assert_eq!(ProfileLevelId::parse("42E01F"), Some(plid("42e01f")));
    assert_eq!(ProfileLevelId::parse("42e01"), None);
    assert_eq!(ProfileLevelId::parse("42e0zz"), None);
    assert_eq!(ProfileLevelId::parse("é2e01"), None);
    assert_eq!(plid("42e01f").to_string(), "42e01f");
}

#[test]
fn send_track_from_avcc_uses_the_sps_bytes() {
    let cfg = crate::media::track::H264Config {
        profile_idc: 0x42,
        profile_compat: 0x00,
        level_idc: 0x1e,
        nal_length_size: 4,
        sps: vec![vec![0x67, 0x42, 0xc0, 0x1e, 0xd9]],
        pps: vec![vec![0x68, 0xcb]],
        width: 640,
        height: 360,
    };
    let SendTrack::H264 {
        profile_level_id,
        parameter_sets,
    } = SendTrack::h264(&cfg)
    else {
        panic!("video");
    };
    assert_eq!(profile_level_id, plid("42c01e"));
    assert_eq!(parameter_sets.len(), 2);
}

#[test]
fn chromium_whep_answer() {
    let o = parse_offer(CHROMIUM_WHEP.as_bytes()).unwrap();
    let n = negotiate(&o, &[h264("42e01f"), SendTrack::Opus]).unwrap();
    let a = write_answer(&o, &n, &params());
    assert_eq!(
        a.matches('\n').count(),
        a.matches("\r\n").count(),
        "CRLF only"
    );
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(
        &lines[..6],
        [
            "v=0",
            "o=- 42 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=ice-lite",
            "a=group:BUNDLE 0 1",
        ]
    );
    let m: Vec<&&str> = lines.iter().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m,
        [
            &"m=video 40000 UDP/TLS/RTP/SAVPF 109",
            &"m=audio 40000 UDP/TLS/RTP/SAVPF 111"
        ]
    );
    for want in [
        "a=mid:0",
        "a=mid:1",
        "a=setup:passive",
        "a=ice-ufrag:srv1",
        "a=ice-pwd:0123456789abcdefghijkl",
        "a=fingerprint:sha-256 AA:BB",
        "a=rtpmap:109 H264/90000",
        "a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f;sprop-parameter-sets=Z0LgHw==,aM48gA==",
        "a=rtcp-fb:109 nack pli",
        "a=rtcp-fb:109 ccm fir",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=msid:sample sample-video",
        "a=ssrc:286331153 cname:shardcast",
        "a=ssrc:572662306 cname:shardcast",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
        "c=IN IP4 127.0.0.1",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{a}");
    }
    assert_eq!(a.matches("a=sendonly").count(), 2);
    assert_eq!(a.matches("a=rtcp-mux").count(), 2);
    assert_eq!(a.matches("a=rtcp-rsize").count(), 2);
    assert_eq!(a.matches("a=candidate:").count(), 1);
    assert_eq!(a.matches("a=end-of-candidates").count(), 1);
    for absent in [
        "transport-cc",
        "goog-remb",
        "extmap",
        "rtx",
        "VP8",
        "actpass",
    ] {
        assert!(!a.contains(absent), "{absent} in\n{a}");
    }
    // The candidate comes in the first bundled section, before the second m= line.
    assert!(a.find("a=candidate").unwrap() < a.find("m=audio").unwrap());
}

#[test]
fn firefox_offer_session_level_fingerprint_and_audio_first() {
    let o = parse_offer(FIREFOX.as_bytes()).unwrap();
    assert!(o.fingerprint.is_some() && o.media[0].fingerprint.is_none());
    assert_eq!(o.bundle, ["sdparta_0", "sdparta_1"]);
    let n = negotiate(&o, &[h264("42e01f"), SendTrack::Opus]).unwrap();
    assert!(n.remote_fingerprint.starts_with("sha-256 C7:8B"));
    assert_eq!(n.remote_ice_ufrag, "0546e001");
    let acc = accepted(&n);
    // Sections keep the offer's order: audio first.
    assert_eq!(
        (acc[0].mid.as_str(), acc[0].payload_type),
        ("sdparta_0", 109)
    );
    assert_eq!(
        (acc[1].mid.as_str(), acc[1].payload_type),
        ("sdparta_1", 126)
    );
    assert_eq!(acc[1].rtcp_fb, ["nack", "nack pli", "ccm fir"]);
    assert!(!acc[1].rtcp_rsize);
    let a = write_answer(&o, &n, &params());
    assert!(a.contains("a=group:BUNDLE sdparta_0 sdparta_1\r\n"));
    assert!(!a.contains("a=rtcp-rsize"));
    assert!(a.find("m=audio").unwrap() < a.find("m=video").unwrap());
}

#[test]
fn chromium_whip_offer_is_received() {
    let o = parse_offer(CHROMIUM_WHIP.as_bytes()).unwrap();
    assert!(o.media.iter().all(|m| m.direction == Direction::SendOnly));
    let n = negotiate_publish(&o).unwrap();
    assert_eq!(n.role, Role::Receive);
    let acc = accepted(&n);
    assert_eq!(acc.len(), 2);
    let audio = acc.iter().find(|a| a.kind == MediaKind::Audio).unwrap();
    let video = acc.iter().find(|a| a.kind == MediaKind::Video).unwrap();
    assert_eq!(audio.payload_type, 111);
    // The offerer's first H.264 in mode 1.
    assert_eq!(video.payload_type, 103);
    assert_eq!(
        video.codec,
        ChosenCodec::H264 {
            profile_level_id: plid("42001f"),
            parameter_sets: vec![]
        }
    );
    // The video section announces a primary SSRC and its rtx pair (a=ssrc-group:FID).
    assert_eq!(video.remote_ssrcs.len(), 2);
    assert_eq!(audio.remote_ssrcs.len(), 1);
    let a = write_answer(&o, &n, &params());
    assert_eq!(a.matches("a=recvonly").count(), 2);
    assert!(!a.contains("a=ssrc:"), "a receiver announces no SSRC");
    // A WHEP negotiation of a publisher's offer has nowhere to send.
    assert_eq!(
        negotiate(&o, &[h264("42e01f")]).unwrap_err(),
        NegotiationError::NoVideoSection
    );
}

/// The WHEP offer with `from` replaced by `to` (every occurrence).
fn whep_with(from: &str, to: &str) -> Offer {
    let text = CHROMIUM_WHEP.replace(from, to);
    assert_ne!(text, CHROMIUM_WHEP, "{from} is in the fixture");
    parse_offer(text.as_bytes()).unwrap()
}

/// The WHEP offer without lines starting with `prefix`.
fn whep_without(prefix: &str) -> Offer {
    let text: String = CHROMIUM_WHEP
        .split_inclusive('\n')
        .filter(|l| !l.starts_with(prefix))
        .collect();
    assert_ne!(text, CHROMIUM_WHEP, "{prefix} is in the fixture");
    parse_offer(text.as_bytes()).unwrap()
}

#[test]
fn refusals_name_what_is_missing() {
    let tracks = [h264("42e01f"), SendTrack::Opus];
    let err = |o: Offer| negotiate(&o, &tracks).unwrap_err();
    assert_eq!(
        err(whep_without("a=group:BUNDLE")),
        NegotiationError::NoBundle { mid: "0".into() }
    );
    assert_eq!(
        err(whep_without("a=rtcp-mux")),
        NegotiationError::NoRtcpMux { mid: "0".into() }
    );
    assert_eq!(
        err(whep_without("a=ice-ufrag")),
        NegotiationError::NoIceCredentials
    );
    assert_eq!(
        err(whep_without("a=ice-pwd")),
        NegotiationError::NoIceCredentials
    );
    assert_eq!(
        err(whep_without("a=fingerprint")),
        NegotiationError::NoFingerprint
    );
    assert_eq!(
        err(whep_with("a=setup:actpass", "a=setup:passive")),
        NegotiationError::SetupConflict
    );
    assert_eq!(
        err(whep_without("a=mid")),
        NegotiationError::NoMid { section: 0 }
    );
    assert_eq!(
        err(whep_with("a=recvonly", "a=inactive")),
        NegotiationError::NoVideoSection
    );
    assert!(whep_with("a=setup:actpass", "a=setup:active").media.len() == 2);
    assert!(negotiate(&whep_with("a=setup:actpass", "a=setup:active"), &tracks).is_ok());
    assert_eq!(
        negotiate(&whep_without("a=group"), &[]).unwrap_err(),
        NegotiationError::NothingToSend
    );
    for e in [
        NegotiationError::NoBundle { mid: "0".into() },
        NegotiationError::NoIceCredentials,
        NegotiationError::SetupConflict,
    ] {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.ends_with('.'), "{s}");
    }
}

#[test]
fn missing_opus_sends_video_with_a_warning_or_refuses_audio_only() {
    let o = whep_with("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 speex/48000/2");
    let n = negotiate(&o, &[h264("42e01f"), SendTrack::Opus]).unwrap();
    assert_eq!(accepted(&n).len(), 1);
    assert_eq!(n.sections[1], SectionChoice::Rejected);
    assert!(
        matches!(&n.warnings[..], [NegotiationWarning::NoOpus { offered }] if offered.starts_with("speex"))
    );
    assert!(n.warnings[0].to_string().contains("without sound"));
    let a = write_answer(&o, &n, &params());
    assert!(a.contains("m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n"), "{a}");
    // The rejected format keeps its rtpmap (str0m refuses an answer without it).
    assert!(
        a.contains("a=inactive\r\na=rtpmap:111 speex/48000/2\r\n"),
        "{a}"
    );
    assert!(a.contains("a=group:BUNDLE 0\r\n"));
    assert!(matches!(
        negotiate(&o, &[SendTrack::Opus]).unwrap_err(),
        NegotiationError::NoOpus { .. }
    ));
    // No audio section at all.
    let video_only =
        parse_offer(CHROMIUM_WHEP.split("m=audio").next().unwrap().as_bytes()).unwrap();
    let n = negotiate(&video_only, &[h264("42e01f"), SendTrack::Opus]).unwrap();
    assert_eq!(n.warnings, [NegotiationWarning::NoAudioSection]);
    assert_eq!(
        negotiate(&video_only, &[SendTrack::Opus]).unwrap_err(),
        NegotiationError::NoAudioSection
    );
}

#[test]
fn lf_line_endings_parse_like_crlf() {
    let lf = CHROMIUM_WHEP.replace("\r\n", "\n");
    assert_eq!(
        parse_offer(lf.as_bytes()),
        parse_offer(CHROMIUM_WHEP.as_bytes())
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let base = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let parse = |extra: &str| parse_offer(format!("{base}{extra}").as_bytes());
    let malformed = |extra: &str| match parse(extra) {
        Err(OfferError::Malformed { line, reason }) => (line, reason),
        other => panic!("{extra:?} gave {other:?}"),
    };
    assert_eq!(malformed("m=video\r\n").0, 5);
    malformed("m=video 9\r\n");
    malformed("m=video 9 RTP/AVP\r\n");
    malformed("m=video 70000 RTP/AVP 96\r\n");
    malformed("m=video 9 RTP/AVP 200\r\n");
    malformed("m=video 9 RTP/AVP x\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=rtpmap:96\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=rtpmap:96 H264\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=rtpmap:96 H264/abc\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=rtpmap:300 H264/90000\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=fmtp:96\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=rtcp-fb:96\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=ssrc:x cname:y\r\n");
    malformed("m=video 9 RTP/AVP 96\r\na=extmap:x urn:a\r\n");
    malformed("a=setup:sideways\r\n");
    malformed("a=ice-ufrag:\r\n");
    malformed("garbage\r\n");
    malformed(" a=x\r\n");
    let (line, reason) = malformed("m=video 9 RTP/AVP 96\r\na=mid\r\n");
    assert_eq!((line, reason), (6, "a=mid is empty"));
    assert!(parse("m=video 9 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n").is_ok());

    assert_eq!(parse_offer(b""), Err(OfferError::NoVersion));
    assert_eq!(parse_offer(b"v=1\r\n"), Err(OfferError::NoVersion));
    assert_eq!(
        parse_offer(b"o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n"),
        Err(OfferError::NoVersion)
    );
    assert_eq!(
        parse_offer(b"v=0\r\n\xff\xfe\r\n"),
        Err(OfferError::NotText)
    );
    let huge = vec![b'a'; offer::MAX_OFFER_BYTES + 1];
    assert_eq!(
        parse_offer(&huge),
        Err(OfferError::TooLarge { bytes: huge.len() })
    );

    let seventeen = "m=audio 9 RTP/AVP 0\r\n".repeat(17);
    assert_eq!(parse(&seventeen), Err(OfferError::TooManyMediaSections));
    assert_eq!(
        parse(&"m=audio 9 RTP/AVP 0\r\n".repeat(16))
            .unwrap()
            .media
            .len(),
        16
    );
    let fmts: Vec<String> = (0..129).map(|i| (i % 128).to_string()).collect();
    assert_eq!(
        parse(&format!("m=video 9 RTP/AVP {}\r\n", fmts.join(" "))),
        Err(OfferError::TooManyPayloadTypes {
            section: 0,
            count: 129
        })
    );
    let fmts: Vec<String> = (0..128).map(|i| i.to_string()).collect();
    assert_eq!(
        parse(&format!("m=video 9 RTP/AVP {}\r\n", fmts.join(" ")))
            .unwrap()
            .media[0]
            .codecs
            .len(),
        128
    );
    // Display names the limit.
    assert!(OfferError::TooLarge { bytes: 70_000 }
        .to_string()
        .contains("65536"));
}

#[test]
fn every_truncation_of_the_fixtures_is_handled() {
    for text in [CHROMIUM_WHEP, CHROMIUM_WHIP, FIREFOX] {
        for end in 0..text.len() {
            fuzz_offer(&text.as_bytes()[..end]);
        }
    }
}

#[test]
fn pseudo_random_mutations_never_panic() {
    // A fixed xorshift so a failure reproduces; flips bytes, deletes and duplicates lines.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for text in [CHROMIUM_WHEP, CHROMIUM_WHIP, FIREFOX] {
        for _ in 0..300 {
            let mut bytes = text.as_bytes().to_vec();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % bytes.len();
                match next() % 4 {
                    0 => bytes[i] = next() as u8,
                    1 => bytes[i] = b" :=/;\r\n0"[(next() % 8) as usize],
                    2 => {
                        bytes.remove(i);
                    }
                    _ => {
                        let end = (i + (next() as usize % 200)).min(bytes.len());
                        let chunk = bytes[i..end].to_vec();
                        bytes.splice(i..i, chunk);
                    }
                }
            }
            fuzz_offer(&bytes);
        }
    }
}

#[test]
fn answer_over_ipv6_and_values_cannot_inject_lines() {
    let o = parse_offer(CHROMIUM_WHEP.as_bytes()).unwrap();
    let n = negotiate(&o, &[h264("42e01f"), h264("42e01f"), SendTrack::Opus]).unwrap();
    assert_eq!(
        accepted(&n).len(),
        2,
        "the second video track has no section"
    );
    let mut p = params();
    p.candidate = "[::1]:5000".parse().unwrap();
    p.cname = "evil\r\na=setup:active";
    p.sprop_parameter_sets = false;
    let a = write_answer(&o, &n, &p);
    assert!(a.contains("o=- 42 2 IN IP6 ::1\r\n"));
    assert!(a.contains("c=IN IP6 ::1\r\n"));
    assert!(a.contains("a=candidate:1 1 udp 2130706431 ::1 5000 typ host\r\n"));
    assert!(!a.lines().any(|l| l == "a=setup:active"), "{a}");
    assert!(!a.contains("sprop-parameter-sets"));
}
