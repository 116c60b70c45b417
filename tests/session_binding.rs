//! Session binding (issue 13, P1): an RTSP session can be controlled only by the client that
//! created it. The hijack is driven as it was reported: the victim plays, the attacker opens
//! a new connection from another address (127.0.0.2), without credentials or play token, and
//! sends TEARDOWN, PAUSE, PLAY with a seek and GET_PARAMETER naming the victim's session.
//! Every attempt must get `454 Session Not Found` (the answer to an unknown id), and the
//! victim must keep receiving media. The API must not reveal the RTSP session id at all.

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{http_request, RawRtsp, RtspResponse, Server};

const ADMIN: &str = "binding-test-admin-token-0123";
const SECRET: &str = "binding-test-token-secret-4567";

/// A raw RTSP connection to `server` from the loopback address `local` (127.0.0.x).
fn connect_from(server: SocketAddr, local: [u8; 4]) -> RawRtsp {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((local, 0)).into())
        .expect("bind a second loopback address");
    socket.connect(&server.into()).unwrap();
    RawRtsp::from_stream(TcpStream::from(socket))
}

/// A UDP viewer set up with `extra` headers on every request (credentials), through `url`
/// (which may carry `?token=`): DESCRIBE, SETUP of both tracks with the SDP's control URLs.
struct Viewer {
    rtsp: RawRtsp,
    session: String,
    aggregate: String,
    rtp: Vec<UdpSocket>,
    _rtcp: Vec<UdpSocket>,
}

fn set_up(server: &Server, url: &str, extra: &[(&str, &str)]) -> Viewer {
    let mut rtsp = RawRtsp::connect(server.addr);
    let d = rtsp.request("DESCRIBE", url, extra);
    assert_eq!(d.status, 200, "DESCRIBE {url}");
    let base = d.header("Content-Base").unwrap().to_owned();
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    let controls: Vec<String> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=control:"))
        .filter(|c| *c != "*")
        .map(str::to_owned)
        .collect();
    assert_eq!(controls.len(), 2, "{sdp}");
    let mut session: Option<String> = None;
    let (mut rtp, mut rtcp) = (Vec::new(), Vec::new());
    for control in &controls {
        let (a, b) = common::udp_pair();
        let port = a.local_addr().unwrap().port();
        let transport = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
        let mut headers = extra.to_vec();
        headers.push(("Transport", &transport));
        let sid = session.clone().unwrap_or_default();
        if session.is_some() {
            headers.push(("Session", &sid));
        }
        let r = rtsp.request("SETUP", &format!("{base}{control}"), &headers);
        assert_eq!(r.status, 200, "SETUP {control}");
        session = r.session();
        rtp.push(a);
        rtcp.push(b);
    }
    Viewer {
        rtsp,
        session: session.unwrap(),
        aggregate: base,
        rtp,
        _rtcp: rtcp,
    }
}

impl Viewer {
    fn request(&mut self, method: &str, extra: &[(&str, &str)]) -> RtspResponse {
        let mut headers = extra.to_vec();
        headers.push(("Session", &self.session));
        let url = self.aggregate.clone();
        self.rtsp.request(method, &url, &headers)
    }

    /// Whether RTP arrives on the video socket within `limit`, after what is queued now.
    fn receives_media(&self, limit: Duration) -> bool {
        let sock = &self.rtp[0];
        sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while sock.recv(&mut buf).is_ok() {}
        sock.set_nonblocking(false).unwrap();
        let end = Instant::now() + limit;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while Instant::now() < end {
            if sock.recv(&mut buf).is_ok() {
                return true;
            }
        }
        false
    }
}

