//! Unit tests of RTMP publishing: FLV tag bodies and decoder configurations (real records
//! from libx264 via ffmpeg), a publisher conversation built chunk by chunk (the chunk format of
//! Adobe RTMP 1.0 §5.3.1 written by hand, AMF0 by `rml_amf0`), the chunk guard on each input
//! rml_rtmp 0.8 panics on, and "any bytes do not panic" properties.

use std::collections::HashMap;

use proptest::prelude::*;
use rml_rtmp::rml_amf0::{self, Amf0Value};

use super::chunk::{scan_amf0, ChunkError};
use super::flv::{self, AudioTag, FlvCodec, FlvError, NaluError, VideoTag};
use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures: avcC records written by ffmpeg 7 + libx264 into MP4 files (testsrc).

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// 320x240 yuv420p, High profile, level 1.3.
const AVCC_320: &str =
    "0164000dffe100176764000dacb20283f60220000003002000000781e2854901000668ebc3cb22c0fdf8f800";
/// 1920x1080 yuv420p, High, level 4.0: coded 1088 lines, frame_crop_bottom_offset 4.
const AVCC_1080: &str = "01640028ffe1001b67640028acb200f0044fcb8088000003000800000301e078c1924001000668ebc3cb22c0fdf8f800";
/// 1920x1080 4:4:4 (High 4:4:4 Predictive, profile 244): chroma_format_idc 3, crop unit 1.
const AVCC_1080_444: &str = "01f40028ffe1001a67f400289196401e0089f89c0440000003004000000f03c60c9201000668ebc3c44844fff8f800";
/// 1280x720 Constrained Baseline, level 3.1.
const AVCC_720_BASELINE: &str =
    "0142c01fffe100196742c01fd9005005bb0110000003001000000303c0f183248001000568cb83cb20";

// ---------------------------------------------------------------------------------------------
// FLV tag bodies.

#[test]
fn avc_tags_parse_with_signed_composition_time() {
    // FrameType 1 (key) | CodecID 7, AVCPacketType 1, CompositionTime -2 (SI24 0xfffffe).
    let tag = [0x17, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x65];
    assert_eq!(
        flv::parse_video_tag(&tag),
        Ok(VideoTag::AvcNalus {
            keyframe: true,
            composition_time_ms: -2,
            nalus: 5..10,
        })
    );
    let inter = [0x27, 1, 0, 0, 40, 0, 0, 0, 1, 0x41];
    assert_eq!(
        flv::parse_video_tag(&inter),
        Ok(VideoTag::AvcNalus {
            keyframe: false,
            composition_time_ms: 40,
            nalus: 5..10,
        })
    );
    assert_eq!(
        flv::parse_video_tag(&[0x17, 0, 0, 0, 0, 1, 2]),
        Ok(VideoTag::AvcSequenceHeader { record: 5..7 })
    );
    // End of sequence, and a video info/command frame (FrameType 5).
    assert_eq!(
        flv::parse_video_tag(&[0x17, 2, 0, 0, 0]),
        Ok(VideoTag::Ignored)
    );
    assert_eq!(flv::parse_video_tag(&[0x57, 0]), Ok(VideoTag::Ignored));
}

#[test]
fn truncated_and_invalid_tags_are_errors() {
    assert_eq!(
        flv::parse_video_tag(&[]),
        Err(FlvError::Truncated("video tag header"))
    );
    assert_eq!(
        flv::parse_video_tag(&[0x17]),
        Err(FlvError::Truncated("avc packet type"))
    );
    assert_eq!(
        flv::parse_video_tag(&[0x17, 1, 0]),
        Err(FlvError::Truncated("composition time"))
    );
    assert!(matches!(
        flv::parse_video_tag(&[0x17, 9, 0, 0, 0]),
        Err(FlvError::Invalid(_))
    ));
    assert_eq!(
        flv::parse_audio_tag(&[0xaf]),
        Err(FlvError::Truncated("aac packet type"))
    );
    assert!(matches!(
        flv::parse_audio_tag(&[0xaf, 7]),
        Err(FlvError::Invalid(_))
    ));
}

#[test]
fn unsupported_codecs_are_named() {
    // Enhanced RTMP: IsExHeader | FrameType 1 | PacketType 1 (CodedFrames), FourCC hvc1.
    let hevc = [0x91, b'h', b'v', b'c', b'1', 0, 0, 0];
    let err = flv::parse_video_tag(&hevc).expect_err("hevc is refused");
    assert_eq!(err, FlvError::UnsupportedCodec(FlvCodec::FourCc(*b"hvc1")));
    assert!(err.to_string().contains("HEVC ('hvc1')"), "{err}");
    let vp6 = flv::parse_video_tag(&[0x14, 0]).expect_err("vp6");
    assert!(vp6.to_string().contains("On2 VP6"), "{vp6}");
    // SoundFormat 2 = MP3.
    let mp3 = flv::parse_audio_tag(&[0x2f, 0xff]).expect_err("mp3");
    assert!(mp3.to_string().contains("MP3"), "{mp3}");
    let opus = flv::parse_audio_tag(&[0x90, b'O', b'p', b'u', b's']).expect_err("opus");
    assert!(opus.to_string().contains("Opus"), "{opus}");
}

