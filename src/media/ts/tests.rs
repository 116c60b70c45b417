//! Unit tests of the transport stream indexer on synthetic streams.

use super::*;

const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;

/// A 188-byte packet: header, optional adaptation field (flags, PCR), payload filler.
fn packet(pid: u16, unit_start: bool, flags: u8, pcr: Option<u64>, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![SYNC, (pid >> 8) as u8 & 0x1f, pid as u8, 0x10];
    if unit_start {
        p[1] |= 0x40;
    }
    if flags != 0 || pcr.is_some() {
        p[3] |= 0x20;
        let mut af = vec![flags | if pcr.is_some() { 0x10 } else { 0 }];
        if let Some(b) = pcr {
            af.extend_from_slice(&[
                (b >> 25) as u8,
                (b >> 17) as u8,
                (b >> 9) as u8,
                (b >> 1) as u8,
                ((b & 1) << 7) as u8 | 0x7e,
                0,
            ]);
        }
        p.push(af.len() as u8);
        p.extend_from_slice(&af);
    }
    p.extend_from_slice(payload);
    p.resize(TS_PACKET_LEN, 0xff);
    p
}

fn psi(table_id: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() + 4;
    let mut s = vec![0, table_id, 0xb0 | (len >> 8) as u8, len as u8];
    s.extend_from_slice(body);
    s.extend_from_slice(&[0; 4]); // CRC (not checked)
    s
}

fn pat() -> Vec<u8> {
    let body = [
        0,
        1,
        0xc1,
        0,
        0,
        0,
        1,
        0xe0 | (PMT_PID >> 8) as u8,
        PMT_PID as u8,
    ];
    packet(0, true, 0, None, &psi(0x00, &body))
}

fn pmt() -> Vec<u8> {
    let mut body = vec![0, 1, 0xc1, 0, 0, 0xe1, VIDEO_PID as u8, 0xf0, 0];
    body.extend_from_slice(&[0x1b, 0xe1, VIDEO_PID as u8, 0xf0, 0]);
    body.extend_from_slice(&[0x0f, 0xe1, AUDIO_PID as u8, 0xf0, 0]);
    packet(PMT_PID, true, 0, None, &psi(0x02, &body))
}

/// PAT, PMT, then `n` groups of one PCR packet (with `pcrs[k]`, random access every 5th)
/// and 9 payload packets alternating video and audio.
fn stream(pcrs: &[u64]) -> Vec<u8> {
    let mut out = pat();
    out.extend(pmt());
    for (k, &pcr) in pcrs.iter().enumerate() {
        let flags = if k % 5 == 0 { 0x40 } else { 0 };
        out.extend(packet(VIDEO_PID, k % 5 == 0, flags, Some(pcr), &[]));
        for j in 0..9 {
            let pid = if j % 2 == 0 { VIDEO_PID } else { AUDIO_PID };
            out.extend(packet(pid, false, 0, None, &[j as u8]));
        }
    }
    out
}

fn runs(index: &MediaIndex) -> &[Sample] {
    &index.tracks[0].samples
}

#[test]
fn indexes_runs_of_whole_packets_timed_by_pcr() {
    let pcrs: Vec<u64> = (0..20).map(|k| 1000 + k * 3600).collect();
    let bytes = stream(&pcrs);
    let (index, stats) = parse_ts_with_stats(&bytes).unwrap();
    assert_eq!(stats, TsStats::default());
    let t = &index.tracks[0];
    assert_eq!(t.timescale, 90_000);
    assert_eq!(t.codec.name(), "MPEG-TS");
    let Codec::Mp2t(cfg) = &t.codec else {
        panic!("not mp2t")
    };
    assert_eq!(cfg.pcr_pid, VIDEO_PID);
    assert_eq!(cfg.streams.len(), 2);
    // Every byte is in exactly one run, in order; runs are 1..=7 packets.
    let mut next = 0u64;
    for s in runs(&index) {
        assert_eq!(s.offset, next);
        assert!(s.len > 0 && s.len as usize <= 7 * 188 && s.len.is_multiple_of(188));
        next += u64::from(s.len);
    }
    assert_eq!(next, bytes.len() as u64);
    // Full runs of 7; times linear in bytes between PCRs (3600 ticks per 10 packets from the
    // first PCR, packet 2), 0 before; sync where a random access packet lies inside.
    let n = runs(&index).len();
    for (k, s) in runs(&index).iter().enumerate() {
        assert!(k == n - 1 || s.len == 7 * 188);
        let first = s.offset / 188;
        assert_eq!(s.dts, first.saturating_sub(2) * 360, "run {k}");
        let rai = (first..first + u64::from(s.len) / 188).any(|p| p >= 2 && (p - 2) % 50 == 0);
        assert_eq!(s.sync, rai, "run {k}");
    }
    // The last run lasts as long as the gap before it: a little over 20 × 40 ms.
    assert!((index.duration().as_secs_f64() - 20.0 * 0.04).abs() < 0.03);
}

