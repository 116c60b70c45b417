//! Unit tests of the ANNOUNCE reader: real ANNOUNCE bodies from ffmpeg and GStreamer
//! (`tests/fixtures/ingest/`), each codec parameter, and hostile descriptions.

use super::*;

const FFMPEG: &str = include_str!("../../../tests/fixtures/ingest/ffmpeg-5.1_announce.txt");
const GST: &str = include_str!("../../../tests/fixtures/ingest/gst-1.22_announce.txt");

#[test]
fn ffmpeg_announce_gives_h264_and_aac() {
    let a = parse_announce(FFMPEG).expect("ffmpeg's ANNOUNCE parses");
    assert!(a.skipped.is_empty(), "{:?}", a.skipped);
    assert_eq!(a.tracks.len(), 2);
    let v = &a.tracks[0];
    assert_eq!(
        (v.control.as_str(), v.payload_type, v.kind),
        ("streamid=0", 96, TrackKind::Video)
    );
    assert_eq!(
        v.format,
        PayloadFormat::H264 {
            packetization_mode: 1
        }
    );
    let Codec::H264(h) = &v.codec else {
        panic!("not H.264: {:?}", v.codec)
    };
    // profile-level-id=64000D; the clip ffmpeg sent was 320x240.
    assert_eq!(
        (h.profile_idc, h.profile_compat, h.level_idc),
        (0x64, 0x00, 0x0d)
    );
    assert_eq!((h.width, h.height, h.nal_length_size), (320, 240, 4));
    assert_eq!(h.sps.len(), 1);
    assert_eq!(h.pps, vec![vec![0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0]]);
    let au = &a.tracks[1];
    assert_eq!(
        (au.control.as_str(), au.payload_type, au.kind),
        ("streamid=1", 97, TrackKind::Audio)
    );
    let Codec::Aac(c) = &au.codec else {
        panic!("not AAC")
    };
    assert_eq!(
        (c.object_type, c.sample_rate_hz, c.channels),
        (2, 48_000, 1)
    );
    assert_eq!(c.audio_specific_config, vec![0x11, 0x88, 0x56, 0xe5, 0x00]);
    let PayloadFormat::Aac(f) = au.format else {
        panic!("not AAC format")
    };
    assert_eq!(
        (f.size_length, f.index_length, f.index_delta_length),
        (13, 3, 3)
    );
    assert_eq!(
        (
            f.cts_delta_length,
            f.auxiliary_data_size_length,
            f.frame_length
        ),
        (0, 0, 1024)
    );
}

#[test]
fn gstreamer_announce_gives_latm_aac_and_h264() {
    let a = parse_announce(GST).expect("rtspclientsink's ANNOUNCE parses");
    assert!(a.skipped.is_empty(), "{:?}", a.skipped);
    assert_eq!(a.tracks.len(), 2);
    let au = &a.tracks[0];
    assert_eq!(
        (au.control.as_str(), au.payload_type, au.kind),
        ("stream=1", 96, TrackKind::Audio)
    );
    // config=40002410: audioMuxVersion 0, one subframe, one program and layer, then the
    // AudioSpecificConfig 0x1208 one bit in (AAC-LC, 44.1 kHz, mono), cut short after it.
    let Codec::Aac(c) = &au.codec else {
        panic!("not AAC: {:?}", au.codec)
    };
    assert_eq!(c.audio_specific_config, vec![0x12, 0x08]);
    assert_eq!(
        (c.object_type, c.sample_rate_hz, c.channels),
        (2, 44_100, 1)
    );
    assert_eq!(
        au.format,
        PayloadFormat::Latm(LatmFormat {
            sub_frames: 1,
            frame_length: 1024
        })
    );
    let v = &a.tracks[1];
    assert_eq!((v.control.as_str(), v.payload_type), ("stream=0", 99));
    let Codec::H264(h) = &v.codec else {
        panic!("not H.264")
    };
    // x264enc on videotestsrc's 4:4:4 default: High 4:4:4 Predictive (244), 320x240.
    assert_eq!((h.profile_idc, h.width, h.height), (244, 320, 240));
}

/// A track skipped keeps its control and payload type for the RTSP core; its Display is the
/// log line.
#[test]
fn skipped_tracks_keep_control_and_payload_type() {
    let sdp = GST.replace("MP4A-LATM/44100", "VP8/90000");
    let a = parse_announce(&sdp).expect("the H.264 track is carried");
    assert_eq!(a.tracks.len(), 1);
    assert_eq!(
        a.skipped,
        vec![SkippedTrack {
            control: "stream=1".into(),
            payload_type: Some(96),
            media: "audio 96 VP8/90000".into(),
            reason: "unsupported codec".into(),
        }]
    );
    assert_eq!(
        a.skipped[0].to_string(),
        "m=audio 96 VP8/90000: unsupported codec"
    );
}

