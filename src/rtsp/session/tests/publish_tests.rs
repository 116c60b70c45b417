//! Publishing (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD) as ffmpeg's RTSP muxer and GStreamer's
//! rtspclientsink send it.

use super::*;

/// The SDP `ffmpeg -i sample.mp4 -c copy -f rtsp` announces (H.264 + AAC).
const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\nb=AS:500\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKA9sBEAAAMAAQAAAwA8DxYtlg==,aOvjyyLA; profile-level-id=64001E\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\na=control:streamid=1\r\n";

fn publishing_core() -> SessionCore {
    core_with(ConfigOverlay {
        publish: Some(vec!["live/*".into()]),
        ..ConfigOverlay::default()
    })
}

fn announce(sdp: &str, uri: &str) -> Request {
    let text = format!(
        "ANNOUNCE {uri} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    match parse_message(text.as_bytes(), &Limits::default()) {
        Ok(Some(Parsed::Request { request, .. })) => request,
        other => panic!("ANNOUNCE did not parse: {other:?}"),
    }
}

const CAM: &str = "rtsp://198.51.100.1:8554/live/cam1";

/// ANNOUNCE, SETUP of both tracks over TCP, RECORD: the session id and RECORD's answer.
fn publish(core: &mut SessionCore, w: &mut World, who: &Caller) -> (String, Answer) {
    let a = run(core, w, &announce(FFMPEG_SDP, CAM), who);
    assert_eq!(status(&a), 200, "{:?}", a.response);
    let setup = |n: usize, sid: Option<&str>| {
        let transport = format!(
            "RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
            2 * n,
            2 * n + 1
        );
        let mut h = vec![("Transport", transport)];
        if let Some(s) = sid {
            h.push(("Session", s.to_owned()));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request("SETUP", &format!("{CAM}/streamid={n}"), &h)
    };
    let a = run(core, w, &setup(0, None), who);
    assert_eq!(status(&a), 200, "{:?}", a.response);
    assert_eq!(
        a.response.headers.get("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record")
    );
    let sid = a
        .response
        .headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let a = run(core, w, &setup(1, Some(&sid)), who);
    assert_eq!(status(&a), 200, "{:?}", a.response);
    let a = run(
        core,
        w,
        &request("RECORD", CAM, &[("Session", &sid), ("Range", "npt=0.000-")]),
        who,
    );
    (sid, a)
}

#[test]
fn announce_setup_record_starts_ingest_with_both_tracks_on_their_channels() {
    let mut core = publishing_core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let (_, a) = publish(&mut core, &mut w, &who);
    assert_eq!(status(&a), 200, "{:?}", a.response);
    let [Effect::PublishStart(start)] = a.effects.as_slice() else {
        panic!("{:?}", a.effects)
    };
    assert_eq!(start.path, "live/cam1");
    assert_eq!(start.tracks.len(), 2);
    assert_eq!(
        start.tracks[1].1,
        IngestTransport::Interleaved {
            conn: 1,
            rtp_channel: 2,
            rtcp_channel: 3
        }
    );
    assert_eq!(start.tracks[0].0.codec.name(), "H.264");
    assert_eq!(start.tracks[1].0.codec.name(), "AAC");
    // Its connection closing ends the publisher.
    let effects = core.close_connection(&who, w.now);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::PublishStop { path, .. } if path == "live/cam1")),
        "{effects:?}"
    );
}

#[test]
fn one_publisher_per_path_and_nobody_else_may_end_it() {
    let mut core = publishing_core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let (sid, a) = publish(&mut core, &mut w, &who);
    assert_eq!(status(&a), 200);
    let other = caller(OTHER, 2);
    let a = run(&mut core, &mut w, &announce(FFMPEG_SDP, CAM), &other);
    assert_eq!(status(&a), 403, "a second publisher on the path");
    let a = run(
        &mut core,
        &mut w,
        &request("TEARDOWN", CAM, &[("Session", &sid)]),
        &other,
    );
    assert_eq!(status(&a), 454, "another client's TEARDOWN");
    assert!(a.effects.is_empty());
    let a = run(
        &mut core,
        &mut w,
        &request("TEARDOWN", CAM, &[("Session", &sid)]),
        &who,
    );
    assert_eq!(status(&a), 200);
    assert!(matches!(a.effects.as_slice(), [Effect::PublishStop { .. }]));
}

