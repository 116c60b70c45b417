//! What a hostile or strict client finds (issue 13): session tables bounded by default, a
//! short life for sessions that are set up but never played, log lines rate-limited per
//! client while `/metrics` keeps the full count, `mode=record` refused, and a `Content-Base`
//! built from the server's own address rather than from what the client wrote.

mod common;

use std::time::{Duration, Instant};

use common::{RawRtsp, Server};

/// A SETUP request for the sample's video track, each creating a new session.
fn setup_request(addr: std::net::SocketAddr, cseq: usize) -> String {
    format!(
        "SETUP rtsp://{addr}/sample/trackID=0 RTSP/1.0\r\nCSeq: {cseq}\r\nTransport: RTP/AVP;unicast;client_port=40000-40001\r\n\r\n"
    )
}

/// Statuses of `n` pipelined requests built by `request`, sent on one connection at once.
fn pipelined(server: &Server, n: usize, request: impl Fn(usize) -> String) -> Vec<u16> {
    let mut c = RawRtsp::connect(server.addr);
    let mut all = String::new();
    for i in 1..=n {
        all.push_str(&request(i));
    }
    c.send_raw(all.as_bytes());
    (0..n)
        .map(|i| {
            c.read_response()
                .unwrap_or_else(|| panic!("response {i} of {n}"))
                .status
        })
        .collect()
}

#[test]
fn one_address_cannot_create_sessions_without_bound_by_default() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let statuses = pipelined(&server, 1_050, |i| setup_request(addr, i));
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(ok, 1_000, "default max-viewers-per-ip is 1,000");
    assert!(
        statuses[1_000..].iter().all(|&s| s == 503),
        "beyond it, 503 with Retry-After"
    );
    // A player from another address is unaffected.
    let mut other = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        s.connect(&addr.into()).unwrap();
        RawRtsp::from_stream(std::net::TcpStream::from(s))
    };
    let r = other.request(
        "SETUP",
        &format!("rtsp://{addr}/sample/trackID=0"),
        &[("Transport", "RTP/AVP;unicast;client_port=40000-40001")],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_session_set_up_but_never_played_expires_after_the_setup_timeout() {
    let server = Server::start(&["--setup-timeout", "1"]);
    let mut c = RawRtsp::connect(server.addr);
    let url = server.url("sample");
    let r = c.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP;unicast;client_port=40000-40001")],
    );
    assert_eq!(r.status, 200);
    let sid = r.session().unwrap();
    let start = Instant::now();
    // Keep-alives do not extend an unplayed session's life; it ends by the setup timeout,
    // long before the 60 s session timeout.
    loop {
        let r = c.request("GET_PARAMETER", &url, &[("Session", &sid)]);
        if r.status == 454 {
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "unplayed session still alive after 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(start.elapsed() >= Duration::from_millis(900));

    // A played session is not cut by it.
    let mut s = common::setup_udp(&server);
    let sid = s.session.clone();
    assert_eq!(
        s.rtsp.request("PLAY", &url, &[("Session", &sid)]).status,
        200
    );
    let played = Instant::now();
    while played.elapsed() < Duration::from_millis(2_500) {
        let r = s.rtsp.request("GET_PARAMETER", &url, &[("Session", &sid)]);
        assert_eq!(
            r.status, 200,
            "a playing session outlives the setup timeout"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A metric's value in a `/metrics` text.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn one_client_cannot_flood_the_log_and_metrics_keep_the_full_count() {
    let server = Server::start_logged(&[]);
    let addr = server.addr;
    let n = 2_000;
    let statuses = pipelined(&server, n, |i| {
        format!("DESCRIBE rtsp://{addr}/no-such-stream RTSP/1.0\r\nCSeq: {i}\r\n\r\n")
    });
    assert!(statuses.iter().all(|&s| s == 404));
    let refusal_lines = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains("request refused") && l.contains("peer=127.0.0.1:"))
            .count()
    };
    let log = server.log_lines();
    let logged = refusal_lines(&log);
    assert!(
        (1..=100).contains(&logged),
        "{logged} of {n} refusals from one address were logged"
    );
    // Another address has its own budget.
    let mut other = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, 3], 0)).into())
            .unwrap();
        s.connect(&addr.into()).unwrap();
        RawRtsp::from_stream(std::net::TcpStream::from(s))
    };
    assert_eq!(
        other
            .request("DESCRIBE", &format!("rtsp://{addr}/also-missing"), &[])
            .status,
        404
    );
    // The full count is in /metrics.
    let metrics = server.http_get("/metrics").text();
    assert_eq!(
        metric(&metrics, "shardcast_rtsp_refused_total{status=\"404\"}"),
        Some((n + 1) as f64),
        "{metrics}"
    );
    let suppressed = metric(&metrics, "shardcast_log_lines_suppressed_total").unwrap();
    assert_eq!(suppressed as usize, n - logged);
    // When the window closes, one line says how many were left out.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log_lines();
        let summary = log
            .iter()
            .find(|l| l.contains("more log lines like these from 127.0.0.1 suppressed"));
        if let Some(line) = summary {
            assert!(line.contains(&format!("{}", n - logged)), "{line}");
            assert!(log
                .iter()
                .any(|l| l.contains("request refused") && l.contains("peer=127.0.0.3:")));
            break;
        }
        assert!(Instant::now() < deadline, "no summary line: {log:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn setup_for_recording_is_refused_without_a_publish_rule() {
    let server = Server::start(&[]);
    let url = format!("{}/trackID=0", server.url("sample"));
    let mut c = RawRtsp::connect(server.addr);
    for transport in [
        "RTP/AVP;unicast;client_port=40000-40001;mode=record",
        "RTP/AVP;unicast;client_port=40000-40001;mode=\"RECORD\"",
        "RTP/AVP/TCP;unicast;interleaved=0-1;mode=Record",
    ] {
        // Every spelling is read as RECORD (publishing), which a server without a publish
        // rule refuses (403) without creating a session; never taken for PLAY.
        let r = c.request("SETUP", &url, &[("Transport", transport)]);
        assert_eq!(r.status, 403, "{transport}: recording needs a publish rule");
        assert!(r.session().is_none());
    }
    let r = c.request(
        "SETUP",
        &url,
        &[(
            "Transport",
            "RTP/AVP;unicast;client_port=40000-40001;mode=\"PLAY\"",
        )],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn content_base_is_the_servers_own_address_not_the_clients_host() {
    let server = Server::start(&[]);
    let mut c = RawRtsp::connect(server.addr);
    let r = c.request("DESCRIBE", "rtsp://evil.example/sample", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Base"),
        Some(format!("rtsp://{}/sample/", server.addr).as_str())
    );

    let server = Server::start(&["--public-address", "cams.example.com:8554"]);
    let mut c = RawRtsp::connect(server.addr);
    let r = c.request("DESCRIBE", &server.url("sample"), &[]);
    assert_eq!(
        r.header("Content-Base"),
        Some("rtsp://cams.example.com:8554/sample/")
    );
    let streams = server.http_get("/api/v1/streams/sample").json();
    assert_eq!(streams["url"], "rtsp://cams.example.com:8554/sample");
}
