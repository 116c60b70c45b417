use base64::Engine as _;

use super::*;

fn limits() -> Limits {
    Limits::default()
}

const FFMPEG_GET: &[u8] = b"GET /sample HTTP/1.1\r\nUser-Agent: Lavf59.27.100\r\nAccept: */*\r\nRange: bytes=0-\r\nConnection: close\r\nHost: 127.0.0.1:8554\r\nIcy-MetaData: 1\r\nx-sessioncookie: 1c2f6d80a0e2b0d\r\nAccept: application/x-rtsp-tunnelled\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\r\n";
const GST_POST: &[u8] = b"POST /sample HTTP/1.0\r\nUser-Agent: GStreamer/1.22.0\r\nx-sessioncookie: Dq3KzCzG6L4eXdlOQ1Qaow\r\nContent-Type: application/x-rtsp-tunnelled\r\nCache-Control: no-cache\r\nPragma: no-cache\r\nExpires: Sun, 9 Jan 1972 00:00:00 GMT\r\nContent-Length: 32767\r\n\r\nT1BUSU9OUw==";

#[test]
fn classify_sends_rtsp_on_at_once_and_waits_for_http_lines() {
    let l = limits();
    assert_eq!(classify(b"", &l), None);
    assert_eq!(classify(b"O", &l), Some(FirstLine::Rtsp));
    assert_eq!(
        classify(b"OPTIONS * RTSP/1.0\r\n", &l),
        Some(FirstLine::Rtsp)
    );
    assert_eq!(classify(b"$\x00\x00\x04", &l), Some(FirstLine::Rtsp));
    // GET_PARAMETER is RTSP (RFC 2326 §10.8), not GET.
    assert_eq!(
        classify(b"GET_PARAMETER rtsp://h/s RTSP/1.0\r\n", &l),
        Some(FirstLine::Rtsp)
    );
    for prefix in [
        &b"G"[..],
        b"GE",
        b"GET",
        b"GET ",
        b"GET /sample HTT",
        b"P",
        b"POS",
        b"POST /x",
    ] {
        assert_eq!(classify(prefix, &l), None, "{prefix:?}");
    }
    assert_eq!(
        classify(b"GET /sample HTTP/1.1\r\n", &l),
        Some(FirstLine::Http)
    );
    assert_eq!(
        classify(b"POST /sample HTTP/1.0\n", &l),
        Some(FirstLine::Http)
    );
    // An RTSP request with method GET stays RTSP (its parser answers 501).
    assert_eq!(
        classify(b"GET rtsp://h/s RTSP/1.0\r\n", &l),
        Some(FirstLine::Rtsp)
    );
    // A first line beyond the head limit goes to the HTTP side, which refuses it.
    let mut long = b"GET /".to_vec();
    long.resize(l.max_head_bytes + 2, b'a');
    assert_eq!(classify(&long, &l), Some(FirstLine::Http));
    assert_eq!(parse_http_head(&long, &l), Err(Refused::HeadTooLarge));
}

#[test]
fn ffmpeg_get_opens_the_get_side() {
    let (head, consumed) = parse_http_head(FFMPEG_GET, &limits()).unwrap().unwrap();
    assert_eq!(consumed, FFMPEG_GET.len());
    assert_eq!(head.method, HttpMethod::Get);
    assert_eq!(head.target, "/sample");
    assert!(head.accepts_tunnel);
    assert_eq!(opening(&head), Ok(Opening::Get("1c2f6d80a0e2b0d".into())));
    // Incomplete at every shorter length.
    for n in 0..FFMPEG_GET.len() {
        assert_eq!(
            parse_http_head(&FFMPEG_GET[..n], &limits()),
            Ok(None),
            "{n}"
        );
    }
}

#[test]
fn gstreamer_post_opens_the_post_side_and_leaves_its_body() {
    let (head, consumed) = parse_http_head(GST_POST, &limits()).unwrap().unwrap();
    assert_eq!(&GST_POST[consumed..], b"T1BUSU9OUw==");
    assert_eq!(
        opening(&head),
        Ok(Opening::Post("Dq3KzCzG6L4eXdlOQ1Qaow".into()))
    );
}

#[test]
fn heads_that_are_not_a_tunnel_get_their_answer() {
    let l = limits();
    let refusal = |raw: &[u8]| {
        let (head, _) = parse_http_head(raw, &l).unwrap().unwrap();
        opening(&head).unwrap_err()
    };
    let cases: &[(&[u8], Refused, u16)] = &[
        (b"GET /foo HTTP/1.1\r\nHost: x\r\n\r\n", Refused::NotTunnel, 404),
        (b"PUT /foo HTTP/1.1\r\n\r\n", Refused::Method, 405),
        (b"POST /s HTTP/1.0\r\nx-sessioncookie: a\r\n\r\n", Refused::ContentType, 415),
        (b"GET /s HTTP/1.0\r\nAccept: application/x-rtsp-tunnelled\r\n\r\n", Refused::Cookie, 400),
        (b"GET /s HTTP/1.0\r\nAccept: application/x-rtsp-tunnelled\r\nx-sessioncookie: \r\n\r\n", Refused::Cookie, 400),
        (b"POST /s HTTP/1.0\r\nContent-Type: application/x-rtsp-tunnelled\r\nx-sessioncookie: a b\r\n\r\n", Refused::Cookie, 400),
    ];
    for (raw, want, code) in cases {
        let got = refusal(raw);
        assert_eq!(got, *want, "{}", String::from_utf8_lossy(raw));
        assert_eq!(got.status().0, *code);
        assert!(refusal_answer(&got).starts_with(format!("HTTP/1.0 {code} ").as_bytes()));
    }
    let long_cookie = format!(
        "GET /s HTTP/1.0\r\nAccept: application/x-rtsp-tunnelled\r\nx-sessioncookie: {}\r\n\r\n",
        "c".repeat(MAX_COOKIE_BYTES + 1)
    );
    assert_eq!(refusal(long_cookie.as_bytes()), Refused::Cookie);
    assert_eq!(
        parse_http_head(b"GET /s HTTP/1.1\r\nbad header\r\n\r\n", &l),
        Err(Refused::Malformed)
    );
    let mut many = b"GET /s HTTP/1.1\r\n".to_vec();
    for i in 0..=l.max_headers {
        many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse_http_head(&many, &l), Err(Refused::HeadTooLarge));
    let mut big = b"GET /s HTTP/1.1\r\nx: ".to_vec();
    big.resize(l.max_head_bytes + 1, b'a');
    assert_eq!(parse_http_head(&big, &l), Err(Refused::HeadTooLarge));
}