/// The StreamMuxConfigs other senders write: ffmpeg's `latm_context2config` (every field
/// through crcCheckPresent), GStreamer's from an MP4 with the SBR sync extension in its
/// `esds`, a version 1 config with ascLen, and what is refused.
#[test]
fn latm_stream_mux_configs() {
    let track = |fmtp: &str, rtpmap: &str| {
        let sdp = format!(
            "v=0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 {rtpmap}\r\na=fmtp:96 {fmtp}\r\na=control:a\r\n"
        );
        parse_announce(&sdp).map(|a| a.tracks[0].clone())
    };
    let aac = |t: &AnnouncedTrack| match (&t.codec, t.format) {
        (Codec::Aac(c), PayloadFormat::Latm(f)) => (c.clone(), f),
        other => panic!("not LATM AAC: {other:?}"),
    };
    // ffmpeg 5.1 sdp.c for 48 kHz stereo: 40 00 23 20 3f c0 = ... ASC 1190, frameLengthType 0,
    // latmBufferFullness 0xff, no other data, no CRC.
    let t = track(
        "profile-level-id=30;cpresent=0;config=400023203fc0",
        "MP4A-LATM/48000/2",
    )
    .expect("ffmpeg's config");
    let (c, f) = aac(&t);
    assert_eq!(c.audio_specific_config, vec![0x11, 0x90]);
    assert_eq!((c.sample_rate_hz, c.channels), (48_000, 2));
    assert_eq!((f.sub_frames, f.frame_length), (1, 1024));
    // GStreamer from sample.mp4: its esds ASC 11 90 56 e5 00 (0x2b7, SBR absent) shifted in.
    let t = track("cpresent=0;config=40002320adca00", "MP4A-LATM/48000").expect("gst");
    let (c, _) = aac(&t);
    assert_eq!(c.audio_specific_config, vec![0x11, 0x90, 0x56, 0xe5, 0x00]);
    // numSubFrames 3, 960-sample frames (frameLengthFlag):
    // 0 1 000011 0000 000 | 00010 0011 0010 100 | 000 11111111 0 0, padded.
    let t = track("cpresent=0;config=430023283fc0", "MP4A-LATM/48000/2").expect("subframes");
    let (c, f) = aac(&t);
    assert_eq!(c.audio_specific_config, vec![0x11, 0x94]);
    assert_eq!((f.sub_frames, f.frame_length), (4, 960));
    // HE-AAC with explicit SBR (AOT 5, core 24 kHz, extension 48 kHz) timed at 48 kHz:
    // a 1024-sample core frame is 2048 ticks.
    // 0 1 000000 0000 000 | 00101 0110 0010 0011 00010 000 | 000 11111111 0 0
    let t = track("cpresent=0;config=40005623101fe0", "MP4A-LATM/48000/2").expect("explicit SBR");
    let (c, f) = aac(&t);
    assert_eq!(c.object_type, 5);
    assert_eq!(f.frame_length, 2048);
    // audioMuxVersion 1, audioMuxVersionA 0, taraBufferFullness 0xff (bytesForValue 0),
    // ascLen 16 (bytesForValue 0), ASC 1190, the tail:
    // 1 0 00 11111111 1 000000 0000 000 00 00010000 | 0001000110010000 | 000 11111111 0 0
    let t = track("cpresent=0;config=8ff80001011901fe00", "MP4A-LATM/48000/2").expect("version 1");
    let (c, f) = aac(&t);
    assert_eq!(c.audio_specific_config, vec![0x11, 0x90]);
    assert_eq!(f.sub_frames, 1);
    // Refused with a reason.
    for (fmtp, why) in [
        ("config=400023203fc0", "cpresent=1"),
        ("cpresent=1;config=400023203fc0", "cpresent=1"),
        ("cpresent=0", "config missing"),
        ("cpresent=0;config=4000232", "bad config"),
        (
            "cpresent=0;config=000023203fc0",
            "allStreamsSameTimeFraming 0",
        ),
        ("cpresent=0;config=401023203fc0", "several programs"),
        ("cpresent=0;config=400223203fc0", "several layers"),
        ("cpresent=0;config=C0", "audioMuxVersionA 1"),
        // frameLengthType 1 (fixed length): ...ASC | 001 ...
        ("cpresent=0;config=400023207fc0", "frameLengthType 1"),
        // otherDataPresent: ... 000 11111111 1 0
        ("cpresent=0;config=400023203fe0", "otherDataPresent"),
        // channelConfiguration 0: a program config element follows.
        ("cpresent=0;config=400023003fc0", "program config element"),
        // AOT 8 (CELP).
        ("cpresent=0;config=400083203fc0", "audio object type 8"),
        // Cut inside the AudioSpecificConfig.
        ("cpresent=0;config=4000", "truncated"),
        // Fewer bits than the tail needs and not zero: not a padded config.
        ("cpresent=0;config=40002321", "truncated"),
    ] {
        let Err(SdpError::NothingToCarry { skipped }) = track(fmtp, "MP4A-LATM/48000/2") else {
            panic!("{fmtp} accepted")
        };
        assert!(skipped[0].contains(why), "{fmtp}: {skipped:?}");
    }
}