#[test]
fn enhanced_avc1_is_read_like_legacy_avc() {
    // PacketType 0 SequenceStart, 1 CodedFrames (SI24 cts), 3 CodedFramesX (no cts).
    assert_eq!(
        flv::parse_video_tag(&[0x90, b'a', b'v', b'c', b'1', 1, 2]),
        Ok(VideoTag::AvcSequenceHeader { record: 5..7 })
    );
    assert_eq!(
        flv::parse_video_tag(&[0x91, b'a', b'v', b'c', b'1', 0, 0, 33, 0, 0, 0, 1, 5]),
        Ok(VideoTag::AvcNalus {
            keyframe: true,
            composition_time_ms: 33,
            nalus: 8..13,
        })
    );
    assert_eq!(
        flv::parse_video_tag(&[0xa3, b'a', b'v', b'c', b'1', 0, 0, 0, 1, 1]),
        Ok(VideoTag::AvcNalus {
            keyframe: false,
            composition_time_ms: 0,
            nalus: 5..10,
        })
    );
}

#[test]
fn aac_tags_parse() {
    // SoundFormat 10, 44 kHz, 16-bit, stereo = 0xaf.
    assert_eq!(
        flv::parse_audio_tag(&[0xaf, 0, 0x12, 0x10]),
        Ok(AudioTag::AacSequenceHeader {
            config: 2..4,
            stereo: true
        })
    );
    assert_eq!(
        flv::parse_audio_tag(&[0xae, 1, 0x21, 0x10]),
        Ok(AudioTag::AacRaw { frame: 2..4 })
    );
}

#[test]
fn avc_records_from_libx264_give_profile_level_and_cropped_size() {
    let cases = [
        (AVCC_320, 100, 13, 320, 240),
        (AVCC_1080, 100, 40, 1920, 1080),
        (AVCC_1080_444, 244, 40, 1920, 1080),
        (AVCC_720_BASELINE, 66, 31, 1280, 720),
    ];
    for (record, profile, level, w, h) in cases {
        let c = flv::parse_avc_config(&hex(record)).expect("valid record");
        assert_eq!(
            (
                c.profile_idc,
                c.level_idc,
                c.width,
                c.height,
                c.nal_length_size
            ),
            (profile, level, w, h, 4),
            "{record}"
        );
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
    }
}

#[test]
fn bad_avc_records_are_errors() {
    let good = hex(AVCC_320);
    for cut in 0..good.len() - 1 {
        // Every strict prefix that cuts into the PPS or earlier fails.
        if cut < good.len() - 6 {
            assert!(flv::parse_avc_config(&good[..cut]).is_err(), "cut {cut}");
        }
    }
    let mut v2 = good.clone();
    v2[0] = 2;
    assert!(flv::parse_avc_config(&v2).is_err());
    let mut three = good;
    three[4] = 0xfe; // lengthSizeMinusOne 2
    assert_eq!(
        flv::parse_avc_config(&three),
        Err(FlvError::Invalid("avcC nal length size must be 1, 2 or 4"))
    );
}

#[test]
fn audio_specific_configs_parse() {
    // 00010 0100 0010 ...: AAC-LC, 44.1 kHz, 2 channels.
    let c = flv::parse_audio_specific_config(&[0x12, 0x10], 1).expect("asc");
    assert_eq!(
        (c.object_type, c.sample_rate_hz, c.channels),
        (2, 44_100, 2)
    );
    // Channel configuration 0 takes the FLV SoundType.
    let c = flv::parse_audio_specific_config(&[0x11, 0x80], 1).expect("pce");
    assert_eq!((c.sample_rate_hz, c.channels), (48_000, 1));
    assert!(flv::parse_audio_specific_config(&[0x12], 2).is_err());
    // Index 13 is reserved.
    assert!(flv::parse_audio_specific_config(&[0x16, 0x90], 2).is_err());
}

#[test]
fn nal_lengths_are_rewritten_to_four_bytes() {
    assert_eq!(flv::normalize_nalus(&[0, 0, 0, 2, 0x65, 1], 4), Ok(None));
    assert_eq!(
        flv::normalize_nalus(&[0, 2, 0x65, 1, 0, 1, 0x06], 2),
        Ok(Some(vec![0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x06]))
    );
    assert_eq!(
        flv::normalize_nalus(&[1, 0x09], 1),
        Ok(Some(vec![0, 0, 0, 1, 0x09]))
    );
    assert_eq!(
        flv::normalize_nalus(&[0, 0, 0, 9, 1], 4),
        Err(NaluError::Malformed)
    );
    assert_eq!(
        flv::normalize_nalus(&[0, 0, 0, 0], 4),
        Err(NaluError::Malformed)
    );
    assert_eq!(
        flv::normalize_nalus(&[0, 0, 0], 4),
        Err(NaluError::Malformed)
    );
    assert_eq!(flv::normalize_nalus(&[], 4), Err(NaluError::Malformed));
}

