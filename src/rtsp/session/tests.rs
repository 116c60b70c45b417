//! The session core as tables: every method in every RFC 2326 Appendix A state, the
//! refusals a strict or hostile client meets, every refusal's status, and the effects.
//! No sockets, no clock, no thread RNG: requests are parsed from text, time is passed in,
//! and the random source is seeded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::config::{ConfigOverlay, ServerConfig};
use crate::media::MediaLibrary;
use crate::rtsp::admission::{LimitsOverlay, Refused};
use crate::rtsp::parse::{parse_message, Limits, ParseErrorKind, Parsed};
use crate::shard::{PlayStarted, TrackStart};
use crate::token::TokenKey;
use crate::wire::rtp::{RtpTimestamp, SeqNum};

const VIEWER: &str = "192.0.2.10:40000";
const OTHER: &str = "192.0.2.99:40000";
const LOCAL: &str = "198.51.100.1:8554";
const SECRET: &str = "session-core-test-secret";

/// A core serving the bundled sample (two tracks) on two shards, with `overlay` applied.
fn core_with(overlay: ConfigOverlay) -> SessionCore {
    let config = ServerConfig::from_overlay(ConfigOverlay {
        shards: Some(2),
        ..overlay
    })
    .unwrap();
    let library = MediaLibrary::bundled().unwrap();
    SessionCore::new(
        config.session_settings(),
        Arc::new(library),
        HashMap::new(),
        vec![(6970, 6971), (6972, 6973)],
        TokenKey::from_secret(SECRET),
    )
}

fn core() -> SessionCore {
    core_with(ConfigOverlay::default())
}

/// A test's clock and random source.
struct World {
    now: Instant,
    rng: StdRng,
}

impl World {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            rng: StdRng::seed_from_u64(7),
        }
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            rng: &mut self.rng,
        }
    }
}

fn caller(peer: &str, conn: ConnId) -> Caller {
    Caller {
        conn,
        peer: peer.parse().unwrap(),
        local: LOCAL.parse().unwrap(),
        secure: false,
    }
}

/// A request parsed from its text (CRLFs added), with CSeq 1.
fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
    let mut text = format!("{method} {uri} RTSP/1.0\r\nCSeq: 1\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    match parse_message(text.as_bytes(), &Limits::default()) {
        Ok(Some(Parsed::Request { request, .. })) => request,
        other => panic!("{text:?} did not parse: {other:?}"),
    }
}

fn url(rest: &str) -> String {
    format!("rtsp://{LOCAL}/sample{rest}")
}

/// A shard's answer to PLAY: starts at 0, ends at 10 s, each track at seq 1, rtptime 2.
fn started(tracks: &[usize]) -> ShardReply {
    ShardReply::Play(PlayStarted {
        start_npt_secs: 0.0,
        end_npt_secs: 10.0,
        tracks: tracks
            .iter()
            .map(|&track_index| TrackStart {
                track_index,
                seq: SeqNum(1),
                rtptime: RtpTimestamp(2),
            })
            .collect(),
    })
}

/// Runs a request through the core; a question for a shard is answered with `shard`
/// (PLAY: [`started`]; PAUSE: position 3.5).
fn run(core: &mut SessionCore, w: &mut World, req: &Request, who: &Caller) -> Answer {
    match core.handle(req, who, &mut w.env()) {
        Reply::Answer(a) => a,
        Reply::AskShard { ask, pending } => {
            let reply = match ask {
                ShardAsk::Play { setup, .. } => {
                    let tracks: Vec<usize> = match &setup {
                        Some(s) => s.tracks.iter().map(|t| t.track_index).collect(),
                        None => vec![0, 1],
                    };
                    started(&tracks)
                }
                ShardAsk::Pause { .. } => ShardReply::Pause(3.5),
            };
            core.shard_answered(
                req,
                who,
                pending,
                ShardAnswer::Answered(reply),
                &mut w.env(),
            )
        }
    }
}

fn status(a: &Answer) -> u16 {
    a.response.status.code()
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.response.headers.get(name)
}

