//! Unit tests of the depacketizers: each RFC 6184, RFC 3640 and RFC 6416 packet type, each fault the
//! module promises to survive (loss, truncation, reordering, timestamp jumps, oversize frames,
//! foreign payload types), the RFC 3550 counters, and a no-panic property over any packets.

use super::*;
use crate::ingest::sdp::{AuHeaderFormat, LatmFormat};
use crate::media::track::{AacConfig, Codec as TrackCodec, TrackKind};

const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9];
const PPS: &[u8] = &[0x68, 0xee, 0x3c, 0x80];

fn h264_track() -> AnnouncedTrack {
    AnnouncedTrack {
        control: "streamid=0".into(),
        payload_type: 96,
        codec: TrackCodec::H264(H264Config {
            profile_idc: 100,
            profile_compat: 0,
            level_idc: 30,
            nal_length_size: 4,
            sps: vec![SPS.to_vec()],
            pps: vec![PPS.to_vec()],
            width: 0,
            height: 0,
        }),
        kind: TrackKind::Video,
        format: PayloadFormat::H264 {
            packetization_mode: 1,
        },
    }
}

fn aac_track(format: AuHeaderFormat) -> AnnouncedTrack {
    AnnouncedTrack {
        control: "streamid=1".into(),
        payload_type: 97,
        codec: TrackCodec::Aac(AacConfig {
            audio_specific_config: vec![0x11, 0x90],
            object_type: 2,
            sample_rate_hz: 48_000,
            channels: 2,
        }),
        kind: TrackKind::Audio,
        format: PayloadFormat::Aac(format),
    }
}

const HBR: AuHeaderFormat = aac::AAC_HBR;

/// An RTP packet (RFC 3550 §5.1) with SSRC 0x1234.
fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, (u8::from(marker) << 7) | pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// What came out: (pts, sync, bytes) per frame.
type Out = Vec<(i64, bool, Vec<u8>)>;

fn push_all(d: &mut Depacketizer, packets: &[Vec<u8>]) -> Out {
    let mut out = Vec::new();
    for p in packets {
        d.push(p, &mut |f| {
            assert_eq!(f.pts, f.dts);
            out.push((f.pts, f.sync, f.data.to_vec()));
        });
    }
    out
}

/// AVCC form of NAL units.
fn avcc(nals: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for n in nals {
        v.extend_from_slice(&(n.len() as u32).to_be_bytes());
        v.extend_from_slice(n);
    }
    v
}

/// FU-A packets' payloads carrying `nal` in pieces of at most `piece` bytes (RFC 6184 §5.8).
fn fu_a(nal: &[u8], piece: usize) -> Vec<Vec<u8>> {
    let indicator = (nal[0] & 0xe0) | 28;
    let body = &nal[1..];
    let chunks: Vec<&[u8]> = body.chunks(piece).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut h = nal[0] & 0x1f;
            if i == 0 {
                h |= 0x80;
            }
            if i == n - 1 {
                h |= 0x40;
            }
            let mut p = vec![indicator, h];
            p.extend_from_slice(c);
            p
        })
        .collect()
}

fn idr(len: usize) -> Vec<u8> {
    let mut v = vec![0x65];
    v.extend((0..len - 1).map(|i| (i % 251) as u8));
    v
}

fn non_idr(len: usize, fill: u8) -> Vec<u8> {
    let mut v = vec![0x41];
    v.resize(len, fill);
    v
}

#[test]
fn single_nal_unit_packets_make_one_access_unit() {
    let mut d = Depacketizer::new(0, &h264_track());
    let slice = idr(50);
    let out = push_all(
        &mut d,
        &[
            rtp(96, 10, 9000, false, SPS),
            rtp(96, 11, 9000, false, PPS),
            rtp(96, 12, 9000, true, &slice),
        ],
    );
    assert_eq!(out, vec![(9000, true, avcc(&[SPS, PPS, &slice]))]);
    assert_eq!(d.stats().frames, 1);
    // The announced sets came in-band again: no change to report.
    assert_eq!(d.parameter_sets_changed(), None);
}

#[test]
fn stap_a_unpacks_into_nal_units() {
    let mut d = Depacketizer::new(0, &h264_track());
    let mut stap = vec![0x78];
    for n in [SPS, PPS] {
        stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
        stap.extend_from_slice(n);
    }
    let slice = non_idr(20, 7);
    let out = push_all(
        &mut d,
        &[rtp(96, 1, 0, false, &stap), rtp(96, 2, 0, true, &slice)],
    );
    assert_eq!(out, vec![(0, false, avcc(&[SPS, PPS, &slice]))]);
}

#[test]
fn fu_a_reassembles_the_nal_unit_header_and_body() {
    let mut d = Depacketizer::new(2, &h264_track());
    let nal = idr(3000);
    let frags = fu_a(&nal, 1000);
    assert_eq!(frags.len(), 3);
    let packets: Vec<Vec<u8>> = frags
        .iter()
        .enumerate()
        .map(|(i, f)| rtp(96, 100 + i as u16, 3600, i == 2, f))
        .collect();
    let mut tracks = Vec::new();
    for p in &packets {
        d.push(p, &mut |f| tracks.push((f.track, f.data.to_vec(), f.sync)));
    }
    assert_eq!(tracks, vec![(2, avcc(&[&nal]), true)]);
}

