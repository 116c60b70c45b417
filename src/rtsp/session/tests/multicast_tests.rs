//! Multicast viewers through the core: SETUP answers the channel's group, PLAY and PAUSE
//! never reach a shard, a session is all multicast or all unicast, and the emitter's id is
//! never handed to a viewer.

use super::*;
use crate::live::{LiveChannel, StartPolicy};

const GROUP: &str = "239.255.0.1:5000";

/// A core with live channel `ch` (the sample in a loop) on [`GROUP`], TTL 3; the emitter's
/// shard and setup.
fn multicast_core(w: &mut World) -> (SessionCore, usize, Box<SessionSetup>) {
    let config = ServerConfig::from_overlay(ConfigOverlay {
        shards: Some(2),
        ..ConfigOverlay::default()
    })
    .unwrap();
    let library = MediaLibrary::bundled().unwrap();
    // The channel's own mapping of the file, as `serve --live ch=FILE` opens it.
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/sample.mp4");
    let media = Arc::new(MediaFile::open(std::path::Path::new(file), "ch").unwrap());
    let channel = LiveChannel::new("ch", media, 1200, StartPolicy::default()).unwrap();
    let channels = HashMap::from([("ch".to_owned(), Arc::new(channel))]);
    let mut core = SessionCore::new(
        config.session_settings(),
        Arc::new(library),
        channels,
        vec![(6970, 6971), (6972, 6973)],
        TokenKey::from_secret(SECRET),
    );
    let (shard, setup) = core
        .add_multicast("ch", GROUP.parse().unwrap(), 3, "cname".into(), &mut w.rng)
        .unwrap();
    (core, shard, setup)
}

fn ch(rest: &str) -> String {
    format!("rtsp://{LOCAL}/ch{rest}")
}

#[test]
fn the_emitter_sends_each_track_to_its_port_pair_of_the_group() {
    let mut w = World::new();
    let (core, shard, setup) = multicast_core(&mut w);
    assert!(shard < 2);
    assert!(setup.live.is_some(), "the channel's numbering");
    let channel = &core.channels()["ch"];
    for (k, t) in setup.tracks.iter().enumerate() {
        match t.dest {
            TrackDest::Udp { rtp, rtcp } => {
                assert_eq!(
                    rtp,
                    format!("239.255.0.1:{}", 5000 + 2 * k).parse().unwrap()
                );
                assert_eq!(
                    rtcp,
                    format!("239.255.0.1:{}", 5001 + 2 * k).parse().unwrap()
                );
            }
            ref other => panic!("track {k}: {other:?}"),
        }
        assert_eq!(t.ssrc, channel.tracks[k].ssrc, "the channel's SSRC");
    }
    assert!(
        core.id_in_use(setup.id),
        "no viewer may get the emitter's id"
    );
    let mut other = core_with(ConfigOverlay::default());
    assert_eq!(
        other
            .add_multicast("ch", GROUP.parse().unwrap(), 1, "c".into(), &mut w.rng)
            .err(),
        Some(MulticastError::NoChannel("ch".into()))
    );
}

#[test]
fn viewers_are_told_the_group_and_never_reach_a_shard() {
    let mut w = World::new();
    let (mut core, _, emitter) = multicast_core(&mut w);
    let who = caller(VIEWER, 1);
    let mut session = String::new();
    for k in 0..2 {
        let mut headers = vec![(
            "Transport",
            // What the client suggests about where and how far never moves the group.
            "RTP/AVP;multicast;destination=192.0.2.200;port=7000-7001;ttl=64",
        )];
        if !session.is_empty() {
            headers.push(("Session", session.as_str()));
        }
        let a = run(
            &mut core,
            &mut w,
            &request("SETUP", &ch(&format!("/trackID={k}")), &headers),
            &who,
        );
        assert_eq!(status(&a), 200);
        let ssrc = core.channels()["ch"].tracks[k].ssrc;
        assert_eq!(
            header(&a, "Transport").unwrap(),
            format!(
                "RTP/AVP;multicast;destination=239.255.0.1;port={}-{};ttl=3;ssrc={ssrc:08X};mode=\"PLAY\"",
                5000 + 2 * k,
                5001 + 2 * k
            )
        );
        session = header(&a, "Session")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert_ne!(session, format!("{:016X}", emitter.id));
    }
    // PLAY: answered at once, the viewer counted as multicast, no shard order.
    let play = match core.handle(
        &request("PLAY", &ch("/"), &[("Session", &session)]),
        &who,
        &mut w.env(),
    ) {
        Reply::Answer(a) => a,
        Reply::AskShard { .. } => panic!("a multicast PLAY asked a shard"),
    };
    assert_eq!(status(&play), 200);
    assert_eq!(header(&play, "Range"), Some("npt=now-"));
    assert_eq!(header(&play, "RTP-Info"), None);
    assert!(play.effects.iter().any(
        |e| matches!(e, Effect::SessionStarted(m) if m.transport == StatsTransport::Multicast)
    ));
    let no_shard = |a: &Answer| {
        !a.effects
            .iter()
            .chain(&a.after_response)
            .any(|e| matches!(e, Effect::Shard { .. }))
    };
    assert!(no_shard(&play));
    // PAUSE and PLAY again, then TEARDOWN: still nothing for a shard.
    for method in ["PAUSE", "PLAY", "TEARDOWN"] {
        let a = run(
            &mut core,
            &mut w,
            &request(method, &ch("/"), &[("Session", &session)]),
            &who,
        );
        assert_eq!(status(&a), 200, "{method}");
        assert!(no_shard(&a), "{method} gave a shard order");
    }
}

#[test]
fn a_session_is_all_multicast_or_all_unicast_and_files_have_no_group() {
    let mut w = World::new();
    let (mut core, _, _) = multicast_core(&mut w);
    let who = caller(VIEWER, 1);
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &ch("/trackID=0"),
            &[("Transport", "RTP/AVP;multicast")],
        ),
        &who,
    );
    assert_eq!(status(&a), 200);
    let session = header(&a, "Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let unicast = "RTP/AVP;unicast;client_port=40000-40001";
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &ch("/trackID=1"),
            &[("Transport", unicast), ("Session", &session)],
        ),
        &who,
    );
    assert_eq!(status(&a), 461, "a unicast track in a multicast session");
    // The other way round.
    let a = run(
        &mut core,
        &mut w,
        &request("SETUP", &ch("/trackID=0"), &[("Transport", unicast)]),
        &caller(OTHER, 2),
    );
    assert_eq!(status(&a), 200);
    let unicast_session = header(&a, "Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &ch("/trackID=1"),
            &[
                ("Transport", "RTP/AVP;multicast"),
                ("Session", &unicast_session),
            ],
        ),
        &caller(OTHER, 2),
    );
    assert_eq!(status(&a), 461, "a multicast track in a unicast session");
    // A stored file has no group; multicast over TCP makes no sense.
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &url("/trackID=0"),
            &[("Transport", "RTP/AVP;multicast")],
        ),
        &who,
    );
    assert_eq!(status(&a), 461);
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &ch("/trackID=0"),
            &[("Transport", "RTP/AVP/TCP;multicast")],
        ),
        &caller(VIEWER, 3),
    );
    assert_eq!(status(&a), 461);
}
