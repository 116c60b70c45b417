//! WHIP offers through the core: the publish rules of RTSP and RTMP (open paths, stream keys
//! as bearer tokens, one publisher per path), the answer a browser gets, and the resource key
//! that alone ends the publish.

use super::*;
use crate::webrtc::cert::DtlsCertificate;
use crate::webrtc::sdp::{parse_offer, Direction};

/// Chromium 148's WHIP offer (sendonly H.264 + Opus), as `scripts/capture-webrtc-offers.sh`
/// recorded it.
const CHROMIUM_OFFER: &str =
    include_str!("../../../../tests/fixtures/webrtc/chromium-148_whip_offer.sdp");

const INGEST: &str = "127.0.0.1:40000";

fn whip_core(overlay: ConfigOverlay) -> SessionCore {
    let mut core = core_with(overlay);
    core.set_webrtc(Some(WebRtcSettings {
        certificate: Arc::new(DtlsCertificate::generate().unwrap()),
        shard_addrs: vec!["127.0.0.1:8189".parse().unwrap()],
    }));
    core.set_whip_addr(Some(INGEST.parse().unwrap()));
    core
}

fn open_core() -> SessionCore {
    whip_core(ConfigOverlay {
        publish: Some(vec!["live/*".into()]),
        ..ConfigOverlay::default()
    })
}

fn offer<'a>(sdp: &'a str, key: Option<&'a str>) -> WhipOffer<'a> {
    WhipOffer {
        sdp: sdp.as_bytes(),
        key,
        peer: VIEWER.parse().unwrap(),
    }
}

#[test]
fn an_offer_on_an_open_path_is_answered_recvonly_at_the_ingest_port() {
    let mut core = open_core();
    let mut w = World::new();
    let a = core
        .whip_offer("live/cam", &offer(CHROMIUM_OFFER, None), &mut w.env())
        .unwrap();
    let answer = parse_offer(a.answer.as_bytes()).unwrap();
    assert!(a.answer.contains("a=ice-lite"), "{}", a.answer);
    assert!(
        a.answer.contains("127.0.0.1 40000 typ host"),
        "the candidate is the ingest port: {}",
        a.answer
    );
    let accepted: Vec<_> = answer.media.iter().filter(|m| m.port != 0).collect();
    assert_eq!(accepted.len(), 2, "{}", a.answer);
    assert!(accepted.iter().all(|m| m.direction == Direction::RecvOnly));
    // The publisher the shell runs: video first, H.264 and Opus with the offer's numbers.
    let p = &a.publisher;
    assert_eq!(p.path, "live/cam");
    assert_eq!(p.tracks.len(), 2);
    assert_eq!(p.tracks[0].kind, TrackKind::Video);
    assert_eq!(p.tracks[1].kind, TrackKind::Audio);
    for t in &p.tracks {
        assert!(
            a.answer.contains(&format!(
                "m={} ",
                if t.kind == TrackKind::Video {
                    "video"
                } else {
                    "audio"
                }
            )),
            "{}",
            a.answer
        );
        assert!(a.answer.contains(&format!("a=rtpmap:{} ", t.payload_type)));
    }
    assert_eq!(
        answer.ice_ufrag_for(accepted[0]),
        Some(p.transport.local_ufrag.as_str())
    );
    assert_eq!(a.key.len(), 32);
    // The path is taken from the POST on, for every protocol.
    let again = core.whip_offer("live/cam", &offer(CHROMIUM_OFFER, None), &mut w.env());
    assert_eq!(again.as_ref().map(|_| ()).unwrap_err().status(), 409);
    assert!(core.authorize_rtmp("live/cam", "").is_err());
    // DELETE with the key frees it; the key works once.
    assert_eq!(core.whip_delete(&a.key), Some(p.id));
    assert_eq!(core.whip_delete(&a.key), None);
    assert!(core.authorize_rtmp("live/cam", "").is_ok());
}

#[test]
fn the_publish_rules_decide_with_the_stream_key_as_bearer_token() {
    let rules = vec![AccessRule {
        streams: "live/cam1".into(),
        public: true,
        publish_key: Some("k3y".into()),
        ..Default::default()
    }];
    let mut core = whip_core(ConfigOverlay {
        access: Some(rules),
        ..ConfigOverlay::default()
    });
    let mut w = World::new();
    let status =
        |r: Result<WhipAccepted, WhipRefusal>| r.map(|_| 201).unwrap_or_else(|e| e.status());
    // A public stream is public to play, not to publish.
    assert_eq!(
        status(core.whip_offer("live/cam1", &offer(CHROMIUM_OFFER, None), &mut w.env())),
        401
    );
    assert_eq!(
        status(core.whip_offer(
            "live/cam1",
            &offer(CHROMIUM_OFFER, Some("wrong")),
            &mut w.env()
        )),
        401
    );
    // No rule lets anyone publish elsewhere.
    assert_eq!(
        status(core.whip_offer(
            "live/other",
            &offer(CHROMIUM_OFFER, Some("k3y")),
            &mut w.env()
        )),
        403
    );
    // A stored file is never publishable, even where everything is open.
    let mut open = whip_core(ConfigOverlay {
        publish: Some(vec!["*".into()]),
        ..ConfigOverlay::default()
    });
    assert_eq!(
        status(open.whip_offer("sample", &offer(CHROMIUM_OFFER, None), &mut w.env())),
        409
    );
    assert_eq!(
        status(core.whip_offer(
            "live/cam1",
            &offer(CHROMIUM_OFFER, Some("k3y")),
            &mut w.env()
        )),
        201
    );
}

#[test]
fn offers_we_cannot_receive_are_refused_and_take_nothing() {
    let mut core = open_core();
    let mut w = World::new();
    let vp8_only = CHROMIUM_OFFER
        .lines()
        .filter(|l| !l.contains("H264") && !l.contains("opus"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let r = core.whip_offer("live/cam", &offer(&vp8_only, None), &mut w.env());
    assert_eq!(r.as_ref().map(|_| ()).unwrap_err().status(), 422, "{r:?}");
    let r = core.whip_offer("live/cam", &offer("not sdp", None), &mut w.env());
    assert_eq!(r.as_ref().map(|_| ()).unwrap_err().status(), 400, "{r:?}");
    // Nothing was taken: a good offer still gets the path.
    assert!(core
        .whip_offer("live/cam", &offer(CHROMIUM_OFFER, None), &mut w.env())
        .is_ok());
    // Without WebRTC there is no WHIP.
    let mut off = core_with(ConfigOverlay {
        publish: Some(vec!["live/*".into()]),
        ..ConfigOverlay::default()
    });
    let r = off.whip_offer("live/cam", &offer(CHROMIUM_OFFER, None), &mut w.env());
    assert_eq!(r.as_ref().map(|_| ()).unwrap_err().status(), 503);
}