#[test]
fn a_new_timestamp_ends_an_access_unit_without_marker() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    let b = non_idr(12, 2);
    let out = push_all(
        &mut d,
        &[rtp(96, 1, 0, false, &a), rtp(96, 2, 3000, false, &b)],
    );
    assert_eq!(out, vec![(0, false, avcc(&[&a]))]);
    let out = push_all(&mut d, &[rtp(96, 3, 6000, true, &a)]);
    assert_eq!(
        out,
        vec![(3000, false, avcc(&[&b])), (6000, false, avcc(&[&a]))]
    );
}

#[test]
fn a_lost_fragment_drops_that_frame_and_the_next_is_emitted() {
    let mut d = Depacketizer::new(0, &h264_track());
    let big = idr(3000);
    let frags = fu_a(&big, 1000);
    let next = non_idr(40, 3);
    // Sequence 2 (the middle fragment) never arrives.
    let out = push_all(
        &mut d,
        &[
            rtp(96, 1, 0, false, &frags[0]),
            rtp(96, 3, 0, true, &frags[2]),
            rtp(96, 4, 3000, true, &next),
        ],
    );
    assert_eq!(out, vec![(3000, false, avcc(&[&next]))]);
    let s = d.stats();
    assert_eq!((s.lost, s.frames), (1, 1));
    assert_eq!(s.dropped, [1, 0, 0, 0, 0], "one frame lost, counted once");
}

#[test]
fn a_lost_first_fragment_or_last_fragment_drops_the_frame() {
    let nal = idr(3000);
    let frags = fu_a(&nal, 1000);
    let next = non_idr(40, 3);
    // The start is lost before anything was seen: the continuation cannot be placed.
    let mut d = Depacketizer::new(0, &h264_track());
    let out = push_all(
        &mut d,
        &[
            rtp(96, 2, 0, false, &frags[1]),
            rtp(96, 3, 0, true, &frags[2]),
            rtp(96, 4, 3000, true, &next),
        ],
    );
    assert_eq!(out, vec![(3000, false, avcc(&[&next]))]);
    assert_eq!(d.stats().dropped(DropReason::Incomplete), 1);
    // The end never comes and the timestamp moves on (no sequence gap: the sender skipped it).
    let mut d = Depacketizer::new(0, &h264_track());
    let out = push_all(
        &mut d,
        &[
            rtp(96, 1, 0, false, &frags[0]),
            rtp(96, 2, 0, false, &frags[1]),
            rtp(96, 3, 3000, true, &next),
        ],
    );
    assert_eq!(out, vec![(3000, false, avcc(&[&next]))]);
    assert_eq!(d.stats().dropped(DropReason::Incomplete), 1);
    // A single NAL unit in the middle of an FU-A: the FU-A's end was lost.
    let mut d = Depacketizer::new(0, &h264_track());
    let out = push_all(
        &mut d,
        &[rtp(96, 1, 0, false, &frags[0]), rtp(96, 2, 0, true, &next)],
    );
    assert!(out.is_empty());
    assert_eq!(d.stats().dropped(DropReason::Incomplete), 1);
}

#[test]
fn truncated_and_forbidden_payloads_are_malformed() {
    let next = non_idr(40, 3);
    let bad: Vec<Vec<u8>> = vec![
        vec![],                             // empty payload
        vec![0x7c],                         // FU-A without its FU header
        vec![0x7c, 0x98],                   // FU-A of a STAP-A (type 24 inside)
        vec![0x78, 0x00, 0x05, 0x41, 0x01], // STAP-A NALU size past the end
        vec![0x78, 0x00],                   // STAP-A with half a size field
        vec![0x78, 0x00, 0x00],             // STAP-A with an empty NAL unit
        vec![0x78],                         // STAP-A with nothing in it
        vec![0x78, 0x00, 0x01, 0x7c],       // STAP-A holding an FU-A
        vec![0x00, 1, 2],                   // NAL type 0
        vec![0x79, 0, 0, 0, 2, 0x41, 1],    // STAP-B
        vec![0x7a, 1],                      // MTAP16
        vec![0x7b, 1],                      // MTAP24
        vec![0x7d, 0x85, 1],                // FU-B
        vec![0x7e, 1],                      // type 30
        vec![0x7f, 1],                      // type 31
    ];
    for (i, payload) in bad.iter().enumerate() {
        let mut d = Depacketizer::new(0, &h264_track());
        let out = push_all(
            &mut d,
            &[
                rtp(96, 1, 0, false, SPS),
                rtp(96, 2, 0, true, payload),
                rtp(96, 3, 3000, true, &next),
            ],
        );
        assert_eq!(out, vec![(3000, false, avcc(&[&next]))], "case {i}");
        assert_eq!(d.stats().dropped(DropReason::Malformed), 1, "case {i}");
    }
    // An FU-A continuation of another NAL type than its start.
    let frags = fu_a(&idr(100), 60);
    let mut other = frags[1].clone();
    other[1] = (other[1] & 0xe0) | 1;
    let mut d = Depacketizer::new(0, &h264_track());
    push_all(
        &mut d,
        &[rtp(96, 1, 0, false, &frags[0]), rtp(96, 2, 0, true, &other)],
    );
    assert_eq!(d.stats().dropped(DropReason::Malformed), 1);
}