// ---------------------------------------------------------------------------------------------
// A publisher, chunk by chunk.

/// C0 (version 3), C1 of zeros (no digest: the original echo handshake), C2 of zeros.
fn hello() -> Vec<u8> {
    let mut v = vec![3u8];
    v.resize(1 + 2 * 1536, 0);
    v
}

/// One message as chunks of at most `chunk_size` payload bytes (§5.3.1): a type 0 header,
/// then type 3 headers; an extended timestamp (§5.3.1.3) when `ts` >= 0xffffff, repeated in
/// each type 3 chunk as ffmpeg does.
fn message(
    csid: u8,
    ts: u32,
    type_id: u8,
    stream: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let extended = ts >= 0xff_ffff;
    let mut v = vec![csid];
    let field = if extended { 0xff_ffff } else { ts };
    v.extend_from_slice(&field.to_be_bytes()[1..]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&stream.to_le_bytes());
    if extended {
        v.extend_from_slice(&ts.to_be_bytes());
    }
    for (i, piece) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            v.push(0xc0 | csid);
            if extended {
                v.extend_from_slice(&ts.to_be_bytes());
            }
        }
        v.extend_from_slice(piece);
    }
    v
}

fn amf(values: Vec<Amf0Value>) -> Vec<u8> {
    rml_amf0::serialize(&values).expect("amf0")
}

fn s(text: &str) -> Amf0Value {
    Amf0Value::Utf8String(text.to_owned())
}

fn n(v: f64) -> Amf0Value {
    Amf0Value::Number(v)
}

fn object(props: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<HashMap<_, _>>(),
    )
}

/// Feeds bytes, panicking on an error.
fn feed(conn: &mut RtmpConnection, bytes: &[u8]) -> Vec<RtmpEvent> {
    let mut out = Vec::new();
    conn.receive(bytes, &mut out).expect("receive");
    out
}

/// Handshake, connect to `app`, createStream, publish `key`: returns the connection and the
/// publish request's id, checking the request's fields.
fn publishing(app: &str, key: &str) -> (RtmpConnection, Vec<RtmpEvent>) {
    let mut conn = RtmpConnection::new();
    let out = feed(&mut conn, &hello());
    assert!(matches!(out.as_slice(), [RtmpEvent::Send(b)] if b.len() > 1536));
    let mut bytes = message(
        3,
        0,
        20,
        0,
        &amf(vec![
            s("connect"),
            n(1.0),
            object(&[("app", s(app)), ("type", s("nonprivate"))]),
        ]),
        128,
    );
    bytes.extend(message(
        3,
        0,
        20,
        0,
        &amf(vec![s("createStream"), n(2.0), Amf0Value::Null]),
        128,
    ));
    bytes.extend(message(
        8,
        0,
        20,
        1,
        &amf(vec![
            s("publish"),
            n(3.0),
            Amf0Value::Null,
            s(key),
            s("live"),
        ]),
        128,
    ));
    let out = feed(&mut conn, &bytes);
    (conn, out)
}

fn accepted(app: &str, key: &str) -> RtmpConnection {
    let (mut conn, out) = publishing(app, key);
    let id = out
        .iter()
        .find_map(|e| match e {
            RtmpEvent::PublishRequested { request_id, .. } => Some(*request_id),
            _ => None,
        })
        .expect("publish requested");
    let mut out = Vec::new();
    conn.accept_publish(id, &mut out).expect("accept");
    let sent = sends(&out);
    assert!(contains(&sent, b"NetStream.Publish.Start"));
    conn
}

