//! The source policy as a table (state × event → state, action, log line), the backoff's
//! bounds, URL credentials, stream selection and parameter conversion; proptests that any
//! event sequence keeps the policy's invariants and any parameter bytes are refused or
//! accepted without a panic. The pull itself is tested against real servers in
//! `tests/ingest_pull.rs`.

use super::*;
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);

fn always() -> SourcePolicy {
    SourcePolicy {
        mode: SourceMode::AlwaysOn,
        backoff: Backoff::default(),
    }
}

fn on_demand() -> SourcePolicy {
    SourcePolicy {
        mode: SourceMode::OnDemand {
            grace: DEFAULT_GRACE,
        },
        backoff: Backoff::default(),
    }
}

fn failed(random: u32) -> SourceEvent {
    SourceEvent::Failed {
        reason: "connect failed: refused".into(),
        random,
    }
}

#[test]
fn backoff_doubles_from_one_second_to_thirty() {
    let b = Backoff::default();
    let secs: Vec<u64> = (1..=8).map(|a| b.delay(a, 0).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(
        b.delay(u32::MAX, 0),
        30 * SEC,
        "no overflow at huge attempts"
    );
}

#[test]
fn backoff_jitter_takes_at_most_a_quarter() {
    let b = Backoff::default();
    assert_eq!(b.delay(1, u32::MAX), Duration::from_millis(750));
    assert_eq!(b.delay(6, u32::MAX), Duration::from_millis(22_500));
    let mid = b.delay(3, u32::MAX / 2);
    assert!(mid > Duration::from_millis(3400) && mid < Duration::from_millis(3600));
}

/// One row of the transition table: from a source in `setup`'s state, `event` at `at`
/// seconds gives `state`, `action` and a log line containing `log` (or none).
struct Row {
    what: &'static str,
    policy: SourcePolicy,
    setup: Vec<(SourceEvent, u64)>,
    event: SourceEvent,
    at: u64,
    state: fn(Instant) -> SourceState,
    action: Option<SourceAction>,
    log: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    use SourceAction::*;
    use SourceEvent::*;
    use SourceState::*;
    vec![
        Row {
            what: "always-on connects at the first tick",
            policy: always(),
            setup: vec![],
            event: Tick,
            at: 0,
            state: |_| Connecting { attempt: 0 },
            action: Some(Connect),
            log: Some("source cam: connecting"),
        },
        Row {
            what: "on-demand stays idle on ticks without viewers",
            policy: on_demand(),
            setup: vec![],
            event: Tick,
            at: 5,
            state: |_| Idle,
            action: None,
            log: None,
        },
        Row {
            what: "on-demand connects on the first viewer",
            policy: on_demand(),
            setup: vec![],
            event: ViewerJoined,
            at: 0,
            state: |_| Connecting { attempt: 0 },
            action: Some(Connect),
            log: Some("source cam: connecting"),
        },
        Row {
            what: "a second viewer changes nothing",
            policy: on_demand(),
            setup: vec![(ViewerJoined, 0)],
            event: ViewerJoined,
            at: 1,
            state: |_| Connecting { attempt: 0 },
            action: None,
            log: None,
        },
        Row {
            what: "tracks arriving: online",
            policy: always(),
            setup: vec![(Tick, 0)],
            event: Connected,
            at: 2,
            state: |t0| Online {
                since: t0 + 2 * SEC,
                attempt: 0,
            },
            action: None,
            log: Some("source cam: online"),
        },
        Row {
            what: "a failed connect waits 1 s",
            policy: always(),
            setup: vec![(Tick, 0)],
            event: failed(0),
            at: 3,
            state: |t0| Retrying {
                attempt: 1,
                until: t0 + 4 * SEC,
            },
            action: None,
            log: Some("source cam: failed (connect failed: refused); retry 1 in 1.0 s"),
        },
        Row {
            what: "a retry before its time waits",
            policy: always(),
            setup: vec![(Tick, 0), (failed(0), 0)],
            event: Tick,
            at: 0,
            state: |t0| Retrying {
                attempt: 1,
                until: t0 + SEC,
            },
            action: None,
            log: None,
        },
        Row {
            what: "a due retry connects",
            policy: always(),
            setup: vec![(Tick, 0), (failed(0), 0)],
            event: Tick,
            at: 1,
            state: |_| Connecting { attempt: 1 },
            action: Some(Connect),
            log: Some("source cam: connecting (retry 1)"),
        },
        Row {
            what: "the second failure in a row waits 2 s",
            policy: always(),
            setup: vec![(Tick, 0), (failed(0), 0), (Tick, 1)],
            event: failed(0),
            at: 1,
            state: |t0| Retrying {
                attempt: 2,
                until: t0 + 3 * SEC,
            },
            action: None,
            log: Some("retry 2 in 2.0 s"),
        },
        Row {
            what: "a drop after a short time online keeps counting",
            policy: always(),
            setup: vec![(Tick, 0), (failed(0), 0), (Tick, 1), (Connected, 1)],
            event: failed(0),
            at: 20,
            state: |t0| Retrying {
                attempt: 2,
                until: t0 + 22 * SEC,
            },
            action: None,
            log: Some("retry 2 in 2.0 s"),
        },
        Row {
            what: "a drop after 30 s online starts again at 1 s",
            policy: always(),
            setup: vec![(Tick, 0), (failed(0), 0), (Tick, 1), (Connected, 1)],
            event: failed(0),
            at: 31,
            state: |t0| Retrying {
                attempt: 1,
                until: t0 + 32 * SEC,
            },
            action: None,
            log: Some("retry 1 in 1.0 s"),
        },
        Row {
            what: "the last viewer leaving starts the grace, no change yet",
            policy: on_demand(),
            setup: vec![(ViewerJoined, 0), (Connected, 1)],
            event: ViewerLeft,
            at: 5,
            state: |t0| Online {
                since: t0 + SEC,
                attempt: 0,
            },
            action: None,
            log: None,
        },
        Row {
            what: "within the grace a tick keeps the source",
            policy: on_demand(),
            setup: vec![(ViewerJoined, 0), (Connected, 1), (ViewerLeft, 5)],
            event: Tick,
            at: 14,
            state: |t0| Online {
                since: t0 + SEC,
                attempt: 0,
            },
            action: None,
            log: None,
        },
        Row {
            what: "the grace over, the source stops",
            policy: on_demand(),
            setup: vec![(ViewerJoined, 0), (Connected, 1), (ViewerLeft, 5)],
            event: Tick,
            at: 15,
            state: |_| Idle,
            action: Some(Disconnect),
            log: Some("source cam: stopped, no viewers for 10 s"),
        },
        Row {
            what: "a viewer back within the grace cancels it",
            policy: on_demand(),
            setup: vec![
                (ViewerJoined, 0),
                (Connected, 1),
                (ViewerLeft, 5),
                (ViewerJoined, 8),
            ],
            event: Tick,
            at: 30,
            state: |t0| Online {
                since: t0 + SEC,
                attempt: 0,
            },
            action: None,
            log: None,
        },
        Row {
            what: "retrying with no viewers past the grace stops without a pull to end",
            policy: on_demand(),
            setup: vec![(ViewerJoined, 0), (failed(0), 1), (ViewerLeft, 1)],
            event: Tick,
            at: 11,
            state: |_| Idle,
            action: None,
            log: Some("stopped, no viewers"),
        },
        Row {
            what: "a failure after the grace ended goes idle, not retrying",
            policy: on_demand(),
            setup: vec![(ViewerJoined, 0), (ViewerLeft, 1)],
            event: failed(0),
            at: 12,
            state: |_| Idle,
            action: None,
            log: Some("stopped, no viewers for 10 s (connect failed: refused)"),
        },
        Row {
            what: "a late report from a stopped pull is ignored",
            policy: on_demand(),
            setup: vec![(ViewerJoined, 0), (ViewerLeft, 1), (Tick, 11)],
            event: failed(0),
            at: 12,
            state: |_| Idle,
            action: None,
            log: None,
        },
        Row {
            what: "connected while retrying (a stale pull) is ignored",
            policy: always(),
            setup: vec![(Tick, 0), (failed(0), 0)],
            event: Connected,
            at: 0,
            state: |t0| Retrying {
                attempt: 1,
                until: t0 + SEC,
            },
            action: None,
            log: None,
        },
        Row {
            what: "removal ends the pull",
            policy: always(),
            setup: vec![(Tick, 0), (Connected, 0)],
            event: Stop,
            at: 1,
            state: |_| Idle,
            action: Some(Disconnect),
            log: Some("source cam: removed"),
        },
        Row {
            what: "removed means removed: ticks do not reconnect",
            policy: always(),
            setup: vec![(Tick, 0), (Stop, 0)],
            event: Tick,
            at: 5,
            state: |_| Idle,
            action: None,
            log: None,
        },
    ]
}

#[test]
fn source_transition_table() {
    let t0 = Instant::now();
    for row in rows() {
        let mut s = Source::new("cam", row.policy);
        for (ev, at) in row.setup {
            s.handle(ev, t0 + Duration::from_secs(at));
        }
        let step = s.handle(row.event.clone(), t0 + Duration::from_secs(row.at));
        assert_eq!(s.state(), (row.state)(t0), "{}: state", row.what);
        assert_eq!(step.action, row.action, "{}: action", row.what);
        match (row.log, &step.log) {
            (None, None) => {}
            (Some(want), Some(got)) => assert!(got.contains(want), "{}: log {got:?}", row.what),
            (want, got) => panic!("{}: log {got:?}, wanted {want:?}", row.what),
        }
    }
}

#[test]
fn next_deadline_names_the_retry_and_the_grace_end() {
    let t0 = Instant::now();
    let mut s = Source::new("cam", always());
    assert_eq!(s.next_deadline(t0), Some(t0), "idle always-on: tick now");
    s.handle(SourceEvent::Tick, t0);
    assert_eq!(
        s.next_deadline(t0),
        None,
        "a running pull reports by itself"
    );
    s.handle(failed(0), t0);
    assert_eq!(s.next_deadline(t0), Some(t0 + SEC));

    let mut d = Source::new("cam", on_demand());
    assert_eq!(
        d.next_deadline(t0),
        None,
        "idle on-demand waits for a viewer"
    );
    d.handle(SourceEvent::ViewerJoined, t0);
    d.handle(SourceEvent::ViewerLeft, t0 + 2 * SEC);
    assert_eq!(d.next_deadline(t0 + 2 * SEC), Some(t0 + 12 * SEC));
}

#[test]
fn credentials_come_from_the_userinfo_percent_decoded() {
    let url = Url::parse("rtsp://us%65r:p%40ss:w@cam.example:8554/live?x=1").unwrap();
    let (bare, creds) = split_credentials(&url).unwrap();
    assert_eq!(bare.as_str(), "rtsp://cam.example:8554/live?x=1");
    let creds = creds.unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        ("user", "p@ss:w")
    );
    assert_eq!(
        split_credentials(&Url::parse("rtsp://h/p").unwrap())
            .unwrap()
            .1,
        None
    );
    assert_eq!(redacted(&url), "rtsp://cam.example:8554/live?x=1");
    assert_eq!(
        split_credentials(&Url::parse("http://h/p").unwrap())
            .unwrap_err()
            .kind(),
        "bad_url"
    );
    assert_eq!(percent_decode("%zz%4"), Some("%zz%4".into()));
    assert_eq!(percent_decode("%ff"), None, "not UTF-8");
}