#[test]
fn publishing_is_refused_where_no_rule_allows_it_and_for_stored_stream_names() {
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let mut closed = core();
    let a = run(&mut closed, &mut w, &announce(FFMPEG_SDP, CAM), &who);
    assert_eq!(status(&a), 403, "no publish rule");
    let mut open = core_with(ConfigOverlay {
        publish: Some(vec!["*".into()]),
        ..ConfigOverlay::default()
    });
    let a = run(&mut open, &mut w, &announce(FFMPEG_SDP, &url("")), &who);
    assert_eq!(status(&a), 403, "the bundled sample's name");
}

#[test]
fn sdp_that_declares_nothing_we_carry_is_415_and_creates_nothing() {
    let mut core = publishing_core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let vp8 = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=control:streamid=0\r\n";
    let a = run(&mut core, &mut w, &announce(vp8, CAM), &who);
    assert_eq!(status(&a), 415, "{:?}", a.response);
    let a = run(&mut core, &mut w, &announce("not sdp", CAM), &who);
    assert_eq!(status(&a), 415);
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &format!("{CAM}/streamid=0"),
            &[(
                "Transport",
                "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            )],
        ),
        &who,
    );
    assert_eq!(status(&a), 455, "SETUP without an ANNOUNCE");
    assert!(core.publishers().is_empty());
}

/// GStreamer's `rtspclientsink` ANNOUNCE (tests/fixtures/ingest), its audio track made
/// a codec ingest skips.
fn gst_sdp_with_skipped_audio() -> String {
    include_str!("../../../../tests/fixtures/ingest/gst-1.22_announce.txt")
        .replace("MP4A-LATM/44100", "VP8/90000")
        .replace('\n', "\r\n")
}

