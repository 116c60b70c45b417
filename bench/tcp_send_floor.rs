//! The TCP send floor: zero-copy sends against plain vectored writes (issue 19).
//!
//! A shard's TCP-interleaved viewer gets one gather write per pass: per RTP packet a 4-byte
//! `$` frame header (RFC 2326 §10.12), the 12-byte RTP header (RFC 3550 §5.1) from a header
//! slab and a payload slice of the memory-mapped file. At 2.2 Mbit/s that is ~6–8 packets
//! of ≤1,400 bytes per write. The issue asks whether `MSG_ZEROCOPY` or io_uring zero-copy
//! sends beat the plain write at these sizes; this program measures it through
//! `shard::tcp_floor` (all syscalls in `sys::tcp_send`):
//!
//! | column | meaning |
//! |---|---|
//! | viewers | loopback TCP connections, one write each per pass |
//! | pkts/write | packets gathered per write (W): 3 iovecs each |
//! | ns/pkt | busy time of the sender's core (user + system + softirq, `/proc/stat`) per packet, median of the rounds |
//! | fastest | the lowest round |
//! | × vs writev | `writev`'s ns/pkt over this row's, per round, then the median (> 1: cheaper than `writev`) |
//! | pkts/syscall | packets per kernel entry (`sendmsg`, `recvmsg(MSG_ERRQUEUE)`, `io_uring_enter`) |
//! | EAGAIN | writes refused or cut short by a full socket buffer, of all writes |
//! | zc done / copied | zero-copy sends the kernel reported complete, and how many of those it says it copied |
//! | delivered | bytes the receivers read over bytes the kernel accepted |
//!
//! The sender is pinned to core 0 and alone there; the receiving ends are drained on core 1
//! by a thread that busy-polls them with non-blocking reads (it never sleeps, so the
//! sender's core pays no wake-ups, as with a remote viewer). The sender never runs further
//! ahead of the receivers than 64 KiB per connection (it sleeps, idle, until they catch up),
//! so sockets rarely fill and the rows measure sending, not `EAGAIN`. Payloads come from a
//! 64 MiB buffer, each connection reading its own region as VOD viewers read their files,
//! so the source is not cache-hot. On loopback the sender's core also runs the receive path
//! up to the receiver's queue, and a zero-copy skb delivered to a local socket has its pages
//! copied there (`skb_orphan_frags_rx`): the kernel reports that copy, and it is counted.
//!
//! Run: `cargo bench --bench tcp_send_floor` (seven interleaved rounds of 0.5 s per row, 300
//! and 2,000 connections; `-- --rounds N`, `-- --viewers 300,1000` to change), or
//! `cargo bench --bench tcp_send_floor -- --quick` (one round of 0.15 s per row, 300
//! connections). The test suite (`cargo test --all-targets`) runs the short mode as a smoke
//! test. Only 127.0.0.1 is ever connected to, and it stops by itself.

