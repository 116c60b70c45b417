//! io_uring sends: one `IORING_OP_SENDMSG` per send of a [`Window`], all of a window
//! submitted with one `io_uring_enter(2)` that also waits for every completion.
//!
//! Lifetime rule: an operation may read its `msghdr`, `iovec`s, control message, address and
//! header bytes until its completion is reaped. They live in the `SendArena` (headers and
//! addresses copied there, see `Window::push_segment`), the body in the caller's mapping
//! borrowed for the window's `'a`, and [`UringSender::send`] returns only after reaping a
//! completion for every operation it pushed. If the ring fails in a way that leaves
//! operations in flight, the ring and the arena storage are leaked, never freed under the
//! kernel, and the sender reports itself broken.
//!
//! Not here: choosing GSO trains, counting, falling back (`shard::send`).

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::mmsg::{Window, MAX_SENDS};

/// Why io_uring cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UringUnavailable {
    /// `io_uring_setup(2)` refused (seccomp, `kernel.io_uring_disabled`, old kernel).
    #[error("io_uring_setup refused: {0}")]
    Setup(io::Error),
    /// The ring was created but a NOP did not complete.
    #[error("io_uring NOP failed: {0}")]
    Nop(io::Error),
    /// The kernel does not know `IORING_OP_SENDMSG` (before Linux 5.3).
    #[error("io_uring lacks IORING_OP_SENDMSG")]
    NoSendMsg,
}

/// Creates a small ring, submits a NOP and waits for it: the start-up test for `--io uring`.
pub fn probe_io_uring() -> Result<(), UringUnavailable> {
    let mut ring = IoUring::new(2).map_err(UringUnavailable::Setup)?;
    let mut probe = io_uring::Probe::new();
    if ring.submitter().register_probe(&mut probe).is_ok()
        && !probe.is_supported(opcode::SendMsg::CODE)
    {
        return Err(UringUnavailable::NoSendMsg);
    }
    let nop = opcode::Nop::new().build().user_data(7);
    // SAFETY: a NOP references no memory. io_uring `push`: "parameters of the entry ... must
    // be valid for the entire duration of the operation" — there are none.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| UringUnavailable::Nop(io::Error::other("submission queue full")))?;
    ring.submit_and_wait(1).map_err(UringUnavailable::Nop)?;
    let cqe = ring.completion().next();
    match cqe {
        Some(c) if c.user_data() == 7 && c.result() >= 0 => Ok(()),
        Some(c) => Err(UringUnavailable::Nop(io::Error::from_raw_os_error(
            -c.result(),
        ))),
        None => Err(UringUnavailable::Nop(io::Error::other("no completion"))),
    }
}

/// How long a window may wait for its completions before its outstanding sends are
/// cancelled. A UDP send parks only while its socket's send buffer is full, which a NIC
/// drains within milliseconds: a send parked this long is stuck, and without a limit it
/// would hang the shard, and every viewer on it, for good.
pub(crate) const COMPLETION_WAIT: Duration = Duration::from_secs(2);

/// How long to wait after cancelling for the cancelled sends to complete (a hard link then
/// issues the next send of the chain, which may park in turn: each round advances it).
const CANCEL_WAIT: Duration = Duration::from_millis(50);

/// `user_data` of cancel requests: this bit set (no send slot has it), the slot below it.
const CANCEL_TAG: u64 = 1 << 63;

/// A ring sized for one window of sends.
pub(crate) struct UringSender {
    ring: Option<IoUring>,
    /// Submission order of the window's sends (indices into it), reused per window.
    order: [u8; MAX_SENDS],
    /// The kernel takes a timeout with the wait (`IORING_FEAT_EXT_ARG`, Linux 5.11); older
    /// kernels wait without one.
    timed_wait: bool,
    /// [`COMPLETION_WAIT`], shorter in tests.
    completion_wait: Duration,
}

impl UringSender {
    /// A ring with room for [`MAX_SENDS`] operations.
    pub(crate) fn new() -> Result<Self, UringUnavailable> {
        let ring = IoUring::new(MAX_SENDS as u32).map_err(UringUnavailable::Setup)?;
        let timed_wait = ring.params().is_feature_ext_arg();
        Ok(Self {
            ring: Some(ring),
            order: [0; MAX_SENDS],
            timed_wait,
            completion_wait: COMPLETION_WAIT,
        })
    }

