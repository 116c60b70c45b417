//! The record layer against rustls itself: a rustls client completes the handshake with
//! [`Handshake`], then reads our sealed records and writes records our opener reads.

use super::provider;
use super::*;
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring as provider;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{Read, Write};

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A self-signed certificate and key written as PEM files; the server config over them.
pub(crate) fn test_config(dir: &Path) -> Arc<ServerConfig> {
    let cert = crate::webrtc::cert::DtlsCertificate::generate().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, pem("CERTIFICATE", &cert.inner.certificate)).unwrap();
    std::fs::write(&k, pem("PRIVATE KEY", &cert.inner.private_key)).unwrap();
    server_config(&c, &k).unwrap()
}

fn client(suite: rustls::SupportedCipherSuite) -> ClientConnection {
    let mut p = provider();
    p.cipher_suites = vec![suite];
    let config = ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// A ClientHello offering TLS 1.2 only (no `supported_versions`), as an old client sends.
pub(crate) fn tls12_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0xc0, 0x2f]); // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // null compression
                                     // supported_groups x25519, ec_point_formats, signature_algorithms rsa_pss_rsae_sha256
    let ext: &[u8] = &[
        0, 10, 0, 4, 0, 2, 0, 29, 0, 11, 0, 2, 1, 0, 0, 13, 0, 4, 0, 2, 8, 4,
    ];
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(ext);
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("shardcast-tls-{}-{name}", std::process::id()))
}

#[test]
fn a_rustls_client_reads_our_records_and_we_read_its_records_in_every_suite() {
    let config = test_config(&tmp("suites"));
    for suite in [
        provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
        provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
        provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let mut c = client(suite);
        let mut hs = Handshake::new(config.clone()).unwrap();
        let mut to_server = Vec::new();
        let mut to_client = Vec::new();
        // The client's first request rides with its Finished.
        let mut early_request = false;
        let mut done = false;
        for _ in 0..10 {
            while c.wants_write() {
                c.write_tls(&mut to_server).unwrap();
            }
            if !c.is_handshaking() && !early_request {
                c.writer().write_all(b"OPTIONS * RTSP/1.0\r\n\r\n").unwrap();
                while c.wants_write() {
                    c.write_tls(&mut to_server).unwrap();
                }
                early_request = true;
            }
            if hs.feed(&mut to_server).unwrap() == Step::Done {
                hs.take_output(&mut to_client);
                done = true;
                break;
            }
            hs.take_output(&mut to_client);
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            to_client.clear();
            c.process_new_packets().unwrap();
        }
        assert!(done, "{suite:?}: handshake completes");
        assert!(to_client.is_empty(), "no session tickets");
        assert!(early_request);
        let (mut sealer, mut opener) = hs.finish().unwrap();
        // The request that followed Finished is still in our buffer.
        let mut plain = Vec::new();
        assert_eq!(opener.open(&mut to_server, &mut plain), Ok(Opened::More));
        assert_eq!(plain, b"OPTIONS * RTSP/1.0\r\n\r\n");
        // Our records, read by rustls: one response and 40 kB of frames.
        let frames: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        sealer
            .seal([&b"RTSP/1.0 200 OK\r\n\r\n"[..]], &mut to_client)
            .unwrap();
        sealer
            .seal([&frames[..20_000], &frames[20_000..]], &mut to_client)
            .unwrap();
        let mut rd = &to_client[..];
        let mut got = Vec::new();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
            let _ = c.reader().read_to_end(&mut got);
        }
        assert_eq!(&got[..19], b"RTSP/1.0 200 OK\r\n\r\n", "{suite:?}");
        assert_eq!(&got[19..], &frames[..], "{suite:?}");
        // The client's close_notify ends the connection cleanly.
        c.send_close_notify();
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        assert_eq!(opener.open(&mut wire, &mut plain), Ok(Opened::Closed));
    }
}

#[test]
fn garbage_and_tls12_only_hellos_fail_the_handshake() {
    let config = test_config(&tmp("garbage"));
    let mut hs = Handshake::new(config.clone()).unwrap();
    let mut http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert!(hs.feed(&mut http).is_err());
    let mut out = Vec::new();
    hs.take_output(&mut out);
    let mut hs = Handshake::new(config.clone()).unwrap();
    let mut long = vec![22, 3, 1, 0xff, 0xff];
    assert!(matches!(
        hs.feed(&mut long),
        Err(TlsError::RecordTooLong(_))
    ));
    // A TLS 1.2-only ClientHello: no common version (rustls answers protocol_version).
    let mut hs = Handshake::new(config).unwrap();
    let mut hello = tls12_hello();
    assert!(matches!(hs.feed(&mut hello), Err(TlsError::Rustls(_))));
    let mut alert = Vec::new();
    hs.take_output(&mut alert);
    assert_eq!(alert.first(), Some(&21), "an alert record");
}

#[test]
fn missing_or_empty_files_are_named_in_the_error() {
    let dir = tmp("files");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = server_config(&empty, &empty).unwrap_err();
    assert!(e.to_string().contains("empty.pem"), "{e}");
    let e = server_config(&dir.join("none.pem"), &empty).unwrap_err();
    assert!(e.to_string().contains("none.pem"), "{e}");
}
