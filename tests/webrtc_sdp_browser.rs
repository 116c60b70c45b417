//! `webrtc::sdp` against a real WebRTC implementation: headless Chromium (Debian's `chromium`,
//! driven over DevTools by `tests/common/browser.rs`) makes a fresh offer, our
//! `parse_offer` + `negotiate` + `write_answer` answer it, and the browser must accept the
//! answer (`setRemoteDescription` resolves) and report, from its own negotiated state
//! (`currentDirection`, `getStats()` codec and transport entries), H.264 with
//! `packetization-mode=1` and the profile we chose, Opus, and the DTLS and ICE roles our
//! answer asked for (`setup:passive`, `ice-lite`). A publisher's offer (WHIP) is answered
//! `recvonly` and its sender then holds exactly our H.264 and Opus choices.
//!
//! How they fail: Chromium rejects the answer (a grammar or JSEP error: wrong m= count or
//! order, a missing ICE/DTLS attribute, a payload type it did not offer, a bad direction),
//! or negotiates a different codec, profile or direction than ours; a VP8-only offer that we
//! do not refuse, or refuse without naming what was offered.

mod common;

use common::browser::{Browser, Page};
use serde_json::Value;
use shardcast::webrtc::sdp::{
    negotiate, negotiate_publish, parse_offer, write_answer, AnswerParams, NegotiationError,
    ProfileLevelId, SendTrack,
};

/// Creates `window.pc` with `setup` (JavaScript adding transceivers to `pc`), sets the local
/// description and returns the offer's SDP.
fn offer_from(page: &mut Page, setup: &str) -> String {
    let js = format!(
        "(async () => {{ const pc = new RTCPeerConnection(); window.pc = pc; {setup}
           await pc.setLocalDescription(); return pc.localDescription.sdp; }})()"
    );
    page.eval_json(&js)
        .as_str()
        .unwrap_or_else(|| panic!("an SDP string from the page"))
        .to_owned()
}

/// Hands `answer` to `window.pc`; the browser's verdict (`"ok"` or its error message).
fn set_answer(page: &mut Page, answer: &str) -> String {
    let js = format!(
        "window.pc.setRemoteDescription({{type: 'answer', sdp: {}}}).then(() => 'ok', e => String(e))",
        serde_json::to_string(answer).unwrap()
    );
    page.eval_json(&js)
        .as_str()
        .unwrap_or("no answer")
        .to_owned()
}

/// What the browser negotiated, per transceiver: mid, current direction, and the codecs of
/// its receiver and sender (`mimeType`, `sdpFmtpLine`, `payloadType`).
fn negotiated_state(page: &mut Page) -> Value {
    page.eval_json(
        "window.pc.getTransceivers().map(t => ({
            mid: t.mid, direction: t.currentDirection,
            receive: t.receiver.getParameters().codecs.map(c =>
                ({mime: c.mimeType, fmtp: c.sdpFmtpLine || '', pt: c.payloadType})),
            send: t.sender.getParameters().codecs.map(c =>
                ({mime: c.mimeType, fmtp: c.sdpFmtpLine || '', pt: c.payloadType})) }))",
    )
}

fn params(ssrcs: &[u32]) -> AnswerParams<'_> {
    AnswerParams {
        ice_ufrag: "shrd",
        ice_pwd: "0123456789abcdefghijklmn",
        // Any well-formed SHA-256 fingerprint: the handshake never starts in this test.
        fingerprint: "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
        candidate: "127.0.0.1:9".parse().unwrap(),
        session_id: 7,
        cname: "shardcast",
        stream_id: "sample",
        send_ssrcs: ssrcs,
        sprop_parameter_sets: true,
    }
}

fn plid(s: &str) -> ProfileLevelId {
    ProfileLevelId::parse(s).unwrap()
}

/// A recvonly video + audio page (a WHEP viewer).
const WHEP_SETUP: &str = "pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});";

/// The same with `sendrecv` transceivers (no tracks): a WHEP client may offer this too, and
/// Chromium configures their send side from the answer's formats, which `getStats()` then
/// lists as `codec` entries. A `recvonly` receiver reports its negotiated codec only once
/// media arrives (`inbound-rtp`), and `receiver.getParameters().codecs` lists the local
/// capabilities, not the answer's choice, so the codec check needs this variant.
const SENDRECV_SETUP: &str = "pc.addTransceiver('video', {direction: 'sendrecv'});
    pc.addTransceiver('audio', {direction: 'sendrecv'});";

