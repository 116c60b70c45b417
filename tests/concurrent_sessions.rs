//! Load correctness: 200 concurrent UDP viewers of the 10 s sample, spread over every shard,
//! each receive every packet of both tracks — no sequence gap on loopback, every video
//! frame (marker bits) and every audio frame. Fails on any lost or reordered packet, on a
//! shard left unused, or if a session stalls.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{parse_rtp, setup_udp_stream};
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::MediaFile;

const VIEWERS: usize = 200;
const SHARDS: usize = 2;

/// What one track of one viewer received.
#[derive(Default)]
struct Received {
    seqs: Vec<u16>,
    /// Frames completed: marker bits (video), access units in marked packets (AAC).
    markers: usize,
    /// Datagrams from anywhere but the server's RTP port (ignored).
    foreign: usize,
}

/// Receives one track's RTP, accepting only datagrams from the server's advertised RTP port
/// (as strict clients such as retina do), so stray traffic to a reused port cannot pass for ours.
async fn receive_track(sock: std::net::UdpSocket, server_rtp: SocketAddr, aac: bool) -> Received {
    sock.set_nonblocking(true).unwrap();
    let sock = tokio::net::UdpSocket::from_std(sock).unwrap();
    let mut got = Received::default();
    let mut buf = [0u8; 2048];
    // Ends 1.5 s after the last packet (the clip is 10 s; bounded at 30 s regardless).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let wait = if got.seqs.is_empty() {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(1500)
        };
        let recv = tokio::time::timeout(wait, sock.recv_from(&mut buf));
        match tokio::time::timeout_at(deadline, recv).await {
            Ok(Ok(Ok((_, from)))) if from != server_rtp => got.foreign += 1,
            Ok(Ok(Ok((n, _)))) => {
                let p = parse_rtp(&buf[..n]).expect("valid RTP");
                got.seqs.push(p.seq);
                got.markers += if aac {
                    common::aac_units_completed(&buf[..n])
                } else {
                    usize::from(p.marker)
                };
            }
            _ => return got,
        }
    }
}

#[test]
fn two_hundred_udp_viewers_receive_every_packet_on_all_shards() {
    let media = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
    let frames: Vec<usize> = media.index.tracks.iter().map(|t| t.samples.len()).collect();
    let server = common::Server::start(&["--shards", &SHARDS.to_string(), "--log", "warn"]);
    let url = server.url("sample");

    let mut viewers = Vec::new();
    let mut server_ports = BTreeSet::new();
    for _ in 0..VIEWERS {
        let v = setup_udp_stream(server.addr, "sample", 2);
        server_ports.extend(v.server_rtp.iter().map(|a| a.port()));
        let socks: Vec<_> = v
            .socks
            .into_iter()
            .zip(v.server_rtp)
            .map(|((rtp, rtcp), server_rtp)| (rtp, rtcp, server_rtp))
            .collect();
        viewers.push((v.rtsp, v.session, socks));
    }
    assert_eq!(
        server_ports.len(),
        SHARDS,
        "sessions spread over every shard: {server_ports:?}"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    let mut first_seqs = Vec::new();
    let mut keep = Vec::new();
    let mut connections = Vec::new();
    for (mut rtsp, session, socks) in viewers {
        let r = rtsp.request("PLAY", &url, &[("Session", &session)]);
        assert_eq!(r.status, 200);
        let info = r.header("RTP-Info").unwrap().to_owned();
        let seqs: Vec<u16> = info
            .split(',')
            .map(|e| {
                e.split(';')
                    .find_map(|p| p.trim().strip_prefix("seq="))
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        first_seqs.push(seqs);
        let mut per_track = Vec::new();
        for (t, (rtp, rtcp, server_rtp)) in socks.into_iter().enumerate() {
            let _guard = rt.enter();
            // Track 1 of the bundled sample is AAC.
            per_track.push(rt.spawn(receive_track(rtp, server_rtp, t == 1)));
            keep.push(rtcp);
        }
        tasks.push(per_track);
        // Real players keep their RTSP connection open while they watch.
        connections.push(rtsp);
    }
    for (v, per_track) in tasks.into_iter().enumerate() {
        for (t, task) in per_track.into_iter().enumerate() {
            let got = rt.block_on(task).unwrap();
            if got.foreign > 0 {
                eprintln!(
                    "viewer {v} track {t}: ignored {} datagrams from elsewhere",
                    got.foreign
                );
            }
            assert!(
                !got.seqs.is_empty(),
                "viewer {v} track {t} received nothing"
            );
            assert_eq!(
                got.seqs[0], first_seqs[v][t],
                "viewer {v} track {t}: starts at RTP-Info seq"
            );
            for w in got.seqs.windows(2) {
                assert_eq!(
                    w[1],
                    w[0].wrapping_add(1),
                    "viewer {v} track {t}: gap or reorder after seq {}",
                    w[0]
                );
            }
            assert_eq!(
                got.markers, frames[t],
                "viewer {v} track {t}: every frame (marker bit) arrives"
            );
        }
    }
}