use std::io::{IoSlice, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::{raise_nofile_limit, sample_core_busy_ns};
use shardcast::shard::tcp_floor::{TcpFloor, TcpFloorError, TcpVariant};

/// The load generator's host helpers (part of the `shardcast` binary, not of the library):
/// the open-file limit, core busy time from `/proc/stat`.
#[allow(dead_code, unused_imports)]
#[path = "../src/bin/shardcast/loadgen/host.rs"]
mod host;

/// `$`, channel, 16-bit length (RFC 2326 §10.12).
const FRAME_HEADER: usize = 4;
/// RTP fixed header, no CSRCs (RFC 3550 §5.1).
const RTP_HEADER: usize = 12;
/// Payload bytes per packet (a 1,400-byte RTP packet).
const PAYLOAD: usize = 1388;
/// Bytes per packet on the wire of the stream.
const PACKET: usize = FRAME_HEADER + RTP_HEADER + PAYLOAD;
/// The payload source: large enough that 2,000 connections' regions do not stay in cache.
const SOURCE_BYTES: usize = 64 << 20;
/// Packets per write measured: one, a 2.2 Mbit/s viewer's pass, a catch-up pass.
const WRITES: [usize; 3] = [1, 7, 16];
/// Connections measured by default.
const VIEWERS: [usize; 2] = [300, 2000];
/// How far the sender may run ahead of the receivers, per connection.
const AHEAD_PER_CONN: u64 = 64 << 10;

#[derive(Clone, Copy)]
struct Row {
    set: usize,
    viewers: usize,
    per_write: usize,
    variant: TcpVariant,
}

impl Row {
    fn label(&self) -> String {
        format!(
            "| {} | {} | {} |",
            self.viewers,
            self.per_write,
            self.variant.as_str()
        )
    }
}

/// One measurement of one row.
#[derive(Clone, Copy, Default)]
struct Sample {
    ns_per_packet: f64,
    packets_per_syscall: f64,
    /// Writes refused or cut short, of all writes.
    blocked: f64,
    zc_completed: u64,
    zc_copied: u64,
    zc_outstanding: u64,
    delivered: f64,
}

/// One set of connections: the sending ends (accepted, as a server's are) and the count of
/// bytes their receiving ends have read.
struct ConnSet {
    senders: Vec<TcpStream>,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (the test suite) runs this
    // program without it, and gets the short mode as its smoke test.
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let (mut rounds, per_row, mut viewer_counts) = if quick {
        (1, Duration::from_millis(150), vec![300])
    } else {
        // Short rows, many rounds: this VM's speed swings within seconds (docs/BENCHMARKS.md).
        (7, Duration::from_millis(500), VIEWERS.to_vec())
    };
    if let Some(r) = value("--rounds") {
        rounds = r.parse().expect("--rounds N");
    }
    // `--variants writev,msg_zerocopy,uring-sendmsg,uring-sendmsg_zc` (names as in the
    // table, lower case, spaces as dashes): only those rows, e.g. under `perf record`.
    let variants: Vec<TcpVariant> = match value("--variants") {
        Some(v) => TcpVariant::ALL
            .into_iter()
            .filter(|t| v.split(',').any(|n| n == key(*t)))
            .collect(),
        None => TcpVariant::ALL.to_vec(),
    };
    if let Some(v) = value("--viewers") {
        viewer_counts = v
            .split(',')
            .map(|n| n.parse().expect("--viewers N,M"))
            .collect();
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.len() < 2 {
        eprintln!(
            "tcp_send_floor needs two cores (sender and receivers); found {}",
            cores.len()
        );
        std::process::exit(2);
    }
    let (sender_core, rx_core) = (cores[0], cores[1]);
    core_affinity::set_for_current(rx_core);
    let total: usize = viewer_counts.iter().sum();
    let limit = raise_nofile_limit().expect("open-file limit");
    assert!(
        limit >= 2 * total as u64 + 64,
        "need {} open files, the limit is {limit}",
        2 * total + 64
    );

    // Connections: the accepted end sends (a server's RTSP connection), the connecting end
    // is the viewer, drained on core 1.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("listen");
    let addr = listener.local_addr().expect("listener address");
    let mut receivers = Vec::with_capacity(total);
    let mut sets = Vec::new();
    for &k in &viewer_counts {
        let mut senders = Vec::with_capacity(k);
        for _ in 0..k {
            let viewer = TcpStream::connect(addr).expect("connect");
            let (server_end, _) = listener.accept().expect("accept");
            // As the control thread sets it on every RTSP connection.
            server_end.set_nodelay(true).expect("TCP_NODELAY");
            viewer.set_nonblocking(true).expect("non-blocking");
            receivers.push(viewer);
            senders.push(server_end);
        }
        sets.push(ConnSet { senders });
    }
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Busy-polling reads, no epoll and no sleeping: a receiver that sleeps makes the
    // sender's core pay a wake-up (an IPI, costly in a VM) per arrival, which a remote
    // viewer's machine would pay itself; the slower a variant, the more its receivers would
    // sleep and the more it would pay for that.
    let drain = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            core_affinity::set_for_current(rx_core);
            let mut buf = vec![0u8; 256 << 10];
            while !stop.load(Ordering::Relaxed) {
                for mut r in &receivers {
                    if let Ok(n) = r.read(&mut buf) {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let mut rows = Vec::new();
    for (set, &viewers) in viewer_counts.iter().enumerate() {
        for &per_write in &WRITES {
            for &variant in &variants {
                rows.push(Row {
                    set,
                    viewers,
                    per_write,
                    variant,
                });
            }
        }
    }
    let source: Vec<u8> = (0..SOURCE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    // Per connection and packet slot: a `$` header for channel 0 and an RTP header, as a
    // shard's header slab holds them (RFC 2326 §10.12, RFC 3550 §5.1: V=2, PT 96).
    let max_slots = total.max(1) * WRITES.iter().copied().max().unwrap_or(1);
    let len = ((RTP_HEADER + PAYLOAD) as u16).to_be_bytes();
    let frames: Vec<[u8; FRAME_HEADER]> = vec![[b'$', 0, len[0], len[1]]; max_slots];
    let rtp: Vec<[u8; RTP_HEADER]> = (0..max_slots)
        .map(|i| {
            let mut h = [0u8; RTP_HEADER];
            h[0] = 0x80;
            h[1] = 96;
            h[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            h
        })
        .collect();
    let buffers = Buffers {
        source: &source,
        frames: &frames,
        rtp: &rtp,
    };

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); rows.len()];
    let mut unavailable = vec![None; rows.len()];
    for round in 0..rounds {
        for (k, row) in rows.iter().enumerate() {
            if unavailable[k].is_some() {
                continue;
            }
            let set = &sets[row.set];
            let result = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        core_affinity::set_for_current(sender_core);
                        measure(*row, set, buffers, sender_core.id, per_row, &received)
                    })
                    .join()
                    .expect("sender thread")
            });
            match result {
                Ok(s) => {
                    eprintln!(
                        "round {} {} {:.0} ns/pkt",
                        round + 1,
                        row.label(),
                        s.ns_per_packet
                    );
                    samples[k].push(s);
                }
                Err(e @ TcpFloorError::Uring(_)) if row.variant.is_uring() => {
                    eprintln!("{}: unavailable here ({e}): skipped", row.label());
                    unavailable[k] = Some(e.to_string());
                }
                Err(e) => panic!("{}: {e}", row.label()),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();

    println!("| viewers | pkts/write | variant | ns/pkt (median) | fastest | × vs writev (median) | pkts/syscall | EAGAIN | zc done / copied | delivered |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (row, runs) in rows.iter().zip(&samples) {
        if runs.is_empty() {
            println!("{} unavailable | | | | | | |", row.label());
            continue;
        }
        // The writev row of the same viewers and write size, measured in the same rounds.
        let base = rows.iter().position(|r| {
            r.set == row.set && r.per_write == row.per_write && r.variant == TcpVariant::Writev
        });
        let ns: Vec<f64> = runs.iter().map(|s| s.ns_per_packet).collect();
        let ratios: Vec<f64> = base
            .map(|b| {
                samples[b]
                    .iter()
                    .zip(&ns)
                    .map(|(b, n)| b.ns_per_packet / n)
                    .collect()
            })
            .unwrap_or_default();
        let ratio = if ratios.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.2}×", ratios[median_index(&ratios)])
        };
        let s = runs[median_index(&ns)];
        let fastest = ns.iter().copied().fold(f64::INFINITY, f64::min);
        let (zc_done, zc_copied) = runs
            .iter()
            .fold((0, 0), |(d, c), s| (d + s.zc_completed, c + s.zc_copied));
        let zc = if matches!(
            row.variant,
            TcpVariant::MsgZerocopy | TcpVariant::UringSendmsgZc
        ) {
            format!("{zc_done} / {zc_copied}")
        } else {
            "—".to_owned()
        };
        println!(
            "{} {:.0} | {:.0} | {ratio} | {:.2} | {:.1} % | {zc} | {:.1} % |",
            row.label(),
            s.ns_per_packet,
            fastest,
            s.packets_per_syscall,
            s.blocked * 100.0,
            s.delivered * 100.0
        );
    }
    // A row whose bytes did not arrive, that measured no CPU time, or whose zero-copy
    // completions were not all reaped measured something else: fail loudly (this is what
    // the CI's --quick run checks, besides the program still running).
    let bad: Vec<String> = rows
        .iter()
        .zip(&samples)
        .filter(|(_, runs)| {
            runs.iter().any(|s| {
                s.delivered < 0.99
                    || s.delivered > 1.01
                    || s.ns_per_packet <= 0.0
                    || s.zc_outstanding > 0
            })
        })
        .map(|(row, _)| row.label())
        .collect();
    let skipped: Vec<String> = rows
        .iter()
        .zip(&unavailable)
        .filter(|(r, u)| u.is_some() && r.variant == TcpVariant::UringSendmsg)
        .map(|(r, _)| r.label())
        .collect();
    if !bad.is_empty() {
        eprintln!(
            "rows with bytes lost, no CPU time measured or zero-copy completions unreaped: {}",
            bad.join(" ")
        );
        std::process::exit(1);
    }
    if !skipped.is_empty() && std::env::var("SHARDCAST_ALLOW_MISSING").as_deref() != Ok("uring") {
        eprintln!(
            "io_uring SENDMSG unavailable ({}); set SHARDCAST_ALLOW_MISSING=uring to allow",
            skipped.join(" ")
        );
        std::process::exit(1);
    }
}

/// What the writes are gathered from, borrowed by every row's sender.
#[derive(Clone, Copy)]
struct Buffers<'buf> {
    source: &'buf [u8],
    frames: &'buf [[u8; FRAME_HEADER]],
    rtp: &'buf [[u8; RTP_HEADER]],
}

/// A variant's name for `--variants`.
fn key(v: TcpVariant) -> String {
    v.as_str().to_lowercase().replace(' ', "-")
}

/// Index of the median of `v` (the lower one for an even count).
fn median_index(v: &[f64]) -> usize {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    idx[(v.len() - 1) / 2]
}

/// Sends passes as fast as the receivers take them for `period` and returns the cost per
/// packet.
fn measure<'buf>(
    row: Row,
    set: &ConnSet,
    buf: Buffers<'buf>,
    core: usize,
    period: Duration,
    received: &AtomicU64,
) -> Result<Sample, TcpFloorError> {
    let conns = set.senders.len();
    let per_write = row.per_write;
    let stride = 3 * per_write;
    let region = buf.source.len() / conns;
    let mut cursors = vec![0usize; conns];
    let mut iov: Vec<IoSlice<'buf>> = vec![IoSlice::new(&[]); conns * stride];
    let mut fill = |iov: &mut [IoSlice<'buf>]| {
        for (c, chunk) in iov.chunks_mut(stride).enumerate() {
            for p in 0..per_write {
                if cursors[c] + PAYLOAD > region {
                    cursors[c] = 0;
                }
                let at = c * region + cursors[c];
                cursors[c] += PAYLOAD;
                let slot = c * per_write + p;
                chunk[3 * p] = IoSlice::new(&buf.frames[slot]);
                chunk[3 * p + 1] = IoSlice::new(&buf.rtp[slot]);
                chunk[3 * p + 2] = IoSlice::new(&buf.source[at..at + PAYLOAD]);
            }
        }
    };
    let mut floor = TcpFloor::new(row.variant, &set.senders)?;
    let ahead_limit = AHEAD_PER_CONN * conns as u64;
    let start_received = received.load(Ordering::Relaxed);
    let mut pass = |floor: &mut TcpFloor<'_, 'buf>, iov: &mut Vec<IoSlice<'buf>>| {
        // Idle (not busy) while the receivers catch up.
        let wait_until = Instant::now() + Duration::from_secs(5);
        while floor.counters().bytes
            > received.load(Ordering::Relaxed) - start_received + ahead_limit
        {
            assert!(Instant::now() < wait_until, "receivers stopped reading");
            std::thread::sleep(Duration::from_micros(50));
        }
        fill(iov);
        floor.send_pass(iov, stride).expect("send pass");
    };
    // Warm up (page faults, slab caches, congestion windows) before counting.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(100) {
        pass(&mut floor, &mut iov);
    }
    let before = floor.counters();
    let busy_before = sample_core_busy_ns(core).expect("/proc/stat");
    let start = Instant::now();
    while start.elapsed() < period {
        pass(&mut floor, &mut iov);
    }
    let busy = sample_core_busy_ns(core).expect("/proc/stat") - busy_before;
    let after = floor.counters();
    let total = floor.finish();
    // Every byte the kernel accepted reaches a receiver: wait for it (bounded) before
    // comparing.
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) - start_received < total.bytes
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let got = received.load(Ordering::Relaxed) - start_received;
    let bytes = after.bytes - before.bytes;
    let packets = (bytes as f64 / PACKET as f64).max(1.0);
    let writes = |c: &shardcast::shard::tcp_floor::TcpFloorCounters| {
        c.full_writes + c.short_writes + c.would_block + c.failed
    };
    let all_writes = (writes(&after) - writes(&before)).max(1) as f64;
    let blocked = (after.short_writes + after.would_block + after.failed
        - before.short_writes
        - before.would_block
        - before.failed) as f64;
    Ok(Sample {
        ns_per_packet: busy as f64 / packets,
        packets_per_syscall: packets / (after.syscalls - before.syscalls).max(1) as f64,
        blocked: blocked / all_writes,
        zc_completed: total.zerocopy.completed,
        zc_copied: total.zerocopy.copied,
        zc_outstanding: total.zerocopy_outstanding,
        delivered: got as f64 / total.bytes.max(1) as f64,
    })
}
