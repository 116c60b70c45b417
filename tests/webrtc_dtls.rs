//! `webrtc::dtls::DtlsServer` against an independent DTLS client: OpenSSL's `s_client -dtls1_2`
//! with `use_srtp` and a P-256 client certificate made by `openssl req`. The server runs in a
//! small UDP loop on 127.0.0.1. Proves: the handshake completes, the profile is the expected
//! one, the exported SRTP keying material equals what OpenSSL prints (`-keymatexport
//! EXTRACTOR-dtls_srtp`, RFC 5764 §4.2), a certificate that does not match the fingerprint is
//! refused, garbage and truncated records are refused without ending the session, and the
//! client's `close_notify` ends it. Needs `openssl` (scripts/install-test-deps.sh).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast::webrtc::cert::{DtlsCertificate, Fingerprint};
use shardcast::webrtc::dtls::{DtlsError, DtlsEvent, DtlsServer, SrtpKeys, DTLS_MTU};

/// Every test ends within this, whatever the peer does.
const DEADLINE: Duration = Duration::from_secs(20);

/// A scratch directory with an ECDSA P-256 client key and self-signed certificate made by
/// OpenSSL, and the certificate's SHA-256 fingerprint as OpenSSL computes it.
struct ClientCert {
    dir: PathBuf,
    fingerprint: Fingerprint,
}

impl Drop for ClientCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl not found: run scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn client_cert(tag: &str) -> ClientCert {
    let dir = std::env::temp_dir().join(format!("shardcast-dtls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.pem",
        ],
        &dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "2",
            "-subj",
            "/CN=s_client",
        ],
        &dir,
    );
    let text = openssl(
        &["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha256"],
        &dir,
    );
    // "sha256 Fingerprint=AB:CD:..." (OpenSSL 3) or "SHA256 Fingerprint=..." (1.1).
    let hex = text
        .trim()
        .split_once('=')
        .map(|(_, hex)| hex.to_string())
        .unwrap();
    let fingerprint = Fingerprint::parse(&format!("sha-256 {hex}")).unwrap();
    ClientCert { dir, fingerprint }
}

/// A running `openssl s_client`, killed on drop; its stdout lines arrive on `lines`.
struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SClient {
    fn start(port: u16, cert: &ClientCert, profiles: &str, keylen: usize) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-dtls1_2", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-use_srtp", profiles])
            .args(["-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen"])
            .arg(keylen.to_string())
            .args(["-cert", "c.pem", "-key", "k.pem"])
            .current_dir(&cert.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl not found: run scripts/install-test-deps.sh");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        SClient {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Collects stdout lines until one satisfies `done` or the deadline passes.
    fn wait_for(&mut self, deadline: Instant, done: impl Fn(&[String]) -> bool) -> bool {
        loop {
            if done(&self.seen) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return done(&self.seen),
            }
        }
    }

    /// The bytes of the `    Keying material: HEX` line (OpenSSL 3; uppercase hex).
    fn keying_material(&self) -> Option<Vec<u8>> {
        let hex = self
            .seen
            .iter()
            .find_map(|l| l.trim().strip_prefix("Keying material: "))?;
        (0..hex.len())
            .step_by(2)
            .map(|j| u8::from_str_radix(hex.get(j..j + 2)?, 16).ok())
            .collect()
    }

    fn srtp_profile(&self) -> Option<String> {
        self.seen.iter().find_map(|l| {
            l.trim()
                .strip_prefix("SRTP Extension negotiated, profile=")
                .map(str::to_string)
        })
    }

    /// `Q` on a line of its own makes s_client close the connection (close_notify) and exit.
    fn quit(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"Q\n");
        }
    }
}

/// How a server loop ended.
#[derive(Debug, Default)]
struct Outcome {
    keys: Option<SrtpKeys>,
    error: Option<DtlsError>,
    closed: bool,
    /// First ClientHello to `Connected`.
    handshake_time: Option<Duration>,
    /// Errors returned for the injected garbage and truncated datagrams.
    injected: Vec<DtlsError>,
    first_datagram: Option<Vec<u8>>,
}

/// Drives `server` over `sock` until `stop` says so, the session ends, or the deadline.
/// Before the first real datagram, injects a garbage datagram and a truncated copy of it.
fn run_server(
    sock: &UdpSocket,
    server: &mut DtlsServer,
    deadline: Instant,
    mut on_connected: impl FnMut(),
    stop_when_connected: bool,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut peer: Option<SocketAddr> = None;
    let mut buf = [0u8; 2048];
    let mut out = [0u8; DTLS_MTU];
    let mut started: Option<Instant> = None;
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    while Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let now = Instant::now();
            let datagram = &buf[..n];
            if outcome.first_datagram.is_none() {
                outcome.first_datagram = Some(datagram.to_vec());
                started = Some(now);
                for bad in [&b"\x16garbage, not a record"[..], &datagram[..n / 2]] {
                    match server.handle_datagram(now, bad) {
                        Err(e) => outcome.injected.push(e),
                        Ok(()) => panic!("a bad datagram was accepted"),
                    }
                }
            }
            peer = Some(from);
            match server.handle_datagram(now, datagram) {
                Ok(()) => {}
                Err(e) if !e.is_fatal() => {}
                Err(e) => {
                    outcome.error = Some(e);
                    break;
                }
            }
        }
        let now = Instant::now();
        if server.poll_timeout().is_some_and(|t| t <= now) {
            if let Err(e) = server.handle_timeout(now) {
                outcome.error = Some(e);
                break;
            }
        }
        while let Some(n) = server.poll_transmit(&mut out) {
            if let Some(peer) = peer {
                sock.send_to(&out[..n], peer).unwrap();
            }
        }
        while let Some(event) = server.poll_event() {
            match event {
                DtlsEvent::Connected(keys) => {
                    assert!(server.is_connected());
                    assert_eq!(server.srtp_keys(), Some(&keys));
                    outcome.keys = Some(keys);
                    outcome.handshake_time = started.map(|s| s.elapsed());
                    on_connected();
                }
                DtlsEvent::Closed => outcome.closed = true,
            }
        }
        if outcome.closed || (stop_when_connected && outcome.keys.is_some()) {
            break;
        }
    }
    outcome
}

