//! What the load generator needs from the host besides RTSP: viewers' RTP sockets, an
//! `epoll(7)` set, the open-file limit, and core busy time from `/proc/stat` (proc(5)). All
//! through safe wrappers (`rustix`, `socket2`, `shardcast::net`): no `unsafe` here.
//!
//! Self-contained (std, `rustix`, `socket2`, `shardcast`) so that `bench/send_floor.rs`
//! includes this same file (`#[path]`) and binds its viewers as `shardcast bench` does.

use shardcast::net::{enable_rx_timestamps, enable_udp_gro};
use std::io;
use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// The epoll set the receiver waits on (the library's, shared with the shards).
pub(crate) use shardcast::poll::Epoll;

/// Raises this process's open-file soft limit to its hard limit; returns the new soft limit
/// (`u64::MAX`: unlimited). Children spawned afterwards inherit it.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        setrlimit(Resource::Nofile, lim)?;
    }
    Ok(lim.current.unwrap_or(u64::MAX))
}

/// Restricts the calling thread to `cores` (sched_setaffinity(2)); threads and processes
/// it then spawns inherit the mask. `core_affinity` sets one core only.
pub(crate) fn pin_current_thread(cores: &[usize]) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &core in cores {
        set.set(core);
    }
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// Clock ticks per second, the unit of `/proc/stat` and of `utime`/`stime` in
/// `/proc/<pid>/stat` (proc(5)).
pub(crate) fn clock_ticks_per_sec() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// An RTP socket for one track, bound to `local` (the RTSP connection's own address, so the
/// server's datagrams to the connection's peer address reach it whether the server is on
/// loopback, IPv6 or — with `--allow-remote` — another host or network namespace):
/// non-blocking, a 1 MiB receive buffer (best effort), kernel arrival stamps; with
/// `receive_gro`, GSO trains arrive whole (`UDP_GRO`), as the receiver of a remote viewer
/// would spare the sender the per-segment receive work.
pub(crate) fn bind_rtp_socket(local: IpAddr, receive_gro: bool) -> io::Result<UdpSocket> {
    let context =
        |what: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let sock = UdpSocket::bind((local, 0)).map_err(context("binding a UDP socket"))?;
    sock.set_nonblocking(true)
        .map_err(context("making a UDP socket non-blocking"))?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(1 << 20);
    enable_rx_timestamps(sock.as_raw_fd()).map_err(context("enabling SO_TIMESTAMPNS"))?;
    if receive_gro {
        enable_udp_gro(sock.as_raw_fd()).map_err(context("enabling UDP_GRO"))?;
    }
    Ok(sock)
}

/// Busy time of one CPU core from `/proc/stat` (proc(5): user, nice, system, idle, iowait,
/// irq, softirq, steal in clock ticks): everything but idle and iowait, in ns. With the server
/// pinned alone to that core this is its cost *including* the softirq work (the loopback
/// receive path) that the kernel accounts to no process.
pub(crate) fn sample_core_busy_ns(core: usize) -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    core_busy_ns(&stat, core, clock_ticks_per_sec())
}

/// Parses `/proc/stat` for [`sample_core_busy_ns`].
pub(crate) fn core_busy_ns(stat: &str, core: usize, ticks_per_sec: u64) -> io::Result<u64> {
    let label = format!("cpu{core}");
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let fields: Vec<u64> = stat
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(label.as_str())).then(|| it.filter_map(|f| f.parse().ok()).collect())
        })
        .ok_or_else(|| invalid(format!("/proc/stat has no {label} line")))?;
    if fields.len() < 7 {
        return Err(invalid(format!("/proc/stat {label}: too few fields")));
    }
    // user + nice + system + irq + softirq (+ steal: time the hypervisor took is not ours).
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6];
    Ok(busy * 1_000_000_000 / ticks_per_sec.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn core_busy_counts_softirq_not_idle() {
        let stat =
            "cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 10 1 20 500 7 2 30 4 0 0\ncpu1 5 0 5 5 0 0 0 0 0 0\n";
        // (10 + 1 + 20 + 2 + 30) ticks at 100 Hz = 630 ms.
        assert_eq!(core_busy_ns(stat, 0, 100).unwrap(), 630_000_000);
        assert_eq!(core_busy_ns(stat, 1, 100).unwrap(), 100_000_000);
        assert!(core_busy_ns(stat, 2, 100).is_err());
    }

    #[test]
    fn epoll_reports_the_token_of_a_readable_socket_only() {
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = bind_rtp_socket("127.0.0.1".parse().unwrap(), true).unwrap();
        let epoll = Epoll::new().unwrap();
        epoll.add(&rx, 7).unwrap();
        epoll.add(&quiet, 8).unwrap();
        let mut tokens = Vec::new();
        epoll.wait(Duration::ZERO, &mut tokens).unwrap();
        assert!(tokens.is_empty());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[1; 10], rx.local_addr().unwrap()).unwrap();
        epoll.wait(Duration::from_secs(2), &mut tokens).unwrap();
        assert_eq!(tokens, vec![7]);
    }

    #[test]
    fn the_open_file_limit_can_be_raised_to_its_hard_limit() {
        let raised = raise_nofile_limit().unwrap();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current.unwrap_or(u64::MAX), raised);
        assert_eq!(now.current, now.maximum);
        assert!(clock_ticks_per_sec() >= 1);
    }
}