#[test]
fn wrong_payload_type_and_non_rtp_are_ignored_and_counted() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    let out = push_all(
        &mut d,
        &[
            rtp(96, 1, 0, false, &a),
            rtp(97, 2, 0, true, &a), // another stream's packet
            vec![0x40, 96, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0], // RTP version 1
            vec![0x80, 96, 0],       // shorter than the header
            rtp(96, 2, 0, true, &a),
        ],
    );
    assert_eq!(out, vec![(0, false, avcc(&[&a, &a]))]);
    let s = d.stats();
    assert_eq!(
        (s.packets, s.wrong_payload_type, s.not_rtp, s.lost),
        (5, 1, 2, 0)
    );
    let mut d = Depacketizer::new(0, &h264_track());
    assert_eq!(
        d.push(&rtp(0, 1, 0, true, &a), &mut |_| {}),
        PushOutcome::WrongPayloadType
    );
    assert_eq!(d.push(&[0; 3], &mut |_| {}), PushOutcome::NotRtp);
}

#[test]
fn header_extension_csrcs_and_padding_are_skipped() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    // V=2 P=1 X=1 CC=2; two CSRCs; a 1-word extension (RFC 3550 §5.3.1); 3 padding octets.
    let mut p = vec![0xb2, 0x80 | 96, 0, 1, 0, 0, 0, 9, 0, 0, 0x12, 0x34];
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]);
    p.extend_from_slice(&a);
    p.extend_from_slice(&[0, 0, 3]);
    assert_eq!(push_all(&mut d, &[p]), vec![(9, false, avcc(&[&a]))]);
}

#[test]
fn late_and_duplicate_packets_are_dropped_and_counted() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    let out = push_all(
        &mut d,
        &[
            rtp(96, 10, 0, true, &a),
            rtp(96, 10, 0, true, &a), // duplicate
            rtp(96, 12, 3000, true, &a),
            rtp(96, 11, 1500, true, &a), // reordered: behind the highest
            rtp(96, 13, 6000, true, &a),
        ],
    );
    assert_eq!(
        out.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![0, 3000, 6000]
    );
    let s = d.stats();
    assert_eq!((s.reordered, s.lost, s.extended_highest_seq), (2, 1, 13));
    assert_eq!(
        d.push(&rtp(96, 12, 0, true, &a), &mut |_| {}),
        PushOutcome::Late
    );
}

#[test]
fn sequence_numbers_wrap_into_the_extended_number() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    let packets: Vec<Vec<u8>> = (0..4u16)
        .map(|i| rtp(96, 65_534u16.wrapping_add(i), u32::from(i) * 3000, true, &a))
        .collect();
    assert_eq!(push_all(&mut d, &packets).len(), 4);
    let s = d.stats();
    assert_eq!(
        (s.extended_highest_seq, s.lost, s.reordered),
        ((1 << 16) | 1, 0, 0)
    );
}

#[test]
fn a_sequence_jump_is_believed_on_the_second_packet() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    assert_eq!(
        d.push(&rtp(96, 1, 0, true, &a), &mut |_| {}),
        PushOutcome::Accepted
    );
    assert_eq!(
        d.push(&rtp(96, 30_000, 3000, true, &a), &mut |_| {}),
        PushOutcome::SequenceJump
    );
    let out = push_all(
        &mut d,
        &[
            rtp(96, 30_001, 6000, true, &a),
            rtp(96, 30_002, 9000, true, &a),
        ],
    );
    assert_eq!(
        out.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![6000, 9000]
    );
    assert_eq!(d.stats().sequence_jumps, 2);
    // A new SSRC restarts the sequence without a jump.
    let mut p = rtp(96, 5, 12_000, true, &a);
    p[11] = 0x99;
    assert_eq!(push_all(&mut d, &[p]).len(), 1);
    assert_eq!(d.stats().ssrc_changes, 1);
}

#[test]
fn timestamps_that_wrap_jump_or_go_back_are_unfolded() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    let start = u32::MAX - 1000;
    let out = push_all(
        &mut d,
        &[
            rtp(96, 1, start, true, &a),
            rtp(96, 2, start.wrapping_add(3000), true, &a), // wrapped past 2^32
            rtp(96, 3, start.wrapping_add(1000), true, &a), // back by 2000
            rtp(96, 4, start.wrapping_add(2_000_000_000), true, &a), // a jump forward
            rtp(96, 5, start.wrapping_add(4_000_000_000), true, &a), // and another, wrapping
        ],
    );
    let s = i64::from(start);
    assert_eq!(
        out.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![s, s + 3000, s + 1000, s + 2_000_000_000, s + 4_000_000_000]
    );
}

