//! Conformance against `retina`, a strict independent RTSP client: it validates our SDP
//! (H.264 parameter sets must decode), Transport/Session/RTP-Info answers, accepts RTP only
//! from the advertised `server_port`, and depacketizes FU-A/STAP-A and RFC 3640 AAC.
//! Fails if any frame is missing, lost, or carries an unexpected timestamp.

mod common;

use common::retina_play::play_all;
use retina::client::{TcpTransportOptions, Transport, UdpTransportOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retina_plays_sample_over_udp_with_every_frame() {
    let server = common::Server::start(&[]);
    play_all(
        &server.url("sample"),
        Transport::Udp(UdpTransportOptions::default()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retina_plays_sample_over_tcp_interleaved_with_every_frame() {
    let server = common::Server::start(&[]);
    play_all(
        &server.url("sample"),
        Transport::Tcp(TcpTransportOptions::default()),
    )
    .await;
}