/// Sets up both tracks of the sample over UDP from `who`; the session id.
fn set_up(core: &mut SessionCore, w: &mut World, who: &Caller) -> String {
    let mut session: Option<String> = None;
    for track in 0..2 {
        let transport = format!(
            "RTP/AVP;unicast;client_port={}-{}",
            5000 + 2 * track,
            5001 + 2 * track
        );
        let mut headers = vec![("Transport", transport.as_str())];
        let sid = session.clone().unwrap_or_default();
        if session.is_some() {
            headers.push(("Session", &sid));
        }
        let a = run(
            core,
            w,
            &request("SETUP", &url(&format!("/trackID={track}")), &headers),
            who,
        );
        assert_eq!(status(&a), 200, "SETUP track {track}: {:?}", a.response);
        session = header(&a, "Session").map(|s| s[..16].to_owned());
    }
    session.unwrap()
}

/// The states of Appendix A a session can be driven to (Init = no session).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Init,
    Ready,
    Playing,
    Paused,
}

/// A core with one session from [`VIEWER`] in `start`; its id ("0000000000000001" for
/// Init, an id nobody has).
fn session_in(start: Start) -> (SessionCore, World, String) {
    let mut core = core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    if start == Start::Init {
        return (core, w, "0000000000000001".to_owned());
    }
    let sid = set_up(&mut core, &mut w, &who);
    if matches!(start, Start::Playing | Start::Paused) {
        let a = run(
            &mut core,
            &mut w,
            &request("PLAY", &url("/"), &[("Session", &sid)]),
            &who,
        );
        assert_eq!(status(&a), 200);
    }
    if start == Start::Paused {
        let a = run(
            &mut core,
            &mut w,
            &request("PAUSE", &url("/"), &[("Session", &sid)]),
            &who,
        );
        assert_eq!(status(&a), 200);
    }
    (core, w, sid)
}

fn state_of(core: &SessionCore, sid: &str) -> Option<SessionState> {
    core.sessions
        .get(&parse_session_id(sid).unwrap())
        .map(|r| r.state)
}

/// RFC 2326 Appendix A, as served: (state before, method, status, state after; `None` = no
/// session). Every method meets every state once.
#[test]
fn every_method_in_every_state() {
    use SessionState::{Paused, Playing, Ready};
    use Start as S;
    let table: &[(Start, &str, u16, Option<SessionState>)] = &[
        (S::Init, "OPTIONS", 200, None),
        (S::Init, "DESCRIBE", 200, None),
        (S::Init, "PLAY", 454, None),
        (S::Init, "PAUSE", 454, None),
        (S::Init, "TEARDOWN", 454, None),
        (S::Init, "GET_PARAMETER", 454, None),
        (S::Init, "SET_PARAMETER", 405, None),
        // Publishing is refused on a server without a publish rule (tests of publishing are
        // in `publish_tests`).
        (S::Init, "ANNOUNCE", 403, None),
        (S::Init, "RECORD", 403, None),
        (S::Init, "REDIRECT", 405, None),
        (S::Ready, "OPTIONS", 200, Some(Ready)),
        (S::Ready, "DESCRIBE", 200, Some(Ready)),
        (S::Ready, "SETUP", 200, Some(Ready)),
        (S::Ready, "PLAY", 200, Some(Playing)),
        (S::Ready, "PAUSE", 455, Some(Ready)),
        (S::Ready, "TEARDOWN", 200, None),
        (S::Ready, "GET_PARAMETER", 200, Some(Ready)),
        (S::Ready, "RECORD", 403, Some(Ready)),
        (S::Playing, "OPTIONS", 200, Some(Playing)),
        (S::Playing, "SETUP", 455, Some(Playing)),
        (S::Playing, "PLAY", 200, Some(Playing)),
        (S::Playing, "PAUSE", 200, Some(Paused)),
        (S::Playing, "TEARDOWN", 200, None),
        (S::Playing, "GET_PARAMETER", 200, Some(Playing)),
        (S::Playing, "RECORD", 403, Some(Playing)),
        (S::Paused, "OPTIONS", 200, Some(Paused)),
        (S::Paused, "SETUP", 455, Some(Paused)),
        (S::Paused, "PLAY", 200, Some(Playing)),
        (S::Paused, "PAUSE", 200, Some(Paused)),
        (S::Paused, "TEARDOWN", 200, None),
        (S::Paused, "GET_PARAMETER", 200, Some(Paused)),
        (S::Paused, "RECORD", 403, Some(Paused)),
    ];
    for &(start, method, want, after) in table {
        let (mut core, mut w, sid) = session_in(start);
        let who = caller(VIEWER, 1);
        let (uri, mut headers) = match method {
            "SETUP" => (
                url("/trackID=1"),
                vec![("Transport", "RTP/AVP;unicast;client_port=7000-7001")],
            ),
            "DESCRIBE" | "OPTIONS" => (url(""), vec![]),
            _ => (url("/"), vec![]),
        };
        headers.push(("Session", &sid));
        let a = run(&mut core, &mut w, &request(method, &uri, &headers), &who);
        assert_eq!(status(&a), want, "{method} in {start:?}: {:?}", a.response);
        if start != Start::Init {
            assert_eq!(
                state_of(&core, &sid),
                after,
                "{method} in {start:?}: state after"
            );
        }
        // Every answer echoes the CSeq and names the server (§12.17, §12.36).
        assert_eq!(header(&a, "CSeq"), Some("1"), "{method} in {start:?}");
        assert!(header(&a, "Server").is_some_and(|s| s.starts_with("shardcast/")));
    }
}

