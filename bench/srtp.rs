//! SRTP cost alone: nanoseconds to protect one 1,200-byte RTP packet, per profile, as the
//! shard's WebRTC send path does it — a 12-byte RTP header, a 2-byte payload header and
//! a 1,186-byte slice of a larger buffer (standing in for the mapped file) gathered by
//! [`SrtpSender::protect_rtp`] into a send buffer, encrypted and tagged on the way.
//!
//! | column | meaning |
//! |---|---|
//! | profile | the SRTP protection profile |
//! | ns/pkt | wall time per protected packet, median of the rounds |
//! | fastest | the lowest round |
//! | MB/s | payload bytes protected per second at the median |
//!
//! Run: `cargo bench --bench srtp` (five rounds of 0.4 s per profile) or
//! `cargo bench --bench srtp -- --quick` (one round of 0.2 s). One thread, no I/O; the
//! source buffer is 16 MiB so the payload slices are not all cache-hot.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shardcast::webrtc::srtp::{SrtpKeyingMaterial, SrtpProfile, SrtpSender};

const PACKET_BYTES: usize = 1200;
const SOURCE_BYTES: usize = 16 << 20;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, round_time) = if quick {
        (1, Duration::from_millis(200))
    } else {
        (5, Duration::from_millis(400))
    };
    let source: Vec<u8> = (0..SOURCE_BYTES).map(|i| (i * 31 + 7) as u8).collect();
    println!("| profile | ns/pkt | fastest | MB/s |");
    println!("|---|---|---|---|");
    for profile in [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmHmacSha1_80,
    ] {
        let exported = vec![0x42u8; profile.keying_material_len()];
        let (local, _) = SrtpKeyingMaterial::split(profile, &exported, true)
            .expect("keying material has the profile's length");
        let mut sender = SrtpSender::new(&local);
        let mut out = [0u8; 1500];
        let mut seq: u16 = 0;
        let mut offset = 0usize;
        let slice_len = PACKET_BYTES - 12 - 2;
        let mut round_ns = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let mut packets = 0u64;
            while start.elapsed() < round_time {
                for _ in 0..256 {
                    let mut header = [0x80, 96, 0, 0, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78];
                    header[2..4].copy_from_slice(&seq.to_be_bytes());
                    seq = seq.wrapping_add(1);
                    if offset + slice_len > source.len() {
                        offset = 0;
                    }
                    let slice = &source[offset..offset + slice_len];
                    offset += slice_len;
                    let n = sender
                        .protect_rtp(&header, &[&[0x7c, 0x85], slice], &mut out)
                        .expect("the send buffer holds a 1,200-byte packet and its tag");
                    black_box(&out[..n]);
                    packets += 1;
                }
            }
            round_ns.push(start.elapsed().as_nanos() as f64 / packets as f64);
        }
        round_ns.sort_by(f64::total_cmp);
        let median = round_ns[round_ns.len() / 2];
        let mb_s = (PACKET_BYTES - 12) as f64 / median * 1e3;
        println!(
            "| {profile:?} | {median:.0} | {:.0} | {mb_s:.0} |",
            round_ns[0]
        );
    }
}