fn sends(events: &[RtmpEvent]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Send(b) => Some(b.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn frames(events: &[RtmpEvent]) -> Vec<&RtmpFrame> {
    events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn tracks(events: &[RtmpEvent]) -> Vec<&Vec<RtmpTrack>> {
    events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Tracks(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn metadata(video: bool, audio: bool) -> Vec<u8> {
    let mut props = vec![("width", n(320.0)), ("height", n(240.0))];
    if video {
        props.push(("videocodecid", n(7.0)));
    }
    if audio {
        props.push(("audiocodecid", n(10.0)));
    }
    let body = amf(vec![s("@setDataFrame"), s("onMetaData"), object(&props)]);
    message(4, 0, 18, 1, &body, 128)
}

fn video_header(record: &[u8], ts: u32) -> Vec<u8> {
    let mut tag = vec![0x17, 0, 0, 0, 0];
    tag.extend_from_slice(record);
    message(6, ts, 9, 1, &tag, 128)
}

fn video_frame(key: bool, cts: i32, nalus: &[u8], ts: u32) -> Vec<u8> {
    let mut tag = vec![if key { 0x17 } else { 0x27 }, 1];
    tag.extend_from_slice(&cts.to_be_bytes()[1..]);
    tag.extend_from_slice(nalus);
    message(6, ts, 9, 1, &tag, 128)
}

fn audio_header(asc: &[u8], ts: u32) -> Vec<u8> {
    let mut tag = vec![0xaf, 0];
    tag.extend_from_slice(asc);
    message(4, ts, 8, 1, &tag, 128)
}

fn audio_frame(au: &[u8], ts: u32) -> Vec<u8> {
    let mut tag = vec![0xaf, 1];
    tag.extend_from_slice(au);
    message(4, ts, 8, 1, &tag, 128)
}

#[test]
fn publish_request_names_app_key_and_query() {
    let (_conn, out) = publishing("live", "cam1?token=abc");
    let req = out
        .iter()
        .find(|e| matches!(e, RtmpEvent::PublishRequested { .. }))
        .expect("publish requested");
    let RtmpEvent::PublishRequested {
        app, key, query, ..
    } = req
    else {
        unreachable!()
    };
    assert_eq!(
        (app.as_str(), key.as_str(), query.as_str()),
        ("live", "cam1", "token=abc")
    );
    // connect and createStream were answered.
    let sent = sends(&out);
    assert!(contains(&sent, b"NetConnection.Connect.Success"));
    assert!(contains(&sent, b"_result"));
}

#[test]
fn publish_announces_tracks_then_frames_with_converted_times() {
    let mut conn = accepted("live", "cam");
    let mut bytes = metadata(true, true);
    bytes.extend(video_header(&hex(AVCC_320), 0));
    let out = feed(&mut conn, &bytes);
    assert!(
        tracks(&out).is_empty(),
        "audio promised by onMetaData is awaited"
    );
    let out = feed(&mut conn, &audio_header(&[0x12, 0x10], 0));
    let announced = tracks(&out);
    assert_eq!(announced.len(), 1);
    let list = announced[0];
    assert_eq!(list.len(), 2);
    let Codec::H264(v) = &list[0].codec else {
        panic!("video first")
    };
    assert_eq!(
        (
            v.profile_idc,
            v.level_idc,
            v.width,
            v.height,
            v.nal_length_size
        ),
        (100, 13, 320, 240, 4)
    );
    let Codec::Aac(a) = &list[1].codec else {
        panic!("audio second")
    };
    assert_eq!(
        (
            a.sample_rate_hz,
            a.channels,
            a.audio_specific_config.as_slice()
        ),
        (44_100, 2, &[0x12, 0x10][..])
    );

    let nalus = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06];
    let mut bytes = video_frame(true, 40, &nalus, 1000);
    bytes.extend(audio_frame(&[0x21, 0x10, 0x05], 1000));
    // 1024 samples at 44.1 kHz = 23.2 ms: RTMP says 1023, the frame lands at 1000 ms + 1024.
    bytes.extend(audio_frame(&[0x21, 0x10, 0x06], 1023));
    bytes.extend(video_frame(false, 0, &[0, 0, 0, 1, 0x41], 1033));
    let out = feed(&mut conn, &bytes);
    let f = frames(&out);
    assert_eq!(f.len(), 4);
    assert_eq!(
        (f[0].track, f[0].dts, f[0].pts, f[0].sync),
        (0, 90_000, 93_600, true)
    );
    assert_eq!(&f[0].data[..], &nalus[..]);
    assert_eq!((f[1].track, f[1].pts, f[1].sync), (1, 44_100, true));
    assert_eq!(&f[1].data[..], &[0x21, 0x10, 0x05]);
    assert_eq!(f[2].pts, 44_100 + 1024);
    assert_eq!(
        (f[3].dts, f[3].pts, f[3].sync),
        (1033 * 90, 1033 * 90, false)
    );
    let frame = f[3].as_frame();
    assert_eq!((frame.track, frame.data), (0, &[0, 0, 0, 1, 0x41][..]));
    assert_eq!(conn.dropped(DropReason::Malformed), 0);
}

#[test]
fn without_metadata_the_first_coded_frame_closes_the_track_set() {
    let mut conn = accepted("live", "cam");
    let out = feed(&mut conn, &video_header(&hex(AVCC_720_BASELINE), 0));
    assert!(tracks(&out).is_empty());
    let out = feed(&mut conn, &video_frame(true, 0, &[0, 0, 0, 1, 0x65], 0));
    assert_eq!(tracks(&out).len(), 1);
    assert_eq!(tracks(&out)[0].len(), 1);
    assert_eq!(frames(&out).len(), 1);
    // Audio appearing later is added after video: video keeps index 0.
    let out = feed(&mut conn, &audio_header(&[0x12, 0x10], 10));
    let list = tracks(&out);
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].iter().map(|t| t.kind).collect::<Vec<_>>(),
        [TrackKind::Video, TrackKind::Audio]
    );
}

#[test]
fn a_promised_track_that_never_comes_is_given_up_after_one_second() {
    let mut conn = accepted("live", "cam");
    let mut bytes = metadata(true, true);
    bytes.extend(video_header(&hex(AVCC_320), 0));
    bytes.extend(video_frame(true, 0, &[0, 0, 0, 1, 0x65], 0));
    bytes.extend(video_frame(false, 0, &[0, 0, 0, 1, 0x41], 500));
    let out = feed(&mut conn, &bytes);
    assert!(tracks(&out).is_empty());
    assert!(frames(&out).is_empty());
    assert_eq!(conn.dropped(DropReason::Incomplete), 2);
    let out = feed(&mut conn, &video_frame(false, 0, &[0, 0, 0, 1, 0x41], 1000));
    assert_eq!(tracks(&out).len(), 1);
    assert_eq!(frames(&out).len(), 1);
}

#[test]
fn changed_sequence_header_announces_again_and_same_one_does_not() {
    let mut conn = accepted("live", "cam");
    let mut bytes = metadata(true, false);
    bytes.extend(video_header(&hex(AVCC_320), 0));
    assert_eq!(tracks(&feed(&mut conn, &bytes)).len(), 1);
    assert!(tracks(&feed(&mut conn, &video_header(&hex(AVCC_320), 40))).is_empty());
    let out = feed(&mut conn, &video_header(&hex(AVCC_1080), 80));
    let list = tracks(&out);
    assert_eq!(list.len(), 1);
    let Codec::H264(v) = &list[0][0].codec else {
        panic!("h264")
    };
    assert_eq!((v.width, v.height), (1920, 1080));
}

#[test]
fn two_byte_nal_lengths_come_out_with_four() {
    let mut conn = accepted("live", "cam");
    let mut record = hex(AVCC_320);
    record[4] = 0xfd; // lengthSizeMinusOne = 1
    let mut bytes = metadata(true, false);
    bytes.extend(video_header(&record, 0));
    bytes.extend(video_frame(true, 0, &[0, 2, 0x65, 0x88, 0, 1, 0x06], 0));
    // A length past the end: dropped and counted, the stream goes on.
    bytes.extend(video_frame(false, 0, &[0, 9, 0x41], 33));
    bytes.extend(video_frame(false, 0, &[0, 1, 0x41], 66));
    let out = feed(&mut conn, &bytes);
    let Codec::H264(v) = &tracks(&out)[0][0].codec else {
        panic!("h264")
    };
    assert_eq!(
        v.nal_length_size, 4,
        "the announced config describes the rewritten frames"
    );
    let f = frames(&out);
    assert_eq!(f.len(), 2);
    assert_eq!(&f[0].data[..], &[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06]);
    assert_eq!(&f[1].data[..], &[0, 0, 0, 1, 0x41]);
    assert_eq!(conn.dropped(DropReason::Malformed), 1);
}

#[test]
fn timestamps_unfold_across_the_32_bit_wrap() {
    let mut conn = accepted("live", "cam");
    let mut bytes = metadata(true, false);
    bytes.extend(video_header(&hex(AVCC_320), 0xffff_ff00));
    // Extended timestamps (>= 0xffffff) just below 2^32, then past the wrap.
    bytes.extend(video_frame(true, 0, &[0, 0, 0, 1, 0x65], 0xffff_ffe0));
    bytes.extend(video_frame(false, 0, &[0, 0, 0, 1, 0x41], 0x0000_0010));
    let out = feed(&mut conn, &bytes);
    let f = frames(&out);
    assert_eq!(f.len(), 2);
    let first_ms = 0xffff_ffe0_i64;
    assert_eq!(f[0].dts, first_ms * 90);
    assert_eq!(
        f[1].dts - f[0].dts,
        48 * 90,
        "0x10 follows 0xffffffe0 by 48 ms"
    );
}

#[test]
fn reject_answers_an_error_and_media_is_ignored() {
    let (mut conn, out) = publishing("other", "wrong");
    let Some(RtmpEvent::PublishRequested { request_id, .. }) = out
        .iter()
        .find(|e| matches!(e, RtmpEvent::PublishRequested { .. }))
    else {
        panic!("publish requested")
    };
    let mut out = Vec::new();
    assert!(matches!(
        conn.accept_publish(request_id + 7, &mut out),
        Err(RtmpError::UnknownRequest(_))
    ));
    conn.reject(*request_id, "unknown stream key", &mut out)
        .expect("reject");
    let sent = sends(&out);
    assert!(contains(&sent, b"_error"));
    assert!(contains(&sent, b"NetStream.Publish.Denied"));
    assert!(contains(&sent, b"unknown stream key"));
    let mut bytes = video_header(&hex(AVCC_320), 0);
    bytes.extend(video_frame(true, 0, &[0, 0, 0, 1, 0x65], 0));
    let out = feed(&mut conn, &bytes);
    assert!(frames(&out).is_empty() && tracks(&out).is_empty());
}

#[test]
fn unsupported_codec_ends_the_connection_naming_it() {
    let mut conn = accepted("live", "cam");
    let hevc = message(6, 0, 9, 1, &[0x90, b'h', b'v', b'c', b'1', 1], 128);
    let mut out = Vec::new();
    let err = conn.receive(&hevc, &mut out).expect_err("hevc refused");
    assert!(err.to_string().contains("HEVC"), "{err}");
    assert!(matches!(
        conn.receive(&[0], &mut out),
        Err(RtmpError::Failed)
    ));
}

#[test]
fn unpublish_and_delete_stream_close_once() {
    let mut conn = accepted("live", "cam");
    let mut bytes = message(
        3,
        0,
        20,
        0,
        &amf(vec![s("FCUnpublish"), n(5.0), Amf0Value::Null, s("cam")]),
        128,
    );
    bytes.extend(message(
        3,
        0,
        20,
        0,
        &amf(vec![s("deleteStream"), n(6.0), Amf0Value::Null, n(1.0)]),
        128,
    ));
    let out = feed(&mut conn, &bytes);
    let closed: Vec<_> = out
        .iter()
        .filter(|e| matches!(e, RtmpEvent::Closed { .. }))
        .collect();
    assert_eq!(
        closed,
        [&RtmpEvent::Closed {
            reason: CloseReason::Unpublished
        }]
    );
}

#[test]
fn a_second_publish_is_an_error() {
    let mut conn = accepted("live", "cam");
    let again = message(
        8,
        0,
        20,
        1,
        &amf(vec![
            s("publish"),
            n(4.0),
            Amf0Value::Null,
            s("k2"),
            s("live"),
        ]),
        128,
    );
    let mut out = Vec::new();
    assert!(matches!(
        conn.receive(&again, &mut out),
        Err(RtmpError::SecondPublish)
    ));
}

#[test]
fn bytes_may_arrive_one_at_a_time() {
    let mut conn = RtmpConnection::new();
    let mut bytes = hello();
    bytes.extend(message(
        3,
        0,
        20,
        0,
        &amf(vec![s("connect"), n(1.0), object(&[("app", s("live"))])]),
        128,
    ));
    bytes.extend(message(
        3,
        0,
        20,
        0,
        &amf(vec![s("createStream"), n(2.0), Amf0Value::Null]),
        128,
    ));
    bytes.extend(message(
        8,
        0,
        20,
        1,
        &amf(vec![
            s("publish"),
            n(3.0),
            Amf0Value::Null,
            s("k"),
            s("live"),
        ]),
        128,
    ));
    let mut out = Vec::new();
    for b in &bytes {
        conn.receive(std::slice::from_ref(b), &mut out)
            .expect("receive");
    }
    assert!(out
        .iter()
        .any(|e| matches!(e, RtmpEvent::PublishRequested { key, .. } if key == "k")));
}

// ---------------------------------------------------------------------------------------------
// The chunk guard: each of these inputs panics rml_rtmp 0.8 (debug) or worse without it.

fn after_handshake(bytes: &[u8]) -> Result<(), RtmpError> {
    let mut conn = RtmpConnection::new();
    let mut out = Vec::new();
    conn.receive(&hello(), &mut out)?;
    conn.receive(bytes, &mut out)
}

fn chunk_error(bytes: &[u8]) -> ChunkError {
    match after_handshake(bytes) {
        Err(RtmpError::Chunk(e)) => e,
        other => panic!("expected a chunk error, got {other:?}"),
    }
}

#[test]
fn guard_refuses_commands_with_fewer_than_three_values() {
    // rml: `arguments.drain(..3)` panics.
    let bytes = message(3, 0, 20, 0, &amf(vec![s("connect"), n(1.0)]), 128);
    assert_eq!(
        chunk_error(&bytes),
        ChunkError::Amf("command with fewer than 3 values")
    );
}

#[test]
fn guard_refuses_a_short_set_data_frame() {
    // rml: `data[0]` / `data.remove(1)` panic once connected and publishing.
    let mut conn = accepted("live", "cam");
    let bytes = message(
        4,
        0,
        18,
        1,
        &amf(vec![s("@setDataFrame"), s("onMetaData")]),
        128,
    );
    let mut out = Vec::new();
    assert!(matches!(
        conn.receive(&bytes, &mut out),
        Err(RtmpError::Chunk(ChunkError::Amf(_)))
    ));
}

#[test]
fn guard_refuses_an_extended_timestamp_delta_below_0xffffff() {
    // A type 0 chunk, then a type 1 chunk with delta field 0xffffff and extended value 5:
    // rml computes 5 - 0xffffff.
    let mut bytes = message(
        3,
        0,
        20,
        0,
        &amf(vec![s("createStream"), n(2.0), Amf0Value::Null]),
        128,
    );
    bytes.extend([0x43, 0xff, 0xff, 0xff, 0, 0, 1, 20, 0, 0, 0, 5, 5]);
    assert_eq!(chunk_error(&bytes), ChunkError::ExtendedTimestamp);
}

#[test]
fn guard_refuses_interleaved_chunk_streams() {
    // 300 bytes on chunk stream 6 (3 chunks of 128), interrupted after the first chunk by a
    // new message on stream 4 shorter than what was received: rml's `length - received`
    // underflows.
    let video = message(6, 0, 9, 1, &[0x17; 300], 128);
    let mut bytes = video[..12 + 128].to_vec();
    bytes.extend(message(4, 0, 8, 1, &[0xaf, 1, 2], 128));
    assert_eq!(chunk_error(&bytes), ChunkError::Interleaved(4));
}

#[test]
fn guard_refuses_deep_amf_nesting() {
    // 8000 nested objects {"a": {"a": ...}} (4 bytes a level): rml recurses per level.
    let mut body = amf(vec![s("connect"), n(1.0)]);
    for _ in 0..8000 {
        body.extend([0x03, 0x00, 0x01, b'a']);
    }
    let bytes = message(3, 0, 20, 0, &body, 128);
    assert_eq!(chunk_error(&bytes), ChunkError::Amf("nested too deep"));
}

#[test]
fn guard_refuses_bad_chunk_and_window_sizes() {
    assert_eq!(
        chunk_error(&message(2, 0, 1, 0, &0u32.to_be_bytes(), 128)),
        ChunkError::ChunkSize
    );
    assert_eq!(
        chunk_error(&message(2, 0, 1, 0, &[0, 1], 128)),
        ChunkError::ChunkSize
    );
    assert_eq!(
        chunk_error(&message(2, 0, 5, 0, &u32::MAX.to_be_bytes(), 128)),
        ChunkError::WindowSize
    );
}

#[test]
fn guard_follows_a_changed_chunk_size() {
    // After Set Chunk Size 4096 a 1000-byte message is one chunk: a guard still at 128 would
    // read its tail as headers.
    let mut conn = accepted("live", "cam");
    let mut bytes = message(2, 0, 1, 0, &4096u32.to_be_bytes(), 128);
    bytes.extend(metadata(true, false));
    bytes.extend(video_header(&hex(AVCC_320), 0));
    let mut nalus = vec![0, 0, 3, 0xe0, 0x65];
    nalus.resize(4 + 0x3e0, 0x11);
    let mut tag = vec![0x17, 1, 0, 0, 0];
    tag.extend_from_slice(&nalus);
    bytes.extend(message(6, 0, 9, 1, &tag, 4096));
    let out = feed(&mut conn, &bytes);
    assert_eq!(frames(&out).len(), 1);
    assert_eq!(frames(&out)[0].data.len(), nalus.len());
}

#[test]
fn guard_bounds_chunk_streams_commands_and_streams() {
    let mut bytes = Vec::new();
    for id in 0..70u8 {
        // Two-byte basic headers: chunk stream ids 64 + id.
        bytes.extend([0x00, id, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    }
    assert_eq!(chunk_error(&bytes), ChunkError::TooManyChunkStreams);
    let big = vec![0u8; chunk::MAX_COMMAND_BYTES + 1];
    assert_eq!(
        chunk_error(&message(3, 0, 20, 0, &big, 128)),
        ChunkError::CommandTooLarge
    );
    let mut many = message(
        3,
        0,
        20,
        0,
        &amf(vec![s("connect"), n(1.0), object(&[("app", s("live"))])]),
        128,
    );
    for i in 0..20 {
        many.extend(message(
            3,
            0,
            20,
            0,
            &amf(vec![s("createStream"), n(f64::from(i)), Amf0Value::Null]),
            128,
        ));
    }
    assert_eq!(chunk_error(&many), ChunkError::TooManyStreams);
}

#[test]
fn handshake_with_a_wrong_version_is_an_error() {
    let mut conn = RtmpConnection::new();
    let mut out = Vec::new();
    assert!(matches!(
        conn.receive(b"GET / HTTP/1.1\r\n", &mut out),
        Err(RtmpError::Handshake(_))
    ));
}

#[test]
fn fuzz_smoke() {
    fuzz_rtmp(&[]);
    fuzz_rtmp(&[1, 0xff, 0xff]);
    let mut seed = vec![200];
    seed.extend(message(
        3,
        0,
        20,
        0,
        &amf(vec![s("connect"), n(1.0), object(&[("app", s("live"))])]),
        128,
    ));
    fuzz_rtmp(&seed);
}

/// ffmpeg 5.1's publish as it arrived on the socket (after its handshake): connect,
/// releaseStream, FCPublish, createStream, publish, @setDataFrame, both sequence headers and
/// the first frames (`fuzz/seeds/rtmp`, captured with `RTMP_CAPTURE` in `tests/ingest_rtmp.rs`).
const FFMPEG_OPENING: &[u8] = include_bytes!("../../../fuzz/seeds/rtmp/ffmpeg-5.1_publish_opening");

#[test]
fn ffmpeg_capture_replays_to_a_publish_tracks_and_frames() {
    let mut conn = RtmpConnection::new();
    let mut events = feed(&mut conn, &hello());
    // The seed's first byte is the fuzz harness's read size; the chunk stream follows.
    for piece in FFMPEG_OPENING[1..].chunks(1000) {
        let out = feed(&mut conn, piece);
        let mut more = Vec::new();
        for e in &out {
            if let RtmpEvent::PublishRequested { request_id, .. } = e {
                conn.accept_publish(*request_id, &mut more).expect("accept");
            }
        }
        events.extend(out);
        // What arrived behind the publish comes out when it is accepted.
        events.extend(more);
    }
    assert!(events.iter().any(|e| matches!(e, RtmpEvent::PublishRequested { app, key, .. } if app == "live" && key == "testkey")));
    let list = tracks(&events);
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].iter().map(|t| t.kind).collect::<Vec<_>>(),
        [TrackKind::Video, TrackKind::Audio]
    );
    let f = frames(&events);
    assert!(!f.is_empty());
    let first_video = f.iter().find(|f| f.track == 0).expect("a video frame");
    assert!(first_video.sync, "video starts at a keyframe");
    assert!(f.iter().any(|f| f.track == 1), "audio frames");
    assert_eq!(
        conn.dropped(DropReason::Malformed) + conn.dropped(DropReason::Incomplete),
        0
    );
}

#[test]
fn fuzz_seeds_replay() {
    fuzz_rtmp(FFMPEG_OPENING);
    fuzz_rtmp(include_bytes!(
        "../../../fuzz/seeds/rtmp/ffmpeg-5.1_publish_small_reads"
    ));
}

/// A publisher's opening (connect, createStream, publish, metadata, sequence headers) for the
/// properties to mutate and extend.
fn opening() -> Vec<u8> {
    let mut bytes = message(
        3,
        0,
        20,
        0,
        &amf(vec![s("connect"), n(1.0), object(&[("app", s("live"))])]),
        128,
    );
    bytes.extend(message(
        3,
        0,
        20,
        0,
        &amf(vec![s("createStream"), n(2.0), Amf0Value::Null]),
        128,
    ));
    bytes.extend(message(
        8,
        0,
        20,
        1,
        &amf(vec![
            s("publish"),
            n(3.0),
            Amf0Value::Null,
            s("k"),
            s("live"),
        ]),
        128,
    ));
    bytes.extend(metadata(true, true));
    bytes.extend(video_header(&hex(AVCC_320), 0));
    bytes.extend(audio_header(&[0x12, 0x10], 0));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes after the handshake: an error or events, never a panic or a frame over the
    /// access unit limit (see [`fuzz_rtmp`]).
    #[test]
    fn arbitrary_bytes_do_not_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzz_rtmp(&data);
    }

    /// A valid opening with bytes flipped and garbage appended reaches the media paths.
    #[test]
    fn mutated_publisher_does_not_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
        step in 1u8..255,
    ) {
        let mut data = vec![step];
        data.extend(opening());
        for (at, v) in flips {
            let i = 1 + at % (data.len() - 1);
            data[i] ^= v;
        }
        data.extend(tail);
        fuzz_rtmp(&data);
    }

    /// The guard's AMF0 walk agrees with rml_amf0 on the number of top-level values whenever it
    /// accepts (the guard's "fewer than 3 values" check relies on it).
    #[test]
    fn amf_scan_counts_values_as_rml_does(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(summary) = scan_amf0(&data) {
            if let Ok(values) = rml_amf0::deserialize(&mut std::io::Cursor::new(&data)) {
                prop_assert_eq!(values.len(), summary.values);
            }
        }
    }
}