/// Offers from a fresh page (`setup`), answers sending H.264 `ours` + Opus, and checks what
/// Chromium made of the answer: accepted, both transceivers `recvonly` (we only send),
/// Chromium the DTLS client (we said `setup:passive`) and ICE controlling (we said
/// `ice-lite`, RFC 8445 §6.1.1). With `check_codecs`, its codec stats must be exactly our
/// H.264 (`packetization-mode=1`, our `profile-level-id`, the payload type we chose) and Opus.
fn whep_round_trip(setup: &str, ours: &str, check_codecs: bool) {
    let mut page = Browser::open("about:blank");
    let sdp = offer_from(&mut page, setup);
    let offer = parse_offer(sdp.as_bytes()).expect("Chromium's offer parses");
    let tracks = [
        SendTrack::H264 {
            profile_level_id: plid(ours),
            // The first bytes of an SPS and a PPS: enough for sprop-parameter-sets' syntax.
            parameter_sets: vec![
                vec![0x67, 0x42, 0xe0, 0x1f, 0xda],
                vec![0x68, 0xce, 0x3c, 0x80],
            ],
        },
        SendTrack::Opus,
    ];
    let n = negotiate(&offer, &tracks).unwrap_or_else(|e| panic!("negotiating {ours}: {e}"));
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
    let answer = write_answer(&offer, &n, &params(&[0x1234_5678, 0x2345_6789]));
    let verdict = set_answer(&mut page, &answer);
    assert_eq!(verdict, "ok", "Chromium refused our answer:\n{answer}");
    let state = negotiated_state(&mut page);
    let t = state.as_array().expect("transceivers");
    assert_eq!(t.len(), 2);
    for x in t {
        assert_eq!(x["direction"], "recvonly", "{state}");
    }
    let stats = page.eval_json(
        "window.pc.getStats().then(r => [...r.values()]
            .filter(s => s.type === 'codec' || s.type === 'transport')
            .map(s => ({type: s.type, mime: s.mimeType, fmtp: s.sdpFmtpLine || '', pt: s.payloadType,
                        dtlsRole: s.dtlsRole, iceRole: s.iceRole})))",
    );
    eprintln!("{ours}: {stats}");
    let stats = stats.as_array().expect("stats");
    let transport = stats
        .iter()
        .find(|s| s["type"] == "transport")
        .expect("a transport");
    assert_eq!(transport["dtlsRole"], "client", "{transport}");
    assert_eq!(transport["iceRole"], "controlling", "{transport}");
    if !check_codecs {
        return;
    }
    let codecs: Vec<&Value> = stats.iter().filter(|s| s["type"] == "codec").collect();
    assert_eq!(codecs.len(), 2, "one video and one audio codec: {codecs:?}");
    let accepted: Vec<_> = n.accepted().collect();
    let video = codecs
        .iter()
        .find(|c| c["mime"] == "video/H264")
        .unwrap_or_else(|| panic!("H.264 negotiated: {codecs:?}"));
    let fmtp = video["fmtp"].as_str().unwrap_or_default();
    assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");
    assert!(fmtp.contains(&format!("profile-level-id={ours}")), "{fmtp}");
    assert_eq!(video["pt"], u64::from(accepted[0].payload_type));
    let audio = codecs
        .iter()
        .find(|c| c["mime"] == "audio/opus")
        .unwrap_or_else(|| panic!("Opus negotiated: {codecs:?}"));
    assert_eq!(audio["pt"], u64::from(accepted[1].payload_type));
}

#[test]
fn chromium_accepts_our_answer_to_a_recvonly_offer() {
    whep_round_trip(WHEP_SETUP, "42e01f", false);
}

#[test]
fn chromium_negotiates_our_constrained_baseline_and_opus() {
    whep_round_trip(SENDRECV_SETUP, "42e01f", true);
}

#[test]
fn chromium_negotiates_main_profile_at_a_higher_level() {
    // 4d0033 (Main 5.1) against Chromium's 4d001f with level-asymmetry-allowed=1.
    whep_round_trip(SENDRECV_SETUP, "4d0033", true);
}

