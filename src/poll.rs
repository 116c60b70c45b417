//! Readiness for threads that wait on many descriptors: an `epoll(7)` set and an `eventfd(2)`
//! waker, through `rustix`'s safe wrappers (no `unsafe` here). A shard sleeps in
//! [`Epoll::wait_events`] until its next due time, a command (the control thread writes the
//! shard's [`Waker`]) or a socket it serves; the `shardcast bench` load generator waits on its
//! viewers' sockets with [`Epoll::wait`].

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{epoll, eventfd, EventfdFlags};

/// Most readiness events one wait returns.
pub const EPOLL_MAX_EVENTS: usize = 256;

/// What a registered descriptor is watched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (or closed by the peer).
    Read,
    /// Readable or writable.
    ReadWrite,
}

impl Interest {
    fn flags(self) -> epoll::EventFlags {
        match self {
            Interest::Read => epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
            Interest::ReadWrite => {
                epoll::EventFlags::IN | epoll::EventFlags::OUT | epoll::EventFlags::RDHUP
            }
        }
    }
}

/// One ready descriptor: its token and what it is ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The token it was registered with.
    pub token: u64,
    /// Data (or end of stream) to read.
    pub readable: bool,
    /// Room to write.
    pub writable: bool,
    /// The peer hung up or the descriptor failed.
    pub closed: bool,
}

/// An epoll set; each registered descriptor carries a caller-chosen `u64` token.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty epoll set.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        })
    }

    /// Registers `fd` (level-triggered) for readability with `token`.
    pub fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        self.add_with(fd, token, Interest::Read)
    }

    /// Registers `fd` (level-triggered) for `interest` with `token`.
    pub fn add_with(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        epoll::add(
            &self.fd,
            fd,
            epoll::EventData::new_u64(token),
            interest.flags(),
        )?;
        Ok(())
    }

    /// Changes what a registered `fd` is watched for.
    pub fn modify(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        epoll::modify(
            &self.fd,
            fd,
            epoll::EventData::new_u64(token),
            interest.flags(),
        )?;
        Ok(())
    }

    /// Stops watching `fd` (closing it does the same).
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.fd, fd)?;
        Ok(())
    }

    /// Waits up to `timeout` and appends the tokens of up to [`EPOLL_MAX_EVENTS`] ready
    /// descriptors to `ready` (EINTR appends none).
    pub fn wait(&self, timeout: Duration, ready: &mut Vec<u64>) -> io::Result<()> {
        self.wait_with(timeout, |e| ready.push(e.token))
    }

    /// Waits up to `timeout` and appends up to [`EPOLL_MAX_EVENTS`] ready descriptors, with
    /// what each is ready for, to `ready` (EINTR appends none).
    pub fn wait_events(&self, timeout: Duration, ready: &mut Vec<Ready>) -> io::Result<()> {
        self.wait_with(timeout, |e| ready.push(e))
    }

    fn wait_with(&self, timeout: Duration, mut each: impl FnMut(Ready)) -> io::Result<()> {
        // Whole milliseconds, rounded up so a wait never ends before its deadline (which
        // would spin), as epoll_wait(2) takes them: kernels before 5.11 refuse more than
        // `c_int::MAX` ms.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as u64;
        let timeout = rustix::event::Timespec {
            tv_sec: (ms / 1000) as _,
            tv_nsec: ((ms % 1000) * 1_000_000) as _,
        };
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); EPOLL_MAX_EVENTS];
        match epoll::wait(&self.fd, &mut events[..], Some(&timeout)) {
            Ok((got, _)) => {
                for e in got.iter() {
                    let f = e.flags;
                    each(Ready {
                        token: e.data.u64(),
                        readable: f.intersects(epoll::EventFlags::IN | epoll::EventFlags::RDHUP),
                        writable: f.contains(epoll::EventFlags::OUT),
                        closed: f.intersects(
                            epoll::EventFlags::HUP
                                | epoll::EventFlags::ERR
                                | epoll::EventFlags::RDHUP,
                        ),
                    });
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// Wakes a thread sleeping in an [`Epoll`] that watches [`Waker::fd`]: a non-blocking
/// `eventfd(2)` whose counter [`Waker::wake`] raises and [`Waker::reset`] clears.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new waker, not signalled.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        })
    }

    /// Makes the descriptor readable until the next [`Waker::reset`]. Never blocks: a
    /// counter at its limit is readable already.
    pub fn wake(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Clears the signal (after the sleeper woke).
    pub fn reset(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }

    /// The descriptor to register with an [`Epoll`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    #[test]
    fn a_waker_wakes_a_wait_once_until_reset() {
        let epoll = Epoll::new().unwrap();
        let waker = Waker::new().unwrap();
        epoll.add(waker.fd(), 1).unwrap();
        let mut ready = Vec::new();
        epoll.wait_events(Duration::ZERO, &mut ready).unwrap();
        assert!(ready.is_empty());
        waker.wake();
        waker.wake();
        epoll
            .wait_events(Duration::from_secs(2), &mut ready)
            .unwrap();
        assert_eq!(ready.len(), 1);
        assert!(ready[0].readable && ready[0].token == 1);
        waker.reset();
        ready.clear();
        let t = Instant::now();
        epoll
            .wait_events(Duration::from_millis(30), &mut ready)
            .unwrap();
        assert!(ready.is_empty(), "reset clears the signal");
        assert!(
            t.elapsed() >= Duration::from_millis(30),
            "waits its whole timeout"
        );
    }

    #[test]
    fn writability_is_reported_only_when_asked_for() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let epoll = Epoll::new().unwrap();
        epoll.add(&server, 9).unwrap();
        let mut ready = Vec::new();
        epoll.wait_events(Duration::ZERO, &mut ready).unwrap();
        assert!(
            ready.is_empty(),
            "idle: neither readable nor asked for writability"
        );
        epoll.modify(&server, 9, Interest::ReadWrite).unwrap();
        epoll.wait_events(Duration::ZERO, &mut ready).unwrap();
        assert_eq!(ready.len(), 1);
        assert!(ready[0].writable && !ready[0].readable);
        client.write_all(b"x").unwrap();
        drop(client);
        ready.clear();
        epoll.modify(&server, 9, Interest::Read).unwrap();
        epoll
            .wait_events(Duration::from_secs(2), &mut ready)
            .unwrap();
        assert!(ready[0].readable && ready[0].closed, "{ready:?}");
        epoll.delete(&server).unwrap();
    }
}
