//! NACKs from WebRTC viewers of live streams (RFC 4585 §6.2.1): answered from one history
//! per stream track on the shard, and for a live log only while the packet's bytes are
//! still readable under the log's pin.

use super::*;
use crate::ingest::Frame;
use crate::live_log::{LogTrackSpec, LogWriter, MIN_CAPACITY};

/// Our ufrag in aioice's fixture checks (`peer_setup`).
const FIXTURE_UFRAG: &str = "Sh4rd0UF";

/// A log of the rig's video track alone, with a ring of `capacity` bytes, numbered with the
/// payload budget the WebRTC viewers get (1,100).
fn video_log(rig: &RtcRig, capacity: usize) -> LogWriter {
    let t = &rig.media.index.tracks[0];
    let spec = LogTrackSpec {
        kind: t.kind,
        codec: t.codec.clone(),
    };
    LogWriter::create(
        "live/cam",
        &[spec],
        capacity,
        1100,
        vec![rig.w.waker.clone()],
        Instant::now(),
    )
    .unwrap()
}

/// Appends the video frames with decode times in `[from, to)` seconds; returns how many.
fn publish_video(rig: &RtcRig, w: &mut LogWriter, from: f64, to: f64) -> usize {
    let t = &rig.media.index.tracks[0];
    let bytes = rig.media.bytes.as_slice();
    let clock = |ticks: i64| ticks * i64::from(t.codec.clock_rate_hz()) / i64::from(t.timescale);
    let mut n = 0;
    for s in &t.samples {
        let secs = t.dts_ticks(s) as f64 / f64::from(t.timescale);
        if secs < from || secs >= to {
            continue;
        }
        let frame = Frame {
            track: 0,
            pts: clock(t.pts_ticks(s)),
            dts: clock(t.dts_ticks(s)),
            sync: s.sync,
            data: &bytes[s.offset as usize..(s.offset + u64::from(s.len)) as usize],
        };
        w.append(&frame, Instant::now()).unwrap();
        n += 1;
    }
    n
}

/// Starts session `id`, the video of `live` or `log` to a WebRTC viewer (the browser with
/// `cert`; our ICE ufrag `ufrag`), with the stream's own SSRC and numbering.
fn start_live(
    rig: &mut RtcRig,
    id: SessionId,
    (cert, ufrag): (&DtlsCertificate, &str),
    live: Option<Arc<LiveChannel>>,
    log: Option<&LogWriter>,
) -> Ssrc {
    let log = log.map(|w| w.log().clone());
    let (ssrc, seq, ts, media) = match (&live, &log) {
        (Some(ch), _) => (
            ch.tracks[0].ssrc,
            ch.tracks[0].seq0,
            ch.tracks[0].ts0,
            rig.media.clone(),
        ),
        (_, Some(log)) => (
            log.tracks[0].ssrc,
            log.tracks[0].seq0,
            log.tracks[0].ts0,
            log.media.clone(),
        ),
        _ => unreachable!("a live stream"),
    };
    let setup = SessionSetup {
        id,
        media,
        tracks: vec![TrackSetup {
            track_index: 0,
            payload_type: VIDEO_PT,
            ssrc,
            initial_seq: seq,
            initial_rtptime: ts,
            dest: TrackDest::WebRtc,
            source: None,
            srtp: None,
        }],
        sink: None,
        activity: Arc::new(Activity::default()),
        payload_budget_bytes: 1100,
        cname: "test".into(),
        live,
        log,
    };
    let mut peer = peer_setup(cert);
    peer.local_ufrag = ufrag.into();
    rig.w.apply(ShardCommand::StartWebRtc(Box::new(WebRtcStart {
        setup,
        peer,
    })));
    ssrc
}

/// A generic NACK (RFC 4585 §6.2.1, by hand) from the browser for `seqs` of `media`, one
/// FCI each, sealed with the browser's SRTCP context.
fn nack(send: &mut TheirContext, media: Ssrc, seqs: &[u16]) -> Vec<u8> {
    let mut p = vec![0x81, 205, 0, 2 + seqs.len() as u8];
    p.extend(BROWSER_SSRC.to_be_bytes());
    p.extend(media.0.to_be_bytes());
    for seq in seqs {
        p.extend(seq.to_be_bytes());
        p.extend([0, 0]);
    }
    send.encrypt_rtcp(&p).unwrap().to_vec()
}