fn server_for(fingerprint: Fingerprint) -> (UdpSocket, DtlsServer) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cert = Arc::new(DtlsCertificate::generate().unwrap());
    let server = DtlsServer::new(cert, fingerprint, Instant::now()).unwrap();
    (sock, server)
}

/// One full handshake with s_client offering `profiles`; checks the profile and that the keying
/// material equals OpenSSL's export.
fn handshake_exports_openssls_keying_material(
    tag: &str,
    profiles: &str,
    expect_id: u16,
    expect_name: &str,
    keylen: usize,
) -> Outcome {
    let cert = client_cert(tag);
    let (sock, mut server) = server_for(cert.fingerprint);
    let port = sock.local_addr().unwrap().port();
    let deadline = Instant::now() + DEADLINE;
    let mut client = SClient::start(port, &cert, profiles, keylen);
    let outcome = run_server(&sock, &mut server, deadline, || {}, true);
    assert_eq!(outcome.error, None);
    let keys = outcome.keys.expect("handshake did not complete");
    assert_eq!(keys.profile_id, expect_id);
    assert_eq!(keys.material().len(), keylen);
    assert!(
        client.wait_for(deadline, |seen| seen
            .iter()
            .any(|l| l.trim().starts_with("Keying material: "))),
        "s_client printed no keying material: {:?}",
        client.seen
    );
    assert_eq!(client.srtp_profile().as_deref(), Some(expect_name));
    assert_eq!(client.keying_material().as_deref(), Some(keys.material()));
    // The client closes: close_notify ends the session.
    client.quit();
    let end = run_server(&sock, &mut server, deadline, || {}, false);
    assert!(end.closed, "no close_notify seen: {end:?}");
    assert!(server.is_closed());
    assert_eq!(
        server.handle_datagram(Instant::now(), outcome.first_datagram.as_deref().unwrap()),
        Err(DtlsError::Closed)
    );
    outcome
}

#[test]
fn openssl_handshake_prefers_aes128_gcm_and_keys_match() {
    let outcome = handshake_exports_openssls_keying_material(
        "gcm",
        "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80",
        0x0007,
        "SRTP_AEAD_AES_128_GCM",
        56,
    );
    eprintln!(
        "DTLS 1.2 handshake with openssl s_client: {:?} (first ClientHello to Connected)",
        outcome.handshake_time.unwrap()
    );
    // Garbage and a truncated record were refused, non-fatally, before the real ClientHello.
    assert_eq!(outcome.injected.len(), 2);
    assert!(outcome
        .injected
        .iter()
        .all(|e| matches!(e, DtlsError::Malformed(_)) && !e.is_fatal()));
    if let Ok(path) = std::env::var("SHARDCAST_CAPTURE_DTLS_SEED") {
        std::fs::write(path, outcome.first_datagram.unwrap()).unwrap();
    }
}

#[test]
fn openssl_offering_only_aes_cm_gets_0001_and_60_bytes() {
    handshake_exports_openssls_keying_material(
        "cm",
        "SRTP_AES128_CM_SHA1_80",
        0x0001,
        "SRTP_AES128_CM_SHA1_80",
        60,
    );
}

/// Browsers offer AES-256-GCM first; dimpl picks it whenever offered (see `webrtc::dtls`).
#[test]
fn openssl_offering_aes256_gcm_gets_0008_and_88_bytes() {
    handshake_exports_openssls_keying_material(
        "gcm256",
        "SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80",
        0x0008,
        "SRTP_AEAD_AES_256_GCM",
        88,
    );
}

/// The server expects another certificate's fingerprint: the handshake must fail with
/// `FingerprintMismatch` and s_client must never see the session complete.
#[test]
fn openssl_client_certificate_not_matching_fingerprint_is_refused() {
    let cert = client_cert("mismatch");
    let other = client_cert("other");
    let (sock, mut server) = server_for(other.fingerprint);
    let port = sock.local_addr().unwrap().port();
    let deadline = Instant::now() + DEADLINE;
    let mut client = SClient::start(
        port,
        &cert,
        "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80",
        56,
    );
    let outcome = run_server(&sock, &mut server, deadline, || {}, true);
    assert_eq!(outcome.error, Some(DtlsError::FingerprintMismatch));
    assert!(outcome.keys.is_none());
    assert!(!server.is_connected());
    assert!(server.is_closed());
    assert_eq!(server.poll_timeout(), None);
    // s_client never completes: give it a moment to print, then look.
    client.wait_for(Instant::now() + Duration::from_millis(500), |_| false);
    assert!(client.keying_material().is_none(), "{:?}", client.seen);
}