/// A request (method, URI, headers) and the status it must get.
type RequestCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);

/// Refusals a strict or hostile client meets, each with its status (no sockets needed, so
/// they are tested here rather than through a spawned server).
#[test]
fn refusals_of_the_request_line_uri_and_headers() {
    let who = caller(VIEWER, 1);
    let cases: &[RequestCase] = &[
        ("DESCRIBE", "rtsp://h/no-such-stream", &[], 404),
        ("DESCRIBE", "rtsp://h/../etc/passwd", &[], 400),
        ("DESCRIBE", "rtsp://h/%2e%2e/x", &[], 400),
        ("DESCRIBE", "rtsp://h/sample/trackID=0", &[], 404),
        ("DESCRIBE", "http://h/sample", &[], 400),
        (
            "DESCRIBE",
            "rtsp://h/sample",
            &[("Require", "funky-feature")],
            551,
        ),
        (
            "SETUP",
            "rtsp://h/sample/trackID=7",
            &[("Transport", "RTP/AVP;unicast;client_port=1-2")],
            404,
        ),
        (
            "SETUP",
            "rtsp://h/sample/trackID=0",
            &[("Transport", "RTP/SAVP;unicast")],
            461,
        ),
        (
            "SETUP",
            "rtsp://h/sample/trackID=0",
            // Recording is publishing, refused without a publish rule.
            &[("Transport", "RTP/AVP;unicast;client_port=1-2;mode=record")],
            403,
        ),
        (
            "PLAY",
            "rtsp://h/sample/",
            &[("Session", "not-a-session")],
            454,
        ),
        ("PLAY", "rtsp://h/sample/", &[], 454),
    ];
    for &(method, uri, headers, want) in cases {
        let mut core = core();
        let mut w = World::new();
        let a = run(&mut core, &mut w, &request(method, uri, headers), &who);
        assert_eq!(
            status(&a),
            want,
            "{method} {uri} {headers:?}: {:?}",
            a.response
        );
        assert_eq!(
            core.session_count(),
            0,
            "{method} {uri}: a refusal creates nothing"
        );
    }
    let mut core = core();
    assert!(core.refused_by_status().is_empty());
    let mut w = World::new();
    run(
        &mut core,
        &mut w,
        &request("DESCRIBE", "rtsp://h/nope", &[]),
        &who,
    );
    assert_eq!(
        core.refused_by_status(),
        vec![(404, 1)],
        "counted for /metrics"
    );
}