#[test]
fn only_h264_video_and_aac_audio_are_pulled() {
    assert_eq!(classify_stream("video", "h264"), Ok(TrackKind::Video));
    assert_eq!(
        classify_stream("audio", "mpeg4-generic"),
        Ok(TrackKind::Audio)
    );
    for (m, e) in [
        ("video", "h265"),
        ("audio", "pcma"),
        ("application", "vnd.onvif.metadata"),
        ("audio", "h264"),
    ] {
        let why = classify_stream(m, e).unwrap_err();
        assert!(why.contains(e), "{why}");
    }
}

/// An AVCDecoderConfigurationRecord with one SPS and one PPS and the given length byte.
fn avcc(length_byte: u8) -> Vec<u8> {
    let sps = [0x67, 0x64, 0x00, 0x1f, 0xac];
    let pps = [0x68, 0xee, 0x3c, 0x80];
    let mut v = vec![1, 0x64, 0x00, 0x1f, length_byte, 0xe1];
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(&sps);
    v.push(1);
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(&pps);
    v
}

#[test]
fn h264_parameters_need_four_byte_lengths() {
    let spec = spec_from_params(Params::H264 {
        avcc: &avcc(0xff),
        width: 640,
        height: 360,
    })
    .unwrap();
    let Codec::H264(c) = spec.codec else {
        panic!("h264")
    };
    assert_eq!(spec.kind, TrackKind::Video);
    assert_eq!(
        (c.profile_idc, c.level_idc, c.nal_length_size),
        (100, 31, 4)
    );
    assert_eq!((c.width, c.height), (640, 360));
    assert_eq!(c.sps, vec![vec![0x67, 0x64, 0x00, 0x1f, 0xac]]);
    assert_eq!(c.pps, vec![vec![0x68, 0xee, 0x3c, 0x80]]);
    let two = spec_from_params(Params::H264 {
        avcc: &avcc(0xfd),
        width: 640,
        height: 360,
    });
    assert!(two.unwrap_err().contains("NAL length size 2"));
    assert!(spec_from_params(Params::H264 {
        avcc: &avcc(0xff),
        width: 70_000,
        height: 360,
    })
    .is_err());
}

