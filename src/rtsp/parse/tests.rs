//! Unit tests of the RTSP message parser: the requests real players send (ffmpeg, GStreamer,
//! VLC/live555, retina), framing (bare LF, bodies, pipelining, a split at every byte,
//! interleaved `$` frames), hostile input against the limits, the error → status table, and a
//! proptest property over mutated and random input.

use super::*;

fn lim() -> Limits {
    Limits::default()
}

fn req(buf: &[u8]) -> (Request, usize) {
    match parse_message(buf, &lim()) {
        Ok(Some(Parsed::Request { request, consumed })) => (request, consumed),
        other => panic!("expected a request, got {other:?}"),
    }
}

fn err(buf: &[u8]) -> ParseError {
    match parse_message(buf, &lim()) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Parses everything complete in `buf`: the items and the bytes left over.
fn parse_all(buf: &[u8]) -> (Vec<Parsed>, usize) {
    let mut out = Vec::new();
    let mut off = 0;
    while let Some(p) = parse_message(&buf[off..], &lim()).expect("valid stream") {
        off += match &p {
            Parsed::Request { consumed, .. }
            | Parsed::Interleaved { consumed, .. }
            | Parsed::Response { consumed, .. } => *consumed,
        };
        out.push(p);
    }
    (out, off)
}

// ---- fixtures, in the byte form each client sends ----

const FFMPEG_OPTIONS: &[u8] = b"OPTIONS rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
CSeq: 1\r\n\
User-Agent: Lavf59.27.100\r\n\
\r\n";
const FFMPEG_DESCRIBE: &[u8] = b"DESCRIBE rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
Accept: application/sdp\r\n\
CSeq: 2\r\n\
User-Agent: Lavf59.27.100\r\n\
\r\n";
const FFMPEG_SETUP_UDP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/sample/trackID=1 RTSP/1.0\r\n\
Transport: RTP/AVP/UDP;unicast;client_port=23048-23049\r\n\
CSeq: 3\r\n\
User-Agent: Lavf59.27.100\r\n\
\r\n";
const FFMPEG_SETUP_TCP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/sample/trackID=2 RTSP/1.0\r\n\
Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\
CSeq: 4\r\n\
User-Agent: Lavf59.27.100\r\n\
Session: 6B8B4567\r\n\
\r\n";
const FFMPEG_PLAY: &[u8] = b"PLAY rtsp://127.0.0.1:8554/sample/ RTSP/1.0\r\n\
Range: npt=0.000-\r\n\
CSeq: 5\r\n\
User-Agent: Lavf59.27.100\r\n\
Session: 6B8B4567\r\n\
\r\n";
const FFMPEG_TEARDOWN: &[u8] = b"TEARDOWN rtsp://127.0.0.1:8554/sample/ RTSP/1.0\r\n\
CSeq: 6\r\n\
User-Agent: Lavf59.27.100\r\n\
Session: 6B8B4567\r\n\
\r\n";

const GST_OPTIONS: &[u8] = b"OPTIONS rtsp://10.0.0.5:8554/sample RTSP/1.0\r\n\
CSeq: 1\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";
const GST_DESCRIBE: &[u8] = b"DESCRIBE rtsp://10.0.0.5:8554/sample RTSP/1.0\r\n\
CSeq: 2\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Accept: application/sdp\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";
const GST_SETUP: &[u8] = b"SETUP rtsp://10.0.0.5:8554/sample/trackID=1 RTSP/1.0\r\n\
CSeq: 3\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Transport: RTP/AVP;unicast;client_port=40508-40509,RTP/AVP/TCP;unicast;interleaved=0-1\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";
const GST_PLAY: &[u8] = b"PLAY rtsp://10.0.0.5:8554/sample/ RTSP/1.0\r\n\
CSeq: 5\r\n\
User-Agent: GStreamer/1.20.3\r\n\
Range: npt=0-\r\n\
Session: 4cd0a4e1d2b0ee17\r\n\
Date: Tue, 07 Feb 2023 10:12:01 GMT\r\n\
\r\n";

const VLC_OPTIONS: &[u8] = b"OPTIONS rtsp://192.168.1.20:8554/sample RTSP/1.0\r\n\
CSeq: 2\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
\r\n";
const VLC_DESCRIBE: &[u8] = b"DESCRIBE rtsp://192.168.1.20:8554/sample RTSP/1.0\r\n\
CSeq: 3\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Accept: application/sdp\r\n\
\r\n";
const VLC_SETUP: &[u8] = b"SETUP rtsp://192.168.1.20:8554/sample/trackID=1 RTSP/1.0\r\n\
CSeq: 4\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\
\r\n";
const VLC_PLAY: &[u8] = b"PLAY rtsp://192.168.1.20:8554/sample/ RTSP/1.0\r\n\
CSeq: 6\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Session: 47112344\r\n\
Range: npt=5-\r\n\
\r\n";
const VLC_GET_PARAMETER: &[u8] = b"GET_PARAMETER rtsp://192.168.1.20:8554/sample/ RTSP/1.0\r\n\
CSeq: 7\r\n\
User-Agent: LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)\r\n\
Session: 47112344\r\n\
\r\n";

const RETINA_OPTIONS: &[u8] = b"OPTIONS rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
CSeq: 1\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";
const RETINA_DESCRIBE: &[u8] = b"DESCRIBE rtsp://127.0.0.1:8554/sample RTSP/1.0\r\n\
Accept: application/sdp\r\n\
CSeq: 2\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";
const RETINA_SETUP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/sample/trackID=1 RTSP/1.0\r\n\
CSeq: 3\r\n\
Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";
const RETINA_PLAY: &[u8] = b"PLAY rtsp://127.0.0.1:8554/sample/ RTSP/1.0\r\n\
CSeq: 5\r\n\
Range: npt=0.000-\r\n\
Session: 9a3f7e21\r\n\
User-Agent: retina_0.4.21\r\n\
\r\n";

const ALL_FIXTURES: &[&[u8]] = &[
    FFMPEG_OPTIONS,
    FFMPEG_DESCRIBE,
    FFMPEG_SETUP_UDP,
    FFMPEG_SETUP_TCP,
    FFMPEG_PLAY,
    FFMPEG_TEARDOWN,
    GST_OPTIONS,
    GST_DESCRIBE,
    GST_SETUP,
    GST_PLAY,
    VLC_OPTIONS,
    VLC_DESCRIBE,
    VLC_SETUP,
    VLC_PLAY,
    VLC_GET_PARAMETER,
    RETINA_OPTIONS,
    RETINA_DESCRIBE,
    RETINA_SETUP,
    RETINA_PLAY,
];

#[test]
fn ffmpeg_session() {
    let (r, n) = req(FFMPEG_OPTIONS);
    assert_eq!(n, FFMPEG_OPTIONS.len());
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.uri, "rtsp://127.0.0.1:8554/sample");
    assert_eq!(r.cseq(), Some(1));
    assert_eq!(r.header("user-agent"), Some("Lavf59.27.100"));
    assert!(r.body.is_empty());

    let (r, _) = req(FFMPEG_DESCRIBE);
    assert_eq!(r.method, Method::Describe);
    assert_eq!(r.header("Accept"), Some("application/sdp"));

    let (r, _) = req(FFMPEG_SETUP_UDP);
    assert_eq!(r.method, Method::Setup);
    assert_eq!(r.uri, "rtsp://127.0.0.1:8554/sample/trackID=1");
    assert_eq!(
        r.header("transport"),
        Some("RTP/AVP/UDP;unicast;client_port=23048-23049")
    );
    assert_eq!(r.session_id(), None);

    let (r, _) = req(FFMPEG_SETUP_TCP);
    assert_eq!(r.session_id(), Some("6B8B4567"));

    let (r, _) = req(FFMPEG_PLAY);
    assert_eq!(r.method, Method::Play);
    assert_eq!(r.header("Range"), Some("npt=0.000-"));
    assert_eq!(r.cseq(), Some(5));

    let (r, _) = req(FFMPEG_TEARDOWN);
    assert_eq!(r.method, Method::Teardown);
}