/// Session binding (docs/SECURITY.md): another address, or another user, gets 454 for every
/// method naming the session, exactly as for an unknown id; the owner's own requests work
/// from any connection.
#[test]
fn another_client_cannot_control_a_session() {
    for start in [Start::Ready, Start::Playing, Start::Paused] {
        let (mut core, mut w, sid) = session_in(start);
        let stranger = caller(OTHER, 2);
        for (method, extra) in [
            ("PLAY", Some(("Range", "npt=5-"))),
            ("PAUSE", None),
            ("TEARDOWN", None),
            ("GET_PARAMETER", None),
        ] {
            let mut headers = vec![("Session", sid.as_str())];
            headers.extend(extra);
            let a = run(
                &mut core,
                &mut w,
                &request(method, &url("/"), &headers),
                &stranger,
            );
            assert_eq!(
                status(&a),
                454,
                "{method} from another address in {start:?}"
            );
        }
        let a = run(
            &mut core,
            &mut w,
            &request(
                "SETUP",
                &url("/trackID=1"),
                &[
                    ("Session", &sid),
                    ("Transport", "RTP/AVP;unicast;client_port=9-10"),
                ],
            ),
            &stranger,
        );
        assert_eq!(status(&a), 454, "SETUP into another address's session");
        assert!(state_of(&core, &sid).is_some(), "the session survives");
        // The owner on a new connection (RFC 2326 §12.37).
        let a = run(
            &mut core,
            &mut w,
            &request("GET_PARAMETER", &url("/"), &[("Session", &sid)]),
            &caller(VIEWER, 9),
        );
        assert_eq!(status(&a), 200);
    }
}

fn basic(user_pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[test]
fn another_user_on_the_same_address_cannot_control_a_session() {
    let users = vec![
        crate::config::parse_user_flag("alice:alice-pw").unwrap(),
        crate::config::parse_user_flag("bob:bob-pw").unwrap(),
    ];
    let mut core = core_with(ConfigOverlay {
        users: Some(users),
        allow_basic: Some(true),
        ..ConfigOverlay::default()
    });
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let alice = basic("alice:alice-pw");
    let bob = basic("bob:bob-pw");
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &url("/trackID=0"),
            &[
                ("Authorization", &alice),
                ("Transport", "RTP/AVP;unicast;client_port=1-2"),
            ],
        ),
        &who,
    );
    assert_eq!(status(&a), 200);
    let sid = header(&a, "Session").unwrap()[..16].to_owned();
    let play = |auth: &str| {
        request(
            "PLAY",
            &url("/"),
            &[("Authorization", auth), ("Session", &sid)],
        )
    };
    assert_eq!(status(&run(&mut core, &mut w, &play(&bob), &who)), 454);
    let anonymous = request("TEARDOWN", &url("/"), &[("Session", &sid)]);
    let a = run(&mut core, &mut w, &anonymous, &who);
    assert_eq!(status(&a), 401);
    assert!(header(&a, "WWW-Authenticate").is_some());
    assert_eq!(status(&run(&mut core, &mut w, &play(&alice), &who)), 200);
}

