//! The TCP send floor: one gather write per stream per pass through each of the send
//! variants issue 19 weighs (plain `sendmsg`, `MSG_ZEROCOPY`, io_uring `SENDMSG` and
//! `SENDMSG_ZC`), with nothing else running, so `bench/tcp_send_floor.rs` can measure what
//! each costs per packet at the write sizes an interleaved viewer gets (RFC 2326 §10.12
//! frames: `$`, channel, length, then the RTP packet).
//!
//! Not here: the shard's real TCP writer (`shard::tcp`), pacing, partial-write bookkeeping
//! (a short write here just counts; the bytes' receiver only counts bytes).

use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::time::Duration;

use crate::sys::tcp_send::{enable_zerocopy, send_gather, UringTcpSender, ZeroCopySender};
pub use crate::sys::tcp_send::{ZeroCopyReport, URING_MAX_STREAMS};
pub use crate::sys::uring::UringUnavailable;

/// `MSG_ZEROCOPY` completions are read back every this many passes (one `recvmsg` per
/// stream with sends outstanding): the kernel merges consecutive completions into one
/// error-queue entry while the previous one is unread, so reading less often costs fewer
/// calls, and four passes stay far below the `optmem_max` budget for unread entries.
const ZC_REAP_EVERY: u64 = 4;

/// How long [`TcpFloor::finish`] waits for outstanding zero-copy completions.
const FINISH_WAIT: Duration = Duration::from_secs(2);

/// How a pass's writes reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpVariant {
    /// One `sendmsg(2)` with iovecs per stream (`MSG_DONTWAIT`): the kernel copies.
    Writev,
    /// One `sendmsg(MSG_ZEROCOPY)` per stream (`SO_ZEROCOPY` on), completions read from
    /// each socket's error queue.
    MsgZerocopy,
    /// io_uring `IORING_OP_SENDMSG`, every stream's write in one submission.
    UringSendmsg,
    /// io_uring `IORING_OP_SENDMSG_ZC` (Linux 6.1), every stream's write in one submission,
    /// notifications reaped from the completion queue.
    UringSendmsgZc,
}

impl TcpVariant {
    /// Every variant, baseline first.
    pub const ALL: [TcpVariant; 4] = [
        TcpVariant::Writev,
        TcpVariant::MsgZerocopy,
        TcpVariant::UringSendmsg,
        TcpVariant::UringSendmsgZc,
    ];

    /// Short name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpVariant::Writev => "writev",
            TcpVariant::MsgZerocopy => "MSG_ZEROCOPY",
            TcpVariant::UringSendmsg => "uring SENDMSG",
            TcpVariant::UringSendmsgZc => "uring SENDMSG_ZC",
        }
    }

    /// Whether it goes through io_uring.
    pub fn is_uring(self) -> bool {
        matches!(self, TcpVariant::UringSendmsg | TcpVariant::UringSendmsgZc)
    }
}

/// What a [`TcpFloor`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFloorCounters {
    /// Bytes the kernel accepted.
    pub bytes: u64,
    /// Writes that accepted every byte offered.
    pub full_writes: u64,
    /// Writes that accepted some bytes but not all (the socket's buffer filled).
    pub short_writes: u64,
    /// Writes refused with `EAGAIN` (nothing accepted).
    pub would_block: u64,
    /// Writes refused with another error (e.g. `ENOBUFS`: too many zero-copy completions
    /// unread).
    pub failed: u64,
    /// Kernel entries: `sendmsg` calls, `recvmsg(MSG_ERRQUEUE)` calls, `io_uring_enter` calls.
    pub syscalls: u64,
    /// Zero-copy completions reaped.
    pub zerocopy: ZeroCopyReport,
    /// Zero-copy sends not reported complete (after [`TcpFloor::finish`]: within its wait).
    pub zerocopy_outstanding: u64,
}

enum Inner<'s, 'buf> {
    Plain,
    Zc(ZeroCopySender<'s, 'buf>),
    Uring(Box<UringTcpSender<'s, 'buf>>, Vec<i32>),
}

/// Sends one gather write per stream per pass through one [`TcpVariant`]. Borrows the
/// bytes it sends for `'buf` (zero-copy variants may read them after a pass returns) and
/// reaps every zero-copy completion before it is gone.
pub struct TcpFloor<'s, 'buf> {
    streams: &'s [TcpStream],
    inner: Inner<'s, 'buf>,
    passes: u64,
    counters: TcpFloorCounters,
}

/// Why a [`TcpFloor`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TcpFloorError {
    /// `SO_ZEROCOPY` refused.
    #[error("SO_ZEROCOPY: {0}")]
    Zerocopy(io::Error),
    /// io_uring or the operation is not available.
    #[error(transparent)]
    Uring(#[from] UringUnavailable),
    /// More streams than one submission takes.
    #[error("at most {URING_MAX_STREAMS} streams per io_uring submission")]
    TooManyStreams,
}