/// The caps GStreamer's `rtpmp4gpay` gives an mpeg4-generic stream (voaacenc, 44.1 kHz mono),
/// written as `gst-rtsp-server` announces them.
#[test]
fn gstreamer_style_mpeg4_generic() {
    let sdp = "v=0\r\no=- 1188340656180883 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\n\
               i=rtsp-server\r\nt=0 0\r\na=tool:GStreamer\r\na=type:broadcast\r\na=control:*\r\n\
               a=range:npt=now-\r\nm=audio 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\n\
               a=rtpmap:96 MPEG4-GENERIC/44100/1\r\n\
               a=fmtp:96 streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1208;sizelength=13;indexlength=3;indexdeltalength=3\r\n\
               a=control:stream=0\r\n";
    let a = parse_announce(sdp).expect("parses");
    let t = &a.tracks[0];
    assert_eq!(t.control, "stream=0");
    let Codec::Aac(c) = &t.codec else {
        panic!("not AAC")
    };
    assert_eq!((c.sample_rate_hz, c.channels), (44_100, 1));
    let PayloadFormat::Aac(f) = t.format else {
        panic!("not AAC format")
    };
    assert_eq!(
        (
            f.size_length,
            f.index_length,
            f.index_delta_length,
            f.frame_length
        ),
        (13, 3, 3, 1024)
    );
}

#[test]
fn aac_parameters_are_honoured() {
    // AAC-lbr field lengths, a 960-sample frame (frameLengthFlag set: 0x11 0x94 = AOT 2,
    // 48 kHz, 2 channels, flag 1), CTS/DTS deltas and RAP flags, LF line ends, lowercase.
    let sdp = "v=0\nm=audio 0 RTP/AVP 100\na=rtpmap:100 mpeg4-generic/48000/2\n\
               a=fmtp:100 mode=aac-lbr; SizeLength=6; IndexLength=2; IndexDeltaLength=2; \
               CTSDeltaLength=4; dtsdeltalength=3; randomAccessIndication=1; \
               streamStateIndication=2; auxiliaryDataSizeLength=5; config=1194\n";
    let a = parse_announce(sdp).expect("parses");
    let PayloadFormat::Aac(f) = a.tracks[0].format else {
        panic!("not AAC")
    };
    assert_eq!(
        f,
        AuHeaderFormat {
            size_length: 6,
            index_length: 2,
            index_delta_length: 2,
            cts_delta_length: 4,
            dts_delta_length: 3,
            random_access_indication: true,
            stream_state_indication: 2,
            auxiliary_data_size_length: 5,
            frame_length: 960,
        }
    );
    assert_eq!(a.tracks[0].control, "");
    // constantDuration wins over the config.
    let sdp = sdp.replace("config=1194", "constantDuration=2048;config=1194");
    let PayloadFormat::Aac(f) = parse_announce(&sdp).expect("parses").tracks[0].format else {
        panic!("not AAC")
    };
    assert_eq!(f.frame_length, 2048);
}

#[test]
fn h264_without_parameter_sets_uses_profile_level_id() {
    let sdp = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
               a=fmtp:96 profile-level-id=42e01f\r\na=control:rtsp://cam/live/track1\r\n";
    let a = parse_announce(sdp).expect("parses");
    let t = &a.tracks[0];
    assert_eq!(t.control, "rtsp://cam/live/track1");
    assert_eq!(
        t.format,
        PayloadFormat::H264 {
            packetization_mode: 0
        }
    );
    let Codec::H264(h) = &t.codec else {
        panic!("not H.264")
    };
    assert_eq!(
        (h.profile_idc, h.profile_compat, h.level_idc),
        (0x42, 0xe0, 0x1f)
    );
    assert!(h.sps.is_empty() && h.pps.is_empty());
}