    /// Sends the window's sends as one submission and waits for all completions, storing
    /// each result in its slot. Returns the `io_uring_enter` calls made, or the error that
    /// broke the ring (then `arena` storage has been leaked and this sender is unusable;
    /// slots not completed carry `-ECANCELED`).
    ///
    /// A send still parked after [`COMPLETION_WAIT`] is cancelled (its slot then carries
    /// `-ECANCELED` or `-EINTR`, a failed send); if cancelling stops making progress the ring is given
    /// up as broken, never waited on forever.
    pub(crate) fn send(
        &mut self,
        window: &mut Window<'_, '_>,
        socket: &impl AsRawFd,
    ) -> Result<usize, (usize, io::Error)> {
        let Some(ring) = self.ring.as_mut() else {
            return Err((0, io::Error::other("io_uring sender is broken")));
        };
        let fd = types::Fd(socket.as_raw_fd());
        let (msgs, slots) = window.prepared();
        let n = msgs.len();
        if n == 0 {
            return Ok(0);
        }
        // Sends must leave in order per destination, as with sendmmsg: an unlinked
        // operation issued inline can overtake one that was parked (EAGAIN) or deferred,
        // which would reorder a viewer's packets (seen in the tests). A hard link starts
        // the next operation only after this one completes — and, unlike IO_LINK, also after
        // a failure. But a chain is a run of consecutive submission entries, and every linked
        // operation after the first is issued from task work, not inline: chaining a
        // destination's first send to its last would drag every other viewer's sends in
        // between into the chain (under load, when tracks catch up several samples per
        // tick, ~80 % of all sends). So the entries go in grouped by destination, each
        // group in the window's order (sorted by (key, index): the sort allocates nothing
        // and the key is unique), and only sends to the same destination are linked.
        let order = &mut self.order[..n];
        for (k, o) in order.iter_mut().enumerate() {
            *o = k as u8;
        }
        order.sort_unstable_by_key(|&k| (slots[usize::from(k)].dest_key, k));
        {
            let mut sq = ring.submission();
            for (pos, &k) in order.iter().enumerate() {
                let k = usize::from(k);
                slots[k].result = -libc::ECANCELED;
                let mut entry = opcode::SendMsg::new(fd, &msgs[k].msg_hdr)
                    .build()
                    .user_data(k as u64);
                let next_same_dest = order
                    .get(pos + 1)
                    .is_some_and(|&j| slots[usize::from(j)].dest_key == slots[k].dest_key);
                if next_same_dest {
                    entry = entry.flags(squeue::Flags::IO_HARDLINK);
                }
                // SAFETY: io_uring `push`: "parameters of the entry (such as buffer) are
                // valid and will be valid for the entire duration of the operation". The
                // msghdr and everything it points to live in the arena or are borrowed by
                // the window for 'a; we reap every completion below before returning, or
                // leak the arena if we cannot.
                if unsafe { sq.push(&entry) }.is_err() {
                    unreachable!(
                        "the ring has MAX_SENDS entries and a window at most MAX_SENDS sends"
                    );
                }
            }
        }
        let mut reaped = 0;
        let mut syscalls = 0;
        let mut completed = [false; MAX_SENDS];
        // The deadline is kept here, not read from the call's result: a call that submits
        // entries returns their number even when its wait then times out.
        let mut deadline = Instant::now() + self.completion_wait;
        // Completions reaped when sends were last cancelled: None before any cancel.
        let mut reaped_at_cancel: Option<usize> = None;
        while reaped < n {
            syscalls += 1;
            let waited = if self.timed_wait {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let wait = types::Timespec::from(left);
                let args = types::SubmitArgs::new().timespec(&wait);
                ring.submitter().submit_with_args(n - reaped, &args)
            } else {
                ring.submit_and_wait(n - reaped)
            };
            match waited {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME)
                    ) => {}
                Err(e) => {
                    // Operations may still be in flight: neither the ring nor the memory
                    // they read may be released.
                    mem::forget(self.ring.take());
                    window.leak_storage();
                    return Err((syscalls, e));
                }
            }
            for cqe in ring.completion() {
                let data = cqe.user_data();
                if data & CANCEL_TAG != 0 {
                    // A cancel request's own completion (found, not found, or too late).
                    continue;
                }
                if let Some(slot) = slots.get_mut(data as usize) {
                    slot.result = cqe.result();
                    completed[data as usize] = true;
                }
                reaped += 1;
            }
            if reaped == n || !self.timed_wait || Instant::now() < deadline {
                continue;
            }
            if reaped_at_cancel == Some(reaped) {
                mem::forget(self.ring.take());
                window.leak_storage();
                return Err((
                    syscalls,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "sends still in flight after being cancelled",
                    ),
                ));
            }
            if reaped_at_cancel.is_none() {
                tracing::warn!(
                    outstanding = n - reaped,
                    "io_uring sends parked for {:?}: cancelling them (send buffer full and not draining?)",
                    self.completion_wait
                );
            }
            reaped_at_cancel = Some(reaped);
            deadline = Instant::now() + CANCEL_WAIT;
            let mut sq = ring.submission();
            for k in (0..n).filter(|&k| !completed[k]) {
                let cancel = opcode::AsyncCancel::new(k as u64)
                    .build()
                    .user_data(CANCEL_TAG | k as u64);
                // SAFETY: a cancel request reads no memory of ours; the submission queue
                // has MAX_SENDS free entries (the window's were consumed by the first
                // submit).
                if unsafe { sq.push(&cancel) }.is_err() {
                    break;
                }
            }
        }
        Ok(syscalls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::mmsg::SendArena;
    use std::os::unix::net::UnixDatagram;

    /// Sends that park for good (a datagram socket whose reader never reads: the kernel
    /// queues `net.unix.max_dgram_qlen` datagrams, 10 by default, then blocks the sender)
    /// are cancelled after the completion wait: `send` returns, the stuck sends count as
    /// failed, and the ring goes on working.
    #[test]
    fn sends_parked_past_the_wait_are_cancelled_and_the_ring_goes_on() {
        if probe_io_uring().is_err()
            && std::env::var("SHARDCAST_ALLOW_MISSING").as_deref() == Ok("uring")
        {
            eprintln!(
                "!!! SKIPPING io_uring cancel test: no io_uring (SHARDCAST_ALLOW_MISSING=uring)"
            );
            return;
        }
        let path = std::env::temp_dir().join(format!(
            "shardcast-uring-cancel-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let reader = UnixDatagram::bind(&path).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        let dest = socket2::SockAddr::unix(&path).unwrap();
        let mut ring = UringSender::new().unwrap();
        assert!(ring.timed_wait, "this kernel has IORING_FEAT_EXT_ARG");
        ring.completion_wait = Duration::from_millis(200);
        let header = [0x80u8; 12];
        let body = [7u8; 100];
        let mut arena = SendArena::new();

        let sends = 24;
        let started = std::time::Instant::now();
        let mut w = arena.window(true);
        for k in 0..sends {
            w.begin_send(&dest, k);
            w.push_segment(&header, &[&body]);
            w.end_send(None);
        }
        ring.send(&mut w, &sender).expect("the ring survives");
        let took = started.elapsed();
        let sent = w.slots().iter().filter(|s| s.result == 112).count();
        // A send parked in the kernel's worker pool ends with EINTR when cancelled, one not
        // yet started with ECANCELED.
        let cancelled = w
            .slots()
            .iter()
            .filter(|s| s.result == -libc::ECANCELED || s.result == -libc::EINTR)
            .count();
        let results: Vec<i32> = w.slots().iter().map(|s| s.result).collect();
        assert!(
            (1..sends).contains(&sent),
            "some sends went through: {results:?}"
        );
        assert_eq!(
            sent + cancelled,
            sends,
            "the rest were cancelled: {results:?}"
        );
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );

        // The reader catches up; the same ring sends again.
        reader.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        let mut drained = 0;
        while reader.recv(&mut buf).is_ok() {
            drained += 1;
        }
        assert_eq!(drained, sent);
        let mut w = arena.window(true);
        for k in 0..3 {
            w.begin_send(&dest, k);
            w.push_segment(&header, &[&body]);
            w.end_send(None);
        }
        ring.send(&mut w, &sender).expect("the ring still works");
        assert!(w.slots().iter().all(|s| s.result == 112));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn io_uring_probe_passes_on_this_kernel_unless_allowed_missing() {
        match probe_io_uring() {
            Ok(()) => {}
            Err(e) if std::env::var("SHARDCAST_ALLOW_MISSING").as_deref() == Ok("uring") => {
                eprintln!("!!! SKIPPING io_uring probe test: {e} (SHARDCAST_ALLOW_MISSING=uring)");
            }
            Err(e) => {
                panic!("io_uring unavailable: {e}; set SHARDCAST_ALLOW_MISSING=uring to skip")
            }
        }
    }
}
