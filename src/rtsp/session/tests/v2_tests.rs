//! RTSP 2.0 through the core (RFC 7826): the same decisions as 1.0, written in 2.0 form;
//! pipelined SETUPs join one session per connection; the end-of-stream `PLAY_NOTIFY` goes
//! to 2.0 sessions only, with the server's own CSeq sequence.

use super::*;

/// A request in RTSP 2.0 (the version is the only difference from [`request`]).
fn request2(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        version: Version::V2_0,
        ..request(method, uri, headers)
    }
}

#[test]
fn answers_keep_the_request_version_refusals_too() {
    let mut core = core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let a = run(&mut core, &mut w, &request2("OPTIONS", &url(""), &[]), &who);
    assert_eq!(a.response.version, Version::V2_0);
    assert_eq!(header(&a, "Supported"), Some(v2::SUPPORTED_TAGS));
    let a = run(&mut core, &mut w, &request("OPTIONS", &url(""), &[]), &who);
    assert_eq!(a.response.version, Version::V1_0);
    assert_eq!(header(&a, "Supported"), None);
    let a = run(
        &mut core,
        &mut w,
        &request2("DESCRIBE", &url("/nope"), &[]),
        &who,
    );
    assert_eq!((status(&a), a.response.version), (404, Version::V2_0));
    // 2.0 feature tags pass Require; anything else is 551 in both versions.
    let a = run(
        &mut core,
        &mut w,
        &request2("OPTIONS", &url(""), &[("Require", "play.basic")]),
        &who,
    );
    assert_eq!(status(&a), 200);
    for req in [
        request2("OPTIONS", &url(""), &[("Require", "setup.rtp.rtcp.mux")]),
        request("OPTIONS", &url(""), &[("Require", "play.basic")]),
    ] {
        assert_eq!(status(&run(&mut core, &mut w, &req, &who)), 551);
    }
}

#[test]
fn pipelined_setups_share_a_session_on_their_connection_only() {
    let mut core = core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let setup = |core: &mut SessionCore, w: &mut World, who: &Caller, track: usize| {
        let transport = format!(
            "RTP/AVP/TCP;unicast;interleaved={}-{}",
            2 * track,
            2 * track + 1
        );
        run(
            core,
            w,
            &request2(
                "SETUP",
                &url(&format!("/trackID={track}")),
                &[
                    ("Transport", &transport),
                    ("Pipelined-Requests", "937076692"),
                ],
            ),
            who,
        )
    };
    let a0 = setup(&mut core, &mut w, &who, 0);
    let a1 = setup(&mut core, &mut w, &who, 1);
    assert_eq!((status(&a0), status(&a1)), (200, 200));
    assert_eq!(header(&a0, "Session"), header(&a1, "Session"));
    assert_eq!(header(&a1, "Pipelined-Requests"), Some("937076692"));
    assert_eq!(header(&a0, "Accept-Ranges"), Some("npt"));
    assert_eq!(core.session_count(), 1);
    // The same id on another connection is another pipeline.
    let a2 = setup(&mut core, &mut w, &caller(VIEWER, 2), 0);
    assert_ne!(header(&a2, "Session"), header(&a0, "Session"));
    assert_eq!(core.session_count(), 2);
    // A PLAY of the pipeline without Session plays that session, in the 2.0 forms.
    let p = run(
        &mut core,
        &mut w,
        &request2("PLAY", &url("/"), &[("Pipelined-Requests", "937076692")]),
        &who,
    );
    assert_eq!(status(&p), 200, "{:?}", p.response);
    assert_eq!(header(&p, "Seek-Style"), Some("RAP"));
    let info = header(&p, "RTP-Info").unwrap();
    assert!(
        info.starts_with(&format!("url=\"{}trackID=0\" ssrc=", url("/")))
            && info.contains(":seq=1;rtptime=2"),
        "{info}"
    );
    // Hostile ids are 400 and create nothing.
    for bad in ["x", "99999999999", "1,2"] {
        let a = run(
            &mut core,
            &mut w,
            &request2(
                "SETUP",
                &url("/trackID=0"),
                &[
                    ("Transport", "RTP/AVP/TCP;unicast"),
                    ("Pipelined-Requests", bad),
                ],
            ),
            &who,
        );
        assert_eq!(status(&a), 400, "{bad}");
    }
    assert_eq!(core.session_count(), 2);
    // Closing the connection forgets its pipelines.
    let _ = core.close_connection(&who, w.now);
    assert!(core.pipelines.keys().all(|&(conn, _)| conn != 1));
}

#[test]
fn end_of_stream_notifies_2_0_sessions_only() {
    let mut core = core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let sid = set_up(&mut core, &mut w, &who);
    let id = parse_session_id(&sid).unwrap();
    let wall = SystemTime::UNIX_EPOCH;
    // Set up but not played: nothing.
    assert!(core.end_of_stream(id, &[(0, 9)], wall).is_none());
    let p = run(
        &mut core,
        &mut w,
        &request("PLAY", &url("/"), &[("Session", &sid)]),
        &who,
    );
    assert_eq!(status(&p), 200);
    assert!(
        core.end_of_stream(id, &[(0, 9)], wall).is_none(),
        "a 1.0 PLAY"
    );
    let p = run(
        &mut core,
        &mut w,
        &request2("PLAY", &url("/"), &[("Session", &sid)]),
        &who,
    );
    assert_eq!(status(&p), 200);
    for cseq in 1..=2 {
        let (conn, bytes) = core.end_of_stream(id, &[(0, 9), (1, 4)], wall).unwrap();
        assert_eq!(conn, 1);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(&format!(
                "PLAY_NOTIFY {} RTSP/2.0\r\nCSeq: {cseq}\r\n",
                url("/")
            )),
            "{text}"
        );
        assert!(text.contains(&format!("Session: {sid}\r\n")), "{text}");
        assert!(text.contains("Range: npt=0.000-10.000\r\n"), "{text}");
        assert!(
            text.contains(":seq=9,url=") && text.contains(":seq=4\r\n"),
            "{text}"
        );
    }
    // An unknown session: nothing.
    assert!(core.end_of_stream(id ^ 1, &[], wall).is_none());
}