/// Aggregate and track control URIs (§10.5, §11.3.8, §11.3.9), TEARDOWN of one track, and
/// interleaved channels already in use (461).
#[test]
fn aggregate_track_uris_and_interleaved_channels() {
    let (mut core, mut w, sid) = session_in(Start::Ready);
    let who = caller(VIEWER, 1);
    for method in ["PLAY", "TEARDOWN"] {
        let a = run(
            &mut core,
            &mut w,
            &request(method, &url("/trackID=0"), &[("Session", &sid)]),
            &who,
        );
        assert_eq!(
            status(&a),
            460,
            "{method} of one track of a two-track session"
        );
    }
    let a = run(
        &mut core,
        &mut w,
        &request("PLAY", "rtsp://h/other", &[("Session", &sid)]),
        &who,
    );
    assert_eq!(status(&a), 404, "a URI naming another stream");
    let a = run(
        &mut core,
        &mut w,
        &request("GET_PARAMETER", "*", &[("Session", &sid)]),
        &who,
    );
    assert_eq!(status(&a), 200, "`*` names no stream (§6.1)");

    let mut core = self::core();
    let mut w = World::new();
    let tcp = |track: usize, channels: &str| {
        request(
            "SETUP",
            &url(&format!("/trackID={track}")),
            &[(
                "Transport",
                &format!("RTP/AVP/TCP;unicast;interleaved={channels}"),
            )],
        )
    };
    let a = run(&mut core, &mut w, &tcp(0, "0-1"), &who);
    assert_eq!(status(&a), 200);
    let sid = header(&a, "Session").unwrap()[..16].to_owned();
    let mut same = tcp(1, "1-2");
    same.headers.insert("Session", sid.clone());
    assert_eq!(
        status(&run(&mut core, &mut w, &same, &who)),
        461,
        "channel 1 is taken"
    );
    let mut free = tcp(1, "2-3");
    free.headers.insert("Session", sid);
    assert_eq!(status(&run(&mut core, &mut w, &free, &who)), 200);
}

/// What PLAY, PAUSE and TEARDOWN ask of shards and the statistics hub.
#[test]
fn effects_of_play_pause_teardown_and_a_closed_connection() {
    let mut core = self::core();
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let sid = set_up(&mut core, &mut w, &who);
    let id = parse_session_id(&sid).unwrap();
    let play = request(
        "PLAY",
        &url("/"),
        &[("Session", &sid), ("Range", "npt=2-4"), ("Scale", "2")],
    );
    let Reply::AskShard { ask, pending } = core.handle(&play, &who, &mut w.env()) else {
        panic!("PLAY asks the shard");
    };
    let ShardAsk::Play {
        setup,
        start_npt_secs,
        end,
        sink_of,
        ..
    } = ask
    else {
        panic!("a Play question");
    };
    assert!(
        setup.is_some(),
        "the first PLAY carries the session's setup"
    );
    assert_eq!(
        (start_npt_secs, end, sink_of),
        (Some(2.0), PlayEnd::At(4.0), None)
    );
    let shard = pending.shard();
    let a = core.shard_answered(
        &play,
        &who,
        pending,
        ShardAnswer::Answered(started(&[0, 1])),
        &mut w.env(),
    );
    assert_eq!(status(&a), 200);
    assert_eq!(
        header(&a, "Scale"),
        Some("2"),
        "§12.34: the scale actually used (trick play: stored media with video)"
    );
    assert!(
        header(&a, "RTP-Info").is_some_and(|r| r.starts_with(&format!(
            "url=rtsp://{LOCAL}/sample/trackID=0;seq=1;rtptime=2"
        )))
    );
    assert!(matches!(a.effects.as_slice(), [Effect::SessionStarted(meta)] if meta.id == id));
    assert_eq!(
        a.after_response,
        vec![Effect::Shard {
            shard,
            order: ShardOrder::Start(id)
        }]
    );

    // A second PLAY neither registers again nor sends the setup again.
    let again = request("PLAY", &url("/"), &[("Session", &sid)]);
    let Reply::AskShard {
        ask: ShardAsk::Play { setup, .. },
        pending,
    } = core.handle(&again, &who, &mut w.env())
    else {
        panic!("PLAY asks the shard");
    };
    assert!(setup.is_none());
    let a = core.shard_answered(
        &again,
        &who,
        pending,
        ShardAnswer::Answered(started(&[0, 1])),
        &mut w.env(),
    );
    assert!(a.effects.is_empty());

    let a = run(
        &mut core,
        &mut w,
        &request("TEARDOWN", &url("/"), &[("Session", &sid)]),
        &who,
    );
    assert_eq!(
        a.effects,
        vec![
            Effect::SessionEnded(id),
            Effect::Shard {
                shard,
                order: ShardOrder::Teardown(id)
            }
        ]
    );

    // Interleaved sessions end with their connection.
    let a = run(
        &mut core,
        &mut w,
        &request(
            "SETUP",
            &url("/trackID=0"),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        ),
        &who,
    );
    let sid = header(&a, "Session").unwrap()[..16].to_owned();
    let id = parse_session_id(&sid).unwrap();
    assert_eq!(
        core.close_connection(&caller(VIEWER, 2), w.now),
        vec![],
        "another connection"
    );
    assert_eq!(
        core.close_connection(&who, w.now),
        vec![Effect::SessionEnded(id)]
    );
    assert_eq!(core.session_count(), 0);
}