/// A publisher sets up every announced track, carried or not (rtspclientsink gives up on
/// one failed SETUP): the skipped track's SETUP is 200 with a transport, and RECORD starts
/// ingest with the carried track only. Rows: transport, SETUP order (by `stream=N`), the
/// channels or client ports each SETUP asks, the statuses and answers expected.
#[test]
fn setup_of_a_skipped_track_is_answered_and_record_starts_the_carried_one() {
    struct Row {
        what: &'static str,
        setups: [(&'static str, &'static str, u16, &'static str); 2],
        record: u16,
    }
    let rows = [
        Row {
            what: "tcp, the skipped track first (the SDP's order)",
            setups: [
                (
                    "stream=1",
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"RECORD\"",
                    200,
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                ),
                (
                    "stream=0",
                    "RTP/AVP/TCP;unicast;interleaved=2-3;mode=\"RECORD\"",
                    200,
                    "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record",
                ),
            ],
            record: 200,
        },
        Row {
            what: "tcp, the carried track first",
            setups: [
                (
                    "stream=0",
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                    200,
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                ),
                (
                    "stream=1",
                    "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record",
                    200,
                    "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record",
                ),
            ],
            record: 200,
        },
        Row {
            what: "udp",
            setups: [
                (
                    "stream=1",
                    "RTP/AVP;unicast;client_port=6000-6001;mode=record",
                    200,
                    "RTP/AVP/UDP;unicast;client_port=6000-6001;server_port=7000-7001;mode=record",
                ),
                (
                    "stream=0",
                    "RTP/AVP;unicast;client_port=6002-6003;mode=record",
                    200,
                    "RTP/AVP/UDP;unicast;client_port=6002-6003;server_port=7000-7001;mode=record",
                ),
            ],
            record: 200,
        },
        Row {
            what: "the skipped track's channels are not given to another track",
            setups: [
                (
                    "stream=1",
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                    200,
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                ),
                (
                    "stream=0",
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                    461,
                    "",
                ),
            ],
            record: 455,
        },
    ];
    let sdp = gst_sdp_with_skipped_audio();
    for row in &rows {
        let mut core = publishing_core();
        core.set_ingest_ports(Some((7000, 7001)));
        let mut w = World::new();
        let who = caller(VIEWER, 1);
        let a = run(&mut core, &mut w, &announce(&sdp, CAM), &who);
        assert_eq!(status(&a), 200, "{}: {:?}", row.what, a.response);
        let mut sid: Option<String> = None;
        for (control, transport, want_status, want_transport) in row.setups {
            let mut h = vec![("Transport", transport.to_owned())];
            if let Some(s) = &sid {
                h.push(("Session", s.clone()));
            }
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let a = run(
                &mut core,
                &mut w,
                &request("SETUP", &format!("{CAM}/{control}"), &h),
                &who,
            );
            assert_eq!(
                status(&a),
                want_status,
                "{}: SETUP {control}: {:?}",
                row.what,
                a.response
            );
            if want_status == 200 {
                assert_eq!(
                    a.response.headers.get("Transport"),
                    Some(want_transport),
                    "{}: SETUP {control}",
                    row.what
                );
                let s = a.response.headers.get("Session").unwrap();
                sid = Some(s.split(';').next().unwrap().to_owned());
            }
        }
        let sid = sid.unwrap();
        let a = run(
            &mut core,
            &mut w,
            &request("RECORD", CAM, &[("Session", &sid)]),
            &who,
        );
        assert_eq!(
            status(&a),
            row.record,
            "{}: RECORD {:?}",
            row.what,
            a.response
        );
        if row.record != 200 {
            assert!(a.effects.is_empty(), "{}", row.what);
            continue;
        }
        let [Effect::PublishStart(start)] = a.effects.as_slice() else {
            panic!("{}: {:?}", row.what, a.effects)
        };
        assert_eq!(
            start.tracks.len(),
            1,
            "{}: only the carried track",
            row.what
        );
        assert_eq!(start.tracks[0].0.control, "stream=0");
        assert_eq!(start.tracks[0].0.codec.name(), "H.264");
        let (_, _, _, carried_transport) = row.setups.iter().find(|s| s.0 == "stream=0").unwrap();
        match &start.tracks[0].1 {
            IngestTransport::Interleaved { rtp_channel, .. } => assert!(
                carried_transport.contains(&format!("interleaved={rtp_channel}-")),
                "{}",
                row.what
            ),
            IngestTransport::Udp { rtp_from, .. } => assert!(
                carried_transport.contains(&format!("client_port={}-", rtp_from.port())),
                "{}",
                row.what
            ),
        }
    }
    // A control the ANNOUNCE did not offer is still 404.
    let mut core = publishing_core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    run(&mut core, &mut w, &announce(&sdp, CAM), &who);
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &format!("{CAM}/stream=7"),
            &[(
                "Transport",
                "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            )],
        ),
        &who,
    );
    assert_eq!(status(&a), 404, "{:?}", a.response);
}

#[test]
fn a_stream_key_or_a_listed_user_may_publish_and_viewers_may_not() {
    let rules = vec![AccessRule {
        streams: "live/cam1".into(),
        public: true,
        publish_key: Some("k3y".into()),
        ..Default::default()
    }];
    let mut core = core_with(ConfigOverlay {
        access: Some(rules),
        ..ConfigOverlay::default()
    });
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let a = run(&mut core, &mut w, &announce(FFMPEG_SDP, CAM), &who);
    assert_eq!(
        status(&a),
        403,
        "a public stream is public to play, not to publish"
    );
    let a = run(
        &mut core,
        &mut w,
        &announce(FFMPEG_SDP, &format!("{CAM}?key=wrong")),
        &who,
    );
    assert_eq!(status(&a), 403);
    let a = run(
        &mut core,
        &mut w,
        &announce(FFMPEG_SDP, &format!("{CAM}?key=k3y")),
        &who,
    );
    assert_eq!(status(&a), 200, "{:?}", a.response);
    // Its SETUPs on the same connection need no key again (ffmpeg drops the query)...
    let transport = [(
        "Transport",
        "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
    )];
    let a = run(
        &mut core,
        &mut w,
        &request("SETUP", &format!("{CAM}/streamid=0"), &transport),
        &who,
    );
    assert_eq!(status(&a), 200, "{:?}", a.response);
    // ...but another connection's do.
    let a = run(
        &mut core,
        &mut w,
        &request("SETUP", &format!("{CAM}/streamid=0"), &transport),
        &caller(OTHER, 2),
    );
    assert_eq!(status(&a), 403);
}

#[test]
fn a_session_names_its_own_stream_even_after_it_left_the_catalog() {
    use super::methods::own_stream_rest;
    let rest = |uri: &str, name: &str| own_stream_rest(uri, name);
    assert_eq!(rest(CAM, "live/cam1"), Some(vec![]));
    assert_eq!(
        rest(&format!("{CAM}/streamid=0"), "live/cam1"),
        Some(vec!["streamid=0".to_owned()])
    );
    assert_eq!(rest("rtsp://h/live/cam2", "live/cam1"), None);
    assert_eq!(rest("rtsp://h/live", "live/cam1"), None);
    assert_eq!(
        rest("rtsp://h/sample/trackID=1", "sample"),
        Some(vec!["trackID=1".to_owned()])
    );
    assert_eq!(rest("not a uri", "sample"), None);
}