#[test]
fn garbage_between_packets_is_skipped_and_counted() {
    let pcrs: Vec<u64> = (0..10).map(|k| k * 3600).collect();
    let clean = stream(&pcrs);
    let mut bytes = b"junk!".to_vec();
    bytes.extend_from_slice(&clean[..188 * 30]);
    bytes.extend_from_slice(&[0x47, 1, 2, 3, 0x47, 0x00, 9]);
    bytes.extend_from_slice(&clean[188 * 30..]);
    bytes.extend_from_slice(&clean[..100]); // truncated last packet
    let (index, stats) = parse_ts_with_stats(&bytes).unwrap();
    assert_eq!(stats.garbage_bytes, 5 + 7);
    assert_eq!(stats.resyncs, 2);
    let total: u64 = runs(&index).iter().map(|s| u64::from(s.len)).sum();
    assert_eq!(total, clean.len() as u64);
    for s in runs(&index) {
        let at = s.offset as usize;
        assert!(bytes[at..at + s.len as usize]
            .chunks(188)
            .all(|p| p[0] == 0x47));
    }
    // No run spans the gap.
    assert!(runs(&index).iter().any(|s| s.offset == 5 + 7 + 188 * 30));
}

#[test]
fn pcr_wrap_jumps_and_discontinuities_keep_time_monotonic() {
    let wrap = 1u64 << 33;
    let mut pcrs: Vec<u64> = (0..10).map(|k| wrap - 5 * 3600 + k * 3600).collect();
    for p in &mut pcrs {
        *p %= wrap;
    }
    // A jump forward of 100 s, then backwards.
    pcrs.extend((0..5).map(|k| 100 * 90_000 + k * 3600));
    pcrs.extend((0..5).map(|k| 10 + k * 3600));
    let (index, stats) = parse_ts_with_stats(&stream(&pcrs)).unwrap();
    assert_eq!(stats.pcr_jumps, 2);
    // PCR intervals of 3600 ticks per 10 packets: the wrap continues the timeline and the
    // jumps are bridged at the same byte rate, so every run sits on one straight line.
    for s in runs(&index) {
        assert_eq!(s.dts, (s.offset / 188).saturating_sub(2) * 360);
    }
}

#[test]
fn refuses_what_it_cannot_serve() {
    assert_eq!(parse_ts(b"").unwrap_err(), TsError::NotTs);
    assert_eq!(parse_ts(&[0u8; 2000]).unwrap_err(), TsError::NotTs);
    // Packets without PAT.
    let no_pat: Vec<u8> = (0..20)
        .flat_map(|k| packet(VIDEO_PID, false, 0, Some(k * 3600), &[]))
        .collect();
    assert_eq!(parse_ts(&no_pat).unwrap_err(), TsError::NoProgram);
    // PAT and PMT but no PCR.
    let mut no_pcr = pat();
    no_pcr.extend(pmt());
    for _ in 0..20 {
        no_pcr.extend(packet(VIDEO_PID, false, 0, None, &[1]));
    }
    assert_eq!(parse_ts(&no_pcr).unwrap_err(), TsError::NoPcr(VIDEO_PID));
    // An adaptation field longer than the packet is ignored, not a panic.
    let mut bad = stream(&[0, 3600, 7200]);
    bad[188 * 3 + 4] = 250;
    bad[188 * 3 + 3] |= 0x20;
    assert!(parse_ts(&bad).is_ok());
}

#[test]
fn no_random_access_makes_every_run_sync() {
    let mut bytes = stream(&[0, 3600, 7200]);
    // Clear the random access indicator of the first PCR packet.
    bytes[2 * 188 + 5] &= !0x40;
    let index = parse_ts(&bytes).unwrap();
    assert!(runs(&index).iter().all(|s| s.sync));
}

#[test]
fn sniffing() {
    assert!(looks_like_ts(&stream(&[0, 3600])));
    assert!(!looks_like_ts(&crate::media::library::SAMPLE_MP4[..1000]));
    assert!(!looks_like_ts(&[0x47; 100]));
}

#[test]
fn fuzz_body_runs_on_damaged_inputs() {
    let good = stream(&(0..12).map(|k| k * 3600).collect::<Vec<_>>());
    fuzz_parse_ts(&good);
    fuzz_parse_ts(&good[..good.len() - 77]);
    let mut flipped = good.clone();
    for k in (0..flipped.len()).step_by(97) {
        flipped[k] ^= 0x5a;
    }
    fuzz_parse_ts(&flipped);
    let mut lcg = 12345u32;
    let random: Vec<u8> = (0..50_000)
        .map(|_| {
            lcg = lcg.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (lcg >> 16) as u8
        })
        .collect();
    fuzz_parse_ts(&random);
    assert!(parse_ts(&random).is_err());
}