#[test]
fn gstreamer_session() {
    let (r, _) = req(GST_OPTIONS);
    assert_eq!((r.method, r.cseq()), (Method::Options, Some(1)));
    let (r, _) = req(GST_DESCRIBE);
    assert_eq!(r.header("date"), Some("Tue, 07 Feb 2023 10:12:01 GMT"));
    let (r, _) = req(GST_SETUP);
    assert_eq!(
        r.header("Transport"),
        Some("RTP/AVP;unicast;client_port=40508-40509,RTP/AVP/TCP;unicast;interleaved=0-1")
    );
    let (r, _) = req(GST_PLAY);
    assert_eq!(r.session_id(), Some("4cd0a4e1d2b0ee17"));
    assert_eq!(r.header("range"), Some("npt=0-"));
}

#[test]
fn vlc_live555_session() {
    let (r, _) = req(VLC_OPTIONS);
    assert_eq!(
        r.header("User-Agent"),
        Some("LibVLC/3.0 (LIVE555 Streaming Media v2020.01.01)")
    );
    let (r, _) = req(VLC_SETUP);
    assert_eq!(
        r.header("Transport"),
        Some("RTP/AVP;unicast;client_port=5000-5001")
    );
    let (r, _) = req(VLC_PLAY);
    assert_eq!(r.header("Range"), Some("npt=5-"));
    let (r, _) = req(VLC_GET_PARAMETER);
    assert_eq!(r.method, Method::GetParameter);
    assert_eq!(r.session_id(), Some("47112344"));
    let _ = req(VLC_DESCRIBE);
}