#[test]
fn parameter_sets_changed_in_band_are_reported_once() {
    let mut d = Depacketizer::new(0, &h264_track());
    // A real 320x240 High profile SPS (ffmpeg's sprop-parameter-sets).
    let sps = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xb2, 0x02, 0x83, 0xf6, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00,
        0x20, 0x00, 0x00, 0x06, 0x41, 0xe2, 0x85, 0x49,
    ];
    let pps = [0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0];
    let slice = idr(30);
    push_all(
        &mut d,
        &[
            rtp(96, 1, 0, false, &sps),
            rtp(96, 2, 0, false, &pps),
            rtp(96, 3, 0, true, &slice),
        ],
    );
    let c = d.parameter_sets_changed().expect("new sets reported");
    assert_eq!(
        (c.width, c.height, c.profile_idc, c.level_idc),
        (320, 240, 0x64, 0x0d)
    );
    assert_eq!((c.sps, c.pps), (vec![sps.to_vec()], vec![pps.to_vec()]));
    assert_eq!(d.parameter_sets_changed(), None);
    push_all(
        &mut d,
        &[
            rtp(96, 4, 3000, false, &sps),
            rtp(96, 5, 3000, true, &slice),
        ],
    );
    assert_eq!(
        d.parameter_sets_changed(),
        None,
        "same sets again are no change"
    );
}

#[test]
fn an_8_mib_nal_unit_is_accepted_and_a_17_mib_one_dropped_within_the_cap() {
    let mut d = Depacketizer::new(0, &h264_track());
    let piece = 1400;
    let mut seq = 0u16;
    let mut send = |d: &mut Depacketizer, nal: &[u8], ts: u32| -> Out {
        let mut out = Vec::new();
        let frags = fu_a(nal, piece);
        for (i, f) in frags.iter().enumerate() {
            seq = seq.wrapping_add(1);
            d.push(&rtp(96, seq, ts, i + 1 == frags.len(), f), &mut |fr| {
                out.push((fr.pts, fr.sync, fr.data.len().to_be_bytes().to_vec()))
            });
        }
        out
    };
    let big = idr(8 << 20);
    let out = send(&mut d, &big, 0);
    assert_eq!(
        out,
        vec![(0, true, ((8usize << 20) + 4).to_be_bytes().to_vec())]
    );
    let huge = idr(17 << 20);
    let out = send(&mut d, &huge, 3000);
    assert!(out.is_empty());
    assert_eq!(d.stats().dropped(DropReason::TooLarge), 1);
    assert!(
        d.buffer_capacity() <= MAX_ACCESS_UNIT,
        "{}",
        d.buffer_capacity()
    );
    let small = non_idr(100, 1);
    let out = send(&mut d, &small, 6000);
    assert_eq!(out.len(), 1, "the stream goes on after an oversize frame");
}

#[test]
fn the_buffer_is_reused_in_steady_state() {
    let mut d = Depacketizer::new(0, &h264_track());
    let nal = idr(5000);
    let mut seq = 0;
    let mut caps = Vec::new();
    for frame in 0..50u32 {
        for (i, f) in fu_a(&nal, 1200).iter().enumerate() {
            seq += 1;
            d.push(&rtp(96, seq, frame * 3000, i == 4, f), &mut |_| {});
        }
        caps.push(d.buffer_capacity());
    }
    assert_eq!(d.stats().frames, 50);
    assert!(caps.windows(2).skip(1).all(|w| w[0] == w[1]), "{caps:?}");
}

#[test]
fn jitter_follows_rfc_3550_a8() {
    let mut d = Depacketizer::new(0, &h264_track());
    let a = non_idr(10, 1);
    // Constant transit: no jitter.
    for i in 0..10u16 {
        d.push_at(
            &rtp(96, i, u32::from(i) * 3000, true, &a),
            Some(500 + u32::from(i) * 3000),
            &mut |_| {},
        );
    }
    assert_eq!(d.stats().jitter_rtp_units, 0);
    // Every packet 160 units later than the previous transit, then back: J += (|D| - J)/16.
    let mut expect = 0f64;
    for i in 10..200u16 {
        let late = if i % 2 == 0 { 160 } else { 0 };
        d.push_at(
            &rtp(96, i, u32::from(i) * 3000, true, &a),
            Some(500 + u32::from(i) * 3000 + late),
            &mut |_| {},
        );
        expect += (160.0 - expect) / 16.0;
    }
    let got = f64::from(d.stats().jitter_rtp_units);
    assert!(
        (got - expect).abs() <= 1.0,
        "jitter {got}, RFC formula {expect}"
    );
}

/// The AU Header Section of AAC-hbr AUs of `sizes` (13-bit size, 3-bit index 0).
fn hbr_headers(sizes: &[usize]) -> Vec<u8> {
    let mut v = ((sizes.len() * 16) as u16).to_be_bytes().to_vec();
    for &s in sizes {
        v.extend_from_slice(&((s as u16) << 3).to_be_bytes());
    }
    v
}