#[test]
fn picks_the_first_supported_format_of_a_section() {
    let sdp = "v=0\nm=video 0 RTP/AVP 97 96\na=rtpmap:97 VP8/90000\na=rtpmap:96 H264/90000\n\
               a=fmtp:96 packetization-mode=1\n";
    let a = parse_announce(sdp).expect("parses");
    assert_eq!(a.tracks[0].payload_type, 96);
    assert!(a.skipped.is_empty());
}

#[test]
fn unsupported_sections_are_listed_with_reasons() {
    let sdp = "v=0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
        m=video 0 RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=2\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=!!!,aOvDyyLA\r\n\
        m=audio 0 RTP/AVP 0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\na=fmtp:97 mode=CELP-cbr;config=1190\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\na=fmtp:97 mode=AAC-hbr;sizelength=13;config=zz\r\n\
        m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n";
    let Err(SdpError::NothingToCarry { skipped }) = parse_announce(sdp) else {
        panic!("nothing here can be carried")
    };
    assert_eq!(
        skipped,
        [
            "m=video 96 VP8/90000: unsupported codec",
            "m=video RTP/SAVP: unsupported transport profile",
            "m=video 96 H264/90000: packetization-mode 2 (interleaved) unsupported",
            "m=video 96 H264/90000: bad base64 in sprop-parameter-sets !!!",
            "m=audio 0: unsupported codec",
            "m=audio 97 mpeg4-generic/48000/2: unsupported mode CELP-cbr",
            "m=audio 97 mpeg4-generic/48000/2: bad config zz",
            "m=application 107 vnd.onvif.metadata/90000: unsupported codec",
        ]
    );
}

#[test]
fn hostile_descriptions_fail_bounded() {
    assert_eq!(parse_announce(""), Err(SdpError::NotSdp));
    assert_eq!(parse_announce("hello\r\nv=0\r\n"), Err(SdpError::NotSdp));
    let huge = format!("v=0\r\na={}\r\n", "x".repeat(MAX_SDP_BYTES));
    assert!(matches!(
        parse_announce(&huge),
        Err(SdpError::TooLarge { .. })
    ));
    let many = format!(
        "v=0\n{}",
        "m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\n".repeat(1000)
    );
    assert_eq!(
        parse_announce(&many),
        Err(SdpError::TooManyMedia {
            max: MAX_MEDIA_SECTIONS
        })
    );
    let sets = vec!["Z2QADayyAoP2AiAAAAMAIAAABkHihUk="; MAX_PARAMETER_SETS + 1].join(",");
    let sdp = format!("v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 sprop-parameter-sets={sets}\n");
    let Err(SdpError::NothingToCarry { skipped }) = parse_announce(&sdp) else {
        panic!()
    };
    assert!(skipped[0].contains("more than 16"), "{skipped:?}");
    // A long quoted value is cut in the reason.
    let sdp = format!(
        "v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 {}/90000\n",
        "V".repeat(5000)
    );
    let Err(SdpError::NothingToCarry { skipped }) = parse_announce(&sdp) else {
        panic!()
    };
    assert!(skipped[0].len() < 120, "{}", skipped[0]);
    assert_eq!(
        parse_announce("v=0\r\ns=x\r\n"),
        Err(SdpError::NothingToCarry {
            skipped: vec!["no media sections".into()]
        })
    );
    // Bad field lengths and clocks.
    for fmtp in [
        "sizelength=33",
        "sizelength=0",
        "sizelength=x",
        "indexlength=200",
    ] {
        let sdp = format!("v=0\nm=audio 0 RTP/AVP 97\na=rtpmap:97 mpeg4-generic/48000\na=fmtp:97 mode=AAC-hbr;config=1190;{fmtp}\n");
        assert!(parse_announce(&sdp).is_err(), "{fmtp}");
    }
    let sdp = "v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/1000\n";
    assert!(parse_announce(sdp).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    /// Any text, and any mutation of a real ANNOUNCE, parses or fails without panicking.
    #[test]
    fn any_text_does_not_panic(s in "(?s).{0,400}", cut in 0usize..700, byte in proptest::prelude::any::<u8>()) {
        fuzz_announce(s.as_bytes());
        let mut real = FFMPEG.as_bytes().to_vec();
        if let Some(b) = real.get_mut(cut) {
            *b = byte;
        }
        fuzz_announce(&real);
        fuzz_announce(&real[..cut.min(real.len())]);
    }
}