#[test]
fn retina_session() {
    for f in [RETINA_OPTIONS, RETINA_DESCRIBE, RETINA_SETUP, RETINA_PLAY] {
        let (r, n) = req(f);
        assert_eq!(n, f.len());
        assert_eq!(r.header("User-Agent"), Some("retina_0.4.21"));
    }
    let (r, _) = req(RETINA_SETUP);
    assert_eq!(
        r.header("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1")
    );
}

#[test]
fn bare_lf_and_leading_blank_lines() {
    let buf = b"\r\n\nOPTIONS * RTSP/1.0\nCSeq: 9\n\n";
    let (r, n) = req(buf);
    assert_eq!(n, buf.len());
    assert_eq!(r.uri, "*");
    assert_eq!(r.cseq(), Some(9));
}

#[test]
fn body_follows_content_length() {
    let buf = b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 10\r\n\
Content-Type: text/parameters\r\nContent-Length: 12\r\n\r\nbarparam: 1\nOPTIONS";
    let (r, n) = req(buf);
    assert_eq!(r.method, Method::SetParameter);
    assert_eq!(r.body, b"barparam: 1\n");
    assert_eq!(&buf[n..], b"OPTIONS");
    // Body not all there yet.
    assert_eq!(parse_message(&buf[..n - 1], &lim()), Ok(None));
}

#[test]
fn header_values_trimmed_names_case_insensitive() {
    let (r, _) = req(b"OPTIONS * RTSP/1.0\r\ncseq:\t 3 \t\r\nX-Empty:\r\n\r\n");
    assert_eq!(r.cseq(), Some(3));
    assert_eq!(r.header("x-empty"), Some(""));
}