/// A shard that is busy, silent or drops the question: 503 with Retry-After, or 500.
#[test]
fn missing_shard_answers_are_refusals() {
    for (answer, want, retry) in [
        (ShardAnswer::Busy, 503, true),
        (ShardAnswer::TimedOut, 503, true),
        (ShardAnswer::Dropped, 500, false),
    ] {
        let (mut core, mut w, sid) = session_in(Start::Ready);
        let who = caller(VIEWER, 1);
        let play = request("PLAY", &url("/"), &[("Session", &sid)]);
        let Reply::AskShard { pending, .. } = core.handle(&play, &who, &mut w.env()) else {
            panic!("PLAY asks the shard");
        };
        let a = core.shard_answered(&play, &who, pending, answer, &mut w.env());
        assert_eq!(status(&a), want);
        assert_eq!(header(&a, "Retry-After").is_some(), retry);
        assert_eq!(state_of(&core, &sid), Some(SessionState::Ready));
    }
}

/// Sessions bounded per address by default; a session never played ends after the setup
/// timeout, a played one after the session timeout only.
#[test]
fn default_limits_and_timeouts() {
    let mut core = core_with(ConfigOverlay {
        limits: Some(LimitsOverlay {
            max_viewers_per_ip: Some(3),
            ..LimitsOverlay::default()
        }),
        ..ConfigOverlay::default()
    });
    let mut w = World::new();
    let who = caller(VIEWER, 1);
    let setup = request(
        "SETUP",
        &url("/trackID=0"),
        &[("Transport", "RTP/AVP;unicast;client_port=1-2")],
    );
    let statuses: Vec<u16> = (0..4)
        .map(|_| status(&run(&mut core, &mut w, &setup, &who)))
        .collect();
    assert_eq!(statuses, [200, 200, 200, 503]);
    assert_eq!(
        status(&run(&mut core, &mut w, &setup, &caller(OTHER, 2))),
        200
    );

    let (mut core, mut w, played) = session_in(Start::Playing);
    let unplayed = set_up(&mut core, &mut w, &caller(VIEWER, 1));
    let setup_timeout = core.config().setup_timeout;
    assert!(
        core.expire(w.now + setup_timeout).is_empty(),
        "not before the timeout"
    );
    let ended = core.expire(w.now + setup_timeout + Duration::from_millis(1));
    assert_eq!(
        ended,
        vec![Effect::SessionEnded(parse_session_id(&unplayed).unwrap())]
    );
    assert!(state_of(&core, &played).is_some());
}

