//! Scheduling priority of the calling thread (`setpriority(2)` on its thread id).
//!
//! On Linux, `PRIO_PROCESS` with a thread id sets that thread's nice value only (the
//! "per-thread nice" the man page's BUGS section describes), which is what a shard wants:
//! its core's other threads (the control thread, the HTTP side) keep theirs.

use std::io;

/// Sets the calling thread's nice value (−20 highest … 19 lowest). Lowering it below the
/// current value needs `CAP_SYS_NICE` or a fitting `RLIMIT_NICE`; otherwise `EACCES`/`EPERM`.
pub(crate) fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority takes plain integers; `tid` is this thread's id.
    let ret = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's nice value.
#[cfg(test)]
pub(crate) fn current_thread_nice() -> io::Result<i32> {
    // SAFETY: as above.
    let tid = unsafe { libc::gettid() };
    // getpriority(2) may legitimately return −1: clear errno first and check it after.
    // SAFETY: __errno_location returns this thread's errno slot, valid for writes.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain integers.
    let ret = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    let err = io::Error::last_os_error();
    if ret == -1 && err.raw_os_error().is_some_and(|e| e != 0) {
        return Err(err);
    }
    Ok(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raising the nice value is always allowed, and only this thread changes.
    #[test]
    fn a_thread_lowers_its_own_priority_and_no_other() {
        let before = current_thread_nice().unwrap();
        let inside = std::thread::spawn(move || {
            set_current_thread_nice((before + 3).min(19)).unwrap();
            current_thread_nice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, (before + 3).min(19));
        assert_eq!(
            current_thread_nice().unwrap(),
            before,
            "the caller's is untouched"
        );
    }
}