fn au(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

#[test]
fn aac_several_access_units_per_packet_are_timed_by_frame_length() {
    let mut d = Depacketizer::new(1, &aac_track(HBR));
    let aus = [au(200, 1), au(180, 2), au(210, 3)];
    let mut payload = hbr_headers(&[200, 180, 210]);
    for a in &aus {
        payload.extend_from_slice(a);
    }
    let out = push_all(&mut d, &[rtp(97, 1, 48_000, true, &payload)]);
    assert_eq!(
        out,
        vec![
            (48_000, true, aus[0].clone()),
            (49_024, true, aus[1].clone()),
            (50_048, true, aus[2].clone())
        ]
    );
    // 960-sample frames.
    let mut d = Depacketizer::new(
        1,
        &aac_track(AuHeaderFormat {
            frame_length: 960,
            ..HBR
        }),
    );
    let out = push_all(&mut d, &[rtp(97, 1, 0, true, &payload)]);
    assert_eq!(
        out.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![0, 960, 1920]
    );
}

#[test]
fn aac_fragmented_access_unit_is_reassembled() {
    let mut d = Depacketizer::new(1, &aac_track(HBR));
    let whole: Vec<u8> = (0..3000).map(|i| (i % 256) as u8).collect();
    let packets: Vec<Vec<u8>> = whole
        .chunks(1100)
        .enumerate()
        .map(|(i, c)| {
            let mut p = hbr_headers(&[3000]);
            p.extend_from_slice(c);
            rtp(97, 7 + i as u16, 1024, i == 2, &p)
        })
        .collect();
    let out = push_all(&mut d, &packets);
    assert_eq!(out, vec![(1024, true, whole.clone())]);
    // A lost middle fragment: that AU is dropped, the next packet's AU is emitted.
    let mut d = Depacketizer::new(1, &aac_track(HBR));
    let mut next = hbr_headers(&[100]);
    next.extend_from_slice(&au(100, 9));
    let out = push_all(
        &mut d,
        &[
            packets[0].clone(),
            packets[2].clone(),
            rtp(97, 10, 2048, true, &next),
        ],
    );
    assert_eq!(out, vec![(2048, true, au(100, 9))]);
    assert_eq!(
        d.stats().dropped,
        [1, 0, 0, 0, 0],
        "one AU lost, counted once"
    );
    // The first fragment lost: the others cannot make the AU.
    let mut d = Depacketizer::new(1, &aac_track(HBR));
    let out = push_all(
        &mut d,
        &[
            packets[1].clone(),
            packets[2].clone(),
            rtp(97, 10, 2048, true, &next),
        ],
    );
    assert_eq!(out, vec![(2048, true, au(100, 9))]);
    assert_eq!(
        d.stats().dropped,
        [1, 0, 0, 0, 0],
        "one AU lost, counted once"
    );
    // The last fragment's marker with bytes missing; fragments overrunning the size.
    let mut d = Depacketizer::new(1, &aac_track(HBR));
    let mut short_last = packets[1].clone();
    short_last[1] |= 0x80;
    push_all(&mut d, &[packets[0].clone(), short_last]);
    assert_eq!(d.stats().dropped(DropReason::Incomplete), 1);
    let mut d = Depacketizer::new(1, &aac_track(HBR));
    push_all(
        &mut d,
        &[
            packets[0].clone(),
            packets[1].clone(),
            rtp(97, 9, 1024, true, &{
                let mut p = hbr_headers(&[3000]);
                p.extend_from_slice(&au(1500, 0));
                p
            }),
        ],
    );
    assert_eq!(d.stats().dropped(DropReason::Malformed), 1);
}

#[test]
fn aac_bad_headers_are_malformed() {
    let cases: Vec<Vec<u8>> = vec![
        vec![0x00],             // half an AU-headers-length
        vec![0x00, 0x10, 0x01], // header section past the end
        vec![0x00, 0x00],       // no AU-header at all
        {
            // Two headers, the second AU past the packet.
            let mut p = hbr_headers(&[10, 50]);
            p.extend_from_slice(&au(20, 1));
            p
        },
        {
            // First AU-Index 2: interleaving.
            let mut p = vec![0x00, 0x10, 0x00, (10 << 3) | 2];
            p.extend_from_slice(&au(10, 1));
            p
        },
        {
            // A zero-size AU.
            let mut p = hbr_headers(&[0]);
            p.push(1);
            p
        },
        {
            // 20 header bits: a header and 4 bits that make none.
            let mut p = vec![0x00, 20, 0x00, 0x50, 0x00];
            p.extend_from_slice(&au(10, 1));
            p
        },
    ];
    for (i, payload) in cases.iter().enumerate() {
        let mut d = Depacketizer::new(1, &aac_track(HBR));
        push_all(&mut d, &[rtp(97, 1, 0, true, payload)]);
        assert_eq!(d.stats().dropped(DropReason::Malformed), 1, "case {i}");
    }
}

#[test]
fn aac_optional_header_fields_and_auxiliary_section_are_skipped() {
    // sizelength 13, indexlength 3, indexdeltalength 3, ctsdeltalength 4, dtsdeltalength 5,
    // RAP flag, 2 bits of stream state, auxiliary-data-size 8 bits.
    let format = AuHeaderFormat {
        cts_delta_length: 4,
        dts_delta_length: 5,
        random_access_indication: true,
        stream_state_indication: 2,
        auxiliary_data_size_length: 8,
        ..HBR
    };
    // Header 1: size 3, index 0, CTS-flag 0, DTS-flag 1 + delta 5 bits, RAP 1, state 2 bits.
    // Header 2: size 2, delta 1 (skips one AU), CTS-flag 1 + 4 bits, DTS-flag 0, RAP 0, state.
    let mut bits = String::new();
    bits += &format!("{:013b}{:03b}0{}{:05b}1{:02b}", 3, 0, 1, 7, 1);
    bits += &format!("{:013b}{:03b}1{:04b}00{:02b}", 2, 1, 9, 0);
    let n = bits.len();
    while !bits.len().is_multiple_of(8) {
        bits.push('0');
    }
    let mut payload = (n as u16).to_be_bytes().to_vec();
    payload.extend(
        bits.as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()),
    );
    // Auxiliary section: 8-bit size 16, then 16 bits of data.
    payload.extend_from_slice(&[16, 0xaa, 0xbb]);
    payload.extend_from_slice(&[1, 1, 1, 2, 2]);
    let mut d = Depacketizer::new(1, &aac_track(format));
    let out = push_all(&mut d, &[rtp(97, 1, 0, true, &payload)]);
    assert_eq!(
        out,
        vec![(0, true, vec![1, 1, 1]), (2048, true, vec![2, 2])]
    );
}