impl<'s, 'buf> TcpFloor<'s, 'buf> {
    /// A floor over `streams` (connected, non-blocking or not: every write is
    /// `MSG_DONTWAIT`) through `variant`.
    pub fn new(variant: TcpVariant, streams: &'s [TcpStream]) -> Result<Self, TcpFloorError> {
        let inner = match variant {
            TcpVariant::Writev => Inner::Plain,
            TcpVariant::MsgZerocopy => {
                for s in streams {
                    enable_zerocopy(s).map_err(TcpFloorError::Zerocopy)?;
                }
                Inner::Zc(ZeroCopySender::new(streams))
            }
            TcpVariant::UringSendmsg | TcpVariant::UringSendmsgZc => {
                if streams.len() > URING_MAX_STREAMS {
                    return Err(TcpFloorError::TooManyStreams);
                }
                let zc = variant == TcpVariant::UringSendmsgZc;
                Inner::Uring(
                    Box::new(UringTcpSender::new(streams, zc)?),
                    vec![0; streams.len()],
                )
            }
        };
        Ok(Self {
            streams,
            inner,
            passes: 0,
            counters: TcpFloorCounters::default(),
        })
    }

    /// One pass: chunk `k` of `iov.chunks(stride)` written to stream `k`, every stream once.
    /// An error means the io_uring ring broke (it is leaked; further passes fail).
    pub fn send_pass(&mut self, iov: &[IoSlice<'buf>], stride: usize) -> io::Result<()> {
        let n = self.streams.len();
        if stride == 0 || iov.len() != n * stride {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one chunk of `stride` iovecs per stream",
            ));
        }
        self.passes += 1;
        let c = &mut self.counters;
        match &mut self.inner {
            Inner::Plain => {
                for (k, chunk) in iov.chunks(stride).enumerate() {
                    c.syscalls += 1;
                    count(c, send_gather(&self.streams[k], chunk), chunk);
                }
            }
            Inner::Zc(zc) => {
                for (k, chunk) in iov.chunks(stride).enumerate() {
                    c.syscalls += 1;
                    count(c, zc.send(k, chunk), chunk);
                }
                if self.passes.is_multiple_of(ZC_REAP_EVERY) {
                    for k in 0..n {
                        if zc.outstanding(k) > 0 {
                            c.syscalls += 1;
                            zc.reap(k);
                        }
                    }
                }
                c.zerocopy = zc.report();
            }
            Inner::Uring(ring, results) => {
                c.syscalls += ring.send(iov, stride, results)? as u64;
                for (chunk, &r) in iov.chunks(stride).zip(results.iter()) {
                    let r = if r < 0 {
                        Err(io::Error::from_raw_os_error(-r))
                    } else {
                        Ok(r as usize)
                    };
                    count(c, r, chunk);
                }
                c.zerocopy = ring.report();
            }
        }
        Ok(())
    }

    /// Counters so far.
    pub fn counters(&self) -> TcpFloorCounters {
        let mut c = self.counters;
        c.zerocopy_outstanding = self.outstanding();
        c
    }

    fn outstanding(&self) -> u64 {
        match &self.inner {
            Inner::Plain => 0,
            Inner::Zc(zc) => (0..self.streams.len()).map(|k| zc.outstanding(k)).sum(),
            Inner::Uring(ring, _) => ring.pending_notifications(),
        }
    }

    /// Waits (up to 2 s) for every zero-copy completion and returns the final counters.
    pub fn finish(mut self) -> TcpFloorCounters {
        match &mut self.inner {
            Inner::Plain => {}
            Inner::Zc(zc) => {
                zc.drain(FINISH_WAIT);
                self.counters.zerocopy = zc.report();
            }
            Inner::Uring(ring, _) => {
                ring.drain(FINISH_WAIT);
                self.counters.zerocopy = ring.report();
            }
        }
        // The reads of this final drain are in `zerocopy.reap_calls`, not in `syscalls`.
        self.counters()
    }
}

/// Adds one write's result to the counters.
fn count(c: &mut TcpFloorCounters, r: io::Result<usize>, chunk: &[IoSlice<'_>]) {
    match r {
        Ok(n) => {
            c.bytes += n as u64;
            let offered: usize = chunk.iter().map(|s| s.len()).sum();
            if n >= offered {
                c.full_writes += 1;
            } else if n > 0 {
                c.short_writes += 1;
            } else {
                c.would_block += 1;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.would_block += 1,
        Err(_) => c.failed += 1,
    }
}
