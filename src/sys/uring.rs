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
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

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

/// A ring sized for one window of sends.
pub(crate) struct UringSender {
    ring: Option<IoUring>,
    /// Submission order of the window's sends (indices into it), reused per window.
    order: [u8; MAX_SENDS],
}

impl UringSender {
    /// A ring with room for [`MAX_SENDS`] operations.
    pub(crate) fn new() -> Result<Self, UringUnavailable> {
        let ring = IoUring::new(MAX_SENDS as u32).map_err(UringUnavailable::Setup)?;
        Ok(Self {
            ring: Some(ring),
            order: [0; MAX_SENDS],
        })
    }

    /// Sends the window's sends as one submission and waits for all completions, storing
    /// each result in its slot. Returns the `io_uring_enter` calls made, or the error that
    /// broke the ring (then `arena` storage has been leaked and this sender is unusable;
    /// slots not completed carry `-ECANCELED`).
    pub(crate) fn send(
        &mut self,
        window: &mut Window<'_, '_>,
        socket: &UdpSocket,
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
        while reaped < n {
            syscalls += 1;
            match ring.submit_and_wait(n - reaped) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
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
                if let Some(slot) = slots.get_mut(cqe.user_data() as usize) {
                    slot.result = cqe.result();
                }
                reaped += 1;
            }
        }
        Ok(syscalls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
