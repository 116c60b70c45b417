//! Read leases (fcntl(2) `F_SETLEASE`): how a mapped media file is kept from being truncated
//! under its viewers. While we hold a read lease, a process that opens the file for writing or
//! truncates it blocks (up to `/proc/sys/fs/lease-break-time`, 45 s by default) and we get
//! `SIGIO`; we then end the file's viewers and drop the mapping, which closes the fd and
//! releases the lease, and the writer proceeds — no access to a truncated page, no SIGBUS.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Takes a read lease on `file` (opened read-only). Fails with `EAGAIN` if the file is open
/// for writing somewhere, `EACCES`/`EPERM` without ownership or `CAP_LEASE`.
pub(crate) fn take_read_lease(file: &File) -> io::Result<()> {
    // SAFETY: fcntl(2) with F_SETLEASE takes an int argument and touches no memory of ours.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True while the lease on `file` is being broken (a writer or truncation is waiting):
/// fcntl(2) F_GETLEASE then reports the type the lease is being downgraded to, `F_UNLCK`.
pub(crate) fn lease_breaking(file: &File) -> bool {
    // SAFETY: F_GETLEASE takes no argument and touches no memory of ours.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLEASE) };
    ret == libc::F_UNLCK
}