/// Every refusal and its status: the control plane's one table.
#[test]
fn every_refusal_has_its_status() {
    use crate::rtsp::range::{RangeError, RateError};
    use crate::rtsp::transport::TransportError;
    use crate::rtsp::uri::UriError;
    use crate::token::TokenError;
    let parse = |kind| {
        Refusal::Parse(crate::rtsp::parse::ParseError {
            kind,
            cseq: None,
            consumed: None,
        })
    };
    let table: Vec<(Refusal, u16)> = vec![
        (parse(ParseErrorKind::MalformedRequestLine), 400),
        (parse(ParseErrorKind::BadVersion), 505),
        (Refusal::Uri(UriError::Traversal), 400),
        (Refusal::NotFound("x".into()), 404),
        (Refusal::Unservable("x".into()), 404),
        (Refusal::OtherStream, 404),
        (Refusal::MethodNotAllowed, 405),
        (Refusal::OptionNotSupported("x".into()), 551),
        (
            Refusal::Unauthorized {
                why: "x",
                challenges: vec!["Digest x".into()],
            },
            401,
        ),
        (
            Refusal::Forbidden {
                user: "u".into(),
                stream: "s".into(),
            },
            403,
        ),
        (Refusal::TokenMissing, 401),
        (Refusal::TokenInvalid(TokenError::Expired(5)), 403),
        (
            Refusal::OverLimit(Refused {
                status: StatusCode::ServiceUnavailable,
                retry_after_secs: 5,
                why: "x".into(),
            }),
            503,
        ),
        (
            Refusal::OverLimit(Refused {
                status: StatusCode::NotEnoughBandwidth,
                retry_after_secs: 10,
                why: "x".into(),
            }),
            453,
        ),
        (Refusal::TransportMissing, 400),
        (
            Refusal::Transport {
                header: "x".into(),
                error: TransportError::Empty,
            },
            461,
        ),
        (Refusal::NoTransport("x".into()), 461),
        (Refusal::RecordNotSupported, 461),
        (Refusal::SessionNotFound("x"), 454),
        (Refusal::AggregateNotAllowed, 459),
        (Refusal::OnlyAggregate, 460),
        (Refusal::NotValidInState(SessionState::Ready), 455),
        (Refusal::Range(RangeError::Reversed), 457),
        (
            Refusal::Range(RangeError::UnsupportedUnit("smpte".into())),
            501,
        ),
        (
            Refusal::Rate {
                header: "Scale",
                error: RateError::Malformed,
            },
            400,
        ),
        (Refusal::RequestRate, 503),
        (Refusal::ShardBusy(0), 503),
        (
            Refusal::ShardTimeout {
                shard: 0,
                what: "PLAY",
            },
            503,
        ),
        (Refusal::ShardDropped(0), 500),
        (Refusal::RequestTimeout, 408),
    ];
    for (refusal, want) in &table {
        assert_eq!(refusal.status().code(), *want, "{refusal:?}");
        let headers = refusal.headers();
        let has = |name: &str| headers.iter().any(|(k, _)| *k == name);
        match want {
            503 | 453 => assert!(has("Retry-After"), "{refusal:?}"),
            401 => assert!(has("WWW-Authenticate"), "{refusal:?}"),
            405 => assert!(has("Allow"), "{refusal:?}"),
            551 => assert!(has("Unsupported"), "{refusal:?}"),
            _ => {}
        }
        assert_eq!(
            refusal.closes_connection(),
            has("Connection"),
            "{refusal:?}: Connection: close exactly when the connection ends"
        );
    }
}

/// Content-Base is our own address (or the configured public one), whatever authority the
/// request named.
#[test]
fn content_base_comes_from_our_address() {
    let mut core = self::core();
    let mut w = World::new();
    let a = run(
        &mut core,
        &mut w,
        &request("DESCRIBE", "rtsp://evil.example/sample", &[]),
        &caller(VIEWER, 1),
    );
    assert_eq!(
        header(&a, "Content-Base"),
        Some(format!("rtsp://{LOCAL}/sample/").as_str())
    );
    let mut core = core_with(ConfigOverlay {
        public_address: Some("cams.example.com".into()),
        ..ConfigOverlay::default()
    });
    let a = run(
        &mut core,
        &mut w,
        &request("DESCRIBE", "rtsp://evil.example/sample", &[]),
        &caller(VIEWER, 1),
    );
    assert_eq!(
        header(&a, "Content-Base"),
        Some("rtsp://cams.example.com/sample/")
    );
}