/// Two requests, each encoded on its own (padding mid-body), with line breaks, decode at
/// every split of the body into two and into bytes one at a time.
#[test]
fn base64_decodes_split_at_every_offset() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let first = b"OPTIONS rtsp://127.0.0.1/sample RTSP/1.0\r\nCSeq: 1\r\n\r\n".as_slice();
    let second =
        b"DESCRIBE rtsp://127.0.0.1/sample RTSP/1.0\r\nCSeq: 2\r\n\r\n$\x01\x00\x02\xff\x00"
            .as_slice();
    let mut body = b64.encode(first).into_bytes();
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(b64.encode(second).as_bytes());
    let want = [first, second].concat();
    for split in 0..=body.len() {
        let mut d = Base64Decoder::default();
        let mut out = Vec::new();
        d.feed(&body[..split], &mut out).unwrap();
        d.feed(&body[split..], &mut out).unwrap();
        assert_eq!(out, want, "split at {split}");
        assert!(d.at_boundary());
    }
    let mut d = Base64Decoder::default();
    let mut out = Vec::new();
    for byte in &body {
        d.feed(std::slice::from_ref(byte), &mut out).unwrap();
    }
    assert_eq!(out, want);
}

#[test]
fn base64_refuses_what_is_not_base64_with_its_offset() {
    let cases: &[(&[u8], u64)] = &[
        (b"T1BU*", 4),
        (b"=AAA", 0),
        (b"A=AA", 1),
        (b"AA=A", 3),
        (b"AAA==", 4),
        (b"OPTIONS * RTSP/1.0", 8),
        (b"AA\x00", 2),
    ];
    for (input, offset) in cases {
        let mut d = Base64Decoder::default();
        let mut out = Vec::new();
        let err = d.feed(input, &mut out).unwrap_err();
        assert_eq!(err.offset, *offset, "{}", String::from_utf8_lossy(input));
        assert!(out.len() <= input.len() * 3 / 4 + 3);
    }
    // The offset counts across pieces.
    let mut d = Base64Decoder::default();
    let mut out = Vec::new();
    d.feed(b"T1BU", &mut out).unwrap();
    assert_eq!(d.feed(b"SU9O!", &mut out).unwrap_err().offset, 8);
}

#[test]
fn a_post_pairs_with_the_get_of_its_cookie_from_the_same_address() {
    let ip = IpAddr::from([127, 0, 0, 1]);
    let other = IpAddr::from([127, 0, 0, 2]);
    let mut t: Tunnels<&str> = Tunnels::default();
    t.open_get("c1", ip, 7, "input-7").unwrap();
    assert_eq!(
        t.open_get("c1", ip, 8, "input-8"),
        Err(Refused::CookieInUse)
    );
    assert_eq!(
        t.open_post("nope", ip, 9).unwrap_err(),
        Refused::UnknownCookie
    );
    assert_eq!(
        t.open_post("c1", other, 9).unwrap_err(),
        Refused::OtherAddress
    );
    let paired = t.open_post("c1", ip, 9).unwrap();
    assert_eq!((paired.conn, paired.input), (7, "input-7"));
    assert_eq!(t.open_post("c1", ip, 10).unwrap_err(), Refused::PostInUse);
    // A POST closing frees the tunnel for the next (QuickTime reopens its POST).
    t.close_post("c1", 10);
    assert_eq!(t.open_post("c1", ip, 11).unwrap_err(), Refused::PostInUse);
    t.close_post("c1", 9);
    assert_eq!(t.open_post("c1", ip, 11).unwrap().conn, 7);
    // Another connection's close does not end the tunnel; its GET's does.
    t.close_get("c1", 8);
    assert_eq!(t.len(), 1);
    t.close_get("c1", 7);
    assert!(t.is_empty());
    assert_eq!(
        t.open_post("c1", ip, 12).unwrap_err(),
        Refused::UnknownCookie
    );
    // The cookie is free again once its GET closed.
    t.open_get("c1", ip, 13, "input-13").unwrap();
}

#[test]
fn fuzz_entry_survives_its_seeds() {
    fuzz_tunnel(b"");
    fuzz_tunnel(&[7]);
    fuzz_tunnel(
        &[20, b'P']
            .iter()
            .chain(GST_POST)
            .copied()
            .collect::<Vec<_>>(),
    );
    fuzz_tunnel(&[0].iter().chain(FFMPEG_GET).copied().collect::<Vec<_>>());
}
