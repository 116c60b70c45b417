//! WHEP offers through the core: the same access, token and admission rules as RTSP, the
//! answer a browser gets (checked by `webrtc::sdp`'s own parser and by what it names), the
//! session the shard is handed, and the resource key that alone can end it.

use super::*;
use crate::webrtc::cert::DtlsCertificate;
use crate::webrtc::sdp::parse_offer;

/// Chromium 148's WHEP offer (recvonly H.264 + Opus), as `scripts/capture-webrtc-offers.sh`
/// recorded it.
const CHROMIUM_OFFER: &str =
    include_str!("../../../../tests/fixtures/webrtc/chromium-148_whep_offer.sdp");

fn webrtc_core(overlay: ConfigOverlay) -> SessionCore {
    let mut core = core_with(overlay);
    core.set_webrtc(Some(WebRtcSettings {
        certificate: Arc::new(DtlsCertificate::generate().unwrap()),
        shard_addrs: vec![
            "127.0.0.1:8189".parse().unwrap(),
            "127.0.0.1:8190".parse().unwrap(),
        ],
    }));
    core
}

fn offer<'a>(sdp: &'a str, token: Option<&'a str>) -> WhepOffer<'a> {
    WhepOffer {
        sdp: sdp.as_bytes(),
        token,
        peer: VIEWER.parse().unwrap(),
    }
}

/// No rendition lookups expected (the sample's AAC is asked for below where it matters).
fn no_audio(_: &Arc<MediaFile>) -> WhepAudio {
    WhepAudio::Unavailable
}

#[test]
fn an_offer_gets_an_answer_naming_the_chosen_shard_and_the_shard_gets_the_session() {
    let mut core = webrtc_core(ConfigOverlay::default());
    let mut w = World::new();
    let a = core
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, None),
            no_audio,
            &mut w.env(),
        )
        .unwrap();
    // The answer is SDP our parser reads (its own grammar is tested against Chromium in
    // tests/webrtc_sdp_browser.rs): ICE-lite, our credentials, the shard's candidate.
    let answer = parse_offer(a.answer.as_bytes()).unwrap();
    let candidate = format!("127.0.0.1 {} typ host", 8189 + a.shard);
    assert!(a.answer.contains(&candidate), "{}", a.answer);
    assert!(a.answer.contains("a=ice-lite"), "{}", a.answer);
    let video = &answer.media[0];
    assert_eq!(
        answer.ice_ufrag_for(video),
        Some(a.start.peer.local_ufrag.as_str())
    );
    assert_eq!(a.key.len(), 32);
    assert!(a.key.bytes().all(|b| b.is_ascii_hexdigit()));
    // The session: the sample's video only (its AAC has no rendition here), sent over
    // WebRTC with the payload type the answer chose.
    let tracks = &a.start.setup.tracks;
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    assert!(matches!(tracks[0].dest, TrackDest::WebRtc));
    let pt = tracks[0].payload_type;
    assert!(
        a.answer.contains(&format!("a=rtpmap:{pt} H264/90000")),
        "{}",
        a.answer
    );
    assert!(a.warnings.iter().any(|w| w.contains("without sound")));
    assert!(a.start.setup.payload_budget_bytes <= WEBRTC_PAYLOAD_BUDGET);
    assert_eq!(core.session_count(), 1);
    assert!(matches!(
        a.effects.as_slice(),
        [Effect::SessionStarted(m)] if m.transport == StatsTransport::Webrtc
    ));
}

#[test]
fn a_rendition_adds_opus_from_its_own_file_and_a_preparing_one_is_retried() {
    let mut core = webrtc_core(ConfigOverlay::default());
    let mut w = World::new();
    let refused = core
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, None),
            |_| WhepAudio::Preparing,
            &mut w.env(),
        )
        .unwrap_err();
    assert_eq!(refused, WhepRefusal::Preparing);
    assert_eq!(
        (refused.status(), refused.retry_after_secs()),
        (503, Some(1))
    );
    assert_eq!(core.session_count(), 0, "a refused offer creates nothing");

    let sample = MediaLibrary::bundled().unwrap();
    let media = sample.resolve(&["sample".to_owned()]).unwrap().0;
    let dir = std::env::temp_dir().join(format!("whep-core-{}", std::process::id()));
    let path = dir.join("sample.opus.mp4");
    crate::rendition::write_opus_rendition(&media, (1, SystemTime::UNIX_EPOCH), &path).unwrap();
    let rendition = Arc::new(MediaFile::open(&path, "rendition").unwrap());
    let a = core
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, None),
            |_| WhepAudio::Rendition(rendition.clone()),
            &mut w.env(),
        )
        .unwrap();
    let tracks = &a.start.setup.tracks;
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    let audio = tracks.iter().find(|t| t.source.is_some()).unwrap();
    assert!(Arc::ptr_eq(audio.source.as_ref().unwrap(), &rendition));
    assert!(matches!(
        rendition.index.tracks[audio.track_index].codec,
        crate::media::track::Codec::Opus(_)
    ));
    assert!(a
        .answer
        .contains(&format!("a=rtpmap:{} opus/48000/2", audio.payload_type)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refusals_have_their_status_and_create_nothing() {
    let mut w = World::new();
    let mut core = webrtc_core(ConfigOverlay::default());
    let cases: Vec<(&str, String, u16)> = vec![
        ("nope", CHROMIUM_OFFER.to_owned(), 404),
        ("sample", "v=0\r\nnot sdp".to_owned(), 400),
        (
            "sample",
            CHROMIUM_OFFER.replace("H264/90000", "VP8/90000"),
            422,
        ),
    ];
    for (stream, sdp, status) in cases {
        let r = core
            .whep_offer(stream, &offer(&sdp, None), no_audio, &mut w.env())
            .unwrap_err();
        assert_eq!(r.status(), status, "{stream}: {r}");
    }
    assert_eq!(core.session_count(), 0);

    let mut off = core_with(ConfigOverlay::default());
    let r = off
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, None),
            no_audio,
            &mut w.env(),
        )
        .unwrap_err();
    assert_eq!(r, WhepRefusal::Off);
}