/// The sessions the API lists: their handles, and the raw body.
fn api_sessions(server: &Server) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http_request(
            server.http_addr(),
            "GET",
            "/api/v1/sessions",
            &[("Authorization", &format!("Bearer {ADMIN}"))],
            b"",
        );
        assert_eq!(r.status, 200);
        let ids: Vec<String> = r.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        if !ids.is_empty() || Instant::now() > deadline {
            return (ids, r.text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The attack of the report, from `attacker` with `creds`: every control request naming the
/// victim's session (and its API handle, in case an attacker tries that) must be 454.
fn attempt_hijack(attacker: &mut RawRtsp, victim: &Viewer, handle: &str, creds: &[(&str, &str)]) {
    for session in [victim.session.as_str(), handle] {
        for (method, range) in [
            ("GET_PARAMETER", None),
            ("PAUSE", None),
            ("PLAY", Some("npt=5.000-")),
            ("TEARDOWN", None),
        ] {
            let mut headers = creds.to_vec();
            headers.push(("Session", session));
            if let Some(r) = range {
                headers.push(("Range", r));
            }
            let r = attacker.request(method, &victim.aggregate, &headers);
            assert_eq!(
                r.status, 454,
                "{method} with another client's session {session} must be 454, as an unknown id is"
            );
        }
    }
}

/// Plays, checks the API hides the session id, runs the hijack from 127.0.0.2 with
/// `attacker_creds`, and checks the victim still streams and still controls its session.
fn victim_survives(
    server: &Server,
    mut victim: Viewer,
    creds: &[(&str, &str)],
    attacker_creds: &[(&str, &str)],
) {
    assert_eq!(victim.request("PLAY", creds).status, 200);
    assert!(victim.receives_media(Duration::from_secs(5)));
    let (handles, body) = api_sessions(server);
    assert_eq!(handles.len(), 1, "{body}");
    assert!(
        !body.contains(&victim.session),
        "the API reveals the RTSP session id: {body}"
    );
    let mut attacker = connect_from(server.addr, [127, 0, 0, 2]);
    attempt_hijack(&mut attacker, &victim, &handles[0], attacker_creds);
    assert!(
        victim.receives_media(Duration::from_secs(5)),
        "the victim's stream must go on"
    );
    assert_eq!(
        api_sessions(server).0,
        handles,
        "the session is still listed"
    );
    // The owner, on a new connection from its own address, still controls it (RFC 2326
    // §12.37: a session may span connections).
    let mut again = connect_from(server.addr, [127, 0, 0, 1]);
    let mut headers = creds.to_vec();
    headers.push(("Session", &victim.session));
    assert_eq!(
        again
            .request("GET_PARAMETER", &victim.aggregate, &headers)
            .status,
        200
    );
    assert_eq!(victim.request("TEARDOWN", creds).status, 200);
}

#[test]
fn another_address_cannot_control_a_session_on_an_open_server() {
    let server = Server::start_env(&[], &[("SHARDCAST_ADMIN_TOKEN", ADMIN)]);
    let victim = set_up(&server, &server.url("sample"), &[]);
    victim_survives(&server, victim, &[], &[]);
}

#[test]
fn another_address_cannot_control_a_session_with_require_token() {
    let server = Server::start_env(
        &["--require-token"],
        &[
            ("SHARDCAST_ADMIN_TOKEN", ADMIN),
            ("SHARDCAST_TOKEN_SECRET", SECRET),
        ],
    );
    let grant = http_request(
        server.http_addr(),
        "POST",
        "/api/v1/play",
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"stream":"sample"}"#,
    );
    assert_eq!(grant.status, 200, "{}", grant.text());
    let url = grant.json()["url"].as_str().unwrap().to_owned();
    let victim = set_up(&server, &url, &[]);
    victim_survives(&server, victim, &[], &[]);
}

fn basic(user_pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[test]
fn another_user_or_address_cannot_control_an_authenticated_session() {
    let server = Server::start_env(
        &[
            "--user",
            "alice:alice-pw",
            "--user",
            "bob:bob-pw",
            "--allow-basic",
        ],
        &[("SHARDCAST_ADMIN_TOKEN", ADMIN)],
    );
    let alice = basic("alice:alice-pw");
    let bob = basic("bob:bob-pw");
    let creds = [("Authorization", alice.as_str())];
    let victim = set_up(&server, &server.url("sample"), &creds);
    // Bob has valid credentials of his own; from his own address and from Alice's, her
    // session is not his.
    let mut same_address = connect_from(server.addr, [127, 0, 0, 1]);
    attempt_hijack(
        &mut same_address,
        &victim,
        "0000000000000000",
        &[("Authorization", &bob)],
    );
    // Without any credentials the request is refused before the session is looked at.
    let mut anonymous = connect_from(server.addr, [127, 0, 0, 2]);
    let r = anonymous.request(
        "TEARDOWN",
        &victim.aggregate,
        &[("Session", &victim.session)],
    );
    assert_eq!(r.status, 401);
    victim_survives(&server, victim, &creds, &[("Authorization", &bob)]);
}

/// A request is authorized against the stream of the session it names, not the stream its
/// URI names: GET_PARAMETER through a public stream's URI with the session of a restricted
/// stream used to answer 200 without credentials.
#[test]
fn a_public_uri_does_not_carry_requests_into_a_restricted_session() {
    let config = common::write_config(
        "binding",
        r#"
allow-basic = true
[[users]]
name = "alice"
password = "alice-pw"
[[access]]
streams = "open"
public = true
"#,
    );
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--live",
        &format!("open={}/tests/media/short.mp4", env!("CARGO_MANIFEST_DIR")),
    ]);
    let alice = basic("alice:alice-pw");
    let victim = set_up(&server, &server.url("sample"), &[("Authorization", &alice)]);
    let mut other = RawRtsp::connect(server.addr);
    for method in ["GET_PARAMETER", "PAUSE", "PLAY", "TEARDOWN"] {
        let r = other.request(
            method,
            &server.url("open"),
            &[("Session", victim.session.as_str())],
        );
        assert_eq!(
            r.status, 401,
            "{method} through the public stream's URI with the restricted session's id"
        );
    }
    // With Alice's credentials the mismatch of URI and session is what is refused.
    let r = other.request(
        "GET_PARAMETER",
        &server.url("open"),
        &[
            ("Session", victim.session.as_str()),
            ("Authorization", &alice),
        ],
    );
    assert_eq!(
        r.status, 404,
        "the URI names another stream than the session's"
    );
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}