#[test]
fn aac_oversize_fragmented_access_unit_is_dropped_without_buffering() {
    let format = AuHeaderFormat {
        size_length: 32,
        index_length: 0,
        index_delta_length: 0,
        ..HBR
    };
    let mut d = Depacketizer::new(1, &aac_track(format));
    let size = (MAX_ACCESS_UNIT + 1) as u32;
    let mut packets = Vec::new();
    for i in 0..3u16 {
        let mut p = vec![0, 32];
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&au(1000, 1));
        packets.push(rtp(97, i, 0, i == 2, &p));
    }
    let out = push_all(&mut d, &packets);
    assert!(out.is_empty());
    assert_eq!(d.stats().dropped(DropReason::TooLarge), 1);
    assert_eq!(d.buffer_capacity(), 0);
}

fn latm_track(sub_frames: u8) -> AnnouncedTrack {
    AnnouncedTrack {
        format: PayloadFormat::Latm(LatmFormat {
            sub_frames,
            frame_length: 1024,
        }),
        payload_type: 96,
        ..aac_track(HBR)
    }
}

/// RFC 6416 §6.1 / ISO/IEC 14496-3 §1.7.3: PayloadLengthInfo (bytes of 255, then the rest)
/// and PayloadMux of each access unit.
fn latm_element(aus: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for au in aus {
        let mut n = au.len();
        while n >= 255 {
            out.push(255);
            n -= 255;
        }
        out.push(n as u8);
        out.extend_from_slice(au);
    }
    out
}

#[test]
fn latm_one_element_per_packet_is_read_in_place_and_timed() {
    let mut d = Depacketizer::new(1, &latm_track(1));
    let (a, b) = (au(10, 1), au(255, 2));
    let packets = [
        rtp(96, 1, 5000, true, &latm_element(&[&a])),
        // 255 bytes: PayloadLengthInfo is 255 then 0.
        rtp(96, 2, 6024, true, &latm_element(&[&b])),
    ];
    assert_eq!(packets[1][12..14], [255, 0]);
    let out = push_all(&mut d, &packets);
    assert_eq!(out, vec![(5000, true, a), (6024, true, b)]);
    assert_eq!(d.buffer_capacity(), 0, "whole packets are not copied");
    assert_eq!(d.stats().frames, 2);
}

#[test]
fn latm_subframes_and_concatenated_elements_follow_by_frame_length() {
    let mut d = Depacketizer::new(1, &latm_track(2));
    let aus: Vec<Vec<u8>> = (0..4).map(|i| au(100 + 300 * i, i as u8 + 1)).collect();
    let mut payload = latm_element(&[&aus[0], &aus[1]]);
    payload.extend(latm_element(&[&aus[2], &aus[3]]));
    let out = push_all(&mut d, &[rtp(96, 1, 0, true, &payload)]);
    let want: Out = aus
        .iter()
        .enumerate()
        .map(|(i, a)| (1024 * i as i64, true, a.clone()))
        .collect();
    assert_eq!(out, want);
}

