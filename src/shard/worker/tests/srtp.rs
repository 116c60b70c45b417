//! RTSPS viewers' SRTP on the shard (`RTP/SAVP`, MIKEY-keyed): UDP datagrams and interleaved
//! frames are SRTP that unprotect to the session's RTP, sender reports are SRTCP, the
//! client's SRTCP is unprotected with its key (a bad tag or no key: dropped and counted),
//! and the steady state allocates nothing.

use super::*;
use crate::shard::SrtpKeys;
use crate::webrtc::srtp::{MasterKey, SrtpProfile, SrtpReceiver, SrtpSender};

const OURS: [u8; 30] = [0x11; 30];
const THEIRS: [u8; 30] = [0x22; 30];

fn master(k: &[u8; 30]) -> MasterKey {
    MasterKey::new(SrtpProfile::Aes128CmHmacSha1_80, &k[..16], &k[16..]).unwrap()
}

#[test]
fn srtp_viewers_get_protected_rtp_and_srtcp_and_their_srtcp_is_checked() {
    let mut r = rig(true, 16);
    r.srtp = Some(SrtpKeys {
        ours: OURS,
        theirs: Some(THEIRS),
    });
    let t0 = Instant::now();
    let viewer = r.add_session(7, 0xA000_0000, t0);
    viewer.rtp.set_nonblocking(true).unwrap();
    viewer.rtcp.set_nonblocking(true).unwrap();
    // An interleaved SRTP viewer on a TCP sink.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_nonblocking(true).unwrap();
    let sink = Arc::new(TcpSink::new(listener.accept().unwrap().0).unwrap());
    let interleaved = TrackDest::Interleaved {
        rtp_channel: 0,
        rtcp_channel: 1,
    };
    let activity = Arc::new(Activity::default());
    r.play(8, 0xB000_0000, interleaved, Some(sink), activity, t0);

    let mut rx = SrtpReceiver::new(&master(&OURS));
    let mut rx_rtcp = SrtpReceiver::new(&master(&OURS));
    let mut tcp_rx = SrtpReceiver::new(&master(&OURS));
    let mut last_seq: Map<u32, u16> = Map::new();
    let (mut udp_rtp, mut sender_reports, mut tcp_rtp) = (0, 0, 0);
    let mut buf = [0u8; 2048];
    let mut tcp_partial = Vec::new();
    let mut tcp_buf = vec![0u8; 1 << 16];
    let mut client_tx = SrtpSender::new(&master(&THEIRS));
    let report = rr(Ssrc(0x1234), &[(Ssrc(0xA000_0000), 3, 90, 0, 0)]);
    let mut srtcp = [0u8; 256];
    let tick = Duration::from_millis(5);
    let mut now = t0;
    let mut allocs_before = None;
    while now < t0 + Duration::from_secs(3) {
        now += tick;
        if allocs_before.is_none() && now > t0 + Duration::from_secs(1) {
            allocs_before = Some(allocations_on_this_thread());
        }
        r.w.send_due(now);
        let n = client_tx.protect_rtcp(&report, &mut srtcp).unwrap();
        viewer.rtcp.send_to(&srtcp[..n], r.server_rtcp).unwrap();
        r.w.drain_rtcp(now);
        if allocs_before.is_some() {
            // The measured seconds: only drained (nothing kept or checked on this thread).
            while viewer.rtp.recv(&mut buf).is_ok() {}
            while viewer.rtcp.recv(&mut buf).is_ok() {}
            while matches!(client.read(&mut tcp_buf), Ok(n) if n > 0) {}
            continue;
        }
        while let Ok(n) = viewer.rtp.recv(&mut buf) {
            let wire = buf[..n].to_vec();
            let len = rx.unprotect_rtp(&mut buf[..n]).expect("SRTP authenticates");
            assert_eq!(len + 10, n);
            assert_ne!(wire[12..len], buf[12..len], "payload encrypted");
            let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            if let Some(prev) = last_seq.insert(ssrc, seq) {
                assert_eq!(seq, prev.wrapping_add(1), "ssrc {ssrc:08X}");
            }
            udp_rtp += 1;
        }
        while let Ok(n) = viewer.rtcp.recv(&mut buf) {
            let len = rx_rtcp
                .unprotect_rtcp(&mut buf[..n])
                .expect("SRTCP authenticates");
            assert_eq!(buf[1], 200, "a sender report");
            assert!(len >= 28);
            sender_reports += 1;
        }
        while let Ok(n) = client.read(&mut tcp_buf) {
            if n == 0 {
                break;
            }
            tcp_partial.extend_from_slice(&tcp_buf[..n]);
        }
        while tcp_partial.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([tcp_partial[2], tcp_partial[3]]));
            if tcp_partial.len() < 4 + len {
                break;
            }
            assert_eq!(tcp_partial[0], b'$');
            let mut frame = tcp_partial[4..4 + len].to_vec();
            if tcp_partial[1] == 0 {
                tcp_rx
                    .unprotect_rtp(&mut frame)
                    .expect("interleaved SRTP authenticates");
                tcp_rtp += 1;
            }
            tcp_partial.drain(..4 + len);
        }
    }
    let allocs = allocations_on_this_thread() - allocs_before.unwrap();
    assert!(udp_rtp > 50 && tcp_rtp > 50, "{udp_rtp} UDP, {tcp_rtp} TCP");
    assert!(sender_reports >= 2, "one per track at the start");
    assert_eq!(allocs, 0, "{allocs} allocations in the steady state");
    assert!(get(&r.counters.rtcp_received) > 100);
    assert_eq!(
        get(&r.counters.srtcp_dropped),
        0,
        "the client's SRTCP authenticates"
    );
    assert_eq!(get(&r.counters.rtcp_invalid), 0);
    // A bad tag, and plain RTCP: dropped and counted.
    let n = client_tx.protect_rtcp(&report, &mut srtcp).unwrap();
    srtcp[n - 1] ^= 1;
    viewer.rtcp.send_to(&srtcp[..n], r.server_rtcp).unwrap();
    viewer.rtcp.send_to(&report, r.server_rtcp).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while get(&r.counters.srtcp_dropped) < 2 && Instant::now() < deadline {
        r.w.drain_rtcp(now);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(get(&r.counters.srtcp_dropped), 2);
    // GStreamer's random keep-alive from the viewer's RTP port that happens to start like
    // RTCP: SRTCP only comes from the RTCP port, so it is a keep-alive, not a dropped SRTCP.
    let keepalives = get(&r.counters.nat_keepalives);
    let mut random = [0x5au8; 200];
    random[..2].copy_from_slice(&[0x8d, 0xc5]);
    viewer.rtp.send_to(&random, r.server_rtp).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while get(&r.counters.nat_keepalives) == keepalives && Instant::now() < deadline {
        r.w.drain_rtcp(now);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(get(&r.counters.nat_keepalives), keepalives + 1);
    assert_eq!(get(&r.counters.srtcp_dropped), 2);
}