#[test]
fn bytes_behind_a_pending_publish_are_held_and_bounded() {
    let (mut conn, _) = publishing("live", "cam");
    // Held, not lost: the tracks come out of the accept.
    let mut bytes = metadata(true, false);
    bytes.extend(video_header(&hex(AVCC_320), 0));
    assert!(tracks(&feed(&mut conn, &bytes)).is_empty());
    // More than MAX_HELD_BYTES before an answer ends the connection.
    let frame = video_frame(false, 0, &vec![0x41; 60_000], 0);
    let mut out = Vec::new();
    let mut result = Ok(());
    for _ in 0..(MAX_HELD_BYTES / frame.len() + 2) {
        result = conn.receive(&frame, &mut out);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(RtmpError::Unanswered)), "{result:?}");
}

#[test]
fn accepting_releases_what_arrived_meanwhile() {
    let (mut conn, out) = publishing("live", "cam");
    let Some(RtmpEvent::PublishRequested { request_id, .. }) = out
        .iter()
        .find(|e| matches!(e, RtmpEvent::PublishRequested { .. }))
    else {
        panic!("publish requested")
    };
    let mut bytes = metadata(true, false);
    bytes.extend(video_header(&hex(AVCC_320), 0));
    bytes.extend(video_frame(true, 0, &[0, 0, 0, 1, 0x65], 0));
    assert!(frames(&feed(&mut conn, &bytes)).is_empty());
    let mut out = Vec::new();
    conn.accept_publish(*request_id, &mut out).expect("accept");
    assert_eq!(tracks(&out).len(), 1);
    assert_eq!(frames(&out).len(), 1);
}