/// As `connect`, also returning the browser's sending context (for its SRTCP).
fn connect_both(
    rig: &mut RtcRig,
    browser_cert: &DtlsCertificate,
) -> (UdpSocket, TheirContext, TheirContext) {
    let browser = browser_socket();
    browser
        .send_to(&aioice("request_nominate"), rig.port)
        .unwrap();
    rig.drain();
    assert_eq!(received(&browser).len(), 1, "the check answered");
    let mut client = dtls_client(browser_cert);
    let material = handshake(rig, &mut client, &browser);
    let profile = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmHmacSha1_80,
    ]
    .into_iter()
    .find(|p| p.keying_material_len() == material.len())
    .unwrap();
    let (receive, send) = browser_contexts(&material, profile);
    (browser, receive, send)
}

/// The RTP sequence number of a datagram (in clear, RFC 3711 §3.1), if it is SRTP.
fn seq_of(d: &[u8]) -> Option<u16> {
    (!crate::webrtc::peer::is_rtcp(d)).then(|| u16::from_be_bytes([d[2], d[3]]))
}

/// A WebRTC viewer of a live log (64 KiB ring: half of it, the readable part, is under half
/// a second of this video): a packet lost on the way is NACKed while its sample is readable
/// and comes again byte for byte (webrtc-srtp opens both copies); one whose sample the
/// writer has since written past is not sent (its bytes may be another sample's now) and is
/// counted missed. The log viewer's packets go into the shard's one ring of the stream, not
/// a history of its own; the send passes and the NACK's drain allocate nothing.
#[test]
fn a_live_log_viewers_nack_is_served_while_its_bytes_are_readable_and_missed_after() {
    let mut rig = rtc_rig();
    let mut w = video_log(&rig, MIN_CAPACITY);
    // The first keyframe and a few frames: about 25 KB, all readable.
    assert!(publish_video(&rig, &mut w, 0.0, 0.2) > 0);
    let browser_cert = DtlsCertificate::generate().unwrap();
    let id: SessionId = 0x106;
    let ssrc = start_live(&mut rig, id, (&browser_cert, FIXTURE_UFRAG), None, Some(&w));
    assert_eq!(rig.w.rtc.histories.rings(), 1, "the stream's ring");
    let slot = rig.w.by_id[&id];
    let own = rig.w.sessions[slot]
        .as_ref()
        .unwrap()
        .webrtc
        .as_ref()
        .unwrap();
    assert_eq!(own.history.rings(), 0, "no history of its own");
    let (browser, mut receive, mut send) = connect_both(&mut rig, &browser_cert);

    // The keyframe's GOP so far; the network loses its third packet.
    let first = play_for(&mut rig, Duration::from_millis(150), &browser);
    let seqs: Vec<u16> = first.iter().filter_map(|d| seq_of(d)).collect();
    assert!(seqs.len() > 5, "{} packets of the first frames", seqs.len());
    let old = seqs[2];
    let (_, rest): (Vec<_>, Vec<_>) = first.into_iter().partition(|d| seq_of(d) == Some(old));
    let mut got = Decrypted::default();
    decrypt_all(&mut receive, rest, &mut got);

    // More frames, up to the next keyframe's (at 2 s): the writer goes past half the ring
    // (the first keyframe's bytes are below any pin now; the ring wrapped over them), and
    // the viewer, behind by more than that, jumps to the new keyframe.
    assert!(publish_video(&rig, &mut w, 0.2, 2.1) > 0);
    rig.w.poll_logs();
    let later = play_for(&mut rig, Duration::from_millis(150), &browser);
    let recent: Vec<u16> = later.iter().filter_map(|d| seq_of(d)).collect();
    assert!(!recent.is_empty(), "the viewer follows the log");
    // The network loses the last packet sent.
    let new = *recent.last().unwrap();
    let (lost, rest): (Vec<_>, Vec<_>) = later.into_iter().partition(|d| seq_of(d) == Some(new));
    decrypt_all(&mut receive, rest, &mut got);
    let lost_plain = receive.decrypt_rtp(&lost[0]).unwrap().to_vec();

    let (served, missed) = (
        get(&rig.counters.webrtc_nacks_served),
        get(&rig.counters.webrtc_nacks_missed),
    );
    let request = nack(&mut send, ssrc, &[old, new]);
    let before = allocations_on_this_thread();
    browser.send_to(&request, rig.port).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    rig.w.drain_webrtc(Instant::now());
    assert_eq!(
        allocations_on_this_thread() - before,
        0,
        "a NACK's drain, lookups and re-send"
    );
    let again = received(&browser);
    assert_eq!(
        again.iter().filter_map(|d| seq_of(d)).collect::<Vec<_>>(),
        vec![new],
        "the readable packet is sent again at once; the overwritten one is not"
    );
    let mut resent = Decrypted::default();
    decrypt_all(&mut receive, again, &mut resent);
    assert_eq!(resent.rtp[0].3, lost_plain[12..], "byte for byte");
    assert_eq!(get(&rig.counters.webrtc_nacks_served) - served, 1);
    assert_eq!(get(&rig.counters.webrtc_nacks_missed) - missed, 1);

    // Gone with its last WebRTC viewer.
    rig.w.apply(ShardCommand::Teardown { id });
    assert_eq!(rig.w.rtc.histories.rings(), 0);
}