#[test]
fn aac_parameters_are_timed_in_the_rtp_clock() {
    // AAC-LC, 24 kHz core (index 6) announced at a 48 kHz RTP clock (implicit SBR).
    let spec = spec_from_params(Params::Aac {
        asc: &[0x13, 0x10],
        clock_rate_hz: 48_000,
        channels: 2,
    })
    .unwrap();
    let Codec::Aac(c) = spec.codec else {
        panic!("aac")
    };
    assert_eq!(
        (c.object_type, c.sample_rate_hz, c.channels),
        (2, 48_000, 2)
    );
    assert_eq!(c.audio_specific_config, vec![0x13, 0x10]);
    assert!(spec_from_params(Params::Aac {
        asc: &[0x13],
        clock_rate_hz: 48_000,
        channels: 2
    })
    .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any parameter bytes are accepted or refused, never a panic; an accepted H.264 record
    /// always has 4-byte lengths and both parameter set lists filled.
    #[test]
    fn any_parameter_bytes_do_not_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        w in any::<u32>(), h in any::<u32>(), rate in any::<u32>(), ch in any::<u16>(),
    ) {
        if let Ok(spec) = spec_from_params(Params::H264 { avcc: &bytes, width: w, height: h }) {
            let Codec::H264(c) = spec.codec else { panic!("h264") };
            prop_assert_eq!(c.nal_length_size, 4);
            prop_assert!(!c.sps.is_empty() && !c.pps.is_empty());
        }
        if let Ok(spec) = spec_from_params(Params::Aac { asc: &bytes, clock_rate_hz: rate, channels: ch }) {
            prop_assert_eq!(spec.codec.clock_rate_hz(), rate);
        }
    }

    /// Any sequence of events at non-decreasing times: a log line exactly when the state
    /// changes (checked inside `handle`), `Connect` only into `Connecting`, `Disconnect` only
    /// out of a running pull, retries within the backoff's bounds, and an on-demand source
    /// never connects without a viewer in the grace window.
    #[test]
    fn any_events_keep_the_policy_invariants(
        on_demand_mode in any::<bool>(),
        events in proptest::collection::vec((0u8..6, 0u64..20_000, any::<u32>()), 0..200),
    ) {
        let policy = if on_demand_mode { on_demand() } else { always() };
        let mut s = Source::new("cam", policy);
        let mut now = Instant::now();
        for (kind, dt_ms, random) in events {
            now += Duration::from_millis(dt_ms);
            let before = s.state();
            let event = match kind {
                0 => SourceEvent::Tick,
                1 => SourceEvent::ViewerJoined,
                2 => SourceEvent::ViewerLeft,
                3 => SourceEvent::Connected,
                4 => SourceEvent::Failed { reason: "x".into(), random },
                _ => SourceEvent::Tick,
            };
            let step = s.handle(event, now);
            prop_assert_eq!(step.log.is_some(), s.state() != before);
            match step.action {
                Some(SourceAction::Connect) => {
                    let connecting = matches!(s.state(), SourceState::Connecting { .. });
                    prop_assert!(connecting);
                    prop_assert!(s.wanted(now));
                }
                Some(SourceAction::Disconnect) => {
                    let running = matches!(
                        before,
                        SourceState::Connecting { .. } | SourceState::Online { .. }
                    );
                    prop_assert!(running);
                    prop_assert_eq!(s.state(), SourceState::Idle);
                }
                None => {}
            }
            if let SourceState::Retrying { attempt, until } = s.state() {
                let wait = until.saturating_duration_since(now);
                prop_assert!(attempt >= 1);
                prop_assert!(wait <= policy.backoff.max);
            }
        }
    }
}