#[test]
fn latm_fragmented_element_is_reassembled_in_a_reused_buffer() {
    let mut d = Depacketizer::new(1, &latm_track(1));
    let mut out = Out::new();
    for k in 0..3u16 {
        let big = au(1500, k as u8);
        let element = latm_element(&[&big]);
        let pieces: Vec<&[u8]> = element.chunks(400).collect();
        let packets: Vec<Vec<u8>> = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let seq = k * 4 + i as u16;
                rtp(96, seq, u32::from(k) * 1024, i + 1 == pieces.len(), piece)
            })
            .collect();
        out.extend(push_all(&mut d, &packets));
        assert_eq!(out.last(), Some(&(i64::from(k) * 1024, true, big)));
    }
    assert_eq!(out.len(), 3);
    assert_eq!(d.stats().lost, 0);
    let cap = d.buffer_capacity();
    assert!((1502..4096).contains(&cap), "{cap}");
}

/// A lost fragment costs its element; the packets after the loss are skipped up to the next
/// marker (a tail cannot be told from a whole element), then the stream goes on.
#[test]
fn latm_a_lost_fragment_drops_its_element_and_the_stream_recovers() {
    // Fill bytes of 1 make every tail of the element parse as elements of 1-byte AUs.
    let element = latm_element(&[&au(1000, 1)]);
    let pieces: Vec<&[u8]> = element.chunks(400).collect();
    for lost in 0..3 {
        let mut d = Depacketizer::new(1, &latm_track(1));
        let mut packets = vec![rtp(96, 0, 0, true, &latm_element(&[&au(10, 5)]))];
        packets.extend(
            pieces
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != lost)
                .map(|(i, piece)| rtp(96, i as u16 + 1, 1024, i == 2, piece)),
        );
        packets.push(rtp(96, 4, 2048, true, &latm_element(&[&au(20, 8)])));
        packets.push(rtp(96, 5, 3072, true, &latm_element(&[&au(30, 9)])));
        let out = push_all(&mut d, &packets);
        let mut want = vec![(0, true, au(10, 5)), (3072, true, au(30, 9))];
        if lost < 2 {
            // The loss was seen before the next element: it arrives whole.
            want.insert(1, (2048, true, au(20, 8)));
        }
        assert_eq!(out, want, "fragment {lost} lost");
        let s = d.stats();
        assert_eq!(
            (
                s.dropped(DropReason::Incomplete),
                s.dropped(DropReason::Malformed)
            ),
            (1, 0),
            "fragment {lost} lost: {s:?}"
        );
    }
}

/// Without markers, a loss is left behind at the next timestamp.
#[test]
fn latm_without_marker_the_stream_recovers_after_a_loss_at_a_new_timestamp() {
    let mut d = Depacketizer::new(1, &latm_track(1));
    let element = latm_element(&[&au(600, 1)]);
    let pieces: Vec<&[u8]> = element.chunks(250).collect();
    let mut packets = vec![
        rtp(96, 0, 0, false, pieces[0]),
        rtp(96, 2, 0, false, pieces[2]),
    ];
    packets.push(rtp(96, 3, 1024, false, &latm_element(&[&au(20, 2)])));
    packets.push(rtp(96, 4, 2048, false, &latm_element(&[&au(20, 3)])));
    let out = push_all(&mut d, &packets);
    assert_eq!(out, vec![(1024, true, au(20, 2))]);
    assert_eq!(d.stats().dropped(DropReason::Incomplete), 1);
}

#[test]
fn latm_bad_payload_length_info_is_malformed_and_emits_nothing() {
    let mut d = Depacketizer::new(1, &latm_track(1));
    let mut too_long = latm_element(&[&au(10, 1)]);
    too_long[0] = 11;
    let mut trailing = latm_element(&[&au(10, 1)]);
    trailing.push(0x42);
    let packets = [
        rtp(96, 1, 0, true, &too_long),
        // A run of 255s to the end of the packet.
        rtp(96, 2, 1024, true, &[255; 40]),
        // An access unit of no bytes.
        rtp(96, 3, 2048, true, &[0]),
        rtp(96, 4, 3072, true, &trailing),
        rtp(96, 5, 4096, true, &[]),
        rtp(96, 6, 5120, true, &latm_element(&[&au(10, 2)])),
    ];
    let out = push_all(&mut d, &packets);
    assert_eq!(out, vec![(5120, true, au(10, 2))]);
    assert_eq!(d.stats().dropped(DropReason::Malformed), 5);
}

/// The config says four subframes per element but the sender puts one: every element is
/// short, nothing is emitted, everything is counted.
#[test]
fn latm_a_config_that_lies_about_subframes_drops_every_element() {
    let mut d = Depacketizer::new(1, &latm_track(4));
    let packets: Vec<Vec<u8>> = (0..5u16)
        .map(|i| {
            rtp(
                96,
                i,
                u32::from(i) * 1024,
                true,
                &latm_element(&[&au(50, 1)]),
            )
        })
        .collect();
    assert!(push_all(&mut d, &packets).is_empty());
    assert_eq!(d.stats().dropped(DropReason::Malformed), 5);
}

