//! What the RTSPS tests share: a server with RTSPS on a free port, the bundled sample's
//! video timing, and a blocking RTSP client over rustls (any certificate accepted).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::track::TrackKind;
use shardcast::media::MediaFile;
use shardcast::rtsp::response::{interleaved_frame, parse_response, RtspResponse};

/// Accepts any server certificate (the tests' are self-signed).
#[derive(Debug)]
pub struct AnyCert;

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

#[allow(deprecated)] // ring's provider; see src/tls/mod.rs.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

pub fn client_config() -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth(),
    )
}

/// A blocking RTSP client over rustls.
pub struct TlsRtsp {
    pub tls: rustls::StreamOwned<ClientConnection, TcpStream>,
    pub buf: Vec<u8>,
    pub cseq: u32,
}

impl TlsRtsp {
    pub fn connect(addr: SocketAddr) -> TlsRtsp {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn =
            ClientConnection::new(client_config(), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("handshake");
        }
        TlsRtsp {
            tls,
            buf: Vec::new(),
            cseq: 0,
        }
    }

    pub fn peer_certificate(&self) -> Vec<u8> {
        self.tls.conn.peer_certificates().unwrap()[0].to_vec()
    }

    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.tls.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    pub fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> RtspResponse {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.tls.write_all(req.as_bytes()).unwrap();
        loop {
            while let Some((_, payload)) = interleaved_frame(&self.buf) {
                let used = 4 + payload.len();
                self.buf.drain(..used);
            }
            if let Some((resp, used)) = parse_response(&self.buf).unwrap() {
                self.buf.drain(..used);
                return resp;
            }
            assert!(self.fill(), "no answer to {method}");
        }
    }

    /// Reads to the end of the TLS stream: `Ok` when it ended with `close_notify` (rustls
    /// reports a TCP close without it as `UnexpectedEof`), else the error (an alert the
    /// server sent shows as its name).
    pub fn read_to_close(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.tls.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((ch, payload)) = interleaved_frame(&self.buf) {
                let payload = payload.to_vec();
                self.buf.drain(..4 + payload.len());
                return Some((ch, payload));
            }
            if !self.fill() {
                return None;
            }
        }
    }
}

/// A server with RTSPS on a free port (a fresh self-signed certificate in a temporary
/// folder named by `prefix` and `tag`) and its log collected.
pub fn rtsps_server(prefix: &str, tag: &str, extra: &[&str]) -> (super::Server, PathBuf) {
    let dir = std::env::temp_dir().join(format!("shardcast-{prefix}-{}-{tag}", std::process::id()));
    let (cert, key) = super::make_cert(&dir, "shardcast-test");
    let mut args = vec![
        "--rtsps-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = super::Server::start_logged(&args);
    assert!(server.rtsps.is_some(), "the banner names the rtsps address");
    (server, dir)
}

/// `rtsps://` URL of stream `name`.
pub fn rtsps_url(server: &super::Server, name: &str) -> String {
    format!("rtsps://{}/{name}", server.rtsps.unwrap())
}

/// The bundled sample's video track: its index, each frame's presentation time in decode
/// order, and its timescale.
pub fn sample_video() -> (usize, Vec<i64>, u32) {
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let (index, video) = media
        .index
        .tracks
        .iter()
        .enumerate()
        .find(|(_, t)| t.kind == TrackKind::Video)
        .unwrap();
    let pts = video
        .samples
        .iter()
        .map(|s| s.dts as i64 + i64::from(s.cts_offset))
        .collect();
    (index, pts, video.timescale)
}