#[test]
fn tokens_and_admission_apply_as_over_rtsp() {
    let mut w = World::new();
    let mut core = webrtc_core(ConfigOverlay {
        require_token: Some(true),
        limits: Some(LimitsOverlay {
            max_viewers_per_ip: Some(1),
            ..LimitsOverlay::default()
        }),
        ..ConfigOverlay::default()
    });
    let missing = core
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, None),
            no_audio,
            &mut w.env(),
        )
        .unwrap_err();
    assert_eq!(missing.status(), 401);
    let forged = core
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, Some("1.any.AAAA")),
            no_audio,
            &mut w.env(),
        )
        .unwrap_err();
    assert_eq!(forged.status(), 403);
    let token = TokenKey::from_secret(SECRET).sign("sample", 1_900_000_000, None);
    let token = token.as_str();
    core.whep_offer(
        "sample",
        &offer(CHROMIUM_OFFER, Some(token)),
        no_audio,
        &mut w.env(),
    )
    .unwrap();
    let over = core
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, Some(token)),
            no_audio,
            &mut w.env(),
        )
        .unwrap_err();
    assert_eq!(over.status(), 503, "{over}");
    assert!(over.retry_after_secs().is_some());
}

#[test]
fn only_the_resource_key_ends_a_session_and_then_its_viewer_slot_is_free() {
    let mut w = World::new();
    let mut core = webrtc_core(ConfigOverlay {
        limits: Some(LimitsOverlay {
            max_viewers_per_ip: Some(1),
            ..LimitsOverlay::default()
        }),
        ..ConfigOverlay::default()
    });
    let a = core
        .whep_offer(
            "sample",
            &offer(CHROMIUM_OFFER, None),
            no_audio,
            &mut w.env(),
        )
        .unwrap();
    assert!(core
        .whep_delete("00000000000000000000000000000000", w.now)
        .is_none());
    assert!(core.whep_delete(&a.id.to_string(), w.now).is_none());
    let effects = core.whep_delete(&a.key, w.now).unwrap();
    assert!(effects.contains(&Effect::Shard {
        shard: a.shard,
        order: ShardOrder::Teardown(a.id)
    }));
    assert!(
        core.whep_delete(&a.key, w.now).is_none(),
        "a key works once"
    );
    // The viewer's admission slot came back.
    core.whep_offer(
        "sample",
        &offer(CHROMIUM_OFFER, None),
        no_audio,
        &mut w.env(),
    )
    .unwrap();
}

#[test]
fn b_frames_are_refused_with_the_reason() {
    let media = MediaFile::open(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/bframes.mp4"),
        "bframes",
    )
    .unwrap();
    let why = SessionCore::whep_unplayable(&media).unwrap();
    assert!(why.contains("B-frames"), "{why}");
    let sample = MediaLibrary::bundled().unwrap();
    let media = sample.resolve(&["sample".to_owned()]).unwrap().0;
    assert_eq!(SessionCore::whep_unplayable(&media), None);
}

#[test]
fn h265_video_is_refused_with_the_reason() {
    use crate::media::track::{Codec, H265Config};
    let mut media = MediaFile::from_static("hevc", crate::media::library::SAMPLE_MP4).unwrap();
    media.index.tracks[0].codec = Codec::H265(H265Config {
        profile_space: 0,
        tier_flag: false,
        profile_idc: 1,
        profile_compat: 0x6000_0000,
        constraint_flags: [0; 6],
        level_idc: 93,
        nal_length_size: 4,
        vps: Vec::new(),
        sps: Vec::new(),
        pps: Vec::new(),
        width: 640,
        height: 360,
    });
    let why = SessionCore::whep_unplayable(&media).unwrap();
    assert!(why.contains("H.265") && why.contains("RTSP"), "{why}");
}

#[test]
fn an_offer_that_cannot_take_the_video_or_has_no_audio_makes_no_rendition() {
    let mut core = webrtc_core(ConfigOverlay::default());
    let mut w = World::new();
    let never = |_: &Arc<MediaFile>| -> WhepAudio { panic!("no rendition needed") };
    let vp8 = CHROMIUM_OFFER.replace("H264/90000", "VP8/90000");
    let r = core
        .whep_offer("sample", &offer(&vp8, None), never, &mut w.env())
        .unwrap_err();
    assert_eq!(r.status(), 422, "{r}");
    // Video only: the audio section is refused by the offerer (port 0).
    let video_only = match CHROMIUM_OFFER.find("m=audio 9 ") {
        Some(_) => CHROMIUM_OFFER.replacen("m=audio 9 ", "m=audio 0 ", 1),
        None => panic!("the fixture has an audio section"),
    };
    let a = core
        .whep_offer("sample", &offer(&video_only, None), never, &mut w.env())
        .unwrap();
    assert_eq!(a.start.setup.tracks.len(), 1);
}