/// Two WebRTC viewers of one live channel on a shard share one history ring for the
/// channel's video (not one each); a file viewer keeps its own; the ring goes with the
/// channel's last WebRTC viewer. A NACK from the connected viewer is served from the shared
/// ring, byte for byte.
#[test]
fn viewers_of_a_live_channel_share_one_nack_history_per_shard() {
    let mut rig = rtc_rig();
    let ch =
        Arc::new(LiveChannel::new("live", rig.media.clone(), 1100, StartPolicy::Delayed).unwrap());
    let (a_cert, b_cert) = (
        DtlsCertificate::generate().unwrap(),
        DtlsCertificate::generate().unwrap(),
    );
    // A file viewer numbers its own packets: a ring of its own, none on the shard.
    rig.start(0xF, &DtlsCertificate::generate().unwrap());
    let f_slot = rig.w.by_id[&0xF];
    let peer = rig.w.sessions[f_slot]
        .as_ref()
        .unwrap()
        .webrtc
        .as_ref()
        .unwrap();
    assert_eq!(peer.history.rings(), 1);
    assert_eq!(rig.w.rtc.histories.rings(), 0);
    rig.w.apply(ShardCommand::Teardown { id: 0xF });
    // Viewer b is never connected (another ufrag: the fixture's checks are a's).
    let ssrc = start_live(&mut rig, 0xB, (&b_cert, "Other0UF"), Some(ch.clone()), None);
    assert_eq!(rig.w.rtc.histories.rings(), 1, "the channel's ring");
    start_live(
        &mut rig,
        0xA,
        (&a_cert, FIXTURE_UFRAG),
        Some(ch.clone()),
        None,
    );
    assert_eq!(rig.w.rtc.histories.rings(), 1, "one ring for both viewers");
    for id in [0xA, 0xB] {
        let slot = rig.w.by_id[&id];
        let peer = rig.w.sessions[slot]
            .as_ref()
            .unwrap()
            .webrtc
            .as_ref()
            .unwrap();
        assert_eq!(peer.history.rings(), 0, "no history of its own");
    }

    let (browser, mut receive, mut send) = connect_both(&mut rig, &a_cert);
    let datagrams = play_for(&mut rig, Duration::from_millis(200), &browser);
    let seqs: Vec<u16> = datagrams.iter().filter_map(|d| seq_of(d)).collect();
    assert!(seqs.len() > 5, "{} packets", seqs.len());
    let lost_seq = seqs[3];
    let (lost, rest): (Vec<_>, Vec<_>) = datagrams
        .into_iter()
        .partition(|d| seq_of(d) == Some(lost_seq));
    let mut got = Decrypted::default();
    decrypt_all(&mut receive, rest, &mut got);
    let lost_plain = receive.decrypt_rtp(&lost[0]).unwrap().to_vec();
    browser
        .send_to(&nack(&mut send, ssrc, &[lost_seq]), rig.port)
        .unwrap();
    rig.drain();
    let mut resent = Decrypted::default();
    decrypt_all(&mut receive, received(&browser), &mut resent);
    let again: Vec<_> = resent.rtp.iter().filter(|p| p.2 == lost_seq).collect();
    assert_eq!(again.len(), 1, "sent again");
    assert_eq!(again[0].3, lost_plain[12..], "byte for byte");
    assert_eq!(get(&rig.counters.webrtc_nacks_served), 1);

    rig.w.apply(ShardCommand::Teardown { id: 0xA });
    assert_eq!(rig.w.rtc.histories.rings(), 1, "viewer b still watches");
    rig.w.apply(ShardCommand::Teardown { id: 0xB });
    assert_eq!(rig.w.rtc.histories.rings(), 0, "gone with the last viewer");
}