/// SETUP refusals (moved here from the spawned-server suite, which keeps one of each kind
/// to check the log line and the connection): none creates a session.
#[test]
fn setup_refusals() {
    let udp = "RTP/AVP;unicast;client_port=40000-40001";
    let cases: &[RequestCase] = &[
        (
            "SETUP",
            "rtsp://h/sample/trackID=9",
            &[("Transport", udp)],
            404,
        ),
        (
            "SETUP",
            "rtsp://h/sample/trackID=abc",
            &[("Transport", udp)],
            404,
        ),
        // §12.39 makes Transport mandatory: without it the request is incomplete (400, not
        // 461, which is for transports we do not support).
        ("SETUP", "rtsp://h/sample/trackID=0", &[], 400),
        (
            "SETUP",
            "rtsp://h/sample/trackID=0",
            &[("Transport", "RTP/AVP;multicast")],
            461,
        ),
        (
            "SETUP",
            "rtsp://h/sample/trackID=0",
            &[("Transport", "FOO/BAR")],
            461,
        ),
        (
            "SETUP",
            "rtsp://h/sample/trackID=0",
            &[("Transport", "RTP/AVP;unicast")],
            461,
        ),
        ("SETUP", "rtsp://h/sample", &[("Transport", udp)], 459),
        (
            "SETUP",
            "rtsp://h/sample/trackID=0",
            &[("Transport", udp), ("Session", "0123456789ABCDEF")],
            454,
        ),
        (
            "SETUP",
            "rtsp://h/sample/trackID=0",
            &[("Transport", udp), ("Session", "nope")],
            454,
        ),
        (
            "SETUP",
            "rtsp://h/nosuch/trackID=0",
            &[("Transport", udp)],
            404,
        ),
    ];
    let who = caller(VIEWER, 1);
    for &(method, uri, headers, want) in cases {
        let mut core = core();
        let mut w = World::new();
        let a = run(&mut core, &mut w, &request(method, uri, headers), &who);
        assert_eq!(status(&a), want, "{uri} {headers:?}");
        assert_eq!(core.session_count(), 0);
    }
}

/// PLAY, PAUSE and TEARDOWN refusals, without a session and in Ready; the session stays
/// usable after each.
#[test]
fn play_pause_teardown_refusals() {
    let who = caller(VIEWER, 1);
    for (method, session) in [
        ("PLAY", None),
        ("PLAY", Some("0123456789ABCDEF")),
        ("TEARDOWN", Some("FEDCBA9876543210")),
        ("PAUSE", Some("FEDCBA9876543210")),
    ] {
        let mut core = core();
        let mut w = World::new();
        let headers: Vec<(&str, &str)> = session.map(|s| ("Session", s)).into_iter().collect();
        let a = run(
            &mut core,
            &mut w,
            &request(method, &url("/"), &headers),
            &who,
        );
        assert_eq!(status(&a), 454, "{method} {session:?}");
    }
    let (mut core, mut w, sid) = session_in(Start::Ready);
    let cases: [(&str, String, Option<&str>, u16); 4] = [
        // §11.3.5: a start beyond the end of the presentation.
        ("PLAY", url("/"), Some("npt=999-"), 457),
        // §12.29: a range unit the server does not understand.
        ("PLAY", url("/"), Some("smpte=0:00:00-"), 501),
        // §11.3.11: one track of a two-track session cannot be played alone.
        ("PLAY", url("/trackID=0"), None, 460),
        // Appendix A: PAUSE is not valid in Ready.
        ("PAUSE", url("/"), None, 455),
    ];
    for (method, uri, range, want) in cases {
        let mut headers = vec![("Session", sid.as_str())];
        headers.extend(range.map(|r| ("Range", r)));
        let a = run(&mut core, &mut w, &request(method, &uri, &headers), &who);
        assert_eq!(status(&a), want, "{method} {uri} {range:?}");
        assert_eq!(state_of(&core, &sid), Some(SessionState::Ready));
    }
    let a = run(
        &mut core,
        &mut w,
        &request("PLAY", &url("/"), &[("Session", &sid)]),
        &who,
    );
    assert_eq!(
        status(&a),
        200,
        "the refused requests left the session usable"
    );
}

mod multicast_tests;
mod publish_tests;
mod rtsps_tests;
mod v2_tests;
mod whep_tests;
mod whip_tests;