#[test]
fn pipelined_requests_consume_exactly() {
    let stream: Vec<u8> = ALL_FIXTURES.concat();
    let (items, used) = parse_all(&stream);
    assert_eq!(used, stream.len());
    assert_eq!(items.len(), ALL_FIXTURES.len());
    for (item, fixture) in items.iter().zip(ALL_FIXTURES) {
        match item {
            Parsed::Request { consumed, .. } => assert_eq!(*consumed, fixture.len()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn split_at_every_byte_boundary() {
    // A pipelined stream with a body and an interleaved frame in between.
    let mut stream = Vec::new();
    stream.extend_from_slice(GST_SETUP);
    stream.extend_from_slice(&[b'$', 1, 0, 3, 0xaa, 0xbb, 0xcc]);
    stream.extend_from_slice(
        b"SET_PARAMETER rtsp://h/s RTSP/1.0\nCSeq: 4\nContent-Length: 5\n\nhello",
    );
    stream.extend_from_slice(VLC_PLAY);
    let (full, used) = parse_all(&stream);
    assert_eq!(used, stream.len());
    assert_eq!(full.len(), 4);
    for cut in 0..=stream.len() {
        let (items, used) = parse_all(&stream[..cut]);
        assert!(used <= cut);
        assert_eq!(items[..], full[..items.len()], "cut at {cut}");
        // Everything that is complete has been returned.
        let complete = full
            .iter()
            .scan(0, |off, p| {
                *off += match p {
                    Parsed::Request { consumed, .. }
                    | Parsed::Interleaved { consumed, .. }
                    | Parsed::Response { consumed, .. } => *consumed,
                };
                Some(*off)
            })
            .take_while(|&end| end <= cut)
            .count();
        assert_eq!(items.len(), complete, "cut at {cut}");
    }
}

#[test]
fn interleaved_frames_between_requests() {
    let mut stream = Vec::new();
    stream.extend_from_slice(RETINA_SETUP);
    // An RTCP receiver report on channel 1 (8 bytes of RR header).
    stream.extend_from_slice(&[b'$', 1, 0, 8, 0x80, 0xc9, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    stream.extend_from_slice(RETINA_PLAY);
    stream.extend_from_slice(&[b'$', 0, 0, 0]);
    let (items, used) = parse_all(&stream);
    assert_eq!(used, stream.len());
    assert_eq!(
        items[1],
        Parsed::Interleaved {
            channel: 1,
            payload_len: 8,
            consumed: 12
        }
    );
    assert_eq!(
        items[3],
        Parsed::Interleaved {
            channel: 0,
            payload_len: 0,
            consumed: 4
        }
    );
    // Prefix and partial payload are "need more".
    assert_eq!(parse_message(b"$", &lim()), Ok(None));
    assert_eq!(parse_message(&[b'$', 1, 0xff, 0xff, 0], &lim()), Ok(None));
}

#[test]
fn hostile_head_too_large() {
    // A 9 KiB header value, complete...
    let mut buf = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Junk: ".to_vec();
    buf.extend(std::iter::repeat_n(b'a', 9 * 1024));
    let incomplete = buf.clone();
    buf.extend_from_slice(b"\r\n\r\n");
    let e = err(&buf);
    assert_eq!(e.kind, ParseErrorKind::HeadTooLarge);
    assert_eq!(e.cseq, Some(1));
    assert_eq!(e.status(), StatusCode::BadRequest);
    assert_eq!(e.consumed, None);
    // ...and endless, without any line end: detected once past 8 KiB.
    assert_eq!(err(&incomplete).kind, ParseErrorKind::HeadTooLarge);
    let mut endless = b"OPTIONS rtsp://h/".to_vec();
    endless.resize(8 * 1024, b'a');
    assert_eq!(parse_message(&endless, &lim()), Ok(None));
    endless.push(b'a');
    assert_eq!(err(&endless).kind, ParseErrorKind::HeadTooLarge);
    // Endless blank lines are bounded too.
    assert_eq!(
        err(&vec![b'\n'; 8 * 1024 + 1]).kind,
        ParseErrorKind::HeadTooLarge
    );
}

#[test]
fn hostile_too_many_headers() {
    let mut buf = b"DESCRIBE rtsp://h/s RTSP/1.0\r\nCSeq: 8\r\n".to_vec();
    for i in 0..100 {
        buf.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    // 101 headers, not even terminated yet.
    let e = err(&buf);
    assert_eq!(e.kind, ParseErrorKind::TooManyHeaders);
    assert_eq!(e.cseq, Some(8));
    // Exactly 100 is fine.
    let mut ok = b"DESCRIBE rtsp://h/s RTSP/1.0\r\nCSeq: 8\r\n".to_vec();
    for i in 0..99 {
        ok.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    ok.extend_from_slice(b"\r\n");
    assert_eq!(req(&ok).0.headers.len(), 100);
}

#[test]
fn hostile_missing_or_bad_cseq() {
    let buf = b"OPTIONS * RTSP/1.0\r\nUser-Agent: x\r\n\r\nOPTIONS";
    let e = err(buf);
    assert_eq!(e.kind, ParseErrorKind::MissingCseq);
    assert_eq!(e.status(), StatusCode::BadRequest);
    assert_eq!(e.consumed, Some(buf.len() - 7));
    for bad in ["abc", "-1", "4294967296", ""] {
        let buf = format!("OPTIONS * RTSP/1.0\r\nCSeq: {bad}\r\n\r\n");
        assert_eq!(err(buf.as_bytes()).kind, ParseErrorKind::BadCseq, "{bad}");
    }
    let e = err(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n\r\n");
    assert_eq!(e.kind, ParseErrorKind::BadCseq);
    assert_eq!(e.cseq, Some(1));
}

#[test]
fn hostile_unknown_method_keeps_framing() {
    let buf = b"FOO rtsp://h/s RTSP/1.0\r\nCSeq: 12\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(parse_message(&buf[..buf.len() - 1], &lim()), Ok(None));
    let e = err(buf);
    assert_eq!(e.kind, ParseErrorKind::UnknownMethod("FOO".into()));
    assert_eq!(e.status(), StatusCode::NotImplemented);
    assert_eq!((e.cseq, e.consumed), (Some(12), Some(buf.len())));
    // Methods are case-sensitive (§6.1).
    let e = err(b"options * RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    assert_eq!(e.kind, ParseErrorKind::UnknownMethod("options".into()));
}

#[test]
fn hostile_garbage() {
    // A TLS ClientHello is rejected at once, without waiting for a line.
    let e = err(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]);
    assert_eq!(e.kind, ParseErrorKind::MalformedRequestLine);
    assert_eq!(
        err(b"\x00\x01\x02\r\n\r\n").kind,
        ParseErrorKind::MalformedRequestLine
    );
    assert_eq!(
        err(b"OPTIONS\r\nCSeq: 1\r\n\r\n").kind,
        ParseErrorKind::MalformedRequestLine
    );
    assert_eq!(
        err(b"OPTIONS * RTSP/1.0 extra\r\nCSeq: 1\r\n\r\n").kind,
        ParseErrorKind::MalformedRequestLine
    );
    assert_eq!(
        err(b"OPTIONS * garbage\r\nCSeq: 1\r\n\r\n").kind,
        ParseErrorKind::MalformedRequestLine
    );
    assert_eq!(
        err(b"OPTIONS * RTSP/1.0\r\nNo colon here\r\n\r\n").kind,
        ParseErrorKind::MalformedHeader
    );
    assert_eq!(
        err(b"OPTIONS * RTSP/1.0\r\nCSeq : 1\r\n\r\n").kind,
        ParseErrorKind::MalformedHeader
    );
    assert_eq!(
        err(b"OPTIONS * RTSP/1.0\r\nX: a\x01b\r\nCSeq: 1\r\n\r\n").kind,
        ParseErrorKind::MalformedHeader
    );
    // obs-fold continuation line.
    let e = err(b"OPTIONS * RTSP/1.0\r\nCSeq: 3\r\nX-A: a\r\n  b\r\n\r\n");
    assert_eq!((e.kind, e.cseq), (ParseErrorKind::MalformedHeader, Some(3)));
}

#[test]
fn hostile_versions() {
    let e = err(b"OPTIONS * RTSP/3.0\r\nCSeq: 4\r\n\r\n");
    assert_eq!(e.kind, ParseErrorKind::BadVersion);
    assert_eq!(e.status(), StatusCode::VersionNotSupported);
    assert_eq!(e.cseq, Some(4));
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").kind,
        ParseErrorKind::BadVersion
    );
    assert_eq!(
        err(b"OPTIONS * rtsp/1.0\r\nCSeq: 4\r\n\r\n").kind,
        ParseErrorKind::BadVersion
    );
}

#[test]
fn hostile_non_utf8() {
    let e = err(b"OPTIONS * RTSP/1.0\r\nCSeq: 5\r\nUser-Agent: \xff\xfe\r\n\r\n");
    assert_eq!(e.kind, ParseErrorKind::NonUtf8);
    assert_eq!(e.cseq, Some(5));
    assert_eq!(e.status(), StatusCode::BadRequest);
    // UTF-8 in a value is fine.
    let (r, _) = req("OPTIONS * RTSP/1.0\r\nCSeq: 5\r\nUser-Agent: café\r\n\r\n".as_bytes());
    assert_eq!(r.header("user-agent"), Some("café"));
}

#[test]
fn hostile_content_length() {
    for (value, kind) in [
        ("-1", ParseErrorKind::BadContentLength),
        ("abc", ParseErrorKind::BadContentLength),
        ("+5", ParseErrorKind::BadContentLength),
        ("1 2", ParseErrorKind::BadContentLength),
        ("", ParseErrorKind::BadContentLength),
        ("65537", ParseErrorKind::BodyTooLarge),
        ("18446744073709551616", ParseErrorKind::BodyTooLarge),
        (
            "99999999999999999999999999999999",
            ParseErrorKind::BodyTooLarge,
        ),
    ] {
        let buf =
            format!("ANNOUNCE rtsp://h/s RTSP/1.0\r\nCSeq: 6\r\nContent-Length: {value}\r\n\r\n");
        let e = err(buf.as_bytes());
        assert_eq!(e.kind, kind, "{value:?}");
        assert_eq!(e.cseq, Some(6));
        assert_eq!(e.consumed, None);
    }
    let e = err(b"ANNOUNCE rtsp://h/s RTSP/1.0\r\nCSeq: 6\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nab");
    assert_eq!(e.kind, ParseErrorKind::BadContentLength);
    // 64 KiB exactly is allowed (and waits for the body).
    let buf = b"ANNOUNCE rtsp://h/s RTSP/1.0\r\nCSeq: 6\r\nContent-Length: 65536\r\n\r\n";
    assert_eq!(parse_message(buf, &lim()), Ok(None));
}

#[test]
fn hostile_uri_too_long() {
    let uri = format!("rtsp://h/{}", "a".repeat(4100));
    let buf = format!("DESCRIBE {uri} RTSP/1.0\r\nCSeq: 2\r\n\r\n");
    let e = err(buf.as_bytes());
    assert_eq!(e.kind, ParseErrorKind::UriTooLong);
    assert_eq!(e.status(), StatusCode::RequestUriTooLarge);
    assert_eq!((e.cseq, e.consumed), (Some(2), Some(buf.len())));
}

#[test]
fn error_status_table() {
    use ParseErrorKind as K;
    let table = [
        (K::MalformedRequestLine, 400),
        (K::UnknownMethod("FOO".into()), 501),
        (K::BadVersion, 505),
        (K::MalformedHeader, 400),
        (K::HeadTooLarge, 400),
        (K::TooManyHeaders, 400),
        (K::BodyTooLarge, 413),
        (K::UriTooLong, 414),
        (K::MissingCseq, 400),
        (K::BadCseq, 400),
        (K::BadContentLength, 400),
        (K::NonUtf8, 400),
    ];
    for (kind, code) in table {
        let msg = kind.to_string();
        assert!(msg.starts_with(|c: char| c.is_ascii_lowercase()), "{msg}");
        let e = error(kind, None, None);
        assert_eq!(e.status().code(), code, "{e}");
    }
}

/// Bytes the mutations write: framing, header syntax and the bytes parsers trip on.
const ALPHABET: &[u8] = b"$:\r\n \t;=-0123456789CSeqContent-Length\x00\xff";

/// One edit of a fixture pipeline: where (a fraction of its length), what, and the byte.
#[derive(Debug, Clone)]
enum Edit {
    Replace(proptest::sample::Index, u8),
    Remove(proptest::sample::Index),
    Insert(proptest::sample::Index, u8),
}

fn edit() -> impl proptest::strategy::Strategy<Value = Edit> {
    use proptest::prelude::*;
    prop_oneof![
        (
            any::<proptest::sample::Index>(),
            proptest::sample::select(ALPHABET)
        )
            .prop_map(|(at, b)| Edit::Replace(at, b)),
        any::<proptest::sample::Index>().prop_map(Edit::Remove),
        (any::<proptest::sample::Index>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
    ]
}

/// Half mutated pipelines of real fixtures (1–3 requests, up to 8 edits), half random
/// bytes; one in 7 behind a stray `$` (the interleaved-frame marker).
fn fuzz_input() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let mutated = (
        proptest::collection::vec(proptest::sample::select(ALL_FIXTURES), 1..=3),
        proptest::collection::vec(edit(), 0..8),
    )
        .prop_map(|(fixtures, edits)| {
            let mut d = fixtures.concat();
            for e in edits {
                if d.is_empty() {
                    break;
                }
                match e {
                    Edit::Replace(at, b) => {
                        let at = at.index(d.len());
                        d[at] = b;
                    }
                    Edit::Remove(at) => {
                        d.remove(at.index(d.len()));
                    }
                    Edit::Insert(at, b) => d.insert(at.index(d.len()), b),
                }
            }
            d
        });
    let random = proptest::collection::vec(any::<u8>(), 0..300);
    (
        prop_oneof![mutated, random],
        proptest::bool::weighted(1.0 / 7.0),
    )
        .prop_map(|(mut data, dollar)| {
            if dollar {
                data.insert(0, b'$');
            }
            data
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Whatever arrives, the parser keeps [`fuzz_parse_request`]'s invariants.
    #[test]
    fn fuzz_smoke(data in fuzz_input()) {
        fuzz_parse_request(&data);
    }
}

#[test]
fn rtsp_2_0_requests_carry_their_version() {
    let (items, used) =
        parse_all(b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n");
    assert_eq!(used, 62);
    let versions: Vec<Version> = items
        .iter()
        .map(|p| match p {
            Parsed::Request { request, .. } => request.version,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(versions, [Version::V2_0, Version::V1_0]);
    for bad in [
        &b"OPTIONS * RTSP/1.1\r\nCSeq: 1\r\n\r\n"[..],
        b"OPTIONS * RTSP/20.0\r\nCSeq: 1\r\n\r\n",
    ] {
        assert_eq!(err(bad).kind, ParseErrorKind::BadVersion);
    }
}

/// RFC 7826 §8.2: the client's answer to a PLAY_NOTIFY is framed, body included, and
/// skipped; the request after it parses.
#[test]
fn client_responses_are_framed_and_reported() {
    let stream = b"RTSP/2.0 200 OK\r\nCSeq: 1\r\nSession: 1234\r\n\r\n\
RTSP/2.0 451 Parameter Not Understood\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabc\
OPTIONS * RTSP/2.0\r\nCSeq: 5\r\n\r\n";
    let (items, used) = parse_all(stream);
    assert_eq!(used, stream.len());
    assert!(matches!(
        items[0],
        Parsed::Response {
            status: 200,
            consumed: 43
        }
    ));
    assert!(matches!(items[1], Parsed::Response { status: 451, .. }));
    assert!(matches!(&items[2], Parsed::Request { request, .. } if request.cseq() == Some(5)));
    // Incomplete: wait; the body too.
    for cut in [3, 9, 20, 42] {
        assert_eq!(parse_message(&stream[..cut], &lim()), Ok(None), "cut {cut}");
    }
    let second = &stream[43..];
    let Parsed::Response { consumed, .. } = items[1] else {
        unreachable!()
    };
    for cut in [consumed - 1, consumed - 3, 20] {
        assert_eq!(parse_message(&second[..cut], &lim()), Ok(None), "cut {cut}");
    }
    // Broken status lines and lengths are errors that close the connection.
    for bad in [
        &b"RTSP/2.0 2000 OK\r\n\r\n"[..],
        b"RTSP/2.0 OK\r\n\r\n",
        b"RTSP/x 200 OK\r\n\r\n",
        b"RTSP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"RTSP/2.0 200 OK\r\nno colon\r\n\r\n",
    ] {
        let e = err(bad);
        assert_eq!(e.consumed, None, "{}", String::from_utf8_lossy(bad));
        assert_eq!(e.status(), StatusCode::BadRequest);
    }
    // A response's head is bounded like a request's.
    let mut long = b"RTSP/2.0 200 OK\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'a', 10_000));
    assert_eq!(err(&long).kind, ParseErrorKind::HeadTooLarge);
    crate::rtsp::parse::fuzz_parse_request(stream);
}