/// A sender that sets no marker: each element is ended by the next timestamp.
#[test]
fn latm_without_marker_a_new_timestamp_ends_the_element() {
    let mut d = Depacketizer::new(1, &latm_track(1));
    let packets: Vec<Vec<u8>> = (0..3u16)
        .map(|i| {
            rtp(
                96,
                i,
                u32::from(i) * 1024,
                false,
                &latm_element(&[&au(30, i as u8)]),
            )
        })
        .collect();
    let out = push_all(&mut d, &packets);
    assert_eq!(out, vec![(0, true, au(30, 0)), (1024, true, au(30, 1))]);
}

#[test]
fn latm_oversize_element_is_dropped_within_the_cap() {
    let mut d = Depacketizer::new(1, &latm_track(1));
    let piece = vec![0xabu8; 1 << 20];
    let n = MAX_ACCESS_UNIT / piece.len() + 2;
    let mut out = Out::new();
    for i in 0..n {
        out.extend(push_all(
            &mut d,
            &[rtp(96, i as u16, 0, i + 1 == n, &piece)],
        ));
    }
    out.extend(push_all(
        &mut d,
        &[rtp(96, n as u16, 1024, true, &latm_element(&[&au(5, 5)]))],
    ));
    assert_eq!(out, vec![(1024, true, au(5, 5))]);
    assert_eq!(d.stats().dropped(DropReason::TooLarge), 1);
    assert!(d.buffer_capacity() <= MAX_ACCESS_UNIT);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
    /// Any bytes as a series of packets, H.264 and AAC with every header layout: no panic,
    /// frames bounded (see [`fuzz_depacketize`]).
    #[test]
    fn any_packets_do_not_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        fuzz_depacketize(&data);
    }

    /// Raw packets (the RTP header from the bytes too) into every depacketizer.
    #[test]
    fn any_raw_packet_does_not_panic(
        pkts in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..16)
    ) {
        for track in [h264_track(), aac_track(HBR), latm_track(1), latm_track(3)] {
            let mut d = Depacketizer::new(0, &track);
            for mut p in pkts.clone() {
                if p.len() > 2 {
                    p[0] = 0x80 | (p[0] & 0x3f);
                    p[1] = (p[1] & 0x80) | track.payload_type;
                }
                d.push(&p, &mut |f| assert!(f.data.len() <= MAX_ACCESS_UNIT));
            }
        }
    }

    /// Whole LATM elements cut into fragments at any points, with any packets lost: no panic,
    /// and every frame that comes out is one of the elements' access units, at its time.
    #[test]
    fn latm_fragments_with_loss_emit_only_true_access_units(
        sizes in proptest::collection::vec(1usize..900, 1..12),
        cut in 1usize..700,
        lose in proptest::collection::vec(proptest::prelude::any::<bool>(), 64),
    ) {
        let mut d = Depacketizer::new(1, &latm_track(1));
        let mut seq = 0u16;
        let mut want = std::collections::HashMap::new();
        for (k, &size) in sizes.iter().enumerate() {
            let unit = au(size, k as u8);
            let ts = k as u32 * 1024;
            want.insert(i64::from(ts), unit.clone());
            let element = latm_element(&[&unit]);
            let pieces: Vec<&[u8]> = element.chunks(cut).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let p = rtp(96, seq, ts, i + 1 == pieces.len(), piece);
                let lost = lose[usize::from(seq) % lose.len()] && seq.is_multiple_of(3);
                seq += 1;
                if !lost {
                    d.push(&p, &mut |f| {
                        assert_eq!(want.get(&f.pts), Some(&f.data.to_vec()), "frame at {}", f.pts);
                    });
                }
            }
        }
        assert!(d.buffer_capacity() <= MAX_ACCESS_UNIT);
    }
}

#[test]
fn opus_packets_are_frames_of_their_own_and_empty_ones_are_dropped() {
    // RFC 7587 §4.2: one Opus packet per RTP packet, 48 kHz timestamps.
    let track = AnnouncedTrack {
        control: String::new(),
        payload_type: 111,
        codec: TrackCodec::Opus(crate::media::track::OpusConfig {
            channels: 2,
            pre_skip: 0,
            input_sample_rate_hz: 48_000,
            output_gain: 0,
            channel_mapping_family: 0,
            channel_mapping_table: Vec::new(),
        }),
        kind: TrackKind::Audio,
        format: PayloadFormat::Opus,
    };
    let mut d = Depacketizer::new(1, &track);
    let out = push_all(
        &mut d,
        &[
            rtp(111, 10, 960, true, &[0xfc, 1, 2]),
            rtp(111, 11, 1920, false, &[]),
            rtp(111, 12, 2880, true, &[0xfc, 3]),
            rtp(96, 13, 3840, true, &[0xfc, 4]),
        ],
    );
    assert_eq!(
        out,
        vec![(960, true, vec![0xfc, 1, 2]), (2880, true, vec![0xfc, 3])]
    );
    assert_eq!(d.stats().dropped(DropReason::Malformed), 1);
    assert_eq!(d.stats().wrong_payload_type, 1);
    assert_eq!(d.ssrc(), Some(0x1234));
}