#[test]
fn every_h264_mode1_profile_chromium_can_receive_negotiates() {
    // Independent of our profile table: the browser's own receive capabilities. Each H.264
    // packetization-mode=1 profile it lists must negotiate when a stream has exactly it.
    let mut page = Browser::open("about:blank");
    let caps = page.eval_json(
        "RTCRtpReceiver.getCapabilities('video').codecs
            .filter(c => c.mimeType === 'video/H264' && (c.sdpFmtpLine || '').includes('packetization-mode=1'))
            .map(c => c.sdpFmtpLine)",
    );
    let sdp = offer_from(&mut page, WHEP_SETUP);
    let offer = parse_offer(sdp.as_bytes()).unwrap();
    let lines = caps.as_array().expect("capabilities");
    assert!(!lines.is_empty(), "Chromium can receive some H.264");
    for line in lines {
        let line = line.as_str().unwrap();
        let p = line
            .split(';')
            .find_map(|kv| kv.strip_prefix("profile-level-id="))
            .map(plid)
            .unwrap();
        let tracks = [SendTrack::H264 {
            profile_level_id: p,
            parameter_sets: vec![],
        }];
        let n = negotiate(&offer, &tracks).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(n.accepted().count() == 1, "{line}");
    }
}

#[test]
fn chromium_publisher_offer_gets_a_recvonly_answer() {
    let mut page = Browser::open("about:blank");
    // A canvas and Web Audio stand in for camera and microphone (the offer is the same shape).
    let sdp = offer_from(
        &mut page,
        "const c = document.createElement('canvas'); c.width = 320; c.height = 240;
         c.getContext('2d').fillRect(0, 0, 10, 10);
         const ac = new AudioContext(); const dst = ac.createMediaStreamDestination();
         const osc = ac.createOscillator(); osc.connect(dst); osc.start();
         const s = new MediaStream([...c.captureStream(25).getVideoTracks(), ...dst.stream.getAudioTracks()]);
         for (const t of s.getTracks()) pc.addTransceiver(t, {direction: 'sendonly', streams: [s]});",
    );
    let offer = parse_offer(sdp.as_bytes()).unwrap();
    let n = negotiate_publish(&offer).unwrap_or_else(|e| panic!("{e}"));
    let answer = write_answer(&offer, &n, &params(&[]));
    assert_eq!(set_answer(&mut page, &answer), "ok", "{answer}");
    let state = negotiated_state(&mut page);
    eprintln!("whip: {state}");
    for t in state.as_array().unwrap() {
        assert_eq!(t["direction"], "sendonly", "{state}");
        // Exactly the one format our answer chose for this mid.
        let send = t["send"].as_array().unwrap();
        assert_eq!(send.len(), 1, "{state}");
        let codec = &send[0];
        let ours = n
            .accepted()
            .find(|a| t["mid"] == a.mid.as_str())
            .unwrap_or_else(|| panic!("accepted mid {}", t["mid"]));
        assert_eq!(codec["pt"], u64::from(ours.payload_type), "{state}");
        match codec["mime"].as_str() {
            Some("video/H264") => {
                assert!(codec["fmtp"]
                    .as_str()
                    .unwrap()
                    .contains("packetization-mode=1"))
            }
            Some("audio/opus") => {}
            other => panic!("sends {other:?}: {state}"),
        }
    }
}

#[test]
fn vp8_only_offer_is_refused_naming_what_was_offered() {
    let mut page = Browser::open("about:blank");
    let sdp = offer_from(
        &mut page,
        "const t = pc.addTransceiver('video', {direction: 'recvonly'});
         t.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs
             .filter(c => c.mimeType === 'video/VP8'));
         pc.addTransceiver('audio', {direction: 'recvonly'});",
    );
    let offer = parse_offer(sdp.as_bytes()).unwrap();
    let e = negotiate(
        &offer,
        &[
            SendTrack::H264 {
                profile_level_id: plid("42e01f"),
                parameter_sets: vec![],
            },
            SendTrack::Opus,
        ],
    )
    .unwrap_err();
    assert!(
        matches!(e, NegotiationError::NoCompatibleH264 { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    eprintln!("refusal: {msg}");
    assert!(msg.contains("no H.264"), "{msg}");
    assert!(msg.contains("VP8"), "{msg}");
    assert!(msg.contains("42e01f"), "{msg}");
}
